//! `holdfast mount`: the repository as a read-only FUSE file system, to pick files out of a
//! backup with the usual tools (`ls`, `cp`, `diff`, a file manager) instead of a restore.
//!
//! One snapshot, or all of them: `snapshots/<time>-<id>/`, with `hosts/<host>/` and
//! `apps/<app>/` holding a symlink per snapshot (and `latest`). Entries are made when a
//! directory is first listed or looked up, so mounting is instant whatever the size, and a
//! read fetches only the chunks it covers (a ranged read of the pack; on S3 a ranged GET),
//! through a bounded cache of decoded chunks.
//!
//! The mount holds no repository lock: a mount left open for days must not stop `prune`.
//! What prune removes under it is found on the next read: the index is loaded again once (the
//! chunk may have been repacked elsewhere), and if it is still gone the read fails with EIO
//! and a log line, rather than returning wrong bytes.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen, ReplyXattr, Request,
};
use holdfast_core::id::{BlobId, SnapshotId};
use holdfast_core::snapshot::{RootLayout, Snapshot};
use holdfast_core::tree::{Node, NodeKind, Timestamp};
use holdfast_core::Repository;

/// How long the kernel may keep what we answered: the content never changes.
const TTL: Duration = Duration::from_secs(3600);

/// Decoded chunks kept for reads (a chunk is about 1 MiB on average, at most 8).
const CACHE_BYTES: usize = 64 << 20;

/// What is mounted.
pub enum Mounted {
    /// One snapshot, its content at the root.
    One(SnapshotId, Box<Snapshot>),
    /// Every snapshot given, under `snapshots/`, `hosts/` and `apps/`.
    All(Vec<(SnapshotId, Snapshot)>),
}

/// The file system. Inode numbers are handed out as entries are first seen and stay fixed
/// for the life of the mount.
pub struct SnapshotFs {
    repo: Arc<Repository>,
    inodes: RwLock<Inodes>,
    chunks: ChunkCache,
    /// Owner and time of the directories made up by the mount (root, `snapshots/`, ...).
    owner: (u32, u32),
    mounted_at: SystemTime,
}

#[derive(Default)]
struct Inodes {
    /// Index = inode number - 1.
    all: Vec<Inode>,
    /// Hard links: (snapshot root, device, inode on the backed-up machine) -> our inode.
    links: HashMap<(u64, u64, u64), u64>,
}

impl Inodes {
    /// Adds an entry (its own parent when `parent` is 0: the root); returns its number.
    fn add(
        &mut self,
        parent: u64,
        root: u64,
        path: PathBuf,
        attr: impl FnOnce(u64) -> FileAttr,
        kind: Kind,
        xattrs: Xattrs,
    ) -> u64 {
        let ino = self.all.len() as u64 + 1;
        self.all.push(Inode {
            attr: attr(ino),
            parent: if parent == 0 { ino } else { parent },
            root,
            path,
            xattrs,
            kind,
        });
        ino
    }
}

struct Inode {
    attr: FileAttr,
    parent: u64,
    /// The snapshot directory this entry belongs to (0 for made-up entries).
    root: u64,
    /// Path inside the snapshot, for log lines.
    path: PathBuf,
    /// Extended attributes, as stored (directories have them too).
    xattrs: Xattrs,
    kind: Kind,
}

/// Names and values of extended attributes.
type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

fn xattrs_of(n: &Node) -> Xattrs {
    n.xattrs
        .iter()
        .map(|x| (x.name.0.clone(), x.value.clone()))
        .collect()
}

enum Kind {
    /// A made-up directory: children known when it was made.
    Virtual(Vec<(Vec<u8>, u64)>),
    /// A made-up symlink.
    VirtualLink(Vec<u8>),
    /// A directory of a snapshot: its tree, listed on first use.
    Dir {
        tree: Option<BlobId>,
        children: OnceLock<Vec<(Vec<u8>, u64)>>,
    },
    /// A file, symlink or special file of a snapshot.
    Entry {
        node: Box<Node>,
        /// Where each chunk starts in the file, and the file's end; made on first read.
        offsets: OnceLock<Vec<u64>>,
    },
}

