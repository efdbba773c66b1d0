//! The pure half of taking in a record, run on every core: which entity it is (from its
//! page's `@odata.context` or its file's name), its raw-layer text and hash, its typed row
//! and its nested lists' rows, or why each cannot be stored. Nothing here reads or changes
//! the run's state, so batches of records are prepared on a small pool of threads while the
//! consumer ([`super::Run`]) keeps what needs one owner and the input's order: dedupe,
//! counts, history merges, snapshot completeness and the commits.
//!
//! Before, the consumer thread extracted every row itself and set an ingest's pace (42 % of
//! its time went to extraction, 7 % to the raw layer's hashes) while the second core idled
//! part of the time.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc as std_mpsc};

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use super::context::{self, Resolved};
use super::loganalytics;
use crate::catalog::{self, ChildList, Ctx, EntitySpec, ListRows, value};
use crate::lake::Cell;

/// A top-level record, prepared.
pub(super) enum Record {
    /// Its entity cannot be told: quarantined whole, with this text.
    Unresolved {
        /// The record's compact JSON.
        json: String,
    },
    /// A record of a known entity.
    Resolved {
        /// Its entity, parents and list constant, as its page or file names them.
        resolved: Resolved,
        /// Its entity's declaration.
        spec: &'static EntitySpec,
        /// The raw layer's text: compact JSON (of the directoryAudit inside an envelope).
        json: String,
        /// SHA-256 of the table name and the text, the raw row's dedupe key (none when the
        /// record is rejected: it has no raw row).
        raw_hash: Option<String>,
        /// Its row and its lists' rows.
        object: Object,
    },
}

/// One object (a record or an item of a nested list), prepared.
pub(super) struct Object {
    /// The typed row, or why the object is quarantined.
    pub row: Result<Vec<Cell>, Rejected>,
    /// Its nested lists (none when the object is rejected: its items go with it).
    pub lists: Vec<List>,
}

/// Why an object cannot be stored.
pub(super) struct Rejected {
    /// The quarantine reason.
    pub reason: String,
    /// Its `id`, when it has one.
    pub id: Option<String>,
    /// Its compact JSON, for a nested item (a top-level record's is its record's text).
    pub json: Option<String>,
}

/// A nested list of an object, with its items prepared.
pub(super) struct List {
    /// The list, as declared.
    pub list: &'static ChildList,
    /// The entity of its items.
    pub child: &'static EntitySpec,
    /// Its items, in order.
    pub items: Vec<Object>,
}

/// What preparing needs to know of the run.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    /// The input files, by index (a page without `@odata.context` is told by its file name).
    pub paths: Arc<[PathBuf]>,
    /// Largest record accepted, in bytes of compact JSON.
    pub max_record_bytes: usize,
}

/// Which entity a record of `file` read under `context` belongs to.
pub(super) fn resolve(paths: &[PathBuf], file: usize, context: Option<&str>) -> Option<Resolved> {
    match context {
        Some(c) => context::from_context(c),
        None => context::from_file_name(&paths[file]),
    }
}

/// Prepares one top-level record of a resolved page (`None`: nothing ingests it).
pub(super) fn record(resolved: Option<Resolved>, mut value: Value, settings: &Settings) -> Record {
    let Some(r) = resolved else {
        return Record::Unresolved {
            json: value::compact_json(&value),
        };
    };
    let spec = catalog::entity(r.entity).expect("resolved entities exist");
    if r.envelope || (spec.table == "audit_events" && is_monitor_envelope(&value)) {
        value = match value {
            Value::Object(mut m) => m.remove("properties").unwrap_or(Value::Null),
            other => other,
        };
    } else if spec.table == "audit_events" && loganalytics::is_row(&value) {
        // A Log Analytics `AuditLogs` row (saved `az monitor log-analytics query` output).
        if let Value::Object(row) = &value {
            value = loganalytics::row_to_directory_audit(row);
        }
    }
    // Down to the lists inside a list's items (an audit event's targets' modified
    // properties): every JSON column is cut from the record's text.
    let text = value::JsonText::write(&value, 3);
    let ctx = Ctx {
        parents: &r.parents,
        position: 0,
        constant: r.constant,
        json: Some(&text),
    };
    let object = object(
        spec,
        &value,
        Some(text.text()),
        ctx,
        settings.max_record_bytes,
    );
    let json = text.into_text();
    let raw_hash = object.row.is_ok().then(|| raw_hash(spec, &json));
    Record::Resolved {
        resolved: r,
        spec,
        json,
        raw_hash,
        object,
    }
}

