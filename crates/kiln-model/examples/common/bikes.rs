//! Loads the bundled bike-rental CSV into the normalized Arrow representation, split in
//! time (train before 2012-07-01, validate on the second half of 2012). Shared by the quality
//! test and the training benchmark's example; the CLI's own ingest is tested elsewhere.

use std::sync::Arc;

use arrow_array::builder::{Date32Builder, Float64Builder, StringDictionaryBuilder};
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, RecordBatch};
use kiln_core::schema::{Column, FeatureType, Schema};

const CATEGORICAL: [&str; 6] = [
    "season",
    "hr",
    "holiday",
    "weekday",
    "workingday",
    "weathersit",
];

pub struct Bikes {
    pub schema: Schema,
    pub header: Vec<String>,
    pub rows: Vec<csv::StringRecord>,
}

/// The bundled file.
pub const BUNDLED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/bikeshare/data/bike-rental-dataset.csv.gz"
);

/// A message naming the file, for a harness that reports and exits.
pub type LoadResult<T> = Result<T, String>;

pub fn load(path: &str) -> LoadResult<Bikes> {
    let file = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let mut reader = csv::Reader::from_reader(flate2::read::GzDecoder::new(file));
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| format!("{path}: {e}"))?
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = reader
        .records()
        .collect::<Result<Vec<csv::StringRecord>, _>>()
        .map_err(|e| format!("{path}: {e}"))?;
    for needed in ["dteday", "cnt"] {
        if !header.iter().any(|h| h == needed) {
            return Err(format!("{path}: no `{needed}` column"));
        }
    }
    // casual + registered = cnt: leaks of the target, never features.
    let schema = Schema::new(
        header
            .iter()
            .filter(|h| *h != "casual" && *h != "registered")
            .map(|h| Column {
                name: h.clone(),
                ftype: if h == "dteday" {
                    FeatureType::Date
                } else if CATEGORICAL.contains(&h.as_str()) {
                    FeatureType::Categorical
                } else {
                    FeatureType::Numeric
                },
            })
            .collect(),
    );
    Ok(Bikes {
        schema,
        header,
        rows,
    })
}

impl Bikes {
    pub fn batch(&self, rows: &[&csv::StringRecord]) -> RecordBatch {
        let arrays: Vec<ArrayRef> = self
            .schema
            .columns
            .iter()
            .map(|c| {
                let i = self.header.iter().position(|h| *h == c.name).unwrap();
                let a: ArrayRef = match c.ftype {
                    FeatureType::Date => {
                        let mut b = Date32Builder::new();
                        for r in rows {
                            b.append_option(kiln_core::value::parse_date(&r[i]));
                        }
                        Arc::new(b.finish())
                    }
                    FeatureType::Categorical => {
                        let mut b = StringDictionaryBuilder::<Int32Type>::new();
                        for r in rows {
                            if r[i].is_empty() {
                                b.append_null();
                            } else {
                                b.append_value(&r[i]);
                            }
                        }
                        Arc::new(b.finish())
                    }
                    _ => {
                        let mut b = Float64Builder::new();
                        for r in rows {
                            b.append_option(r[i].parse::<f64>().ok());
                        }
                        Arc::new(b.finish())
                    }
                };
                a
            })
            .collect();
        RecordBatch::try_new(kiln_core::table::arrow_schema(&self.schema), arrays).unwrap()
    }

    /// Rows before 2012-07-01 and rows from then on, with their `cnt` targets.
    pub fn time_split(&self) -> LoadResult<(RecordBatch, Vec<f64>, RecordBatch, Vec<f64>)> {
        let cnt = self
            .header
            .iter()
            .position(|h| h == "cnt")
            .unwrap_or_default();
        let (train, valid): (Vec<&csv::StringRecord>, Vec<&csv::StringRecord>) =
            self.rows.iter().partition(|r| &r[0] < "2012-07-01");
        let y = |rs: &[&csv::StringRecord]| -> LoadResult<Vec<f64>> {
            rs.iter()
                .map(|r| {
                    r[cnt]
                        .parse()
                        .map_err(|_| format!("cnt `{}` is not a number", &r[cnt]))
                })
                .collect()
        };
        Ok((
            self.batch(&train),
            y(&train)?,
            self.batch(&valid),
            y(&valid)?,
        ))
    }
}
