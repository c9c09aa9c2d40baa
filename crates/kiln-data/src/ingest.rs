//! `kiln data add`: a file in, a validated, profiled, content-addressed snapshot out.
//!
//! The file is streamed in batches of `[ingest] batch_rows` rows through two threads:
//!
//! ```text
//!  reader thread:  read (gzip) → parse CSV / decode Parquet → typed Arrow columns  ──┐ bounded
//!  main thread:    row rules → profile → Parquet part (hashed as written)        ◀──┘ channel
//! ```
//!
//! so memory is bounded by a few batches whatever the file size, and the two cores of a small
//! machine both work. Under the `reject` policy the first bad row stops the writer (the rest is
//! still read, to count every violation) and nothing reaches the stores; under `quarantine`, bad
//! rows go to a gzip CSV stored beside the snapshot.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;

use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Float64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use kiln_core::config::{Config, DatasetConfig, Policy};
use kiln_core::id::ContentId;
use kiln_core::names::validate_name;
use kiln_core::profile::{ColumnStats, DatasetProfile, Profiler};
use kiln_core::schema::{Column, FeatureType, Schema};
use kiln_core::value::{
    format_days, format_timestamp, infer_type, parse_bool, parse_date, parse_number,
    parse_timestamp,
};
use kiln_store::{DatasetVersion, NewVersion, PartRef, Store};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::Serialize;

use crate::snapshot::snapshot_id;
use crate::validate::{Rules, ValidationReport, Violation, show_value};
use crate::{DataError, Result};
use kiln_core::table::{UTC_TZ, arrow_schema, cell_text, feature_type_of};

/// What `kiln data add` was asked to do.
#[derive(Clone, Debug)]
pub struct AddOptions {
    pub file: PathBuf,
    pub dataset: String,
    pub time_column: Option<String>,
    pub target: Option<String>,
    pub append: bool,
    pub allow_schema_change: bool,
    /// What the version's lineage names as its source (default: the file's path), for a
    /// file written only to be ingested, such as labelled production rows.
    pub source: Option<String>,
}

/// What `kiln data add` did.
#[derive(Clone, Debug, Serialize)]
pub struct AddOutcome {
    pub version: DatasetVersion,
    /// False when the content was already the latest version (nothing new was written).
    pub created: bool,
    /// Rows stored aside under the quarantine policy, with the report that explains them.
    pub quarantined_rows: u64,
    pub report: ValidationReport,
    pub seconds: f64,
}

/// Progress of a long ingest, in bytes of the input file.
pub trait Progress: Send + Sync {
    fn start(&self, total_bytes: u64);
    fn set_position(&self, bytes: u64);
    fn finish(&self);
}

/// No progress display.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: u64) {}
    fn set_position(&self, _: u64) {}
    fn finish(&self) {}
}

/// Adds `opts.file` to the dataset: validate, profile, snapshot, record a version.
pub async fn add(
    store: &Store,
    config: &Config,
    scratch: &Path,
    opts: &AddOptions,
    progress: Arc<dyn Progress>,
) -> Result<AddOutcome> {
    let started = std::time::Instant::now();
    validate_name("dataset", &opts.dataset)?;
    let ds_config = config.dataset(&opts.dataset);
    let existing = store.meta.dataset(&opts.dataset).await?;
    let latest = store.meta.version(&opts.dataset, None).await?;
    let time_column = opts
        .time_column
        .clone()
        .or_else(|| ds_config.time_column.clone())
        .or_else(|| existing.as_ref().and_then(|d| d.time_column.clone()));
    let target = opts
        .target
        .clone()
        .or_else(|| ds_config.target.clone())
        .or_else(|| existing.as_ref().and_then(|d| d.target.clone()));

    std::fs::create_dir_all(scratch)?;
    // Appending under a uniqueness rule: the new rows must not repeat values of the earlier
    // parts, so those parts (hash-verified) are read to seed the rule.
    let mut seed = Vec::new();
    if let (Some(prev), true) = (&latest, opts.append)
        && ds_config.columns.values().any(|c| c.unique)
    {
        for p in &prev.parts {
            seed.push(store.artifacts.fetch(&p.id, scratch).await?);
        }
    }
    let job = IngestJob {
        seed_parts: seed.iter().map(|f| f.path.clone()).collect(),
        path: opts.file.clone(),
        dataset: opts.dataset.clone(),
        config: ds_config.clone(),
        batch_rows: config.ingest.batch_rows,
        infer_rows: config.ingest.infer_rows,
        max_shown: config.ingest.max_errors_shown,
        previous_schema: latest.as_ref().map(|v| v.schema.clone()),
        allow_schema_change: opts.allow_schema_change || ds_config.allow_schema_change,
        append: opts.append,
        time_column: time_column.clone(),
        target: target.clone(),
        scratch: scratch.to_owned(),
        required: None,
    };
    let mut part = tokio::task::spawn_blocking(move || job.run(progress.as_ref()))
        .await
        .map_err(|e| DataError::Io(std::io::Error::other(e)))??;

    // Artifacts first, metadata last: a crash in between leaves only unreferenced blobs.
    let (part_id, _) = store
        .put_file_owned("snapshot-part", part.file.into_temp_path())
        .await?;
    let part_profile_id = store.put_json("profile", &part.profile).await?;
    let quarantine_id = match part.quarantine.take() {
        Some(q) => Some(
            store
                .put_file_owned("quarantine", q.into_temp_path())
                .await?
                .0,
        ),
        None => None,
    };

    let new_part = PartRef {
        id: part_id,
        rows: part.rows,
        profile_id: part_profile_id.clone(),
    };
    let (parts, profile, profile_id) = match (&latest, opts.append) {
        (Some(prev), true) => {
            if prev.parts.iter().any(|p| p.id == new_part.id) {
                // The same rows are already part of the latest version: adding them is a no-op.
                return Ok(AddOutcome {
                    version: prev.clone(),
                    created: false,
                    quarantined_rows: part.report.bad_rows,
                    report: part.report,
                    seconds: started.elapsed().as_secs_f64(),
                });
            }
            let prev_profile: DatasetProfile = load_profile(store, &prev.profile_id).await?;
            let mut merged = prev_profile;
            merged
                .merge(&part.profile)
                .map_err(|e| DataError::Io(std::io::Error::other(e)))?;
            let id = store.put_json("profile", &merged).await?;
            let mut parts = prev.parts.clone();
            parts.push(new_part);
            (parts, merged, id)
        }
        _ => (vec![new_part], part.profile.clone(), part_profile_id),
    };
    let rows: u64 = parts.iter().map(|p| p.rows).sum();
    let (time_min, time_max) = time_range(&profile, time_column.as_deref());
    let new = NewVersion {
        dataset: opts.dataset.clone(),
        time_column,
        target,
        snapshot_id: snapshot_id(&part.schema, &parts),
        mode: if opts.append && latest.is_some() {
            "append".into()
        } else {
            "add".into()
        },
        rows,
        schema: part.schema.clone(),
        parts,
        profile_id,
        time_min,
        time_max,
        source: opts
            .source
            .clone()
            .unwrap_or_else(|| opts.file.display().to_string()),
        source_hash: part.source_hash.clone(),
        quarantine_id,
        quarantined_rows: part.report.bad_rows,
    };
    let (version, created) = store.meta.add_version(&new).await?;
    tracing::info!(
        dataset = %version.dataset,
        version = version.version,
        snapshot = %version.snapshot_id,
        rows = version.rows,
        created,
        seconds = started.elapsed().as_secs_f64(),
        "snapshot stored"
    );
    Ok(AddOutcome {
        version,
        created,
        quarantined_rows: part.report.bad_rows,
        report: part.report,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// A file read and validated exactly like an ingest, but not stored: the input of batch
/// scoring. The rows wait in a scratch Parquet file in the normalized representation.
pub struct CheckedFile {
    pub part: tempfile::NamedTempFile,
    pub rows: u64,
    pub schema: Schema,
}

/// Reads and validates `path` for scoring by a model whose inputs are `inputs`: those columns
/// get the model's types, the dataset's expectations (`rules`) apply to the columns present,
/// other columns are carried along with inferred types. Any bad row rejects the file (a
/// scoring run must not silently drop rows); the error is the usual validation report.
pub async fn check_file(
    config: &Config,
    dataset: &str,
    mut rules: DatasetConfig,
    inputs: &Schema,
    path: &Path,
    scratch: &Path,
    progress: Arc<dyn Progress>,
) -> Result<CheckedFile> {
    for c in &inputs.columns {
        rules.columns.entry(c.name.clone()).or_default().ftype = Some(c.ftype);
    }
    rules.policy = Policy::Reject;
    std::fs::create_dir_all(scratch)?;
    let job = IngestJob {
        seed_parts: Vec::new(),
        path: path.to_owned(),
        dataset: dataset.to_owned(),
        config: rules,
        batch_rows: config.ingest.batch_rows,
        infer_rows: config.ingest.infer_rows,
        max_shown: config.ingest.max_errors_shown,
        previous_schema: None,
        allow_schema_change: true,
        append: false,
        time_column: None,
        target: None,
        scratch: scratch.to_owned(),
        required: Some(inputs.names().map(str::to_owned).collect()),
    };
    let part = tokio::task::spawn_blocking(move || job.run(progress.as_ref()))
        .await
        .map_err(|e| DataError::Io(std::io::Error::other(e)))??;
    Ok(CheckedFile {
        part: part.file,
        rows: part.rows,
        schema: part.schema,
    })
}

/// Reads a stored profile, verifying its hash.
pub async fn load_profile(store: &Store, id: &ContentId) -> Result<DatasetProfile> {
    let bytes = store.artifacts.get_bytes(id).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        DataError::Store(kiln_store::StoreError::Corrupt {
            what: format!("profile {id}"),
            message: e.to_string(),
        })
    })
}

/// Entry point of the `ingest` fuzz target in `fuzz/`. Hidden: not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// What `kiln data add` does to `path` before anything is stored, for a dataset with no
    /// earlier version: read (CSV, gzip CSV or Parquet), type, validate, profile and write the
    /// Parquet part to `scratch`. Returns the rows kept and the rows set aside.
    pub fn read_file(
        config: &Config,
        dataset: &str,
        path: &Path,
        scratch: &Path,
    ) -> Result<(u64, u64)> {
        let ds_config = config.dataset(dataset);
        std::fs::create_dir_all(scratch)?;
        let job = IngestJob {
            seed_parts: Vec::new(),
            path: path.to_owned(),
            dataset: dataset.to_owned(),
            time_column: ds_config.time_column.clone(),
            target: ds_config.target.clone(),
            allow_schema_change: ds_config.allow_schema_change,
            config: ds_config,
            batch_rows: config.ingest.batch_rows,
            infer_rows: config.ingest.infer_rows,
            max_shown: config.ingest.max_errors_shown,
            previous_schema: None,
            append: false,
            scratch: scratch.to_owned(),
            required: None,
        };
        let part = job.run(&NoProgress)?;
        Ok((part.rows, part.report.bad_rows))
    }
}

