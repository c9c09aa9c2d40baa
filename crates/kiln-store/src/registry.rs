//! The model registry's metadata: models, their versions, and aliases with history.
//!
//! An alias move is a compare-and-set on the alias's revision: the writer says which revision
//! it saw (or that it saw none), and the move happens only if that is still the current one.
//! Two writers racing on the same alias therefore cannot both win, and none of their moves is
//! lost: the loser gets [`StoreError::Conflict`] and can read and retry. Every move is a row in
//! `alias_history` with its reason and actor, in the same transaction as the move.

use kiln_core::id::ContentId;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::meta::{MetaStore, is_unique_violation};
use crate::{Result, StoreError};

/// One version of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    pub model: String,
    pub version: i64,
    pub artifact_id: ContentId,
    pub run_id: Option<String>,
    pub created_at: i64,
}

/// Where an alias points now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alias {
    pub model: String,
    pub alias: String,
    pub version: i64,
    pub revision: i64,
    pub updated_at: i64,
}

/// One recorded alias move.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasMove {
    pub model: String,
    pub alias: String,
    pub revision: i64,
    pub from_version: Option<i64>,
    /// `None` when the move removed the alias (a rollout that ended).
    pub to_version: Option<i64>,
    pub reason: String,
    pub actor: String,
    pub at: i64,
}

/// What the writer of an alias move expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Move whatever the alias points to now (read and set in one transaction).
    Any,
    /// The alias must not exist yet.
    Absent,
    /// The alias must still be at this revision.
    Revision(i64),
}

/// One try of an alias move.
enum Attempt {
    Done(Alias),
    /// Another move committed between our read and our write.
    Lost,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: what.to_owned(),
        message: e.to_string(),
    }
}

/// An `aliases` row selected as `model, alias, version, revision, updated_at`.
fn alias_of(r: &sqlx::any::AnyRow) -> Result<Alias> {
    Ok(Alias {
        model: r.try_get(0)?,
        alias: r.try_get(1)?,
        version: r.try_get(2)?,
        revision: r.try_get(3)?,
        updated_at: r.try_get(4)?,
    })
}

