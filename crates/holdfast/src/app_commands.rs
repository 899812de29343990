//! Commands that run an application's procedure: `backup --app`, `restore --app`, `plan`,
//! `config check`, `snapshots --provider`. The work is in holdfast-app; this is output.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, Utc};
use holdfast_app::config::{AppConfig, Config, Mode, PostgresConfig, ProfileName};
use holdfast_app::job;
use holdfast_app::procedure::{self, RunOptions};
use holdfast_app::resolved::Resolved;
use holdfast_app::restore::AppRestore;
use holdfast_app::runlog::{RunRecord, RunResult};
use holdfast_core::backup::Progress;
use holdfast_core::error::exit;
use holdfast_core::exclude::Excludes;
use holdfast_core::restore::RestoreProgress;
use holdfast_core::snapshot::SnapshotFilter;
use serde_json::json;

use crate::cli::*;
use crate::context::{exit_code, one_line, Ctx};
use crate::format;
use crate::progress::Bar;

/// Whether `backup` runs an application procedure rather than a plain backup.
pub fn wants_procedure(a: &BackupArgs) -> bool {
    a.app.is_some() || a.profile.is_some() || a.consistency.is_some() || !a.postgres.is_empty()
}

/// The application to run: from the configuration, or ad hoc from the flags and one path.
fn resolve_app(ctx: &Ctx, a: &BackupArgs) -> Result<(Resolved, Mode)> {
    let cfg = ctx.config()?;
    let mut app_cfg = match (&a.app, cfg.app.get(a.app.as_deref().unwrap_or(""))) {
        (Some(_), Some(c)) => {
            if !a.paths.is_empty() {
                return Err(anyhow!(
                    "--app takes the data directory from the configuration: give no paths"
                ));
            }
            c.clone()
        }
        (Some(name), None) if a.paths.is_empty() => {
            return Err(cfg.app(name).unwrap_err().into());
        }
        _ => {
            let [path] = a.paths.as_slice() else {
                return Err(anyhow!(
                    "an ad-hoc application procedure backs up exactly one data directory"
                ));
            };
            let profile = match a.profile.as_deref() {
                Some("dss") => ProfileName::Dss,
                _ => ProfileName::Generic,
            };
            AppConfig {
                profile,
                data_dir: std::path::absolute(path)?,
                // The dss profile knows how to stop the service; without one, read live.
                consistency: if profile == ProfileName::Dss {
                    Mode::Stop
                } else {
                    Mode::Live
                },
                live_retries: 3,
                ..AppConfig::default()
            }
        }
    };
    if !a.exclude_tier.is_empty() {
        app_cfg.exclude_tiers = Some(a.exclude_tier.clone());
    }
    for url in &a.postgres {
        app_cfg.postgres.push(PostgresConfig::for_url(url));
    }
    let mode = a.consistency.unwrap_or(app_cfg.consistency);
    app_cfg.consistency = mode;
    let problems = app_cfg.problems();
    if let Some((key, p)) = problems.first() {
        return Err(holdfast_app::Error::Config(format!("{key}: {p}")).into());
    }
    let name = a
        .app
        .clone()
        .unwrap_or_else(|| app_cfg.profile.as_str().to_string());
    Ok((Resolved::new(&name, &app_cfg), mode))
}

pub fn backup_app(ctx: &Ctx, a: BackupArgs) -> Result<i32> {
    let started = chrono::Utc::now();
    // A configured application's backup is a run: pinged, logged, hooked, measured.
    let run = a
        .app
        .clone()
        .filter(|n| ctx.config().map(|c| c.app.contains_key(n)).unwrap_or(false));
    let start_warnings = run.as_deref().map(|n| start_run(ctx, n, started));
    // `--host X` files the snapshot under X: its run belongs to the same row.
    let host = a.host.clone();
    let result = run_backup_app(ctx, a, true, false);
    if let (Some(name), Some(w)) = (run, start_warnings) {
        let mut rec = record_for(ctx, &name, "backup", started, &result);
        if let Some(h) = host {
            rec.hostname = h;
        }
        rec.warnings.extend(w);
        finish_run(ctx, &mut rec);
    }
    result.map(|d| d.code)
}

