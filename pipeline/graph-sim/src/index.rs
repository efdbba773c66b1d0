//! The export directory as an index over its files: for every record served, which file it
//! is in, where (byte offset and length), how its bytes become the record Graph answers, and
//! the fields `$filter` reads — 32 bytes a record, whatever the size of its JSON. A page's
//! records are read back from the files when the page is asked for, so the simulator's
//! memory grows with the number of records, not with their text.
//!
//! Loading reads every file once with govlake's reader (which also says where each record
//! lies). A record whose compact JSON (what the simulator answers) is found byte for byte in
//! the file, as in files `govlake generate` and Graph write and in archive envelopes around
//! their `properties`, is served by copying those bytes; any other (indented, with a
//! top-level `@odata.context`, escaped differently) is parsed again and written compact.
//! Records of a UTF-16 file (whose bytes are decoded before they are read) are kept as text.
//! The export must not change while it is served: a record that no longer reads back is an
//! error naming the file.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use govlake::catalog::value;
use govlake::ingest::reader::{self, Span};
use govlake::ingest::{context, files};
use serde_json::Value;

use crate::store::{AUDITS, GRAPH_CONTEXT, LoadError, collection_path};

/// Bits of [`Entry::at`] that hold the byte offset (files up to 1 TiB); the file number is
/// above them.
const OFFSET_BITS: u32 = 40;
/// The file number of records kept as text (from UTF-16 files).
const INLINE: u64 = (1 << (64 - OFFSET_BITS)) - 1;
/// "No time" in [`Entry::created`] and [`Entry::activity`].
const NO_TIME: i64 = i64::MIN;

/// How the bytes at an entry become the record's JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// They are the record's compact JSON.
    Verbatim,
    /// A list element, to parse and write compact.
    Element,
    /// A top-level object: parsed, its `@odata.context` members dropped.
    TopLevel,
    /// An Azure Monitor envelope: the record is its `properties`.
    Envelope,
}

/// One record in the index (32 bytes).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    /// File number (high bits) and byte offset (low [`OFFSET_BITS`]); for an inline record,
    /// [`INLINE`] and its number among the inline texts.
    at: u64,
    len: u32,
    /// 0: no `state`; else its number among [`Export::states`] plus one.
    state: u16,
    shape: Shape,
    created: i64,
    activity: i64,
}

impl Entry {
    pub(crate) fn created(&self) -> Option<i64> {
        (self.created != NO_TIME).then_some(self.created)
    }

    pub(crate) fn activity(&self) -> Option<i64> {
        (self.activity != NO_TIME).then_some(self.activity)
    }

    fn file(&self) -> u64 {
        self.at >> OFFSET_BITS
    }

    fn offset(&self) -> u64 {
        self.at & ((1 << OFFSET_BITS) - 1)
    }
}

/// One collection at one Graph path.
pub(crate) struct Collection {
    pub(crate) context: String,
    pub(crate) records: Vec<Entry>,
}

/// The files records are read from, and what entries refer to by number.
#[derive(Default)]
pub(crate) struct Export {
    files: Vec<PathBuf>,
    inline: Vec<Box<str>>,
    states: Vec<Box<str>>,
}

/// A record that could not be read back from its file.
#[derive(Debug, thiserror::Error)]
#[error(
    "the record at byte {offset} of `{}` no longer reads back ({reason}): the export changed since the simulator started; restart it",
    path.display()
)]
pub(crate) struct ReadBack {
    path: PathBuf,
    offset: u64,
    reason: String,
}

impl Export {
    /// The `state` of an entry.
    pub(crate) fn state(&self, e: &Entry) -> Option<&str> {
        let i = usize::from(e.state).checked_sub(1)?;
        self.states.get(i).map(AsRef::as_ref)
    }

