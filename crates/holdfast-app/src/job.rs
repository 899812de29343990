//! The scheduled job of an application: back up, apply the retention policy, verify.
//!
//! A backup only needs the shared lock, so the three steps take their locks one after
//! another: a backup from another host never waits for this host's prune, and a prune that
//! cannot get the exclusive lock (another host is backing up) is a warning for this run, not a
//! failure: the snapshot is written, and the next run forgets what is due.

use std::sync::Arc;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use holdfast_core::check::{self, CheckOptions, CheckReport};
use holdfast_core::error::exit;
use holdfast_core::forget;
use holdfast_core::lock::LockGuard;
use holdfast_core::retention::Decision;
use holdfast_core::Repository;

use crate::config::{CheckConfig, Config, RetentionConfig};
use crate::error::{Error, Result};
use crate::notify;
use crate::resolved::Resolved;
use crate::restore::recorded_app;
use crate::runlog::{self, RunRecord, RunResult};

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

/// The run log: `run_log` of the configuration, else `state_dir/runs.jsonl`.
pub fn run_log(cfg: &Config) -> PathBuf {
    cfg.run_log
        .clone()
        .unwrap_or_else(|| cfg.state_dir.join("runs.jsonl"))
}

/// After a scheduled run's backup succeeded: the application's retention, then its check
/// when due, each recorded in `rec`. `open(use_cache)` opens the repository. Damage is a
/// failure of the run (exit code 14), never a warning: nothing was forgotten and someone has
/// to act; other problems of these steps are warnings, the snapshot being written.
pub fn after_backup(
    cfg: &Config,
    app: &Resolved,
    rec: &mut RunRecord,
    open: &dyn Fn(bool) -> Result<Arc<Repository>>,
) {
    let damaged = |e: &Error| e.exit_code() == exit::INTEGRITY;
    if let Some(r) = &app.config.retention {
        match open(true).and_then(|repo| apply_retention(&repo, app, r)) {
            Ok(o) => {
                rec.forgotten = o.forgotten;
                rec.retention_applied = true;
            }
            Err(e) if damaged(&e) => {
                rec.result = RunResult::Failure;
                rec.exit_code = exit::INTEGRITY;
                rec.error = Some(format!("retention refused: {e}"));
            }
            Err(e) => rec.warnings.push(format!("retention: {e}")),
        }
    }
    if let Some(c) = &app.config.check {
        if check_due(c, &app.name, &runlog::read(&run_log(cfg))) {
            // The repository itself, not the cache: check verifies what is stored.
            match open(false).and_then(|repo| run_check(&repo, c)) {
                Ok(report) => {
                    rec.checked = true;
                    if !report.ok() {
                        rec.result = RunResult::Failure;
                        rec.exit_code = exit::INTEGRITY;
                        rec.error = Some(format!(
                            "check found damage: {}",
                            report.errors.first().cloned().unwrap_or_default()
                        ));
                    }
                }
                Err(e) if damaged(&e) => {
                    rec.checked = true;
                    rec.result = RunResult::Failure;
                    rec.exit_code = exit::INTEGRITY;
                    rec.error = Some(format!("check found damage: {e}"));
                }
                Err(e) => rec.warnings.push(format!("check: {e}")),
            }
        }
    }
}

/// The ping URLs that apply to a run of `app`: the global one, then the application's.
fn ping_urls<'a>(cfg: &'a Config, app: &str) -> Vec<&'a notify::PingUrl> {
    let app_hooks = cfg.app.get(app).map(|a| &a.hooks);
    [Some(&cfg.hooks), app_hooks]
        .into_iter()
        .flatten()
        .filter_map(|h| h.ping_url.as_ref())
        .collect()
}

/// Starts a run of `app` that began at `start`: pings the monitoring service, if one is
/// configured. Returns the warnings, for the run's record (a ping never stops a run).
pub fn start_run(cfg: &Config, app: &str, start: DateTime<Utc>) -> Vec<String> {
    let rid = notify::run_id(app, start);
    let body = format!("holdfast run of {app}: started\n");
    ping_urls(cfg, app)
        .into_iter()
        .filter_map(|url| notify::ping(url, notify::Event::Start, &rid, &body).err())
        .inspect(|w| tracing::warn!("{w}"))
        .collect()
}

