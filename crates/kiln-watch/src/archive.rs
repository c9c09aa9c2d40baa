//! Retention of the prediction log: old days compacted into Parquet files in the artifact
//! store (`kiln log compact`, or `kiln serve` on a schedule), archived days deleted after a
//! while, and the archived rows read back, labels included, for `kiln monitor`.
//!
//! A day's file has one row per prediction, in id order, with the columns of the log
//! (`features`, `output` and `flags` stay the JSON the server wrote), the event time as a UTC
//! timestamp, and the latest label known when it was written (`label`, `feedback_id`): any
//! Parquet reader (DuckDB, pandas, Spark) reads it as it is. Feedback that arrives after the
//! day was archived stays in the database and is joined when the archive is read.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{
    Array, ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use kiln_core::config::RetentionConfig;
use kiln_core::id::ContentId;
use kiln_core::value::{format_duration, parse_duration};
use kiln_store::{
    LogArchive, LogPartition, NewLogArchive, PredictionQuery, PredictionRecord, Store, StoreError,
    StoredPrediction,
};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::{Result, WatchError};

/// Rows read from the database, and written to the file, per batch.
const PAGE: i64 = 20_000;

/// `[retention]`, checked: when the log's old days move to archives, and when they go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Days that ended longer ago than this (before the newest logged event time of their
    /// model) are compacted. `None`: the whole log stays in the database.
    pub compact_after: Option<i64>,
    /// Days that ended longer ago than this are deleted, archived or not. `None`: kept.
    pub delete_after: Option<i64>,
    /// How often `kiln serve` applies the policy (default 1 h).
    pub interval: i64,
}

impl Retention {
    /// Checks `[retention]`.
    pub fn from_config(c: &RetentionConfig) -> Result<Self> {
        let duration = |key: &str, v: &Option<String>| -> Result<Option<i64>> {
            v.as_deref()
                .map(|text| {
                    parse_duration(text).ok_or_else(|| {
                        WatchError::Input(format!(
                            "[retention] {key} = {text:?} is not a duration (e.g. 30d, 12w)"
                        ))
                    })
                })
                .transpose()
        };
        let compact_after = duration("compact_after", &c.compact_after)?;
        let delete_after = duration("delete_after", &c.delete_after)?;
        let interval = duration("interval", &c.interval)?.unwrap_or(3_600_000_000);
        if let (Some(c), Some(d)) = (compact_after, delete_after)
            && d <= c
        {
            return Err(WatchError::Input(format!(
                "[retention] delete_after = {:?} must be longer than compact_after = {:?}: \
                 days would be deleted before they are archived",
                format_duration(d),
                format_duration(c)
            )));
        }
        Ok(Self {
            compact_after,
            delete_after,
            interval,
        })
    }

    /// Whether the policy does anything.
    pub fn is_active(&self) -> bool {
        self.compact_after.is_some() || self.delete_after.is_some()
    }
}

/// What one application of the retention policy did (or, dry, would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct RetentionOutcome {
    /// Days archived (dry: the days that would be).
    pub archived: Vec<ArchivedDay>,
    /// Archived days deleted with their files.
    pub dropped: Vec<LogArchive>,
    /// Rows deleted from the database without an archive (older than `delete_after`).
    pub deleted_rows: u64,
    /// Days another process archived first (nothing was changed for them here).
    pub conflicts: Vec<String>,
}

/// One day moved (or to be moved) to an archive.
#[derive(Clone, Debug, Serialize)]
pub struct ArchivedDay {
    pub model: String,
    pub day: i64,
    pub rows: i64,
    pub labelled: i64,
    /// The archive's file and its size (absent in a dry run).
    pub artifact: Option<String>,
    pub bytes: Option<i64>,
}

