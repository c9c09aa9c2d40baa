//! What `kiln train` does: the `[train]` table of kiln.toml with `--set KEY=VALUE` overrides,
//! checked in full before any work starts (an unknown key or a bad value names itself).

use kiln_core::value::parse_duration;
use kiln_model::learner::GbdtParams;
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// The resolved training recipe. Recorded with the run and in the model's lineage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSpec {
    /// NAME or NAME@VERSION; `None`: the project's only dataset.
    pub dataset: Option<String>,
    /// `None`: the dataset's target.
    pub target: Option<String>,
    /// Columns that must never be features.
    pub exclude: Vec<String>,
    pub learner: LearnerKind,
    pub seed: u64,
    /// Register the model under this name when training succeeds.
    pub register: Option<String>,
    /// Learn from recent rows only: those whose time is within this duration (`56d`, `8w`) of
    /// the dataset's latest time. Needs a time column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// Weigh training rows by recency: a row this much older than the latest one counts half
    /// (`30d`). Needs a time column; gradient-boosted trees only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recency_half_life: Option<String>,
    pub split: SplitSpec,
    pub gbdt: GbdtSpec,
    pub linear: LinearSpec,
}

impl Default for TrainSpec {
    fn default() -> Self {
        Self {
            dataset: None,
            target: None,
            exclude: Vec::new(),
            learner: LearnerKind::Gbdt,
            seed: 0,
            register: None,
            window: None,
            recency_half_life: None,
            split: SplitSpec::default(),
            gbdt: GbdtSpec::default(),
            linear: LinearSpec::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LearnerKind {
    Gbdt,
    Linear,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitMethod {
    /// Time when the dataset has a time column, else random.
    Auto,
    Time,
    Random,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplitSpec {
    pub method: SplitMethod,
    pub valid_fraction: f64,
    /// Time split: validate on rows at or after this date or timestamp.
    pub cutoff: Option<String>,
    /// At least 2: cross-validate the recipe with this many folds as well.
    pub folds: usize,
    /// After evaluation, fit the learner again on training and validation rows together (the
    /// feature pipeline stays the one fitted on training rows). The shipped model then knows
    /// the newest rows; the metrics, reference and loss model are the holdout fit's.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub refit: bool,
}

impl Default for SplitSpec {
    fn default() -> Self {
        Self {
            method: SplitMethod::Auto,
            valid_fraction: 0.2,
            cutoff: None,
            folds: 0,
            refit: false,
        }
    }
}

/// The tree learner's parameters (the seed is the run's `seed`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GbdtSpec {
    pub iterations: usize,
    // f64 here (the learner works in f32) so settings print as written: 0.15, not 0.150000006.
    pub learning_rate: f64,
    pub max_depth: usize,
    pub max_leaves: usize,
    pub min_leaf_weight: f64,
    pub l2: f64,
}

impl Default for GbdtSpec {
    fn default() -> Self {
        let d = GbdtParams::default();
        Self {
            iterations: d.iterations,
            learning_rate: 0.15,
            max_depth: d.max_depth,
            max_leaves: d.max_leaves,
            min_leaf_weight: f64::from(d.min_leaf_weight),
            l2: f64::from(d.l2),
        }
    }
}

impl GbdtSpec {
    pub fn params(&self, seed: u64) -> GbdtParams {
        GbdtParams {
            iterations: self.iterations,
            learning_rate: self.learning_rate as f32,
            max_depth: self.max_depth,
            max_leaves: self.max_leaves,
            min_leaf_weight: self.min_leaf_weight as f32,
            l2: self.l2 as f32,
            seed,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinearSpec {
    pub l2: f64,
}

impl Default for LinearSpec {
    fn default() -> Self {
        Self { l2: 1.0 }
    }
}

/// A `--set` value: TOML syntax when it parses (numbers, booleans, arrays), else a string.
fn parse_value(text: &str) -> toml::Value {
    let doc = format!("v = {text}");
    match toml::from_str::<toml::Table>(&doc) {
        // A bare date is a TOML date; every setting that takes one wants the text.
        Ok(mut t) => match t.remove("v") {
            Some(toml::Value::Datetime(_)) | None => toml::Value::String(text.to_owned()),
            Some(v) => v,
        },
        Err(_) => toml::Value::String(text.to_owned()),
    }
}

impl TrainSpec {
    /// The `[train]` table with `KEY=VALUE` overrides (dotted keys reach nested tables).
    pub fn resolve(table: &toml::Table, overrides: &[String]) -> Result<Self, TrainError> {
        let mut table = table.clone();
        for o in overrides {
            let (key, value) = o.split_once('=').ok_or_else(|| {
                TrainError::Input(format!(
                    "--set `{o}` is not KEY=VALUE\nhint: e.g. --set gbdt.iterations=200"
                ))
            })?;
            let path: Vec<&str> = key.trim().split('.').collect();
            if path.iter().any(|p| p.is_empty()) {
                return Err(TrainError::Input(format!("--set `{o}`: empty key")));
            }
            let mut at = &mut table;
            for p in &path[..path.len() - 1] {
                let entry = at
                    .entry((*p).to_owned())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                at = entry.as_table_mut().ok_or_else(|| {
                    TrainError::Input(format!("--set `{o}`: `{p}` is not a table"))
                })?;
            }
            let last = path[path.len() - 1].to_owned();
            at.insert(last, parse_value(value.trim()));
        }
        let spec: TrainSpec = toml::Value::Table(table).try_into().map_err(|e| {
            TrainError::Input(format!(
                "training settings ([train] in kiln.toml or --set): {}",
                e.to_string().trim_end()
            ))
        })?;
        spec.check()?;
        Ok(spec)
    }

    fn check(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Input(format!("training settings: {m}")));
        let f = self.split.valid_fraction;
        if !(f > 0.0 && f < 1.0) {
            return bad(format!(
                "split.valid_fraction must be between 0 and 1 (exclusive), got {f}"
            ));
        }
        if self.split.folds == 1 {
            return bad("split.folds must be 0 (off) or at least 2".into());
        }
        let g = &self.gbdt;
        if g.iterations == 0 || g.max_depth == 0 || g.max_leaves < 2 {
            return bad(
                "gbdt.iterations and gbdt.max_depth must be at least 1, gbdt.max_leaves at least 2"
                    .into(),
            );
        }
        if !(g.learning_rate > 0.0 && g.learning_rate <= 1.0) {
            return bad(format!(
                "gbdt.learning_rate must be in (0, 1], got {}",
                g.learning_rate
            ));
        }
        let non_negative = |x: f64| x >= 0.0 && x.is_finite();
        if ![g.min_leaf_weight, g.l2, self.linear.l2]
            .into_iter()
            .all(non_negative)
        {
            return bad("gbdt.min_leaf_weight, gbdt.l2 and linear.l2 must be >= 0".into());
        }
        if let Some(name) = &self.register {
            kiln_core::names::validate_name("model", name)
                .map_err(|e| TrainError::Input(e.to_string()))?;
        }
        for (key, value) in [
            ("window", &self.window),
            ("recency_half_life", &self.recency_half_life),
        ] {
            if let Some(v) = value
                && parse_duration(v).is_none()
            {
                return bad(format!(
                    "{key} `{v}` is not a duration\nhint: a whole number and a unit: 56d, 8w, 12h"
                ));
            }
        }
        if self.recency_half_life.is_some() && self.learner != LearnerKind::Gbdt {
            return bad("recency_half_life weighs rows for gradient-boosted trees; the linear learner takes no row weights".into());
        }
        Ok(())
    }

    /// `window` in microseconds (checked by `resolve`).
    pub fn window_micros(&self) -> Option<i64> {
        self.window.as_deref().and_then(parse_duration)
    }

    /// `recency_half_life` in microseconds (checked by `resolve`).
    pub fn half_life_micros(&self) -> Option<i64> {
        self.recency_half_life.as_deref().and_then(parse_duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_learner_defaults() {
        assert_eq!(
            GbdtSpec::default().params(5),
            GbdtParams {
                seed: 5,
                ..GbdtParams::default()
            }
        );
    }

    #[test]
    fn overrides_reach_nested_keys_and_typos_are_named() {
        let table: toml::Table = toml::from_str("seed = 3\n[gbdt]\niterations = 10\n").unwrap();
        let s = TrainSpec::resolve(
            &table,
            &[
                "gbdt.learning_rate=0.3".into(),
                "learner=linear".into(),
                "split.cutoff=2012-07-01".into(),
                "exclude=[\"a\", \"b\"]".into(),
            ],
        )
        .unwrap();
        assert_eq!(s.seed, 3);
        assert_eq!(s.gbdt.iterations, 10);
        assert_eq!(s.gbdt.learning_rate, 0.3);
        assert_eq!(s.learner, LearnerKind::Linear);
        // A bare date is TOML's local date; it must still arrive as the text given.
        assert_eq!(s.split.cutoff.as_deref(), Some("2012-07-01"));
        assert_eq!(s.exclude, vec!["a", "b"]);

        let e = TrainSpec::resolve(&table, &["gbdt.iteratons=5".into()]).unwrap_err();
        assert!(e.to_string().contains("iteratons"), "{e}");
        let e = TrainSpec::resolve(&table, &["split.valid_fraction=1.5".into()]).unwrap_err();
        assert!(e.to_string().contains("valid_fraction"), "{e}");
        let e = TrainSpec::resolve(&table, &["seed".into()]).unwrap_err();
        assert!(e.to_string().contains("KEY=VALUE"), "{e}");
        let e = TrainSpec::resolve(&table, &["learner=forest".into()]).unwrap_err();
        assert!(e.to_string().contains("forest"), "{e}");
    }
}
