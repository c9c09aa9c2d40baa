//! `kiln serve` as a process: the admin token from `kiln init`, graceful shutdown flushing the
//! prediction log, and `kill -9` losing at most the last flush interval, with what was written
//! intact.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

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
                    "{id}, acknowledged {:?} before the kill, is missing; the server said:\n{}",
                    killed - *at,
                    s.stderr.lock().unwrap().join("\n")
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

/// Integrity: production moves to a version whose model file was tampered with. The server
/// refuses to load it, naming the expected and found hash, keeps serving the version it
/// served, and raises the `model_load` alert; a move to a good version resolves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_model_is_refused_and_the_previous_version_keeps_serving() {
    let p = served_project("[serve]\npoll_interval_ms = 100\n");
    p.ok(&["train", "--set", "gbdt.iterations=6"]);
    let v2 = p.ok(&["models", "show", "bikes@2", "--json"]).json();
    let artifact = v2["version"]["artifact_id"].as_str().unwrap().to_owned();
    let file = p
        .path(".kiln/artifacts/blobs")
        .join(&artifact[..2])
        .join(&artifact);
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&file, &bytes).unwrap();

    let s = serve(&p);
    let client = reqwest::Client::new();
    let version = |body: &Value| body["model_version"].as_i64().or(body["version"].as_i64());
    let served = || async {
        let r = client
            .post(format!("{}/v1/models/bikes/predict", s.url))
            .json(&json!({"instances": [row()]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()
    };
    assert_eq!(version(&served().await), Some(1));
    p.ok(&[
        "models",
        "alias",
        "set",
        "production",
        "bikes@2",
        "--reason",
        "test",
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let alert = loop {
        let firing = p.ok(&["alerts", "list", "--firing", "--json"]).json();
        if let Some(a) = firing
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["rule"] == "model_load")
        {
            break a.clone();
        }
        assert!(Instant::now() < deadline, "no model_load alert: {firing}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let message = alert["message"].as_str().unwrap();
    assert_eq!(alert["version"], 2);
    assert_eq!(alert["severity"], "critical");
    assert!(
        message.contains(&artifact) && message.contains("tampered"),
        "{message}"
    );
    // Still answering, with the version it served before.
    for _ in 0..5 {
        assert_eq!(version(&served().await), Some(1));
    }
    let log = s.stderr.lock().unwrap().join("\n");
    assert!(
        log.contains("model not loaded") && log.contains(&artifact),
        "{log}"
    );
    drop(log);

    // Production moved back to the version that loads: every alias serves what the registry
    // names again, and the alert resolves.
    p.ok(&[
        "models",
        "alias",
        "set",
        "production",
        "bikes@1",
        "--reason",
        "back",
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let firing = p.ok(&["alerts", "list", "--firing", "--json"]).json();
        if firing
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["rule"] != "model_load")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "model_load still firing: {firing}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let history = p.ok(&["alerts", "list", "--json"]).json();
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["rule"] == "model_load" && a["state"] == "resolved"),
        "{history}"
    );
}

/// HTTPS: `kiln serve --tls-cert --tls-key` with a self-signed certificate. A client that
/// trusts it gets answers; one that does not, or that speaks plain HTTP, gets none; a key that
/// does not fit the certificate stops the server before it listens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_self_signed_certificate() {
    let (Some(openssl), Some(curl)) = (
        tool_or_skip("openssl", which("openssl")),
        tool_or_skip("curl", which("curl")),
    ) else {
        return;
    };
    let p = served_project("");
    let make = |name: &str| {
        let out = std::process::Command::new(&openssl)
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1"])
            .arg("-keyout")
            .arg(p.path(&format!("{name}-key.pem")))
            .arg("-out")
            .arg(p.path(&format!("{name}-cert.pem")))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    make("a");
    make("b");
    let (cert, key) = (p.path("a-cert.pem"), p.path("a-key.pem"));
    let s = serve_with(
        &p,
        &[
            "--no-automation",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(s.url.starts_with("https://127.0.0.1:"), "{}", s.url);
    let curl_run = |args: &[&str]| {
        std::process::Command::new(&curl)
            .args(["-sS", "--max-time", "10"])
            .args(args)
            .output()
            .unwrap()
    };
    let body = json!({"instances": [row()]}).to_string();
    let ok = curl_run(&[
        "--cacert",
        cert.to_str().unwrap(),
        "-H",
        "content-type: application/json",
        "-d",
        &body,
        &format!("{}/v1/models/bikes/predict", s.url),
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let answer: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert!(
        answer["predictions"][0]["value"].as_f64().is_some(),
        "{answer}"
    );
    // Not trusted: the client refuses the certificate (curl's exit 60).
    let untrusted = curl_run(&[&format!("{}/v2/health/live", s.url)]);
    assert_eq!(untrusted.status.code(), Some(60), "{untrusted:?}");
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = curl_run(&[&format!(
        "{}/v2/health/live",
        s.url.replace("https", "http")
    )]);
    assert!(!plain.status.success(), "{plain:?}");
    // The server still serves after those.
    let again = curl_run(&[
        "--cacert",
        cert.to_str().unwrap(),
        &format!("{}/v2/health/ready", s.url),
    ]);
    assert!(again.status.success(), "{again:?}");
    drop(s);

    // A key that belongs to another certificate: a clear error, exit 2, before listening.
    let r = p.run(&[
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        p.path("b-key.pem").to_str().unwrap(),
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("b-key.pem") && r.stderr.contains("does not go with"),
        "{}",
        r.stderr
    );
    let r = p.run(&[
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}
