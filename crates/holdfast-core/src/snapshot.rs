//! Snapshots: the named, dated root of one backup.
//!
//! A snapshot file is small JSON naming a root tree plus what an operator wants to know at a
//! glance (host, paths, tags, what the run did). Unknown fields are kept, so an older tool
//! rewriting nothing and a newer tool adding application fields can coexist.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::{BlobId, SnapshotId};
use crate::tree::Node;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Summary {
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unchanged: u64,
    pub dirs: u64,
    pub other_entries: u64,
    /// Bytes of file content read from disk.
    pub bytes_read: u64,
    /// Plaintext bytes of blobs this backup added to the repository.
    pub bytes_added: u64,
    /// Stored (compressed, encrypted) bytes of those blobs.
    pub bytes_stored: u64,
    pub blobs_added: u64,
    /// Logical size of all files in the snapshot.
    pub total_bytes: u64,
    pub total_files: u64,
    pub started: Option<DateTime<Utc>>,
    pub duration_secs: f64,
}

/// A path that could not be backed up, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    pub path: String,
    pub message: String,
}

/// How the root tree relates to `paths`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RootLayout {
    /// One directory was backed up; the root tree is its content.
    #[default]
    DirContent,
    /// The root tree mirrors the absolute paths given (several paths, or a single file).
    FullPaths,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub time: DateTime<Utc>,
    pub tree: BlobId,
    pub paths: Vec<String>,
    pub hostname: String,
    pub username: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<SnapshotId>,
    /// The snapshot this one replaces: the same backup, changed afterwards (`tag`). Snapshots
    /// are content-addressed, so a change is a new snapshot, stored before the old one is
    /// deleted; while both exist (a crash in between), listings show only this one, and
    /// the next `tag` or `forget` deletes the other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<SnapshotId>,
    /// Each `rewrite` that took entries out of this backup, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rewrites: Vec<RewriteRecord>,
    pub program_version: String,
    #[serde(default)]
    pub layout: RootLayout,
    /// Metadata of the backed-up directory itself (with [`RootLayout::DirContent`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<Node>,
    #[serde(default)]
    pub summary: Summary,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warning>,
    /// How consistent the copy is: how it was taken and what changed while it was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<Consistency>,
    /// Further roots stored with the directory tree, e.g. database dumps taken in the same
    /// consistency window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// Fields this version does not know, kept as they are.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// A `rewrite` of a snapshot: when, and how much it took out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RewriteRecord {
    pub time: DateTime<Utc>,
    /// Entries taken out (a directory counts once) and the files and bytes they held.
    pub removed_entries: u64,
    pub removed_files: u64,
    pub removed_bytes: u64,
}

/// What a backup knows about the consistency of its copy.
///
/// The core fills in what it observed (files read again, files that kept changing, files that
/// vanished); the application layer adds how the window was made (`mode`, downtime, notes).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Consistency {
    /// `stop`, `snapshot`, `live`, or `none` for a plain backup.
    pub mode: String,
    /// True when the mode guarantees a consistent copy and it went as planned.
    pub consistent: bool,
    /// Files that changed while being read and were read again, successfully.
    pub reread: Vec<String>,
    /// Files still changing after the last attempt: their copy may be torn.
    pub inconsistent: Vec<String>,
    /// Files that disappeared between listing and reading (not in the snapshot).
    pub vanished: Vec<String>,
    /// Seconds the application was stopped (mode `stop`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downtime_secs: Option<f64>,
    pub notes: Vec<String>,
}

/// A further root of a snapshot, such as a database dump: a tree of files plus what the
/// application layer records about it (database, server version, format...).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// Unique within the snapshot, e.g. `postgres/govern`.
    pub name: String,
    /// What it is, e.g. `postgresql-custom` or `postgresql-directory`.
    pub kind: String,
    pub tree: BlobId,
    /// Logical bytes of the files in `tree`.
    pub bytes: u64,
    #[serde(default)]
    pub details: BTreeMap<String, serde_json::Value>,
}

impl Snapshot {
    /// Every root tree: the directory tree and the attachments' trees.
    pub fn root_trees(&self) -> impl Iterator<Item = BlobId> + '_ {
        std::iter::once(self.tree).chain(self.attachments.iter().map(|a| a.tree))
    }

    pub fn attachment(&self, name: &str) -> Option<&Attachment> {
        self.attachments.iter().find(|a| a.name == name)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("snapshots serialise")
    }
    pub fn decode(id: &str, b: &[u8]) -> Result<Snapshot> {
        serde_json::from_slice(b)
            .map_err(|e| Error::corrupt(format!("snapshot {id}"), e.to_string()))
    }
}

/// Filters for choosing snapshots (`latest`, `snapshots`).
#[derive(Clone, Debug, Default)]
pub struct SnapshotFilter {
    pub hosts: Vec<String>,
    pub tags: Vec<String>,
    pub paths: Vec<String>,
}

impl SnapshotFilter {
    pub fn matches(&self, s: &Snapshot) -> bool {
        (self.hosts.is_empty() || self.hosts.contains(&s.hostname))
            && self.tags.iter().all(|t| s.tags.contains(t))
            && (self.paths.is_empty() || self.paths.iter().all(|p| s.paths.contains(p)))
    }
}
