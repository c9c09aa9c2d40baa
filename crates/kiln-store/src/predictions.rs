//! The prediction log and label feedback: what the server answered, and what really happened.
//!
//! Both are append-only and written in batches, each batch in one transaction: the server
//! buffers rows and flushes them, tens of thousands per second, so a batch goes in as a few
//! multi-row `INSERT ... VALUES (...), (...)` statements rather than one statement per row.
//! Statement sizes are powers of two up to [`MAX_ROWS_PER_STATEMENT`], so only a handful of
//! distinct statements ever exist: each is built once per process and then prepared once per
//! connection (sqlx keeps prepared statements in a per-connection cache), whatever the batch
//! sizes. These generated INSERTs are the one place where the SQL differs by engine, and only
//! in how parameters are written (see [`Placeholders`]). Ids come from a counter row bumped in
//! the same transaction (see migration 0004), so they are dense and become visible in commit
//! order: paging with `after_id` never skips a row. On SQLite the log's appends take another
//! road to the same rows: one prepared single-row INSERT on a connection of their own
//! (`appender.rs`), which costs about half the CPU per row of the generated statements.
//!
//! Feedback refers to a prediction by its request id or by the caller's join key. It is stored
//! even when no logged prediction matches yet (another replica may not have flushed), and the
//! writer is told how many items matched, to spot a client sending ids that never match.

use std::fmt::Write as _;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, Arguments, Encode, Row, Transaction, Type};

use crate::meta::{Backend, MetaStore};
use crate::{Result, StoreError};

/// Rows per multi-row INSERT at most. 512 rows × 11 columns = 5,632 bind parameters, well
/// under SQLite's limit (32,766 since 3.32) and PostgreSQL's (65,535), while large enough that
/// per-statement costs vanish against per-row ones.
const MAX_ROWS_PER_STATEMENT: usize = 512;
/// Distinct statement sizes: 1, 2, 4, ..., [`MAX_ROWS_PER_STATEMENT`].
const STATEMENT_SIZES: usize = MAX_ROWS_PER_STATEMENT.trailing_zeros() as usize + 1;

/// One scored row, as the server logs it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PredictionRecord {
    pub request_id: String,
    /// The caller's join key for later feedback, if it sent one.
    pub key: Option<String>,
    pub model: String,
    pub version: i64,
    /// The alias the request was routed through (`production`, ...), if any.
    pub alias: Option<String>,
    /// Event time, microseconds since the epoch; normally the server's clock.
    pub time: i64,
    /// The row's input, a compact JSON object.
    pub features: String,
    /// What the model returned, JSON.
    pub output: String,
    pub latency_us: i64,
    /// A JSON array of strings (`["unknown_category:season"]`); `None` when there are none.
    pub flags: Option<String>,
}

/// A logged prediction with its id (dense, ascending in commit order).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredPrediction {
    pub id: i64,
    #[serde(flatten)]
    pub record: PredictionRecord,
}

/// Which logged predictions to read: all filters are optional and combine with AND.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PredictionQuery {
    pub model: Option<String>,
    /// Earliest event time, inclusive.
    pub from: Option<i64>,
    /// Latest event time, exclusive.
    pub to: Option<i64>,
    /// Only rows after this id (the last id of the previous page).
    pub after_id: Option<i64>,
    /// At most this many rows; a negative limit counts as 0.
    pub limit: i64,
}

/// A label for an earlier prediction, found by its request id or by the caller's key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeedbackRecord {
    pub request_id: Option<String>,
    pub key: Option<String>,
    /// The event time the label belongs to, when given with a key (a key may recur over time).
    pub time: Option<i64>,
    /// The observed outcome, a JSON scalar.
    pub label: String,
}

/// Stored feedback with its id and arrival time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredFeedback {
    pub id: i64,
    pub request_id: Option<String>,
    pub key: Option<String>,
    pub time: Option<i64>,
    pub label: String,
    pub received_at: i64,
}

