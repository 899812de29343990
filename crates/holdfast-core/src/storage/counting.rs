//! Counts requests at the repository's level, as an S3 bill would: one read, write, delete
//! or stat is one request; a list is one request per started page of 1,000 names. A
//! decorator over any backend, recording into a [`Counters`] it is given: every storage
//! opened by `Storage::local` or `Storage::s3` shares the process's ([`process_counters`]),
//! which `holdfast -v` prints and `docs/scale.md` is measured with; a test can give its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use serde::Serialize;

use super::backend::{Backend, Properties};
use super::Listed;
use crate::error::Result;

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RequestCounts {
    pub reads: u64,
    pub writes: u64,
    pub deletes: u64,
    pub stats: u64,
    pub lists: u64,
    pub list_pages: u64,
    pub listed_names: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

impl RequestCounts {
    /// Requests an S3 server would bill for.
    pub fn requests(&self) -> u64 {
        self.reads + self.writes + self.deletes + self.stats + self.list_pages
    }
}

#[derive(Debug, Default)]
pub struct Counters {
    reads: AtomicU64,
    writes: AtomicU64,
    deletes: AtomicU64,
    stats: AtomicU64,
    lists: AtomicU64,
    list_pages: AtomicU64,
    listed_names: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> RequestCounts {
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RequestCounts {
            reads: c(&self.reads),
            writes: c(&self.writes),
            deletes: c(&self.deletes),
            stats: c(&self.stats),
            lists: c(&self.lists),
            list_pages: c(&self.list_pages),
            listed_names: c(&self.listed_names),
            bytes_read: c(&self.bytes_read),
            bytes_written: c(&self.bytes_written),
        }
    }
}

fn add(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

/// The counters every storage of this process records into unless given others.
pub fn process_counters() -> Arc<Counters> {
    static PROCESS: OnceLock<Arc<Counters>> = OnceLock::new();
    PROCESS.get_or_init(Default::default).clone()
}

/// The requests of every storage that records into [`process_counters`].
pub fn request_counts() -> RequestCounts {
    process_counters().snapshot()
}

pub struct Counting<B> {
    inner: B,
    counters: Arc<Counters>,
}

impl<B: Backend> Counting<B> {
    pub fn new(inner: B, counters: Arc<Counters>) -> Self {
        Counting { inner, counters }
    }
}

impl<B: Backend> Backend for Counting<B> {
    fn properties(&self) -> Properties {
        self.inner.properties()
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        add(&self.counters.reads, 1);
        let b = self.inner.read(path)?;
        add(&self.counters.bytes_read, b.len() as u64);
        Ok(b)
    }

    fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        add(&self.counters.reads, 1);
        let b = self.inner.read_range(path, offset, len)?;
        add(&self.counters.bytes_read, b.len() as u64);
        Ok(b)
    }

    fn read_many(&self, paths: &[String]) -> Vec<Result<Vec<u8>>> {
        add(&self.counters.reads, paths.len() as u64);
        let out = self.inner.read_many(paths);
        let bytes: usize = out.iter().flatten().map(Vec::len).sum();
        add(&self.counters.bytes_read, bytes as u64);
        out
    }

    fn write(&self, path: &str, bytes: Vec<u8>) -> Result<Option<Vec<u8>>> {
        add(&self.counters.writes, 1);
        add(&self.counters.bytes_written, bytes.len() as u64);
        self.inner.write(path, bytes)
    }

    fn delete(&self, path: &str) -> Result<()> {
        add(&self.counters.deletes, 1);
        self.inner.delete(path)
    }

    fn exists(&self, path: &str) -> Result<bool> {
        add(&self.counters.stats, 1);
        self.inner.exists(path)
    }

    fn list(&self, dir: &str) -> Result<Vec<Listed>> {
        add(&self.counters.lists, 1);
        let entries = self.inner.list(dir)?;
        add(
            &self.counters.list_pages,
            (entries.len() as u64).div_ceil(1000).max(1),
        );
        add(&self.counters.listed_names, entries.len() as u64);
        Ok(entries)
    }

    fn mode(&self, path: &str) -> Option<u32> {
        self.inner.mode(path)
    }
}
