//! The relational metadata store.
//!
//! One schema, one set of migrations, one set of queries for SQLite and PostgreSQL: queries use
//! `$N` placeholders (both engines accept them), portable types (TEXT, BIGINT, DOUBLE
//! PRECISION), and no engine-specific functions. Times are microseconds since the epoch.
//!
//! Dataset versions are immutable rows; a new version takes the next number inside a
//! transaction, and the primary key `(dataset, version)` turns a race between two writers into a
//! retry, never a lost or duplicated version.

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::Once;

use kiln_core::id::ContentId;
use kiln_core::schema::Schema;
use serde::{Deserialize, Serialize};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor, Row};

use crate::{Result, StoreError};

/// The migrations, in order. Append only: a released migration never changes.
const MIGRATIONS: [(i64, &str, &str); 11] = [
    (
        1,
        "datasets",
        include_str!("../migrations/0001_datasets.sql"),
    ),
    (2, "models", include_str!("../migrations/0002_models.sql")),
    (3, "runs", include_str!("../migrations/0003_runs.sql")),
    (
        4,
        "predictions",
        include_str!("../migrations/0004_predictions.sql"),
    ),
    (5, "alerts", include_str!("../migrations/0005_alerts.sql")),
    (
        6,
        "retrains",
        include_str!("../migrations/0006_retrains.sql"),
    ),
    (
        7,
        "pipelines",
        include_str!("../migrations/0007_pipelines.sql"),
    ),
    (
        8,
        "rollouts",
        include_str!("../migrations/0008_rollouts.sql"),
    ),
    (
        9,
        "rollout errors",
        include_str!("../migrations/0009_rollout_errors.sql"),
    ),
    (10, "leases", include_str!("../migrations/0010_leases.sql")),
    (
        11,
        "log archives",
        include_str!("../migrations/0011_log_archives.sql"),
    ),
];

/// How many migrations this build knows: the schema version of an up-to-date store.
pub(crate) const MIGRATION_COUNT: usize = MIGRATIONS.len();

/// Each SQLite connection's page cache: 256 KiB (a negative `cache_size` is in KiB; SQLite's
/// default is 2,000). A server holds five connections (the pool's four and the log's
/// appender), and as its log grows each cache fills with the pages it touched: at the default,
/// 10 MiB more memory after minutes of traffic than after the first, none of it proportional
/// to the models served (a 300 s soak: the floor of anonymous memory rose 9%; with 64 KiB
/// caches it stayed within 4%). The log appends at the right edge of its table and indexes
/// (ids and request ids only grow), so it needs few pages: 100,000 appends ran at the same rate
/// with 64 KiB and 2,000 KiB. Other queries read few rows or scan, and the operating system's
/// file cache is behind this one.
pub(crate) const SQLITE_CACHE_PRAGMA: &str = "PRAGMA cache_size = -256";

fn migrator() -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|(v, d, sql)| {
                Migration::new(
                    *v,
                    Cow::Borrowed(*d),
                    MigrationType::Simple,
                    sqlx::SqlSafeStr::into_sql_str(*sql),
                    false,
                )
            })
            .collect(),
    )
}

/// The metadata store.
#[derive(Clone, Debug)]
pub struct MetaStore {
    pool: AnyPool,
    backend: Backend,
    /// SQLite: the prediction log's appends, on a connection of their own.
    appender: Option<std::sync::Arc<crate::appender::Appender>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// A dataset: a name and the settings its versions share.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DatasetRecord {
    pub name: String,
    pub created_at: i64,
    pub time_column: Option<String>,
    pub target: Option<String>,
}

/// One stored part of a snapshot: a Parquet blob and its profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartRef {
    pub id: ContentId,
    pub rows: u64,
    pub profile_id: ContentId,
}

/// An immutable version of a dataset.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DatasetVersion {
    pub dataset: String,
    pub version: i64,
    pub snapshot_id: ContentId,
    pub parent_version: Option<i64>,
    pub mode: String,
    pub rows: u64,
    pub schema: Schema,
    pub parts: Vec<PartRef>,
    pub profile_id: ContentId,
    pub time_min: Option<String>,
    pub time_max: Option<String>,
    pub source: String,
    pub source_hash: ContentId,
    pub quarantine_id: Option<ContentId>,
    pub quarantined_rows: u64,
    pub created_at: i64,
    pub kiln_version: String,
}

