//! Monitoring over any stored range of the prediction log (`kiln monitor`): the range is read
//! page by page, each logged prediction goes to its window (fixed event-time windows, count
//! windows, or the whole range as one), labels are joined from the feedback, and every window
//! is evaluated and judged by the alert rules.
//!
//! Memory stays bounded by the windows' summaries, not the rows: a page is summarized and
//! dropped before the next is read.

use std::collections::BTreeMap;

use kiln_model::artifact::ModelArtifact;
use kiln_monitor::ReferenceTask;
use kiln_store::{LabelQuery, LabelledPrediction, MetaStore, PredictionQuery, StoredPrediction};
use rustc_hash::FxHashMap;

use crate::report::{AlertEvent, MonitorReport, distribution, distributions};
use crate::rules::{AlertRule, MonitorConfig};
use crate::window::{WindowReport, WindowState, json_batcher};
use crate::{Result, WatchError};

/// Rows read per page.
const PAGE: i64 = 20_000;

/// How a stored range is cut into windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeWindows {
    /// The whole range as one window.
    Whole,
    /// Fixed event-time windows of this many microseconds, aligned to the epoch.
    Every(i64),
    /// Every this many predictions, in log order.
    Count(u64),
}

impl RangeWindows {
    fn describe(self) -> String {
        match self {
            RangeWindows::Whole => "the whole range as one window".into(),
            RangeWindows::Every(us) => format!("event-time windows of {}", describe_duration(us)),
            RangeWindows::Count(n) => format!("windows of {n} predictions"),
        }
    }
}

/// A duration in the largest whole unit.
pub fn describe_duration(us: i64) -> String {
    for (unit, size) in [
        ("d", 86_400_000_000),
        ("h", 3_600_000_000),
        ("m", 60_000_000),
        ("s", 1_000_000),
    ] {
        if us % size == 0 {
            return format!("{}{unit}", us / size);
        }
    }
    format!("{}ms", us / 1000)
}

/// What to monitor.
pub struct RangeRequest<'a> {
    pub model: &'a str,
    pub version: i64,
    pub artifact: &'a ModelArtifact,
    /// Event-time range `[from, to)`, microseconds since the epoch.
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub windows: RangeWindows,
    pub config: &'a MonitorConfig,
}

/// The task's name and the model's first reference metric.
pub fn task_name(task: &ReferenceTask) -> &'static str {
    match task {
        ReferenceTask::Regression => "regression",
        ReferenceTask::Binary { .. } => "binary",
        ReferenceTask::Multiclass => "multiclass",
    }
}

/// The metric alert defaults watch: MAE for regressors, accuracy for classifiers.
pub fn primary_metric(task: &ReferenceTask) -> &'static str {
    match task {
        ReferenceTask::Regression => "mae",
        _ => "accuracy",
    }
}

