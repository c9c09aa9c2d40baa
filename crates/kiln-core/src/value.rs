//! Turning cell text into typed values.
//!
//! Ingest (CSV cells), batch scoring and serving (JSON strings) all parse values here, so a value
//! means the same thing wherever it enters Kiln.

use chrono::{DateTime, NaiveDate, NaiveDateTime};

use crate::schema::FeatureType;

/// Cell texts that mean "no value" in any column.
pub const NULL_TOKENS: [&str; 8] = ["", "NA", "N/A", "null", "NULL", "None", "NaN", "nan"];

/// Whether `s` (already trimmed or not) stands for a missing value.
#[inline]
pub fn is_null_token(s: &str) -> bool {
    // Called for every cell of every string column: trim only when needed, and let the
    // compiler turn the match into a length switch instead of eight comparisons.
    let t = match s.as_bytes() {
        [first, ..] | [.., first] if first.is_ascii_whitespace() => s.trim(),
        [.., last] if last.is_ascii_whitespace() => s.trim(),
        _ => s,
    };
    matches!(
        t,
        "" | "NA" | "N/A" | "null" | "NULL" | "None" | "NaN" | "nan"
    )
}

/// Parses a number; `None` when `s` is not one.
#[inline]
pub fn parse_number(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok()
}

/// Parses a boolean spelled true/false, yes/no or t/f in any case; `1`/`0` too when
/// `allow_digits` (off during inference, where such a column is numeric).
pub fn parse_bool(s: &str, allow_digits: bool) -> Option<bool> {
    let t = s.trim();
    for (word, v) in [
        ("true", true),
        ("false", false),
        ("yes", true),
        ("no", false),
        ("t", true),
        ("f", false),
    ] {
        if t.eq_ignore_ascii_case(word) {
            return Some(v);
        }
    }
    if allow_digits {
        match t {
            "1" => return Some(true),
            "0" => return Some(false),
            _ => {}
        }
    }
    None
}

const DATE_FORMATS: [&str; 3] = ["%Y-%m-%d", "%Y/%m/%d", "%Y%m%d"];
const DATETIME_FORMATS: [&str; 6] = [
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
    "%Y/%m/%d %H:%M:%S%.f",
    "%Y/%m/%d %H:%M",
];

/// The value of ASCII digits, `None` if any byte is not a digit.
#[inline]
fn digits(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the `days_from_civil` algorithm),
/// `None` for an impossible date.
#[inline]
fn civil_days(y: i64, m: u32, d: u32) -> Option<i64> {
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_len = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if d == 0 || d > month_len {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// `YYYY-MM-DD` or `YYYY/MM/DD` at the start of `b`, as days since the epoch.
#[inline]
fn iso_date(b: &[u8]) -> Option<i64> {
    if b.len() < 10 || b[4] != b[7] || !(b[4] == b'-' || b[4] == b'/') {
        return None;
    }
    civil_days(
        digits(&b[0..4])? as i64,
        digits(&b[5..7])?,
        digits(&b[8..10])?,
    )
}

/// Days since 1970-01-01 for a date written as `YYYY-MM-DD` (or `YYYY/MM/DD`, `YYYYMMDD`).
pub fn parse_date(s: &str) -> Option<i32> {
    let t = s.trim();
    if t.len() < 8 || t.len() > 10 {
        return None;
    }
    // Hand-written fast path for the ISO form: chrono's format parser costs ~20x more, and
    // ingest parses one date per row.
    if t.len() == 10 {
        return iso_date(t.as_bytes()).map(|d| d as i32);
    }
    DATE_FORMATS
        .iter()
        .find_map(|f| NaiveDate::parse_from_str(t, f).ok())
        .map(date_to_days)
}

/// Microseconds since the epoch (UTC) for RFC 3339 or `YYYY-MM-DD[ T]HH:MM[:SS[.f]]` (read as UTC).
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let t = s.trim();
    if t.len() < 16 {
        return None;
    }
    if let Some(v) = iso_timestamp(t.as_bytes()) {
        return Some(v);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(dt.timestamp_micros());
    }
    DATETIME_FORMATS
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
        .map(|dt| dt.and_utc().timestamp_micros())
}

/// Fast path for `YYYY-MM-DD[ T]HH:MM[:SS[.f]][Z|±HH:MM]`; `None` sends the caller to chrono.
fn iso_timestamp(b: &[u8]) -> Option<i64> {
    let days = iso_date(b)?;
    if !(b[10] == b' ' || b[10] == b'T') || b[13] != b':' {
        return None;
    }
    let (h, mi) = (digits(&b[11..13])?, digits(&b[14..16])?);
    let mut i = 16;
    let mut sec = 0u32;
    let mut micros = 0i64;
    if b.len() >= 19 && b[16] == b':' {
        sec = digits(&b[17..19])?;
        i = 19;
        if b.len() > 19 && b[19] == b'.' {
            i = 20;
            let mut scale = 100_000i64;
            while i < b.len() && b[i].is_ascii_digit() {
                micros += (b[i] - b'0') as i64 * scale;
                scale /= 10;
                i += 1;
            }
        }
    }
    if h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let offset_secs: i64 = match &b[i..] {
        [] | [b'Z'] => 0,
        [sign @ (b'+' | b'-'), oh1, oh2, b':', om1, om2]
        | [sign @ (b'+' | b'-'), oh1, oh2, om1, om2] => {
            let oh = digits(&[*oh1, *oh2])? as i64;
            let om = digits(&[*om1, *om2])? as i64;
            let v = oh * 3600 + om * 60;
            if *sign == b'+' { v } else { -v }
        }
        _ => return None,
    };
    let secs = days * 86_400 + h as i64 * 3600 + mi as i64 * 60 + sec as i64 - offset_secs;
    Some(secs * 1_000_000 + micros)
}

/// Days since the epoch for a calendar date.
pub fn date_to_days(d: NaiveDate) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    (d - epoch).num_days() as i32
}

