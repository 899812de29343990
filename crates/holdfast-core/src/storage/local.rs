//! A repository folder on the local filesystem, walked without ever following a symlink.
//!
//! Anyone who can write into the repository could replace `data/ab/` by a link to elsewhere;
//! a path-based `open` would then write packs outside the repository (or delete files there)
//! and report success. Every operation here starts from a descriptor of the repository root
//! and opens each folder below it with `O_NOFOLLOW | O_DIRECTORY`, so a link anywhere on the
//! way is refused with an error naming it. Files are created 0600 and folders 0700 whatever
//! the umask: key files hold everything an offline password guess needs.
//!
//! Writes are temp file in `tmp/` + `fdatasync` + `renameat` + `fsync` of every folder from
//! the object's up to the root, so a crash never leaves a half-written object under its
//! final name, nor an index naming a pack whose rename was lost.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::{fstatat, mkdirat, Mode};
use nix::unistd::{unlinkat, UnlinkatFlags};

use super::backend::{Backend, Properties};
use super::{layout, Listed};
use crate::error::{Error, Result};

use crate::private::{DIR_MODE, FILE_MODE};

#[derive(Debug)]
pub(crate) struct LocalDir {
    root: PathBuf,
    root_fd: OwnedFd,
    open_packs: OpenPacks,
}

/// Packs kept open for reading, most recently used first. A restore reads one chunk at a time,
/// mostly from the same few packs in turn; opening the pack again for every chunk (each folder
/// on the way too, without following links) cost four `openat` and four `close` per chunk.
/// Packs never change once written, and one deleted through this handle is dropped from here
/// first, so a kept descriptor never reads anything but the pack's own bytes.
#[derive(Debug, Default)]
struct OpenPacks(std::sync::Mutex<std::collections::VecDeque<(String, std::sync::Arc<File>)>>);

/// Enough for every thread of a restore to read from a few packs at once.
const OPEN_PACKS: usize = 32;

impl OpenPacks {
    fn get(&self, rel: &str) -> Option<std::sync::Arc<File>> {
        let mut packs = self.0.lock().unwrap();
        let at = packs.iter().position(|(name, _)| name == rel)?;
        let entry = packs.remove(at)?;
        let file = entry.1.clone();
        packs.push_front(entry);
        Some(file)
    }

    fn put(&self, rel: &str, file: std::sync::Arc<File>) {
        let mut packs = self.0.lock().unwrap();
        if !packs.iter().any(|(name, _)| name == rel) {
            packs.push_front((rel.to_string(), file));
            packs.truncate(OPEN_PACKS);
        }
    }

    fn forget(&self, rel: &str) {
        self.0.lock().unwrap().retain(|(name, _)| name != rel);
    }
}

impl LocalDir {
    /// Opens (with `create`, makes, mode 0700) the repository folder.
    pub fn open(path: &Path, create: bool) -> Result<LocalDir> {
        if create {
            crate::private::create_dir_all(path).map_err(|e| Error::io(path, e))?;
        }
        let root = std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
        let fd = openat(
            None,
            &root,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(&root, e.into()))?;
        // SAFETY: openat returned a new descriptor that nothing else owns.
        let root_fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(LocalDir {
            root,
            root_fd,
            open_packs: OpenPacks::default(),
        })
    }

