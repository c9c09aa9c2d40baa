//! A monitoring window: everything monitoring needs from a stretch of the prediction log,
//! summarized exactly and mergeably, and its evaluation against the model's reference.
//!
//! A [`WindowState`] is fed logged predictions ([`WindowState::observe`]) and the labels that
//! came back for them ([`WindowState::add_labels`]). It keeps summaries, never rows: the
//! inputs as a [`TableSummary`], the predictions and (binary classifiers) the scores as exact
//! counts, the loss model's expected errors as sums (over an evenly spaced sample of each large batch: an
//! estimate needs no exactness, and it is the costliest part), latencies as counts. Labelled rows are
//! the exception: realized metrics with confidence intervals need the pairs, and labels are
//! the scarce part of the stream. Two states of the same window (two server replicas, or two
//! halves of a range) [`merge`](WindowState::merge) into the state of the whole.
//!
//! [`WindowState::evaluate`] turns a state into a [`WindowReport`]: data drift per input
//! against the training rows, prediction drift against the validation predictions, target
//! drift against the training target, realized metrics from the labels, estimated ones before
//! them (CBPE for binary classifiers, direct loss estimation for regressors), and latency.

use std::collections::BTreeMap;

use arrow_array::RecordBatch;
use kiln_data::rows::JsonBatcher;
use kiln_model::artifact::{ModelArtifact, Monitoring};
use kiln_model::features::ColumnTransform;
use kiln_monitor::performance::RealizedMetric;
use kiln_monitor::{
    CategoricalCounts, ColumnReport, ColumnSummary, DECISION_THRESHOLD, DriftReport, DriftSettings,
    NumericCounts, ReferenceTask, TableSummary, accuracy, drift_report, f1_score, mae, rmse,
    roc_auc,
};
use kiln_store::{LabelledPrediction, PredictionRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Result, WatchError};

/// The JSON batcher for a model's inputs, sharing one dictionary per categorical input of the
/// categories the model knows (what the server's door uses too).
pub fn json_batcher(artifact: &ModelArtifact) -> JsonBatcher {
    let mut batcher = JsonBatcher::new(artifact.schema.clone());
    for (column, known) in known_categories(artifact) {
        batcher.set_known_categories(&column, &known);
    }
    batcher
}

/// Each categorical input's categories as the model's pipeline knows them.
pub fn known_categories(artifact: &ModelArtifact) -> Vec<(String, Vec<String>)> {
    artifact
        .pipeline
        .columns
        .iter()
        .filter_map(|c| match &c.transform {
            ColumnTransform::Ordinal { codes } => Some((
                c.name.clone(),
                codes.iter().map(|(k, _)| k.clone()).collect(),
            )),
            ColumnTransform::OneHot { categories } => Some((c.name.clone(), categories.clone())),
            _ => None,
        })
        .collect()
}

/// Rows of one observed batch the loss model estimates at most (an evenly spaced sample).
const LOSS_SAMPLE_ROWS: usize = 128;

/// Sums of the loss model's expected errors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
struct LossSums {
    absolute: f64,
    squared: f64,
    rows: u64,
}

/// Labelled predictions of a window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Labelled {
    /// Regression: predicted and actual values.
    predicted: Vec<f64>,
    actual: Vec<f64>,
    /// Classification: predicted and actual labels; binary: the score of each.
    predicted_class: Vec<String>,
    actual_class: Vec<String>,
    scores: Vec<f64>,
    /// Labels that could not be read (not a number for a regressor, or not a scalar).
    unreadable: u64,
}

/// The exact, mergeable state of one monitoring window (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowState {
    /// Event-time bounds, microseconds since the epoch: `[start, end)`.
    pub start: i64,
    pub end: i64,
    /// Predictions observed.
    pub rows: u64,
    /// Logged rows whose input or output could not be read back.
    pub unreadable: u64,
    features: TableSummary,
    prediction: Option<ColumnSummary>,
    scores: Option<NumericCounts>,
    loss: LossSums,
    latency_us: Option<NumericCounts>,
    flags: BTreeMap<String, u64>,
    labelled: Labelled,
    target: Option<ColumnSummary>,
}

/// What a logged output holds.
enum Output {
    Value(f64),
    Class { label: String, score: Option<f64> },
}

