//! Errors of the server: what a client is told (`ApiError`, always a JSON body) and what
//! stops the server from starting (`ServeError`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Why the server cannot start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] kiln_store::StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The body of every error response: `{"error": {...}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong, and where.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `missing_feature`, `unknown_model`, `unauthorized`.
    pub code: String,
    /// A sentence for people, often with a hint.
    pub message: String,
    /// The feature (or body field) at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// 0-based row of the request at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<usize>,
    /// Further problems of the same request (the first one is above), at most 20.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub more: Vec<ErrorItem>,
}

/// One more problem of a request.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorItem {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<usize>,
}

/// An error answered to the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: ErrorDetail,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            detail: ErrorDetail {
                code: code.to_owned(),
                message: message.into(),
                field: None,
                row: None,
                more: Vec::new(),
            },
        }
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.detail.field = Some(field.into());
        self
    }

    pub fn row(mut self, row: usize) -> Self {
        self.detail.row = Some(row);
        self
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unprocessable(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn not_found(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// A failure of the server itself: logged in full, answered without internals.
    pub fn internal(context: &str, e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{context}; the server log has the details"),
        )
    }

    /// Several problems found in one request: the first leads, the rest follow in `more`.
    pub fn from_items(status: StatusCode, mut items: Vec<ErrorItem>) -> Self {
        if items.is_empty() {
            return Self::new(status, "invalid", "the request is invalid");
        }
        let first = items.remove(0);
        items.truncate(20);
        Self {
            status,
            detail: ErrorDetail {
                code: first.code,
                message: first.message,
                field: first.field,
                row: first.row,
                more: items,
            },
        }
    }

    pub fn code(&self) -> &str {
        &self.detail.code
    }
}

impl From<kiln_store::StoreError> for ApiError {
    fn from(e: kiln_store::StoreError) -> Self {
        use kiln_store::StoreError;
        match e {
            StoreError::NotFound(m) => Self::not_found("not_found", m),
            StoreError::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            StoreError::Invalid(m) => Self::unprocessable("invalid", m),
            other => Self::internal("the store failed", other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let detail = self.detail.clone();
        let mut response = axum::Json(ErrorBody { error: self.detail }).into_response();
        *response.status_mut() = status;
        // Kept for the frame, which answers v2 routes in the protocol's own error shape.
        response.extensions_mut().insert(detail);
        response
    }
}

/// The Open Inference Protocol's error body: `error` is the message string (what v2 clients
/// such as tritonclient read); Kiln's code, field and row sit beside it.
#[derive(Debug, Serialize, ToSchema)]
pub struct V2ErrorBody {
    pub error: String,
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<usize>,
}

impl From<&ErrorDetail> for V2ErrorBody {
    fn from(d: &ErrorDetail) -> Self {
        Self {
            error: d.message.clone(),
            code: d.code.clone(),
            field: d.field.clone(),
            row: d.row,
        }
    }
}
