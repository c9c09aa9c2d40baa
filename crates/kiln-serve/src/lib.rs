//! `kiln serve`: registered models behind HTTP.
//!
//! - [`native`]: `POST /v1/models/{name}/predict`, `POST /v1/feedback`, `GET /v1/models`;
//! - [`v2`]: the Open Inference Protocol (KServe v2) over HTTP/JSON, binary tensors included;
//! - [`admin`]: reload, alias moves and rollbacks under `/v1/admin/`, behind the admin token;
//! - `GET /metrics` (Prometheus), `GET /openapi.json` and `GET /docs`.
//!
//! Every request passes one frame ([`http::frame`]): request id, deadline, metrics and the
//! access log. Models come from the [`catalog`], which follows the registry's aliases and
//! swaps atomically; predictions go to the [`plog`] off the request path; rows are checked at
//! the [`door`] before scoring.

pub mod access;
pub mod admin;
pub mod auth;
pub mod catalog;
pub mod config;
pub mod dashboard;
pub mod door;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod live;
pub mod metrics;
pub mod native;
pub mod openapi;
pub mod plog;
pub mod tls;
pub mod v2;

use std::net::SocketAddr;
use std::sync::Arc;

use kiln_store::Store;
use kiln_watch::rules::Scope;
use tokio::sync::watch;

pub use config::{Credentials, ServeConfig};
pub use error::{ApiError, ServeError};

use crate::catalog::Follower;
use crate::metrics::Metrics;
use crate::plog::PredictionLog;

/// What every handler shares.
pub struct AppState {
    pub store: Store,
    pub config: ServeConfig,
    pub credentials: Credentials,
    pub follower: Arc<Follower>,
    pub metrics: Arc<Metrics>,
    pub log: Option<PredictionLog>,
    /// Live monitoring of the logged predictions (on when the log is).
    pub live: Option<Arc<live::LiveMonitor>>,
    pub access: Option<Arc<access::AccessLog>>,
    pub ids: http::RequestIds,
}

/// A server bound to its address, not yet serving.
pub struct Server {
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    /// Set when serving HTTPS.
    tls: Option<tokio_rustls::TlsAcceptor>,
    writer: Option<plog::LogWriter>,
    /// Live monitoring's observer thread (ends after the writer).
    observer: Option<std::thread::JoinHandle<()>>,
    /// With `[monitor] scope = "shared"`: the task that feeds the observer from the shared log.
    tail: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Binds `config.addr` (port 0 picks a free port) and loads the aliased models once, so
    /// the server is ready when it starts answering.
    pub async fn bind(
        store: Store,
        config: ServeConfig,
        credentials: Credentials,
    ) -> Result<Self, ServeError> {
        config.check()?;
        let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
        let metrics =
            Arc::new(Metrics::new().map_err(|e| ServeError::Config(format!("metrics: {e}")))?);
        let follower = Arc::new(Follower::new(
            store.clone(),
            config.aliases.clone(),
            metrics.clone(),
        ));
        let report = follower.sync().await?;
        for failed in &report.failed {
            tracing::error!("model not loaded: {failed}");
        }
        let live = (config.log.enabled && config.monitor.live).then(|| {
            Arc::new(live::LiveMonitor::new(
                config.monitor.clone(),
                store.clone(),
                follower.clone(),
                metrics.clone(),
            ))
        });
        let mut observer = None;
        let mut tail = None;
        let (log, writer) = if config.log.enabled {
            let (log, mut writer) =
                plog::prediction_log(store.clone(), &config.log, metrics.clone());
            if let Some(l) = &live {
                let (tx, thread) = l.observer()?;
                match config.monitor.scope {
                    Scope::Replica => writer.live = Some(tx),
                    Scope::Shared => {
                        let from = store.meta.last_prediction_id().await?;
                        tail = Some(tokio::spawn(live::tail_shared_log(
                            store.clone(),
                            from,
                            std::time::Duration::from_millis(config.log.flush_interval_ms),
                            tx,
                        )));
                    }
                }
                observer = Some(thread);
            }
            (Some(log), Some(writer))
        } else {
            (None, None)
        };
        let listener = tokio::net::TcpListener::bind(&config.addr)
            .await
            .map_err(|source| ServeError::Bind {
                addr: config.addr.clone(),
                source,
            })?;
        let access = config.access_log.then(|| {
            Arc::new(access::AccessLog::new(if config.access_log_json {
                access::AccessFormat::Json
            } else {
                access::AccessFormat::Human
            }))
        });
        let state = Arc::new(AppState {
            store,
            config,
            credentials,
            follower,
            metrics,
            log,
            live,
            access,
            ids: http::RequestIds::new(),
        });
        Ok(Self {
            state,
            listener,
            tls,
            writer,
            observer,
            tail,
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr, ServeError> {
        Ok(self.listener.local_addr()?)
    }

    /// What the server serves right now: `model@alias -> version` lines.
    pub fn serving(&self) -> Vec<String> {
        let catalog = self.state.follower.catalog();
        catalog
            .models
            .iter()
            .flat_map(|(name, slot)| {
                slot.aliases
                    .iter()
                    .map(move |(alias, v)| format!("{name}@{alias} -> version {v}"))
            })
            .collect()
    }

    /// Whether the server speaks HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves until `shutdown` resolves; then stops accepting, lets in-flight requests finish,
    /// and writes every queued prediction before returning.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let follower = tokio::spawn(
            self.state
                .follower
                .clone()
                .follow(self.state.config.poll_interval(), stop_rx.clone()),
        );
        let writer = self.writer.map(|w| tokio::spawn(w.run(stop_rx.clone())));
        // The monitor stops after the writer has flushed, so its last tick sees every row.
        let (live_stop_tx, live_stop_rx) = watch::channel(false);
        let live = self
            .state
            .live
            .clone()
            .map(|l| tokio::spawn(l.run(live_stop_rx)));
        let access = self
            .state
            .access
            .clone()
            .map(|a| tokio::spawn(a.run(stop_rx.clone())));
        let app = http::router(self.state.clone());
        let served = match self.tls {
            None => {
                axum::serve(
                    self.listener,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(shutdown)
                .await
            }
            Some(acceptor) => {
                axum::serve(
                    tls::TlsListener::new(self.listener, acceptor)?,
                    app.into_make_service(),
                )
                .with_graceful_shutdown(shutdown)
                .await
            }
        };
        let _ = stop_tx.send(true);
        let _ = follower.await;
        if let Some(w) = writer {
            let _ = w.await;
        }
        // The writer is gone, so is the observer's sender (the tail's, once it is stopped):
        // it finishes what it was handed.
        if let Some(t) = self.tail {
            t.abort();
            let _ = t.await;
        }
        if let Some(o) = self.observer {
            let _ = tokio::task::spawn_blocking(move || o.join()).await;
        }
        let _ = live_stop_tx.send(true);
        if let Some(l) = live {
            let _ = l.await;
        }
        if let Some(a) = access {
            let _ = a.await;
        }
        tracing::info!(
            written = self.state.metrics.log_written.get(),
            dropped = self.state.metrics.log_dropped.get(),
            "server stopped; prediction log flushed"
        );
        served.map_err(ServeError::Io)
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests and flushing the prediction log");
}
