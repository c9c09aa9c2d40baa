//! Loads and runs ONNX models exported from scikit-learn with skl2onnx, in pure Rust.
//!
//! # Route
//!
//! Models run on [tract](https://github.com/sonos/tract) (`tract-onnx`), a pure-Rust ONNX
//! runtime, so a Kiln binary stays self-contained: onnxruntime (the `ort` crate) would need
//! its shared library at run time. tract-onnx 0.23 has most of the ONNX-ML operators that
//! skl2onnx writes (`TreeEnsembleClassifier`, `LinearClassifier`, `LinearRegressor`,
//! `Normalizer`, `CategoryMapper`) but lacks `TreeEnsembleRegressor` and `Scaler`, and cannot
//! load a binary `GradientBoostingClassifier` (one `base_values` entry where it expects two).
//! kiln-onnx closes these gaps through tract-onnx's own operator registry
//! (`tract_onnx::onnx().op_register`, see `src/ops.rs`):
//!
//! * `TreeEnsembleRegressor` is parsed into tract's tree-ensemble data layout;
//! * `Scaler` is wired as two broadcast tract operators;
//! * `TreeEnsembleClassifier` keeps tract's parser and wiring (labels, base values,
//!   logistic/softmax, binary layout) behind a wrapper that checks the trees first and pads
//!   the single `base_values` of binary gradient boosting.
//!
//! The trees of both are then scored by kiln-onnx's own tree-ensemble operator, swapped in for
//! tract-onnx-opl's: that one sums votes in f32 (up to 5e-5 × |y| off scikit-learn on a
//! 100-tree gradient boosting model, where we promise 1e-5), finds each leaf's weights by a
//! linear skip (about 1 ms for one row of that model, against ~1M rows/s here) and walks the trees
//! with unchecked indexing. Everything else (linear models, normalizers, the graph, the
//! optimiser, the plan) is tract's.
//!
//! `ZipMap` (a list of dictionaries per row) is not supported: export classifiers with
//! `options={"zipmap": False}` so that their probabilities are a plain `[N, C]` tensor.
//!
//! # Shape
//!
//! A model has exactly one input, a float tensor `[N, F]` with `F` fixed. `N` is kept
//! symbolic through tract's optimisation, so one optimised plan scores any batch size.
//! Regressors give one value per row; classifiers give their `probabilities` output (one row
//! of class probabilities per input row) and the class labels in the model's order.

mod ops;

use std::sync::Arc;

use tract_onnx::pb;
use tract_onnx::prelude::*;

/// What the model outputs.
#[derive(Debug, Clone, PartialEq)]
pub enum OnnxOutput {
    /// One value per row (regressors).
    Values,
    /// Class probabilities per row; labels as strings in the model's class order (e.g. "0","1").
    Probabilities { labels: Vec<String> },
}

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The bytes are not an ONNX model (garbage, truncated, another kind of file).
    #[error("not an ONNX model: {0}")]
    NotAModel(String),
    /// A valid ONNX model that kiln-onnx cannot run (an operator, a setting, an output layout).
    #[error("unsupported ONNX model: {0}")]
    Unsupported(String),
    /// The model's input, or the data given to it, does not have the expected shape or type.
    #[error("input mismatch: {0}")]
    Inputs(String),
    /// The model failed while scoring.
    #[error("ONNX model failed to run: {0}")]
    Run(String),
}

/// A loaded, optimized, runnable model. `Send + Sync`: share it between threads freely.
pub struct OnnxModel {
    plan: Arc<TypedRunnableModel>,
    input_name: String,
    features: usize,
    output: OnnxOutput,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel")
            .field("input_name", &self.input_name)
            .field("features", &self.features)
            .field("output", &self.output)
            .finish_non_exhaustive()
    }
}

/// ONNX `TensorProto.DataType` codes.
const ONNX_FLOAT: i32 = 1;
/// Error messages from tract can embed large debug dumps; keep them readable.
const MAX_MESSAGE: usize = 600;

fn tract_message(e: &TractError) -> String {
    let mut parts: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    // tract-onnx wraps an operator's parse error as "Building node NAME (OP_TYPE)".
    if let Some(first) = parts.first_mut()
        && let Some(rest) = first.strip_prefix("Building node ")
        && let Some((name, op)) = rest.strip_suffix(')').and_then(|r| r.rsplit_once(" ("))
    {
        *first = if name.is_empty() {
            format!("operator `{op}`")
        } else {
            format!("operator `{op}` (node `{name}`)")
        };
    }
    let mut s = parts.join(": ");
    if s.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str(" ...");
    }
    s
}

