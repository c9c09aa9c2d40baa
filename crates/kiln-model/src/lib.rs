//! Kiln's model stage.
//!
//! * [`split`]: time, stratified and k-fold splits (the time split never trains on the future).
//! * [`features`]: the feature pipeline, fitted on training rows and shipped with the model.
//! * [`learner`]: gradient-boosted trees (forust-ml), the linear baseline and the trivial baseline.
//! * [`forest`]: the trees flattened for fast, bit-identical scoring.
//! * [`metrics`]: every score Kiln reports, equal to scikit-learn's on the committed fixtures.
//! * [`evaluate`]: metric sets, per-slice metrics, feature importance: what a run measures.
//! * [`artifact`]: the one-file model (pipeline, learner, baseline, evaluation, reference, lineage).
//!
//! Runs, the registry and model cards build on these.

pub mod artifact;
pub mod evaluate;
pub mod features;
pub mod forest;
pub mod learner;
pub mod loss;
pub mod metrics;
pub mod split;

/// Inputs a metric or a split cannot be computed on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    #[error("no rows to score")]
    Empty,
    #[error("{what}: {left} values vs {right}")]
    LengthMismatch {
        what: &'static str,
        left: usize,
        right: usize,
    },
    #[error("{0}")]
    Invalid(String),
}
