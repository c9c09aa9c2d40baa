//! Admin routes (`/v1/admin/`, admin token only): reload now, move an alias, roll it back.
//!
//! Alias moves go through the same compare-and-set as `kiln models alias set`, are recorded
//! in the alias history with their reason (actor `api`), and take effect on this server at
//! once; other replicas follow within their poll interval.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::catalog::SyncReport;
use crate::error::{ApiError, ErrorBody};
use crate::http::json_body;
use crate::native::path_error;

/// Re-read the registry now (versions that failed to load are tried again).
#[utoipa::path(
    post,
    path = "/v1/admin/reload",
    tag = "admin",
    responses(
        (status = 200, body = SyncReport),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)
    ),
    security(("admin_token" = []))
)]
pub async fn reload(
    State(state): State<Arc<AppState>>,
) -> Result<axum::Json<SyncReport>, ApiError> {
    Ok(axum::Json(state.follower.reload().await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AliasMoveRequest {
    /// The version the alias should point to.
    pub version: i64,
    /// Why (kept in the alias history).
    pub reason: String,
    /// Move only if the alias is at this revision now (optimistic concurrency).
    pub expect_revision: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AliasState {
    pub model: String,
    pub alias: String,
    pub version: i64,
    pub revision: i64,
    /// The version this server serves for the alias now (the new one, unless it failed to
    /// load; then `reload.failed` says why).
    pub served_version: Option<i64>,
    /// What this server changed when it re-read the registry.
    pub reload: SyncReport,
}

fn check_names(model: &str, alias: &str) -> Result<(), ApiError> {
    kiln_core::names::validate_name("model", model)
        .map_err(|e| ApiError::bad_request("invalid_name", e.to_string()).field("name"))?;
    kiln_core::names::validate_name("alias", alias)
        .map_err(|e| ApiError::bad_request("invalid_name", e.to_string()).field("alias"))
}

fn check_reason(reason: &str) -> Result<(), ApiError> {
    if reason.trim().is_empty() || reason.len() > 1000 {
        return Err(ApiError::unprocessable(
            "invalid_reason",
            "give a reason of 1 to 1000 characters; it is kept in the alias history",
        )
        .field("reason"));
    }
    Ok(())
}

/// Re-reads the registry after a move, so this server serves it at once.
async fn applied(
    state: &AppState,
    model: String,
    alias: String,
    moved: kiln_store::Alias,
) -> Result<axum::Json<AliasState>, ApiError> {
    let reload = state.follower.sync().await?;
    let served_version = state
        .follower
        .catalog()
        .by_alias(&model, &alias)
        .map(|m| m.version);
    Ok(axum::Json(AliasState {
        model,
        alias,
        version: moved.version,
        revision: moved.revision,
        served_version,
        reload,
    }))
}

/// Point an alias at a version.
#[utoipa::path(
    post,
    path = "/v1/admin/models/{name}/aliases/{alias}",
    tag = "admin",
    params(("name" = String, Path), ("alias" = String, Path)),
    request_body = AliasMoveRequest,
    responses(
        (status = 200, body = AliasState),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)
    ),
    security(("admin_token" = []))
)]
pub async fn set_alias(
    State(state): State<Arc<AppState>>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<AliasState>, ApiError> {
    let Path((model, alias)) = path.map_err(path_error)?;
    check_names(&model, &alias)?;
    let request: AliasMoveRequest = json_body(&headers, body)?;
    check_reason(&request.reason)?;
    let expect = match request.expect_revision {
        Some(r) => kiln_store::Expect::Revision(r),
        None => kiln_store::Expect::Any,
    };
    let moved = state
        .store
        .meta
        .set_alias(
            &model,
            &alias,
            request.version,
            expect,
            &request.reason,
            "api",
        )
        .await?;
    applied(&state, model, alias, moved).await
}

/// Move an alias back to the version it pointed to before.
#[utoipa::path(
    post,
    path = "/v1/admin/models/{name}/aliases/{alias}/rollback",
    tag = "admin",
    params(("name" = String, Path), ("alias" = String, Path)),
    request_body = RollbackRequest,
    responses(
        (status = 200, body = AliasState),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)
    ),
    security(("admin_token" = []))
)]
pub async fn rollback(
    State(state): State<Arc<AppState>>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<AliasState>, ApiError> {
    let Path((model, alias)) = path.map_err(path_error)?;
    check_names(&model, &alias)?;
    let request: RollbackRequest = json_body(&headers, body)?;
    check_reason(&request.reason)?;
    let moved = state
        .store
        .meta
        .rollback_alias(&model, &alias, &request.reason, "api")
        .await?;
    applied(&state, model, alias, moved).await
}