/// Most elements a tensor of a model may declare (a tree ensemble of 10,000 trees of depth 10
/// has about 10 million node attributes; this is 25 times that).
const MAX_TENSOR_ELEMENTS: u128 = 1 << 28;

/// Refuses an initializer whose declared shape is negative, beyond [`MAX_TENSOR_ELEMENTS`], or
/// larger than the data stored with it.
fn check_declared_size(t: &pb::TensorProto) -> Result<(), OnnxError> {
    let mut elements: u128 = 1;
    for d in &t.dims {
        if *d < 0 {
            return Err(OnnxError::NotAModel(format!(
                "tensor `{}` declares a negative dimension {d}",
                t.name
            )));
        }
        elements = elements.saturating_mul(*d as u128);
    }
    if elements > MAX_TENSOR_ELEMENTS {
        return Err(OnnxError::Unsupported(format!(
            "tensor `{}` declares {elements} elements (shape {:?}); Kiln loads at most {MAX_TENSOR_ELEMENTS}",
            t.name, t.dims
        )));
    }
    let stored = (t.float_data.len()
        + t.int32_data.len()
        + t.int64_data.len()
        + t.double_data.len()
        + t.uint64_data.len()
        + t.string_data.len()) as u128;
    let external = t.data_location == Some(1) || !t.external_data.is_empty();
    if !external && t.raw_data.is_empty() && stored < elements {
        return Err(OnnxError::NotAModel(format!(
            "tensor `{}` declares {elements} elements (shape {:?}) but stores {stored}",
            t.name, t.dims
        )));
    }
    if !t.raw_data.is_empty() && (t.raw_data.len() as u128) < elements {
        // At least a byte per element for every type with raw data.
        return Err(OnnxError::NotAModel(format!(
            "tensor `{}` declares {elements} elements (shape {:?}) in {} bytes",
            t.name,
            t.dims,
            t.raw_data.len()
        )));
    }
    Ok(())
}

fn type_name(elem_type: i32) -> String {
    match pb::tensor_proto::DataType::try_from(elem_type) {
        Ok(t) => t.as_str_name().to_string(),
        Err(_) => format!("type code {elem_type}"),
    }
}

/// The tensor type and shape of a graph input/output, if it declares one.
fn tensor_type(v: &pb::ValueInfoProto) -> Option<&pb::type_proto::Tensor> {
    match v.r#type.as_ref()?.value.as_ref()? {
        pb::type_proto::Value::TensorType(t) => Some(t),
    }
}

fn dims(t: &pb::type_proto::Tensor) -> Option<Vec<Option<i64>>> {
    use pb::tensor_shape_proto::dimension::Value;
    let shape = t.shape.as_ref()?;
    Some(
        shape
            .dim
            .iter()
            .map(|d| match d.value {
                Some(Value::DimValue(v)) => Some(v),
                _ => None,
            })
            .collect(),
    )
}

fn describe(v: &pb::ValueInfoProto) -> String {
    match tensor_type(v) {
        Some(t) => {
            let shape = match dims(t) {
                Some(d) => {
                    let d: Vec<String> = d
                        .iter()
                        .map(|x| x.map_or_else(|| "?".to_string(), |v| v.to_string()))
                        .collect();
                    format!("[{}]", d.join(", "))
                }
                None => "(no shape)".to_string(),
            };
            format!("`{}` ({} {shape})", v.name, type_name(t.elem_type))
        }
        None => format!("`{}` (not a tensor)", v.name),
    }
}

const CLASSIFIERS: [&str; 3] = [
    "TreeEnsembleClassifier",
    "LinearClassifier",
    "SVMClassifier",
];

/// The class labels of the model's classifier operator, as strings.
fn class_labels(graph: &pb::GraphProto) -> Result<Vec<String>, OnnxError> {
    let classifiers: Vec<&pb::NodeProto> = graph
        .node
        .iter()
        .filter(|n| CLASSIFIERS.contains(&n.op_type.as_str()))
        .collect();
    let [node] = classifiers.as_slice() else {
        return Err(OnnxError::Unsupported(format!(
            "the model has a `probabilities` output but {} classifier operators ({}); \
             expected exactly one",
            classifiers.len(),
            CLASSIFIERS.join(", ")
        )));
    };
    for attr in &node.attribute {
        match attr.name.as_str() {
            "classlabels_int64s" | "classlabels_ints" => {
                return Ok(attr.ints.iter().map(i64::to_string).collect());
            }
            "classlabels_strings" => {
                return Ok(attr
                    .strings
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect());
            }
            _ => {}
        }
    }
    Err(OnnxError::Unsupported(format!(
        "operator `{}` has no class labels (classlabels_int64s / classlabels_strings)",
        node.op_type
    )))
}

