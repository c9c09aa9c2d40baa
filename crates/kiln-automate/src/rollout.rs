//! Rollouts: a candidate that passed the gates proves itself on live traffic before it
//! replaces the champion.
//!
//! - `direct`: the champion's alias moves to the candidate at once (no rollout).
//! - `shadow`: the `shadow` alias points at the candidate; the server scores a copy of every
//!   request production answers with it and logs it under the same row ids, never returning
//!   it. Each label therefore joins both answers: the comparison is paired.
//! - `canary`: the `canary` alias points at the candidate and answers `share` of the requests,
//!   chosen by a hash of the request's route key (sticky); the comparison is between the two
//!   groups of requests over the same period.
//!
//! Each controller pass judges a running rollout from the labelled rows logged since it
//! started. It is **rolled back** as soon as the challenger breaches a bound (p99 latency, or
//! its realized loss worse than the champion's by `max_worse`), with at least a quarter of the
//! planned sample. At the planned sample size (`samples` labelled rows a side) one one-sided
//! test at `confidence` decides, once (a fixed-sample test: no peeking, so the stated
//! confidence holds): **promoted** when the challenger's mean loss is lower, else
//! **discarded**. A rollout that has not reached its sample within `max_duration` of event
//! time is discarded. The per-row loss is the squared error for a regressor (the mean is the
//! MSE, RMSE's square) and the 0/1 error for a classifier (the mean is the error rate).

use std::collections::HashMap;

use kiln_core::value::parse_duration;
use kiln_store::{
    CANARY_ALIAS, Expect, LabelQuery, NewRollout, Rollout, SHADOW_ALIAS, Store, StoreError,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use statrs::distribution::{ContinuousCDF, Normal};

use crate::harvest::labelled_after;
use crate::{AutomateError, Result};

/// How a candidate that passed the gates reaches traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    #[default]
    Direct,
    Shadow,
    Canary,
}

impl Strategy {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "direct" => Some(Self::Direct),
            "shadow" => Some(Self::Shadow),
            "canary" => Some(Self::Canary),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Shadow => "shadow",
            Self::Canary => "canary",
        }
    }

    /// The alias that routes the challenger.
    fn alias(self) -> &'static str {
        match self {
            Self::Canary => CANARY_ALIAS,
            _ => SHADOW_ALIAS,
        }
    }
}

/// `[automate.rollout]`: how a rollout is judged.
#[derive(Clone, Debug, PartialEq)]
pub struct RolloutConfig {
    /// Canary: the share of requests the challenger answers.
    pub share: f64,
    /// Labelled rows a side at which the test decides.
    pub samples: usize,
    /// The test's confidence (one-sided).
    pub confidence: f64,
    /// Event time (microseconds) after which a rollout short of its sample is discarded.
    pub max_duration: i64,
    /// Rollback when the challenger's p99 logged latency is above this (milliseconds).
    pub max_p99_ms: f64,
    /// Rollback when the challenger's mean loss is above the champion's times this.
    pub max_worse: f64,
    /// Rollback when the challenger fails more than this share of its requests (where
    /// production answered), once it has failed `MIN_ERRORS` times.
    pub max_error_rate: f64,
}

/// Failures a challenger may have before its error rate is judged (one failure in the first
/// few requests is not a rate).
pub const MIN_ERRORS: i64 = 3;

