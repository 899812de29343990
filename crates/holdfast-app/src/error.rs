//! Errors of the application layer and their exit codes.
//!
//! Besides the repository's own failures (wrapped as they are, so their exit codes survive),
//! a run can fail at a step that belongs to the application: a configuration that does not
//! parse, a service that will not stop, a volume snapshot or a database dump that fails, or a
//! restore the version rule forbids. Each has its own documented exit code.

use holdfast_core::error::exit;

/// Exit codes of the application layer, next to those of the core.
pub mod codes {
    /// The configuration file is missing, does not parse or names something wrong.
    pub const CONFIG: i32 = 4;
    /// An application step failed: quiesce check, stop/start, volume snapshot, database dump
    /// or restore, post-restore step.
    pub const STEP: i32 = 5;
    /// Restore refused: the backup is from a newer application version than the installed one.
    pub const VERSION: i32 = 6;
    /// Preflight failed: something the run needs is missing, and the service was not touched.
    pub const PREFLIGHT: i32 = 7;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] holdfast_core::Error),
    #[error("{0}")]
    Config(String),
    /// `step` names what failed ("stopping the service", "pg_dump of govern").
    #[error("{step}: {message}")]
    Step { step: String, message: String },
    /// Another run of the same application's procedure holds its lock (exit code 11).
    #[error("application {app} is busy: {why}")]
    Busy { app: String, why: String },
    /// What the run needs is not there; nothing was stopped, snapshotted or written.
    #[error("preflight failed, the service was not touched: {0}")]
    Preflight(String),
    #[error("refusing to restore a backup of {app} version {backup} onto version {installed}: restoring onto an older version is not supported (--force-version overrides)")]
    Version {
        app: String,
        backup: String,
        installed: String,
    },
}

impl Error {
    pub fn step(step: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Step {
            step: step.into(),
            message: message.into(),
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Core(e) => e.exit_code(),
            Error::Config(_) => codes::CONFIG,
            Error::Step { .. } => codes::STEP,
            Error::Version { .. } => codes::VERSION,
            Error::Preflight(_) => codes::PREFLIGHT,
            Error::Busy { .. } => exit::LOCKED,
        }
    }

    pub fn interrupted(&self) -> bool {
        matches!(self, Error::Core(holdfast_core::Error::Interrupted))
            || self.exit_code() == exit::INTERRUPTED
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