/// A logged prediction joined with a label that came back for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelledPrediction {
    pub prediction_id: i64,
    pub version: i64,
    /// The prediction's event time.
    pub time: i64,
    /// What the model returned, JSON.
    pub output: String,
    /// The observed outcome, a JSON scalar.
    pub label: String,
    /// The feedback item's id (ascending in arrival order: a cursor for the next read).
    pub feedback_id: i64,
    /// The row's input as logged (JSON object), when the query asked for it.
    pub features: Option<String>,
    /// The alias that routed the prediction (`shadow` for a shadow's copy).
    pub alias: Option<String>,
    pub latency_us: i64,
}

/// Which labelled predictions to read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelQuery {
    pub model: String,
    /// Earliest prediction event time, inclusive.
    pub from: Option<i64>,
    /// Latest prediction event time, exclusive.
    pub to: Option<i64>,
    /// Only feedback after this id.
    pub after_feedback: Option<i64>,
    pub limit: i64,
    /// Read each prediction's logged input as well (to learn from it).
    #[serde(default)]
    pub features: bool,
    /// Only predictions that answered a request: not a shadow's copies of them (which share
    /// the request id, so a label joins both).
    #[serde(default)]
    pub served_only: bool,
}

/// The alias whose predictions are copies: scored and logged, never returned.
pub const SHADOW_ALIAS: &str = "shadow";

/// The alias that answers a share of the requests during a canary rollout.
pub const CANARY_ALIAS: &str = "canary";

/// What a feedback batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackOutcome {
    /// Items written (all of them, matched or not).
    pub stored: u64,
    /// Items whose request id or key names at least one prediction already in the log.
    pub matched: u64,
}

/// The columns [`prediction_of`] reads, in its order (a macro so queries stay `&'static str`).
macro_rules! prediction_columns {
    () => {
        "id, request_id, key, model, version, alias, time, features, output, latency_us, flags"
    };
}

/// The columns [`feedback_of`] reads, in its order.
macro_rules! feedback_columns {
    () => {
        "id, request_id, key, time, label, received_at"
    };
}

/// A generated multi-row INSERT: its head, its column count, and the statements built so far.
struct Insert {
    head: &'static str,
    columns: usize,
    /// By placeholder style, then by log2 of the row count.
    built: [[OnceLock<String>; STATEMENT_SIZES]; 2],
}

impl Insert {
    const fn new(head: &'static str, columns: usize) -> Self {
        Self {
            head,
            columns,
            built: [const { [const { OnceLock::new() }; STATEMENT_SIZES] }; 2],
        }
    }
}

static PREDICTION_INSERT: Insert = Insert::new(
    concat!(
        "INSERT INTO predictions (",
        prediction_columns!(),
        ") VALUES "
    ),
    11,
);
static FEEDBACK_INSERT: Insert = Insert::new(
    concat!("INSERT INTO feedback (", feedback_columns!(), ") VALUES "),
    6,
);

/// How a generated multi-row INSERT writes its parameters.
///
/// PostgreSQL needs `$N`. On SQLite `$N` costs a quadratic bind: sqlx asks SQLite for each
/// parameter's name to find its argument, and SQLite finds a name by a linear scan of the
/// statement's parameter list. With 5,632 parameters per statement that scan dominated the
/// whole append (11,000 rows/s in release mode on the development machine; 190,000 with `?`).
/// Plain `?` parameters have no name and bind in order, which is how the values are pushed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placeholders {
    /// `$1, $2, ...`: PostgreSQL.
    Numbered,
    /// `?, ?, ...`: SQLite.
    Anonymous,
}

impl Placeholders {
    fn of(store: &MetaStore) -> Self {
        match store.backend() {
            Backend::Postgres => Placeholders::Numbered,
            Backend::Sqlite => Placeholders::Anonymous,
        }
    }
}

