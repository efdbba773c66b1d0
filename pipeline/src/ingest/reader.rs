//! Streaming JSON readers for export files: Graph list-response pages (`value`, with
//! `@odata.context` and `@odata.nextLink`), Event Hub style `records` wrappers, bare arrays,
//! single objects, and JSON Lines (several top-level values, CRLF or LF). Objects are handed
//! to a sink one at a time, so a page of any size is read in bounded memory.

use std::fmt;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// What the reader hands to its sink.
#[derive(Debug)]
pub enum Item {
    /// One object, with the `@odata.context` known when it was read.
    Record {
        /// `@odata.context` of its page, if any.
        context: Option<Arc<str>>,
        /// 0-based position in the file.
        index: u64,
        /// The object.
        value: Value,
    },
    /// A page's list ended (possibly empty): its context's list is complete.
    PageEnd {
        /// `@odata.context` of the page.
        context: Option<Arc<str>>,
    },
}

/// Why reading stopped.
#[derive(Debug)]
pub struct ReadError {
    /// Sentence saying what is wrong.
    pub message: String,
    /// Where (line and column, when known).
    pub location: String,
    /// Whether the sink stopped the read (not a problem with the file).
    pub stopped: bool,
}

/// Elements buffered while a page's `@odata.context` has not been seen yet (PowerShell may
/// write it after `value`); past this they are passed on and the file name decides.
const MAX_BUFFERED_WITHOUT_CONTEXT: usize = 10_000;

/// Counts bytes read, for progress and throughput figures.
pub struct CountingReader<R> {
    inner: R,
    counter: Arc<AtomicU64>,
}

impl<R> CountingReader<R> {
    /// Wraps a reader.
    pub fn new(inner: R, counter: Arc<AtomicU64>) -> Self {
        Self { inner, counter }
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

struct State<'s> {
    sink: &'s mut dyn FnMut(Item) -> Result<(), String>,
    index: u64,
    sink_failed: Option<String>,
}

impl State<'_> {
    fn emit<E: de::Error>(&mut self, item: Item) -> Result<(), E> {
        if let Item::Record { .. } = item {
            self.index += 1;
        }
        (self.sink)(item).map_err(|e| {
            self.sink_failed = Some(e.clone());
            E::custom(e)
        })
    }
}

/// Reads every top-level value of a JSON or JSON Lines stream.
pub fn read_stream<R: Read>(
    reader: R,
    sink: &mut dyn FnMut(Item) -> Result<(), String>,
) -> Result<(), ReadError> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    let mut state = State {
        sink,
        index: 0,
        sink_failed: None,
    };
    loop {
        match de.end() {
            Ok(()) => return Ok(()),
            Err(e) if e.is_io() => return Err(err_at(&e, "the file could not be read", false)),
            Err(_) => {}
        }
        let result = TopLevel { state: &mut state }.deserialize(&mut de);
        if let Err(e) = result {
            if let Some(msg) = state.sink_failed.take() {
                return Err(ReadError {
                    message: msg,
                    location: String::new(),
                    stopped: true,
                });
            }
            let what = if e.is_eof() {
                "the JSON ends too early (truncated file?)".to_string()
            } else if e.is_syntax() {
                format!("this is not valid JSON: {}", strip_position(&e))
            } else {
                strip_position(&e)
            };
            return Err(err_at(&e, &what, false));
        }
    }
}

fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn err_at(e: &serde_json::Error, message: &str, stopped: bool) -> ReadError {
    ReadError {
        message: message.to_string(),
        location: format!("line {}, column {}", e.line(), e.column()),
        stopped,
    }
}

