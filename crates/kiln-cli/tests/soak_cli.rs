//! Soak: a server under mixed traffic for a bounded time (120 s by default, `KILN_SOAK_SECS=600`
//! for a release check): predictions one row and many, v2 inference, feedback, bad requests,
//! alias flips every second and a retraining during the warm-up (half the run, at most two
//! minutes). Zero 5xx, zero failed valid requests, retained memory (the floor of anonymous
//! resident memory sampled every second) in the last third after warm-up within 10% of the
//! first third, and the p99 latency of the last third no worse than twice the first third's.
//! The figures are printed.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn row(i: u64) -> Value {
    json!({"dteday": format!("2012-07-{:02}", 1 + i % 28), "season": "fall",
           "hr": format!("{}am", 1 + i % 11), "holiday": "No", "weekday": "Sun",
           "workingday": "No", "weathersit": "Clear", "temp": 20.0 + (i % 15) as f64,
           "atemp": 25.0, "hum": 40.0 + (i % 50) as f64, "windspeed": 10.0})
}

/// One resident-memory figure of a process from `/proc/PID/status`, KiB: `VmRSS` (all of it)
/// or `RssAnon` (heap, stacks and other anonymous pages).
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn p99(mut v: Vec<u64>) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

#[derive(Default)]
struct Tally {
    valid: AtomicU64,
    bad: AtomicU64,
    failed_valid: AtomicU64,
    server_errors: AtomicU64,
    feedback: AtomicU64,
}

