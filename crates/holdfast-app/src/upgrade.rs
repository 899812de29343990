//! The marker a failed upgrade leaves, so that nothing runs the application on a
//! half-upgraded data directory.
//!
//! When the upgrade command fails, the service is left stopped and this marker is written.
//! While it is set, scheduled runs and `backup --app` make no backup and never start the
//! service; they fail loudly (exit code 5, run log, metrics, hooks) and print the three ways
//! out: resume the upgrade, abandon it, or restore the pre-upgrade snapshot in place.
//!
//! [`upgrade`] is the sequence itself, one stop window from the quiesce check to the start,
//! for the CLI and any other caller alike.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use holdfast_core::id::SnapshotId;
use serde::{Deserialize, Serialize};

use crate::config::Mode;
use crate::error::{Error, Result};
use crate::resolved::Resolved;
use crate::service::{self, Stopped};

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

/// What an upgrade run needs besides the application.
pub struct UpgradeOptions<'a> {
    /// The upgrade command, run with `sh -c` as the service's user.
    pub command: String,
    /// Longest the command may take.
    pub timeout: std::time::Duration,
    pub state_dir: PathBuf,
    /// Run the command again after a failed upgrade (no new backup), instead of a new upgrade.
    pub resume: bool,
    pub cancel: &'a AtomicBool,
    /// Set while the service is stopped (a second Ctrl-C must not leave it so).
    pub critical: &'a AtomicBool,
    pub on_step: &'a dyn Fn(&str),
}

#[derive(Debug, Serialize)]
pub struct UpgradeReport {
    pub pre_upgrade_snapshot: SnapshotId,
    pub command: String,
    /// The version the data directory says after the upgrade.
    pub version: Option<String>,
}