/// The time range of a profile's time column, as text.
fn time_range(
    profile: &DatasetProfile,
    time_column: Option<&str>,
) -> (Option<String>, Option<String>) {
    let Some(col) = time_column.and_then(|t| profile.column(t)) else {
        return (None, None);
    };
    match (&col.stats, col.ftype) {
        (ColumnStats::Temporal { min, max }, FeatureType::Date) => (
            min.map(|d| format_days(d as i32)),
            max.map(|d| format_days(d as i32)),
        ),
        (ColumnStats::Temporal { min, max }, _) => {
            (min.map(format_timestamp), max.map(format_timestamp))
        }
        _ => (None, None),
    }
}

/// The part of an add that runs on blocking threads.
struct IngestJob {
    path: PathBuf,
    dataset: String,
    config: DatasetConfig,
    batch_rows: usize,
    infer_rows: usize,
    max_shown: usize,
    previous_schema: Option<Schema>,
    allow_schema_change: bool,
    append: bool,
    time_column: Option<String>,
    target: Option<String>,
    scratch: PathBuf,
    /// Parts of the version an append extends, for uniqueness across the whole version.
    seed_parts: Vec<PathBuf>,
    /// Scoring: the columns a model needs. Rules of columns the file lacks are then skipped,
    /// and a missing required column is the error.
    required: Option<Vec<String>>,
}

/// A validated part, written to scratch, not yet stored.
struct PartFile {
    file: tempfile::NamedTempFile,
    rows: u64,
    schema: Schema,
    profile: DatasetProfile,
    report: ValidationReport,
    source_hash: ContentId,
    quarantine: Option<tempfile::NamedTempFile>,
}

/// Parsed CSV records on their way from the parser thread to the converter.
struct RawBatch {
    records: Vec<csv::ByteRecord>,
    /// 1-based row number of the first record.
    first_row: u64,
}

/// One converted batch on its way from the reader thread to the writer.
struct Converted {
    batch: RecordBatch,
    first_row: u64,
    /// CSV line of each row (empty for Parquet).
    lines: Vec<u64>,
    /// Rows the reader already found bad (parse failures, ragged rows, bad UTF-8).
    bad: Vec<bool>,
    /// The rows as text, for the quarantine file; only kept under that policy.
    raw: Option<Vec<Vec<String>>>,
}

enum Format {
    Csv { delimiter: u8 },
    Parquet,
}

