//! The HTTP client for Microsoft Graph (and the Log Analytics query API): tokens from any
//! credential in `credential.rs`, cached and renewed before they expire, and every request
//! made safe to repeat until it returns a whole answer: 429 waits exactly the `Retry-After`
//! (seconds or an HTTP date; absent, zero or garbage falls back to backoff, never a zero-delay
//! loop), 500/502/503/504, timeouts and transport errors (a truncated body included) back off
//! exponentially with jitter, a 401 gets one token refresh, and attempts and total time are
//! bounded: a wait that would pass the run's deadline fails at once, cleanly, so the next run
//! redoes the work. A client-side limiter keeps `directoryAudits` under Graph's 5 requests
//! per 10 seconds. `@odata.nextLink` is followed exactly as given, and only to the configured
//! host, so no token goes anywhere else. All timing runs on tokio's clock, so the retry rules
//! are tested on paused time (see the tests at the end).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::{Rng as _, SeedableRng as _, rngs::SmallRng};
use serde_json::Value;
use tokio::time::Instant;
use url::Url;

pub use super::credential::{Credential, Secret};
use super::credential::{TokenRequest, token_roles};
pub use super::error::{AttemptError, Error, Result};
use super::retry::{
    Answer, Endpoint, GiveUp, ResponseFacts, RetryAction, backoff_step, classify, parse_http_date,
};
use super::scrub::scrub;

/// How the client signs in and retries.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Graph endpoint (`https://graph.microsoft.com`, a national cloud, or the simulator);
    /// the Log Analytics API endpoint for a Log Analytics client.
    pub endpoint: Url,
    /// Authority host (`https://login.microsoftonline.com`, …).
    pub authority: Url,
    /// Tenant id or domain.
    pub tenant: String,
    /// Application (client) id.
    pub client_id: String,
    /// How the app signs in.
    pub credential: Credential,
    /// Attempts per request (first try included).
    pub max_attempts: u32,
    /// First backoff step for 5xx and transport errors (doubles, with jitter, capped at 60 s).
    pub backoff_base: Duration,
    /// Time allowed for one request.
    pub request_timeout: Duration,
    /// Time allowed for a whole run.
    pub deadline: Duration,
    /// Client-side limit for directoryAudits: requests per window.
    pub audit_rate_limit: Option<(usize, Duration)>,
}

/// Counters a run reports.
#[derive(Debug, Default)]
pub struct Stats {
    /// HTTP requests sent (retries included, token requests not).
    pub requests: AtomicU64,
    /// 429 answers.
    pub throttled: AtomicU64,
    /// Retries of any cause.
    pub retries: AtomicU64,
    /// Milliseconds spent waiting (Retry-After, backoff, rate limiter).
    pub waited_ms: AtomicU64,
    /// Tokens fetched.
    pub token_requests: AtomicU64,
}

