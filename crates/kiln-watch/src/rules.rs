//! `[monitor]` in kiln.toml: live windows, alert rules and the webhook; and each rule's
//! verdict on a window.
//!
//! A rule names what it watches (`when`), what breaches it (`threshold` or `factor`), how
//! serious that is (`severity`) and how many rows a window needs before the rule may judge it
//! (`min_rows`; labelled rows for rules on labels). A window too small, or missing what the
//! rule reads, gets no verdict: a firing alert keeps firing and a quiet one stays quiet, so
//! a thin window cannot resolve a real problem or raise a false one.
//!
//! `realized` and `estimated` compare a metric with its reference value on the validation
//! rows by a `factor`: an error metric (`mae`, `rmse`) breaches when it exceeds
//! `reference × factor`; a rate (`accuracy`, `f1`, `roc_auc`) when its shortfall from 1 exceeds
//! the reference's shortfall × factor (accuracy 0.90 with factor 1.5 breaches below 0.85).

use kiln_monitor::{DriftSettings, drift_settings};
use serde::{Deserialize, Serialize};

use crate::window::WindowReport;
use crate::{Result, WatchError};

/// What a rule watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Share of drifted inputs at or above `threshold` (default: `[monitor.drift] share`).
    DriftShare,
    /// One input (`feature`) drifted.
    FeatureDrift,
    /// The predictions drifted from the validation predictions.
    PredictionDrift,
    /// The labels drifted from the training target.
    TargetDrift,
    /// A realized metric (`metric`) worse than its reference by `factor`.
    Realized,
    /// An estimated metric (`metric`) worse than its reference by `factor`.
    Estimated,
    /// Missing-value rate of `feature` (or of any input) above `threshold`.
    MissingRate,
    /// Out-of-range rate of `feature` (or of any numeric input) above `threshold`.
    OutOfRangeRate,
    /// Share of failed prediction requests above `threshold` (live, in `kiln serve`).
    ErrorRate,
    /// 99th percentile of logged latency above `threshold` milliseconds.
    LatencyP99Ms,
}

/// How serious a rule's breach is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    /// The severity named by [`Severity::as_str`] (as alerts store it).
    pub fn from_name(name: &str) -> Option<Self> {
        [Severity::Info, Severity::Warning, Severity::Critical]
            .into_iter()
            .find(|s| s.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

fn warning() -> Severity {
    Severity::Warning
}

fn hundred() -> u64 {
    100
}

/// One `[[monitor.alerts]]` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    pub name: String,
    pub when: Condition,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    #[serde(default = "warning")]
    pub severity: Severity,
    #[serde(default = "hundred")]
    pub min_rows: u64,
}

/// A rule's verdict on a window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    pub rule: String,
    pub severity: Severity,
    pub firing: bool,
    /// What the rule measured.
    pub value: Option<f64>,
    /// What it was compared with.
    pub threshold: Option<f64>,
    /// Why, in words.
    pub message: String,
}

/// Where live windows end in `kiln serve`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Windowing {
    /// Fixed event-time windows of this many microseconds, aligned to the epoch.
    Time(i64),
    /// Every this many predictions.
    Count(u64),
}

/// `[monitor]`, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct MonitorConfig {
    pub drift: DriftSettings,
    pub alerts: Vec<AlertRule>,
    /// Live windows.
    pub window: Windowing,
    /// How often `kiln serve` evaluates its current window, in milliseconds.
    pub interval_ms: u64,
    /// Closed windows `kiln serve` keeps in memory for the dashboard and late labels.
    pub history: usize,
    /// Where alert transitions are POSTed as JSON.
    pub webhook: Option<String>,
    /// Whether `[[monitor.alerts]]` was given (otherwise [`default_rules`] apply).
    pub rules_configured: bool,
    /// Whether `kiln serve` monitors live (it needs the prediction log on).
    pub live: bool,
    /// Which predictions a server's live windows hold.
    pub scope: Scope,
}

/// Which predictions a server's live windows hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    /// The ones this server logs (each replica watches its share of the traffic).
    #[default]
    Replica,
    /// Every server's, read back from the shared prediction log: with several replicas, each
    /// one's windows, metrics and alerts cover all the traffic.
    Shared,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            drift: DriftSettings::default(),
            alerts: Vec::new(),
            window: Windowing::Time(3_600_000_000),
            interval_ms: 10_000,
            history: 48,
            webhook: None,
            rules_configured: false,
            live: true,
            scope: Scope::Replica,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    live: Option<bool>,
    scope: Option<String>,
    window: Option<String>,
    window_rows: Option<u64>,
    interval: Option<String>,
    history: Option<usize>,
    webhook: Option<String>,
    alerts: Option<Vec<AlertRule>>,
}

