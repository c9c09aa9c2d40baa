//! The retrain controller's record: each retraining it started, why, what it learned from,
//! the gates' numbers and the outcome.
//!
//! A unique index allows one running retraining per model, so when several controllers (or
//! server replicas) react to the same alert, one starts and the others are told it is taken.
//! A controller that died mid-run leaves a `running` row; [`MetaStore::start_retrain`]
//! closes such rows as failed once they are older than the stated limit.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::Result;
use crate::meta::{MetaStore, is_unique_violation};
use crate::predictions::reserve_ids;

/// A retraining that starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewRetrain {
    pub model: String,
    /// `schedule`, `alert:RULE` or `manual`.
    pub trigger: String,
    /// The serving clock (event time, microseconds) when it started.
    pub event_time: i64,
    pub champion_version: Option<i64>,
}

/// How a retraining ended.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RetrainOutcome {
    /// `promoted`, `rejected` or `failed`.
    pub state: String,
    pub labelled_rows: i64,
    pub feedback_cursor: i64,
    pub dataset_version: Option<i64>,
    pub run_id: Option<i64>,
    pub candidate_version: Option<i64>,
    /// Each gate with its numbers.
    pub gates: Option<serde_json::Value>,
    pub message: String,
}

/// A stored retraining.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Retrain {
    pub id: i64,
    #[serde(flatten)]
    pub start: NewRetrain,
    /// `running`, `promoted`, `rejected` or `failed`.
    pub state: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub labelled_rows: i64,
    pub feedback_cursor: i64,
    pub dataset_version: Option<i64>,
    pub run_id: Option<i64>,
    pub candidate_version: Option<i64>,
    pub gates: Option<serde_json::Value>,
    pub message: Option<String>,
}

macro_rules! retrain_columns {
    () => {
        "id, model, trigger, event_time, champion_version, state, started_at, finished_at, \
         labelled_rows, feedback_cursor, dataset_version, run_id, candidate_version, gates, message"
    };
}

fn retrain_of(r: &AnyRow) -> Result<Retrain> {
    let gates: Option<String> = r.try_get(13)?;
    Ok(Retrain {
        id: r.try_get(0)?,
        start: NewRetrain {
            model: r.try_get(1)?,
            trigger: r.try_get(2)?,
            event_time: r.try_get(3)?,
            champion_version: r.try_get(4)?,
        },
        state: r.try_get(5)?,
        started_at: r.try_get(6)?,
        finished_at: r.try_get(7)?,
        labelled_rows: r.try_get(8)?,
        feedback_cursor: r.try_get(9)?,
        dataset_version: r.try_get(10)?,
        run_id: r.try_get(11)?,
        candidate_version: r.try_get(12)?,
        gates: gates.and_then(|g| serde_json::from_str(&g).ok()),
        message: r.try_get(14)?,
    })
}

impl MetaStore {
    /// Records that a retraining starts. Returns its id, or `None` when one is already running
    /// for the model (started by this or another controller), in which case nothing is
    /// written. A `running` row whose wall-clock start is older than `abandoned_after_us` is
    /// first closed as failed: its controller died.
    pub async fn start_retrain(
        &self,
        r: &NewRetrain,
        abandoned_after_us: i64,
    ) -> Result<Option<i64>> {
        let now = kiln_core::now_micros();
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "UPDATE retrains SET state = 'failed', finished_at = $1, \
             message = 'abandoned: its controller stopped before it finished' \
             WHERE model = $2 AND state = 'running' AND started_at < $3",
        )
        .bind(now)
        .bind(r.model.as_str())
        .bind(now.saturating_sub(abandoned_after_us))
        .execute(&mut *tx)
        .await?;
        let id = reserve_ids(&mut tx, "retrains", 1).await?;
        let inserted = sqlx::query(
            "INSERT INTO retrains (id, model, trigger, event_time, champion_version, state, \
             started_at, labelled_rows, feedback_cursor) \
             VALUES ($1, $2, $3, $4, $5, 'running', $6, 0, 0)",
        )
        .bind(id)
        .bind(r.model.as_str())
        .bind(r.trigger.as_str())
        .bind(r.event_time)
        .bind(r.champion_version)
        .bind(now)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {
                tx.commit().await?;
                Ok(Some(id))
            }
            Err(e) if is_unique_violation(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Records how retraining `id` ended. Only a running retraining can end; returns whether
    /// it was.
    pub async fn finish_retrain(&self, id: i64, o: &RetrainOutcome) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE retrains SET state = $1, finished_at = $2, labelled_rows = $3, \
             feedback_cursor = $4, dataset_version = $5, run_id = $6, candidate_version = $7, \
             gates = $8, message = $9 WHERE id = $10 AND state = 'running'",
        )
        .bind(o.state.as_str())
        .bind(kiln_core::now_micros())
        .bind(o.labelled_rows)
        .bind(o.feedback_cursor)
        .bind(o.dataset_version)
        .bind(o.run_id)
        .bind(o.candidate_version)
        .bind(o.gates.as_ref().map(|g| g.to_string()))
        .bind(o.message.as_str())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Retrainings, newest first: of one model or all, at most `limit`.
    pub async fn retrains(&self, model: Option<&str>, limit: i64) -> Result<Vec<Retrain>> {
        let rows = match model {
            Some(m) => {
                sqlx::query(concat!(
                    "SELECT ",
                    retrain_columns!(),
                    " FROM retrains WHERE model = $1 ORDER BY id DESC LIMIT $2"
                ))
                .bind(m)
                .bind(limit.max(0))
                .fetch_all(self.pool())
                .await?
            }
            None => {
                sqlx::query(concat!(
                    "SELECT ",
                    retrain_columns!(),
                    " FROM retrains ORDER BY id DESC LIMIT $1"
                ))
                .bind(limit.max(0))
                .fetch_all(self.pool())
                .await?
            }
        };
        rows.iter().map(retrain_of).collect()
    }
}
