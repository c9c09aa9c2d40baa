//! The Kiln side of the training benchmark (`bench/run.sh train`): fit the feature pipeline
//! and the default gradient-boosted trees on the bike time split, best of three fits, and print
//! one JSON line with the validation RMSE and the fit time.
//!
//! `cargo run --release -p kiln-model --example bike_train [CSV_GZ]`

#[path = "common/bikes.rs"]
mod bikes;

use std::time::Instant;

use kiln_model::features::{Family, FeaturePipeline, FitOptions};
use kiln_model::learner::{Fitted, GbdtParams, Predictions, Task};
use kiln_model::metrics::rmse;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| bikes::BUNDLED.to_owned());
    let bikes = bikes::load(&path)?;
    let (btr, ytr, bva, yva) = bikes.time_split()?;
    let opts = FitOptions {
        target: "cnt".into(),
        exclude: vec![],
    };
    let mut best = f64::INFINITY;
    let mut model = None;
    for _ in 0..3 {
        let t = Instant::now();
        let pipeline = FeaturePipeline::fit(&bikes.schema, &btr, &ytr, Family::Trees, &opts)?;
        let x = pipeline.transform(&btr)?;
        let fitted = Fitted::fit_gbdt(Task::Regression, &GbdtParams::default(), &x, &ytr)?;
        best = best.min(t.elapsed().as_secs_f64());
        model = Some((pipeline, fitted));
    }
    let (pipeline, fitted) = model.ok_or("no fit ran")?;
    let t = Instant::now();
    let Predictions::Values(p) = fitted.predict(&pipeline.transform(&bva)?)? else {
        return Err("a regression model predicted classes".into());
    };
    let predict = t.elapsed().as_secs_f64();
    println!(
        "{{\"rmse\": {}, \"fit_seconds\": {best}, \"predict_seconds\": {predict}, \"rows_train\": {}, \"rows_valid\": {}}}",
        rmse(&yva, &p)?,
        ytr.len(),
        yva.len()
    );
    Ok(())
}