/// `[secs, nanos]` as a time: nanoseconds always count forward, also before 1970.
fn system_time(t: Timestamp) -> SystemTime {
    let secs = Duration::from_secs(t.0.unsigned_abs());
    let whole = if t.0 >= 0 {
        UNIX_EPOCH + secs
    } else {
        UNIX_EPOCH - secs
    };
    whole + Duration::from_nanos(t.1.min(999_999_999) as u64)
}

fn file_type(k: NodeKind) -> FileType {
    match k {
        NodeKind::File => FileType::RegularFile,
        NodeKind::Dir => FileType::Directory,
        NodeKind::Symlink => FileType::Symlink,
        NodeKind::Fifo => FileType::NamedPipe,
        NodeKind::Chardev => FileType::CharDevice,
        NodeKind::Blockdev => FileType::BlockDevice,
        NodeKind::Socket => FileType::Socket,
    }
}

/// The attributes of a stored entry, as `stat` shows them after a restore.
fn attr_of(ino: u64, n: &Node) -> FileAttr {
    let size = match n.kind {
        NodeKind::File => n.size,
        NodeKind::Symlink => n.target.as_ref().map(|t| t.0.len() as u64).unwrap_or(0),
        _ => 0,
    };
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: system_time(n.atime),
        mtime: system_time(n.mtime),
        ctime: system_time(n.ctime),
        crtime: system_time(n.mtime),
        kind: file_type(n.kind),
        perm: (n.mode & 0o7777) as u16,
        nlink: if n.kind == NodeKind::Dir {
            2
        } else {
            n.links.max(1) as u32
        },
        uid: n.uid,
        gid: n.gid,
        rdev: n.rdev as u32,
        flags: 0,
        blksize: 4096,
    }
}

impl SnapshotFs {
    pub fn new(repo: Arc<Repository>, what: Mounted) -> SnapshotFs {
        let owner = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        let fs = SnapshotFs {
            repo,
            inodes: RwLock::new(Inodes::default()),
            chunks: ChunkCache::default(),
            owner,
            mounted_at: SystemTime::now(),
        };
        match what {
            Mounted::One(_, snap) => {
                fs.add_snapshot_root(0, &snap);
            }
            Mounted::All(snaps) => fs.add_all(snaps),
        }
        fs
    }

    fn push(
        &self,
        parent: u64,
        root: u64,
        path: PathBuf,
        attr: impl FnOnce(u64) -> FileAttr,
        kind: Kind,
    ) -> u64 {
        self.push_with_xattrs(parent, root, path, attr, kind, Vec::new())
    }

    fn push_with_xattrs(
        &self,
        parent: u64,
        root: u64,
        path: PathBuf,
        attr: impl FnOnce(u64) -> FileAttr,
        kind: Kind,
        xattrs: Xattrs,
    ) -> u64 {
        self.inodes
            .write()
            .unwrap()
            .add(parent, root, path, attr, kind, xattrs)
    }

    fn virtual_dir_attr(&self, ino: u64, time: SystemTime) -> FileAttr {
        FileAttr {
            ino: INodeNo(ino),
            size: 0,
            blocks: 0,
            atime: time,
            mtime: time,
            ctime: time,
            crtime: time,
            kind: FileType::Directory,
            perm: 0o555,
            nlink: 2,
            uid: self.owner.0,
            gid: self.owner.1,
            rdev: 0,
            flags: 0,
            blksize: 4096,
        }
    }

