//! One job at a time per lake: the lease object `_govlake_lease.json` at the lake's root.
//!
//! A job takes the lease with a conditional create (`PutMode::Create`: `If-None-Match: *` on
//! S3 and Azure, `ifGenerationMatch=0` on GCS, a no-clobber hard link on a local disk), so of
//! two jobs started together exactly one gets it. The object names the holder (host, pid,
//! job id) and when the lease expires; the holder renews it every third of its lifetime
//! while it runs and deletes it when done. Another job finding a live lease waits (`--wait`)
//! or stops, naming the holder. A lease past its expiry (its job was killed) is taken over:
//! on object storage with a conditional update on the ETag the taker read
//! (`PutMode::Update`, `If-Match`), so of two takers one wins; on a local disk, which has no
//! conditional update, by renaming the expired object aside and checking it is the one that
//! was read (same ETag: inode, mtime and size), then creating anew. A holder whose renewal
//! finds the lease changed has lost it and must stop writing.
//!
//! Expiry compares the holder's clock (written into the lease) with the reader's: keep the
//! hosts' clocks in sync (NTP), and the lifetime (minutes) far above their skew.

use std::sync::Arc;
use std::time::Duration;

use deltalake::logstore::object_store::{
    self, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion,
    path::Path as ObjectPath,
};
use serde::{Deserialize, Serialize};

use super::LakeLocation;
use crate::time::{fmt_ts, now_micros};

/// The lease object's name at the lake's root.
pub const LEASE_OBJECT: &str = "_govlake_lease.json";

/// Who holds the lease, as written in the object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Holder {
    /// The holder's host name.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// The job's id (also the `run_id` of its `_ingest_runs` rows).
    pub job_id: String,
    /// When it took the lease, RFC 3339.
    pub acquired_at: String,
    /// When the lease lapses unless renewed, RFC 3339.
    pub expires_at: String,
    /// The same, in UTC microseconds (what readers compare).
    pub expires_at_us: i64,
}

impl Holder {
    fn new(job_id: &str, ttl: Duration, acquired_at: Option<&str>) -> Self {
        let now = now_micros();
        let expires = now + ttl.as_micros() as i64;
        Self {
            host: host_name(),
            pid: std::process::id(),
            job_id: job_id.to_string(),
            acquired_at: acquired_at.map_or_else(|| fmt_ts(now), str::to_string),
            expires_at: fmt_ts(expires),
            expires_at_us: expires,
        }
    }

    /// "job `…` on host `…` (pid …), lease until …".
    pub fn describe(&self) -> String {
        format!(
            "job `{}` on host `{}` (pid {}), since {}, lease until {}",
            self.job_id, self.host, self.pid, self.acquired_at, self.expires_at
        )
    }
}

/// Errors of the lease.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another job holds the lease.
    #[error("The lake `{lake}` is in use by {}: wait for it (`govlake job run --wait`), or, if that job was killed, rerun after its lease expires (it is then taken over)", holder.describe())]
    Held {
        /// The lake.
        lake: String,
        /// Who holds it.
        holder: Box<Holder>,
    },
    /// This job's lease was taken over (it expired before a renewal).
    #[error("This job's lease on `{lake}` was taken over{}: it stopped writing; raise `[job] lease_ttl_secs` if the machine stalls for long", by.as_ref().map(|h| format!(" by {}", h.describe())).unwrap_or_default())]
    Lost {
        /// The lake.
        lake: String,
        /// The new holder, when known.
        by: Option<Box<Holder>>,
    },
    /// The store failed.
    #[error("Failed to {action} the lease `{LEASE_OBJECT}` of `{lake}`")]
    Store {
        /// The lake.
        lake: String,
        /// What was being done.
        action: &'static str,
        /// Cause.
        #[source]
        source: object_store::Error,
    },
}

/// Result of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

/// A held lease.
#[derive(Debug)]
pub struct Lease {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    lake: String,
    local: bool,
    ttl: Duration,
    holder: Holder,
    version: UpdateVersion,
}

/// The store and object path of a lake's lease.
fn lease_object(location: &LakeLocation) -> Result<(Arc<dyn ObjectStore>, ObjectPath, bool)> {
    lease_object_in(location, false)
}

