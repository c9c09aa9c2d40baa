//! Times summaries and drift tests for 1,000,000 reference rows against 1,000,000 current rows.
//!
//!     cargo run -p kiln-monitor --release --example drift_timing
//!
//! Three columns: numbers with about 100 distinct values (what real columns look like: hour,
//! temperature to one decimal), numbers that are all distinct (the worst case for summaries),
//! and 24 labels, as strings and as dictionary codes (Kiln's Arrow form).

use std::time::{Duration, Instant};

use kiln_monitor::{
    CategoricalCounts, ColumnSummary, DriftMethod, DriftOptions, NumericCounts, column_drift,
};

const ROWS: usize = 1_000_000;

/// SplitMix64: a fixed sequence, so every run times the same data.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..runs {
        let start = Instant::now();
        let value = f();
        best = best.min(start.elapsed());
        out = Some(value);
    }
    (best, out.expect("at least one run"))
}

fn time_column(name: &str, reference: ColumnSummary, current: ColumnSummary, build: Duration) {
    println!(
        "{name}: summaries of both samples {:.1} ms",
        build.as_secs_f64() * 1e3
    );
    let methods: Vec<Option<DriftMethod>> = std::iter::once(None)
        .chain(
            DriftMethod::ALL
                .into_iter()
                .filter(|m| m.applies_to(reference.kind()))
                .map(Some),
        )
        .collect();
    for method in methods {
        let options = DriftOptions {
            method,
            ..DriftOptions::default()
        };
        let (took, drift) = best_of(5, || column_drift(&reference, &current, &options));
        match drift {
            Ok(drift) => println!(
                "  {:<13} {:>9.3} ms  score {:.6e}{}",
                method.map_or("default", DriftMethod::name),
                took.as_secs_f64() * 1e3,
                drift.score,
                if method.is_none() {
                    format!(" ({})", drift.method)
                } else {
                    String::new()
                },
            ),
            Err(error) => println!("  {method:?}: {error}"),
        }
    }
}

fn main() {
    let mut rng = SplitMix64(2026);

    // About 100 distinct values: a rounded bell shape, the current one shifted a little.
    let bell = |rng: &mut SplitMix64, shift: f64| -> f64 {
        let sum: f64 = (0..4).map(|_| rng.unit()).sum();
        ((sum - 2.0 + shift) * 30.0).round() / 2.0
    };
    let few_ref: Vec<f64> = (0..ROWS).map(|_| bell(&mut rng, 0.0)).collect();
    let few_cur: Vec<f64> = (0..ROWS).map(|_| bell(&mut rng, 0.02)).collect();
    let (build, (r, c)) = best_of(3, || {
        (
            NumericCounts::from_values(&few_ref),
            NumericCounts::from_values(&few_cur),
        )
    });
    let distinct = r.merge(&c).map(|m| m.distinct()).unwrap_or(0);
    time_column(
        &format!("numeric, {distinct} distinct values"),
        ColumnSummary::Numeric(r),
        ColumnSummary::Numeric(c),
        build,
    );

    // Every value distinct.
    let all_ref: Vec<f64> = (0..ROWS).map(|_| rng.unit() * 100.0).collect();
    let all_cur: Vec<f64> = (0..ROWS).map(|_| rng.unit() * 100.0 + 0.1).collect();
    let (build, (r, c)) = best_of(3, || {
        (
            NumericCounts::from_values(&all_ref),
            NumericCounts::from_values(&all_cur),
        )
    });
    let distinct = r.merge(&c).map(|m| m.distinct()).unwrap_or(0);
    time_column(
        &format!("numeric, {distinct} distinct values"),
        ColumnSummary::Numeric(r),
        ColumnSummary::Numeric(c),
        build,
    );

    // 24 labels, as the hour of day in the bike-sharing data.
    let labels: Vec<String> = (0..24)
        .map(|h| format!("{}{}", h % 12 + 1, if h < 12 { "am" } else { "pm" }))
        .collect();
    let label_ref: Vec<&str> = (0..ROWS)
        .map(|_| labels[(rng.next() % 24) as usize].as_str())
        .collect();
    let label_cur: Vec<&str> = (0..ROWS)
        .map(|_| labels[((rng.next() % 25) as usize).min(23)].as_str())
        .collect();
    let (build, (r, c)) = best_of(3, || {
        (
            CategoricalCounts::from_values(label_ref.iter().map(|l| Some(*l))),
            CategoricalCounts::from_values(label_cur.iter().map(|l| Some(*l))),
        )
    });
    let codes_ref: Vec<i32> = (0..ROWS).map(|_| (rng.next() % 24) as i32).collect();
    let codes_cur: Vec<i32> = (0..ROWS)
        .map(|_| ((rng.next() % 25) as i32).min(23))
        .collect();
    let (from_codes, _) = best_of(3, || {
        (
            CategoricalCounts::from_codes(codes_ref.iter().map(|c| Some(*c)), &labels),
            CategoricalCounts::from_codes(codes_cur.iter().map(|c| Some(*c)), &labels),
        )
    });
    println!(
        "categorical, 24 labels: summaries of both samples from dictionary codes {:.1} ms",
        from_codes.as_secs_f64() * 1e3
    );
    time_column(
        "categorical, 24 labels (strings)",
        ColumnSummary::Categorical(r),
        ColumnSummary::Categorical(c),
        build,
    );
}
