//! `kiln quickstart`: the reference deployment, end to end, in a fresh home.
//!
//! The bundled example (hourly bike-rental demand, UCI Bike Sharing 2011–2012) and its
//! kiln.toml are compiled into the binary, so the command works from any folder. It sets up a
//! project, ingests the data as a validated, profiled snapshot, trains and registers a model
//! with the recipe in the example's `[train]` table, and writes its model card.

use std::path::PathBuf;

use clap::Args;
use kiln_data::AddOptions;
use kiln_data::ingest::load_profile;
use serde::Serialize;

use crate::GlobalArgs;
use crate::context::open;
use crate::output::{Bar, CliError, count, print_json};

/// The example's configuration (declared schema and expectations).
pub const EXAMPLE_CONFIG: &str = include_str!("../../../examples/bikeshare/kiln.toml");
/// The example's data, gzip CSV as committed.
pub const EXAMPLE_DATA: &[u8] =
    include_bytes!("../../../examples/bikeshare/data/bike-rental-dataset.csv.gz");
const DATA_FILE: &str = "data/bike-rental-dataset.csv.gz";

#[derive(Args, Debug)]
pub struct QuickstartArgs {
    /// Project folder to create [default: a new folder under the system's temp folder]
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print the summary as one JSON document
    #[arg(long)]
    pub json: bool,
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
    /// Validation metrics of the model and its baselines.
    metrics: serde_json::Value,
    card: PathBuf,
}

pub async fn run(global: &GlobalArgs, args: QuickstartArgs) -> Result<(), CliError> {
    let dir = match args.dir {
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
    write(&config_path, EXAMPLE_CONFIG.as_bytes())
        .and_then(|_| write(&data_path, EXAMPLE_DATA))
        .map_err(|e| CliError::system(format!("cannot set up {}: {e}", dir.display())))?;

    let mut g = global.clone();
    g.config = Some(config_path.clone());
    let project = open(&g).await?;
    crate::init::write_admin_token(&project.home.join(crate::init::ADMIN_TOKEN_FILE))?;
    let say = |s: String| {
        if !global.quiet && !args.json {
            println!("{s}");
        }
    };
    say(format!("project  {}", dir.display()));
    say(format!("home     {}", project.home.display()));
    say(String::new());
    say(format!(
        "1. data: ingest {} (UCI Bike Sharing, hourly, 2011-2012)",
        DATA_FILE
    ));
    let outcome = kiln_data::add(
        &project.store,
        &project.config,
        &project.scratch(),
        &AddOptions {
            file: data_path.clone(),
            dataset: "bikes".into(),
            time_column: None,
            target: None,
            append: false,
            allow_schema_change: false,
        },
        Bar::for_ingest(global, args.json),
    )
    .await?;
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
    say(String::new());
    say(
        "2. train: gradient-boosted trees on 2011-01 .. 2012-06, validated on 2012-07 .. 2012-12"
            .into(),
    );
    let spec = kiln_train::spec::TrainSpec::resolve(&project.config.train, &[])?;
    let trained = crate::train::train_with(global, &project, &spec, args.json).await?;
    if !global.quiet && !args.json {
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
    say(String::new());
    say(format!("3. model card: {}", card_path.display()));
    say(String::new());
    say("next steps:".into());
    if let Ok(exe) = std::env::current_exe() {
        say(format!(
            "   (kiln is {}; `cargo install --path crates/kiln-cli` puts it on your PATH)",
            exe.display()
        ));
    }
    let cd = format!("cd {}", dir.display());
    say(format!("   {cd}"));
    say("   kiln data show bikes          # lineage, schema and column profiles".into());
    say("   kiln data log bikes           # versions".into());
    say("   kiln data export bikes --format parquet -o bikes.parquet".into());
    say(
        "   kiln runs show 1              # parameters, data, code version, metrics, timings"
            .into(),
    );
    say(format!(
        "   kiln models alias set production {model} --reason \"first model\""
    ));
    say(format!(
        "   kiln predict --model {model} --input {DATA_FILE} -o predictions.csv"
    ));
    say("   kiln serve                    # the live dashboard: http://127.0.0.1:8080/ (API: /docs)".into());
    say(format!(
        "   curl -s localhost:8080/v1/models/bikes/predict -H 'content-type: application/json' -d '{}'",
        QUICK_ROW
    ));
    say("   kiln monitor --model bikes    # drift and performance over what was served".into());
    if args.json {
        print_json(&Summary {
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
            model,
            artifact_id: trained.artifact_id.to_string(),
            metrics: serde_json::to_value(&trained.evaluation.metrics).unwrap_or_default(),
            card: card_path,
        })?;
    }
    Ok(())
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
