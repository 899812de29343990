//! Which snapshots hold a path, as restic's `find` answers it: "when did this file last
//! exist, and how big was it then?", the first question before a restore of one file.
//!
//! Snapshots share most of their directories, and a repository stores each directory once: a
//! subtree searched without a match in one snapshot is not searched again in the next, so
//! searching thirty daily snapshots costs little more than searching one.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};

use crate::error::{Error, Result};
use crate::id::{BlobId, SnapshotId};
use crate::repo::Repository;
use crate::snapshot::Snapshot;
use crate::tree::Node;

/// A glob over names, or over whole paths when it contains a `/`.
///
/// `*.csv` matches a name anywhere; `projects/*/params` matches a path ending with those
/// components at any depth; `/data/projects/*/params` matches from the snapshot's root.
/// `*` stops at `/`, `**` does not.
#[derive(Debug, Clone)]
pub struct Pattern {
    glob: GlobMatcher,
    whole_path: bool,
}

impl Pattern {
    pub fn new(pattern: &str) -> Result<Pattern> {
        let whole_path = pattern.contains('/');
        let anchored = match pattern.strip_prefix('/') {
            Some(rest) => format!("/{rest}"),
            None if whole_path => format!("**/{pattern}"),
            None => pattern.to_string(),
        };
        let glob = GlobBuilder::new(&anchored)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| Error::Invalid(format!("pattern '{pattern}': {e}")))?
            .compile_matcher();
        Ok(Pattern { glob, whole_path })
    }

    fn matches(&self, path: &Path, node: &Node) -> bool {
        if self.whole_path {
            self.glob.is_match(path)
        } else {
            self.glob.is_match(node.name.as_os_str())
        }
    }
}

/// One entry that matched, in one snapshot.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Found {
    pub snapshot: SnapshotId,
    /// From the snapshot's root, starting with `/`.
    pub path: PathBuf,
    pub node: Node,
}

/// Every entry matching any of `patterns` in each of `snapshots`, in the order given, each
/// snapshot's entries in tree order. `on_found` gets them as they are found (so a caller can
/// print at once); the search stops when it returns false.
pub fn find(
    repo: &Repository,
    snapshots: &[(SnapshotId, Snapshot)],
    patterns: &[Pattern],
    on_found: &mut dyn FnMut(Found) -> bool,
) -> Result<()> {
    let mut search = Search {
        repo,
        patterns,
        whole_path: patterns.iter().any(|p| p.whole_path),
        empty: HashSet::new(),
        stop: false,
    };
    for (id, snap) in snapshots {
        search.tree(&snap.tree, Path::new("/"), &mut |path, node| {
            on_found(Found {
                snapshot: *id,
                path: path.to_path_buf(),
                node: node.clone(),
            })
        })?;
        if search.stop {
            break;
        }
    }
    Ok(())
}

struct Search<'a> {
    repo: &'a Repository,
    patterns: &'a [Pattern],
    whole_path: bool,
    /// Subtrees known to hold no match: by id, and by where they sit when a pattern looks at
    /// whole paths (the same directory elsewhere may match there).
    empty: HashSet<(BlobId, Option<PathBuf>)>,
    stop: bool,
}

impl Search<'_> {
    /// Searches one tree; returns whether anything below it matched.
    fn tree(
        &mut self,
        id: &BlobId,
        at: &Path,
        found: &mut dyn FnMut(&Path, &Node) -> bool,
    ) -> Result<bool> {
        let key = (*id, self.whole_path.then(|| at.to_path_buf()));
        if self.stop || self.empty.contains(&key) {
            return Ok(false);
        }
        let tree = self.repo.load_tree(id)?;
        let mut any = false;
        for node in &tree.nodes {
            let path = at.join(node.name.as_os_str());
            if self.patterns.iter().any(|p| p.matches(&path, node)) {
                any = true;
                if !found(&path, node) {
                    self.stop = true;
                    return Ok(true);
                }
            }
            if let Some(sub) = &node.subtree {
                any |= self.tree(sub, &path, found)?;
                if self.stop {
                    return Ok(true);
                }
            }
        }
        if !any {
            self.empty.insert(key);
        }
        Ok(any)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> Node {
        let mut n: Node = serde_json::from_value(serde_json::json!({
            "name": name, "type": "file", "mode": 0o644, "uid": 0, "gid": 0,
            "mtime": [0, 0], "atime": [0, 0], "ctime": [0, 0]
        }))
        .unwrap();
        n.size = 1;
        n
    }

    #[test]
    fn names_paths_and_anchors() {
        let m = |pat: &str, path: &str| {
            let name = path.rsplit('/').next().unwrap();
            Pattern::new(pat)
                .unwrap()
                .matches(Path::new(path), &node(name))
        };
        assert!(m("*.csv", "/data/projects/p1/out.csv"));
        assert!(!m("*.csv", "/data/projects/p1/out.csv.gz"));
        assert!(m("params", "/data/projects/P1/params"));
        assert!(m("projects/*/params", "/data/projects/P1/params"));
        assert!(!m("projects/*/params", "/data/projects/P1/sub/params"));
        assert!(m("projects/**/params", "/data/projects/P1/sub/params"));
        assert!(m("/data/projects/*/params", "/data/projects/P1/params"));
        assert!(!m("/projects/*/params", "/data/projects/P1/params"));
        assert!(Pattern::new("a[").is_err());
    }
}
