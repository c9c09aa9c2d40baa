//! `kiln pipeline run|status|runs`: the stages of `[pipeline]`, cached.

use std::sync::Arc;

use clap::{Args, Subcommand};
use kiln_automate::pipeline::{Observer, Pipeline, Stage, StageReport};
use kiln_train::train::Steps;

use crate::GlobalArgs;
use crate::automate::automate_error;
use crate::context::{Project, open};
use crate::monitor::format_time;
use crate::output::{CliError, Spinner, print_json, table};

#[derive(Subcommand, Debug)]
pub enum PipelineCommand {
    /// Run the stages in order; skip those whose inputs are unchanged since they last
    /// succeeded (exit 1 when a stage or gate fails, 2 for a bad [pipeline])
    Run(RunArgs),
    /// Each stage fresh or stale, and why, without running anything
    Status(StatusArgs),
    /// Past runs, newest first, with their stages
    Runs(RunsArgs),
}

#[derive(Args, Debug)]
#[command(
    after_help = "Settings: [pipeline] in kiln.toml (see `kiln init`). A stage is skipped when \
its key (its settings, the kiln.toml sections it reads, its dep files by content, what the \
upstream stages it reads produced, and Kiln's version) equals that of its last success and its \
outputs still exist. A failed gate stops the run before deploy; production is untouched."
)]
pub struct RunArgs {
    /// Run every stage, cached or not
    #[arg(long)]
    pub force: bool,
    /// Print the run as one JSON document
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Print each stage's state and reasons as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RunsArgs {
    /// At most this many runs
    #[arg(long, default_value_t = 20)]
    pub limit: i64,
    /// Print the runs and their stages as JSON
    #[arg(long)]
    pub json: bool,
}

/// The project's pipeline, its settings checked.
fn pipeline(project: &Project) -> Result<Pipeline, CliError> {
    let root = project
        .config_dir
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from("."));
    Pipeline::new(
        project.store.clone(),
        Arc::new(project.config.clone()),
        root.clone(),
        project.scratch(),
        kiln_train::code_version(&root),
    )
    .map_err(automate_error)
}

/// Prints each stage as it ends, with a spinner while one runs.
struct Lines {
    spinner: Spinner,
    quiet: bool,
    width: usize,
}

impl Observer for Lines {
    fn started(&self, stage: &Stage, reasons: &[String]) {
        self.spinner.step(&format!(
            "{} ({}): {}",
            stage.name,
            stage.kind.name(),
            reasons.join("; ")
        ));
    }

    fn finished(&self, r: &StageReport) {
        if self.quiet {
            return;
        }
        let w = self.width;
        let line = match r.state.as_str() {
            "skipped" => format!("{:w$}  skipped (cached)  {}", r.stage, r.summary),
            "ran" => format!(
                "{:w$}  ran {:>6.2} s      {}{}",
                r.stage,
                r.duration_ms as f64 / 1000.0,
                r.summary,
                if r.reasons.is_empty() {
                    String::new()
                } else {
                    format!("  [{}]", r.reasons.join("; "))
                }
            ),
            "not_run" => format!("{:w$}  not run (an earlier stage failed)", r.stage),
            _ => format!(
                "{:w$}  FAILED {:>6.2} s   {}",
                r.stage,
                r.duration_ms as f64 / 1000.0,
                r.message.replace('\n', &format!("\n{:w$}  ", ""))
            ),
        };
        self.spinner.println(&line);
    }

    fn steps(&self) -> Arc<dyn kiln_train::train::Steps> {
        Arc::new(self.spinner.clone())
    }
}

pub async fn run(global: &GlobalArgs, cmd: PipelineCommand) -> Result<(), CliError> {
    let project = open(global).await?;
    let p = pipeline(&project)?;
    match cmd {
        PipelineCommand::Run(a) => {
            let lines = Lines {
                spinner: Spinner::new(global, a.json),
                quiet: global.quiet || a.json,
                width: p
                    .spec
                    .stages
                    .iter()
                    .map(|s| s.name.len())
                    .max()
                    .unwrap_or(5),
            };
            let result = p.run(a.force, &lines).await;
            lines.spinner.finish();
            let report = result.map_err(automate_error)?;
            if a.json {
                print_json(&report)?;
            } else if !global.quiet && report.state == "succeeded" {
                let ran = report.stages.iter().filter(|s| s.state == "ran").count();
                println!(
                    "pipeline `{}` run #{}: {ran} of {} stages ran, {} cached",
                    report.pipeline,
                    report.run_id,
                    report.stages.len(),
                    report.stages.len() - ran
                );
            }
            if report.state == "succeeded" {
                Ok(())
            } else {
                Err(CliError::system(format!(
                    "pipeline `{}` run #{}: {}",
                    report.pipeline, report.run_id, report.message
                )))
            }
        }
        PipelineCommand::Status(a) => {
            let status = p.status().await.map_err(automate_error)?;
            if a.json {
                return print_json(&serde_json::json!({
                    "pipeline": p.spec.name,
                    "derived": p.spec.derived,
                    "stages": status,
                }));
            }
            let rows: Vec<Vec<String>> = status
                .iter()
                .map(|s| {
                    vec![
                        s.stage.clone(),
                        s.kind.clone(),
                        if s.fresh { "fresh" } else { "stale" }.into(),
                        s.last_run.map_or("-".into(), |r| format!("#{r}")),
                        if s.fresh {
                            s.outputs
                                .as_ref()
                                .and_then(|o| {
                                    p.spec.stages.iter().find(|x| x.name == s.stage).map(|x| {
                                        kiln_automate::pipeline::stages::summary(&x.kind, o)
                                    })
                                })
                                .unwrap_or_default()
                        } else {
                            s.reasons.join("; ")
                        },
                    ]
                })
                .collect();
            println!(
                "pipeline `{}`{}",
                p.spec.name,
                if p.spec.derived {
                    " (derived from kiln.toml: no [[pipeline.stages]])"
                } else {
                    ""
                }
            );
            print!(
                "{}",
                table(
                    &["stage", "kind", "state", "last ok", "why / outputs"],
                    &rows
                )
            );
            Ok(())
        }
        PipelineCommand::Runs(a) => {
            let runs = project
                .store
                .meta
                .pipeline_runs(Some(&p.spec.name), a.limit)
                .await?;
            if a.json {
                let mut all = Vec::new();
                for r in &runs {
                    all.push(serde_json::json!({
                        "run": r,
                        "stages": project.store.meta.pipeline_stages(r.id).await?,
                    }));
                }
                return print_json(&all);
            }
            if runs.is_empty() {
                println!("no runs of pipeline `{}`", p.spec.name);
                return Ok(());
            }
            let mut rows = Vec::new();
            for r in &runs {
                let stages = project.store.meta.pipeline_stages(r.id).await?;
                let shown: Vec<String> = stages
                    .iter()
                    .map(|s| format!("{} {}", s.stage.stage, s.state))
                    .collect();
                rows.push(vec![
                    format!("#{}", r.id),
                    format_time(r.started_at),
                    r.state.clone(),
                    shown.join(", "),
                    r.message.clone().unwrap_or_default(),
                ]);
            }
            print!(
                "{}",
                table(&["run", "started", "state", "stages", "message"], &rows)
            );
            Ok(())
        }
    }
}