/// What a writer supplies for a new version (the store picks the number and the parent).
#[derive(Clone, Debug)]
pub struct NewVersion {
    pub dataset: String,
    pub time_column: Option<String>,
    pub target: Option<String>,
    pub snapshot_id: ContentId,
    pub mode: String,
    pub rows: u64,
    pub schema: Schema,
    pub parts: Vec<PartRef>,
    pub profile_id: ContentId,
    pub time_min: Option<String>,
    pub time_max: Option<String>,
    pub source: String,
    pub source_hash: ContentId,
    pub quarantine_id: Option<ContentId>,
    pub quarantined_rows: u64,
}

static DRIVERS: Once = Once::new();

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: what.to_owned(),
        message: e.to_string(),
    }
}

/// Holds an exclusive lock on `DB-migrate.lock` beside a SQLite database file (released when
/// dropped); `None` for an in-memory database.
async fn migration_lock(url: &str) -> Result<Option<std::fs::File>> {
    let path = url
        .strip_prefix("sqlite://")
        .unwrap_or(url)
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path.starts_with(':') {
        return Ok(None);
    }
    let lock = format!("{path}-migrate.lock");
    let file = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)?;
        file.lock()?;
        Ok(file)
    })
    .await
    .map_err(|e| StoreError::Io(std::io::Error::other(e)))??;
    Ok(Some(file))
}

