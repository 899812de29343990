//! Verification: is every referenced object there, and (with data reading) intact?
//!
//! A failed check names what is damaged in the terms an operator acts on: which snapshots and
//! which paths in them. Blobs that are fine stay restorable, so the report also tells what can
//! still be recovered.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::id::{BlobId, PackId, SnapshotId};
use crate::index::IndexFile;
use crate::pack;
use crate::repo::Repository;
use crate::storage::layout;
use crate::tree::NodeKind;

#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    pub read_data: bool,
    /// Fraction of packs to read (0 < f <= 1); implies reading data.
    pub read_subset: Option<f64>,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Damage {
    pub snapshot: String,
    pub path: String,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct CheckReport {
    pub snapshots: usize,
    pub trees: usize,
    pub packs_indexed: usize,
    pub packs_read: usize,
    pub blobs_read: usize,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    /// What to do next, one command each, most urgent first.
    pub next_steps: Vec<String>,
    /// Files and directories that cannot be restored whole.
    pub damaged: Vec<Damage>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}

pub fn check(repo: &Repository, opts: &CheckOptions) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    let mut bad_blobs: HashSet<BlobId> = HashSet::new();

    // 0. What the storage holds besides objects: key files others can read, leftovers.
    key_file_modes(repo, &mut report);
    let leftovers = crate::prune::stale_temp_files(repo)?;
    if !leftovers.is_empty() {
        let bytes: u64 = leftovers.iter().filter_map(|l| l.size).sum();
        report.warnings.push(format!(
            "{} temporary file(s) of {bytes} bytes in {}/ are older than {} minutes (left by \
             killed writers; prune removes them)",
            leftovers.len(),
            layout::TMP,
            crate::lock::STALE_AFTER.as_secs() / 60
        ));
    }

    // 1. Index files decode (a corrupt one is an error, but the others still count).
    let mut index_damaged = false;
    for l in repo.storage().list(layout::INDEX)? {
        match repo.storage().read(&l.path) {
            Ok(b) => {
                let opened = crate::id::verify_addressed(&l.path, b)
                    .and_then(|b| IndexFile::open(&l.path, repo.key(), &b));
                if let Err(e) = opened {
                    index_damaged = true;
                    report.errors.push(e.to_string());
                }
            }
            Err(e) => {
                index_damaged = true;
                report.errors.push(e.to_string());
            }
        }
    }
    if index_damaged {
        report.next_steps.push(
            "holdfast repair index: rebuild the index from the packs' own headers (do not \
             prune before: packs listed only by a damaged index file would be deleted)"
                .into(),
        );
    }
    // Step 1 named every unreadable index file; load the others.
    let _ = repo.load_index_lenient()?;
    let index = repo.index();
    report.packs_indexed = index.pack_count();

    // 2. Indexed packs exist; stored packs are indexed.
    let stored: HashSet<String> = repo
        .storage()
        .list(layout::DATA)?
        .into_iter()
        .map(|l| l.name)
        .collect();
    for (id, blobs) in index.packs() {
        if !stored.contains(&id.to_hex()) {
            report.errors.push(format!(
                "pack {} is in the index but missing from storage",
                id
            ));
            bad_blobs.extend(blobs.iter().map(|b| b.id));
        }
    }
    let indexed: HashSet<String> = index.packs().map(|(p, _)| p.to_hex()).collect();
    let orphans = stored.iter().filter(|s| !indexed.contains(*s)).count();
    if orphans > 0 && index_damaged {
        report.errors.push(format!(
            "{orphans} pack(s) are not in any readable index file: they may be what the damaged \
             index file lists (holdfast repair index adds them back)"
        ));
    } else if orphans > 0 {
        report.warnings.push(format!(
            "{orphans} pack(s) are not in the index (left by an interrupted backup; prune \
             removes them, holdfast repair index would index them)"
        ));
    }

    // 3. Snapshots decode, and every tree and blob they reference is indexed.
    let snaps = match repo.list_snapshots_lenient() {
        Ok((s, problems)) => {
            for p in &problems {
                report.errors.push(p.to_string());
            }
            if let Some(p) = problems.first() {
                report.next_steps.push(format!(
                    "holdfast forget {}: remove a snapshot file that cannot be read, once no \
                     copy of it can be put back (prune and forget --prune refuse to run until \
                     then)",
                    p.id.short()
                ));
            }
            s
        }
        Err(e) => {
            report.errors.push(e.to_string());
            Vec::new()
        }
    };
    report.snapshots = snaps.len();
    let mut seen_trees: HashSet<BlobId> = HashSet::new();
    for (sid, snap) in &snaps {
        let mut stack: Vec<(BlobId, String)> =
            snap.root_trees().map(|t| (t, String::new())).collect();
        while let Some((tid, path)) = stack.pop() {
            if !seen_trees.insert(tid) {
                continue;
            }
            let tree = match repo.load_tree(&tid) {
                Ok(t) => t,
                Err(e) => {
                    report
                        .errors
                        .push(format!("snapshot {} at '/{}': {e}", sid.short(), path));
                    bad_blobs.insert(tid);
                    continue;
                }
            };
            for n in &tree.nodes {
                let p = if path.is_empty() {
                    n.name.lossy()
                } else {
                    format!("{path}/{}", n.name.lossy())
                };
                for c in &n.content {
                    if !index.contains(c) {
                        report.errors.push(format!(
                            "snapshot {} '{}': blob {} is missing",
                            sid.short(),
                            p,
                            c.short()
                        ));
                        bad_blobs.insert(*c);
                    }
                }
                if n.kind == NodeKind::Dir {
                    match n.subtree {
                        Some(s) => stack.push((s, p)),
                        None => report.errors.push(format!(
                            "snapshot {} '{}': directory without tree",
                            sid.short(),
                            p
                        )),
                    }
                }
            }
        }
    }
    report.trees = seen_trees.len();

    // 4. Read packs: whole-pack hash, header against index, every blob decrypts to its id.
    if opts.read_data || opts.read_subset.is_some() {
        let mut packs: Vec<(PackId, crate::index::PackBlobs)> = index.packs().collect();
        packs.sort_by_key(|(id, _)| *id);
        if let Some(f) = opts.read_subset {
            // Choose by id so that repeated runs with the same fraction read different packs
            // only as the repository changes; a random salt spreads successive runs.
            let salt: u8 = rand::random();
            let keep = ((packs.len() as f64 * f).ceil() as usize).min(packs.len());
            packs.sort_by_key(|(id, _)| id.0[0].wrapping_add(salt) as u32 * 256 + id.0[1] as u32);
            packs.truncate(keep);
        }
        report.packs_read = packs.len();
        let results: Vec<(Vec<String>, Vec<BlobId>, usize)> = packs
            .par_iter()
            .map(|(id, blobs)| read_pack(repo, id, &blobs.to_vec()))
            .collect();
        for (errs, bad, n) in results {
            report.errors.extend(errs);
            bad_blobs.extend(bad);
            report.blobs_read += n;
        }
    }

    // 5. Name what the damage affects.
    if !bad_blobs.is_empty() {
        report.damaged = affected(repo, &snaps, &bad_blobs);
        if !index_damaged {
            report.next_steps.push(
                "holdfast repair snapshots: list the snapshots that use missing or damaged \
                 data, and (with --apply) rewrite them without it"
                    .into(),
            );
        }
    }
    Ok(report)
}

