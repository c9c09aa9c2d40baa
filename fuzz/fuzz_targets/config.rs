//! Arbitrary text as `kiln.toml`: `Config::parse`, then every stage's checker of its own
//! section (`[serve]`, `[monitor]`, `[retention]`, `[automate]`, `[pipeline]`, `[train]`)
//! and each dataset's settings (`like` resolved). An error is a correct answer; a panic or
//! unbounded memory is a bug.
#![no_main]

use std::path::Path;

use kiln_core::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = Config::parse(text, Path::new("kiln.toml"));
    kiln_fuzz::show("kiln.toml", &parsed.as_ref().map(|_| ()));
    let Ok(config) = parsed else {
        return;
    };
    let ok = |r: Result<(), String>, what: &str| kiln_fuzz::show(what, &r);
    ok(
        kiln_serve::ServeConfig::from_table(&config.serve)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        "[serve]",
    );
    ok(
        kiln_watch::rules::MonitorConfig::from_table(&config.monitor)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        "[monitor]",
    );
    ok(
        kiln_watch::archive::Retention::from_config(&config.retention)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        "[retention]",
    );
    ok(
        kiln_automate::AutomateConfig::from_table(&config.automate)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        "[automate]",
    );
    ok(
        kiln_automate::pipeline::PipelineConfig::from_config(&config)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        "[pipeline]",
    );
    ok(
        kiln_train::spec::TrainSpec::resolve(&config.train, &[])
            .map(|_| ())
            .map_err(|e| e.to_string()),
        "[train]",
    );
    for name in config.datasets.keys() {
        let _ = config.dataset(name);
    }
});
