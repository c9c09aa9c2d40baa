//! The feature pipeline: learned from the training rows, shipped inside the model, and applied
//! by one function ([`FeaturePipeline::transform`]) wherever rows are scored.
//!
//! Training, batch scoring and serving all hand it normalized Arrow batches (see
//! [`kiln_core::table`]), so a row gets bit-identical features on every path.
//!
//! What each column becomes depends on the learner family:
//!
//! | column | trees | linear |
//! | --- | --- | --- |
//! | numeric | the value; missing stays NaN (trees route it) | median-imputed, plus a missing-indicator column when training had gaps |
//! | categorical | the category's rank by mean target on the training rows; unknown or missing → NaN | one-hot of the (at most 50) most frequent training categories; unknown or missing → all zeros |
//! | boolean | 0/1, missing NaN | 0/1, missing → the training mode |
//! | date, timestamp | hour (timestamps), day of week (Monday = 0), month, day of year, is-weekend | the same, missing → the training median of each part |
//! | text, target, excluded | dropped | dropped |
//!
//! Dates never enter as raw values (which a model could only extrapolate); their calendar parts
//! recur, so the time column contributes them like any other date.
//!
//! Categories unseen in training are counted per column in [`Transformed::unknown`], so
//! serving and monitoring can flag them instead of silently predicting on NaN.

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Float64Type, Int32Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use chrono::Datelike;
use kiln_core::schema::{FeatureType, Schema};
use serde::{Deserialize, Serialize};

use crate::ModelError;

/// Learners that want features prepared differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Trees,
    Linear,
}

/// Up to this many rows, categories are looked up by scanning rather than through a map.
const FEW_ROWS: usize = 8;

/// One-hot encodings keep at most this many categories per column.
pub const MAX_ONE_HOT: usize = 50;

/// What the pipeline does with one input column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ColumnTransform {
    Numeric {
        /// For linear models: the value that replaces a missing one.
        impute: Option<f64>,
        missing_indicator: bool,
    },
    /// Trees: each known category's code (rank by mean target, ties by name).
    Ordinal {
        codes: Vec<(String, f64)>,
    },
    /// Linear: one output column per category.
    OneHot {
        categories: Vec<String>,
    },
    Boolean {
        impute: Option<f64>,
    },
    Temporal {
        timestamp: bool,
        /// Medians of hour, day of week, month, day of year, is-weekend (linear only).
        impute: Option<[f64; 5]>,
    },
    Dropped {
        reason: String,
    },
}

/// One input column and its transform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub ftype: FeatureType,
    pub transform: ColumnTransform,
}

/// The fitted pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeaturePipeline {
    pub family: Family,
    pub columns: Vec<PipelineColumn>,
    /// Names of the output features, in matrix column order.
    pub features: Vec<String>,
}

/// A feature matrix, column-major (feature `j` of row `i` is `data[j * rows + i]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Transformed {
    pub data: Vec<f64>,
    pub rows: usize,
    pub features: usize,
    /// (column, rows whose category was not seen in training).
    pub unknown: Vec<(String, usize)>,
}

impl Transformed {
    pub fn get(&self, row: usize, feature: usize) -> f64 {
        self.data[feature * self.rows + row]
    }
}

/// What to leave out when fitting.
#[derive(Debug, Clone, Default)]
pub struct FitOptions {
    pub target: String,
    /// Columns that must never be features (e.g. leaks of the target).
    pub exclude: Vec<String>,
}

const TEMPORAL_PARTS: [&str; 5] = ["hour", "day_of_week", "month", "day_of_year", "is_weekend"];

/// Hour, day of week (Monday = 0), month, day of year, is-weekend of a day (and hour); `None`
/// for a day outside the calendar (only a corrupt file holds one), which is then missing.
fn date_parts(days: i64, hour: f64) -> Option<[f64; 5]> {
    let d = kiln_core::value::days_to_date(days)?;
    let dow = d.weekday().num_days_from_monday() as f64;
    Some([
        hour,
        dow,
        d.month() as f64,
        d.ordinal() as f64,
        if dow >= 5.0 { 1.0 } else { 0.0 },
    ])
}

