//! Hostile input, end to end: each is refused with a clear error (HTTP 4xx with a JSON body,
//! or exit 2 naming the file and what is wrong), the process neither crashes nor runs out of
//! memory, and the store is untouched. Oversized bodies, deeply nested JSON, huge numbers,
//! NaN and Infinity literals, invalid UTF-8, SQL metacharacters in names and values, path
//! traversal in names, a million columns in a CSV header.

mod common;

use common::*;
use serde_json::{Value, json};

fn row() -> Value {
    json!({"dteday": "2012-07-01", "season": "fall", "hr": "3pm", "holiday": "No",
           "weekday": "Sun", "workingday": "No", "weathersit": "Clear",
           "temp": 34.3, "atemp": 38.0, "hum": 37.0, "windspeed": 19.0})
}

/// Sends raw bytes; returns the status and the JSON error body.
async fn post_raw(client: &reqwest::Client, url: &str, body: Vec<u8>) -> (u16, Value) {
    let r = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {text:.200}"));
    (status, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_4xx_and_the_server_keeps_serving() {
    let p = served_project("");
    let s = serve(&p);
    let client = reqwest::Client::new();
    let predict = format!("{}/v1/models/bikes/predict", s.url);
    let infer = format!("{}/v2/models/bikes/infer", s.url);

    // 5 MiB: over the 4 MiB body limit. The server answers 413 before the body is all sent
    // and closes the connection; curl reads that answer where reqwest reports the closed
    // connection.
    if let Some(curl) = tool_or_skip("curl", which("curl")) {
        let mut big = br#"{"instances": [], "pad": ""#.to_vec();
        big.extend(std::iter::repeat_n(b'x', 5 << 20));
        big.extend(b"\"}");
        let file = p.write("big.json", &big);
        let out = std::process::Command::new(curl)
            .args([
                "-sS",
                "--max-time",
                "30",
                "-H",
                "content-type: application/json",
            ])
            .arg("--data-binary")
            .arg(format!("@{}", file.display()))
            .args(["-w", "\n%{http_code}", &predict])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.ends_with("\n413"), "{text}");
        assert!(text.contains("body_too_large"), "{text}");
    }
    let mut cases: Vec<(&str, String, Vec<u8>)> = Vec::new();
    // 100,000 levels of nesting.
    let mut deep = b"{\"instances\": ".to_vec();
    deep.extend(std::iter::repeat_n(b'[', 100_000));
    deep.extend(std::iter::repeat_n(b']', 100_000));
    deep.push(b'}');
    cases.push(("deeply nested JSON", predict.clone(), deep.clone()));
    let mut deep_infer = b"{\"inputs\": ".to_vec();
    deep_infer.extend(std::iter::repeat_n(b'[', 100_000));
    cases.push(("deeply nested v2 body", infer.clone(), deep_infer));
    let with = |key: &str, literal: &str| {
        let mut r = row().to_string();
        let at = r.find(&format!("\"{key}\":")).unwrap();
        let end = at + r[at..].find(',').unwrap();
        r.replace_range(at..end, &format!("\"{key}\":{literal}"));
        format!("{{\"instances\": [{r}]}}").into_bytes()
    };
    cases.push((
        "a number beyond f64",
        predict.clone(),
        with("temp", "1e400"),
    ));
    cases.push((
        "a 10,000-digit number",
        predict.clone(),
        with("temp", &"9".repeat(10_000)),
    ));
    cases.push(("NaN literal", predict.clone(), with("temp", "NaN")));
    cases.push((
        "Infinity literal",
        predict.clone(),
        with("temp", "Infinity"),
    ));
    cases.push((
        "\"Infinity\" as text",
        predict.clone(),
        with("temp", "\"Infinity\""),
    ));
    let mut bad_utf8 = with("season", "\"fall\"");
    let at = bad_utf8.windows(4).position(|w| w == b"fall").unwrap();
    bad_utf8[at] = 0xff;
    cases.push(("invalid UTF-8", predict.clone(), bad_utf8));
    cases.push(("a bare string", predict.clone(), b"\"instances\"".to_vec()));
    cases.push(("an empty body", predict.clone(), Vec::new()));
    cases.push((
        "SQL in the model name",
        format!(
            "{}/v1/models/bikes'%3B%20DROP%20TABLE%20predictions%3B--/predict",
            s.url
        ),
        json!({"instances": [row()]}).to_string().into_bytes(),
    ));
    cases.push((
        "path traversal in the model name",
        format!("{}/v1/models/..%2F..%2Fetc/predict", s.url),
        json!({"instances": [row()]}).to_string().into_bytes(),
    ));
    for (what, url, body) in cases {
        let (status, v) = post_raw(&client, &url, body).await;
        assert!((400..500).contains(&status), "{what}: {status} {v}");
        // The native API's error object, or the Open Inference Protocol's error string.
        let native = v["error"]["code"].is_string() && v["error"]["message"].is_string();
        let v2 = v["error"].is_string() && v["code"].is_string();
        assert!(native || v2, "{what}: {v}");
    }

    // SQL metacharacters in values are data: an unknown category, flagged and scored; the
    // quoted request id and label go into the log and the feedback as they are.
    let evil = "'); DROP TABLE predictions; --";
    let mut r = row();
    r["weathersit"] = json!(evil);
    let refused = client
        .post(&predict)
        .header("x-request-id", "id'\"; DELETE FROM feedback; --")
        .json(&json!({"instances": [r]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        400,
        "a request id is letters, digits and -_.:"
    );
    let resp = client
        .post(&predict)
        .json(&json!({"instances": [r], "keys": [evil]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let b: Value = resp.json().await.unwrap();
    let id = b["predictions"][0]["request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let fb = client
        .post(format!("{}/v1/feedback", s.url))
        .json(&json!([{"request_id": id, "label": evil}]))
        .send()
        .await
        .unwrap();
    assert!(
        fb.status().is_success() || fb.status().as_u16() == 422,
        "{}",
        fb.status()
    );

    // Still serving, and the log holds the row with the value as sent.
    let ok = client
        .post(&predict)
        .json(&json!({"instances": [row()]}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let store = p.store().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let logged = loop {
        let logged = store.meta.prediction_by_request(&id).await.unwrap();
        if !logged.is_empty() || std::time::Instant::now() > deadline {
            break logged;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    drop(s);
    assert_eq!(logged.len(), 1);
    assert!(logged[0].record.features.contains("DROP TABLE predictions"));
    assert_eq!(logged[0].record.key.as_deref(), Some(evil));
    assert!(store.meta.prediction_count(None).await.unwrap() >= 2);
}

#[test]
fn hostile_files_and_names_are_refused_before_anything_is_stored() {
    let p = Project::new();
    p.ok(&["init", "."]);
    let before = p.store_state();

    // A million columns in a CSV header (about 6.9 MB): refused at the header.
    let header: Vec<String> = (0..1_000_000).map(|i| format!("c{i}")).collect();
    p.write("wide.csv", format!("{}\n", header.join(",")).as_bytes());
    let r = p.run(&["data", "add", "wide.csv", "--dataset", "wide"]);
    expect_input_error(&r, "1000000 columns; Kiln takes at most 10000");
    assert!(r.stderr.contains("wide.csv"), "{}", r.stderr);

    // Names: path traversal and SQL metacharacters, refused by the one naming rule.
    p.write("ok.csv", b"a,b\n1,2\n3,4\n");
    for name in ["../evil", "a/b", "x'; DROP TABLE datasets; --", "..", ""] {
        let r = p.run(&["data", "add", "ok.csv", "--dataset", name]);
        assert_eq!(r.code, 2, "{name:?}: {}", r.stderr);
        let r = p.run(&[
            "models",
            "alias",
            "set",
            "production",
            &format!("{name}@1"),
            "--reason",
            "x",
        ]);
        assert_eq!(r.code, 2, "{name:?}: {}", r.stderr);
    }
    // A file name with metacharacters is only a file name.
    p.write("it's; DROP.csv", b"a,b\n1,2\n3,4\n");
    p.ok(&["data", "add", "it's; DROP.csv", "--dataset", "quoted"]);
    assert_ne!(p.store_state(), before);
    let store = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = p.store().await;
        store.meta.datasets().await.unwrap()
    });
    let names: Vec<&str> = store.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["quoted"]);
    // Nothing escaped the project folder.
    assert!(!p.path("../evil").exists());
}
