//! The Open Inference Protocol (KServe v2) over HTTP: health, server and model metadata,
//! readiness and `infer` with typed tensors, including the binary tensor extension that
//! clients such as `tritonclient` use by default.
//!
//! A model's inputs are its features, one tensor each (shape `[N]` or `[N, 1]`; numeric →
//! FP64 (any integer or float type is accepted), categorical, text, date and time → BYTES,
//! boolean → BOOL). Alternatively one 2-D tensor `[N, F]` holds every feature in schema
//! order (BYTES, or a numeric type when every feature is numeric or boolean). Tensors become
//! the same rows the native API takes, so both protocols share one conversion and one door.
//! Outputs: `predictions` (FP64 `[N]`) for regressors; `class` (BYTES `[N]`) and
//! `probabilities` (FP64 `[N, C]`) for classifiers; and `request_id` (BYTES `[N]`), the id
//! to send labels back with.

use std::sync::Arc;
use std::time::Instant;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use kiln_core::schema::FeatureType;
use kiln_model::learner::Predictions;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::AppState;
use crate::catalog::LoadedModel;
use crate::error::{ApiError, V2ErrorBody};
use crate::http::{RequestId, ServedBy, body_bytes, parse_json};
use crate::native::{
    Arrival, RowText, argmax, path_error, route_key, score_shadow, select, serve_routed, shadow_of,
};

/// The binary tensor extension's header: length of the JSON part of the body.
pub(crate) const JSON_LENGTH_HEADER: &str = "inference-header-content-length";

#[derive(Debug, Serialize, ToSchema)]
pub struct ServerMetadata {
    pub name: String,
    pub version: String,
    pub extensions: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Liveness {
    pub live: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelReadiness {
    pub name: String,
    pub ready: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TensorMetadata {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelMetadata {
    pub name: String,
    pub versions: Vec<String>,
    pub platform: String,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct InferRequest {
    pub id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
    pub inputs: Vec<InferInput>,
    pub outputs: Option<Vec<RequestedOutput>>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct InferInput {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: String,
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
    /// Row-major elements, flat or nested; absent when the tensor is sent as binary data.
    #[schema(value_type = Option<Vec<Object>>)]
    pub data: Option<Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RequestedOutput {
    pub name: String,
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OutputTensor {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
    #[schema(value_type = Vec<Object>)]
    pub data: Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InferResponse {
    pub model_name: String,
    pub model_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub outputs: Vec<OutputTensor>,
}

/// Server metadata.
#[utoipa::path(get, path = "/v2", tag = "v2", responses((status = 200, body = ServerMetadata)))]
pub async fn server_metadata() -> axum::Json<ServerMetadata> {
    axum::Json(ServerMetadata {
        name: "kiln".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        extensions: vec!["binary_tensor_data".into()],
    })
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/v2/health/live", tag = "v2", responses((status = 200, body = Liveness)))]
pub async fn live() -> axum::Json<Liveness> {
    axum::Json(Liveness { live: true })
}

/// Readiness: the registry was read and at least one model is served.
#[utoipa::path(
    get,
    path = "/v2/health/ready",
    tag = "v2",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness))
)]
pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let reason = if !state.follower.is_ready() {
        Some("the registry has not been read yet".to_owned())
    } else if state.follower.catalog().models.is_empty() {
        Some(format!(
            "no model is served: no model has any of the aliases {}",
            state.config.aliases.join(", ")
        ))
    } else {
        None
    };
    let status = if reason.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(Readiness {
            ready: reason.is_none(),
            reason,
        }),
    )
        .into_response()
}

fn parse_version(v: &str) -> Result<i64, ApiError> {
    v.parse::<i64>().ok().filter(|v| *v >= 1).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_version",
            format!("`{v}` is not a version number (1, 2, ...)"),
        )
        .field("version")
    })
}

fn metadata(model: &LoadedModel, versions: Vec<String>) -> ModelMetadata {
    let inputs = model
        .artifact
        .schema
        .columns
        .iter()
        .map(|c| TensorMetadata {
            name: c.name.clone(),
            datatype: match c.ftype {
                FeatureType::Numeric => "FP64",
                FeatureType::Boolean => "BOOL",
                _ => "BYTES",
            }
            .into(),
            shape: vec![-1],
        })
        .collect();
    let mut outputs = Vec::new();
    if model.artifact.classes.is_empty() {
        outputs.push(tensor_meta("predictions", "FP64", vec![-1]));
    } else {
        outputs.push(tensor_meta("class", "BYTES", vec![-1]));
        outputs.push(tensor_meta(
            "probabilities",
            "FP64",
            vec![-1, model.artifact.classes.len() as i64],
        ));
    }
    outputs.push(tensor_meta("request_id", "BYTES", vec![-1]));
    ModelMetadata {
        name: model.name.clone(),
        versions,
        platform: "kiln".into(),
        inputs,
        outputs,
    }
}

fn tensor_meta(name: &str, datatype: &str, shape: Vec<i64>) -> TensorMetadata {
    TensorMetadata {
        name: name.into(),
        datatype: datatype.into(),
        shape,
    }
}

async fn metadata_of(
    state: &AppState,
    name: &str,
    version: Option<i64>,
) -> Result<Response, ApiError> {
    let (model, _) = select(state, name, version, None, None).await?;
    let versions = state
        .follower
        .catalog()
        .models
        .get(name)
        .map(|s| s.versions.keys().map(|v| v.to_string()).collect())
        .unwrap_or_default();
    Ok(axum::Json(metadata(&model, versions)).into_response())
}

/// Model metadata (the `production` version).
#[utoipa::path(
    get,
    path = "/v2/models/{name}",
    tag = "v2",
    params(("name" = String, Path)),
    responses((status = 200, body = ModelMetadata), (status = 404, body = V2ErrorBody)),
    security((), ("api_key" = []))
)]
pub async fn model_metadata(
    State(state): State<Arc<AppState>>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(name) = name.map_err(path_error)?;
    metadata_of(&state, &name, None).await
}

