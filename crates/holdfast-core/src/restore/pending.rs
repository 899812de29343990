//! A restored file is written under a temporary name beside its real one and renamed into
//! place only once complete.
//!
//! A restore that fails part-way (full disk, damaged pack, interrupt) then never leaves a
//! partly written file under a real name, where it would pass for restored content, and
//! `--overwrite` never removes a file before its replacement is whole: the rename swaps them
//! in one step, which also means a program reading the target never sees half a file.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Prefix of the temporary names; documented, since a restore killed with SIGKILL leaves
/// such files behind.
pub const TEMP_PREFIX: &str = ".holdfast-restore-";

/// A file being restored. Dropped before [`PendingFile::place`] succeeds, it removes its
/// temporary file.
pub struct PendingFile {
    tmp: PathBuf,
    path: PathBuf,
    placed: bool,
}

impl PendingFile {
    /// Creates the temporary file for `path` (new, private, never through a symlink) after
    /// checking that `path` may be written: free, or a non-directory when overwriting.
    pub fn create(path: &Path, overwrite: bool) -> Result<(PendingFile, File)> {
        check_free(path, overwrite)?;
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = path.parent().unwrap_or(Path::new("."));
        loop {
            // A fixed-length name: the real one may already be as long as names can be.
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let tmp = dir.join(format!("{TEMP_PREFIX}{}-{n}", std::process::id()));
            let opened = OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .mode(0o600)
                .open(&tmp);
            match opened {
                Ok(f) => {
                    let pending = PendingFile {
                        tmp,
                        path: path.to_path_buf(),
                        placed: false,
                    };
                    return Ok((pending, f));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io(path, e)),
            }
        }
    }

    /// Where the content is being written.
    pub fn tmp(&self) -> &Path {
        &self.tmp
    }

    /// Renames the complete file to its real name, replacing a file there when overwriting.
    pub fn place(mut self, overwrite: bool) -> Result<()> {
        check_free(&self.path, overwrite)?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, e))?;
        self.placed = true;
        Ok(())
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if !self.placed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Whether a file may be put at `path`: nothing there, or, when overwriting, anything but a
/// directory (a rename replaces a file or a symlink itself, never what a link points to).
fn check_free(path: &Path, overwrite: bool) -> Result<()> {
    match path.symlink_metadata() {
        Err(_) => Ok(()),
        Ok(m) if m.is_dir() => Err(Error::Invalid(format!(
            "{} is a directory in the target where the snapshot has a file",
            path.display()
        ))),
        Ok(_) if overwrite => Ok(()),
        Ok(_) => Err(Error::Invalid(format!("{} already exists", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_before_placing_leaves_neither_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let (pending, _f) = PendingFile::create(&path, false).unwrap();
        let tmp = pending.tmp().to_path_buf();
        assert!(tmp.exists());
        drop(pending);
        assert!(!tmp.exists() && !path.exists());
    }

    #[test]
    fn placing_replaces_only_when_overwriting_and_never_a_directory() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "old").unwrap();
        assert!(PendingFile::create(&path, false).is_err());
        let (pending, mut f) = PendingFile::create(&path, true).unwrap();
        f.write_all(b"new").unwrap();
        // Until placed, the old file is untouched.
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        pending.place(true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        let sub = dir.path().join("d");
        std::fs::create_dir(&sub).unwrap();
        assert!(PendingFile::create(&sub, true).is_err());
    }
}
