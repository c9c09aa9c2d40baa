//! Arbitrary bytes as the body of `POST /v1/models/{name}/predict`, answered by each of the
//! models in `kiln_fuzz::models` (tree regressor, tree classifier, linear regressor): parsed,
//! checked at the door, converted to a batch against the model's schema, scored. An error
//! response is a correct answer; a panic or unbounded memory is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let models = kiln_fuzz::models();
    for s in &models.served {
        let r = kiln_serve::fuzzing::predict_body(&s.model, &s.config, &models.metrics, data);
        kiln_fuzz::show(&s.model.name, &r.map_err(|e| kiln_fuzz::api_error(&e)));
    }
});
