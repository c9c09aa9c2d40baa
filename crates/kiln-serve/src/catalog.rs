//! The models the server holds, and how it follows the registry (hot reload).
//!
//! The catalog is an immutable snapshot behind an `ArcSwap`: a request takes the current
//! snapshot once, picks its model (an `Arc`) and scores on it to the end, so a swap never
//! changes a model under a running request, and a request never waits for a swap. The
//! follower polls the registry's aliases; when they moved it loads the new targets (off the
//! request path, warmed up before they are visible) and publishes a new snapshot in one
//! atomic store. A version that fails to load leaves its alias on the version it served.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use kiln_core::schema::FeatureType;
use kiln_data::rows::JsonBatcher;
use kiln_model::artifact::ModelArtifact;
use kiln_store::{ModelVersion, Store};
use serde_json::Value;

use crate::metrics::Metrics;

/// Versions kept loaded beyond the aliases' targets (asked for with `?version=`).
const EXTRA_VERSIONS: usize = 8;

/// A version that failed to load is tried again after this long, not on every poll (which
/// would fill the log with the same error twice a second).
const RETRY_FAILED_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

/// One loaded model version, ready to score.
pub struct LoadedModel {
    pub name: String,
    pub version: i64,
    /// The name and version as shared strings, for metrics labels and the log without an
    /// allocation per request.
    pub name_label: Arc<str>,
    pub version_label: Arc<str>,
    /// This version's own metric handles (no label lookup per request).
    pub predictions_total: prometheus::IntCounter,
    pub rows_per_request: prometheus::Histogram,
    pub artifact: ModelArtifact,
    /// Per input column (schema order): what the door checks.
    pub checks: Vec<ColumnCheck>,
    /// Turns request rows into the batch the artifact scores.
    pub batcher: JsonBatcher,
    pub loaded_at: i64,
}

/// What the door knows about one input column from training.
#[derive(Debug, Default)]
pub struct ColumnCheck {
    /// Numeric: the smallest and largest finite values seen in training.
    pub range: Option<(f64, f64)>,
    /// Numeric: training data had infinities, so they are values, not mistakes.
    pub allow_infinite: bool,
    /// Categorical: the categories the model knows (others are flagged).
    pub known: Option<HashSet<String>>,
}

impl LoadedModel {
    pub fn new(name: &str, version: i64, artifact: ModelArtifact, metrics: &Metrics) -> Self {
        let batcher = kiln_watch::window::json_batcher(&artifact);
        let mut known: HashMap<String, Vec<String>> =
            kiln_watch::window::known_categories(&artifact)
                .into_iter()
                .collect();
        let checks = artifact
            .schema
            .columns
            .iter()
            .map(|c| {
                let profile = artifact.reference.features.column(&c.name);
                let mut check = ColumnCheck::default();
                if let Some(kiln_core::profile::ColumnStats::Numeric(n)) = profile.map(|p| &p.stats)
                {
                    check.range = n.min.zip(n.max);
                    check.allow_infinite = n.infinite > 0;
                }
                if c.ftype == FeatureType::Categorical {
                    check.known = known.remove(&c.name).map(|k| k.into_iter().collect());
                }
                check
            })
            .collect();
        let version_label: Arc<str> = Arc::from(version.to_string());
        Self {
            name: name.to_owned(),
            version,
            name_label: Arc::from(name),
            predictions_total: metrics
                .predictions
                .with_label_values(&[name, &version_label]),
            rows_per_request: metrics.rows_per_request.with_label_values(&[name]),
            version_label,
            batcher,
            artifact,
            checks,
            loaded_at: kiln_core::now_micros(),
        }
    }

