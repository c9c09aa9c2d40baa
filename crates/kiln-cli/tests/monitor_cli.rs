//! Monitoring end to end: a model trained on 2011's bike rentals serves 2012's hours, replayed
//! in simulated time (each day's hours in one request carrying the day as its event time, the
//! counts sent back as feedback). 2012 drifted (more riders, a different season mix), so the
//! server's live monitoring must fire the drift and performance alerts, record them, publish
//! them as metrics and show them on the dashboard (checked in headless Chromium); and
//! `kiln monitor report` over the stored log must show why.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Map, Value, json};

const CONFIG: &str = include_str!("../../../examples/bikeshare/kiln.toml");
const DATA: &[u8] = include_bytes!("../../../examples/bikeshare/data/bike-rental-dataset.csv.gz");

/// One JSON row of the bike data.
type Row = Map<String, Value>;

/// The bundled rows split by year: 2011 as CSV text, 2012 as (day, rows) in time order.
fn years() -> (String, Vec<(String, Vec<Row>)>) {
    let mut text = String::new();
    flate2::read::GzDecoder::new(DATA)
        .read_to_string(&mut text)
        .unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().to_owned();
    let mut y2011 = format!("{header}\n");
    let mut y2012: std::collections::BTreeMap<String, Vec<(u32, Row)>> = Default::default();
    let names: Vec<&str> = header.split(',').collect();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    for (line, rec) in text.lines().skip(1).zip(reader.records()) {
        let rec = rec.unwrap();
        if rec[0] < *"2012" {
            y2011.push_str(line);
            y2011.push('\n');
            continue;
        }
        let mut row = Map::new();
        for (name, value) in names.iter().zip(rec.iter()) {
            let v = match *name {
                _ if value.is_empty() => Value::Null,
                "temp" | "atemp" | "hum" | "windspeed" | "casual" | "registered" | "cnt" => {
                    json!(value.parse::<f64>().unwrap())
                }
                _ => json!(value),
            };
            row.insert((*name).to_owned(), v);
        }
        let hour = rec[2]
            .trim_end_matches(['a', 'p', 'm'])
            .parse::<u32>()
            .unwrap()
            % 12
            + if rec[2].ends_with("pm") { 12 } else { 0 };
        y2012
            .entry(rec[0].to_owned())
            .or_default()
            .push((hour, row));
    }
    let days = y2012
        .into_iter()
        .map(|(day, mut rows)| {
            rows.sort_by_key(|(h, _)| *h);
            (day, rows.into_iter().map(|(_, r)| r).collect())
        })
        .collect();
    (y2011, days)
}

