//! `[serve]` in kiln.toml: how `kiln serve` listens, validates, logs and authenticates.
//!
//! The serving stage owns these keys (kiln-core keeps the table raw, as it does for
//! `[train]`), so unknown keys are reported here with the list of known ones. The CLI applies
//! its flags and the `KILN_*` environment variables on top of what this parses.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::ServeError;

/// Everything `kiln serve` can be told.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Address to listen on.
    pub addr: String,
    /// How often the registry's aliases are polled for moves.
    pub poll_interval_ms: u64,
    /// Aliases whose targets are loaded and kept ready (requests without `?alias=` or
    /// `?version=` go to `production`).
    pub aliases: Vec<String>,
    /// The share of requests a `canary` alias answers when no running rollout states one
    /// (a rollout started by the controller or `kiln rollouts start` carries its own).
    pub canary_share: f64,
    /// Largest request body accepted (413 above it).
    pub body_limit_bytes: usize,
    /// Most rows in one request (413 above it).
    pub max_rows: usize,
    /// A request that takes longer is answered 503 `timeout`.
    pub request_timeout_ms: u64,
    /// A numeric value outside the range seen in training: flag it or reject the request.
    pub out_of_range: RangePolicy,
    /// One structured log line per request on stderr (target `kiln::access`).
    pub access_log: bool,
    /// Access log lines as JSON (set from `--log-format json`, not from kiln.toml's `[serve]`).
    #[serde(skip)]
    pub access_log_json: bool,
    pub log: PredictionLogConfig,
    pub auth: AuthConfig,
    /// `[serve.tls]`: serve HTTPS with this certificate and key (PEM files).
    pub tls: Option<TlsConfig>,
    /// `[monitor]` (read from its own section, not from `[serve]`): live windows and alerts.
    #[serde(skip)]
    pub monitor: kiln_watch::rules::MonitorConfig,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:8080".into(),
            poll_interval_ms: 500,
            aliases: vec![
                "production".into(),
                "staging".into(),
                "shadow".into(),
                "canary".into(),
            ],
            canary_share: 0.1,
            body_limit_bytes: 4 << 20,
            max_rows: 10_000,
            request_timeout_ms: 10_000,
            out_of_range: RangePolicy::Flag,
            access_log: true,
            access_log_json: false,
            log: PredictionLogConfig::default(),
            auth: AuthConfig::default(),
            tls: None,
            monitor: kiln_watch::rules::MonitorConfig::default(),
        }
    }
}

/// What to do with a numeric value outside the training range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RangePolicy {
    /// Score it, flag the row and count it.
    #[default]
    Flag,
    /// Refuse the request (422 `out_of_range`).
    Reject,
}

/// `[serve.log]`: the prediction log.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PredictionLogConfig {
    pub enabled: bool,
    /// Longest a logged prediction waits before it is written (what `kill -9` can lose).
    pub flush_interval_ms: u64,
    /// Predictions waiting to be written, at most; what happens above is `overflow`.
    pub queue_rows: usize,
    /// Most predictions written in one transaction. 1,000 rather than more: under load the
    /// writer holds a batch's records, and live monitoring a batch's converted columns, while
    /// it is written and evaluated; with 5,000 the server's peak RSS under `wrk` was 4 to 6 MiB
    /// higher (51.4 against 57.6 MiB, mean of three 8 s runs) at the same requests/s.
    pub batch_rows: usize,
    pub overflow: Overflow,
}

impl Default for PredictionLogConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            flush_interval_ms: 1000,
            queue_rows: 100_000,
            batch_rows: 1_000,
            overflow: Overflow::Block,
        }
    }
}

/// When the prediction log's queue is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Overflow {
    /// Requests wait for room (back-pressure); nothing is lost.
    #[default]
    Block,
    /// The predictions are answered but not logged; each is counted in
    /// `kiln_prediction_log_dropped_total`.
    Drop,
}

