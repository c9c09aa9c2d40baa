//! Summaries merge exactly, and bad input gives a named error rather than a panic or NaN.

use std::collections::BTreeMap;

use kiln_monitor::{
    CategoricalCounts, ColumnKind, ColumnSummary, DEFAULT_DRIFT_SHARE, DriftMethod, DriftOptions,
    MonitorError, NumericCounts, Sample, chisquare, column_drift, dataset_drift, default_method,
    jensenshannon, ks_2samp, population_std, psi, wasserstein_distance, wasserstein_distance_norm,
    z_test,
};

/// A deterministic sequence with many repeats, negative zero, NaN and infinities.
fn numeric_rows(n: usize, distinct: u64) -> Vec<f64> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|i| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            match i % 97 {
                0 => f64::NAN,
                1 => f64::INFINITY,
                2 => -0.0,
                _ => ((state >> 33) % distinct) as f64 * 0.25 - 3.0,
            }
        })
        .collect()
}

#[test]
fn merged_numeric_parts_equal_the_whole() {
    // Few distinct values (the hashing path) and many (the sorting path).
    for distinct in [10, 1_000_000] {
        let rows = numeric_rows(200_000, distinct);
        let whole = NumericCounts::from_values(&rows);
        let (a, rest) = rows.split_at(12_345);
        let (b, c) = rest.split_at(100_000);
        let parts: Vec<NumericCounts> = [a, b, c]
            .iter()
            .map(|p| NumericCounts::from_values(p))
            .collect();
        let merged = parts[0].merge(&parts[1]).unwrap().merge(&parts[2]).unwrap();
        assert_eq!(merged, whole);
        // Order of merging does not matter.
        let other_order = parts[2].merge(&parts[0]).unwrap().merge(&parts[1]).unwrap();
        assert_eq!(other_order, whole);
        assert_eq!(whole.rows(), rows.len() as u64);
        assert!(whole.values().windows(2).all(|w| w[0] < w[1]));
        // -0.0 and 0.0 are one value.
        assert!(
            whole
                .values()
                .iter()
                .all(|v| v.to_bits() != (-0.0f64).to_bits())
        );
    }
}

#[test]
fn merged_categorical_parts_equal_the_whole() {
    let labels: Vec<Option<String>> = (0..5_000)
        .map(|i| {
            if i % 13 == 0 {
                None
            } else {
                Some(format!("label_{}", (i * 31) % 17))
            }
        })
        .collect();
    let whole = CategoricalCounts::from_values(labels.iter().map(|l| l.as_deref()));
    let (a, b) = labels.split_at(1_777);
    let merged = CategoricalCounts::from_values(a.iter().map(|l| l.as_deref()))
        .merge(&CategoricalCounts::from_values(
            b.iter().map(|l| l.as_deref()),
        ))
        .unwrap();
    assert_eq!(merged, whole);
    assert_eq!(whole.rows(), 5_000);
    assert_eq!(
        whole.missing(),
        labels.iter().filter(|l| l.is_none()).count() as u64
    );
}

#[test]
fn dictionary_codes_count_like_labels() {
    let dictionary = ["b", "a", "b", "c"];
    let codes = [Some(0), Some(1), None, Some(2), Some(1), Some(3)];
    let from_codes = CategoricalCounts::from_codes(codes, &dictionary).unwrap();
    let labels = codes.map(|c| c.map(|i| dictionary[i as usize]));
    assert_eq!(from_codes, CategoricalCounts::from_values(labels));
    assert_eq!(from_codes.counts()["b"], 2);
    assert!(matches!(
        CategoricalCounts::from_codes([Some(4)], &dictionary),
        Err(MonitorError::InvalidSummary(_))
    ));
    assert!(matches!(
        CategoricalCounts::from_codes([Some(-1)], &dictionary),
        Err(MonitorError::InvalidSummary(_))
    ));
}

#[test]
fn summaries_built_from_counts_equal_summaries_from_rows() {
    let rows = [2.0, 1.0, 2.0, f64::NAN, 3.0, 2.0];
    let from_rows = NumericCounts::from_values(&rows);
    // Any order, repeated values added, zero counts dropped.
    let from_counts =
        NumericCounts::from_counts(&[3.0, 2.0, 1.0, 2.0, 9.0], &[1, 2, 1, 1, 0], 1, 0).unwrap();
    assert_eq!(from_rows, from_counts);
}

#[test]
fn summaries_round_trip_through_json_and_are_checked_on_the_way_in() {
    let summary = ColumnSummary::Numeric(NumericCounts::from_values(&[1.5, 1.5, -2.0, f64::NAN]));
    let json = serde_json::to_string(&summary).unwrap();
    let back: ColumnSummary = serde_json::from_str(&json).unwrap();
    assert_eq!(back, summary);

    let categorical =
        ColumnSummary::Categorical(CategoricalCounts::from_values([Some("a"), None, Some("b")]));
    let json = serde_json::to_string(&categorical).unwrap();
    assert_eq!(
        serde_json::from_str::<ColumnSummary>(&json).unwrap(),
        categorical
    );

    let mismatched = r#"{"kind":"numeric","values":[1.0,2.0],"counts":[1]}"#;
    let error = serde_json::from_str::<ColumnSummary>(mismatched).unwrap_err();
    assert!(
        error.to_string().contains("2 values but 1 counts"),
        "{error}"
    );
}

