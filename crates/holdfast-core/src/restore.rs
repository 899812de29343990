//! Restore: recreate a snapshot (or part of it) below a target directory.
//!
//! Safety first: names were checked when trees were decoded (no `..`, no `/`, none twice in
//! one directory), directories are created by us, and when overwriting, anything in the way
//! that is not what we expect (a symlink where a directory goes, say) is removed rather than
//! followed, so nothing is ever written outside the target. Files, links and special files
//! are made under a temporary name and renamed into place when complete, metadata included
//! (see `pending`).
//!
//! Memory does not grow with the number of files: the snapshot is walked depth first, on a
//! thread of its own, and restored in batches of a bounded number of entries, at most one
//! batch walked ahead of the one being written. A restore needs a constant plus the index,
//! and the first files appear as soon as the first (small) batch is walked. Within a batch,
//! file content comes first, metadata included; then hard links, symlinks and special files;
//! then the metadata of the directories whose whole subtree is now restored, so that nothing
//! done afterwards changes their times. A symlink made in one batch never stands where a later
//! batch writes, since a name appears once per directory: no write passes through a link the
//! snapshot itself contains.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

mod by_pack;
mod pending;
pub mod preview;

use pending::{put_entry, PendingFile};

use crate::error::{Error, Result};
use crate::exclude::Excludes;
use crate::fsmeta::{self, Names, OwnerPolicy};
use crate::id::BlobId;
use crate::repo::Repository;
use crate::snapshot::{RootLayout, Snapshot};
use crate::tree::{Node, NodeKind};

#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    pub target: PathBuf,
    /// Only restore entries matching these patterns (and the directories leading to them).
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub overwrite: bool,
    pub verify: bool,
    pub owners: OwnerPolicy,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RestoreReport {
    pub files: u64,
    pub dirs: u64,
    pub links: u64,
    pub other: u64,
    pub bytes: u64,
    pub verified_files: u64,
    pub warnings: Vec<String>,
}

#[derive(Default, Debug)]
pub struct RestoreProgress {
    /// The snapshot's size, or, when patterns select part of it, the size of what has been
    /// walked so far (it grows as the restore goes).
    pub total_bytes: AtomicU64,
    pub bytes_done: AtomicU64,
    pub files_done: AtomicU64,
}

/// Entries restored per batch from a local repository: large enough that the pause at the end
/// of a batch (waiting for its slowest file) is rare, small enough that a batch's plan takes
/// a few MiB.
const BATCH_ENTRIES: usize = 4096;
/// From object storage a batch is fetched pack by pack, and a pack holding chunks of two
/// batches is read twice: larger batches read fewer packs twice.
const BATCH_ENTRIES_REMOTE: usize = 32_768;

/// What one batch creates, in the order it is created.
#[derive(Default)]
struct Batch {
    files: Vec<(PathBuf, Node)>,
    /// Further names of a file restored in this batch or an earlier one: (name, first name).
    hard_links: Vec<(PathBuf, PathBuf)>,
    links: Vec<(PathBuf, Node)>,
    other: Vec<(PathBuf, Node)>,
    /// Directories whose subtree has been walked, deepest first.
    finished_dirs: Vec<(PathBuf, Node)>,
}

impl Batch {
    fn len(&self) -> usize {
        self.files.len()
            + self.hard_links.len()
            + self.links.len()
            + self.other.len()
            + self.finished_dirs.len()
    }
}

/// A directory on the path being walked; with include patterns, made only once something in
/// it is restored.
struct Frame {
    rel: PathBuf,
    node: Node,
    made: bool,
}

/// Everything a file needs once its content is written: checking it and applying metadata.
pub(crate) struct FileFinish<'a> {
    repo: &'a Repository,
    verify: bool,
    owners: OwnerPolicy,
    names: Names,
    is_root: bool,
    warnings: Mutex<Vec<String>>,
}

impl FileFinish<'_> {
    /// Verifies (when asked) and applies metadata through the open temporary file, before it
    /// is renamed: a file that does not match the snapshot never gets its real name.
    fn finish(&self, f: &File, path: &Path, node: &Node) -> Result<()> {
        if self.verify {
            verify_file(self.repo, f, path, node)?;
        }
        let w = fsmeta::apply_file_metadata(f, path, node, &self.names, self.owners, self.is_root);
        if !w.is_empty() {
            self.warnings.lock().unwrap().extend(w);
        }
        Ok(())
    }
}

