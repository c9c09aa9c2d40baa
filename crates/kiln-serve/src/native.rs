//! The native JSON API: predict, feedback, and the list of served models.
//!
//! [`serve_rows`] is the one path from rows to answers for both protocols: pick the model,
//! admit the rows at the door, score them with `ModelArtifact::score` (the path training
//! evaluation and `kiln predict` use), and hand the predictions to the log.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use kiln_model::learner::Predictions;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::catalog::LoadedModel;
use crate::door;
use crate::error::{ApiError, ErrorBody};
use crate::http::{RequestId, ServedBy, json_body, row_id};
use crate::plog::{LogBatch, LogRow};

/// The alias a request without `?version=` or `?alias=` is served by.
pub const DEFAULT_ALIAS: &str = "production";

pub use kiln_store::CANARY_ALIAS;

/// The header whose value keeps a caller on one side of a canary (else the first row's key,
/// else the request id).
pub const ROUTE_KEY_HEADER: &str = "x-kiln-route-key";

/// One row of a request: the JSON text of its object, as received (checked to be JSON, not
/// yet read). The door reads it straight into the batch a model scores, and the log keeps
/// it: no `Value` map is built for a row on the way.
pub type RowText = Box<RawValue>;

/// Rows scored this many at a time or more leave the async workers.
const BLOCKING_ROWS: usize = 256;

/// Which version of the model: at most one of the two.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    /// A registered version number.
    pub version: Option<i64>,
    /// An alias (default `production`).
    pub alias: Option<String>,
}

/// Rows to score.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PredictRequest {
    /// One JSON object per row: `{feature: value}`; `null` is a missing value.
    #[schema(value_type = Vec<Object>)]
    pub instances: Vec<RowText>,
    /// Optional join keys, one per row, to match labels sent later by key.
    #[serde(default)]
    pub keys: Option<Vec<String>>,
}

/// The answer for one row.
#[derive(Debug, Serialize, ToSchema)]
pub struct RowPrediction {
    /// Id of this row's prediction (the request's id for a one-row request, `ID.i` otherwise);
    /// send it back with the label to `POST /v1/feedback`.
    pub request_id: String,
    /// Regression: the predicted value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Classification: the most likely class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Classification: each class's probability.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probabilities: Option<BTreeMap<String, f64>>,
    /// What the door noticed but accepted, e.g. `unknown_category:season`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PredictResponse {
    pub model: String,
    pub version: i64,
    /// The alias that routed the request, when one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    pub predictions: Vec<RowPrediction>,
}

/// What scoring a request produced.
pub struct Served {
    pub model: Arc<LoadedModel>,
    pub alias: Option<Arc<str>>,
    pub predictions: Predictions,
    pub row_ids: Vec<String>,
    pub flags: Vec<Vec<String>>,
}

