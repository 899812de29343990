//! Restore drills against the DSS stand-in and a real PostgreSQL server: a drill that passes,
//! and drills that must fail (damaged data, a dump missing a table, an application that does
//! not start, an interruption), each leaving production running and nothing behind.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::app::*;
use crate::common::*;

/// Fields drop in order: the service stops and the server goes before the directory they
/// live in.
struct Site {
    _svc: Service,
    pg: Pg,
    data: PathBuf,
    env: Env,
}

/// A DSS stand-in, running, with a PostgreSQL database of 500 rows in two tables, backed up
/// once; the configuration drills with the stand-in's own service script on the copy, as
/// `drill` overrides (key, TOML value) say.
fn site(drill: &[(&str, &str)], pg_extra: &str) -> (Site, PathBuf) {
    let mut keys = vec![
        ("start", "\"{data_dir}/bin/dss start\"".to_string()),
        ("stop", "\"{data_dir}/bin/dss stop\"".to_string()),
        (
            "probe",
            "\"grep -q 'port = {port}' {data_dir}/install.ini && grep -qx 'upgrade {data_dir}' {data_dir}/../installer.journal && {data_dir}/bin/dss status\""
                .to_string(),
        ),
        ("queries", "[\"SELECT count(*) FROM items\"]".to_string()),
    ];
    // An override replaces a key; an empty one removes it.
    for (k, v) in drill {
        keys.retain(|(have, _)| have != k);
        if !v.is_empty() {
            keys.push((k, v.to_string()));
        }
    }
    let drill_table: String = keys.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
    let env = Env::new();
    let pg = Pg::start(&env);
    env.init();
    let data = make_dss(&env, "13.2.0");
    let svc = Service(data.clone());
    assert!(dss(&data, "start"));
    pg.psql(
        "govern",
        "CREATE TABLE items (id int primary key, name text); \
         INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 500) g; \
         CREATE TABLE secret_table (x int); INSERT INTO secret_table VALUES (1)",
    );
    let metrics = env.path("metrics.prom");
    let cfg = write_config(
        &env,
        &(format!("metrics_file = \"{}\"\n", metrics.display())
            + &dss_config(
            &data,
            &format!(
                "consistency = \"live\"\npost_restore_command = \"{} -d {{data_dir}} -u\"\n[[app.design.postgres]]\nurl = \"{}\"\npassfile = \"{}\"\n{pg_extra}\n\
                 [app.design.drill]\n{drill_table}",
                fixture("dss/installer-upgrade.sh").display(),
                pg.url(),
                pg.passfile().display()
            ),
        )),
    );
    json_config(&env, &cfg, &["backup", "--app", "design"]);
    (
        Site {
            _svc: svc,
            pg,
            data,
            env,
        },
        cfg,
    )
}

impl Site {
    /// Runs a drill that must fail (exit code 1); its failure line.
    fn failed_drill(&self, cfg: &Path) -> String {
        let o = with_config(&self.env, cfg, &["drill", "--app", "design", "--json"]);
        assert_eq!(code(&o), 1, "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["drill"]["ok"], false, "{v}");
        v["drill"]["failure"].as_str().unwrap().to_string()
    }

    /// Nothing of a drill is left: no scratch directory, no scratch database, and production
    /// still runs, its service never started or stopped by the drill.
    fn assert_clean(&self, journal_before: &[String]) {
        let scratch = self.env.path("state/drills");
        let left: Vec<_> = std::fs::read_dir(&scratch)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "scratch left behind: {left:?}");
        assert_eq!(
            self.pg.psql(
                "postgres",
                "SELECT count(*) FROM pg_database WHERE datname LIKE 'holdfast_drill%'"
            ),
            "0",
            "a scratch database was left"
        );
        assert!(dss(&self.data, "status"), "production stopped");
        assert_eq!(
            journal_actions(&self.data),
            journal_before,
            "production's service was touched"
        );
    }
}