pub use kiln_core::value::parse_duration;

/// The rules that apply when kiln.toml names none: the dataset's drift verdict, prediction
/// drift, and the model's first reference metric, realized and estimated.
pub fn default_rules(primary: &str) -> Vec<AlertRule> {
    let rule = |name: &str, when, metric: Option<&str>, factor, severity, min_rows| AlertRule {
        name: name.to_owned(),
        when,
        feature: None,
        metric: metric.map(str::to_owned),
        threshold: None,
        factor,
        severity,
        min_rows,
    };
    vec![
        rule(
            "data_drift",
            Condition::DriftShare,
            None,
            None,
            Severity::Warning,
            100,
        ),
        rule(
            "prediction_drift",
            Condition::PredictionDrift,
            None,
            None,
            Severity::Warning,
            100,
        ),
        rule(
            "realized_performance",
            Condition::Realized,
            Some(primary),
            Some(1.5),
            Severity::Critical,
            50,
        ),
        rule(
            "estimated_performance",
            Condition::Estimated,
            Some(primary),
            Some(1.5),
            Severity::Warning,
            100,
        ),
    ]
}

impl MonitorConfig {
    /// Reads `[monitor]` (already parsed as TOML), checking every key and value.
    pub fn from_table(monitor: &toml::Table) -> Result<Self> {
        let mut drift_only = toml::Table::new();
        let mut rest = monitor.clone();
        if let Some(d) = rest.remove("drift") {
            drift_only.insert("drift".into(), d);
        }
        let drift = drift_settings(&drift_only).map_err(|e| WatchError::Input(e.to_string()))?;
        let section: Section =
            toml::Value::Table(rest)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    WatchError::Input(format!("[monitor]: {}", e.message().trim()))
                })?;
        let window = match (&section.window, section.window_rows) {
            (Some(_), Some(_)) => {
                return Err(WatchError::Input(
                    "[monitor] sets both window and window_rows; choose time windows or count windows".into(),
                ));
            }
            (Some(w), None) => Windowing::Time(parse_duration(w).ok_or_else(|| {
                WatchError::Input(format!(
                    "[monitor] window = {w:?} is not a duration (e.g. 30m, 1h, 1d)"
                ))
            })?),
            (None, Some(0)) => {
                return Err(WatchError::Input(
                    "[monitor] window_rows must be at least 1".into(),
                ));
            }
            (None, Some(n)) => Windowing::Count(n),
            (None, None) => Windowing::Time(3_600_000_000),
        };
        let interval_ms = match &section.interval {
            Some(i) => parse_duration(i)
                .map(|us| (us / 1000).max(1) as u64)
                .ok_or_else(|| {
                    WatchError::Input(format!(
                        "[monitor] interval = {i:?} is not a duration (e.g. 10s)"
                    ))
                })?,
            None => 10_000,
        };
        if let Some(w) = &section.webhook
            && !(w.starts_with("http://") || w.starts_with("https://"))
        {
            return Err(WatchError::Input(format!(
                "[monitor] webhook = {w:?} is not an http:// or https:// URL"
            )));
        }
        let rules_configured = section.alerts.is_some();
        let alerts = section.alerts.unwrap_or_default();
        let mut names = std::collections::BTreeSet::new();
        for (i, r) in alerts.iter().enumerate() {
            check_rule(r).map_err(|m| {
                WatchError::Input(format!(
                    "[[monitor.alerts]] entry {} (`{}`): {m}",
                    i + 1,
                    r.name
                ))
            })?;
            if !names.insert(r.name.as_str()) {
                return Err(WatchError::Input(format!(
                    "[[monitor.alerts]] names `{}` twice; rule names must be unique",
                    r.name
                )));
            }
        }
        let scope = match section.scope.as_deref() {
            None | Some("replica") => Scope::Replica,
            Some("shared") => Scope::Shared,
            Some(other) => {
                return Err(WatchError::Input(format!(
                    "[monitor] scope = {other:?}: use \"replica\" (what each server logs) or \"shared\" (every replica's log)"
                )));
            }
        };
        Ok(Self {
            drift,
            alerts,
            window,
            interval_ms,
            history: section.history.unwrap_or(48),
            webhook: section.webhook,
            rules_configured,
            live: section.live.unwrap_or(true),
            scope,
        })
    }

    /// The rules in force for a model whose first reference metric is `primary`.
    pub fn rules(&self, primary: &str) -> Vec<AlertRule> {
        if self.rules_configured {
            self.alerts.clone()
        } else {
            default_rules(primary)
        }
    }
}