/// The temporal parts of row `i`, `None` when missing.
fn temporal_at(array: &ArrayRef, timestamp: bool, i: usize) -> Option<[f64; 5]> {
    if array.is_null(i) {
        return None;
    }
    if timestamp {
        let micros = array.as_primitive::<TimestampMicrosecondType>().value(i);
        let secs = micros.div_euclid(1_000_000);
        date_parts(
            secs.div_euclid(86_400),
            (secs.rem_euclid(86_400) / 3600) as f64,
        )
    } else {
        date_parts(array.as_primitive::<Date32Type>().value(i) as i64, 0.0)
    }
}

/// The string of a categorical cell, `None` when missing.
fn category_at(array: &ArrayRef, i: usize) -> Option<&str> {
    if array.is_null(i) {
        return None;
    }
    let dict = array.as_dictionary::<Int32Type>();
    let k = dict.keys().value(i) as usize;
    Some(dict.values().as_string::<i32>().value(k))
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The column named `name` and its index, looked for first at `hint`. Batches of the model's
/// schema hold the pipeline's columns in its order, so one comparison finds each; a search by
/// name per column (most of them failing comparisons) was 0.6% of a server's CPU samples.
fn column<'a>(
    batch: &'a RecordBatch,
    hint: usize,
    name: &str,
) -> Result<(usize, &'a ArrayRef), ModelError> {
    let fields = batch.schema_ref().fields();
    let at = match fields.get(hint) {
        Some(f) if f.name() == name => hint,
        _ => fields
            .iter()
            .position(|f| f.name() == name)
            .ok_or_else(|| ModelError::Invalid(format!("column `{name}` is missing")))?,
    };
    Ok((at, batch.column(at)))
}

impl FeaturePipeline {
    /// Learns the pipeline from training rows (`batch`, in the normalized representation) and
    /// their numeric target (class index for classifiers).
    pub fn fit(
        schema: &Schema,
        batch: &RecordBatch,
        target: &[f64],
        family: Family,
        opts: &FitOptions,
    ) -> Result<Self, ModelError> {
        if batch.num_rows() == 0 {
            return Err(ModelError::Empty);
        }
        if target.len() != batch.num_rows() {
            return Err(ModelError::LengthMismatch {
                what: "rows vs target values",
                left: batch.num_rows(),
                right: target.len(),
            });
        }
        let mut columns = Vec::new();
        for (j, col) in schema.columns.iter().enumerate() {
            let dropped = |reason: &str| ColumnTransform::Dropped {
                reason: reason.to_owned(),
            };
            let transform = if col.name == opts.target {
                dropped("target")
            } else if opts.exclude.contains(&col.name) {
                dropped("excluded")
            } else {
                let (_, array) = column(batch, j, &col.name)?;
                fit_column(col.ftype, array, target, family)
            };
            columns.push(PipelineColumn {
                name: col.name.clone(),
                ftype: col.ftype,
                transform,
            });
        }
        let features = columns.iter().flat_map(output_names).collect();
        Ok(Self {
            family,
            columns,
            features,
        })
    }