impl MetaStore {
    /// Registers a new version of `model` (created on its first version); returns it.
    pub async fn add_model_version(
        &self,
        model: &str,
        artifact_id: &ContentId,
        run_id: Option<&str>,
    ) -> Result<ModelVersion> {
        for _ in 0..20 {
            let mut tx = self.write_tx().await?;
            let now = kiln_core::now_micros();
            sqlx::query(
                "INSERT INTO models (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            )
            .bind(model)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let latest: Option<i64> =
                sqlx::query("SELECT MAX(version) FROM model_versions WHERE model = $1")
                    .bind(model)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get(0)?;
            let version = latest.unwrap_or(0) + 1;
            let inserted = sqlx::query(
                "INSERT INTO model_versions (model, version, artifact_id, run_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(model)
            .bind(version)
            .bind(artifact_id.as_str())
            .bind(run_id)
            .bind(now)
            .execute(&mut *tx)
            .await;
            match inserted {
                Ok(_) => {
                    tx.commit().await?;
                    return Ok(ModelVersion {
                        model: model.to_owned(),
                        version,
                        artifact_id: artifact_id.clone(),
                        run_id: run_id.map(str::to_owned),
                        created_at: now,
                    });
                }
                Err(e) if is_unique_violation(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict(format!(
            "could not add a version of model `{model}`: too many concurrent writers"
        )))
    }

    /// Versions of a model, oldest first.
    pub async fn model_versions(&self, model: &str) -> Result<Vec<ModelVersion>> {
        let rows = sqlx::query(
            "SELECT model, version, artifact_id, run_id, created_at FROM model_versions \
             WHERE model = $1 ORDER BY version",
        )
        .bind(model)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get(2)?;
                Ok(ModelVersion {
                    model: r.try_get(0)?,
                    version: r.try_get(1)?,
                    artifact_id: id.parse().map_err(|e| corrupt("model artifact id", e))?,
                    run_id: r.try_get(3)?,
                    created_at: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// Names of all registered models, sorted.
    pub async fn model_names(&self) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT name FROM models ORDER BY name")
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Every alias of `model`, by name.
    pub async fn aliases(&self, model: &str) -> Result<Vec<Alias>> {
        let rows = sqlx::query(
            "SELECT model, alias, version, revision, updated_at FROM aliases \
             WHERE model = $1 ORDER BY alias",
        )
        .bind(model)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(alias_of).collect()
    }

    /// Every alias of every model, by model then alias. One scan of the primary key, which
    /// is already in that order: cheap enough for a server to poll to follow alias moves.
    pub async fn all_aliases(&self) -> Result<Vec<Alias>> {
        let rows = sqlx::query(
            "SELECT model, alias, version, revision, updated_at FROM aliases ORDER BY model, alias",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(alias_of).collect()
    }

    /// Where `alias` of `model` points, if anywhere.
    pub async fn alias(&self, model: &str, alias: &str) -> Result<Option<Alias>> {
        let row = sqlx::query(
            "SELECT model, alias, version, revision, updated_at FROM aliases \
             WHERE model = $1 AND alias = $2",
        )
        .bind(model)
        .bind(alias)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(alias_of).transpose()
    }

    /// Points `alias` at `version`, if the alias is still as `expect` says; records the move.
    /// With [`Expect::Any`] a move that loses a race is retried on the new state, so every
    /// such move lands; with a stated expectation the loser gets [`StoreError::Conflict`].
    pub async fn set_alias(
        &self,
        model: &str,
        alias: &str,
        version: i64,
        expect: Expect,
        reason: &str,
        actor: &str,
    ) -> Result<Alias> {
        for _ in 0..50 {
            match self
                .try_set_alias(model, alias, version, expect, reason, actor)
                .await?
            {
                Attempt::Done(a) => return Ok(a),
                Attempt::Lost if expect == Expect::Any => {
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
                Attempt::Lost => {
                    return Err(StoreError::Conflict(format!(
                        "alias `{alias}` of `{model}` moved meanwhile (another move won); read it again and retry"
                    )));
                }
            }
        }
        Err(StoreError::Conflict(format!(
            "alias `{alias}` of `{model}`: too many concurrent moves"
        )))
    }

    async fn try_set_alias(
        &self,
        model: &str,
        alias: &str,
        version: i64,
        expect: Expect,
        reason: &str,
        actor: &str,
    ) -> Result<Attempt> {
        let mut tx = self.write_tx().await?;
        let exists: Option<i64> =
            sqlx::query("SELECT version FROM model_versions WHERE model = $1 AND version = $2")
                .bind(model)
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get(0))
                .transpose()?;
        if exists.is_none() {
            return Err(StoreError::NotFound(format!(
                "model `{model}` has no version {version}"
            )));
        }
        let current: Option<(i64, i64)> =
            sqlx::query("SELECT version, revision FROM aliases WHERE model = $1 AND alias = $2")
                .bind(model)
                .bind(alias)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?)))
                .transpose()?;
        let conflict = |seen: String| {
            StoreError::Conflict(format!(
                "alias `{alias}` of `{model}` moved meanwhile ({seen}); read it again and retry"
            ))
        };
        match (expect, current) {
            (Expect::Absent, Some((v, r))) => {
                return Err(conflict(format!("it points to version {v}, revision {r}")));
            }
            (Expect::Revision(want), None) => {
                return Err(conflict(format!(
                    "expected revision {want}, it does not exist"
                )));
            }
            (Expect::Revision(want), Some((v, r))) if want != r => {
                return Err(conflict(format!(
                    "expected revision {want}, found {r} pointing to version {v}"
                )));
            }
            _ => {}
        }
        let now = kiln_core::now_micros();
        let revision = match current {
            Some((_, r)) => r + 1,
            // A removed alias set again continues its history's revisions.
            None => {
                let last: Option<i64> = sqlx::query(
                    "SELECT MAX(revision) FROM alias_history WHERE model = $1 AND alias = $2",
                )
                .bind(model)
                .bind(alias)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
                last.unwrap_or(0) + 1
            }
        };
        // The WHERE on the old revision (and the primary key for a first assignment) makes the
        // write itself the compare-and-set, whatever the isolation level of the engine.
        let written = match current {
            Some((_, r)) => sqlx::query(
                "UPDATE aliases SET version = $1, revision = $2, updated_at = $3 \
                     WHERE model = $4 AND alias = $5 AND revision = $6",
            )
            .bind(version)
            .bind(revision)
            .bind(now)
            .bind(model)
            .bind(alias)
            .bind(r)
            .execute(&mut *tx)
            .await
            .map(|res| res.rows_affected()),
            None => sqlx::query(
                "INSERT INTO aliases (model, alias, version, revision, updated_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(model)
            .bind(alias)
            .bind(version)
            .bind(revision)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map(|res| res.rows_affected()),
        };
        match written {
            Ok(1) => {}
            Ok(_) => return Ok(Attempt::Lost),
            Err(e) if is_unique_violation(&e) => return Ok(Attempt::Lost),
            Err(e) => return Err(e.into()),
        }
        sqlx::query(
            "INSERT INTO alias_history (model, alias, revision, from_version, to_version, reason, actor, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(model)
        .bind(alias)
        .bind(revision)
        .bind(current.map(|(v, _)| v))
        .bind(version)
        .bind(reason)
        .bind(actor)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        match tx.commit().await {
            Ok(()) => {}
            // A serialization failure at commit is a lost race too.
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("40001") => {
                return Ok(Attempt::Lost);
            }
            Err(e) => return Err(e.into()),
        }
        Ok(Attempt::Done(Alias {
            model: model.to_owned(),
            alias: alias.to_owned(),
            version,
            revision,
            updated_at: now,
        }))
    }

    /// Every move of every alias of `model`, oldest first.
    pub async fn alias_history(&self, model: &str) -> Result<Vec<AliasMove>> {
        let rows = sqlx::query(
            "SELECT model, alias, revision, from_version, to_version, reason, actor, at \
             FROM alias_history WHERE model = $1 ORDER BY at, alias, revision",
        )
        .bind(model)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AliasMove {
                    model: r.try_get(0)?,
                    alias: r.try_get(1)?,
                    revision: r.try_get(2)?,
                    from_version: r.try_get(3)?,
                    to_version: r.try_get(4)?,
                    reason: r.try_get(5)?,
                    actor: r.try_get(6)?,
                    at: r.try_get(7)?,
                })
            })
            .collect()
    }

    /// Removes `alias` of `model` if it is still at revision `expect_revision`, recording the
    /// removal (a move to no version) with its reason. Requests it routed fall back to the
    /// aliases that remain; the history keeps its revisions, so setting it again continues
    /// them.
    pub async fn remove_alias(
        &self,
        model: &str,
        alias: &str,
        expect_revision: i64,
        reason: &str,
        actor: &str,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let current: Option<i64> = sqlx::query(
            "SELECT version FROM aliases WHERE model = $1 AND alias = $2 AND revision = $3",
        )
        .bind(model)
        .bind(alias)
        .bind(expect_revision)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
        let Some(from) = current else {
            return Err(StoreError::Conflict(format!(
                "alias `{alias}` of `{model}` is not at revision {expect_revision} (moved or removed meanwhile); read it again and retry"
            )));
        };
        let deleted =
            sqlx::query("DELETE FROM aliases WHERE model = $1 AND alias = $2 AND revision = $3")
                .bind(model)
                .bind(alias)
                .bind(expect_revision)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if deleted != 1 {
            return Err(StoreError::Conflict(format!(
                "alias `{alias}` of `{model}` moved meanwhile; read it again and retry"
            )));
        }
        sqlx::query(
            "INSERT INTO alias_history (model, alias, revision, from_version, to_version, reason, actor, at) \
             VALUES ($1, $2, $3, $4, NULL, $5, $6, $7)",
        )
        .bind(model)
        .bind(alias)
        .bind(expect_revision + 1)
        .bind(from)
        .bind(reason)
        .bind(actor)
        .bind(kiln_core::now_micros())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Moves `alias` back to the version it pointed to before its last move (recorded as a
    /// move of its own). Fails if the alias has never moved.
    pub async fn rollback_alias(
        &self,
        model: &str,
        alias: &str,
        reason: &str,
        actor: &str,
    ) -> Result<Alias> {
        let current = self.alias(model, alias).await?.ok_or_else(|| {
            StoreError::NotFound(format!("model `{model}` has no alias `{alias}`"))
        })?;
        let last: Option<i64> = sqlx::query(
            "SELECT from_version FROM alias_history WHERE model = $1 AND alias = $2 AND revision = $3",
        )
        .bind(model)
        .bind(alias)
        .bind(current.revision)
        .fetch_optional(self.pool())
        .await?
        .map(|r| r.try_get::<Option<i64>, _>(0))
        .transpose()?
        .flatten();
        let previous = last.ok_or_else(|| {
            StoreError::NotFound(format!(
                "alias `{alias}` of `{model}` has no earlier version to roll back to"
            ))
        })?;
        self.set_alias(
            model,
            alias,
            previous,
            Expect::Revision(current.revision),
            reason,
            actor,
        )
        .await
    }
}
