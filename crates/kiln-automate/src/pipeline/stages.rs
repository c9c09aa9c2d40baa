//! What each stage kind reads, does, produces, and how its recorded outputs are checked to
//! still exist.
//!
//! Built-in stages call the library functions the commands use: `kiln_data::add` (ingest),
//! the dataset's compiled rules (validate), `kiln_train::train::train_against` (train:
//! evaluation and registration happen inside it, since the artifact carries its evaluation
//! and registration is one metadata transaction), `kiln_train::import::import_onnx_against`
//! (import), `crate::gates` (gate) and `MetaStore::set_alias` with `Expect::Revision`
//! (deploy, through [`roll_out`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use kiln_data::validate::{Rules, ValidationReport, Violation};
use kiln_data::{AddOptions, add};
use kiln_store::{Alias, Expect, StoreError};
use kiln_train::registry::{ModelRef, Selector, load, resolve};
use kiln_train::spec::TrainSpec;
use kiln_train::train::{Champion, Steps, train_against};
use serde_json::{Map, Value, json};

use super::config::{Kind, Run, Strategy};
use super::{ACTOR, Failure, Pipeline, key};
use crate::controller::merged_train;
use crate::gates::{Gate, latency_gate, metric_gates};
use crate::{AutomateError, Result};

/// Bytes of a failed command's stderr kept in its message.
const STDERR_TAIL: usize = 2000;

fn input(m: String) -> AutomateError {
    AutomateError::Input(m)
}

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn int_of(v: &Value, k: &str) -> Option<i64> {
    v.get(k).and_then(Value::as_i64)
}

/// What a consumer's key sees of an upstream stage's outputs: the identity of what it made,
/// not incidental numbers (durations, latencies).
pub fn view(kind: &Kind, out: &Value) -> Value {
    let pick = |keys: &[&str]| {
        Value::Object(
            keys.iter()
                .filter_map(|k| out.get(*k).map(|v| ((*k).to_owned(), v.clone())))
                .collect(),
        )
    };
    match kind {
        Kind::Ingest { .. } => pick(&["dataset", "version", "snapshot"]),
        Kind::Validate => pick(&["dataset", "version", "violations"]),
        Kind::Train { .. } | Kind::Import { .. } => pick(&["model", "version", "artifact"]),
        Kind::Gate { .. } => pick(&["model", "version", "champion", "revision"]),
        Kind::Deploy { .. } => pick(&["model", "alias", "version"]),
        Kind::Command { .. } => pick(&["outs"]),
    }
}

