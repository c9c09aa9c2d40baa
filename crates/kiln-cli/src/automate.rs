//! `kiln watch` (the retrain controller as its own process) and `kiln retrains list`.

use std::sync::Arc;

use clap::{Args, Subcommand};
use kiln_automate::{AutomateError, Controller, Pass};

use crate::GlobalArgs;
use crate::context::{Project, open};
use crate::monitor::format_time;
use crate::output::{CliError, print_json, table};

#[derive(Args, Debug)]
#[command(
    after_help = "Settings: [automate] in kiln.toml (see `kiln init`). The controller reacts to \
the model's firing alerts and to `schedule`, within `cooldown`, `max_retrains` per `period` and \
`min_labelled_rows`; it appends the labelled production rows to the dataset, trains with \
[train] and [automate.train], and promotes the candidate only if every gate passes. Several \
controllers (replicas, cron jobs) never retrain the same model at once. `kiln serve` runs it \
too when [automate] enabled = true."
)]
pub struct WatchArgs {
    /// One pass, then exit (for cron or a Kubernetes CronJob)
    #[arg(long)]
    pub once: bool,
    /// Retrain now, whatever the triggers say (the guards against thrashing still apply to
    /// later passes)
    #[arg(long, conflicts_with = "once")]
    pub now: bool,
    /// Print each pass as one JSON document per line
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum RetrainsCommand {
    /// Retrainings started by the controller, newest first: trigger, gates, outcome
    List(RetrainsListArgs),
}

#[derive(Args, Debug)]
pub struct RetrainsListArgs {
    /// Only this model's retrainings
    #[arg(long)]
    pub model: Option<String>,
    /// At most this many
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    #[arg(long)]
    pub json: bool,
}

pub(crate) fn automate_error(e: AutomateError) -> CliError {
    match e {
        AutomateError::Input(m) => CliError::input(m),
        AutomateError::Store(s) => CliError::from_store(s),
        AutomateError::Data(d) => d.into(),
        AutomateError::Train(t) => t.into(),
        AutomateError::Io(e) => CliError::system(e.to_string()),
    }
}

/// The project's controller, its settings checked.
pub fn controller(project: &Project) -> Result<Controller, CliError> {
    let code_dir = project
        .config_dir
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from("."));
    Controller::new(
        project.store.clone(),
        Arc::new(project.config.clone()),
        project.scratch(),
        kiln_train::code_version(&code_dir),
    )
    .map_err(automate_error)
}

fn print_pass(pass: &Pass, json: bool) -> Result<(), CliError> {
    if json {
        return print_json(pass);
    }
    match pass {
        Pass::Idle { reason } => println!("idle: {reason}"),
        Pass::Retrained { retrain: r } => println!(
            "retrain #{} ({}): {}{}",
            r.id,
            r.start.trigger,
            r.state,
            r.message
                .as_deref()
                .map(|m| format!(" — {m}"))
                .unwrap_or_default()
        ),
    }
    Ok(())
}

pub async fn watch(global: &GlobalArgs, args: WatchArgs) -> Result<(), CliError> {
    let project = open(global).await?;
    let c = controller(&project)?;
    if args.now {
        let model = c.model().map_err(automate_error)?;
        let now = project
            .store
            .meta
            .latest_prediction_time(&model)
            .await?
            .unwrap_or_else(kiln_core::now_micros);
        let cursor = project
            .store
            .meta
            .retrains(Some(&model), 1)
            .await?
            .first()
            .map_or(0, |r| r.feedback_cursor);
        let pass = match c
            .retrain("manual", now, cursor)
            .await
            .map_err(automate_error)?
        {
            Some(r) => Pass::Retrained {
                retrain: Box::new(r),
            },
            None => Pass::Idle {
                reason: "another controller is retraining this model".into(),
            },
        };
        return print_pass(&pass, args.json);
    }
    if args.once {
        let pass = c.tick().await.map_err(automate_error)?;
        return print_pass(&pass, args.json);
    }
    if !global.quiet && !args.json {
        eprintln!(
            "kiln watch: looking after `{}` every {} ms; Ctrl-C stops",
            c.model().map_err(automate_error)?,
            c.settings.poll_ms
        );
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        kiln_serve::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let mut failed = None;
    c.run_with(stop_rx, |pass| {
        let printed = match pass {
            Ok(p @ Pass::Retrained { .. }) => print_pass(&p, args.json),
            Ok(p) if args.json => print_pass(&p, true),
            Ok(_) => Ok(()),
            Err(e) => {
                crate::output::print_error(&automate_error(e));
                Ok(())
            }
        };
        printed.map_err(|e| failed = Some(e)).is_ok()
    })
    .await;
    failed.map_or(Ok(()), Err)
}

pub async fn retrains(global: &GlobalArgs, cmd: RetrainsCommand) -> Result<(), CliError> {
    let project = open(global).await?;
    let RetrainsCommand::List(a) = cmd;
    let list = project
        .store
        .meta
        .retrains(a.model.as_deref(), a.limit)
        .await?;
    if a.json {
        return print_json(&list);
    }
    if list.is_empty() {
        println!("no retrainings");
        return Ok(());
    }
    let v = |x: Option<i64>| x.map_or("-".to_owned(), |v| v.to_string());
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.start.model.clone(),
                r.start.trigger.clone(),
                format_time(r.start.event_time),
                r.state.clone(),
                r.labelled_rows.to_string(),
                v(r.start.champion_version),
                v(r.candidate_version),
                r.message.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "id",
                "model",
                "trigger",
                "at",
                "state",
                "new rows",
                "champion",
                "candidate",
                "outcome"
            ],
            &rows
        )
    );
    Ok(())
}
