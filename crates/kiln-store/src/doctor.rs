//! `kiln doctor`: the whole store checked against its invariants.
//!
//! * the schema is at the version this build knows, every migration applied successfully;
//! * every recorded artifact is in the artifact store, with the size recorded and the content
//!   its id names (each one is read and hashed);
//! * every reference resolves: dataset versions to their parts, profiles and parent; runs to
//!   their snapshot and model file; model versions to their file and run; aliases, their
//!   history, retrainings and rollouts to model versions; log archives to their files; the
//!   prediction log to the model versions it names.
//!
//! Findings are errors (something is missing, corrupt or dangling: exit 1) or notes (left by an
//! interruption and harmless: an unreferenced blob, a run that never finished). Each comes with
//! what to do about it.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sqlx::Row;

use kiln_core::id::ContentId;

use crate::meta::{Backend, MIGRATION_COUNT, MetaStore};
use crate::{Result, Store, StoreError};

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Harmless, left by an interrupted command: nothing needs repair.
    Note,
    /// Missing, corrupt or dangling: something that should work does not.
    Error,
}

/// One problem found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// Which check found it: `schema`, `artifact`, `reference`, `interrupted`, `orphan`.
    pub check: &'static str,
    /// What it is about: `artifact 1a2b…`, `bikes@3`, `dataset bikes v2`.
    pub subject: String,
    pub message: String,
    /// What to do.
    pub hint: String,
}

/// What was checked, and what was found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Checkup {
    pub schema_version: i64,
    pub artifacts: u64,
    pub artifact_bytes: u64,
    pub dataset_versions: u64,
    pub runs: u64,
    pub model_versions: u64,
    pub aliases: u64,
    pub log_archives: u64,
    pub findings: Vec<Finding>,
}

impl Checkup {
    /// Whether any finding is an error.
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }

    fn add(
        &mut self,
        severity: Severity,
        check: &'static str,
        subject: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.findings.push(Finding {
            severity,
            check,
            subject: subject.into(),
            message: message.into(),
            hint: hint.into(),
        });
    }
}

const RESTORE: &str = "restore the artifact store from a backup (blobs never change, so any \
                       backup holding it will do)";

/// Runs every check; `progress(done, total)` is called as artifacts are verified.
pub async fn check(
    store: &Store,
    scratch: &std::path::Path,
    progress: &dyn Fn(u64, u64),
) -> Result<Checkup> {
    let mut c = Checkup::default();
    schema(&store.meta, &mut c).await?;
    let recorded = artifacts(store, scratch, &mut c, progress).await?;
    references(&store.meta, &recorded, &mut c).await?;
    interrupted(&store.meta, &mut c).await?;
    c.findings
        .sort_by(|a, b| b.severity.cmp(&a.severity).then(a.check.cmp(b.check)));
    Ok(c)
}

async fn schema(meta: &MetaStore, c: &mut Checkup) -> Result<()> {
    if meta.backend() == Backend::Sqlite {
        // SQLite's own check of its file: pages, indexes, constraints.
        let rows = sqlx::query("PRAGMA integrity_check")
            .fetch_all(meta.pool())
            .await?;
        let problems: Vec<String> = rows
            .iter()
            .filter_map(|r| r.try_get::<String, _>(0).ok())
            .filter(|m| m != "ok")
            .collect();
        if !problems.is_empty() {
            c.add(
                Severity::Error,
                "schema",
                "SQLite file",
                format!("integrity check: {}", problems.join("; ")),
                "restore kiln.db from a backup (sqlite3 .backup copies are consistent)",
            );
        }
    }
    let rows = sqlx::query("SELECT version, CASE WHEN success THEN 1 ELSE 0 END FROM _sqlx_migrations ORDER BY version")
        .fetch_all(meta.pool())
        .await?;
    let mut applied = Vec::new();
    for r in &rows {
        let version: i64 = r.try_get(0)?;
        let success: i64 = r.try_get(1)?;
        if success != 1 {
            c.add(
                Severity::Error,
                "schema",
                format!("migration {version}"),
                "was started and did not complete",
                "restore the database from the backup taken before the upgrade, then run kiln again",
            );
        }
        applied.push(version);
    }
    c.schema_version = applied.last().copied().unwrap_or(0);
    let expected: Vec<i64> = (1..=MIGRATION_COUNT as i64).collect();
    if applied != expected {
        c.add(
            Severity::Error,
            "schema",
            "migrations",
            format!("applied {applied:?}, this build expects 1 to {MIGRATION_COUNT}"),
            "a newer kiln wrote this database: run that version, or restore a backup",
        );
    }
    Ok(())
}

