//! The Open Inference Protocol routes, hot reload under load, and the metrics exposition
//! (checked by `promtool`), over loopback against a real store.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use kiln_store::Expect;
use serde_json::{Value, json};

/// The bike row as one v2 tensor per feature, from the model's metadata.
fn tensors(meta: &Value, row: &Value) -> Vec<Value> {
    meta["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let name = i["name"].as_str().unwrap();
            json!({"name": name, "shape": [1], "datatype": i["datatype"], "data": [row[name]]})
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_metadata_health_and_infer_agree_with_the_native_api() {
    let server = Running::start(test_config(), admin_only()).await;
    assert_eq!(server.get("/v2/health/live").await.0, 200);
    assert_eq!(server.get("/v2/health/ready").await.0, 200);
    let (_, meta) = server.get("/v2").await;
    assert!(meta.contains("binary_tensor_data"));
    let (s, meta) = server.get("/v2/models/bikes").await;
    assert_eq!(s, 200);
    let meta: Value = serde_json::from_str(&meta).unwrap();
    assert_eq!(meta["platform"], "kiln");
    let types: BTreeMap<&str, &str> = meta["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["name"].as_str().unwrap(), i["datatype"].as_str().unwrap()))
        .collect();
    assert_eq!(types["temp"], "FP64");
    assert_eq!(types["season"], "BYTES");
    assert_eq!(types["dteday"], "BYTES");
    assert_eq!(server.get("/v2/models/bikes/ready").await.0, 200);
    assert_eq!(server.get("/v2/models/bikes/versions/2/ready").await.0, 200);
    assert_eq!(server.get("/v2/models/nope/ready").await.0, 404);
    assert_eq!(server.get("/v2/models/bikes/versions/x").await.0, 400);

    let row = bike_row();
    let (_, native, _) = server
        .post("/v1/models/bikes/predict", &json!({"instances": [row]}))
        .await;
    let expected = native["predictions"][0]["value"].as_f64().unwrap();

    let (s, b, h) = server
        .post(
            "/v2/models/bikes/infer",
            &json!({"id": "abc", "inputs": tensors(&meta, &row)}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["id"], "abc");
    assert_eq!(b["model_version"], "1");
    let out = &b["outputs"][0];
    assert_eq!(out["name"], "predictions");
    assert_eq!(out["shape"], json!([1]));
    assert_eq!(out["data"][0].as_f64().unwrap(), expected);
    assert_eq!(
        b["outputs"][1]["data"][0],
        h["x-request-id"].to_str().unwrap()
    );

    // One 2-D BYTES tensor with every feature in schema order.
    let cells: Vec<Value> = meta["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let v = &row[i["name"].as_str().unwrap()];
            Value::String(
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string()),
            )
        })
        .collect();
    let n = cells.len();
    let (s, b, _) = server
        .post(
            "/v2/models/bikes/versions/1/infer",
            &json!({"inputs": [{"name": "input", "shape": [1, n], "datatype": "BYTES", "data": cells}],
                    "outputs": [{"name": "predictions"}]}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["outputs"].as_array().unwrap().len(), 1);
    assert_eq!(b["outputs"][0]["data"][0].as_f64().unwrap(), expected);

    // Mistakes.
    let mut wrong = tensors(&meta, &row);
    wrong[0]["name"] = json!("nonsense");
    let (s, b, _) = server
        .post("/v2/models/bikes/infer", &json!({"inputs": wrong}))
        .await;
    assert_eq!((s, b["code"].as_str()), (400, Some("unknown_input")), "{b}");
    // The protocol's error shape: `error` is the message string.
    assert!(b["error"].as_str().unwrap().contains("nonsense"), "{b}");
    assert_eq!(b["field"], "nonsense");
    let mut short = tensors(&meta, &row);
    short[7]["shape"] = json!([2]);
    let (s, b, _) = server
        .post("/v2/models/bikes/infer", &json!({"inputs": short}))
        .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (400, Some("invalid_tensor")),
        "{b}"
    );
    let mut typed = tensors(&meta, &row);
    typed[7]["data"] = json!(["warm"]);
    let (s, b, _) = server
        .post("/v2/models/bikes/infer", &json!({"inputs": typed}))
        .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (400, Some("invalid_tensor")),
        "{b}"
    );
    let missing: Vec<Value> = tensors(&meta, &row).into_iter().skip(1).collect();
    let (s, b, _) = server
        .post("/v2/models/bikes/infer", &json!({"inputs": missing}))
        .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (422, Some("missing_feature")),
        "{b}"
    );
    let (s, b, _) = server
        .post(
            "/v2/models/bikes/infer",
            &json!({"inputs": tensors(&meta, &row), "outputs": [{"name": "nope"}]}),
        )
        .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (400, Some("unknown_output")),
        "{b}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_binary_tensors_decode_like_json_ones() {
    let server = Running::start(test_config(), admin_only()).await;
    let (_, meta) = server.get("/v2/models/bikes").await;
    let meta: Value = serde_json::from_str(&meta).unwrap();
    let row = bike_row();
    let mut inputs = Vec::new();
    let mut binary = Vec::new();
    for i in meta["inputs"].as_array().unwrap() {
        let name = i["name"].as_str().unwrap();
        let bytes: Vec<u8> = match i["datatype"].as_str().unwrap() {
            "FP64" => row[name].as_f64().unwrap().to_le_bytes().to_vec(),
            _ => {
                let s = row[name].as_str().unwrap().as_bytes();
                let mut b = (s.len() as u32).to_le_bytes().to_vec();
                b.extend_from_slice(s);
                b
            }
        };
        inputs.push(
            json!({"name": name, "shape": [1], "datatype": i["datatype"],
                           "parameters": {"binary_data_size": bytes.len()}}),
        );
        binary.extend(bytes);
    }
    let header = serde_json::to_vec(&json!({"inputs": inputs})).unwrap();
    let mut body = header.clone();
    body.extend(binary);
    let r = server
        .client
        .post(format!("{}/v2/models/bikes/infer", server.url))
        .header("inference-header-content-length", header.len().to_string())
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    let (_, native, _) = server
        .post("/v1/models/bikes/predict", &json!({"instances": [row]}))
        .await;
    assert_eq!(
        b["outputs"][0]["data"][0],
        native["predictions"][0]["value"]
    );

    // A declared size beyond the body is refused, not read past.
    let bad = serde_json::to_vec(
        &json!({"inputs": [{"name": "temp", "shape": [1], "datatype": "FP64",
        "parameters": {"binary_data_size": 800}}]}),
    )
    .unwrap();
    let r = server
        .client
        .post(format!("{}/v2/models/bikes/infer", server.url))
        .header("inference-header-content-length", bad.len().to_string())
        .body(bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_classifier_outputs_class_and_probabilities() {
    let server = Running::start(test_config(), admin_only()).await;
    let (_, meta) = server.get("/v2/models/workday").await;
    let meta: Value = serde_json::from_str(&meta).unwrap();
    let names: Vec<&str> = meta["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["class", "probabilities", "request_id"]);
    let (s, b, _) = server
        .post(
            "/v2/models/workday/infer",
            &json!({"inputs": tensors(&meta, &bike_row())}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["outputs"][1]["shape"], json!([1, 2]));
    let p = b["outputs"][1]["data"].as_array().unwrap();
    assert!((p[0].as_f64().unwrap() + p[1].as_f64().unwrap() - 1.0).abs() < 1e-9);
    assert!(["No", "Yes"].contains(&b["outputs"][0]["data"][0].as_str().unwrap()));
    server.stop().await;
}

/// 100 alias flips between two versions under continuous load: no request fails, and every
/// answer is exactly what its stated version predicts (never one version's number under the
/// other's name).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_under_load_has_no_failed_or_mixed_responses() {
    let server = Arc::new(Running::start(test_config(), admin_only()).await);
    let row = bike_row();
    let mut expected = BTreeMap::new();
    for v in [1, 2] {
        let (_, b, _) = server
            .post(
                &format!("/v1/models/bikes/predict?version={v}"),
                &json!({"instances": [row]}),
            )
            .await;
        expected.insert(v, b["predictions"][0]["value"].as_f64().unwrap());
    }
    assert_ne!(expected[&1], expected[&2]);
    let expected = Arc::new(expected);
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (server, stop, expected, row) =
            (server.clone(), stop.clone(), expected.clone(), row.clone());
        clients.push(tokio::spawn(async move {
            let mut seen = BTreeMap::<i64, u64>::new();
            let mut requests = 0u64;
            while !stop.load(Ordering::Relaxed) && requests < 200_000 {
                let (s, b, _) = server
                    .post(
                        "/v1/models/bikes/predict",
                        &json!({"instances": [row, row]}),
                    )
                    .await;
                assert_eq!(s, 200, "{b}");
                let v = b["version"].as_i64().unwrap();
                let want = expected.get(&v).unwrap_or_else(|| panic!("version {v}"));
                for p in b["predictions"].as_array().unwrap() {
                    assert_eq!(
                        p["value"].as_f64().unwrap(),
                        *want,
                        "version {v} answered another model's value"
                    );
                }
                *seen.entry(v).or_default() += 1;
                requests += 1;
            }
            seen
        }));
    }
    let store = server.home.store().await;
    for flip in 0..100 {
        let version = if flip % 2 == 0 { 2 } else { 1 };
        store
            .meta
            .set_alias("bikes", "production", version, Expect::Any, "flip", "test")
            .await
            .unwrap();
        // Let the server pick the move up (poll interval 50 ms) before the next one.
        tokio::time::sleep(Duration::from_millis(70)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = BTreeMap::<i64, u64>::new();
    for c in clients {
        for (v, n) in c.await.unwrap() {
            *total.entry(v).or_default() += n;
        }
    }
    assert!(
        total[&1] > 0 && total[&2] > 0,
        "both versions served: {total:?}"
    );
    let (_, metrics) = server.get("/metrics").await;
    assert!(!metrics.contains("status=\"5"), "{metrics}");
    let loads = metrics
        .lines()
        .filter(|l| {
            l.starts_with("kiln_model_loads_total{model=\"bikes\"") && l.contains("result=\"ok\"")
        })
        .count();
    // Each version was loaded once and kept: flips swap pointers, not models.
    assert_eq!(loads, 2, "{metrics}");
    eprintln!("requests per version during 100 flips: {total:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool() {
    let promtool = tool_or_skip("promtool", which("promtool"));
    let server = Running::start(test_config(), admin_only()).await;
    server
        .post(
            "/v1/models/bikes/predict",
            &json!({"instances": [bike_row()]}),
        )
        .await;
    server
        .post("/v1/models/bikes/predict", &json!({"instances": [{}]}))
        .await;
    server
        .post("/v1/feedback", &json!([{"request_id": "x", "label": 1}]))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, text) = server.get("/metrics").await;
    assert_eq!(s, 200);
    for family in [
        "kiln_http_requests_total",
        "kiln_http_request_duration_seconds_bucket",
        "kiln_prediction_rows_bucket",
        "kiln_validation_failures_total",
        "kiln_prediction_log_queue_rows",
        "kiln_prediction_log_dropped_total",
        "kiln_prediction_log_written_total",
        "kiln_model_loads_total",
        "kiln_model_info{alias=\"production\",model=\"bikes\",version=\"1\"} 1",
    ] {
        assert!(text.contains(family), "{family} missing:\n{text}");
    }
    assert!(
        text.contains("kiln_prediction_log_written_total 1"),
        "{text}"
    );
    let Some(promtool) = promtool else { return };
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    server.stop().await;
}

pub fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// A version whose artifact does not verify is not served: the alias keeps its old target,
/// the failure is counted, and requests never fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_fails_to_load_leaves_the_alias_on_the_old_one() {
    let server = Running::start(test_config(), admin_only()).await;
    let store = server.home.store().await;
    let v2 = &store.meta.model_versions("bikes").await.unwrap()[1];
    let path = store.artifacts.local_path(&v2.artifact_id).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    store
        .meta
        .set_alias("bikes", "production", 2, Expect::Any, "bad", "test")
        .await
        .unwrap();
    let r = server
        .client
        .post(format!("{}/v1/admin/reload", server.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let report: Value = r.json().await.unwrap();
    assert!(
        report["failed"][0].as_str().unwrap().starts_with("bikes@2"),
        "{report}"
    );
    for _ in 0..5 {
        let (s, b, _) = server
            .post(
                "/v1/models/bikes/predict",
                &json!({"instances": [bike_row()]}),
            )
            .await;
        assert_eq!((s, b["version"].as_i64()), (200, Some(1)), "{b}");
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let (_, metrics) = server.get("/metrics").await;
    // Tried by the reload (and perhaps by the poller just before it), then not on every
    // poll: six polls passed during the requests above.
    let errors: f64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "kiln_model_loads_total{model=\"bikes\",result=\"error\",version=\"2\"} ",
            )
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!((1.0..=2.0).contains(&errors), "{metrics}");
    assert!(
        metrics.contains("kiln_model_info{alias=\"production\",model=\"bikes\",version=\"1\"} 1")
    );
}