    /// Scores one all-missing row so lazily built scoring structures exist before the first
    /// request needs them.
    fn warm_up(&self) -> Result<(), String> {
        let row: serde_json::Map<String, Value> = self
            .artifact
            .schema
            .columns
            .iter()
            .map(|c| (c.name.clone(), Value::Null))
            .collect();
        let batch = self
            .batcher
            .batch(&[Value::Object(row)])
            .map_err(|e| format!("{e:?}"))?;
        self.artifact
            .score(&batch)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The models of one name: which alias serves which version, and the loaded versions.
#[derive(Default, Clone)]
pub struct ModelSlot {
    pub aliases: BTreeMap<String, i64>,
    pub versions: BTreeMap<i64, Arc<LoadedModel>>,
    /// The share of requests the `canary` alias answers, as its running rollout states it.
    pub canary_share: Option<f64>,
}

/// An immutable snapshot of everything loaded.
#[derive(Default, Clone)]
pub struct Catalog {
    pub models: BTreeMap<String, ModelSlot>,
}

impl Catalog {
    pub fn by_alias(&self, model: &str, alias: &str) -> Option<&Arc<LoadedModel>> {
        let slot = self.models.get(model)?;
        slot.versions.get(slot.aliases.get(alias)?)
    }

    pub fn by_version(&self, model: &str, version: i64) -> Option<&Arc<LoadedModel>> {
        self.models.get(model)?.versions.get(&version)
    }
}

/// Keeps the catalog in step with the registry.
pub struct Follower {
    store: Store,
    aliases: Vec<String>,
    metrics: Arc<Metrics>,
    catalog: ArcSwap<Catalog>,
    /// Syncs and on-demand loads run one at a time.
    lock: tokio::sync::Mutex<()>,
    synced: AtomicBool,
    /// Versions whose load failed, and when.
    failed: std::sync::Mutex<HashMap<(String, i64), std::time::Instant>>,
    /// Models with a `model_load` alert raised by this server, not yet resolved.
    load_alerts: std::sync::Mutex<HashSet<String>>,
    /// Failures of rollout challengers not yet added to their rollouts (written at each sync,
    /// not per request).
    challenger_failures: std::sync::Mutex<HashMap<(String, i64), i64>>,
}

/// What a sync changed.
#[derive(Debug, Default, serde::Serialize, utoipa::ToSchema)]
pub struct SyncReport {
    /// `model@alias -> version` moves applied.
    pub moved: Vec<String>,
    /// Versions newly loaded, `model@version`.
    pub loaded: Vec<String>,
    /// Versions that failed to load, with the reason (their aliases keep their old target).
    pub failed: Vec<String>,
}

impl Follower {
    pub fn new(store: Store, aliases: Vec<String>, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            aliases,
            metrics,
            catalog: ArcSwap::from_pointee(Catalog::default()),
            lock: tokio::sync::Mutex::new(()),
            synced: AtomicBool::new(false),
            failed: std::sync::Mutex::new(HashMap::new()),
            load_alerts: std::sync::Mutex::new(HashSet::new()),
            challenger_failures: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Counts a request that `model@version`, on a rollout, failed where production answered.
    pub fn challenger_failed(&self, model: &str, version: i64) {
        if let Ok(mut f) = self.challenger_failures.lock() {
            *f.entry((model.to_owned(), version)).or_default() += 1;
        }
    }

    /// Adds the counted challenger failures to their running rollouts; counts that could not
    /// be written wait for the next sync.
    async fn report_failures(&self) {
        let pending: Vec<((String, i64), i64)> = match self.challenger_failures.lock() {
            Ok(mut f) => f.drain().collect(),
            Err(_) => return,
        };
        for ((model, version), n) in pending {
            if let Err(e) = self.store.meta.add_rollout_errors(&model, version, n).await {
                tracing::warn!(target: "kiln::rollout", model, version, error = %e, "challenger failures not recorded yet");
                if let Ok(mut f) = self.challenger_failures.lock() {
                    *f.entry((model, version)).or_default() += n;
                }
            }
        }
    }

    /// The current snapshot (cheap: one atomic load).
    pub fn catalog(&self) -> arc_swap::Guard<Arc<Catalog>> {
        self.catalog.load()
    }

    /// Whether the registry has been read at least once.
    pub fn is_ready(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Re-reads the registry now, retrying versions that failed to load before.
    pub async fn reload(&self) -> Result<SyncReport, kiln_store::StoreError> {
        if let Ok(mut f) = self.failed.lock() {
            f.clear();
        }
        self.sync().await
    }

    /// Reads the aliases and applies any move.
    pub async fn sync(&self) -> Result<SyncReport, kiln_store::StoreError> {
        let _guard = self.lock.lock().await;
        self.report_failures().await;
        let wanted: Vec<_> = self
            .store
            .meta
            .all_aliases()
            .await?
            .into_iter()
            .filter(|a| self.aliases.contains(&a.alias))
            .collect();
        let shares: HashMap<String, f64> = self
            .store
            .meta
            .rollouts(None, true, 10_000)
            .await?
            .into_iter()
            .filter_map(|r| Some((r.start.model, r.start.share?)))
            .collect();
        let current = self.catalog.load_full();
        let unchanged = self.is_ready()
            && current
                .models
                .iter()
                .all(|(name, slot)| slot.canary_share == shares.get(name).copied())
            && shares.keys().all(|name| {
                current
                    .models
                    .get(name)
                    .is_none_or(|s| s.canary_share.is_some())
            })
            && wanted.len()
                == current
                    .models
                    .values()
                    .map(|s| s.aliases.len())
                    .sum::<usize>()
            && wanted.iter().all(|a| {
                current.by_alias(&a.model, &a.alias).map(|m| m.version) == Some(a.version)
            });
        if unchanged {
            self.resolve_load_alerts(&current, &wanted).await;
            return Ok(SyncReport::default());
        }
        let mut report = SyncReport::default();
        let mut next = Catalog::default();
        let mut versions_of: HashMap<String, Vec<ModelVersion>> = HashMap::new();
        for a in &wanted {
            let old_slot = current.models.get(&a.model);
            let slot = next.models.entry(a.model.clone()).or_default();
            let model = match old_slot.and_then(|s| s.versions.get(&a.version)) {
                Some(m) => Some(m.clone()),
                None => match slot.versions.get(&a.version) {
                    Some(m) => Some(m.clone()),
                    None => {
                        if !versions_of.contains_key(&a.model) {
                            let v = self.store.meta.model_versions(&a.model).await?;
                            versions_of.insert(a.model.clone(), v);
                        }
                        let listed = versions_of
                            .get(&a.model)
                            .and_then(|v| v.iter().find(|m| m.version == a.version));
                        let key = (a.model.clone(), a.version);
                        let recently_failed = self.failed.lock().ok().is_some_and(|f| {
                            f.get(&key)
                                .is_some_and(|at| at.elapsed() < RETRY_FAILED_AFTER)
                        });
                        if recently_failed {
                            None
                        } else {
                            match self.load(&a.model, a.version, listed).await {
                                Ok(m) => {
                                    report.loaded.push(format!("{}@{}", a.model, a.version));
                                    Some(m)
                                }
                                Err(e) => {
                                    if let Ok(mut f) = self.failed.lock() {
                                        f.insert(key, std::time::Instant::now());
                                    }
                                    report
                                        .failed
                                        .push(format!("{}@{}: {e}", a.model, a.version));
                                    None
                                }
                            }
                        }
                    }
                },
            };
            let served = match model {
                Some(m) => Some(m),
                // Keep serving what this alias served before.
                None => old_slot.and_then(|s| {
                    s.aliases
                        .get(&a.alias)
                        .and_then(|v| s.versions.get(v))
                        .cloned()
                }),
            };
            if let Some(m) = served {
                let before = current.by_alias(&a.model, &a.alias).map(|m| m.version);
                if before != Some(m.version) {
                    report
                        .moved
                        .push(format!("{}@{} -> {}", a.model, a.alias, m.version));
                }
                slot.aliases.insert(a.alias.clone(), m.version);
                slot.versions.insert(m.version, m);
            }
        }
        for (name, slot) in next.models.iter_mut() {
            slot.canary_share = shares.get(name).copied();
        }
        // Keep a few versions loaded on demand, most recent first.
        let mut extras: Vec<&Arc<LoadedModel>> = current
            .models
            .values()
            .flat_map(|s| s.versions.values())
            .filter(|m| next.by_version(&m.name, m.version).is_none())
            .collect();
        extras.sort_by_key(|m| std::cmp::Reverse(m.loaded_at));
        for m in extras.into_iter().take(EXTRA_VERSIONS) {
            next.models
                .entry(m.name.clone())
                .or_default()
                .versions
                .insert(m.version, m.clone());
        }
        let first = !self.is_ready();
        self.publish(next);
        for line in &report.moved {
            if first {
                tracing::info!(target: "kiln::reload", "serving {line}");
            } else {
                tracing::info!(target: "kiln::reload", "alias moved: {line}");
            }
        }
        for line in &report.failed {
            tracing::error!(target: "kiln::reload", "model not loaded: {line}");
        }
        let published = self.catalog.load_full();
        self.resolve_load_alerts(&published, &wanted).await;
        Ok(report)
    }

    /// A version named by `?version=` that no alias serves: loaded once, then kept.
    pub async fn version(
        &self,
        model: &str,
        version: i64,
    ) -> Result<Option<Arc<LoadedModel>>, String> {
        if let Some(m) = self.catalog().by_version(model, version) {
            return Ok(Some(m.clone()));
        }
        let _guard = self.lock.lock().await;
        if let Some(m) = self.catalog().by_version(model, version) {
            return Ok(Some(m.clone()));
        }
        let versions = self
            .store
            .meta
            .model_versions(model)
            .await
            .map_err(|e| e.to_string())?;
        let Some(listed) = versions.iter().find(|m| m.version == version) else {
            return Ok(None);
        };
        let loaded = self.load(model, version, Some(listed)).await?;
        let mut next = (*self.catalog.load_full()).clone();
        next.models
            .entry(model.to_owned())
            .or_default()
            .versions
            .insert(version, loaded.clone());
        self.publish(next);
        Ok(Some(loaded))
    }

    fn publish(&self, next: Catalog) {
        self.metrics.model_info.reset();
        for (name, slot) in &next.models {
            for (alias, version) in &slot.aliases {
                self.metrics
                    .model_info
                    .with_label_values(&[name.as_str(), alias.as_str(), &version.to_string()])
                    .set(1);
            }
        }
        self.catalog.store(Arc::new(next));
        self.synced.store(true, Ordering::Release);
    }

    async fn load(
        &self,
        model: &str,
        version: i64,
        listed: Option<&ModelVersion>,
    ) -> Result<Arc<LoadedModel>, String> {
        let v = version.to_string();
        let result = async {
            let listed = listed.ok_or_else(|| "the version is not in the registry".to_owned())?;
            let artifact = kiln_train::registry::load(&self.store, listed)
                .await
                .map_err(|e| e.to_string())?;
            let name = model.to_owned();
            let metrics = self.metrics.clone();
            // Building the checks and warming up is CPU work: keep it off the async workers.
            tokio::task::spawn_blocking(move || {
                let loaded = LoadedModel::new(&name, version, artifact, &metrics);
                loaded.warm_up()?;
                Ok::<_, String>(Arc::new(loaded))
            })
            .await
            .map_err(|e| e.to_string())?
        }
        .await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.metrics
            .model_loads
            .with_label_values(&[model, &v, outcome])
            .inc();
        if result.is_ok() {
            tracing::info!(target: "kiln::reload", model, version, "model loaded");
        }
        self.record_load(model, version, result.as_ref().err())
            .await;
        result
    }

    /// A failed load raises the `model_load` alert (one episode per model, whichever replica
    /// notices first); [`Self::resolve_load_alerts`] resolves it.
    async fn record_load(&self, model: &str, version: i64, error: Option<&String>) {
        let Some(e) = error else { return };
        if let Ok(mut m) = self.load_alerts.lock() {
            m.insert(model.to_owned());
        }
        let now = kiln_core::now_micros();
        let alert = kiln_store::NewAlert {
            model: model.to_owned(),
            version,
            rule: kiln_store::MODEL_LOAD_RULE.to_owned(),
            severity: "critical".to_owned(),
            value: None,
            threshold: None,
            message: format!(
                "{model}@{version} cannot be loaded; the server keeps serving what it served before: {e}"
            ),
            window_start: now,
            window_end: now,
        };
        if let Err(e) = self.store.meta.fire_alert(&alert).await {
            tracing::warn!(target: "kiln::reload", model, version, error = %e, "the model_load alert was not recorded");
        }
    }

    /// Resolves the `model_load` alert of each model this server failed to load once every
    /// alias of it serves the version the registry names.
    async fn resolve_load_alerts(&self, catalog: &Catalog, wanted: &[kiln_store::Alias]) {
        let pending: Vec<String> = match self.load_alerts.lock() {
            Ok(m) if !m.is_empty() => m.iter().cloned().collect(),
            _ => return,
        };
        for model in pending {
            let clean = wanted.iter().filter(|a| a.model == model).all(|a| {
                catalog.by_alias(&a.model, &a.alias).map(|m| m.version) == Some(a.version)
            });
            if !clean {
                continue;
            }
            let resolved = self
                .store
                .meta
                .resolve_alert(&model, kiln_store::MODEL_LOAD_RULE, kiln_core::now_micros())
                .await;
            match resolved {
                Ok(_) => {
                    if let Ok(mut m) = self.load_alerts.lock() {
                        m.remove(&model);
                    }
                    tracing::info!(target: "kiln::reload", model, "every alias serves its version again: model_load resolved");
                }
                Err(e) => {
                    tracing::warn!(target: "kiln::reload", model, error = %e, "the model_load alert was not resolved yet")
                }
            }
        }
    }

    /// Polls the registry until `shutdown` fires.
    pub async fn follow(
        self: Arc<Self>,
        interval: std::time::Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        // The first read happened when the server was bound.
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = self.sync().await {
                        tracing::warn!(target: "kiln::reload", error = %e, "cannot read the registry; serving what is loaded");
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}
