//! The holdfast command line: parses arguments, runs one command, maps errors to exit codes.

mod app_commands;
mod cli;
mod commands;
mod context;
mod dispatch;
mod format;
mod jobs;
mod output;
mod progress;
mod reference;
mod serve;

use clap::Parser;

fn main() {
    limit_heap_growth();
    let cli = cli::Cli::parse();
    let filter = match (cli.global.quiet, cli.global.verbose) {
        (true, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HOLDFAST_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(format!(
                    "holdfast={filter},holdfast_core={filter},holdfast_app={filter}"
                ))
            }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(colour_on_stderr())
        .with_target(false)
        .without_time()
        .init();
    let ctx = context::Ctx::new(cli.global.clone());
    let code = match dispatch::run(&ctx, cli.command) {
        Ok(code) => code,
        Err(e) => {
            crate::errln!("holdfast: error: {}", context::one_line(&e));
            context::exit_code(&e, ctx.cancelled())
        }
    };
    log_requests();
    let code = match output::stdout_failure() {
        Some(e) => {
            crate::errln!(
                "holdfast: error: writing to standard output: {e}; the output is incomplete"
            );
            if code == 0 {
                holdfast_core::error::exit::FAILURE
            } else {
                code
            }
        }
        None => code,
    };
    std::process::exit(code);
}

/// Colour only for a person at a terminal: never in cron mail or journald, and never when
/// `NO_COLOR` is set to anything (https://no-color.org).
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// With `-v`, what the command asked of the repository's storage: the numbers that decide
/// speed and cost on object storage (see docs/scale.md).
fn log_requests() {
    let c = holdfast_core::storage::request_counts();
    if c.requests() > 0 {
        tracing::info!(
            "storage: {} requests ({} reads, {} writes, {} deletes, {} stats, {} list pages \
             naming {} objects); {} read, {} written",
            c.requests(),
            c.reads,
            c.writes,
            c.deletes,
            c.stats,
            c.list_pages,
            c.listed_names,
            format::bytes(c.bytes_read),
            format::bytes(c.bytes_written)
        );
    }
}

/// Pack buffers are 16 MiB. glibc raises its mmap threshold after such a buffer is freed, so
/// later ones come from the heap and stay resident; a fixed threshold returns them at once.
/// Chunk buffers (up to a few MiB, one after another on every core) come from the heap, and a
/// heap trimmed as soon as 128 KiB is free at its top (glibc's default) hands their pages back
/// to the kernel only to fault fresh zeroed ones in for the next chunk; trimming only past
/// 32 MiB keeps them (a restore spent a tenth of its time in page faults).
fn limit_heap_growth() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 8 * 1024 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 32 * 1024 * 1024);
    }
}
