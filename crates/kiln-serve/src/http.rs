//! The router and the frame every request passes: request id, deadline, metrics, access log;
//! and the helpers that turn bodies, paths and queries into typed values or JSON errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::{AppState, admin, auth, dashboard, native, openapi, v2};

/// The id of the request being served (client-supplied `x-request-id`, or generated).
#[derive(Clone, Debug)]
pub struct RequestId(pub Arc<str>);

/// Which model version answered, for metrics and the access log.
#[derive(Clone, Debug)]
pub struct ServedBy {
    pub model: Arc<str>,
    pub version: Arc<str>,
}

/// Unique request ids: a random 48-bit prefix per process (so replicas do not collide) and a
/// counter.
pub struct RequestIds {
    prefix: u64,
    next: AtomicU64,
}

impl Default for RequestIds {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestIds {
    pub fn new() -> Self {
        let seed = format!(
            "{}-{}-{:?}",
            std::process::id(),
            kiln_core::now_micros(),
            std::thread::current().id()
        );
        let h = blake3::hash(seed.as_bytes());
        let mut b = [0u8; 8];
        b.copy_from_slice(&h.as_bytes()[..8]);
        Self {
            prefix: u64::from_le_bytes(b) & 0xffff_ffff_ffff,
            next: AtomicU64::new(1),
        }
    }

    pub fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{:012x}{:08x}", self.prefix, n)
    }
}

/// The id of row `i` of `n` rows of request `id`: the request's own id for one row.
pub fn row_id(id: &str, i: usize, n: usize) -> String {
    if n == 1 {
        id.to_owned()
    } else {
        format!("{id}.{i}")
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    let predict = Router::new()
        .route("/v1/models", get(native::list_models))
        .route("/", get(dashboard::page))
        .route("/v1/monitor", get(dashboard::monitor))
        .route("/v1/models/{name}/predict", post(native::predict))
        .route("/v2/models/{name}", get(v2::model_metadata))
        .route("/v2/models/{name}/ready", get(v2::model_ready))
        .route("/v2/models/{name}/infer", post(v2::infer))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(v2::version_metadata),
        )
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(v2::version_ready),
        )
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(v2::version_infer),
        );
    // Credentials are fixed when the server starts. Without API keys the layer would let every
    // request through, at the price of a boxed future and a cloned service per request.
    let predict = if state.credentials.api_keys.is_empty() {
        predict
    } else {
        predict.route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_api_key,
        ))
    };
    let feedback = Router::new()
        .route("/v1/feedback", post(native::feedback))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_feedback_access,
        ));
    let admin = Router::new()
        .route("/v1/admin/reload", post(admin::reload))
        .route(
            "/v1/admin/models/{name}/aliases/{alias}",
            post(admin::set_alias),
        )
        .route(
            "/v1/admin/models/{name}/aliases/{alias}/rollback",
            post(admin::rollback),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin,
        ));
    let open = Router::new()
        .route("/v2", get(v2::server_metadata))
        .route("/v2/health/live", get(v2::live))
        .route("/v2/health/ready", get(v2::ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi::json))
        .route("/docs", get(openapi::docs));
    Router::new()
        .merge(predict)
        .merge(feedback)
        .merge(admin)
        .merge(open)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.body_limit_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), frame))
        .with_state(state)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(
        "no_route",
        format!(
            "no route {} {}; GET /docs lists the routes",
            req.method(),
            req.uri().path()
        ),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not allowed on {}; GET /docs lists the routes",
            req.method(),
            req.uri().path()
        ),
    )
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    match state.metrics.render() {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            )],
            body,
        )
            .into_response(),
        Err(e) => ApiError::internal("cannot render the metrics", e).into_response(),
    }
}

fn valid_request_id(v: &HeaderValue) -> Option<&str> {
    let s = v.to_str().ok()?;
    (!s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic())).then_some(s)
}

/// The frame around every request.
pub async fn frame(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().clone();
    let given = req.headers().get("x-request-id");
    let id: Arc<str> = match given {
        None => state.ids.next().into(),
        Some(v) => match valid_request_id(v) {
            Some(s) => s.into(),
            None => {
                let id: Arc<str> = state.ids.next().into();
                let r = ApiError::bad_request(
                    "invalid_request_id",
                    "x-request-id must be 1 to 128 printable ASCII characters without spaces",
                )
                .field("x-request-id")
                .into_response();
                return finish(&state, &route, &method, &id, start, r);
            }
        },
    };
    req.extensions_mut().insert(RequestId(id.clone()));
    let response = match tokio::time::timeout(state.config.request_timeout(), next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the request took longer than {} ms (request_timeout_ms)",
                state.config.request_timeout_ms
            ),
        )
        .into_response(),
    };
    finish(&state, &route, &method, &id, start, response)
}

fn finish(
    state: &AppState,
    route: &str,
    method: &axum::http::Method,
    id: &str,
    start: Instant,
    mut response: Response,
) -> Response {
    if route.starts_with("/v2")
        && let Some(detail) = response.extensions().get::<crate::error::ErrorDetail>()
    {
        let status = response.status();
        let body = crate::error::V2ErrorBody::from(detail);
        response = (status, axum::Json(body)).into_response();
    }
    if let Ok(v) = HeaderValue::from_str(id) {
        response.headers_mut().insert("x-request-id", v);
    }
    let status = response.status();
    let elapsed = start.elapsed();
    let served = response.extensions().get::<ServedBy>();
    let (model, version) = match served {
        Some(s) => (&*s.model, &*s.version),
        None => ("", ""),
    };
    let m = &state.metrics;
    m.requests
        .with_label_values(&[route, status.as_str(), model, version])
        .inc();
    m.request_seconds
        .with_label_values(&[route])
        .observe(elapsed.as_secs_f64());
    if let Some(log) = &state.access {
        log.record(&crate::access::AccessLine {
            request_id: id,
            method: method.as_str(),
            route,
            status: status.as_u16(),
            model,
            version,
            micros: elapsed.as_micros() as u64,
        });
    }
    response
}

/// Parses a JSON body: 413 over the limit, 415 for a non-JSON content type, 400 for bad JSON
/// (with line and column), 422 for JSON of the wrong shape.
pub fn json_body<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    check_json_content_type(headers)?;
    let bytes = body_bytes(body)?;
    parse_json(&bytes)
}

pub fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body is larger than body_limit_bytes; send fewer rows per request",
            )
        } else {
            ApiError::bad_request("unreadable_body", format!("cannot read the body: {e}"))
        }
    })
}

pub fn check_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.get(header::CONTENT_TYPE) {
        None => Ok(()),
        Some(v) => {
            let ok = v
                .to_str()
                .map(|s| {
                    let mime = s.split(';').next().unwrap_or("").trim();
                    mime.eq_ignore_ascii_case("application/json")
                        || mime.to_ascii_lowercase().ends_with("+json")
                })
                .unwrap_or(false);
            if ok {
                Ok(())
            } else {
                Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    format!(
                        "content-type {:?} is not JSON; send application/json",
                        v.to_str().unwrap_or("?")
                    ),
                ))
            }
        }
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => ApiError::unprocessable(
                "invalid_body",
                format!("the body does not have the expected shape: {e}"),
            ),
            _ => ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}")),
        }
    })
}
