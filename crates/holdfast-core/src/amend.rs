//! Changing a stored snapshot after the fact: its tags (`holdfast tag`).
//!
//! A snapshot file is named by its content, so a change is a new snapshot that records the
//! one it replaces ([`Snapshot::replaces`]), stored first; only then is the old file deleted.
//! A crash in between leaves both: listings show only the new one, and [`remove_replaced`]
//! (run by the next `tag` and `forget`) deletes the old. Nothing is ever lost: at every moment
//! one complete snapshot of the backup exists, and both name the same trees.

use crate::error::Result;
use crate::id::SnapshotId;
use crate::repo::Repository;
use crate::snapshot::Snapshot;

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
