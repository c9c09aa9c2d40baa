//! The metadata store behaves the same on SQLite and PostgreSQL.
//!
//! SQLite always runs. PostgreSQL runs when `KILN_TEST_POSTGRES_URL` names a server (`.ci/run`
//! starts a throwaway cluster and sets it); under CI a missing URL is a failure, not a skip.

use std::str::FromStr;

use kiln_core::id::ContentId;
use kiln_core::schema::{Column, FeatureType, Schema};
use kiln_store::{
    Expect, MetaStore, NewRun, NewVersion, PartRef, RunResult, RunStatus, StoreError,
};

fn new_version(dataset: &str, seed: &str) -> NewVersion {
    let id = ContentId::of(seed.as_bytes());
    NewVersion {
        dataset: dataset.to_owned(),
        time_column: Some("t".into()),
        target: None,
        snapshot_id: id.clone(),
        mode: "add".into(),
        rows: 10,
        schema: Schema::new(vec![Column {
            name: "t".into(),
            ftype: FeatureType::Date,
        }]),
        parts: vec![PartRef {
            id: id.clone(),
            rows: 10,
            profile_id: id.clone(),
        }],
        profile_id: id.clone(),
        time_min: Some("2011-01-01".into()),
        time_max: None,
        source: "x.csv".into(),
        source_hash: ContentId::from_str(&"0".repeat(64)).unwrap(),
        quarantine_id: None,
        quarantined_rows: 0,
    }
}

/// A dataset name no earlier run used (PostgreSQL databases outlive a test run).
fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