/// Where in [0, 1) a route key falls: the same key always lands on the same side of a canary
/// share, whichever replica serves it.
pub fn route_bucket(key: &str) -> f64 {
    let h = blake3::hash(key.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    // 53 bits: exactly representable, uniform in [0, 1).
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// The route key of a request: the header, else the first row's key, else its id.
pub fn route_key<'a>(
    headers: &'a HeaderMap,
    keys: Option<&'a [String]>,
    request_id: &'a str,
) -> &'a str {
    headers
        .get(ROUTE_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .or_else(|| keys.and_then(|k| k.first()).map(String::as_str))
        .unwrap_or(request_id)
}

/// Finds the model a request asks for. A request that names neither a version nor an alias
/// goes to `production`, or to `canary` when one is served and its `route_key` falls within
/// the canary's share.
pub async fn select(
    state: &AppState,
    name: &str,
    version: Option<i64>,
    alias: Option<&str>,
    route_key: Option<&str>,
) -> Result<(Arc<LoadedModel>, Option<Arc<str>>), ApiError> {
    if version.is_some() && alias.is_some() {
        return Err(ApiError::bad_request(
            "conflicting_selection",
            "give `version` or `alias`, not both",
        ));
    }
    let catalog = state.follower.catalog();
    let Some(slot) = catalog.models.get(name) else {
        let served: Vec<&str> = catalog.models.keys().map(String::as_str).collect();
        return Err(ApiError::not_found(
            "unknown_model",
            format!(
                "no model `{name}` is served; served: {}",
                if served.is_empty() {
                    "none (give a version an alias: kiln models alias set production NAME@VERSION)"
                        .to_owned()
                } else {
                    served.join(", ")
                }
            ),
        )
        .field("name"));
    };
    if let Some(v) = version {
        if let Some(m) = slot.versions.get(&v) {
            return Ok((m.clone(), None));
        }
        drop(catalog);
        return match state.follower.version(name, v).await {
            Ok(Some(m)) => Ok((m, None)),
            Ok(None) => Err(ApiError::not_found(
                "unknown_version",
                format!("model `{name}` has no version {v}"),
            )
            .field("version")),
            Err(e) => Err(ApiError::internal(&format!("cannot load {name}@{v}"), e)),
        };
    }
    if alias.is_none()
        && let Some(key) = route_key
        && let (Some(canary), Some(production)) = (
            slot.aliases.get(CANARY_ALIAS),
            slot.aliases.get(DEFAULT_ALIAS),
        )
        && canary != production
        && let Some(m) = slot.versions.get(canary)
        && route_bucket(key) < slot.canary_share.unwrap_or(state.config.canary_share)
    {
        return Ok((m.clone(), Some(Arc::from(CANARY_ALIAS))));
    }
    let alias = alias.unwrap_or(DEFAULT_ALIAS);
    match slot.aliases.get(alias).and_then(|v| slot.versions.get(v)) {
        Some(m) => Ok((m.clone(), Some(Arc::from(alias)))),
        None => Err(ApiError::not_found(
            "unknown_alias",
            format!(
                "model `{name}` has no alias `{alias}` served here; served aliases: {}",
                slot.aliases.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        )
        .field("alias")),
    }
}

/// The version that scores a copy of a request `model` answers through `alias`: the `shadow`
/// alias's, for requests production answers, when it is another version.
pub fn shadow_of(
    state: &AppState,
    model: &LoadedModel,
    alias: Option<&str>,
) -> Option<Arc<LoadedModel>> {
    if alias != Some(DEFAULT_ALIAS) {
        return None;
    }
    let catalog = state.follower.catalog();
    let shadow = catalog.by_alias(&model.name, kiln_store::SHADOW_ALIAS)?;
    (shadow.version != model.version).then(|| shadow.clone())
}

/// Scores a copy of a request with the shadow version off the request path, and logs it under
/// the request's row ids (so labels join both) with alias `shadow`. Its answer goes nowhere;
/// a failure is counted and never reaches the caller.
pub fn score_shadow(
    state: Arc<AppState>,
    shadow: Arc<LoadedModel>,
    rows: Vec<RowText>,
    keys: Option<Vec<String>>,
    request_id: String,
    time: i64,
) {
    tokio::spawn(async move {
        let arrival = Arrival {
            request_id: &request_id,
            started: Instant::now(),
            time,
        };
        let alias: Arc<str> = Arc::from(kiln_store::SHADOW_ALIAS);
        if let Err(e) = serve_rows(&state, shadow.clone(), Some(alias), rows, keys, &arrival).await
        {
            state
                .metrics
                .shadow_failures
                .with_label_values(&[shadow.name.as_str(), &*shadow.version_label])
                .inc();
            state
                .follower
                .challenger_failed(&shadow.name, shadow.version);
            tracing::debug!(target: "kiln::rollout", model = shadow.name, version = shadow.version, error = e.code(), "shadow could not score a copy");
        }
    });
}

/// Serves `rows` with the model [`select`] chose. When that is a canary and it fails
/// (whatever the reason), production answers instead, and the failure counts against the
/// canary's rollout: a broken challenger costs its callers nothing. When production fails too,
/// its error is the answer (the request was at fault, not the canary).
pub async fn serve_routed(
    state: &AppState,
    model: Arc<LoadedModel>,
    alias: Option<Arc<str>>,
    rows: Vec<RowText>,
    keys: Option<Vec<String>>,
    arrival: &Arrival<'_>,
) -> Result<Served, ApiError> {
    if alias.as_deref() != Some(CANARY_ALIAS) {
        return serve_rows(state, model, alias, rows, keys, arrival).await;
    }
    let copy = (rows.clone(), keys.clone());
    match serve_rows(state, model.clone(), alias, rows, keys, arrival).await {
        Ok(served) => Ok(served),
        Err(canary_error) => {
            let production = state
                .follower
                .catalog()
                .by_alias(&model.name, DEFAULT_ALIAS)
                .cloned();
            let Some(production) = production else {
                return Err(canary_error);
            };
            let served = serve_rows(
                state,
                production,
                Some(Arc::from(DEFAULT_ALIAS)),
                copy.0,
                copy.1,
                arrival,
            )
            .await?;
            state.follower.challenger_failed(&model.name, model.version);
            tracing::debug!(target: "kiln::rollout", model = model.name, version = model.version, error = canary_error.code(), "canary failed; production answered");
            Ok(served)
        }
    }
}

/// When and as what a request arrived.
pub struct Arrival<'a> {
    pub request_id: &'a str,
    pub started: Instant,
    /// Microseconds since the epoch (the time the log records).
    pub time: i64,
}

/// Refuses a request with no rows, more than `max_rows` rows, or keys that do not match the
/// rows one for one (before any row is converted).
pub(crate) fn check_rows(
    config: &crate::ServeConfig,
    n: usize,
    keys: Option<&[String]>,
) -> Result<(), ApiError> {
    if n == 0 {
        return Err(ApiError::unprocessable(
            "no_rows",
            "there are no rows to score; send at least one",
        )
        .field("instances"));
    }
    if n > config.max_rows {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_rows",
            format!(
                "{n} rows in one request; the limit is {} (max_rows)",
                config.max_rows
            ),
        )
        .field("instances"));
    }
    if let Some(k) = keys
        && k.len() != n
    {
        return Err(ApiError::unprocessable(
            "keys_mismatch",
            format!("{} keys for {n} rows; give one key per row", k.len()),
        )
        .field("keys"));
    }
    Ok(())
}

