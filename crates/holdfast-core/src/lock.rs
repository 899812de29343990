//! Repository locks: shared for adding data, exclusive for anything that deletes.
//!
//! A lock is an object in `locks/` naming host, pid and time. Object stores offer no atomic
//! test-and-set, so taking a lock is: look for conflicting live locks, write ours, look again;
//! if a conflicting one appeared in between, withdraw ours and fail (two racing writers both
//! back off, never both proceed). A lock is stale, and ignored, when its process is gone (same
//! host, dead pid) or it was not refreshed for [`STALE_AFTER`]; holders refresh every
//! [`REFRESH_EVERY`] by writing a new lock object and deleting the old one (objects are never
//! modified in place).
//!
//! "Not refreshed" is judged by when the storage says the lock object was written (the local
//! filesystem's or the object store's own clock), never by the time the holder wrote into it:
//! a host whose clock runs fast would otherwise write locks that never go stale, and one whose
//! clock runs slow locks that look stale while their holder is alive.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::host;
use crate::id::LockId;
use crate::storage::{layout, Storage};

pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LockInfo {
    pub time: DateTime<Utc>,
    pub exclusive: bool,
    pub hostname: String,
    pub username: String,
    pub pid: u32,
    pub command: String,
}

/// How long ago the storage says an object was written; `None` when it does not say, or says
/// a time ahead of this host's clock.
fn written_ago(written: Option<SystemTime>) -> Option<Duration> {
    written.and_then(|w| SystemTime::now().duration_since(w).ok())
}

impl LockInfo {
    /// Stale: its process is gone (this host), or the object was written longer than
    /// [`STALE_AFTER`] ago by the storage's clock (`written`). The time inside the lock is
    /// only used when the storage gives no time at all.
    pub fn is_stale(&self, written: Option<SystemTime>) -> bool {
        if self.hostname == host::hostname() && !host::pid_alive(self.pid) {
            return true;
        }
        let age = match written {
            Some(_) => written_ago(written),
            None => Utc::now().signed_duration_since(self.time).to_std().ok(),
        };
        age.is_some_and(|a| a > STALE_AFTER)
    }

    pub fn describe(&self, written: Option<SystemTime>) -> String {
        let refreshed = match written_ago(written) {
            Some(a) => format!("last refreshed {} min ago", a.as_secs() / 60),
            None => format!("written at {}", self.time.format("%Y-%m-%d %H:%M:%S UTC")),
        };
        format!(
            "{} by {} (pid {} on {}, {}, {refreshed}); `holdfast unlock` removes it once it \
             is stale (its process gone, or not refreshed for {} minutes); if you are sure \
             that process is gone, `holdfast unlock --all` removes it now",
            if self.exclusive {
                "exclusively"
            } else {
                "shared"
            },
            self.command,
            self.pid,
            self.hostname,
            self.username,
            STALE_AFTER.as_secs() / 60
        )
    }
}

/// One lock object: where, what it says (`None` when unreadable), and when the storage says
/// it was written.
#[derive(Debug, Clone, Serialize)]
pub struct ListedLock {
    pub path: String,
    pub lock: Option<LockInfo>,
    #[serde(skip)]
    pub written: Option<SystemTime>,
    /// Whether it would be ignored (and removed by `unlock`).
    pub stale: bool,
}

/// Every lock in the repository, unreadable ones included with `lock: None`.
pub fn list_locks(storage: &Storage) -> Result<Vec<ListedLock>> {
    let mut out = Vec::new();
    for l in storage.list(layout::LOCKS)? {
        let info: Option<LockInfo> = match storage.read(&l.path) {
            Ok(b) => serde_json::from_slice(&b).ok(),
            Err(Error::NotFound(_)) => continue,
            Err(e) => return Err(e),
        };
        let stale = info
            .as_ref()
            .map(|i| i.is_stale(l.modified))
            .unwrap_or(true);
        out.push(ListedLock {
            path: l.path,
            lock: info,
            written: l.modified,
            stale,
        });
    }
    Ok(out)
}

/// A held lock; released on drop.
pub struct LockGuard {
    storage: Storage,
    current: Arc<Mutex<String>>,
    /// Dropping it wakes the refresher at once (a sleeping refresher delayed the end of
    /// every command by up to its tick).
    stop: Option<Sender<()>>,
    refreshed: Arc<Mutex<std::time::Instant>>,
    /// Set for good when the refresher found this lock removed by someone else.
    lost: Arc<AtomicBool>,
    refresher: Option<std::thread::JoinHandle<()>>,
}

impl LockGuard {
    pub fn acquire(storage: &Storage, exclusive: bool, command: &str) -> Result<LockGuard> {
        Self::acquire_refreshing(storage, exclusive, command, REFRESH_EVERY)
    }