#[test]
fn invalid_counts_are_rejected() {
    assert!(matches!(
        NumericCounts::from_counts(&[1.0], &[1, 2], 0, 0),
        Err(MonitorError::InvalidSummary(_))
    ));
    assert!(matches!(
        NumericCounts::from_counts(&[f64::NAN], &[1], 0, 0),
        Err(MonitorError::InvalidSummary(_))
    ));
    assert!(matches!(
        NumericCounts::from_counts(&[1.0, 1.0], &[u64::MAX, 1], 0, 0),
        Err(MonitorError::CountOverflow)
    ));
}

#[test]
fn rates() {
    let numbers = NumericCounts::from_values(&[1.0, f64::NAN, f64::NEG_INFINITY, 4.0]);
    // Evidently's missing-values metric counts NaN and infinities.
    assert_eq!(numbers.missing_rate().unwrap(), 0.5);
    let labels = CategoricalCounts::from_values([Some("a"), Some(""), None, Some("b")]);
    assert_eq!(labels.missing_rate().unwrap(), 0.5);
    let reference = CategoricalCounts::from_values([Some("a")]);
    // Labelled current rows: "a", "", "b"; "" and "b" are new.
    assert!((labels.new_category_rate(&reference).unwrap() - 2.0 / 3.0).abs() < 1e-15);
    assert_eq!(
        labels.new_categories(&reference).collect::<Vec<_>>(),
        vec!["", "b"]
    );

    assert_eq!(
        NumericCounts::from_values(&[]).missing_rate(),
        Err(MonitorError::NoRows)
    );
    assert_eq!(
        population_std(&NumericCounts::from_values(&[f64::NAN])),
        Err(MonitorError::NoFiniteValues)
    );
    assert_eq!(
        CategoricalCounts::default().missing_rate(),
        Err(MonitorError::NoRows)
    );
    assert_eq!(
        CategoricalCounts::from_values([None]).new_category_rate(&reference),
        Err(MonitorError::EmptySample(Sample::Current))
    );
}

#[test]
fn empty_samples_are_named_errors() {
    let full = NumericCounts::from_values(&[1.0, 2.0, 3.0]);
    let no_rows = NumericCounts::from_values(&[]);
    let all_missing = NumericCounts::from_values(&[f64::NAN, f64::INFINITY]);
    for empty in [&no_rows, &all_missing] {
        assert_eq!(
            ks_2samp(empty, &full),
            Err(MonitorError::EmptySample(Sample::Reference))
        );
        assert_eq!(
            ks_2samp(&full, empty),
            Err(MonitorError::EmptySample(Sample::Current))
        );
        assert_eq!(
            wasserstein_distance(&full, empty),
            Err(MonitorError::EmptySample(Sample::Current))
        );
        assert_eq!(
            wasserstein_distance_norm(empty, &full),
            Err(MonitorError::EmptySample(Sample::Reference))
        );

        let (e, f) = (
            ColumnSummary::Numeric(empty.clone()),
            ColumnSummary::Numeric(full.clone()),
        );
        let reference_empty = Err(MonitorError::EmptySample(Sample::Reference));
        let current_empty = Err(MonitorError::EmptySample(Sample::Current));
        assert_eq!(psi(&e, &f), reference_empty);
        assert_eq!(jensenshannon(&f, &e), current_empty);
        assert_eq!(chisquare(&e, &f).map(|t| t.p_value), reference_empty);
        assert_eq!(z_test(&f, &e).map(|t| t.p_value), current_empty);
        assert_eq!(
            default_method(&e, &f),
            Err(MonitorError::EmptySample(Sample::Reference))
        );
        for method in DriftMethod::ALL {
            let options = DriftOptions {
                method: Some(method),
                ..DriftOptions::default()
            };
            assert_eq!(
                column_drift(&f, &e, &options),
                Err(MonitorError::EmptySample(Sample::Current)),
                "{method}"
            );
        }
    }
    let labels = ColumnSummary::Categorical(CategoricalCounts::from_values([Some("a")]));
    let no_labels = ColumnSummary::Categorical(CategoricalCounts::from_values([None, None]));
    assert_eq!(
        column_drift(&no_labels, &labels, &DriftOptions::default()),
        Err(MonitorError::EmptySample(Sample::Reference))
    );
}