impl Default for RolloutConfig {
    fn default() -> Self {
        Self {
            share: 0.1,
            samples: 200,
            confidence: 0.95,
            max_duration: 7 * 86_400_000_000,
            max_p99_ms: 100.0,
            max_worse: 1.5,
            max_error_rate: 0.01,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    share: Option<f64>,
    samples: Option<usize>,
    confidence: Option<f64>,
    max_duration: Option<String>,
    max_p99_ms: Option<f64>,
    max_worse: Option<f64>,
    max_error_rate: Option<f64>,
}

impl RolloutConfig {
    /// Reads `[automate.rollout]`; every key is optional, and a bad one is named.
    pub fn from_table(table: &toml::Table) -> Result<Self> {
        let s: Section =
            toml::Value::Table(table.clone())
                .try_into()
                .map_err(|e: toml::de::Error| {
                    AutomateError::Input(format!("[automate.rollout]: {}", e.message().trim()))
                })?;
        let d = Self::default();
        let bad = |key: &str, v: String, want: &str| {
            AutomateError::Input(format!("[automate.rollout] {key} = {v}: {want}"))
        };
        let share = s.share.unwrap_or(d.share);
        if !(share > 0.0 && share < 1.0) {
            return Err(bad(
                "share",
                share.to_string(),
                "a share of requests in (0, 1), e.g. 0.1",
            ));
        }
        let samples = s.samples.unwrap_or(d.samples);
        if samples < 20 {
            return Err(bad(
                "samples",
                samples.to_string(),
                "at least 20 labelled rows a side (the test's normal approximation needs them)",
            ));
        }
        let confidence = s.confidence.unwrap_or(d.confidence);
        if !(0.5..1.0).contains(&confidence) {
            return Err(bad(
                "confidence",
                confidence.to_string(),
                "a probability in [0.5, 1), e.g. 0.95",
            ));
        }
        let max_duration = match &s.max_duration {
            Some(t) => parse_duration(t).ok_or_else(|| {
                bad(
                    "max_duration",
                    format!("\"{t}\""),
                    "a duration such as 7d or 36h",
                )
            })?,
            None => d.max_duration,
        };
        let max_p99_ms = s.max_p99_ms.unwrap_or(d.max_p99_ms);
        if !(max_p99_ms > 0.0 && max_p99_ms.is_finite()) {
            return Err(bad(
                "max_p99_ms",
                max_p99_ms.to_string(),
                "a positive number of milliseconds",
            ));
        }
        let max_worse = s.max_worse.unwrap_or(d.max_worse);
        if !(max_worse > 1.0 && max_worse.is_finite()) {
            return Err(bad(
                "max_worse",
                max_worse.to_string(),
                "a factor above 1, e.g. 1.5 (the challenger's loss at most 1.5 times the champion's)",
            ));
        }
        let max_error_rate = s.max_error_rate.unwrap_or(d.max_error_rate);
        if !(0.0..1.0).contains(&max_error_rate) {
            return Err(bad(
                "max_error_rate",
                max_error_rate.to_string(),
                "a share of requests in [0, 1), e.g. 0.01",
            ));
        }
        Ok(Self {
            share,
            samples,
            confidence,
            max_duration,
            max_p99_ms,
            max_worse,
            max_error_rate,
        })
    }
}

/// The per-row losses a judgement reads.
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    /// Losses of the champion's and the challenger's labelled rows; for a shadow, paired by
    /// index (the same request's row).
    pub champion: Vec<f64>,
    pub challenger: Vec<f64>,
    pub paired: bool,
    /// The challenger's logged latencies (microseconds).
    pub latencies_us: Vec<i64>,
    /// Event time since the rollout's first logged row (microseconds; 0 before it).
    pub elapsed: i64,
    /// Rows the challenger answered (or scored, for a shadow) since the start, labelled or not.
    pub routed: i64,
    /// Requests it failed where production answered.
    pub errors: i64,
}

/// What a judgement decided.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Not enough evidence yet.
    Continue(String),
    Promote(String),
    RollBack(String),
    Discard(String),
}

/// A loss for a message: four significant decimals for small ones, one for large ones.
fn show(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.4}")
    }
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len().max(1) as f64
}

/// Sample variance (n - 1).
fn variance(x: &[f64]) -> f64 {
    if x.len() < 2 {
        return 0.0;
    }
    let m = mean(x);
    x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (x.len() - 1) as f64
}

/// The p-th quantile (nearest rank) of `x`.
fn quantile(x: &[i64], p: f64) -> Option<i64> {
    let mut v = x.to_vec();
    v.sort_unstable();
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1));
    v.get(rank - 1).copied()
}