/// One client: a fixed mix of requests until `stop`; latencies of valid requests in
/// microseconds, with the time each was sent (from the start).
async fn client(
    url: String,
    seed: u64,
    meta: Value,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    start: Instant,
) -> Vec<(Duration, u64)> {
    let http = reqwest::Client::new();
    let mut latencies = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    let mut i = seed;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let (path, body, valid) = match i % 10 {
            // Predictions: one row, or up to 50.
            0..=3 => (
                "/v1/models/bikes/predict".to_owned(),
                json!({"instances": [row(i)]}),
                true,
            ),
            4 => (
                "/v1/models/bikes/predict".to_owned(),
                json!({"instances": (0..1 + i % 50).map(|k| row(i + k)).collect::<Vec<_>>()}),
                true,
            ),
            // v2 inference, one tensor per input.
            5 | 6 => {
                let r = row(i);
                let inputs: Vec<Value> = meta["inputs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| {
                        let name = t["name"].as_str().unwrap();
                        json!({"name": name, "shape": [1], "datatype": t["datatype"], "data": [r[name]]})
                    })
                    .collect();
                (
                    "/v2/models/bikes/infer".to_owned(),
                    json!({"inputs": inputs}),
                    true,
                )
            }
            // Feedback for earlier predictions.
            7 if !ids.is_empty() => {
                let items: Vec<Value> = ids
                    .drain(..)
                    .map(|id| json!({"request_id": id, "label": (i % 500) as f64}))
                    .collect();
                tally
                    .feedback
                    .fetch_add(items.len() as u64, Ordering::Relaxed);
                ("/v1/feedback".to_owned(), json!(items), true)
            }
            // Bad requests: a missing feature, a wrong type, an unknown model.
            7 | 8 => {
                let mut r = row(i);
                match i % 3 {
                    0 => {
                        r.as_object_mut().unwrap().remove("temp");
                    }
                    1 => r["hum"] = json!("very"),
                    _ => {}
                }
                let model = if i % 3 == 2 { "nope" } else { "bikes" };
                (
                    format!("/v1/models/{model}/predict"),
                    json!({"instances": [r]}),
                    false,
                )
            }
            _ => (
                "/v1/models/bikes/predict".to_owned(),
                json!({"instances": "not rows"}),
                false,
            ),
        };
        let sent = Instant::now();
        let r = http.post(format!("{url}{path}")).json(&body).send().await;
        let took = sent.elapsed().as_micros() as u64;
        let Ok(r) = r else {
            tally.failed_valid.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let status = r.status().as_u16();
        if status >= 500 {
            tally.server_errors.fetch_add(1, Ordering::Relaxed);
        }
        if valid {
            tally.valid.fetch_add(1, Ordering::Relaxed);
            if status != 200 {
                tally.failed_valid.fetch_add(1, Ordering::Relaxed);
                eprintln!("valid request to {path} got {status}: {:?}", r.text().await);
                continue;
            }
            latencies.push((sent - start, took));
            if path.ends_with("/predict") {
                let b: Value = r.json().await.unwrap_or_default();
                if let Some(preds) = b["predictions"].as_array() {
                    ids.extend(
                        preds
                            .iter()
                            .filter_map(|p| p["request_id"].as_str().map(str::to_owned))
                            .take(5),
                    );
                }
            }
        } else {
            tally.bad.fetch_add(1, Ordering::Relaxed);
            assert!(
                (400..500).contains(&status),
                "a bad request to {path} got {status}"
            );
            let b: Value = r.json().await.unwrap_or_default();
            assert!(b["error"]["code"].is_string(), "{b}");
        }
    }
    latencies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_traffic_for_two_minutes_keeps_memory_and_latency_flat_with_no_errors() {
    let secs: u64 = std::env::var("KILN_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let p = Project::new();
    p.ok(&["init", "."]);
    // Live windows of 10 s with 3 kept closed: the monitor's (bounded) state is full before
    // the warm-up ends, so the steady state is what the memory baseline measures.
    p.config(&format!(
        "{}\n[serve]\npoll_interval_ms = 100\n[serve.log]\nflush_interval_ms = 200\n\
         [monitor]\nwindow = \"10s\"\ninterval = \"1s\"\nhistory = 3\n",
        EXAMPLE_CONFIG.replace("[monitor]\nwindow = \"7d\"\ninterval = \"1s\"\n", "")
    ));
    p.write("bikes.csv.gz", EXAMPLE_DATA);
    p.ok(&["data", "add", "bikes.csv.gz", "--dataset", "bikes"]);
    p.ok(&["train", "--set", "gbdt.iterations=5"]);
    p.ok(&["train", "--set", "gbdt.iterations=8"]);
    p.ok(&[
        "models",
        "alias",
        "set",
        "production",
        "bikes@1",
        "--reason",
        "soak",
    ]);
    let s = serve(&p);
    let pid = s.child.id();
    let meta: Value = reqwest::get(format!("{}/v2/models/bikes", s.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let start = Instant::now();
    let clients: Vec<_> = (0..3)
        .map(|c| {
            tokio::spawn(client(
                s.url.clone(),
                c * 1_000_003,
                meta.clone(),
                stop.clone(),
                tally.clone(),
                start,
            ))
        })
        .collect();

    // Warm-up: half the time (at most two minutes). Alias flips run every second from the
    // start, and the one retraining falls a quarter of the way in, so by the end of the warm-up
    // every version has been loaded and served, the monitor's windows are closed and evaluated,
    // and caches and the allocator's pools are full: what is measured after it is the steady
    // state. (A retraining inside the measured half made a third version's model and monitor
    // state look like growth: +10.4% and +16.4% in two runs.) Memory is sampled every second
    // after the warm-up. The leak check reads
    // anonymous memory (`RssAnon`): the rest of RSS is mostly the executable's own file pages,
    // which the kernel maps in as code paths first run and drops under pressure or shares with
    // the `kiln train` run (measured on a debug build: 2 to 35 MiB from one second to the next,
    // with `RssAnon` flat).
    let warm = Duration::from_secs((secs / 2).clamp(5, 120));
    let mut samples: Vec<u64> = Vec::new();
    let median = |v: &[u64]| {
        let mut v = v.to_vec();
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0)
    };
    let total = Duration::from_secs(secs);
    let mut flips = 0;
    let mut retrained = false;
    let mut rss_peak = 0;
    while start.elapsed() < total {
        // Alias flips every second among the versions so far.
        let versions = if retrained { 3 } else { 2 };
        let v = 1 + flips % versions;
        p.ok(&[
            "models",
            "alias",
            "set",
            "production",
            &format!("bikes@{v}"),
            "--reason",
            "soak flip",
        ]);
        flips += 1;
        if !retrained && start.elapsed() > warm / 2 {
            p.ok(&["train", "--set", "gbdt.iterations=6"]);
            retrained = true;
        }
        rss_peak = rss_peak.max(status_kib(pid, "VmRSS:"));
        if start.elapsed() >= warm {
            samples.push(status_kib(pid, "RssAnon:"));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for c in clients {
        latencies.extend(c.await.unwrap());
    }
    // Retained memory is the floor of the samples: single samples swing by half with the
    // transient allocations of window evaluations and model loads (returned a second later),
    // while a leak raises the floor. The first and the last third of the samples after warm-up
    // are compared.
    let third_of = samples.len() / 3;
    let floor = |v: &[u64]| v.iter().copied().min().unwrap_or(0);
    let anon_warm = floor(&samples[..third_of.max(1)]);
    let anon_end = floor(&samples[samples.len() - third_of.max(1)..]);
    let (median_warm, median_end) = (
        median(&samples[..third_of.max(1)]),
        median(&samples[samples.len() - third_of.max(1)..]),
    );
    let third = (total - warm) / 3;
    let first: Vec<u64> = latencies
        .iter()
        .filter(|(at, _)| *at >= warm && *at < warm + third)
        .map(|(_, us)| *us)
        .collect();
    let last: Vec<u64> = latencies
        .iter()
        .filter(|(at, _)| *at >= warm + 2 * third)
        .map(|(_, us)| *us)
        .collect();
    let (p99_first, p99_last) = (p99(first), p99(last));
    let t = &tally;
    eprintln!(
        "soak {secs} s: {} valid requests ({:.0}/s), {} bad ones (all 4xx), {} labels, {flips} alias flips, \
         retrained: {retrained}; p99 first third {:.1} ms, last third {:.1} ms; anonymous memory floor after \
         warm-up {} KiB, at the end {} KiB ({:+.1}%; medians {} and {} KiB; samples a second apart); \
         peak RSS {} KiB",
        t.valid.load(Ordering::Relaxed),
        t.valid.load(Ordering::Relaxed) as f64 / secs as f64,
        t.bad.load(Ordering::Relaxed),
        t.feedback.load(Ordering::Relaxed),
        p99_first as f64 / 1000.0,
        p99_last as f64 / 1000.0,
        anon_warm,
        anon_end,
        (anon_end as f64 / anon_warm as f64 - 1.0) * 100.0,
        median_warm,
        median_end,
        rss_peak,
    );
    assert_eq!(t.server_errors.load(Ordering::Relaxed), 0, "5xx answers");
    assert_eq!(
        t.failed_valid.load(Ordering::Relaxed),
        0,
        "failed valid requests"
    );
    assert!(t.valid.load(Ordering::Relaxed) > 100 * secs / 10);
    assert!(t.bad.load(Ordering::Relaxed) > 0);
    // A flip a second, less the time each `kiln models alias set` takes.
    assert!(retrained && flips >= total.as_secs() as usize / 2);
    assert!(
        anon_end as f64 <= anon_warm as f64 * 1.10,
        "anonymous memory grew from {anon_warm} KiB after warm-up to {anon_end} KiB; \
         samples a second apart (KiB): {samples:?}"
    );
    assert!(
        p99_last <= 2 * p99_first.max(1_000),
        "p99 went from {p99_first} µs to {p99_last} µs"
    );
    // Every served prediction that was logged is whole, and the server stops cleanly.
    drop(s);
}
