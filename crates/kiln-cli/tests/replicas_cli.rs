//! Three `kiln serve` replicas sharing one PostgreSQL database and one artifact store: an
//! alias move made with the CLI is served by all of them within the stated bound; their
//! prediction logs and feedback land in the shared store with nothing lost or duplicated;
//! with `[monitor] scope = "shared"` every replica's live window holds every replica's rows;
//! exactly one of them runs the retrain controller; a crashed one's lease passes on when it
//! expires, and a replica that stops hands it on at once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{Project, Serving, serve_with};
use serde_json::{Value, json};

const CONFIG: &str = include_str!("../../../examples/bikeshare/kiln.toml");
const DATA: &[u8] = include_bytes!("../../../examples/bikeshare/data/bike-rental-dataset.csv.gz");

/// How soon every replica serves an alias move: the serving poll interval (500 ms by default)
/// plus a model load, stated in docs/DEPLOYING.md.
const PROPAGATION_BOUND: Duration = Duration::from_secs(2);

fn row(i: usize) -> Value {
    json!({"dteday": "2012-07-01", "season": "fall", "hr": format!("{}", i % 24),
           "holiday": "No", "weekday": "Sun", "workingday": "No", "weathersit": "Clear",
           "temp": 20.0 + (i % 15) as f64, "atemp": 24.0, "hum": 37.0, "windspeed": 9.0})
}

