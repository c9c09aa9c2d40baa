//! `kiln data diff A B`: what changed between two versions of data.
//!
//! Works on profiles only (never rereads rows), so it is instant at any size: schema changes,
//! row counts, and per column the null share, moments, quantiles and category shares.

use kiln_core::profile::{ColumnProfile, ColumnStats, DatasetProfile};
use kiln_core::schema::SchemaChange;
use kiln_store::DatasetVersion;
use serde::Serialize;

/// The differences between two versions.
#[derive(Clone, Debug, Serialize)]
pub struct DataDiff {
    pub from: String,
    pub to: String,
    pub schema: SchemaChange,
    pub rows_from: u64,
    pub rows_to: u64,
    pub columns: Vec<ColumnDiff>,
}

/// How one column present in both versions changed.
#[derive(Clone, Debug, Serialize)]
pub struct ColumnDiff {
    pub name: String,
    pub null_fraction: (f64, f64),
    /// (statistic, from, to) for numeric columns: mean, std, min, p50, max.
    pub stats: Vec<(String, Option<f64>, Option<f64>)>,
    /// Categories present only in `to`.
    pub new_categories: Vec<String>,
    /// Categories present only in `from`.
    pub missing_categories: Vec<String>,
    /// (category, share in from, share in to), largest change first, top 5.
    pub share_changes: Vec<(String, f64, f64)>,
}

/// Compares `a` (from) to `b` (to) given their profiles.
pub fn diff(
    a: &DatasetVersion,
    pa: &DatasetProfile,
    b: &DatasetVersion,
    pb: &DatasetProfile,
) -> DataDiff {
    let mut columns = Vec::new();
    for cb in &pb.columns {
        if let Some(ca) = pa.column(&cb.name)
            && ca.ftype == cb.ftype
        {
            columns.push(column_diff(ca, cb));
        }
    }
    DataDiff {
        from: format!("{}@{}", a.dataset, a.version),
        to: format!("{}@{}", b.dataset, b.version),
        schema: a.schema.change_to(&b.schema),
        rows_from: a.rows,
        rows_to: b.rows,
        columns,
    }
}

fn column_diff(a: &ColumnProfile, b: &ColumnProfile) -> ColumnDiff {
    let mut d = ColumnDiff {
        name: a.name.clone(),
        null_fraction: (a.null_fraction(), b.null_fraction()),
        stats: Vec::new(),
        new_categories: Vec::new(),
        missing_categories: Vec::new(),
        share_changes: Vec::new(),
    };
    match (&a.stats, &b.stats) {
        (ColumnStats::Numeric(x), ColumnStats::Numeric(y)) => {
            let stat = |n: &str, f: &dyn Fn(&kiln_core::profile::NumericProfile) -> Option<f64>| {
                (n.to_owned(), f(x), f(y))
            };
            d.stats = vec![
                stat("mean", &|p| (p.count > 0).then_some(p.mean)),
                stat("std", &|p| p.std()),
                stat("min", &|p| p.min),
                stat("p50", &|p| p.quantile(0.5)),
                stat("max", &|p| p.max),
            ];
        }
        (ColumnStats::Categorical(x), ColumnStats::Categorical(y)) => {
            d.new_categories = y
                .counts
                .keys()
                .filter(|k| !x.counts.contains_key(*k))
                .cloned()
                .collect();
            d.missing_categories = x
                .counts
                .keys()
                .filter(|k| !y.counts.contains_key(*k))
                .cloned()
                .collect();
            let (tx, ty) = (x.total().max(1) as f64, y.total().max(1) as f64);
            let mut shares: Vec<(String, f64, f64)> = x
                .counts
                .keys()
                .chain(y.counts.keys())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .map(|k| {
                    let sx = *x.counts.get(k).unwrap_or(&0) as f64 / tx;
                    let sy = *y.counts.get(k).unwrap_or(&0) as f64 / ty;
                    (k.clone(), sx, sy)
                })
                .collect();
            shares.sort_by(|p, q| (q.2 - q.1).abs().total_cmp(&(p.2 - p.1).abs()));
            shares.truncate(5);
            d.share_changes = shares;
        }
        _ => {}
    }
    d
}