    /// The records' JSON, in order, as the simulator answers them.
    pub(crate) fn texts(&self, entries: &[&Entry]) -> Result<Vec<String>, ReadBack> {
        let mut open: Option<(u64, File)> = None;
        let mut buf = Vec::new();
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            if e.file() == INLINE {
                out.push(self.inline[e.offset() as usize].to_string());
                continue;
            }
            let path = &self.files[e.file() as usize];
            let fail = |reason: String| ReadBack {
                path: path.clone(),
                offset: e.offset(),
                reason,
            };
            if open.as_ref().is_none_or(|(n, _)| *n != e.file()) {
                let f = File::open(path).map_err(|err| fail(err.to_string()))?;
                open = Some((e.file(), f));
            }
            let Some((_, f)) = &open else { unreachable!() };
            buf.resize(e.len as usize, 0);
            f.read_exact_at(&mut buf, e.offset())
                .map_err(|err| fail(err.to_string()))?;
            out.push(record_text(&buf, e.shape).map_err(fail)?);
        }
        Ok(out)
    }

    /// The records as JSON values, in order.
    pub(crate) fn values(&self, entries: &[&Entry]) -> Result<Vec<Value>, ReadBack> {
        Ok(self
            .texts(entries)?
            .iter()
            .filter_map(|t| serde_json::from_str(t).ok())
            .collect())
    }
}

/// The record's compact JSON from its bytes in the file.
fn record_text(bytes: &[u8], shape: Shape) -> Result<String, String> {
    if shape == Shape::Verbatim {
        return String::from_utf8(bytes.to_vec()).map_err(|e| e.to_string());
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    Ok(served_value(value, shape).to_string())
}

/// What is served of a value read with `shape`.
fn served_value(value: Value, shape: Shape) -> Value {
    match (shape, value) {
        (Shape::Envelope, mut v) => v
            .get_mut("properties")
            .map(Value::take)
            .unwrap_or(Value::Null),
        (Shape::TopLevel, Value::Object(mut m)) => {
            m.retain(|k, _| !k.eq_ignore_ascii_case("@odata.context"));
            Value::Object(m)
        }
        (_, v) => v,
    }
}

/// What loading builds: the collections by Graph path and the export they index.
pub(crate) struct Loaded {
    pub(crate) collections: BTreeMap<String, Collection>,
    pub(crate) export: Export,
}

/// A collection while it is loaded: ids seen (a 128-bit hash each, so the same object from
/// a page and an archive is kept once) and, for audit events, the first 16 bytes of each id
/// (the order is by time, then id).
#[derive(Default)]
struct Building {
    context: String,
    records: Vec<Entry>,
    seen: HashSet<u128>,
    id_prefixes: Vec<u128>,
}

/// Reads every file of an export directory into an index of collections by Graph path.
/// Audit events come sorted by time, then id.
pub(crate) fn load(dir: &Path) -> Result<Loaded, LoadError> {
    let inputs = files::discover(&[dir.to_path_buf()]).map_err(|source| LoadError::Discover {
        dir: dir.to_path_buf(),
        source,
    })?;
    let mut export = Export::default();
    let mut building: BTreeMap<String, Building> = BTreeMap::new();
    let mut state_numbers: HashMap<Box<str>, u16> = HashMap::new();
    for (number, (path, _)) in inputs.files.iter().enumerate() {
        if number as u64 >= INLINE {
            return Err(LoadError::TooMany {
                dir: dir.to_path_buf(),
            });
        }
        let file = File::open(path).map_err(|source| LoadError::Open {
            path: path.clone(),
            source,
        })?;
        let by_name = context::from_file_name(path);
        let mut file_loader = FileLoader {
            number: number as u64,
            file: &file,
            by_name: by_name.as_ref(),
            export: &mut export,
            states: &mut state_numbers,
            building: &mut building,
            buf: Vec::new(),
            error: None,
        };
        let read = reader::read_stream_spans(
            std::io::BufReader::new(&file),
            &reader::ReadOptions::default(),
            &mut |item, span| file_loader.item(item, span),
        );
        if let Some(e) = file_loader.error {
            return Err(e.into_load_error(path));
        }
        read.map_err(|e| LoadError::Read {
            path: path.clone(),
            message: e.message,
            location: e.location,
        })?;
        export.files.push(path.clone());
    }
    let mut collections = BTreeMap::new();
    for (key, b) in building {
        let Building {
            context,
            mut records,
            seen,
            id_prefixes,
        } = b;
        drop(seen);
        if key == AUDITS {
            records = by_time_then_id(&export, records, id_prefixes)
                .map_err(|e| LoadError::ReadBack(e.to_string()))?;
        }
        records.shrink_to_fit();
        collections.insert(key, Collection { context, records });
    }
    Ok(Loaded {
        collections,
        export,
    })
}

/// Why loading one file stopped inside the sink.
enum FileStop {
    States,
    Io(std::io::Error),
}

impl FileStop {
    fn into_load_error(self, path: &Path) -> LoadError {
        match self {
            FileStop::States => LoadError::States {
                path: path.to_path_buf(),
            },
            FileStop::Io(source) => LoadError::Open {
                path: path.to_path_buf(),
                source,
            },
        }
    }
}

/// Indexes the records of one file as the reader hands them on.
struct FileLoader<'a> {
    number: u64,
    file: &'a File,
    by_name: Option<&'a context::Resolved>,
    export: &'a mut Export,
    states: &'a mut HashMap<Box<str>, u16>,
    building: &'a mut BTreeMap<String, Building>,
    buf: Vec<u8>,
    error: Option<FileStop>,
}

