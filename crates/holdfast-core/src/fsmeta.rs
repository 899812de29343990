//! Reading and applying file metadata: owners, modes, times, xattrs and ACLs.
//!
//! POSIX ACLs travel as the `system.posix_acl_*` extended attributes, which the kernel lists
//! and accepts like any other, so one code path keeps both.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::tree::{Node, NodeKind, RawName, Timestamp, Xattr};

/// Caches uid/gid -> name lookups (NSS can be slow).
#[derive(Default)]
pub struct Names {
    users: Mutex<HashMap<u32, Option<String>>>,
    groups: Mutex<HashMap<u32, Option<String>>>,
    user_ids: Mutex<HashMap<String, Option<u32>>>,
    group_ids: Mutex<HashMap<String, Option<u32>>>,
}

impl Names {
    pub fn user(&self, uid: u32) -> Option<String> {
        self.users
            .lock()
            .unwrap()
            .entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(uid.into())
                    .ok()
                    .flatten()
                    .map(|u| u.name)
            })
            .clone()
    }
    pub fn group(&self, gid: u32) -> Option<String> {
        self.groups
            .lock()
            .unwrap()
            .entry(gid)
            .or_insert_with(|| {
                nix::unistd::Group::from_gid(gid.into())
                    .ok()
                    .flatten()
                    .map(|g| g.name)
            })
            .clone()
    }
    pub fn uid_of(&self, name: &str) -> Option<u32> {
        *self
            .user_ids
            .lock()
            .unwrap()
            .entry(name.to_string())
            .or_insert_with(|| {
                nix::unistd::User::from_name(name)
                    .ok()
                    .flatten()
                    .map(|u| u.uid.as_raw())
            })
    }
    pub fn gid_of(&self, name: &str) -> Option<u32> {
        *self
            .group_ids
            .lock()
            .unwrap()
            .entry(name.to_string())
            .or_insert_with(|| {
                nix::unistd::Group::from_name(name)
                    .ok()
                    .flatten()
                    .map(|g| g.gid.as_raw())
            })
    }
}