#[test]
#[ignore = "needs root: PostgreSQL via runuser"]
fn a_drill_restores_files_and_databases_and_starts_the_copy() {
    let (site, cfg) = site(&[("every", "\"7d\"")], "");
    // A scheduled run drills the snapshot it wrote when a drill is due, then not again.
    let journal_before = journal_actions(&site.data);
    let runs = json_config(&site.env, &cfg, &["run", "--app", "design"]);
    let runs = runs["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(
        (&runs[0]["kind"], &runs[1]["kind"]),
        (&"run".into(), &"drill".into())
    );
    assert_eq!(runs[1]["result"], "success", "{runs:?}");
    assert_eq!(
        runs[1]["snapshot"], runs[0]["snapshot"],
        "the new snapshot was drilled"
    );
    // (The run is live: production keeps running, its service untouched by run and drill.)
    site.assert_clean(&journal_before);
    let again = json_config(&site.env, &cfg, &["run", "--app", "design"]);
    assert_eq!(
        again["runs"].as_array().unwrap().len(),
        1,
        "drilled again: {again}"
    );

    let v = json_config(&site.env, &cfg, &["drill", "--app", "design"]);
    let d = &v["drill"];
    assert_eq!(d["ok"], true, "{v}");
    assert!(d["files_secs"].as_f64().unwrap() > 0.0, "{v}");
    assert!(d["databases_secs"].is_number(), "{v}");
    assert!(d["start_secs"].is_number(), "the copy was not started: {v}");
    assert!(d["notes"].is_null(), "{v}");
    assert_eq!(v["run"]["kind"], "drill");
    assert_eq!(v["run"]["result"], "success");
    site.assert_clean(&journal_before);

    // snapshots shows the verdict on every host (it is in the repository), runs the run.
    let snaps = json_config(&site.env, &cfg, &["snapshots"]);
    let snaps = snaps.as_array().unwrap();
    assert_eq!(snaps.len(), 3);
    assert!(
        snaps[0].get("drill").is_none(),
        "the first backup was never drilled"
    );
    assert_eq!(snaps[1]["drill"]["ok"], true, "drilled by run");
    assert_eq!(snaps[2]["drill"]["ok"], true, "drilled by drill (latest)");
    let text = ok_config(&site.env, &cfg, &["snapshots"]);
    assert!(
        text.contains("ok 20") && text.contains("recovered in"),
        "{text}"
    );
    let m = std::fs::read_to_string(site.env.path("metrics.prom")).unwrap();
    assert!(
        m.contains("holdfast_last_drill_success{app=\"design\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("holdfast_last_drill_success_timestamp_seconds{app=\"design\"} 1"),
        "{m}"
    );
    let runs = json_config(&site.env, &cfg, &["runs"]);
    assert!(
        runs.as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "drill" && r["result"] == "success"),
        "{runs}"
    );
}

