//! The Microsoft Graph HTTP client: app-only tokens (client credentials with a secret from
//! the environment), and every GET made safe to repeat until it returns a whole page:
//! 429 waits exactly the `Retry-After` (seconds or an HTTP date), 500/502/503/504 and
//! transport errors (a truncated body included) back off exponentially with jitter, a 401
//! gets one token refresh, and attempts and total time are bounded. A client-side limiter
//! keeps `directoryAudits` under Graph's 5 requests per 10 seconds. `@odata.nextLink` is
//! followed exactly as given, and only to the configured Graph host, so no token goes
//! anywhere else. The secret is never printed (it lives in a redacting type).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use url::Url;

/// How the app proves who it is.
#[derive(Debug, Clone)]
pub enum Credential {
    /// A client secret (`AZURE_CLIENT_SECRET`).
    Secret(Secret),
    /// Workload identity federation: a token file a platform keeps fresh
    /// (`AZURE_FEDERATED_TOKEN_FILE`, as on AKS and in GitHub Actions), sent as the client
    /// assertion. Read again at every sign-in.
    FederatedTokenFile(std::path::PathBuf),
}

/// A secret that prints as `[redacted]`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: String) -> Self {
        Self(s)
    }
    fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Errors talking to Graph.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The token endpoint refused the credentials.
    #[error(
        "Sign-in at `{url}` failed ({status}): {message}. Check AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET"
    )]
    Auth {
        /// Token endpoint.
        url: String,
        /// HTTP status.
        status: u16,
        /// What the endpoint said.
        message: String,
    },
    /// Graph refused the request for lack of permission.
    #[error("Graph refused `{url}` (403 Forbidden): {message}")]
    Forbidden {
        /// Request URL.
        url: String,
        /// What Graph said.
        message: String,
    },
    /// Graph answered with an error that retrying does not fix.
    #[error("Graph answered `{url}` with {status}: {message}")]
    Status {
        /// Request URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// What Graph said.
        message: String,
    },
    /// Attempts or time ran out.
    #[error("Gave up on `{url}` after {attempts} attempts: {last}")]
    GaveUp {
        /// Request URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// A nextLink pointed away from the configured Graph host.
    #[error(
        "Refusing to follow `@odata.nextLink` `{link}`: it leaves the configured Graph endpoint `{endpoint}` (no token is sent anywhere else)"
    )]
    ForeignLink {
        /// The link.
        link: String,
        /// The configured endpoint.
        endpoint: String,
    },
    /// A nextLink repeated an earlier one.
    #[error("`@odata.nextLink` `{0}` repeats an earlier page: the listing loops; stopping")]
    LinkCycle(String),
    /// A URL could not be built.
    #[error("Bad URL `{0}`")]
    BadUrl(String),
}

/// Result of Graph calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How the client signs in and retries.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Graph endpoint (`https://graph.microsoft.com`, a national cloud, or the simulator).
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
    /// HTTP requests sent to Graph (retries included).
    pub requests: AtomicU64,
    /// 429 answers.
    pub throttled: AtomicU64,
    /// Retries of any cause.
    pub retries: AtomicU64,
    /// Milliseconds spent waiting (Retry-After, backoff, rate limiter).
    pub waited_ms: AtomicU64,
}

/// A Graph client.
pub struct GraphClient {
    http: reqwest::Client,
    settings: ClientSettings,
    token: tokio::sync::Mutex<Option<String>>,
    audit_window: Mutex<VecDeque<Instant>>,
    started: Instant,
    /// Counters.
    pub stats: Stats,
}

impl GraphClient {
    /// A client with the given settings.
    pub fn new(settings: ClientSettings) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("govlake/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::BadUrl(e.to_string()))?;
        Ok(Self {
            http,
            settings,
            token: tokio::sync::Mutex::new(None),
            audit_window: Mutex::new(VecDeque::new()),
            started: Instant::now(),
            stats: Stats::default(),
        })
    }

    /// The URL of a Graph path (`identityGovernance/…`), with query pairs.
    pub fn url(&self, path: &str, query: &[(&str, String)]) -> Result<Url> {
        let base = self.settings.endpoint.as_str().trim_end_matches('/');
        let mut url = Url::parse(&format!("{base}/v1.0/{path}"))
            .map_err(|_| Error::BadUrl(format!("{base}/v1.0/{path}")))?;
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        Ok(url)
    }

