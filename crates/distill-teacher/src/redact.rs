//! Keep secrets out of everything `distill teach` stores or prints.
//!
//! A server may echo the request's `Authorization` header in an error body (or
//! in a completion); that text would otherwise land in `logs.jsonl`, the
//! response cache and error messages. Every string that comes back from a
//! server goes through [`Redactor`] before it is kept: the API key's value and
//! any `Bearer <token>` are replaced by `[REDACTED]`. Redaction runs on the
//! whole text before it is shortened, so a key cut in half by a snippet never
//! leaks its first half.
//!
//! Keys in URLs are refused at config load instead ([`url_credentials`]): a
//! URL is stored in `teacher.json` and printed in errors, so it must not carry
//! one.
//!
//! ```
//! use distill_teacher::redact::Redactor;
//! let r = Redactor::new(Some("sk-test-0123456789"));
//! assert_eq!(
//!     r.text("401: got Authorization: Bearer sk-test-0123456789"),
//!     "401: got Authorization: Bearer [REDACTED]"
//! );
//! assert_eq!(r.text("key sk-test-0123456789 is revoked"), "key [REDACTED] is revoked");
//! ```

use regex::Regex;
use serde_json::Value;
use std::borrow::Cow;
use std::sync::LazyLock;

pub const REDACTED: &str = "[REDACTED]";

/// `Bearer <token>` in any case, with the token's characters (RFC 6750
/// b64token); 8 at least, so that prose ("the bearer of") is left alone.
static BEARER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(bearer)(\s+)[A-Za-z0-9\-._~+/]{8,}=*").expect("a valid regex literal")
});

/// Replaces known secrets in strings.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// The API key and its forms as it may be echoed (trimmed; JSON-escaped).
    secrets: Vec<String>,
}

impl Redactor {
    pub fn new(api_key: Option<&str>) -> Self {
        let mut secrets = Vec::new();
        if let Some(key) = api_key.map(str::trim).filter(|k| !k.is_empty()) {
            secrets.push(key.to_string());
            // As a JSON string body would carry it (quotes, backslashes escaped).
            let escaped = serde_json::to_string(key).unwrap_or_default();
            let escaped = escaped.trim_matches('"');
            if escaped != key && !escaped.is_empty() {
                secrets.push(escaped.to_string());
            }
        }
        Redactor { secrets }
    }

    /// `text` with every secret and `Bearer` token replaced.
    pub fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = match BEARER.replace_all(text, format!("${{1}}${{2}}{REDACTED}").as_str()) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            Cow::Owned(s) => Cow::Owned(s),
        };
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
            }
        }
        out
    }

    /// `text` redacted, as an owned string.
    pub fn string(&self, text: &str) -> String {
        self.text(text).into_owned()
    }

    /// Redact every string (and object key) inside a JSON value, in place.
    pub fn value(&self, v: &mut Value) {
        match v {
            Value::String(s) => {
                if let Cow::Owned(r) = self.text(s) {
                    *s = r;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.value(i)),
            Value::Object(map) => {
                let dirty: Vec<String> = map
                    .keys()
                    .filter(|k| matches!(self.text(k), Cow::Owned(_)))
                    .cloned()
                    .collect();
                for k in dirty {
                    if let Some(inner) = map.remove(&k) {
                        map.insert(self.string(&k), inner);
                    }
                }
                map.values_mut().for_each(|i| self.value(i));
            }
            _ => {}
        }
    }
}

/// Query parameter names that carry credentials (matched as substrings,
/// case-insensitively: `api_key`, `apikey`, `access_token`, `client_secret`...).
const SECRET_PARAMS: [&str; 7] = [
    "key",
    "token",
    "secret",
    "password",
    "passwd",
    "auth",
    "credential",
];

/// Why `url` must not be used: it carries credentials (userinfo, or a query
/// parameter named like a key). The message never repeats the secret.
pub fn url_credentials(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    if authority.contains('@') {
        return Some("it carries credentials (`user:password@` before the host)".into());
    }
    let query = rest[authority_end..]
        .split_once('?')
        .map(|(_, q)| q.split('#').next().unwrap_or(""))
        .unwrap_or("");
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let name = pair.split('=').next().unwrap_or("").to_ascii_lowercase();
        if SECRET_PARAMS.iter().any(|s| name.contains(s)) {
            return Some(format!(
                "its query parameter `{name}` looks like a credential"
            ));
        }
    }
    None
}

/// `url` with userinfo and every query value hidden, for messages.
pub fn display_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => (String::new(), url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let userinfo = if authority.contains('@') { "***@" } else { "" };
    let tail = &rest[authority_end..];
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q.split('#').next().unwrap_or(""))),
        None => (tail.split('#').next().unwrap_or(""), None),
    };
    let query = query
        .map(|q| {
            let hidden: Vec<String> = q
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| format!("{}=***", p.split('=').next().unwrap_or("")))
                .collect();
            format!("?{}", hidden.join("&"))
        })
        .unwrap_or_default();
    format!("{scheme}{userinfo}{host}{path}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_bearer_tokens_are_redacted_everywhere_in_json() {
        let r = Redactor::new(Some("  sk-live-abcdef123456 \n"));
        let mut v = serde_json::json!({
            "error": {"message": "bad header: authorization: BEARER sk-live-abcdef123456"},
            "echo": ["sk-live-abcdef123456", 3, {"sk-live-abcdef123456": "x"}],
            "other": "Bearer eyJhbGciOi.J9.x-y_z"
        });
        r.value(&mut v);
        let text = v.to_string();
        assert!(!text.contains("sk-live"), "{text}");
        assert!(!text.contains("eyJ"), "{text}");
        assert_eq!(v["other"], "Bearer [REDACTED]");
        assert_eq!(
            v["error"]["message"],
            "bad header: authorization: BEARER [REDACTED]"
        );
        assert!(matches!(r.text("nothing to hide"), Cow::Borrowed(_)));
        assert_eq!(Redactor::new(None).text("plain"), "plain");
    }

    #[test]
    fn credentials_in_urls_are_found_and_never_shown() {
        for bad in [
            "https://user:sk-123@api.example.com/v1",
            "https://sk-123@api.example.com/v1",
            "https://api.example.com/v1?api_key=sk-123",
            "https://api.example.com/v1?x=1&access_token=sk-123#frag",
            "http://127.0.0.1:8080/v1?Password=sk-123",
        ] {
            assert!(url_credentials(bad).is_some(), "{bad}");
            let shown = display_url(bad);
            assert!(!shown.contains("sk-123"), "{bad} -> {shown}");
        }
        for good in [
            "https://api.example.com/v1",
            "http://127.0.0.1:8080/v1",
            "https://api.example.com/v1?api-version=2024-06-01",
            "https://api.example.com/v1/a@b",
        ] {
            assert_eq!(url_credentials(good), None, "{good}");
        }
        assert_eq!(
            display_url("https://u:p@h:1/v1?api_key=k"),
            "https://***@h:1/v1?api_key=***"
        );
    }
}
