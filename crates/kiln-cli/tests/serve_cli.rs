//! `kiln serve` as a process: the admin token from `kiln init`, graceful shutdown flushing the
//! prediction log, and `kill -9` losing at most the last flush interval, with what was written
//! intact.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const CONFIG: &str = include_str!("../../../examples/bikeshare/kiln.toml");
const DATA: &[u8] = include_bytes!("../../../examples/bikeshare/data/bike-rental-dataset.csv.gz");

/// A project with bikes@1 (a small model) served as `production`.
fn served_project(extra_config: &str) -> Project {
    let p = Project::new();
    p.ok(&["init", "."]);
    p.config(&format!("{CONFIG}\n{extra_config}"));
    p.write("bikes.csv.gz", DATA);
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

fn row() -> Value {
    json!({"dteday": "2012-07-01", "season": "fall", "hr": "3pm", "holiday": "No",
           "weekday": "Sun", "workingday": "No", "weathersit": "Clear",
           "temp": 34.3, "atemp": 38.0012, "hum": 37.0, "windspeed": 19.0012})
}

async fn predict(client: &reqwest::Client, url: &str) -> String {
    let r = client
        .post(format!("{url}/v1/models/bikes/predict"))
        .json(&json!({"instances": [row()]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    b["predictions"][0]["request_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn logged_ids(p: &Project) -> (Vec<String>, Vec<kiln_store::StoredPrediction>) {
    let store = p.store().await;
    let rows = store
        .meta
        .predictions(&kiln_store::PredictionQuery {
            model: None,
            from: None,
            to: None,
            after_id: None,
            limit: 1_000_000,
        })
        .await
        .unwrap();
    (
        rows.iter().map(|r| r.record.request_id.clone()).collect(),
        rows,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_requests_and_flushes_the_whole_log() {
    // A flush interval longer than the test: only the shutdown can have written the log.
    let p = served_project("[serve.log]\nflush_interval_ms = 600000\n");
    let mut s = serve(&p);
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for _ in 0..200 {
        ids.push(predict(&client, &s.url).await);
    }
    let pid = s.child.id() as i32;
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let status = s.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let (logged, _) = logged_ids(&p).await;
    assert_eq!(
        logged, ids,
        "every acknowledged prediction is in the log, in order"
    );
    // The access log has a line per request, with its id, written before the exit.
    std::thread::sleep(Duration::from_millis(200));
    let stderr = s.stderr.lock().unwrap().join("\n");
    for id in &ids {
        let line = format!(
            "request_id={id} method=POST route=/v1/models/{{name}}/predict status=200 model=bikes version=1"
        );
        assert!(stderr.contains(&line), "no access log line for {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_at_most_the_last_flush_interval() {
    let p = served_project("");
    let flush = Duration::from_millis(1000); // the default flush_interval_ms
    let client = reqwest::Client::new();
    let mut total_lost = 0;
    let mut total_acked = 0;
    // Kill at different moments relative to the flush cycle.
    for run_ms in [1300u64, 2100, 2750] {
        let mut s = serve(&p);
        let (before, _) = logged_ids(&p).await;
        let start = Instant::now();
        let mut acked = Vec::new();
        while start.elapsed() < Duration::from_millis(run_ms) {
            let id = predict(&client, &s.url).await;
            acked.push((id, Instant::now()));
        }
        s.child.kill().unwrap(); // SIGKILL
        let killed = Instant::now();
        s.child.wait().unwrap();

        let (logged, rows) = logged_ids(&p).await;
        let logged: std::collections::HashSet<String> = logged.into_iter().collect();
        // Writing a batch takes a few milliseconds after its deadline; allow for that.
        let must_be_there = killed - flush - Duration::from_millis(250);
        for (id, at) in &acked {
            if *at < must_be_there {
                assert!(
                    logged.contains(id),
                    "{id}, acknowledged {:?} before the kill, is missing",
                    killed - *at
                );
            }
        }
        let lost = acked.iter().filter(|(id, _)| !logged.contains(id)).count();
        total_lost += lost;
        total_acked += acked.len();
        // What was written is whole: every row parses, and nothing outside the acknowledged set.
        for r in &rows {
            serde_json::from_str::<Value>(&r.record.features).unwrap();
            serde_json::from_str::<Value>(&r.record.output).unwrap();
        }
        assert!(logged.len() <= before.len() + acked.len());
        eprintln!(
            "run of {run_ms} ms: {} acknowledged, {lost} not yet written at the kill",
            acked.len()
        );
    }
    assert!(total_acked > 0 && total_lost < total_acked);
    // The store is consistent (SQLite's own check of its file; PostgreSQL keeps its files
    // itself), and the next server starts and serves.
    if p.db.is_none() {
        let db = p.path(".kiln/kiln.db");
        let out = std::process::Command::new("python3")
            .args(["-c", "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('PRAGMA integrity_check').fetchone()[0])"])
            .arg(&db)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    }
    let s = serve(&p);
    predict(&client, &s.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_writes_an_owner_only_admin_token_that_serve_requires() {
    let p = Project::new();
    let out = p.ok(&["init", "."]);
    assert!(out.stdout.contains("admin token"), "{}", out.stdout);
    let token_path = p.path(".kiln/admin.token");
    let token = std::fs::read_to_string(&token_path).unwrap();
    let token = token.trim();
    assert_eq!(token.len(), 64);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&token_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the token file is readable by its owner only");
    // A second init (forced) keeps the token: clients may hold it.
    p.ok(&["init", ".", "--force"]);
    assert_eq!(std::fs::read_to_string(&token_path).unwrap().trim(), token);

    let s = serve(&p);
    let client = reqwest::Client::new();
    // No model yet: alive, not ready, and it says why.
    let r = client
        .get(format!("{}/v2/health/ready", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("no model"));
    let reload = || client.post(format!("{}/v1/admin/reload", s.url));
    assert_eq!(reload().send().await.unwrap().status(), 401);
    assert_eq!(
        reload().bearer_auth(token).send().await.unwrap().status(),
        200
    );
}

/// `[retention]` in a server: days that ended longer ago than `compact_after` (before the
/// newest event time) are archived on the server's schedule while it serves, and `kiln
/// monitor` still counts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_archives_old_days_of_its_log_on_schedule() {
    let p = served_project(
        "[serve.log]\nflush_interval_ms = 50\n\n[retention]\ncompact_after = \"2d\"\ninterval = \"1s\"\n",
    );
    let s = serve(&p);
    let client = reqwest::Client::new();
    // Ten days, three predictions each, at noon.
    for day in 1..=10 {
        let r = client
            .post(format!("{}/v1/models/bikes/predict", s.url))
            .header("x-kiln-event-time", format!("2012-07-{day:02} 12:00:00"))
            .json(&json!({"instances": [row(), row(), row()]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // The newest is 2012-07-10 12:00: the days up to 2012-07-07 (ended before 07-08 12:00)
    // are archived, 21 rows; 07-08 to 07-10 stay.
    let deadline = Instant::now() + Duration::from_secs(30);
    let archives = loop {
        let a = p.ok(&["log", "archives", "--json"]).json();
        let list = a.as_array().unwrap().clone();
        if list.len() == 7 {
            break list;
        }
        assert!(Instant::now() < deadline, "archives: {a}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(archives.iter().all(|a| a["rows"] == 3), "{archives:?}");
    let store = p.store().await;
    assert_eq!(store.meta.prediction_count(Some("bikes")).await.unwrap(), 9);
    // The server still serves and logs; the monitor reads all 30 rows.
    predict(&client, &s.url).await;
    let report = p.ok(&["monitor", "--model", "bikes", "--json"]).json();
    let rows = report["overall"]["rows"].as_u64().unwrap();
    assert!(rows >= 30, "{report}");
    // Only one process compacts: this server holds the retention lease.
    assert!(
        store
            .meta
            .leases()
            .await
            .unwrap()
            .iter()
            .any(|l| l.name == "log-retention")
    );
    drop(s);
}
