//! A training run: snapshot → split → feature pipeline → learner and baselines → evaluation →
//! one-file artifact → run record (→ registered model version).
//!
//! The run row is written as soon as the inputs are resolved and completed at the end; a run
//! that fails on its data (constant target, nothing left to train on) is recorded as failed
//! with the reason. Nothing time- or machine-dependent enters the artifact (timings live in the
//! run row), so the same snapshot, recipe and seed give a byte-identical model file, and
//! therefore the same artifact id.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Float64Type, Int32Type, TimestampMicrosecondType};
use arrow_array::{Array, BooleanArray, RecordBatch, UInt32Array};
use kiln_core::config::Config;
use kiln_core::id::ContentId;
use kiln_core::profile::{CategoryBuilder, ColumnProfile, ColumnStats, NumericBuilder, Profiler};
use kiln_core::schema::{FeatureType, Schema};
use kiln_core::table::arrow_schema;
use kiln_core::value::{format_days, format_timestamp, parse_date, parse_timestamp};
use kiln_data::DatasetRef;
use kiln_data::snapshot::{for_each_batch, resolve};
use kiln_model::artifact::{FORMAT_VERSION, Lineage, ModelArtifact, Monitoring, Reference};
use kiln_model::evaluate::{
    self, CrossValidation, DataSummary, Evaluation, MIN_SLICE_ROWS, MetricSet, TargetSummary,
};
use kiln_model::features::{ColumnTransform, Family, FeaturePipeline, FitOptions, Transformed};
use kiln_model::learner::{Fitted, Predictions, Task};
use kiln_model::loss::LossModel;
use kiln_model::metrics::calibration_curve;
use kiln_model::split::{Split, kfold, stratified_split, time_split, time_split_at};
use kiln_monitor::{ModelReference, TableSummary, ValidationOutcome};
use kiln_store::{DatasetVersion, ModelVersion, NewRun, RunResult, Store};
use serde::Serialize;

use crate::spec::{LearnerKind, SplitMethod, TrainSpec};
use crate::{Result, TrainError};

/// Training rows the linear baseline is fitted on, at most.
const LINEAR_BASELINE_ROWS: usize = 200_000;

/// Reports the step a run is on (the CLI shows it as a spinner).
pub trait Steps: Send + Sync {
    fn step(&self, what: &str);
}

/// No display.
pub struct Quiet;
impl Steps for Quiet {
    fn step(&self, _: &str) {}
}

/// What a finished run produced.
#[derive(Debug, Clone, Serialize)]
pub struct TrainOutcome {
    /// The run (none for an imported model).
    pub run_id: Option<i64>,
    pub dataset: String,
    pub dataset_version: i64,
    pub snapshot_id: ContentId,
    pub target: String,
    pub task: Task,
    pub classes: Vec<String>,
    pub artifact_id: ContentId,
    pub artifact_bytes: u64,
    pub evaluation: Evaluation,
    pub registered: Option<ModelVersion>,
    /// Seconds per step.
    pub timings: BTreeMap<String, f64>,
}

use crate::input;

