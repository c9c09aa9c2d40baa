//! Kiln's two stores.
//!
//! * [`MetaStore`]: the relational metadata (datasets and their versions; models, their
//!   versions and aliases with history; training runs; the server's prediction log and label
//!   feedback and the archives of its old days; alerts, retrainings, rollouts, pipeline runs
//!   and leases) through sqlx, on SQLite by default or PostgreSQL by URL.
//!   One set of migrations, written in SQL both engines accept, so behaviour cannot diverge.
//! * [`ArtifactStore`]: immutable, content-addressed blobs (snapshot parts, profiles, models,
//!   reports, archived days of the prediction log) through `object_store`, on a local folder by default or in an S3 bucket
//!   (`s3://BUCKET/PREFIX`). Every write is atomic and every read verifies the BLAKE3 hash, so a
//!   tampered or truncated file is refused, never used.
//!
//! [`Store`] opens both from a [`StoreLocation`].

mod alerts;
mod appender;
mod archives;
mod artifacts;
pub mod doctor;
mod leases;
mod meta;
mod pipelines;
mod predictions;
mod registry;
mod retrains;
mod rollouts;
mod runs;
#[cfg(feature = "testing")]
pub mod testing;

use std::path::{Path, PathBuf};

pub use alerts::{Alert, MODEL_LOAD_RULE, NewAlert};
pub use archives::{DAY_US, LogArchive, LogPartition, NewLogArchive, day_of};
pub use artifacts::{ArtifactStore, S3Options, VerifiedFile};
pub use leases::Lease;
pub use meta::{DatasetRecord, DatasetVersion, MetaStore, NewVersion, PartRef};
pub use pipelines::{NewStage, PipelineRun, StageRecord};
pub use predictions::{
    CANARY_ALIAS, FeedbackOutcome, FeedbackRecord, LabelQuery, LabelledPrediction, PredictionQuery,
    PredictionRecord, SHADOW_ALIAS, StoredFeedback, StoredPrediction,
};
pub use registry::{Alias, AliasMove, Expect, ModelVersion};
pub use retrains::{NewRetrain, Retrain, RetrainOutcome};
pub use rollouts::{NewRollout, Rollout};
pub use runs::{NewRun, Run, RunResult, RunStatus};

use kiln_core::id::ContentId;

/// Everything that can go wrong in a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("metadata database {url}: {source}{}", hint.map(|h| format!("\nhint: {h}")).unwrap_or_default())]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
        /// What to check, when the cause is a known one.
        hint: Option<&'static str>,
        /// The server refused what the user configured (no such database, credentials):
        /// their input, not a broken system.
        refused: bool,
    },
    #[error("metadata database: {0}")]
    Db(#[from] sqlx::Error),
    /// From the prediction log's own SQLite connection (see `appender`).
    #[error("metadata database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("metadata database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL `{0}`: use sqlite://PATH or postgres://USER@HOST/DB")]
    BadDbUrl(String),
    #[error(
        "unsupported artifact store `{0}`: use a folder path, a file:// URL or s3://BUCKET/PREFIX"
    )]
    BadArtifactUrl(String),
    /// An `s3://` store is configured wrongly (URL, endpoint, client settings).
    #[error("artifact store {url}: {message}")]
    S3Config { url: String, message: String },
    #[error(
        "artifact store {url}: cannot reach the S3 endpoint {endpoint} ({reason}); check the endpoint (AWS_ENDPOINT_URL, or endpoint under [store.s3] in kiln.toml) and that the server is running"
    )]
    S3Unreachable {
        url: String,
        endpoint: String,
        reason: String,
    },
    #[error(
        "artifact store {url}: the S3 endpoint {endpoint} refused the credentials ({code}); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones), and that they may list, read and write the bucket"
    )]
    S3Credentials {
        url: String,
        endpoint: String,
        code: String,
    },
    #[error(
        "artifact store {url}: no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or run where an instance or container role provides them)"
    )]
    S3NoCredentials { url: String },
    #[error(
        "artifact store {url}: the bucket `{bucket}` does not exist at {endpoint}; create it (e.g. `aws s3 mb s3://{bucket}`) or correct the URL"
    )]
    S3NoBucket {
        url: String,
        bucket: String,
        endpoint: String,
    },
    #[error("artifact store {url}: {message}")]
    S3 { url: String, message: String },
    #[error("artifact store: {0}")]
    Object(#[from] object_store::Error),
    #[error("artifact store: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "artifact {0} is missing from the artifact store (was it deleted by hand? restore it from a backup)"
    )]
    Missing(ContentId),
    #[error(
        "artifact {expected} is corrupt or was tampered with: its content hashes to {found}; restore it from a backup or re-create it (kiln refuses to use it)"
    )]
    Tampered {
        expected: ContentId,
        found: ContentId,
    },
    #[error("stored record is unreadable ({what}): {message}")]
    Corrupt { what: String, message: String },
    /// The caller's input cannot be stored as given (the message says which item and why).
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Where the two stores live.
#[derive(Clone, Debug)]
pub struct StoreLocation {
    /// `sqlite://PATH` or `postgres://...`.
    pub db_url: String,
    /// A folder path, `file://` URL or `s3://BUCKET/PREFIX`.
    pub artifacts_url: String,
    /// Settings of an `s3://` artifact store beyond the `AWS_*` variables.
    pub s3: S3Options,
}

impl StoreLocation {
    /// The defaults inside a home folder: `HOME/kiln.db` and `HOME/artifacts/`.
    pub fn in_home(home: &Path) -> Self {
        Self {
            db_url: format!("sqlite://{}", home.join("kiln.db").display()),
            artifacts_url: home.join("artifacts").display().to_string(),
            s3: S3Options::default(),
        }
    }

    /// A folder for temporary files next to the artifacts, so a final rename stays on one disk.
    pub fn scratch_dir(home: &Path) -> PathBuf {
        home.join("tmp")
    }
}

/// Both stores, opened.
#[derive(Clone, Debug)]
pub struct Store {
    pub meta: MetaStore,
    pub artifacts: ArtifactStore,
}

impl Store {
    /// Opens (and creates, for SQLite and folders) both stores and brings the schema up to date.
    pub async fn open(location: &StoreLocation) -> Result<Self> {
        let artifacts = ArtifactStore::open_with(&location.artifacts_url, &location.s3).await?;
        let meta = MetaStore::connect(&location.db_url).await?;
        Ok(Self { meta, artifacts })
    }

    /// Stores `bytes` as an artifact of `kind` and records it in the metadata.
    pub async fn put_bytes(&self, kind: &str, bytes: bytes::Bytes) -> Result<ContentId> {
        let size = bytes.len() as u64;
        let id = self.artifacts.put_bytes(bytes).await?;
        self.meta.record_artifact(&id, kind, size).await?;
        Ok(id)
    }

    /// Stores a value as a JSON artifact of `kind` and records it.
    pub async fn put_json<T: serde::Serialize>(&self, kind: &str, value: &T) -> Result<ContentId> {
        let bytes = serde_json::to_vec(value).map_err(|e| StoreError::Corrupt {
            what: format!("{kind} to store"),
            message: e.to_string(),
        })?;
        self.put_bytes(kind, bytes.into()).await
    }

    /// Stores a scratch file Kiln wrote (moved into place when possible) and records it.
    pub async fn put_file_owned(
        &self,
        kind: &str,
        file: tempfile::TempPath,
    ) -> Result<(ContentId, u64)> {
        let (id, size) = self.artifacts.put_file_owned(file).await?;
        self.meta.record_artifact(&id, kind, size).await?;
        Ok((id, size))
    }
}