fn parse_output(text: &str) -> Option<Output> {
    /// The logged output's fields read here, typed: no `Value` map per row. A field given
    /// twice is an error, and so no output, where a `Value` would keep the last.
    #[derive(Deserialize)]
    struct Logged<'a> {
        /// Present (even as `null`): a regression output, a number or unreadable.
        #[serde(default, deserialize_with = "present")]
        value: Option<Value>,
        #[serde(default, borrow)]
        class: Option<std::borrow::Cow<'a, str>>,
        #[serde(default)]
        probabilities: Option<Value>,
    }
    fn present<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Option<Value>, D::Error> {
        Value::deserialize(d).map(Some)
    }
    let v: Logged = serde_json::from_str(text).ok()?;
    if let Some(x) = v.value {
        return x.as_f64().map(Output::Value);
    }
    let label = v.class?.into_owned();
    let score = v
        .probabilities
        .as_ref()
        .and_then(Value::as_array)
        .filter(|p| p.len() == 2)
        .and_then(|p| p[1].as_f64());
    Some(Output::Class { label, score })
}

/// A label as text (classes) or number (regression).
fn label_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn merge_option<T: Clone>(
    a: &Option<T>,
    b: &Option<T>,
    merge: impl Fn(&T, &T) -> kiln_monitor::Result<T>,
) -> Result<Option<T>> {
    Ok(match (a, b) {
        (Some(a), Some(b)) => Some(merge(a, b)?),
        (Some(x), None) | (None, Some(x)) => Some(x.clone()),
        (None, None) => None,
    })
}

impl WindowState {
    /// An empty window over `[start, end)`.
    pub fn new(start: i64, end: i64) -> Self {
        Self {
            start,
            end,
            ..Self::default()
        }
    }

    /// Adds logged predictions of one model version (the caller routes each to its window).
    pub fn observe(
        &mut self,
        artifact: &ModelArtifact,
        monitoring: Option<&Monitoring>,
        batcher: &JsonBatcher,
        records: &[&PredictionRecord],
    ) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut inputs: Vec<&str> = Vec::with_capacity(records.len());
        let mut outputs = Vec::with_capacity(records.len());
        let mut latencies = Vec::with_capacity(records.len());
        for r in records {
            match parse_output(&r.output) {
                Some(output) => {
                    inputs.push(&r.features);
                    outputs.push(output);
                    latencies.push(r.latency_us as f64);
                }
                None => self.unreadable += 1,
            }
            if let Some(flags) = &r.flags
                && let Ok(list) = serde_json::from_str::<Vec<String>>(flags)
            {
                for f in list {
                    *self.flags.entry(f).or_insert(0) += 1;
                }
            }
        }
        if inputs.is_empty() {
            return Ok(());
        }
        // The logged text straight into the batch: no `Value` per row.
        let batch = match batcher.batch_text(&inputs) {
            Ok(b) => b,
            // Rows the door admitted fit the schema; rows from elsewhere may not. Keep the good.
            Err(bad) => {
                let bad: rustc_hash::FxHashSet<usize> = bad.iter().map(|e| e.row).collect();
                self.unreadable += bad.len() as u64;
                let keep = |i: &usize| !bad.contains(i);
                let idx: Vec<usize> = (0..inputs.len()).filter(keep).collect();
                inputs = idx.iter().map(|i| inputs[*i]).collect();
                outputs = idx
                    .iter()
                    .map(|i| std::mem::replace(&mut outputs[*i], Output::Value(f64::NAN)))
                    .collect();
                latencies = idx.iter().map(|i| latencies[*i]).collect();
                if inputs.is_empty() {
                    return Ok(());
                }
                batcher
                    .batch_text(&inputs)
                    .map_err(|e| WatchError::Invalid(format!("{} rows unreadable", e.len())))?
            }
        };
        self.rows += inputs.len() as u64;
        let summary = TableSummary::from_batch(&batch)?;
        self.features = self.features.merge(&summary)?;
        let latency = NumericCounts::from_values(&latencies);
        self.latency_us = merge_option(&self.latency_us, &Some(latency), NumericCounts::merge)?;

