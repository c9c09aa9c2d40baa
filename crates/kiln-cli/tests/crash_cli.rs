//! Crash consistency: `kiln` killed with SIGKILL at random moments of `data add`, `train`,
//! `pipeline run`, alias moves and serving with its prediction log, again and again. After each
//! kill `kiln doctor` must find the store consistent (no partial snapshot or model visible,
//! every artifact whole, every reference resolving), every prediction acknowledged before the
//! last flush interval must be in the log, and the next command must succeed.
//!
//! 50 kills by default (CI); `KILN_CRASH_KILLS=500` for a long run. The random moments come
//! from a seed printed at the start; `KILN_CRASH_SEED=N` replays a run.

mod common;

use std::collections::HashSet;
use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// The prediction log's flush interval in this test.
const FLUSH: Duration = Duration::from_millis(200);

/// A small deterministic generator (xorshift64*): the kill moments, reproducible by seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `[0, n)`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The bundled data's header and `rows` rows starting at `skip` (different content each time).
fn sample(skip: usize, rows: usize) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(EXAMPLE_DATA)
        .read_to_string(&mut text)
        .unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    std::iter::once(header)
        .chain(lines.skip(skip).take(rows))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn config() -> String {
    let cut = EXAMPLE_CONFIG
        .find("# How `kiln train` trains")
        .expect("the example documents [train]");
    format!(
        "{}[train]\ndataset = \"bikes\"\nexclude = [\"casual\", \"registered\"]\nregister = \"bikes\"\n\
         [train.gbdt]\niterations = 5\nmax_depth = 4\n\n[pipeline]\nsource = \"data/bikes.csv\"\n\n\
         [serve.log]\nflush_interval_ms = {}\n",
        &EXAMPLE_CONFIG[..cut],
        FLUSH.as_millis()
    )
}

/// The operations killed, in turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Op {
    DataAdd,
    Train,
    Pipeline,
    AliasMove,
    Serve,
}

const OPS: [Op; 5] = [
    Op::DataAdd,
    Op::Train,
    Op::Pipeline,
    Op::AliasMove,
    Op::Serve,
];

/// Versions of `bikes` registered so far.
fn versions(p: &Project) -> Vec<i64> {
    let v = p.ok(&["models", "list", "--json"]).json();
    let bikes = v
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "bikes")
        .cloned()
        .unwrap_or(json!({}));
    let latest = bikes["latest"]["version"].as_i64().unwrap_or(0);
    (1..=latest).collect()
}