/// Admits, scores and logs `rows` for `model`.
pub async fn serve_rows(
    state: &AppState,
    model: Arc<LoadedModel>,
    alias: Option<Arc<str>>,
    rows: Vec<RowText>,
    keys: Option<Vec<String>>,
    arrival: &Arrival<'_>,
) -> Result<Served, ApiError> {
    let request_id = arrival.request_id;
    let n = rows.len();
    check_rows(&state.config, n, keys.as_deref())?;
    let texts: Vec<&str> = rows.iter().map(|r| r.get()).collect();
    let admitted = door::admit(&model, &texts, state.config.out_of_range, &state.metrics)?;
    let scored = if n >= BLOCKING_ROWS {
        let m = model.clone();
        let batch = admitted.batch;
        tokio::task::spawn_blocking(move || m.artifact.score(&batch))
            .await
            .map_err(|e| ApiError::internal("scoring stopped", e))?
    } else {
        model.artifact.score(&admitted.batch)
    }
    .map_err(|e| ApiError::internal("scoring failed", e))?;
    let flags: Vec<Vec<String>> = admitted
        .flags
        .iter()
        .map(|f| door::flag_strings(&model, f))
        .collect();
    let row_ids: Vec<String> = (0..n).map(|i| row_id(request_id, i, n)).collect();
    model.predictions_total.inc_by(n as u64);
    model.rows_per_request.observe(n as f64);
    if let Some(log) = &state.log {
        let mut keys = keys.map(Vec::into_iter);
        let log_rows = texts
            .iter()
            .enumerate()
            .map(|(i, features)| LogRow {
                request_id: row_ids[i].clone(),
                key: keys.as_mut().and_then(Iterator::next),
                features: compact_text(features),
                output: output_json(&model, &scored.predictions, i),
                flags: flags[i].clone(),
            })
            .collect();
        log.submit(LogBatch {
            model: model.name_label.clone(),
            version: model.version,
            alias: alias.clone(),
            time: arrival.time,
            latency_us: arrival.started.elapsed().as_micros() as i64,
            rows: log_rows,
        })
        .await;
    }
    Ok(Served {
        model,
        alias,
        predictions: scored.predictions,
        row_ids,
        flags,
    })
}

