//! `kiln replay`: a time-ordered dataset sent to a running server as live traffic, in
//! simulated time, with each row's label sent as feedback after a delay.
//!
//! Rows are grouped by their time (one request per instant: an hourly or daily dataset sends
//! each hour or day as one request of many rows) and paced so that `speed` simulated hours
//! pass per real second. Each request carries its simulated time in `x-kiln-event-time`, so
//! the server's monitoring windows and the retrain controller follow the simulated clock.
//! Labels are held back until the simulated clock has passed their row's time plus
//! `label_delay`, then sent in one feedback request by the rows' request ids.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use clap::Args;
use kiln_core::schema::FeatureType;
use kiln_core::table::cell_text;
use kiln_core::value::{format_timestamp, parse_date, parse_duration, parse_timestamp};
use kiln_data::DatasetRef;
use kiln_data::snapshot::{for_each_batch, resolve};
use kiln_train::registry::{ModelRef, Selector};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::GlobalArgs;
use crate::context::{Project, open};
use crate::output::{CliError, count, print_json};

#[derive(Args, Debug, Clone)]
#[command(
    after_help = "Example: kiln replay --dataset bikes-2012 --from 2012-01-01 --to 2013-01-01 \
--speed 72 --label-delay 1d (a year in about two minutes; labels one simulated day late). The \
server must log predictions for its monitoring and retrain controller to see the traffic."
)]
pub struct ReplayArgs {
    /// The dataset to send, NAME[@VERSION]
    #[arg(long)]
    pub dataset: String,
    /// Column with each row's time [default: the dataset's time column]
    #[arg(long)]
    pub time_column: Option<String>,
    /// First time to send (inclusive), YYYY-MM-DD or YYYY-MM-DD HH:MM:SS [default: the first row]
    #[arg(long)]
    pub from: Option<String>,
    /// Time to stop before (exclusive) [default: after the last row]
    #[arg(long)]
    pub to: Option<String>,
    /// Simulated hours per real second
    #[arg(long, default_value_t = 24.0)]
    pub speed: f64,
    /// Simulated time between a row's prediction and its label (e.g. 1h, 1d; 0s: at once)
    #[arg(long, default_value = "1d")]
    pub label_delay: String,
    /// The server to send to
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The served model to call [default: [automate] model, else [train] register]
    #[arg(long)]
    pub model: Option<String>,
    /// Send no labels
    #[arg(long)]
    pub no_labels: bool,
    /// API key for the prediction routes
    #[arg(long, env = "KILN_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Print the summary as one JSON document
    #[arg(long)]
    pub json: bool,
}

/// What a replay sent.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReplaySummary {
    pub model: String,
    pub rows: u64,
    pub requests: u64,
    /// Requests the server refused (each named in the log with its status).
    pub failed_requests: u64,
    pub labels_sent: u64,
    /// Labels the server matched to a logged prediction when they arrived.
    pub labels_matched: u64,
    pub first_time: Option<String>,
    pub last_time: Option<String>,
    pub seconds: f64,
}

/// One instant of the dataset: its time and rows (inputs, label).
struct Group {
    time: i64,
    rows: Vec<(Value, Value)>,
}

fn time_arg(name: &str, text: &Option<String>) -> Result<Option<i64>, CliError> {
    text.as_deref()
        .map(|t| crate::monitor::parse_time(&format!("--{name}"), t))
        .transpose()
}

/// The JSON value of one cell: numbers as numbers, null as null, the rest as text.
fn cell_json(batch: &RecordBatch, col: usize, ftype: FeatureType, row: usize) -> Value {
    let array = batch.column(col);
    if array.is_null(row) {
        return Value::Null;
    }
    let text = cell_text(array, ftype, row);
    if ftype == FeatureType::Numeric {
        if let Some(n) = text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
        {
            return Value::Number(n);
        }
        return Value::Null;
    }
    Value::String(text)
}

/// The model's input names, from the version the server serves under `production` (or the
/// latest version): only those are sent, never the target or other columns.
async fn model_inputs(project: &Project, model: &str) -> Result<Vec<String>, CliError> {
    let alias = project.store.meta.alias(model, "production").await?;
    let r = ModelRef {
        name: model.to_owned(),
        selector: match alias {
            Some(a) => Selector::Version(a.version),
            None => Selector::Latest,
        },
    };
    let version = kiln_train::registry::resolve(&project.store, &r).await?;
    let artifact = kiln_train::registry::load(&project.store, &version).await?;
    Ok(artifact
        .schema
        .columns
        .iter()
        .map(|c| c.name.clone())
        .collect())
}

