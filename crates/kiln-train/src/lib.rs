//! Kiln's training stage and what comes out of it.
//!
//! * [`spec`]: the training recipe (`[train]` in kiln.toml, `--set` overrides).
//! * [`train`]: a run: snapshot → split → feature pipeline → learner and baselines →
//!   evaluation → one-file artifact → run record (→ registered version).
//! * [`registry`]: naming model versions (`NAME`, `NAME@3`, `NAME@production`) and loading
//!   their verified artifacts.
//! * [`import`]: models trained elsewhere (ONNX), evaluated and registered like trained ones.
//! * [`predict`]: batch scoring of CSV/Parquet files, validated like an ingest.
//! * [`card`]: the model card, Markdown and self-contained HTML.

pub mod card;
pub mod import;
pub mod predict;
pub mod registry;
pub mod spec;
pub mod train;

use kiln_data::DataError;
use kiln_model::ModelError;
use kiln_store::StoreError;

/// Everything that can go wrong in the training stage.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The user's input (settings, names, data) is at fault.
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Model(#[from] ModelError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl TrainError {
    /// Whether the user's input is at fault (exit 2) rather than the system (exit 1).
    pub fn is_input_error(&self) -> bool {
        match self {
            TrainError::Input(_) | TrainError::Model(_) => true,
            TrainError::Data(e) => e.is_input_error(),
            TrainError::Store(StoreError::NotFound(_) | StoreError::Conflict(_)) => true,
            TrainError::Store(_) | TrainError::Io(_) => false,
        }
    }
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;

/// A mistake in the user's input, with its message.
pub(crate) fn input(message: impl Into<String>) -> TrainError {
    TrainError::Input(message.into())
}

/// The source revision of the folder Kiln runs in: the git commit, with `+dirty` when tracked
/// files have uncommitted changes; `None` outside a git checkout (or without git).
pub fn code_version(dir: &std::path::Path) -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "HEAD"])?;
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
        .map(|s| !s.is_empty())
        .unwrap_or(false);
    Some(if dirty {
        format!("{commit}+dirty")
    } else {
        commit
    })
}