pub fn kind_of(meta: &Metadata) -> NodeKind {
    use std::os::unix::fs::FileTypeExt;
    let ft = meta.file_type();
    if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_symlink() {
        NodeKind::Symlink
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else if ft.is_char_device() {
        NodeKind::Chardev
    } else if ft.is_block_device() {
        NodeKind::Blockdev
    } else if ft.is_socket() {
        NodeKind::Socket
    } else {
        NodeKind::File
    }
}

/// A node for `meta`, without content, subtree, target or xattrs.
pub fn node_from_metadata(name: RawName, meta: &Metadata, names: &Names) -> Node {
    let kind = kind_of(meta);
    Node {
        name,
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        user: names.user(meta.uid()),
        group: names.group(meta.gid()),
        size: if kind == NodeKind::File {
            meta.size()
        } else {
            0
        },
        mtime: Timestamp(meta.mtime(), meta.mtime_nsec() as u32),
        atime: Timestamp(meta.atime(), meta.atime_nsec() as u32),
        ctime: Timestamp(meta.ctime(), meta.ctime_nsec() as u32),
        inode: meta.ino(),
        dev: meta.dev(),
        links: if kind == NodeKind::Dir {
            0
        } else {
            meta.nlink()
        },
        rdev: if matches!(kind, NodeKind::Chardev | NodeKind::Blockdev) {
            meta.rdev()
        } else {
            0
        },
        target: None,
        content: Vec::new(),
        subtree: None,
        xattrs: Vec::new(),
        sparse: kind == NodeKind::File && meta.blocks() * 512 < meta.size(),
    }
}

/// Extended attributes (and so ACLs) of `path`, not following symlinks.
pub fn read_xattrs(path: &Path) -> Result<Vec<Xattr>> {
    let names = match xattr::list(path) {
        Ok(n) => n,
        Err(e) if unsupported(&e) => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut out = Vec::new();
    for n in names {
        match xattr::get(path, &n) {
            Ok(Some(v)) => out.push(Xattr {
                name: RawName::from(n),
                value: v,
            }),
            Ok(None) => {}
            Err(e) if unsupported(&e) => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn unsupported(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::ENODATA))
}

/// How restore maps owners.
#[derive(Clone, Copy, Debug, Default)]
pub struct OwnerPolicy {
    /// Use the stored uid/gid even when a user or group of the stored name exists here.
    pub numeric: bool,
}

/// Applies owner, xattrs, mode and times to the entry at `path` (never through a symlink).
/// The order matters: chown clears setuid bits and file capabilities, so it goes first; an
/// owner who is not root needs write permission to set `user.*` attributes, so the mode,
/// which may be read-only, comes after them; times go last, because every other step changes
/// ctime and, on directories, nothing else. Returns warnings for what could not be applied.
pub fn apply_metadata(
    path: &Path,
    node: &Node,
    names: &Names,
    owners: OwnerPolicy,
    is_root: bool,
) -> Vec<String> {
    apply(Entry::Path(path), path, node, names, owners, is_root)
}

/// [`apply_metadata`] through an open regular file, before it gets its real name: no path is
/// looked up again, and the file appears under its name complete, metadata included. `path`
/// names the file in warnings.
pub fn apply_file_metadata(
    file: &std::fs::File,
    path: &Path,
    node: &Node,
    names: &Names,
    owners: OwnerPolicy,
    is_root: bool,
) -> Vec<String> {
    apply(Entry::File(file), path, node, names, owners, is_root)
}

#[derive(Clone, Copy)]
enum Entry<'a> {
    Path(&'a Path),
    File(&'a std::fs::File),
}

fn apply(
    entry: Entry,
    path: &Path,
    node: &Node,
    names: &Names,
    owners: OwnerPolicy,
    is_root: bool,
) -> Vec<String> {
    use std::os::fd::AsFd;
    let mut warnings = Vec::new();
    let uid = if owners.numeric {
        None
    } else {
        node.user.as_deref().and_then(|u| names.uid_of(u))
    }
    .unwrap_or(node.uid);
    let gid = if owners.numeric {
        None
    } else {
        node.group.as_deref().and_then(|g| names.gid_of(g))
    }
    .unwrap_or(node.gid);
    if is_root {
        let owned = match entry {
            Entry::Path(p) => nix::unistd::fchownat(
                None,
                p,
                Some(uid.into()),
                Some(gid.into()),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            ),
            Entry::File(f) => {
                use std::os::fd::AsRawFd;
                nix::unistd::fchown(f.as_fd().as_raw_fd(), Some(uid.into()), Some(gid.into()))
            }
        };
        if let Err(e) = owned {
            warnings.push(format!("{}: chown: {e}", path.display()));
        }
    }
    for x in &node.xattrs {
        let set = match entry {
            Entry::Path(p) => xattr::set(p, x.name.as_os_str(), &x.value),
            Entry::File(f) => {
                use xattr::FileExt;
                f.set_xattr(x.name.as_os_str(), &x.value)
            }
        };
        if let Err(e) = set {
            // Unprivileged users cannot set trusted.* or security.* attributes.
            if is_root
                || x.name.0.starts_with(b"user.")
                || x.name.0.starts_with(b"system.posix_acl")
            {
                warnings.push(format!("{}: xattr {}: {e}", path.display(), x.name.lossy()));
            }
        }
    }
    if node.kind != NodeKind::Symlink {
        let mode = std::fs::Permissions::from_mode(node.mode);
        let set = match entry {
            Entry::Path(p) => std::fs::set_permissions(p, mode),
            Entry::File(f) => f.set_permissions(mode),
        };
        if let Err(e) = set {
            warnings.push(format!("{}: chmod: {e}", path.display()));
        }
    }
    let at = filetime::FileTime::from_unix_time(node.atime.0, node.atime.1);
    let mt = filetime::FileTime::from_unix_time(node.mtime.0, node.mtime.1);
    let set = match entry {
        Entry::Path(p) => filetime::set_symlink_file_times(p, at, mt),
        Entry::File(f) => filetime::set_file_handle_times(f, Some(at), Some(mt)),
    };
    if let Err(e) = set {
        warnings.push(format!("{}: times: {e}", path.display()));
    }
    warnings
}

pub fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}