/// [`lease_object`]; with `create`, a local lake's folder is made first (resolving a
/// location no longer creates it, and a job may be the lake's first writer).
fn lease_object_in(
    location: &LakeLocation,
    create: bool,
) -> Result<(Arc<dyn ObjectStore>, ObjectPath, bool)> {
    let lake = location.display();
    let store_err = |source| Error::Store {
        lake: lake.clone(),
        action: "open the store of",
        source,
    };
    match location.url.scheme() {
        "file" => {
            let dir = location.url.to_file_path().map_err(|()| {
                store_err(object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: format!("`{}` is not a local path", location.url).into(),
                })
            })?;
            if create {
                std::fs::create_dir_all(&dir).map_err(|e| {
                    store_err(object_store::Error::Generic {
                        store: "LocalFileSystem",
                        source: Box::new(e),
                    })
                })?;
            }
            let store =
                object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(store_err)?;
            Ok((Arc::new(store), ObjectPath::from(LEASE_OBJECT), true))
        }
        "memory" => Ok((
            Arc::new(object_store::memory::InMemory::new()),
            ObjectPath::from(LEASE_OBJECT),
            false,
        )),
        _ => {
            let (store, prefix) = super::backends::build(&location.url, &location.storage_options)
                .map_err(|e| {
                    store_err(object_store::Error::Generic {
                        store: "lake",
                        source: Box::new(e),
                    })
                })?;
            Ok((store, prefix.clone().join(LEASE_OBJECT), false))
        }
    }
}

/// What [`try_once`] found.
enum Attempt {
    Got(Lease),
    Held(Holder),
    /// The lease changed under us; look again.
    Raced,
}

/// Takes the lake's lease for `job_id`, waiting up to `wait` for a live holder to finish.
pub async fn acquire(
    location: &LakeLocation,
    job_id: &str,
    ttl: Duration,
    wait: Option<Duration>,
) -> Result<Lease> {
    let (store, path, local) = lease_object_in(location, true)?;
    let lake = location.display();
    let deadline = wait.map(|w| tokio::time::Instant::now() + w);
    loop {
        match try_once(&store, &path, &lake, local, job_id, ttl).await? {
            Attempt::Got(lease) => {
                tracing::info!(job = %job_id, "Took the lease of `{lake}`.");
                return Ok(lease);
            }
            Attempt::Raced => continue,
            Attempt::Held(holder) => {
                let now = tokio::time::Instant::now();
                match deadline {
                    Some(d) if now < d => {
                        // Poll at most every 5 s, and right when the lease would lapse.
                        let lapse = Duration::from_micros(
                            (holder.expires_at_us - now_micros()).clamp(0, i64::MAX) as u64,
                        ) + Duration::from_millis(50);
                        let pause = lapse.min(Duration::from_secs(5)).min(d - now);
                        tracing::info!(
                            "The lake `{lake}` is in use by {}; waiting.",
                            holder.describe()
                        );
                        tokio::time::sleep(pause).await;
                    }
                    _ => {
                        return Err(Error::Held {
                            lake,
                            holder: Box::new(holder),
                        });
                    }
                }
            }
        }
    }
}

