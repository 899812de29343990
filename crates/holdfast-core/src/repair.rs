//! Repair: rebuild what damage made unreadable, from what is still whole.
//!
//! Both repairs run under the exclusive lock and only ever add before they remove, so an
//! interrupted repair leaves the repository as it found it or repaired.
//!
//! - `repair index`: packs carry their own encrypted headers, so the index is redundant. A
//!   damaged or lost index file leaves its packs unindexed: restores of snapshots using them
//!   fail, and a prune would delete them as leftovers. Reading every unindexed pack's header
//!   puts them back; the new index supersedes every old index file, readable or not.
//! - `repair snapshots`: a snapshot that uses missing or damaged data cannot be restored
//!   whole. Dry run by default; with `apply`, each such snapshot is rewritten without what is
//!   lost (files with missing content dropped, unreadable folders emptied), tagged `repaired`
//!   and naming the original, which is removed once the new one is stored. Snapshot files
//!   that cannot be read at all are removed (they cannot be rewritten: nothing of them is
//!   known).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::id::{BlobId, IndexId, PackId, SnapshotId};
use crate::index::PackEntry;
use crate::pack::BlobKind;
use crate::repo::Repository;
use crate::saver::BlobSaver;
use crate::snapshot::Snapshot;
use crate::storage::layout;
use crate::tree::{Node, NodeKind, Tree};

/// The tag a rewritten snapshot carries.
pub const REPAIRED_TAG: &str = "repaired";

#[derive(Debug, Default, Serialize)]
pub struct IndexRepairReport {
    pub packs_stored: usize,
    /// Packs that were in a readable index file and stay as listed there.
    pub packs_kept: usize,
    /// Packs no readable index listed, indexed again from their headers.
    pub packs_recovered: Vec<String>,
    /// Packs whose header cannot be read: left in place, not indexed (check names them).
    pub packs_unreadable: Vec<String>,
    /// Packs an index listed that storage no longer has: dropped from the index.
    pub packs_missing: Vec<String>,
    /// Index files that could not be read, removed once the new index was stored.
    pub index_files_damaged: Vec<String>,
    pub index_files_written: usize,
}

/// Rebuilds the index: what readable index files list (for packs still stored), plus the
/// header of every stored pack they do not list.
pub fn repair_index(repo: &Arc<Repository>) -> Result<IndexRepairReport> {
    let mut report = IndexRepairReport::default();
    let damaged_errors = repo.load_index_lenient()?;
    let index = repo.index();
    let readable: Vec<IndexId> = repo.index_ids();
    let readable_hex: HashSet<String> = readable.iter().map(|i| i.to_hex()).collect();
    let all_index: Vec<String> = repo
        .storage()
        .list(layout::INDEX)?
        .into_iter()
        .filter(|l| l.name.parse::<IndexId>().is_ok())
        .map(|l| l.path)
        .collect();
    report.index_files_damaged = all_index
        .iter()
        .filter(|p| !readable_hex.contains(p.rsplit('/').next().unwrap_or("")))
        .cloned()
        .collect();
    for e in &damaged_errors {
        tracing::warn!("{e}");
    }

    let stored: Vec<crate::storage::Listed> = repo.storage().list(layout::DATA)?;
    report.packs_stored = stored.len();
    let stored_ids: HashSet<PackId> = stored.iter().filter_map(|l| l.name.parse().ok()).collect();
    let mut packs: Vec<PackEntry> = Vec::new();
    let indexed: HashSet<PackId> = index.packs().map(|(id, _)| id).collect();
    for (id, blobs) in index.packs() {
        if stored_ids.contains(&id) {
            packs.push(PackEntry {
                id,
                blobs: blobs.to_vec(),
            });
        } else {
            report.packs_missing.push(id.to_hex());
        }
    }
    report.packs_kept = packs.len();
    let orphans: Vec<&crate::storage::Listed> = stored
        .iter()
        .filter(|l| {
            l.name
                .parse::<PackId>()
                .map(|id| !indexed.contains(&id))
                .unwrap_or(false)
        })
        .collect();
    use rayon::prelude::*;
    let headers: Vec<(String, Result<PackEntry>)> = orphans
        .par_iter()
        .map(|l| (l.name.clone(), read_pack_entry(repo, l)))
        .collect();
    for (name, r) in headers {
        match r {
            Ok(entry) => {
                report.packs_recovered.push(name);
                packs.push(entry);
            }
            Err(e @ Error::Corrupt { .. }) => {
                tracing::warn!("{e}");
                report.packs_unreadable.push(name);
            }
            // A timeout, EIO, a refused link: the pack may be fine. Nothing is written or
            // deleted (the damaged index files may be the only record of it).
            Err(e) => return Err(e),
        }
    }
    let nothing_to_do = report.packs_recovered.is_empty()
        && report.packs_missing.is_empty()
        && report.index_files_damaged.is_empty();
    if nothing_to_do {
        return Ok(report);
    }
    packs.sort_by_key(|p| p.id);
    let written = repo.save_index_files(packs, readable.clone())?;
    report.index_files_written = written.len();
    // Every readable file is superseded by the last new one; the damaged ones list nothing
    // the new index lacks (their packs were read again), so they go too.
    for id in &readable {
        if !written.contains(id) {
            repo.storage()
                .delete(&format!("{}{}", layout::INDEX, id.to_hex()))?;
        }
    }
    for path in &report.index_files_damaged {
        repo.storage().delete(path)?;
    }
    repo.load_index()?;
    Ok(report)
}

