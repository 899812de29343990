//! Files only their owner may read: caches, state, run logs and database dumps.
//!
//! They hold decrypted metadata (file names, snapshot contents) or whole databases, and the
//! default umask 022 would make them world-readable. Modes are set explicitly, so the result
//! is 0600 files in 0700 folders whatever the umask, as restic and borg do.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of every file holdfast creates in a repository, cache or state folder.
pub const FILE_MODE: u32 = 0o600;
/// Mode of every folder it creates there.
pub const DIR_MODE: u32 = 0o700;

/// Creates `dir` and any missing parents, each 0700. Folders that already exist keep their
/// mode: a configured log or state folder may be shared (`/var/log`), and is the
/// administrator's to set.
pub fn create_dir_all(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
}

/// Opens `path` for writing (created 0600, or truncated and made 0600).
pub fn create(path: &Path) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
    Ok(f)
}

/// Opens `path` for appending (created 0600; an existing one is made 0600).
pub fn append(path: &Path) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)?;
    if f.metadata()?.permissions().mode() & 0o077 != 0 {
        f.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
    }
    Ok(f)
}

/// Writes `bytes` to `path` (0600).
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    create(path)?.write_all(bytes)
}

/// Replaces `path` with `bytes` (0600) so that a crash leaves the old content or the new,
/// never a torn file, and the new one survives a power cut: temp file beside it, fsync,
/// rename, fsync of the folder. For state that decides what a later run may do.
pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut f = create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_whatever_the_umask() {
        let old = unsafe { libc::umask(0o022) };
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("a/b");
        create_dir_all(&dir).unwrap();
        write(&dir.join("f"), b"x").unwrap();
        append(&dir.join("g")).unwrap();
        unsafe { libc::umask(old) };
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&d.path().join("a")), 0o700);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("f")), 0o600);
        assert_eq!(mode(&dir.join("g")), 0o600);
        // An existing folder keeps its mode; an existing world-readable file is tightened
        // when it is written again.
        let shared = d.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
        create_dir_all(&shared).unwrap();
        assert_eq!(mode(&shared), 0o755);
        std::fs::set_permissions(dir.join("f"), std::fs::Permissions::from_mode(0o644)).unwrap();
        write(&dir.join("f"), b"y").unwrap();
        assert_eq!(mode(&dir.join("f")), 0o600);
    }
}
