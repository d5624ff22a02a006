//! The OpenAI-compatible client: one `/chat/completions` call per row, with
//! retries (exponential backoff with jitter, `Retry-After` honoured and shared
//! by all workers), a per-request timeout, and a content-addressed cache.

use crate::config::OpenAiSpec;
use crate::error::{Error, Result};
use crate::record::Usage;
use crate::redact::Redactor;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One attempt's outcome.
#[derive(Debug)]
pub enum Attempt {
    Ok(Value),
    /// Worth retrying: connection errors, timeouts, 429, 5xx, invalid bodies.
    Retry {
        kind: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// Retrying will not help (4xx other than 408/409/429).
    Fatal {
        kind: String,
        message: String,
    },
}

pub struct Client {
    agent: ureq::Agent,
    url: String,
    models_url: String,
    api_key: Option<String>,
    /// Hides the key (and any `Bearer` token) in everything a server sends back.
    redactor: Redactor,
    /// No worker sends before this instant (set by 429 + Retry-After).
    pause_until: Mutex<Option<Instant>>,
}

impl Client {
    pub fn new(spec: &OpenAiSpec) -> Result<Self> {
        let api_key = Self::key_from_env(spec)?;
        Self::with_key(spec, api_key)
    }

    /// The key named by `teacher.api-key-env` (trimmed), if any.
    fn key_from_env(spec: &OpenAiSpec) -> Result<Option<String>> {
        Ok(match &spec.api_key_env {
            Some(var) => match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => Some(v.trim().to_string()),
                _ => {
                    return Err(Error::Input(format!(
                        "teacher.api-key-env names `{var}`, which is not set in the environment; export it (the key is never written to logs)"
                    )));
                }
            },
            None => None,
        })
    }

    /// A client sending `api_key` (what [`Client::new`] reads from the environment).
    pub(crate) fn with_key(spec: &OpenAiSpec, api_key: Option<String>) -> Result<Self> {
        let timeout = Duration::try_from_secs_f64(spec.timeout_s).map_err(|_| {
            Error::Input(format!(
                "teacher.timeout-s = {}: expected a finite number of seconds > 0",
                spec.timeout_s
            ))
        })?;
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_idle_connections_per_host(spec.concurrency.max(1) * 2)
            .user_agent(concat!("distill/", env!("CARGO_PKG_VERSION")))
            .build();
        let base = spec.base_url.trim_end_matches('/');
        Ok(Client {
            agent: config.into(),
            url: format!("{base}/chat/completions"),
            models_url: format!("{base}/models"),
            redactor: Redactor::new(api_key.as_deref()),
            api_key,
            pause_until: Mutex::new(None),
        })
    }

