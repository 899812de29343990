//! Restore drills (`holdfast drill`): prove that a snapshot restores and that the application
//! comes up on it, and measure how long that takes, without touching production.
//!
//! `check --read-data` proves the bytes are there; only a restore proves the backup is
//! usable. A drill restores the files into a scratch directory with `--verify`, each database
//! dump into a scratch database on its own server (compared against the table list recorded
//! when it was dumped, then the configured probe queries), runs the post-restore step a
//! relocated restore would run, starts the application on the scratch copy with the
//! configured commands until its probe passes, and stops it. Everything
//! it made is removed whatever happens, by guards that run on failure and on interruption
//! too. The verdict and its times are stored in the repository as a drill record
//! ([`holdfast_core::drills`]), never in the snapshot (which is named by its content).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use holdfast_core::drills::DrillRecord;
use holdfast_core::id::SnapshotId;
use holdfast_core::restore::{self as core_restore, RestoreOptions, RestoreProgress};
use holdfast_core::snapshot::{Attachment, Snapshot};
use holdfast_core::Repository;

use crate::config::DrillConfig;
use crate::error::{Error, Result};
use crate::postgres::Postgres;
use crate::profile::ProfileName;
use crate::resolved::Resolved;
use crate::service::{run_step_as, RunAs};
use crate::volume::sh_quote;

/// One drill of one snapshot of an application.
pub struct Drill<'a> {
    pub repo: &'a Repository,
    pub app: &'a Resolved,
    pub snap_id: SnapshotId,
    pub snap: &'a Snapshot,
    pub state_dir: &'a Path,
    pub config: DrillConfig,
    pub cancel: &'a AtomicBool,
    pub on_step: &'a dyn Fn(&str),
}

/// Why a drill stopped: a failure of the backup (a verdict), or of the drill itself.
enum Stop {
    Failed(String),
    Error(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Error(e)
    }
}

/// The scratch directory, removed when dropped: on btrfs a subvolume (made and deleted in one
/// step each, however many files it holds), elsewhere a directory.
struct Scratch {
    path: PathBuf,
    subvolume: bool,
}

impl Scratch {
    fn create(path: PathBuf) -> Result<Scratch> {
        let on_btrfs = path.parent().is_some_and(|p| {
            nix::sys::statfs::statfs(p)
                .map(|s| s.filesystem_type() == nix::sys::statfs::BTRFS_SUPER_MAGIC)
                .unwrap_or(false)
        });
        if on_btrfs {
            crate::service::run_step(
                "creating the drill's btrfs subvolume",
                &format!(
                    "btrfs subvolume create {} >/dev/null",
                    sh_quote(&path.to_string_lossy())
                ),
                &[],
                Duration::from_secs(60),
            )?;
        } else {
            std::fs::create_dir(&path)
                .map_err(|e| Error::Core(holdfast_core::Error::io(&path, e)))?;
        }
        // The guard first: whatever fails from here on, the scratch goes.
        let scratch = Scratch {
            path,
            subvolume: on_btrfs,
        };
        std::fs::set_permissions(
            &scratch.path,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .map_err(|e| Error::Core(holdfast_core::Error::io(&scratch.path, e)))?;
        Ok(scratch)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.subvolume {
            match crate::service::run_step(
                "deleting the drill's btrfs subvolume",
                &format!(
                    "btrfs subvolume delete {} >/dev/null",
                    sh_quote(&self.path.to_string_lossy())
                ),
                &[],
                Duration::from_secs(300),
            ) {
                Ok(_) => return,
                Err(e) => tracing::warn!("drill: {e}; removing it file by file"),
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("drill: removing {}: {e}", self.path.display());
            }
        }
    }
}

/// Drops a scratch database when dropped.
struct ScratchDb<'a> {
    pg: &'a Postgres,
    name: String,
}

