//! What every command needs: global options, the repository, locks, cancellation, output.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use holdfast_app::config::Config;
use holdfast_app::{Access, PasswordSource};
use holdfast_core::lock::LockGuard;
use holdfast_core::Repository;

use crate::cli::Global;

pub struct Ctx {
    pub global: Global,
    pub cancel: Arc<AtomicBool>,
    /// Set while an application is stopped for a backup, or a drill has made things to clean
    /// up: a second interrupt then waits for that instead of exiting at once.
    pub critical: Arc<AtomicBool>,
    config: std::sync::OnceLock<Config>,
    /// The steps said during the current run, with their times, for its record.
    steps: std::sync::Mutex<Vec<holdfast_app::runlog::RunStep>>,
}

impl Ctx {
    pub fn new(global: Global) -> Ctx {
        let cancel = Arc::new(AtomicBool::new(false));
        let critical = Arc::new(AtomicBool::new(false));
        let (c, k) = (cancel.clone(), critical.clone());
        // First signal: stop cleanly (locks released, no snapshot written). Second: exit now,
        // unless a stopped application is still to be started again.
        let _ = ctrlc::set_handler(move || {
            if c.swap(true, Ordering::SeqCst) {
                if k.load(Ordering::SeqCst) {
                    crate::errln!(
                        "holdfast: finishing first (starting the application again before \
                         exiting, or removing a drill's copy)"
                    );
                    return;
                }
                std::process::exit(holdfast_core::error::exit::INTERRUPTED);
            }
            crate::errln!("holdfast: interrupted, stopping (again to quit at once)");
        });
        Ctx {
            global,
            cancel,
            critical,
            config: std::sync::OnceLock::new(),
            steps: Default::default(),
        }
    }

    /// Notes a step of the current run for its record.
    pub fn step(&self, what: &str) {
        self.steps
            .lock()
            .unwrap()
            .push(holdfast_app::runlog::RunStep {
                at: chrono::Utc::now(),
                what: what.to_string(),
            });
    }

    /// The steps noted since the last call.
    pub fn take_steps(&self) -> Vec<holdfast_app::runlog::RunStep> {
        std::mem::take(&mut *self.steps.lock().unwrap())
    }

    /// The configuration file (`--config`, else /etc/holdfast/holdfast.toml if present).
    pub fn config(&self) -> Result<&Config> {
        if let Some(c) = self.config.get() {
            return Ok(c);
        }
        let c = Config::find(self.global.config.as_deref())?;
        Ok(self.config.get_or_init(|| c))
    }

    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    pub fn repo_location(&self) -> Result<String> {
        if let Some(r) = self.global.repo.clone().filter(|r| !r.is_empty()) {
            return Ok(r);
        }
        self.config()?
            .repository
            .clone()
            .filter(|r| !r.is_empty())
            .ok_or_else(|| {
                crate::usage!(
                    "no repository given: use --repo, set HOLDFAST_REPO, or set `repository` in the configuration"
                )
            })
    }

    /// S3 settings for `location`: flags and environment first, then the configuration's
    /// `[s3]`. A configuration file that does not load is an error here only when it is
    /// needed (an s3:// location), not for a local repository.
    pub fn s3_settings(&self, location: &str) -> Result<holdfast_app::access::S3Settings> {
        let cfg = if location.starts_with("s3://") {
            self.config()?.s3.clone()
        } else {
            Default::default()
        };
        Ok(holdfast_app::access::S3Settings {
            endpoint: self.global.s3_endpoint.clone().or(cfg.endpoint),
            region: self.global.s3_region.clone().or(cfg.region),
            virtual_host_style: self.global.s3_virtual_host_style || cfg.virtual_host_style,
            ..cfg
        })
    }

    /// Where the password comes from. The configuration is read only when no flag or
    /// variable gives one, and then a file that does not load is an error, not a prompt.
    pub fn password_source(&self) -> Result<PasswordSource> {
        if let Some(f) = &self.global.password_file {
            return Ok(PasswordSource::File(f.clone()));
        }
        if let Ok(p) = std::env::var("HOLDFAST_PASSWORD") {
            return Ok(PasswordSource::Value(p));
        }
        if let Some(c) = &self.global.password_command {
            return Ok(PasswordSource::Command(c.clone()));
        }
        let cfg = self.config()?;
        if let Some(f) = &cfg.password_file {
            return Ok(PasswordSource::File(f.clone()));
        }
        if let Some(c) = &cfg.password_command {
            return Ok(PasswordSource::Command(c.clone()));
        }
        Ok(PasswordSource::Prompt)
    }

