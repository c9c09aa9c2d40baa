//! `kiln.toml`: the project's configuration.
//!
//! Precedence, highest first: command-line flags, `KILN_*` environment variables, `kiln.toml`,
//! the defaults documented in [`TEMPLATE`]. The CLI resolves flags and environment variables
//! (clap reads both); this module reads the file and supplies the defaults. Unknown keys are
//! errors, so a typo never silently does nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::names::{BadName, validate_name};
use crate::schema::FeatureType;

/// The file name Kiln looks for in the working folder and its parents.
pub const CONFIG_FILE: &str = "kiln.toml";

/// The commented file `kiln init` writes; every default is spelled out in it.
pub const TEMPLATE: &str = r#"# kiln.toml: configuration of a Kiln project.
# Precedence: command-line flags > KILN_* environment variables > this file > defaults.

[store]
# Kiln's home folder (the default database and artifact store live in it).
# Relative paths are relative to this file. Env: KILN_HOME. Flag: --home.
home = ".kiln"
# Metadata database: "sqlite://PATH" or "postgres://USER:PASS@HOST:PORT/DB".
# Default: a SQLite file kiln.db in the home folder. Env: KILN_DB. Flag: --db.
# db = "sqlite://.kiln/kiln.db"
# Artifact store: a folder path (or file:// URL). Default: the folder artifacts/ in the home.
# Or an S3 bucket: "s3://BUCKET/PREFIX", credentials from AWS_ACCESS_KEY_ID and
# AWS_SECRET_ACCESS_KEY; endpoint and region from AWS_ENDPOINT_URL and AWS_REGION or [store.s3].
# Env: KILN_ARTIFACTS. Flag: --artifacts.
# artifacts = ".kiln/artifacts"

# [store.s3]                    # for an S3-compatible server (MinIO, SeaweedFS, ...)
# endpoint = "http://127.0.0.1:9000"
# region = "us-east-1"          # default with an endpoint
# allow_http = true             # needed for an http:// endpoint

[log]
# "human" or "json". Env: KILN_LOG_FORMAT. Flag: --log-format.
format = "human"

[ingest]
# Rows per batch while streaming a file (memory grows with it).
batch_rows = 65536
# Rows read to infer a schema on a dataset's first add.
infer_rows = 10000
# Violations listed in a validation report (all are counted).
max_errors_shown = 20

# One table per dataset. Everything is optional: with no table, the schema is inferred.
# [datasets.NAME]
# like = "OTHER"                # take OTHER's columns, time column and target (e.g. the
#                               # traffic replayed later, from the same source)
# time_column = "date"          # orders rows in time; time ranges and time splits use it
# target = "label"              # what models will learn to predict
# policy = "reject"             # "reject": a file with any bad row stores nothing (exit 2);
#                               # "quarantine": bad rows are stored aside and counted
# allow_schema_change = false   # like --allow-schema-change on every add
#
# [datasets.NAME.columns.COLUMN]
# type = "numeric"              # numeric | categorical | boolean | timestamp | date | text
#                               # (without it: min/max imply numeric, allowed/regex imply
#                               # categorical, otherwise the type is inferred from the data)
# min = 0                       # numeric: smallest allowed value
# max = 100                     # numeric: largest allowed value
# allowed = ["a", "b"]          # categorical: the allowed values
# max_null_fraction = 0.05      # share of missing values above which the file is rejected
# unique = false                # every value distinct within a snapshot
# regex = "^[A-Z]{3}$"          # categorical/text: each value must match

# How `kiln train` trains. Every key is optional; `kiln train --set KEY=VALUE` overrides one
# (e.g. --set gbdt.iterations=200 --set split.method=random).
# [train]
# dataset = "NAME"              # NAME or NAME@VERSION [default: the only dataset]
# target = "label"              # [default: the dataset's target]
# exclude = ["id"]              # columns that must never be features (ids, leaks of the target)
# learner = "gbdt"              # gbdt | linear
# seed = 0                      # seeds the random split, folds and the learner
# register = "NAME"             # register the trained model under this name
# window = "56d"                # learn from the rows within this duration of the latest time
# recency_half_life = "30d"     # weigh rows by recency: this much older counts half (gbdt)
# [train.split]
# method = "auto"               # auto (time when the dataset has a time column) | time | random
# valid_fraction = 0.2          # share of rows (the most recent ones, for time) to validate on
# cutoff = "2012-07-01"         # time split: validate on rows at or after this date/time
# folds = 0                     # >= 2: also cross-validate (random splits only)
# refit = false                 # after evaluation, fit again on training + validation rows
#                               # (the metrics stay those of the holdout fit)
# [train.gbdt]
# iterations = 80               # boosting rounds
# learning_rate = 0.15
# max_depth = 7
# max_leaves = 63
# min_leaf_weight = 20.0
# l2 = 1.0
# [train.linear]
# l2 = 1.0                      # ridge / logistic regularization

