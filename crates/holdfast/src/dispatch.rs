//! Which module answers which command: repository commands (`commands`), application
//! procedures (`app_commands`) and scheduled operation (`jobs`). The only place that knows
//! all three, so that none of them needs another's dispatch.

use anyhow::Result;

use crate::cli::*;
use crate::context::Ctx;
use crate::{app_commands, commands, jobs, reference, serve};

pub fn run(ctx: &Ctx, cmd: Command) -> Result<i32> {
    match cmd {
        Command::Init(a) => commands::init(ctx, a),
        Command::Backup(a) if app_commands::wants_procedure(&a) && a.dry_run => {
            app_commands::backup_app_dry_run(ctx, a)
        }
        Command::Backup(a) if app_commands::wants_procedure(&a) => app_commands::backup_app(ctx, a),
        Command::Backup(a) => commands::backup_cmd(ctx, a),
        Command::Snapshots(a) if a.provider => {
            app_commands::provider_snapshots(ctx, a.app.as_deref().unwrap_or_default())
        }
        Command::Snapshots(a) => commands::snapshots(ctx, a),
        Command::Ls(a) => commands::ls(ctx, a),
        Command::Find(a) => commands::find(ctx, a),
        Command::Tag(a) => commands::tag(ctx, a),
        Command::Rewrite(a) => commands::rewrite(ctx, a),
        Command::Mount(a) => commands::mount(ctx, a),
        Command::Drill(a) => jobs::drill_cmd(ctx, a),
        Command::Diff(a) => commands::diff(ctx, a),
        Command::Restore(a)
            if a.app.is_some() || a.in_place || a.db_target.is_some() || a.dumps_to.is_some() =>
        {
            app_commands::restore_app(ctx, a)
        }
        Command::Restore(a) => commands::restore_cmd(ctx, a),
        Command::Check(a) => commands::check_cmd(ctx, a),
        Command::Repair(c) => commands::repair_cmd(ctx, c),
        Command::Stats(a) => commands::stats(ctx, a),
        Command::Key(k) => commands::key(ctx, k),
        Command::Cat(a) => commands::cat(ctx, a),
        Command::Unlock(a) => commands::unlock(ctx, a),
        Command::Forget(a) => commands::forget(ctx, a),
        Command::Prune(a) => commands::prune_cmd(ctx, a),
        Command::Export(a) => commands::export(ctx, a),
        Command::Import(a) => commands::import(ctx, a),
        Command::Config(ConfigCommand::Check) => app_commands::config_check(ctx),
        Command::Config(ConfigCommand::Init(a)) => app_commands::config_init(ctx, a),
        Command::Plan(a) => app_commands::plan(ctx, a),
        Command::Upgrade(a) => app_commands::upgrade(ctx, a),
        Command::Run(a) => jobs::run_cmd(ctx, a),
        Command::Runs(a) => jobs::runs_cmd(ctx, a),
        Command::Schedule(c) => jobs::schedule_cmd(ctx, c),
        Command::Daemon(a) => jobs::daemon_cmd(ctx, a),
        Command::Serve(a) => serve::serve_cmd(ctx, a),
        Command::Copy(a) => commands::copy_cmd(ctx, a),
        Command::Completions(a) => reference::completions(a),
        Command::Man(a) => reference::man(ctx, a),
    }
}
