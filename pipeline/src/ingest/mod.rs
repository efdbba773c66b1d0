//! Stage 1, ingest: export files → typed rows → the lake.
//!
//! `files` finds the inputs, `reader` streams their JSON, `context` tells which entity each
//! page holds (the entities and their columns are declared in [`crate::catalog`]), and
//! `loganalytics` turns Log Analytics `AuditLogs` rows into directoryAudits.
//! This module runs one ingest: records flow from a reader thread through `prepare` (a pool
//! of threads that makes each record's rows, raw text and hash) and a bounded channel, in
//! reading order, into [`Run`], which dedupes, quarantines bad records with a reason, appends
//! audit events in chunks and merges snapshot entities into their history, then records the
//! run's reconciliation (fetched = stored + duplicates + rejected, per table) in
//! `_ingest_runs`.

pub mod context;
pub mod error;
pub mod files;
pub mod keyset;
pub mod loganalytics;
mod prepare;
pub mod reader;
pub mod replay;
pub mod snapshot;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

pub use error::{Error, Result};

use crate::catalog::{self, EntitySpec, Storage};
use crate::lake::bookkeeping::{self, RAW, REJECTS};
use crate::lake::history::VersionMerge;
use crate::lake::open_append::OpenAppend;
use crate::lake::{Cell, Lake, TableSchema};
use crate::time::now_micros;
use context::Resolved;
use keyset::KeySet;
use reader::Item;
pub use snapshot::SnapshotGap;

/// Top-level records held before they are written out (`--chunk-rows`), and the new
/// versions of a versioned entity held before they are appended to its history. Two chunks
/// are held at once (one being written while the next is read). 25,000 held 88 MiB more at
/// the peak of an ingest of 1M audit events than 8,000 did (single runs), for no gain in
/// time: since the open appends commit every `--commit-rows`, a chunk is a write, not a
/// commit.
pub const DEFAULT_CHUNK_ROWS: usize = 8_192;

/// Settings of one ingest run.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// Files and folders to read.
    pub inputs: Vec<PathBuf>,
    /// When the snapshots were taken (UTC micros); else the export marker's, else now.
    pub observed_at: Option<i64>,
    /// Top-level append-only records (audit events) buffered in memory before they are
    /// written out.
    pub chunk_rows: usize,
    /// Top-level append-only records written before their files are committed.
    pub commit_rows: usize,
    /// Dedupe keys held in memory per table before they spill to sorted files.
    pub dedupe_keys_in_memory: usize,
    /// After the run, a table it wrote is compacted when it has at least this many small
    /// files (`_raw` only by `govlake optimize`: views do not read it).
    pub compact_past_small_files: usize,
    /// After the run, a table it wrote is also compacted when one of its partitions holds
    /// at least this many small files.
    pub compact_past_small_files_in_a_partition: usize,
    /// Largest record accepted, in bytes of JSON.
    pub max_record_bytes: usize,
    /// Tables the source could not be read for (a live run's 403s), with the reason: each
    /// gets an `_ingest_runs` row with status `coverage_gap: <reason>`.
    pub coverage_gaps: Vec<(String, String)>,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            inputs: vec![],
            observed_at: None,
            chunk_rows: DEFAULT_CHUNK_ROWS,
            commit_rows: DEFAULT_COMMIT_ROWS,
            dedupe_keys_in_memory: keyset::DEFAULT_LIMIT,
            compact_past_small_files: COMPACT_PAST_SMALL_FILES,
            compact_past_small_files_in_a_partition: COMPACT_PAST_SMALL_FILES_IN_A_PARTITION,
            max_record_bytes: 4 * 1024 * 1024,
            coverage_gaps: vec![],
        }
    }
}

/// Per-table reconciliation of one run.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct TableCounts {
    /// Records read for this table.
    pub fetched: u64,
    /// New rows or new versions stored.
    pub stored: u64,
    /// Records already in the lake (or repeated in the input).
    pub duplicates: u64,
    /// Records quarantined in `_rejects`.
    pub rejected: u64,
    /// Versions closed because the object left its snapshot.
    pub closed: u64,
    /// Delta version after the run.
    pub version: Option<i64>,
    /// Newest event or creation time seen (audit events, requests), RFC 3339.
    pub watermark: Option<String>,
}

impl TableCounts {
    /// Whether fetched = stored + duplicates + rejected.
    pub fn reconciles(&self) -> bool {
        self.fetched == self.stored + self.duplicates + self.rejected
    }
}

/// A quarantined record, as shown in the summary.
#[derive(Debug, Clone, Serialize)]
pub struct RejectNote {
    /// File.
    pub source: String,
    /// Where in the file.
    pub location: String,
    /// Table it was meant for.
    pub entity: String,
    /// Why.
    pub reason: String,
}

/// What one ingest run did.
#[derive(Debug, Clone, Serialize)]
pub struct IngestSummary {
    /// Run id (also in `_ingest_runs` and `_raw`).
    pub run_id: String,
    /// Lake location.
    pub lake: String,
    /// Files read.
    pub files: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Records read.
    pub records: u64,
    /// Wall time in seconds.
    pub elapsed_secs: f64,
    /// Observation time of the snapshots, RFC 3339.
    pub observed_at: String,
    /// Reconciliation per table.
    pub tables: BTreeMap<String, TableCounts>,
    /// Total records rejected.
    pub rejected: u64,
    /// The first rejects, for the summary.
    pub reject_notes: Vec<RejectNote>,
    /// Snapshot scopes not read whole: nothing in them was closed.
    pub snapshot_gaps: Vec<SnapshotGap>,
    /// Tables whose small files the run compacted (see [`IngestSettings::compact_past_small_files`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub compacted: Vec<crate::lake::compact::Compaction>,
}

impl IngestSummary {
    /// Megabytes (10^6) read per second.
    pub fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed_secs.max(1e-9)
    }
    /// Records read per second.
    pub fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.elapsed_secs.max(1e-9)
    }
}

/// Callback for progress: (bytes read so far, total bytes, records so far).
pub type ProgressFn<'a> = &'a (dyn Fn(u64, u64, u64) + Sync);

/// What the reader thread reads, before its records are prepared.
enum Read {
    Item { file: usize, item: Item },
    FileError(FileError),
}

/// A file that could not be read to its end (or at all).
struct FileError {
    file: usize,
    message: String,
    location: String,
    /// `@odata.context` of the page it broke in, if known.
    context: Option<String>,
}

/// What the consumer takes: what the reader read, each record prepared (its entity, raw
/// text and hash, rows) on the pool.
enum Msg {
    Record {
        file: usize,
        /// `@odata.context` of its page, if any.
        context: Option<Arc<str>>,
        /// 0-based position in the file.
        index: u64,
        record: prepare::Record,
    },
    /// A bad record or a page's end.
    Item {
        file: usize,
        item: Item,
    },
    FileError(FileError),
}

