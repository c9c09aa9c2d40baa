//! The retrain controller: one pass decides whether to retrain; a retraining harvests the
//! labelled production rows, trains a candidate, judges it by the gates and promotes it or
//! not. Every retraining is recorded with its trigger, gates and outcome.
//!
//! The controller's clock is the serving clock: the latest event time in the prediction log.
//! A replay that sends 2012 in simulated time therefore sees schedules, cool-downs and periods
//! in simulated time too.

use std::path::PathBuf;
use std::sync::Arc;

use kiln_core::config::Config;
use kiln_store::{Alias, Expect, NewRetrain, Retrain, RetrainOutcome, Rollout, Store, StoreError};
use kiln_train::registry::{ModelRef, Selector, load, resolve};
use kiln_train::spec::TrainSpec;
use kiln_train::train::{Champion, Quiet, train_against};
use serde::Serialize;

use crate::config::AutomateConfig;
use crate::gates::{Gate, latency_gate, metric_gates};
use crate::harvest::{count_new, harvest};
use crate::rollout::{self, Strategy};
use crate::{AutomateError, Result};

/// A running retraining older than this (wall clock) was abandoned by its controller.
const ABANDONED_AFTER_US: i64 = 3_600_000_000;
/// Who alias moves are recorded as made by.
pub const ACTOR: &str = "kiln-controller";

/// What one pass did.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Pass {
    /// Nothing to do, and why.
    Idle { reason: String },
    /// A retraining ran (whatever its outcome).
    Retrained { retrain: Box<Retrain> },
    /// A running rollout was judged (it may have ended).
    Judged { rollout: Box<Rollout> },
    /// Another process holds the model's controller lease and acts; this one waits.
    Standby { holder: String },
}

/// The shortest time to live of a controller lease; a holder renews it every third of it.
const LEASE_TTL_MIN: std::time::Duration = std::time::Duration::from_secs(15);

/// The controller of one project: its stores, kiln.toml and `[automate]`.
#[derive(Clone)]
pub struct Controller {
    pub store: Store,
    pub config: Arc<Config>,
    pub settings: AutomateConfig,
    pub scratch: PathBuf,
    pub code_version: Option<String>,
    /// The folder of kiln.toml (a declared pipeline's paths and commands are relative to it).
    pub root: PathBuf,
    /// This process as a lease holder: host, process id and a random part.
    pub holder: String,
}

/// A name for this process among the processes that share a database (a lease holder).
pub fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let nonce = blake3::hash(format!("{:?}", std::time::SystemTime::now()).as_bytes());
    format!(
        "{host}:{}:{}",
        std::process::id(),
        &nonce.to_hex().as_str()[..8]
    )
}

