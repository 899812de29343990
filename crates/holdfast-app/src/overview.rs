//! What the console's overview says of each application on each host, and why: the rules
//! that turn snapshots, run records, drills and schedules into red, amber and green. They
//! live here, not in the web crate, so that a script using the library judges the same way.
//!
//! The rules (docs/console.md repeats them for operators):
//! - **red**: the last backup run failed; or a scheduled run is missing: a time the schedule
//!   fired, later than the last backup's start, is more than the grace ago (the grace is the
//!   configured one plus the last run's duration, so a long backup is not "late" while it
//!   runs); or the last drill failed.
//! - **amber**: the last backup left files unreadable or had warnings; or the newest
//!   snapshot is not consistent; or a drill is due (`[app.NAME.drill] every`) and has not run
//!   within that time plus the grace; or an application scheduled here was never backed up.
//! - **green**: none of these.
//! - **grey**: no schedule is known and nothing failed: nothing to be late for.
//!
//! Schedules are evaluated in this host's time zone. A schedule of weekdays only does not
//! fire on Sunday, so Monday morning before its run is not late.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Local, Utc};
use holdfast_core::drills::DrillRecord;
use holdfast_core::id::SnapshotId;
use holdfast_core::snapshot::Snapshot;
use serde::Serialize;

use crate::config::Config;
use crate::runlog::{RunRecord, RunResult};
use crate::schedule;

/// The grace after a scheduled time before a missing run is red, unless configured.
pub const DEFAULT_GRACE: Duration = Duration::hours(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Grey,
    Green,
    Amber,
    Red,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Green => "green",
            Status::Amber => "amber",
            Status::Red => "red",
            Status::Grey => "grey",
        }
    }
}

/// The newest snapshot of an application on a host.
#[derive(Clone, Debug, Serialize)]
pub struct LastBackup {
    pub snapshot: String,
    pub time: DateTime<Utc>,
    pub age_secs: i64,
    pub mode: Option<String>,
    pub consistent: Option<bool>,
    pub downtime_secs: Option<f64>,
    pub bytes_added: u64,
    pub total_bytes: u64,
    pub tags: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LastDrill {
    pub snapshot: String,
    pub time: DateTime<Utc>,
    pub ok: bool,
    /// Unknown when only the run is left (its snapshot and drill record were forgotten).
    pub recovered_secs: Option<f64>,
    pub failure: Option<String>,
}

/// One row of the overview.
#[derive(Clone, Debug, Serialize)]
pub struct AppRow {
    pub app: String,
    pub host: String,
    pub status: Status,
    /// Why the status is not green, one line each.
    pub reasons: Vec<String>,
    pub schedule: Option<String>,
    pub next_run: Option<DateTime<Local>>,
    pub snapshots: usize,
    pub last_backup: Option<LastBackup>,
    /// The last backup run (not drills), from the run records.
    pub last_run: Option<RunRecord>,
    pub last_drill: Option<LastDrill>,
    /// Configured on this host (actions are possible).
    pub local: bool,
}

/// The last verification of the repository by a scheduled run's check.
#[derive(Clone, Debug, Serialize)]
pub struct CheckStatus {
    pub time: DateTime<Utc>,
    pub ok: bool,
    pub host: String,
    pub app: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Overview {
    pub generated: DateTime<Utc>,
    pub hostname: String,
    pub rows: Vec<AppRow>,
    pub check: Option<CheckStatus>,
}

/// Everything the overview is made from.
pub struct Inputs<'a> {
    pub snapshots: &'a [(SnapshotId, Snapshot)],
    /// Every run known: the repository's records and this host's log ([`merge_runs`]).
    pub runs: &'a [RunRecord],
    pub drills: &'a [DrillRecord],
    pub config: &'a Config,
    pub hostname: &'a str,
    pub grace: Duration,
    pub now: DateTime<Utc>,
}

/// The repository's run records and this host's run log as one list, oldest first, each run
/// once (a run is both in the log and in the repository). Old log lines have no host name:
/// they are this host's.
pub fn merge_runs(repo: Vec<RunRecord>, log: Vec<RunRecord>, hostname: &str) -> Vec<RunRecord> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for mut r in repo.into_iter().chain(log) {
        if r.hostname.is_empty() {
            r.hostname = hostname.to_string();
        }
        let key = (
            r.hostname.clone(),
            r.app.clone(),
            r.kind.clone(),
            r.start,
            r.end,
        );
        if seen.insert(key) {
            out.push(r);
        }
    }
    out.sort_by_key(|r| (r.end.or(r.start), r.start));
    out
}

