//! Kiln's shared vocabulary.
//!
//! Everything more than one Kiln crate needs lives here, so that the arrows between crates only
//! ever point down: the column types of a [`schema::Schema`], the [`names`] rule every dataset and
//! model name obeys, content ids ([`id::ContentId`]), the `kiln.toml` [`config`], the parsing of
//! cell values shared by ingest and serving ([`value`]), and the mergeable [`profile`] format
//! that data snapshots write and monitoring compares against, and the normalized Arrow
//! representation of each feature type ([`table`]) that snapshots, training and serving share.

pub mod config;
pub mod id;
pub mod names;
pub mod profile;
pub mod schema;
pub mod table;
pub mod value;

/// Kiln's version, recorded with everything Kiln writes.
pub const KILN_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Microseconds since the Unix epoch, the one time unit Kiln stores.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Formats microseconds since the epoch as RFC 3339 (UTC), for people and JSON.
pub fn format_micros(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| micros.to_string())
}
