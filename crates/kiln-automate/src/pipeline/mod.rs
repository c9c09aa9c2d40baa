//! Pipelines: the stages of `[pipeline]` run in order, each skipped when its inputs are
//! unchanged since it last succeeded and its outputs still exist (`kiln pipeline run`), and
//! the same judgement without running anything (`kiln pipeline status`).
//!
//! A stage's inputs are one JSON document (see [`key`]): its kind and settings, the kiln.toml
//! sections it reads, its dep files by content hash, what the upstream stages it consumes
//! produced, and the version of the code that does the work. Its cache key is the BLAKE3 of
//! that document. For built-in stages the code is Kiln itself (`kiln X.Y.Z`); for a command
//! stage it is the command line and its declared deps (list the scripts there). The project's
//! git commit is recorded with each run but is not part of any key: committing a README
//! change must not retrain.
//!
//! Which upstream stage a stage consumes is fixed by kind, looking back from it: validate,
//! train and import read the last ingest (train and import without one read the latest
//! version of `[train] dataset`); gate reads the last train or import (the candidate) and
//! the last validate; deploy reads the candidate and the last gate. Command stages read only
//! their deps, so a command that consumes another's out lists that file as a dep.
//!
//! Every run and stage is recorded in the store: a stage as `running` before its work, then
//! `ran` or `failed` with its outputs, duration and message; a cached stage as `skipped` with
//! the outputs it reused. The first failure stops the run; later stages are not run.

pub mod config;
pub mod key;
pub mod stages;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use kiln_core::config::Config;
use kiln_store::{NewStage, Store};
use kiln_train::train::Steps;
use serde::Serialize;
use serde_json::{Value, json};

pub use config::{Kind, PipelineConfig, Stage, Strategy};

use crate::Result;

/// Who alias moves made by a deploy stage are recorded as made by.
pub const ACTOR: &str = "kiln-pipeline";

/// The pipeline of one project.
#[derive(Clone)]
pub struct Pipeline {
    pub store: Store,
    pub config: Arc<Config>,
    /// The folder of kiln.toml: stage paths are relative to it, commands run in it.
    pub root: PathBuf,
    pub scratch: PathBuf,
    /// The project's git commit, recorded with each run (not part of any key).
    pub code_version: Option<String>,
    pub spec: PipelineConfig,
}

/// How fresh one stage is, without running anything.
#[derive(Clone, Debug, Serialize)]
pub struct StageStatus {
    pub stage: String,
    pub kind: String,
    pub fresh: bool,
    /// Why it would run (empty when fresh).
    pub reasons: Vec<String>,
    /// What it produced when it last succeeded.
    pub outputs: Option<Value>,
    /// The run it last succeeded in.
    pub last_run: Option<i64>,
}

/// What one stage did in a run.
#[derive(Clone, Debug, Serialize)]
pub struct StageReport {
    pub stage: String,
    pub kind: String,
    /// `ran`, `skipped`, `failed` or `not_run` (after a failure).
    pub state: String,
    /// Why it ran (empty when skipped or not run).
    pub reasons: Vec<String>,
    pub outputs: Option<Value>,
    /// The outputs in a few words.
    pub summary: String,
    pub duration_ms: i64,
    pub message: String,
}

/// What a run did.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub run_id: i64,
    pub pipeline: String,
    /// `succeeded` or `failed`.
    pub state: String,
    pub stages: Vec<StageReport>,
    pub message: String,
}

/// Follows a run stage by stage (the CLI prints each line and shows a spinner).
pub trait Observer: Send + Sync {
    /// `stage` starts running, for `reasons`.
    fn started(&self, stage: &Stage, reasons: &[String]);
    /// `stage` ran, was skipped or failed.
    fn finished(&self, report: &StageReport);
    /// The training steps of a train or import stage.
    fn steps(&self) -> Arc<dyn Steps>;
}

/// No display.
pub struct Silent;
impl Observer for Silent {
    fn started(&self, _: &Stage, _: &[String]) {}
    fn finished(&self, _: &StageReport) {}
    fn steps(&self) -> Arc<dyn Steps> {
        Arc::new(kiln_train::train::Quiet)
    }
}

/// A stage judged: its inputs (unknown while an upstream stage must run first), its key and
/// the verdict.
struct Assessment {
    inputs: Option<Value>,
    key: String,
    /// `Some(outputs)`: fresh, reuse them.
    fresh: Option<Value>,
    last_run: Option<i64>,
    reasons: Vec<String>,
}

