//! Table summaries of Arrow batches and the drift report between two of them.

use std::sync::Arc;

use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, BooleanArray, Date32Array, DictionaryArray, Float64Array, RecordBatch,
};
use kiln_monitor::{
    ColumnSummary, DriftMethod, DriftOptions, DriftSettings, TableSummary, drift_report,
};

/// A bike-like batch: `temp` numeric, `season` categorical, `holiday` boolean, `day` a date.
fn batch(temps: &[Option<f64>], seasons: &[Option<&str>], holidays: &[bool]) -> RecordBatch {
    let n = temps.len();
    let temp: ArrayRef = Arc::new(Float64Array::from(temps.to_vec()));
    let season: ArrayRef = Arc::new(
        seasons
            .iter()
            .copied()
            .collect::<DictionaryArray<Int32Type>>(),
    );
    let holiday: ArrayRef = Arc::new(BooleanArray::from(holidays.to_vec()));
    let day: ArrayRef = Arc::new(Date32Array::from((0..n as i32).collect::<Vec<_>>()));
    RecordBatch::try_from_iter([
        ("temp", temp),
        ("season", season),
        ("holiday", holiday),
        ("day", day),
    ])
    .unwrap()
}

/// `n` rows: temps cycling over `base + 0, 1, ..., 49`, seasons over `labels`, every
/// seventh row a holiday.
fn rows(n: usize, base: f64, labels: &[&str]) -> RecordBatch {
    let temps: Vec<Option<f64>> = (0..n).map(|i| Some(base + (i % 50) as f64)).collect();
    let seasons: Vec<Option<&str>> = (0..n).map(|i| Some(labels[i % labels.len()])).collect();
    let holidays: Vec<bool> = (0..n).map(|i| i % 7 == 0).collect();
    batch(&temps, &seasons, &holidays)
}

#[test]
fn a_batch_is_summarized_by_column_type_and_dates_are_left_out() {
    let b = batch(
        &[Some(1.5), None, Some(1.5), Some(f64::NAN)],
        &[Some("fall"), Some("fall"), None, Some("winter")],
        &[true, false, false, false],
    );
    let t = TableSummary::from_batch(&b).unwrap();
    assert_eq!(t.rows(), 4);
    let names: Vec<&str> = t.columns().iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["temp", "season", "holiday"]);
    let Some(ColumnSummary::Numeric(temp)) = t.column("temp") else {
        panic!("temp is numeric")
    };
    assert_eq!(temp.values(), [1.5]);
    assert_eq!(temp.counts(), [2]);
    assert_eq!(temp.missing(), 2, "a null and a NaN are both missing");
    let Some(ColumnSummary::Categorical(season)) = t.column("season") else {
        panic!("season is categorical")
    };
    assert_eq!(season.counts().get("fall"), Some(&2));
    assert_eq!(season.counts().get("winter"), Some(&1));
    assert_eq!(season.missing(), 1);
    let Some(ColumnSummary::Categorical(holiday)) = t.column("holiday") else {
        panic!("holiday is categorical")
    };
    assert_eq!(holiday.counts().get("true"), Some(&1));
    assert_eq!(holiday.counts().get("false"), Some(&3));
}

#[test]
fn merged_batch_summaries_equal_the_summary_of_all_rows() {
    let a = rows(300, 10.0, &["spring", "summer"]);
    let b = rows(200, 30.0, &["summer", "fall", "winter"]);
    let whole = arrow_select::concat::concat_batches(&a.schema(), [&a, &b]).unwrap();
    let merged = TableSummary::from_batch(&a)
        .unwrap()
        .merge(&TableSummary::from_batch(&b).unwrap())
        .unwrap();
    assert_eq!(merged, TableSummary::from_batch(&whole).unwrap());
    // An empty summary is the identity of merging (a window before its first batch).
    assert_eq!(TableSummary::default().merge(&merged).unwrap(), merged);
}

#[test]
fn summaries_of_different_columns_do_not_merge() {
    let a = TableSummary::from_batch(&rows(10, 0.0, &["x"])).unwrap();
    let only_temp =
        RecordBatch::try_from_iter([("temp", Arc::new(Float64Array::from(vec![1.0])) as ArrayRef)])
            .unwrap();
    let b = TableSummary::from_batch(&only_temp).unwrap();
    let err = a.merge(&b).unwrap_err().to_string();
    assert!(err.contains("different columns"), "{err}");
}

