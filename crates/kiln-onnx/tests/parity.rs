//! Parity of kiln-onnx with scikit-learn on the bikeshare fixtures, and its errors.
//!
//! The fixtures (tests/fixtures/, made by make_onnx_fixtures.py) hold the raw test rows, the
//! input schema, four skl2onnx models and scikit-learn's predictions for every row. This test
//! needs no Python: it encodes the raw rows with the schema, as an importer would, scores them
//! and compares.
//!
//! Tolerances:
//! * probabilities: absolute 1e-5.
//! * regressors (`cnt`, values up to ~1,000): 1e-5 × max(1, |y|). The exported file holds the
//!   model in float32 (skl2onnx rounds the base value, 167.71, and every tree's leaf value)
//!   and the output is float32, whose spacing is already 3e-5 at 500; scikit-learn works in
//!   float64. Rounding the base value alone can move a prediction by 7.6e-6, so an absolute
//!   1e-5 cannot be promised by any runtime reading this file. kiln-onnx sums the votes in f64;
//!   the measured worst case is 5.6e-6 × max(1, |y|) (summing in f32, as tract's own tree
//!   evaluator does, reaches 4.6e-5 where partial sums of ~170 cancel to a prediction near 0).
//!   A wrong branch, a lost tree or a missing base value moves a prediction by whole units.

use std::collections::HashMap;
use std::path::PathBuf;

use kiln_onnx::{OnnxError, OnnxModel, OnnxOutput};

fn fixture(name: &str) -> PathBuf {
    manifest_dir().join("tests").join("fixtures").join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("reading fixture {name}: {e}"))
}

