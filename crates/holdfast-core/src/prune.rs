//! Prune: delete data that no snapshot uses, and repack packs that are mostly unused.
//!
//! Runs under the exclusive lock, so no backup adds packs meanwhile. Every step leaves a
//! consistent repository if the process dies right after it (docs/prune.md):
//! 1. store repacked blobs in new packs (until step 2 they are unindexed garbage);
//! 2. write one index file listing every pack that stays, superseding all older index files
//!    (readers ignore superseded files, so old and new coexisting is fine);
//! 3. delete the superseded index files;
//! 4. delete packs no index references any more, and unindexed leftovers of killed backups.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::error::Result;
use crate::id::{BlobId, IndexId, PackId};
use crate::index::PackEntry;
use crate::repo::Repository;
use crate::saver::BlobSaver;
use crate::storage::layout;

#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// Repack a pack when at least this fraction of its bytes is unused.
    pub repack_threshold: f64,
    pub dry_run: bool,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            repack_threshold: 0.2,
            dry_run: false,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub packs_total: usize,
    pub packs_deleted: usize,
    pub packs_repacked: usize,
    pub packs_unindexed_deleted: usize,
    pub blobs_used: usize,
    pub blobs_removed: usize,
    pub bytes_used: u64,
    pub bytes_unused: u64,
    /// Stored bytes that deleting frees (before the size of new packs is subtracted).
    pub bytes_freed: u64,
    pub bytes_repacked: u64,
    pub index_files_replaced: usize,
    /// Temporary files of killed writers removed from the local backend's `tmp/`.
    pub temp_files_deleted: usize,
}

/// Temporary files in the local backend's `tmp/` older than [`crate::lock::STALE_AFTER`]:
/// writes of processes killed before their rename. Younger ones may be a live write.
pub fn stale_temp_files(repo: &Repository) -> Result<Vec<crate::storage::Listed>> {
    if !repo.storage().properties().temp_files {
        return Ok(Vec::new()); // object stores have no temporary names
    }
    let now = std::time::SystemTime::now();
    Ok(repo
        .storage()
        .list(&format!("{}/", layout::TMP))?
        .into_iter()
        .filter(|l| {
            l.modified
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age > crate::lock::STALE_AFTER)
        })
        .collect())
}

/// Every blob any snapshot refers to: root trees, subtrees and file chunks. Fails while any
/// snapshot file or tree cannot be read: the blobs they use are unknown, and a prune that
/// went on would delete them.
pub fn used_blobs(repo: &Repository) -> Result<HashSet<BlobId>> {
    let mut used = HashSet::new();
    for (_, snap) in repo.list_snapshots_strict()? {
        let mut stack: Vec<BlobId> = snap.root_trees().filter(|t| used.insert(*t)).collect();
        while let Some(t) = stack.pop() {
            crate::walk::walk(repo, &t, Path::new(""), &mut |_, n| {
                used.extend(n.content.iter().copied());
                if let Some(s) = n.subtree {
                    if used.insert(s) {
                        stack.push(s);
                    }
                }
                Ok(false)
            })
            .map_err(|e| match e {
                crate::Error::Corrupt { what, why } => crate::Error::corrupt(
                    what,
                    format!(
                        "{why}; nothing was deleted (holdfast repair snapshots shows what is \
                         affected)"
                    ),
                ),
                e => e,
            })?;
        }
    }
    Ok(used)
}

pub fn prune(repo: &Arc<Repository>, opts: &PruneOptions) -> Result<PruneReport> {
    prune_guarded(repo, opts, &|| Ok(()))
}