    /// Check that the server answers and serves `model`, before any work.
    /// Check that the server answers and serves `model`; returns what its
    /// `/models` listing says about that model (without the volatile
    /// `created`), the server's identity for the response cache, or `None`
    /// when it does not list models.
    pub fn preflight(&self, model: &str) -> Result<Option<Value>> {
        let mut req = self.agent.get(&self.models_url);
        if let Some(k) = &self.api_key {
            req = req.header("Authorization", &format!("Bearer {k}"));
        }
        let mut resp = match req.call() {
            Ok(r) => r,
            Err(e) => {
                return Err(Error::Input(format!(
                    "teacher server {} is unreachable: {}; start it or fix teacher.base-url",
                    self.models_url,
                    self.redactor.text(&e.to_string())
                )));
            }
        };
        let status = resp.status().as_u16();
        match status {
            200 => {}
            401 | 403 => {
                return Err(Error::Input(format!(
                    "teacher server {} refused the API key (HTTP {status}); check the variable named by teacher.api-key-env",
                    self.models_url
                )));
            }
            404 | 405 => {
                eprintln!(
                    "note: {} is not served (HTTP {status}); cannot check that model `{model}` exists",
                    self.models_url
                );
                return Ok(None);
            }
            _ => {
                return Err(Error::Input(format!(
                    "teacher server {} answered HTTP {status} to a model listing",
                    self.models_url
                )));
            }
        }
        let body: Value = resp
            .body_mut()
            .read_to_string()
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(Value::Null);
        let entry = body
            .get("data")
            .and_then(|d| d.as_array())
            .and_then(|a| {
                a.iter()
                    .find(|m| m.get("id").and_then(Value::as_str) == Some(model))
            })
            .and_then(|m| m.as_object())
            .map(|m| {
                // An allow-list of what names the model and its weights:
                // servers put per-call values in the rest (`created`,
                // vLLM's `permission` ids), which would change every key.
                let kept: serde_json::Map<String, Value> = m
                    .iter()
                    .filter(|(k, _)| IDENTITY_FIELDS.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                Value::Object(kept)
            });
        let ids: Vec<&str> = body
            .get("data")
            .and_then(|d| d.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|m| m.get("id").and_then(|i| i.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        if ids.is_empty() || ids.contains(&model) {
            return Ok(entry);
        }
        // Shown: redacted like everything else a server sends.
        let ids: Vec<String> = ids.iter().map(|i| self.redactor.string(i)).collect();
        Err(Error::Input(format!(
            "teacher.model = `{model}` is not served by {}{}; it serves: {}",
            self.models_url,
            distill_core::config::nearest(model, &ids)
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default(),
            ids.join(", ")
        )))
    }

    /// A shared `Retry-After` pause is in force.
    pub fn paused(&self) -> bool {
        self.pause_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t > Instant::now())
    }

    /// Wait out a shared `Retry-After` pause, if any.
    pub fn wait_for_pause(&self) {
        loop {
            let until = *self.pause_until.lock().unwrap_or_else(|p| p.into_inner());
            match until {
                Some(t) if t > Instant::now() => std::thread::sleep(t - Instant::now()),
                _ => return,
            }
        }
    }

    fn pause(&self, d: Duration) {
        let mut g = self.pause_until.lock().unwrap_or_else(|p| p.into_inner());
        let t = Instant::now() + d;
        if g.is_none_or(|old| old < t) {
            *g = Some(t);
        }
    }

    /// The chat-completions URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The redactor for this client's key.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Send one request. Error messages have the key and `Bearer` tokens
    /// redacted. A response comes back as the server sent it, so that the
    /// answer is interpreted unchanged: redact what is kept of it after
    /// ([`Redactor::record`], [`Redactor::response`]).
    pub fn attempt(&self, body: &[u8]) -> Attempt {
        match self.attempt_raw(body) {
            Attempt::Ok(v) => Attempt::Ok(v),
            Attempt::Retry {
                kind,
                message,
                retry_after,
            } => Attempt::Retry {
                kind,
                message: self.redactor.string(&message),
                retry_after,
            },
            Attempt::Fatal { kind, message } => Attempt::Fatal {
                kind,
                message: self.redactor.string(&message),
            },
        }
    }

    fn attempt_raw(&self, body: &[u8]) -> Attempt {
        let mut req = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json");
        if let Some(k) = &self.api_key {
            req = req.header("Authorization", &format!("Bearer {k}"));
        }
        let mut resp = match req.send(body) {
            Ok(r) => r,
            Err(e) => return classify_transport(e),
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(600.0)));
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        // Messages show the body redacted whole, before any snippet can cut a
        // secret in two; a response is parsed from the body as sent.
        let raw = match resp.body_mut().read_to_string() {
            Ok(t) => t,
            Err(e) => {
                return Attempt::Retry {
                    kind: "invalid-response".into(),
                    message: format!("HTTP {status}: body cut short: {e}"),
                    retry_after: None,
                };
            }
        };
        let text = || self.redactor.string(&raw);
        if status == 429 {
            if let Some(d) = retry_after {
                self.pause(d);
            }
            return Attempt::Retry {
                kind: "http-429".into(),
                message: format!("rate limited: {}", snippet(&text())),
                retry_after,
            };
        }
        if status >= 500 || status == 408 || status == 409 {
            return Attempt::Retry {
                kind: format!("http-{status}"),
                message: snippet(&text()),
                retry_after,
            };
        }
        if status != 200 {
            return Attempt::Fatal {
                kind: format!("http-{status}"),
                message: snippet(&text()),
            };
        }
        if !content_type.contains("json") {
            return Attempt::Retry {
                kind: "invalid-response".into(),
                message: format!(
                    "content type `{content_type}` is not JSON: {}",
                    snippet(&text())
                ),
                retry_after: None,
            };
        }
        match serde_json::from_str::<Value>(&raw) {
            Ok(v) if v.pointer("/choices/0/message").is_some() => Attempt::Ok(v),
            Ok(_) => Attempt::Retry {
                kind: "invalid-response".into(),
                message: format!("no choices[0].message in {}", snippet(&text())),
                retry_after: None,
            },
            Err(e) => Attempt::Retry {
                kind: "invalid-response".into(),
                message: format!("invalid JSON ({e}): {}", snippet(&text())),
                retry_after: None,
            },
        }
    }
}

fn classify_transport(e: ureq::Error) -> Attempt {
    let kind = match &e {
        ureq::Error::Timeout(_) => "timeout",
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => "connect",
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => "timeout",
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => "connect",
        ureq::Error::Io(_) | ureq::Error::Protocol(_) => "invalid-response",
        _ => "connect",
    };
    Attempt::Retry {
        kind: kind.into(),
        message: e.to_string(),
        retry_after: None,
    }
}

fn snippet(text: &str) -> String {
    let t: String = text.chars().take(200).collect();
    if t.len() < text.len() {
        format!("{t}...")
    } else {
        t
    }
}

/// Backoff before retry `n` (0-based): `initial * 2^n` capped at `max`, with
/// full jitter in [50%, 100%] from `rand` in [0, 1).
pub fn backoff(n: u32, initial_ms: u64, max_ms: u64, rand: f64) -> Duration {
    let base = (initial_ms as f64 * 2f64.powi(n.min(30) as i32)).min(max_ms as f64);
    Duration::from_secs_f64(base * (0.5 + 0.5 * rand) / 1000.0)
}

/// The request body for one row.
pub fn request_body(
    spec: &OpenAiSpec,
    messages: Vec<Value>,
    schema: Option<Value>,
    seed: u64,
) -> Value {
    let mut body = json!({
        "model": spec.model,
        "messages": messages,
        "temperature": spec.temperature,
        "max_tokens": spec.max_tokens,
        "seed": seed,
    });
    if spec.logprobs {
        body["logprobs"] = json!(true);
        body["top_logprobs"] = json!(spec.top_logprobs);
    }
    if let Some(schema) = schema {
        body["response_format"] = json!({
            "type": "json_schema",
            "json_schema": {"name": "fields", "strict": true, "schema": schema}
        });
    }
    body
}

/// What a chat completion says, independent of where it came from.
#[derive(Debug, Clone, Default)]
pub struct Completion {
    pub content: String,
    pub tokens: Option<Vec<crate::softlabel::TokenLogprob>>,
    pub usage: Usage,
    pub model: Option<String>,
    /// `stop`, or `length` when the answer hit max-tokens.
    pub finish_reason: Option<String>,
}

impl Completion {
    pub fn from_json(v: &Value) -> Option<Self> {
        let choice = v.pointer("/choices/0")?;
        let content = choice
            .pointer("/message/content")
            .and_then(|c| c.as_str())
            .unwrap_or("")
            .to_string();
        let tokens = choice
            .pointer("/logprobs/content")
            .and_then(crate::softlabel::tokens_from_json)
            .filter(|t| !t.is_empty());
        let usage = Usage {
            prompt_tokens: v
                .pointer("/usage/prompt_tokens")
                .and_then(|x| x.as_u64())
                .unwrap_or(0),
            completion_tokens: v
                .pointer("/usage/completion_tokens")
                .and_then(|x| x.as_u64())
                .unwrap_or(0),
        };
        Some(Completion {
            content,
            tokens,
            usage,
            model: v.get("model").and_then(|m| m.as_str()).map(str::to_string),
            finish_reason: choice
                .get("finish_reason")
                .and_then(|f| f.as_str())
                .map(str::to_string),
        })
    }
}

/// The fields of a `/models` entry that identify a served model: its name,
/// owner and lineage (`root`, `parent`: vLLM), context length, and
/// llama.cpp's `meta` (vocabulary, parameter count, file size of the weights).
pub const IDENTITY_FIELDS: [&str; 6] =
    ["id", "owned_by", "root", "parent", "max_model_len", "meta"];

/// Content-addressed response cache: `<dir>/<2 hex>/<sha256>.json`, keyed
/// on the endpoint, the request body and the server's identity (what its
/// `/models` listing says about the model), so a different model behind the
/// same URL and name is asked again rather than answered from the cache.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
    identity: String,
    /// `false`: never answer from the cache (answers still refresh it).
    read: bool,
}

