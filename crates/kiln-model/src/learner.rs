//! Learners: gradient-boosted trees (forust-ml), a linear/logistic baseline, and the trivial
//! baseline every evaluation reports beside the model.
//!
//! forust-ml is pure Rust, handles missing values natively and trains quickly, but offers only
//! squared loss and log loss: multiclass problems are fitted one-vs-rest and the class scores
//! normalized to probabilities. Its categorical handling is left to the feature pipeline
//! (target-ranked codes).
//!
//! Default parameters were chosen on the bike-sharing time split (train before 2012-07-01,
//! validate on the second half of 2012): 80 rounds at learning rate 0.15, depth 7, 63 leaves,
//! minimum leaf weight 20 reach validation RMSE 128.9 in 0.09 s on 2 cores, where LightGBM's
//! defaults reach 129.3 in 0.08 s.

use forust_ml::objective::ObjectiveType;
use forust_ml::{GradientBooster, Matrix};
use serde::{Deserialize, Serialize};

use std::sync::{Arc, OnceLock};

use kiln_onnx::{OnnxModel, OnnxOutput};

use crate::ModelError;
use crate::features::Transformed;
use crate::forest::Forest;

/// What a model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "lowercase")]
pub enum Task {
    Regression,
    /// Two classes: index 1 is the positive class.
    Binary,
    Multiclass {
        classes: usize,
    },
}

/// Parameters of the gradient-boosted trees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GbdtParams {
    pub iterations: usize,
    pub learning_rate: f32,
    pub max_depth: usize,
    pub max_leaves: usize,
    pub min_leaf_weight: f32,
    pub l2: f32,
    pub seed: u64,
}

impl Default for GbdtParams {
    fn default() -> Self {
        Self {
            iterations: 80,
            learning_rate: 0.15,
            max_depth: 7,
            max_leaves: 63,
            min_leaf_weight: 20.0,
            l2: 1.0,
            seed: 0,
        }
    }
}

/// A fitted model. Its JSON is an object tagged by `learner` (serde's internally tagged form);
/// it is read by the `Deserialize` below, not derived (see there).
#[derive(Serialize)]
#[serde(tag = "learner", rename_all = "snake_case")]
pub enum Fitted {
    /// One booster for regression and binary tasks, one per class (one-vs-rest) otherwise.
    Gbdt {
        task: Task,
        params: GbdtParams,
        boosters: Vec<GradientBooster>,
        /// The boosters flattened for scoring, built on first use (never stored).
        #[serde(skip)]
        forests: OnceLock<Vec<Option<Forest>>>,
    },
    /// The mean target (regression) or the class shares of the training rows.
    Baseline { task: Task, values: Vec<f64> },
    /// A model trained elsewhere and imported as ONNX (`kiln models import`), run by
    /// `kiln-onnx`. It takes the pipeline's features as one `[N, F]` float tensor.
    Onnx {
        task: Task,
        /// The model file, as imported (base64 in the artifact's JSON).
        #[serde(with = "base64_bytes")]
        onnx: Vec<u8>,
        /// Loaded on first use (never stored).
        #[serde(skip)]
        loaded: OnceLock<Result<Arc<OnnxModel>, String>>,
    },
    /// Ridge regression, or L2-regularized logistic regression (one-vs-rest for multiclass),
    /// on standardized features.
    Linear {
        task: Task,
        l2: f64,
        /// Per feature: (mean, standard deviation) of the training rows.
        scale: Vec<(f64, f64)>,
        /// Per output (1, or one per class): intercept then one weight per feature.
        weights: Vec<Vec<f64>>,
    },
}

/// Reads a [`Fitted`] field by field, each straight into its type. serde's derived reading of
/// an internally tagged enum first buffers the whole object as generic `Content` (a map or a
/// number per JSON token) and then reads the variant from that: for the bike model's 1.7 MB of
/// trees the buffer was most of what `kiln serve` allocated at start and at each model load
/// (3/4 of the page faults of a start, a 6.2 MiB peak above the settled RSS). Every field of
/// every variant has one type, so no field needs the tag to be read; the tag picks the variant
/// at the end. Fields no variant has are skipped, as the derived form does.
impl<'de> Deserialize<'de> for Fitted {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{Error, IgnoredAny, MapAccess, Visitor};

