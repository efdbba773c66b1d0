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
    /// `2026Q3` (also `2026-Q3`, `q3 2026` is refused with the spelling to use).
    pub fn quarter(text: &str) -> Result<Self> {
        let bad = || Error::Invalid(quarter_hint(text));
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
            crate::time::parse_ts(s).ok_or_else(|| {
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
            format!("{}..{}", crate::time::fmt_ts(f), crate::time::fmt_ts(t)),
            f,
            t,
        ))
    }

    fn new(label: String, from: i64, to: i64) -> Self {
        Self {
            label,
            from,
            to,
            from_text: crate::time::fmt_ts(from),
            to_text: crate::time::fmt_ts(to),
        }
    }

    /// The last instant inside the period (as-of time of its holders), RFC 3339.
    pub fn end_inclusive_text(&self) -> String {
        crate::time::fmt_ts(self.to - 1_000_000)
    }
}

/// Why `text` is not a quarter, with the spelling govlake takes: the year, then `Q` and the
/// quarter's number (`2026Q3`). Quarter-first (`Q3 2026`, `Q3-2026`), a month (`2026-08`,
/// which names its quarter) and quarters beyond four get their own hint; `--from`/`--to`
/// cover any other span.
fn quarter_hint(text: &str) -> String {
    let t = text.trim().to_ascii_uppercase();
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    let parts: Vec<&str> = t
        .split([' ', '-', '/', '_'])
        .filter(|p| !p.is_empty())
        .collect();
    let guess = match parts.as_slice() {
        [q, y] if q.len() == 2 && q.starts_with('Q') && digits(&q[1..]) && digits(y) => {
            Some(format!("{y}{q}"))
        }
        [y, m] if y.len() == 4 && digits(y) && digits(m) => match m.parse::<u32>() {
            Ok(m @ 1..=12) => Some(format!("{y}Q{}", (m - 1) / 3 + 1)),
            _ => None,
        },
        _ => None,
    };
    let quarter_number = t
        .rsplit_once('Q')
        .and_then(|(_, q)| q.parse::<u32>().ok())
        .filter(|q| !(1..=4).contains(q));
    let why = match (guess, quarter_number) {
        (Some(g), _) => format!("did you mean {g}?"),
        (None, Some(q)) => format!("a year has quarters Q1 to Q4, not Q{q}"),
        (None, None) => "write the year, then Q and the quarter, like 2026Q3".into(),
    };
    format!(
        "`{text}` is not a quarter: {why} (for any other span give --from and --to, RFC 3339 times)"
    )
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
        assert!(Period::quarter("1969Q1").is_err());
        assert!(Period::quarter("Q3").is_err());
        assert!(Period::range("2026-09-01T00:00:00Z", "2026-08-01T00:00:00Z").is_err());
    }

    #[test]
    fn a_period_that_is_not_a_quarter_gets_the_spelling_to_use() {
        let hint = |t: &str| Period::quarter(t).unwrap_err().to_string();
        assert!(
            hint("Q3 2026").contains("did you mean 2026Q3?"),
            "{}",
            hint("Q3 2026")
        );
        assert!(hint("q4-2025").contains("did you mean 2025Q4?"));
        // A month names its quarter: August is in the third.
        assert!(hint("2026-08").contains("did you mean 2026Q3?"));
        assert!(hint("2026-12").contains("did you mean 2026Q4?"));
        assert!(hint("2026Q5").contains("quarters Q1 to Q4, not Q5"));
        let h = hint("last quarter");
        assert!(
            h.contains("like 2026Q3") && h.contains("--from and --to"),
            "{h}"
        );
    }
}
