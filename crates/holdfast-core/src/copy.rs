//! Copying snapshots between repositories (a local repository to S3 for an off-site copy).
//!
//! Blob ids are keyed by each repository's own secret, so the same chunk has different ids
//! in two repositories and nothing can be copied as sealed bytes. Each blob is read and
//! decrypted from the source and saved into the destination under its destination id, which
//! deduplicates against everything the destination already holds; trees are rewritten
//! bottom-up with the new ids. Chunk boundaries are kept, so later backups into the
//! destination deduplicate against copied data, provided both repositories cut with the same
//! sizes (`init --chunk-size`). Memos keep a blob or tree shared by many files or snapshots
//! from being read twice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::id::{BlobId, SnapshotId};
use crate::pack::BlobKind;
use crate::repo::Repository;
use crate::saver::{BlobSaver, Checkpoints};
use crate::snapshot::Snapshot;
use crate::tree::Tree;

#[derive(Debug, Default, Serialize)]
pub struct CopyReport {
    /// (source id, destination id) of each snapshot copied.
    pub copied: Vec<(SnapshotId, SnapshotId)>,
    /// Source snapshots the destination already had.
    pub skipped: Vec<SnapshotId>,
    /// Plaintext bytes of blobs the destination did not have.
    pub bytes_added: u64,
    pub bytes_stored: u64,
}

/// Whether `dst` already holds a copy of `(id, snap)`: one it copied from it, or the same
/// backup (time, host and paths).
fn already_there(dst_snaps: &[(SnapshotId, Snapshot)], id: &SnapshotId, snap: &Snapshot) -> bool {
    dst_snaps.iter().any(|(_, d)| {
        d.extra
            .get("copied_from")
            .and_then(|c| c.get("snapshot"))
            .and_then(|s| s.as_str())
            == Some(id.to_hex().as_str())
            || (d.time == snap.time && d.hostname == snap.hostname && d.paths == snap.paths)
    })
}

struct Copier<'a> {
    src: &'a Repository,
    saver: &'a BlobSaver,
    blobs: HashMap<BlobId, BlobId>,
    trees: HashMap<BlobId, BlobId>,
    cancel: &'a AtomicBool,
}

impl Copier<'_> {
    fn blob(&mut self, id: &BlobId) -> Result<BlobId> {
        if let Some(d) = self.blobs.get(id) {
            return Ok(*d);
        }
        let plain = self.src.read_blob(id)?;
        let d = self.saver.save(BlobKind::Data, &plain)?;
        self.blobs.insert(*id, d);
        Ok(d)
    }

    fn tree(&mut self, id: &BlobId) -> Result<BlobId> {
        if let Some(d) = self.trees.get(id) {
            return Ok(*d);
        }
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        let mut tree: Tree = self.src.load_tree(id)?;
        for node in &mut tree.nodes {
            for c in &mut node.content {
                *c = self.blob(c)?;
            }
            if let Some(sub) = node.subtree {
                node.subtree = Some(self.tree(&sub)?);
            }
        }
        let d = self.saver.save(BlobKind::Tree, &tree.encode())?;
        self.trees.insert(*id, d);
        Ok(d)
    }
}

/// Copies `wanted` snapshots of `src` (all when empty) into `dst`, skipping those `dst`
/// has. Both indexes must be loaded; the caller holds a shared lock on `dst`.
/// Intermediate index files are written as `checkpoints` says, and its guard (the lock check)
/// runs before the final index and the snapshots are written.
pub fn copy(
    src: &Repository,
    dst: Arc<Repository>,
    wanted: &[(SnapshotId, Snapshot)],
    cancel: &AtomicBool,
    checkpoints: &Checkpoints,
) -> Result<CopyReport> {
    let mut report = CopyReport::default();
    let dst_snaps = dst.list_snapshots()?;
    let uploaders = if dst.storage().properties().high_latency {
        4
    } else {
        1
    };
    let saver = BlobSaver::with_checkpoints(dst.clone(), uploaders, Some(checkpoints.clone()));
    let mut copier = Copier {
        src,
        saver: &saver,
        blobs: HashMap::new(),
        trees: HashMap::new(),
        cancel,
    };
    let mut pending: Vec<(SnapshotId, Snapshot)> = Vec::new();
    let mut failure = None;
    for (id, snap) in wanted {
        if already_there(&dst_snaps, id, snap) {
            report.skipped.push(*id);
            continue;
        }
        let mut new = snap.clone();
        let result = (|| -> Result<()> {
            new.tree = copier.tree(&snap.tree)?;
            for a in &mut new.attachments {
                a.tree = copier.tree(&a.tree)?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            failure = Some(e);
            break;
        }
        // The parent is an id of the source repository: meaningless here.
        new.parent = None;
        new.extra.insert(
            "copied_from".into(),
            serde_json::json!({
                "repository": src.config().id,
                "snapshot": id.to_hex(),
            }),
        );
        pending.push((*id, new));
    }
    // Data first (packs and index), then the snapshots that refer to it.
    saver.ensure_committable()?;
    report.bytes_added = saver.stats.bytes_added.load(Ordering::Relaxed);
    report.bytes_stored = saver.stats.bytes_stored.load(Ordering::Relaxed);
    saver.finish()?;
    if let Some(e) = failure {
        return Err(e);
    }
    for (src_id, snap) in pending {
        let d = dst.save_snapshot(&snap)?;
        report.copied.push((src_id, d));
    }
    Ok(report)
}