pub fn build(i: &Inputs) -> Overview {
    let mut keys: BTreeSet<(String, String)> = BTreeSet::new();
    let mut snaps: BTreeMap<(String, String), Vec<(&SnapshotId, &Snapshot)>> = BTreeMap::new();
    for (id, s) in i.snapshots {
        if let Some((app, _)) = crate::restore::recorded_app(s) {
            let k = (app, s.hostname.clone());
            keys.insert(k.clone());
            snaps.entry(k).or_default().push((id, s));
        }
    }
    for r in i.runs {
        keys.insert((r.app.clone(), r.hostname.clone()));
    }
    for name in i.config.app.keys() {
        keys.insert((name.clone(), i.hostname.to_string()));
    }
    let drills = holdfast_core::drills::latest_by_snapshot(i.drills.to_vec());
    let rows = keys
        .into_iter()
        .map(|(app, host)| {
            let mine: Vec<&RunRecord> = i
                .runs
                .iter()
                .filter(|r| r.app == app && r.hostname == host)
                .collect();
            let empty = Vec::new();
            let snaps = snaps.get(&(app.clone(), host.clone())).unwrap_or(&empty);
            row(i, app, host, &mine, snaps, &drills)
        })
        .collect();
    let check = i
        .runs
        .iter()
        .filter(|r| r.checked)
        .filter_map(|r| {
            Some(CheckStatus {
                time: r.end?,
                ok: r.exit_code != holdfast_core::error::exit::INTEGRITY,
                host: r.hostname.clone(),
                app: r.app.clone(),
            })
        })
        .max_by_key(|c| c.time);
    Overview {
        generated: i.now,
        hostname: i.hostname.to_string(),
        rows,
        check,
    }
}

