//! Streaming JSON readers for export files: Graph list-response pages (`value`, with
//! `@odata.context` and `@odata.nextLink`), Event Hub style `records` wrappers, bare arrays,
//! single objects, and JSON Lines (several top-level values, CRLF or LF), in UTF-8 (with or
//! without a byte order mark) or UTF-16 (what Windows PowerShell writes).
//!
//! The structure (top-level values, a page's keys, its list) is walked by a lenient byte
//! scanner; each record's bytes are then parsed on their own. So a record that is not valid
//! JSON (garbage, invalid UTF-8, a lone `\ud800` escape, a stray newline in a JSON Lines
//! file) is handed on as [`Item::Bad`] and reading goes on with the next record or line:
//! every record of the source is either a [`Item::Record`] or a [`Item::Bad`]. A page's
//! records reach the sink one at a time and a record is never held past `max_record_bytes`,
//! so a page of any size is read in bounded memory.

use std::fmt;
use std::io::{BufRead, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};

/// What the reader hands to its sink.
#[derive(Debug)]
pub enum Item {
    /// One object, with the `@odata.context` known when it was read.
    Record {
        /// `@odata.context` of its page, if any.
        context: Option<Arc<str>>,
        /// 0-based position in the file (records and bad records alike).
        index: u64,
        /// The object.
        value: Value,
    },
    /// A record (a list element, or a JSON Lines line) that could not be read.
    Bad {
        /// `@odata.context` of its page, if known.
        context: Option<Arc<str>>,
        /// 0-based position in the file.
        index: u64,
        /// Line and column where it starts.
        location: String,
        /// Why it could not be read.
        message: String,
        /// Its first bytes, as text (lossy).
        raw: String,
    },
    /// A page's list ended (possibly empty) and the page was read to its end.
    PageEnd {
        /// `@odata.context` of the page.
        context: Option<Arc<str>>,
        /// `@odata.nextLink`: the page after this one (none on a listing's last page).
        next_link: Option<String>,
        /// `@govlake.requestUrl`: the URL this page was fetched from (written by live ingestion).
        request_url: Option<String>,
        /// Why the page cannot count as read whole although its list ended (an annotation
        /// that is not valid, records read before its `@odata.context` past the buffer).
        problem: Option<String>,
    },
}

/// A sink's refusal of an item: the read stops there, and its [`ReadError`] says it was
/// stopped (not a problem with the file).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Stopped(pub Box<dyn std::error::Error + Send + Sync>);

/// Why reading stopped.
#[derive(Debug)]
pub struct ReadError {
    /// Sentence saying what is wrong.
    pub message: String,
    /// Where (line and column, when known).
    pub location: String,
    /// Whether the sink stopped the read (not a problem with the file).
    pub stopped: bool,
    /// `@odata.context` of the page being read when it stopped, if known.
    pub context: Option<String>,
}

/// How to read.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Largest record kept, in bytes of JSON; a longer one is a bad record (its first bytes
    /// are kept for the reason).
    pub max_record_bytes: usize,
    /// Read the file as JSON Lines from the start (`.jsonl`, `.ndjson`). A `.json` file with
    /// several top-level values is read as JSON Lines after its first value anyway.
    pub json_lines: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            max_record_bytes: 64 * 1024 * 1024,
            json_lines: false,
        }
    }
}

/// Elements buffered while a page's `@odata.context` has not been seen yet (PowerShell may
/// write it after `value`); past this they are passed on and the file name decides.
const MAX_BUFFERED_WITHOUT_CONTEXT: usize = 10_000;

/// Bytes of a bad record kept for its reason and the quarantine.
const RAW_PREFIX_BYTES: usize = 64 * 1024;

/// Annotation live ingestion adds to every page it spools: the URL it fetched the page from.
pub const REQUEST_URL_ANNOTATION: &str = "@govlake.requestUrl";

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

/// Reads every top-level value of a JSON or JSON Lines stream, with default options.
pub fn read_stream<R: Read>(
    reader: R,
    sink: &mut dyn FnMut(Item) -> Result<(), Stopped>,
) -> Result<(), ReadError> {
    read_stream_with(reader, &ReadOptions::default(), sink)
}

/// Reads every top-level value of a JSON or JSON Lines stream.
///
/// Returns an error only for what loses records beyond counting: a file that cannot be
/// read, is empty, or ends (or breaks) inside a page's list. Records that are not JSON are
/// [`Item::Bad`]s, not errors.
pub fn read_stream_with<R: Read>(
    reader: R,
    options: &ReadOptions,
    sink: &mut dyn FnMut(Item) -> Result<(), Stopped>,
) -> Result<(), ReadError> {
    read_stream_spans(reader, options, &mut |item, _| sink(item))
}

/// Where a record lies in its file, so it can be read again later without reading the file
/// through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// Byte range of its JSON in the file.
    pub bytes: std::ops::Range<u64>,
    /// A whole top-level object (one record, whose `@odata.context` members the reader
    /// drops), not an element of a list.
    pub top_level: bool,
}