/// The date `days` after 1970-01-01, `None` outside the calendar chrono has (about ±262,000
/// years): a Parquet `Date32` can hold any `i32`, and adding such a day count panics.
pub fn days_to_date(days: i64) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(1970, 1, 1)?.checked_add_signed(chrono::Duration::try_days(days)?)
}

/// A date, from days since the epoch, as `YYYY-MM-DD`; outside the calendar (only a corrupt
/// file holds such a day), the day count itself, as [`format_timestamp`] does for instants.
pub fn format_days(days: i32) -> String {
    match days_to_date(i64::from(days)) {
        Some(d) => d.format("%Y-%m-%d").to_string(),
        None => days.to_string(),
    }
}

/// A duration like `90s`, `30m`, `1h`, `7d` or `250ms`, in microseconds.
pub fn parse_duration(text: &str) -> Option<i64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = t.split_at(split);
    let n: i64 = n.parse().ok()?;
    let unit_us: i64 = match unit.trim() {
        "ms" => 1_000,
        "s" => 1_000_000,
        "m" | "min" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        "w" => 7 * 86_400_000_000,
        _ => return None,
    };
    n.checked_mul(unit_us).filter(|v| *v > 0)
}

/// A duration in microseconds as its largest whole unit (`7d`, `36h`, `90s`, `250ms`): what
/// [`parse_duration`] reads back.
pub fn format_duration(us: i64) -> String {
    for (unit, size) in [
        ("w", 7 * 86_400_000_000),
        ("d", 86_400_000_000),
        ("h", 3_600_000_000),
        ("m", 60_000_000),
        ("s", 1_000_000),
        ("ms", 1_000),
    ] {
        if us >= size && us % size == 0 {
            return format!("{}{unit}", us / size);
        }
    }
    format!("{}ms", us as f64 / 1000.0)
}

/// A timestamp, from microseconds since the epoch, as RFC 3339.
pub fn format_timestamp(micros: i64) -> String {
    DateTime::from_timestamp_micros(micros)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string())
        .unwrap_or_else(|| micros.to_string())
}

