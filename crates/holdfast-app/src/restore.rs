//! Restoring an application: pristine (in place) or relocated, with its databases.
//!
//! A pristine restore never deletes anything: the current content of the data directory is
//! moved aside to a dated sibling and the current databases are dumped next to it before
//! anything is replaced, and every failure says where they are. The version rule of the
//! procedure (never restore onto an older version) is checked before the first change.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use holdfast_core::id::SnapshotId;
use holdfast_core::restore::{
    self as core_restore, RestoreOptions, RestoreProgress, RestoreReport,
};
use holdfast_core::snapshot::{Attachment, RootLayout, Snapshot};
use holdfast_core::tree::NodeKind;
use holdfast_core::Repository;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::postgres::{DumpInput, PgUrl, Postgres};
use crate::profile::compare_versions;
use crate::resolved::Resolved;
use crate::service::{run_step, Stopped};

/// The application recorded in a snapshot.
pub fn recorded_app(snap: &Snapshot) -> Option<(String, Option<String>)> {
    let a = snap.extra.get("app")?;
    let name = a.get("name")?.as_str()?.to_string();
    let version = a.get("version").and_then(|v| v.as_str()).map(String::from);
    Some((name, version))
}

/// A snapshot chosen for an application, and how, when that is worth saying.
pub struct Selected {
    pub id: holdfast_core::id::SnapshotId,
    pub snap: Snapshot,
    /// Set when the choice is not the obvious one (another host's snapshot).
    pub note: Option<String>,
}

/// Resolves `spec` for application `app`. An id (prefix) is taken as given. `latest` means
/// the newest snapshot *recorded as this application's* (not of a path: on another machine or
/// location the data directory differs): this host's newest first, else, as in a migration,
/// the newest from any host, saying which. When nothing matches, the error lists what the
/// repository holds. Like [`Repository::find_snapshot`], `latest` fails while any snapshot
/// cannot be read.
pub fn select_app_snapshot(
    repo: &Repository,
    app: &str,
    spec: &str,
    filter: &holdfast_core::snapshot::SnapshotFilter,
) -> Result<Selected> {
    if spec != "latest" {
        let (id, snap) = repo.find_snapshot(spec, filter)?;
        return Ok(Selected {
            id,
            snap,
            note: None,
        });
    }
    let (snaps, problems) = repo.list_snapshots_lenient()?;
    if let Some(p) = problems.first() {
        return Err(p
            .refusal("it may be this application's latest, so `latest` is not chosen; name a snapshot by id")
            .into());
    }
    let of_app: Vec<&(holdfast_core::id::SnapshotId, Snapshot)> = snaps
        .iter()
        .filter(|(_, s)| filter.matches(s))
        .filter(|(_, s)| recorded_app(s).map(|(n, _)| n == app).unwrap_or(false))
        .collect();
    let here = holdfast_core::host::hostname();
    if let Some((id, snap)) = of_app.iter().rev().find(|(_, s)| s.hostname == here) {
        return Ok(Selected {
            id: *id,
            snap: snap.clone(),
            note: None,
        });
    }
    if let Some((id, snap)) = of_app.last() {
        return Ok(Selected {
            id: *id,
            snap: snap.clone(),
            note: Some(format!(
                "no snapshot of {app} from this host ({here}): chose the newest from host {}, \
                 snapshot {} of {}",
                snap.hostname,
                id.short(),
                snap.time.format("%Y-%m-%d %H:%M:%S UTC")
            )),
        });
    }
    let mut held: std::collections::BTreeMap<(String, String), usize> = Default::default();
    for (_, s) in &snaps {
        let name = recorded_app(s)
            .map(|(n, _)| format!("application {n}"))
            .unwrap_or_else(|| format!("paths {}", s.paths.join(" ")));
        *held.entry((name, s.hostname.clone())).or_default() += 1;
    }
    let list = if held.is_empty() {
        "no snapshots at all".to_string()
    } else {
        held.iter()
            .map(|((what, host), n)| format!("{what} from {host}: {n}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    Err(Error::Core(holdfast_core::Error::NotFound(format!(
        "a snapshot of application {app} matching the filters (the repository holds: {list})"
    ))))
}

