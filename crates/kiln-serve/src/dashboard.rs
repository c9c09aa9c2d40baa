//! The live dashboard: `GET /` (one self-contained page, no network beyond this server) and
//! the JSON it polls, `GET /v1/monitor`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::AppState;
use crate::error::ApiError;
use crate::live::LiveView;

/// The page: inline CSS and script, drawing with SVG from `/v1/monitor`.
const PAGE: &str = include_str!("dashboard.html");

pub async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            // Nothing but this server: the page works offline and loads nothing from elsewhere.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:",
            ),
        ],
        PAGE,
    )
        .into_response()
}

#[derive(Serialize)]
struct ModelPanel {
    #[serde(flatten)]
    live: Option<LiveView>,
    model: String,
    version: i64,
    aliases: Vec<String>,
    alias_history: Vec<kiln_store::AliasMove>,
    /// The model's latest rollouts (shadow, canary) with their numbers and verdicts.
    rollouts: Vec<kiln_store::Rollout>,
}

#[derive(Serialize)]
struct MonitorDocument {
    generated_at: i64,
    live: bool,
    models: Vec<ModelPanel>,
    alerts: Vec<kiln_store::Alert>,
}

/// `GET /v1/monitor`: every served version with its live window, history and aliases, and the
/// alerts firing now.
pub async fn monitor(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let mut views: Vec<LiveView> = state.live.as_ref().map(|l| l.views()).unwrap_or_default();
    // An owned handle: the guard cannot be held across the store reads below.
    let catalog = Arc::clone(&state.follower.catalog());
    let mut models = Vec::new();
    for (name, slot) in &catalog.models {
        let history = state
            .store
            .meta
            .alias_history(name)
            .await
            .map_err(|e| ApiError::internal("cannot read alias history", e))?;
        let recent: Vec<_> = history.into_iter().rev().take(10).collect();
        let rollouts = state
            .store
            .meta
            .rollouts(Some(name), false, 5)
            .await
            .map_err(|e| ApiError::internal("cannot read rollouts", e))?;
        for version in slot.versions.keys() {
            let aliases = slot
                .aliases
                .iter()
                .filter(|(_, v)| *v == version)
                .map(|(a, _)| a.clone())
                .collect();
            let live = views
                .iter()
                .position(|v| &v.model == name && v.version == *version)
                .map(|i| views.swap_remove(i));
            models.push(ModelPanel {
                live,
                model: name.clone(),
                version: *version,
                aliases,
                alias_history: recent.clone(),
                rollouts: rollouts.clone(),
            });
        }
    }
    // What serves first: production, then the other aliases' versions, then versions kept
    // loaded without an alias, newest first.
    models.sort_by_key(|m| {
        let rank = if m.aliases.iter().any(|a| a == crate::native::DEFAULT_ALIAS) {
            0
        } else if m.aliases.is_empty() {
            2
        } else {
            1
        };
        (m.model.clone(), rank, std::cmp::Reverse(m.version))
    });
    let alerts = state
        .store
        .meta
        .alerts(None, true, 100)
        .await
        .map_err(|e| ApiError::internal("cannot read alerts", e))?;
    Ok(axum::Json(MonitorDocument {
        generated_at: kiln_core::now_micros(),
        live: state.live.is_some(),
        models,
        alerts,
    })
    .into_response())
}