/// Reads, filters and groups the rows to send.
async fn load_groups(
    project: &Project,
    args: &ReplayArgs,
    inputs: &[String],
) -> Result<Vec<Group>, CliError> {
    let r: DatasetRef = args.dataset.parse()?;
    let version = resolve(&project.store, &r).await?;
    let record = project.store.meta.dataset(&version.dataset).await?;
    let time_column = args
        .time_column
        .clone()
        .or_else(|| record.as_ref().and_then(|d| d.time_column.clone()))
        .ok_or_else(|| {
            CliError::input(format!(
                "{} has no time column to replay by\nhint: --time-column COLUMN",
                version.dataset
            ))
        })?;
    let tcol = version.schema.column(&time_column).ok_or_else(|| {
        CliError::input(format!(
            "--time-column `{time_column}` is not a column of {}@{}",
            version.dataset, version.version
        ))
    })?;
    if !matches!(tcol.ftype, FeatureType::Date | FeatureType::Timestamp) {
        return Err(CliError::input(format!(
            "--time-column `{time_column}` is a {} column; a replay needs dates or timestamps",
            tcol.ftype
        )));
    }
    let tfmt = tcol.ftype;
    let target = record
        .as_ref()
        .and_then(|d| d.target.clone())
        .or_else(|| project.config.dataset(&version.dataset).target);
    let from = time_arg("from", &args.from)?.unwrap_or(i64::MIN);
    let to = time_arg("to", &args.to)?.unwrap_or(i64::MAX);
    let columns: Vec<(usize, String, FeatureType)> = version
        .schema
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| (i, c.name.clone(), c.ftype))
        .collect();
    let mut rows: Vec<(i64, Value, Value)> = Vec::new();
    for_each_batch(&project.store, &project.scratch(), &version, |b| {
        let tix = columns.iter().position(|c| c.1 == time_column).unwrap_or(0);
        for row in 0..b.num_rows() {
            let t = match cell_json(&b, tix, tfmt, row) {
                Value::String(s) => parse_timestamp(&s)
                    .or_else(|| parse_date(&s).map(|d| i64::from(d) * 86_400_000_000)),
                _ => None,
            };
            let Some(t) = t.filter(|t| *t >= from && *t < to) else {
                continue;
            };
            let mut input = Map::new();
            let mut label = Value::Null;
            for (i, name, ftype) in &columns {
                if Some(name) == target.as_ref() {
                    label = cell_json(&b, *i, *ftype, row);
                } else if inputs.contains(name) {
                    input.insert(name.clone(), cell_json(&b, *i, *ftype, row));
                }
            }
            rows.push((t, Value::Object(input), label));
        }
        Ok(())
    })
    .await?;
    rows.sort_by_key(|r| r.0);
    let mut groups: Vec<Group> = Vec::new();
    for (t, input, label) in rows {
        match groups.last_mut() {
            Some(g) if g.time == t => g.rows.push((input, label)),
            _ => groups.push(Group {
                time: t,
                rows: vec![(input, label)],
            }),
        }
    }
    Ok(groups)
}

