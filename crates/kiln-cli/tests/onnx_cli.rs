//! `kiln models import`: scikit-learn models exported to ONNX (fixtures made by
//! crates/kiln-onnx/tests/fixtures/make_onnx_fixtures.py) are imported, evaluated, carded and
//! then scored by `kiln predict` from raw rows; every prediction must equal scikit-learn's.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;

use common::{Project, Run, expect_input_error};

const CONFIG: &str = include_str!("../../../examples/bikeshare/kiln.toml");
const DATA: &[u8] = include_bytes!("../../../examples/bikeshare/data/bike-rental-dataset.csv.gz");

fn fixture(name: &str) -> PathBuf {
    manifest_dir()
        .join("../kiln-onnx/tests/fixtures")
        .join(name)
}

fn gunzip(bytes: &[u8]) -> String {
    let mut s = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut s)
        .unwrap();
    s
}

/// The bike data with a class column `busy` ("1" when cnt >= 200), the binary target the
/// fixture classifiers were trained on.
fn project() -> Project {
    let p = Project::new();
    p.config(&format!(
        "{CONFIG}\n[datasets.bikes.columns.busy]\ntype = \"categorical\"\nallowed = [\"0\", \"1\"]\n"
    ));
    let text = gunzip(DATA);
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let cnt = header.iter().position(|h| *h == "cnt").unwrap();
    let mut out = format!("{},busy\n", header.join(","));
    for line in lines {
        let c: f64 = line.split(',').nth(cnt).unwrap().parse().unwrap();
        out.push_str(&format!("{line},{}\n", u8::from(c >= 200.0)));
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(out.as_bytes()).unwrap();
    p.write("bikes.csv.gz", &gz.finish().unwrap());
    p.ok(&["data", "add", "bikes.csv.gz", "--dataset", "bikes"]);
    for f in [
        "bike_gbr.onnx",
        "bike_rf.onnx",
        "bike_logreg.onnx",
        "bike_gbc.onnx",
        "bike_import_schema.json",
        "bike_test_rows.csv.gz",
    ] {
        p.write(f, &std::fs::read(fixture(f)).unwrap());
    }
    p
}

fn read_csv(text: &str) -> BTreeMap<String, Vec<f64>> {
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_owned).collect();
    let mut cols: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for rec in r.records() {
        for (h, v) in header.iter().zip(rec.unwrap().iter()) {
            cols.entry(h.clone())
                .or_default()
                .push(v.parse().unwrap_or(f64::NAN));
        }
    }
    cols
}

