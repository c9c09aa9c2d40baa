//! The prediction log: every prediction is written to the store, off the request path.
//!
//! A request hands its rows to a queue and returns; one writer task collects them and writes
//! a batch per transaction (multi-row inserts) when `batch_rows` are waiting or the oldest
//! has waited `flush_interval_ms`, whichever comes first. So a `kill -9` loses at most what
//! arrived in the last flush interval, and what was written is whole (one transaction per
//! batch).
//!
//! The queue is bounded in rows by a semaphore: a request takes one permit per row before
//! queueing and the writer gives them back once the rows are written. With `overflow =
//! "block"` (the default) a full queue makes requests wait (back-pressure, nothing lost);
//! with `"drop"` the rows are answered but not logged, and counted. On shutdown the writer
//! drains the queue before the server exits.

use std::sync::Arc;
use std::time::Duration;

use kiln_store::{PredictionRecord, Store};
use tokio::sync::{Semaphore, mpsc};

use crate::config::{Overflow, PredictionLogConfig};
use crate::metrics::Metrics;

/// One request's predictions, as handed to the log.
pub struct LogBatch {
    pub model: Arc<str>,
    pub version: i64,
    pub alias: Option<Arc<str>>,
    /// Microseconds since the epoch, when the request arrived.
    pub time: i64,
    pub latency_us: i64,
    pub rows: Vec<LogRow>,
}

pub struct LogRow {
    pub request_id: String,
    pub key: Option<String>,
    /// The row as received, as compact JSON text (text is a fraction of the memory of a
    /// parsed object while it waits in the queue).
    pub features: String,
    /// What the model answered, as JSON text.
    pub output: String,
    pub flags: Vec<String>,
}

/// The request side of the log.
pub struct PredictionLog {
    tx: mpsc::UnboundedSender<LogBatch>,
    permits: Arc<Semaphore>,
    capacity: usize,
    overflow: Overflow,
    metrics: Arc<Metrics>,
}

/// The writer side: run it to completion after closing the request side.
pub struct LogWriter {
    rx: mpsc::UnboundedReceiver<LogBatch>,
    permits: Arc<Semaphore>,
    store: Store,
    config: PredictionLogConfig,
    metrics: Arc<Metrics>,
}

/// Makes the two ends of the log.
pub fn prediction_log(
    store: Store,
    config: &PredictionLogConfig,
    metrics: Arc<Metrics>,
) -> (PredictionLog, LogWriter) {
    let (tx, rx) = mpsc::unbounded_channel();
    let capacity = config.queue_rows.min(Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(capacity));
    (
        PredictionLog {
            tx,
            permits: permits.clone(),
            capacity,
            overflow: config.overflow,
            metrics: metrics.clone(),
        },
        LogWriter {
            rx,
            permits,
            store,
            config: config.clone(),
            metrics,
        },
    )
}

impl PredictionLog {
    /// Queues a request's predictions (waiting for room under back-pressure).
    pub async fn submit(&self, batch: LogBatch) {
        let rows = batch.rows.len();
        if rows == 0 {
            return;
        }
        // A request larger than the whole queue takes all of it, not more than exists.
        let n = u32::try_from(rows.min(self.capacity)).unwrap_or(u32::MAX);
        let taken = match self.overflow {
            Overflow::Block => self.permits.acquire_many(n).await.ok(),
            Overflow::Drop => self.permits.try_acquire_many(n).ok(),
        };
        let Some(permit) = taken else {
            self.metrics.log_dropped.inc_by(rows as u64);
            return;
        };
        // The writer returns the permits once the rows are written.
        permit.forget();
        self.metrics.log_queue_rows.add(n as i64);
        if self.tx.send(batch).is_err() {
            self.metrics.log_dropped.inc_by(rows as u64);
            self.metrics.log_queue_rows.sub(n as i64);
            self.permits.add_permits(n as usize);
        }
    }
}

