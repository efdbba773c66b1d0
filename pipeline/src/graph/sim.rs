//! The Graph simulator behind `govlake-graph-sim`: serves any export directory (the sample
//! tenant, a generated one, a real export) at the Microsoft Graph paths its pages came from,
//! on 127.0.0.1, the way Graph behaves: OData paging (`$top`, `$skiptoken`, absolute
//! `@odata.nextLink`), `$filter` on `createdDateTime` / `activityDateTime` / `state`
//! (`ge gt le lt eq`, joined by `and`), `$expand` accepted, a token endpoint
//! (`/{tenant}/oauth2/v2.0/token`: client credentials with a secret, a certificate
//! assertion checked against the certificate, or a federated assertion), managed identity
//! endpoints (App Service and VM forms), the Log Analytics query API
//! (`/v1/workspaces/{id}/query`, the tenant's audit events as `AuditLogs` rows), and bearer
//! checks. Tokens are JWT-shaped and carry the app roles it is told to grant. Faults are
//! chosen by [`Faults`]: 429 with `Retry-After`, 503, truncated bodies, tokens that expire
//! mid-run, slow pages, audit events that arrive late, events past a retention horizon,
//! clock skew, refused collections. `GET /_sim/log` returns every request it answered, with
//! its status and time, so tests can check a client's timing.
//!
//! Records are kept as JSON text plus the few fields filters read; a collection is the
//! `@odata.context` path its pages named (expansions stripped), or, for Azure Monitor
//! archives, `auditLogs/directoryAudits` with each envelope's `properties`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::catalog::value;
use crate::ingest::{context, reader};

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

/// One record: its JSON and the fields filters read.
struct Record {
    json: Box<str>,
    id: Box<str>,
    created: Option<i64>,
    activity: Option<i64>,
    state: Option<Box<str>>,
}

/// One collection at one Graph path.
struct Collection {
    context: String,
    records: Vec<Record>,
}

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

/// The simulator's state.
pub struct Simulator {
    collections: BTreeMap<String, Collection>,
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
    /// Ids of late audit events not yet released.
    held_back: Mutex<HashSet<Box<str>>>,
    log: Mutex<Vec<LoggedRequest>>,
}

const AUDITS: &str = "auditLogs/directoryAudits";
const GRAPH_CONTEXT: &str = "https://graph.microsoft.com/v1.0/$metadata#";

/// The collection path of an `@odata.context`: after `$metadata#`, with the last segment's
/// expansion list (`assignments(target(),…)`) dropped but key segments (`definitions('…')`)
/// kept.
fn collection_path(context: &str) -> String {
    let path = context.split_once("$metadata#").map_or(context, |(_, p)| p);
    let path = path.split_once("/$entity").map_or(path, |(p, _)| p);
    match path.rfind('/') {
        Some(i) => {
            let (head, last) = path.split_at(i + 1);
            format!("{head}{}", strip_expansion(last))
        }
        None => strip_expansion(path).to_string(),
    }
}

fn strip_expansion(segment: &str) -> &str {
    match segment.find('(') {
        Some(i) if !segment[i..].starts_with("('") => &segment[..i],
        _ => segment,
    }
}

