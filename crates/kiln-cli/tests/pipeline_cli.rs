//! End-to-end tests of `kiln pipeline run|status|runs`: the real binary on real SQLite files
//! in a temporary project, with a small sample of the bundled bike data.
//!
//! Stage caching (a second run skips everything; new data reruns from ingest; a changed train
//! setting reruns from train), command stages (run, cached, rerun on a changed dep, failing
//! clearly), an external "training" command writing ONNX that an import stage evaluates, and
//! each gate failing (production untouched) and passing (production moved).

mod common;

use std::io::Read;
use std::path::PathBuf;

use common::{Project, Run, expect_input_error};
use serde_json::Value;

const CONFIG: &str = include_str!("../../../examples/bikeshare/kiln.toml");
const DATA: &[u8] = include_bytes!("../../../examples/bikeshare/data/bike-rental-dataset.csv.gz");

/// The example's dataset rules, with a quick [train] and `pipeline` appended.
fn config(gbdt_iterations: u32, pipeline: &str) -> String {
    let cut = CONFIG
        .find("# How `kiln train` trains")
        .expect("the example documents [train]");
    format!(
        "{}[train]\ndataset = \"bikes\"\nexclude = [\"casual\", \"registered\"]\nregister = \"bikes\"\n\
         [train.gbdt]\niterations = {gbdt_iterations}\nmax_depth = 4\n\n{pipeline}\n",
        &CONFIG[..cut]
    )
}

/// The header and the first `rows` rows of the bundled data (shuffled, so both years).
fn sample(rows: usize) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(DATA)
        .read_to_string(&mut text)
        .unwrap();
    text.lines()
        .take(rows + 1)
        .map(|l| format!("{l}\n"))
        .collect()
}

fn run(p: &Project) -> (Run, Value) {
    let r = p.run(&["pipeline", "run", "--json"]);
    let v = r.json();
    (r, v)
}

/// Stage name → state of a run document.
fn states(v: &Value) -> Vec<(String, String)> {
    v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["stage"].as_str().unwrap().to_owned(),
                s["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn expect_states(v: &Value, want: &[(&str, &str)]) {
    let got = states(v);
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
    assert_eq!(got, want, "{v:#}");
}

/// Stage name → (fresh, reasons) of `kiln pipeline status --json`.
fn status(p: &Project) -> Vec<(String, bool, String)> {
    let v = p.ok(&["pipeline", "status", "--json"]).json();
    v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["stage"].as_str().unwrap().to_owned(),
                s["fresh"].as_bool().unwrap(),
                s["reasons"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap().to_owned())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })
        .collect()
}

fn production(p: &Project) -> Option<i64> {
    let r = p.run(&["models", "show", "bikes@production", "--json"]);
    (r.code == 0).then(|| r.json()["version"]["version"].as_i64().unwrap())
}

/// The latest registered version of `bikes`.
fn latest(p: &Project) -> i64 {
    p.ok(&["models", "show", "bikes", "--json"]).json()["version"]["version"]
        .as_i64()
        .unwrap()
}