        #[derive(Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum Learner {
            Gbdt,
            Baseline,
            Onnx,
            Linear,
        }
        /// The ONNX bytes, as base64 text.
        struct OnnxBytes(Vec<u8>);
        impl<'de> Deserialize<'de> for OnnxBytes {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                base64_bytes::deserialize(d).map(OnnxBytes)
            }
        }
        #[derive(Default)]
        struct Fields {
            learner: Option<Learner>,
            task: Option<Task>,
            params: Option<GbdtParams>,
            boosters: Option<Vec<GradientBooster>>,
            values: Option<Vec<f64>>,
            onnx: Option<OnnxBytes>,
            l2: Option<f64>,
            scale: Option<Vec<(f64, f64)>>,
            weights: Option<Vec<Vec<f64>>>,
        }
        fn put<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
            slot: &mut Option<T>,
            name: &'static str,
            map: &mut A,
        ) -> Result<(), A::Error> {
            if slot.is_some() {
                return Err(A::Error::duplicate_field(name));
            }
            *slot = Some(map.next_value()?);
            Ok(())
        }

        struct FittedVisitor;
        impl<'de> Visitor<'de> for FittedVisitor {
            type Value = Fitted;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a fitted model: an object with a `learner` field")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fitted, A::Error> {
                let mut f = Fields::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        "learner" => put(&mut f.learner, "learner", &mut map)?,
                        "task" => put(&mut f.task, "task", &mut map)?,
                        "params" => put(&mut f.params, "params", &mut map)?,
                        "boosters" => put(&mut f.boosters, "boosters", &mut map)?,
                        "values" => put(&mut f.values, "values", &mut map)?,
                        "onnx" => put(&mut f.onnx, "onnx", &mut map)?,
                        "l2" => put(&mut f.l2, "l2", &mut map)?,
                        "scale" => put(&mut f.scale, "scale", &mut map)?,
                        "weights" => put(&mut f.weights, "weights", &mut map)?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                let learner = f
                    .learner
                    .ok_or_else(|| A::Error::missing_field("learner"))?;
                let task = f.task.ok_or_else(|| A::Error::missing_field("task"))?;
                fn need<T, E: Error>(v: Option<T>, name: &'static str) -> Result<T, E> {
                    v.ok_or_else(|| E::missing_field(name))
                }
                Ok(match learner {
                    Learner::Gbdt => Fitted::Gbdt {
                        task,
                        // `params` has defaults for each of its fields, not for itself.
                        params: need(f.params, "params")?,
                        boosters: need(f.boosters, "boosters")?,
                        forests: OnceLock::new(),
                    },
                    Learner::Baseline => Fitted::Baseline {
                        task,
                        values: need(f.values, "values")?,
                    },
                    Learner::Onnx => Fitted::Onnx {
                        task,
                        onnx: need(f.onnx, "onnx")?.0,
                        loaded: OnceLock::new(),
                    },
                    Learner::Linear => Fitted::Linear {
                        task,
                        l2: need(f.l2, "l2")?,
                        scale: need(f.scale, "scale")?,
                        weights: need(f.weights, "weights")?,
                    },
                })
            }
        }

        d.deserialize_map(FittedVisitor)
    }
}

/// Predictions for a batch of rows.
#[derive(Debug, Clone, PartialEq)]
pub enum Predictions {
    Values(Vec<f64>),
    /// Row-major class probabilities, `classes` per row.
    Probabilities {
        classes: usize,
        data: Vec<f64>,
    },
}

impl Predictions {
    /// The most likely class of each row (regression: none).
    pub fn classes(&self) -> Option<Vec<usize>> {
        match self {
            Predictions::Values(_) => None,
            Predictions::Probabilities { classes, data } => Some(
                data.chunks(*classes)
                    .map(|row| {
                        let mut best = 0;
                        for (c, p) in row.iter().enumerate() {
                            if *p > row[best] {
                                best = c;
                            }
                        }
                        best
                    })
                    .collect(),
            ),
        }
    }
}

fn classes_of(task: Task) -> usize {
    match task {
        Task::Regression => 1,
        Task::Binary => 2,
        Task::Multiclass { classes } => classes,
    }
}

fn check_target(task: Task, y: &[f64]) -> Result<(), ModelError> {
    if y.iter().any(|v| !v.is_finite()) {
        return Err(ModelError::Invalid(
            "the target has missing or infinite values".into(),
        ));
    }
    let k = classes_of(task);
    if task != Task::Regression
        && y.iter()
            .any(|v| v.fract() != 0.0 || *v < 0.0 || *v >= k as f64)
    {
        return Err(ModelError::Invalid(format!(
            "class labels must be indices 0..{k}"
        )));
    }
    Ok(())
}

