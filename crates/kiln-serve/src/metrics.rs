//! The server's Prometheus metrics (`GET /metrics`, classic text format).
//!
//! One registry per server, so tests can run several servers in one process. Label values
//! are bounded: routes are the matched route templates (never raw paths), models and
//! versions come from the registry, fields from model schemas.

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
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
    pub shadow_failures: IntCounterVec,
    pub monitor: MonitorMetrics,
}

/// The live monitoring window's figures, updated at each evaluation (see [`crate::live`]).
pub struct MonitorMetrics {
    pub window_rows: IntGaugeVec,
    pub drift_score: GaugeVec,
    pub drift_detected: IntGaugeVec,
    pub drift_share: GaugeVec,
    pub dataset_drift: IntGaugeVec,
    pub missing_rate: GaugeVec,
    pub prediction_drift_score: GaugeVec,
    pub prediction_drift_detected: IntGaugeVec,
    pub realized: GaugeVec,
    pub labelled_rows: IntGaugeVec,
    pub estimated: GaugeVec,
    pub reference: GaugeVec,
    pub alerts_firing: IntGaugeVec,
    pub alert_transitions: IntCounterVec,
}

/// Removes every series of `vec` labelled with this model and version.
fn forget_series<T>(vec: &prometheus::core::MetricVec<T>, model: &str, version: &str)
where
    T: prometheus::core::MetricVecBuilder,
{
    use prometheus::core::Collector;
    for family in vec.collect() {
        for m in family.get_metric() {
            let labels: std::collections::HashMap<&str, &str> = m
                .get_label()
                .iter()
                .map(|l| (l.name(), l.value()))
                .collect();
            if labels.get("model") == Some(&model) && labels.get("version") == Some(&version) {
                let _ = vec.remove(&labels);
            }
        }
    }
}

impl MonitorMetrics {
    /// Drops the series of a version no longer served, so `/metrics` does not grow with every
    /// version a model ever had (the alert counters and firing gauges stay: they are history).
    pub fn forget(&self, model: &str, version: i64) {
        let v = version.to_string();
        forget_series(&self.window_rows, model, &v);
        forget_series(&self.drift_score, model, &v);
        forget_series(&self.drift_detected, model, &v);
        forget_series(&self.drift_share, model, &v);
        forget_series(&self.dataset_drift, model, &v);
        forget_series(&self.missing_rate, model, &v);
        forget_series(&self.prediction_drift_score, model, &v);
        forget_series(&self.prediction_drift_detected, model, &v);
        forget_series(&self.realized, model, &v);
        forget_series(&self.labelled_rows, model, &v);
        forget_series(&self.estimated, model, &v);
        forget_series(&self.reference, model, &v);
    }

    fn new(r: &Registry) -> Result<Self, prometheus::Error> {
        let gauge =
            |name: &str, help: &str, labels: &[&str]| -> Result<GaugeVec, prometheus::Error> {
                Ok(register(r, GaugeVec::new(Opts::new(name, help), labels)?))
            };
        let int_gauge =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, prometheus::Error> {
                Ok(register(
                    r,
                    IntGaugeVec::new(Opts::new(name, help), labels)?,
                ))
            };
        let mv = ["model", "version"];
        let mvf = ["model", "version", "feature"];
        let mvm = ["model", "version", "metric"];
        Ok(Self {
            window_rows: int_gauge(
                "kiln_monitor_window_rows",
                "Predictions in the current monitoring window.",
                &mv,
            )?,
            drift_score: gauge(
                "kiln_drift_score",
                "Each input's drift test value (p-value or distance) in the current window.",
                &["model", "version", "feature", "method"],
            )?,
            drift_detected: int_gauge(
                "kiln_drift_detected",
                "1 when the input drifted in the current window.",
                &mvf,
            )?,
            drift_share: gauge(
                "kiln_drift_share",
                "Share of drifted inputs in the current window.",
                &mv,
            )?,
            dataset_drift: int_gauge(
                "kiln_dataset_drift",
                "1 when the share of drifted inputs reaches the threshold.",
                &mv,
            )?,
            missing_rate: gauge(
                "kiln_missing_rate",
                "Share of missing values per input in the current window.",
                &mvf,
            )?,
            prediction_drift_score: gauge(
                "kiln_prediction_drift_score",
                "Drift test value of the predictions against the validation predictions.",
                &["model", "version", "method"],
            )?,
            prediction_drift_detected: int_gauge(
                "kiln_prediction_drift_detected",
                "1 when the predictions drifted.",
                &mv,
            )?,
            realized: gauge(
                "kiln_performance_realized",
                "Realized metric on the labelled rows of the current window.",
                &mvm,
            )?,
            labelled_rows: int_gauge(
                "kiln_performance_labelled_rows",
                "Labelled predictions in the current window.",
                &mv,
            )?,
            estimated: gauge(
                "kiln_performance_estimated",
                "Estimated metric (CBPE or direct loss estimation) of the current window.",
                &mvm,
            )?,
            reference: gauge(
                "kiln_performance_reference",
                "The metric on the validation rows at training.",
                &mvm,
            )?,
            alerts_firing: int_gauge(
                "kiln_alerts_firing",
                "1 while a monitoring alert rule fires.",
                &["model", "rule", "severity"],
            )?,
            alert_transitions: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "kiln_alert_transitions_total",
                        "Monitoring alerts fired and resolved.",
                    ),
                    &["model", "rule", "state"],
                )?,
            ),
        })
    }
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
            shadow_failures: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "kiln_shadow_failures_total",
                        "Copies of requests the shadow version could not score (the answers, from production, were not affected).",
                    ),
                    &["model", "version"],
                )?,
            ),
            monitor: MonitorMetrics::new(&r)?,
            registry: r,
        })
    }

    /// The request counters, as the registry reports them (for the live error rate).
    pub fn gather_requests(&self) -> Vec<prometheus::proto::MetricFamily> {
        prometheus::core::Collector::collect(&self.requests)
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> Result<Vec<u8>, prometheus::Error> {
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgetting_a_version_drops_its_monitoring_series_only() {
        let m = Metrics::new().unwrap();
        for v in ["1", "2"] {
            m.monitor
                .window_rows
                .with_label_values(&["bikes", v])
                .set(5);
            m.monitor
                .drift_score
                .with_label_values(&["bikes", v, "temp", "wasserstein"])
                .set(0.2);
        }
        m.monitor
            .window_rows
            .with_label_values(&["other", "1"])
            .set(3);
        m.monitor.forget("bikes", 1);
        let text = String::from_utf8(m.render().unwrap()).unwrap();
        assert!(!text.contains("model=\"bikes\",version=\"1\""), "{text}");
        assert!(text.contains("kiln_monitor_window_rows{model=\"bikes\",version=\"2\"} 5"));
        assert!(text.contains("kiln_monitor_window_rows{model=\"other\",version=\"1\"} 3"));
        assert!(
            text.contains("feature=\"temp\",method=\"wasserstein\",model=\"bikes\",version=\"2\"")
        );
    }
}
