//! A repository held in memory: for tests of the core that need no disk, and as the overlay
//! of the dry-run decorator.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::SystemTime;

use super::backend::{Backend, Properties};
use super::Listed;
use crate::error::{Error, Result};

#[derive(Default)]
pub struct Memory {
    objects: Mutex<BTreeMap<String, (Vec<u8>, SystemTime)>>,
}

impl Memory {
    pub fn new() -> Memory {
        Memory::default()
    }

    fn objects(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (Vec<u8>, SystemTime)>> {
        // A panic while holding the lock leaves the map whole: every operation is one call.
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Backend for Memory {
    fn properties(&self) -> Properties {
        Properties {
            high_latency: false,
            has_folders: true,
            temp_files: false,
        }
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        self.objects()
            .get(path)
            .map(|(b, _)| b.clone())
            .ok_or_else(|| Error::NotFound(path.to_string()))
    }

    fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let objects = self.objects();
        let (bytes, _) = objects
            .get(path)
            .ok_or_else(|| Error::NotFound(path.to_string()))?;
        let end = offset.checked_add(len).filter(|e| *e <= bytes.len() as u64);
        match end {
            Some(end) => Ok(bytes[offset as usize..end as usize].to_vec()),
            None => Err(Error::corrupt(
                path,
                format!(
                    "short read: wanted {len} bytes at {offset} of {}",
                    bytes.len()
                ),
            )),
        }
    }

    fn write(&self, path: &str, bytes: Vec<u8>) -> Result<Option<Vec<u8>>> {
        self.objects()
            .insert(path.to_string(), (bytes, SystemTime::now()));
        Ok(None)
    }

    fn delete(&self, path: &str) -> Result<()> {
        self.objects().remove(path);
        Ok(())
    }

    fn exists(&self, path: &str) -> Result<bool> {
        Ok(self.objects().contains_key(path))
    }

    fn list(&self, dir: &str) -> Result<Vec<Listed>> {
        Ok(self
            .objects()
            .range(dir.to_string()..)
            .take_while(|(k, _)| k.starts_with(dir))
            .map(|(k, (b, t))| Listed {
                path: k.clone(),
                name: k.rsplit('/').next().unwrap_or("").to_string(),
                modified: Some(*t),
                size: Some(b.len() as u64),
            })
            .collect())
    }
}