/// How many of `remaining` rows the next statement takes: a full statement while there are
/// enough rows, then the remainder's binary digits, largest first (500 rows: 256+128+64+32+16+4).
fn statement_rows(remaining: usize) -> usize {
    if remaining >= MAX_ROWS_PER_STATEMENT {
        MAX_ROWS_PER_STATEMENT
    } else {
        // remaining > 0 here; its highest set bit.
        1 << (usize::BITS - 1 - remaining.leading_zeros())
    }
}

/// The multi-row INSERT for `rows` (a power of two up to the maximum), built once.
fn insert_sql(insert: &'static Insert, style: Placeholders, rows: usize) -> &'static str {
    let (head, columns) = (insert.head, insert.columns);
    insert.built[style as usize][rows.trailing_zeros() as usize].get_or_init(|| {
        let mut sql = String::with_capacity(head.len() + rows * columns * 7);
        sql.push_str(head);
        for r in 0..rows {
            sql.push_str(if r == 0 { "(" } else { ", (" });
            for c in 0..columns {
                sql.push_str(if c == 0 { "" } else { ", " });
                match style {
                    Placeholders::Numbered => {
                        // Writing to a String cannot fail.
                        let _ = write!(sql, "${}", r * columns + c + 1);
                    }
                    Placeholders::Anonymous => sql.push('?'),
                }
            }
            sql.push(')');
        }
        sql
    })
}

fn bind<'t, T: Encode<'t, Any> + Type<Any>>(args: &mut AnyArguments, value: T) -> Result<()> {
    args.add(value)
        .map_err(|e| StoreError::Db(sqlx::Error::Encode(e)))
}

/// Reserves `n` ids for `counter`'s table; returns the first. The update locks the counter row
/// until the transaction ends, which queues concurrent writers on PostgreSQL (SQLite's
/// `BEGIN IMMEDIATE` already does), so ids are handed out and committed in the same order.
pub(crate) async fn reserve_ids(
    tx: &mut Transaction<'static, Any>,
    counter: &str,
    n: usize,
) -> Result<i64> {
    let n = n as i64;
    let last: i64 = sqlx::query(RESERVE_IDS)
        .bind(n)
        .bind(counter)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| missing_counter(counter))?
        .try_get(0)?;
    Ok(last - n + 1)
}

/// Bumps a table's id counter by `$1` (`$2`: the table) and returns the last id handed out:
/// [`reserve_ids`], and the SQLite appender's equivalent.
pub(crate) const RESERVE_IDS: &str =
    "UPDATE id_counters SET last_id = last_id + $1 WHERE name = $2 RETURNING last_id";

pub(crate) fn missing_counter(counter: &str) -> StoreError {
    StoreError::Corrupt {
        what: "id counters".into(),
        message: format!("the counter for `{counter}` is missing"),
    }
}

/// The SQLite appender's single-row INSERT: the columns of [`PREDICTION_INSERT`].
pub(crate) const SQLITE_PREDICTION_INSERT: &str = concat!(
    "INSERT INTO predictions (",
    prediction_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
);

/// Inserts `items` with ids from `first` on, in as few multi-row statements as the sizes allow;
/// `push` binds one item's columns after its id. Returns the rows written.
async fn insert_batch<T>(
    tx: &mut Transaction<'static, Any>,
    insert: &'static Insert,
    style: Placeholders,
    items: &[T],
    first: i64,
    push: impl Fn(&mut AnyArguments, &T) -> Result<()>,
) -> Result<u64> {
    let mut id = first;
    let mut written = 0;
    let mut rest = items;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(statement_rows(rest.len()));
        let mut args = AnyArguments::default();
        args.reserve(chunk.len() * insert.columns, 0);
        for item in chunk {
            bind(&mut args, id)?;
            push(&mut args, item)?;
            id += 1;
        }
        let sql = insert_sql(insert, style, chunk.len());
        written += sqlx::query_with(sql, args)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        rest = tail;
    }
    Ok(written)
}