    fn acquire_refreshing(
        storage: &Storage,
        exclusive: bool,
        command: &str,
        every: Duration,
    ) -> Result<LockGuard> {
        let conflict = |storage: &Storage, own: Option<&str>| -> Result<Option<String>> {
            for l in list_locks(storage)? {
                if Some(l.path.as_str()) == own {
                    continue;
                }
                // An unreadable lock is ignored here (and removed by `unlock`): it cannot name
                // a holder, and letting it block would let any stray file stop every backup.
                if let Some(info) = &l.lock {
                    if !l.stale && (exclusive || info.exclusive) {
                        return Ok(Some(info.describe(l.written)));
                    }
                }
            }
            Ok(None)
        };
        if let Some(d) = conflict(storage, None)? {
            return Err(Error::Locked(d));
        }
        let path = write_lock(storage, exclusive, command)?;
        if let Some(d) = conflict(storage, Some(&path))? {
            let _ = storage.delete(&path);
            return Err(Error::Locked(d));
        }
        let current = Arc::new(Mutex::new(path));
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let refreshed = Arc::new(Mutex::new(std::time::Instant::now()));
        let lost = Arc::new(AtomicBool::new(false));
        let refresher = {
            let (storage, current, command, refreshed, lost) = (
                storage.clone(),
                current.clone(),
                command.to_string(),
                refreshed.clone(),
                lost.clone(),
            );
            std::thread::spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    match refresh(&storage, &current, exclusive, &command) {
                        Ok(true) => *refreshed.lock().unwrap() = std::time::Instant::now(),
                        // Removed under us (`unlock --all`, or judged stale): writing a new
                        // lock would hide that from the checks before every commit.
                        Ok(false) => {
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                        Err(_) => {} // tried again next tick; too many misses make it stale
                    }
                }
            })
        };
        Ok(LockGuard {
            storage: storage.clone(),
            current,
            stop: Some(stop),
            refreshed,
            lost,
            refresher: Some(refresher),
        })
    }

    /// Fails if others may by now consider this lock stale (refreshes failed for too long) or
    /// it was removed (`unlock --all`): then a prune may have deleted what this process wrote,
    /// and committing an index or snapshot that refers to it would be wrong.
    pub fn ensure_held(&self) -> Result<()> {
        self.witness().ensure_held()
    }

    /// A handle that other threads can keep to ask whether the lock is still held (a backup's
    /// uploaders, before writing an intermediate index).
    pub fn witness(&self) -> LockWitness {
        LockWitness {
            storage: self.storage.clone(),
            current: self.current.clone(),
            refreshed: self.refreshed.clone(),
            lost: self.lost.clone(),
        }
    }
}

/// Answers [`LockGuard::ensure_held`] from any thread, for as long as the guard lives; after the
/// guard is dropped the lock file is gone and the answer is an error.
#[derive(Clone)]
pub struct LockWitness {
    storage: Storage,
    current: Arc<Mutex<String>>,
    refreshed: Arc<Mutex<std::time::Instant>>,
    lost: Arc<AtomicBool>,
}

impl LockWitness {
    /// See [`LockGuard::ensure_held`].
    pub fn ensure_held(&self) -> Result<()> {
        let age = self.refreshed.lock().unwrap().elapsed();
        if age + REFRESH_EVERY > STALE_AFTER {
            return Err(Error::Locked(format!(
                "by nobody: this process could not refresh its lock for {} minutes, so others may have taken over; nothing was committed",
                age.as_secs() / 60
            )));
        }
        let path = self.current.lock().unwrap().clone();
        // A refresh may have replaced the lock between reading its name and asking for it.
        let held = !self.lost.load(Ordering::SeqCst)
            && (self.storage.exists(&path)? || {
                let now = self.current.lock().unwrap().clone();
                now != path && self.storage.exists(&now)?
            });
        if !held {
            return Err(Error::Locked(format!(
                "by nobody: this process's lock {path} was removed (unlock --all?), so a prune may have run; nothing was committed"
            )));
        }
        Ok(())
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
        let path = self.current.lock().unwrap().clone();
        let _ = self.storage.delete(&path);
    }
}

/// Replaces the held lock `current` with a fresh one; `Ok(false)` when the held one is gone
/// (then nothing is left behind). The old lock is checked before and after the new one is
/// written: a removal that lands after the second check also finds the new lock, which then
/// keeps any exclusive locker out as the old one did.
fn refresh(
    storage: &Storage,
    current: &Mutex<String>,
    exclusive: bool,
    command: &str,
) -> Result<bool> {
    let old = current.lock().unwrap().clone();
    if !storage.exists(&old)? {
        return Ok(false);
    }
    let new = write_lock(storage, exclusive, command)?;
    if !storage.exists(&old)? {
        let _ = storage.delete(&new);
        return Ok(false);
    }
    *current.lock().unwrap() = new;
    let _ = storage.delete(&old);
    Ok(true)
}

fn write_lock(storage: &Storage, exclusive: bool, command: &str) -> Result<String> {
    let info = LockInfo {
        time: Utc::now(),
        exclusive,
        hostname: host::hostname(),
        username: host::username(),
        pid: std::process::id(),
        command: command.to_string(),
    };
    let path = format!("{}{}", layout::LOCKS, LockId::random().to_hex());
    storage.write(&path, serde_json::to_vec(&info).expect("lock serialises"))?;
    Ok(path)
}

/// Removes stale locks, or every lock with `all`; returns the paths removed.
pub fn unlock(storage: &Storage, all: bool) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for l in list_locks(storage)? {
        if all || l.stale {
            storage.delete(&l.path)?;
            removed.push(l.path);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lock removed by someone else (`unlock --all`) must stay lost: the refresher used to
    /// write a new one at its next tick, and the check before a commit then passed again.
    #[test]
    fn a_removed_lock_is_not_brought_back_by_its_refresher() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(&dir.path().join("repo"), true).unwrap();
        let guard =
            LockGuard::acquire_refreshing(&storage, false, "test", Duration::from_millis(20))
                .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        guard.ensure_held().expect("held while refreshed");
        assert_eq!(
            list_locks(&storage).unwrap().len(),
            1,
            "refreshing replaces, never adds"
        );
        unlock(&storage, true).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            guard.ensure_held().is_err(),
            "still reported held after removal"
        );
        assert!(
            list_locks(&storage).unwrap().is_empty(),
            "the refresher wrote the removed lock back"
        );
    }
}
