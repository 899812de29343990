//! The scheduled job of an application: back up, apply the retention policy, verify.
//!
//! A backup only needs the shared lock, so the three steps take their locks one after
//! another: a backup from another host never waits for this host's prune, and a prune that
//! cannot get the exclusive lock (another host is backing up) is a warning for this run, not a
//! failure: the snapshot is written, and the next run forgets what is due.

use std::sync::Arc;

use chrono::Utc;
use holdfast_core::check::{self, CheckOptions, CheckReport};
use holdfast_core::lock::LockGuard;
use holdfast_core::retention::{self, Decision};
use holdfast_core::Repository;

use crate::config::{CheckConfig, RetentionConfig};
use crate::error::{Error, Result};
use crate::profile::Resolved;
use crate::restore::recorded_app;
use crate::runlog::RunRecord;

/// What the retention step did.
#[derive(Debug, Default, serde::Serialize)]
pub struct RetentionOutcome {
    pub decisions: Vec<Decision>,
    pub forgotten: usize,
    pub prune: Option<holdfast_core::prune::PruneReport>,
}

/// Forgets this application's snapshots by its policy (pre-upgrade ones stay unless asked)
/// and prunes when configured. Takes the exclusive lock.
pub fn apply_retention(
    repo: &Arc<Repository>,
    app: &Resolved,
    r: &RetentionConfig,
) -> Result<RetentionOutcome> {
    let policy = r.policy().map_err(Error::Config)?;
    let lock = LockGuard::acquire(repo.storage(), true, "forget")?;
    repo.load_index()?;
    // Strict: while a snapshot cannot be read, which snapshots the policy keeps is unknown
    // (the damaged one may be the newest), so nothing is forgotten.
    let snaps: Vec<_> = repo
        .list_snapshots_strict()?
        .into_iter()
        .filter(|(_, s)| recorded_app(s).map(|(n, _)| n == app.name).unwrap_or(false))
        .collect();
    let decisions = retention::apply(&snaps, &policy);
    let mut forgotten = 0;
    for d in decisions.iter().filter(|d| !d.keep) {
        lock.ensure_held()?;
        repo.delete_snapshot(&d.id)?;
        forgotten += 1;
    }
    let prune = if r.prune {
        Some(holdfast_core::prune::prune_guarded(
            repo,
            &holdfast_core::prune::PruneOptions {
                repack_threshold: r.repack_fraction().map_err(Error::Config)?,
                dry_run: false,
            },
            &|| lock.ensure_held(),
        )?)
    } else {
        None
    };
    drop(lock);
    Ok(RetentionOutcome {
        decisions,
        forgotten,
        prune,
    })
}

/// Whether the check is due: `every` has passed since the last checked run of `app`.
pub fn check_due(c: &CheckConfig, app: &str, history: &[RunRecord]) -> bool {
    let Some(every) = c.every.as_deref() else {
        return true;
    };
    let Ok(every) = retention::parse_duration(every) else {
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

/// Parses `5%` or `1/7` into a fraction of packs to read.
pub fn parse_subset(s: &str) -> std::result::Result<f64, String> {
    let f = if let Some(p) = s.strip_suffix('%') {
        p.trim().parse::<f64>().map(|v| v / 100.0)
    } else if let Some((n, d)) = s.split_once('/') {
        match (n.trim().parse::<f64>(), d.trim().parse::<f64>()) {
            (Ok(n), Ok(d)) if d > 0.0 => Ok(n / d),
            _ => return Err(format!("'{s}' is not a subset (e.g. 5% or 1/7)")),
        }
    } else {
        return Err(format!("'{s}' is not a subset (e.g. 5% or 1/7)"));
    };
    match f {
        Ok(f) if f > 0.0 && f <= 1.0 => Ok(f),
        _ => Err(format!("'{s}' is not a subset between 0% and 100%")),
    }
}

/// Verifies the repository as configured (structure, and a share of the data).
pub fn run_check(repo: &Arc<Repository>, c: &CheckConfig) -> Result<CheckReport> {
    let subset = c
        .read_data_subset
        .as_deref()
        .map(parse_subset)
        .transpose()
        .map_err(Error::Config)?;
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
        assert_eq!(parse_subset("5%").unwrap(), 0.05);
        assert!((parse_subset("1/7").unwrap() - 1.0 / 7.0).abs() < 1e-9);
        assert!(parse_subset("0%").is_err() && parse_subset("lots").is_err());
        let c = CheckConfig {
            read_data_subset: None,
            every: Some("7d".into()),
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
