//! Helpers of the application tests: a DSS stand-in (tests/fixtures/dss) with its service
//! journal, configuration files that point at the test's repository, and a throwaway
//! PostgreSQL server (tests/fixtures/pg.sh).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;

pub fn fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(p)
}

/// A DSS data directory at `<env>/site/data`, with the service script in it.
pub fn make_dss(env: &Env, version: &str) -> PathBuf {
    let data = env.path("site/data");
    std::fs::create_dir_all(&data).unwrap();
    let st = Command::new(fixture("dss/make-datadir.sh"))
        .arg(&data)
        .arg(version)
        .status()
        .unwrap();
    assert!(st.success());
    data
}

/// An excluded tier's folder comes back empty (its content was left out, not the folder).
pub fn assert_empty_tier_folder(dir: &Path) {
    assert!(dir.is_dir(), "{} not recreated", dir.display());
    assert_eq!(
        std::fs::read_dir(dir).unwrap().count(),
        0,
        "{} has content",
        dir.display()
    );
}

pub fn dss(data: &Path, action: &str) -> bool {
    Command::new(data.join("bin/dss"))
        .arg(action)
        .output()
        .unwrap()
        .status
        .success()
}

pub fn journal(data: &Path) -> String {
    std::fs::read_to_string(data.parent().unwrap().join("dss-service.journal")).unwrap_or_default()
}

pub fn journal_actions(data: &Path) -> Vec<String> {
    journal(data)
        .lines()
        .filter_map(|l| l.split_whitespace().find(|w| *w == "start" || *w == "stop"))
        .map(String::from)
        .collect()
}

pub fn write_config(env: &Env, body: &str) -> PathBuf {
    let p = env.path("holdfast.toml");
    let text = format!(
        "repository = \"{}\"\nstate_dir = \"{}\"\n{body}",
        env.repo.display(),
        env.path("state").display()
    );
    std::fs::write(&p, text).unwrap();
    p
}

pub fn with_config(env: &Env, cfg: &Path, args: &[&str]) -> std::process::Output {
    env.cmd()
        .env("HOLDFAST_CONFIG", cfg)
        .args(args)
        .output()
        .unwrap()
}

pub fn ok_config(env: &Env, cfg: &Path, args: &[&str]) -> String {
    let o = with_config(env, cfg, args);
    assert!(
        o.status.success(),
        "holdfast {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

pub fn json_config(env: &Env, cfg: &Path, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = ok_config(env, cfg, &a);
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("holdfast {args:?}: not one JSON document ({e}): {out}"))
}

/// Every JSON file under `root` parses, and the stand-in's counters agree head to tail.
pub fn assert_json_whole(root: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let m = p.symlink_metadata().unwrap();
            if m.is_dir() {
                stack.push(p);
            } else if p.extension().map(|x| x == "json").unwrap_or(false) {
                let text = std::fs::read_to_string(&p).unwrap();
                let v: serde_json::Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{} is torn: {e}", p.display()));
                if let (Some(h), Some(t)) = (v.get("counter_head"), v.get("counter_tail")) {
                    assert_eq!(h, t, "{} is torn", p.display());
                }
                n += 1;
            }
        }
    }
    n
}

/// A guard that stops the stand-in service when a test ends, passing or not.
pub struct Service(pub PathBuf);
impl Drop for Service {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0.join("FAIL_STOP"));
        dss(&self.0, "stop");
    }
}

/// A throwaway PostgreSQL server, stopped when dropped.
pub struct Pg {
    pub state: PathBuf,
}

impl Pg {
    pub fn start(env: &Env) -> Pg {
        require_root("initdb runs as the postgres user");
        assert!(
            Path::new("/usr/lib/postgresql").exists(),
            "this test needs PostgreSQL server binaries in /usr/lib/postgresql (.ci/run installs them)"
        );
        let state = env.path("pg");
        let o = Command::new(fixture("pg.sh"))
            .arg("start")
            .arg(&state)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "pg.sh start failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Pg { state }
    }
    pub fn url(&self) -> String {
        std::fs::read_to_string(self.state.join("url"))
            .unwrap()
            .trim()
            .to_string()
    }
    pub fn url_for(&self, db: &str) -> String {
        let u = self.url();
        format!("{}/{db}", u.rsplit_once('/').unwrap().0)
    }
    pub fn passfile(&self) -> PathBuf {
        self.state.join("pgpass")
    }
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let o = Command::new(format!(
            "{}/psql",
            std::fs::read_to_string(self.state.join("bindir"))
                .unwrap()
                .trim()
        ))
        .env("PGPASSFILE", self.passfile())
        .args([
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &self.url_for(db),
            "-c",
            sql,
        ])
        .output()
        .unwrap();
        assert!(
            o.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = Command::new(fixture("pg.sh"))
            .arg("stop")
            .arg(&self.state)
            .output();
    }
}

pub fn dss_config(data: &Path, extra: &str) -> String {
    format!(
        "[app.design]\nprofile = \"dss\"\ndata_dir = \"{}\"\n{extra}",
        data.display()
    )
}