/// `json` (valid JSON text) without the whitespace between its tokens: what the log stores
/// of a row. Only the four JSON whitespace bytes outside strings go (a string ends at a `"`
/// not escaped by a `\`), so the tokens, and what any reader reads, are unchanged; those
/// bytes are ASCII, so what is left is still UTF-8. A scan of the text costs a fraction of
/// reading it into a `Value` and writing that out again; the text between two dropped bytes is
/// copied as one slice, not byte by byte (which took 1% of a logging server's CPU).
pub(crate) fn compact_text(json: &str) -> String {
    let bytes = json.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    // `bytes[start..i]` is kept and not yet copied.
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // To the closing quote: the byte after a backslash never closes the string.
                i += 1;
                while i < bytes.len() {
                    match bytes[i] {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
                i += 1;
            }
            b' ' | b'\n' | b'\r' | b'\t' => {
                out.extend_from_slice(&bytes[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    out.extend_from_slice(&bytes[start..]);
    // Only ASCII bytes were taken out of UTF-8 text; the fallback keeps the text as it was.
    String::from_utf8(out).unwrap_or_else(|_| json.to_owned())
}

/// Row `i`'s output as the log stores it (JSON text).
pub(crate) fn output_json(model: &LoadedModel, p: &Predictions, i: usize) -> String {
    match p {
        // Written directly: a map built to be printed cost more than the rest of the row.
        Predictions::Values(v) => {
            let mut out = Vec::with_capacity(32);
            out.extend_from_slice(b"{\"value\":");
            // serde_json writes `null` for a value that is not finite; writing into a Vec
            // does not fail, the fallback only keeps the text valid JSON if it ever did.
            if serde_json::to_writer(&mut out, &v[i]).is_err() {
                out.extend_from_slice(b"null");
            }
            out.push(b'}');
            String::from_utf8(out).unwrap_or_else(|_| "{\"value\":null}".into())
        }
        Predictions::Probabilities { classes, data } => {
            let row = &data[i * classes..(i + 1) * classes];
            let best = argmax(row);
            serde_json::json!({
                "class": model.artifact.classes.get(best),
                "probabilities": row,
            })
            .to_string()
        }
    }
}

pub fn argmax(row: &[f64]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv { (i, v) } else { (bi, bv) }
        })
        .0
}

fn selection(q: Result<Query<Selection>, QueryRejection>) -> Result<Selection, ApiError> {
    q.map(|Query(s)| s).map_err(|e| {
        ApiError::bad_request(
            "invalid_query",
            format!("{}; the query takes version=N or alias=NAME", e.body_text()),
        )
    })
}

pub fn path_error(e: PathRejection) -> ApiError {
    ApiError::bad_request("invalid_path", e.body_text())
}

/// Score rows with a model.
#[utoipa::path(
    post,
    path = "/v1/models/{name}/predict",
    tag = "predict",
    params(("name" = String, Path, description = "Registered model name"), Selection),
    request_body = PredictRequest,
    responses(
        (status = 200, description = "One prediction per row, in order", body = PredictResponse),
        (status = 400, description = "Malformed request (bad JSON, path or query)", body = ErrorBody),
        (status = 401, description = "An API key is required and missing or wrong", body = ErrorBody),
        (status = 404, description = "Unknown model, version or alias", body = ErrorBody),
        (status = 413, description = "Body or row count above the limits", body = ErrorBody),
        (status = 415, description = "Content type is not JSON", body = ErrorBody),
        (status = 422, description = "A row does not fit the model's schema", body = ErrorBody),
    ),
    security((), ("api_key" = []))
)]
pub async fn predict(
    State(state): State<Arc<AppState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<Selection>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let time = event_time(&headers)?;
    let Path(name) = name.map_err(path_error)?;
    let sel = selection(query)?;
    let request: PredictRequest = json_body(&headers, body)?;
    let key = route_key(&headers, request.keys.as_deref(), &request_id);
    let (model, alias) =
        select(&state, &name, sel.version, sel.alias.as_deref(), Some(key)).await?;
    let shadow = shadow_of(&state, &model, alias.as_deref())
        .map(|s| (s, request.instances.clone(), request.keys.clone()));
    let served = serve_routed(
        &state,
        model,
        alias,
        request.instances,
        request.keys,
        &Arrival {
            request_id: &request_id,
            started,
            time,
        },
    )
    .await?;
    if let Some((shadow, rows, keys)) = shadow {
        score_shadow(
            state.clone(),
            shadow,
            rows,
            keys,
            request_id.to_string(),
            time,
        );
    }
    let classes = &served.model.artifact.classes;
    let predictions = match &served.predictions {
        Predictions::Values(v) => v
            .iter()
            .zip(served.row_ids)
            .zip(served.flags)
            .map(|((value, request_id), flags)| RowPrediction {
                request_id,
                value: Some(*value),
                class: None,
                probabilities: None,
                flags,
            })
            .collect(),
        Predictions::Probabilities { classes: k, data } => data
            .chunks(*k)
            .zip(served.row_ids)
            .zip(served.flags)
            .map(|((row, request_id), flags)| RowPrediction {
                request_id,
                value: None,
                class: classes.get(argmax(row)).cloned(),
                probabilities: Some(
                    row.iter()
                        .enumerate()
                        .map(|(c, p)| {
                            (classes.get(c).cloned().unwrap_or_else(|| c.to_string()), *p)
                        })
                        .collect(),
                ),
                flags,
            })
            .collect(),
    };
    let body = PredictResponse {
        model: served.model.name.clone(),
        version: served.model.version,
        alias: served.alias.as_deref().map(str::to_owned),
        predictions,
    };
    let mut response = axum::Json(body).into_response();
    response.extensions_mut().insert(ServedBy {
        model: served.model.name_label.clone(),
        version: served.model.version_label.clone(),
    });
    Ok(response)
}

