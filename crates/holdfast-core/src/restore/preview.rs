//! `restore --dry-run`: what a restore would write, replace or refuse, found without writing.
//!
//! It walks the snapshot with the restore's own selection rule ([`super::selection`]) and
//! looks at the target the way the restore would (never following a link), and it checks
//! that every chunk a selected file needs is in the index and in a pack that is stored (one
//! listing of the packs): a preview that says "would restore" of a snapshot whose data is
//! gone would be the wrong kind of reassurance. It does not read the packs; `check
//! --read-data` proves their content.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{selection, target_refusal, RestoreOptions};
use crate::error::Result;
use crate::exclude::Excludes;
use crate::id::BlobId;
use crate::repo::Repository;
use crate::snapshot::Snapshot;
use crate::tree::{Node, NodeKind};

/// What the restore would do with one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Nothing is there: it would be made.
    Create,
    /// Something is there and `--overwrite` was given: it would be replaced.
    Replace,
    /// A directory is there where one goes: kept, its metadata set.
    Keep,
    /// Something is there and no `--overwrite`: the restore would stop here.
    Refuse,
}

/// Counts of a preview, by action.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Preview {
    pub target: PathBuf,
    /// Why the restore would stop before writing anything (e.g. a target that is not empty
    /// without `--overwrite`).
    pub refused: Option<String>,
    pub create: u64,
    pub replace: u64,
    pub keep: u64,
    pub refuse: u64,
    pub files: u64,
    /// Bytes of the files that would be written.
    pub bytes: u64,
    /// Chunks selected files need that are not indexed, or whose pack is not stored: the
    /// restore would fail.
    pub missing_chunks: u64,
}

/// Walks what `opts` selects of `snap` and says, for each entry (`on_entry`, in tree order),
/// what the restore would do; returns the totals. `emptied`: the target will be empty when
/// the restore starts (a pristine restore moves its content aside first).
pub fn preview(
    repo: &Repository,
    snap: &Snapshot,
    opts: &RestoreOptions,
    emptied: bool,
    on_entry: &mut dyn FnMut(&Path, &Node, Action),
) -> Result<Preview> {
    let include = if opts.include.is_empty() {
        None
    } else {
        Some(Excludes::new(&opts.include, &[])?)
    };
    let exclude = Excludes::new(&opts.exclude, &[])?;
    let stored: HashSet<String> = repo
        .storage()
        .list(crate::storage::layout::DATA)?
        .into_iter()
        .map(|l| l.name)
        .collect();
    let mut p = Previewer {
        stored,
        repo,
        opts,
        include: include.as_ref(),
        exclude: &exclude,
        out: Preview {
            target: opts.target.clone(),
            refused: if emptied {
                None
            } else {
                target_refusal(&opts.target, opts.overwrite)?
            },
            ..Preview::default()
        },
        emptied,
        on_entry,
    };
    p.walk(&snap.tree, Path::new(""), false)?;
    Ok(p.out)
}

struct Previewer<'a> {
    repo: &'a Repository,
    /// Names of the stored packs.
    stored: HashSet<String>,
    opts: &'a RestoreOptions,
    include: Option<&'a Excludes>,
    exclude: &'a Excludes,
    out: Preview,
    emptied: bool,
    on_entry: &'a mut dyn FnMut(&Path, &Node, Action),
}

impl Previewer<'_> {
    fn walk(&mut self, tree: &BlobId, prefix: &Path, forced: bool) -> Result<()> {
        let t = self.repo.load_tree(tree)?;
        for n in t.nodes {
            let rel = prefix.join(n.name.as_os_str());
            let Some(matched) = selection(self.include, self.exclude, &rel, forced) else {
                continue;
            };
            if matched {
                let action = self.action(&rel, &n);
                match action {
                    Action::Create => self.out.create += 1,
                    Action::Replace => self.out.replace += 1,
                    Action::Keep => self.out.keep += 1,
                    Action::Refuse => self.out.refuse += 1,
                }
                if n.kind == NodeKind::File {
                    self.out.files += 1;
                    self.out.bytes += n.size;
                    let index = self.repo.index();
                    self.out.missing_chunks += n
                        .content
                        .iter()
                        .filter(|c| {
                            index
                                .get(c)
                                .map(|loc| !self.stored.contains(&loc.pack.to_hex()))
                                .unwrap_or(true)
                        })
                        .count() as u64;
                }
                (self.on_entry)(&Path::new("/").join(&rel), &n, action);
            }
            if let Some(sub) = n.subtree {
                self.walk(&sub, &rel, matched)?;
            }
        }
        Ok(())
    }

    fn action(&self, rel: &Path, n: &Node) -> Action {
        if self.emptied {
            return Action::Create;
        }
        match self.opts.target.join(rel).symlink_metadata() {
            Err(_) => Action::Create,
            Ok(m) if m.is_dir() && n.kind == NodeKind::Dir => Action::Keep,
            Ok(_) if self.opts.overwrite => Action::Replace,
            Ok(_) => Action::Refuse,
        }
    }
}
