//! Reading what the pages show, on a blocking thread (the repository's API is synchronous):
//! snapshots, run records, drills, the overview, and entries inside a snapshot.

use std::collections::BTreeMap;

use holdfast_app::overview::{self, Overview};
use holdfast_app::runlog::{self, RunRecord};
use holdfast_core::drills::DrillRecord;
use holdfast_core::id::SnapshotId;
use holdfast_core::snapshot::Snapshot;
use holdfast_core::tree::{Node, NodeKind};

use crate::state::{AppState, Shared};

/// A request that cannot be answered, with the HTTP status that says why.
#[derive(Debug)]
pub struct Fail {
    pub status: axum::http::StatusCode,
    pub message: String,
}

impl Fail {
    pub fn new(status: axum::http::StatusCode, message: impl Into<String>) -> Fail {
        Fail {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(m: impl Into<String>) -> Fail {
        Fail::new(axum::http::StatusCode::BAD_REQUEST, m)
    }
    pub fn not_found(m: impl Into<String>) -> Fail {
        Fail::new(axum::http::StatusCode::NOT_FOUND, m)
    }
}

impl From<holdfast_core::Error> for Fail {
    fn from(e: holdfast_core::Error) -> Fail {
        let status = match &e {
            holdfast_core::Error::NotFound(_) => axum::http::StatusCode::NOT_FOUND,
            _ => axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        };
        Fail::new(status, e.to_string())
    }
}

/// Runs `f` on a blocking thread with the shared state.
pub async fn blocking<T: Send + 'static>(
    st: &Shared,
    f: impl FnOnce(&AppState) -> Result<T, Fail> + Send + 'static,
) -> Result<T, Fail> {
    let st = st.clone();
    tokio::task::spawn_blocking(move || f(&st))
        .await
        .map_err(|e| Fail::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

/// Every run known: the repository's records (each read once, then kept) and this host's
/// run log, oldest first.
pub fn runs(st: &AppState) -> Result<Vec<RunRecord>, Fail> {
    let names = st.repo.run_names()?;
    let missing: Vec<String> = {
        let cache = st.runs_cache.lock().unwrap();
        names
            .iter()
            .filter(|n| !cache.contains_key(*n))
            .cloned()
            .collect()
    };
    let read = st.repo.read_runs(&missing);
    let mut cache = st.runs_cache.lock().unwrap();
    cache.extend(read);
    cache.retain(|name, _| names.binary_search(name).is_ok());
    let stored: Vec<RunRecord> = cache.values().cloned().collect();
    drop(cache);
    let log = runlog::read(&holdfast_app::job::run_log(&st.config));
    Ok(overview::merge_runs(stored, log, &st.hostname))
}

pub fn snapshots(st: &AppState) -> Result<Vec<(SnapshotId, Snapshot)>, Fail> {
    Ok(st.repo.list_snapshots()?)
}

pub fn drills(st: &AppState) -> Result<Vec<DrillRecord>, Fail> {
    Ok(st.repo.drills()?.into_iter().map(|(_, d)| d).collect())
}

pub fn overview(st: &AppState) -> Result<Overview, Fail> {
    let snapshots = snapshots(st)?;
    let runs = runs(st)?;
    let drills = drills(st)?;
    Ok(overview::build(&overview::Inputs {
        snapshots: &snapshots,
        runs: &runs,
        drills: &drills,
        config: &st.config,
        hostname: &st.hostname,
        grace: st.grace,
        now: chrono::Utc::now(),
    }))
}

/// The application a snapshot was taken of, if any.
pub fn app_of(s: &Snapshot) -> Option<String> {
    holdfast_app::restore::recorded_app(s).map(|(n, _)| n)
}

/// The snapshot named by a full id or a unique prefix.
pub fn snapshot(st: &AppState, id: &str) -> Result<(SnapshotId, Snapshot), Fail> {
    let ids = st.repo.snapshot_ids_with_prefix(id)?;
    match ids.as_slice() {
        [one] => Ok((*one, st.repo.load_snapshot(one)?)),
        [] => Err(Fail::not_found(format!("no snapshot {id}"))),
        _ => Err(Fail::bad_request(format!(
            "{id} names {} snapshots",
            ids.len()
        ))),
    }
}

/// An entry of a snapshot, found by walking its trees from the root.
pub struct Found {
    /// The entry's node; `None` for the root folder when the snapshot has no root node.
    pub node: Option<Node>,
    /// The entries of a folder, sorted by name.
    pub children: Option<Vec<Node>>,
}

pub fn lookup(st: &AppState, snap: &Snapshot, names: &[Vec<u8>]) -> Result<Found, Fail> {
    st.repo.load_index()?;
    let mut tree = st.repo.load_tree(&snap.tree)?;
    let mut node = snap.root.clone();
    for (i, name) in names.iter().enumerate() {
        let n = tree
            .find(name)
            .cloned()
            .ok_or_else(|| Fail::not_found("no such entry in this snapshot"))?;
        if i + 1 < names.len() {
            let sub = n
                .subtree
                .filter(|_| n.kind == NodeKind::Dir)
                .ok_or_else(|| Fail::not_found("no such entry in this snapshot"))?;
            tree = st.repo.load_tree(&sub)?;
        }
        node = Some(n);
    }
    let children = match &node {
        Some(n) if n.kind != NodeKind::Dir => None,
        Some(n) if !names.is_empty() => match n.subtree {
            Some(sub) => Some(st.repo.load_tree(&sub)?.nodes),
            None => Some(Vec::new()),
        },
        _ => Some(tree.nodes),
    };
    Ok(Found { node, children })
}

/// Filters for the runs page and API.
#[derive(Debug, Default, serde::Deserialize)]
pub struct RunFilter {
    pub app: Option<String>,
    pub host: Option<String>,
    pub result: Option<String>,
    pub kind: Option<String>,
}

impl RunFilter {
    pub fn matches(&self, r: &RunRecord) -> bool {
        let is = |want: &Option<String>, have: &str| {
            want.as_deref().is_none_or(|w| w.is_empty() || w == have)
        };
        is(&self.app, &r.app)
            && is(&self.host, &r.hostname)
            && is(&self.result, r.result.as_str())
            && is(&self.kind, &r.kind)
    }
}

/// Filters for the snapshots page and API.
#[derive(Debug, Default, serde::Deserialize)]
pub struct SnapshotFilter {
    pub app: Option<String>,
    pub host: Option<String>,
}

impl SnapshotFilter {
    pub fn matches(&self, s: &Snapshot) -> bool {
        let app = app_of(s).unwrap_or_default();
        self.app.as_deref().is_none_or(|w| w.is_empty() || w == app)
            && self
                .host
                .as_deref()
                .is_none_or(|w| w.is_empty() || w == s.hostname)
    }
}

/// Every snapshot, oldest first, and the newest drill of each.
pub type SnapshotsAndDrills = (
    Vec<(SnapshotId, Snapshot)>,
    BTreeMap<SnapshotId, DrillRecord>,
);

pub fn snapshots_and_drills(st: &AppState) -> Result<SnapshotsAndDrills, Fail> {
    Ok((
        snapshots(st)?,
        holdfast_core::drills::latest_by_snapshot(drills(st)?),
    ))
}

/// The run whose [`RunRecord::id`] is `id`.
pub fn run(st: &AppState, id: &str) -> Result<RunRecord, Fail> {
    runs(st)?
        .into_iter()
        .find(|r| r.id() == id)
        .ok_or_else(|| Fail::not_found(format!("no run {id}")))
}

/// The snapshot a URL path names (`rest`, the raw path after `/snapshots/`), with what is
/// asked of it.
pub async fn resolve(
    st: &Shared,
    rest: &str,
) -> Result<(crate::snapshot_path::SnapshotPath, SnapshotId, Snapshot), Fail> {
    let p = crate::snapshot_path::parse(rest).map_err(Fail::bad_request)?;
    let wanted = p.id.clone();
    let (id, snap) = blocking(st, move |st| snapshot(st, &wanted)).await?;
    Ok((p, id, snap))
}

/// The changes from snapshot `a` to snapshot `b`.
pub fn diff(
    st: &AppState,
    a: &str,
    b: &str,
) -> Result<(SnapshotId, SnapshotId, Vec<holdfast_core::diff::DiffEntry>), Fail> {
    let (ia, sa) = snapshot(st, a)?;
    let (ib, sb) = snapshot(st, b)?;
    st.repo.load_index()?;
    let changes = holdfast_core::diff::diff(&st.repo, &sa.tree, &sb.tree)?;
    Ok((ia, ib, changes))
}
