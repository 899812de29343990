//! Authentication for every page and API call, loopback included: any local user can reach
//! a loopback port, and the console serves every backed-up file.
//!
//! - A browser logs in with the access token (the URL printed at first start carries it) or
//!   the configured password, and gets a session cookie (HttpOnly, SameSite=Strict, Secure
//!   over TLS) and a CSRF token that every form that changes something must send back.
//! - Scripts send `Authorization: Bearer TOKEN`: enough to read, never to act (actions need a
//!   session and its CSRF token).

use std::time::{Duration, Instant};

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use holdfast_app::console_auth;

use crate::data::Fail;
use crate::state::{Session, Shared};

pub const COOKIE: &str = "holdfast_session";
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// How long a failed login holds the login gate.
const FAILED_LOGIN_PAUSE: Duration = Duration::from_secs(1);

/// Who is asking, put in the request's extensions by [`require`].
#[derive(Clone, Debug)]
pub enum Caller {
    Session { id: String, csrf: String },
    Token,
}

impl Caller {
    /// The CSRF token forms must carry (none for token callers, who cannot act).
    pub fn csrf(&self) -> Option<&str> {
        match self {
            Caller::Session { csrf, .. } => Some(csrf),
            Caller::Token => None,
        }
    }

    /// Refuses an action whose CSRF token is missing or wrong, or that comes without a session.
    pub fn check_csrf(&self, given: &str) -> Result<(), Fail> {
        match self {
            Caller::Session { csrf, .. } if console_auth::same_secret(csrf, given) => Ok(()),
            Caller::Session { .. } => Err(Fail::new(
                StatusCode::FORBIDDEN,
                "the form's CSRF token is missing or wrong: reload the page",
            )),
            Caller::Token => Err(Fail::new(
                StatusCode::FORBIDDEN,
                "actions need a logged-in session and its CSRF token, not the bearer token",
            )),
        }
    }
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn session_of(st: &Shared, headers: &HeaderMap) -> Option<Caller> {
    let id = cookie_value(headers, COOKIE)?;
    let mut sessions = st.sessions.lock().unwrap();
    let now = Instant::now();
    sessions.retain(|_, s| s.expires > now);
    let s = sessions.get(id)?;
    Some(Caller::Session {
        id: id.to_string(),
        csrf: s.csrf.clone(),
    })
}

fn bearer(st: &Shared, headers: &HeaderMap) -> Option<Caller> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = v.strip_prefix("Bearer ")?;
    console_auth::same_secret(token.trim(), &st.token).then_some(Caller::Token)
}

/// Lets a request through when it comes with a session or the bearer token; otherwise an
/// API call gets 401 and a page a redirect to the login form.
pub async fn require(State(st): State<Shared>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path == "/login" || path.starts_with("/static/") {
        return next.run(req).await;
    }
    match session_of(&st, req.headers()).or_else(|| bearer(&st, req.headers())) {
        Some(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        None if path.starts_with("/api/") => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            axum::Json(serde_json::json!({"error": "log in first: a session cookie or Authorization: Bearer TOKEN"})),
        )
            .into_response(),
        None => {
            let next_url = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into());
            Redirect::to(&format!(
                "/login?next={}",
                crate::snapshot_path::query_value(&next_url)
            ))
            .into_response()
        }
    }
}

/// Headers on every answer: no framing, no sniffing, scripts and styles from here only,
/// nothing cached (pages show backed-up data), no referrer (a login URL carries the token).
pub async fn harden(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    res
}

/// A local path to go to after logging in; anything else goes home.
fn safe_next(next: Option<&str>) -> String {
    match next {
        // Printable ASCII only: browsers drop tabs and newlines from URLs, so "/\t/evil"
        // would become "//evil", another site.
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n.into()
        }
        _ => "/".into(),
    }
}

fn start_session(st: &Shared, next: &str) -> Response {
    let id = console_auth::new_secret();
    st.sessions.lock().unwrap().insert(
        id.clone(),
        Session {
            csrf: console_auth::new_secret(),
            expires: Instant::now() + SESSION_LIFETIME,
        },
    );
    let secure = if st.secure_cookies { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_LIFETIME.as_secs()
    );
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, cookie),
            (header::LOCATION, next.to_string()),
        ],
    )
        .into_response()
}

#[derive(serde::Deserialize)]
pub struct LoginQuery {
    token: Option<String>,
    next: Option<String>,
}

/// `GET /login`: with `?token=`, logs in at once (the printed URL); otherwise the form.
pub async fn login_page(State(st): State<Shared>, Query(q): Query<LoginQuery>) -> Response {
    let next = safe_next(q.next.as_deref());
    match q.token {
        Some(t) if console_auth::same_secret(&t, &st.token) => start_session(&st, &next),
        Some(_) => (
            StatusCode::UNAUTHORIZED,
            crate::pages::login(
                &next,
                Some("That token is not this console's."),
                st.password_hash.is_some(),
            ),
        )
            .into_response(),
        None => crate::pages::login(&next, None, st.password_hash.is_some()).into_response(),
    }
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    secret: String,
    next: Option<String>,
}

/// `POST /login`: the token or the password.
pub async fn login_post(State(st): State<Shared>, Form(f): Form<LoginForm>) -> Response {
    let next = safe_next(f.next.as_deref());
    let secret = f.secret.trim().to_string();
    // One check at a time, and a pause after each failure, also for the token: guessing is
    // slow and Argon2's memory is taken once, however many requests come (no login needed
    // to send them).
    let _gate = st.login_gate.lock().await;
    let ok = console_auth::same_secret(&secret, &st.token) || {
        match st.password_hash.clone() {
            // Argon2 is slow on purpose: off the async threads.
            Some(h) => {
                tokio::task::spawn_blocking(move || console_auth::verify_password(&secret, &h))
                    .await
                    .unwrap_or(false)
            }
            None => false,
        }
    };
    if ok {
        start_session(&st, &next)
    } else {
        tracing::warn!("console: a login was refused");
        tokio::time::sleep(FAILED_LOGIN_PAUSE).await;
        (
            StatusCode::UNAUTHORIZED,
            crate::pages::login(
                &next,
                Some("Wrong token or password."),
                st.password_hash.is_some(),
            ),
        )
            .into_response()
    }
}

#[derive(serde::Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

/// `POST /logout`.
pub async fn logout(
    State(st): State<Shared>,
    axum::Extension(caller): axum::Extension<Caller>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, crate::pages::PageFail> {
    caller.check_csrf(&f.csrf)?;
    if let Caller::Session { id, .. } = &caller {
        st.sessions.lock().unwrap().remove(id);
    }
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, format!("{COOKIE}=; Path=/; Max-Age=0")),
            (header::LOCATION, "/login".to_string()),
        ],
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert_eq!(safe_next(Some("/runs?app=dss")), "/runs?app=dss");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(Some("/\t/evil.example")), "/");
        assert_eq!(safe_next(Some("/\n/evil.example")), "/");
        assert_eq!(safe_next(Some("/ok path")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
