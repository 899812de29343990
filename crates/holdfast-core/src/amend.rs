//! Changing a stored snapshot after the fact: its tags (`holdfast tag`) and its files
//! (`holdfast rewrite`, which takes out what should never have been backed up).
//!
//! A snapshot file is named by its content, so a change is a new snapshot that records the
//! one it replaces ([`Snapshot::replaces`]), stored first; only then is the old file deleted.
//! A crash in between leaves both: listings show only the new one, and [`remove_replaced`]
//! (run by the next `tag` and `forget`) deletes the old. Nothing is ever lost: at every moment
//! one complete snapshot of the backup exists. A rewrite stores its new trees (packs and
//! index) before the new snapshot, so the new snapshot never names data that is not there;
//! the removed files' data stays until `prune` finds nothing refers to it any more.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::Result;
use crate::exclude::Excludes;
use crate::id::{BlobId, SnapshotId};
use crate::pack::BlobKind;
use crate::repo::Repository;
use crate::saver::BlobSaver;
use crate::snapshot::{RootLayout, Snapshot};
use crate::tree::{Node, NodeKind, Tree};

/// A change to a snapshot's tags: `set` replaces them all, then `remove` and `add` apply.
#[derive(Debug, Clone, Default)]
pub struct TagEdit {
    pub set: Option<Vec<String>>,
    pub add: Vec<String>,
    pub remove: Vec<String>,
}

impl TagEdit {
    /// The tags after the edit: in their order, added ones at the end, each once.
    pub fn apply(&self, tags: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let base = self.set.as_deref().unwrap_or(tags);
        for t in base.iter().chain(&self.add) {
            if !self.remove.contains(t) && !out.contains(t) {
                out.push(t.clone());
            }
        }
        out
    }
}

/// What [`tag`] did to one snapshot.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Retagged {
    pub old: SnapshotId,
    /// The new snapshot's id; the old one when nothing changed.
    pub new: SnapshotId,
    pub tags: Vec<String>,
    pub changed: bool,
}

/// Applies `edit` to a snapshot; a snapshot whose tags do not change is left as it is.
pub fn tag(repo: &Repository, id: SnapshotId, snap: &Snapshot, edit: &TagEdit) -> Result<Retagged> {
    let tags = edit.apply(&snap.tags);
    if tags == snap.tags {
        return Ok(Retagged {
            old: id,
            new: id,
            tags,
            changed: false,
        });
    }
    let mut next = snap.clone();
    next.tags = tags.clone();
    next.replaces = Some(id);
    let new = replace(repo, id, &next)?;
    Ok(Retagged {
        old: id,
        new,
        tags,
        changed: true,
    })
}

/// Stores `next` (which must name `old` in `replaces`), then deletes `old`.
fn replace(repo: &Repository, old: SnapshotId, next: &Snapshot) -> Result<SnapshotId> {
    debug_assert_eq!(next.replaces, Some(old));
    let new = repo.save_snapshot(next)?;
    repo.delete_snapshot(&old)?;
    Ok(new)
}

/// Deletes the snapshot files that a stored snapshot replaces (left by a crash in the middle
/// of a `tag`); returns their ids.
pub fn remove_replaced(repo: &Repository) -> Result<Vec<SnapshotId>> {
    let ids = repo.replaced_snapshots()?;
    for id in &ids {
        repo.delete_snapshot(id)?;
    }
    Ok(ids)
}

/// One entry [`rewrite`] took out of a snapshot (a directory goes with everything below it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Removed {
    /// From the snapshot's root, starting with `/`.
    pub path: PathBuf,
    pub kind: NodeKind,
    /// Files and bytes of file content it takes away (a directory counts what is below it).
    pub files: u64,
    pub bytes: u64,
}

/// What [`rewrite`] did, or would do, to one snapshot.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rewritten {
    pub old: SnapshotId,
    /// The new snapshot's id; `None` when nothing matched or on a dry run.
    pub new: Option<SnapshotId>,
    pub removed: Vec<Removed>,
}

/// Takes the entries `excludes` matches out of each snapshot, with the grammar and the paths
/// of a backup's `--exclude` (the snapshot's backed-up directory is the root of relative
/// patterns). Attachments (database dumps) are left as they are. With `dry_run`, nothing is
/// written and the result says what would go.
///
/// `still_locked` is asked before the new trees are indexed: a prune that took over a lock
/// believed stale may have deleted packs they share.
pub fn rewrite(
    repo: &Arc<Repository>,
    snapshots: &[(SnapshotId, Snapshot)],
    excludes: &Excludes,
    dry_run: bool,
    still_locked: &dyn Fn() -> Result<()>,
) -> Result<Vec<Rewritten>> {
    let saver = (!dry_run).then(|| BlobSaver::new(repo.clone(), 1));
    let mut cut = Cutter {
        repo,
        excludes,
        saver: saver.as_ref(),
        seen: HashMap::new(),
    };
    let mut plans = Vec::new();
    for (id, snap) in snapshots {
        let roots = Roots::of(snap);
        let (tree, removed) = cut.tree(&snap.tree, Path::new("/"), &roots)?;
        plans.push((*id, snap, tree, removed));
    }
    let mut out = Vec::new();
    if let Some(saver) = saver {
        if let Err(e) = still_locked() {
            let _ = saver.finish();
            return Err(e);
        }
        saver.finish()?;
    }
    for (id, snap, tree, removed) in plans {
        let new = match (removed.is_empty() || dry_run, tree) {
            (false, Some(tree)) => {
                let mut next = snap.clone();
                next.tree = tree;
                next.replaces = Some(id);
                let files: u64 = removed.iter().map(|r| r.files).sum();
                let bytes: u64 = removed.iter().map(|r| r.bytes).sum();
                next.summary.total_files = next.summary.total_files.saturating_sub(files);
                next.summary.total_bytes = next.summary.total_bytes.saturating_sub(bytes);
                next.rewrites.push(crate::snapshot::RewriteRecord {
                    time: chrono::Utc::now(),
                    removed_entries: removed.len() as u64,
                    removed_files: files,
                    removed_bytes: bytes,
                });
                Some(replace(repo, id, &next)?)
            }
            _ => None,
        };
        out.push(Rewritten {
            old: id,
            new,
            removed,
        });
    }
    Ok(out)
}