/// `[train]` with `[automate.train]` over it: keys replace keys, tables merge one level down
/// (so `[automate.train.split]` changes the split's keys it names and keeps the others).
pub(crate) fn merged_train(base: &toml::Table, over: &toml::Table) -> toml::Table {
    let mut t = base.clone();
    for (k, v) in over {
        match (t.get_mut(k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => {
                for (k2, v2) in b {
                    a.insert(k2.clone(), v2.clone());
                }
            }
            _ => {
                t.insert(k.clone(), v.clone());
            }
        }
    }
    t
}

impl Controller {
    /// Reads `[automate]` of `config`; errors name the bad key.
    pub fn new(
        store: Store,
        config: Arc<Config>,
        scratch: PathBuf,
        code_version: Option<String>,
        root: PathBuf,
    ) -> Result<Self> {
        let settings = AutomateConfig::from_table(&config.automate)?;
        let c = Self {
            store,
            config,
            settings,
            scratch,
            code_version,
            root,
            holder: holder_name(),
        };
        c.model()?;
        c.dataset()?;
        c.spec(None)?;
        if c.settings.pipeline {
            c.pipeline()?;
        }
        Ok(c)
    }

    /// The declared `[pipeline]` a retraining runs (`[automate] pipeline = true`): it needs a
    /// stage that makes a candidate and a deploy stage, and no ingest stage (the harvest is
    /// the controller's ingest; its train stage reads the dataset's newest version).
    fn pipeline(&self) -> Result<crate::pipeline::Pipeline> {
        use crate::pipeline::Kind;
        let p = crate::pipeline::Pipeline::new(
            self.store.clone(),
            self.config.clone(),
            self.root.clone(),
            self.scratch.clone(),
            self.code_version.clone(),
        )?;
        let kinds: Vec<&Kind> = p.spec.stages.iter().map(|s| &s.kind).collect();
        let problem = if kinds.iter().any(|k| matches!(k, Kind::Ingest { .. })) {
            Some(
                "it has an ingest stage, which would train on its file instead of the labelled production rows the controller appends",
            )
        } else if !kinds.iter().any(|k| k.makes_model()) {
            Some("it has no train or import stage")
        } else if !kinds.iter().any(|k| matches!(k, Kind::Deploy { .. })) {
            Some("it has no deploy stage")
        } else {
            None
        };
        match problem {
            Some(why) => Err(AutomateError::Input(format!(
                "[automate] pipeline = true runs [pipeline] to retrain, but {why}\nhint: declare train (or a command and import), gate and deploy stages; the controller's harvest replaces ingest"
            ))),
            None => Ok(p),
        }
    }

    /// The model it keeps healthy.
    pub fn model(&self) -> Result<String> {
        self.settings
            .model
            .clone()
            .or_else(|| {
                self.config
                    .train
                    .get("register")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            })
            .ok_or_else(|| {
                AutomateError::Input(
                    "the retrain controller needs a model to look after\nhint: set `model` in [automate], or `register` in [train]".into(),
                )
            })
    }

    /// The dataset labelled rows join.
    pub fn dataset(&self) -> Result<String> {
        let from_train = self
            .config
            .train
            .get("dataset")
            .and_then(|v| v.as_str())
            .map(|d| d.split('@').next().unwrap_or(d).to_owned());
        self.settings.dataset.clone().or(from_train).ok_or_else(|| {
            AutomateError::Input(
                "the retrain controller needs the dataset that labelled rows are added to\nhint: set `dataset` in [automate], or `dataset` in [train]".into(),
            )
        })
    }

    /// The retraining recipe: `[train]` with `[automate.train]` over it, on `dataset_version`,
    /// registering under the model. `[train]`'s fixed `split.cutoff` cannot split a growing
    /// dataset, so it is dropped: retrainings validate on the most recent
    /// `split.valid_fraction` of rows, or on the rows after the champion's data when it
    /// learned from some of those (see `kiln_train::train::Champion`).
    fn spec(&self, dataset_version: Option<i64>) -> Result<TrainSpec> {
        let mut table = merged_train(&self.config.train, &self.settings.train);
        if let Some(toml::Value::Table(split)) = table.get_mut("split")
            && !self.fixed_cutoff()
        {
            split.remove("cutoff");
        }
        let mut spec = TrainSpec::resolve(&table, &[])
            .map_err(|e| AutomateError::Input(format!("[automate.train] over [train]: {e}")))?;
        let dataset = self.dataset()?;
        spec.dataset = Some(match dataset_version {
            Some(v) => format!("{dataset}@{v}"),
            None => dataset,
        });
        spec.register = Some(self.model()?);
        Ok(spec)
    }

    /// `[automate.train.split] cutoff` fixes the validation rows; otherwise they follow the
    /// champion.
    fn fixed_cutoff(&self) -> bool {
        self.settings
            .train
            .get("split")
            .and_then(|s| s.get("cutoff"))
            .is_some()
    }

    /// One pass: retrain if a trigger says so and the guards allow it.
    pub async fn tick(&self) -> Result<Pass> {
        let model = self.model()?;
        let s = &self.settings;
        let idle = |reason: String| Ok(Pass::Idle { reason });
        let Some((first, now)) = self.store.meta.prediction_time_range(&model).await? else {
            return idle(format!("no predictions of `{model}` logged yet"));
        };
        // A running rollout is judged first, and no retraining starts while it runs.
        if let Some(r) = self
            .store
            .meta
            .rollouts(Some(&model), true, 1)
            .await?
            .into_iter()
            .next()
        {
            let judged = rollout::advance(&self.store, &s.rollout, &r, now, ACTOR).await?;
            return Ok(Pass::Judged {
                rollout: Box::new(judged),
            });
        }
        let history = self
            .store
            .meta
            .retrains(Some(&model), s.max_retrains as i64 + 1)
            .await?;
        let last = history.first();
        if let Some(r) = last.filter(|r| r.state == "running") {
            return idle(format!("retraining #{} is running", r.id));
        }
        let since = now - last.map_or(first, |r| r.start.event_time);
        // An alert episode belongs to the model and rule (whichever version fired it first
        // and whichever serves now), so every firing one counts.
        let firing: Vec<String> = self
            .store
            .meta
            .alerts(Some(&model), true, 100)
            .await?
            .into_iter()
            .map(|a| a.alert.rule)
            .filter(|rule| match &s.on_alerts {
                Some(on) => on.contains(rule),
                None => rule != kiln_store::MODEL_LOAD_RULE,
            })
            .collect();
        let trigger = if let (Some(rule), true) = (firing.first(), since >= s.cooldown) {
            format!("alert:{rule}")
        } else if s.schedule.is_some_and(|every| since >= every) {
            "schedule".to_owned()
        } else {
            return idle(match firing.first() {
                Some(rule) => format!("alert {rule} is firing, in cool-down"),
                None => "no trigger".to_owned(),
            });
        };
        let recent = history
            .iter()
            .filter(|r| r.start.event_time > now - s.period)
            .count();
        if recent >= s.max_retrains {
            return idle(format!(
                "{trigger}: already {recent} retrainings in the period (max_retrains = {})",
                s.max_retrains
            ));
        }
        let cursor = history.iter().map(|r| r.feedback_cursor).max().unwrap_or(0);
        let new = count_new(&self.store, &model, cursor, s.min_labelled_rows).await?;
        if new < s.min_labelled_rows {
            return idle(format!(
                "{trigger}: {new} new labelled rows, min_labelled_rows = {}",
                s.min_labelled_rows
            ));
        }
        match self.retrain(&trigger, now, cursor).await? {
            Some(r) => Ok(Pass::Retrained {
                retrain: Box::new(r),
            }),
            None => idle("another controller is retraining this model".into()),
        }
    }

    /// Retrains now (after `cursor`'s labelled rows), records it, and returns the record;
    /// `None` when another retraining of the model is running.
    pub async fn retrain(&self, trigger: &str, now: i64, cursor: i64) -> Result<Option<Retrain>> {
        let model = self.model()?;
        let meta = &self.store.meta;
        let champion = meta.alias(&model, &self.settings.alias).await?;
        let Some(id) = meta
            .start_retrain(
                &NewRetrain {
                    model: model.clone(),
                    trigger: trigger.to_owned(),
                    event_time: now,
                    champion_version: champion.as_ref().map(|a| a.version),
                },
                ABANDONED_AFTER_US,
            )
            .await?
        else {
            return Ok(None);
        };
        tracing::info!(model, retrain = id, trigger, "retraining");
        let mut outcome = RetrainOutcome {
            state: "failed".into(),
            feedback_cursor: cursor,
            ..RetrainOutcome::default()
        };
        let state = match self
            .attempt(id, trigger, &model, champion.as_ref(), &mut outcome)
            .await
        {
            Ok(()) => outcome,
            Err(e) => RetrainOutcome {
                state: "failed".into(),
                message: e.to_string(),
                ..outcome
            },
        };
        tracing::info!(
            model,
            retrain = id,
            state = state.state,
            message = state.message,
            "retrained"
        );
        meta.finish_retrain(id, &state).await?;
        Ok(meta
            .retrains(Some(&model), 20)
            .await?
            .into_iter()
            .find(|r| r.id == id))
    }

    async fn attempt(
        &self,
        id: i64,
        trigger: &str,
        model: &str,
        champion: Option<&Alias>,
        out: &mut RetrainOutcome,
    ) -> Result<()> {
        let dataset = self.dataset()?;
        let h = harvest(
            &self.store,
            &self.config,
            &self.scratch,
            model,
            &dataset,
            out.feedback_cursor,
        )
        .await?;
        out.labelled_rows = h.rows as i64;
        out.feedback_cursor = h.cursor;
        out.dataset_version = h.version.as_ref().map(|v| v.version);
        let mut gates = vec![Gate {
            gate: "data_validation".into(),
            passed: true,
            value: Some(h.rows as f64),
            bound: None,
            detail: match &h.version {
                Some(v) => format!(
                    "{} labelled production rows passed {dataset}'s rules as {dataset}@{}",
                    h.rows, v.version
                ),
                None => "no new labelled rows; trained on the data as it is".into(),
            },
        }];

        if self.settings.pipeline {
            return self.attempt_pipeline(trigger, gates, out).await;
        }
        let champion_model = match champion {
            Some(a) => {
                let v = resolve(
                    &self.store,
                    &ModelRef {
                        name: model.to_owned(),
                        selector: Selector::Version(a.version),
                    },
                )
                .await?;
                Some(Champion::new(
                    format!("{model}@{}", a.version),
                    Arc::new(load(&self.store, &v).await?),
                ))
            }
            None => None,
        };
        let spec = self.spec(out.dataset_version)?;
        let trained = train_against(
            &self.store,
            &self.config,
            &self.scratch,
            &spec,
            self.code_version.clone(),
            Arc::new(Quiet),
            champion_model.clone(),
        )
        .await?;
        out.run_id = trained.run_id;
        let candidate = trained.registered.clone().ok_or_else(|| {
            AutomateError::Input("the candidate was trained but not registered".into())
        })?;
        out.candidate_version = Some(candidate.version);
        gates.extend(metric_gates(
            &trained.evaluation,
            champion_model.as_ref().map(|c| c.label.as_str()),
            self.settings.margin,
        ));
        let artifact = load(&self.store, &candidate).await?;
        let max_ms = self.settings.max_latency_ms;
        let sample = h.sample.clone();
        let latency =
            tokio::task::spawn_blocking(move || latency_gate(&artifact, sample.as_deref(), max_ms))
                .await
                .map_err(std::io::Error::other)?;
        gates.push(latency);
        let failed: Vec<&Gate> = gates.iter().filter(|g| !g.passed).collect();
        let summary = |gates: &[&Gate]| {
            gates
                .iter()
                .map(|g| format!("{}: {}", g.gate, g.detail))
                .collect::<Vec<_>>()
                .join("; ")
        };
        out.gates = serde_json::to_value(&gates).ok();
        let label = format!("{model}@{}", candidate.version);
        if !failed.is_empty() {
            out.state = "rejected".into();
            out.message = format!("{label} not promoted: {}", summary(&failed));
            return Ok(());
        }
        let vs = gates
            .iter()
            .filter(|g| g.gate == "vs_champion")
            .map(|g| g.detail.clone())
            .collect::<Vec<_>>()
            .join("; ");
        let reason = format!("retrain #{id} ({trigger}): {vs}");
        if self.settings.strategy != Strategy::Direct {
            let Some(champion) = champion else {
                out.state = "rejected".into();
                out.message = format!(
                    "{label} passed every gate, but there is no `{}` to roll out against",
                    self.settings.alias
                );
                return Ok(());
            };
            let now = self.store.meta.latest_prediction_time(model).await?;
            let r = rollout::start(
                &self.store,
                model,
                candidate.version,
                &champion.alias,
                self.settings.strategy,
                self.settings.rollout.share,
                Some(id),
                now,
                &rollout::Actor {
                    name: ACTOR,
                    reason: &reason,
                },
            )
            .await?;
            out.state = "deployed".into();
            out.message = format!(
                "{label} passed every gate and is on rollout #{} ({}): {vs}",
                r.id, r.start.strategy
            );
            return Ok(());
        }
        let expect = match champion {
            Some(a) => Expect::Revision(a.revision),
            None => Expect::Absent,
        };
        match self
            .store
            .meta
            .set_alias(
                model,
                &self.settings.alias,
                candidate.version,
                expect,
                &reason,
                ACTOR,
            )
            .await
        {
            Ok(_) => {
                out.state = "promoted".into();
                out.message = format!("{label} is {} now: {vs}", self.settings.alias);
            }
            Err(StoreError::Conflict(m)) => {
                out.state = "rejected".into();
                out.message = format!("{label} passed every gate, but {m}");
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// A retraining through the declared `[pipeline]`, after the harvest: its run's candidate,
    /// gates and deploy become the retraining's.
    async fn attempt_pipeline(
        &self,
        trigger: &str,
        mut gates: Vec<Gate>,
        out: &mut RetrainOutcome,
    ) -> Result<()> {
        let report = self
            .pipeline()?
            .run(false, &crate::pipeline::Silent)
            .await?;
        let mut deployed = None;
        let mut failed_gate = None;
        for st in &report.stages {
            let outputs = st.outputs.as_ref();
            match st.kind.as_str() {
                "train" | "import" => {
                    out.candidate_version = outputs
                        .and_then(|o| o.get("version"))
                        .and_then(serde_json::Value::as_i64)
                        .or(out.candidate_version);
                    out.run_id = outputs
                        .and_then(|o| o.get("run"))
                        .and_then(serde_json::Value::as_i64)
                        .or(out.run_id);
                }
                "gate" => {
                    if let Some(list) = outputs.and_then(|o| o.get("gates")) {
                        gates.extend(
                            serde_json::from_value::<Vec<Gate>>(list.clone()).unwrap_or_default(),
                        );
                    }
                    if st.state == "failed" {
                        failed_gate = Some(st.message.clone());
                    }
                }
                "deploy" if st.state == "ran" => deployed = outputs.cloned(),
                _ => {}
            }
        }
        out.gates = serde_json::to_value(&gates).ok();
        let run = format!("pipeline `{}` run #{}", report.pipeline, report.run_id);
        let label = out
            .candidate_version
            .map_or_else(|| "the candidate".to_owned(), |v| format!("@{v}"));
        (out.state, out.message) = match (report.state.as_str(), failed_gate, deployed) {
            (_, Some(why), _) => ("rejected".into(), format!("{run} ({trigger}): {why}")),
            ("failed", None, _) => ("failed".into(), format!("{run}: {}", report.message)),
            (_, None, Some(d)) if d.get("rollout").is_some() => (
                "deployed".into(),
                format!(
                    "{run}: {label} is on rollout #{} ({})",
                    d["rollout"],
                    d["strategy"].as_str().unwrap_or("")
                ),
            ),
            (_, None, Some(d)) if d.get("moved") == Some(&serde_json::Value::Bool(true)) => (
                "promoted".into(),
                format!(
                    "{run}: {label} is {} now",
                    d["alias"].as_str().unwrap_or("production")
                ),
            ),
            _ => (
                "rejected".into(),
                format!("{run}: nothing was deployed ({})", report.message),
            ),
        };
        Ok(())
    }

    /// Passes every `poll` until `stop` turns true; each pass is logged, and errors do not
    /// stop it (the next pass tries again).
    pub async fn run(&self, stop: tokio::sync::watch::Receiver<bool>) {
        let mut standby: Option<String> = None;
        self.run_with(stop, |pass| {
            match pass {
                Ok(Pass::Idle { reason }) => tracing::debug!(reason, "controller idle"),
                Ok(Pass::Retrained { retrain }) => tracing::info!(
                    retrain = retrain.id,
                    state = retrain.state,
                    "controller pass retrained"
                ),
                Ok(Pass::Judged { rollout }) if rollout.state == "running" => {
                    tracing::debug!(rollout = rollout.id, "rollout continues")
                }
                Ok(Pass::Judged { rollout }) => tracing::info!(
                    rollout = rollout.id,
                    state = rollout.state,
                    message = rollout.message,
                    "rollout ended"
                ),
                Ok(Pass::Standby { holder }) => {
                    if standby.as_ref() != Some(&holder) {
                        tracing::info!(
                            holder,
                            "controller on standby: another process holds the lease"
                        );
                    }
                    standby = Some(holder);
                    return true;
                }
                Err(e) => tracing::warn!(error = %e, "controller pass failed"),
            }
            if standby.take().is_some() {
                tracing::info!("controller took over the lease");
            }
            true
        })
        .await
    }

    /// The lease only one controller of the model holds at a time.
    fn lease_name(model: &str) -> String {
        format!("controller:{model}")
    }

    fn lease_ttl(&self) -> std::time::Duration {
        LEASE_TTL_MIN.max(std::time::Duration::from_millis(
            self.settings.poll_ms.saturating_mul(3),
        ))
    }

    /// Takes or renews the controller lease; `Ok(None)` when this process holds it, else the
    /// holder's name.
    async fn lease(&self, model: &str) -> Result<Option<String>> {
        let ttl = self.lease_ttl().as_micros() as i64;
        let lease = self
            .store
            .meta
            .acquire_lease(&Self::lease_name(model), &self.holder, ttl)
            .await?;
        Ok((lease.holder != self.holder).then_some(lease.holder))
    }

    /// One pass as one of several controllers: only the holder of the model's lease ticks
    /// (renewing the lease while the pass runs, since a retraining can outlast it); the
    /// others report who holds it.
    pub async fn leased_tick(&self) -> Result<Pass> {
        let model = self.model()?;
        if let Some(holder) = self.lease(&model).await? {
            return Ok(Pass::Standby { holder });
        }
        let tick = self.tick();
        tokio::pin!(tick);
        let renew = self.lease_ttl() / 3;
        loop {
            tokio::select! {
                pass = &mut tick => return pass,
                _ = tokio::time::sleep(renew) => {
                    if let Err(e) = self.lease(&model).await {
                        tracing::warn!(error = %e, "cannot renew the controller lease");
                    }
                }
            }
        }
    }

    /// Passes every `poll` until `stop` turns true or `on_pass` returns false. Several
    /// processes may run this against one database (server replicas); one acts at a time
    /// (see [`Controller::leased_tick`]), and a stop hands the lease on at once.
    pub async fn run_with(
        &self,
        mut stop: tokio::sync::watch::Receiver<bool>,
        mut on_pass: impl FnMut(Result<Pass>) -> bool,
    ) {
        let every = std::time::Duration::from_millis(self.settings.poll_ms);
        loop {
            if !on_pass(self.leased_tick().await) {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                break;
            }
        }
        self.release().await;
    }

    /// Gives the controller lease up if this process holds it, so another takes over at once.
    pub async fn release(&self) {
        if let Ok(model) = self.model() {
            let name = Self::lease_name(&model);
            if let Err(e) = self.store.meta.release_lease(&name, &self.holder).await {
                tracing::warn!(error = %e, "cannot release the controller lease");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automate_train_merges_over_train() {
        let base: toml::Table = toml::from_str(
            "learner = \"gbdt\"\n[split]\ncutoff = \"2012-07-01\"\nvalid_fraction = 0.2\n",
        )
        .unwrap();
        let over: toml::Table =
            toml::from_str("window = \"56d\"\n[split]\nvalid_fraction = 0.1\n").unwrap();
        let m = merged_train(&base, &over);
        assert_eq!(m["window"].as_str(), Some("56d"));
        assert_eq!(m["learner"].as_str(), Some("gbdt"));
        assert_eq!(m["split"]["valid_fraction"].as_float(), Some(0.1));
        assert_eq!(m["split"]["cutoff"].as_str(), Some("2012-07-01"));
    }
}
