//! Arbitrary bytes as a file given to `kiln data add`: CSV, gzip CSV or Parquet (told apart
//! by their magic bytes, as `kiln data add` does), read, typed, validated, profiled and written as a
//! Parquet part, as by `kiln_data::ingest::add` before it stores anything. An error is a
//! correct answer; a panic, a hang or unbounded memory is a bug.
#![no_main]

use kiln_data::ingest::fuzzing::read_file;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let env = kiln_fuzz::ingest_env();
    let dir = env.dir.path();
    let scratch = dir.join("scratch");
    // Types inferred from the values, several batches per file.
    let csv = dir.join("input.csv");
    if std::fs::write(&csv, data).is_ok() {
        let r = read_file(&env.inferred, "fuzz", &csv, &scratch);
        kiln_fuzz::show("inferred types", &r);
        // The bikeshare example's declared types and rules, bad rows quarantined.
        let r = read_file(&env.declared, "bikes", &csv, &scratch);
        kiln_fuzz::show("declared types", &r);
    }
});
