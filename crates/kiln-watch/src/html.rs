//! The monitoring report as one self-contained HTML page.
//!
//! The page opens with no network: the style sheet is inline, every plot is an SVG drawn here,
//! and there is no script, font, image or link from elsewhere. Every string that comes from
//! the report (model, feature and category names, alert messages, notes, flags) is escaped.
//! The look follows the model card's (`kiln-train`'s `card.rs`): the same page, bordered
//! tables and SVG palette.
//!
//! Sections, in order: the header, the summary verdict, alerts, performance over time, drift
//! over time, one section per feature (and the prediction), then latency and door flags.

use std::fmt::Write;

use kiln_core::value::format_timestamp;
use kiln_monitor::{ColumnReport, DriftReport};

use crate::report::{AlertEvent, Distribution, MonitorReport};
use crate::window::WindowReport;

/// The card's palette.
const BLUE: &str = "#4c78a8";
const ORANGE: &str = "#f58518";
const RED: &str = "#e45756";
const GREY: &str = "#888888";
const LIGHT: &str = "#bab0ac";

/// Chart size in pixels (kept modest: the page holds many).
const CHART_W: f64 = 560.0;
const CHART_H: f64 = 180.0;

/// Metrics in the order they are shown; others follow by name.
const METRICS: [&str; 5] = ["mae", "rmse", "accuracy", "f1", "roc_auc"];

