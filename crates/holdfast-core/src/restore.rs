//! Restore: recreate a snapshot (or part of it) below a target directory.
//!
//! Safety first: names were checked when trees were decoded (no `..`, no `/`), directories are
//! created by us, and when overwriting, anything in the way that is not what we expect (a
//! symlink where a directory goes, say) is removed rather than followed, so nothing is ever
//! written outside the target. Links and special files are created after all file content, so
//! no write can pass through a link the snapshot itself contains. Files, links and special
//! files are made under a temporary name and renamed into place when complete (see
//! `pending`).

use std::collections::HashMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

mod by_pack;
mod pending;

use pending::{put_entry, PendingFile};

use crate::error::{Error, Result};
use crate::exclude::Excludes;
use crate::fsmeta::{self, Names, OwnerPolicy};
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
    pub total_bytes: AtomicU64,
    pub bytes_done: AtomicU64,
    pub files_done: AtomicU64,
}

struct Plan {
    dirs: Vec<(PathBuf, Node)>,
    files: Vec<(PathBuf, Node)>,
    links: Vec<(PathBuf, Node)>,
    other: Vec<(PathBuf, Node)>,
}

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

    let mut plan = Plan {
        dirs: Vec::new(),
        files: Vec::new(),
        links: Vec::new(),
        other: Vec::new(),
    };
    collect(
        repo,
        &snap.tree,
        Path::new(""),
        include.as_ref(),
        &exclude,
        false,
        &mut plan,
    )?;
    progress.total_bytes.store(
        plan.files.iter().map(|(_, n)| n.size).sum(),
        Ordering::Relaxed,
    );

    let names = Names::default();
    let is_root = fsmeta::running_as_root();
    let warnings = Mutex::new(Vec::new());
    let mut report = RestoreReport::default();

    for (rel, _) in &plan.dirs {
        make_dir(&target.join(rel), opts.overwrite)?;
        report.dirs += 1;
    }

    // Hardlinked files: the first of each (dev, inode) group gets content, the rest are linked.
    let mut first_of: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut link_later = Vec::new();
    let mut write_now = Vec::new();
    for (rel, node) in &plan.files {
        if node.links > 1 && node.inode != 0 {
            if let Some(first) = first_of.get(&(node.dev, node.inode)) {
                link_later.push((rel.clone(), first.clone()));
                continue;
            }
            first_of.insert((node.dev, node.inode), rel.clone());
        }
        write_now.push((rel, node));
    }

    // File by file, every chunk is one ranged read: on a local disk that is as fast as the
    // kernel creates files, with one thread per core. On object storage each read is a round
    // trip, so content is fetched pack by pack instead, many packs at once.
    match remote_pool(repo) {
        Some(pool) => by_pack::write_files(
            repo,
            target,
            &write_now,
            opts.overwrite,
            progress,
            cancel,
            &pool,
        )?,
        None => write_now
            .par_iter()
            .try_for_each(|(rel, node)| -> Result<()> {
                if cancel.load(Ordering::Relaxed) {
                    return Err(Error::Interrupted);
                }
                let path = target.join(rel);
                write_file(repo, &path, node, opts.overwrite, progress)?;
                progress.files_done.fetch_add(1, Ordering::Relaxed);
                Ok(())
            })?,
    }
    report.files = write_now.len() as u64;
    report.bytes = write_now.iter().map(|(_, n)| n.size).sum();

    for (rel, first) in &link_later {
        let path = target.join(rel);
        put_entry(&path, opts.overwrite, |tmp| {
            std::fs::hard_link(target.join(first), tmp)
        })?
        .map_err(|e| Error::io(&path, e))?;
        report.files += 1;
    }
    for (rel, node) in &plan.links {
        let path = target.join(rel);
        let t = node
            .target
            .as_ref()
            .map(|t| t.as_os_str().to_owned())
            .unwrap_or_default();
        put_entry(&path, opts.overwrite, |tmp| {
            std::os::unix::fs::symlink(&t, tmp)
        })?
        .map_err(|e| Error::io(&path, e))?;
        report.links += 1;
    }
    for (rel, node) in &plan.other {
        let path = target.join(rel);
        match put_entry(&path, opts.overwrite, |tmp| make_special(tmp, node))? {
            Ok(()) => report.other += 1,
            Err(e) => warnings
                .lock()
                .unwrap()
                .push(format!("{}: not restored: {e}", path.display())),
        }
    }

    // Verify before metadata is applied, so that reading does not disturb access times.
    if opts.verify {
        let bad: Vec<String> = write_now
            .par_iter()
            .filter_map(|(rel, node)| {
                verify_file(repo, &target.join(rel), node)
                    .err()
                    .map(|e| e.to_string())
            })
            .collect();
        if !bad.is_empty() {
            return Err(Error::corrupt(
                format!("restored files under {}", target.display()),
                format!(
                    "{} file(s) differ from the snapshot, first: {}",
                    bad.len(),
                    bad[0]
                ),
            ));
        }
        report.verified_files = write_now.len() as u64;
    }
    // Metadata: files, links and specials in parallel; then directories deepest first, so
    // that setting a child's times does not disturb its parent's.
    plan.files
        .par_iter()
        .chain(plan.links.par_iter())
        .chain(plan.other.par_iter())
        .for_each(|(rel, node)| {
            let path = target.join(rel);
            if path.symlink_metadata().is_ok() {
                let w = fsmeta::apply_metadata(&path, node, &names, opts.owners, is_root);
                if !w.is_empty() {
                    warnings.lock().unwrap().extend(w);
                }
            }
        });
    for (rel, node) in plan.dirs.iter().rev() {
        let w = fsmeta::apply_metadata(&target.join(rel), node, &names, opts.owners, is_root);
        warnings.lock().unwrap().extend(w);
    }
    if let (RootLayout::DirContent, Some(root)) = (snap.layout, &snap.root) {
        if include.is_none() {
            let w = fsmeta::apply_metadata(target, root, &names, opts.owners, is_root);
            warnings.lock().unwrap().extend(w);
        }
    }

    report.warnings = warnings.into_inner().unwrap();
    Ok(report)
}

