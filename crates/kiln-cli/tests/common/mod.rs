//! The test harness shared by the CLI's end-to-end tests: a temporary project folder and the
//! real `kiln` binary run in it, with no `KILN_*` variable leaking in from the environment.
//!
//! The metadata store is SQLite in the project's `.kiln/` by default; with
//! `KILN_TEST_BACKEND=postgres` each project gets a fresh PostgreSQL database instead (passed
//! to every command as `KILN_DB`), so the same tests prove both backends.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

pub struct Project {
    /// The database of this project when the suite runs on PostgreSQL. Declared before `dir`
    /// so it is dropped first.
    pub db: Option<kiln_store::testing::TestDb>,
    pub dir: tempfile::TempDir,
    /// Variables set for every command (after the `KILN_*` ones are removed).
    pub env: Vec<(String, String)>,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

pub fn finish(out: Output) -> Run {
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        !run.stderr.contains("panicked"),
        "kiln panicked:\n{}",
        run.stderr
    );
    run
}

impl Project {
    /// A project on the suite's backend.
    pub fn new() -> Self {
        let db = kiln_store::testing::postgres_server().map(|server| {
            static SWEEP: std::sync::Once = std::sync::Once::new();
            SWEEP.call_once(|| kiln_store::testing::TestDb::sweep(&server));
            kiln_store::testing::TestDb::create(&server, None)
        });
        Self {
            db,
            dir: tempfile::tempdir().unwrap(),
            env: Vec::new(),
        }
    }

    /// A project on PostgreSQL whatever the suite's backend (for tests of what only a shared
    /// server database allows, like several replicas); `None` (a skip notice) when no server
    /// is configured, a failure under CI.
    pub fn postgres() -> Option<Self> {
        let Ok(server) = std::env::var("KILN_TEST_POSTGRES_URL") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must set KILN_TEST_POSTGRES_URL (see .ci/run)"
            );
            eprintln!("skipped: KILN_TEST_POSTGRES_URL is not set");
            return None;
        };
        Some(Self {
            db: Some(kiln_store::testing::TestDb::create(&server, None)),
            dir: tempfile::tempdir().unwrap(),
            env: Vec::new(),
        })
    }

    /// A project whose metadata is the SQLite file in `.kiln/` whatever the suite's backend
    /// (for tests of that file itself).
    pub fn sqlite() -> Self {
        Self {
            db: None,
            dir: tempfile::tempdir().unwrap(),
            env: Vec::new(),
        }
    }

    /// Where `kiln` run in this project keeps its stores.
    pub fn location(&self) -> kiln_store::StoreLocation {
        let mut location = kiln_store::StoreLocation::in_home(&self.path(".kiln"));
        if let Some(db) = &self.db {
            location.db_url = db.url.clone();
        }
        location
    }

    /// Opens this project's stores (as `kiln` does).
    pub async fn store(&self) -> kiln_store::Store {
        kiln_store::Store::open(&self.location()).await.unwrap()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, content: &[u8]) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        p
    }

    pub fn config(&self, toml: &str) {
        self.write("kiln.toml", toml.as_bytes());
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
        c.current_dir(self.dir.path());
        for (k, _) in std::env::vars() {
            if k.starts_with("KILN_") {
                c.env_remove(k);
            }
        }
        if let Some(db) = &self.db {
            c.env("KILN_DB", &db.url);
        }
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        finish(self.command().args(args).output().unwrap())
    }

    pub fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert_eq!(
            r.code, 0,
            "kiln {args:?} failed:\n{}\n{}",
            r.stdout, r.stderr
        );
        r
    }

    /// Every file in the artifact store plus the metadata as `data log --json` sees it.
    pub fn store_state(&self) -> (BTreeSet<PathBuf>, String) {
        let mut files = BTreeSet::new();
        let root = self.path(".kiln/artifacts");
        if root.exists() {
            let mut stack = vec![root];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).unwrap() {
                    let p = e.unwrap().path();
                    if p.is_dir() {
                        stack.push(p);
                    } else {
                        files.insert(p);
                    }
                }
            }
        }
        let log = self.ok(&["data", "log", "--json"]).stdout;
        (files, log)
    }
}

/// Asserts `r` failed as bad input (exit 2) with `needle` in its message.
pub fn expect_input_error(r: &Run, needle: &str) {
    assert_eq!(r.code, 2, "expected exit 2:\n{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(needle),
        "stderr does not mention `{needle}`:\n{}",
        r.stderr
    );
}

/// A running `kiln serve`, killed when dropped.
pub struct Serving {
    pub child: Child,
    pub url: String,
    /// Every line the server wrote on stderr so far.
    pub stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `kiln serve` on a free loopback port and waits until it listens. The retrain
/// controller stays off (tests of automation drive it themselves).
pub fn serve(p: &Project) -> Serving {
    serve_with(p, &["--no-automation"])
}

/// `serve` with more flags.
pub fn serve_with(p: &Project, flags: &[&str]) -> Serving {
    let mut child = p
        .command()
        .args(["serve", "--addr", "127.0.0.1:0"])
        .args(flags)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            seen.lock().unwrap().push(line.clone());
            if let Some(url) = line.strip_prefix("kiln serve: listening on ") {
                let _ = tx.send(url.trim().to_owned());
            }
            assert!(!line.contains("panicked"), "{line}");
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("kiln serve did not start");
    Serving {
        child,
        url,
        stderr: lines,
    }
}

/// A program on the PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// `found`, or a skip notice; under CI (`CI` set) a missing tool fails the test instead.
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

/// The example project's kiln.toml and bundled data.
pub const EXAMPLE_CONFIG: &str = include_str!("../../../../examples/bikeshare/kiln.toml");
pub const EXAMPLE_DATA: &[u8] =
    include_bytes!("../../../../examples/bikeshare/data/bike-rental-dataset.csv.gz");

/// A project with the example's settings plus `extra_config`, the bundled data as `bikes`, and
/// bikes@1 (a small model, 5 trees) as `production`.
pub fn served_project(extra_config: &str) -> Project {
    let p = Project::new();
    p.ok(&["init", "."]);
    p.config(&format!("{EXAMPLE_CONFIG}\n{extra_config}"));
    p.write("bikes.csv.gz", EXAMPLE_DATA);
    p.ok(&["data", "add", "bikes.csv.gz", "--dataset", "bikes"]);
    p.ok(&["train", "--set", "gbdt.iterations=5"]);
    p.ok(&[
        "models",
        "alias",
        "set",
        "production",
        "bikes@1",
        "--reason",
        "test",
    ]);
    p
}