async fn try_once(
    store: &Arc<dyn ObjectStore>,
    path: &ObjectPath,
    lake: &str,
    local: bool,
    job_id: &str,
    ttl: Duration,
) -> Result<Attempt> {
    let err = |action: &'static str| {
        let lake = lake.to_string();
        move |source| Error::Store {
            lake,
            action,
            source,
        }
    };
    let mine = Holder::new(job_id, ttl, None);
    let got = |r: object_store::PutResult, holder: Holder| {
        Attempt::Got(Lease {
            store: store.clone(),
            path: path.clone(),
            lake: lake.to_string(),
            local,
            ttl,
            holder,
            version: UpdateVersion {
                e_tag: r.e_tag,
                version: r.version,
            },
        })
    };
    match store
        .put_opts(path, payload(&mine), PutMode::Create.into())
        .await
    {
        Ok(r) => return Ok(got(r, mine)),
        Err(
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. },
        ) => {}
        Err(e) => return Err(err("create")(e)),
    }
    let current = match store.get(path).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => return Ok(Attempt::Raced),
        Err(e) => return Err(err("read")(e)),
    };
    let meta = current.meta.clone();
    let bytes = current.bytes().await.map_err(err("read"))?;
    // A lease that does not parse (never written by govlake) lapses one lifetime after it
    // was last written.
    let holder: Holder = serde_json::from_slice(&bytes).unwrap_or_else(|_| Holder {
        host: "unknown".into(),
        pid: 0,
        job_id: "unreadable lease".into(),
        acquired_at: fmt_ts(meta.last_modified.timestamp_micros()),
        expires_at: fmt_ts(meta.last_modified.timestamp_micros() + ttl.as_micros() as i64),
        expires_at_us: meta.last_modified.timestamp_micros() + ttl.as_micros() as i64,
    });
    if holder.expires_at_us > now_micros() {
        return Ok(Attempt::Held(holder));
    }
    tracing::warn!(
        "The lease of `{lake}` held by {} has expired; taking it over.",
        holder.describe()
    );
    let seen = UpdateVersion {
        e_tag: meta.e_tag.clone(),
        version: meta.version.clone(),
    };
    if !local {
        return match store
            .put_opts(path, payload(&mine), PutMode::Update(seen).into())
            .await
        {
            Ok(r) => Ok(got(r, mine)),
            Err(
                object_store::Error::Precondition { .. }
                | object_store::Error::NotFound { .. }
                | object_store::Error::AlreadyExists { .. },
            ) => Ok(Attempt::Raced),
            Err(e) => Err(err("take over")(e)),
        };
    }
    // Local disk: move the expired lease aside, make sure it is the one read, create anew.
    let aside = ObjectPath::from(format!(
        "{LEASE_OBJECT}.expired-{}",
        uuid::Uuid::new_v4().simple()
    ));
    match store.rename(path, &aside).await {
        Ok(()) => {}
        Err(object_store::Error::NotFound { .. }) => return Ok(Attempt::Raced),
        Err(e) => return Err(err("take over")(e)),
    }
    let moved = store.head(&aside).await.map_err(err("take over"))?;
    if moved.e_tag != meta.e_tag {
        // Another job took it over in between and we moved its fresh lease: put it back.
        let _ = store.rename_if_not_exists(&aside, path).await;
        let _ = store.delete(&aside).await;
        return Ok(Attempt::Raced);
    }
    let _ = store.delete(&aside).await;
    match store
        .put_opts(path, payload(&mine), PutMode::Create.into())
        .await
    {
        Ok(r) => Ok(got(r, mine)),
        Err(object_store::Error::AlreadyExists { .. }) => Ok(Attempt::Raced),
        Err(e) => Err(err("take over")(e)),
    }
}

fn payload(holder: &Holder) -> PutPayload {
    PutPayload::from(serde_json::to_vec_pretty(holder).expect("a holder serialises"))
}

impl Lease {
    /// Who holds it (this job).
    pub fn holder(&self) -> &Holder {
        &self.holder
    }

    /// The lease's lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Extends the lease by its lifetime from now. [`Error::Lost`] when another job took it
    /// over meanwhile.
    pub async fn renew(&mut self) -> Result<()> {
        let mut next = Holder::new(
            &self.holder.job_id,
            self.ttl,
            Some(&self.holder.acquired_at),
        );
        next.host = self.holder.host.clone();
        let lost = |by: Option<Holder>| Error::Lost {
            lake: self.lake.clone(),
            by: by.map(Box::new),
        };
        let mode = if self.local {
            match self.store.head(&self.path).await {
                Ok(m) if m.e_tag == self.version.e_tag => PutMode::Overwrite,
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {
                    return Err(lost(self.current().await));
                }
                Err(source) => {
                    return Err(Error::Store {
                        lake: self.lake.clone(),
                        action: "renew",
                        source,
                    });
                }
            }
        } else {
            PutMode::Update(self.version.clone())
        };
        match self
            .store
            .put_opts(&self.path, payload(&next), PutOptions::from(mode))
            .await
        {
            Ok(r) => {
                self.version = UpdateVersion {
                    e_tag: r.e_tag,
                    version: r.version,
                };
                self.holder = next;
                Ok(())
            }
            Err(
                object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. },
            ) => Err(lost(self.current().await)),
            Err(source) => Err(Error::Store {
                lake: self.lake.clone(),
                action: "renew",
                source,
            }),
        }
    }

    /// Who holds the lease now, as the store says.
    async fn current(&self) -> Option<Holder> {
        let g = self.store.get(&self.path).await.ok()?;
        serde_json::from_slice(&g.bytes().await.ok()?).ok()
    }

    /// Gives the lease back (deletes the object, when it is still this job's).
    pub async fn release(self) -> Result<()> {
        match self.store.head(&self.path).await {
            Ok(m) if m.e_tag == self.version.e_tag => {
                self.store
                    .delete(&self.path)
                    .await
                    .map_err(|source| Error::Store {
                        lake: self.lake.clone(),
                        action: "release",
                        source,
                    })
            }
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Err(Error::Lost {
                lake: self.lake.clone(),
                by: self.current().await.map(Box::new),
            }),
            Err(source) => Err(Error::Store {
                lake: self.lake.clone(),
                action: "release",
                source,
            }),
        }
    }

    /// Leaves the lease in the store without releasing it, as a killed job would (tests).
    pub fn abandon(self) {}

    /// Renews the lease in the background every third of its lifetime until
    /// [`Renewing::release`]; [`Renewing::lost`] tells whether a renewal found it taken.
    pub fn keep_renewed(self) -> Renewing {
        let lease = Arc::new(tokio::sync::Mutex::new(Some(self)));
        let lost: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
        let (l, lost2) = (lease.clone(), lost.clone());
        let task = tokio::spawn(async move {
            loop {
                let every = {
                    let guard = l.lock().await;
                    match guard.as_ref() {
                        Some(lease) => lease.ttl / 3,
                        None => return,
                    }
                };
                tokio::time::sleep(every.max(Duration::from_millis(100))).await;
                let mut guard = l.lock().await;
                let Some(lease) = guard.as_mut() else { return };
                if let Err(e) = lease.renew().await {
                    tracing::error!("{e}");
                    *lost2.lock().expect("not poisoned") = Some(e.to_string());
                    if matches!(e, Error::Lost { .. }) {
                        return;
                    }
                }
            }
        });
        Renewing { lease, lost, task }
    }
}