    pub fn open(&self) -> Result<Arc<Repository>> {
        self.open_cached(!self.global.no_cache)
    }

    /// How to open the repository, with or without the local cache.
    pub fn access(&self, use_cache: bool) -> Result<Access> {
        let repo = self.repo_location()?;
        Ok(Access {
            s3: self.s3_settings(&repo)?,
            password: self.password_source()?,
            use_cache,
            repo,
        })
    }

    /// Opens the repository, with or without the local cache whatever `--no-cache` says.
    pub fn open_cached(&self, use_cache: bool) -> Result<Arc<Repository>> {
        Ok(open_with(&self.access(use_cache)?)?)
    }

    /// Opens the repository, takes a lock and loads the index.
    pub fn open_locked(
        &self,
        exclusive: bool,
        command: &str,
    ) -> Result<(Arc<Repository>, LockGuard)> {
        let repo = self.open()?;
        let lock = LockGuard::acquire(repo.storage(), exclusive, command)?;
        repo.load_index().context("loading the index")?;
        Ok((repo, lock))
    }

    /// As [`Self::open_locked`], for a dry run: the repository seen through
    /// [`holdfast_app::access::open_repository_dry_run`], so the lock, like every other write,
    /// stays in this process's memory.
    pub fn open_locked_dry_run(
        &self,
        exclusive: bool,
        command: &str,
    ) -> Result<(Arc<Repository>, LockGuard)> {
        let repo = Arc::new(holdfast_app::access::open_repository_dry_run(
            &self.access(false)?,
            &prompt,
        )?);
        let lock = LockGuard::acquire(repo.storage(), exclusive, command)?;
        repo.load_index().context("loading the index")?;
        Ok((repo, lock))
    }

    /// Whether to draw progress bars.
    pub fn interactive(&self) -> bool {
        !self.global.json && !self.global.quiet && std::io::stderr().is_terminal()
    }

    /// How long work shows its progress: a bar on a terminal, else lines when asked for with
    /// `--progress-interval` (even with `--quiet` or `--json`: stdout stays clean, and
    /// whoever asked wants them).
    pub fn show_progress(&self) -> crate::progress::Show {
        use crate::progress::Show;
        match self.global.progress_interval {
            _ if self.interactive() => Show::Bar,
            Some(every) if every.as_secs() > 0 => Show::Lines(every.as_std()),
            _ => Show::Nothing,
        }
    }

    pub fn say(&self, s: impl AsRef<str>) {
        if !self.global.json && !self.global.quiet {
            crate::outln!("{}", s.as_ref());
        }
    }

    pub fn json(&self, v: &impl serde::Serialize) {
        crate::outln!("{}", serde_json::to_string(v).expect("serialisable"));
    }
}

/// Opens the repository `access` names, asking for a password on the terminal if need be.
pub fn open_with(access: &Access) -> holdfast_app::Result<Arc<Repository>> {
    Ok(Arc::new(holdfast_app::open_repository(access, &prompt)?))
}

pub fn prompt(what: &str) -> std::io::Result<String> {
    if !std::io::stdin().is_terminal() {
        return Err(std::io::Error::other("standard input is not a terminal"));
    }
    rpassword::prompt_password(what)
}

/// The error and its causes on one line, without repeating a cause its parent already quotes.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for c in e.chain() {
        let s = c.to_string();
        if out.contains(&s) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s);
    }
    out.replace('\n', " ")
}

/// A command line that cannot be run as given (exit code 2, like clap's own refusals).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A usage error (exit code 2) from a format string.
#[macro_export]
macro_rules! usage {
    ($($t:tt)*) => {
        anyhow::Error::new($crate::context::UsageError(format!($($t)*)))
    };
}

/// The documented exit code for an error that ended a command.
pub fn exit_code(e: &anyhow::Error, cancelled: bool) -> i32 {
    use holdfast_core::error::exit;
    if e.chain().any(|c| c.is::<UsageError>()) {
        return exit::USAGE;
    }
    e.chain()
        .find_map(|c| {
            c.downcast_ref::<holdfast_app::Error>()
                .map(|a| a.exit_code())
                .or_else(|| {
                    c.downcast_ref::<holdfast_core::Error>()
                        .map(|c| c.exit_code())
                })
        })
        .unwrap_or(if cancelled {
            exit::INTERRUPTED
        } else {
            exit::FAILURE
        })
}
