//! Resolving where things are: configuration file, home folder, stores.
//!
//! Precedence for every setting: flag > `KILN_*` environment variable (both through clap) >
//! `kiln.toml` > default.

use std::path::{Path, PathBuf};

use kiln_core::config::{Config, ConfigError};
use kiln_store::{S3Options, Store, StoreLocation};

use crate::output::CliError;
use crate::{GlobalArgs, LogFormat};

/// A resolved project: its configuration, home folder and open stores.
pub struct Project {
    pub config: Config,
    /// The folder of kiln.toml, when there is one.
    pub config_dir: Option<PathBuf>,
    pub home: PathBuf,
    pub store: Store,
}

impl Project {
    /// Folder for temporary files (on the same disk as the home).
    pub fn scratch(&self) -> PathBuf {
        StoreLocation::scratch_dir(&self.home)
    }
}

/// The config file to use, if any: `--config`, else `kiln.toml` here or in a parent.
fn config_path(global: &GlobalArgs) -> Result<Option<PathBuf>, CliError> {
    if let Some(p) = &global.config {
        if !p.is_file() {
            return Err(CliError::input(format!(
                "config file {} does not exist",
                p.display()
            )));
        }
        return Ok(Some(p.clone()));
    }
    let cwd = std::env::current_dir().map_err(|e| CliError::system(e.to_string()))?;
    Ok(Config::find(&cwd))
}

/// The configuration, or the defaults when there is no file.
pub fn load_config(global: &GlobalArgs) -> Result<(Config, Option<PathBuf>), CliError> {
    match config_path(global)? {
        Some(path) => {
            let config = Config::load(&path).map_err(|e| match e {
                ConfigError::Read { .. } => CliError::system(e.to_string()),
                _ => CliError::input(e.to_string()),
            })?;
            Ok((config, Some(path)))
        }
        None => Ok((Config::default(), None)),
    }
}

/// The log format before logging starts (config errors are reported after).
pub fn peek_log_format(global: &GlobalArgs) -> Option<LogFormat> {
    if global.log_format.is_some() {
        return global.log_format;
    }
    let (config, _) = load_config(global).ok()?;
    match config.log.format.as_deref() {
        Some("json") => Some(LogFormat::Json),
        Some(_) => Some(LogFormat::Human),
        None => None,
    }
}

/// Resolves the home folder: flag/env, then `[store] home` relative to the config file.
pub fn home_dir(global: &GlobalArgs, config: &Config, config_path: Option<&Path>) -> PathBuf {
    if let Some(h) = &global.home {
        return h.clone();
    }
    if let Some(h) = &config.store.home {
        if h.is_absolute() {
            return h.clone();
        }
        if let Some(dir) = config_path.and_then(|p| p.parent()) {
            return dir.join(h);
        }
        return h.clone();
    }
    PathBuf::from(".kiln")
}

/// Opens the project's stores (creating the home folder and database if needed).
pub async fn open(global: &GlobalArgs) -> Result<Project, CliError> {
    let (config, path) = load_config(global)?;
    let home = home_dir(global, &config, path.as_deref());
    std::fs::create_dir_all(&home).map_err(|e| {
        CliError::system(format!("cannot create home folder {}: {e}", home.display()))
    })?;
    let defaults = StoreLocation::in_home(&home);
    let relative_to_config = |v: &String| -> String {
        // Relative paths in kiln.toml are relative to the file, like `home`.
        match (path.as_deref().and_then(|p| p.parent()), v.contains("://")) {
            (Some(dir), false) if Path::new(v).is_relative() => dir.join(v).display().to_string(),
            _ => v.clone(),
        }
    };
    let location = StoreLocation {
        db_url: global
            .db
            .clone()
            .or_else(|| config.store.db.as_ref().map(|d| relative_sqlite(d, &path)))
            .unwrap_or(defaults.db_url),
        artifacts_url: global
            .artifacts
            .clone()
            .or_else(|| config.store.artifacts.as_ref().map(relative_to_config))
            .unwrap_or(defaults.artifacts_url),
        s3: config
            .store
            .s3
            .as_ref()
            .map(|s3| S3Options {
                endpoint: s3.endpoint.clone(),
                region: s3.region.clone(),
                allow_http: s3.allow_http,
                ..S3Options::default()
            })
            .unwrap_or_default(),
    };
    let store = Store::open(&location).await.map_err(CliError::from_store)?;
    Ok(Project {
        config_dir: path
            .as_deref()
            .and_then(|p| p.parent())
            .map(Path::to_path_buf),
        config,
        home,
        store,
    })
}

/// `sqlite://relative/path` in kiln.toml is relative to the file.
fn relative_sqlite(url: &str, config_path: &Option<PathBuf>) -> String {
    match (
        url.strip_prefix("sqlite://"),
        config_path.as_deref().and_then(|p| p.parent()),
    ) {
        (Some(p), Some(dir)) if Path::new(p).is_relative() => {
            format!("sqlite://{}", dir.join(p).display())
        }
        _ => url.to_owned(),
    }
}
