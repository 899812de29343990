//! DSS's own word on whether work is running, asked before a stop-mode run stops it.
//!
//! DSS documents that a backup must be taken "with no job running", but stopping it ends
//! whatever runs. DSS has no instance-wide "running jobs" call: its public API lists the
//! running long tasks and scenarios of all users in one call (`/futures/`), and build jobs
//! per project (`/projects/{key}/jobs/`), so the check asks the first and then walks every
//! project. It needs a global API key with administrator rights, read from a file, because
//! only an administrator sees every user's work.
//!
//! The check fails closed: an answer it cannot read, a project it cannot list or a job in a
//! state it does not know counts as "not quiet", so a wrong guess about the API makes the
//! run wait and then fail with the reason, never stop DSS in the middle of a job. It does not
//! see Jupyter kernels, webapp backends, the API node or users editing in the browser.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::config::ServiceConfig;

/// Where DSS listens when neither `service.dss_url` nor `install.ini` says otherwise.
const DEFAULT_PORT: u16 = 11000;
/// A job in one of these states has ended; any other state (RUNNING, NOT_STARTED,
/// COMPUTING_DEPS, one added by a later DSS) counts as running.
const ENDED_JOB_STATES: &[&str] = &["DONE", "FAILED", "ABORTED"];
/// A job list of a busy project can be large; larger than this is refused, not truncated.
const MAX_BODY: u64 = 256 << 20;

/// The public API of one DSS instance and the file holding its API key.
#[derive(Clone, Debug)]
pub struct DssApi {
    /// `http://host:port`, without `/public/api`.
    pub url: String,
    pub key_file: PathBuf,
}

impl DssApi {
    /// The check configured for a DSS data directory: `service.dss_api_key_file` turns it on;
    /// the URL is `service.dss_url`, or the loopback address on the port in `install.ini`.
    pub fn from_config(service: &ServiceConfig, data_dir: &Path) -> Option<DssApi> {
        let key_file = service.dss_api_key_file.clone()?;
        let url = match &service.dss_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!("http://127.0.0.1:{}", install_ini_port(data_dir)),
        };
        Some(DssApi { url, key_file })
    }

    /// One line for plans and errors.
    pub fn describe(&self) -> String {
        format!(
            "DSS's public API at {} (key from {})",
            self.url,
            self.key_file.display()
        )
    }

    /// A warning when others than the owner may read the key file.
    pub fn key_file_warning(&self) -> Option<String> {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&self.key_file).ok()?.permissions().mode();
        (mode & 0o077 != 0).then(|| {
            format!(
                "the DSS API key file {} can be read by others (mode {:o}): chmod 600 it",
                self.key_file.display(),
                mode & 0o777
            )
        })
    }

    fn key(&self) -> Result<String, String> {
        let text = std::fs::read_to_string(&self.key_file)
            .map_err(|e| format!("reading the API key {}: {e}", self.key_file.display()))?;
        let key = text.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(format!(
                "the API key file {} must hold one key on one line",
                self.key_file.display()
            ));
        }
        Ok(key.to_string())
    }

    /// What is running now, one name each (empty: nothing runs). An error means the answer
    /// could not be had or read; callers treat it as "not quiet".
    pub fn running(&self) -> Result<Vec<String>, String> {
        let key = self.key()?;
        use base64::Engine;
        // DSS takes the key as the user name of HTTP basic authentication.
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
        );
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            // DSS runs on this machine: a proxy from the environment must not answer for it.
            .proxy(None)
            .build()
            .into();
        let get = |path: &str| -> Result<Vec<Value>, String> {
            let url = format!("{}/public/api{path}", self.url);
            let mut resp = agent
                .get(&url)
                .header("Authorization", &auth)
                .header("Accept", "application/json")
                .call()
                .map_err(|e| format!("{url}: {e}"))?;
            let status = resp.status().as_u16();
            if status == 401 || status == 403 {
                return Err(format!(
                    "{url}: the API key was refused (HTTP {status}); the check needs a global \
                     API key with administrator rights, to see every user's jobs"
                ));
            }
            if !(200..300).contains(&status) {
                return Err(format!("{url}: HTTP {status}"));
            }
            let body = resp
                .body_mut()
                .with_config()
                .limit(MAX_BODY)
                .read_to_string()
                .map_err(|e| format!("{url}: {e}"))?;
            match serde_json::from_str::<Value>(&body) {
                Ok(Value::Array(items)) => Ok(items),
                Ok(_) => Err(format!("{url}: expected a JSON list")),
                Err(e) => Err(format!("{url}: not JSON ({e})")),
            }
        };
        let mut running = Vec::new();
        for task in get("/futures/?withScenarios=true&withNotScenarios=true&allUsers=true")? {
            running.push(future_name(&task));
        }
        for project in get("/projects/")? {
            let key = project
                .get("projectKey")
                .and_then(Value::as_str)
                .ok_or("/public/api/projects/: a project without a projectKey")?;
            if key.is_empty()
                || !key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
            {
                return Err(format!(
                    "project key {key:?} cannot be put in a URL as it is"
                ));
            }
            for job in get(&format!("/projects/{key}/jobs/"))? {
                let state = job.get("state").and_then(Value::as_str);
                if !state.is_some_and(|s| ENDED_JOB_STATES.contains(&s)) {
                    running.push(format!(
                        "job {} in {key} ({})",
                        job_name(&job),
                        state.unwrap_or("no state")
                    ));
                }
            }
        }
        Ok(running)
    }
}