const METRICS: [&str; 5] = ["mae", "rmse", "accuracy", "f1", "roc_auc"];

fn check_rule(r: &AlertRule) -> std::result::Result<(), String> {
    if r.name.trim().is_empty() {
        return Err("a rule needs a name".into());
    }
    let need = |what: bool, msg: &str| if what { Ok(()) } else { Err(msg.to_owned()) };
    match r.when {
        Condition::FeatureDrift => need(r.feature.is_some(), "feature_drift needs `feature`")?,
        Condition::Realized | Condition::Estimated => {
            let m = r
                .metric
                .as_deref()
                .ok_or("needs `metric` (mae, rmse, accuracy, f1, roc_auc)")?;
            need(
                METRICS.contains(&m),
                &format!("metric `{m}` is not one of mae, rmse, accuracy, f1, roc_auc"),
            )?;
            if let Some(f) = r.factor {
                need(
                    f.is_finite() && f >= 1.0,
                    "factor must be a number of at least 1",
                )?;
            }
        }
        Condition::MissingRate | Condition::OutOfRangeRate | Condition::ErrorRate => {
            let t = r
                .threshold
                .ok_or("needs `threshold` (a share between 0 and 1)")?;
            need(
                (0.0..=1.0).contains(&t),
                "threshold must be a share between 0 and 1",
            )?;
        }
        Condition::LatencyP99Ms => {
            let t = r.threshold.ok_or("needs `threshold` (milliseconds)")?;
            need(
                t.is_finite() && t > 0.0,
                "threshold must be a positive number of milliseconds",
            )?;
        }
        Condition::DriftShare => {
            if let Some(t) = r.threshold {
                need(
                    t > 0.0 && t <= 1.0,
                    "threshold must be above 0 and at most 1",
                )?;
            }
        }
        Condition::PredictionDrift | Condition::TargetDrift => {}
    }
    Ok(())
}

fn lower_is_better(metric: &str) -> bool {
    matches!(metric, "mae" | "rmse")
}

/// A metric compared with its reference by a factor: (breached, limit).
fn worse_by(metric: &str, value: f64, reference: f64, factor: f64) -> (bool, f64) {
    if lower_is_better(metric) {
        let limit = reference * factor;
        (value > limit, limit)
    } else {
        let limit = 1.0 - (1.0 - reference) * factor;
        (value < limit, limit)
    }
}

