//! The native API, end to end over loopback: answers equal batch scoring bit for bit, every
//! client mistake gets its status and JSON error, labels are stored, every prediction is
//! logged, and access control holds.

mod common;

use common::*;
use kiln_serve::config::RangePolicy;
use kiln_store::PredictionQuery;
use serde_json::{Value, json};

fn values(body: &Value) -> Vec<f64> {
    body["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["value"].as_f64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predictions_equal_batch_scoring_bit_for_bit() {
    let server = Running::start(test_config(), admin_only()).await;
    let rows = bike_rows(300);
    let (status, body, headers) = server
        .post("/v1/models/bikes/predict", &json!({ "instances": rows }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], "bikes");
    assert_eq!(body["version"], 1);
    assert_eq!(body["alias"], "production");
    let served = values(&body);
    assert_eq!(served.len(), 300);

    // The same rows through `kiln predict`'s path: a CSV file scored to a CSV file.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("rows.csv");
    let mut w = csv::Writer::from_path(&input).unwrap();
    let names: Vec<String> = rows[0].as_object().unwrap().keys().cloned().collect();
    w.write_record(&names).unwrap();
    for r in &rows {
        w.write_record(names.iter().map(|n| r[n].as_str().unwrap()))
            .unwrap();
    }
    w.flush().unwrap();
    let output = dir.path().join("out.csv");
    let version = kiln_train::registry::resolve(&server.store, &"bikes@1".parse().unwrap())
        .await
        .unwrap();
    let artifact = kiln_train::registry::load(&server.store, &version)
        .await
        .unwrap();
    std::fs::create_dir_all(dir.path().join("scratch")).unwrap();
    kiln_train::predict::predict_file(
        &config(),
        &dir.path().join("scratch"),
        &artifact,
        &input,
        &output,
        std::sync::Arc::new(kiln_data::ingest::NoProgress),
    )
    .await
    .unwrap();
    let mut r = csv::Reader::from_path(&output).unwrap();
    let col = r
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "prediction")
        .unwrap();
    let batch: Vec<f64> = r
        .records()
        .map(|rec| rec.unwrap()[col].parse().unwrap())
        .collect();
    assert_eq!(served, batch, "server and batch scoring differ");

    // One id per row, derived from the request's id, which is also the response header.
    let id = headers["x-request-id"].to_str().unwrap();
    assert_eq!(body["predictions"][0]["request_id"], format!("{id}.0"));
    assert_eq!(body["predictions"][299]["request_id"], format!("{id}.299"));
    server.stop().await;
}

