//! `kiln models ...` (the registry) and `kiln predict` (batch scoring).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use kiln_store::{Expect, ModelVersion};
use kiln_train::card::{self, CardInput};
use kiln_train::registry::{ModelRef, Selector, load, resolve};
use serde::Serialize;

use crate::GlobalArgs;
use crate::context::{Project, open};
use crate::output::{Bar, CliError, count, print_json, table};
use crate::train::{metrics_table, task_name};

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// Registered models with their latest version and aliases
    List(ListArgs),
    /// One version: lineage, task, inputs, metrics against the baselines, aliases
    Show(ShowArgs),
    /// Register the model a training run produced as a new version of NAME
    Register(RegisterArgs),
    /// Point aliases (production, staging, ...) at versions; every move is recorded
    #[command(subcommand)]
    Alias(AliasCommand),
    /// Move an alias back to the version it pointed to before its last move
    Rollback(RollbackArgs),
    /// Write the model card of a version: Markdown, or self-contained HTML (-o FILE.html)
    Card(CardArgs),
    /// Import a model trained elsewhere (ONNX), evaluate it on a dataset and register it
    ///
    /// The schema file names the model's inputs in the order of its [N, F] float input, and
    /// how each is encoded:
    ///
    ///   {"inputs": [
    ///     {"name": "season", "type": "categorical", "categories": ["spring", "summer", "fall", "winter"]},
    ///     {"name": "temp", "type": "numeric"}]}
    ///
    /// A categorical value becomes its index in `categories` (unknown → missing); numeric
    /// values pass as they are; booleans as 0/1. The model is evaluated on the dataset's
    /// validation split (as `kiln train` would split it) against the same baselines, and gets
    /// a model card.
    #[command(verbatim_doc_comment)]
    Import(ImportArgs),
}

