//! Pipeline runs (`kiln pipeline run`): each run and each of its stages, with the stage's
//! cache key, inputs, outputs, duration and result.
//!
//! A stage is recorded as `running` before its work starts and completed in place (`ran` or
//! `failed`), so a crash leaves a visible `running` row. A stage whose inputs are unchanged is
//! recorded as `skipped` with the outputs it reused. The cache lookup
//! ([`MetaStore::last_good_stage`]) reads the latest `ran` or `skipped` record of a stage;
//! `running` and `failed` records never count.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::meta::MetaStore;
use crate::predictions::reserve_ids;
use crate::{Result, StoreError};

/// A stored pipeline run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PipelineRun {
    pub id: i64,
    pub pipeline: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// `running`, `succeeded` or `failed`.
    pub state: String,
    pub code_version: Option<String>,
    pub kiln_version: String,
    pub message: Option<String>,
}

/// A stage about to be recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewStage {
    pub stage: String,
    pub position: i64,
    pub kind: String,
    pub key: String,
    /// The inputs document the key hashes.
    pub inputs: serde_json::Value,
}

/// A stored stage record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    pub run_id: i64,
    pub pipeline: String,
    #[serde(flatten)]
    pub stage: NewStage,
    /// `running`, `ran`, `skipped` or `failed`.
    pub state: String,
    pub outputs: Option<serde_json::Value>,
    pub started_at: i64,
    pub duration_ms: Option<i64>,
    pub message: Option<String>,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: what.to_owned(),
        message: e.to_string(),
    }
}

macro_rules! run_columns {
    () => {
        "id, pipeline, started_at, finished_at, state, code_version, kiln_version, message"
    };
}

macro_rules! stage_columns {
    () => {
        "run_id, pipeline, stage, position, kind, cache_key, state, inputs, outputs, started_at, \
         duration_ms, message"
    };
}

fn run_of(r: &AnyRow) -> Result<PipelineRun> {
    Ok(PipelineRun {
        id: r.try_get(0)?,
        pipeline: r.try_get(1)?,
        started_at: r.try_get(2)?,
        finished_at: r.try_get(3)?,
        state: r.try_get(4)?,
        code_version: r.try_get(5)?,
        kiln_version: r.try_get(6)?,
        message: r.try_get(7)?,
    })
}

fn stage_of(r: &AnyRow) -> Result<StageRecord> {
    let inputs: String = r.try_get(7)?;
    let outputs: Option<String> = r.try_get(8)?;
    Ok(StageRecord {
        run_id: r.try_get(0)?,
        pipeline: r.try_get(1)?,
        stage: NewStage {
            stage: r.try_get(2)?,
            position: r.try_get(3)?,
            kind: r.try_get(4)?,
            key: r.try_get(5)?,
            inputs: serde_json::from_str(&inputs).map_err(|e| corrupt("stage inputs", e))?,
        },
        state: r.try_get(6)?,
        outputs: outputs
            .map(|o| serde_json::from_str(&o).map_err(|e| corrupt("stage outputs", e)))
            .transpose()?,
        started_at: r.try_get(9)?,
        duration_ms: r.try_get(10)?,
        message: r.try_get(11)?,
    })
}

