//! Entry points of the fuzz targets in `fuzz/` (`predict_body`, `infer_body`): a request body
//! through everything the server does to it once the model is chosen, without the network,
//! the store or the prediction log. Hidden: not part of the API, may change at any time.
//!
//! Each function runs the same steps, in the same order, as its handler ([`crate::native`],
//! [`crate::v2`]): parse the body, check the rows, admit them at the [`door`], score them, and
//! build what the response and the log would carry. An `Err` is the error the client would get.
//! They also check that each row's text gives the batch its parsed `Value` gives (the two
//! readers agree), and that the row's logged text reads back, as live monitoring reads it,
//! into the batch the row gives (a panic when not).

use axum::http::{HeaderMap, HeaderValue};
use serde_json::Value;

use crate::ServeConfig;
use crate::catalog::LoadedModel;
use crate::door;
use crate::error::ApiError;
use crate::http::{parse_json, row_id};
use crate::metrics::Metrics;
use crate::native::{
    PredictRequest, RowText, argmax, check_rows, compact_text, output_json, route_key,
};
use crate::v2::{InferRequest, JSON_LENGTH_HEADER, split_binary, tensors_to_rows};

/// `POST /v1/models/{name}/predict` with `body`, answered by `model`. Returns the number of
/// predictions.
pub fn predict_body(
    model: &LoadedModel,
    config: &ServeConfig,
    metrics: &Metrics,
    body: &[u8],
) -> Result<usize, ApiError> {
    let request: PredictRequest = parse_json(body)?;
    let _ = route_key(&HeaderMap::new(), request.keys.as_deref(), "fuzz");
    score_rows(
        model,
        config,
        metrics,
        &request.instances,
        request.keys.as_deref(),
    )
}

/// `POST /v2/models/{name}/infer` with `body`, answered by `model`; `json_length` is the
/// `Inference-Header-Content-Length` header (the JSON part of a body with binary tensors).
/// Returns the number of predictions.
pub fn infer_body(
    model: &LoadedModel,
    config: &ServeConfig,
    metrics: &Metrics,
    json_length: Option<&str>,
    body: &[u8],
) -> Result<usize, ApiError> {
    let mut headers = HeaderMap::new();
    if let Some(v) = json_length.and_then(|v| HeaderValue::from_str(v).ok()) {
        headers.insert(JSON_LENGTH_HEADER, v);
    }
    let (json, binary) = split_binary(&headers, body)?;
    let request: InferRequest = parse_json(json)?;
    let rows = tensors_to_rows(model, &request.inputs, binary)?;
    score_rows(model, config, metrics, &rows, None)
}

/// What `serve_rows` does to the rows of a request: checks, the door, scoring, and the
/// response's and the log's view of each row.
fn score_rows(
    model: &LoadedModel,
    config: &ServeConfig,
    metrics: &Metrics,
    rows: &[RowText],
    keys: Option<&[String]>,
) -> Result<usize, ApiError> {
    let n = rows.len();
    check_rows(config, n, keys)?;
    let texts: Vec<&str> = rows.iter().map(|r| r.get()).collect();
    for text in &texts {
        // The door reads a row's text; the same row parsed into a `Value` must give the same
        // batch, or the same errors (text serde_json cannot hold in a `Value` is left out).
        if let Ok(value) = serde_json::from_str::<Value>(text) {
            let parsed = model.batcher.batch(std::slice::from_ref(&value));
            let read = model.batcher.batch_text(std::slice::from_ref(text));
            assert!(
                parsed == read,
                "the row {text} reads as {read:?} from its text but as {parsed:?} parsed"
            );
        }
    }
    let admitted = door::admit(model, &texts, config.out_of_range, metrics)?;
    let scored = model
        .artifact
        .score(&admitted.batch)
        .map_err(|e| ApiError::internal("scoring failed", e))?;
    for (i, row) in texts.iter().enumerate() {
        let _ = row_id("fuzz", i, n);
        let _ = door::flag_strings(model, &admitted.flags[i]);
        let logged = compact_text(row);
        // Live monitoring reads the logged text back into a batch: it must be the batch the
        // row itself gives.
        if let Ok(direct) = model.batcher.batch_text(std::slice::from_ref(row)) {
            let back = model.batcher.batch_text(&[logged.as_str()]);
            assert!(
                back.as_ref().is_ok_and(|b| *b == direct),
                "the logged text {logged} reads back as {back:?}, not as {direct:?}"
            );
        }
        let _ = output_json(model, &scored.predictions, i);
    }
    if let kiln_model::learner::Predictions::Probabilities { classes, data } = &scored.predictions {
        for row in data.chunks((*classes).max(1)) {
            let _ = model.artifact.classes.get(argmax(row));
        }
    }
    Ok(n)
}
