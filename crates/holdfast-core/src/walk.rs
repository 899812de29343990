//! Depth-first traversal of a snapshot's trees, shared by ls, diff, restore, check and stats.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::id::BlobId;
use crate::repo::Repository;
use crate::tree::{Node, NodeKind};

/// Calls `visit(path, node)` for every entry below `tree`, parents before children. `visit`
/// returns whether to descend into a directory.
pub fn walk(
    repo: &Repository,
    tree: &BlobId,
    prefix: &Path,
    visit: &mut dyn FnMut(&Path, &Node) -> Result<bool>,
) -> Result<()> {
    let t = repo.load_tree(tree)?;
    for n in &t.nodes {
        let path = prefix.join(n.name.as_os_str());
        let descend = visit(&path, n)?;
        if descend && n.kind == NodeKind::Dir {
            if let Some(sub) = &n.subtree {
                walk(repo, sub, &path, visit)?;
            }
        }
    }
    Ok(())
}

/// The tree id at `path` (relative, `/`-separated) below `root`, or the node there when it is
/// not a directory.
pub fn resolve(repo: &Repository, root: &BlobId, path: &str) -> Result<Resolved> {
    let mut tree = *root;
    let mut walked = PathBuf::new();
    let comps: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    for (i, c) in comps.iter().enumerate() {
        walked.push(c);
        let t = repo.load_tree(&tree)?;
        let node = t.find(c.as_bytes()).ok_or_else(|| {
            crate::error::Error::NotFound(format!("'{}' in the snapshot", walked.display()))
        })?;
        match (&node.kind, &node.subtree) {
            (NodeKind::Dir, Some(sub)) => tree = *sub,
            _ if i + 1 == comps.len() => return Ok(Resolved::Leaf(walked, Box::new(node.clone()))),
            _ => {
                return Err(crate::error::Error::Invalid(format!(
                    "'{}' in the snapshot is not a directory",
                    walked.display()
                )))
            }
        }
    }
    Ok(Resolved::Dir(walked, tree))
}

pub enum Resolved {
    Dir(PathBuf, BlobId),
    Leaf(PathBuf, Box<Node>),
}