/// Prepares a batch of what the reader read (on the pool): records are resolved, their
/// text, hash and rows made; the rest passes as it is.
fn prepare_batch(reads: Vec<Read>, settings: &prepare::Settings) -> Vec<Msg> {
    // The records of a page share its context: resolve it once.
    let mut last: Option<(usize, Option<Arc<str>>, Option<Resolved>)> = None;
    reads
        .into_iter()
        .map(|read| match read {
            Read::Item {
                file,
                item:
                    Item::Record {
                        context,
                        index,
                        value,
                    },
            } => {
                let known = last
                    .as_ref()
                    .filter(|(f, c, _)| *f == file && *c == context)
                    .map(|(_, _, r)| r.clone());
                let resolved = known.unwrap_or_else(|| {
                    let r = prepare::resolve(&settings.paths, file, context.as_deref());
                    last = Some((file, context.clone(), r.clone()));
                    r
                });
                Msg::Record {
                    file,
                    index,
                    record: prepare::record(resolved, value, settings),
                    context,
                }
            }
            Read::Item { file, item } => Msg::Item { file, item },
            Read::FileError(e) => Msg::FileError(e),
        })
        .collect()
}

const UNRESOLVED: &str = "(unresolved)";

/// Longest reject reason kept (the rest is cut, with the full length noted).
const MAX_REASON_BYTES: usize = 2048;

/// JSON bytes of raw records, or text bytes of typed append-only rows, buffered before a
/// commit (see `--chunk-rows` on commit sizes). Sized so that at the default
/// [`DEFAULT_CHUNK_ROWS`] audit events per chunk the row count, not the bytes, ends a chunk
/// (an audit event's JSON is about 1.5 KB, its typed rows about as much); it bounds a few
/// huge records.
const RAW_BUFFER_BYTES: usize = 64 * 1024 * 1024;

/// Small files a table written by a run may hold before the run compacts it: about two
/// years of daily incremental runs, or a large ingest's chunks across a few partitions.
pub const COMPACT_PAST_SMALL_FILES: usize = 256;

/// Small files one partition of a table written by a run may hold before the run compacts
/// the table: a large ingest's commits land in every month it spans (10 commits at 10M
/// audit events left each month of `audit_events` in 10 files, 110 in all, and the pack
/// read them in 328 s against 265 s once compacted), and daily runs add one file a day to
/// the current month, so it is rewritten about weekly.
pub const COMPACT_PAST_SMALL_FILES_IN_A_PARTITION: usize = 8;

/// Top-level rows (raw records, audit events) written between two commits of the
/// append-only tables: 20 commits at 10M audit events (each of ~1M records, one file per
/// table partition), where a commit per 25,000-row chunk made 785 commits of `_raw` and
/// 4,128 files of `audit_events` to compact.
pub const DEFAULT_COMMIT_ROWS: usize = 1_000_000;

/// A 128-bit key for dedupe sets (never stored).
fn key128(parts: &[&str]) -> u128 {
    let mut out = 0u128;
    for seed in [0x9e37u64, 0x85eb] {
        let mut h = std::hash::DefaultHasher::new();
        seed.hash(&mut h);
        for p in parts {
            p.hash(&mut h);
        }
        out = (out << 64) | h.finish() as u128;
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… [{} bytes in all]", &s[..cut], s.len())
}

/// Runs one ingest of export files into the lake.
pub async fn run(
    lake: &Lake,
    settings: &IngestSettings,
    progress: ProgressFn<'_>,
) -> Result<IngestSummary> {
    let started = Instant::now();
    let started_at = now_micros();
    crate::lake::format::prepare_for_write(lake).await?;
    // Dedupe reads each table before writing it: commits must find the table as read.
    let guarded = lake.clone().guarded();
    let lake = &guarded;
    let inputs = files::discover(&settings.inputs)?;
    let observed_at = match settings.observed_at {
        Some(t) => t,
        None => {
            let mut times: Vec<i64> = inputs.exported_at.iter().map(|(_, t)| *t).collect();
            times.sort();
            times.dedup();
            match times.as_slice() {
                [] => started_at,
                [one] => *one,
                _ => {
                    return Err(Error::Marker {
                        path: inputs.exported_at[0].0.clone(),
                        reason: "the inputs hold exports taken at different times; ingest them one run each, oldest first".into(),
                    });
                }
            }
        }
    };
    let total_bytes: u64 = inputs.files.iter().map(|(_, n)| n).sum();
    let mut paths: Vec<PathBuf> = inputs.files.iter().map(|(p, _)| p.clone()).collect();
    // Entries that could not be followed are read as files that fail, so they are rejected
    // by name (and may have been any snapshot's page).
    let mut unreadable: HashMap<usize, String> = HashMap::new();
    for (p, reason) in &inputs.unreadable {
        unreadable.insert(paths.len(), reason.clone());
        paths.push(p.clone());
    }
    let bytes = Arc::new(AtomicU64::new(0));

    // Items travel in batches: one hand-over per record woke the reader thread for every slot
    // the consumer freed (7 % of an ingest's CPU went to switching threads). Each batch is
    // prepared on the pool; the channel carries its result's receiver, in reading order.
    let (tx, mut rx) =
        mpsc::channel::<tokio::sync::oneshot::Receiver<Vec<Msg>>>(IN_FLIGHT_RECORDS / MSG_BATCH);
    let reader = {
        let prepare = prepare::Settings {
            paths: Arc::from(paths.clone()),
            max_record_bytes: settings.max_record_bytes,
        };
        let bytes = bytes.clone();
        tokio::task::spawn_blocking(move || read_files(&prepare, &unreadable, &bytes, &tx))
    };

    let mut run = Run::new(
        lake,
        settings,
        uuid::Uuid::new_v4().to_string(),
        started_at,
        observed_at,
        snapshot::Completeness::new(&paths),
    );
    let sources: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let mut records = 0u64;
    let mut waited_for_records = std::time::Duration::ZERO;
    loop {
        let waiting = std::time::Instant::now();
        let Some(prepared) = rx.recv().await else {
            break;
        };
        // A batch whose preparing failed (a panic on the pool: a bug) ends the run.
        let batch = prepared.await.map_err(|_| Error::Prepare)?;
        waited_for_records += waiting.elapsed();
        for msg in batch {
            let counted = run.take(msg, &paths, &sources).await?;
            records += counted;
            if counted > 0 && records.is_multiple_of(4096) {
                progress(bytes.load(Ordering::Relaxed), total_bytes, records);
            }
        }
    }
    reader.await.map_err(|_| Error::Reader)?;
    progress(bytes.load(Ordering::Relaxed), total_bytes, records);
    tracing::debug!(
        read_secs = started.elapsed().as_secs_f64(),
        waited_for_records_secs = waited_for_records.as_secs_f64(),
        waited_for_commits_secs = run.waited_for_commits.as_secs_f64(),
        "Every record is read; the records' thread waited this long for the reader and for commits."
    );
    let mut summary = run.finish(paths.len() as u64, records).await?;
    summary.bytes = bytes.load(Ordering::Relaxed);
    summary.elapsed_secs = started.elapsed().as_secs_f64();
    Ok(summary)
}

fn read_files(
    prepare: &prepare::Settings,
    unreadable: &HashMap<usize, String>,
    bytes: &Arc<AtomicU64>,
    tx: &mpsc::Sender<tokio::sync::oneshot::Receiver<Vec<Msg>>>,
) {
    let pool = prepare::Pool::new();
    let batch = std::cell::RefCell::new(Batch::new(tx, &pool, prepare));
    // A file that cannot be read as a whole is one rejected item, not the end of the run.
    let file_failed = |file: usize, message: String| {
        let _ = batch.borrow_mut().push(Read::FileError(FileError {
            file,
            message,
            location: String::new(),
            context: None,
        }));
    };
    for (file, path) in prepare.paths.iter().enumerate() {
        if let Some(reason) = unreadable.get(&file) {
            file_failed(file, reason.clone());
            continue;
        }
        let (name, compression) = files::uncompressed_name(path);
        let ext = files::extension(&name);
        let options = reader::ReadOptions {
            // A record over the limit is rejected as it is read, never held in memory whole.
            max_record_bytes: prepare.max_record_bytes,
            json_lines: matches!(ext.as_str(), "jsonl" | "ndjson"),
        };
        let f = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => {
                file_failed(file, format!("the file cannot be opened: {e}"));
                continue;
            }
        };
        // Progress (and the summary's bytes and MB/s) counts the bytes of the file as stored,
        // compressed or not.
        let counted = reader::CountingReader::new(f, bytes.clone());
        let decoded = match files::decoded(counted, compression) {
            Ok(d) => d,
            Err(e) => {
                file_failed(file, format!("the file cannot be decompressed: {e}"));
                continue;
            }
        };
        let reader = std::io::BufReader::with_capacity(1 << 20, decoded);
        let result = reader::read_stream_with(reader, &options, &mut |item| {
            batch
                .borrow_mut()
                .push(Read::Item { file, item })
                .map_err(|()| reader::Stopped("ingest stopped".into()))
        });
        if let Err(e) = result {
            if e.stopped {
                return;
            }
            let _ = batch.borrow_mut().push(Read::FileError(FileError {
                file,
                message: e.message,
                location: e.location,
                context: e.context,
            }));
        }
    }
    let _ = batch.borrow_mut().send();
}

