//! The server test harness: a real store (SQLite file and artifact folder) with real trained
//! models, a real server on 127.0.0.1 with an ephemeral port, and a real HTTP client.
//!
//! Training is the slow part, so it happens once per test binary into a template home, which
//! each test copies into its own temporary folder.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use kiln_core::config::Config;
use kiln_serve::{Credentials, ServeConfig, Server};
use kiln_store::{Expect, Store, StoreLocation};
use serde_json::Value;

pub fn bikes_csv() -> std::path::PathBuf {
    manifest_dir().join("../../examples/bikeshare/data/bike-rental-dataset.csv.gz")
}
fn bikes_toml() -> std::path::PathBuf {
    manifest_dir().join("../../examples/bikeshare/kiln.toml")
}
pub const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789";
pub const API_KEY: &str = "api-key-for-tests";

pub fn config() -> Config {
    Config::load(&bikes_toml()).unwrap()
}

/// The template home: bikes@1 and bikes@2 (regressors that predict differently), workday@1
/// (a binary classifier of `workingday`), bikes-onnx@1 (scikit-learn's gradient boosting
/// imported as ONNX, from kiln-onnx's fixtures); production aliases on version 1 of each.
/// With `KILN_TEST_BACKEND=postgres` its metadata is a PostgreSQL database (named here) that
/// each test copies with `CREATE DATABASE ... TEMPLATE`.
struct Template {
    dir: tempfile::TempDir,
    db: Option<String>,
}

fn template() -> &'static Template {
    static TEMPLATE: OnceLock<Template> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut location = StoreLocation::in_home(dir.path());
        let db = kiln_store::testing::postgres_server().map(|server| {
            kiln_store::testing::TestDb::sweep(&server);
            let db = kiln_store::testing::TestDb::create(&server, None);
            location.db_url = db.url.clone();
            db.keep()
        });
        let home = dir.path().to_owned();
        std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(build_template(&home, &location))
        })
        .join()
        .unwrap();
        Template { dir, db }
    })
}

