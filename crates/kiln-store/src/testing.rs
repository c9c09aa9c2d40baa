//! Test support (feature `testing`): the metadata backend the test suites run against.
//!
//! By default every test's store is a SQLite file in its temporary folder. With
//! `KILN_TEST_BACKEND=postgres`, each test gets a database of its own on the server named by
//! `KILN_TEST_POSTGRES_URL` (`.ci/run` starts a throwaway cluster and runs the whole suite a
//! second time that way), created empty or as a copy of a template, and dropped afterwards.

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
fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("test runtime")
            .block_on(f())
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
        blocking(move || {
            Box::pin(async move {
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
            })
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
        blocking(move || {
            Box::pin(async move {
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
            })
        });
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        blocking(move || {
            Box::pin(async move {
                if let Ok(mut conn) = PgConnection::connect(&server).await {
                    let _ = drop_database(&name).execute(&mut conn).await;
                }
            })
        });
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