/// One-sided p-value of "the challenger's mean loss is lower" (normal approximation: a paired
/// z-test on the differences for a shadow, Welch's z for a canary's two groups), and z.
pub fn one_sided_p(e: &Evidence) -> (f64, f64) {
    let (diff, se) = if e.paired {
        let d: Vec<f64> = e
            .champion
            .iter()
            .zip(&e.challenger)
            .map(|(c, h)| c - h)
            .collect();
        (mean(&d), (variance(&d) / d.len().max(1) as f64).sqrt())
    } else {
        (
            mean(&e.champion) - mean(&e.challenger),
            (variance(&e.champion) / e.champion.len().max(1) as f64
                + variance(&e.challenger) / e.challenger.len().max(1) as f64)
                .sqrt(),
        )
    };
    let z = if se > 0.0 {
        diff / se
    } else if diff > 0.0 {
        f64::INFINITY
    } else if diff < 0.0 {
        f64::NEG_INFINITY
    } else {
        0.0
    };
    let p = if z.is_finite() {
        1.0 - Normal::standard().cdf(z)
    } else if z > 0.0 {
        0.0
    } else {
        1.0
    };
    (p, z)
}

/// Judges a rollout on `e`: the verdict and the numbers it read.
pub fn judge(c: &RolloutConfig, e: &Evidence) -> (Verdict, Value) {
    let n = e.champion.len().min(e.challenger.len());
    let (champion, challenger) = (mean(&e.champion), mean(&e.challenger));
    let p99_ms = quantile(&e.latencies_us, 0.99).map(|us| us as f64 / 1000.0);
    let mut numbers = json!({
        "n_champion": e.champion.len(),
        "n_challenger": e.challenger.len(),
        "paired": e.paired,
        "champion_loss": champion,
        "challenger_loss": challenger,
        "challenger_p99_ms": p99_ms,
        "challenger_rows": e.routed,
        "challenger_errors": e.errors,
        "samples": c.samples,
        "confidence": c.confidence,
        "elapsed_hours": e.elapsed as f64 / 3.6e9,
    });
    let attempts = e.routed + e.errors;
    if e.errors >= MIN_ERRORS && e.errors as f64 > c.max_error_rate * attempts as f64 {
        return (
            Verdict::RollBack(format!(
                "the challenger failed {} of {attempts} requests ({:.1}%) that production answered; max_error_rate = {}",
                e.errors,
                100.0 * e.errors as f64 / attempts.max(1) as f64,
                c.max_error_rate
            )),
            numbers,
        );
    }
    let early = c.samples.div_ceil(4);
    if e.challenger.len() >= early
        && let Some(p99) = p99_ms
        && p99 > c.max_p99_ms
    {
        return (
            Verdict::RollBack(format!(
                "the challenger's p99 latency {p99:.1} ms is above max_p99_ms = {} ms ({} rows)",
                c.max_p99_ms,
                e.challenger.len()
            )),
            numbers,
        );
    }
    if n >= early && champion > 0.0 && challenger > champion * c.max_worse {
        return (
            Verdict::RollBack(format!(
                "the challenger's mean loss {} is {:.2}× the champion's {} on {n} labelled rows (max_worse = {})",
                show(challenger),
                challenger / champion,
                show(champion),
                c.max_worse
            )),
            numbers,
        );
    }
    if n < c.samples {
        let verdict = if e.elapsed > c.max_duration {
            Verdict::Discard(format!(
                "only {n} of {} labelled rows a side within max_duration",
                c.samples
            ))
        } else {
            Verdict::Continue(format!("{n} of {} labelled rows a side", c.samples))
        };
        return (verdict, numbers);
    }
    let (p, z) = one_sided_p(e);
    let alpha = 1.0 - c.confidence;
    numbers["z"] = json!(if z.is_finite() { Some(z) } else { None });
    numbers["p_value"] = json!(p);
    let test = format!(
        "{} test on {n} labelled rows a side: mean loss {} vs the champion's {}, one-sided p = {p:.4}",
        if e.paired { "paired z" } else { "Welch z" },
        show(challenger),
        show(champion),
    );
    if p < alpha {
        (
            Verdict::Promote(format!("{test} < {alpha:.3} (confidence {})", c.confidence)),
            numbers,
        )
    } else {
        (
            Verdict::Discard(format!(
                "{test}, not below {alpha:.3}: not shown better at confidence {}",
                c.confidence
            )),
            numbers,
        )
    }
}