/// Verifies every recorded artifact and finds unrecorded blobs; returns the recorded ids.
async fn artifacts(
    store: &Store,
    scratch: &std::path::Path,
    c: &mut Checkup,
    progress: &dyn Fn(u64, u64),
) -> Result<BTreeSet<String>> {
    let rows = sqlx::query("SELECT id, kind, size FROM artifacts ORDER BY id")
        .fetch_all(store.meta.pool())
        .await?;
    let total = rows.len() as u64;
    let mut recorded = BTreeSet::new();
    for (i, r) in rows.iter().enumerate() {
        let (text, kind, size): (String, String, i64) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        progress(i as u64, total);
        recorded.insert(text.clone());
        let subject = format!("{kind} {}", &text[..text.len().min(12)]);
        let Ok(id) = text.parse::<ContentId>() else {
            c.add(
                Severity::Error,
                "artifact",
                subject,
                format!("`{text}` is not a content id"),
                "the database row was edited by hand: restore the database from a backup",
            );
            continue;
        };
        match store.artifacts.fetch(&id, scratch).await {
            Ok(file) => {
                c.artifacts += 1;
                c.artifact_bytes += file.size;
                if file.size != size as u64 {
                    c.add(
                        Severity::Error,
                        "artifact",
                        subject,
                        format!("holds {} bytes, {size} were recorded", file.size),
                        RESTORE,
                    );
                }
            }
            Err(StoreError::Missing(_)) => c.add(
                Severity::Error,
                "artifact",
                subject,
                "is missing from the artifact store",
                RESTORE,
            ),
            Err(StoreError::Tampered { expected, found }) => c.add(
                Severity::Error,
                "artifact",
                subject,
                format!("is corrupt: its content hashes to {found}, not {expected}"),
                RESTORE,
            ),
            Err(e) => return Err(e),
        }
    }
    progress(total, total);
    for blob in store.artifacts.list().await? {
        match blob {
            Ok((id, size)) if !recorded.contains(id.as_str()) => c.add(
                Severity::Note,
                "orphan",
                format!("blob {}", id.short()),
                format!("{size} bytes that no record names (a command stopped between storing it and recording it)"),
                "harmless: the next command that produces the same content records it",
            ),
            Ok(_) => {}
            Err(name) => c.add(
                Severity::Note,
                "orphan",
                name,
                "a file under blobs/ that is not a content-addressed blob",
                "harmless: kiln never reads it; delete it if no one put it there on purpose",
            ),
        }
    }
    Ok(recorded)
}