fn row(
    i: &Inputs,
    app: String,
    host: String,
    runs: &[&RunRecord],
    snaps: &[(&SnapshotId, &Snapshot)],
    drills: &BTreeMap<SnapshotId, DrillRecord>,
) -> AppRow {
    let local_cfg = (host == i.hostname)
        .then(|| i.config.app.get(&app))
        .flatten();
    let last_run = runs
        .iter()
        .rev()
        .find(|r| !r.is_drill())
        .map(|r| (*r).clone());
    let schedule = match local_cfg {
        Some(c) => c.schedule.clone(),
        None => runs.iter().rev().find_map(|r| r.schedule.clone()),
    };
    let newest = snaps.iter().max_by_key(|(_, s)| s.time);
    let last_backup = newest.map(|(id, s)| LastBackup {
        snapshot: id.to_hex(),
        time: s.time,
        age_secs: (i.now - s.time).num_seconds(),
        mode: s.consistency.as_ref().map(|c| c.mode.clone()),
        consistent: s.consistency.as_ref().map(|c| c.consistent),
        downtime_secs: s.consistency.as_ref().and_then(|c| c.downtime_secs),
        bytes_added: s.summary.bytes_added,
        total_bytes: s.summary.total_bytes,
        tags: s.tags.clone(),
    });
    // The newest drill: from this row's drill runs (they outlive the snapshots retention
    // forgets, and the drill records with them), or from a drill record of one of its
    // snapshots; the time to recover comes from the record.
    let recovered = |snapshot: &str| {
        snapshot
            .parse::<SnapshotId>()
            .ok()
            .and_then(|id| drills.get(&id))
            .map(|d| d.recovered_secs)
    };
    let from_runs = runs.iter().filter(|r| r.is_drill()).filter_map(|r| {
        let snapshot = r.snapshot.clone().unwrap_or_default();
        Some(LastDrill {
            recovered_secs: recovered(&snapshot),
            snapshot,
            time: r.end?,
            ok: r.result != RunResult::Failure,
            failure: r.error.clone(),
        })
    });
    let from_records = snaps
        .iter()
        .filter_map(|(id, _)| drills.get(id))
        .filter(|d| d.app.as_deref().is_none_or(|a| a == app))
        .map(|d| LastDrill {
            snapshot: d.snapshot.to_hex(),
            time: d.time,
            ok: d.ok,
            recovered_secs: Some(d.recovered_secs),
            failure: d.failure.clone(),
        });
    let last_drill = from_runs.chain(from_records).max_by_key(|d| d.time);
    let mut red = Vec::new();
    let mut amber = Vec::new();
    if let Some(r) = &last_run {
        match r.result {
            RunResult::Failure => red.push(format!(
                "last run failed: {}",
                r.error
                    .clone()
                    .unwrap_or_else(|| format!("exit {}", r.exit_code))
            )),
            RunResult::Partial => amber.push("last backup left files unreadable".to_string()),
            RunResult::Success if !r.warnings.is_empty() => amber.push(format!(
                "last run had {} warning(s): {}",
                r.warnings.len(),
                r.warnings[0]
            )),
            RunResult::Success => {}
        }
    }
    let grace = i.grace
        + Duration::milliseconds(
            (last_run.as_ref().map_or(0.0, |r| r.duration_secs()) * 1000.0) as i64,
        );
    let last_start = last_run
        .as_ref()
        .and_then(|r| r.start)
        .into_iter()
        .chain(last_backup.as_ref().map(|b| b.time))
        .max();
    let mut next_run = None;
    if let Some(expr) = &schedule {
        next_run = schedule::next_runs(expr, i.now.with_timezone(&Local), 1)
            .ok()
            .and_then(|v| v.into_iter().next());
        match last_start {
            Some(since) => {
                let since = since.with_timezone(&Local);
                let by = (i.now - grace).with_timezone(&Local);
                if let Some(due) = schedule::missed_since(expr, &since, &by) {
                    red.push(format!(
                        "the run due at {} did not happen",
                        due.format("%Y-%m-%d %H:%M")
                    ));
                }
            }
            None if local_cfg.is_some() => amber.push("never backed up".to_string()),
            None => {}
        }
    }
    if let Some(b) = &last_backup {
        if b.consistent == Some(false) {
            amber.push(format!(
                "newest snapshot not consistent (mode {})",
                b.mode.clone().unwrap_or_default()
            ));
        }
    }
    if let Some(d) = &last_drill {
        if !d.ok {
            red.push(format!(
                "last drill failed: {}",
                d.failure.clone().unwrap_or_default()
            ));
        }
    }
    if let Some(every) = local_cfg
        .and_then(|c| c.drill.as_ref())
        .and_then(|d| d.every)
    {
        let overdue = match &last_drill {
            Some(d) => i.now - d.time > every.as_chrono() + grace,
            None => last_backup.is_some(),
        };
        if overdue {
            amber.push("a restore drill is overdue".to_string());
        }
    }
    let status = if !red.is_empty() {
        Status::Red
    } else if !amber.is_empty() {
        Status::Amber
    } else if schedule.is_none() {
        Status::Grey
    } else {
        Status::Green
    };
    AppRow {
        app,
        host,
        status,
        reasons: red.into_iter().chain(amber).collect(),
        schedule,
        next_run,
        snapshots: snaps.len(),
        last_backup,
        last_run,
        last_drill,
        local: local_cfg.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Local
            .with_ymd_and_hms(y, m, d, h, min, 0)
            .single()
            .unwrap()
            .with_timezone(&Utc)
    }

    fn run(app: &str, host: &str, start: DateTime<Utc>, result: RunResult) -> RunRecord {
        RunRecord {
            start: Some(start),
            end: Some(start + Duration::minutes(10)),
            app: app.into(),
            hostname: host.into(),
            kind: "run".into(),
            result,
            ..Default::default()
        }
    }

    fn overview(cfg: &str, runs: &[RunRecord], now: DateTime<Utc>) -> Overview {
        let config = Config::parse(cfg, std::path::Path::new("t.toml")).unwrap();
        build(&Inputs {
            snapshots: &[],
            runs,
            drills: &[],
            config: &config,
            hostname: "here",
            grace: DEFAULT_GRACE,
            now,
        })
    }

    const WEEKDAYS: &str =
        "[app.dss]\nprofile = \"dss\"\ndata_dir = \"/srv/dss\"\nschedule = \"0 2 * * 1-5\"\n";

    #[test]
    fn a_weekdays_schedule_is_not_late_on_monday_before_its_run() {
        // Friday 2026-12-04 02:00 ran; Monday 2026-12-07.
        let runs = [run(
            "dss",
            "here",
            at(2026, 12, 4, 2, 0),
            RunResult::Success,
        )];
        let o = overview(WEEKDAYS, &runs, at(2026, 12, 7, 1, 30));
        assert_eq!(o.rows.len(), 1);
        assert_eq!(o.rows[0].status, Status::Green, "{:?}", o.rows[0].reasons);
        assert!(o.rows[0].local);
        assert_eq!(
            o.rows[0].next_run.unwrap().with_timezone(&Utc),
            at(2026, 12, 7, 2, 0)
        );
        // Within the grace (1 h plus the 10 min run) after 02:00: not yet late.
        let o = overview(WEEKDAYS, &runs, at(2026, 12, 7, 3, 0));
        assert_eq!(o.rows[0].status, Status::Green, "{:?}", o.rows[0].reasons);
        // Monday 03:30 without a run: red, saying which run is missing.
        let o = overview(WEEKDAYS, &runs, at(2026, 12, 7, 3, 30));
        assert_eq!(o.rows[0].status, Status::Red);
        assert!(
            o.rows[0].reasons[0].contains("2026-12-07 02:00"),
            "{:?}",
            o.rows[0].reasons
        );
    }

    #[test]
    fn failures_are_red_partial_amber_and_hosts_apart() {
        let now = at(2026, 12, 3, 9, 0);
        let runs = [
            run("dss", "here", at(2026, 12, 3, 2, 0), RunResult::Failure),
            run("dss", "other", at(2026, 12, 3, 2, 0), RunResult::Partial),
            {
                let mut r = run("govern", "far", at(2026, 12, 1, 2, 0), RunResult::Success);
                r.schedule = Some("0 2 * * *".into());
                r
            },
        ];
        let o = overview(WEEKDAYS, &runs, now);
        let get = |app: &str, host: &str| {
            o.rows
                .iter()
                .find(|r| r.app == app && r.host == host)
                .unwrap()
                .clone()
        };
        assert_eq!(get("dss", "here").status, Status::Red);
        assert!(get("dss", "here").reasons[0].starts_with("last run failed"));
        // Another host's row has no schedule here: amber for the unreadable files only.
        let other = get("dss", "other");
        assert_eq!(other.status, Status::Amber);
        assert!(!other.local);
        // A host that recorded its schedule in the repository is judged by it: two nights
        // were missed.
        let far = get("govern", "far");
        assert_eq!(far.status, Status::Red, "{:?}", far.reasons);
        assert!(
            far.reasons[0].contains("2026-12-02 02:00"),
            "{:?}",
            far.reasons
        );
    }

    #[test]
    fn runs_merge_once_and_unnamed_hosts_are_this_one() {
        let t = at(2026, 12, 3, 2, 0);
        let mut logged = run("dss", "", t, RunResult::Success);
        let stored = run("dss", "here", t, RunResult::Success);
        logged.hostname.clear();
        let merged = merge_runs(vec![stored], vec![logged], "here");
        assert_eq!(merged.len(), 1);
        let o = overview(
            "[app.dss]\nprofile = \"dss\"\ndata_dir = \"/srv/dss\"\n",
            &merged,
            t + Duration::hours(1),
        );
        assert_eq!(o.rows[0].status, Status::Grey);
    }
}

