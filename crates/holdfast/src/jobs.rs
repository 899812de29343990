//! Scheduled operation: `run`, `runs`, `schedule list|install`, `daemon`, and what every run
//! leaves behind (run log line, hooks, metrics).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use chrono::{Local, Utc};
use holdfast_app::resolved::Resolved;
use holdfast_app::runlog::{self, RunRecord};
use holdfast_app::{job, schedule};
use holdfast_core::error::exit;
use serde_json::json;

use crate::app_commands::{finish_run, new_record, record_for, run_backup_app, start_run};
use crate::cli::*;
use crate::context::{one_line, Ctx};
use crate::format;

fn app_names(ctx: &Ctx, app: &Option<String>, all: bool) -> Result<Vec<String>> {
    let cfg = ctx.config()?;
    match (app, all) {
        (Some(a), _) => {
            cfg.app(a)?;
            Ok(vec![a.clone()])
        }
        (None, true) => Ok(cfg.app.keys().cloned().collect()),
        (None, false) => Err(crate::usage!(
            "name an application with --app NAME, or --all"
        )),
    }
}

/// One scheduled run of `name`: backup, retention, check; logged, hooked, measured; then a
/// restore drill of the new snapshot when one is due (a run of its own in the log).
fn run_one(ctx: &Ctx, name: &str) -> Vec<RunRecord> {
    let rec = backup_run(ctx, name);
    let mut out = vec![rec];
    let drill_due = ctx.config().ok().and_then(|cfg| {
        let app = Resolved::new(name, cfg.app.get(name)?);
        Some(job::drill_due(&app, &runlog::read(&job::run_log(cfg))))
    });
    let snapshot = out[0].snapshot.clone();
    if drill_due == Some(true) && out[0].result != runlog::RunResult::Failure && !ctx.cancelled() {
        out.push(drill_one(ctx, name, snapshot.as_deref()).0);
    }
    out
}

/// One restore drill of `name`: pinged, logged (kind `drill`), hooked, measured.
fn drill_one(
    ctx: &Ctx,
    name: &str,
    snapshot: Option<&str>,
) -> (RunRecord, Option<holdfast_core::drills::DrillRecord>) {
    let started = Utc::now();
    let start_warnings = start_run(ctx, name, started);
    let quiet = ctx.global.json || ctx.global.quiet;
    let on_step = |s: &str| {
        ctx.step(s);
        if !quiet {
            crate::errln!("holdfast: drill {name}: {s}");
        }
    };
    let result = (|| -> Result<holdfast_core::drills::DrillRecord> {
        let cfg = ctx.config()?;
        let app = Resolved::new(name, cfg.app(name)?);
        let repo = ctx.open()?;
        // A second interrupt must not skip the clean-up: the copy's processes, a scratch
        // cluster and databases would outlive holdfast.
        ctx.critical
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let done = job::drill(cfg, &app, &repo, snapshot, &ctx.cancel, &on_step);
        ctx.critical
            .store(false, std::sync::atomic::Ordering::SeqCst);
        Ok(done?)
    })();
    let mut rec = new_record(ctx, name, holdfast_core::runs::DRILL_KIND, started);
    let drill = match result {
        Ok(d) => {
            rec.snapshot = Some(d.snapshot.to_hex());
            rec.warnings.extend(d.notes.iter().cloned());
            if d.ok {
                rec.result = runlog::RunResult::Success;
                rec.exit_code = exit::OK;
            } else {
                rec.result = runlog::RunResult::Failure;
                rec.exit_code = exit::FAILURE;
                rec.error = d.failure.clone();
            }
            Some(d)
        }
        Err(e) => {
            rec.result = runlog::RunResult::Failure;
            rec.exit_code = crate::context::exit_code(&e, ctx.cancelled());
            rec.error = Some(one_line(&e));
            None
        }
    };
    rec.warnings.extend(start_warnings);
    finish_run(ctx, &mut rec);
    (rec, drill)
}