/// The version rule: a backup may be restored onto the same or a newer version only.
pub fn check_version(
    app: &str,
    backup: Option<&str>,
    installed: Option<&str>,
    force: bool,
) -> Result<Option<String>> {
    match (backup, installed) {
        (Some(b), Some(i)) if compare_versions(i, b).is_lt() => {
            if force {
                Ok(Some(format!(
                    "restoring version {b} onto older version {i} because of --force-version"
                )))
            } else {
                Err(Error::Version {
                    app: app.into(),
                    backup: b.into(),
                    installed: i.into(),
                })
            }
        }
        (Some(b), None) => Ok(Some(format!(
            "the installed version is unknown: make sure it is {b} or newer (set installed_version_command to have holdfast check)"
        ))),
        _ => Ok(None),
    }
}

/// Writes each dump of `snap` into `dir` as files (`govern.dump`, `globals.sql`, ...).
pub fn write_dumps(repo: &Repository, snap: &Snapshot, dir: &Path) -> Result<Vec<PathBuf>> {
    require_dumps(snap)?;
    let mut written = Vec::new();
    for a in &snap.attachments {
        let sub = dir.join(a.name.replace('/', "-"));
        // Whole databases: owner-only folders, whatever the umask.
        holdfast_core::private::create_dir_all(&sub)
            .map_err(|e| Error::Core(holdfast_core::Error::io(&sub, e)))?;
        write_attachment(repo, snap, a, &sub)?;
        written.push(sub);
    }
    Ok(written)
}

/// `--dumps-to` of a snapshot without dumps is an error, found before anything is written.
fn require_dumps(snap: &Snapshot) -> Result<()> {
    if snap.attachments.is_empty() {
        return Err(Error::Core(holdfast_core::Error::NotFound(
            "a database dump in this snapshot for --dumps-to (it holds files only); nothing \
             was written"
                .into(),
        )));
    }
    Ok(())
}

/// Writes the files of attachment `a` into the new directory `target`, with the core
/// restore (so metadata and every safety check apply).
fn write_attachment(
    repo: &Repository,
    snap: &Snapshot,
    a: &Attachment,
    target: &Path,
) -> Result<()> {
    let as_snapshot = Snapshot {
        tree: a.tree,
        layout: RootLayout::DirContent,
        root: None,
        attachments: Vec::new(),
        ..snap.clone()
    };
    let opts = RestoreOptions {
        target: target.to_path_buf(),
        include: Vec::new(),
        exclude: Vec::new(),
        overwrite: false,
        verify: false,
        owners: Default::default(),
    };
    core_restore::restore(
        repo,
        &as_snapshot,
        &opts,
        &RestoreProgress::default(),
        &AtomicBool::new(false),
    )?;
    Ok(())
}

