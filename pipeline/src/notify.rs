//! Notifications: after `govlake changes --notify` or a `govlake job run`, the summary goes to
//! the `[notify]` webhooks of the config file as a generic JSON document, a Microsoft Teams
//! message (an Adaptive Card, as Teams' incoming-webhook workflows take it) or a Slack
//! incoming-webhook message. A webhook URL carries its secret in itself, so it is read from
//! the environment variable the config names and never printed: errors and logs name the
//! webhook and the variable, and reqwest errors are stripped of their URL. Each delivery is
//! retried on a transport error, 408, 429 and 5xx, with a doubling wait capped at
//! `max_backoff_ms` (or the server's `Retry-After`, capped alike), at most `max_attempts`
//! times.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use crate::config::{NotifyConfig, WebhookConfig, WebhookKind};

/// What to tell people.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    /// One line: what happened (`govlake: 1 new finding in sod_violations`).
    pub title: String,
    /// A few lines for people (one per view or step).
    pub lines: Vec<String>,
    /// Where the evidence pack is, when one was built.
    pub pack: Option<String>,
    /// Rows added over all views (for the `on = "new"` filter).
    #[serde(skip)]
    pub added: usize,
    /// Rows added, removed or changed (for `on = "any"`).
    #[serde(skip)]
    pub changed: usize,
    /// The whole document (the changes, or the job summary): the generic webhook's payload.
    pub document: Value,
}

/// How one webhook's delivery went.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Delivery {
    /// The webhook's name.
    pub webhook: String,
    /// `sent`, `skipped: …` or `failed: …` (never the URL).
    pub outcome: String,
    /// Requests made.
    pub attempts: u32,
}

impl Delivery {
    /// Whether it failed (a person should look).
    pub fn failed(&self) -> bool {
        self.outcome.starts_with("failed")
    }
}

/// The payload a webhook of this kind takes.
pub fn payload(kind: WebhookKind, message: &Message) -> Value {
    let mut text = message.lines.join("\n");
    if let Some(p) = &message.pack {
        text.push_str(&format!("\nEvidence pack: {p}"));
    }
    match kind {
        WebhookKind::Generic => json!({
            "title": message.title,
            "lines": message.lines,
            "pack": message.pack,
            "document": message.document,
        }),
        WebhookKind::Slack => json!({
            "text": format!("*{}*\n{text}", message.title),
        }),
        WebhookKind::Teams => {
            let mut body = vec![json!({
                "type": "TextBlock", "text": message.title, "weight": "Bolder", "size": "Medium", "wrap": true,
            })];
            body.extend(
                message
                    .lines
                    .iter()
                    .map(|l| json!({"type": "TextBlock", "text": l, "wrap": true})),
            );
            if let Some(p) = &message.pack {
                body.push(json!({"type": "TextBlock", "text": format!("Evidence pack: {p}"), "wrap": true}));
            }
            json!({
                "type": "message",
                "attachments": [{
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": null,
                    "content": {
                        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                        "type": "AdaptiveCard",
                        "version": "1.4",
                        "body": body,
                    },
                }],
            })
        }
    }
}

/// Whether a webhook wants this message (its `on` setting).
fn wanted(hook: &WebhookConfig, message: &Message) -> bool {
    match hook.on {
        crate::config::NotifyOn::New => message.added > 0,
        crate::config::NotifyOn::Any => message.changed > 0,
        crate::config::NotifyOn::Always => true,
    }
}

/// Sends the message to every webhook that wants it; never fails as a whole (each
/// delivery's outcome says how it went).
pub async fn send(config: &NotifyConfig, message: &Message) -> Vec<Delivery> {
    let mut out = Vec::new();
    for hook in &config.webhooks {
        let delivery = if !wanted(hook, message) {
            Delivery {
                webhook: hook.name.clone(),
                outcome: format!("skipped: nothing to report for on = {:?}", hook.on)
                    .to_lowercase(),
                attempts: 0,
            }
        } else {
            send_one(config, hook, message).await
        };
        match delivery.failed() {
            true => {
                tracing::warn!(webhook = %hook.name, attempts = delivery.attempts, "Notification `{}` {}.", hook.name, delivery.outcome)
            }
            false => {
                tracing::info!(webhook = %hook.name, attempts = delivery.attempts, "Notification `{}` {}.", hook.name, delivery.outcome)
            }
        }
        out.push(delivery);
    }
    out
}

