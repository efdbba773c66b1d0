//! The period under examination: a calendar quarter (`2026Q3`) or an explicit `[from, to)`
//! range. Its end is the as-of time of everything reported for it.

use super::{Error, Result};

/// A half-open time range `[from, to)` in UTC microseconds, with a label.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Period {
    /// `2026Q3`, or `FROM..TO`.
    pub label: String,
    /// Start (inclusive), UTC micros.
    #[serde(skip)]
    pub from: i64,
    /// End (exclusive), UTC micros.
    #[serde(skip)]
    pub to: i64,
    /// Start, RFC 3339.
    pub from_text: String,
    /// End, RFC 3339.
    pub to_text: String,
}

impl Period {
    /// `2026Q3` (also `2026-Q3`, `q3 2026` is refused).
    pub fn quarter(text: &str) -> Result<Self> {
        let bad = || Error::Invalid(format!("`{text}` is not a quarter: write it like 2026Q3"));
        let t = text.trim().to_ascii_uppercase().replace('-', "");
        let (year, q) = t.split_once('Q').ok_or_else(bad)?;
        let year: i32 = year.parse().map_err(|_| bad())?;
        let q: u32 = q.parse().map_err(|_| bad())?;
        if !(1..=4).contains(&q) || !(1970..=9999).contains(&year) {
            return Err(bad());
        }
        let start = |y: i32, m: u32| {
            chrono::NaiveDate::from_ymd_opt(y, m, 1)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| d.and_utc().timestamp_micros())
                .ok_or_else(bad)
        };
        let from = start(year, (q - 1) * 3 + 1)?;
        let to = if q == 4 {
            start(year + 1, 1)?
        } else {
            start(year, q * 3 + 1)?
        };
        Ok(Self::new(format!("{year}Q{q}"), from, to))
    }

    /// An explicit range of two RFC 3339 times.
    pub fn range(from: &str, to: &str) -> Result<Self> {
        let parse = |s: &str| {
            crate::ingest::value::parse_ts(s).ok_or_else(|| {
                Error::Invalid(format!(
                    "`{s}` is not a time (RFC 3339, e.g. 2026-07-01T00:00:00Z)"
                ))
            })
        };
        let (f, t) = (parse(from)?, parse(to)?);
        if f >= t {
            return Err(Error::Invalid(format!(
                "the period must end after it starts ({from} .. {to})"
            )));
        }
        Ok(Self::new(
            format!("{}..{}", crate::lake::fmt_ts(f), crate::lake::fmt_ts(t)),
            f,
            t,
        ))
    }

    fn new(label: String, from: i64, to: i64) -> Self {
        Self {
            label,
            from,
            to,
            from_text: crate::lake::fmt_ts(from),
            to_text: crate::lake::fmt_ts(to),
        }
    }

    /// The last instant inside the period (as-of time of its holders), RFC 3339.
    pub fn end_inclusive_text(&self) -> String {
        crate::lake::fmt_ts(self.to - 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::Period;

    #[test]
    fn quarters_are_half_open_utc_ranges() {
        let q = Period::quarter("2026q3").unwrap();
        assert_eq!(
            (q.label.as_str(), q.from_text.as_str(), q.to_text.as_str()),
            ("2026Q3", "2026-07-01T00:00:00Z", "2026-10-01T00:00:00Z")
        );
        assert_eq!(
            Period::quarter("2026Q4").unwrap().to_text,
            "2027-01-01T00:00:00Z"
        );
        assert_eq!(q.end_inclusive_text(), "2026-09-30T23:59:59Z");
        assert!(Period::quarter("2026Q5").is_err());
        assert!(Period::quarter("Q3").is_err());
        assert!(Period::range("2026-09-01T00:00:00Z", "2026-08-01T00:00:00Z").is_err());
    }
}