/// The raw row's dedupe key: SHA-256 of the table name, a zero byte and the text, 16 bytes
/// in hex (the same in every lake written so far: a re-ingest must find its rows).
pub(super) fn raw_hash(spec: &EntitySpec, json: &str) -> String {
    let mut h = Sha256::new();
    h.update(spec.table.as_bytes());
    h.update([0]);
    h.update(json.as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// Prepares one object: its row (a top-level record's `json` is its text, checked against
/// the size limit), then each nested list's items with this object's id leading their
/// parents.
pub(super) fn object(
    spec: &'static EntitySpec,
    value: &Value,
    json: Option<&str>,
    ctx: Ctx<'_>,
    max_record_bytes: usize,
) -> Object {
    let extracted = match json.filter(|j| j.len() > max_record_bytes) {
        Some(j) => Err(format!(
            "the record is {} bytes of JSON, over the {max_record_bytes} byte limit per record",
            j.len(),
        )),
        None => spec
            .extract(value, ctx)
            .map_err(|rejection| rejection.to_string()),
    };
    let row = match extracted {
        Ok(row) => row,
        Err(reason) => {
            let id = value
                .as_object()
                .and_then(|o| value::get_ci(o, "id"))
                .and_then(Value::as_str)
                .map(str::to_string);
            return Object {
                row: Err(Rejected {
                    reason,
                    id,
                    json: json.is_none().then(|| value::compact_json(value)),
                }),
                lists: vec![],
            };
        }
    };
    if spec.children.is_empty() {
        return Object {
            row: Ok(row),
            lists: vec![],
        };
    }
    let id = row[0].as_str().unwrap_or_default().to_string();
    let read = spec.child_lists(value);
    let mut lists: Vec<List> = if read.is_empty() {
        vec![]
    } else {
        let mut parents = Vec::with_capacity(ctx.parents.len() + 1);
        parents.push(id.clone());
        parents.extend_from_slice(ctx.parents);
        read.into_iter()
            .map(|(list, items)| {
                let child = catalog::entity(list.entity).expect("child entities exist");
                let items = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        let ctx = Ctx {
                            parents: &parents,
                            position: i + 1,
                            constant: list.constant,
                            json: ctx.json,
                        };
                        object(child, item, None, ctx, max_record_bytes)
                    })
                    .collect();
                List { list, child, items }
            })
            .collect()
    };
    // Derived lists come from the rows just made (an audit event's request links from its
    // targets and details), not from the JSON again.
    if spec.children.iter().all(|c| c.derive.is_none()) {
        return Object {
            row: Ok(row),
            lists,
        };
    }
    let stored: Vec<ListRows> = lists
        .iter()
        .map(|l| ListRows {
            entity: l.child.table,
            rows: l
                .items
                .iter()
                .filter_map(|o| o.row.as_deref().ok())
                .collect(),
        })
        .collect();
    let derived = spec.derived_rows(&id, &row, &stored);
    drop(stored);
    for (list, rows) in derived {
        let child = catalog::entity(list.entity).expect("child entities exist");
        let items = rows
            .into_iter()
            .map(|row| Object {
                row: Ok(row),
                lists: vec![],
            })
            .collect();
        lists.push(List { list, child, items });
    }
    Object {
        row: Ok(row),
        lists,
    }
}

/// An Azure Monitor record (diagnostic settings, Event Hub) whose `properties` hold the
/// directoryAudit.
fn is_monitor_envelope(v: &Value) -> bool {
    let Some(o) = v.as_object() else { return false };
    // A directoryAudit's own `activityDateTime` answers first (a miss scans every key).
    value::get_ci(o, "activityDateTime").is_none()
        && value::get_ci(o, "properties").is_some_and(Value::is_object)
        && (value::get_ci(o, "operationName").is_some() || value::get_ci(o, "resourceId").is_some())
}

/// A job for the pool: prepare a batch, hand the result on.
type Job = Box<dyn FnOnce() + Send>;

