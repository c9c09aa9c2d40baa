//! Live monitoring inside `kiln serve`: the current window of every served model version is
//! updated as its predictions are written to the log, and evaluated on a timer.
//!
//! * The log writer hands each written batch to [`LiveMonitor::observe`], off the request
//!   path. The rows are summarized into the window they belong to (by event time, or by count)
//!   with `kiln-watch`'s exact, mergeable [`WindowState`]; a window that ends is evaluated one
//!   last time and kept in a short history for the dashboard and for labels that come late.
//! * Every `[monitor] interval`, [`LiveMonitor::tick`] joins the labels that arrived since the
//!   last tick, evaluates the current window (drift, realized and estimated performance),
//!   publishes the figures as Prometheus gauges, and judges the alert rules. A rule that
//!   starts or stops firing is recorded in the store (one firing episode per model and rule
//!   across replicas), counted, logged, and POSTed to the webhook when one is set.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln_model::artifact::Monitoring;
use kiln_monitor::ReferenceTask;
use kiln_store::{LabelQuery, NewAlert, PredictionRecord, Store};
use kiln_watch::range::primary_metric;
use kiln_watch::rules::{AlertRule, MonitorConfig, Verdict, Windowing};
use kiln_watch::window::{WindowReport, WindowState};
use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::catalog::{Follower, LoadedModel};
use crate::metrics::Metrics;

/// Logged rows parsed and summarized at a time.
const OBSERVE_ROWS: usize = 1024;

/// Labels read per tick and model at most.
const LABELS_PER_TICK: i64 = 50_000;

/// How long feedback is read again. Feedback may arrive before the prediction it labels is
/// flushed to the log (a label sent right after the answer, or a replica that has not flushed
/// yet); the join cannot see it then. So each tick reads again the feedback of the last
/// `LABEL_GRACE`, skipping predictions already labelled, and only older feedback is settled.
const LABEL_GRACE: Duration = Duration::from_secs(30);

/// One closed window: its bounds and final evaluation (kept for late labels and the dashboard).
struct Closed {
    state: WindowState,
    report: WindowReport,
}

/// The live state of one served model version.
struct Live {
    current: WindowState,
    /// Time windows: the current window's index (`start / length`).
    key: i64,
    closed: VecDeque<Closed>,
    last: Option<WindowReport>,
    /// Feedback at or below this id has been joined for good (see [`LABEL_GRACE`]).
    settled_cursor: i64,
    /// The highest feedback id read at each recent tick, oldest first.
    seen_ids: VecDeque<(std::time::Instant, i64)>,
    /// Predictions already labelled, by the feedback id that labelled them.
    labelled: FxHashMap<i64, i64>,
    firing: BTreeMap<String, bool>,
    /// Rows observed since the last tick, for the request rate.
    rows_since_tick: u64,
    rows_per_second: f64,
    /// Prediction requests and failed ones at the last tick (for the error rate).
    requests_seen: (u64, u64),
    error_rate: Option<f64>,
}

/// What the dashboard shows of one model version.
#[derive(Serialize)]
pub struct LiveView {
    pub model: String,
    pub version: i64,
    pub task: &'static str,
    pub primary: &'static str,
    pub rows_per_second: f64,
    pub error_rate: Option<f64>,
    pub current: Option<WindowReport>,
    pub history: Vec<WindowReport>,
    pub firing: Vec<String>,
}

/// Live monitoring of every served version (see the module documentation).
pub struct LiveMonitor {
    config: MonitorConfig,
    store: Store,
    follower: Arc<Follower>,
    metrics: Arc<Metrics>,
    models: Mutex<FxHashMap<(String, i64), Live>>,
    webhook: Option<reqwest::Client>,
}

