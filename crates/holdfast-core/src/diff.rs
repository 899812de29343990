//! What changed between two snapshots, with content and metadata changes told apart.
//!
//! Subtrees with the same id are identical and skipped without being loaded, so comparing two
//! snapshots of a large, mostly unchanged directory is quick.

use std::path::Path;

use serde::Serialize;

use crate::error::Result;
use crate::id::BlobId;
use crate::repo::Repository;
use crate::tree::{Node, NodeKind, Tree};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    Removed,
    /// Content (or link target, or type) differs.
    Modified,
    /// Same content, different owner, mode, times or xattrs.
    Metadata,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiffEntry {
    pub change: Change,
    pub path: String,
    #[serde(rename = "type")]
    pub kind: NodeKind,
}

pub fn diff(repo: &Repository, a: &BlobId, b: &BlobId) -> Result<Vec<DiffEntry>> {
    let mut out = Vec::new();
    diff_trees(repo, Some(*a), Some(*b), Path::new("/"), &mut out)?;
    Ok(out)
}

fn load(repo: &Repository, id: Option<BlobId>) -> Result<Tree> {
    match id {
        Some(id) => repo.load_tree(&id),
        None => Ok(Tree::default()),
    }
}

fn diff_trees(
    repo: &Repository,
    a: Option<BlobId>,
    b: Option<BlobId>,
    prefix: &Path,
    out: &mut Vec<DiffEntry>,
) -> Result<()> {
    if a == b {
        return Ok(());
    }
    let (ta, tb) = (load(repo, a)?, load(repo, b)?);
    let (mut i, mut j) = (0, 0);
    while i < ta.nodes.len() || j < tb.nodes.len() {
        let (na, nb) = (ta.nodes.get(i), tb.nodes.get(j));
        let ord = match (na, nb) {
            (Some(x), Some(y)) => x.name.cmp(&y.name),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match ord {
            std::cmp::Ordering::Less => {
                let n = na.unwrap();
                whole(repo, n, prefix, Change::Removed, out)?;
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                let n = nb.unwrap();
                whole(repo, n, prefix, Change::Added, out)?;
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                let (x, y) = (na.unwrap(), nb.unwrap());
                let path = prefix.join(x.name.as_os_str());
                if x.kind != y.kind {
                    whole(repo, x, prefix, Change::Removed, out)?;
                    whole(repo, y, prefix, Change::Added, out)?;
                } else {
                    let content =
                        x.content != y.content || x.target != y.target || x.rdev != y.rdev;
                    let change = if content && x.kind != NodeKind::Dir {
                        Some(Change::Modified)
                    } else if !x.same_metadata(y) {
                        Some(Change::Metadata)
                    } else {
                        None
                    };
                    if let Some(change) = change {
                        out.push(entry(&path, y, change));
                    }
                    if x.kind == NodeKind::Dir {
                        diff_trees(repo, x.subtree, y.subtree, &path, out)?;
                    }
                }
                i += 1;
                j += 1;
            }
        }
    }
    Ok(())
}

fn entry(path: &Path, n: &Node, change: Change) -> DiffEntry {
    DiffEntry {
        change,
        path: path.to_string_lossy().into_owned(),
        kind: n.kind,
    }
}

/// An added or removed node, with everything below it.
fn whole(
    repo: &Repository,
    n: &Node,
    prefix: &Path,
    change: Change,
    out: &mut Vec<DiffEntry>,
) -> Result<()> {
    let path = prefix.join(n.name.as_os_str());
    out.push(entry(&path, n, change));
    if let (NodeKind::Dir, Some(sub)) = (n.kind, n.subtree) {
        crate::walk::walk(repo, &sub, &path, &mut |p, c| {
            out.push(entry(p, c, change));
            Ok(true)
        })?;
    }
    Ok(())
}
