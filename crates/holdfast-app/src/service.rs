//! Running the application's own commands: quiesce checks, stop, start, snapshot and
//! post-restore steps.
//!
//! Commands are the administrator's (`sh -c`), so they get a timeout, their output is kept for
//! the error message, and they never see the repository password. The stop guard exists so
//! that a service stopped for a backup is started again whatever happens to the backup:
//! failure, interruption or a panic.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// What a command printed and how it ended.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    pub code: Option<i32>,
    pub text: String,
}

/// A user that service commands run as: a service started by root comes back owned by root
/// and writes root-owned files into its data directory, which its own user then cannot use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: std::path::PathBuf,
}

impl RunAs {
    pub fn by_name(name: &str) -> Result<RunAs> {
        let u = nix::unistd::User::from_name(name)
            .ok()
            .flatten()
            .ok_or_else(|| Error::Config(format!("service.user: no user named '{name}'")))?;
        Ok(Self::from_user(u))
    }

    pub fn by_uid(uid: u32) -> Result<RunAs> {
        let u = nix::unistd::User::from_uid(uid.into())
            .ok()
            .flatten()
            .ok_or_else(|| {
                Error::Config(format!(
                    "the data directory's owner (uid {uid}) has no user name: set service.user"
                ))
            })?;
        Ok(Self::from_user(u))
    }

    fn from_user(u: nix::unistd::User) -> RunAs {
        RunAs {
            name: u.name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            home: u.dir,
        }
    }
}

/// Runs `cmd` with `sh -c`, stdin closed, output captured, killed after `timeout`.
pub fn run(cmd: &str, env: &[(&str, String)], timeout: Duration) -> std::io::Result<Output> {
    run_as(cmd, env, timeout, None)
}

