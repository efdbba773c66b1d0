//! Crash points, for tests only: `GOVLAKE_FAILPOINT=<point>:<n>` makes the process abort
//! (`std::process::abort()`: no destructor runs and nothing is flushed, as with `kill -9`)
//! the n-th time it passes the named point. tests/it/crash.rs kills ingests this way on every
//! backend and checks that a rerun converges on the lake a clean run writes. Nobody sets the
//! variable outside tests; unset, a point costs one look at a value read once.
//!
//! The points:
//! - `after_upload`: a commit's data files are in the store, its log entry is not (just
//!   before the PUT of `_delta_log/<version>.json`);
//! - `after_commit`: the log entry is in the store, the writer has not seen the reply;
//! - `mid_checkpoint`: a checkpoint's Parquet file is in the store, `_last_checkpoint` is not
//!   updated yet;
//! - `before_bookkeeping`: an ingest has committed every table, its `_ingest_runs` rows are
//!   not written yet;
//! - `before_record_commits`: an ingest has committed a chunk's list tables (an audit
//!   event's targets, details, request links), not yet its records' (`audit_events`).
//!
//! The first three sit in the object store ([`FailpointStore`]), which the lake's log stores
//! (`backends`) put in front of the real one only while a point is armed.

use std::fmt;
use std::ops::Range;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use deltalake::logstore::ObjectStoreRef;
use deltalake::logstore::object_store::{
    self, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, path::Path,
};
use futures::stream::BoxStream;

/// The environment variable naming the armed point.
pub const ENV: &str = "GOVLAKE_FAILPOINT";

/// The armed point and the pass that aborts, read once.
fn armed_point() -> Option<&'static (String, u64)> {
    static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var(ENV).ok()?;
            let (name, n) = spec.split_once(':').unwrap_or((spec.as_str(), "1"));
            Some((name.to_string(), n.parse().unwrap_or(1)))
        })
        .as_ref()
}

/// Whether a crash point is armed in this process.
pub fn armed() -> bool {
    armed_point().is_some()
}

/// Passes the named point: aborts the process if it is armed and this is its n-th pass.
pub fn hit(point: &str) {
    static PASSES: AtomicU64 = AtomicU64::new(0);
    let Some((name, n)) = armed_point() else {
        return;
    };
    if name == point && PASSES.fetch_add(1, Ordering::SeqCst) + 1 == *n {
        eprintln!("{ENV}: aborting at `{point}` (pass {n})");
        std::process::abort();
    }
}

/// The file name of a path (its last segment).
fn file_name(location: &Path) -> &str {
    let s = location.as_ref();
    s.rsplit('/').next().unwrap_or(s)
}

/// Whether the path is a Delta commit (`_delta_log/<version>.json`).
fn is_commit(location: &Path) -> bool {
    let s = location.as_ref();
    let name = file_name(location);
    s.contains("_delta_log/")
        && name
            .strip_suffix(".json")
            .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
}

/// An object store that passes the crash points around the writes a Delta commit and a
/// checkpoint make.
#[derive(Debug)]
pub struct FailpointStore {
    inner: ObjectStoreRef,
}

impl FailpointStore {
    /// Wraps `inner` when a point is armed; returns it unchanged otherwise.
    pub fn wrap(inner: ObjectStoreRef) -> ObjectStoreRef {
        if armed() {
            std::sync::Arc::new(Self { inner })
        } else {
            inner
        }
    }
}

impl fmt::Display for FailpointStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FailpointStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FailpointStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let commit = is_commit(location);
        if commit {
            hit("after_upload");
        }
        if file_name(location) == "_last_checkpoint" {
            hit("mid_checkpoint");
        }
        let out = self.inner.put_opts(location, payload, opts).await;
        if commit && out.is_ok() {
            hit("after_commit");
        }
        out
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_are_recognised_by_name() {
        assert!(is_commit(&Path::from(
            "t/_delta_log/00000000000000000007.json"
        )));
        assert!(is_commit(&Path::from(
            "_delta_log/00000000000000000000.json"
        )));
        assert!(!is_commit(&Path::from("_delta_log/_last_checkpoint")));
        assert!(!is_commit(&Path::from(
            "_delta_log/00000000000000000099.checkpoint.parquet"
        )));
        assert!(!is_commit(&Path::from("part-0001.json")));
        assert_eq!(
            file_name(&Path::from("a/_delta_log/_last_checkpoint")),
            "_last_checkpoint"
        );
    }
}
