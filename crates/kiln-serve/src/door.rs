//! Validation at the door: rows from a request become the normalized batch the model scores
//! (the same conversion as a CSV ingest), and each value is checked against what the model
//! saw in training.
//!
//! Refused (422, with row and field): a missing feature, a value of the wrong type, an
//! infinity where training had none, and, with `out_of_range = "reject"`, a number outside
//! the training range. Accepted but flagged per row and counted: unknown categories, and
//! out-of-range numbers under the default policy. A `null` is a missing value, which every
//! model handles.

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type};
use axum::http::StatusCode;
use kiln_core::schema::FeatureType;

use crate::catalog::LoadedModel;
use crate::config::RangePolicy;
use crate::error::{ApiError, ErrorItem};
use crate::metrics::Metrics;

/// Why a value was scored but flagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagKind {
    UnknownCategory,
    OutOfRange,
}

impl FlagKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FlagKind::UnknownCategory => "unknown_category",
            FlagKind::OutOfRange => "out_of_range",
        }
    }
}

/// A flagged value: which input column (schema index) and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag {
    pub column: usize,
    pub kind: FlagKind,
}

/// The admitted rows.
pub struct Admitted {
    pub batch: RecordBatch,
    /// Per row, its flags (empty for most rows, without allocating).
    pub flags: Vec<Vec<Flag>>,
}

/// Converts and checks `rows` (one JSON object's text each) for `model`; counts what it
/// refuses and flags.
pub fn admit(
    model: &LoadedModel,
    rows: &[&str],
    policy: RangePolicy,
    metrics: &Metrics,
) -> Result<Admitted, ApiError> {
    let schema = &model.artifact.schema;
    let batch = model.batcher.batch_text(rows).map_err(|errors| {
        for e in &errors {
            metrics
                .validation_failures
                .with_label_values(&[&model.name, e.field.as_deref().unwrap_or(""), e.code])
                .inc();
        }
        let status = if errors
            .iter()
            .any(|e| matches!(e.code, "not_an_object" | "invalid_json"))
        {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        ApiError::from_items(
            status,
            errors
                .into_iter()
                .map(|e| ErrorItem {
                    code: e.code.to_owned(),
                    message: e.message,
                    field: e.field,
                    row: Some(e.row),
                })
                .collect(),
        )
    })?;
    let mut flags: Vec<Vec<Flag>> = vec![Vec::new(); batch.num_rows()];
    let mut refused = Vec::new();
    for (j, (col, check)) in schema.columns.iter().zip(&model.checks).enumerate() {
        let array = batch.column(j);
        match col.ftype {
            FeatureType::Numeric => {
                let a = array.as_primitive::<Float64Type>();
                for (i, v) in a.iter().enumerate() {
                    let Some(v) = v else { continue };
                    if v.is_infinite() && !check.allow_infinite {
                        refused.push(ErrorItem {
                            code: "not_finite".into(),
                            message: format!(
                                "feature `{}` is {v}; training saw only finite values",
                                col.name
                            ),
                            field: Some(col.name.clone()),
                            row: Some(i),
                        });
                        continue;
                    }
                    let Some((lo, hi)) = check.range else {
                        continue;
                    };
                    if v.is_finite() && (v < lo || v > hi) {
                        match policy {
                            RangePolicy::Flag => flags[i].push(Flag {
                                column: j,
                                kind: FlagKind::OutOfRange,
                            }),
                            RangePolicy::Reject => refused.push(ErrorItem {
                                code: "out_of_range".into(),
                                message: format!(
                                    "feature `{}` is {v}, outside the training range [{lo}, {hi}]",
                                    col.name
                                ),
                                field: Some(col.name.clone()),
                                row: Some(i),
                            }),
                        }
                    }
                }
            }
            FeatureType::Categorical => {
                let Some(known) = &check.known else { continue };
                let dict = array.as_dictionary::<Int32Type>();
                let values = dict.values().as_string::<i32>();
                for (i, k) in dict.keys().iter().enumerate() {
                    let Some(k) = k else { continue };
                    if !known.contains(values.value(k as usize)) {
                        flags[i].push(Flag {
                            column: j,
                            kind: FlagKind::UnknownCategory,
                        });
                    }
                }
            }
            _ => {}
        }
    }
    if !refused.is_empty() {
        for e in &refused {
            metrics
                .validation_failures
                .with_label_values(&[
                    &model.name,
                    e.field.as_deref().unwrap_or(""),
                    e.code.as_str(),
                ])
                .inc();
        }
        return Err(ApiError::from_items(
            StatusCode::UNPROCESSABLE_ENTITY,
            refused,
        ));
    }
    for row in &flags {
        for f in row {
            metrics
                .flagged_values
                .with_label_values(&[&model.name, &schema.columns[f.column].name, f.kind.as_str()])
                .inc();
        }
    }
    Ok(Admitted { batch, flags })
}

/// The flags of one row as `kind:feature` strings (what responses and the log carry).
pub fn flag_strings(model: &LoadedModel, flags: &[Flag]) -> Vec<String> {
    flags
        .iter()
        .map(|f| {
            format!(
                "{}:{}",
                f.kind.as_str(),
                model.artifact.schema.columns[f.column].name
            )
        })
        .collect()
}
