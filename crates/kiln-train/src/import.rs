//! Bringing a model trained elsewhere: `kiln models import FILE.onnx --name NAME --schema
//! SCHEMA.json --dataset DATA`.
//!
//! The ONNX file (scikit-learn through skl2onnx, LightGBM/XGBoost through onnxmltools) takes
//! one `[N, F]` float tensor. The schema file names those F inputs in order and says how each
//! is encoded, so Kiln can build the same tensor from raw rows:
//!
//! ```json
//! {"inputs": [
//!   {"name": "season", "type": "categorical", "categories": ["spring", "summer", "fall", "winter"]},
//!   {"name": "temp", "type": "numeric"},
//!   {"name": "holiday", "type": "boolean"}
//! ]}
//! ```
//!
//! A categorical input becomes the index of its value in `categories` (an unknown value is
//! missing, NaN); a numeric input its value; a boolean 0 or 1. The imported model then goes
//! through exactly what a trained one does: the dataset given at import is split like a
//! training run, the model is evaluated on the validation part against the same baselines,
//! per slice, with a reference profile for monitoring, and the version gets a model card.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use kiln_core::config::Config;
use kiln_core::id::ContentId;
use kiln_core::schema::FeatureType;
use kiln_model::features::{ColumnTransform, Family, FeaturePipeline, PipelineColumn};
use kiln_model::learner::Fitted;
use serde::Deserialize;

use crate::spec::TrainSpec;
use crate::train::{Champion, Given, Job, Resolved, Steps, TrainOutcome, resolve_inputs};
use crate::{Result, input};

/// The schema file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportSchema {
    pub inputs: Vec<ImportInput>,
}

/// One model input, in the model's order.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportInput {
    pub name: String,
    #[serde(rename = "type")]
    pub ftype: FeatureType,
    /// Categorical inputs: the values, in the order of their codes (0, 1, ...).
    pub categories: Option<Vec<String>>,
}

impl ImportSchema {
    /// Parses and checks a schema file's text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let schema: ImportSchema = serde_json::from_str(text)
            .map_err(|e| input(format!("{}: not a model schema: {e}", path.display())))?;
        if schema.inputs.is_empty() {
            return Err(input(format!("{}: `inputs` is empty", path.display())));
        }
        let mut seen = BTreeSet::new();
        for i in &schema.inputs {
            let at = format!("{}: input `{}`", path.display(), i.name);
            if !seen.insert(i.name.as_str()) {
                return Err(input(format!("{at} is listed twice")));
            }
            match (i.ftype, &i.categories) {
                (FeatureType::Categorical, Some(c)) if !c.is_empty() => {}
                (FeatureType::Categorical, _) => {
                    return Err(input(format!(
                        "{at}: a categorical input needs `categories`, the values in code order"
                    )));
                }
                (FeatureType::Numeric | FeatureType::Boolean, None) => {}
                (FeatureType::Numeric | FeatureType::Boolean, Some(_)) => {
                    return Err(input(format!(
                        "{at}: only categorical inputs take `categories`"
                    )));
                }
                (t, _) => {
                    return Err(input(format!(
                        "{at}: type {t} cannot be an ONNX input; use numeric, categorical or boolean"
                    )));
                }
            }
        }
        Ok(schema)
    }

    /// The pipeline that turns rows into the model's input tensor.
    fn pipeline(&self) -> FeaturePipeline {
        let columns: Vec<PipelineColumn> = self
            .inputs
            .iter()
            .map(|i| PipelineColumn {
                name: i.name.clone(),
                ftype: i.ftype,
                transform: match (&i.categories, i.ftype) {
                    (Some(cats), _) => ColumnTransform::Ordinal {
                        codes: cats
                            .iter()
                            .enumerate()
                            .map(|(k, c)| (c.clone(), k as f64))
                            .collect(),
                    },
                    (None, FeatureType::Boolean) => ColumnTransform::Boolean { impute: None },
                    (None, _) => ColumnTransform::Numeric {
                        impute: None,
                        missing_indicator: false,
                    },
                },
            })
            .collect();
        FeaturePipeline {
            family: Family::Trees,
            features: columns.iter().map(|c| c.name.clone()).collect(),
            columns,
        }
    }
}

