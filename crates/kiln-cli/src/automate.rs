//! `kiln watch` (the retrain controller as its own process), `kiln retrains list` and
//! `kiln rollouts` (shadow and canary rollouts: list, start by hand, stop).

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
[train] and [automate.train] (or runs [pipeline] with `pipeline = true`), and promotes the \
candidate only if every gate passes, at once or through a shadow or canary rollout \
(`strategy`, [automate.rollout]) that each later pass judges on live labels. Of several \
controllers sharing a database (server replicas, cron jobs), the one holding the model's \
lease acts and the others stand by; a stopped holder hands it on at once, a crashed one when \
its lease expires (15 s). `kiln serve` runs it too when [automate] enabled = true."
)]
pub struct WatchArgs {
    /// One pass, then exit (for cron or a Kubernetes CronJob); standby if another controller
    /// holds the lease
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
    /// Print them as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum RolloutsCommand {
    /// Rollouts, newest first: strategy, challenger, champion, state and the numbers read
    List(RolloutsListArgs),
    /// Put a version on a shadow or canary rollout against production; the controller
    /// (`kiln serve` with [automate] enabled, or `kiln watch`) judges it by [automate.rollout]
    Start(RolloutStartArgs),
    /// End the running rollout of a model: its alias is removed, production stays
    Stop(RolloutStopArgs),
}

#[derive(Args, Debug)]
pub struct RolloutsListArgs {
    /// Only this model's rollouts
    #[arg(long)]
    pub model: Option<String>,
    /// Only running ones
    #[arg(long)]
    pub running: bool,
    /// At most this many
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    /// Print them as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RolloutStartArgs {
    /// The challenger, NAME@VERSION
    pub target: String,
    /// shadow (scores a copy of production's traffic, never answers) or canary (answers a
    /// share of the requests, sticky by route key)
    #[arg(long)]
    pub strategy: String,
    /// Canary: the share of requests it answers (default: [automate.rollout] share)
    #[arg(long)]
    pub share: Option<f64>,
    /// Why (recorded with the alias move)
    #[arg(long)]
    pub reason: String,
    /// Print the rollout as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RolloutStopArgs {
    pub model: String,
    /// Why (recorded with the alias removal)
    #[arg(long)]
    pub reason: String,
    /// Print the ended rollout as JSON
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
        code_dir,
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
        Pass::Judged { rollout: r } => println!("{}", rollout_line(r)),
        Pass::Standby { holder } => {
            println!("standby: {holder} holds the controller lease and acts; this one waits")
        }
    }
    Ok(())
}

/// One line about a rollout: what it is and where it stands.
pub fn rollout_line(r: &kiln_store::Rollout) -> String {
    let s = &r.start;
    let how = match s.share {
        Some(share) => format!("{} {:.0}%", s.strategy, share * 100.0),
        None => s.strategy.clone(),
    };
    let status = match (&r.message, &r.decision) {
        (Some(m), _) => format!("{} — {m}", r.state.replace('_', " ")),
        (None, Some(d)) => format!(
            "{}: {} + {} labelled rows of {}",
            r.state, d["n_champion"], d["n_challenger"], d["samples"]
        ),
        (None, None) => r.state.clone(),
    };
    format!(
        "rollout #{} {}@{} ({how}) vs @{}: {status}",
        r.id, s.model, s.challenger_version, s.champion_version
    )
}

pub async fn rollouts(global: &GlobalArgs, cmd: RolloutsCommand) -> Result<(), CliError> {
    let project = open(global).await?;
    let store = &project.store;
    match cmd {
        RolloutsCommand::List(a) => {
            let list = store
                .meta
                .rollouts(a.model.as_deref(), a.running, a.limit)
                .await?;
            if a.json {
                return print_json(&list);
            }
            if list.is_empty() {
                println!("no rollouts");
            }
            for r in &list {
                println!("{}", rollout_line(r));
            }
            Ok(())
        }
        RolloutsCommand::Start(a) => {
            let strategy = match kiln_automate::Strategy::parse(&a.strategy) {
                Some(s) if s != kiln_automate::Strategy::Direct => s,
                _ => {
                    return Err(CliError::input(format!(
                        "--strategy {}: use shadow or canary (a direct deploy is `kiln models alias set production ...`)",
                        a.strategy
                    )));
                }
            };
            let settings = kiln_automate::AutomateConfig::from_table(&project.config.automate)
                .map_err(automate_error)?;
            let share = a.share.unwrap_or(settings.rollout.share);
            if !(share > 0.0 && share < 1.0) {
                return Err(CliError::input(format!(
                    "--share {share}: a share of requests in (0, 1), e.g. 0.1"
                )));
            }
            if a.reason.trim().is_empty() {
                return Err(CliError::input("--reason must say why (it is recorded)"));
            }
            let r: kiln_train::registry::ModelRef = a
                .target
                .parse()
                .map_err(|e: kiln_train::TrainError| CliError::input(e.to_string()))?;
            let v = kiln_train::registry::resolve(store, &r).await?;
            let now = store.meta.latest_prediction_time(&v.model).await?;
            let started = kiln_automate::rollout::start(
                store,
                &v.model,
                v.version,
                &settings.alias,
                strategy,
                share,
                None,
                now,
                &kiln_automate::rollout::Actor {
                    name: &crate::models::actor(),
                    reason: &a.reason,
                },
            )
            .await
            .map_err(automate_error)?;
            if a.json {
                return print_json(&started);
            }
            println!("{}", rollout_line(&started));
            Ok(())
        }
        RolloutsCommand::Stop(a) => {
            let Some(r) = store
                .meta
                .rollouts(Some(&a.model), true, 1)
                .await?
                .into_iter()
                .next()
            else {
                return Err(CliError::input(format!(
                    "`{}` has no running rollout\nhint: kiln rollouts list --model {}",
                    a.model, a.model
                )));
            };
            kiln_automate::rollout::end(
                store,
                &r,
                "stopped",
                r.decision.as_ref(),
                &a.reason,
                &crate::models::actor(),
            )
            .await
            .map_err(automate_error)?;
            let ended = store
                .meta
                .rollouts(Some(&a.model), false, 20)
                .await?
                .into_iter()
                .find(|x| x.id == r.id);
            match ended {
                Some(e) if a.json => print_json(&e),
                Some(e) => {
                    println!("{}", rollout_line(&e));
                    Ok(())
                }
                None => Ok(()),
            }
        }
    }
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
        // One pass as one of the controllers: standby when another process holds the lease.
        let pass = c.leased_tick().await;
        c.release().await;
        return print_pass(&pass.map_err(automate_error)?, args.json);
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
    let mut standby: Option<String> = None;
    c.run_with(stop_rx, |pass| {
        // Standby is printed when the holder changes, not at every pass.
        let pass = match pass {
            Ok(Pass::Standby { holder }) if standby.as_ref() == Some(&holder) && !args.json => {
                return true;
            }
            Ok(Pass::Standby { holder }) => {
                standby = Some(holder.clone());
                Ok(Pass::Standby { holder })
            }
            other => {
                standby = None;
                other
            }
        };
        let printed = match pass {
            Ok(p @ Pass::Standby { .. }) => print_pass(&p, args.json),
            Ok(p @ Pass::Retrained { .. }) => print_pass(&p, args.json),
            Ok(Pass::Judged { rollout }) if rollout.state != "running" || args.json => {
                print_pass(&Pass::Judged { rollout }, args.json)
            }
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