fn future_name(task: &Value) -> String {
    let s = |v: Option<&Value>| v.and_then(Value::as_str).map(String::from);
    let payload = task.get("payload");
    let scenario = s(payload.and_then(|p| p.get("scenarioId")));
    let project = s(payload.and_then(|p| p.get("projectKey")));
    match (scenario, project) {
        (Some(sc), Some(p)) => format!("scenario {sc} in {p}"),
        (Some(sc), None) => format!("scenario {sc}"),
        _ => format!(
            "long task {}",
            s(task.get("jobDisplayName"))
                .or(s(task.get("jobId")))
                .unwrap_or_else(|| "without a name".into())
        ),
    }
}

fn job_name(job: &Value) -> String {
    let def = job.get("def");
    def.and_then(|d| d.get("id"))
        .or(def.and_then(|d| d.get("name")))
        .or(job.get("id"))
        .and_then(Value::as_str)
        .unwrap_or("without an id")
        .to_string()
}

/// The port DSS listens on, from `[server] port` in `DATA_DIR/install.ini`.
fn install_ini_port(data_dir: &Path) -> u16 {
    let Ok(text) = std::fs::read_to_string(data_dir.join("install.ini")) else {
        return DEFAULT_PORT;
    };
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_string();
        } else if section == "server" {
            if let Some((k, v)) = line.split_once('=') {
                if k.trim() == "port" {
                    if let Ok(p) = v.trim().parse() {
                        return p;
                    }
                }
            }
        }
    }
    DEFAULT_PORT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_comes_from_install_ini() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(install_ini_port(d.path()), DEFAULT_PORT);
        std::fs::write(
            d.path().join("install.ini"),
            "[general]\nnodetype = design\nport = 1\n\n[server]\nport = 12345\n",
        )
        .unwrap();
        assert_eq!(install_ini_port(d.path()), 12345);
    }

    #[test]
    fn names_say_what_runs() {
        let f: Value = serde_json::json!({"jobId": "x", "payload": {"scenarioId": "NIGHTLY", "projectKey": "SALES"}});
        assert_eq!(future_name(&f), "scenario NIGHTLY in SALES");
        let f: Value = serde_json::json!({"jobId": "abc", "jobDisplayName": "Export"});
        assert_eq!(future_name(&f), "long task Export");
        let j: Value = serde_json::json!({"def": {"id": "build_x"}, "state": "RUNNING"});
        assert_eq!(job_name(&j), "build_x");
    }
}