/// [`read_stream_with`], with each [`Item::Record`] handed on with its [`Span`] in the file
/// read; `None` for a UTF-16 file (whose bytes are decoded before they are scanned) and for
/// items that are not records (a bad list element may have one).
pub fn read_stream_spans<R: Read>(
    reader: R,
    options: &ReadOptions,
    sink: &mut dyn FnMut(Item, Option<Span>) -> Result<(), Stopped>,
) -> Result<(), ReadError> {
    let mut head = std::io::BufReader::with_capacity(1 << 16, reader);
    let io_err = |e: std::io::Error| ReadError {
        message: format!("the file could not be read: {e}"),
        location: String::new(),
        stopped: false,
        context: None,
    };
    let start = head.fill_buf().map_err(io_err)?;
    let encoding = Encoding::sniff(start);
    if encoding == Encoding::Utf8Bom {
        head.consume(3);
    }
    let result = if matches!(encoding, Encoding::Utf16Le | Encoding::Utf16Be) {
        let decoded = Utf16Reader::new(head, encoding == Encoding::Utf16Le);
        Parser::new(
            std::io::BufReader::with_capacity(1 << 20, decoded),
            options,
            sink,
            None,
        )
        .run()
    } else {
        let bom = if encoding == Encoding::Utf8Bom { 3 } else { 0 };
        Parser::new(head, options, sink, Some(bom)).run()
    };
    result.map_err(|e| match e {
        Stop::Sink(stopped) => ReadError {
            message: stopped.to_string(),
            location: String::new(),
            stopped: true,
            context: None,
        },
        Stop::Io(e) => io_err(e),
        Stop::File {
            message,
            location,
            context,
        } => ReadError {
            message,
            location,
            stopped: false,
            context: context.map(|c| c.to_string()),
        },
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Utf8,
    Utf8Bom,
    Utf16Le,
    Utf16Be,
}

impl Encoding {
    fn sniff(b: &[u8]) -> Self {
        match b {
            [0xEF, 0xBB, 0xBF, ..] => Encoding::Utf8Bom,
            [0xFF, 0xFE, ..] => Encoding::Utf16Le,
            [0xFE, 0xFF, ..] => Encoding::Utf16Be,
            // No byte order mark: JSON starts with an ASCII character, so a NUL beside it
            // gives UTF-16 away.
            [a, 0, ..] if *a != 0 && a.is_ascii() => Encoding::Utf16Le,
            [0, a, ..] if *a != 0 && a.is_ascii() => Encoding::Utf16Be,
            _ => Encoding::Utf8,
        }
    }
}

/// UTF-16 → UTF-8, streaming. A byte order mark is dropped; an unpaired surrogate becomes
/// U+FFFD (the record then holds that, as any UTF-16 reader would show it).
struct Utf16Reader<R> {
    inner: R,
    little_endian: bool,
    out: Vec<u8>,
    pos: usize,
    pending_high: Option<u16>,
    started: bool,
    odd: Option<u8>,
}

impl<R: BufRead> Utf16Reader<R> {
    fn new(inner: R, little_endian: bool) -> Self {
        Self {
            inner,
            little_endian,
            out: Vec::new(),
            pos: 0,
            pending_high: None,
            started: false,
            odd: None,
        }
    }

    fn push(&mut self, c: char) {
        let mut b = [0u8; 4];
        self.out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
    }

    fn fill(&mut self) -> std::io::Result<()> {
        self.out.clear();
        self.pos = 0;
        while self.out.is_empty() {
            let buf = self.inner.fill_buf()?;
            if buf.is_empty() {
                if self.pending_high.take().is_some() || self.odd.take().is_some() {
                    self.push(char::REPLACEMENT_CHARACTER);
                }
                return Ok(());
            }
            let mut bytes: Vec<u8> = Vec::with_capacity(buf.len() + 1);
            bytes.extend(self.odd.take());
            bytes.extend_from_slice(buf);
            let n = buf.len();
            self.inner.consume(n);
            if bytes.len() % 2 == 1 {
                self.odd = bytes.pop();
            }
            for pair in bytes.chunks_exact(2) {
                let unit = if self.little_endian {
                    u16::from_le_bytes([pair[0], pair[1]])
                } else {
                    u16::from_be_bytes([pair[0], pair[1]])
                };
                if !self.started {
                    self.started = true;
                    if unit == 0xFEFF {
                        continue;
                    }
                }
                match (self.pending_high.take(), unit) {
                    (Some(high), 0xDC00..=0xDFFF) => {
                        let c = 0x10000
                            + ((u32::from(high) - 0xD800) << 10)
                            + (u32::from(unit) - 0xDC00);
                        self.push(char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER));
                    }
                    (high, 0xD800..=0xDBFF) => {
                        if high.is_some() {
                            self.push(char::REPLACEMENT_CHARACTER);
                        }
                        self.pending_high = Some(unit);
                    }
                    (high, 0xDC00..=0xDFFF) => {
                        if high.is_some() {
                            self.push(char::REPLACEMENT_CHARACTER);
                        }
                        self.push(char::REPLACEMENT_CHARACTER);
                    }
                    (high, u) => {
                        if high.is_some() {
                            self.push(char::REPLACEMENT_CHARACTER);
                        }
                        self.push(
                            char::from_u32(u32::from(u)).unwrap_or(char::REPLACEMENT_CHARACTER),
                        );
                    }
                }
            }
        }
        Ok(())
    }
}

impl<R: BufRead> Read for Utf16Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.out.len() {
            self.fill()?;
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Why a value is not valid JSON (serde_json's reason, without its position: the reader
/// reports the position in the file).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct NotJson(String);

/// Why parsing stopped.
enum Stop {
    Sink(Stopped),
    Io(std::io::Error),
    File {
        message: String,
        location: String,
        context: Option<Arc<str>>,
    },
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Self {
        Stop::Io(e)
    }
}

/// Why one value could not be scanned.
#[derive(Debug)]
enum Broken {
    /// The input ended inside it.
    Eof,
    /// A line ended inside it (JSON Lines): the line break has been read.
    LineBreak,
    /// A byte that cannot start or continue it (not read).
    Unexpected(u8),
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Broken::Eof => f.write_str("the JSON ends too early (truncated file?)"),
            Broken::LineBreak => f.write_str("the line ends inside a JSON value"),
            Broken::Unexpected(b) => {
                write!(f, "this is not valid JSON: unexpected {}", show_byte(*b))
            }
        }
    }
}

fn show_byte(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("`{}`", b as char)
    } else {
        format!("byte 0x{b:02x}")
    }
}

/// Bytes of one value, kept up to a limit.
struct Capture {
    bytes: Vec<u8>,
    limit: usize,
    total: usize,
}

impl Capture {
    fn new(limit: usize) -> Self {
        Self {
            bytes: Vec::new(),
            limit,
            total: 0,
        }
    }
    fn push(&mut self, b: &[u8]) {
        self.total += b.len();
        let room = self.limit.saturating_sub(self.bytes.len());
        self.bytes.extend_from_slice(&b[..b.len().min(room)]);
    }
    fn overflowed(&self) -> bool {
        self.total > self.bytes.len()
    }
    fn text(&self) -> String {
        let n = self.bytes.len().min(RAW_PREFIX_BYTES);
        String::from_utf8_lossy(&self.bytes[..n]).into_owned()
    }
}