impl LiveMonitor {
    pub fn new(
        config: MonitorConfig,
        store: Store,
        follower: Arc<Follower>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let webhook = config.webhook.as_ref().and_then(|_| {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .ok()
        });
        Self {
            config,
            store,
            follower,
            metrics,
            models: Mutex::new(FxHashMap::default()),
            webhook,
        }
    }

    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.config.interval_ms)
    }

    /// Starts the observer: a thread of its own that summarizes each written batch into its
    /// window, so the work never holds one of the runtime's threads (which serve requests)
    /// for the milliseconds a large batch takes. The thread ends when the sender is dropped.
    pub fn observer(
        self: &Arc<Self>,
    ) -> std::io::Result<(
        tokio::sync::mpsc::Sender<Vec<PredictionRecord>>,
        std::thread::JoinHandle<()>,
    )> {
        // One batch waiting while one is summarized: written rows wait for monitoring only
        // that long, which bounds the memory they hold.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<PredictionRecord>>(1);
        let me = self.clone();
        let thread = std::thread::Builder::new()
            .name("kiln-monitor".into())
            .spawn(move || {
                while let Some(records) = rx.blocking_recv() {
                    me.observe(&records);
                }
            })?;
        Ok((tx, thread))
    }

    /// Adds written predictions to their models' windows.
    pub fn observe(&self, records: &[PredictionRecord]) {
        let mut groups: FxHashMap<(&str, i64), Vec<&PredictionRecord>> = FxHashMap::default();
        for r in records {
            groups
                .entry((r.model.as_str(), r.version))
                .or_default()
                .push(r);
        }
        let catalog = self.follower.catalog();
        for ((name, version), rows) in groups {
            let Some(model) = catalog.by_version(name, version).cloned() else {
                continue;
            };
            if model.artifact.monitoring.is_none() {
                continue;
            }
            if let Err(e) = self.observe_model(&model, &rows) {
                tracing::warn!(target: "kiln::monitor", model = name, version, error = %e, "live monitoring skipped a batch");
            }
        }
    }

    fn observe_model(
        &self,
        model: &LoadedModel,
        rows: &[&PredictionRecord],
    ) -> kiln_watch::Result<()> {
        let monitoring = model.artifact.monitoring.as_ref();
        // Split the rows by window, summarize each part outside the lock, then merge.
        let parts: BTreeMap<i64, Vec<&PredictionRecord>> = match self.config.window {
            Windowing::Time(us) => {
                let mut parts: BTreeMap<i64, Vec<&PredictionRecord>> = BTreeMap::new();
                for r in rows {
                    parts.entry(r.time.div_euclid(us)).or_default().push(r);
                }
                parts
            }
            Windowing::Count(n) => {
                // Only the observer calls this, so the count cannot move meanwhile.
                let filled = self
                    .models
                    .lock()
                    .map(|m| {
                        m.get(&(model.name.clone(), model.version))
                            .map_or(0, |l| l.current.rows)
                    })
                    .unwrap_or(0);
                split_by_count(rows, filled, n)
            }
        };
        let mut states = Vec::with_capacity(parts.len());
        for (key, part) in parts {
            let (start, end) = match self.config.window {
                Windowing::Time(us) => (key * us, key * us + us),
                Windowing::Count(_) => {
                    let s = part.iter().map(|r| r.time).min().unwrap_or(0);
                    let e = part.iter().map(|r| r.time).max().unwrap_or(0) + 1;
                    (s, e)
                }
            };
            let mut w = WindowState::new(start, end);
            // In slices, so the parsed rows of a large batch never all exist at once.
            for slice in part.chunks(OBSERVE_ROWS) {
                w.observe(&model.artifact, monitoring, &model.batcher, slice)?;
            }
            states.push((key, w));
        }
        let Some(monitoring) = monitoring else {
            return Ok(());
        };
        let Ok(mut models) = self.models.lock() else {
            return Ok(());
        };
        let live = models
            .entry((model.name.clone(), model.version))
            .or_insert_with(|| Live {
                current: WindowState::default(),
                key: i64::MIN,
                closed: VecDeque::new(),
                last: None,
                settled_cursor: 0,
                seen_ids: VecDeque::new(),
                labelled: FxHashMap::default(),
                firing: BTreeMap::new(),
                rows_since_tick: 0,
                rows_per_second: 0.0,
                requests_seen: (0, 0),
                error_rate: None,
            });
        for (key, part) in states {
            live.rows_since_tick += part.rows;
            let new_window = match self.config.window {
                Windowing::Time(_) => key > live.key,
                // Key 0 continues the current window; each later key starts one.
                Windowing::Count(_) => key > 0 || live.key == i64::MIN,
            };
            if new_window {
                let old = std::mem::replace(&mut live.current, part);
                let old_key = live.key;
                live.key = if matches!(self.config.window, Windowing::Time(_)) {
                    key
                } else {
                    0
                };
                if old_key != i64::MIN && old.rows > 0 {
                    let report = old.evaluate(monitoring, &self.config.drift);
                    live.closed.push_back(Closed { state: old, report });
                    while live.closed.len() > self.config.history.max(1) {
                        live.closed.pop_front();
                    }
                }
            } else if key == live.key || matches!(self.config.window, Windowing::Count(_)) {
                live.current = live.current.merge(&part)?;
            } else if let Some(c) = live.closed.iter_mut().find(|c| c.state.start == part.start) {
                // A late row for a closed window.
                c.state = c.state.merge(&part)?;
                c.report = c.state.evaluate(monitoring, &self.config.drift);
            } else {
                // Older than the history: counted in the current window rather than lost.
                let mut part = part;
                (part.start, part.end) = (live.current.start, live.current.end);
                live.current = live.current.merge(&part)?;
            }
        }
        Ok(())
    }

    /// Runs [`Self::tick`] every interval until `stop` fires.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut every = tokio::time::interval(self.interval());
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => self.tick().await,
                _ = stop.changed() => break,
            }
        }
        // A last evaluation, so what was logged before the stop is judged.
        self.tick().await;
    }

    /// Joins new labels, evaluates every current window, publishes gauges and judges rules.
    pub async fn tick(&self) {
        let keys: Vec<(String, i64)> = match self.models.lock() {
            Ok(m) => m.keys().cloned().collect(),
            Err(_) => return,
        };
        let catalog = self.follower.catalog();
        self.retire(&catalog).await;
        let requests = self.request_counts();
        for (name, version) in keys {
            let Some(model) = catalog.by_version(&name, version).cloned() else {
                // No longer served: forget it, and its gauges.
                if let Ok(mut m) = self.models.lock() {
                    m.remove(&(name.clone(), version));
                }
                self.metrics.monitor.forget(&name, version);
                continue;
            };
            let Some(monitoring) = model.artifact.monitoring.as_ref() else {
                continue;
            };
            self.join_labels(&name, version, monitoring).await;
            let verdicts = {
                let Ok(mut models) = self.models.lock() else {
                    return;
                };
                let Some(live) = models.get_mut(&(name.clone(), version)) else {
                    continue;
                };
                let seconds = self.config.interval_ms as f64 / 1000.0;
                live.rows_per_second = live.rows_since_tick as f64 / seconds;
                live.rows_since_tick = 0;
                if let Some(&(total, failed)) = requests.get(&name) {
                    let (t0, f0) = live.requests_seen;
                    if total > t0 {
                        live.error_rate =
                            Some((failed.saturating_sub(f0)) as f64 / (total - t0) as f64);
                    }
                    live.requests_seen = (total, failed);
                }
                let report = live.current.evaluate(monitoring, &self.config.drift);
                self.publish(&name, version, &report);
                let rules = self
                    .config
                    .rules(primary_metric(&monitoring.reference.task));
                let verdicts = judge(
                    &rules,
                    &report,
                    &live.closed,
                    self.config.drift.drift_share,
                    live.error_rate,
                );
                live.last = Some(report);
                let mut changed = Vec::new();
                for (v, start, end) in verdicts {
                    let was = live.firing.get(&v.rule).copied().unwrap_or(false);
                    if v.firing != was {
                        live.firing.insert(v.rule.clone(), v.firing);
                        changed.push((v, start, end));
                    }
                }
                changed
            };
            for (v, start, end) in verdicts {
                self.transition(&name, version, v, start, end).await;
            }
        }
    }

    /// Resolves the alerts of versions no alias serves any more. An alert episode belongs to
    /// the model and rule; once the version whose windows breached it stops taking traffic,
    /// its breach is over (it would otherwise fire forever, and keep triggering retrainings).
    /// A served version of the same model that breaches the same rule fires it anew at its
    /// next judgement.
    async fn retire(&self, catalog: &crate::catalog::Catalog) {
        let retired: Vec<(String, i64, Vec<String>)> = {
            let Ok(mut models) = self.models.lock() else {
                return;
            };
            let serves = |name: &str, version: i64| {
                catalog
                    .models
                    .get(name)
                    .is_some_and(|s| s.aliases.values().any(|v| *v == version))
            };
            let mut out = Vec::new();
            for ((name, version), live) in models.iter_mut() {
                if serves(name, *version) {
                    continue;
                }
                let rules: Vec<String> = live
                    .firing
                    .iter()
                    .filter(|(_, on)| **on)
                    .map(|(r, _)| r.clone())
                    .collect();
                for r in &rules {
                    live.firing.insert(r.clone(), false);
                }
                if !rules.is_empty() {
                    out.push((name.clone(), *version, rules));
                }
            }
            for (name, _, rules) in &out {
                for ((n, v), live) in models.iter_mut() {
                    if n == name && serves(n, *v) {
                        for r in rules {
                            if live.firing.get(r) == Some(&true) {
                                live.firing.insert(r.clone(), false);
                            }
                        }
                    }
                }
            }
            out
        };
        for (name, version, rules) in retired {
            let open = match self.store.meta.alerts(Some(&name), true, 1000).await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(target: "kiln::alert", model = name, error = %e, "cannot read alerts to resolve a retired version's");
                    continue;
                }
            };
            // The episodes of these rules opened by a version that no alias serves.
            let stale = open.into_iter().filter(|a| {
                rules.contains(&a.alert.rule)
                    && !catalog
                        .models
                        .get(&name)
                        .is_some_and(|s| s.aliases.values().any(|v| *v == a.alert.version))
            });
            for a in stale {
                let severity = kiln_watch::rules::Severity::from_name(&a.alert.severity)
                    .unwrap_or(kiln_watch::rules::Severity::Warning);
                let verdict = Verdict {
                    rule: a.alert.rule.clone(),
                    severity,
                    firing: false,
                    value: None,
                    threshold: None,
                    message: format!("{name}@{} no longer serves", a.alert.version),
                };
                self.transition(
                    &name,
                    version,
                    verdict,
                    a.alert.window_start,
                    a.alert.window_end,
                )
                .await;
            }
        }
    }

    /// Reads the labels that arrived since the last tick into their windows.
    async fn join_labels(&self, name: &str, version: i64, monitoring: &Monitoring) {
        let cursor = match self.models.lock() {
            Ok(m) => m
                .get(&(name.to_owned(), version))
                .map_or(0, |l| l.settled_cursor),
            Err(_) => return,
        };
        let page = match self
            .store
            .meta
            .labelled_predictions(&LabelQuery {
                model: name.to_owned(),
                from: None,
                to: None,
                after_feedback: Some(cursor),
                limit: LABELS_PER_TICK,
                features: false,
                served_only: false,
            })
            .await
        {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(target: "kiln::monitor", model = name, error = %e, "could not read labels");
                return;
            }
        };
        let Ok(mut models) = self.models.lock() else {
            return;
        };
        let Some(live) = models.get_mut(&(name.to_owned(), version)) else {
            return;
        };
        let now = std::time::Instant::now();
        let newest = page.last().map_or(cursor, |l| l.feedback_id);
        live.seen_ids.push_back((now, newest.max(cursor)));
        while let Some(&(at, id)) = live.seen_ids.front() {
            if now.duration_since(at) < LABEL_GRACE {
                break;
            }
            live.settled_cursor = live.settled_cursor.max(id);
            live.seen_ids.pop_front();
        }
        let settled = live.settled_cursor;
        live.labelled.retain(|_, feedback| *feedback > settled);
        let task: &ReferenceTask = &monitoring.reference.task;
        let mut current = Vec::new();
        let mut late: FxHashMap<usize, Vec<&kiln_store::LabelledPrediction>> = FxHashMap::default();
        for l in page.iter().filter(|l| l.version == version) {
            if live
                .labelled
                .insert(l.prediction_id, l.feedback_id)
                .is_some()
            {
                continue;
            }
            let in_window = |w: &WindowState| l.time >= w.start && l.time < w.end;
            if in_window(&live.current) || live.closed.is_empty() {
                current.push(l);
            } else if let Some(i) = live.closed.iter().position(|c| in_window(&c.state)) {
                late.entry(i).or_default().push(l);
            } else {
                current.push(l);
            }
        }
        live.current.add_labels(task, &current);
        for (i, ls) in late {
            if let Some(c) = live.closed.get_mut(i) {
                c.state.add_labels(task, &ls);
                c.report = c.state.evaluate(monitoring, &self.config.drift);
            }
        }
    }

    /// Prediction requests and failed ones (5xx) per model, from the request counters.
    fn request_counts(&self) -> FxHashMap<String, (u64, u64)> {
        let mut out: FxHashMap<String, (u64, u64)> = FxHashMap::default();
        for family in self.metrics.gather_requests() {
            for m in family.get_metric() {
                let mut model = None;
                let mut failed = false;
                for l in m.get_label() {
                    match l.name() {
                        "model" if !l.value().is_empty() => model = Some(l.value().to_owned()),
                        "status" => failed = l.value().starts_with('5'),
                        _ => {}
                    }
                }
                if let Some(model) = model {
                    let n = m.get_counter().get_value() as u64;
                    let e = out.entry(model).or_default();
                    e.0 += n;
                    if failed {
                        e.1 += n;
                    }
                }
            }
        }
        out
    }

    fn publish(&self, name: &str, version: i64, r: &WindowReport) {
        let m = &self.metrics.monitor;
        let v = version.to_string();
        let mv = [name, v.as_str()];
        m.window_rows.with_label_values(&mv).set(r.rows as i64);
        m.labelled_rows
            .with_label_values(&mv)
            .set(r.labelled_rows as i64);
        if let Some(d) = &r.drift {
            for c in &d.columns {
                let mvf = [name, v.as_str(), c.name.as_str()];
                if let Some(x) = c.current_missing_rate {
                    m.missing_rate.with_label_values(&mvf).set(x);
                }
                if let Some(cd) = &c.drift {
                    m.drift_score
                        .with_label_values(&[name, v.as_str(), c.name.as_str(), cd.method.name()])
                        .set(cd.score);
                    m.drift_detected
                        .with_label_values(&mvf)
                        .set(i64::from(cd.drifted));
                }
            }
            if let Some(ds) = &d.dataset {
                m.drift_share.with_label_values(&mv).set(ds.share);
                m.dataset_drift
                    .with_label_values(&mv)
                    .set(i64::from(ds.drifted));
            }
        }
        if let Some(cd) = r.prediction_drift.as_ref().and_then(|c| c.drift.as_ref()) {
            m.prediction_drift_score
                .with_label_values(&[name, v.as_str(), cd.method.name()])
                .set(cd.score);
            m.prediction_drift_detected
                .with_label_values(&mv)
                .set(i64::from(cd.drifted));
        }
        // A metric the window does not have (no labels yet) is removed, not left stale.
        for metric in ["mae", "rmse", "accuracy", "f1", "roc_auc"] {
            let labels = [name, v.as_str(), metric];
            match r.realized(metric) {
                Some(x) => m.realized.with_label_values(&labels).set(x.value),
                None => {
                    let _ = m.realized.remove_label_values(&labels);
                }
            }
            match r.estimated.get(metric) {
                Some(x) => m.estimated.with_label_values(&labels).set(*x),
                None => {
                    let _ = m.estimated.remove_label_values(&labels);
                }
            }
        }
        for (k, x) in &r.reference {
            m.reference
                .with_label_values(&[name, v.as_str(), k.as_str()])
                .set(*x);
        }
    }

    /// Records, counts, logs and posts one rule starting or stopping to fire.
    async fn transition(&self, name: &str, version: i64, v: Verdict, start: i64, end: i64) {
        let state = if v.firing { "firing" } else { "resolved" };
        let m = &self.metrics.monitor;
        m.alerts_firing
            .with_label_values(&[name, v.rule.as_str(), v.severity.as_str()])
            .set(i64::from(v.firing));
        m.alert_transitions
            .with_label_values(&[name, v.rule.as_str(), state])
            .inc();
        let stored = if v.firing {
            self.store
                .meta
                .fire_alert(&NewAlert {
                    model: name.to_owned(),
                    version,
                    rule: v.rule.clone(),
                    severity: v.severity.as_str().to_owned(),
                    value: v.value,
                    threshold: v.threshold,
                    message: v.message.clone(),
                    window_start: start,
                    window_end: end,
                })
                .await
        } else {
            self.store.meta.resolve_alert(name, &v.rule, end).await
        };
        match &stored {
            Ok(id) => {
                if v.firing {
                    tracing::warn!(target: "kiln::alert", model = name, version, rule = %v.rule, severity = v.severity.as_str(), alert = ?id, "{}", v.message);
                } else {
                    tracing::info!(target: "kiln::alert", model = name, version, rule = %v.rule, alert = ?id, "resolved: {}", v.message);
                }
            }
            Err(e) => {
                tracing::error!(target: "kiln::alert", model = name, rule = %v.rule, error = %e, "could not record an alert")
            }
        }
        if let (Some(client), Some(url)) = (&self.webhook, &self.config.webhook) {
            let body = serde_json::json!({
                "model": name,
                "version": version,
                "rule": v.rule,
                "severity": v.severity.as_str(),
                "state": state,
                "value": v.value,
                "threshold": v.threshold,
                "message": v.message,
                "window_start": start,
                "window_end": end,
                "alert_id": stored.ok().flatten(),
            });
            if let Err(e) = client
                .post(url)
                .json(&body)
                .send()
                .await
                .and_then(|r| r.error_for_status())
            {
                tracing::warn!(target: "kiln::alert", url, error = %e, "webhook failed");
            }
        }
    }

    /// The dashboard's view of every monitored version.
    pub fn views(&self) -> Vec<LiveView> {
        let catalog = self.follower.catalog();
        let Ok(models) = self.models.lock() else {
            return Vec::new();
        };
        let mut out: Vec<LiveView> = models
            .iter()
            .filter_map(|((name, version), live)| {
                let model = catalog.by_version(name, *version)?;
                let monitoring = model.artifact.monitoring.as_ref()?;
                Some(LiveView {
                    model: name.clone(),
                    version: *version,
                    task: kiln_watch::range::task_name(&monitoring.reference.task),
                    primary: primary_metric(&monitoring.reference.task),
                    rows_per_second: live.rows_per_second,
                    error_rate: live.error_rate,
                    current: live.last.clone(),
                    history: live.closed.iter().map(|c| c.report.clone()).collect(),
                    firing: live
                        .firing
                        .iter()
                        .filter(|(_, on)| **on)
                        .map(|(r, _)| r.clone())
                        .collect(),
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.model, a.version).cmp(&(&b.model, b.version)));
        out
    }
}

/// Rows split into count windows of `n`, the current one holding `filled` rows already: key 0
/// continues it, each later key is a new window.
fn split_by_count<T: Copy>(rows: &[T], filled: u64, n: u64) -> BTreeMap<i64, Vec<T>> {
    let mut parts: BTreeMap<i64, Vec<T>> = BTreeMap::new();
    let mut room = n.saturating_sub(filled);
    let mut key = 0;
    for r in rows {
        if room == 0 {
            key += 1;
            room = n;
        }
        parts.entry(key).or_default().push(*r);
        room -= 1;
    }
    parts
}

/// Each rule's verdict on the newest window it can judge, with that window's bounds: the
/// current window when it has enough rows (or labels), else the newest closed one that does
/// (labels come late, so a realized-performance rule usually judges a closed window).
fn judge(
    rules: &[AlertRule],
    current: &WindowReport,
    closed: &VecDeque<Closed>,
    drift_share: f64,
    error_rate: Option<f64>,
) -> Vec<(Verdict, i64, i64)> {
    rules
        .iter()
        .filter_map(|r| {
            if let Some(v) = r.check(current, drift_share, error_rate) {
                return Some((v, current.start, current.end));
            }
            closed.iter().rev().find_map(|c| {
                r.check(&c.report, drift_share, None)
                    .map(|v| (v, c.report.start, c.report.end))
            })
        })
        .collect()
}

/// Rows read from the shared log per query.
const TAIL_ROWS: i64 = 5000;

/// With `[monitor] scope = "shared"`: hands the observer every prediction any replica logs
/// after id `from`, read from the shared log every `every` (and at once while a read comes
/// back full). Ids are handed out in commit order, so reading after the last id seen never
/// skips a row. Runs until aborted or the observer is gone; a failed read is retried.
pub async fn tail_shared_log(
    store: Store,
    mut from: i64,
    every: Duration,
    observer: tokio::sync::mpsc::Sender<Vec<PredictionRecord>>,
) {
    loop {
        let query = kiln_store::PredictionQuery {
            model: None,
            from: None,
            to: None,
            after_id: Some(from),
            limit: TAIL_ROWS,
        };
        let full = match store.meta.predictions(&query).await {
            Ok(rows) => {
                let full = rows.len() as i64 == TAIL_ROWS;
                if let Some(last) = rows.last() {
                    from = last.id;
                    let records = rows.into_iter().map(|r| r.record).collect();
                    if observer.send(records).await.is_err() {
                        return;
                    }
                }
                full
            }
            Err(e) => {
                tracing::warn!(target: "kiln::monitor", error = %e, "cannot read the shared prediction log; retrying");
                false
            }
        };
        if !full {
            tokio::time::sleep(every).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_by_count;

    #[test]
    fn count_windows_continue_until_full_then_start_anew() {
        let rows: Vec<u32> = (0..7).collect();
        let sizes = |filled| -> Vec<(i64, usize)> {
            split_by_count(&rows, filled, 3)
                .into_iter()
                .map(|(k, v)| (k, v.len()))
                .collect()
        };
        assert_eq!(sizes(0), [(0, 3), (1, 3), (2, 1)]);
        assert_eq!(sizes(2), [(0, 1), (1, 3), (2, 3)]);
        // A full current window gets nothing more: the first row starts a new one.
        assert_eq!(sizes(3), [(1, 3), (2, 3), (3, 1)]);
    }
}