    fn full(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Descriptors of every folder from the root down to `rel` (a folder path, `a/b`), the
    /// root first. Each is opened without following links; with `create`, missing ones are
    /// made 0700. A link on the way is an error naming it.
    fn dir_chain(&self, rel: &str, create: bool) -> Result<Vec<OwnedFd>> {
        let mut chain: Vec<OwnedFd> = vec![self
            .root_fd
            .try_clone()
            .map_err(|e| Error::io(&self.root, e))?];
        let mut walked = String::new();
        for comp in rel.split('/').filter(|c| !c.is_empty()) {
            if !walked.is_empty() {
                walked.push('/');
            }
            walked.push_str(comp);
            let parent = chain.last().unwrap().as_raw_fd();
            let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
            let fd = match openat(Some(parent), comp, flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) if create => {
                    match mkdirat(Some(parent), comp, Mode::from_bits_truncate(DIR_MODE)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(self.errno(&walked, e)),
                    }
                    openat(Some(parent), comp, flags, Mode::empty())
                        .map_err(|e| self.errno(&walked, e))?
                }
                Err(e) => return Err(self.errno(&walked, e)),
            };
            // SAFETY: openat returned a new descriptor that nothing else owns.
            chain.push(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        Ok(chain)
    }

    /// An errno on `rel`, with a followed link (ELOOP, or ENOTDIR where a folder was expected)
    /// turned into a refusal that names it.
    fn errno(&self, rel: &str, e: Errno) -> Error {
        let full = self.full(rel);
        if matches!(e, Errno::ELOOP | Errno::ENOTDIR) {
            if let Ok(m) = std::fs::symlink_metadata(&full) {
                if m.file_type().is_symlink() {
                    return Error::Invalid(format!(
                        "{} is a symbolic link inside the repository: holdfast never follows \
                         links there (replace it with the folder or file it should be)",
                        full.display()
                    ));
                }
            }
        }
        if e == Errno::ENOENT {
            return Error::NotFound(rel.to_string());
        }
        Error::io(full, e.into())
    }

    fn split(rel: &str) -> (&str, &str) {
        rel.rsplit_once('/').unwrap_or(("", rel))
    }

    /// Opens an existing object for reading, without following a link.
    fn open_file(&self, rel: &str) -> Result<File> {
        let (dir, name) = Self::split(rel);
        let chain = self.dir_chain(dir, false).map_err(|e| match e {
            Error::NotFound(_) => Error::NotFound(rel.to_string()),
            e => e,
        })?;
        let fd = openat(
            Some(chain.last().unwrap().as_raw_fd()),
            name,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.errno(rel, e))?;
        // SAFETY: openat returned a new descriptor that nothing else owns.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// A whole object, in one exactly sized buffer.
    pub fn read(&self, rel: &str) -> Result<Vec<u8>> {
        let mut f = self.open_file(rel)?;
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let mut buf = Vec::with_capacity(len as usize);
        f.read_to_end(&mut buf)
            .map_err(|e| Error::io(self.full(rel), e))?;
        Ok(buf)
    }

    /// `len` bytes at `offset` (a blob of a pack).
    pub fn read_range(&self, rel: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let f = match self.open_packs.get(rel) {
            Some(f) => f,
            None => {
                let f = std::sync::Arc::new(self.open_file(rel)?);
                if rel.starts_with(layout::DATA) {
                    self.open_packs.put(rel, f.clone());
                }
                f
            }
        };
        let mut buf = vec![0; len as usize];
        f.read_exact_at(&mut buf, offset).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::corrupt(
                    rel,
                    format!("short read: wanted {len} bytes at {offset}, the file ends before"),
                )
            } else {
                Error::io(self.full(rel), e)
            }
        })?;
        Ok(buf)
    }

