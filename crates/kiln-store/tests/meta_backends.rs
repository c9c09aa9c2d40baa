//! The metadata store behaves the same on SQLite and PostgreSQL.
//!
//! SQLite always runs. PostgreSQL runs when `KILN_TEST_POSTGRES_URL` names a server (`.ci/run`
//! starts a throwaway cluster and sets it); under CI a missing URL is a failure, not a skip.

use std::str::FromStr;

use kiln_core::id::ContentId;
use kiln_core::schema::{Column, FeatureType, Schema};
use kiln_store::testing::unique;
use kiln_store::{
    Expect, FeedbackOutcome, FeedbackRecord, LabelQuery, MetaStore, NewAlert, NewRetrain,
    NewRollout, NewRun, NewStage, NewVersion, PartRef, PredictionQuery, PredictionRecord,
    RetrainOutcome, RunResult, RunStatus, SHADOW_ALIAS, StoreError, StoredPrediction,
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
        (Some(2), Some(1), "bad canary")
    );

    // A removal needs the revision it saw, is recorded as a move to no version, and setting
    // the alias again continues its revisions.
    let canary = store
        .set_alias(&model, "canary", 2, Expect::Absent, "try", "ci")
        .await
        .unwrap();
    assert!(matches!(
        store
            .remove_alias(&model, "canary", canary.revision + 1, "stale", "ci")
            .await,
        Err(StoreError::Conflict(_))
    ));
    store
        .remove_alias(
            &model,
            "canary",
            canary.revision,
            "rolled back: worse",
            "ci",
        )
        .await
        .unwrap();
    assert!(store.alias(&model, "canary").await.unwrap().is_none());
    let again = store
        .set_alias(&model, "canary", 1, Expect::Absent, "again", "ci")
        .await
        .unwrap();
    assert_eq!(again.revision, canary.revision + 2);
    let moves: Vec<_> = store
        .alias_history(&model)
        .await
        .unwrap()
        .into_iter()
        .filter(|h| h.alias == "canary")
        .map(|h| (h.revision, h.from_version, h.to_version))
        .collect();
    assert_eq!(
        moves,
        vec![(1, None, Some(2)), (2, Some(2), None), (3, None, Some(1))]
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

/// A logged row with realistic sizes (features ~200 bytes of JSON) and every optional field
/// both set and unset across rows; text that needs escaping in JSON and SQL alike.
fn prediction(model: &str, run: &str, i: usize, time: i64) -> PredictionRecord {
    PredictionRecord {
        request_id: format!("{run}-req-{}", i / 3),
        key: i.is_multiple_of(2).then(|| format!("{run}-key-{i}")),
        model: model.to_owned(),
        version: 1 + (i % 3) as i64,
        alias: (!i.is_multiple_of(4)).then(|| "production".to_owned()),
        time,
        features: format!(
            r#"{{"dteday":"2012-06-{:02}","season":"summer","hr":{},"temp":0.{:04},"atemp":0.6212,"hum":0.{:02},"windspeed":0.1642,"weathersit":"clear","holiday":false,"workingday":true,"mnth":6,"note":"l'été \"chaud\""}}"#,
            1 + i % 28,
            i % 24,
            i % 10_000,
            i % 100
        ),
        output: format!(r#"{{"prediction":{}.5}}"#, i % 977),
        latency_us: 150 + (i % 50) as i64,
        flags: i
            .is_multiple_of(5)
            .then(|| r#"["unknown_category:season"]"#.to_owned()),
    }
}

fn record_of(p: &StoredPrediction) -> PredictionRecord {
    p.record.clone()
}

/// Every prediction of `model`, read page by page with `after_id`.
async fn all_pages(store: &MetaStore, model: &str, page: i64) -> Vec<StoredPrediction> {
    let mut all: Vec<StoredPrediction> = Vec::new();
    loop {
        let rows = store
            .predictions(&PredictionQuery {
                model: Some(model.to_owned()),
                from: None,
                to: None,
                after_id: all.last().map(|p| p.id),
                limit: page,
            })
            .await
            .unwrap();
        assert!(rows.len() as i64 <= page);
        if rows.is_empty() {
            return all;
        }
        all.extend(rows);
    }
}

/// The prediction log: a batch larger than one statement comes back identical and in order,
/// with dense ids; filters, paging and counts; concurrent appends keep batches contiguous.
async fn exercise_predictions(store: MetaStore) {
    let model = unique("log");
    let run = unique("run");
    let base = 1_700_000_000_000_000_i64;
    let total_before = store.prediction_count(None).await.unwrap();

    assert_eq!(store.append_predictions(&[]).await.unwrap(), 0);
    assert_eq!(store.prediction_count(None).await.unwrap(), total_before);

    let rows: Vec<PredictionRecord> = (0..1234)
        .map(|i| prediction(&model, &run, i, base + i as i64))
        .collect();
    assert!(rows[1].features.len() > 180, "{}", rows[1].features.len());
    assert_eq!(store.append_predictions(&rows).await.unwrap(), 1234);

    let back = all_pages(&store, &model, 500).await;
    assert_eq!(back.len(), 1234);
    assert_eq!(back.iter().map(record_of).collect::<Vec<_>>(), rows);
    for w in back.windows(2) {
        assert_eq!(
            w[1].id,
            w[0].id + 1,
            "ids of one batch are dense and ascending"
        );
    }
    assert_eq!(store.prediction_count(Some(&model)).await.unwrap(), 1234);
    assert_eq!(
        store.prediction_count(None).await.unwrap(),
        total_before + 1234
    );

    // Time range: `from` inclusive, `to` exclusive; and the model filter excludes others.
    let other = unique("other");
    let others: Vec<PredictionRecord> = (0..7)
        .map(|i| prediction(&other, &run, 5000 + i, base + 150))
        .collect();
    assert_eq!(store.append_predictions(&others).await.unwrap(), 7);
    let window = |model: Option<&str>, limit: i64| PredictionQuery {
        model: model.map(str::to_owned),
        from: Some(base + 100),
        to: Some(base + 200),
        after_id: None,
        limit,
    };
    let ranged = store
        .predictions(&window(Some(&model), 1000))
        .await
        .unwrap();
    assert_eq!(
        ranged
            .iter()
            .map(|p| p.record.time - base)
            .collect::<Vec<_>>(),
        (100..200).collect::<Vec<_>>()
    );
    let both = store.predictions(&window(None, 10_000)).await.unwrap();
    let ours: Vec<_> = both
        .iter()
        .filter(|p| p.record.model == model || p.record.model == other)
        .collect();
    assert_eq!(ours.len(), 107);
    assert_eq!(
        ours.last().unwrap().record.model,
        other,
        "by id: the later batch last"
    );
    let limited = store.predictions(&window(Some(&model), 10)).await.unwrap();
    assert_eq!(limited, ranged[..10]);
    let paged = store
        .predictions(&PredictionQuery {
            after_id: Some(ranged[9].id),
            ..window(Some(&model), 5)
        })
        .await
        .unwrap();
    assert_eq!(paged, ranged[10..15]);
    assert!(
        store
            .predictions(&window(Some(&model), -1))
            .await
            .unwrap()
            .is_empty(),
        "a negative limit reads nothing on either engine"
    );
    assert_eq!(store.prediction_count(Some(&other)).await.unwrap(), 7);

    // All rows of one request (three rows per request here), in order.
    let req = store
        .prediction_by_request(&format!("{run}-req-5"))
        .await
        .unwrap();
    assert_eq!(req.iter().map(record_of).collect::<Vec<_>>(), rows[15..18]);
    assert!(
        store
            .prediction_by_request("no such")
            .await
            .unwrap()
            .is_empty()
    );

    // Two writers at once: neither fails, and each batch's ids stay one contiguous run.
    let racing = unique("race");
    let batch = |tag: &str| -> Vec<PredictionRecord> {
        (0..600)
            .map(|i| PredictionRecord {
                request_id: format!("{tag}-{i}"),
                ..prediction(&racing, tag, i, base + i as i64)
            })
            .collect()
    };
    let (a, b) = (batch("a"), batch("b"));
    let (ra, rb) = tokio::join!(store.append_predictions(&a), store.append_predictions(&b));
    assert_eq!((ra.unwrap(), rb.unwrap()), (600, 600));
    let raced = all_pages(&store, &racing, 512).await;
    assert_eq!(raced.len(), 1200);
    for half in raced.chunks(600) {
        let tag = &half[0].record.request_id[..1];
        assert!(half.iter().all(|p| p.record.request_id.starts_with(tag)));
        assert_eq!(half[599].id - half[0].id, 599);
    }
}

/// Feedback: matched by request id or by key, stored even when unmatched; a batch with an
/// item that names neither is refused whole.
async fn exercise_feedback(store: MetaStore) {
    let model = unique("fb");
    let run = unique("fbrun");
    let rows: Vec<PredictionRecord> = (0..6)
        .map(|i| prediction(&model, &run, i, i as i64))
        .collect();
    store.append_predictions(&rows).await.unwrap();
    let item = |request_id: Option<String>, key: Option<String>, label: &str| FeedbackRecord {
        request_id,
        key,
        time: Some(42),
        label: label.to_owned(),
    };
    let items = vec![
        // Matched by request id (two rows share it: still one matched item).
        item(Some(format!("{run}-req-0")), None, "1"),
        // Matched by key.
        item(None, Some(format!("{run}-key-4")), "2.5"),
        // Unmatched request id, matched key.
        item(
            Some(format!("{run}-nope")),
            Some(format!("{run}-key-2")),
            "\"late\"",
        ),
        // Unmatched: an odd row has no key, and this request was never logged.
        item(None, Some(format!("{run}-key-1")), "true"),
        item(Some(format!("{run}-req-9")), None, "0"),
    ];
    let out = store.add_feedback(&items).await.unwrap();
    assert_eq!(
        out,
        FeedbackOutcome {
            stored: 5,
            matched: 3
        }
    );
    assert_eq!(
        store.add_feedback(&[]).await.unwrap(),
        FeedbackOutcome::default()
    );

    // Many items in one batch, across statement boundaries: one query counts the matches.
    let many: Vec<FeedbackRecord> = (0..1100)
        .map(|i| item(Some(format!("{run}-req-{}", i % 4)), None, "1"))
        .collect();
    assert_eq!(
        store.add_feedback(&many).await.unwrap(),
        FeedbackOutcome {
            stored: 1100,
            matched: 550
        }
    );

    let refused = store
        .add_feedback(&[
            item(None, Some(format!("{run}-refused")), "1"),
            item(None, None, "2"),
        ])
        .await;
    match refused {
        Err(StoreError::Invalid(m)) => assert!(m.contains("item 1"), "{m}"),
        other => panic!("expected Invalid, got {other:?}"),
    }

    // Read it all back by pages; ours are identified by the run in their ids and keys.
    let mut all = Vec::new();
    loop {
        let page = store
            .feedback(all.last().map(|f: &kiln_store::StoredFeedback| f.id), 400)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        all.extend(page);
    }
    for w in all.windows(2) {
        assert!(w[1].id > w[0].id);
    }
    let mine: Vec<_> = all
        .iter()
        .filter(|f| {
            [&f.request_id, &f.key]
                .iter()
                .any(|v| v.as_deref().is_some_and(|s| s.starts_with(&run)))
        })
        .collect();
    assert_eq!(mine.len(), 1105, "the refused batch stored nothing");
    assert!(
        !mine
            .iter()
            .any(|f| f.key.as_deref() == Some(&format!("{run}-refused")))
    );
    let first: Vec<_> = mine[..5]
        .iter()
        .map(|f| FeedbackRecord {
            request_id: f.request_id.clone(),
            key: f.key.clone(),
            time: f.time,
            label: f.label.clone(),
        })
        .collect();
    assert_eq!(first, items);
    assert!(mine.iter().all(|f| f.received_at > 0));
    assert!(store.feedback(None, -5).await.unwrap().is_empty());
}

/// All aliases of all models in one list, following moves.
async fn exercise_all_aliases(store: MetaStore) {
    let model = unique("aliased");
    for seed in [&b"x"[..], b"y"] {
        store
            .add_model_version(&model, &ContentId::of(seed), None)
            .await
            .unwrap();
    }
    store
        .set_alias(&model, "staging", 2, Expect::Absent, "try", "ci")
        .await
        .unwrap();
    store
        .set_alias(&model, "production", 1, Expect::Absent, "first", "ci")
        .await
        .unwrap();
    let ours = |all: Vec<kiln_store::Alias>| -> Vec<(String, i64, i64)> {
        all.into_iter()
            .filter(|a| a.model == model)
            .map(|a| (a.alias, a.version, a.revision))
            .collect()
    };
    let all = store.all_aliases().await.unwrap();
    // Ordered by model, then alias: each model's aliases are together (the order of the
    // models themselves follows the database's collation, which may not be byte order).
    let at: Vec<usize> = (0..all.len()).filter(|&i| all[i].model == model).collect();
    assert_eq!(at.len(), 2);
    assert_eq!(at[1], at[0] + 1);
    let mut seen = std::collections::BTreeSet::new();
    for w in all.windows(2) {
        if w[0].model != w[1].model {
            assert!(seen.insert(w[0].model.clone()), "{} is split", w[0].model);
        }
    }
    assert_eq!(
        ours(all),
        [("production".into(), 1, 1), ("staging".into(), 2, 1)]
    );
    let moved = store
        .set_alias(
            &model,
            "production",
            2,
            Expect::Revision(1),
            "promote",
            "ci",
        )
        .await
        .unwrap();
    let all = store.all_aliases().await.unwrap();
    assert!(all.contains(&moved));
    assert_eq!(
        ours(all),
        [("production".into(), 2, 2), ("staging".into(), 2, 1)]
    );
}

/// Labels join their predictions by request id or by key (and time); alerts keep one firing
/// episode per model and rule.
async fn exercise_labels_and_alerts(store: MetaStore) {
    let model = unique("lab");
    let run = unique("labrun");
    // Rows 0..6: request ids req-0 (rows 0-2) and req-1 (rows 3-5); keys on even rows.
    let rows: Vec<PredictionRecord> = (0..6)
        .map(|i| prediction(&model, &run, i, 100 + i as i64))
        .collect();
    store.append_predictions(&rows).await.unwrap();
    let fb = |request_id: Option<String>, key: Option<String>, time, label: &str| FeedbackRecord {
        request_id,
        key,
        time,
        label: label.to_owned(),
    };
    store
        .add_feedback(&[
            fb(Some(format!("{run}-req-1")), None, None, "7"),
            fb(None, Some(format!("{run}-key-0")), Some(100), "8"),
            // The right key at the wrong time joins nothing.
            fb(None, Some(format!("{run}-key-2")), Some(5), "9"),
            fb(Some("nobody".into()), None, None, "1"),
        ])
        .await
        .unwrap();
    let q = |from, after| LabelQuery {
        model: model.clone(),
        from,
        to: None,
        after_feedback: after,
        limit: 100,
        features: false,
        served_only: false,
    };
    let all = store.labelled_predictions(&q(None, None)).await.unwrap();
    let mut joined: Vec<(i64, String)> = all.iter().map(|l| (l.time, l.label.clone())).collect();
    joined.sort();
    assert_eq!(
        joined,
        [
            (100, "8".into()),
            (103, "7".into()),
            (104, "7".into()),
            (105, "7".into())
        ]
    );
    assert!(all.windows(2).all(|w| w[0].feedback_id <= w[1].feedback_id));
    // A time range and a feedback cursor both narrow it.
    assert_eq!(
        store
            .labelled_predictions(&q(Some(101), None))
            .await
            .unwrap()
            .len(),
        3
    );
    // Learning from labels needs the logged inputs; monitoring does not read them.
    assert!(all.iter().all(|l| l.features.is_none()));
    let with_inputs = store
        .labelled_predictions(&LabelQuery {
            features: true,
            served_only: false,
            ..q(None, None)
        })
        .await
        .unwrap();
    assert_eq!(with_inputs.len(), all.len());
    for l in &with_inputs {
        let row = rows.iter().find(|r| r.time == l.time).unwrap();
        assert_eq!(l.features.as_deref(), Some(row.features.as_str()));
    }
    // A shadow's copy of row 4 shares its request id, so the label joins it too; learning
    // from production rows reads each answered row once.
    let mut copy = prediction(&model, &run, 4, 104);
    copy.alias = Some(SHADOW_ALIAS.to_owned());
    copy.version = 9;
    store.append_predictions(&[copy]).await.unwrap();
    let with_copy = store.labelled_predictions(&q(None, None)).await.unwrap();
    assert_eq!(with_copy.len(), all.len() + 1);
    assert!(
        with_copy
            .iter()
            .any(|l| l.version == 9 && l.alias.as_deref() == Some(SHADOW_ALIAS))
    );
    let served = store
        .labelled_predictions(&LabelQuery {
            served_only: true,
            ..q(None, None)
        })
        .await
        .unwrap();
    assert_eq!(served.len(), all.len());
    assert!(served.iter().all(|l| l.version != 9));
    assert_eq!(
        store.latest_prediction_time(&model).await.unwrap(),
        Some(105)
    );
    assert_eq!(store.latest_prediction_time("nobody").await.unwrap(), None);
    // Rows at 100..=105, then the shadow's copy at 104: the span of the model's log.
    assert_eq!(
        store.prediction_time_range(&model).await.unwrap(),
        Some((100, 105))
    );
    assert_eq!(store.prediction_time_range("nobody").await.unwrap(), None);
    let first = all[0].feedback_id;
    assert!(
        store
            .labelled_predictions(&q(None, Some(first)))
            .await
            .unwrap()
            .iter()
            .all(|l| l.feedback_id > first)
    );

    let alert = NewAlert {
        model: model.clone(),
        version: 1,
        rule: "data_drift".into(),
        severity: "warning".into(),
        value: Some(0.6),
        threshold: Some(0.5),
        message: "6 of 10 inputs drifted".into(),
        window_start: 0,
        window_end: 10,
    };
    let id = store
        .fire_alert(&alert)
        .await
        .unwrap()
        .expect("a new alert");
    // Another replica noticing the same breach writes nothing.
    assert_eq!(store.fire_alert(&alert).await.unwrap(), None);
    let firing = store.alerts(Some(&model), true, 10).await.unwrap();
    assert_eq!(firing.len(), 1);
    assert_eq!((firing[0].id, firing[0].state.as_str()), (id, "firing"));
    assert_eq!(firing[0].alert, alert);
    assert_eq!(
        store.resolve_alert(&model, "data_drift", 20).await.unwrap(),
        Some(id)
    );
    assert_eq!(
        store.resolve_alert(&model, "data_drift", 30).await.unwrap(),
        None
    );
    assert!(
        store
            .alerts(Some(&model), true, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // It can fire again: a new episode.
    let again = store
        .fire_alert(&alert)
        .await
        .unwrap()
        .expect("a second episode");
    let history = store.alerts(Some(&model), false, 10).await.unwrap();
    assert_eq!(
        history.iter().map(|a| a.id).collect::<Vec<_>>(),
        [again, id]
    );
    assert_eq!(history[1].resolved_window_end, Some(20));
    assert!(history[1].resolved_at.is_some());
}

/// One running retraining per model; outcomes recorded once; abandoned runs closed.
async fn exercise_retrains(store: MetaStore) {
    let model = unique("retrain");
    let start = |trigger: &str| NewRetrain {
        model: model.clone(),
        trigger: trigger.into(),
        event_time: 1_000,
        champion_version: Some(1),
    };
    let day = 86_400_000_000;
    let id = store
        .start_retrain(&start("schedule"), day)
        .await
        .unwrap()
        .expect("the first retraining starts");
    // A second controller reacting to an alert meanwhile is told it is taken.
    assert_eq!(
        store
            .start_retrain(&start("alert:data_drift"), day)
            .await
            .unwrap(),
        None
    );
    let outcome = RetrainOutcome {
        state: "promoted".into(),
        labelled_rows: 42,
        feedback_cursor: 7,
        dataset_version: Some(2),
        run_id: Some(3),
        candidate_version: Some(2),
        gates: Some(serde_json::json!([{"gate": "beats_champion", "passed": true}])),
        message: "rmse 50 < 80".into(),
    };
    assert!(store.finish_retrain(id, &outcome).await.unwrap());
    assert!(
        !store.finish_retrain(id, &outcome).await.unwrap(),
        "finished twice"
    );
    let next = store
        .start_retrain(&start("alert:data_drift"), day)
        .await
        .unwrap()
        .expect("the model is free again");
    // A run whose controller died is closed as failed by the next start.
    assert_eq!(
        store.start_retrain(&start("schedule"), day).await.unwrap(),
        None
    );
    let taken_over = store
        .start_retrain(&start("schedule"), -1)
        .await
        .unwrap()
        .expect("the abandoned run no longer holds the model");
    let all = store.retrains(Some(&model), 10).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|r| (r.id, r.state.as_str()))
            .collect::<Vec<_>>(),
        [(taken_over, "running"), (next, "failed"), (id, "promoted")]
    );
    assert!(all[1].message.as_deref().unwrap().contains("abandoned"));
    let done = &all[2];
    assert_eq!(done.start, start("schedule"));
    assert_eq!(
        (
            done.labelled_rows,
            done.feedback_cursor,
            done.run_id,
            done.candidate_version
        ),
        (42, 7, Some(3), Some(2))
    );
    assert_eq!(done.gates, outcome.gates);
    assert!(done.finished_at.unwrap() >= done.started_at);
    assert!(store.retrains(None, 100).await.unwrap().len() >= 3);
}

/// Pipeline runs and their stages: recorded running before work, completed once; the cache
/// lookup sees only stages that ran or were skipped, newest first, per pipeline.
async fn exercise_pipelines(store: MetaStore) {
    let name = unique("pipe");
    let stage = |stage: &str, position: i64, key: &str| NewStage {
        stage: stage.into(),
        position,
        kind: "command".into(),
        key: key.into(),
        inputs: serde_json::json!({"deps": {"a.csv": key}}),
    };
    assert_eq!(store.last_good_stage(&name, "prep").await.unwrap(), None);
    let first = store
        .start_pipeline_run(&name, Some("abc+dirty"))
        .await
        .unwrap();
    store
        .start_stage(first, &stage("prep", 0, "k1"), None)
        .await
        .unwrap();
    // Running is not a result yet.
    assert_eq!(store.last_good_stage(&name, "prep").await.unwrap(), None);
    let out = serde_json::json!({"outs": {"b.csv": "h"}});
    assert!(
        store
            .finish_stage(first, "prep", "ran", Some(&out), 12, "wrote b.csv")
            .await
            .unwrap()
    );
    assert!(
        !store
            .finish_stage(first, "prep", "failed", None, 1, "again")
            .await
            .unwrap(),
        "a stage finishes once"
    );
    assert!(
        store
            .finish_stage(first, "prep", "skipped", None, 1, "")
            .await
            .is_err()
    );
    // The same stage twice in one run is refused.
    assert!(
        store
            .start_stage(first, &stage("prep", 0, "k1"), None)
            .await
            .is_err()
    );
    store
        .start_stage(first, &stage("train", 1, "k2"), None)
        .await
        .unwrap();
    store
        .finish_stage(first, "train", "failed", None, 5, "exit 3")
        .await
        .unwrap();
    assert!(
        store
            .finish_pipeline_run(first, "failed", "train: exit 3")
            .await
            .unwrap()
    );
    assert!(
        !store
            .finish_pipeline_run(first, "succeeded", "")
            .await
            .unwrap()
    );
    assert_eq!(store.last_good_stage(&name, "train").await.unwrap(), None);

    let second = store.start_pipeline_run(&name, None).await.unwrap();
    assert!(second > first);
    store
        .start_stage(second, &stage("prep", 0, "k1"), Some(&out))
        .await
        .unwrap();
    let cached = store
        .last_good_stage(&name, "prep")
        .await
        .unwrap()
        .expect("the skipped record counts");
    assert_eq!(
        (
            cached.run_id,
            cached.state.as_str(),
            cached.outputs.as_ref()
        ),
        (second, "skipped", Some(&out))
    );
    assert_eq!(cached.stage, stage("prep", 0, "k1"));
    assert_eq!(cached.pipeline, name);
    // Another pipeline's stage of the same name is not this one's cache.
    assert_eq!(
        store
            .last_good_stage(&unique("other"), "prep")
            .await
            .unwrap(),
        None
    );
    store
        .finish_pipeline_run(second, "succeeded", "")
        .await
        .unwrap();

    let runs = store.pipeline_runs(Some(&name), 10).await.unwrap();
    assert_eq!(
        runs.iter()
            .map(|r| (r.id, r.state.as_str()))
            .collect::<Vec<_>>(),
        [(second, "succeeded"), (first, "failed")]
    );
    assert_eq!(runs[1].code_version.as_deref(), Some("abc+dirty"));
    assert_eq!(runs[1].message.as_deref(), Some("train: exit 3"));
    assert!(runs[1].finished_at.unwrap() >= runs[1].started_at);
    let stages = store.pipeline_stages(first).await.unwrap();
    assert_eq!(
        stages
            .iter()
            .map(|s| (s.stage.stage.as_str(), s.state.as_str(), s.duration_ms))
            .collect::<Vec<_>>(),
        [("prep", "ran", Some(12)), ("train", "failed", Some(5))]
    );
    assert_eq!(stages[0].message.as_deref(), Some("wrote b.csv"));
    assert!(store.pipeline_runs(None, 100).await.unwrap().len() >= 2);
}

/// Rollouts: one running per model, ended once with its numbers, listed newest first.
async fn exercise_rollouts(store: MetaStore) {
    let model = unique("rollout");
    let new = |challenger| NewRollout {
        model: model.clone(),
        strategy: "canary".into(),
        alias: "canary".into(),
        challenger_version: challenger,
        champion_alias: "production".into(),
        champion_version: 1,
        champion_revision: 3,
        share: Some(0.25),
        retrain_id: Some(7),
        event_time: 5_000,
    };
    let id = store
        .start_rollout(&new(2))
        .await
        .unwrap()
        .expect("the first rollout starts");
    assert_eq!(store.start_rollout(&new(3)).await.unwrap(), None);
    let running = store.rollouts(Some(&model), true, 10).await.unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!((running[0].id, running[0].start.clone()), (id, new(2)));
    // Servers add the challenger's failures to the running rollout (a stopped one keeps its
    // count).
    store.add_rollout_errors(&model, 2, 2).await.unwrap();
    store.add_rollout_errors(&model, 2, 1).await.unwrap();
    store.add_rollout_errors(&model, 9, 5).await.unwrap();
    assert_eq!(
        store.rollouts(Some(&model), true, 10).await.unwrap()[0].errors,
        3
    );
    let numbers = serde_json::json!({"n": 40, "p_value": 0.2});
    store.note_rollout(id, &numbers).await.unwrap();
    assert_eq!(
        store.rollouts(Some(&model), true, 10).await.unwrap()[0].decision,
        Some(numbers.clone())
    );
    let verdict = serde_json::json!({"p99_ms": 80.0});
    assert!(
        store
            .finish_rollout(id, "rolled_back", Some(&verdict), "p99 80 ms > 50 ms")
            .await
            .unwrap()
    );
    assert!(
        !store
            .finish_rollout(id, "promoted", None, "too late")
            .await
            .unwrap(),
        "a rollout ends once"
    );
    assert!(
        store
            .rollouts(Some(&model), true, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let second = store.start_rollout(&new(3)).await.unwrap().unwrap();
    let all = store.rollouts(Some(&model), false, 10).await.unwrap();
    assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), [second, id]);
    assert_eq!(
        (
            all[1].state.as_str(),
            all[1].message.as_deref(),
            &all[1].decision
        ),
        ("rolled_back", Some("p99 80 ms > 50 ms"), &Some(verdict))
    );
    assert!(all[1].finished_at.is_some());
    store.add_rollout_errors(&model, 2, 4).await.unwrap();
    assert_eq!(
        store.rollouts(Some(&model), false, 10).await.unwrap()[1].errors,
        3
    );
    assert!(!store.rollouts(None, false, 100).await.unwrap().is_empty());
}

/// One holder at a time; renewal keeps it; expiry and release hand it on; and among many
/// concurrent takers exactly one wins.
async fn exercise_leases(store: MetaStore) {
    let name = unique("controller");
    let a = store.acquire_lease(&name, "a", 60_000_000).await.unwrap();
    assert_eq!(a.holder, "a");
    let b = store.acquire_lease(&name, "b", 60_000_000).await.unwrap();
    assert_eq!(b.holder, "a", "a live lease is not taken over");
    let renewed = store.acquire_lease(&name, "a", 60_000_000).await.unwrap();
    assert_eq!(renewed.holder, "a");
    assert_eq!(
        renewed.acquired_at, a.acquired_at,
        "renewal keeps the start"
    );
    assert!(renewed.expires_at >= a.expires_at);
    // A lease that expired (its holder stopped renewing) goes to the next taker.
    store.acquire_lease(&name, "a", -1).await.unwrap();
    let taken = store.acquire_lease(&name, "b", 60_000_000).await.unwrap();
    assert_eq!(taken.holder, "b");
    assert!(taken.acquired_at > a.acquired_at);
    // Releasing another holder's lease does nothing; the holder's own release frees it.
    store.release_lease(&name, "a").await.unwrap();
    assert_eq!(
        store
            .acquire_lease(&name, "c", 1_000_000)
            .await
            .unwrap()
            .holder,
        "b"
    );
    store.release_lease(&name, "b").await.unwrap();
    assert_eq!(
        store
            .acquire_lease(&name, "c", 1_000_000)
            .await
            .unwrap()
            .holder,
        "c"
    );
    assert!(
        store
            .leases()
            .await
            .unwrap()
            .iter()
            .any(|l| l.name == name && l.holder == "c")
    );

    // Eight takers at once on a fresh lease: one holds it, all agree who.
    let race = unique("race");
    let takers = (0..8).map(|i| {
        let (store, race) = (store.clone(), race.clone());
        tokio::spawn(async move {
            store
                .acquire_lease(&race, &format!("t{i}"), 60_000_000)
                .await
                .unwrap()
                .holder
        })
    });
    let mut holders = std::collections::BTreeSet::new();
    for t in takers {
        holders.insert(t.await.unwrap());
    }
    assert_eq!(holders.len(), 1, "{holders:?}");
}

/// Archives of the log: days are listed by event time (before 1970 too), one transaction
/// deletes exactly the archived rows and records the archive, and a second compaction of the
/// same day conflicts and changes nothing.
async fn exercise_archives(store: MetaStore) {
    use kiln_store::{DAY_US, NewLogArchive};
    let model = unique("archived");
    let day = |d: i64, h: i64| d * DAY_US + h * 3_600_000_000;
    // Days -1 (1969-12-31), 0 and 1 of the epoch, 3 rows each, then the newest on day 5.
    let rows: Vec<PredictionRecord> = [-1, 0, 1]
        .iter()
        .flat_map(|d| (0..3).map(move |h| (*d, h)))
        .enumerate()
        .map(|(i, (d, h))| prediction(&model, "arch", i, day(d, h)))
        .chain(std::iter::once(prediction(&model, "arch", 99, day(5, 1))))
        .collect();
    store.append_predictions(&rows).await.unwrap();
    assert!(store.logged_models().await.unwrap().contains(&model));

    // Whole days ending at or before day 2, 6 am: -1, 0 and 1.
    let parts = store.log_partitions(&model, day(2, 6)).await.unwrap();
    assert_eq!(
        parts.iter().map(|p| (p.day, p.rows)).collect::<Vec<_>>(),
        [(-1, 3), (0, 3), (1, 3)]
    );
    // Day 1 is not over before day 1 ends.
    assert_eq!(
        store
            .log_partitions(&model, day(1, 23))
            .await
            .unwrap()
            .len(),
        2
    );
    let p0 = parts[1].clone();
    assert_eq!((p0.time_from, p0.time_to), (day(0, 0), day(0, 2)));

    let artifact = ContentId::of(b"a day of predictions");
    let new = NewLogArchive {
        partition: p0.clone(),
        labelled: 1,
        artifact: artifact.clone(),
        bytes: 20,
        feedback_watermark: store.last_feedback_id().await.unwrap(),
    };
    let archive = store.commit_log_archive(&new).await.unwrap();
    assert_eq!((archive.day, archive.rows, archive.labelled), (0, 3, 1));
    assert_eq!(archive.artifact, artifact.as_str());
    assert_eq!(store.prediction_count(Some(&model)).await.unwrap(), 7);
    let left = all_pages(&store, &model, 100).await;
    assert!(
        left.iter()
            .all(|p| p.record.time < day(0, 0) || p.record.time >= day(1, 0))
    );

    // The same day again: the rows are gone, so the second commit refuses and changes nothing.
    let again = store.commit_log_archive(&new).await.unwrap_err();
    assert!(matches!(again, StoreError::Conflict(_)), "{again}");
    assert!(again.to_string().contains("another compaction"), "{again}");
    assert_eq!(store.prediction_count(Some(&model)).await.unwrap(), 7);
    assert_eq!(
        store.log_archives(Some(&model), None, None).await.unwrap(),
        std::slice::from_ref(&archive)
    );

    // Found by any overlapping range, not by others.
    let found = |from, to| {
        let store = store.clone();
        let model = model.clone();
        async move {
            store
                .log_archives(Some(&model), from, to)
                .await
                .unwrap()
                .len()
        }
    };
    assert_eq!(found(Some(day(0, 1)), Some(day(0, 2))).await, 1);
    assert_eq!(found(Some(day(0, 3)), None).await, 0);
    assert_eq!(found(None, Some(day(0, 0))).await, 0);
    assert_eq!(found(None, Some(day(0, 0) + 1)).await, 1);

    // Dropping archives older than a time forgets them; rows older than it go too.
    assert!(
        store
            .drop_log_archives(&model, day(0, 2))
            .await
            .unwrap()
            .is_empty()
    );
    let dropped = store.drop_log_archives(&model, day(1, 0)).await.unwrap();
    assert_eq!(dropped, [archive]);
    assert!(
        store
            .log_archives(Some(&model), None, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .delete_predictions_before(&model, day(1, 0))
            .await
            .unwrap(),
        3
    );
    assert_eq!(store.prediction_count(Some(&model)).await.unwrap(), 4);
}

#[tokio::test]
async fn sqlite_backend() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("kiln.db").display());
    exercise(MetaStore::connect(&url).await.unwrap()).await;
    exercise_registry(MetaStore::connect(&url).await.unwrap()).await;
    exercise_runs(MetaStore::connect(&url).await.unwrap()).await;
    exercise_predictions(MetaStore::connect(&url).await.unwrap()).await;
    exercise_feedback(MetaStore::connect(&url).await.unwrap()).await;
    exercise_all_aliases(MetaStore::connect(&url).await.unwrap()).await;
    exercise_labels_and_alerts(MetaStore::connect(&url).await.unwrap()).await;
    exercise_retrains(MetaStore::connect(&url).await.unwrap()).await;
    exercise_rollouts(MetaStore::connect(&url).await.unwrap()).await;
    exercise_pipelines(MetaStore::connect(&url).await.unwrap()).await;
    exercise_leases(MetaStore::connect(&url).await.unwrap()).await;
    exercise_archives(MetaStore::connect(&url).await.unwrap()).await;
    // Reopening runs no migration twice and keeps the data.
    let again = MetaStore::connect(&url).await.unwrap();
    assert_eq!(again.datasets().await.unwrap().len(), 1);
}

/// On SQLite the log's appends go through a connection of their own (`appender.rs`), beside
/// the pool's. Two stores on one file appending at once from a multi-threaded runtime (where an
/// append leaves its worker with `block_in_place`), while feedback is written through the pool:
/// every row is stored once, ids are dense over both writers, and each batch's ids are one run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_appends_from_two_stores_and_the_pool_share_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("kiln.db").display());
    let stores = [
        MetaStore::connect(&url).await.unwrap(),
        MetaStore::connect(&url).await.unwrap(),
    ];
    let mut tasks = Vec::new();
    for (s, store) in stores.iter().enumerate() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for b in 0..20 {
                let rows: Vec<PredictionRecord> = (0..250)
                    .map(|i| prediction(&format!("m{s}"), &format!("s{s}b{b}"), i, i as i64))
                    .collect();
                assert_eq!(store.append_predictions(&rows).await.unwrap(), 250);
            }
        }));
    }
    let pool_writer = stores[0].clone();
    tasks.push(tokio::spawn(async move {
        for i in 0..40 {
            let item = FeedbackRecord {
                request_id: Some(format!("s0b0-req-{i}")),
                key: None,
                time: None,
                label: "1".into(),
            };
            assert_eq!(pool_writer.add_feedback(&[item]).await.unwrap().stored, 1);
        }
    }));
    for t in tasks {
        t.await.unwrap();
    }
    let reader = MetaStore::connect(&url).await.unwrap();
    assert_eq!(reader.prediction_count(None).await.unwrap(), 10_000);
    let all = reader
        .predictions(&PredictionQuery {
            model: None,
            from: None,
            to: None,
            after_id: None,
            limit: 20_000,
        })
        .await
        .unwrap();
    let ids: Vec<i64> = all.iter().map(|p| p.id).collect();
    assert_eq!(ids, (1..=10_000).collect::<Vec<i64>>());
    // Each batch (250 rows with one request-id prefix) holds one run of consecutive ids.
    for chunk in all.chunks(250) {
        let prefix = chunk[0].record.request_id.split('-').next().unwrap();
        assert!(
            chunk
                .iter()
                .all(|p| p.record.request_id.starts_with(&format!("{prefix}-"))),
            "a batch was interleaved with another"
        );
    }
    assert_eq!(reader.feedback(None, 100).await.unwrap().len(), 40);
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
    exercise_predictions(MetaStore::connect(&url).await.unwrap()).await;
    exercise_feedback(MetaStore::connect(&url).await.unwrap()).await;
    exercise_all_aliases(MetaStore::connect(&url).await.unwrap()).await;
    exercise_labels_and_alerts(MetaStore::connect(&url).await.unwrap()).await;
    exercise_retrains(MetaStore::connect(&url).await.unwrap()).await;
    exercise_rollouts(MetaStore::connect(&url).await.unwrap()).await;
    exercise_pipelines(MetaStore::connect(&url).await.unwrap()).await;
    exercise_leases(MetaStore::connect(&url).await.unwrap()).await;
    exercise_archives(MetaStore::connect(&url).await.unwrap()).await;
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
    assert!(e.contains("hint: is the database server running"), "{e}");
    // A server that answers but refuses what the URL names: one hint each.
    let Ok(url) = std::env::var("KILN_TEST_POSTGRES_URL") else {
        return;
    };
    let server = url.rsplit_once('/').unwrap().0;
    let e = MetaStore::connect(&format!("{server}/no_such_database"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Connect { refused: true, .. }),
        "{e:?}"
    );
    let e = e.to_string();
    assert!(
        e.contains("no_such_database") && e.contains("hint: the database does not exist"),
        "{e}"
    );
    let stranger = server.replacen("://", "://no_such_role:pw@", 1);
    let stranger = match stranger.split_once('@') {
        // postgres://no_such_role:pw@kiln@host: drop the URL's own user.
        Some((creds, rest)) => format!("{creds}@{}", rest.rsplit('@').next().unwrap()),
        None => stranger,
    };
    let e = MetaStore::connect(&format!("{stranger}/kiln_test"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("hint: the server refused these credentials") && !e.contains(":pw@"),
        "{e}"
    );
}

