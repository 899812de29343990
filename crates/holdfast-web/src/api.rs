//! The JSON API under `/api/` (docs/console.md): what the pages show, for monitoring and
//! scripts. Reading needs a session or `Authorization: Bearer TOKEN`; starting an action
//! needs a session and its CSRF token (header `X-CSRF-Token`).

use std::convert::Infallible;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::StreamExt;
use serde_json::{json, Value};

use crate::actions::{self, JobView, Kind};
use crate::auth::Caller;
use crate::data::{self, Fail, RunFilter, SnapshotFilter};
use crate::snapshot_path::Target;
use crate::state::Shared;

/// A failure as `{"error": "..."}`.
pub struct ApiFail(pub Fail);

impl From<Fail> for ApiFail {
    fn from(f: Fail) -> ApiFail {
        ApiFail(f)
    }
}

impl IntoResponse for ApiFail {
    fn into_response(self) -> Response {
        (self.0.status, Json(json!({"error": self.0.message}))).into_response()
    }
}

type ApiResult = Result<Json<Value>, ApiFail>;

fn to_value(v: impl serde::Serialize) -> Value {
    serde_json::to_value(v).expect("serialises")
}

/// Any other path under `/api/`.
pub async fn not_found() -> ApiFail {
    ApiFail(Fail::not_found(
        "no such API path (docs/console.md lists them)",
    ))
}

pub async fn overview(State(st): State<Shared>) -> ApiResult {
    let o = data::blocking(&st, data::overview).await?;
    Ok(Json(to_value(o)))
}

pub async fn runs(State(st): State<Shared>, Query(f): Query<RunFilter>) -> ApiResult {
    let all = data::blocking(&st, data::runs).await?;
    let runs: Vec<Value> = all
        .iter()
        .rev()
        .filter(|r| f.matches(r))
        .map(|r| {
            let mut v = to_value(r);
            v["id"] = json!(r.id());
            v
        })
        .collect();
    Ok(Json(json!({ "runs": runs })))
}

pub async fn run(State(st): State<Shared>, Path(id): Path<String>) -> ApiResult {
    let wanted = id.clone();
    let r = data::blocking(&st, move |st| data::run(st, &wanted)).await?;
    let mut v = to_value(&r);
    v["id"] = json!(id);
    Ok(Json(v))
}

pub async fn snapshots(State(st): State<Shared>, Query(f): Query<SnapshotFilter>) -> ApiResult {
    let (snaps, drills) = data::blocking(&st, data::snapshots_and_drills).await?;
    let list: Vec<Value> = snaps
        .iter()
        .rev()
        .filter(|(_, s)| f.matches(s))
        .map(|(id, s)| {
            json!({
                "id": id.to_hex(),
                "time": s.time,
                "hostname": s.hostname,
                "app": data::app_of(s),
                "tags": s.tags,
                "total_bytes": s.summary.total_bytes,
                "total_files": s.summary.total_files,
                "bytes_added": s.summary.bytes_added,
                "consistency": s.consistency,
                "drill": drills.get(id),
            })
        })
        .collect();
    Ok(Json(json!({ "snapshots": list })))
}

fn node_json(n: &holdfast_core::tree::Node) -> Value {
    json!({
        "name": n.name.lossy(),
        "type": n.kind,
        "mode": n.mode & 0o7777,
        "uid": n.uid, "gid": n.gid, "user": n.user, "group": n.group,
        "size": n.size,
        "mtime": n.mtime, "atime": n.atime, "ctime": n.ctime,
        "links": n.links,
        "target": n.target.as_ref().map(|t| t.lossy()),
        "xattrs": n.xattrs.iter().map(|x| x.name.lossy()).collect::<Vec<_>>(),
    })
}

