//! The retry rules, as one pure function: [`classify`] reads what one attempt came back with
//! (status, `Retry-After`, body, attempt number, time left, this attempt's backoff step) and
//! says what to do next: take the answer, wait and retry, refresh the token once, or give up
//! with a reason. The client's one loop (`client.rs`) sends, classifies and acts, for Graph
//! requests and token requests alike; the two differ only where [`Endpoint`] says. Waits
//! follow `Retry-After` (seconds or an HTTP date) when it asks for one, else the backoff
//! step; a wait that would pass the run's deadline gives up at once.

use std::time::Duration;

use serde_json::Value;

/// Which endpoint an exchange talks to: the rules differ in two places.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// Graph (or the Log Analytics API): a 401 gets one token refresh, and 500, 502, 503
    /// and 504 are retried.
    Graph,
    /// The token endpoint: a 401 is a refusal (the credentials are wrong), and every 5xx is
    /// retried.
    Token,
}

/// An answer as [`classify`] reads it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answer<'a> {
    /// HTTP status; 200 only for a whole answer.
    pub status: u16,
    /// The `Retry-After` header.
    pub retry_after: Option<&'a str>,
    /// The body (empty when it was cut short).
    pub body: &'a [u8],
}

/// What one attempt came back with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResponseFacts<'a> {
    /// Where it went.
    pub endpoint: Endpoint,
    /// The answer; `None` when no whole answer came (a transport error, a timeout, a body
    /// cut short, a 200 that is not a whole page).
    pub answer: Option<Answer<'a>>,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Whether this exchange has already refreshed its token after a 401.
    pub refreshed: bool,
    /// Time left before the run's deadline.
    pub remaining: Duration,
    /// This attempt's backoff step (drawn with jitter by the caller).
    pub backoff: Duration,
}

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RetryAction {
    /// The answer is whole: use it.
    Success,
    /// Wait this long, then send again.
    Retry(Duration),
    /// Fetch a new token and send again; this attempt does not count.
    RefreshToken,
    /// Stop.
    GiveUp(GiveUp),
}

/// Why the loop stops.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum GiveUp {
    /// A status retrying does not fix, with what the server said (Graph's
    /// `error.code: error.message`, the token endpoint's `error_description`), unscrubbed.
    Refused {
        /// HTTP status.
        status: u16,
        /// The server's words.
        message: String,
    },
    /// The attempts ran out.
    Exhausted,
    /// The wait before the next attempt would pass the run's deadline.
    Deadline(Duration),
}

/// The retry rules.
pub(crate) fn classify(f: &ResponseFacts<'_>) -> RetryAction {
    let mut told = None;
    if let Some(a) = f.answer {
        match (f.endpoint, a.status) {
            (_, 200) => return RetryAction::Success,
            (Endpoint::Graph, 401) if !f.refreshed => return RetryAction::RefreshToken,
            (_, 429) | (Endpoint::Graph, 500 | 502 | 503 | 504) | (Endpoint::Token, 500..) => {
                told = retry_wait(a.retry_after);
            }
            (endpoint, status) => {
                return RetryAction::GiveUp(GiveUp::Refused {
                    status,
                    message: refusal(endpoint, a.body),
                });
            }
        }
    }
    if f.attempt >= f.max_attempts {
        return RetryAction::GiveUp(GiveUp::Exhausted);
    }
    let wait = told.unwrap_or(f.backoff);
    if wait >= f.remaining {
        return RetryAction::GiveUp(GiveUp::Deadline(wait));
    }
    RetryAction::Retry(wait)
}

/// What a refusal's body says: Graph's `error.code: error.message`, the token endpoint's
/// `error_description` (or `error`), else the body as text.
fn refusal(endpoint: Endpoint, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let said = match endpoint {
        Endpoint::Graph => match (v["error"]["code"].as_str(), v["error"]["message"].as_str()) {
            (Some(code), Some(m)) => Some(format!("{code}: {m}")),
            (None, Some(m)) => Some(m.to_string()),
            _ => None,
        },
        Endpoint::Token => v["error_description"]
            .as_str()
            .or(v["error"].as_str())
            .map(str::to_string),
    };
    said.unwrap_or_else(|| text.into_owned())
}

