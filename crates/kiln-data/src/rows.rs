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
use std::borrow::Cow;

use rustc_hash::FxHashMap;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ingest::{ColumnBuilder, KnownDictionary, type_message};

/// What is wrong with one field of one row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowError {
    /// 0-based position of the row in the request.
    pub row: usize,
    pub field: Option<String>,
    /// `not_an_object`, `invalid_json` (text rows only), `missing_feature` or `wrong_type`.
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
    /// Column position by name, for [`JsonBatcher::batch_text`].
    position: FxHashMap<String, usize>,
}

impl JsonBatcher {
    pub fn new(schema: Schema) -> Self {
        let arrow = arrow_schema(&schema);
        let known = vec![None; schema.columns.len()];
        let position = schema
            .columns
            .iter()
            .enumerate()
            .map(|(j, c)| (c.name.clone(), j))
            .collect();
        Self {
            schema,
            arrow,
            known,
            position,
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
        let mut builders = self.builders(rows.len());
        let mut errors = Vec::new();
        for (r, row) in rows.iter().enumerate() {
            let Some(obj) = row.as_object() else {
                errors.push(not_an_object(r, OBJECT_EXPECTED));
                continue;
            };
            for (col, b) in self.schema.columns.iter().zip(builders.iter_mut()) {
                let cell = match obj.get(&col.name) {
                    None => Cell::Absent,
                    Some(Value::Null) => Cell::Null,
                    Some(Value::String(s)) => Cell::Str(Cow::Borrowed(s)),
                    Some(Value::Number(n)) => Cell::Num(n.clone()),
                    Some(Value::Bool(v)) => Cell::Bool(*v),
                    Some(other) => Cell::Other(Cow::Borrowed(other)),
                };
                push_cell(b, col, r, &cell, &mut errors);
            }
        }
        self.finish(builders, errors)
    }

    /// Builds the batch of rows given as JSON text, one object per row: what
    /// [`JsonBatcher::batch`] gives for the parsed rows, without building a `Value` for each
    /// (the server reads a request's rows this way, and the live monitor the logged rows:
    /// parsing each into a `Value`, a map with a `String` per key, was most of their cost). Text that is not a JSON object
    /// is a `not_an_object` error of its row; text that is not JSON, an `invalid_json` one.
    pub fn batch_text(&self, rows: &[&str]) -> Result<RecordBatch, Vec<RowError>> {
        let mut builders = self.builders(rows.len());
        let mut errors = Vec::new();
        let mut cells: Vec<Cell<'_>> = Vec::with_capacity(self.schema.columns.len());
        for (r, text) in rows.iter().enumerate() {
            cells.clear();
            cells.resize_with(self.schema.columns.len(), || Cell::Absent);
            let mut de = serde_json::Deserializer::from_str(text);
            let read = RowSeed {
                position: &self.position,
                cells: &mut cells,
            }
            .deserialize(&mut de)
            .and_then(|()| de.end());
            if let Err(e) = read {
                errors.push(if e.is_data() {
                    not_an_object(r, OBJECT_EXPECTED)
                } else {
                    // Not JSON, or JSON that serde_json cannot read (a number beyond f64).
                    RowError {
                        row: r,
                        field: None,
                        code: "invalid_json",
                        message: format!("this row is not valid JSON: {e}"),
                    }
                });
                continue;
            }
            for ((col, b), cell) in self
                .schema
                .columns
                .iter()
                .zip(builders.iter_mut())
                .zip(&cells)
            {
                push_cell(b, col, r, cell, &mut errors);
            }
        }
        self.finish(builders, errors)
    }

    fn builders(&self, rows: usize) -> Vec<ColumnBuilder> {
        self.schema
            .columns
            .iter()
            .zip(&self.known)
            .map(|(c, known)| match known {
                Some(d) => ColumnBuilder::known(d.clone(), rows),
                None => ColumnBuilder::new(c.ftype, rows),
            })
            .collect()
    }

    fn finish(
        &self,
        builders: Vec<ColumnBuilder>,
        errors: Vec<RowError>,
    ) -> Result<RecordBatch, Vec<RowError>> {
        if !errors.is_empty() {
            return Err(errors);
        }
        finish_batch(self.arrow.clone(), builders)
    }
}

const OBJECT_EXPECTED: &str = "a row must be a JSON object of feature: value";

fn not_an_object(row: usize, message: &str) -> RowError {
    RowError {
        row,
        field: None,
        code: "not_an_object",
        message: message.to_owned(),
    }
}

/// One field of one row, whichever way the row was read: borrowed from the parsed `Value`,
/// or from the JSON text when it holds no escape.
enum Cell<'a> {
    Absent,
    Null,
    Str(Cow<'a, str>),
    Num(serde_json::Number),
    Bool(bool),
    /// An array or an object.
    Other(Cow<'a, Value>),
}

/// Adds `cell` (row `r`, column `col`) to its column, or records what is wrong with it.
fn push_cell(
    b: &mut ColumnBuilder,
    col: &kiln_core::schema::Column,
    r: usize,
    cell: &Cell<'_>,
    errors: &mut Vec<RowError>,
) {
    let wrong = |shown: &str| RowError {
        row: r,
        field: Some(col.name.clone()),
        code: "wrong_type",
        message: type_message(col.ftype, shown),
    };
    match cell {
        Cell::Absent => {
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
        Cell::Null => b.push_null(),
        Cell::Str(s) => {
            if !b.push(s) {
                errors.push(wrong(s));
            }
        }
        Cell::Num(n) => {
            // A numeric feature takes the f64 serde_json read, which float_roundtrip makes the
            // one the CSV parser reads from the same text. Other features (and infinities,
            // which a numeric column refuses) go through the text.
            let taken = n.as_f64().is_some_and(|v| b.push_number(v));
            if !taken {
                let text = n.to_string();
                if !b.push(&text) {
                    errors.push(wrong(&text));
                }
            }
        }
        Cell::Bool(v) => {
            if !b.push(if *v { "true" } else { "false" }) {
                errors.push(wrong(&v.to_string()));
            }
        }
        Cell::Other(other) => {
            b.push_null();
            let text = other.to_string();
            errors.push(wrong(&text.chars().take(40).collect::<String>()));
        }
    }
}

/// Reads one JSON object, putting each field the schema names in its column's cell (a later
/// duplicate replaces an earlier one, as in a parsed `Value`) and skipping the others.
struct RowSeed<'s, 'de> {
    position: &'s FxHashMap<String, usize>,
    cells: &'s mut Vec<Cell<'de>>,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object of feature: value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // A key is read as any field is: a JSON object's keys are strings.
        while let Some(Field(key)) = map.next_key()? {
            let column = match &key {
                Cell::Str(name) => self.position.get(name.as_ref()),
                _ => None,
            };
            match column {
                Some(&j) => self.cells[j] = map.next_value::<Field<'de>>()?.0,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A field's value: a scalar as such, an array or object as a `Value`.
struct Field<'de>(Cell<'de>);

impl<'de> Deserialize<'de> for Field<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Field<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Field<'de>, E> {
                Ok(Field(Cell::Null))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Field<'de>, E> {
                Ok(Field(Cell::Bool(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Field<'de>, E> {
                Ok(Field(Cell::Num(v.into())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Field<'de>, E> {
                Ok(Field(Cell::Num(v.into())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Field<'de>, E> {
                // JSON text holds no infinity or NaN, so serde_json never hands one here.
                serde_json::Number::from_f64(v)
                    .map(|n| Field(Cell::Num(n)))
                    .ok_or_else(|| E::custom("a number that is not finite"))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Field<'de>, E> {
                Ok(Field(Cell::Str(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Field<'de>, E> {
                Ok(Field(Cell::Str(Cow::Owned(v.to_owned()))))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Field<'de>, A::Error> {
                let v = Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(Field(Cell::Other(Cow::Owned(v))))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Field<'de>, A::Error> {
                let v = Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Field(Cell::Other(Cow::Owned(v))))
            }
        }
        d.deserialize_any(V)
    }
}

fn finish_batch(
    arrow: SchemaRef,
    mut builders: Vec<ColumnBuilder>,
) -> Result<RecordBatch, Vec<RowError>> {
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

    #[test]
    fn rows_as_text_give_what_the_parsed_rows_give() {
        let mut batcher = JsonBatcher::new(schema());
        batcher.set_known_categories("season", &["winter".into(), "summer".into()]);
        let both = |texts: &[&str]| {
            let parsed: Vec<Value> = texts
                .iter()
                .map(|t| serde_json::from_str(t).unwrap())
                .collect();
            (batcher.batch_text(texts), batcher.batch(&parsed))
        };
        // Escapes (in keys and values), duplicates (the last one counts), integers for a
        // numeric feature, a number for a categorical one, fields the schema does not name
        // (nested too), nulls and an unknown category.
        let good = [
            r#"{"temp": 0.1, "season": "winter", "day": "2012-07-01", "extra": [1, {"a": 2}]}"#,
            r#"{"t\u0065mp": "1e3", "season": "sum\u006der", "day": null, "temp": 7}"#,
            r#"{"temp": 3, "season": 5, "day": "2012-07-02", "season": null}"#,
            r#"{"day": "2012-07-03", "season": "monsoon", "temp": -0.30000000000000004}"#,
        ];
        let (text, parsed) = both(&good);
        let (text, parsed) = (text.unwrap(), parsed.unwrap());
        assert_eq!(text.schema(), parsed.schema());
        assert_eq!(text.num_rows(), 4);
        assert_eq!(text.column(0), parsed.column(0));
        assert_eq!(text.column(2), parsed.column(2));
        assert_eq!(categories(&text, 1), categories(&parsed, 1));
        assert_eq!(text.column(0).as_primitive::<Float64Type>().value(1), 7.0);

        // The same errors, row for row and field for field.
        let bad = [
            r#"{"temp": "warm", "season": "winter", "day": "2012-07-01"}"#,
            r#"{"season": "winter", "day": "2012-13-45"}"#,
            "[1, 2]",
            r#"{"temp": {"x": 1}, "season": "a", "day": true}"#,
        ];
        let (text, parsed) = both(&bad);
        assert_eq!(text.unwrap_err(), parsed.unwrap_err());

        // Text that is no JSON object at all (which a parsed row cannot be): its row only.
        let errs = batcher
            .batch_text(&[good[0], r#"{"temp": 1"#, r#"{"temp": 1} x"#, "null"])
            .unwrap_err();
        let got: Vec<(usize, Option<&str>, &str)> = errs
            .iter()
            .map(|e| (e.row, e.field.as_deref(), e.code))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, None, "invalid_json"),
                (2, None, "invalid_json"),
                (3, None, "not_an_object"),
            ]
        );
        assert!(errs[1].message.contains("trailing"), "{}", errs[1].message);
        // Valid JSON syntax that no f64 holds is unreadable too, not a panic or an infinity.
        let errs = batcher
            .batch_text(&[r#"{"temp": 1e400, "season": "a", "day": "2012-07-01"}"#])
            .unwrap_err();
        assert_eq!(errs[0].code, "invalid_json");
        assert!(
            errs[0].message.contains("out of range"),
            "{}",
            errs[0].message
        );
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
