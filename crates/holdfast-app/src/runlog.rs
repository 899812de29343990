//! The run log, hooks and Prometheus metrics: what monitoring sees of each run.
//!
//! Every run appends one JSON line to the run log (an append of one line under
//! `O_APPEND` is atomic enough for one writer per job, and a torn last line from a crash is
//! skipped when reading). Metrics are derived from the log, so one textfile holds the last
//! state of every application however the runs were started, and they are written with a
//! temp file and rename, as the node exporter's textfile collector requires.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::service;

pub use holdfast_core::runs::{RunRecord, RunResult, RunStep};

pub fn append(log: &Path, rec: &RunRecord) -> Result<()> {
    let io = |e| Error::Core(holdfast_core::Error::io(log, e));
    if let Some(dir) = log.parent() {
        holdfast_core::private::create_dir_all(dir).map_err(io)?;
    }
    let mut line = serde_json::to_vec(rec).expect("serialises");
    line.push(b'\n');
    // Owner-only: runs name hosts, paths, errors and hook output.
    let mut f = holdfast_core::private::append(log).map_err(io)?;
    f.write_all(&line).map_err(io)?;
    f.sync_data().map_err(io)
}

/// Every readable record, oldest first (a torn or foreign line is skipped).
pub fn read(log: &Path) -> Vec<RunRecord> {
    std::fs::read_to_string(log)
        .map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs the configured hooks for a finished run, with the result in the environment.
/// A failing hook is a warning: it never changes the run's result.
pub fn run_hooks(hooks: &[(&str, &str)], rec: &RunRecord) -> Vec<String> {
    let env: Vec<(&str, String)> = vec![
        ("HOLDFAST_APP", rec.app.clone()),
        ("HOLDFAST_RESULT", rec.result.to_string()),
        ("HOLDFAST_EXIT_CODE", rec.exit_code.to_string()),
        (
            "HOLDFAST_SNAPSHOT",
            rec.snapshot.clone().unwrap_or_default(),
        ),
        ("HOLDFAST_ERROR", rec.error.clone().unwrap_or_default()),
        ("HOLDFAST_BYTES_ADDED", rec.bytes_added.to_string()),
        (
            "HOLDFAST_DOWNTIME",
            rec.downtime_secs
                .map(|d| format!("{d:.1}"))
                .unwrap_or_default(),
        ),
        ("HOLDFAST_DURATION", format!("{:.1}", rec.duration_secs())),
    ];
    let mut problems = Vec::new();
    for (which, cmd) in hooks {
        if let Err(e) = service::run_step(
            &format!("{which} hook"),
            cmd,
            &env,
            std::time::Duration::from_secs(300),
        ) {
            tracing::warn!("{e}");
            problems.push(e.to_string());
        }
    }
    problems
}

/// Repository-wide numbers for the metrics.
#[derive(Clone, Debug, Default)]
pub struct RepoNumbers {
    pub snapshots_per_app: Vec<(String, usize)>,
    pub repository_bytes: u64,
}

fn label(s: &str) -> String {
    s.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', " ")
}

/// Prometheus text exposition of the last run of each application.
pub fn render_metrics(records: &[RunRecord], repo: &RepoNumbers) -> String {
    use std::collections::BTreeMap;
    let mut last: BTreeMap<&str, &RunRecord> = BTreeMap::new();
    let mut last_ok: BTreeMap<&str, &RunRecord> = BTreeMap::new();
    let mut last_drill: BTreeMap<&str, &RunRecord> = BTreeMap::new();
    let mut last_drill_ok: BTreeMap<&str, &RunRecord> = BTreeMap::new();
    for r in records {
        // Drills are runs of their own: they say nothing about the last backup.
        let (any, ok) = if r.is_drill() {
            (&mut last_drill, &mut last_drill_ok)
        } else {
            (&mut last, &mut last_ok)
        };
        any.insert(&r.app, r);
        if r.result != RunResult::Failure {
            ok.insert(&r.app, r);
        }
    }
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, kind: &str, rows: Vec<(String, f64)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, v) in rows {
            out.push_str(&format!("{name}{labels} {v}\n"));
        }
    };
    let succeeded = |r: &RunRecord| {
        if r.result == RunResult::Failure {
            0.0
        } else {
            1.0
        }
    };
    let by_app = |f: &dyn Fn(&RunRecord) -> f64, m: &BTreeMap<&str, &RunRecord>| {
        m.iter()
            .map(|(a, r)| (format!("{{app=\"{}\"}}", label(a)), f(r)))
            .collect::<Vec<_>>()
    };
    metric(
        "holdfast_last_success_timestamp_seconds",
        "End of the last run that wrote a snapshot.",
        "gauge",
        by_app(
            &|r| r.end.map(|e| e.timestamp() as f64).unwrap_or(0.0),
            &last_ok,
        ),
    );
    metric(
        "holdfast_last_run_timestamp_seconds",
        "End of the last run, whatever its result.",
        "gauge",
        by_app(
            &|r| r.end.map(|e| e.timestamp() as f64).unwrap_or(0.0),
            &last,
        ),
    );
    metric(
        "holdfast_last_run_success",
        "1 if the last run wrote a snapshot, else 0.",
        "gauge",
        by_app(&succeeded, &last),
    );
    metric(
        "holdfast_last_run_duration_seconds",
        "Duration of the last run.",
        "gauge",
        by_app(&|r| r.duration_secs(), &last),
    );
    metric(
        "holdfast_last_run_bytes_added",
        "Bytes the last successful run added to the repository.",
        "gauge",
        by_app(&|r| r.bytes_added as f64, &last_ok),
    );
    metric(
        "holdfast_last_run_downtime_seconds",
        "Seconds the application was stopped during the last successful run.",
        "gauge",
        by_app(&|r| r.downtime_secs.unwrap_or(0.0), &last_ok),
    );
    metric(
        "holdfast_last_drill_success_timestamp_seconds",
        "End of the last restore drill that passed (alert when it grows old).",
        "gauge",
        by_app(
            &|r| r.end.map(|e| e.timestamp() as f64).unwrap_or(0.0),
            &last_drill_ok,
        ),
    );
    metric(
        "holdfast_last_drill_success",
        "1 if the last restore drill passed, else 0.",
        "gauge",
        by_app(&succeeded, &last_drill),
    );
    metric(
        "holdfast_last_drill_recovery_seconds",
        "Time to recover measured by the last restore drill that passed.",
        "gauge",
        by_app(&|r| r.duration_secs(), &last_drill_ok),
    );
    metric(
        "holdfast_snapshots",
        "Snapshots in the repository.",
        "gauge",
        repo.snapshots_per_app
            .iter()
            .map(|(a, n)| (format!("{{app=\"{}\"}}", label(a)), *n as f64))
            .collect(),
    );
    metric(
        "holdfast_repository_size_bytes",
        "Stored bytes of all packs in the repository.",
        "gauge",
        vec![(String::new(), repo.repository_bytes as f64)],
    );
    out
}

