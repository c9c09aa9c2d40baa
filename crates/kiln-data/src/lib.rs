//! Kiln's data stage: from a user's file to an immutable, validated, profiled snapshot.
//!
//! * [`ingest`]: `kiln data add`. Streams CSV, gzip CSV or Parquet in bounded batches through
//!   conversion to typed columns, validation ([`validate`]), profiling and a Parquet writer,
//!   then stores the result as a content-addressed snapshot part with its profile.
//! * [`snapshot`]: reading snapshots back (export, diff, later training), resolving `NAME@VER`.
//! * [`diff`]: what changed between two versions.
//! * [`rows`]: JSON rows (the prediction API's instances) to a normalized batch, converted like CSV cells.
//!
//! Invariants: a rejected file stores nothing (artifacts and metadata untouched); artifacts are
//! written before the metadata row that names them, so a crash leaves at worst an unreferenced
//! blob, never a version pointing at something missing; identical content gets the same id.

pub mod diff;
pub mod ingest;
pub mod rows;
pub mod snapshot;
pub mod validate;

use std::path::PathBuf;

use kiln_core::names::BadName;
use kiln_core::schema::SchemaChange;
use kiln_store::StoreError;

pub use ingest::{AddOptions, AddOutcome, Progress, add};
pub use snapshot::{DatasetRef, ExportFormat};
pub use validate::{ValidationReport, Violation};

/// A temporary file in the folder of `out` (created if needed), to be filled and then
/// persisted over `out`: a file Kiln writes for the user appears whole or not at all, and
/// the rename never crosses file systems.
pub fn temp_file_beside(
    out: &std::path::Path,
    prefix: &str,
) -> std::io::Result<tempfile::NamedTempFile> {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    tempfile::Builder::new().prefix(prefix).tempfile_in(dir)
}

/// Everything that can go wrong in the data stage.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {message}")]
    Input { path: PathBuf, message: String },
    #[error("{path}: the file is empty (no header row)")]
    EmptyFile { path: PathBuf },
    #[error("{path}: the file has a header but no data rows")]
    NoRows { path: PathBuf },
    #[error("{path}: duplicate column name `{name}` in the header (columns {first} and {second})")]
    DuplicateHeader {
        path: PathBuf,
        name: String,
        first: usize,
        second: usize,
    },
    #[error("{0}")]
    Validation(Box<ValidationReport>),
    #[error(
        "schema of `{dataset}` changed: {change}\nhint: if this is intended, pass --allow-schema-change (or set allow_schema_change = true for the dataset in kiln.toml)"
    )]
    SchemaDrift {
        dataset: String,
        change: SchemaChange,
    },
    #[error(
        "kiln.toml declares column `{column}` for dataset `{dataset}`, but {path} has no such column\nhint: columns in the file: {available}"
    )]
    UnknownConfigColumn {
        dataset: String,
        column: String,
        path: PathBuf,
        available: String,
    },
    #[error("{what} `{column}` is not a column of {path}\nhint: columns in the file: {available}")]
    MissingColumn {
        what: &'static str,
        column: String,
        path: PathBuf,
        available: String,
    },
    #[error("{what} `{column}` must be {expected}, but it is {found}")]
    WrongColumnType {
        what: &'static str,
        column: String,
        expected: &'static str,
        found: String,
    },
    #[error(
        "cannot append to `{dataset}`: {change}\nhint: appended rows must have the dataset's schema; add without --append to start a version with the new schema"
    )]
    AppendSchemaMismatch {
        dataset: String,
        change: SchemaChange,
    },
    #[error(
        "no dataset named `{0}`\nhint: `kiln data log` lists datasets; `kiln data add FILE --dataset NAME` creates one"
    )]
    UnknownDataset(String),
    #[error("dataset `{dataset}` has no version {version} (latest is {latest})")]
    UnknownVersion {
        dataset: String,
        version: i64,
        latest: i64,
    },
    #[error("`{0}` is not a dataset reference: use NAME or NAME@VERSION (e.g. bikes@2)")]
    BadRef(String),
    #[error(transparent)]
    Name(#[from] BadName),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl DataError {
    /// Whether the user's input (file, flags, config) is at fault, as opposed to the system.
    /// The CLI exits 2 for these and 1 for the rest.
    pub fn is_input_error(&self) -> bool {
        !matches!(
            self,
            DataError::Store(_) | DataError::Io(_) | DataError::Arrow(_)
        )
    }
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;
