//! A restored file is written under a temporary name beside its real one and renamed into
//! place only once complete; links and special files are made the same way.
//!
//! A restore that fails part-way (full disk, damaged pack, interrupt) then never leaves a
//! partly written file under a real name, where it would pass for restored content, and
//! `--overwrite` never removes a file before its replacement is whole: the rename swaps them
//! in one step, which also means a program reading the target never sees half a file.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Prefix of the temporary names; documented, since a restore killed with SIGKILL leaves
/// such files behind.
const TEMP_PREFIX: &str = ".holdfast-restore-";

/// A file being restored. Dropped before [`PendingFile::place`] succeeds, it removes its
/// temporary file.
pub struct PendingFile {
    tmp: PathBuf,
    path: PathBuf,
    /// Device and inode of the temporary file, checked before it is renamed.
    inode: (u64, u64),
    placed: bool,
}

impl PendingFile {
    /// Creates the temporary file for `path` (new, private, never through a symlink) after
    /// checking that `path` may be written: free, or a non-directory when overwriting.
    pub fn create(path: &Path, overwrite: bool) -> Result<(PendingFile, File)> {
        // Without overwriting, the target was empty when the restore began, and the rename
        // refuses a taken name by itself.
        if overwrite {
            check_free(path, overwrite)?;
        }
        loop {
            let tmp = temp_beside(path);
            // Readable too: `--verify` reads the content back before the file is placed.
            let opened = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .mode(0o600)
                .open(&tmp);
            match opened {
                Ok(f) => {
                    let meta = f.metadata().map_err(|e| Error::io(path, e))?;
                    let pending = PendingFile {
                        tmp,
                        path: path.to_path_buf(),
                        inode: (meta.dev(), meta.ino()),
                        placed: false,
                    };
                    return Ok((pending, f));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io(path, e)),
            }
        }
    }

    /// Device and inode of the temporary file, for checking that a path still names it.
    pub fn inode(&self) -> (u64, u64) {
        self.inode
    }

    /// Where the content is being written.
    pub fn tmp(&self) -> &Path {
        &self.tmp
    }

    /// Renames the complete file to its real name, replacing a file there when overwriting;
    /// without `overwrite`, a name taken since [`PendingFile::create`] is an error, never
    /// replaced.
    pub fn place(mut self, overwrite: bool) -> Result<()> {
        if overwrite {
            check_free(&self.path, overwrite)?;
        }
        let still_ours = self
            .tmp
            .symlink_metadata()
            .is_ok_and(|m| m.is_file() && (m.dev(), m.ino()) == self.inode);
        if !still_ours {
            return Err(Error::Invalid(format!(
                "{}: its temporary file {} was replaced while the restore was writing it; restore again into a directory nobody else writes to",
                self.path.display(),
                self.tmp.display()
            )));
        }
        rename(&self.tmp, &self.path, overwrite).map_err(|e| placing_failed(&self.path, e))?;
        self.placed = true;
        Ok(())
    }
}

/// Puts an entry that has no content to write (a hard link, a symlink, a FIFO or device
/// node) at `path` the same way: `create` makes it under a temporary name, which is then
/// renamed, so that `--overwrite` never removes what is there before its replacement exists.
/// The outer error is about the place (taken, a directory, the rename); the inner one is
/// `create`'s, for the caller to judge (a device node that cannot be made is a warning).
pub fn put_entry<E>(
    path: &Path,
    overwrite: bool,
    create: impl FnOnce(&Path) -> std::result::Result<(), E>,
) -> Result<std::result::Result<(), E>> {
    if overwrite {
        check_free(path, overwrite)?;
    }
    let tmp = temp_beside(path);
    if let Err(e) = create(&tmp) {
        return Ok(Err(e));
    }
    let renamed = rename(&tmp, path, overwrite);
    // Renaming a hard link onto another link of the same file succeeds and does nothing:
    // the temporary name must go in that case too.
    if renamed.is_err() || tmp.symlink_metadata().is_ok() {
        let _ = std::fs::remove_file(&tmp);
    }
    renamed.map_err(|e| placing_failed(path, e))?;
    Ok(Ok(()))
}

/// A new name beside `path`: random, so that it never meets a name in the snapshot (which
/// may hold files left by a killed restore) or another restore's; of fixed length, since the
/// real name may already be as long as names can be.
fn temp_beside(path: &Path) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new("."));
    dir.join(format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>()))
}

fn placing_failed(path: &Path, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::AlreadyExists => {
            Error::Invalid(format!("{} already exists", path.display()))
        }
        _ => Error::io(path, e),
    }
}

/// `rename`, refusing to replace anything unless `overwrite`: atomically where the file system
/// can tell, else by looking first.
fn rename(from: &Path, to: &Path, overwrite: bool) -> std::io::Result<()> {
    if !overwrite {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            use nix::fcntl::{renameat2, RenameFlags};
            match renameat2(None, from, None, to, RenameFlags::RENAME_NOREPLACE) {
                Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOSYS) => {}
                other => return other.map_err(std::io::Error::from),
            }
        }
        if to.symlink_metadata().is_ok() {
            return Err(std::io::ErrorKind::AlreadyExists.into());
        }
    }
    std::fs::rename(from, to)
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
    fn a_name_taken_after_creation_is_not_replaced_without_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let (pending, _f) = PendingFile::create(&path, false).unwrap();
        std::fs::write(&path, "someone else's").unwrap();
        let e = pending.place(false).unwrap_err().to_string();
        assert!(e.contains("already exists"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"someone else's");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn entries_replace_only_once_made_and_leave_no_temporary_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("link");
        std::fs::write(&path, "old").unwrap();
        // Making the entry fails: what was there stays.
        let failed = put_entry(&path, true, |_| Err("cannot")).unwrap();
        assert_eq!(failed, Err("cannot"));
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        // Without --overwrite the place must be free.
        assert!(put_entry(&path, false, |t| std::os::unix::fs::symlink("x", t)).is_err());
        put_entry(&path, true, |t| std::os::unix::fs::symlink("x", t))
            .unwrap()
            .unwrap();
        assert_eq!(std::fs::read_link(&path).unwrap(), Path::new("x"));
        // A hard link onto another link of the same file.
        let file = dir.path().join("file");
        std::fs::write(&file, "f").unwrap();
        std::fs::hard_link(&file, dir.path().join("twin")).unwrap();
        put_entry(&dir.path().join("twin"), true, |t| {
            std::fs::hard_link(&file, t)
        })
        .unwrap()
        .unwrap();
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["file", "link", "twin"]);
    }

    #[test]
    fn a_swapped_temporary_file_is_not_placed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let (pending, _f) = PendingFile::create(&path, true).unwrap();
        std::fs::remove_file(pending.tmp()).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", pending.tmp()).unwrap();
        let e = pending.place(true).unwrap_err().to_string();
        assert!(e.contains("was replaced"), "{e}");
        assert!(path.symlink_metadata().is_err());
    }

    #[test]
    fn placing_replaces_only_when_overwriting_and_never_a_directory() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "old").unwrap();
        // Without overwriting, the taken name is refused (when placing) and kept.
        let (pending, _f) = PendingFile::create(&path, false).unwrap();
        assert!(pending.place(false).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
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
