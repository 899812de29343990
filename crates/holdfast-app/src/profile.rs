//! Application profiles: what holdfast knows about an application out of the box.
//!
//! A profile turns "this is a DSS data directory" into the procedure its vendor documents:
//! how to stop, start and query the service, where the version is, which folders are
//! temporary, logs, exports or rebuildable, and what a restore elsewhere must be followed by.
//! Every value can be overridden in the configuration; the generic profile knows nothing and
//! takes everything from it.

use std::path::{Path, PathBuf};

use crate::config::{AppConfig, ProfileName};
use crate::error::{Error, Result};

/// A named group of top-level folders of the data directory that can be left out.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Tier {
    pub name: &'static str,
    pub folders: &'static [&'static str],
    /// Left out unless `exclude_tiers` says otherwise.
    pub excluded_by_default: bool,
    /// What leaving it out means for a restore.
    pub note: &'static str,
}

#[derive(Clone, Debug)]
pub struct Profile {
    pub name: ProfileName,
    pub tiers: &'static [Tier],
    pub stop: Option<&'static str>,
    pub start: Option<&'static str>,
    pub status: Option<&'static str>,
    pub version_file: Option<&'static str>,
    pub version_key: &'static str,
    /// Said after a restore onto another machine, location or version.
    pub relocation_notes: &'static [&'static str],
}

const DSS_TIERS: &[Tier] = &[
    Tier {
        name: "temporary",
        folders: &["tmp", "caches", "data-catalog"],
        excluded_by_default: true,
        note: "temporary data and caches; DSS rebuilds them",
    },
    Tier {
        name: "logs",
        folders: &["run", "jobs", "scenarios", "diagnosis"],
        excluded_by_default: false,
        note: "logs of the backend, jobs and scenarios are not restored",
    },
    Tier {
        name: "exports",
        folders: &["exports", "prepared_bundles", "apinode-packages"],
        excluded_by_default: false,
        note: "user exports, exported automation bundles and API node packages are not restored",
    },
    Tier {
        name: "rebuildable",
        folders: &["managed_datasets", "analysis_data", "saved_models"],
        excluded_by_default: false,
        note: "managed datasets, analysis data and saved models are not restored: flows must be \
rebuilt and models retrained before they can be used, and data that cannot be recomputed is lost",
    },
];

const DSS: Profile = Profile {
    name: ProfileName::Dss,
    tiers: DSS_TIERS,
    stop: Some("{data_dir}/bin/dss stop"),
    start: Some("{data_dir}/bin/dss start"),
    status: Some("{data_dir}/bin/dss status"),
    version_file: Some("dss-version.json"),
    version_key: "product_version",
    relocation_notes: &[
        "replay the DSS installer in upgrade mode to reattach the data directory: \
<dss-install-dir>/installer.sh -d <data_dir> -u (set post_restore_command to have holdfast run it)",
        "the data directory moved to another machine or location: rebuild the Python code \
environments (see DSS's \"Migrating the data directory\")",
    ],
};

const GENERIC: Profile = Profile {
    name: ProfileName::Generic,
    tiers: &[],
    stop: None,
    start: None,
    status: None,
    version_file: None,
    version_key: "version",
    relocation_notes: &[],
};

impl Profile {
    pub fn get(name: ProfileName) -> &'static Profile {
        match name {
            ProfileName::Dss => &DSS,
            ProfileName::Generic => &GENERIC,
        }
    }

    pub fn tier(&self, name: &str) -> Option<&Tier> {
        self.tiers.iter().find(|t| t.name == name)
    }
}

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

/// Compares dotted versions numerically where both parts are numbers ("13.10" > "13.9").
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let parts = |s: &str| -> Vec<String> {
        s.split(['.', '-', '_'])
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let (pa, pb) = (parts(a), parts(b));
    for i in 0..pa.len().max(pb.len()) {
        let x = pa.get(i).map(String::as_str).unwrap_or("0");
        let y = pb.get(i).map(String::as_str).unwrap_or("0");
        let o = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(m), Ok(n)) => m.cmp(&n),
            _ => x.cmp(y),
        };
        if o != std::cmp::Ordering::Equal {
            return o;
        }
    }
    std::cmp::Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering::*;

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(compare_versions("13.10.0", "13.9.2"), Greater);
        assert_eq!(compare_versions("13.2", "13.2.0"), Equal);
        assert_eq!(compare_versions("12.6.4", "13.0.0"), Less);
    }

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
