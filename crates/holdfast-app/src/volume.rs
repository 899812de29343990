//! Atomic volume snapshots: the documented way to a consistent backup without stopping.
//!
//! The procedure is create, mount read-only, back up, unmount, destroy. Each provider (btrfs,
//! LVM, or the administrator's own commands for cloud volumes and ZFS) does the five steps;
//! this module makes them safe: the snapshot in flight is written to the state directory
//! before it is created, so a run that crashed leaves a name the next run finds and cleans
//! up, and unmount and destroy run whatever happened to the backup. With `keep_snapshots`
//! the newest N are kept as restore points (as the procedure allows on cloud volumes).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{ProviderName, VolumeConfig};
use crate::error::{Error, Result};
use crate::service::run_step;

/// A snapshot created for this run, and where the data directory is inside it.
#[derive(Debug)]
pub struct Taken {
    pub name: String,
    /// The data directory as seen in the snapshot: what the backup reads.
    pub read_path: PathBuf,
    /// Patterns to leave out (the snapshot directory itself, when it lies inside the data).
    pub excludes: Vec<String>,
    mounted: bool,
}

#[derive(Clone, Debug)]
pub struct Volume {
    app: String,
    cfg: VolumeConfig,
    data_dir: PathBuf,
    state_dir: PathBuf,
    timeout: Duration,
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct InFlight {
    name: Option<String>,
}

pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl Volume {
    pub fn new(
        app: &str,
        cfg: &VolumeConfig,
        data_dir: &Path,
        state_dir: &Path,
        timeout: Duration,
    ) -> Volume {
        Volume {
            app: app.to_string(),
            cfg: cfg.clone(),
            data_dir: data_dir.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            timeout,
        }
    }

    pub fn provider(&self) -> &'static str {
        match self.cfg.provider {
            ProviderName::Btrfs => "btrfs",
            ProviderName::Lvm => "lvm",
            ProviderName::Custom => "custom",
        }
    }

    fn prefix(&self) -> String {
        format!("holdfast-{}-", self.app)
    }

    fn state_file(&self) -> PathBuf {
        self.state_dir
            .join("volumes")
            .join(format!("{}.json", self.app))
    }

    fn subvolume(&self) -> PathBuf {
        self.cfg.subvolume.clone().unwrap_or(self.data_dir.clone())
    }

    fn snapshot_dir(&self) -> PathBuf {
        self.cfg
            .snapshot_dir
            .clone()
            .unwrap_or_else(|| self.subvolume().join(".holdfast-snapshots"))
    }

    fn mount_dir(&self) -> PathBuf {
        self.cfg
            .mount_dir
            .clone()
            .unwrap_or_else(|| self.state_dir.join("mnt").join(&self.app))
    }

    /// Where the volume holding the data directory is mounted.
    fn origin_mount(&self) -> Result<PathBuf> {
        if let Some(m) = &self.cfg.origin_mount {
            return Ok(m.clone());
        }
        let dev = |p: &Path| {
            p.metadata()
                .map(|m| m.dev())
                .map_err(|e| Error::Core(holdfast_core::Error::io(p, e)))
        };
        let mut at = self.data_dir.clone();
        let d = dev(&at)?;
        while let Some(parent) = at.parent() {
            if dev(parent)? != d {
                break;
            }
            at = parent.to_path_buf();
        }
        Ok(at)
    }

    fn env(&self, name: &str) -> Vec<(&'static str, String)> {
        vec![
            ("HOLDFAST_SNAPSHOT_NAME", name.to_string()),
            (
                "HOLDFAST_MOUNT_DIR",
                self.mount_dir().to_string_lossy().into_owned(),
            ),
            (
                "HOLDFAST_DATA_DIR",
                self.data_dir.to_string_lossy().into_owned(),
            ),
            ("HOLDFAST_APP", self.app.clone()),
        ]
    }

