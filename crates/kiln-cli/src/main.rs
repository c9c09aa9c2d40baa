//! The `kiln` command: parses arguments, resolves configuration, shows progress and results,
//! and turns library errors into messages with a hint and an exit code. All the work happens in
//! the library crates; this crate only wires them to a terminal.
//!
//! Exit codes: 0 success, 1 failure of the system (store, disk), 2 bad input (file, flags,
//! config), which is what scripts and CI check.

mod automate;
mod context;
mod data;
mod doctor;
mod init;
mod models;
mod monitor;
mod output;
mod pipeline;
mod quickstart;
mod replay;
mod serve;
mod train;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Ingest allocates and frees large column buffers batch after batch; glibc's allocator spent
/// about 6% of the CPU of a CSV ingest consolidating and returning them, mimalloc a fraction.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Kiln: take a tabular model from a notebook to production and keep it healthy there.
///
/// Data is ingested, validated, profiled and versioned as immutable snapshots; every later stage
/// (training, serving, monitoring) names the exact snapshot it used.
#[derive(Parser, Debug)]
#[command(name = "kiln", version, propagate_version = true, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every command accepts.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Kiln's home folder (database, artifacts, scratch) [default: from kiln.toml, else ./.kiln]
    #[arg(long, global = true, env = "KILN_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Metadata database URL: sqlite://PATH or postgres://USER:PASS@HOST/DB [default: HOME/kiln.db]
    #[arg(long, global = true, env = "KILN_DB", value_name = "URL")]
    pub db: Option<String>,
    /// Artifact store: a folder, file:// URL, or s3://BUCKET/PREFIX (credentials from
    /// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, region from AWS_REGION; for an
    /// S3-compatible server AWS_ENDPOINT_URL and AWS_ALLOW_HTTP=true, or [store.s3] in
    /// kiln.toml) [default: HOME/artifacts]
    #[arg(long, global = true, env = "KILN_ARTIFACTS", value_name = "URL")]
    pub artifacts: Option<String>,
    /// Configuration file [default: kiln.toml in this folder or the nearest parent]
    #[arg(long, global = true, env = "KILN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log format on stderr
    #[arg(long, global = true, env = "KILN_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Print only errors (and the --json document)
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More log output (-v info, -vv debug)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a project: a commented kiln.toml, the home folder and an admin token
    Init(init::InitArgs),
    /// Version, validate, profile and compare data
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Train a model on a dataset snapshot: a recorded run, evaluated against baselines
    Train(train::TrainArgs),
    /// List, inspect and compare training runs
    #[command(subcommand)]
    Runs(train::RunsCommand),
    /// The model registry: versions, aliases, rollbacks, model cards, imported ONNX models
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Score a CSV or Parquet file with a registered model (validated like an ingest)
    Predict(models::PredictArgs),
    /// Serve models over HTTP: JSON API, Open Inference Protocol v2, feedback, metrics, live
    /// monitoring and its dashboard
    Serve(serve::ServeArgs),
    /// Monitor a stored range of the prediction log: drift, realized and estimated
    /// performance, alert rules, per window; `kiln monitor report` writes it as HTML or JSON
    Monitor(monitor::MonitorArgs),
    /// Alerts recorded by the server's monitoring
    #[command(subcommand)]
    Alerts(monitor::AlertsCommand),
    /// The prediction log's retention: compact old days into Parquet archives in the artifact
    /// store (still read by `kiln monitor`), delete the oldest; list the archives
    #[command(subcommand)]
    Log(monitor::LogCommand),
    /// Send a time-ordered dataset to a running server as live traffic in simulated time,
    /// with labels as feedback after a delay
    Replay(replay::ReplayArgs),
    /// Run the retrain controller: retrain on alerts or a schedule, gate, promote or roll out;
    /// judge running rollouts
    Watch(automate::WatchArgs),
    /// Retrainings recorded by the controller: triggers, gates, outcomes
    #[command(subcommand)]
    Retrains(automate::RetrainsCommand),
    /// The stages of [pipeline] (ingest, validate, train, gate, deploy, your own commands),
    /// each skipped when its inputs are unchanged; what is stale and why; past runs
    #[command(subcommand)]
    Pipeline(pipeline::PipelineCommand),
    /// Shadow and canary rollouts: list them, start one by hand, stop one
    #[command(subcommand)]
    Rollouts(automate::RolloutsCommand),
    /// Check the whole store: every artifact's hash, every reference between datasets, runs,
    /// models, aliases and logs, the schema version; exit 1 when something needs repair
    Doctor(doctor::DoctorArgs),
    /// Run the reference deployment end to end in a fresh home (bike-rental demand): train on
    /// 2011, serve, replay 2012 with automatic retraining, compare with the frozen model
    Quickstart(quickstart::QuickstartArgs),
}

fn main() -> ExitCode {
    // `kiln ... | head` closes the pipe early: end quietly like other command-line tools
    // instead of panicking on the next write.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    if matches!(cli.command, Command::Serve(_)) {
        serve::prepare_process();
    }
    let file_format = context::peek_log_format(&cli.global);
    // The quickstart tells its own story (alerts, retrainings); its server's warnings about
    // them would say it twice. -v brings them back.
    let mut log_args = cli.global.clone();
    if matches!(cli.command, Command::Quickstart(_)) && cli.global.verbose == 0 {
        log_args.quiet = true;
    }
    let _log_guard = output::init_logging(
        &log_args,
        file_format,
        matches!(cli.command, Command::Serve(_)),
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Init(args) => init::run(&cli.global, args),
            Command::Data(cmd) => data::run(&cli.global, cmd).await,
            Command::Train(args) => train::run_train(&cli.global, args).await,
            Command::Runs(cmd) => train::run_runs(&cli.global, cmd).await,
            Command::Models(cmd) => models::run(&cli.global, cmd).await,
            Command::Predict(args) => models::predict(&cli.global, args).await,
            Command::Serve(args) => serve::run(&cli.global, args).await,
            Command::Monitor(args) => monitor::run(&cli.global, args).await,
            Command::Alerts(cmd) => monitor::alerts(&cli.global, cmd).await,
            Command::Log(cmd) => monitor::log(&cli.global, cmd).await,
            Command::Replay(args) => replay::run(&cli.global, args).await,
            Command::Watch(args) => automate::watch(&cli.global, args).await,
            Command::Retrains(cmd) => automate::retrains(&cli.global, cmd).await,
            Command::Pipeline(cmd) => pipeline::run(&cli.global, cmd).await,
            Command::Rollouts(cmd) => automate::rollouts(&cli.global, cmd).await,
            Command::Quickstart(args) => quickstart::run(&cli.global, args).await,
            Command::Doctor(args) => doctor::run(&cli.global, args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::print_error(&e);
            ExitCode::from(e.exit_code())
        }
    }
}