/// `holdfast drill --app NAME [SNAPSHOT]`.
pub fn drill_cmd(ctx: &Ctx, a: DrillArgs) -> Result<i32> {
    ctx.config()?.app(&a.app)?;
    let (rec, drill) = drill_one(ctx, &a.app, a.snapshot.as_deref());
    if ctx.global.json {
        ctx.json(&json!({"run": rec, "drill": drill}));
        return Ok(rec.exit_code);
    }
    match &drill {
        Some(d) => {
            ctx.say(format!(
                "drill of {} snapshot {}: {}",
                a.app,
                d.snapshot.short(),
                if d.ok { "passed" } else { "FAILED" }
            ));
            if let Some(f) = &d.failure {
                ctx.say(format!("  failure: {f}"));
            }
            ctx.say(format!(
                "  files restored and verified in {:.1} s",
                d.files_secs
            ));
            if let Some(s) = d.databases_secs {
                ctx.say(format!("  databases restored and compared in {s:.1} s"));
            }
            if let Some(s) = d.start_secs {
                ctx.say(format!("  application started and probed in {s:.1} s"));
            }
            ctx.say(format!("  time to recover: {:.1} s", d.recovered_secs));
            for n in &d.notes {
                ctx.say(format!("  note: {n}"));
            }
        }
        None => ctx.say(run_line(&rec)),
    }
    Ok(rec.exit_code)
}

fn backup_run(ctx: &Ctx, name: &str) -> RunRecord {
    let started = Utc::now();
    let start_warnings = start_run(ctx, name, started);
    let result = run_backup_app(ctx, BackupArgs::for_app(name), false, false);
    if let Err(e) = &result {
        crate::errln!("holdfast: error: {name}: {}", one_line(e));
    }
    let mut rec = record_for(ctx, name, "run", started, &result);
    rec.warnings.extend(start_warnings);
    let cfg = ctx.config().expect("loaded by the backup");
    let app_cfg = cfg.app.get(name).cloned().unwrap_or_default();
    let app = Resolved::new(name, &app_cfg);
    if result.is_ok() && !ctx.cancelled() {
        match ctx.access(true) {
            Ok(access) => {
                let open = |use_cache: bool| {
                    crate::context::open_with(&holdfast_app::Access {
                        use_cache,
                        ..access.clone()
                    })
                };
                job::after_backup(cfg, &app, &mut rec, &open);
            }
            Err(e) => rec
                .warnings
                .push(format!("retention and check: {}", one_line(&e))),
        }
    }
    finish_run(ctx, &mut rec);
    rec
}

pub fn run_cmd(ctx: &Ctx, a: RunArgs) -> Result<i32> {
    let names = app_names(ctx, &a.app, a.all)?;
    let mut records = Vec::new();
    for name in names {
        if ctx.cancelled() {
            break;
        }
        records.extend(run_one(ctx, &name));
    }
    if ctx.global.json {
        ctx.json(&json!({ "runs": records }));
    } else {
        for r in &records {
            ctx.say(run_line(r));
            if !r.is_drill() {
                for step in step_lines(r) {
                    ctx.say(format!("  {step}"));
                }
            }
            for w in &r.warnings {
                ctx.say(format!("  warning: {w}"));
            }
        }
    }
    Ok(records
        .iter()
        .map(|r| r.exit_code)
        .max_by_key(|c| severity(*c))
        .unwrap_or(exit::OK))
}

/// Orders exit codes so that the worst of several runs is reported.
fn severity(code: i32) -> i32 {
    match code {
        exit::OK => 0,
        exit::PARTIAL => 1,
        _ => 2,
    }
}

