//! `kiln quickstart`: the reference deployment, end to end, in a fresh home.
//!
//! The bundled example (hourly bike-rental demand, UCI Bike Sharing 2011–2012) and its
//! kiln.toml are compiled into the binary, so the command works from any folder. It ingests
//! 2011 as the training data and 2012 as the traffic to come, trains and registers a model,
//! deploys it as `production`, starts the server (dashboard included) with the retrain
//! controller, replays 2012 in simulated time with labels arriving late, and compares what
//! was served with what the frozen 2011 model would have served, month by month.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use kiln_data::AddOptions;
use kiln_data::ingest::load_profile;
use kiln_model::learner::Predictions;
use kiln_serve::Server;
use kiln_store::{Expect, LabelQuery, Store};
use serde::Serialize;
use serde_json::Value;

use crate::GlobalArgs;
use crate::context::{Project, open};
use crate::output::{Bar, CliError, count, print_json};
use crate::replay::{ReplayArgs, ReplaySummary, replay};

/// The example's configuration (declared schema and expectations).
pub const EXAMPLE_CONFIG: &str = include_str!("../../../examples/bikeshare/kiln.toml");
/// The example's data, gzip CSV as committed.
pub const EXAMPLE_DATA: &[u8] =
    include_bytes!("../../../examples/bikeshare/data/bike-rental-dataset.csv.gz");
const DATA_FILE: &str = "data/bike-rental-dataset.csv.gz";
const TRAIN_FILE: &str = "data/bikes-2011.csv";
const TRAFFIC_FILE: &str = "data/bikes-2012.csv";
/// The first model learns from 2011 up to here and validates on the rest of 2011.
const FIRST_CUTOFF: &str = "2011-11-01";
const MODEL: &str = "bikes";

#[derive(Args, Debug)]
pub struct QuickstartArgs {
    /// Project folder to create [default: a new folder under the system's temp folder]
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Address of the server it starts (port 0 picks a free one)
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Simulated hours of 2012 replayed per real second
    #[arg(long, default_value_t = 72.0)]
    pub speed: f64,
    /// Simulated time before a row's label comes back
    #[arg(long, default_value = "1d")]
    pub label_delay: String,
    /// Replay 2012 up to this date (exclusive)
    #[arg(long, default_value = "2013-01-01")]
    pub until: String,
    /// End after the summary instead of serving until Ctrl-C
    #[arg(long)]
    pub exit: bool,
    /// Set up, train and deploy only: no server, no replay (what scripts and benchmarks
    /// prepare a project with)
    #[arg(long, conflicts_with = "exit")]
    pub no_replay: bool,
    /// Print the summary as one JSON document
    #[arg(long)]
    pub json: bool,
}

/// One month of the replay: the served model's error against the frozen first model's.
#[derive(Clone, Debug, Serialize)]
struct Month {
    month: String,
    rows: u64,
    rmse_frozen: f64,
    rmse_automated: f64,
}

#[derive(Serialize)]
struct Retraining {
    id: i64,
    trigger: String,
    at: String,
    state: String,
    candidate: Option<i64>,
    message: Option<String>,
}

#[derive(Serialize)]
struct Summary {
    project: PathBuf,
    home: PathBuf,
    dataset: String,
    version: i64,
    snapshot_id: String,
    rows: u64,
    time_min: Option<String>,
    time_max: Option<String>,
    columns: usize,
    ingest_seconds: f64,
    run_id: i64,
    model: String,
    artifact_id: String,
    /// Validation metrics of the first model and its baselines.
    metrics: serde_json::Value,
    card: PathBuf,
    /// The replay and what automation did (absent with --no-replay).
    #[serde(flatten)]
    automation: Option<Automation>,
    seconds: f64,
}

#[derive(Serialize)]
struct Automation {
    url: String,
    replay: ReplaySummary,
    alerts_raised: usize,
    alerts: Vec<String>,
    models_trained: usize,
    promotions: usize,
    rejections: usize,
    rollbacks: usize,
    retrainings: Vec<Retraining>,
    production: Option<String>,
    labelled_rows: u64,
    months: Vec<Month>,
    rmse_frozen: f64,
    rmse_automated: f64,
    rmse_ratio_vs_frozen: f64,
}

