//! The "no job running" check before a stop: a command of the administrator's, or, for DSS,
//! its public API (tests/fixtures/dss/public-api.py stands in for it). The check fails
//! closed: what it cannot read never lets the service be stopped.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::common::app::*;
use crate::common::*;

/// The public API stand-in, killed when the test ends.
struct DssApi {
    child: Child,
    url: String,
    key_file: PathBuf,
}

impl DssApi {
    fn start(env: &Env, data: &Path) -> DssApi {
        let port_file = env.path("dss-api.port");
        let key_file = env.path("dss-api.key");
        std::fs::write(&key_file, "secret-admin-key\n").unwrap();
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let child = Command::new(fixture("dss/public-api.py"))
            .arg(data)
            .arg(&port_file)
            .arg("secret-admin-key")
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !port_file.exists() {
            assert!(Instant::now() < deadline, "the API stand-in did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let port = std::fs::read_to_string(&port_file).unwrap();
        DssApi {
            child,
            url: format!("http://127.0.0.1:{}", port.trim()),
            key_file,
        }
    }

    fn config(&self, data: &Path, extra: &str) -> String {
        dss_config(
            data,
            &format!(
                "[app.design.service]\ndss_api_key_file = \"{}\"\ndss_url = \"{}\"\n{extra}",
                self.key_file.display(),
                self.url
            ),
        )
    }

    /// The paths asked so far.
    fn asked(data: &Path) -> Vec<String> {
        std::fs::read_to_string(data.parent().unwrap().join("dss-api.log"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }
}

/// A running DSS stand-in with its public API, in a fresh environment with a repository.
/// Fields drop in order: the API, then the service, then the folder they live in.
struct Site {
    api: DssApi,
    _svc: Service,
    data: PathBuf,
    env: Env,
}

impl Site {
    fn start() -> Site {
        let env = Env::new();
        env.init();
        let data = make_dss(&env, "13.2.0");
        let svc = Service(data.clone());
        assert!(dss(&data, "start"));
        let api = DssApi::start(&env, &data);
        Site {
            api,
            _svc: svc,
            data,
            env,
        }
    }

    /// The configuration of the stand-in with the API check, `extra` in `[app.design.service]`.
    fn config(&self, extra: &str) -> PathBuf {
        write_config(&self.env, &self.api.config(&self.data, extra))
    }
}

impl Drop for DssApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// With an API key, the dss profile waits until DSS lists no running job before it stops:
/// a build job that ends while it waits delays the stop, and the snapshot says so.
#[test]
fn dss_api_check_waits_for_a_running_job_to_end() {
    let site = Site::start();
    let (env, data, api) = (&site.env, &site.data, &site.api);
    std::fs::write(data.join("JOB_RUNNING"), "SALES").unwrap();
    let cfg = site.config("quiesce_interval = \"1s\"\nquiesce_timeout = \"60s\"\n");
    // plan names the check, and neither plan nor config check warns.
    let out = ok_config(env, &cfg, &["plan", "--app", "design"]);
    assert!(
        out.contains("DSS's public API at http://127.0.0.1:"),
        "{out}"
    );
    assert!(!out.contains("without checking"), "{out}");
    let o = with_config(env, &cfg, &["config", "check"]);
    assert!(!stderr(&o).contains("without checking"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("read by others"), "{}", stderr(&o));
    std::fs::set_permissions(&api.key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = with_config(env, &cfg, &["config", "check"]);
    assert!(stderr(&o).contains("read by others"), "{}", stderr(&o));
    std::fs::set_permissions(&api.key_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    let job_file = data.join("JOB_RUNNING");
    let started = Instant::now();
    let ender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(2500));
        std::fs::remove_file(job_file).unwrap();
    });
    let v = json_config(env, &cfg, &["backup", "--app", "design"]);
    ender.join().unwrap();
    // It cannot have finished before the job ended: it waited.
    assert!(started.elapsed() >= Duration::from_millis(2500));
    let snap = &v["snapshot"];
    assert_eq!(snap["consistency"]["consistent"], true);
    let notes = snap["consistency"]["notes"].to_string();
    assert!(notes.contains("quiesce check passed after"), "{notes}");
    assert_eq!(journal_actions(data), ["start", "stop", "start"]);
    let asked = DssApi::asked(data);
    let sales_polls = asked
        .iter()
        .filter(|p| *p == "/public/api/projects/SALES/jobs/")
        .count();
    // Once in the preflight, at least twice while the job ran, once when it had ended.
    assert!(sales_polls >= 3, "{asked:?}");
    assert!(asked.iter().any(|p| p.starts_with("/public/api/futures/")
        && p.contains("allUsers=true")
        && p.contains("withScenarios=true")));
}

/// A scenario that never ends: the run waits until quiesce_timeout, fails (exit 5) naming
/// the scenario, and DSS is never stopped.
#[test]
fn dss_api_check_times_out_naming_what_runs() {
    let site = Site::start();
    let (env, data) = (&site.env, &site.data);
    std::fs::write(data.join("SCENARIO_RUNNING"), "NIGHTLY_REBUILD").unwrap();
    let cfg = site.config("quiesce_interval = \"1s\"\nquiesce_timeout = \"2s\"\n");
    let o = with_config(env, &cfg, &["backup", "--app", "design"]);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("scenario NIGHTLY_REBUILD in SALES"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("not stopped"), "{}", stderr(&o));
    assert_eq!(journal_actions(data), ["start"], "DSS was stopped");
    assert!(env.json(&["snapshots"]).as_array().unwrap().is_empty());
}

/// What the check cannot read never passes: a refused key, an answer that is not the API's,
/// and a key file that is missing each fail the preflight (exit 7) before DSS is touched.
#[test]
fn dss_api_check_fails_closed() {
    let site = Site::start();
    let (env, data, api) = (&site.env, &site.data, &site.api);
    let cfg = site.config("");

    std::fs::write(&api.key_file, "not-the-key\n").unwrap();
    let o = with_config(env, &cfg, &["backup", "--app", "design"]);
    assert_eq!(code(&o), 7, "{}", stderr(&o));
    assert!(stderr(&o).contains("refused (HTTP 401)"), "{}", stderr(&o));
    std::fs::write(&api.key_file, "secret-admin-key\n").unwrap();

    std::fs::write(data.join("API_BROKEN"), "").unwrap();
    let o = with_config(env, &cfg, &["backup", "--app", "design"]);
    assert_eq!(code(&o), 7, "{}", stderr(&o));
    assert!(stderr(&o).contains("not JSON"), "{}", stderr(&o));
    std::fs::remove_file(data.join("API_BROKEN")).unwrap();

    std::fs::remove_file(&api.key_file).unwrap();
    let o = with_config(env, &cfg, &["backup", "--app", "design"]);
    assert_eq!(code(&o), 7, "{}", stderr(&o));
    assert!(stderr(&o).contains("dss-api.key"), "{}", stderr(&o));

    assert_eq!(journal_actions(data), ["start"], "DSS was stopped");
    assert!(env.json(&["snapshots"]).as_array().unwrap().is_empty());

    // The key belongs to the dss profile only.
    let cfg = write_config(
        env,
        &format!(
            "[app.other]\ndata_dir = \"{}\"\n[app.other.service]\nstop = \"true\"\nstart = \"true\"\ndss_api_key_file = \"/k\"\n",
            data.display()
        ),
    );
    let o = with_config(env, &cfg, &["config", "check"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(stderr(&o).contains("dss_api_key_file"), "{}", stderr(&o));
}

#[test]
fn quiesce_timeout_leaves_the_service_running() {
    let env = Env::new();
    env.init();
    let data = make_dss(&env, "13.2.0");
    let _svc = Service(data.clone());
    assert!(dss(&data, "start"));
    std::fs::write(data.join("JOB_RUNNING"), "").unwrap();
    let cfg = write_config(
        &env,
        &dss_config(
            &data,
            &format!(
                "[app.design.service]\nquiesce = \"{} {}\"\nquiesce_timeout = \"1s\"\nquiesce_interval = \"1s\"\n",
                fixture("dss/jobs-idle.sh").display(),
                data.display()
            ),
        ),
    );
    let o = with_config(&env, &cfg, &["backup", "--app", "design"]);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(stderr(&o).contains("quiesce check"), "{}", stderr(&o));
    assert_eq!(journal_actions(&data), ["start"], "never stopped");
    assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), 0);
}

/// Without a quiesce check, plan and config check say plainly that stop mode will stop DSS
/// without checking for running jobs; with one, they do not.
#[test]
fn plan_and_config_check_say_when_no_job_check_is_configured() {
    let env = Env::new();
    env.init();
    let data = make_dss(&env, "13.2.0");
    let cfg = write_config(&env, &dss_config(&data, ""));
    let o = with_config(&env, &cfg, &["config", "check"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("without checking that no job"),
        "{}",
        stderr(&o)
    );
    let out = ok_config(&env, &cfg, &["plan", "--app", "design"]);
    assert!(out.contains("without checking that no job"), "{out}");
    let cfg = write_config(
        &env,
        &dss_config(
            &data,
            &format!(
                "[app.design.service]\nquiesce = \"{} {{data_dir}}\"\n",
                fixture("dss/jobs-idle.sh").display()
            ),
        ),
    );
    let o = with_config(&env, &cfg, &["config", "check"]);
    assert!(!stderr(&o).contains("without checking"), "{}", stderr(&o));
}
