//! CSV that spreadsheets open safely: RFC 4180 quoting, and cells a spreadsheet would run as
//! a formula (`=`, `+`, `-`, `@`, tab, CR, NUL first, also after leading spaces) prefixed
//! with `'`.

use std::io::Write;

/// One cell, neutralised and quoted as needed.
pub fn guard_cell(s: &str) -> String {
    let trimmed = s.trim_start_matches(' ');
    let risky = matches!(
        trimmed.chars().next(),
        Some('=' | '+' | '-' | '@' | '\t' | '\r' | '\0')
    ) || matches!(s.chars().next(), Some('\t' | '\r' | '\0'));
    let s = if risky {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// Writes one CSV line of guarded cells.
pub fn write_line<S: AsRef<str>>(out: &mut impl Write, cells: &[S]) -> std::io::Result<()> {
    let line: Vec<String> = cells.iter().map(|c| guard_cell(c.as_ref())).collect();
    out.write_all(line.join(",").as_bytes())?;
    out.write_all(b"\n")
}

/// A whole table as CSV text.
pub fn table_to_csv(t: &super::Table) -> String {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = write_line(&mut out, &t.columns);
    for r in &t.rows {
        let _ = write_line(&mut out, r);
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::guard_cell;

    #[test]
    fn formulas_are_neutralised_and_cells_quoted() {
        assert_eq!(
            guard_cell("=HYPERLINK(\"x\")"),
            "\"'=HYPERLINK(\"\"x\"\")\""
        );
        assert_eq!(guard_cell("  +cmd"), "'  +cmd");
        assert_eq!(guard_cell("-1"), "'-1");
        assert_eq!(guard_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(guard_cell("\tx"), "'\tx");
        assert_eq!(guard_cell("a,b"), "\"a,b\"");
        assert_eq!(guard_cell("line\nbreak"), "\"line\nbreak\"");
        assert_eq!(guard_cell("plain"), "plain");
    }
}