impl MetaStore {
    /// Records that a run of `pipeline` starts; returns its id.
    pub async fn start_pipeline_run(
        &self,
        pipeline: &str,
        code_version: Option<&str>,
    ) -> Result<i64> {
        let mut tx = self.write_tx().await?;
        let id = reserve_ids(&mut tx, "pipeline_runs", 1).await?;
        sqlx::query(
            "INSERT INTO pipeline_runs (id, pipeline, started_at, state, code_version, \
             kiln_version) VALUES ($1, $2, $3, 'running', $4, $5)",
        )
        .bind(id)
        .bind(pipeline)
        .bind(kiln_core::now_micros())
        .bind(code_version)
        .bind(kiln_core::KILN_VERSION)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Records how run `id` ended (`succeeded` or `failed`); only a running run can end.
    /// Returns whether it was running.
    pub async fn finish_pipeline_run(&self, id: i64, state: &str, message: &str) -> Result<bool> {
        if !matches!(state, "succeeded" | "failed") {
            return Err(StoreError::Invalid(format!(
                "a pipeline run ends `succeeded` or `failed`, not `{state}`"
            )));
        }
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE pipeline_runs SET state = $1, finished_at = $2, message = $3 \
             WHERE id = $4 AND state = 'running'",
        )
        .bind(state)
        .bind(kiln_core::now_micros())
        .bind(message)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a stage of run `run_id` as `running` (before its work) or `skipped` (with the
    /// outputs it reused). A stage appears once per run.
    pub async fn start_stage(
        &self,
        run_id: i64,
        stage: &NewStage,
        skipped: Option<&serde_json::Value>,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let pipeline: Option<String> =
            sqlx::query("SELECT pipeline FROM pipeline_runs WHERE id = $1")
                .bind(run_id)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get(0))
                .transpose()?;
        let Some(pipeline) = pipeline else {
            return Err(StoreError::NotFound(format!("no pipeline run #{run_id}")));
        };
        sqlx::query(
            "INSERT INTO pipeline_stages (run_id, stage, pipeline, position, kind, cache_key, \
             state, inputs, outputs, started_at, duration_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(run_id)
        .bind(stage.stage.as_str())
        .bind(pipeline.as_str())
        .bind(stage.position)
        .bind(stage.kind.as_str())
        .bind(stage.key.as_str())
        .bind(if skipped.is_some() {
            "skipped"
        } else {
            "running"
        })
        .bind(stage.inputs.to_string())
        .bind(skipped.map(|o| o.to_string()))
        .bind(kiln_core::now_micros())
        .bind(skipped.map(|_| 0_i64))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Completes a running stage as `ran` or `failed`, with its outputs and a message.
    /// Returns whether it was running.
    pub async fn finish_stage(
        &self,
        run_id: i64,
        stage: &str,
        state: &str,
        outputs: Option<&serde_json::Value>,
        duration_ms: i64,
        message: &str,
    ) -> Result<bool> {
        if !matches!(state, "ran" | "failed") {
            return Err(StoreError::Invalid(format!(
                "a stage ends `ran` or `failed`, not `{state}`"
            )));
        }
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE pipeline_stages SET state = $1, outputs = $2, duration_ms = $3, message = $4 \
             WHERE run_id = $5 AND stage = $6 AND state = 'running'",
        )
        .bind(state)
        .bind(outputs.map(|o| o.to_string()))
        .bind(duration_ms)
        .bind(message)
        .bind(run_id)
        .bind(stage)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// The latest record of `stage` of `pipeline` that ran or was skipped (the cache).
    pub async fn last_good_stage(
        &self,
        pipeline: &str,
        stage: &str,
    ) -> Result<Option<StageRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            stage_columns!(),
            " FROM pipeline_stages WHERE pipeline = $1 AND stage = $2 \
             AND state IN ('ran', 'skipped') ORDER BY run_id DESC LIMIT 1"
        ))
        .bind(pipeline)
        .bind(stage)
        .fetch_optional(self.pool())
        .await?
        .map(|r| stage_of(&r))
        .transpose()
    }

    /// Runs of one pipeline or all, newest first, at most `limit`.
    pub async fn pipeline_runs(
        &self,
        pipeline: Option<&str>,
        limit: i64,
    ) -> Result<Vec<PipelineRun>> {
        let rows = match pipeline {
            Some(p) => {
                sqlx::query(concat!(
                    "SELECT ",
                    run_columns!(),
                    " FROM pipeline_runs WHERE pipeline = $1 ORDER BY id DESC LIMIT $2"
                ))
                .bind(p)
                .bind(limit.max(0))
                .fetch_all(self.pool())
                .await?
            }
            None => {
                sqlx::query(concat!(
                    "SELECT ",
                    run_columns!(),
                    " FROM pipeline_runs ORDER BY id DESC LIMIT $1"
                ))
                .bind(limit.max(0))
                .fetch_all(self.pool())
                .await?
            }
        };
        rows.iter().map(run_of).collect()
    }

    /// The stages of run `run_id`, in pipeline order.
    pub async fn pipeline_stages(&self, run_id: i64) -> Result<Vec<StageRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            stage_columns!(),
            " FROM pipeline_stages WHERE run_id = $1 ORDER BY position"
        ))
        .bind(run_id)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(stage_of)
        .collect()
    }
}