/// Restores the dump attachment `a` of `snap` into the database at `target`.
pub fn restore_dump(
    repo: &Repository,
    snap: &Snapshot,
    pg: &Postgres,
    a: &Attachment,
    target: &PgUrl,
    clean: bool,
    scratch: &Path,
) -> Result<()> {
    let tree = repo.load_tree(&a.tree)?;
    match a.kind.as_str() {
        "postgresql-custom" => {
            let node = tree
                .nodes
                .iter()
                .find(|n| n.kind == NodeKind::File && n.name.lossy().ends_with(".dump"))
                .ok_or_else(|| {
                    Error::Core(holdfast_core::Error::corrupt(
                        format!("dump {}", a.name),
                        "no .dump file in it",
                    ))
                })?;
            let mut feed = |w: &mut dyn std::io::Write| core_restore::copy_content(repo, node, w);
            pg.restore_into(target, clean, DumpInput::Stream(&mut feed))
        }
        "postgresql-directory" => {
            std::fs::create_dir_all(scratch)
                .map_err(|e| Error::Core(holdfast_core::Error::io(scratch, e)))?;
            let tmp = tempfile::Builder::new()
                .prefix("pgrestore-")
                .tempdir_in(scratch)
                .map_err(|e| Error::Core(holdfast_core::Error::io(scratch, e)))?;
            write_attachment(repo, snap, a, &tmp.path().join("d"))?;
            let dir = tree
                .nodes
                .iter()
                .find(|n| n.kind == NodeKind::Dir)
                .map(|n| tmp.path().join("d").join(n.name.as_os_str()))
                .ok_or_else(|| {
                    Error::Core(holdfast_core::Error::corrupt(
                        format!("dump {}", a.name),
                        "no directory in it",
                    ))
                })?;
            pg.restore_into(target, clean, DumpInput::Dir(&dir))
        }
        other => Err(Error::step(
            format!("restoring {}", a.name),
            format!("unknown dump kind '{other}'"),
        )),
    }
}

/// The database configured for dump `a` (by dump name), if any.
fn configured_db<'a>(dbs: &'a [Postgres], a: &Attachment) -> Option<&'a Postgres> {
    dbs.iter()
        .find(|d| a.name == format!("postgres/{}", d.name))
}

#[derive(Debug, Default, Serialize)]
pub struct AppRestoreReport {
    pub snapshot: String,
    pub target: PathBuf,
    pub files: Option<RestoreReport>,
    /// Where the previous content was moved (pristine restore).
    pub moved_aside: Option<PathBuf>,
    /// Where the previous databases were dumped (pristine restore).
    pub previous_dumps: Vec<PathBuf>,
    pub databases_restored: Vec<String>,
    pub dumps_written: Vec<PathBuf>,
    pub post_restore: Option<String>,
    pub notes: Vec<String>,
}

pub struct AppRestore<'a> {
    pub repo: &'a Repository,
    pub app: &'a Resolved,
    pub snap_id: SnapshotId,
    pub snap: &'a Snapshot,
    pub state_dir: PathBuf,
    pub force_version: bool,
    pub clean: bool,
    /// Restore the dumps into this database (relocated) instead of the configured ones.
    pub db_target: Option<String>,
    pub dumps_to: Option<PathBuf>,
    pub progress: &'a RestoreProgress,
    pub cancel: &'a AtomicBool,
    pub on_step: &'a dyn Fn(&str),
}