#[test]
fn imported_models_predict_what_scikit_learn_predicts() {
    let p = project();
    let expected = read_csv(&gunzip(
        &std::fs::read(fixture("bike_expected.csv.gz")).unwrap(),
    ));
    let rows = expected["gbr"].len();
    assert_eq!(rows, 4376);
    // (file, model name, extra import flags, expected column, output column, tolerance)
    let cases: [(&str, &str, &[&str], &str, &str); 4] = [
        ("bike_gbr.onnx", "gbr", &[], "gbr", "prediction"),
        ("bike_rf.onnx", "rf", &[], "rf", "prediction"),
        (
            "bike_logreg.onnx",
            "logreg",
            &["--target", "busy"],
            "logreg_p1",
            "p_1",
        ),
        (
            "bike_gbc.onnx",
            "gbc",
            &["--target", "busy"],
            "gbc_p1",
            "p_1",
        ),
    ];
    for (file, name, extra, want, column) in cases {
        let mut args = vec![
            "models",
            "import",
            file,
            "--name",
            name,
            "--schema",
            "bike_import_schema.json",
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = p.ok(&args).json();
        assert_eq!(out["registered"]["model"], name);
        assert!(out["run_id"].is_null());
        // Evaluated on the same time split as a trained model, against the same baselines.
        let data = &out["evaluation"]["data"];
        assert_eq!(data["valid_time"][0], "2012-07-01");
        let m = &out["evaluation"]["metrics"];
        let primary = out["evaluation"]["primary"].as_str().unwrap();
        assert!(
            m["model"][primary].as_f64().unwrap() < m["baseline"][primary].as_f64().unwrap(),
            "{name}: {m}"
        );

        let scored = format!("{name}.csv");
        p.ok(&[
            "predict",
            "-m",
            name,
            "-i",
            "bike_test_rows.csv.gz",
            "-o",
            &scored,
        ]);
        let got = read_csv(&std::fs::read_to_string(p.path(&scored)).unwrap());
        assert_eq!(got[column].len(), rows);
        let mut worst = 0.0f64;
        for (g, e) in got[column].iter().zip(&expected[want]) {
            // The ONNX file stores trees and weights in float32: a regressor's value can only
            // be promised to 1e-5 relative to its size; probabilities to 1e-5 absolute.
            let tol = if column == "prediction" {
                1e-5 * e.abs().max(1.0)
            } else {
                1e-5
            };
            assert!((g - e).abs() <= tol, "{name}: {g} vs {e}");
            worst = worst.max((g - e).abs());
        }
        eprintln!("{name}: max |kiln - scikit-learn| = {worst:e}");
    }

    // Imported versions get a card that says what they are.
    p.ok(&["models", "card", "gbr", "-o", "gbr.md"]);
    let card = std::fs::read_to_string(p.path("gbr.md")).unwrap();
    assert!(card.contains("imported as ONNX"), "{card}");
    assert!(card.contains("none (imported model)"));
    assert!(card.contains("| season | winter |"));
}

#[test]
fn bad_onnx_files_and_schemas_are_refused_clearly() {
    let p = project();
    let import = |file: &str, schema: &str, extra: &[&str]| -> Run {
        let mut args = vec!["models", "import", file, "--name", "m", "--schema", schema];
        args.extend_from_slice(extra);
        p.run(&args)
    };
    p.write("garbage.onnx", b"this is not a model");
    expect_input_error(
        &import("garbage.onnx", "bike_import_schema.json", &[]),
        "not an ONNX model",
    );
    expect_input_error(
        &import("bike_test_rows.csv.gz", "bike_import_schema.json", &[]),
        "not an ONNX model",
    );
    // Seven inputs named for a model that takes eight.
    let schema = std::fs::read_to_string(p.path("bike_import_schema.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&schema).unwrap();
    v["inputs"].as_array_mut().unwrap().pop();
    p.write("seven.json", v.to_string().as_bytes());
    expect_input_error(
        &import("bike_gbr.onnx", "seven.json", &[]),
        "takes 8 input features, the schema names 7",
    );
    // An input the dataset does not have, and one whose type differs.
    let mut v: serde_json::Value = serde_json::from_str(&schema).unwrap();
    v["inputs"][7]["name"] = "wind".into();
    p.write("wind.json", v.to_string().as_bytes());
    expect_input_error(
        &import("bike_gbr.onnx", "wind.json", &[]),
        "model input `wind` is not a column",
    );
    let mut v: serde_json::Value = serde_json::from_str(&schema).unwrap();
    v["inputs"][4] =
        serde_json::json!({"name": "temp", "type": "categorical", "categories": ["a"]});
    p.write("typed.json", v.to_string().as_bytes());
    expect_input_error(
        &import("bike_gbr.onnx", "typed.json", &[]),
        "model input `temp` is categorical in the schema but numeric",
    );
    p.write("broken.json", b"{\"inputs\": [");
    expect_input_error(
        &import("bike_gbr.onnx", "broken.json", &[]),
        "not a model schema",
    );
    // A classifier against a numeric target, a regressor against classes.
    expect_input_error(
        &import("bike_logreg.onnx", "bike_import_schema.json", &[]),
        "is a classifier",
    );
    expect_input_error(
        &import(
            "bike_gbr.onnx",
            "bike_import_schema.json",
            &["--target", "busy"],
        ),
        "is a regressor",
    );
    expect_input_error(
        &import("missing.onnx", "bike_import_schema.json", &[]),
        "cannot read missing.onnx",
    );
    // Nothing was registered by any of these.
    let models = p.ok(&["models", "list", "--json"]).json();
    assert_eq!(models.as_array().unwrap().len(), 0);
}

/// This crate's directory, read when the test runs: cargo sets `CARGO_MANIFEST_DIR` for test
/// processes. The compile-time value can name another checkout when a build cache is shared
/// between clones (cargo does not rebuild a test when only the clone's path changed).
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