#[test]
fn caching_skips_what_is_unchanged_and_reruns_from_what_changed() {
    let p = Project::new();
    p.config(&config(10, "[pipeline]\nsource = \"data/bikes.csv\"\n"));
    p.write("data/bikes.csv", sample(1500).as_bytes());
    let all = ["ingest", "validate", "train", "gate", "deploy"];

    let before = status(&p);
    assert!(before.iter().all(|(_, fresh, _)| !fresh), "{before:?}");
    assert_eq!(before[0].2, "never run");
    assert_eq!(before[1].2, "upstream `ingest` will run first");

    let (r, first) = run(&p);
    assert_eq!(r.code, 0, "{}", r.stderr);
    expect_states(&first, &all.map(|s| (s, "ran")));
    assert_eq!(production(&p), Some(1));
    let gates = &first["stages"][3]["outputs"]["gates"];
    let names: Vec<&str> = gates
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["gate"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "data_validation",
            "beats_baseline",
            "vs_champion",
            "latency"
        ]
    );
    assert!(status(&p).iter().all(|(_, fresh, _)| *fresh));

    // Nothing changed: everything is skipped, nothing new is stored.
    let versions = latest(&p);
    let (r, second) = run(&p);
    assert_eq!(r.code, 0, "{}", r.stderr);
    expect_states(&second, &all.map(|s| (s, "skipped")));
    assert_eq!(latest(&p), versions);
    assert_eq!(production(&p), Some(1));
    // Rewriting the same bytes is no change: the cache keys on content, not on time.
    p.write("data/bikes.csv", sample(1500).as_bytes());
    expect_states(&run(&p).1, &all.map(|s| (s, "skipped")));
    // Human output says so too.
    let text = p.ok(&["pipeline", "run"]).stdout;
    assert!(text.contains("skipped (cached)"), "{text}");
    assert!(text.contains("0 of 5 stages ran"), "{text}");

    // New data: everything from ingest on reruns.
    p.write("data/bikes.csv", sample(1600).as_bytes());
    let st = status(&p);
    assert_eq!(
        (st[0].1, st[0].2.as_str()),
        (false, "data/bikes.csv changed")
    );
    assert!(st[1..].iter().all(|(_, fresh, _)| !fresh), "{st:?}");
    let (r, third) = run(&p);
    assert_eq!(r.code, 0, "{}", r.stderr);
    expect_states(&third, &all.map(|s| (s, "ran")));
    assert_eq!(third["stages"][0]["outputs"]["version"], 2);
    assert_eq!(third["stages"][0]["outputs"]["rows"], 1600);
    assert_eq!(production(&p), Some(2));

    // A train setting changed: ingest and validate stay cached, train onwards reruns.
    p.config(&config(30, "[pipeline]\nsource = \"data/bikes.csv\"\n"));
    let st = status(&p);
    assert!(st[0].1 && st[1].1, "{st:?}");
    assert_eq!((st[2].1, st[2].2.as_str()), (false, "[train] changed"));
    assert_eq!(st[3].2, "upstream `train` will run first");
    let (r, fourth) = run(&p);
    assert_eq!(r.code, 0, "{}", r.stderr);
    expect_states(
        &fourth,
        &[
            ("ingest", "skipped"),
            ("validate", "skipped"),
            ("train", "ran"),
            ("gate", "ran"),
            ("deploy", "ran"),
        ],
    );
    // The candidate was compared with the champion on the same rows.
    let vs = &fourth["stages"][3]["outputs"]["gates"][2];
    assert_eq!(vs["gate"], "vs_champion");
    assert!(vs["detail"].as_str().unwrap().contains("bikes@2"), "{vs:#}");
    assert_eq!(production(&p), Some(3));
    let history = p
        .ok(&["models", "alias", "history", "bikes", "--json"])
        .json();
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["actor"], "kiln-pipeline", "{history}");
    assert!(
        last["reason"].as_str().unwrap().contains("vs_champion"),
        "{history}"
    );
    assert!(status(&p).iter().all(|(_, fresh, _)| *fresh));

    // A hand-made alias move makes deploy stale, and says so.
    p.ok(&[
        "models",
        "alias",
        "set",
        "production",
        "bikes@1",
        "--reason",
        "by hand",
    ]);
    let st = status(&p);
    assert!(
        st.iter().any(|(s, fresh, why)| s == "train"
            && !fresh
            && why.contains("production moved to bikes@1")),
        "{st:?}"
    );

    // History: every run recorded with its stages.
    let runs = p.ok(&["pipeline", "runs", "--json"]).json();
    assert_eq!(runs.as_array().unwrap().len(), 6);
    assert_eq!(runs[0]["run"]["state"], "succeeded");
    assert_eq!(runs[0]["stages"].as_array().unwrap().len(), 5);
}

