//! The web console, `holdfast serve`: every application's backups, runs and drills at a
//! glance, a snapshot browser with downloads, and "back up now" / "drill now".
//!
//! Why it is built this way:
//! - Pages are rendered on the server (maud) and work without JavaScript; a little plain
//!   JavaScript only follows an action's progress. Nothing to build but `cargo build`.
//! - Every page is a view of the repository (snapshots, drills, run records of every host)
//!   and of this host's configuration and run log; the rules that colour the overview live
//!   in `holdfast_app::overview`, not here.
//! - Actions run holdfast itself as a child (`holdfast run --app NAME`, `holdfast drill`),
//!   as the daemon does: the same code path, the same per-application lock, the same run
//!   record, and a crash of a run never takes the console down.
//! - Paths in requests name entries of a snapshot's trees only; nothing in a request ever
//!   reaches the server's file system.

mod actions;
mod api;
mod auth;
mod data;
mod download;
mod pages;
mod server;
mod snapshot_path;
mod state;

pub use server::{check_listen, router, serve, ChildCommand, ServeError, ServeOptions};
pub use snapshot_path::{parse as parse_snapshot_path, SnapshotPath, Target};