/// A fixed pool of threads that prepare batches of records. Each batch's result comes back
/// through its own channel, so the consumer takes them in the order the reader sent them
/// whichever thread finished first. Dropping the pool lets its threads finish the queued
/// batches and end.
pub(super) struct Pool {
    jobs: Option<std_mpsc::Sender<Job>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Pool {
    /// A pool of one thread per core.
    pub fn new() -> Self {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (tx, rx) = std_mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let threads = (0..n)
            .map(|i| {
                let rx = rx.clone();
                std::thread::Builder::new()
                    .name(format!("govlake-prepare-{i}"))
                    .spawn(move || {
                        loop {
                            // The lock is held only to take a job, not to run it.
                            let job = match rx.lock() {
                                Ok(rx) => rx.recv(),
                                Err(_) => return,
                            };
                            match job {
                                Ok(job) => job(),
                                Err(_) => return,
                            }
                        }
                    })
                    .expect("a thread can be started")
            })
            .collect();
        Pool {
            jobs: Some(tx),
            threads,
        }
    }

    /// Runs `f` on the pool; its result arrives on the returned channel.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> oneshot::Receiver<T> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            // A panic drops `tx` unsent (the waiting side sees the failure) and leaves the
            // thread serving the next batches.
            if let Ok(out) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                let _ = tx.send(out);
            }
        });
        if let Some(jobs) = &self.jobs {
            // The threads end only when the sender is dropped, so this cannot fail.
            let _ = jobs.send(job);
        }
        rx
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.jobs = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> Settings {
        Settings {
            paths: Arc::from(vec![PathBuf::from("export-0001.json")]),
            max_record_bytes: 4096,
        }
    }

    fn audit() -> Resolved {
        resolve(
            &settings().paths,
            0,
            Some("https://graph.microsoft.com/v1.0/$metadata#auditLogs/directoryAudits"),
        )
        .expect("directoryAudits resolve")
    }

    #[test]
    fn a_record_is_prepared_with_its_rows_text_and_hash() {
        let value = json!({
            "id": "e1",
            "activityDateTime": "2026-07-01T10:00:00Z",
            "activityDisplayName": "Approve request",
            "targetResources": [{"id": "t1", "type": "User", "modifiedProperties":
                [{"displayName": "Role \"x\"", "newValue": "[\"é\"]"}]}, {"id": "t2", "type": "Group"}],
            "additionalDetails": [{"key": "k", "value": "<b>v</b>"}]
        });
        let text = value::compact_json(&value);
        // The rows extracted from the tree alone, JSON columns written anew: the rows cut
        // from the record's text must be the same.
        let plain = |table: &str, v: &Value, parents: &[String], position: usize| {
            let ctx = Ctx {
                parents,
                position,
                constant: None,
                json: None,
            };
            catalog::entity(table).unwrap().extract(v, ctx).unwrap()
        };
        let event_row = plain("audit_events", &value, &[], 0);
        let target_rows: Vec<_> = (0..2)
            .map(|i| {
                let item = &value["targetResources"][i];
                plain("audit_event_target_resources", item, &["e1".into()], i + 1)
            })
            .collect();
        let Record::Resolved {
            spec,
            json,
            raw_hash: hash,
            object,
            ..
        } = record(Some(audit()), value, &settings())
        else {
            panic!("resolved");
        };
        assert_eq!(spec.table, "audit_events");
        assert_eq!(json, text);
        assert_eq!(hash.as_deref(), Some(raw_hash(spec, &text).as_str()));
        assert_eq!(object.row.as_ref().ok(), Some(&event_row));
        assert_eq!(event_row[0], Cell::Str("e1".into()));
        let targets = object
            .lists
            .iter()
            .find(|l| l.child.table == "audit_event_target_resources")
            .expect("the target list");
        let rows: Vec<_> = targets.items.iter().map(|i| i.row.as_ref().ok()).collect();
        assert_eq!(rows, target_rows.iter().map(Some).collect::<Vec<_>>());
        // Each target leads with its parent's id; the first keeps its modified properties.
        assert!(target_rows[0].contains(&Cell::Str("e1".into())));
        assert!(
            target_rows[0]
                .iter()
                .any(|c| c.as_str().is_some_and(|s| s.contains("Role \\\"x\\\""))),
            "{:?}",
            target_rows[0]
        );
    }

    #[test]
    fn a_record_over_the_limit_or_without_id_is_rejected_with_its_lists() {
        let big = json!({"id": "e2", "activityDateTime": "2026-07-01T10:00:00Z",
            "activityDisplayName": "x".repeat(5000), "targetResources": [{"id": "t1"}]});
        let Record::Resolved { object, .. } = record(Some(audit()), big, &settings()) else {
            panic!("resolved");
        };
        let rejected = object.row.err().expect("over the limit");
        assert!(
            rejected.reason.contains("over the 4096 byte limit"),
            "{}",
            rejected.reason
        );
        assert_eq!(rejected.id.as_deref(), Some("e2"));
        assert!(rejected.json.is_none(), "a record's text is its record's");
        assert!(object.lists.is_empty());

        let no_id = json!({"activityDateTime": "2026-07-01T10:00:00Z"});
        let Record::Resolved {
            object, raw_hash, ..
        } = record(Some(audit()), no_id, &settings())
        else {
            panic!("resolved");
        };
        assert!(object.row.is_err());
        assert!(raw_hash.is_none(), "a rejected record has no raw row");
    }

    #[test]
    fn the_pool_hands_results_back_to_whoever_waits_for_them() {
        let pool = Pool::new();
        let waits: Vec<_> = (0..50).map(|i| pool.run(move || i * 2)).collect();
        let got: Vec<i32> = waits
            .into_iter()
            .map(|rx| rx.blocking_recv().expect("a result"))
            .collect();
        assert_eq!(got, (0..50).map(|i| i * 2).collect::<Vec<_>>());
    }
}
