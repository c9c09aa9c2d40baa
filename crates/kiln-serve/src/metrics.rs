//! The server's Prometheus metrics (`GET /metrics`, classic text format).
//!
//! One registry per server, so tests can run several servers in one process. Label values
//! are bounded: routes are the matched route templates (never raw paths), models and
//! versions come from the registry, fields from model schemas.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub rows_per_request: HistogramVec,
    pub predictions: IntCounterVec,
    pub validation_failures: IntCounterVec,
    pub flagged_values: IntCounterVec,
    pub log_queue_rows: IntGauge,
    pub log_written: IntCounter,
    pub log_dropped: IntCounter,
    pub log_flush_seconds: Histogram,
    pub log_write_errors: IntCounter,
    pub feedback: IntCounterVec,
    pub model_loads: IntCounterVec,
    pub model_info: IntGaugeVec,
    pub auth_failures: IntCounterVec,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: T) -> T {
    // Names are fixed and distinct, so registration cannot collide.
    let _ = r.register(Box::new(m.clone()));
    m
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let r = Registry::new();
        let latency_buckets = vec![
            0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
            0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        Ok(Self {
            requests: register(
                &r,
                IntCounterVec::new(
                    Opts::new("kiln_http_requests_total", "HTTP requests answered."),
                    &["route", "status", "model", "version"],
                )?,
            ),
            request_seconds: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "kiln_http_request_duration_seconds",
                        "Time from request to response, by route.",
                    )
                    .buckets(latency_buckets),
                    &["route"],
                )?,
            ),
            rows_per_request: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new("kiln_prediction_rows", "Rows per prediction request.")
                        .buckets(vec![1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 1000.0, 10000.0]),
                    &["model"],
                )?,
            ),
            predictions: register(
                &r,
                IntCounterVec::new(
                    Opts::new("kiln_predictions_total", "Rows scored."),
                    &["model", "version"],
                )?,
            ),
            validation_failures: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "kiln_validation_failures_total",
                        "Rejected values at the door, by model, field and reason.",
                    ),
                    &["model", "field", "code"],
                )?,
            ),
            flagged_values: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "kiln_flagged_values_total",
                        "Values scored but flagged (unknown_category, out_of_range).",
                    ),
                    &["model", "field", "flag"],
                )?,
            ),
            log_queue_rows: register(
                &r,
                IntGauge::new(
                    "kiln_prediction_log_queue_rows",
                    "Predictions waiting to be written to the log.",
                )?,
            ),
            log_written: register(
                &r,
                IntCounter::new(
                    "kiln_prediction_log_written_total",
                    "Predictions written to the log.",
                )?,
            ),
            log_dropped: register(
                &r,
                IntCounter::new(
                    "kiln_prediction_log_dropped_total",
                    "Predictions answered but not logged (overflow = \"drop\" with a full queue, or a failed write).",
                )?,
            ),
            log_flush_seconds: register(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "kiln_prediction_log_flush_duration_seconds",
                        "Time to write one batch of the prediction log.",
                    )
                    .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
                )?,
            ),
            log_write_errors: register(
                &r,
                IntCounter::new(
                    "kiln_prediction_log_write_errors_total",
                    "Failed attempts to write a batch of the prediction log (retried).",
                )?,
            ),
            feedback: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "kiln_feedback_total",
                        "Labels received, by whether they matched a logged prediction.",
                    ),
                    &["matched"],
                )?,
            ),
            model_loads: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "kiln_model_loads_total",
                        "Model versions loaded, by result.",
                    ),
                    &["model", "version", "result"],
                )?,
            ),
            model_info: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "kiln_model_info",
                        "1 for each alias and the version it serves now.",
                    ),
                    &["model", "alias", "version"],
                )?,
            ),
            auth_failures: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "kiln_auth_failures_total",
                        "Requests refused for a missing or wrong token.",
                    ),
                    &["scope"],
                )?,
            ),
            registry: r,
        })
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> Result<Vec<u8>, prometheus::Error> {
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(out)
    }
}