    /// Checks that a nextLink stays on the configured Graph host.
    pub fn check_link(&self, link: &str) -> Result<Url> {
        let url = Url::parse(link).map_err(|_| Error::BadUrl(link.to_string()))?;
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

    async fn fetch_token(&self) -> Result<String> {
        let s = &self.settings;
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            s.authority.as_str().trim_end_matches('/'),
            s.tenant
        );
        let scope = format!("{}/.default", s.endpoint.as_str().trim_end_matches('/'));
        let assertion;
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", s.client_id.as_str()),
            ("scope", scope.as_str()),
        ];
        match &s.credential {
            Credential::Secret(secret) => form.push(("client_secret", secret.expose())),
            Credential::FederatedTokenFile(path) => {
                assertion = std::fs::read_to_string(path).map_err(|e| Error::Auth {
                    url: url.clone(),
                    status: 0,
                    message: format!(
                        "cannot read the federated token file `{}`: {e}",
                        path.display()
                    ),
                })?;
                form.push((
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ));
                form.push(("client_assertion", assertion.trim()));
            }
        }
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut last = String::new();
        for attempt in 1..=s.max_attempts {
            let sent = self
                .http
                .post(&url)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => {
                    let v: Value = r.json().await.map_err(|e| Error::Auth {
                        url: url.clone(),
                        status: 200,
                        message: format!("unreadable token response: {e}"),
                    })?;
                    return v["access_token"]
                        .as_str()
                        .map(str::to_string)
                        .ok_or_else(|| Error::Auth {
                            url: url.clone(),
                            status: 200,
                            message: "no access_token in the response".into(),
                        });
                }
                Ok(r) if r.status().is_server_error() => {
                    last = format!("{}", r.status());
                }
                Ok(r) => {
                    let status = r.status().as_u16();
                    let text = r.text().await.unwrap_or_default();
                    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    let message = v["error_description"]
                        .as_str()
                        .or(v["error"].as_str())
                        .unwrap_or(&text)
                        .to_string();
                    return Err(Error::Auth {
                        url,
                        status,
                        message,
                    });
                }
                Err(e) => last = e.to_string(),
            }
            self.sleep(self.backoff(attempt)).await;
        }
        Err(Error::GaveUp {
            url,
            attempts: s.max_attempts,
            last,
        })
    }

    async fn bearer(&self, refresh: bool) -> Result<String> {
        let mut token = self.token.lock().await;
        if refresh || token.is_none() {
            *token = Some(self.fetch_token().await?);
        }
        Ok(token.clone().expect("set above"))
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.settings.backoff_base.as_millis() as u64;
        let exp = base.saturating_mul(1 << attempt.min(16)).min(60_000);
        // Full jitter from a cheap, seedless source: the clock's nanoseconds.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() as u64);
        Duration::from_millis(exp / 2 + nanos % (exp / 2 + 1))
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

    /// GETs one page and parses it; retries until it is whole or the budget is spent.
    pub async fn get_page(&self, url: &Url) -> Result<Value> {
        let audit = url.path().ends_with("/directoryAudits");
        let mut refreshed = false;
        let mut last = String::new();
        let s = &self.settings;
        for attempt in 1..=s.max_attempts {
            if self.started.elapsed() > s.deadline {
                break;
            }
            if audit {
                self.rate_limit().await;
            }
            let token = self.bearer(false).await?;
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            if attempt > 1 {
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
            }
            let sent = self
                .http
                .get(url.clone())
                .bearer_auth(token)
                .header("Accept", "application/json")
                .send()
                .await;
            let response = match sent {
                Ok(r) => r,
                Err(e) => {
                    last = format!("transport error: {e}");
                    self.sleep(self.backoff(attempt)).await;
                    continue;
                }
            };
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            match status {
                200 => match response.bytes().await {
                    Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                        Ok(v) if v.get("value").is_some_and(Value::is_array) => return Ok(v),
                        Ok(_) => last = "the page has no `value` list".into(),
                        Err(e) => last = format!("incomplete or invalid JSON body: {e}"),
                    },
                    Err(e) => last = format!("the body was cut short: {e}"),
                },
                429 => {
                    self.stats.throttled.fetch_add(1, Ordering::Relaxed);
                    last = "429 Too Many Requests".into();
                    let wait = retry_after.unwrap_or_else(|| self.backoff(attempt));
                    tracing::debug!(url = %url, wait_ms = wait.as_millis() as u64, "Throttled; waiting as told.");
                    self.sleep(wait).await;
                    continue;
                }
                401 if !refreshed => {
                    refreshed = true;
                    last = "401 Unauthorized".into();
                    self.bearer(true).await?;
                    continue;
                }
                500 | 502 | 503 | 504 => {
                    last = format!("{status} from Graph");
                    let wait = retry_after.unwrap_or_else(|| self.backoff(attempt));
                    self.sleep(wait).await;
                    continue;
                }
                _ => {
                    let text = response.text().await.unwrap_or_default();
                    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    let message = v["error"]["message"].as_str().unwrap_or(&text).to_string();
                    if status == 403 {
                        return Err(Error::Forbidden {
                            url: url.to_string(),
                            message,
                        });
                    }
                    return Err(Error::Status {
                        url: url.to_string(),
                        status,
                        message,
                    });
                }
            }
            // A whole-looking response that did not parse: a truncated body. Again.
            self.sleep(self.backoff(attempt)).await;
        }
        Err(Error::GaveUp {
            url: url.to_string(),
            attempts: s.max_attempts,
            last,
        })
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let ms = (at.timestamp_millis() - chrono::Utc::now().timestamp_millis()).max(0);
    Some(Duration::from_millis(ms as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_both_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        let later = chrono::Utc::now() + chrono::Duration::seconds(30);
        let d = parse_retry_after(&later.to_rfc2822()).unwrap();
        assert!(
            d > Duration::from_secs(27) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn the_secret_never_prints() {
        let s = Secret::new("hunter2".into());
        assert_eq!(format!("{s:?}"), "[redacted]");
    }
}
