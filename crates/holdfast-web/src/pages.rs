//! The HTML pages. They are plain server-rendered HTML that works without JavaScript;
//! `console.js` only follows a running action's progress.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use chrono::{DateTime, Utc};
use holdfast_app::human;
use holdfast_app::overview::{AppRow, Overview, Status};
use holdfast_app::runlog::{RunRecord, RunResult};
use holdfast_core::snapshot::Snapshot;
use holdfast_core::tree::{Node, NodeKind};
use maud::{html, Markup, DOCTYPE};

use crate::actions::{self, Job, Kind};
use crate::auth::{Caller, CsrfForm};
use crate::data::{self, Fail, RunFilter, SnapshotFilter};
use crate::snapshot_path::{self, Target};
use crate::state::Shared;

/// A failure shown as a page.
pub struct PageFail(pub Fail);

impl From<Fail> for PageFail {
    fn from(f: Fail) -> PageFail {
        PageFail(f)
    }
}

impl IntoResponse for PageFail {
    fn into_response(self) -> Response {
        let f = self.0;
        let body = page(
            "Error",
            None,
            html! {
                h1 { (f.status.as_u16()) " " (f.status.canonical_reason().unwrap_or("")) }
                p.error { (f.message) }
                p { a href="/" { "Back to the overview" } }
            },
        );
        (f.status, body).into_response()
    }
}

type PageResult = Result<Response, PageFail>;

fn page(title: &str, caller: Option<&Caller>, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · holdfast" }
                    link rel="stylesheet" href="/static/console.css";
                    script src="/static/console.js" defer {}
                }
                body {
                    header {
                        a.brand href="/" { "holdfast" }
                        nav {
                            a href="/" { "Overview" }
                            a href="/runs" { "Runs" }
                            a href="/snapshots" { "Snapshots" }
                        }
                        @if let Some(csrf) = caller.and_then(|c| c.csrf()) {
                            form.logout method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(csrf);
                                button type="submit" { "Log out" }
                            }
                        }
                    }
                    main { (body) }
                }
            }
        }
        .into_string(),
    )
}

/// "3 min ago", "5 h ago", "2 d ago".
fn ago(secs: i64) -> String {
    let s = secs.max(0);
    if s < 60 {
        "just now".into()
    } else if s < 3600 {
        format!("{} min ago", s / 60)
    } else if s < 2 * 86400 {
        format!("{} h ago", s / 3600)
    } else {
        format!("{} d ago", s / 86400)
    }
}

fn time(t: &DateTime<Utc>) -> Markup {
    html! { time datetime=(t.to_rfc3339()) { (human::local_time(t)) } }
}

fn secs(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.1} s")
    } else if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

fn status_badge(s: Status) -> Markup {
    html! { span class=(format!("status status-{}", s.as_str())) { (s.as_str()) } }
}

fn result_badge(r: RunResult) -> Markup {
    let class = match r {
        RunResult::Success => "green",
        RunResult::Partial => "amber",
        RunResult::Failure => "red",
    };
    html! { span class=(format!("status status-{class}")) { (r.as_str()) } }
}

fn short(hex: &str) -> &str {
    hex.get(..8).unwrap_or(hex)
}

pub fn login(next: &str, error: Option<&str>, password: bool) -> Html<String> {
    page(
        "Log in",
        None,
        html! {
            h1 { "Log in" }
            @if let Some(e) = error { p.error { (e) } }
            form.login method="post" action="/login" {
                input type="hidden" name="next" value=(next);
                label {
                    @if password { "Password or access token" } @else { "Access token" }
                    input type="password" name="secret" autocomplete="current-password" autofocus;
                }
                button type="submit" { "Log in" }
            }
            p.hint { "The access token is in the console's token file (default /var/lib/holdfast/console-token)." }
        },
    )
}

// ----- overview -----

