//! The prediction log: every prediction is written to the store, off the request path.
//!
//! A request hands its rows to a queue and returns; one writer task collects them and writes
//! a batch per transaction (multi-row inserts) when `batch_rows` are waiting or the oldest
//! has waited `flush_interval_ms`, whichever comes first. So a `kill -9` loses at most what
//! arrived in the last flush interval, and what was written is whole (one transaction per
//! batch).
//!
//! The queue is bounded in rows by a semaphore: a request takes one permit per row before
//! queueing, and they come back once the rows are written and, with live monitoring on,
//! monitoring has taken them. With `overflow = "block"` (the default) a full queue makes
//! requests wait (back-pressure, nothing lost); with `"drop"` the rows are answered but not
//! logged, and counted. On shutdown the writer drains the queue before the server exits.
//!
//! Writing never waits for monitoring: the hand-off runs in a task of its own, so a monitor
//! that falls behind (a slow window evaluation holds its thread) delays the permits, and so
//! new requests, but never the write of rows already acknowledged. What `kill -9` can lose
//! stays bounded by the flush interval.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kiln_store::{PredictionRecord, Store};
use tokio::sync::{Notify, Semaphore, mpsc};

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
    /// Rows sent and not yet in a write, and the signal that they make a full batch.
    queued: Arc<AtomicUsize>,
    full: Arc<Notify>,
    batch_rows: usize,
    permits: Arc<Semaphore>,
    capacity: usize,
    overflow: Overflow,
    metrics: Arc<Metrics>,
}

/// The writer side: run it to completion after closing the request side.
pub struct LogWriter {
    rx: mpsc::UnboundedReceiver<LogBatch>,
    queued: Arc<AtomicUsize>,
    full: Arc<Notify>,
    permits: Arc<Semaphore>,
    store: Store,
    config: PredictionLogConfig,
    metrics: Arc<Metrics>,
    /// Live monitoring's observer, handed every batch once it is written (see
    /// [`crate::live::LiveMonitor::observer`]).
    pub live: Option<mpsc::Sender<Vec<PredictionRecord>>>,
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
    let queued = Arc::new(AtomicUsize::new(0));
    let full = Arc::new(Notify::new());
    (
        PredictionLog {
            tx,
            queued: queued.clone(),
            full: full.clone(),
            batch_rows: config.batch_rows,
            permits: permits.clone(),
            capacity,
            overflow: config.overflow,
            metrics: metrics.clone(),
        },
        LogWriter {
            rx,
            queued,
            full,
            permits,
            store,
            config: config.clone(),
            metrics,
            live: None,
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
        let before = self.queued.fetch_add(rows, Ordering::AcqRel);
        if self.tx.send(batch).is_err() {
            self.queued.fetch_sub(rows, Ordering::AcqRel);
            self.metrics.log_dropped.inc_by(rows as u64);
            self.metrics.log_queue_rows.sub(n as i64);
            self.permits.add_permits(n as usize);
        } else if before < self.batch_rows && before + rows >= self.batch_rows {
            // This request completes a batch: wake the writer (it sleeps until then).
            self.full.notify_one();
        }
    }
}

impl LogWriter {
    /// Writes until `stop` fires, then drains what is queued and returns.
    ///
    /// The writer wakes for the first request of a batch and then only when the batch is due
    /// (`flush_interval_ms` later) or full (`batch_rows` queued, signalled by the request
    /// that fills it): not once per request, which under load cost more CPU than writing.
    pub async fn run(mut self, mut stop: tokio::sync::watch::Receiver<bool>) {
        // The first batch should not also pay for opening the log's connection.
        if let Err(e) = self.store.meta.prepare_appends().await {
            tracing::warn!(target: "kiln::log", error = %e, "prediction log: cannot open its connection yet; the first write will try again");
        }
        let (handoff, forwarder) = match self.live.take() {
            Some(live) => {
                let (tx, rx) = mpsc::unbounded_channel();
                let task = tokio::spawn(forward(rx, live, self.permits.clone()));
                (Some(tx), Some(task))
            }
            None => (None, None),
        };
        self.write_until_stopped(&mut stop, handoff.as_ref()).await;
        // Every written batch is handed to monitoring before the writer is done.
        drop(handoff);
        if let Some(task) = forwarder {
            let _ = task.await;
        }
    }

    async fn write_until_stopped(
        &mut self,
        stop: &mut tokio::sync::watch::Receiver<bool>,
        handoff: Option<&Handoff>,
    ) {
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
            tracing::debug!(target: "kiln::log", rows = first.rows.len(), "prediction log: a batch begins");
            let mut rows = first.rows.len();
            let mut pending = vec![first];
            let mut due = false;
            loop {
                // Take what is already queued, up to a batch.
                while rows < self.config.batch_rows {
                    let Ok(m) = self.rx.try_recv() else { break };
                    rows += m.rows.len();
                    pending.push(m);
                }
                if due || rows >= self.config.batch_rows || stopping || self.rx.is_closed() {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => due = true,
                    _ = self.full.notified() => {}
                    _ = stop.changed(), if !stopping => {
                        stopping = true;
                        self.rx.close();
                    }
                }
            }
            // What arrives from now on counts toward the next batch.
            self.queued.fetch_sub(rows, Ordering::AcqRel);
            self.write(pending, stopping, handoff).await;
        }
    }

