//! The archiver: turns directories into trees, chunks and a snapshot.
//!
//! Entries of a directory are processed in parallel (rayon work stealing also spreads nested
//! directories over the cores). A file whose size, mtime, ctime and inode equal those in the
//! parent snapshot is not read: its chunk list is reused, so a no-change backup costs little
//! more than stat-ing every file. Files up to the maximum chunk size are read in one go; larger
//! ones are streamed through the chunker so memory stays bounded.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::Utc;
use rayon::prelude::*;

use crate::chunker::ChunkBatch;
use crate::error::{Error, Result};
use crate::exclude::Excludes;
use crate::fsmeta::{self, Names};
use crate::id::{BlobId, SnapshotId};
use crate::pack::BlobKind;
use crate::repo::Repository;
use crate::saver::{BlobSaver, Checkpoints};
use crate::snapshot::{Attachment, Consistency, RootLayout, Snapshot, Summary, Warning};
use crate::tree::{Node, NodeKind, RawName, Timestamp, Tree};

#[derive(Clone, Debug, Default)]
pub struct BackupOptions {
    pub excludes: Excludes,
    /// Folders stored **empty**, with their own metadata (owner, mode, times, xattrs): an
    /// application's excluded tiers (tmp, caches, run...), so that a restore recreates them as
    /// the application expects them to exist. A non-folder matching these is left out.
    pub empty_dirs: Excludes,
    pub one_file_system: bool,
    pub tags: Vec<String>,
    pub hostname: Option<String>,
    /// Parent snapshot; `None` picks the latest with the same host and paths.
    pub parent: Option<SnapshotId>,
    /// Read every file even when the parent says it is unchanged.
    pub force: bool,
    /// The paths recorded in the snapshot, when they differ from those read (for example a
    /// mounted volume snapshot read in place of the original).
    pub record_paths_as: Option<Vec<PathBuf>>,
    /// How often to read a file again when it changed while being read (live backups).
    /// With 0, a changed file is kept as read, with a warning.
    pub reread_changed: u32,
    /// A running application may delete files between listing and reading: note them in the
    /// consistency report instead of warning.
    pub expect_vanishing: bool,
    /// Further roots produced during the same run (database dumps), stored as attachments.
    pub attachments: Vec<Arc<dyn AttachmentSource>>,
    /// Write intermediate index files during the run (see [`crate::saver`]); without, packs
    /// are indexed at the end only.
    pub checkpoints: Option<Checkpoints>,
}

/// Produces one attachment (for example a database dump) into the snapshot being written.
/// It runs alongside the directory backup, inside the same consistency window.
pub trait AttachmentSource: Send + Sync + std::fmt::Debug {
    /// Writes the attachment's files into `sink` and describes it; the core fills in `tree`
    /// and `bytes`.
    fn produce(&self, sink: &mut AttachmentSink<'_>) -> Result<Attachment>;
}

/// Where an [`AttachmentSource`] writes its files: streams (never touching the disk) or
/// directories.
pub struct AttachmentSink<'a> {
    ctx: &'a Ctx<'a>,
    nodes: Vec<Node>,
    bytes: u64,
}

impl AttachmentSink<'_> {
    /// Stores everything `reader` yields as the file `name`; returns its size.
    pub fn add_stream(&mut self, name: &str, reader: &mut dyn Read) -> Result<u64> {
        let (content, size) = self.ctx.store_stream(Path::new(name), reader)?;
        let now = Utc::now();
        let ts = Timestamp(now.timestamp(), now.timestamp_subsec_nanos());
        let (uid, gid) = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        self.nodes.push(Node {
            name: RawName::from(name),
            kind: NodeKind::File,
            mode: 0o600,
            uid,
            gid,
            user: self.ctx.names.user(uid),
            group: self.ctx.names.group(gid),
            size,
            mtime: ts,
            atime: ts,
            ctime: ts,
            links: 1,
            content,
            inode: 0,
            dev: 0,
            rdev: 0,
            target: None,
            subtree: None,
            xattrs: Vec::new(),
            sparse: false,
        });
        self.bytes += size;
        Ok(size)
    }

    /// Stores the directory `path` (for example a `pg_dump -Fd` output) as `name`.
    pub fn add_dir(&mut self, name: &str, path: &Path) -> Result<()> {
        let meta = path.symlink_metadata().map_err(|e| Error::io(path, e))?;
        let mut node = fsmeta::node_from_metadata(RawName::from(name), &meta, &self.ctx.names);
        let before = self.ctx.total_bytes.load(Ordering::Relaxed);
        node.subtree = Some(
            self.ctx
                .backup_dir(path, Path::new(name), None, meta.dev())?,
        );
        self.bytes += self.ctx.total_bytes.load(Ordering::Relaxed) - before;
        self.nodes.push(node);
        Ok(())
    }
}