    fn custom(&self, step: &str, template: &str, name: &str) -> Result<String> {
        let cmd = template
            .replace("{name}", name)
            .replace("{mount}", &self.mount_dir().to_string_lossy());
        let env = self.env(name);
        let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, v.clone())).collect();
        run_step(step, &cmd, &env, self.timeout)
    }

    fn write_state(&self, s: &InFlight) -> Result<()> {
        let f = self.state_file();
        let io = |e| Error::Core(holdfast_core::Error::io(&f, e));
        holdfast_core::private::create_dir_all(f.parent().expect("has parent")).map_err(io)?;
        holdfast_core::private::write_durably(&f, &serde_json::to_vec(s).expect("serialises"))
            .map_err(io)
    }

    fn read_state(&self) -> InFlight {
        std::fs::read(self.state_file())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Existing snapshots of this application made by holdfast, oldest first.
    pub fn list(&self) -> Result<Vec<String>> {
        let prefix = self.prefix();
        let mut names: Vec<String> = match self.cfg.provider {
            ProviderName::Btrfs => match std::fs::read_dir(self.snapshot_dir()) {
                Ok(rd) => rd
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(holdfast_core::Error::io(self.snapshot_dir(), e).into()),
            },
            ProviderName::Lvm => {
                let vg = self.cfg.volume_group.clone().unwrap_or_default();
                run_step(
                    "listing LVM snapshots",
                    &format!("lvs --noheadings -o lv_name {}", sh_quote(&vg)),
                    &[],
                    self.timeout,
                )?
                .lines()
                .map(|l| l.trim().to_string())
                .collect()
            }
            ProviderName::Custom => match &self.cfg.list {
                Some(cmd) => self
                    .custom("listing volume snapshots", cmd, "")?
                    .lines()
                    .map(|l| l.trim().to_string())
                    .collect(),
                None => self.read_state().name.into_iter().collect(),
            },
        };
        names.retain(|n| n.starts_with(&prefix));
        names.sort();
        Ok(names)
    }

    /// Cleans up what a crashed run left: the snapshot in flight is unmounted and destroyed.
    /// Returns the names cleaned.
    pub fn clean_leftovers(&self) -> Result<Vec<String>> {
        let state = self.read_state();
        let mut cleaned = Vec::new();
        if let Some(name) = state.name {
            tracing::warn!("volume snapshot {name} was left by an earlier run; removing it");
            let _ = self.unmount(&name);
            // Without a way to list them, a custom provider's leftover may or may not exist:
            // its destroy command is asked. Otherwise, one that is gone (removed by hand) is
            // simply forgotten.
            let unlistable = self.cfg.provider == ProviderName::Custom && self.cfg.list.is_none();
            if unlistable || self.list()?.contains(&name) {
                let then = if unlistable {
                    format!(
                        "then delete {} so that runs go on",
                        self.state_file().display()
                    )
                } else {
                    "the next run then finds it gone and goes on".into()
                };
                self.destroy(&name).map_err(|e| match e {
                    Error::Step { step, message } => Error::Step {
                        step,
                        message: format!(
                            "{message} (snapshot {name}, left by an earlier run: remove it by hand; {then})"
                        ),
                    },
                    other => other,
                })?;
            }
            cleaned.push(name);
            self.write_state(&InFlight::default())?;
        }
        Ok(cleaned)
    }

    /// Creates and mounts a read-only snapshot.
    pub fn create(&self) -> Result<Taken> {
        let name = format!(
            "{}{}",
            self.prefix(),
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
        );
        // Record the name first: if we die after the snapshot exists, the next run finds it.
        self.write_state(&InFlight {
            name: Some(name.clone()),
        })?;
        let mut taken = Taken {
            name: name.clone(),
            read_path: PathBuf::new(),
            excludes: Vec::new(),
            mounted: false,
        };
        let created = match self.cfg.provider {
            ProviderName::Btrfs => {
                let dir = self.snapshot_dir();
                std::fs::create_dir_all(&dir)
                    .map_err(|e| Error::Core(holdfast_core::Error::io(&dir, e)))?;
                let snap = dir.join(&name);
                run_step(
                    "creating the btrfs snapshot",
                    &format!(
                        "btrfs subvolume snapshot -r {} {}",
                        sh_quote(&self.subvolume().to_string_lossy()),
                        sh_quote(&snap.to_string_lossy())
                    ),
                    &[],
                    self.timeout,
                )
                .map(|_| {
                    let rel = self
                        .data_dir
                        .strip_prefix(self.subvolume())
                        .unwrap_or(Path::new(""));
                    taken.read_path = snap.join(rel);
                    // A snapshot directory inside the data directory shows up (empty) in
                    // the snapshot: leave it out.
                    if let Ok(inner) = dir.strip_prefix(&self.data_dir) {
                        taken.excludes.push(globset::escape(
                            &taken.read_path.join(inner).to_string_lossy(),
                        ));
                    }
                })
            }
            ProviderName::Lvm => {
                let (vg, lv) = (
                    self.cfg.volume_group.clone().unwrap_or_default(),
                    self.cfg.logical_volume.clone().unwrap_or_default(),
                );
                run_step(
                    "creating the LVM snapshot",
                    &format!(
                        "lvcreate --snapshot --permission r --name {} --size {} {}",
                        sh_quote(&name),
                        sh_quote(self.cfg.size.as_deref().unwrap_or("1G")),
                        sh_quote(&format!("{vg}/{lv}"))
                    ),
                    &[],
                    self.timeout,
                )
                .map(|_| ())
            }
            ProviderName::Custom => self
                .custom(
                    "creating the volume snapshot",
                    self.cfg.create.as_deref().unwrap_or("false"),
                    &name,
                )
                .map(|_| ()),
        };
        if let Err(e) = created {
            // It may exist half made: try to remove it, and keep the name recorded if not.
            if self.destroy(&name).is_ok() {
                let _ = self.write_state(&InFlight::default());
            }
            return Err(e);
        }
        if let Err(e) = self.mount(&mut taken) {
            let _ = self.release(taken, false);
            return Err(e);
        }
        Ok(taken)
    }

    fn mount(&self, taken: &mut Taken) -> Result<()> {
        let mount_dir = self.mount_dir();
        let rel_in_volume = || -> Result<PathBuf> {
            let origin = self.origin_mount()?;
            Ok(self
                .data_dir
                .strip_prefix(&origin)
                .map(Path::to_path_buf)
                .unwrap_or_default())
        };
        match self.cfg.provider {
            ProviderName::Btrfs => return Ok(()), // read-only snapshots are readable in place
            ProviderName::Lvm => {
                std::fs::create_dir_all(&mount_dir)
                    .map_err(|e| Error::Core(holdfast_core::Error::io(&mount_dir, e)))?;
                let vg = self.cfg.volume_group.clone().unwrap_or_default();
                let opts = match &self.cfg.mount_options {
                    Some(o) => format!("ro,{o}"),
                    None => "ro".into(),
                };
                run_step(
                    "mounting the LVM snapshot",
                    &format!(
                        "mount -o {} {} {}",
                        sh_quote(&opts),
                        sh_quote(&format!("/dev/{vg}/{}", taken.name)),
                        sh_quote(&mount_dir.to_string_lossy())
                    ),
                    &[],
                    self.timeout,
                )?;
            }
            ProviderName::Custom => {
                std::fs::create_dir_all(&mount_dir)
                    .map_err(|e| Error::Core(holdfast_core::Error::io(&mount_dir, e)))?;
                if let Some(m) = &self.cfg.mount {
                    self.custom("mounting the volume snapshot", m, &taken.name)?;
                }
            }
        }
        taken.mounted = true;
        taken.read_path = mount_dir.join(rel_in_volume()?);
        if !taken.read_path.is_dir() {
            return Err(Error::step(
                "mounting the volume snapshot",
                format!(
                    "the data directory is not at {} in the mounted snapshot (set snapshot.origin_mount)",
                    taken.read_path.display()
                ),
            ));
        }
        Ok(())
    }

    fn unmount(&self, name: &str) -> Result<()> {
        let mount_dir = self.mount_dir();
        match self.cfg.provider {
            ProviderName::Btrfs => Ok(()),
            ProviderName::Lvm => run_step(
                "unmounting the LVM snapshot",
                &format!("umount {}", sh_quote(&mount_dir.to_string_lossy())),
                &[],
                self.timeout,
            )
            .map(|_| ()),
            ProviderName::Custom => match &self.cfg.unmount {
                Some(u) => self
                    .custom("unmounting the volume snapshot", u, name)
                    .map(|_| ()),
                None => Ok(()),
            },
        }
    }

    fn destroy(&self, name: &str) -> Result<()> {
        match self.cfg.provider {
            ProviderName::Btrfs => {
                let snap = self.snapshot_dir().join(name);
                if !snap.exists() {
                    return Ok(());
                }
                run_step(
                    "destroying the btrfs snapshot",
                    &format!(
                        "btrfs subvolume delete {}",
                        sh_quote(&snap.to_string_lossy())
                    ),
                    &[],
                    self.timeout,
                )
                .map(|_| ())
            }
            ProviderName::Lvm => {
                let vg = self.cfg.volume_group.clone().unwrap_or_default();
                run_step(
                    "destroying the LVM snapshot",
                    &format!("lvremove -f {}", sh_quote(&format!("{vg}/{name}"))),
                    &[],
                    self.timeout,
                )
                .map(|_| ())
            }
            ProviderName::Custom => self
                .custom(
                    "destroying the volume snapshot",
                    self.cfg.destroy.as_deref().unwrap_or("false"),
                    name,
                )
                .map(|_| ()),
        }
    }

    /// Unmounts the snapshot, then destroys it or, after a successful backup with
    /// `keep_snapshots`, keeps it and destroys the oldest beyond the newest N. Returns the
    /// names destroyed.
    pub fn release(&self, taken: Taken, success: bool) -> Result<Vec<String>> {
        let mut first_error = None;
        if taken.mounted {
            if let Err(e) = self.unmount(&taken.name) {
                first_error = Some(e);
            }
        }
        let mut destroyed = Vec::new();
        let keep = success && self.cfg.keep_snapshots > 0 && first_error.is_none();
        if !keep {
            match self.destroy(&taken.name) {
                Ok(()) => destroyed.push(taken.name.clone()),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if first_error.is_none() {
            self.write_state(&InFlight::default())?;
        }
        if keep {
            let all = self.list()?;
            let excess = all.len().saturating_sub(self.cfg.keep_snapshots as usize);
            for old in &all[..excess] {
                self.destroy(old)?;
                destroyed.push(old.clone());
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(destroyed),
        }
    }
}