/// A row's loss from the logged output and the label (both JSON): squared error for a value,
/// 0/1 for a class; `None` when either cannot be read.
fn row_loss(output: &str, label: &str) -> Option<f64> {
    let out: Value = serde_json::from_str(output).ok()?;
    let label: Value = serde_json::from_str(label).ok()?;
    if let Some(v) = out.get("value").and_then(Value::as_f64) {
        let y = match &label {
            Value::Number(n) => n.as_f64()?,
            Value::String(s) => s.trim().parse().ok()?,
            _ => return None,
        };
        return Some((v - y) * (v - y));
    }
    let class = out.get("class")?;
    let same = match (class, &label) {
        (Value::String(a), Value::String(b)) => a == b,
        // A label sent as a number or boolean names the class by its text.
        (Value::String(a), other) => {
            let text = other.to_string();
            *a == text
        }
        _ => return None,
    };
    Some(if same { 0.0 } else { 1.0 })
}

/// The labelled rows of a rollout's two sides since it started.
pub async fn evidence(store: &Store, r: &Rollout, now: i64) -> Result<Evidence> {
    let s = &r.start;
    let (rows, _) = labelled_after(
        store,
        &LabelQuery {
            model: s.model.clone(),
            from: Some(s.event_time),
            to: None,
            after_feedback: None,
            limit: 10_000,
            features: false,
            served_only: false,
        },
    )
    .await?;
    // A rollout started before any traffic counts its time from its first row.
    let first = rows.iter().map(|l| l.time).min();
    let mut e = Evidence {
        paired: s.strategy == "shadow",
        elapsed: first.map_or(0, |t| (now - t).max(0)),
        routed: store
            .meta
            .count_routed(&s.model, s.challenger_version, &s.alias, s.event_time)
            .await?,
        errors: r.errors,
        ..Evidence::default()
    };
    let is = |alias: &Option<String>, want: &str| alias.as_deref() == Some(want);
    if e.paired {
        // The newest label of each feedback item, a side each.
        let mut pairs: HashMap<i64, (Option<f64>, Option<f64>)> = HashMap::new();
        for l in &rows {
            let Some(loss) = row_loss(&l.output, &l.label) else {
                continue;
            };
            let entry = pairs.entry(l.feedback_id).or_default();
            if l.version == s.challenger_version && is(&l.alias, &s.alias) {
                entry.1 = Some(loss);
                e.latencies_us.push(l.latency_us);
            } else if l.version == s.champion_version && is(&l.alias, &s.champion_alias) {
                entry.0 = Some(loss);
            }
        }
        let mut ids: Vec<_> = pairs.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            if let Some((Some(c), Some(h))) = pairs.get(&id) {
                e.champion.push(*c);
                e.challenger.push(*h);
            }
        }
    } else {
        for l in &rows {
            let Some(loss) = row_loss(&l.output, &l.label) else {
                continue;
            };
            if l.version == s.challenger_version && is(&l.alias, &s.alias) {
                e.challenger.push(loss);
                e.latencies_us.push(l.latency_us);
            } else if l.version == s.champion_version && is(&l.alias, &s.champion_alias) {
                e.champion.push(loss);
            }
        }
    }
    Ok(e)
}

/// Who made a rollout's alias moves.
pub struct Actor<'a> {
    pub name: &'a str,
    /// Why the rollout starts (recorded with its alias move).
    pub reason: &'a str,
}