/// Live counters for a progress display; the core only counts.
#[derive(Default, Debug)]
pub struct Progress {
    pub files_done: AtomicU64,
    pub bytes_done: AtomicU64,
    pub total_files: AtomicU64,
    pub total_bytes: AtomicU64,
    pub scan_finished: AtomicBool,
}

pub struct BackupOutcome {
    pub id: SnapshotId,
    pub snapshot: Snapshot,
    /// Entries the excludes left out, as found (a directory once, not what is below it), at
    /// most [`EXCLUDED_LISTED`]; `excluded_total` counts them all.
    pub excluded: Vec<PathBuf>,
    pub excluded_total: u64,
}

/// How many excluded entries a backup lists (a dry run shows them); the rest are counted.
pub const EXCLUDED_LISTED: usize = 10_000;

/// Calls the backup makes to its caller at the points where the caller may have to act.
pub trait BackupHooks {
    /// All data has been read (or reading failed) and nothing is committed yet. An error stops
    /// the commit: use it when committing is no longer safe (the lock was lost). An
    /// application stopped for the backup can be started again here.
    fn before_commit(&mut self) -> Result<()> {
        Ok(())
    }
    /// The snapshot is about to be saved: record what the caller knows about the run.
    fn annotate(&mut self, _snapshot: &mut Snapshot) {}
}

/// Hooks that only check that committing is still safe.
pub struct CommitCheck<F: Fn() -> Result<()>>(pub F);

impl<F: Fn() -> Result<()>> BackupHooks for CommitCheck<F> {
    fn before_commit(&mut self) -> Result<()> {
        (self.0)()
    }
}

pub struct Ctx<'a> {
    repo: &'a Repository,
    saver: &'a BlobSaver,
    opts: &'a BackupOptions,
    names: Names,
    warnings: Mutex<Vec<Warning>>,
    consistency: Mutex<Consistency>,
    excluded: Mutex<(Vec<PathBuf>, u64)>,
    progress: &'a Progress,
    cancel: &'a AtomicBool,
    files_new: AtomicU64,
    files_changed: AtomicU64,
    files_unchanged: AtomicU64,
    dirs: AtomicU64,
    other: AtomicU64,
    bytes_read: AtomicU64,
    total_bytes: AtomicU64,
    total_files: AtomicU64,
}

