//! Lenient reading of Graph JSON: case-insensitive property paths, beta-name alternates, the
//! string `"null"` as null, PascalCase enums normalised to camelCase, and typed conversion into
//! lake cells with a reason when a value does not fit (type drift is quarantined, not guessed).

use serde_json::Value;

use crate::lake::Cell;

/// How a JSON value becomes a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conv {
    /// Text; numbers and booleans are written as text; objects are refused.
    Str,
    /// An open enum: text with the first letter lower-cased (`UserAdd` → `userAdd`).
    Enum,
    /// A timestamp (RFC 3339, any fraction, `Z` or offset; a bare date is midnight UTC).
    Ts,
    /// A boolean (`true`, `"True"`, ...).
    Bool,
    /// A 64-bit integer.
    Int,
    /// Compact JSON text of any value.
    Json,
    /// The short name of an `@odata.type` (`#microsoft.graph.singleUser` → `singleUser`).
    ODataType,
    /// Comma-joined short `@odata.type` names of an array of objects.
    ODataTypes,
    /// directoryAudit `result`: `0` → `success`, `1` → `failure`, text as an enum.
    AuditResult,
}

/// Looks up a property by name: exact match first, then ASCII case-insensitive; `@odata.type`
/// also matches the beta spelling `odata.type`.
pub fn get_ci<'a>(obj: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a Value> {
    if let Some(v) = obj.get(key) {
        return Some(v);
    }
    if let Some(v) = obj
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
    {
        return Some(v);
    }
    key.strip_prefix('@').and_then(|bare| get_ci(obj, bare))
}

/// Follows a `/`-separated property path.
pub fn get_path<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = value;
    for seg in path {
        cur = get_ci(cur.as_object()?, seg)?;
    }
    Some(cur)
}

/// True for JSON null and for the string `"null"` that some published examples carry.
pub fn is_null(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s == "null",
        _ => false,
    }
}

/// Lower-cases the first character, the stored form of enum members.
pub fn camel(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A value's compact JSON text: the raw layer's record text and JSON columns. The same bytes
/// as `Value`'s `Display` (which `_raw`'s row hashes were made from), written straight into a
/// byte buffer instead of through `fmt::Formatter` (12 % of the reader thread's CPU went there;
/// no measurable change in an ingest's wall time, which the consumer thread sets).
pub fn compact_json(v: &Value) -> String {
    serde_json::to_string(v).expect("a serde_json Value always serialises")
}

/// A record's compact JSON text and where the lists and objects inside it lie, so that JSON
/// columns are cut from the record's text instead of written a second (and, for a list
/// inside a nested item, a third) time. The pieces are the same bytes [`compact_json`] writes
/// for each value alone: a map's keys are sorted and nothing depends on the enclosing value.
#[derive(Debug)]
pub struct JsonText<'v> {
    text: String,
    /// (address of a value in the tree the text was written from, start, end), by address.
    spans: Vec<(usize, usize, usize)>,
    /// The tree stays borrowed, unchanged, while its values' addresses are looked up.
    tree: std::marker::PhantomData<&'v Value>,
}

impl<'v> JsonText<'v> {
    /// Writes `v`, noting where each list and object lies down to `depth` levels below it.
    pub fn write(v: &'v Value, depth: usize) -> Self {
        let mut buf = Vec::with_capacity(1024);
        let mut spans = Vec::new();
        write_noting(&mut buf, v, depth, &mut Some(&mut spans));
        // Looked up by address: a record with a list of thousands of items is not scanned
        // once per item.
        spans.sort_unstable_by_key(|&(at, _, _)| at);
        JsonText {
            // serde_json writes UTF-8 (keys and strings are Rust strings, escapes are ASCII).
            text: String::from_utf8(buf).expect("serde_json writes UTF-8"),
            spans,
            tree: std::marker::PhantomData,
        }
    }

    /// The whole text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The whole text, owned.
    pub fn into_text(self) -> String {
        self.text
    }

    /// The text of `v` if it is a list or object of the tree this was written from (within
    /// the depth written); `None` for any other value, an equal one of another tree too.
    pub fn of(&self, v: &Value) -> Option<&str> {
        let at = v as *const Value as usize;
        let i = self.spans.binary_search_by_key(&at, |&(a, _, _)| a).ok()?;
        let (_, start, end) = self.spans[i];
        Some(&self.text[start..end])
    }
}

/// Writes `v` as [`compact_json`] does, noting where each list and object down to `depth`
/// levels lies (none when `spans` is `None`).
fn write_noting(
    buf: &mut Vec<u8>,
    v: &Value,
    depth: usize,
    spans: &mut Option<&mut Vec<(usize, usize, usize)>>,
) {
    let start = buf.len();
    let mut below = if depth > 0 {
        spans.as_deref_mut()
    } else {
        None
    };
    match v {
        Value::Object(m) => {
            buf.push(b'{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                write_str(buf, k);
                buf.push(b':');
                write_noting(buf, x, depth.saturating_sub(1), &mut below);
            }
            buf.push(b'}');
        }
        Value::Array(items) => {
            buf.push(b'[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                write_noting(buf, x, depth.saturating_sub(1), &mut below);
            }
            buf.push(b']');
        }
        Value::String(text) => write_str(buf, text),
        other => write_compact(buf, other),
    }
    if let Some(spans) = spans
        && matches!(v, Value::Object(_) | Value::Array(_))
    {
        spans.push((v as *const Value as usize, start, buf.len()));
    }
}