#[derive(Subcommand, Debug)]
pub enum AliasCommand {
    /// Point ALIAS of a model at a version
    Set(AliasSetArgs),
    /// Every move of every alias of a model, with time, reason and actor
    History(HistoryArgs),
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// NAME, NAME@VERSION or NAME@ALIAS
    pub reference: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RegisterArgs {
    /// The run id (from `kiln train` or `kiln runs list`)
    pub run: i64,
    /// Model name (created on its first version)
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct AliasSetArgs {
    /// Alias name, e.g. production or staging
    pub alias: String,
    /// The version: NAME@VERSION (or NAME@OTHER_ALIAS)
    pub target: String,
    /// Why the alias moves (recorded in the history)
    #[arg(long)]
    pub reason: String,
    /// Move only if the alias is still at this revision (as shown by `alias history`);
    /// 0 means it must not exist yet. Without it, the move applies to whatever is current.
    #[arg(long, value_name = "REVISION")]
    pub expect_revision: Option<i64>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Model name
    pub name: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RollbackArgs {
    /// Model name
    pub name: String,
    /// The alias to move back
    pub alias: String,
    /// Why (recorded in the history)
    #[arg(long, default_value = "rollback")]
    pub reason: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CardArgs {
    /// NAME, NAME@VERSION or NAME@ALIAS
    pub reference: String,
    /// Output file: .html for self-contained HTML, anything else Markdown [default: Markdown on
    /// stdout]
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The .onnx file (scikit-learn via skl2onnx with zipmap=False for classifiers, or
    /// LightGBM/XGBoost via onnxmltools)
    pub file: PathBuf,
    /// Model name to register under
    #[arg(long)]
    pub name: String,
    /// JSON file naming the model's inputs, in order (see `kiln models import --help`)
    #[arg(long)]
    pub schema: PathBuf,
    /// Dataset to evaluate on: NAME or NAME@VERSION [default: [train] dataset, else the only one]
    #[arg(long, short = 'd')]
    pub dataset: Option<String>,
    /// Column the model predicts [default: the dataset's target]
    #[arg(long)]
    pub target: Option<String>,
    /// Override a split setting, e.g. --set split.cutoff=2012-07-01
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// The model: NAME (latest version), NAME@VERSION or NAME@ALIAS
    #[arg(long, short = 'm')]
    pub model: String,
    /// Rows to score: .csv, .csv.gz, .tsv or .parquet
    #[arg(long, short = 'i')]
    pub input: PathBuf,
    /// Output file: .parquet, else CSV (written atomically)
    #[arg(long, short = 'o')]
    pub output: PathBuf,
    #[arg(long)]
    pub json: bool,
}

/// Who moves aliases: `KILN_ACTOR`, else the login name (`USER`, `LOGNAME`).
pub fn actor() -> String {
    std::env::var("KILN_ACTOR")
        .or_else(|_| std::env::var("USER"))
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

fn parse_model_ref(s: &str) -> Result<ModelRef, CliError> {
    Ok(s.parse::<ModelRef>()?)
}

fn check_name(what: &'static str, name: &str) -> Result<(), CliError> {
    kiln_core::names::validate_name(what, name).map_err(|e| CliError::input(e.to_string()))
}

pub async fn run(global: &GlobalArgs, cmd: ModelsCommand) -> Result<(), CliError> {
    let project = open(global).await?;
    match cmd {
        ModelsCommand::List(a) => list(&project, a).await,
        ModelsCommand::Show(a) => show(&project, a).await,
        ModelsCommand::Register(a) => register(&project, a).await,
        ModelsCommand::Alias(AliasCommand::Set(a)) => alias_set(&project, a).await,
        ModelsCommand::Alias(AliasCommand::History(a)) => history(&project, a).await,
        ModelsCommand::Rollback(a) => rollback(&project, a).await,
        ModelsCommand::Card(a) => card_cmd(&project, a).await,
        ModelsCommand::Import(a) => import(global, &project, a).await,
    }
}

/// The version a reference names, its verified artifact, and the aliases pointing at it.
async fn open_version(
    project: &Project,
    reference: &str,
) -> Result<
    (
        ModelVersion,
        kiln_model::artifact::ModelArtifact,
        Vec<String>,
    ),
    CliError,
> {
    let r = parse_model_ref(reference)?;
    let v = resolve(&project.store, &r).await?;
    let artifact = load(&project.store, &v).await?;
    let aliases = project
        .store
        .meta
        .aliases(&v.model)
        .await?
        .into_iter()
        .filter(|x| x.version == v.version)
        .map(|x| x.alias)
        .collect();
    Ok((v, artifact, aliases))
}

async fn list(project: &Project, a: ListArgs) -> Result<(), CliError> {
    let meta = &project.store.meta;
    #[derive(Serialize)]
    struct Entry {
        name: String,
        versions: usize,
        latest: Option<ModelVersion>,
        aliases: Vec<kiln_store::Alias>,
    }
    let mut out = Vec::new();
    for name in meta.model_names().await? {
        let versions = meta.model_versions(&name).await?;
        out.push(Entry {
            versions: versions.len(),
            latest: versions.last().cloned(),
            aliases: meta.aliases(&name).await?,
            name,
        });
    }
    if a.json {
        return print_json(&out);
    }
    if out.is_empty() {
        println!("no models yet: kiln train --register NAME");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = out
        .iter()
        .map(|e| {
            vec![
                e.name.clone(),
                e.versions.to_string(),
                e.latest
                    .as_ref()
                    .map(|v| kiln_core::format_micros(v.created_at))
                    .unwrap_or_default(),
                e.aliases
                    .iter()
                    .map(|a| format!("{}→@{}", a.alias, a.version))
                    .collect::<Vec<_>>()
                    .join(" "),
            ]
        })
        .collect();
    print!(
        "{}",
        table(&["model", "versions", "latest created", "aliases"], &rows)
    );
    Ok(())
}

async fn show(project: &Project, a: ShowArgs) -> Result<(), CliError> {
    let (v, artifact, aliases) = open_version(project, &a.reference).await?;
    if a.json {
        return print_json(&serde_json::json!({
            "version": v,
            "aliases": aliases,
            "task": artifact.task,
            "target": artifact.target,
            "classes": artifact.classes,
            "inputs": artifact.schema,
            "lineage": artifact.lineage,
            "evaluation": artifact.evaluation,
        }));
    }
    println!(
        "{}@{}{}  artifact {}",
        v.model,
        v.version,
        if aliases.is_empty() {
            String::new()
        } else {
            format!("  [{}]", aliases.join(", "))
        },
        v.artifact_id.short()
    );
    let l = &artifact.lineage;
    println!(
        "  task:     {} of `{}`",
        task_name(&artifact.task),
        artifact.target
    );
    println!(
        "  data:     {}@{} (snapshot {}), {}",
        l.dataset,
        l.dataset_version,
        &l.snapshot_id.get(..12).unwrap_or(&l.snapshot_id),
        artifact.evaluation.data.split
    );
    println!(
        "  run:      {}  (kiln {}{}, seed {})",
        v.run_id.as_deref().unwrap_or("-"),
        l.kiln_version,
        l.code_version
            .as_ref()
            .map(|c| format!(", source {c}"))
            .unwrap_or_default(),
        l.seed
    );
    println!(
        "  inputs:   {}",
        artifact
            .schema
            .columns
            .iter()
            .map(|c| format!("{} ({})", c.name, c.ftype))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  created:  {}", kiln_core::format_micros(v.created_at));
    let m = metrics_table(&artifact.evaluation);
    for line in m.lines() {
        println!("  {line}");
    }
    Ok(())
}

async fn register(project: &Project, a: RegisterArgs) -> Result<(), CliError> {
    check_name("model", &a.name)?;
    let run = crate::train::get_run(project, a.run).await?;
    let Some(artifact) = run.artifact_id else {
        return Err(CliError::input(format!(
            "run {} is {} and produced no model{}",
            run.id,
            run.status,
            run.error.map(|e| format!(" ({e})")).unwrap_or_default()
        )));
    };
    let v = project
        .store
        .meta
        .add_model_version(&a.name, &artifact, Some(&run.id.to_string()))
        .await?;
    if a.json {
        return print_json(&v);
    }
    println!(
        "registered run {} as {}@{} (artifact {})",
        run.id,
        v.model,
        v.version,
        v.artifact_id.short()
    );
    Ok(())
}

async fn alias_set(project: &Project, a: AliasSetArgs) -> Result<(), CliError> {
    check_name("alias", &a.alias)?;
    let r = parse_model_ref(&a.target)?;
    if r.selector == Selector::Latest {
        return Err(CliError::input(format!(
            "`{}` names no version: use NAME@VERSION (e.g. {}@1)",
            a.target, r.name
        )));
    }
    if a.reason.trim().is_empty() {
        return Err(CliError::input(
            "--reason must say why the alias moves (it is recorded)",
        ));
    }
    let v = resolve(&project.store, &r).await?;
    let expect = match a.expect_revision {
        None => Expect::Any,
        Some(0) => Expect::Absent,
        Some(n) => Expect::Revision(n),
    };
    let before = project.store.meta.alias(&v.model, &a.alias).await?;
    if let Some(b) = before.as_ref().filter(|b| b.version == v.version)
        && a.expect_revision.is_none_or(|r| r == b.revision)
    {
        // Nothing moves, so nothing is recorded (a rollback must go to a real earlier target).
        if a.json {
            return print_json(b);
        }
        println!(
            "{}@{} already points to version {} (revision {}); nothing changed",
            b.model, b.alias, b.version, b.revision
        );
        return Ok(());
    }
    let moved = project
        .store
        .meta
        .set_alias(&v.model, &a.alias, v.version, expect, &a.reason, &actor())
        .await?;
    if a.json {
        return print_json(&moved);
    }
    println!(
        "{}@{} → version {}{} (revision {})",
        moved.model,
        moved.alias,
        moved.version,
        before
            .map(|b| format!(", was {}", b.version))
            .unwrap_or_default(),
        moved.revision
    );
    Ok(())
}

async fn history(project: &Project, a: HistoryArgs) -> Result<(), CliError> {
    check_name("model", &a.name)?;
    if project.store.meta.model_versions(&a.name).await?.is_empty() {
        return Err(CliError::input(format!(
            "no model named `{}`\nhint: `kiln models list` lists models",
            a.name
        )));
    }
    let moves = project.store.meta.alias_history(&a.name).await?;
    if a.json {
        return print_json(&moves);
    }
    if moves.is_empty() {
        println!("no alias of `{}` has moved yet", a.name);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = moves
        .iter()
        .map(|m| {
            vec![
                kiln_core::format_micros(m.at),
                m.alias.clone(),
                m.revision.to_string(),
                m.from_version
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into()),
                m.to_version
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "(removed)".into()),
                m.actor.clone(),
                m.reason.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &["at", "alias", "revision", "from", "to", "actor", "reason"],
            &rows
        )
    );
    Ok(())
}

async fn rollback(project: &Project, a: RollbackArgs) -> Result<(), CliError> {
    check_name("model", &a.name)?;
    check_name("alias", &a.alias)?;
    let before = project.store.meta.alias(&a.name, &a.alias).await?;
    let moved = project
        .store
        .meta
        .rollback_alias(&a.name, &a.alias, &a.reason, &actor())
        .await?;
    if a.json {
        return print_json(&moved);
    }
    println!(
        "{}@{} rolled back to version {}{} (revision {})",
        moved.model,
        moved.alias,
        moved.version,
        before
            .map(|b| format!(" from {}", b.version))
            .unwrap_or_default(),
        moved.revision
    );
    Ok(())
}

async fn card_cmd(project: &Project, a: CardArgs) -> Result<(), CliError> {
    let (v, artifact, aliases) = open_version(project, &a.reference).await?;
    let input = CardInput {
        version: &v,
        artifact: &artifact,
        aliases: &aliases,
    };
    match &a.output {
        None => {
            print!("{}", card::markdown(&input));
            Ok(())
        }
        Some(path) => {
            let html = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"));
            let text = if html {
                card::html(&input)
            } else {
                card::markdown(&input)
            };
            write_atomic(path, text.as_bytes())?;
            println!(
                "wrote the card of {}@{} to {}",
                v.model,
                v.version,
                path.display()
            );
            Ok(())
        }
    }
}

/// Writes a file whole or not at all.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<(), CliError> {
    use std::io::Write;
    let fail =
        |e: std::io::Error| CliError::system(format!("cannot write {}: {e}", path.display()));
    let mut tmp = kiln_data::temp_file_beside(path, ".kiln-").map_err(fail)?;
    tmp.write_all(bytes).map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

pub async fn predict(global: &GlobalArgs, a: PredictArgs) -> Result<(), CliError> {
    let project = open(global).await?;
    let r = parse_model_ref(&a.model)?;
    let v = resolve(&project.store, &r).await?;
    let artifact = load(&project.store, &v).await?;
    let outcome = kiln_train::predict::predict_file(
        &project.config,
        &project.scratch(),
        &artifact,
        &a.input,
        &a.output,
        Bar::for_ingest(global, a.json),
    )
    .await?;
    if a.json {
        return print_json(&serde_json::json!({
            "model": format!("{}@{}", v.model, v.version),
            "outcome": outcome,
        }));
    }
    if global.quiet {
        return Ok(());
    }
    println!(
        "scored {} rows with {}@{} → {}  ({:.2} s: validate {:.2} s, score {:.2} s, {} rows/s)",
        count(outcome.rows),
        v.model,
        v.version,
        outcome.output.display(),
        outcome.total_seconds,
        outcome.check_seconds,
        outcome.score_seconds,
        count((outcome.rows as f64 / outcome.score_seconds.max(1e-9)) as u64)
    );
    for (col, n) in &outcome.unknown {
        println!(
            "  note: {} rows have a `{col}` value never seen in training (scored as missing)",
            count(*n)
        );
    }
    Ok(())
}

async fn import(global: &GlobalArgs, project: &Project, a: ImportArgs) -> Result<(), CliError> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| CliError::input(format!("cannot read {}: {e}", p.display())))
    };
    let onnx = read(&a.file)?;
    let schema_text = String::from_utf8(read(&a.schema)?)
        .map_err(|_| CliError::input(format!("{}: not UTF-8 text", a.schema.display())))?;
    let schema = kiln_train::import::ImportSchema::parse(&schema_text, &a.schema)?;
    let mut overrides = a.set.clone();
    if let Some(d) = &a.dataset {
        overrides.push(format!("dataset={}", crate::train::toml_string(d)));
    }
    if let Some(t) = &a.target {
        overrides.push(format!("target={}", crate::train::toml_string(t)));
    }
    let spec = kiln_train::spec::TrainSpec::resolve(&project.config.train, &overrides)?;
    let spinner = crate::output::Spinner::new(global, a.json);
    let result = kiln_train::import::import_onnx(
        &project.store,
        &project.config,
        &project.scratch(),
        &spec,
        kiln_train::import::ImportRequest {
            onnx,
            file_name: a
                .file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            schema,
            name: a.name.clone(),
        },
        std::sync::Arc::new(spinner.clone()),
    )
    .await;
    spinner.finish();
    let outcome = result?;
    if a.json {
        return print_json(&outcome);
    }
    if !global.quiet {
        crate::train::print_outcome(&outcome);
    }
    Ok(())
}