/// Key files any local user can read: an offline password guess needs nothing more.
fn key_file_modes(repo: &Repository, report: &mut CheckReport) {
    let Ok(keys) = repo.storage().list(layout::KEYS) else {
        return;
    };
    for k in keys {
        if let Some(mode) = repo.storage().mode(&k.path) {
            if mode & 0o077 != 0 {
                report.warnings.push(format!(
                    "key file {} of {} is readable by others (mode {:o}): anyone who can read \
                     it can try passwords offline; chmod 600 it",
                    k.path,
                    repo.storage().location(),
                    mode & 0o777
                ));
            }
        }
    }
}

fn read_pack(
    repo: &Repository,
    id: &PackId,
    blobs: &[pack::PackedBlob],
) -> (Vec<String>, Vec<BlobId>, usize) {
    let path = layout::pack_path(&id.to_hex());
    let all: Vec<BlobId> = blobs.iter().map(|b| b.id).collect();
    let bytes = match repo.storage().read(&path) {
        Ok(b) => b,
        Err(e) => return (vec![e.to_string()], all, 0),
    };
    let mut errors = Vec::new();
    if crate::id::content_hash(&bytes) != id.0 {
        errors.push(format!(
            "pack {id}: content does not match its name (damaged)"
        ));
    }
    match pack::read_header(&id.to_hex(), repo.key(), &bytes) {
        Ok(header) => {
            let h: HashMap<BlobId, &pack::PackedBlob> = header.iter().map(|b| (b.id, b)).collect();
            for b in blobs {
                if h.get(&b.id).map(|x| (x.offset, x.length)) != Some((b.offset, b.length)) {
                    errors.push(format!(
                        "pack {}: header and index disagree about blob {}",
                        id.short(),
                        b.id.short()
                    ));
                }
            }
        }
        Err(e) => errors.push(e.to_string()),
    }
    let mut bad = Vec::new();
    for b in blobs {
        let (s, e) = (b.offset as usize, b.offset as usize + b.length as usize);
        let loc = crate::index::BlobLocation {
            pack: *id,
            kind: b.kind,
            offset: b.offset,
            length: b.length,
            raw_length: b.raw_length,
        };
        let res = if e <= bytes.len() {
            // A copy: blobs are opened in place, and a damaged index may list overlapping ones.
            repo.open_blob(&b.id, &loc, &mut bytes[s..e].to_vec())
                .map(|_| ())
        } else {
            Err(Error::corrupt(
                format!("blob {}", b.id.short()),
                "beyond the end of its pack",
            ))
        };
        if let Err(e) = res {
            errors.push(e.to_string());
            bad.push(b.id);
        }
    }
    (errors, bad, blobs.len())
}

/// Which files of which snapshots use a damaged or missing blob.
fn affected(
    repo: &Repository,
    snaps: &[(SnapshotId, crate::snapshot::Snapshot)],
    bad: &HashSet<BlobId>,
) -> Vec<Damage> {
    let mut out = BTreeSet::new();
    for (sid, snap) in snaps {
        let roots = std::iter::once((snap.tree, "/".to_string())).chain(
            snap.attachments
                .iter()
                .map(|a| (a.tree, format!("[{}]/", a.name))),
        );
        for (root, base) in roots {
            if bad.contains(&root) {
                out.insert((sid.short(), base));
                continue;
            }
            let _ = crate::walk::walk(repo, &root, Path::new(&base), &mut |p, n| {
                let hit = n.content.iter().any(|c| bad.contains(c))
                    || n.subtree.map(|s| bad.contains(&s)).unwrap_or(false);
                if hit {
                    out.insert((sid.short(), p.to_string_lossy().into_owned()));
                }
                Ok(!n.subtree.map(|s| bad.contains(&s)).unwrap_or(false))
            });
        }
    }
    out.into_iter()
        .map(|(snapshot, path)| Damage { snapshot, path })
        .collect()
}
