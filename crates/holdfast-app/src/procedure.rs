//! The documented backup procedure as one call: quiesce, stop or snapshot, back up the data
//! directory and the databases together, start again, and record honestly how it went.
//!
//! The order matters more than anything else here. In `stop` mode the service is started
//! again as soon as the data has been read (before the repository commit, to keep downtime
//! short) and in every failure path (a guard); in `snapshot` mode the volume snapshot is
//! unmounted and destroyed in every path; nothing here may leave the application down or a
//! snapshot behind because a backup failed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use holdfast_core::backup::{
    self, AttachmentSource, BackupHooks, BackupOptions, BackupOutcome, Progress,
};
use holdfast_core::exclude::Excludes;
use holdfast_core::snapshot::Snapshot;
use holdfast_core::Repository;
use serde::Serialize;

use crate::config::Mode;
use crate::error::{Error, Result};
use crate::postgres::Postgres;
use crate::resolved::Resolved;
use crate::service::{self, QuietCheck, Stopped};
use crate::volume::Volume;

/// The step during which data is read (a progress bar belongs to it alone).
pub const BACKING_UP_STEP: &str = "backing up";

/// The `app` field of a snapshot (docs/format.md): which application it is of, so that
/// restores find it and its retention applies. `excluded` are the tiers left out of it.
pub fn app_record(
    app: &Resolved,
    version: Option<&str>,
    excluded: &[&crate::profile::Tier],
) -> serde_json::Value {
    serde_json::json!({
        "name": app.name,
        "profile": app.profile.name.as_str(),
        "version": version,
        "data_dir": app.data_dir(),
        "excluded_tiers": excluded.iter().map(|t| t.name).collect::<Vec<_>>(),
        "excluded_folders": excluded.iter().flat_map(|t| t.folders.iter()).collect::<Vec<_>>(),
    })
}

/// Recorded in a snapshot's consistency notes when the service was found stopped.
pub const NOT_RUNNING_NOTE: &str =
    "the service was not running when the backup started: backed up as it was and left stopped";

/// What a caller adds to a run of the procedure.
pub struct RunOptions<'a> {
    pub tags: Vec<String>,
    pub excludes: Vec<String>,
    pub exclude_if_present: Vec<String>,
    pub state_dir: PathBuf,
    pub progress: &'a Progress,
    pub cancel: &'a AtomicBool,
    /// Set while the application is stopped: a second interrupt must not kill us before it
    /// is started again.
    pub critical: &'a AtomicBool,
    /// Fails when committing is no longer safe (the repository lock was lost).
    pub ensure_lock: &'a dyn Fn() -> holdfast_core::Result<()>,
    /// Told about each step as it starts, for the terminal.
    pub on_step: &'a dyn Fn(&str),
    /// Overrides of the configured host name and one-file-system setting.
    pub host: Option<String>,
    pub one_file_system: bool,
    /// Read every file, ignoring the parent snapshot.
    pub force: bool,
    /// Intermediate index files during the run.
    pub checkpoints: Option<holdfast_core::saver::Checkpoints>,
    /// The caller (an upgrade) stopped the service and will start it: in mode `stop`, no
    /// status, quiesce, stop or start here.
    pub service_stopped_by_caller: bool,
}

pub struct AppOutcome {
    pub backup: BackupOutcome,
    /// The service could not be started again (the snapshot is fine).
    pub start_error: Option<String>,
    /// Cleaning up the volume snapshot failed (the snapshot is fine).
    pub cleanup_error: Option<String>,
}

/// The dumps configured for `app`, as attachment sources.
pub fn database_sources(app: &Resolved, state_dir: &Path) -> Result<Vec<Postgres>> {
    app.config
        .postgres
        .iter()
        .map(|pg| Postgres::new(pg, &state_dir.join("tmp")))
        .collect()
}

struct Hooks<'a> {
    app: &'a Resolved,
    mode: Mode,
    version: Option<String>,
    stopped: Option<Stopped>,
    downtime: Option<f64>,
    start_error: Option<String>,
    notes: Vec<String>,
    ensure_lock: &'a dyn Fn() -> holdfast_core::Result<()>,
    critical: &'a AtomicBool,
}