impl MetaStore {
    /// Connects to `url`, creating a SQLite file if needed, and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let (backend, url) = if let Some(path) = url.strip_prefix("sqlite://") {
            if let Some(parent) = std::path::Path::new(path.split('?').next().unwrap_or(path))
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
            {
                std::fs::create_dir_all(parent)?;
            }
            let sep = if path.contains('?') { '&' } else { '?' };
            let url = if path.contains("mode=") {
                url.to_owned()
            } else {
                format!("{url}{sep}mode=rwc")
            };
            (Backend::Sqlite, url)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned())
        } else {
            return Err(StoreError::BadDbUrl(url.to_owned()));
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            // An unreachable server is reported in seconds, not after sqlx's 30 s default.
            .acquire_timeout(std::time::Duration::from_secs(5))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL: readers never block the writer; busy_timeout: writers queue
                        // instead of failing; foreign keys: SQLite leaves them off by default.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute(SQLITE_CACHE_PRAGMA).await?;
                        // Checkpoint every 10,000 pages (40 MB of WAL) rather than SQLite's
                        // 1,000: the prediction log appends megabytes per second, and each
                        // checkpoint syncs the database; fewer, larger ones cost ~15% less
                        // per logged row.
                        conn.execute("PRAGMA wal_autocheckpoint = 10000").await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|source| {
                let (hint, refused) = connect_hint(&source);
                StoreError::Connect {
                    url: redact(&url),
                    source,
                    hint,
                    refused,
                }
            })?;
        // sqlx serializes migrations on PostgreSQL with an advisory lock, but not on SQLite:
        // two processes opening a new database at once (two pipeline runs, a server and a
        // command) would both create the tables. A lock file beside the database orders them.
        let _guard = match backend {
            Backend::Sqlite => migration_lock(&url).await?,
            Backend::Postgres => None,
        };
        migrator().run(&pool).await?;
        let appender = match backend {
            Backend::Sqlite => {
                use std::str::FromStr;
                let options = sqlx::sqlite::SqliteConnectOptions::from_str(&url)?;
                Some(std::sync::Arc::new(crate::appender::Appender::new(
                    options.get_filename().to_path_buf(),
                )))
            }
            Backend::Postgres => None,
        };
        Ok(Self {
            pool,
            backend,
            appender,
        })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub(crate) fn appender(&self) -> Option<&crate::appender::Appender> {
        self.appender.as_deref()
    }

    pub(crate) fn backend(&self) -> Backend {
        self.backend
    }

    /// Records that an artifact exists (idempotent).
    pub async fn record_artifact(&self, id: &ContentId, kind: &str, size: u64) -> Result<()> {
        sqlx::query(
            "INSERT INTO artifacts (id, kind, size, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id.as_str())
        .bind(kind)
        .bind(size as i64)
        .bind(kiln_core::now_micros())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    fn dataset_from_row(r: &AnyRow) -> Result<DatasetRecord> {
        Ok(DatasetRecord {
            name: r.try_get(0)?,
            created_at: r.try_get(1)?,
            time_column: r.try_get(2)?,
            target: r.try_get(3)?,
        })
    }

    pub async fn dataset(&self, name: &str) -> Result<Option<DatasetRecord>> {
        sqlx::query("SELECT name, created_at, time_column, target FROM datasets WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| Self::dataset_from_row(&r))
            .transpose()
    }

    pub async fn datasets(&self) -> Result<Vec<DatasetRecord>> {
        sqlx::query("SELECT name, created_at, time_column, target FROM datasets ORDER BY name")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(Self::dataset_from_row)
            .collect()
    }

    const VERSION_COLUMNS: &'static str = "dataset, version, snapshot_id, parent_version, mode, \
        row_count, schema_json, parts_json, profile_id, time_min, time_max, source, source_hash, \
        quarantine_id, quarantined_rows, created_at, kiln_version";

    fn version_from_row(r: &AnyRow) -> Result<DatasetVersion> {
        let id = |i: usize, what: &str| -> Result<ContentId> {
            let s: String = r.try_get(i)?;
            ContentId::from_str(&s).map_err(|e| corrupt(what, e))
        };
        let quarantine: Option<String> = r.try_get(13)?;
        Ok(DatasetVersion {
            dataset: r.try_get(0)?,
            version: r.try_get(1)?,
            snapshot_id: id(2, "snapshot id")?,
            parent_version: r.try_get(3)?,
            mode: r.try_get(4)?,
            rows: r.try_get::<i64, _>(5)? as u64,
            schema: serde_json::from_str(&r.try_get::<String, _>(6)?)
                .map_err(|e| corrupt("schema", e))?,
            parts: serde_json::from_str(&r.try_get::<String, _>(7)?)
                .map_err(|e| corrupt("parts", e))?,
            profile_id: id(8, "profile id")?,
            time_min: r.try_get(9)?,
            time_max: r.try_get(10)?,
            source: r.try_get(11)?,
            source_hash: id(12, "source hash")?,
            quarantine_id: quarantine
                .map(|s| ContentId::from_str(&s).map_err(|e| corrupt("quarantine id", e)))
                .transpose()?,
            quarantined_rows: r.try_get::<i64, _>(14)? as u64,
            created_at: r.try_get(15)?,
            kiln_version: r.try_get(16)?,
        })
    }

    /// All versions of a dataset, oldest first.
    pub async fn versions(&self, dataset: &str) -> Result<Vec<DatasetVersion>> {
        let sql = format!(
            "SELECT {} FROM dataset_versions WHERE dataset = $1 ORDER BY version",
            Self::VERSION_COLUMNS
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(dataset)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::version_from_row).collect()
    }

    /// One version, or the latest when `version` is `None`.
    pub async fn version(
        &self,
        dataset: &str,
        version: Option<i64>,
    ) -> Result<Option<DatasetVersion>> {
        let sql = match version {
            Some(_) => format!(
                "SELECT {} FROM dataset_versions WHERE dataset = $1 AND version = $2",
                Self::VERSION_COLUMNS
            ),
            None => format!(
                "SELECT {} FROM dataset_versions WHERE dataset = $1 ORDER BY version DESC LIMIT 1",
                Self::VERSION_COLUMNS
            ),
        };
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(dataset);
        if let Some(v) = version {
            q = q.bind(v);
        }
        q.fetch_optional(&self.pool)
            .await?
            .map(|r| Self::version_from_row(&r))
            .transpose()
    }

    /// Adds a version with the next number, creating the dataset on its first version.
    ///
    /// If the latest version already has `new.snapshot_id`, nothing is written and that version
    /// is returned with `false` (adding identical content is a no-op).
    pub async fn add_version(&self, new: &NewVersion) -> Result<(DatasetVersion, bool)> {
        for _attempt in 0..20 {
            match self.try_add_version(new).await {
                Ok(r) => return Ok(r),
                Err(StoreError::Db(e)) if is_unique_violation(&e) => {
                    // Another writer took the number; read again and retry.
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Conflict(format!(
            "could not add a version of `{}`: too many concurrent writers",
            new.dataset
        )))
    }

    /// A transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads first and then writes cannot
    /// wait for the lock and fails with "database is locked" under concurrent writers.
    pub(crate) async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    async fn try_add_version(&self, new: &NewVersion) -> Result<(DatasetVersion, bool)> {
        let mut tx = self.write_tx().await?;
        let latest: Option<(i64, String)> = sqlx::query(
            "SELECT version, snapshot_id FROM dataset_versions WHERE dataset = $1 \
             ORDER BY version DESC LIMIT 1",
        )
        .bind(&new.dataset)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?)))
        .transpose()?;
        if let Some((v, snap)) = &latest
            && snap == new.snapshot_id.as_str()
        {
            tx.rollback().await?;
            let existing = self.version(&new.dataset, Some(*v)).await?.ok_or_else(|| {
                StoreError::Conflict(format!("version {v} of `{}` vanished", new.dataset))
            })?;
            return Ok((existing, false));
        }
        let now = kiln_core::now_micros();
        if latest.is_none() {
            sqlx::query(
                "INSERT INTO datasets (name, created_at, time_column, target) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(&new.dataset)
            .bind(now)
            .bind(new.time_column.as_deref())
            .bind(new.target.as_deref())
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query("UPDATE datasets SET time_column = $2, target = $3 WHERE name = $1")
                .bind(&new.dataset)
                .bind(new.time_column.as_deref())
                .bind(new.target.as_deref())
                .execute(&mut *tx)
                .await?;
        }
        let version = latest.as_ref().map_or(1, |(v, _)| v + 1);
        let parent = latest.as_ref().map(|(v, _)| *v);
        let record = DatasetVersion {
            dataset: new.dataset.clone(),
            version,
            snapshot_id: new.snapshot_id.clone(),
            parent_version: parent,
            mode: new.mode.clone(),
            rows: new.rows,
            schema: new.schema.clone(),
            parts: new.parts.clone(),
            profile_id: new.profile_id.clone(),
            time_min: new.time_min.clone(),
            time_max: new.time_max.clone(),
            source: new.source.clone(),
            source_hash: new.source_hash.clone(),
            quarantine_id: new.quarantine_id.clone(),
            quarantined_rows: new.quarantined_rows,
            created_at: now,
            kiln_version: kiln_core::KILN_VERSION.to_owned(),
        };
        let sql = format!(
            "INSERT INTO dataset_versions ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
             $11, $12, $13, $14, $15, $16, $17)",
            Self::VERSION_COLUMNS
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&record.dataset)
            .bind(record.version)
            .bind(record.snapshot_id.as_str())
            .bind(record.parent_version)
            .bind(&record.mode)
            .bind(record.rows as i64)
            .bind(serde_json::to_string(&record.schema).map_err(|e| corrupt("schema", e))?)
            .bind(serde_json::to_string(&record.parts).map_err(|e| corrupt("parts", e))?)
            .bind(record.profile_id.as_str())
            .bind(record.time_min.as_deref())
            .bind(record.time_max.as_deref())
            .bind(&record.source)
            .bind(record.source_hash.as_str())
            .bind(record.quarantine_id.as_ref().map(|i| i.as_str().to_owned()))
            .bind(record.quarantined_rows as i64)
            .bind(record.created_at)
            .bind(&record.kiln_version)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((record, true))
    }
}

pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.is_unique_violation()
                || db.message().contains("UNIQUE constraint failed")
                || db.code().as_deref() == Some("23505")
        }
        _ => false,
    }
}