/// A stage's failure: the message, and what it produced before failing (the gates' numbers).
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub outputs: Option<Value>,
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure {
            message: e.to_string(),
            outputs: None,
        }
    }
}

impl Pipeline {
    /// Reads and checks `[pipeline]` of `config`.
    pub fn new(
        store: Store,
        config: Arc<Config>,
        root: PathBuf,
        scratch: PathBuf,
        code_version: Option<String>,
    ) -> Result<Self> {
        let spec = PipelineConfig::from_config(&config)?;
        Ok(Self {
            store,
            config,
            root,
            scratch,
            code_version,
            spec,
        })
    }

    /// The indices of the stages stage `i` consumes, by name.
    fn upstream(&self, i: usize) -> Vec<usize> {
        let s = &self.spec;
        let ingest = |k: &Kind| matches!(k, Kind::Ingest { .. });
        match s.stages[i].kind {
            Kind::Ingest { .. } | Kind::Command { .. } => vec![],
            Kind::Validate | Kind::Train { .. } | Kind::Import { .. } => {
                s.last_before(i, ingest).into_iter().collect()
            }
            Kind::Gate { .. } => [
                s.last_before(i, Kind::makes_model),
                s.last_before(i, |k| matches!(k, Kind::Validate)),
            ]
            .into_iter()
            .flatten()
            .collect(),
            Kind::Deploy { .. } => [
                s.last_before(i, Kind::makes_model),
                s.last_before(i, |k| matches!(k, Kind::Gate { .. })),
            ]
            .into_iter()
            .flatten()
            .collect(),
        }
    }

    /// Judges stage `i` given what the stages before it produced (`None`: must run first).
    async fn assess(&self, i: usize, outputs: &[Option<Value>], force: bool) -> Result<Assessment> {
        let stage = &self.spec.stages[i];
        let mut upstream = serde_json::Map::new();
        for u in self.upstream(i) {
            let name = &self.spec.stages[u].name;
            match &outputs[u] {
                Some(o) => {
                    upstream.insert(name.clone(), stages::view(&self.spec.stages[u].kind, o));
                }
                None => {
                    let last = self
                        .store
                        .meta
                        .last_good_stage(&self.spec.name, &stage.name)
                        .await?;
                    return Ok(Assessment {
                        inputs: None,
                        key: String::new(),
                        fresh: None,
                        last_run: last.map(|r| r.run_id),
                        reasons: vec![format!("upstream `{name}` will run first")],
                    });
                }
            }
        }
        let (config, deps) = stages::reads(self, i, &upstream).await?;
        let inputs = json!({
            "kind": stage.kind.name(),
            "settings": serde_json::to_value(&stage.kind).unwrap_or(Value::Null),
            "config": config,
            "deps": deps,
            "upstream": upstream,
            "code": format!("kiln {}", kiln_core::KILN_VERSION),
        });
        let key = key::key_of(&inputs);
        let last = self
            .store
            .meta
            .last_good_stage(&self.spec.name, &stage.name)
            .await?;
        let mut a = Assessment {
            inputs: Some(inputs),
            key,
            fresh: None,
            last_run: last.as_ref().map(|r| r.run_id),
            reasons: Vec::new(),
        };
        let Some(last) = last else {
            a.reasons.push("never run".into());
            return Ok(a);
        };
        if last.stage.key != a.key {
            let now = a.inputs.as_ref().unwrap_or(&Value::Null);
            a.reasons = key::reasons(&last.stage.inputs, now);
            return Ok(a);
        }
        let recorded = last.outputs.clone().unwrap_or(Value::Null);
        if let Some(why) = stages::invalid(self, i, &recorded).await? {
            a.reasons.push(why);
            return Ok(a);
        }
        if force {
            a.reasons.push("--force".into());
            return Ok(a);
        }
        a.fresh = Some(recorded);
        Ok(a)
    }

    /// Each stage fresh or stale, and why, computed without running anything.
    pub async fn status(&self) -> Result<Vec<StageStatus>> {
        let mut outputs: Vec<Option<Value>> = Vec::new();
        let mut out = Vec::new();
        for (i, stage) in self.spec.stages.iter().enumerate() {
            let a = self.assess(i, &outputs, false).await?;
            let last = match a.last_run {
                Some(_) => self
                    .store
                    .meta
                    .last_good_stage(&self.spec.name, &stage.name)
                    .await?
                    .and_then(|r| r.outputs),
                None => None,
            };
            out.push(StageStatus {
                stage: stage.name.clone(),
                kind: stage.kind.name().into(),
                fresh: a.fresh.is_some(),
                reasons: a.reasons,
                outputs: last,
                last_run: a.last_run,
            });
            outputs.push(a.fresh);
        }
        Ok(out)
    }

