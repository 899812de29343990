//! Shell completions and man pages, generated from the same clap definitions that parse the
//! command line, so they cannot drift from what the binary accepts.

use anyhow::{Context, Result};
use clap::CommandFactory;
use holdfast_core::error::exit;
use serde_json::json;

use crate::cli::{Cli, CompletionsArgs, ManArgs};
use crate::context::Ctx;

pub fn completions(a: CompletionsArgs) -> Result<i32> {
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut Cli::command(), "holdfast", &mut script);
    // Through the output layer: a closed pipe ends the command quietly, never a panic.
    crate::out!("{}", String::from_utf8_lossy(&script));
    Ok(exit::OK)
}

pub fn man(ctx: &Ctx, a: ManArgs) -> Result<i32> {
    std::fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    clap_mangen::generate_to(Cli::command(), &a.dir)
        .with_context(|| format!("writing man pages into {}", a.dir.display()))?;
    let mut pages: Vec<String> = std::fs::read_dir(&a.dir)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("holdfast") && n.ends_with(".1"))
        .collect();
    pages.sort();
    if ctx.global.json {
        ctx.json(&json!({"dir": a.dir, "pages": pages}));
    } else {
        ctx.say(format!(
            "{} man pages written to {} (man holdfast, man holdfast-backup, ...)",
            pages.len(),
            a.dir.display()
        ));
    }
    Ok(exit::OK)
}