/// The version `url` serves for bikes now.
async fn served_version(client: &reqwest::Client, url: &str) -> i64 {
    let r = client
        .post(format!("{url}/v1/models/bikes/predict"))
        .json(&json!({"instances": [row(0)]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    b["version"].as_i64().unwrap()
}

/// The process id in a controller lease holder's name (`host:pid:nonce`).
fn holder_pid(holder: &str) -> u32 {
    holder.split(':').nth(1).unwrap().parse().unwrap()
}

/// The pid holding bikes' controller lease, once one of `pids` holds it (within `within`).
async fn leader(p: &Project, pids: &BTreeSet<u32>, within: Duration) -> u32 {
    let store = p.store().await;
    let deadline = Instant::now() + within;
    loop {
        let leases = store.meta.leases().await.unwrap();
        let held: Vec<_> = leases
            .iter()
            .filter(|l| l.name == "controller:bikes")
            .collect();
        assert!(held.len() <= 1);
        if let Some(l) = held.first()
            && pids.contains(&holder_pid(&l.holder))
            && l.expires_at > kiln_core::now_micros()
        {
            return holder_pid(&l.holder);
        }
        assert!(
            Instant::now() < deadline,
            "no replica of {pids:?} holds the controller lease: {leases:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every prediction of bikes in the shared log.
async fn logged(store: &kiln_store::Store) -> Vec<kiln_store::StoredPrediction> {
    store
        .meta
        .predictions(&kiln_store::PredictionQuery {
            model: Some("bikes".into()),
            from: None,
            to: None,
            after_id: None,
            limit: 1_000_000,
        })
        .await
        .unwrap()
}

/// `kiln_monitor_window_rows` of bikes@2 on the replica at `url`.
async fn window_rows(client: &reqwest::Client, url: &str) -> Option<i64> {
    let text = client
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| {
            l.starts_with("kiln_monitor_window_rows{")
                && l.contains("model=\"bikes\"")
                && l.contains("version=\"2\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn terminate(s: &mut Serving) {
    // SAFETY: kill(2) on a child process id this test started and has not reaped.
    unsafe {
        libc::kill(s.child.id() as i32, libc::SIGTERM);
    }
    let status = s.child.wait().unwrap();
    assert!(status.success(), "a replica exited with {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_one_database() {
    let Some(p) = Project::postgres() else {
        return;
    };
    p.config(&CONFIG.replace("[monitor]\n", "[monitor]\nscope = \"shared\"\n"));
    p.write("bikes.csv.gz", DATA);
    p.ok(&["data", "add", "bikes.csv.gz", "--dataset", "bikes"]);
    p.ok(&["train", "--set", "gbdt.iterations=5"]);
    p.ok(&["train", "--set", "gbdt.iterations=8", "--set", "seed=3"]);
    p.ok(&[
        "models",
        "alias",
        "set",
        "production",
        "bikes@1",
        "--reason",
        "first",
    ]);

    // Three replicas with the retrain controller on (the example enables [automate]).
    let mut replicas: Vec<Serving> = (0..3).map(|_| serve_with(&p, &[])).collect();
    let pids: BTreeSet<u32> = replicas.iter().map(|s| s.child.id()).collect();
    let client = reqwest::Client::new();
    for s in &replicas {
        assert_eq!(served_version(&client, &s.url).await, 1);
    }

    // Exactly one controller: one lease row, held by one of the replicas; the others say
    // they stand by.
    let first_leader = leader(&p, &pids, Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let standing_by = replicas
            .iter()
            .filter(|s| {
                s.stderr
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|l| l.contains("controller on standby"))
            })
            .count();
        if standing_by == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{standing_by} replicas on standby, expected 2"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // An alias move through the CLI reaches every replica within the bound.
    let moved = Instant::now();
    p.ok(&[
        "models",
        "alias",
        "set",
        "production",
        "bikes@2",
        "--reason",
        "second",
    ]);
    let mut pending: Vec<&Serving> = replicas.iter().collect();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for s in pending {
            if served_version(&client, &s.url).await != 2 {
                still.push(s);
            }
        }
        pending = still;
        assert!(
            moved.elapsed() <= PROPAGATION_BOUND || pending.is_empty(),
            "{} replicas still serve bikes@1 {:?} after the move",
            pending.len(),
            moved.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "alias move served by all 3 replicas after {:?}",
        moved.elapsed()
    );

    // 300 predictions spread over the replicas, each labelled through another replica.
    let mut sent = BTreeMap::new();
    for i in 0..300 {
        let s = &replicas[i % 3];
        let id = format!("replica-test-{i}");
        let r = client
            .post(format!("{}/v1/models/bikes/predict", s.url))
            .header("x-request-id", &id)
            .json(&json!({"instances": [row(i)]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        sent.insert(id, i);
    }
    for (n, chunk) in sent.keys().collect::<Vec<_>>().chunks(50).enumerate() {
        let s = &replicas[(n + 1) % 3];
        let items: Vec<Value> = chunk
            .iter()
            .map(|id| json!({"request_id": id, "label": 100}))
            .collect();
        let r = client
            .post(format!("{}/v1/feedback", s.url))
            .json(&items)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    // Live monitoring reads the shared log: each replica's window of bikes@2 holds the rows
    // of all three, as many as the store has.
    let store = p.store().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = logged(&store).await;
        let ours = rows
            .iter()
            .filter(|r| r.record.request_id.starts_with("replica-test-"))
            .count();
        let logged = rows.iter().filter(|r| r.record.version == 2).count() as i64;
        let mut windows = Vec::new();
        for s in &replicas {
            windows.push(window_rows(&client, &s.url).await);
        }
        if ours == 300 && windows.iter().all(|w| *w == Some(logged)) {
            eprintln!("each replica's live window holds all {logged} rows");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "live windows {windows:?}, {logged} rows of bikes@2 logged"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // The leader crashes (every prediction is written by now): its lease stays until it
    // expires, 15 s after its last renewal, and then another replica takes it over.
    let at = replicas
        .iter()
        .position(|s| s.child.id() == first_leader)
        .unwrap();
    let mut crashed = replicas.remove(at);
    crashed.child.kill().unwrap(); // SIGKILL
    crashed.child.wait().unwrap();
    let killed = Instant::now();
    let rest: BTreeSet<u32> = replicas.iter().map(|s| s.child.id()).collect();
    let second = leader(&p, &rest, Duration::from_secs(25)).await;
    let took = killed.elapsed();
    assert!(
        took >= Duration::from_secs(10),
        "taken over {took:?} after the crash, before the lease could expire"
    );
    eprintln!("lease taken over {took:?} after the holder crashed");

    // The new leader stops cleanly: it releases the lease, and the last replica takes it at
    // its next poll.
    let at = replicas
        .iter()
        .position(|s| s.child.id() == second)
        .unwrap();
    let mut stopped = replicas.remove(at);
    terminate(&mut stopped);
    let last: BTreeSet<u32> = replicas.iter().map(|s| s.child.id()).collect();
    let handed = Instant::now();
    let third = leader(&p, &last, Duration::from_secs(5)).await;
    assert_ne!(third, second);
    eprintln!(
        "lease handed over in {:?} after a clean stop",
        handed.elapsed()
    );
    for s in &mut replicas {
        terminate(s);
    }

    // Every prediction once, every label once, whichever replica took it.
    let store = p.store().await;
    let rows = logged(&store).await;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for r in rows
        .iter()
        .filter(|r| r.record.request_id.starts_with("replica-test-"))
    {
        *seen.entry(r.record.request_id.clone()).or_default() += 1;
        assert_eq!(r.record.version, 2);
    }
    assert_eq!(seen.len(), 300, "predictions missing from the shared log");
    assert!(
        seen.values().all(|&n| n == 1),
        "a prediction was logged twice"
    );
    let feedback = store.meta.feedback(None, 10_000).await.unwrap();
    let labelled: BTreeSet<_> = feedback
        .iter()
        .filter_map(|f| f.request_id.clone())
        .collect();
    assert_eq!(feedback.len(), 300);
    assert_eq!(labelled.len(), 300);
    assert!(labelled.iter().all(|id| sent.contains_key(id)));
    // No lease is left held by a stopped replica.
    let leases = store.meta.leases().await.unwrap();
    assert!(
        leases.iter().all(|l| l.name != "controller:bikes"),
        "{leases:?}"
    );
}