impl Simulator {
    /// Loads an export directory.
    pub fn load(dir: &Path, faults: Faults, auth: SimAuth) -> Result<Self, String> {
        let inputs = crate::ingest::files::discover(&[dir.to_path_buf()])
            .map_err(|e| format!("cannot read `{}`: {e}", dir.display()))?;
        let mut collections: BTreeMap<String, Collection> = BTreeMap::new();
        let mut seen: HashSet<(String, String)> = HashSet::new();
        for (path, _) in &inputs.files {
            let file = std::fs::File::open(path)
                .map_err(|e| format!("cannot open `{}`: {e}", path.display()))?;
            let by_name = context::from_file_name(path);
            let mut add = |item: reader::Item| -> Result<(), String> {
                let reader::Item::Record { context, value, .. } = item else {
                    return Ok(());
                };
                let (key, ctx, value) = match context.as_deref() {
                    Some(c) => (collection_path(c), c.to_string(), value),
                    None => match &by_name {
                        Some(r) if r.entity == "audit_events" => {
                            let value = if r.envelope || value.get("properties").is_some() {
                                value.get("properties").cloned().unwrap_or(Value::Null)
                            } else {
                                value
                            };
                            (
                                AUDITS.to_string(),
                                format!("{GRAPH_CONTEXT}{AUDITS}"),
                                value,
                            )
                        }
                        _ => return Ok(()), // no Graph path known for it: not served
                    },
                };
                let Some(obj) = value.as_object() else {
                    return Ok(());
                };
                let id = obj.get("id").and_then(Value::as_str).unwrap_or_default();
                if !seen.insert((key.clone(), id.to_string())) {
                    return Ok(()); // the same object from a page and an archive
                }
                let ts = |name: &str| {
                    value::get_ci(obj, name)
                        .and_then(Value::as_str)
                        .and_then(crate::time::parse_ts)
                };
                let record = Record {
                    id: id.into(),
                    created: ts("createdDateTime"),
                    activity: ts("activityDateTime"),
                    state: value::get_ci(obj, "state")
                        .and_then(Value::as_str)
                        .map(Into::into),
                    json: value.to_string().into(),
                };
                collections
                    .entry(key)
                    .or_insert_with(|| Collection {
                        context: ctx,
                        records: vec![],
                    })
                    .records
                    .push(record);
                Ok(())
            };
            reader::read_stream(std::io::BufReader::new(file), &mut |item| {
                add(item).map_err(|e| reader::Stopped(e.into()))
            })
            .map_err(|e| format!("`{}`: {} {}", path.display(), e.message, e.location))?;
        }
        let mut held_back = HashSet::new();
        if let Some(audits) = collections.get_mut(AUDITS) {
            audits
                .records
                .sort_by(|a, b| (a.activity, &a.id).cmp(&(b.activity, &b.id)));
            let n = audits.records.len();
            if faults.late_events > 0 && n > faults.late_events + 1 {
                for r in &audits.records[n - 1 - faults.late_events..n - 1] {
                    held_back.insert(r.id.clone());
                }
            }
        }
        Ok(Self {
            collections,
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
        loop {
            let (stream, _) = listener.accept().await?;
            let sim = self.clone();
            tokio::spawn(async move {
                let _ = sim.connection(stream).await;
            });
        }
    }

    async fn connection(&self, stream: TcpStream) -> std::io::Result<()> {
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        loop {
            let mut line = String::new();
            if read.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or_default().to_string();
            let target = parts.next().unwrap_or_default().to_string();
            let mut headers = HashMap::new();
            loop {
                let mut h = String::new();
                if read.read_line(&mut h).await? == 0 {
                    return Ok(());
                }
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
            }
            let length: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; length.min(1 << 20)];
            read.read_exact(&mut body).await?;
            let reply = self.answer(&method, &target, &headers, &body).await;
            let close = headers.get("connection").is_some_and(|c| c == "close");
            // The simulator's clock, skewed as told (what `govlake doctor` compares).
            let date = chrono::Utc::now() + chrono::Duration::seconds(self.faults.clock_skew_secs);
            let mut head = format!(
                "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nDate: {}\r\n",
                reply.status,
                reason(reply.status),
                reply.content_type,
                reply.body.len(),
                date.format("%a, %d %b %Y %H:%M:%S GMT")
            );
            for (k, v) in &reply.headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str(if close || reply.truncate {
                "Connection: close\r\n\r\n"
            } else {
                "\r\n"
            });
            write.write_all(head.as_bytes()).await?;
            if reply.truncate {
                write.write_all(&reply.body[..reply.body.len() / 2]).await?;
                write.flush().await?;
                return Ok(()); // the client sees a short body
            }
            write.write_all(&reply.body).await?;
            if close {
                return Ok(());
            }
        }
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

    async fn answer(
        &self,
        method: &str,
        target: &str,
        headers: &HashMap<String, String>,
        body: &[u8],
    ) -> Reply {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let query = parse_query(query);
        if method == "GET" && path == "/_sim/log" {
            let log = self.log.lock().expect("not poisoned").clone();
            return Reply::json(200, serde_json::to_string(&log).unwrap_or_default());
        }
        if method == "POST" && path.ends_with("/oauth2/v2.0/devicecode") {
            let reply = self.device_code(headers);
            self.record(seq, method, path, reply.status, None);
            return reply;
        }
        if method == "POST" && path.ends_with("/oauth2/v2.0/token") {
            let reply = self.token(path, headers, body);
            self.record(seq, method, path, reply.status, None);
            return reply;
        }
        if method == "GET" && (path == "/msi/token" || path == "/metadata/identity/oauth2/token") {
            let reply = self.managed_identity(path, &query, headers);
            self.record(seq, method, path, reply.status, None);
            return reply;
        }
        let log_analytics =
            method == "POST" && path.starts_with("/v1/workspaces/") && path.ends_with("/query");
        if !log_analytics && (method != "GET" || !path.starts_with("/v1.0/")) {
            self.record(seq, method, target, 404, None);
            return Reply::error(
                404,
                "Request_UnsupportedQuery",
                "not served by the simulator",
            );
        }
        let n = self.graph_requests.fetch_add(1, Ordering::SeqCst) + 1;
        // Authentication first, as Graph does.
        let bearer = headers
            .get("authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
            .map(str::to_string);
        let signed_in = bearer.as_ref().and_then(|t| {
            let mut tokens = self.tokens.lock().expect("not poisoned");
            let (used, delegated) = tokens.get_mut(t)?;
            *used += 1;
            let fresh = self
                .faults
                .token_lifetime_requests
                .is_none_or(|limit| *used <= limit);
            fresh.then_some(*delegated)
        });
        let valid = signed_in.is_some();
        if !valid {
            self.record(seq, method, target, 401, None);
            return Reply::error(
                401,
                "InvalidAuthenticationToken",
                "Access token has expired or is not yet valid.",
            );
        }
        let every = |n: u64, k: Option<u64>| k.is_some_and(|k| k > 0 && n.is_multiple_of(k));
        if every(n, self.faults.throttle_every) {
            let secs = self.faults.retry_after_secs;
            let value = if self.faults.retry_after_as_date {
                // Round up to the next whole second, as an HTTP date can only say.
                let at = chrono::Utc::now() + chrono::Duration::seconds(secs as i64 + 1);
                at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
            } else {
                secs.to_string()
            };
            self.record(seq, method, target, 429, Some(secs));
            let mut r = Reply::error(429, "TooManyRequests", "Too many requests.");
            r.headers.push(("Retry-After".into(), value));
            return r;
        }
        if every(n, self.faults.unavailable_every) {
            self.record(seq, method, target, 503, None);
            return Reply::error(503, "ServiceUnavailable", "The service is unavailable.");
        }
        if let Some(d) = self.faults.slow_page {
            tokio::time::sleep(d).await;
        }
        if log_analytics {
            let reply = self.log_analytics_query(body);
            self.record(seq, method, path, reply.status, None);
            return reply;
        }
        let key = percent_decode(path.trim_start_matches("/v1.0/"));
        // Approvals are readable with delegated rights only, as on Graph.
        let app_only_refused = signed_in == Some(false)
            && key.starts_with(
                "identityGovernance/entitlementManagement/accessPackageAssignmentApprovals",
            );
        if app_only_refused
            || self
                .faults
                .forbidden
                .iter()
                .any(|f| key.starts_with(f.as_str()))
        {
            self.record(seq, method, target, 403, None);
            return Reply::error(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            );
        }
        // A collection the export does not hold is empty (as Graph lists an empty tenant),
        // as long as it is one Graph has.
        let empty;
        let collection = match self.collections.get(key.as_str()) {
            Some(c) => c,
            None if context::from_context(&format!("{GRAPH_CONTEXT}{key}")).is_some() => {
                empty = Collection {
                    context: format!("{GRAPH_CONTEXT}{key}"),
                    records: vec![],
                };
                &empty
            }
            None => {
                self.record(seq, method, target, 404, None);
                return Reply::error(404, "Request_ResourceNotFound", "no such collection");
            }
        };
        let mut reply = match self.page(&key, collection, &query, headers) {
            Ok(r) => r,
            Err(message) => {
                self.record(seq, method, target, 400, None);
                return Reply::error(400, "BadRequest", &message);
            }
        };
        if every(n, self.faults.truncate_every) {
            reply.truncate = true;
        }
        self.record(seq, method, target, reply.status, None);
        reply
    }

    /// The client-credentials token endpoint.
    fn token(&self, path: &str, headers: &HashMap<String, String>, body: &[u8]) -> Reply {
        let form = parse_query(&String::from_utf8_lossy(body));
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
        let refuse = |code: &str, description: &str| {
            Reply::json(
                401,
                serde_json::json!({"error": code, "error_description": description}).to_string(),
            )
        };
        let client_id = get("client_id");
        let resource = get("scope")
            .split(' ')
            .next()
            .unwrap_or_default()
            .trim_end_matches("/.default")
            .to_string();
        match get("grant_type") {
            "urn:ietf:params:oauth:grant-type:device_code" => {
                let mut codes = self.device_codes.lock().expect("not poisoned");
                let Some(pending) = codes.get_mut(get("device_code")) else {
                    return Reply::json(
                        400,
                        r#"{"error":"expired_token","error_description":"AADSTS70020: The provided value for the input parameter 'device_code' is not valid."}"#.into(),
                    );
                };
                if *pending > 0 {
                    *pending -= 1;
                    return Reply::json(
                        400,
                        r#"{"error":"authorization_pending","error_description":"AADSTS70016: OAuth 2.0 device flow error. Authorization is pending."}"#.into(),
                    );
                }
                codes.remove(get("device_code"));
                drop(codes);
                return self.delegated_token(client_id, &resource);
            }
            "refresh_token" => {
                let known = self
                    .refresh_tokens
                    .lock()
                    .expect("not poisoned")
                    .remove(get("refresh_token"));
                if !known {
                    return refuse(
                        "invalid_grant",
                        "AADSTS70000: The refresh token is not valid.",
                    );
                }
                return self.delegated_token(client_id, &resource);
            }
            _ => {}
        }
        if get("grant_type") != "client_credentials" || client_id.is_empty() {
            return refuse(
                "invalid_request",
                "AADSTS900144: grant_type and client_id are required.",
            );
        }
        if form.contains_key("client_secret") {
            if get("client_secret") != self.auth.client_secret {
                return refuse(
                    "invalid_client",
                    "AADSTS7000215: Invalid client secret provided.",
                );
            }
        } else if get("client_assertion_type") == crate::graph::credential::JWT_BEARER {
            let assertion = get("client_assertion");
            let host = headers.get("host").cloned().unwrap_or_default();
            if let Err(e) =
                self.check_assertion(assertion, client_id, &format!("http://{host}{path}"))
            {
                return refuse("invalid_client", &e);
            }
        } else {
            return refuse(
                "invalid_client",
                "AADSTS7000216: 'client_assertion', 'client_secret' or 'request' is required.",
            );
        }
        Reply::json(
            200,
            serde_json::json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                "access_token": self.issue(client_id, &resource, false)})
            .to_string(),
        )
    }

    /// A client assertion: a certificate's (signature, `x5t`, `aud`, `iss` = `sub` = client,
    /// unique `jti`, at most 10 minutes long, valid now within 5 minutes of skew), or a
    /// federated token (any JWT; the simulator has no issuer to check it against).
    fn check_assertion(&self, jwt: &str, client_id: &str, audience: &str) -> Result<(), String> {
        use base64::Engine as _;
        let header: Value = jwt
            .split('.')
            .next()
            .and_then(|h| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(h)
                    .ok()
            })
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("AADSTS50027: JWT token is invalid or malformed.")?;
        if jwt.split('.').count() != 3 {
            return Err("AADSTS50027: JWT token is invalid or malformed.".into());
        }
        let Some(x5t) = header["x5t"].as_str() else {
            return Ok(()); // federated
        };
        let cert = self
            .auth
            .certificate
            .as_ref()
            .ok_or("AADSTS700027: no certificate is registered for the app.")?;
        let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, cert);
        if base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref()) != x5t {
            return Err(format!(
                "AADSTS700027: the key (x5t {x5t}) is not registered on the app."
            ));
        }
        let (_, claims) = crate::graph::credential::verify_rs256(jwt, cert).map_err(|e| {
            format!("AADSTS700027: client assertion failed signature validation: {e}")
        })?;
        if claims["aud"] != audience {
            return Err(format!(
                "AADSTS700016: the assertion's audience {} is not {audience}.",
                claims["aud"]
            ));
        }
        if claims["iss"] != client_id || claims["sub"] != client_id {
            return Err("AADSTS700021: the assertion's iss and sub must be the client id.".into());
        }
        let (nbf, exp) = (
            claims["nbf"].as_i64().unwrap_or(0),
            claims["exp"].as_i64().unwrap_or(0),
        );
        if exp - nbf > 600 {
            return Err("AADSTS700025: the assertion lives longer than 10 minutes.".into());
        }
        let now = chrono::Utc::now().timestamp() + self.faults.clock_skew_secs;
        const SKEW: i64 = 300;
        if now + SKEW < nbf || now - SKEW > exp {
            return Err(format!(
                "AADSTS700024: Client assertion is not within its valid time range (now {now}, nbf {nbf}, exp {exp})."
            ));
        }
        let jti = claims["jti"].as_str().unwrap_or_default().to_string();
        if jti.is_empty()
            || !self
                .assertions_seen
                .lock()
                .expect("not poisoned")
                .insert(jti)
        {
            return Err("AADSTS700023: the assertion's jti was already used.".into());
        }
        Ok(())
    }

    /// The App Service (`/msi/token`, `X-IDENTITY-HEADER`) and VM metadata service
    /// (`/metadata/identity/oauth2/token`, `Metadata: true`) managed identity endpoints.
    fn managed_identity(
        &self,
        path: &str,
        query: &HashMap<String, String>,
        headers: &HashMap<String, String>,
    ) -> Reply {
        let allowed = if path == "/msi/token" {
            headers.get("x-identity-header") == Some(&self.auth.identity_header)
        } else {
            headers.get("metadata").is_some_and(|v| v == "true")
        };
        let Some(resource) = query.get("resource").filter(|_| allowed) else {
            return Reply::json(
                400,
                r#"{"error":"invalid_request","error_description":"Required metadata header not specified or resource missing"}"#.into(),
            );
        };
        let client = query
            .get("client_id")
            .map_or("system-assigned", String::as_str);
        let expires_on = chrono::Utc::now().timestamp() + 86_399;
        Reply::json(
            200,
            serde_json::json!({"access_token": self.issue(client, resource, false), "expires_on": expires_on.to_string(),
                "resource": resource, "token_type": "Bearer"})
            .to_string(),
        )
    }

    /// The device code endpoint: a code "entered" after `device_code_polls` polls.
    fn device_code(&self, headers: &HashMap<String, String>) -> Reply {
        let code = uuid::Uuid::new_v4().simple().to_string();
        let user_code = code[..8].to_ascii_uppercase();
        self.device_codes
            .lock()
            .expect("not poisoned")
            .insert(code.clone(), self.faults.device_code_polls);
        let host = headers.get("host").cloned().unwrap_or_default();
        let uri = format!("http://{host}/devicelogin");
        Reply::json(
            200,
            serde_json::json!({"device_code": code, "user_code": user_code, "verification_uri": uri,
                "expires_in": 900, "interval": 1,
                "message": format!("To sign in, use a web browser to open the page {uri} and enter the code {user_code} to authenticate.")})
            .to_string(),
        )
    }

    /// A delegated token and its refresh token.
    fn delegated_token(&self, client_id: &str, resource: &str) -> Reply {
        let refresh = uuid::Uuid::new_v4().simple().to_string();
        self.refresh_tokens
            .lock()
            .expect("not poisoned")
            .insert(refresh.clone());
        Reply::json(
            200,
            serde_json::json!({"token_type": "Bearer", "expires_in": 3599, "scope": "EntitlementManagement.Read.All AuditLog.Read.All",
                "access_token": self.issue(client_id, resource, true), "refresh_token": refresh})
            .to_string(),
        )
    }

    /// A new JWT-shaped token: app-only tokens carry the configured roles, delegated ones a
    /// `scp` claim.
    fn issue(&self, client_id: &str, resource: &str, delegated: bool) -> String {
        use base64::Engine as _;
        let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let token = format!(
            "{}.{}.{}",
            b64(serde_json::json!({"typ": "JWT", "alg": "none"})),
            b64(if delegated {
                serde_json::json!({"aud": resource, "appid": client_id, "scp": "EntitlementManagement.Read.All AuditLog.Read.All",
                    "jti": uuid::Uuid::new_v4().to_string()})
            } else {
                serde_json::json!({"aud": resource, "appid": client_id, "roles": self.auth.roles,
                    "jti": uuid::Uuid::new_v4().to_string()})
            }),
            uuid::Uuid::new_v4().simple()
        );
        self.tokens
            .lock()
            .expect("not poisoned")
            .insert(token.clone(), (0, delegated));
        token
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
            .and_then(|(a, b)| Some((crate::time::parse_ts(a)?, crate::time::parse_ts(b)?)))
        else {
            return bad("The request needs a timespan `start/end` (ISO 8601 instants).");
        };
        let events: Vec<Value> = self
            .collections
            .get(AUDITS)
            .map(|c| {
                c.records
                    .iter()
                    .filter(|r| r.activity.is_some_and(|t| t >= start && t < end))
                    .filter_map(|r| serde_json::from_str(&r.json).ok())
                    .collect()
            })
            .unwrap_or_default();
        let limit = self.faults.log_analytics_row_limit.unwrap_or(500_000);
        let mut answer = crate::ingest::loganalytics::answer_of(&events[..events.len().min(limit)]);
        if events.len() > limit {
            answer["error"] = serde_json::json!({
                "code": "PartialError",
                "message": "There were some errors when processing your query.",
                "details": [{"code": "EngineError", "message": format!("Query result set has exceeded the internal record count limit {limit}")}]
            });
        }
        Reply::json(200, answer.to_string())
    }

    fn page(
        &self,
        key: &str,
        collection: &Collection,
        query: &HashMap<String, String>,
        headers: &HashMap<String, String>,
    ) -> Result<Reply, String> {
        let top: usize = match query.get("$top") {
            Some(t) => t.parse().map_err(|_| format!("Invalid $top value `{t}`"))?,
            None => 100,
        }
        .clamp(1, 999);
        let skip: usize = match query.get("$skiptoken") {
            Some(t) => t.parse().map_err(|_| format!("Invalid $skiptoken `{t}`"))?,
            None => 0,
        };
        let filter = match query.get("$filter") {
            Some(f) => parse_filter(f)?,
            None => vec![],
        };
        let held = self.held_back.lock().expect("not poisoned").clone();
        let horizon = match self.faults.retention_days {
            Some(days) if key == AUDITS => {
                chrono::Utc::now().timestamp_micros() - days as i64 * 86_400_000_000
            }
            _ => i64::MIN,
        };
        let matching: Vec<&Record> = collection
            .records
            .iter()
            .filter(|r| filter.iter().all(|c| c.matches(r)))
            .filter(|r| !held.contains(&r.id))
            .filter(|r| r.activity.is_none_or(|t| t >= horizon))
            .collect();
        let end = (skip + top).min(matching.len());
        let slice = matching.get(skip..end).unwrap_or_default();
        let mut body = format!(
            "{{\"@odata.context\":{}",
            serde_json::to_string(&collection.context).unwrap_or_default()
        );
        if end < matching.len() {
            let host = headers
                .get("host")
                .cloned()
                .unwrap_or_else(|| "127.0.0.1".into());
            let mut next = format!("http://{host}/v1.0/{key}?$top={top}&$skiptoken={end}");
            if let Some(f) = query.get("$filter") {
                next.push_str(&format!("&$filter={}", percent_encode(f)));
            }
            if let Some(e) = query.get("$expand") {
                next.push_str(&format!("&$expand={}", percent_encode(e)));
            }
            body.push_str(&format!(
                ",\"@odata.nextLink\":{}",
                serde_json::to_string(&next).unwrap_or_default()
            ));
        } else if key == AUDITS && !held.is_empty() {
            // A listing reached its end: the late events arrive now.
            self.held_back.lock().expect("not poisoned").clear();
        }
        body.push_str(",\"value\":[");
        for (i, r) in slice.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&r.json);
        }
        body.push_str("]}");
        Ok(Reply::json(200, body))
    }
}

