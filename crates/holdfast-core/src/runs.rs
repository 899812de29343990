//! Records of runs (a scheduled backup, a drill), kept in the repository as well as in each
//! host's run log, so that one console can show every host's runs: a host's own log is on
//! that host only.
//!
//! A run record is small and sealed like a snapshot. Its object name starts with the run's
//! end time (16 hex digits of Unix milliseconds) and ends with a content hash, so readers
//! take only the recent ones and writers drop the old ones by name alone, without reading or
//! decrypting anything (the storage's own modification times already say as much).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{exit, Error, Result};

/// How long run records are kept in the repository: the console's history. A host's run log
/// keeps everything.
pub const KEEP_DAYS: i64 = 180;

/// How a run ended, for monitoring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunResult {
    #[default]
    Success,
    /// A snapshot was written, with files that could not be read.
    Partial,
    Failure,
}

impl RunResult {
    /// The result of a run that ended with exit code `code`: exit 3 (some files unreadable)
    /// still wrote a good snapshot; anything else but 0, such as a service that did not start
    /// again, is a failure for monitoring.
    pub fn of_exit_code(code: i32) -> RunResult {
        match code {
            exit::OK => RunResult::Success,
            exit::PARTIAL => RunResult::Partial,
            _ => RunResult::Failure,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Success => "success",
            RunResult::Partial => "partial",
            RunResult::Failure => "failure",
        }
    }
}

impl std::fmt::Display for RunResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `kind` of a restore drill's run record (the others are `run` and `backup`).
pub const DRILL_KIND: &str = "drill";

/// One step of a run as it was said ("stopping the service"), and when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunStep {
    pub at: DateTime<Utc>,
    pub what: String,
}

/// One run: a line of the run log, and an object in the repository's `runs/`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunRecord {
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub app: String,
    /// The host the run ran on.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    /// `backup`, `run` (backup, retention, check), `drill`.
    pub kind: String,
    pub result: RunResult,
    pub exit_code: i32,
    pub snapshot: Option<String>,
    pub bytes_added: u64,
    pub downtime_secs: Option<f64>,
    pub warnings: Vec<String>,
    pub error: Option<String>,
    pub forgotten: usize,
    /// The retention policy was applied (the application has one and the backup succeeded).
    pub retention_applied: bool,
    pub checked: bool,
    /// The application's schedule when the run ended (a cron expression), so that a reader
    /// on another host can tell whether the next run is late.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// The steps as they were said, with their times.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<RunStep>,
    /// Fields this version does not know, kept.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl RunRecord {
    pub fn duration_secs(&self) -> f64 {
        match (self.start, self.end) {
            (Some(s), Some(e)) => (e - s).num_milliseconds() as f64 / 1000.0,
            _ => 0.0,
        }
    }

    /// A restore drill's run (as opposed to a backup's).
    pub fn is_drill(&self) -> bool {
        self.kind == DRILL_KIND
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("run records serialise")
    }

    pub fn decode(what: &str, b: &[u8]) -> Result<RunRecord> {
        serde_json::from_slice(b).map_err(|e| Error::corrupt(format!("run {what}"), e.to_string()))
    }

    /// A short stable id for links: the first 12 hex digits of the record's content hash.
    pub fn id(&self) -> String {
        hex::encode(&blake3::hash(&self.encode()).as_bytes()[..6])
    }
}

/// The object name of a run record that ended at `end`, with content hash `hash`.
pub fn object_name(end: DateTime<Utc>, hash: &[u8; 32]) -> String {
    format!(
        "{:016x}{}",
        end.timestamp_millis().max(0),
        hex::encode(&hash[..16])
    )
}

/// The end time an object name starts with; `None` for a name this version did not write.
pub fn time_of_name(name: &str) -> Option<DateTime<Utc>> {
    let millis = i64::from_str_radix(name.get(..16)?, 16).ok()?;
    DateTime::from_timestamp_millis(millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_time_and_give_it_back() {
        let a = DateTime::parse_from_rfc3339("2026-12-01T02:00:00.123Z")
            .unwrap()
            .with_timezone(&Utc);
        let b = a + chrono::Duration::days(1);
        let na = object_name(a, &[7; 32]);
        let nb = object_name(b, &[1; 32]);
        assert!(na < nb);
        assert_eq!(na.len(), 48);
        assert_eq!(time_of_name(&na), Some(a));
        assert_eq!(time_of_name("zz"), None);
    }

    #[test]
    fn unknown_fields_survive_and_old_lines_read() {
        let old = br#"{"start":null,"app":"dss","kind":"run","result":"partial","exit_code":3}"#;
        let r = RunRecord::decode("x", old).unwrap();
        assert_eq!(r.result, RunResult::Partial);
        assert!(r.hostname.is_empty());
        let newer = br#"{"app":"dss","kind":"run","future":{"a":1}}"#;
        let r = RunRecord::decode("x", newer).unwrap();
        let again: serde_json::Value = serde_json::from_slice(&r.encode()).unwrap();
        assert_eq!(again["future"]["a"], 1);
    }
}