impl AppRestore<'_> {
    fn installed_version(&self, dir: &Path) -> Result<Option<String>> {
        if let Some(cmd) = &self.app.config.installed_version_command {
            let v = run_step(
                "reading the installed version",
                cmd,
                &[],
                std::time::Duration::from_secs(60),
            )?;
            return Ok(Some(v.trim().to_string()).filter(|v| !v.is_empty()));
        }
        Ok(self.app.version_in(dir))
    }

    fn backup_version(&self) -> Option<String> {
        recorded_app(self.snap).and_then(|(_, v)| v)
    }

    fn restore_files(&self, target: &Path, overwrite: bool) -> Result<RestoreReport> {
        let opts = RestoreOptions {
            target: target.to_path_buf(),
            include: Vec::new(),
            exclude: Vec::new(),
            overwrite,
            verify: false,
            owners: Default::default(),
        };
        Ok(core_restore::restore(
            self.repo,
            self.snap,
            &opts,
            self.progress,
            self.cancel,
        )?)
    }

    fn post_restore(
        &self,
        target: &Path,
        relocated: bool,
        report: &mut AppRestoreReport,
    ) -> Result<()> {
        if let Some(cmd) = &self.app.config.post_restore_command {
            let cmd = cmd.replace("{data_dir}", &target.to_string_lossy());
            (self.on_step)("running the post-restore step");
            let timeout = self.app.config.post_restore_timeout.as_std();
            run_step("post-restore step", &cmd, &[], timeout)?;
            report.post_restore = Some(cmd);
        }
        if !relocated {
            return Ok(());
        }
        for n in self.app.profile.relocation_notes {
            if report.post_restore.is_some() && n.starts_with("replay the DSS installer") {
                continue;
            }
            report
                .notes
                .push(n.replace("<data_dir>", &target.to_string_lossy()));
        }
        Ok(())
    }

    /// Stop, move aside, dump current databases, restore files and databases, start.
    pub fn in_place(&self) -> Result<AppRestoreReport> {
        let _app_lock = crate::applock::AppLock::acquire(
            &self.state_dir,
            &self.app.name,
            "restore --in-place",
        )?;
        // Restoring the pre-upgrade state is one way out of a failed upgrade: it clears the
        // marker, and starts the service if it ran before the upgrade stopped it.
        let pending_upgrade = crate::upgrade_marker::read(&self.state_dir, &self.app.name);
        let data_dir = self.app.data_dir().to_path_buf();
        let mut report = AppRestoreReport {
            snapshot: self.snap_id.short(),
            target: data_dir.clone(),
            ..Default::default()
        };
        let backup_version = self.backup_version();
        let installed = self.installed_version(&data_dir)?;
        if let Some(n) = check_version(
            &self.app.name,
            backup_version.as_deref(),
            installed.as_deref(),
            self.force_version,
        )? {
            report.notes.push(n);
        }
        let dbs = crate::procedure::database_sources(self.app, &self.state_dir)?;
        let timeout = parse_timeout(self.app);
        if self.app.stop.is_none() || self.app.start.is_none() {
            return Err(Error::Config(format!(
                "a pristine restore stops the application first: configure service.stop and service.start for {}",
                self.app.name
            )));
        }
        same_filesystem_as_parent(&data_dir)?;
        let user = self.app.service_user()?;
        let running =
            crate::service::is_running(self.app.status.as_deref(), timeout, user.as_ref())?;
        let mut stopped = match (&self.app.stop, &self.app.start) {
            (Some(_), Some(_)) if running == Some(false) => {
                report.notes.push(
                    "the service was not running before the restore: it was left stopped".into(),
                );
                None
            }
            (Some(stop), Some(start)) => {
                (self.on_step)("stopping the service");
                Some(Stopped::stop_as(stop, start, timeout, user.clone())?)
            }
            _ => None,
        };
        let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
        let file_name = data_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or("data".into());
        let aside = data_dir.with_file_name(format!("{file_name}.before-restore-{stamp}"));
        let dumps_dir =
            data_dir.with_file_name(format!("{file_name}.before-restore-{stamp}.databases"));
        let result = (|| -> Result<()> {
            // 1. The current databases, dumped next to where the content goes.
            if !dbs.is_empty() {
                (self.on_step)("dumping the current databases");
                for db in &dbs {
                    if db.exists(&db.url.dbname)? {
                        // Whole databases: owner-only, whatever the umask.
                        holdfast_core::private::create_dir_all(&dumps_dir)
                            .map_err(|e| Error::Core(holdfast_core::Error::io(&dumps_dir, e)))?;
                        let f = dumps_dir.join(format!("{}.dump", db.name));
                        holdfast_core::private::create(&f)
                            .map_err(|e| Error::Core(holdfast_core::Error::io(&f, e)))?;
                        db.dump_to_file(&db.url, &f)?;
                        report.previous_dumps.push(f);
                    }
                }
            }
            // 2. The current content, moved aside (never deleted).
            (self.on_step)("moving the current content aside");
            let moved = move_aside(&data_dir, &aside);
            // Name the aside directory whenever something is in it.
            if std::fs::read_dir(&aside)
                .map(|mut d| d.next().is_some())
                .unwrap_or(false)
            {
                report.moved_aside = Some(aside.clone());
            }
            moved?;
            // 3. The files.
            (self.on_step)("restoring files");
            report.files = Some(self.restore_files(&data_dir, false)?);
            // 4. The databases, replaced by the paired dumps.
            for a in &self.snap.attachments {
                let Some(db) = configured_db(&dbs, a) else {
                    report.notes.push(format!(
                        "dump {} has no configured database here: not restored (use --dumps-to)",
                        a.name
                    ));
                    continue;
                };
                (self.on_step)(&format!("replacing database {}", db.url.dbname));
                db.query(
                    &db.url.with_db("postgres"),
                    &format!(
                        "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                        db.url.dbname.replace('"', "\"\"")
                    ),
                )?;
                restore_dump(
                    self.repo,
                    self.snap,
                    db,
                    a,
                    &db.url,
                    false,
                    &self.state_dir.join("tmp"),
                )?;
                report.databases_restored.push(db.url.dbname.clone());
            }
            // 5. Upgrade step when the installation is newer than the backup.
            if let (Some(b), Some(i)) = (&backup_version, &installed) {
                if compare_versions(i, b).is_gt() {
                    self.post_restore(&data_dir, false, &mut report)?;
                }
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                if let Some(m) = &pending_upgrade {
                    crate::upgrade_marker::clear(&self.state_dir, &self.app.name)?;
                    report.notes.push(format!(
                        "the failed upgrade of {} is resolved by this restore",
                        m.app
                    ));
                    if m.service_was_running && stopped.is_none() {
                        if let Some(start) = &self.app.start {
                            (self.on_step)("starting the service (it ran before the upgrade)");
                            crate::service::run_step_as(
                                "starting the service",
                                start,
                                &[],
                                timeout,
                                user.as_ref(),
                            )?;
                        }
                    }
                }
                if let Some(s) = &mut stopped {
                    (self.on_step)("starting the service");
                    s.start().map_err(|e| {
                        Error::step(
                            "the restore finished but starting the service failed",
                            format!(
                                "{e}; the previous content is in {}",
                                report.moved_aside.as_deref().unwrap_or(&aside).display()
                            ),
                        )
                    })?;
                }
                Ok(report)
            }
            Err(e) => {
                // Do not start an application on a half-restored data directory.
                if let Some(s) = stopped.take() {
                    s.disarm();
                }
                let mut where_ = Vec::new();
                if report.moved_aside.is_some() {
                    where_.push(format!("the previous content is in {}", aside.display()));
                } else {
                    where_.push(format!("{} was not changed", data_dir.display()));
                }
                if !report.previous_dumps.is_empty() {
                    where_.push(format!(
                        "the previous databases are dumped in {}",
                        dumps_dir.display()
                    ));
                }
                if self.app.stop.is_some() {
                    where_.push("the service was left stopped".into());
                }
                Err(Error::step(
                    "pristine restore failed",
                    format!("{e}; {}", where_.join("; ")),
                ))
            }
        }
    }

    /// Restores into `target` (another machine or location), then the databases as asked.
    pub fn relocated(&self, target: &Path, overwrite: bool) -> Result<AppRestoreReport> {
        let mut report = AppRestoreReport {
            snapshot: self.snap_id.short(),
            target: target.to_path_buf(),
            ..Default::default()
        };
        let installed = self.installed_version(target)?;
        if let Some(n) = check_version(
            &self.app.name,
            self.backup_version().as_deref(),
            installed.as_deref(),
            self.force_version,
        )? {
            report.notes.push(n);
        }
        // The configured databases are production's: a relocated restore (a test copy, a
        // new machine) restores dumps only where it is told, and checks that target before
        // a single file is written.
        let asked = self.db_target.is_some() || self.dumps_to.is_some();
        if self.dumps_to.is_some() {
            require_dumps(self.snap)?;
        }
        if let (Some(url), false) = (&self.db_target, self.clean) {
            if !self.snap.attachments.is_empty() {
                let pg = Postgres::from_url(url, &self.state_dir.join("tmp"))?;
                if pg.exists(&pg.url.dbname)? && !pg.is_empty(&pg.url)? {
                    return Err(Error::step(
                        "restoring databases",
                        format!(
                            "database {} is not empty: refusing before anything was written \
                             (--clean replaces its content)",
                            pg.url.dbname
                        ),
                    ));
                }
            }
        }
        (self.on_step)("restoring files");
        report.files = Some(self.restore_files(target, overwrite)?);
        if asked {
            self.restore_databases(&mut report)?;
        } else if !self.snap.attachments.is_empty() {
            report.notes.push(format!(
                "the snapshot's database dumps ({}) were not restored: a relocated restore never \
                 writes into the configured databases; give --db-target URL or --dumps-to DIR",
                self.snap
                    .attachments
                    .iter()
                    .map(|a| a.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        self.post_restore(target, true, &mut report)?;
        Ok(report)
    }

    /// Databases of a relocated restore: into `--db-target`, into the configured servers
    /// (refusing non-empty ones without --clean), and/or as files into `--dumps-to`.
    pub fn restore_databases(&self, report: &mut AppRestoreReport) -> Result<()> {
        if let Some(dir) = &self.dumps_to {
            (self.on_step)("writing the dumps");
            report.dumps_written = write_dumps(self.repo, self.snap, dir)?;
        }
        let dbs = crate::procedure::database_sources(self.app, &self.state_dir)?;
        for a in &self.snap.attachments {
            let (pg, target) = match &self.db_target {
                Some(url) => {
                    let pg = Postgres::from_url(url, &self.state_dir.join("tmp"))?;
                    let t = pg.url.clone();
                    (pg, t)
                }
                None if self.dumps_to.is_some() => continue,
                None => match configured_db(&dbs, a) {
                    Some(db) => (db.clone(), db.url.clone()),
                    None => {
                        report.notes.push(format!(
                            "dump {} has no configured database here: not restored (use --db-target or --dumps-to)",
                            a.name
                        ));
                        continue;
                    }
                },
            };
            (self.on_step)(&format!("restoring database {}", target.dbname));
            restore_dump(
                self.repo,
                self.snap,
                &pg,
                a,
                &target,
                self.clean,
                &self.state_dir.join("tmp"),
            )?;
            report.databases_restored.push(target.dbname.clone());
        }
        Ok(())
    }
}

/// What `restore --app … --dry-run` found: the steps the restore would take, in order, why it
/// would refuse (each check it can make without changing anything), and what the files part
/// would write.
#[derive(Debug, Default, Serialize)]
pub struct AppRestorePlan {
    pub snapshot: String,
    pub target: PathBuf,
    pub in_place: bool,
    pub steps: Vec<String>,
    /// Reasons the restore would stop before changing anything; empty when it would go on.
    pub refusals: Vec<String>,
    pub notes: Vec<String>,
    pub files: core_restore::preview::Preview,
}

impl AppRestore<'_> {
    /// The dry run of [`Self::in_place`] (`relocated` `None`) or [`Self::relocated`]: the same
    /// checks (version rule, service commands, file system, databases) made read-only, the
    /// steps listed, and the files previewed. Nothing is stopped, moved, dumped or written.
    pub fn plan(&self, relocated: Option<(&Path, bool)>) -> Result<AppRestorePlan> {
        let (target, overwrite) = relocated.unwrap_or((self.app.data_dir(), false));
        let mut plan = AppRestorePlan {
            snapshot: self.snap_id.short(),
            target: target.to_path_buf(),
            in_place: relocated.is_none(),
            ..Default::default()
        };
        let backup_version = self.backup_version();
        let installed = self.installed_version(target)?;
        match check_version(
            &self.app.name,
            backup_version.as_deref(),
            installed.as_deref(),
            self.force_version,
        ) {
            Ok(Some(n)) => plan.notes.push(n),
            Ok(None) => {}
            Err(e) => plan.refusals.push(e.to_string()),
        }
        let dbs = crate::procedure::database_sources(self.app, &self.state_dir)?;
        let opts = RestoreOptions {
            target: target.to_path_buf(),
            overwrite,
            ..Default::default()
        };
        // A pristine restore writes into the emptied data directory.
        plan.files = core_restore::preview::preview(
            self.repo,
            self.snap,
            &opts,
            relocated.is_none(),
            &mut |_, _, _| {},
        )?;
        if let Some(r) = &plan.files.refused {
            plan.refusals.push(r.clone());
        }
        if plan.files.missing_chunks > 0 {
            plan.refusals.push(format!(
                "{} chunk(s) of the selected files are missing from the repository: the restore \
                 would fail (run holdfast check)",
                plan.files.missing_chunks
            ));
        }
        let files = format!(
            "restore {} file(s) ({} bytes) into {}",
            plan.files.files,
            plan.files.bytes,
            target.display()
        );
        if relocated.is_none() {
            self.plan_in_place(&mut plan, &dbs, files, backup_version, installed)?;
        } else {
            self.plan_relocated(&mut plan, files)?;
        }
        Ok(plan)
    }

    fn plan_in_place(
        &self,
        plan: &mut AppRestorePlan,
        dbs: &[Postgres],
        files: String,
        backup_version: Option<String>,
        installed: Option<String>,
    ) -> Result<()> {
        let data_dir = self.app.data_dir();
        if self.app.stop.is_none() || self.app.start.is_none() {
            plan.refusals.push(format!(
                "a pristine restore stops the application first: configure service.stop and service.start for {}",
                self.app.name
            ));
        }
        if let Err(e) = same_filesystem_as_parent(data_dir) {
            plan.refusals.push(e.to_string());
        }
        let user = self.app.service_user()?;
        let running = crate::service::is_running(
            self.app.status.as_deref(),
            parse_timeout(self.app),
            user.as_ref(),
        )?;
        plan.steps.push(match running {
            Some(false) => "the service is not running: leave it stopped".into(),
            _ => "stop the service".into(),
        });
        let name = data_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or("data".into());
        let aside = data_dir.with_file_name(format!("{name}.before-restore-<time>"));
        for db in dbs {
            if db.exists(&db.url.dbname)? {
                plan.steps.push(format!(
                    "dump the current database {} to {}.databases/{}.dump",
                    db.url.dbname,
                    aside.display(),
                    db.name
                ));
            }
        }
        plan.steps.push(format!(
            "move the current content of {} aside to {}",
            data_dir.display(),
            aside.display()
        ));
        plan.steps.push(files);
        for a in &self.snap.attachments {
            match configured_db(dbs, a) {
                Some(db) => plan.steps.push(format!(
                    "replace database {} with dump {}",
                    db.url.dbname, a.name
                )),
                None => plan.notes.push(format!(
                    "dump {} has no configured database here: it would not be restored (use --dumps-to)",
                    a.name
                )),
            }
        }
        if let (Some(b), Some(i), Some(cmd)) = (
            &backup_version,
            &installed,
            &self.app.config.post_restore_command,
        ) {
            if compare_versions(i, b).is_gt() {
                plan.steps.push(format!("run the post-restore step: {cmd}"));
            }
        }
        if running != Some(false) {
            plan.steps.push("start the service".into());
        }
        Ok(())
    }

    fn plan_relocated(&self, plan: &mut AppRestorePlan, files: String) -> Result<()> {
        if self.dumps_to.is_some() {
            if let Err(e) = require_dumps(self.snap) {
                plan.refusals.push(e.to_string());
            }
        }
        if let (Some(url), false) = (&self.db_target, self.clean) {
            if !self.snap.attachments.is_empty() {
                let pg = Postgres::from_url(url, &self.state_dir.join("tmp"))?;
                if pg.exists(&pg.url.dbname)? && !pg.is_empty(&pg.url)? {
                    plan.refusals.push(format!(
                        "database {} is not empty (--clean replaces its content)",
                        pg.url.dbname
                    ));
                }
            }
        }
        plan.steps.push(files);
        if let Some(dir) = &self.dumps_to {
            plan.steps
                .push(format!("write the database dumps into {}", dir.display()));
        }
        for a in &self.snap.attachments {
            if let Some(url) = &self.db_target {
                let target = PgUrl::parse(url).map(|u| u.dbname).unwrap_or_default();
                plan.steps.push(format!(
                    "restore dump {} into database {target}{}",
                    a.name,
                    if self.clean {
                        " (its content replaced)"
                    } else {
                        ""
                    }
                ));
            } else if self.dumps_to.is_none() {
                plan.notes.push(format!(
                    "dump {} would not be restored: a relocated restore never writes into the \
                     configured databases; give --db-target URL or --dumps-to DIR",
                    a.name
                ));
            }
        }
        if let Some(cmd) = &self.app.config.post_restore_command {
            plan.steps.push(format!(
                "run the post-restore step: {}",
                cmd.replace("{data_dir}", &plan.target.to_string_lossy())
            ));
        }
        Ok(())
    }
}

fn parse_timeout(app: &Resolved) -> std::time::Duration {
    app.config.service.command_timeout.as_std()
}

/// A pristine restore renames the data directory's entries into a sibling directory, which
/// needs both on one filesystem: refuse up front (nothing changed) when the data directory is
/// a mount point or a btrfs subvolume.
fn same_filesystem_as_parent(dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let io = |p: &Path, e| Error::Core(holdfast_core::Error::io(p, e));
    let parent = dir.parent().unwrap_or(Path::new("/"));
    let (d, p) = (
        dir.metadata().map_err(|e| io(dir, e))?,
        parent.metadata().map_err(|e| io(parent, e))?,
    );
    if d.dev() != p.dev() {
        return Err(Error::step(
            "pristine restore",
            format!(
                "{} is a mount point or subvolume, so its content cannot be moved aside to a sibling by rename; \
                 nothing was changed: restore with --target into a new directory instead",
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// Moves every entry of `dir` into the new directory `aside` (a sibling, so on the same
/// filesystem and a rename each); `dir` itself stays (it may be a mount point).
pub fn move_aside(dir: &Path, aside: &Path) -> Result<()> {
    let io = |p: &Path, e| Error::Core(holdfast_core::Error::io(p, e));
    std::fs::create_dir(aside).map_err(|e| io(aside, e))?;
    let meta = dir.metadata().map_err(|e| io(dir, e))?;
    std::fs::set_permissions(aside, meta.permissions()).map_err(|e| io(aside, e))?;
    for e in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let e = e.map_err(|e| io(dir, e))?;
        let to = aside.join(e.file_name());
        std::fs::rename(e.path(), &to).map_err(|err| io(&e.path(), err))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_rule() {
        assert!(check_version("d", Some("13.2.0"), Some("13.1.9"), false).is_err());
        assert!(check_version("d", Some("13.2.0"), Some("13.1.9"), true)
            .unwrap()
            .is_some());
        assert!(check_version("d", Some("13.2.0"), Some("13.2.0"), false)
            .unwrap()
            .is_none());
        assert!(check_version("d", Some("13.2.0"), Some("14.0.0"), false)
            .unwrap()
            .is_none());
        assert!(check_version("d", Some("13.2.0"), None, false)
            .unwrap()
            .is_some());
    }

    #[test]
    fn move_aside_keeps_everything() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("data");
        std::fs::create_dir_all(data.join("config")).unwrap();
        std::fs::write(data.join("config/a.json"), "{}").unwrap();
        std::fs::write(data.join("x"), "1").unwrap();
        let aside = d.path().join("data.before");
        move_aside(&data, &aside).unwrap();
        assert_eq!(std::fs::read_dir(&data).unwrap().count(), 0);
        assert_eq!(
            std::fs::read_to_string(aside.join("config/a.json")).unwrap(),
            "{}"
        );
        assert!(
            move_aside(&data, &aside).is_err(),
            "an existing aside is never reused"
        );
    }
}