fn unsupported_operator_hint(op: &str) -> &'static str {
    match op {
        "ZipMap" => "export the classifier with skl2onnx option {'zipmap': False}",
        "TreeEnsemble" => "export with target_opset={'ai.onnx.ml': 3} (or lower)",
        "TreeEnsembleRegressor" | "TreeEnsembleClassifier" | "Scaler" => "",
        _ => {
            "kiln-onnx runs scikit-learn tree ensembles, linear models and standard \
             preprocessing (Scaler, Normalizer) exported with skl2onnx"
        }
    }
}

impl OnnxModel {
    /// Parses and prepares the model. Requires exactly one input, a float tensor of shape
    /// `[N, F]` (N symbolic/dynamic, F fixed), and finds the output to use: for classifiers the
    /// `probabilities` output (skl2onnx, exported with `zipmap=False`) plus the labels, for
    /// regressors the single float output (skl2onnx's `variable`).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, OnnxError> {
        let onnx = ops::onnx();
        let mut reader: &[u8] = bytes;
        let proto = onnx
            .proto_model_for_read(&mut reader)
            .map_err(|e| OnnxError::NotAModel(format!("the file does not decode as one ({e})")))?;
        let graph = match &proto.graph {
            Some(g) if proto.ir_version > 0 && !g.node.is_empty() => g,
            _ => {
                return Err(OnnxError::NotAModel(
                    "no model graph found (is the file empty, truncated or another format?)".into(),
                ));
            }
        };
        if proto.opset_import.is_empty() {
            return Err(OnnxError::NotAModel(
                "the model declares no operator set (is the file truncated?)".into(),
            ));
        }

        // Operators we cannot run, named up front rather than as a tract analysis failure.
        let mut unknown: Vec<String> = vec![];
        for node in &graph.node {
            if !onnx.op_register.0.contains_key(&node.op_type) {
                let hint = unsupported_operator_hint(&node.op_type);
                let domain = if node.domain.is_empty() {
                    "ai.onnx"
                } else {
                    &node.domain
                };
                let mut m = format!(
                    "operator `{}` (domain {domain}) is not supported",
                    node.op_type
                );
                if !hint.is_empty() {
                    m.push_str(&format!("; hint: {hint}"));
                }
                if !unknown.contains(&m) {
                    unknown.push(m);
                }
            }
        }
        if !unknown.is_empty() {
            return Err(OnnxError::Unsupported(unknown.join("; ")));
        }
        // A tensor's declared shape must fit the data the file carries: a hostile file could
        // declare billions of elements and make the runtime allocate them.
        for t in &graph.initializer {
            check_declared_size(t)?;
        }
        // Every graph output must name a value of the graph: tract-onnx looks outputs up by
        // name and panics on one it does not know (a corrupt or hand-edited file).
        let values: std::collections::HashSet<&str> = graph
            .input
            .iter()
            .map(|v| v.name.as_str())
            .chain(graph.initializer.iter().map(|t| t.name.as_str()))
            .chain(
                graph
                    .node
                    .iter()
                    .flat_map(|n| n.output.iter().chain(&n.input))
                    .filter(|s| !s.is_empty())
                    .map(String::as_str),
            )
            .collect();
        if let Some(o) = graph
            .output
            .iter()
            .find(|o| !values.contains(o.name.as_str()))
        {
            return Err(OnnxError::NotAModel(format!(
                "graph output `{}` is not a value of the graph (no input, initializer or node \
                 produces it)",
                o.name
            )));
        }
        let external =
            |t: &pb::TensorProto| t.data_location == Some(1) || !t.external_data.is_empty();
        if graph.initializer.iter().any(external) {
            return Err(OnnxError::Unsupported(
                "the model keeps tensors in external data files; save it as a single file".into(),
            ));
        }