    /// A snapshot's top directory: its backed-up directory's own metadata when it has it.
    fn add_snapshot_root(&self, parent: u64, snap: &Snapshot) -> u64 {
        let time = SystemTime::from(snap.time);
        let root_node = match snap.layout {
            RootLayout::DirContent => snap.root.clone(),
            RootLayout::FullPaths => None,
        };
        let ino = self.inodes.read().unwrap().all.len() as u64 + 1;
        let attr = |ino| match &root_node {
            Some(n) => attr_of(ino, n),
            None => self.virtual_dir_attr(ino, time),
        };
        self.push_with_xattrs(
            parent,
            ino,
            PathBuf::from("/"),
            attr,
            Kind::Dir {
                tree: Some(snap.tree),
                children: OnceLock::new(),
            },
            root_node.as_ref().map(xattrs_of).unwrap_or_default(),
        )
    }

    fn add_all(&self, mut snaps: Vec<(SnapshotId, Snapshot)>) {
        snaps.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        let now = self.mounted_at;
        let root = self.push(
            0,
            0,
            PathBuf::from("/"),
            |i| self.virtual_dir_attr(i, now),
            Kind::Virtual(Vec::new()),
        );
        let snapshots_dir = self.push(
            root,
            0,
            "/snapshots".into(),
            |i| self.virtual_dir_attr(i, now),
            Kind::Virtual(Vec::new()),
        );
        let mut names = Vec::new();
        let mut by_host: std::collections::BTreeMap<String, Vec<(Vec<u8>, String)>> =
            Default::default();
        let mut by_app: std::collections::BTreeMap<String, Vec<(Vec<u8>, String)>> =
            Default::default();
        for (id, snap) in &snaps {
            let name = format!(
                "{}-{}",
                snap.time
                    .with_timezone(&chrono::Local)
                    .format("%Y-%m-%dT%H:%M:%S"),
                id.short()
            );
            let ino = self.add_snapshot_root(snapshots_dir, snap);
            names.push((name.clone().into_bytes(), ino));
            by_host
                .entry(snap.hostname.clone())
                .or_default()
                .push((name.clone().into_bytes(), format!("../../snapshots/{name}")));
            if let Some((app, _)) = crate::restore::recorded_app(snap) {
                by_app
                    .entry(app)
                    .or_default()
                    .push((name.clone().into_bytes(), format!("../../snapshots/{name}")));
            }
        }
        self.set_children(snapshots_dir, names);
        let mut top = vec![(b"snapshots".to_vec(), snapshots_dir)];
        for (dir_name, groups) in [("hosts", by_host), ("apps", by_app)] {
            if groups.is_empty() {
                continue;
            }
            let dir = self.push(
                root,
                0,
                format!("/{dir_name}").into(),
                |i| self.virtual_dir_attr(i, now),
                Kind::Virtual(Vec::new()),
            );
            let mut group_dirs = Vec::new();
            for (group, mut links) in groups {
                let g = self.push(
                    dir,
                    0,
                    format!("/{dir_name}/{group}").into(),
                    |i| self.virtual_dir_attr(i, now),
                    Kind::Virtual(Vec::new()),
                );
                if let Some((_, newest)) = links.last().cloned() {
                    links.push((b"latest".to_vec(), newest));
                }
                let children = links
                    .into_iter()
                    .map(|(name, target)| {
                        let target = target.into_bytes();
                        let ino = self.push(
                            g,
                            0,
                            PathBuf::new(),
                            |i| FileAttr {
                                size: target.len() as u64,
                                kind: FileType::Symlink,
                                perm: 0o777,
                                nlink: 1,
                                ..self.virtual_dir_attr(i, now)
                            },
                            Kind::VirtualLink(target.clone()),
                        );
                        (name, ino)
                    })
                    .collect();
                self.set_children(g, children);
                group_dirs.push((group.into_bytes(), g));
            }
            self.set_children(dir, group_dirs);
            top.push((dir_name.as_bytes().to_vec(), dir));
        }
        self.set_children(root, top);
    }

    fn set_children(&self, ino: u64, mut children: Vec<(Vec<u8>, u64)>) {
        children.sort();
        if let Some(i) = self.inodes.write().unwrap().all.get_mut(ino as usize - 1) {
            i.kind = Kind::Virtual(children);
        }
    }