async fn exercise(store: MetaStore) {
    let name = unique("bikes");
    let (v1, created) = store.add_version(&new_version(&name, "a")).await.unwrap();
    assert!(created);
    assert_eq!(v1.version, 1);
    assert_eq!(v1.parent_version, None);
    let ds = store.dataset(&name).await.unwrap().unwrap();
    assert_eq!(ds.time_column.as_deref(), Some("t"));

    // Same snapshot again: a no-op that returns the existing version.
    let (same, created) = store.add_version(&new_version(&name, "a")).await.unwrap();
    assert!(!created);
    assert_eq!(same.version, 1);

    let (v2, _) = store.add_version(&new_version(&name, "b")).await.unwrap();
    assert_eq!((v2.version, v2.parent_version), (2, Some(1)));
    let back = store.version(&name, Some(2)).await.unwrap().unwrap();
    assert_eq!(back.snapshot_id, ContentId::of(b"b"));
    assert_eq!(back.schema, new_version(&name, "b").schema);
    assert_eq!(back.parts, new_version(&name, "b").parts);
    assert_eq!(
        store.version(&name, None).await.unwrap().unwrap().version,
        2
    );
    assert!(store.version(&name, Some(9)).await.unwrap().is_none());

    // Eight writers at once: every version lands exactly once, numbered 3..=10.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = store.clone();
        let n = name.clone();
        tasks.push(tokio::spawn(async move {
            s.add_version(&new_version(&n, &format!("w{i}"))).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let versions = store.versions(&name).await.unwrap();
    let numbers: Vec<i64> = versions.iter().map(|v| v.version).collect();
    assert_eq!(numbers, (1..=10).collect::<Vec<_>>());
    let snaps: std::collections::BTreeSet<_> = versions.iter().map(|v| &v.snapshot_id).collect();
    assert_eq!(snaps.len(), 10);
    for w in versions.windows(2) {
        assert_eq!(w[1].parent_version, Some(w[0].version));
    }

    // Recording an artifact twice is harmless.
    let id = ContentId::of(unique("blob").as_bytes());
    store.record_artifact(&id, "profile", 3).await.unwrap();
    store.record_artifact(&id, "profile", 3).await.unwrap();
}

async fn exercise_registry(store: MetaStore) {
    let model = unique("demand");
    let a = ContentId::of(b"model a");
    let v1 = store
        .add_model_version(&model, &a, Some("run-1"))
        .await
        .unwrap();
    let v2 = store
        .add_model_version(&model, &ContentId::of(b"model b"), None)
        .await
        .unwrap();
    assert_eq!((v1.version, v2.version), (1, 2));
    assert_eq!(
        store.model_versions(&model).await.unwrap()[0].artifact_id,
        a
    );

    let p = store
        .set_alias(&model, "production", 1, Expect::Absent, "first", "ci")
        .await
        .unwrap();
    assert_eq!((p.version, p.revision), (1, 1));
    let again = store
        .set_alias(&model, "production", 2, Expect::Absent, "again", "ci")
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let missing = store
        .set_alias(&model, "production", 9, Expect::Any, "no such", "ci")
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );

    // Two writers that both saw revision 1: exactly one wins, the other is told.
    let (s1, s2) = (store.clone(), store.clone());
    let (m1, m2) = (model.clone(), model.clone());
    let (r1, r2) = tokio::join!(
        async move {
            s1.set_alias(&m1, "production", 2, Expect::Revision(1), "w1", "a")
                .await
        },
        async move {
            s2.set_alias(&m2, "production", 2, Expect::Revision(1), "w2", "b")
                .await
        },
    );
    let wins = [&r1, &r2].iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{r1:?} {r2:?}");
    assert!(
        [&r1, &r2]
            .iter()
            .any(|r| matches!(r, Err(StoreError::Conflict(m)) if m.contains("retry")))
    );

    // Eight writers that move whatever is there: every move lands, none is lost.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (s, m) = (store.clone(), model.clone());
        tasks.push(tokio::spawn(async move {
            s.set_alias(&m, "staging", 1 + (i % 2), Expect::Any, "load", "t")
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let staging = store.alias(&model, "staging").await.unwrap().unwrap();
    assert_eq!(staging.revision, 8);
    let history = store.alias_history(&model).await.unwrap();
    let mut revs: Vec<i64> = history
        .iter()
        .filter(|h| h.alias == "staging")
        .map(|h| h.revision)
        .collect();
    revs.sort_unstable();
    assert_eq!(revs, (1..=8).collect::<Vec<_>>());
    assert_eq!(
        history.iter().filter(|h| h.alias == "production").count(),
        2
    );

    // Rollback returns production to where it was before its last move, as a move of its own.
    let back = store
        .rollback_alias(&model, "production", "bad canary", "ci")
        .await
        .unwrap();
    assert_eq!((back.version, back.revision), (1, 3));
    let last = store.alias_history(&model).await.unwrap();
    let last = last.iter().rfind(|h| h.alias == "production").unwrap();
    assert_eq!(
        (last.from_version, last.to_version, last.reason.as_str()),
        (Some(2), 1, "bad canary")
    );
}

/// Runs: started, finished or failed in place; ids distinct under concurrent starts; JSON and
/// a u64 seed above i64::MAX survive the round trip.
async fn exercise_runs(store: MetaStore) {
    let new = NewRun {
        dataset: unique("runs"),
        dataset_version: 3,
        snapshot_id: ContentId::of(b"snap"),
        params: serde_json::json!({"learner": "gbdt", "params": {"iterations": 80}}),
        seed: u64::MAX - 1,
        code_version: Some("abc123+dirty".into()),
        kiln_version: "0.1.0".into(),
    };
    let (a, b) = tokio::join!(store.start_run(&new), store.start_run(&new));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a, b, "two concurrent starts get distinct ids");
    let running = store.run(a).await.unwrap().unwrap();
    assert_eq!(running.status, RunStatus::Running);
    assert_eq!(running.seed, u64::MAX - 1);
    assert_eq!(running.params["params"]["iterations"], 80);
    assert!(running.finished_at.is_none());
    store
        .finish_run(
            a,
            &RunResult {
                metrics: serde_json::json!({"model": {"rmse": 1.5}}),
                importance: serde_json::json!([["hr", 0.7]]),
                timings: serde_json::json!({"fit": 0.1}),
                artifact_id: ContentId::of(b"model"),
            },
        )
        .await
        .unwrap();
    store.fail_run(b, "target `cnt` is constant").await.unwrap();
    let done = store.run(a).await.unwrap().unwrap();
    assert_eq!(done.status, RunStatus::Finished);
    assert_eq!(done.metrics.unwrap()["model"]["rmse"], 1.5);
    assert_eq!(done.artifact_id, Some(ContentId::of(b"model")));
    let failed = store.run(b).await.unwrap().unwrap();
    assert_eq!(failed.status, RunStatus::Failed);
    assert_eq!(failed.error.as_deref(), Some("target `cnt` is constant"));
    let recent = store.runs(2).await.unwrap();
    assert_eq!(recent.len(), 2);
    assert!(recent[0].id > recent[1].id, "newest first");
    assert!(store.run(i64::MAX).await.unwrap().is_none());
}

#[tokio::test]
async fn sqlite_backend() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("kiln.db").display());
    exercise(MetaStore::connect(&url).await.unwrap()).await;
    exercise_registry(MetaStore::connect(&url).await.unwrap()).await;
    exercise_runs(MetaStore::connect(&url).await.unwrap()).await;
    // Reopening runs no migration twice and keeps the data.
    let again = MetaStore::connect(&url).await.unwrap();
    assert_eq!(again.datasets().await.unwrap().len(), 1);
}

#[tokio::test]
async fn postgres_backend() {
    let Ok(url) = std::env::var("KILN_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must set KILN_TEST_POSTGRES_URL (see .ci/run)"
        );
        eprintln!("skipped: KILN_TEST_POSTGRES_URL is not set");
        return;
    };
    exercise(MetaStore::connect(&url).await.unwrap()).await;
    exercise_registry(MetaStore::connect(&url).await.unwrap()).await;
    exercise_runs(MetaStore::connect(&url).await.unwrap()).await;
}

#[tokio::test]
async fn unreachable_and_unsupported_backends_fail_clearly() {
    let e = MetaStore::connect("mysql://x")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("unsupported database URL"), "{e}");
    let e = MetaStore::connect("postgres://kiln:secret@127.0.0.1:1/none")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("127.0.0.1:1") && !e.contains("secret"), "{e}");
}
