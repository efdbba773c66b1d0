//! What an error may show of a server's answer. A token endpoint or Graph answering 400 can
//! echo the request it got: the form with `client_secret=…` or a client assertion, or the
//! headers with `Authorization: Bearer …`. Every body text govlake prints or logs goes
//! through [`scrub`] first: the secrets this run knows (the configured secret, the
//! assertion or refresh token just sent, the current access token) are replaced by value,
//! raw and form-encoded, and anything shaped like a credential (`client_secret=`,
//! `client_assertion=`, `"access_token":"…"`, `Bearer …`, `Authorization: …`, a JWT) by
//! pattern; then the text is cut to [`MAX_SHOWN`] characters, control characters blanked.

use std::sync::LazyLock;

use regex::Regex;

/// Characters of a server's answer an error shows at most.
pub const MAX_SHOWN: usize = 500;

/// What replaces a secret.
const REDACTED: &str = "[redacted]";

/// Credential-shaped text, with the replacement for each match.
static PATTERNS: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    let fields = "client_secret|client_assertion|assertion|refresh_token|access_token|id_token|device_code|password";
    [
        // `Authorization: Bearer x`, `"Authorization":"Bearer x"`, `authorization=x`: the
        // whole value, to the end of the line or the closing quote.
        (
            r#"(?i)(authorization"?\s*[:=]\s*"?)[^"\r\n]*"#.to_string(),
            "${1}[redacted]",
        ),
        (
            r"(?i)\bbearer\s+[A-Za-z0-9\-._~+/%]+=*".to_string(),
            "Bearer [redacted]",
        ),
        // Form fields and query parameters: `client_secret=x&…`.
        (format!(r"(?i)\b({fields})=[^&\s\x22']*"), "${1}=[redacted]"),
        // JSON members: `"access_token": "x"`.
        (
            format!(r#"(?i)"({fields})"\s*:\s*"(?:[^"\\]|\\.)*""#),
            r#""${1}":"[redacted]""#,
        ),
        // A JWT anywhere (an access token, a client assertion).
        (
            r"eyJ[A-Za-z0-9_\-]+\.eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*".to_string(),
            REDACTED,
        ),
    ]
    .into_iter()
    .map(|(p, r)| (Regex::new(&p).expect("valid pattern"), r))
    .collect()
});

/// `text` as an error may show it: `known` secrets and credential-shaped text replaced,
/// control characters blanked, cut to [`MAX_SHOWN`] characters.
pub fn scrub(text: &str, known: &[&str]) -> String {
    let mut out = text.to_string();
    for secret in known.iter().filter(|s| s.len() >= 4) {
        let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        for form in [secret.to_string(), encoded] {
            if out.contains(&form) {
                out = out.replace(&form, REDACTED);
            }
        }
    }
    for (pattern, replacement) in PATTERNS.iter() {
        if let std::borrow::Cow::Owned(s) = pattern.replace_all(&out, *replacement) {
            out = s;
        }
    }
    let total = out.chars().count();
    let mut shown: String = out
        .chars()
        .take(MAX_SHOWN)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if total > MAX_SHOWN {
        shown.push_str(&format!("… ({} more characters)", total - MAX_SHOWN));
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_go_by_value_and_by_shape() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJ4In0.c2lnbmF0dXJl";
        let body = format!(
            "grant_type=client_credentials&client_id=app&client_secret=p%2Bss%2Fw0rd&scope=x \
             client_assertion={jwt} Authorization: Bearer opaque-token-123\n\
             {{\"access_token\":\"at-999\",\"refresh_token\": \"rt-1\"}} echoed hunter22 and {jwt}"
        );
        let shown = scrub(&body, &["hunter22", "p+ss/w0rd"]);
        for leaked in [
            "p%2Bss",
            "hunter22",
            "opaque-token-123",
            "at-999",
            "rt-1",
            "eyJhbGci",
        ] {
            assert!(!shown.contains(leaked), "`{leaked}` in {shown}");
        }
        assert!(shown.contains("client_id=app"), "{shown}");
        assert!(shown.contains("client_secret=[redacted]"), "{shown}");
        assert!(!shown.contains('\n'));
    }

    #[test]
    fn long_bodies_are_cut_and_say_so() {
        let shown = scrub(&"x".repeat(100_000), &[]);
        assert!(shown.chars().count() < MAX_SHOWN + 40, "{}", shown.len());
        assert!(shown.ends_with("(99500 more characters)"), "{shown}");
    }
}
