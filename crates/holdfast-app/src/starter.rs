//! A commented starting configuration, written by `holdfast config init`, so that a new user
//! edits a file that already works instead of writing TOML from the reference. Every value it
//! writes is one `config check` accepts (a test holds it to that), and every choice it makes
//! says in a comment what the alternatives are.

use std::path::PathBuf;

use crate::profile::{Profile, ProfileName};

/// What the starting configuration is about.
#[derive(Debug, Clone)]
pub struct Starter {
    pub app: String,
    pub profile: ProfileName,
    pub data_dir: PathBuf,
    pub repository: String,
    pub password_file: PathBuf,
}

/// A TOML string literal (quoted and escaped).
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

impl Starter {
    /// Refuses names that would need quoting in TOML and in volume snapshot names.
    pub fn check(&self) -> Result<(), String> {
        let ok = !self.app.is_empty()
            && self
                .app
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(format!(
                "application name '{}': use letters, digits, '-' and '_'",
                self.app
            ));
        }
        if !self.data_dir.is_absolute() {
            return Err(format!(
                "data directory '{}' must be an absolute path",
                self.data_dir.display()
            ));
        }
        Ok(())
    }

    /// Creates the password file (0600, a random password, durably) unless it exists;
    /// returns whether it was created. An existing one is never touched: a repository may
    /// already use it.
    pub fn create_password_file(&self) -> std::io::Result<bool> {
        if self.password_file.symlink_metadata().is_ok() {
            return Ok(false);
        }
        if let Some(dir) = self.password_file.parent() {
            holdfast_core::private::create_dir_all(dir)?;
        }
        let password = holdfast_core::keyfile::random_password() + "\n";
        holdfast_core::private::write_durably(&self.password_file, password.as_bytes())?;
        Ok(true)
    }

    /// The configuration file's text.
    pub fn render(&self) -> String {
        let app = &self.app;
        let profile = Profile::get(self.profile);
        let data_dir = quoted(&self.data_dir.to_string_lossy());
        let mut t = format!(
            "# holdfast configuration, written by `holdfast config init`.\n\
# Every key is described in docs/configuration.md. After an edit, `holdfast config check`\n\
# validates this file, and `holdfast plan --app {app}` shows what a backup would do,\n\
# without doing it.\n\
\n\
# Where backups go: a directory on another disk or machine, or s3://bucket/prefix (then see\n\
# the [s3] table in docs/configuration.md). Create it once with `holdfast init`.\n\
repository = {repo}\n\
# The repository password, first line of this file (0600). Keep a copy somewhere else:\n\
# without it no backup can be read.\n\
password_file = {pw}\n\
\n\
[app.{app}]\n\
profile = \"{profile}\"\n\
data_dir = {data_dir}\n",
            repo = quoted(&self.repository),
            pw = quoted(&self.password_file.to_string_lossy()),
            profile = self.profile.as_str(),
        );
        match self.profile {
            ProfileName::Dss => {
                t.push_str(
                    "# \"stop\": DSS is stopped for the backup and started again (the documented\n\
# procedure); holdfast waits for running jobs first when [app.NAME.service]\n\
# dss_api_key_file is set. \"snapshot\" reads an atomic volume snapshot instead and needs\n\
# an [app.NAME.snapshot] table (btrfs, lvm or your own commands).\n\
consistency = \"stop\"\n",
                );
                let tiers: Vec<String> = profile
                    .tiers
                    .iter()
                    .map(|tier| {
                        format!(
                            "#   {:<12} {}: {}\n",
                            tier.name,
                            tier.folders.join(", "),
                            tier.note
                        )
                    })
                    .collect();
                let default: Vec<String> = profile
                    .tiers
                    .iter()
                    .filter(|tier| tier.excluded_by_default)
                    .map(|tier| quoted(tier.name))
                    .collect();
                t.push_str(&format!(
                    "# Folders left out, by tier (the list replaces the default):\n{}\
exclude_tiers = [{}]\n",
                    tiers.concat(),
                    default.join(", ")
                ));
            }
            ProfileName::Generic => {
                t.push_str(&format!(
                    "# \"live\" reads the files while the application runs, and reports files that\n\
# changed meanwhile. For a consistent copy, stop it: set consistency = \"stop\" and uncomment\n\
# the [app.{app}.service] table below, or use a volume snapshot (\"snapshot\").\n\
consistency = \"live\"\n\
# Further patterns to leave out, relative to data_dir: [\"cache/*\", \"*.tmp\"]\n\
exclude = []\n"
                ));
            }
        }
        t.push_str(&format!(
            "# When `holdfast run --app {app}` is due (5-field cron, local time): Monday to Friday\n\
# at 6:15, as in DSS's backup documentation. `holdfast schedule install` turns it into a\n\
# systemd timer (or with --cron a file in /etc/cron.d).\n\
schedule = \"15 6 * * 1-5\"\n"
        ));
        if self.profile == ProfileName::Generic {
            t.push_str(&format!(
                "\n# [app.{app}.service]\n\
# stop = \"systemctl stop myapp\"\n\
# start = \"systemctl start myapp\"\n\
# status = \"systemctl is-active --quiet myapp\"\n"
            ));
        }
        t.push_str(&format!(
            "\n# What `holdfast run` keeps after each backup. The documented cron script deletes\n\
# archives older than 4 days; snapshots are deduplicated, so keeping weeks and months\n\
# costs only what changed.\n\
[app.{app}.retention]\n\
keep_within = \"4d\"\n\
keep_weekly = 4\n\
keep_monthly = 6\n\
# Free the data of forgotten snapshots (takes the repository's exclusive lock).\n\
prune = true\n\
\n\
# Verification after a backup, at most once a week: the structure, and 5% of the data\n\
# read back and checked.\n\
[app.{app}.check]\n\
every = \"7d\"\n\
read_data_subset = \"5%\"\n\
\n\
# Monitoring, and commands after each run (variables in docs/configuration.md): a\n\
# healthchecks-style URL is pinged at the start, on success and on failure, so a backup\n\
# that fails or never runs is noticed.\n\
# [app.{app}.hooks]\n\
# ping_url = \"https://hc-ping.com/YOUR-CHECK-UUID\"\n\
# on_failure = \"logger -p user.err -t holdfast \\\"backup of $HOLDFAST_APP failed: $HOLDFAST_ERROR\\\"\"\n"
        ));
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn starter(profile: ProfileName) -> Starter {
        Starter {
            app: "design".into(),
            profile,
            data_dir: "/srv/dss \"data\"".into(),
            repository: "/var/backups/holdfast".into(),
            password_file: "/etc/holdfast/password".into(),
        }
    }

    #[test]
    fn every_starting_configuration_parses_and_validates() {
        for profile in [ProfileName::Dss, ProfileName::Generic] {
            let s = starter(profile);
            let text = s.render();
            let cfg = crate::config::Config::parse(&text, std::path::Path::new("init.toml"))
                .unwrap_or_else(|e| panic!("{profile:?}: {e}\n{text}"));
            let app = &cfg.app["design"];
            assert_eq!(app.profile, profile);
            assert_eq!(app.data_dir, PathBuf::from("/srv/dss \"data\""));
            assert_eq!(cfg.repository.as_deref(), Some("/var/backups/holdfast"));
            assert!(app.retention.is_some() && app.schedule.is_some());
        }
    }

    #[test]
    fn a_password_file_is_created_private_and_never_replaced() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut s = starter(ProfileName::Dss);
        s.password_file = dir.path().join("etc/holdfast/password");
        assert!(s.create_password_file().unwrap());
        let first = std::fs::read_to_string(&s.password_file).unwrap();
        assert_eq!(first.trim().len(), 48);
        let mode = std::fs::metadata(&s.password_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            !s.create_password_file().unwrap(),
            "an existing file is kept"
        );
        assert_eq!(std::fs::read_to_string(&s.password_file).unwrap(), first);
    }

    #[test]
    fn names_and_paths_that_cannot_work_are_refused() {
        let mut s = starter(ProfileName::Dss);
        s.app = "my app".into();
        assert!(s.check().is_err());
        s.app = "design".into();
        s.data_dir = "relative/data".into();
        assert!(s.check().is_err());
    }
}