impl AlertRule {
    /// This rule's verdict on `w`; `None` when the window cannot be judged (too few rows, or
    /// nothing to read). `error_rate` is the live share of failed requests, when known.
    pub fn check(
        &self,
        w: &WindowReport,
        drift_share: f64,
        error_rate: Option<f64>,
    ) -> Option<Verdict> {
        let verdict = |firing: bool, value: f64, threshold: Option<f64>, message: String| Verdict {
            rule: self.name.clone(),
            severity: self.severity,
            firing,
            value: Some(value),
            threshold,
            message,
        };
        let enough = |rows: u64| rows >= self.min_rows.max(1);
        match self.when {
            Condition::DriftShare => {
                if !enough(w.rows) {
                    return None;
                }
                let d = w.drift.as_ref()?.dataset.as_ref()?;
                let t = self.threshold.unwrap_or(drift_share);
                let drifted: Vec<&str> = w
                    .drift
                    .as_ref()?
                    .columns
                    .iter()
                    .filter(|c| c.drift.as_ref().is_some_and(|d| d.drifted))
                    .map(|c| c.name.as_str())
                    .collect();
                Some(verdict(
                    d.share >= t,
                    d.share,
                    Some(t),
                    format!(
                        "{} of {} inputs drifted ({:.0}%, threshold {:.0}%): {}",
                        d.drifted_columns,
                        d.columns,
                        d.share * 100.0,
                        t * 100.0,
                        if drifted.is_empty() {
                            "none".to_owned()
                        } else {
                            drifted.join(", ")
                        }
                    ),
                ))
            }
            Condition::FeatureDrift => {
                if !enough(w.rows) {
                    return None;
                }
                let f = self.feature.as_deref()?;
                let c = w.drift.as_ref()?.columns.iter().find(|c| c.name == f)?;
                let d = c.drift.as_ref()?;
                Some(verdict(
                    d.drifted,
                    d.score,
                    Some(d.threshold),
                    format!(
                        "`{f}`: {} {:.4} (threshold {})",
                        d.method.name(),
                        d.score,
                        d.threshold
                    ),
                ))
            }
            Condition::PredictionDrift | Condition::TargetDrift => {
                let (c, rows, what) = if self.when == Condition::PredictionDrift {
                    (w.prediction_drift.as_ref(), w.rows, "predictions")
                } else {
                    (w.target_drift.as_ref(), w.labelled_rows, "labels")
                };
                if !enough(rows) {
                    return None;
                }
                let d = c?.drift.as_ref()?;
                Some(verdict(
                    d.drifted,
                    d.score,
                    Some(d.threshold),
                    format!(
                        "{what}: {} {:.4} (threshold {})",
                        d.method.name(),
                        d.score,
                        d.threshold
                    ),
                ))
            }
            Condition::Realized | Condition::Estimated => {
                let metric = self.metric.as_deref()?;
                let reference = *w.reference.get(metric)?;
                let factor = self.factor.unwrap_or(1.5);
                let (value, rows, what) = if self.when == Condition::Realized {
                    let m = w.realized(metric)?;
                    (m.value, m.rows, "realized")
                } else {
                    (*w.estimated.get(metric)?, w.rows, "estimated")
                };
                if !enough(rows) || !value.is_finite() {
                    return None;
                }
                let (breached, limit) = worse_by(metric, value, reference, factor);
                Some(verdict(
                    breached,
                    value,
                    Some(limit),
                    format!(
                        "{what} {metric} {value:.4} on {rows} rows; reference {reference:.4}, limit {limit:.4} (factor {factor})"
                    ),
                ))
            }
            Condition::MissingRate | Condition::OutOfRangeRate => {
                if !enough(w.rows) {
                    return None;
                }
                let t = self.threshold?;
                let missing = self.when == Condition::MissingRate;
                let worst = w
                    .drift
                    .as_ref()?
                    .columns
                    .iter()
                    .filter(|c| self.feature.as_deref().is_none_or(|f| f == c.name))
                    .filter_map(|c| {
                        let rate = if missing {
                            c.current_missing_rate
                        } else {
                            c.out_of_range_rate
                        };
                        rate.map(|r| (c.name.as_str(), r))
                    })
                    .max_by(|a, b| a.1.total_cmp(&b.1))?;
                let what = if missing { "missing" } else { "out of range" };
                Some(verdict(
                    worst.1 > t,
                    worst.1,
                    Some(t),
                    format!(
                        "`{}`: {:.2}% of values {what} (threshold {:.2}%)",
                        worst.0,
                        worst.1 * 100.0,
                        t * 100.0
                    ),
                ))
            }
            Condition::ErrorRate => {
                let rate = error_rate?;
                let t = self.threshold?;
                Some(verdict(
                    rate > t,
                    rate,
                    Some(t),
                    format!(
                        "{:.2}% of prediction requests failed (threshold {:.2}%)",
                        rate * 100.0,
                        t * 100.0
                    ),
                ))
            }
            Condition::LatencyP99Ms => {
                if !enough(w.rows) {
                    return None;
                }
                let p99 = w.latency_p99_ms?;
                let t = self.threshold?;
                Some(verdict(
                    p99 > t,
                    p99,
                    Some(t),
                    format!("p99 latency {p99:.2} ms (threshold {t} ms)"),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn defaults_apply_without_rules_and_configured_rules_replace_them() {
        let c = MonitorConfig::from_table(&toml::Table::new()).unwrap();
        assert_eq!(c.window, Windowing::Time(3_600_000_000));
        assert_eq!(c.interval_ms, 10_000);
        assert_eq!(c.rules("mae").len(), 4);
        let c = MonitorConfig::from_table(&table(
            "window_rows = 500\ninterval = \"2s\"\n[drift]\nshare = 0.3\n\
             [[alerts]]\nname = \"slow\"\nwhen = \"latency_p99_ms\"\nthreshold = 50\nseverity = \"critical\"\n",
        ))
        .unwrap();
        assert_eq!(c.window, Windowing::Count(500));
        assert_eq!(c.interval_ms, 2000);
        assert_eq!(c.drift.drift_share, 0.3);
        let rules = c.rules("mae");
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].severity, Severity::Critical);
        assert_eq!(rules[0].min_rows, 100);
    }

    #[test]
    fn bad_rules_are_refused_with_the_entry_named() {
        for (text, needle) in [
            (
                "[[alerts]]\nname = \"a\"\nwhen = \"feature_drift\"\n",
                "needs `feature`",
            ),
            (
                "[[alerts]]\nname = \"a\"\nwhen = \"realized\"\nmetric = \"r2\"\n",
                "`r2` is not one of",
            ),
            (
                "[[alerts]]\nname = \"a\"\nwhen = \"missing_rate\"\nthreshold = 3\n",
                "share between 0 and 1",
            ),
            (
                "[[alerts]]\nname = \"a\"\nwhen = \"drift\"\n",
                "unknown variant",
            ),
            (
                "[[alerts]]\nname = \"a\"\nwhen = \"prediction_drift\"\n[[alerts]]\nname = \"a\"\nwhen = \"target_drift\"\n",
                "twice",
            ),
            ("window = \"an hour\"\n", "not a duration"),
            ("window = \"1h\"\nwindow_rows = 5\n", "both"),
            ("webhook = \"ftp://x\"\n", "not an http"),
            ("scope = \"cluster\"\n", "use \"replica\""),
            ("colour = 1\n", "unknown field"),
        ] {
            let e = MonitorConfig::from_table(&table(text))
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{text}: {e}");
            assert!(e.contains("[monitor") || e.contains("[[monitor"), "{e}");
        }
    }

    fn window(rows: u64, labelled: u64, p99: f64, mae: f64) -> WindowReport {
        WindowReport {
            start: 0,
            end: 10,
            rows,
            unreadable_rows: 0,
            drift: None,
            prediction_drift: None,
            target_drift: None,
            labelled_rows: labelled,
            realized: vec![kiln_monitor::RealizedMetric {
                name: "mae",
                value: mae,
                lower: mae - 1.0,
                upper: mae + 1.0,
                rows: labelled,
            }],
            estimated: [("mae".to_owned(), 12.0)].into(),
            reference: [("mae".to_owned(), 10.0)].into(),
            latency_p50_ms: Some(p99 / 2.0),
            latency_p99_ms: Some(p99),
            flags: Default::default(),
            notes: vec![],
        }
    }

    fn rule(text: &str) -> AlertRule {
        toml::from_str(&format!("name = \"r\"\n{text}")).unwrap()
    }

    #[test]
    fn rules_judge_only_windows_with_enough_rows_and_say_why() {
        let slow = rule("when = \"latency_p99_ms\"\nthreshold = 50\nmin_rows = 100");
        let v = slow.check(&window(500, 0, 80.0, 10.0), 0.5, None).unwrap();
        assert!(v.firing && v.value == Some(80.0));
        assert!(v.message.contains("80.00 ms"), "{}", v.message);
        assert!(
            !slow
                .check(&window(500, 0, 20.0, 10.0), 0.5, None)
                .unwrap()
                .firing
        );
        // Too few rows: no verdict, so a firing alert keeps firing.
        assert!(slow.check(&window(99, 0, 80.0, 10.0), 0.5, None).is_none());

        // Realized counts labelled rows, not predictions.
        let mae = rule("when = \"realized\"\nmetric = \"mae\"\nmin_rows = 50");
        assert!(mae.check(&window(500, 49, 1.0, 30.0), 0.5, None).is_none());
        let v = mae.check(&window(500, 50, 1.0, 30.0), 0.5, None).unwrap();
        assert!(v.firing && v.threshold == Some(15.0), "{v:?}");
        let est = rule("when = \"estimated\"\nmetric = \"mae\"\nfactor = 1.1");
        assert!(
            est.check(&window(500, 0, 1.0, 1.0), 0.5, None)
                .unwrap()
                .firing
        );

        // The error rate comes from the server; without it there is nothing to judge.
        let errors = rule("when = \"error_rate\"\nthreshold = 0.01\nseverity = \"critical\"");
        assert!(errors.check(&window(500, 0, 1.0, 1.0), 0.5, None).is_none());
        let v = errors
            .check(&window(500, 0, 1.0, 1.0), 0.5, Some(0.02))
            .unwrap();
        assert!(v.firing && v.severity == Severity::Critical);

        // Drift rules need a drift report.
        let drift = rule("when = \"drift_share\"");
        assert!(drift.check(&window(500, 0, 1.0, 1.0), 0.5, None).is_none());
    }

    #[test]
    fn rates_are_worse_by_their_shortfall_and_errors_by_their_size() {
        assert_eq!(worse_by("mae", 16.0, 10.0, 1.5), (true, 15.0));
        assert!(!worse_by("mae", 14.0, 10.0, 1.5).0);
        let (breached, limit) = worse_by("accuracy", 0.84, 0.9, 1.5);
        assert!(breached && (limit - 0.85).abs() < 1e-12);
        assert!(!worse_by("accuracy", 0.86, 0.9, 1.5).0);
        assert_eq!(parse_duration("90s"), Some(90_000_000));
        assert_eq!(parse_duration("1d"), Some(86_400_000_000));
        assert_eq!(parse_duration("0h"), None);
        assert_eq!(parse_duration("h"), None);
    }
}