# How `kiln serve` serves the models that have one of `aliases`. Every key is optional.
# [serve]
# addr = "127.0.0.1:8080"       # Env: KILN_SERVE_ADDR. Flag: --addr.
# aliases = ["production", "staging", "shadow", "canary"]   # aliases loaded and kept ready;
#                               # requests without ?alias= or ?version= get `production`
# poll_interval_ms = 500        # how often alias moves in the registry are picked up
# canary_share = 0.1            # share of requests a `canary` alias answers when no running
#                               # rollout states one (sticky by x-kiln-route-key, else the
#                               # request's first key, else its id); a `shadow` alias scores
#                               # a copy of production's requests, logged, never returned
# body_limit_bytes = 4194304    # larger bodies: 413
# max_rows = 10000              # rows per request, at most (413 above)
# request_timeout_ms = 10000    # slower requests: 503 `timeout`
# out_of_range = "flag"         # a number outside the training range: "flag" (score it, flag
#                               # the row, count it) or "reject" (422)
# access_log = true             # one log line per request (with --log-format json: JSON)
# [serve.log]                   # the prediction log (every prediction, written in batches)
# enabled = true                # Flag: --no-prediction-log.
# flush_interval_ms = 1000      # longest a prediction waits to be written (what a crash loses)
# queue_rows = 100000           # predictions waiting at most; then `overflow` applies
# batch_rows = 1000             # most predictions per write
# overflow = "block"            # "block": requests wait for room (nothing lost);
#                               # "drop": answered but not logged, counted in /metrics
# [serve.auth]
# admin_token_file = ".kiln/admin.token"   # default: admin.token in the home (kiln init
#                               # writes it, mode 0600). Env KILN_ADMIN_TOKEN overrides.
# api_keys_file = "keys.txt"    # one key per line: prediction routes then need one.
#                               # Env KILN_API_KEYS (comma-separated) overrides.
# feedback = "api_key"          # who may POST /v1/feedback: "open" | "api_key" | "admin"
# [serve.tls]                   # HTTPS (flags: --tls-cert, --tls-key)
# cert = "tls/cert.pem"         # the certificate chain, PEM, relative to this file
# key = "tls/key.pem"           # its private key, PEM

# Monitoring: `kiln serve` watches every served model live (it needs the prediction log);
# `kiln monitor` does the same over any stored range. Each window of predictions is compared
# with the model's reference (its training inputs, validation predictions and metrics).
# [monitor]
# live = true                   # monitor inside kiln serve
# scope = "replica"             # what it monitors: "replica" (what this server logs) or "shared"
#                               # (every replica's log, read back from the database)
# window = "1h"                 # live windows of event time (30m, 1h, 1d, 7d) ...
# window_rows = 10000           # ... or of this many predictions (not both)
# interval = "10s"              # how often the current window is evaluated and judged
# history = 48                  # closed windows kept for the dashboard and late labels
# webhook = "http://alerts.internal/kiln"  # alert transitions POSTed as JSON (http only)
#
# Alert rules. Without any, four apply: data_drift (drift_share), prediction_drift,
# realized_performance (critical) and estimated_performance, on MAE or accuracy, factor 1.5.
# [[monitor.alerts]]
# name = "temperature"          # unique; what `kiln alerts list` and /metrics show
# when = "feature_drift"        # drift_share | feature_drift | prediction_drift |
#                               # target_drift | realized | estimated | missing_rate |
#                               # out_of_range_rate | error_rate | latency_p99_ms
# feature = "temp"              # feature_drift; missing_rate / out_of_range_rate (else any)
# metric = "mae"                # realized / estimated: mae, rmse, accuracy, f1, roc_auc
# factor = 1.5                  # realized / estimated: worse than the reference by this
#                               # factor (rates: their shortfall from 1)
# threshold = 0.05              # drift_share, the rates (shares) and latency_p99_ms (ms)
# severity = "warning"          # info | warning | critical
# min_rows = 100                # rows a window needs before it is judged (labelled rows
#                               # for realized and target_drift)
#
# How drift is tested (here, in `kiln data diff --drift` and in monitoring). Every key is
# optional; by default each column gets the test Evidently's DataDriftPreset would pick.
# [monitor.drift]
# share = 0.5                   # the dataset drifts when this share of its columns drifts
# method = "psi"                # one test for every column: "ks", "chisquare", "z" (p-values:
#                               # drift below the threshold), "wasserstein", "jensenshannon",
#                               # "psi" (distances: drift at or above it)
# threshold = 0.1
# [monitor.drift.columns.temp]  # one column's own test and threshold
# method = "ks"
# threshold = 0.01