/// A served model and its aliases.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServedModel {
    pub name: String,
    /// alias → version.
    pub aliases: BTreeMap<String, i64>,
    /// Versions loaded in memory.
    pub loaded_versions: Vec<i64>,
}

/// Models served now.
#[utoipa::path(
    get,
    path = "/v1/models",
    tag = "predict",
    responses((status = 200, body = Vec<ServedModel>), (status = 401, body = ErrorBody)),
    security((), ("api_key" = []))
)]
pub async fn list_models(State(state): State<Arc<AppState>>) -> axum::Json<Vec<ServedModel>> {
    let catalog = state.follower.catalog();
    axum::Json(
        catalog
            .models
            .iter()
            .map(|(name, slot)| ServedModel {
                name: name.clone(),
                aliases: slot.aliases.clone(),
                loaded_versions: slot.versions.keys().copied().collect(),
            })
            .collect(),
    )
}

/// A label that arrived after the prediction.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackItem {
    /// The prediction's `request_id`.
    pub request_id: Option<String>,
    /// Or the key sent with the row (`keys` in the predict request).
    pub key: Option<String>,
    /// With a key: when the labelled event happened (`YYYY-MM-DD` or `YYYY-MM-DD HH:MM:SS`,
    /// optionally with `T` and a UTC offset).
    pub time: Option<String>,
    /// The true value: a number, string or boolean.
    #[schema(value_type = Object)]
    pub label: Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FeedbackResponse {
    /// Labels stored.
    pub stored: u64,
    /// Of those, how many match a prediction already in the log (the others may match
    /// predictions still in another replica's queue, or none).
    pub matched: u64,
}

/// Record labels for earlier predictions.
#[utoipa::path(
    post,
    path = "/v1/feedback",
    tag = "predict",
    request_body = Vec<FeedbackItem>,
    responses(
        (status = 200, body = FeedbackResponse),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ),
    security((), ("api_key" = []))
)]
pub async fn feedback(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<FeedbackResponse>, ApiError> {
    let items: Vec<FeedbackItem> = json_body(&headers, body)?;
    if items.is_empty() {
        return Err(ApiError::unprocessable(
            "no_rows",
            "send at least one label",
        ));
    }
    if items.len() > state.config.max_rows {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_rows",
            format!(
                "{} labels in one request; the limit is {} (max_rows)",
                items.len(),
                state.config.max_rows
            ),
        ));
    }
    let mut records = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let bad = |code: &str, field: &str, message: String| {
            ApiError::unprocessable(code, message).field(field).row(i)
        };
        let id = item.request_id.filter(|s| !s.is_empty());
        let key = item.key.filter(|s| !s.is_empty());
        if id.is_none() && key.is_none() {
            return Err(bad(
                "missing_reference",
                "request_id",
                "a label needs the prediction's request_id, or the key sent with it".into(),
            ));
        }
        if id.as_ref().is_some_and(|s| s.len() > 160) || key.as_ref().is_some_and(|s| s.len() > 256)
        {
            return Err(bad(
                "too_long",
                "request_id",
                "request_id is at most 160 and key at most 256 characters".into(),
            ));
        }
        match &item.label {
            Value::Number(_) | Value::Bool(_) => {}
            Value::String(s) if !s.is_empty() && s.len() <= 1024 => {}
            _ => {
                return Err(bad(
                    "invalid_label",
                    "label",
                    "a label is a number, a non-empty string (at most 1024 bytes) or a boolean"
                        .into(),
                ));
            }
        }
        let time = match item.time.as_deref() {
            None => None,
            Some(t) => Some(parse_time(t).ok_or_else(|| {
                bad(
                    "invalid_time",
                    "time",
                    format!("`{t}` is not a date or time (YYYY-MM-DD or YYYY-MM-DD HH:MM:SS)"),
                )
            })?),
        };
        records.push(kiln_store::FeedbackRecord {
            request_id: id,
            key,
            time,
            label: item.label.to_string(),
        });
    }
    let outcome = state.store.meta.add_feedback(&records).await?;
    state
        .metrics
        .feedback
        .with_label_values(&["true"])
        .inc_by(outcome.matched);
    state
        .metrics
        .feedback
        .with_label_values(&["false"])
        .inc_by(outcome.stored.saturating_sub(outcome.matched));
    Ok(axum::Json(FeedbackResponse {
        stored: outcome.stored,
        matched: outcome.matched,
    }))
}