/// Starts a rollout of `model@challenger` against what `champion_alias` serves: points the
/// strategy's alias at it and records the rollout. `now` is the serving clock (the latest
/// event time logged); `None` before any traffic, when the rollout judges all rows to come.
/// Errors when the strategy is `direct`, the champion alias does not exist, or a rollout of
/// the model is running.
#[allow(clippy::too_many_arguments)]
pub async fn start(
    store: &Store,
    model: &str,
    challenger: i64,
    champion_alias: &str,
    strategy: Strategy,
    share: f64,
    retrain_id: Option<i64>,
    now: Option<i64>,
    actor: &Actor<'_>,
) -> Result<Rollout> {
    if strategy == Strategy::Direct {
        return Err(AutomateError::Input(
            "a direct deploy has no rollout; move the alias instead".into(),
        ));
    }
    let meta = &store.meta;
    let champion = meta.alias(model, champion_alias).await?.ok_or_else(|| {
        AutomateError::Input(format!(
            "`{model}` has no `{champion_alias}` alias to roll out against\nhint: kiln models alias set {champion_alias} {model}@VERSION"
        ))
    })?;
    if champion.version == challenger {
        return Err(AutomateError::Input(format!(
            "{model}@{challenger} is already `{champion_alias}`"
        )));
    }
    if let Some(r) = meta.rollouts(Some(model), true, 1).await?.first() {
        return Err(AutomateError::Input(format!(
            "rollout #{} of {model}@{} is running; one at a time\nhint: kiln rollouts stop {model} --reason ...",
            r.id, r.start.challenger_version
        )));
    }
    let alias = strategy.alias();
    let new = NewRollout {
        model: model.to_owned(),
        strategy: strategy.as_str().to_owned(),
        alias: alias.to_owned(),
        challenger_version: challenger,
        champion_alias: champion_alias.to_owned(),
        champion_version: champion.version,
        champion_revision: champion.revision,
        share: (strategy == Strategy::Canary).then_some(share),
        retrain_id,
        event_time: now.unwrap_or(0),
    };
    // The record first: if the alias move then fails, the rollout is closed as stopped, and
    // no alias ever routes traffic to a challenger nobody judges.
    let Some(id) = meta.start_rollout(&new).await? else {
        return Err(AutomateError::Input(format!(
            "another rollout of `{model}` started meanwhile"
        )));
    };
    let what = match strategy {
        Strategy::Canary => format!("canary for {:.0}% of requests", share * 100.0),
        _ => "shadow (scores a copy of production's traffic)".to_owned(),
    };
    if let Err(e) = meta
        .set_alias(
            model,
            alias,
            challenger,
            Expect::Any,
            &format!("rollout #{id}: {what}; {}", actor.reason),
            actor.name,
        )
        .await
    {
        meta.finish_rollout(id, "stopped", None, &format!("could not start: {e}"))
            .await?;
        return Err(e.into());
    }
    meta.rollouts(Some(model), true, 1)
        .await?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| AutomateError::Input(format!("rollout #{id} ended meanwhile")))
}