/// Shown for a value that is missing or not a number.
const NONE: &str = "–";

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:64rem;margin:2rem auto;padding:0 1rem;color:#222;line-height:1.45}
h1{font-size:1.6rem} h2{font-size:1.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem} h3{font-size:1rem;margin:1.2rem 0 .3rem}
table{border-collapse:collapse;margin:.5rem 0} th,td{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;font-size:.9rem}
th{background:#f5f5f5} svg{display:block;margin:.5rem 0}
.muted{color:#666} .scroll{overflow-x:auto}
.verdict{padding:.4rem .6rem;margin:.5rem 0;border-left:4px solid #999;background:#f7f7f7}
.verdict.bad{border-color:#e45756;background:#fdeeee} .verdict.ok{border-color:#54a24b;background:#eef7ee}
tr.firing td{background:#fdeeee}
table.heat td{text-align:right;font-size:.8rem} table.heat td.hot{background:#f4b6b6} table.heat td.cool{background:#e6f2e6} table.heat td.na{color:#999}
.pair{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start}
";

/// The report as one self-contained HTML page (see the module documentation).
pub fn html(report: &MonitorReport) -> String {
    let title = format!("Monitoring report: {} v{}", report.model, report.version);
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\n\
         <style>\n{STYLE}</style></head><body>\n<h1>{t}</h1>\n",
        t = esc(&title)
    );
    header(&mut out, report);
    summary(&mut out, report);
    alerts(&mut out, &report.alerts);
    performance(&mut out, report);
    drift_over_time(&mut out, report);
    features(&mut out, report);
    operations(&mut out, report);
    out.push_str("</body></html>\n");
    out
}

// ---------------------------------------------------------------------------------------------
// Sections.

/// What was monitored: the model, the range, the windows and the rows behind them.
fn header(out: &mut String, r: &MonitorReport) {
    let mut rows = vec![
        ("Model", format!("{} v{}", r.model, r.version)),
        ("Task", r.task.clone()),
        ("Range", range_text(r.from, r.to)),
        ("Windowing", r.windowing.clone()),
        ("Windows", count(r.windows.len() as u64)),
        ("Generated", format!("{} UTC", time(r.generated_at))),
        ("Reference rows (training)", count(r.reference_rows)),
        ("Validation rows", count(r.validation_rows)),
        ("Predictions in the range", count(r.overall.rows)),
        ("Labelled rows", count(r.overall.labelled_rows)),
    ];
    if r.overall.unreadable_rows > 0 {
        rows.push(("Unreadable logged rows", count(r.overall.unreadable_rows)));
    }
    if r.other_version_rows > 0 {
        rows.push((
            "Predictions by other versions (not in this report)",
            count(r.other_version_rows),
        ));
    }
    key_values(out, &rows);
    let notes: Vec<&String> = r.notes.iter().chain(&r.overall.notes).collect();
    if !notes.is_empty() {
        out.push_str("<h3>Notes</h3>\n<ul>");
        for n in notes {
            let _ = write!(out, "<li>{}</li>", esc(n));
        }
        out.push_str("</ul>\n");
    }
}

/// The verdicts over the whole range: data drift, prediction (and target) drift, performance.
fn summary(out: &mut String, r: &MonitorReport) {
    out.push_str("<h2>Summary</h2>\n");
    dataset_verdict(out, r.overall.drift.as_ref());
    column_verdict(out, "Prediction drift", r.overall.prediction_drift.as_ref());
    if r.overall.target_drift.is_some() {
        column_verdict(out, "Target drift", r.overall.target_drift.as_ref());
    }
    out.push_str("<h3>Performance over the range</h3>\n");
    performance_table(out, &r.overall);
}

/// The dataset drift verdict, with the drifted and the untested inputs named.
fn dataset_verdict(out: &mut String, drift: Option<&DriftReport>) {
    let Some((report, d)) = drift.and_then(|r| r.dataset.as_ref().map(|d| (r, d))) else {
        out.push_str(
            "<p class=\"verdict\"><b>Dataset drift: not tested</b> — no input could be \
             compared with the reference (no predictions in the range?).</p>\n",
        );
        return;
    };
    let _ = writeln!(
        out,
        "<p class=\"verdict {}\"><b>Dataset drift: {}</b> — {} of {} inputs drifted ({}); \
         the dataset drifts at a share of {} or more.</p>",
        if d.drifted { "bad" } else { "ok" },
        if d.drifted { "drifted" } else { "no drift" },
        d.drifted_columns,
        d.columns,
        pct(d.share),
        pct(d.threshold)
    );
    let drifted: Vec<String> = report
        .columns
        .iter()
        .filter(|c| c.drift.as_ref().is_some_and(|d| d.drifted))
        .map(|c| esc(&c.name))
        .collect();
    if !drifted.is_empty() {
        let _ = writeln!(
            out,
            "<p>Drifted inputs: <b>{}</b></p>",
            drifted.join("</b>, <b>")
        );
    }
    let skipped: Vec<String> = report
        .columns
        .iter()
        .filter_map(|c| Some(format!("{} ({})", c.name, c.skipped.as_ref()?)))
        .map(|s| esc(&s))
        .collect();
    if !skipped.is_empty() {
        let _ = writeln!(
            out,
            "<p class=\"muted\">Not tested: {}</p>",
            skipped.join("; ")
        );
    }
}

/// One column's drift verdict in a sentence (`label`: what the column is).
fn column_verdict(out: &mut String, label: &str, column: Option<&ColumnReport>) {
    let (class, verdict, detail) = match column {
        Some(ColumnReport { drift: Some(d), .. }) => (
            if d.drifted { "bad" } else { "ok" },
            if d.drifted { "drifted" } else { "no drift" },
            format!(
                "{} {} against a threshold of {}",
                d.method.display_name(),
                num(d.score),
                num(d.threshold)
            ),
        ),
        Some(c) => (
            "",
            "not tested",
            c.skipped.clone().unwrap_or_else(|| "no result".into()),
        ),
        None => ("", "not tested", "nothing to compare".into()),
    };
    let _ = writeln!(
        out,
        "<p class=\"verdict {class}\"><b>{}: {verdict}</b> — {}.</p>",
        esc(label),
        esc(&detail)
    );
}

/// A window's metrics: reference, realized with its interval, and estimated.
fn performance_table(out: &mut String, w: &WindowReport) {
    let names = metric_names(std::iter::once(w), true);
    if names.is_empty() {
        out.push_str(
            "<p class=\"muted\">No performance metric: no labels came back and no estimate is \
             available.</p>\n",
        );
        return;
    }
    let rows: Vec<Row> = names
        .iter()
        .map(|name| {
            let realized = w.realized(name);
            Row::new(vec![
                name.clone(),
                opt(w.reference.get(name).copied()),
                realized.map_or_else(|| NONE.into(), |m| with_interval(m.value, m.lower, m.upper)),
                realized.map_or_else(|| NONE.into(), |m| count(m.rows)),
                opt(w.estimated.get(name).copied()),
            ])
        })
        .collect();
    table(
        out,
        "",
        &[
            "metric",
            "reference (validation)",
            "realized (95% CI)",
            "labelled rows",
            "estimated",
        ],
        &rows,
    );
}

/// The alert rules' transitions, or that none fired.
fn alerts(out: &mut String, events: &[AlertEvent]) {
    out.push_str("<h2>Alerts</h2>\n");
    if events.is_empty() {
        out.push_str("<p class=\"verdict ok\">No alert fired.</p>\n");
        return;
    }
    let rows: Vec<Row> = events
        .iter()
        .map(|e| {
            let row = Row::new(vec![
                e.rule.clone(),
                e.severity.as_str().into(),
                e.state.into(),
                format!("{} – {}", time(e.window_start), time(e.window_end)),
                opt(e.value),
                opt(e.threshold),
                e.message.clone(),
            ]);
            if e.state == "firing" {
                row.class("firing")
            } else {
                row
            }
        })
        .collect();
    table(
        out,
        "",
        &[
            "rule",
            "severity",
            "state",
            "window (UTC)",
            "value",
            "threshold",
            "message",
        ],
        &rows,
    );
}

/// One line chart per metric: realized (with its interval), estimated, and the reference.
fn performance(out: &mut String, r: &MonitorReport) {
    out.push_str("<h2>Performance over time</h2>\n");
    let labels = window_labels(&r.windows);
    let mut drawn = 0;
    for name in metric_names(&r.windows, false) {
        let realized: Vec<Option<&_>> = r.windows.iter().map(|w| w.realized(&name)).collect();
        let estimated: Vec<Option<f64>> = r
            .windows
            .iter()
            .map(|w| w.estimated.get(&name).copied())
            .collect();
        let reference = r
            .overall
            .reference
            .get(&name)
            .or_else(|| r.windows.iter().find_map(|w| w.reference.get(&name)))
            .copied();
        let chart = LineChart {
            title: &name,
            labels: &labels,
            series: vec![
                Series {
                    name: "realized",
                    color: BLUE,
                    values: realized.iter().map(|m| m.map(|m| m.value)).collect(),
                    intervals: realized
                        .iter()
                        .map(|m| m.map(|m| (m.lower, m.upper)))
                        .collect(),
                },
                Series {
                    name: "estimated",
                    color: ORANGE,
                    values: estimated,
                    intervals: Vec::new(),
                },
            ],
            levels: reference
                .map(|value| Level {
                    name: "reference",
                    color: GREY,
                    value,
                })
                .into_iter()
                .collect(),
            y_range: None,
        };
        if !chart.has_values() {
            continue;
        }
        let _ = writeln!(out, "<h3>{}</h3>\n{}", esc(&name), line_chart(&chart));
        drawn += 1;
    }
    if drawn == 0 {
        out.push_str("<p class=\"muted\">No window has a realized or an estimated metric.</p>\n");
    } else {
        window_caption(out, &r.windows);
    }
}

/// The share of drifted inputs per window, and each input's score per window.
fn drift_over_time(out: &mut String, r: &MonitorReport) {
    out.push_str("<h2>Drift over time</h2>\n");
    let labels = window_labels(&r.windows);
    let threshold = r
        .windows
        .iter()
        .find_map(|w| w.drift.as_ref()?.dataset.map(|d| d.threshold));
    let chart = LineChart {
        title: "share of drifted inputs",
        labels: &labels,
        series: vec![Series {
            name: "share of drifted inputs",
            color: BLUE,
            values: r.windows.iter().map(WindowReport::drift_share).collect(),
            intervals: Vec::new(),
        }],
        levels: threshold
            .map(|value| Level {
                name: "dataset threshold",
                color: RED,
                value,
            })
            .into_iter()
            .collect(),
        y_range: Some((0.0, 1.0)),
    };
    if !chart.has_values() {
        out.push_str("<p class=\"muted\">No window could be tested for drift.</p>\n");
        return;
    }
    out.push_str(&line_chart(&chart));
    out.push('\n');
    window_caption(out, &r.windows);
    drift_heatmap(out, &r.windows);
}

/// Rows are inputs (and the prediction), columns windows; a cell holds the drift score, red
/// when the column drifted.
fn drift_heatmap(out: &mut String, windows: &[WindowReport]) {
    let mut inputs: Vec<&str> = Vec::new();
    for c in windows
        .iter()
        .filter_map(|w| w.drift.as_ref())
        .flat_map(|d| &d.columns)
    {
        if !inputs.contains(&c.name.as_str()) {
            inputs.push(&c.name);
        }
    }
    let prediction = windows.iter().any(|w| w.prediction_drift.is_some());
    if inputs.is_empty() && !prediction {
        return;
    }
    out.push_str("<h3>Drift score per column and window</h3>\n<div class=\"scroll\"><table class=\"heat\"><thead><tr><th>column</th>");
    for (i, w) in windows.iter().enumerate() {
        let _ = write!(
            out,
            "<th title=\"{} – {} UTC\">{}</th>",
            time(w.start),
            time(w.end),
            i + 1
        );
    }
    out.push_str("</tr></thead><tbody>");
    for name in &inputs {
        let _ = write!(out, "<tr><th>{}</th>", esc(name));
        for w in windows {
            let column = w
                .drift
                .as_ref()
                .and_then(|d| d.columns.iter().find(|c| c.name == *name));
            out.push_str(&heat_cell(column));
        }
        out.push_str("</tr>");
    }
    if prediction {
        out.push_str("<tr><th><i>prediction</i></th>");
        for w in windows {
            out.push_str(&heat_cell(w.prediction_drift.as_ref()));
        }
        out.push_str("</tr>");
    }
    out.push_str(
        "</tbody></table></div>\n<p class=\"muted\">Cells show the drift score (a p-value or \
         a distance, per the column's test); red: drifted, green: not drifted, –: not \
         tested.</p>\n",
    );
}

/// One heatmap cell.
fn heat_cell(column: Option<&ColumnReport>) -> String {
    match column {
        Some(ColumnReport { drift: Some(d), .. }) => format!(
            "<td class=\"{}\" title=\"{} {} (threshold {})\">{}</td>",
            if d.drifted { "hot" } else { "cool" },
            esc(d.method.display_name()),
            num(d.score),
            num(d.threshold),
            num(d.score)
        ),
        Some(c) => format!(
            "<td class=\"na\" title=\"{}\">{NONE}</td>",
            esc(c.skipped.as_deref().unwrap_or("not tested"))
        ),
        None => format!("<td class=\"na\">{NONE}</td>"),
    }
}

/// One section per distribution: reference against current shares, and the column's drift.
fn features(out: &mut String, r: &MonitorReport) {
    out.push_str("<h2>Features</h2>\n");
    if r.distributions.is_empty() {
        out.push_str("<p class=\"muted\">No distribution to show.</p>\n");
        return;
    }
    for d in &r.distributions {
        let column = if d.name == "prediction" && r.overall.prediction_drift.is_some() {
            r.overall.prediction_drift.as_ref()
        } else {
            r.overall
                .drift
                .as_ref()
                .and_then(|x| x.columns.iter().find(|c| c.name == d.name))
        };
        let _ = writeln!(
            out,
            "<section><h3>{} <span class=\"muted\">({})</span></h3><div class=\"pair\">{}",
            esc(&d.name),
            esc(d.kind),
            bar_chart(d)
        );
        match column {
            Some(c) => column_result(out, c),
            None => out.push_str("<p class=\"muted\">No drift result for this column.</p>"),
        }
        out.push_str("</div></section>\n");
    }
}

/// A column's drift result over the whole range.
fn column_result(out: &mut String, c: &ColumnReport) {
    let mut rows = Vec::new();
    match &c.drift {
        Some(d) => {
            rows.push((
                "Test",
                format!("{} ({})", d.method.display_name(), d.method.name()),
            ));
            rows.push(("Score", num(d.score)));
            rows.push(("Threshold", num(d.threshold)));
            rows.push(("Drifted", if d.drifted { "yes" } else { "no" }.into()));
        }
        None => rows.push((
            "Not tested",
            c.skipped.clone().unwrap_or_else(|| "no result".into()),
        )),
    }
    rows.push(("Missing (reference)", opt_pct(c.reference_missing_rate)));
    rows.push(("Missing (current)", opt_pct(c.current_missing_rate)));
    if c.new_category_rate.is_some() {
        rows.push(("New categories", opt_pct(c.new_category_rate)));
    }
    if c.out_of_range_rate.is_some() {
        rows.push(("Out of the reference's range", opt_pct(c.out_of_range_rate)));
    }
    key_values(out, &rows);
}

/// Latency per window and the door's flags.
fn operations(out: &mut String, r: &MonitorReport) {
    out.push_str("<h2>Latency and door flags</h2>\n");
    let labels = window_labels(&r.windows);
    let chart = LineChart {
        title: "latency (ms)",
        labels: &labels,
        series: vec![
            Series {
                name: "p50 ms",
                color: BLUE,
                values: r.windows.iter().map(|w| w.latency_p50_ms).collect(),
                intervals: Vec::new(),
            },
            Series {
                name: "p99 ms",
                color: RED,
                values: r.windows.iter().map(|w| w.latency_p99_ms).collect(),
                intervals: Vec::new(),
            },
        ],
        levels: Vec::new(),
        y_range: None,
    };
    if chart.has_values() {
        out.push_str(&line_chart(&chart));
        out.push('\n');
    }
    let mut rows: Vec<Row> = r
        .windows
        .iter()
        .enumerate()
        .map(|(i, w)| window_row((i + 1).to_string(), w))
        .collect();
    rows.push(window_row("all".into(), &r.overall));
    table(
        out,
        "scroll",
        &[
            "window",
            "from (UTC)",
            "to (UTC)",
            "predictions",
            "unreadable",
            "labelled",
            "latency p50 ms",
            "latency p99 ms",
            "flags",
        ],
        &rows,
    );
    out.push_str("<h3>Door flags</h3>\n");
    if r.overall.flags.is_empty() {
        out.push_str("<p class=\"muted\">No door flag raised.</p>\n");
        return;
    }
    let rows: Vec<Row> = r
        .overall
        .flags
        .iter()
        .map(|(flag, n)| {
            let share = (r.overall.rows > 0).then(|| *n as f64 / r.overall.rows as f64);
            Row::new(vec![flag.clone(), count(*n), opt_pct(share)])
        })
        .collect();
    table(
        out,
        "",
        &["flag", "predictions", "share of predictions"],
        &rows,
    );
}

/// A row of the window table.
fn window_row(label: String, w: &WindowReport) -> Row {
    Row::new(vec![
        label,
        time(w.start),
        time(w.end),
        count(w.rows),
        count(w.unreadable_rows),
        count(w.labelled_rows),
        opt(w.latency_p50_ms),
        opt(w.latency_p99_ms),
        count(w.flags.values().sum()),
    ])
}

// ---------------------------------------------------------------------------------------------
// Tables and text.

/// A table row: its cells as text (escaped when written) and an optional CSS class.
struct Row {
    class: Option<&'static str>,
    cells: Vec<String>,
}

impl Row {
    fn new(cells: Vec<String>) -> Self {
        Row { class: None, cells }
    }

    fn class(self, class: &'static str) -> Self {
        Row {
            class: Some(class),
            ..self
        }
    }
}

/// A table with a header row, inside a `<div>` of class `wrap` when one is given.
fn table(out: &mut String, wrap: &str, header: &[&str], rows: &[Row]) {
    if !wrap.is_empty() {
        let _ = write!(out, "<div class=\"{wrap}\">");
    }
    out.push_str("<table><thead><tr>");
    for h in header {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        match row.class {
            Some(c) => {
                let _ = write!(out, "<tr class=\"{c}\">");
            }
            None => out.push_str("<tr>"),
        }
        for c in &row.cells {
            let _ = write!(out, "<td>{}</td>", esc(c));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    if !wrap.is_empty() {
        out.push_str("</div>");
    }
    out.push('\n');
}

/// A two-column table of names and values.
fn key_values(out: &mut String, rows: &[(&str, String)]) {
    out.push_str("<table><tbody>");
    for (k, v) in rows {
        let _ = write!(out, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
    }
    out.push_str("</tbody></table>\n");
}

/// The metric names of the windows (realized and estimated, and the reference's when
/// `with_reference`), the usual ones first.
fn metric_names<'a>(
    windows: impl IntoIterator<Item = &'a WindowReport>,
    with_reference: bool,
) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for w in windows {
        let reference = w.reference.keys().filter(|_| with_reference);
        let all = w
            .realized
            .iter()
            .map(|m| m.name)
            .chain(w.estimated.keys().map(String::as_str));
        for n in all.chain(reference.map(String::as_str)) {
            if !names.iter().any(|x| x == n) {
                names.push(n.to_owned());
            }
        }
    }
    let rank = |n: &str| {
        METRICS
            .iter()
            .position(|m| *m == n)
            .unwrap_or(METRICS.len())
    };
    names.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
    names
}

/// Each window's bounds in words, for tooltips.
fn window_labels(windows: &[WindowReport]) -> Vec<String> {
    windows
        .iter()
        .map(|w| format!("{} – {} UTC", time(w.start), time(w.end)))
        .collect()
}

/// What the x axis of the charts above means.
fn window_caption(out: &mut String, windows: &[WindowReport]) {
    if let (Some(first), Some(last)) = (windows.first(), windows.last()) {
        let _ = writeln!(
            out,
            "<p class=\"muted\">x axis: window 1 to {} ({} to {} UTC); hover a point for \
             its window.</p>",
            windows.len(),
            time(first.start),
            time(last.end)
        );
    }
}

/// HTML-escapes text.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A time as UTC `YYYY-MM-DD HH:MM`.
fn time(micros: i64) -> String {
    let iso = format_timestamp(micros);
    match (iso.get(..10), iso.get(11..16)) {
        (Some(day), Some(minute)) if iso.as_bytes().get(10) == Some(&b'T') => {
            format!("{day} {minute}")
        }
        _ => iso,
    }
}

/// The range asked for, in words.
fn range_text(from: Option<i64>, to: Option<i64>) -> String {
    match (from, to) {
        (None, None) => "all".into(),
        (Some(f), None) => format!("from {} UTC", time(f)),
        (None, Some(t)) => format!("until {} UTC", time(t)),
        (Some(f), Some(t)) => format!("{} to {} UTC", time(f), time(t)),
    }
}

/// A number in few characters.
fn num(v: f64) -> String {
    if !v.is_finite() {
        return NONE.into();
    }
    if v != 0.0 && v.abs() < 1e-3 {
        format!("{v:.2e}")
    } else if v.abs() >= 1000.0 {
        format!("{v:.1}")
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// An optional number.
fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| NONE.into(), num)
}

/// A share as a percentage.
fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{:.1}%", v * 100.0)
    } else {
        NONE.into()
    }
}

/// An optional share as a percentage.
fn opt_pct(v: Option<f64>) -> String {
    v.map_or_else(|| NONE.into(), pct)
}

/// A value with its interval: `0.82 [0.79, 0.85]`.
fn with_interval(value: f64, lower: f64, upper: f64) -> String {
    format!("{} [{}, {}]", num(value), num(lower), num(upper))
}

/// A count with thousands separators.
fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// At most `max` characters of `s` (an ellipsis marks the cut).
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

// ---------------------------------------------------------------------------------------------
// Charts.

/// The opening of a chart's SVG (no namespace attribute: inline SVG in HTML needs none).
fn svg_open(title: &str) -> String {
    format!(
        "<svg width=\"{CHART_W}\" height=\"{CHART_H}\" viewBox=\"0 0 {CHART_W} {CHART_H}\" \
         role=\"img\" font-family=\"sans-serif\"><title>{}</title>",
        esc(title)
    )
}

/// A legend entry: a swatch and a name, from `x`; returns where the next entry starts.
fn legend(s: &mut String, x: f64, name: &str, color: &str, dashed: bool) -> f64 {
    let dash = if dashed {
        " stroke-dasharray=\"5 3\""
    } else {
        ""
    };
    let _ = write!(
        s,
        "<line x1=\"{x:.1}\" y1=\"11\" x2=\"{:.1}\" y2=\"11\" stroke=\"{color}\" \
         stroke-width=\"3\"{dash}/><text x=\"{:.1}\" y=\"15\" font-size=\"11\">{}</text>",
        x + 16.0,
        x + 20.0,
        esc(name)
    );
    x + 34.0 + 6.5 * name.chars().count() as f64
}

/// One line of a chart: a value per window (`None`: no value), and optionally a 95%
/// interval per window.
struct Series<'a> {
    name: &'a str,
    color: &'a str,
    values: Vec<Option<f64>>,
    intervals: Vec<Option<(f64, f64)>>,
}

/// A horizontal dashed line across a chart (a reference value, a threshold).
struct Level<'a> {
    name: &'a str,
    color: &'a str,
    value: f64,
}

/// A chart of values per window.
struct LineChart<'a> {
    title: &'a str,
    /// Each window's bounds in words; the x axis has one slot per label.
    labels: &'a [String],
    series: Vec<Series<'a>>,
    levels: Vec<Level<'a>>,
    /// Fixed y bounds; by default the values' range, padded.
    y_range: Option<(f64, f64)>,
}

impl LineChart<'_> {
    /// Whether any series has a finite value.
    fn has_values(&self) -> bool {
        self.series
            .iter()
            .flat_map(|s| &s.values)
            .any(|v| v.is_some_and(f64::is_finite))
    }

    /// Every finite value drawn: points, interval ends and levels.
    fn finite_values(&self) -> impl Iterator<Item = f64> + '_ {
        let points = self
            .series
            .iter()
            .flat_map(|s| s.values.iter().flatten().copied());
        let ends = self
            .series
            .iter()
            .flat_map(|s| s.intervals.iter().flatten().flat_map(|(a, b)| [*a, *b]));
        let levels = self.levels.iter().map(|l| l.value);
        points.chain(ends).chain(levels).filter(|v| v.is_finite())
    }

    /// The y bounds: fixed, or the values' range padded a little.
    fn bounds(&self) -> (f64, f64) {
        if let Some((lo, hi)) = self.y_range.filter(|(lo, hi)| hi > lo) {
            return (lo, hi);
        }
        let (lo, hi) = self
            .finite_values()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
        if lo > hi {
            return (0.0, 1.0);
        }
        let pad = if hi - lo < 1e-12 {
            (hi.abs() * 0.1).max(0.05)
        } else {
            (hi - lo) * 0.08
        };
        (lo - pad, hi + pad)
    }
}

