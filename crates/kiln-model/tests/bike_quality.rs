//! Model quality on the reference data: the bundled bike-rental hours, trained on the past
//! (before 2012-07-01) and validated on the second half of 2012, the split the training
//! benchmark uses. The tree model must beat the linear and trivial baselines and stay within
//! the quality bar (RMSE at most 1.02 × 129.3, LightGBM's default on the same split).

#[path = "../examples/common/bikes.rs"]
#[allow(dead_code)] // `BUNDLED` serves the examples; tests use `bundled()`.
mod bikes;

use kiln_model::features::{Family, FeaturePipeline, FitOptions};
use kiln_model::learner::{Fitted, GbdtParams, Predictions, Task};
use kiln_model::metrics::rmse;

/// The bundled file, found at run time: a test binary reused from another checkout's build
/// must read this checkout's data, not the path compiled into `bikes::BUNDLED`.
fn bundled() -> String {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    format!("{dir}/../../examples/bikeshare/data/bike-rental-dataset.csv.gz")
}

fn values(p: Predictions) -> Vec<f64> {
    match p {
        Predictions::Values(v) => v,
        Predictions::Probabilities { .. } => panic!("regression gives values"),
    }
}

#[test]
fn trees_beat_the_baselines_and_meet_the_quality_bar() {
    let bikes = bikes::load(&bundled()).unwrap();
    let (btr, ytr, bva, yva) = bikes.time_split().unwrap();
    assert_eq!(ytr.len() + yva.len(), 17_379);
    let opts = FitOptions {
        target: "cnt".into(),
        exclude: vec![],
    };

    let trees = FeaturePipeline::fit(&bikes.schema, &btr, &ytr, Family::Trees, &opts).unwrap();
    let gbdt = Fitted::fit_gbdt(
        Task::Regression,
        &GbdtParams::default(),
        &trees.transform(&btr).unwrap(),
        &ytr,
    )
    .unwrap();
    let gbdt_rmse = rmse(
        &yva,
        &values(gbdt.predict(&trees.transform(&bva).unwrap()).unwrap()),
    )
    .unwrap();

    let linear = FeaturePipeline::fit(&bikes.schema, &btr, &ytr, Family::Linear, &opts).unwrap();
    let ridge = Fitted::fit_linear(
        Task::Regression,
        1.0,
        &linear.transform(&btr).unwrap(),
        &ytr,
    )
    .unwrap();
    let ridge_rmse = rmse(
        &yva,
        &values(ridge.predict(&linear.transform(&bva).unwrap()).unwrap()),
    )
    .unwrap();

    let mean = Fitted::fit_baseline(Task::Regression, &ytr).unwrap();
    let mean_rmse = rmse(
        &yva,
        &values(mean.predict(&trees.transform(&bva).unwrap()).unwrap()),
    )
    .unwrap();

    eprintln!("validation RMSE: trees {gbdt_rmse:.2}, linear {ridge_rmse:.2}, mean {mean_rmse:.2}");
    assert!(gbdt_rmse <= 1.02 * 129.3, "trees {gbdt_rmse}");
    assert!(gbdt_rmse < ridge_rmse && ridge_rmse < mean_rmse);
}

/// The artifact envelope is deterministic (`artifact.rs` tests it, and the CLI tests retrain
/// end to end); this checks the two parts that learn: the same rows give the same pipeline and
/// trees, byte for byte.
#[test]
fn retraining_on_the_same_rows_gives_byte_identical_pipeline_and_trees() {
    let bikes = bikes::load(&bundled()).unwrap();
    let (btr, ytr, _, _) = bikes.time_split().unwrap();
    let train = || {
        let opts = FitOptions {
            target: "cnt".into(),
            exclude: vec![],
        };
        let pipeline =
            FeaturePipeline::fit(&bikes.schema, &btr, &ytr, Family::Trees, &opts).unwrap();
        let x = pipeline.transform(&btr).unwrap();
        let model = Fitted::fit_gbdt(Task::Regression, &GbdtParams::default(), &x, &ytr).unwrap();
        (
            serde_json::to_vec(&pipeline).unwrap(),
            serde_json::to_vec(&model).unwrap(),
            pipeline.features.len(),
        )
    };
    let first = train();
    assert_eq!(first, train());
    assert_eq!(first.2, 14);
}

/// The flattened scorer gives forust's own predictions bit for bit, missing values included
/// (the bike data has gaps in `weekday` and `weathersit`), in one block and across threads.
#[test]
fn fast_scoring_is_bit_identical_to_forust() {
    let bikes = bikes::load(&bundled()).unwrap();
    let (btr, ytr, bva, _) = bikes.time_split().unwrap();
    let opts = FitOptions {
        target: "cnt".into(),
        exclude: vec![],
    };
    let pipeline = FeaturePipeline::fit(&bikes.schema, &btr, &ytr, Family::Trees, &opts).unwrap();
    let x = pipeline.transform(&bva).unwrap();
    assert!(
        x.data.iter().any(|v| v.is_nan()),
        "validation rows have gaps"
    );
    let model = Fitted::fit_gbdt(
        Task::Regression,
        &GbdtParams::default(),
        &pipeline.transform(&btr).unwrap(),
        &ytr,
    )
    .unwrap();
    let Fitted::Gbdt { boosters, .. } = &model else {
        panic!("trees")
    };
    let reference =
        boosters[0].predict(&forust_ml::Matrix::new(&x.data, x.rows, x.features), false);
    let ours = values(model.predict(&x).unwrap());
    assert_eq!(ours.len(), reference.len());
    for (a, b) in ours.iter().zip(&reference) {
        assert_eq!(a.to_bits(), b.to_bits(), "{a} vs {b}");
    }
    // One row at a time (the server's case) gives the same bits as the whole batch.
    for row in [0, 1, 777, x.rows - 1] {
        let one = kiln_model::features::Transformed {
            data: (0..x.features).map(|f| x.get(row, f)).collect(),
            rows: 1,
            features: x.features,
            unknown: vec![],
        };
        assert_eq!(
            values(model.predict(&one).unwrap())[0].to_bits(),
            ours[row].to_bits()
        );
    }
}
