//! Scoring speed of the bikeshare fixtures: rows per second for batches of 1, 1,000, 100,000
//! and 1,000,000 rows (the 4,376 test rows repeated).
//!
//!     cargo run --release -p kiln-onnx --example throughput

use std::path::PathBuf;
use std::time::Instant;

use kiln_onnx::OnnxModel;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures");
    // Any realistic rows will do: take the numeric columns straight from the raw test rows and
    // the categoricals' positions from a fixed list, as the parity test does.
    let schema: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("bike_import_schema.json"))?)?;
    let inputs = schema["inputs"].as_array().ok_or("inputs")?;
    let mut reader = csv::Reader::from_path(dir.join("bike_test_rows.csv"))?;
    let header = reader.headers()?.clone();
    let mut base = vec![];
    for record in reader.records() {
        let record = record?;
        for input in inputs {
            let name = input["name"].as_str().ok_or("name")?;
            let col = header.iter().position(|h| h == name).ok_or("column")?;
            let raw = &record[col];
            base.push(match input["categories"].as_array() {
                Some(c) => c
                    .iter()
                    .position(|v| v.as_str() == Some(raw))
                    .ok_or("category")? as f32,
                None => raw.parse::<f64>()? as f32,
            });
        }
    }
    let base_rows = base.len() / 8;
    for file in [
        "bike_gbr.onnx",
        "bike_rf.onnx",
        "bike_logreg.onnx",
        "bike_gbc.onnx",
    ] {
        let started = Instant::now();
        let model = OnnxModel::from_bytes(&std::fs::read(dir.join(file))?)?;
        println!(
            "{file}: loaded in {:.1} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
        for rows in [1usize, 1_000, 100_000, 1_000_000] {
            let x: Vec<f32> = base.iter().copied().cycle().take(rows * 8).collect();
            let repeats = (1_000_000 / rows).clamp(1, 2_000);
            let started = Instant::now();
            let mut checksum = 0.0;
            for _ in 0..repeats {
                checksum += model.predict(rows, &x)?.iter().sum::<f64>();
            }
            let secs = started.elapsed().as_secs_f64() / repeats as f64;
            println!(
                "  {rows:>9} rows: {:>8.3} ms per call, {:>12.0} rows/s (checksum {checksum:.3e})",
                secs * 1e3,
                rows as f64 / secs
            );
        }
        let _ = base_rows;
    }
    Ok(())
}
