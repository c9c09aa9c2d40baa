//! Labelled production rows: the inputs the server logged, joined with the labels that came
//! back as feedback, appended to the training dataset as a new validated snapshot.
//!
//! The rows go through `kiln data add --append` (a CSV in the scratch folder), so they meet
//! the same schema, expectations and policy as any other data, and the snapshot records its
//! lineage. A row the dataset's rules refuse fails the retraining; nothing is half-appended.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use kiln_core::config::Config;
use kiln_core::schema::FeatureType;
use kiln_core::value::{format_days, format_timestamp};
use kiln_data::{AddOptions, add};
use kiln_store::{DatasetVersion, LabelQuery, LabelledPrediction, Store};
use serde_json::Value;

use crate::{AutomateError, Result};

/// Rows read per page.
const PAGE: i64 = 5000;

/// What a harvest appended.
#[derive(Clone, Debug)]
pub struct Harvest {
    /// Labelled rows appended (a prediction labelled twice counts once, with its later label).
    pub rows: u64,
    /// The last feedback id read: the next harvest starts after it.
    pub cursor: i64,
    /// The dataset version the rows were appended as (`None` when there were none).
    pub version: Option<DatasetVersion>,
    /// One logged input (a JSON object), for the latency gate.
    pub sample: Option<String>,
}

/// Counts the labelled rows of `model` after feedback id `cursor`, stopping at `need`.
pub async fn count_new(store: &Store, model: &str, cursor: i64, need: u64) -> Result<u64> {
    let rows = store
        .meta
        .labelled_predictions(&LabelQuery {
            model: model.to_owned(),
            from: None,
            to: None,
            after_feedback: Some(cursor),
            limit: need.min(i64::MAX as u64) as i64,
            features: false,
            served_only: true,
        })
        .await?;
    Ok(rows.len() as u64)
}

/// Every labelled prediction `q` selects after its `after_feedback` cursor, read `q.limit` at a
/// time, and the last feedback id read (the cursor for the next call; the given one when
/// there is nothing new).
pub async fn labelled_after(
    store: &Store,
    q: &LabelQuery,
) -> Result<(Vec<LabelledPrediction>, i64)> {
    let mut out = Vec::new();
    let mut last = q.after_feedback.unwrap_or(0);
    let page_size = q.limit.max(2);
    loop {
        let page = store
            .meta
            .labelled_predictions(&LabelQuery {
                after_feedback: Some(last),
                limit: page_size,
                ..q.clone()
            })
            .await?;
        let Some(end) = page.last().map(|l| l.feedback_id) else {
            break;
        };
        // A page may end inside one feedback item's rows: keep reading from its id, and take
        // only whole items of this page.
        let full =
            page.len() as i64 == page_size && page.first().map(|l| l.feedback_id) != Some(end);
        if !full {
            out.extend(page);
            last = end;
            break;
        }
        last = page
            .iter()
            .map(|l| l.feedback_id)
            .filter(|f| *f < end)
            .max()
            .unwrap_or(end);
        out.extend(page.into_iter().filter(|l| l.feedback_id != end));
    }
    Ok((out, last))
}

/// A JSON scalar as a CSV cell: strings as they are, numbers and booleans as written, null
/// (or anything else) empty.
fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

/// Appends the labelled rows of `model` after feedback id `cursor` to `dataset`.
pub async fn harvest(
    store: &Store,
    config: &Config,
    scratch: &Path,
    model: &str,
    dataset: &str,
    cursor: i64,
) -> Result<Harvest> {
    let Some(latest) = store.meta.version(dataset, None).await? else {
        return Err(AutomateError::Input(format!(
            "[automate] dataset `{dataset}` does not exist\nhint: `kiln data add FILE --dataset {dataset}` first"
        )));
    };
    let record = store.meta.dataset(dataset).await?;
    let target = record
        .as_ref()
        .and_then(|d| d.target.clone())
        .or_else(|| config.dataset(dataset).target)
        .ok_or_else(|| {
            AutomateError::Input(format!(
                "dataset `{dataset}` has no target, so labels have no column to go to\nhint: set `target` in [datasets.{dataset}] of kiln.toml"
            ))
        })?;
    let time_column = record.as_ref().and_then(|d| d.time_column.clone());

    // Newest label per prediction, in feedback order.
    let (labelled, last) = labelled_after(
        store,
        &LabelQuery {
            model: model.to_owned(),
            from: None,
            to: None,
            after_feedback: Some(cursor),
            limit: PAGE,
            features: true,
            served_only: true,
        },
    )
    .await?;
    let mut by_prediction: BTreeMap<i64, (i64, String, String)> = BTreeMap::new();
    for l in labelled {
        by_prediction.insert(
            l.prediction_id,
            (l.time, l.features.unwrap_or_default(), l.label),
        );
    }
    if by_prediction.is_empty() {
        return Ok(Harvest {
            rows: 0,
            cursor: last,
            version: None,
            sample: None,
        });
    }

    let schema = &latest.schema;
    std::fs::create_dir_all(scratch)?;
    let file = tempfile::Builder::new()
        .prefix("labelled-")
        .suffix(".csv")
        .tempfile_in(scratch)?;
    {
        let mut w = csv::Writer::from_path(file.path()).map_err(std::io::Error::other)?;
        w.write_record(schema.columns.iter().map(|c| c.name.as_str()))
            .map_err(std::io::Error::other)?;
        for (time, features, label) in by_prediction.values() {
            let row: serde_json::Map<String, Value> = match serde_json::from_str(features) {
                Ok(Value::Object(m)) => m,
                _ => serde_json::Map::new(),
            };
            let label: Value = serde_json::from_str(label).unwrap_or(Value::Null);
            let cells = schema.columns.iter().map(|c| {
                if c.name == target {
                    cell(&label)
                } else if let Some(v) = row.get(&c.name) {
                    cell(v)
                } else if time_column.as_deref() == Some(c.name.as_str()) {
                    // The event time the prediction was logged at.
                    match c.ftype {
                        FeatureType::Date => format_days(time.div_euclid(86_400_000_000) as i32),
                        _ => format_timestamp(*time),
                    }
                } else {
                    String::new()
                }
            });
            w.write_record(cells).map_err(std::io::Error::other)?;
        }
        w.flush()?;
    }
    let outcome = add(
        store,
        config,
        scratch,
        &AddOptions {
            file: file.path().to_path_buf(),
            dataset: dataset.to_owned(),
            time_column: None,
            target: None,
            append: true,
            allow_schema_change: false,
            // The CSV is scratch, deleted after the append: the lineage names what it held.
            source: Some(format!(
                "labelled production rows of `{model}`: feedback #{} to #{last}",
                cursor + 1
            )),
        },
        Arc::new(kiln_data::ingest::NoProgress),
    )
    .await?;
    Ok(Harvest {
        rows: by_prediction.len() as u64,
        cursor: last,
        version: Some(outcome.version),
        sample: by_prediction
            .values()
            .next_back()
            .map(|(_, f, _)| f.clone()),
    })
}
