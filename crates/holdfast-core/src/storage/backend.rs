//! The one interface every place that holds repository objects implements, and what it
//! promises. The repository asks only for what object storage offers: whole-object writes
//! (each name written once), whole or ranged reads, recursive listing and deletes. What
//! differs between stores is stated as [`Properties`], so that code above asks "are round
//! trips long here?" instead of "is this the local disk?".

use crate::error::Result;

use super::Listed;

/// What a backend is like, for the code above that tunes itself to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Properties {
    /// Each request costs a network round trip: worth keeping many in flight (parallel
    /// uploads, a pool of restore readers, concurrent small reads).
    pub high_latency: bool,
    /// The repository is a folder that exists before its first object: a folder without a
    /// `config` is "not a repository" rather than "no repository yet" (a bucket prefix has
    /// no folders, so an empty one is simply not created yet).
    pub has_folders: bool,
    /// Writes go through temporary names under `tmp/` that a killed writer can leave
    /// behind, for check to report and prune to remove.
    pub temp_files: bool,
}

/// A store of repository objects. Paths are relative to the repository root, with `/`
/// separators, never starting with `/`. Implementations must be safe to call from many
/// threads at once.
pub trait Backend: Send + Sync {
    fn properties(&self) -> Properties;

    /// The whole object; [`crate::Error::NotFound`] when there is none.
    fn read(&self, path: &str) -> Result<Vec<u8>>;

    /// `len` bytes at `offset`; an object shorter than that is an error, never a short read.
    fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>>;

    /// Many whole objects, results in the order of `paths`. Backends with long round trips
    /// keep several requests in flight.
    fn read_many(&self, paths: &[String]) -> Vec<Result<Vec<u8>>> {
        paths.iter().map(|p| self.read(p)).collect()
    }

    /// Stores `bytes` under `path`, whole or not at all: a reader never sees a partial
    /// object under its final name. Gives the buffer back when the backend did not keep it,
    /// for the caller to fill again.
    fn write(&self, path: &str, bytes: Vec<u8>) -> Result<Option<Vec<u8>>>;

    /// Removes an object; removing one that does not exist is not an error.
    fn delete(&self, path: &str) -> Result<()>;

    fn exists(&self, path: &str) -> Result<bool>;

    /// Every object below the folder `dir` (ending in `/`), recursively, in no particular
    /// order; a folder that does not exist lists empty.
    fn list(&self, dir: &str) -> Result<Vec<Listed>>;

    /// The permission bits of an object, where the backend has them (a local file).
    fn mode(&self, _path: &str) -> Option<u32> {
        None
    }
}