pub async fn overview(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
) -> PageResult {
    let o = data::blocking(&st, data::overview).await?;
    Ok(page("Overview", Some(&caller), overview_body(&st, &caller, &o)).into_response())
}

fn overview_body(st: &Shared, caller: &Caller, o: &Overview) -> Markup {
    html! {
        h1 { "Backups" }
        p.summary {
            "Repository check: "
            @match &o.check {
                Some(c) => {
                    (status_badge(if c.ok { Status::Green } else { Status::Red }))
                    " " (if c.ok { "no damage found" } else { "DAMAGE FOUND" }) ", " (time(&c.time))
                    " (run of " (c.app) " on " (c.host) ")"
                }
                None => { "no scheduled run has checked it yet." }
            }
        }
        @if o.rows.is_empty() {
            p { "No application has been backed up yet, and none is configured on this host." }
        } @else {
            table #overview {
                thead { tr {
                    th { "Status" } th { "Application" } th { "Host" } th { "Last backup" }
                    th { "Consistency" } th { "Downtime" } th { "Added" } th { "Next run" }
                    th { "Last drill" } th { "Actions" }
                } }
                tbody {
                    @for r in &o.rows { (overview_row(st, caller, r)) }
                }
            }
        }
        p.hint { "Red: the last run or drill failed, or a scheduled run is missing past its grace. Amber: unreadable files, warnings, an inconsistent snapshot, an overdue drill. Grey: no schedule known. See docs/console.md." }
    }
}

fn overview_row(st: &Shared, caller: &Caller, r: &AppRow) -> Markup {
    let running = st.jobs.running_for(&r.app).filter(|_| r.local);
    html! {
        tr.app data-app=(r.app) data-host=(r.host) data-status=(r.status.as_str()) {
            td {
                (status_badge(r.status))
                @if !r.reasons.is_empty() {
                    ul.reasons { @for why in &r.reasons { li { (why) } } }
                }
            }
            td { a href=(format!("/snapshots?app={}&host={}", snapshot_path::query_value(&r.app), snapshot_path::query_value(&r.host))) { (r.app) } }
            td { (r.host) }
            td.last-backup {
                @match &r.last_backup {
                    Some(b) => {
                        a href=(format!("/snapshots/{}", b.snapshot)) { (ago(b.age_secs)) }
                        br; small { (time(&b.time)) }
                    }
                    None => { "none" }
                }
                @if let Some(run) = &r.last_run {
                    br; small { "last run " a href=(format!("/runs/{}", run.id())) { (result_badge(run.result)) } }
                }
            }
            td {
                @match r.last_backup.as_ref() {
                    Some(b) => {
                        (b.mode.clone().unwrap_or_else(|| "-".into()))
                        @if b.consistent == Some(false) { " (not consistent)" }
                    }
                    None => { "-" }
                }
            }
            td { (r.last_backup.as_ref().and_then(|b| b.downtime_secs).map(secs).unwrap_or_else(|| "-".into())) }
            td { (r.last_backup.as_ref().map(|b| human::bytes(b.bytes_added)).unwrap_or_else(|| "-".into())) }
            td {
                @match &r.next_run {
                    Some(t) => { (t.format("%Y-%m-%d %H:%M")) br; small { code { (r.schedule.clone().unwrap_or_default()) } } }
                    None => { "not scheduled" }
                }
            }
            td.last-drill {
                @match &r.last_drill {
                    Some(d) if d.ok => {
                        "passed"
                        @if let Some(r) = d.recovered_secs { ", recovered in " (secs(r)) }
                        br; small { (time(&d.time)) }
                    }
                    Some(d) => { (status_badge(Status::Red)) " failed" br; small { (time(&d.time)) } }
                    None => { "-" }
                }
            }
            td.actions {
                @if let Some(j) = &running {
                    a href=(format!("/jobs/{}", j.id)) { "running…" }
                } @else if r.local && !st.read_only {
                    @if let Some(csrf) = caller.csrf() {
                        form method="post" action=(format!("/actions/{}/backup", snapshot_path::encode_name(r.app.as_bytes()))) {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" name="go" value="backup" { "Back up now" }
                        }
                        form method="post" action=(format!("/actions/{}/drill", snapshot_path::encode_name(r.app.as_bytes()))) {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" name="go" value="drill" { "Drill now" }
                        }
                    }
                }
            }
        }
    }
}