        let values: Vec<f64> = outputs
            .iter()
            .filter_map(|o| match o {
                Output::Value(v) => Some(*v),
                Output::Class { .. } => None,
            })
            .collect();
        let prediction = if values.len() == outputs.len() {
            self.add_loss(artifact, monitoring, &batch, &values);
            ColumnSummary::Numeric(NumericCounts::from_values(&values))
        } else {
            let labels = outputs.iter().map(|o| match o {
                Output::Class { label, .. } => Some(label.as_str()),
                Output::Value(_) => None,
            });
            let scores: Vec<f64> = outputs
                .iter()
                .filter_map(|o| match o {
                    Output::Class { score, .. } => *score,
                    Output::Value(_) => None,
                })
                .collect();
            if scores.len() == outputs.len() {
                let s = NumericCounts::from_values(&scores);
                self.scores = merge_option(&self.scores, &Some(s), NumericCounts::merge)?;
            }
            ColumnSummary::Categorical(CategoricalCounts::from_values(labels))
        };
        self.prediction = merge_option(&self.prediction, &Some(prediction), ColumnSummary::merge)?;
        Ok(())
    }

    /// Direct loss estimation: adds the expected errors of these rows.
    fn add_loss(
        &mut self,
        artifact: &ModelArtifact,
        monitoring: Option<&Monitoring>,
        batch: &RecordBatch,
        predicted: &[f64],
    ) {
        let Some(loss) = monitoring.and_then(|m| m.loss.as_ref()) else {
            return;
        };
        // The estimate is a mean over rows, so an evenly spaced sample of a large batch gives
        // it without bias at a fraction of the cost (two more forests and the pipeline per
        // row): the batch's expected errors are the sample's mean times its rows.
        let rows = predicted.len();
        let (sample, sampled): (std::borrow::Cow<'_, RecordBatch>, Vec<f64>) =
            if rows > LOSS_SAMPLE_ROWS {
                let step = rows.div_ceil(LOSS_SAMPLE_ROWS);
                let at: Vec<u32> = (0..rows).step_by(step).map(|i| i as u32).collect();
                let indices = arrow_array::UInt32Array::from(at.clone());
                match arrow_select::take::take_record_batch(batch, &indices) {
                    Ok(b) => (
                        std::borrow::Cow::Owned(b),
                        at.iter().map(|i| predicted[*i as usize]).collect(),
                    ),
                    Err(_) => return,
                }
            } else {
                (std::borrow::Cow::Borrowed(batch), predicted.to_vec())
            };
        let estimate = artifact
            .pipeline
            .transform(&sample)
            .and_then(|x| loss.estimate(&x, &sampled));
        if let Ok(e) = estimate {
            let n = rows as f64;
            self.loss.absolute += e.mae * n;
            self.loss.squared += e.rmse * e.rmse * n;
            self.loss.rows += rows as u64;
        }
    }

    /// Adds labels that came back for predictions of this window.
    pub fn add_labels(&mut self, task: &ReferenceTask, labelled: &[&LabelledPrediction]) {
        let mut numeric_targets = Vec::new();
        let mut class_targets: Vec<String> = Vec::new();
        for l in labelled {
            let (Some(output), Ok(label)) = (
                parse_output(&l.output),
                serde_json::from_str::<Value>(&l.label),
            ) else {
                self.labelled.unreadable += 1;
                continue;
            };
            match (task, output) {
                (ReferenceTask::Regression, Output::Value(p)) => match label.as_f64() {
                    Some(a) if a.is_finite() && p.is_finite() => {
                        self.labelled.predicted.push(p);
                        self.labelled.actual.push(a);
                        numeric_targets.push(a);
                    }
                    _ => self.labelled.unreadable += 1,
                },
                (
                    ReferenceTask::Binary { .. } | ReferenceTask::Multiclass,
                    Output::Class { label: p, score },
                ) => {
                    let Some(a) = label_text(&label) else {
                        self.labelled.unreadable += 1;
                        continue;
                    };
                    if let ReferenceTask::Binary { .. } = task {
                        match score {
                            Some(s) if s.is_finite() => self.labelled.scores.push(s),
                            _ => {
                                self.labelled.unreadable += 1;
                                continue;
                            }
                        }
                    }
                    self.labelled.predicted_class.push(p);
                    class_targets.push(a.clone());
                    self.labelled.actual_class.push(a);
                }
                _ => self.labelled.unreadable += 1,
            }
        }
        let add = if !numeric_targets.is_empty() {
            Some(ColumnSummary::Numeric(NumericCounts::from_values(
                &numeric_targets,
            )))
        } else if !class_targets.is_empty() {
            Some(ColumnSummary::Categorical(CategoricalCounts::from_values(
                class_targets.iter().map(|s| Some(s.as_str())),
            )))
        } else {
            None
        };
        if let Ok(t) = merge_option(&self.target, &add, ColumnSummary::merge) {
            self.target = t;
        }
    }

    /// Labelled predictions in the window.
    pub fn labelled_rows(&self) -> u64 {
        (self.labelled.actual.len() + self.labelled.actual_class.len()) as u64
    }

    /// The state of both windows' rows together (replicas of one window, or adjacent windows:
    /// the bounds widen to cover both).
    pub fn merge(&self, other: &WindowState) -> Result<WindowState> {
        let mut labelled = self.labelled.clone();
        let o = &other.labelled;
        labelled.predicted.extend_from_slice(&o.predicted);
        labelled.actual.extend_from_slice(&o.actual);
        labelled
            .predicted_class
            .extend(o.predicted_class.iter().cloned());
        labelled.actual_class.extend(o.actual_class.iter().cloned());
        labelled.scores.extend_from_slice(&o.scores);
        labelled.unreadable += o.unreadable;
        let mut flags = self.flags.clone();
        for (k, v) in &other.flags {
            *flags.entry(k.clone()).or_insert(0) += v;
        }
        Ok(WindowState {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
            rows: self.rows + other.rows,
            unreadable: self.unreadable + other.unreadable,
            features: self.features.merge(&other.features)?,
            prediction: merge_option(&self.prediction, &other.prediction, ColumnSummary::merge)?,
            scores: merge_option(&self.scores, &other.scores, NumericCounts::merge)?,
            loss: LossSums {
                absolute: self.loss.absolute + other.loss.absolute,
                squared: self.loss.squared + other.loss.squared,
                rows: self.loss.rows + other.loss.rows,
            },
            latency_us: merge_option(&self.latency_us, &other.latency_us, NumericCounts::merge)?,
            flags,
            labelled,
            target: merge_option(&self.target, &other.target, ColumnSummary::merge)?,
        })
    }

    /// The window's input summary.
    pub fn features(&self) -> &TableSummary {
        &self.features
    }

    /// The window's prediction summary.
    pub fn prediction(&self) -> Option<&ColumnSummary> {
        self.prediction.as_ref()
    }

    /// Evaluates the window against the model's reference.
    pub fn evaluate(&self, monitoring: &Monitoring, settings: &DriftSettings) -> WindowReport {
        let reference = &monitoring.reference;
        let mut notes = Vec::new();
        let mut report = WindowReport {
            start: self.start,
            end: self.end,
            rows: self.rows,
            unreadable_rows: self.unreadable,
            drift: None,
            prediction_drift: None,
            target_drift: None,
            labelled_rows: self.labelled_rows(),
            realized: Vec::new(),
            estimated: BTreeMap::new(),
            reference: reference.performance.clone(),
            latency_p50_ms: None,
            latency_p99_ms: None,
            flags: self.flags.clone(),
            notes: Vec::new(),
        };
        if self.rows > 0 {
            match drift_report(&reference.features, &self.features, settings) {
                Ok(d) => report.drift = Some(d),
                Err(e) => notes.push(format!("data drift: {e}")),
            }
        }
        let one =
            |name: &str, r: &ColumnSummary, c: Option<&ColumnSummary>, notes: &mut Vec<String>| {
                let c = c?;
                let table = |s: &ColumnSummary, rows| {
                    TableSummary::from_columns(rows, vec![(name.to_owned(), s.clone())])
                };
                let options = settings
                    .columns
                    .get(name)
                    .copied()
                    .unwrap_or(settings.default);
                let single = DriftSettings {
                    default: options,
                    ..DriftSettings::default()
                };
                match drift_report(&table(r, r.rows()), &table(c, c.rows()), &single) {
                    Ok(mut d) => d.columns.pop(),
                    Err(e) => {
                        notes.push(format!("{name} drift: {e}"));
                        None
                    }
                }
            };
        report.prediction_drift = one(
            "prediction",
            &reference.prediction,
            self.prediction.as_ref(),
            &mut notes,
        );
        report.target_drift = one(
            "target",
            &reference.target,
            self.target.as_ref(),
            &mut notes,
        );

        // Realized performance.
        let l = &self.labelled;
        let realized: Vec<kiln_monitor::Result<RealizedMetric>> = match &reference.task {
            ReferenceTask::Regression if !l.actual.is_empty() => {
                vec![mae(&l.predicted, &l.actual), rmse(&l.predicted, &l.actual)]
            }
            ReferenceTask::Binary { positive } if !l.actual_class.is_empty() => {
                let truth: Vec<bool> = l.actual_class.iter().map(|a| a == positive).collect();
                let t = DECISION_THRESHOLD;
                vec![
                    accuracy(&l.scores, &truth, t),
                    f1_score(&l.scores, &truth, t),
                    roc_auc(&l.scores, &truth),
                ]
            }
            ReferenceTask::Multiclass if !l.actual_class.is_empty() => {
                // Accuracy as a rate of right answers; the Wilson interval needs scores, so
                // feed it 1/0 "scores" against an all-true truth.
                let right: Vec<f64> = l
                    .predicted_class
                    .iter()
                    .zip(&l.actual_class)
                    .map(|(p, a)| if p == a { 1.0 } else { 0.0 })
                    .collect();
                vec![accuracy(&right, &vec![true; right.len()], 0.5)]
            }
            _ => Vec::new(),
        };
        for m in realized {
            match m {
                Ok(m) => report.realized.push(m),
                Err(e) => notes.push(format!("realized: {e}")),
            }
        }

        // Estimated performance.
        if self.loss.rows > 0 {
            let n = self.loss.rows as f64;
            report
                .estimated
                .insert("mae".into(), self.loss.absolute / n);
            report
                .estimated
                .insert("rmse".into(), (self.loss.squared / n).sqrt());
        }
        if let (Some(c), Some(scores)) = (&reference.calibrator, &self.scores) {
            let mut all = Vec::with_capacity(scores.finite_count() as usize);
            for (v, k) in scores.values().iter().zip(scores.counts()) {
                all.extend(std::iter::repeat_n(*v, *k as usize));
            }
            match c.estimate_performance(&all, DECISION_THRESHOLD) {
                Ok(e) => {
                    report.estimated.insert("accuracy".into(), e.accuracy);
                    report.estimated.insert("f1".into(), e.f1);
                    report.estimated.insert("roc_auc".into(), e.roc_auc);
                }
                Err(e) => notes.push(format!("estimated: {e}")),
            }
        }
        if let Some(lat) = &self.latency_us {
            report.latency_p50_ms = quantile(lat, 0.5).map(|v| v / 1000.0);
            report.latency_p99_ms = quantile(lat, 0.99).map(|v| v / 1000.0);
        }
        report.notes = notes;
        report
    }
}

