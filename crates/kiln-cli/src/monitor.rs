//! `kiln monitor` (monitoring over a stored range of the prediction log, and its report) and
//! `kiln alerts` (the alerts the server recorded).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use kiln_core::config::RetentionConfig;
use kiln_train::registry::{ModelRef, Selector, load, resolve};
use kiln_watch::WatchError;
use kiln_watch::archive::{Retention, apply_retention};
use kiln_watch::range::{RangeRequest, RangeWindows, monitor_range};
use kiln_watch::report::MonitorReport;
use kiln_watch::rules::{MonitorConfig, parse_duration};

use crate::GlobalArgs;
use crate::context::{Project, open};
use crate::models::write_atomic;
use crate::output::{CliError, count, mebibytes, print_json, table};

impl From<WatchError> for CliError {
    fn from(e: WatchError) -> Self {
        let code = if e.is_input_error() { 2 } else { 1 };
        Self {
            code,
            message: e.to_string(),
        }
    }
}

/// Which model and which stretch of its prediction log.
#[derive(Args, Debug)]
pub struct RangeArgs {
    /// The model: NAME (its production alias, else its latest version), NAME@VERSION or
    /// NAME@ALIAS
    #[arg(long, value_name = "MODEL")]
    pub model: String,
    /// Start of the range, inclusive: a date (2012-01-01) or time (2012-01-01 06:00:00), UTC
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// End of the range, exclusive
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Cut the range into event-time windows of this length (30m, 1h, 1d, 7d)
    #[arg(long, value_name = "DURATION", conflicts_with = "every")]
    pub window: Option<String>,
    /// Cut the range into windows of this many predictions
    #[arg(long, value_name = "N")]
    pub every: Option<u64>,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

/// `kiln monitor`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct MonitorArgs {
    #[command(subcommand)]
    pub command: Option<MonitorCommand>,
    #[command(flatten)]
    pub range: Option<RangeArgs>,
}

#[derive(Subcommand, Debug)]
pub enum MonitorCommand {
    /// Write the monitoring report of a range: self-contained HTML (--html) and/or JSON
    Report(ReportArgs),
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    #[command(flatten)]
    pub range: RangeArgs,
    /// Write the report as one self-contained HTML file (opens without a network)
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum AlertsCommand {
    /// Alerts fired by `kiln serve`'s monitoring, newest first, with when they resolved
    List(AlertsListArgs),
}

#[derive(Args, Debug)]
pub struct AlertsListArgs {
    /// Only this model's alerts
    #[arg(long)]
    pub model: Option<String>,
    /// Only alerts still firing
    #[arg(long)]
    pub firing: bool,
    /// At most this many
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    #[arg(long)]
    pub json: bool,
}

pub fn parse_time(flag: &str, s: &str) -> Result<i64, CliError> {
    kiln_core::value::parse_timestamp(s)
        .or_else(|| kiln_core::value::parse_date(s).map(|d| i64::from(d) * 86_400_000_000))
        .ok_or_else(|| {
            CliError::input(format!(
                "{flag} `{s}` is not a date or time\nhint: write 2012-01-01 or \"2012-01-01 06:00:00\" (UTC)"
            ))
        })
}

pub fn format_time(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| us.to_string())
}

/// Runs the range monitoring a command asks for.
async fn report_of(project: &Project, a: &RangeArgs) -> Result<MonitorReport, CliError> {
    let mut r: ModelRef = a.model.parse()?;
    if r.selector == Selector::Latest
        && project
            .store
            .meta
            .alias(&r.name, "production")
            .await?
            .is_some()
    {
        r.selector = Selector::Alias("production".into());
    }
    let from = a
        .from
        .as_deref()
        .map(|s| parse_time("--from", s))
        .transpose()?;
    let to = a.to.as_deref().map(|s| parse_time("--to", s)).transpose()?;
    let windows = match (&a.window, a.every) {
        (Some(w), _) => RangeWindows::Every(parse_duration(w).ok_or_else(|| {
            CliError::input(format!(
                "--window `{w}` is not a duration\nhint: write 30m, 1h, 1d or 7d"
            ))
        })?),
        (None, Some(0)) => return Err(CliError::input("--every must be at least 1")),
        (None, Some(n)) => RangeWindows::Count(n),
        (None, None) => RangeWindows::Whole,
    };
    let config = MonitorConfig::from_table(&project.config.monitor)
        .map_err(|e| CliError::input(format!("kiln.toml {e}")))?;
    let version = resolve(&project.store, &r).await?;
    let artifact = load(&project.store, &version).await?;
    Ok(monitor_range(
        &project.store,
        &project.scratch(),
        &RangeRequest {
            model: &version.model,
            version: version.version,
            artifact: &artifact,
            from,
            to,
            windows,
            config: &config,
        },
    )
    .await?)
}

