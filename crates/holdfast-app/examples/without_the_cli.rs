//! The application layer used as a library, without the `holdfast` binary: a scheduled job
//! (backup in stop mode, retention, check, run log), an upgrade in one stop window, and a
//! restore of the pre-upgrade snapshot onto another location.
//!
//!     cargo run -p holdfast-app --example without_the_cli
//!
//! Everything happens in a temporary folder: an application whose service is a marker file
//! (`running`), a local repository, and the state folder. It prints what each step did and
//! fails (exit 1) if anything does not turn out as it should.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use holdfast_app::config::{Config, Mode};
use holdfast_app::procedure::{self, RunOptions};
use holdfast_app::resolved::Resolved;
use holdfast_app::restore::AppRestore;
use holdfast_app::runlog::{RunRecord, RunResult};
use holdfast_app::{job, upgrade, Access, PasswordSource};
use holdfast_core::backup::Progress;
use holdfast_core::lock::LockGuard;
use holdfast_core::repo::InitOptions;
use holdfast_core::restore::RestoreProgress;
use holdfast_core::storage::Storage;
use holdfast_core::Repository;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("projects"))?;
    std::fs::write(data.join("version.json"), r#"{"version": "1.0"}"#)?;
    std::fs::write(data.join("projects/sales.json"), r#"{"rows": 42}"#)?;
    std::fs::write(data.join("running"), "")?;
    let svc = |what: &str| format!("sh -c '{what}'");
    let config = format!(
        r#"
repository = "{repo}"
state_dir = "{state}"

[app.shop]
data_dir = "{data}"
consistency = "stop"
version_file = "version.json"

[app.shop.service]
stop = "{stop}"
start = "{start}"
status = "{status}"

[app.shop.retention]
keep_last = 2

[app.shop.check]
read_data_subset = "100%"
"#,
        repo = dir.join("repo").display(),
        state = dir.join("state").display(),
        data = data.display(),
        stop = svc("rm -f {data_dir}/running"),
        start = svc("touch {data_dir}/running"),
        status = svc("test -e {data_dir}/running || exit 3"),
    );
    let cfg = Config::parse(&config, Path::new("example.toml"))?;
    let app = Resolved::new("shop", cfg.app("shop")?);

    std::fs::write(dir.join("password"), "example password\n")?;
    Repository::init(
        Storage::local(&dir.join("repo"), true)?,
        b"example password",
        &InitOptions::default(),
    )?;
    let access = Access {
        repo: dir.join("repo").display().to_string(),
        password: PasswordSource::File(dir.join("password")),
        use_cache: false,
        s3: Default::default(),
    };
    let open = |use_cache: bool| -> holdfast_app::Result<Arc<Repository>> {
        let access = Access {
            use_cache,
            ..access.clone()
        };
        let repo =
            holdfast_app::open_repository(&access, &|_| Err(std::io::Error::other("no terminal")))?;
        Ok(Arc::new(repo))
    };
    let cancel = AtomicBool::new(false);
    let critical = AtomicBool::new(false);
    let say = |s: &str| println!("  shop: {s}");

    // The backup step of a job, and of the upgrade below: the documented procedure, with the
    // repository's shared lock held throughout.
    let back_up = |tags: Vec<String>, stopped_by_caller: bool| -> holdfast_app::Result<String> {
        let repo = open(true)?;
        let lock = LockGuard::acquire(repo.storage(), false, "backup")?;
        repo.load_index()?;
        let progress = Progress::default();
        let ensure = || lock.ensure_held();
        let outcome = procedure::backup_app(
            repo,
            &app,
            Mode::Stop,
            &RunOptions {
                tags,
                excludes: Vec::new(),
                exclude_if_present: Vec::new(),
                state_dir: cfg.state_dir.clone(),
                progress: &progress,
                cancel: &cancel,
                critical: &critical,
                ensure_lock: &ensure,
                on_step: &say,
                host: None,
                one_file_system: false,
                force: false,
                checkpoints: None,
                service_stopped_by_caller: stopped_by_caller,
            },
        )?;
        Ok(outcome.backup.id.to_hex())
    };

    // 1. Three scheduled jobs: backup, retention (keep_last = 2), check, run log.
    println!("scheduled jobs:");
    for _ in 0..3 {
        let mut rec = RunRecord {
            start: Some(chrono::Utc::now()),
            app: "shop".into(),
            kind: "run".into(),
            ..Default::default()
        };
        let id = back_up(Vec::new(), false)?;
        rec.snapshot = Some(id.clone());
        job::after_backup(&cfg, &app, &mut rec, &open);
        let said = job::finish_run(&cfg, &mut rec, None, &|| open(true).ok());
        ensure(said.is_empty(), "the run was not recorded")?;
        println!(
            "  snapshot {} -> {} (forgotten {}, checked {}){}",
            &id[..8],
            rec.result,
            rec.forgotten,
            rec.checked,
            said.join("; ")
        );
        ensure(rec.result == RunResult::Success, "a job failed")?;
    }
    ensure(
        open(false)?.list_snapshots()?.len() == 2,
        "retention keeps 2",
    )?;
    ensure(
        data.join("running").exists(),
        "the service runs after the jobs",
    )?;

    // 2. An upgrade in one stop window; the "installer" rewrites the version file.
    println!("upgrade:");
    let upgraded = upgrade::upgrade::<holdfast_app::Error>(
        &app,
        &upgrade::UpgradeOptions {
            command: format!(
                "echo '{{\"version\": \"2.0\"}}' > {}/version.json",
                data.display()
            ),
            timeout: std::time::Duration::from_secs(60),
            state_dir: cfg.state_dir.clone(),
            resume: false,
            cancel: &cancel,
            critical: &critical,
            on_step: &say,
        },
        &mut || {
            let repo = open(true)?;
            let lock = LockGuard::acquire(repo.storage(), false, "upgrade")?;
            Ok(Box::new((repo, lock)) as Box<dyn std::any::Any>)
        },
        &mut |stopped_here| {
            let id = back_up(
                vec![holdfast_core::retention::PRE_UPGRADE_TAG.into()],
                stopped_here,
            )?;
            Ok((holdfast_core::error::exit::OK, id))
        },
    )?;
    println!(
        "  now version {}, pre-upgrade snapshot {}",
        upgraded.version.as_deref().unwrap_or("?"),
        upgraded.pre_upgrade_snapshot.short()
    );
    ensure(
        upgraded.version.as_deref() == Some("2.0"),
        "upgraded to 2.0",
    )?;
    ensure(
        data.join("running").exists(),
        "the service runs after the upgrade",
    )?;

    // 3. The pre-upgrade snapshot restored onto another location.
    println!("restore:");
    let repo = open(false)?;
    repo.load_index()?;
    let (id, snap) =
        repo.find_snapshot(&upgraded.pre_upgrade_snapshot.to_hex(), &Default::default())?;
    let target = dir.join("restored");
    let report = AppRestore {
        repo: &repo,
        app: &app,
        snap_id: id,
        snap: &snap,
        state_dir: cfg.state_dir.clone(),
        force_version: false,
        clean: false,
        db_target: None,
        dumps_to: None,
        progress: &RestoreProgress::default(),
        cancel: &cancel,
        on_step: &say,
    }
    .relocated(&target, false)?;
    let version = std::fs::read_to_string(target.join("version.json"))?;
    let files = report.files.map(|f| f.files).unwrap_or(0);
    println!(
        "  restored {files} files to {}: {version}",
        target.display()
    );
    ensure(
        version.contains("1.0"),
        "the pre-upgrade snapshot holds version 1.0",
    )?;
    ensure(
        std::fs::read_to_string(target.join("projects/sales.json"))?.contains("42"),
        "project data restored",
    )?;
    println!("ok");
    Ok(())
}

fn ensure(ok: bool, what: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(format!("not as expected: {what}").into())
    }
}