/// A lease being renewed in the background.
#[derive(Debug)]
pub struct Renewing {
    lease: Arc<tokio::sync::Mutex<Option<Lease>>>,
    lost: Arc<std::sync::Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Renewing {
    /// Why the lease is no longer this job's, if a renewal found so.
    pub fn lost(&self) -> Option<String> {
        self.lost.lock().expect("not poisoned").clone()
    }

    /// Stops renewing and gives the lease back.
    pub async fn release(self) -> Result<()> {
        self.task.abort();
        let lease = self.lease.lock().await.take();
        match lease {
            Some(l) => l.release().await,
            None => Ok(()),
        }
    }
}

/// Who holds a lake's lease now, if anyone (expired or not).
pub async fn holder(location: &LakeLocation) -> Result<Option<Holder>> {
    let (store, path, _) = lease_object(location)?;
    match store.get(&path).await {
        Ok(g) => Ok(g
            .bytes()
            .await
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(source) => Err(Error::Store {
            lake: location.display(),
            action: "read",
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> (tempfile::TempDir, LakeLocation) {
        let dir = tempfile::tempdir().unwrap();
        let loc = LakeLocation::resolve(&dir.path().to_string_lossy(), Default::default()).unwrap();
        (dir, loc)
    }

    #[tokio::test]
    async fn one_holder_at_a_time_and_an_expired_lease_is_taken_over() {
        let (_dir, loc) = local();
        let ttl = Duration::from_millis(600);
        let mut a = acquire(&loc, "job-a", ttl, None).await.unwrap();
        match acquire(&loc, "job-b", ttl, None).await {
            Err(Error::Held { holder, .. }) => {
                assert_eq!(holder.job_id, "job-a");
                assert_eq!(holder.pid, std::process::id());
            }
            other => panic!("expected Held, got {other:?}"),
        }
        a.renew().await.unwrap();
        // A killed job leaves its lease; the next one waits it out and takes over.
        let started = std::time::Instant::now();
        let mut b = acquire(&loc, "job-b", ttl, Some(Duration::from_secs(5)))
            .await
            .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(holder(&loc).await.unwrap().unwrap().job_id, "job-b");
        // The old holder finds it lost, and cannot release b's lease.
        assert!(
            matches!(a.renew().await, Err(Error::Lost { by: Some(h), .. }) if h.job_id == "job-b")
        );
        b.renew().await.unwrap();
        b.release().await.unwrap();
        assert_eq!(holder(&loc).await.unwrap(), None);
        let c = acquire(&loc, "job-c", ttl, None).await.unwrap();
        c.release().await.unwrap();
    }

    #[tokio::test]
    async fn two_takers_of_an_expired_lease_one_wins() {
        let (_dir, loc) = local();
        let ttl = Duration::from_millis(200);
        acquire(&loc, "killed", ttl, None).await.unwrap().abandon();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let long = Duration::from_secs(30);
        let (x, y) = tokio::join!(
            acquire(&loc, "x", long, None),
            acquire(&loc, "y", long, None)
        );
        let won = [x.is_ok(), y.is_ok()];
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "{x:?} {y:?}");
    }
}