impl Cache {
    pub fn new(dir: PathBuf) -> Self {
        Cache {
            dir,
            identity: String::new(),
            read: true,
        }
    }

    /// Key entries on this server identity too.
    pub fn with_identity(mut self, identity: Option<&Value>) -> Self {
        self.identity = identity.map(|v| v.to_string()).unwrap_or_default();
        self
    }

    /// Answer nothing from the cache; fresh answers replace its entries.
    pub fn refreshing(mut self, refresh: bool) -> Self {
        self.read = !refresh;
        self
    }

    /// Default location: `$DISTILL_CACHE/teacher` or `~/.cache/distill/teacher`.
    pub fn default_dir() -> PathBuf {
        if let Some(d) = std::env::var_os("DISTILL_CACHE") {
            return PathBuf::from(d).join("teacher");
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| ".".into());
        home.join(".cache").join("distill").join("teacher")
    }

    /// The key of a request: sha256 over the endpoint, the canonical body
    /// (model, messages, every sampling parameter) and the server identity.
    pub fn key(&self, url: &str, body: &Value) -> String {
        let canonical =
            serde_json::to_string(&json!({"url": url, "body": body, "server": self.identity}))
                .unwrap_or_default();
        distill_core::hash::sha256_hex(canonical.as_bytes())
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(&key[..2]).join(format!("{key}.json"))
    }

