//! Automation: the retrain controller that closes Kiln's loop.
//!
//! On each pass ([`controller::Controller::tick`]) it reads the serving clock (the latest
//! event time in the prediction log, which a replay drives), the model's firing alerts and
//! its record of past retrainings, and decides whether to retrain. A retraining appends the
//! labelled production rows (logged inputs joined with their feedback) to the training
//! dataset as a new validated snapshot, trains with `[train]` plus `[automate.train]`, scores
//! the champion on the candidate's validation rows, and promotes the candidate only when every
//! gate passes. Every retraining, its gates' numbers and its outcome are stored.
//!
//! A candidate that passes reaches traffic by `[automate] strategy`: at once (`direct`), or
//! through a `shadow` or `canary` rollout that later passes judge on live labelled rows
//! ([`rollout`]): promoted when a fixed-sample test shows it better, rolled back when it
//! breaches a bound, discarded otherwise.
//!
//! The controller runs inside `kiln serve` (`[automate] enabled = true`) or as its own
//! process (`kiln watch`); the store allows one running retraining per model, so several
//! controllers never retrain the same model at once.
//!
//! [`pipeline`] runs the stages of `[pipeline]` in order (ingest, validate, train, gate,
//! deploy, external commands), skipping those whose inputs are unchanged since they last
//! succeeded, with the same gates and the same compare-and-set alias move.

pub mod config;
pub mod controller;
pub mod gates;
pub mod harvest;
pub mod pipeline;
pub mod rollout;

pub use config::AutomateConfig;
pub use controller::{Controller, Pass};
pub use rollout::{RolloutConfig, Strategy};

/// What can go wrong in automation.
#[derive(Debug, thiserror::Error)]
pub enum AutomateError {
    /// The user's settings or data are wrong; the message says what and how to fix it.
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Store(#[from] kiln_store::StoreError),
    #[error(transparent)]
    Data(#[from] kiln_data::DataError),
    #[error(transparent)]
    Train(#[from] kiln_train::TrainError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = AutomateError> = std::result::Result<T, E>;
