//! holdfast-app: the application layer between the CLI and the repository core.
//!
//! It turns what a user configured (a repository location, a password source, applications
//! with their profiles, consistency modes and databases) into runs of the core. Everything
//! that knows about services, volume snapshots or PostgreSQL lives here; the core stays a
//! repository, and the CLI stays a thin shell over this crate.

pub mod access;
pub mod applock;
pub mod config;
pub mod console_auth;
pub mod drill;
pub mod dss_api;
pub mod error;
pub mod human;
pub mod job;
pub mod mount;
pub mod notify;
pub mod overview;
pub mod pg_url;
pub mod postgres;
pub mod procedure;
pub mod profile;
pub mod resolved;
pub mod restore;
pub mod runlog;
pub mod schedule;
pub mod service;
pub mod starter;
pub mod upgrade;
pub mod upgrade_marker;
pub mod volume;

pub use access::{open_repository, open_storage, Access, PasswordSource};
pub use error::{Error, Result};