/// Metadata of one model version.
#[utoipa::path(
    get,
    path = "/v2/models/{name}/versions/{version}",
    tag = "v2",
    params(("name" = String, Path), ("version" = String, Path)),
    responses(
        (status = 200, body = ModelMetadata),
        (status = 400, body = V2ErrorBody),
        (status = 404, body = V2ErrorBody)
    ),
    security((), ("api_key" = []))
)]
pub async fn version_metadata(
    State(state): State<Arc<AppState>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path((name, version)) = path.map_err(path_error)?;
    metadata_of(&state, &name, Some(parse_version(&version)?)).await
}

async fn readiness(
    state: &AppState,
    name: &str,
    version: Option<i64>,
) -> Result<Response, ApiError> {
    select(state, name, version, None, None).await?;
    Ok(axum::Json(ModelReadiness {
        name: name.to_owned(),
        ready: true,
    })
    .into_response())
}

/// Whether the model (its `production` version) is ready.
#[utoipa::path(
    get,
    path = "/v2/models/{name}/ready",
    tag = "v2",
    params(("name" = String, Path)),
    responses((status = 200, body = ModelReadiness), (status = 404, body = V2ErrorBody)),
    security((), ("api_key" = []))
)]
pub async fn model_ready(
    State(state): State<Arc<AppState>>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(name) = name.map_err(path_error)?;
    readiness(&state, &name, None).await
}

/// Whether a model version is ready.
#[utoipa::path(
    get,
    path = "/v2/models/{name}/versions/{version}/ready",
    tag = "v2",
    params(("name" = String, Path), ("version" = String, Path)),
    responses(
        (status = 200, body = ModelReadiness),
        (status = 400, body = V2ErrorBody),
        (status = 404, body = V2ErrorBody)
    ),
    security((), ("api_key" = []))
)]
pub async fn version_ready(
    State(state): State<Arc<AppState>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path((name, version)) = path.map_err(path_error)?;
    readiness(&state, &name, Some(parse_version(&version)?)).await
}