/// Splits the bundled CSV by year of `dteday` (its first column) into the training file
/// (2011) and the traffic (2012).
fn split_years(dir: &Path) -> std::io::Result<(u64, u64)> {
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(EXAMPLE_DATA));
    let mut a = std::io::BufWriter::new(std::fs::File::create(dir.join(TRAIN_FILE))?);
    let mut b = std::io::BufWriter::new(std::fs::File::create(dir.join(TRAFFIC_FILE))?);
    let (mut na, mut nb) = (0, 0);
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
        if i == 0 {
            writeln!(a, "{line}")?;
            writeln!(b, "{line}")?;
        } else if line.starts_with("2011") {
            writeln!(a, "{line}")?;
            na += 1;
        } else {
            writeln!(b, "{line}")?;
            nb += 1;
        }
    }
    a.flush()?;
    b.flush()?;
    Ok((na, nb))
}

async fn ingest(
    global: &GlobalArgs,
    project: &Project,
    file: &Path,
    dataset: &str,
    json: bool,
) -> Result<kiln_data::AddOutcome, CliError> {
    Ok(kiln_data::add(
        &project.store,
        &project.config,
        &project.scratch(),
        &AddOptions {
            file: file.to_owned(),
            dataset: dataset.into(),
            time_column: None,
            target: None,
            append: false,
            allow_schema_change: false,
            source: None,
        },
        Bar::for_ingest(global, json),
    )
    .await?)
}

fn month_of(us: i64) -> String {
    crate::monitor::format_time(us).chars().take(7).collect()
}

/// (prediction, actual) pairs.
type Pairs = Vec<(f64, f64)>;

fn rmse(pairs: &[(f64, f64)]) -> f64 {
    if pairs.is_empty() {
        return f64::NAN;
    }
    (pairs.iter().map(|(p, a)| (p - a).powi(2)).sum::<f64>() / pairs.len() as f64).sqrt()
}

/// What was served vs what the frozen model would have served, on every labelled row of the
/// replay: by month and overall.
async fn compare(
    store: &Store,
    frozen: &kiln_model::artifact::ModelArtifact,
) -> Result<(Vec<Month>, f64, f64, u64), CliError> {
    let (labelled, _) = kiln_automate::harvest::labelled_after(
        store,
        &LabelQuery {
            model: MODEL.into(),
            from: None,
            to: None,
            after_feedback: None,
            limit: 10_000,
            features: true,
            served_only: true,
        },
    )
    .await
    .map_err(|e| CliError::system(e.to_string()))?;
    // The newest label of each prediction.
    let mut rows: BTreeMap<i64, (i64, String, String, String)> = BTreeMap::new();
    for l in labelled {
        rows.insert(
            l.prediction_id,
            (l.time, l.features.unwrap_or_default(), l.output, l.label),
        );
    }
    let mut inputs = Vec::with_capacity(rows.len());
    let mut kept = Vec::with_capacity(rows.len());
    for (time, features, output, label) in rows.values() {
        let served = serde_json::from_str::<Value>(output)
            .ok()
            .and_then(|v| v["value"].as_f64());
        let actual = serde_json::from_str::<Value>(label)
            .ok()
            .and_then(|v| v.as_f64());
        let input = serde_json::from_str::<Value>(features).ok();
        if let (Some(s), Some(a), Some(i)) = (served, actual, input) {
            inputs.push(i);
            kept.push((*time, s, a));
        }
    }
    let batcher = kiln_watch::window::json_batcher(frozen);
    let batch = batcher.batch(&inputs).map_err(|e| {
        CliError::system(format!(
            "logged inputs could not be read back: {:?}",
            e.first()
        ))
    })?;
    let scored = frozen
        .score(&batch)
        .map_err(|e| CliError::system(format!("the frozen model could not score: {e}")))?;
    let Predictions::Values(frozen_values) = scored.predictions else {
        return Err(CliError::system("the frozen model is not a regressor"));
    };
    let mut by_month: BTreeMap<String, (Pairs, Pairs)> = BTreeMap::new();
    let (mut all_f, mut all_a) = (Vec::new(), Vec::new());
    for ((time, served, actual), f) in kept.iter().zip(frozen_values) {
        let m = by_month.entry(month_of(*time)).or_default();
        m.0.push((f, *actual));
        m.1.push((*served, *actual));
        all_f.push((f, *actual));
        all_a.push((*served, *actual));
    }
    let months = by_month
        .into_iter()
        .map(|(month, (f, a))| Month {
            month,
            rows: f.len() as u64,
            rmse_frozen: rmse(&f),
            rmse_automated: rmse(&a),
        })
        .collect();
    Ok((months, rmse(&all_f), rmse(&all_a), kept.len() as u64))
}