/// A gzip-compressed fixture, decompressed as it is read.
fn gunzip(name: &str) -> flate2::read::GzDecoder<std::fs::File> {
    let file = std::fs::File::open(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    flate2::read::GzDecoder::new(file)
}

fn load(name: &str) -> OnnxModel {
    OnnxModel::from_bytes(&read(name)).unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

enum Input {
    Categorical(Vec<String>),
    Numeric,
}

/// The test rows encoded with bike_import_schema.json: (rows, row-major features).
fn encoded_rows() -> (usize, Vec<f32>) {
    let schema: serde_json::Value =
        serde_json::from_slice(&read("bike_import_schema.json")).expect("schema is JSON");
    let inputs: Vec<(String, Input)> = schema["inputs"]
        .as_array()
        .expect("inputs is an array")
        .iter()
        .map(|i| {
            let name = i["name"].as_str().expect("input name").to_string();
            let kind = match i["type"].as_str() {
                Some("categorical") => Input::Categorical(
                    i["categories"]
                        .as_array()
                        .expect("categories")
                        .iter()
                        .map(|c| c.as_str().expect("category is a string").to_string())
                        .collect(),
                ),
                Some("numeric") => Input::Numeric,
                other => panic!("unknown input type {other:?}"),
            };
            (name, kind)
        })
        .collect();
    assert_eq!(inputs.len(), 8);

    let mut reader = csv::Reader::from_reader(gunzip("bike_test_rows.csv.gz"));
    let header = reader.headers().expect("header").clone();
    let columns: Vec<usize> = inputs
        .iter()
        .map(|(name, _)| {
            header
                .iter()
                .position(|h| h == name)
                .unwrap_or_else(|| panic!("no column {name}"))
        })
        .collect();
    let mut x = vec![];
    let mut rows = 0;
    for record in reader.records() {
        let record = record.expect("csv record");
        for ((name, kind), &col) in inputs.iter().zip(&columns) {
            let raw = &record[col];
            let value = match kind {
                Input::Categorical(categories) => categories
                    .iter()
                    .position(|c| c == raw)
                    .unwrap_or_else(|| panic!("{name}: {raw:?} is not a category"))
                    as f32,
                // Decimal text -> f64 -> f32, exactly as numpy's float64 parse + astype(float32).
                Input::Numeric => raw
                    .parse::<f64>()
                    .unwrap_or_else(|e| panic!("{name}: {raw:?}: {e}"))
                    as f32,
            };
            x.push(value);
        }
        rows += 1;
    }
    (rows, x)
}

fn expected() -> HashMap<String, Vec<f64>> {
    let mut reader = csv::Reader::from_reader(gunzip("bike_expected.csv.gz"));
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(String::from)
        .collect();
    let mut columns: HashMap<String, Vec<f64>> =
        header.iter().map(|h| (h.clone(), vec![])).collect();
    for record in reader.records() {
        let record = record.expect("csv record");
        for (h, v) in header.iter().zip(record.iter()) {
            columns
                .get_mut(h)
                .expect("column")
                .push(v.parse().expect("a float"));
        }
    }
    columns
}

/// Per-row scores of `model`: the value, or the probability of class "1".
fn scores(model: &OnnxModel, rows: usize, x: &[f32]) -> Vec<f64> {
    let out = model.predict(rows, x).expect("predict");
    match model.output() {
        OnnxOutput::Values => {
            assert_eq!(out.len(), rows);
            out
        }
        OnnxOutput::Probabilities { labels } => {
            assert_eq!(labels, &["0", "1"]);
            assert_eq!(out.len(), rows * 2);
            for p in out.chunks(2) {
                assert!(
                    (p[0] + p[1] - 1.0).abs() < 1e-5,
                    "probabilities {p:?} do not sum to 1"
                );
            }
            out.chunks(2).map(|p| p[1]).collect()
        }
    }
}

fn check_parity(file: &str, column: &str, relative: bool) {
    let (rows, x) = encoded_rows();
    let expected = expected();
    let want = &expected[column];
    assert_eq!(
        rows,
        want.len(),
        "test rows and expected predictions differ in count"
    );
    assert_eq!(rows, 4376);

    let model = load(file);
    assert_eq!(model.features(), 8);
    assert_eq!(model.input_name(), "input");
    let got = scores(&model, rows, &x);
    assert_eq!(got.len(), want.len());

    let (mut max_abs, mut max_rel) = (0f64, 0f64);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let diff = (g - w).abs();
        let scale = if relative { w.abs().max(1.0) } else { 1.0 };
        max_abs = max_abs.max(diff);
        max_rel = max_rel.max(diff / w.abs().max(1.0));
        assert!(
            diff <= 1e-5 * scale,
            "{file} row {i}: kiln-onnx {g}, scikit-learn {w}, difference {diff:e}"
        );
    }
    println!("{file}: {rows} rows, max |diff| {max_abs:e}, max |diff|/max(1,|y|) {max_rel:e}");
}

#[test]
fn gradient_boosting_regressor_matches_sklearn() {
    check_parity("bike_gbr.onnx", "gbr", true);
}

#[test]
fn random_forest_regressor_matches_sklearn() {
    check_parity("bike_rf.onnx", "rf", true);
}

#[test]
fn logistic_regression_with_scaler_matches_sklearn() {
    check_parity("bike_logreg.onnx", "logreg_p1", false);
}

#[test]
fn gradient_boosting_classifier_matches_sklearn() {
    check_parity("bike_gbc.onnx", "gbc_p1", false);
}

#[test]
fn outputs_are_described() {
    assert_eq!(load("bike_gbr.onnx").output(), &OnnxOutput::Values);
    assert_eq!(load("bike_rf.onnx").output(), &OnnxOutput::Values);
    for file in ["bike_logreg.onnx", "bike_gbc.onnx"] {
        assert_eq!(
            load(file).output(),
            &OnnxOutput::Probabilities {
                labels: vec!["0".into(), "1".into()]
            }
        );
    }
}

#[test]
fn batch_sizes_give_identical_rows() {
    let (rows, x) = encoded_rows();
    for file in [
        "bike_gbr.onnx",
        "bike_rf.onnx",
        "bike_logreg.onnx",
        "bike_gbc.onnx",
    ] {
        let model = load(file);
        let full = model.predict(rows, &x).expect("full batch");
        let width = full.len() / rows;
        // One row at a time (every 7th row, to keep debug builds quick), then uneven chunks.
        for i in (0..rows).step_by(7) {
            let one = model.predict(1, &x[i * 8..(i + 1) * 8]).expect("one row");
            assert_eq!(
                one,
                full[i * width..(i + 1) * width],
                "{file} row {i} alone"
            );
        }
        let mut chunked = vec![];
        let mut start = 0;
        for size in [1usize, 2, 1000, 3, rows].iter().cycle() {
            if start == rows {
                break;
            }
            let n = (*size).min(rows - start);
            chunked.extend(
                model
                    .predict(n, &x[start * 8..(start + n) * 8])
                    .expect("chunk"),
            );
            start += n;
        }
        assert_eq!(chunked, full, "{file} in chunks");
        assert_eq!(model.predict(0, &[]).expect("no rows"), Vec::<f64>::new());
    }
}

#[test]
fn a_model_is_shared_between_threads() {
    let (rows, x) = encoded_rows();
    let model = load("bike_gbc.onnx");
    let full = model.predict(rows, &x).expect("full batch");
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let (model, x) = (&model, &x);
                s.spawn(move || {
                    let start = t * 1000;
                    (
                        start,
                        model
                            .predict(1000, &x[start * 8..(start + 1000) * 8])
                            .expect("part"),
                    )
                })
            })
            .collect();
        for h in handles {
            let (start, part) = h.join().expect("thread");
            assert_eq!(part, full[start * 2..(start + 1000) * 2]);
        }
    });
}