/// One request as the retry loop builds it.
pub(crate) struct Request {
    post: bool,
    url: Url,
    headers: Vec<(&'static str, String)>,
    body: Option<(&'static str, String)>,
}

impl From<TokenRequest> for Request {
    fn from(request: TokenRequest) -> Self {
        match request {
            TokenRequest::Form { url, body } => Request {
                post: true,
                url,
                headers: vec![],
                body: Some(("application/x-www-form-urlencoded", body)),
            },
            TokenRequest::Get { url, headers } => Request {
                post: false,
                url,
                headers,
                body: None,
            },
        }
    }
}

/// One answer as the retry loop reads it: the body is an error when it was cut short.
pub(crate) struct Reply {
    status: u16,
    retry_after: Option<String>,
    /// The `Date` header: the server's clock.
    date: Option<String>,
    body: std::result::Result<Vec<u8>, AttemptError>,
}

/// Sends requests: HTTP, or (in the tests) a script on tokio's paused clock.
enum Transport {
    Http(reqwest::Client),
    #[cfg(test)]
    Script(std::sync::Arc<tests::Script>),
}

impl Transport {
    async fn send(&self, req: Request) -> std::result::Result<Reply, AttemptError> {
        match self {
            Transport::Http(http) => {
                let mut b = if req.post {
                    http.post(req.url)
                } else {
                    http.get(req.url)
                };
                for (k, v) in req.headers {
                    b = b.header(k, v);
                }
                if let Some((content_type, body)) = req.body {
                    b = b.header("Content-Type", content_type).body(body);
                }
                let r = b
                    .send()
                    .await
                    .map_err(|e| AttemptError::Transport(Box::new(e)))?;
                let status = r.status().as_u16();
                let retry_after = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let date = r
                    .headers()
                    .get("date")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let body = r
                    .bytes()
                    .await
                    .map(|b| b.to_vec())
                    .map_err(|e| AttemptError::Truncated(Box::new(e)));
                Ok(Reply {
                    status,
                    retry_after,
                    date,
                    body,
                })
            }
            #[cfg(test)]
            Transport::Script(s) => s.send(req).await,
        }
    }
}

/// A token and when to renew it.
struct Token {
    value: String,
    renew_at: Instant,
}

/// A Graph client.
pub struct GraphClient {
    transport: Transport,
    settings: ClientSettings,
    token: tokio::sync::Mutex<Option<Token>>,
    /// The refresh token of a delegated sign-in.
    refresh: Mutex<Option<Secret>>,
    roles: Mutex<Vec<String>>,
    /// The token endpoint's clock minus ours (seconds), from the `Date` of its last answer.
    token_clock_skew: Mutex<Option<i64>>,
    audit_window: Mutex<VecDeque<Instant>>,
    /// Backoff jitter: seeded from the OS, or from a fixed seed in the tests.
    jitter: Mutex<SmallRng>,
    started: Instant,
    /// Counters.
    pub stats: Stats,
}

impl GraphClient {
    /// A client with the given settings.
    pub fn new(settings: ClientSettings) -> Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("govlake/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(Error::HttpClient)?;
        Ok(Self::with_transport(
            settings,
            Transport::Http(http),
            SmallRng::from_os_rng(),
        ))
    }

    fn with_transport(settings: ClientSettings, transport: Transport, jitter: SmallRng) -> Self {
        Self {
            transport,
            settings,
            token: tokio::sync::Mutex::new(None),
            refresh: Mutex::new(None),
            roles: Mutex::new(vec![]),
            token_clock_skew: Mutex::new(None),
            audit_window: Mutex::new(VecDeque::new()),
            jitter: Mutex::new(jitter),
            started: Instant::now(),
            stats: Stats::default(),
        }
    }

    /// The URL of a Graph path (`identityGovernance/…`), with query pairs.
    pub fn url(&self, path: &str, query: &[(&str, String)]) -> Result<Url> {
        let base = self.settings.endpoint.as_str().trim_end_matches('/');
        let mut url = parse_url(format!("{base}/v1.0/{path}"))?;
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        Ok(url)
    }

    /// The URL of a path on the endpoint outside Graph's `v1.0` (the Log Analytics API).
    pub fn service_url(&self, path: &str) -> Result<Url> {
        let base = self.settings.endpoint.as_str().trim_end_matches('/');
        parse_url(format!("{base}/{path}"))
    }

    /// Checks that a nextLink stays on the configured Graph host.
    pub fn check_link(&self, link: &str) -> Result<Url> {
        let url = parse_url(link.to_string())?;
        let e = &self.settings.endpoint;
        if url.scheme() != e.scheme()
            || url.host_str() != e.host_str()
            || url.port_or_known_default() != e.port_or_known_default()
        {
            return Err(Error::ForeignLink {
                link: link.to_string(),
                endpoint: e.to_string(),
            });
        }
        Ok(url)
    }

    /// The app roles of the current token (empty before sign-in or for opaque tokens).
    pub fn token_roles(&self) -> Vec<String> {
        self.roles.lock().expect("not poisoned").clone()
    }

    /// Signs in now (or keeps the token it has), so a sign-in problem shows on its own.
    pub async fn sign_in(&self) -> Result<()> {
        self.bearer(false).await.map(|_| ())
    }

    /// How far the token endpoint's clock is ahead of this machine's (seconds; negative:
    /// behind), from the `Date` header of its last answer; `None` before sign-in or when it
    /// sent none. A `Date` has whole seconds, so ±1 s is noise.
    pub fn token_clock_skew(&self) -> Option<i64> {
        *self.token_clock_skew.lock().expect("not poisoned")
    }

    fn remaining(&self) -> Duration {
        self.settings
            .deadline
            .saturating_sub(self.started.elapsed())
    }

    /// One request with the per-request timeout.
    async fn send(&self, req: Request) -> std::result::Result<Reply, AttemptError> {
        let limit = self.settings.request_timeout.min(self.remaining());
        match tokio::time::timeout(limit, self.transport.send(req)).await {
            Ok(r) => r,
            Err(_) => Err(AttemptError::Timeout {
                secs: limit.as_secs_f64(),
            }),
        }
    }

    fn auth_error(&self, url: &str, status: u16, message: String) -> Error {
        Error::Auth {
            url: url.to_string(),
            status,
            message,
            hint: self.settings.credential.hint(),
        }
    }

    /// A server's text as an error may show it: cut short, with the configured secret,
    /// the `sent` secrets and anything credential-shaped taken out.
    fn shown(&self, text: &str, sent: &[&str]) -> String {
        let mut known = sent.to_vec();
        known.extend(self.settings.credential.secret());
        scrub(text, &known)
    }

    async fn fetch_token(&self) -> Result<Token> {
        let s = &self.settings;
        if matches!(s.credential, Credential::DeviceCode(_)) {
            return self.delegated_token().await;
        }
        let build = || {
            s.credential
                .token_request(&s.authority, &s.tenant, &s.client_id, s.endpoint.as_str())
        };
        self.exchange_token(&build).await
    }

    /// The authority's OAuth 2.0 endpoint `name` (`token`, `devicecode`) and the delegated
    /// scope.
    fn oauth(&self, name: &str) -> Result<(Url, String)> {
        let s = &self.settings;
        let text = format!(
            "{}/{}/oauth2/v2.0/{name}",
            s.authority.as_str().trim_end_matches('/'),
            s.tenant
        );
        let url = parse_url(text)?;
        let scope = format!(
            "{}/.default offline_access",
            s.endpoint.as_str().trim_end_matches('/')
        );
        Ok((url, scope))
    }

    /// Delegated sign-in: the refresh token when there is one, else the device code flow
    /// (the instructions go to the prompt; the authority is polled at the interval it asks).
    async fn delegated_token(&self) -> Result<Token> {
        let s = &self.settings;
        let Credential::DeviceCode(prompt) = &s.credential else {
            unreachable!("device code credential")
        };
        let (token_url, scope) = self.oauth("token")?;
        let form = |pairs: &[(&str, &str)]| {
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish()
        };
        let refresh = self.refresh.lock().expect("not poisoned").clone();
        if let Some(rt) = refresh {
            let body = form(&[
                ("grant_type", "refresh_token"),
                ("client_id", &s.client_id),
                ("scope", &scope),
                ("refresh_token", rt.expose()),
            ]);
            let build = || {
                Ok(TokenRequest::Form {
                    url: token_url.clone(),
                    body: body.clone(),
                })
            };
            match self.exchange_token(&build).await {
                Err(Error::Auth { .. }) => {} // refused (revoked, expired): sign in again
                other => return other,
            }
        }
        let (code_url, _) = self.oauth("devicecode")?;
        let post = |url: &Url, body: String| Request {
            post: true,
            url: url.clone(),
            headers: vec![],
            body: Some(("application/x-www-form-urlencoded", body)),
        };
        let reply = self
            .send(post(
                &code_url,
                form(&[("client_id", &s.client_id), ("scope", &scope)]),
            ))
            .await
            .map_err(|source| Error::Unreachable {
                url: code_url.to_string(),
                source,
            })?;
        let answer: Value = reply
            .body
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        let device_code = match (reply.status, answer["device_code"].as_str()) {
            (200, Some(code)) => code.to_string(),
            (status, _) => {
                let message = answer["error_description"].as_str().map_or_else(
                    || "no device code in the answer".into(),
                    |m| self.shown(m, &[]),
                );
                return Err(self.auth_error(code_url.as_str(), status, message));
            }
        };
        let message = answer["message"].as_str().map_or_else(
            || {
                format!(
                    "To sign in, open {} and enter the code {}.",
                    answer["verification_uri"]
                        .as_str()
                        .unwrap_or("the sign-in page"),
                    answer["user_code"].as_str().unwrap_or("shown there")
                )
            },
            str::to_string,
        );
        (prompt.0)(&message);
        // A device code lives 15 minutes; absurd values are clamped, never added as they are.
        let expires = Instant::now()
            + Duration::from_secs(answer["expires_in"].as_u64().unwrap_or(900).clamp(1, 3600));
        let mut interval =
            Duration::from_secs(answer["interval"].as_u64().unwrap_or(5).clamp(1, 60));
        let body = form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("client_id", &s.client_id),
            ("device_code", &device_code),
        ]);
        while Instant::now() + interval < expires {
            self.sleep(interval).await;
            let reply = match self.send(post(&token_url, body.clone())).await {
                Ok(r) => r,
                Err(_) => continue, // a lost poll: poll again
            };
            let v: Value = reply
                .body
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(Value::Null);
            if reply.status == 200 {
                return self.token_from(&v, token_url.as_str());
            }
            match v["error"].as_str() {
                Some("authorization_pending") => {}
                Some("slow_down") => interval += Duration::from_secs(5),
                _ if reply.status >= 500 || reply.status == 429 => {}
                _ => {
                    let message = v["error_description"]
                        .as_str()
                        .or(v["error"].as_str())
                        .map_or_else(
                            || "sign-in refused".into(),
                            |m| self.shown(m, &[&device_code]),
                        );
                    return Err(self.auth_error(token_url.as_str(), reply.status, message));
                }
            }
        }
        Err(self.auth_error(
            token_url.as_str(),
            0,
            "nobody signed in with the device code before it expired".into(),
        ))
    }