/// Items handed from the reader thread to the pool, and then to the consumer, at once.
const MSG_BATCH: usize = 128;

/// Records read but not yet taken by the consumer: this many in the channel, and up to three
/// batches more being filled, sent and taken (about 14 MB of audit events in all).
const IN_FLIGHT_RECORDS: usize = 4096;

/// The reader's items on their way to the pool, sent `MSG_BATCH` at a time.
struct Batch<'a> {
    tx: &'a mpsc::Sender<tokio::sync::oneshot::Receiver<Vec<Msg>>>,
    pool: &'a prepare::Pool,
    settings: &'a prepare::Settings,
    reads: Vec<Read>,
}

impl<'a> Batch<'a> {
    fn new(
        tx: &'a mpsc::Sender<tokio::sync::oneshot::Receiver<Vec<Msg>>>,
        pool: &'a prepare::Pool,
        settings: &'a prepare::Settings,
    ) -> Self {
        Batch {
            tx,
            pool,
            settings,
            reads: Vec::with_capacity(MSG_BATCH),
        }
    }

    /// Queues one item; `Err` when the consumer has stopped.
    fn push(&mut self, read: Read) -> std::result::Result<(), ()> {
        self.reads.push(read);
        if self.reads.len() >= MSG_BATCH {
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> std::result::Result<(), ()> {
        if self.reads.is_empty() {
            return Ok(());
        }
        let reads = std::mem::replace(&mut self.reads, Vec::with_capacity(MSG_BATCH));
        let settings = self.settings.clone();
        let prepared = self.pool.run(move || prepare_batch(reads, &settings));
        self.tx.blocking_send(prepared).map_err(|_| ())
    }
}

/// Rows waiting to be written for one append-only table.
struct AppendBuffer {
    schema: TableSchema,
    rows: Vec<Vec<Cell>>,
    known: Option<KeySet>,
    /// Whether the table holds top-level records (its rows count toward `--chunk-rows`)
    /// rather than rows of lists inside them.
    top_level: bool,
}

/// Where an object sits: its input file and place in it (for rejects), its parents' ids
/// (nearest first), the child list's constant, and whether its parent was new (append-only
/// children follow it).
struct Placement<'a> {
    source: &'a str,
    location: Location<'a>,
    parents: &'a [String],
    constant: Option<&'a str>,
    parent_is_new: Option<bool>,
}

/// Where an object is in its file (`record 12, `audit_event_target_resources` item 2`),
/// written out only when a reject or a gap names it: formatting it for every object cost
/// the consumer thread 6 % of its time.
#[derive(Clone, Copy)]
enum Location<'a> {
    /// A top-level record, by its 0-based index in the file.
    Record(u64),
    /// Said in words (a rebuild names the raw row it replays).
    Text(&'a str),
    /// An item of a parent's nested list, by its 1-based position.
    Item {
        parent: &'a Location<'a>,
        list: &'static str,
        position: usize,
    },
}

impl std::fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Record(index) => write!(f, "record {}", index + 1),
            Location::Text(text) => f.write_str(text),
            Location::Item {
                parent,
                list,
                position,
            } => write!(f, "{parent}, `{list}` item {position}"),
        }
    }
}

/// What writing a chunk hands back: the appends it leaves open, and the tables it
/// committed with their new versions.
type Flushed = (BTreeMap<String, OpenAppend>, Vec<(String, i64)>);

/// Commits a chunk's open appends: first the tables of the records' lists (targets,
/// details, request links), then the tables of top-level records (`top_level`), each group
/// side by side; returns the new versions and the first failure. The order is what makes a
/// crash between two commits harmless: a rerun knows a committed record and stores nothing
/// of it again, so lists committed after it and lost in the crash would be lost for good
/// (side by side, a `kill -9` once left 1,000 request links of committed audit events
/// unstored); lists committed before a record that the crash lost are found by the rerun
/// as orphans (`Run::append_buffer`) and not stored twice. A failed list commit leaves the
/// records uncommitted, for the rerun to store.
async fn commit_appends(
    lake: &Lake,
    metadata: &HashMap<String, Value>,
    open: BTreeMap<String, OpenAppend>,
    top_level: &[String],
) -> (Vec<(String, i64)>, Option<Error>) {
    let (records, lists): (Vec<_>, Vec<_>) = open
        .into_values()
        .partition(|append| top_level.iter().any(|t| t == append.table()));
    let mut versions = vec![];
    if let Some(e) = commit_side_by_side(lake, metadata, lists, &mut versions).await {
        return (versions, Some(e));
    }
    if !records.is_empty() {
        crate::lake::failpoint::hit("before_record_commits");
    }
    let failed = commit_side_by_side(lake, metadata, records, &mut versions).await;
    (versions, failed)
}

