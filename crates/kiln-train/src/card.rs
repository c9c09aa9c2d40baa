//! Model cards: what a model is for, what it learned from, how well it does (overall, against
//! the baselines and per slice), what drives it, what was never tested, and where it came from.
//!
//! The card is built once as a list of sections made of simple blocks, then written either as
//! Markdown or as one self-contained HTML file (inline CSS, plots as inline SVG, no scripts, no
//! external resources), so both formats always say the same thing. Everything comes from the
//! model artifact and the registry, so a card can be regenerated at any time.

use std::fmt::Write;

use kiln_model::artifact::ModelArtifact;
use kiln_model::evaluate::{TargetSummary, lower_is_better};
use kiln_model::features::ColumnTransform;
use kiln_model::learner::{Fitted, Task};
use kiln_store::ModelVersion;

/// What a card is made from.
pub struct CardInput<'a> {
    pub version: &'a ModelVersion,
    pub artifact: &'a ModelArtifact,
    /// Aliases pointing at this version.
    pub aliases: &'a [String],
}

enum Block {
    Text(String),
    List(Vec<String>),
    Table {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    /// A plot: only in HTML.
    Svg(String),
    Code(String),
}

struct Section {
    title: String,
    blocks: Vec<Block>,
}

fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    if v.abs() >= 1000.0 {
        format!("{v:.1}")
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

fn task_text(task: Task, classes: &[String]) -> String {
    match task {
        Task::Regression => "regression".into(),
        Task::Binary => format!("binary classification ({})", classes.join(" / ")),
        Task::Multiclass { classes: k } => format!("{k}-class classification"),
    }
}

fn learner_text(m: &Fitted) -> String {
    match m {
        Fitted::Gbdt {
            params, boosters, ..
        } => format!(
            "gradient-boosted trees ({} rounds, learning rate {}, depth {}, {} booster{})",
            params.iterations,
            params.learning_rate,
            params.max_depth,
            boosters.len(),
            if boosters.len() == 1 {
                ""
            } else {
                "s, one per class"
            }
        ),
        Fitted::Linear { l2, task, .. } => match task {
            Task::Regression => format!("ridge regression (l2 {l2}) on standardized features"),
            _ => format!("logistic regression (l2 {l2}) on standardized features"),
        },
        Fitted::Baseline { .. } => "the trivial baseline".into(),
        Fitted::Onnx { onnx, .. } => format!(
            "a model trained elsewhere, imported as ONNX ({} KiB) and run by Kiln",
            onnx.len().div_ceil(1024)
        ),
    }
}

fn handling(t: &ColumnTransform) -> String {
    match t {
        ColumnTransform::Numeric {
            impute,
            missing_indicator,
        } => match impute {
            None => "value as is; missing values routed by the trees".into(),
            Some(v) => format!(
                "missing → median {}{}",
                fmt_num(*v),
                if *missing_indicator {
                    ", plus a missing-indicator column"
                } else {
                    ""
                }
            ),
        },
        ColumnTransform::Ordinal { codes } => format!(
            "{} categories coded by their mean target in training; unseen or missing → missing",
            codes.len()
        ),
        ColumnTransform::OneHot { categories } => format!(
            "one-hot over the {} most frequent training categories; unseen or missing → all zeros",
            categories.len()
        ),
        ColumnTransform::Boolean { impute } => match impute {
            None => "0/1; missing routed by the trees".into(),
            Some(v) => format!("0/1; missing → {}", fmt_num(*v)),
        },
        ColumnTransform::Temporal { timestamp, .. } => format!(
            "expanded to {}day of week, month, day of year, is-weekend",
            if *timestamp { "hour, " } else { "" }
        ),
        ColumnTransform::Dropped { reason } => format!("not used ({reason})"),
    }
}

fn build(input: &CardInput) -> (String, Vec<Section>) {
    let a = input.artifact;
    let v = input.version;
    let e = &a.evaluation;
    let l = &a.lineage;
    let title = format!("{}@{}", v.model, v.version);
    let mut sections = Vec::new();

    let used: Vec<&str> = a
        .pipeline
        .columns
        .iter()
        .filter(|c| !matches!(c.transform, ColumnTransform::Dropped { .. }))
        .map(|c| c.name.as_str())
        .collect();
    let mut purpose = vec![Block::Text(format!(
        "Predicts `{}` ({}) from {} input column{} of the dataset `{}`, with {}.",
        a.target,
        task_text(a.task, &a.classes),
        used.len(),
        if used.len() == 1 { "" } else { "s" },
        l.dataset,
        learner_text(&a.model)
    ))];
    let mut facts = vec![
        format!(
            "Registered {} as version {} of `{}`",
            kiln_core::format_micros(v.created_at),
            v.version,
            v.model
        ),
        format!("Artifact `{}`", v.artifact_id),
    ];
    if !input.aliases.is_empty() {
        facts.push(format!("Aliases: {}", input.aliases.join(", ")));
    }
    purpose.push(Block::List(facts));
    sections.push(Section {
        title: "Purpose".into(),
        blocks: purpose,
    });

    // Data.
    let d = &e.data;
    let range = |t: &Option<(String, String)>| match t {
        Some((x, y)) => format!(", {x} .. {y}"),
        None => String::new(),
    };
    let mut data = vec![Block::List(vec![
        format!(
            "Snapshot `{}@{}` (`{}`): {} rows{}",
            l.dataset,
            l.dataset_version,
            l.snapshot_id,
            d.rows,
            if d.missing_target > 0 {
                format!(
                    ", of which {} without a target (left out)",
                    d.missing_target
                )
            } else {
                String::new()
            }
        ),
        format!("Split: {}", d.split),
        format!("Training rows: {}{}", d.train_rows, range(&d.train_time)),
        format!("Validation rows: {}{}", d.valid_rows, range(&d.valid_time)),
    ])];
    match &d.target {
        TargetSummary::Numeric {
            min,
            max,
            mean,
            quantiles,
        } => {
            let mut header = vec!["min".to_owned()];
            let mut row = vec![fmt_num(*min)];
            for (q, x) in quantiles {
                header.push(format!("p{:.0}", q * 100.0));
                row.push(fmt_num(*x));
            }
            header.extend(["max".to_owned(), "mean".to_owned()]);
            row.extend([fmt_num(*max), fmt_num(*mean)]);
            data.push(Block::Text(format!(
                "Distribution of `{}` in the training rows:",
                a.target
            )));
            data.push(Block::Table {
                header,
                rows: vec![row],
            });
            if let Some(hist) = target_histogram(a) {
                data.push(Block::Svg(hist));
            }
        }
        TargetSummary::Classes { counts } => {
            data.push(Block::Text(format!(
                "Classes of `{}` in the training rows:",
                a.target
            )));
            let total: u64 = counts.iter().map(|(_, n)| n).sum::<u64>().max(1);
            data.push(Block::Table {
                header: vec!["class".into(), "rows".into(), "share".into()],
                rows: counts
                    .iter()
                    .map(|(c, n)| {
                        vec![
                            c.clone(),
                            n.to_string(),
                            format!("{:.1}%", *n as f64 * 100.0 / total as f64),
                        ]
                    })
                    .collect(),
            });
            data.push(Block::Svg(bar_chart(
                &counts
                    .iter()
                    .map(|(c, n)| (c.clone(), *n as f64, None))
                    .collect::<Vec<_>>(),
                "rows",
            )));
        }
    }
    sections.push(Section {
        title: "Data".into(),
        blocks: data,
    });

    // Features.
    let rows: Vec<Vec<String>> = a
        .pipeline
        .columns
        .iter()
        .map(|c| vec![c.name.clone(), c.ftype.to_string(), handling(&c.transform)])
        .collect();
    sections.push(Section {
        title: "Features".into(),
        blocks: vec![
            Block::Text(format!(
                "The feature pipeline was fitted on the training rows only and ships inside the model; training, batch scoring and serving run the same code. It produces {} model features.",
                a.pipeline.features.len()
            )),
            Block::Table {
                header: vec!["column".into(), "type".into(), "handling".into()],
                rows,
            },
        ],
    });

    // Metrics.
    let contenders: Vec<&str> = ["model", "linear", "baseline"]
        .into_iter()
        .filter(|c| e.metrics.contains_key(*c))
        .collect();
    let mut names: Vec<&String> = e
        .metrics
        .get("model")
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    names.sort_by_key(|n| (**n != e.primary, (*n).clone()));
    let mut header = vec!["metric".to_owned()];
    header.extend(contenders.iter().map(|c| (*c).to_owned()));
    let metric_rows: Vec<Vec<String>> = names
        .iter()
        .map(|n| {
            let mut r = vec![format!(
                "{}{}",
                n,
                if lower_is_better(n) { " ↓" } else { " ↑" }
            )];
            for c in &contenders {
                r.push(
                    e.metrics
                        .get(*c)
                        .and_then(|m| m.get(*n))
                        .map(|x| fmt_num(*x))
                        .unwrap_or_else(|| "-".into()),
                );
            }
            r
        })
        .collect();
    let mut metric_blocks = vec![
        Block::Text(format!(
            "On the {} validation rows. `linear` is a {} on the same features; `baseline` predicts {} for every row. ↓: lower is better, ↑: higher is better. Models are compared by `{}`.",
            d.valid_rows,
            if a.task == Task::Regression {
                "ridge regression"
            } else {
                "logistic regression"
            },
            if a.task == Task::Regression {
                "the training mean"
            } else {
                "the training class shares"
            },
            e.primary
        )),
        Block::Table {
            header,
            rows: metric_rows,
        },
    ];
    let primary_bars: Vec<(String, f64, Option<f64>)> = contenders
        .iter()
        .filter_map(|c| {
            e.metrics
                .get(*c)
                .and_then(|m| m.get(&e.primary))
                .map(|x| ((*c).to_owned(), *x, None))
        })
        .collect();
    metric_blocks.push(Block::Svg(bar_chart(&primary_bars, &e.primary)));
    if let Some(cv) = &e.cross_validation {
        metric_blocks.push(Block::Text(format!(
            "Cross-validation of the same recipe ({} folds): {} {} ± {} (values {}).",
            cv.folds,
            cv.metric,
            fmt_num(cv.mean),
            fmt_num(cv.std),
            cv.values
                .iter()
                .map(|x| fmt_num(*x))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if let Some(c) = &e.calibration {
        metric_blocks.push(Block::Text(
            "Calibration (share of positives against the mean predicted probability, 10 bins):"
                .into(),
        ));
        metric_blocks.push(Block::Svg(calibration_plot(&c.prob_pred, &c.prob_true)));
    }
    sections.push(Section {
        title: "Metrics".into(),
        blocks: metric_blocks,
    });

    // Slices.
    let mut slice_blocks = Vec::new();
    if e.slices.is_empty() {
        slice_blocks.push(Block::Text(
            "No categorical input had a value with enough validation rows to measure.".into(),
        ));
    } else {
        slice_blocks.push(Block::Text(format!(
            "`{}` of the model and the baseline on the validation rows of each value of each categorical input (values with at least {} rows).",
            e.primary,
            kiln_model::evaluate::MIN_SLICE_ROWS
        )));
        slice_blocks.push(Block::Table {
            header: vec![
                "column".into(),
                "value".into(),
                "rows".into(),
                format!("model {}", e.primary),
                format!("baseline {}", e.primary),
            ],
            rows: e
                .slices
                .iter()
                .map(|s| {
                    vec![
                        s.column.clone(),
                        s.value.clone(),
                        s.rows.to_string(),
                        fmt_num(s.model),
                        fmt_num(s.baseline),
                    ]
                })
                .collect(),
        });
        slice_blocks.push(Block::Svg(bar_chart(
            &e.slices
                .iter()
                .map(|s| {
                    (
                        format!("{}={}", s.column, s.value),
                        s.model,
                        Some(s.baseline),
                    )
                })
                .collect::<Vec<_>>(),
            &format!("{} (bar: model, tick: baseline)", e.primary),
        )));
    }
    sections.push(Section {
        title: "Metrics per slice".into(),
        blocks: slice_blocks,
    });

    // Importance.
    let top: Vec<&(String, f64)> = e.importance.iter().take(20).collect();
    sections.push(Section {
        title: "Feature importance".into(),
        blocks: if top.is_empty() {
            vec![Block::Text("Not available for this model.".into())]
        } else {
            vec![
                Block::Text(match a.model {
                    Fitted::Linear { .. } => {
                        "Share of the total absolute weight on standardized features.".into()
                    }
                    _ => "Share of the total split gain across all trees.".into(),
                }),
                Block::Table {
                    header: vec!["feature".into(), "share".into()],
                    rows: top
                        .iter()
                        .map(|(f, s)| vec![f.clone(), format!("{:.1}%", s * 100.0)])
                        .collect(),
                },
                Block::Svg(bar_chart(
                    &top.iter()
                        .map(|(f, s)| (f.clone(), s * 100.0, None))
                        .collect::<Vec<_>>(),
                    "% of importance",
                )),
            ]
        },
    });

    // Limitations.
    let mut lim = e.limitations.clone();
    lim.push(format!(
        "Measured on data up to the snapshot `{}@{}`; the world the model serves may have changed since. Kiln's monitoring compares live traffic with this model's reference profile.",
        l.dataset, l.dataset_version
    ));
    sections.push(Section {
        title: "Known limitations".into(),
        blocks: vec![Block::List(lim)],
    });

    // Lineage.
    let params = serde_json::to_string_pretty(&l.params).unwrap_or_default();
    sections.push(Section {
        title: "Lineage".into(),
        blocks: vec![
            Block::List(vec![
                format!("Dataset `{}` version {}, snapshot `{}`", l.dataset, l.dataset_version, l.snapshot_id),
                format!(
                    "Training run: {}",
                    v.run_id.as_deref().unwrap_or("none (imported model)")
                ),
                format!("Seed: {}", l.seed),
                format!("Kiln {}; source revision {}", l.kiln_version, l.code_version.as_deref().unwrap_or("unknown (not trained inside a git checkout)")),
                format!("Model format version {}", a.format_version),
            ]),
            Block::Text("Training settings:".into()),
            Block::Code(params),
            Block::Text(if matches!(a.model, Fitted::Onnx { .. }) {
                "Imported: the settings above name the ONNX file (and its BLAKE3 hash) and the input encoding; the split is the one the model was evaluated on.".to_owned()
            } else {
                format!(
                    "Reproduce: `kiln train --dataset {}@{} --set seed={}` with these settings gives a byte-identical artifact.",
                    l.dataset, l.dataset_version, l.seed
                )
            }),
        ],
    });
    (title, sections)
}

/// A histogram of the training target from the reference profile (regression).
fn target_histogram(a: &ModelArtifact) -> Option<String> {
    let col = a.reference.features.column(&a.target)?;
    let kiln_core::profile::ColumnStats::Numeric(n) = &col.stats else {
        return None;
    };
    let (lo, hi) = (n.min?, n.max?);
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
        return None;
    }
    let bins = 20;
    let edges: Vec<f64> = (0..=bins)
        .map(|i| lo + (hi - lo) * i as f64 / bins as f64)
        .collect();
    let counts = n.histogram(&edges);
    let bars: Vec<(String, f64, Option<f64>)> = counts
        .iter()
        .enumerate()
        .map(|(i, c)| (fmt_num(edges[i]), *c as f64, None))
        .collect();
    Some(column_chart(
        &bars,
        &format!("training rows per `{}` bin", a.target),
    ))
}

/// HTML-escapes text.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Horizontal bars, one per label; an optional second value is drawn as a tick.
fn bar_chart(items: &[(String, f64, Option<f64>)], unit: &str) -> String {
    let row = 18.0;
    let label_w = 190.0;
    let plot_w = 360.0;
    let h = items.len() as f64 * row + 30.0;
    let max = items
        .iter()
        .flat_map(|(_, v, t)| [Some(*v), *t])
        .flatten()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{h}" role="img"><title>{}</title>"#,
        label_w + plot_w + 70.0,
        esc(unit)
    );
    for (i, (label, v, tick)) in items.iter().enumerate() {
        let y = i as f64 * row + 4.0;
        let w = (v.max(0.0) / max) * plot_w;
        let _ = write!(
            s,
            r##"<text x="{}" y="{}" text-anchor="end" font-size="11">{}</text><rect x="{label_w}" y="{y}" width="{w:.1}" height="{}" fill="#4c78a8"/><text x="{}" y="{}" font-size="10">{}</text>"##,
            label_w - 6.0,
            y + 12.0,
            esc(label),
            row - 5.0,
            label_w + w + 4.0,
            y + 12.0,
            esc(&fmt_num(*v))
        );
        if let Some(t) = tick.filter(|t| t.is_finite()) {
            let x = label_w + (t.max(0.0) / max) * plot_w;
            let _ = write!(
                s,
                r##"<line x1="{x:.1}" x2="{x:.1}" y1="{}" y2="{}" stroke="#e45756" stroke-width="2"/>"##,
                y - 1.0,
                y + row - 2.0
            );
        }
    }
    let _ = write!(
        s,
        r##"<text x="{label_w}" y="{}" font-size="10" fill="#555">{}</text></svg>"##,
        h - 6.0,
        esc(unit)
    );
    s
}

/// Vertical bars (a histogram).
fn column_chart(items: &[(String, f64, Option<f64>)], caption: &str) -> String {
    let (w, h, pad) = (560.0, 160.0, 24.0);
    let bw = (w - 2.0 * pad) / items.len().max(1) as f64;
    let max = items
        .iter()
        .map(|(_, v, _)| *v)
        .fold(0.0f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{}" role="img"><title>{}</title>"#,
        h + 30.0,
        esc(caption)
    );
    for (i, (label, v, _)) in items.iter().enumerate() {
        let bh = v / max * (h - pad);
        let x = pad + i as f64 * bw;
        let _ = write!(
            s,
            r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="#4c78a8"><title>{} : {}</title></rect>"##,
            h - bh,
            (bw - 2.0).max(1.0),
            esc(label),
            fmt_num(*v)
        );
        if i % 4 == 0 {
            let _ = write!(
                s,
                r#"<text x="{x:.1}" y="{}" font-size="9">{}</text>"#,
                h + 12.0,
                esc(label)
            );
        }
    }
    let _ = write!(
        s,
        r##"<text x="{pad}" y="{}" font-size="10" fill="#555">{}</text></svg>"##,
        h + 26.0,
        esc(caption)
    );
    s
}

/// A reliability diagram with the diagonal.
fn calibration_plot(pred: &[f64], truth: &[f64]) -> String {
    let (size, pad) = (260.0, 30.0);
    let sc = |v: f64| pad + v.clamp(0.0, 1.0) * (size - 2.0 * pad);
    let sy = |v: f64| size - sc(v);
    let points: Vec<String> = pred
        .iter()
        .zip(truth)
        .map(|(p, t)| format!("{:.1},{:.1}", sc(*p), sy(*t)))
        .collect();
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" role="img"><title>calibration</title><rect x="{pad}" y="{pad}" width="{w}" height="{w}" fill="none" stroke="#999"/><line x1="{a}" y1="{b}" x2="{b2}" y2="{a2}" stroke="#bbb" stroke-dasharray="4"/><polyline points="{pts}" fill="none" stroke="#4c78a8" stroke-width="2"/><text x="{pad}" y="{t}" font-size="10">mean predicted probability →</text></svg>"##,
        w = size - 2.0 * pad,
        a = sc(0.0),
        b = sy(0.0),
        b2 = sc(1.0),
        a2 = sy(1.0),
        pts = points.join(" "),
        t = size - 8.0
    )
}

/// The card as Markdown.
pub fn markdown(input: &CardInput) -> String {
    let (title, sections) = build(input);
    let mut s = format!("# Model card: {title}\n");
    for sec in &sections {
        let _ = write!(s, "\n## {}\n\n", sec.title);
        for b in &sec.blocks {
            match b {
                Block::Text(t) => {
                    let _ = writeln!(s, "{t}\n");
                }
                Block::List(items) => {
                    for i in items {
                        let _ = writeln!(s, "- {i}");
                    }
                    s.push('\n');
                }
                Block::Table { header, rows } => {
                    let cell = |c: &str| c.replace('|', "\\|");
                    let _ = writeln!(
                        s,
                        "| {} |",
                        header
                            .iter()
                            .map(|h| cell(h))
                            .collect::<Vec<_>>()
                            .join(" | ")
                    );
                    let _ = writeln!(s, "|{}", " --- |".repeat(header.len()));
                    for r in rows {
                        let _ = writeln!(
                            s,
                            "| {} |",
                            r.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")
                        );
                    }
                    s.push('\n');
                }
                Block::Svg(_) => {}
                Block::Code(c) => {
                    let _ = writeln!(s, "```json\n{c}\n```\n");
                }
            }
        }
    }
    s
}

/// Inline `code` spans of Markdown text, as HTML.
fn inline(t: &str) -> String {
    let mut out = String::new();
    for (i, part) in esc(t).split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{part}</code>");
        } else {
            out.push_str(part);
        }
    }
    out
}

/// The card as one self-contained HTML page.
pub fn html(input: &CardInput) -> String {
    let (title, sections) = build(input);
    let mut s = format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Model card: {t}</title>
<style>
body{{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222;line-height:1.45}}
h1{{font-size:1.6rem}} h2{{font-size:1.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}}
table{{border-collapse:collapse;margin:.5rem 0}} th,td{{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;font-size:.9rem}}
th{{background:#f5f5f5}} code{{background:#f3f3f3;padding:0 .2rem;border-radius:3px}} pre{{background:#f6f6f6;padding:.6rem;overflow:auto}}
svg{{display:block;margin:.5rem 0}}
</style></head><body>
<h1>Model card: {t}</h1>
"#,
        t = esc(&title)
    );
    for sec in &sections {
        let _ = writeln!(s, "<h2>{}</h2>", esc(&sec.title));
        for b in &sec.blocks {
            match b {
                Block::Text(t) => {
                    let _ = writeln!(s, "<p>{}</p>", inline(t));
                }
                Block::List(items) => {
                    s.push_str("<ul>");
                    for i in items {
                        let _ = write!(s, "<li>{}</li>", inline(i));
                    }
                    s.push_str("</ul>\n");
                }
                Block::Table { header, rows } => {
                    s.push_str("<table><thead><tr>");
                    for h in header {
                        let _ = write!(s, "<th>{}</th>", esc(h));
                    }
                    s.push_str("</tr></thead><tbody>");
                    for r in rows {
                        s.push_str("<tr>");
                        for c in r {
                            let _ = write!(s, "<td>{}</td>", esc(c));
                        }
                        s.push_str("</tr>");
                    }
                    s.push_str("</tbody></table>\n");
                }
                Block::Svg(svg) => {
                    s.push_str(svg);
                    s.push('\n');
                }
                Block::Code(c) => {
                    let _ = writeln!(s, "<pre><code>{}</code></pre>", esc(c));
                }
            }
        }
    }
    s.push_str("</body></html>\n");
    s
}