/// The pause before attempt `attempt + 1`: the server's Retry-After, else `backoff_ms`
/// doubled per attempt; either capped at `max_backoff_ms`.
pub fn backoff(config: &NotifyConfig, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let cap = Duration::from_millis(config.max_backoff_ms);
    retry_after
        .unwrap_or_else(|| {
            Duration::from_millis(
                config
                    .backoff_ms
                    .saturating_mul(1u64 << attempt.saturating_sub(1).min(20)),
            )
        })
        .min(cap)
}

async fn send_one(config: &NotifyConfig, hook: &WebhookConfig, message: &Message) -> Delivery {
    let done = |outcome: String, attempts: u32| Delivery {
        webhook: hook.name.clone(),
        outcome,
        attempts,
    };
    let url = match std::env::var(&hook.url_env) {
        Ok(u) if !u.trim().is_empty() => u,
        _ => {
            return done(
                format!(
                    "failed: the environment variable {} holding its URL is not set",
                    hook.url_env
                ),
                0,
            );
        }
    };
    if let Err(e) = url::Url::parse(url.trim()) {
        return done(
            format!(
                "failed: the URL in {} does not parse ({e}); it is not shown",
                hook.url_env
            ),
            0,
        );
    }
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(config.timeout_secs))
        .build()
    {
        Ok(c) => c,
        Err(e) => return done(format!("failed: {}", e.without_url()), 0),
    };
    let body = payload(hook.kind, message);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (retry, reason, retry_after) = match client.post(url.trim()).json(&body).send().await {
            Ok(r) if r.status().is_success() => return done("sent".into(), attempt),
            Ok(r) => {
                let status = r.status();
                let retry_after = r
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let retry =
                    status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429;
                (retry, format!("HTTP {}", status.as_u16()), retry_after)
            }
            Err(e) => (true, e.without_url().to_string(), None),
        };
        if !retry || attempt >= config.max_attempts.max(1) {
            return done(
                format!(
                    "failed after {attempt} attempt(s): {reason} (URL from {})",
                    hook.url_env
                ),
                attempt,
            );
        }
        let wait = backoff(config, attempt, retry_after);
        tracing::warn!(webhook = %hook.name, attempt, delay_ms = wait.as_millis() as u64, "Notification `{}` got {reason}; retrying.", hook.name);
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Message {
        Message {
            title: "govlake: 1 new finding".into(),
            lines: vec!["sod_violations: 1 added".into()],
            pack: Some("/packs/2026Q3".into()),
            added: 1,
            changed: 1,
            document: json!({"views": {}}),
        }
    }

    #[test]
    fn payloads_of_each_kind() {
        let m = message();
        let g = payload(WebhookKind::Generic, &m);
        assert_eq!(g["document"], json!({"views": {}}));
        let s = payload(WebhookKind::Slack, &m);
        let text = s["text"].as_str().unwrap();
        assert!(text.contains("sod_violations: 1 added") && text.contains("/packs/2026Q3"));
        let t = payload(WebhookKind::Teams, &m);
        assert_eq!(t["type"], "message");
        let card = &t["attachments"][0];
        assert_eq!(
            card["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert_eq!(card["content"]["type"], "AdaptiveCard");
        assert_eq!(
            card["content"]["body"][1]["text"],
            "sod_violations: 1 added"
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let c = NotifyConfig {
            backoff_ms: 100,
            max_backoff_ms: 350,
            ..NotifyConfig::default()
        };
        assert_eq!(backoff(&c, 1, None), Duration::from_millis(100));
        assert_eq!(backoff(&c, 2, None), Duration::from_millis(200));
        assert_eq!(backoff(&c, 3, None), Duration::from_millis(350));
        assert_eq!(
            backoff(&c, 1, Some(Duration::from_secs(600))),
            Duration::from_millis(350)
        );
    }
}