async fn references(meta: &MetaStore, recorded: &BTreeSet<String>, c: &mut Checkup) -> Result<()> {
    let pool = meta.pool();
    let need = |c: &mut Checkup, subject: &str, what: &str, id: &str| {
        if !recorded.contains(id) {
            c.add(
                Severity::Error,
                "reference",
                subject.to_owned(),
                format!(
                    "its {what} {} is not a recorded artifact",
                    &id[..id.len().min(12)]
                ),
                RESTORE,
            );
        }
    };

    // Datasets: parts, profiles, quarantine, parent.
    let rows = sqlx::query(
        "SELECT dataset, version, parent_version, parts_json, profile_id, quarantine_id, snapshot_id \
         FROM dataset_versions ORDER BY dataset, version",
    )
    .fetch_all(pool)
    .await?;
    let mut snapshots: BTreeMap<(String, i64), String> = BTreeMap::new();
    for r in &rows {
        let (dataset, version): (String, i64) = (r.try_get(0)?, r.try_get(1)?);
        let subject = format!("dataset {dataset} v{version}");
        c.dataset_versions += 1;
        let parent: Option<i64> = r.try_get(2)?;
        if let Some(p) = parent
            && !snapshots.contains_key(&(dataset.clone(), p))
        {
            c.add(
                Severity::Error,
                "reference",
                &subject,
                format!("its parent v{p} does not exist"),
                "restore the database from a backup",
            );
        }
        let parts: String = r.try_get(3)?;
        match serde_json::from_str::<Vec<serde_json::Value>>(&parts) {
            Ok(parts) => {
                for part in &parts {
                    for key in ["id", "profile_id"] {
                        match part[key].as_str() {
                            Some(id) => need(
                                c,
                                &subject,
                                if key == "id" { "part" } else { "part profile" },
                                id,
                            ),
                            None => c.add(
                                Severity::Error,
                                "reference",
                                &subject,
                                format!("a part has no {key}"),
                                "restore the database from a backup",
                            ),
                        }
                    }
                }
            }
            Err(e) => c.add(
                Severity::Error,
                "reference",
                &subject,
                format!("its list of parts is unreadable: {e}"),
                "restore the database from a backup",
            ),
        }
        let profile: String = r.try_get(4)?;
        need(c, &subject, "profile", &profile);
        if let Some(q) = r.try_get::<Option<String>, _>(5)? {
            need(c, &subject, "quarantine file", &q);
        }
        snapshots.insert((dataset, version), r.try_get(6)?);
    }

    // Runs: their snapshot, and the model file of a finished one.
    let rows = sqlx::query("SELECT id, status, dataset, dataset_version, snapshot_id, artifact_id FROM runs ORDER BY id")
        .fetch_all(pool)
        .await?;
    let mut runs = BTreeSet::new();
    for r in &rows {
        let id: i64 = r.try_get(0)?;
        let status: String = r.try_get(1)?;
        let subject = format!("run {id}");
        c.runs += 1;
        runs.insert(id.to_string());
        let key: (String, i64) = (r.try_get(2)?, r.try_get(3)?);
        let snapshot: String = r.try_get(4)?;
        match snapshots.get(&key) {
            None => c.add(
                Severity::Error,
                "reference",
                &subject,
                format!("its dataset {} v{} does not exist", key.0, key.1),
                "restore the database from a backup",
            ),
            Some(s) if *s != snapshot => c.add(
                Severity::Error,
                "reference",
                &subject,
                format!(
                    "trained on snapshot {}, but {} v{} is {}",
                    &snapshot[..snapshot.len().min(12)],
                    key.0,
                    key.1,
                    &s[..s.len().min(12)]
                ),
                "restore the database from a backup",
            ),
            Some(_) => {}
        }
        match (status.as_str(), r.try_get::<Option<String>, _>(5)?) {
            (_, Some(a)) => need(c, &subject, "model file", &a),
            ("finished", None) => c.add(
                Severity::Error,
                "reference",
                &subject,
                "finished without a model file",
                "restore the database from a backup",
            ),
            _ => {}
        }
    }

    // Model versions: their file and run.
    let rows = sqlx::query(
        "SELECT model, version, artifact_id, run_id FROM model_versions ORDER BY model, version",
    )
    .fetch_all(pool)
    .await?;
    let mut versions = BTreeSet::new();
    for r in &rows {
        let (model, version): (String, i64) = (r.try_get(0)?, r.try_get(1)?);
        let subject = format!("{model}@{version}");
        c.model_versions += 1;
        let artifact: String = r.try_get(2)?;
        need(c, &subject, "model file", &artifact);
        if let Some(run) = r.try_get::<Option<String>, _>(3)?
            && !runs.contains(&run)
        {
            c.add(
                Severity::Error,
                "reference",
                &subject,
                format!("its run {run} does not exist"),
                "restore the database from a backup",
            );
        }
        versions.insert((model, version));
    }
    let dangling =
        |c: &mut Checkup, subject: String, what: &str, model: &str, version: i64, hint: &str| {
            if !versions.contains(&(model.to_owned(), version)) {
                c.add(
                    Severity::Error,
                    "reference",
                    subject,
                    format!("{what} {model}@{version}, which does not exist"),
                    hint.to_owned(),
                );
            }
        };

    let rows = sqlx::query("SELECT model, alias, version FROM aliases ORDER BY model, alias")
        .fetch_all(pool)
        .await?;
    for r in &rows {
        let (model, alias, version): (String, String, i64) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        c.aliases += 1;
        dangling(
            c,
            format!("alias {model}@{alias}"),
            "points at",
            &model,
            version,
            "move it to a version that exists: kiln models alias set ALIAS MODEL@VERSION --reason ...",
        );
    }
    let rows = sqlx::query(
        "SELECT model, alias, revision, to_version FROM alias_history WHERE to_version IS NOT NULL",
    )
    .fetch_all(pool)
    .await?;
    for r in &rows {
        let (model, alias, revision, version): (String, String, i64, i64) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
        dangling(
            c,
            format!("alias {model}@{alias} revision {revision}"),
            "moved to",
            &model,
            version,
            "restore the database from a backup",
        );
    }
    let rows = sqlx::query("SELECT id, model, candidate_version, champion_version FROM retrains")
        .fetch_all(pool)
        .await?;
    for r in &rows {
        let (id, model): (i64, String) = (r.try_get(0)?, r.try_get(1)?);
        for (what, v) in [
            ("its candidate is", r.try_get::<Option<i64>, _>(2)?),
            ("its champion is", r.try_get(3)?),
        ] {
            if let Some(v) = v {
                dangling(
                    c,
                    format!("retraining {id}"),
                    what,
                    &model,
                    v,
                    "restore the database from a backup",
                );
            }
        }
    }
    let rows = sqlx::query("SELECT id, model, challenger_version, champion_version FROM rollouts")
        .fetch_all(pool)
        .await?;
    for r in &rows {
        let (id, model): (i64, String) = (r.try_get(0)?, r.try_get(1)?);
        for (what, v) in [
            ("its challenger is", r.try_get::<i64, _>(2)?),
            ("its champion is", r.try_get(3)?),
        ] {
            dangling(
                c,
                format!("rollout {id}"),
                what,
                &model,
                v,
                "restore the database from a backup",
            );
        }
    }
    let rows = sqlx::query("SELECT DISTINCT model, version FROM predictions")
        .fetch_all(pool)
        .await?;
    for r in &rows {
        let (model, version): (String, i64) = (r.try_get(0)?, r.try_get(1)?);
        dangling(
            c,
            format!("prediction log of {model}@{version}"),
            "names",
            &model,
            version,
            "restore the database from a backup",
        );
    }

    let rows = sqlx::query("SELECT id, model, day, artifact FROM log_archives ORDER BY id")
        .fetch_all(pool)
        .await?;
    for r in &rows {
        let (id, model, day, artifact): (i64, String, i64, String) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
        c.log_archives += 1;
        need(
            c,
            &format!("log archive {id} ({model}, day {day})"),
            "Parquet file",
            &artifact,
        );
    }
    Ok(())
}

/// Work that started and never ended: the process stopped (crash, kill, power) mid-way.
async fn interrupted(meta: &MetaStore, c: &mut Checkup) -> Result<()> {
    let pool = meta.pool();
    for (sql, what, hint) in [
        (
            "SELECT CAST(id AS TEXT) FROM runs WHERE status = 'running'",
            "training run",
            "if no `kiln train` is running, it was interrupted: it registered nothing; train again",
        ),
        (
            "SELECT CAST(id AS TEXT) FROM pipeline_runs WHERE state = 'running'",
            "pipeline run",
            "if no `kiln pipeline run` is running, it was interrupted: run the pipeline again (finished stages are skipped)",
        ),
        (
            "SELECT CAST(id AS TEXT) FROM retrains WHERE state = 'running'",
            "retraining",
            "if no controller is running, it was interrupted: the next retraining of the model marks it failed once it is old enough",
        ),
    ] {
        for r in sqlx::query(sql).fetch_all(pool).await? {
            let id: String = r.try_get(0)?;
            c.add(
                Severity::Note,
                "interrupted",
                format!("{what} {id}"),
                "is recorded as running",
                hint,
            );
        }
    }
    Ok(())
}