/// Rows to learn from, one target per row, and targets that fit the task.
fn check_inputs(task: Task, x: &Transformed, y: &[f64]) -> Result<(), ModelError> {
    if x.rows == 0 {
        return Err(ModelError::Empty);
    }
    if y.len() != x.rows {
        return Err(ModelError::LengthMismatch {
            what: "rows vs target values",
            left: x.rows,
            right: y.len(),
        });
    }
    check_target(task, y)
}

/// Batches at least this large are scored on all cores (each row's result is the same either way).
const PARALLEL_ROWS: usize = 4096;

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl Fitted {
    /// Fits gradient-boosted trees on the features `x` and target `y` (class indices for
    /// classification).
    pub fn fit_gbdt(
        task: Task,
        params: &GbdtParams,
        x: &Transformed,
        y: &[f64],
    ) -> Result<Self, ModelError> {
        Self::fit_gbdt_weighted(task, params, x, y, None)
    }

    /// `fit_gbdt` with a weight per row (e.g. recency weights); `None` weighs every row 1.
    pub fn fit_gbdt_weighted(
        task: Task,
        params: &GbdtParams,
        x: &Transformed,
        y: &[f64],
        weights: Option<&[f64]>,
    ) -> Result<Self, ModelError> {
        check_inputs(task, x, y)?;
        let ones;
        let weights = match weights {
            Some(w) => {
                if w.len() != x.rows {
                    return Err(ModelError::LengthMismatch {
                        what: "rows vs row weights",
                        left: x.rows,
                        right: w.len(),
                    });
                }
                if w.iter().any(|v| !v.is_finite() || *v < 0.0) || !w.iter().any(|v| *v > 0.0) {
                    return Err(ModelError::Invalid(
                        "row weights must be finite, non-negative and not all zero".into(),
                    ));
                }
                w
            }
            None => {
                ones = vec![1.0; x.rows];
                &ones[..]
            }
        };
        let matrix = Matrix::new(&x.data, x.rows, x.features);
        let fit_one =
            |objective: ObjectiveType, target: &[f64]| -> Result<GradientBooster, ModelError> {
                let mut b = GradientBooster::default()
                    .set_objective_type(objective)
                    .set_iterations(params.iterations)
                    .set_learning_rate(params.learning_rate)
                    .set_max_depth(params.max_depth)
                    .set_max_leaves(params.max_leaves)
                    .set_min_leaf_weight(params.min_leaf_weight)
                    .set_l2(params.l2)
                    .set_seed(params.seed)
                    // Row-wise histograms from a tiled copy of the bins: 1.7× faster on
                    // flights-3m (2.5M rows, 8 features) with the same validation RMSE.
                    .set_tiled_histograms(true);
                b.fit(&matrix, target, weights, None)
                    .map_err(|e| ModelError::Invalid(format!("training failed: {e}")))?;
                Ok(b)
            };
        let boosters = match task {
            Task::Regression => vec![fit_one(ObjectiveType::SquaredLoss, y)?],
            Task::Binary => vec![fit_one(ObjectiveType::LogLoss, y)?],
            Task::Multiclass { classes } => (0..classes)
                .map(|c| {
                    let is_c: Vec<f64> = y
                        .iter()
                        .map(|v| f64::from(u8::from(*v as usize == c)))
                        .collect();
                    fit_one(ObjectiveType::LogLoss, &is_c)
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(Fitted::Gbdt {
            task,
            params: params.clone(),
            boosters,
            forests: OnceLock::new(),
        })
    }

    /// The trivial baseline: the training mean, or the training class shares.
    pub fn fit_baseline(task: Task, y: &[f64]) -> Result<Self, ModelError> {
        if y.is_empty() {
            return Err(ModelError::Empty);
        }
        check_target(task, y)?;
        let values = match task {
            Task::Regression => vec![y.iter().sum::<f64>() / y.len() as f64],
            _ => {
                let k = classes_of(task);
                let mut counts = vec![0.0; k];
                for v in y {
                    counts[*v as usize] += 1.0;
                }
                counts.iter().map(|c| c / y.len() as f64).collect()
            }
        };
        Ok(Fitted::Baseline { task, values })
    }

    /// Fits the linear baseline: ridge regression for regression tasks, logistic regression
    /// (Newton's method) for classification. Features are standardized on the training rows;
    /// missing values (which the linear pipeline imputes) count as the mean.
    pub fn fit_linear(task: Task, l2: f64, x: &Transformed, y: &[f64]) -> Result<Self, ModelError> {
        check_inputs(task, x, y)?;
        let scale: Vec<(f64, f64)> = (0..x.features)
            .map(|j| {
                let col = &x.data[j * x.rows..(j + 1) * x.rows];
                let known: Vec<f64> = col.iter().copied().filter(|v| v.is_finite()).collect();
                let n = known.len().max(1) as f64;
                let mean = known.iter().sum::<f64>() / n;
                let var = known.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
                (mean, if var > 0.0 { var.sqrt() } else { 1.0 })
            })
            .collect();
        let design = standardize(x, &scale);
        let outputs: Vec<Vec<f64>> = match task {
            Task::Regression => vec![y.to_vec()],
            Task::Binary => vec![y.to_vec()],
            Task::Multiclass { classes } => (0..classes)
                .map(|c| {
                    y.iter()
                        .map(|v| f64::from(u8::from(*v as usize == c)))
                        .collect()
                })
                .collect(),
        };
        let weights = outputs
            .iter()
            .map(|target| match task {
                Task::Regression => ridge(&design, x.rows, x.features, target, l2),
                _ => logistic(&design, x.rows, x.features, target, l2),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Fitted::Linear {
            task,
            l2,
            scale,
            weights,
        })
    }

    pub fn task(&self) -> Task {
        match self {
            Fitted::Gbdt { task, .. }
            | Fitted::Baseline { task, .. }
            | Fitted::Onnx { task, .. }
            | Fitted::Linear { task, .. } => *task,
        }
    }

    /// Wraps an ONNX model file, checking that it loads, takes `features` inputs and gives
    /// what `task` needs. Returns the model and the class labels (classifiers).
    pub fn from_onnx(onnx: Vec<u8>, features: usize) -> Result<(Self, Vec<String>), ModelError> {
        let model = OnnxModel::from_bytes(&onnx).map_err(|e| ModelError::Invalid(e.to_string()))?;
        if model.features() != features {
            return Err(ModelError::Invalid(format!(
                "the ONNX model takes {} input features, the schema names {features}",
                model.features()
            )));
        }
        let (task, labels) = match model.output() {
            OnnxOutput::Values => (Task::Regression, Vec::new()),
            OnnxOutput::Probabilities { labels } if labels.len() == 2 => {
                (Task::Binary, labels.clone())
            }
            OnnxOutput::Probabilities { labels } if labels.len() > 2 => (
                Task::Multiclass {
                    classes: labels.len(),
                },
                labels.clone(),
            ),
            OnnxOutput::Probabilities { labels } => {
                return Err(ModelError::Invalid(format!(
                    "the ONNX classifier has {} class(es); at least two are needed",
                    labels.len()
                )));
            }
        };
        let loaded = OnceLock::new();
        let _ = loaded.set(Ok(Arc::new(model)));
        Ok((Fitted::Onnx { task, onnx, loaded }, labels))
    }

    /// Predicts every row of `x`. Deterministic: the same model and features give the same
    /// bits, whatever the number of threads. Only an imported model can fail here.
    pub fn predict(&self, x: &Transformed) -> Result<Predictions, ModelError> {
        let matrix = Matrix::new(&x.data, x.rows, x.features);
        Ok(match self {
            Fitted::Onnx {
                task, onnx, loaded, ..
            } => {
                let model = loaded
                    .get_or_init(|| {
                        OnnxModel::from_bytes(onnx)
                            .map(Arc::new)
                            .map_err(|e| e.to_string())
                    })
                    .as_ref()
                    .map_err(|e| ModelError::Invalid(e.clone()))?;
                if x.features != model.features() {
                    return Err(ModelError::Invalid(format!(
                        "the ONNX model takes {} features, the pipeline gave {}",
                        model.features(),
                        x.features
                    )));
                }
                // Row-major f32, as the model was exported (numpy's float32 rounding).
                let mut rows = Vec::with_capacity(x.rows * x.features);
                for i in 0..x.rows {
                    for j in 0..x.features {
                        rows.push(x.get(i, j) as f32);
                    }
                }
                let out = model
                    .predict(x.rows, &rows)
                    .map_err(|e| ModelError::Invalid(e.to_string()))?;
                match task {
                    Task::Regression => Predictions::Values(out),
                    Task::Binary => Predictions::Probabilities {
                        classes: 2,
                        data: out,
                    },
                    Task::Multiclass { classes } => Predictions::Probabilities {
                        classes: *classes,
                        data: out,
                    },
                }
            }
            Fitted::Linear {
                task,
                scale,
                weights,
                ..
            } => {
                if scale.len() != x.features
                    || weights.is_empty()
                    || weights.iter().any(|w| w.len() != x.features + 1)
                {
                    return Err(ModelError::Invalid(format!(
                        "the linear model has {} features, the pipeline gave {}",
                        scale.len(),
                        x.features
                    )));
                }
                let design = standardize(x, scale);
                let score = |w: &[f64], i: usize| -> f64 {
                    w[0] + (0..x.features)
                        .map(|j| w[j + 1] * design[j * x.rows + i])
                        .sum::<f64>()
                };
                match task {
                    Task::Regression => {
                        Predictions::Values((0..x.rows).map(|i| score(&weights[0], i)).collect())
                    }
                    Task::Binary => Predictions::Probabilities {
                        classes: 2,
                        data: (0..x.rows)
                            .flat_map(|i| {
                                let p = sigmoid(score(&weights[0], i));
                                [1.0 - p, p]
                            })
                            .collect(),
                    },
                    Task::Multiclass { classes } => {
                        let mut data = Vec::with_capacity(x.rows * classes);
                        for i in 0..x.rows {
                            let s: Vec<f64> =
                                weights.iter().map(|w| sigmoid(score(w, i))).collect();
                            let total: f64 = s.iter().sum();
                            data.extend(s.iter().map(|v| v / total));
                        }
                        Predictions::Probabilities {
                            classes: *classes,
                            data,
                        }
                    }
                }
            }
            Fitted::Baseline { task, values } => match task {
                Task::Regression => {
                    let mean = values
                        .first()
                        .copied()
                        .ok_or_else(|| ModelError::Invalid("the baseline has no value".into()))?;
                    Predictions::Values(vec![mean; x.rows])
                }
                _ => Predictions::Probabilities {
                    classes: values.len(),
                    data: (0..x.rows).flat_map(|_| values.iter().copied()).collect(),
                },
            },
            Fitted::Gbdt {
                task,
                boosters,
                forests,
                ..
            } => {
                let forests = forests.get_or_init(|| boosters.iter().map(Forest::of).collect());
                if let Some(f) = forests.iter().flatten().find(|f| f.features() > x.features) {
                    return Err(ModelError::Invalid(format!(
                        "the trees use {} features, the pipeline gave {}",
                        f.features(),
                        x.features
                    )));
                }
                let parallel = x.rows >= PARALLEL_ROWS;
                let raw = |k: usize| -> Vec<f64> {
                    match forests.get(k).and_then(Option::as_ref) {
                        Some(f) => f.predict(x, parallel),
                        None => boosters[k].predict(&matrix, parallel),
                    }
                };
                match task {
                    Task::Regression => Predictions::Values(raw(0)),
                    Task::Binary => Predictions::Probabilities {
                        classes: 2,
                        data: raw(0)
                            .into_iter()
                            .flat_map(|z| {
                                let p = sigmoid(z);
                                [1.0 - p, p]
                            })
                            .collect(),
                    },
                    Task::Multiclass { classes } => {
                        let per_class: Vec<Vec<f64>> = (0..boosters.len()).map(raw).collect();
                        let mut data = Vec::with_capacity(x.rows * classes);
                        for i in 0..x.rows {
                            let scores: Vec<f64> =
                                per_class.iter().map(|p| sigmoid(p[i])).collect();
                            let total: f64 = scores.iter().sum();
                            data.extend(scores.iter().map(|s| s / total));
                        }
                        Predictions::Probabilities {
                            classes: *classes,
                            data,
                        }
                    }
                }
            }
        })
    }
}

/// Serde for the ONNX bytes: a base64 string (a JSON array of numbers would be 3-4× larger).
mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// Column-major standardized features; a missing value becomes 0 (the mean).
fn standardize(x: &Transformed, scale: &[(f64, f64)]) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.data.len());
    for (j, (mean, sd)) in scale.iter().enumerate() {
        for v in &x.data[j * x.rows..(j + 1) * x.rows] {
            out.push(if v.is_finite() { (v - mean) / sd } else { 0.0 });
        }
    }
    out
}

/// Solves the symmetric positive definite system `a · w = b` (`a` is `n × n`, row-major) by
/// Cholesky decomposition. Written here because the linear baseline needs nothing more, and a
/// linear-algebra crate would cost far more build time than these lines.
fn solve_spd(mut a: Vec<f64>, mut b: Vec<f64>, n: usize) -> Result<Vec<f64>, ModelError> {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        if d <= 0.0 || !d.is_finite() {
            return Err(ModelError::Invalid(
                "the linear system is singular: add regularization (l2)".into(),
            ));
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
    }
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= a[i * n + k] * b[k];
        }
        b[i] = s / a[i * n + i];
    }
    for i in (0..n).rev() {
        let mut s = b[i];
        for k in i + 1..n {
            s -= a[k * n + i] * b[k];
        }
        b[i] = s / a[i * n + i];
    }
    Ok(b)
}

