//! One run of an application's procedure at a time, per host.
//!
//! The repository lock keeps prune away from a backup, but two runs of the same
//! application's procedure (a timer and an operator, or two timers) can interleave their
//! stops and starts: one starts the service while the other is still reading the data
//! directory. This lock is held from the preflight to the end of a backup, an upgrade or an
//! in-place restore: an flock on a file in the state directory, released by the kernel
//! whatever happens to the process. Nested calls in one process (an upgrade's own backup)
//! share it.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use crate::error::{Error, Result};

/// Application locks this process holds, by application and thread: only the thread that
/// holds one may nest (an upgrade's own backup), never another thread of the process.
static HELD: Mutex<Option<HashSet<(String, std::thread::ThreadId)>>> = Mutex::new(None);

/// Held while alive.
pub struct AppLock {
    name: String,
    /// The locked file (`None` for a nested acquisition in the same process).
    file: Option<nix::fcntl::Flock<std::fs::File>>,
}

impl AppLock {
    /// Takes the lock of application `app` (`STATE_DIR/locks/app-NAME.lock`), or fails at once
    /// naming the process that holds it.
    pub fn acquire(state_dir: &Path, app: &str, what: &str) -> Result<AppLock> {
        let mut held = HELD.lock().unwrap();
        let held = held.get_or_insert_with(HashSet::new);
        let key = (app.to_string(), std::thread::current().id());
        if held.contains(&key) {
            return Ok(AppLock {
                name: app.to_string(),
                file: None,
            });
        }
        let dir = state_dir.join("locks");
        let io = |e: std::io::Error| Error::Core(holdfast_core::Error::io(&dir, e));
        holdfast_core::private::create_dir_all(&dir).map_err(io)?;
        let path = dir.join(format!("app-{app}.lock"));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let mut locked =
            match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
                Ok(l) => l,
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                    let holder = std::fs::read_to_string(&path).unwrap_or_default();
                    return Err(Error::Busy {
                        app: app.to_string(),
                        why: format!(
                            "its procedure is already running here ({}); one run at a time, so \
                         that their stops and starts cannot interleave",
                            holder.trim()
                        ),
                    });
                }
                Err((_, e)) => return Err(io(e.into())),
            };
        let _ = locked.set_len(0);
        let _ = writeln!(
            &mut *locked,
            "pid {}, {what}, since {}",
            std::process::id(),
            chrono::Local::now().format("%Y-%m-%d %H:%M:%S")
        );
        held.insert(key);
        Ok(AppLock {
            name: app.to_string(),
            file: Some(locked),
        })
    }
}

impl Drop for AppLock {
    fn drop(&mut self) {
        if self.file.is_some() {
            // Forgotten first, then released: no moment where this process claims a lock
            // the kernel no longer gives it.
            if let Some(h) = HELD.lock().unwrap().as_mut() {
                h.remove(&(self.name.clone(), std::thread::current().id()));
            }
            drop(self.file.take());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_per_app_and_nested_calls_share_it() {
        let d = tempfile::tempdir().unwrap();
        let a = AppLock::acquire(d.path(), "design", "backup").unwrap();
        let nested = AppLock::acquire(d.path(), "design", "backup").unwrap();
        drop(nested);
        // Another process (here: a child) cannot take it while it is held.
        let path = d.path().join("locks/app-design.lock");
        let st = std::process::Command::new("flock")
            .args(["-n", path.to_str().unwrap(), "true"])
            .status()
            .unwrap();
        assert!(!st.success(), "a second holder got the lock");
        let other = AppLock::acquire(d.path(), "govern", "backup");
        assert!(other.is_ok(), "applications lock separately");
        // Another thread of this process does not nest: it is refused like another process.
        let p = d.path().to_path_buf();
        let from_thread =
            std::thread::spawn(move || AppLock::acquire(&p, "design", "run").is_err())
                .join()
                .unwrap();
        assert!(from_thread, "another thread got a lock it does not hold");
        drop(a);
        let st = std::process::Command::new("flock")
            .args(["-n", path.to_str().unwrap(), "true"])
            .status()
            .unwrap();
        assert!(st.success(), "released on drop");
    }
}