impl LogWriter {
    /// Writes until `stop` fires, then drains what is queued and returns.
    pub async fn run(mut self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let flush_every = Duration::from_millis(self.config.flush_interval_ms);
        let mut stopping = false;
        loop {
            let first = if stopping {
                self.rx.recv().await
            } else {
                tokio::select! {
                    m = self.rx.recv() => m,
                    _ = stop.changed() => {
                        stopping = true;
                        // No new predictions after this; what is queued is still received.
                        self.rx.close();
                        continue;
                    }
                }
            };
            let Some(first) = first else { break };
            let deadline = tokio::time::Instant::now() + flush_every;
            let mut pending = vec![first];
            let mut rows = pending[0].rows.len();
            while rows < self.config.batch_rows {
                // Take what is already queued without waiting; then wait until the deadline.
                match self.rx.try_recv() {
                    Ok(m) => {
                        rows += m.rows.len();
                        pending.push(m);
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                    Err(mpsc::error::TryRecvError::Empty) if stopping => break,
                    Err(mpsc::error::TryRecvError::Empty) => {}
                }
                tokio::select! {
                    m = self.rx.recv() => match m {
                        Some(m) => { rows += m.rows.len(); pending.push(m); }
                        None => break,
                    },
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = stop.changed(), if !stopping => {
                        stopping = true;
                        self.rx.close();
                    }
                }
            }
            self.write(pending, stopping).await;
        }
    }

    async fn write(&self, pending: Vec<LogBatch>, stopping: bool) {
        let permits: usize = pending
            .iter()
            .map(|b| b.rows.len().min(self.permits_capacity()))
            .sum();
        let records = to_records(pending);
        let mut attempt = 0u32;
        loop {
            let timer = self.metrics.log_flush_seconds.start_timer();
            match self.store.meta.append_predictions(&records).await {
                Ok(n) => {
                    timer.observe_duration();
                    self.metrics.log_written.inc_by(n);
                    break;
                }
                Err(e) => {
                    timer.stop_and_discard();
                    attempt += 1;
                    self.metrics.log_write_errors.inc();
                    // While serving, keep the rows and retry (the queue fills and applies
                    // back-pressure); on the way out, give up after a few tries.
                    if stopping && attempt >= 3 {
                        tracing::error!(target: "kiln::log", error = %e, rows = records.len(), "prediction log: giving up on a batch at shutdown");
                        self.metrics.log_dropped.inc_by(records.len() as u64);
                        break;
                    }
                    tracing::warn!(target: "kiln::log", error = %e, attempt, "prediction log: write failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt.min(10))))
                        .await;
                }
            }
        }
        self.metrics.log_queue_rows.sub(permits as i64);
        self.permits.add_permits(permits);
    }

    fn permits_capacity(&self) -> usize {
        self.config.queue_rows.min(Semaphore::MAX_PERMITS)
    }
}

fn to_records(pending: Vec<LogBatch>) -> Vec<PredictionRecord> {
    let mut out = Vec::with_capacity(pending.iter().map(|b| b.rows.len()).sum());
    for b in pending {
        let model = b.model.to_string();
        let alias = b.alias.as_deref().map(str::to_owned);
        for r in b.rows {
            out.push(PredictionRecord {
                request_id: r.request_id,
                key: r.key,
                model: model.clone(),
                version: b.version,
                alias: alias.clone(),
                time: b.time,
                features: r.features,
                output: r.output,
                latency_us: b.latency_us,
                flags: (!r.flags.is_empty())
                    .then(|| serde_json::to_string(&r.flags).unwrap_or_default()),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(rows: usize) -> LogBatch {
        LogBatch {
            model: Arc::from("m"),
            version: 1,
            alias: None,
            time: 0,
            latency_us: 1,
            rows: (0..rows)
                .map(|i| LogRow {
                    request_id: format!("r{i}"),
                    key: None,
                    features: format!("{{\"x\":{i}}}"),
                    output: format!("{{\"value\":{i}}}"),
                    flags: Vec::new(),
                })
                .collect(),
        }
    }

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&kiln_store::StoreLocation::in_home(dir.path()))
            .await
            .unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_under_the_drop_policy() {
        let (_dir, store) = store().await;
        let metrics = Arc::new(Metrics::new().unwrap());
        let config = PredictionLogConfig {
            queue_rows: 3,
            overflow: Overflow::Drop,
            ..PredictionLogConfig::default()
        };
        // No writer runs: the queue fills and stays full.
        let (log, _writer) = prediction_log(store, &config, metrics.clone());
        log.submit(batch(2)).await;
        log.submit(batch(2)).await;
        log.submit(batch(1)).await;
        assert_eq!(metrics.log_dropped.get(), 2);
        assert_eq!(metrics.log_queue_rows.get(), 3);
    }

    #[tokio::test]
    async fn a_full_queue_blocks_until_the_writer_makes_room() {
        let (_dir, store) = store().await;
        let metrics = Arc::new(Metrics::new().unwrap());
        let config = PredictionLogConfig {
            queue_rows: 2,
            flush_interval_ms: 20,
            ..PredictionLogConfig::default()
        };
        let (log, writer) = prediction_log(store.clone(), &config, metrics.clone());
        log.submit(batch(2)).await;
        // The queue is full: the next submit waits (back-pressure) instead of dropping.
        let waiting = tokio::time::timeout(Duration::from_millis(200), log.submit(batch(1))).await;
        assert!(waiting.is_err(), "a full queue must make the request wait");
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(writer.run(stop_rx));
        tokio::time::timeout(Duration::from_secs(5), log.submit(batch(1)))
            .await
            .expect("the writer frees room");
        let _ = stop_tx.send(true);
        task.await.unwrap();
        assert_eq!(metrics.log_dropped.get(), 0);
        assert_eq!(store.meta.prediction_count(None).await.unwrap(), 3);
        assert_eq!(metrics.log_written.get(), 3);
        assert_eq!(metrics.log_queue_rows.get(), 0);
    }

    #[tokio::test]
    async fn stopping_drains_every_queued_prediction() {
        let (_dir, store) = store().await;
        let metrics = Arc::new(Metrics::new().unwrap());
        let config = PredictionLogConfig {
            // Long enough that only the stop can explain the write.
            flush_interval_ms: 60_000,
            ..PredictionLogConfig::default()
        };
        let (log, writer) = prediction_log(store.clone(), &config, metrics.clone());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(writer.run(stop_rx));
        for _ in 0..10 {
            log.submit(batch(7)).await;
        }
        let _ = stop_tx.send(true);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the writer stops promptly")
            .unwrap();
        assert_eq!(store.meta.prediction_count(None).await.unwrap(), 70);
    }
}