impl FileLoader<'_> {
    fn item(&mut self, item: reader::Item, span: Option<Span>) -> Result<(), reader::Stopped> {
        let reader::Item::Record { context, value, .. } = item else {
            return Ok(());
        };
        let Some(placed) = placed(context.as_deref(), value, span.as_ref(), self.by_name) else {
            return Ok(());
        };
        let stop = |this: &mut Self, e: FileStop| {
            this.error = Some(e);
            Err(reader::Stopped("the export could not be indexed".into()))
        };
        let Placed {
            key,
            context,
            value,
            shape,
        } = placed;
        let Some(obj) = value.as_object() else {
            return Ok(());
        };
        let id = obj.get("id").and_then(Value::as_str).unwrap_or_default();
        let is_audits = key == AUDITS;
        let fresh = self
            .building
            .entry(key.clone())
            .or_insert_with(|| Building {
                context,
                ..Building::default()
            })
            .seen
            .insert(id_hash(id));
        if !fresh {
            return Ok(());
        }
        let state = match value::get_ci(obj, "state").and_then(Value::as_str) {
            None => 0,
            Some(s) => match self.states.get(s) {
                Some(n) => *n,
                None if self.export.states.len() >= usize::from(u16::MAX - 1) => {
                    return stop(self, FileStop::States);
                }
                None => {
                    self.export.states.push(s.into());
                    let n = self.export.states.len() as u16;
                    self.states.insert(s.into(), n);
                    n
                }
            },
        };
        let ts = |name: &str| {
            value::get_ci(obj, name)
                .and_then(Value::as_str)
                .and_then(govlake::time::parse_ts)
                .unwrap_or(NO_TIME)
        };
        let (created, activity) = (ts("createdDateTime"), ts("activityDateTime"));
        let prefix = id_prefix(id);
        let text = value.to_string();
        let (file, at, len, shape) = match span {
            Some(span) => match locate(self.file, &span.bytes, &text, &mut self.buf) {
                Ok(Some(start)) => (self.number, start, text.len(), Shape::Verbatim),
                Ok(None) => {
                    let len = span.bytes.end - span.bytes.start;
                    (self.number, span.bytes.start, len as usize, shape)
                }
                Err(e) => return stop(self, FileStop::Io(e)),
            },
            None => {
                self.export.inline.push(text.into());
                let n = (self.export.inline.len() - 1) as u64;
                (INLINE, n, 0, Shape::Verbatim)
            }
        };
        let b = self.building.get_mut(&key).expect("added above");
        b.records.push(Entry {
            at: (file << OFFSET_BITS) | at,
            len: u32::try_from(len).unwrap_or(u32::MAX),
            state,
            shape,
            created,
            activity,
        });
        if is_audits {
            b.id_prefixes.push(prefix);
        }
        Ok(())
    }
}

/// Where a record is served, and how its bytes become it.
struct Placed {
    key: String,
    context: String,
    value: Value,
    shape: Shape,
}

