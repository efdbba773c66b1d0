//! Inline SVG charts for the reports: no script, no fonts or images fetched, every label
//! HTML-escaped here (the SVG is handed to the templates as already-safe markup).

/// Escapes text for SVG/HTML content and attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            _ => out.push(c),
        }
    }
    out
}

/// A horizontal bar chart: one bar per (label, value), scaled to `max` (the largest value
/// when `None`), with the value printed as `format(value)` after each bar.
pub fn bars(
    title: &str,
    items: &[(String, f64)],
    max: Option<f64>,
    format: impl Fn(f64) -> String,
) -> String {
    let max = max
        .unwrap_or_else(|| items.iter().map(|(_, v)| *v).fold(0.0, f64::max))
        .max(f64::MIN_POSITIVE);
    let (label_w, bar_w, row_h) = (260.0, 300.0, 22.0);
    let height = 28.0 + row_h * items.len() as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" role=\"img\" width=\"{w}\" height=\"{height}\" viewBox=\"0 0 {w} {height}\"><title>{t}</title><text x=\"0\" y=\"16\" class=\"chart-title\">{t}</text>",
        w = label_w + bar_w + 80.0,
        t = escape(title),
    );
    for (i, (label, value)) in items.iter().enumerate() {
        let y = 28.0 + row_h * i as f64;
        let len = (value / max).clamp(0.0, 1.0) * bar_w;
        let shown: String = label.chars().take(40).collect();
        svg.push_str(&format!(
            "<text x=\"0\" y=\"{ty}\" class=\"chart-label\">{l}</text><rect x=\"{label_w}\" y=\"{y}\" width=\"{len:.1}\" height=\"{h}\" class=\"chart-bar\"/><text x=\"{vx:.1}\" y=\"{ty}\" class=\"chart-value\">{v}</text>",
            ty = y + 14.0,
            l = escape(&shown),
            h = row_h - 6.0,
            vx = label_w + len + 6.0,
            v = escape(&format(*value)),
        ));
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    #[test]
    fn labels_are_escaped_and_bars_scaled() {
        let svg = super::bars(
            "Coverage <b>",
            &[
                ("<script>alert(1)</script>".into(), 0.5),
                ("ok".into(), 1.0),
            ],
            Some(1.0),
            |v| format!("{:.0} %", v * 100.0),
        );
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(svg.contains("width=\"150.0\""));
        assert!(svg.contains("width=\"300.0\""));
    }
}
