//! Forgetting snapshots, by policy or by name, and pruning after: one implementation for
//! `forget` and for the retention of scheduled runs.
//!
//! The two used to be separate copies, and one deleted without checking that its exclusive
//! lock was still held. Here every delete, and prune's, is preceded by that check; a policy
//! decides only over a complete listing (while one snapshot cannot be read, it may be the
//! newest of its group, so nothing is forgotten by policy), and a snapshot named by id is
//! removed even when its file cannot be read, which is how an operator removes a damaged one.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::id::SnapshotId;
use crate::lock::LockGuard;
use crate::prune::{prune_guarded, PruneOptions, PruneReport};
use std::sync::Arc;

use crate::repo::Repository;
use crate::retention::{apply, group_key, Decision, ForgetRules};
use crate::snapshot::{Snapshot, SnapshotFilter};

/// Which snapshots to forget.
pub enum Selection<'a> {
    /// The rules' policy decides, among the snapshots the predicate accepts.
    Policy,
    /// Exactly these (id prefixes), among the snapshots the predicate accepts.
    Named(&'a [String]),
}

#[derive(Debug, Serialize)]
pub struct ForgetReport {
    pub dry_run: bool,
    pub decisions: Vec<Decision>,
    /// Named snapshots whose file cannot be read, removed (or, in a dry run, to be removed).
    pub unreadable: Vec<SnapshotId>,
    pub removed: Vec<SnapshotId>,
    pub prune: Option<PruneReport>,
}

/// Forgets what `selection` chooses among the snapshots `accept` takes, then prunes when the
/// rules ask and this is not a dry run. `lock` must be the repository's exclusive lock.
pub fn forget(
    repo: &Arc<Repository>,
    lock: &LockGuard,
    selection: Selection<'_>,
    accept: &dyn Fn(&Snapshot) -> bool,
    rules: &ForgetRules,
    dry_run: bool,
) -> Result<ForgetReport> {
    if !dry_run {
        // Before anything is deleted: a tag's leftover would come back into view once the
        // snapshot that replaced it is forgotten.
        for id in crate::amend::remove_replaced(repo)? {
            tracing::info!("removed snapshot {}, replaced by a tagged copy", id.short());
        }
    }
    let mut unreadable = Vec::new();
    let decisions = match selection {
        Selection::Policy => {
            let policy = rules.policy();
            if policy.is_empty() {
                return Err(Error::Invalid(
                    "no keep rule given: refusing to forget every snapshot".into(),
                ));
            }
            let snaps: Vec<_> = repo
                .list_snapshots_strict()?
                .into_iter()
                .filter(|(_, s)| accept(s))
                .collect();
            apply(&snaps, &policy)
        }
        Selection::Named(prefixes) => {
            let mut chosen = Vec::new();
            for p in prefixes {
                match repo.find_snapshot(p, &SnapshotFilter::default()) {
                    Ok((id, _)) => chosen.push(id),
                    Err(e @ Error::Corrupt { .. }) => {
                        match repo.snapshot_ids_with_prefix(p)?.as_slice() {
                            [id] if p != "latest" => {
                                tracing::warn!(
                                    "snapshot {} cannot be read ({e}); it is removed as asked",
                                    id.short()
                                );
                                unreadable.push(*id);
                            }
                            _ => return Err(e),
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            repo.list_snapshots()?
                .into_iter()
                .filter(|(_, s)| accept(s))
                .map(|(id, s)| Decision {
                    id,
                    time: s.time,
                    group: group_key(&s),
                    keep: !chosen.contains(&id),
                    reasons: if chosen.contains(&id) {
                        vec![]
                    } else {
                        vec!["not named".into()]
                    },
                })
                .collect()
        }
    };
    let mut removed = Vec::new();
    let mut prune = None;
    if !dry_run {
        let doomed = decisions.iter().filter(|d| !d.keep).map(|d| d.id);
        for id in doomed.chain(unreadable.iter().copied()) {
            lock.ensure_held()?;
            repo.delete_snapshot(&id)?;
            removed.push(id);
        }
        // Records of drills of the snapshots just forgotten (or of ones gone before).
        if !removed.is_empty() {
            repo.remove_orphan_drills()?;
        }
        if rules.prune {
            prune = Some(prune_guarded(
                repo,
                &PruneOptions {
                    repack_threshold: rules.repack_threshold.fraction(),
                    dry_run: false,
                },
                &|| lock.ensure_held(),
            )?);
        }
    }
    Ok(ForgetReport {
        dry_run,
        decisions,
        unreadable,
        removed,
        prune,
    })
}