    /// A token from a token endpoint's answer; keeps its refresh token.
    fn token_from(&self, v: &Value, url: &str) -> Result<Token> {
        let token = v["access_token"].as_str().ok_or_else(|| {
            self.auth_error(url, 200, "the token response has no access_token".into())
        })?;
        if let Some(rt) = v["refresh_token"].as_str() {
            *self.refresh.lock().expect("not poisoned") = Some(Secret::new(rt.to_string()));
        }
        *self.roles.lock().expect("not poisoned") = token_roles(token);
        let ttl = token_lifetime(v).unwrap_or(Duration::from_secs(3600));
        // Renew ahead of expiry: 5 minutes, or a twelfth of a short lifetime.
        let margin = (ttl / 12).min(Duration::from_secs(300));
        Ok(Token {
            value: token.to_string(),
            renew_at: Instant::now() + ttl - margin,
        })
    }

    /// Sends token requests from `build` until one gives a token (the retry rules of
    /// `retry.rs`; a refusal is an `Auth` error naming what to check).
    async fn exchange_token(
        &self,
        build: &(dyn Fn() -> super::credential::Result<TokenRequest> + Sync),
    ) -> Result<Token> {
        let (v, url) = Box::pin(self.exchange(Exchange::Token(build))).await?;
        self.token_from(&v, &url)
    }

    async fn bearer(&self, refresh: bool) -> Result<String> {
        let mut token = self.token.lock().await;
        let stale = token.as_ref().is_none_or(|t| Instant::now() >= t.renew_at);
        if refresh || stale {
            *token = Some(self.fetch_token().await?);
        }
        Ok(token.as_ref().expect("set above").value.clone())
    }

    /// This attempt's backoff step, with jitter from the client's seeded generator.
    fn backoff(&self, attempt: u32) -> Duration {
        let jitter = self.jitter.lock().expect("not poisoned").random::<f64>();
        backoff_step(self.settings.backoff_base, attempt, jitter)
    }

    async fn sleep(&self, d: Duration) {
        self.stats
            .waited_ms
            .fetch_add(d.as_millis() as u64, Ordering::Relaxed);
        tokio::time::sleep(d).await;
    }

    /// Waits until one more directoryAudits request fits in the rate window.
    async fn rate_limit(&self) {
        let Some((limit, window)) = self.settings.audit_rate_limit else {
            return;
        };
        loop {
            let wait = {
                let mut w = self.audit_window.lock().expect("not poisoned");
                let now = Instant::now();
                while w.front().is_some_and(|t| now.duration_since(*t) >= window) {
                    w.pop_front();
                }
                if w.len() < limit {
                    w.push_back(now);
                    None
                } else {
                    w.front().map(|t| window - now.duration_since(*t))
                }
            };
            match wait {
                None => return,
                Some(d) => self.sleep(d).await,
            }
        }
    }

    /// GETs one Graph page and parses it; retries until it is whole or the budget is spent.
    pub async fn get_page(&self, url: &Url) -> Result<Value> {
        let audit = url.path().ends_with("/directoryAudits");
        self.call(url, None, audit, |v| {
            v.get("value").is_some_and(Value::is_array)
        })
        .await
    }

