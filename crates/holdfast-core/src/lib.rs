//! holdfast-core: the repository.
//!
//! Everything that defines what a holdfast repository is and how it is read and written lives
//! here: storage, chunking, packs, index, trees, snapshots, backup, restore, check. No terminal
//! code: progress is exposed as counters and outcomes as values, so the same core serves the
//! CLI, the scheduler and tests. The on-disk format is specified in docs/format.md.

pub mod amend;
pub mod backup;
pub mod cache;
pub mod check;
pub mod chunker;
pub mod compress;
pub mod copy;
pub mod crypto;
pub mod diff;
pub mod drills;
pub mod error;
pub mod exclude;
pub mod export;
pub mod find;
pub mod forget;
pub mod fsmeta;
pub mod host;
pub mod id;
pub mod import;
pub mod index;
pub mod keyfile;
pub mod lock;
pub mod pack;
pub mod private;
pub mod prune;
pub mod repair;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod runs;
pub mod saver;
pub mod share;
pub mod snapshot;
pub mod span;
pub mod stats;
pub mod storage;
pub mod tree;
pub mod walk;

pub use error::{Error, Result};
pub use repo::Repository;
