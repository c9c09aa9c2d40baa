//! Direct loss estimation (DLE, as NannyML does it): the expected error of a regressor on rows
//! whose truth is not known yet.
//!
//! On the validation rows, where the truth is known, a second model learns the first one's
//! error from the same inputs plus its prediction: one booster for the absolute error, one for
//! the squared error. On a live window, the mean of the predicted absolute errors estimates the
//! MAE, and the square root of the mean predicted squared error the RMSE. The estimate follows
//! the window's mix of easy and hard rows (covariate shift: more rows where the model is known
//! to err), not a change in how the target relates to the inputs (concept drift), which only
//! labels reveal.

use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::features::Transformed;
use crate::learner::{Fitted, GbdtParams, Task};

/// The loss models of a regressor.
#[derive(Serialize, Deserialize)]
pub struct LossModel {
    /// Predicts `|y − ŷ|`.
    pub absolute: Fitted,
    /// Predicts `(y − ŷ)²`.
    pub squared: Fitted,
}

/// The expected errors of a window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EstimatedLoss {
    pub mae: f64,
    pub rmse: f64,
    pub rows: usize,
}

/// Small boosters: the error is noisier than the target, and validation sets are small.
fn params(seed: u64) -> GbdtParams {
    GbdtParams {
        iterations: 60,
        learning_rate: 0.1,
        max_depth: 4,
        max_leaves: 15,
        min_leaf_weight: 20.0,
        l2: 1.0,
        seed,
    }
}

/// `x` with the predictions as one more column.
fn with_prediction(x: &Transformed, predicted: &[f64]) -> Result<Transformed, ModelError> {
    if predicted.len() != x.rows {
        return Err(ModelError::Invalid(format!(
            "{} predictions for {} rows",
            predicted.len(),
            x.rows
        )));
    }
    let mut data = Vec::with_capacity(x.data.len() + predicted.len());
    data.extend_from_slice(&x.data);
    data.extend_from_slice(predicted);
    Ok(Transformed {
        data,
        rows: x.rows,
        features: x.features + 1,
        unknown: Vec::new(),
    })
}

impl LossModel {
    /// Learns the errors of `predicted` against `actual` on the validation features `x`.
    pub fn fit(
        x: &Transformed,
        predicted: &[f64],
        actual: &[f64],
        seed: u64,
    ) -> Result<Self, ModelError> {
        if actual.len() != predicted.len() {
            return Err(ModelError::Invalid(format!(
                "{} predictions for {} targets",
                predicted.len(),
                actual.len()
            )));
        }
        let xp = with_prediction(x, predicted)?;
        let absolute: Vec<f64> = predicted
            .iter()
            .zip(actual)
            .map(|(p, a)| (a - p).abs())
            .collect();
        let squared: Vec<f64> = absolute.iter().map(|e| e * e).collect();
        let p = params(seed);
        Ok(Self {
            absolute: Fitted::fit_gbdt(Task::Regression, &p, &xp, &absolute)?,
            squared: Fitted::fit_gbdt(Task::Regression, &p, &xp, &squared)?,
        })
    }

    /// Estimated MAE and RMSE of a window from its features and the model's predictions.
    pub fn estimate(
        &self,
        x: &Transformed,
        predicted: &[f64],
    ) -> Result<EstimatedLoss, ModelError> {
        if predicted.is_empty() {
            return Err(ModelError::Empty);
        }
        let xp = with_prediction(x, predicted)?;
        let values = |m: &Fitted| -> Result<Vec<f64>, ModelError> {
            match m.predict(&xp)? {
                crate::learner::Predictions::Values(v) => Ok(v),
                _ => Err(ModelError::Invalid("a loss model predicted classes".into())),
            }
        };
        let n = predicted.len() as f64;
        // A booster may undershoot zero on rows with tiny errors; an error is never negative.
        let mae = values(&self.absolute)?
            .iter()
            .map(|e| e.max(0.0))
            .sum::<f64>()
            / n;
        let mse = values(&self.squared)?
            .iter()
            .map(|e| e.max(0.0))
            .sum::<f64>()
            / n;
        Ok(EstimatedLoss {
            mae,
            rmse: mse.sqrt(),
            rows: predicted.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::split::SplitMix64;

    /// y = x + noise whose size grows with x: rows with large x are harder.
    fn data(n: usize, lo: f64, hi: f64, seed: u64) -> (Transformed, Vec<f64>, Vec<f64>) {
        let mut rng = SplitMix64::new(seed);
        let mut u = || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let x: Vec<f64> = (0..n).map(|_| lo + (hi - lo) * u()).collect();
        let actual: Vec<f64> = x.iter().map(|v| v + v * (2.0 * u() - 1.0)).collect();
        let t = Transformed {
            data: x.clone(),
            rows: n,
            features: 1,
            unknown: Vec::new(),
        };
        (t, x, actual)
    }

    #[test]
    fn estimate_follows_a_shift_towards_harder_rows() {
        let (x, predicted, actual) = data(4000, 0.0, 10.0, 1);
        let m = LossModel::fit(&x, &predicted, &actual, 7).unwrap();
        let realized = |p: &[f64], a: &[f64]| {
            p.iter().zip(a).map(|(p, a)| (a - p).abs()).sum::<f64>() / p.len() as f64
        };
        // Same population: estimate ≈ realized. Shifted to hard rows: both rise together.
        for (lo, hi, seed) in [(0.0, 10.0, 2), (6.0, 10.0, 3), (0.0, 3.0, 4)] {
            let (xw, pw, aw) = data(3000, lo, hi, seed);
            let e = m.estimate(&xw, &pw).unwrap();
            let r = realized(&pw, &aw);
            assert!(
                (e.mae - r).abs() / r < 0.1,
                "window [{lo}, {hi}]: estimated {} realized {r}",
                e.mae
            );
            assert!(e.rmse >= e.mae * 0.99, "{e:?}");
        }
        let easy = m.estimate(&data(1000, 0.0, 3.0, 5).0, &data(1000, 0.0, 3.0, 5).1);
        let hard = m.estimate(&data(1000, 6.0, 10.0, 6).0, &data(1000, 6.0, 10.0, 6).1);
        assert!(easy.unwrap().mae * 2.0 < hard.unwrap().mae);
        assert!(m.estimate(&x, &predicted[..3]).is_err());
    }
}
