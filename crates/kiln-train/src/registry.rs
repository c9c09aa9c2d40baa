//! Naming registered model versions and loading them.
//!
//! `NAME` is the latest version, `NAME@3` version 3, `NAME@production` whatever the alias
//! `production` points to now. Loading fetches the artifact by content id (the store verifies
//! its hash) and checks the model format.

use std::str::FromStr;

use kiln_core::names::validate_name;
use kiln_model::artifact::ModelArtifact;
use kiln_store::{ModelVersion, Store, StoreError};

use crate::{Result, TrainError};

/// Which version of a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Latest,
    Version(i64),
    Alias(String),
}

/// `NAME`, `NAME@VERSION` or `NAME@ALIAS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    pub name: String,
    pub selector: Selector,
}

impl FromStr for ModelRef {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            TrainError::Input(format!(
                "`{s}` is not a model reference: use NAME, NAME@VERSION or NAME@ALIAS (e.g. bikes@3, bikes@production)"
            ))
        };
        let (name, selector) = match s.split_once('@') {
            None => (s, Selector::Latest),
            Some((n, "latest")) => (n, Selector::Latest),
            Some((n, v)) if v.chars().all(|c| c.is_ascii_digit()) => (
                n,
                Selector::Version(v.parse().ok().filter(|v| *v >= 1).ok_or_else(bad)?),
            ),
            Some((n, a)) => {
                validate_name("alias", a).map_err(|e| TrainError::Input(e.to_string()))?;
                (n, Selector::Alias(a.to_owned()))
            }
        };
        if name.is_empty() {
            return Err(bad());
        }
        validate_name("model", name).map_err(|e| TrainError::Input(e.to_string()))?;
        Ok(Self {
            name: name.to_owned(),
            selector,
        })
    }
}

impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.selector {
            Selector::Latest => f.write_str(&self.name),
            Selector::Version(v) => write!(f, "{}@{v}", self.name),
            Selector::Alias(a) => write!(f, "{}@{a}", self.name),
        }
    }
}

/// The version a reference names, or an error that says what exists.
pub async fn resolve(store: &Store, r: &ModelRef) -> Result<ModelVersion> {
    let versions = store.meta.model_versions(&r.name).await?;
    let Some(latest) = versions.last() else {
        return Err(StoreError::NotFound(format!(
            "no model named `{}`\nhint: `kiln models list` lists models; `kiln train --set register={}` trains and registers one",
            r.name, r.name
        ))
        .into());
    };
    match &r.selector {
        Selector::Latest => Ok(latest.clone()),
        Selector::Version(v) => versions
            .iter()
            .find(|m| m.version == *v)
            .cloned()
            .ok_or_else(|| {
                StoreError::NotFound(format!(
                    "model `{}` has no version {v} (latest is {})",
                    r.name, latest.version
                ))
                .into()
            }),
        Selector::Alias(a) => {
            let alias = store.meta.alias(&r.name, a).await?.ok_or_else(|| {
                StoreError::NotFound(format!(
                    "model `{}` has no alias `{a}`\nhint: `kiln models alias set {a} {}@VERSION --reason ...` creates it",
                    r.name, r.name
                ))
            })?;
            versions
                .iter()
                .find(|m| m.version == alias.version)
                .cloned()
                .ok_or_else(|| {
                    StoreError::Corrupt {
                        what: "alias".into(),
                        message: format!(
                            "`{}@{a}` points to version {}, which does not exist",
                            r.name, alias.version
                        ),
                    }
                    .into()
                })
        }
    }
}

/// The artifact of a version, hash-verified and decoded.
pub async fn load(store: &Store, version: &ModelVersion) -> Result<ModelArtifact> {
    let bytes = store.artifacts.get_bytes(&version.artifact_id).await?;
    ModelArtifact::from_bytes(&bytes).map_err(|e| {
        TrainError::Input(format!(
            "model {}@{} (artifact {}): {e}",
            version.model, version.version, version.artifact_id
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse() {
        let r: ModelRef = "bikes@3".parse().unwrap();
        assert_eq!(r.selector, Selector::Version(3));
        let r: ModelRef = "bikes@production".parse().unwrap();
        assert_eq!(r.selector, Selector::Alias("production".into()));
        assert_eq!(r.to_string(), "bikes@production");
        assert_eq!(
            "bikes".parse::<ModelRef>().unwrap().selector,
            Selector::Latest
        );
        for bad in ["bikes@0", "@3", "../x", "bikes@../p"] {
            assert!(bad.parse::<ModelRef>().is_err(), "{bad}");
        }
    }
}
