//! The normalized Arrow representation of each Kiln feature type.
//!
//! Every snapshot stores a column of a given [`FeatureType`] the same way, whatever the input
//! format was, so readers (export, training, monitoring) handle six types, not every Arrow type.

use std::sync::Arc;

use crate::schema::{FeatureType, Schema};
use crate::value::{format_days, format_timestamp};
use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Float64Type, Int32Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, Field, Schema as ArrowSchema, TimeUnit};

/// The time zone of stored timestamps: UTC, spelled as an offset so Arrow needs no zone
/// database to read it.
pub const UTC_TZ: &str = "+00:00";

/// The Arrow type a feature type is stored as.
pub fn arrow_type(t: FeatureType) -> DataType {
    match t {
        FeatureType::Numeric => DataType::Float64,
        FeatureType::Categorical => {
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
        }
        FeatureType::Boolean => DataType::Boolean,
        FeatureType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC_TZ.into())),
        FeatureType::Date => DataType::Date32,
        FeatureType::Text => DataType::Utf8,
    }
}

/// Whether `t` is [`arrow_type`]`(ftype)`, without building that type (which allocates for
/// dictionaries and time zones: a check on every served request should not).
pub fn is_arrow_type(ftype: FeatureType, t: &DataType) -> bool {
    match (ftype, t) {
        (FeatureType::Numeric, DataType::Float64)
        | (FeatureType::Boolean, DataType::Boolean)
        | (FeatureType::Date, DataType::Date32)
        | (FeatureType::Text, DataType::Utf8) => true,
        (FeatureType::Categorical, DataType::Dictionary(k, v)) => {
            **k == DataType::Int32 && **v == DataType::Utf8
        }
        (FeatureType::Timestamp, DataType::Timestamp(TimeUnit::Microsecond, Some(tz))) => {
            &**tz == UTC_TZ
        }
        _ => false,
    }
}

/// The Arrow schema of a snapshot with this Kiln schema.
pub fn arrow_schema(schema: &Schema) -> Arc<ArrowSchema> {
    Arc::new(ArrowSchema::new(
        schema
            .columns
            .iter()
            .map(|c| Field::new(&c.name, arrow_type(c.ftype), true))
            .collect::<Vec<_>>(),
    ))
}

/// The feature type an input Arrow type maps to without parsing, if any.
/// Strings return `None`: their feature type comes from their values.
pub fn feature_type_of(dt: &DataType) -> Option<FeatureType> {
    match dt {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal128(_, _)
        | DataType::Decimal256(_, _) => Some(FeatureType::Numeric),
        DataType::Boolean => Some(FeatureType::Boolean),
        DataType::Date32 | DataType::Date64 => Some(FeatureType::Date),
        DataType::Timestamp(_, _) => Some(FeatureType::Timestamp),
        _ => None,
    }
}

/// A cell of a normalized column as text (empty for null), as export and reports show it.
pub fn cell_text(array: &ArrayRef, ftype: FeatureType, row: usize) -> String {
    if array.is_null(row) {
        return String::new();
    }
    match ftype {
        FeatureType::Numeric => format_number(array.as_primitive::<Float64Type>().value(row)),
        FeatureType::Categorical => {
            let dict = array.as_dictionary::<Int32Type>();
            let key = dict.keys().value(row) as usize;
            dict.values().as_string::<i32>().value(key).to_owned()
        }
        FeatureType::Boolean => array.as_boolean().value(row).to_string(),
        FeatureType::Timestamp => {
            format_timestamp(array.as_primitive::<TimestampMicrosecondType>().value(row))
        }
        FeatureType::Date => format_days(array.as_primitive::<Date32Type>().value(row)),
        FeatureType::Text => array.as_string::<i32>().value(row).to_owned(),
    }
}

/// Shortest text that reads back as the same float; integers without a trailing `.0`.
pub fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPES: [FeatureType; 6] = [
        FeatureType::Numeric,
        FeatureType::Categorical,
        FeatureType::Boolean,
        FeatureType::Timestamp,
        FeatureType::Date,
        FeatureType::Text,
    ];

    #[test]
    fn is_arrow_type_agrees_with_arrow_type() {
        for a in TYPES {
            for b in TYPES {
                assert_eq!(is_arrow_type(a, &arrow_type(b)), a == b, "{a:?} vs {b:?}");
            }
        }
        let other_zone = DataType::Timestamp(TimeUnit::Microsecond, Some("Europe/Paris".into()));
        assert!(!is_arrow_type(FeatureType::Timestamp, &other_zone));
        let wide_keys = DataType::Dictionary(Box::new(DataType::Int64), Box::new(DataType::Utf8));
        assert!(!is_arrow_type(FeatureType::Categorical, &wide_keys));
    }
}