/// Run inference (the `production` version).
#[utoipa::path(
    post,
    path = "/v2/models/{name}/infer",
    tag = "v2",
    params(("name" = String, Path)),
    request_body = InferRequest,
    responses(
        (status = 200, body = InferResponse),
        (status = 400, body = V2ErrorBody),
        (status = 401, body = V2ErrorBody),
        (status = 404, body = V2ErrorBody),
        (status = 413, body = V2ErrorBody),
        (status = 422, body = V2ErrorBody)
    ),
    security((), ("api_key" = []))
)]
pub async fn infer(
    State(state): State<Arc<AppState>>,
    Extension(id): Extension<RequestId>,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Path(name) = name.map_err(path_error)?;
    run_infer(&state, &id.0, &name, None, &headers, body).await
}

/// Run inference on one model version.
#[utoipa::path(
    post,
    path = "/v2/models/{name}/versions/{version}/infer",
    tag = "v2",
    params(("name" = String, Path), ("version" = String, Path)),
    request_body = InferRequest,
    responses(
        (status = 200, body = InferResponse),
        (status = 400, body = V2ErrorBody),
        (status = 401, body = V2ErrorBody),
        (status = 404, body = V2ErrorBody),
        (status = 413, body = V2ErrorBody),
        (status = 422, body = V2ErrorBody)
    ),
    security((), ("api_key" = []))
)]
pub async fn version_infer(
    State(state): State<Arc<AppState>>,
    Extension(id): Extension<RequestId>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Path((name, version)) = path.map_err(path_error)?;
    let version = parse_version(&version)?;
    run_infer(&state, &id.0, &name, Some(version), &headers, body).await
}

async fn run_infer(
    state: &Arc<AppState>,
    request_id: &str,
    name: &str,
    version: Option<i64>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let time = kiln_core::now_micros();
    let bytes = body_bytes(body)?;
    let (json, binary) = split_binary(headers, &bytes)?;
    let request: InferRequest = parse_json(json)?;
    let key = route_key(headers, None, request_id);
    let (model, alias) = select(state, name, version, None, Some(key)).await?;
    let rows = tensors_to_rows(&model, &request.inputs, binary)?;
    let n = rows.len();
    let shadow = shadow_of(state, &model, alias.as_deref()).map(|s| (s, rows.clone()));
    let served = serve_routed(
        state,
        model,
        alias,
        rows,
        None,
        &Arrival {
            request_id,
            started,
            time,
        },
    )
    .await?;
    if let Some((shadow, rows)) = shadow {
        score_shadow(
            state.clone(),
            shadow,
            rows,
            None,
            request_id.to_owned(),
            time,
        );
    }
    let model = &served.model;
    let mut outputs = Vec::new();
    match &served.predictions {
        Predictions::Values(v) => outputs.push(OutputTensor {
            name: "predictions".into(),
            datatype: "FP64".into(),
            shape: vec![n as i64],
            data: Value::from(v.clone()),
        }),
        Predictions::Probabilities { classes, data } => {
            let class: Vec<Value> = data
                .chunks(*classes)
                .map(|r| Value::from(model.artifact.classes.get(argmax(r)).cloned()))
                .collect();
            outputs.push(OutputTensor {
                name: "class".into(),
                datatype: "BYTES".into(),
                shape: vec![n as i64],
                data: Value::Array(class),
            });
            outputs.push(OutputTensor {
                name: "probabilities".into(),
                datatype: "FP64".into(),
                shape: vec![n as i64, *classes as i64],
                data: Value::from(data.clone()),
            });
        }
    }
    outputs.push(OutputTensor {
        name: "request_id".into(),
        datatype: "BYTES".into(),
        shape: vec![n as i64],
        data: Value::from(served.row_ids),
    });
    if let Some(wanted) = &request.outputs {
        for w in wanted {
            if !outputs.iter().any(|o| o.name == w.name) {
                let known: Vec<&str> = outputs.iter().map(|o| o.name.as_str()).collect();
                return Err(ApiError::bad_request(
                    "unknown_output",
                    format!(
                        "model `{name}` has no output `{}`; outputs: {}",
                        w.name,
                        known.join(", ")
                    ),
                )
                .field("outputs"));
            }
        }
        outputs.retain(|o| wanted.iter().any(|w| w.name == o.name));
    }
    let body = InferResponse {
        model_name: model.name.clone(),
        model_version: model.version.to_string(),
        id: request.id,
        outputs,
    };
    let mut response = axum::Json(body).into_response();
    response.extensions_mut().insert(ServedBy {
        model: model.name_label.clone(),
        version: model.version_label.clone(),
    });
    Ok(response)
}