/// Retrainings of one month of event time, for the narration.
#[derive(Default)]
struct MonthOfRetrains {
    month: String,
    promoted: u32,
    rejected: u32,
    failed: u32,
    production: Option<i64>,
}

impl MonthOfRetrains {
    fn print(&self) {
        if self.month.is_empty() {
            return;
        }
        println!(
            "   {}: {} retrainings, {} promoted, {} rejected by a gate, {} failed{}",
            self.month,
            self.promoted + self.rejected + self.failed,
            self.promoted,
            self.rejected,
            self.failed,
            self.production
                .map(|v| format!("; production is {MODEL}@{v}"))
                .unwrap_or_default()
        );
    }
}

/// Prints alerts as they fire, failed retrainings as they fail, and each month's
/// retrainings in one line (`kiln retrains list` has every one).
async fn narrate(store: Store, mut stop: tokio::sync::watch::Receiver<bool>) {
    let (mut alert_seen, mut retrain_seen) = (0, 0);
    let mut month = MonthOfRetrains::default();
    let mut stopping = false;
    loop {
        if let Ok(list) = store.meta.alerts(Some(MODEL), false, 50).await {
            let since = alert_seen;
            for a in list.iter().rev().filter(|a| a.id > since) {
                println!(
                    "   alert {} fired ({}, window from {}): {}",
                    a.alert.rule,
                    a.alert.severity,
                    crate::monitor::format_time(a.alert.window_start),
                    a.alert.message
                );
                alert_seen = a.id;
            }
        }
        if let Ok(list) = store.meta.retrains(Some(MODEL), 50).await {
            let since = retrain_seen;
            for r in list
                .iter()
                .rev()
                .filter(|r| r.id > since)
                .take_while(|r| r.state != "running")
            {
                let m = month_of(r.start.event_time);
                if m != month.month {
                    month.print();
                    month = MonthOfRetrains {
                        month: m,
                        ..MonthOfRetrains::default()
                    };
                }
                match r.state.as_str() {
                    "promoted" => {
                        month.promoted += 1;
                        month.production = r.candidate_version;
                    }
                    "rejected" => month.rejected += 1,
                    // On a shadow or canary rollout: the rollout's verdict promotes it or not.
                    "deployed" => {}
                    _ => {
                        month.failed += 1;
                        println!(
                            "   retrain #{} ({} at {}) failed: {}",
                            r.id,
                            r.start.trigger,
                            crate::monitor::format_time(r.start.event_time),
                            // What failed and the first thing the message names (for a
                            // refused harvest: the column and rule), not the scratch path.
                            r.message
                                .as_deref()
                                .map(|m| m
                                    .lines()
                                    .take(2)
                                    .map(|l| l.rsplit(".csv: ").next().unwrap_or(l).trim())
                                    .collect::<Vec<_>>()
                                    .join(": "))
                                .unwrap_or_default()
                        );
                    }
                }
                retrain_seen = r.id;
            }
        }
        if stopping {
            month.print();
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            // One more look, then the last month's line.
            _ = stop.changed() => stopping = true,
        }
    }
}

