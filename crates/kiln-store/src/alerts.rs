//! Monitoring alerts: when a rule started firing for a model, and when it stopped.
//!
//! An alert is one episode: a row is written when a rule starts firing and updated when it
//! resolves. A unique index allows one firing episode per model and rule, so when several
//! server replicas notice the same breach, one row is written and the others are told it was
//! already open (no duplicate, no error).

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::Result;
use crate::meta::{MetaStore, is_unique_violation};
use crate::predictions::reserve_ids;

/// The alert a server raises when a model version an alias names cannot be loaded (its file is
/// missing, tampered with or unreadable): the server keeps serving what it served before. It
/// resolves when that version loads. It is no reason to retrain, so it triggers no retraining
/// unless `[automate] on_alerts` names it.
pub const MODEL_LOAD_RULE: &str = "model_load";

/// A rule that starts firing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewAlert {
    pub model: String,
    pub version: i64,
    pub rule: String,
    pub severity: String,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub message: String,
    pub window_start: i64,
    pub window_end: i64,
}

/// A stored alert episode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: i64,
    #[serde(flatten)]
    pub alert: NewAlert,
    /// `firing` or `resolved`.
    pub state: String,
    pub fired_at: i64,
    pub resolved_at: Option<i64>,
    pub resolved_window_end: Option<i64>,
}

macro_rules! alert_columns {
    () => {
        "id, model, version, rule, severity, state, value, threshold, message, window_start, \
         window_end, fired_at, resolved_at, resolved_window_end"
    };
}

fn alert_of(r: &AnyRow) -> Result<Alert> {
    Ok(Alert {
        id: r.try_get(0)?,
        alert: NewAlert {
            model: r.try_get(1)?,
            version: r.try_get(2)?,
            rule: r.try_get(3)?,
            severity: r.try_get(4)?,
            value: r.try_get(6)?,
            threshold: r.try_get(7)?,
            message: r.try_get(8)?,
            window_start: r.try_get(9)?,
            window_end: r.try_get(10)?,
        },
        state: r.try_get(5)?,
        fired_at: r.try_get(11)?,
        resolved_at: r.try_get(12)?,
        resolved_window_end: r.try_get(13)?,
    })
}

impl MetaStore {
    /// Records that a rule started firing. Returns the new alert's id, or `None` when an
    /// episode of the same model and rule is already firing (recorded by this or another
    /// replica), in which case nothing is written.
    pub async fn fire_alert(&self, a: &NewAlert) -> Result<Option<i64>> {
        let mut tx = self.write_tx().await?;
        let id = reserve_ids(&mut tx, "alerts", 1).await?;
        let inserted = sqlx::query(concat!(
            "INSERT INTO alerts (",
            alert_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, 'firing', $6, $7, $8, $9, $10, $11, NULL, NULL)"
        ))
        .bind(id)
        .bind(a.model.as_str())
        .bind(a.version)
        .bind(a.rule.as_str())
        .bind(a.severity.as_str())
        .bind(a.value)
        .bind(a.threshold)
        .bind(a.message.as_str())
        .bind(a.window_start)
        .bind(a.window_end)
        .bind(kiln_core::now_micros())
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {
                tx.commit().await?;
                Ok(Some(id))
            }
            // Already firing: give the id back by rolling back.
            Err(e) if is_unique_violation(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Records that a rule stopped firing; returns the resolved alert's id, or `None` when
    /// it was not firing.
    pub async fn resolve_alert(
        &self,
        model: &str,
        rule: &str,
        window_end: i64,
    ) -> Result<Option<i64>> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(
            "UPDATE alerts SET state = 'resolved', resolved_at = $1, resolved_window_end = $2 \
             WHERE model = $3 AND rule = $4 AND state = 'firing' RETURNING id",
        )
        .bind(kiln_core::now_micros())
        .bind(window_end)
        .bind(model)
        .bind(rule)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(match row {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        })
    }

    /// Alerts, newest first: of one model or all, only the firing ones or all, at most
    /// `limit` (a negative limit counts as 0).
    pub async fn alerts(
        &self,
        model: Option<&str>,
        firing_only: bool,
        limit: i64,
    ) -> Result<Vec<Alert>> {
        let mut sql = String::from(concat!("SELECT ", alert_columns!(), " FROM alerts"));
        let mut n = 0;
        if model.is_some() {
            n += 1;
            sql.push_str(" WHERE model = $1");
        }
        if firing_only {
            sql.push_str(if n == 0 { " WHERE" } else { " AND" });
            sql.push_str(" state = 'firing'");
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", n + 1));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(m) = model {
            q = q.bind(m);
        }
        let rows = q.bind(limit.max(0)).fetch_all(self.pool()).await?;
        rows.iter().map(alert_of).collect()
    }
}
