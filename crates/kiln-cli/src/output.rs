//! What the CLI shows: errors with exit codes, logs, tables, JSON documents, progress bars.

use std::io::IsTerminal;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kiln_data::{DataError, Progress};
use kiln_store::StoreError;
use serde::Serialize;

use crate::{GlobalArgs, LogFormat};

/// An error on its way to the user: a message and an exit code.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl CliError {
    /// Bad input: exit 2.
    pub fn input(message: impl Into<String>) -> Self {
        Self {
            code: 2,
            message: message.into(),
        }
    }

    /// A failure of the system: exit 1.
    pub fn system(message: impl Into<String>) -> Self {
        Self {
            code: 1,
            message: message.into(),
        }
    }

    pub fn from_store(e: StoreError) -> Self {
        match &e {
            // The user named something that does not exist, or lost a race they asked to
            // detect (a stated expected revision): their input, not a broken system.
            StoreError::BadDbUrl(_)
            | StoreError::BadArtifactUrl(_)
            | StoreError::NotFound(_)
            | StoreError::Conflict(_)
            | StoreError::Invalid(_)
            // A misconfigured S3 store: the URL, credentials or bucket the user gave.
            | StoreError::S3Config { .. }
            | StoreError::S3Credentials { .. }
            | StoreError::S3NoCredentials { .. }
            | StoreError::S3NoBucket { .. }
            // A database server that refused the URL's database or credentials.
            | StoreError::Connect { refused: true, .. } => Self::input(e.to_string()),
            _ => Self::system(e.to_string()),
        }
    }

    pub fn exit_code(&self) -> u8 {
        self.code
    }
}

impl From<DataError> for CliError {
    fn from(e: DataError) -> Self {
        let code = if e.is_input_error() { 2 } else { 1 };
        Self {
            code,
            message: e.to_string(),
        }
    }
}

impl From<kiln_train::TrainError> for CliError {
    fn from(e: kiln_train::TrainError) -> Self {
        let code = if e.is_input_error() { 2 } else { 1 };
        Self {
            code,
            message: e.to_string(),
        }
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        Self::from_store(e)
    }
}

pub fn print_error(e: &CliError) {
    eprintln!("error: {}", e.message);
}

/// Lines a long-running command's log may hold before the thread that logs waits for the
/// writer. tracing-appender's default, 128,000, is a channel it allocates and initializes
/// whole at start: 4.1 MB resident for the process's life, a tenth of an idle server. The
/// server's busy lines (the access log) are written by `kiln_serve::access`, not through here,
/// so the events that come this way are few: model loads, alerts, warnings.
const LOG_BUFFER_LINES: usize = 4096;

/// Starts logging on stderr. A server (`long_running`) logs at info by default (its access
/// log and model reloads are what operators read) through a background thread that batches
/// writes, so a request never waits on the terminal or the pipe; the returned guard flushes
/// what is left when dropped.
pub fn init_logging(
    global: &GlobalArgs,
    config_format: Option<LogFormat>,
    long_running: bool,
) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let level = if global.quiet {
        "error"
    } else {
        match global.verbose {
            0 if long_running => "info",
            0 => "warn",
            1 => "info",
            _ => "debug",
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KILN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let format = global
        .log_format
        .or(config_format)
        .unwrap_or(LogFormat::Human);
    let (writer, guard) = if long_running {
        let (w, g) = tracing_appender::non_blocking::NonBlockingBuilder::default()
            // Never drop a line: a full buffer makes the logging thread wait instead.
            .lossy(false)
            .buffered_lines_limit(LOG_BUFFER_LINES)
            .finish(std::io::BufWriter::new(std::io::stderr()));
        (
            tracing_subscriber::fmt::writer::BoxMakeWriter::new(w),
            Some(g),
        )
    } else {
        (
            tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr),
            None,
        )
    };
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours for a person at a terminal, never escape codes in a log file or pipe.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    // A second initialisation (tests in one process) is harmless; ignore it.
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Human => builder.with_target(false).try_init(),
    };
    guard
}

/// Prints one JSON document on stdout.
pub fn print_json<T: Serialize>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::system(format!("cannot encode JSON output: {e}")))?;
    println!("{text}");
    Ok(())
}

/// A plain text table: columns padded to their widest cell; numbers right-aligned.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let numeric = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | ',' | '%' | 'e' | '+'))
    };
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let mut parts = Vec::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(c.chars().count());
            if numeric(c) && i > 0 {
                parts.push(format!("{}{}", " ".repeat(pad), c));
            } else {
                parts.push(format!("{}{}", c, " ".repeat(pad)));
            }
        }
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(|s| s.as_str()).collect(), &mut out);
    }
    out
}

/// A size in MiB with two decimals, for files and stores.
pub fn mebibytes(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / 1_048_576.0)
}

/// Thousands separators, for row counts.
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A number for a table: up to 4 significant decimals, no noise.
pub fn num(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(x) if x.is_nan() => "-".into(),
        Some(x) if x.fract() == 0.0 && x.abs() < 1e12 => format!("{}", x as i64),
        Some(x) if x.abs() >= 1000.0 => format!("{x:.1}"),
        Some(x) => {
            let s = format!("{x:.4}");
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        }
    }
}

/// The progress bar of a long ingest: on stderr, only when stdout is a terminal and not -q.
pub struct Bar(ProgressBar);

impl Bar {
    pub fn for_ingest(global: &GlobalArgs, json: bool) -> Arc<dyn Progress> {
        let visible = !global.quiet && !json && std::io::stdout().is_terminal();
        let bar = ProgressBar::with_draw_target(
            None,
            if visible {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            },
        );
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message("ingesting");
        Arc::new(Bar(bar))
    }
}

impl Progress for Bar {
    fn start(&self, total_bytes: u64) {
        self.0.set_length(total_bytes);
    }
    fn set_position(&self, bytes: u64) {
        self.0.set_position(bytes);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// A spinner with the current step of a long command (training): on stderr, only when
/// stdout is a terminal and not -q/--json.
#[derive(Clone)]
pub struct Spinner(ProgressBar);

impl Spinner {
    pub fn new(global: &GlobalArgs, json: bool) -> Self {
        let visible = !global.quiet && !json && std::io::stdout().is_terminal();
        let bar = if visible {
            ProgressBar::new_spinner()
        } else {
            ProgressBar::hidden()
        };
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        Self(bar)
    }

    pub fn finish(&self) {
        self.0.finish_and_clear();
    }

    /// Prints a line on stdout, the spinner (if shown) out of its way.
    pub fn println(&self, line: &str) {
        self.0.suspend(|| println!("{line}"));
    }
}

impl kiln_train::train::Steps for Spinner {
    fn step(&self, what: &str) {
        self.0.set_message(what.to_owned());
    }
}