pub async fn run(global: &GlobalArgs, args: QuickstartArgs) -> Result<(), CliError> {
    let started = std::time::Instant::now();
    let dir = match args.dir.clone() {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("kiln-quickstart-{}", chrono_stamp())),
    };
    let config_path = dir.join("kiln.toml");
    if config_path.exists() {
        return Err(CliError::input(format!(
            "{} already has a kiln.toml\nhint: quickstart starts from a fresh folder; pass --dir NEW_FOLDER",
            dir.display()
        )));
    }
    let data_path = dir.join(DATA_FILE);
    let write = |path: &std::path::Path, bytes: &[u8]| {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, bytes)
    };
    let (rows_2011, rows_2012) = write(&config_path, EXAMPLE_CONFIG.as_bytes())
        .and_then(|_| write(&data_path, EXAMPLE_DATA))
        .and_then(|_| split_years(&dir))
        .map_err(|e| CliError::system(format!("cannot set up {}: {e}", dir.display())))?;

    let mut g = global.clone();
    g.config = Some(config_path.clone());
    let project = open(&g).await?;
    crate::init::write_admin_token(&project.home.join(crate::init::ADMIN_TOKEN_FILE))?;
    let talk = !global.quiet && !args.json;
    let say = |s: String| {
        if talk {
            println!("{s}");
        }
    };
    say(format!("project  {}", dir.display()));
    say(format!("home     {}", project.home.display()));
    say(String::new());
    say(format!(
        "1. data: {DATA_FILE} (UCI Bike Sharing, hourly) split by year: {} rows of 2011 to learn from, {} of 2012 to replay as traffic",
        count(rows_2011),
        count(rows_2012)
    ));
    let outcome = ingest(global, &project, &dir.join(TRAIN_FILE), MODEL, args.json).await?;
    let v = &outcome.version;
    let profile = load_profile(&project.store, &v.profile_id).await?;
    say(format!(
        "   bikes@{}  snapshot {}  {} rows  {} .. {}  ({} columns validated against kiln.toml, {:.2} s)",
        v.version,
        v.snapshot_id.short(),
        count(v.rows),
        v.time_min.as_deref().unwrap_or("?"),
        v.time_max.as_deref().unwrap_or("?"),
        profile.columns.len(),
        outcome.seconds
    ));
    let traffic = ingest(
        global,
        &project,
        &dir.join(TRAFFIC_FILE),
        "bikes-2012",
        args.json,
    )
    .await?;
    say(format!(
        "   bikes-2012@{}  snapshot {}  {} rows  {} .. {}  (the same rules: [datasets.bikes-2012] is like bikes)",
        traffic.version.version,
        traffic.version.snapshot_id.short(),
        count(traffic.version.rows),
        traffic.version.time_min.as_deref().unwrap_or("?"),
        traffic.version.time_max.as_deref().unwrap_or("?"),
    ));
    say(String::new());
    say(format!(
        "2. train: gradient-boosted trees on 2011 before {FIRST_CUTOFF}, validated on the rest of 2011"
    ));
    let spec = kiln_train::spec::TrainSpec::resolve(
        &project.config.train,
        &[format!("split.cutoff={FIRST_CUTOFF}")],
    )?;
    let trained = crate::train::train_with(global, &project, &spec, args.json).await?;
    if talk {
        crate::train::print_outcome(&trained);
    }
    let registered = trained.registered.clone().ok_or_else(|| {
        CliError::system(
            "the example's [train] table registers the model, but it was not registered",
        )
    })?;
    let model = format!("{}@{}", registered.model, registered.version);
    let artifact = kiln_train::registry::load(&project.store, &registered).await?;
    let card_path = dir.join("model-card.html");
    let card = kiln_train::card::html(&kiln_train::card::CardInput {
        version: &registered,
        artifact: &artifact,
        aliases: &[],
    });
    crate::models::write_atomic(&card_path, card.as_bytes())?;
    project
        .store
        .meta
        .set_alias(
            MODEL,
            "production",
            registered.version,
            Expect::Any,
            "quickstart: the first model, trained on 2011",
            "kiln-quickstart",
        )
        .await?;
    say(String::new());
    say(format!(
        "3. deploy: {model} is production; model card {}",
        card_path.display()
    ));

    let base = Summary {
        project: dir.clone(),
        home: project.home.clone(),
        dataset: v.dataset.clone(),
        version: v.version,
        snapshot_id: v.snapshot_id.to_string(),
        rows: v.rows,
        time_min: v.time_min.clone(),
        time_max: v.time_max.clone(),
        columns: profile.columns.len(),
        ingest_seconds: outcome.seconds,
        run_id: trained.run_id.unwrap_or_default(),
        model: model.clone(),
        artifact_id: trained.artifact_id.to_string(),
        metrics: serde_json::to_value(&trained.evaluation.metrics).unwrap_or_default(),
        card: card_path.clone(),
        automation: None,
        seconds: 0.0,
    };
    if args.no_replay {
        if talk {
            println!();
            println!("next steps:");
            println!("   cd {}", dir.display());
            println!(
                "   kiln serve                    # the live dashboard: http://127.0.0.1:8080/ (API: /docs)"
            );
            println!(
                "   kiln replay --dataset bikes-2012 --speed 72   # 2012 as live traffic, labels 1 day late"
            );
            println!(
                "   curl -s localhost:8080/v1/models/bikes/predict -H 'content-type: application/json' -d '{QUICK_ROW}'"
            );
        }
        if args.json {
            print_json(&Summary {
                seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
                ..base
            })?;
        }
        return Ok(());
    }

    // The server, with live monitoring, and the retrain controller beside it.
    let serve_args = crate::serve::ServeArgs {
        addr: Some(args.addr.clone()),
        ..Default::default()
    };
    let (mut config, credentials) = crate::serve::settings(global, &project, &serve_args)?;
    config.access_log = false;
    // The replay compresses a day into a third of a second: the log is written five times a
    // second (not once) so the monitor and the controller see each simulated day.
    config.log.flush_interval_ms = config.log.flush_interval_ms.min(200);
    let server = Server::bind(project.store.clone(), config, credentials)
        .await
        .map_err(crate::serve::serve_error)?;
    let addr = server.local_addr().map_err(crate::serve::serve_error)?;
    let url = format!("http://{addr}");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server_stop = {
        let mut rx = stop_rx.clone();
        async move {
            tokio::select! {
                _ = kiln_serve::shutdown_signal() => {}
                _ = rx.wait_for(|s| *s) => {}
            }
        }
    };
    let server_task = tokio::spawn(server.run(server_stop));
    let controller = crate::automate::controller(&project)?;
    // The controller has a stop of its own: it pauses while the summary is computed, so the
    // summary and the record agree.
    let start_controller = || {
        let c = controller.clone();
        let (tx, rx) = tokio::sync::watch::channel(false);
        (tx, tokio::spawn(async move { c.run(rx).await }))
    };
    let (pause_tx, controller_task) = start_controller();
    let (narrator_stop, narrator_rx) = tokio::sync::watch::channel(false);
    let narrator = talk.then(|| tokio::spawn(narrate(project.store.clone(), narrator_rx)));
    let s = &controller.settings;
    say(String::new());
    say(format!(
        "4. serve: {url}/ is the live dashboard ({url}/docs: the API); the retrain controller {}",
        match (s.schedule, &s.on_alerts) {
            (Some(every), _) => format!(
                "retrains every {} of event time and on alerts",
                kiln_core::value::format_duration(every)
            ),
            (None, _) => "retrains on alerts".into(),
        }
    ));
    say(String::new());
    say(format!(
        "5. replay: 2012 as live traffic, {} simulated hours per second, labels {} late",
        args.speed, args.label_delay
    ));
    let replay_args = ReplayArgs {
        dataset: "bikes-2012".into(),
        time_column: None,
        from: None,
        to: Some(args.until.clone()),
        speed: args.speed,
        label_delay: args.label_delay.clone(),
        url: url.clone(),
        model: Some(MODEL.into()),
        no_labels: false,
        api_key: std::env::var("KILN_API_KEYS")
            .ok()
            .and_then(|k| k.split(',').next().map(str::to_owned)),
        json: args.json,
    };
    let progress = |_: i64, _: &ReplaySummary| {};
    let replayed = replay(&project, &replay_args, &progress).await;
    let replayed = match replayed {
        Ok(r) => r,
        Err(e) => {
            let _ = stop_tx.send(true);
            let _ = pause_tx.send(true);
            let _ = narrator_stop.send(true);
            return Err(e);
        }
    };
    // Every prediction written, and the controller done with what it started.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let logged = project.store.meta.prediction_count(Some(MODEL)).await?;
        let running = project
            .store
            .meta
            .retrains(Some(MODEL), 1)
            .await?
            .first()
            .is_some_and(|r| r.state == "running");
        if logged as u64 >= replayed.rows && !running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = pause_tx.send(true);
    let _ = controller_task.await;
    let _ = narrator_stop.send(true);
    if let Some(n) = narrator {
        let _ = n.await;
    }

    let (months, rmse_frozen, rmse_automated, labelled_rows) =
        compare(&project.store, &artifact).await?;
    let alerts = project
        .store
        .meta
        .alerts(Some(MODEL), false, 10_000)
        .await?;
    let retrains = project.store.meta.retrains(Some(MODEL), 10_000).await?;
    let history = project.store.meta.alias_history(MODEL).await?;
    let production = project
        .store
        .meta
        .alias(MODEL, "production")
        .await?
        .map(|a| format!("{MODEL}@{}", a.version));
    let rollouts = project
        .store
        .meta
        .rollouts(Some(MODEL), false, 10_000)
        .await?;
    let by_state = |s: &str| retrains.iter().filter(|r| r.state == s).count();
    let rollouts_by = |s: &str| rollouts.iter().filter(|r| r.state == s).count();
    let summary = Summary {
        automation: Some(Automation {
            url: url.clone(),
            replay: replayed,
            alerts_raised: alerts.len(),
            alerts: alerts.iter().rev().map(|a| a.alert.rule.clone()).collect(),
            models_trained: 1 + retrains.iter().filter(|r| r.run_id.is_some()).count(),
            // Direct promotions by a retraining, and rollouts whose challenger won.
            promotions: by_state("promoted") + rollouts_by("promoted"),
            rejections: by_state("rejected"),
            // Rollouts rolled back by a breach, and alias rollbacks made by hand.
            rollbacks: rollouts_by("rolled_back")
                + history
                    .iter()
                    .filter(|m| m.reason.starts_with("rollback"))
                    .count(),
            retrainings: retrains
                .iter()
                .rev()
                .map(|r| Retraining {
                    id: r.id,
                    trigger: r.start.trigger.clone(),
                    at: crate::monitor::format_time(r.start.event_time),
                    state: r.state.clone(),
                    candidate: r.candidate_version,
                    message: r.message.clone(),
                })
                .collect(),
            production,
            labelled_rows,
            months,
            rmse_frozen,
            rmse_automated,
            rmse_ratio_vs_frozen: rmse_automated / rmse_frozen,
        }),
        seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        ..base
    };
    if talk {
        print_summary(&summary);
    }
    if args.json {
        print_json(&summary)?;
    }
    let mut controller_task = None;
    if !args.exit {
        controller_task = Some(start_controller());
        if talk {
            println!();
            println!("serving at {url}/ until Ctrl-C (the controller keeps watching)");
            println!("   cd {}", dir.display());
            println!(
                "   kiln retrains list            # every retraining: trigger, gates, outcome"
            );
            println!("   kiln models alias history bikes   # every promotion, with its reason");
            println!("   kiln monitor report --model bikes --html report.html");
            println!("   kiln alerts list");
        }
        let mut rx = stop_rx.clone();
        tokio::select! {
            _ = kiln_serve::shutdown_signal() => {}
            _ = rx.wait_for(|s| *s) => {}
        }
    }
    let _ = stop_tx.send(true);
    if let Some((pause, task)) = controller_task {
        let _ = pause.send(true);
        let _ = task.await;
    }
    match server_task.await {
        Ok(r) => r.map_err(crate::serve::serve_error)?,
        Err(e) => return Err(CliError::system(format!("the server task failed: {e}"))),
    }
    Ok(())
}

