//! Where repository objects live: [`Storage`], one synchronous face over a stack of
//! [`Backend`]s: a store at the bottom (a local folder walked without following links, an
//! object store through OpenDAL, or memory) and decorators above it (request counting, fault
//! injection, dry run).
//!
//! The repository only ever writes whole objects once, reads whole objects or byte ranges,
//! lists a folder, and deletes. That is all object storage offers, so nothing above this layer
//! can come to depend on rename, append or listing order. On the local filesystem, objects are
//! written as temp file + fsync + rename + directory fsync, so a crash never leaves a
//! half-written object under its final name, nor an index naming a pack whose rename was
//! lost. Local operations go straight to the kernel (one exactly sized buffer, no copy
//! through an async runtime: that took a tenth of a first backup's system time), relative to
//! a descriptor of the repository root so that no link inside it is ever followed.

mod backend;
#[doc(hidden)]
pub mod conformance;
mod counting;
mod dry_run;
mod faults;
mod local;
mod memory;
mod object;

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
pub use crate::private::{DIR_MODE, FILE_MODE};
pub use backend::{Backend, Properties};
pub use counting::{process_counters, request_counts, Counters, Counting, RequestCounts};
pub use dry_run::DryRun;
pub use faults::{FaultInjecting, Faults};
use local::LocalDir;
pub use memory::Memory;
use object::ObjectStore;

/// Top-level folders of a repository; each object's name in them is a hex id.
pub mod layout {
    pub const CONFIG: &str = "config";
    pub const KEYS: &str = "keys/";
    pub const SNAPSHOTS: &str = "snapshots/";
    pub const INDEX: &str = "index/";
    pub const DATA: &str = "data/";
    pub const LOCKS: &str = "locks/";
    /// Records of restore drills ([`crate::drills`]).
    pub const DRILLS: &str = "drills/";
    /// Records of runs ([`crate::runs`]), named by time then content.
    pub const RUNS: &str = "runs/";
    /// Temp files of the local backend before they are renamed into place.
    pub const TMP: &str = "tmp";

    /// `data/ab/abcdef…`: 256 fan-out folders keep directory listings short.
    pub fn pack_path(hex: &str) -> String {
        format!("{DATA}{}/{hex}", &hex[..2])
    }
}

/// Where an S3-compatible repository is, and how to reach it. Without `credentials`, they come
/// from the AWS SDK chain: the `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`
/// variables, then `profile` (or `AWS_PROFILE`) in the shared files `~/.aws/credentials` and
/// `~/.aws/config`, then the instance's role. Never on a command line, never in a message.
#[derive(Clone, Debug, Default)]
pub struct S3Options {
    pub bucket: String,
    /// Folder inside the bucket ("" for the whole bucket).
    pub prefix: String,
    /// e.g. `http://127.0.0.1:9000` for MinIO or Garage; AWS when absent.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Address buckets as `bucket.host` (AWS default) instead of `host/bucket`.
    pub virtual_host_style: bool,
    /// Requests in flight at once.
    pub max_requests: usize,
    /// Attempts after the first for a request that failed in a way worth retrying (throttled,
    /// 5xx, timeout), with exponential backoff from 200 ms to 20 s and jitter.
    pub max_retries: usize,
    /// A profile of the AWS shared files, instead of `AWS_PROFILE` or `default`.
    pub profile: Option<String>,
    /// Keys given explicitly (from holdfast's configuration file).
    pub credentials: Option<S3Credentials>,
}

/// A static access key. `Debug` shows the key id only.
#[derive(Clone)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

impl S3Options {
    /// Parses `s3://bucket/prefix`.
    pub fn from_url(url: &str) -> Result<S3Options> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| Error::Invalid(format!("'{url}' is not an s3://bucket/prefix URL")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::Invalid(format!("'{url}' names no bucket")));
        }
        Ok(S3Options {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            max_requests: 16,
            max_retries: 8,
            ..Default::default()
        })
    }
}

/// How many reads [`Storage::read_many`] keeps outstanding on a backend with long round
/// trips. On S3 the connection layer caps requests in flight further (`--s3-max-requests`).
pub const READS_IN_FLIGHT: usize = 32;

/// A repository's storage: a stack of backends, and the location as the user named it.
/// Cheap to clone; clones share the backend.
#[derive(Clone)]
pub struct Storage {
    backend: Arc<dyn Backend>,
    location: String,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Storage({})", self.location)
    }
}

