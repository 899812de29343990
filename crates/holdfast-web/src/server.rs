//! Listening: the router, plain HTTP on loopback (or when explicitly allowed), HTTPS with
//! the configured certificate, and a clean stop that lets running actions finish.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use holdfast_app::config::Config;
use holdfast_core::Repository;

use crate::state::{AppState, Shared};
use crate::{api, auth, pages};

/// How to run holdfast itself for an action: the executable, the global options the console
/// was started with, and environment to add.
#[derive(Clone, Debug, Default)]
pub struct ChildCommand {
    pub exe: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
}

pub struct ServeOptions {
    pub listen: SocketAddr,
    /// PEM certificate chain and private key.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub insecure_http: bool,
    pub read_only: bool,
    pub token: String,
    pub password_hash: Option<String>,
    pub grace: chrono::Duration,
    pub child: ChildCommand,
    /// Set to stop serving (a signal).
    pub cancel: Arc<AtomicBool>,
    /// Told the address actually bound (port 0 picks one) and whether it is HTTPS.
    pub on_listening: Box<dyn FnOnce(SocketAddr, bool) + Send>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The options are refused (exit code 2).
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Io(String),
}

/// Refuses plain HTTP on an address other than loopback unless asked for.
pub fn check_listen(addr: &SocketAddr, tls: bool, insecure_http: bool) -> Result<(), ServeError> {
    if addr.ip().is_loopback() || tls || insecure_http {
        return Ok(());
    }
    Err(ServeError::Usage(format!(
        "{addr} is not a loopback address: the console serves every backed-up file, so it needs \
         tls_cert and tls_key there (or --insecure-http behind a TLS proxy)"
    )))
}

/// How long open connections (a download) may go on once the console stops.
const CONNECTIONS_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a client has to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/", get(pages::overview))
        .route("/runs", get(pages::runs))
        .route("/runs/{id}", get(pages::run))
        .route("/snapshots", get(pages::snapshots))
        .route(
            "/snapshots/",
            get(|| async { axum::response::Redirect::to("/snapshots") }),
        )
        .route("/snapshots/{*rest}", get(pages::snapshot_any))
        .route("/diff", get(pages::diff))
        .route("/jobs/{id}", get(pages::job))
        .route("/actions/{app}/{kind}", post(pages::action))
        .route("/login", get(auth::login_page).post(auth::login_post))
        .route("/logout", post(auth::logout))
        .route("/static/console.js", get(pages::script))
        .route("/static/console.css", get(pages::style))
        .route("/api/overview", get(api::overview))
        .route("/api/runs", get(api::runs))
        .route("/api/runs/{id}", get(api::run))
        .route("/api/snapshots", get(api::snapshots))
        .route("/api/snapshots/{*rest}", get(api::snapshot_any))
        .route("/api/diff", get(api::diff))
        .route("/api/jobs", get(api::jobs))
        .route("/api/jobs/{id}", get(api::job))
        .route("/api/jobs/{id}/events", get(api::job_events))
        .route("/api/actions/{app}/{kind}", post(api::action))
        .route("/api/{*rest}", axum::routing::any(api::not_found))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require,
        ))
        .layer(axum::middleware::from_fn(auth::harden))
        .with_state(state)
}

/// Serves the console until `opts.cancel` is set; then waits for running actions to end.
pub fn serve(repo: Arc<Repository>, config: Config, opts: ServeOptions) -> Result<(), ServeError> {
    check_listen(&opts.listen, opts.tls.is_some(), opts.insecure_http)?;
    let tls = match &opts.tls {
        Some((cert, key)) => Some(tls_acceptor(cert, key)?),
        None => None,
    };
    let state = Arc::new(AppState {
        repo,
        config,
        hostname: holdfast_core::host::hostname(),
        read_only: opts.read_only,
        // Behind a TLS proxy (--insecure-http) the browser speaks HTTPS too.
        secure_cookies: tls.is_some() || opts.insecure_http,
        login_gate: Default::default(),
        stopping: Default::default(),
        shutdown: tokio::sync::watch::channel(false).0,
        grace: opts.grace,
        token: opts.token,
        password_hash: opts.password_hash,
        sessions: Default::default(),
        jobs: Default::default(),
        child: opts.child,
        runs_cache: Default::default(),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| ServeError::Io(format!("starting the server: {e}")))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .map_err(|e| ServeError::Io(format!("listening on {}: {e}", opts.listen)))?;
        let bound = listener
            .local_addr()
            .map_err(|e| ServeError::Io(e.to_string()))?;
        (opts.on_listening)(bound, tls.is_some());
        // On a stop: no new action, running ones told to stop and waited for (a backup in
        // stop mode starts its application again first), then live streams end and the
        // connections get a few seconds to finish.
        let cancel = opts.cancel.clone();
        let st = state.clone();
        let jobs_done = tokio::spawn(async move {
            while !cancel.load(Ordering::SeqCst) {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            st.stopping.store(true, Ordering::SeqCst);
            st.jobs.stop_all().await;
            st.shutdown.send_replace(true);
        });
        let stopped = state.stopped();
        let app = router(state.clone());
        let serving = async move {
            match tls {
                None => axum::serve(listener, app)
                    .with_graceful_shutdown(stopped)
                    .await
                    .map_err(|e| ServeError::Io(e.to_string())),
                Some(acceptor) => {
                    serve_tls(listener, acceptor, app, stopped).await;
                    Ok(())
                }
            }
        };
        let stopping = state.stopped();
        let grace_over = async move {
            stopping.await;
            tokio::time::sleep(CONNECTIONS_GRACE).await;
        };
        tokio::select! {
            r = serving => r?,
            _ = grace_over => tracing::info!("console: stopped with downloads still open"),
        }
        let _ = jobs_done.await;
        Ok(())
    })
}

fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, ServeError> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &std::path::Path, e: &dyn std::fmt::Display| {
        ServeError::Usage(format!("{}: {e}", what.display()))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(cert, &e))?;
    if certs.is_empty() {
        return Err(bad(cert, &"no certificate in this PEM file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Usage(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| bad(cert, &e))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn serve_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    stopped: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::service::TowerToHyperService;
    tokio::pin!(stopped);
    loop {
        let (tcp, _) = tokio::select! {
            _ = &mut stopped => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("console: accept: {e}");
                    continue;
                }
            },
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!("console: TLS handshake: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!("console: TLS handshake timed out");
                    return;
                }
            };
            let service = TowerToHyperService::new(app);
            if let Err(e) = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!("console: connection: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_on_loopback_unless_asked() {
        let lo: SocketAddr = "127.0.0.1:8420".parse().unwrap();
        let lo6: SocketAddr = "[::1]:8420".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8420".parse().unwrap();
        assert!(check_listen(&lo, false, false).is_ok());
        assert!(check_listen(&lo6, false, false).is_ok());
        assert!(matches!(
            check_listen(&any, false, false),
            Err(ServeError::Usage(_))
        ));
        assert!(check_listen(&any, true, false).is_ok());
        assert!(check_listen(&any, false, true).is_ok());
    }
}