/// The `q` quantile of a numeric summary (the smallest value with at least `q` of the rows at
/// or below it).
pub fn quantile(s: &NumericCounts, q: f64) -> Option<f64> {
    let total = s.finite_count();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (v, c) in s.values().iter().zip(s.counts()) {
        seen += c;
        if seen >= rank {
            return Some(*v);
        }
    }
    s.values().last().copied()
}

/// A window's evaluation: what monitoring reports and alerts on.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WindowReport {
    /// Event-time bounds, microseconds since the epoch: `[start, end)`.
    pub start: i64,
    pub end: i64,
    pub rows: u64,
    pub unreadable_rows: u64,
    /// Each input against the training rows, and the dataset verdict.
    pub drift: Option<DriftReport>,
    /// Predictions against the validation predictions.
    pub prediction_drift: Option<ColumnReport>,
    /// Labels against the training target.
    pub target_drift: Option<ColumnReport>,
    pub labelled_rows: u64,
    /// Metrics on the labelled rows, with 95% intervals.
    pub realized: Vec<RealizedMetric>,
    /// Metrics expected before labels: CBPE (`accuracy`, `f1`, `roc_auc`) or direct loss
    /// estimation (`mae`, `rmse`).
    pub estimated: BTreeMap<String, f64>,
    /// The same metrics on the validation rows at training.
    pub reference: BTreeMap<String, f64>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    /// Door flags (`unknown_category:season`, ...) by count.
    pub flags: BTreeMap<String, u64>,
    /// What could not be computed, and why.
    pub notes: Vec<String>,
}

impl WindowReport {
    /// The share of drifted inputs, when any could be tested.
    pub fn drift_share(&self) -> Option<f64> {
        self.drift.as_ref()?.dataset.as_ref().map(|d| d.share)
    }

    /// A realized metric by name.
    pub fn realized(&self, metric: &str) -> Option<&RealizedMetric> {
        self.realized.iter().find(|m| m.name == metric)
    }
}
