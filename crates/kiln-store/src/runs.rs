//! Training runs: the experiment-tracking record.
//!
//! A run row is inserted when training starts and completed (or marked failed with its error)
//! when it ends, so an interrupted run is visible as `running` instead of vanishing. Run ids are
//! small integers allocated like dataset versions: `MAX + 1` inside the write transaction, with
//! the primary key turning a race between two writers into a retry.

use kiln_core::id::ContentId;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::meta::{MetaStore, is_unique_violation};
use crate::{Result, StoreError};

/// A run as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: i64,
    pub status: RunStatus,
    pub dataset: String,
    pub dataset_version: i64,
    pub snapshot_id: ContentId,
    pub params: serde_json::Value,
    pub seed: u64,
    pub code_version: Option<String>,
    pub kiln_version: String,
    pub metrics: Option<serde_json::Value>,
    pub importance: Option<serde_json::Value>,
    pub timings: Option<serde_json::Value>,
    pub artifact_id: Option<ContentId>,
    pub error: Option<String>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Finished,
    Failed,
}

impl RunStatus {
    fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Finished => "finished",
            RunStatus::Failed => "failed",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is known when a run starts.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub dataset: String,
    pub dataset_version: i64,
    pub snapshot_id: ContentId,
    pub params: serde_json::Value,
    pub seed: u64,
    pub code_version: Option<String>,
    pub kiln_version: String,
}

/// What a finished run produced.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub metrics: serde_json::Value,
    pub importance: serde_json::Value,
    pub timings: serde_json::Value,
    pub artifact_id: ContentId,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: what.to_owned(),
        message: e.to_string(),
    }
}

fn json(what: &str, v: &serde_json::Value) -> Result<String> {
    serde_json::to_string(v).map_err(|e| corrupt(what, e))
}

/// The columns [`run_of`] reads, in its order (a macro so queries stay `&'static str`).
macro_rules! run_columns {
    () => {
        "id, status, dataset, dataset_version, snapshot_id, params, seed, code_version, \
         kiln_version, metrics, importance, timings, artifact_id, error, started_at, finished_at"
    };
}

fn run_of(r: &sqlx::any::AnyRow) -> Result<Run> {
    let parse_json = |i: usize, what: &str| -> Result<Option<serde_json::Value>> {
        let text: Option<String> = r.try_get(i)?;
        text.map(|t| serde_json::from_str(&t).map_err(|e| corrupt(what, e)))
            .transpose()
    };
    let status: String = r.try_get(1)?;
    let snapshot: String = r.try_get(4)?;
    let artifact: Option<String> = r.try_get(12)?;
    let seed: i64 = r.try_get(6)?;
    Ok(Run {
        id: r.try_get(0)?,
        status: match status.as_str() {
            "running" => RunStatus::Running,
            "finished" => RunStatus::Finished,
            "failed" => RunStatus::Failed,
            other => return Err(corrupt("run status", other)),
        },
        dataset: r.try_get(2)?,
        dataset_version: r.try_get(3)?,
        snapshot_id: snapshot
            .parse()
            .map_err(|e| corrupt("run snapshot id", e))?,
        params: parse_json(5, "run params")?.unwrap_or_default(),
        seed: seed as u64,
        code_version: r.try_get(7)?,
        kiln_version: r.try_get(8)?,
        metrics: parse_json(9, "run metrics")?,
        importance: parse_json(10, "run importance")?,
        timings: parse_json(11, "run timings")?,
        artifact_id: artifact
            .map(|a| a.parse().map_err(|e| corrupt("run artifact id", e)))
            .transpose()?,
        error: r.try_get(13)?,
        started_at: r.try_get(14)?,
        finished_at: r.try_get(15)?,
    })
}

impl MetaStore {
    /// Records the start of a run; returns its id.
    pub async fn start_run(&self, new: &NewRun) -> Result<i64> {
        for _ in 0..20 {
            let mut tx = self.write_tx().await?;
            let latest: Option<i64> = sqlx::query("SELECT MAX(id) FROM runs")
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
            let id = latest.unwrap_or(0) + 1;
            let inserted = sqlx::query(
                "INSERT INTO runs (id, status, dataset, dataset_version, snapshot_id, params, \
                 seed, code_version, kiln_version, started_at) \
                 VALUES ($1, 'running', $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(id)
            .bind(&new.dataset)
            .bind(new.dataset_version)
            .bind(new.snapshot_id.as_str())
            .bind(json("run params", &new.params)?)
            // Seeds are u64; stored as their two's-complement i64 and read back the same.
            .bind(new.seed as i64)
            .bind(new.code_version.as_deref())
            .bind(&new.kiln_version)
            .bind(kiln_core::now_micros())
            .execute(&mut *tx)
            .await;
            match inserted {
                Ok(_) => {
                    tx.commit().await?;
                    return Ok(id);
                }
                Err(e) if is_unique_violation(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict(
            "could not start a run: too many concurrent writers".into(),
        ))
    }

    /// Completes a running run with what it produced.
    pub async fn finish_run(&self, id: i64, result: &RunResult) -> Result<()> {
        sqlx::query(
            "UPDATE runs SET status = 'finished', metrics = $2, importance = $3, timings = $4, \
             artifact_id = $5, finished_at = $6 WHERE id = $1",
        )
        .bind(id)
        .bind(json("run metrics", &result.metrics)?)
        .bind(json("run importance", &result.importance)?)
        .bind(json("run timings", &result.timings)?)
        .bind(result.artifact_id.as_str())
        .bind(kiln_core::now_micros())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Marks a running run failed, keeping the reason.
    pub async fn fail_run(&self, id: i64, error: &str) -> Result<()> {
        sqlx::query(
            "UPDATE runs SET status = 'failed', error = $2, finished_at = $3 WHERE id = $1",
        )
        .bind(id)
        .bind(error)
        .bind(kiln_core::now_micros())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn run(&self, id: i64) -> Result<Option<Run>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(run_of).transpose()
    }

    /// The most recent runs first, at most `limit`.
    pub async fn runs(&self, limit: i64) -> Result<Vec<Run>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs ORDER BY id DESC LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(run_of).collect()
    }
}
