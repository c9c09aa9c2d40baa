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
use std::path::Path;

use kiln_store::{LabelQuery, LabelledPrediction, PredictionQuery, Store, StoredPrediction};
use rustc_hash::FxHashMap;

use crate::archive::read_archived;
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
///
/// Archived days of the range (see [`crate::archive`]) are read from their files in the
/// artifact store (downloaded into `scratch` when it is remote), before the rows still in the
/// database; count windows follow that order.
pub async fn monitor_range(
    store: &Store,
    scratch: &Path,
    req: &RangeRequest<'_>,
) -> Result<MonitorReport> {
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
    // A compaction that commits while the range is read moves rows from the table to an
    // archive: the read may then miss or repeat them. Every compaction (and deletion) changes
    // the list of archives, so the same list before and after proves a consistent read; else
    // the range is read again.
    let mut attempts = 0;
    let mut c = loop {
        let before = meta_archives(store, req).await?;
        let read = read_range(store, scratch, req, monitoring).await?;
        if meta_archives(store, req).await? == before || attempts == 3 {
            break read;
        }
        attempts += 1;
    };
    let mut by_window: BTreeMap<i64, Vec<&LabelledPrediction>> = BTreeMap::new();
    for l in c.labels.values() {
        let key = match req.windows {
            RangeWindows::Whole => 0,
            RangeWindows::Every(us) => l.time.div_euclid(us),
            RangeWindows::Count(_) => {
                let at = c
                    .count_starts
                    .partition_point(|(id, _)| *id <= l.prediction_id);
                match at.checked_sub(1) {
                    Some(i) => c.count_starts[i].1,
                    None => continue,
                }
            }
        };
        by_window.entry(key).or_default().push(l);
    }
    for (key, ls) in by_window {
        if let Some(w) = c.windows.get_mut(&key) {
            w.add_labels(&monitoring.reference.task, &ls);
        }
    }

    let settings = &req.config.drift;
    let mut overall = WindowState::new(req.from.unwrap_or(i64::MAX), req.to.unwrap_or(i64::MIN));
    let mut reports = Vec::with_capacity(c.windows.len());
    for w in c.windows.values() {
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
    if c.seen == 0 {
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
        other_version_rows: c.other_versions,
        notes,
    })
}

/// The archives of the range (their ids), to detect a compaction during a read.
async fn meta_archives(store: &Store, req: &RangeRequest<'_>) -> Result<Vec<i64>> {
    Ok(store
        .meta
        .log_archives(Some(req.model), req.from, req.to)
        .await?
        .iter()
        .map(|a| a.id)
        .collect())
}

/// Where each logged row of the range goes: windows summarized so far, the first id of each
/// count window (to route labels), and the latest label of each prediction of the version.
struct Collector<'a> {
    req: &'a RangeRequest<'a>,
    monitoring: &'a kiln_model::artifact::Monitoring,
    batcher: kiln_data::rows::JsonBatcher,
    windows: BTreeMap<i64, WindowState>,
    count_starts: Vec<(i64, i64)>,
    labels: FxHashMap<i64, LabelledPrediction>,
    seen: u64,
    other_versions: u64,
}

impl Collector<'_> {
    /// Summarizes one page of logged rows (ascending ids) into its windows.
    fn observe(&mut self, page: &[StoredPrediction]) -> Result<()> {
        let req = self.req;
        let mut routed: BTreeMap<i64, Vec<&StoredPrediction>> = BTreeMap::new();
        for p in page {
            if p.record.version != req.version {
                self.other_versions += 1;
                continue;
            }
            let key = match req.windows {
                RangeWindows::Whole => 0,
                RangeWindows::Every(us) => p.record.time.div_euclid(us),
                RangeWindows::Count(n) => {
                    let k = (self.seen / n) as i64;
                    if self.seen.is_multiple_of(n) {
                        self.count_starts.push((p.id, k));
                    }
                    k
                }
            };
            self.seen += 1;
            routed.entry(key).or_default().push(p);
        }
        for (key, rows) in routed {
            let w = self.windows.entry(key).or_insert_with(|| {
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
            w.observe(req.artifact, Some(self.monitoring), &self.batcher, &records)?;
        }
        Ok(())
    }

    /// Keeps a label if it is the latest seen for its prediction.
    fn label(&mut self, l: LabelledPrediction) {
        if l.version != self.req.version {
            return;
        }
        match self.labels.get(&l.prediction_id) {
            Some(known) if known.feedback_id > l.feedback_id => {}
            _ => {
                self.labels.insert(l.prediction_id, l);
            }
        }
    }
}

/// Every label joined to `model`'s predictions (in the database) with event times in
/// `[from, to)`, by feedback id ascending (so a later label for a row is its correction).
pub(crate) async fn each_label(
    meta: &kiln_store::MetaStore,
    model: &str,
    from: Option<i64>,
    to: Option<i64>,
    mut f: impl FnMut(LabelledPrediction),
) -> Result<()> {
    let mut after_feedback = None;
    loop {
        let page = meta
            .labelled_predictions(&LabelQuery {
                model: model.to_owned(),
                from,
                to,
                after_feedback,
                limit: PAGE,
                features: false,
                served_only: false,
            })
            .await?;
        let Some(last) = page.last() else { break };
        after_feedback = Some(last.feedback_id);
        let n = page.len();
        page.into_iter().for_each(&mut f);
        if (n as i64) < PAGE {
            break;
        }
    }
    Ok(())
}

/// Reads the range once: its archived days (labels joined as stored and from later feedback),
/// then the rows still in the database and their labels.
async fn read_range<'a>(
    store: &Store,
    scratch: &Path,
    req: &'a RangeRequest<'a>,
    monitoring: &'a kiln_model::artifact::Monitoring,
) -> Result<Collector<'a>> {
    let meta = &store.meta;
    let mut c = Collector {
        req,
        monitoring,
        batcher: json_batcher(req.artifact),
        windows: BTreeMap::new(),
        count_starts: Vec::new(),
        labels: FxHashMap::default(),
        seen: 0,
        other_versions: 0,
    };
    read_archived(
        store,
        scratch,
        req.model,
        req.from,
        req.to,
        |rows, labels| {
            c.observe(rows)?;
            for (p, l) in rows.iter().zip(labels) {
                if let Some((feedback_id, label)) = l {
                    c.label(LabelledPrediction {
                        prediction_id: p.id,
                        version: p.record.version,
                        time: p.record.time,
                        output: p.record.output.clone(),
                        label: label.clone(),
                        feedback_id: *feedback_id,
                        features: None,
                        alias: p.record.alias.clone(),
                        latency_us: p.record.latency_us,
                    });
                }
            }
            Ok(())
        },
    )
    .await?;

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
        c.observe(&page)?;
        if (page.len() as i64) < PAGE {
            break;
        }
    }

    // Labels of the rows in the database: the latest feedback for each prediction.
    each_label(meta, req.model, req.from, req.to, |l| c.label(l)).await?;
    Ok(c)
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
