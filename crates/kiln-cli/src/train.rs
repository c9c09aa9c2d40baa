//! `kiln train` and `kiln runs list|show|compare`.

use std::collections::BTreeMap;
use std::sync::Arc;

use clap::{Args, Subcommand};
use kiln_model::evaluate::{Evaluation, lower_is_better};
use kiln_store::Run;
use kiln_train::spec::TrainSpec;
use kiln_train::train::{TrainOutcome, train};

use crate::GlobalArgs;
use crate::context::{Project, open};
use crate::output::{CliError, Spinner, count, num, print_json, table};

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Dataset to train on: NAME or NAME@VERSION [default: [train] dataset, else the only dataset]
    #[arg(long, short = 'd')]
    pub dataset: Option<String>,
    /// Override a training setting, e.g. --set gbdt.iterations=200 (repeatable; keys as in
    /// [train] of kiln.toml)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Register the trained model under this name (same as --set register=NAME)
    #[arg(long, value_name = "NAME")]
    pub register: Option<String>,
    /// Print the result as one JSON document
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum RunsCommand {
    /// The most recent training runs
    List(RunsListArgs),
    /// One run: parameters, data, code version, metrics, importance, timings
    Show(RunShowArgs),
    /// Two runs side by side: parameters that differ, metrics with the change
    Compare(RunCompareArgs),
}