/// Where one read record is served (collection path, `@odata.context`), the value served and
/// the shape of its bytes; `None` for what has no Graph path (and is not served).
fn placed(
    context: Option<&str>,
    value: Value,
    span: Option<&Span>,
    by_name: Option<&context::Resolved>,
) -> Option<Placed> {
    let top_level = span.is_some_and(|s| s.top_level);
    let plain = if top_level {
        Shape::TopLevel
    } else {
        Shape::Element
    };
    let (key, context, value, shape) = match context {
        Some(c) => (collection_path(c), c.to_string(), value, plain),
        None => match by_name {
            Some(r) if r.entity == "audit_events" => {
                let (value, shape) = if r.envelope || value.get("properties").is_some() {
                    let props = value.get("properties").cloned().unwrap_or(Value::Null);
                    (props, Shape::Envelope)
                } else {
                    (value, plain)
                };
                (
                    AUDITS.to_string(),
                    format!("{GRAPH_CONTEXT}{AUDITS}"),
                    value,
                    shape,
                )
            }
            _ => return None,
        },
    };
    Some(Placed {
        key,
        context,
        value,
        shape,
    })
}

/// Where in the file the record's compact JSON `text` lies within `span`, if it does.
fn locate(
    file: &File,
    span: &std::ops::Range<u64>,
    text: &str,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<u64>> {
    let len = (span.end - span.start) as usize;
    if len < text.len() {
        return Ok(None);
    }
    buf.resize(len, 0);
    file.read_exact_at(buf, span.start)?;
    let found = if len == text.len() {
        (buf.as_slice() == text.as_bytes()).then_some(0)
    } else {
        memchr::memmem::find(buf, text.as_bytes())
    };
    Ok(found.map(|i| span.start + i as u64))
}

/// A 128-bit hash of an id (two SipHash runs with fixed keys): equal for equal ids, and two
/// different ids of one collection share one with a chance far below 10⁻²⁰.
fn id_hash(id: &str) -> u128 {
    let half = |salt: u8| {
        let mut h = std::hash::DefaultHasher::new();
        salt.hash(&mut h);
        id.hash(&mut h);
        h.finish()
    };
    (u128::from(half(1)) << 64) | u128::from(half(2))
}

/// An id's first 16 bytes as a number (zero-padded): ordered as the ids are, except that
/// ids sharing their first 16 bytes tie.
fn id_prefix(id: &str) -> u128 {
    let mut b = [0u8; 16];
    let n = id.len().min(16);
    b[..n].copy_from_slice(&id.as_bytes()[..n]);
    u128::from_be_bytes(b)
}

/// Audit events ordered by time, then id: by the id's first 16 bytes, and where those tie,
/// by the whole ids read back from the files.
fn by_time_then_id(
    export: &Export,
    records: Vec<Entry>,
    prefixes: Vec<u128>,
) -> Result<Vec<Entry>, ReadBack> {
    let mut order: Vec<u32> = (0..records.len() as u32).collect();
    let key = |i: u32| (records[i as usize].activity(), prefixes[i as usize]);
    order.sort_by_key(|&i| key(i));
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && key(order[end]) == key(order[start]) {
            end += 1;
        }
        if end - start > 1 {
            let run: Vec<&Entry> = order[start..end]
                .iter()
                .map(|&i| &records[i as usize])
                .collect();
            let ids: Vec<String> = export
                .values(&run)?
                .iter()
                .map(|v| v["id"].as_str().unwrap_or_default().to_string())
                .collect();
            let mut tied: Vec<(String, u32)> = ids
                .into_iter()
                .zip(order[start..end].iter().copied())
                .collect();
            tied.sort();
            for (slot, (_, i)) in order[start..end].iter_mut().zip(tied) {
                *slot = i;
            }
        }
        start = end;
    }
    drop(prefixes);
    Ok(order.iter().map(|&i| records[i as usize]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_32_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 32);
    }

    #[test]
    fn id_prefixes_order_as_ids_do() {
        let mut ids = [
            "b",
            "",
            "IGA_38c666d9_00000002",
            "a\u{1}",
            "ab",
            "IGA_38c666d9_00000001",
            "a",
            "Z",
        ];
        ids.sort();
        for w in ids.windows(2) {
            assert!(id_prefix(w[0]) <= id_prefix(w[1]), "{:?}", w);
        }
        assert_eq!(
            id_prefix("IGA_38c666d9_00000001"),
            id_prefix("IGA_38c666d9_00000002"),
            "the first 16 bytes tie; the whole ids decide"
        );
    }
}