#[test]
fn the_report_finds_the_shifted_column_and_not_the_stable_ones() {
    let reference = TableSummary::from_batch(&rows(5_000, 10.0, &["a", "b", "c"])).unwrap();
    // temp moves up by 20 (almost half its range); seasons and holidays stay as they were.
    let current = TableSummary::from_batch(&rows(4_000, 30.0, &["a", "b", "c"])).unwrap();
    let report = drift_report(&reference, &current, &DriftSettings::default()).unwrap();
    assert_eq!((report.reference_rows, report.current_rows), (5_000, 4_000));
    let by_name = |name: &str| {
        report
            .columns
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.drift.clone())
            .unwrap()
    };
    // Evidently's choice for more than 1,000 reference rows: normed Wasserstein for a numeric
    // column with many values, Jensen-Shannon for a categorical one.
    let temp = by_name("temp");
    assert_eq!(temp.method, DriftMethod::Wasserstein);
    assert!(temp.drifted && temp.score > 1.0, "{temp:?}");
    let season = by_name("season");
    assert_eq!(season.method, DriftMethod::JensenShannon);
    assert!(!season.drifted && season.score < 0.01, "{season:?}");
    assert!(!by_name("holiday").drifted);
    let dataset = report.dataset.unwrap();
    assert_eq!((dataset.columns, dataset.drifted_columns), (3, 1));
    assert!(!dataset.drifted, "1 of 3 is under the default share of 0.5");
}

#[test]
fn settings_choose_the_method_threshold_and_share() {
    let reference = TableSummary::from_batch(&rows(5_000, 10.0, &["a", "b"])).unwrap();
    let current = TableSummary::from_batch(&rows(5_000, 11.0, &["a", "b"])).unwrap();
    let mut settings = DriftSettings {
        drift_share: 0.3,
        ..DriftSettings::default()
    };
    settings.columns.insert(
        "temp".into(),
        DriftOptions {
            method: Some(DriftMethod::Psi),
            threshold: Some(0.01),
            ..DriftOptions::default()
        },
    );
    let report = drift_report(&reference, &current, &settings).unwrap();
    let temp = report.columns[0].drift.clone().unwrap();
    assert_eq!(temp.method, DriftMethod::Psi);
    assert_eq!(temp.threshold, 0.01);
    assert!(
        temp.drifted,
        "a shift of 1 on a range of 50 passes a PSI of 0.01: {temp:?}"
    );
    assert!(
        report.dataset.unwrap().drifted,
        "1 of 3 reaches a share of 0.3"
    );

    // A method that cannot apply is a settings error, not a skipped column.
    settings.columns.insert(
        "season".into(),
        DriftOptions {
            method: Some(DriftMethod::Ks),
            ..DriftOptions::default()
        },
    );
    let err = drift_report(&reference, &current, &settings)
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not apply"), "{err}");
}

#[test]
fn untestable_columns_are_skipped_with_a_reason_and_new_categories_are_measured() {
    let reference = TableSummary::from_batch(&rows(2_000, 0.0, &["a", "b"])).unwrap();
    // No temperature at all in the window, and a category the reference never had.
    let n = 1_000;
    let current = TableSummary::from_batch(&batch(
        &vec![None; n],
        &(0..n)
            .map(|i| Some(if i % 4 == 0 { "new" } else { "a" }))
            .collect::<Vec<_>>(),
        &vec![false; n],
    ))
    .unwrap();
    let report = drift_report(&reference, &current, &DriftSettings::default()).unwrap();
    let temp = &report.columns[0];
    assert!(temp.drift.is_none());
    assert!(
        temp.skipped.as_deref().unwrap().contains("current"),
        "{temp:?}"
    );
    assert_eq!(temp.current_missing_rate, Some(1.0));
    let season = &report.columns[1];
    assert_eq!(season.new_category_rate, Some(0.25));
    assert!(season.drift.as_ref().unwrap().drifted);
    assert_eq!(
        report.dataset.unwrap().columns,
        2,
        "only tested columns count"
    );
}