/// The outputs in a few words, for a run's lines and `status`.
pub fn summary(kind: &Kind, out: &Value) -> String {
    let label = |n: &str| match int_of(out, "version") {
        Some(v) => format!("{}@{v}", str_of(out, n)),
        None => "-".into(),
    };
    match kind {
        Kind::Ingest { .. } => format!(
            "{} ({} rows{})",
            label("dataset"),
            int_of(out, "rows").unwrap_or(0),
            if out.get("created") == Some(&Value::Bool(false)) {
                ", content already stored"
            } else {
                ""
            }
        ),
        Kind::Validate => format!(
            "{}: {} rows, {} violations",
            label("dataset"),
            int_of(out, "rows").unwrap_or(0),
            int_of(out, "violations").unwrap_or(0)
        ),
        Kind::Train { .. } | Kind::Import { .. } => {
            let metric = out
                .get("metric")
                .and_then(Value::as_object)
                .and_then(|m| m.iter().next())
                .map(|(k, v)| {
                    format!(
                        " {k} {}",
                        v.as_f64().map_or("-".into(), |x| format!("{x:.4}"))
                    )
                })
                .unwrap_or_default();
            format!("{}{metric}", label("model"))
        }
        Kind::Gate { .. } => {
            let gates = out
                .get("gates")
                .and_then(Value::as_array)
                .map(|g| {
                    g.iter()
                        .map(|g| {
                            format!(
                                "{} {}",
                                str_of(g, "gate"),
                                if g.get("passed") == Some(&Value::Bool(true)) {
                                    "passed"
                                } else {
                                    "failed"
                                }
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            format!("{}: {gates}", label("model"))
        }
        Kind::Deploy { .. } if int_of(out, "rollout").is_some() => format!(
            "{} on rollout #{} ({}) against {}",
            label("model"),
            int_of(out, "rollout").unwrap_or(0),
            str_of(out, "strategy"),
            str_of(out, "alias"),
        ),
        Kind::Deploy { .. } => format!(
            "{} → {}{}",
            str_of(out, "alias"),
            label("model"),
            if out.get("moved") == Some(&Value::Bool(false)) {
                " (already there)"
            } else {
                ""
            }
        ),
        Kind::Command { .. } => {
            let outs: Vec<String> = out
                .get("outs")
                .and_then(Value::as_object)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            if outs.is_empty() {
                "exit 0".into()
            } else {
                format!("wrote {}", outs.join(", "))
            }
        }
    }
}

/// A path of kiln.toml's folder, shown as written.
fn at(p: &Pipeline, rel: &Path) -> PathBuf {
    p.root.join(rel)
}

/// A dataset version as `(dataset, version, snapshot)`: the upstream ingest's, or the latest of
/// `[train] dataset` (or its stated version), or of the project's only dataset.
async fn data_source(
    p: &Pipeline,
    upstream: &Map<String, Value>,
    i: usize,
) -> Result<(String, i64, String)> {
    if let Some(u) = p
        .spec
        .last_before(i, |k| matches!(k, Kind::Ingest { .. }))
        .and_then(|u| upstream.get(&p.spec.stages[u].name))
    {
        return Ok((
            str_of(u, "dataset").to_owned(),
            int_of(u, "version").unwrap_or(0),
            str_of(u, "snapshot").to_owned(),
        ));
    }
    let stated = p.config.train.get("dataset").and_then(|v| v.as_str());
    let (name, version) = match stated {
        Some(d) => {
            let r: kiln_data::DatasetRef = d.parse()?;
            (r.name, r.version)
        }
        None => match p.store.meta.datasets().await?.as_slice() {
            [one] => (one.name.clone(), None),
            _ => {
                return Err(input(format!(
                    "stage `{}` trains on which dataset?\nhint: set `dataset` in [train], or add an ingest stage before it",
                    p.spec.stages[i].name
                )));
            }
        },
    };
    let v = p.store.meta.version(&name, version).await?.ok_or_else(|| {
        input(format!(
            "stage `{}`: dataset `{name}` has no {} yet\nhint: add an ingest stage, or `kiln data add FILE --dataset {name}`",
            p.spec.stages[i].name,
            version.map_or("version".to_owned(), |v| format!("version {v}"))
        ))
    })?;
    Ok((name, v.version, v.snapshot_id.to_string()))
}

/// The kiln.toml sections stage `i` reads and its deps (files by content hash; a dataset
/// read without an upstream ingest, by snapshot id).
pub(crate) async fn reads(
    p: &Pipeline,
    i: usize,
    upstream: &Map<String, Value>,
) -> Result<(Value, Value)> {
    let mut config = Map::new();
    let mut deps = Map::new();
    let file = |rel: &Path, deps: &mut Map<String, Value>| -> Result<()> {
        let h = key::hash_file(&at(p, rel))?;
        deps.insert(
            rel.display().to_string(),
            h.map_or(Value::Null, Value::String),
        );
        Ok(())
    };
    match &p.spec.stages[i].kind {
        Kind::Ingest { dataset, path, .. } => {
            config.insert(
                format!("[datasets.{dataset}]"),
                to_json(&p.config.dataset(dataset)),
            );
            config.insert("[ingest]".into(), to_json(&p.config.ingest));
            file(path, &mut deps)?;
        }
        Kind::Validate => {
            let (dataset, ..) = data_source(p, upstream, i).await?;
            config.insert(
                format!("[datasets.{dataset}]"),
                to_json(&p.config.dataset(&dataset)),
            );
        }
        Kind::Train { .. } | Kind::Import { .. } => {
            config.insert("[train]".into(), to_json(&p.config.train));
            let has_ingest = p
                .spec
                .last_before(i, |k| matches!(k, Kind::Ingest { .. }))
                .is_some();
            if !has_ingest {
                let (name, version, snapshot) = data_source(p, upstream, i).await?;
                deps.insert(
                    format!("dataset {name}"),
                    json!({"version": version, "snapshot": snapshot}),
                );
            }
            if let Kind::Import {
                file: f, schema, ..
            } = &p.spec.stages[i].kind
            {
                file(f, &mut deps)?;
                file(schema, &mut deps)?;
            }
        }
        Kind::Command { deps: files, .. } => {
            for f in files {
                file(f, &mut deps)?;
            }
        }
        Kind::Gate { .. } | Kind::Deploy { .. } => {}
    }
    Ok((Value::Object(config), Value::Object(deps)))
}

/// Settings as JSON for the inputs document (these types always serialize).
fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The registered candidate a model stage made: `(model, version)`.
fn candidate(out: &Value) -> (String, i64) {
    (
        str_of(out, "model").to_owned(),
        int_of(out, "version").unwrap_or(0),
    )
}

fn label(model: &str, v: Option<i64>) -> String {
    match v {
        Some(v) => format!("{model}@{v}"),
        None => "none".into(),
    }
}

/// Why recorded `out` of stage `i` no longer holds (`None`: it does).
pub(crate) async fn invalid(p: &Pipeline, i: usize, out: &Value) -> Result<Option<String>> {
    let meta = &p.store.meta;
    Ok(match &p.spec.stages[i].kind {
        Kind::Ingest { dataset, .. } => {
            let v = int_of(out, "version");
            let found = match v {
                Some(v) => meta.version(dataset, Some(v)).await?,
                None => None,
            };
            match found {
                Some(f) if f.snapshot_id.as_str() == str_of(out, "snapshot") => None,
                _ => Some(format!("output {} missing", label(dataset, v))),
            }
        }
        Kind::Validate => None,
        Kind::Train { .. } | Kind::Import { .. } => {
            let (model, version) = candidate(out);
            let exists =
                meta.model_versions(&model).await?.iter().any(|m| {
                    m.version == version && m.artifact_id.as_str() == str_of(out, "artifact")
                });
            if !exists {
                return Ok(Some(format!(
                    "output {} missing",
                    label(&model, Some(version))
                )));
            }
            // It was compared with the champion of its time: still the one, or itself now.
            let alias = p.spec.champion_alias(i);
            let now = meta.alias(&model, &alias).await?.map(|a| a.version);
            let then = int_of(out, "champion");
            if now == then || now == Some(version) {
                None
            } else {
                Some(format!(
                    "{alias} moved to {} since {} was compared with {}",
                    label(&model, now),
                    label(&model, Some(version)),
                    label(&model, then)
                ))
            }
        }
        Kind::Gate { .. } => {
            let (model, version) = candidate(out);
            let alias = str_of(out, "alias");
            let now = meta.alias(&model, alias).await?;
            let seen = (int_of(out, "champion"), int_of(out, "revision"));
            match now {
                Some(a) if a.version == version => None,
                Some(a) if (Some(a.version), Some(a.revision)) == seen => None,
                None if seen == (None, None) => None,
                now => Some(format!(
                    "{alias} moved (now {}) since the gate judged {}",
                    label(&model, now.map(|a| a.version)),
                    label(&model, Some(version))
                )),
            }
        }
        Kind::Deploy { alias, .. } if int_of(out, "rollout").is_some() => {
            // Put on a rollout: done, whatever the rollout's verdict (a rolled-back or
            // discarded candidate is not tried again until its inputs change).
            let id = int_of(out, "rollout");
            let (model, _) = candidate(out);
            let found = meta
                .rollouts(Some(&model), false, 10_000)
                .await?
                .into_iter()
                .any(|r| Some(r.id) == id);
            (!found).then(|| format!("rollout #{} of {alias} is not recorded", id.unwrap_or(0)))
        }
        Kind::Deploy { alias, .. } => {
            let (model, version) = candidate(out);
            match meta.alias(&model, alias).await? {
                Some(a) if a.version == version => None,
                now => Some(format!(
                    "{alias} is {}, not {}",
                    label(&model, now.map(|a| a.version)),
                    label(&model, Some(version))
                )),
            }
        }
        Kind::Command { outs, .. } => {
            for o in outs {
                let shown = o.display().to_string();
                let recorded = out
                    .get("outs")
                    .and_then(|m| m.get(&shown))
                    .and_then(Value::as_str);
                match key::hash_file(&at(p, o))? {
                    None => return Ok(Some(format!("output {shown} missing"))),
                    Some(h) if Some(h.as_str()) != recorded => {
                        return Ok(Some(format!("output {shown} changed since it was written")));
                    }
                    Some(_) => {}
                }
            }
            None
        }
    })
}

/// Runs stage `i` of run `run_id`; `outputs` holds what every earlier stage produced.
pub(crate) async fn execute(
    p: &Pipeline,
    run_id: i64,
    i: usize,
    outputs: &[Option<Value>],
    steps: Arc<dyn Steps>,
) -> Result<Value, Failure> {
    let up = |pred: fn(&Kind) -> bool| -> Option<&Value> {
        p.spec
            .last_before(i, pred)
            .and_then(|u| outputs[u].as_ref())
    };
    let mut upstream = Map::new();
    for (stage, o) in p.spec.stages.iter().zip(outputs).take(i) {
        if let Some(o) = o {
            upstream.insert(stage.name.clone(), view(&stage.kind, o));
        }
    }
    match &p.spec.stages[i].kind {
        Kind::Ingest {
            dataset,
            path,
            append,
        } => {
            let file = at(p, path);
            if !file.is_file() {
                return Err(format!("{}: no such file", path.display()).into());
            }
            let o = add(
                &p.store,
                &p.config,
                &p.scratch,
                &AddOptions {
                    file,
                    dataset: dataset.clone(),
                    time_column: None,
                    target: None,
                    append: *append,
                    allow_schema_change: false,
                    source: None,
                },
                Arc::new(kiln_data::ingest::NoProgress),
            )
            .await?;
            Ok(json!({
                "dataset": o.version.dataset,
                "version": o.version.version,
                "snapshot": o.version.snapshot_id.to_string(),
                "rows": o.version.rows,
                "created": o.created,
                "quarantined_rows": o.quarantined_rows,
            }))
        }
        Kind::Validate => validate(p, &upstream, i).await,
        Kind::Train { set, register } => {
            let (dataset, version, _) = data_source(p, &upstream, i).await?;
            let mut spec = TrainSpec::resolve(&merged_train(&p.config.train, set), &[])?;
            spec.dataset = Some(format!("{dataset}@{version}"));
            if register.is_some() {
                spec.register.clone_from(register);
            }
            let model = spec.register.clone().ok_or_else(|| {
                format!(
                    "the candidate needs a model name to be registered under\nhint: set `register` in [train], or in stage `{}`",
                    p.spec.stages[i].name
                )
            })?;
            let (champion, champ) = champion(p, &model, i).await?;
            let o = train_against(
                &p.store,
                &p.config,
                &p.scratch,
                &spec,
                p.code_version.clone(),
                steps,
                champ,
            )
            .await?;
            model_outputs(&o, &model, champion, &dataset, version)
        }
        Kind::Import {
            file,
            schema,
            model,
        } => {
            let (dataset, version, _) = data_source(p, &upstream, i).await?;
            let read = |rel: &Path| {
                std::fs::read(at(p, rel)).map_err(|e| format!("cannot read {}: {e}", rel.display()))
            };
            let onnx = read(file)?;
            let text = String::from_utf8(read(schema)?)
                .map_err(|_| format!("{}: not UTF-8 text", schema.display()))?;
            let parsed = kiln_train::import::ImportSchema::parse(&text, schema)?;
            let mut spec = TrainSpec::resolve(&p.config.train, &[])?;
            spec.dataset = Some(format!("{dataset}@{version}"));
            let name = model.clone().or(spec.register.clone()).ok_or_else(|| {
                format!(
                    "the imported model needs a name\nhint: set `model` in stage `{}`, or `register` in [train]",
                    p.spec.stages[i].name
                )
            })?;
            let (champion, champ) = champion(p, &name, i).await?;
            let o = kiln_train::import::import_onnx_against(
                &p.store,
                &p.config,
                &p.scratch,
                &spec,
                kiln_train::import::ImportRequest {
                    onnx,
                    file_name: file
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    schema: parsed,
                    name: name.clone(),
                },
                steps,
                champ,
            )
            .await?;
            model_outputs(&o, &name, champion, &dataset, version)
        }
        Kind::Gate {
            gates,
            margin,
            max_latency_ms,
        } => {
            let made = up(Kind::makes_model).ok_or("no candidate upstream")?;
            let (model, version) = candidate(made);
            let alias = p.spec.champion_alias(i);
            let artifact = Arc::new(
                load(
                    &p.store,
                    &resolve(
                        &p.store,
                        &ModelRef {
                            name: model.clone(),
                            selector: Selector::Version(version),
                        },
                    )
                    .await?,
                )
                .await?,
            );
            let mut verdicts = Vec::new();
            if let Some(v) = up(|k| matches!(k, Kind::Validate)) {
                verdicts.push(Gate {
                    gate: "data_validation".into(),
                    passed: int_of(v, "violations") == Some(0),
                    value: int_of(v, "rows").map(|r| r as f64),
                    bound: None,
                    detail: summary(&Kind::Validate, v),
                });
            }
            let champion_label = int_of(made, "champion").map(|c| format!("{model}@{c}"));
            verdicts.extend(
                metric_gates(&artifact.evaluation, champion_label.as_deref(), *margin)
                    .into_iter()
                    .filter(|g| gates.contains(&g.gate)),
            );
            if gates.iter().any(|g| g == "latency") {
                let max = *max_latency_ms;
                let a = artifact.clone();
                verdicts.push(
                    tokio::task::spawn_blocking(move || latency_gate(&a, None, max))
                        .await
                        .map_err(std::io::Error::other)?,
                );
            }
            let now: Option<Alias> = p.store.meta.alias(&model, &alias).await?;
            let out = json!({
                "model": model,
                "version": version,
                "alias": alias,
                "champion": now.as_ref().map(|a| a.version),
                "revision": now.as_ref().map(|a| a.revision),
                "gates": verdicts,
            });
            let failed: Vec<String> = verdicts
                .iter()
                .filter(|g| !g.passed)
                .map(|g| format!("{}: {}", g.gate, g.detail))
                .collect();
            if failed.is_empty() {
                Ok(out)
            } else {
                Err(Failure {
                    message: format!(
                        "{model}@{version} failed the gate ({}); {alias} untouched ({})",
                        failed.join("; "),
                        now.map_or("not set".to_owned(), |a| format!("{model}@{}", a.version))
                    ),
                    outputs: Some(out),
                })
            }
        }
        Kind::Deploy {
            alias,
            strategy,
            share,
        } => {
            let made = up(Kind::makes_model).ok_or("no candidate upstream")?;
            let (model, version) = candidate(made);
            let gate = up(|k| matches!(k, Kind::Gate { .. }));
            let now = p.store.meta.alias(&model, alias).await?;
            let base = json!({"model": model, "alias": alias, "version": version});
            if now.as_ref().is_some_and(|a| a.version == version) {
                let mut out = base;
                out["moved"] = json!(false);
                return Ok(out);
            }
            // The state the gate judged against; without a gate, the state now.
            let expect = match gate {
                Some(g) => match int_of(g, "revision") {
                    Some(r) => Expect::Revision(r),
                    None => Expect::Absent,
                },
                None => now
                    .as_ref()
                    .map_or(Expect::Absent, |a| Expect::Revision(a.revision)),
            };
            let passed = gate
                .and_then(|g| g.get("gates"))
                .and_then(Value::as_array)
                .map(|gs| {
                    gs.iter()
                        .map(|g| format!("{}: {}", str_of(g, "gate"), str_of(g, "detail")))
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "no gate".into());
            let reason = format!(
                "pipeline `{}` run #{run_id}, stage `{}`: {passed}",
                p.spec.name, p.spec.stages[i].name
            );
            if *strategy != Strategy::Direct {
                let settings = crate::AutomateConfig::from_table(&p.config.automate)?;
                let clock = p.store.meta.latest_prediction_time(&model).await?;
                let r = crate::rollout::start(
                    &p.store,
                    &model,
                    version,
                    alias,
                    *strategy,
                    share.unwrap_or(settings.rollout.share),
                    None,
                    clock,
                    &crate::rollout::Actor {
                        name: ACTOR,
                        reason: &reason,
                    },
                )
                .await?;
                return Ok(json!({
                    "model": model,
                    "alias": alias,
                    "version": version,
                    "from": now.map(|n| n.version),
                    "rollout": r.id,
                    "strategy": strategy.as_str(),
                    "moved": false,
                }));
            }
            match roll_out(p, &model, alias, version, expect, &reason).await {
                Ok(a) => Ok(json!({
                    "model": model,
                    "alias": alias,
                    "version": version,
                    "from": now.map(|n| n.version),
                    "revision": a.revision,
                    "moved": true,
                })),
                Err(StoreError::Conflict(m)) => Err(format!(
                    "{alias} moved since the gate judged {model}@{version}: {m}\nhint: run the pipeline again to judge the candidate against the new champion"
                )
                .into()),
                Err(e) => Err(e.into()),
            }
        }
        Kind::Command { run, outs, env, .. } => command(p, run, outs, env).await,
    }
}

/// The champion of `model` (the version its deploy alias points to) and the loaded model
/// to score on the candidate's validation rows.
async fn champion(p: &Pipeline, model: &str, i: usize) -> Result<(Option<i64>, Option<Champion>)> {
    let alias = p.spec.champion_alias(i);
    let Some(a) = p.store.meta.alias(model, &alias).await? else {
        return Ok((None, None));
    };
    let v = resolve(
        &p.store,
        &ModelRef {
            name: model.to_owned(),
            selector: Selector::Version(a.version),
        },
    )
    .await?;
    let artifact = Arc::new(load(&p.store, &v).await?);
    Ok((
        Some(a.version),
        Some(Champion::new(format!("{model}@{}", a.version), artifact)),
    ))
}

fn model_outputs(
    o: &kiln_train::train::TrainOutcome,
    model: &str,
    champion: Option<i64>,
    dataset: &str,
    dataset_version: i64,
) -> Result<Value, Failure> {
    let registered = o
        .registered
        .as_ref()
        .ok_or("the candidate was trained but not registered")?;
    let e = &o.evaluation;
    let metric = e
        .metrics
        .get("model")
        .and_then(|m| m.get(&e.primary))
        .copied();
    Ok(json!({
        "model": model,
        "version": registered.version,
        "artifact": registered.artifact_id.to_string(),
        "run": o.run_id,
        "champion": champion,
        "dataset": dataset,
        "dataset_version": dataset_version,
        "metric": {e.primary.clone(): metric},
    }))
}

/// A direct deploy: `alias` moves to `version` with a compare-and-set (`shadow` and `canary`
/// deploys go through `rollout::start` instead, and the controller judges them).
pub async fn roll_out(
    p: &Pipeline,
    model: &str,
    alias: &str,
    version: i64,
    expect: Expect,
    reason: &str,
) -> Result<Alias, StoreError> {
    p.store
        .meta
        .set_alias(model, alias, version, expect, reason, ACTOR)
        .await
}

/// The snapshot against its dataset's rules as kiln.toml states them now.
async fn validate(p: &Pipeline, upstream: &Map<String, Value>, i: usize) -> Result<Value, Failure> {
    let (dataset, version, _) = data_source(p, upstream, i).await?;
    let v = p
        .store
        .meta
        .version(&dataset, Some(version))
        .await?
        .ok_or_else(|| format!("{dataset}@{version} does not exist"))?;
    let ds = p.config.dataset(&dataset);
    let label = format!("{dataset}@{version}");
    let mut rules = Rules::compile(&v.schema, &ds);
    let mut report = ValidationReport::new(
        label.clone(),
        dataset.clone(),
        ds.policy,
        p.config.ingest.max_errors_shown,
    );
    let mut nulls = vec![0u64; v.schema.columns.len()];
    let mut row = 1u64;
    let mut bad_rows = 0u64;
    kiln_data::snapshot::for_each_batch(&p.store, &p.scratch, &v, |b: RecordBatch| {
        let mut bad = vec![false; b.num_rows()];
        rules.check(&b, row, &[], &mut bad, &mut report);
        bad_rows += bad.iter().filter(|x| **x).count() as u64;
        for (c, n) in nulls.iter_mut().enumerate() {
            if c < b.num_columns() {
                *n += b.column(c).null_count() as u64;
            }
        }
        row += b.num_rows() as u64;
        Ok(())
    })
    .await?;
    let rows = row - 1;
    for (col, limit) in &rules.null_limits {
        let Some(c) = v.schema.columns.iter().position(|c| &c.name == col) else {
            continue;
        };
        let frac = if rows == 0 {
            0.0
        } else {
            nulls[c] as f64 / rows as f64
        };
        if frac > *limit {
            report.push(Violation {
                row: None,
                line: None,
                column: Some(col.clone()),
                value: Some(format!("{frac:.4}")),
                rule: "max_null_fraction",
                message: format!(
                    "{:.2}% of values are missing, more than max_null_fraction {limit}",
                    frac * 100.0
                ),
            });
        }
    }
    let out = json!({
        "dataset": dataset,
        "version": version,
        "rows": rows,
        "violations": report.violations,
        "bad_rows": bad_rows,
        "by_rule": report.by_rule,
        "quarantined_at_ingest": v.quarantined_rows,
    });
    if report.is_clean() {
        return Ok(out);
    }
    let shown: Vec<String> = report
        .shown
        .iter()
        .map(|v| {
            let mut at = Vec::new();
            if let Some(r) = v.row {
                at.push(format!("row {r}"));
            }
            if let Some(c) = &v.column {
                at.push(format!("column `{c}`"));
            }
            format!("  {}: {} [{}]", at.join(", "), v.message, v.rule)
        })
        .collect();
    Err(Failure {
        message: format!(
            "{label}: {} violation(s) in {bad_rows} of {rows} row(s) against the rules of [datasets.{dataset}]\n{}\nhint: fix the data, or the rules in kiln.toml",
            report.violations,
            shown.join("\n")
        ),
        outputs: Some(out),
    })
}

/// An external command in kiln.toml's folder; its declared outs are removed first, so each
/// must be written again by this run.
async fn command(
    p: &Pipeline,
    run: &Run,
    outs: &[PathBuf],
    env: &std::collections::BTreeMap<String, String>,
) -> Result<Value, Failure> {
    for o in outs {
        match std::fs::remove_file(at(p, o)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot remove the old {}: {e}", o.display()).into()),
        }
        if let Some(dir) = at(p, o).parent() {
            std::fs::create_dir_all(dir)?;
        }
    }
    let mut cmd = match run {
        Run::Shell(s) => {
            let mut c = std::process::Command::new("sh");
            c.arg("-c").arg(s);
            c
        }
        Run::Argv(a) => {
            let mut c = std::process::Command::new(&a[0]);
            c.args(&a[1..]);
            c
        }
    };
    cmd.current_dir(&p.root)
        .envs(env)
        .stdin(std::process::Stdio::null());
    let shown = match run {
        Run::Shell(s) => s.clone(),
        Run::Argv(a) => a.join(" "),
    };
    let output = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .map_err(std::io::Error::other)?
        .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail = stderr.trim_end();
        let tail = match tail.char_indices().rev().nth(STDERR_TAIL) {
            Some((cut, _)) => format!("...{}", &tail[cut..]),
            None => tail.to_owned(),
        };
        let code = output
            .status
            .code()
            .map_or("a signal".to_owned(), |c| format!("code {c}"));
        return Err(Failure {
            message: format!(
                "`{shown}` exited with {code}{}",
                if tail.is_empty() {
                    String::new()
                } else {
                    format!("; stderr:\n{tail}")
                }
            ),
            outputs: Some(json!({"exit": output.status.code()})),
        });
    }
    let mut hashes = Map::new();
    for o in outs {
        match key::hash_file(&at(p, o))? {
            Some(h) => {
                hashes.insert(o.display().to_string(), Value::String(h));
            }
            None => {
                return Err(Failure {
                    message: format!(
                        "`{shown}` exited 0 but did not write {}, a declared out",
                        o.display()
                    ),
                    outputs: Some(json!({"exit": 0})),
                });
            }
        }
    }
    Ok(json!({"outs": hashes, "exit": 0}))
}