/// Applies `policy` to the log of `models` (every model with predictions in the database when
/// empty). A day counts from the newest event time logged for its model, not the wall clock,
/// so a replayed log ages as it was served.
pub async fn apply_retention(
    store: &Store,
    scratch: &Path,
    models: &[String],
    policy: &Retention,
    dry_run: bool,
) -> Result<RetentionOutcome> {
    let mut out = RetentionOutcome::default();
    let models = if models.is_empty() {
        store.meta.logged_models().await?
    } else {
        models.to_vec()
    };
    for model in &models {
        let Some(newest) = store.meta.latest_prediction_time(model).await? else {
            continue;
        };
        // Deleting first: days about to go are not archived first.
        if let Some(after) = policy.delete_after
            && !dry_run
        {
            let before = kiln_store::day_of(newest.saturating_sub(after)) * kiln_store::DAY_US;
            let dropped = store.meta.drop_log_archives(model, before).await?;
            for a in &dropped {
                if let Ok(id) = a.artifact.parse::<ContentId>() {
                    store.artifacts.delete(&id).await?;
                }
            }
            out.dropped.extend(dropped);
            out.deleted_rows += store.meta.delete_predictions_before(model, before).await?;
        }
        if let Some(after) = policy.compact_after {
            for p in store
                .meta
                .log_partitions(model, newest.saturating_sub(after))
                .await?
            {
                if dry_run {
                    out.archived.push(ArchivedDay {
                        model: p.model.clone(),
                        day: p.day,
                        rows: p.rows,
                        labelled: 0,
                        artifact: None,
                        bytes: None,
                    });
                    continue;
                }
                match archive_partition(store, scratch, &p).await {
                    Ok(a) => out.archived.push(ArchivedDay {
                        model: a.model,
                        day: a.day,
                        rows: a.rows,
                        labelled: a.labelled,
                        artifact: Some(a.artifact),
                        bytes: Some(a.bytes),
                    }),
                    Err(WatchError::Store(StoreError::Conflict(m))) => out.conflicts.push(m),
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(out)
}

/// The columns of an archive file.
fn archive_schema() -> SchemaRef {
    let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    let int = |name: &str, nullable| Field::new(name, DataType::Int64, nullable);
    Arc::new(Schema::new(vec![
        int("id", false),
        text("request_id", false),
        text("key", true),
        text("model", false),
        int("version", false),
        text("alias", true),
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        text("features", false),
        text("output", false),
        int("latency_us", false),
        text("flags", true),
        text("label", true),
        int("feedback_id", true),
    ]))
}

/// One batch of an archive file: predictions with the label joined to each, if any.
fn batch_of(
    rows: &[StoredPrediction],
    labels: &FxHashMap<i64, (i64, String)>,
) -> Result<RecordBatch> {
    let n = rows.len();
    let mut id = Int64Builder::with_capacity(n);
    let mut request_id = StringBuilder::new();
    let mut key = StringBuilder::new();
    let mut model = StringBuilder::new();
    let mut version = Int64Builder::with_capacity(n);
    let mut alias = StringBuilder::new();
    let mut time = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut features = StringBuilder::new();
    let mut output = StringBuilder::new();
    let mut latency = Int64Builder::with_capacity(n);
    let mut flags = StringBuilder::new();
    let mut label = StringBuilder::new();
    let mut feedback_id = Int64Builder::with_capacity(n);
    for p in rows {
        let r = &p.record;
        id.append_value(p.id);
        request_id.append_value(&r.request_id);
        key.append_option(r.key.as_deref());
        model.append_value(&r.model);
        version.append_value(r.version);
        alias.append_option(r.alias.as_deref());
        time.append_value(r.time);
        features.append_value(&r.features);
        output.append_value(&r.output);
        latency.append_value(r.latency_us);
        flags.append_option(r.flags.as_deref());
        let l = labels.get(&p.id);
        label.append_option(l.map(|(_, text)| text.as_str()));
        feedback_id.append_option(l.map(|(fid, _)| *fid));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(request_id.finish()),
        Arc::new(key.finish()),
        Arc::new(model.finish()),
        Arc::new(version.finish()),
        Arc::new(alias.finish()),
        Arc::new(time.finish()),
        Arc::new(features.finish()),
        Arc::new(output.finish()),
        Arc::new(latency.finish()),
        Arc::new(flags.finish()),
        Arc::new(label.finish()),
        Arc::new(feedback_id.finish()),
    ];
    RecordBatch::try_new(archive_schema(), columns)
        .map_err(|e| WatchError::Invalid(format!("archive batch: {e}")))
}

fn parquet_error(e: parquet::errors::ParquetError) -> WatchError {
    WatchError::Invalid(format!("archive file: {e}"))
}

fn io_error(e: std::io::Error) -> WatchError {
    WatchError::Store(StoreError::Io(e))
}

/// Archives one day: writes its rows (up to `p.last_id`) and their labels to a Parquet file,
/// stores the file, then deletes the rows and records the archive in one transaction.
pub async fn archive_partition(
    store: &Store,
    scratch: &Path,
    p: &LogPartition,
) -> Result<LogArchive> {
    let day_start = p.day * kiln_store::DAY_US;
    let day_end = day_start + kiln_store::DAY_US;
    // Labels first, up to a watermark: later feedback is joined when the archive is read.
    let watermark = store.meta.last_feedback_id().await?;
    let mut labels: FxHashMap<i64, (i64, String)> = FxHashMap::default();
    crate::range::each_label(&store.meta, &p.model, Some(day_start), Some(day_end), |l| {
        if l.feedback_id <= watermark && l.prediction_id <= p.last_id {
            // By feedback id ascending: a later label is a correction.
            labels.insert(l.prediction_id, (l.feedback_id, l.label));
        }
    })
    .await?;

    std::fs::create_dir_all(scratch).map_err(io_error)?;
    let file = tempfile::Builder::new()
        .prefix("log-archive-")
        .suffix(".parquet")
        .tempfile_in(scratch)
        .map_err(io_error)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).map_err(parquet_error)?,
        ))
        .build();
    let mut writer = ArrowWriter::try_new(
        BufWriter::new(file.reopen().map_err(io_error)?),
        archive_schema(),
        Some(props),
    )
    .map_err(parquet_error)?;
    let mut written = 0i64;
    let mut after = Some(p.first_id - 1);
    loop {
        let page = store
            .meta
            .predictions(&PredictionQuery {
                model: Some(p.model.clone()),
                from: Some(day_start),
                to: Some(day_end),
                after_id: after,
                limit: PAGE,
            })
            .await?;
        let full = page.len() as i64 == PAGE;
        let rows: Vec<StoredPrediction> = page.into_iter().filter(|r| r.id <= p.last_id).collect();
        let Some(last) = rows.last() else { break };
        after = Some(last.id);
        written += rows.len() as i64;
        writer
            .write(&batch_of(&rows, &labels)?)
            .map_err(parquet_error)?;
        if !full || last.id >= p.last_id {
            break;
        }
    }
    writer
        .into_inner()
        .map_err(parquet_error)?
        .flush()
        .map_err(io_error)?;
    if written != p.rows {
        return Err(WatchError::Store(StoreError::Conflict(format!(
            "{} day {}: {written} predictions read of the {} counted (another compaction moved \
             them meanwhile); nothing was changed",
            p.model, p.day, p.rows
        ))));
    }
    let (artifact, bytes) = store
        .put_file_owned("log-archive", file.into_temp_path())
        .await?;
    Ok(store
        .meta
        .commit_log_archive(&NewLogArchive {
            partition: p.clone(),
            labelled: labels.len() as i64,
            artifact,
            bytes,
            feedback_watermark: watermark,
        })
        .await?)
}

/// A label an archived row has: the feedback id it came from, and the label.
pub type ArchivedLabel = Option<(i64, String)>;

/// Feedback that arrived after an archive was written, indexed for the join.
#[derive(Default)]
struct LateFeedback {
    by_request: FxHashMap<String, (i64, String)>,
    /// By key: (event time given with it, feedback id, label).
    by_key: FxHashMap<String, Vec<(Option<i64>, i64, String)>>,
}

impl LateFeedback {
    async fn load(store: &Store, after: i64) -> Result<Self> {
        let mut late = Self::default();
        let mut cursor = Some(after);
        loop {
            let page = store.meta.feedback(cursor, PAGE).await?;
            let Some(last) = page.last() else { break };
            cursor = Some(last.id);
            let n = page.len();
            for f in page {
                // Stored feedback has a request id or a key (the store refuses neither).
                match (f.request_id, f.key) {
                    (Some(r), _) => {
                        late.by_request.insert(r, (f.id, f.label));
                    }
                    (None, Some(k)) => late
                        .by_key
                        .entry(k)
                        .or_default()
                        .push((f.time, f.id, f.label)),
                    (None, None) => {}
                }
            }
            if (n as i64) < PAGE {
                break;
            }
        }
        Ok(late)
    }

    /// The latest label after `watermark` for one archived row, joined as the database joins
    /// (by request id; or by key, and event time when the feedback gives one).
    fn label(&self, watermark: i64, r: &PredictionRecord) -> Option<(i64, &str)> {
        let by_request = self
            .by_request
            .get(&r.request_id)
            .filter(|(fid, _)| *fid > watermark)
            .map(|(fid, l)| (*fid, l.as_str()));
        let by_key = r
            .key
            .as_ref()
            .and_then(|k| self.by_key.get(k))
            .and_then(|items| {
                items
                    .iter()
                    .filter(|(t, fid, _)| *fid > watermark && t.is_none_or(|t| t == r.time))
                    .max_by_key(|(_, fid, _)| *fid)
                    .map(|(_, fid, l)| (*fid, l.as_str()))
            });
        by_request
            .into_iter()
            .chain(by_key)
            .max_by_key(|(fid, _)| *fid)
    }
}

/// Reads the archived predictions of `model` with event times in `[from, to)`, in batches
/// (archive by archive, by id within each), each row with its latest label. Returns the
/// archives read.
pub async fn read_archived(
    store: &Store,
    scratch: &Path,
    model: &str,
    from: Option<i64>,
    to: Option<i64>,
    mut f: impl FnMut(&[StoredPrediction], &[ArchivedLabel]) -> Result<()>,
) -> Result<Vec<LogArchive>> {
    let archives = store.meta.log_archives(Some(model), from, to).await?;
    let Some(oldest_watermark) = archives.iter().map(|a| a.feedback_watermark).min() else {
        return Ok(archives);
    };
    let late = LateFeedback::load(store, oldest_watermark).await?;
    for a in &archives {
        let id: ContentId = a.artifact.parse().map_err(|e| {
            WatchError::Invalid(format!("log archive {} names no artifact: {e}", a.id))
        })?;
        let file = store.artifacts.fetch(&id, scratch).await?;
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(File::open(&file.path).map_err(io_error)?)
                .map_err(parquet_error)?
                .with_batch_size(PAGE as usize)
                .build()
                .map_err(parquet_error)?;
        for batch in reader {
            let batch = batch.map_err(|e| WatchError::Invalid(format!("archive file: {e}")))?;
            let (rows, labels) = rows_of(&batch, a)?;
            let mut kept = Vec::with_capacity(rows.len());
            let mut kept_labels = Vec::with_capacity(rows.len());
            for (row, stored) in rows.into_iter().zip(labels) {
                if from.is_some_and(|t| row.record.time < t)
                    || to.is_some_and(|t| row.record.time >= t)
                {
                    continue;
                }
                let label = match late.label(a.feedback_watermark, &row.record) {
                    Some((fid, l)) => Some((fid, l.to_owned())),
                    None => stored,
                };
                kept.push(row);
                kept_labels.push(label);
            }
            f(&kept, &kept_labels)?;
        }
    }
    Ok(archives)
}

/// The rows of one batch of an archive file, checked against the archive's schema.
fn rows_of(
    batch: &RecordBatch,
    a: &LogArchive,
) -> Result<(Vec<StoredPrediction>, Vec<ArchivedLabel>)> {
    let bad = |what: &str| {
        WatchError::Invalid(format!(
            "log archive {} ({} day {}, artifact {}): {what}",
            a.id, a.model, a.day, a.artifact
        ))
    };
    let int = |i: usize| {
        batch
            .column(i)
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| bad(&format!("column {i} is not Int64")))
    };
    let text = |i: usize| {
        batch
            .column(i)
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| bad(&format!("column {i} is not text")))
    };
    if batch.schema().fields().len() != archive_schema().fields().len() {
        return Err(bad("unexpected columns"));
    }
    let (id, request_id, key, model, version, alias) =
        (int(0)?, text(1)?, text(2)?, text(3)?, int(4)?, text(5)?);
    let time = batch
        .column(6)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .ok_or_else(|| bad("column time is not a timestamp"))?;
    let (features, output, latency, flags, label, feedback_id) =
        (text(7)?, text(8)?, int(9)?, text(10)?, text(11)?, int(12)?);
    let opt = |a: &StringArray, i: usize| (!a.is_null(i)).then(|| a.value(i).to_owned());
    let mut rows = Vec::with_capacity(batch.num_rows());
    let mut labels = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        rows.push(StoredPrediction {
            id: id.value(i),
            record: PredictionRecord {
                request_id: request_id.value(i).to_owned(),
                key: opt(key, i),
                model: model.value(i).to_owned(),
                version: version.value(i),
                alias: opt(alias, i),
                time: time.value(i),
                features: features.value(i).to_owned(),
                output: output.value(i).to_owned(),
                latency_us: latency.value(i),
                flags: opt(flags, i),
            },
        });
        labels.push(
            (!feedback_id.is_null(i) && !label.is_null(i))
                .then(|| (feedback_id.value(i), label.value(i).to_owned())),
        );
    }
    Ok((rows, labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_settings_are_checked() {
        let ok = Retention::from_config(&RetentionConfig {
            compact_after: Some("30d".into()),
            delete_after: Some("52w".into()),
            interval: None,
        })
        .unwrap();
        assert_eq!(ok.compact_after, Some(30 * 86_400_000_000));
        assert_eq!(ok.delete_after, Some(364 * 86_400_000_000));
        assert_eq!(ok.interval, 3_600_000_000);
        assert!(ok.is_active());
        assert!(
            !Retention::from_config(&RetentionConfig::default())
                .unwrap()
                .is_active()
        );

        let inverted = Retention::from_config(&RetentionConfig {
            compact_after: Some("30d".into()),
            delete_after: Some("7d".into()),
            interval: None,
        })
        .unwrap_err()
        .to_string();
        assert!(
            inverted.contains("must be longer than compact_after"),
            "{inverted}"
        );
        let bad = Retention::from_config(&RetentionConfig {
            compact_after: Some("a month".into()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(bad.contains("compact_after = \"a month\""), "{bad}");
    }

    #[test]
    fn late_feedback_joins_like_the_database() {
        let mut late = LateFeedback::default();
        late.by_request.insert("r1".into(), (10, "5".into()));
        late.by_key.insert(
            "k".into(),
            vec![
                (Some(100), 11, "6".into()),
                (None, 12, "7".into()),
                (Some(200), 13, "8".into()),
            ],
        );
        let record = |request: &str, key: Option<&str>, time| PredictionRecord {
            request_id: request.into(),
            key: key.map(str::to_owned),
            model: "m".into(),
            version: 1,
            alias: None,
            time,
            features: "{}".into(),
            output: "1".into(),
            latency_us: 1,
            flags: None,
        };
        // By request id, only feedback after the archive's watermark.
        assert_eq!(late.label(5, &record("r1", None, 0)), Some((10, "5")));
        assert_eq!(late.label(10, &record("r1", None, 0)), None);
        // By key: the feedback's time must match when given; the latest wins.
        assert_eq!(late.label(0, &record("x", Some("k"), 100)), Some((12, "7")));
        assert_eq!(late.label(0, &record("x", Some("k"), 200)), Some((13, "8")));
        assert_eq!(late.label(12, &record("x", Some("k"), 100)), None);
        // Both match: the later feedback is the correction.
        assert_eq!(
            late.label(0, &record("r1", Some("k"), 300)),
            Some((12, "7"))
        );
    }
}