/// Where a snapshot's tree paths sit on the backed-up machine, for matching patterns.
struct Roots<'a> {
    layout: RootLayout,
    paths: &'a [String],
}

impl<'a> Roots<'a> {
    fn of(snap: &'a Snapshot) -> Self {
        Roots {
            layout: snap.layout,
            paths: &snap.paths,
        }
    }

    /// The absolute path and the path below the backed-up root of a tree path (`/a/b`).
    fn locate(&self, at: &Path) -> (PathBuf, PathBuf) {
        let below = at.strip_prefix("/").unwrap_or(at);
        match self.layout {
            RootLayout::DirContent => {
                let base = self.paths.first().map(String::as_str).unwrap_or("/");
                (Path::new(base).join(below), below.to_path_buf())
            }
            RootLayout::FullPaths => {
                let rel = self
                    .paths
                    .iter()
                    .find_map(|p| at.strip_prefix(p).ok())
                    .unwrap_or(below);
                (at.to_path_buf(), rel.to_path_buf())
            }
        }
    }
}

struct Cutter<'a> {
    repo: &'a Repository,
    excludes: &'a Excludes,
    saver: Option<&'a BlobSaver>,
    /// Subtrees already cut, by id and place (snapshots of the same data share most of them):
    /// the new id (`None` when unchanged) and what was taken out below.
    seen: HashMap<(BlobId, PathBuf), (Option<BlobId>, Vec<Removed>)>,
}

impl Cutter<'_> {
    /// Cuts one tree at `at`; returns its new id (`None` when nothing below matched) and what
    /// went.
    fn tree(
        &mut self,
        id: &BlobId,
        at: &Path,
        roots: &Roots,
    ) -> Result<(Option<BlobId>, Vec<Removed>)> {
        let key = (*id, at.to_path_buf());
        if let Some(done) = self.seen.get(&key) {
            return Ok(done.clone());
        }
        let tree = self.repo.load_tree(id)?;
        let mut kept = Vec::with_capacity(tree.nodes.len());
        let mut removed = Vec::new();
        for mut node in tree.nodes {
            let path = at.join(node.name.as_os_str());
            let (abs, rel) = roots.locate(&path);
            if self.excludes.excluded(&abs, &rel) {
                let (files, bytes) = self.weigh(&node)?;
                removed.push(Removed {
                    path,
                    kind: node.kind,
                    files,
                    bytes,
                });
                continue;
            }
            if let Some(sub) = node.subtree {
                let (new, below) = self.tree(&sub, &path, roots)?;
                if let Some(new) = new {
                    node.subtree = Some(new);
                }
                removed.extend(below);
            }
            kept.push(node);
        }
        let new = if removed.is_empty() {
            None
        } else {
            let tree = Tree { nodes: kept };
            Some(match self.saver {
                Some(saver) => saver.save(BlobKind::Tree, &tree.encode())?,
                None => self.repo.key().blob_id(&tree.encode()),
            })
        };
        let done = (new, removed);
        self.seen.insert(key, done.clone());
        Ok(done)
    }

    /// Files and bytes of file content an entry holds, itself included.
    fn weigh(&self, node: &Node) -> Result<(u64, u64)> {
        if node.kind == NodeKind::File {
            return Ok((1, node.size));
        }
        let Some(sub) = &node.subtree else {
            return Ok((0, 0));
        };
        let (mut files, mut bytes) = (0, 0);
        for n in self.repo.load_tree(sub)?.nodes {
            let (f, b) = self.weigh(&n)?;
            files += f;
            bytes += b;
        }
        Ok((files, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(tags: &[&str]) -> Vec<String> {
        tags.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn set_then_remove_then_add_each_once_in_order() {
        let edit = |set: Option<&[&str]>, add: &[&str], remove: &[&str]| TagEdit {
            set: set.map(v),
            add: v(add),
            remove: v(remove),
        };
        let tags = v(&["daily", "dss"]);
        assert_eq!(
            edit(None, &["keep"], &[]).apply(&tags),
            v(&["daily", "dss", "keep"])
        );
        assert_eq!(edit(None, &["dss"], &[]).apply(&tags), tags, "no duplicate");
        assert_eq!(edit(None, &[], &["daily"]).apply(&tags), v(&["dss"]));
        assert_eq!(
            edit(Some(&["a", "b"]), &["c"], &["b"]).apply(&tags),
            v(&["a", "c"])
        );
        assert_eq!(edit(Some(&[]), &[], &[]).apply(&tags), v(&[]));
    }
}