/// Where a chart's plot area sits and what it spans.
struct Frame {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
    slots: usize,
    lo: f64,
    hi: f64,
}

impl Frame {
    /// The x of slot `i`'s centre.
    fn x(&self, i: usize) -> f64 {
        self.left + (i as f64 + 0.5) * self.width / self.slots as f64
    }

    /// The y of value `v` (clamped to the frame).
    fn y(&self, v: f64) -> f64 {
        self.top + (self.hi - v.clamp(self.lo, self.hi)) / (self.hi - self.lo) * self.height
    }
}

/// A line chart over windows: series as lines with points (intervals as translucent bars),
/// levels as dashed lines, three gridlines and a legend.
fn line_chart(chart: &LineChart) -> String {
    let (lo, hi) = chart.bounds();
    let f = Frame {
        left: 56.0,
        top: 24.0,
        width: CHART_W - 56.0 - 12.0,
        height: CHART_H - 24.0 - 24.0,
        slots: chart.labels.len().max(1),
        lo,
        hi,
    };
    let mut s = svg_open(chart.title);
    for k in 0..3 {
        let v = lo + (hi - lo) * k as f64 / 2.0;
        let _ = write!(
            s,
            "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#e5e5e5\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\" fill=\"#555\">{}</text>",
            f.left,
            f.left + f.width,
            f.left - 4.0,
            f.y(v) + 3.5,
            num(v),
            y = f.y(v)
        );
    }
    let step = f.slots.div_ceil(12);
    for i in (0..chart.labels.len()).step_by(step) {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\" fill=\"#555\">{}</text>",
            f.x(i),
            f.top + f.height + 14.0,
            i + 1
        );
    }
    for l in chart.levels.iter().filter(|l| l.value.is_finite()) {
        let _ = write!(
            s,
            "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{}\" \
             stroke-width=\"1.5\" stroke-dasharray=\"5 3\"><title>{}: {}</title></line>",
            f.left,
            f.left + f.width,
            l.color,
            esc(l.name),
            num(l.value),
            y = f.y(l.value)
        );
    }
    for series in &chart.series {
        draw_series(&mut s, &f, series, chart.labels);
    }
    let mut x = f.left;
    for series in &chart.series {
        x = legend(&mut s, x, series.name, series.color, false);
    }
    for l in &chart.levels {
        x = legend(&mut s, x, l.name, l.color, true);
    }
    s.push_str("</svg>");
    s
}

