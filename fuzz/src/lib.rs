//! What the fuzz targets share: the models the request-body targets score against, trained
//! once per process from the bikeshare example (a few hundred rows, a few trees), and the
//! configurations the ingest target reads files with.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use kiln_core::config::{Config, Policy};
use kiln_model::artifact::MAGIC;
use kiln_serve::ServeConfig;
use kiln_serve::catalog::LoadedModel;
use kiln_serve::config::RangePolicy;
use kiln_serve::metrics::Metrics;
use kiln_store::{Store, StoreLocation};

/// The repository's root (this crate lives in `fuzz/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The bikeshare example's `kiln.toml`: declared types and rules for the `bikes` dataset.
pub fn bikes_config() -> Config {
    let path = repo_root().join("examples/bikeshare/kiln.toml");
    let text = std::fs::read_to_string(&path).expect("examples/bikeshare/kiln.toml");
    Config::parse(&text, &path).expect("the example's kiln.toml parses")
}

/// The first `rows` data rows of the bikeshare example, with its header, as CSV text.
pub fn bikes_csv(rows: usize) -> String {
    use std::io::BufRead;
    let path = repo_root().join("examples/bikeshare/data/bike-rental-dataset.csv.gz");
    let file = std::fs::File::open(&path).expect("the bikeshare example data");
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(file));
    let mut out = String::new();
    for line in reader.lines().take(rows + 1) {
        out.push_str(&line.expect("gzip CSV"));
        out.push('\n');
    }
    out
}

/// One model the request-body targets score against, with the server settings it is served
/// under.
pub struct Served {
    pub model: LoadedModel,
    pub config: ServeConfig,
}

/// Models of each kind the server scores: a tree regressor (out-of-range values flagged), a
/// tree classifier (out-of-range values refused) and a linear regressor.
pub struct Models {
    pub served: Vec<Served>,
    pub metrics: Metrics,
    _home: tempfile::TempDir,
}

/// The models, trained on first use (a few seconds) and kept for the process. With
/// `KILN_FUZZ_WRITE_SEEDS=DIR`, the Parquet part and the model files made on the way are
/// written to `DIR` (how `corpus/` got them).
pub fn models() -> &'static Models {
    static MODELS: OnceLock<Models> = OnceLock::new();
    MODELS.get_or_init(train_models)
}

fn train_models() -> Models {
    let home = tempfile::tempdir().expect("a temporary folder");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let metrics = Metrics::new().expect("metrics");
    let artifacts = runtime.block_on(async {
        let store = Store::open(&StoreLocation::in_home(home.path()))
            .await
            .expect("a store");
        let config = bikes_config();
        let scratch = StoreLocation::scratch_dir(home.path());
        std::fs::create_dir_all(&scratch).expect("scratch folder");
        let csv = home.path().join("bikes.csv");
        std::fs::write(&csv, bikes_csv(400)).expect("write bikes.csv");
        let added = kiln_data::ingest::add(
            &store,
            &config,
            &scratch,
            &kiln_data::ingest::AddOptions {
                file: csv,
                dataset: "bikes".into(),
                time_column: None,
                target: None,
                append: false,
                allow_schema_change: false,
                source: None,
            },
            Arc::new(kiln_data::ingest::NoProgress),
        )
        .await
        .expect("ingest of the bikeshare rows");
        let seeds = std::env::var_os("KILN_FUZZ_WRITE_SEEDS").map(PathBuf::from);
        if let Some(dir) = &seeds {
            // The stored snapshot part: a real Parquet file, seed of the ingest target.
            let part = &added.version.parts[0];
            let bytes = store.artifacts.get_bytes(&part.id).await.expect("the part");
            std::fs::write(dir.join("bikes.parquet"), &bytes).expect("write a seed");
        }
        let mut out = Vec::new();
        for overrides in [
            &["gbdt.iterations=3"][..],
            &[
                "gbdt.iterations=3",
                "target=workingday",
                "register=workday",
                "exclude=[\"casual\", \"registered\", \"cnt\", \"weekday\", \"holiday\"]",
            ][..],
            &["learner=linear", "register=bikes-linear"][..],
        ] {
            let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
            let spec = kiln_train::spec::TrainSpec::resolve(&config.train, &overrides)
                .expect("training settings");
            let outcome = kiln_train::train::train(
                &store,
                &config,
                &scratch,
                &spec,
                None,
                Arc::new(kiln_train::train::Quiet),
            )
            .await
            .expect("training");
            let version = outcome.registered.expect("a registered version");
            let artifact = kiln_train::registry::load(&store, &version)
                .await
                .expect("the artifact loads");
            if let Some(dir) = &seeds {
                // The model file, and its JSON: seeds of the model_artifact target.
                let bytes = store
                    .artifacts
                    .get_bytes(&version.artifact_id)
                    .await
                    .expect("the model file");
                let name = &version.model;
                std::fs::write(dir.join(format!("{name}.kilnmodl")), &bytes).expect("write a seed");
                let json = zstd::stream::decode_all(&bytes[MAGIC.len()..]).expect("zstd");
                std::fs::write(dir.join(format!("{name}.json")), json).expect("write a seed");
            }
            out.push((version.model.clone(), version.version, artifact));
        }
        store.meta.pool().close().await;
        out
    });
    let served = artifacts
        .into_iter()
        .enumerate()
        .map(|(i, (name, version, artifact))| Served {
            model: LoadedModel::new(&name, version, artifact, &metrics),
            config: ServeConfig {
                out_of_range: if i == 1 {
                    RangePolicy::Reject
                } else {
                    RangePolicy::Flag
                },
                max_rows: 64,
                ..ServeConfig::default()
            },
        })
        .collect();
    Models {
        served,
        metrics,
        _home: home,
    }
}

/// Where the ingest target writes its inputs, and the settings it reads them with.
pub struct IngestEnv {
    pub dir: tempfile::TempDir,
    /// No declared columns (every type inferred), small batches (several per file).
    pub inferred: Config,
    /// The bikeshare example's declared types and rules, bad rows quarantined.
    pub declared: Config,
}

pub fn ingest_env() -> &'static IngestEnv {
    static ENV: OnceLock<IngestEnv> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut inferred = Config::default();
        inferred.ingest.batch_rows = 4;
        inferred.ingest.infer_rows = 6;
        inferred.ingest.max_errors_shown = 3;
        let mut declared = bikes_config();
        declared.ingest.batch_rows = 5;
        declared.ingest.infer_rows = 5;
        if let Some(d) = declared.datasets.get_mut("bikes") {
            d.policy = Policy::Quarantine;
        }
        IngestEnv {
            dir: tempfile::tempdir().expect("a temporary folder"),
            inferred,
            declared,
        }
    })
}

/// With `KILN_FUZZ_PRINT` set, prints what a target's call returned (to see what a
/// reproducer or a seed does: `KILN_FUZZ_PRINT=1 cargo fuzz run TARGET FILE`).
pub fn show<T: std::fmt::Debug, E: std::fmt::Display>(what: &str, result: &Result<T, E>) {
    static PRINT: OnceLock<bool> = OnceLock::new();
    if *PRINT.get_or_init(|| std::env::var_os("KILN_FUZZ_PRINT").is_some()) {
        match result {
            Ok(v) => eprintln!("{what}: ok {v:?}"),
            Err(e) => eprintln!("{what}: error {e}"),
        }
    }
}

/// An API error as the client reads it: status, code, message.
pub fn api_error(e: &kiln_serve::ApiError) -> String {
    format!("{} {}: {}", e.status, e.code(), e.detail.message)
}