pub async fn run(global: &GlobalArgs, a: MonitorArgs) -> Result<(), CliError> {
    let project = open(global).await?;
    match (a.command, a.range) {
        (Some(MonitorCommand::Report(r)), _) => {
            let report = report_of(&project, &r.range).await?;
            if let Some(path) = &r.html {
                write_atomic(path, kiln_watch::html::html(&report).as_bytes())?;
                if !r.range.json && !global.quiet {
                    println!("wrote {}", path.display());
                }
            }
            if r.range.json || r.html.is_none() {
                return print_json(&report);
            }
            Ok(())
        }
        (None, Some(range)) => {
            let report = report_of(&project, &range).await?;
            if range.json {
                return print_json(&report);
            }
            print_report(&report);
            Ok(())
        }
        (None, None) => Err(CliError::input(
            "kiln monitor needs --model NAME (and optionally --from, --to, --window or --every)\nhint: `kiln monitor --help`",
        )),
    }
}

fn print_report(r: &MonitorReport) {
    let primary = r.primary_metric;
    println!(
        "{}@{} ({}): {} predictions, {} labelled; {}",
        r.model,
        r.version,
        r.task,
        count(r.overall.rows),
        count(r.overall.labelled_rows),
        r.windowing
    );
    let f = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
    let rows: Vec<Vec<String>> = r
        .windows
        .iter()
        .map(|w| {
            let drift = match w.drift.as_ref().and_then(|d| d.dataset.as_ref()) {
                Some(d) => format!(
                    "{}/{}{}",
                    d.drifted_columns,
                    d.columns,
                    if d.drifted { " drift" } else { "" }
                ),
                None => "-".into(),
            };
            let pred = match w.prediction_drift.as_ref().and_then(|c| c.drift.as_ref()) {
                Some(d) => if d.drifted { "drift" } else { "-" }.to_owned(),
                None => "?".into(),
            };
            let realized = w
                .realized(primary)
                .map(|m| format!("{:.4} [{:.4}, {:.4}]", m.value, m.lower, m.upper));
            vec![
                format_time(w.start),
                count(w.rows),
                drift,
                pred,
                count(w.labelled_rows),
                realized.unwrap_or_else(|| "-".into()),
                f(w.estimated.get(primary).copied()),
                f(w.reference.get(primary).copied()),
            ]
        })
        .collect();
    let realized_h = format!("realized {primary} (95% CI)");
    let estimated_h = format!("estimated {primary}");
    let reference_h = format!("reference {primary}");
    print!(
        "{}",
        table(
            &[
                "window",
                "rows",
                "drifted inputs",
                "predictions",
                "labelled",
                &realized_h,
                &estimated_h,
                &reference_h
            ],
            &rows
        )
    );
    if let Some(d) = &r.overall.drift {
        println!("\nwhole range:");
        crate::data::print_drift(d);
    }
    if r.alerts.is_empty() {
        println!("\nno alert rule fired");
    } else {
        println!("\nalerts:");
        for e in &r.alerts {
            println!(
                "  {} {} [{}] {} ({})",
                format_time(e.window_start),
                e.state,
                e.severity.as_str(),
                e.rule,
                e.message
            );
        }
    }
    for n in r.notes.iter().chain(&r.overall.notes) {
        println!("note: {n}");
    }
}

