//! Batch scoring: `kiln predict --model NAME[@VER|@ALIAS] --input FILE -o FILE`.
//!
//! The input goes through the ingest reader and the training dataset's expectations first
//! ([`kiln_data::ingest::check_file`]): the model's input columns get the model's types, a bad
//! row rejects the file with the usual report (file, row, column, rule), and nothing is
//! written. Rows then stream batch by batch through [`ModelArtifact::score`], the same call
//! the server makes, and out as CSV or Parquet beside the input's columns. The output file
//! appears atomically (written aside, then renamed), so a crash never leaves half a file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{Array, ArrayRef, Float64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema as ArrowSchema};
use kiln_core::config::Config;
use kiln_core::schema::FeatureType;
use kiln_core::table::cell_text;
use kiln_data::Progress;
use kiln_data::ingest::check_file;
use kiln_model::artifact::ModelArtifact;
use kiln_model::learner::Predictions;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::Serialize;

use crate::{Result, TrainError, input};

/// What a scoring run did.
#[derive(Debug, Clone, Serialize)]
pub struct PredictOutcome {
    pub output: PathBuf,
    pub rows: u64,
    /// Seconds reading and validating the input.
    pub check_seconds: f64,
    /// Seconds in the feature pipeline and the model.
    pub score_seconds: f64,
    pub total_seconds: f64,
    /// (column, rows whose category the model never saw in training).
    pub unknown: Vec<(String, u64)>,
}

/// The prediction columns' names and values for one batch: `prediction` (a number, or the
/// class) and, for classifiers, `p_CLASS` probabilities.
pub fn prediction_columns(artifact: &ModelArtifact, p: Predictions) -> Vec<(String, ArrayRef)> {
    let predicted = p.classes().unwrap_or_default();
    match p {
        Predictions::Values(v) => vec![(
            "prediction".to_owned(),
            Arc::new(Float64Array::from(v)) as ArrayRef,
        )],
        Predictions::Probabilities { classes, data } => {
            let mut out: Vec<(String, ArrayRef)> = vec![(
                "prediction".to_owned(),
                Arc::new(StringArray::from_iter_values(predicted.iter().map(|k| {
                    artifact.classes.get(*k).map(String::as_str).unwrap_or("?")
                }))) as ArrayRef,
            )];
            for c in 0..classes {
                let name = artifact
                    .classes
                    .get(c)
                    .cloned()
                    .unwrap_or_else(|| c.to_string());
                let probs: Vec<f64> = data.chunks(classes).map(|r| r[c]).collect();
                out.push((
                    format!("p_{name}"),
                    Arc::new(Float64Array::from(probs)) as ArrayRef,
                ));
            }
            out
        }
    }
}

enum Sink {
    Csv(csv::Writer<BufWriter<File>>),
    Parquet(Option<ArrowWriter<BufWriter<File>>>),
}

fn io(e: impl std::fmt::Display) -> TrainError {
    TrainError::Io(std::io::Error::other(e.to_string()))
}

