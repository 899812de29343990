//! Failures on demand, over any backend: the Nth write or read fails, every write after the
//! Nth fails (a disk that filled up), or each request is delayed (a slow link). Tests use it
//! to prove that an interrupted operation leaves every earlier snapshot intact, without
//! needing a full disk or a flaky network.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::backend::{Backend, Properties};
use super::Listed;
use crate::error::{Error, Result};

/// What to break. Counts start at 1 and cover the requests made through this decorator.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// This write fails (only this one).
    pub fail_write: Option<u64>,
    /// Every write after this many fails.
    pub fail_writes_after: Option<u64>,
    /// Only writes whose path starts with this are counted and failed ("snapshots/").
    pub writes_under: Option<String>,
    /// This read (whole or ranged) fails, as a dropped connection would.
    pub fail_read: Option<u64>,
    /// Every request waits this long first.
    pub delay: Option<Duration>,
}

pub struct FaultInjecting<B> {
    inner: B,
    faults: Faults,
    writes: AtomicU64,
    reads: AtomicU64,
}

impl<B: Backend> FaultInjecting<B> {
    pub fn new(inner: B, faults: Faults) -> Self {
        FaultInjecting {
            inner,
            faults,
            writes: AtomicU64::new(0),
            reads: AtomicU64::new(0),
        }
    }

    fn wait(&self) {
        if let Some(d) = self.faults.delay {
            std::thread::sleep(d);
        }
    }

    fn injected(op: &str, path: &str, n: u64) -> Error {
        Error::io(
            path,
            std::io::Error::other(format!("injected fault: {op} number {n} fails")),
        )
    }

    fn before_read(&self, path: &str) -> Result<()> {
        self.wait();
        let n = self.reads.fetch_add(1, Ordering::SeqCst) + 1;
        if self.faults.fail_read == Some(n) {
            return Err(Self::injected("read", path, n));
        }
        Ok(())
    }
}

impl<B: Backend> Backend for FaultInjecting<B> {
    fn properties(&self) -> Properties {
        self.inner.properties()
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        self.before_read(path)?;
        self.inner.read(path)
    }

    fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.before_read(path)?;
        self.inner.read_range(path, offset, len)
    }

    fn write(&self, path: &str, bytes: Vec<u8>) -> Result<Option<Vec<u8>>> {
        self.wait();
        let counted = self
            .faults
            .writes_under
            .as_deref()
            .is_none_or(|p| path.starts_with(p));
        if counted {
            let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
            if self.faults.fail_write == Some(n)
                || self.faults.fail_writes_after.is_some_and(|after| n > after)
            {
                return Err(Self::injected("write", path, n));
            }
        }
        self.inner.write(path, bytes)
    }

    fn delete(&self, path: &str) -> Result<()> {
        self.wait();
        self.inner.delete(path)
    }

    fn exists(&self, path: &str) -> Result<bool> {
        self.wait();
        self.inner.exists(path)
    }

    fn list(&self, dir: &str) -> Result<Vec<Listed>> {
        self.wait();
        self.inner.list(dir)
    }

    fn mode(&self, path: &str) -> Option<u32> {
        self.inner.mode(path)
    }
}
