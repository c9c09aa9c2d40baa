//! `kiln` with its artifacts in an S3 bucket (`--artifacts` / `KILN_ARTIFACTS` =
//! `s3://BUCKET/PREFIX`): the real binary against a real S3-compatible server (SeaweedFS from
//! `.ci/seaweedfs.sh`, named by `KILN_TEST_S3_*`; skipped without one, failed under CI).
//!
//! A whole workflow (ingest, train, alias, export, batch scoring, serving) leaves every blob in
//! the bucket and none on disk, a blob changed in the bucket is refused, and a wrong endpoint,
//! refused credentials or a missing bucket stop `kiln` before it does any work.

mod common;

use std::time::{Duration, Instant};

use common::*;
use kiln_store::testing::{S3Server, unique};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::{Value, json};

const CONFIG: &str = include_str!("../../../examples/bikeshare/kiln.toml");
const DATA: &[u8] = include_bytes!("../../../examples/bikeshare/data/bike-rental-dataset.csv.gz");

/// Every key under the store's root, walked folder by folder.
async fn keys(store: &dyn ObjectStore) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![None::<Path>];
    while let Some(dir) = dirs.pop() {
        let listed = store.list_with_delimiter(dir.as_ref()).await.unwrap();
        out.extend(listed.objects.into_iter().map(|o| o.location.to_string()));
        dirs.extend(listed.common_prefixes.into_iter().map(Some));
    }
    out.sort();
    out
}

