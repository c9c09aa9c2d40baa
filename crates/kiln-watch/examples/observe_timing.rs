//! How long a monitoring window takes to absorb logged predictions, per row.
//!
//!   cargo run --release -p kiln-watch --example observe_timing -- MODEL_FILE [ROWS]
//!
//! MODEL_FILE is a model artifact (the store's `artifacts/` holds them by content id). The
//! rows are the logged form of one bike-rental hour with varying temperature and humidity.

use std::time::Instant;

use kiln_model::artifact::ModelArtifact;
use kiln_store::PredictionRecord;
use kiln_watch::window::{WindowState, json_batcher};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: observe_timing MODEL_FILE [ROWS]")?;
    let rows: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(5000);
    let artifact = ModelArtifact::from_bytes(&std::fs::read(path)?)?;
    let batcher = json_batcher(&artifact);
    let records: Vec<PredictionRecord> = (0..rows)
        .map(|i| PredictionRecord {
            request_id: format!("r{i}"),
            key: None,
            model: "bikes".into(),
            version: 1,
            alias: None,
            time: 0,
            features: format!(
                r#"{{"dteday":"2012-07-01","season":"fall","hr":"3pm","holiday":"No","weekday":"Sun","workingday":"No","weathersit":"Clear","temp":{},"atemp":38.0012,"hum":{},"windspeed":19.0012}}"#,
                20.0 + (i % 150) as f64 / 10.0,
                30 + i % 60
            ),
            output: format!(r#"{{"value":{}}}"#, 300.0 + (i % 97) as f64),
            latency_us: 500 + (i % 300) as i64,
            flags: None,
        })
        .collect();
    let refs: Vec<&PredictionRecord> = records.iter().collect();
    for (label, monitoring) in [
        ("everything", artifact.monitoring.as_ref()),
        ("without loss estimation", None),
    ] {
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let mut w = WindowState::new(0, 1);
            let t = Instant::now();
            for chunk in refs.chunks(1024) {
                w.observe(&artifact, monitoring, &batcher, chunk)?;
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!("{label}: {:.2} µs per row", best * 1e6 / rows as f64);
    }
    // Reading the logged rows into a batch, the two ways: from the text (what the window
    // does) and through a parsed `Value` per row (what it did before). Best of 5 each.
    let texts: Vec<&str> = records.iter().map(|r| r.features.as_str()).collect();
    let (mut text, mut parsed) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..5 {
        let t = Instant::now();
        for chunk in texts.chunks(1024) {
            std::hint::black_box(batcher.batch_text(chunk).map_err(|e| format!("{e:?}"))?);
        }
        text = text.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        for chunk in texts.chunks(1024) {
            let values = chunk
                .iter()
                .map(|r| serde_json::from_str(r))
                .collect::<Result<Vec<serde_json::Value>, _>>()?;
            std::hint::black_box(batcher.batch(&values).map_err(|e| format!("{e:?}"))?);
        }
        parsed = parsed.min(t.elapsed().as_secs_f64());
    }
    let per_row = |s: f64| s * 1e6 / rows as f64;
    println!(
        "  of which the rows' batch from the logged text: {:.2} µs per row \
         (through a parsed JSON value per row: {:.2})",
        per_row(text),
        per_row(parsed)
    );
    Ok(())
}