    /// Turns rows into the feature matrix. The one code path of every scoring route.
    pub fn transform(&self, batch: &RecordBatch) -> Result<Transformed, ModelError> {
        let rows = batch.num_rows();
        let mut data = Vec::with_capacity(rows * self.features.len());
        let mut unknown = Vec::new();
        // Where the next column is expected in `batch`.
        let mut next = 0;
        for col in &self.columns {
            if matches!(col.transform, ColumnTransform::Dropped { .. }) {
                continue;
            }
            let (at, array) = column(batch, next, &col.name)?;
            next = at + 1;
            if !kiln_core::table::is_arrow_type(col.ftype, array.data_type()) {
                return Err(ModelError::Invalid(format!(
                    "column `{}` is {}, the model expects {}",
                    col.name,
                    array.data_type(),
                    kiln_core::table::arrow_type(col.ftype)
                )));
            }
            let mut unseen = 0usize;
            match &col.transform {
                ColumnTransform::Numeric {
                    impute,
                    missing_indicator,
                } => {
                    let a = array.as_primitive::<Float64Type>();
                    for i in 0..rows {
                        data.push(if a.is_null(i) {
                            impute.unwrap_or(f64::NAN)
                        } else {
                            a.value(i)
                        });
                    }
                    if *missing_indicator {
                        data.extend((0..rows).map(|i| f64::from(u8::from(a.is_null(i)))));
                    }
                }
                ColumnTransform::Ordinal { codes } => {
                    // A served request has a row or a few: scanning the codes beats building
                    // a hash map for them (the map pays off on batches).
                    let lookup: Option<HashMap<&str, f64>> = (rows > FEW_ROWS)
                        .then(|| codes.iter().map(|(k, v)| (k.as_str(), *v)).collect());
                    for i in 0..rows {
                        let code = category_at(array, i).map(|c| match &lookup {
                            Some(map) => map.get(c).copied(),
                            None => codes.iter().find(|(k, _)| k == c).map(|(_, v)| *v),
                        });
                        data.push(match code {
                            None => f64::NAN,
                            Some(Some(v)) => v,
                            Some(None) => {
                                unseen += 1;
                                f64::NAN
                            }
                        });
                    }
                }
                ColumnTransform::OneHot { categories } => {
                    let index: Option<HashMap<&str, usize>> = (rows > FEW_ROWS).then(|| {
                        categories
                            .iter()
                            .enumerate()
                            .map(|(j, c)| (c.as_str(), j))
                            .collect()
                    });
                    let start = data.len();
                    data.resize(start + rows * categories.len(), 0.0);
                    for i in 0..rows {
                        if let Some(c) = category_at(array, i) {
                            let found = match &index {
                                Some(map) => map.get(c).copied(),
                                None => categories.iter().position(|k| k == c),
                            };
                            match found {
                                Some(j) => data[start + j * rows + i] = 1.0,
                                None => unseen += 1,
                            }
                        }
                    }
                }
                ColumnTransform::Boolean { impute } => {
                    let a = array.as_boolean();
                    for i in 0..rows {
                        data.push(if a.is_null(i) {
                            impute.unwrap_or(f64::NAN)
                        } else {
                            f64::from(u8::from(a.value(i)))
                        });
                    }
                }
                ColumnTransform::Temporal { timestamp, impute } => {
                    let parts: Vec<Option<[f64; 5]>> = (0..rows)
                        .map(|i| temporal_at(array, *timestamp, i))
                        .collect();
                    for (p, _) in TEMPORAL_PARTS.iter().enumerate() {
                        if p == 0 && !timestamp {
                            continue;
                        }
                        for v in &parts {
                            data.push(match v {
                                Some(v) => v[p],
                                None => impute.map_or(f64::NAN, |m| m[p]),
                            });
                        }
                    }
                }
                ColumnTransform::Dropped { .. } => {}
            }
            if unseen > 0 {
                unknown.push((col.name.clone(), unseen));
            }
        }
        debug_assert_eq!(data.len(), rows * self.features.len());
        Ok(Transformed {
            data,
            rows,
            features: self.features.len(),
            unknown,
        })
    }
}