    /// POSTs a JSON body (a Log Analytics query) and parses the answer, with the same retry
    /// rules; `whole` says whether a parsed answer is complete.
    pub async fn post_json(
        &self,
        url: &Url,
        body: &Value,
        whole: fn(&Value) -> bool,
    ) -> Result<Value> {
        self.call(url, Some(body.to_string()), false, whole).await
    }

    async fn call(
        &self,
        url: &Url,
        body: Option<String>,
        audit: bool,
        whole: impl Fn(&Value) -> bool + Sync,
    ) -> Result<Value> {
        let exchange = Exchange::Graph {
            url,
            body: body.as_deref(),
            audit,
            whole: &whole,
        };
        Ok(self.exchange(exchange).await?.0)
    }

    /// The one retry loop: sends, reads the answer, asks [`classify`] what to do, and does
    /// it. Returns the whole answer and the URL it came from (without its query, for a
    /// token request).
    async fn exchange(&self, ex: Exchange<'_>) -> Result<(Value, String)> {
        let endpoint = ex.endpoint();
        let mut refreshed = false;
        let mut attempt = 1;
        loop {
            let (req, sent) = self.prepare(&ex, attempt).await?;
            let url = match endpoint {
                Endpoint::Graph => req.url.to_string(),
                Endpoint::Token => req.url.as_str().split('?').next().unwrap_or("").to_string(),
            };
            let sent_at = chrono::Utc::now().timestamp();
            let reply = self.send(req).await;
            if endpoint == Endpoint::Token {
                self.note_token_clock(&reply, sent_at);
            }
            let read = Read::from(reply, &ex);
            let facts = ResponseFacts {
                endpoint,
                answer: read.answer(),
                attempt,
                max_attempts: self.settings.max_attempts,
                refreshed,
                remaining: self.remaining(),
                backoff: self.backoff(attempt),
            };
            let action = classify(&facts);
            if endpoint == Endpoint::Graph && facts.answer.is_some_and(|a| a.status == 429) {
                self.stats.throttled.fetch_add(1, Ordering::Relaxed);
            }
            let last = match read {
                Read::Whole(v) => {
                    debug_assert_eq!(action, RetryAction::Success);
                    return Ok((v, url));
                }
                Read::Failed(e) => e,
                Read::Status { status: 429, .. } => AttemptError::Throttled,
                Read::Status { status, .. } => AttemptError::Server { status },
            };
            match action {
                RetryAction::Success => unreachable!("only a whole answer is a success"),
                RetryAction::RefreshToken => {
                    // The same attempt again, with a new token; a second 401 is a refusal.
                    refreshed = true;
                    self.bearer(true).await?;
                }
                RetryAction::Retry(wait) => {
                    if matches!(last, AttemptError::Throttled) {
                        tracing::debug!(url = %url, wait_ms = wait.as_millis() as u64, "Throttled; waiting as told.");
                    }
                    self.sleep(wait).await;
                    attempt += 1;
                }
                RetryAction::GiveUp(GiveUp::Refused { status, message }) => {
                    return Err(self.refused(endpoint, url, status, &message, &sent));
                }
                RetryAction::GiveUp(GiveUp::Exhausted) => {
                    return Err(Error::GaveUp {
                        url,
                        attempts: attempt,
                        last,
                    });
                }
                RetryAction::GiveUp(GiveUp::Deadline(wait)) => {
                    return Err(Error::Deadline {
                        url,
                        attempts: attempt,
                        wait_secs: wait.as_secs_f64(),
                        last,
                    });
                }
            }
        }
    }

    /// The request of one attempt, and the secrets it carries (for scrubbing echoes of them
    /// from a refusal): a Graph request waits for the audit rate limiter and carries the
    /// current token; a token request is built afresh (an assertion is single-use and a
    /// token file may change).
    async fn prepare(&self, ex: &Exchange<'_>, attempt: u32) -> Result<(Request, Vec<String>)> {
        match ex {
            Exchange::Graph {
                url, body, audit, ..
            } => {
                if *audit {
                    self.rate_limit().await;
                }
                let token = self.bearer(false).await?;
                self.stats.requests.fetch_add(1, Ordering::Relaxed);
                if attempt > 1 {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                }
                let req = Request {
                    post: body.is_some(),
                    url: (*url).clone(),
                    headers: vec![
                        ("Authorization", format!("Bearer {token}")),
                        ("Accept", "application/json".into()),
                    ],
                    body: body.map(|b| ("application/json", b.to_string())),
                };
                Ok((req, vec![token]))
            }
            Exchange::Token(build) => {
                let request = build()?;
                let sent = request.secrets();
                self.stats.token_requests.fetch_add(1, Ordering::Relaxed);
                Ok((request.into(), sent))
            }
        }
    }

    /// Keeps the token endpoint's clock skew from the `Date` of its answer.
    fn note_token_clock(&self, reply: &std::result::Result<Reply, AttemptError>, sent_at: i64) {
        if let Ok(r) = reply
            && let Some(date) = r.date.as_deref().and_then(parse_http_date)
        {
            // Against the middle of the exchange: the answer was dated in between.
            let now = (sent_at + chrono::Utc::now().timestamp()) / 2;
            *self.token_clock_skew.lock().expect("not poisoned") = Some(date - now);
        }
    }

    /// The error of a refusal, its message scrubbed of what was sent.
    fn refused(
        &self,
        endpoint: Endpoint,
        url: String,
        status: u16,
        message: &str,
        sent: &[String],
    ) -> Error {
        let sent: Vec<&str> = sent.iter().map(String::as_str).collect();
        let message = self.shown(message, &sent);
        match (endpoint, status) {
            (Endpoint::Token, _) => self.auth_error(&url, status, message),
            (Endpoint::Graph, 403) => Error::Forbidden { url, message },
            (Endpoint::Graph, _) => Error::Status {
                url,
                status,
                message,
            },
        }
    }
}