fn row() -> Value {
    json!({"dteday": "2012-07-01", "season": "fall", "hr": "3pm", "holiday": "No",
           "weekday": "Sun", "workingday": "No", "weathersit": "Clear",
           "temp": 34.3, "atemp": 38.0012, "hum": 37.0, "windspeed": 19.0012})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_workflow_keeps_every_artifact_in_the_bucket() {
    let Some(s3) = S3Server::or_skip() else {
        return;
    };
    let prefix = unique("kiln-cli");
    let url = format!("s3://{}/{prefix}", s3.bucket);
    let mut p = Project::new();
    p.env = s3.aws_env();
    p.env.push(("KILN_ARTIFACTS".into(), url.clone()));
    p.config(CONFIG);
    p.write("bikes.csv.gz", DATA);

    p.ok(&["data", "add", "bikes.csv.gz", "--dataset", "bikes"]);
    let data = p.ok(&["data", "show", "bikes", "--json"]).json();
    let part = data["version"]["parts"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let profile = data["version"]["profile_id"].as_str().unwrap().to_owned();
    let trained = p
        .ok(&["train", "--set", "gbdt.iterations=5", "--json"])
        .json();
    let model = trained["artifact_id"].as_str().unwrap().to_owned();
    p.ok(&[
        "models",
        "alias",
        "set",
        "production",
        "bikes@1",
        "--reason",
        "test",
    ]);
    let shown = p
        .ok(&["models", "show", "bikes@production", "--json"])
        .json();
    assert_eq!(shown["version"]["version"], 1, "{shown:#}");
    // The snapshot's parts come back from the bucket, verified, for an export and a scoring.
    p.ok(&[
        "data", "export", "bikes", "--format", "csv", "-o", "all.csv",
    ]);
    assert_eq!(
        std::fs::read_to_string(p.path("all.csv"))
            .unwrap()
            .lines()
            .count(),
        17_380
    );
    p.ok(&[
        "predict",
        "--model",
        "bikes@production",
        "--input",
        "all.csv",
        "-o",
        "pred.csv",
    ]);
    assert!(p.path("pred.csv").is_file());

    // The server loads the model from the bucket and answers, on two days of event time.
    {
        let s = serve(&p);
        for day in ["2012-07-01", "2012-07-05"] {
            let r = reqwest::Client::new()
                .post(format!("{}/v1/models/bikes/predict", s.url))
                .header("x-kiln-event-time", format!("{day} 12:00:00"))
                .json(&json!({"instances": [row()]}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let body: Value = r.json().await.unwrap();
            let y = body["predictions"][0]["value"].as_f64();
            assert!(y.is_some_and(f64::is_finite), "{body:#}");
        }
        // Logged within the flush interval.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while p.ok(&["monitor", "--model", "bikes", "--json"]).json()["overall"]["rows"] != 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "the log was not flushed"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
    // The older day moves to a Parquet archive in the bucket, and reads back from there.
    let compacted = p
        .ok(&["log", "compact", "--older-than", "1d", "--json"])
        .json();
    let archive = compacted["archived"][0]["artifact"]
        .as_str()
        .unwrap_or_else(|| panic!("{compacted}"))
        .to_owned();
    let report = p.ok(&["monitor", "--model", "bikes", "--json"]).json();
    assert_eq!(report["overall"]["rows"], 2, "{report}");

    // Every blob is in the bucket under the prefix (the snapshot's part and profile, the
    // model, the log archive); none on disk.
    let raw = s3.raw(&prefix);
    let blob = |id: &str| format!("blobs/{}/{id}", &id[..2]);
    let mut expected = vec![blob(&part), blob(&profile), blob(&model), blob(&archive)];
    expected.sort();
    assert_eq!(keys(raw.as_ref()).await, expected);
    let model_key = blob(&model);
    let local = p.path(".kiln/artifacts");
    assert!(
        !local.exists() || std::fs::read_dir(&local).unwrap().next().is_none(),
        "nothing in {}",
        local.display()
    );

    // A model changed in the bucket is refused, naming it.
    raw.put(
        &Path::from(model_key.as_str()),
        PutPayload::from_static(b"not the model"),
    )
    .await
    .unwrap();
    let r = p.run(&[
        "predict",
        "--model",
        "bikes@production",
        "--input",
        "all.csv",
        "-o",
        "again.csv",
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(&model) && r.stderr.contains("tampered"),
        "{}",
        r.stderr
    );
    assert!(!p.path("again.csv").exists());
}

#[test]
fn a_misconfigured_bucket_stops_kiln_before_any_work() {
    let Some(s3) = S3Server::or_skip() else {
        return;
    };
    let url = format!("s3://{}/{}", s3.bucket, unique("kiln-cli-errors"));
    let mut p = Project::new();
    p.env = s3.aws_env();
    p.write("bikes.csv.gz", DATA);
    let add = ["data", "add", "bikes.csv.gz", "--dataset", "bikes"];
    let with_store = |store: &str| {
        let mut args = vec!["--artifacts", store];
        args.extend(add);
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let run = |p: &Project, args: &[String]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        p.run(&args)
    };

    // kiln.toml's endpoint (nothing listens there) takes precedence over AWS_ENDPOINT_URL.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    p.config(&format!(
        "[store.s3]\nendpoint = \"http://127.0.0.1:{port}\"\nallow_http = true\n"
    ));
    let started = Instant::now();
    let r = run(&p, &with_store(&url));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "cannot reach the S3 endpoint http://127.0.0.1:{port}"
        )),
        "{}",
        r.stderr
    );
    // Nothing was done: not even the metadata database was created.
    assert!(!p.path(".kiln/kiln.db").exists());

    // The endpoint from the environment, with a wrong secret.
    p.config("");
    p.env.retain(|(k, _)| k != "AWS_SECRET_ACCESS_KEY");
    p.env
        .push(("AWS_SECRET_ACCESS_KEY".into(), "not-the-secret".into()));
    let r = run(&p, &with_store(&url));
    expect_input_error(&r, "refused the credentials");
    assert!(
        r.stderr.contains("AWS_ACCESS_KEY_ID") && r.stderr.contains("AWS_SECRET_ACCESS_KEY"),
        "{}",
        r.stderr
    );
    assert!(!p.path(".kiln/kiln.db").exists());

    // The right credentials, a bucket that does not exist.
    p.env = s3.aws_env();
    let missing = unique("kiln-no-bucket");
    let r = run(&p, &with_store(&format!("s3://{missing}/x")));
    expect_input_error(&r, &format!("the bucket `{missing}` does not exist"));
    assert!(!p.path(".kiln/kiln.db").exists());

    // An unsupported scheme names the supported ones.
    let r = run(&p, &with_store("gs://bucket/x"));
    expect_input_error(&r, "s3://BUCKET/PREFIX");

    // And with everything right, the same command works.
    p.ok(&with_store(&url)
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());

    // `[store] artifacts` in kiln.toml names the bucket too (a URL, not a path relative to the
    // file): the export reads the snapshot back from it.
    p.config(&format!("[store]\nartifacts = \"{url}\"\n"));
    p.ok(&[
        "data", "export", "bikes", "--format", "csv", "-o", "out.csv",
    ]);
    assert!(p.path("out.csv").is_file());
    assert!(!p.path("s3:").exists() && !p.path(".kiln/artifacts").exists());
}

#[test]
fn help_says_how_to_put_artifacts_in_s3() {
    let help = Project::new().ok(&["--help"]).stdout;
    for needle in [
        "s3://BUCKET/PREFIX",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ENDPOINT_URL",
        "[store.s3]",
    ] {
        assert!(
            help.contains(needle),
            "`{needle}` missing from --help:\n{help}"
        );
    }
}