/// Splits a body into its JSON part and the binary tensor data that follows it.
pub(crate) fn split_binary<'a>(
    headers: &HeaderMap,
    bytes: &'a [u8],
) -> Result<(&'a [u8], &'a [u8]), ApiError> {
    let Some(v) = headers.get(JSON_LENGTH_HEADER) else {
        return Ok((bytes, &[]));
    };
    let n = v
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .filter(|n| *n <= bytes.len())
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_header",
                format!(
                    "Inference-Header-Content-Length must be a byte count within the body ({} bytes)",
                    bytes.len()
                ),
            )
            .field("Inference-Header-Content-Length")
        })?;
    Ok(bytes.split_at(n))
}

fn tensor_error(input: &str, message: String) -> ApiError {
    ApiError::bad_request("invalid_tensor", message).field(input)
}

/// The elements of one input tensor as JSON scalars, row-major.
fn elements(input: &InferInput, binary: &mut &[u8]) -> Result<Vec<Value>, ApiError> {
    let count = input
        .shape
        .iter()
        .try_fold(1usize, |acc, d| {
            usize::try_from(*d).ok().and_then(|d| acc.checked_mul(d))
        })
        .ok_or_else(|| {
            tensor_error(
                &input.name,
                format!(
                    "input `{}` has an invalid shape {:?}",
                    input.name, input.shape
                ),
            )
        })?;
    let dt = input.datatype.as_str();
    let binary_size = input
        .parameters
        .as_ref()
        .and_then(|p| p.get("binary_data_size"))
        .map(|v| {
            v.as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| {
                    tensor_error(&input.name, "binary_data_size must be a byte count".into())
                })
        })
        .transpose()?;
    let values = match (binary_size, &input.data) {
        (Some(size), _) => {
            if size > binary.len() {
                return Err(tensor_error(
                    &input.name,
                    format!(
                        "input `{}` declares {size} bytes of binary data; {} remain in the body",
                        input.name,
                        binary.len()
                    ),
                ));
            }
            let (mine, rest) = binary.split_at(size);
            *binary = rest;
            decode_binary(&input.name, dt, mine)?
        }
        (None, Some(data)) => {
            let mut flat = Vec::new();
            flatten(data, &mut flat, 0).map_err(|m| tensor_error(&input.name, m))?;
            for v in &flat {
                check_json_element(&input.name, dt, v)?;
            }
            flat
        }
        (None, None) => {
            return Err(tensor_error(
                &input.name,
                format!("input `{}` has neither `data` nor binary data", input.name),
            ));
        }
    };
    if values.len() != count {
        return Err(tensor_error(
            &input.name,
            format!(
                "input `{}` has {} elements; its shape {:?} needs {count}",
                input.name,
                values.len(),
                input.shape
            ),
        ));
    }
    Ok(values)
}

fn flatten(v: &Value, out: &mut Vec<Value>, depth: usize) -> Result<(), String> {
    match v {
        Value::Array(items) => {
            if depth > 4 {
                return Err("tensor data is nested too deeply".into());
            }
            for item in items {
                flatten(item, out, depth + 1)?;
            }
            Ok(())
        }
        other if depth == 0 => Err(format!(
            "tensor data must be an array, not {}",
            short(other)
        )),
        other => {
            out.push(other.clone());
            Ok(())
        }
    }
}