/// One series: interval bars, the line through consecutive values, and a point per value.
fn draw_series(s: &mut String, f: &Frame, series: &Series, labels: &[String]) {
    for (i, iv) in series.intervals.iter().enumerate() {
        if let Some((a, b)) = iv.filter(|(a, b)| a.is_finite() && b.is_finite()) {
            let _ = write!(
                s,
                "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{}\" \
                 stroke-opacity=\".3\" stroke-width=\"7\"/>",
                f.y(a),
                f.y(b),
                series.color,
                x = f.x(i)
            );
        }
    }
    let mut run: Vec<String> = Vec::new();
    for (i, v) in series.values.iter().enumerate() {
        match v.filter(|v| v.is_finite()) {
            Some(v) => run.push(format!("{:.1},{:.1}", f.x(i), f.y(v))),
            None => polyline(s, &mut run, series.color),
        }
    }
    polyline(s, &mut run, series.color);
    for (i, v) in series.values.iter().enumerate() {
        let Some(v) = v.filter(|v| v.is_finite()) else {
            continue;
        };
        let interval = match series.intervals.get(i).copied().flatten() {
            Some((a, b)) => format!(" [{}, {}]", num(a), num(b)),
            None => String::new(),
        };
        let _ = write!(
            s,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{}\"><title>window {} ({}): {} {}{}</title></circle>",
            f.x(i),
            f.y(v),
            series.color,
            i + 1,
            esc(labels.get(i).map_or("", String::as_str)),
            esc(series.name),
            num(v),
            interval
        );
    }
}

