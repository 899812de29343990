//! holdfast-app: the application layer between the CLI and the repository core.
//!
//! It turns what a user configured (a repository location, where a password comes from) into
//! core objects. Application profiles, service control, volume snapshots, database dumps and
//! schedules belong here as they arrive; the CLI stays a thin shell over this crate.

pub mod access;

pub use access::{open_repository, open_storage, Access, PasswordSource};