#[derive(Args, Debug)]
pub struct RunsListArgs {
    /// How many runs to list
    #[arg(long, default_value_t = 20)]
    pub limit: i64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RunShowArgs {
    /// Run id (as printed by `kiln train`)
    pub id: i64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RunCompareArgs {
    pub a: i64,
    pub b: i64,
    #[arg(long)]
    pub json: bool,
}

pub async fn run_train(global: &GlobalArgs, args: TrainArgs) -> Result<(), CliError> {
    let project = open(global).await?;
    let mut overrides = args.set.clone();
    if let Some(d) = &args.dataset {
        overrides.push(format!("dataset={}", toml_string(d)));
    }
    if let Some(r) = &args.register {
        overrides.push(format!("register={}", toml_string(r)));
    }
    let spec = TrainSpec::resolve(&project.config.train, &overrides)?;
    let outcome = train_with(global, &project, &spec, args.json).await?;
    if args.json {
        return print_json(&outcome);
    }
    if !global.quiet {
        print_outcome(&outcome);
    }
    Ok(())
}

/// A string as a TOML value (so `--dataset x@2` cannot be read as something else).
pub fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// Trains with a spinner; shared with `kiln quickstart`.
pub async fn train_with(
    global: &GlobalArgs,
    project: &Project,
    spec: &TrainSpec,
    json: bool,
) -> Result<TrainOutcome, CliError> {
    let code_dir = project
        .config_dir
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from("."));
    let spinner = Spinner::new(global, json);
    let result = train(
        &project.store,
        &project.config,
        &project.scratch(),
        spec,
        kiln_train::code_version(&code_dir),
        Arc::new(spinner.clone()),
    )
    .await;
    spinner.finish();
    Ok(result?)
}

pub fn print_outcome(o: &TrainOutcome) {
    let e = &o.evaluation;
    println!(
        "{}  {}@{} (snapshot {})  target `{}` ({})",
        o.run_id
            .map(|r| format!("run {r}"))
            .unwrap_or_else(|| "imported".into()),
        o.dataset,
        o.dataset_version,
        o.snapshot_id.short(),
        o.target,
        task_name(&o.task)
    );
    println!("  split:    {}", e.data.split);
    println!(
        "            train {} rows{}, validate {} rows{}",
        count(e.data.train_rows),
        span(&e.data.train_time),
        count(e.data.valid_rows),
        span(&e.data.valid_time)
    );
    print!("{}", indent(&metrics_table(e)));
    if let Some(cv) = &e.cross_validation {
        println!(
            "  cross-validation: {} {} ± {} over {} folds",
            cv.metric,
            num(Some(cv.mean)),
            num(Some(cv.std)),
            cv.folds
        );
    }
    if !e.importance.is_empty() {
        let top: Vec<String> = e
            .importance
            .iter()
            .take(5)
            .map(|(f, s)| format!("{f} {:.0}%", s * 100.0))
            .collect();
        println!("  top features: {}", top.join(", "));
    }
    println!(
        "  model:    artifact {} ({} KiB)",
        o.artifact_id.short(),
        o.artifact_bytes.div_ceil(1024)
    );
    if let Some(v) = &o.registered {
        println!(
            "  registered as {}@{}  (card: kiln models card {}@{} -o card.html)",
            v.model, v.version, v.model, v.version
        );
    }
    let total: f64 = o.timings.values().sum();
    match o.timings.get("fit") {
        Some(fit) => println!("  took {total:.2} s (fit {fit:.2} s)"),
        None => println!("  took {total:.2} s"),
    }
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}

fn span(t: &Option<(String, String)>) -> String {
    match t {
        Some((a, b)) => format!(" ({a} .. {b})"),
        None => String::new(),
    }
}

pub fn task_name(t: &kiln_model::learner::Task) -> String {
    match t {
        kiln_model::learner::Task::Regression => "regression".into(),
        kiln_model::learner::Task::Binary => "binary classification".into(),
        kiln_model::learner::Task::Multiclass { classes } => {
            format!("{classes}-class classification")
        }
    }
}

/// Metrics of the model and its baselines, one row per metric.
pub fn metrics_table(e: &Evaluation) -> String {
    metric_set_table(&e.metrics, &e.primary)
}

/// Contender (`model`, `linear`, `baseline`) → metric → value as a table: a row per metric
/// (`primary` first, then alphabetically), a column per contender.
fn metric_set_table(metrics: &BTreeMap<String, BTreeMap<String, f64>>, primary: &str) -> String {
    let contenders: Vec<&str> = ["model", "linear", "baseline"]
        .into_iter()
        .filter(|c| metrics.contains_key(*c))
        .collect();
    let mut names: Vec<&String> = metrics
        .get("model")
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    names.sort_by_key(|n| (n.as_str() != primary, n.as_str()));
    let rows: Vec<Vec<String>> = names
        .iter()
        .map(|n| {
            let mut r = vec![(*n).clone()];
            for c in &contenders {
                r.push(num(metrics.get(*c).and_then(|m| m.get(*n)).copied()));
            }
            r
        })
        .collect();
    let mut header = vec!["metric"];
    header.extend(contenders.iter().copied());
    table(&header, &rows)
}

pub async fn run_runs(global: &GlobalArgs, cmd: RunsCommand) -> Result<(), CliError> {
    let project = open(global).await?;
    match cmd {
        RunsCommand::List(a) => list(&project, a).await,
        RunsCommand::Show(a) => show(&project, a).await,
        RunsCommand::Compare(a) => compare(&project, a).await,
    }
}

pub async fn get_run(project: &Project, id: i64) -> Result<Run, CliError> {
    project.store.meta.run(id).await?.ok_or_else(|| {
        CliError::input(format!(
            "no run {id}\nhint: `kiln runs list` shows the recent runs"
        ))
    })
}

fn primary(run: &Run) -> Option<(String, f64)> {
    let m = run.metrics.as_ref()?.get("model")?;
    for name in ["rmse", "log_loss"] {
        if let Some(v) = m.get(name).and_then(|v| v.as_f64()) {
            return Some((name.to_owned(), v));
        }
    }
    None
}

fn learner(run: &Run) -> String {
    run.params
        .get("learner")
        .and_then(|l| l.as_str())
        .unwrap_or("?")
        .to_owned()
}

async fn list(project: &Project, a: RunsListArgs) -> Result<(), CliError> {
    let runs = project.store.meta.runs(a.limit.max(1)).await?;
    if a.json {
        return print_json(&runs);
    }
    if runs.is_empty() {
        println!("no runs yet: kiln train");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let p = primary(r);
            vec![
                r.id.to_string(),
                r.status.to_string(),
                format!("{}@{}", r.dataset, r.dataset_version),
                learner(r),
                p.as_ref().map(|(n, _)| n.clone()).unwrap_or_default(),
                num(p.map(|(_, v)| v)),
                kiln_core::format_micros(r.started_at),
                r.finished_at
                    .map(|f| format!("{:.2}", (f - r.started_at) as f64 / 1e6))
                    .unwrap_or_else(|| "-".into()),
                r.artifact_id
                    .as_ref()
                    .map(|a| a.short().to_owned())
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "run", "status", "data", "learner", "metric", "value", "started", "seconds",
                "artifact"
            ],
            &rows
        )
    );
    Ok(())
}