# Retention of the prediction log: old days move from the database to Parquet files in the
# artifact store (`kiln log compact`, or kiln serve every `interval`); `kiln monitor` still
# reads them, labels included. Ages count back from the newest event time logged per model.
# [retention]
# compact_after = "30d"         # archive days that ended longer ago than this (default: never)
# delete_after = "400d"         # delete days, archived or not, older than this (default: never)
# interval = "1h"               # how often kiln serve applies it (one replica does, by lease)

# The retrain controller (`kiln watch`, or inside `kiln serve` when enabled). Its clock is the
# latest event time in the prediction log, so a replay in simulated time drives it too.
# [automate]
# enabled = false               # run it inside kiln serve
# model = "NAME"                # the model it looks after [default: [train] register]
# alias = "production"          # the alias the champion holds
# dataset = "NAME"              # labelled production rows are appended here [default:
#                               # [train] dataset]
# schedule = "7d"               # retrain this often (event time), alerts or not
# on_alerts = ["data_drift"]    # alert rules that trigger it [default: any firing alert]
# cooldown = "1d"               # event time between two retrainings
# max_retrains = 24             # at most this many per period
# period = "7d"
# min_labelled_rows = 100       # new labelled production rows a retraining needs
# margin = -0.05                # the candidate vs the champion, on validation rows after the
#                               # champion's data: 0.02 = at least 2% better, -0.05 = at most
#                               # 5% worse (its holdout fit knew no more than the champion;
#                               # with split.refit it then learns the newest rows too)
# max_latency_ms = 50           # single-row predict latency bound (median of 25)
# poll = "1s"                   # how often it looks (wall clock)
# pipeline = false              # true: after the harvest, retrain by running [pipeline]
#                               # (train or command + import, gate, deploy; no ingest stage)
#                               # instead of the built-in train, gates and alias move
# strategy = "direct"           # a candidate that passed the gates: "direct" (production at
#                               # once), "shadow" or "canary" (a rollout judged on live labels)
# [automate.rollout]
# share = 0.1                   # canary: share of requests it answers
# samples = 200                 # labelled rows a side at which one one-sided test decides
# confidence = 0.95             # promote when p < 1 - confidence, else discard
# max_duration = "7d"           # short of its sample by then (event time): discarded
# max_p99_ms = 100              # roll back earlier (after samples/4 rows) when its p99 latency
# max_worse = 1.5               # or its mean loss (squared error, 0/1) exceeds the champion's
#                               # times this
# max_error_rate = 0.01         # or it fails more than this share of the requests production
#                               # answered (from 3 failures; a failed canary request is
#                               # answered by production)
# [automate.train]              # [train] keys retrainings override ([train]'s fixed
# recency_half_life = "30d"     # split.cutoff is dropped: they validate on the newest rows)
# [automate.train.split]
# refit = true                  # ship the model refit on validation rows too