/// What the retry loop sends, attempt after attempt.
enum Exchange<'a> {
    /// A Graph (or Log Analytics) request with the current token; `whole` says whether a
    /// parsed answer is complete.
    Graph {
        url: &'a Url,
        body: Option<&'a str>,
        audit: bool,
        whole: &'a (dyn Fn(&Value) -> bool + Sync),
    },
    /// A token request, built by the function each attempt.
    Token(&'a (dyn Fn() -> super::credential::Result<TokenRequest> + Sync)),
}

impl Exchange<'_> {
    fn endpoint(&self) -> Endpoint {
        match self {
            Exchange::Graph { .. } => Endpoint::Graph,
            Exchange::Token(_) => Endpoint::Token,
        }
    }

    /// Whether a parsed 200 answer is whole; what is missing when it is not.
    fn whole(&self, v: &Value) -> std::result::Result<(), &'static str> {
        match self {
            Exchange::Graph { whole, .. } => whole(v).then_some(()).ok_or("not a whole page"),
            Exchange::Token(_) => v["access_token"]
                .is_string()
                .then_some(())
                .ok_or("the token response has no access_token"),
        }
    }
}

/// One attempt's answer, read.
enum Read {
    /// A whole 200 answer.
    Whole(Value),
    /// Another status, with its body (empty when cut short).
    Status {
        status: u16,
        retry_after: Option<String>,
        body: Vec<u8>,
    },
    /// No whole answer.
    Failed(AttemptError),
}

impl Read {
    fn from(reply: std::result::Result<Reply, AttemptError>, ex: &Exchange<'_>) -> Self {
        let r = match reply {
            Ok(r) => r,
            Err(e) => return Read::Failed(e),
        };
        if r.status != 200 {
            return Read::Status {
                status: r.status,
                retry_after: r.retry_after,
                body: r.body.unwrap_or_default(),
            };
        }
        // A truncated body: the same request is sent again.
        let bytes = match r.body {
            Ok(b) => b,
            Err(e) => return Read::Failed(e),
        };
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => match ex.whole(&v) {
                Ok(()) => Read::Whole(v),
                Err(missing) => Read::Failed(AttemptError::NotWhole(missing)),
            },
            Err(e) => Read::Failed(AttemptError::Json(e)),
        }
    }

    fn answer(&self) -> Option<Answer<'_>> {
        match self {
            Read::Whole(_) => Some(Answer {
                status: 200,
                retry_after: None,
                body: &[],
            }),
            Read::Status {
                status,
                retry_after,
                body,
            } => Some(Answer {
                status: *status,
                retry_after: retry_after.as_deref(),
                body,
            }),
            Read::Failed(_) => None,
        }
    }
}

/// A URL from text.
fn parse_url(text: String) -> Result<Url> {
    Url::parse(&text).map_err(|source| Error::BadUrl { url: text, source })
}

/// The longest a token is trusted to live, whatever its answer says (Entra's tokens live
/// about an hour, managed identity tokens up to a day).
const MAX_TOKEN_LIFETIME_SECS: i64 = 86_400;

/// How long a token lives: `expires_in` (seconds, number or string) or `expires_on` (UNIX
/// seconds, as managed identity endpoints answer), between 1 s and a day: an absurd value
/// (`i64::MAX`, negative) is clamped, never added to the clock as it is.
fn token_lifetime(v: &Value) -> Option<Duration> {
    let num = |v: &Value| v.as_i64().or_else(|| v.as_str()?.trim().parse().ok());
    let clamp = |secs: i64| Duration::from_secs(secs.clamp(1, MAX_TOKEN_LIFETIME_SECS) as u64);
    if let Some(secs) = num(&v["expires_in"]) {
        return Some(clamp(secs));
    }
    let on = num(&v["expires_on"])?;
    Some(clamp(on.saturating_sub(chrono::Utc::now().timestamp())))
}

#[cfg(test)]
mod tests {
    //! RELIABILITY.md section B on tokio's paused clock: the transport is a script of
    //! answers, every request is logged with the (virtual) time it was sent, and the
    //! assertions are about those times.

    use super::*;
    use std::sync::Arc;

    /// One scripted answer.
    pub(crate) struct Step {
        delay: Duration,
        status: u16,
        retry_after: Option<String>,
        body: std::result::Result<String, &'static str>,
    }

    fn step(status: u16, retry_after: Option<&str>, body: &str) -> Step {
        Step {
            delay: Duration::ZERO,
            status,
            retry_after: retry_after.map(str::to_string),
            body: Ok(body.to_string()),
        }
    }

    fn page(n: usize) -> Step {
        let values: Vec<Value> = (0..n)
            .map(|i| serde_json::json!({"id": i.to_string()}))
            .collect();
        step(
            200,
            None,
            &serde_json::json!({ "value": values }).to_string(),
        )
    }

    /// A request as the script saw it.
    #[derive(Debug, Clone)]
    pub(crate) struct Sent {
        at: Instant,
        token_request: bool,
        url: String,
        authorization: Option<String>,
    }

    /// Scripted answers: `pages` for Graph requests, `tokens` for token requests (when
    /// empty, a fresh token living `ttl`); then an empty page.
    #[derive(Default)]
    pub(crate) struct Script {
        pages: Mutex<VecDeque<Step>>,
        tokens: Mutex<VecDeque<Step>>,
        ttl_secs: u64,
        issued: AtomicU64,
        log: Mutex<Vec<Sent>>,
    }

