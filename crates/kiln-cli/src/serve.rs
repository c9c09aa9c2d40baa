//! `kiln serve`: the models with a `production` (or other configured) alias behind HTTP.

use clap::Args;
use kiln_serve::{Credentials, ServeConfig, ServeError, Server};
use kiln_watch::archive::{Retention, apply_retention};

use crate::GlobalArgs;
use crate::context;
use crate::output::CliError;

#[derive(Args, Debug, Default)]
#[command(
    after_help = "Serves every model with a `production` (or other [serve] aliases) alias and \
follows alias moves. Settings: [serve] in kiln.toml (see `kiln init`). Secrets: KILN_ADMIN_TOKEN \
(default: the home's admin.token) for /v1/admin/, KILN_API_KEYS (comma-separated) to require \
API keys on prediction routes. Routes: GET /docs. Stops on SIGINT/SIGTERM after finishing \
requests and writing every logged prediction."
)]
pub struct ServeArgs {
    /// Address to listen on, IP:PORT (port 0 picks a free one) [default: [serve] addr, or
    /// 127.0.0.1:8080]
    #[arg(long, env = "KILN_SERVE_ADDR")]
    pub addr: Option<String>,
    /// Do not log predictions (they are logged by default, for monitoring)
    #[arg(long)]
    pub no_prediction_log: bool,
    /// Log predictions but do not monitor them live (no windows, gauges or alerts here;
    /// `kiln monitor` still reads the log) [default: [monitor] live, or on]
    #[arg(long)]
    pub no_live_monitoring: bool,
    /// Do not run the retrain controller here even if [automate] enabled = true
    #[arg(long)]
    pub no_automation: bool,
    /// Serve HTTPS with this certificate chain (PEM) [default: [serve.tls] cert]
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The certificate's private key (PEM) [default: [serve.tls] key]
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
}

pub fn serve_error(e: ServeError) -> CliError {
    match e {
        ServeError::Config(m) => CliError::input(m),
        ServeError::Store(s) => CliError::from_store(s),
        ServeError::Bind { addr, source } => CliError::system(format!(
            "cannot listen on {addr}: {source}\nhint: another process may use the port; pick another with --addr 127.0.0.1:PORT"
        )),
        other => CliError::system(other.to_string()),
    }
}

/// Turns transparent huge pages off for this process. The allocator asks for huge pages on its
/// arenas, which suits batch jobs (ingest, training) but makes a server's resident memory grow
/// in 2 MiB steps: measured on the bike model, peak RSS under load fell from 75 to 53 MiB with
/// throughput unchanged.
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_THP_DISABLE takes plain integer arguments and only changes
    // this process's memory policy; its result is checked.
    unsafe {
        if libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0 {
            tracing::debug!("could not turn transparent huge pages off");
        }
    }
}

/// mimalloc's `purge_delay` option: its position in the option enum of the mimalloc 3 that
/// libmimalloc-sys 0.1.49 bundles (`mi_option_e` in `c_src/mimalloc/v3/include/mimalloc.h`),
/// whose Rust bindings do not name it. Its default is 1000 (ms, set in `src/options.c`); the
/// test below fails if an upgrade moves it.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Asks the allocator to give freed memory back to the system at once rather than after a
/// delay of a second. A server's allocations come and go with requests; measured on the bike
/// model, peak RSS under load fell from 57–63 to 45 MiB (idle: 44 to 32 MiB).
fn return_freed_memory_promptly() {
    // SAFETY: reading and setting an allocator option takes integers only.
    unsafe {
        if libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) == 1000 {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
        }
    }
}

/// The server's settings and secrets for `project`: `[serve]` and `[monitor]` of kiln.toml,
/// the flags, the access log following the rest of the logging.
pub fn settings(
    global: &GlobalArgs,
    project: &context::Project,
    args: &ServeArgs,
) -> Result<(ServeConfig, Credentials), CliError> {
    let mut config = ServeConfig::from_table(&project.config.serve).map_err(serve_error)?;
    config.monitor = kiln_watch::rules::MonitorConfig::from_table(&project.config.monitor)
        .map_err(|e| CliError::input(format!("kiln.toml {e}")))?;
    if let Some(addr) = &args.addr {
        config.addr = addr.clone();
    }
    if args.no_prediction_log {
        config.log.enabled = false;
    }
    if args.no_live_monitoring {
        config.monitor.live = false;
    }
    let base = project
        .config_dir
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from("."));
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        config.tls = Some(kiln_serve::config::TlsConfig {
            cert: cert.clone(),
            key: key.clone(),
        });
    } else if let Some(tls) = &mut config.tls {
        // kiln.toml's paths are relative to kiln.toml.
        tls.cert = base.join(&tls.cert);
        tls.key = base.join(&tls.key);
    }
    // The access log follows the rest of the logging: JSON with --log-format json, and
    // nothing under --quiet.
    config.access_log_json = matches!(
        global
            .log_format
            .or(crate::context::peek_log_format(global)),
        Some(crate::LogFormat::Json)
    );
    if global.quiet {
        config.access_log = false;
    }
    let credentials = Credentials::resolve(
        &config.auth,
        &base,
        &project.home.join(crate::init::ADMIN_TOKEN_FILE),
        std::env::var("KILN_ADMIN_TOKEN").ok(),
        std::env::var("KILN_API_KEYS").ok(),
    )
    .map_err(serve_error)?;
    Ok((config, credentials))
}

