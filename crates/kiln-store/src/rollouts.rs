//! Rollouts: a challenger on live traffic beside the champion (shadow or canary) until the
//! controller promotes it, rolls it back or discards it. One running rollout per model (a
//! unique index), so two controllers cannot start two; the row says how it ended and with
//! which numbers.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::Result;
use crate::meta::{MetaStore, is_unique_violation};
use crate::predictions::reserve_ids;

/// A rollout that starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewRollout {
    pub model: String,
    /// `shadow` or `canary`.
    pub strategy: String,
    /// The alias that routes the challenger (`shadow` or `canary`).
    pub alias: String,
    pub challenger_version: i64,
    /// The alias the challenger would replace (`production`), its version and revision now.
    pub champion_alias: String,
    pub champion_version: i64,
    pub champion_revision: i64,
    /// Canary: the share of requests the challenger answers.
    pub share: Option<f64>,
    pub retrain_id: Option<i64>,
    /// The serving clock (event time, microseconds) at the start.
    pub event_time: i64,
}

/// A stored rollout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub id: i64,
    #[serde(flatten)]
    pub start: NewRollout,
    /// `running`, `promoted`, `rolled_back`, `discarded` or `stopped`.
    pub state: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// The numbers the last decision read.
    pub decision: Option<serde_json::Value>,
    pub message: Option<String>,
    /// Requests the challenger failed where production answered (reported by the servers).
    pub errors: i64,
}

macro_rules! rollout_columns {
    () => {
        "id, model, strategy, alias, challenger_version, champion_alias, champion_version, \
         champion_revision, share, retrain_id, event_time, state, started_at, finished_at, \
         decision, message, errors"
    };
}

fn rollout_of(r: &AnyRow) -> Result<Rollout> {
    let decision: Option<String> = r.try_get(14)?;
    Ok(Rollout {
        id: r.try_get(0)?,
        start: NewRollout {
            model: r.try_get(1)?,
            strategy: r.try_get(2)?,
            alias: r.try_get(3)?,
            challenger_version: r.try_get(4)?,
            champion_alias: r.try_get(5)?,
            champion_version: r.try_get(6)?,
            champion_revision: r.try_get(7)?,
            share: r.try_get(8)?,
            retrain_id: r.try_get(9)?,
            event_time: r.try_get(10)?,
        },
        state: r.try_get(11)?,
        started_at: r.try_get(12)?,
        finished_at: r.try_get(13)?,
        decision: decision.and_then(|d| serde_json::from_str(&d).ok()),
        message: r.try_get(15)?,
        errors: r.try_get(16)?,
    })
}

impl MetaStore {
    /// Records that a rollout starts; `None` (nothing written) when one is already running for
    /// the model.
    pub async fn start_rollout(&self, r: &NewRollout) -> Result<Option<i64>> {
        let mut tx = self.write_tx().await?;
        let id = reserve_ids(&mut tx, "rollouts", 1).await?;
        let inserted = sqlx::query(
            "INSERT INTO rollouts (id, model, strategy, alias, challenger_version, champion_alias, \
             champion_version, champion_revision, share, retrain_id, event_time, state, started_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'running', $12)",
        )
        .bind(id)
        .bind(r.model.as_str())
        .bind(r.strategy.as_str())
        .bind(r.alias.as_str())
        .bind(r.challenger_version)
        .bind(r.champion_alias.as_str())
        .bind(r.champion_version)
        .bind(r.champion_revision)
        .bind(r.share)
        .bind(r.retrain_id)
        .bind(r.event_time)
        .bind(kiln_core::now_micros())
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

    /// Records how rollout `id` ended (`state` is not `running`), with the numbers; returns
    /// whether it was running.
    pub async fn finish_rollout(
        &self,
        id: i64,
        state: &str,
        decision: Option<&serde_json::Value>,
        message: &str,
    ) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE rollouts SET state = $1, finished_at = $2, decision = $3, message = $4 \
             WHERE id = $5 AND state = 'running'",
        )
        .bind(state)
        .bind(kiln_core::now_micros())
        .bind(decision.map(|d| d.to_string()))
        .bind(message)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Adds `n` failures of `model@challenger` to its running rollout, if one runs.
    pub async fn add_rollout_errors(&self, model: &str, challenger: i64, n: i64) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "UPDATE rollouts SET errors = errors + $1 \
             WHERE model = $2 AND challenger_version = $3 AND state = 'running'",
        )
        .bind(n)
        .bind(model)
        .bind(challenger)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Rows of `model@version` logged through `alias` at event times from `from` on.
    pub async fn count_routed(
        &self,
        model: &str,
        version: i64,
        alias: &str,
        from: i64,
    ) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM predictions \
             WHERE model = $1 AND version = $2 AND alias = $3 AND time >= $4",
        )
        .bind(model)
        .bind(version)
        .bind(alias)
        .bind(from)
        .fetch_one(self.pool())
        .await?;
        Ok(row.try_get(0)?)
    }

    /// Records the numbers of a decision that kept rollout `id` running.
    pub async fn note_rollout(&self, id: i64, decision: &serde_json::Value) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("UPDATE rollouts SET decision = $1 WHERE id = $2 AND state = 'running'")
            .bind(decision.to_string())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Rollouts, newest first: of one model or all, at most `limit`; only running ones when
    /// `running`.
    pub async fn rollouts(
        &self,
        model: Option<&str>,
        running: bool,
        limit: i64,
    ) -> Result<Vec<Rollout>> {
        // Two static statements: PostgreSQL cannot type `$1 IS NULL OR model = $1`.
        let state = if running { "running" } else { "%" };
        let rows =
            match model {
                Some(m) => sqlx::query(concat!(
                    "SELECT ",
                    rollout_columns!(),
                    " FROM rollouts WHERE model = $1 AND state LIKE $2 ORDER BY id DESC LIMIT $3"
                ))
                .bind(m)
                .bind(state)
                .bind(limit.max(0))
                .fetch_all(self.pool())
                .await?,
                None => {
                    sqlx::query(concat!(
                        "SELECT ",
                        rollout_columns!(),
                        " FROM rollouts WHERE state LIKE $1 ORDER BY id DESC LIMIT $2"
                    ))
                    .bind(state)
                    .bind(limit.max(0))
                    .fetch_all(self.pool())
                    .await?
                }
            };
        rows.iter().map(rollout_of).collect()
    }
}