    impl Script {
        pub(crate) async fn send(&self, req: Request) -> std::result::Result<Reply, AttemptError> {
            let token_request = req.url.path().ends_with("/token");
            self.log.lock().unwrap().push(Sent {
                at: Instant::now(),
                token_request,
                url: req.url.to_string(),
                authorization: req
                    .headers
                    .iter()
                    .find(|(k, _)| *k == "Authorization")
                    .map(|(_, v)| v.clone()),
            });
            let queue = if token_request {
                &self.tokens
            } else {
                &self.pages
            };
            let next = queue.lock().unwrap().pop_front();
            let s = next.unwrap_or_else(|| {
                if token_request {
                    let n = self.issued.fetch_add(1, Ordering::Relaxed) + 1;
                    step(
                        200,
                        None,
                        &format!(
                            r#"{{"access_token":"tok-{n}","expires_in":{}}}"#,
                            self.ttl_secs
                        ),
                    )
                } else {
                    page(0)
                }
            });
            tokio::time::sleep(s.delay).await;
            Ok(Reply {
                status: s.status,
                retry_after: s.retry_after,
                date: None,
                body: s
                    .body
                    .map(String::into_bytes)
                    .map_err(|e| AttemptError::Truncated(e.into())),
            })
        }

        fn graph_requests(&self) -> Vec<Sent> {
            let log = self.log.lock().unwrap();
            log.iter().filter(|s| !s.token_request).cloned().collect()
        }