fn short(v: &Value) -> String {
    v.to_string().chars().take(40).collect()
}

fn check_json_element(name: &str, dt: &str, v: &Value) -> Result<(), ApiError> {
    let ok = match dt {
        "BOOL" => v.is_boolean(),
        "BYTES" => v.is_string(),
        "FP16" | "FP32" | "FP64" => v.is_number(),
        "INT8" | "INT16" | "INT32" | "INT64" => v.is_i64(),
        "UINT8" | "UINT16" | "UINT32" | "UINT64" => v.is_u64(),
        other => {
            return Err(tensor_error(
                name,
                format!(
                    "input `{name}`: datatype {other} is not supported (BOOL, INT*, UINT*, FP32, FP64, BYTES)"
                ),
            ));
        }
    };
    if ok {
        Ok(())
    } else {
        Err(tensor_error(
            name,
            format!("input `{name}` is {dt}, but holds {}", short(v)),
        ))
    }
}

fn float_value(x: f64) -> Value {
    if x.is_nan() {
        Value::Null
    } else if x.is_infinite() {
        // Not representable as a JSON number: the door decides whether infinities are allowed.
        Value::String(if x > 0.0 { "inf" } else { "-inf" }.into())
    } else {
        Value::from(x)
    }
}

fn decode_binary(name: &str, dt: &str, b: &[u8]) -> Result<Vec<Value>, ApiError> {
    fn fixed<const N: usize>(
        name: &str,
        b: &[u8],
        f: impl Fn([u8; N]) -> Value,
    ) -> Result<Vec<Value>, ApiError> {
        if !b.len().is_multiple_of(N) {
            return Err(tensor_error(
                name,
                format!(
                    "input `{name}`: {} bytes of binary data are not a whole number of {N}-byte elements",
                    b.len()
                ),
            ));
        }
        Ok(b.chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                f(a)
            })
            .collect())
    }
    match dt {
        "BOOL" => fixed::<1>(name, b, |a| Value::Bool(a[0] != 0)),
        "INT8" => fixed::<1>(name, b, |a| Value::from(i8::from_le_bytes(a))),
        "UINT8" => fixed::<1>(name, b, |a| Value::from(a[0])),
        "INT16" => fixed::<2>(name, b, |a| Value::from(i16::from_le_bytes(a))),
        "UINT16" => fixed::<2>(name, b, |a| Value::from(u16::from_le_bytes(a))),
        "INT32" => fixed::<4>(name, b, |a| Value::from(i32::from_le_bytes(a))),
        "UINT32" => fixed::<4>(name, b, |a| Value::from(u32::from_le_bytes(a))),
        "INT64" => fixed::<8>(name, b, |a| Value::from(i64::from_le_bytes(a))),
        "UINT64" => fixed::<8>(name, b, |a| Value::from(u64::from_le_bytes(a))),
        "FP32" => fixed::<4>(name, b, |a| float_value(f64::from(f32::from_le_bytes(a)))),
        "FP64" => fixed::<8>(name, b, |a| float_value(f64::from_le_bytes(a))),
        "BYTES" => {
            let mut out = Vec::new();
            let mut rest = b;
            while !rest.is_empty() {
                if rest.len() < 4 {
                    return Err(tensor_error(
                        name,
                        format!("input `{name}`: truncated BYTES element length"),
                    ));
                }
                let (len, tail) = rest.split_at(4);
                let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
                if len > tail.len() {
                    return Err(tensor_error(
                        name,
                        format!("input `{name}`: a BYTES element runs past the binary data"),
                    ));
                }
                let (item, tail) = tail.split_at(len);
                let s = std::str::from_utf8(item).map_err(|_| {
                    tensor_error(
                        name,
                        format!("input `{name}`: a BYTES element is not UTF-8"),
                    )
                })?;
                out.push(Value::String(s.to_owned()));
                rest = tail;
            }
            Ok(out)
        }
        other => Err(tensor_error(
            name,
            format!(
                "input `{name}`: datatype {other} is not supported (BOOL, INT*, UINT*, FP32, FP64, BYTES)"
            ),
        )),
    }
}

