//! Kiln's production watch: monitoring over the prediction log.
//!
//! * [`window`]: the exact, mergeable state of a monitoring window and its evaluation against
//!   the model's reference (drift, realized and estimated performance, latency).
//! * [`rules`]: alert rules (`[[monitor.alerts]]` in kiln.toml) and their verdicts on a window.
//! * [`range`]: monitoring over any stored range of the log, in time or count windows
//!   (`kiln monitor`).
//! * [`archive`]: retention of the log: old days compacted to Parquet archives in the
//!   artifact store, read back (labels joined) wherever the log is read by range.
//! * [`report`]: the monitoring report of a range, as JSON and as self-contained HTML.
//!
//! The statistics themselves live in `kiln-monitor`, which knows nothing of models or stores;
//! this crate joins them to the model artifact, the prediction log and the feedback.

pub mod archive;
pub mod html;
pub mod range;
pub mod report;
pub mod rules;
pub mod window;

use kiln_monitor::MonitorError;
use kiln_store::StoreError;

/// What can go wrong watching a model.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The user's input (settings, names, ranges) is at fault.
    #[error("{0}")]
    Input(String),
    /// Data that should be well formed is not.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Monitor(#[from] MonitorError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl WatchError {
    /// Whether the user's input is at fault (exit 2) rather than the system (exit 1).
    pub fn is_input_error(&self) -> bool {
        matches!(
            self,
            WatchError::Input(_) | WatchError::Store(StoreError::NotFound(_))
        )
    }
}

pub type Result<T, E = WatchError> = std::result::Result<T, E>;
