//! The one error type of the core, and the exit code each kind maps to.
//!
//! Administrators script around exit codes, so the kind of failure (wrong password, locked,
//! missing repository, corrupt data) is part of the API; the message names the object.

use std::path::PathBuf;

/// Exit codes, documented in the README and `holdfast --help`.
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILURE: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const PARTIAL: i32 = 3;
    pub const NO_REPOSITORY: i32 = 10;
    pub const LOCKED: i32 = 11;
    pub const WRONG_PASSWORD: i32 = 12;
    pub const UNSUPPORTED_FORMAT: i32 = 13;
    pub const INTEGRITY: i32 = 14;
    pub const INTERRUPTED: i32 = 130;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no holdfast repository at {0} (run `holdfast init` to create one)")]
    NoRepository(String),
    #[error("{0} is not a holdfast repository: {1}")]
    NotARepository(String, String),
    #[error("a repository already exists at {0}")]
    AlreadyExists(String),
    #[error("wrong password: no key of repository {0} opens with it")]
    WrongPassword(String),
    #[error("repository {location} has format version {found}; this holdfast reads versions up to {supported}: upgrade holdfast")]
    UnsupportedFormat {
        location: String,
        found: u32,
        supported: u32,
    },
    #[error("repository is locked {0}")]
    Locked(String),
    #[error("storage: {op} {path}: {source}")]
    Storage {
        op: &'static str,
        path: String,
        #[source]
        source: Box<opendal::Error>,
    },
    /// The storage refused who we are (S3 credentials missing or wrong).
    #[error("{location}: {why}")]
    Access { location: String, why: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt {what}: {why}")]
    Corrupt { what: String, why: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    pub fn corrupt(what: impl Into<String>, why: impl Into<String>) -> Self {
        Error::Corrupt {
            what: what.into(),
            why: why.into(),
        }
    }
    /// Damaged data found while writing file `path`: the error names the file too, which is
    /// what a person restoring needs to know (the blob and pack say where the damage is).
    pub fn in_file(self, path: &std::path::Path) -> Self {
        match self {
            Error::Corrupt { what, why } => Error::Corrupt {
                what: format!("{what} (file {})", path.display()),
                why,
            },
            other => other,
        }
    }

    /// The documented process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::NoRepository(_) | Error::NotARepository(..) => exit::NO_REPOSITORY,
            Error::WrongPassword(_) => exit::WRONG_PASSWORD,
            Error::UnsupportedFormat { .. } => exit::UNSUPPORTED_FORMAT,
            Error::Locked(_) => exit::LOCKED,
            Error::Corrupt { .. } => exit::INTEGRITY,
            Error::Interrupted => exit::INTERRUPTED,
            _ => exit::FAILURE,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