async fn show(project: &Project, a: RunShowArgs) -> Result<(), CliError> {
    let r = get_run(project, a.id).await?;
    if a.json {
        return print_json(&r);
    }
    println!("run {}  {}", r.id, r.status);
    println!(
        "  data:      {}@{} (snapshot {})",
        r.dataset,
        r.dataset_version,
        r.snapshot_id.short()
    );
    println!(
        "  code:      kiln {}{}",
        r.kiln_version,
        r.code_version
            .as_ref()
            .map(|c| format!(", source {c}"))
            .unwrap_or_default()
    );
    println!("  seed:      {}", r.seed);
    println!("  started:   {}", kiln_core::format_micros(r.started_at));
    if let Some(e) = &r.error {
        println!("  error:     {e}");
    }
    if let Some(a) = &r.artifact_id {
        println!("  artifact:  {a}");
    }
    println!("  parameters:");
    for (k, v) in flatten(&r.params) {
        println!("    {k} = {v}");
    }
    if let Some(m) = &r.metrics {
        let e: Option<BTreeMap<String, BTreeMap<String, f64>>> =
            serde_json::from_value(m.clone()).ok();
        if let Some(metrics) = e {
            println!("  validation metrics:");
            let primary = primary(&r).map(|(n, _)| n).unwrap_or_default();
            print!("{}", indent(&indent(&metric_set_table(&metrics, &primary))));
        }
    }
    if let Some(imp) = r.importance.as_ref().and_then(|i| i.as_array()) {
        println!("  feature importance:");
        for pair in imp.iter().take(10) {
            if let (Some(f), Some(s)) = (
                pair.get(0).and_then(|f| f.as_str()),
                pair.get(1).and_then(|s| s.as_f64()),
            ) {
                println!("    {f:<24} {:>5.1}%", s * 100.0);
            }
        }
    }
    if let Some(t) = r.timings.as_ref().and_then(|t| t.as_object()) {
        let parts: Vec<String> = t
            .iter()
            .map(|(k, v)| format!("{k} {:.3}", v.as_f64().unwrap_or(0.0)))
            .collect();
        println!("  timings (s): {}", parts.join(", "));
    }
    Ok(())
}

/// Dotted keys and their values, for parameters.
fn flatten(v: &serde_json::Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            other => {
                out.insert(prefix.to_owned(), other.to_string());
            }
        }
    }
    walk("", v, &mut out);
    out
}