/// One `field op value` clause of a `$filter`.
struct Clause {
    field: String,
    op: String,
    ts: Option<i64>,
    text: String,
}

impl Clause {
    fn matches(&self, r: &Record) -> bool {
        use std::cmp::Ordering::*;
        let ord = match self.field.as_str() {
            "createddatetime" | "activitydatetime" => {
                let v = if self.field == "createddatetime" {
                    r.created
                } else {
                    r.activity
                };
                match (v, self.ts) {
                    (Some(v), Some(t)) => v.cmp(&t),
                    _ => return false,
                }
            }
            "state" => match &r.state {
                Some(s) => s.as_ref().cmp(self.text.as_str()),
                None => return false,
            },
            _ => return false,
        };
        match self.op.as_str() {
            "eq" => ord == Equal,
            "ge" => ord != Less,
            "gt" => ord == Greater,
            "le" => ord != Greater,
            "lt" => ord == Less,
            _ => false,
        }
    }
}

fn parse_filter(filter: &str) -> Result<Vec<Clause>, String> {
    let mut out = vec![];
    for clause in filter.split(" and ") {
        let parts: Vec<&str> = clause.split_whitespace().collect();
        let [field, op, value] = parts.as_slice() else {
            return Err(format!("Invalid filter clause `{clause}`"));
        };
        let field = field.to_ascii_lowercase();
        if !matches!(
            field.as_str(),
            "createddatetime" | "activitydatetime" | "state"
        ) {
            return Err(format!(
                "Invalid filter clause: filtering on `{field}` is not supported"
            ));
        }
        let op = op.to_ascii_lowercase();
        if !matches!(op.as_str(), "eq" | "ge" | "gt" | "le" | "lt") {
            return Err(format!("Invalid filter operator `{op}`"));
        }
        let text = value.trim_matches('\'').to_string();
        out.push(Clause {
            ts: crate::time::parse_ts(&text),
            field,
            op,
            text,
        });
    }
    Ok(out)
}

