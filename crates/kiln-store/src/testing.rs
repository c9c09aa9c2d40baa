//! Test support (feature `testing`): the metadata backend the test suites run against.
//!
//! By default every test's store is a SQLite file in its temporary folder. With
//! `KILN_TEST_BACKEND=postgres`, each test gets a database of its own on the server named by
//! `KILN_TEST_POSTGRES_URL` (`.ci/run` starts a throwaway cluster and runs the whole suite a
//! second time that way), created empty or as a copy of a template, and dropped afterwards.
//!
//! The S3-compatible server the `s3://` artifact store's tests use is named by `KILN_TEST_S3_*`
//! (`.ci/seaweedfs.sh` starts one): [`S3Server::or_skip`].

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// The server URL when the suite runs on PostgreSQL. Panics on a misconfiguration, so a CI run
/// meant for PostgreSQL can never quietly fall back to SQLite.
pub fn postgres_server() -> Option<String> {
    match std::env::var("KILN_TEST_BACKEND").as_deref() {
        Err(_) | Ok("") | Ok("sqlite") => None,
        Ok("postgres") => Some(std::env::var("KILN_TEST_POSTGRES_URL").unwrap_or_else(|_| {
            panic!("KILN_TEST_BACKEND=postgres needs KILN_TEST_POSTGRES_URL (see .ci/run)")
        })),
        Ok(other) => panic!("KILN_TEST_BACKEND must be sqlite or postgres, not {other}"),
    }
}

/// A PostgreSQL database of one test, dropped (with any connection still open) when dropped.
#[derive(Debug)]
pub struct TestDb {
    /// The URL to give Kiln (`--db`, `KILN_DB` or `StoreLocation::db_url`).
    pub url: String,
    server: String,
    name: String,
}

/// The URL of database `name` on the server at `server`.
fn with_database(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (server, String::new()),
    };
    // postgres://user@host:port/db: replace the path after the authority.
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    format!("{}/{name}{query}", &base[..authority_end])
}

/// `name` as a quoted SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The statement that drops database `name`, whoever is connected to it.
fn drop_database(
    name: &str,
) -> sqlx::query::Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        ident(name)
    )))
}

/// Runs `f` on a runtime of its own (callable from plain and from async tests alike).
fn blocking<F>(f: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("test runtime")
            .block_on(f)
    })
    .join()
    .expect("test database thread")
}

async fn admin(server: &str) -> PgConnection {
    PgConnection::connect(server)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL server {server}: {e}"))
}

impl TestDb {
    /// A new empty database on `server` (a copy of `template` when given).
    pub fn create(server: &str, template: Option<&str>) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "kiln_t{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        );
        let sql = match template {
            Some(t) => format!("CREATE DATABASE {} TEMPLATE {}", ident(&name), ident(t)),
            None => format!("CREATE DATABASE {}", ident(&name)),
        };
        let srv = server.to_owned();
        blocking(async move {
            let mut conn = admin(&srv).await;
            // Copies of one template may overlap; PostgreSQL refuses a copy while another
            // session is connected to the template, so retry briefly.
            let mut tries = 0;
            loop {
                match sqlx::query(AssertSqlSafe(sql.clone()))
                    .execute(&mut conn)
                    .await
                {
                    Ok(_) => break,
                    Err(e) if tries < 50 && e.to_string().contains("being accessed") => {
                        tries += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                    Err(e) => panic!("{sql}: {e}"),
                }
            }
        });
        Self {
            url: with_database(server, &name),
            server: server.to_owned(),
            name,
        }
    }

    /// The database's name (usable as a `template` for further copies).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Keeps the database past this value's life (a template shared by a whole test binary).
    /// Databases kept by processes that have exited are dropped by the next `sweep`.
    pub fn keep(self) -> String {
        let name = self.name.clone();
        std::mem::forget(self);
        name
    }

    /// Drops the databases that test processes no longer running left behind.
    pub fn sweep(server: &str) {
        let srv = server.to_owned();
        blocking(async move {
            let mut conn = admin(&srv).await;
            let names: Vec<(String,)> =
                sqlx::query_as("SELECT datname FROM pg_database WHERE datname LIKE 'kiln_t%'")
                    .fetch_all(&mut conn)
                    .await
                    .unwrap_or_default();
            for (name,) in names {
                let pid = name
                    .strip_prefix("kiln_t")
                    .and_then(|r| r.split('_').next())
                    .and_then(|p| p.parse::<u32>().ok());
                let alive =
                    pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
                if !alive {
                    let _ = drop_database(&name).execute(&mut conn).await;
                }
            }
        });
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        blocking(async move {
            if let Ok(mut conn) = PgConnection::connect(&server).await {
                let _ = drop_database(&name).execute(&mut conn).await;
            }
        });
    }
}

/// A name no earlier run used (servers and databases outlive a test run).
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    )
}

/// An S3-compatible server for the `s3://` artifact store's tests.
#[derive(Clone, Debug)]
pub struct S3Server {
    pub endpoint: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl S3Server {
    /// The server named by `KILN_TEST_S3_ENDPOINT`, `_BUCKET`, `_ACCESS_KEY_ID` and
    /// `_SECRET_ACCESS_KEY`, or a skip notice; under CI (`CI` set) a missing server fails the
    /// test instead.
    pub fn or_skip() -> Option<Self> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let Some(endpoint) = var("KILN_TEST_S3_ENDPOINT") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must provide an S3 server in KILN_TEST_S3_ENDPOINT (see .ci/run)"
            );
            eprintln!("skipped: KILN_TEST_S3_ENDPOINT is not set (.ci/seaweedfs.sh starts one)");
            return None;
        };
        let need = |k: &str| var(k).unwrap_or_else(|| panic!("{k} must be set with the endpoint"));
        Some(Self {
            endpoint,
            bucket: need("KILN_TEST_S3_BUCKET"),
            access_key_id: need("KILN_TEST_S3_ACCESS_KEY_ID"),
            secret_access_key: need("KILN_TEST_S3_SECRET_ACCESS_KEY"),
        })
    }

    /// The `AWS_*` variables that point `kiln` at this server.
    pub fn aws_env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", self.access_key_id.as_str()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_access_key.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// The same settings for [`crate::ArtifactStore::open_with`].
    pub fn options(&self) -> crate::S3Options {
        crate::S3Options {
            endpoint: Some(self.endpoint.clone()),
            region: None,
            allow_http: Some(true),
            access_key_id: Some(self.access_key_id.clone()),
            secret_access_key: Some(self.secret_access_key.clone()),
        }
    }

    /// The bucket under `prefix` through object_store directly, bypassing Kiln.
    pub fn raw(&self, prefix: &str) -> std::sync::Arc<dyn object_store::ObjectStore> {
        let s3 = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(&self.bucket)
            .with_access_key_id(&self.access_key_id)
            .with_secret_access_key(&self.secret_access_key)
            .build()
            .expect("an S3 client for the test server");
        std::sync::Arc::new(object_store::prefix::PrefixStore::new(
            s3,
            object_store::path::Path::from(prefix),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_urls_keep_credentials_and_options() {
        assert_eq!(
            with_database("postgres://kiln@127.0.0.1:5432/kiln_test", "x"),
            "postgres://kiln@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "y"),
            "postgres://u:p@h/y?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "z"), "postgres://h:1/z");
    }
}