/// `[serve.tls]`: HTTPS. Relative paths are relative to kiln.toml.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, PEM, the server's own certificate first.
    pub cert: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// `[serve.auth]`: who may call what.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// File holding the admin token. Default: `admin.token` in Kiln's home folder, which
    /// `kiln init` writes (mode 0600); without it the admin routes are off. Relative paths
    /// are relative to kiln.toml. Env `KILN_ADMIN_TOKEN` (the token itself) takes precedence.
    pub admin_token_file: Option<PathBuf>,
    /// File with one API key per line; when set (or `KILN_API_KEYS`, comma-separated),
    /// prediction routes require one (`Authorization: Bearer KEY` or `x-api-key: KEY`).
    pub api_keys_file: Option<PathBuf>,
    /// Who may post feedback: `open`, `api_key` (the prediction keys, when any) or `admin`.
    pub feedback: FeedbackAccess,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            admin_token_file: None,
            api_keys_file: None,
            feedback: FeedbackAccess::ApiKey,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackAccess {
    Open,
    #[default]
    ApiKey,
    Admin,
}

impl ServeConfig {
    /// Reads `[serve]` (already parsed as TOML), checking every key and value.
    pub fn from_table(table: &toml::Table) -> Result<Self, ServeError> {
        let config: ServeConfig =
            toml::Value::Table(table.clone())
                .try_into()
                .map_err(|e: toml::de::Error| {
                    ServeError::Config(format!("[serve]: {}", e.message().trim()))
                })?;
        config.check()?;
        Ok(config)
    }

    /// Checks what serde cannot: positive sizes and intervals.
    pub fn check(&self) -> Result<(), ServeError> {
        let positive = [
            ("poll_interval_ms", self.poll_interval_ms as usize),
            ("body_limit_bytes", self.body_limit_bytes),
            ("max_rows", self.max_rows),
            ("request_timeout_ms", self.request_timeout_ms as usize),
            ("log.flush_interval_ms", self.log.flush_interval_ms as usize),
            ("log.queue_rows", self.log.queue_rows),
            ("log.batch_rows", self.log.batch_rows),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(ServeError::Config(format!(
                    "[serve] {key} must be greater than 0"
                )));
            }
        }
        if self.addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(ServeError::Config(format!(
                "[serve] addr `{}` is not an address; use IP:PORT, e.g. 127.0.0.1:8080 or 0.0.0.0:8080",
                self.addr
            )));
        }
        if !(self.canary_share > 0.0 && self.canary_share <= 1.0) {
            return Err(ServeError::Config(format!(
                "[serve] canary_share = {} is not a share of requests; use a number in (0, 1], e.g. 0.1",
                self.canary_share
            )));
        }
        for alias in &self.aliases {
            kiln_core::names::validate_name("alias", alias)
                .map_err(|e| ServeError::Config(format!("[serve] aliases: {e}")))?;
        }
        Ok(())
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

/// Secrets resolved from files and the environment.
#[derive(Clone, Default)]
pub struct Credentials {
    pub admin_token: Option<String>,
    pub api_keys: Vec<String>,
}

impl std::fmt::Debug for Credentials {
    // Never print a secret, even in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("admin_token", &self.admin_token.as_ref().map(|_| "<set>"))
            .field("api_keys", &self.api_keys.len())
            .finish()
    }
}

