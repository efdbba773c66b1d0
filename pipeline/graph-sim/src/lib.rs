//! `govlake-graph-sim`, a Microsoft Graph simulator for govlake's tests, demos and benchmarks:
//! serves any export directory (the sample tenant, a generated one, a real export) at the
//! Microsoft Graph paths its pages came from, on 127.0.0.1, the way Graph behaves: OData
//! paging (`$top`, `$skiptoken`, absolute `@odata.nextLink`), `$filter` on
//! `createdDateTime` / `activityDateTime` / `state` (`ge gt le lt eq`, joined by `and`),
//! `$expand` accepted, a token endpoint (`/{tenant}/oauth2/v2.0/token`: client credentials
//! with a secret, a certificate assertion checked against the certificate, or a federated
//! assertion), managed identity endpoints (App Service and VM forms), the Log Analytics
//! query API (`/v1/workspaces/{id}/query`, the tenant's audit events as `AuditLogs` rows),
//! and bearer checks. Tokens are JWT-shaped and carry the app roles it is told to grant.
//! Faults are chosen by [`Faults`]: 429 with `Retry-After`, 503, truncated bodies, tokens
//! that expire mid-run, slow pages, audit events that arrive late, events past a retention
//! horizon, clock skew, refused collections. `GET /_sim/log` returns every request it
//! answered, with its status and time, so tests can check a client's timing.
//!
//! The simulator keeps an index of the export in memory (`index`: where each record is in
//! its file and the fields `$filter` reads, 32 bytes a record) and reads a page's records
//! from the files when the page is asked for, so it serves tenants of tens of millions of
//! audit events; the files must not change while they are served. `store` cuts pages,
//! `auth` is the sign-in side, `http` serves it on hyper. It is a crate of its own so the `govlake` library and binary carry none of it;
//! `govlake demo --live` starts this binary as a child process.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpListener;

mod auth;
mod http;
mod index;
mod store;

pub use auth::verify_rs256;
pub use http::BODY_LIMIT;
pub use store::LoadError;

/// Bytes of memory the simulator keeps per record served (its index entry).
pub const INDEX_BYTES_PER_RECORD: usize = std::mem::size_of::<Entry>();

use http::{Reply, Request};
use index::{Collection, Entry, Export};
use store::{AUDITS, GRAPH_CONTEXT, PageQuery};

/// Faults the simulator injects. Counters run over Graph requests (not token requests).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Every Nth request is answered 429 with `Retry-After: retry_after_secs`.
    pub throttle_every: Option<u64>,
    /// Seconds in the 429's `Retry-After`.
    pub retry_after_secs: u64,
    /// Send `Retry-After` as an HTTP date instead of seconds.
    pub retry_after_as_date: bool,
    /// Every Nth request is answered 503.
    pub unavailable_every: Option<u64>,
    /// Every Nth request gets half its body and a closed connection.
    pub truncate_every: Option<u64>,
    /// A token stops working after this many Graph requests (401, then a new token works).
    pub token_lifetime_requests: Option<u64>,
    /// Delay before every page.
    pub slow_page: Option<Duration>,
    /// This many audit events (the ones just before the newest) are held back until a
    /// listing of directoryAudits has reached its last page: they "arrive late".
    pub late_events: usize,
    /// Collections (path prefixes) answered 403, as when the app lacks a permission.
    pub forbidden: Vec<String>,
    /// directoryAudits keeps events this many days (before now), as Graph keeps 30 (7 on
    /// Free); older ones are gone. Log Analytics keeps everything.
    pub retention_days: Option<u64>,
    /// The token endpoint's clock runs this many seconds ahead (negative: behind): it
    /// checks assertions' times by it, and every answer's `Date` header shows it.
    pub clock_skew_secs: i64,
    /// Rows a Log Analytics query returns before it answers `PartialError` (500,000 on
    /// Azure).
    pub log_analytics_row_limit: Option<usize>,
    /// Device code sign-ins: polls answered `authorization_pending` before the person has
    /// "signed in".
    pub device_code_polls: u32,
}

/// Who may sign in, and what their tokens say.
#[derive(Debug, Clone)]
pub struct SimAuth {
    /// The client secret the token endpoint accepts.
    pub client_secret: String,
    /// A certificate (DER) whose key signs accepted client assertions.
    pub certificate: Option<Vec<u8>>,
    /// The `X-IDENTITY-HEADER` the App Service managed identity endpoint expects.
    pub identity_header: String,
    /// App roles put in every token.
    pub roles: Vec<String>,
}

