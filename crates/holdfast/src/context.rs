//! What every command needs: global options, the repository, locks, cancellation, output.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use holdfast_app::{Access, PasswordSource};
use holdfast_core::lock::LockGuard;
use holdfast_core::Repository;

use crate::cli::Global;

pub struct Ctx {
    pub global: Global,
    pub cancel: Arc<AtomicBool>,
}

impl Ctx {
    pub fn new(global: Global) -> Ctx {
        let cancel = Arc::new(AtomicBool::new(false));
        let c = cancel.clone();
        // First signal: stop cleanly (locks released, no snapshot written). Second: exit now.
        let _ = ctrlc::set_handler(move || {
            if c.swap(true, Ordering::SeqCst) {
                std::process::exit(holdfast_core::error::exit::INTERRUPTED);
            }
            eprintln!("holdfast: interrupted, stopping (again to quit at once)");
        });
        Ctx { global, cancel }
    }

    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    pub fn repo_location(&self) -> Result<String> {
        self.global
            .repo
            .clone()
            .filter(|r| !r.is_empty())
            .ok_or_else(|| anyhow::anyhow!("no repository given: use --repo or set HOLDFAST_REPO"))
    }

    pub fn password_source(&self) -> PasswordSource {
        if let Some(f) = &self.global.password_file {
            return PasswordSource::File(f.clone());
        }
        if let Ok(p) = std::env::var("HOLDFAST_PASSWORD") {
            return PasswordSource::Value(p);
        }
        if let Some(c) = &self.global.password_command {
            return PasswordSource::Command(c.clone());
        }
        PasswordSource::Prompt
    }

    pub fn open(&self) -> Result<Arc<Repository>> {
        let access = Access {
            repo: self.repo_location()?,
            password: self.password_source(),
            use_cache: !self.global.no_cache,
        };
        let repo = holdfast_app::open_repository(&access, &prompt)?;
        Ok(Arc::new(repo))
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

    /// Whether to draw progress bars.
    pub fn interactive(&self) -> bool {
        !self.global.json && !self.global.quiet && std::io::stderr().is_terminal()
    }

    pub fn say(&self, s: impl AsRef<str>) {
        if !self.global.json && !self.global.quiet {
            println!("{}", s.as_ref());
        }
    }

    pub fn json(&self, v: &impl serde::Serialize) {
        println!("{}", serde_json::to_string(v).expect("serialisable"));
    }
}

pub fn prompt(what: &str) -> std::io::Result<String> {
    if !std::io::stdin().is_terminal() {
        return Err(std::io::Error::other("standard input is not a terminal"));
    }
    rpassword::prompt_password(what)
}