/// Walks the snapshot and sorts entries into what to create; `forced` means an ancestor
/// matched the include patterns.
fn collect(
    repo: &Repository,
    tree: &crate::id::BlobId,
    prefix: &Path,
    include: Option<&Excludes>,
    exclude: &Excludes,
    forced: bool,
    plan: &mut Plan,
) -> Result<bool> {
    let t = repo.load_tree(tree)?;
    let mut any = false;
    for n in t.nodes {
        let rel = prefix.join(n.name.as_os_str());
        let abs = Path::new("/").join(&rel);
        if exclude.excluded(&abs, &rel) {
            continue;
        }
        let matched = forced || include.map(|i| i.excluded(&abs, &rel)).unwrap_or(true);
        match n.kind {
            NodeKind::Dir => {
                let idx = plan.dirs.len();
                plan.dirs.push((rel.clone(), n.clone()));
                let inner = match &n.subtree {
                    Some(sub) => collect(repo, sub, &rel, include, exclude, matched, plan)?,
                    None => false,
                };
                if !(matched || inner) {
                    plan.dirs.remove(idx);
                    continue;
                }
            }
            _ if !matched => continue,
            NodeKind::File => plan.files.push((rel, n)),
            NodeKind::Symlink => plan.links.push((rel, n)),
            _ => plan.other.push((rel, n)),
        }
        any = true;
    }
    Ok(any)
}

fn prepare_target(target: &Path, overwrite: bool) -> Result<()> {
    match std::fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() => {
            let non_empty = std::fs::read_dir(target)
                .map_err(|e| Error::io(target, e))?
                .next()
                .is_some();
            if non_empty && !overwrite {
                return Err(Error::Invalid(format!(
                    "target {} is not empty; restore into an empty directory or pass --overwrite",
                    target.display()
                )));
            }
            Ok(())
        }
        Ok(_) => Err(Error::Invalid(format!(
            "target {} exists and is not a directory",
            target.display()
        ))),
        Err(_) => std::fs::create_dir_all(target).map_err(|e| Error::io(target, e)),
    }
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

fn write_file(
    repo: &Repository,
    path: &Path,
    node: &Node,
    overwrite: bool,
    progress: &RestoreProgress,
) -> Result<()> {
    let (pending, mut f) = PendingFile::create(path, overwrite)?;
    let mut written = 0u64;
    for id in &node.content {
        let data = repo.read_blob(id)?;
        if node.sparse {
            for block in data.chunks(ZERO_BLOCK) {
                if block.iter().all(|&b| b == 0) {
                    f.seek(SeekFrom::Current(block.len() as i64))
                        .map_err(|e| Error::io(path, e))?;
                } else {
                    f.write_all(block).map_err(|e| Error::io(path, e))?;
                }
            }
        } else {
            f.write_all(&data).map_err(|e| Error::io(path, e))?;
        }
        written += data.len() as u64;
        progress
            .bytes_done
            .fetch_add(data.len() as u64, Ordering::Relaxed);
    }
    if node.sparse {
        f.set_len(written).map_err(|e| Error::io(path, e))?;
    }
    drop(f);
    pending.place(overwrite)
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

/// Re-reads a restored file and checks it chunk by chunk against the snapshot.
fn verify_file(repo: &Repository, path: &Path, node: &Node) -> Result<()> {
    use std::io::Read;
    let mut f = crate::backup::open_noatime(path).map_err(|e| Error::io(path, e))?;
    let mut buf = Vec::new();
    for id in &node.content {
        let loc = repo.locate(id)?;
        buf.resize(loc.raw_length as usize, 0);
        f.read_exact(&mut buf).map_err(|e| Error::io(path, e))?;
        if repo.key().blob_id(&buf) != *id {
            return Err(Error::corrupt(
                path.display().to_string(),
                "content differs from the snapshot",
            ));
        }
    }
    let mut rest = [0u8; 1];
    if f.read(&mut rest).map_err(|e| Error::io(path, e))? != 0 {
        return Err(Error::corrupt(
            path.display().to_string(),
            "longer than in the snapshot",
        ));
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