/// Walks the snapshot on a thread of its own, making directories as it goes, and hands
/// batches to the writer, at most one ahead: the next batch is walked while one is written.
struct Walker<'a> {
    repo: &'a Repository,
    target: &'a Path,
    overwrite: bool,
    include: Option<&'a Excludes>,
    exclude: &'a Excludes,
    progress: &'a RestoreProgress,
    /// Whether `progress.total_bytes` grows as the walk goes (a partial restore).
    total_grows: bool,
    batch_entries: usize,
    batches_sent: u32,
    /// First name restored for each hard-linked inode of the snapshot.
    first_of: HashMap<(u64, u64), PathBuf>,
    batch: Batch,
    dirs: u64,
    to_writer: std::sync::mpsc::SyncSender<Batch>,
}

/// Writes what the walker found, batch by batch, in the order found.
struct Writer<'a> {
    repo: &'a Repository,
    target: &'a Path,
    overwrite: bool,
    progress: &'a RestoreProgress,
    cancel: &'a AtomicBool,
    fetchers: Option<rayon::ThreadPool>,
    finish: FileFinish<'a>,
    report: RestoreReport,
}

/// The first batch is small, so that writing starts at once; later ones are full size.
const FIRST_BATCH_ENTRIES: usize = 256;

pub fn restore(
    repo: &Repository,
    snap: &Snapshot,
    opts: &RestoreOptions,
    progress: &RestoreProgress,
    cancel: &AtomicBool,
) -> Result<RestoreReport> {
    let target = &opts.target;
    prepare_target(target, opts.overwrite)?;
    let include = if opts.include.is_empty() {
        None
    } else {
        Some(Excludes::new(&opts.include, &[])?)
    };
    let exclude = Excludes::new(&opts.exclude, &[])?;
    let total_grows = include.is_some() || !opts.exclude.is_empty();
    if !total_grows {
        progress
            .total_bytes
            .store(snap.summary.total_bytes, Ordering::Relaxed);
    }
    let fetchers = remote_pool(repo);
    let batch_entries = if fetchers.is_some() {
        BATCH_ENTRIES_REMOTE
    } else {
        BATCH_ENTRIES
    };
    let mut writer = Writer {
        repo,
        target,
        overwrite: opts.overwrite,
        progress,
        cancel,
        fetchers,
        finish: FileFinish {
            repo,
            verify: opts.verify,
            owners: opts.owners,
            names: Names::default(),
            is_root: fsmeta::running_as_root(),
            warnings: Mutex::new(Vec::new()),
        },
        report: RestoreReport::default(),
    };
    let (to_writer, batches) = std::sync::mpsc::sync_channel(1);
    let mut walker = Walker {
        repo,
        target,
        overwrite: opts.overwrite,
        include: include.as_ref(),
        exclude: &exclude,
        progress,
        total_grows,
        batch_entries,
        batches_sent: 0,
        first_of: HashMap::new(),
        batch: Batch::default(),
        dirs: 0,
        to_writer,
    };
    let (walked, written) = std::thread::scope(|s| {
        let walking = s.spawn(move || -> Result<u64> {
            walker.walk(&snap.tree, Path::new(""), false, &mut Vec::new())?;
            walker.send()?;
            Ok(walker.dirs)
        });
        let mut written = Ok(());
        for batch in &batches {
            written = writer.write(batch);
            if written.is_err() {
                break;
            }
        }
        // A writer that stopped early lets the walker's next send fail, which ends it.
        drop(batches);
        let walked = walking
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (walked, written)
    });
    // The writer's error first: when it stops, the walker only notices.
    written?;
    writer.report.dirs = walked?;
    if let (RootLayout::DirContent, Some(root)) = (snap.layout, &snap.root) {
        if include.is_none() {
            writer.apply_metadata(target, root);
        }
    }
    let mut report = writer.report;
    report.warnings = writer.finish.warnings.into_inner().unwrap();
    Ok(report)
}

