//! "Back up now" and "drill now": holdfast itself, run as a child exactly as the daemon runs
//! a scheduled job (`holdfast run --app NAME`, `holdfast drill --app NAME`), so the same
//! per-application lock, hooks, run record and metrics apply. Its output lines are kept and
//! streamed to the browser as server-sent events.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use holdfast_app::runlog::RunResult;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Lines kept per job (the newest), and bytes kept per line.
const KEEP_LINES: usize = 5000;
const LINE_BYTES: usize = 4096;

/// Adds the line read into `buf` (lossy UTF-8, cut at [`LINE_BYTES`]); whether the pipe is
/// still open. A read error ends the pipe's reading but not the job.
fn take_line(j: &Job, read: std::io::Result<usize>, buf: &mut Vec<u8>) -> bool {
    match read {
        Ok(0) | Err(_) => {
            if !buf.is_empty() {
                j.push(String::from_utf8_lossy(buf).into_owned());
                buf.clear();
            }
            false
        }
        Ok(_) => {
            while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                buf.pop();
            }
            buf.truncate(LINE_BYTES);
            j.push(String::from_utf8_lossy(buf).into_owned());
            buf.clear();
            true
        }
    }
}

use crate::data::Fail;
use crate::state::AppState;

/// Jobs kept for their pages after they end.
const KEEP_JOBS: usize = 50;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Backup,
    Drill,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "backup" => Some(Kind::Backup),
            "drill" => Some(Kind::Drill),
            _ => None,
        }
    }
    fn command(self) -> &'static str {
        match self {
            Kind::Backup => "run",
            Kind::Drill => "drill",
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Progress {
    /// The newest [`KEEP_LINES`] lines.
    pub lines: std::collections::VecDeque<String>,
    /// Lines written before those, no longer kept.
    #[serde(rename = "lines_dropped", skip_serializing_if = "is_zero")]
    pub dropped: usize,
    pub exit_code: Option<i32>,
    pub result: Option<RunResult>,
    pub ended: Option<DateTime<Utc>>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// What a follower of a job has not seen yet: [`Job::since`].
pub struct News {
    pub lines: Vec<String>,
    /// Lines written so far, the dropped ones included: what to pass next time.
    pub written: usize,
    pub exit_code: Option<i32>,
    pub result: Option<RunResult>,
}

#[derive(Debug)]
pub struct Job {
    pub id: String,
    pub app: String,
    pub kind: Kind,
    pub started: DateTime<Utc>,
    pub progress: Mutex<Progress>,
    pid: Mutex<Option<u32>>,
    pub changed: tokio::sync::watch::Sender<u64>,
}

impl Job {
    pub fn snapshot(&self) -> Progress {
        self.progress.lock().unwrap().clone()
    }
    pub fn running(&self) -> bool {
        self.progress.lock().unwrap().exit_code.is_none()
    }
    /// The lines written after the first `seen` (those still kept), and the end once there.
    pub fn since(&self, seen: usize) -> News {
        let p = self.progress.lock().unwrap();
        let written = p.dropped + p.lines.len();
        let from = seen.saturating_sub(p.dropped).min(p.lines.len());
        News {
            lines: p.lines.range(from..).cloned().collect(),
            written,
            exit_code: p.exit_code,
            result: p.result,
        }
    }
    fn push(&self, line: String) {
        {
            let mut p = self.progress.lock().unwrap();
            if p.lines.len() >= KEEP_LINES {
                p.lines.pop_front();
                p.dropped += 1;
            }
            p.lines.push_back(line);
        }
        self.changed.send_modify(|n| *n += 1);
    }
    fn end(&self, code: i32) {
        {
            let mut p = self.progress.lock().unwrap();
            p.exit_code = Some(code);
            p.result = Some(RunResult::of_exit_code(code));
            p.ended = Some(Utc::now());
        }
        *self.pid.lock().unwrap() = None;
        self.changed.send_modify(|n| *n += 1);
    }
}

/// A job as the API shows it.
#[derive(Serialize)]
pub struct JobView {
    pub id: String,
    pub app: String,
    pub kind: Kind,
    pub started: DateTime<Utc>,
    #[serde(flatten)]
    pub progress: Progress,
}

impl From<&Job> for JobView {
    fn from(j: &Job) -> JobView {
        JobView {
            id: j.id.clone(),
            app: j.app.clone(),
            kind: j.kind,
            started: j.started,
            progress: j.snapshot(),
        }
    }
}

#[derive(Default)]
pub struct Jobs {
    jobs: Mutex<BTreeMap<String, Arc<Job>>>,
}

impl Jobs {
    pub fn get(&self, id: &str) -> Option<Arc<Job>> {
        self.jobs.lock().unwrap().get(id).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Job>> {
        let mut v: Vec<_> = self.jobs.lock().unwrap().values().cloned().collect();
        v.sort_by_key(|j| std::cmp::Reverse(j.started));
        v
    }

    /// The running job of `app`, if any.
    pub fn running_for(&self, app: &str) -> Option<Arc<Job>> {
        self.jobs
            .lock()
            .unwrap()
            .values()
            .find(|j| j.app == app && j.running())
            .cloned()
    }

    /// Asks every running job to stop (SIGTERM, as the daemon passes a stop on: a backup
    /// starts its application again first) and waits until they have ended.
    pub async fn stop_all(&self) {
        // Until none runs: one may have been started while the first ones were stopping.
        loop {
            let running: Vec<Arc<Job>> = self.all().into_iter().filter(|j| j.running()).collect();
            if running.is_empty() {
                return;
            }
            Self::stop(running).await;
        }
    }

    async fn stop(running: Vec<Arc<Job>>) {
        for j in &running {
            if let Some(pid) = *j.pid.lock().unwrap() {
                tracing::warn!(
                    "console: passing the stop on to the {:?} of {}",
                    j.kind,
                    j.app
                );
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
        for j in running {
            let mut rx = j.changed.subscribe();
            while j.running() {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        }
    }
}

/// Starts a job of `kind` for `app`; refused when the console is read-only, the application
/// is not configured here, or one of its jobs started here is still running.
pub fn start(st: &AppState, app: &str, kind: Kind) -> Result<Arc<Job>, Fail> {
    use axum::http::StatusCode;
    if st.read_only {
        return Err(Fail::new(
            StatusCode::FORBIDDEN,
            "this console is read-only (--read-only)",
        ));
    }
    if !st.config.app.contains_key(app) {
        return Err(Fail::not_found(format!(
            "no application {app} is configured on this host"
        )));
    }
    let mut jobs = st.jobs.jobs.lock().unwrap();
    if let Some(j) = jobs.values().find(|j| j.app == app && j.running()) {
        return Err(Fail::new(
            StatusCode::CONFLICT,
            format!(
                "a {:?} of {app} started here is still running (job {})",
                j.kind, j.id
            )
            .to_lowercase(),
        ));
    }
    let mut cmd = tokio::process::Command::new(&st.child.exe);
    cmd.args(&st.child.args)
        .args([kind.command(), "--app", app])
        .envs(st.child.env.iter().map(|(k, v)| (k, v)))
        .env("HOLDFAST_PROGRESS_INTERVAL", "1s")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A group of its own: a Ctrl-C at the console's terminal reaches it once, through
        // stop_all, not twice (a second signal means "exit now" to holdfast).
        .process_group(0);
    let mut child = cmd.spawn().map_err(|e| {
        Fail::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("starting {}: {e}", st.child.exe.display()),
        )
    })?;
    let job = Arc::new(Job {
        id: holdfast_app::console_auth::new_secret()[..12].to_string(),
        app: app.to_string(),
        kind,
        started: Utc::now(),
        progress: Mutex::new(Progress::default()),
        pid: Mutex::new(child.id()),
        changed: tokio::sync::watch::channel(0).0,
    });
    tracing::info!("console: {:?} of {app} started (job {})", kind, job.id);
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let j = job.clone();
    tokio::spawn(async move {
        let mut out = BufReader::new(stdout);
        let mut err = BufReader::new(stderr);
        let (mut out_buf, mut err_buf) = (Vec::new(), Vec::new());
        let (mut out_open, mut err_open) = (true, true);
        // The process's end is awaited with its output: a descendant that keeps a pipe open
        // must not keep the job "running" forever.
        let status = loop {
            tokio::select! {
                st = child.wait() => break st,
                r = out.read_until(b'\n', &mut out_buf), if out_open => {
                    out_open = take_line(&j, r, &mut out_buf);
                }
                r = err.read_until(b'\n', &mut err_buf), if err_open => {
                    err_open = take_line(&j, r, &mut err_buf);
                }
            }
        };
        // What it wrote just before it ended, for a moment, not for a descendant's lifetime.
        let drain = async {
            while out_open || err_open {
                tokio::select! {
                    r = out.read_until(b'\n', &mut out_buf), if out_open => {
                        out_open = take_line(&j, r, &mut out_buf);
                    }
                    r = err.read_until(b'\n', &mut err_buf), if err_open => {
                        err_open = take_line(&j, r, &mut err_buf);
                    }
                }
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), drain).await;
        let code = match status {
            Ok(st) => st.code().unwrap_or(holdfast_core::error::exit::INTERRUPTED),
            Err(e) => {
                j.push(format!("holdfast: console: waiting for the run: {e}"));
                holdfast_core::error::exit::FAILURE
            }
        };
        tracing::info!(
            "console: {:?} of {} ended with exit code {code}",
            j.kind,
            j.app
        );
        j.end(code);
    });
    jobs.insert(job.id.clone(), job.clone());
    if jobs.len() > KEEP_JOBS {
        let mut ended: Vec<(DateTime<Utc>, String)> = jobs
            .values()
            .filter(|j| !j.running())
            .map(|j| (j.started, j.id.clone()))
            .collect();
        ended.sort();
        for (_, id) in ended.into_iter().take(jobs.len() - KEEP_JOBS) {
            jobs.remove(&id);
        }
    }
    Ok(job)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follower_gets_every_kept_line_once_also_past_the_cap() {
        let j = Job {
            id: "j".into(),
            app: "a".into(),
            kind: Kind::Backup,
            started: Utc::now(),
            progress: Mutex::new(Progress::default()),
            pid: Mutex::new(None),
            changed: tokio::sync::watch::channel(0).0,
        };
        for i in 0..KEEP_LINES + 3 {
            j.push(format!("line {i}"));
        }
        let first = j.since(0);
        assert_eq!(first.written, KEEP_LINES + 3);
        assert_eq!(first.lines.len(), KEEP_LINES);
        assert_eq!(first.lines[0], "line 3");
        assert!(j.since(first.written).lines.is_empty());
        j.push("last".into());
        let next = j.since(first.written);
        assert_eq!(next.lines, ["last"]);
        assert_eq!(next.exit_code, None);
        j.end(3);
        assert_eq!(j.since(next.written).result, Some(RunResult::Partial));
    }
}