/// A model imported as ONNX is served like a trained one, through the same scoring call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_onnx_models_are_served_like_trained_ones() {
    let server = Running::start(test_config(), admin_only()).await;
    let rows = bike_rows(40);
    let (status, body, _) = server
        .post(
            "/v1/models/bikes-onnx/predict",
            &json!({ "instances": rows }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let served = values(&body);
    let version = kiln_train::registry::resolve(&server.store, &"bikes-onnx@1".parse().unwrap())
        .await
        .unwrap();
    let artifact = kiln_train::registry::load(&server.store, &version)
        .await
        .unwrap();
    let batch = kiln_data::rows::batch_from_json(&artifact.schema, &rows).unwrap();
    let kiln_model::learner::Predictions::Values(direct) =
        artifact.score(&batch).unwrap().predictions
    else {
        panic!("a regressor")
    };
    assert_eq!(served, direct);
    // Predictions vary with the inputs: the model is really consulted.
    assert!(
        served.iter().any(|v| (v - served[0]).abs() > 1.0),
        "{served:?}"
    );
    let (s, meta) = server.get("/v2/models/bikes-onnx").await;
    assert_eq!(s, 200);
    let meta: Value = serde_json::from_str(&meta).unwrap();
    assert_eq!(
        meta["inputs"].as_array().unwrap().len(),
        artifact.schema.columns.len()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_kept_or_generated_and_versions_selectable() {
    let server = Running::start(test_config(), admin_only()).await;
    let r = server
        .client
        .post(format!("{}/v1/models/bikes/predict", server.url))
        .header("x-request-id", "client-id-42")
        .json(&json!({"instances": [bike_row()]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "client-id-42");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["predictions"][0]["request_id"], "client-id-42");
    let v1 = body["predictions"][0]["value"].as_f64().unwrap();

    let (s, b2, _) = server
        .post(
            "/v1/models/bikes/predict?version=2",
            &json!({"instances": [bike_row()]}),
        )
        .await;
    assert_eq!(s, 200, "{b2}");
    assert_eq!(b2["version"], 2);
    assert!(b2.get("alias").is_none());
    assert_ne!(b2["predictions"][0]["value"].as_f64().unwrap(), v1);
    let (s, b, h) = server
        .post(
            "/v1/models/bikes/predict",
            &json!({"instances": [bike_row()]}),
        )
        .await;
    assert_eq!(s, 200);
    let generated = h["x-request-id"].to_str().unwrap();
    assert_eq!(generated.len(), 20, "{generated}");
    assert_eq!(b["predictions"][0]["request_id"], generated);

    let bad = server
        .client
        .post(format!("{}/v1/models/bikes/predict", server.url))
        .header("x-request-id", "has space")
        .json(&json!({"instances": [bike_row()]}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let e: Value = bad.json().await.unwrap();
    assert_eq!(e["error"]["code"], "invalid_request_id");
    server.stop().await;
}

async fn expect_error(
    server: &Running,
    path: &str,
    body: &Value,
    status: u16,
    code: &str,
) -> Value {
    let (s, b, _) = server.post(path, body).await;
    assert_eq!(s, status, "{path} {body}: {b}");
    assert_eq!(b["error"]["code"], code, "{b}");
    assert!(b["error"]["message"].as_str().unwrap().len() > 10);
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_mistakes_get_their_status_and_a_json_error() {
    let mut config = test_config();
    config.max_rows = 50;
    config.body_limit_bytes = 64 * 1024;
    let server = Running::start(config, admin_only()).await;
    let p = "/v1/models/bikes/predict";

    let mut missing = bike_row();
    missing.as_object_mut().unwrap().remove("hum");
    let b = expect_error(
        &server,
        p,
        &json!({"instances": [bike_row(), missing]}),
        422,
        "missing_feature",
    )
    .await;
    assert_eq!(b["error"]["field"], "hum");
    assert_eq!(b["error"]["row"], 1);

    let mut wrong = bike_row();
    wrong["temp"] = json!("warm");
    let b = expect_error(
        &server,
        p,
        &json!({"instances": [wrong]}),
        422,
        "wrong_type",
    )
    .await;
    assert_eq!(b["error"]["field"], "temp");

    let mut inf = bike_row();
    inf["hum"] = json!("inf");
    let b = expect_error(&server, p, &json!({"instances": [inf]}), 422, "not_finite").await;
    assert_eq!(b["error"]["field"], "hum");

    expect_error(
        &server,
        p,
        &json!({"instances": [1, 2]}),
        400,
        "not_an_object",
    )
    .await;
    expect_error(&server, p, &json!({"rows": []}), 422, "invalid_body").await;
    expect_error(&server, p, &json!({"instances": []}), 422, "no_rows").await;
    expect_error(
        &server,
        p,
        &json!({"instances": [bike_row()], "keys": ["a", "b"]}),
        422,
        "keys_mismatch",
    )
    .await;
    let many: Vec<Value> = (0..51).map(|_| bike_row()).collect();
    expect_error(
        &server,
        p,
        &json!({"instances": many}),
        413,
        "too_many_rows",
    )
    .await;
    expect_error(
        &server,
        "/v1/models/nope/predict",
        &json!({"instances": [bike_row()]}),
        404,
        "unknown_model",
    )
    .await;
    expect_error(
        &server,
        &format!("{p}?version=99"),
        &json!({"instances": [bike_row()]}),
        404,
        "unknown_version",
    )
    .await;
    expect_error(
        &server,
        &format!("{p}?alias=staging"),
        &json!({"instances": [bike_row()]}),
        404,
        "unknown_alias",
    )
    .await;
    expect_error(
        &server,
        &format!("{p}?version=1&alias=production"),
        &json!({"instances": [bike_row()]}),
        400,
        "conflicting_selection",
    )
    .await;
    expect_error(
        &server,
        &format!("{p}?version=x"),
        &json!({"instances": [bike_row()]}),
        400,
        "invalid_query",
    )
    .await;
    expect_error(&server, "/v1/nowhere", &json!({}), 404, "no_route").await;

    let send = |body: Vec<u8>, ctype: &'static str| {
        server
            .client
            .post(format!("{}{p}", server.url))
            .header("content-type", ctype)
            .body(body)
    };
    let check = |r: reqwest::Response, status: u16, code: &'static str| async move {
        assert_eq!(r.status().as_u16(), status);
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["error"]["code"], code, "{b}");
        b
    };
    let b = check(
        send(b"{\"instances\": [".to_vec(), "application/json")
            .send()
            .await
            .unwrap(),
        400,
        "invalid_json",
    )
    .await;
    assert!(b["error"]["message"].as_str().unwrap().contains("column"));
    // JSON syntax, but a number no f64 holds: the row that has it is named.
    let mut row = bike_row();
    row.as_object_mut().unwrap().remove("temp");
    let huge = format!(
        r#"{{"instances": [{}, {{"temp": 1e400, {}]}}"#,
        bike_row(),
        &row.to_string()[1..]
    );
    let b = check(
        send(huge.into_bytes(), "application/json")
            .send()
            .await
            .unwrap(),
        400,
        "invalid_json",
    )
    .await;
    assert_eq!(b["error"]["row"], 1, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("out of range"),
        "{b}"
    );
    check(
        send(b"{}".to_vec(), "text/csv").send().await.unwrap(),
        415,
        "unsupported_media_type",
    )
    .await;
    check(
        send(vec![b' '; 70 * 1024], "application/json")
            .send()
            .await
            .unwrap(),
        413,
        "body_too_large",
    )
    .await;
    check(
        send(vec![0xff, 0xfe, 0x00], "application/json")
            .send()
            .await
            .unwrap(),
        400,
        "invalid_json",
    )
    .await;
    let deep = "[".repeat(10_000);
    check(
        send(deep.into_bytes(), "application/json")
            .send()
            .await
            .unwrap(),
        400,
        "invalid_json",
    )
    .await;
    let r = server
        .client
        .get(format!("{}{p}", server.url))
        .send()
        .await
        .unwrap();
    check(r, 405, "method_not_allowed").await;

    // Nothing a client sent made the server fail.
    let (_, metrics) = server.get("/metrics").await;
    assert!(!metrics.contains("status=\"500\""), "{metrics}");
    assert!(metrics.contains("kiln_validation_failures_total{code=\"missing_feature\",field=\"hum\",model=\"bikes\"} 1"), "{metrics}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_categories_and_out_of_range_values_are_flagged_or_refused() {
    let server = Running::start(test_config(), admin_only()).await;
    let mut odd = bike_row();
    odd["season"] = json!("monsoon");
    odd["temp"] = json!(80.0);
    let (s, b, _) = server
        .post(
            "/v1/models/bikes/predict",
            &json!({"instances": [bike_row(), odd]}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert!(b["predictions"][0].get("flags").is_none());
    assert_eq!(
        b["predictions"][1]["flags"],
        json!(["unknown_category:season", "out_of_range:temp"])
    );
    let (_, metrics) = server.get("/metrics").await;
    assert!(metrics.contains(
        "kiln_flagged_values_total{field=\"season\",flag=\"unknown_category\",model=\"bikes\"} 1"
    ));
    server.stop().await;

    let mut config = test_config();
    config.out_of_range = RangePolicy::Reject;
    let server = Running::start(config, admin_only()).await;
    let mut hot = bike_row();
    hot["temp"] = json!(80.0);
    let b = expect_error(
        &server,
        "/v1/models/bikes/predict",
        &json!({"instances": [bike_row(), hot]}),
        422,
        "out_of_range",
    )
    .await;
    assert_eq!(b["error"]["row"], 1);
    assert_eq!(b["error"]["field"], "temp");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classifiers_answer_a_class_and_probabilities() {
    let server = Running::start(test_config(), admin_only()).await;
    let (s, b, _) = server
        .post(
            "/v1/models/workday/predict",
            &json!({"instances": bike_rows(20)}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    for p in b["predictions"].as_array().unwrap() {
        let probs = p["probabilities"].as_object().unwrap();
        assert_eq!(probs.len(), 2);
        let total: f64 = probs.values().map(|v| v.as_f64().unwrap()).sum();
        assert!((total - 1.0).abs() < 1e-9, "{p}");
        let best = probs
            .iter()
            .max_by(|a, b| a.1.as_f64().unwrap().total_cmp(&b.1.as_f64().unwrap()))
            .unwrap()
            .0;
        assert_eq!(p["class"], best.as_str());
        assert!(p.get("value").is_none());
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_prediction_is_logged_and_feedback_joins_it() {
    let server = Running::start(test_config(), admin_only()).await;
    let mut ids = Vec::new();
    for i in 0..40 {
        let rows = bike_rows(1 + i % 3);
        let keys: Vec<String> = (0..rows.len()).map(|j| format!("k{i}-{j}")).collect();
        let (s, b, _) = server
            .post(
                "/v1/models/bikes/predict",
                &json!({"instances": rows, "keys": keys}),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        for p in b["predictions"].as_array().unwrap() {
            ids.push((
                p["request_id"].as_str().unwrap().to_owned(),
                p["value"].as_f64().unwrap(),
            ));
        }
    }
    // Labels by request id (one of them for a prediction that does not exist) and by key.
    let (s, b, _) = server
        .post(
            "/v1/feedback",
            &json!([
                {"request_id": ids[0].0, "label": 17},
                {"request_id": "never-issued", "label": 3},
                {"key": "k5-1", "time": "2012-07-01 10:00:00", "label": 4.5}
            ]),
        )
        .await;
    // The first two requests may still be queued: matching is counted only for what is
    // written; give the writer its flush interval, then send a label that must match.
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["stored"], 3);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (_, b, _) = server
        .post(
            "/v1/feedback",
            &json!([{"request_id": ids[1].0, "label": 1}]),
        )
        .await;
    assert_eq!(b["matched"], 1, "{b}");
    for (body, code) in [
        (json!([{"label": 1}]), "missing_reference"),
        (json!([{"request_id": "a", "label": null}]), "invalid_label"),
        (
            json!([{"request_id": "a", "label": {"x": 1}}]),
            "invalid_label",
        ),
        (
            json!([{"key": "a", "time": "yesterday", "label": 1}]),
            "invalid_time",
        ),
        (json!([]), "no_rows"),
    ] {
        expect_error(&server, "/v1/feedback", &body, 422, code).await;
    }

    let (_home, store) = server.stop().await;
    let logged = store
        .meta
        .predictions(&PredictionQuery {
            model: Some("bikes".into()),
            from: None,
            to: None,
            after_id: None,
            limit: 10_000,
        })
        .await
        .unwrap();
    assert_eq!(
        logged.len(),
        ids.len(),
        "every prediction is in the log after shutdown"
    );
    for (row, (id, value)) in logged.iter().map(|p| &p.record).zip(&ids) {
        assert_eq!(&row.request_id, id);
        assert_eq!(row.version, 1);
        assert_eq!(row.alias.as_deref(), Some("production"));
        let out: Value = serde_json::from_str(&row.output).unwrap();
        assert_eq!(out["value"].as_f64().unwrap(), *value);
        let features: Value = serde_json::from_str(&row.features).unwrap();
        assert!(features["season"].is_string());
        assert!(row.key.as_deref().unwrap().starts_with('k'));
        assert!(row.latency_us >= 0);
    }
    let labels = store.meta.feedback(None, 100).await.unwrap();
    assert_eq!(labels.len(), 4);
    assert_eq!(labels[2].key.as_deref(), Some("k5-1"));
    assert_eq!(labels[2].time, Some(1_341_136_800_000_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_can_be_turned_off() {
    let mut config = test_config();
    config.log.enabled = false;
    let server = Running::start(config, admin_only()).await;
    let (s, _, _) = server
        .post(
            "/v1/models/bikes/predict",
            &json!({"instances": [bike_row()]}),
        )
        .await;
    assert_eq!(s, 200);
    let (_home, store) = server.stop().await;
    assert_eq!(store.meta.prediction_count(None).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_guard_admin_and_prediction_routes() {
    let creds = kiln_serve::Credentials {
        admin_token: Some(ADMIN_TOKEN.into()),
        api_keys: vec![API_KEY.into()],
    };
    let server = Running::start(test_config(), creds).await;
    let c = &server.client;
    let u = &server.url;
    let predict = || {
        c.post(format!("{u}/v1/models/bikes/predict"))
            .json(&json!({"instances": [bike_row()]}))
    };
    let reload = || c.post(format!("{u}/v1/admin/reload"));

    let r = predict().send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        predict()
            .header("x-api-key", "wrong")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        predict()
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        predict()
            .header("x-api-key", API_KEY)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    assert_eq!(reload().send().await.unwrap().status(), 401);
    let r = reload().bearer_auth("not-the-token").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body = r.text().await.unwrap();
    assert!(
        !body.contains("not-the-token") && !body.contains(ADMIN_TOKEN),
        "{body}"
    );
    let r = reload().bearer_auth(API_KEY).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "forbidden"
    );
    assert_eq!(
        reload()
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Open routes stay open.
    assert_eq!(server.get("/v2/health/ready").await.0, 200);
    assert_eq!(server.get("/metrics").await.0, 200);
    // Feedback follows the prediction keys by default.
    let fb = || {
        c.post(format!("{u}/v1/feedback"))
            .json(&json!([{"request_id": "x", "label": 1}]))
    };
    assert_eq!(fb().send().await.unwrap().status(), 401);
    assert_eq!(
        fb().bearer_auth(API_KEY).send().await.unwrap().status(),
        200
    );
    let (_, metrics) = server.get("/metrics").await;
    assert!(
        metrics.contains("kiln_auth_failures_total{scope=\"admin\"} 3"),
        "{metrics}"
    );
    server.stop().await;

    // Without an admin token the admin routes are off, whatever is presented.
    let server = Running::start(test_config(), kiln_serve::Credentials::default()).await;
    let r = server
        .client
        .post(format!("{}/v1/admin/reload", server.url))
        .bearer_auth("anything")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "admin_disabled"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_moves_aliases_and_rolls_back() {
    // The poller is slowed down, so what serves the move at once is the admin route's reload.
    let mut config = test_config();
    config.poll_interval_ms = 600_000;
    let server = Running::start(config, admin_only()).await;
    let c = &server.client;
    let u = &server.url;
    let r = c
        .post(format!("{u}/v1/admin/models/bikes/aliases/production"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"version": 2, "reason": "better"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["version"], 2);
    assert_eq!(b["served_version"], 2, "{b}");
    // Served at once by this server.
    let (_, p, _) = server
        .post(
            "/v1/models/bikes/predict",
            &json!({"instances": [bike_row()]}),
        )
        .await;
    assert_eq!(p["version"], 2);
    // A stale revision is a conflict; a missing version is not found; no reason is refused.
    for (body, status, code) in [
        (
            json!({"version": 1, "reason": "x", "expect_revision": 1}),
            409,
            "conflict",
        ),
        (json!({"version": 7, "reason": "x"}), 404, "not_found"),
        (json!({"version": 1, "reason": " "}), 422, "invalid_reason"),
    ] {
        let r = c
            .post(format!("{u}/v1/admin/models/bikes/aliases/production"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{body}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], code);
    }
    let r = c
        .post(format!(
            "{u}/v1/admin/models/bikes/aliases/production/rollback"
        ))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"reason": "regression"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, p, _) = server
        .post(
            "/v1/models/bikes/predict",
            &json!({"instances": [bike_row()]}),
        )
        .await;
    assert_eq!(p["version"], 1);
    let history = server.store.meta.alias_history("bikes").await.unwrap();
    assert!(
        history
            .iter()
            .any(|m| m.actor == "api" && m.reason == "regression")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_describes_every_route_and_docs_render_it() {
    let server = Running::start(test_config(), admin_only()).await;
    let (s, text) = server.get("/openapi.json").await;
    assert_eq!(s, 200);
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for route in [
        "/v1/models/{name}/predict",
        "/v1/models",
        "/v1/feedback",
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{name}",
        "/v2/models/{name}/ready",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}",
        "/v2/models/{name}/versions/{version}/ready",
        "/v2/models/{name}/versions/{version}/infer",
        "/v1/admin/reload",
        "/v1/admin/models/{name}/aliases/{alias}",
        "/v1/admin/models/{name}/aliases/{alias}/rollback",
    ] {
        assert!(
            paths.contains_key(route),
            "{route} missing from openapi.json"
        );
    }
    let (s, html) = server.get("/docs").await;
    assert_eq!(s, 200);
    assert!(html.contains("/v1/models/{name}/predict") && html.contains("PredictRequest"));
    assert!(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"));
    server.stop().await;
}
