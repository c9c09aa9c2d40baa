//! Archives of the prediction log: old days moved from the database to Parquet files in the
//! artifact store, so the database keeps only what the server and the controller read (the
//! recent log), while `kiln monitor` still reads every day.
//!
//! A partition is one model's predictions of one UTC day of event time. Archiving it is three
//! steps, safe to interrupt at any point: the rows are written to a Parquet file, the file is
//! stored under its content id, and then one transaction deletes exactly the archived rows and
//! records the archive. Until that transaction commits the rows are still in the table (a crash
//! leaves at most an unreferenced file, which the next run rewrites under the same id); after
//! it, they are in the archive only. Two compactions of one partition at once cannot both
//! commit: the second deletes fewer rows than it archived and rolls back.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use kiln_core::id::ContentId;

use crate::meta::MetaStore;
use crate::predictions::reserve_ids;
use crate::{Result, StoreError};

/// Microseconds in a day: partitions are UTC days of event time.
pub const DAY_US: i64 = 86_400_000_000;

/// The UTC day (days since 1970-01-01) of an event time in microseconds.
pub fn day_of(time_us: i64) -> i64 {
    time_us.div_euclid(DAY_US)
}

/// The day of an event time in SQL, rounding down before 1970 as [`day_of`] does (integer
/// division truncates toward zero on both engines).
macro_rules! day_sql {
    () => {
        "(CASE WHEN time >= 0 THEN time / 86400000000 ELSE -((-time - 1) / 86400000000) - 1 END)"
    };
}

/// One day of one model's log still in the database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogPartition {
    pub model: String,
    /// Days since 1970-01-01, UTC.
    pub day: i64,
    pub rows: i64,
    pub first_id: i64,
    pub last_id: i64,
    /// The earliest and latest event time in it.
    pub time_from: i64,
    pub time_to: i64,
}

/// An archive about to be recorded: a partition's rows up to `partition.last_id`, written to
/// the Parquet file `artifact`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewLogArchive {
    pub partition: LogPartition,
    /// Rows with a label joined in the file.
    pub labelled: i64,
    pub artifact: ContentId,
    pub bytes: u64,
    /// Feedback ids up to this one were joined into the file.
    pub feedback_watermark: i64,
}

/// A recorded archive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogArchive {
    pub id: i64,
    pub model: String,
    pub day: i64,
    pub first_id: i64,
    pub last_id: i64,
    pub time_from: i64,
    pub time_to: i64,
    pub rows: i64,
    pub labelled: i64,
    pub artifact: String,
    pub bytes: i64,
    pub feedback_watermark: i64,
    pub created_at: i64,
}

macro_rules! archive_columns {
    () => {
        "id, model, day, first_id, last_id, time_from, time_to, rows, labelled, artifact, bytes, \
         feedback_watermark, created_at"
    };
}

fn archive_of(r: &AnyRow) -> Result<LogArchive> {
    Ok(LogArchive {
        id: r.try_get(0)?,
        model: r.try_get(1)?,
        day: r.try_get(2)?,
        first_id: r.try_get(3)?,
        last_id: r.try_get(4)?,
        time_from: r.try_get(5)?,
        time_to: r.try_get(6)?,
        rows: r.try_get(7)?,
        labelled: r.try_get(8)?,
        artifact: r.try_get(9)?,
        bytes: r.try_get(10)?,
        feedback_watermark: r.try_get(11)?,
        created_at: r.try_get(12)?,
    })
}