/// The normal equations with an intercept column of ones, row weights `w` and an L2 penalty on
/// every weight but the intercept: returns `(XᵀWX + λI, XᵀW r)`.
fn normal_equations(
    design: &[f64],
    rows: usize,
    features: usize,
    w: &[f64],
    r: &[f64],
    l2: f64,
) -> (Vec<f64>, Vec<f64>) {
    let n = features + 1;
    let col = |j: usize, i: usize| {
        if j == 0 {
            1.0
        } else {
            design[(j - 1) * rows + i]
        }
    };
    let mut a = vec![0.0; n * n];
    let mut b = vec![0.0; n];
    for i in 0..rows {
        for p in 0..n {
            let xp = col(p, i) * w[i];
            b[p] += xp * r[i];
            for q in 0..=p {
                a[p * n + q] += xp * col(q, i);
            }
        }
    }
    for p in 0..n {
        for q in 0..p {
            a[q * n + p] = a[p * n + q];
        }
        if p > 0 {
            a[p * n + p] += l2;
        }
    }
    (a, b)
}

fn ridge(
    design: &[f64],
    rows: usize,
    features: usize,
    y: &[f64],
    l2: f64,
) -> Result<Vec<f64>, ModelError> {
    let ones = vec![1.0; rows];
    let (a, b) = normal_equations(design, rows, features, &ones, y, l2);
    solve_spd(a, b, features + 1)
}