    /// The entries of directory `ino`, listing its tree the first time.
    fn children(&self, ino: u64) -> Result<Vec<(Vec<u8>, u64)>, Errno> {
        let (tree, root, path) = {
            let inodes = self.inodes.read().unwrap();
            let node = inodes.all.get(ino as usize - 1).ok_or(Errno::ENOENT)?;
            match &node.kind {
                Kind::Virtual(c) => return Ok(c.clone()),
                Kind::Dir { children, tree } => match children.get() {
                    Some(c) => return Ok(c.clone()),
                    None => (*tree, node.root, node.path.clone()),
                },
                _ => return Err(Errno::ENOTDIR),
            }
        };
        let nodes = match tree {
            Some(t) => {
                self.repo
                    .load_tree(&t)
                    .map_err(|e| self.failed(&path, &e.to_string()))?
                    .nodes
            }
            None => Vec::new(),
        };
        let mut list = Vec::with_capacity(nodes.len());
        for n in nodes {
            let name = n.name.0.clone();
            let child_path = path.join(OsStr::from_bytes(&name));
            list.push((name, self.add_entry(ino, root, child_path, n)));
        }
        let inodes = self.inodes.read().unwrap();
        if let Some(Kind::Dir { children, .. }) = inodes.all.get(ino as usize - 1).map(|i| &i.kind)
        {
            // Two threads may list at once: the first list set wins, the other's inodes stay
            // unused.
            let _ = children.set(list);
            return Ok(children.get().cloned().unwrap_or_default());
        }
        Err(Errno::ENOENT)
    }

    fn add_entry(&self, parent: u64, root: u64, path: PathBuf, n: Node) -> u64 {
        let link_key = (n.kind == NodeKind::File && n.links > 1 && n.inode != 0)
            .then_some((root, n.dev, n.inode));
        let kind = if n.kind == NodeKind::Dir {
            Kind::Dir {
                tree: n.subtree,
                children: OnceLock::new(),
            }
        } else {
            Kind::Entry {
                node: Box::new(n.clone()),
                offsets: OnceLock::new(),
            }
        };
        // One write lock for the look-up and the insert: two directories listed at once
        // must give a hard-linked file one inode.
        let mut inodes = self.inodes.write().unwrap();
        if let Some(ino) = link_key.and_then(|k| inodes.links.get(&k).copied()) {
            return ino;
        }
        let ino = inodes.add(parent, root, path, |i| attr_of(i, &n), kind, xattrs_of(&n));
        if let Some(key) = link_key {
            inodes.links.insert(key, ino);
        }
        ino
    }

    fn attr(&self, ino: u64) -> Result<FileAttr, Errno> {
        self.inodes
            .read()
            .unwrap()
            .all
            .get(ino.wrapping_sub(1) as usize)
            .map(|i| i.attr)
            .ok_or(Errno::ENOENT)
    }

    /// Logs a failure the caller answers with EIO.
    fn failed(&self, path: &Path, why: &str) -> Errno {
        tracing::warn!("mount: {}: {why}", path.display());
        Errno::EIO
    }

    /// Bytes `offset..offset+size` of file `ino`.
    fn read_range(&self, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let (content, path, starts) = {
            let inodes = self.inodes.read().unwrap();
            let i = inodes
                .all
                .get(ino.wrapping_sub(1) as usize)
                .ok_or(Errno::ENOENT)?;
            let Kind::Entry { node, offsets } = &i.kind else {
                return Err(Errno::EISDIR);
            };
            (node.content.clone(), i.path.clone(), offsets.get().cloned())
        };
        let starts = match starts {
            Some(s) => s,
            None => {
                let s = self
                    .chunk_starts(&content)
                    .map_err(|e| self.failed(&path, &e))?;
                let inodes = self.inodes.read().unwrap();
                if let Some(Kind::Entry { offsets, .. }) =
                    inodes.all.get(ino as usize - 1).map(|i| &i.kind)
                {
                    let _ = offsets.set(s.clone());
                }
                s
            }
        };
        let end_of_file = *starts.last().unwrap_or(&0);
        let end = (offset + size as u64).min(end_of_file);
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        if offset >= end {
            return Ok(out);
        }
        // The chunk holding `offset`: the last one starting at or before it.
        let mut i = starts.partition_point(|s| *s <= offset) - 1;
        while i < content.len() && starts[i] < end {
            let chunk = self
                .chunk(&content[i])
                .map_err(|e| self.failed(&path, &e))?;
            let from = offset.max(starts[i]) - starts[i];
            let to = end.min(starts[i + 1]) - starts[i];
            if to as usize > chunk.len() {
                return Err(self.failed(&path, "a chunk is shorter than the index says"));
            }
            out.extend_from_slice(&chunk[from as usize..to as usize]);
            i += 1;
        }
        Ok(out)
    }