struct TopLevel<'a, 's> {
    state: &'a mut State<'s>,
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopLevel<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object (a Graph page or one record) or a list of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(value) = seq.next_element::<Value>()? {
            let index = self.state.index;
            self.state.emit(Item::Record {
                context: None,
                index,
                value,
            })?;
        }
        self.state.emit(Item::PageEnd { context: None })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut context: Option<Arc<str>> = None;
        let mut other = Map::new();
        let mut is_page = false;
        let mut pending: Vec<Value> = Vec::new();
        let read = (|| -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<String>()? {
                if key.eq_ignore_ascii_case("@odata.context") {
                    let v: Value = map.next_value()?;
                    if let Value::String(s) = &v {
                        context = Some(Arc::from(s.as_str()));
                    }
                    other.insert(key, v);
                } else if key.eq_ignore_ascii_case("value") || key.eq_ignore_ascii_case("records") {
                    is_page = true;
                    map.next_value_seed(ListSeed {
                        state: &mut *self.state,
                        context: context.clone(),
                        pending: &mut pending,
                        key: &key,
                    })?;
                } else if key.starts_with("@odata.") || key.starts_with("@microsoft.graph.") {
                    // Page annotations (nextLink, count, tips) say nothing about the records.
                    let v: Value = map.next_value()?;
                    other.insert(key, v);
                } else if is_page {
                    map.next_value::<IgnoredAny>()?;
                } else {
                    let v: Value = map.next_value()?;
                    other.insert(key, v);
                }
            }
            Ok(())
        })();
        if let Err(e) = read {
            // Records read before a truncation or a syntax error are kept, not lost.
            for value in pending {
                let index = self.state.index;
                self.state.emit::<A::Error>(Item::Record {
                    context: context.clone(),
                    index,
                    value,
                })?;
            }
            return Err(e);
        }
        if is_page {
            for value in pending {
                let index = self.state.index;
                self.state.emit(Item::Record {
                    context: context.clone(),
                    index,
                    value,
                })?;
            }
            self.state.emit(Item::PageEnd { context })
        } else {
            other.retain(|k, _| !k.eq_ignore_ascii_case("@odata.context"));
            let index = self.state.index;
            self.state.emit(Item::Record {
                context,
                index,
                value: Value::Object(other),
            })
        }
    }
}

struct ListSeed<'a, 's> {
    state: &'a mut State<'s>,
    context: Option<Arc<str>>,
    pending: &'a mut Vec<Value>,
    key: &'a str,
}

impl<'de> DeserializeSeed<'de> for ListSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ListSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a list under `{}`", self.key)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(value) = seq.next_element::<Value>()? {
            if self.context.is_none() && self.pending.len() < MAX_BUFFERED_WITHOUT_CONTEXT {
                self.pending.push(value);
            } else {
                let index = self.state.index;
                self.state.emit(Item::Record {
                    context: self.context.clone(),
                    index,
                    value,
                })?;
            }
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(format!(
            "the page's `{}` is an object, not a list",
            self.key
        )))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(format!(
            "the page's `{}` is a string, not a list",
            self.key
        )))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(format!(
            "the page's `{}` is a number, not a list",
            self.key
        )))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(format!(
            "the page's `{}` is a number, not a list",
            self.key
        )))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(format!(
            "the page's `{}` is a number, not a list",
            self.key
        )))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(format!(
            "the page's `{}` is a boolean, not a list",
            self.key
        )))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(format!(
            "the page's `{}` is null, not a list",
            self.key
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(s: &str) -> (Vec<(Option<String>, Value)>, Option<ReadError>) {
        let mut out = Vec::new();
        let r = read_stream(s.as_bytes(), &mut |i| {
            if let Item::Record { context, value, .. } = i {
                out.push((context.map(|c| c.to_string()), value));
            }
            Ok(())
        });
        (out, r.err())
    }

    #[test]
    fn pages_stream_their_values_with_context() {
        let (recs, err) =
            read(r#"{"@odata.context":"c","value":[{"id":"a"},{"id":"b"}],"@odata.nextLink":"n"}"#);
        assert!(err.is_none());
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].0.as_deref(), Some("c"));
    }

    #[test]
    fn context_after_value_still_applies() {
        let (recs, _) = read(r#"{"value":[{"id":"a"}],"@odata.context":"c"}"#);
        assert_eq!(recs[0].0.as_deref(), Some("c"));
    }

    #[test]
    fn json_lines_with_crlf() {
        let (recs, err) = read("{\"id\":\"a\"}\r\n{\"id\":\"b\"}\r\n");
        assert!(err.is_none());
        assert_eq!(recs.len(), 2);
    }

    #[test]
    fn bad_pages_say_what_is_wrong() {
        let (_, err) = read(r#"{"value": {"id": "a"}}"#);
        assert!(err.unwrap().message.contains("is an object, not a list"));
        let (recs, err) = read(r#"{"value":[{"id":"a"},{"id":"b"#);
        assert_eq!(recs.len(), 1);
        assert!(err.unwrap().message.contains("ends too early"));
        let (_, err) = read("not json");
        assert!(err.unwrap().message.contains("not valid JSON"));
    }
}
