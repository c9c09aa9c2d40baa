//! Validation: the expectations declared in `kiln.toml` and the report of what broke them.
//!
//! Row rules (type, range, allowed values, regex, uniqueness, plus the reader's ragged-row and
//! bad-UTF-8 checks) mark individual rows bad; the dataset rule `max_null_fraction` judges the
//! file as a whole. The report counts every violation and keeps the first few in full (file,
//! row, line, column, value, rule) so a person can find and fix them.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Float64Type, Int32Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use kiln_core::config::{DatasetConfig, Policy};
use kiln_core::schema::{FeatureType, Schema};
use regex::Regex;
use serde::Serialize;

use kiln_core::table::format_number;

/// One broken expectation.
#[derive(Clone, Debug, Serialize)]
pub struct Violation {
    /// 1-based data row (the header is not a row); `None` for a rule about the whole file.
    pub row: Option<u64>,
    /// 1-based line in a CSV file, when known.
    pub line: Option<u64>,
    pub column: Option<String>,
    pub value: Option<String>,
    /// Machine-readable rule name: type, ragged_row, bad_utf8, range, allowed, regex, unique,
    /// max_null_fraction.
    pub rule: &'static str,
    pub message: String,
}

/// What validation found in one file.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ValidationReport {
    pub file: String,
    pub dataset: String,
    pub policy: Policy,
    pub rows_read: u64,
    pub bad_rows: u64,
    pub violations: u64,
    pub by_rule: BTreeMap<&'static str, u64>,
    /// The first violations, in file order.
    pub shown: Vec<Violation>,
    #[serde(skip)]
    pub max_shown: usize,
    /// The file was checked for scoring (`kiln predict`), not for ingest: the words change.
    #[serde(skip)]
    pub scoring: bool,
}

impl ValidationReport {
    pub fn new(file: String, dataset: String, policy: Policy, max_shown: usize) -> Self {
        Self {
            file,
            dataset,
            policy,
            max_shown,
            ..Default::default()
        }
    }

    pub fn push(&mut self, v: Violation) {
        self.violations += 1;
        *self.by_rule.entry(v.rule).or_insert(0) += 1;
        if self.shown.len() < self.max_shown {
            self.shown.push(v);
        }
    }

    pub fn is_clean(&self) -> bool {
        self.violations == 0
    }

    /// Whether a rule about the whole file failed (those reject under any policy).
    pub fn has_file_failure(&self) -> bool {
        self.by_rule.contains_key("max_null_fraction")
    }
}

impl fmt::Display for ValidationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: validation failed for dataset `{}`: {} violation(s) in {} of {} row(s); nothing was {}",
            self.file,
            self.dataset,
            self.violations,
            self.bad_rows,
            self.rows_read,
            if self.scoring { "scored" } else { "stored" }
        )?;
        for v in &self.shown {
            let mut at = Vec::new();
            if let Some(r) = v.row {
                at.push(format!("row {r}"));
            }
            if let Some(l) = v.line {
                at.push(format!("line {l}"));
            }
            if let Some(c) = &v.column {
                at.push(format!("column `{c}`"));
            }
            let at = if at.is_empty() {
                "file".to_owned()
            } else {
                at.join(", ")
            };
            writeln!(f, "  {at}: {} [{}]", v.message, v.rule)?;
        }
        if self.violations > self.shown.len() as u64 {
            writeln!(
                f,
                "  ... and {} more",
                self.violations - self.shown.len() as u64
            )?;
        }
        let rules: Vec<String> = self
            .by_rule
            .iter()
            .map(|(r, n)| format!("{r}: {n}"))
            .collect();
        writeln!(f, "  by rule: {}", rules.join(", "))?;
        if self.scoring {
            write!(
                f,
                "hint: rows to score must meet the expectations of [datasets.{}] in kiln.toml, like the rows the model learned from; fix or remove these rows",
                self.dataset
            )
        } else {
            write!(
                f,
                "hint: fix these rows, or set policy = \"quarantine\" under [datasets.{}] in kiln.toml to store bad rows aside",
                self.dataset
            )
        }
    }
}