/// A JSON string as serde_json writes it. Most strings hold nothing it escapes (a control
/// character, `"` or `\`): those are copied as they are, checked without a branch per
/// byte; the rest go through serde_json.
fn write_str(buf: &mut Vec<u8>, text: &str) {
    let escapes = text.as_bytes().iter().fold(false, |any, &b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if escapes {
        write_compact(buf, text);
    } else {
        buf.reserve(text.len() + 2);
        buf.push(b'"');
        buf.extend_from_slice(text.as_bytes());
        buf.push(b'"');
    }
}

fn write_compact<T: serde::Serialize + ?Sized>(buf: &mut Vec<u8>, v: &T) {
    serde_json::to_writer(buf, v).expect("a serde_json Value always serialises");
}

/// The short name of an `@odata.type` string.
pub fn short_type(s: &str) -> String {
    let s = s.trim_start_matches('#');
    s.strip_prefix("microsoft.graph.").unwrap_or(s).to_string()
}

fn describe(v: &Value) -> String {
    let mut s = v.to_string();
    if s.len() > 60 {
        let mut cut = 57;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// Why a JSON value does not fit its column (the caller adds the column's name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// A value of the wrong JSON type.
    #[error("expected {expected} but found {found}")]
    Expected {
        /// What the column takes (`text`, `a timestamp`, ...).
        expected: &'static str,
        /// The value, described (type and a shortened copy).
        found: String,
    },
    /// Text that is not a timestamp.
    #[error("cannot read {found} as a timestamp")]
    NotTimestamp {
        /// The value, described.
        found: String,
    },
}

fn expected(expected: &'static str, found: String) -> ConvertError {
    ConvertError::Expected { expected, found }
}

/// Converts one JSON value; `Err` holds the reason (without the column name).
pub fn convert(v: &Value, conv: Conv) -> Result<Cell, ConvertError> {
    if is_null(v) {
        return Ok(Cell::Null);
    }
    let scalar_text = |v: &Value| -> Result<String, ConvertError> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(expected("text", describe(other))),
        }
    };
    match conv {
        Conv::Str => scalar_text(v).map(Cell::Str),
        Conv::Enum => scalar_text(v).map(|s| Cell::Str(camel(&s))),
        Conv::Ts => match v {
            Value::String(s) if s.is_empty() => Ok(Cell::Null),
            Value::String(s) => crate::time::parse_ts(s)
                .map(Cell::Ts)
                .ok_or_else(|| ConvertError::NotTimestamp { found: describe(v) }),
            other => Err(expected("a timestamp", describe(other))),
        },
        Conv::Bool => match v {
            Value::Bool(b) => Ok(Cell::Bool(*b)),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Cell::Bool(true)),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Cell::Bool(false)),
            other => Err(expected("true or false", describe(other))),
        },
        Conv::Int => match v {
            Value::Number(n) => n
                .as_i64()
                .map(Cell::Int)
                .ok_or_else(|| expected("a whole number", n.to_string())),
            Value::String(s) => s
                .trim()
                .parse()
                .map(Cell::Int)
                .map_err(|_| expected("a whole number", describe(v))),
            other => Err(expected("a whole number", describe(other))),
        },
        Conv::Json => Ok(Cell::Str(compact_json(v))),
        Conv::ODataType => scalar_text(v).map(|s| Cell::Str(short_type(&s))),
        Conv::ODataTypes => match v {
            Value::Array(items) => Ok(Cell::Str(
                items
                    .iter()
                    .filter_map(|i| i.as_object())
                    .filter_map(|o| get_ci(o, "@odata.type").and_then(Value::as_str))
                    .map(short_type)
                    .collect::<Vec<_>>()
                    .join(","),
            )),
            other => Err(expected("a list", describe(other))),
        },
        Conv::AuditResult => match v {
            Value::Number(n) => Ok(Cell::Str(match n.as_i64() {
                Some(0) => "success".into(),
                Some(1) => "failure".into(),
                _ => n.to_string(),
            })),
            other => scalar_text(other).map(|s| Cell::Str(camel(&s))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_ts;
    use serde_json::json;

    #[test]
    fn compact_json_is_the_text_raw_hashes_were_made_from() {
        // `_raw` dedupes on a hash of this text: lakes written with `Value`'s Display must
        // see the same bytes for the same record, or a re-ingest would store it twice.
        let text = r#" { "z": [1, 2.50, -0.0, 1e3, 18446744073709551615, null, true],
            "a\u0000b": "tab\tquote\" slash\/ \u00e9 \ud83d\ude00 <script>",
            "M": {"nested": {"": ""}}, "num": 12345678901234567890123 } "#;
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(compact_json(&v), v.to_string());
        assert!(compact_json(&v).starts_with(r#"{"M":{"nested":{"":""}},"a\u0000b":"#));
    }

    #[test]
    fn json_text_cuts_each_nested_value_as_compact_json_writes_it() {
        let text = r#"{"z": {"b": [1, {"y": "\u00e9\"", "a": []}], "a": {}}, "targetResources":
            [{"modifiedProperties": [{"newValue": "[\"x\"]"}], "id": "t"}], "n": null}"#;
        let v: Value = serde_json::from_str(text).unwrap();
        let written = JsonText::write(&v, 3);
        assert_eq!(written.text(), compact_json(&v));
        let mut checked = 0;
        let mut walk = vec![(&v, 0)];
        while let Some((x, level)) = walk.pop() {
            match (written.of(x), level <= 3 && (x.is_object() || x.is_array())) {
                (Some(cut), true) => {
                    assert_eq!(cut, compact_json(x));
                    checked += 1;
                }
                (None, false) => {}
                (cut, _) => panic!("{x} at level {level}: {cut:?}"),
            }
            match x {
                Value::Object(m) => walk.extend(m.values().map(|c| (c, level + 1))),
                Value::Array(a) => walk.extend(a.iter().map(|c| (c, level + 1))),
                _ => {}
            }
        }
        assert_eq!(checked, 8);
        // A value of another tree is not found, even an equal one.
        let other: Value = serde_json::from_str(text).unwrap();
        assert!(written.of(&other["z"]).is_none());
    }

    /// Any JSON value, nested a few levels, with keys and strings that need escaping.
    fn any_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let text = prop_oneof![
            "[a-zA-Z0-9 ]{0,6}",
            Just("quote\" back\\ tab\t nul\u{0} é 🙂 \u{202e}".to_string()),
            Just("del\u{7f} unit\u{1f} bell\u{7} slash/ <b>&amp;</b>".to_string()),
            "\\PC{0,8}",
            "[\\x00-\\x7f]{0,8}",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            text.clone().prop_map(Value::String),
        ];
        leaf.prop_recursive(5, 48, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(text.clone(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn json_text_is_compact_json_and_so_is_each_cut(v in any_json(), depth in 0usize..5) {
            let written = JsonText::write(&v, depth);
            proptest::prop_assert_eq!(written.text(), compact_json(&v));
            let mut walk = vec![(&v, 0)];
            while let Some((x, level)) = walk.pop() {
                let noted = level <= depth && (x.is_object() || x.is_array());
                match written.of(x) {
                    Some(cut) => {
                        proptest::prop_assert!(noted);
                        proptest::prop_assert_eq!(cut, compact_json(x));
                    }
                    None => proptest::prop_assert!(!noted),
                }
                match x {
                    Value::Object(m) => walk.extend(m.values().map(|c| (c, level + 1))),
                    Value::Array(a) => walk.extend(a.iter().map(|c| (c, level + 1))),
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn paths_are_case_insensitive_and_accept_beta_odata_type() {
        let v = json!({"Target": {"ObjectId": "x"}, "odata.type": "#microsoft.graph.singleUser"});
        assert_eq!(
            get_path(&v, &["target".into(), "objectId".into()]),
            Some(&json!("x"))
        );
        assert_eq!(
            convert(
                get_ci(v.as_object().unwrap(), "@odata.type").unwrap(),
                Conv::ODataType
            ),
            Ok(Cell::Str("singleUser".into()))
        );
    }

    #[test]
    fn lenient_scalars() {
        assert_eq!(convert(&json!("null"), Conv::Ts), Ok(Cell::Null));
        assert_eq!(
            convert(&json!("AdminAdd"), Conv::Enum),
            Ok(Cell::Str("adminAdd".into()))
        );
        assert_eq!(convert(&json!("True"), Conv::Bool), Ok(Cell::Bool(true)));
        assert_eq!(
            convert(&json!(0), Conv::AuditResult),
            Ok(Cell::Str("success".into()))
        );
        assert!(convert(&json!({"a": 1}), Conv::Str).is_err());
        assert!(convert(&json!("yesterday"), Conv::Ts).is_err());
    }

    #[test]
    fn timestamps_in_the_shapes_graph_and_azure_monitor_use() {
        let a = parse_ts("2018-12-10T00:03:46.6161822Z").unwrap();
        let b = parse_ts("2018-12-10T00:03:46.616182+00:00").unwrap();
        assert_eq!(a, b);
        assert_eq!(
            parse_ts("2019-10-25T22:55:11.623Z"),
            parse_ts("2019-10-25T22:55:11.623")
        );
        assert_eq!(parse_ts("9999-12-31").map(|t| t > 0), Some(true));
        assert_eq!(parse_ts("0001-01-01T00:00:00Z").map(|t| t < 0), Some(true));
    }
}