/// Turns the request's tensors into rows of `{feature: value}`, as the JSON text the native
/// API receives (the one form [`serve_routed`] takes).
pub(crate) fn tensors_to_rows(
    model: &LoadedModel,
    inputs: &[InferInput],
    binary: &[u8],
) -> Result<Vec<RowText>, ApiError> {
    tensor_values(model, inputs, binary)?
        .iter()
        .map(|row| {
            serde_json::value::to_raw_value(row)
                .map_err(|e| ApiError::internal("cannot write a row as JSON", e))
        })
        .collect()
}

fn tensor_values(
    model: &LoadedModel,
    inputs: &[InferInput],
    mut binary: &[u8],
) -> Result<Vec<Value>, ApiError> {
    let columns = &model.artifact.schema.columns;
    if inputs.is_empty() {
        return Err(ApiError::bad_request(
            "no_inputs",
            "the request has no inputs; GET /v2/models/NAME lists them",
        )
        .field("inputs"));
    }
    let feature = |name: &str| columns.iter().position(|c| c.name == name);
    // One 2-D tensor with every feature.
    if inputs.len() == 1 && feature(&inputs[0].name).is_none() && inputs[0].shape.len() == 2 {
        let input = &inputs[0];
        let f = usize::try_from(input.shape[1]).unwrap_or(usize::MAX);
        if f != columns.len() {
            return Err(tensor_error(
                &input.name,
                format!(
                    "a single 2-D input must be [N, {}] (every feature in schema order); it is {:?}",
                    columns.len(),
                    input.shape
                ),
            ));
        }
        let numeric_ok = columns
            .iter()
            .all(|c| matches!(c.ftype, FeatureType::Numeric | FeatureType::Boolean));
        if input.datatype != "BYTES" && !numeric_ok {
            return Err(tensor_error(
                &input.name,
                "this model has non-numeric features: send the 2-D input as BYTES, or one input per feature".into(),
            ));
        }
        let values = elements(input, &mut binary)?;
        return Ok(values
            .chunks(f.max(1))
            .map(|row| {
                Value::Object(
                    columns
                        .iter()
                        .zip(row)
                        .map(|(c, v)| (c.name.clone(), v.clone()))
                        .collect(),
                )
            })
            .collect());
    }
    let mut rows: Option<Vec<Map<String, Value>>> = None;
    for input in inputs {
        if feature(&input.name).is_none() {
            let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
            return Err(ApiError::bad_request(
                "unknown_input",
                format!(
                    "model `{}` has no input `{}`; inputs: {}",
                    model.name,
                    input.name,
                    names.join(", ")
                ),
            )
            .field(input.name.clone()));
        }
        let shape_ok = matches!(input.shape.as_slice(), [_] | [_, 1]);
        if !shape_ok {
            return Err(tensor_error(
                &input.name,
                format!(
                    "input `{}` must have shape [N] or [N, 1]; it is {:?}",
                    input.name, input.shape
                ),
            ));
        }
        let values = elements(input, &mut binary)?;
        let rows = rows.get_or_insert_with(|| vec![Map::new(); values.len()]);
        if rows.len() != values.len() {
            return Err(tensor_error(
                &input.name,
                format!(
                    "input `{}` has {} rows, the others {}",
                    input.name,
                    values.len(),
                    rows.len()
                ),
            ));
        }
        for (row, v) in rows.iter_mut().zip(values) {
            row.insert(input.name.clone(), v);
        }
    }
    Ok(rows
        .unwrap_or_default()
        .into_iter()
        .map(Value::Object)
        .collect())
}