impl Walker<'_> {
    /// Walks one tree; `forced` means an ancestor matched the include patterns, `stack` holds
    /// the directories leading here.
    fn walk(
        &mut self,
        tree: &BlobId,
        prefix: &Path,
        forced: bool,
        stack: &mut Vec<Frame>,
    ) -> Result<()> {
        let t = self.repo.load_tree(tree)?;
        for n in t.nodes {
            let rel = prefix.join(n.name.as_os_str());
            let Some(matched) = selection(self.include, self.exclude, &rel, forced) else {
                continue;
            };
            if n.kind == NodeKind::Dir {
                let subtree = n.subtree;
                stack.push(Frame {
                    rel: rel.clone(),
                    node: n,
                    made: false,
                });
                if matched {
                    self.make_dirs(stack)?;
                }
                if let Some(sub) = subtree {
                    self.walk(&sub, &rel, matched, stack)?;
                }
                let frame = stack.pop().expect("pushed above");
                if frame.made {
                    self.batch.finished_dirs.push((frame.rel, frame.node));
                }
            } else if matched {
                self.make_dirs(stack)?;
                match n.kind {
                    NodeKind::File => self.add_file(rel, n),
                    NodeKind::Symlink => self.batch.links.push((rel, n)),
                    _ => self.batch.other.push((rel, n)),
                }
            } else {
                continue;
            }
            let limit = (FIRST_BATCH_ENTRIES << self.batches_sent.min(16)).min(self.batch_entries);
            if self.batch.len() >= limit {
                self.send()?;
            }
        }
        Ok(())
    }

    /// Hands the batch to the writer; fails when the writer has stopped.
    fn send(&mut self) -> Result<()> {
        let batch = std::mem::take(&mut self.batch);
        self.batches_sent += 1;
        self.to_writer.send(batch).map_err(|_| Error::Interrupted)
    }

    /// Makes the directories on the current path that are not made yet.
    fn make_dirs(&mut self, stack: &mut [Frame]) -> Result<()> {
        for frame in stack.iter_mut().filter(|f| !f.made) {
            make_dir(&self.target.join(&frame.rel), self.overwrite)?;
            frame.made = true;
            self.dirs += 1;
        }
        Ok(())
    }

    /// Hard-linked files: the first name of each inode gets the content, the others are linked
    /// to it.
    fn add_file(&mut self, rel: PathBuf, node: Node) {
        if node.links > 1 && node.inode != 0 {
            let key = (node.dev, node.inode);
            if let Some(first) = self.first_of.get(&key) {
                self.batch.hard_links.push((rel, first.clone()));
                return;
            }
            self.first_of.insert(key, rel.clone());
        }
        if self.total_grows {
            self.progress
                .total_bytes
                .fetch_add(node.size, Ordering::Relaxed);
        }
        self.batch.files.push((rel, node));
    }
}

impl Writer<'_> {
    fn write(&mut self, batch: Batch) -> Result<()> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        let target = self.target;
        let overwrite = self.overwrite;

        // Object storage: pack by pack, many at once (each read is a round trip). A local
        // disk: file by file, one thread per core, each chunk one ranged read; a large file's
        // chunks are written in parallel.
        match &self.fetchers {
            Some(pool) => by_pack::write_files(self, &batch.files, pool)?,
            None => batch
                .files
                .par_iter()
                .try_for_each(|(rel, node)| -> Result<()> {
                    if self.cancel.load(Ordering::Relaxed) {
                        return Err(Error::Interrupted);
                    }
                    self.write_file(&target.join(rel), node)?;
                    self.progress.files_done.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                })?,
        }
        self.report.files += batch.files.len() as u64;
        self.report.bytes += batch.files.iter().map(|(_, n)| n.size).sum::<u64>();
        if self.finish.verify {
            self.report.verified_files += batch.files.len() as u64;
        }

        for (rel, first) in &batch.hard_links {
            let path = target.join(rel);
            put_entry(&path, overwrite, |tmp| {
                std::fs::hard_link(target.join(first), tmp)
            })?
            .map_err(|e| Error::io(&path, e))?;
            self.report.files += 1;
        }
        for (rel, node) in &batch.links {
            let path = target.join(rel);
            let t = node
                .target
                .as_ref()
                .map(|t| t.as_os_str().to_owned())
                .unwrap_or_default();
            put_entry(&path, overwrite, |tmp| std::os::unix::fs::symlink(&t, tmp))?
                .map_err(|e| Error::io(&path, e))?;
            self.apply_metadata(&path, node);
            self.report.links += 1;
        }
        for (rel, node) in &batch.other {
            let path = target.join(rel);
            match put_entry(&path, overwrite, |tmp| make_special(tmp, node))? {
                Ok(()) => {
                    self.apply_metadata(&path, node);
                    self.report.other += 1;
                }
                Err(e) => self
                    .finish
                    .warnings
                    .lock()
                    .unwrap()
                    .push(format!("{}: not restored: {e}", path.display())),
            }
        }
        // Everything in these directories is in place, and setting a child's metadata does
        // not touch its parent's: in any order, on every core.
        batch
            .finished_dirs
            .par_iter()
            .for_each(|(rel, node)| self.apply_metadata(&target.join(rel), node));
        Ok(())
    }

    fn apply_metadata(&self, path: &Path, node: &Node) {
        let f = &self.finish;
        let w = fsmeta::apply_metadata(path, node, &f.names, f.owners, f.is_root);
        if !w.is_empty() {
            f.warnings.lock().unwrap().extend(w);
        }
    }

    fn write_file(&self, path: &Path, node: &Node) -> Result<()> {
        let (pending, f) = PendingFile::create(path, self.overwrite)?;
        let size =
            write_content(self.repo, &f, path, node, self.progress).map_err(|e| e.in_file(path))?;
        if node.sparse {
            // A sparse file may end in a hole.
            f.set_len(size).map_err(|e| Error::io(path, e))?;
        }
        self.finish.finish(&f, path, node)?;
        drop(f);
        pending.place(self.overwrite)
    }
}