/// A command stage that samples `raw.csv` into the file the ingest stage reads.
fn command_project(script: &str) -> Project {
    let p = Project::new();
    p.config(&config(
        10,
        r#"[pipeline]
name = "prep"
[[pipeline.stages]]
name = "prepare"
kind = "command"
run = "sh prepare.sh"
deps = ["prepare.sh", "raw.csv"]
outs = ["data/bikes.csv"]
env = { ROWS = "800" }
[[pipeline.stages]]
name = "ingest"
kind = "ingest"
dataset = "bikes"
path = "data/bikes.csv"
[[pipeline.stages]]
name = "validate"
kind = "validate"
"#,
    ));
    p.write("raw.csv", sample(1500).as_bytes());
    p.write("prepare.sh", script.as_bytes());
    p
}

const SAMPLE_SCRIPT: &str = "mkdir -p data\nhead -n \"$ROWS\" raw.csv > data/bikes.csv\n";

#[test]
fn command_stages_are_cached_by_their_deps_and_fail_clearly() {
    let p = command_project(SAMPLE_SCRIPT);
    let (r, v) = run(&p);
    assert_eq!(r.code, 0, "{}", r.stderr);
    expect_states(
        &v,
        &[("prepare", "ran"), ("ingest", "ran"), ("validate", "ran")],
    );
    assert_eq!(v["stages"][1]["outputs"]["rows"], 799);
    let (_, v) = run(&p);
    expect_states(
        &v,
        &[
            ("prepare", "skipped"),
            ("ingest", "skipped"),
            ("validate", "skipped"),
        ],
    );

    // A changed dep reruns the command, and its new out reruns what reads it.
    let mut raw = sample(1500);
    raw = raw.replacen("Mist", "Clear", 1);
    p.write("raw.csv", raw.as_bytes());
    let st = status(&p);
    assert_eq!((st[0].1, st[0].2.as_str()), (false, "raw.csv changed"));
    let (r, v) = run(&p);
    assert_eq!(r.code, 0, "{}", r.stderr);
    expect_states(
        &v,
        &[("prepare", "ran"), ("ingest", "ran"), ("validate", "ran")],
    );
    assert_eq!(v["stages"][1]["outputs"]["version"], 2);

    // An out deleted by hand is missing: the command reruns; same content, ingest stays.
    std::fs::remove_file(p.path("data/bikes.csv")).unwrap();
    let st = status(&p);
    assert_eq!(st[0].2, "output data/bikes.csv missing");
    let (_, v) = run(&p);
    expect_states(
        &v,
        &[
            ("prepare", "ran"),
            ("ingest", "skipped"),
            ("validate", "skipped"),
        ],
    );

    // --force runs every stage; identical content adds no dataset version.
    let r = p.run(&["pipeline", "run", "--force", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    assert!(states(&v).iter().all(|(_, s)| s == "ran"), "{v:#}");
    assert_eq!(v["stages"][1]["outputs"]["version"], 2);
    assert_eq!(v["stages"][1]["outputs"]["created"], false);
    assert_eq!(v["stages"][0]["reasons"][0], "--force");

    // A command that fails: exit 1, its exit code and stderr, later stages not run.
    p.write(
        "prepare.sh",
        b"echo 'cannot reach the warehouse' >&2\nexit 3\n",
    );
    let (r, v) = run(&p);
    assert_eq!(r.code, 1);
    expect_states(
        &v,
        &[
            ("prepare", "failed"),
            ("ingest", "not_run"),
            ("validate", "not_run"),
        ],
    );
    let msg = v["stages"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("exited with code 3") && msg.contains("cannot reach the warehouse"),
        "{msg}"
    );
    assert!(r.stderr.contains("stage `prepare` failed"), "{}", r.stderr);
    let runs = p.ok(&["pipeline", "runs", "--json"]).json();
    assert_eq!(runs[0]["run"]["state"], "failed");
    assert_eq!(runs[0]["stages"][0]["state"], "failed");
    assert_eq!(runs[0]["stages"].as_array().unwrap().len(), 1);

    // A command that exits 0 without writing its declared out fails too, naming the file.
    p.write("prepare.sh", b"echo done\n");
    let (r, v) = run(&p);
    assert_eq!(r.code, 1);
    let msg = v["stages"][0]["message"].as_str().unwrap();
    assert!(msg.contains("did not write data/bikes.csv"), "{msg}");
    assert!(!status(&p)[0].1, "a failed stage is never fresh");
}

#[test]
fn an_external_training_command_writes_onnx_that_the_pipeline_imports() {
    let Some(python) = common::which("python3") else {
        eprintln!("skipped: python3 is not available");
        return;
    };
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../kiln-onnx/tests/fixtures");
    let p = Project::new();
    p.write(
        "bike_gbr.onnx",
        &std::fs::read(fixtures.join("bike_gbr.onnx")).unwrap(),
    );
    p.write(
        "model.schema.json",
        &std::fs::read(fixtures.join("bike_import_schema.json")).unwrap(),
    );
    // "Training" elsewhere: here, a script that writes the model it was given.
    p.write(
        "train.py",
        b"import shutil, sys\nshutil.copyfile('bike_gbr.onnx', sys.argv[1])\n",
    );
    p.write("data/bikes.csv", sample(1500).as_bytes());
    p.config(&config(
        10,
        &format!(
            r#"[pipeline]
[[pipeline.stages]]
name = "ingest"
kind = "ingest"
path = "data/bikes.csv"
[[pipeline.stages]]
name = "external"
kind = "command"
run = ["{}", "train.py", "model.onnx"]
deps = ["train.py", "bike_gbr.onnx"]
outs = ["model.onnx"]
[[pipeline.stages]]
name = "import"
kind = "import"
file = "model.onnx"
schema = "model.schema.json"
[[pipeline.stages]]
name = "gate"
kind = "gate"
gates = ["beats_baseline", "latency"]
[[pipeline.stages]]
name = "deploy"
kind = "deploy"
"#,
            python.display()
        ),
    ));
    let (r, v) = run(&p);
    assert_eq!(r.code, 0, "{}\n{v:#}", r.stderr);
    expect_states(
        &v,
        &[
            ("ingest", "ran"),
            ("external", "ran"),
            ("import", "ran"),
            ("gate", "ran"),
            ("deploy", "ran"),
        ],
    );
    assert_eq!(v["stages"][2]["outputs"]["model"], "bikes");
    assert_eq!(production(&p), Some(1));
    let (_, v) = run(&p);
    assert!(states(&v).iter().all(|(_, s)| s == "skipped"), "{v:#}");
}

/// ingest → train → gate → deploy with the gate's settings given.
fn gated(iterations: u32, gate: &str) -> String {
    config(
        iterations,
        &format!(
            r#"[pipeline]
[[pipeline.stages]]
name = "ingest"
kind = "ingest"
path = "data/bikes.csv"
[[pipeline.stages]]
name = "train"
kind = "train"
[[pipeline.stages]]
name = "gate"
kind = "gate"
{gate}
[[pipeline.stages]]
name = "deploy"
kind = "deploy"
"#
        ),
    )
}

fn expect_gate_failure(p: &Project, gate: &str, champion: i64) -> Value {
    let (r, v) = run(p);
    assert_eq!(r.code, 1, "{}\n{v:#}", r.stderr);
    expect_states(
        &v,
        &[
            ("ingest", "skipped"),
            ("train", v["stages"][1]["state"].as_str().unwrap()),
            ("gate", "failed"),
            ("deploy", "not_run"),
        ],
    );
    let msg = v["stages"][2]["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("{gate}:")) && msg.contains("production untouched"),
        "{msg}"
    );
    assert!(r.stderr.contains(gate), "{}", r.stderr);
    let failed: Vec<&Value> = v["stages"][2]["outputs"]["gates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["passed"] == false)
        .collect();
    assert_eq!(failed.len(), 1, "{v:#}");
    assert_eq!(failed[0]["gate"], gate);
    assert!(
        failed[0]["value"].is_number(),
        "the gate's numbers are recorded"
    );
    assert_eq!(production(p), Some(champion), "production untouched");
    v
}

#[test]
fn each_gate_fails_with_production_untouched_and_passes_to_deploy() {
    let p = Project::new();
    p.write("data/bikes.csv", sample(1500).as_bytes());
    p.config(&gated(10, ""));
    let (r, v) = run(&p);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(production(&p), Some(1));
    assert_eq!(v["stages"][3]["outputs"]["from"], Value::Null);

    // Latency: an impossible bound on a new candidate.
    p.config(&gated(20, "max_latency_ms = 0.000001"));
    expect_gate_failure(&p, "latency", 1);
    // The bound fixed: the cached candidate passes and is deployed.
    p.config(&gated(20, "max_latency_ms = 50"));
    let (r, v) = run(&p);
    assert_eq!(r.code, 0, "{}", r.stderr);
    expect_states(
        &v,
        &[
            ("ingest", "skipped"),
            ("train", "skipped"),
            ("gate", "ran"),
            ("deploy", "ran"),
        ],
    );
    assert_eq!(production(&p), Some(2));
    assert_eq!(v["stages"][3]["outputs"]["from"], 1);

    // vs_champion: a margin no candidate meets.
    p.config(&gated(25, "margin = 0.9"));
    let v = expect_gate_failure(&p, "vs_champion", 2);
    let msg = v["stages"][2]["message"].as_str().unwrap();
    assert!(msg.contains("bikes@2"), "{msg}");
    p.config(&gated(25, "margin = -0.5"));
    let (r, _) = run(&p);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(production(&p), Some(3));
}

#[test]
fn a_canary_deploy_puts_the_candidate_on_a_rollout_instead_of_into_production() {
    let p = Project::new();
    p.write("data/bikes.csv", sample(1500).as_bytes());
    p.config(&gated(10, ""));
    assert_eq!(run(&p).0.code, 0);
    assert_eq!(production(&p), Some(1));
    let canary = gated(20, "margin = -0.5").replace(
        "kind = \"deploy\"\n",
        "kind = \"deploy\"\nstrategy = \"canary\"\nshare = 0.2\n",
    );
    p.config(&canary);
    let (r, v) = run(&p);
    assert_eq!(r.code, 0, "{}\n{v:#}", r.stderr);
    let out = &v["stages"][3]["outputs"];
    assert_eq!(
        (out["strategy"].as_str(), out["moved"].as_bool()),
        (Some("canary"), Some(false))
    );
    assert_eq!(
        production(&p),
        Some(1),
        "production waits for the rollout's verdict"
    );
    let running = p.ok(&["rollouts", "list", "--running", "--json"]).json();
    let rollout = &running.as_array().unwrap()[0];
    assert_eq!(rollout["id"], out["rollout"]);
    assert_eq!(
        (
            rollout["challenger_version"].as_i64(),
            rollout["champion_version"].as_i64()
        ),
        (Some(2), Some(1))
    );
    assert_eq!(rollout["share"], 0.2);
    let shown = p.ok(&["models", "show", "bikes@canary", "--json"]).json();
    assert_eq!(shown["version"]["version"], 2);
    // Nothing changed: the deploy is not repeated, and after the rollout ends (here by
    // hand) the same candidate is not put on a second one.
    let (_, v) = run(&p);
    assert!(states(&v).iter().all(|(_, s)| s == "skipped"), "{v:#}");
    p.ok(&["rollouts", "stop", "bikes", "--reason", "seen enough"]);
    let (_, v) = run(&p);
    assert!(states(&v).iter().all(|(_, s)| s == "skipped"), "{v:#}");
    assert_eq!(
        p.ok(&["rollouts", "list", "--json"])
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// `rows` rows of three features and a target that have nothing to do with each other
/// (a fixed-seed generator, so every run sees the same rows).
fn noise(rows: usize) -> String {
    let mut state = 12_345_u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut out = String::from("x1,x2,x3,y\n");
    for _ in 0..rows {
        let (a, b, c, y) = (next(), next(), next(), next() * 100.0);
        out.push_str(&format!("{a:.4},{b:.4},{c:.4},{y:.3}\n"));
    }
    out
}

#[test]
fn a_model_that_learns_noise_fails_beats_baseline() {
    let p = Project::new();
    p.write("noise.csv", noise(600).as_bytes());
    // Deep trees at full learning rate memorize noise: worse than predicting the mean.
    let toml = |gates: &str| {
        format!(
            r#"[datasets.noise]
target = "y"
[train]
dataset = "noise"
register = "bikes"
[train.gbdt]
iterations = 100
learning_rate = 1.0
max_depth = 8
min_leaf_weight = 1.0
[pipeline]
[[pipeline.stages]]
name = "ingest"
kind = "ingest"
path = "noise.csv"
[[pipeline.stages]]
name = "train"
kind = "train"
[[pipeline.stages]]
name = "gate"
kind = "gate"
gates = {gates}
[[pipeline.stages]]
name = "deploy"
kind = "deploy"
"#
        )
    };
    // Without that gate it would ship: production is bikes@1.
    p.config(&toml("[\"latency\"]"));
    let (r, _) = run(&p);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(production(&p), Some(1));
    p.config(&toml("[\"beats_baseline\", \"latency\"]"));
    let (r, v) = run(&p);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let gate = &v["stages"][2];
    assert_eq!(gate["state"], "failed", "{v:#}");
    let g = &gate["outputs"]["gates"][0];
    assert_eq!(
        (&g["gate"], &g["passed"]),
        (&"beats_baseline".into(), &false.into())
    );
    assert!(
        g["value"].as_f64().unwrap() > g["bound"].as_f64().unwrap(),
        "{g:#}"
    );
    assert!(
        gate["message"]
            .as_str()
            .unwrap()
            .contains("trivial baseline"),
        "{gate:#}"
    );
    assert_eq!(v["stages"][3]["state"], "not_run");
    assert_eq!(production(&p), Some(1), "production untouched");
}

#[test]
fn bad_pipeline_settings_exit_2_naming_the_stage_and_key() {
    let p = Project::new();
    p.config(&config(
        10,
        "[pipeline]\n[[pipeline.stages]]\nname = \"fit\"\nkind = \"train\"\niterations = 5\n",
    ));
    let r = p.run(&["pipeline", "run"]);
    expect_input_error(&r, "`fit`");
    assert!(r.stderr.contains("iterations"), "{}", r.stderr);
    assert!(r.stderr.contains("hint:"), "{}", r.stderr);
    p.config(&config(
        10,
        "[pipeline]\n[[pipeline.stages]]\nname = \"ship\"\nkind = \"deploy\"\nstrategy = \"blue-green\"\n",
    ));
    expect_input_error(
        &p.run(&["pipeline", "status"]),
        "use direct, shadow or canary",
    );
}

#[test]
fn validate_checks_the_whole_snapshot_against_the_rules_as_they_are_now() {
    let text = sample(1200);
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let temp = header.split(',').position(|c| c == "temp").unwrap();
    let hot = |l: &str| l.split(',').nth(temp).unwrap().parse::<f64>().unwrap() > 30.0;
    let rows: Vec<&str> = lines.collect();
    let (warm, mild): (Vec<&str>, Vec<&str>) = rows.iter().partition(|l| hot(l));
    assert!(!warm.is_empty() && mild.len() > 200);
    let file = |rows: &[&str]| format!("{header}\n{}\n", rows.join("\n"));
    let pipeline = "[pipeline]\n[[pipeline.stages]]\nname = \"ingest\"\nkind = \"ingest\"\n\
        path = \"data/new.csv\"\nappend = true\n[[pipeline.stages]]\nname = \"validate\"\n\
        kind = \"validate\"\n";
    let p = Project::new();
    p.config(&config(10, pipeline));
    p.write("data/new.csv", file(&rows[..600]).as_bytes());
    let (r, v) = run(&p);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(v["stages"][1]["outputs"]["violations"], 0);

    // The rule tightened, and rows that meet it appended: the older rows no longer do.
    p.config(&config(10, pipeline).replacen("max = 50.0", "max = 30.0", 1));
    let st = status(&p);
    assert_eq!(st[0].2, "[datasets.bikes] changed", "{st:?}");
    assert_eq!(st[1].2, "upstream `ingest` will run first", "{st:?}");
    p.write("data/new.csv", file(&mild[mild.len() - 100..]).as_bytes());
    let (r, v) = run(&p);
    assert_eq!(r.code, 1, "{}\n{v:#}", r.stderr);
    expect_states(&v, &[("ingest", "ran"), ("validate", "failed")]);
    assert_eq!(v["stages"][0]["outputs"]["version"], 2);
    let out = &v["stages"][1]["outputs"];
    let hot_before = rows[..600].iter().filter(|l| hot(l)).count() as u64;
    assert_eq!(out["violations"].as_u64(), Some(hot_before), "{out:#}");
    assert_eq!(out["by_rule"]["range"].as_u64(), Some(hot_before));
    let msg = v["stages"][1]["message"].as_str().unwrap();
    assert!(
        msg.contains("bikes@2") && msg.contains("column `temp`") && msg.contains("[range]"),
        "{msg}"
    );
}

/// Two runs of one pipeline at the same time: their ingests race to one snapshot (one dataset
/// version, no error), both train and pass the gate against the same champion, and a barrier
/// makes them deploy together. Exactly one alias move wins; the other run fails naming the
/// conflict, and nothing of it is visible as a move.
#[test]
fn concurrent_runs_share_one_snapshot_and_exactly_one_promotes() {
    let p = Project::new();
    p.config(&config(
        10,
        r#"[pipeline]
[[pipeline.stages]]
name = "ingest"
kind = "ingest"
path = "data/bikes.csv"
[[pipeline.stages]]
name = "train"
kind = "train"
[[pipeline.stages]]
name = "gate"
kind = "gate"
gates = ["beats_baseline"]
[[pipeline.stages]]
name = "barrier"
kind = "command"
run = ["sh", "-c", "touch arrived.$$; n=0; while [ $(ls arrived.* | wc -l) -lt 2 ] && [ $n -lt 600 ]; do sleep 0.05; n=$((n+1)); done"]
[[pipeline.stages]]
name = "deploy"
kind = "deploy"
"#,
    ));
    p.write("data/bikes.csv", sample(1500).as_bytes());
    let start = || {
        p.command()
            .args(["pipeline", "run", "--json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (start(), start());
    let runs = [a, b].map(|c| common::finish(c.wait_with_output().unwrap()));
    let arrived = std::fs::read_dir(p.dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("arrived.")
        })
        .count();
    assert_eq!(
        arrived, 2,
        "both runs reach the barrier:\n{}\n{}\n{}\n{}",
        runs[0].stdout, runs[0].stderr, runs[1].stdout, runs[1].stderr
    );
    let won: Vec<&Run> = runs.iter().filter(|r| r.code == 0).collect();
    let lost: Vec<&Run> = runs.iter().filter(|r| r.code != 0).collect();
    assert_eq!(
        (won.len(), lost.len()),
        (1, 1),
        "{}\n{}\n{}\n{}",
        runs[0].stdout,
        runs[0].stderr,
        runs[1].stdout,
        runs[1].stderr
    );
    let v = lost[0].json();
    expect_states(
        &v,
        &[
            ("ingest", "ran"),
            ("train", "ran"),
            ("gate", "ran"),
            ("barrier", "ran"),
            ("deploy", "failed"),
        ],
    );
    let msg = v["stages"][4]["message"].as_str().unwrap();
    assert!(msg.contains("moved meanwhile"), "{msg}");
    assert!(
        lost[0].stderr.contains("moved meanwhile"),
        "{}",
        lost[0].stderr
    );

    // One snapshot, one move: production is the winner's candidate.
    let log = p.ok(&["data", "log", "bikes", "--json"]).json();
    assert_eq!(log.as_array().map(Vec::len), Some(1), "{log:#}");
    let winner = won[0].json();
    let promoted = winner["stages"][4]["outputs"]["version"].as_i64().unwrap();
    assert_eq!(production(&p), Some(promoted));
    let history = p
        .ok(&["models", "alias", "history", "bikes", "--json"])
        .json();
    assert_eq!(history.as_array().map(Vec::len), Some(1), "{history:#}");
}