/// `/api/snapshots/ID` (the snapshot) and `/api/snapshots/ID/tree/PATH` (an entry, with a
/// folder's entries). Downloads are the pages' `/snapshots/ID/file|tar/PATH`.
pub async fn snapshot_any(State(st): State<Shared>, uri: Uri) -> ApiResult {
    let rest = uri
        .path()
        .strip_prefix("/api/snapshots/")
        .unwrap_or_default();
    let (p, id, snap) = data::resolve(&st, rest).await?;
    match p.target {
        Target::Summary => {
            let mut v = to_value(&snap);
            v["id"] = json!(id.to_hex());
            Ok(Json(v))
        }
        Target::Tree => {
            let names = p.names.clone();
            let found = data::blocking(&st, move |st| data::lookup(st, &snap, &names)).await?;
            Ok(Json(json!({
                "snapshot": id.to_hex(),
                "path": p.names.iter().map(|n| String::from_utf8_lossy(n).into_owned()).collect::<Vec<_>>(),
                "entry": found.node.as_ref().map(node_json),
                "entries": found.children.as_ref().map(|c| c.iter().map(node_json).collect::<Vec<_>>()),
            })))
        }
        Target::File | Target::Tar => Err(Fail::bad_request(
            "downloads are at /snapshots/ID/file/PATH and /snapshots/ID/tar/PATH",
        )
        .into()),
    }
}

#[derive(serde::Deserialize)]
pub struct DiffQuery {
    a: String,
    b: String,
}

pub async fn diff(State(st): State<Shared>, Query(q): Query<DiffQuery>) -> ApiResult {
    let (a, b, changes) = data::blocking(&st, move |st| data::diff(st, &q.a, &q.b)).await?;
    Ok(Json(
        json!({"from": a.to_hex(), "to": b.to_hex(), "changes": changes}),
    ))
}

pub async fn jobs(State(st): State<Shared>) -> ApiResult {
    let v: Vec<JobView> = st
        .jobs
        .all()
        .iter()
        .map(|j| JobView::from(j.as_ref()))
        .collect();
    Ok(Json(json!({ "jobs": v })))
}

pub async fn job(State(st): State<Shared>, Path(id): Path<String>) -> ApiResult {
    let j = st
        .jobs
        .get(&id)
        .ok_or_else(|| Fail::not_found(format!("no job {id}")))?;
    Ok(Json(to_value(JobView::from(j.as_ref()))))
}

/// `POST /api/actions/APP/KIND`: starts "back up now" or "drill now"; 202 with the job.
pub async fn action(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path((app, kind)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiFail> {
    let csrf = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    caller.check_csrf(csrf)?;
    let kind =
        Kind::parse(&kind).ok_or_else(|| Fail::not_found("the actions are backup and drill"))?;
    let job = actions::start(&st, &app, kind)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(to_value(JobView::from(job.as_ref()))),
    )
        .into_response())
}

/// `GET /api/jobs/ID/events`: the job's output as server-sent events, from its first line:
/// `line` events, then one `done` event (`{"exit_code": N, "result": "..."}`), then the end.
pub async fn job_events(
    State(st): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ApiFail> {
    let j = st
        .jobs
        .get(&id)
        .ok_or_else(|| Fail::not_found(format!("no job {id}")))?;
    let rx = j.changed.subscribe();
    let stream = futures::stream::unfold(
        (j, rx, 0usize, false),
        |(j, mut rx, seen, done)| async move {
            if done {
                return None;
            }
            loop {
                let news = j.since(seen);
                if news.written > seen {
                    let events: Vec<Event> = news
                        .lines
                        .iter()
                        // An event without data is never dispatched: an empty line is a space.
                        .map(|l| {
                            Event::default().event("line").data(if l.is_empty() {
                                " "
                            } else {
                                l.as_str()
                            })
                        })
                        .collect();
                    return Some((events, (j, rx, news.written, false)));
                }
                if let Some(code) = news.exit_code {
                    let ev = Event::default()
                        .event("done")
                        .data(json!({"exit_code": code, "result": news.result}).to_string());
                    return Some((vec![ev], (j, rx, seen, true)));
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        },
    )
    .flat_map(|events| futures::stream::iter(events.into_iter().map(Ok::<Event, Infallible>)))
    // The console is stopping: the stream ends, so that connections can close.
    .take_until(st.stopped());
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}