/// Backs up `paths` (absolute) into `repo`, whose index must be loaded.
/// `hooks.before_commit` runs after all data is stored and before the index and snapshot are
/// written.
pub fn backup(
    repo: Arc<Repository>,
    paths: &[PathBuf],
    opts: &BackupOptions,
    progress: &Progress,
    cancel: &AtomicBool,
    hooks: &mut dyn BackupHooks,
) -> Result<BackupOutcome> {
    let started = Utc::now();
    let clock = Instant::now();
    if paths.is_empty() {
        return Err(Error::Invalid(
            "nothing to back up: give at least one path".into(),
        ));
    }
    let mut paths: Vec<PathBuf> = paths
        .iter()
        .map(|p| std::path::absolute(p).map_err(|e| Error::io(p, e)))
        .collect::<Result<_>>()?;
    paths.sort();
    paths.dedup();
    for p in &paths {
        p.symlink_metadata().map_err(|e| Error::io(p, e))?;
    }
    let recorded: Vec<String> = opts
        .record_paths_as
        .clone()
        .unwrap_or_else(|| paths.clone())
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let hostname = opts.hostname.clone().unwrap_or_else(crate::host::hostname);

    let parent = if opts.force {
        None
    } else {
        match opts.parent {
            Some(id) => Some((id, repo.load_snapshot(&id)?)),
            None => repo
                .list_snapshots()?
                .into_iter()
                .rev()
                .find(|(_, s)| s.hostname == hostname && s.paths == recorded),
        }
    };
    let parent_tree = match &parent {
        Some((_, s)) => repo.load_tree(&s.tree).ok(),
        None => None,
    };

    let uploaders = if repo.storage().properties().high_latency {
        4
    } else {
        1
    };
    let saver = BlobSaver::with_checkpoints(repo.clone(), uploaders, opts.checkpoints.clone());
    let ctx = Ctx {
        repo: &repo,
        saver: &saver,
        opts,
        names: Names::default(),
        warnings: Mutex::new(Vec::new()),
        consistency: Mutex::new(Consistency::default()),
        excluded: Mutex::new((Vec::new(), 0)),
        progress,
        cancel,
        files_new: AtomicU64::new(0),
        files_changed: AtomicU64::new(0),
        files_unchanged: AtomicU64::new(0),
        dirs: AtomicU64::new(0),
        other: AtomicU64::new(0),
        bytes_read: AtomicU64::new(0),
        total_bytes: AtomicU64::new(0),
        total_files: AtomicU64::new(0),
    };

    let single_dir = paths.len() == 1
        && paths[0]
            .symlink_metadata()
            .map(|m| m.is_dir())
            .unwrap_or(false);
    let (result, attachments) = std::thread::scope(|scope| {
        let ctx = &ctx;
        let producers: Vec<_> = opts
            .attachments
            .iter()
            .map(|src| {
                scope.spawn(move || {
                    let mut sink = AttachmentSink {
                        ctx,
                        nodes: Vec::new(),
                        bytes: 0,
                    };
                    let mut a = src.produce(&mut sink)?;
                    let mut tree = Tree { nodes: sink.nodes };
                    tree.sort();
                    a.tree = ctx.saver.save(BlobKind::Tree, &tree.encode())?;
                    a.bytes = sink.bytes;
                    Ok(a)
                })
            })
            .collect();
        let result = ctx.backup_roots(&paths, single_dir, parent_tree.as_ref());
        let attachments: Result<Vec<Attachment>> = producers
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::Invalid("an attachment producer panicked".into()))
                })
            })
            .collect();
        (result, attachments)
    });
    let result = match (result, attachments) {
        (Ok(r), Ok(a)) => Ok((r, a)),
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    let mut summary = Summary {
        files_new: ctx.files_new.load(Ordering::Relaxed),
        files_changed: ctx.files_changed.load(Ordering::Relaxed),
        files_unchanged: ctx.files_unchanged.load(Ordering::Relaxed),
        dirs: ctx.dirs.load(Ordering::Relaxed),
        other_entries: ctx.other.load(Ordering::Relaxed),
        bytes_read: ctx.bytes_read.load(Ordering::Relaxed),
        total_bytes: ctx.total_bytes.load(Ordering::Relaxed),
        total_files: ctx.total_files.load(Ordering::Relaxed),
        started: Some(started),
        ..Summary::default()
    };
    let mut warnings = std::mem::take(&mut *ctx.warnings.lock().unwrap());
    let mut consistency = std::mem::take(&mut *ctx.consistency.lock().unwrap());
    let (mut excluded, excluded_total) = std::mem::take(&mut *ctx.excluded.lock().unwrap());
    excluded.sort();
    drop(ctx);
    summary.bytes_added = saver.stats.bytes_added.load(Ordering::Relaxed);
    summary.bytes_stored = saver.stats.bytes_stored.load(Ordering::Relaxed);
    summary.blobs_added = saver.stats.blobs_added.load(Ordering::Relaxed);
    // Index what was stored even on failure, so that the next run reuses it; but never when
    // the lock was lost, since a prune may have deleted some of it meanwhile.
    hooks.before_commit()?;
    let storage_failed = saver.has_failed();
    let finished = saver.finish();
    let ((tree, layout, root), attachments) = match (result, finished) {
        (Ok(r), Ok(_)) => r,
        // Workers stop with a generic error when an upload fails; the uploader's error
        // (disk full, permission denied, ...) is the one that names the cause.
        (Err(_), Err(e)) if storage_failed => return Err(e),
        (Err(e), _) | (Ok(_), Err(e)) => return Err(e),
    };
    warnings.sort_by(|a, b| a.path.cmp(&b.path));
    consistency.reread.sort();
    consistency.inconsistent.sort();
    consistency.vanished.sort();
    consistency.mode = "none".into();
    summary.duration_secs = clock.elapsed().as_secs_f64();
    let mut snapshot = Snapshot {
        time: started,
        tree,
        paths: recorded,
        hostname,
        username: crate::host::username(),
        tags: opts.tags.clone(),
        parent: parent.map(|(id, _)| id),
        replaces: None,
        rewrites: Vec::new(),
        program_version: env!("CARGO_PKG_VERSION").to_string(),
        layout,
        root,
        summary,
        warnings,
        consistency: Some(consistency),
        attachments,
        extra: Default::default(),
    };
    hooks.annotate(&mut snapshot);
    let id = repo.save_snapshot(&snapshot)?;
    Ok(BackupOutcome {
        id,
        snapshot,
        excluded,
        excluded_total,
    })
}