/// Upgrades `app` in one stop window: preflight, quiesce, stop, the pre-upgrade backup (stop
/// mode whatever the configured mode, tagged `pre-upgrade`), the command, start. The caller
/// holds the application's lock ([`crate::applock::AppLock`]) around it.
///
/// `hold_repository` opens the repository and takes its shared lock before the service is
/// stopped (a wrong password or a running prune must not cost a stop and a start); what it
/// returns is held to the end. `back_up(stopped_here)` takes the pre-upgrade backup and
/// returns its exit code and snapshot id; `stopped_here` says that this run stopped the
/// service for it (and starts it itself). If the backup fails, the service is started again
/// and nothing is upgraded. If the command fails, the service is left stopped and the
/// failed-upgrade marker written; `resume` then runs the command again on the stopped
/// service.
pub fn upgrade<E: From<Error>>(
    app: &Resolved,
    opts: &UpgradeOptions<'_>,
    hold_repository: &mut dyn FnMut() -> std::result::Result<Box<dyn std::any::Any>, E>,
    back_up: &mut dyn FnMut(bool) -> std::result::Result<(i32, String), E>,
) -> std::result::Result<UpgradeReport, E> {
    let say = opts.on_step;
    let state_dir = &opts.state_dir;
    let (Some(stop), Some(start)) = (&app.stop, &app.start) else {
        return Err(Error::Config(format!(
            "application {} has no service.stop/start to upgrade with",
            app.name
        ))
        .into());
    };
    let step_timeout = app.config.service.command_timeout.as_std();
    let user = app.service_user()?;
    let marker = read(state_dir, &app.name);
    let mut _repo_hold = None;
    let (snap_id, was_running, mut stopped) = match (marker, opts.resume) {
        (Some(m), true) => {
            if service::is_running(app.status.as_deref(), step_timeout, user.as_ref())?
                == Some(true)
            {
                return Err(Error::step(
                    "upgrade --resume",
                    "the service is running again: refusing to run the upgrade under it; \
                     stop it first, or --abandon",
                )
                .into());
            }
            say("resuming the failed upgrade on the stopped service");
            let id: SnapshotId = m.snapshot.parse().map_err(|_| {
                Error::step(
                    "upgrade --resume",
                    "the failed upgrade's marker names no snapshot; abandon it or restore",
                )
            })?;
            (id, m.service_was_running, None)
        }
        (Some(m), false) => return Err(pending(&m).into()),
        (None, true) => {
            return Err(
                Error::Config(format!("no failed upgrade of {} to resume", app.name)).into(),
            )
        }
        (None, false) => {
            // 1. Preflight, then one stop window: quiesce, stop, back up, upgrade, start.
            //    Jobs cannot start in between.
            crate::procedure::preflight(app, Mode::Stop, state_dir)?;
            _repo_hold = Some(hold_repository()?);
            let running = service::is_running(app.status.as_deref(), step_timeout, user.as_ref())?;
            let stopped = if running == Some(false) {
                say("the service is not running: upgrading it as it is, and leaving it stopped");
                None
            } else {
                crate::procedure::wait_until_quiet(
                    app,
                    user.as_ref(),
                    step_timeout,
                    opts.cancel,
                    say,
                )?;
                say("stopping the service for the backup and the upgrade");
                opts.critical.store(true, Ordering::SeqCst);
                Some(Stopped::stop_as(stop, start, step_timeout, user.clone())?)
            };
            // 2. The pre-upgrade backup of the stopped service. If it fails, dropping the
            //    guard starts the service again: nothing was upgraded.
            let (code, id) = back_up(stopped.is_some())?;
            if code != holdfast_core::error::exit::OK {
                return Err(Error::step(
                    "upgrade",
                    format!(
                        "the pre-upgrade backup did not complete cleanly (exit code {code}); not \
                         upgrading, the service runs as before"
                    ),
                )
                .into());
            }
            let id: SnapshotId = id.parse().map_err(|_| {
                Error::step(
                    "upgrade",
                    format!("the pre-upgrade backup returned no snapshot id ({id})"),
                )
            })?;
            (id, running != Some(false), stopped)
        }
    };
    // 3. The upgrade, as the service's user.
    let command = &opts.command;
    say(&format!("running {command}"));
    if let Err(e) = service::run_step_as("upgrade", command, &[], opts.timeout, user.as_ref()) {
        if let Some(s) = stopped.take() {
            s.disarm();
        }
        opts.critical.store(false, Ordering::SeqCst);
        let m = UpgradeMarker {
            app: app.name.clone(),
            time: chrono::Utc::now(),
            snapshot: snap_id.to_hex(),
            command: command.clone(),
            error: e.to_string(),
            service_was_running: was_running,
        };
        // The upgrade's own error and the ways out are said even if the marker cannot be
        // written (then scheduled runs are not held back: say so).
        let unguarded = match write(state_dir, &m) {
            Ok(()) => String::new(),
            Err(w) => format!(
                " WARNING: the failed-upgrade marker could not be written ({w}): scheduled runs \
                 are NOT held back; disable them until this is resolved."
            ),
        };
        return Err(Error::step(
            "upgrade",
            format!(
                "{e}; the service was left stopped and scheduled runs will neither back it up \
                 nor start it until one of these: {}.{unguarded}",
                ways_out(&m)
            ),
        )
        .into());
    }
    clear(state_dir, &app.name)?;
    // 4. Start, if it ran before.
    if let Some(mut s) = stopped {
        say("starting the service");
        let started = s.start();
        opts.critical.store(false, Ordering::SeqCst);
        started.map_err(|e| Error::step("starting the service after the upgrade", e))?;
    } else if opts.resume && was_running {
        say("starting the service");
        service::run_step_as(
            "starting the service",
            start,
            &[],
            step_timeout,
            user.as_ref(),
        )?;
    }
    Ok(UpgradeReport {
        pre_upgrade_snapshot: snap_id,
        command: command.clone(),
        version: app.version_in(app.data_dir()),
    })
}