/// Shortens a value for a message.
pub fn show_value(v: &str) -> String {
    let mut s: String = v.chars().take(60).collect();
    if v.chars().count() > 60 {
        s.push('…');
    }
    s
}

struct ColumnRules {
    index: usize,
    name: String,
    ftype: FeatureType,
    min: Option<f64>,
    max: Option<f64>,
    allowed: Option<HashSet<String>>,
    regex: Option<Regex>,
    unique: Option<HashSet<u64>>,
}

/// The compiled row rules of a dataset, applied batch by batch.
pub struct Rules {
    columns: Vec<ColumnRules>,
    /// (column name, limit) for `max_null_fraction`, checked on the profile at the end.
    pub null_limits: Vec<(String, f64)>,
}

impl Rules {
    /// Compiles the rules of `config` for `schema`. Regexes were checked when the config loaded.
    pub fn compile(schema: &Schema, config: &DatasetConfig) -> Self {
        let mut columns = Vec::new();
        let mut null_limits = Vec::new();
        for (index, col) in schema.columns.iter().enumerate() {
            let Some(c) = config.columns.get(&col.name) else {
                continue;
            };
            if let Some(limit) = c.max_null_fraction {
                null_limits.push((col.name.clone(), limit));
            }
            let regex = c.regex.as_deref().and_then(|r| Regex::new(r).ok());
            let has_row_rule = c.min.is_some()
                || c.max.is_some()
                || c.allowed.is_some()
                || regex.is_some()
                || c.unique;
            if has_row_rule {
                columns.push(ColumnRules {
                    index,
                    name: col.name.clone(),
                    ftype: col.ftype,
                    min: c.min,
                    max: c.max,
                    allowed: c.allowed.as_ref().map(|a| a.iter().cloned().collect()),
                    regex,
                    unique: c.unique.then(HashSet::new),
                });
            }
        }
        Self {
            columns,
            null_limits,
        }
    }

    /// Checks every row of `batch`; marks bad rows in `bad` and reports each violation.
    /// `first_row` is the 1-based row number of the batch's first row; `lines` (CSV) maps a
    /// batch row to its line in the file.
    pub fn check(
        &mut self,
        batch: &RecordBatch,
        first_row: u64,
        lines: &[u64],
        bad: &mut [bool],
        report: &mut ValidationReport,
    ) {
        for rule in &mut self.columns {
            let array = batch.column(rule.index);
            let mut fail = |i: usize, value: String, name: &'static str, message: String| {
                bad[i] = true;
                report.push(Violation {
                    row: Some(first_row + i as u64),
                    line: lines.get(i).copied(),
                    column: Some(rule.name.clone()),
                    value: Some(value),
                    rule: name,
                    message,
                });
            };
            match rule.ftype {
                FeatureType::Numeric => {
                    let values = array.as_primitive::<Float64Type>();
                    for i in 0..values.len() {
                        if values.is_null(i) {
                            continue;
                        }
                        let v = values.value(i);
                        let low = rule.min.is_some_and(|m| v < m);
                        let high = rule.max.is_some_and(|m| v > m);
                        if low || high {
                            let bound = match (rule.min, rule.max) {
                                (Some(a), Some(b)) => format!("[{a}, {b}]"),
                                (Some(a), None) => format!(">= {a}"),
                                (None, Some(b)) => format!("<= {b}"),
                                (None, None) => String::new(),
                            };
                            let shown = format_number(v);
                            fail(
                                i,
                                shown.clone(),
                                "range",
                                format!("value {shown} is outside {bound}"),
                            );
                        }
                    }
                }
                FeatureType::Categorical => {
                    let dict = array.as_dictionary::<Int32Type>();
                    let values = dict.values().as_string::<i32>();
                    // Judge each distinct value once, then every row by its key.
                    let verdicts: Vec<Option<(&'static str, String)>> = (0..values.len())
                        .map(|k| judge_string(rule, values.value(k)))
                        .collect();
                    for i in 0..dict.len() {
                        if dict.is_null(i) {
                            continue;
                        }
                        let k = dict.keys().value(i) as usize;
                        let v = values.value(k);
                        if let Some((name, msg)) = &verdicts[k] {
                            fail(i, show_value(v), name, msg.clone());
                        }
                    }
                }
                FeatureType::Text => {
                    let values = array.as_string::<i32>();
                    for i in 0..values.len() {
                        if values.is_null(i) {
                            continue;
                        }
                        let v = values.value(i);
                        if let Some((name, msg)) = judge_string(rule, v) {
                            fail(i, show_value(v), name, msg);
                        }
                    }
                }
                _ => {}
            }
            if let Some(seen) = &mut rule.unique {
                for i in 0..array.len() {
                    if let Some(key) = unique_key(array, rule.ftype, i)
                        && !seen.insert(key)
                    {
                        let shown = kiln_core::table::cell_text(array, rule.ftype, i);
                        fail(
                            i,
                            show_value(&shown),
                            "unique",
                            format!("value \"{}\" appears more than once", show_value(&shown)),
                        );
                    }
                }
            }
        }
    }