/// What each step of a run did, one line each, for the terminal: an operator reads whether
/// the backup, the retention policy and the check each went as planned, not only "success".
fn step_lines(r: &RunRecord) -> Vec<String> {
    let mut out = Vec::new();
    match &r.snapshot {
        Some(s) => out.push(format!(
            "backup: snapshot {}, {} added{}",
            &s[..8.min(s.len())],
            format::bytes(r.bytes_added),
            r.downtime_secs
                .map(|d| format!(", service down {d:.1}s"))
                .unwrap_or_default()
        )),
        None => out.push("backup: no snapshot written".into()),
    }
    if r.snapshot.is_some() {
        let retention_failed = r.warnings.iter().any(|w| w.starts_with("retention:"));
        out.push(if retention_failed {
            "retention: failed (see the warning below)".into()
        } else if r.retention_applied {
            format!("retention: {} snapshot(s) forgotten", r.forgotten)
        } else {
            "retention: none configured".into()
        });
        let check_failed = r.warnings.iter().any(|w| w.starts_with("check:"));
        out.push(if check_failed {
            "check: could not run (see the warning below)".into()
        } else if r.checked && r.exit_code == exit::INTEGRITY {
            "check: FAILED, damage found".into()
        } else if r.checked {
            "check: passed".into()
        } else {
            "check: not due".into()
        });
    }
    out
}

fn run_line(r: &RunRecord) -> String {
    format!(
        "{} {}: {}{}{}{}",
        r.kind,
        r.app,
        r.result,
        r.snapshot
            .as_deref()
            .map(|s| format!(", snapshot {}", &s[..8.min(s.len())]))
            .unwrap_or_default(),
        if r.forgotten > 0 {
            format!(", {} forgotten", r.forgotten)
        } else {
            String::new()
        },
        r.error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default()
    )
}

pub fn runs_cmd(ctx: &Ctx, a: RunsArgs) -> Result<i32> {
    let cfg = ctx.config()?;
    let mut recs = runlog::read(&job::run_log(cfg));
    if let Some(app) = &a.app {
        recs.retain(|r| &r.app == app);
    }
    let skip = recs.len().saturating_sub(a.last);
    let recs = &recs[skip..];
    if ctx.global.json {
        ctx.json(&recs);
        return Ok(exit::OK);
    }
    let rows: Vec<Vec<String>> = recs
        .iter()
        .map(|r| {
            vec![
                r.start.map(|t| format::local_time(&t)).unwrap_or_default(),
                r.app.clone(),
                r.kind.clone(),
                r.result.to_string(),
                format!("{:.1}s", r.duration_secs()),
                r.snapshot
                    .as_deref()
                    .map(|s| s[..8.min(s.len())].to_string())
                    .unwrap_or_default(),
                format::bytes(r.bytes_added),
                r.downtime_secs
                    .map(|d| format!("{d:.1}s"))
                    .unwrap_or_default(),
                r.error.clone().unwrap_or_else(|| {
                    if r.warnings.is_empty() {
                        String::new()
                    } else {
                        format!("{} warning(s)", r.warnings.len())
                    }
                }),
            ]
        })
        .collect();
    ctx.say(format::table(
        &[
            "Start", "App", "Kind", "Result", "Took", "Snapshot", "Added", "Downtime", "Notes",
        ],
        &rows,
    ));
    Ok(exit::OK)
}

pub fn schedule_cmd(ctx: &Ctx, c: ScheduleCommand) -> Result<i32> {
    let cfg = ctx.config()?;
    match c {
        ScheduleCommand::List { count, app } => {
            let jobs = cfg.scheduled(app.as_deref())?;
            let now = Local::now();
            let mut out = Vec::new();
            for (name, expr) in &jobs {
                let next: Vec<String> = schedule::next_runs(expr, now, count)?
                    .iter()
                    .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                    .collect();
                let a = &cfg.app[name];
                out.push(json!({
                    "app": name,
                    "schedule": expr,
                    "next": next,
                    "retention": a.retention.is_some(),
                    "check": a.check.as_ref().map(|c| json!({"read_data_subset": c.read_data_subset, "every": c.every})),
                }));
            }
            if ctx.global.json {
                ctx.json(&out);
            } else if out.is_empty() {
                ctx.say("no application has a schedule");
            } else {
                for j in &out {
                    ctx.say(format!(
                        "{} ({}): next {}",
                        j["app"].as_str().unwrap_or(""),
                        j["schedule"].as_str().unwrap_or(""),
                        j["next"]
                            .as_array()
                            .map(|v| v
                                .iter()
                                .filter_map(|x| x.as_str())
                                .collect::<Vec<_>>()
                                .join(", "))
                            .unwrap_or_default()
                    ));
                }
            }
            Ok(exit::OK)
        }
        ScheduleCommand::Install {
            cron,
            dir,
            app,
            dry_run,
        } => {
            let jobs = cfg.scheduled(app.as_deref())?;
            if jobs.is_empty() {
                return Err(anyhow!("no application has a schedule to install"));
            }
            let exe = std::env::current_exe().context("locating the holdfast binary")?;
            let config = std::path::absolute(
                cfg.source
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(holdfast_app::config::DEFAULT_PATH)),
            )?;
            let (files, next_step) =
                schedule::unit_files(&jobs, cron, dir.as_deref(), &exe, &config)?;
            if !dry_run {
                for (path, text) in &files {
                    runlog::write_atomic(path, text)?;
                }
            }
            if ctx.global.json {
                ctx.json(&json!({
                    "dry_run": dry_run,
                    "files": files.iter().map(|(p, t)| json!({"path": p, "content": t})).collect::<Vec<_>>(),
                    "next_step": next_step,
                }));
            } else {
                for (p, t) in &files {
                    if dry_run {
                        crate::outln!("# {}\n{t}", p.display());
                    } else {
                        ctx.say(format!("wrote {}", p.display()));
                    }
                }
                ctx.say(format!("then: {next_step}"));
            }
            Ok(exit::OK)
        }
    }
}

