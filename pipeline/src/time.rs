//! Time as the lake keeps it: UTC microseconds since the epoch. Parsing the timestamp
//! spellings Graph, Log Analytics and users write, and formatting them back as RFC 3339.

/// Parses a timestamp into UTC microseconds: RFC 3339 with any offset, the same without a
/// zone (taken as UTC), with a space instead of `T`, or a bare date (midnight UTC).
pub fn parse_ts(s: &str) -> Option<i64> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    // "2026-07-01 10:00:00Z"-style and Log Analytics "2026-07-01T10:00:00.123Z" are covered
    // above; a bare date means midnight UTC.
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_micros())
}

/// Formats UTC microseconds as an RFC 3339 timestamp (`2026-09-30T23:59:59Z`).
pub fn fmt_ts(micros: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| format!("{micros}µs"))
}

/// Now, in UTC microseconds.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}