/// Where the scanner is.
#[derive(Clone, Copy)]
struct Pos {
    line: u64,
    column: u64,
    offset: u64,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// What a top-level object has shown so far: a page's annotations and the records held until
/// its `@odata.context` is known, or one record's members.
#[derive(Default)]
struct TopObject {
    context: Option<Arc<str>>,
    next_link: Option<String>,
    request_url: Option<String>,
    other: Map<String, Value>,
    is_page: bool,
    pending: Vec<(Item, Option<Span>)>,
    /// The first reason the record (or a page annotation) cannot be used.
    problem: Option<String>,
    /// Bytes of the record's members kept so far.
    kept: usize,
}

impl TopObject {
    /// A member read whole: parsed, and the page annotations noted.
    fn member(&mut self, key: String, bytes: &[u8]) {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(v) => {
                if key.eq_ignore_ascii_case("@odata.context") {
                    if let Value::String(s) = &v {
                        self.context = Some(Arc::from(s.as_str()));
                    }
                } else if key.eq_ignore_ascii_case("@odata.nextLink") {
                    self.next_link = v.as_str().map(str::to_string);
                } else if key.eq_ignore_ascii_case(REQUEST_URL_ANNOTATION) {
                    self.request_url = v.as_str().map(str::to_string);
                }
                self.other.insert(key, v);
            }
            Err(e) => {
                self.problem.get_or_insert(format!(
                    "this is not valid JSON: `{}`: {}",
                    truncate_key(&key),
                    strip_position(&e)
                ));
            }
        }
    }
}

struct Parser<'s, R> {
    input: R,
    line: u64,
    column: u64,
    /// JSON Lines: a line break outside a string ends whatever value is open.
    lines: bool,
    max_record: usize,
    index: u64,
    /// Bytes of the top-level record being read, for the quarantine if it is bad.
    recording: Option<Capture>,
    /// A page's records were passed on before its `@odata.context` was known.
    passed_without_context: bool,
    /// The last byte read, and how many were.
    last: Option<u8>,
    offset: u64,
    /// Where `offset` 0 is in the file (after a byte order mark); `None` when the bytes
    /// scanned are not the file's (decoded UTF-16).
    base: Option<u64>,
    sink: &'s mut dyn FnMut(Item, Option<Span>) -> Result<(), Stopped>,
}

impl<'s, R: BufRead> Parser<'s, R> {
    fn new(
        input: R,
        options: &ReadOptions,
        sink: &'s mut dyn FnMut(Item, Option<Span>) -> Result<(), Stopped>,
        base: Option<u64>,
    ) -> Self {
        Self {
            input,
            line: 1,
            column: 1,
            lines: options.json_lines,
            max_record: options.max_record_bytes.max(1),
            index: 0,
            recording: None,
            passed_without_context: false,
            last: None,
            offset: 0,
            base,
            sink,
        }
    }