async fn build_template(home: &Path, location: &StoreLocation) {
    let store = Store::open(location).await.unwrap();
    let config = config();
    let scratch = StoreLocation::scratch_dir(home);
    std::fs::create_dir_all(&scratch).unwrap();
    kiln_data::ingest::add(
        &store,
        &config,
        &scratch,
        &kiln_data::ingest::AddOptions {
            file: bikes_csv(),
            dataset: "bikes".into(),
            time_column: None,
            target: None,
            append: false,
            allow_schema_change: false,
            source: None,
        },
        Arc::new(kiln_data::ingest::NoProgress),
    )
    .await
    .unwrap();
    let train = |overrides: &[&str]| {
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        kiln_train::spec::TrainSpec::resolve(&config.train, &overrides).unwrap()
    };
    for spec in [
        train(&["gbdt.iterations=6"]),
        train(&["gbdt.iterations=9", "seed=1"]),
        train(&[
            "gbdt.iterations=5",
            "target=workingday",
            "register=workday",
            "exclude=[\"casual\", \"registered\", \"cnt\", \"weekday\", \"holiday\"]",
        ]),
    ] {
        kiln_train::train::train(
            &store,
            &config,
            &scratch,
            &spec,
            None,
            Arc::new(kiln_train::train::Quiet),
        )
        .await
        .unwrap();
    }
    let fixtures = manifest_dir().join("../kiln-onnx/tests/fixtures");
    let schema_path = fixtures.join("bike_import_schema.json");
    let schema = kiln_train::import::ImportSchema::parse(
        &std::fs::read_to_string(&schema_path).unwrap(),
        &schema_path,
    )
    .unwrap();
    kiln_train::import::import_onnx(
        &store,
        &config,
        &scratch,
        &kiln_train::spec::TrainSpec::resolve(&config.train, &[]).unwrap(),
        kiln_train::import::ImportRequest {
            onnx: std::fs::read(fixtures.join("bike_gbr.onnx")).unwrap(),
            file_name: "bike_gbr.onnx".into(),
            schema,
            name: "bikes-onnx".into(),
        },
        Arc::new(kiln_train::train::Quiet),
    )
    .await
    .unwrap();
    for model in ["bikes", "workday", "bikes-onnx"] {
        store
            .meta
            .set_alias(model, "production", 1, Expect::Any, "tests", "tests")
            .await
            .unwrap();
    }
    store.meta.pool().close().await;
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A private copy of the template home (and of its database on PostgreSQL).
pub struct Home {
    /// Declared before `dir` so it is dropped first.
    pub db: Option<kiln_store::testing::TestDb>,
    pub dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Self {
        let template = template();
        let dir = tempfile::tempdir().unwrap();
        copy_dir(template.dir.path(), dir.path());
        let db = template.db.as_deref().map(|name| {
            let server = kiln_store::testing::postgres_server().unwrap();
            kiln_store::testing::TestDb::create(&server, Some(name))
        });
        Self { db, dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Where this home's stores are.
    pub fn location(&self) -> StoreLocation {
        let mut location = StoreLocation::in_home(self.dir.path());
        if let Some(db) = &self.db {
            location.db_url = db.url.clone();
        }
        location
    }

    pub async fn store(&self) -> Store {
        Store::open(&self.location()).await.unwrap()
    }
}

/// Settings for tests: ephemeral port, fast polling and flushing.
pub fn test_config() -> ServeConfig {
    let mut c = ServeConfig {
        addr: "127.0.0.1:0".into(),
        poll_interval_ms: 50,
        access_log: false,
        ..ServeConfig::default()
    };
    c.log.flush_interval_ms = 100;
    c
}

pub fn admin_only() -> Credentials {
    Credentials {
        admin_token: Some(ADMIN_TOKEN.into()),
        api_keys: Vec::new(),
    }
}

/// A server running in this process.
pub struct Running {
    pub url: String,
    pub home: Home,
    pub store: Store,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    pub client: reqwest::Client,
}

impl Running {
    pub async fn start(config: ServeConfig, credentials: Credentials) -> Self {
        Self::start_in(Home::new(), config, credentials).await
    }

    pub async fn start_in(home: Home, config: ServeConfig, credentials: Credentials) -> Self {
        let store = home.store().await;
        let server = Server::bind(store.clone(), config, credentials)
            .await
            .unwrap();
        let url = format!("http://{}", server.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Self {
            url,
            home,
            store,
            stop: Some(tx),
            task: Some(task),
            client: reqwest::Client::new(),
        }
    }

    /// Graceful shutdown: returns once every queued prediction is written.
    pub async fn stop(mut self) -> (Home, Store) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
        (self.home, self.store)
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value, reqwest::header::HeaderMap) {
        let r = self
            .client
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path}: body is not JSON ({e}): {text}"));
        (status, json, headers)
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

/// The first `n` rows of the bike data as JSON objects of the model's input columns (as text,
/// exactly as in the file, so the server converts them like an ingest does).
pub fn bike_rows(n: usize) -> Vec<Value> {
    let file = std::fs::File::open(bikes_csv()).unwrap();
    let mut reader = csv::Reader::from_reader(flate2::read::GzDecoder::new(file));
    let headers = reader.headers().unwrap().clone();
    reader
        .records()
        .take(n)
        .map(|r| {
            let r = r.unwrap();
            Value::Object(
                headers
                    .iter()
                    .zip(r.iter())
                    .filter(|(h, _)| !["cnt", "casual", "registered"].contains(h))
                    .map(|(h, v)| (h.to_owned(), Value::String(v.to_owned())))
                    .collect(),
            )
        })
        .collect()
}

/// One typical bike row with JSON numbers for the numeric features.
pub fn bike_row() -> Value {
    serde_json::json!({
        "dteday": "2012-07-01", "season": "fall", "hr": "3pm", "holiday": "No",
        "weekday": "Sun", "workingday": "No", "weathersit": "Clear",
        "temp": 34.3, "atemp": 38.0012, "hum": 37.0, "windspeed": 19.0012
    })
}

/// Whether an external tool needed by a test is present. Under CI (`CI` set) a missing tool
/// fails the test instead of skipping it.
pub fn tool_or_skip(name: &str, found: Option<PathBuf>) -> Option<PathBuf> {
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must provide {name} (see .ci/run)"
        );
        eprintln!("skipped: {name} is not available (.ci/run installs it)");
    }
    found
}

/// The Python with tritonclient and schemathesis (`KILN_TEST_PYTHON`, set by .ci/run).
pub fn test_python() -> Option<PathBuf> {
    tool_or_skip(
        "KILN_TEST_PYTHON (a Python with tritonclient[http] and schemathesis)",
        std::env::var_os("KILN_TEST_PYTHON").map(PathBuf::from),
    )
}

/// This crate's directory, read when the test runs: cargo sets `CARGO_MANIFEST_DIR` for test
/// processes. The compile-time value can name another checkout when a build cache is shared
/// between clones (cargo does not rebuild a test when only the clone's path changed).
pub fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