impl SimAuth {
    /// A secret and the read-only roles govlake documents.
    pub fn secret(client_secret: String) -> Self {
        Self {
            client_secret,
            certificate: None,
            identity_header: "sim-identity-header".into(),
            roles: READ_ROLES.iter().map(|r| (*r).to_string()).collect(),
        }
    }
}

/// The application permissions govlake needs, all read-only.
pub const READ_ROLES: &[&str] = &[
    "EntitlementManagement.Read.All",
    "AccessReview.Read.All",
    "AuditLog.Read.All",
    "Directory.Read.All",
];

/// A request the simulator answered.
#[derive(Debug, Clone, Serialize)]
pub struct LoggedRequest {
    /// Order of arrival (Graph and token requests alike).
    pub seq: u64,
    /// Method.
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Status sent.
    pub status: u16,
    /// Milliseconds since the simulator started.
    pub at_ms: u64,
    /// The `Retry-After` seconds sent with a 429.
    pub retry_after_secs: Option<u64>,
}

/// Where a listing's next page starts: the collection, its `$filter`, whether late events
/// were still held back, and the `$skiptoken` of the next page.
type CursorKey = (String, Option<String>, bool, usize);

/// Cursors remembered at most (then forgotten all at once; a page whose cursor is gone is
/// found by counting from the start).
const MAX_CURSORS: usize = 10_000;

/// The simulator's state.
pub struct Simulator {
    collections: BTreeMap<String, Collection>,
    /// The files the collections' records are read from.
    export: Export,
    faults: Faults,
    auth: SimAuth,
    /// `jti`s of certificate assertions already used (each is single-use).
    assertions_seen: Mutex<HashSet<String>>,
    started: Instant,
    graph_requests: AtomicU64,
    seq: AtomicU64,
    /// Issued tokens: Graph requests made with each, and whether it is delegated.
    tokens: Mutex<HashMap<String, (u64, bool)>>,
    /// Device codes handed out: polls still to answer `authorization_pending`.
    device_codes: Mutex<HashMap<String, u32>>,
    /// Refresh tokens of delegated sign-ins.
    refresh_tokens: Mutex<HashSet<String>>,
    /// Positions (among the audit events) of late events not yet released.
    held_back: Mutex<Option<std::ops::Range<usize>>>,
    /// Where the pages that were linked to start in their collection, so a listing costs
    /// the records it reads, not a count from the start on every page.
    cursors: Mutex<HashMap<CursorKey, usize>>,
    log: Mutex<Vec<LoggedRequest>>,
}

impl Simulator {
    /// Indexes an export directory (its files are read when pages are asked for, so they
    /// must stay as they are while it is served).
    pub fn load(dir: &Path, faults: Faults, auth: SimAuth) -> Result<Self, LoadError> {
        let index::Loaded {
            collections,
            export,
        } = index::load(dir)?;
        let mut held_back = None;
        if let Some(audits) = collections.get(AUDITS) {
            let n = audits.records.len();
            if faults.late_events > 0 && n > faults.late_events + 1 {
                held_back = Some(n - 1 - faults.late_events..n - 1);
            }
        }
        Ok(Self {
            collections,
            export,
            faults,
            auth,
            assertions_seen: Mutex::new(HashSet::new()),
            started: Instant::now(),
            graph_requests: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            tokens: Mutex::new(HashMap::new()),
            device_codes: Mutex::new(HashMap::new()),
            refresh_tokens: Mutex::new(HashSet::new()),
            held_back: Mutex::new(held_back),
            cursors: Mutex::new(HashMap::new()),
            log: Mutex::new(vec![]),
        })
    }

    /// Collections served, with their record counts.
    pub fn collections(&self) -> Vec<(String, usize)> {
        self.collections
            .iter()
            .map(|(k, c)| (k.clone(), c.records.len()))
            .collect()
    }

