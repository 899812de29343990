//! The holdfast command line: parses arguments, runs one command, maps errors to exit codes.

mod app_commands;
mod cli;
mod commands;
mod context;
mod format;
mod progress;

use clap::Parser;

use holdfast_core::error::exit;

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
        .with_target(false)
        .without_time()
        .init();
    let ctx = context::Ctx::new(cli.global.clone());
    let code = match commands::run(&ctx, cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("holdfast: error: {}", one_line(&e));
            e.chain()
                .find_map(|c| {
                    c.downcast_ref::<holdfast_app::Error>()
                        .map(|a| a.exit_code())
                        .or_else(|| {
                            c.downcast_ref::<holdfast_core::Error>()
                                .map(|c| c.exit_code())
                        })
                })
                .unwrap_or(if ctx.cancelled() {
                    exit::INTERRUPTED
                } else {
                    exit::FAILURE
                })
        }
    };
    std::process::exit(code);
}

/// The error and its causes on one line, without repeating a cause its parent already quotes.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for c in e.chain() {
        let s = c.to_string();
        if out.contains(&s) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s);
    }
    out.replace('\n', " ")
}

/// Pack buffers are 16 MiB. glibc raises its mmap threshold after such a buffer is freed, so
/// later ones come from the heap and stay resident; a fixed threshold returns them at once.
fn limit_heap_growth() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 8 * 1024 * 1024);
    }
}