/// Monitors a stored range of one model version's predictions.
pub async fn monitor_range(meta: &MetaStore, req: &RangeRequest<'_>) -> Result<MonitorReport> {
    let monitoring = req.artifact.monitoring.as_ref().ok_or_else(|| {
        WatchError::Input(format!(
            "{}@{} has no monitoring reference (it was made before Kiln kept one, or had no validation rows)\nhint: retrain it with `kiln train --register {}`",
            req.model, req.version, req.model
        ))
    })?;
    if let (Some(f), Some(t)) = (req.from, req.to)
        && f >= t
    {
        return Err(WatchError::Input(
            "the range is empty: --from must be before --to".into(),
        ));
    }
    let batcher = json_batcher(req.artifact);
    let mut windows: BTreeMap<i64, WindowState> = BTreeMap::new();
    // Count windows: the first prediction id of each window, to route labels.
    let mut count_starts: Vec<(i64, i64)> = Vec::new();
    let mut seen: u64 = 0;
    let mut other_versions: u64 = 0;
    let mut after: Option<i64> = None;
    loop {
        let page = meta
            .predictions(&PredictionQuery {
                model: Some(req.model.to_owned()),
                from: req.from,
                to: req.to,
                after_id: after,
                limit: PAGE,
            })
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        let mut routed: BTreeMap<i64, Vec<&StoredPrediction>> = BTreeMap::new();
        for p in &page {
            if p.record.version != req.version {
                other_versions += 1;
                continue;
            }
            let key = match req.windows {
                RangeWindows::Whole => 0,
                RangeWindows::Every(us) => p.record.time.div_euclid(us),
                RangeWindows::Count(n) => {
                    let k = (seen / n) as i64;
                    if seen.is_multiple_of(n) {
                        count_starts.push((p.id, k));
                    }
                    k
                }
            };
            seen += 1;
            routed.entry(key).or_default().push(p);
        }
        for (key, rows) in routed {
            let w = windows.entry(key).or_insert_with(|| {
                let (start, end) = match req.windows {
                    RangeWindows::Every(us) => (key * us, key * us + us),
                    _ => (i64::MAX, i64::MIN),
                };
                WindowState::new(start, end)
            });
            if !matches!(req.windows, RangeWindows::Every(_)) {
                for r in &rows {
                    w.start = w.start.min(r.record.time);
                    w.end = w.end.max(r.record.time + 1);
                }
            }
            let records: Vec<_> = rows.iter().map(|p| &p.record).collect();
            w.observe(req.artifact, Some(monitoring), &batcher, &records)?;
        }
        if (page.len() as i64) < PAGE {
            break;
        }
    }

    // Labels: the latest feedback for each prediction of this version.
    let mut labels: FxHashMap<i64, LabelledPrediction> = FxHashMap::default();
    let mut after_feedback = None;
    loop {
        let page = meta
            .labelled_predictions(&LabelQuery {
                model: req.model.to_owned(),
                from: req.from,
                to: req.to,
                after_feedback,
                limit: PAGE,
                features: false,
                served_only: false,
            })
            .await?;
        let Some(last) = page.last() else { break };
        after_feedback = Some(last.feedback_id);
        let n = page.len();
        for l in page.into_iter().filter(|l| l.version == req.version) {
            labels.insert(l.prediction_id, l);
        }
        if (n as i64) < PAGE {
            break;
        }
    }
    let mut by_window: BTreeMap<i64, Vec<&LabelledPrediction>> = BTreeMap::new();
    for l in labels.values() {
        let key = match req.windows {
            RangeWindows::Whole => 0,
            RangeWindows::Every(us) => l.time.div_euclid(us),
            RangeWindows::Count(_) => {
                let at = count_starts.partition_point(|(id, _)| *id <= l.prediction_id);
                match at.checked_sub(1) {
                    Some(i) => count_starts[i].1,
                    None => continue,
                }
            }
        };
        by_window.entry(key).or_default().push(l);
    }
    for (key, ls) in by_window {
        if let Some(w) = windows.get_mut(&key) {
            w.add_labels(&monitoring.reference.task, &ls);
        }
    }

    let settings = &req.config.drift;
    let mut overall = WindowState::new(req.from.unwrap_or(i64::MAX), req.to.unwrap_or(i64::MIN));
    let mut reports = Vec::with_capacity(windows.len());
    for w in windows.values() {
        overall = overall.merge(w)?;
        reports.push(w.evaluate(monitoring, settings));
    }
    if overall.start > overall.end {
        (overall.start, overall.end) = (req.from.unwrap_or(0), req.to.unwrap_or(0));
    }
    let primary = primary_metric(&monitoring.reference.task);
    let rules = req.config.rules(primary);
    let alerts = transitions(&rules, &reports, settings.drift_share);
    let mut dists = distributions(&monitoring.reference.features, overall.features());
    if let Some(d) = overall
        .prediction()
        .and_then(|c| distribution("prediction", &monitoring.reference.prediction, c))
    {
        dists.push(d);
    }
    let mut notes = Vec::new();
    if seen == 0 {
        notes.push(format!(
            "no prediction of {}@{} was logged in this range",
            req.model, req.version
        ));
    }
    Ok(MonitorReport {
        model: req.model.to_owned(),
        version: req.version,
        task: task_name(&monitoring.reference.task).to_owned(),
        primary_metric: primary,
        from: req.from,
        to: req.to,
        generated_at: kiln_core::now_micros(),
        windowing: req.windows.describe(),
        reference_rows: monitoring.reference.features.rows(),
        validation_rows: monitoring.reference.validation_rows,
        windows: reports,
        overall: overall.evaluate(monitoring, settings),
        distributions: dists,
        alerts,
        other_version_rows: other_versions,
        notes,
    })
}

/// Each rule's firing and resolving over a sequence of windows: a rule fires at the first
/// window that breaches it and resolves at the first judged window that does not.
pub fn transitions(
    rules: &[AlertRule],
    windows: &[WindowReport],
    drift_share: f64,
) -> Vec<AlertEvent> {
    let mut firing = vec![false; rules.len()];
    let mut out = Vec::new();
    for w in windows {
        for (rule, on) in rules.iter().zip(firing.iter_mut()) {
            let Some(v) = rule.check(w, drift_share, None) else {
                continue;
            };
            if v.firing != *on {
                *on = v.firing;
                out.push(AlertEvent {
                    rule: v.rule,
                    severity: v.severity,
                    state: if v.firing { "firing" } else { "resolved" },
                    window_start: w.start,
                    window_end: w.end,
                    value: v.value,
                    threshold: v.threshold,
                    message: v.message,
                });
            }
        }
    }
    out
}