/// Two JSON documents equal up to float rounding (relative 1e-9).
fn assert_close(a: &Value, b: &Value, at: &str) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!((x - y).abs() <= 1e-9 * x.abs().max(1.0), "{at}: {x} vs {y}");
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                assert_close(x, y, &format!("{at}[{i}]"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(
                x.keys().collect::<Vec<_>>(),
                y.keys().collect::<Vec<_>>(),
                "{at}"
            );
            for (k, x) in x {
                assert_close(x, &y[k], &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

/// What the webhook received so far.
fn posted_now(posted: &std::sync::Arc<std::sync::Mutex<Vec<Value>>>) -> Vec<Value> {
    posted.lock().unwrap().clone()
}

async fn get(client: &reqwest::Client, url: &str) -> reqwest::Response {
    let r = client.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    r
}

/// What a replayed project's model predicts and learns from.
struct Task {
    /// Lines replacing the example's `[train]` target settings (for another target).
    train: &'static str,
    /// Each 2012 row's label, sent back as feedback.
    label: fn(&Row) -> Value,
    /// Columns left out of the requests (the label and what leaks it).
    not_sent: &'static [&'static str],
    /// More of `[monitor]`.
    monitor: String,
}

/// A webhook receiver on loopback: answers every POST with 200 and keeps its JSON body.
async fn webhook() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = bodies.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // One request: headers, then Content-Length bytes of body.
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        if buf.len() >= end + 4 + length {
                            let body = buf[end + 4..end + 4 + length].to_vec();
                            buf.drain(..end + 4 + length);
                            seen.lock()
                                .unwrap()
                                .push(serde_json::from_slice(&body).unwrap());
                            let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                            if conn.write_all(ok).await.is_err() {
                                return;
                            }
                            continue;
                        }
                    }
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (url, bodies)
}

/// 2011's rows, with `demand` = `high` (150 rides or more in the hour) or `low`.
fn with_demand(csv_text: &str) -> String {
    let mut out = String::new();
    for (i, line) in csv_text.lines().enumerate() {
        let demand = if i == 0 {
            "demand"
        } else if line.rsplit(',').next().unwrap().parse::<f64>().unwrap() >= 150.0 {
            "high"
        } else {
            "low"
        };
        out.push_str(&format!("{line},{demand}\n"));
    }
    out
}

/// Trains bikes@1 on 2011 (validated on its last quarter), serves it, and replays 2012 a day
/// per request with the day as event time and every row's label as feedback. The replay
/// pauses at each 30-day window's end long enough for the server to flush the log (50 ms)
/// and judge the window (every 100 ms), as a real-time server would judge every window.
/// Returns once the server's windows hold every row and label.
async fn replay(task: &Task) -> (Project, Serving, reqwest::Client) {
    let (y2011, days) = years();
    let p = Project::new();
    p.ok(&["init", "."]);
    // The example's own [monitor] gives way to this test's.
    let example_monitor = "[monitor]\nwindow = \"7d\"\ninterval = \"1s\"\n";
    assert!(CONFIG.contains(example_monitor));
    let config = CONFIG
        .replace(example_monitor, "")
        .replace("cutoff = \"2012-07-01\"", "cutoff = \"2011-10-01\"")
        .replace("exclude = [\"casual\", \"registered\"]", task.train);
    p.config(&format!(
        "{config}\n[serve.log]\nflush_interval_ms = 50\n\n[monitor]\nwindow = \"30d\"\ninterval = \"100ms\"\n{}\n",
        task.monitor
    ));
    let data = if task.train.contains("demand") {
        with_demand(&y2011)
    } else {
        y2011
    };
    p.write("y2011.csv", data.as_bytes());
    p.ok(&["data", "add", "y2011.csv", "--dataset", "bikes"]);
    p.ok(&["train", "--set", "gbdt.iterations=30"]);
    p.ok(&[
        "models",
        "alias",
        "set",
        "production",
        "bikes@1",
        "--reason",
        "test",
    ]);
    let s = serve(&p);
    let client = reqwest::Client::new();

    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
    let window_of = |day: &str| {
        let d = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap();
        d.signed_duration_since(epoch).num_days().div_euclid(30)
    };
    let mut sent = 0;
    let mut window = window_of(&days[0].0);
    for (day, rows) in &days {
        if window_of(day) != window {
            window = window_of(day);
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        let inputs: Vec<Value> = rows
            .iter()
            .map(|r| {
                let mut r = r.clone();
                for label in task.not_sent {
                    r.remove(*label);
                }
                Value::Object(r)
            })
            .collect();
        let r = client
            .post(format!("{}/v1/models/bikes/predict", s.url))
            .header("x-kiln-event-time", format!("{day} 12:00:00"))
            .json(&json!({ "instances": inputs }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        let feedback: Vec<Value> = body["predictions"]
            .as_array()
            .unwrap()
            .iter()
            .zip(rows)
            .map(|(p, r)| json!({"request_id": p["request_id"], "label": (task.label)(r)}))
            .collect();
        let r = client
            .post(format!("{}/v1/feedback", s.url))
            .json(&feedback)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        sent += rows.len();
    }
    assert_eq!(sent, 8734);

    // Wait until the server's windows hold every row and label, then one more judgement.
    let deadline = Instant::now() + Duration::from_secs(60);
    let monitored = |doc: &Value| -> (u64, u64) {
        let m = &doc["models"][0];
        let windows = m["history"]
            .as_array()
            .into_iter()
            .flatten()
            .chain([&m["current"]]);
        windows.fold((0, 0), |(r, l), w| {
            (
                r + w["rows"].as_u64().unwrap_or(0),
                l + w["labelled_rows"].as_u64().unwrap_or(0),
            )
        })
    };
    loop {
        let doc: Value = get(&client, &format!("{}/v1/monitor", s.url))
            .await
            .json()
            .await
            .unwrap();
        if monitored(&doc) == (8734, 8734) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "windows hold {:?} rows and labels",
            monitored(&doc)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    (p, s, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_2012_against_a_2011_model_fires_drift_and_performance_alerts() {
    let (hook, posted) = webhook().await;
    let (p, s, client) = replay(&Task {
        train: "exclude = [\"casual\", \"registered\"]",
        label: |r| r["cnt"].clone(),
        not_sent: &["casual", "registered", "cnt"],
        monitor: format!("webhook = \"{hook}\""),
    })
    .await;
    // Every transition was posted to the webhook, as JSON naming the rule and why.
    let posted_handle = posted.clone();
    let posted = posted.lock().unwrap().clone();
    let fired: Vec<&Value> = posted.iter().filter(|b| b["state"] == "firing").collect();
    for rule in ["data_drift", "realized_performance"] {
        let b = fired
            .iter()
            .find(|b| b["rule"] == rule)
            .unwrap_or_else(|| panic!("{rule} was not posted: {posted:?}"));
        assert_eq!(b["model"], "bikes");
        assert_eq!(b["version"], 1);
        assert!(b["message"].as_str().unwrap().len() > 10, "{b}");
        assert!(b["alert_id"].as_i64().is_some(), "{b}");
    }
    let firing = p.ok(&["alerts", "list", "--firing", "--json"]).json();
    let rule = |name: &str| {
        firing
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["rule"] == name)
            .unwrap_or_else(|| panic!("{name} is not firing: {firing}"))
            .clone()
    };
    let drift = rule("data_drift");
    assert_eq!(drift["state"], "firing");
    assert_eq!(drift["severity"], "warning");
    // The message names the drifted inputs; the season mix is one of them.
    let why = drift["message"].as_str().unwrap();
    assert!(
        why.contains("season") && why.contains("inputs drifted"),
        "{why}"
    );
    assert!(drift["value"].as_f64().unwrap() >= 0.5);
    let perf = rule("realized_performance");
    assert_eq!(perf["severity"], "critical");
    // 2012 has many more riders than 2011: the realized MAE is far above 1.5 × validation's.
    assert!(perf["value"].as_f64().unwrap() > perf["threshold"].as_f64().unwrap());

    // Metrics: the same state, for Prometheus.
    let metrics = get(&client, &format!("{}/metrics", s.url))
        .await
        .text()
        .await
        .unwrap();
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{series} missing"))
    };
    assert_eq!(
        value("kiln_alerts_firing{model=\"bikes\",rule=\"data_drift\",severity=\"warning\"}"),
        1.0
    );
    // The realized MAE breached the limit in most windows: fired at least once.
    assert!(
        value(
            "kiln_alert_transitions_total{model=\"bikes\",rule=\"realized_performance\",state=\"firing\"}"
        ) >= 1.0
    );
    let share = metrics
        .lines()
        .find(|l| l.starts_with("kiln_drift_share{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .expect("kiln_drift_share");
    assert!((0.0..=1.0).contains(&share));
    assert!(
        metrics
            .contains("kiln_performance_reference{metric=\"mae\",model=\"bikes\",version=\"1\"}")
    );

    // The dashboard's document: the closed 30-day windows of 2012 and the current one.
    let doc: Value = get(&client, &format!("{}/v1/monitor", s.url))
        .await
        .json()
        .await
        .unwrap();
    let m = &doc["models"][0];
    assert_eq!(m["model"], "bikes");
    assert_eq!(m["aliases"], json!(["production"]));
    let history = m["history"].as_array().unwrap().len();
    assert!(history >= 12, "{history} closed windows");
    assert!(m["current"]["rows"].as_u64().unwrap() > 0);
    assert!(!doc["alerts"].as_array().unwrap().is_empty());

    // The page itself, in a real browser.
    if let Some(chromium) = tool_or_skip("chromium", which("chromium")) {
        let shot = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
        let _ = std::fs::remove_file(&shot);
        let browse = |extra: &[String]| {
            std::process::Command::new(&chromium)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--hide-scrollbars",
                ])
                .args(["--virtual-time-budget=5000", "--window-size=1280,2400"])
                .args(extra)
                .arg(format!("{}/", s.url))
                .output()
                .unwrap()
        };
        let dom = String::from_utf8_lossy(&browse(&["--dump-dom".into()]).stdout).into_owned();
        for needle in [
            "bikes @ version 1",
            "production",
            "season",
            "Drift per input over time",
            "data_drift",
            "realized",
        ] {
            assert!(
                dom.contains(needle),
                "the dashboard lacks {needle:?}:\n{}",
                &dom[..dom.len().min(3000)]
            );
        }
        // The status line says the page reached the server (not "cannot reach the server").
        assert!(dom.contains("live monitoring on"), "{dom}");
        // Lines drawn: realized, estimated and reference performance.
        assert!(dom.matches("<path").count() >= 3, "{dom}");
        browse(&[format!("--screenshot={}", shot.display())]);
        let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
        assert!(
            size > 10_000,
            "screenshot {} is {size} bytes",
            shot.display()
        );
        eprintln!("dashboard screenshot: {}", shot.display());
    }

    // On demand, over the stored log: the report says why.
    let html = p.path("report.html");
    let report = p
        .ok(&[
            "monitor",
            "report",
            "--model",
            "bikes",
            "--from",
            "2012-01-01",
            "--to",
            "2013-01-01",
            "--window",
            "30d",
            "--html",
            html.to_str().unwrap(),
            "--json",
        ])
        .json();
    assert_eq!(report["overall"]["rows"], 8734);
    assert_eq!(report["overall"]["labelled_rows"], 8734);
    assert!(report["windows"].as_array().unwrap().len() >= 12);
    let drifted: Vec<&str> = report["overall"]["drift"]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["drift"]["drifted"] == true)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        drifted.contains(&"season") && drifted.contains(&"temp"),
        "{drifted:?}"
    );
    let events = report["alerts"].as_array().unwrap();
    for name in ["data_drift", "realized_performance"] {
        assert!(
            events
                .iter()
                .any(|e| e["rule"] == name && e["state"] == "firing"),
            "{name}: {events:?}"
        );
    }
    // The server summarized the rows it scored, not their logged JSON: its windows must equal
    // the same windows read back from the log.
    let live: Value = get(&client, &format!("{}/v1/monitor", s.url))
        .await
        .json()
        .await
        .unwrap();
    let mut compared = 0;
    for w in live["models"][0]["history"].as_array().unwrap() {
        let stored = report["windows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["start"] == w["start"])
            .unwrap_or_else(|| panic!("no stored window starts at {}", w["start"]));
        for field in [
            "rows",
            "drift",
            "prediction_drift",
            "target_drift",
            "latency_p99_ms",
        ] {
            assert_eq!(
                w[field], stored[field],
                "{field} of the window at {}",
                w["start"]
            );
        }
        assert_close(&w["realized"], &stored["realized"], "realized");
        compared += 1;
    }
    assert!(compared >= 12, "{compared}");

    // Count windows: every 1,000 predictions in log order.
    let counted = p
        .ok(&["monitor", "--model", "bikes", "--every", "1000", "--json"])
        .json();
    let sizes: Vec<u64> = counted["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["rows"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, [1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 734]);
    assert_eq!(counted["overall"]["labelled_rows"], 8734);

    // Windows merge exactly: the whole range read as one window gives the same statistics as
    // the merge of its 30-day windows.
    let whole = p
        .ok(&[
            "monitor",
            "--model",
            "bikes",
            "--from",
            "2012-01-01",
            "--to",
            "2013-01-01",
            "--json",
        ])
        .json();
    assert_eq!(whole["windows"].as_array().unwrap().len(), 1);
    for field in ["drift", "prediction_drift", "target_drift"] {
        let (a, b) = (&whole["windows"][0][field], &report["overall"][field]);
        assert_eq!(a.to_string(), b.to_string(), "{field}");
    }
    // Sums of errors differ only by the order of additions.
    assert_close(
        &whole["windows"][0]["realized"],
        &report["overall"]["realized"],
        "realized",
    );
    // The loss estimate samples large batches: close, not equal.
    for metric in ["mae", "rmse"] {
        let a = whole["windows"][0]["estimated"][metric].as_f64().unwrap();
        let b = report["overall"]["estimated"][metric].as_f64().unwrap();
        assert!((a - b).abs() < 0.1 * a, "estimated {metric}: {a} vs {b}");
    }
    // Retention: days that ended 90 days before the newest event time move to Parquet
    // archives in the artifact store; `kiln monitor` reads them back, labels included, to the
    // same report.
    let store = p.store().await;
    let first = store
        .meta
        .predictions(&kiln_store::PredictionQuery {
            model: Some("bikes".into()),
            from: Some(
                chrono::NaiveDate::from_ymd_opt(2012, 1, 1)
                    .unwrap()
                    .and_hms_opt(0, 0, 0)
                    .unwrap()
                    .and_utc()
                    .timestamp_micros(),
            ),
            to: None,
            after_id: None,
            limit: 1,
        })
        .await
        .unwrap()
        .remove(0);
    let dry = p
        .ok(&[
            "log",
            "compact",
            "--older-than",
            "90d",
            "--dry-run",
            "--json",
        ])
        .json();
    let planned = dry["archived"].as_array().unwrap().len();
    // 2012-01-01 to 2012-10-02 (the newest time is 2012-12-31 12:00).
    assert_eq!(planned, 275, "{dry}");
    assert_eq!(
        store.meta.prediction_count(Some("bikes")).await.unwrap(),
        8734
    );
    let compacted = p
        .ok(&["log", "compact", "--older-than", "90d", "--json"])
        .json();
    let days = compacted["archived"].as_array().unwrap();
    assert_eq!(days.len(), planned);
    let archived: i64 = days.iter().map(|d| d["rows"].as_i64().unwrap()).sum();
    let labelled: i64 = days.iter().map(|d| d["labelled"].as_i64().unwrap()).sum();
    assert_eq!(archived, labelled, "every archived row had its label");
    assert_eq!(
        store.meta.prediction_count(Some("bikes")).await.unwrap(),
        8734 - archived
    );
    assert!(archived > 6000, "{archived}");
    let listed = p.ok(&["log", "archives", "--json"]).json();
    assert_eq!(listed.as_array().unwrap().len(), planned);
    // Nothing left to do: a second run archives nothing.
    let again = p
        .ok(&["log", "compact", "--older-than", "90d", "--json"])
        .json();
    assert_eq!(again["archived"].as_array().unwrap().len(), 0, "{again}");

    let monitor_2012 = |extra: &[&str]| {
        let mut args = vec![
            "monitor",
            "--model",
            "bikes",
            "--from",
            "2012-01-01",
            "--to",
            "2013-01-01",
        ];
        args.extend_from_slice(extra);
        args.push("--json");
        p.ok(&args).json()
    };
    let read_back = monitor_2012(&["--window", "30d"]);
    assert_eq!(read_back["overall"]["rows"], 8734);
    assert_eq!(read_back["overall"]["labelled_rows"], 8734);
    let (before, after) = (
        report["windows"].as_array().unwrap(),
        read_back["windows"].as_array().unwrap(),
    );
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(after) {
        for field in [
            "start",
            "rows",
            "labelled_rows",
            "drift",
            "prediction_drift",
            "target_drift",
            "latency_p99_ms",
        ] {
            assert_eq!(
                a[field], b[field],
                "{field} of the window at {}",
                b["start"]
            );
        }
        assert_close(&a["realized"], &b["realized"], "realized");
    }
    let recounted = monitor_2012(&["--every", "1000"]);
    for (b, a) in counted["windows"]
        .as_array()
        .unwrap()
        .iter()
        .zip(recounted["windows"].as_array().unwrap())
    {
        assert_eq!(a["rows"], b["rows"]);
        assert_eq!(a["drift"], b["drift"]);
    }

    // A label that arrives after its day was archived is joined when the archive is read:
    // the first row of 2012 labelled 100,000 rides raises January's realized error.
    let r = client
        .post(format!("{}/v1/feedback", s.url))
        .json(&json!([{"request_id": first.record.request_id, "label": 100000}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let corrected = monitor_2012(&["--window", "30d"]);
    let mae = |doc: &Value| {
        doc["windows"][0]["realized"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "mae")
            .unwrap()["value"]
            .as_f64()
            .unwrap()
    };
    let rows_0 = corrected["windows"][0]["labelled_rows"].as_f64().unwrap();
    assert!(
        mae(&corrected) > mae(&read_back) + 90_000.0 / rows_0,
        "{} then {}",
        mae(&read_back),
        mae(&corrected)
    );
    assert_eq!(corrected["overall"]["labelled_rows"], 8734);

    // Deletion: days that ended 300 days before the newest (before 2012-03-06) are gone,
    // archives and files; the rest reads as before.
    let later = |doc: &Value| doc["overall"]["rows"].clone();
    let from_march = |p: &Project| {
        p.ok(&[
            "monitor",
            "--model",
            "bikes",
            "--from",
            "2012-03-06",
            "--to",
            "2013-01-01",
            "--json",
        ])
        .json()
    };
    let kept = later(&from_march(&p));
    let oldest = store
        .meta
        .log_archives(Some("bikes"), None, None)
        .await
        .unwrap()[0]
        .clone();
    let deleted = p
        .ok(&[
            "log",
            "compact",
            "--older-than",
            "90d",
            "--delete-older-than",
            "300d",
            "--json",
        ])
        .json();
    // 2012-01-01 to 2012-03-05.
    assert_eq!(
        deleted["dropped"].as_array().unwrap().len(),
        65,
        "{deleted}"
    );
    assert_eq!(later(&from_march(&p)), kept);
    let early = p
        .ok(&[
            "monitor",
            "--model",
            "bikes",
            "--to",
            "2012-03-06",
            "--json",
        ])
        .json();
    assert_eq!(early["overall"]["rows"], 0, "{early}");
    assert!(
        !store
            .artifacts
            .exists(&oldest.artifact.parse().unwrap())
            .await
            .unwrap(),
        "the dropped archive's file is deleted"
    );

    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("season") && page.contains("<svg"));
    assert!(!page.contains("<script") && !page.contains("https://"));

    // Production moves on: the breaches of the version that no longer serves are over, so
    // its alerts resolve (and no longer trigger retrainings).
    p.ok(&["train"]);
    p.ok(&[
        "models",
        "alias",
        "set",
        "production",
        "bikes@2",
        "--reason",
        "a new model",
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let resolved_by_retirement = |rule: &str| {
        posted_now(&posted_handle).iter().any(|b| {
            b["state"] == "resolved"
                && b["rule"] == rule
                && b["message"] == "bikes@1 no longer serves"
        })
    };
    loop {
        let firing = p.ok(&["alerts", "list", "--firing", "--json"]).json();
        let posted_both = ["data_drift", "realized_performance"]
            .iter()
            .all(|r| resolved_by_retirement(r));
        if firing.as_array().unwrap().is_empty() && posted_both {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still firing: {firing}; webhook: {:?}",
            posted_now(&posted_handle)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(s);
}

/// The server publishes an estimate of each of `metrics` for bikes@1.
async fn assert_estimates_published(client: &reqwest::Client, s: &Serving, metrics: &[&str]) {
    let text = get(client, &format!("{}/metrics", s.url))
        .await
        .text()
        .await
        .unwrap();
    for metric in metrics {
        let line = format!(
            "kiln_performance_estimated{{metric=\"{metric}\",model=\"bikes\",version=\"1\"}}"
        );
        assert!(text.contains(&line), "{line} missing");
    }
}

/// `kiln monitor` over 2012 in 30-day windows, for a model of `task`: each window's start
/// (µs) and its estimated and realized `metric`.
fn windows_of_2012(p: &Project, task: &str, metric: &str) -> Vec<(i64, f64, f64)> {
    let report = p
        .ok(&[
            "monitor",
            "--model",
            "bikes",
            "--from",
            "2012-01-01",
            "--window",
            "30d",
            "--json",
        ])
        .json();
    assert_eq!(report["task"], task);
    let windows = report["windows"].as_array().unwrap();
    windows
        .iter()
        .map(|w| {
            let realized = w["realized"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["name"] == metric)
                .unwrap()["value"]
                .as_f64()
                .unwrap();
            let estimated = w["estimated"][metric].as_f64().unwrap();
            (w["start"].as_i64().unwrap(), estimated, realized)
        })
        .collect()
}

/// A binary classifier (is the hour's demand high?) trained on 2011. From April 2012 on, the
/// inputs moved (season, weather) but demand related to them as in 2011: CBPE's estimated
/// accuracy must track the realized one there. In 2012's first quarter winter hours were
/// busier than 2011's (concept drift): no estimate from the inputs can see that, and the
/// realized-performance alert must catch it once the labels arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classifiers_estimated_accuracy_tracks_the_realized_one_and_labels_catch_the_rest() {
    let (p, s, client) = replay(&Task {
        train: "exclude = [\"casual\", \"registered\", \"cnt\"]\ntarget = \"demand\"",
        monitor: String::new(),
        not_sent: &["casual", "registered", "cnt"],
        label: |r| {
            json!(if r["cnt"].as_f64().unwrap() >= 150.0 {
                "high"
            } else {
                "low"
            })
        },
    })
    .await;
    assert_estimates_published(&client, &s, &["accuracy", "f1", "roc_auc"]).await;
    let alerts = p.ok(&["alerts", "list", "--json"]).json();
    let realized = alerts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["rule"] == "realized_performance")
        .unwrap_or_else(|| panic!("realized_performance never fired: {alerts}"));
    assert!(
        realized["message"]
            .as_str()
            .unwrap()
            .contains("realized accuracy"),
        "{realized}"
    );

    let april = chrono::NaiveDate::from_ymd_opt(2012, 4, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_micros();
    let (mut later, mut early) = (Vec::new(), Vec::new());
    for (start, estimated, realized) in windows_of_2012(&p, "binary", "accuracy") {
        if start >= april {
            later.push(estimated - realized);
        } else {
            early.push(estimated - realized);
        }
    }
    assert!(later.len() >= 8 && early.len() >= 3, "{later:?} {early:?}");
    let mean_abs = later.iter().map(|d| d.abs()).sum::<f64>() / later.len() as f64;
    assert!(
        mean_abs < 0.03,
        "estimated − realized accuracy from April on: {later:?}"
    );
    assert!(early.iter().all(|d| *d > 0.1), "first quarter: {early:?}");
}

/// A regressor whose target relates to the inputs in 2012 as in 2011: the feels-like
/// temperature (`atemp`) from the temperature, humidity, wind, hour and season. 2012's inputs
/// move with the seasons and the model's error moves with them (a 30-day window's MAE ranges
/// over a factor of 5). The direct loss estimate (a model of the validation residuals, fitted
/// at training on October to December 2011) must follow the realized MAE from the inputs alone:
/// correlated over the year, close in most windows, never raising a false alarm. It runs low
/// where the inputs leave what validation covered (January's cold, July's heat wave), and on
/// 2012-08-17, when the recorded `atemp` was stuck at 12.12 °C through a hot day, only the
/// labels can tell: the inputs look ordinary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regressors_estimated_error_tracks_the_realized_one() {
    let (p, s, client) = replay(&Task {
        train: "exclude = [\"casual\", \"registered\", \"cnt\"]\ntarget = \"atemp\"",
        monitor: String::new(),
        not_sent: &["casual", "registered", "cnt", "atemp"],
        label: |r| r["atemp"].clone(),
    })
    .await;
    assert_estimates_published(&client, &s, &["mae", "rmse"]).await;
    let stuck = chrono::NaiveDate::from_ymd_opt(2012, 8, 17)
        .unwrap()
        .and_hms_opt(12, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_micros();
    let days_30 = 30 * 86_400 * 1_000_000_i64;
    let (mut pairs, mut stuck_window) = (Vec::new(), None);
    for (start, estimated, realized) in windows_of_2012(&p, "regression", "mae") {
        if (start..start + days_30).contains(&stuck) {
            stuck_window = Some((estimated, realized));
        } else {
            pairs.push((estimated, realized));
        }
    }
    // The stuck sensor: the labels show an error several times what the inputs suggest.
    let (e, r) = stuck_window.expect("a window holds 2012-08-17");
    assert!(
        r > 3.0 * e,
        "2012-08-17's window: estimated {e}, realized {r}"
    );

    assert!(pairs.len() >= 12, "{pairs:?}");
    let (lo, hi) = pairs.iter().fold((f64::MAX, f64::MIN), |(lo, hi), (_, r)| {
        (lo.min(*r), hi.max(*r))
    });
    assert!(hi > 2.0 * lo, "the error hardly moved: {pairs:?}");
    // Rises and falls with the realized MAE (Pearson correlation over the windows).
    let n = pairs.len() as f64;
    let (me, mr) = (
        pairs.iter().map(|p| p.0).sum::<f64>() / n,
        pairs.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let cov: f64 = pairs.iter().map(|(e, r)| (e - me) * (r - mr)).sum();
    let (ve, vr): (f64, f64) = (
        pairs.iter().map(|(e, _)| (e - me).powi(2)).sum(),
        pairs.iter().map(|(_, r)| (r - mr).powi(2)).sum(),
    );
    let correlation = cov / (ve * vr).sqrt();
    assert!(correlation > 0.8, "correlation {correlation:.3}: {pairs:?}");
    // Close in most windows: the median gap under 30% of the realized MAE.
    let mut gaps: Vec<f64> = pairs.iter().map(|(e, r)| (e - r).abs() / r).collect();
    gaps.sort_by(f64::total_cmp);
    assert!(gaps[gaps.len() / 2] < 0.3, "gaps {gaps:?}: {pairs:?}");
    // Never above the realized error by more than a fifth: no false alarm from the estimate.
    assert!(
        pairs.iter().all(|(e, r)| *e < 1.2 * r),
        "(estimated, realized) MAE per window: {pairs:?}"
    );
    drop(s);
}

#[test]
fn monitor_refuses_bad_ranges_and_unknown_models() {
    let p = Project::new();
    p.ok(&["init", "."]);
    expect_input_error(
        &p.run(&["monitor", "--model", "nope"]),
        "no model named `nope`",
    );
    expect_input_error(
        &p.run(&["monitor", "--model", "nope", "--from", "yesterday"]),
        "--from `yesterday` is not a date",
    );
    expect_input_error(
        &p.run(&["monitor", "--model", "nope", "--window", "an hour"]),
        "--window `an hour` is not a duration",
    );
    p.config("[monitor]\nwindow = \"soon\"\n");
    expect_input_error(&p.run(&["monitor", "--model", "x"]), "not a duration");
    let r = p.ok(&["alerts", "list", "--json"]).json();
    assert_eq!(r, json!([]));

    // Retention: no policy, a bad duration, or deletion before archiving is refused.
    expect_input_error(&p.run(&["log", "compact"]), "no retention policy");
    expect_input_error(
        &p.run(&["log", "compact", "--older-than", "a while"]),
        "--older-than = \"a while\" is not a duration",
    );
    p.config("[retention]\ncompact_after = \"30d\"\ndelete_after = \"7d\"\n");
    expect_input_error(
        &p.run(&["log", "compact"]),
        "must be longer than compact_after",
    );
    let empty = p
        .ok(&["log", "compact", "--delete-older-than", "90d", "--json"])
        .json();
    assert_eq!(empty["archived"], json!([]), "{empty}");
    assert_eq!(p.ok(&["log", "archives", "--json"]).json(), json!([]));
}
