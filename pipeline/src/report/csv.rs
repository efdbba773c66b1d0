//! CSV that spreadsheets open safely: RFC 4180 quoting, and cells a spreadsheet would run as
//! a formula (`=`, `+`, `-`, `@`, tab, CR, NUL first, also after leading spaces) prefixed
//! with `'`.

use std::io::Write;

/// One cell, neutralised and quoted as needed.
pub fn guard_cell(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len() + 3);
    // Writing to a Vec cannot fail, and the bytes are `s`'s UTF-8 with ASCII added.
    let _ = write_cell(&mut out, s);
    String::from_utf8(out).unwrap_or_default()
}

/// Writes one cell, neutralised and quoted as needed, without building it first (the
/// populations of a pack write hundreds of millions of cells).
pub fn write_cell(out: &mut impl Write, s: &str) -> std::io::Result<()> {
    let trimmed = s.trim_start_matches(' ');
    let risky = matches!(
        trimmed.bytes().next(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r' | b'\0')
    );
    // The `'` added in front holds none of the characters that call for quotes.
    let quoted = s.contains([',', '"', '\n', '\r']);
    if quoted {
        out.write_all(b"\"")?;
    }
    if risky {
        out.write_all(b"'")?;
    }
    if quoted {
        let mut parts = s.split('"');
        if let Some(first) = parts.next() {
            out.write_all(first.as_bytes())?;
        }
        for part in parts {
            out.write_all(b"\"\"")?;
            out.write_all(part.as_bytes())?;
        }
        out.write_all(b"\"")
    } else {
        out.write_all(s.as_bytes())
    }
}

/// Writes one CSV line of guarded cells.
pub fn write_line<S: AsRef<str>>(out: &mut impl Write, cells: &[S]) -> std::io::Result<()> {
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        write_cell(out, cell.as_ref())?;
    }
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