    /// Runs the pipeline: stale stages run, fresh ones are skipped, the first failure stops
    /// it. Store errors while recording are returned as errors; a stage's own failure is
    /// recorded and reported in the result (`state = "failed"`).
    pub async fn run(&self, force: bool, observer: &dyn Observer) -> Result<RunReport> {
        let meta = &self.store.meta;
        let run_id = meta
            .start_pipeline_run(&self.spec.name, self.code_version.as_deref())
            .await?;
        let mut outputs: Vec<Option<Value>> = Vec::new();
        let mut reports = Vec::new();
        let mut failed: Option<String> = None;
        for (i, stage) in self.spec.stages.iter().enumerate() {
            let kind = stage.kind.name();
            if failed.is_some() {
                let report = StageReport {
                    stage: stage.name.clone(),
                    kind: kind.into(),
                    state: "not_run".into(),
                    reasons: vec![],
                    outputs: None,
                    summary: String::new(),
                    duration_ms: 0,
                    message: "an earlier stage failed".into(),
                };
                observer.finished(&report);
                reports.push(report);
                continue;
            }
            let a = match self.assess(i, &outputs, force).await {
                Ok(a) => a,
                Err(e) => {
                    // The inputs could not be read (a store error): nothing ran.
                    meta.finish_pipeline_run(run_id, "failed", &format!("{}: {e}", stage.name))
                        .await?;
                    return Err(e);
                }
            };
            let inputs = a.inputs.clone().unwrap_or(Value::Null);
            let new = NewStage {
                stage: stage.name.clone(),
                position: i as i64,
                kind: kind.into(),
                key: a.key.clone(),
                inputs: inputs.clone(),
            };
            if let Some(reused) = a.fresh {
                meta.start_stage(run_id, &new, Some(&reused)).await?;
                let report = StageReport {
                    stage: stage.name.clone(),
                    kind: kind.into(),
                    state: "skipped".into(),
                    reasons: vec![],
                    summary: stages::summary(&stage.kind, &reused),
                    outputs: Some(reused.clone()),
                    duration_ms: 0,
                    message: format!("cached (run #{})", a.last_run.unwrap_or(0)),
                };
                observer.finished(&report);
                reports.push(report);
                outputs.push(Some(reused));
                continue;
            }
            meta.start_stage(run_id, &new, None).await?;
            observer.started(stage, &a.reasons);
            let started = Instant::now();
            let result = stages::execute(self, run_id, i, &outputs, observer.steps()).await;
            let duration_ms = started.elapsed().as_millis() as i64;
            let report = match result {
                Ok(out) => {
                    let summary = stages::summary(&stage.kind, &out);
                    meta.finish_stage(
                        run_id,
                        &stage.name,
                        "ran",
                        Some(&out),
                        duration_ms,
                        &summary,
                    )
                    .await?;
                    outputs.push(Some(out.clone()));
                    StageReport {
                        stage: stage.name.clone(),
                        kind: kind.into(),
                        state: "ran".into(),
                        reasons: a.reasons,
                        summary,
                        outputs: Some(out),
                        duration_ms,
                        message: String::new(),
                    }
                }
                Err(f) => {
                    meta.finish_stage(
                        run_id,
                        &stage.name,
                        "failed",
                        f.outputs.as_ref(),
                        duration_ms,
                        &f.message,
                    )
                    .await?;
                    outputs.push(None);
                    failed = Some(format!("stage `{}` failed: {}", stage.name, f.message));
                    StageReport {
                        stage: stage.name.clone(),
                        kind: kind.into(),
                        state: "failed".into(),
                        reasons: a.reasons,
                        summary: String::new(),
                        outputs: f.outputs,
                        duration_ms,
                        message: f.message,
                    }
                }
            };
            observer.finished(&report);
            reports.push(report);
        }
        let (state, message) = match &failed {
            Some(m) => ("failed", m.clone()),
            None => ("succeeded", String::new()),
        };
        meta.finish_pipeline_run(run_id, state, &message).await?;
        Ok(RunReport {
            run_id,
            pipeline: self.spec.name.clone(),
            state: state.into(),
            stages: reports,
            message,
        })
    }
}
