//! Application procedures against a DSS stand-in (tests/fixtures/dss): a service that keeps
//! rewriting its JSON configs atomically, appending logs and creating job folders while it
//! runs, and a real PostgreSQL server started for the test (tests/fixtures/pg.sh).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::app::*;
use crate::common::*;

#[test]
fn config_check_names_file_line_and_key() {
    let env = Env::new();
    let cfg = write_config(
        &env,
        "[app.design]\nprofile = \"dss\"\ndata_dir = \"/srv/dss/data\"\nexclude_tiers = [\"temporary\", \"logz\"]\n",
    );
    let o = with_config(&env, &cfg, &["config", "check"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains(&format!(
            "{}:6: [app.design] exclude_tiers: unknown tier 'logz'",
            cfg.display()
        )),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "one line: {e}");

    let cfg = write_config(&env, "[app.design]\ndata_dir = \"/srv/dss/data\"\nprofile = \"dss\"\nconsistency = \"sometimes\"\n");
    let o = with_config(&env, &cfg, &["config", "check"]);
    assert_eq!(code(&o), 4);
    assert!(stderr(&o).contains(":6:"), "{}", stderr(&o));

    let cfg = write_config(
        &env,
        &dss_config(
            Path::new("/srv/dss/data"),
            "exclude_tiers = [\"temporary\", \"logs\"]\n",
        ),
    );
    let v = json_config(&env, &cfg, &["config", "check"]);
    assert_eq!(
        v["apps"][0]["excluded_tiers"],
        serde_json::json!(["temporary", "logs"])
    );

    // An [s3] section that could never authenticate is found by `config check`, not by the
    // first night's run.
    for (s3, problem) in [
        (
            "access_key_id = \"AKIA1\"\n",
            "[s3] needs both access_key_id and secret_access_key",
        ),
        (
            "access_key_id = \"AKIA1\"\nsecret_access_key = \"x\"\nsecret_access_key_file = \"/etc/s\"\n",
            "[s3] has both secret_access_key and secret_access_key_file",
        ),
    ] {
        let cfg = write_config(
            &env,
            &format!(
                "[s3]\n{s3}{}",
                dss_config(Path::new("/srv/dss/data"), "")
            ),
        );
        let o = with_config(&env, &cfg, &["config", "check"]);
        assert_eq!(code(&o), 4, "{}", stderr(&o));
        assert!(stderr(&o).contains(problem), "{}", stderr(&o));
    }
}

#[test]
fn plan_shows_steps_and_tier_sizes() {
    let env = Env::new();
    let data = make_dss(&env, "13.2.0");
    let cfg = write_config(
        &env,
        &dss_config(
            &data,
            "exclude_tiers = [\"temporary\", \"logs\"]\n[app.design.service]\nquiesce = \"true\"\n",
        ),
    );
    let v = json_config(&env, &cfg, &["plan", "--app", "design"]);
    let steps: Vec<String> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert!(steps[0].contains("bin/dss status"), "{steps:?}");
    assert!(steps[1].contains("wait until `true`"), "{steps:?}");
    assert!(steps[2].contains("bin/dss stop"), "{steps:?}");
    assert!(
        steps.iter().any(|s| s.contains("bin/dss start")),
        "{steps:?}"
    );
    let tiers = v["tiers"].as_array().unwrap();
    let tier = |n: &str| tiers.iter().find(|t| t["tier"] == n).unwrap().clone();
    assert_eq!(tier("temporary")["excluded"], true);
    assert_eq!(tier("logs")["excluded"], true);
    assert_eq!(tier("rebuildable")["excluded"], false);
    assert!(tier("rebuildable")["bytes"].as_u64().unwrap() > 1_000_000);
    assert!(tier("everything else")["files"].as_u64().unwrap() > 5);
    assert_eq!(v["version"], "13.2.0");
    let text = ok_config(&env, &cfg, &["plan", "--app", "design"]);
    assert!(
        text.contains("rebuildable") && text.contains("excluded"),
        "{text}"
    );
    // backup --dry-run of an application is its plan (no repository needed: none exists here).
    let dry = json_config(&env, &cfg, &["backup", "--app", "design", "--dry-run"]);
    assert_eq!(dry, v, "backup --app --dry-run differs from plan");
}

#[test]
fn stop_mode_backs_up_the_stopped_state_and_starts_again() {
    let env = Env::new();
    env.init();
    let data = make_dss(&env, "13.2.0");
    let _svc = Service(data.clone());
    assert!(dss(&data, "start"));
    std::thread::sleep(Duration::from_millis(300));
    // The stop command also copies the stopped state, to compare the backup against.
    let frozen = env.path("frozen");
    let cfg = write_config(
        &env,
        &dss_config(
            &data,
            &format!(
                "exclude_tiers = [\"temporary\", \"logs\"]\n[app.design.service]\nstop = \"{d}/bin/dss stop && cp -a {d} {f}\"\nquiesce = \"{q} {d}\"\n",
                d = data.display(),
                f = frozen.display(),
                q = fixture("dss/jobs-idle.sh").display()
            ),
        ),
    );
    let v = json_config(&env, &cfg, &["backup", "--app", "design"]);
    let snap = &v["snapshot"];
    assert_eq!(snap["consistency"]["mode"], "stop");
    assert_eq!(snap["consistency"]["consistent"], true);
    assert!(snap["consistency"]["downtime_secs"].as_f64().unwrap() > 0.0);
    assert_eq!(snap["app"]["name"], "design");
    assert_eq!(snap["app"]["version"], "13.2.0");
    assert_eq!(
        snap["app"]["excluded_tiers"],
        serde_json::json!(["temporary", "logs"])
    );
    assert_eq!(snap["paths"][0], data.to_str().unwrap());
    assert_eq!(journal_actions(&data), ["start", "stop", "start"]);
    assert!(dss(&data, "status"), "the service runs again");

    // The restore equals the stopped state, minus the excluded tiers.
    let out = env.path("restored");
    let id = v["id"].as_str().unwrap();
    env.ok(&["restore", id, "--target", out.to_str().unwrap()]);
    let root_mtime = filetime::FileTime::from_last_modification_time(&frozen.metadata().unwrap());
    for f in [
        "tmp",
        "caches",
        "data-catalog",
        "run",
        "jobs",
        "scenarios",
        "diagnosis",
    ] {
        // Excluded tiers come back as empty folders with their own owner, mode and times,
        // as the application expects them to exist.
        let restored = out.join(f);
        assert!(restored.is_dir(), "{f} not recreated");
        assert_eq!(
            std::fs::read_dir(&restored).unwrap().count(),
            0,
            "{f} not empty"
        );
        let dir = frozen.join(f);
        let m = dir.metadata().unwrap();
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() && !p.is_symlink() {
                std::fs::remove_dir_all(&p).unwrap();
            } else {
                std::fs::remove_file(&p).unwrap();
            }
        }
        filetime::set_file_times(
            &dir,
            filetime::FileTime::from_last_access_time(&m),
            filetime::FileTime::from_last_modification_time(&m),
        )
        .unwrap();
    }
    filetime::set_file_mtime(&frozen, root_mtime).unwrap();
    let expected = snapshot_tree(&frozen);
    assert_same_tree_but_atime(&expected, &frozen, &out);
    assert!(assert_json_whole(&out) > 3);

    // `snapshots` shows the application, version and how it went.
    let text = ok_config(&env, &cfg, &["snapshots"]);
    assert!(
        text.contains("design") && text.contains("13.2.0") && text.contains("stop, consistent"),
        "{text}"
    );
    let list = json_config(&env, &cfg, &["snapshots", "--app", "design"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[test]
fn failed_backup_starts_the_service_again_and_writes_nothing() {
    let env = Env::new();
    env.init();
    let data = make_dss(&env, "13.2.0");
    let _svc = Service(data.clone());
    assert!(dss(&data, "start"));
    // A database whose server answers the preflight but whose dump fails, after the service
    // was stopped: stand-in tools (psql answers, pg_dump fails).
    let bin = env.path("pgbin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("psql"), "#!/bin/sh\necho 15.4\n").unwrap();
    std::fs::write(
        bin.join("pg_dump"),
        "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'pg_dump (PostgreSQL) 15.4'; exit 0; }\necho 'pg_dump: error: the disk caught fire' >&2\nexit 1\n",
    )
    .unwrap();
    sh(&format!(
        "chmod +x {}/psql {}/pg_dump",
        bin.display(),
        bin.display()
    ));
    let cfg = write_config(
        &env,
        &dss_config(
            &data,
            &format!(
                "[[app.design.postgres]]\nurl = \"postgresql://nobody@127.0.0.1:9/govern\"\nbin_dir = \"{}\"\n",
                bin.display()
            ),
        ),
    );
    let o = with_config(&env, &cfg, &["backup", "--app", "design"]);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("database dump") && stderr(&o).contains("govern"),
        "{}",
        stderr(&o)
    );
    assert_eq!(journal_actions(&data), ["start", "stop", "start"]);
    assert!(dss(&data, "status"));
    assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), 0);
    env.ok(&["check"]);
}

#[test]
fn interrupted_backup_starts_the_service_again() {
    let env = Env::new();
    env.init();
    let data = make_dss(&env, "13.2.0");
    // Enough data that the backup is still running when the signal comes.
    random_file(&data.join("managed_datasets/big.bin"), 400 << 20, 7);
    let _svc = Service(data.clone());
    assert!(dss(&data, "start"));
    let cfg = write_config(&env, &dss_config(&data, ""));
    let mut child = env
        .cmd()
        .env("HOLDFAST_CONFIG", &cfg)
        .args(["backup", "--app", "design"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the stop, then interrupt twice (the second must not skip the start).
    let t = Instant::now();
    while journal_actions(&data).len() < 2 && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(130));
    assert_eq!(journal_actions(&data), ["start", "stop", "start"]);
    assert!(dss(&data, "status"));
    assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), 0);
    env.ok(&["check"]);
}