fn input_error(path: &Path, message: impl Into<String>) -> DataError {
    DataError::Input {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Counts the bytes read from the file (for the progress bar) and hashes them (for lineage),
/// so the file is read once.
struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
    hasher: Arc<std::sync::Mutex<blake3::Hasher>>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        if let Ok(mut h) = self.hasher.lock() {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

impl IngestJob {
    fn run(self, progress: &dyn Progress) -> Result<PartFile> {
        let path = self.path.clone();
        let meta = std::fs::metadata(&path).map_err(|e| input_error(&path, e.to_string()))?;
        if meta.is_dir() {
            return Err(input_error(&path, "is a folder, not a data file"));
        }
        if meta.len() == 0 {
            return Err(DataError::EmptyFile { path });
        }
        let format = detect_format(&path)?;
        progress.start(meta.len());
        let result = match format {
            Format::Csv { delimiter } => self.run_csv(delimiter, progress),
            Format::Parquet => self.run_parquet(progress),
        };
        progress.finish();
        result
    }

    fn run_csv(&self, delimiter: u8, progress: &dyn Progress) -> Result<PartFile> {
        let path = &self.path;
        let file = File::open(path).map_err(|e| input_error(path, e.to_string()))?;
        let mut head = [0u8; 2];
        let gz = {
            let mut f = File::open(path).map_err(|e| input_error(path, e.to_string()))?;
            f.read(&mut head)
                .map_err(|e| input_error(path, e.to_string()))?
                == 2
                && head == [0x1f, 0x8b]
        };
        let counter = Arc::new(AtomicU64::new(0));
        let hasher = Arc::new(std::sync::Mutex::new(blake3::Hasher::new()));
        let counting = CountingReader {
            inner: file,
            count: counter.clone(),
            hasher: hasher.clone(),
        };
        let source: Box<dyn Read + Send> = if gz {
            Box::new(BufReader::with_capacity(
                1 << 20,
                flate2::bufread::MultiGzDecoder::new(BufReader::with_capacity(1 << 20, counting)),
            ))
        } else {
            Box::new(counting)
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .buffer_capacity(1 << 20)
            .from_reader(source);

        let mut header = csv::ByteRecord::new();
        let got = reader
            .read_byte_record(&mut header)
            .map_err(|e| csv_error(path, e))?;
        if !got {
            return Err(DataError::EmptyFile { path: path.clone() });
        }
        let names = header_names(path, &header)?;

        // Sample rows for type inference; they are then processed like every other row.
        let mut sample = Vec::new();
        let mut record = csv::ByteRecord::new();
        while sample.len() < self.infer_rows {
            if !reader
                .read_byte_record(&mut record)
                .map_err(|e| csv_error(path, e))?
            {
                break;
            }
            sample.push(record.clone());
        }
        if sample.is_empty() {
            return Err(DataError::NoRows { path: path.clone() });
        }
        let sample_text: Vec<Vec<&str>> = (0..names.len())
            .map(|c| {
                sample
                    .iter()
                    .filter_map(|r| r.get(c))
                    .filter_map(|b| std::str::from_utf8(b).ok())
                    .filter(|s| !is_null(s))
                    .collect()
            })
            .collect();
        let schema = self.resolve_schema(&names, |i| ColumnSample::Text(&sample_text[i]))?;
        drop(sample_text);

        let quarantine = self.config.policy == Policy::Quarantine;
        let batch_rows = self.batch_rows;
        let schema_for_reader = schema.clone();
        // Three stages, each on its own thread, joined by bounded channels: parsing CSV,
        // converting to typed columns, and (on this thread) validating, profiling and writing.
        // Emptied record batches travel back to the parser, so rows are never allocated twice.
        let (raw_tx, raw_rx) = sync_channel::<Result<RawBatch>>(4);
        let (recycle_tx, recycle_rx) = std::sync::mpsc::channel::<Vec<csv::ByteRecord>>();
        let (tx, rx) = sync_channel::<Result<Converted>>(4);
        let mut reader_report = self.new_report();
        let path_owned = path.clone();
        let ncols = names.len();
        let mut checker = Checker::new(self, &schema)?;
        let (rows_read, files) = std::thread::scope(|scope| {
            let reader_report = &mut reader_report;
            let parser = scope.spawn(move || -> u64 {
                let mut row = 0u64;
                let mut first = Some(sample);
                loop {
                    let (mut records, mut n) = match first.take() {
                        Some(s) => {
                            let n = s.len();
                            (s, n)
                        }
                        None => (recycle_rx.try_recv().unwrap_or_default(), 0),
                    };
                    let mut done = false;
                    while n < batch_rows {
                        if n == records.len() {
                            records.push(csv::ByteRecord::new());
                        }
                        match reader.read_byte_record(&mut records[n]) {
                            Ok(true) => n += 1,
                            Ok(false) => {
                                done = true;
                                break;
                            }
                            Err(e) => {
                                // The writer reports it; the parser just stops.
                                let _ = raw_tx.send(Err(csv_error(&path_owned, e)));
                                return row;
                            }
                        }
                    }
                    records.truncate(n);
                    if n > 0 {
                        let first_row = row + 1;
                        row += n as u64;
                        progress.set_position(counter.load(Ordering::Relaxed));
                        if raw_tx.send(Ok(RawBatch { records, first_row })).is_err() {
                            break;
                        }
                    }
                    if done {
                        break;
                    }
                }
                row
            });
            scope.spawn(move || {
                for raw in raw_rx {
                    let converted = raw.and_then(|raw| {
                        let lines: Vec<u64> = raw
                            .records
                            .iter()
                            .map(|r| r.position().map_or(0, |p| p.line()))
                            .collect();
                        let c = convert_csv(
                            &raw.records,
                            &lines,
                            raw.first_row,
                            &schema_for_reader,
                            ncols,
                            quarantine,
                            reader_report,
                        );
                        let _ = recycle_tx.send(raw.records);
                        c
                    });
                    if tx.send(converted).is_err() {
                        break;
                    }
                }
            });
            let written = self.write_part(
                &schema,
                rx.into_iter().map(|c| c.and_then(|c| checker.check(c))),
            );
            let rows_read = parser
                .join()
                .map_err(|_| DataError::Io(std::io::Error::other("the parser thread panicked")))?;
            Ok::<_, DataError>((rows_read, written?))
        })?;
        // The whole file went through the hasher (the parser read to the end).
        let source_hash = match hasher.lock() {
            Ok(h) => ContentId::from_hash(h.finalize()),
            Err(_) => hash_path(path)?,
        };
        self.assemble(
            schema,
            files,
            checker,
            source_hash,
            rows_read,
            &reader_report,
        )
    }

    fn run_parquet(&self, progress: &dyn Progress) -> Result<PartFile> {
        let path = &self.path;
        let file = File::open(path).map_err(|e| input_error(path, e.to_string()))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| input_error(path, format!("not a readable Parquet file: {e}")))?;
        let file_len = std::fs::metadata(path)?.len();
        check_column_chunks(path, builder.metadata(), file_len)?;
        let total_rows = builder.metadata().file_metadata().num_rows().max(0) as u64;
        let arrow = builder.schema().clone();
        too_many_columns(path, arrow.fields().len(), false)?;
        let names: Vec<String> = arrow.fields().iter().map(|f| f.name().clone()).collect();
        check_duplicates(path, &names)?;
        for field in arrow.fields() {
            let dt = field.data_type();
            if feature_type_of(dt).is_none() && !is_text_type(dt) {
                return Err(input_error(
                    path,
                    format!(
                        "column `{}` has Arrow type {dt}, which is not a table cell Kiln can ingest\nhint: flatten or drop nested columns (lists, structs, maps) before adding the file",
                        field.name()
                    ),
                ));
            }
        }
        if total_rows == 0 {
            return Err(DataError::NoRows { path: path.clone() });
        }
        let mut reader = builder
            .with_batch_size(self.batch_rows)
            .build()
            .map_err(|e| input_error(path, e.to_string()))?;
        // Sample the first batch for string columns, whose type comes from their values.
        let first = match reader.next() {
            Some(b) => b.map_err(|e| input_error(path, e.to_string()))?,
            None => return Err(DataError::NoRows { path: path.clone() }),
        };
        let sample_len = first.num_rows().min(self.infer_rows);
        let string_samples: Vec<Option<Vec<String>>> = (0..names.len())
            .map(|i| {
                let col = first.column(i);
                feature_type_of(col.data_type())
                    .is_none()
                    .then(|| string_values(col, sample_len))
            })
            .collect();
        let schema = self.resolve_schema(&names, |i| match &string_samples[i] {
            Some(v) => ColumnSample::Owned(v),
            None => ColumnSample::Native(
                feature_type_of(first.column(i).data_type()).unwrap_or(FeatureType::Text),
            ),
        })?;
        drop(string_samples);
        drop(first);
        drop(reader);
        // Read again from the start, now asking for categorical string columns as Arrow
        // dictionaries: Parquet stores them dictionary-encoded, so they arrive without a hash
        // per value, and normalizing them only recasts the small dictionary.
        let dict_schema = Arc::new(arrow_schema::Schema::new(
            arrow
                .fields()
                .iter()
                .zip(&schema.columns)
                .map(|(f, c)| {
                    let dt = f.data_type();
                    if c.ftype == FeatureType::Categorical
                        && matches!(dt, DataType::Utf8 | DataType::LargeUtf8)
                    {
                        f.as_ref().clone().with_data_type(DataType::Dictionary(
                            Box::new(DataType::Int32),
                            Box::new(dt.clone()),
                        ))
                    } else {
                        f.as_ref().clone()
                    }
                })
                .collect::<Vec<_>>(),
        ));
        let open = |options: parquet::arrow::arrow_reader::ArrowReaderOptions| {
            File::open(path)
                .map_err(|e| input_error(path, e.to_string()))
                .and_then(|f| {
                    ParquetRecordBatchReaderBuilder::try_new_with_options(f, options)
                        .and_then(|b| b.with_batch_size(self.batch_rows).build())
                        .map_err(|e| input_error(path, e.to_string()))
                })
        };
        let mut reader = match open(
            parquet::arrow::arrow_reader::ArrowReaderOptions::new().with_schema(dict_schema),
        ) {
            Ok(r) => r,
            // A file whose strings cannot be read as dictionaries is read as it is.
            Err(_) => open(parquet::arrow::arrow_reader::ArrowReaderOptions::new())?,
        };

        let quarantine = self.config.policy == Policy::Quarantine;
        let (tx, rx) = sync_channel::<Result<Checked>>(4);
        let mut reader_report = self.new_report();
        let schema_for_reader = schema.clone();
        let mut checker = Checker::new(self, &schema)?;
        let (rows_read, files) = std::thread::scope(|scope| {
            let reader_report = &mut reader_report;
            let checker = &mut checker;
            let handle = scope.spawn(move || -> u64 {
                let mut row = 0u64;
                for batch in reader.by_ref() {
                    let batch = match batch {
                        Ok(b) => b,
                        Err(e) => {
                            let _ = tx.send(Err(input_error(path, e.to_string())));
                            break;
                        }
                    };
                    let n = batch.num_rows();
                    let checked = normalize_batch(
                        &batch,
                        row + 1,
                        &schema_for_reader,
                        quarantine,
                        reader_report,
                    )
                    .and_then(|c| checker.check(c));
                    row += n as u64;
                    // Parquet decodes column chunks, not bytes in order: estimate by rows.
                    progress.set_position(file_len.saturating_mul(row) / total_rows);
                    if tx.send(checked).is_err() {
                        break;
                    }
                }
                row
            });
            let written = self.write_part(&schema, rx.into_iter());
            let rows = handle
                .join()
                .map_err(|_| DataError::Io(std::io::Error::other("the reader thread panicked")))?;
            Ok::<_, DataError>((rows, written?))
        })?;
        let source_hash = hash_path(path)?;
        self.assemble(
            schema,
            files,
            checker,
            source_hash,
            rows_read,
            &reader_report,
        )
    }

    /// Puts the written files, the checker's findings and the reader's together, then
    /// applies the file-level rules and the policy.
    fn assemble(
        &self,
        schema: Schema,
        (file, quarantine): (tempfile::NamedTempFile, Option<tempfile::NamedTempFile>),
        checker: Checker,
        source_hash: ContentId,
        rows_read: u64,
        reader_report: &ValidationReport,
    ) -> Result<PartFile> {
        let (mut report, profile, rows) = checker.finish();
        report.rows_read = rows_read;
        merge_reports(&mut report, reader_report, self.max_shown);
        self.finish_part(PartFile {
            file,
            rows,
            schema,
            profile,
            report,
            source_hash,
            quarantine,
        })
    }

    fn new_report(&self) -> ValidationReport {
        let mut report = ValidationReport::new(
            self.path.display().to_string(),
            self.dataset.clone(),
            self.config.policy,
            self.max_shown,
        );
        report.scoring = self.required.is_some();
        report
    }

    /// Decides the schema of the file's columns: declared type, else the dataset's existing
    /// type when the sample fits it, else the inferred type; then checks it against the
    /// dataset's schema, the config and the time/target columns.
    fn resolve_schema<'s>(
        &self,
        names: &[String],
        sample: impl Fn(usize) -> ColumnSample<'s>,
    ) -> Result<Schema> {
        let available = names.join(", ");
        for col in self.config.columns.keys() {
            if !names.contains(col) && self.required.is_none() {
                return Err(DataError::UnknownConfigColumn {
                    dataset: self.dataset.clone(),
                    column: col.clone(),
                    path: self.path.clone(),
                    available,
                });
            }
        }
        let mut columns = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let rules = self.config.columns.get(name);
            // An expectation implies a type: min/max only make sense for numbers,
            // allowed values and patterns only for strings.
            let declared = rules.and_then(|c| {
                c.ftype.or_else(|| {
                    if c.min.is_some() || c.max.is_some() {
                        Some(FeatureType::Numeric)
                    } else if c.allowed.is_some() || c.regex.is_some() {
                        Some(FeatureType::Categorical)
                    } else {
                        None
                    }
                })
            });
            let previous = self
                .previous_schema
                .as_ref()
                .and_then(|s| s.column(name))
                .map(|c| c.ftype);
            let s = sample(i);
            let ftype = match (declared, previous) {
                (Some(t), _) => t,
                // A few bad cells are row errors, not a new type: keep the dataset's type
                // while most sampled values fit it.
                (None, Some(p)) if s.mostly_fits(p) => p,
                _ => s.infer(),
            };
            columns.push(Column {
                name: name.clone(),
                ftype,
            });
        }
        let schema = Schema::new(columns);
        if let Some(prev) = &self.previous_schema {
            if self.append && prev.change_to(&schema).is_empty() && prev != &schema {
                return Err(input_error(
                    &self.path,
                    format!(
                        "columns are in a different order than in `{}` ({})\nhint: appended rows are stored beside the earlier ones, so the columns must come in the same order",
                        self.dataset,
                        prev.names().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            let change = prev.change_to(&schema);
            if !change.is_empty() {
                if self.append {
                    return Err(DataError::AppendSchemaMismatch {
                        dataset: self.dataset.clone(),
                        change,
                    });
                }
                if !self.allow_schema_change {
                    return Err(DataError::SchemaDrift {
                        dataset: self.dataset.clone(),
                        change,
                    });
                }
            }
        }
        if let Some(t) = &self.time_column {
            match schema.column(t) {
                None => {
                    return Err(DataError::MissingColumn {
                        what: "time column",
                        column: t.clone(),
                        path: self.path.clone(),
                        available,
                    });
                }
                Some(c) if !c.ftype.is_temporal() => {
                    return Err(DataError::WrongColumnType {
                        what: "time column",
                        column: t.clone(),
                        expected: "a date or timestamp",
                        found: c.ftype.to_string(),
                    });
                }
                Some(_) => {}
            }
        }
        for name in self.required.iter().flatten() {
            if schema.column(name).is_none() {
                return Err(DataError::MissingColumn {
                    what: "model input",
                    column: name.clone(),
                    path: self.path.clone(),
                    available,
                });
            }
        }
        if let Some(t) = &self.target
            && schema.column(t).is_none()
        {
            return Err(DataError::MissingColumn {
                what: "target",
                column: t.clone(),
                path: self.path.clone(),
                available,
            });
        }
        Ok(schema)
    }

    /// The writer side: row rules, profile, Parquet part, quarantine file.
    fn write_part(
        &self,
        schema: &Schema,
        items: impl Iterator<Item = Result<Checked>>,
    ) -> Result<(tempfile::NamedTempFile, Option<tempfile::NamedTempFile>)> {
        let file = tempfile::Builder::new()
            .prefix("part-")
            .suffix(".parquet")
            .tempfile_in(&self.scratch)?;
        let mut props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            // A fixed creator string keeps content ids stable across Kiln releases.
            .set_created_by("kiln".to_owned());
        for c in &schema.columns {
            if c.ftype == FeatureType::Timestamp {
                // Timestamps are mostly distinct: a dictionary would overflow its page and be
                // abandoned after costing a hash per value.
                props = props.set_column_dictionary_enabled(
                    parquet::schema::types::ColumnPath::from(c.name.as_str()),
                    false,
                );
            }
        }
        let sink = BufWriter::with_capacity(1 << 20, file.reopen()?);
        let mut writer = Some(ArrowWriter::try_new(
            sink,
            arrow_schema(schema),
            Some(props.build()),
        )?);
        let mut quarantine: Option<(
            tempfile::NamedTempFile,
            csv::Writer<flate2::write::GzEncoder<File>>,
        )> = None;
        for item in items {
            let checked = item?;
            if !checked.aside.is_empty() {
                let (_, w) = match &mut quarantine {
                    Some(q) => q,
                    None => {
                        let f = tempfile::Builder::new()
                            .prefix("quarantine-")
                            .suffix(".csv.gz")
                            .tempfile_in(&self.scratch)?;
                        let gz = flate2::write::GzEncoder::new(
                            f.reopen()?,
                            flate2::Compression::default(),
                        );
                        let mut w = csv::Writer::from_writer(gz);
                        let mut head = vec!["_row".to_owned(), "_line".to_owned()];
                        head.extend(schema.names().map(str::to_owned));
                        w.write_record(&head).map_err(csv_write_error)?;
                        quarantine.insert((f, w))
                    }
                };
                for rec in &checked.aside {
                    w.write_record(rec).map_err(csv_write_error)?;
                }
            }
            match checked.keep {
                Some(batch) => {
                    if let Some(w) = writer.as_mut() {
                        w.write(&batch)?;
                    }
                }
                // Rejected: nothing will be stored, so stop writing (checking goes on).
                None => writer = None,
            }
        }
        if let Some(w) = writer {
            let mut sink = w.into_inner()?;
            sink.flush()?;
            sink.get_ref().sync_all()?;
        }
        let quarantine = match quarantine {
            Some((f, w)) => {
                let gz = w
                    .into_inner()
                    .map_err(|e| DataError::Io(std::io::Error::other(e.to_string())))?;
                gz.finish()?.sync_all()?;
                Some(f)
            }
            None => None,
        };
        Ok((file, quarantine))
    }

    /// Applies the file-level rules and the policy to a finished part.
    fn finish_part(&self, mut part: PartFile) -> Result<PartFile> {
        for (name, limit) in Rules::compile(&part.schema, &self.config).null_limits {
            if let Some(col) = part.profile.column(&name) {
                // Judged on the rows kept (rows set aside are already reported).
                let frac = col.null_fraction();
                if frac > limit {
                    part.report.push(Violation {
                        row: None,
                        line: None,
                        column: Some(name.clone()),
                        value: Some(format!("{frac:.4}")),
                        rule: "max_null_fraction",
                        message: format!(
                            "{} of {} values are missing ({:.2}%), more than the allowed {:.2}%",
                            col.nulls,
                            col.rows,
                            frac * 100.0,
                            limit * 100.0
                        ),
                    });
                }
            }
        }
        let rejected = match self.config.policy {
            Policy::Reject => !part.report.is_clean(),
            Policy::Quarantine => part.report.has_file_failure() || part.rows == 0,
        };
        if rejected {
            return Err(DataError::Validation(Box::new(part.report)));
        }
        Ok(part)
    }
}

fn merge_reports(into: &mut ValidationReport, from: &ValidationReport, max_shown: usize) {
    into.violations += from.violations;
    for (k, v) in &from.by_rule {
        *into.by_rule.entry(k).or_insert(0) += v;
    }
    into.shown.extend(from.shown.iter().cloned());
    into.shown
        .sort_by_key(|v| (v.row.unwrap_or(u64::MAX), v.column.clone()));
    into.shown.truncate(max_shown);
}

fn csv_write_error(e: csv::Error) -> DataError {
    DataError::Io(std::io::Error::other(e.to_string()))
}

fn csv_error(path: &Path, e: csv::Error) -> DataError {
    let at = e
        .position()
        .map(|p| format!("line {}: ", p.line()))
        .unwrap_or_default();
    match e.into_kind() {
        csv::ErrorKind::Io(io) => {
            let msg = if io.kind() == std::io::ErrorKind::InvalidInput
                || io.to_string().contains("invalid gzip header")
                || io.to_string().contains("corrupt deflate")
            {
                format!("{at}the gzip stream is corrupt or truncated: {io}")
            } else {
                format!("{at}{io}")
            };
            input_error(path, msg)
        }
        other => input_error(path, format!("{at}malformed CSV: {other:?}")),
    }
}

fn hash_path(path: &Path) -> Result<ContentId> {
    let mut f = File::open(path)?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(ContentId::from_hash(h.finalize()))
}

fn detect_format(path: &Path) -> Result<Format> {
    let mut magic = [0u8; 4];
    let mut f = File::open(path).map_err(|e| input_error(path, e.to_string()))?;
    let n = f
        .read(&mut magic)
        .map_err(|e| input_error(path, e.to_string()))?;
    if n == 4 && &magic == b"PAR1" {
        return Ok(Format::Parquet);
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if name.ends_with(".parquet") || name.ends_with(".pq") {
        return Err(input_error(
            path,
            "has a .parquet name but is not a Parquet file (no PAR1 magic bytes)",
        ));
    }
    let delimiter = if name.ends_with(".tsv") || name.ends_with(".tsv.gz") {
        b'\t'
    } else {
        b','
    };
    Ok(Format::Csv { delimiter })
}

/// Most columns a dataset may have. Tabular models take tens to thousands of inputs; a
/// header with more is a wrong delimiter or a hostile file, refused before any column is built.
pub const MAX_COLUMNS: usize = 10_000;

fn too_many_columns(path: &Path, n: usize, csv: bool) -> Result<()> {
    if n > MAX_COLUMNS {
        let (at, hint) = if csv {
            (
                "line 1: the header",
                "\nhint: check that the first line is the header",
            )
        } else {
            ("the schema", "")
        };
        return Err(input_error(
            path,
            format!("{at} has {n} columns; Kiln takes at most {MAX_COLUMNS}{hint}"),
        ));
    }
    Ok(())
}

/// Every column chunk a Parquet footer declares must lie inside the file. The reader trusts the
/// footer's offsets and sizes (a negative one panics in `ColumnChunkMetaData::byte_range`, one
/// past the end asks for a read that cannot succeed), so a damaged or hostile footer is refused
/// here, naming the row group and column, before any page is read.
fn check_column_chunks(
    path: &Path,
    metadata: &parquet::file::metadata::ParquetMetaData,
    file_len: u64,
) -> Result<()> {
    for (g, group) in metadata.row_groups().iter().enumerate() {
        for chunk in group.columns() {
            let start = chunk
                .dictionary_page_offset()
                .unwrap_or_else(|| chunk.data_page_offset());
            let len = chunk.compressed_size();
            let inside = u64::try_from(start)
                .ok()
                .zip(u64::try_from(len).ok())
                .and_then(|(start, len)| start.checked_add(len))
                .is_some_and(|end| end <= file_len);
            if !inside {
                return Err(input_error(
                    path,
                    format!(
                        "row group {g}, column `{}`: the footer places its data at byte {start} with length {len}, outside the file ({file_len} bytes)\nhint: the file is damaged or was cut short; write it again",
                        chunk.column_path().string()
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn header_names(path: &Path, header: &csv::ByteRecord) -> Result<Vec<String>> {
    // A first line with nothing on it: the file has no header, whatever follows.
    if header.len() == 1 && header[0].iter().all(|b| b.is_ascii_whitespace()) {
        return Err(DataError::EmptyFile {
            path: path.to_owned(),
        });
    }
    too_many_columns(path, header.len(), true)?;
    let mut names = Vec::with_capacity(header.len());
    for (i, field) in header.iter().enumerate() {
        let mut text = std::str::from_utf8(field).map_err(|_| {
            input_error(
                path,
                format!("line 1: header column {} is not valid UTF-8", i + 1),
            )
        })?;
        if i == 0 {
            text = text.trim_start_matches('\u{feff}');
        }
        let text = text.trim();
        if text.is_empty() {
            return Err(input_error(
                path,
                format!(
                    "line 1: header column {} has no name\nhint: every column needs a name in the first line",
                    i + 1
                ),
            ));
        }
        names.push(text.to_owned());
    }
    check_duplicates(path, &names)?;
    Ok(names)
}

fn check_duplicates(path: &Path, names: &[String]) -> Result<()> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, n) in names.iter().enumerate() {
        if let Some(first) = seen.insert(n.as_str(), i + 1) {
            return Err(DataError::DuplicateHeader {
                path: path.to_owned(),
                name: n.clone(),
                first,
                second: i + 1,
            });
        }
    }
    Ok(())
}

#[inline]
fn is_null(s: &str) -> bool {
    kiln_core::value::is_null_token(s)
}

/// Sample values of one column, for typing it.
enum ColumnSample<'a> {
    Text(&'a [&'a str]),
    Owned(&'a [String]),
    /// A typed Parquet column: its type is what it is.
    Native(FeatureType),
}

impl ColumnSample<'_> {
    fn infer(&self) -> FeatureType {
        match self {
            ColumnSample::Text(v) => infer_type(v.iter().copied()),
            ColumnSample::Owned(v) => infer_type(v.iter().map(|s| s.as_str())),
            ColumnSample::Native(t) => *t,
        }
    }

    /// Whether every sampled value can be read as `t` (used to keep a dataset's existing type).
    fn mostly_fits(&self, t: FeatureType) -> bool {
        let fits_str = |s: &str| match t {
            FeatureType::Numeric => parse_number(s).is_some(),
            FeatureType::Boolean => parse_bool(s, true).is_some(),
            FeatureType::Date => parse_date(s).is_some(),
            FeatureType::Timestamp => parse_timestamp(s).is_some(),
            FeatureType::Categorical | FeatureType::Text => true,
        };
        let mostly = |n: usize, fit: usize| n == 0 || fit * 2 > n;
        match self {
            ColumnSample::Text(v) => mostly(v.len(), v.iter().filter(|s| fits_str(s)).count()),
            ColumnSample::Owned(v) => mostly(v.len(), v.iter().filter(|s| fits_str(s)).count()),
            ColumnSample::Native(n) => *n == t || t.is_string(),
        }
    }
}

/// The same instants with the zone dropped (a metadata change, no per-value work).
fn strip_timezone(array: &ArrayRef) -> Result<ArrayRef> {
    match array.data_type() {
        DataType::Timestamp(unit, Some(_)) => {
            let data = array
                .to_data()
                .into_builder()
                .data_type(DataType::Timestamp(*unit, None))
                .build()?;
            Ok(arrow_array::make_array(data))
        }
        _ => Ok(array.clone()),
    }
}

/// A dictionary of strings as Kiln's categorical type: Int32 keys, Utf8 values, and the
/// entries that spell a missing value (``, `NA`, ...) turned into nulls as in CSV.
fn normalize_dictionary(array: &ArrayRef) -> Result<ArrayRef> {
    let d = arrow_cast::cast(
        array,
        &kiln_core::table::arrow_type(FeatureType::Categorical),
    )?;
    let dict = d.as_dictionary::<Int32Type>();
    let values = dict.values().as_string::<i32>();
    let null_entry: Vec<bool> = (0..values.len())
        .map(|i| values.is_null(i) || is_null(values.value(i)))
        .collect();
    if !null_entry.iter().any(|b| *b) {
        return Ok(d);
    }
    let keys: arrow_array::Int32Array = dict
        .keys()
        .iter()
        .map(|k| k.filter(|k| !null_entry[*k as usize]))
        .collect();
    Ok(Arc::new(
        arrow_array::DictionaryArray::<Int32Type>::try_new(keys, dict.values().clone())?,
    ))
}

/// Whether a Parquet column holds strings (plain or dictionary-encoded).
fn is_text_type(dt: &DataType) -> bool {
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => is_text_type(v) || feature_type_of(v).is_some(),
        _ => false,
    }
}

/// String values of a string-like Arrow column (nulls left out).
fn string_values(col: &ArrayRef, n: usize) -> Vec<String> {
    let text = match arrow_cast::cast(col, &DataType::Utf8) {
        Ok(a) => a,
        Err(_) => return Vec::new(),
    };
    let s = text.as_string::<i32>();
    (0..n.min(s.len()))
        .filter(|i| s.is_valid(*i))
        .map(|i| s.value(i).to_owned())
        .filter(|v| !is_null(v))
        .collect()
}

/// Builds a dictionary-encoded string column.
///
/// Arrow's `StringDictionaryBuilder` compares every value with `memcmp` on lookup, which was
/// the largest single cost of CSV ingest (categorical values are short). Values of up to 15
/// bytes are packed with their length into a `u128` key here, so a lookup is one integer hash
/// and one integer comparison; longer values use an ordinary string map.
pub(crate) struct DictBuilder {
    short: rustc_hash::FxHashMap<u128, i32>,
    long: rustc_hash::FxHashMap<String, i32>,
    values: StringBuilder,
    keys: arrow_array::builder::Int32Builder,
}

impl DictBuilder {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            short: Default::default(),
            long: Default::default(),
            // Distinct values are at most the rows; a served request has one or a few, and
            // the builder's default room (1,024 values) would be allocated on every request.
            values: StringBuilder::with_capacity(capacity.min(1024), capacity.min(1024) * 8),
            keys: arrow_array::builder::Int32Builder::with_capacity(capacity),
        }
    }

    #[inline]
    fn append_value(&mut self, s: &str) {
        let bytes = s.as_bytes();
        let next = self.short.len() as i32 + self.long.len() as i32;
        let key = if bytes.len() < 16 {
            let mut packed = [0u8; 16];
            packed[..bytes.len()].copy_from_slice(bytes);
            packed[15] = bytes.len() as u8;
            *self
                .short
                .entry(u128::from_le_bytes(packed))
                .or_insert_with(|| {
                    self.values.append_value(s);
                    next
                })
        } else {
            match self.long.get(s) {
                Some(k) => *k,
                None => {
                    self.long.insert(s.to_owned(), next);
                    self.values.append_value(s);
                    next
                }
            }
        };
        self.keys.append_value(key);
    }

    fn append_null(&mut self) {
        self.keys.append_null();
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        let keys = self.keys.finish();
        let values: ArrayRef = Arc::new(self.values.finish());
        self.short.clear();
        self.long.clear();
        Ok(Arc::new(
            arrow_array::DictionaryArray::<Int32Type>::try_new(keys, values)?,
        ))
    }
}

/// A categorical column's dictionary fixed in advance: the categories a model knows.
///
/// A served request has a row or a few, and building a fresh dictionary for each (a string
/// builder, its validation, a dictionary array over it) cost more than scoring the row. With
/// the categories known, a row's category is one map lookup and the batch shares one
/// dictionary array; a value outside it makes that column fall back to a fresh dictionary.
#[derive(Debug)]
pub struct KnownDictionary {
    values: ArrayRef,
    index: rustc_hash::FxHashMap<String, i32>,
}

impl KnownDictionary {
    /// The dictionary of `categories` (duplicates keep their first position).
    pub fn new(categories: &[String]) -> Self {
        let mut index = rustc_hash::FxHashMap::default();
        let mut values = StringBuilder::with_capacity(categories.len(), categories.len() * 8);
        for c in categories {
            if !index.contains_key(c.as_str()) {
                index.insert(c.clone(), index.len() as i32);
                values.append_value(c);
            }
        }
        Self {
            values: Arc::new(values.finish()),
            index,
        }
    }
}

/// Keys into a [`KnownDictionary`], until a value outside it turns up.
pub(crate) struct KnownDictBuilder {
    dictionary: Arc<KnownDictionary>,
    keys: Vec<i32>,
    nulls: arrow_array::builder::NullBufferBuilder,
    /// Set at the first unknown value: the column so far, rebuilt with its own dictionary.
    fallback: Option<DictBuilder>,
}

impl KnownDictBuilder {
    fn append_value(&mut self, s: &str) {
        if let Some(b) = &mut self.fallback {
            return b.append_value(s);
        }
        match self.dictionary.index.get(s) {
            Some(k) => {
                self.keys.push(*k);
                self.nulls.append_non_null();
            }
            None => {
                let mut b = DictBuilder::with_capacity(self.keys.capacity());
                let values = self.dictionary.values.as_string::<i32>();
                for (i, k) in self.keys.iter().enumerate() {
                    if self.nulls.is_valid(i) {
                        b.append_value(values.value(*k as usize));
                    } else {
                        b.append_null();
                    }
                }
                b.append_value(s);
                self.fallback = Some(b);
            }
        }
    }

    fn append_null(&mut self) {
        match &mut self.fallback {
            Some(b) => b.append_null(),
            None => {
                self.keys.push(0);
                self.nulls.append_null();
            }
        }
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        if let Some(b) = &mut self.fallback {
            return b.finish();
        }
        let keys = arrow_array::Int32Array::new(
            std::mem::take(&mut self.keys).into(),
            self.nulls.finish(),
        );
        Ok(Arc::new(
            arrow_array::DictionaryArray::<Int32Type>::try_new(
                keys,
                self.dictionary.values.clone(),
            )?,
        ))
    }
}

/// Builds one normalized column from text cells.
pub(crate) enum ColumnBuilder {
    Numeric(Float64Builder),
    Categorical(DictBuilder),
    KnownCategorical(KnownDictBuilder),
    Boolean(BooleanBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    Date(Date32Builder),
    Text(StringBuilder),
}

impl ColumnBuilder {
    pub(crate) fn new(t: FeatureType, capacity: usize) -> Self {
        match t {
            FeatureType::Numeric => Self::Numeric(Float64Builder::with_capacity(capacity)),
            FeatureType::Categorical => Self::Categorical(DictBuilder::with_capacity(capacity)),
            FeatureType::Boolean => Self::Boolean(BooleanBuilder::with_capacity(capacity)),
            FeatureType::Timestamp => Self::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone(UTC_TZ),
            ),
            FeatureType::Date => Self::Date(Date32Builder::with_capacity(capacity)),
            FeatureType::Text => Self::Text(StringBuilder::with_capacity(capacity, capacity * 16)),
        }
    }

    /// A categorical column whose values are expected to be in `dictionary`.
    pub(crate) fn known(dictionary: Arc<KnownDictionary>, capacity: usize) -> Self {
        Self::KnownCategorical(KnownDictBuilder {
            dictionary,
            keys: Vec::with_capacity(capacity),
            nulls: arrow_array::builder::NullBufferBuilder::new(capacity),
            fallback: None,
        })
    }

    /// Appends the value of `s`; returns false (and appends null) if `s` is not of this type.
    #[inline]
    pub(crate) fn push(&mut self, s: &str) -> bool {
        match self {
            Self::Numeric(b) => {
                if s.is_empty() {
                    b.append_null();
                    return true;
                }
                match parse_number(s) {
                    Some(v) if !v.is_nan() => b.append_value(v),
                    Some(_) => b.append_null(),
                    None => {
                        b.append_null();
                        return is_null(s);
                    }
                }
            }
            Self::Categorical(b) => {
                if is_null(s) {
                    b.append_null();
                } else {
                    b.append_value(s);
                }
            }
            Self::KnownCategorical(b) => {
                if is_null(s) {
                    b.append_null();
                } else {
                    b.append_value(s);
                }
            }
            Self::Text(b) => {
                if is_null(s) {
                    b.append_null();
                } else {
                    b.append_value(s);
                }
            }
            Self::Boolean(b) => match parse_bool(s, true) {
                Some(v) => b.append_value(v),
                None => {
                    b.append_null();
                    return is_null(s);
                }
            },
            Self::Timestamp(b) => match parse_timestamp(s) {
                Some(v) => b.append_value(v),
                None => {
                    b.append_null();
                    return is_null(s);
                }
            },
            Self::Date(b) => match parse_date(s) {
                Some(v) => b.append_value(v),
                None => {
                    b.append_null();
                    return is_null(s);
                }
            },
        }
        true
    }

    /// Appends a finite number given as a number (not text), if this is a numeric column;
    /// returns false (appending nothing) otherwise.
    pub(crate) fn push_number(&mut self, v: f64) -> bool {
        match self {
            Self::Numeric(b) if v.is_finite() => {
                b.append_value(v);
                true
            }
            _ => false,
        }
    }

    pub(crate) fn push_null(&mut self) {
        match self {
            Self::Numeric(b) => b.append_null(),
            Self::Categorical(b) => b.append_null(),
            Self::KnownCategorical(b) => b.append_null(),
            Self::Boolean(b) => b.append_null(),
            Self::Timestamp(b) => b.append_null(),
            Self::Date(b) => b.append_null(),
            Self::Text(b) => b.append_null(),
        }
    }

    pub(crate) fn finish(&mut self) -> Result<ArrayRef> {
        Ok(match self {
            Self::Numeric(b) => Arc::new(b.finish()),
            Self::Categorical(b) => b.finish()?,
            Self::KnownCategorical(b) => b.finish()?,
            Self::Boolean(b) => Arc::new(b.finish()),
            Self::Timestamp(b) => Arc::new(b.finish()),
            Self::Date(b) => Arc::new(b.finish()),
            Self::Text(b) => Arc::new(b.finish()),
        })
    }
}

pub(crate) fn type_message(t: FeatureType, s: &str) -> String {
    let expected = match t {
        FeatureType::Numeric => "a number",
        FeatureType::Boolean => "a boolean (true/false, yes/no, 1/0)",
        FeatureType::Date => "a date (YYYY-MM-DD)",
        FeatureType::Timestamp => "a timestamp (YYYY-MM-DD HH:MM:SS or RFC 3339)",
        FeatureType::Categorical | FeatureType::Text => "text",
    };
    format!("value \"{}\" is not {expected}", show_value(s))
}

/// A batch after the row rules: the rows to store and the rows set aside.
struct Checked {
    /// `None` once the reject policy has seen a bad row: nothing will be stored.
    keep: Option<RecordBatch>,
    /// Quarantined rows as text: row, line, then the cells.
    aside: Vec<Vec<String>>,
}

/// Applies the row rules to converted batches, splits kept from bad rows, and profiles the
/// kept ones. It runs on whichever thread has room: the writer's for CSV (whose converter is
/// the busiest thread), the reader's for Parquet (whose writer is).
struct Checker {
    rules: Rules,
    report: ValidationReport,
    profiler: Profiler,
    reject: bool,
    bad_rows: u64,
    good_rows: u64,
}

impl Checker {
    fn new(job: &IngestJob, schema: &Schema) -> Result<Self> {
        let mut rules = Rules::compile(schema, &job.config);
        if rules.checks_uniqueness() {
            for path in &job.seed_parts {
                let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)?
                    .with_batch_size(job.batch_rows)
                    .build()?;
                for batch in reader {
                    rules.seed_unique(&batch?);
                }
            }
        }
        Ok(Self {
            rules,
            report: job.new_report(),
            profiler: Profiler::new(schema),
            reject: job.config.policy == Policy::Reject,
            bad_rows: 0,
            good_rows: 0,
        })
    }

    fn check(&mut self, mut c: Converted) -> Result<Checked> {
        self.rules.check(
            &c.batch,
            c.first_row,
            &c.lines,
            &mut c.bad,
            &mut self.report,
        );
        let nbad = c.bad.iter().filter(|b| **b).count();
        self.bad_rows += nbad as u64;
        if self.reject && self.bad_rows > 0 {
            return Ok(Checked {
                keep: None,
                aside: Vec::new(),
            });
        }
        let mut aside = Vec::new();
        let batch = if nbad > 0 {
            if let Some(raw) = &c.raw {
                for (i, is_bad) in c.bad.iter().enumerate() {
                    if *is_bad {
                        let mut rec = vec![
                            (c.first_row + i as u64).to_string(),
                            c.lines.get(i).map(|l| l.to_string()).unwrap_or_default(),
                        ];
                        rec.extend(raw[i].iter().cloned());
                        aside.push(rec);
                    }
                }
            }
            let keep = BooleanArray::from(c.bad.iter().map(|b| !b).collect::<Vec<bool>>());
            arrow_select::filter::filter_record_batch(&c.batch, &keep)?
        } else {
            c.batch
        };
        self.good_rows += batch.num_rows() as u64;
        self.profiler.push(&batch);
        Ok(Checked {
            keep: Some(batch),
            aside,
        })
    }

    /// The report (with the bad-row count), the profile of the kept rows, and their number.
    fn finish(mut self) -> (ValidationReport, DatasetProfile, u64) {
        self.report.bad_rows = self.bad_rows;
        (self.report, self.profiler.finish(), self.good_rows)
    }
}

/// Converts CSV records to a normalized batch, reporting what cannot be read.
fn convert_csv(
    records: &[csv::ByteRecord],
    lines: &[u64],
    first_row: u64,
    schema: &Schema,
    ncols: usize,
    keep_raw: bool,
    report: &mut ValidationReport,
) -> Result<Converted> {
    let n = records.len();
    let mut builders: Vec<ColumnBuilder> = schema
        .columns
        .iter()
        .map(|c| ColumnBuilder::new(c.ftype, n))
        .collect();
    let mut bad = vec![false; n];
    let mut raw = keep_raw.then(|| Vec::with_capacity(n));
    for (i, rec) in records.iter().enumerate() {
        let row = first_row + i as u64;
        let line = lines.get(i).copied();
        let mut fail = |column: Option<String>, value: Option<String>, rule, message| {
            report.push(Violation {
                row: Some(row),
                line,
                column,
                value,
                rule,
                message,
            });
        };
        if rec.len() != ncols {
            bad[i] = true;
            fail(
                None,
                None,
                "ragged_row",
                format!("row has {} fields, the header has {ncols}", rec.len()),
            );
            for b in builders.iter_mut() {
                b.push_null();
            }
            if let Some(raw) = raw.as_mut() {
                raw.push(
                    rec.iter()
                        .map(|f| String::from_utf8_lossy(f).into_owned())
                        .collect(),
                );
            }
            continue;
        }
        // One UTF-8 check per record; fields are then slices of it (`get` refuses a slice that
        // is not on a character boundary, which sends that field to the slow path).
        // (simdutf8: the check is a tenth of the CPU of ingest with std's validator).
        let whole = simdutf8::basic::from_utf8(rec.as_slice()).ok();
        for (c, (field, b)) in rec.iter().zip(builders.iter_mut()).enumerate() {
            let fast = whole.and_then(|w| rec.range(c).and_then(|r| w.get(r)));
            let text = if let Some(t) = fast {
                t
            } else {
                match std::str::from_utf8(field) {
                    Ok(t) => t,
                    Err(e) => {
                        bad[i] = true;
                        fail(
                            Some(schema.columns[c].name.clone()),
                            Some(String::from_utf8_lossy(field).into_owned()),
                            "bad_utf8",
                            format!("invalid UTF-8 at byte {} of the value", e.valid_up_to()),
                        );
                        b.push_null();
                        continue;
                    }
                }
            };
            if !b.push(text) {
                bad[i] = true;
                fail(
                    Some(schema.columns[c].name.clone()),
                    Some(show_value(text)),
                    "type",
                    type_message(schema.columns[c].ftype, text),
                );
            }
        }
        if let Some(raw) = raw.as_mut() {
            raw.push(
                rec.iter()
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .collect(),
            );
        }
    }
    let arrays = builders
        .iter_mut()
        .map(|b| b.finish())
        .collect::<Result<Vec<ArrayRef>>>()?;
    let batch = RecordBatch::try_new(arrow_schema(schema), arrays)?;
    Ok(Converted {
        batch,
        first_row,
        lines: lines.to_vec(),
        bad,
        raw,
    })
}

/// Converts a Parquet batch to the normalized types of `schema`.
fn normalize_batch(
    batch: &RecordBatch,
    first_row: u64,
    schema: &Schema,
    keep_raw: bool,
    report: &mut ValidationReport,
) -> Result<Converted> {
    let n = batch.num_rows();
    let mut bad = vec![false; n];
    let mut arrays = Vec::with_capacity(schema.columns.len());
    for (c, col) in schema.columns.iter().enumerate() {
        let input = batch.column(c);
        let native = feature_type_of(input.data_type());
        let array: ArrayRef = match (native, col.ftype) {
            (Some(FeatureType::Numeric), FeatureType::Numeric) => {
                let a = arrow_cast::cast(input, &DataType::Float64)?;
                // NaN is a missing value in Kiln.
                let f = a.as_primitive::<arrow_array::types::Float64Type>();
                if f.values().iter().any(|v| v.is_nan()) {
                    let vals: arrow_array::Float64Array =
                        f.iter().map(|v| v.filter(|x| !x.is_nan())).collect();
                    Arc::new(vals)
                } else {
                    a
                }
            }
            (Some(FeatureType::Boolean), FeatureType::Boolean) => input.clone(),
            (Some(FeatureType::Date), FeatureType::Date) => {
                arrow_cast::cast(input, &DataType::Date32)?
            }
            (Some(FeatureType::Timestamp), FeatureType::Timestamp) => {
                // Only the unit changes: instants are instants, and a timestamp without a zone
                // is read as UTC. (A cast to a zone would convert every value through chrono.)
                let micros = arrow_cast::cast(
                    &strip_timezone(input)?,
                    &DataType::Timestamp(TimeUnit::Microsecond, None),
                )?;
                Arc::new(
                    micros
                        .as_primitive::<TimestampMicrosecondType>()
                        .clone()
                        .with_timezone(UTC_TZ),
                )
            }
            (None, FeatureType::Categorical) if matches!(input.data_type(), DataType::Dictionary(_, v) if matches!(v.as_ref(), DataType::Utf8 | DataType::LargeUtf8)) => {
                normalize_dictionary(input)?
            }
            (Some(FeatureType::Date), FeatureType::Timestamp) => arrow_cast::cast(
                input,
                &DataType::Timestamp(TimeUnit::Microsecond, Some(UTC_TZ.into())),
            )?,
            _ => {
                // Text of some kind (or a declared type that needs parsing): go through text.
                let text = arrow_cast::cast(input, &DataType::Utf8)?;
                let s = text.as_string::<i32>();
                let mut b = ColumnBuilder::new(col.ftype, n);
                for (i, is_bad) in bad.iter_mut().enumerate() {
                    if s.is_null(i) {
                        b.push_null();
                        continue;
                    }
                    let v = s.value(i);
                    if !b.push(v) {
                        *is_bad = true;
                        report.push(Violation {
                            row: Some(first_row + i as u64),
                            line: None,
                            column: Some(col.name.clone()),
                            value: Some(show_value(v)),
                            rule: "type",
                            message: type_message(col.ftype, v),
                        });
                    }
                }
                b.finish()?
            }
        };
        arrays.push(array);
    }
    let out = RecordBatch::try_new(arrow_schema(schema), arrays)?;
    let raw = keep_raw.then(|| {
        (0..n)
            .map(|i| {
                schema
                    .columns
                    .iter()
                    .enumerate()
                    .map(|(c, col)| cell_text(out.column(c), col.ftype, i))
                    .collect()
            })
            .collect()
    });
    Ok(Converted {
        batch: out,
        first_row,
        lines: Vec::new(),
        bad,
        raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Int64Array;
    use parquet::file::metadata::{ParquetMetaDataReader, ParquetMetaDataWriter};

    /// A real Parquet file whose footer is rewritten with `edit` applied to its first column
    /// chunk's offsets and size.
    fn parquet_with_chunk(
        edit: impl FnOnce(
            parquet::file::metadata::ColumnChunkMetaDataBuilder,
        ) -> parquet::file::metadata::ColumnChunkMetaDataBuilder,
    ) -> Vec<u8> {
        let values: ArrayRef = Arc::new(Int64Array::from_iter_values(0..100));
        let batch = RecordBatch::try_from_iter([("x", values)]).unwrap();
        let mut bytes = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let footer_len =
            u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap());
        let data_end = bytes.len() - 8 - footer_len as usize;
        let original = tempfile::tempfile().unwrap();
        (&original).write_all(&bytes).unwrap();
        let metadata = ParquetMetaDataReader::new()
            .parse_and_finish(&original)
            .unwrap();
        let group = metadata.row_group(0).clone();
        let mut columns = group.columns().to_vec();
        columns[0] = edit(columns[0].clone().into_builder()).build().unwrap();
        let group = group
            .into_builder()
            .set_column_metadata(columns)
            .build()
            .unwrap();
        let metadata = metadata.into_builder().set_row_groups(vec![group]).build();
        let mut out = bytes[..data_end].to_vec();
        ParquetMetaDataWriter::new(&mut out, &metadata)
            .finish()
            .unwrap();
        out
    }

    /// What ingest makes of `bytes` as the file `bad.parquet`: rows kept and set aside.
    fn read(bytes: &[u8]) -> Result<(u64, u64)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.parquet");
        std::fs::write(&path, bytes).unwrap();
        fuzzing::read_file(
            &Config::default(),
            "bad",
            &path,
            &dir.path().join("scratch"),
        )
    }

    fn ingest_error(bytes: &[u8]) -> String {
        match read(bytes) {
            Ok(kept) => panic!("a damaged footer was read: {kept:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_negative_column_chunk_offset_is_refused_not_a_panic() {
        let bytes =
            parquet_with_chunk(|c| c.set_data_page_offset(-4).set_dictionary_page_offset(None));
        let message = ingest_error(&bytes);
        assert!(message.contains("bad.parquet"), "{message}");
        assert!(message.contains("row group 0, column `x`"), "{message}");
        assert!(message.contains("at byte -4"), "{message}");
    }

    #[test]
    fn a_column_chunk_past_the_end_of_the_file_is_refused() {
        let bytes = parquet_with_chunk(|c| c.set_total_compressed_size(1 << 40));
        let message = ingest_error(&bytes);
        assert!(message.contains("outside the file"), "{message}");
        assert!(
            message.contains(&format!("({} bytes)", bytes.len())),
            "{message}"
        );
    }

    #[test]
    fn a_sound_file_passes_the_footer_check() {
        let kept = read(&parquet_with_chunk(|c| c)).unwrap();
        assert_eq!(kept, (100, 0));
    }
}