/// The memory settings of a server process. Called by `main` right after the command line is
/// read, before the logging thread and the async runtime exist: huge pages faulted in before
/// `no_huge_pages` stay whole (2 MiB resident each, however little of them is used), and each
/// new thread's first allocations touch fresh ones. That early, rather than when the
/// server starts: an idle server's anonymous memory 9–10 MiB instead of 12–13, peak RSS under wrk
/// 41–42 instead of 44–46 MiB. (What was touched before `main` still comes in huge pages:
/// with `MIMALLOC_ALLOW_THP=0` in the environment, mimalloc never asks for them, and the idle
/// figure is 6 MiB, the peak 38.)
pub fn prepare_process() {
    no_huge_pages();
    return_freed_memory_promptly();
}

pub async fn run(global: &GlobalArgs, args: ServeArgs) -> Result<(), CliError> {
    let project = context::open(global).await?;
    let (config, credentials) = settings(global, &project, &args)?;
    let log_on = config.log.enabled;
    let live_on = log_on && config.monitor.live;
    // [automate] is checked even when it is off: a typo there is an error now, not later.
    let automate = kiln_automate::AutomateConfig::from_table(&project.config.automate)
        .map_err(|e| CliError::input(format!("kiln.toml {e}")))?;
    // [retention] too: a server applies it on its own schedule.
    let retention = Retention::from_config(&project.config.retention)
        .map_err(|e| CliError::input(format!("kiln.toml {e}")))?;
    let controller = if automate.enabled && !args.no_automation {
        Some(crate::automate::controller(&project)?)
    } else {
        None
    };
    let server = Server::bind(project.store.clone(), config, credentials.clone())
        .await
        .map_err(serve_error)?;
    let addr = server.local_addr().map_err(serve_error)?;
    if !global.quiet {
        // Printed on stderr (stdout stays free for scripts), before serving starts.
        let scheme = if server.is_tls() { "https" } else { "http" };
        eprintln!("kiln serve: listening on {scheme}://{addr}");
        let serving = server.serving();
        if serving.is_empty() {
            eprintln!(
                "  no model served yet: give a version an alias (kiln models alias set production NAME@VERSION --reason ...); the server picks it up"
            );
        }
        for line in serving {
            eprintln!("  {line}");
        }
        eprintln!(
            "  prediction log: {}; live monitoring: {}; dashboard: {scheme}://{addr}/",
            if log_on { "on" } else { "off" },
            if live_on { "on" } else { "off" },
        );
        eprintln!(
            "  admin routes: {}; API keys: {}",
            if credentials.admin_token.is_some() {
                "on"
            } else {
                "off (no admin token)"
            },
            if credentials.api_keys.is_empty() {
                "not required".to_owned()
            } else {
                format!("{} configured", credentials.api_keys.len())
            }
        );
        eprintln!(
            "  retrain controller: {}",
            match &controller {
                Some(c) => format!(
                    "on, for `{}`, when this server holds its lease (kiln retrains list)",
                    c.model().unwrap_or_default()
                ),
                None => "off ([automate] enabled = false)".into(),
            }
        );
        if retention.is_active() {
            let d = |v: Option<i64>| v.map_or("never".into(), kiln_core::value::format_duration);
            eprintln!(
                "  retention: days archived to Parquet after {}, deleted after {}, applied every {} (kiln log archives)",
                d(retention.compact_after),
                d(retention.delete_after),
                kiln_core::value::format_duration(retention.interval)
            );
        }
        eprintln!("  try: curl {scheme}://{addr}/docs");
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let keeper = retention.is_active().then(|| {
        let (store, scratch, stop) = (project.store.clone(), project.scratch(), stop_rx.clone());
        tokio::spawn(async move { keep_retention(store, scratch, retention, stop).await })
    });
    let watcher = controller.map(|c| tokio::spawn(async move { c.run(stop_rx).await }));
    let served = server
        .run(kiln_serve::shutdown_signal())
        .await
        .map_err(serve_error);
    // A retraining in progress finishes and is recorded before the process ends.
    let _ = stop_tx.send(true);
    if let Some(w) = watcher {
        let _ = w.await;
    }
    if let Some(k) = keeper {
        let _ = k.await;
    }
    served
}

/// The lease one of the servers sharing a database holds to apply `[retention]`.
const RETENTION_LEASE: &str = "log-retention";

/// Applies `[retention]` at start and then every `interval` until `stop`, when this process
/// holds the retention lease (among replicas, one compacts; two at once would be safe, each
/// day's archive commits once, but would do the work twice). The lease outlives the interval
/// by a minute, so its holder keeps it while it runs.
async fn keep_retention(
    store: kiln_store::Store,
    scratch: std::path::PathBuf,
    policy: Retention,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let holder = kiln_automate::controller::holder_name();
    let every = std::time::Duration::from_micros(policy.interval.max(1_000_000) as u64);
    let ttl = policy.interval.saturating_add(60_000_000);
    loop {
        match store
            .meta
            .acquire_lease(RETENTION_LEASE, &holder, ttl)
            .await
        {
            Ok(lease) if lease.holder == holder => {
                match apply_retention(&store, &scratch, &[], &policy, false).await {
                    Ok(out) => {
                        let rows: i64 = out.archived.iter().map(|d| d.rows).sum();
                        if !out.archived.is_empty() || !out.dropped.is_empty() {
                            tracing::info!(
                                days = out.archived.len(),
                                predictions = rows,
                                dropped_days = out.dropped.len(),
                                deleted_rows = out.deleted_rows,
                                "retention: old days of the prediction log archived"
                            );
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "retention failed; next try in an interval")
                    }
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot take the retention lease"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => break,
        }
    }
    let _ = store.meta.release_lease(RETENTION_LEASE, &holder).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_where_the_bundled_mimalloc_has_it() {
        // SAFETY: reading an allocator option.
        let delay = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(
            delay, 1000,
            "mimalloc's purge_delay moved: update MI_OPTION_PURGE_DELAY"
        );
    }
}