/// Guesses a column's type from sample values (nulls already left out).
///
/// The order matters: a column of `0`/`1` is numeric, not boolean; a column of dates is a date,
/// not text. Strings with few distinct values (at most 1,000 and at most half the sample, or at
/// most 20) are categorical; other strings are text.
pub fn infer_type<'a>(values: impl Iterator<Item = &'a str> + Clone) -> FeatureType {
    let mut any = false;
    let mut numeric = true;
    let mut boolean = true;
    let mut date = true;
    let mut timestamp = true;
    for v in values.clone() {
        any = true;
        numeric = numeric && parse_number(v).is_some();
        boolean = boolean && parse_bool(v, false).is_some();
        date = date && parse_date(v).is_some();
        timestamp = timestamp && parse_timestamp(v).is_some();
        if !(numeric || boolean || date || timestamp) {
            break;
        }
    }
    if !any {
        // Nothing but nulls: categorical stores them losslessly and the user can declare better.
        return FeatureType::Categorical;
    }
    if numeric {
        return FeatureType::Numeric;
    }
    if boolean {
        return FeatureType::Boolean;
    }
    if date {
        return FeatureType::Date;
    }
    if timestamp {
        return FeatureType::Timestamp;
    }
    let mut distinct = std::collections::HashSet::new();
    let mut n = 0usize;
    for v in values {
        n += 1;
        if distinct.len() <= 1_000 {
            distinct.insert(v);
        }
    }
    let d = distinct.len();
    if d <= 20 || (d <= 1_000 && d * 2 <= n) {
        FeatureType::Categorical
    } else {
        FeatureType::Text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// fuzz/regressions/ingest/parquet-date32-max-quarantine: a Parquet date of i32::MAX days
    /// panicked in `format_days` (chrono's `NaiveDate + Duration` overflows).
    #[test]
    fn days_outside_the_calendar_format_as_numbers() {
        assert_eq!(format_days(i32::MAX), "2147483647");
        assert_eq!(format_days(i32::MIN), "-2147483648");
        assert_eq!(days_to_date(i64::MAX), None);
        assert_eq!(days_to_date(0), NaiveDate::from_ymd_opt(1970, 1, 1));
        assert_eq!(format_days(2_932_896), "9999-12-31");
    }

    #[test]
    fn parses_each_kind() {
        assert_eq!(parse_number(" 3.5 "), Some(3.5));
        assert_eq!(parse_number("1e3"), Some(1000.0));
        assert_eq!(parse_number("abc"), None);
        assert_eq!(parse_bool("Yes", false), Some(true));
        assert_eq!(parse_bool("1", false), None);
        assert_eq!(parse_bool("1", true), Some(true));
        assert_eq!(parse_date("1970-01-02"), Some(1));
        assert_eq!(parse_date("2011-01-01"), Some(14975));
        assert_eq!(parse_date("2011-02-30"), None);
        assert_eq!(format_days(14975), "2011-01-01");
        assert_eq!(format_days(-719_528), "0000-01-01");
        assert_eq!(parse_timestamp("1970-01-01T00:00:01Z"), Some(1_000_000));
        assert_eq!(parse_timestamp("1970-01-01 00:01"), Some(60_000_000));
        assert_eq!(format_timestamp(1_500_000), "1970-01-01T00:00:01.500Z");
        assert_eq!(parse_timestamp("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_timestamp("1970-01-01 00:00:00.25"), Some(250_000));
        assert_eq!(parse_timestamp("2001-01-01 24:00:00"), None);
        assert_eq!(parse_date("2011-13-01"), None);
        assert_eq!(parse_date("2012-02-29"), Some(15399));
        assert_eq!(parse_date("2011-02-29"), None);
        assert!(is_null_token(" NA "));
        for t in NULL_TOKENS {
            assert!(is_null_token(t), "{t}");
        }
        assert!(!is_null_token("NAN!"));
        assert!(!is_null_token("0"));
    }

    #[test]
    fn fast_paths_agree_with_chrono_over_five_centuries() {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        let mut d = NaiveDate::from_ymd_opt(1800, 1, 1).unwrap();
        let end = NaiveDate::from_ymd_opt(2300, 1, 1).unwrap();
        while d < end {
            let text = d.format("%Y-%m-%d").to_string();
            let want = (d - epoch).num_days();
            assert_eq!(parse_date(&text), Some(want as i32), "{text}");
            let ts = format!("{text} 13:45:07");
            let want_ts = d
                .and_hms_opt(13, 45, 7)
                .unwrap()
                .and_utc()
                .timestamp_micros();
            assert_eq!(parse_timestamp(&ts), Some(want_ts), "{ts}");
            d += chrono::Duration::days(7);
        }
    }

    #[test]
    fn infers_types_in_the_documented_order() {
        let infer = |v: &[&str]| infer_type(v.iter().copied());
        assert_eq!(infer(&["0", "1", "1"]), FeatureType::Numeric);
        assert_eq!(infer(&["yes", "No"]), FeatureType::Boolean);
        assert_eq!(infer(&["2011-01-01", "2012-12-31"]), FeatureType::Date);
        assert_eq!(infer(&["2011-01-01 10:00:00"]), FeatureType::Timestamp);
        assert_eq!(infer(&["fall", "spring", "fall"]), FeatureType::Categorical);
        let many: Vec<String> = (0..100).map(|i| format!("note {i}")).collect();
        assert_eq!(
            infer_type(many.iter().map(|s| s.as_str())),
            FeatureType::Text
        );
        assert_eq!(infer(&[]), FeatureType::Categorical);
    }
}