# The pipeline `kiln pipeline run` executes in order, skipping each stage whose inputs (data
# and dep files by content hash, its settings, the config sections it reads, upstream outputs,
# Kiln's version) are unchanged since it last succeeded and whose outputs still exist.
# `kiln pipeline status` says which stages are stale and why. Without [[pipeline.stages]]:
# ingest and validate `source` into [train] dataset (when `source` is set), then train, gate
# and deploy.
# [pipeline]
# name = "default"              # runs and the cache are kept per pipeline name
# # source = "data/hour.csv.gz" # only without [[pipeline.stages]]: the default pipeline's
#                               # data file (relative to this file)
#
# [[pipeline.stages]]
# name = "ingest"               # unique; what status, runs and errors call it
# kind = "ingest"               # ingest | validate | train | import | gate | deploy | command
# dataset = "bikes"             # ingest: `kiln data add PATH --dataset DATASET`
# path = "data/hour.csv.gz"     #   (identical content adds no version)
# [[pipeline.stages]]
# name = "validate"
# kind = "validate"             # the upstream snapshot against [datasets.NAME]'s rules now;
#                               # any violation fails the pipeline
# [[pipeline.stages]]
# name = "train"
# kind = "train"                # [train] (and `set` over it) on the upstream snapshot;
# set = { gbdt.iterations = 200 }     # trains, evaluates against the baselines and the
#                               # champion, registers: evaluate and register happen here
# [[pipeline.stages]]
# name = "export"
# kind = "command"              # your own code: run with this file's folder as the cwd
# run = "python3 train.py"      # a shell command, or an argv list ["python3", "train.py"]
# deps = ["train.py", "data/hour.csv.gz"]   # files whose content keys the cache
# outs = ["model.onnx"]         # files it must write (missing after the run: failed)
# env = { SEED = "0" }
# [[pipeline.stages]]
# name = "import"
# kind = "import"               # an ONNX file (e.g. a command's out) imported and evaluated
# file = "model.onnx"           # like `kiln models import`; registered under `model`
# schema = "model.schema.json"  # [default model: [train] register]
# [[pipeline.stages]]
# name = "gate"
# kind = "gate"                 # beats_baseline, vs_champion, latency; a failure stops the
# margin = -0.05                # pipeline before deploy (exit 1) and production is untouched
# max_latency_ms = 50
# [[pipeline.stages]]
# name = "deploy"
# kind = "deploy"               # moves `alias` to the candidate, compare-and-set against the
# alias = "production"          # revision the gate saw; actor `kiln-pipeline`
# strategy = "direct"           # or "shadow" / "canary": the candidate goes on a rollout
#                               # against `alias`, judged by the controller ([automate.rollout])
# # share = 0.1                 # canary only: its share of requests
"#;

/// A problem with `kiln.toml`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Name { path: PathBuf, source: BadName },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The whole file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub ingest: IngestConfig,
    #[serde(default)]
    pub datasets: BTreeMap<String, DatasetConfig>,
    /// `[train]`: how `kiln train` trains (read and checked by the training stage, which owns
    /// its keys; `kiln train --set KEY=VALUE` overrides them).
    #[serde(default)]
    pub train: toml::Table,
    /// `[serve]`: how `kiln serve` serves (read and checked by the serving stage).
    #[serde(default)]
    pub serve: toml::Table,
    /// `[monitor]`: how drift is tested (read and checked by the monitoring stage).
    #[serde(default)]
    pub monitor: toml::Table,
    /// `[automate]`: when and how the retrain controller retrains and promotes (read and
    /// checked by the automation stage).
    #[serde(default)]
    pub automate: toml::Table,
    /// `[pipeline]`: the stages `kiln pipeline run` executes and caches (read and checked by
    /// the automation stage).
    #[serde(default)]
    pub pipeline: toml::Table,
    /// `[retention]`: when old days of the prediction log move to Parquet archives and when
    /// they are deleted (checked by the monitoring stage, which reads the archives).
    #[serde(default)]
    pub retention: RetentionConfig,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub home: Option<PathBuf>,
    pub db: Option<String>,
    pub artifacts: Option<String>,
    /// `[store.s3]`: how to reach an `s3://` artifact store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Config>,
}

/// `[store.s3]`: the S3 endpoint of an `s3://` artifact store, for S3-compatible servers.
/// Each setting, when present, takes precedence over its `AWS_*` environment variable.
/// Credentials are not accepted here: they come from the environment only.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// The server's URL, e.g. `http://127.0.0.1:9000` (AWS_ENDPOINT_URL otherwise).
    pub endpoint: Option<String>,
    /// The region requests are signed for (AWS_REGION otherwise).
    pub region: Option<String>,
    /// Allow plain `http://` endpoints (AWS_ALLOW_HTTP otherwise).
    pub allow_http: Option<bool>,
}