/// Appends 100,000 rows (features ~200 bytes) once as a single call and once as 1,000-row
/// flushes (what a server's log writer does), and prints the rates.
async fn append_throughput(store: MetaStore, engine: &str) {
    let model = unique("bench");
    let base = 1_700_000_000_000_000_i64;
    let rows: Vec<PredictionRecord> = (0..100_000)
        .map(|i| prediction(&model, "bench", i, base + i as i64))
        .collect();
    let avg = rows.iter().map(|r| r.features.len()).sum::<usize>() / rows.len();
    let started = std::time::Instant::now();
    assert_eq!(store.append_predictions(&rows).await.unwrap(), 100_000);
    let one = started.elapsed();
    let started = std::time::Instant::now();
    for chunk in rows.chunks(1000) {
        assert_eq!(store.append_predictions(chunk).await.unwrap(), 1000);
    }
    let flushes = started.elapsed();
    assert_eq!(store.prediction_count(Some(&model)).await.unwrap(), 200_000);
    let rate = |d: std::time::Duration| 100_000.0 / d.as_secs_f64();
    println!(
        "{engine}: 100,000 predictions (features ~{avg} bytes): one call {:.3} s ({:.0} rows/s); \
         100 calls of 1,000 {:.3} s ({:.0} rows/s)",
        one.as_secs_f64(),
        rate(one),
        flushes.as_secs_f64(),
        rate(flushes)
    );
}

/// Append throughput, a measurement rather than a check: `cargo test --release -p kiln-store
/// --test meta_backends -- --ignored --nocapture` (PostgreSQL too when
/// `KILN_TEST_POSTGRES_URL` is set).
#[tokio::test]
#[ignore = "a measurement, not a check: run it in release mode"]
async fn append_throughput_100k() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("kiln.db").display());
    append_throughput(MetaStore::connect(&url).await.unwrap(), "SQLite").await;
    if let Ok(url) = std::env::var("KILN_TEST_POSTGRES_URL") {
        append_throughput(MetaStore::connect(&url).await.unwrap(), "PostgreSQL").await;
    }
}
