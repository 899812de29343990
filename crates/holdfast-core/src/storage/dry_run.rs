//! A dry run over any backend: reads go to the real store, writes and deletes are kept in
//! memory and shown to later reads and listings of the same run, so an operation runs to its
//! end (and reports what it would store) while the repository stays exactly as it was.

use std::collections::HashSet;
use std::sync::Mutex;

use super::backend::{Backend, Properties};
use super::memory::Memory;
use super::Listed;
use crate::error::{Error, Result};

pub struct DryRun<B> {
    inner: B,
    written: Memory,
    deleted: Mutex<HashSet<String>>,
}

impl<B: Backend> DryRun<B> {
    pub fn new(inner: B) -> Self {
        DryRun {
            inner,
            written: Memory::new(),
            deleted: Mutex::new(HashSet::new()),
        }
    }

    fn is_deleted(&self, path: &str) -> bool {
        self.deleted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(path)
    }
}

impl<B: Backend> Backend for DryRun<B> {
    fn properties(&self) -> Properties {
        Properties {
            temp_files: false,
            ..self.inner.properties()
        }
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        if self.is_deleted(path) {
            return Err(Error::NotFound(path.to_string()));
        }
        match self.written.read(path) {
            Err(Error::NotFound(_)) => self.inner.read(path),
            other => other,
        }
    }

    fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        if self.is_deleted(path) {
            return Err(Error::NotFound(path.to_string()));
        }
        match self.written.read_range(path, offset, len) {
            Err(Error::NotFound(_)) => self.inner.read_range(path, offset, len),
            other => other,
        }
    }

    /// What the run wrote or deleted is answered here; the rest goes to the store in one
    /// call, so that an object store keeps its requests in flight.
    fn read_many(&self, paths: &[String]) -> Vec<Result<Vec<u8>>> {
        let mut out: Vec<Option<Result<Vec<u8>>>> = paths
            .iter()
            .map(|p| {
                if self.is_deleted(p) {
                    return Some(Err(Error::NotFound(p.clone())));
                }
                match self.written.read(p) {
                    Err(Error::NotFound(_)) => None,
                    other => Some(other),
                }
            })
            .collect();
        let below: Vec<String> = paths
            .iter()
            .zip(&out)
            .filter(|(_, o)| o.is_none())
            .map(|(p, _)| p.clone())
            .collect();
        let mut fetched = self.inner.read_many(&below).into_iter();
        out.iter_mut()
            .map(|o| match o.take() {
                Some(r) => r,
                None => fetched
                    .next()
                    .unwrap_or_else(|| Err(Error::Invalid("short read_many".into()))),
            })
            .collect()
    }

    fn write(&self, path: &str, bytes: Vec<u8>) -> Result<Option<Vec<u8>>> {
        self.deleted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(path);
        self.written.write(path, bytes)
    }

    fn delete(&self, path: &str) -> Result<()> {
        self.written.delete(path)?;
        self.deleted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path.to_string());
        Ok(())
    }

    fn exists(&self, path: &str) -> Result<bool> {
        if self.is_deleted(path) {
            return Ok(false);
        }
        Ok(self.written.exists(path)? || self.inner.exists(path)?)
    }

    fn list(&self, dir: &str) -> Result<Vec<Listed>> {
        let mut out: Vec<Listed> = self
            .inner
            .list(dir)?
            .into_iter()
            .filter(|l| !self.is_deleted(&l.path))
            .collect();
        let mine = self.written.list(dir)?;
        let names: HashSet<String> = mine.iter().map(|l| l.path.clone()).collect();
        out.retain(|l| !names.contains(&l.path));
        out.extend(mine);
        Ok(out)
    }

    fn mode(&self, path: &str) -> Option<u32> {
        self.inner.mode(path)
    }
}