/// Removes a rollout's alias if it still routes its challenger (recording why).
async fn release(store: &Store, r: &Rollout, reason: &str, actor: &str) -> Result<()> {
    let s = &r.start;
    if let Some(a) = store.meta.alias(&s.model, &s.alias).await?
        && a.version == s.challenger_version
    {
        match store
            .meta
            .remove_alias(&s.model, &s.alias, a.revision, reason, actor)
            .await
        {
            Ok(()) | Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Ends rollout `r` as `state` (not promoted) with `message`, removing its alias.
pub async fn end(
    store: &Store,
    r: &Rollout,
    state: &str,
    decision: Option<&Value>,
    message: &str,
    actor: &str,
) -> Result<()> {
    let reason = format!("rollout #{} {}: {message}", r.id, state.replace('_', " "));
    release(store, r, &reason, actor).await?;
    store
        .meta
        .finish_rollout(r.id, state, decision, message)
        .await?;
    Ok(())
}

/// Judges running rollout `r` at event time `now` and acts on the verdict: promotes (moves
/// the champion alias, compare-and-set against its revision at the start), rolls back or
/// discards (removes the rollout's alias), or records the numbers and waits. Returns the
/// rollout as stored afterwards.
pub async fn advance(
    store: &Store,
    config: &RolloutConfig,
    r: &Rollout,
    now: i64,
    actor: &str,
) -> Result<Rollout> {
    let s = &r.start;
    let meta = &store.meta;
    let routed = meta.alias(&s.model, &s.alias).await?;
    if routed.as_ref().map(|a| a.version) != Some(s.challenger_version) {
        let msg = format!(
            "the `{}` alias no longer points at {}@{} (moved by hand)",
            s.alias, s.model, s.challenger_version
        );
        meta.finish_rollout(r.id, "stopped", None, &msg).await?;
    } else {
        let e = evidence(store, r, now).await?;
        let (verdict, numbers) = judge(config, &e);
        match verdict {
            Verdict::Continue(_) => meta.note_rollout(r.id, &numbers).await?,
            Verdict::RollBack(why) => {
                end(store, r, "rolled_back", Some(&numbers), &why, actor).await?
            }
            Verdict::Discard(why) => {
                end(store, r, "discarded", Some(&numbers), &why, actor).await?
            }
            Verdict::Promote(why) => {
                let reason = format!("rollout #{} ({}): {why}", r.id, s.strategy);
                match meta
                    .set_alias(
                        &s.model,
                        &s.champion_alias,
                        s.challenger_version,
                        Expect::Revision(s.champion_revision),
                        &reason,
                        actor,
                    )
                    .await
                {
                    Ok(_) => {
                        release(
                            store,
                            r,
                            &format!("rollout #{} promoted: {why}", r.id),
                            actor,
                        )
                        .await?;
                        meta.finish_rollout(r.id, "promoted", Some(&numbers), &why)
                            .await?;
                    }
                    Err(StoreError::Conflict(m)) => {
                        let now_serving = meta.alias(&s.model, &s.champion_alias).await?;
                        // Another controller (a replica) judged the same rollout first and
                        // promoted it: it records the outcome.
                        if now_serving.map(|a| a.version) != Some(s.challenger_version) {
                            let msg = format!("the challenger won ({why}), but {m}");
                            end(store, r, "stopped", Some(&numbers), &msg, actor).await?;
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    meta.rollouts(Some(&s.model), false, 20)
        .await?
        .into_iter()
        .find(|x| x.id == r.id)
        .ok_or_else(|| AutomateError::Input(format!("rollout #{} vanished", r.id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RolloutConfig {
        RolloutConfig {
            samples: 40,
            ..RolloutConfig::default()
        }
    }

    #[test]
    fn config_keys_are_checked_and_named() {
        let parse = |t: &str| RolloutConfig::from_table(&toml::from_str(t).unwrap());
        assert_eq!(parse("").unwrap(), RolloutConfig::default());
        let c = parse("share = 0.25\nsamples = 48\nmax_duration = \"3d\"").unwrap();
        assert_eq!((c.share, c.samples), (0.25, 48));
        assert_eq!(c.max_duration, 3 * 86_400_000_000);
        for (t, needle) in [
            ("share = 1.0", "share"),
            ("samples = 5", "samples"),
            ("confidence = 1.0", "confidence"),
            ("max_duration = \"soon\"", "max_duration"),
            ("max_worse = 0.9", "max_worse"),
            ("max_error_rate = 1.0", "max_error_rate"),
            ("shares = 0.1", "shares"),
        ] {
            let e = parse(t).unwrap_err().to_string();
            assert!(e.contains(needle), "{t}: {e}");
        }
    }

    /// Losses around `m` with a spread, deterministic.
    fn losses(m: f64, n: usize) -> Vec<f64> {
        (0..n).map(|i| m + ((i * 7919) % 13) as f64 - 6.0).collect()
    }

    #[test]
    fn fixed_sample_test_promotes_a_better_challenger_and_discards_an_equal_one() {
        let better = Evidence {
            champion: losses(30.0, 40),
            challenger: losses(20.0, 40),
            paired: true,
            latencies_us: vec![500; 40],
            elapsed: 0,
            ..Evidence::default()
        };
        let (v, n) = judge(&cfg(), &better);
        assert!(matches!(v, Verdict::Promote(_)), "{v:?}");
        assert!(n["p_value"].as_f64().unwrap() < 0.05);
        let equal = Evidence {
            challenger: losses(30.0, 40),
            ..better.clone()
        };
        let (v, n) = judge(&cfg(), &equal);
        assert!(matches!(v, Verdict::Discard(_)), "{v:?}");
        assert_eq!(n["p_value"].as_f64(), Some(0.5));
        // Below the planned sample it waits, however good it looks.
        let early = Evidence {
            champion: losses(30.0, 39),
            challenger: losses(10.0, 39),
            ..better.clone()
        };
        assert!(matches!(judge(&cfg(), &early).0, Verdict::Continue(_)));
        // ... until max_duration, then it is discarded.
        let late = Evidence {
            elapsed: cfg().max_duration + 1,
            ..early
        };
        assert!(matches!(judge(&cfg(), &late).0, Verdict::Discard(_)));
    }

    #[test]
    fn unpaired_welch_matches_a_hand_computation() {
        let e = Evidence {
            champion: vec![1.0, 2.0, 3.0, 4.0],
            challenger: vec![0.0, 1.0, 1.0, 2.0],
            paired: false,
            ..Evidence::default()
        };
        // Means 2.5 and 1.0; variances 5/3 and 2/3; se = sqrt((5/3 + 2/3) / 4).
        let se = ((5.0 / 3.0 + 2.0 / 3.0) / 4.0f64).sqrt();
        let (p, z) = one_sided_p(&e);
        assert!((z - 1.5 / se).abs() < 1e-12, "{z}");
        // Φ(1.9640) = 0.97524 (tables).
        assert!((p - (1.0 - 0.975_236)).abs() < 1e-4, "{p}");
    }

    #[test]
    fn breaches_roll_back_early() {
        let slow = Evidence {
            champion: losses(30.0, 10),
            challenger: losses(30.0, 10),
            paired: true,
            latencies_us: vec![250_000; 10],
            elapsed: 0,
            ..Evidence::default()
        };
        let (v, _) = judge(&cfg(), &slow);
        assert!(
            matches!(&v, Verdict::RollBack(m) if m.contains("p99 latency 250.0 ms")),
            "{v:?}"
        );
        let worse = Evidence {
            champion: losses(20.0, 10),
            challenger: losses(40.0, 10),
            latencies_us: vec![500; 10],
            ..slow.clone()
        };
        let (v, _) = judge(&cfg(), &worse);
        assert!(
            matches!(&v, Verdict::RollBack(m) if m.contains("2.05×")),
            "{v:?}"
        );
        // Fewer rows than a quarter of the sample: no verdict yet.
        let few = Evidence {
            champion: losses(20.0, 9),
            challenger: losses(40.0, 9),
            latencies_us: vec![250_000; 9],
            ..slow
        };
        assert!(matches!(judge(&cfg(), &few).0, Verdict::Continue(_)));
    }

    #[test]
    fn a_challenger_that_fails_requests_is_rolled_back_on_its_error_rate() {
        let failing = Evidence {
            routed: 97,
            errors: 3,
            ..Evidence::default()
        };
        let (v, n) = judge(&cfg(), &failing);
        assert!(
            matches!(&v, Verdict::RollBack(m) if m.contains("failed 3 of 100 requests (3.0%)")),
            "{v:?}"
        );
        assert_eq!(n["challenger_errors"], 3);
        // Below the rate, or too few failures to be a rate: no verdict from errors.
        let rare = Evidence {
            routed: 997,
            ..failing.clone()
        };
        assert!(matches!(judge(&cfg(), &rare).0, Verdict::Continue(_)));
        let two = Evidence {
            routed: 10,
            errors: 2,
            ..Evidence::default()
        };
        assert!(matches!(judge(&cfg(), &two).0, Verdict::Continue(_)));
    }

    #[test]
    fn row_losses_read_values_and_classes() {
        assert_eq!(row_loss(r#"{"value":3.0}"#, "5"), Some(4.0));
        assert_eq!(row_loss(r#"{"value":3.0}"#, "\"1.5\""), Some(2.25));
        assert_eq!(
            row_loss(r#"{"class":"yes","probabilities":[0.2,0.8]}"#, "\"yes\""),
            Some(0.0)
        );
        assert_eq!(
            row_loss(r#"{"class":"1","probabilities":[0.2,0.8]}"#, "0"),
            Some(1.0)
        );
        assert_eq!(row_loss(r#"{"value":3.0}"#, "null"), None);
    }
}