impl BackupHooks for Hooks<'_> {
    fn before_commit(&mut self) -> holdfast_core::Result<()> {
        // Start first: whatever the lock says, the application must run again.
        if let Some(s) = &mut self.stopped {
            match s.start() {
                Ok(d) => self.downtime = Some(d),
                Err(e) => {
                    self.downtime = Some(s.elapsed());
                    self.start_error = Some(e);
                }
            }
            self.critical.store(false, Ordering::SeqCst);
        }
        (self.ensure_lock)()
    }

    fn annotate(&mut self, snap: &mut Snapshot) {
        let app = self.app;
        snap.extra.insert(
            "app".into(),
            app_record(app, self.version.as_deref(), &app.excluded_tiers),
        );
        let c = snap.consistency.get_or_insert_with(Default::default);
        c.mode = self.mode.as_str().into();
        c.downtime_secs = self.downtime;
        c.notes.append(&mut self.notes);
        match self.mode {
            Mode::Stop => {
                // A copy missing files is not a consistent copy, however it was taken.
                c.consistent = snap.warnings.is_empty();
                if let Some(e) = &self.start_error {
                    c.notes
                        .push(format!("the service did not start again: {e}"));
                }
            }
            Mode::Snapshot => c.consistent = snap.warnings.is_empty(),
            Mode::Live => {
                c.consistent = false;
                c.notes.push(format!(
                    "live backup: every file was read whole and unchanged (or is listed as inconsistent), \
                     but files were read at different moments while the application ran; \
                     {} file(s) were read again, {} stayed inconsistent, {} vanished",
                    c.reread.len(),
                    c.inconsistent.len(),
                    c.vanished.len()
                ));
            }
        }
    }
}

/// Checks, before the service is stopped or a volume snapshot taken, everything a run needs:
/// the data directory, the service and quiesce commands, the snapshot provider's volume,
/// and a connection to every PostgreSQL source with its credentials. (The repository is
/// opened and locked by the caller before this.) Every failure is named in one error; the
/// service is not touched. Returns what was checked.
pub fn preflight(app: &Resolved, mode: Mode, state_dir: &Path) -> Result<Vec<String>> {
    let mut checked = Vec::new();
    let mut failed = Vec::new();
    let data_dir = app.data_dir();
    if data_dir.is_dir() {
        checked.push(format!("data directory {} exists", data_dir.display()));
    } else {
        failed.push(format!(
            "data directory {} does not exist",
            data_dir.display()
        ));
    }
    let mut commands: Vec<(&str, String)> = Vec::new();
    match mode {
        Mode::Stop => {
            match (&app.stop, &app.start) {
                (Some(stop), Some(start)) => {
                    commands.push(("service.stop", stop.clone()));
                    commands.push(("service.start", start.clone()));
                }
                _ => {
                    failed.push("consistency \"stop\" needs service.stop and service.start".into())
                }
            }
            if let Some(s) = &app.status {
                commands.push(("service.status", s.clone()));
            }
            match app.quiet_check() {
                Some(QuietCheck::Command(q)) => commands.push(("service.quiesce", q)),
                Some(QuietCheck::DssApi(api)) => match api.running() {
                    Ok(running) => checked.push(format!(
                        "{} answers ({} running now)",
                        api.describe(),
                        running.len()
                    )),
                    Err(e) => failed.push(format!("the no-job check: {e}")),
                },
                None => {}
            }
        }
        Mode::Snapshot => match &app.config.snapshot {
            None => failed.push(format!(
                "consistency \"snapshot\" needs a [app.{}.snapshot] table",
                app.name
            )),
            Some(v) => {
                if v.provider == crate::config::ProviderName::Btrfs {
                    let sub = v.subvolume.clone().unwrap_or(data_dir.to_path_buf());
                    if sub.is_dir() {
                        checked.push(format!("btrfs subvolume {} exists", sub.display()));
                    } else {
                        failed.push(format!("btrfs subvolume {} does not exist", sub.display()));
                    }
                }
                for (key, c) in [("snapshot.create", &v.create), ("snapshot.mount", &v.mount)] {
                    if let Some(c) = c {
                        commands.push((key, c.clone()));
                    }
                }
            }
        },
        Mode::Live => {}
    }
    for (key, cmd) in &commands {
        match command_problem(cmd) {
            None => checked.push(format!("{key}: {cmd}")),
            Some(why) => failed.push(format!("{key} `{cmd}`: {why}")),
        }
    }
    match database_sources(app, state_dir) {
        Ok(dbs) => {
            for db in dbs {
                match db.server_version() {
                    Ok(v) => checked.push(format!(
                        "PostgreSQL {} accepts a connection (server {v})",
                        db.url.server()
                    )),
                    Err(e) => failed.push(format!("PostgreSQL {}: {e}", db.url.server())),
                }
            }
        }
        Err(e) => failed.push(e.to_string()),
    }
    if !failed.is_empty() {
        return Err(Error::Preflight(format!(
            "application {}: {}",
            app.name,
            failed.join("; ")
        )));
    }
    Ok(checked)
}