/// The header that carries a request's event time, for traffic replayed in simulated time.
pub const EVENT_TIME_HEADER: &str = "x-kiln-event-time";

/// The time the log records for a request: the `x-kiln-event-time` header when present (a
/// replay's simulated clock, which monitoring windows follow), else the server's clock.
pub fn event_time(headers: &HeaderMap) -> Result<i64, ApiError> {
    let Some(v) = headers.get(EVENT_TIME_HEADER) else {
        return Ok(kiln_core::now_micros());
    };
    v.to_str()
        .ok()
        .and_then(|s| parse_time(s.trim()))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_event_time",
                format!(
                    "the {EVENT_TIME_HEADER} header is not a date or time (YYYY-MM-DD or YYYY-MM-DD HH:MM:SS, UTC)"
                ),
            )
            .field(EVENT_TIME_HEADER)
        })
}

fn parse_time(s: &str) -> Option<i64> {
    kiln_core::value::parse_timestamp(s)
        .or_else(|| kiln_core::value::parse_date(s).map(|d| i64::from(d) * 86_400_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_text_drops_whitespace_between_tokens_only() {
        let cases = [
            (r#"{"a":1,"b":"x"}"#, r#"{"a":1,"b":"x"}"#),
            (
                "{ \"temp\" : 0.5 ,\n\t\"season\": \"late  summer\" ,\r\n \"x\": [ 1, 2 ] }",
                r#"{"temp":0.5,"season":"late  summer","x":[1,2]}"#,
            ),
            // Escaped quotes and backslashes do not end a string; spaces after them stay.
            (
                r#"{"note": "say \"a b\" \\ c d", "é": " é "}"#,
                r#"{"note":"say \"a b\" \\ c d","é":" é "}"#,
            ),
            (r#"{"s": "\\", "t": " "}"#, r#"{"s":"\\","t":" "}"#),
        ];
        for (text, want) in cases {
            let got = compact_text(text);
            assert_eq!(got, want);
            // The same JSON value, read either way.
            let a: Value = serde_json::from_str(text).unwrap();
            let b: Value = serde_json::from_str(&got).unwrap();
            assert_eq!(a, b);
        }
    }

    /// The span-copying scan against the plain byte-by-byte state machine it replaced, on
    /// every text of up to 6 characters from an alphabet of the bytes that matter (truncated
    /// strings and dangling backslashes included: no panic, the same answer).
    #[test]
    fn compact_text_matches_a_byte_by_byte_scan() {
        fn reference(json: &str) -> String {
            let mut out = Vec::new();
            let (mut in_string, mut escaped) = (false, false);
            for &b in json.as_bytes() {
                if in_string {
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_string = false;
                    }
                } else if b == b'"' {
                    in_string = true;
                } else if matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
                    continue;
                }
                out.push(b);
            }
            String::from_utf8(out).unwrap()
        }
        let alphabet = ['"', '\\', ' ', '\n', 'a', 'é'];
        let mut texts = vec![String::new()];
        let mut checked = 0;
        for _ in 0..6 {
            let mut longer = Vec::with_capacity(texts.len() * alphabet.len());
            for t in &texts {
                for c in alphabet {
                    let mut u = t.clone();
                    u.push(c);
                    assert_eq!(compact_text(&u), reference(&u), "{u:?}");
                    checked += 1;
                    longer.push(u);
                }
            }
            texts = longer;
        }
        assert_eq!(checked, (1..=6).map(|k| 6_usize.pow(k)).sum::<usize>());
    }

    #[test]
    fn rows_are_kept_as_received() {
        let request: PredictRequest =
            serde_json::from_str(r#"{"instances": [ {"a": 1.50, "b": "x y"}, {"a": null} ]}"#)
                .unwrap();
        let texts: Vec<&str> = request.instances.iter().map(|r| r.get()).collect();
        assert_eq!(texts, [r#"{"a": 1.50, "b": "x y"}"#, r#"{"a": null}"#]);
    }
}