// ----- runs -----

pub async fn runs(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    Query(f): Query<RunFilter>,
) -> PageResult {
    let all = data::blocking(&st, data::runs).await?;
    let pick = |get: fn(&RunRecord) -> &str| {
        let mut v: Vec<String> = all.iter().map(|r| get(r).to_string()).collect();
        v.sort();
        v.dedup();
        v
    };
    let apps = pick(|r| &r.app);
    let hosts = pick(|r| &r.hostname);
    let shown: Vec<&RunRecord> = all
        .iter()
        .rev()
        .filter(|r| f.matches(r))
        .take(500)
        .collect();
    let select = |name: &str, values: &[String], chosen: &Option<String>| {
        html! {
            select name=(name) {
                option value="" { "all" }
                @for v in values {
                    option value=(v) selected[chosen.as_deref() == Some(v.as_str())] { (v) }
                }
            }
        }
    };
    let results: Vec<String> = ["success", "partial", "failure"].map(String::from).to_vec();
    let body = html! {
        h1 { "Runs" }
        form.filters method="get" action="/runs" {
            label { "Application " (select("app", &apps, &f.app)) }
            label { "Host " (select("host", &hosts, &f.host)) }
            label { "Result " (select("result", &results, &f.result)) }
            button type="submit" { "Filter" }
        }
        @if shown.is_empty() { p { "No run matches." } } @else {
            table #runs {
                thead { tr { th { "Started" } th { "Application" } th { "Host" } th { "Kind" } th { "Result" } th { "Duration" } th { "Snapshot" } th { "Added" } th { "Downtime" } th { "Problems" } } }
                tbody { @for r in &shown {
                    tr.run data-result=(r.result.as_str()) {
                        td { a href=(format!("/runs/{}", r.id())) { @if let Some(s) = &r.start { (time(s)) } @else { "?" } } }
                        td { (r.app) } td { (r.hostname) } td { (r.kind) }
                        td { (result_badge(r.result)) }
                        td { (secs(r.duration_secs())) }
                        td { @if let Some(s) = &r.snapshot { a href=(format!("/snapshots/{s}")) { code { (short(s)) } } } }
                        td { (human::bytes(r.bytes_added)) }
                        td { (r.downtime_secs.map(secs).unwrap_or_else(|| "-".into())) }
                        td { @if let Some(e) = &r.error { span.error { (e) } } @else if !r.warnings.is_empty() { (r.warnings.len()) " warning(s)" } }
                    }
                } }
            }
        }
    };
    Ok(page("Runs", Some(&caller), body).into_response())
}