        // Exactly one real input: a float [N, F] tensor.
        let inputs: Vec<&pb::ValueInfoProto> = graph
            .input
            .iter()
            .filter(|i| !graph.initializer.iter().any(|t| t.name == i.name))
            .collect();
        let [input] = inputs.as_slice() else {
            let found: Vec<String> = inputs.iter().map(|i| describe(i)).collect();
            return Err(OnnxError::Inputs(format!(
                "expected exactly one input (a float tensor [N, F]), found {}: {}; export with a \
                 single FloatTensorType([None, F]) input",
                inputs.len(),
                if found.is_empty() {
                    "none".to_string()
                } else {
                    found.join(", ")
                }
            )));
        };
        let input_type = tensor_type(input).ok_or_else(|| {
            OnnxError::Inputs(format!(
                "input `{}` is not a tensor; expected float [N, F]",
                input.name
            ))
        })?;
        if input_type.elem_type != ONNX_FLOAT {
            return Err(OnnxError::Inputs(format!(
                "input {} must be float32 (FLOAT [N, F]); export with FloatTensorType",
                describe(input)
            )));
        }
        let features = match dims(input_type).as_deref() {
            Some([_, Some(f)]) if *f > 0 => usize::try_from(*f)
                .map_err(|_| OnnxError::Inputs(format!("input {} is too wide", describe(input))))?,
            _ => {
                return Err(OnnxError::Inputs(format!(
                    "input {} must have shape [N, F] with a fixed number of features F",
                    describe(input)
                )));
            }
        };

        // The output to score with.
        let chosen = match graph.output.iter().position(|o| o.name == "probabilities") {
            Some(ix) => (
                ix,
                OnnxOutput::Probabilities {
                    labels: class_labels(graph)?,
                },
            ),
            None => {
                let floats: Vec<usize> = (0..graph.output.len())
                    .filter(|&i| {
                        tensor_type(&graph.output[i]).is_some_and(|t| t.elem_type == ONNX_FLOAT)
                    })
                    .collect();
                match floats.as_slice() {
                    [ix] if graph
                        .node
                        .iter()
                        .all(|n| !CLASSIFIERS.contains(&n.op_type.as_str())) =>
                    {
                        (*ix, OnnxOutput::Values)
                    }
                    _ => {
                        let found: Vec<String> = graph.output.iter().map(describe).collect();
                        return Err(OnnxError::Unsupported(format!(
                            "cannot tell which output to use among {}; expected a classifier's \
                             `probabilities` (exported with zipmap=False) or a regressor's single \
                             float output",
                            found.join(", ")
                        )));
                    }
                }
            }
        };
        let (output_ix, output) = chosen;

        let unsupported = |e: TractError| OnnxError::Unsupported(tract_message(&e));
        let mut model = onnx.model_for_proto_model(&proto).map_err(unsupported)?;
        let batch = model.symbols.sym("N");
        model
            .set_input_fact(0, f32::fact([batch.to_dim(), features.to_dim()]).into())
            .map_err(unsupported)?;
        let outlet = *model.outputs.get(output_ix).ok_or_else(|| {
            OnnxError::Unsupported("the model's outputs do not match its graph".into())
        })?;
        model
            .select_output_outlets(&[outlet])
            .map_err(unsupported)?;
        let mut model = model.into_typed().map_err(unsupported)?;
        ops::use_kiln_forests(&mut model).map_err(unsupported)?;
        let model = model.into_optimized().map_err(unsupported)?;