/// What to import.
pub struct ImportRequest {
    /// The ONNX file's bytes and its name (for the record).
    pub onnx: Vec<u8>,
    pub file_name: String,
    pub schema: ImportSchema,
    /// The model name to register under.
    pub name: String,
}

/// Imports, evaluates and registers an ONNX model. `spec` carries the dataset, target and
/// split to evaluate on (as `kiln train` would use them).
pub async fn import_onnx(
    store: &kiln_store::Store,
    config: &Config,
    scratch: &Path,
    spec: &TrainSpec,
    req: ImportRequest,
    steps: Arc<dyn Steps>,
) -> Result<TrainOutcome> {
    import_onnx_against(store, config, scratch, spec, req, steps, None).await
}

/// `import_onnx`, with the champion scored on the imported model's validation rows as well
/// (as `train_against` does for a trained one).
pub async fn import_onnx_against(
    store: &kiln_store::Store,
    config: &Config,
    scratch: &Path,
    spec: &TrainSpec,
    req: ImportRequest,
    steps: Arc<dyn Steps>,
    champion: Option<Champion>,
) -> Result<TrainOutcome> {
    kiln_core::names::validate_name("model", &req.name).map_err(|e| input(e.to_string()))?;
    let (model, labels) = Fitted::from_onnx(req.onnx.clone(), req.schema.inputs.len())
        .map_err(|e| input(format!("{}: {e}", req.file_name)))?;
    let Resolved {
        version,
        target,
        time_column,
        method,
    } = resolve_inputs(store, config, spec).await?;
    let label = format!("{}@{}", version.dataset, version.version);
    for i in &req.schema.inputs {
        let Some(col) = version.schema.column(&i.name) else {
            return Err(input(format!(
                "model input `{}` is not a column of {label}\nhint: columns: {}",
                i.name,
                version.schema.names().collect::<Vec<_>>().join(", ")
            )));
        };
        if col.ftype != i.ftype {
            return Err(input(format!(
                "model input `{}` is {} in the schema but {} in {label}",
                i.name, i.ftype, col.ftype
            )));
        }
        if i.name == target {
            return Err(input(format!(
                "model input `{}` is the target of {label}",
                i.name
            )));
        }
    }
    let mut spec = spec.clone();
    spec.register = Some(req.name.clone());
    let params = serde_json::json!({
        "imported": req.file_name,
        "onnx_blake3": ContentId::of(&req.onnx).to_string(),
        "inputs": req.schema.inputs.iter().map(|i| serde_json::json!({
            "name": i.name, "type": i.ftype, "categories": i.categories,
        })).collect::<Vec<_>>(),
        "split": spec.split,
        "seed": spec.seed,
    });
    let job = Job {
        store,
        scratch,
        spec: &spec,
        version: &version,
        target: &target,
        time_column: time_column.as_deref(),
        method,
        code_version: None,
        steps,
        given: Some(Given {
            pipeline: req.schema.pipeline(),
            model,
            labels,
            params,
        }),
        champion,
    };
    job.run(None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_are_checked() {
        let p = Path::new("s.json");
        let ok = ImportSchema::parse(
            r#"{"inputs": [{"name": "a", "type": "categorical", "categories": ["x", "y"]}, {"name": "b", "type": "numeric"}]}"#,
            p,
        )
        .unwrap();
        let pipe = ok.pipeline();
        assert_eq!(pipe.features, vec!["a", "b"]);
        for (bad, needle) in [
            (r#"{"inputs": []}"#, "empty"),
            (
                r#"{"inputs": [{"name": "a", "type": "categorical"}]}"#,
                "needs `categories`",
            ),
            (
                r#"{"inputs": [{"name": "a", "type": "date"}]}"#,
                "cannot be an ONNX input",
            ),
            (
                r#"{"inputs": [{"name": "a", "type": "numeric"}, {"name": "a", "type": "numeric"}]}"#,
                "twice",
            ),
            (r#"{"inputz": []}"#, "inputz"),
            ("not json", "not a model schema"),
        ] {
            let e = ImportSchema::parse(bad, p).unwrap_err().to_string();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }
}