    /// Writes an object whole or not at all (see the module doc).
    pub fn write(&self, rel: &str, bytes: &[u8]) -> Result<()> {
        self.open_packs.forget(rel);
        let (dir, name) = Self::split(rel);
        let tmp_dir = self.dir_chain(layout::TMP, true)?.pop().unwrap();
        let tmp_name = format!(
            "{:016x}{:016x}",
            rand::random::<u64>(),
            rand::random::<u64>()
        );
        let fd = openat(
            Some(tmp_dir.as_raw_fd()),
            tmp_name.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(FILE_MODE),
        )
        .map_err(|e| self.errno(&format!("{}/{tmp_name}", layout::TMP), e))?;
        // SAFETY: openat returned a new descriptor that nothing else owns.
        let mut f = unsafe { File::from_raw_fd(fd) };
        let remove_tmp = || {
            let _ = unlinkat(
                Some(tmp_dir.as_raw_fd()),
                tmp_name.as_str(),
                UnlinkatFlags::NoRemoveDir,
            );
        };
        if let Err(e) = f.write_all(bytes).and_then(|()| f.sync_data()) {
            remove_tmp();
            return Err(Error::io(self.full(rel), e));
        }
        drop(f);
        let chain = match self.dir_chain(dir, true) {
            Ok(c) => c,
            Err(e) => {
                remove_tmp();
                return Err(e);
            }
        };
        if let Err(e) = renameat(
            Some(tmp_dir.as_raw_fd()),
            tmp_name.as_str(),
            Some(chain.last().unwrap().as_raw_fd()),
            name,
        ) {
            remove_tmp();
            return Err(self.errno(rel, e));
        }
        // The rename is durable only once its folder is, and a folder created on the way
        // (`data/`, `data/XX/`, by this or a concurrent writer) only once its parent is.
        for fd in chain.iter().rev() {
            nix::unistd::fsync(fd.as_raw_fd()).map_err(|e| self.errno(dir, e))?;
        }
        Ok(())
    }

