//! The marker a failed upgrade leaves, so that nothing runs the application on a
//! half-upgraded data directory.
//!
//! When the upgrade command fails, the service is left stopped and this marker is written.
//! While it is set, scheduled runs and `backup --app` make no backup and never start the
//! service; they fail loudly (exit code 5, run log, metrics, hooks) and print the three ways
//! out: resume the upgrade, abandon it, or restore the pre-upgrade snapshot in place.
//!
//! The upgrade itself is [`crate::upgrade::upgrade`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UpgradeMarker {
    pub app: String,
    pub time: chrono::DateTime<chrono::Utc>,
    /// The pre-upgrade snapshot (full id).
    pub snapshot: String,
    pub command: String,
    pub error: String,
    /// Whether the service ran before the upgrade stopped it (resume starts it again then).
    pub service_was_running: bool,
}

pub fn marker_path(state_dir: &Path, app: &str) -> PathBuf {
    state_dir.join(format!("upgrade-failed-{app}.json"))
}

/// The pending marker of `app`, if any. Only a marker that is certainly absent counts as
/// none: one that exists but cannot be read or parsed (permissions, a disk error, a torn
/// write) still blocks, since the upgrade's state is then unknown.
pub fn read(state_dir: &Path, app: &str) -> Option<UpgradeMarker> {
    let unknown = |why: String| UpgradeMarker {
        app: app.to_string(),
        time: chrono::Utc::now(),
        snapshot: "unknown".into(),
        command: "unknown".into(),
        error: why,
        service_was_running: false,
    };
    let path = marker_path(state_dir, app);
    match std::fs::read(&path) {
        Ok(bytes) => Some(serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            unknown(format!(
                "the marker {} cannot be parsed: {e}",
                path.display()
            ))
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => Some(unknown(format!(
            "the marker {} cannot be read: {e}",
            path.display()
        ))),
    }
}

/// Writes the marker durably: temp file, fsync, rename, fsync of the folder.
pub fn write(state_dir: &Path, m: &UpgradeMarker) -> Result<()> {
    let io = |e| Error::Core(holdfast_core::Error::io(state_dir, e));
    holdfast_core::private::create_dir_all(state_dir).map_err(io)?;
    holdfast_core::private::write_durably(
        &marker_path(state_dir, &m.app),
        &serde_json::to_vec_pretty(m).expect("serialises"),
    )
    .map_err(io)
}

pub fn clear(state_dir: &Path, app: &str) -> Result<()> {
    match std::fs::remove_file(marker_path(state_dir, app)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Core(holdfast_core::Error::io(
            marker_path(state_dir, app),
            e,
        ))),
    }
}

/// The three ways out of a failed upgrade, as commands.
pub fn ways_out(m: &UpgradeMarker) -> String {
    let short = &m.snapshot[..m.snapshot.len().min(8)];
    format!(
        "resume: `holdfast upgrade --app {app} --resume -- {cmd}` (runs the upgrade again on \
         the stopped service, then starts it); abandon: `holdfast upgrade --app {app} \
         --abandon` (clears this state; the service stays stopped until you start it); \
         restore: `holdfast restore {short} --app {app} --in-place --force-version` (the \
         state before the upgrade)",
        app = m.app,
        cmd = m.command
    )
}

/// The error every run of the application's procedure fails with while `m` is set.
pub fn pending(m: &UpgradeMarker) -> Error {
    Error::step(
        "failed upgrade pending",
        format!(
            "the upgrade of {} failed at {} ({}); no backup is made and the service is not \
             started on a half-upgraded data directory until one of these: {}",
            m.app,
            m.time.format("%Y-%m-%d %H:%M:%S UTC"),
            m.error,
            ways_out(m)
        ),
    )
}

/// Fails while a failed upgrade of `app` is pending.
pub fn ensure_none_pending(state_dir: &Path, app: &str) -> Result<()> {
    match read(state_dir, app) {
        Some(m) => Err(pending(&m)),
        None => Ok(()),
    }
}