/// [`run`] as `user` (its groups, uid, HOME, USER and LOGNAME), when given and not the
/// current user.
pub fn run_as(
    cmd: &str,
    env: &[(&str, String)],
    timeout: Duration,
    user: Option<&RunAs>,
) -> std::io::Result<Output> {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(cmd)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env_remove("HOLDFAST_PASSWORD")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(u) = user.filter(|u| u.uid != nix::unistd::geteuid().as_raw()) {
        let cname = std::ffi::CString::new(u.name.clone())
            .map_err(|_| std::io::Error::other("user name with a NUL byte"))?;
        let (uid, gid) = (u.uid, u.gid);
        // The user's groups are looked up here, before the fork: NSS lookups allocate and may
        // load libraries, which a child of a multithreaded process must not do.
        let groups: Vec<nix::libc::gid_t> =
            nix::unistd::getgrouplist(&cname, nix::unistd::Gid::from_raw(gid))
                .map_err(std::io::Error::from)?
                .into_iter()
                .map(|g| g.as_raw())
                .collect();
        command
            .env("HOME", &u.home)
            .env("USER", &u.name)
            .env("LOGNAME", &u.name)
            .current_dir("/");
        // SAFETY: only setgroups, setgid and setuid run between fork and exec: direct system
        // calls on memory prepared before the fork, no allocation, no lock.
        unsafe {
            command.pre_exec(move || {
                if nix::libc::setgroups(groups.len() as _, groups.as_ptr()) != 0
                    || nix::libc::setgid(gid as nix::libc::gid_t) != 0
                    || nix::libc::setuid(uid as nix::libc::uid_t) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = command.spawn()?;
    // Read both pipes in threads so that a chatty command cannot block on a full pipe.
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break Some(st);
        }
        if Instant::now() >= deadline {
            // The whole process group: a service script's children too.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // A command that left a daemon holding its output pipes must not hang us: give the
    // readers a moment, then go on without what they have not read.
    let collect = |t: std::thread::JoinHandle<String>| {
        let until = Instant::now() + Duration::from_secs(2);
        while !t.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        if t.is_finished() {
            t.join().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let mut text = collect(t_out);
    text.push_str(&collect(t_err));
    let text = text.trim().to_string();
    Ok(match status {
        Some(st) => Output {
            success: st.success(),
            code: st.code(),
            text,
        },
        None => Output {
            success: false,
            code: None,
            text: format!("timed out after {}s; {text}", timeout.as_secs()),
        },
    })
}

/// Runs a step's command and turns anything but success into an error naming the step.
pub fn run_step(
    step: &str,
    cmd: &str,
    env: &[(&str, String)],
    timeout: Duration,
) -> Result<String> {
    run_step_as(step, cmd, env, timeout, None)
}

/// [`run_step`] as `user` (see [`run_as`]).
pub fn run_step_as(
    step: &str,
    cmd: &str,
    env: &[(&str, String)],
    timeout: Duration,
    user: Option<&RunAs>,
) -> Result<String> {
    tracing::info!("{step}: {cmd}");
    let out =
        run_as(cmd, env, timeout, user).map_err(|e| Error::step(step, format!("{cmd}: {e}")))?;
    if out.success {
        Ok(out.text)
    } else {
        Err(Error::step(
            step,
            format!(
                "`{cmd}` failed ({}){}",
                out.code
                    .map(|c| format!("exit code {c}"))
                    .unwrap_or_else(|| "killed".into()),
                if out.text.is_empty() {
                    String::new()
                } else {
                    format!(": {}", last_lines(&out.text, 3))
                }
            ),
        ))
    }
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// Whether the service runs, by its `status` command, read as an LSB init script's: exit 0
/// running, 1 to 3 not running (3 "not running", 1 and 2 "dead" with a pid or lock file left);
/// `None` without a status command. Anything else (4 "unknown", 126/127 a command that
/// cannot run, a timeout) is an error: better no backup than stopping, or starting, or
/// upgrading, a service in an unknown state.
pub fn is_running(
    status_cmd: Option<&str>,
    timeout: Duration,
    user: Option<&RunAs>,
) -> Result<Option<bool>> {
    let Some(cmd) = status_cmd else {
        return Ok(None);
    };
    tracing::info!("asking the service's status: {cmd}");
    let out = run_as(cmd, &[], timeout, user)
        .map_err(|e| Error::step("asking the service's status", format!("{cmd}: {e}")))?;
    match out.code {
        Some(0) => Ok(Some(true)),
        Some(1..=3) => Ok(Some(false)),
        Some(c) => Err(Error::step(
            "asking the service's status",
            format!(
                "`{cmd}` exited {c}, which says neither running (0) nor stopped (1-3): {}; \
                 nothing was touched",
                out.text
            ),
        )),
        None => Err(Error::step(
            "asking the service's status",
            format!("`{cmd}` did not finish: {}", out.text),
        )),
    }
}

/// What tells that the application has no work running, asked before it is stopped.
#[derive(Clone, Debug)]
pub enum QuietCheck {
    /// `service.quiesce`: succeeds (exit 0) when quiet; run as the service's user.
    Command(String),
    /// The dss profile's default with `service.dss_api_key_file`: DSS's public API.
    DssApi(crate::dss_api::DssApi),
}

impl QuietCheck {
    pub fn describe(&self) -> String {
        match self {
            QuietCheck::Command(cmd) => format!("`{cmd}`"),
            QuietCheck::DssApi(api) => api.describe(),
        }
    }

    /// Asks once: `None` when quiet, otherwise what is running or why it cannot be told
    /// (which counts as not quiet: the check fails closed).
    pub fn probe(&self, command_timeout: Duration, user: Option<&RunAs>) -> Result<Option<String>> {
        match self {
            QuietCheck::Command(cmd) => {
                let out = run_as(cmd, &[], command_timeout, user)
                    .map_err(|e| Error::step("quiesce check", format!("{cmd}: {e}")))?;
                Ok((!out.success).then_some(out.text))
            }
            QuietCheck::DssApi(api) => Ok(match api.running() {
                Ok(running) if running.is_empty() => None,
                Ok(running) => Some(format!(
                    "running: {}{}",
                    running
                        .iter()
                        .take(5)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                    if running.len() > 5 {
                        format!(" and {} more", running.len() - 5)
                    } else {
                        String::new()
                    }
                )),
                Err(e) => Some(format!("cannot tell: {e}")),
            }),
        }
    }
}

/// Runs the quiesce check until it passes, the timeout passes, or the run is cancelled.
pub fn wait_quiet(
    check: &QuietCheck,
    timeout: Duration,
    interval: Duration,
    command_timeout: Duration,
    cancel: &AtomicBool,
    user: Option<&RunAs>,
) -> Result<u32> {
    let deadline = Instant::now() + timeout;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let Some(why) = check.probe(command_timeout, user)? else {
            return Ok(attempts);
        };
        if Instant::now() + interval > deadline {
            return Err(Error::step(
                "quiesce check",
                format!(
                    "{} still not quiet after {attempts} attempts over {}s; the service was not stopped{}",
                    check.describe(),
                    timeout.as_secs(),
                    if why.is_empty() {
                        String::new()
                    } else {
                        format!(" (last said: {})", last_lines(&why, 2))
                    }
                ),
            ));
        }
        tracing::info!("quiesce check not yet satisfied ({why}); waiting");
        let wake = Instant::now() + interval;
        while Instant::now() < wake {
            if cancel.load(Ordering::Relaxed) {
                return Err(holdfast_core::Error::Interrupted.into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A stopped service that must run again. `start` starts it (once) and reports the
/// downtime; dropping the guard without calling it starts the service too.
pub struct Stopped {
    start_cmd: String,
    user: Option<RunAs>,
    timeout: Duration,
    since: Instant,
    started: Option<Result<f64, String>>,
}

impl Stopped {
    /// Stops the service with `stop_cmd`. If stopping fails, the start command still runs
    /// (the service may be half stopped) and the error is returned.
    pub fn stop(stop_cmd: &str, start_cmd: &str, timeout: Duration) -> Result<Stopped> {
        Self::stop_as(stop_cmd, start_cmd, timeout, None)
    }

    /// [`Stopped::stop`], with both commands run as `user`.
    pub fn stop_as(
        stop_cmd: &str,
        start_cmd: &str,
        timeout: Duration,
        user: Option<RunAs>,
    ) -> Result<Stopped> {
        let since = Instant::now();
        let mut guard = Stopped {
            start_cmd: start_cmd.to_string(),
            user,
            timeout,
            since,
            started: None,
        };
        let user = guard.user.clone();
        if let Err(e) = run_step_as(
            "stopping the service",
            stop_cmd,
            &[],
            timeout,
            user.as_ref(),
        ) {
            let _ = guard.start();
            return Err(e);
        }
        Ok(guard)
    }

    /// Starts the service again (only the first call runs the command); returns the downtime.
    pub fn start(&mut self) -> Result<f64, String> {
        if let Some(r) = &self.started {
            return r.clone();
        }
        let r = run_step_as(
            "starting the service",
            &self.start_cmd,
            &[],
            self.timeout,
            self.user.as_ref(),
        )
        .map(|_| self.since.elapsed().as_secs_f64())
        .map_err(|e| e.to_string());
        if let Err(e) = &r {
            tracing::error!("{e}");
        }
        self.started = Some(r.clone());
        r
    }

    /// Leaves the service stopped (after a failed restore, starting it would run the
    /// application on half-restored data).
    pub fn disarm(mut self) {
        self.started = Some(Err("left stopped".into()));
    }

    /// Seconds since the service was stopped.
    pub fn elapsed(&self) -> f64 {
        self.since.elapsed().as_secs_f64()
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.start();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_with_timeout_and_output() {
        let o = run("echo hi; echo err >&2; exit 3", &[], Duration::from_secs(5)).unwrap();
        assert!(!o.success);
        assert_eq!(o.code, Some(3));
        assert!(o.text.contains("hi") && o.text.contains("err"));
        let t = Instant::now();
        let o = run("sleep 30", &[], Duration::from_millis(300)).unwrap();
        assert!(!o.success && o.text.contains("timed out"));
        assert!(t.elapsed() < Duration::from_secs(10));
        // A daemon keeping stdout open must not hang the caller.
        let t = Instant::now();
        let o = run("(sleep 30 &) ; echo started", &[], Duration::from_secs(5)).unwrap();
        assert!(o.success);
        assert!(t.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn guard_starts_once_even_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("j");
        let j = journal.display();
        {
            let _g = Stopped::stop(
                &format!("echo stop >> {j}"),
                &format!("echo start >> {j}"),
                Duration::from_secs(5),
            )
            .unwrap();
        }
        {
            let mut g = Stopped::stop(
                &format!("echo stop >> {j}"),
                &format!("echo start >> {j}"),
                Duration::from_secs(5),
            )
            .unwrap();
            g.start().unwrap();
        }
        assert!(Stopped::stop(
            "false",
            &format!("echo start >> {j}"),
            Duration::from_secs(5)
        )
        .is_err());
        let text = std::fs::read_to_string(&journal).unwrap();
        assert_eq!(text, "stop\nstart\nstop\nstart\nstart\n");
    }
}