fn print_summary(summary: &Summary) {
    let Some(s) = &summary.automation else {
        return;
    };
    println!();
    println!("6. summary");
    println!(
        "   {} rows replayed ({} requests, {} refused), {} labels joined",
        count(s.replay.rows),
        count(s.replay.requests),
        s.replay.failed_requests,
        count(s.labelled_rows)
    );
    println!(
        "   alerts raised {}, models trained {}, promotions {}, rejected candidates {}, rollbacks {}; production is {}",
        s.alerts_raised,
        s.models_trained,
        s.promotions,
        s.rejections,
        s.rollbacks,
        s.production.as_deref().unwrap_or("-")
    );
    let rows: Vec<Vec<String>> = s
        .months
        .iter()
        .map(|m| {
            vec![
                m.month.clone(),
                count(m.rows),
                format!("{:.1}", m.rmse_frozen),
                format!("{:.1}", m.rmse_automated),
                format!("{:.2}", m.rmse_automated / m.rmse_frozen),
            ]
        })
        .chain(std::iter::once(vec![
            "all".into(),
            count(s.labelled_rows),
            format!("{:.1}", s.rmse_frozen),
            format!("{:.1}", s.rmse_automated),
            format!("{:.2}", s.rmse_ratio_vs_frozen),
        ]))
        .collect();
    print!(
        "{}",
        crate::output::table(
            &[
                "month",
                "rows",
                "RMSE frozen 2011 model",
                "RMSE with automation",
                "ratio"
            ],
            &rows
        )
        .lines()
        .map(|l| format!("   {l}\n"))
        .collect::<String>()
    );
    println!(
        "   with automation, 2012's RMSE is {:.2}x the frozen 2011 model's ({:.1} vs {:.1}), in {:.0} s",
        s.rmse_ratio_vs_frozen, s.rmse_automated, s.rmse_frozen, summary.seconds
    );
}

/// One row of the example, for the curl line of the next steps.
const QUICK_ROW: &str = r#"{"instances": [{"dteday": "2012-07-01", "season": "fall", "hr": "3pm", "holiday": "No", "weekday": "Sun", "workingday": "No", "weathersit": "Clear", "temp": 34.3, "atemp": 38.0, "hum": 37.0, "windspeed": 19.0}]}"#;

/// A sortable, unique-enough folder suffix: seconds since the epoch and the process id.
fn chrono_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{secs}-{}", std::process::id())
}