impl Drop for ScratchDb<'_> {
    fn drop(&mut self) {
        let sql = format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name.replace('"', "\"\"")
        );
        if let Err(e) = self.pg.query(&self.pg.url.with_db("postgres"), &sql) {
            tracing::warn!("drill: dropping scratch database {}: {e}", self.name);
        }
    }
}

/// Stops the application on the scratch copy when dropped.
struct Started<'a> {
    stop: Option<String>,
    user: Option<&'a RunAs>,
    timeout: Duration,
}

impl Drop for Started<'_> {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            if let Err(e) = run_step_as(
                "stopping the application on the scratch copy",
                &stop,
                &[],
                self.timeout,
                self.user,
            ) {
                tracing::warn!("drill: {e}");
            }
        }
    }
}

/// A PostgreSQL server of the drill's own, for a role that may not create databases (or when
/// configured): `initdb` in a new 0700 directory under /tmp, owned by the user the server runs
/// as (`postgres` when holdfast runs as root, since initdb refuses root), listening on nothing
/// but a unix socket in that directory, so that only that user and root reach it (hence
/// trust authentication). Stopped and removed when dropped.
struct ScratchCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    run_as: Option<RunAs>,
    url: crate::pg_url::PgUrl,
}

impl ScratchCluster {
    const ROLE: &'static str = "holdfast_drill";

    fn start(bin: &Path) -> Result<ScratchCluster> {
        let io = |p: &Path, e| Error::Core(holdfast_core::Error::io(p, e));
        for tool in ["initdb", "pg_ctl"] {
            if !bin.join(tool).exists() {
                return Err(Error::step(
                    "a scratch PostgreSQL cluster",
                    format!(
                        "{} is not there (install the server package)",
                        bin.join(tool).display()
                    ),
                ));
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("holdfast-drill-pg.")
            .tempdir_in("/tmp")
            .map_err(|e| io(Path::new("/tmp"), e))?;
        let run_as = if nix::unistd::geteuid().is_root() {
            let u = RunAs::by_name("postgres")?;
            nix::unistd::chown(dir.path(), Some(u.uid.into()), Some(u.gid.into()))
                .map_err(|e| io(dir.path(), e.into()))?;
            Some(u)
        } else {
            None
        };
        let port = free_port()?;
        let d = dir.path().display().to_string();
        let (qd, qb) = (sh_quote(&d), sh_quote(&bin.display().to_string()));
        let timeout = Duration::from_secs(120);
        run_step_as(
            "initdb of the scratch cluster",
            &format!(
                "{qb}/initdb -D {qd}/data -U {} --auth=trust --no-sync -E UTF8 --locale=C >/dev/null",
                Self::ROLE
            ),
            &[],
            timeout,
            run_as.as_ref(),
        )?;
        let cluster = ScratchCluster {
            url: crate::pg_url::PgUrl::parse(&format!(
                "postgresql://{}@/postgres?host={d}&port={port}",
                Self::ROLE
            ))
            .map_err(|e| Error::step("a scratch PostgreSQL cluster", e))?,
            dir,
            bin: bin.to_path_buf(),
            run_as,
        };
        run_step_as(
            "starting the scratch cluster",
            &format!(
                "{qb}/pg_ctl -D {qd}/data -w -l {qd}/log -o {} start >/dev/null",
                sh_quote(&format!(
                    "-p {port} -k {qd} -c listen_addresses='' -c fsync=off -c full_page_writes=off"
                ))
            ),
            &[],
            timeout,
            cluster.run_as.as_ref(),
        )?;
        Ok(cluster)
    }

    /// The cluster as a restore target: tools from its binaries, privileges not restored (its
    /// only role is the drill's).
    fn postgres(&self, scratch: &Path) -> Result<Postgres> {
        let mut config = crate::config::PostgresConfig::for_url(&self.url.to_string());
        config.bin_dir = Some(self.bin.clone());
        let mut pg = Postgres::new(&config, scratch)?;
        pg.restore_privileges = false;
        Ok(pg)
    }
}

impl Drop for ScratchCluster {
    fn drop(&mut self) {
        let cmd = format!(
            "{}/pg_ctl -D {}/data -m immediate -w stop >/dev/null",
            sh_quote(&self.bin.display().to_string()),
            sh_quote(&self.dir.path().display().to_string())
        );
        if let Err(e) = run_step_as(
            "stopping the scratch cluster",
            &cmd,
            &[],
            Duration::from_secs(60),
            self.run_as.as_ref(),
        ) {
            tracing::warn!("drill: {e}");
        }
    }
}

/// Start, stop and probe of the copy, before `{data_dir}` and `{port}` are filled in.
struct CopyCommands {
    start: String,
    stop: Option<String>,
    probe: Option<String>,
}

/// Bytes free for an unprivileged writer below `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(s.blocks_available() as u64 * s.fragment_size() as u64)
}

/// Ports a DSS instance uses: its base port and the nine after it.
const DSS_PORTS: u16 = 10;

/// A port such that it and the `n - 1` after it are free on the loopback interface.
fn free_ports(n: u16) -> Result<u16> {
    let fail = |e: String| Error::step("finding free ports for the drill", e);
    for _ in 0..50 {
        let base = free_port()?;
        if base.checked_add(n).is_none() {
            continue;
        }
        if (base..base + n).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return Ok(base);
        }
    }
    Err(fail(format!("no {n} consecutive free ports found")))
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::step("finding a free port for the drill", e.to_string()))?;
    Ok(l.local_addr().map(|a| a.port()).unwrap_or(0))
}