/// Runs the schedules itself (for containers): one job at a time, a missed run caught up
/// once, and on SIGTERM the current run finishes its cleanup (the service is started again)
/// before the daemon exits.
pub fn daemon_cmd(ctx: &Ctx, _a: DaemonArgs) -> Result<i32> {
    let cfg = ctx.config()?;
    let jobs = cfg.scheduled(None)?;
    if jobs.is_empty() {
        return Err(anyhow!("no application has a schedule: nothing to run"));
    }
    let exe = std::env::current_exe()?;
    let history = runlog::read(&job::run_log(cfg));
    let last_start = |app: &str| {
        history
            .iter()
            .filter(|r| r.app == app)
            .filter_map(|r| r.start)
            .max()
    };
    let (mut table, missed) = schedule::Timetable::new(&jobs, &last_start, Local::now())?;
    for (name, when) in missed {
        crate::errln!(
            "holdfast: daemon: the run of {name} due at {} was missed; running it now",
            when.format("%Y-%m-%d %H:%M")
        );
    }
    while let Some((name, when)) = table.next_due() {
        if !ctx.global.quiet {
            crate::errln!(
                "holdfast: daemon: next run: {name} at {}",
                when.format("%Y-%m-%d %H:%M")
            );
        }
        while Local::now() < when {
            if ctx.cancelled() {
                return Ok(exit::OK);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let started = Local::now();
        let code = run_child(ctx, &exe, &name)?;
        if ctx.cancelled() {
            crate::errln!("holdfast: daemon: stopped after the run of {name} finished");
            return Ok(if code == exit::OK {
                exit::OK
            } else {
                exit::INTERRUPTED
            });
        }
        table.ran(&name, started, Local::now())?;
    }
    Ok(exit::OK)
}

/// Runs `holdfast run --app NAME` as a child; a signal to the daemon is passed on and the
/// child is waited for, so that it can start the application again before we exit.
fn run_child(ctx: &Ctx, exe: &Path, name: &str) -> Result<i32> {
    let mut cmd = std::process::Command::new(exe);
    if let Some(c) = &ctx.global.config {
        cmd.arg("--config").arg(c);
    }
    if let Some(m) = &ctx.global.metrics_file {
        cmd.arg("--metrics-file").arg(m);
    }
    cmd.args(["--quiet", "run", "--app", name]);
    let mut child = cmd.spawn().context("starting the run")?;
    ctx.critical.store(true, Ordering::SeqCst);
    let mut forwarded = false;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if ctx.cancelled() && !forwarded {
            crate::errln!(
                "holdfast: daemon: passing the stop on to the run of {name} and waiting for it"
            );
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            forwarded = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    ctx.critical.store(false, Ordering::SeqCst);
    Ok(status.code().unwrap_or(exit::INTERRUPTED))
}