/// Writes `text` to `path` atomically (temp file in the same directory, then rename).
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let io = |p: &Path, e| Error::Core(holdfast_core::Error::io(p, e));
    let dir: PathBuf = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    let tmp = path.with_extension("prom.tmp");
    std::fs::write(&tmp, text).map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_round_trip_skips_torn_lines() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("runs.jsonl");
        let rec = RunRecord {
            app: "design".into(),
            result: RunResult::Success,
            bytes_added: 42,
            ..Default::default()
        };
        append(&log, &rec).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(b"{\"app\": \"torn")
            .unwrap();
        let back = read(&log);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].bytes_added, 42);
    }

    #[test]
    fn metrics_show_last_success_and_failure() {
        let t = |s: i64| Some(chrono::DateTime::from_timestamp(s, 0).unwrap());
        let recs = vec![
            RunRecord {
                app: "design".into(),
                result: RunResult::Success,
                start: t(100),
                end: t(160),
                bytes_added: 5,
                ..Default::default()
            },
            RunRecord {
                app: "design".into(),
                result: RunResult::Failure,
                start: t(200),
                end: t(210),
                ..Default::default()
            },
        ];
        let m = render_metrics(
            &recs,
            &RepoNumbers {
                snapshots_per_app: vec![("design".into(), 3)],
                repository_bytes: 1000,
            },
        );
        assert!(
            m.contains("holdfast_last_success_timestamp_seconds{app=\"design\"} 160\n"),
            "{m}"
        );
        assert!(
            m.contains("holdfast_last_run_success{app=\"design\"} 0\n"),
            "{m}"
        );
        assert!(
            m.contains("holdfast_last_run_duration_seconds{app=\"design\"} 10\n"),
            "{m}"
        );
        assert!(m.contains("holdfast_snapshots{app=\"design\"} 3\n"), "{m}");
        assert!(m.contains("holdfast_repository_size_bytes 1000\n"), "{m}");
    }
}