pub async fn run(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> PageResult {
    let r = data::blocking(&st, move |st| data::run(st, &id)).await?;
    let body = html! {
        h1 { "Run of " (r.app) " on " (r.hostname) }
        dl.details {
            dt { "Kind" } dd { (r.kind) }
            dt { "Result" } dd { (result_badge(r.result)) " (exit code " (r.exit_code) ")" }
            dt { "Started" } dd { @if let Some(s) = &r.start { (time(s)) } }
            dt { "Ended" } dd { @if let Some(s) = &r.end { (time(s)) } }
            dt { "Duration" } dd { (secs(r.duration_secs())) }
            @if let Some(s) = &r.snapshot { dt { "Snapshot" } dd { a href=(format!("/snapshots/{s}")) { code { (s) } } } }
            dt { "Added" } dd { (human::bytes(r.bytes_added)) }
            @if let Some(d) = r.downtime_secs { dt { "Service down" } dd { (secs(d)) } }
            @if r.retention_applied { dt { "Retention" } dd { (r.forgotten) " snapshot(s) forgotten" } }
            @if r.checked { dt { "Check" } dd { "ran" } }
            @if let Some(s) = &r.schedule { dt { "Schedule" } dd { code { (s) } } }
        }
        @if let Some(e) = &r.error { h2 { "Error" } p.error { (e) } }
        @if !r.steps.is_empty() {
            h2 { "Steps" }
            table #steps {
                thead { tr { th { "At" } th { "After" } th { "Step" } } }
                tbody { @for s in &r.steps { tr {
                    td { (time(&s.at)) }
                    td { (r.start.map(|st| secs((s.at - st).num_milliseconds() as f64 / 1000.0)).unwrap_or_default()) }
                    td { (s.what) }
                } } }
            }
        }
        @if !r.warnings.is_empty() {
            h2 { "Warnings" }
            ul.warnings { @for w in &r.warnings { li { (w) } } }
        }
    };
    Ok(page("Run", Some(&caller), body).into_response())
}

// ----- snapshots -----

pub async fn snapshots(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    Query(f): Query<SnapshotFilter>,
) -> PageResult {
    let (snaps, drills) = data::blocking(&st, data::snapshots_and_drills).await?;
    let shown: Vec<_> = snaps.iter().rev().filter(|(_, s)| f.matches(s)).collect();
    let body = html! {
        h1 { "Snapshots" }
        @if f.app.is_some() || f.host.is_some() {
            p { "Of " (f.app.clone().unwrap_or_else(|| "every application".into())) " on " (f.host.clone().unwrap_or_else(|| "every host".into())) ". " a href="/snapshots" { "Show all" } }
        }
        @if shown.is_empty() { p { "No snapshot." } } @else {
            table #snapshots {
                thead { tr { th { "Snapshot" } th { "Time" } th { "Host" } th { "Application" } th { "Tags" } th { "Size" } th { "Files" } th { "Consistency" } th { "Downtime" } th { "Drill" } } }
                tbody { @for (id, s) in &shown {
                    tr.snapshot data-id=(id.to_hex()) {
                        td { a href=(format!("/snapshots/{}/tree", id.to_hex())) { code { (id.short()) } } }
                        td { (time(&s.time)) }
                        td { (s.hostname) }
                        td { (data::app_of(s).unwrap_or_default()) }
                        td { (s.tags.join(", ")) }
                        td { (human::bytes(s.summary.total_bytes)) }
                        td { (s.summary.total_files) }
                        td { @match &s.consistency { Some(c) => { (c.mode) @if !c.consistent { " (not consistent)" } } None => { "-" } } }
                        td { (s.consistency.as_ref().and_then(|c| c.downtime_secs).map(secs).unwrap_or_else(|| "-".into())) }
                        td { @match drills.get(id) { Some(d) => { (d.verdict()) } None => { "-" } } }
                    }
                } }
            }
            @if shown.len() >= 2 {
                h2 { "Compare two snapshots" }
                form.diff method="get" action="/diff" {
                    label { "From " select name="a" { @for (id, s) in &shown { option value=(id.to_hex()) selected[id == &shown[1].0] { (id.short()) " " (human::local_time(&s.time)) } } } }
                    label { " to " select name="b" { @for (id, s) in &shown { option value=(id.to_hex()) { (id.short()) " " (human::local_time(&s.time)) } } } }
                    button type="submit" { "Compare" }
                }
            }
        }
    };
    Ok(page("Snapshots", Some(&caller), body).into_response())
}