/// [`prune`], asking `still_locked` before each step that writes or deletes (the lock's
/// [`crate::lock::LockGuard::ensure_held`]): once the exclusive lock is lost, a backup may be
/// adding data that this prune would take for unused.
pub fn prune_guarded(
    repo: &Arc<Repository>,
    opts: &PruneOptions,
    still_locked: &dyn Fn() -> Result<()>,
) -> Result<PruneReport> {
    let index = repo.index();
    let used = used_blobs(repo)?;
    let mut report = PruneReport {
        dry_run: opts.dry_run,
        packs_total: index.pack_count(),
        ..Default::default()
    };

    // Classify packs. A blob stored twice (two backups racing on new data) counts once: the
    // copy the master index points at is the one kept.
    let mut keep: Vec<PackEntry> = Vec::new();
    let mut delete: Vec<PackId> = Vec::new();
    let mut repack: Vec<(PackId, Vec<crate::pack::PackedBlob>)> = Vec::new();
    let mut packs: Vec<(PackId, crate::index::PackBlobs)> = index.packs().collect();
    packs.sort_by_key(|(id, _)| *id);
    for (pid, blobs) in packs {
        let live = |b: &crate::pack::PackedBlob| {
            used.contains(&b.id) && index.get(&b.id).map(|l| l.pack == pid).unwrap_or(false)
        };
        let (mut u, mut n) = (0u64, 0u64);
        for b in blobs.iter() {
            if live(&b) {
                u += b.length as u64;
                report.blobs_used += 1;
            } else {
                n += b.length as u64;
                report.blobs_removed += 1;
            }
        }
        report.bytes_used += u;
        report.bytes_unused += n;
        if u == 0 {
            delete.push(pid);
            report.bytes_freed += n;
        } else if n > 0 && n as f64 >= opts.repack_threshold * (u + n) as f64 {
            repack.push((pid, blobs.iter().filter(|b| live(b)).collect()));
            report.bytes_freed += u + n;
            report.bytes_repacked += u;
        } else {
            keep.push(PackEntry {
                id: pid,
                blobs: blobs.to_vec(),
            });
        }
    }
    report.packs_deleted = delete.len();
    report.packs_repacked = repack.len();
    let indexed: HashSet<String> = index.packs().map(|(p, _)| p.to_hex()).collect();
    let unindexed: Vec<String> = repo
        .storage()
        .list(layout::DATA)?
        .into_iter()
        .filter(|l| !indexed.contains(&l.name))
        .map(|l| l.path)
        .collect();
    report.packs_unindexed_deleted = unindexed.len();
    let leftovers = stale_temp_files(repo)?;
    report.temp_files_deleted = leftovers.len();
    let old_index: Vec<IndexId> = repo.index_ids();
    report.index_files_replaced = old_index.len();
    if opts.dry_run {
        return Ok(report);
    }
    still_locked()?;
    for l in &leftovers {
        repo.storage().delete(&l.path)?;
    }
    if delete.is_empty() && repack.is_empty() && unindexed.is_empty() {
        return Ok(report);
    }

    // 1. Repack live blobs into new packs (indexed by the saver's own index file).
    let mut new_packs: Vec<PackEntry> = Vec::new();
    let mut saver_index = Vec::new();
    if !repack.is_empty() {
        let saver = BlobSaver::for_repack(repo.clone(), 2);
        for (_, blobs) in &repack {
            for b in blobs {
                let plain = repo.read_blob(&b.id)?;
                saver.save(b.kind, &plain)?;
            }
        }
        let (id, packs) = saver.finish_with_packs()?;
        saver_index = id;
        new_packs = packs;
    }

    // 2. A new index for everything that stays, its last file superseding every older one.
    let mut supersedes = old_index.clone();
    supersedes.extend(saver_index);
    let mut packs = keep;
    packs.extend(new_packs);
    still_locked()?;
    let new_index = repo.save_index_files(packs, supersedes.clone())?;

    // 3. Old index files go.
    for id in &supersedes {
        if !new_index.contains(id) {
            repo.storage()
                .delete(&format!("{}{}", layout::INDEX, id.to_hex()))?;
        }
    }
    // 4. Then the packs nothing references.
    still_locked()?;
    let gone: HashSet<PackId> = delete
        .iter()
        .copied()
        .chain(repack.iter().map(|(p, _)| *p))
        .collect();
    for p in &gone {
        repo.storage().delete(&layout::pack_path(&p.to_hex()))?;
    }
    for path in &unindexed {
        repo.storage().delete(path)?;
    }
    repo.load_index()?;
    Ok(report)
}