/// The URL without its password, for messages.
/// A hint for the usual reasons a database cannot be opened, and whether the server refused
/// what the URL names (as opposed to not being reachable).
fn connect_hint(e: &sqlx::Error) -> (Option<&'static str>, bool) {
    let code = match e {
        sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()),
        _ => None,
    };
    match code.as_deref() {
        // invalid_catalog_name
        Some("3D000") => (
            Some(
                "the database does not exist: create it (`createdb -h HOST -U USER NAME`); Kiln creates its tables, not the database",
            ),
            true,
        ),
        // invalid_password, invalid_authorization_specification
        Some("28P01") | Some("28000") => (
            Some(
                "the server refused these credentials: check the user and password in --db / KILN_DB / [store] db",
            ),
            true,
        ),
        _ => match e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => (
                Some("is the database server running, and listening on that host and port?"),
                false,
            ),
            _ => (None, false),
        },
    }
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://kiln:secret@localhost:5432/kiln"),
            "postgres://kiln:***@localhost:5432/kiln"
        );
        assert_eq!(redact("sqlite:///tmp/k.db"), "sqlite:///tmp/k.db");
    }

    /// Every SQLite connection of a store, the pool's and the log appender's, runs with the
    /// bounded page cache (SQLite's default would be -2000).
    #[tokio::test]
    async fn sqlite_connections_bound_their_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("kiln.db").display());
        let store = MetaStore::connect(&url).await.unwrap();
        let expected: i64 = SQLITE_CACHE_PRAGMA
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert!(expected < 0 && expected > -2000, "{expected}");
        // Several pool connections at once, so more than the first is checked.
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut conn = store.pool().acquire().await.unwrap();
            let (size,): (i64,) = sqlx::query_as("PRAGMA cache_size")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!(size, expected);
            held.push(conn);
        }
        let appender = store.appender().unwrap();
        appender.open_now().unwrap();
        assert_eq!(appender.cache_size().unwrap(), expected);
    }
}