/// Everything under `/snapshots/ID...`: the summary, a folder or file page, downloads.
pub async fn snapshot_any(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> PageResult {
    let rest = uri.path().strip_prefix("/snapshots/").unwrap_or_default();
    let (p, id, snap) = data::resolve(&st, rest).await?;
    match p.target {
        Target::Summary => {
            Ok(Redirect::to(&format!("/snapshots/{}/tree", id.to_hex())).into_response())
        }
        Target::File => Ok(crate::download::file(st, snap, p.names).await?),
        Target::Tar => Ok(crate::download::tar_gz(st, id.short(), snap, p.names).await?),
        Target::Tree => {
            let (names, s2) = (p.names.clone(), snap.clone());
            let found = data::blocking(&st, move |st| data::lookup(st, &s2, &names)).await?;
            let body = tree_body(&id.to_hex(), &snap, &p.names, &found);
            Ok(page("Browse", Some(&caller), body).into_response())
        }
    }
}

/// The names of entry `c` of the folder at `names`.
fn child_path(names: &[Vec<u8>], c: &Node) -> Vec<Vec<u8>> {
    let mut path = names.to_vec();
    path.push(c.name.0.clone());
    path
}

fn owner(n: &Node) -> String {
    format!(
        "{} ({}) : {} ({})",
        n.user.clone().unwrap_or_default(),
        n.uid,
        n.group.clone().unwrap_or_default(),
        n.gid
    )
}

fn ts(t: &holdfast_core::tree::Timestamp) -> String {
    DateTime::from_timestamp(t.0, t.1)
        .map(|d| human::local_time(&d))
        .unwrap_or_else(|| t.0.to_string())
}

fn tree_body(id: &str, snap: &Snapshot, names: &[Vec<u8>], found: &data::Found) -> Markup {
    let here = names
        .last()
        .map(|n| String::from_utf8_lossy(n).into_owned());
    html! {
        h1 { "Snapshot " code { (short(id)) } }
        p.summary {
            (time(&snap.time)) " · " (snap.hostname)
            @if let Some(a) = data::app_of(snap) { " · " (a) }
            @if !snap.tags.is_empty() { " · tags: " (snap.tags.join(", ")) }
            " · " (human::bytes(snap.summary.total_bytes)) " in " (snap.summary.total_files) " files"
        }
        nav.breadcrumb {
            a href=(snapshot_path::url(id, "tree", &[])) { "(root)" }
            @for i in 0..names.len() {
                " / " a href=(snapshot_path::url(id, "tree", &names[..=i])) { (String::from_utf8_lossy(&names[i])) }
            }
        }
        @match (&found.children, &found.node) {
            (Some(children), _) => {
                p { a.download href=(snapshot_path::url(id, "tar", names)) { "Download " (here.clone().unwrap_or_else(|| "the whole snapshot".into())) " as .tar.gz" } }
                table #entries {
                    thead { tr { th { "Name" } th { "Mode" } th { "Owner" } th { "Size" } th { "Modified" } } }
                    tbody {
                        @if children.is_empty() { tr { td colspan="5" { "(empty folder)" } } }
                        @for c in children {
                            @let path = child_path(names, c);
                            tr.entry data-kind=(format!("{:?}", c.kind).to_lowercase()) {
                                td { a href=(snapshot_path::url(id, "tree", &path)) { (c.name.lossy()) @if c.kind == NodeKind::Dir { "/" } } }
                                td { code { (human::mode(c.kind, c.mode)) } }
                                td { (c.user.clone().unwrap_or_else(|| c.uid.to_string())) }
                                td { @if c.kind == NodeKind::File { (human::bytes(c.size)) } }
                                td { (ts(&c.mtime)) }
                            }
                        }
                    }
                }
            }
            (None, Some(n)) => {
                h2 { (n.name.lossy()) }
                dl.details #file {
                    dt { "Type" } dd { (format!("{:?}", n.kind).to_lowercase()) }
                    dt { "Mode" } dd { code { (human::mode(n.kind, n.mode)) } " (" (format!("{:04o}", n.mode & 0o7777)) ")" }
                    dt { "Owner" } dd { (owner(n)) }
                    dt { "Size" } dd.size data-bytes=(n.size) { (human::bytes(n.size)) " (" (n.size) " bytes)" }
                    dt { "Modified" } dd { (ts(&n.mtime)) }
                    dt { "Changed" } dd { (ts(&n.ctime)) }
                    dt { "Accessed" } dd { (ts(&n.atime)) }
                    @if n.links > 1 { dt { "Hard links" } dd { (n.links) } }
                    @if let Some(t) = &n.target { dt { "Link to" } dd { code { (t.lossy()) } } }
                    @if !n.xattrs.is_empty() { dt { "Extended attributes" } dd { (n.xattrs.iter().map(|x| x.name.lossy()).collect::<Vec<_>>().join(", ")) } }
                }
                @if n.kind == NodeKind::File {
                    p { a.download #download href=(snapshot_path::url(id, "file", names)) { "Download " (n.name.lossy()) } }
                }
            }
            (None, None) => { p { "Nothing here." } }
        }
    }
}