impl Ctx<'_> {
    /// The root tree of the paths given: a directory's content, or their full paths.
    fn backup_roots(
        &self,
        paths: &[PathBuf],
        single_dir: bool,
        parent_tree: Option<&Tree>,
    ) -> Result<(BlobId, RootLayout, Option<Node>)> {
        if single_dir {
            let root = &paths[0];
            let meta = root.symlink_metadata().map_err(|e| Error::io(root, e))?;
            let mut root_node = fsmeta::node_from_metadata(RawName::from("."), &meta, &self.names);
            root_node.xattrs = fsmeta::read_xattrs(root).unwrap_or_default();
            self.backup_dir(root, Path::new(""), parent_tree, meta.dev())
                .map(|tree| (tree, RootLayout::DirContent, Some(root_node)))
        } else {
            let rels: Vec<Vec<RawName>> = paths
                .iter()
                .map(|p| {
                    p.components()
                        .skip(1)
                        .map(|c| RawName::from(c.as_os_str()))
                        .collect()
                })
                .collect();
            self.full_paths_tree(Path::new("/"), &rels, parent_tree)
                .map(|tree| (tree, RootLayout::FullPaths, None))
        }
    }

    fn warn(&self, path: &Path, message: impl std::fmt::Display) {
        tracing::warn!("{}: {}", path.display(), message);
        self.warnings.lock().unwrap().push(Warning {
            path: path.to_string_lossy().into_owned(),
            message: message.to_string(),
        });
    }

    /// A file deleted under a running application: noted, not warned about, when expected.
    fn vanished(&self, path: &Path, e: &std::io::Error) -> bool {
        if self.opts.expect_vanishing && e.kind() == std::io::ErrorKind::NotFound {
            let p = path.to_string_lossy().into_owned();
            self.consistency.lock().unwrap().vanished.push(p);
            true
        } else {
            false
        }
    }

    fn check_cancel(&self) -> Result<()> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        if self.saver.has_failed() {
            return Err(Error::Invalid(
                "storing data in the repository failed".into(),
            ));
        }
        Ok(())
    }

    /// Backs up one directory's entries and stores its tree; returns the tree's id.
    fn backup_dir(
        &self,
        dir: &Path,
        rel: &Path,
        parent: Option<&Tree>,
        root_dev: u64,
    ) -> Result<BlobId> {
        self.check_cancel()?;
        let mut names: Vec<std::ffi::OsString> = Vec::new();
        match std::fs::read_dir(dir) {
            Ok(rd) => {
                for e in rd {
                    match e {
                        Ok(e) => names.push(e.file_name()),
                        Err(e) => self.warn(dir, format!("reading directory: {e}")),
                    }
                }
            }
            Err(e) => self.warn(dir, format!("reading directory: {e}")),
        }
        names.sort();
        let nodes: Vec<Option<Node>> = names
            .par_iter()
            .map(|name| {
                let raw = RawName::from(name.as_os_str());
                let parent_node = parent.and_then(|t| t.find(&raw.0));
                self.backup_entry(&dir.join(name), &rel.join(name), raw, parent_node, root_dev)
            })
            .collect::<Result<_>>()?;
        let mut tree = Tree {
            nodes: nodes.into_iter().flatten().collect(),
        };
        tree.sort();
        self.saver.save(BlobKind::Tree, &tree.encode())
    }

    /// One entry of a directory; `None` when it is excluded or could not be read.
    fn backup_entry(
        &self,
        path: &Path,
        rel: &Path,
        name: RawName,
        parent: Option<&Node>,
        root_dev: u64,
    ) -> Result<Option<Node>> {
        self.check_cancel()?;
        if self.opts.excludes.excluded(path, rel) {
            let mut ex = self.excluded.lock().unwrap();
            if ex.0.len() < EXCLUDED_LISTED {
                ex.0.push(path.to_path_buf());
            }
            ex.1 += 1;
            return Ok(None);
        }
        let keep_empty = self.opts.empty_dirs.excluded(path, rel);
        let meta = match path.symlink_metadata() {
            Ok(m) => m,
            Err(e) if self.vanished(path, &e) => return Ok(None),
            Err(e) => {
                self.warn(path, format!("cannot stat: {e}"));
                return Ok(None);
            }
        };
        let mut node = fsmeta::node_from_metadata(name, &meta, &self.names);
        keep_access_time(&mut node, parent);
        match fsmeta::read_xattrs(path) {
            Ok(x) => node.xattrs = x,
            Err(e) => self.warn(path, format!("extended attributes not saved: {e}")),
        }
        if keep_empty && node.kind != NodeKind::Dir {
            return Ok(None);
        }
        match node.kind {
            NodeKind::Dir => {
                self.dirs.fetch_add(1, Ordering::Relaxed);
                if self.opts.excludes.has_marker(path) {
                    return Ok(None);
                }
                if keep_empty || (self.opts.one_file_system && meta.dev() != root_dev) {
                    // Keep the mount point itself, empty, as tar --one-file-system does.
                    node.subtree =
                        Some(self.saver.save(BlobKind::Tree, &Tree::default().encode())?);
                    return Ok(Some(node));
                }
                let parent_tree = match parent {
                    Some(Node {
                        kind: NodeKind::Dir,
                        subtree: Some(t),
                        ..
                    }) => self.repo.load_tree(t).ok(),
                    _ => None,
                };
                node.subtree = Some(self.backup_dir(path, rel, parent_tree.as_ref(), root_dev)?);
            }
            NodeKind::File => {
                self.total_files.fetch_add(1, Ordering::Relaxed);
                self.total_bytes.fetch_add(node.size, Ordering::Relaxed);
                if let Some(p) = parent.filter(|p| unchanged(p, &node)) {
                    if p.content.iter().all(|c| self.saver.contains(c)) {
                        node.content = p.content.clone();
                        self.files_unchanged.fetch_add(1, Ordering::Relaxed);
                        self.progress.files_done.fetch_add(1, Ordering::Relaxed);
                        self.progress
                            .bytes_done
                            .fetch_add(node.size, Ordering::Relaxed);
                        return Ok(Some(node));
                    }
                }
                match self.read_file(path, &mut node) {
                    Ok(()) => {
                        let counter = if parent.is_some() {
                            &self.files_changed
                        } else {
                            &self.files_new
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(Error::Io { source, .. }) if self.vanished(path, &source) => {
                        return Ok(None);
                    }
                    Err(Error::Io { source, .. }) => {
                        self.warn(path, format!("cannot read: {source}"));
                        return Ok(None);
                    }
                    Err(e) => return Err(e),
                }
                self.progress.files_done.fetch_add(1, Ordering::Relaxed);
            }
            NodeKind::Symlink => {
                self.other.fetch_add(1, Ordering::Relaxed);
                match std::fs::read_link(path) {
                    Ok(t) => node.target = Some(RawName::from(t.into_os_string())),
                    Err(e) => {
                        self.warn(path, format!("cannot read link: {e}"));
                        return Ok(None);
                    }
                }
            }
            _ => {
                self.other.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(Some(node))
    }

    /// Chunks and stores a file's content. A file that changes while it is read is read again
    /// up to `reread_changed` times; what is stored describes the inode actually read (a file
    /// replaced by rename between listing and reading is read whole, in its new version).
    fn read_file(&self, path: &Path, node: &mut Node) -> Result<()> {
        let mut attempt = 0;
        loop {
            let file = open_noatime(path).map_err(|e| Error::io(path, e))?;
            let before = file.metadata().map_err(|e| Error::io(path, e))?;
            if !same_version(node, &before) {
                refresh_from(node, &before);
            }
            // At most what the file held when opened (as tar does): a log that a writer keeps
            // appending to would otherwise be chased to its end, which a writer faster than
            // the backup never lets it reach. Growth shows as a change below.
            let (content, read) = self.read_content(path, &file, before.size())?;
            self.bytes_read.fetch_add(read, Ordering::Relaxed);
            self.progress.bytes_done.fetch_add(read, Ordering::Relaxed);
            let after = file.metadata().map_err(|e| Error::io(path, e))?;
            let changed = !same_version(node, &after) || read != node.size;
            node.size = read;
            node.content = content;
            if !changed {
                if attempt > 0 {
                    let p = path.to_string_lossy().into_owned();
                    self.consistency.lock().unwrap().reread.push(p);
                }
                return Ok(());
            }
            if attempt < self.opts.reread_changed {
                attempt += 1;
                refresh_from(node, &after);
                continue;
            }
            if self.opts.reread_changed > 0 {
                let p = path.to_string_lossy().into_owned();
                tracing::warn!(
                    "{p}: still changing after {attempt} re-reads; the copy may be torn"
                );
                self.consistency.lock().unwrap().inconsistent.push(p);
            } else {
                self.warn(
                    path,
                    "changed while it was being read; the copy may be inconsistent",
                );
            }
            return Ok(());
        }
    }

    /// Reads, chunks and stores the content of an open file with bounded memory; returns the
    /// chunk ids and the bytes read (the caller counts them once the file is done).
    fn read_content(&self, path: &Path, file: &File, limit: u64) -> Result<(Vec<BlobId>, u64)> {
        let mut reader = file.take(limit);
        // Files that fit in a few batches are sealed chunk by chunk on the thread reading them
        // (files are read in parallel already); larger ones are pipelined over every core.
        let (content, read) = if limit < 2 * CHUNK_BATCH_BYTES as u64 {
            self.store_inline(path, &mut reader)?
        } else {
            self.store_stream(path, &mut reader)?
        };
        self.progress.bytes_done.fetch_sub(read, Ordering::Relaxed);
        Ok((content, read))
    }

    /// Cuts what `reader` yields into chunks, counting them as read and stopping when the run
    /// is cancelled; `store` gets each chunk in order. Returns the bytes read; errors name
    /// `path`.
    fn for_each_chunk(
        &self,
        path: &Path,
        reader: &mut dyn Read,
        mut store: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<u64> {
        crate::chunker::for_each_chunk(
            reader,
            &self.repo.config().chunker,
            |e| Error::io(path, e),
            |chunk| {
                self.check_cancel()?;
                self.progress
                    .bytes_done
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                store(chunk)
            },
        )
    }

    /// Cuts a small file into chunks and stores each as it is cut; returns the chunk ids and
    /// the byte count.
    fn store_inline(&self, path: &Path, reader: &mut dyn Read) -> Result<(Vec<BlobId>, u64)> {
        let mut content = Vec::new();
        let read = self.for_each_chunk(path, reader, |chunk| {
            content.push(self.saver.save(BlobKind::Data, chunk)?);
            Ok(())
        })?;
        Ok((content, read))
    }

    /// Cuts a stream into chunks and stores them. Cutting is sequential, but hashing,
    /// compressing and encrypting are not: chunks are cut in batches of about
    /// [`CHUNK_BATCH_BYTES`], each in a buffer of its own (no copy per chunk), each batch is
    /// sealed on every core while the next is cut, and the ids are put back in order. One
    /// large file (a database dump) so keeps every core busy, with at most
    /// [`BATCHES_IN_FLIGHT`] batches in memory per file.
    fn store_stream(&self, path: &Path, reader: &mut dyn Read) -> Result<(Vec<BlobId>, u64)> {
        let sealed: Mutex<Vec<(usize, Result<Vec<BlobId>>)>> = Mutex::new(Vec::new());
        let in_flight = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let spare: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
        let seal = |batch: ChunkBatch| -> Result<Vec<BlobId>> {
            let ids = batch
                .chunks
                .par_iter()
                .map(|c| self.saver.save(BlobKind::Data, &batch.buf[c.clone()]))
                .collect();
            spare.lock().unwrap().push(batch.buf);
            ids
        };
        let read = rayon::in_place_scope(|scope| {
            let mut batches = 0;
            crate::chunker::for_each_batch(
                reader,
                &self.repo.config().chunker,
                CHUNK_BATCH_BYTES,
                || spare.lock().unwrap().pop(),
                |e| Error::io(path, e),
                |batch| {
                    self.check_cancel()?;
                    // A batch that failed (storage refused a pack) fails the file: stop
                    // reading rather than cut gigabytes of a dump that cannot be stored. Its
                    // own error is the one reported, below.
                    if failed.load(Ordering::Acquire) {
                        return Err(Error::Invalid("storing a batch of chunks failed".into()));
                    }
                    self.progress
                        .bytes_done
                        .fetch_add(batch.bytes(), Ordering::Relaxed);
                    // Wait for a free slot, helping with queued work meanwhile (never
                    // blocking a worker that the batches in flight may need).
                    while in_flight.load(Ordering::Acquire) >= BATCHES_IN_FLIGHT {
                        if rayon::yield_now() != Some(rayon::Yield::Executed) {
                            std::thread::sleep(std::time::Duration::from_micros(200));
                        }
                    }
                    in_flight.fetch_add(1, Ordering::AcqRel);
                    let (index, sealed, in_flight, failed, seal) =
                        (batches, &sealed, &in_flight, &failed, &seal);
                    batches += 1;
                    scope.spawn(move |_| {
                        let ids = seal(batch);
                        if ids.is_err() {
                            failed.store(true, Ordering::Release);
                        }
                        sealed.lock().unwrap().push((index, ids));
                        in_flight.fetch_sub(1, Ordering::AcqRel);
                    });
                    Ok(())
                },
            )
        });
        let mut sealed = sealed.into_inner().unwrap();
        sealed.sort_by_key(|(i, _)| *i);
        let mut content = Vec::new();
        for (_, ids) in sealed {
            content.extend(ids?);
        }
        Ok((content, read?))
    }

    /// The root tree of a snapshot of several paths: their full paths from `/`.
    fn full_paths_tree(
        &self,
        base: &Path,
        rels: &[Vec<RawName>],
        parent: Option<&Tree>,
    ) -> Result<BlobId> {
        let mut groups: std::collections::BTreeMap<RawName, Vec<Vec<RawName>>> = Default::default();
        for r in rels {
            if let Some((first, rest)) = r.split_first() {
                groups.entry(first.clone()).or_default().push(rest.to_vec());
            }
        }
        let mut nodes = Vec::new();
        for (name, rests) in groups {
            let path = base.join(name.as_os_str());
            let parent_node = parent.and_then(|t| t.find(&name.0));
            if rests.iter().any(|r| r.is_empty()) {
                let dev = path.symlink_metadata().map(|m| m.dev()).unwrap_or(0);
                if let Some(n) = self.backup_entry(
                    &path,
                    Path::new(name.as_os_str()),
                    name.clone(),
                    parent_node,
                    dev,
                )? {
                    nodes.push(n);
                }
            } else {
                let meta = path.symlink_metadata().map_err(|e| Error::io(&path, e))?;
                let mut node = fsmeta::node_from_metadata(name.clone(), &meta, &self.names);
                keep_access_time(&mut node, parent_node);
                node.xattrs = fsmeta::read_xattrs(&path).unwrap_or_default();
                let parent_tree = match parent_node {
                    Some(Node {
                        subtree: Some(t), ..
                    }) => self.repo.load_tree(t).ok(),
                    _ => None,
                };
                node.subtree = Some(self.full_paths_tree(&path, &rests, parent_tree.as_ref())?);
                nodes.push(node);
            }
        }
        let mut tree = Tree { nodes };
        tree.sort();
        self.saver.save(BlobKind::Tree, &tree.encode())
    }
}

/// Whether `meta` describes the same version of the file as `node`.
fn same_version(node: &Node, meta: &std::fs::Metadata) -> bool {
    meta.ino() == node.inode
        && meta.size() == node.size
        && meta.mtime() == node.mtime.0
        && meta.mtime_nsec() as u32 == node.mtime.1
        && meta.ctime() == node.ctime.0
        && meta.ctime_nsec() as u32 == node.ctime.1
}

/// Takes over what `meta` says of the file, keeping name, owner names and xattrs.
fn refresh_from(node: &mut Node, meta: &std::fs::Metadata) {
    node.size = meta.size();
    node.mode = meta.mode() & 0o7777;
    node.mtime = Timestamp(meta.mtime(), meta.mtime_nsec() as u32);
    node.atime = Timestamp(meta.atime(), meta.atime_nsec() as u32);
    node.ctime = Timestamp(meta.ctime(), meta.ctime_nsec() as u32);
    node.inode = meta.ino();
    node.links = meta.nlink();
}

/// Reading an entry (a `cat`, a search, an antivirus, the application itself, or listing a
/// folder) moves its access time and nothing else. Were that recorded, every such read would
/// make the next backup store new trees up to the root for nothing. So an entry whose kind,
/// size, mtime, ctime and inode are those of the parent snapshot keeps the parent's access
/// time: a tree changes only when its content or metadata changed (see docs/format.md).
fn keep_access_time(node: &mut Node, parent: Option<&Node>) {
    if let Some(p) = parent.filter(|p| same_metadata(p, node)) {
        node.atime = p.atime;
    }
}

/// Same kind, size, mtime, ctime and inode: nothing but a read happened to the entry since.
fn same_metadata(parent: &Node, now: &Node) -> bool {
    parent.kind == now.kind
        && parent.size == now.size
        && parent.mtime == now.mtime
        && parent.ctime == now.ctime
        && parent.inode == now.inode
}

/// Bytes of one file's chunks sealed together, in parallel: 8 chunks of 512 KiB on average,
/// enough to keep several cores busy.
const CHUNK_BATCH_BYTES: usize = 4 << 20;
/// Batches of one file being sealed while the next is cut: memory per file read is bounded
/// by this many batches plus the one being filled.
const BATCHES_IN_FLIGHT: usize = 3;

/// Same file as in the parent snapshot, judged from metadata alone.
fn unchanged(parent: &Node, now: &Node) -> bool {
    parent.kind == NodeKind::File && same_metadata(parent, now)
}

/// Opens for reading without updating atime where the kernel allows it (own files, or root).
pub(crate) fn open_noatime(path: &Path) -> std::io::Result<File> {
    match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME)
        .open(path)
    {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => File::open(path),
        other => other,
    }
}

/// Counts files and bytes under `paths` for a progress estimate.
pub fn scan(paths: &[PathBuf], excludes: &Excludes, progress: &Progress, cancel: &AtomicBool) {
    fn walk(p: &Path, rel: &Path, ex: &Excludes, pr: &Progress, cancel: &AtomicBool) {
        if cancel.load(Ordering::Relaxed) {
            return;
        }
        let Ok(rd) = std::fs::read_dir(p) else { return };
        for e in rd.flatten() {
            let path = e.path();
            let rel = rel.join(e.file_name());
            if ex.excluded(&path, &rel) {
                continue;
            }
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                walk(&path, &rel, ex, pr, cancel);
            } else if m.is_file() {
                pr.total_files.fetch_add(1, Ordering::Relaxed);
                pr.total_bytes.fetch_add(m.len(), Ordering::Relaxed);
            }
        }
    }
    for p in paths {
        match p.symlink_metadata() {
            Ok(m) if m.is_dir() => walk(p, Path::new(""), excludes, progress, cancel),
            Ok(m) if m.is_file() => {
                progress.total_files.fetch_add(1, Ordering::Relaxed);
                progress.total_bytes.fetch_add(m.len(), Ordering::Relaxed);
            }
            _ => {}
        }
    }
    progress.scan_finished.store(true, Ordering::Relaxed);
}