    /// Bytes of one record held at most: the limit applies to its compact JSON, which the
    /// ingest checks; as written (indented, UTF-16) it may take up to twice that.
    fn hard_limit(&self) -> usize {
        self.max_record.saturating_mul(2)
    }

    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.column,
            offset: self.offset,
        }
    }

    fn emit(&mut self, item: Item) -> Result<(), Stop> {
        self.emit_at(item, None)
    }

    fn emit_at(&mut self, item: Item, span: Option<Span>) -> Result<(), Stop> {
        if matches!(item, Item::Record { .. } | Item::Bad { .. }) {
            self.index += 1;
        }
        (self.sink)(item, span).map_err(Stop::Sink)
    }

    /// The span in the file from scanner offset `start` to where the scanner is.
    fn span_from(&self, start: u64, top_level: bool) -> Option<Span> {
        self.base.map(|b| Span {
            bytes: b + start..b + self.offset,
            top_level,
        })
    }

    fn advance(&mut self, bytes: &[u8]) {
        if let Some(r) = &mut self.recording {
            r.push(bytes);
        }
        if let Some(b) = bytes.last() {
            self.last = Some(*b);
        }
        self.offset += bytes.len() as u64;
        for &b in bytes {
            if b == b'\n' {
                self.line += 1;
                self.column = 1;
            } else {
                self.column += 1;
            }
        }
    }

    fn peek(&mut self) -> Result<Option<u8>, Stop> {
        Ok(self.input.fill_buf()?.first().copied())
    }

    fn bump(&mut self) {
        let b = self.input.fill_buf().ok().and_then(|b| b.first().copied());
        if let Some(b) = b {
            self.advance(&[b]);
            self.input.consume(1);
        }
    }

    /// Skips whitespace; in JSON Lines mode stops before a line break unless `lines_too`.
    fn skip_ws(&mut self, lines_too: bool) -> Result<Option<u8>, Stop> {
        loop {
            match self.peek()? {
                Some(b'\n') if self.lines && !lines_too => return Ok(Some(b'\n')),
                Some(b' ' | b'\t' | b'\r' | b'\n') => self.bump(),
                other => return Ok(other),
            }
        }
    }

    /// Skips to just past the next line break (or the end).
    fn skip_line(&mut self) -> Result<(), Stop> {
        loop {
            let buf = self.input.fill_buf()?;
            if buf.is_empty() {
                return Ok(());
            }
            if let Some(i) = buf.iter().position(|&b| b == b'\n') {
                let n = i + 1;
                let taken = buf[..n].to_vec();
                self.advance(&taken);
                self.input.consume(n);
                return Ok(());
            }
            let n = buf.len();
            let taken = buf.to_vec();
            self.advance(&taken);
            self.input.consume(n);
        }
    }

    /// Scans one JSON value structurally (strings, nesting), appending its bytes to `out`.
    /// Does not validate tokens: that is left to serde on the captured bytes.
    fn scan_value(&mut self, out: &mut Capture) -> Result<Result<(), Broken>, Stop> {
        let Some(first) = self.peek()? else {
            return Ok(Err(Broken::Eof));
        };
        if first == b'\n' && self.lines {
            return Ok(Err(Broken::LineBreak));
        }
        if matches!(
            first,
            b'}' | b']' | b',' | b':' | b' ' | b'\t' | b'\r' | b'\n'
        ) {
            return Ok(Err(Broken::Unexpected(first)));
        }
        let scalar = !matches!(first, b'{' | b'[' | b'"');
        let mut depth: u32 = 0;
        let mut in_str = false;
        let mut esc = false;
        let mut started = false;
        loop {
            let buf = self.input.fill_buf()?;
            if buf.is_empty() {
                return Ok(if scalar { Ok(()) } else { Err(Broken::Eof) });
            }
            let mut end: Option<(usize, Result<(), Broken>)> = None;
            for (i, &b) in buf.iter().enumerate() {
                if !started {
                    started = true;
                    match b {
                        b'"' => in_str = true,
                        b'{' | b'[' => depth = 1,
                        _ => {}
                    }
                    continue;
                }
                if in_str {
                    if esc {
                        esc = false;
                    } else if b == b'\\' {
                        esc = true;
                    } else if b == b'"' {
                        in_str = false;
                        if depth == 0 {
                            end = Some((i + 1, Ok(())));
                            break;
                        }
                    } else if b == b'\n' {
                        // Never valid inside a JSON string: the line (or the file) broke.
                        end = Some((i + 1, Err(Broken::LineBreak)));
                        break;
                    }
                    continue;
                }
                if scalar {
                    if matches!(b, b',' | b']' | b'}' | b':' | b' ' | b'\t' | b'\r' | b'\n') {
                        end = Some((i, Ok(())));
                        break;
                    }
                    continue;
                }
                match b {
                    b'"' => in_str = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some((i + 1, Ok(())));
                            break;
                        }
                    }
                    b'\n' if self.lines => {
                        end = Some((i + 1, Err(Broken::LineBreak)));
                        break;
                    }
                    _ => {}
                }
            }
            let (n, result) = match end {
                Some((n, r)) => (n, Some(r)),
                None => (buf.len(), None),
            };
            let taken = buf[..n].to_vec();
            out.push(&taken);
            self.advance(&taken);
            self.input.consume(n);
            if let Some(r) = result {
                return Ok(r);
            }
        }
    }

    /// Scans a value that is not kept (bounded capture).
    fn skip_value(&mut self) -> Result<Result<(), Broken>, Stop> {
        let mut c = Capture::new(0);
        self.scan_value(&mut c)
    }

    fn run(mut self) -> Result<(), Stop> {
        let mut values = 0u64;
        let mut any_content = false;
        loop {
            let Some(b) = self.skip_ws(true)? else { break };
            any_content = true;
            let at = self.pos();
            values += 1;
            let result = match b {
                b'{' => self.top_object(at),
                b'[' => {
                    self.bump();
                    self.list(None, None, "list", at).and_then(|()| {
                        self.emit(Item::PageEnd {
                            context: None,
                            next_link: None,
                            request_url: None,
                            problem: None,
                        })
                    })
                }
                _ => {
                    let mut c = Capture::new(RAW_PREFIX_BYTES);
                    let scanned = self.scan_value(&mut c)?;
                    let message = match (scanned, serde_json::from_slice::<Value>(&c.bytes)) {
                        (Ok(()), Ok(_)) => "a top-level value must be an object (a Graph page or one record) or a list of records".to_string(),
                        (Err(e), _) => e.to_string(),
                        (Ok(()), Err(e)) => format!("this is not valid JSON: {}", strip_position(&e)),
                    };
                    self.bad_then_next_line(None, at, message, c.text())
                }
            };
            match result {
                // JSON Lines: a line that breaks off costs that line; the next one is read.
                Err(Stop::File {
                    message,
                    location,
                    context,
                }) if self.lines => {
                    let message = format!("{message} (at {location})");
                    self.bad_then_next_line(context, at, message, String::new())?;
                }
                other => other?,
            }
            if values == 1 && self.line == at.line && !self.lines {
                // A first value on one line, and more after it: JSON Lines. (Documents
                // written one after another, indented, stay documents.)
                self.lines = true;
            }
        }
        if !any_content {
            return Err(Stop::File {
                message: "the file is empty (no JSON in it)".into(),
                location: String::new(),
                context: None,
            });
        }
        Ok(())
    }

    /// A bad top-level value: reported, and reading goes on at the next line.
    fn bad_then_next_line(
        &mut self,
        context: Option<Arc<str>>,
        at: Pos,
        message: String,
        raw: String,
    ) -> Result<(), Stop> {
        let index = self.index;
        self.emit(Item::Bad {
            context,
            index,
            location: at.to_string(),
            message,
            raw,
        })?;
        // What is left of the line belongs to the bad value; the next line starts afresh.
        if self.offset == at.offset || self.last != Some(b'\n') {
            self.skip_line()?;
        }
        self.lines = true;
        Ok(())
    }

    fn string_at(&mut self) -> Result<Result<String, NotJson>, Stop> {
        let mut c = Capture::new(1 << 20);
        if let Err(e) = self.scan_value(&mut c)? {
            return Ok(Err(NotJson(e.to_string())));
        }
        Ok(serde_json::from_slice::<String>(&c.bytes).map_err(|e| NotJson(strip_position(&e))))
    }

    /// A top-level object: a page (its list streamed) or one record.
    fn top_object(&mut self, at: Pos) -> Result<(), Stop> {
        // The record's bytes are kept (up to a limit) for the quarantine, until it turns out
        // to be a page.
        self.recording = Some(Capture::new(RAW_PREFIX_BYTES));
        self.bump(); // `{`
        let mut obj = TopObject::default();
        let broke = self.top_members(&mut obj)?;
        let raw = self.recording.take().map(|c| c.text()).unwrap_or_default();
        if let Some((message, where_)) = broke {
            return self.top_object_broken(obj, at, (message, where_), raw);
        }
        if obj.is_page {
            return self.page_end(obj);
        }
        let TopObject {
            context,
            mut other,
            problem,
            ..
        } = obj;
        let index = self.index;
        if let Some(message) = problem {
            return self.emit(Item::Bad {
                context,
                index,
                location: at.to_string(),
                message,
                raw,
            });
        }
        other.retain(|k, _| !k.eq_ignore_ascii_case("@odata.context"));
        let span = self.span_from(at.offset, true);
        self.emit_at(
            Item::Record {
                context,
                index,
                value: Value::Object(other),
            },
            span,
        )
    }

    /// The members of a top-level object, after its `{`, to its `}`; `Some` says where and
    /// how it broke off.
    fn top_members(&mut self, obj: &mut TopObject) -> Result<Option<(String, Pos)>, Stop> {
        let mut first = true;
        loop {
            let Some(b) = self.skip_ws(false)? else {
                return Ok(Some((Broken::Eof.to_string(), self.pos())));
            };
            if b == b'}' && first {
                self.bump();
                return Ok(None);
            }
            first = false;
            if b != b'"' {
                let p = self.pos();
                return Ok(Some((
                    format!(
                        "this is not valid JSON: expected a key, found {}",
                        show_byte(b)
                    ),
                    p,
                )));
            }
            let key = match self.string_at()? {
                Ok(k) => k,
                Err(e) => {
                    return Ok(Some((
                        format!("this is not valid JSON: a key: {e}"),
                        self.pos(),
                    )));
                }
            };
            if self.skip_ws(false)? != Some(b':') {
                let p = self.pos();
                return Ok(Some((
                    format!(
                        "this is not valid JSON: expected `:` after key `{}`",
                        truncate_key(&key)
                    ),
                    p,
                )));
            }
            self.bump();
            let Some(vb) = self.skip_ws(false)? else {
                return Ok(Some((Broken::Eof.to_string(), self.pos())));
            };
            if let Some(broke) = self.top_member(obj, key, vb)? {
                return Ok(Some(broke));
            }
            match self.skip_ws(false)? {
                Some(b',') => self.bump(),
                Some(b'}') => {
                    self.bump();
                    return Ok(None);
                }
                Some(b) => {
                    let p = self.pos();
                    return Ok(Some((
                        format!(
                            "this is not valid JSON: expected `,` or `}}`, found {}",
                            show_byte(b)
                        ),
                        p,
                    )));
                }
                None => return Ok(Some((Broken::Eof.to_string(), self.pos()))),
            }
        }
    }

    /// One member `key` of a top-level object, whose value starts with byte `vb`: a page's
    /// list (streamed), a page's other member (skipped), or a record's member (kept).
    fn top_member(
        &mut self,
        obj: &mut TopObject,
        key: String,
        vb: u8,
    ) -> Result<Option<(String, Pos)>, Stop> {
        let is_list_key = key.eq_ignore_ascii_case("value") || key.eq_ignore_ascii_case("records");
        if is_list_key && vb == b'[' {
            obj.is_page = true;
            self.recording = None;
            let list_at = self.pos();
            self.bump();
            if let Err(stop) = self.list(obj.context.clone(), Some(&mut obj.pending), &key, list_at)
            {
                // Records read before a truncation or a syntax error are kept, not lost.
                self.flush_pending(&obj.context, &mut obj.pending)?;
                return Err(stop);
            }
        } else if is_list_key {
            let kind = match vb {
                b'{' => "an object",
                b'"' => "a string",
                b't' | b'f' => "a boolean",
                b'n' => "null",
                _ => "a number",
            };
            let p = self.pos();
            return Ok(Some((
                format!("the page's `{key}` is {kind}, not a list"),
                p,
            )));
        } else if obj.is_page && !key.starts_with('@') {
            // Other members of a page say nothing about its records.
            if let Err(e) = self.skip_value()? {
                return Ok(Some((e.to_string(), self.pos())));
            }
        } else {
            // A record's members together stay within the record limit.
            let limit = if obj.is_page {
                1 << 20
            } else {
                self.hard_limit().saturating_sub(obj.kept)
            };
            let mut c = Capture::new(limit);
            if let Err(e) = self.scan_value(&mut c)? {
                return Ok(Some((e.to_string(), self.pos())));
            }
            obj.kept += c.bytes.len();
            if c.overflowed() {
                obj.problem.get_or_insert(format!(
                    "the record is over the {} byte limit per record",
                    self.max_record
                ));
            } else {
                obj.member(key, &c.bytes);
            }
        }
        Ok(None)
    }

    /// A top-level object that broke off at `where_`: a page's records read so far are
    /// kept; a record is reported bad and reading goes on at the next line when it can.
    fn top_object_broken(
        &mut self,
        mut obj: TopObject,
        at: Pos,
        (message, where_): (String, Pos),
        raw: String,
    ) -> Result<(), Stop> {
        if obj.is_page {
            self.flush_pending(&obj.context, &mut obj.pending)?;
            return Err(Stop::File {
                message: format!("the page breaks off after its list: {message}"),
                location: where_.to_string(),
                context: obj.context,
            });
        }
        // Broke on the value's first line (a line break right after it counts as that line)?
        let on_first_line =
            where_.line == at.line || (where_.line == at.line + 1 && where_.column == 1);
        if !self.lines && !on_first_line {
            // A document (not JSON Lines) that breaks: nothing after can be trusted.
            return Err(Stop::File {
                message,
                location: where_.to_string(),
                context: obj.context,
            });
        }
        self.bad_then_next_line(obj.context, at, message, raw)
    }

    /// The end of a whole page: its held records handed on, then its annotations.
    fn page_end(&mut self, mut obj: TopObject) -> Result<(), Stop> {
        self.flush_pending(&obj.context, &mut obj.pending)?;
        let problem = if let Some(p) = obj.problem {
            Some(format!("a page annotation could not be read ({p})"))
        } else if obj.context.is_some() && std::mem::take(&mut self.passed_without_context) {
            Some(format!(
                "its `@odata.context` comes after more than {MAX_BUFFERED_WITHOUT_CONTEXT} records, which were read without it"
            ))
        } else {
            None
        };
        self.emit(Item::PageEnd {
            context: obj.context,
            next_link: obj.next_link,
            request_url: obj.request_url,
            problem,
        })
    }

    /// Hands on the items held until the page's `@odata.context` was known, with it.
    fn flush_pending(
        &mut self,
        context: &Option<Arc<str>>,
        pending: &mut Vec<(Item, Option<Span>)>,
    ) -> Result<(), Stop> {
        for (mut item, span) in pending.drain(..) {
            if let Item::Record { context: c, .. } | Item::Bad { context: c, .. } = &mut item {
                c.clone_from(context);
            }
            (self.sink)(item, span).map_err(Stop::Sink)?;
        }
        Ok(())
    }

    /// Hands on a record or a bad record, or holds it while the context is unknown.
    fn element(
        &mut self,
        item: Item,
        span: Option<Span>,
        pending: &mut Option<&mut Vec<(Item, Option<Span>)>>,
    ) -> Result<(), Stop> {
        match pending {
            Some(p) if p.len() < MAX_BUFFERED_WITHOUT_CONTEXT => {
                p.push((item, span));
                self.index += 1;
                Ok(())
            }
            Some(_) => {
                self.passed_without_context = true;
                self.emit_at(item, span)
            }
            None => self.emit_at(item, span),
        }
    }

    /// A list's elements (after its `[`), each a record or a bad record, to its `]`.
    fn list(
        &mut self,
        context: Option<Arc<str>>,
        mut pending: Option<&mut Vec<(Item, Option<Span>)>>,
        key: &str,
        at: Pos,
    ) -> Result<(), Stop> {
        if context.is_some() {
            pending = None;
        }
        let mut first = true;
        loop {
            let Some(b) = self.skip_ws(false)? else {
                return Err(Stop::File {
                    message: format!(
                        "{} (inside the `{key}` list that starts at {at})",
                        Broken::Eof
                    ),
                    location: self.pos().to_string(),
                    context: context.clone(),
                });
            };
            if b == b']' && first {
                self.bump();
                return Ok(());
            }
            first = false;
            let element_at = self.pos();
            let mut c = Capture::new(self.hard_limit());
            match self.scan_value(&mut c)? {
                Ok(()) => {}
                Err(Broken::LineBreak) => {
                    return Err(Stop::File {
                        message: format!(
                            "the line ends inside the `{key}` list that starts at {at}"
                        ),
                        location: element_at.to_string(),
                        context: context.clone(),
                    });
                }
                Err(e) => {
                    return Err(Stop::File {
                        message: format!("{e} (inside the `{key}` list that starts at {at})"),
                        location: element_at.to_string(),
                        context: context.clone(),
                    });
                }
            }
            let span = self.span_from(element_at.offset, false);
            let parsed = if c.overflowed() {
                Err(format!(
                    "the record is {} bytes of JSON as written, over the {} byte limit per record",
                    c.total, self.max_record
                ))
            } else {
                serde_json::from_slice::<Value>(&c.bytes)
                    .map_err(|e| format!("this is not valid JSON: {}", strip_position(&e)))
            };
            match parsed {
                Ok(value) => {
                    let index = self.index;
                    let item = Item::Record {
                        context: context.clone(),
                        index,
                        value,
                    };
                    self.element(item, span, &mut pending)?;
                }
                Err(message) => {
                    let index = self.index;
                    let item = Item::Bad {
                        context: context.clone(),
                        index,
                        location: element_at.to_string(),
                        message,
                        raw: c.text(),
                    };
                    self.element(item, span, &mut pending)?;
                }
            }
            match self.skip_ws(false)? {
                Some(b',') => self.bump(),
                Some(b']') => {
                    self.bump();
                    return Ok(());
                }
                Some(b) => {
                    return Err(Stop::File {
                        message: format!(
                            "this is not valid JSON: expected `,` or `]` in the `{key}` list that starts at {at}, found {}",
                            show_byte(b)
                        ),
                        location: self.pos().to_string(),
                        context: context.clone(),
                    });
                }
                None => {
                    return Err(Stop::File {
                        message: format!(
                            "{} (inside the `{key}` list that starts at {at})",
                            Broken::Eof
                        ),
                        location: self.pos().to_string(),
                        context: context.clone(),
                    });
                }
            }
        }
    }
}