/// Which dataset version to train on: the spec's, or the project's only dataset.
async fn dataset_version(store: &Store, spec: &TrainSpec) -> Result<DatasetVersion> {
    let r: DatasetRef = match &spec.dataset {
        Some(d) => d.parse()?,
        None => {
            let all = store.meta.datasets().await?;
            match all.as_slice() {
                [] => {
                    return Err(input(
                        "no datasets yet, so nothing to train on\nhint: `kiln data add FILE --dataset NAME` first",
                    ));
                }
                [one] => DatasetRef {
                    name: one.name.clone(),
                    version: None,
                },
                many => {
                    return Err(input(format!(
                        "this project has {} datasets ({}); say which to train on\nhint: kiln train --dataset NAME[@VERSION], or set `dataset` in [train] of kiln.toml",
                        many.len(),
                        many.iter()
                            .map(|d| d.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
            }
        }
    };
    Ok(resolve(store, &r).await?)
}

/// What a run or an import works on, resolved and checked before any work starts.
pub(crate) struct Resolved {
    pub version: DatasetVersion,
    pub target: String,
    pub time_column: Option<String>,
    pub method: SplitMethod,
}

/// Resolves the dataset version, target, exclusions and split of `spec`, with clear errors.
pub(crate) async fn resolve_inputs(
    store: &Store,
    config: &Config,
    spec: &TrainSpec,
) -> Result<Resolved> {
    let version = dataset_version(store, spec).await?;
    let label = format!("{}@{}", version.dataset, version.version);
    let record = store.meta.dataset(&version.dataset).await?;
    let target = spec
        .target
        .clone()
        .or_else(|| record.as_ref().and_then(|d| d.target.clone()))
        .or_else(|| config.dataset(&version.dataset).target)
        .ok_or_else(|| {
            input(format!(
                "no target to learn for `{}`\nhint: set `target` in [datasets.{}] of kiln.toml, or pass --set target=COLUMN",
                version.dataset, version.dataset
            ))
        })?;
    let columns = || version.schema.names().collect::<Vec<_>>().join(", ");
    let Some(target_col) = version.schema.column(&target) else {
        return Err(input(format!(
            "target `{target}` is not a column of {label}\nhint: columns: {}",
            columns()
        )));
    };
    if !matches!(
        target_col.ftype,
        FeatureType::Numeric | FeatureType::Categorical | FeatureType::Boolean
    ) {
        return Err(input(format!(
            "target `{target}` is a {} column; Kiln learns numeric (regression), categorical or boolean (classification) targets",
            target_col.ftype
        )));
    }
    for c in &spec.exclude {
        if version.schema.column(c).is_none() {
            return Err(input(format!(
                "excluded column `{c}` is not a column of {label}\nhint: columns: {}",
                columns()
            )));
        }
    }
    let time_column = record
        .as_ref()
        .and_then(|d| d.time_column.clone())
        .filter(|t| version.schema.column(t).is_some());
    let method = match (spec.split.method, &time_column) {
        (SplitMethod::Auto, Some(_)) | (SplitMethod::Time, Some(_)) => SplitMethod::Time,
        (SplitMethod::Time, None) => {
            return Err(input(format!(
                "split.method = \"time\" needs a time column, and `{}` has none\nhint: `kiln data add FILE --dataset {} --time-column COLUMN`, or --set split.method=random",
                version.dataset, version.dataset
            )));
        }
        _ => SplitMethod::Random,
    };
    if method == SplitMethod::Time && spec.split.folds >= 2 {
        return Err(input(
            "cross-validation (split.folds) mixes past and future rows, which a time split exists to prevent\nhint: --set split.method=random to cross-validate, or --set split.folds=0",
        ));
    }
    Ok(Resolved {
        version,
        target,
        time_column,
        method,
    })
}

/// Trains, evaluates and stores a model as a recorded run.
pub async fn train(
    store: &Store,
    config: &Config,
    scratch: &Path,
    spec: &TrainSpec,
    code_version: Option<String>,
    steps: Arc<dyn Steps>,
) -> Result<TrainOutcome> {
    train_against(store, config, scratch, spec, code_version, steps, None).await
}

/// A model already in production that a new one is compared with on the same validation
/// rows: those after the champion's own training data, when enough are (its metrics appear
/// under `champion`, the candidate's on the same rows under `challenger`).
#[derive(Clone)]
pub struct Champion {
    /// `NAME@VERSION`, for the record.
    pub label: String,
    pub artifact: Arc<ModelArtifact>,
    /// The latest time it learned from (microseconds), when its data had times.
    pub seen_until: Option<i64>,
}

/// Fewest validation rows a champion is compared on when only rows it never saw count.
const MIN_CHAMPION_ROWS: usize = 24;

impl Champion {
    pub fn new(label: String, artifact: Arc<ModelArtifact>) -> Self {
        let data = &artifact.evaluation.data;
        let refit = artifact.lineage.params["split"]["refit"].as_bool() == Some(true);
        let last = if refit {
            &data.valid_time
        } else {
            &data.train_time
        };
        let seen_until = last.as_ref().and_then(|(_, end)| {
            parse_timestamp(end).or_else(|| parse_date(end).map(|d| i64::from(d) * 86_400_000_000))
        });
        Self {
            label,
            artifact,
            seen_until,
        }
    }
}

/// The predictions of `rows`.
fn select(p: &Predictions, rows: &[usize]) -> Predictions {
    match p {
        Predictions::Values(v) => Predictions::Values(rows.iter().map(|r| v[*r]).collect()),
        Predictions::Probabilities { classes, data } => Predictions::Probabilities {
            classes: *classes,
            data: rows
                .iter()
                .flat_map(|r| data[r * classes..(r + 1) * classes].iter().copied())
                .collect(),
        },
    }
}

/// `train`, with the champion scored on the candidate's validation rows as well.
pub async fn train_against(
    store: &Store,
    config: &Config,
    scratch: &Path,
    spec: &TrainSpec,
    code_version: Option<String>,
    steps: Arc<dyn Steps>,
    champion: Option<Champion>,
) -> Result<TrainOutcome> {
    let Resolved {
        version,
        target,
        time_column,
        method,
    } = resolve_inputs(store, config, spec).await?;

    let run_id = store
        .meta
        .start_run(&NewRun {
            dataset: version.dataset.clone(),
            dataset_version: version.version,
            snapshot_id: version.snapshot_id.clone(),
            params: serde_json::to_value(spec).unwrap_or_default(),
            seed: spec.seed,
            code_version: code_version.clone(),
            kiln_version: kiln_core::KILN_VERSION.to_owned(),
        })
        .await?;
    let job = Job {
        store,
        scratch,
        spec,
        version: &version,
        target: &target,
        time_column: time_column.as_deref(),
        method,
        code_version,
        steps,
        given: None,
        champion,
    };
    match job.run(Some(run_id)).await {
        Ok(outcome) => Ok(outcome),
        Err(e) => {
            // Keep the reason with the run; the original error is what the caller sees.
            if let Err(record) = store.meta.fail_run(run_id, &e.to_string()).await {
                tracing::error!(run = run_id, error = %record, "could not record the failed run");
            }
            Err(e)
        }
    }
}

pub(crate) struct Job<'a> {
    pub store: &'a Store,
    pub scratch: &'a Path,
    pub spec: &'a TrainSpec,
    pub version: &'a DatasetVersion,
    pub target: &'a str,
    pub time_column: Option<&'a str>,
    pub method: SplitMethod,
    pub code_version: Option<String>,
    pub steps: Arc<dyn Steps>,
    /// An imported model to evaluate instead of learning one.
    pub given: Option<Given>,
    /// Scored on the same validation rows, when given.
    pub champion: Option<Champion>,
}

/// A model trained elsewhere: its input pipeline, the model, its class labels, and what to
/// record as its lineage parameters.
pub(crate) struct Given {
    pub pipeline: FeaturePipeline,
    pub model: Fitted,
    pub labels: Vec<String>,
    pub params: serde_json::Value,
}

/// The target as numbers (class indices for classifiers) and which rows have one.
struct Target {
    task: Task,
    classes: Vec<String>,
    /// One value per row; NaN where missing.
    values: Vec<f64>,
}

fn target_values(
    batch: &RecordBatch,
    name: &str,
    ftype: FeatureType,
    label: &str,
) -> Result<Target> {
    let array = batch
        .column_by_name(name)
        .ok_or_else(|| input(format!("target `{name}` is missing from {label}")))?;
    let n = array.len();
    match ftype {
        FeatureType::Numeric => {
            let a = array.as_primitive::<Float64Type>();
            let values: Vec<f64> = (0..n)
                .map(|i| {
                    if a.is_valid(i) && a.value(i).is_finite() {
                        a.value(i)
                    } else {
                        f64::NAN
                    }
                })
                .collect();
            Ok(Target {
                task: Task::Regression,
                classes: Vec::new(),
                values,
            })
        }
        _ => {
            let text: Vec<Option<String>> = match ftype {
                FeatureType::Boolean => {
                    let a = array.as_boolean();
                    (0..n)
                        .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
                        .collect()
                }
                _ => {
                    let d = array.as_dictionary::<Int32Type>();
                    let dict = d.values().as_string::<i32>();
                    d.keys()
                        .iter()
                        .map(|k| k.map(|k| dict.value(k as usize).to_owned()))
                        .collect()
                }
            };
            let mut classes: Vec<String> = text.iter().flatten().cloned().collect();
            classes.sort();
            classes.dedup();
            let values = text
                .iter()
                .map(|t| match t {
                    Some(t) => classes
                        .binary_search(t)
                        .map(|i| i as f64)
                        .unwrap_or(f64::NAN),
                    None => f64::NAN,
                })
                .collect();
            let task = if classes.len() <= 2 {
                Task::Binary
            } else {
                Task::Multiclass {
                    classes: classes.len(),
                }
            };
            Ok(Target {
                task,
                classes,
                values,
            })
        }
    }
}

/// Times of a date or timestamp column in microseconds since the epoch.
fn times_of(batch: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    let Some(a) = batch.column_by_name(name) else {
        return vec![None; batch.num_rows()];
    };
    if let Some(t) = a.as_primitive_opt::<TimestampMicrosecondType>() {
        t.iter().collect()
    } else if let Some(d) = a.as_primitive_opt::<Date32Type>() {
        d.iter()
            .map(|v| v.map(|days| i64::from(days) * 86_400_000_000))
            .collect()
    } else {
        vec![None; batch.num_rows()]
    }
}

fn format_time(micros: i64, is_date: bool) -> String {
    if is_date {
        format_days((micros / 86_400_000_000) as i32)
    } else {
        format_timestamp(micros)
    }
}

fn take(batch: &RecordBatch, rows: &[usize]) -> Result<RecordBatch> {
    let idx = UInt32Array::from(rows.iter().map(|r| *r as u32).collect::<Vec<_>>());
    arrow_select::take::take_record_batch(batch, &idx)
        .map_err(|e| TrainError::Io(std::io::Error::other(e)))
}

fn secs(t: Instant) -> f64 {
    (t.elapsed().as_secs_f64() * 1e4).round() / 1e4
}

impl Job<'_> {
    /// Reads the snapshot, fits (or takes the given model), evaluates, stores the artifact,
    /// completes the run (when there is one) and registers the version (when asked).
    pub(crate) async fn run(self, run_id: Option<i64>) -> Result<TrainOutcome> {
        let mut timings = BTreeMap::new();
        let label = format!("{}@{}", self.version.dataset, self.version.version);
        let schema = &self.version.schema;

        self.steps.step(&format!("reading {label}"));
        let t = Instant::now();
        let mut batches = Vec::new();
        for_each_batch(self.store, self.scratch, self.version, |b| {
            batches.push(b);
            Ok(())
        })
        .await?;
        let all = arrow_select::concat::concat_batches(&arrow_schema(schema), &batches)
            .map_err(|e| TrainError::Io(std::io::Error::other(e)))?;
        drop(batches);
        timings.insert("read".to_owned(), secs(t));

        let spec = self.spec;
        let target_type = schema
            .column(self.target)
            .map(|c| c.ftype)
            .unwrap_or(FeatureType::Numeric);
        // Training is CPU work: keep it off the async runtime's threads.
        let job = Prepared {
            all,
            schema: schema.clone(),
            target: self.target.to_owned(),
            target_type,
            label: label.clone(),
            time_column: self.time_column.map(str::to_owned),
            method: self.method,
            spec: spec.clone(),
            steps: self.steps.clone(),
            given: self.given,
            champion: self.champion,
        };
        let params = job
            .given
            .as_ref()
            .map(|g| g.params.clone())
            .unwrap_or_else(|| serde_json::to_value(spec).unwrap_or_default());
        let fitted = tokio::task::spawn_blocking(move || job.fit())
            .await
            .map_err(|e| TrainError::Io(std::io::Error::other(e)))??;
        timings.extend(fitted.timings.clone());

        self.steps.step("saving the model");
        let t = Instant::now();
        let artifact = ModelArtifact {
            format_version: FORMAT_VERSION,
            task: fitted.task,
            target: self.target.to_owned(),
            classes: fitted.classes.clone(),
            schema: fitted.inputs.clone(),
            pipeline: fitted.pipeline,
            model: fitted.model,
            baseline: fitted.baseline,
            evaluation: fitted.evaluation.clone(),
            reference: fitted.reference,
            monitoring: fitted.monitoring,
            lineage: Lineage {
                dataset: self.version.dataset.clone(),
                dataset_version: self.version.version,
                snapshot_id: self.version.snapshot_id.to_string(),
                params,
                seed: spec.seed,
                kiln_version: kiln_core::KILN_VERSION.to_owned(),
                code_version: self.code_version.clone(),
            },
        };
        let bytes = artifact.to_bytes()?;
        let size = bytes.len() as u64;
        let artifact_id = self.store.put_bytes("model", bytes.into()).await?;
        timings.insert("save".to_owned(), secs(t));

        if let Some(run_id) = run_id {
            let metrics = serde_json::to_value(&fitted.evaluation.metrics).unwrap_or_default();
            self.store
                .meta
                .finish_run(
                    run_id,
                    &RunResult {
                        metrics,
                        importance: serde_json::to_value(&fitted.evaluation.importance)
                            .unwrap_or_default(),
                        timings: serde_json::to_value(&timings).unwrap_or_default(),
                        artifact_id: artifact_id.clone(),
                    },
                )
                .await?;
        }
        let run_text = run_id.map(|r| r.to_string());
        let registered = match &spec.register {
            Some(name) => Some(
                self.store
                    .meta
                    .add_model_version(name, &artifact_id, run_text.as_deref())
                    .await?,
            ),
            None => None,
        };
        tracing::info!(run = ?run_id, artifact = %artifact_id, "model stored");
        Ok(TrainOutcome {
            run_id,
            dataset: self.version.dataset.clone(),
            dataset_version: self.version.version,
            snapshot_id: self.version.snapshot_id.clone(),
            target: self.target.to_owned(),
            task: fitted.task,
            classes: fitted.classes,
            artifact_id,
            artifact_bytes: size,
            evaluation: fitted.evaluation,
            registered,
            timings,
        })
    }
}

/// The CPU part of a run, on a blocking thread.
struct Prepared {
    all: RecordBatch,
    schema: Schema,
    target: String,
    target_type: FeatureType,
    label: String,
    time_column: Option<String>,
    method: SplitMethod,
    spec: TrainSpec,
    steps: Arc<dyn Steps>,
    given: Option<Given>,
    champion: Option<Champion>,
}

struct FitResult {
    task: Task,
    classes: Vec<String>,
    inputs: Schema,
    pipeline: FeaturePipeline,
    model: Fitted,
    baseline: Fitted,
    evaluation: Evaluation,
    reference: Reference,
    monitoring: Option<Monitoring>,
    timings: BTreeMap<String, f64>,
}

/// Maps the dataset's classes onto an imported classifier's labels (or checks a regressor
/// has a numeric target).
fn conform_target(
    g: &Given,
    task: Task,
    classes: Vec<String>,
    y: Vec<f64>,
    target: &str,
    label: &str,
) -> Result<(Task, Vec<String>, Vec<f64>)> {
    let model_task = g.model.task();
    match (model_task, task) {
        (Task::Regression, Task::Regression) => Ok((task, classes, y)),
        (Task::Regression, _) => Err(input(format!(
            "the ONNX model is a regressor, but the target `{target}` of {label} holds classes"
        ))),
        (_, Task::Regression) => Err(input(format!(
            "the ONNX model is a classifier (classes {}), but the target `{target}` of {label} is numeric\nhint: --target COLUMN names a categorical column with the model's class labels",
            g.labels.join(", ")
        ))),
        _ => {
            let mut map = Vec::with_capacity(classes.len());
            for c in &classes {
                let Some(k) = g.labels.iter().position(|l| l == c) else {
                    return Err(input(format!(
                        "the target `{target}` of {label} has the class `{c}`, which the ONNX model does not know (its classes: {})",
                        g.labels.join(", ")
                    )));
                };
                map.push(k as f64);
            }
            let y = y.iter().map(|v| map[*v as usize]).collect();
            Ok((model_task, g.labels.clone(), y))
        }
    }
}

fn family(learner: LearnerKind) -> Family {
    match learner {
        LearnerKind::Gbdt => Family::Trees,
        LearnerKind::Linear => Family::Linear,
    }
}

/// Fits the spec's learner on `x` with its seed.
fn fit_learner(
    spec: &TrainSpec,
    task: Task,
    x: &kiln_model::features::Transformed,
    y: &[f64],
    weights: Option<&[f64]>,
) -> Result<Fitted> {
    Ok(match spec.learner {
        LearnerKind::Gbdt => {
            Fitted::fit_gbdt_weighted(task, &spec.gbdt.params(spec.seed), x, y, weights)?
        }
        LearnerKind::Linear => Fitted::fit_linear(task, spec.linear.l2, x, y)?,
    })
}

/// Row weights halving every `recency_half_life` back from the latest training time; rows
/// without a time weigh as the oldest. `None` when the spec asks for no weights.
fn recency_weights(spec: &TrainSpec, times: &[Option<i64>]) -> Option<Vec<f64>> {
    let half_life = spec.half_life_micros()? as f64;
    let latest = times.iter().flatten().max().copied()?;
    let oldest = times.iter().flatten().min().copied().unwrap_or(latest);
    Some(
        times
            .iter()
            .map(|t| 0.5f64.powf((latest - t.unwrap_or(oldest)) as f64 / half_life))
            .collect(),
    )
}

/// The champion's metrics on the candidate's validation rows, when it predicts the same task
/// and classes.
fn champion_metrics(
    c: &Champion,
    task: Task,
    classes: &[String],
    valid: &RecordBatch,
    y: &[f64],
) -> Result<MetricSet> {
    if c.artifact.task != task || c.artifact.classes != classes {
        return Err(input(format!(
            "it predicts {:?} with classes [{}], the candidate {task:?} with [{}]",
            c.artifact.task,
            c.artifact.classes.join(", "),
            classes.join(", ")
        )));
    }
    let scored = c.artifact.score(valid)?;
    Ok(evaluate::score(task, classes, y, &scored.predictions)?)
}

impl Prepared {
    fn is_date(&self, column: &str) -> bool {
        self.schema
            .column(column)
            .map(|c| c.ftype == FeatureType::Date)
            .unwrap_or(true)
    }

    fn fit(mut self) -> Result<FitResult> {
        let imported = self.given.is_some();
        let empty = RecordBatch::new_empty(self.all.schema());
        let all = std::mem::replace(&mut self.all, empty);
        let mut timings = BTreeMap::new();
        let spec = &self.spec;
        let label = &self.label;
        let rows_total = all.num_rows() as u64;
        if rows_total == 0 {
            return Err(input(format!("{label} has no rows to train on")));
        }

        // Rows without a target cannot teach anything.
        let t = Instant::now();
        let raw = target_values(&all, &self.target, self.target_type, label)?;
        let keep: Vec<bool> = raw.values.iter().map(|v| v.is_finite()).collect();
        let kept = keep.iter().filter(|k| **k).count();
        let missing_target = rows_total - kept as u64;
        if kept == 0 {
            return Err(input(format!(
                "no row of {label} has a value for the target `{}` ({rows_total} rows, all missing): a training set with zero rows",
                self.target
            )));
        }
        let (batch, target) = if missing_target > 0 {
            let mask = BooleanArray::from(keep.clone());
            let b = arrow_select::filter::filter_record_batch(&all, &mask)
                .map_err(|e| TrainError::Io(std::io::Error::other(e)))?;
            // Re-derive classes from the kept rows only.
            let t = target_values(&b, &self.target, self.target_type, label)?;
            (b, t)
        } else {
            (all.clone(), raw)
        };
        drop(all);
        // A training window keeps the rows within `window` of the latest time.
        let mut window_text = None;
        let (batch, target) = match spec.window_micros() {
            None => (batch, target),
            Some(window) => {
                let Some(tc) = self.time_column.as_deref() else {
                    return Err(input(format!(
                        "window = \"{}\" keeps recent rows, and {label} has no time column\nhint: `kiln data add FILE --dataset NAME --time-column COLUMN`",
                        spec.window.as_deref().unwrap_or("")
                    )));
                };
                let times = times_of(&batch, tc);
                let latest = times.iter().flatten().max().copied().unwrap_or(i64::MIN);
                let from = latest.saturating_sub(window);
                let keep: Vec<bool> = times.iter().map(|t| t.is_some_and(|t| t > from)).collect();
                let kept = keep.iter().filter(|k| **k).count();
                window_text = Some(format!(
                    "window {}: {kept} of {} rows newer than {}",
                    spec.window.as_deref().unwrap_or(""),
                    batch.num_rows(),
                    format_time(from, self.is_date(tc))
                ));
                let mask = BooleanArray::from(keep);
                let b = arrow_select::filter::filter_record_batch(&batch, &mask)
                    .map_err(|e| TrainError::Io(std::io::Error::other(e)))?;
                let t = target_values(&b, &self.target, self.target_type, label)?;
                (b, t)
            }
        };
        let Target {
            task,
            classes,
            values: y,
        } = target;
        // An imported model fixes the task and the class order; the target must fit them.
        let (task, classes, y) = match &self.given {
            None => (task, classes, y),
            Some(g) => conform_target(g, task, classes, y, &self.target, label)?,
        };
        match task {
            Task::Regression => {
                let (lo, hi) = y
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                        (a.min(*v), b.max(*v))
                    });
                if lo == hi {
                    return Err(input(format!(
                        "the target `{}` is constant in {label} (every row is {lo}): there is nothing to learn",
                        self.target
                    )));
                }
            }
            _ if classes.len() < 2 => {
                return Err(input(format!(
                    "the target `{}` is constant in {label} (every row is `{}`): a classifier needs at least two classes",
                    self.target,
                    classes.first().map(String::as_str).unwrap_or("")
                )));
            }
            _ => {}
        }

        // Split.
        self.steps.step("splitting");
        let n = batch.num_rows();
        let labels: Option<Vec<usize>> =
            (task != Task::Regression).then(|| y.iter().map(|v| *v as usize).collect());
        let mut time_info = None;
        let mut champion_cut = None;
        let split: Split = match self.method {
            SplitMethod::Time => {
                let tc = self.time_column.clone().unwrap_or_default();
                let is_date = self.is_date(&tc);
                let times = times_of(&batch, &tc);
                let s = match &spec.split.cutoff {
                    Some(c) => {
                        let cutoff = parse_date(c)
                            .map(|d| i64::from(d) * 86_400_000_000)
                            .or_else(|| parse_timestamp(c))
                            .ok_or_else(|| {
                                input(format!(
                                    "split.cutoff `{c}` is not a date or timestamp (e.g. 2012-07-01)"
                                ))
                            })?;
                        time_split_at(&times, cutoff)
                    }
                    None => {
                        let s = time_split(&times, spec.split.valid_fraction)?;
                        // A champion that learned from some of the newest rows would be
                        // judged on rows it knows: validate on the rows after its data
                        // instead (the candidate's holdout fit then knows what it knew).
                        let after = self.champion.as_ref().and_then(|c| c.seen_until);
                        match after {
                            Some(until) => {
                                let unseen = s
                                    .valid
                                    .iter()
                                    .filter(|r| times[**r].is_some_and(|t| t > until))
                                    .count();
                                if unseen < s.valid.len() && unseen >= MIN_CHAMPION_ROWS {
                                    champion_cut = Some(format_time(until, is_date));
                                    time_split_at(&times, until + 1)
                                } else {
                                    s
                                }
                            }
                            None => s,
                        }
                    }
                };
                time_info = Some((tc, is_date, times));
                s
            }
            _ => stratified_split(n, labels.as_deref(), spec.split.valid_fraction, spec.seed)?,
        };
        let range = |rows: &[usize]| -> Option<(String, String)> {
            let (_, is_date, times) = time_info.as_ref()?;
            let ts: Vec<i64> = rows.iter().filter_map(|r| times[*r]).collect();
            Some((
                format_time(*ts.iter().min()?, *is_date),
                format_time(*ts.iter().max()?, *is_date),
            ))
        };
        let split_text = match (&time_info, &spec.split.cutoff) {
            (Some((tc, ..)), Some(c)) => {
                format!("time on `{tc}`: validate on rows at or after {c}")
            }
            (Some((tc, ..)), None) => match &champion_cut {
                Some(after) => format!(
                    "time on `{tc}`: validate on rows after {after}, where the champion's data ends"
                ),
                None => format!(
                    "time on `{tc}`: validate on the most recent {:.0}% of rows",
                    spec.split.valid_fraction * 100.0
                ),
            },
            (None, _) => format!(
                "random{}: {:.0}% of rows validate (seed {})",
                if labels.is_some() {
                    ", stratified by class"
                } else {
                    ""
                },
                spec.split.valid_fraction * 100.0,
                spec.seed
            ),
        };
        let split_text = match window_text {
            Some(w) => format!("{w}; {split_text}"),
            None => split_text,
        };
        if spec.half_life_micros().is_some() && time_info.is_none() {
            return Err(input(format!(
                "recency_half_life weighs rows by time, and {label} is split at random (no time column)\nhint: `kiln data add FILE --dataset NAME --time-column COLUMN`"
            )));
        }
        let train_times: Vec<Option<i64>> = match &time_info {
            Some((_, _, times)) => split.train.iter().map(|r| times[*r]).collect(),
            None => Vec::new(),
        };
        if split.train.is_empty() {
            return Err(input(format!(
                "the split leaves no rows to train on ({split_text}; {n} rows): a training set with zero rows\nhint: move split.cutoff later or lower split.valid_fraction"
            )));
        }
        if split.valid.is_empty() {
            return Err(input(format!(
                "the split leaves no rows to validate on ({split_text}; {n} rows)\nhint: move split.cutoff earlier or raise split.valid_fraction"
            )));
        }
        let train_batch = take(&batch, &split.train)?;
        let valid_batch = take(&batch, &split.valid)?;
        let y_train: Vec<f64> = split.train.iter().map(|i| y[*i]).collect();
        let y_valid: Vec<f64> = split.valid.iter().map(|i| y[*i]).collect();
        timings.insert("split".to_owned(), secs(t));

        let opts = FitOptions {
            target: self.target.clone(),
            exclude: spec.exclude.clone(),
        };

        // Cross-validation of the recipe, when asked.
        let cross_validation = if spec.split.folds >= 2 && self.given.is_none() {
            self.steps
                .step(&format!("cross-validating ({} folds)", spec.split.folds));
            let t = Instant::now();
            let folds = kfold(n, labels.as_deref(), spec.split.folds, spec.seed)?;
            let metric = evaluate::primary_metric(task).to_owned();
            let mut values = Vec::new();
            for f in &folds {
                let (bt, bv) = (take(&batch, &f.train)?, take(&batch, &f.valid)?);
                let yt: Vec<f64> = f.train.iter().map(|i| y[*i]).collect();
                let yv: Vec<f64> = f.valid.iter().map(|i| y[*i]).collect();
                let p = FeaturePipeline::fit(&self.schema, &bt, &yt, family(spec.learner), &opts)?;
                let m = fit_learner(spec, task, &p.transform(&bt)?, &yt, None)?;
                let pred = m.predict(&p.transform(&bv)?)?;
                let s = evaluate::score(task, &classes, &yv, &pred)?;
                values.push(s.get(&metric).copied().unwrap_or(f64::NAN));
            }
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>()
                / (values.len().max(2) - 1) as f64;
            timings.insert("cross_validation".to_owned(), secs(t));
            Some(CrossValidation {
                folds: spec.split.folds,
                metric,
                values,
                mean,
                std: var.sqrt(),
            })
        } else {
            None
        };

        // Fit.
        if !imported {
            self.steps.step(&format!(
                "fitting {} on {} rows",
                match spec.learner {
                    LearnerKind::Gbdt => "gradient-boosted trees",
                    LearnerKind::Linear => "a linear model",
                },
                split.train.len()
            ));
        }
        let t = Instant::now();
        let (pipeline, model) = match self.given.take() {
            Some(g) => (g.pipeline, g.model),
            None => {
                let pipeline = FeaturePipeline::fit(
                    &self.schema,
                    &train_batch,
                    &y_train,
                    family(spec.learner),
                    &opts,
                )?;
                let x_train = pipeline.transform(&train_batch)?;
                timings.insert("features".to_owned(), secs(t));
                let t = Instant::now();
                let weights = recency_weights(spec, &train_times);
                let model = fit_learner(spec, task, &x_train, &y_train, weights.as_deref())?;
                timings.insert("fit".to_owned(), secs(t));
                (pipeline, model)
            }
        };

        self.steps.step("evaluating against the baselines");
        let t = Instant::now();
        let baseline = Fitted::fit_baseline(task, &y_train)?;
        let x_valid = pipeline.transform(&valid_batch)?;
        let p_model = model.predict(&x_valid)?;
        let p_base = baseline.predict(&x_valid)?;
        let mut metrics: BTreeMap<String, MetricSet> = BTreeMap::new();
        metrics.insert(
            "model".into(),
            evaluate::score(task, &classes, &y_valid, &p_model)?,
        );
        metrics.insert(
            "baseline".into(),
            evaluate::score(task, &classes, &y_valid, &p_base)?,
        );
        let mut limitations = Vec::new();
        if let Some(c) = &self.champion {
            // Judge both on the validation rows the champion never learned from: rows up to
            // its last training time would flatter it.
            let times: Vec<Option<i64>> = match &time_info {
                Some((_, _, times)) => split.valid.iter().map(|r| times[*r]).collect(),
                None => Vec::new(),
            };
            let unseen: Vec<usize> = match c.seen_until {
                Some(until) if !times.is_empty() => (0..split.valid.len())
                    .filter(|i| times[*i].is_some_and(|t| t > until))
                    .collect(),
                _ => (0..split.valid.len()).collect(),
            };
            let rows = if unseen.len() >= MIN_CHAMPION_ROWS {
                if unseen.len() < split.valid.len() {
                    limitations.push(format!(
                        "the champion {} was compared on the {} validation rows after its own training data ended",
                        c.label,
                        unseen.len()
                    ));
                }
                unseen
            } else {
                limitations.push(format!(
                    "the champion {} learned from all but {} of the validation rows; it was compared on all {} of them",
                    c.label,
                    unseen.len(),
                    split.valid.len()
                ));
                (0..split.valid.len()).collect()
            };
            let subset = take(&valid_batch, &rows)?;
            let y_sub: Vec<f64> = rows.iter().map(|i| y_valid[*i]).collect();
            match champion_metrics(c, task, &classes, &subset, &y_sub) {
                Ok(m) => {
                    metrics.insert("champion".into(), m);
                    metrics.insert(
                        "challenger".into(),
                        evaluate::score(task, &classes, &y_sub, &select(&p_model, &rows))?,
                    );
                }
                Err(e) => limitations.push(format!(
                    "the champion {} could not be scored on the validation rows: {e}",
                    c.label
                )),
            }
        }
        if spec.learner == LearnerKind::Gbdt {
            // The linear baseline: what a simple model reaches on the same features. Its cost
            // grows with rows × one-hot columns², so big training sets lend it an evenly
            // spaced sample (validation always uses every row).
            let (lin_batch, lin_y) = if split.train.len() > LINEAR_BASELINE_ROWS {
                let step = split.train.len().div_ceil(LINEAR_BASELINE_ROWS);
                let rows: Vec<usize> = (0..split.train.len()).step_by(step).collect();
                limitations.push(format!(
                    "the linear baseline was fitted on every {step}th training row ({} of {})",
                    rows.len(),
                    split.train.len()
                ));
                let y: Vec<f64> = rows.iter().map(|i| y_train[*i]).collect();
                (take(&train_batch, &rows)?, y)
            } else {
                (train_batch.clone(), y_train.clone())
            };
            let linear =
                FeaturePipeline::fit(&self.schema, &lin_batch, &lin_y, Family::Linear, &opts)
                    .and_then(|p| {
                        let m = Fitted::fit_linear(
                            task,
                            spec.linear.l2,
                            &p.transform(&lin_batch)?,
                            &lin_y,
                        )?;
                        m.predict(&p.transform(&valid_batch)?)
                    })
                    .and_then(|p| evaluate::score(task, &classes, &y_valid, &p));
            match linear {
                Ok(m) => {
                    metrics.insert("linear".into(), m);
                }
                Err(e) => limitations.push(format!("the linear baseline could not be fitted: {e}")),
            }
        }
        let calibration = match (&p_model, task) {
            (Predictions::Probabilities { data, .. }, Task::Binary) => {
                let truth: Vec<bool> = y_valid.iter().map(|v| *v == 1.0).collect();
                let p1: Vec<f64> = data.chunks(2).map(|r| r[1]).collect();
                calibration_curve(&truth, &p1, 10).ok()
            }
            _ => None,
        };
        let mut skip = spec.exclude.clone();
        skip.push(self.target.clone());
        let slices = evaluate::slices(
            &self.schema,
            &valid_batch,
            &y_valid,
            &p_model,
            &p_base,
            &skip,
        );
        let mut importance = evaluate::importance(&model, &pipeline.features);

        // What the validation rows did not cover.
        limitations.extend(self.limitations(&pipeline, &train_batch, &valid_batch, &skip));
        for (col, count) in &x_valid.unknown {
            limitations.push(format!(
                "{count} validation rows have a `{col}` value never seen in training; the model treats it as missing"
            ));
        }
        if split.valid.len() < 1000 {
            limitations.push(format!(
                "validated on only {} rows: the metrics are noisy",
                split.valid.len()
            ));
        }
        if missing_target > 0 {
            limitations.push(format!(
                "{missing_target} rows without a target were left out of training and validation"
            ));
        }
        if !split.excluded.is_empty() {
            limitations.push(format!(
                "{} rows without a time were left out of the time split",
                split.excluded.len()
            ));
        }

        // Reference for monitoring: training rows, and predictions on validation rows.
        let mut profiler = Profiler::new(&self.schema);
        profiler.push(&train_batch);
        let prediction_profile = prediction_profile(&p_model, &classes);
        timings.insert("evaluate".to_owned(), secs(t));
        let t = Instant::now();
        let monitoring = match monitoring_reference(
            &pipeline,
            &train_batch,
            &self.target,
            &classes,
            (&x_valid, &p_model, &y_valid),
            spec.seed,
        ) {
            Ok(m) => Some(m),
            Err(e) => {
                limitations.push(format!(
                    "no monitoring reference could be built ({e}): drift and performance \
                     estimation will not run for this model"
                ));
                None
            }
        };
        timings.insert("monitoring_reference".to_owned(), secs(t));

        // Refit: the same recipe on every row, so the shipped model knows the newest ones.
        let model = if spec.split.refit && !imported {
            let t = Instant::now();
            self.steps.step("refitting on training and validation rows");
            let mut rows: Vec<usize> = split.train.iter().chain(&split.valid).copied().collect();
            rows.sort_unstable();
            let all_batch = take(&batch, &rows)?;
            let y_all: Vec<f64> = rows.iter().map(|i| y[*i]).collect();
            let times: Vec<Option<i64>> = match &time_info {
                Some((_, _, times)) => rows.iter().map(|r| times[*r]).collect(),
                None => Vec::new(),
            };
            let x_all = pipeline.transform(&all_batch)?;
            let weights = recency_weights(spec, &times);
            let refit = fit_learner(spec, task, &x_all, &y_all, weights.as_deref())?;
            importance = evaluate::importance(&refit, &pipeline.features);
            limitations.push(format!(
                "refit: the model shipped was fitted again on all {} training and validation rows after evaluation; the metrics above are those of the fit on the {} training rows",
                rows.len(),
                split.train.len()
            ));
            timings.insert("refit".to_owned(), secs(t));
            refit
        } else {
            model
        };

        let inputs = Schema::new(
            pipeline
                .columns
                .iter()
                .filter(|c| {
                    !matches!(
                        c.transform,
                        kiln_model::features::ColumnTransform::Dropped { .. }
                    )
                })
                .map(|c| kiln_core::schema::Column {
                    name: c.name.clone(),
                    ftype: c.ftype,
                })
                .collect(),
        );
        let evaluation = Evaluation {
            primary: evaluate::primary_metric(task).to_owned(),
            metrics,
            calibration,
            slices,
            importance,
            data: DataSummary {
                rows: rows_total,
                missing_target,
                missing_time: split.excluded.len() as u64,
                split: split_text,
                train_rows: split.train.len() as u64,
                valid_rows: split.valid.len() as u64,
                train_time: range(&split.train),
                valid_time: range(&split.valid),
                target: TargetSummary::of(task, &classes, &y_train),
            },
            cross_validation,
            limitations,
        };
        Ok(FitResult {
            task,
            classes,
            inputs,
            pipeline,
            model,
            baseline,
            evaluation,
            reference: Reference {
                features: profiler.finish(),
                predictions: prediction_profile,
            },
            monitoring,
            timings,
        })
    }

    /// Categories seen in training but absent (or rare) in validation, and numeric ranges
    /// validation did not reach.
    fn limitations(
        &self,
        pipeline: &FeaturePipeline,
        train: &RecordBatch,
        valid: &RecordBatch,
        skip: &[String],
    ) -> Vec<String> {
        let mut out = Vec::new();
        for col in &pipeline.columns {
            if skip.contains(&col.name)
                || matches!(
                    col.transform,
                    kiln_model::features::ColumnTransform::Dropped { .. }
                )
            {
                continue;
            }
            let (Some(tr), Some(va)) = (
                train.column_by_name(&col.name),
                valid.column_by_name(&col.name),
            ) else {
                continue;
            };
            match col.ftype {
                FeatureType::Categorical => {
                    let counts = |a: &dyn Array| -> BTreeMap<String, usize> {
                        // Count per dictionary key first: one string per distinct value,
                        // not one per row.
                        let mut m = BTreeMap::new();
                        if let Some(d) = a.as_dictionary_opt::<Int32Type>()
                            && let Some(v) = d.values().as_string_opt::<i32>()
                        {
                            let mut per_key = vec![0usize; v.len()];
                            for k in d.keys().iter().flatten() {
                                if let Some(c) = per_key.get_mut(k as usize) {
                                    *c += 1;
                                }
                            }
                            for (k, n) in per_key.into_iter().enumerate() {
                                if n > 0 {
                                    *m.entry(v.value(k).to_owned()).or_insert(0) += n;
                                }
                            }
                        }
                        m
                    };
                    let (ct, cv) = (counts(tr.as_ref()), counts(va.as_ref()));
                    let absent: Vec<&str> = ct
                        .keys()
                        .filter(|k| !cv.contains_key(*k))
                        .map(String::as_str)
                        .collect();
                    if !absent.is_empty() && absent.len() <= 20 {
                        out.push(format!(
                            "`{}` = {} never occurs in the validation rows: performance there is unmeasured",
                            col.name,
                            absent.join(", ")
                        ));
                    } else if absent.len() > 20 {
                        out.push(format!(
                            "{} values of `{}` never occur in the validation rows: performance there is unmeasured",
                            absent.len(),
                            col.name
                        ));
                    }
                    let rare: Vec<&str> = cv
                        .iter()
                        .filter(|(_, n)| **n < MIN_SLICE_ROWS)
                        .map(|(k, _)| k.as_str())
                        .collect();
                    if !rare.is_empty() && rare.len() <= 20 {
                        out.push(format!(
                            "`{}` = {} has fewer than {MIN_SLICE_ROWS} validation rows: too few to measure",
                            col.name,
                            rare.join(", ")
                        ));
                    }
                }
                FeatureType::Numeric => {
                    let range = |a: &dyn Array| -> Option<(f64, f64)> {
                        let p = a.as_primitive_opt::<Float64Type>()?;
                        let mut it = p.iter().flatten().filter(|v| v.is_finite());
                        let first = it.next()?;
                        Some(it.fold((first, first), |(lo, hi), v| (lo.min(v), hi.max(v))))
                    };
                    if let (Some((tl, th)), Some((vl, vh))) =
                        (range(tr.as_ref()), range(va.as_ref()))
                    {
                        let span = (th - tl).abs().max(f64::MIN_POSITIVE);
                        // Report only when validation misses a tenth of the training range.
                        if (vl - tl) / span > 0.1 || (th - vh) / span > 0.1 {
                            out.push(format!(
                                "`{}` spans {} .. {} in training but only {} .. {} in validation",
                                col.name,
                                kiln_core::table::format_number(tl),
                                kiln_core::table::format_number(th),
                                kiln_core::table::format_number(vl),
                                kiln_core::table::format_number(vh)
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        out
    }
}

/// The exact reference monitoring compares live windows with: the model's inputs and the
/// target on the training rows, its predictions and metrics on the validation rows, and (for
/// regressors) the loss model that estimates its error before labels arrive.
fn monitoring_reference(
    pipeline: &FeaturePipeline,
    train: &RecordBatch,
    target: &str,
    classes: &[String],
    (x_valid, predicted, y_valid): (&Transformed, &Predictions, &[f64]),
    seed: u64,
) -> std::result::Result<Monitoring, String> {
    let mut features = TableSummary::from_batch(train).map_err(|e| e.to_string())?;
    let target_summary = features
        .take_column(target)
        .ok_or_else(|| format!("the target `{target}` is neither numeric nor categorical"))?;
    features.retain(|name| {
        pipeline
            .columns
            .iter()
            .any(|c| c.name == name && !matches!(c.transform, ColumnTransform::Dropped { .. }))
    });
    let label = |k: usize| classes.get(k).map(String::as_str).unwrap_or("?");
    let (reference, loss) = match predicted {
        Predictions::Values(v) => {
            let outcome = ValidationOutcome::Regression {
                predicted: v,
                actual: y_valid,
            };
            let reference = ModelReference::build(features, target_summary, outcome)
                .map_err(|e| e.to_string())?;
            let loss = LossModel::fit(x_valid, v, y_valid, seed).map_err(|e| e.to_string())?;
            (reference, Some(loss))
        }
        Predictions::Probabilities { classes: k, data } => {
            let best = predicted.classes().unwrap_or_default();
            let predicted: Vec<&str> = best.iter().map(|c| label(*c)).collect();
            let actual: Vec<&str> = y_valid.iter().map(|y| label(*y as usize)).collect();
            let scores: Vec<f64> = data.chunks(*k).map(|r| r[r.len() - 1]).collect();
            let binary = (*k == 2).then(|| (label(1), scores.as_slice()));
            let outcome = ValidationOutcome::Classes {
                predicted: &predicted,
                actual: &actual,
                binary,
            };
            let reference = ModelReference::build(features, target_summary, outcome)
                .map_err(|e| e.to_string())?;
            (reference, None)
        }
    };
    Ok(Monitoring { reference, loss })
}

/// The profile of predictions: the values (regression) or the predicted classes.
fn prediction_profile(p: &Predictions, classes: &[String]) -> ColumnProfile {
    match p {
        Predictions::Values(v) => {
            let mut b = NumericBuilder::default();
            for x in v {
                b.push(*x);
            }
            let mut c = ColumnProfile::empty("prediction", FeatureType::Numeric);
            c.rows = v.len() as u64;
            c.stats = ColumnStats::Numeric(b.finish());
            c
        }
        Predictions::Probabilities { .. } => {
            let mut b = CategoryBuilder::default();
            let predicted = p.classes().unwrap_or_default();
            for k in &predicted {
                b.push_n(classes.get(*k).map(String::as_str).unwrap_or("?"), 1);
            }
            let mut c = ColumnProfile::empty("prediction", FeatureType::Categorical);
            c.rows = predicted.len() as u64;
            c.stats = ColumnStats::Categorical(b.finish());
            c
        }
    }
}