/// Scores `input` with `artifact` into `output` (`.parquet` → Parquet, anything else → CSV).
pub async fn predict_file(
    config: &Config,
    scratch: &Path,
    artifact: &ModelArtifact,
    input_path: &Path,
    output: &Path,
    progress: Arc<dyn Progress>,
) -> Result<PredictOutcome> {
    let started = Instant::now();
    let dataset = artifact.lineage.dataset.clone();
    let mut rules = config.dataset(&dataset);
    // Rows to score usually have no label yet: the target's expectations (e.g. no nulls) are
    // for training data, not for these.
    rules.columns.remove(&artifact.target);
    let checked = check_file(
        config,
        &dataset,
        rules,
        &artifact.schema,
        input_path,
        scratch,
        progress,
    )
    .await?;
    let check_seconds = started.elapsed().as_secs_f64();
    let added: Vec<String> = std::iter::once("prediction".to_owned())
        .chain(artifact.classes.iter().map(|c| format!("p_{c}")))
        .collect();
    if let Some(clash) = checked
        .schema
        .columns
        .iter()
        .find(|c| added.contains(&c.name))
    {
        return Err(input(format!(
            "{}: the input already has a column named `{}`, which the output adds\nhint: rename that column",
            input_path.display(),
            clash.name
        )));
    }

    let tmp = kiln_data::temp_file_beside(output, ".kiln-predict-")?;
    let parquet_out = output
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
    let mut sink = if parquet_out {
        Sink::Parquet(None)
    } else {
        Sink::Csv(csv::Writer::from_writer(BufWriter::new(tmp.reopen()?)))
    };

    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(checked.part.path())?)
        .map_err(io)?
        .with_batch_size(65_536)
        .build()
        .map_err(io)?;
    let mut rows = 0u64;
    let mut score_seconds = 0.0;
    let mut unknown: Vec<(String, u64)> = Vec::new();
    let mut wrote_header = false;
    for batch in reader {
        let batch = batch.map_err(io)?;
        let t = Instant::now();
        let scored = artifact.score(&batch)?;
        score_seconds += t.elapsed().as_secs_f64();
        for (col, n) in &scored.unknown {
            match unknown.iter_mut().find(|(c, _)| c == col) {
                Some((_, total)) => *total += *n as u64,
                None => unknown.push((col.clone(), *n as u64)),
            }
        }
        let extra = prediction_columns(artifact, scored.predictions);
        rows += batch.num_rows() as u64;
        match &mut sink {
            Sink::Parquet(writer) => {
                let mut fields: Vec<Field> = batch
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone())
                    .collect();
                let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
                for (name, a) in extra {
                    fields.push(Field::new(name, a.data_type().clone(), false));
                    columns.push(a);
                }
                let out = RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), columns)
                    .map_err(io)?;
                if writer.is_none() {
                    let props = WriterProperties::builder()
                        .set_compression(Compression::SNAPPY)
                        .build();
                    *writer = Some(
                        ArrowWriter::try_new(
                            BufWriter::new(tmp.reopen()?),
                            out.schema(),
                            Some(props),
                        )
                        .map_err(io)?,
                    );
                }
                if let Some(w) = writer {
                    w.write(&out).map_err(io)?;
                }
            }
            Sink::Csv(w) => {
                let types: Vec<FeatureType> =
                    checked.schema.columns.iter().map(|c| c.ftype).collect();
                if !wrote_header {
                    let mut header: Vec<String> = batch
                        .schema()
                        .fields()
                        .iter()
                        .map(|f| f.name().clone())
                        .collect();
                    header.extend(extra.iter().map(|(n, _)| n.clone()));
                    w.write_record(&header).map_err(io)?;
                    wrote_header = true;
                }
                // Numbers as their shortest round-trip text, as export writes them.
                let extra_types: Vec<FeatureType> = extra
                    .iter()
                    .map(|(_, a)| match a.data_type() {
                        DataType::Float64 => FeatureType::Numeric,
                        _ => FeatureType::Text,
                    })
                    .collect();
                let mut record: Vec<String> = Vec::with_capacity(types.len() + extra.len());
                for i in 0..batch.num_rows() {
                    record.clear();
                    for (c, t) in types.iter().enumerate() {
                        record.push(cell_text(batch.column(c), *t, i));
                    }
                    for (a, t) in extra.iter().map(|(_, a)| a).zip(&extra_types) {
                        record.push(cell_text(a, *t, i));
                    }
                    w.write_record(&record).map_err(io)?;
                }
            }
        }
    }
    match sink {
        Sink::Parquet(Some(w)) => {
            w.into_inner().map_err(io)?.flush()?;
        }
        Sink::Parquet(None) => {}
        Sink::Csv(mut w) => w.flush()?,
    }
    tmp.as_file().sync_all()?;
    tmp.persist(output).map_err(|e| TrainError::Io(e.error))?;
    Ok(PredictOutcome {
        output: output.to_owned(),
        rows,
        check_seconds,
        score_seconds,
        total_seconds: started.elapsed().as_secs_f64(),
        unknown,
    })
}
