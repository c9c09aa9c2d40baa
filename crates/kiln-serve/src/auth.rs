//! Access control: the admin token for `/v1/admin/`, optional API keys for prediction routes.
//!
//! Tokens come as `Authorization: Bearer TOKEN` or `x-api-key: TOKEN`. They are compared in
//! constant time on their BLAKE3 digests (equal lengths, so not even the length leaks), and
//! never logged: a refusal logs the route and the reason only.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::config::FeedbackAccess;
use crate::error::ApiError;

/// The token a request presents, if any.
fn presented(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
            return Some(v[7..].trim());
        }
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn same(a: &str, b: &str) -> bool {
    let (a, b) = (blake3::hash(a.as_bytes()), blake3::hash(b.as_bytes()));
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

fn is_admin(state: &AppState, token: &str) -> bool {
    state
        .credentials
        .admin_token
        .as_deref()
        .is_some_and(|t| same(t, token))
}

fn is_api_key(state: &AppState, token: &str) -> bool {
    // Check every key (no early exit), so timing does not tell which one matched.
    state
        .credentials
        .api_keys
        .iter()
        .fold(false, |found, k| same(k, token) | found)
}

fn refuse(
    state: &AppState,
    scope: &str,
    status: StatusCode,
    code: &str,
    message: &str,
) -> Response {
    state
        .metrics
        .auth_failures
        .with_label_values(&[scope])
        .inc();
    tracing::warn!(target: "kiln::auth", scope, code, "request refused");
    let mut r = ApiError::new(status, code, message).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer"),
        );
    }
    r
}

enum Need {
    Admin,
    ApiKey,
}

/// `None` when the request may pass; otherwise the refusal to answer.
fn check(state: &AppState, headers: &HeaderMap, need: Need) -> Option<Response> {
    let token = presented(headers);
    match need {
        Need::Admin => {
            if state.credentials.admin_token.is_none() {
                return Some(refuse(
                    state,
                    "admin",
                    StatusCode::FORBIDDEN,
                    "admin_disabled",
                    "admin routes are off: no admin token is configured (`kiln init` writes .kiln/admin.token; or set KILN_ADMIN_TOKEN)",
                ));
            }
            match token {
                None => Some(refuse(
                    state,
                    "admin",
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "this route needs the admin token: Authorization: Bearer TOKEN",
                )),
                Some(t) if is_admin(state, t) => None,
                Some(t) if is_api_key(state, t) => Some(refuse(
                    state,
                    "admin",
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "an API key may predict but not administer; use the admin token",
                )),
                Some(_) => Some(refuse(
                    state,
                    "admin",
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "the token is not the admin token",
                )),
            }
        }
        Need::ApiKey => {
            if state.credentials.api_keys.is_empty() {
                return None;
            }
            match token {
                Some(t) if is_api_key(state, t) || is_admin(state, t) => None,
                Some(_) => Some(refuse(
                    state,
                    "predict",
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "the API key is not valid",
                )),
                None => Some(refuse(
                    state,
                    "predict",
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "this server needs an API key: Authorization: Bearer KEY or x-api-key: KEY",
                )),
            }
        }
    }
}

pub async fn require_admin(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    match check(&state, req.headers(), Need::Admin) {
        None => next.run(req).await,
        Some(r) => r,
    }
}

pub async fn require_api_key(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    match check(&state, req.headers(), Need::ApiKey) {
        None => next.run(req).await,
        Some(r) => r,
    }
}

pub async fn require_feedback_access(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let need = match state.config.auth.feedback {
        FeedbackAccess::Open => return next.run(req).await,
        FeedbackAccess::ApiKey => Need::ApiKey,
        FeedbackAccess::Admin => Need::Admin,
    };
    match check(&state, req.headers(), need) {
        None => next.run(req).await,
        Some(r) => r,
    }
}