/// `[retention]` as written: durations like `30d` or `12w`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Compact days of the log that ended longer ago than this into Parquet archives.
    pub compact_after: Option<String>,
    /// Delete days of the log (archived or not) that ended longer ago than this.
    pub delete_after: Option<String>,
    /// How often `kiln serve` applies the policy (default 1h).
    pub interval: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    pub batch_rows: usize,
    pub infer_rows: usize,
    pub max_errors_shown: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            batch_rows: 65_536,
            infer_rows: 10_000,
            max_errors_shown: 20,
        }
    }
}

/// What to do with a file that has bad rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Store nothing; report and exit 2.
    #[default]
    Reject,
    /// Store the good rows; store the bad ones aside, counted and reported.
    Quarantine,
}

/// Settings of one dataset.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    /// Take the columns, time column and target of another dataset's table (its own keys
    /// add to or replace them): the training data and the traffic replayed later are two
    /// datasets of one source.
    pub like: Option<String>,
    pub time_column: Option<String>,
    pub target: Option<String>,
    #[serde(default)]
    pub policy: Policy,
    #[serde(default)]
    pub allow_schema_change: bool,
    #[serde(default)]
    pub columns: BTreeMap<String, ColumnConfig>,
}

/// Declared type and expectations of one column.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnConfig {
    #[serde(rename = "type")]
    pub ftype: Option<FeatureType>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub allowed: Option<Vec<String>>,
    pub max_null_fraction: Option<f64>,
    #[serde(default)]
    pub unique: bool,
    pub regex: Option<String>,
}