/// Draws the points gathered so far as one line (when there are two or more) and clears them.
fn polyline(s: &mut String, run: &mut Vec<String>, color: &str) {
    if run.len() >= 2 {
        let _ = write!(
            s,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"/>",
            run.join(" ")
        );
    }
    run.clear();
}

/// Reference and current shares per bin, side by side, with a legend.
fn bar_chart(d: &Distribution) -> String {
    let (left, top, bottom) = (44.0, 24.0, 30.0);
    let width = CHART_W - left - 8.0;
    let height = CHART_H - top - bottom;
    let mut s = svg_open(&format!("{}: reference and current shares", d.name));
    let x = legend(&mut s, left, "reference", LIGHT, false);
    legend(&mut s, x, "current", BLUE, false);
    let n = d.bins.len();
    if n == 0 {
        let _ = write!(
            s,
            "<text x=\"{left}\" y=\"{:.1}\" font-size=\"11\" fill=\"#555\">no values</text></svg>",
            top + height / 2.0
        );
        return s;
    }
    let share = |v: &[f64], i: usize| v.get(i).copied().filter(|v| v.is_finite()).unwrap_or(0.0);
    let max = (0..n)
        .flat_map(|i| [share(&d.reference, i), share(&d.current, i)])
        .fold(0.0f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let base = top + height;
    let _ = write!(
        s,
        "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{base}\" y2=\"{base}\" stroke=\"#999\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\" fill=\"#555\">{}</text>\
         <text x=\"{:.1}\" y=\"{base}\" font-size=\"10\" text-anchor=\"end\" fill=\"#555\">0</text>",
        left + width,
        left - 4.0,
        top + 4.0,
        pct(max),
        left - 4.0
    );
    let group = width / n as f64;
    let bar = (group * 0.4).max(0.5);
    for i in 0..n {
        let (r, c) = (share(&d.reference, i), share(&d.current, i));
        let x0 = left + i as f64 * group + group * 0.1;
        let label = d.bins.get(i).map_or("", String::as_str);
        for (k, (v, color)) in [(r, LIGHT), (c, BLUE)].into_iter().enumerate() {
            let h = v / max * height;
            let _ = write!(
                s,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{h:.1}\" fill=\"{color}\">\
                 <title>{}: reference {}, current {}</title></rect>",
                x0 + k as f64 * bar,
                base - h,
                esc(label),
                pct(r),
                pct(c)
            );
        }
    }
    bin_labels(&mut s, d, left, group, base + 14.0);
    s.push_str("</svg>");
    s
}

/// The x labels of a distribution chart: a few edges of numeric bins, or the categories
/// (shortened, thinned out when many).
fn bin_labels(s: &mut String, d: &Distribution, left: f64, group: f64, y: f64) {
    let n = d.bins.len();
    match &d.edges {
        Some(edges) if edges.len() == n + 1 => {
            let step = n.div_ceil(5).max(1);
            for (i, e) in edges
                .iter()
                .enumerate()
                .filter(|(i, _)| i % step == 0 || *i == n)
            {
                let _ = write!(
                    s,
                    "<text x=\"{:.1}\" y=\"{y:.1}\" font-size=\"9\" text-anchor=\"middle\" fill=\"#555\">{}</text>",
                    left + i as f64 * group,
                    num(*e)
                );
            }
        }
        _ => {
            let step = n.div_ceil(10).max(1);
            let chars = ((group * step as f64 / 6.0) as usize).clamp(3, 16);
            for (i, label) in d.bins.iter().enumerate().step_by(step) {
                let _ = write!(
                    s,
                    "<text x=\"{:.1}\" y=\"{y:.1}\" font-size=\"9\" text-anchor=\"middle\" fill=\"#555\">{}</text>",
                    left + (i as f64 + 0.5) * group,
                    esc(&truncate(label, chars))
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kiln_monitor::performance::RealizedMetric;
    use kiln_monitor::{
        CategoricalCounts, ColumnSummary, DriftSettings, NumericCounts, TableSummary, drift_report,
    };

    use super::*;
    use crate::report::distribution;
    use crate::rules::Severity;

    /// A hostile string: markup and an ampersand.
    const HOSTILE: &str = "<script>alert('x')</script> & co";
    const HOUR: i64 = 3_600_000_000;

    fn numeric(values: &[f64]) -> ColumnSummary {
        ColumnSummary::Numeric(NumericCounts::from_values(values))
    }

    fn categorical(labels: &[&str]) -> ColumnSummary {
        ColumnSummary::Categorical(CategoricalCounts::from_values(
            labels.iter().map(|s| Some(*s)),
        ))
    }

    /// Inputs: `temperature` (shifted by `shift`), a categorical input with a hostile name
    /// and category (more of it as `shift` grows), and a steady `hour`.
    fn inputs(shift: f64) -> TableSummary {
        let temperature: Vec<f64> = (0..200).map(|i| i as f64 * 0.5 + shift).collect();
        let hostile = (shift / 10.0) as usize;
        let mut labels = Vec::new();
        for i in 0..200 {
            labels.push(match i % (3 + hostile) {
                0 => "a",
                1 => "b",
                _ => "<script>&",
            });
        }
        let hour: Vec<f64> = (0..200).map(|i| (i % 24) as f64).collect();
        TableSummary::from_columns(
            200,
            vec![
                ("temperature".into(), numeric(&temperature)),
                (HOSTILE.into(), categorical(&labels)),
                ("hour".into(), numeric(&hour)),
            ],
        )
    }

    fn predictions(shift: f64) -> ColumnSummary {
        numeric(
            &(0..200)
                .map(|i| (i % 40) as f64 + shift)
                .collect::<Vec<_>>(),
        )
    }

    fn prediction_drift(shift: f64) -> Option<ColumnReport> {
        let table =
            |s: ColumnSummary| TableSummary::from_columns(200, vec![("prediction".into(), s)]);
        let report = drift_report(
            &table(predictions(0.0)),
            &table(predictions(shift)),
            &DriftSettings::default(),
        );
        report.ok()?.columns.pop()
    }

    /// A window with nothing in it.
    fn empty_window(start: i64, end: i64) -> WindowReport {
        WindowReport {
            start,
            end,
            rows: 0,
            unreadable_rows: 0,
            drift: None,
            prediction_drift: None,
            target_drift: None,
            labelled_rows: 0,
            realized: Vec::new(),
            estimated: BTreeMap::new(),
            reference: BTreeMap::new(),
            latency_p50_ms: None,
            latency_p99_ms: None,
            flags: BTreeMap::new(),
            notes: Vec::new(),
        }
    }

    /// A window of 200 predictions whose inputs moved by `shift`.
    fn window(start: i64, end: i64, shift: f64, labelled: bool) -> WindowReport {
        let drift = drift_report(&inputs(0.0), &inputs(shift), &DriftSettings::default()).ok();
        let mut w = empty_window(start, end);
        w.rows = 200;
        w.drift = drift;
        w.prediction_drift = prediction_drift(shift);
        w.reference = BTreeMap::from([("mae".into(), 1.5), ("rmse".into(), 2.0)]);
        w.estimated = BTreeMap::from([("mae".into(), 1.6 + shift / 100.0)]);
        if labelled {
            w.labelled_rows = 50;
            w.realized.push(RealizedMetric {
                name: "mae",
                value: 1.7 + shift / 50.0,
                lower: 1.4,
                upper: 2.4,
                rows: 50,
            });
        }
        w.latency_p50_ms = Some(2.0);
        w.latency_p99_ms = Some(9.5 + shift / 10.0);
        w.flags = BTreeMap::from([(format!("unknown_category:{HOSTILE}"), 3)]);
        w
    }

    fn sample_report() -> MonitorReport {
        let windows = vec![
            window(0, HOUR, 0.0, true),
            window(HOUR, 2 * HOUR, 30.0, false),
            window(2 * HOUR, 3 * HOUR, 60.0, true),
        ];
        let mut overall = window(0, 3 * HOUR, 30.0, true);
        overall.rows = 600;
        let reference = inputs(0.0);
        let current = inputs(30.0);
        let mut distributions: Vec<Distribution> = reference
            .columns()
            .iter()
            .filter_map(|(name, r)| distribution(name, r, current.column(name)?))
            .collect();
        distributions.extend(distribution(
            "prediction",
            &predictions(0.0),
            &predictions(30.0),
        ));
        MonitorReport {
            model: format!("bikes {HOSTILE}"),
            version: 3,
            task: "regression".into(),
            primary_metric: "mae",
            from: Some(0),
            to: Some(3 * HOUR),
            generated_at: 1_700_000_000_000_000,
            windowing: "hourly windows".into(),
            reference_rows: 12_000,
            validation_rows: 3_000,
            windows,
            overall,
            distributions,
            alerts: vec![AlertEvent {
                rule: HOSTILE.into(),
                severity: Severity::Critical,
                state: "firing",
                window_start: HOUR,
                window_end: 2 * HOUR,
                value: Some(0.67),
                threshold: Some(0.5),
                message: format!("drift share on {HOSTILE}"),
            }],
            other_version_rows: 42,
            notes: vec![format!("note about {HOSTILE}")],
        }
    }

    fn empty_report() -> MonitorReport {
        MonitorReport {
            model: "bikes".into(),
            version: 1,
            task: "binary".into(),
            primary_metric: "accuracy",
            from: None,
            to: None,
            generated_at: 0,
            windowing: "daily windows".into(),
            reference_rows: 0,
            validation_rows: 0,
            windows: Vec::new(),
            overall: empty_window(0, 0),
            distributions: Vec::new(),
            alerts: Vec::new(),
            other_version_rows: 0,
            notes: Vec::new(),
        }
    }

    #[test]
    fn escapes_every_report_string() {
        let page = html(&sample_report());
        assert!(!page.contains("<script"), "unescaped markup in the page");
        assert!(page.contains("&lt;script&gt;"));
        assert!(
            page.contains("&lt;script&gt;&amp;"),
            "the hostile category is escaped"
        );
        assert!(!page.contains(" & co"), "a bare ampersand from the report");
    }

    #[test]
    fn page_is_self_contained_and_complete() {
        let report = sample_report();
        let page = html(&report);
        assert!(!page.contains("http://") && !page.contains("https://"));
        assert!(!page.contains("<script") && !page.contains("<link") && !page.contains("<img"));
        assert!(page.matches("<svg").count() >= report.distributions.len() + 3);
        assert!(!page.contains("NaN"));

        let drifted: Vec<&str> = report
            .overall
            .drift
            .iter()
            .flat_map(|d| &d.columns)
            .filter(|c| c.drift.as_ref().is_some_and(|d| d.drifted))
            .map(|c| c.name.as_str())
            .collect();
        assert!(
            drifted.contains(&"temperature"),
            "the test data should drift"
        );
        for name in drifted {
            assert!(page.contains(&esc(name)), "{name} missing");
        }
        assert!(page.contains("Dataset drift: drifted"));
        assert!(page.contains("Predictions by other versions"));
        assert!(!page.contains("No alert fired"));

        let at = |text: &str| page.find(text).unwrap_or_else(|| panic!("{text} missing"));
        let order = [
            "<h1>",
            "<h2>Summary",
            "<h2>Alerts",
            "<h2>Performance over time",
            "<h2>Drift over time",
            "<h2>Features",
            "<h2>Latency and door flags",
        ];
        for pair in order.windows(2) {
            assert!(at(pair[0]) < at(pair[1]), "{} after {}", pair[0], pair[1]);
        }
        for d in &report.distributions {
            assert!(page.contains(&format!("<h3>{} <span", esc(&d.name))));
        }
    }

    #[test]
    fn empty_report_renders_without_panicking() {
        let page = html(&empty_report());
        assert!(page.contains("No alert fired"));
        assert!(page.contains("Dataset drift: not tested"));
        assert!(page.contains("<td>all</td>"));
        assert!(page.ends_with("</html>\n"));
        assert!(!page.contains("NaN") && !page.contains("<script"));
    }

    #[test]
    fn degenerate_values_render_without_panicking() {
        let mut report = empty_report();
        let mut w = empty_window(0, HOUR);
        w.realized.push(RealizedMetric {
            name: "accuracy",
            value: f64::NAN,
            lower: f64::NAN,
            upper: f64::NAN,
            rows: 0,
        });
        w.estimated.insert("accuracy".into(), 0.9);
        w.latency_p50_ms = Some(f64::INFINITY);
        report.windows.push(w.clone());
        report.overall = w;
        report.distributions.push(Distribution {
            name: "empty".into(),
            kind: "numeric",
            bins: Vec::new(),
            edges: Some(vec![0.0]),
            reference: Vec::new(),
            current: Vec::new(),
        });
        report.distributions.push(Distribution {
            name: "lopsided".into(),
            kind: "categorical",
            bins: vec!["a".into(), "b".into()],
            edges: None,
            reference: vec![f64::NAN],
            current: vec![0.0, 0.0],
        });
        let page = html(&report);
        assert!(!page.contains("NaN") && !page.contains("inf\""));
        assert!(page.matches("<svg").count() >= 2);
    }

    #[test]
    fn times_are_utc_minutes() {
        assert_eq!(time(0), "1970-01-01 00:00");
        assert_eq!(time(1_700_000_000_000_000), "2023-11-14 22:13");
        assert_eq!(range_text(None, None), "all");
        assert_eq!(
            range_text(Some(0), Some(HOUR)),
            "1970-01-01 00:00 to 1970-01-01 01:00 UTC"
        );
    }

    #[test]
    fn numbers_and_counts_are_short() {
        assert_eq!(count(0), "0");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(num(0.25), "0.25");
        assert_eq!(num(2.0), "2");
        assert_eq!(num(f64::NAN), NONE);
        assert_eq!(num(0.00001234), "1.23e-5");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }
}
