//! `[automate]` of kiln.toml: when the retrain controller retrains, what it learns from, and
//! what a candidate must prove before it replaces the champion.

use kiln_core::value::parse_duration;
use serde::Deserialize;

use crate::AutomateError;
use crate::rollout::{RolloutConfig, Strategy};

/// The controller's settings, checked in full.
#[derive(Clone, Debug, PartialEq)]
pub struct AutomateConfig {
    /// Run the controller inside `kiln serve`.
    pub enabled: bool,
    /// The registered model it keeps healthy (default: `[train] register`).
    pub model: Option<String>,
    /// The alias the champion holds.
    pub alias: String,
    /// The dataset that labelled production rows are appended to (default: `[train] dataset`).
    pub dataset: Option<String>,
    /// Retrain every this much event time (microseconds), alerts or not.
    pub schedule: Option<i64>,
    /// Alert rules that trigger a retraining; `None`: every firing alert of the model.
    pub on_alerts: Option<Vec<String>>,
    /// Event time between two retrainings (microseconds).
    pub cooldown: i64,
    /// At most this many retrainings per `period` of event time.
    pub max_retrains: usize,
    pub period: i64,
    /// New labelled production rows a retraining needs.
    pub min_labelled_rows: u64,
    /// How the candidate's primary metric must compare with the champion's on the same rows:
    /// at least this fraction better (negative: at most that much worse).
    pub margin: f64,
    /// Bound on a single-row prediction's latency (milliseconds, median of 25).
    pub max_latency_ms: f64,
    /// How often the controller looks (wall clock, milliseconds).
    pub poll_ms: u64,
    /// `[train]` keys that retrainings override (e.g. `window`, `recency_half_life`).
    pub train: toml::Table,
    /// How a candidate that passed the gates reaches traffic.
    pub strategy: Strategy,
    /// `[automate.rollout]`: how a shadow or canary rollout is judged.
    pub rollout: RolloutConfig,
    /// Retrain by running the declared `[pipeline]` (after the harvest) instead of the
    /// built-in train, gates and deploy.
    pub pipeline: bool,
}

impl Default for AutomateConfig {
    fn default() -> Self {
        const DAY: i64 = 86_400_000_000;
        Self {
            enabled: false,
            model: None,
            alias: "production".into(),
            dataset: None,
            schedule: None,
            on_alerts: None,
            cooldown: DAY,
            max_retrains: 24,
            period: 7 * DAY,
            min_labelled_rows: 100,
            margin: -0.05,
            max_latency_ms: 50.0,
            poll_ms: 1000,
            train: toml::Table::new(),
            strategy: Strategy::Direct,
            rollout: RolloutConfig::default(),
            pipeline: false,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    enabled: Option<bool>,
    model: Option<String>,
    alias: Option<String>,
    dataset: Option<String>,
    schedule: Option<String>,
    on_alerts: Option<Vec<String>>,
    cooldown: Option<String>,
    max_retrains: Option<usize>,
    period: Option<String>,
    min_labelled_rows: Option<u64>,
    margin: Option<f64>,
    max_latency_ms: Option<f64>,
    poll: Option<String>,
    train: Option<toml::Table>,
    strategy: Option<String>,
    rollout: Option<toml::Table>,
    pipeline: Option<bool>,
}

impl AutomateConfig {
    /// Reads `[automate]`; every key is optional.
    pub fn from_table(table: &toml::Table) -> Result<Self, AutomateError> {
        let s: Section =
            toml::Value::Table(table.clone())
                .try_into()
                .map_err(|e: toml::de::Error| {
                    AutomateError::Input(format!("[automate]: {}", e.message().trim()))
                })?;
        let d = Self::default();
        let duration = |key: &str, v: &Option<String>| -> Result<Option<i64>, AutomateError> {
            v.as_deref()
                .map(|t| {
                    parse_duration(t).ok_or_else(|| {
                        AutomateError::Input(format!(
                            "[automate] {key} = \"{t}\" is not a duration\nhint: a whole number and a unit: 7d, 12h, 30m"
                        ))
                    })
                })
                .transpose()
        };
        let margin = s.margin.unwrap_or(d.margin);
        if !(margin > -1.0 && margin < 1.0) {
            return Err(AutomateError::Input(format!(
                "[automate] margin = {margin}: a fraction in (-1, 1): 0.02, the candidate must beat the champion by 2%; -0.05, it may trail it by 5%"
            )));
        }
        let max_latency_ms = s.max_latency_ms.unwrap_or(d.max_latency_ms);
        if !(max_latency_ms > 0.0 && max_latency_ms.is_finite()) {
            return Err(AutomateError::Input(format!(
                "[automate] max_latency_ms = {max_latency_ms}: a positive number of milliseconds"
            )));
        }
        for (key, name) in [("model", &s.model), ("dataset", &s.dataset)] {
            if let Some(n) = name {
                kiln_core::names::validate_name(key, n)
                    .map_err(|e| AutomateError::Input(format!("[automate] {key}: {e}")))?;
            }
        }
        Ok(Self {
            enabled: s.enabled.unwrap_or(d.enabled),
            model: s.model,
            alias: s.alias.unwrap_or(d.alias),
            dataset: s.dataset,
            schedule: duration("schedule", &s.schedule)?,
            on_alerts: s.on_alerts,
            cooldown: duration("cooldown", &s.cooldown)?.unwrap_or(d.cooldown),
            max_retrains: s.max_retrains.unwrap_or(d.max_retrains),
            period: duration("period", &s.period)?.unwrap_or(d.period),
            min_labelled_rows: s.min_labelled_rows.unwrap_or(d.min_labelled_rows),
            margin,
            max_latency_ms,
            poll_ms: duration("poll", &s.poll)?.map_or(d.poll_ms, |us| (us / 1000).max(1) as u64),
            train: s.train.unwrap_or_default(),
            strategy: match s.strategy.as_deref() {
                None => d.strategy,
                Some(t) => Strategy::parse(t).ok_or_else(|| {
                    AutomateError::Input(format!(
                        "[automate] strategy = \"{t}\": use direct, shadow or canary"
                    ))
                })?,
            },
            rollout: RolloutConfig::from_table(&s.rollout.unwrap_or_default())?,
            pipeline: s.pipeline.unwrap_or(d.pipeline),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AutomateConfig, AutomateError> {
        AutomateConfig::from_table(&toml::from_str(text).unwrap())
    }

    #[test]
    fn keys_are_optional_checked_and_named_in_errors() {
        assert_eq!(parse("").unwrap(), AutomateConfig::default());
        let c = parse(
            "enabled = true\nschedule = \"7d\"\ncooldown = \"2d\"\npoll = \"250ms\"\n\
             on_alerts = [\"data_drift\"]\nmargin = 0.02\n[train]\nwindow = \"56d\"\n",
        )
        .unwrap();
        assert!(c.enabled);
        assert_eq!(c.schedule, Some(7 * 86_400_000_000));
        assert_eq!(c.cooldown, 2 * 86_400_000_000);
        assert_eq!(c.poll_ms, 250);
        assert_eq!(c.on_alerts.as_deref(), Some(&["data_drift".to_owned()][..]));
        assert_eq!(c.train["window"].as_str(), Some("56d"));
        for (text, needle) in [
            ("schedule = \"weekly\"", "not a duration"),
            ("margin = 1.5", "fraction"),
            ("max_latency_ms = -1.0", "positive"),
            ("retrain = true", "retrain"),
            ("model = \"../x\"", "model"),
            ("strategy = \"blue-green\"", "direct, shadow or canary"),
            ("[rollout]\nsamples = 3", "samples"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
