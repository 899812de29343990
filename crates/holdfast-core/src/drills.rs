//! Records of restore drills (`holdfast drill`), stored in the repository beside the snapshots
//! they name, so that every host sees which backups were proven to restore, and how fast.
//!
//! A snapshot is named by its content and never rewritten for this: a drill is an object of
//! its own (`drills/<id>`, sealed like a snapshot), naming the snapshot it drilled. Records
//! of forgotten snapshots are removed by `forget`; a reader ignores one it cannot read.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::SnapshotId;

/// What one drill found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrillRecord {
    pub snapshot: SnapshotId,
    pub time: DateTime<Utc>,
    pub hostname: String,
    /// The application drilled, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Whether everything the drill tried passed.
    pub ok: bool,
    /// Why it failed, on one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Seconds: files restored and verified, databases restored and compared, application
    /// started until its probe passed; and in all, the time to recover.
    pub files_secs: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub databases_secs: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_secs: Option<f64>,
    pub recovered_secs: f64,
    /// What was not drilled, and other remarks ("database govern not drilled: ...").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Fields this version does not know, kept.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl DrillRecord {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("drill records serialise")
    }

    pub fn decode(what: &str, b: &[u8]) -> Result<DrillRecord> {
        serde_json::from_slice(b)
            .map_err(|e| Error::corrupt(format!("drill {what}"), e.to_string()))
    }

    /// One line for listings: "ok 2026-12-07, recovered in 41 s" or "failed 2026-12-07".
    pub fn verdict(&self) -> String {
        let day = self.time.format("%Y-%m-%d");
        if self.ok {
            format!("ok {day}, recovered in {:.0} s", self.recovered_secs)
        } else {
            format!("FAILED {day}")
        }
    }
}

/// The newest drill of each snapshot.
pub fn latest_by_snapshot(records: Vec<DrillRecord>) -> BTreeMap<SnapshotId, DrillRecord> {
    let mut out: BTreeMap<SnapshotId, DrillRecord> = BTreeMap::new();
    for r in records {
        match out.get(&r.snapshot) {
            Some(have) if have.time >= r.time => {}
            _ => {
                out.insert(r.snapshot, r);
            }
        }
    }
    out
}
