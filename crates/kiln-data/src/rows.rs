//! Rows given as JSON objects (the prediction API's `instances`) turned into the normalized
//! Arrow batch a model scores, through the same cell conversion as a CSV ingest.
//!
//! A JSON string goes through exactly the code a CSV cell goes through; a JSON number given
//! for a numeric feature is used as is (with `float_roundtrip`, serde_json reads it to the
//! same f64 as the CSV parser reads its text), other JSON scalars through their text. So a
//! row sent to the server and the same row in a file scored by `kiln predict` become the same
//! features, bit for bit.

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use kiln_core::schema::{FeatureType, Schema};
use kiln_core::table::arrow_schema;
use serde::Serialize;
use serde_json::Value;

use crate::ingest::{ColumnBuilder, KnownDictionary, type_message};

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

/// Builds the batch of `rows` for a model with input `schema`: [`JsonBatcher::batch`] for a
/// one-off conversion.
pub fn batch_from_json(schema: &Schema, rows: &[Value]) -> Result<RecordBatch, Vec<RowError>> {
    JsonBatcher::new(schema.clone()).batch(rows)
}

/// Converts JSON rows for one input schema, again and again: what is the same for every
/// request (the Arrow schema) is built once.
#[derive(Debug, Clone)]
pub struct JsonBatcher {
    schema: Schema,
    arrow: SchemaRef,
    /// Per column (schema order): the categories expected, if given.
    known: Vec<Option<Arc<KnownDictionary>>>,
}

impl JsonBatcher {
    pub fn new(schema: Schema) -> Self {
        let arrow = arrow_schema(&schema);
        let known = vec![None; schema.columns.len()];
        Self {
            schema,
            arrow,
            known,
        }
    }

    /// Declares the categories the categorical column `column` usually holds (a model's
    /// known categories): batches then share one dictionary for it instead of building one
    /// per batch. Other values still work. Not a categorical column of the schema: no effect.
    pub fn set_known_categories(&mut self, column: &str, categories: &[String]) {
        if let Some(j) = self
            .schema
            .columns
            .iter()
            .position(|c| c.name == column && c.ftype == FeatureType::Categorical)
        {
            self.known[j] = Some(Arc::new(KnownDictionary::new(categories)));
        }
    }

    /// Builds the batch of `rows`. An absent feature is an error; an explicit `null` is a
    /// missing value (the model's pipeline handles it); fields the schema does not name are
    /// ignored. Returns every error found, not just the first.
    pub fn batch(&self, rows: &[Value]) -> Result<RecordBatch, Vec<RowError>> {
        let builders = self
            .schema
            .columns
            .iter()
            .zip(&self.known)
            .map(|(c, known)| match known {
                Some(d) => ColumnBuilder::known(d.clone(), rows.len()),
                None => ColumnBuilder::new(c.ftype, rows.len()),
            })
            .collect();
        batch_rows(&self.schema, self.arrow.clone(), builders, rows)
    }
}

fn batch_rows(
    schema: &Schema,
    arrow: SchemaRef,
    mut builders: Vec<ColumnBuilder>,
    rows: &[Value],
) -> Result<RecordBatch, Vec<RowError>> {
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
                    // A numeric feature takes the f64 serde_json read, which float_roundtrip
                    // makes the one the CSV parser reads from the same text. Other features
                    // (and infinities, which a numeric column refuses) go through the text.
                    let taken = n.as_f64().is_some_and(|v| b.push_number(v));
                    if !taken {
                        let text = n.to_string();
                        if !b.push(&text) {
                            errors.push(wrong(&text));
                        }
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
    RecordBatch::try_new(arrow, arrays).map_err(|e| {
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

    /// The categories of `b`'s column `j`, row by row (`None` for null).
    fn categories(b: &RecordBatch, j: usize) -> Vec<Option<String>> {
        let dict = b.column(j).as_dictionary::<arrow_array::types::Int32Type>();
        let values = dict.values().as_string::<i32>();
        dict.keys()
            .iter()
            .map(|k| k.map(|k| values.value(k as usize).to_owned()))
            .collect()
    }

    #[test]
    fn known_categories_give_the_same_rows_with_and_without_unknown_values() {
        let mut batcher = JsonBatcher::new(schema());
        batcher.set_known_categories("season", &["winter".into(), "summer".into()]);
        let known = vec![
            json!({"temp": 1, "season": "summer", "day": "2012-07-01"}),
            json!({"temp": 2, "season": null, "day": "2012-07-01"}),
            json!({"temp": 3, "season": "winter", "day": "2012-07-01"}),
        ];
        // An unknown category after known ones and a null: the column falls back to its own
        // dictionary and keeps every earlier row.
        let mut mixed = known.clone();
        mixed.push(json!({"temp": 4, "season": "monsoon", "day": "2012-07-01"}));
        mixed.push(json!({"temp": 5, "season": "summer", "day": "2012-07-01"}));
        for rows in [&known, &mixed] {
            let with = batcher.batch(rows).unwrap();
            let without = batch_from_json(&schema(), rows).unwrap();
            assert_eq!(with.schema(), without.schema());
            assert_eq!(categories(&with, 1), categories(&without, 1));
            assert_eq!(with.column(0), without.column(0));
        }
        assert_eq!(
            categories(&batcher.batch(&mixed).unwrap(), 1),
            vec![
                Some("summer".to_owned()),
                None,
                Some("winter".to_owned()),
                Some("monsoon".to_owned()),
                Some("summer".to_owned()),
            ]
        );
        // The shared dictionary is the known one: all of it, whatever the rows use.
        let shared = batcher.batch(&known).unwrap();
        let dict = shared
            .column(1)
            .as_dictionary::<arrow_array::types::Int32Type>();
        assert_eq!(dict.values().len(), 2);
    }
}