/// Why the program a shell command starts with cannot run, if it visibly cannot: a path that
/// is not an executable file, or a name not on PATH. Anything the shell itself interprets
/// (builtins, assignments, subshells) is not judged.
fn command_problem(cmd: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let first = cmd.split_whitespace().next()?;
    const SHELL: &[&str] = &[
        ":", "!", "{", "(", "exit", "cd", "exec", "set", "export", "if", "for", "while", "case",
        "test", "[", "true", "false", "echo", "printf", "eval", ".",
    ];
    if SHELL.contains(&first) || first.contains('=') || first.starts_with('(') {
        return None;
    }
    let executable = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if first.contains('/') {
        let p = Path::new(first);
        return if !p.exists() {
            Some(format!("{first} does not exist"))
        } else if !executable(p) {
            Some(format!("{first} is not an executable file"))
        } else {
            None
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|d| executable(&d.join(first))) {
        None
    } else {
        Some(format!("{first} is not on PATH"))
    }
}

/// Runs the application's quiesce check ([`Resolved::quiet_check`]) until it passes, as the
/// service's user; returns the attempts it took (0 without a check).
pub fn wait_until_quiet(
    app: &Resolved,
    user: Option<&crate::service::RunAs>,
    command_timeout: std::time::Duration,
    cancel: &AtomicBool,
    on_step: &dyn Fn(&str),
) -> Result<u32> {
    let cfg = &app.config.service;
    let Some(check) = app.quiet_check() else {
        return Ok(0);
    };
    on_step("waiting until no job is running");
    service::wait_quiet(
        &check,
        cfg.quiesce_timeout.as_std(),
        cfg.quiesce_interval.as_std(),
        command_timeout,
        cancel,
        user,
    )
}

/// Runs the whole procedure for `app` in `mode` and writes one snapshot holding the data
/// directory and the configured database dumps.
pub fn backup_app(
    repo: Arc<Repository>,
    app: &Resolved,
    mode: Mode,
    run: &RunOptions<'_>,
) -> Result<AppOutcome> {
    let cfg = &app.config;
    let data_dir = app.data_dir().to_path_buf();
    // One run of this application's procedure at a time, from the preflight to the end.
    let _app_lock = crate::applock::AppLock::acquire(&run.state_dir, &app.name, "backup")?;
    crate::upgrade_marker::ensure_none_pending(&run.state_dir, &app.name)?;
    (run.on_step)("preflight");
    preflight(app, mode, &run.state_dir)?;
    let version = app.version_in(&data_dir);
    let dbs = database_sources(app, &run.state_dir)?;
    let command_timeout = cfg.service.command_timeout.as_std();
    let mut hooks = Hooks {
        app,
        mode,
        version,
        stopped: None,
        downtime: None,
        start_error: None,
        notes: Vec::new(),
        ensure_lock: run.ensure_lock,
        critical: run.critical,
    };
    let mut read_root = data_dir.clone();
    let mut volume: Option<(Volume, crate::volume::Taken)> = None;
    let mut extra_excludes = Vec::new();
    match mode {
        Mode::Stop => {
            let (Some(stop), Some(start)) = (&app.stop, &app.start) else {
                return Err(Error::Config(format!(
                    "application {}: consistency \"stop\" needs service.stop and service.start",
                    app.name
                )));
            };
            let user = app.service_user()?;
            let running = if run.service_stopped_by_caller {
                None
            } else {
                service::is_running(app.status.as_deref(), command_timeout, user.as_ref())?
            };
            if run.service_stopped_by_caller {
                hooks.notes.push(
                    "the service was stopped by the upgrade for this backup, in the same stop window"
                        .into(),
                );
            } else if running == Some(false) {
                // Stopped on purpose (maintenance): back up what is there, leave it stopped.
                (run.on_step)("the service is not running: backing up as it is");
                hooks.notes.push(NOT_RUNNING_NOTE.into());
            } else {
                let n =
                    wait_until_quiet(app, user.as_ref(), command_timeout, run.cancel, run.on_step)?;
                if n > 1 {
                    hooks
                        .notes
                        .push(format!("quiesce check passed after {n} attempts"));
                }
                (run.on_step)("stopping the service");
                run.critical.store(true, Ordering::SeqCst);
                match Stopped::stop_as(stop, start, command_timeout, user) {
                    Ok(s) => hooks.stopped = Some(s),
                    Err(e) => {
                        run.critical.store(false, Ordering::SeqCst);
                        return Err(e);
                    }
                }
            }
        }
        Mode::Snapshot => {
            let vcfg = cfg.snapshot.as_ref().ok_or_else(|| {
                Error::Config(format!(
                    "application {}: consistency \"snapshot\" needs a [app.{}.snapshot] table",
                    app.name, app.name
                ))
            })?;
            let v = Volume::new(&app.name, vcfg, &data_dir, &run.state_dir, command_timeout);
            for n in v.clean_leftovers()? {
                hooks.notes.push(format!(
                    "removed volume snapshot {n} left by an earlier run"
                ));
            }
            (run.on_step)(&format!("creating a {} volume snapshot", v.provider()));
            let taken = v.create()?;
            hooks.notes.push(format!(
                "read from {} volume snapshot {}",
                v.provider(),
                taken.name
            ));
            if !dbs.is_empty() {
                hooks.notes.push(
                    "databases were dumped while the application ran, alongside the volume snapshot"
                        .into(),
                );
            }
            read_root = taken.read_path.clone();
            extra_excludes.extend(taken.excludes.iter().cloned());
            volume = Some((v, taken));
        }
        Mode::Live => {}
    }

    // Excluded tiers are kept as empty folders with their metadata, so a restore recreates
    // them as the application expects (as after a tar restore of an excluding backup).
    let tier_patterns = app.tier_patterns(&read_root);
    let mut patterns = Vec::new();
    // Volume snapshots kept inside the data directory are never part of a backup.
    if let Some(v) = &cfg.snapshot {
        if v.provider == crate::config::ProviderName::Btrfs {
            let dir = v.snapshot_dir.clone().unwrap_or_else(|| {
                v.subvolume
                    .clone()
                    .unwrap_or(data_dir.clone())
                    .join(".holdfast-snapshots")
            });
            if let Ok(inner) = dir.strip_prefix(&data_dir) {
                patterns.push(globset::escape(&read_root.join(inner).to_string_lossy()));
            }
        }
    }
    patterns.extend(extra_excludes);
    patterns.extend(cfg.exclude.iter().cloned());
    patterns.extend(run.excludes.iter().cloned());
    let result = (|| -> Result<BackupOutcome> {
        let mut tags = cfg.tags.clone();
        tags.extend(run.tags.iter().cloned());
        tags.sort();
        tags.dedup();
        let opts = BackupOptions {
            excludes: Excludes::new(&patterns, &run.exclude_if_present)?,
            empty_dirs: Excludes::new(&tier_patterns, &[])?,
            one_file_system: cfg.one_file_system || run.one_file_system,
            tags,
            hostname: run.host.clone().or(cfg.host.clone()),
            parent: None,
            force: run.force,
            record_paths_as: Some(vec![data_dir.clone()]),
            reread_changed: if mode == Mode::Live {
                cfg.live_retries
            } else {
                0
            },
            expect_vanishing: mode == Mode::Live,
            attachments: dbs
                .iter()
                .map(|d| Arc::new(d.clone()) as Arc<dyn AttachmentSource>)
                .collect(),
            checkpoints: run.checkpoints.clone(),
        };
        (run.on_step)(BACKING_UP_STEP);
        Ok(backup::backup(
            repo.clone(),
            std::slice::from_ref(&read_root),
            &opts,
            run.progress,
            run.cancel,
            &mut hooks,
        )?)
    })();
    // Every path: the service runs again, the volume snapshot goes.
    if let Some(mut s) = hooks.stopped.take() {
        if let Err(e) = s.start() {
            hooks.start_error.get_or_insert(e);
        }
        run.critical.store(false, Ordering::SeqCst);
    }
    let mut cleanup_error = None;
    if let Some((v, taken)) = volume {
        if let Err(e) = v.release(taken, result.is_ok()) {
            cleanup_error = Some(e.to_string());
        }
    }
    match result {
        Ok(backup) => Ok(AppOutcome {
            backup,
            start_error: hooks.start_error,
            cleanup_error,
        }),
        Err(e) => {
            // A failed dump is an application step failing: name it, with its own exit code.
            let e = match dbs.iter().find_map(|d| d.failure.lock().unwrap().clone()) {
                Some(msg) if !e.interrupted() => Error::step("database dump", msg),
                _ => e,
            };
            if let Some(se) = hooks.start_error {
                return Err(Error::step(
                    "backup failed and the service did not start again",
                    format!("{e}; {se}"),
                ));
            }
            Err(e)
        }
    }
}

/// One tier (or the rest) of a data directory, measured.
#[derive(Debug, Serialize)]
pub struct TierSize {
    pub tier: String,
    pub folders: Vec<String>,
    pub excluded: bool,
    pub files: u64,
    pub bytes: u64,
    pub note: String,
}

#[derive(Debug, Serialize)]
pub struct Plan {
    pub app: String,
    pub profile: String,
    pub data_dir: PathBuf,
    pub version: Option<String>,
    pub consistency: String,
    pub steps: Vec<String>,
    pub tiers: Vec<TierSize>,
    pub warnings: Vec<String>,
}

fn measure(path: &Path) -> (u64, u64) {
    let mut files = 0;
    let mut bytes = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = p.symlink_metadata() else {
            continue;
        };
        if m.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        } else {
            files += 1;
            if m.is_file() {
                bytes += m.len();
            }
        }
    }
    (files, bytes)
}