fn output_names(c: &PipelineColumn) -> Vec<String> {
    match &c.transform {
        ColumnTransform::Numeric {
            missing_indicator, ..
        } => {
            let mut v = vec![c.name.clone()];
            if *missing_indicator {
                v.push(format!("{}__missing", c.name));
            }
            v
        }
        ColumnTransform::Ordinal { .. } | ColumnTransform::Boolean { .. } => vec![c.name.clone()],
        ColumnTransform::OneHot { categories } => categories
            .iter()
            .map(|k| format!("{}={k}", c.name))
            .collect(),
        ColumnTransform::Temporal { timestamp, .. } => TEMPORAL_PARTS
            .iter()
            .enumerate()
            .filter(|(p, _)| *p > 0 || *timestamp)
            .map(|(_, part)| format!("{}__{part}", c.name))
            .collect(),
        ColumnTransform::Dropped { .. } => Vec::new(),
    }
}

fn fit_column(
    ftype: FeatureType,
    array: &ArrayRef,
    target: &[f64],
    family: Family,
) -> ColumnTransform {
    let rows = array.len();
    match ftype {
        FeatureType::Numeric => {
            let a = array.as_primitive::<Float64Type>();
            let has_missing = a.null_count() > 0;
            match family {
                Family::Trees => ColumnTransform::Numeric {
                    impute: None,
                    missing_indicator: false,
                },
                Family::Linear => ColumnTransform::Numeric {
                    impute: Some(median(a.iter().flatten().collect()).unwrap_or(0.0)),
                    missing_indicator: has_missing,
                },
            }
        }
        FeatureType::Categorical => {
            // (sum of target, count) per category, in a deterministic order.
            let mut stats: std::collections::BTreeMap<&str, (f64, usize)> = Default::default();
            for (i, y) in target.iter().enumerate().take(rows) {
                if let Some(c) = category_at(array, i) {
                    let e = stats.entry(c).or_insert((0.0, 0));
                    e.0 += y;
                    e.1 += 1;
                }
            }
            match family {
                Family::Trees => {
                    let mut by_mean: Vec<(&str, f64)> = stats
                        .iter()
                        .map(|(k, (s, n))| (*k, s / *n as f64))
                        .collect();
                    by_mean.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(b.0)));
                    ColumnTransform::Ordinal {
                        codes: by_mean
                            .into_iter()
                            .enumerate()
                            .map(|(rank, (k, _))| (k.to_owned(), rank as f64))
                            .collect(),
                    }
                }
                Family::Linear => {
                    let mut by_count: Vec<(&str, usize)> =
                        stats.iter().map(|(k, (_, n))| (*k, *n)).collect();
                    by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
                    by_count.truncate(MAX_ONE_HOT);
                    let mut categories: Vec<String> =
                        by_count.into_iter().map(|(k, _)| k.to_owned()).collect();
                    categories.sort();
                    ColumnTransform::OneHot { categories }
                }
            }
        }
        FeatureType::Boolean => {
            let a = array.as_boolean();
            let trues = a.true_count();
            let known = rows - a.null_count();
            ColumnTransform::Boolean {
                impute: match family {
                    Family::Trees => None,
                    Family::Linear => Some(f64::from(u8::from(trues * 2 > known))),
                },
            }
        }
        FeatureType::Timestamp | FeatureType::Date => {
            let timestamp = ftype == FeatureType::Timestamp;
            let impute = match family {
                Family::Trees => None,
                Family::Linear => {
                    let parts: Vec<[f64; 5]> = (0..rows)
                        .filter_map(|i| temporal_at(array, timestamp, i))
                        .collect();
                    let m = |p: usize| median(parts.iter().map(|v| v[p]).collect()).unwrap_or(0.0);
                    Some([m(0), m(1), m(2), m(3), m(4)])
                }
            };
            ColumnTransform::Temporal { timestamp, impute }
        }
        FeatureType::Text => ColumnTransform::Dropped {
            reason: "free text is not a feature yet".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::builder::{Float64Builder, StringDictionaryBuilder};
    use arrow_array::{Date32Array, Float64Array};
    use kiln_core::schema::Column;

    use super::*;

    fn batch(
        cats: &[Option<&str>],
        nums: &[Option<f64>],
        days: &[Option<i32>],
        y: &[f64],
    ) -> (Schema, RecordBatch) {
        let schema = Schema::new(vec![
            Column {
                name: "c".into(),
                ftype: FeatureType::Categorical,
            },
            Column {
                name: "x".into(),
                ftype: FeatureType::Numeric,
            },
            Column {
                name: "d".into(),
                ftype: FeatureType::Date,
            },
            Column {
                name: "y".into(),
                ftype: FeatureType::Numeric,
            },
        ]);
        let mut c = StringDictionaryBuilder::<Int32Type>::new();
        for v in cats {
            match v {
                Some(s) => c.append_value(s),
                None => c.append_null(),
            }
        }
        let mut x = Float64Builder::new();
        for v in nums {
            x.append_option(*v);
        }
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(c.finish()),
            Arc::new(x.finish()),
            Arc::new(Date32Array::from(days.to_vec())),
            Arc::new(Float64Array::from(y.to_vec())),
        ];
        let b = RecordBatch::try_new(kiln_core::table::arrow_schema(&schema), arrays).unwrap();
        (schema, b)
    }

    /// A Parquet date of i32::MAX days (or a timestamp of i64::MAX µs) in a snapshot panicked
    /// in `date_parts` when training or scoring (chrono's `NaiveDate + Duration` overflows);
    /// it is now a missing value.
    #[test]
    fn days_outside_the_calendar_are_missing_parts() {
        assert_eq!(date_parts(i64::from(i32::MAX), 0.0), None);
        assert_eq!(date_parts(i64::from(i32::MIN), 0.0), None);
        let dates: ArrayRef = Arc::new(Date32Array::from(vec![i32::MAX, 0]));
        assert_eq!(temporal_at(&dates, false, 0), None);
        assert_eq!(
            temporal_at(&dates, false, 1),
            Some([0.0, 3.0, 1.0, 1.0, 0.0]),
            "1970-01-01 was a Thursday"
        );
        let times: ArrayRef = Arc::new(
            arrow_array::TimestampMicrosecondArray::from(vec![i64::MAX, i64::MIN])
                .with_timezone("UTC"),
        );
        assert_eq!(temporal_at(&times, true, 0), None);
        assert_eq!(temporal_at(&times, true, 1), None);
    }

    fn opts() -> FitOptions {
        FitOptions {
            target: "y".into(),
            exclude: vec![],
        }
    }

    #[test]
    fn trees_rank_categories_by_mean_target_and_flag_unknown_ones() {
        let y = [10.0, 1.0, 5.0, 12.0];
        // Day 14975 is Saturday 2011-01-01; day 15034 is Tuesday 2011-03-01.
        let (schema, b) = batch(
            &[Some("hi"), Some("lo"), Some("mid"), Some("hi")],
            &[Some(1.0), None, Some(3.0), Some(4.0)],
            &[Some(14975), Some(14976), None, Some(15034)],
            &y,
        );
        let p = FeaturePipeline::fit(&schema, &b, &y, Family::Trees, &opts()).unwrap();
        assert_eq!(
            p.features,
            [
                "c",
                "x",
                "d__day_of_week",
                "d__month",
                "d__day_of_year",
                "d__is_weekend"
            ]
        );
        let t = p.transform(&b).unwrap();
        assert_eq!((t.get(0, 0), t.get(1, 0), t.get(2, 0)), (2.0, 0.0, 1.0));
        assert!(t.get(1, 1).is_nan(), "trees keep missing numbers as NaN");
        assert_eq!(
            [t.get(0, 2), t.get(0, 3), t.get(0, 4), t.get(0, 5)],
            [5.0, 1.0, 1.0, 1.0]
        );
        assert_eq!(
            [t.get(3, 2), t.get(3, 3), t.get(3, 4), t.get(3, 5)],
            [1.0, 3.0, 60.0, 0.0]
        );

        let (_, new) = batch(
            &[Some("new"), None],
            &[Some(1.0), Some(2.0)],
            &[None, None],
            &[0.0, 0.0],
        );
        let t = p.transform(&new).unwrap();
        assert!(t.get(0, 0).is_nan() && t.get(1, 0).is_nan());
        assert_eq!(t.unknown, vec![("c".to_owned(), 1)]);
    }

    /// Columns are found by name whatever their order: the lookup that tries the expected
    /// position first falls back to a search, and a missing column is still an error.
    #[test]
    fn columns_are_found_in_any_order() {
        let y = [10.0, 1.0, 5.0, 12.0];
        let (schema, b) = batch(
            &[Some("hi"), Some("lo"), Some("mid"), None],
            &[Some(1.0), None, Some(3.0), Some(4.0)],
            &[Some(14975), Some(14976), None, Some(15034)],
            &y,
        );
        // Bit for bit (missing values are NaN, which `==` never matches).
        let bits = |t: Transformed| {
            (
                t.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                t.rows,
                t.unknown,
            )
        };
        for family in [Family::Trees, Family::Linear] {
            let p = FeaturePipeline::fit(&schema, &b, &y, family, &opts()).unwrap();
            let want = bits(p.transform(&b).unwrap());
            assert_eq!(want.0.len(), 4 * p.features.len());
            let reordered = b.project(&[3, 2, 1, 0]).unwrap();
            assert_eq!(bits(p.transform(&reordered).unwrap()), want);
            // Without the target (as a request's rows come), and with `x` moved last.
            let no_target = b.project(&[0, 2, 1]).unwrap();
            assert_eq!(bits(p.transform(&no_target).unwrap()), want);
            let missing = b.project(&[0, 2, 3]).unwrap();
            let err = p.transform(&missing).unwrap_err().to_string();
            assert!(err.contains("column `x` is missing"), "{err}");
        }
    }

    #[test]
    fn linear_imputes_one_hot_encodes_and_survives_json() {
        let y = [1.0, 2.0, 3.0];
        let (schema, b) = batch(
            &[Some("a"), Some("b"), None],
            &[Some(1.0), None, Some(5.0)],
            &[Some(14975), None, Some(14977)],
            &y,
        );
        let p = FeaturePipeline::fit(&schema, &b, &y, Family::Linear, &opts()).unwrap();
        assert_eq!(&p.features[..4], ["c=a", "c=b", "x", "x__missing"]);
        let t = p.transform(&b).unwrap();
        assert_eq!(
            [t.get(0, 0), t.get(0, 1), t.get(2, 0), t.get(2, 1)],
            [1.0, 0.0, 0.0, 0.0]
        );
        assert_eq!(
            (t.get(1, 2), t.get(1, 3)),
            (3.0, 1.0),
            "median of 1 and 5, flagged"
        );
        // Saturday (5) and Monday (0): a missing date gets their median day of week.
        assert_eq!(t.get(1, 4), 2.5);

        // The pipeline ships inside the model: a JSON round trip gives the same features.
        let back: FeaturePipeline =
            serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
        let again = back.transform(&b).unwrap();
        assert_eq!(
            again.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            t.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn target_and_excluded_columns_are_never_features_dates_only_by_their_parts() {
        let y = [1.0, 2.0];
        let (schema, b) = batch(
            &[Some("a"), Some("b")],
            &[Some(1.0), Some(2.0)],
            &[Some(1), Some(2)],
            &y,
        );
        let o = FitOptions {
            target: "y".into(),
            exclude: vec!["x".into()],
        };
        let p = FeaturePipeline::fit(&schema, &b, &y, Family::Trees, &o).unwrap();
        assert_eq!(
            p.features,
            [
                "c",
                "d__day_of_week",
                "d__month",
                "d__day_of_year",
                "d__is_weekend"
            ]
        );
        assert!(FeaturePipeline::fit(&schema, &b, &[1.0], Family::Trees, &o).is_err());
    }
}