async fn compare(project: &Project, a: RunCompareArgs) -> Result<(), CliError> {
    let (ra, rb) = (get_run(project, a.a).await?, get_run(project, a.b).await?);
    let (pa, pb) = (flatten(&ra.params), flatten(&rb.params));
    let mut keys: Vec<&String> = pa.keys().chain(pb.keys()).collect();
    keys.sort();
    keys.dedup();
    let params: Vec<(String, Option<String>, Option<String>)> = keys
        .into_iter()
        .filter(|k| pa.get(*k) != pb.get(*k))
        .map(|k| (k.clone(), pa.get(k).cloned(), pb.get(k).cloned()))
        .collect();
    let mut rows_meta = Vec::new();
    if ra.snapshot_id != rb.snapshot_id {
        rows_meta.push((
            "data".to_owned(),
            format!("{}@{}", ra.dataset, ra.dataset_version),
            format!("{}@{}", rb.dataset, rb.dataset_version),
        ));
    }
    if ra.code_version != rb.code_version {
        rows_meta.push((
            "code".to_owned(),
            ra.code_version.clone().unwrap_or_else(|| "-".into()),
            rb.code_version.clone().unwrap_or_else(|| "-".into()),
        ));
    }
    let metrics = |r: &Run| -> BTreeMap<String, f64> {
        r.metrics
            .as_ref()
            .and_then(|m| m.get("model"))
            .and_then(|m| serde_json::from_value(m.clone()).ok())
            .unwrap_or_default()
    };
    let (ma, mb) = (metrics(&ra), metrics(&rb));
    let mut names: Vec<&String> = ma.keys().chain(mb.keys()).collect();
    names.sort();
    names.dedup();
    #[derive(serde::Serialize)]
    struct MetricRow {
        metric: String,
        a: Option<f64>,
        b: Option<f64>,
        change: Option<f64>,
        /// Whether b is better than a on this metric.
        b_better: Option<bool>,
    }
    let metric_rows: Vec<MetricRow> = names
        .iter()
        .map(|n| {
            let (x, y) = (ma.get(*n).copied(), mb.get(*n).copied());
            let change = x.zip(y).map(|(x, y)| y - x);
            MetricRow {
                metric: (*n).clone(),
                a: x,
                b: y,
                change,
                b_better: change
                    .filter(|c| *c != 0.0)
                    .map(|c| if lower_is_better(n) { c < 0.0 } else { c > 0.0 }),
            }
        })
        .collect();
    if a.json {
        return print_json(&serde_json::json!({
            "a": ra.id,
            "b": rb.id,
            "parameters": params.iter().map(|(k, x, y)| serde_json::json!({"key": k, "a": x, "b": y})).collect::<Vec<_>>(),
            "context": rows_meta.iter().map(|(k, x, y)| serde_json::json!({"key": k, "a": x, "b": y})).collect::<Vec<_>>(),
            "metrics": metric_rows,
        }));
    }
    let run_a = format!("run {}", ra.id);
    let run_b = format!("run {}", rb.id);
    println!("{run_a} vs {run_b}");
    let mut prows: Vec<Vec<String>> = rows_meta
        .iter()
        .map(|(k, x, y)| vec![k.clone(), x.clone(), y.clone()])
        .collect();
    prows.extend(params.iter().map(|(k, x, y)| {
        vec![
            k.clone(),
            x.clone().unwrap_or_else(|| "-".into()),
            y.clone().unwrap_or_else(|| "-".into()),
        ]
    }));
    if prows.is_empty() {
        println!("  same parameters, data and code");
    } else {
        print!("{}", indent(&table(&["setting", &run_a, &run_b], &prows)));
    }
    println!();
    let mrows: Vec<Vec<String>> = metric_rows
        .iter()
        .map(|m| {
            vec![
                m.metric.clone(),
                num(m.a),
                num(m.b),
                m.change
                    .map(|c| format!("{}{}", if c > 0.0 { "+" } else { "" }, num(Some(c))))
                    .unwrap_or_else(|| "-".into()),
                match m.b_better {
                    Some(true) => format!("{run_b} better"),
                    Some(false) => format!("{run_a} better"),
                    None => String::new(),
                },
            ]
        })
        .collect();
    print!(
        "{}",
        indent(&table(&["metric", &run_a, &run_b, "change", ""], &mrows))
    );
    Ok(())
}
