//! Every drift statistic against SciPy's and Evidently's own output
//! (`tests/fixtures/drift_cases.json`, written by `gen_drift_fixtures.py`).

use std::collections::BTreeMap;

use kiln_monitor::{
    CategoricalCounts, ColumnKind, ColumnSummary, DriftMethod, DriftOptions, KsMethod,
    NumericCounts, chisquare, column_drift, dataset_drift, default_method, ks_2samp, kstwo_sf,
    wasserstein_distance,
};
use serde_json::Value;

const TOLERANCE: f64 = 1e-6;

fn fixtures() -> Value {
    let path = manifest_dir().join("tests/fixtures/drift_cases.json");
    let text = std::fs::read_to_string(path).expect("fixture file");
    serde_json::from_str(&text).expect("fixture JSON")
}

/// Within 1e-6, relative to the expected value once it exceeds 1.
fn assert_close(what: &str, actual: f64, expected: f64) {
    let scale = expected.abs().max(1.0);
    assert!(
        (actual - expected).abs() <= TOLERANCE * scale
            || (actual.is_infinite() && actual == expected),
        "{what}: got {actual:e}, expected {expected:e}"
    );
}

/// Worst relative error seen for values that are not tiny, to report how close the port is.
#[derive(Default)]
struct Worst {
    relative: f64,
    at: String,
}

impl Worst {
    fn record(&mut self, what: &str, actual: f64, expected: f64) {
        if expected.abs() > 1e-300 {
            let relative = ((actual - expected) / expected).abs();
            if relative > self.relative {
                self.relative = relative;
                self.at = what.to_owned();
            }
        }
    }
}

fn numeric_raw(values: &[Value]) -> Vec<f64> {
    values
        .iter()
        .map(|v| match v {
            Value::Null => f64::NAN,
            Value::String(s) if s == "inf" => f64::INFINITY,
            Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
            other => other.as_f64().expect("number"),
        })
        .collect()
}

fn categorical_raw(values: &[Value]) -> Vec<Option<String>> {
    values
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect()
}

fn summary(kind: &str, sample: &Value) -> ColumnSummary {
    if let Some(raw) = sample["raw"].as_array() {
        return if kind == "numeric" {
            let values = numeric_raw(raw);
            let whole = NumericCounts::from_values(&values);
            // Summaries of two halves merge into the summary of the whole.
            let (left, right) = values.split_at(values.len() / 2);
            let merged = NumericCounts::from_values(left)
                .merge(&NumericCounts::from_values(right))
                .unwrap();
            assert_eq!(merged, whole);
            ColumnSummary::Numeric(whole)
        } else {
            let labels = categorical_raw(raw);
            let whole = CategoricalCounts::from_values(labels.iter().map(|l| l.as_deref()));
            let (left, right) = labels.split_at(labels.len() / 2);
            let merged = CategoricalCounts::from_values(left.iter().map(|l| l.as_deref()))
                .merge(&CategoricalCounts::from_values(
                    right.iter().map(|l| l.as_deref()),
                ))
                .unwrap();
            assert_eq!(merged, whole);
            ColumnSummary::Categorical(whole)
        };
    }
    let counts: Vec<u64> = sample["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .collect();
    let missing = sample["missing"].as_u64().unwrap();
    let values = sample["values"].as_array().unwrap();
    if kind == "numeric" {
        let values: Vec<f64> = values.iter().map(|v| v.as_f64().unwrap()).collect();
        ColumnSummary::Numeric(NumericCounts::from_counts(&values, &counts, missing, 0).unwrap())
    } else {
        let map: BTreeMap<String, u64> = values
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .zip(counts)
            .collect();
        ColumnSummary::Categorical(CategoricalCounts::from_counts(map, missing))
    }
}

fn numeric(summary: &ColumnSummary) -> &NumericCounts {
    match summary {
        ColumnSummary::Numeric(n) => n,
        ColumnSummary::Categorical(_) => panic!("expected a numeric summary"),
    }
}

struct Case {
    name: String,
    integer: bool,
    reference: ColumnSummary,
    current: ColumnSummary,
    expected: Value,
}

fn cases(document: &Value) -> Vec<Case> {
    document["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|case| {
            let kind = case["kind"].as_str().unwrap();
            Case {
                name: case["name"].as_str().unwrap().to_owned(),
                integer: case["integer"].as_bool().unwrap(),
                reference: summary(kind, &case["reference"]),
                current: summary(kind, &case["current"]),
                expected: case["expected"].clone(),
            }
        })
        .collect()
}