/// One listed object: its path relative to the repository root, and size when known.
#[derive(Debug, Clone)]
pub struct Listed {
    pub path: String,
    pub name: String,
    /// When the storage says the object was written (its own clock: the local filesystem's,
    /// or the object store's), where the listing tells it.
    pub modified: Option<std::time::SystemTime>,
    pub size: Option<u64>,
}

impl Storage {
    /// A repository on the local filesystem, its requests counted into the process's
    /// counters. `create` makes the folder (for `init`); otherwise a missing folder is
    /// [`Error::NoRepository`].
    pub fn local(path: &Path, create: bool) -> Result<Storage> {
        let location = path.display().to_string();
        if !create && !path.is_dir() {
            return Err(Error::NoRepository(location));
        }
        let dir = LocalDir::open(path, create)?;
        Ok(Storage::new(
            location,
            Counting::new(dir, process_counters()),
        ))
    }

    /// A repository in an S3-compatible bucket, its requests counted into the process's
    /// counters. Requests are retried with exponential backoff and jitter on throttling, 5xx
    /// and timeouts, at most `max_requests` run at once, and objects larger than 8 MiB are
    /// uploaded in parts (aborted when they fail).
    pub fn s3(opts: &S3Options) -> Result<Storage> {
        let store = ObjectStore::s3(opts)?;
        let location = store.location().to_string();
        Ok(Storage::new(
            location,
            Counting::new(store, process_counters()),
        ))
    }

    /// An empty repository store in memory (for tests and examples).
    pub fn memory() -> Storage {
        Storage::new("memory", Memory::new())
    }

    /// Storage over any backend (a stack of decorators over a store).
    pub fn new(location: impl Into<String>, backend: impl Backend + 'static) -> Storage {
        Storage {
            backend: Arc::new(backend),
            location: location.into(),
        }
    }

    /// The same storage with a decorator stacked on top:
    /// `storage.decorated(|b| FaultInjecting::new(b, faults))`.
    pub fn decorated<D: Backend + 'static>(
        &self,
        decorate: impl FnOnce(Arc<dyn Backend>) -> D,
    ) -> Storage {
        Storage::new(self.location.clone(), decorate(self.backend.clone()))
    }

    /// The repository location as the user named it.
    pub fn location(&self) -> &str {
        &self.location
    }

    pub fn properties(&self) -> Properties {
        self.backend.properties()
    }

    pub fn read(&self, path: &str) -> Result<Vec<u8>> {
        self.backend.read(path)
    }

    /// Reads many small objects, results in the order of `paths`; backends with long round
    /// trips keep up to [`READS_IN_FLIGHT`] requests outstanding.
    pub fn read_many(&self, paths: &[String]) -> Vec<Result<Vec<u8>>> {
        self.backend.read_many(paths)
    }

    pub fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.backend.read_range(path, offset, len)
    }

    /// Like [`Storage::write`], and gives the buffer back when the backend did not keep it
    /// (local files), so that the caller can fill it again instead of allocating and zeroing
    /// another one.
    pub fn write_reusing(&self, path: &str, bytes: Vec<u8>) -> Result<Option<Vec<u8>>> {
        self.backend.write(path, bytes)
    }

    pub fn write(&self, path: &str, bytes: Vec<u8>) -> Result<()> {
        self.backend.write(path, bytes).map(drop)
    }

    pub fn delete(&self, path: &str) -> Result<()> {
        self.backend.delete(path)
    }

    pub fn exists(&self, path: &str) -> Result<bool> {
        self.backend.exists(path)
    }

    /// Every object below `dir` (which ends in `/`), in no particular order.
    pub fn list(&self, dir: &str) -> Result<Vec<Listed>> {
        self.backend.list(dir)
    }

    /// An object's permission bits, where the backend has them (local files).
    pub fn mode(&self, path: &str) -> Option<u32> {
        self.backend.mode(path)
    }
}

