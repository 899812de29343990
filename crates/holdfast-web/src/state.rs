//! What every request shares: the open repository, this host's configuration, the login
//! sessions, the actions in flight, and the run records already read (they never change).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use holdfast_app::config::Config;
use holdfast_app::runlog::RunRecord;
use holdfast_core::Repository;

use crate::actions::Jobs;
use crate::server::ChildCommand;

/// A browser's login: its CSRF token and when it ends.
#[derive(Clone)]
pub struct Session {
    pub csrf: String,
    pub expires: Instant,
}

pub struct AppState {
    pub repo: Arc<Repository>,
    pub config: Config,
    pub hostname: String,
    pub read_only: bool,
    /// Cookies marked `Secure`: over HTTPS, and behind a TLS proxy (`--insecure-http`).
    pub secure_cookies: bool,
    /// One login check at a time (see `auth::login_post`).
    pub login_gate: tokio::sync::Mutex<()>,
    /// Set once a stop was asked for: no new action starts.
    pub stopping: std::sync::atomic::AtomicBool,
    /// Becomes true when the console stops: live streams end.
    pub shutdown: tokio::sync::watch::Sender<bool>,
    pub grace: chrono::Duration,
    pub token: String,
    pub password_hash: Option<String>,
    pub sessions: Mutex<HashMap<String, Session>>,
    pub jobs: Jobs,
    pub child: ChildCommand,
    /// Run records by object name.
    pub runs_cache: Mutex<BTreeMap<String, RunRecord>>,
}

impl AppState {
    /// Resolves once the console is stopping (after its actions ended).
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut down = self.shutdown.subscribe();
        async move {
            let _ = down.wait_for(|d| *d).await;
        }
    }
}

pub type Shared = Arc<AppState>;