impl Credentials {
    /// Reads the admin token and API keys: environment first, then the configured files
    /// (relative to `base`). A configured file that is missing is an error; the default admin
    /// token file (`default_admin_file`) may be absent, which only turns the admin routes off.
    pub fn resolve(
        auth: &AuthConfig,
        base: &std::path::Path,
        default_admin_file: &std::path::Path,
        env_admin: Option<String>,
        env_keys: Option<String>,
    ) -> Result<Self, ServeError> {
        let read = |p: &PathBuf| -> Result<Option<String>, ServeError> {
            let path = if p.is_absolute() {
                p.clone()
            } else {
                base.join(p)
            };
            match std::fs::read_to_string(&path) {
                Ok(s) => Ok(Some(s)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(ServeError::Config(format!(
                    "cannot read {}: {e}",
                    path.display()
                ))),
            }
        };
        let admin_token: Option<String> = match env_admin.filter(|t| !t.trim().is_empty()) {
            Some(t) => Some(t.trim().to_owned()),
            None => match &auth.admin_token_file {
                Some(p) => read(p)?.ok_or_else(|| {
                    ServeError::Config(format!(
                        "[serve.auth] admin_token_file {} does not exist",
                        p.display()
                    ))
                })?,
                None => read(&default_admin_file.to_path_buf())?.unwrap_or_default(),
            }
            .trim()
            .to_owned()
            .into(),
        };
        let mut api_keys: Vec<String> = match env_keys {
            Some(k) => k.split(',').map(|s| s.trim().to_owned()).collect(),
            None => match &auth.api_keys_file {
                Some(p) => read(p)?
                    .ok_or_else(|| {
                        ServeError::Config(format!(
                            "[serve.auth] api_keys_file {} does not exist",
                            p.display()
                        ))
                    })?
                    .lines()
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.starts_with('#'))
                    .collect(),
                None => Vec::new(),
            },
        };
        api_keys.retain(|k| !k.is_empty());
        let admin_token = admin_token.filter(|t| !t.is_empty());
        if let Some(short) = admin_token.as_ref().filter(|t| t.len() < 16) {
            return Err(ServeError::Config(format!(
                "the admin token is {} characters; use at least 16 (`kiln init` writes a random one)",
                short.len()
            )));
        }
        Ok(Self {
            admin_token,
            api_keys,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_keys() {
        let c = ServeConfig::from_table(&toml::Table::new()).unwrap();
        assert_eq!(c.log.flush_interval_ms, 1000);
        assert_eq!(c.log.overflow, Overflow::Block);
        let t: toml::Table = toml::from_str("[log]\nflush_interval = 5").unwrap();
        let e = ServeConfig::from_table(&t).unwrap_err().to_string();
        assert!(e.contains("flush_interval"), "{e}");
        let t: toml::Table = toml::from_str("addr = \"localhost\"").unwrap();
        let e = ServeConfig::from_table(&t).unwrap_err().to_string();
        assert!(e.contains("IP:PORT"), "{e}");
        let t: toml::Table = toml::from_str("[log]\nqueue_rows = 0").unwrap();
        assert!(ServeConfig::from_table(&t).is_err());
    }

    #[test]
    fn credentials_prefer_the_environment_and_refuse_short_tokens() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t"), "file-token-0123456789\n").unwrap();
        let auth = AuthConfig {
            admin_token_file: Some("t".into()),
            api_keys_file: None,
            feedback: FeedbackAccess::ApiKey,
        };
        let none = dir.path().join("absent");
        let c = Credentials::resolve(&auth, dir.path(), &none, None, Some("a, b,".into())).unwrap();
        assert_eq!(c.admin_token.as_deref(), Some("file-token-0123456789"));
        assert_eq!(c.api_keys, vec!["a", "b"]);
        assert!(!format!("{c:?}").contains("file-token"));
        let c = Credentials::resolve(
            &auth,
            dir.path(),
            &none,
            Some("env-token-0123456789".into()),
            None,
        )
        .unwrap();
        assert_eq!(c.admin_token.as_deref(), Some("env-token-0123456789"));
        assert!(
            Credentials::resolve(&auth, dir.path(), &none, Some("short".into()), None).is_err()
        );
        // A configured file must exist; the default one may be absent (admin routes off).
        let missing = AuthConfig {
            admin_token_file: Some("absent".into()),
            ..auth
        };
        assert!(Credentials::resolve(&missing, dir.path(), &none, None, None).is_err());
        let default = AuthConfig::default();
        let c = Credentials::resolve(&default, dir.path(), &none, None, None).unwrap();
        assert!(c.admin_token.is_none());
        let c =
            Credentials::resolve(&default, dir.path(), &dir.path().join("t"), None, None).unwrap();
        assert_eq!(c.admin_token.as_deref(), Some("file-token-0123456789"));
    }
}
