//! Snapshots: naming them (`NAME@VERSION`), their ids, and reading them back.
//!
//! A snapshot is an ordered list of Parquet parts plus a schema. Its id is the BLAKE3 hash of
//! that manifest, so it changes exactly when the rows or the schema change, and an append
//! stores only the new rows (the earlier parts are shared with the parent version).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::str::FromStr;

use arrow_array::RecordBatch;
use kiln_core::id::ContentId;
use kiln_core::names::validate_name;
use kiln_core::schema::Schema;
use kiln_store::{DatasetVersion, PartRef, Store};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::Serialize;

use crate::{DataError, Result};
use kiln_core::table::{arrow_schema, cell_text};

/// The id of a snapshot with these parts and schema.
pub fn snapshot_id(schema: &Schema, parts: &[PartRef]) -> ContentId {
    #[derive(Serialize)]
    struct Manifest<'a> {
        schema: &'a Schema,
        parts: Vec<&'a str>,
    }
    let manifest = Manifest {
        schema,
        parts: parts.iter().map(|p| p.id.as_str()).collect(),
    };
    // Serializing plain structs and strings cannot fail.
    let bytes = serde_json::to_vec(&manifest).unwrap_or_default();
    ContentId::of(&bytes)
}

/// `NAME` (the latest version) or `NAME@VERSION`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetRef {
    pub name: String,
    pub version: Option<i64>,
}

impl FromStr for DatasetRef {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        let (name, version) = match s.split_once('@') {
            None => (s, None),
            Some((n, "latest")) => (n, None),
            Some((n, v)) => (
                n,
                Some(
                    v.parse::<i64>()
                        .ok()
                        .filter(|v| *v >= 1)
                        .ok_or_else(|| DataError::BadRef(s.to_owned()))?,
                ),
            ),
        };
        validate_name("dataset", name)?;
        Ok(Self {
            name: name.to_owned(),
            version,
        })
    }
}

impl std::fmt::Display for DatasetRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.version {
            Some(v) => write!(f, "{}@{v}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// The version a reference names, or a clear error.
pub async fn resolve(store: &Store, r: &DatasetRef) -> Result<DatasetVersion> {
    if let Some(v) = store.meta.version(&r.name, r.version).await? {
        return Ok(v);
    }
    match store.meta.version(&r.name, None).await? {
        None => Err(DataError::UnknownDataset(r.name.clone())),
        Some(latest) => Err(DataError::UnknownVersion {
            dataset: r.name.clone(),
            version: r.version.unwrap_or(0),
            latest: latest.version,
        }),
    }
}

/// Calls `f` with every batch of a version, part by part, in order. Each part's hash is
/// verified before it is read.
pub async fn for_each_batch(
    store: &Store,
    scratch: &Path,
    version: &DatasetVersion,
    mut f: impl FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    for part in &version.parts {
        let file = store.artifacts.fetch(&part.id, scratch).await?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&file.path)?)?
            .with_batch_size(65_536)
            .build()?;
        for batch in reader {
            f(batch?)?;
        }
    }
    Ok(())
}

/// File formats `kiln data export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Parquet,
}

/// Writes a version to `out` (atomically: a temporary file renamed into place). Returns rows.
pub async fn export(
    store: &Store,
    scratch: &Path,
    version: &DatasetVersion,
    format: ExportFormat,
    out: &Path,
) -> Result<u64> {
    let tmp = crate::temp_file_beside(out, ".kiln-export-")?;
    let schema = version.schema.clone();
    let mut rows = 0u64;
    match format {
        ExportFormat::Parquet => {
            let props = WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .build();
            let mut writer = ArrowWriter::try_new(
                BufWriter::new(tmp.reopen()?),
                arrow_schema(&schema),
                Some(props),
            )?;
            for_each_batch(store, scratch, version, |b| {
                rows += b.num_rows() as u64;
                writer.write(&b)?;
                Ok(())
            })
            .await?;
            writer.into_inner()?.flush()?;
        }
        ExportFormat::Csv => {
            let mut writer = csv::Writer::from_writer(BufWriter::new(tmp.reopen()?));
            let io = |e: csv::Error| DataError::Io(std::io::Error::other(e.to_string()));
            writer.write_record(schema.names()).map_err(io)?;
            let mut record: Vec<String> = Vec::with_capacity(schema.columns.len());
            for_each_batch(store, scratch, version, |b| {
                for i in 0..b.num_rows() {
                    record.clear();
                    for (c, col) in schema.columns.iter().enumerate() {
                        record.push(cell_text(b.column(c), col.ftype, i));
                    }
                    writer.write_record(&record).map_err(io)?;
                }
                rows += b.num_rows() as u64;
                Ok(())
            })
            .await?;
            writer.flush()?;
        }
    }
    tmp.as_file().sync_all()?;
    tmp.persist(out).map_err(|e| DataError::Io(e.error))?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_parse_and_reject_garbage() {
        assert_eq!(
            "bikes@3".parse::<DatasetRef>().unwrap(),
            DatasetRef {
                name: "bikes".into(),
                version: Some(3)
            }
        );
        assert_eq!("bikes".parse::<DatasetRef>().unwrap().version, None);
        assert_eq!("bikes@latest".parse::<DatasetRef>().unwrap().version, None);
        for bad in ["bikes@0", "bikes@x", "../x@1", "@1"] {
            assert!(bad.parse::<DatasetRef>().is_err(), "{bad}");
        }
    }
}