    /// Where each chunk starts, from the index, and the end of the file.
    fn chunk_starts(&self, content: &[BlobId]) -> Result<Vec<u64>, String> {
        let mut reloaded = false;
        loop {
            let index = self.repo.index();
            let mut starts = Vec::with_capacity(content.len() + 1);
            let mut at = 0u64;
            let mut missing = None;
            for id in content {
                starts.push(at);
                match index.get(id) {
                    Some(loc) => at += loc.raw_length as u64,
                    None => {
                        missing = Some(*id);
                        break;
                    }
                }
            }
            match missing {
                None => {
                    starts.push(at);
                    return Ok(starts);
                }
                Some(id) if reloaded => {
                    return Err(format!(
                        "chunk {} is not in the repository any more",
                        id.short()
                    ))
                }
                Some(_) => {
                    reloaded = true;
                    self.repo.load_index().map_err(|e| e.to_string())?;
                }
            }
        }
    }

    /// One decoded chunk: from the cache, else read (after a failure, read again once with
    /// the index loaded anew, in case a prune moved it).
    fn chunk(&self, id: &BlobId) -> Result<Arc<Vec<u8>>, String> {
        if let Some(c) = self.chunks.get(id) {
            return Ok(c);
        }
        let data = match self.repo.read_blob(id) {
            Ok(d) => d,
            Err(first) => {
                self.repo
                    .load_index()
                    .map_err(|e| format!("{first}; loading the index again: {e}"))?;
                self.repo.read_blob(id).map_err(|e| e.to_string())?
            }
        };
        let data = Arc::new(data);
        self.chunks.put(*id, data.clone());
        Ok(data)
    }

    fn xattrs(&self, ino: u64) -> Result<Xattrs, Errno> {
        let inodes = self.inodes.read().unwrap();
        let i = inodes
            .all
            .get(ino.wrapping_sub(1) as usize)
            .ok_or(Errno::ENOENT)?;
        Ok(i.xattrs.clone())
    }
}

/// Decoded chunks, oldest evicted first, at most [`CACHE_BYTES`].
#[derive(Default)]
struct ChunkCache {
    inner: Mutex<Chunks>,
}

/// The chunks, their order of arrival, and their bytes in all.
#[derive(Default)]
struct Chunks {
    by_id: HashMap<BlobId, Arc<Vec<u8>>>,
    order: VecDeque<BlobId>,
    bytes: usize,
}

impl ChunkCache {
    fn get(&self, id: &BlobId) -> Option<Arc<Vec<u8>>> {
        self.inner.lock().unwrap().by_id.get(id).cloned()
    }

    fn put(&self, id: BlobId, data: Arc<Vec<u8>>) {
        let mut c = self.inner.lock().unwrap();
        if c.by_id.contains_key(&id) {
            return;
        }
        c.bytes += data.len();
        c.by_id.insert(id, data);
        c.order.push_back(id);
        while c.bytes > CACHE_BYTES {
            let Some(old) = c.order.pop_front() else {
                break;
            };
            if let Some(d) = c.by_id.remove(&old) {
                c.bytes -= d.len();
            }
        }
    }
}

/// The answer to a getxattr or listxattr: its size when asked for (`size` 0), else the value
/// when it fits.
fn reply_sized(reply: ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}