/// Ends a run: hooks (global, then the application's), the end ping, the run log line, the
/// run's record in the repository (opened with `open_repo`), the metrics file
/// (`metrics_file`, else the configuration's). None of these changes the
/// run's result: hook failures become the run's warnings, and failures to write the log or
/// the metrics are returned, for the caller to say.
pub fn finish_run(
    cfg: &Config,
    rec: &mut RunRecord,
    metrics_file: Option<&Path>,
    open_repo: &dyn Fn() -> Option<Arc<Repository>>,
) -> Vec<String> {
    rec.end = Some(Utc::now());
    let success = rec.result != RunResult::Failure;
    let mut hooks = cfg.hooks.for_result(success);
    if let Some(app) = cfg.app.get(&rec.app) {
        hooks.extend(app.hooks.for_result(success));
    }
    let problems = runlog::run_hooks(&hooks, rec);
    rec.warnings.extend(problems);
    if let Some(start) = rec.start {
        let rid = notify::run_id(&rec.app, start);
        let body = notify::report(rec);
        let event = notify::Event::end_of(rec);
        for url in ping_urls(cfg, &rec.app) {
            if let Err(w) = notify::ping(url, event, &rid, &body) {
                tracing::warn!("{w}");
                rec.warnings.push(w);
            }
        }
    }
    if rec.hostname.is_empty() {
        rec.hostname = holdfast_core::host::hostname();
    }
    if rec.schedule.is_none() {
        rec.schedule = cfg.app.get(&rec.app).and_then(|a| a.schedule.clone());
    }
    let mut said = Vec::new();
    let log = run_log(cfg);
    if let Err(e) = runlog::append(&log, rec) {
        said.push(format!("run log {}: {e}", log.display()));
    }
    // The repository's copy, for consoles on every host.
    let repo = open_repo();
    match &repo {
        Some(repo) => {
            if let Err(e) = repo.save_run(rec) {
                said.push(format!("run record in the repository: {e}"));
            }
        }
        None => said.push("run record in the repository: the repository did not open".into()),
    }
    if let Some(path) = metrics_file.or(cfg.metrics_file.as_deref()) {
        if let Err(e) = write_metrics(&log, path, repo.as_deref()) {
            said.push(format!("metrics file {}: {e}", path.display()));
        }
    }
    said
}

fn write_metrics(log: &Path, path: &Path, repo: Option<&Repository>) -> Result<()> {
    let records = runlog::read(log);
    let mut numbers = runlog::RepoNumbers::default();
    if let Some(repo) = repo {
        let mut per_app: std::collections::BTreeMap<String, usize> = Default::default();
        for (_, s) in repo.list_snapshots()? {
            let app = recorded_app(&s).map(|(n, _)| n).unwrap_or_default();
            *per_app.entry(app).or_default() += 1;
        }
        numbers.snapshots_per_app = per_app.into_iter().collect();
        repo.load_index()?;
        numbers.repository_bytes = repo.index().blobs().map(|(_, loc)| loc.length as u64).sum();
    }
    runlog::write_atomic(path, &runlog::render_metrics(&records, &numbers))?;
    Ok(())
}

/// Whether a drill is due: the application's drill has an `every`, and that long has passed
/// since its last drill in the run log (whatever its verdict: a failing drill is not retried
/// at every run, it is reported).
pub fn drill_due(app: &Resolved, history: &[RunRecord]) -> bool {
    let Some(every) = app.config.drill.as_ref().and_then(|d| d.every) else {
        return false;
    };
    let last = history
        .iter()
        .filter(|r| r.app == app.name && r.is_drill())
        .filter_map(|r| r.end)
        .max();
    match last {
        Some(t) => Utc::now() - t >= every.as_chrono(),
        None => true,
    }
}

/// Drills snapshot `id` of `app` (the latest when `None`) and stores the drill record in the
/// repository, under a shared lock. The record says whether the backup passed; an error
/// means the drill could not run.
pub fn drill(
    cfg: &Config,
    app: &Resolved,
    repo: &Arc<Repository>,
    id: Option<&str>,
    cancel: &std::sync::atomic::AtomicBool,
    on_step: &dyn Fn(&str),
) -> Result<holdfast_core::drills::DrillRecord> {
    let lock = LockGuard::acquire(repo.storage(), false, "drill")?;
    repo.load_index()?;
    let selected = crate::restore::select_app_snapshot(
        repo,
        &app.name,
        id.unwrap_or("latest"),
        &Default::default(),
    )?;
    let d = crate::drill::Drill {
        repo,
        app,
        snap_id: selected.id,
        snap: &selected.snap,
        state_dir: &cfg.state_dir,
        config: app.config.drill.clone().unwrap_or_default(),
        cancel,
        on_step,
    };
    let record = d.run()?;
    lock.ensure_held()?;
    repo.save_drill(&record)?;
    Ok(record)
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