#[test]
#[ignore = "needs root: PostgreSQL via runuser"]
fn a_drill_of_a_dump_missing_a_table_fails_at_the_comparison() {
    // A pg_dump that leaves a table out (as a wrong --exclude-table would): the table list
    // recorded at dump time still names it.
    let env_dir = tempfile::tempdir().unwrap();
    let wrap = env_dir.path().join("bin");
    std::fs::create_dir_all(&wrap).unwrap();
    // The newest installed PostgreSQL, as pg.sh and holdfast choose it.
    let real = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL in /usr/lib/postgresql (.ci/run installs it)")
        .flatten()
        .filter_map(|e| {
            Some((
                e.file_name().to_str()?.parse::<u32>().ok()?,
                e.path().join("bin"),
            ))
        })
        .filter(|(_, bin)| bin.join("pg_dump").exists())
        .max()
        .map(|(_, bin)| bin)
        .expect("PostgreSQL client binaries in /usr/lib/postgresql/*/bin");
    for tool in ["psql", "pg_restore", "pg_dumpall", "createdb", "dropdb"] {
        std::os::unix::fs::symlink(real.join(tool), wrap.join(tool)).unwrap();
    }
    std::fs::write(
        wrap.join("pg_dump"),
        format!(
            "#!/bin/sh\ncase \"$1\" in --version) exec {0} --version ;; esac\nexec {0} --exclude-table=public.secret_table \"$@\"\n",
            real.join("pg_dump").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(wrap.join("pg_dump"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (site, cfg) = site(&[], &format!("bin_dir = \"{}\"", wrap.display()));
    let journal_before = journal_actions(&site.data);
    let failure = site.failed_drill(&cfg);
    assert!(
        failure.contains("missing") && failure.contains("public.secret_table"),
        "{failure}"
    );
    site.assert_clean(&journal_before);
    let text = ok_config(&site.env, &cfg, &["snapshots"]);
    assert!(text.contains("FAILED 20"), "{text}");
}

#[test]
#[ignore = "needs root: PostgreSQL via runuser"]
fn a_drill_whose_application_does_not_start_fails_and_cleans_up() {
    let (site, cfg) = site(&[("probe_timeout", "\"3s\"")], "");
    // The copy's service refuses to start (the stand-in's test hook, in the restored data).
    std::fs::write(site.data.join("FAIL_START"), "").unwrap();
    json_config(&site.env, &cfg, &["backup", "--app", "design"]);
    std::fs::remove_file(site.data.join("FAIL_START")).unwrap();
    let journal_before = journal_actions(&site.data);
    let failure = site.failed_drill(&cfg);
    assert!(failure.contains("starting the application"), "{failure}");
    site.assert_clean(&journal_before);
}

#[test]
#[ignore = "needs root: PostgreSQL via runuser"]
fn a_drill_of_damaged_data_fails_naming_what_broke() {
    let (site, cfg) = site(&[], "");
    // Flip a byte in the middle of every pack over 1 MiB (file data, not trees).
    let mut stack = vec![site.env.repo.join("data")];
    let mut flipped = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if e.metadata().unwrap().len() > 1 << 20 {
                let mut b = std::fs::read(&p).unwrap();
                let mid = b.len() / 2;
                b[mid] ^= 0xff;
                std::fs::write(&p, b).unwrap();
                flipped += 1;
            }
        }
    }
    assert!(flipped > 0);
    let journal_before = journal_actions(&site.data);
    let failure = site.failed_drill(&cfg);
    assert!(
        failure.starts_with("restoring files: ") && failure.contains("(file /"),
        "the failure names the file: {failure}"
    );
    site.assert_clean(&journal_before);
}

#[test]
#[ignore = "needs root: PostgreSQL via runuser"]
fn sigterm_during_a_drill_cleans_everything_up() {
    let (site, cfg) = site(&[("probe", "\"false\""), ("probe_timeout", "\"120s\"")], "");
    let journal_before = journal_actions(&site.data);
    let child = site
        .env
        .cmd()
        .env("HOLDFAST_CONFIG", &cfg)
        .args(["drill", "--app", "design"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the copy's service was started: its journal (beside the copy, in the scratch
    // directory) says so, and its pid file (restored from production, then rewritten) names
    // another process than production's.
    let scratch = site.env.path("state/drills");
    let production_pid = std::fs::read_to_string(site.data.join("pids/dss.pid")).unwrap();
    let t = Instant::now();
    let copy_pid = loop {
        let work = std::fs::read_dir(&scratch)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.path());
        let started = work.as_ref().is_some_and(|w| {
            std::fs::read_to_string(w.join("dss-service.journal"))
                .map(|j| j.contains(" start"))
                .unwrap_or(false)
        });
        let pid = work
            .as_ref()
            .and_then(|w| std::fs::read_to_string(w.join("data/pids/dss.pid")).ok())
            .filter(|p| !p.trim().is_empty() && p.trim() != production_pid.trim());
        if let (true, Some(pid)) = (started, pid) {
            break pid.trim().to_string();
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the copy never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 130, "{}", stderr(&o));
    assert!(
        !Path::new(&format!("/proc/{copy_pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{copy_pid}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true),
        "the copy's service still runs: {}",
        stderr(&o)
    );
    site.assert_clean(&journal_before);
}

/// The drill's own clusters in /tmp (see holdfast-app's drill module).
fn scratch_clusters() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/tmp")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("holdfast-drill-pg."))
        .collect();
    v.sort();
    v
}

#[test]
#[ignore = "needs root: PostgreSQL via runuser"]
fn a_role_that_may_not_create_databases_is_drilled_on_a_scratch_cluster() {
    let (site, cfg) = site(&[], "");
    let st = std::process::Command::new(fixture("pg.sh"))
        .arg("admin")
        .arg(&site.pg.state)
        .args(["-c", "ALTER ROLE holdfast_test NOCREATEDB"])
        .status()
        .unwrap();
    assert!(st.success());
    let clusters_before = scratch_clusters();
    let journal_before = journal_actions(&site.data);
    let o = with_config(&site.env, &cfg, &["drill", "--app", "design"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("may not create databases: restoring into a scratch cluster"),
        "{}",
        stderr(&o)
    );
    let v = json_config(&site.env, &cfg, &["drill", "--app", "design"]);
    let d = &v["drill"];
    assert_eq!(d["ok"], true, "{v}");
    assert!(d["databases_secs"].is_number(), "{v}");
    assert!(d["notes"].is_null(), "the dump was not drilled: {v}");
    site.assert_clean(&journal_before);
    assert_eq!(
        scratch_clusters(),
        clusters_before,
        "a scratch cluster was left"
    );

    // databases = "cluster" uses one whatever the role may do.
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text + "databases = \"cluster\"\n").unwrap();
    let v = json_config(&site.env, &cfg, &["drill", "--app", "design"]);
    assert_eq!(v["drill"]["ok"], true, "{v}");
    assert_eq!(
        scratch_clusters(),
        clusters_before,
        "a scratch cluster was left"
    );
}

#[test]
#[ignore = "needs root: btrfs on a loop device, PostgreSQL via runuser"]
fn on_btrfs_the_scratch_copy_is_a_subvolume() {
    let (site, cfg) = site(&[], "");
    let fs = crate::app::Btrfs::new(&site.env);
    let scratch = fs.mnt.join("drills");
    // The probe passes only if the copy's folder is a subvolume.
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text.replace(
        "probe = \"",
        "probe = \"btrfs subvolume show {data_dir}/.. >/dev/null && ",
    );
    std::fs::write(
        &cfg,
        text + &format!("scratch_dir = \"{}\"\n", scratch.display()),
    )
    .unwrap();
    let journal_before = journal_actions(&site.data);
    let v = json_config(&site.env, &cfg, &["drill", "--app", "design"]);
    assert_eq!(v["drill"]["ok"], true, "{v}");
    site.assert_clean(&journal_before);
    assert_eq!(
        std::fs::read_dir(&scratch).unwrap().count(),
        0,
        "the subvolume was left"
    );
    let list = std::process::Command::new("btrfs")
        .args(["subvolume", "list"])
        .arg(&fs.mnt)
        .output()
        .unwrap();
    assert!(
        list.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&list.stdout)
    );
}

#[test]
#[ignore = "needs root: PostgreSQL via runuser"]
fn a_dss_copy_with_databases_is_not_started_without_a_configured_start() {
    // Its configuration names production's databases: only a configured start may run it.
    let (site, cfg) = site(&[("start", ""), ("stop", "")], "");
    let journal_before = journal_actions(&site.data);
    let v = json_config(&site.env, &cfg, &["drill", "--app", "design"]);
    assert_eq!(v["drill"]["ok"], true, "{v}");
    assert!(
        v["drill"]["start_secs"].is_null(),
        "the copy was started: {v}"
    );
    assert!(
        v["drill"]["notes"]
            .to_string()
            .contains("names production's databases"),
        "{v}"
    );
    site.assert_clean(&journal_before);
}

#[test]
fn the_dss_profile_starts_a_copy_without_databases_with_its_own_service_script() {
    let env = Env::new();
    env.init();
    let data = make_dss(&env, "13.2.0");
    let _svc = Service(data.clone());
    assert!(dss(&data, "start"));
    // No start or stop configured: the copy's own bin/dss; the probe checks the new port.
    let cfg = write_config(
        &env,
        &dss_config(
            &data,
            "consistency = \"live\"\n[app.design.drill]\nprobe = \"grep -q 'port = {port}' {data_dir}/install.ini && {data_dir}/bin/dss status\"\n",
        ),
    );
    json_config(&env, &cfg, &["backup", "--app", "design"]);
    let journal_before = journal_actions(&data);
    let v = json_config(&env, &cfg, &["drill", "--app", "design"]);
    assert_eq!(v["drill"]["ok"], true, "{v}");
    assert!(
        v["drill"]["start_secs"].is_number(),
        "the copy was not started: {v}"
    );
    assert!(dss(&data, "status"), "production stopped");
    assert_eq!(
        journal_actions(&data),
        journal_before,
        "production's service was touched"
    );
    let left = std::fs::read_dir(env.path("state/drills")).unwrap().count();
    assert_eq!(left, 0, "scratch left behind");
}