impl MetaStore {
    /// The models with predictions in the database, by name.
    pub async fn logged_models(&self) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT DISTINCT model FROM predictions ORDER BY model")
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// The days of `model`'s log in the database whose whole day ends at or before `before`
    /// (an event time), oldest first.
    pub async fn log_partitions(&self, model: &str, before: i64) -> Result<Vec<LogPartition>> {
        let last_day = day_of(before) - 1;
        let rows = sqlx::query(concat!(
            "SELECT ",
            day_sql!(),
            " AS day, COUNT(*), MIN(id), MAX(id), MIN(time), MAX(time) FROM predictions \
             WHERE model = $1 AND time < $2 GROUP BY 1 ORDER BY 1"
        ))
        .bind(model)
        .bind((last_day + 1).saturating_mul(DAY_US))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LogPartition {
                    model: model.to_owned(),
                    day: r.try_get(0)?,
                    rows: r.try_get(1)?,
                    first_id: r.try_get(2)?,
                    last_id: r.try_get(3)?,
                    time_from: r.try_get(4)?,
                    time_to: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// The highest feedback id so far (0 when none).
    pub async fn last_feedback_id(&self) -> Result<i64> {
        let row = sqlx::query("SELECT MAX(id) FROM feedback")
            .fetch_one(self.pool())
            .await?;
        let last: Option<i64> = row.try_get(0)?;
        Ok(last.unwrap_or(0))
    }

    /// Records an archive and deletes the rows it holds, in one transaction. Fails with
    /// [`StoreError::Conflict`], changing nothing, when the rows are no longer all there
    /// (another compaction archived them first).
    pub async fn commit_log_archive(&self, a: &NewLogArchive) -> Result<LogArchive> {
        let p = &a.partition;
        let mut tx = self.write_tx().await?;
        let deleted = sqlx::query(
            "DELETE FROM predictions WHERE model = $1 AND time >= $2 AND time < $3 \
             AND id >= $4 AND id <= $5",
        )
        .bind(p.model.as_str())
        .bind(p.day.saturating_mul(DAY_US))
        .bind((p.day + 1).saturating_mul(DAY_US))
        .bind(p.first_id)
        .bind(p.last_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if deleted != p.rows as u64 {
            // Dropping the transaction rolls it back.
            return Err(StoreError::Conflict(format!(
                "{} day {}: {} of the {} archived predictions were still in the log \
                 (another compaction moved them meanwhile); nothing was changed",
                p.model, p.day, deleted, p.rows
            )));
        }
        let id = reserve_ids(&mut tx, "log_archives", 1).await?;
        let created_at = kiln_core::now_micros();
        sqlx::query(concat!(
            "INSERT INTO log_archives (",
            archive_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ))
        .bind(id)
        .bind(p.model.as_str())
        .bind(p.day)
        .bind(p.first_id)
        .bind(p.last_id)
        .bind(p.time_from)
        .bind(p.time_to)
        .bind(p.rows)
        .bind(a.labelled)
        .bind(a.artifact.as_str())
        .bind(a.bytes as i64)
        .bind(a.feedback_watermark)
        .bind(created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(LogArchive {
            id,
            model: p.model.clone(),
            day: p.day,
            first_id: p.first_id,
            last_id: p.last_id,
            time_from: p.time_from,
            time_to: p.time_to,
            rows: p.rows,
            labelled: a.labelled,
            artifact: a.artifact.as_str().to_owned(),
            bytes: a.bytes as i64,
            feedback_watermark: a.feedback_watermark,
            created_at,
        })
    }

    /// Archives of `model` (or all) holding event times in `[from, to)`, by first event time.
    pub async fn log_archives(
        &self,
        model: Option<&str>,
        from: Option<i64>,
        to: Option<i64>,
    ) -> Result<Vec<LogArchive>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            archive_columns!(),
            " FROM log_archives WHERE ($1 = '' OR model = $1) AND time_to >= $2 AND time_from < $3 \
             ORDER BY time_from, id"
        ))
        .bind(model.unwrap_or(""))
        .bind(from.unwrap_or(i64::MIN))
        .bind(to.unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(archive_of).collect()
    }

    /// Forgets the archives of `model` whose every event time is before `before`; returns them
    /// so the caller can delete their files.
    pub async fn drop_log_archives(&self, model: &str, before: i64) -> Result<Vec<LogArchive>> {
        let mut tx = self.write_tx().await?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            archive_columns!(),
            " FROM log_archives WHERE model = $1 AND time_to < $2 ORDER BY id"
        ))
        .bind(model)
        .bind(before)
        .fetch_all(&mut *tx)
        .await?;
        let dropped = rows.iter().map(archive_of).collect::<Result<Vec<_>>>()?;
        sqlx::query("DELETE FROM log_archives WHERE model = $1 AND time_to < $2")
            .bind(model)
            .bind(before)
            .execute(&mut *tx)
            .await?;
        for a in &dropped {
            sqlx::query("DELETE FROM artifacts WHERE id = $1")
                .bind(a.artifact.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(dropped)
    }

    /// Deletes `model`'s predictions with event times before `before` from the database;
    /// returns how many.
    pub async fn delete_predictions_before(&self, model: &str, before: i64) -> Result<u64> {
        let mut tx = self.write_tx().await?;
        let n = sqlx::query("DELETE FROM predictions WHERE model = $1 AND time < $2")
            .bind(model)
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_down_on_both_sides_of_the_epoch() {
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(DAY_US - 1), 0);
        assert_eq!(day_of(DAY_US), 1);
        assert_eq!(day_of(-1), -1);
        assert_eq!(day_of(-DAY_US), -1);
        assert_eq!(day_of(-DAY_US - 1), -2);
    }
}
