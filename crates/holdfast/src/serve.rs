//! `holdfast serve`: settings from `[console]` and the flags, the access token, the
//! repository, then the web console of `holdfast-web`.

use std::ffi::OsString;
use std::io::IsTerminal;

use anyhow::{Context, Result};
use holdfast_app::config::ConsoleConfig;
use holdfast_app::console_auth;
use holdfast_core::error::exit;
use serde_json::json;

use crate::cli::ServeArgs;
use crate::context::Ctx;

pub fn serve_cmd(ctx: &Ctx, a: ServeArgs) -> Result<i32> {
    if a.hash_password {
        return hash_password(ctx);
    }
    let cfg = ctx.config()?;
    let settings = cfg.console.overridden(a.as_console());
    let listen = settings
        .listen
        .unwrap_or_else(|| ConsoleConfig::DEFAULT_LISTEN.parse().expect("valid"));
    let tls = settings.tls_cert.clone().zip(settings.tls_key.clone());
    holdfast_web::check_listen(&listen, tls.is_some(), settings.insecure_http)
        .map_err(|e| crate::usage!("{e}"))?;
    let token_file = settings
        .token_file
        .clone()
        .unwrap_or_else(|| cfg.state_dir.join("console-token"));
    let (token, created) = console_auth::load_or_create_token(&token_file)?;
    let repo = ctx.open()?;
    repo.load_index()?;
    let json_out = ctx.global.json;
    let quiet = ctx.global.quiet;
    let read_only = settings.read_only;
    let token_shown = token.clone();
    let file_shown = token_file.clone();
    let on_listening = Box::new(move |addr: std::net::SocketAddr, https: bool| {
        let base = format!("{}://{addr}", if https { "https" } else { "http" });
        if json_out {
            crate::outln!(
                "{}",
                json!({"listening": format!("{base}/"), "token_file": file_shown, "read_only": read_only})
            );
            return;
        }
        if quiet {
            return;
        }
        crate::errln!(
            "holdfast: console at {base}/{}",
            if read_only { " (read-only)" } else { "" }
        );
        // The login URL carries the token: shown to a person at a terminal, never into a log
        // (a journal is read by more people than the 0600 token file).
        if std::io::stderr().is_terminal() {
            crate::errln!("holdfast: log in at {base}/login?token={token_shown}");
        } else {
            crate::errln!(
                "holdfast: log in with the {}token in {}",
                if created { "new " } else { "" },
                file_shown.display()
            );
        }
    });
    let opts = holdfast_web::ServeOptions {
        listen,
        tls,
        insecure_http: settings.insecure_http,
        read_only,
        token,
        password_hash: settings.password_hash.clone(),
        grace: settings
            .grace
            .map(|g| g.as_chrono())
            .unwrap_or(holdfast_app::overview::DEFAULT_GRACE),
        child: child_command(ctx)?,
        cancel: ctx.cancel.clone(),
        on_listening,
    };
    match holdfast_web::serve(repo, cfg.clone(), opts) {
        Ok(()) => Ok(exit::OK),
        Err(holdfast_web::ServeError::Usage(m)) => Err(crate::usage!("{m}")),
        Err(e) => Err(anyhow::anyhow!("console: {e}")),
    }
}

/// How an action runs holdfast: this executable, with the options this console was given
/// (as their environment variables, so they never show in `ps`).
fn child_command(ctx: &Ctx) -> Result<holdfast_web::ChildCommand> {
    let g = &ctx.global;
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    let mut put = |k: &str, v: Option<OsString>| {
        if let Some(v) = v {
            env.push((k.into(), v));
        }
    };
    put("HOLDFAST_CONFIG", g.config.clone().map(Into::into));
    put("HOLDFAST_REPO", g.repo.clone().map(Into::into));
    put(
        "HOLDFAST_S3_ENDPOINT",
        g.s3_endpoint.clone().map(Into::into),
    );
    put("HOLDFAST_S3_REGION", g.s3_region.clone().map(Into::into));
    put(
        "HOLDFAST_PASSWORD_FILE",
        g.password_file.clone().map(Into::into),
    );
    put(
        "HOLDFAST_PASSWORD_COMMAND",
        g.password_command.clone().map(Into::into),
    );
    put(
        "HOLDFAST_METRICS_FILE",
        g.metrics_file.clone().map(Into::into),
    );
    let mut args: Vec<OsString> = Vec::new();
    if g.s3_virtual_host_style {
        args.push("--s3-virtual-host-style".into());
    }
    if g.no_cache {
        args.push("--no-cache".into());
    }
    Ok(holdfast_web::ChildCommand {
        exe: std::env::current_exe().context("finding holdfast's own executable")?,
        args,
        env,
    })
}

fn hash_password(ctx: &Ctx) -> Result<i32> {
    let password = if std::io::stdin().is_terminal() {
        let first = crate::context::prompt("console password: ")?;
        let again = crate::context::prompt("again: ")?;
        if first != again {
            return Err(crate::usage!("the two passwords differ"));
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    if password.len() < 8 {
        return Err(crate::usage!(
            "a console password has at least 8 characters"
        ));
    }
    let hash = console_auth::hash_password(&password)?;
    if ctx.global.json {
        ctx.json(&json!({ "password_hash": hash }));
    } else {
        crate::outln!("{hash}");
    }
    Ok(exit::OK)
}
