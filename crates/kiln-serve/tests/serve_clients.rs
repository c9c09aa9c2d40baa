//! Real third-party clients against the server: the Triton HTTP client from PyPI
//! (`tritonclient[http]`) and Schemathesis, which generates requests from /openapi.json.
//! Both run from the Python in `KILN_TEST_PYTHON` (.ci/run prepares it).

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unmodified_triton_client_works() {
    let Some(python) = test_python() else { return };
    let server = Running::start(test_config(), admin_only()).await;
    let row = bike_row();
    let (_, native, _) = server
        .post("/v1/models/bikes/predict", &json!({"instances": [row]}))
        .await;
    let expected = native["predictions"][0]["value"].as_f64().unwrap();
    let script = common::manifest_dir().join("tests/python/tritonclient_check.py");
    let host = server.url.trim_start_matches("http://").to_owned();
    let row_text = row.to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .arg(host)
            .arg(row_text)
            .arg(format!("{expected:?}"))
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "tritonclient check failed:\n{text}");
    assert!(text.contains("tritonclient: ok"), "{text}");
    server.stop().await;
}

/// Schemathesis sends generated requests (valid and invalid) to every operation of
/// /openapi.json; the server must never answer with a 5xx. At least 1,000 requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error() {
    let Some(python) = test_python() else { return };
    let creds = kiln_serve::Credentials {
        admin_token: Some(ADMIN_TOKEN.into()),
        api_keys: Vec::new(),
    };
    let server = Running::start(test_config(), creds).await;
    let script = common::manifest_dir().join("../../scripts/schemathesis.sh");
    let url = server.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("bash")
            .arg(script)
            .arg(url)
            .env("KILN_PYTHON", &python)
            .env("KILN_ADMIN_TOKEN", ADMIN_TOKEN)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis failed:\n{text}");
    let (_, metrics) = server.get("/metrics").await;
    let total: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("kiln_http_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let server_errors = metrics
        .lines()
        .filter(|l| l.starts_with("kiln_http_requests_total{") && l.contains("status=\"5"))
        .count();
    eprintln!("schemathesis sent {total} requests");
    assert!(total >= 1000.0, "only {total} requests:\n{text}");
    assert_eq!(server_errors, 0, "{metrics}");
    server.stop().await;
}
