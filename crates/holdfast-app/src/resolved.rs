//! An application as configured, with its profile's defaults filled in: the one value the
//! procedure, restores and upgrades ask for commands, users, tiers and versions.

use std::path::{Path, PathBuf};

use crate::config::AppConfig;
use crate::error::{Error, Result};
use crate::profile::{Profile, ProfileName, Tier};

/// An application's settings with the profile's defaults filled in.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub name: String,
    pub profile: &'static Profile,
    pub config: AppConfig,
    pub stop: Option<String>,
    pub start: Option<String>,
    pub status: Option<String>,
    pub excluded_tiers: Vec<&'static Tier>,
    pub kept_tiers: Vec<&'static Tier>,
}

impl Resolved {
    pub fn new(name: &str, config: &AppConfig) -> Resolved {
        let profile = Profile::get(config.profile);
        let fill = |own: &Option<String>, default: Option<&str>| {
            own.clone()
                .or(default.map(String::from))
                .map(|c| c.replace("{data_dir}", &config.data_dir.to_string_lossy()))
        };
        let (excluded_tiers, kept_tiers) =
            profile
                .tiers
                .iter()
                .partition(|t| match &config.exclude_tiers {
                    Some(list) => list.iter().any(|n| n == t.name),
                    None => t.excluded_by_default,
                });
        Resolved {
            name: name.to_string(),
            profile,
            config: config.clone(),
            stop: fill(&config.service.stop, profile.stop),
            start: fill(&config.service.start, profile.start),
            status: fill(&config.service.status, profile.status),
            excluded_tiers,
            kept_tiers,
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// Whom the service commands (stop, start, status, quiesce, upgrade) run as: `service.user`
    /// when set (`root` included); for the dss profile the owner of the data directory (DSS
    /// runs as its own user, and a start as root would leave it owned by root). Otherwise the
    /// current user, except that root refuses to start an application whose data directory
    /// belongs to another user: it would come back as root and write root-owned files there.
    pub fn service_user(&self) -> Result<Option<crate::service::RunAs>> {
        use std::os::unix::fs::MetadataExt;
        if let Some(name) = &self.config.service.user {
            return crate::service::RunAs::by_name(name).map(Some);
        }
        let owner = match std::fs::metadata(self.data_dir()) {
            Ok(m) => m.uid(),
            Err(_) => return Ok(None), // reported by the preflight, which names the folder
        };
        let me = nix::unistd::geteuid().as_raw();
        if owner == me {
            return Ok(None);
        }
        if self.profile.name == ProfileName::Dss {
            return crate::service::RunAs::by_uid(owner).map(Some);
        }
        if me == 0 {
            let who = nix::unistd::User::from_uid(owner.into())
                .ok()
                .flatten()
                .map(|u| u.name)
                .unwrap_or_else(|| format!("uid {owner}"));
            return Err(Error::Config(format!(
                "application {}: its data directory {} belongs to {who}, and holdfast runs as \
                 root: set service.user = \"{who}\" (or \"root\" to run the service commands \
                 as root on purpose)",
                self.name,
                self.data_dir().display()
            )));
        }
        Ok(None)
    }

    /// What tells that no work runs before the service is stopped: `service.quiesce` when set
    /// (`{data_dir}` replaced); for the dss profile, otherwise, DSS's public API when
    /// `service.dss_api_key_file` is set; else nothing.
    pub fn quiet_check(&self) -> Option<crate::service::QuietCheck> {
        use crate::service::QuietCheck;
        let service = &self.config.service;
        if let Some(q) = &service.quiesce {
            return Some(QuietCheck::Command(
                q.replace("{data_dir}", &self.data_dir().to_string_lossy()),
            ));
        }
        if self.profile.name == ProfileName::Dss {
            return crate::dss_api::DssApi::from_config(service, self.data_dir())
                .map(QuietCheck::DssApi);
        }
        None
    }

    /// Exclude patterns for the tiers left out, anchored at `read_root` (the data directory,
    /// or where a volume snapshot of it is mounted).
    pub fn tier_patterns(&self, read_root: &Path) -> Vec<String> {
        self.excluded_tiers
            .iter()
            .flat_map(|t| t.folders.iter())
            .map(|f| globset::escape(&read_root.join(f).to_string_lossy()))
            .collect()
    }

    /// The application's version as recorded in the data directory at `dir`.
    pub fn version_in(&self, dir: &Path) -> Option<String> {
        let file: PathBuf = self
            .config
            .version_file
            .clone()
            .or(self.profile.version_file.map(PathBuf::from))?;
        let key = self
            .config
            .version_key
            .clone()
            .unwrap_or(self.profile.version_key.to_string());
        let text = std::fs::read_to_string(dir.join(file)).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        match v.get(&key)? {
            serde_json::Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dss_defaults_and_tiers() {
        let cfg = AppConfig {
            profile: ProfileName::Dss,
            data_dir: "/srv/dss/data".into(),
            ..AppConfig::default()
        };
        let r = Resolved::new("design", &cfg);
        assert_eq!(r.stop.as_deref(), Some("/srv/dss/data/bin/dss stop"));
        let ex: Vec<_> = r.excluded_tiers.iter().map(|t| t.name).collect();
        assert_eq!(ex, ["temporary"]);
        assert_eq!(
            r.tier_patterns(Path::new("/mnt/snap")),
            [
                "/mnt/snap/tmp",
                "/mnt/snap/caches",
                "/mnt/snap/data-catalog"
            ]
        );
    }
}