    /// Records the values already in the dataset (earlier parts of the version an append
    /// extends), so uniqueness holds across the whole new version, not just the new file.
    pub fn seed_unique(&mut self, batch: &RecordBatch) {
        for rule in &mut self.columns {
            if let Some(seen) = &mut rule.unique {
                let array = batch.column(rule.index);
                for i in 0..array.len() {
                    if let Some(key) = unique_key(array, rule.ftype, i) {
                        seen.insert(key);
                    }
                }
            }
        }
    }

    /// Whether any column must hold unique values.
    pub fn checks_uniqueness(&self) -> bool {
        self.columns.iter().any(|r| r.unique.is_some())
    }
}

/// A 64-bit key for a cell's value (`None` for null): the same value, the same key.
fn unique_key(array: &ArrayRef, ftype: FeatureType, i: usize) -> Option<u64> {
    if array.is_null(i) {
        return None;
    }
    let mut h = DefaultHasher::new();
    match ftype {
        FeatureType::Numeric => array
            .as_primitive::<Float64Type>()
            .value(i)
            .to_bits()
            .hash(&mut h),
        FeatureType::Boolean => array.as_boolean().value(i).hash(&mut h),
        FeatureType::Date => array.as_primitive::<Date32Type>().value(i).hash(&mut h),
        FeatureType::Timestamp => array
            .as_primitive::<TimestampMicrosecondType>()
            .value(i)
            .hash(&mut h),
        FeatureType::Categorical => {
            let dict = array.as_dictionary::<Int32Type>();
            let k = dict.keys().value(i) as usize;
            dict.values().as_string::<i32>().value(k).hash(&mut h)
        }
        FeatureType::Text => array.as_string::<i32>().value(i).hash(&mut h),
    }
    Some(h.finish())
}

fn judge_string(rule: &ColumnRules, v: &str) -> Option<(&'static str, String)> {
    if let Some(allowed) = &rule.allowed
        && !allowed.contains(v)
    {
        let mut list: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
        list.sort_unstable();
        return Some((
            "allowed",
            format!(
                "value \"{}\" is not one of the allowed values ({})",
                show_value(v),
                list.join(", ")
            ),
        ));
    }
    if let Some(re) = &rule.regex
        && !re.is_match(v)
    {
        return Some((
            "regex",
            format!(
                "value \"{}\" does not match /{}/",
                show_value(v),
                re.as_str()
            ),
        ));
    }
    None
}