/// A shared backend is a backend: decorators stack over `Arc<dyn Backend>`.
impl<B: Backend + ?Sized> Backend for Arc<B> {
    fn properties(&self) -> Properties {
        (**self).properties()
    }
    fn read(&self, path: &str) -> Result<Vec<u8>> {
        (**self).read(path)
    }
    fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        (**self).read_range(path, offset, len)
    }
    fn read_many(&self, paths: &[String]) -> Vec<Result<Vec<u8>>> {
        (**self).read_many(paths)
    }
    fn write(&self, path: &str, bytes: Vec<u8>) -> Result<Option<Vec<u8>>> {
        (**self).write(path, bytes)
    }
    fn delete(&self, path: &str) -> Result<()> {
        (**self).delete(path)
    }
    fn exists(&self, path: &str) -> Result<bool> {
        (**self).exists(path)
    }
    fn list(&self, dir: &str) -> Result<Vec<Listed>> {
        (**self).list(dir)
    }
    fn mode(&self, path: &str) -> Option<u32> {
        (**self).mode(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_backend_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let local = Storage::local(&dir.path().join("repo"), true).unwrap();
        conformance::check(&local).unwrap();
        conformance::check(&Storage::memory()).unwrap();
        let counted = Storage::new("memory", Counting::new(Memory::new(), Default::default()));
        conformance::check(&counted).unwrap();
        let delayed = Storage::memory().decorated(|b| {
            FaultInjecting::new(
                b,
                Faults {
                    delay: Some(std::time::Duration::from_millis(1)),
                    ..Default::default()
                },
            )
        });
        conformance::check(&delayed).unwrap();
        conformance::check(&local.decorated(DryRun::new)).unwrap();
    }

    #[test]
    fn counting_counts_as_s3_bills() {
        let counters = Arc::new(Counters::default());
        let s = Storage::new("memory", Counting::new(Memory::new(), counters.clone()));
        s.write("data/aa/1", vec![0; 10]).unwrap();
        s.read("data/aa/1").unwrap();
        s.read_range("data/aa/1", 2, 3).unwrap();
        assert!(s.read("data/aa/2").is_err());
        s.exists("data/aa/1").unwrap();
        s.list("data/").unwrap();
        s.delete("data/aa/1").unwrap();
        let c = counters.snapshot();
        assert_eq!(
            (c.reads, c.writes, c.stats, c.lists, c.list_pages, c.deletes),
            (3, 1, 1, 1, 1, 1)
        );
        assert_eq!((c.bytes_read, c.bytes_written), (13, 10));
        assert_eq!(c.requests(), 7);
    }

    #[test]
    fn faults_fail_what_they_say() {
        let s = Storage::memory().decorated(|b| {
            FaultInjecting::new(
                b,
                Faults {
                    fail_write: Some(2),
                    fail_read: Some(1),
                    ..Default::default()
                },
            )
        });
        s.write("a/1", vec![1]).unwrap();
        let e = s.write("a/2", vec![2]).unwrap_err().to_string();
        assert!(e.contains("injected fault: write number 2"), "{e}");
        s.write("a/3", vec![3]).unwrap();
        assert!(s.read("a/1").is_err(), "first read fails");
        assert_eq!(s.read("a/1").unwrap(), [1]);
        assert!(!s.exists("a/2").unwrap(), "a failed write stores nothing");
        let full = Storage::memory().decorated(|b| {
            FaultInjecting::new(
                b,
                Faults {
                    fail_writes_after: Some(1),
                    writes_under: Some("data/".into()),
                    ..Default::default()
                },
            )
        });
        full.write("data/1", vec![]).unwrap();
        full.write("index/1", vec![]).unwrap();
        assert!(full.write("data/2", vec![]).is_err());
        assert!(full.write("data/3", vec![]).is_err());
    }

    #[test]
    fn a_dry_run_changes_nothing_underneath() {
        let base = Storage::memory();
        base.write("snapshots/old", b"old".to_vec()).unwrap();
        let dry = base.decorated(DryRun::new);
        dry.write("snapshots/new", b"new".to_vec()).unwrap();
        dry.delete("snapshots/old").unwrap();
        assert_eq!(dry.read("snapshots/new").unwrap(), b"new");
        assert!(dry.read("snapshots/old").is_err());
        let many = dry.read_many(&["snapshots/old".into(), "snapshots/new".into()]);
        assert!(matches!(many[0], Err(Error::NotFound(_))));
        assert_eq!(many[1].as_deref().unwrap(), b"new");
        let names: Vec<_> = dry
            .list("snapshots/")
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .collect();
        assert_eq!(names, ["new"]);
        let names: Vec<_> = base
            .list("snapshots/")
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .collect();
        assert_eq!(names, ["old"], "the store underneath is untouched");
    }
}
