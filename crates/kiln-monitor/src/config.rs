//! `[monitor]` in kiln.toml: the monitoring stage reads and checks its own keys.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::drift::{DEFAULT_DRIFT_SHARE, DriftMethod, DriftOptions};
use crate::error::{MonitorError, Result};
use crate::table::DriftSettings;

/// `[monitor]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct MonitorSection {
    drift: DriftSection,
}

/// `[monitor.drift]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct DriftSection {
    share: f64,
    method: Option<DriftMethod>,
    threshold: Option<f64>,
    columns: BTreeMap<String, ColumnSection>,
}

impl Default for DriftSection {
    fn default() -> Self {
        Self {
            share: DEFAULT_DRIFT_SHARE,
            method: None,
            threshold: None,
            columns: BTreeMap::new(),
        }
    }
}

/// `[monitor.drift.columns.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ColumnSection {
    method: Option<DriftMethod>,
    threshold: Option<f64>,
}

/// Reads the drift settings of `[monitor]` (already parsed as TOML), checking every key and
/// value. A column's own entry overrides the section's `method` and `threshold`, key by key.
pub fn drift_settings(monitor: &toml::Table) -> Result<DriftSettings> {
    let section: MonitorSection =
        toml::Value::Table(monitor.clone())
            .try_into()
            .map_err(|e: toml::de::Error| {
                MonitorError::Config(format!("[monitor]: {}", e.message().trim()))
            })?;
    let drift = section.drift;
    if !(drift.share > 0.0 && drift.share <= 1.0) {
        return Err(MonitorError::Config(format!(
            "[monitor.drift] share must be above 0 and at most 1, not {}",
            drift.share
        )));
    }
    let check = |key: &str, t: Option<f64>| match t {
        Some(t) if !(t.is_finite() && t >= 0.0) => Err(MonitorError::Config(format!(
            "[monitor.drift] {key} must be a number of at least 0, not {t}"
        ))),
        _ => Ok(()),
    };
    check("threshold", drift.threshold)?;
    let default = DriftOptions {
        method: drift.method,
        threshold: drift.threshold,
        integer_column: None,
    };
    let mut columns = BTreeMap::new();
    for (name, c) in drift.columns {
        check(&format!("columns.{name}.threshold"), c.threshold)?;
        columns.insert(
            name,
            DriftOptions {
                method: c.method.or(default.method),
                threshold: c.threshold.or(default.threshold),
                integer_column: None,
            },
        );
    }
    Ok(DriftSettings {
        default,
        columns,
        drift_share: drift.share,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DriftSettings> {
        drift_settings(&text.parse::<toml::Table>().unwrap())
    }

    #[test]
    fn nothing_configured_is_evidentlys_defaults() {
        assert_eq!(parse("").unwrap(), DriftSettings::default());
    }

    #[test]
    fn a_column_overrides_the_section_key_by_key() {
        let s = parse(
            "[drift]\nshare = 0.3\nmethod = \"psi\"\nthreshold = 0.2\n\
             [drift.columns.temp]\nmethod = \"ks\"\n\
             [drift.columns.hum]\nthreshold = 0.05\n",
        )
        .unwrap();
        assert_eq!(s.drift_share, 0.3);
        assert_eq!(s.default.method, Some(DriftMethod::Psi));
        let temp = s.columns["temp"];
        assert_eq!(
            (temp.method, temp.threshold),
            (Some(DriftMethod::Ks), Some(0.2))
        );
        let hum = s.columns["hum"];
        assert_eq!(
            (hum.method, hum.threshold),
            (Some(DriftMethod::Psi), Some(0.05))
        );
    }

    #[test]
    fn bad_keys_and_values_are_named() {
        let e = parse("[drift]\nmethod = \"t-test\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("t-test") && e.contains("jensenshannon"), "{e}");
        let e = parse("[drift]\nshare = 1.5\n").unwrap_err().to_string();
        assert!(e.contains("share"), "{e}");
        let e = parse("[drift.columns.temp]\nthreshold = -1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("columns.temp.threshold"), "{e}");
        let e = parse("[drift]\nthreshhold = 0.1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("threshhold"), "{e}");
    }
}