        // The output shape must be what we promise: [N] / [N, 1] values, or [N, C] probabilities.
        let fact = model.output_fact(0).map_err(unsupported)?;
        let width = match fact.shape.as_concrete() {
            Some(_) => None, // fully concrete means N was fixed somewhere: reject below
            None => match fact.shape.dims() {
                [n] if *n == batch.to_dim() => Some(1),
                [n, w] if *n == batch.to_dim() => w.as_i64().and_then(|w| usize::try_from(w).ok()),
                _ => None,
            },
        };
        let expected_width = match &output {
            OnnxOutput::Values => 1,
            OnnxOutput::Probabilities { labels } => labels.len(),
        };
        if width != Some(expected_width) {
            return Err(OnnxError::Unsupported(format!(
                "output `{}` has shape {:?}; expected [N, {expected_width}]",
                graph.output[output_ix].name, fact.shape
            )));
        }
        let plan = model.into_runnable().map_err(unsupported)?;
        Ok(OnnxModel {
            plan,
            input_name: input.name.clone(),
            features,
            output,
        })
    }

    /// F: the number of input features.
    pub fn features(&self) -> usize {
        self.features
    }

    /// The name of the model's input tensor.
    pub fn input_name(&self) -> &str {
        &self.input_name
    }

    /// What [`OnnxModel::predict`] returns.
    pub fn output(&self) -> &OnnxOutput {
        &self.output
    }

    /// The number of values [`OnnxModel::predict`] returns per row.
    fn width(&self) -> usize {
        match &self.output {
            OnnxOutput::Values => 1,
            OnnxOutput::Probabilities { labels } => labels.len(),
        }
    }

    /// Scores `rows` rows given row-major f32 features (`len = rows * features()`).
    /// Returns `rows` values (Values) or row-major probabilities (`rows * labels.len()`).
    pub fn predict(&self, rows: usize, x: &[f32]) -> Result<Vec<f64>, OnnxError> {
        let expected = rows.checked_mul(self.features).ok_or_else(|| {
            OnnxError::Inputs(format!(
                "{rows} rows × {} features is too many",
                self.features
            ))
        })?;
        if x.len() != expected {
            return Err(OnnxError::Inputs(format!(
                "expected {rows} rows × {} features = {expected} values, got {}",
                self.features,
                x.len()
            )));
        }
        if rows == 0 {
            return Ok(vec![]);
        }
        let run = |e: TractError| OnnxError::Run(tract_message(&e));
        let input = Tensor::from_shape(&[rows, self.features], x).map_err(run)?;
        let outputs = self.plan.run(tvec!(input.into())).map_err(run)?;
        let output = outputs
            .first()
            .ok_or_else(|| OnnxError::Run("the model gave no output".into()))?;
        let values = output.cast_to::<f64>().map_err(run)?;
        let view = values.to_plain_array_view::<f64>().map_err(run)?;
        let want = rows * self.width();
        if view.len() != want {
            return Err(OnnxError::Run(format!(
                "the model gave {} values for {rows} rows; expected {want}",
                view.len()
            )));
        }
        Ok(view.iter().copied().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// fuzz/regressions/model_artifact/onnx-graph-output-names-no-value (tests/fixtures/
    /// bad_output_name.onnx): bike_logreg.onnx with two bits flipped, so that a graph output
    /// names no value of the graph; tract-onnx panicked ("no entry found for key").
    #[test]
    fn a_graph_output_that_names_no_value_is_refused() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/bad_output_name.onnx"
        );
        let bytes = std::fs::read(path).unwrap();
        let e = OnnxModel::from_bytes(&bytes).err().unwrap();
        assert!(matches!(e, OnnxError::NotAModel(_)), "{e}");
        assert!(e.to_string().contains("is not a value of the graph"), "{e}");
    }

    #[test]
    fn tensors_declaring_more_than_they_store_are_refused() {
        let tensor = |dims: Vec<i64>, floats: usize, raw: usize| pb::TensorProto {
            name: "w".into(),
            dims,
            data_type: 1,
            float_data: vec![0.0; floats],
            raw_data: vec![0; raw],
            ..Default::default()
        };
        assert!(check_declared_size(&tensor(vec![2, 3], 6, 0)).is_ok());
        assert!(check_declared_size(&tensor(vec![2, 3], 0, 24)).is_ok());
        // A terabyte declared, nothing stored: refused before anything is allocated.
        let huge = check_declared_size(&tensor(vec![1 << 20, 1 << 20], 0, 0)).unwrap_err();
        assert!(
            huge.to_string().contains("declares 1099511627776 elements"),
            "{huge}"
        );
        let short = check_declared_size(&tensor(vec![1000], 10, 0)).unwrap_err();
        assert!(short.to_string().contains("stores 10"), "{short}");
        let raw = check_declared_size(&tensor(vec![1000], 0, 8)).unwrap_err();
        assert!(raw.to_string().contains("in 8 bytes"), "{raw}");
        let negative = check_declared_size(&tensor(vec![-1], 0, 0)).unwrap_err();
        assert!(negative.to_string().contains("negative"), "{negative}");
        // Products that overflow 64 bits saturate, and are refused.
        let overflow =
            check_declared_size(&tensor(vec![i64::MAX, i64::MAX, i64::MAX], 0, 0)).unwrap_err();
        assert!(matches!(overflow, OnnxError::Unsupported(_)), "{overflow}");
    }

    #[test]
    fn model_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<OnnxModel>();
    }
}