pub async fn alerts(global: &GlobalArgs, cmd: AlertsCommand) -> Result<(), CliError> {
    let project = open(global).await?;
    let AlertsCommand::List(a) = cmd;
    let list = project
        .store
        .meta
        .alerts(a.model.as_deref(), a.firing, a.limit)
        .await?;
    if a.json {
        return print_json(&list);
    }
    if list.is_empty() {
        println!("no alerts");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|x| {
            vec![
                x.id.to_string(),
                format!("{}@{}", x.alert.model, x.alert.version),
                x.alert.rule.clone(),
                x.alert.severity.clone(),
                x.state.clone(),
                format_time(x.alert.window_start),
                x.resolved_window_end
                    .map(format_time)
                    .unwrap_or_else(|| "-".into()),
                x.alert.message.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "id",
                "model",
                "rule",
                "severity",
                "state",
                "window",
                "resolved at",
                "why"
            ],
            &rows
        )
    );
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum LogCommand {
    /// Apply [retention] now: move days of the log that ended longer ago than compact_after
    /// into Parquet archives in the artifact store (still read by `kiln monitor`), and delete
    /// days older than delete_after
    Compact(CompactArgs),
    /// The archived days of the prediction log
    Archives(ArchivesArgs),
}

#[derive(Args, Debug)]
pub struct CompactArgs {
    /// Only this model's log (default: every model's)
    #[arg(long)]
    pub model: Option<String>,
    /// Archive days that ended longer ago than this, counted back from the newest event
    /// time logged (overrides compact_after in [retention])
    #[arg(long, value_name = "DURATION")]
    pub older_than: Option<String>,
    /// Delete days that ended longer ago than this, archived or not (overrides delete_after)
    #[arg(long, value_name = "DURATION")]
    pub delete_older_than: Option<String>,
    /// Show the days that would be archived; change nothing
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ArchivesArgs {
    /// Only this model's archives
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub json: bool,
}

pub async fn log(global: &GlobalArgs, cmd: LogCommand) -> Result<(), CliError> {
    let project = open(global).await?;
    match cmd {
        LogCommand::Compact(a) => {
            let mut settings: RetentionConfig = project.config.retention.clone();
            if a.older_than.is_some() {
                settings.compact_after = a.older_than.clone();
            }
            if a.delete_older_than.is_some() {
                settings.delete_after = a.delete_older_than.clone();
            }
            let policy = Retention::from_config(&settings).map_err(|e| {
                CliError::input(
                    e.to_string()
                        .replace("[retention] compact_after", "--older-than"),
                )
            })?;
            if !policy.is_active() {
                return Err(CliError::input(
                    "no retention policy: nothing to compact\nhint: set compact_after (and delete_after) under [retention] in kiln.toml, or pass --older-than 30d",
                ));
            }
            let models: Vec<String> = a.model.iter().cloned().collect();
            let out = apply_retention(
                &project.store,
                &project.scratch(),
                &models,
                &policy,
                a.dry_run,
            )
            .await?;
            if a.json {
                return print_json(&out);
            }
            let verb = if a.dry_run {
                "would archive"
            } else {
                "archived"
            };
            if !out.archived.is_empty() {
                let rows: Vec<Vec<String>> = out
                    .archived
                    .iter()
                    .map(|d| {
                        vec![
                            d.model.clone(),
                            kiln_core::value::format_days(d.day as i32),
                            count(d.rows as u64),
                            count(d.labelled as u64),
                            d.bytes.map_or("-".into(), |b| mebibytes(b as u64)),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(&["model", "day", "predictions", "labelled", "file"], &rows)
                );
            }
            let rows: i64 = out.archived.iter().map(|d| d.rows).sum();
            let bytes: i64 = out.archived.iter().filter_map(|d| d.bytes).sum();
            println!(
                "{verb} {} day(s), {} predictions{}",
                out.archived.len(),
                count(rows as u64),
                if a.dry_run {
                    String::new()
                } else {
                    format!(", into {}", mebibytes(bytes as u64))
                }
            );
            if !out.dropped.is_empty() || out.deleted_rows > 0 {
                println!(
                    "deleted {} archived day(s) and {} predictions still in the database",
                    out.dropped.len(),
                    count(out.deleted_rows)
                );
            }
            for c in &out.conflicts {
                println!("skipped: {c}");
            }
            Ok(())
        }
        LogCommand::Archives(a) => {
            let list = project
                .store
                .meta
                .log_archives(a.model.as_deref(), None, None)
                .await?;
            if a.json {
                return print_json(&list);
            }
            if list.is_empty() {
                println!("no archived days (see `kiln log compact --help`)");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|x| {
                    vec![
                        x.model.clone(),
                        kiln_core::value::format_days(x.day as i32),
                        count(x.rows as u64),
                        count(x.labelled as u64),
                        mebibytes(x.bytes as u64),
                        x.artifact.chars().take(12).collect(),
                        format_time(x.created_at),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &[
                        "model",
                        "day",
                        "predictions",
                        "labelled",
                        "file",
                        "artifact",
                        "archived at"
                    ],
                    &rows
                )
            );
            Ok(())
        }
    }
}