/// Runs `f`, which blocks, from async code: on a multi-threaded runtime the worker hands its
/// other tasks to the rest of the runtime first (`block_in_place`), so requests are not held
/// up while a batch is written; on a current-thread runtime (commands, tests) it runs inline.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// The statement of [`MetaStore::labelled_predictions`].
fn labelled_sql(features: bool, served_only: bool) -> String {
    let inputs = if features { "p.features" } else { "NULL" };
    // A constant, not a parameter: the alias filter is part of the statement's shape.
    let served = if served_only {
        "AND (p.alias IS NULL OR p.alias <> 'shadow')"
    } else {
        ""
    };
    // The feedback after the cursor drives the join, each item finding its predictions by
    // request id or key: the cost follows the new labels, not the log. Left to itself,
    // SQLite (no statistics) walked the model's whole `(model, time)` index and probed
    // feedback for every prediction: 129 ms a call at 110,000 logged rows, once a second
    // from live monitoring, growing with the log. `CROSS JOIN` fixes SQLite's loop order;
    // `p.model || ''` and `p.time + 0` are not indexable, which leaves SQLite the request
    // id and key indexes for `p`. Both are plain SQL to PostgreSQL, which plans by its
    // statistics.
    format!(
        "SELECT p.id, p.version, p.time, p.output, f.label, f.id, {inputs}, p.alias, p.latency_us \
             FROM feedback f CROSS JOIN predictions p \
             WHERE p.request_id = f.request_id AND f.request_id IS NOT NULL AND f.id > $1 \
             AND p.model || '' = $2 AND p.time + 0 >= $3 AND p.time + 0 < $4 {served} \
             UNION ALL \
             SELECT p.id, p.version, p.time, p.output, f.label, f.id, {inputs}, p.alias, p.latency_us \
             FROM feedback f CROSS JOIN predictions p \
             WHERE p.key = f.key AND (f.time IS NULL OR f.time = p.time) AND f.request_id IS NULL \
             AND f.id > $1 AND p.model || '' = $2 AND p.time + 0 >= $3 AND p.time + 0 < $4 {served} \
             ORDER BY 6, 1 LIMIT $5"
    )
}

fn prediction_of(r: &AnyRow) -> Result<StoredPrediction> {
    Ok(StoredPrediction {
        id: r.try_get(0)?,
        record: PredictionRecord {
            request_id: r.try_get(1)?,
            key: r.try_get(2)?,
            model: r.try_get(3)?,
            version: r.try_get(4)?,
            alias: r.try_get(5)?,
            time: r.try_get(6)?,
            features: r.try_get(7)?,
            output: r.try_get(8)?,
            latency_us: r.try_get(9)?,
            flags: r.try_get(10)?,
        },
    })
}

fn feedback_of(r: &AnyRow) -> Result<StoredFeedback> {
    Ok(StoredFeedback {
        id: r.try_get(0)?,
        request_id: r.try_get(1)?,
        key: r.try_get(2)?,
        time: r.try_get(3)?,
        label: r.try_get(4)?,
        received_at: r.try_get(5)?,
    })
}

impl MetaStore {
    /// Readies the prediction log's appends before the first one (on SQLite, opens the
    /// appender's connection and compiles its insert), so that the first batch a server writes
    /// is no slower than the next. Nothing to do on PostgreSQL.
    pub async fn prepare_appends(&self) -> Result<()> {
        match self.appender() {
            Some(appender) => blocking(|| appender.open_now()),
            None => Ok(()),
        }
    }

