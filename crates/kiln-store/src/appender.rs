//! The prediction log's appends on SQLite, through a connection of their own.
//!
//! Everything else in the store goes through sqlx. The log's appends do not, on SQLite: a
//! server logs every prediction, tens of thousands of rows a second, and through sqlx's `Any`
//! layer each row's values were copied into `AnyValue`s, converted again for SQLite, and
//! handed to sqlx's worker thread, which cost as much CPU as SQLite's own inserts. Here one
//! prepared single-row INSERT is bound straight from the records and stepped once per row,
//! in one `BEGIN IMMEDIATE` transaction per batch, with ids reserved from the same counter
//! row as on the sqlx path (migration 0004), so readers see no difference.
//!
//! rusqlite links the same `libsqlite3-sys` as sqlx (cargo builds one crate that links
//! `sqlite3`), so the process has one SQLite library, whose file locks both connections'
//! writes share: two copies of SQLite in one process would not see each other's POSIX locks.
//! The connection is opened when a server's log writer starts (`MetaStore::prepare_appends`),
//! or else on the first append (a command that never logs never opens it), and kept; a failed
//! append drops it, and the next opens a new one.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};

use crate::predictions::{
    PredictionRecord, RESERVE_IDS, SQLITE_PREDICTION_INSERT, missing_counter,
};
use crate::{Result, StoreError};

/// How long an append waits for another connection's write lock (as the pool's connections).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct Appender {
    path: PathBuf,
    conn: Mutex<Option<Connection>>,
}

impl std::fmt::Debug for Appender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appender")
            .field("path", &self.path)
            .finish()
    }
}

impl Appender {
    /// An appender for the database file at `path` (which the pool has created and migrated).
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            conn: Mutex::new(None),
        }
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Per connection, as the pool's (see `MetaStore::connect`); WAL is the file's mode.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(crate::meta::SQLITE_CACHE_PRAGMA)?;
        conn.pragma_update(None, "wal_autocheckpoint", 10_000)?;
        Ok(conn)
    }

    /// Opens the connection (if it is not open) and compiles the insert, so that the first
    /// append pays for neither: a server's log writer calls it when it starts. Blocks the
    /// thread.
    pub(crate) fn open_now(&self) -> Result<()> {
        let mut slot = self.slot();
        self.connection(&mut slot)?
            .prepare_cached(SQLITE_PREDICTION_INSERT)?;
        Ok(())
    }

    /// The connection's slot. A panic while holding the lock left at worst an open
    /// transaction, which dropping the connection rolls back: take the slot either way.
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Connection>> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The open connection in `slot`, opened if there is none.
    fn connection<'a>(
        &self,
        slot: &'a mut Option<Connection>,
    ) -> rusqlite::Result<&'a mut Connection> {
        Ok(match slot {
            Some(c) => c,
            None => slot.insert(self.open()?),
        })
    }

    /// The connection's `cache_size` (opening it if needed), for tests.
    #[cfg(test)]
    pub(crate) fn cache_size(&self) -> rusqlite::Result<i64> {
        let mut slot = self.slot();
        self.connection(&mut slot)?
            .query_row("PRAGMA cache_size", [], |r| r.get(0))
    }

    /// Appends `rows` in one transaction; returns how many were written. Blocks the thread.
    pub(crate) fn append(&self, rows: &[PredictionRecord]) -> Result<u64> {
        let mut slot = self.slot();
        let written = write(self.connection(&mut slot)?, rows);
        if written.is_err() {
            // Whatever state the connection is in, the next append starts from a new one.
            *slot = None;
        }
        written
    }
}

fn write(conn: &mut Connection, rows: &[PredictionRecord]) -> Result<u64> {
    let n = i64::try_from(rows.len()).map_err(|_| StoreError::Corrupt {
        what: "prediction log".into(),
        message: "a batch of more than 2^63 rows".into(),
    })?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let last: i64 = tx
        .query_row(RESERVE_IDS, params![n, "predictions"], |r| r.get(0))
        .map_err(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => missing_counter("predictions"),
            e => e.into(),
        })?;
    let mut id = last - n + 1;
    let mut written = 0u64;
    {
        let mut insert = tx.prepare_cached(SQLITE_PREDICTION_INSERT)?;
        for r in rows {
            written += insert.execute(params![
                id,
                r.request_id,
                r.key,
                r.model,
                r.version,
                r.alias,
                r.time,
                r.features,
                r.output,
                r.latency_us,
                r.flags,
            ])? as u64;
            id += 1;
        }
    }
    tx.commit()?;
    Ok(written)
}