/// Commits `appends` side by side (different tables), adding each new version to
/// `versions`; returns the first failure once every commit has ended.
async fn commit_side_by_side(
    lake: &Lake,
    metadata: &HashMap<String, Value>,
    appends: Vec<OpenAppend>,
    versions: &mut Vec<(String, i64)>,
) -> Option<Error> {
    let commits: Vec<_> = appends
        .into_iter()
        .map(|append| {
            let (lake, metadata) = (lake.clone(), metadata.clone());
            tokio::spawn(async move {
                let table = append.table().to_string();
                tracing::debug!(table = %table, rows = append.rows(), "Committing the rows written since the last commit.");
                let v = append.commit(&lake, &metadata).await?;
                Ok::<_, Error>((table, v))
            })
        })
        .collect();
    let mut failed = None;
    for commit in commits {
        match settle_task(commit).await {
            Ok(v) => versions.push(v),
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    failed
}

/// The outcome of a task of a chunk's writing; a panic there is this thread's.
async fn settle_task<T>(task: tokio::task::JoinHandle<Result<T>>) -> Result<T> {
    match task.await {
        Ok(outcome) => outcome,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(Error::Writer),
    }
}

/// State of one ingest run.
struct Run<'a> {
    lake: &'a Lake,
    settings: &'a IngestSettings,
    run_id: String,
    started_at: i64,
    observed_at: i64,
    resolved: HashMap<(usize, Option<String>), Option<Resolved>>,
    counts: BTreeMap<String, TableCounts>,
    watermarks: BTreeMap<String, i64>,
    versioned: BTreeMap<&'static str, VersionMerge>,
    /// Which snapshot scopes were read whole (only those close what they miss).
    completeness: snapshot::Completeness,
    /// Per file: the snapshot scopes its records touched.
    file_scopes: HashMap<usize, BTreeSet<(&'static str, String)>>,
    appends: BTreeMap<&'static str, AppendBuffer>,
    raw: AppendBuffer,
    raw_bytes: usize,
    /// Text bytes of the typed rows buffered for append-only tables.
    append_bytes: usize,
    /// The chunk being written while the next one is read (at most one at a time): it
    /// hands back the appends it leaves open, and the tables it committed with their new
    /// versions.
    in_flight: Option<tokio::task::JoinHandle<Result<Flushed>>>,
    /// Append-only tables' files written since their last commit (while no chunk is in
    /// flight; one that is holds them).
    open: BTreeMap<String, OpenAppend>,
    /// Top-level rows written since the last commit of the open appends.
    uncommitted_rows: usize,
    /// Time this thread waited for a chunk in flight to land (logged at the end: where a
    /// run's pace is set).
    waited_for_commits: std::time::Duration,
    orphans: HashSet<u128>,
    /// Ids of quarantined records, per table: a rejected object did not vanish.
    rejected_ids: BTreeMap<String, Vec<String>>,
    rejects: Vec<Vec<Cell>>,
    reject_notes: Vec<RejectNote>,
    snapshot_gaps: Vec<SnapshotGap>,
    metadata: HashMap<String, Value>,
    /// Whether records go to `_raw` (not when replaying `_raw` itself).
    keep_raw: bool,
}

impl<'a> Run<'a> {
    fn new(
        lake: &'a Lake,
        settings: &'a IngestSettings,
        run_id: String,
        started_at: i64,
        observed_at: i64,
        completeness: snapshot::Completeness,
    ) -> Self {
        let metadata = HashMap::from([
            ("govlake.run_id".to_string(), Value::String(run_id.clone())),
            (
                "govlake.version".to_string(),
                Value::String(env!("CARGO_PKG_VERSION").into()),
            ),
        ]);
        Self {
            lake,
            settings,
            run_id,
            started_at,
            observed_at,
            resolved: HashMap::new(),
            counts: BTreeMap::new(),
            watermarks: BTreeMap::new(),
            versioned: BTreeMap::new(),
            completeness,
            file_scopes: HashMap::new(),
            appends: BTreeMap::new(),
            raw_bytes: 0,
            append_bytes: 0,
            in_flight: None,
            open: BTreeMap::new(),
            uncommitted_rows: 0,
            waited_for_commits: std::time::Duration::ZERO,
            orphans: HashSet::new(),
            rejected_ids: BTreeMap::new(),
            raw: AppendBuffer {
                schema: bookkeeping::raw_schema(),
                rows: vec![],
                known: None,
                top_level: true,
            },
            rejects: vec![],
            reject_notes: vec![],
            snapshot_gaps: vec![],
            metadata,
            keep_raw: true,
        }
    }

    /// Takes one message of the reader (its records prepared); returns how many records
    /// (good, bad, or a file that broke) it counts as read.
    async fn take(&mut self, msg: Msg, paths: &[PathBuf], sources: &[String]) -> Result<u64> {
        match msg {
            Msg::Record {
                file,
                context,
                index,
                record,
            } => {
                let scope = match &record {
                    prepare::Record::Resolved { resolved, .. } => Self::snapshot_scope(resolved),
                    prepare::Record::Unresolved { .. } => None,
                };
                self.touch(file, scope);
                let source = &sources[file];
                self.record(record, source, index, context.as_deref())
                    .await?;
                Ok(1)
            }
            Msg::Item { file, item } => match item {
                Item::Record { .. } => unreachable!("records are prepared"),
                Item::Bad {
                    context,
                    index,
                    location,
                    message,
                    raw,
                } => {
                    let resolved = self.resolve(file, &paths[file], context.as_deref());
                    self.touch(file, resolved.as_ref().and_then(Self::snapshot_scope));
                    let source = &sources[file];
                    self.bad_record(resolved, source, index, &location, message, &raw);
                    Ok(1)
                }
                Item::PageEnd {
                    context,
                    next_link,
                    request_url,
                    problem,
                } => {
                    let resolved = self.resolve(file, &paths[file], context.as_deref());
                    self.page_end(resolved, file, next_link, request_url, problem);
                    Ok(0)
                }
            },
            Msg::FileError(FileError {
                file,
                message,
                location,
                context,
            }) => {
                let resolved = context
                    .as_deref()
                    .and_then(|c| self.resolve(file, &paths[file], Some(c)));
                self.file_error(file, &paths[file], resolved, message, &location);
                Ok(1)
            }
        }
    }

    fn resolve(
        &mut self,
        file: usize,
        path: &std::path::Path,
        context: Option<&str>,
    ) -> Option<Resolved> {
        self.resolved
            .entry((file, context.map(str::to_string)))
            .or_insert_with(|| match context {
                Some(c) => context::from_context(c),
                None => context::from_file_name(path),
            })
            .clone()
    }

    fn count(&mut self, table: &str) -> &mut TableCounts {
        // Called for every object: the name is copied only the first time.
        if !self.counts.contains_key(table) {
            self.counts
                .insert(table.to_string(), TableCounts::default());
        }
        self.counts.get_mut(table).expect("inserted above")
    }

    fn reject(
        &mut self,
        entity: &str,
        source: &str,
        location: &str,
        record_id: Option<&str>,
        reason: String,
        raw: &str,
    ) {
        // A reason may quote hostile input (a 50 MB `@odata.context`): bounded like the raw text.
        let reason = truncate(&reason, MAX_REASON_BYTES);
        let c = self.count(entity);
        c.fetched += 1;
        c.rejected += 1;
        if let Some(id) = record_id {
            self.rejected_ids
                .entry(entity.to_string())
                .or_default()
                .push(id.to_string());
        }
        let raw = truncate(raw, 64 * 1024);
        let mut h = Sha256::new();
        for part in [source, location, entity, &reason, &raw] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        let hash = hex::encode(&h.finalize()[..16]);
        tracing::warn!(source, location, entity, reason = %reason, "Rejected a record.");
        if self.reject_notes.len() < 20 {
            self.reject_notes.push(RejectNote {
                source: source.into(),
                location: location.into(),
                entity: entity.into(),
                reason: reason.clone(),
            });
        }
        let s = |v: &str| Cell::Str(v.to_string());
        self.rejects.push(vec![
            Cell::Str(hash),
            s(&self.run_id),
            Cell::Ts(self.started_at),
            s(source),
            s(location),
            s(entity),
            record_id.map_or(Cell::Null, s),
            Cell::Str(reason),
            Cell::Str(raw),
        ]);
    }

    fn scope_of(spec: &EntitySpec, parents: &[String], constant: Option<&str>) -> String {
        if !spec.scoped_by_parent {
            return String::new();
        }
        let mut s = parents.first().cloned().unwrap_or_default();
        if let Some(k) = constant {
            s.push('/');
            s.push_str(k);
        }
        s
    }

    /// The snapshot scope of a resolved page or record, if its entity is snapshotted.
    fn snapshot_scope(resolved: &Resolved) -> Option<(&'static str, String)> {
        let spec = catalog::entity(resolved.entity)?;
        spec.versioned()?;
        Some((
            spec.table,
            Self::scope_of(spec, &resolved.parents, resolved.constant),
        ))
    }

    fn touch(&mut self, file: usize, scope: Option<(&'static str, String)>) {
        self.file_scopes.entry(file).or_default().extend(scope);
    }

    fn page_end(
        &mut self,
        resolved: Option<Resolved>,
        file: usize,
        next_link: Option<String>,
        request_url: Option<String>,
        problem: Option<String>,
    ) {
        if let Some(r) = &resolved {
            self.completeness.file_entity(file, r.entity);
        }
        let Some((table, scope)) = resolved.as_ref().and_then(Self::snapshot_scope) else {
            return;
        };
        if let Some(p) = problem {
            let source = self.completeness.file_name(file);
            self.completeness
                .broken(table, scope.clone(), format!("a page of `{source}`: {p}"));
        }
        self.completeness
            .page(table, scope, file, next_link, request_url);
    }

    /// A record the reader could not read: quarantined, and its snapshot scope is not whole.
    fn bad_record(
        &mut self,
        resolved: Option<Resolved>,
        source: &str,
        index: u64,
        location: &str,
        message: String,
        raw: &str,
    ) {
        let entity = resolved.as_ref().map_or(UNRESOLVED, |r| r.entity);
        let scope = resolved.as_ref().and_then(Self::snapshot_scope);
        let at = format!("record {} ({location})", index + 1);
        if let Some((table, s)) = scope {
            self.completeness.broken(
                table,
                s,
                format!("record {} of `{source}` could not be read", index + 1),
            );
        }
        self.reject(entity, source, &at, None, message, raw);
    }

    /// A file that could not be read to its end: the records after the break are lost, so
    /// nothing it holds a page of is complete: the scopes its records (or the page it broke
    /// in) belong to; else every scope of the table its name names; else every snapshot of
    /// the run.
    fn file_error(
        &mut self,
        file: usize,
        path: &std::path::Path,
        broke_in: Option<Resolved>,
        message: String,
        location: &str,
    ) {
        let source = path.display().to_string();
        let by_name = self.resolve(file, path, None);
        let mut scopes = self.file_scopes.remove(&file).unwrap_or_default();
        scopes.extend(broke_in.as_ref().and_then(Self::snapshot_scope));
        let reason = format!("`{source}` could not be read to its end ({message})");
        if scopes.is_empty() {
            match by_name.as_ref().and_then(|r| catalog::entity(r.entity)) {
                Some(spec) if spec.versioned().is_some() => {
                    self.completeness.block_table(spec.table, reason.clone());
                }
                Some(_) => {}
                None => self.completeness.unattributed(format!(
                    "{reason}, and what it holds cannot be told: it may have been a page of any snapshot"
                )),
            }
        }
        for (table, scope) in scopes {
            self.completeness.broken(table, scope, reason.clone());
        }
        let entity = broke_in.or(by_name).map_or(UNRESOLVED, |r| r.entity);
        self.reject(entity, &source, location, None, message, "");
    }

    /// A prepared top-level record: quarantined when nothing ingests it, else stored.
    async fn record(
        &mut self,
        record: prepare::Record,
        source: &str,
        index: u64,
        context: Option<&str>,
    ) -> Result<()> {
        let location = Location::Record(index);
        let (r, spec, json, raw_hash, object) = match record {
            prepare::Record::Resolved {
                resolved,
                spec,
                json,
                raw_hash,
                object,
            } => (resolved, spec, json, raw_hash, object),
            prepare::Record::Unresolved { json } => {
                let reason = match context {
                    Some(c) => format!("`@odata.context` `{c}` names nothing govlake ingests"),
                    None => "cannot tell which entity this file holds: its pages have no `@odata.context` and the file name names no entity (e.g. `assignments.json`)".to_string(),
                };
                self.reject(
                    UNRESOLVED,
                    source,
                    &location.to_string(),
                    None,
                    reason,
                    &json,
                );
                return Ok(());
            }
        };
        let at = Placement {
            source,
            location,
            parents: &r.parents,
            constant: r.constant,
            parent_is_new: None,
        };
        self.object(spec, object, Some(json), raw_hash, &at).await?;
        self.flush_if_full().await
    }

    /// Commits the buffered append-only rows when a buffer is full. Called only between
    /// whole objects, so a crash never separates an event from some of its child rows. Raw
    /// rows carry whole JSON documents: bounded by bytes as well.
    async fn flush_if_full(&mut self) -> Result<()> {
        // Child rows (several per audit event) do not count: they follow their parents, so
        // a chunk is `--chunk-rows` events whatever their detail lists hold.
        let full = self
            .appends
            .values()
            .any(|b| b.top_level && b.rows.len() >= self.settings.chunk_rows)
            || self.raw.rows.len() >= self.settings.chunk_rows
            || self.raw_bytes >= RAW_BUFFER_BYTES
            || self.append_bytes >= RAW_BUFFER_BYTES;
        if full {
            self.flush_appends(false).await?;
        }
        Ok(())
    }

    /// One prepared object (a top-level record with its `json`, or a child inside its
    /// parent's): quarantined with its reason, or counted, its lists fed to their tables, its
    /// raw JSON kept (`raw_hash` when the pool made it), its row stored.
    async fn object(
        &mut self,
        spec: &'static EntitySpec,
        object: prepare::Object,
        json: Option<String>,
        raw_hash: Option<String>,
        at: &Placement<'_>,
    ) -> Result<()> {
        let row = match object.row {
            Ok(row) => row,
            Err(rejected) => {
                self.rejected(spec, rejected, json.as_deref(), at);
                return Ok(());
            }
        };
        let id = row[0].as_str().unwrap_or_default().to_string();
        self.count(spec.table).fetched += 1;
        self.note_watermark(spec, &row);
        let is_new = self.is_new_append(spec, &id, at).await?;
        self.children(object.lists, &id, at, is_new).await?;

        // Raw layer: every distinct version of every object, verbatim. Child rows are part of
        // their parent's raw record: only top-level objects carry `json`.
        if let Some(json) = json.filter(|_| self.keep_raw) {
            let hash = raw_hash.unwrap_or_else(|| prepare::raw_hash(spec, &json));
            self.add_raw(spec.table, &id, hash, at.source, json).await?;
        }
        self.store(spec, row, at, is_new).await
    }

    /// Quarantines an object that cannot be stored (a record over the size limit, a value
    /// that does not fit its column, a missing id); `json` is its record's text.
    fn rejected(
        &mut self,
        spec: &'static EntitySpec,
        rejected: prepare::Rejected,
        json: Option<&str>,
        at: &Placement<'_>,
    ) {
        if rejected.id.is_none() && spec.versioned().is_some() {
            // Which object it was is unknown: closing any object of its scope could
            // close this one.
            self.completeness.broken(
                spec.table,
                Self::scope_of(spec, at.parents, at.constant),
                format!(
                    "a record at `{}` {} was rejected and has no id",
                    at.source, at.location
                ),
            );
        }
        let json = rejected.json.as_deref().or(json).unwrap_or_default();
        let location = at.location.to_string();
        self.reject(
            spec.table,
            at.source,
            &location,
            rejected.id.as_deref(),
            rejected.reason,
            json,
        );
    }

    /// Whether an append-only row is new (`None` for versioned entities): a top-level
    /// object is new when its id is unknown; a child row is new when its parent is (unless a
    /// crash left the parent's children committed without the parent: those are "orphans"
    /// and already stored).
    async fn is_new_append(
        &mut self,
        spec: &'static EntitySpec,
        id: &str,
        at: &Placement<'_>,
    ) -> Result<Option<bool>> {
        Ok(match (spec.storage, &spec.key) {
            (Storage::Append, catalog::Key::Own) => {
                let buf = self.append_buffer(spec).await?;
                Some(
                    buf.known
                        .as_mut()
                        .expect("top-level append")
                        .insert(key128(&[id]))
                        .map_err(Error::Keys)?,
                )
            }
            (Storage::Append, catalog::Key::Composite(_)) => {
                self.append_buffer(spec).await?;
                let parent = at.parents.first().map_or("", String::as_str);
                Some(
                    at.parent_is_new == Some(true)
                        && !self.orphans.contains(&key128(&[spec.table, parent])),
                )
            }
            (Storage::Versioned(_), _) => None,
        })
    }

    /// Nested lists feed their own tables; the parent's id leads their parents.
    async fn children(
        &mut self,
        lists: Vec<prepare::List>,
        id: &str,
        at: &Placement<'_>,
        is_new: Option<bool>,
    ) -> Result<()> {
        if lists.is_empty() {
            return Ok(());
        }
        let mut child_parents = Vec::with_capacity(at.parents.len() + 1);
        child_parents.push(id.to_string());
        child_parents.extend_from_slice(at.parents);
        for prepare::List { list, child, items } in lists {
            if child.versioned().is_some() {
                let scope = Self::scope_of(child, &child_parents, list.constant);
                self.completeness.embedded(child.table, &scope);
            }
            for (i, item) in items.into_iter().enumerate() {
                let child_at = Placement {
                    source: at.source,
                    location: Location::Item {
                        parent: &at.location,
                        list: list.entity,
                        position: i + 1,
                    },
                    parents: &child_parents,
                    constant: list.constant,
                    parent_is_new: is_new,
                };
                Box::pin(self.object(child, item, None, None, &child_at)).await?;
            }
        }
        Ok(())
    }

    /// Stores an extracted row: offered to its history merge (versioned entities) or
    /// buffered for the next append chunk when new (append-only ones).
    async fn store(
        &mut self,
        spec: &'static EntitySpec,
        row: Vec<Cell>,
        at: &Placement<'_>,
        is_new: Option<bool>,
    ) -> Result<()> {
        match spec.storage {
            Storage::Versioned(_) => {
                let scope = Self::scope_of(spec, at.parents, at.constant);
                self.version_merge(spec).await?;
                let merge = self.versioned.get_mut(spec.table).expect("begun above");
                merge.offer(row, &scope)?;
                if merge.pending() >= self.settings.chunk_rows {
                    self.flush_appends(false).await?;
                }
            }
            Storage::Append => {
                if is_new == Some(true) {
                    // Rows are bounded by bytes too: a few huge records must not fill memory
                    // before `--chunk-rows` rows arrive.
                    self.append_bytes += row
                        .iter()
                        .map(|c| match c {
                            Cell::Str(s) => s.len(),
                            _ => 8,
                        })
                        .sum::<usize>();
                    self.appends
                        .get_mut(spec.table)
                        .expect("created above")
                        .rows
                        .push(row);
                    self.count(spec.table).stored += 1;
                } else {
                    self.count(spec.table).duplicates += 1;
                }
            }
        }
        Ok(())
    }

    fn note_watermark(&mut self, spec: &EntitySpec, row: &[Cell]) {
        let col = match spec.table {
            "audit_events" => "activity_date_time",
            "assignment_requests" => "created_date_time",
            _ => return,
        };
        if let Some(i) = spec.columns.iter().position(|c| c.name == col)
            && let Cell::Ts(t) = row[i]
        {
            let w = self
                .watermarks
                .entry(spec.table.to_string())
                .or_insert(i64::MIN);
            *w = (*w).max(t);
        }
    }

    async fn version_merge(&mut self, spec: &'static EntitySpec) -> Result<&mut VersionMerge> {
        if !self.versioned.contains_key(spec.table) {
            let table = spec.versioned().expect("versioned entity");
            let merge = table.begin(self.lake, self.observed_at).await?;
            self.versioned.insert(spec.table, merge);
        }
        Ok(self.versioned.get_mut(spec.table).expect("inserted above"))
    }

    async fn append_buffer(&mut self, spec: &'static EntitySpec) -> Result<&mut AppendBuffer> {
        if !self.appends.contains_key(spec.table) {
            let schema = spec.append_schema().expect("append entity");
            let mut known = None;
            if spec.key == catalog::Key::Own {
                let mut ids = KeySet::with_limit(self.settings.dedupe_keys_in_memory);
                let mut failed = None;
                self.lake
                    .scan_strings(spec.table, &["id"], |v| {
                        if let Some(id) = v[0]
                            && let Err(e) = ids.insert(key128(&[id]))
                        {
                            failed.get_or_insert(e);
                        }
                    })
                    .await?;
                // Child rows are deduped through their parent; find parents whose children a
                // crash committed without the parent.
                for list in &spec.children {
                    let child = catalog::entity(list.entity).expect("child entities exist");
                    let Some(parent_col) = child.parent_column() else {
                        continue;
                    };
                    let orphans = &mut self.orphans;
                    self.lake
                        .scan_strings(child.table, &[parent_col], |v| {
                            if let Some(p) = v[0] {
                                match ids.contains(key128(&[p])) {
                                    Ok(true) => {}
                                    Ok(false) => {
                                        orphans.insert(key128(&[child.table, p]));
                                    }
                                    Err(e) => {
                                        failed.get_or_insert(e);
                                    }
                                }
                            }
                        })
                        .await?;
                }
                if let Some(e) = failed {
                    return Err(Error::Keys(e));
                }
                known = Some(ids);
            }
            self.appends.insert(
                spec.table,
                AppendBuffer {
                    schema,
                    rows: vec![],
                    top_level: spec.key == catalog::Key::Own,
                    known,
                },
            );
        }
        Ok(self.appends.get_mut(spec.table).expect("inserted above"))
    }

    async fn add_raw(
        &mut self,
        entity: &str,
        id: &str,
        hash: String,
        source: &str,
        json: String,
    ) -> Result<()> {
        if self.raw.known.is_none() {
            let mut known = KeySet::with_limit(self.settings.dedupe_keys_in_memory);
            let mut failed = None;
            self.lake
                .scan_strings(RAW, &["entity", "record_hash"], |v| {
                    if let Err(e) = known.insert(key128(&[v[0].unwrap_or(""), v[1].unwrap_or("")]))
                    {
                        failed.get_or_insert(e);
                    }
                })
                .await?;
            if let Some(e) = failed {
                return Err(Error::Keys(e));
            }
            self.raw.known = Some(known);
        }
        let is_new = self
            .raw
            .known
            .as_mut()
            .expect("loaded above")
            .insert(key128(&[entity, &hash]))
            .map_err(Error::Keys)?;
        let c = self.count(RAW);
        c.fetched += 1;
        if is_new {
            c.stored += 1;
            self.raw_bytes += json.len();
            self.raw.rows.push(vec![
                Cell::Str(entity.into()),
                Cell::Str(id.into()),
                Cell::Str(hash),
                Cell::Str(source.into()),
                Cell::Str(self.run_id.clone()),
                Cell::Ts(self.started_at),
                Cell::Str(json),
            ]);
        } else {
            c.duplicates += 1;
        }
        Ok(())
    }

    /// Hands buffered append-only rows (audit events and their children, raw records) to
    /// their tables' open files ([`OpenAppend`]), which are committed together once
    /// `--commit-rows` top-level rows are written since the last commit (and when the run
    /// ends, `last`); and commits the new versions of versioned entities once a merge holds
    /// half a chunk of them. Dedupe by id makes a rerun after a crash between commits store
    /// exactly what is missing (and a merge's next run closes what a crashed one left
    /// open). The writing runs on its own task while the next chunk is read; a chunk waits
    /// for the previous one to be written first, so writes and commits keep their order and
    /// at most two chunks are held.
    async fn flush_appends(&mut self, last: bool) -> Result<()> {
        self.settle_flush().await?;
        self.raw_bytes = 0;
        self.append_bytes = 0;
        let top_level_rows = self
            .appends
            .values()
            .filter(|b| b.top_level)
            .map(|b| b.rows.len())
            .chain(std::iter::once(self.raw.rows.len()))
            .max()
            .unwrap_or(0);
        self.uncommitted_rows += top_level_rows;
        let commit = last || self.uncommitted_rows >= self.settings.commit_rows;
        if commit {
            self.uncommitted_rows = 0;
        }
        let mut appended = vec![];
        for buf in self
            .appends
            .values_mut()
            .chain(std::iter::once(&mut self.raw))
        {
            if !buf.rows.is_empty() {
                appended.push((buf.schema.clone(), std::mem::take(&mut buf.rows)));
            }
        }
        // A history commit on this thread held up every record behind it.
        let history_rows = self.settings.chunk_rows.div_ceil(2);
        let mut history = vec![];
        for merge in self.versioned.values_mut() {
            if merge.pending() >= history_rows {
                history.push(merge.take_pending());
            }
        }
        // Nothing to write or commit leaves the open appends where they are.
        if appended.is_empty() && history.is_empty() && !(commit && !self.open.is_empty()) {
            return Ok(());
        }
        let mut open = std::mem::take(&mut self.open);
        let (lake, metadata) = (self.lake.clone(), self.metadata.clone());
        let top_level: Vec<String> = (self.appends.values())
            .filter(|b| b.top_level)
            .map(|b| b.schema.name.clone())
            .collect();
        // The tables of a chunk are written side by side: they are different tables, and
        // one after the other the records' thread waited on them for a fifth of a 10M
        // ingest. A failure is reported once every other table's work has ended (nothing
        // writes after the run has ended).
        self.in_flight = Some(tokio::spawn(async move {
            let mut failed = None;
            let writes: Vec<_> = appended
                .into_iter()
                .map(|(schema, rows)| {
                    let (lake, open) = (lake.clone(), open.remove(&schema.name));
                    tokio::spawn(async move {
                        tracing::debug!(table = %schema.name, rows = rows.len(), "Writing a chunk.");
                        let mut append = match open {
                            Some(a) => a,
                            None => lake.open_append(&schema).await?,
                        };
                        append.write(&rows).await?;
                        Ok::<_, Error>(append)
                    })
                })
                .collect();
            // A history table's version is not a count of its own: the merge's closing
            // commit reports the entity's.
            let history: Vec<_> = history
                .into_iter()
                .map(|(schema, rows)| {
                    let (lake, metadata) = (lake.clone(), metadata.clone());
                    tokio::spawn(async move {
                        tracing::debug!(table = %schema.name, rows = rows.len(), "Committing history.");
                        lake.append(&schema, &rows, &metadata).await?;
                        Ok::<_, Error>(())
                    })
                })
                .collect();
            for write in writes {
                match settle_task(write).await {
                    Ok(append) => {
                        open.insert(append.table().to_string(), append);
                    }
                    Err(e) => {
                        failed.get_or_insert(e);
                    }
                }
            }
            for commit in history {
                if let Err(e) = settle_task(commit).await {
                    failed.get_or_insert(e);
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
            if !commit {
                return Ok((open, vec![]));
            }
            match commit_appends(&lake, &metadata, std::mem::take(&mut open), &top_level).await {
                (versions, None) => Ok((open, versions)),
                (_, Some(e)) => Err(e),
            }
        }));
        Ok(())
    }

    /// Waits for the chunk in flight, if any: takes back the appends it left open and
    /// notes the versions it committed.
    async fn settle_flush(&mut self) -> Result<()> {
        if let Some(task) = self.in_flight.take() {
            let waiting = std::time::Instant::now();
            let (open, committed) = settle_task(task).await?;
            self.waited_for_commits += waiting.elapsed();
            self.open = open;
            for (table, v) in committed {
                self.counts.entry(table).or_default().version = Some(v);
            }
        }
        Ok(())
    }

    async fn finish(mut self, files: u64, records: u64) -> Result<IngestSummary> {
        self.flush_appends(true).await?;
        self.settle_flush().await?;
        self.finish_tables().await?;
        self.write_rejects().await?;
        for (table, w) in &self.watermarks {
            if let Some(c) = self.counts.get_mut(table) {
                c.watermark = Some(crate::time::fmt_ts(*w));
            }
        }
        let rejected: u64 = self.counts.values().map(|c| c.rejected).sum();
        let run_rows = self.run_rows(rejected);
        crate::lake::failpoint::hit("before_bookkeeping");
        self.lake
            .append(
                &bookkeeping::ingest_runs_schema(),
                &run_rows,
                &self.metadata,
            )
            .await?;
        tracing::debug!("Compacting the tables this run wrote.");
        let compacted = self.compact_written_tables().await;
        tracing::debug!("Writing checkpoints.");
        // A checkpoint a crash or a lost reply skipped is written now, so no table's log
        // grows without one.
        self.lake.checkpoint_written_tables().await?;

        Ok(IngestSummary {
            run_id: self.run_id,
            lake: self.lake.location().display(),
            files,
            bytes: 0,
            records,
            elapsed_secs: 0.0,
            observed_at: crate::time::fmt_ts(self.observed_at),
            tables: self.counts,
            rejected,
            reject_notes: self.reject_notes,
            snapshot_gaps: self.snapshot_gaps,
            compacted,
        })
    }

    /// Compacts the tables this run wrote (but `_raw`) that hold many small files: a
    /// large ingest leaves one file per chunk and partition, which every view would read.
    async fn compact_written_tables(&self) -> Vec<crate::lake::compact::Compaction> {
        let mut done = vec![];
        for name in self.lake.written_tables() {
            if name == RAW {
                continue;
            }
            let when = crate::lake::compact::CompactWhen {
                small_files: self.settings.compact_past_small_files,
                small_files_in_a_partition: self.settings.compact_past_small_files_in_a_partition,
            };
            let Some(schema) = catalog::table_schema(&name) else {
                continue;
            };
            // Every record is committed by now: a failed compaction leaves small files,
            // not a failed run.
            match self
                .lake
                .compact(&schema, when, false, &self.metadata)
                .await
            {
                Ok(Some(c)) if c.version.is_some() => done.push(c),
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    table = %name,
                    error = %e,
                    "Could not compact the table's small files (every record is stored; run `govlake optimize --table {name}` later)."
                ),
            }
        }
        done
    }

    /// Finishes every table, so queries never meet a missing one: each versioned entity's
    /// merge closes what its complete scopes no longer hold (rejected ids count as seen),
    /// each append-only table exists, and so does `_raw`.
    async fn finish_tables(&mut self) -> Result<()> {
        // Each versioned entity's merge ends on its own task, two at a time (a merge holds
        // its table's open versions and reads its current table, so more at once would hold
        // more memory): they write different tables, and one at a time left a core idle for
        // the seconds an ingest ends with.
        let mut merges = vec![];
        for spec in catalog::ENTITIES.iter() {
            match (spec.versioned(), spec.append_schema()) {
                (Some(v), _) => {
                    let (scopes, gaps) = self.completeness.finish(spec.table);
                    self.snapshot_gaps.extend(gaps);
                    let merge = self.versioned.remove(spec.table);
                    let seen = self.rejected_ids.remove(spec.table).unwrap_or_default();
                    let (lake, metadata) = (self.lake.clone(), self.metadata.clone());
                    let observed_at = self.observed_at;
                    merges.push(async move {
                        let mut merge = match merge {
                            Some(m) => m,
                            None => v.begin(&lake, observed_at).await?,
                        };
                        for id in &seen {
                            merge.mark_seen(id);
                        }
                        let complete = |scope: &str| scopes.contains(scope);
                        tracing::debug!(
                            table = spec.table,
                            "Merging the run's versions into history."
                        );
                        let outcome = merge.finish(&lake, &complete, &metadata).await?;
                        tracing::debug!(
                            table = spec.table,
                            stored = outcome.stored,
                            closed = outcome.closed,
                            "Merged."
                        );
                        Ok::<_, Error>((spec.table, outcome))
                    });
                }
                (None, Some(schema)) => {
                    let t = self.lake.ensure(&schema).await?;
                    if let Some(c) = self.counts.get_mut(spec.table) {
                        c.version = t.version().map(|v| v as i64);
                    }
                }
                (None, None) => {}
            }
        }
        let mut waiting = merges.into_iter();
        let mut running = tokio::task::JoinSet::new();
        let mut failed = None;
        loop {
            // After a failure no merge starts, and the run waits for the one still writing
            // before it reports the failure (nothing writes after the run has ended).
            while running.len() < 2 && failed.is_none() {
                let Some(merge) = waiting.next() else { break };
                running.spawn(merge);
            }
            let Some(done) = running.join_next().await else {
                break;
            };
            match done {
                Ok(Ok((table, outcome))) => {
                    let c = self.count(table);
                    c.stored += outcome.stored;
                    c.duplicates += outcome.duplicates;
                    c.closed += outcome.closed;
                    c.version = outcome.current_version;
                }
                Ok(Err(e)) => {
                    failed.get_or_insert(e);
                }
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => {
                    failed.get_or_insert(Error::Writer);
                }
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if !self.counts.contains_key(RAW) {
            self.lake.ensure(&self.raw.schema).await?;
        }
        Ok(())
    }

    /// Quarantine: deduped by content so a rerun of the same bad input adds nothing.
    async fn write_rejects(&mut self) -> Result<()> {
        let rejects_schema = bookkeeping::rejects_schema();
        let mut known = HashSet::new();
        self.lake
            .scan_strings(REJECTS, &["reject_hash"], |v| {
                if let Some(h) = v[0] {
                    known.insert(h.to_string());
                }
            })
            .await?;
        let mut new_rejects = std::mem::take(&mut self.rejects);
        new_rejects.retain(|r| r[0].as_str().is_some_and(|h| known.insert(h.to_string())));
        if new_rejects.is_empty() {
            self.lake.ensure(&rejects_schema).await?;
        } else {
            self.lake
                .append(&rejects_schema, &new_rejects, &self.metadata)
                .await?;
        }
        Ok(())
    }

    /// The run's `_ingest_runs` rows: one per table touched (its counts, watermark, version
    /// and status, naming a coverage gap) and one per table the source refused.
    fn run_rows(&self, rejected: u64) -> Vec<Vec<Cell>> {
        let finished_at = now_micros();
        let sources = self
            .settings
            .inputs
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let status = if rejected > 0 { "rejects" } else { "ok" };
        let row = |table: &str, c: &TableCounts, status: String| {
            vec![
                Cell::Str(self.run_id.clone()),
                Cell::Ts(self.started_at),
                Cell::Ts(finished_at),
                Cell::Ts(self.observed_at),
                Cell::Str(sources.clone()),
                Cell::Str(table.to_string()),
                Cell::Int(c.fetched as i64),
                Cell::Int(c.stored as i64),
                Cell::Int(c.duplicates as i64),
                Cell::Int(c.rejected as i64),
                Cell::Int(c.closed as i64),
                self.watermarks
                    .get(table)
                    .map_or(Cell::Null, |w| Cell::Ts(*w)),
                c.version.map_or(Cell::Null, Cell::Int),
                Cell::Str(status),
            ]
        };
        let mut run_rows: Vec<Vec<Cell>> = self
            .counts
            .iter()
            .map(|(table, c)| {
                let gaps: Vec<&SnapshotGap> = self
                    .snapshot_gaps
                    .iter()
                    .filter(|g| g.table == *table)
                    .collect();
                let status = match gaps.first() {
                    Some(g) => format!(
                        "coverage_gap: {} snapshot scope(s) not read whole, nothing in them closed; {}{}",
                        gaps.len(),
                        if g.scope.is_empty() {
                            String::new()
                        } else {
                            format!("scope `{}`: ", g.scope)
                        },
                        g.reason
                    ),
                    None => status.to_string(),
                };
                row(table, c, status)
            })
            .collect();
        // A table the source refused: nothing fetched, and why.
        for (table, reason) in &self.settings.coverage_gaps {
            let none = TableCounts::default();
            let mut r = row(table, &none, format!("coverage_gap: {reason}"));
            r[11] = Cell::Null; // no watermark from a table that was not read
            run_rows.push(r);
        }
        run_rows
    }
}

#[cfg(test)]
mod tests {
    use super::Location;

    #[test]
    fn a_nested_item_is_named_by_its_record_then_each_list_and_position() {
        let record = Location::Record(11);
        let target = Location::Item {
            parent: &record,
            list: "audit_event_target_resources",
            position: 2,
        };
        let property = Location::Item {
            parent: &target,
            list: "modified_properties",
            position: 1,
        };
        assert_eq!(
            property.to_string(),
            "record 12, `audit_event_target_resources` item 2, `modified_properties` item 1"
        );
        assert_eq!(Location::Text("raw row 3").to_string(), "raw row 3");
    }
}