#[test]
fn live_mode_reports_truthfully_and_never_tears_atomic_files() {
    let env = Env::new();
    env.init();
    let data = make_dss(&env, "13.2.0");
    let _svc = Service(data.clone());
    assert!(dss(&data, "start"));
    // A file rewritten in place without pause during the whole backup: it must be reported.
    let hot = data.join("managed_datasets/hot.csv");
    random_file(&hot, 8 << 20, 1);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (hot, stop) = (hot.clone(), stop.clone());
        std::thread::spawn(move || {
            use std::io::{Seek, Write};
            let mut f = std::fs::OpenOptions::new().write(true).open(&hot).unwrap();
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                f.seek(std::io::SeekFrom::Start((i * 4096) % (8 << 20)))
                    .unwrap();
                f.write_all(&i.to_le_bytes()).unwrap();
                i += 1;
                // No pause: a backup now reads the file in a few milliseconds, and a 200 us
                // pause let a whole read slip between two writes now and then.
                std::thread::yield_now();
            }
        })
    };
    let cfg = write_config(
        &env,
        &dss_config(&data, "consistency = \"live\"\nlive_retries = 2\n"),
    );
    let v = json_config(&env, &cfg, &["backup", "--app", "design"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    let c = &v["snapshot"]["consistency"];
    assert_eq!(c["mode"], "live");
    assert_eq!(c["consistent"], false);
    let inconsistent: Vec<&str> = c["inconsistent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert!(
        inconsistent.contains(&hot.to_str().unwrap()),
        "the file rewritten in place is reported: {c}"
    );
    // Nothing the service writes atomically is reported or torn.
    for p in &inconsistent {
        assert!(
            !p.ends_with(".json"),
            "atomically written file reported torn: {p}"
        );
    }
    assert_eq!(journal_actions(&data), ["start"], "never stopped");
    let out = env.path("restored");
    env.ok(&[
        "restore",
        v["id"].as_str().unwrap(),
        "--target",
        out.to_str().unwrap(),
    ]);
    assert!(assert_json_whole(&out) > 3);
    let text = ok_config(&env, &cfg, &["snapshots"]);
    assert!(
        text.contains("live,") && text.contains("inconsistent"),
        "{text}"
    );
}

#[test]
fn ad_hoc_flags_run_the_procedure_without_a_config_file() {
    let env = Env::new();
    env.init();
    let data = make_dss(&env, "13.2.0");
    let _svc = Service(data.clone());
    assert!(dss(&data, "start"));
    let v = env.json(&[
        "backup",
        data.to_str().unwrap(),
        "--profile",
        "dss",
        "--consistency",
        "stop",
        "--exclude-tier",
        "logs",
    ]);
    assert_eq!(v["snapshot"]["consistency"]["mode"], "stop");
    assert_eq!(
        v["snapshot"]["app"]["excluded_tiers"],
        serde_json::json!(["logs"])
    );
    assert_eq!(journal_actions(&data), ["start", "stop", "start"]);
}

#[test]
#[ignore = "needs root: PostgreSQL runs as the postgres user"]
fn postgres_dump_is_paired_and_restored_in_place() {
    let env = Env::new();
    let pg = Pg::start(&env);
    env.init();
    let data = make_dss(&env, "13.2.0");
    let _svc = Service(data.clone());
    assert!(dss(&data, "start"));
    pg.psql("govern", "CREATE TABLE items (id int primary key, name text); INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 500) g");
    let cfg = write_config(
        &env,
        &dss_config(
            &data,
            &format!(
                "[[app.design.postgres]]\nurl = \"{}\"\npassfile = \"{}\"\nglobals = true\n",
                pg.url(),
                pg.passfile().display()
            ),
        ),
    );
    let v = json_config(&env, &cfg, &["backup", "--app", "design"]);
    let att = &v["snapshot"]["attachments"][0];
    assert_eq!(att["name"], "postgres/govern");
    assert_eq!(att["kind"], "postgresql-custom");
    assert!(att["details"]["server_version"]
        .as_str()
        .unwrap()
        .starts_with("15"));
    assert!(att["bytes"].as_u64().unwrap() > 1000);
    let id = v["id"].as_str().unwrap().to_string();

    // Changes after the backup, in the database and the data directory.
    pg.psql(
        "govern",
        "DELETE FROM items WHERE id > 10; CREATE TABLE later (x int)",
    );
    std::fs::write(data.join("config/added-after.json"), "{}").unwrap();

    // Relocated database restore: into a new database, and as files. The target server's
    // password comes from PGPASSFILE.
    let dumps = env.path("dumps");
    let restore_db = |extra: &[&str]| {
        let mut args = vec!["restore", &id, "--db-target"];
        let url = pg.url_for("copy");
        args.push(&url);
        args.extend_from_slice(extra);
        env.cmd()
            .env("HOLDFAST_CONFIG", &cfg)
            .env("PGPASSFILE", pg.passfile())
            .args(&args)
            .output()
            .unwrap()
    };
    let o = restore_db(&["--dumps-to", dumps.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(pg.psql("copy", "SELECT count(*) FROM items"), "500");
    assert!(
        dumps
            .join("postgres-govern/govern.dump")
            .metadata()
            .unwrap()
            .len()
            > 1000
    );
    // pg_dump does not compress (compression = 0, the default): the repository does, and the
    // rows are there as text, as they deduplicate from one dump to the next.
    let dump = std::fs::read(dumps.join("postgres-govern/govern.dump")).unwrap();
    assert!(
        dump.windows(8).any(|w| w == b"item 250"),
        "the dump is compressed"
    );
    assert!(
        std::fs::read_to_string(dumps.join("postgres-govern/globals.sql"))
            .unwrap()
            .contains("ROLE")
    );
    // A non-empty target is refused without --clean.
    let o = restore_db(&[]);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(stderr(&o).contains("not empty"), "{}", stderr(&o));
    pg.psql("copy", "INSERT INTO items VALUES (1000, 'extra')");
    let o = restore_db(&["--clean"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(pg.psql("copy", "SELECT count(*) FROM items"), "500");

    // A relocated restore of the application (a test copy) never writes into the configured
    // production database: without --db-target it restores the files and says so.
    let elsewhere = env.path("elsewhere/data");
    let o = env
        .cmd()
        .env("HOLDFAST_CONFIG", &cfg)
        .env("PGPASSFILE", pg.passfile())
        .args([
            "restore",
            &id,
            "--app",
            "design",
            "--target",
            elsewhere.to_str().unwrap(),
            "--json",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(r["notes"].to_string().contains("not restored"), "{r}");
    assert_eq!(
        pg.psql("govern", "SELECT count(*) FROM items"),
        "10",
        "production touched"
    );
    // And a non-empty --db-target is refused before a single file is written.
    let elsewhere2 = env.path("elsewhere2/data");
    let url = pg.url_for("copy");
    let o = env
        .cmd()
        .env("HOLDFAST_CONFIG", &cfg)
        .env("PGPASSFILE", pg.passfile())
        .args([
            "restore",
            &id,
            "--app",
            "design",
            "--target",
            elsewhere2.to_str().unwrap(),
            "--db-target",
            &url,
        ])
        .output()
        .unwrap();
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(stderr(&o).contains("not empty"), "{}", stderr(&o));
    assert!(
        !elsewhere2.join("dss-version.json").exists(),
        "files were written first"
    );

    // Its dry run: the steps in order, each check made, nothing done.
    let journal_before = journal_actions(&data);
    let dry = json_config(
        &env,
        &cfg,
        &["restore", &id, "--app", "design", "--in-place", "--dry-run"],
    );
    let steps: Vec<String> = dry["plan"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert_eq!(steps.len(), 6, "{steps:?}");
    assert_eq!(steps[0], "stop the service");
    assert!(
        steps[1].starts_with("dump the current database govern to "),
        "{steps:?}"
    );
    assert!(
        steps[2].starts_with("move the current content of "),
        "{steps:?}"
    );
    assert!(
        steps[3].starts_with("restore ") && steps[3].contains(" file(s) "),
        "{steps:?}"
    );
    assert_eq!(
        steps[4],
        "replace database govern with dump postgres/govern"
    );
    assert_eq!(steps[5], "start the service");
    assert_eq!(
        dry["plan"]["refusals"].as_array().unwrap().len(),
        0,
        "{dry}"
    );
    assert_eq!(
        journal_actions(&data),
        journal_before,
        "the dry run touched the service"
    );
    assert!(
        data.join("config/added-after.json").exists(),
        "the dry run moved content"
    );
    assert_eq!(pg.psql("govern", "SELECT count(*) FROM items"), "10");

    // Pristine restore: stop, move aside, dump current, restore both, start.
    let r = json_config(
        &env,
        &cfg,
        &["restore", &id, "--app", "design", "--in-place"],
    );
    assert_eq!(pg.psql("govern", "SELECT count(*) FROM items"), "500");
    assert_eq!(
        pg.psql(
            "govern",
            "SELECT count(*) FROM pg_tables WHERE tablename = 'later'"
        ),
        "0"
    );
    let aside = PathBuf::from(r["moved_aside"].as_str().unwrap());
    assert!(
        aside.join("config/added-after.json").exists(),
        "old content kept aside"
    );
    assert!(!data.join("config/added-after.json").exists());
    let prev = PathBuf::from(r["previous_dumps"][0].as_str().unwrap());
    assert!(
        prev.metadata().unwrap().len() > 100,
        "current database dumped first"
    );
    assert!(dss(&data, "status"), "started after the restore");
    let acts = journal_actions(&data);
    assert_eq!(acts[acts.len() - 2..], ["stop", "start"]);
}

#[test]
fn version_rule_and_post_restore_step() {
    let env = Env::new();
    env.init();
    let data = make_dss(&env, "13.2.0");
    let cfg = write_config(
        &env,
        &dss_config(
            &data,
            &format!(
                "consistency = \"live\"\npost_restore_command = \"{} -d {{data_dir}} -u\"\n",
                fixture("dss/installer-upgrade.sh").display()
            ),
        ),
    );
    let v = json_config(&env, &cfg, &["backup", "--app", "design"]);
    let id = v["id"].as_str().unwrap().to_string();

    // Older installation in place: refused, nothing touched.
    std::fs::write(
        data.join("dss-version.json"),
        r#"{"product_version": "13.1.0"}"#,
    )
    .unwrap();
    let o = with_config(
        &env,
        &cfg,
        &["restore", &id, "--app", "design", "--in-place"],
    );
    assert_eq!(code(&o), 6, "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("13.2.0") && e.contains("13.1.0"), "{e}");
    assert!(data.join("config").exists(), "nothing moved");
    let siblings: Vec<_> = std::fs::read_dir(data.parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("before-restore"))
        .collect();
    assert!(siblings.is_empty());
    // Its dry run says so, with the same exit code as any refusal of a dry run.
    let o = with_config(
        &env,
        &cfg,
        &["restore", &id, "--app", "design", "--in-place", "--dry-run"],
    );
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        said.contains("refused: ") && said.contains("13.1.0"),
        "{said}"
    );

    // Relocated onto a newer installation: restored, then the installer's upgrade step runs.
    let newer = env.path("newsite/data");
    std::fs::create_dir_all(&newer).unwrap();
    let r = json_config(
        &env,
        &cfg,
        &[
            "restore",
            &id,
            "--app",
            "design",
            "--target",
            newer.to_str().unwrap(),
        ],
    );
    assert!(r["post_restore"].as_str().unwrap().contains("-u"));
    let j = std::fs::read_to_string(env.path("newsite/installer.journal")).unwrap();
    assert!(j.contains(&format!("upgrade {}", newer.display())), "{j}");
    assert!(r["notes"].to_string().contains("Python"), "{r}");
    assert!(newer.join("config").is_dir());

    // Onto an older installation elsewhere: refused unless forced.
    let old = env.path("oldsite/data");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::write(
        old.join("dss-version.json"),
        r#"{"product_version": "12.6.4"}"#,
    )
    .unwrap();
    let o = with_config(
        &env,
        &cfg,
        &[
            "restore",
            &id,
            "--app",
            "design",
            "--target",
            old.to_str().unwrap(),
            "--overwrite",
        ],
    );
    assert_eq!(code(&o), 6, "{}", stderr(&o));
    ok_config(
        &env,
        &cfg,
        &[
            "restore",
            &id,
            "--app",
            "design",
            "--target",
            old.to_str().unwrap(),
            "--overwrite",
            "--force-version",
        ],
    );
}

#[test]
fn pristine_restore_failure_keeps_the_old_content_aside() {
    let env = Env::new();
    env.init();
    let data = make_dss(&env, "13.2.0");
    let cfg = write_config(&env, &dss_config(&data, "consistency = \"live\"\n"));
    let v = json_config(&env, &cfg, &["backup", "--app", "design"]);
    let id = v["id"].as_str().unwrap().to_string();
    std::fs::write(data.join("config/precious.json"), "{\"keep\": true}").unwrap();
    // Damage the repository so that the restore fails after the content was moved.
    for e in walk_files(&env.repo.join("data")) {
        let mut b = std::fs::read(&e).unwrap();
        let n = b.len();
        b[n / 2] ^= 0xff;
        std::fs::write(&e, b).unwrap();
    }
    let o = env
        .cmd()
        .env("HOLDFAST_CONFIG", &cfg)
        .env("HOLDFAST_CACHE_DIR", env.path("cold-cache"))
        .args(["restore", &id, "--app", "design", "--in-place"])
        .output()
        .unwrap();
    assert_ne!(code(&o), 0);
    let e = stderr(&o);
    assert!(e.contains("the previous content is in"), "{e}");
    assert!(e.contains("left stopped"), "{e}");
    let aside = data.parent().unwrap().join(
        std::fs::read_dir(data.parent().unwrap())
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().contains("before-restore"))
            .expect("aside directory")
            .file_name(),
    );
    assert!(aside.join("config/precious.json").exists());
    // The service is left stopped: its script went aside with the rest of the content.
    assert!(!data.join("bin/dss").exists());
    assert!(aside.join("bin/dss").exists());
}

fn walk_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

/// Fake LVM and mount tools that journal their arguments; `mount` copies the origin.
fn fake_lvm(env: &Env, origin: &Path) -> PathBuf {
    let bin = env.path("fakebin");
    std::fs::create_dir_all(&bin).unwrap();
    let j = env.path("lvm.journal");
    let script = |name: &str, body: &str| {
        let p = bin.join(name);
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\necho \"{name} $*\" >> '{}'\n{body}\n",
                j.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    };
    let state = env.path("fake-lvs");
    script(
        "lvcreate",
        &format!("for a; do last_name=$a; done; name=$(echo \"$*\" | sed 's/.*--name \\([^ ]*\\).*/\\1/'); echo $name >> '{}'", state.display()),
    );
    script(
        "lvremove",
        &format!(
            "n=$(basename \"$2\"); grep -v \"^$n$\" '{s}' > '{s}.new' || true; mv '{s}.new' '{s}'",
            s = state.display()
        ),
    );
    script(
        "lvs",
        &format!("cat '{}' 2>/dev/null || true", state.display()),
    );
    script(
        "mount",
        &format!(
            "for a; do dir=$a; done; cp -a '{}/.' \"$dir/\"",
            origin.display()
        ),
    );
    script("umount", "rm -rf \"$1\"/* \"$1\"/.[!.]* 2>/dev/null; true");
    bin
}

#[test]
fn lvm_provider_runs_the_documented_sequence() {
    let env = Env::new();
    env.init();
    let data = make_dss(&env, "13.2.0");
    let bin = fake_lvm(&env, &env.path("site"));
    let mnt = env.path("mnt");
    let cfg = write_config(
        &env,
        &dss_config(
            &data,
            &format!(
                "consistency = \"snapshot\"\n[app.design.snapshot]\nprovider = \"lvm\"\nvolume_group = \"vg0\"\nlogical_volume = \"dss\"\nsize = \"2G\"\nmount_dir = \"{}\"\norigin_mount = \"{}\"\n",
                mnt.display(),
                env.path("site").display()
            ),
        ),
    );
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let o = env
        .cmd()
        .env("PATH", &path)
        .env("HOLDFAST_CONFIG", &cfg)
        .args(["backup", "--app", "design", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["snapshot"]["consistency"]["mode"], "snapshot");
    assert_eq!(v["snapshot"]["paths"][0], data.to_str().unwrap());
    let j = std::fs::read_to_string(env.path("lvm.journal")).unwrap();
    let lines: Vec<&str> = j.lines().filter(|l| !l.starts_with("lvs")).collect();
    assert_eq!(lines.len(), 4, "{j}");
    assert!(
        lines[0].starts_with("lvcreate --snapshot --permission r --name holdfast-design-"),
        "{j}"
    );
    assert!(lines[0].ends_with("--size 2G vg0/dss"), "{j}");
    let name = lines[0].split_whitespace().nth(5).unwrap();
    assert_eq!(
        lines[1],
        format!("mount -o ro /dev/vg0/{name} {}", mnt.display())
    );
    assert_eq!(lines[2], format!("umount {}", mnt.display()));
    assert_eq!(lines[3], format!("lvremove -f vg0/{name}"));
    let out = env.path("restored");
    env.ok(&[
        "restore",
        v["id"].as_str().unwrap(),
        "--target",
        out.to_str().unwrap(),
    ]);
    assert!(out.join("config").is_dir());
    assert_empty_tier_folder(&out.join("tmp"));
}

/// A btrfs filesystem on a loop device, unmounted and detached when dropped.
pub(crate) struct Btrfs {
    pub(crate) mnt: PathBuf,
    dev: String,
}

impl Btrfs {
    pub(crate) fn new(env: &Env) -> Btrfs {
        require_root("btrfs on a loop device");
        require_tool("mkfs.btrfs");
        require_tool("losetup");
        let img = env.path("btrfs.img");
        let f = std::fs::File::create(&img).unwrap();
        f.set_len(300 << 20).unwrap();
        let o = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&img)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "no loop device: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let dev = String::from_utf8_lossy(&o.stdout).trim().to_string();
        let mnt = env.path("btrfs");
        std::fs::create_dir_all(&mnt).unwrap();
        sh(&format!(
            "mkfs.btrfs -q {dev} && mount {dev} {}",
            mnt.display()
        ));
        Btrfs { mnt, dev }
    }
}

impl Drop for Btrfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

#[test]
#[ignore = "needs root: btrfs on a loop device"]
fn btrfs_provider_backs_up_a_read_only_snapshot_and_cleans_up() {
    let env = Env::new();
    let fs = Btrfs::new(&env);
    env.init();
    sh(&format!(
        "btrfs -q subvolume create {}/data",
        fs.mnt.display()
    ));
    let data = fs.mnt.join("data");
    assert!(Command::new(fixture("dss/make-datadir.sh"))
        .arg(&data)
        .status()
        .unwrap()
        .success());
    let _svc = Service(data.clone());
    assert!(dss(&data, "start"));
    let cfg = write_config(
        &env,
        &dss_config(
            &data,
            "consistency = \"snapshot\"\n[app.design.snapshot]\nprovider = \"btrfs\"\nkeep_snapshots = 2\n",
        ),
    );
    let snapdir = data.join(".holdfast-snapshots");
    // A snapshot left by a crashed run is found and removed by the next run.
    std::fs::create_dir_all(&snapdir).unwrap();
    sh(&format!(
        "btrfs -q subvolume snapshot -r {} {}/holdfast-design-00000000T000000Z",
        data.display(),
        snapdir.display()
    ));
    std::fs::create_dir_all(env.path("state/volumes")).unwrap();
    std::fs::write(
        env.path("state/volumes/design.json"),
        r#"{"name":"holdfast-design-00000000T000000Z"}"#,
    )
    .unwrap();

    let mut ids = Vec::new();
    for _ in 0..3 {
        let v = json_config(&env, &cfg, &["backup", "--app", "design"]);
        assert_eq!(v["snapshot"]["consistency"]["mode"], "snapshot");
        assert_eq!(v["snapshot"]["consistency"]["consistent"], true);
        assert_eq!(v["snapshot"]["paths"][0], data.to_str().unwrap());
        ids.push(v["id"].as_str().unwrap().to_string());
        std::thread::sleep(Duration::from_millis(20));
    }
    let notes =
        json_config(&env, &cfg, &["snapshots"])[0]["snapshot"]["consistency"]["notes"].to_string();
    assert!(notes.contains("left by an earlier run"), "{notes}");
    assert_eq!(journal_actions(&data), ["start"], "never stopped");
    // The newest two are kept as restore points, listed by the provider.
    let kept = json_config(&env, &cfg, &["snapshots", "--app", "design", "--provider"]);
    let kept = kept["snapshots"].as_array().unwrap();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(!kept.iter().any(|k| k == "holdfast-design-00000000T000000Z"));
    // The snapshot directory is not part of the backup, and the data restores whole.
    let out = env.path("restored");
    env.ok(&[
        "restore",
        ids.last().unwrap(),
        "--target",
        out.to_str().unwrap(),
    ]);
    assert!(!out.join(".holdfast-snapshots").exists());
    assert!(assert_json_whole(&out) > 3);
    assert_empty_tier_folder(&out.join("tmp"));
    // Incremental: the third backup read little.
    let s = json_config(&env, &cfg, &["snapshots"]);
    let last = &s[2]["snapshot"]["summary"];
    assert!(last["files_unchanged"].as_u64().unwrap() > 0, "{last}");
}

#[test]
fn upgrade_backs_up_first_then_upgrades_with_the_service_stopped() {
    let env = Env::new();
    env.init();
    let data = make_dss(&env, "13.2.0");
    let _svc = Service(data.clone());
    assert!(dss(&data, "start"));
    let cfg = write_config(&env, &dss_config(&data, ""));
    // The "installer" journals its run and bumps the version, as a real upgrade would.
    let installer = env.path("installer.sh");
    std::fs::write(
        &installer,
        format!(
            "#!/bin/sh\n{} status >/dev/null && {{ echo 'DSS must be stopped' >&2; exit 1; }}\n\
             {} \"$@\"\nprintf '{{\"product_version\": \"14.0.0\"}}' > {}/dss-version.json\n",
            data.join("bin/dss").display(),
            fixture("dss/installer-upgrade.sh").display(),
            data.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &installer,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = ok_config(
        &env,
        &cfg,
        &[
            "upgrade",
            "--app",
            "design",
            "--json",
            "--",
            installer.to_str().unwrap(),
            "-d",
            data.to_str().unwrap(),
            "-u",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["version"], "14.0.0");
    let snaps = json_config(&env, &cfg, &["snapshots"]);
    let s = &snaps[0]["snapshot"];
    assert_eq!(s["tags"], serde_json::json!(["pre-upgrade"]));
    assert_eq!(s["app"]["version"], "13.2.0");
    // One stop window: the backup and the upgrade between one stop and one start.
    assert_eq!(journal_actions(&data), ["start", "stop", "start"]);
    assert!(
        s["consistency"]["notes"]
            .to_string()
            .contains("same stop window"),
        "{s}"
    );
    assert!(std::fs::read_to_string(env.path("site/installer.journal"))
        .unwrap()
        .contains("upgrade"));
    assert!(dss(&data, "status"));
    // Ordinary retention leaves the pre-upgrade snapshot alone.
    let f = json_config(&env, &cfg, &["forget", "--keep-last", "0", "--dry-run"]);
    assert!(f.to_string().contains("protected tag pre-upgrade"), "{f}");
    // A failing upgrade leaves the service stopped and names the snapshot to go back to.
    let o = with_config(&env, &cfg, &["upgrade", "--app", "design", "--", "false"]);
    assert_eq!(code(&o), 5);
    let e = stderr(&o);
    assert!(
        e.contains("left stopped") && e.contains("--in-place"),
        "{e}"
    );
    assert!(e.contains("--resume") && e.contains("--abandon"), "{e}");
    assert!(!dss(&data, "status"));
    // While it is pending, scheduled runs and backups make no backup and never start the
    // service: they fail loudly, saying the ways out.
    let before = json_config(&env, &cfg, &["snapshots"])
        .as_array()
        .unwrap()
        .len();
    for args in [
        &["run", "--app", "design"][..],
        &["backup", "--app", "design"][..],
    ] {
        let o = with_config(&env, &cfg, args);
        assert_eq!(code(&o), 5, "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("failed upgrade pending"),
            "{}",
            stderr(&o)
        );
        assert!(
            !dss(&data, "status"),
            "{args:?} started a half-upgraded service"
        );
    }
    let o = with_config(&env, &cfg, &["upgrade", "--app", "design", "--", "true"]);
    assert_eq!(
        code(&o),
        5,
        "a second upgrade over a failed one: {}",
        stderr(&o)
    );
    assert_eq!(
        json_config(&env, &cfg, &["snapshots"])
            .as_array()
            .unwrap()
            .len(),
        before
    );
    // Resuming runs the command again on the stopped service, then starts it.
    let actions = journal_actions(&data).len();
    ok_config(
        &env,
        &cfg,
        &["upgrade", "--app", "design", "--resume", "--", "true"],
    );
    assert!(dss(&data, "status"), "resume did not start the service");
    assert_eq!(journal_actions(&data)[actions..], ["start"]);
    json_config(&env, &cfg, &["backup", "--app", "design"]);
    // Abandoning clears the marker and touches nothing.
    let o = with_config(&env, &cfg, &["upgrade", "--app", "design", "--", "false"]);
    assert_eq!(code(&o), 5);
    ok_config(&env, &cfg, &["upgrade", "--app", "design", "--abandon"]);
    assert!(!dss(&data, "status"));
    assert!(dss(&data, "start"));
    json_config(&env, &cfg, &["backup", "--app", "design"]);
}

#[test]
#[ignore = "needs root: PostgreSQL runs as the postgres user"]
fn postgres_directory_format_and_missing_tools() {
    let env = Env::new();
    let pg = Pg::start(&env);
    env.init();
    let data = make_dss(&env, "13.2.0");
    pg.psql(
        "govern",
        "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 2000) g",
    );
    let cfg = write_config(
        &env,
        &dss_config(
            &data,
            &format!(
                "consistency = \"live\"\n[[app.design.postgres]]\nurl = \"{}\"\npassfile = \"{}\"\nformat = \"directory\"\njobs = 2\n",
                pg.url(),
                pg.passfile().display()
            ),
        ),
    );
    let v = json_config(&env, &cfg, &["backup", "--app", "design"]);
    assert_eq!(
        v["snapshot"]["attachments"][0]["kind"],
        "postgresql-directory"
    );
    assert!(
        std::fs::read_dir(env.path("state/tmp"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "the temporary dump directory is removed"
    );
    let id = v["id"].as_str().unwrap().to_string();
    let o = env
        .cmd()
        .env("HOLDFAST_CONFIG", &cfg)
        .env("PGPASSFILE", pg.passfile())
        .args(["restore", &id, "--db-target", &pg.url_for("restored")])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(pg.psql("restored", "SELECT count(*) FROM t"), "2000");
    env.ok(&["check", "--read-data"]);

    // No pg_dump where the configuration says: a clear error naming it, exit code 5.
    let cfg = write_config(
        &env,
        &dss_config(
            &data,
            &format!(
                "consistency = \"live\"\n[[app.design.postgres]]\nurl = \"{}\"\nbin_dir = \"/nonexistent/bin\"\n",
                pg.url()
            ),
        ),
    );
    // Found by the preflight, before anything is touched.
    let o = with_config(&env, &cfg, &["backup", "--app", "design"]);
    assert_eq!(code(&o), 7, "{}", stderr(&o));
    assert!(stderr(&o).contains("/nonexistent/bin"), "{}", stderr(&o));
}

/// A transaction holding an exclusive lock on a table must not hang a nightly run: pg_dump
/// gives up after `lock_wait_timeout`, the run fails with the database's exit code and says
/// why, and no snapshot is written (the pair would not match).
#[test]
#[ignore = "needs root: PostgreSQL runs as the postgres user"]
fn a_table_lock_held_too_long_fails_the_dump_instead_of_hanging() {
    let env = Env::new();
    let pg = Pg::start(&env);
    env.init();
    let data = make_dss(&env, "13.2.0");
    pg.psql("govern", "CREATE TABLE t (id int)");
    let bindir = std::fs::read_to_string(pg.state.join("bindir")).unwrap();
    let mut holder = Command::new(format!("{}/psql", bindir.trim()))
        .env("PGPASSFILE", pg.passfile())
        .args(["-X", "-q", "-d", &pg.url(), "-c"])
        .arg("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60); COMMIT;")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let held = "SELECT count(*) FROM pg_locks WHERE relation = 't'::regclass AND mode = 'AccessExclusiveLock' AND granted";
    let t = std::time::Instant::now();
    while pg.psql("govern", held) != "1" {
        assert!(t.elapsed().as_secs() < 20, "the lock was never taken");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let cfg = write_config(
        &env,
        &dss_config(
            &data,
            &format!(
                "consistency = \"live\"\n[[app.design.postgres]]\nurl = \"{}\"\npassfile = \"{}\"\nlock_wait_timeout = \"1s\"\n",
                pg.url(),
                pg.passfile().display()
            ),
        ),
    );
    let started = std::time::Instant::now();
    let o = with_config(&env, &cfg, &["backup", "--app", "design"]);
    let took = started.elapsed();
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("lock_wait_timeout"),
        "the error should name the setting: {}",
        stderr(&o)
    );
    assert!(
        took.as_secs() < 30,
        "pg_dump waited {took:?} for a lock held for 60 s"
    );
    assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), 0);
}

/// A server that accepts connections and never answers must not hang a nightly run either:
/// the tools give up after `connect_timeout`, the run fails with the database's exit code and
/// names the setting, and no snapshot is written.
#[test]
fn a_server_that_never_answers_fails_the_dump_after_connect_timeout() {
    assert!(
        Path::new("/usr/lib/postgresql").exists(),
        "this test needs the PostgreSQL client tools in /usr/lib/postgresql (.ci/run installs them)"
    );
    let env = Env::new();
    env.init();
    let data = make_dss(&env, "13.2.0");
    // The kernel completes the handshake for the backlog; nobody ever reads or answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let url = format!("postgresql://holdfast@127.0.0.1:{port}/govern");
    // A value that is not a duration is refused before anything runs, naming the key.
    let bad = write_config(
        &env,
        &dss_config(
            &data,
            &format!("[[app.design.postgres]]\nurl = \"{url}\"\nconnect_timeout = \"soon\"\n"),
        ),
    );
    let o = with_config(&env, &bad, &["config", "check"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(stderr(&o).contains("connect_timeout"), "{}", stderr(&o));
    let cfg = write_config(
        &env,
        &dss_config(
            &data,
            &format!(
                "consistency = \"live\"\n[[app.design.postgres]]\nurl = \"{url}\"\nconnect_timeout = \"2s\"\n"
            ),
        ),
    );
    let started = std::time::Instant::now();
    let mut child = env
        .cmd()
        .env("HOLDFAST_CONFIG", &cfg)
        .args(["backup", "--app", "design"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed().as_secs() > 60 {
            let _ = child.kill();
            panic!("the run still waited for the silent server after 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let took = started.elapsed();
    let o = child.wait_with_output().unwrap();
    // The preflight's connection gives up first: nothing was stopped.
    assert_eq!(code(&o), 7, "{}", stderr(&o));
    // The configured 2 s, not the 30 s default.
    assert!(took.as_secs() < 20, "gave up only after {took:?}");
    assert!(
        stderr(&o).contains("connect_timeout"),
        "the error should name the setting: {}",
        stderr(&o)
    );
    assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), 0);
    drop(silent);
}

#[test]
fn schedules_list_and_install_units() {
    let env = Env::new();
    let cfg = write_config(
        &env,
        &dss_config(Path::new("/srv/dss/data"), "schedule = \"15 6 * * 1-5\"\n"),
    );
    let v = json_config(&env, &cfg, &["schedule", "list", "--count", "5"]);
    let next: Vec<String> = v[0]["next"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    assert_eq!(next.len(), 5);
    for n in &next {
        assert!(n.ends_with(" 06:15"), "{n}");
        let d = chrono::NaiveDate::parse_from_str(&n[..10], "%Y-%m-%d").unwrap();
        use chrono::Datelike;
        assert!(d.weekday().number_from_monday() <= 5, "{n} is a weekday");
    }
    let units = env.path("units");
    ok_config(
        &env,
        &cfg,
        &["schedule", "install", "--dir", units.to_str().unwrap()],
    );
    let timer = std::fs::read_to_string(units.join("holdfast-design.timer")).unwrap();
    assert!(
        timer.contains("OnCalendar=Mon,Tue,Wed,Thu,Fri *-*-* 06:15:00"),
        "{timer}"
    );
    assert!(timer.contains("Persistent=true"));
    let service = std::fs::read_to_string(units.join("holdfast-design.service")).unwrap();
    assert!(
        service.contains(&format!("--config {} run --app design", cfg.display())),
        "{service}"
    );
    ok_config(
        &env,
        &cfg,
        &[
            "schedule",
            "install",
            "--cron",
            "--dir",
            units.to_str().unwrap(),
        ],
    );
    let cron = std::fs::read_to_string(units.join("holdfast")).unwrap();
    assert!(cron.contains("15 6 * * 1-5 root "), "{cron}");
    // A bad expression is a configuration error with its line.
    let bad = write_config(
        &env,
        &dss_config(Path::new("/srv/dss/data"), "schedule = \"15 6 * *\"\n"),
    );
    let o = with_config(&env, &bad, &["schedule", "list"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(
        stderr(&o).contains(":6: [app.design] schedule"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn run_applies_retention_logs_hooks_and_metrics() {
    let env = Env::new();
    env.init();
    let data = make_dss(&env, "13.2.0");
    let hook_out = env.path("hook.out");
    let metrics = env.path("metrics/holdfast.prom");
    let cfg = write_config(
        &env,
        &format!(
            "metrics_file = \"{m}\"\n[hooks]\nalways = \"echo $HOLDFAST_APP $HOLDFAST_RESULT $HOLDFAST_EXIT_CODE $HOLDFAST_SNAPSHOT >> {h}\"\n{}",
            dss_config(
                &data,
                "consistency = \"live\"\nschedule = \"15 6 * * 1-5\"\n[app.design.retention]\nkeep_last = 2\nprune = true\n[app.design.check]\nread_data_subset = \"50%\"\nevery = \"7d\"\n"
            ),
            m = metrics.display(),
            h = hook_out.display()
        ),
    );
    for i in 0..3 {
        std::fs::write(data.join(format!("config/run{i}.json")), "{}").unwrap();
        let v = json_config(&env, &cfg, &["run", "--app", "design"]);
        assert_eq!(v["runs"][0]["result"], "success", "{v}");
        assert_eq!(v["runs"][0]["checked"], i == 0, "check only when due: {v}");
    }
    // A pre-upgrade snapshot stays whatever the policy says.
    json_config(
        &env,
        &cfg,
        &["backup", "--app", "design", "--tag", "pre-upgrade"],
    );
    json_config(&env, &cfg, &["run", "--app", "design"]);
    let snaps = json_config(&env, &cfg, &["snapshots"]);
    let tags: Vec<String> = snaps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["snapshot"]["tags"].to_string())
        .collect();
    assert_eq!(
        snaps.as_array().unwrap().len(),
        3,
        "two by keep_last, plus the pre-upgrade one: {tags:?}"
    );
    assert!(tags.iter().any(|t| t.contains("pre-upgrade")));
    env.ok(&["check", "--read-data"]);

    let runs = json_config(&env, &cfg, &["runs"]);
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 5);
    assert_eq!(runs[4]["kind"], "run");
    assert_eq!(runs[3]["kind"], "backup");
    assert!(runs[2]["forgotten"].as_u64().unwrap() >= 1);
    let text = ok_config(&env, &cfg, &["runs"]);
    assert!(
        text.contains("design") && text.contains("success"),
        "{text}"
    );

    let hooks = std::fs::read_to_string(&hook_out).unwrap();
    assert_eq!(hooks.lines().count(), 5, "{hooks}");
    assert!(
        hooks.lines().all(|l| l.starts_with("design success 0 ")),
        "{hooks}"
    );
    let m = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        m.contains("holdfast_last_run_success{app=\"design\"} 1"),
        "{m}"
    );
    assert!(m.contains("holdfast_snapshots{app=\"design\"} 3"), "{m}");
    assert!(
        m.contains("holdfast_last_success_timestamp_seconds{app=\"design\"} 1"),
        "{m}"
    );

    // A failing run: on_failure sees it, metrics say so, exit code is the backup's.
    std::fs::write(&hook_out, "").unwrap();
    std::fs::remove_dir_all(&data).unwrap();
    let o = with_config(&env, &cfg, &["run", "--app", "design"]);
    assert_eq!(code(&o), 7, "preflight: {}", stderr(&o));
    let hooks = std::fs::read_to_string(&hook_out).unwrap();
    assert!(hooks.starts_with("design failure 7"), "{hooks}");
    let m = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        m.contains("holdfast_last_run_success{app=\"design\"} 0"),
        "{m}"
    );
}

#[test]
fn daemon_catches_up_a_missed_run_and_stops_cleanly_on_sigterm() {
    let env = Env::new();
    env.init();
    let data = make_dss(&env, "13.2.0");
    random_file(&data.join("managed_datasets/big.bin"), 300 << 20, 3);
    let _svc = Service(data.clone());
    assert!(dss(&data, "start"));
    let cfg = write_config(&env, &dss_config(&data, "schedule = \"15 6 * * *\"\n"));
    // The last run was long ago: the daemon runs once at start.
    std::fs::create_dir_all(env.path("state")).unwrap();
    std::fs::write(
        env.path("state/runs.jsonl"),
        "{\"start\":\"2026-01-01T06:15:00Z\",\"app\":\"design\",\"kind\":\"run\",\"result\":\"success\"}\n",
    )
    .unwrap();
    let child = env
        .cmd()
        .env("HOLDFAST_CONFIG", &cfg)
        .args(["daemon"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while journal_actions(&data).len() < 2 && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        journal_actions(&data),
        ["start", "stop"],
        "the caught-up run stopped the service"
    );
    std::thread::sleep(Duration::from_millis(200));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("was missed; running it now"), "{err}");
    assert_eq!(journal_actions(&data), ["start", "stop", "start"], "{err}");
    assert!(dss(&data, "status"));
    let runs = holdfast_runs(&env);
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[1]["result"], "failure");
}

fn holdfast_runs(env: &Env) -> Vec<serde_json::Value> {
    std::fs::read_to_string(env.path("state/runs.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn custom_provider_runs_the_administrators_commands() {
    let env = Env::new();
    env.init();
    let data = make_dss(&env, "13.2.0");
    let store = env.path("volume-snapshots");
    let mnt = env.path("mnt");
    std::fs::create_dir_all(&store).unwrap();
    // "Snapshots" are copies; "mounting" copies one where holdfast reads it.
    let cfg = write_config(
        &env,
        &dss_config(
            &data,
            &format!(
                "consistency = \"snapshot\"\n[app.design.snapshot]\nprovider = \"custom\"\nkeep_snapshots = 1\n\
                 mount_dir = \"{m}\"\norigin_mount = \"{d}\"\n\
                 create = \"cp -a {d} {s}/{{name}}\"\n\
                 mount = \"cp -a {s}/{{name}}/. {{mount}}/\"\n\
                 unmount = \"rm -rf {{mount}} && mkdir {{mount}}\"\n\
                 destroy = \"rm -rf {s}/{{name}}\"\n\
                 list = \"ls {s}\"\n",
                m = mnt.display(),
                d = data.display(),
                s = store.display()
            ),
        ),
    );
    ok_config(&env, &cfg, &["config", "check"]);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let v = json_config(&env, &cfg, &["backup", "--app", "design"]);
        assert_eq!(v["snapshot"]["consistency"]["mode"], "snapshot");
        assert_eq!(v["snapshot"]["paths"][0], data.to_str().unwrap());
        ids.push(v["id"].as_str().unwrap().to_string());
        std::thread::sleep(Duration::from_millis(10));
    }
    // keep_snapshots = 1: only the newest copy is left, and the provider lists it.
    let left: Vec<_> = std::fs::read_dir(&store).unwrap().flatten().collect();
    assert_eq!(left.len(), 1);
    let kept = json_config(&env, &cfg, &["snapshots", "--app", "design", "--provider"]);
    assert_eq!(kept["snapshots"].as_array().unwrap().len(), 1, "{kept}");
    assert_eq!(std::fs::read_dir(&mnt).unwrap().count(), 0, "unmounted");
    let out = env.path("restored");
    env.ok(&["restore", &ids[1], "--target", out.to_str().unwrap()]);
    assert!(out.join("config").is_dir());
    assert_empty_tier_folder(&out.join("tmp"));
    // A failing create leaves nothing behind and says which step failed.
    let broken = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("create = \"cp -a", "create = \"false && cp -a");
    std::fs::write(&cfg, broken).unwrap();
    let o = with_config(&env, &cfg, &["backup", "--app", "design"]);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("creating the volume snapshot"),
        "{}",
        stderr(&o)
    );
    let working = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("create = \"false && cp -a", "create = \"cp -a");
    std::fs::write(&cfg, &working).unwrap();

    // A leftover of a crashed run that someone already removed by hand is forgotten: the
    // provider's list does not show it, so its destroy command (which, like lvremove, fails
    // on a snapshot that is not there) is not run.
    let state = env.path("state/volumes/design.json");
    std::fs::write(
        &state,
        r#"{"name": "holdfast-design-20260101T000000.000Z"}"#,
    )
    .unwrap();
    std::fs::write(
        &cfg,
        working.replace("destroy = \"rm -rf", "destroy = \"rm -r"),
    )
    .unwrap();
    json_config(&env, &cfg, &["backup", "--app", "design"]);
    // One that is still there but cannot be destroyed stops the run, saying what to do.
    let stuck = "holdfast-design-20260102T000000.000Z";
    std::fs::create_dir(store.join(stuck)).unwrap();
    std::fs::write(&state, format!(r#"{{"name": "{stuck}"}}"#)).unwrap();
    std::fs::write(
        &cfg,
        working.replace("destroy = \"rm -rf", "destroy = \"false && rm -rf"),
    )
    .unwrap();
    let o = with_config(&env, &cfg, &["backup", "--app", "design"]);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "snapshot {stuck}, left by an earlier run: remove it by hand; the next run then finds it gone"
        )),
        "{}",
        stderr(&o)
    );
    // Done as told (the provider lists snapshots, so the record needs no hand), runs go on.
    std::fs::remove_dir(store.join(stuck)).unwrap();
    std::fs::write(&cfg, &working).unwrap();
    json_config(&env, &cfg, &["backup", "--app", "design"]);
    assert!(!state.exists() || std::fs::read_to_string(&state).unwrap().contains("null"));
}

/// A service stopped on purpose (maintenance) stays stopped: a scheduled backup, an upgrade
/// and an in-place restore ask its status first and neither stop nor start it; the snapshot
/// says so.
#[test]
fn a_stopped_service_stays_stopped_through_backup_upgrade_and_restore() {
    let env = Env::new();
    env.init();
    let data = make_dss(&env, "13.2.0");
    let _svc = Service(data.clone());
    assert!(!dss(&data, "status"), "the stand-in starts stopped");
    let cfg = write_config(&env, &dss_config(&data, ""));
    let v = json_config(&env, &cfg, &["backup", "--app", "design"]);
    let c = &v["snapshot"]["consistency"];
    assert_eq!(c["mode"], "stop");
    assert!(c["notes"].to_string().contains("not running"), "{c}");
    assert!(c["downtime_secs"].is_null(), "{c}");
    assert!(
        journal_actions(&data).is_empty(),
        "{:?}",
        journal_actions(&data)
    );
    assert!(!dss(&data, "status"), "a backup started a stopped service");

    ok_config(&env, &cfg, &["upgrade", "--app", "design", "--", "true"]);
    assert!(
        journal_actions(&data).is_empty(),
        "{:?}",
        journal_actions(&data)
    );
    assert!(
        !dss(&data, "status"),
        "an upgrade started a stopped service"
    );

    let id = v["id"].as_str().unwrap().to_string();
    ok_config(
        &env,
        &cfg,
        &["restore", &id, "--app", "design", "--in-place"],
    );
    assert!(
        journal_actions(&data).is_empty(),
        "{:?}",
        journal_actions(&data)
    );
    assert!(!dss(&data, "status"), "a restore started a stopped service");
}

/// A uid's processes in /proc, read from the status file of the stand-in's writer.
fn service_uid(data: &Path) -> u32 {
    let pid = std::fs::read_to_string(data.join("pids/dss.pid")).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// DSS runs as its own user: root's stop-mode backup starts it again as that user (the owner
/// of DATA_DIR by default), never as root.
#[test]
#[ignore = "needs root: runs the service as another user"]
fn the_service_comes_back_as_its_own_user() {
    require_root("runs the service as another user");
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    env.init();
    let data = make_dss(&env, "13.2.0");
    let site = data.parent().unwrap();
    sh(&format!("chown -R nobody {}", site.display()));
    let _svc = Service(data.clone());
    sh(&format!(
        "runuser -u nobody -- {}/bin/dss start",
        data.display()
    ));
    std::thread::sleep(Duration::from_millis(300));
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    assert_eq!(service_uid(&data), nobody);
    let cfg = write_config(&env, &dss_config(&data, ""));
    let v = json_config(&env, &cfg, &["backup", "--app", "design"]);
    assert_eq!(v["snapshot"]["consistency"]["consistent"], true);
    assert_eq!(journal_actions(&data), ["start", "stop", "start"]);
    assert!(dss(&data, "status"));
    assert_eq!(service_uid(&data), nobody, "the service came back as root");
    // Nothing in the data directory belongs to root after the restart.
    std::thread::sleep(Duration::from_millis(300));
    let out = std::process::Command::new("find")
        .arg(&data)
        .args(["-uid", "0"])
        .output()
        .unwrap();
    assert!(
        out.stdout.is_empty(),
        "root-owned files: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A generic application whose data directory belongs to another user is not started as
/// root unless service.user says so; nothing is stopped before that is found.
#[test]
#[ignore = "needs root: a data directory owned by another user"]
fn root_refuses_to_run_another_users_service_without_service_user() {
    require_root("a data directory owned by another user");
    let env = Env::new();
    env.init();
    let data = env.path("app-data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("f"), "x").unwrap();
    sh(&format!("chown -R nobody {}", data.display()));
    let marks = env.path("marks");
    std::fs::create_dir_all(&marks).unwrap();
    let app = |user: &str| {
        format!(
            "[app.web]\ndata_dir = \"{}\"\nconsistency = \"stop\"\n[app.web.service]\nstop = \"id -un >> {m}/stop\"\nstart = \"id -un >> {m}/start\"\n{user}",
            data.display(),
            m = marks.display()
        )
    };
    let cfg = write_config(&env, &app(""));
    let o = with_config(&env, &cfg, &["backup", "--app", "web"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(stderr(&o).contains("service.user"), "{}", stderr(&o));
    assert!(
        !marks.join("stop").exists(),
        "the service was stopped anyway"
    );
    // An explicit root is honoured.
    let cfg = write_config(&env, &app("user = \"root\"\n"));
    ok_config(&env, &cfg, &["backup", "--app", "web"]);
    assert_eq!(
        std::fs::read_to_string(marks.join("start")).unwrap(),
        "root\n"
    );
    // And another user is used for both commands.
    let cfg = write_config(&env, &app("user = \"nobody\"\n"));
    std::fs::remove_dir_all(&marks).unwrap();
    std::fs::create_dir_all(&marks).unwrap();
    sh(&format!("chmod 777 {}", marks.display()));
    ok_config(&env, &cfg, &["backup", "--app", "web"]);
    assert_eq!(
        std::fs::read_to_string(marks.join("stop")).unwrap(),
        "nobody\n"
    );
    assert_eq!(
        std::fs::read_to_string(marks.join("start")).unwrap(),
        "nobody\n"
    );
}

/// Everything a run needs is checked before the service is stopped: a PostgreSQL source that
/// refuses connections fails the run with exit code 7 and DSS keeps running; `plan` runs the
/// same preflight and exits non-zero; a missing data directory too.
#[test]
fn preflight_fails_before_the_service_is_touched() {
    assert!(
        Path::new("/usr/lib/postgresql").exists(),
        "this test needs the PostgreSQL client tools in /usr/lib/postgresql (.ci/run installs them)"
    );
    let env = Env::new();
    env.init();
    let data = make_dss(&env, "13.2.0");
    let _svc = Service(data.clone());
    assert!(dss(&data, "start"));
    // Nothing listens on port 1.
    let cfg = write_config(
        &env,
        &dss_config(
            &data,
            "[[app.design.postgres]]\nurl = \"postgresql://govern@127.0.0.1:1/govern\"\n",
        ),
    );
    let started = Instant::now();
    let o = with_config(&env, &cfg, &["backup", "--app", "design"]);
    assert_eq!(code(&o), 7, "{}", stderr(&o));
    assert!(stderr(&o).contains("127.0.0.1:1"), "{}", stderr(&o));
    assert!(stderr(&o).contains("not touched"), "{}", stderr(&o));
    assert_eq!(journal_actions(&data), ["start"], "the service was stopped");
    assert!(dss(&data, "status"));
    assert!(env.json(&["snapshots"]).as_array().unwrap().is_empty());
    assert!(started.elapsed() < Duration::from_secs(60));
    let o = with_config(&env, &cfg, &["plan", "--app", "design"]);
    assert_eq!(
        code(&o),
        7,
        "plan passed a preflight that fails: {}",
        stderr(&o)
    );

    let cfg = write_config(&env, &dss_config(&env.path("no-such-dir"), ""));
    let o = with_config(&env, &cfg, &["plan", "--app", "design"]);
    assert_eq!(code(&o), 7, "{}", stderr(&o));
    assert!(stderr(&o).contains("no-such-dir"), "{}", stderr(&o));
}

/// Two runs of one application's procedure never interleave their stops and starts: while
/// one holds the application's lock, another fails at once (exit code 11) and touches nothing.
#[test]
fn one_procedure_run_per_application_at_a_time() {
    require_tool("flock");
    let env = Env::new();
    env.init();
    let data = make_dss(&env, "13.2.0");
    let _svc = Service(data.clone());
    assert!(dss(&data, "start"));
    let cfg = write_config(&env, &dss_config(&data, ""));
    let locks = env.path("state/locks");
    std::fs::create_dir_all(&locks).unwrap();
    let lockfile = locks.join("app-design.lock");
    std::fs::write(&lockfile, "pid 1, backup, since then\n").unwrap();
    let mut holder = Command::new("flock")
        .arg("--no-fork")
        .arg(&lockfile)
        .args(["sleep", "30"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    for args in [
        &["backup", "--app", "design"][..],
        &["upgrade", "--app", "design", "--", "true"][..],
    ] {
        let o = with_config(&env, &cfg, args);
        assert_eq!(code(&o), 11, "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("already running"), "{}", stderr(&o));
    }
    assert_eq!(journal_actions(&data), ["start"], "the service was touched");
    holder.kill().unwrap();
    holder.wait().unwrap();
    json_config(&env, &cfg, &["backup", "--app", "design"]);
    assert_eq!(journal_actions(&data), ["start", "stop", "start"]);
}

/// `restore latest --app` finds the application's snapshots, not the configured path's: on a
/// new machine or location (the documented migration) it restores; with no snapshot from
/// this host it takes another host's and says which; with none, it lists what exists. An
/// in-place restore of another application's snapshot is refused.
#[test]
fn restore_finds_the_application_wherever_it_was_backed_up() {
    let env = Env::new();
    env.init();
    let data = make_dss(&env, "13.2.0");
    let _svc = Service(data.clone());
    let cfg = write_config(
        &env,
        &format!(
            "{}\n[app.govern]\nprofile = \"dss\"\ndata_dir = \"{}\"\n",
            dss_config(&data, ""),
            data.display()
        ),
    );
    let design = json_config(&env, &cfg, &["backup", "--app", "design"]);
    let govern = json_config(
        &env,
        &cfg,
        &["backup", "--app", "govern", "--host", "oldbox"],
    );

    // The same application, configured at a new location on this machine.
    let new_data = env.path("newsite/data");
    let moved = write_config(
        &env,
        &format!(
            "[app.design]\nprofile = \"dss\"\ndata_dir = \"{}\"\n[app.govern]\nprofile = \"dss\"\ndata_dir = \"{}\"\n[app.api]\nprofile = \"dss\"\ndata_dir = \"{}\"\n",
            new_data.display(),
            new_data.display(),
            new_data.display()
        ),
    );
    let t = env.path("t-design");
    let o = with_config(
        &env,
        &moved,
        &[
            "restore",
            "latest",
            "--app",
            "design",
            "--target",
            t.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["snapshot"], design["id"].as_str().unwrap()[..8]);
    assert!(t.join("dss-version.json").exists());

    // Only another host backed govern up: taken, and said.
    let t = env.path("t-govern");
    let o = with_config(
        &env,
        &moved,
        &[
            "restore",
            "latest",
            "--app",
            "govern",
            "--target",
            t.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("oldbox"), "{}", stderr(&o));
    assert!(t.join("dss-version.json").exists());

    // Nothing of api: the error lists what there is.
    let t = env.path("t-api");
    let o = with_config(
        &env,
        &moved,
        &[
            "restore",
            "latest",
            "--app",
            "api",
            "--target",
            t.to_str().unwrap(),
        ],
    );
    assert_ne!(code(&o), 0);
    let e = stderr(&o);
    assert!(
        e.contains("application design") && e.contains("application govern from oldbox"),
        "{e}"
    );

    // govern's snapshot in place of design: refused, nothing changed.
    let before = snapshot_tree(&data);
    let gid = govern["id"].as_str().unwrap();
    let o = with_config(
        &env,
        &cfg,
        &["restore", gid, "--app", "design", "--in-place"],
    );
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(stderr(&o).contains("--allow-other-app"), "{}", stderr(&o));
    assert_eq!(snapshot_tree(&data).len(), before.len());
    assert!(journal_actions(&data).is_empty(), "the service was touched");
}

/// Archives of the documented cron script, imported with --app, are that application's
/// snapshots: listed with it, and under its retention.
#[test]
fn imported_archives_can_be_filed_as_an_application() {
    let env = Env::new();
    env.init();
    let data = make_dss(&env, "13.2.0");
    let cfg = write_config(&env, &dss_config(&data, ""));
    let archive = env.path("backup-dss-data-2026-11-20.tar.gz");
    sh(&format!(
        "tar -czf {} -C {} .",
        archive.display(),
        data.display()
    ));
    let v = json_config(
        &env,
        &cfg,
        &["import", archive.to_str().unwrap(), "--app", "design"],
    );
    assert_eq!(v[0]["snapshot"]["app"]["name"], "design", "{v}");
    assert_eq!(v[0]["snapshot"]["paths"][0], data.to_str().unwrap());
    let listed = json_config(&env, &cfg, &["snapshots", "--app", "design"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
}

/// The terminal says what each mode guarantees, and `run` what each step did.
#[test]
fn summaries_say_what_each_mode_guarantees_and_what_each_step_did() {
    let env = Env::new();
    env.init();
    let data = make_dss(&env, "13.2.0");
    let _svc = Service(data.clone());
    assert!(dss(&data, "start"));
    let cfg = write_config(&env, &dss_config(&data, ""));
    let out = ok_config(&env, &cfg, &["backup", "--app", "design"]);
    assert!(out.contains("quiescent: the service was stopped"), "{out}");
    let out = ok_config(
        &env,
        &cfg,
        &["backup", "--app", "design", "--consistency", "live"],
    );
    assert!(out.contains("NOT guaranteed consistent"), "{out}");
    let cfg = write_config(
        &env,
        &dss_config(&data, "[app.design.retention]\nkeep_last = 1\n"),
    );
    let out = ok_config(&env, &cfg, &["run", "--app", "design"]);
    assert!(out.contains("backup: snapshot"), "{out}");
    assert!(out.contains("retention: 2 snapshot(s) forgotten"), "{out}");
    assert!(out.contains("check: "), "{out}");
}

/// A scheduled run on a damaged repository fails loudly (exit code 14, a failure in the run
/// log) instead of reporting success with a warning, and forgets nothing.
#[test]
fn a_scheduled_run_fails_on_damage_and_forgets_nothing() {
    let env = Env::new();
    env.init();
    let data = make_dss(&env, "13.2.0");
    let cfg = write_config(
        &env,
        &dss_config(
            &data,
            "consistency = \"live\"\n[app.design.retention]\nkeep_last = 1\nprune = true\n[app.design.check]\n",
        ),
    );
    ok_config(&env, &cfg, &["run", "--app", "design"]);
    ok_config(&env, &cfg, &["run", "--app", "design"]);
    // Damage the one snapshot retention kept, as seen by another host (no cache).
    let snaps: Vec<_> = std::fs::read_dir(env.repo.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(snaps.len(), 1);
    let mut b = std::fs::read(&snaps[0]).unwrap();
    b[40] ^= 1;
    std::fs::write(&snaps[0], b).unwrap();
    std::fs::remove_dir_all(&env.cache).unwrap();
    let o = with_config(&env, &cfg, &["run", "--app", "design"]);
    assert_eq!(code(&o), 14, "{}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(
        std::fs::read_dir(env.repo.join("snapshots"))
            .unwrap()
            .count(),
        2,
        "retention forgot snapshots while one could not be read"
    );
    let runs = json_config(&env, &cfg, &["runs"]);
    let last = runs.as_array().unwrap().last().unwrap();
    assert_eq!(last["result"], "failure", "{last}");
}

/// A stand-in monitoring service: records each request's method, path and body, answers 200.
struct PingListener {
    port: u16,
    seen: std::sync::Arc<std::sync::Mutex<Vec<(String, String, String)>>>,
}

impl PingListener {
    fn start() -> PingListener {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let mut parts = line.split_whitespace();
                let (method, path) = (
                    parts.next().unwrap_or_default().to_string(),
                    parts.next().unwrap_or_default().to_string(),
                );
                let mut len = 0;
                loop {
                    let mut h = String::new();
                    r.read_line(&mut h).unwrap();
                    if h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            len = v.trim().parse().unwrap();
                        }
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                log.lock().unwrap().push((
                    method,
                    path,
                    String::from_utf8_lossy(&body).into_owned(),
                ));
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK",
                );
            }
        });
        PingListener { port, seen }
    }

    fn take(&self) -> Vec<(String, String, String)> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

/// `ping_url`: start and end of each run reach the monitoring service, paired by one run id,
/// success and failure told apart, with a report in the body; a service that cannot be
/// reached is a warning, never a failed backup.
#[test]
fn runs_ping_a_monitoring_service_at_start_and_end() {
    let env = Env::new();
    env.init();
    let data = make_dss(&env, "13.2.0");
    let hc = PingListener::start();
    let cfg = write_config(
        &env,
        &format!(
            "[hooks]\nping_url = \"http://127.0.0.1:{}/ping/check-uuid/\"\n{}",
            hc.port,
            dss_config(&data, "consistency = \"live\"\n")
        ),
    );
    let ok = json_config(&env, &cfg, &["run", "--app", "design"]);
    assert_eq!(ok["runs"][0]["result"], "success", "{ok}");
    let seen = hc.take();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let (start, end) = (&seen[0], &seen[1]);
    assert_eq!(start.0, "POST");
    let rid = |path: &str| {
        path.split_once("?rid=")
            .map(|(_, r)| r.to_string())
            .unwrap()
    };
    assert!(
        start.1.starts_with("/ping/check-uuid/start?rid="),
        "{start:?}"
    );
    assert!(end.1.starts_with("/ping/check-uuid?rid="), "{end:?}");
    assert_eq!(rid(&start.1), rid(&end.1), "one run id pairs start and end");
    assert_eq!(rid(&start.1).len(), 36);
    let snapshot = ok["runs"][0]["snapshot"].as_str().unwrap();
    assert!(
        end.2.starts_with("holdfast run of design: success") && end.2.contains(&snapshot[..8]),
        "{end:?}"
    );

    // A backup --app of a configured application is a run too; a failure pings /fail.
    std::fs::rename(&data, env.path("moved")).unwrap();
    let o = with_config(&env, &cfg, &["backup", "--app", "design"]);
    assert_eq!(code(&o), 7, "{}", stderr(&o));
    let seen = hc.take();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[0].1.contains("/start?rid="), "{seen:?}");
    assert!(
        seen[1].1.starts_with("/ping/check-uuid/fail?rid="),
        "{seen:?}"
    );
    assert!(
        seen[1].2.contains("failure") && seen[1].2.contains("error: "),
        "{seen:?}"
    );
    std::fs::rename(env.path("moved"), &data).unwrap();

    // Nobody listening: the run succeeds, with a warning that names the host only.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let cfg = write_config(
        &env,
        &format!(
            "[hooks]\nping_url = \"http://127.0.0.1:{port}/secret-uuid\"\n{}",
            dss_config(&data, "consistency = \"live\"\n")
        ),
    );
    let o = with_config(&env, &cfg, &["run", "--app", "design"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("to http://127.0.0.1:{port}/… failed")),
        "{err}"
    );
    assert!(
        !err.contains("secret-uuid"),
        "the URL's secret part was shown: {err}"
    );
    let runs = json_config(&env, &cfg, &["runs"]);
    let last = &runs.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["result"], "success", "{last}");
    assert!(
        last["warnings"].to_string().contains("ping (success)"),
        "{last}"
    );

    // A URL that is not http(s) is refused when the configuration is read.
    let cfg = write_config(
        &env,
        &format!(
            "[hooks]\nping_url = \"hc-ping.com/x\"\n{}",
            dss_config(&data, "")
        ),
    );
    let o = with_config(&env, &cfg, &["config", "check"]);
    assert_ne!(code(&o), 0);
    assert!(
        stderr(&o).contains("must start with http"),
        "{}",
        stderr(&o)
    );
}