fn parse_query(q: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Decodes `%XX` in a request path (query strings go through `form_urlencoded`).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

struct Reply {
    status: u16,
    content_type: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    truncate: bool,
}

impl Reply {
    fn json(status: u16, body: String) -> Self {
        Self {
            status,
            content_type: "application/json",
            headers: vec![],
            body: body.into_bytes(),
            truncate: false,
        }
    }

    fn error(status: u16, code: &str, message: &str) -> Self {
        Self::json(
            status,
            serde_json::json!({"error": {"code": code, "message": message}}).to_string(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_paths_drop_expansions_keep_keys() {
        assert_eq!(
            collection_path(
                "https://graph.microsoft.com/v1.0/$metadata#identityGovernance/entitlementManagement/accessPackages(catalog(),resourceRoleScopes(role(),scope()))"
            ),
            "identityGovernance/entitlementManagement/accessPackages"
        );
        assert_eq!(
            collection_path(
                "https://graph.microsoft.com/v1.0/$metadata#identityGovernance/accessReviews/definitions('a')/instances('b')/decisions"
            ),
            "identityGovernance/accessReviews/definitions('a')/instances('b')/decisions"
        );
    }

    #[test]
    fn filters_and_percent_coding() {
        let f = parse_filter("activityDateTime ge 2026-08-01T00:00:00Z and state eq 'delivered'")
            .unwrap();
        assert_eq!(f.len(), 2);
        assert!(parse_filter("displayName eq 'x'").is_err());
        let s = "activityDateTime ge 2026-08-01T00:00:00Z";
        assert_eq!(
            parse_query(&format!("$filter={}", percent_encode(s)))["$filter"],
            s
        );
        assert_eq!(percent_decode("definitions('a%27b')"), "definitions('a'b')");
    }
}