#[derive(serde::Deserialize)]
pub struct DiffQuery {
    pub a: String,
    pub b: String,
}

pub async fn diff(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<DiffQuery>,
) -> PageResult {
    let (a, b, changes) = data::blocking(&st, move |st| data::diff(st, &q.a, &q.b)).await?;
    let body = html! {
        h1 { "Changes from " code { (a.short()) } " to " code { (b.short()) } }
        @if changes.is_empty() { p { "No change." } } @else {
            p { (changes.len()) " change(s)." }
            table #diff {
                thead { tr { th { "Change" } th { "Type" } th { "Path" } } }
                tbody { @for c in &changes { tr {
                    td { (format!("{:?}", c.change).to_lowercase()) }
                    td { (format!("{:?}", c.kind).to_lowercase()) }
                    td { code { (c.path) } }
                } } }
            }
        }
    };
    Ok(page("Diff", Some(&caller), body).into_response())
}

// ----- actions -----

pub async fn action(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path((app, kind)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> PageResult {
    caller.check_csrf(&f.csrf)?;
    let kind =
        Kind::parse(&kind).ok_or_else(|| Fail::not_found("the actions are backup and drill"))?;
    let job = actions::start(&st, &app, kind)?;
    Ok(Redirect::to(&format!("/jobs/{}", job.id)).into_response())
}

fn job_status(j: &Job) -> (String, &'static str) {
    let p = j.snapshot();
    match (p.exit_code, p.result) {
        (None, _) => ("running".into(), "running"),
        (Some(0), _) => ("succeeded".into(), "green"),
        (Some(c), Some(RunResult::Partial)) => (format!("partial (exit code {c})"), "amber"),
        (Some(c), _) => (format!("failed (exit code {c})"), "red"),
    }
}

pub async fn job(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> PageResult {
    let j = st
        .jobs
        .get(&id)
        .ok_or_else(|| Fail::not_found(format!("no job {id}")))?;
    let (status, class) = job_status(&j);
    let lines = j.snapshot().lines;
    let what = match j.kind {
        Kind::Backup => "Backup",
        Kind::Drill => "Restore drill",
    };
    let body = html! {
        h1 { (what) " of " (j.app) }
        div #job data-id=(j.id) data-running=(j.running()) {
            p { "Started " (time(&j.started)) ": " span #job-status class=(format!("status status-{class}")) { (status) } }
            pre #job-log { @for l in &lines { (l) "\n" } }
            noscript { p { "Reload the page to follow the progress." } }
        }
        p { a href="/" { "Back to the overview" } " · " a href=(format!("/runs?app={}", snapshot_path::query_value(&j.app))) { "Runs of " (j.app) } }
    };
    Ok(page(what, Some(&caller), body).into_response())
}

// ----- static files -----

pub async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../assets/console.js"),
    )
        .into_response()
}

pub async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../assets/console.css"),
    )
        .into_response()
}

pub async fn not_found() -> PageFail {
    PageFail(Fail::new(StatusCode::NOT_FOUND, "no such page"))
}