    /// The cached response for `key`.
    pub fn get(&self, key: &str) -> Option<Value> {
        if !self.read {
            return None;
        }
        let bytes = std::fs::read(self.path(key)).ok()?;
        let mut entry: Value = serde_json::from_slice(&bytes).ok()?;
        Some(entry.get_mut("response")?.take())
    }

    /// Store a request/response pair (the production-log line format, so a
    /// cache directory can be replayed with the `import` teacher).
    pub fn put(&self, key: &str, request: &Value, response: &Value) -> Result<()> {
        let path = self.path(key);
        let entry = json!({"request": request, "response": response});
        distill_core::fsutil::write_json_atomic(&path, &entry)?;
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Entries and bytes of a cache directory (`<2 hex>/<64 hex>.json` files only).
pub fn cache_usage(dir: &Path) -> (u64, u64) {
    cache_entries(dir)
        .iter()
        .fold((0, 0), |(n, b), (_, len, _)| (n + 1, b + len))
}

/// Every cache entry: path, bytes, modification time. Only files named
/// like entries, in shard directories named like shards, are listed (a
/// cache directory pointed at the wrong place deletes nothing else).
pub fn cache_entries(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let mut out = Vec::new();
    let Ok(shards) = std::fs::read_dir(dir) else {
        return out;
    };
    for shard in shards.flatten() {
        let name = shard.file_name().to_string_lossy().into_owned();
        if !hex(&name, 2) || !shard.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(files) = std::fs::read_dir(shard.path()) else {
            continue;
        };
        for f in files.flatten() {
            let fname = f.file_name().to_string_lossy().into_owned();
            let Some(stem) = fname.strip_suffix(".json") else {
                continue;
            };
            if !hex(stem, 64) || !stem.starts_with(&name) {
                continue;
            }
            if let Ok(m) = f.metadata()
                && m.is_file()
            {
                out.push((
                    f.path(),
                    m.len(),
                    m.modified().unwrap_or(std::time::UNIX_EPOCH),
                ));
            }
        }
    }
    out
}

/// Delete cache entries older than `older_than`, then the oldest until the
/// rest fits in `max_bytes`. Returns (entries, bytes) removed.
pub fn prune_cache(dir: &Path, older_than: Option<Duration>, max_bytes: Option<u64>) -> (u64, u64) {
    let mut entries = cache_entries(dir);
    entries.sort_by_key(|e| e.2);
    let now = std::time::SystemTime::now();
    let mut total: u64 = entries.iter().map(|e| e.1).sum();
    let (mut n, mut freed) = (0u64, 0u64);
    for (path, len, modified) in entries {
        let old = older_than.is_some_and(|d| now.duration_since(modified).unwrap_or_default() > d);
        let over = max_bytes.is_some_and(|m| total > m);
        if (old || over) && std::fs::remove_file(&path).is_ok() {
            n += 1;
            freed += len;
            total -= len;
        }
    }
    (n, freed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(0, 500, 30_000, 1.0), Duration::from_millis(500));
        assert_eq!(backoff(3, 500, 30_000, 1.0), Duration::from_millis(4000));
        assert_eq!(backoff(20, 500, 30_000, 1.0), Duration::from_millis(30_000));
        assert_eq!(backoff(1, 500, 30_000, 0.0), Duration::from_millis(500));
    }

    fn spec(base_url: &str) -> OpenAiSpec {
        toml::from_str(&format!(
            "base-url = \"{base_url}\"\nmodel = \"m\"\nmax-retries = 0\ntimeout-s = 10.0"
        ))
        .unwrap()
    }

    /// The model ids a server lists are shown when the model is not among
    /// them: redacted like everything else a server sends.
    #[test]
    fn preflight_redacts_the_model_ids_it_shows() {
        let listing = json!({"data": [{"id": "Bearer abcdefgh12345678"}, {"id": "n"}]}).to_string();
        let url = crate::test_server::serve(vec![(200, listing)]);
        let client = Client::new(&spec(&url)).unwrap();
        let err = client.preflight("m").unwrap_err().to_string();
        assert!(!err.contains("abcdefgh12345678"), "{err}");
        assert!(err.contains("it serves: Bearer [REDACTED], n"), "{err}");

        let key = "sk-live-0123456789";
        let listing = json!({"data": [{"id": format!("model-{key}")}]}).to_string();
        let url = crate::test_server::serve(vec![(200, listing)]);
        let client = Client::with_key(&spec(&url), Some(key.into())).unwrap();
        let err = client.preflight("m").unwrap_err().to_string();
        assert!(!err.contains(key), "{err}");
        assert!(err.contains("it serves: model-[REDACTED]"), "{err}");
    }

    /// A response comes back as the server sent it (labels are parsed from
    /// it); error messages are redacted.
    #[test]
    fn responses_come_back_as_sent_and_errors_redacted() {
        let key = "sk-live-0123456789";
        let ok = json!({"choices": [{"message": {"content": "bearer instruments"}}]}).to_string();
        let bad = json!({"error": format!("bad key Bearer {key}")}).to_string();
        let url = crate::test_server::serve(vec![(200, ok), (401, bad)]);
        let client = Client::with_key(&spec(&url), Some(key.into())).unwrap();
        match client.attempt(b"{}") {
            Attempt::Ok(v) => {
                assert_eq!(v["choices"][0]["message"]["content"], "bearer instruments")
            }
            other => panic!("{other:?}"),
        }
        match client.attempt(b"{}") {
            Attempt::Fatal { kind, message } => {
                assert_eq!(kind, "http-401");
                assert!(
                    !message.contains(key) && message.contains("[REDACTED]"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn completion_reads_content_logprobs_and_usage() {
        let v = json!({
            "model": "m",
            "choices": [{"message": {"content": "spam"}, "logprobs": {"content": [
                {"token": "spam", "logprob": -0.1, "top_logprobs": [{"token": "spam", "logprob": -0.1}, {"token": "ham", "logprob": -2.5}]}
            ]}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 1}
        });
        let c = Completion::from_json(&v).unwrap();
        assert_eq!(c.content, "spam");
        assert_eq!(c.usage.prompt_tokens, 12);
        assert_eq!(c.tokens.unwrap()[0].top.len(), 2);
    }
}