/// A pack's index entry from its own header: the last 4 bytes give the header's length, then
/// the header itself is read and decrypted (two ranged reads, not the whole pack).
fn read_pack_entry(repo: &Repository, l: &crate::storage::Listed) -> Result<PackEntry> {
    let id: PackId = l
        .name
        .parse()
        .map_err(|_| Error::corrupt(&l.path, "not a pack id"))?;
    let size = match l.size {
        Some(s) => s,
        None => repo.storage().read(&l.path)?.len() as u64,
    };
    if size < 4 {
        return Err(Error::corrupt(format!("pack {}", l.name), "too short"));
    }
    let tail = repo.read_pack_range(&id, size - 4, 4)?;
    let start = crate::pack::header_start(&l.name, size, &tail)?;
    let sealed = repo.read_pack_range(&id, start, size - 4 - start)?;
    let blobs = crate::pack::open_header(&l.name, repo.key(), &sealed, start)?;
    Ok(PackEntry { id, blobs })
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct DamagedSnapshot {
    pub id: String,
    pub time: Option<String>,
    pub hostname: Option<String>,
    /// Paths whose content or listing is lost (`[name]/...` inside an attachment).
    pub lost: Vec<String>,
    /// Why the snapshot file itself cannot be read (then nothing else is known).
    pub unreadable: Option<String>,
    /// The snapshot written in its place (with `apply`).
    pub replaced_by: Option<String>,
    /// True when the snapshot file was removed (with `apply`).
    pub removed: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct SnapshotRepairReport {
    pub applied: bool,
    pub snapshots_checked: usize,
    pub damaged: Vec<DamagedSnapshot>,
}

/// Finds the snapshots that use missing or unreadable data and, with `apply`, rewrites them
/// without it (see the module doc).
pub fn repair_snapshots(repo: &Arc<Repository>, apply: bool) -> Result<SnapshotRepairReport> {
    let mut report = SnapshotRepairReport {
        applied: apply,
        ..Default::default()
    };
    let (snaps, unreadable) = repo.list_snapshots_lenient()?;
    report.snapshots_checked = snaps.len() + unreadable.len();
    let saver = if apply {
        Some(BlobSaver::new(repo.clone(), 1))
    } else {
        None
    };
    // A blob is there when an index lists it in a pack that storage still has.
    let stored: HashSet<PackId> = repo
        .storage()
        .list(layout::DATA)?
        .iter()
        .filter_map(|l| l.name.parse().ok())
        .collect();
    let mut rewriter = Rewriter {
        repo,
        saver: saver.as_ref(),
        memo: HashMap::new(),
        stored,
    };
    let mut rewritten: Vec<(SnapshotId, Snapshot, DamagedSnapshot)> = Vec::new();
    for (id, snap) in &snaps {
        let mut lost = Vec::new();
        let mut new = snap.clone();
        new.tree = rewriter.tree(&snap.tree, "", &mut lost)?;
        for a in &mut new.attachments {
            a.tree = rewriter.tree(&a.tree, &format!("[{}]", a.name), &mut lost)?;
        }
        if lost.is_empty() {
            continue;
        }
        lost.sort();
        lost.dedup();
        let d = DamagedSnapshot {
            id: id.to_hex(),
            time: Some(snap.time.to_rfc3339()),
            hostname: Some(snap.hostname.clone()),
            lost,
            ..Default::default()
        };
        rewritten.push((*id, new, d));
    }
    if let Some(saver) = saver {
        // Trees first (indexed), then each new snapshot, then the old one goes.
        saver.finish()?;
        for (old, mut new, mut d) in rewritten {
            if !new.tags.iter().any(|t| t == REPAIRED_TAG) {
                new.tags.push(REPAIRED_TAG.into());
            }
            new.extra
                .insert("original".into(), serde_json::Value::String(old.to_hex()));
            let nid = repo.save_snapshot(&new)?;
            repo.delete_snapshot(&old)?;
            d.replaced_by = Some(nid.to_hex());
            d.removed = true;
            report.damaged.push(d);
        }
    } else {
        report
            .damaged
            .extend(rewritten.into_iter().map(|(_, _, d)| d));
    }
    for u in unreadable {
        if apply {
            repo.delete_snapshot(&u.id)?;
        }
        report.damaged.push(DamagedSnapshot {
            id: u.id.to_hex(),
            unreadable: Some(u.why),
            removed: apply,
            ..Default::default()
        });
    }
    Ok(report)
}

struct Rewriter<'a> {
    repo: &'a Repository,
    saver: Option<&'a BlobSaver>,
    /// Trees already looked at: their replacement, and whether anything was lost below.
    memo: HashMap<BlobId, (BlobId, Vec<String>)>,
    stored: HashSet<PackId>,
}

impl Rewriter<'_> {
    /// The id of `tree` without what is lost (the same id when nothing is); appends the lost
    /// paths below `at` to `lost`.
    fn tree(&mut self, tree: &BlobId, at: &str, lost: &mut Vec<String>) -> Result<BlobId> {
        if let Some((new, below)) = self.memo.get(tree) {
            // The same tree elsewhere: the same losses, under this path.
            lost.extend(below.iter().map(|p| format!("{at}{p}")));
            return Ok(*new);
        }
        let t = match self.repo.load_tree(tree) {
            Ok(t) => t,
            Err(Error::Corrupt { .. } | Error::NotFound(_)) => {
                let empty = self.save(&Tree { nodes: Vec::new() })?;
                lost.push(format!("{at}/"));
                self.memo.insert(*tree, (empty, vec!["/".into()]));
                return Ok(empty);
            }
            Err(e) => return Err(e),
        };
        let index = self.repo.index();
        let mut nodes: Vec<Node> = Vec::with_capacity(t.nodes.len());
        let mut below: Vec<String> = Vec::new();
        for n in &t.nodes {
            let rel = format!("/{}", n.name.lossy());
            let missing = |c: &BlobId| {
                index
                    .get(c)
                    .map(|l| !self.stored.contains(&l.pack))
                    .unwrap_or(true)
            };
            if n.content.iter().any(missing) {
                below.push(rel);
                continue; // a file with a hole is not the file: dropped
            }
            let mut n = n.clone();
            if n.kind == NodeKind::Dir {
                if let Some(sub) = n.subtree {
                    let mut sub_lost = Vec::new();
                    n.subtree = Some(self.tree(&sub, "", &mut sub_lost)?);
                    below.extend(sub_lost.into_iter().map(|p| format!("{rel}{p}")));
                }
            }
            nodes.push(n);
        }
        let new = if below.is_empty() {
            *tree
        } else {
            self.save(&Tree { nodes })?
        };
        lost.extend(below.iter().map(|p| format!("{at}{p}")));
        self.memo.insert(*tree, (new, below));
        Ok(new)
    }

    fn save(&self, t: &Tree) -> Result<BlobId> {
        let bytes = t.encode();
        match self.saver {
            Some(s) => s.save(BlobKind::Tree, &bytes),
            None => Ok(self.repo.key().blob_id(&bytes)),
        }
    }
}
