//! The HTTP side: the routes, the guard every request passes (the token when one is set,
//! and headers that keep the browser from loading or framing anything else), sign-in, the
//! embedded assets, and serving on a listener.

use super::access;
use super::actions;
use super::pages;
use super::state::UiState;
use askama::Template;
use axum::Router;
use axum::extract::{Form, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use std::sync::Arc;

const CSS: &str = include_str!("assets/ui.css");
const JS: &str = include_str!("assets/ui.js");

/// The browser loads scripts, styles and requests from this server only, and nothing
/// may frame the pages: even a value that escaped escaping could not run a script.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn router(state: Arc<UiState>) -> Router {
    let mut r = Router::new();
    if state.daemon.is_some() {
        r = r
            .route("/metrics", get(metrics))
            .route("/health", get(health));
    }
    if state.actions.is_some() {
        r = r
            .route("/jobs/{job}/partitions/{key}/run", post(actions::rerun))
            .route("/backfill", post(actions::backfill))
            .route("/tables/{table}/flip", post(actions::flip));
    }
    r.route("/", get(pages::grid))
        .route("/jobs/{job}", get(pages::job))
        .route("/jobs/{job}/partitions/{key}", get(pages::partition))
        .route("/tables/{table}", get(pages::table))
        .route("/tables/{table}/diff", get(pages::diff))
        .route("/login", get(login_form).post(login))
        .route(
            "/assets/ui.css",
            get(|| async { asset("text/css; charset=utf-8", CSS) }),
        )
        .route(
            "/assets/ui.js",
            get(|| async { asset("text/javascript; charset=utf-8", JS) }),
        )
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// Every request: signed in (when a token is set) or sent to sign in; every response: the
/// headers that confine the browser.
async fn guard(State(ui): State<Arc<UiState>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    // /health says only whether the daemon runs, for probes that carry no token.
    let open = path == "/login" || path == "/health" || path.starts_with("/assets/");
    let mut response = if open || ui.access.allows(req.headers()) {
        next.run(req).await
    } else {
        let page = LoginPage { wrong: false };
        (
            StatusCode::UNAUTHORIZED,
            Html(page.render().unwrap_or_default()),
        )
            .into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn metrics(State(ui): State<Arc<UiState>>) -> Response {
    let text = ui.daemon.as_ref().map(|m| m.render()).unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn health(State(ui): State<Arc<UiState>>) -> Response {
    let (code, body) = ui
        .daemon
        .as_ref()
        .map(|m| m.health())
        .unwrap_or((200, String::new()));
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    wrong: bool,
}

async fn login_form() -> Response {
    Html(LoginPage { wrong: false }.render().unwrap_or_default()).into_response()
}

#[derive(serde::Deserialize)]
struct SignIn {
    token: String,
}

async fn login(State(ui): State<Arc<UiState>>, Form(f): Form<SignIn>) -> Response {
    if !ui.access.is_token(&f.token) {
        let page = LoginPage { wrong: true };
        return (
            StatusCode::UNAUTHORIZED,
            Html(page.render().unwrap_or_default()),
        )
            .into_response();
    }
    let cookie = format!(
        "{}={}; Path=/; HttpOnly; SameSite=Strict",
        access::COOKIE,
        ui.access.session_proof()
    );
    let mut r = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// Serves the pages on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, app: Router) -> std::io::Result<()> {
    axum::serve(listener, app).await
}