    /// Serves until the listener fails.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        http::serve(self, listener).await
    }

    fn record(&self, seq: u64, method: &str, target: &str, status: u16, retry: Option<u64>) {
        self.log.lock().expect("not poisoned").push(LoggedRequest {
            seq,
            method: method.to_string(),
            target: target.to_string(),
            status,
            at_ms: self.started.elapsed().as_millis() as u64,
            retry_after_secs: retry,
        });
    }

    /// Logs a request refused before it was read whole (its body too large or broken).
    fn log_refused(&self, method: &str, target: &str, status: u16) {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        self.record(seq, method, target, status, None);
    }

    /// Routes a request: the request log, the sign-in endpoints, then Graph and Log
    /// Analytics; every answer but the log's own is logged.
    async fn answer(&self, req: &Request) -> Reply {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let (get, post) = (
            req.method == hyper::Method::GET,
            req.method == hyper::Method::POST,
        );
        let path = req.path.as_str();
        if get && path == "/_sim/log" {
            let log = self.log.lock().expect("not poisoned").clone();
            return Reply::json(200, serde_json::to_string(&log).unwrap_or_default());
        }
        let sign_in = if post && path.ends_with("/oauth2/v2.0/devicecode") {
            Some(self.device_code(req))
        } else if post && path.ends_with("/oauth2/v2.0/token") {
            Some(self.token(req))
        } else if get && (path == "/msi/token" || path == "/metadata/identity/oauth2/token") {
            Some(self.managed_identity(req))
        } else {
            None
        };
        if let Some(reply) = sign_in {
            self.record(seq, req.method.as_str(), path, reply.status, None);
            return reply;
        }
        let log_analytics = post && path.starts_with("/v1/workspaces/") && path.ends_with("/query");
        let (reply, retry_after) = if log_analytics || (get && path.starts_with("/v1.0/")) {
            self.graph(req, log_analytics).await
        } else {
            let reply = Reply::error(
                404,
                "Request_UnsupportedQuery",
                "not served by the simulator",
            );
            (reply, None)
        };
        // Log Analytics is logged by its path (its query is in the body).
        let logged = if log_analytics { path } else { &req.target };
        self.record(seq, req.method.as_str(), logged, reply.status, retry_after);
        reply
    }

    /// A Graph or Log Analytics request: authentication first, as Graph does, then the
    /// injected faults, then the answer. Returns the `Retry-After` seconds of a 429.
    async fn graph(&self, req: &Request, log_analytics: bool) -> (Reply, Option<u64>) {
        let n = self.graph_requests.fetch_add(1, Ordering::SeqCst) + 1;
        let Some(delegated) = self.signed_in(req) else {
            let reply = Reply::error(
                401,
                "InvalidAuthenticationToken",
                "Access token has expired or is not yet valid.",
            );
            return (reply, None);
        };
        if let Some(fault) = self.injected_fault(n) {
            return fault;
        }
        if let Some(d) = self.faults.slow_page {
            tokio::time::sleep(d).await;
        }
        if log_analytics {
            return (self.log_analytics_query(&req.body), None);
        }
        let mut reply = self.collection_page(req, delegated);
        if reply.status == 200 && every(n, self.faults.truncate_every) {
            reply.truncate = true;
        }
        (reply, None)
    }

    /// The 429 or 503 the Nth Graph request gets, if any.
    fn injected_fault(&self, n: u64) -> Option<(Reply, Option<u64>)> {
        if every(n, self.faults.throttle_every) {
            let secs = self.faults.retry_after_secs;
            let value = if self.faults.retry_after_as_date {
                // Round up to the next whole second, as an HTTP date can only say.
                let at = chrono::Utc::now() + chrono::Duration::seconds(secs as i64 + 1);
                at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
            } else {
                secs.to_string()
            };
            let mut r = Reply::error(429, "TooManyRequests", "Too many requests.");
            r.headers.push(("retry-after", value));
            return Some((r, Some(secs)));
        }
        if every(n, self.faults.unavailable_every) {
            let r = Reply::error(503, "ServiceUnavailable", "The service is unavailable.");
            return Some((r, None));
        }
        None
    }

    /// A page of the collection at the request's path: 403 where the app may not read it,
    /// an empty collection for one Graph has that the export does not hold, 404 for a path
    /// Graph does not have, 400 for a bad query.
    fn collection_page(&self, req: &Request, delegated: bool) -> Reply {
        let key = store::decode_path(req.path.trim_start_matches("/v1.0/"));
        // Approvals are readable with delegated rights only, as on Graph.
        let app_only_refused = !delegated
            && key.starts_with(
                "identityGovernance/entitlementManagement/accessPackageAssignmentApprovals",
            );
        let forbidden = self
            .faults
            .forbidden
            .iter()
            .any(|f| key.starts_with(f.as_str()));
        if app_only_refused || forbidden {
            return Reply::error(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            );
        }
        let empty;
        let collection = match self.collections.get(key.as_str()) {
            Some(c) => c,
            None if govlake::ingest::context::from_context(&format!("{GRAPH_CONTEXT}{key}"))
                .is_some() =>
            {
                empty = Collection {
                    context: format!("{GRAPH_CONTEXT}{key}"),
                    records: vec![],
                };
                &empty
            }
            None => return Reply::error(404, "Request_ResourceNotFound", "no such collection"),
        };
        match PageQuery::parse(&req.query) {
            Ok(query) => self.page(req, &key, collection, &query),
            Err(message) => Reply::error(400, "BadRequest", &message),
        }
    }

    /// One page: the matching records not held back nor past retention, from `$skiptoken`
    /// (the number of such records before it). A page that was linked to starts where the
    /// page before it ended; another is found by counting from the start.
    fn page(&self, req: &Request, key: &str, collection: &Collection, q: &PageQuery) -> Reply {
        let held = match key {
            AUDITS => self.held_back.lock().expect("not poisoned").clone(),
            _ => None,
        };
        let horizon = match self.faults.retention_days {
            Some(days) if key == AUDITS => {
                chrono::Utc::now().timestamp_micros() - days as i64 * 86_400_000_000
            }
            _ => i64::MIN,
        };
        let keep = |i: usize, r: &Entry| {
            q.filter.iter().all(|c| c.matches(r, &self.export))
                && !held.as_ref().is_some_and(|h| h.contains(&i))
                && r.activity().is_none_or(|t| t >= horizon)
        };
        let filter = req.query.get("$filter").cloned();
        let cursor_of = |skip: usize| (key.to_string(), filter.clone(), held.is_some(), skip);
        let cached = self
            .cursors
            .lock()
            .expect("not poisoned")
            .get(&cursor_of(q.skip))
            .copied();
        let (mut i, mut to_skip) = cached.map_or((0, q.skip), |at| (at, 0));
        let records = &collection.records;
        let mut slice: Vec<&Entry> = Vec::with_capacity(q.top.min(records.len()));
        while i < records.len() && slice.len() < q.top {
            if keep(i, &records[i]) {
                if to_skip > 0 {
                    to_skip -= 1;
                } else {
                    slice.push(&records[i]);
                }
            }
            i += 1;
        }
        while i < records.len() && !keep(i, &records[i]) {
            i += 1;
        }
        let end = q.skip + slice.len();
        let next = (i < records.len()).then(|| {
            let mut cursors = self.cursors.lock().expect("not poisoned");
            if cursors.len() >= MAX_CURSORS {
                cursors.clear();
            }
            cursors.insert(cursor_of(end), i);
            let host = req.header("host").unwrap_or("127.0.0.1");
            store::next_link(host, key, q.top, end, &req.query)
        });
        if next.is_none() && held.is_some() {
            // A listing reached its end: the late events arrive now.
            *self.held_back.lock().expect("not poisoned") = None;
        }
        match self.export.texts(&slice) {
            Ok(texts) => Reply::json(
                200,
                store::page_body(&collection.context, next.as_deref(), &texts),
            ),
            Err(e) => Reply::error(500, "InternalServerError", &e.to_string()),
        }
    }

    /// The Log Analytics query API: the tenant's audit events within the body's `timespan`
    /// (`start/end`, end exclusive), as `AuditLogs` rows; the KQL text is not evaluated.
    fn log_analytics_query(&self, body: &[u8]) -> Reply {
        let bad = |m: &str| Reply::error(400, "BadArgumentError", m);
        let Ok(request) = serde_json::from_slice::<Value>(body) else {
            return bad("The request body is not JSON.");
        };
        let Some((start, end)) = request["timespan"]
            .as_str()
            .and_then(|t| t.split_once('/'))
            .and_then(|(a, b)| Some((govlake::time::parse_ts(a)?, govlake::time::parse_ts(b)?)))
        else {
            return bad("The request needs a timespan `start/end` (ISO 8601 instants).");
        };
        let limit = self.faults.log_analytics_row_limit.unwrap_or(500_000);
        // Audit events are in time order: the timespan is a range of them.
        let in_span: Vec<&Entry> = self
            .collections
            .get(AUDITS)
            .map(|c| {
                let from = c.records.partition_point(|r| r.activity() < Some(start));
                let to = c.records.partition_point(|r| r.activity() < Some(end));
                c.records[from..to.max(from)]
                    .iter()
                    .take(limit + 1)
                    .collect()
            })
            .unwrap_or_default();
        let events = match self.export.values(&in_span) {
            Ok(events) => events,
            Err(e) => return Reply::error(500, "InternalServerError", &e.to_string()),
        };
        let mut answer =
            govlake::ingest::loganalytics::answer_of(&events[..events.len().min(limit)]);
        if events.len() > limit {
            answer["error"] = serde_json::json!({
                "code": "PartialError",
                "message": "There were some errors when processing your query.",
                "details": [{"code": "EngineError", "message": format!("Query result set has exceeded the internal record count limit {limit}")}]
            });
        }
        Reply::json(200, answer.to_string())
    }
}

/// Whether the Nth request is one of every Kth.
fn every(n: u64, k: Option<u64>) -> bool {
    k.is_some_and(|k| k > 0 && n.is_multiple_of(k))
}