#[cfg(test)]
mod drill_tests {
    use super::*;

    #[test]
    fn a_drill_outlives_the_snapshot_it_drilled() {
        // Drilled 10 days ago (every 30d); the drilled snapshot and its record are forgotten.
        let config = Config::parse(
            "[app.dss]\nprofile = \"dss\"\ndata_dir = \"/srv/dss\"\n[app.dss.drill]\nevery = \"30d\"\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let now = Utc::now();
        let drill = RunRecord {
            start: Some(now - Duration::days(10)),
            end: Some(now - Duration::days(10) + Duration::minutes(3)),
            app: "dss".into(),
            hostname: "here".into(),
            kind: holdfast_core::runs::DRILL_KIND.into(),
            snapshot: Some("ab".repeat(32)),
            ..Default::default()
        };
        let o = build(&Inputs {
            snapshots: &[],
            runs: std::slice::from_ref(&drill),
            drills: &[],
            config: &config,
            hostname: "here",
            grace: DEFAULT_GRACE,
            now,
        });
        let row = &o.rows[0];
        let d = row.last_drill.as_ref().expect("the drill run counts");
        assert!(d.ok && d.recovered_secs.is_none());
        assert!(
            !row.reasons.iter().any(|r| r.contains("drill")),
            "{:?}",
            row.reasons
        );
        // A failed drill stays red after its snapshot is gone.
        let failed = RunRecord {
            result: RunResult::Failure,
            error: Some("table governance_items missing".into()),
            ..drill
        };
        let o = build(&Inputs {
            snapshots: &[],
            runs: &[failed],
            drills: &[],
            config: &config,
            hostname: "here",
            grace: DEFAULT_GRACE,
            now,
        });
        assert_eq!(o.rows[0].status, Status::Red);
        assert!(o.rows[0].reasons[0].contains("governance_items"));
    }
}