impl Config {
    /// Parses `text` read from `path` and checks what serde cannot.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().replace('\n', "\n  "),
        })?;
        config.check(path)?;
        Ok(config)
    }

    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Finds `kiln.toml` in `start` or the nearest parent folder.
    pub fn find(start: &Path) -> Option<PathBuf> {
        start
            .ancestors()
            .map(|d| d.join(CONFIG_FILE))
            .find(|p| p.is_file())
    }

    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        if self.ingest.batch_rows == 0 || self.ingest.infer_rows == 0 {
            return Err(invalid(
                "[ingest] batch_rows and infer_rows must be at least 1".into(),
            ));
        }
        for (name, ds) in &self.datasets {
            if let Some(base) = &ds.like {
                match self.datasets.get(base) {
                    None => {
                        return Err(invalid(format!(
                            "[datasets.{name}] like = \"{base}\": kiln.toml has no [datasets.{base}]"
                        )));
                    }
                    Some(b) if b.like.is_some() => {
                        return Err(invalid(format!(
                            "[datasets.{name}] like = \"{base}\": [datasets.{base}] is itself `like` another; name the original"
                        )));
                    }
                    Some(_) => {}
                }
            }
            validate_name("dataset", name).map_err(|source| ConfigError::Name {
                path: path.to_owned(),
                source,
            })?;
            for (col, c) in &ds.columns {
                let at = format!("[datasets.{name}.columns.{col}]");
                if let (Some(lo), Some(hi)) = (c.min, c.max)
                    && lo > hi
                {
                    return Err(invalid(format!("{at}: min {lo} is greater than max {hi}")));
                }
                if let Some(f) = c.max_null_fraction
                    && !(0.0..=1.0).contains(&f)
                {
                    return Err(invalid(format!(
                        "{at}: max_null_fraction {f} is not between 0 and 1"
                    )));
                }
                if let Some(re) = &c.regex
                    && let Err(e) = regex::Regex::new(re)
                {
                    return Err(invalid(format!("{at}: regex `{re}` does not compile: {e}")));
                }
                if let Some(t) = c.ftype {
                    let numeric_rule = c.min.is_some() || c.max.is_some();
                    let string_rule = c.allowed.is_some() || c.regex.is_some();
                    if numeric_rule && t != FeatureType::Numeric {
                        return Err(invalid(format!(
                            "{at}: min/max apply to numeric columns, this one is {t}"
                        )));
                    }
                    if string_rule && !t.is_string() {
                        return Err(invalid(format!(
                            "{at}: allowed/regex apply to categorical or text columns, this one is {t}"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// The settings of dataset `name` (defaults when it has no table), with those of the
    /// dataset it is `like` beneath its own.
    pub fn dataset(&self, name: &str) -> DatasetConfig {
        let own = self.datasets.get(name).cloned().unwrap_or_default();
        let Some(base) = own.like.as_ref().and_then(|b| self.datasets.get(b)) else {
            return own;
        };
        let mut columns = base.columns.clone();
        columns.extend(own.columns);
        DatasetConfig {
            like: own.like,
            time_column: own.time_column.or_else(|| base.time_column.clone()),
            target: own.target.or_else(|| base.target.clone()),
            policy: own.policy,
            allow_schema_change: own.allow_schema_change,
            columns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_parses_to_the_defaults() {
        let c = Config::parse(TEMPLATE, Path::new("kiln.toml")).unwrap();
        assert_eq!(c.ingest.batch_rows, 65_536);
        assert_eq!(c.log.format.as_deref(), Some("human"));
        assert!(c.datasets.is_empty());
    }

    #[test]
    fn the_templates_retention_section_parses_when_uncommented() {
        let section: String = TEMPLATE
            .lines()
            .skip_while(|l| *l != "# [retention]")
            .take_while(|l| l.starts_with("# "))
            .map(|l| format!("{}\n", &l[2..]))
            .collect();
        let c = Config::parse(&section, Path::new("kiln.toml")).unwrap();
        assert_eq!(c.retention.compact_after.as_deref(), Some("30d"));
        assert_eq!(c.retention.delete_after.as_deref(), Some("400d"));
        assert_eq!(c.retention.interval.as_deref(), Some("1h"));
        let e = Config::parse("[retention]\nkeep = \"1d\"\n", Path::new("k.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("keep"), "{e}");
    }

    #[test]
    fn store_s3_takes_an_endpoint_but_never_credentials() {
        let c = Config::parse(
            "[store]\nartifacts = \"s3://b/p\"\n[store.s3]\nendpoint = \"http://127.0.0.1:9000\"\n\
             region = \"eu-west-1\"\nallow_http = true\n",
            Path::new("k.toml"),
        )
        .unwrap();
        let s3 = c.store.s3.unwrap();
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(s3.region.as_deref(), Some("eu-west-1"));
        assert_eq!(s3.allow_http, Some(true));
        assert!(Config::default().store.s3.is_none());
        for key in ["secret_access_key", "access_key_id"] {
            let e = Config::parse(&format!("[store.s3]\n{key} = \"x\"\n"), Path::new("k.toml"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{e}");
        }
    }

    #[test]
    fn a_dataset_like_another_takes_its_columns_beneath_its_own() {
        let c = Config::parse(
            "[datasets.a]\ntime_column = \"t\"\ntarget = \"y\"\n[datasets.a.columns.x]\nmin = 0\n\
             [datasets.a.columns.z]\nmax = 9\n[datasets.b]\nlike = \"a\"\n[datasets.b.columns.z]\nmax = 5\n",
            Path::new("k.toml"),
        )
        .unwrap();
        let b = c.dataset("b");
        assert_eq!(
            (b.time_column.as_deref(), b.target.as_deref()),
            (Some("t"), Some("y"))
        );
        assert_eq!(b.columns["x"].min, Some(0.0));
        assert_eq!(b.columns["z"].max, Some(5.0), "its own column wins");
        assert!(c.dataset("a").like.is_none());
        for (text, needle) in [
            ("[datasets.b]\nlike = \"nope\"\n", "no [datasets.nope]"),
            (
                "[datasets.a]\n[datasets.b]\nlike = \"a\"\n[datasets.c]\nlike = \"b\"\n",
                "name the original",
            ),
        ] {
            let e = Config::parse(text, Path::new("k.toml"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn typos_and_contradictions_are_named() {
        let e = Config::parse("[ingest]\nbatch_rowz = 3\n", Path::new("k.toml")).unwrap_err();
        assert!(e.to_string().contains("batch_rowz"), "{e}");
        let e = Config::parse(
            "[datasets.b.columns.x]\nmin = 5\nmax = 1\n",
            Path::new("k.toml"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("[datasets.b.columns.x]"), "{e}");
        let e = Config::parse("[datasets.\"../x\"]\n", Path::new("k.toml")).unwrap_err();
        assert!(e.to_string().contains("invalid dataset name"), "{e}");
        let e = Config::parse(
            "[datasets.b.columns.x]\nregex = \"(\"\n",
            Path::new("k.toml"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("does not compile"), "{e}");
    }
}