/// Whether an entry at `rel` is restored: `None` when excluded (and everything below it),
/// else whether it matched the include patterns (`forced`: an ancestor did). The one rule of
/// a restore and of its preview.
fn selection(
    include: Option<&Excludes>,
    exclude: &Excludes,
    rel: &Path,
    forced: bool,
) -> Option<bool> {
    let abs = Path::new("/").join(rel);
    if exclude.excluded(&abs, rel) {
        return None;
    }
    Some(forced || include.map(|i| i.excluded(&abs, rel)).unwrap_or(true))
}

/// Why a restore into `target` would stop before writing anything, if it would.
fn target_refusal(target: &Path, overwrite: bool) -> Result<Option<String>> {
    match std::fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() => {
            let non_empty = std::fs::read_dir(target)
                .map_err(|e| Error::io(target, e))?
                .next()
                .is_some();
            Ok((non_empty && !overwrite).then(|| {
                format!(
                    "target {} is not empty; restore into an empty directory or pass --overwrite",
                    target.display()
                )
            }))
        }
        Ok(_) => Ok(Some(format!(
            "target {} exists and is not a directory",
            target.display()
        ))),
        Err(_) => Ok(None),
    }
}

fn prepare_target(target: &Path, overwrite: bool) -> Result<()> {
    if let Some(why) = target_refusal(target, overwrite)? {
        return Err(Error::Invalid(why));
    }
    if std::fs::symlink_metadata(target).is_err() {
        std::fs::create_dir_all(target).map_err(|e| Error::io(target, e))?;
    }
    Ok(())
}

/// A directory at `path`; a file or link in the way is replaced only when overwriting
/// (removed, never followed).
fn make_dir(path: &Path, overwrite: bool) -> Result<()> {
    match path.symlink_metadata() {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) if !overwrite => {
            return Err(Error::Invalid(format!("{} already exists", path.display())))
        }
        Ok(_) => std::fs::remove_file(path).map_err(|e| Error::io(path, e))?,
        Err(_) => {}
    }
    std::fs::create_dir(path).map_err(|e| Error::io(path, e))
}

const ZERO_BLOCK: usize = 4096;

/// Packs fetched at once from object storage during a restore: enough to hide round trips,
/// few enough that reads in flight (at most 2 MiB each, plus their plaintext) keep a restore
/// near 100 MiB (16 with 4 MiB reads took 200 MiB, and no less time on loopback).
const REMOTE_WRITERS: usize = 8;

