//! A dry run over any backend: reads go to the real store, writes and deletes are kept in
//! memory and shown to later reads and listings of the same run, so an operation runs to its
//! end (and reports what it would store) while the repository stays exactly as it was.
//!
//! [`DryRun::packs_as_sizes`] keeps of packs only their size: a dry-run backup of a terabyte
//! must not hold a terabyte in memory, and nothing in a backup reads back a pack it wrote; a
//! read of one is then an error that says so. (That variant is not a faithful store, so the
//! conformance suite runs on the plain one.)

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use super::backend::{Backend, Properties};
use super::layout;
use super::memory::Memory;
use super::Listed;
use crate::error::{Error, Result};

pub struct DryRun<B> {
    inner: B,
    written: Memory,
    /// Packs written by the run, their sizes only (with `packs_as_sizes`).
    packs: Mutex<HashMap<String, u64>>,
    packs_as_sizes: bool,
    deleted: Mutex<HashSet<String>>,
}

impl<B: Backend> DryRun<B> {
    pub fn new(inner: B) -> Self {
        DryRun {
            inner,
            written: Memory::new(),
            packs: Mutex::new(HashMap::new()),
            packs_as_sizes: false,
            deleted: Mutex::new(HashSet::new()),
        }
    }

    /// As [`Self::new`], keeping only the size of each pack written.
    pub fn packs_as_sizes(inner: B) -> Self {
        DryRun {
            packs_as_sizes: true,
            ..Self::new(inner)
        }
    }

    fn packs(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.packs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The error for a read of a pack this run wrote (whose bytes were not kept), if it is one.
    fn unkept(&self, path: &str) -> Option<Error> {
        self.packs().contains_key(path).then(|| {
            Error::Invalid(format!(
                "{path}: written by this dry run, which keeps no pack data"
            ))
        })
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
        if let Some(e) = self.unkept(path) {
            return Err(e);
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
        if let Some(e) = self.unkept(path) {
            return Err(e);
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
                if let Some(e) = self.unkept(p) {
                    return Some(Err(e));
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
        if self.packs_as_sizes && path.starts_with(layout::DATA) {
            self.packs().insert(path.to_string(), bytes.len() as u64);
            return Ok(Some(bytes));
        }
        self.written.write(path, bytes)
    }

    fn delete(&self, path: &str) -> Result<()> {
        self.packs().remove(path);
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
        Ok(self.packs().contains_key(path)
            || self.written.exists(path)?
            || self.inner.exists(path)?)
    }

    fn list(&self, dir: &str) -> Result<Vec<Listed>> {
        let mut out: Vec<Listed> = self
            .inner
            .list(dir)?
            .into_iter()
            .filter(|l| !self.is_deleted(&l.path))
            .collect();
        let mut mine = self.written.list(dir)?;
        mine.extend(
            self.packs()
                .iter()
                .filter(|(p, _)| p.starts_with(dir))
                .map(|(p, size)| Listed {
                    path: p.clone(),
                    name: p.rsplit('/').next().unwrap_or("").to_string(),
                    modified: Some(std::time::SystemTime::now()),
                    size: Some(*size),
                }),
        );
        let names: HashSet<String> = mine.iter().map(|l| l.path.clone()).collect();
        out.retain(|l| !names.contains(&l.path));
        out.extend(mine);
        Ok(out)
    }

    fn mode(&self, path: &str) -> Option<u32> {
        self.inner.mode(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_as_sizes_keeps_sizes_and_refuses_reads() {
        let dry = DryRun::packs_as_sizes(Memory::new());
        let back = dry.write("data/ab/abcd", vec![7; 1000]).unwrap();
        assert_eq!(back.map(|b| b.len()), Some(1000), "the buffer comes back");
        assert!(dry.exists("data/ab/abcd").unwrap());
        let listed = dry.list("data/").unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].size, Some(1000));
        let e = dry.read("data/ab/abcd").unwrap_err().to_string();
        assert!(e.contains("keeps no pack data"), "{e}");
        // Everything else is kept whole.
        dry.write("index/01", b"index".to_vec()).unwrap();
        assert_eq!(dry.read("index/01").unwrap(), b"index");
        dry.delete("data/ab/abcd").unwrap();
        assert!(!dry.exists("data/ab/abcd").unwrap());
        assert!(dry.list("data/").unwrap().is_empty());
    }
}