/// What `backup --app` would do, and the size of every tier, kept and excluded.
/// Said by `plan` and `config check` when stop mode has no "no job running" check.
pub fn no_quiesce_warning(app: &Resolved) -> String {
    format!(
        "stop mode will stop {} without checking that no job or scenario is running (no \
         service.quiesce{}): a running job is ended the way the stop command ends it",
        app.name,
        if app.profile.name == crate::config::ProfileName::Dss {
            " and no service.dss_api_key_file"
        } else {
            ""
        }
    )
}

pub fn plan(app: &Resolved, mode: Mode) -> Plan {
    let cfg = &app.config;
    let data_dir = app.data_dir();
    let mut steps = Vec::new();
    let mut warnings = Vec::new();
    match mode {
        Mode::Stop => {
            if let Some(s) = &app.status {
                steps.push(format!(
                    "ask the service's status: `{s}` (not running: back up as it is, leave it stopped)"
                ));
            }
            if let Some(check) = app.quiet_check() {
                if let QuietCheck::DssApi(api) = &check {
                    warnings.extend(api.key_file_warning());
                }
                steps.push(format!(
                    "wait until {} says no job is running (every {}, at most {})",
                    check.describe(),
                    cfg.service.quiesce_interval,
                    cfg.service.quiesce_timeout
                ));
            } else {
                warnings.push(no_quiesce_warning(app));
            }
            steps.push(format!(
                "stop the service: `{}`",
                app.stop.clone().unwrap_or_default()
            ));
        }
        Mode::Snapshot => {
            let p = cfg
                .snapshot
                .as_ref()
                .map(|s| format!("{:?}", s.provider).to_lowercase());
            steps.push(format!(
                "create and mount a read-only {} volume snapshot",
                p.unwrap_or_default()
            ));
        }
        Mode::Live => steps.push(format!(
            "read while the application runs; re-read a changed file up to {} times",
            cfg.live_retries
        )),
    }
    steps.push(format!("back up {}", data_dir.display()));
    for pg in &cfg.postgres {
        let fmt = match pg.format {
            crate::config::DumpFormat::Custom => {
                format!("pg_dump -Fc -Z{}, streamed", pg.compression)
            }
            crate::config::DumpFormat::Directory => {
                format!("pg_dump -Fd -Z{} -j {}", pg.compression, pg.jobs)
            }
        };
        let url = crate::postgres::PgUrl::parse(&pg.url)
            .map(|u| format!("{} on {}", u.dbname, u.server()))
            .unwrap_or(pg.url.clone());
        steps.push(format!(
            "at the same time, dump PostgreSQL database {url} ({fmt}){}",
            if pg.globals {
                ", plus roles and tablespaces"
            } else {
                ""
            }
        ));
    }
    match mode {
        Mode::Stop => steps.push(format!(
            "start the service as soon as the data is read (also on failure): `{}`",
            app.start.clone().unwrap_or_default()
        )),
        Mode::Snapshot => steps.push(
            match cfg.snapshot.as_ref().map(|s| s.keep_snapshots).unwrap_or(0) {
                0 => "unmount and destroy the volume snapshot (also on failure)".to_string(),
                n => format!("unmount the volume snapshot and keep the newest {n}"),
            },
        ),
        Mode::Live => {}
    }
    steps.push("write one snapshot holding the data directory and the dumps".into());

    let mut tiers = Vec::new();
    let mut tiered: Vec<&str> = Vec::new();
    for t in app.profile.tiers {
        let excluded = app.excluded_tiers.iter().any(|x| x.name == t.name);
        let (mut files, mut bytes) = (0, 0);
        for f in t.folders {
            let (a, b) = measure(&data_dir.join(f));
            files += a;
            bytes += b;
            tiered.push(f);
        }
        if excluded && t.name == "rebuildable" {
            warnings.push(format!("tier rebuildable is excluded: {}", t.note));
        }
        tiers.push(TierSize {
            tier: t.name.into(),
            folders: t.folders.iter().map(|s| s.to_string()).collect(),
            excluded,
            files,
            bytes,
            note: t.note.into(),
        });
    }
    let (mut files, mut bytes) = (0, 0);
    if let Ok(rd) = std::fs::read_dir(data_dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if tiered.contains(&name.as_str()) {
                continue;
            }
            let (a, b) = measure(&e.path());
            files += a;
            bytes += b;
        }
    } else {
        warnings.push(format!(
            "data directory {} cannot be read",
            data_dir.display()
        ));
    }
    tiers.push(TierSize {
        tier: "everything else".into(),
        folders: Vec::new(),
        excluded: false,
        files,
        bytes,
        note: "configuration, projects and the rest of the data directory".into(),
    });
    Plan {
        app: app.name.clone(),
        profile: app.profile.name.as_str().into(),
        data_dir: data_dir.to_path_buf(),
        version: app.version_in(data_dir),
        consistency: mode.as_str().into(),
        steps,
        tiers,
        warnings,
    }
}