fn remote_pool(repo: &Repository) -> Option<rayon::ThreadPool> {
    if !repo.storage().properties().high_latency {
        return None;
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(REMOTE_WRITERS)
        .thread_name(|i| format!("restore-{i}"))
        .build()
        .ok()
}

/// A file with at least this many chunks has them written in parallel, so that one large
/// file restores on every core.
const PARALLEL_CHUNKS: usize = 8;

/// Writes a file's content into `f`; returns its length.
fn write_content(
    repo: &Repository,
    f: &File,
    path: &Path,
    node: &Node,
    progress: &RestoreProgress,
) -> Result<u64> {
    let write = |id: &BlobId, offset: u64, expected: Option<u64>| -> Result<u64> {
        let data = repo.read_blob(id)?;
        let len = data.len() as u64;
        if expected.is_some_and(|e| e != len) {
            return Err(Error::corrupt(
                format!("blob {}", id.short()),
                "its length differs from the index's",
            ));
        }
        write_at(f, path, &data, offset, node.sparse)?;
        progress.bytes_done.fetch_add(len, Ordering::Relaxed);
        Ok(len)
    };
    if node.content.len() < PARALLEL_CHUNKS {
        let mut offset = 0;
        for id in &node.content {
            offset += write(id, offset, None)?;
        }
        return Ok(offset);
    }
    // Each chunk's place in the file and its length, from the index (looked up once).
    let mut places = Vec::with_capacity(node.content.len());
    let mut size = 0u64;
    for id in &node.content {
        let len = repo.locate(id)?.raw_length as u64;
        places.push((size, len));
        size += len;
    }
    node.content
        .par_iter()
        .zip(places)
        .try_for_each(|(id, (offset, len))| write(id, offset, Some(len)).map(|_| ()))?;
    Ok(size)
}

/// Writes `data` at `offset`; in a sparse file, blocks of zeros are skipped (left as holes).
fn write_at(f: &File, path: &Path, data: &[u8], offset: u64, sparse: bool) -> Result<()> {
    if sparse {
        let mut pos = offset;
        for block in data.chunks(ZERO_BLOCK) {
            if block.iter().any(|&b| b != 0) {
                f.write_all_at(block, pos).map_err(|e| Error::io(path, e))?;
            }
            pos += block.len() as u64;
        }
        Ok(())
    } else {
        f.write_all_at(data, offset).map_err(|e| Error::io(path, e))
    }
}

fn make_special(path: &Path, node: &Node) -> std::result::Result<(), String> {
    use nix::sys::stat::{mknod, Mode, SFlag};
    let kind = match node.kind {
        NodeKind::Fifo => SFlag::S_IFIFO,
        NodeKind::Chardev => SFlag::S_IFCHR,
        NodeKind::Blockdev => SFlag::S_IFBLK,
        NodeKind::Socket => {
            return Err("sockets are recreated by the program that owns them".into())
        }
        _ => return Err("unexpected kind".into()),
    };
    mknod(path, kind, Mode::from_bits_truncate(node.mode), node.rdev).map_err(|e| e.to_string())
}

/// Reads a written file back through its open handle and checks it chunk by chunk against
/// the snapshot.
fn verify_file(repo: &Repository, f: &File, path: &Path, node: &Node) -> Result<()> {
    let differs = |what: &str| Error::corrupt(path.display().to_string(), what.to_string());
    let mut buf = Vec::new();
    let mut offset = 0u64;
    for id in &node.content {
        let loc = repo.locate(id)?;
        buf.resize(loc.raw_length as usize, 0);
        f.read_exact_at(&mut buf, offset)
            .map_err(|_| differs("shorter than in the snapshot"))?;
        if repo.key().blob_id(&buf) != *id {
            return Err(differs("content differs from the snapshot"));
        }
        offset += buf.len() as u64;
    }
    let mut rest = [0u8; 1];
    if f.read_at(&mut rest, offset)
        .map_err(|e| Error::io(path, e))?
        != 0
    {
        return Err(differs("longer than in the snapshot"));
    }
    Ok(())
}

/// Writes a file node's content to `out` (for example into `pg_restore`'s standard input);
/// returns the bytes written.
pub fn copy_content(repo: &Repository, node: &Node, out: &mut dyn Write) -> Result<u64> {
    let mut written = 0u64;
    for id in &node.content {
        let data = repo.read_blob(id)?;
        out.write_all(&data)
            .map_err(|e| Error::io(node.name.lossy().to_string(), e))?;
        written += data.len() as u64;
    }
    Ok(written)
}
