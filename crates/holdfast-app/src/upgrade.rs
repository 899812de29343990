//! An upgrade in one stop window, from the quiesce check to the start, for the CLI and any
//! other caller alike: jobs cannot start between the pre-upgrade backup and the upgrade, and
//! a failed upgrade leaves the service stopped with a marker ([`crate::upgrade_marker`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use holdfast_core::id::SnapshotId;
use serde::Serialize;

use crate::config::Mode;
use crate::error::Error;
use crate::resolved::Resolved;
use crate::service::{self, Stopped};
use crate::upgrade_marker::{clear, pending, read, ways_out, write, UpgradeMarker};

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
