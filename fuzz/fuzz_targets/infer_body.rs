//! Arbitrary bytes as the body of `POST /v2/models/{name}/infer` (the Open Inference
//! Protocol), answered by each of the models in `kiln_fuzz::models`. Each input is sent as a
//! plain JSON body and, when it starts with a JSON value followed by more bytes, also as a
//! client sends binary tensors: `Inference-Header-Content-Length` set to the length of that
//! JSON value, the rest being the binary data. An error response is a correct answer; a
//! panic or unbounded memory is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let models = kiln_fuzz::models();
    let mut values = serde_json::Deserializer::from_slice(data).into_iter::<serde_json::Value>();
    let json_length = match values.next() {
        Some(Ok(_)) if values.byte_offset() < data.len() => Some(values.byte_offset().to_string()),
        _ => None,
    };
    for s in &models.served {
        let m = &models.metrics;
        let r = kiln_serve::fuzzing::infer_body(&s.model, &s.config, m, None, data);
        kiln_fuzz::show(&s.model.name, &r.map_err(|e| kiln_fuzz::api_error(&e)));
        if let Some(n) = &json_length {
            let r = kiln_serve::fuzzing::infer_body(&s.model, &s.config, m, Some(n), data);
            kiln_fuzz::show(
                &format!("{} (binary, JSON {n} bytes)", s.model.name),
                &r.map_err(|e| kiln_fuzz::api_error(&e)),
            );
        }
    }
});
