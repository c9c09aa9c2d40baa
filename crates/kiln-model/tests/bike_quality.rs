//! Model quality on the reference data: the bundled bike-rental hours, trained on the past
//! (before 2012-07-01) and validated on the second half of 2012, the split the training
//! benchmark uses. The tree model must beat the linear and trivial baselines and stay within
//! the quality bar (RMSE at most 1.02 × 129.3, LightGBM's default on the same split).

use std::sync::Arc;

use arrow_array::builder::{Date32Builder, Float64Builder, StringDictionaryBuilder};
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, RecordBatch};
use kiln_core::schema::{Column, FeatureType, Schema};
use kiln_model::features::{Family, FeaturePipeline, FitOptions};
use kiln_model::learner::{Fitted, GbdtParams, Predictions, Task};
use kiln_model::metrics::rmse;

const CATEGORICAL: [&str; 6] = [
    "season",
    "hr",
    "holiday",
    "weekday",
    "workingday",
    "weathersit",
];

struct Bikes {
    schema: Schema,
    header: Vec<String>,
    rows: Vec<csv::StringRecord>,
}

fn load() -> Bikes {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/bikeshare/data/bike-rental-dataset.csv.gz"
    );
    let file = std::fs::File::open(path).unwrap();
    let mut reader = csv::Reader::from_reader(flate2::read::GzDecoder::new(file));
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    // casual + registered = cnt: leaks of the target, never features.
    let schema = Schema::new(
        header
            .iter()
            .filter(|h| *h != "casual" && *h != "registered")
            .map(|h| Column {
                name: h.clone(),
                ftype: if h == "dteday" {
                    FeatureType::Date
                } else if CATEGORICAL.contains(&h.as_str()) {
                    FeatureType::Categorical
                } else {
                    FeatureType::Numeric
                },
            })
            .collect(),
    );
    Bikes {
        schema,
        header,
        rows,
    }
}

impl Bikes {
    fn batch(&self, rows: &[&csv::StringRecord]) -> RecordBatch {
        let arrays: Vec<ArrayRef> = self
            .schema
            .columns
            .iter()
            .map(|c| {
                let i = self.header.iter().position(|h| *h == c.name).unwrap();
                let a: ArrayRef = match c.ftype {
                    FeatureType::Date => {
                        let mut b = Date32Builder::new();
                        for r in rows {
                            b.append_option(kiln_core::value::parse_date(&r[i]));
                        }
                        Arc::new(b.finish())
                    }
                    FeatureType::Categorical => {
                        let mut b = StringDictionaryBuilder::<Int32Type>::new();
                        for r in rows {
                            if r[i].is_empty() {
                                b.append_null();
                            } else {
                                b.append_value(&r[i]);
                            }
                        }
                        Arc::new(b.finish())
                    }
                    _ => {
                        let mut b = Float64Builder::new();
                        for r in rows {
                            b.append_option(r[i].parse::<f64>().ok());
                        }
                        Arc::new(b.finish())
                    }
                };
                a
            })
            .collect();
        RecordBatch::try_new(kiln_core::table::arrow_schema(&self.schema), arrays).unwrap()
    }
}

fn values(p: Predictions) -> Vec<f64> {
    match p {
        Predictions::Values(v) => v,
        Predictions::Probabilities { .. } => panic!("regression gives values"),
    }
}

#[test]
fn trees_beat_the_baselines_and_meet_the_quality_bar() {
    let bikes = load();
    let cnt = bikes.header.iter().position(|h| h == "cnt").unwrap();
    let (train, valid): (Vec<&csv::StringRecord>, Vec<&csv::StringRecord>) =
        bikes.rows.iter().partition(|r| &r[0] < "2012-07-01");
    assert_eq!(train.len() + valid.len(), 17_379);
    let y = |rs: &[&csv::StringRecord]| -> Vec<f64> {
        rs.iter().map(|r| r[cnt].parse().unwrap()).collect()
    };
    let (ytr, yva) = (y(&train), y(&valid));
    let (btr, bva) = (bikes.batch(&train), bikes.batch(&valid));
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
    let gbdt_rmse = rmse(&yva, &values(gbdt.predict(&trees.transform(&bva).unwrap()))).unwrap();

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
        &values(ridge.predict(&linear.transform(&bva).unwrap())),
    )
    .unwrap();

    let mean = Fitted::fit_baseline(Task::Regression, &ytr).unwrap();
    let mean_rmse = rmse(&yva, &values(mean.predict(&trees.transform(&bva).unwrap()))).unwrap();

    eprintln!("validation RMSE: trees {gbdt_rmse:.2}, linear {ridge_rmse:.2}, mean {mean_rmse:.2}");
    assert!(gbdt_rmse <= 1.02 * 129.3, "trees {gbdt_rmse}");
    assert!(gbdt_rmse < ridge_rmse && ridge_rmse < mean_rmse);
}