fn truncate_key(k: &str) -> String {
    k.chars().take(80).collect()
}

fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default)]
    struct Read {
        records: Vec<(Option<String>, Value)>,
        bad: Vec<(u64, String, String)>,
        page_ends: Vec<(Option<String>, Option<String>)>,
        error: Option<ReadError>,
    }

    fn read_with(bytes: &[u8], json_lines: bool) -> Read {
        let mut out = Read::default();
        let options = ReadOptions {
            json_lines,
            ..ReadOptions::default()
        };
        let r = read_stream_with(bytes, &options, &mut |i| {
            match i {
                Item::Record { context, value, .. } => {
                    out.records.push((context.map(|c| c.to_string()), value))
                }
                Item::Bad {
                    index,
                    location,
                    message,
                    ..
                } => out.bad.push((index, location, message)),
                Item::PageEnd {
                    context, next_link, ..
                } => out
                    .page_ends
                    .push((context.map(|c| c.to_string()), next_link)),
            }
            Ok(())
        });
        out.error = r.err();
        out
    }

    fn read(s: &str) -> Read {
        read_with(s.as_bytes(), false)
    }

    #[test]
    fn spans_point_at_each_records_bytes_in_the_file() {
        // A byte order mark, an indented page, then a top-level record on one line.
        let file = "\u{feff}{\"@odata.context\": \"c\", \"value\": [\n  {\"id\": \"a\"},\n  {\"id\":\"b\", \"x\": [1, 2]}\n]}\n{\"@odata.context\":\"d\",\"id\":\"c\"}\n";
        let bytes = file.as_bytes();
        let mut got = vec![];
        read_stream_spans(bytes, &ReadOptions::default(), &mut |item, span| {
            if let Item::Record { value, .. } = item {
                got.push((value, span.expect("a UTF-8 record has a span")));
            }
            Ok(())
        })
        .unwrap();
        let texts: Vec<(&str, bool)> = got
            .iter()
            .map(|(_, s)| {
                let text =
                    std::str::from_utf8(&bytes[s.bytes.start as usize..s.bytes.end as usize]);
                (text.unwrap(), s.top_level)
            })
            .collect();
        assert_eq!(
            texts,
            [
                (r#"{"id": "a"}"#, false),
                (r#"{"id":"b", "x": [1, 2]}"#, false),
                (r#"{"@odata.context":"d","id":"c"}"#, true),
            ]
        );
        assert_eq!(got[2].0, serde_json::json!({"id": "c"}));
        // UTF-16 is decoded before it is scanned: no spans.
        let mut utf16 = vec![0xFF, 0xFE];
        for u in r#"{"value": [{"id": "a"}]}"#.encode_utf16() {
            utf16.extend_from_slice(&u.to_le_bytes());
        }
        let mut spans = vec![];
        read_stream_spans(
            utf16.as_slice(),
            &ReadOptions::default(),
            &mut |item, span| {
                if let Item::Record { .. } = item {
                    spans.push(span);
                }
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(spans, [None]);
    }

    fn ids(r: &Read) -> Vec<String> {
        r.records
            .iter()
            .map(|(_, v)| v["id"].as_str().unwrap_or("?").to_string())
            .collect()
    }

    #[test]
    fn pages_stream_their_values_with_context_and_next_link() {
        let r =
            read(r#"{"@odata.context":"c","value":[{"id":"a"},{"id":"b"}],"@odata.nextLink":"n"}"#);
        assert!(r.error.is_none());
        assert_eq!(ids(&r), ["a", "b"]);
        assert_eq!(r.records[0].0.as_deref(), Some("c"));
        assert_eq!(r.page_ends, [(Some("c".into()), Some("n".into()))]);
    }

    #[test]
    fn context_after_value_still_applies() {
        let r = read(r#"{"value":[{"id":"a"}, 7, {"id":"b"}],"@odata.context":"c"}"#);
        assert!(r.records.iter().all(|r| r.0.as_deref() == Some("c")));
        assert_eq!(ids(&r), ["a", "?", "b"]);
    }

    #[test]
    fn json_lines_with_crlf() {
        let r = read("{\"id\":\"a\"}\r\n{\"id\":\"b\"}\r\n");
        assert!(r.error.is_none());
        assert_eq!(ids(&r), ["a", "b"]);
    }

    #[test]
    fn a_bad_json_lines_line_costs_that_line_only() {
        for bad in [
            &b"garbage"[..],
            b"{\"id\": \"x\xff\xfe\"}",
            b"{\"id\": ",
            b"{\"id\": \"unterminated",
            b"{\"id\": \"\\ud800\"}",
            b"]",
            b"{\"id\" \"x\"}",
            b"{\"id\":\"x\"} trailing",
        ] {
            for first in [false, true] {
                let mut text = Vec::new();
                if !first {
                    text.extend_from_slice(b"{\"id\":\"l1\"}\n");
                }
                text.extend_from_slice(bad);
                text.extend_from_slice(b"\n");
                for i in 3..=10 {
                    text.extend_from_slice(format!("{{\"id\":\"l{i}\"}}\n").as_bytes());
                }
                for json_lines in [false, true] {
                    let r = read_with(&text, json_lines);
                    if first && !json_lines && bad == b"{\"id\": " {
                        // Known limit: a `.json` file's first value is read as a document,
                        // which may span lines; when it breaks on a later line, what it
                        // swallowed is not read again. `.jsonl` files are read by line.
                        assert!(r.error.is_some());
                        continue;
                    }
                    let want: Vec<String> = (if first { 3 } else { 1 }..=10)
                        .filter(|i| *i != 2)
                        .map(|i| format!("l{i}"))
                        .collect();
                    let line = String::from_utf8_lossy(bad);
                    assert!(r.error.is_none(), "{line}: {:?}", r.error);
                    let mut got = ids(&r);
                    // `{"id":"x"} trailing`: the record is whole; the junk after it is one bad line.
                    got.retain(|id| id != "x");
                    assert_eq!(got, want, "{line} (first: {first}, jsonl: {json_lines})");
                    assert_eq!(r.bad.len(), 1, "{line}: {:?}", r.bad);
                }
            }
        }
    }

    #[test]
    fn a_bad_element_of_a_page_costs_that_element_only() {
        let page = "{\"@odata.context\":\"c\",\"value\":[{\"id\":\"r1\"},{\"id\":\"r2\",\"j\":\"\\ud800\"},{\"id\":\"r3\",\"j\":\"x\u{ff}\"},nope,{\"id\":\"r5\"}]}";
        let mut bytes = page.as_bytes().to_vec();
        // Invalid UTF-8 inside record 3's string.
        let at = bytes
            .windows(2)
            .position(|w| w == "\u{ff}".as_bytes())
            .expect("marker");
        bytes[at] = 0xff;
        bytes[at + 1] = b'z';
        let r = read_with(&bytes, false);
        assert!(r.error.is_none(), "{:?}", r.error);
        assert_eq!(ids(&r), ["r1", "r5"]);
        assert_eq!(
            r.bad.iter().map(|b| b.0).collect::<Vec<_>>(),
            [1, 2, 3],
            "{:?}",
            r.bad
        );
        assert_eq!(r.page_ends.len(), 1);
    }

    #[test]
    fn indented_documents_one_after_another_stay_documents() {
        let r = read(
            "{\n  \"value\": [{\"id\": \"a\"}]\n}\n{\n  \"value\": [\n    {\"id\": \"b\"}\n  ]\n}\n",
        );
        assert!(
            r.error.is_none() && r.bad.is_empty(),
            "{:?} {:?}",
            r.error,
            r.bad
        );
        assert_eq!(ids(&r), ["a", "b"]);
        assert_eq!(r.page_ends.len(), 2);
    }

    #[test]
    fn a_json_lines_line_that_breaks_off_inside_a_list_costs_that_line() {
        for broken in [
            "[x",
            "{\"value\":[{\"id\":\"p\"},{\"id\":",
            "{\"value\":[{\"id\":\"p\"} {\"id\":\"q\"}]}",
        ] {
            let text = format!("{{\"id\":\"l1\"}}\n{broken}\n{{\"id\":\"l3\"}}\n");
            let r = read(&text);
            assert!(r.error.is_none(), "{broken}: {:?}", r.error);
            let got: Vec<String> = ids(&r).into_iter().filter(|i| i.starts_with('l')).collect();
            assert_eq!(got, ["l1", "l3"], "{broken}");
            assert!(!r.bad.is_empty(), "{broken}");
        }
    }

    #[test]
    fn a_page_with_a_bad_annotation_or_a_late_context_is_not_whole() {
        let mut problems = vec![];
        let mut collect = |text: &str| {
            read_stream(text.as_bytes(), &mut |i| {
                if let Item::PageEnd { problem, .. } = i {
                    problems.push(problem);
                }
                Ok(())
            })
            .expect("reads");
        };
        collect(
            r#"{"@odata.context":"c","value":[{"id":"a"}],"@odata.nextLink":"bad \ud800 link"}"#,
        );
        let many: Vec<String> = (0..MAX_BUFFERED_WITHOUT_CONTEXT + 1)
            .map(|i| format!(r#"{{"id":"r{i}"}}"#))
            .collect();
        collect(&format!(
            r#"{{"value":[{}],"@odata.context":"c"}}"#,
            many.join(",")
        ));
        collect(r#"{"value":[{"id":"a"}],"@odata.context":"c"}"#);
        assert!(
            problems[0]
                .as_deref()
                .is_some_and(|p| p.contains("annotation")),
            "{problems:?}"
        );
        assert!(
            problems[1]
                .as_deref()
                .is_some_and(|p| p.contains("comes after")),
            "{problems:?}"
        );
        assert_eq!(problems[2], None);
    }

    #[test]
    fn records_over_the_limit_are_bad_not_held() {
        let big = "x".repeat(5000);
        let text = format!(r#"{{"value":[{{"id":"a"}},{{"id":"b","j":"{big}"}},{{"id":"c"}}]}}"#);
        let options = ReadOptions {
            max_record_bytes: 1000,
            json_lines: false,
        };
        let mut bad = vec![];
        let mut good = 0;
        read_stream_with(text.as_bytes(), &options, &mut |i| {
            match i {
                Item::Record { .. } => good += 1,
                Item::Bad { message, raw, .. } => bad.push((message, raw.len())),
                Item::PageEnd { .. } => {}
            }
            Ok(())
        })
        .expect("reads");
        assert_eq!(good, 2);
        assert_eq!(bad.len(), 1);
        assert!(
            bad[0].0.contains("over the 1000 byte limit"),
            "{}",
            bad[0].0
        );
        assert!(bad[0].1 <= 2000, "held at most twice the limit");
    }

    #[test]
    fn bad_pages_say_what_is_wrong() {
        let r = read(r#"{"value": {"id": "a"}}"#);
        assert!(
            r.bad[0].2.contains("is an object, not a list"),
            "{:?}",
            r.bad
        );
        let r = read(r#"{"value":[{"id":"a"},{"id":"b"#);
        assert_eq!(ids(&r), ["a"]);
        assert!(r.error.expect("error").message.contains("ends too early"));
        let r = read("not json");
        assert!(r.bad[0].2.contains("not valid JSON"), "{:?}", r.bad);
        assert_eq!(r.bad.len(), 1);
    }

    #[test]
    fn empty_and_blank_files_are_errors() {
        for text in ["", "  \n\r\n\t", "\u{feff}"] {
            let r = read(text);
            assert!(
                r.error
                    .as_ref()
                    .is_some_and(|e| e.message.contains("empty")),
                "{text:?}: {:?}",
                r.error
            );
        }
    }

    #[test]
    fn byte_order_marks_and_utf16_are_read() {
        let page = r#"{"@odata.context":"c","value":[{"id":"é🙂"},{"id":"b"}]}"#;
        let mut utf8_bom = vec![0xEF, 0xBB, 0xBF];
        utf8_bom.extend_from_slice(page.as_bytes());
        let mut le = vec![0xFF, 0xFE];
        let mut be = vec![0xFE, 0xFF];
        let mut le_no_bom = vec![];
        for u in page.encode_utf16() {
            le.extend_from_slice(&u.to_le_bytes());
            be.extend_from_slice(&u.to_be_bytes());
            le_no_bom.extend_from_slice(&u.to_le_bytes());
        }
        for bytes in [utf8_bom, le, be, le_no_bom] {
            let r = read_with(&bytes, false);
            assert!(r.error.is_none(), "{:?}", r.error);
            assert_eq!(ids(&r), ["é🙂", "b"]);
            assert_eq!(r.records[0].0.as_deref(), Some("c"));
        }
    }
}

/// Properties of the reader over arbitrary and hostile input: it never panics or hangs, and
/// a corrupted record costs exactly that record.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn count(bytes: &[u8], json_lines: bool) -> (Vec<Value>, usize, usize, bool) {
        let (mut records, mut bad, mut ends) = (vec![], 0, 0);
        let options = ReadOptions {
            json_lines,
            max_record_bytes: 1 << 16,
        };
        let r = read_stream_with(bytes, &options, &mut |i| {
            match i {
                Item::Record { value, .. } => records.push(value),
                Item::Bad { .. } => bad += 1,
                Item::PageEnd { .. } => ends += 1,
            }
            Ok(())
        });
        (records, bad, ends, r.is_ok())
    }

    /// A record: a few string and number fields, strings with hostile Unicode.
    fn record() -> impl Strategy<Value = Value> {
        let text = prop_oneof![
            "[a-z0-9 ]{0,12}",
            Just("\u{202e}evil\u{200d}".to_string()),
            Just("line\nbreak \"quoted\" \\ back".to_string()),
            Just("🙂 é ü \u{0}".to_string()),
            Just("<script>alert(1)</script>".to_string()),
        ];
        (text.clone(), text, any::<i32>()).prop_map(|(a, b, n)| {
            serde_json::json!({"id": a, "displayName": b, "n": n, "nested": {"list": [1, {"k": "v"}]}})
        })
    }

    /// Ways to spoil one record's text.
    fn spoil(text: &str, how: u8) -> Vec<u8> {
        let mut b = text.as_bytes().to_vec();
        match how % 5 {
            0 => b"garbage".to_vec(),
            1 => {
                // Invalid UTF-8 inside the first string value.
                let at = text.find(":\"").map_or(1, |i| i + 2);
                b.insert(at, 0xff);
                b
            }
            2 => {
                let at = text.find(":\"").map_or(1, |i| i + 2);
                b.splice(at..at, b"\\ud800x".iter().copied());
                b
            }
            3 => {
                b.truncate(b.len() / 2);
                b.extend_from_slice(b"]]");
                b
            }
            _ => b"{\"id\": tru}".to_vec(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), lines in any::<bool>()) {
            let _ = count(&bytes, lines);
        }

        #[test]
        fn arbitrary_json_text_never_panics(text in "[\\[\\]{}\",:a-z0-9 \\\\\n]{0,200}", lines in any::<bool>()) {
            let _ = count(text.as_bytes(), lines);
        }

        #[test]
        fn a_spoiled_json_lines_line_costs_that_line(
            records in proptest::collection::vec(record(), 1..12),
            spoiled in proptest::collection::vec(any::<Option<u8>>(), 12),
            dot_jsonl in any::<bool>(),
        ) {
            let mut file = Vec::new();
            let mut want = vec![];
            let mut bad = 0;
            for (i, r) in records.iter().enumerate() {
                let text = r.to_string();
                match spoiled[i] {
                    // A `.json` file's first line is read as a document: spoil it only in
                    // ways that stay on its line (not the cut-off shape).
                    Some(how) if !(i == 0 && !dot_jsonl && how % 5 == 3) => {
                        file.extend(spoil(&text, how));
                        bad += 1;
                    }
                    _ => {
                        file.extend_from_slice(text.as_bytes());
                        want.push(r.clone());
                    }
                }
                file.push(b'\n');
            }
            let (got, got_bad, _, ok) = count(&file, dot_jsonl);
            prop_assert!(ok);
            prop_assert_eq!(got, want);
            prop_assert_eq!(got_bad, bad);
        }

        #[test]
        fn a_spoiled_page_element_costs_that_element(
            records in proptest::collection::vec(record(), 0..12),
            spoiled in proptest::collection::vec(any::<Option<u8>>(), 12),
            pretty in any::<bool>(),
        ) {
            let mut page = b"{\"@odata.context\":\"c\",\"value\":[".to_vec();
            let mut want = vec![];
            let mut bad = 0;
            for (i, r) in records.iter().enumerate() {
                if i > 0 {
                    page.extend_from_slice(if pretty { b",\n  " } else { b"," });
                }
                let text = if pretty { serde_json::to_string_pretty(r).unwrap() } else { r.to_string() };
                // Spoilt shapes that keep the list's structure (a cut-off element would not).
                match spoiled[i].filter(|h| h % 5 != 3 && h % 5 != 0) {
                    Some(how) if !pretty => {
                        page.extend(spoil(&text, how));
                        bad += 1;
                    }
                    _ => {
                        page.extend_from_slice(text.as_bytes());
                        want.push(r.clone());
                    }
                }
            }
            page.extend_from_slice(b"],\"@odata.nextLink\":\"n\"}");
            let (got, got_bad, ends, ok) = count(&page, false);
            prop_assert!(ok);
            prop_assert_eq!(got, want);
            prop_assert_eq!(got_bad, bad);
            prop_assert_eq!(ends, 1);
        }
    }
}