    /// Removes an object (a link in its place is removed, never followed); a missing one is
    /// not an error, as on object storage.
    pub fn delete(&self, rel: &str) -> Result<()> {
        self.open_packs.forget(rel);
        let (dir, name) = Self::split(rel);
        let chain = match self.dir_chain(dir, false) {
            Ok(c) => c,
            Err(Error::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        match unlinkat(
            Some(chain.last().unwrap().as_raw_fd()),
            name,
            UnlinkatFlags::NoRemoveDir,
        ) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(self.errno(rel, e)),
        }
    }

    pub fn exists(&self, rel: &str) -> Result<bool> {
        let (dir, name) = Self::split(rel);
        let chain = match self.dir_chain(dir, false) {
            Ok(c) => c,
            Err(Error::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        match fstatat(
            Some(chain.last().unwrap().as_raw_fd()),
            name,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(_) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(self.errno(rel, e)),
        }
    }

    /// Every file below the folder `rel` (recursively). A link found there is an error: it is
    /// not the repository's, and deleting or reading through it is refused anyway.
    pub fn list(&self, rel: &str) -> Result<Vec<Listed>> {
        let rel = rel.trim_end_matches('/');
        let chain = match self.dir_chain(rel, false) {
            Ok(c) => c,
            Err(Error::NotFound(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        self.list_into(chain.into_iter().last().unwrap(), rel, &mut out)?;
        Ok(out)
    }

    fn list_into(&self, dir_fd: OwnedFd, rel: &str, out: &mut Vec<Listed>) -> Result<()> {
        let raw = dir_fd.as_raw_fd();
        let mut dir =
            nix::dir::Dir::from_fd(nix::unistd::dup(raw).map_err(|e| self.errno(rel, e))?)
                .map_err(|e| self.errno(rel, e))?;
        let mut names = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(|e| self.errno(rel, e))?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            names.push(name.to_vec());
        }
        drop(dir);
        for name in names {
            let name_s = String::from_utf8_lossy(&name).into_owned();
            let child = if rel.is_empty() {
                name_s.clone()
            } else {
                format!("{rel}/{name_s}")
            };
            let os = OsStr::from_bytes(&name);
            let st = match fstatat(Some(raw), os, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::ENOENT) => continue, // deleted meanwhile
                Err(e) => return Err(self.errno(&child, e)),
            };
            match st.st_mode & libc::S_IFMT {
                libc::S_IFDIR => {
                    let fd = match openat(
                        Some(raw),
                        os,
                        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    ) {
                        Ok(fd) => fd,
                        Err(Errno::ENOENT) => continue,
                        Err(e) => return Err(self.errno(&child, e)),
                    };
                    // SAFETY: openat returned a new descriptor that nothing else owns.
                    self.list_into(unsafe { OwnedFd::from_raw_fd(fd) }, &child, out)?;
                }
                libc::S_IFREG => out.push(Listed {
                    path: child,
                    name: name_s,
                    modified: Some(
                        SystemTime::UNIX_EPOCH
                            + std::time::Duration::new(
                                st.st_mtime.max(0) as u64,
                                st.st_mtime_nsec.clamp(0, 999_999_999) as u32,
                            ),
                    ),
                    size: Some(st.st_size.max(0) as u64),
                }),
                libc::S_IFLNK => {
                    return Err(self.errno(&child, Errno::ELOOP));
                }
                _ => {} // sockets, fifos: not objects
            }
        }
        Ok(())
    }
}

impl Backend for LocalDir {
    fn properties(&self) -> Properties {
        Properties {
            high_latency: false,
            has_folders: true,
            temp_files: true,
        }
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        LocalDir::read(self, path)
    }

    fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        LocalDir::read_range(self, path, offset, len)
    }

    fn write(&self, path: &str, bytes: Vec<u8>) -> Result<Option<Vec<u8>>> {
        LocalDir::write(self, path, &bytes).map(|()| Some(bytes))
    }

    fn delete(&self, path: &str) -> Result<()> {
        LocalDir::delete(self, path)
    }

    fn exists(&self, path: &str) -> Result<bool> {
        LocalDir::exists(self, path)
    }

    fn list(&self, dir: &str) -> Result<Vec<Listed>> {
        LocalDir::list(self, dir)
    }

    fn mode(&self, path: &str) -> Option<u32> {
        let (dir, name) = Self::split(path);
        let chain = self.dir_chain(dir, false).ok()?;
        fstatat(
            Some(chain.last()?.as_raw_fd()),
            name,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .ok()
        .map(|st| st.st_mode & 0o7777)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn objects_are_private_whatever_the_umask() {
        let old = unsafe { libc::umask(0o022) };
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let local = LocalDir::open(&repo, true).unwrap();
        local.write("data/ab/abcd", b"pack").unwrap();
        local.write("keys/k", b"key").unwrap();
        unsafe { libc::umask(old) };
        assert_eq!(mode(&repo), 0o700);
        assert_eq!(mode(&repo.join("data")), 0o700);
        assert_eq!(mode(&repo.join("data/ab")), 0o700);
        assert_eq!(mode(&repo.join("data/ab/abcd")), 0o600);
        assert_eq!(mode(&repo.join("keys/k")), 0o600);
        assert_eq!(mode(&repo.join("tmp")), 0o700);
    }

    #[test]
    fn links_inside_the_repository_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("victim"), b"precious").unwrap();
        let repo = dir.path().join("repo");
        let local = LocalDir::open(&repo, true).unwrap();
        std::fs::create_dir(repo.join("data")).unwrap();
        std::os::unix::fs::symlink(&outside, repo.join("data/ab")).unwrap();
        let err = local.write("data/ab/new", b"x").unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert!(err.contains("data/ab"), "{err}");
        assert!(!outside.join("new").exists(), "wrote through the link");
        let err = local.delete("data/ab/victim").unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert!(outside.join("victim").exists(), "deleted through the link");
        assert!(local.read("data/ab/victim").is_err());
        let err = local.list("data/").err().unwrap().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        // A link as the object itself: reading refuses, deleting removes the link only.
        std::fs::remove_file(repo.join("data/ab")).unwrap();
        std::fs::create_dir(repo.join("data/ab")).unwrap();
        std::os::unix::fs::symlink(outside.join("victim"), repo.join("data/ab/obj")).unwrap();
        assert!(local.read("data/ab/obj").is_err());
        local.delete("data/ab/obj").unwrap();
        assert!(outside.join("victim").exists());
    }
}