/// Runs `args` to completion (when `kill_after` is `None`) or kills it after that long.
/// Returns whether it was killed before it ended, and how long it ran.
fn run_or_kill(p: &Project, args: &[&str], kill_after: Option<Duration>) -> (bool, Duration) {
    let start = Instant::now();
    let mut child = p
        .command()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let Some(after) = kill_after else {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            completed(out.status, &stderr),
            "kiln {args:?} failed: {stderr}"
        );
        return (false, start.elapsed());
    };
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut stderr);
            }
            // Not killed in time: it must have completed like an uninterrupted run.
            assert!(completed(status, &stderr), "kiln {args:?} failed: {stderr}");
            assert!(!stderr.contains("panicked"), "{stderr}");
            return (false, start.elapsed());
        }
        if start.elapsed() >= after {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            return (true, start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Whether a command that ran to its end completed: it succeeded, or a pipeline's gate turned
/// its candidate down (a decision, with production untouched, not a failure).
fn completed(status: std::process::ExitStatus, stderr: &str) -> bool {
    status.success() || (status.code() == Some(1) && stderr.contains("failed the gate"))
}

/// `kiln doctor --json`: no error findings (notes of interrupted work are expected).
fn doctor(p: &Project, after: &str) -> Value {
    let r = p.run(&["doctor", "--json"]);
    assert!(
        !r.stdout.is_empty(),
        "after {after}: kiln doctor: {}",
        r.stderr
    );
    let v = r.json();
    let errors: Vec<&Value> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .collect();
    assert!(
        errors.is_empty() && r.code == 0,
        "after {after}: kiln doctor found errors (exit {}): {errors:#?}",
        r.code
    );
    v
}

/// Serves, predicts until the kill, and checks every acknowledged prediction older than the
/// flush interval (plus the time a batch takes to write) is in the log, and nothing else is.
async fn serve_and_kill(
    p: &Project,
    run_for: Duration,
    client: &reqwest::Client,
) -> (usize, usize) {
    let store = p.store().await;
    let before = store.meta.prediction_count(None).await.unwrap();
    let mut s = serve(p);
    let start = Instant::now();
    let mut acked: Vec<(String, Instant)> = Vec::new();
    while start.elapsed() < run_for {
        let r = client
            .post(format!("{}/v1/models/bikes/predict", s.url))
            .json(
                &json!({"instances": [{"dteday": "2012-07-01", "season": "fall", "hr": "3pm",
                "holiday": "No", "weekday": "Sun", "workingday": "No", "weathersit": "Clear",
                "temp": 34.3, "atemp": 38.0, "hum": 37.0, "windspeed": 19.0}]}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let b: Value = r.json().await.unwrap();
        acked.push((
            b["predictions"][0]["request_id"]
                .as_str()
                .unwrap()
                .to_owned(),
            Instant::now(),
        ));
    }
    s.child.kill().unwrap();
    let killed = Instant::now();
    s.child.wait().unwrap();
    let rows = store
        .meta
        .predictions(&kiln_store::PredictionQuery {
            model: None,
            from: None,
            to: None,
            after_id: None,
            limit: 10_000_000,
        })
        .await
        .unwrap();
    let logged: HashSet<&str> = rows.iter().map(|r| r.record.request_id.as_str()).collect();
    let must_be_there = killed - FLUSH - Duration::from_millis(250);
    for (id, at) in &acked {
        if *at < must_be_there {
            assert!(
                logged.contains(id.as_str()),
                "{id}, acknowledged {:?} before the kill, is missing; the server said:\n{}",
                killed - *at,
                s.stderr.lock().unwrap().join("\n")
            );
        }
    }
    assert!(rows.len() as i64 <= before + acked.len() as i64);
    let lost = acked
        .iter()
        .filter(|(id, _)| !logged.contains(id.as_str()))
        .count();
    (acked.len(), lost)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_never_leaves_the_store_inconsistent() {
    let kills: usize = std::env::var("KILN_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let seed: u64 = std::env::var("KILN_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("crash harness: {kills} kills, seed {seed} (KILN_CRASH_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    let mut p = Project::new();
    // The servers say when each batch of the log begins, is written and is done, so a row
    // missing at a kill shows where its batch was (printed with the failure).
    p.env
        .push(("KILN_LOG".into(), "info,kiln::log=debug".into()));
    p.ok(&["init", "."]);
    p.config(&config());
    let client = reqwest::Client::new();

    // One uninterrupted run of each operation: the state the others build on, and how long
    // each takes here (kills land anywhere in [0, 1.2 × that]).
    let mut took = std::collections::HashMap::new();
    let mut file = 0usize;
    let mut next_file = |rng: &mut Rng| {
        file += 1;
        let name = format!("data/add-{file}.csv");
        p.write(
            &name,
            sample(rng.below(10_000) as usize, 500 + rng.below(1500) as usize).as_bytes(),
        );
        name
    };
    for op in OPS {
        let t = match op {
            Op::DataAdd => {
                let f = next_file(&mut rng);
                run_or_kill(&p, &["data", "add", &f, "--dataset", "bikes"], None).1
            }
            Op::Train => run_or_kill(&p, &["train"], None).1,
            Op::Pipeline => {
                p.write("data/bikes.csv", sample(0, 1500).as_bytes());
                run_or_kill(&p, &["pipeline", "run"], None).1
            }
            Op::AliasMove => {
                run_or_kill(
                    &p,
                    &[
                        "models",
                        "alias",
                        "set",
                        "staging",
                        "bikes@1",
                        "--reason",
                        "crash test",
                    ],
                    None,
                )
                .1
            }
            Op::Serve => Duration::from_millis(1500),
        };
        took.insert(op, t);
    }
    doctor(&p, "the uninterrupted runs");

    let mut killed_mid_run = 0;
    let (mut acked, mut lost) = (0, 0);
    for i in 0..kills {
        let op = OPS[i % OPS.len()];
        let span = took[&op].as_millis() as u64 * 12 / 10;
        let after = Duration::from_millis(rng.below(span.max(20)));
        let killed = match op {
            Op::DataAdd => {
                let f = next_file(&mut rng);
                run_or_kill(&p, &["data", "add", &f, "--dataset", "bikes"], Some(after)).0
            }
            Op::Train => run_or_kill(&p, &["train"], Some(after)).0,
            Op::Pipeline => {
                let rows = 1000 + rng.below(2000) as usize;
                p.write(
                    "data/bikes.csv",
                    sample(rng.below(8000) as usize, rows).as_bytes(),
                );
                run_or_kill(&p, &["pipeline", "run"], Some(after)).0
            }
            Op::AliasMove => {
                let vs = versions(&p);
                let v = vs[rng.below(vs.len() as u64) as usize];
                let target = format!("bikes@{v}");
                run_or_kill(
                    &p,
                    &[
                        "models",
                        "alias",
                        "set",
                        "production",
                        &target,
                        "--reason",
                        "crash test",
                    ],
                    Some(after),
                )
                .0
            }
            Op::Serve => {
                let (a, l) =
                    serve_and_kill(&p, Duration::from_millis(300 + rng.below(1200)), &client).await;
                acked += a;
                lost += l;
                true
            }
        };
        killed_mid_run += usize::from(killed);
        doctor(&p, &format!("kill {} ({op:?} after {after:?})", i + 1));
        // The next command succeeds: every fifth round runs the operation uninterrupted.
        if i % 5 == 4 {
            p.write(
                "data/bikes.csv",
                sample(rng.below(8000) as usize, 1200).as_bytes(),
            );
            run_or_kill(&p, &["pipeline", "run"], None);
            let f = next_file(&mut rng);
            run_or_kill(&p, &["data", "add", &f, "--dataset", "bikes"], None);
        }
    }
    eprintln!(
        "crash harness: {kills} rounds, {killed_mid_run} killed mid-run; serving: {acked} \
         predictions acknowledged, {lost} not yet flushed at the kill"
    );
    // Most kills must land mid-run, or the harness tests nothing.
    assert!(killed_mid_run * 2 > kills, "{killed_mid_run} of {kills}");
    // The store still works end to end: a server starts and answers.
    let s = serve(&p);
    let r = client
        .get(format!("{}/v2/health/ready", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let last = doctor(&p, "the end");
    assert!(last["artifacts"].as_u64().unwrap() > 10, "{last}");
}
