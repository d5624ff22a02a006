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
//! Only a key of at least [`MIN_SECRET_CHARS`] characters is redacted: a
//! shorter one (`EMPTY`, `x`, what local servers accept) is a placeholder, not
//! a secret, and replacing it inside text would mangle ordinary words (`x` in
//! `exchange_rate`). A one-time note on stderr says so, without the key.
//!
//! Redaction is for what is kept or shown (stored outputs, error messages,
//! cache entries), never for the text labels are parsed from: the answer is
//! interpreted first, and the stored copy redacted after.
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

use crate::record::TeacherRecord;
use regex::Regex;
use serde_json::Value;
use std::borrow::Cow;
use std::sync::{LazyLock, Once};

pub const REDACTED: &str = "[REDACTED]";

/// Keys shorter than this are placeholders (`EMPTY`, `x`, `none`), not
/// secrets: they are not redacted.
pub const MIN_SECRET_CHARS: usize = 8;

static SHORT_KEY_NOTE: Once = Once::new();

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
    /// A redactor for `api_key`. A key shorter than [`MIN_SECRET_CHARS`] is
    /// not redacted (a one-time note on stderr says so; `Bearer` tokens are
    /// still redacted).
    pub fn new(api_key: Option<&str>) -> Self {
        let mut secrets = Vec::new();
        let key = api_key.map(str::trim).filter(|k| !k.is_empty());
        if let Some(key) = key
            && key.chars().count() < MIN_SECRET_CHARS
        {
            SHORT_KEY_NOTE.call_once(|| {
                eprintln!(
                    "note: the API key is shorter than {MIN_SECRET_CHARS} characters: taken for a placeholder, not a secret, so it is not redacted from logs and messages"
                );
            });
        }
        if let Some(key) = key.filter(|k| k.chars().count() >= MIN_SECRET_CHARS) {
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
        let out = BEARER.replace_all(text, format!("${{1}}${{2}}{REDACTED}").as_str());
        match out {
            Cow::Borrowed(_) => self.key_only(text),
            Cow::Owned(s) => Cow::Owned(self.key_only(&s).into_owned()),
        }
    }

    /// `text` redacted, as an owned string.
    pub fn string(&self, text: &str) -> String {
        self.text(text).into_owned()
    }

    /// `text` with the API key (not `Bearer` tokens) replaced: for values
    /// parsed out of an answer (extracted fields), where only the key itself
    /// must not be kept and any other text is the teacher's answer.
    pub fn key_only<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
            }
        }
        out
    }

    /// Redact what a record keeps of a server's answer, after the answer was
    /// interpreted: the raw output and the error message in full, extracted
    /// field values of the key only. Labels and probabilities come from the
    /// dataset's label set and are left as they are.
    pub fn record(&self, rec: &mut TeacherRecord) {
        if let Some(output) = &mut rec.output
            && let Cow::Owned(r) = self.text(output)
        {
            *output = r;
        }
        if let Some(e) = &mut rec.error
            && let Cow::Owned(r) = self.text(&e.message)
        {
            e.message = r;
        }
        for values in rec.fields.iter_mut().flat_map(|f| f.values_mut()) {
            for v in values.iter_mut() {
                if let Cow::Owned(r) = self.key_only(v) {
                    *v = r;
                }
            }
        }
    }

    /// Redact a chat-completion response before it is stored (the response
    /// cache): every string in full, except the answer texts
    /// (`choices[*].message.content`), of which only the key is replaced, so
    /// that a response read back from the cache is interpreted as it was when
    /// it came (a `Bearer`-like phrase in an answer stays a label).
    pub fn response(&self, v: &mut Value) {
        let content = |v: &mut Value| -> Vec<Option<String>> {
            v.get_mut("choices")
                .and_then(Value::as_array_mut)
                .map(|choices| {
                    choices
                        .iter_mut()
                        .map(|c| match c.pointer_mut("/message/content") {
                            Some(Value::String(s)) => Some(std::mem::take(s)),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let answers = content(v);
        self.value(v);
        if let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) {
            for (c, answer) in choices.iter_mut().zip(answers) {
                if let (Some(Value::String(s)), Some(answer)) =
                    (c.pointer_mut("/message/content"), answer)
                {
                    *s = self.key_only(&answer).into_owned();
                }
            }
        }
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

    /// `EMPTY`, `x`: what local servers take as a key. Not secrets, and
    /// replacing them inside text mangles words (`e[REDACTED]change_rate`).
    #[test]
    fn short_keys_are_placeholders_and_are_not_redacted() {
        for key in ["x", "EMPTY", "sk-1234"] {
            let r = Redactor::new(Some(key));
            assert_eq!(
                r.text("exchange_rate EMPTY sk-1234"),
                "exchange_rate EMPTY sk-1234"
            );
            let mut v = serde_json::json!({"labels": ["exchange_rate", "tax"]});
            r.value(&mut v);
            assert_eq!(v["labels"][0], "exchange_rate", "{key}");
        }
        // 8 characters and more: a secret.
        let r = Redactor::new(Some("sk-12345"));
        assert_eq!(r.text("key=sk-12345."), "key=[REDACTED].");
        // Bearer tokens are redacted whatever the key.
        assert_eq!(
            Redactor::new(Some("x")).text("Bearer abcdefgh1234"),
            "Bearer [REDACTED]"
        );
    }

    /// What a record keeps is redacted after the answer was interpreted:
    /// output and error in full, extracted values of the key only, labels and
    /// probabilities never.
    #[test]
    fn records_and_stored_responses_are_redacted_without_touching_labels() {
        let key = "sk-live-abcdef123456";
        let r = Redactor::new(Some(key));
        let mut rec = TeacherRecord::new("a".into(), Default::default());
        rec.output = Some(format!("bearer instruments ({key})"));
        rec.label = Some("bearer_instruments".into());
        rec.probs = Some([("bearer_instruments".to_string(), 1.0)].into());
        rec.fields = Some(
            [(
                "instrument".to_string(),
                vec!["Bearer certificates".to_string(), format!("x{key}")],
            )]
            .into(),
        );
        rec.error = Some(crate::record::RecordError {
            kind: "parse".into(),
            message: format!("answer {key:?} names no label"),
        });
        r.record(&mut rec);
        assert_eq!(
            rec.output.as_deref(),
            Some("bearer [REDACTED] ([REDACTED])")
        );
        assert_eq!(rec.label.as_deref(), Some("bearer_instruments"));
        assert!(
            rec.probs
                .as_ref()
                .unwrap()
                .contains_key("bearer_instruments")
        );
        assert_eq!(
            rec.fields.as_ref().unwrap()["instrument"],
            ["Bearer certificates", "x[REDACTED]"]
        );
        assert_eq!(
            rec.error.unwrap().message,
            "answer \"[REDACTED]\" names no label"
        );

        // A cached response: the answer keeps everything but the key.
        let mut v = serde_json::json!({
            "choices": [{"message": {"role": "assistant", "content": format!("bearer instruments {key}")}}],
            "echo": format!("Authorization: Bearer {key}"),
            "note": "Bearer abcdefghijkl"
        });
        r.response(&mut v);
        assert_eq!(
            v["choices"][0]["message"]["content"],
            "bearer instruments [REDACTED]"
        );
        assert_eq!(v["echo"], "Authorization: Bearer [REDACTED]");
        assert_eq!(v["note"], "Bearer [REDACTED]");
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
