//! `kiln data ...`: add, log, show, diff, export.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use kiln_core::profile::{ColumnProfile, ColumnStats, DatasetProfile};
use kiln_core::schema::FeatureType;
use kiln_core::value::{format_days, format_timestamp};
use kiln_data::diff::DataDiff;
use kiln_data::ingest::load_profile;
use kiln_data::snapshot::{export, resolve};
use kiln_data::{AddOptions, DatasetRef, ExportFormat};
use kiln_store::DatasetVersion;
use serde::Serialize;

use crate::GlobalArgs;
use crate::context::{Project, open};
use crate::output::{Bar, CliError, count, num, print_json, table};

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Ingest a CSV, gzip CSV or Parquet file as a new validated, profiled version of a dataset
    Add(AddArgs),
    /// List datasets, or the versions of one dataset
    Log(LogArgs),
    /// Show a version: lineage, schema and column profiles
    Show(ShowArgs),
    /// Compare two versions: schema, row counts, per-column profile changes (and drift tests)
    Diff(DiffArgs),
    /// Write a version out as CSV or Parquet
    Export(ExportArgs),
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// The file: .csv, .csv.gz, .tsv or .parquet
    pub file: PathBuf,
    /// Dataset name (created on its first add)
    #[arg(long, short = 'd')]
    pub dataset: String,
    /// Column that orders rows in time (a date or timestamp) [default: from kiln.toml]
    #[arg(long)]
    pub time_column: Option<String>,
    /// Column models will learn to predict [default: from kiln.toml]
    #[arg(long)]
    pub target: Option<String>,
    /// Add the rows to the latest version (new version, parent = previous) instead of replacing
    #[arg(long)]
    pub append: bool,
    /// Accept a schema that differs from the dataset's latest version
    #[arg(long)]
    pub allow_schema_change: bool,
    /// Print the result as one JSON document
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct LogArgs {
    /// Dataset name; without it, all datasets are listed
    pub name: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// NAME or NAME@VERSION
    pub reference: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// The older version: NAME@VERSION
    pub from: String,
    /// The newer version: NAME@VERSION (or NAME for the latest)
    pub to: String,
    /// Also test every numeric, categorical and boolean column for drift, reading both
    /// versions in full: the test Evidently's DataDriftPreset picks for the column (KS,
    /// chi-squared, Z, normed Wasserstein or Jensen-Shannon), with the same scores and
    /// verdicts, and the dataset verdict (drifted when half the columns or more drifted).
    /// [monitor.drift] in kiln.toml sets other tests, thresholds and share
    #[arg(long)]
    pub drift: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum FormatArg {
    Csv,
    Parquet,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// NAME or NAME@VERSION
    pub reference: String,
    #[arg(long, value_enum)]
    pub format: FormatArg,
    /// Output file (written atomically)
    #[arg(short, long)]
    pub output: PathBuf,
    #[arg(long)]
    pub json: bool,
}

pub async fn run(global: &GlobalArgs, cmd: DataCommand) -> Result<(), CliError> {
    let project = open(global).await?;
    match cmd {
        DataCommand::Add(a) => add(global, &project, a).await,
        DataCommand::Log(a) => log(&project, a).await,
        DataCommand::Show(a) => show(&project, a).await,
        DataCommand::Diff(a) => diff(&project, a).await,
        DataCommand::Export(a) => export_cmd(global, &project, a).await,
    }
}

pub async fn add(global: &GlobalArgs, project: &Project, a: AddArgs) -> Result<(), CliError> {
    let opts = AddOptions {
        file: a.file.clone(),
        dataset: a.dataset.clone(),
        time_column: a.time_column.clone(),
        target: a.target.clone(),
        append: a.append,
        allow_schema_change: a.allow_schema_change,
        source: None,
    };
    let outcome = match kiln_data::add(
        &project.store,
        &project.config,
        &project.scratch(),
        &opts,
        Bar::for_ingest(global, a.json),
    )
    .await
    {
        Ok(o) => o,
        Err(kiln_data::DataError::Validation(report)) if a.json => {
            // Scripts get the report as the JSON document, and still the exit code 2.
            print_json(&serde_json::json!({ "ok": false, "validation": report }))?;
            return Err(CliError::input(report.to_string()));
        }
        Err(e) => return Err(e.into()),
    };
    if a.json {
        return print_json(&outcome);
    }
    if global.quiet {
        return Ok(());
    }
    let v = &outcome.version;
    if outcome.created {
        println!(
            "{}@{}  snapshot {}  {} rows{}",
            v.dataset,
            v.version,
            v.snapshot_id.short(),
            count(v.rows),
            time_span(v)
        );
        if let Some(p) = v.parent_version {
            println!("  parent: {}@{p} ({})", v.dataset, v.mode);
        }
    } else {
        println!(
            "{}@{} unchanged: identical content is already the latest version (snapshot {})",
            v.dataset,
            v.version,
            v.snapshot_id.short()
        );
    }
    if outcome.quarantined_rows > 0 {
        println!(
            "  quarantined: {} bad row(s) stored aside as {} (policy = quarantine)",
            count(outcome.quarantined_rows),
            v.quarantine_id
                .as_ref()
                .map(|q| q.short().to_owned())
                .unwrap_or_default()
        );
        for viol in &outcome.report.shown {
            println!(
                "    row {}{}: {} [{}]",
                viol.row.map(|r| r.to_string()).unwrap_or_default(),
                viol.column
                    .as_ref()
                    .map(|c| format!(", column `{c}`"))
                    .unwrap_or_default(),
                viol.message,
                viol.rule
            );
        }
    }
    println!("  took {:.2} s", outcome.seconds);
    Ok(())
}

fn time_span(v: &DatasetVersion) -> String {
    match (&v.time_min, &v.time_max) {
        (Some(a), Some(b)) => format!("  {a} .. {b}"),
        _ => String::new(),
    }
}

async fn log(project: &Project, a: LogArgs) -> Result<(), CliError> {
    let meta = &project.store.meta;
    match a.name {
        None => {
            let mut out = Vec::new();
            for d in meta.datasets().await? {
                let latest = meta.version(&d.name, None).await?;
                out.push((d, latest));
            }
            if a.json {
                #[derive(Serialize)]
                struct Entry<'a> {
                    name: &'a str,
                    time_column: Option<&'a str>,
                    target: Option<&'a str>,
                    latest: Option<&'a DatasetVersion>,
                }
                let doc: Vec<Entry> = out
                    .iter()
                    .map(|(d, l)| Entry {
                        name: &d.name,
                        time_column: d.time_column.as_deref(),
                        target: d.target.as_deref(),
                        latest: l.as_ref(),
                    })
                    .collect();
                return print_json(&doc);
            }
            if out.is_empty() {
                println!("no datasets yet: kiln data add FILE --dataset NAME");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = out
                .iter()
                .map(|(d, l)| {
                    vec![
                        d.name.clone(),
                        l.as_ref()
                            .map(|v| v.version.to_string())
                            .unwrap_or_default(),
                        l.as_ref().map(|v| count(v.rows)).unwrap_or_default(),
                        d.time_column.clone().unwrap_or_else(|| "-".into()),
                        d.target.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &["dataset", "latest", "rows", "time column", "target"],
                    &rows
                )
            );
        }
        Some(name) => {
            kiln_core::names::validate_name("dataset", &name)
                .map_err(|e| CliError::input(e.to_string()))?;
            let versions = meta.versions(&name).await?;
            if versions.is_empty() {
                return Err(kiln_data::DataError::UnknownDataset(name).into());
            }
            if a.json {
                return print_json(&versions);
            }
            let rows: Vec<Vec<String>> = versions
                .iter()
                .rev()
                .map(|v| {
                    vec![
                        format!("{}@{}", v.dataset, v.version),
                        v.snapshot_id.short().to_owned(),
                        v.parent_version
                            .map(|p| format!("@{p}"))
                            .unwrap_or_else(|| "-".into()),
                        v.mode.clone(),
                        count(v.rows),
                        v.parts.len().to_string(),
                        count(v.quarantined_rows),
                        kiln_core::format_micros(v.created_at),
                        v.source.clone(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &[
                        "version",
                        "snapshot",
                        "parent",
                        "mode",
                        "rows",
                        "parts",
                        "quarantined",
                        "created",
                        "source"
                    ],
                    &rows
                )
            );
        }
    }
    Ok(())
}

fn parse_ref(s: &str) -> Result<DatasetRef, CliError> {
    s.parse::<DatasetRef>().map_err(CliError::from)
}

async fn show(project: &Project, a: ShowArgs) -> Result<(), CliError> {
    let r = parse_ref(&a.reference)?;
    let v = resolve(&project.store, &r).await?;
    let profile = load_profile(&project.store, &v.profile_id).await?;
    if a.json {
        #[derive(Serialize)]
        struct Doc<'a> {
            version: &'a DatasetVersion,
            profile: &'a DatasetProfile,
        }
        return print_json(&Doc {
            version: &v,
            profile: &profile,
        });
    }
    println!("{}@{}  snapshot {}", v.dataset, v.version, v.snapshot_id);
    println!("  rows:        {}{}", count(v.rows), time_span(&v));
    println!(
        "  lineage:     {} from {} (blake3 {}){}",
        v.mode,
        v.source,
        v.source_hash.short(),
        v.parent_version
            .map(|p| format!(", parent {}@{p}", v.dataset))
            .unwrap_or_default()
    );
    println!(
        "  parts:       {}",
        v.parts
            .iter()
            .map(|p| format!("{} ({} rows)", p.id.short(), count(p.rows)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if v.quarantined_rows > 0 {
        println!(
            "  quarantined: {} rows ({})",
            count(v.quarantined_rows),
            v.quarantine_id
                .as_ref()
                .map(|q| q.to_string())
                .unwrap_or_default()
        );
    }
    println!(
        "  created:     {} by kiln {}",
        kiln_core::format_micros(v.created_at),
        v.kiln_version
    );
    println!();
    print!("{}", profile_table(&profile));
    Ok(())
}

/// One line per column: type, nulls, and the statistics that fit its type.
fn profile_table(profile: &DatasetProfile) -> String {
    let rows: Vec<Vec<String>> = profile.columns.iter().map(profile_row).collect();
    table(
        &[
            "column",
            "type",
            "nulls",
            "min",
            "p25",
            "p50",
            "mean",
            "p75",
            "max",
            "std",
            "top values",
        ],
        &rows,
    )
}

fn profile_row(c: &ColumnProfile) -> Vec<String> {
    let nulls = if c.nulls == 0 {
        "0".to_owned()
    } else {
        format!("{:.1}%", c.null_fraction() * 100.0)
    };
    let mut row = vec![c.name.clone(), c.ftype.to_string(), nulls];
    let dash = || "-".to_owned();
    match &c.stats {
        ColumnStats::Numeric(p) => {
            row.extend([
                num(p.min),
                num(p.quantile(0.25)),
                num(p.quantile(0.5)),
                num((p.count > 0).then_some(p.mean)),
                num(p.quantile(0.75)),
                num(p.max),
                num(p.std()),
                String::new(),
            ]);
        }
        ColumnStats::Categorical(p) => {
            let total = p.total().max(1) as f64;
            let top: Vec<String> = p
                .top(4)
                .iter()
                .map(|(k, n)| format!("{k} {:.0}%", *n as f64 / total * 100.0))
                .collect();
            let more = p.counts.len().saturating_sub(4);
            let mut text = top.join(", ");
            if more > 0 {
                text.push_str(&format!(" (+{more} more)"));
            }
            row.extend((0..7).map(|_| dash()));
            row.push(text);
        }
        ColumnStats::Boolean { trues, falses } => {
            row.extend((0..7).map(|_| dash()));
            row.push(format!("true {trues}, false {falses}"));
        }
        ColumnStats::Temporal { min, max } => {
            let fmt = |v: &Option<i64>| match (v, c.ftype) {
                (Some(d), FeatureType::Date) => format_days(*d as i32),
                (Some(t), _) => format_timestamp(*t),
                (None, _) => dash(),
            };
            row.extend([fmt(min), dash(), dash(), dash(), dash(), fmt(max), dash()]);
            row.push(String::new());
        }
        ColumnStats::Text { lengths } => {
            row.extend((0..7).map(|_| dash()));
            row.push(format!(
                "length p50 {}, max {}",
                num(lengths.quantile(0.5)),
                num(lengths.max)
            ));
        }
    }
    row
}

async fn diff(project: &Project, a: DiffArgs) -> Result<(), CliError> {
    let ra = parse_ref(&a.from)?;
    let rb = parse_ref(&a.to)?;
    let va = resolve(&project.store, &ra).await?;
    let vb = resolve(&project.store, &rb).await?;
    let pa = load_profile(&project.store, &va.profile_id).await?;
    let pb = load_profile(&project.store, &vb.profile_id).await?;
    let d = kiln_data::diff::diff(&va, &pa, &vb, &pb);
    let drift = if a.drift {
        let reference = table_summary(project, &va).await?;
        let current = table_summary(project, &vb).await?;
        // The whole [monitor] section is checked (the serving keys too), by its one reader.
        let settings = kiln_watch::rules::MonitorConfig::from_table(&project.config.monitor)
            .map_err(|e| CliError::input(format!("kiln.toml {e}")))?
            .drift;
        Some(
            kiln_monitor::drift_report(&reference, &current, &settings)
                .map_err(|e| CliError::input(format!("drift: {e}")))?,
        )
    } else {
        None
    };
    if a.json {
        #[derive(Serialize)]
        struct DiffWithDrift<'a> {
            #[serde(flatten)]
            diff: &'a DataDiff,
            #[serde(skip_serializing_if = "Option::is_none")]
            drift: Option<&'a kiln_monitor::DriftReport>,
        }
        return print_json(&DiffWithDrift {
            diff: &d,
            drift: drift.as_ref(),
        });
    }
    print_diff(&d);
    if let Some(r) = &drift {
        print_drift(r);
    }
    Ok(())
}

/// The exact per-column summaries of a whole version, batch by batch.
async fn table_summary(
    project: &Project,
    v: &DatasetVersion,
) -> Result<kiln_monitor::TableSummary, CliError> {
    let mut summary = kiln_monitor::TableSummary::default();
    let mut failed = None;
    kiln_data::snapshot::for_each_batch(&project.store, &project.scratch(), v, |batch| {
        if failed.is_none() {
            match kiln_monitor::TableSummary::from_batch(&batch).and_then(|b| summary.merge(&b)) {
                Ok(merged) => summary = merged,
                Err(e) => failed = Some(e),
            }
        }
        Ok(())
    })
    .await?;
    match failed {
        Some(e) => Err(CliError::system(format!(
            "cannot summarize {}@{}: {e}",
            v.dataset, v.version
        ))),
        None => Ok(summary),
    }
}

pub(crate) fn print_drift(r: &kiln_monitor::DriftReport) {
    let rows: Vec<Vec<String>> = r
        .columns
        .iter()
        .map(|c| match &c.drift {
            Some(d) => vec![
                c.name.clone(),
                d.method.display_name().to_owned(),
                format!("{:.4}", d.score),
                format!("{}", d.threshold),
                if d.drifted { "drift" } else { "-" }.to_owned(),
            ],
            None => vec![
                c.name.clone(),
                "not tested".to_owned(),
                c.skipped.clone().unwrap_or_default(),
                String::new(),
                String::new(),
            ],
        })
        .collect();
    println!();
    print!(
        "{}",
        table(&["column", "test", "score", "threshold", "verdict"], &rows)
    );
    match &r.dataset {
        Some(ds) => println!(
            "  dataset: {} of {} columns drifted ({:.0}%; threshold {:.0}%): {}",
            ds.drifted_columns,
            ds.columns,
            ds.share * 100.0,
            ds.threshold * 100.0,
            if ds.drifted { "drift" } else { "no drift" }
        ),
        None => println!("  dataset: no column could be tested"),
    }
}

fn print_diff(d: &DataDiff) {
    println!("{} -> {}", d.from, d.to);
    let delta = d.rows_to as i64 - d.rows_from as i64;
    println!(
        "  rows: {} -> {} ({}{})",
        count(d.rows_from),
        count(d.rows_to),
        if delta >= 0 { "+" } else { "-" },
        count(delta.unsigned_abs())
    );
    if d.schema.is_empty() {
        println!("  schema: unchanged");
    } else {
        println!("  schema: {}", d.schema);
    }
    let mut rows = Vec::new();
    for c in &d.columns {
        let (na, nb) = c.null_fraction;
        if (na - nb).abs() > 1e-12 {
            rows.push(vec![
                c.name.clone(),
                "nulls".into(),
                format!("{:.2}%", na * 100.0),
                format!("{:.2}%", nb * 100.0),
            ]);
        }
        for (stat, x, y) in &c.stats {
            let changed = match (x, y) {
                (Some(x), Some(y)) => (x - y).abs() > 1e-9 * x.abs().max(1.0),
                (None, None) => false,
                _ => true,
            };
            if changed {
                rows.push(vec![c.name.clone(), stat.clone(), num(*x), num(*y)]);
            }
        }
        if !c.new_categories.is_empty() {
            rows.push(vec![
                c.name.clone(),
                "new values".into(),
                String::new(),
                c.new_categories.join(", "),
            ]);
        }
        if !c.missing_categories.is_empty() {
            rows.push(vec![
                c.name.clone(),
                "gone values".into(),
                c.missing_categories.join(", "),
                String::new(),
            ]);
        }
        for (k, x, y) in &c.share_changes {
            if (x - y).abs() >= 0.005 {
                rows.push(vec![
                    c.name.clone(),
                    format!("share {k}"),
                    format!("{:.1}%", x * 100.0),
                    format!("{:.1}%", y * 100.0),
                ]);
            }
        }
    }
    if rows.is_empty() {
        println!("  columns: no profile changes");
    } else {
        println!();
        print!("{}", table(&["column", "statistic", "from", "to"], &rows));
    }
}

async fn export_cmd(global: &GlobalArgs, project: &Project, a: ExportArgs) -> Result<(), CliError> {
    let r = parse_ref(&a.reference)?;
    let v = resolve(&project.store, &r).await?;
    let format = match a.format {
        FormatArg::Csv => ExportFormat::Csv,
        FormatArg::Parquet => ExportFormat::Parquet,
    };
    let rows = export(&project.store, &project.scratch(), &v, format, &a.output).await?;
    if a.json {
        return print_json(&serde_json::json!({
            "dataset": v.dataset, "version": v.version, "snapshot_id": v.snapshot_id,
            "rows": rows, "output": a.output,
        }));
    }
    if !global.quiet {
        println!(
            "wrote {} rows of {}@{} to {}",
            count(rows),
            v.dataset,
            v.version,
            a.output.display()
        );
    }
    Ok(())
}