    /// Appends `rows` to the prediction log in one transaction; returns how many were written.
    pub async fn append_predictions(&self, rows: &[PredictionRecord]) -> Result<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        if let Some(appender) = self.appender() {
            return blocking(|| appender.append(rows));
        }
        let mut tx = self.write_tx().await?;
        let first = reserve_ids(&mut tx, "predictions", rows.len()).await?;
        let written = insert_batch(
            &mut tx,
            &PREDICTION_INSERT,
            Placeholders::of(self),
            rows,
            first,
            |args, r| {
                bind(args, r.request_id.as_str())?;
                bind(args, r.key.as_deref())?;
                bind(args, r.model.as_str())?;
                bind(args, r.version)?;
                bind(args, r.alias.as_deref())?;
                bind(args, r.time)?;
                bind(args, r.features.as_str())?;
                bind(args, r.output.as_str())?;
                bind(args, r.latency_us)?;
                bind(args, r.flags.as_deref())
            },
        )
        .await?;
        tx.commit().await?;
        Ok(written)
    }

    /// Logged predictions matching `q`, by id ascending.
    pub async fn predictions(&self, q: &PredictionQuery) -> Result<Vec<StoredPrediction>> {
        // Only the filters in use appear in the SQL, so each can use its index (a
        // `$1 IS NULL OR model = $1` form would defeat them, and PostgreSQL cannot type it).
        let mut sql = String::from(concat!(
            "SELECT ",
            prediction_columns!(),
            " FROM predictions"
        ));
        let mut n = 0;
        let mut cond = |sql: &mut String, column: &str, op: &str| {
            n += 1;
            let glue = if n == 1 { " WHERE" } else { " AND" };
            let _ = write!(sql, "{glue} {column} {op} ${n}");
        };
        if q.model.is_some() {
            cond(&mut sql, "model", "=");
        }
        if q.from.is_some() {
            cond(&mut sql, "time", ">=");
        }
        if q.to.is_some() {
            cond(&mut sql, "time", "<");
        }
        if q.after_id.is_some() {
            cond(&mut sql, "id", ">");
        }
        n += 1;
        let _ = write!(sql, " ORDER BY id LIMIT ${n}");
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(m) = &q.model {
            query = query.bind(m.as_str());
        }
        for v in [q.from, q.to, q.after_id].into_iter().flatten() {
            query = query.bind(v);
        }
        // SQLite reads a negative LIMIT as "no limit" and PostgreSQL refuses it: clamp to 0.
        let rows = query.bind(q.limit.max(0)).fetch_all(self.pool()).await?;
        rows.iter().map(prediction_of).collect()
    }

    /// How many predictions are logged, for one model or all.
    pub async fn prediction_count(&self, model: Option<&str>) -> Result<i64> {
        let row = match model {
            Some(m) => {
                sqlx::query("SELECT COUNT(*) FROM predictions WHERE model = $1")
                    .bind(m)
                    .fetch_one(self.pool())
                    .await?
            }
            None => {
                sqlx::query("SELECT COUNT(*) FROM predictions")
                    .fetch_one(self.pool())
                    .await?
            }
        };
        Ok(row.try_get(0)?)
    }

    /// Every row logged for one request, by id ascending.
    pub async fn prediction_by_request(&self, request_id: &str) -> Result<Vec<StoredPrediction>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            prediction_columns!(),
            " FROM predictions WHERE request_id = $1 ORDER BY id"
        ))
        .bind(request_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(prediction_of).collect()
    }

    /// Stores a batch of feedback in one transaction and counts the items that match a logged
    /// prediction (by request id or by key). An item with neither is refused with
    /// [`StoreError::Invalid`], and then nothing of the batch is stored.
    pub async fn add_feedback(&self, items: &[FeedbackRecord]) -> Result<FeedbackOutcome> {
        if let Some(i) = items
            .iter()
            .position(|f| f.request_id.is_none() && f.key.is_none())
        {
            return Err(StoreError::Invalid(format!(
                "feedback item {i} has neither a request_id nor a key, so it can never be \
                 joined to a prediction; nothing of this batch was stored"
            )));
        }
        if items.is_empty() {
            return Ok(FeedbackOutcome::default());
        }
        let received_at = kiln_core::now_micros();
        let mut tx = self.write_tx().await?;
        let first = reserve_ids(&mut tx, "feedback", items.len()).await?;
        let stored = insert_batch(
            &mut tx,
            &FEEDBACK_INSERT,
            Placeholders::of(self),
            items,
            first,
            |args, f| {
                bind(args, f.request_id.as_deref())?;
                bind(args, f.key.as_deref())?;
                bind(args, f.time)?;
                bind(args, f.label.as_str())?;
                bind(args, received_at)
            },
        )
        .await?;
        // The batch's rows are exactly the ids just reserved: one query matches them all, two
        // index probes per item, instead of a query (and a round trip) per item.
        let matched: i64 = sqlx::query(
            "SELECT COUNT(*) FROM feedback f WHERE f.id >= $1 AND f.id <= $2 AND (\
             EXISTS (SELECT 1 FROM predictions p WHERE p.request_id = f.request_id) OR \
             EXISTS (SELECT 1 FROM predictions p WHERE p.key = f.key))",
        )
        .bind(first)
        .bind(first + items.len() as i64 - 1)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        tx.commit().await?;
        Ok(FeedbackOutcome {
            stored,
            matched: matched as u64,
        })
    }

    /// Predictions of one model joined with their feedback (by request id, or by key and, when
    /// the feedback gives one, event time), by feedback id ascending. A prediction labelled
    /// twice comes twice; the later feedback id is the correction.
    pub async fn labelled_predictions(&self, q: &LabelQuery) -> Result<Vec<LabelledPrediction>> {
        let sql = labelled_sql(q.features, q.served_only);
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(q.after_feedback.unwrap_or(0))
            .bind(q.model.as_str())
            .bind(q.from.unwrap_or(i64::MIN))
            .bind(q.to.unwrap_or(i64::MAX))
            .bind(q.limit.max(0))
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(LabelledPrediction {
                    prediction_id: r.try_get(0)?,
                    version: r.try_get(1)?,
                    time: r.try_get(2)?,
                    output: r.try_get(3)?,
                    label: r.try_get(4)?,
                    feedback_id: r.try_get(5)?,
                    features: if q.features { r.try_get(6)? } else { None },
                    alias: r.try_get(7)?,
                    latency_us: r.try_get(8)?,
                })
            })
            .collect()
    }

    /// The latest event time logged for `model` (the serving clock, which a replay drives).
    pub async fn latest_prediction_time(&self, model: &str) -> Result<Option<i64>> {
        Ok(self
            .prediction_time_range(model)
            .await?
            .map(|(_, last)| last))
    }

    /// The highest prediction id logged so far (0 when none): where a reader of new rows
    /// starts. Ids are handed out in commit order, so rows after it are all new.
    pub async fn last_prediction_id(&self) -> Result<i64> {
        let row = sqlx::query("SELECT MAX(id) FROM predictions")
            .fetch_one(self.pool())
            .await?;
        let last: Option<i64> = row.try_get(0)?;
        Ok(last.unwrap_or(0))
    }

    /// The earliest and latest event times logged for `model`.
    ///
    /// Two subqueries, not `SELECT MIN(time), MAX(time)`: SQLite answers a lone MIN or MAX
    /// from one end of the `(model, time)` index, but both in one SELECT scan every row of the
    /// model. The retrain controller asks every poll, so that scan grew with the log (166 ms
    /// at 750,000 rows, against 0.15 ms this way).
    pub async fn prediction_time_range(&self, model: &str) -> Result<Option<(i64, i64)>> {
        let row = sqlx::query(
            "SELECT (SELECT MIN(time) FROM predictions WHERE model = $1), \
                    (SELECT MAX(time) FROM predictions WHERE model = $1)",
        )
        .bind(model)
        .fetch_one(self.pool())
        .await?;
        let (first, last): (Option<i64>, Option<i64>) = (row.try_get(0)?, row.try_get(1)?);
        Ok(first.zip(last))
    }

    /// Stored feedback after `after_id` (from the start when `None`), by id ascending, at most
    /// `limit` items (a negative limit counts as 0).
    pub async fn feedback(&self, after_id: Option<i64>, limit: i64) -> Result<Vec<StoredFeedback>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            feedback_columns!(),
            " FROM feedback WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        // Ids start at 1.
        .bind(after_id.unwrap_or(0))
        .bind(limit.max(0))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(feedback_of).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_cover_any_batch_with_few_sizes() {
        for n in [1, 2, 3, 500, 511, 512, 513, 1234, 100_000] {
            let mut rest = n;
            let mut sizes = Vec::new();
            while rest > 0 {
                let s = statement_rows(rest);
                assert!(
                    s.is_power_of_two() && s <= MAX_ROWS_PER_STATEMENT,
                    "{n}: {s}"
                );
                sizes.push(s);
                rest -= s;
            }
            assert_eq!(sizes.iter().sum::<usize>(), n);
            // Full statements, then at most one of each smaller size.
            let tail: Vec<_> = sizes
                .iter()
                .skip_while(|s| **s == MAX_ROWS_PER_STATEMENT)
                .collect();
            assert!(tail.windows(2).all(|w| w[0] > w[1]), "{n}: {sizes:?}");
            assert_eq!(
                tail.len(),
                (n % MAX_ROWS_PER_STATEMENT).count_ones() as usize
            );
        }
    }

    #[test]
    fn insert_sql_writes_every_parameter() {
        assert_eq!(
            insert_sql(&FEEDBACK_INSERT, Placeholders::Numbered, 2),
            "INSERT INTO feedback (id, request_id, key, time, label, received_at) VALUES \
             ($1, $2, $3, $4, $5, $6), ($7, $8, $9, $10, $11, $12)"
        );
        assert_eq!(
            insert_sql(&FEEDBACK_INSERT, Placeholders::Anonymous, 2),
            "INSERT INTO feedback (id, request_id, key, time, label, received_at) VALUES \
             (?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?)"
        );
        let full = |style| insert_sql(&PREDICTION_INSERT, style, MAX_ROWS_PER_STATEMENT);
        let numbered = full(Placeholders::Numbered);
        assert!(
            numbered.ends_with(", $5631, $5632)"),
            "{}",
            &numbered[numbered.len() - 40..]
        );
        let anonymous = full(Placeholders::Anonymous);
        assert_eq!(anonymous.matches('?').count(), 5632);
        // The column counts agree with the column lists the rows are read back with.
        assert_eq!(
            PREDICTION_INSERT.columns,
            prediction_columns!().split(',').count()
        );
        assert_eq!(
            FEEDBACK_INSERT.columns,
            feedback_columns!().split(',').count()
        );
        // Built once: the same string comes back.
        assert!(std::ptr::eq(numbered, full(Placeholders::Numbered)));
    }

    /// The label join must start from the new feedback and find predictions through their
    /// request id and key indexes, on any log size: a plan that walks the `(model, time)`
    /// index costs a pass over the model's whole log per call (live monitoring calls it every
    /// interval).
    #[tokio::test]
    async fn the_label_join_is_driven_by_the_feedback() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("kiln.db").display());
        let store = MetaStore::connect(&url).await.unwrap();
        for (features, served_only) in [(false, false), (true, true)] {
            let sql = format!(
                "EXPLAIN QUERY PLAN {}",
                labelled_sql(features, served_only).replace('$', "?")
            );
            let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(0_i64)
                .bind("m")
                .bind(i64::MIN)
                .bind(i64::MAX)
                .bind(10_i64)
                .fetch_all(store.pool())
                .await
                .unwrap()
                .iter()
                .map(|r| r.try_get::<String, _>(3).unwrap())
                .collect();
            let text = plan.join("\n");
            assert!(!text.contains("predictions_model_time"), "{text}");
            assert!(
                text.contains("SEARCH p USING INDEX predictions_request"),
                "{text}"
            );
            assert!(
                text.contains("SEARCH p USING INDEX predictions_key"),
                "{text}"
            );
            let first_f = text.find("SEARCH f").unwrap();
            let first_p = text.find("SEARCH p").unwrap();
            assert!(first_f < first_p, "feedback is the outer loop: {text}");
        }
    }
}