/// L2-regularized logistic regression by Newton's method (iteratively reweighted least squares).
fn logistic(
    design: &[f64],
    rows: usize,
    features: usize,
    y: &[f64],
    l2: f64,
) -> Result<Vec<f64>, ModelError> {
    let n = features + 1;
    let mut w = vec![0.0; n];
    for _ in 0..50 {
        let mut weight = Vec::with_capacity(rows);
        let mut resid = Vec::with_capacity(rows);
        for i in 0..rows {
            let z = w[0]
                + (0..features)
                    .map(|j| w[j + 1] * design[j * rows + i])
                    .sum::<f64>();
            let p = sigmoid(z);
            weight.push((p * (1.0 - p)).max(1e-9));
            resid.push(y[i] - p);
        }
        // Newton step: (XᵀWX + λI) Δ = Xᵀ(y − p) − λw (the intercept unpenalized).
        let ones = vec![1.0; rows];
        let (mut a, _) = normal_equations(design, rows, features, &weight, &ones, l2);
        let (_, mut g) = normal_equations(design, rows, features, &ones, &resid, 0.0);
        for p in 1..n {
            g[p] -= l2 * w[p];
        }
        // A tiny ridge on the intercept keeps separable data solvable.
        a[0] += 1e-9;
        let step = solve_spd(a, g, n)?;
        let size: f64 = step.iter().map(|s| s.abs()).fold(0.0, f64::max);
        for (wi, s) in w.iter_mut().zip(&step) {
            *wi += s;
        }
        if size < 1e-10 {
            break;
        }
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics;
    use crate::split::SplitMix64;

    /// Column-major features of `n` rows: x0 uniform, x1 uniform, x2 noise.
    fn data(n: usize, seed: u64) -> (Transformed, Vec<[f64; 3]>) {
        let mut rng = SplitMix64::new(seed);
        let mut u = || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let rows: Vec<[f64; 3]> = (0..n).map(|_| [u(), u(), u()]).collect();
        let mut flat = Vec::with_capacity(n * 3);
        for j in 0..3 {
            flat.extend(rows.iter().map(|r| r[j]));
        }
        (
            Transformed {
                data: flat,
                rows: n,
                features: 3,
                unknown: vec![],
            },
            rows,
        )
    }

    /// The hand-written reading of a fitted model reads back what the derived writing wrote,
    /// for every learner, wherever the tag is in the object; and refuses what is not a model
    /// with serde's own messages.
    #[test]
    fn every_learner_reads_back_what_was_written() {
        let (x, rows) = data(500, 9);
        let y: Vec<f64> = rows.iter().map(|r| 3.0 * r[0] - r[1]).collect();
        let small = GbdtParams {
            iterations: 4,
            ..GbdtParams::default()
        };
        let models = [
            Fitted::fit_gbdt(Task::Regression, &small, &x, &y).unwrap(),
            Fitted::fit_baseline(Task::Regression, &y).unwrap(),
            Fitted::fit_linear(Task::Regression, 1.0, &x, &y).unwrap(),
            Fitted::Onnx {
                task: Task::Binary,
                onnx: vec![0, 1, 2, 250, 255],
                loaded: OnceLock::new(),
            },
        ];
        for m in &models {
            let json = serde_json::to_string(m).unwrap();
            let back: Fitted = serde_json::from_str(&json).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), json);
            // The tag last, and a field no learner has: the same model.
            let mut v: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&json).unwrap();
            let tag = v.remove("learner").unwrap();
            v.insert("comment".into(), serde_json::json!({"any": [1, 2]}));
            v.insert("learner".into(), tag);
            let moved = serde_json::to_string(&v).unwrap();
            assert!(
                moved.ends_with('}') && moved.contains(r#","learner":"#),
                "{moved}"
            );
            let back: Fitted = serde_json::from_str(&moved).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), json);
        }
        let gbdt = &models[0];
        assert_eq!(
            gbdt.predict(&x).unwrap(),
            serde_json::from_str::<Fitted>(&serde_json::to_string(gbdt).unwrap())
                .unwrap()
                .predict(&x)
                .unwrap()
        );

        let refused = |text: &str| match serde_json::from_str::<Fitted>(text) {
            Ok(_) => panic!("read {text}"),
            Err(e) => e.to_string(),
        };
        assert!(
            refused(r#"{"task": {"task": "regression"}, "values": [1.0]}"#)
                .contains("missing field `learner`")
        );
        assert!(
            refused(r#"{"learner": "forest", "task": {"task": "regression"}}"#)
                .contains("unknown variant `forest`")
        );
        assert!(
            refused(r#"{"learner": "baseline", "task": {"task": "regression"}}"#)
                .contains("missing field `values`")
        );
        assert!(refused(r#"{"learner": "baseline", "values": [1.0], "values": [2.0], "task": {"task": "regression"}}"#).contains("duplicate field `values`"));
        assert!(
            refused(r#"{"learner": "baseline", "task": {"task": "regression"}, "values": "many"}"#)
                .contains("invalid type")
        );
        assert!(refused(r#"["baseline"]"#).contains("invalid type"));
    }

    #[test]
    fn regression_beats_the_baseline_and_is_deterministic() {
        let (x, rows) = data(3000, 1);
        let y: Vec<f64> = rows
            .iter()
            .map(|r| 10.0 * r[0] + (6.0 * r[1]).sin() * 3.0)
            .collect();
        let (xv, rv) = data(1000, 2);
        let yv: Vec<f64> = rv
            .iter()
            .map(|r| 10.0 * r[0] + (6.0 * r[1]).sin() * 3.0)
            .collect();
        let m = Fitted::fit_gbdt(Task::Regression, &GbdtParams::default(), &x, &y).unwrap();
        let b = Fitted::fit_baseline(Task::Regression, &y).unwrap();
        let (Predictions::Values(p), Predictions::Values(pb)) =
            (m.predict(&xv).unwrap(), b.predict(&xv).unwrap())
        else {
            panic!("regression gives values");
        };
        let rmse = metrics::rmse(&yv, &p).unwrap();
        let base = metrics::rmse(&yv, &pb).unwrap();
        assert!(rmse < base / 5.0, "model {rmse} vs baseline {base}");

        // Same data and seed: the same bits, also after a JSON round trip of the model.
        let again = Fitted::fit_gbdt(Task::Regression, &GbdtParams::default(), &x, &y).unwrap();
        assert_eq!(again.predict(&xv).unwrap(), m.predict(&xv).unwrap());
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, serde_json::to_string(&again).unwrap());
        let back: Fitted = serde_json::from_str(&json).unwrap();
        assert_eq!(back.predict(&xv).unwrap(), m.predict(&xv).unwrap());
    }

    #[test]
    fn classifiers_give_calibrated_looking_probabilities() {
        let (x, rows) = data(3000, 3);
        let label = |r: &[f64; 3]| -> f64 {
            if r[0] + r[1] < 0.7 {
                0.0
            } else if r[0] > r[1] {
                1.0
            } else {
                2.0
            }
        };
        let y: Vec<f64> = rows.iter().map(label).collect();
        let (xv, rv) = data(1000, 4);
        let yv: Vec<usize> = rv.iter().map(|r| label(r) as usize).collect();
        let m = Fitted::fit_gbdt(
            Task::Multiclass { classes: 3 },
            &GbdtParams::default(),
            &x,
            &y,
        )
        .unwrap();
        let p = m.predict(&xv).unwrap();
        let acc = metrics::accuracy(&yv, &p.classes().unwrap()).unwrap();
        assert!(acc > 0.93, "accuracy {acc}");
        let Predictions::Probabilities { data, .. } = &p else {
            panic!()
        };
        for row in data.chunks(3) {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
        assert!(metrics::log_loss(&yv, data, 3).unwrap() < 0.3);

        let yb: Vec<f64> = rows
            .iter()
            .map(|r| f64::from(u8::from(r[0] > 0.5)))
            .collect();
        let mb = Fitted::fit_gbdt(Task::Binary, &GbdtParams::default(), &x, &yb).unwrap();
        let Predictions::Probabilities { data, .. } = mb.predict(&xv).unwrap() else {
            panic!()
        };
        let truth: Vec<bool> = rv.iter().map(|r| r[0] > 0.5).collect();
        let pos: Vec<f64> = data.chunks(2).map(|r| r[1]).collect();
        assert!(metrics::roc_auc(&truth, &pos).unwrap().unwrap() > 0.99);
    }

    #[test]
    fn linear_baseline_recovers_a_linear_truth() {
        let (x, rows) = data(2000, 6);
        let y: Vec<f64> = rows.iter().map(|r| 3.0 + 2.0 * r[0] - 5.0 * r[1]).collect();
        let m = Fitted::fit_linear(Task::Regression, 1e-6, &x, &y).unwrap();
        let (xv, rv) = data(500, 7);
        let yv: Vec<f64> = rv.iter().map(|r| 3.0 + 2.0 * r[0] - 5.0 * r[1]).collect();
        let Predictions::Values(p) = m.predict(&xv).unwrap() else {
            panic!()
        };
        assert!(metrics::rmse(&yv, &p).unwrap() < 1e-6);

        let yb: Vec<f64> = rows
            .iter()
            .map(|r| f64::from(u8::from(r[0] - r[1] > 0.1)))
            .collect();
        let mb = Fitted::fit_linear(Task::Binary, 1.0, &x, &yb).unwrap();
        let Predictions::Probabilities { data, .. } = mb.predict(&xv).unwrap() else {
            panic!()
        };
        let truth: Vec<bool> = rv.iter().map(|r| r[0] - r[1] > 0.1).collect();
        let pos: Vec<f64> = data.chunks(2).map(|r| r[1]).collect();
        assert!(metrics::roc_auc(&truth, &pos).unwrap().unwrap() > 0.995);
        let back: Fitted = serde_json::from_str(&serde_json::to_string(&mb).unwrap()).unwrap();
        assert_eq!(back.predict(&xv).unwrap(), mb.predict(&xv).unwrap());
    }

    #[test]
    fn bad_targets_are_refused() {
        let (x, _) = data(10, 5);
        let nan = vec![f64::NAN; 10];
        assert!(Fitted::fit_gbdt(Task::Regression, &GbdtParams::default(), &x, &nan).is_err());
        let three = vec![2.0; 10];
        assert!(Fitted::fit_gbdt(Task::Binary, &GbdtParams::default(), &x, &three).is_err());
        assert!(Fitted::fit_gbdt(Task::Regression, &GbdtParams::default(), &x, &[1.0]).is_err());
        assert_eq!(
            Fitted::fit_baseline(Task::Regression, &[]).err(),
            Some(ModelError::Empty)
        );
    }
}