/// The tables a dump's source held when it was dumped (`catalog` in the attachment's
/// details), as `schema.table`.
pub fn recorded_tables(a: &Attachment) -> Option<Vec<String>> {
    let list = a.details.get("catalog")?.as_array()?;
    Some(
        list.iter()
            .filter_map(|t| t.get("table")?.as_str().map(String::from))
            .collect(),
    )
}

impl Drill<'_> {
    /// Runs the drill. A backup that does not pass is a record with `ok: false` (the caller
    /// stores it and reports it as a failure); an error means the drill itself could not run
    /// (no room, interrupted), and nothing is recorded.
    pub fn run(&self) -> Result<DrillRecord> {
        let started = Instant::now();
        let mut record = DrillRecord {
            snapshot: self.snap_id,
            time: Utc::now(),
            hostname: holdfast_core::host::hostname(),
            app: Some(self.app.name.clone()),
            ok: true,
            failure: None,
            files_secs: 0.0,
            databases_secs: None,
            start_secs: None,
            recovered_secs: 0.0,
            notes: Vec::new(),
            extra: Default::default(),
        };
        let outcome = self.steps(&mut record);
        // A step killed by the interrupt (pg_restore gets the same Ctrl-C) is no verdict.
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Error::Core(holdfast_core::Error::Interrupted));
        }
        match outcome {
            Ok(()) => {}
            Err(Stop::Failed(why)) => {
                record.ok = false;
                record.failure = Some(why);
            }
            Err(Stop::Error(e)) => return Err(e),
        }
        record.recovered_secs = started.elapsed().as_secs_f64();
        Ok(record)
    }

    fn check_cancel(&self) -> std::result::Result<(), Stop> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Stop::Error(Error::Core(holdfast_core::Error::Interrupted)));
        }
        Ok(())
    }

    fn steps(&self, record: &mut DrillRecord) -> std::result::Result<(), Stop> {
        let root = self
            .config
            .scratch_dir
            .clone()
            .unwrap_or_else(|| self.state_dir.join("drills"));
        let io = |p: &Path, e| Error::Core(holdfast_core::Error::io(p, e));
        holdfast_core::private::create_dir_all(&root).map_err(|e| io(&root, e))?;
        let stamp = record.time.format("%Y%m%d%H%M%S").to_string();
        let work = root.join(format!("{}-{stamp}", self.app.name));
        let _scratch = Scratch::create(work.clone())?;
        let user = self.app.service_user()?;
        if let Some(u) = &user {
            // The application runs as its user on the copy: let it in.
            nix::unistd::chown(&work, Some(u.uid.into()), Some(u.gid.into()))
                .map_err(|e| io(&work, e.into()))?;
        }
        let name = self
            .app
            .data_dir()
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| "data".into());
        let data_dir = work.join(name);

        // 1. Room, then the files, verified.
        let need = self.snap.summary.total_bytes
            + self.snap.attachments.iter().map(|a| a.bytes).sum::<u64>();
        if let Some(free) = free_bytes(&work) {
            if free < need + need / 10 {
                return Err(Stop::Error(Error::step(
                    "drill",
                    format!(
                        "{} has {free} bytes free; the restore needs {need} and a tenth more",
                        root.display()
                    ),
                )));
            }
        }
        (self.on_step)(&format!("restoring files into {}", data_dir.display()));
        let t = Instant::now();
        let opts = RestoreOptions {
            target: data_dir.clone(),
            verify: true,
            ..Default::default()
        };
        let restored = core_restore::restore(
            self.repo,
            self.snap,
            &opts,
            &RestoreProgress::default(),
            self.cancel,
        );
        self.check_cancel()?;
        restored.map_err(|e| Stop::Failed(format!("restoring files: {e}")))?;
        record.files_secs = t.elapsed().as_secs_f64();

        // 2. Databases, each into a scratch database on its own server.
        let dumps: Vec<&Attachment> = self
            .snap
            .attachments
            .iter()
            .filter(|a| a.kind.starts_with("postgresql"))
            .collect();
        if !dumps.is_empty() {
            let t = Instant::now();
            let dbs = crate::procedure::database_sources(self.app, self.state_dir)?;
            for a in dumps {
                self.check_cancel()?;
                let Some(db) = dbs
                    .iter()
                    .find(|d| a.name == format!("postgres/{}", d.name))
                else {
                    record.notes.push(format!(
                        "database dump {} not drilled: no configured database server to restore it into",
                        a.name
                    ));
                    continue;
                };
                self.drill_database(db, a, &stamp, record)?;
            }
            record.databases_secs = Some(t.elapsed().as_secs_f64());
        }

        // 3. For DSS, the copy gets ports of its own and runs no scenario by itself (a trigger
        //    would act on production's connections); then what a relocated restore runs on a
        //    new location (for DSS, the installer's step for a data directory that moved),
        //    then the application on the copy.
        self.check_cancel()?;
        let port = free_ports(DSS_PORTS)?;
        if self.app.profile.name == ProfileName::Dss {
            set_dss_port(&data_dir, port)?;
            deactivate_dss_scenarios(&data_dir)?;
            let dssadmin = data_dir.join("bin/dssadmin");
            if self.app.config.post_restore_command.is_none() && dssadmin.exists() {
                // DSS reads install.ini through the configuration it generates from it.
                run_step_as(
                    "regenerating the copy's configuration",
                    &format!(
                        "{} regenerate-config",
                        sh_quote(&dssadmin.to_string_lossy())
                    ),
                    &[],
                    self.config.probe_timeout.as_std(),
                    user.as_ref(),
                )
                .map_err(|e| Stop::Failed(e.to_string()))?;
            }
        }
        if let Some(cmd) = &self.app.config.post_restore_command {
            let cmd = cmd.replace("{data_dir}", &data_dir.to_string_lossy());
            (self.on_step)(&format!("running the post-restore step on the copy: {cmd}"));
            crate::service::run_step(
                "post-restore step on the copy",
                &cmd,
                &[],
                self.app.config.post_restore_timeout.as_std(),
            )
            .map_err(|e| Stop::Failed(e.to_string()))?;
        }
        match self.commands() {
            None if !self.app.config.postgres.is_empty() => record.notes.push(format!(
                "application start not drilled: the copy's configuration names production's \
                 databases; set start in [app.{}.drill] to a command that points it at the \
                 scratch ones",
                self.app.name
            )),
            None => record.notes.push(format!(
                "application start not drilled: set start, stop and probe in [app.{}.drill]",
                self.app.name
            )),
            Some(commands) => {
                let t = Instant::now();
                self.start_and_probe(&commands, &data_dir, port, user.as_ref())?;
                record.start_secs = Some(t.elapsed().as_secs_f64());
            }
        }
        Ok(())
    }

    /// How to start, stop and probe the copy: as configured, else what the profile knows
    /// (dss: the restored data directory's own `bin/dss`, probed over HTTP on its new port).
    fn commands(&self) -> Option<CopyCommands> {
        let c = &self.config;
        if let Some(start) = &c.start {
            return Some(CopyCommands {
                start: start.clone(),
                stop: c.stop.clone(),
                probe: c.probe.clone(),
            });
        }
        // A copy of a node with databases (Govern) would connect to the databases its
        // configuration names, production's: it is started only by a configured command.
        let own_databases = !self.app.config.postgres.is_empty();
        (self.app.profile.name == ProfileName::Dss && !own_databases).then(|| CopyCommands {
            start: "{data_dir}/bin/dss start".into(),
            stop: Some("{data_dir}/bin/dss stop".into()),
            probe: Some(
                c.probe
                    .clone()
                    .unwrap_or_else(|| "http://127.0.0.1:{port}/".into()),
            ),
        })
    }

    fn drill_database(
        &self,
        db: &Postgres,
        a: &Attachment,
        stamp: &str,
        record: &mut DrillRecord,
    ) -> std::result::Result<(), Stop> {
        let safe: String = self
            .app
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        let scratch = format!("holdfast_drill_{safe}_{stamp}");
        (self.on_step)(&format!(
            "restoring dump {} into scratch database {scratch}",
            a.name
        ));
        let tmp = self.state_dir.join("tmp");
        // A scratch cluster of the drill's own, when configured or when the role may not
        // create databases on its server; the server's scratch database is dropped either way.
        let mut cluster: Option<(Postgres, ScratchCluster)> = None;
        if self.config.databases == crate::config::ScratchDatabases::Cluster {
            match self.own_cluster(db, &tmp) {
                Ok(c) => cluster = Some(c),
                Err(e) => {
                    record.notes.push(format!(
                        "database dump {} not drilled: no scratch cluster could start: {e}",
                        a.name
                    ));
                    return Ok(());
                }
            }
        }
        let _server_db = ScratchDb {
            pg: db,
            name: scratch.clone(),
        };
        let restore = |pg: &Postgres| {
            crate::restore::restore_dump(
                self.repo,
                self.snap,
                pg,
                a,
                &pg.url.with_db(&scratch),
                false,
                &tmp,
            )
        };
        let mut result = restore(cluster.as_ref().map(|c| &c.0).unwrap_or(db));
        let denied = matches!(&result, Err(e) if e.to_string().contains("permission denied to create database"));
        if cluster.is_none() && denied {
            (self.on_step)("the role may not create databases: restoring into a scratch cluster");
            match self.own_cluster(db, &tmp) {
                Ok(c) => {
                    result = restore(&c.0);
                    cluster = Some(c);
                }
                Err(e) => {
                    record.notes.push(format!(
                        "database dump {} not drilled: the role may not create databases, and no scratch cluster could start: {e}",
                        a.name
                    ));
                    return Ok(());
                }
            }
        }
        if let Err(e) = result {
            return Err(Stop::Failed(format!("restoring dump {}: {e}", a.name)));
        }
        let db = cluster.as_ref().map(|c| &c.0).unwrap_or(db);
        let target = db.url.with_db(&scratch);
        match recorded_tables(a) {
            Some(expected) => {
                let found = db.tables(&target)?;
                let missing: Vec<&String> =
                    expected.iter().filter(|t| !found.contains(t)).collect();
                if !missing.is_empty() {
                    return Err(Stop::Failed(format!(
                        "dump {}: table(s) missing after the restore: {}",
                        a.name,
                        missing
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
            }
            None => record.notes.push(format!(
                "dump {} records no table list (made by an older holdfast): tables not compared",
                a.name
            )),
        }
        for q in &self.config.queries {
            db.query(&target, q).map_err(|e| {
                Stop::Failed(format!("dump {}: probe query `{q}` failed: {e}", a.name))
            })?;
        }
        Ok(())
    }

    /// A scratch cluster from the server binaries next to `db`'s tools, and the restore
    /// target in it.
    fn own_cluster(&self, db: &Postgres, tmp: &Path) -> Result<(Postgres, ScratchCluster)> {
        (self.on_step)("starting a scratch PostgreSQL cluster");
        let bin = db.bin_dir.clone().ok_or_else(|| {
            Error::step(
                "a scratch PostgreSQL cluster",
                "no PostgreSQL server binaries found (set bin_dir)",
            )
        })?;
        let c = ScratchCluster::start(&bin)?;
        Ok((c.postgres(tmp)?, c))
    }

    fn start_and_probe(
        &self,
        commands: &CopyCommands,
        data_dir: &Path,
        port: u16,
        user: Option<&RunAs>,
    ) -> std::result::Result<(), Stop> {
        let start = commands.start.as_str();
        let fill = |s: &str| {
            s.replace("{data_dir}", &data_dir.to_string_lossy())
                .replace("{port}", &port.to_string())
        };
        let timeout = self.config.probe_timeout.as_std();
        (self.on_step)("starting the application on the scratch copy");
        let _started = Started {
            stop: commands.stop.as_deref().map(fill),
            user,
            timeout,
        };
        run_step_as(
            "starting the application on the scratch copy",
            &fill(start),
            &[],
            timeout,
            user,
        )
        .map_err(|e| Stop::Failed(e.to_string()))?;
        let Some(probe) = commands.probe.as_deref().map(fill) else {
            return Ok(());
        };
        (self.on_step)(&format!("waiting for the probe: {probe}"));
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            self.check_cancel()?;
            match probe_once(&probe, user) {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        Err(Stop::Failed(format!(
            "the application did not pass its probe within {} s: {last}",
            timeout.as_secs()
        )))
    }
}

/// One try of a probe: an http(s) URL answering 2xx, or a command exiting 0.
fn probe_once(probe: &str, user: Option<&RunAs>) -> std::result::Result<(), String> {
    if probe.starts_with("http://") || probe.starts_with("https://") {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .proxy(None)
            .build()
            .into();
        return match agent.get(probe).call() {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("{probe}: HTTP {}", r.status().as_u16())),
            Err(e) => Err(format!("{probe}: {e}")),
        };
    }
    run_step_as("probe", probe, &[], Duration::from_secs(60), user)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Marks every scenario of the copy inactive (`"active": false` in
/// `config/projects/*/scenarios/*.json`): DSS evaluates the triggers of active scenarios
/// only. Returns how many it changed. A file that is not a JSON object is left alone.
fn deactivate_dss_scenarios(data_dir: &Path) -> Result<usize> {
    let projects = data_dir.join("config/projects");
    if !real_dir(&data_dir.join("config")) || !real_dir(&projects) {
        return Ok(0);
    }
    let Ok(list) = std::fs::read_dir(&projects) else {
        return Ok(0);
    };
    let mut changed = 0;
    for project in list.flatten() {
        let dir = project.path().join("scenarios");
        if !real_dir(&project.path()) || !real_dir(&dir) {
            continue;
        }
        let Ok(scenarios) = std::fs::read_dir(&dir) else {
            continue;
        };
        for f in scenarios.flatten() {
            let path = f.path();
            // Never through a link: the copy's content is restored data, not ours.
            let regular = path
                .symlink_metadata()
                .map(|m| m.is_file())
                .unwrap_or(false);
            if path.extension().and_then(|e| e.to_str()) != Some("json") || !regular {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let Ok(serde_json::Value::Object(mut doc)) = serde_json::from_str(&text) else {
                continue;
            };
            if doc.get("active") == Some(&serde_json::Value::Bool(false)) {
                continue;
            }
            doc.insert("active".into(), serde_json::Value::Bool(false));
            let out = serde_json::to_vec_pretty(&serde_json::Value::Object(doc))
                .expect("JSON serialises");
            std::fs::write(&path, out)
                .map_err(|e| Error::Core(holdfast_core::Error::io(&path, e)))?;
            changed += 1;
        }
    }
    Ok(changed)
}

/// Whether `p` is a directory itself, not a link to one.
fn real_dir(p: &Path) -> bool {
    p.symlink_metadata().map(|m| m.is_dir()).unwrap_or(false)
}

/// Writes `port` as `[server] port` into the copy's `install.ini`. A link there is refused:
/// the copy's content is restored data, and a link could point at production's file.
fn set_dss_port(data_dir: &Path, port: u16) -> Result<()> {
    let path = data_dir.join("install.ini");
    let io = |e| Error::Core(holdfast_core::Error::io(&path, e));
    if path.symlink_metadata().is_ok_and(|m| !m.is_file()) {
        return Err(Error::step(
            "drill",
            format!("{} in the copy is not a regular file", path.display()),
        ));
    }
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(e)),
    };
    let mut out = String::new();
    let mut section = String::new();
    let mut done = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            if section == "server" && !done {
                out.push_str(&format!("port = {port}\n"));
                done = true;
            }
            section = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        }
        let key = t.split(['=', ':']).next().map(str::trim).unwrap_or("");
        if section == "server" && key.eq_ignore_ascii_case("port") {
            out.push_str(&format!("port = {port}\n"));
            done = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !done {
        if section != "server" {
            out.push_str("[server]\n");
        }
        out.push_str(&format!("port = {port}\n"));
    }
    std::fs::write(&path, out).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dss_scenarios_of_the_copy_are_made_inactive() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("config/projects/SALES/scenarios");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("NIGHTLY.json"),
            r#"{"active": true, "name": "nightly", "triggers": [{"type": "temporal"}]}"#,
        )
        .unwrap();
        std::fs::write(dir.join("OFF.json"), r#"{"active": false}"#).unwrap();
        std::fs::write(dir.join("broken.json"), "{not json").unwrap();
        assert_eq!(deactivate_dss_scenarios(d.path()).unwrap(), 1);
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("NIGHTLY.json")).unwrap()).unwrap();
        assert_eq!(v["active"], false);
        assert_eq!(v["triggers"][0]["type"], "temporal", "the rest is kept");
        assert_eq!(
            std::fs::read_to_string(dir.join("broken.json")).unwrap(),
            "{not json"
        );
        assert_eq!(deactivate_dss_scenarios(&d.path().join("none")).unwrap(), 0);
    }

    #[test]
    fn dss_port_is_replaced_or_added() {
        let d = tempfile::tempdir().unwrap();
        let ini = d.path().join("install.ini");
        std::fs::write(
            &ini,
            "[general]\nnodetype = design\n\n[server]\nport = 11000\n",
        )
        .unwrap();
        set_dss_port(d.path(), 23456).unwrap();
        let t = std::fs::read_to_string(&ini).unwrap();
        assert!(t.contains("port = 23456") && !t.contains("11000"), "{t}");
        assert!(t.contains("nodetype = design"));
        std::fs::write(&ini, "[general]\nnodetype = design\n").unwrap();
        set_dss_port(d.path(), 23457).unwrap();
        let t = std::fs::read_to_string(&ini).unwrap();
        assert!(t.ends_with("[server]\nport = 23457\n"), "{t}");
    }
}