/// What a procedure run produced, for the run log.
pub struct BackupDone {
    pub code: i32,
    pub id: String,
    pub bytes_added: u64,
    pub downtime: Option<f64>,
    pub warnings: Vec<String>,
}

/// Runs the procedure; `json_out` false leaves stdout to the caller (upgrade, run).
/// `stopped_by_caller`: an upgrade stopped the service for this backup and starts it itself.
pub fn run_backup_app(
    ctx: &Ctx,
    a: BackupArgs,
    json_out: bool,
    stopped_by_caller: bool,
) -> Result<BackupDone> {
    let (app, mode) = resolve_app(ctx, &a)?;
    let cfg = ctx.config()?;
    let patterns = Excludes::gather(&a.exclude, &a.exclude_file)?;
    let (repo, lock) = ctx.open_locked(false, "backup")?;
    let progress = Arc::new(Progress::default());
    // The bar is drawn for the backup phase only: not over the preflight, the quiesce wait
    // or "stopping the service", whose lines it would leave stale bar lines around.
    let bar: std::cell::RefCell<Option<crate::progress::Bar>> = std::cell::RefCell::new(None);
    let tiers = Excludes::new(&app.tier_patterns(app.data_dir()), &[])?;
    let quiet = ctx.global.json || ctx.global.quiet;
    let on_step = |s: &str| {
        bar.borrow_mut().take();
        ctx.step(s);
        if !quiet {
            crate::errln!("holdfast: {}: {s}", app.name);
        }
        if s == procedure::BACKING_UP_STEP {
            *bar.borrow_mut() = crate::commands::backup_bar(
                ctx,
                &progress,
                vec![app.data_dir().to_path_buf()],
                tiers.clone(),
            );
        }
    };
    let ensure = || lock.ensure_held();
    let run = RunOptions {
        tags: a.tag.clone(),
        excludes: patterns,
        exclude_if_present: a.exclude_if_present.clone(),
        state_dir: cfg.state_dir.clone(),
        progress: &progress,
        cancel: &ctx.cancel,
        critical: &ctx.critical,
        ensure_lock: &ensure,
        on_step: &on_step,
        host: a.host.clone(),
        one_file_system: a.one_file_system,
        force: a.force,
        checkpoints: Some(crate::commands::checkpoints(&lock, a.checkpoint_interval)),
        service_stopped_by_caller: stopped_by_caller,
    };
    let outcome = procedure::backup_app(repo.clone(), &app, mode, &run);
    bar.borrow_mut().take();
    let outcome = outcome.with_context(|| format!("backup of application {}", app.name))?;
    let s = &outcome.backup.snapshot;
    for w in &s.warnings {
        crate::errln!("holdfast: warning: {}: {}", w.path, w.message);
    }
    if let Some(c) = &s.consistency {
        for p in &c.inconsistent {
            crate::errln!("holdfast: warning: {p}: kept changing while read; its copy may be torn");
        }
    }
    if let Some(e) = &outcome.start_error {
        crate::errln!(
            "holdfast: error: the snapshot was saved, but the service did not start again: {e}"
        );
    }
    if let Some(e) = &outcome.cleanup_error {
        crate::errln!("holdfast: error: the snapshot was saved, but cleaning up the volume snapshot failed: {e}");
    }
    if ctx.global.json {
        if !json_out {
            // The caller prints the one JSON document.
        } else {
            ctx.json(&json!({
            "id": outcome.backup.id,
            "snapshot": s,
            "start_error": outcome.start_error,
            "cleanup_error": outcome.cleanup_error,
            }));
        }
    } else {
        ctx.say(format::snapshot_saved(
            &outcome.backup.id,
            Some(&app.name),
            s,
        ));
        for at in &s.attachments {
            ctx.say(format!(
                "  with {} ({}, {})",
                at.name,
                at.kind,
                format::bytes(at.bytes)
            ));
        }
        ctx.say(format!(
            "  consistency: {}",
            format::consistency_explained(s)
        ));
        if !app.excluded_tiers.is_empty() {
            ctx.say(format!(
                "  excluded tiers: {}",
                app.excluded_tiers
                    .iter()
                    .map(|t| t.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    let code = if outcome.start_error.is_some() || outcome.cleanup_error.is_some() {
        holdfast_app::error::codes::STEP
    } else if !s.warnings.is_empty() {
        exit::PARTIAL
    } else {
        exit::OK
    };
    let mut warnings: Vec<String> = s
        .warnings
        .iter()
        .map(|w| format!("{}: {}", w.path, w.message))
        .collect();
    warnings.extend(
        outcome
            .start_error
            .iter()
            .map(|e| format!("service did not start again: {e}")),
    );
    warnings.extend(
        outcome
            .cleanup_error
            .iter()
            .map(|e| format!("volume snapshot cleanup: {e}")),
    );
    if let Some(c) = &s.consistency {
        warnings.extend(
            c.inconsistent
                .iter()
                .map(|p| format!("{p}: changed while read")),
        );
    }
    Ok(BackupDone {
        code,
        id: outcome.backup.id.to_hex(),
        bytes_added: s.summary.bytes_added,
        downtime: s.consistency.as_ref().and_then(|c| c.downtime_secs),
        warnings,
    })
}

pub fn provider_snapshots(ctx: &Ctx, app_name: &str) -> Result<i32> {
    let cfg = ctx.config()?;
    let app_cfg = cfg.app(app_name)?;
    let Some(v) = &app_cfg.snapshot else {
        return Err(anyhow!(
            "application {app_name} has no [snapshot] provider configured"
        ));
    };
    let timeout = app_cfg.service.command_timeout.as_std();
    let vol =
        holdfast_app::volume::Volume::new(app_name, v, &app_cfg.data_dir, &cfg.state_dir, timeout);
    let names = vol.list()?;
    if ctx.global.json {
        ctx.json(&json!({"provider": vol.provider(), "snapshots": names}));
    } else {
        for n in &names {
            crate::outln!("{n}");
        }
        ctx.say(format!(
            "{} {} volume snapshot(s) of {app_name}",
            names.len(),
            vol.provider()
        ));
    }
    Ok(exit::OK)
}

pub fn config_init(ctx: &Ctx, a: ConfigInitArgs) -> Result<i32> {
    use holdfast_app::profile::ProfileName;
    let starter = holdfast_app::starter::Starter {
        app: a.app.clone().unwrap_or_else(|| {
            match a.profile {
                ProfileName::Dss => "design",
                ProfileName::Generic => "app",
            }
            .to_string()
        }),
        profile: a.profile,
        data_dir: a.data_dir.clone(),
        repository: ctx
            .global
            .repo
            .clone()
            .unwrap_or_else(|| "/var/backups/holdfast".to_string()),
        password_file: a.password_file.clone(),
    };
    if let Err(why) = starter.check() {
        return Err(crate::context::UsageError(why).into());
    }
    let text = starter.render();
    if a.print {
        crate::out!("{text}");
        return Ok(exit::OK);
    }
    let path = ctx
        .global
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(holdfast_app::config::DEFAULT_PATH));
    if path.symlink_metadata().is_ok() && !a.force {
        return Err(crate::context::UsageError(format!(
            "{} exists: not replaced (--force replaces it; --print shows the new one)",
            path.display()
        ))
        .into());
    }
    let created = starter
        .create_password_file()
        .with_context(|| format!("creating {}", a.password_file.display()))?;
    if let Some(dir) = path.parent() {
        holdfast_core::private::create_dir_all(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    // Temporary file and rename: --force never leaves a half-written configuration.
    holdfast_core::private::write_durably(&path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    if ctx.global.json {
        ctx.json(&json!({
            "config": path,
            "app": starter.app,
            "password_file": a.password_file,
            "password_created": created,
        }));
    } else {
        ctx.say(format!(
            "wrote {} (application {}, profile {}, data {})",
            path.display(),
            starter.app,
            starter.profile.as_str(),
            starter.data_dir.display()
        ));
        ctx.say(if created {
            format!(
                "created {} (0600) with a random password: keep a copy somewhere else",
                a.password_file.display()
            )
        } else {
            format!(
                "kept the existing password file {}",
                a.password_file.display()
            )
        });
        ctx.say(format!(
            "next: holdfast init; holdfast plan --app {0}; holdfast run --app {0}; holdfast schedule install",
            starter.app
        ));
    }
    Ok(exit::OK)
}

pub fn config_check(ctx: &Ctx) -> Result<i32> {
    let path = ctx
        .global
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(holdfast_app::config::DEFAULT_PATH));
    let cfg = Config::load(&path)?;
    // Checked here rather than on every load: a half-written [s3] must not stop backups to a
    // local repository, but it would stop the first one to S3.
    if let Some(p) = cfg.s3.problems().into_iter().next() {
        return Err(holdfast_app::Error::Config(format!("{}: [s3] {p}", path.display())).into());
    }
    let apps: Vec<_> = cfg
        .app
        .iter()
        .map(|(name, a)| {
            let r = Resolved::new(name, a);
            json!({
                "name": name,
                "profile": a.profile.as_str(),
                "data_dir": a.data_dir,
                "consistency": a.consistency.as_str(),
                "excluded_tiers": r.excluded_tiers.iter().map(|t| t.name).collect::<Vec<_>>(),
                "databases": a.postgres.len(),
            })
        })
        .collect();
    let warnings: Vec<String> = cfg
        .app
        .iter()
        .map(|(name, a)| Resolved::new(name, a))
        .filter(|r| r.config.consistency == Mode::Stop)
        .filter_map(|r| match r.quiet_check() {
            None => Some(procedure::no_quiesce_warning(&r)),
            Some(holdfast_app::service::QuietCheck::DssApi(api)) => api.key_file_warning(),
            Some(_) => None,
        })
        .collect();
    if ctx.global.json {
        ctx.json(&json!({"file": path, "ok": true, "repository": cfg.repository, "apps": apps, "warnings": warnings}));
    } else {
        ctx.say(format!("{}: OK", path.display()));
        for w in &warnings {
            crate::errln!("holdfast: warning: {w}");
        }
        for a in &apps {
            ctx.say(format!(
                "  app {}: profile {}, {} ({}), excluded tiers [{}], {} database(s)",
                a["name"].as_str().unwrap_or(""),
                a["profile"].as_str().unwrap_or(""),
                a["data_dir"].as_str().unwrap_or(""),
                a["consistency"].as_str().unwrap_or(""),
                a["excluded_tiers"]
                    .as_array()
                    .map(|v| v
                        .iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(", "))
                    .unwrap_or_default(),
                a["databases"]
            ));
        }
    }
    Ok(exit::OK)
}

pub fn plan(ctx: &Ctx, a: PlanArgs) -> Result<i32> {
    let cfg = ctx.config()?;
    let app_cfg = cfg.app(&a.app)?;
    let mode = a.consistency.unwrap_or(app_cfg.consistency);
    show_plan(ctx, &Resolved::new(&a.app, app_cfg), mode)
}

/// `backup --dry-run` of an application (configured, or ad hoc from --profile and a path):
/// its plan, which never touches the service or the repository.
pub fn backup_app_dry_run(ctx: &Ctx, a: BackupArgs) -> Result<i32> {
    let (app, mode) = resolve_app(ctx, &a)?;
    show_plan(ctx, &app, mode)
}

fn show_plan(ctx: &Ctx, app: &Resolved, mode: Mode) -> Result<i32> {
    let cfg = ctx.config()?;
    let p = procedure::plan(app, mode);
    // The same preflight as a backup: a plan that could not run says so, and exits non-zero.
    let preflight = procedure::preflight(app, mode, &cfg.state_dir);
    if ctx.global.json {
        let mut v = serde_json::to_value(&p)?;
        v["preflight"] = match &preflight {
            Ok(checked) => json!({"ok": true, "checked": checked}),
            Err(e) => json!({"ok": false, "error": e.to_string()}),
        };
        ctx.json(&v);
        return match preflight {
            Ok(_) => Ok(exit::OK),
            Err(e) => Ok(e.exit_code()),
        };
    }
    ctx.say(format!(
        "application {} (profile {}, version {}), data directory {}, consistency {}",
        p.app,
        p.profile,
        p.version.clone().unwrap_or("unknown".into()),
        p.data_dir.display(),
        p.consistency
    ));
    ctx.say("steps:");
    for (i, s) in p.steps.iter().enumerate() {
        ctx.say(format!("  {}. {s}", i + 1));
    }
    let rows: Vec<Vec<String>> = p
        .tiers
        .iter()
        .map(|t| {
            vec![
                t.tier.clone(),
                if t.excluded { "excluded" } else { "kept" }.into(),
                t.files.to_string(),
                format::bytes(t.bytes),
                t.folders.join(" "),
            ]
        })
        .collect();
    ctx.say(format::table(
        &["Tier", "", "Files", "Size", "Folders"],
        &rows,
    ));
    for w in &p.warnings {
        ctx.say(format!("warning: {w}"));
    }
    let checked = preflight?;
    ctx.say(format!("preflight: ok ({} checks)", checked.len()));
    for c in &checked {
        ctx.say(format!("  {c}"));
    }
    Ok(exit::OK)
}

/// `restore --app … --dry-run`: the steps, the refusals and the files, nothing done.
fn restore_app_dry_run(ctx: &Ctx, r: &AppRestore, a: &RestoreArgs) -> Result<i32> {
    let plan = if a.in_place {
        r.plan(None)?
    } else if let Some(t) = &a.target {
        r.plan(Some((t.as_path(), a.overwrite)))?
    } else {
        return Err(holdfast_app::Error::Config(
            "restore --dry-run previews files: give --target DIR or --in-place".into(),
        )
        .into());
    };
    let code = crate::commands::dry_run_code(plan.files.missing_chunks, !plan.refusals.is_empty());
    if ctx.global.json {
        ctx.json(&json!({"dry_run": true, "plan": plan}));
        return Ok(code);
    }
    ctx.say(format!(
        "dry run of a {} restore of snapshot {} into {}; nothing is changed",
        if plan.in_place {
            "pristine"
        } else {
            "relocated"
        },
        plan.snapshot,
        plan.target.display()
    ));
    ctx.say("steps:");
    for (i, s) in plan.steps.iter().enumerate() {
        ctx.say(format!("  {}. {s}", i + 1));
    }
    for n in &plan.notes {
        ctx.say(format!("note: {n}"));
    }
    if plan.refusals.is_empty() {
        ctx.say("the restore would go ahead");
    }
    for r in &plan.refusals {
        ctx.say(format!("refused: {r}"));
    }
    Ok(code)
}

pub fn restore_app(ctx: &Ctx, a: RestoreArgs) -> Result<i32> {
    let cfg = ctx.config()?;
    let (repo, _lock) = ctx.open_locked(false, "restore")?;
    let f: SnapshotFilter = SnapshotFilter {
        hosts: a.filter.hosts.clone(),
        tags: a.filter.tags.clone(),
        paths: a.filter.paths.clone(),
    };
    let app = match &a.app {
        Some(name) => Resolved::new(name, cfg.app(name)?),
        None => {
            // Databases only (--db-target/--dumps-to) without an application.
            let fake = AppConfig {
                data_dir: a.target.clone().unwrap_or_default(),
                ..AppConfig::default()
            };
            Resolved::new("", &fake)
        }
    };
    let (id, snap) = match &a.app {
        Some(name) => {
            let s = holdfast_app::restore::select_app_snapshot(&repo, name, &a.snapshot, &f)?;
            if let Some(n) = &s.note {
                crate::errln!("holdfast: {n}");
            }
            (s.id, s.snap)
        }
        None => repo.find_snapshot(&a.snapshot, &f)?,
    };
    if let (Some(name), Some((recorded, _))) = (&a.app, holdfast_app::restore::recorded_app(&snap))
    {
        if &recorded != name {
            if a.in_place && !a.allow_other_app {
                return Err(holdfast_app::Error::step(
                    "pristine restore",
                    format!(
                        "snapshot {} is of application {recorded}, not {name}: refusing to put \
                         it in place of {name} and start {name} on it (nothing changed; \
                         --allow-other-app does it anyway)",
                        id.short()
                    ),
                )
                .into());
            }
            crate::errln!(
                "holdfast: warning: snapshot {} is of application {recorded}, restoring it as {name}",
                id.short()
            );
        }
    }
    let progress = Arc::new(RestoreProgress::default());
    let p = progress.clone();
    let bar = Bar::start(ctx.show_progress(), "restore", move || {
        (
            p.bytes_done.load(Ordering::Relaxed),
            p.total_bytes.load(Ordering::Relaxed),
            p.files_done.load(Ordering::Relaxed),
            0,
        )
    });
    let quiet = ctx.global.json || ctx.global.quiet;
    let on_step = |s: &str| {
        if !quiet {
            crate::errln!("holdfast: {s}");
        }
    };
    let r = AppRestore {
        repo: &repo,
        app: &app,
        snap_id: id,
        snap: &snap,
        state_dir: cfg.state_dir.clone(),
        force_version: a.force_version,
        clean: a.clean,
        db_target: a.db_target.clone(),
        dumps_to: a.dumps_to.clone(),
        progress: &progress,
        cancel: &ctx.cancel,
        on_step: &on_step,
    };
    if a.dry_run {
        drop(bar);
        return restore_app_dry_run(ctx, &r, &a);
    }
    let report = if a.in_place {
        r.in_place()
    } else if let Some(t) = &a.target {
        if a.app.is_some() {
            r.relocated(t, a.overwrite)
        } else {
            // A plain restore of the files, then the databases as asked.
            let mut rep = holdfast_app::restore::AppRestoreReport {
                snapshot: id.short(),
                target: t.clone(),
                ..Default::default()
            };
            drop(bar);
            let code = crate::commands::restore_files(ctx, &repo, id, &snap, &a, t)?;
            r.restore_databases(&mut rep)?;
            say_databases(ctx, &rep);
            return Ok(code);
        }
    } else {
        let mut rep = holdfast_app::restore::AppRestoreReport {
            snapshot: id.short(),
            ..Default::default()
        };
        r.restore_databases(&mut rep).map(|_| rep)
    };
    drop(bar);
    let report = report?;
    if ctx.global.json {
        ctx.json(&report);
        return Ok(exit::OK);
    }
    if let Some(files) = &report.files {
        ctx.say(format!(
            "restored snapshot {} into {}: {} files ({}), {} directories",
            report.snapshot,
            report.target.display(),
            files.files,
            format::bytes(files.bytes),
            files.dirs
        ));
    }
    if let Some(p) = &report.moved_aside {
        ctx.say(format!("the previous content was moved to {}", p.display()));
    }
    for d in &report.previous_dumps {
        ctx.say(format!(
            "the previous database was dumped to {}",
            d.display()
        ));
    }
    say_databases(ctx, &report);
    if let Some(c) = &report.post_restore {
        ctx.say(format!("post-restore step ran: {c}"));
    }
    for n in &report.notes {
        ctx.say(format!("note: {n}"));
    }
    Ok(exit::OK)
}

fn say_databases(ctx: &Ctx, r: &holdfast_app::restore::AppRestoreReport) {
    for d in &r.databases_restored {
        ctx.say(format!("restored database {d}"));
    }
    for d in &r.dumps_written {
        ctx.say(format!("wrote dump {}", d.display()));
    }
}

pub fn upgrade(ctx: &Ctx, a: UpgradeArgs) -> Result<i32> {
    use holdfast_app::upgrade_marker as marker;
    let timeout = a.timeout.as_std();
    let cfg = ctx.config()?;
    let state_dir = cfg.state_dir.clone();
    // Held from the preflight to the start after the upgrade; the backup inside shares it.
    let _app_lock = holdfast_app::applock::AppLock::acquire(&state_dir, &a.app, "upgrade")?;
    let app = Resolved::new(&a.app, cfg.app(&a.app)?);
    let say = |s: &str| {
        if !(ctx.global.json || ctx.global.quiet) {
            crate::errln!("holdfast: {}: {s}", a.app);
        }
    };
    let pending = marker::read(&state_dir, &a.app);
    if a.abandon {
        let Some(m) = pending else {
            return Err(crate::usage!("no failed upgrade of {} is pending", a.app));
        };
        marker::clear(&state_dir, &a.app)?;
        ctx.say(format!(
            "abandoned the failed upgrade of {} (snapshot {} holds the state before it); the \
             service was left as it is: start it yourself once the data directory is sound",
            a.app,
            &m.snapshot[..m.snapshot.len().min(8)]
        ));
        return Ok(exit::OK);
    }
    let command: Vec<String> = a
        .command
        .iter()
        .map(|c| holdfast_app::volume::sh_quote(c))
        .collect();
    let command = command.join(" ");
    if command.is_empty() {
        return Err(crate::usage!("give the upgrade command after --"));
    }
    if a.resume && pending.is_none() {
        return Err(crate::usage!("no failed upgrade of {} to resume", a.app));
    }
    let opts = holdfast_app::upgrade::UpgradeOptions {
        command,
        timeout,
        state_dir: state_dir.clone(),
        resume: a.resume,
        cancel: &ctx.cancel,
        critical: &ctx.critical,
        on_step: &say,
    };
    let report = holdfast_app::upgrade::upgrade::<anyhow::Error>(
        &app,
        &opts,
        &mut || Ok(Box::new(ctx.open_locked(false, "upgrade")?) as Box<dyn std::any::Any>),
        &mut |stopped_here| {
            let backup = BackupArgs {
                consistency: Some(Mode::Stop),
                tag: vec![holdfast_core::retention::PRE_UPGRADE_TAG.to_string()],
                ..BackupArgs::for_app(&a.app)
            };
            // A service that was not running is found so by the backup's own status check
            // and noted as such; one stopped here is noted as stopped for the upgrade.
            let done = run_backup_app(ctx, backup, false, stopped_here)?;
            Ok((done.code, done.id))
        },
    )?;
    let (snap_id, command) = (report.pre_upgrade_snapshot, report.command);
    let version = report.version;
    if ctx.global.json {
        ctx.json(&json!({"pre_upgrade_snapshot": snap_id, "command": command, "version": version}));
    } else {
        ctx.say(format!(
            "upgraded {} to version {} (pre-upgrade snapshot {})",
            a.app,
            version.unwrap_or("unknown".into()),
            snap_id.short()
        ));
    }
    Ok(exit::OK)
}

/// The record of a run of `app` that started at `started`, with the steps said since the
/// last record; the caller fills in how it ended.
pub fn new_record(ctx: &Ctx, app: &str, kind: &str, started: DateTime<Utc>) -> RunRecord {
    RunRecord {
        start: Some(started),
        app: app.to_string(),
        kind: kind.to_string(),
        steps: ctx.take_steps(),
        ..Default::default()
    }
}

/// The run log record of a backup that started at `started` and ended with `result`.
pub fn record_for(
    ctx: &Ctx,
    app: &str,
    kind: &str,
    started: DateTime<Utc>,
    result: &Result<BackupDone>,
) -> RunRecord {
    let mut rec = new_record(ctx, app, kind, started);
    match result {
        Ok(d) => {
            rec.result = RunResult::of_exit_code(d.code);
            rec.exit_code = d.code;
            rec.snapshot = Some(d.id.clone());
            rec.bytes_added = d.bytes_added;
            rec.downtime_secs = d.downtime;
            rec.warnings = d.warnings.clone();
        }
        Err(e) => {
            rec.result = RunResult::Failure;
            rec.exit_code = exit_code(e, ctx.cancelled());
            rec.error = Some(one_line(e));
        }
    }
    rec
}

/// Starts a run through the library's [`job::start_run`] (the start ping); returns its
/// warnings, which are also said on stderr.
pub fn start_run(ctx: &Ctx, app: &str, started: DateTime<Utc>) -> Vec<String> {
    let Ok(cfg) = ctx.config() else {
        return Vec::new();
    };
    let warnings = job::start_run(cfg, app, started);
    for w in &warnings {
        crate::errln!("holdfast: warning: {w}");
    }
    warnings
}

/// Ends a run through the library's [`job::finish_run`]: hooks, run log line, metrics (with
/// the repository's numbers when it opens); what could not be written is said on stderr.
pub fn finish_run(ctx: &Ctx, rec: &mut RunRecord) {
    let Ok(cfg) = ctx.config() else { return };
    let open_repo = || ctx.open().ok();
    for w in job::finish_run(cfg, rec, ctx.global.metrics_file.as_deref(), &open_repo) {
        crate::errln!("holdfast: warning: {w}");
    }
}