#[test]
fn wrong_methods_kinds_and_thresholds_are_named_errors() {
    let numbers = ColumnSummary::Numeric(NumericCounts::from_values(&[1.0, 2.0]));
    let labels = ColumnSummary::Categorical(CategoricalCounts::from_values([Some("a"), Some("b")]));
    for method in [DriftMethod::Ks, DriftMethod::Wasserstein] {
        let options = DriftOptions {
            method: Some(method),
            ..DriftOptions::default()
        };
        assert_eq!(
            column_drift(&labels, &labels, &options),
            Err(MonitorError::MethodNotApplicable {
                method,
                kind: ColumnKind::Categorical
            })
        );
    }
    assert_eq!(
        column_drift(&numbers, &labels, &DriftOptions::default()),
        Err(MonitorError::KindMismatch {
            reference: ColumnKind::Numeric,
            current: ColumnKind::Categorical
        })
    );
    assert!(matches!(
        numbers.merge(&labels),
        Err(MonitorError::KindMismatch { .. })
    ));
    let nan_threshold = DriftOptions {
        threshold: Some(f64::NAN),
        ..DriftOptions::default()
    };
    assert!(matches!(
        column_drift(&numbers, &numbers, &nan_threshold),
        Err(MonitorError::InvalidThreshold(_))
    ));
    assert_eq!(
        DriftMethod::parse("kolmogorov"),
        Err(MonitorError::UnknownMethod("kolmogorov".into()))
    );
    assert_eq!(
        dataset_drift(&[], DEFAULT_DRIFT_SHARE),
        Err(MonitorError::NoColumns)
    );
}

#[test]
fn methods_parse_and_compare_as_evidently_does() {
    for method in DriftMethod::ALL {
        assert_eq!(DriftMethod::parse(method.name()), Ok(method));
        assert_eq!(method.name().parse::<DriftMethod>(), Ok(method));
        assert_eq!(
            serde_json::to_string(&method).unwrap(),
            format!("\"{}\"", method.name())
        );
    }
    assert_eq!(DriftMethod::Ks.default_threshold(), 0.05);
    assert_eq!(DriftMethod::Psi.default_threshold(), 0.1);
    // Evidently: KS drifts at p <= threshold, chi-squared and z only below it, distances at or
    // above it.
    assert!(DriftMethod::Ks.is_drift(0.05, 0.05));
    assert!(!DriftMethod::ChiSquare.is_drift(0.05, 0.05));
    assert!(!DriftMethod::Z.is_drift(0.05, 0.05));
    assert!(DriftMethod::Wasserstein.is_drift(0.1, 0.1));
    assert!(!DriftMethod::JensenShannon.is_drift(0.099, 0.1));
}

#[test]
fn threshold_override_changes_the_verdict_only() {
    let reference =
        ColumnSummary::Numeric(NumericCounts::from_values(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
    let current =
        ColumnSummary::Numeric(NumericCounts::from_values(&[1.5, 2.5, 3.5, 4.5, 5.5, 6.5]));
    let default = column_drift(&reference, &current, &DriftOptions::default()).unwrap();
    assert_eq!(default.method, DriftMethod::Ks);
    assert!(!default.drifted);
    let strict = column_drift(
        &reference,
        &current,
        &DriftOptions {
            threshold: Some(1.0),
            ..DriftOptions::default()
        },
    )
    .unwrap();
    assert_eq!(strict.score, default.score);
    assert!(strict.drifted);
    assert_eq!(strict.threshold, 1.0);
}

#[test]
fn chi_squared_over_a_single_value_is_not_nan() {
    let one = ColumnSummary::Categorical(CategoricalCounts::from_counts(
        BTreeMap::from([("a".into(), 5)]),
        0,
    ));
    let test = chisquare(&one, &one).unwrap();
    assert_eq!(test.degrees_of_freedom, 0);
    assert_eq!(test.p_value, 1.0);
    let drift = column_drift(
        &one,
        &one,
        &DriftOptions {
            method: Some(DriftMethod::ChiSquare),
            ..DriftOptions::default()
        },
    )
    .unwrap();
    assert!(!drift.drifted);
}

#[test]
fn dataset_verdict_uses_the_share_at_or_above_the_threshold() {
    let reference = ColumnSummary::Numeric(NumericCounts::from_values(&[1.0, 2.0, 3.0]));
    let shifted = ColumnSummary::Numeric(NumericCounts::from_values(&[11.0, 12.0, 13.0]));
    let options = DriftOptions {
        method: Some(DriftMethod::Wasserstein),
        ..DriftOptions::default()
    };
    let drifted = column_drift(&reference, &shifted, &options).unwrap();
    let stable = column_drift(&reference, &reference, &options).unwrap();
    assert!(drifted.drifted && !stable.drifted);
    let verdict = dataset_drift(&[drifted.clone(), stable.clone()], DEFAULT_DRIFT_SHARE).unwrap();
    assert_eq!((verdict.drifted_columns, verdict.columns), (1, 2));
    assert!(verdict.drifted, "a share of 0.5 reaches the default 0.5");
    let verdict = dataset_drift(&[drifted, stable.clone(), stable], DEFAULT_DRIFT_SHARE).unwrap();
    assert!(!verdict.drifted);
    let json = serde_json::to_value(verdict).unwrap();
    assert_eq!(json["drifted_columns"], 1);
}