        fn token_requests(&self) -> usize {
            self.log
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.token_request)
                .count()
        }
    }

    fn settings(max_attempts: u32, deadline_secs: u64) -> ClientSettings {
        ClientSettings {
            endpoint: Url::parse("http://graph.test").unwrap(),
            authority: Url::parse("http://login.test").unwrap(),
            tenant: "contoso".into(),
            client_id: "app".into(),
            credential: Credential::Secret(Secret::new("s3cret".into())),
            max_attempts,
            backoff_base: Duration::from_millis(100),
            request_timeout: Duration::from_secs(10),
            deadline: Duration::from_secs(deadline_secs),
            audit_rate_limit: None,
        }
    }

    fn client(settings: ClientSettings, pages: Vec<Step>) -> (GraphClient, Arc<Script>) {
        let script = Arc::new(Script {
            pages: Mutex::new(pages.into()),
            ttl_secs: 3600,
            ..Script::default()
        });
        let c = GraphClient::with_transport(settings, Transport::Script(script.clone()), seeded());
        (c, script)
    }

    /// The same jitter every run.
    fn seeded() -> SmallRng {
        SmallRng::seed_from_u64(16)
    }

    /// An error and its causes, as the printer shows them.
    fn chain(e: &dyn std::error::Error) -> String {
        let mut text = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            text = format!("{text}: {c}");
            cause = c.source();
        }
        text
    }

    fn url() -> Url {
        Url::parse("http://graph.test/v1.0/identityGovernance/entitlementManagement/assignments")
            .unwrap()
    }

    /// Gaps between consecutive Graph requests.
    fn gaps(sent: &[Sent]) -> Vec<Duration> {
        sent.windows(2).map(|w| w[1].at - w[0].at).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_storm_of_429s_is_waited_out_retry_after_by_retry_after() {
        let mut steps: Vec<Step> = (0..20).map(|_| step(429, Some("2"), "")).collect();
        steps.push(page(3));
        let (c, script) = client(settings(30, 3600), steps);
        let v = c.get_page(&url()).await.unwrap();
        assert_eq!(v["value"].as_array().unwrap().len(), 3);
        let sent = script.graph_requests();
        assert_eq!(sent.len(), 21);
        for gap in gaps(&sent) {
            assert!(gap >= Duration::from_secs(2), "retried early: {gap:?}");
        }
        assert_eq!(c.stats.throttled.load(Ordering::Relaxed), 20);
    }

    #[tokio::test(start_paused = true)]
    async fn a_storm_longer_than_the_attempt_cap_stops_at_the_cap() {
        let steps: Vec<Step> = (0..20).map(|_| step(429, Some("2"), "")).collect();
        let (c, script) = client(settings(8, 3600), steps);
        let e = c.get_page(&url()).await.unwrap_err();
        assert!(matches!(e, Error::GaveUp { attempts: 8, .. }), "{e}");
        assert_eq!(script.graph_requests().len(), 8);
    }

    #[tokio::test(start_paused = true)]
    async fn absent_zero_negative_and_garbage_retry_after_back_off_instead() {
        for told in [None, Some("0"), Some("-3"), Some("soon"), Some("1.5")] {
            let (c, script) = client(settings(5, 3600), vec![step(429, told, ""), page(1)]);
            c.get_page(&url()).await.unwrap();
            let g = gaps(&script.graph_requests());
            // backoff(1) with a 100 ms base lies in [100 ms, 200 ms]
            assert!(
                g[0] >= Duration::from_millis(100) && g[0] <= Duration::from_millis(200),
                "Retry-After {told:?}: waited {:?}",
                g[0]
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_http_date_retry_after_is_honoured() {
        let at = chrono::Utc::now() + chrono::Duration::seconds(5);
        let (c, script) = client(
            settings(5, 3600),
            vec![step(503, Some(&at.to_rfc2822()), ""), page(1)],
        );
        c.get_page(&url()).await.unwrap();
        let g = gaps(&script.graph_requests());
        assert!(g[0] >= Duration::from_secs(4), "{:?}", g[0]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_hour_long_retry_after_waits_within_the_deadline_or_fails_at_once() {
        // Deadline 10 minutes: no waiting an hour, a clean failure now.
        let (c, script) = client(settings(5, 600), vec![step(429, Some("3600"), ""), page(1)]);
        let t0 = Instant::now();
        let e = c.get_page(&url()).await.unwrap_err().to_string();
        assert!(t0.elapsed() < Duration::from_secs(1));
        assert!(e.contains("past the run's deadline"), "{e}");
        assert_eq!(script.graph_requests().len(), 1);
        // Deadline 2 hours: the hour is waited, then the page comes.
        let (c, script) = client(
            settings(5, 7200),
            vec![step(429, Some("3600"), ""), page(1)],
        );
        c.get_page(&url()).await.unwrap();
        assert!(gaps(&script.graph_requests())[0] >= Duration::from_secs(3600));
    }

    #[tokio::test(start_paused = true)]
    async fn server_errors_are_retried_and_client_errors_are_not() {
        let (c, script) = client(
            settings(8, 3600),
            vec![
                step(503, None, ""),
                step(504, Some("3"), ""),
                step(500, None, ""),
                step(502, None, ""),
                page(2),
            ],
        );
        c.get_page(&url()).await.unwrap();
        let sent = script.graph_requests();
        assert_eq!(sent.len(), 5);
        assert!(gaps(&sent)[1] >= Duration::from_secs(3));
        for status in [400, 404, 409] {
            let body = r#"{"error":{"code":"BadRequest","message":"Invalid filter clause"}}"#;
            let (c, script) = client(settings(8, 3600), vec![step(status, None, body)]);
            let e = c.get_page(&url()).await.unwrap_err();
            assert_eq!(script.graph_requests().len(), 1, "{status} was retried");
            let text = e.to_string();
            assert!(
                text.contains("assignments") && text.contains("BadRequest: Invalid filter"),
                "{text}"
            );
        }
        let (c, _) = client(settings(8, 3600), vec![step(403, None, "{}")]);
        assert!(matches!(
            c.get_page(&url()).await,
            Err(Error::Forbidden { .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_truncated_page_is_fetched_again_from_the_same_link() {
        let cut = Step {
            body: Err("connection reset".into()),
            ..page(1)
        };
        let (c, script) = client(
            settings(5, 3600),
            vec![
                step(200, None, r#"{"value":[{"id":"a"},{"id":"#),
                cut,
                page(2),
            ],
        );
        let v = c.get_page(&url()).await.unwrap();
        assert_eq!(v["value"].as_array().unwrap().len(), 2);
        let sent = script.graph_requests();
        assert_eq!(sent.len(), 3);
        assert!(sent.iter().all(|s| s.url == url().to_string()));
        // Cut short every time: give up at the cap (the caller then commits nothing).
        let steps = (0..10)
            .map(|_| step(200, None, r#"{"value":[{"id":"a""#))
            .collect();
        let (c, script) = client(settings(4, 3600), steps);
        assert!(matches!(
            c.get_page(&url()).await,
            Err(Error::GaveUp { attempts: 4, .. })
        ));
        assert_eq!(script.graph_requests().len(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_server_is_bounded_by_the_request_timeout_and_the_deadline() {
        let steps = (0..100)
            .map(|_| Step {
                delay: Duration::from_secs(30),
                ..page(1)
            })
            .collect();
        let (c, script) = client(settings(100, 60), steps);
        let t0 = Instant::now();
        let e = c.get_page(&url()).await.unwrap_err();
        let took = t0.elapsed();
        assert!(took <= Duration::from_secs(61), "hung for {took:?}");
        let chain = chain(&e);
        assert!(
            chain.contains("past the run's deadline") && chain.contains("no answer within"),
            "{chain}"
        );
        assert!(script.graph_requests().len() <= 7);
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_are_renewed_before_they_expire_not_per_request() {
        let mut s = settings(5, 3600);
        s.backoff_base = Duration::from_millis(100);
        let script = Arc::new(Script {
            ttl_secs: 60,
            ..Script::default()
        });
        let c = GraphClient::with_transport(s, Transport::Script(script.clone()), seeded());
        // Ten minutes of paging, a request every 5 s.
        for _ in 0..120 {
            c.get_page(&url()).await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        let tokens = script.token_requests();
        assert!(
            (10..=12).contains(&tokens),
            "{tokens} token requests in 10 min"
        );
        // No request went out with an expired token: each token serves at most 60 s.
        let sent = script.graph_requests();
        let first_use = |tok: &str| {
            sent.iter()
                .find(|s| s.authorization.as_deref() == Some(tok))
                .unwrap()
                .at
        };
        for s in &sent {
            let tok = s.authorization.clone().unwrap();
            assert!(s.at - first_use(&tok) < Duration::from_secs(60));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_401_gets_one_refresh_and_a_second_one_is_fatal() {
        let (c, script) = client(settings(5, 3600), vec![step(401, None, ""), page(1)]);
        c.get_page(&url()).await.unwrap();
        let sent = script.graph_requests();
        assert_eq!(sent.len(), 2);
        assert_eq!(script.token_requests(), 2);
        assert_ne!(sent[0].authorization, sent[1].authorization);

        let (c, script) = client(
            settings(5, 3600),
            vec![step(401, None, ""), step(401, None, ""), page(1)],
        );
        let e = c.get_page(&url()).await.unwrap_err();
        assert!(matches!(e, Error::Status { status: 401, .. }), "{e}");
        assert_eq!(script.graph_requests().len(), 2);
        assert_eq!(script.token_requests(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_token_endpoint_is_retried_on_429_and_503_and_refusals_name_the_fix() {
        let script = Arc::new(Script {
            ttl_secs: 3600,
            tokens: Mutex::new(vec![step(429, Some("2"), ""), step(503, None, "")].into()),
            ..Script::default()
        });
        let c = GraphClient::with_transport(
            settings(5, 3600),
            Transport::Script(script.clone()),
            seeded(),
        );
        c.get_page(&url()).await.unwrap();
        assert_eq!(script.token_requests(), 3);

        let script = Arc::new(Script {
            tokens: Mutex::new(
                vec![step(
                    401,
                    None,
                    r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}"#,
                )]
                .into(),
            ),
            ..Script::default()
        });
        let c = GraphClient::with_transport(
            settings(5, 3600),
            Transport::Script(script.clone()),
            seeded(),
        );
        let e = c.get_page(&url()).await.unwrap_err().to_string();
        assert!(
            e.contains("AADSTS7000215") && e.contains("AZURE_CLIENT_SECRET"),
            "{e}"
        );
        assert!(!e.contains("s3cret"));
        assert_eq!(script.token_requests(), 1);
        assert!(script.graph_requests().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn error_bodies_that_echo_the_request_show_no_secret_and_are_cut_short() {
        // The token endpoint answers 400 with the form it got.
        let echo = "AADSTS900144: malformed request: grant_type=client_credentials&client_id=app&client_secret=s3cret&scope=x";
        let script = Arc::new(Script {
            tokens: Mutex::new(vec![step(400, None, echo)].into()),
            ..Script::default()
        });
        let c = GraphClient::with_transport(settings(5, 3600), Transport::Script(script), seeded());
        let e = c.get_page(&url()).await.unwrap_err().to_string();
        assert!(e.contains("AADSTS900144"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");

        // Graph answers 400 with the headers it got, the token once more bare, and a lot
        // besides.
        let message = format!(
            "echo: Authorization: Bearer tok-1\nAccept: application/json; token tok-1 {}",
            "x".repeat(20_000)
        );
        let body = serde_json::json!({"error": {"code": "BadRequest", "message": message}});
        let (c, _) = client(settings(5, 3600), vec![step(400, None, &body.to_string())]);
        let e = c.get_page(&url()).await.unwrap_err().to_string();
        assert!(e.contains("BadRequest: echo"), "{e}");
        assert!(!e.contains("tok-1"), "{e}");
        assert!(e.len() < 2_000, "{} bytes shown", e.len());
    }

    #[tokio::test(start_paused = true)]
    async fn absurd_token_lifetimes_are_clamped_not_a_panic() {
        for expires_in in [
            "9223372036854775807",
            "\"9223372036854775807\"",
            "-5",
            "\"soon\"",
            "1e300",
        ] {
            let token = format!(r#"{{"access_token":"t","expires_in":{expires_in}}}"#);
            let script = Arc::new(Script {
                tokens: Mutex::new(vec![step(200, None, &token)].into()),
                ttl_secs: 3600,
                ..Script::default()
            });
            let c =
                GraphClient::with_transport(settings(5, 3600), Transport::Script(script), seeded());
            c.get_page(&url()).await.unwrap();
            c.get_page(&url()).await.unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_audit_rate_limiter_keeps_5_requests_per_10_seconds() {
        let mut s = settings(5, 3600);
        s.audit_rate_limit = Some((5, Duration::from_secs(10)));
        let (c, script) = client(s, vec![]);
        let audits = Url::parse("http://graph.test/v1.0/auditLogs/directoryAudits").unwrap();
        for _ in 0..23 {
            c.get_page(&audits).await.unwrap();
        }
        let sent = script.graph_requests();
        for w in sent.windows(6) {
            assert!(w[5].at - w[0].at >= Duration::from_secs(10));
        }
    }

    #[test]
    fn next_links_to_another_host_or_port_are_refused() {
        let (c, script) = client(settings(5, 3600), vec![]);
        assert!(
            c.check_link("http://graph.test/v1.0/x?$skiptoken=1")
                .is_ok()
        );
        for link in [
            "http://evil.test/v1.0/x",
            "http://graph.test:8443/v1.0/x",
            "https://graph.test/v1.0/x",
        ] {
            assert!(matches!(c.check_link(link), Err(Error::ForeignLink { .. })));
        }
        assert!(script.log.lock().unwrap().is_empty());
    }

    #[test]
    fn jitter_comes_from_the_seed_and_spreads_over_the_upper_half_of_each_step() {
        let (a, _) = client(settings(5, 3600), vec![]);
        let (b, _) = client(settings(5, 3600), vec![]);
        let draws = |c: &GraphClient| (1..=8).map(|n| c.backoff(n)).collect::<Vec<_>>();
        let first = draws(&a);
        assert_eq!(first, draws(&b), "the same seed, the same waits");
        for (n, d) in (1..=8).zip(&first) {
            let step = 100 * 2u64.pow(n); // 100 ms base, doubled per attempt
            let ms = d.as_millis() as u64;
            assert!(ms >= step / 2 && ms <= step, "attempt {n}: {ms} ms");
        }
        // Jittered: not every wait sits at the bottom of its step.
        assert!(
            (1..=8)
                .zip(&first)
                .any(|(n, d)| d.as_millis() as u64 != 50 * 2u64.pow(n))
        );
    }

    #[test]
    fn the_secret_never_prints() {
        let s = Secret::new("hunter2".into());
        assert_eq!(format!("{s:?}"), "[redacted]");
        let settings = settings(1, 1);
        assert!(!format!("{settings:?}").contains("s3cret"));
    }

    #[test]
    fn token_lifetimes_in_every_form() {
        let ttl = |v: Value| token_lifetime(&v).map(|d| d.as_secs());
        assert_eq!(ttl(serde_json::json!({"expires_in": 3599})), Some(3599));
        assert_eq!(ttl(serde_json::json!({"expires_in": "86399"})), Some(86399));
        let on = chrono::Utc::now().timestamp() + 600;
        let t = ttl(serde_json::json!({"expires_on": on.to_string()})).unwrap();
        assert!((598..=600).contains(&t), "{t}");
        assert_eq!(ttl(serde_json::json!({})), None);
        assert_eq!(
            ttl(serde_json::json!({"expires_in": i64::MAX})),
            Some(86_400)
        );
        assert_eq!(ttl(serde_json::json!({"expires_in": -5})), Some(1));
        assert_eq!(ttl(serde_json::json!({"expires_on": i64::MIN})), Some(1));
    }
}
