//! Rows given as JSON objects (the prediction API's `instances`) turned into the normalized
//! Arrow batch a model scores, through the same cell conversion as a CSV ingest.
//!
//! A JSON string goes through exactly the code a CSV cell goes through; a JSON number given
//! for a numeric feature is used as is (with `float_roundtrip`, serde_json reads it to the
//! same f64 as the CSV parser reads its text), other JSON scalars through their text. So a
//! row sent to the server and the same row in a file scored by `kiln predict` become the same
//! features, bit for bit.

use arrow_array::{ArrayRef, RecordBatch};
use kiln_core::schema::{FeatureType, Schema};
use kiln_core::table::arrow_schema;
use serde::Serialize;
use serde_json::Value;

use crate::ingest::{ColumnBuilder, type_message};

/// What is wrong with one field of one row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowError {
    /// 0-based position of the row in the request.
    pub row: usize,
    pub field: Option<String>,
    /// `not_an_object`, `missing_feature` or `wrong_type`.
    pub code: &'static str,
    pub message: String,
}

/// Builds the batch of `rows` for a model with input `schema`. An absent feature is an error;
/// an explicit `null` is a missing value (the model's pipeline handles it); fields the schema
/// does not name are ignored. Returns every error found, not just the first.
pub fn batch_from_json(schema: &Schema, rows: &[Value]) -> Result<RecordBatch, Vec<RowError>> {
    let mut builders: Vec<ColumnBuilder> = schema
        .columns
        .iter()
        .map(|c| ColumnBuilder::new(c.ftype, rows.len()))
        .collect();
    let mut errors = Vec::new();
    for (r, row) in rows.iter().enumerate() {
        let Some(obj) = row.as_object() else {
            errors.push(RowError {
                row: r,
                field: None,
                code: "not_an_object",
                message: "a row must be a JSON object of feature: value".into(),
            });
            continue;
        };
        for (col, b) in schema.columns.iter().zip(builders.iter_mut()) {
            let wrong = |shown: &str| RowError {
                row: r,
                field: Some(col.name.clone()),
                code: "wrong_type",
                message: type_message(col.ftype, shown),
            };
            match obj.get(&col.name) {
                None => {
                    b.push_null();
                    errors.push(RowError {
                        row: r,
                        field: Some(col.name.clone()),
                        code: "missing_feature",
                        message: format!(
                            "feature `{}` ({}) is missing; send null for a missing value",
                            col.name, col.ftype
                        ),
                    });
                }
                Some(Value::Null) => b.push_null(),
                Some(Value::String(s)) => {
                    if !b.push(s) {
                        errors.push(wrong(s));
                    }
                }
                Some(Value::Number(n)) => {
                    let text = n.to_string();
                    // A numeric feature takes the f64 serde_json read, which float_roundtrip
                    // makes the one the CSV parser reads from the same text.
                    let ok = match n.as_f64() {
                        Some(v) if col.ftype == FeatureType::Numeric => b.push_number(v, &text),
                        _ => b.push(&text),
                    };
                    if !ok {
                        errors.push(wrong(&text));
                    }
                }
                Some(Value::Bool(v)) => {
                    if !b.push(if *v { "true" } else { "false" }) {
                        errors.push(wrong(&v.to_string()));
                    }
                }
                Some(other) => {
                    b.push_null();
                    let text = other.to_string();
                    errors.push(wrong(&text.chars().take(40).collect::<String>()));
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let arrays: Result<Vec<ArrayRef>, _> = builders.iter_mut().map(ColumnBuilder::finish).collect();
    let arrays = arrays.map_err(|e| {
        vec![RowError {
            row: 0,
            field: None,
            code: "wrong_type",
            message: e.to_string(),
        }]
    })?;
    RecordBatch::try_new(arrow_schema(schema), arrays).map_err(|e| {
        vec![RowError {
            row: 0,
            field: None,
            code: "wrong_type",
            message: e.to_string(),
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Float64Type;
    use kiln_core::schema::Column;
    use serde_json::json;

    fn schema() -> Schema {
        Schema::new(vec![
            Column {
                name: "temp".into(),
                ftype: FeatureType::Numeric,
            },
            Column {
                name: "season".into(),
                ftype: FeatureType::Categorical,
            },
            Column {
                name: "day".into(),
                ftype: FeatureType::Date,
            },
        ])
    }

    #[test]
    fn values_convert_like_csv_cells_and_errors_name_row_and_field() {
        let rows = vec![
            json!({"temp": 0.1, "season": "winter", "day": "2012-07-01", "extra": 1}),
            json!({"temp": "0.1", "season": null, "day": null}),
            json!({"temp": 3, "season": 5, "day": "2012-07-02"}),
        ];
        let b = batch_from_json(&schema(), &rows).unwrap();
        let t = b.column(0).as_primitive::<Float64Type>();
        assert_eq!(
            t.value(0).to_bits(),
            "0.1".parse::<f64>().unwrap().to_bits()
        );
        assert_eq!(t.value(1).to_bits(), t.value(0).to_bits());
        assert_eq!(t.value(2), 3.0);
        assert!(b.column(1).is_null(1));
        assert_eq!(b.num_rows(), 3);

        let bad = vec![
            json!({"temp": "warm", "season": "winter", "day": "2012-07-01"}),
            json!({"season": "winter", "day": "2012-13-45"}),
            json!([1, 2]),
            json!({"temp": {"x": 1}, "season": "a", "day": true}),
        ];
        let errs = batch_from_json(&schema(), &bad).unwrap_err();
        let got: Vec<(usize, Option<&str>, &str)> = errs
            .iter()
            .map(|e| (e.row, e.field.as_deref(), e.code))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, Some("temp"), "wrong_type"),
                (1, Some("temp"), "missing_feature"),
                (1, Some("day"), "wrong_type"),
                (2, None, "not_an_object"),
                (3, Some("temp"), "wrong_type"),
                (3, Some("day"), "wrong_type"),
            ]
        );
        assert!(errs[0].message.contains("warm"), "{}", errs[0].message);
    }
}