/// The backoff step of `attempt` (from 1): `base` doubled per attempt, capped at 60 s, of
/// which the upper half is `jitter` (a fraction in [0, 1]): full jitter over half the step.
pub(crate) fn backoff_step(base: Duration, attempt: u32, jitter: f64) -> Duration {
    let base = (base.as_millis() as u64).max(1);
    let exp = base.saturating_mul(1 << attempt.min(16)).min(60_000);
    let spread = ((exp / 2) as f64 * jitter.clamp(0.0, 1.0)).round() as u64;
    Duration::from_millis(exp / 2 + spread)
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`) as UNIX seconds.
pub(crate) fn parse_http_date(v: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc2822(v.trim())
        .ok()
        .map(|d| d.timestamp())
}

/// The wait a `Retry-After` asks for, when it asks for one: absent, zero, negative or
/// garbage values give `None` (the caller backs off instead).
pub(crate) fn retry_wait(v: Option<&str>) -> Option<Duration> {
    parse_retry_after(v?).filter(|d| !d.is_zero())
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

    const BACKOFF: Duration = Duration::from_millis(400);

    /// Attempt 2 of 5, no refresh yet, an hour left, a 400 ms backoff step.
    fn facts(endpoint: Endpoint, answer: Option<Answer<'_>>) -> ResponseFacts<'_> {
        ResponseFacts {
            endpoint,
            answer,
            attempt: 2,
            max_attempts: 5,
            refreshed: false,
            remaining: Duration::from_secs(3600),
            backoff: BACKOFF,
        }
    }

    fn answer<'a>(status: u16, retry_after: Option<&'a str>, body: &'a str) -> Option<Answer<'a>> {
        Some(Answer {
            status,
            retry_after,
            body: body.as_bytes(),
        })
    }

    fn refused(status: u16, message: &str) -> RetryAction {
        RetryAction::GiveUp(GiveUp::Refused {
            status,
            message: message.into(),
        })
    }

    #[test]
    fn the_table_of_cases() {
        use Endpoint::{Graph, Token};
        let secs = |s| RetryAction::Retry(Duration::from_secs(s));
        let back = RetryAction::Retry(BACKOFF);
        let in_a_minute = (chrono::Utc::now() + chrono::Duration::seconds(60)).to_rfc2822();
        let graph_error = r#"{"error":{"code":"BadRequest","message":"Invalid filter clause"}}"#;
        let not_found = r#"{"error":{"code":"Request_ResourceNotFound","message":"gone"}}"#;
        let denied = r#"{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges"}}"#;
        let aad = r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}"#;
        let cases: Vec<(&str, ResponseFacts<'_>, RetryAction)> = vec![
            (
                "200",
                facts(Graph, answer(200, None, "{}")),
                RetryAction::Success,
            ),
            (
                "429 + seconds",
                facts(Graph, answer(429, Some("7"), "")),
                secs(7),
            ),
            (
                "429 + garbage backs off",
                facts(Graph, answer(429, Some("soon"), "")),
                back.clone(),
            ),
            (
                "429 + zero backs off",
                facts(Graph, answer(429, Some("0"), "")),
                back.clone(),
            ),
            (
                "429, none",
                facts(Graph, answer(429, None, "")),
                back.clone(),
            ),
            ("503", facts(Graph, answer(503, None, "")), back.clone()),
            (
                "503 + seconds",
                facts(Graph, answer(503, Some("3"), "")),
                secs(3),
            ),
            ("504", facts(Graph, answer(504, None, "")), back.clone()),
            ("500", facts(Graph, answer(500, None, "")), back.clone()),
            (
                "501 is not retried",
                facts(Graph, answer(501, None, "x")),
                refused(501, "x"),
            ),
            (
                "401 refreshes",
                facts(Graph, answer(401, None, "")),
                RetryAction::RefreshToken,
            ),
            (
                "a second 401 gives up",
                ResponseFacts {
                    refreshed: true,
                    ..facts(Graph, answer(401, None, "nope"))
                },
                refused(401, "nope"),
            ),
            (
                "400",
                facts(Graph, answer(400, None, graph_error)),
                refused(400, "BadRequest: Invalid filter clause"),
            ),
            (
                "403",
                facts(Graph, answer(403, None, denied)),
                refused(403, "Authorization_RequestDenied: Insufficient privileges"),
            ),
            (
                "404",
                facts(Graph, answer(404, None, not_found)),
                refused(404, "Request_ResourceNotFound: gone"),
            ),
            ("connection error", facts(Graph, None), back.clone()),
            (
                "connection error on the last attempt",
                ResponseFacts {
                    attempt: 5,
                    ..facts(Graph, None)
                },
                RetryAction::GiveUp(GiveUp::Exhausted),
            ),
            (
                "429 on the last attempt",
                ResponseFacts {
                    attempt: 5,
                    ..facts(Graph, answer(429, Some("1"), ""))
                },
                RetryAction::GiveUp(GiveUp::Exhausted),
            ),
            (
                "a Retry-After past the deadline",
                ResponseFacts {
                    remaining: Duration::from_secs(600),
                    ..facts(Graph, answer(429, Some("3600"), ""))
                },
                RetryAction::GiveUp(GiveUp::Deadline(Duration::from_secs(3600))),
            ),
            (
                "a backoff past the deadline",
                ResponseFacts {
                    remaining: Duration::from_millis(399),
                    ..facts(Graph, None)
                },
                RetryAction::GiveUp(GiveUp::Deadline(BACKOFF)),
            ),
            (
                "token 200",
                facts(Token, answer(200, None, "{}")),
                RetryAction::Success,
            ),
            (
                "token 429",
                facts(Token, answer(429, Some("2"), "")),
                secs(2),
            ),
            (
                "token 501 is retried",
                facts(Token, answer(501, None, "")),
                back.clone(),
            ),
            (
                "token 401 is a refusal",
                facts(Token, answer(401, None, aad)),
                refused(401, "AADSTS7000215: Invalid client secret provided."),
            ),
            (
                "token 400, not JSON",
                facts(Token, answer(400, None, "bad form")),
                refused(400, "bad form"),
            ),
            ("token, connection error", facts(Token, None), back.clone()),
        ];
        for (name, f, want) in &cases {
            assert_eq!(&classify(f), want, "{name}");
        }
        // An HTTP date: the time until then (a second of clock between the two readings).
        match classify(&facts(Graph, answer(503, Some(&in_a_minute), ""))) {
            RetryAction::Retry(d) => assert!(
                d > Duration::from_secs(58) && d <= Duration::from_secs(60),
                "{d:?}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn backoff_doubles_is_capped_and_jitters_over_its_upper_half() {
        let base = Duration::from_millis(100);
        assert_eq!(backoff_step(base, 1, 0.0), Duration::from_millis(100));
        assert_eq!(backoff_step(base, 1, 1.0), Duration::from_millis(200));
        assert_eq!(backoff_step(base, 3, 0.5), Duration::from_millis(600));
        assert_eq!(backoff_step(base, 30, 1.0), Duration::from_secs(60));
        assert_eq!(
            backoff_step(Duration::ZERO, 1, 0.0),
            Duration::from_millis(1)
        );
    }

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
        assert_eq!(retry_wait(Some("0")), None);
        assert_eq!(retry_wait(None), None);
    }
}