impl Filesystem for SnapshotFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = self.children(parent.0).and_then(|c| {
            c.binary_search_by(|(n, _)| n.as_slice().cmp(name.as_bytes()))
                .map(|i| c[i].1)
                .map_err(|_| Errno::ENOENT)
        });
        match found.and_then(|ino| self.attr(ino)) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr(ino.0) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let inodes = self.inodes.read().unwrap();
        match inodes
            .all
            .get(ino.0.wrapping_sub(1) as usize)
            .map(|i| &i.kind)
        {
            Some(Kind::VirtualLink(t)) => reply.data(t),
            Some(Kind::Entry { node, .. }) if node.kind == NodeKind::Symlink => {
                reply.data(node.target.as_ref().map(|t| t.0.as_slice()).unwrap_or(b""))
            }
            Some(_) => reply.error(Errno::EINVAL),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.0 & nix::libc::O_ACCMODE != nix::libc::O_RDONLY {
            reply.error(Errno::EROFS);
            return;
        }
        // The content never changes: the kernel may keep what it read.
        reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.read_range(ino.0, offset, size) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let children = match self.children(ino.0) {
            Ok(c) => c,
            Err(e) => {
                reply.error(e);
                return;
            }
        };
        let parent = self
            .inodes
            .read()
            .unwrap()
            .all
            .get(ino.0 as usize - 1)
            .map(|i| i.parent)
            .unwrap_or(ino.0);
        let mut entries = vec![
            (ino.0, FileType::Directory, b".".to_vec()),
            (parent, FileType::Directory, b"..".to_vec()),
        ];
        for (name, child) in children {
            let kind = self
                .attr(child)
                .map(|a| a.kind)
                .unwrap_or(FileType::RegularFile);
            entries.push((child, kind, name));
        }
        for (i, (child, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(
                INodeNo(child),
                (i + 1) as u64,
                kind,
                OsStr::from_bytes(&name),
            ) {
                break;
            }
        }
        reply.ok();
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.xattrs(ino.0) {
            Ok(x) => match x.iter().find(|(n, _)| n.as_slice() == name.as_bytes()) {
                Some((_, v)) => reply_sized(reply, size, v),
                None => reply.error(Errno::ENODATA),
            },
            Err(e) => reply.error(e),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.xattrs(ino.0) {
            Ok(x) => {
                let mut list = Vec::new();
                for (n, _) in &x {
                    list.extend_from_slice(n);
                    list.push(0);
                }
                reply_sized(reply, size, &list);
            }
            Err(e) => reply.error(e),
        }
    }
}

/// Mount options of `holdfast mount`.
#[derive(Clone, Debug, Default)]
pub struct MountOptions {
    /// Let other users in (as the kernel checks each entry's owner and mode against them).
    pub allow_other: bool,
}

/// Mounts `fs` at `dir` in the background; unmounted when the returned session is dropped
/// or [`fuser::BackgroundSession::umount_and_join`] is called.
pub fn mount(
    fs: SnapshotFs,
    dir: &Path,
    opts: &MountOptions,
) -> std::io::Result<fuser::BackgroundSession> {
    let mut cfg = fuser::Config::default();
    cfg.mount_options.extend([
        fuser::MountOption::RO,
        fuser::MountOption::FSName("holdfast".into()),
        fuser::MountOption::Subtype("holdfast".into()),
        // The kernel enforces each entry's owner and mode, as on the restored tree.
        fuser::MountOption::DefaultPermissions,
    ]);
    if opts.allow_other {
        cfg.acl = fuser::SessionACL::All;
    }
    cfg.n_threads = Some(4);
    fuser::spawn_mount(fs, dir, &cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_before_1970_count_nanoseconds_forward() {
        assert_eq!(
            system_time(Timestamp(-2, 500_000_000)),
            UNIX_EPOCH - Duration::from_millis(1500)
        );
        assert_eq!(
            system_time(Timestamp(3, 1)),
            UNIX_EPOCH + Duration::new(3, 1)
        );
    }
}
