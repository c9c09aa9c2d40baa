//! Arbitrary bytes through the model loaders:
//!
//! * as a stored model file (`ModelArtifact::from_bytes`: magic, zstd, JSON), and the same
//!   bytes as the file's JSON (compressed here behind the magic bytes), so that mutations
//!   reach the decoding of every part of an artifact, not only the decompressor;
//! * a model that loads is then served: `LoadedModel::new` and a one-row predict request;
//! * as an ONNX model (`OnnxModel::from_bytes`, what `kiln models import` reads).
//!
//! An error is a correct answer; a panic or unbounded memory is a bug.
#![no_main]

use kiln_model::artifact::{MAGIC, ModelArtifact};
use libfuzzer_sys::fuzz_target;

fn serve(artifact: ModelArtifact) {
    let models = kiln_fuzz::models();
    // One row of nulls for every input the model declares, and an empty row.
    let nulls: serde_json::Map<String, serde_json::Value> = artifact
        .schema
        .columns
        .iter()
        .map(|c| (c.name.clone(), serde_json::Value::Null))
        .collect();
    let body = serde_json::json!({ "instances": [nulls] }).to_string();
    let model = kiln_serve::catalog::LoadedModel::new("fuzz", 1, artifact, &models.metrics);
    let config = kiln_serve::ServeConfig::default();
    for body in [body.as_bytes(), br#"{"instances":[{}]}"#] {
        let r = kiln_serve::fuzzing::predict_body(&model, &config, &models.metrics, body);
        kiln_fuzz::show("served", &r.map_err(|e| kiln_fuzz::api_error(&e)));
    }
}

fuzz_target!(|data: &[u8]| {
    let loaded = ModelArtifact::from_bytes(data);
    kiln_fuzz::show("model file", &loaded.as_ref().map(|a| &a.target));
    if let Ok(a) = loaded {
        serve(a);
    }
    if !data.starts_with(MAGIC) {
        if let Ok(z) = zstd::bulk::compress(data, 1) {
            let mut file = MAGIC.to_vec();
            file.extend_from_slice(&z);
            let loaded = ModelArtifact::from_bytes(&file);
            kiln_fuzz::show("model JSON", &loaded.as_ref().map(|a| &a.target));
            if let Ok(a) = loaded {
                serve(a);
            }
        }
        let onnx = kiln_onnx::OnnxModel::from_bytes(data);
        kiln_fuzz::show("ONNX", &onnx.as_ref().map(|m| m.features()));
    }
});
