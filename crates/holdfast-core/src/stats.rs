//! Repository statistics: how much was backed up, how much is stored, and why.

use std::collections::HashSet;
use std::path::Path;

use serde::Serialize;

use crate::error::Result;
use crate::id::{BlobId, SnapshotId};
use crate::repo::Repository;
use crate::tree::NodeKind;

#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    pub snapshots: usize,
    /// Files summed over the snapshots counted.
    pub files: u64,
    /// File bytes summed over the snapshots counted: what restoring all of them would write.
    pub logical_bytes: u64,
    /// Distinct blobs those snapshots use, and their plaintext size.
    pub unique_blobs: u64,
    pub unique_bytes: u64,
    /// Stored size of those blobs (compressed and encrypted).
    pub stored_bytes: u64,
    /// Everything in the index: blobs and stored bytes, whether referenced or not.
    pub repository_blobs: u64,
    pub repository_stored_bytes: u64,
    pub packs: u64,
    /// logical / unique.
    pub dedup_ratio: f64,
    /// unique / stored.
    pub compression_ratio: f64,
}

pub fn stats(repo: &Repository, only: Option<&[SnapshotId]>) -> Result<Stats> {
    let index = repo.index();
    let mut s = Stats::default();
    let mut seen: HashSet<BlobId> = HashSet::new();
    for (id, snap) in repo.list_snapshots()? {
        if let Some(o) = only {
            if !o.contains(&id) {
                continue;
            }
        }
        s.snapshots += 1;
        for root in snap.root_trees() {
            seen.insert(root);
            crate::walk::walk(repo, &root, Path::new(""), &mut |_, n| {
                if n.kind == NodeKind::File {
                    s.files += 1;
                    s.logical_bytes += n.size;
                }
                for c in &n.content {
                    seen.insert(*c);
                }
                // A subtree already seen has been counted for uniqueness but its files still count
                // logically, so always descend.
                if let Some(t) = n.subtree {
                    seen.insert(t);
                }
                Ok(true)
            })?;
        }
    }
    for b in &seen {
        if let Some(loc) = index.get(b) {
            s.unique_blobs += 1;
            s.unique_bytes += loc.raw_length as u64;
            s.stored_bytes += loc.length as u64;
        }
    }
    for (_, loc) in index.blobs() {
        s.repository_blobs += 1;
        s.repository_stored_bytes += loc.length as u64;
    }
    s.packs = index.pack_count() as u64;
    s.dedup_ratio = ratio(s.logical_bytes, s.unique_bytes);
    s.compression_ratio = ratio(s.unique_bytes, s.stored_bytes);
    Ok(s)
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}