#[test]
fn evidently_stattests_match() {
    let document = fixtures();
    let mut worst = Worst::default();
    let mut checked = 0;
    for case in cases(&document) {
        let evidently = case.expected["evidently"].as_object().unwrap();
        for (name, expected) in evidently {
            let method = DriftMethod::parse(name).unwrap();
            let options = DriftOptions {
                method: Some(method),
                threshold: None,
                integer_column: Some(case.integer),
            };
            let drift = column_drift(&case.reference, &case.current, &options)
                .unwrap_or_else(|e| panic!("{} {name}: {e}", case.name));
            let what = format!("{} {name}", case.name);
            match expected["score"].as_f64() {
                Some(score) => {
                    assert_close(&what, drift.score, score);
                    worst.record(&what, drift.score, score);
                }
                // Evidently's chi-squared is NaN over a single value; Kiln reports p = 1.
                None => {
                    assert_eq!(method, DriftMethod::ChiSquare, "{what}: unexpected NaN");
                    assert_eq!(drift.score, 1.0, "{what}");
                }
            }
            assert_eq!(
                drift.drifted,
                expected["drifted"].as_bool().unwrap(),
                "{what}: verdict"
            );
            assert_eq!(drift.threshold, method.default_threshold(), "{what}");
            checked += 1;
        }
    }
    println!(
        "{checked} Evidently scores; worst relative error {:e} at {}",
        worst.relative, worst.at
    );
}

#[test]
fn default_method_and_rates_match() {
    let document = fixtures();
    for case in cases(&document) {
        let expected = &case.expected;
        let method = default_method(&case.reference, &case.current).unwrap();
        assert_eq!(
            method.name(),
            expected["default_method"].as_str().unwrap(),
            "{}",
            case.name
        );
        // With no options, column_drift runs the same method.
        let drift = column_drift(&case.reference, &case.current, &DriftOptions::default()).unwrap();
        assert_eq!(drift.method, method, "{}", case.name);

        let rates = &expected["missing_rate"];
        assert_close(
            &format!("{} reference missing rate", case.name),
            case.reference.missing_rate().unwrap(),
            rates["reference"].as_f64().unwrap(),
        );
        assert_close(
            &format!("{} current missing rate", case.name),
            case.current.missing_rate().unwrap(),
            rates["current"].as_f64().unwrap(),
        );
        if let (ColumnSummary::Categorical(r), ColumnSummary::Categorical(c)) =
            (&case.reference, &case.current)
        {
            assert_close(
                &format!("{} new-category rate", case.name),
                c.new_category_rate(r).unwrap(),
                expected["new_category_rate"].as_f64().unwrap(),
            );
        }
        if case.reference.kind() == ColumnKind::Numeric && case.integer {
            assert!(numeric(&case.reference).looks_integer(), "{}", case.name);
        }
    }
}

