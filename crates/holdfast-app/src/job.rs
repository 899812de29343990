//! The scheduled job of an application: back up, apply the retention policy, verify.
//!
//! A backup only needs the shared lock, so the three steps take their locks one after
//! another: a backup from another host never waits for this host's prune, and a prune that
//! cannot get the exclusive lock (another host is backing up) is a warning for this run, not a
//! failure: the snapshot is written, and the next run forgets what is due.

use std::sync::Arc;

use chrono::Utc;
use holdfast_core::check::{self, CheckOptions, CheckReport};
use holdfast_core::forget;
use holdfast_core::lock::LockGuard;
use holdfast_core::retention::Decision;
use holdfast_core::Repository;

use crate::config::{CheckConfig, RetentionConfig};
use crate::error::Result;
use crate::profile::Resolved;
use crate::restore::recorded_app;
use crate::runlog::RunRecord;

/// What the retention step did.
#[derive(Debug, serde::Serialize)]
pub struct RetentionOutcome {
    pub decisions: Vec<Decision>,
    pub forgotten: usize,
    pub prune: Option<holdfast_core::prune::PruneReport>,
}

/// Forgets this application's snapshots by its policy (pre-upgrade ones stay unless asked)
/// and prunes when configured: `forget`'s own implementation, over this application's
/// snapshots. Takes the exclusive lock.
pub fn apply_retention(
    repo: &Arc<Repository>,
    app: &Resolved,
    r: &RetentionConfig,
) -> Result<RetentionOutcome> {
    let lock = LockGuard::acquire(repo.storage(), true, "forget")?;
    repo.load_index()?;
    let report = forget::forget(
        repo,
        &lock,
        forget::Selection::Policy,
        &|s| recorded_app(s).map(|(n, _)| n == app.name).unwrap_or(false),
        r,
        false,
    )?;
    drop(lock);
    Ok(RetentionOutcome {
        forgotten: report.removed.len(),
        decisions: report.decisions,
        prune: report.prune,
    })
}

/// Whether the check is due: `every` has passed since the last checked run of `app`.
pub fn check_due(c: &CheckConfig, app: &str, history: &[RunRecord]) -> bool {
    let Some(every) = c.every.map(|e| e.as_chrono()) else {
        return true;
    };
    let last = history
        .iter()
        .filter(|r| r.app == app && r.checked)
        .filter_map(|r| r.end)
        .max();
    match last {
        Some(t) => Utc::now() - t >= every,
        None => true,
    }
}

/// Verifies the repository as configured (structure, and a share of the data).
pub fn run_check(repo: &Arc<Repository>, c: &CheckConfig) -> Result<CheckReport> {
    let subset = c.read_data_subset.map(|s| s.fraction());
    let _lock = LockGuard::acquire(repo.storage(), false, "check")?;
    // No load_index here: check loads what it can and reports a damaged index file itself.
    Ok(check::check(
        repo,
        &CheckOptions {
            read_data: subset.map(|f| f >= 1.0).unwrap_or(false),
            read_subset: subset.filter(|f| *f < 1.0),
        },
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_and_due_checks() {
        let c = CheckConfig {
            read_data_subset: None,
            every: Some("7d".parse().unwrap()),
        };
        let recent = RunRecord {
            app: "design".into(),
            checked: true,
            end: Some(Utc::now() - chrono::Duration::days(2)),
            ..Default::default()
        };
        assert!(!check_due(&c, "design", std::slice::from_ref(&recent)));
        assert!(check_due(&c, "other", std::slice::from_ref(&recent)));
        let old = RunRecord {
            end: Some(Utc::now() - chrono::Duration::days(8)),
            ..recent
        };
        assert!(check_due(&c, "design", &[old]));
    }
}