    async fn write(&self, pending: Vec<LogBatch>, stopping: bool, handoff: Option<&Handoff>) {
        let permits: usize = pending
            .iter()
            .map(|b| b.rows.len().min(self.permits_capacity()))
            .sum();
        let records = to_records(pending);
        let mut attempt = 0u32;
        let mut written = false;
        loop {
            let timer = self.metrics.log_flush_seconds.start_timer();
            let started = std::time::Instant::now();
            tracing::debug!(target: "kiln::log", rows = records.len(), attempt, "prediction log: writing a batch");
            match self.store.meta.append_predictions(&records).await {
                Ok(n) => {
                    timer.observe_duration();
                    let took = started.elapsed();
                    tracing::debug!(target: "kiln::log", rows = n, micros = took.as_micros() as u64, "prediction log: batch written");
                    if took > Duration::from_millis(self.config.flush_interval_ms) {
                        // Rows wait this long on top of the flush interval: what kill -9 could
                        // lose grows with it.
                        tracing::warn!(target: "kiln::log", rows = n, millis = took.as_millis() as u64, "prediction log: a batch took longer to write than the flush interval");
                    }
                    self.metrics.log_written.inc_by(n);
                    written = true;
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
        match handoff {
            // The forwarder returns the permits once monitoring has the rows: if monitoring
            // falls behind, the queue fills and requests meet back-pressure, as for a slow
            // store, while the writer goes on writing what is queued.
            Some(h) if written => {
                if let Err(e) = h.send((records, permits)) {
                    self.permits.add_permits(e.0.1);
                }
            }
            _ => self.permits.add_permits(permits),
        }
    }

    fn permits_capacity(&self) -> usize {
        self.config.queue_rows.min(Semaphore::MAX_PERMITS)
    }
}

/// Written batches on their way to monitoring, with the queue permits they hold.
type Handoff = mpsc::UnboundedSender<(Vec<PredictionRecord>, usize)>;

/// Hands written batches to live monitoring in order, returning each one's permits once
/// monitoring has taken it (or is gone).
async fn forward(
    mut rx: mpsc::UnboundedReceiver<(Vec<PredictionRecord>, usize)>,
    live: mpsc::Sender<Vec<PredictionRecord>>,
    permits: Arc<Semaphore>,
) {
    while let Some((records, n)) = rx.recv().await {
        let _ = live.send(records).await;
        permits.add_permits(n);
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

    /// Waits (up to 10 s) until the log holds `rows` predictions.
    async fn wait_written(store: &Store, rows: i64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.meta.prediction_count(None).await.unwrap() < rows {
            assert!(
                std::time::Instant::now() < deadline,
                "{rows} rows were not written"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_monitor_holds_back_new_requests_but_never_the_writes() {
        let (_dir, store) = store().await;
        let metrics = Arc::new(Metrics::new().unwrap());
        let config = PredictionLogConfig {
            queue_rows: 12,
            flush_interval_ms: 20,
            ..PredictionLogConfig::default()
        };
        let (log, mut writer) = prediction_log(store.clone(), &config, metrics.clone());
        // Monitoring takes one batch into its channel and then nothing (its thread is busy).
        let (live_tx, mut live_rx) = mpsc::channel(1);
        writer.live = Some(live_tx);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(writer.run(stop_rx));
        // Each batch is written within the flush interval, though after the first monitoring
        // takes none of them: what is acknowledged never waits for monitoring.
        for (i, rows) in [3usize, 3, 3, 3].into_iter().enumerate() {
            log.submit(batch(rows)).await;
            wait_written(&store, 3 * (i as i64 + 1)).await;
        }
        // The written rows waiting for monitoring still hold their room in the queue: the
        // first batch is in monitoring's channel, the other three (9 rows) wait for it, so a
        // request of 4 rows waits (back-pressure) where one of 3 would not.
        let waiting = tokio::time::timeout(Duration::from_millis(200), log.submit(batch(4))).await;
        assert!(
            waiting.is_err(),
            "rows not yet monitored must count against the queue"
        );
        assert_eq!(
            metrics.log_queue_rows.get(),
            0,
            "nothing waits to be written"
        );
        // Monitoring catches up: every batch arrives, in order, and room comes back.
        let mut seen = Vec::new();
        for _ in 0..4 {
            let b = live_rx.recv().await.unwrap();
            seen.extend(b.into_iter().map(|r| r.request_id));
        }
        assert_eq!(seen.len(), 12);
        assert_eq!(&seen[..3], ["r0", "r1", "r2"]);
        tokio::time::timeout(Duration::from_secs(5), log.submit(batch(4)))
            .await
            .expect("monitoring made room");
        // Stopping writes and hands over the last rows, then ends.
        let _ = stop_tx.send(true);
        let last = tokio::time::timeout(Duration::from_secs(5), live_rx.recv())
            .await
            .expect("the last batch reaches monitoring");
        assert_eq!(last.map(|b| b.len()), Some(4));
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the writer stops")
            .unwrap();
        assert_eq!(store.meta.prediction_count(None).await.unwrap(), 16);
        assert_eq!(metrics.log_dropped.get(), 0);
    }

    #[tokio::test]
    async fn a_full_batch_is_written_without_waiting_for_the_interval() {
        let (_dir, store) = store().await;
        let metrics = Arc::new(Metrics::new().unwrap());
        let config = PredictionLogConfig {
            // Long enough that only a full batch can explain the write.
            flush_interval_ms: 60_000,
            batch_rows: 10,
            ..PredictionLogConfig::default()
        };
        let (log, writer) = prediction_log(store.clone(), &config, metrics.clone());
        let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(writer.run(stop_rx));
        // Four rows: not a batch yet; they wait for the interval.
        log.submit(batch(4)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(store.meta.prediction_count(None).await.unwrap(), 0);
        // Seven more fill the batch: the writer wakes and writes all eleven.
        log.submit(batch(7)).await;
        wait_written(&store, 11).await;
        assert_eq!(metrics.log_written.get(), 11);
    }
}