#[test]
fn scipy_functions_match() {
    let document = fixtures();
    let mut worst = Worst::default();
    let mut exact = 0;
    let mut asymptotic = 0;
    for case in cases(&document) {
        let scipy = &case.expected["scipy"];
        if case.reference.kind() == ColumnKind::Numeric {
            let (r, c) = (numeric(&case.reference), numeric(&case.current));
            let ks = ks_2samp(r, c).unwrap();
            let what = format!("{} ks", case.name);
            assert_close(&what, ks.statistic, scipy["ks_statistic"].as_f64().unwrap());
            assert_close(&what, ks.p_value, scipy["ks_pvalue"].as_f64().unwrap());
            worst.record(&what, ks.p_value, scipy["ks_pvalue"].as_f64().unwrap());
            let method = match ks.method {
                KsMethod::Exact => {
                    exact += 1;
                    "exact"
                }
                KsMethod::Asymptotic => {
                    asymptotic += 1;
                    "asymptotic"
                }
            };
            assert_eq!(method, scipy["ks_method"].as_str().unwrap(), "{what}");
            let distance = wasserstein_distance(r, c).unwrap();
            assert_close(
                &format!("{} wasserstein", case.name),
                distance,
                scipy["wasserstein_distance"].as_f64().unwrap(),
            );
            worst.record(
                &case.name,
                distance,
                scipy["wasserstein_distance"].as_f64().unwrap(),
            );
        }
        let chi = chisquare(&case.reference, &case.current).unwrap();
        let what = format!("{} chisquare", case.name);
        match &scipy["chisquare_statistic"] {
            Value::String(s) if s == "inf" => assert!(chi.statistic.is_infinite(), "{what}"),
            value => assert_close(&what, chi.statistic, value.as_f64().unwrap()),
        }
        if let Some(p) = scipy["chisquare_pvalue"].as_f64() {
            assert_close(&what, chi.p_value, p);
            worst.record(&what, chi.p_value, p);
        }
    }
    assert!(exact > 0 && asymptotic > 0);
    println!(
        "KS: {exact} exact, {asymptotic} asymptotic; worst relative error {:e} at {}",
        worst.relative, worst.at
    );
}

#[test]
fn kolmogorov_distribution_matches_scipy() {
    let document = fixtures();
    let mut worst = Worst::default();
    let grid = document["kstwo"].as_array().unwrap();
    for point in grid {
        let n = point["n"].as_u64().unwrap();
        let x = point["x"].as_f64().unwrap();
        let expected = point["sf"].as_f64().unwrap();
        let actual = kstwo_sf(x, n);
        let what = format!("kstwo.sf({x}, {n})");
        assert_close(&what, actual, expected);
        worst.record(&what, actual, expected);
    }
    println!(
        "{} kstwo points; worst relative error {:e} at {}",
        grid.len(),
        worst.relative,
        worst.at
    );
}

#[test]
fn evidently_reports_match() {
    let document = fixtures();
    let all = cases(&document);
    for report in document["reports"].as_array().unwrap() {
        let mut drifts = Vec::new();
        for column in report["columns"].as_array().unwrap() {
            let name = column["case"].as_str().unwrap();
            let case = all.iter().find(|c| c.name == name).unwrap();
            // Default options: Kiln chooses the method and guesses the integer type itself.
            let drift =
                column_drift(&case.reference, &case.current, &DriftOptions::default()).unwrap();
            assert_eq!(
                drift.method.name(),
                column["method"].as_str().unwrap(),
                "{name}"
            );
            assert_close(name, drift.score, column["score"].as_f64().unwrap());
            assert_eq!(
                drift.threshold,
                column["threshold"].as_f64().unwrap(),
                "{name}"
            );
            assert_eq!(
                drift.drifted,
                column["drifted"].as_bool().unwrap(),
                "{name}"
            );
            drifts.push(drift);
        }
        let verdict = dataset_drift(&drifts, report["drift_share"].as_f64().unwrap()).unwrap();
        assert_close(
            "share of drifted columns",
            verdict.share,
            report["share_of_drifted_columns"].as_f64().unwrap(),
        );
        assert_eq!(verdict.drifted, report["dataset_drift"].as_bool().unwrap());
    }
}

/// This crate's directory, read when the test runs: cargo sets `CARGO_MANIFEST_DIR` for test
/// processes. The compile-time value can name another checkout when a build cache is shared
/// between clones (cargo does not rebuild a test when only the clone's path changed).
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