fn not_a_model(bytes: &[u8], what: &str) {
    match OnnxModel::from_bytes(bytes) {
        Err(e @ OnnxError::NotAModel(_)) => {
            let message = e.to_string();
            assert!(
                message.starts_with("not an ONNX model: "),
                "{what}: {message}"
            );
            assert!(
                message.len() > "not an ONNX model: ".len() + 10,
                "{what}: {message}"
            );
            println!("{what}: {message}");
        }
        Err(e) => panic!("{what}: expected NotAModel, got {e:?}"),
        Ok(m) => panic!("{what}: loaded as a model: {m:?}"),
    }
}

#[test]
fn garbage_truncated_and_csv_files_are_not_models() {
    not_a_model(b"", "empty file");
    // Deterministic pseudo-random bytes.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let garbage: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    not_a_model(&garbage, "random bytes");
    let model = read("bike_gbr.onnx");
    for cut in [10, 1000, model.len() / 2, model.len() - 7] {
        not_a_model(&model[..cut], &format!("model truncated to {cut} bytes"));
    }
    let mut csv_text = Vec::new();
    std::io::Read::read_to_end(&mut gunzip("bike_test_rows.csv.gz"), &mut csv_text).unwrap();
    not_a_model(&csv_text, "a CSV file");
    not_a_model(&read("bike_import_schema.json"), "a JSON file");
}

#[test]
fn a_model_with_two_inputs_is_refused() {
    match OnnxModel::from_bytes(&read("bad_two_inputs.onnx")) {
        Err(e @ OnnxError::Inputs(_)) => {
            let message = e.to_string();
            assert!(message.contains("found 2"), "{message}");
            assert!(
                message.contains("`a`") && message.contains("`b`"),
                "{message}"
            );
            println!("{message}");
        }
        other => panic!("expected an Inputs error, got {other:?}"),
    }
}

#[test]
fn zipmap_is_refused_with_a_hint() {
    match OnnxModel::from_bytes(&read("bad_zipmap.onnx")) {
        Err(e @ OnnxError::Unsupported(_)) => {
            let message = e.to_string();
            assert!(message.contains("operator `ZipMap`"), "{message}");
            assert!(message.contains("zipmap"), "{message}");
            println!("{message}");
        }
        other => panic!("expected an Unsupported error, got {other:?}"),
    }
}

#[test]
fn a_looping_tree_is_refused() {
    match OnnxModel::from_bytes(&read("bad_tree_cycle.onnx")) {
        Err(e @ OnnxError::Unsupported(_)) => {
            let message = e.to_string();
            assert!(
                message.contains("operator `TreeEnsembleRegressor`"),
                "{message}"
            );
            assert!(message.contains("not a tree"), "{message}");
            println!("{message}");
        }
        other => panic!("expected an Unsupported error, got {other:?}"),
    }
}

#[test]
fn wrong_input_length_is_an_error() {
    let model = load("bike_rf.onnx");
    for (rows, len) in [(2usize, 15usize), (1, 9), (0, 8), (3, 0)] {
        match model.predict(rows, &vec![0.0; len]) {
            Err(e @ OnnxError::Inputs(_)) => {
                let message = e.to_string();
                assert!(message.contains(&format!("got {len}")), "{message}");
            }
            other => panic!("{rows} rows, {len} values: expected an Inputs error, got {other:?}"),
        }
    }
    assert!(matches!(
        model.predict(usize::MAX, &[]),
        Err(OnnxError::Inputs(_))
    ));
}

#[test]
fn missing_values_follow_the_model() {
    // NaN features must not panic; sklearn trees send NaN down the default branch recorded in
    // the model (here: `nodes_missing_value_tracks_true` = false everywhere).
    let model = load("bike_gbr.onnx");
    let out = model.predict(1, &[f32::NAN; 8]).expect("NaN row");
    assert_eq!(out.len(), 1);
    assert!(out[0].is_finite());
}

/// This crate's directory, read when the test runs: cargo sets `CARGO_MANIFEST_DIR` for test
/// processes. The compile-time value can name another checkout when a build cache is shared
/// between clones (cargo does not rebuild a test when only the clone's path changed).
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