/// Sends `args.dataset` to the server; returns what it sent. `progress` is told each
/// simulated time as it is sent.
pub async fn replay(
    project: &Project,
    args: &ReplayArgs,
    progress: &(dyn Fn(i64, &ReplaySummary) + Send + Sync),
) -> Result<ReplaySummary, CliError> {
    if !(args.speed > 0.0 && args.speed.is_finite()) {
        return Err(CliError::input(format!(
            "--speed {}: simulated hours per real second, a positive number",
            args.speed
        )));
    }
    let delay = if args
        .label_delay
        .trim()
        .trim_end_matches(|c: char| c.is_alphabetic())
        == "0"
    {
        0
    } else {
        parse_duration(&args.label_delay).ok_or_else(|| {
            CliError::input(format!(
                "--label-delay `{}` is not a duration (e.g. 1h, 1d, 0s)",
                args.label_delay
            ))
        })?
    };
    let model = match &args.model {
        Some(m) => m.clone(),
        None => project
            .config
            .automate
            .get("model")
            .or_else(|| project.config.train.get("register"))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .ok_or_else(|| {
                CliError::input("which model to call?\nhint: --model NAME".to_owned())
            })?,
    };
    let inputs = model_inputs(project, &model).await?;
    let groups = load_groups(project, args, &inputs).await?;
    let base = args.url.trim_end_matches('/').to_owned();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| CliError::system(format!("cannot start an HTTP client: {e}")))?;
    let auth = |r: reqwest::RequestBuilder| match &args.api_key {
        Some(k) => r.bearer_auth(k),
        None => r,
    };
    let mut summary = ReplaySummary {
        model: model.clone(),
        first_time: groups.first().map(|g| format_timestamp(g.time)),
        last_time: groups.last().map(|g| format_timestamp(g.time)),
        ..ReplaySummary::default()
    };
    let Some(t0) = groups.first().map(|g| g.time) else {
        return Ok(summary);
    };
    let started = Instant::now();
    let micros_per_real_second = args.speed * 3_600_000_000.0;
    // (due time, request id, label), in due order.
    let mut pending: VecDeque<(i64, String, Value)> = VecDeque::new();
    let predict_url = format!("{base}/v1/models/{model}/predict");
    let feedback_url = format!("{base}/v1/feedback");
    let mut consecutive_failures = 0;

    let send_labels = |items: Vec<(String, Value)>| {
        let client = client.clone();
        let url = feedback_url.clone();
        async move {
            let body: Vec<Value> = items
                .into_iter()
                .map(|(id, label)| json!({"request_id": id, "label": label}))
                .collect();
            let n = body.len() as u64;
            let r = auth(client.post(&url)).json(&body).send().await;
            match r {
                Ok(r) if r.status().is_success() => {
                    let v: Value = r.json().await.unwrap_or(Value::Null);
                    Ok((n, v["matched"].as_u64().unwrap_or(0)))
                }
                Ok(r) => Err(format!("feedback: HTTP {}", r.status())),
                Err(e) => Err(format!("feedback: {e}")),
            }
        }
    };

    for g in &groups {
        // Pace: this instant is due when its simulated offset has passed in real time.
        let due = Duration::from_secs_f64((g.time - t0) as f64 / micros_per_real_second);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        if !args.no_labels {
            let mut ready = Vec::new();
            while pending.front().is_some_and(|p| p.0 <= g.time) {
                if let Some((_, id, label)) = pending.pop_front() {
                    ready.push((id, label));
                }
            }
            if !ready.is_empty() {
                let (sent, matched) = send_labels(ready).await.map_err(CliError::system)?;
                summary.labels_sent += sent;
                summary.labels_matched += matched;
            }
        }
        let instances: Vec<&Value> = g.rows.iter().map(|r| &r.0).collect();
        let resp = auth(client.post(&predict_url))
            .header("x-kiln-event-time", format_timestamp(g.time))
            .json(&json!({ "instances": instances }))
            .send()
            .await;
        summary.requests += 1;
        let resp = match resp {
            Ok(r) => r,
            Err(e) if e.is_connect() => {
                return Err(CliError::system(format!(
                    "no server answers at {base}: {e}\nhint: start one with `kiln serve`, or pass --url"
                )));
            }
            Err(e) => return Err(CliError::system(format!("POST {predict_url}: {e}"))),
        };
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            summary.failed_requests += 1;
            consecutive_failures += 1;
            tracing::warn!(status = %status, time = %format_timestamp(g.time), body = %body, "replayed request refused");
            if consecutive_failures >= 10 {
                return Err(CliError::system(format!(
                    "the server refused 10 requests in a row; the last: HTTP {status} {body}\nhint: does it serve `{model}` (kiln models alias set production {model}@VERSION)?"
                )));
            }
            continue;
        }
        consecutive_failures = 0;
        summary.rows += g.rows.len() as u64;
        let ids: Vec<String> = body["predictions"]
            .as_array()
            .map(|p| {
                p.iter()
                    .filter_map(|r| r["request_id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if !args.no_labels {
            for (id, (_, label)) in ids.into_iter().zip(&g.rows) {
                if !label.is_null() {
                    pending.push_back((g.time + delay, id, label.clone()));
                }
            }
        }
        progress(g.time, &summary);
    }
    if !pending.is_empty() {
        let rest: Vec<(String, Value)> = pending.drain(..).map(|(_, id, l)| (id, l)).collect();
        for chunk in rest.chunks(1000) {
            let (sent, matched) = send_labels(chunk.to_vec())
                .await
                .map_err(CliError::system)?;
            summary.labels_sent += sent;
            summary.labels_matched += matched;
        }
    }
    summary.seconds = (started.elapsed().as_secs_f64() * 100.0).round() / 100.0;
    Ok(summary)
}

pub async fn run(global: &GlobalArgs, args: ReplayArgs) -> Result<(), CliError> {
    let project = open(global).await?;
    let quiet = global.quiet || args.json;
    let last_month = std::sync::Mutex::new(String::new());
    let progress = |t: i64, s: &ReplaySummary| {
        let month: String = format_timestamp(t).chars().take(7).collect();
        if let Ok(mut last) = last_month.lock()
            && *last != month
        {
            if !quiet && !last.is_empty() {
                eprintln!("  {}  {} rows sent", *last, count(s.rows));
            }
            *last = month;
        }
    };
    let summary = replay(&project, &args, &progress).await?;
    if args.json {
        print_json(&summary)?;
    } else if !global.quiet {
        println!(
            "replayed {} rows of {} ({} .. {}) to {} in {} requests ({} refused), {:.1} s; {} labels sent, {} matched",
            count(summary.rows),
            args.dataset,
            summary.first_time.as_deref().unwrap_or("-"),
            summary.last_time.as_deref().unwrap_or("-"),
            summary.model,
            count(summary.requests),
            summary.failed_requests,
            summary.seconds,
            count(summary.labels_sent),
            count(summary.labels_matched),
        );
    }
    Ok(())
}
