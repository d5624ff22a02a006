//! `distill serve`: the tiered cascade as a running service.
//!
//! A request goes down the local tiers (burn bundles, each through
//! [`distill_export::BundlePredictor`]: the model's preprocessing,
//! calibration, certified threshold, the out-of-scope label) until one is
//! confident; when none is, it escalates to the upstream (any
//! OpenAI-compatible endpoint, asked exactly as `distill teach` asks), and
//! the escalation is appended to a teacher log that `distill train` reads.
//!
//! Endpoints: `POST /v1/classify`, `POST /v1/chat/completions` (OpenAI
//! compatible, `stream` too), `POST /v1/decision`, `GET /v1/models`,
//! `GET /health` (503 while draining), `GET /ready`, `GET /metrics`,
//! `POST /admin/reload` (and SIGHUP).

#![cfg_attr(test, allow(clippy::unwrap_used))]
// Request helpers return the error response itself (`Result<_, Response>`),
// which is what the handler sends; boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

pub mod cascade;
pub mod config;
pub mod log;
pub mod metrics;
pub mod reqlog;
pub mod upstream;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cascade::{Answer, Tiers};
use config::{OnUpstreamError, ServeConfig};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Bundle(String),
    #[error("upstream: {0}")]
    Upstream(String),
    #[error("escalation log: {0}")]
    Log(String),
    #[error("{0}")]
    Io(String),
    #[error(transparent)]
    Core(#[from] distill_core::Error),
}

/// Everything the handlers share.
pub struct AppState {
    pub config: ServeConfig,
    tiers: RwLock<Arc<Tiers>>,
    upstream: Option<Arc<upstream::Upstream>>,
    pub metrics: metrics::Metrics,
    log: Option<log::EscalationLog>,
    draining: AtomicBool,
    permits: Arc<tokio::sync::Semaphore>,
    upstream_slots: tokio::sync::Semaphore,
    reloading: tokio::sync::Mutex<()>,
    /// The bearer token of `auth-token-env` (never logged or printed).
    token: Option<String>,
    requests: std::sync::atomic::AtomicU64,
    request_log: Option<reqlog::RequestLog>,
}

impl AppState {
    /// Load and verify every tier, build the upstream client, open the log.
    pub fn new(config: ServeConfig) -> Result<Self, Error> {
        let tiers = Tiers::load(&config)?;
        let upstream = match &config.upstream {
            Some(spec) => Some(Arc::new(upstream::Upstream::new(
                spec,
                tiers.labels(),
                0,
                config.cooldown_after,
                config.cooldown_s,
            )?)),
            None => None,
        };
        let log = match (&config.log, &upstream) {
            (Some(l), Some(up)) => Some(log::EscalationLog::open(
                &config.resolve(&l.dir),
                &up.teacher.params_hash,
                l.log_texts,
            )?),
            _ => None,
        };
        let permits = Arc::new(tokio::sync::Semaphore::new(config.max_concurrency));
        let token = config
            .auth_token_env
            .as_ref()
            .and_then(|v| std::env::var(v).ok());
        Ok(AppState {
            upstream_slots: tokio::sync::Semaphore::new(config.max_upstream_concurrency),
            reloading: tokio::sync::Mutex::new(()),
            request_log: config.request_log.then(reqlog::RequestLog::stderr),
            token,
            requests: std::sync::atomic::AtomicU64::new(0),
            tiers: RwLock::new(Arc::new(tiers)),
            upstream,
            metrics: metrics::Metrics::new(),
            log,
            draining: AtomicBool::new(false),
            permits,
            config,
        })
    }

    fn tiers(&self) -> Arc<Tiers> {
        Arc::clone(&self.tiers.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Load the configured bundles anew and swap them in; on any error the
    /// old ones stay. In-flight requests finish on the tiers they started with.
    pub fn reload(&self) -> Result<usize, Error> {
        let fresh = Tiers::load(&self.config)?;
        if fresh.labels() != self.tiers().labels() {
            return Err(Error::Bundle(
                "the new bundles answer over another label set; restart the server to change labels".into(),
            ));
        }
        let n = fresh.tiers.len();
        *self.tiers.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        Ok(n)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        if let Some(up) = &self.upstream {
            up.stop();
        }
    }

    fn ctx(&self) -> cascade::Ctx<'_> {
        cascade::Ctx {
            upstream: self.upstream.as_deref(),
            upstream_slots: Some(&self.upstream_slots),
            max_upstream: self.config.max_upstream_concurrency,
            on_error_local: self.config.on_upstream_error == OnUpstreamError::Local,
            metrics: &self.metrics,
            log: self.log.as_ref(),
        }
    }

    pub fn flush(&self) {
        if let Some(l) = &self.log {
            l.sync();
        }
        if let Some(l) = &self.request_log {
            l.sync();
            if l.dropped() > 0 {
                eprintln!(
                    "warning: {} request-log lines were dropped (stderr fell 8 MiB behind)",
                    l.dropped()
                );
            }
        }
    }
}

type Shared = Arc<AppState>;

/// The router over a loaded state.
pub fn router(state: Shared) -> Router {
    // Bodies are read by `read_body`, which enforces max-body-bytes.
    Router::new()
        .route("/v1/classify", post(classify))
        .route("/v1/decision", post(decision))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .route("/admin/reload", post(reload))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            around,
        ))
        .with_state(state)
}

/// What a handler served, for the request log (content ids, not texts).
#[derive(Clone, Default)]
struct Served {
    ids: Vec<String>,
    tiers: Vec<String>,
    escalated: usize,
    degraded: usize,
}

impl Served {
    /// The content ids of a request's texts, for the request log (not
    /// computed when the log is off).
    fn ids(state: &AppState, texts: &[String]) -> Vec<String> {
        if state.request_log.is_none() {
            return Vec::new();
        }
        texts
            .iter()
            .map(|t| distill_core::hash::content_id(t))
            .collect()
    }

    fn of(ids: Vec<String>, answers: &[Answer]) -> Served {
        Served {
            ids,
            tiers: answers.iter().map(|a| a.tier.clone()).collect(),
            escalated: answers.iter().filter(|a| a.escalated).count(),
            degraded: answers.iter().filter(|a| a.degraded).count(),
        }
    }
}

/// Compare two tokens in time independent of where they differ.
fn same_token(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Every request: a request id (the client's `x-request-id` when it is
/// short and plain), the bearer token on `/v1/*` and `/admin/*`, the
/// deadline on inference routes (504), and one JSON log line on stderr.
async fn around(
    State(state): State<Shared>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let t0 = Instant::now();
    let n = state.requests.fetch_add(1, Ordering::Relaxed);
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(|| format!("req-{n}"));
    let path = req.uri().path().to_string();
    let method = req.method().to_string();
    let guarded = path.starts_with("/v1/") || path.starts_with("/admin/");
    let mut response = if guarded
        && let Some(token) = &state.token
        && !req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes())
            .filter(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer "))
            .is_some_and(|v| same_token(&v[7..], token.as_bytes()))
    {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "a valid `Authorization: Bearer <token>` header is required",
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        r
    } else if path.starts_with("/v1/") {
        let deadline = std::time::Duration::from_secs_f64(state.config.deadline_s);
        match tokio::time::timeout(deadline, next.run(req)).await {
            Ok(r) => r,
            Err(_) => error(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                format!(
                    "the request took longer than deadline-s ({} s)",
                    state.config.deadline_s
                ),
            ),
        }
    } else {
        next.run(req).await
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    if let Some(log) = &state.request_log
        && path != "/metrics"
        && path != "/health"
    {
        let served = response
            .extensions()
            .get::<Served>()
            .cloned()
            .unwrap_or_default();
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        #[derive(serde::Serialize)]
        struct Line<'a> {
            ts: f64,
            request_id: &'a str,
            method: &'a str,
            path: &'a str,
            status: u16,
            ms: f64,
            texts: usize,
            text_ids: &'a [String],
            tiers: &'a [String],
            escalated: usize,
            degraded: usize,
        }
        log.line(&Line {
            ts: (ts * 1000.0).round() / 1000.0,
            request_id: &id,
            method: &method,
            path: &path,
            status: response.status().as_u16(),
            ms: (t0.elapsed().as_secs_f64() * 1e5).round() / 100.0,
            texts: served.ids.len(),
            text_ids: &served.ids[..served.ids.len().min(32)],
            tiers: &served.tiers[..served.tiers.len().min(32)],
            escalated: served.escalated,
            degraded: served.degraded,
        });
    }
    response
}

fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    let body = json!({"error": {"type": kind, "message": message.into()}});
    (status, axum::Json(body)).into_response()
}

const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Read a request body of at most `limit` bytes: a larger declared
/// `Content-Length` is refused at once (413) without reading the body; a
/// body that grows past the limit while streaming is refused too.
async fn read_body(req: Request, limit: usize) -> Result<Bytes, Response> {
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("the body is larger than max-body-bytes ({limit})"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    // A body trickled in slowly holds a request slot: 10 s to send it.
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(req.into_body(), limit)).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(_)) => Err(too_large()),
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            format!(
                "the body took longer than {} s to arrive",
                BODY_TIMEOUT.as_secs()
            ),
        )),
    }
}

/// Parse a JSON body, with a 400 that says what is wrong.
fn parse_body(body: &Bytes) -> Result<Value, Response> {
    serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            format!("the body is not valid JSON: {e}"),
        )
    })
}

/// The texts of a request and how to answer them.
struct Texts {
    texts: Vec<String>,
    /// `{"text"}` (one answer, not a list).
    single: bool,
    /// `"escalate": true`: the upstream answers whatever the tiers say.
    forced: bool,
}

/// `"escalate": true|false` (absent: false).
fn forced_of(v: &Value) -> Result<bool, Response> {
    match v.get("escalate") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "`escalate` must be true or false",
        )),
    }
}

/// `{"text"}` or `{"texts": [..]}`, and `"escalate"`.
fn texts_of(v: &Value, max: usize) -> Result<Texts, Response> {
    let bad = |m: &str| error(StatusCode::BAD_REQUEST, "invalid_request_error", m);
    let forced = forced_of(v)?;
    if let Some(t) = v.get("text") {
        let t = t.as_str().ok_or_else(|| bad("`text` must be a string"))?;
        return Ok(Texts {
            texts: vec![t.to_string()],
            single: true,
            forced,
        });
    }
    let Some(list) = v.get("texts").and_then(Value::as_array) else {
        return Err(bad(
            "expected {\"text\": \"..\"} or {\"texts\": [\"..\", ..]}",
        ));
    };
    if list.len() > max {
        return Err(bad(&format!(
            "{} texts, more than max-batch ({max})",
            list.len()
        )));
    }
    let texts = list
        .iter()
        .map(|t| t.as_str().map(str::to_string))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad("every entry of `texts` must be a string"))?;
    Ok(Texts {
        texts,
        single: false,
        forced,
    })
}

fn permit(state: &Shared) -> Result<tokio::sync::OwnedSemaphorePermit, Response> {
    if state.draining.load(Ordering::SeqCst) {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the server is draining",
        ));
    }
    Arc::clone(&state.permits).try_acquire_owned().map_err(|_| {
        error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            format!(
                "more than {} requests in progress",
                state.config.max_concurrency
            ),
        )
    })
}

/// What every inference route does first: a permit (429 beyond
/// `max-concurrency`, 503 while draining), the bounded body, its JSON.
async fn prelude(
    state: &Shared,
    req: Request,
) -> Result<(tokio::sync::OwnedSemaphorePermit, Value), Response> {
    let permit = permit(state)?;
    let body = read_body(req, state.config.max_body_bytes).await?;
    Ok((permit, parse_body(&body)?))
}

/// Texts per request routed on the async worker itself; larger batches go
/// to a blocking thread at once.
const INLINE_TEXTS: usize = 8;

/// Run the cascade. The local tiers answer in microseconds, so small
/// requests are routed right here; only when the upstream must be asked
/// (or the batch is large) does the work move to a blocking thread. The
/// permit is held until the work ends, even when the client (or the
/// deadline) gave up on it first.
async fn answer_all(
    state: &Shared,
    permit: tokio::sync::OwnedSemaphorePermit,
    texts: Vec<String>,
    forced: bool,
) -> Result<Vec<Answer>, Response> {
    let t0 = Instant::now();
    let tiers = state.tiers();
    let has_upstream = state.upstream.is_some();
    let routes = (texts.len() <= INLINE_TEXTS).then(|| {
        texts
            .iter()
            .map(|t| cascade::route(&tiers, t, has_upstream, forced))
            .collect::<Vec<_>>()
    });
    if let Some(routes) = &routes
        && routes.iter().all(|r| r.tier.is_some())
    {
        let answers = texts
            .iter()
            .zip(routes.iter().cloned())
            .map(|(t, r)| {
                // Local routes never reach the upstream.
                let ctx = cascade::Ctx {
                    upstream: None,
                    ..state.ctx()
                };
                cascade::answer(&tiers, t, r, &ctx)
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(|why| error(StatusCode::BAD_GATEWAY, "upstream_error", why))?;
        let per = t0.elapsed().as_secs_f64() / answers.len().max(1) as f64;
        for _ in &answers {
            state.metrics.request_seconds.observe(per);
        }
        drop(permit);
        return Ok(answers);
    }
    let st = Arc::clone(state);
    let joined = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let mut routes = routes.map(Vec::into_iter);
        texts
            .iter()
            .map(|t| {
                let t1 = Instant::now();
                let route = routes
                    .as_mut()
                    .and_then(Iterator::next)
                    .unwrap_or_else(|| cascade::route(&tiers, t, has_upstream, forced));
                let a = cascade::answer(&tiers, t, route, &st.ctx());
                st.metrics
                    .request_seconds
                    .observe(t1.elapsed().as_secs_f64());
                a
            })
            .collect::<Result<Vec<_>, String>>()
    })
    .await;
    match joined {
        Ok(Ok(answers)) => Ok(answers),
        Ok(Err(why)) => Err(error(StatusCode::BAD_GATEWAY, "upstream_error", why)),
        Err(e) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            e.to_string(),
        )),
    }
}

/// [`prelude`], then the texts of `{"text"}` or `{"texts"}`.
async fn texts_request(
    state: &Shared,
    req: Request,
) -> Result<(tokio::sync::OwnedSemaphorePermit, Texts), Response> {
    let (permit, v) = prelude(state, req).await?;
    Ok((permit, texts_of(&v, state.config.max_batch)?))
}

fn tier_headers(a: &Answer) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&a.tier) {
        h.insert("x-distill-tier", v);
    }
    if let Some(c) = a.confidence
        && let Ok(v) = HeaderValue::from_str(&format!("{c:.6}"))
    {
        h.insert("x-distill-confidence", v);
    }
    h
}

async fn classify(State(state): State<Shared>, req: Request) -> Response {
    let (
        permit,
        Texts {
            texts,
            single,
            forced,
        },
    ) = match texts_request(&state, req).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let ids = Served::ids(&state, &texts);
    let answers = match answer_all(&state, permit, texts, forced).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let mut response = if single {
        let a = &answers[0];
        (tier_headers(a), axum::Json(a)).into_response()
    } else {
        #[derive(serde::Serialize)]
        struct Results<'a> {
            results: &'a [Answer],
        }
        axum::Json(Results { results: &answers }).into_response()
    };
    response.extensions_mut().insert(Served::of(ids, &answers));
    response
}

async fn decision(State(state): State<Shared>, req: Request) -> Response {
    let (
        _permit,
        Texts {
            texts,
            single,
            forced,
        },
    ) = match texts_request(&state, req).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let mut served = Served::of(Served::ids(&state, &texts), &[]);
    let tiers = state.tiers();
    let has_upstream = state.upstream.is_some();
    let out: Vec<Value> = texts
        .iter()
        .map(|t| {
            let r = cascade::route(&tiers, t, has_upstream, forced);
            let tier = r
                .tier
                .map(|i| format!("local-{i}"))
                .unwrap_or_else(|| "upstream".into());
            served.tiers.push(tier.clone());
            json!({
                "tier": tier,
                "escalate": r.tier.is_none(),
                "reason": r.reason.map(cascade::Reason::as_str),
                "label": r.local.label,
                "confidence": r.local.confidence,
            })
        })
        .collect();
    let mut response = if single {
        axum::Json(out.into_iter().next().unwrap_or(Value::Null)).into_response()
    } else {
        axum::Json(json!({ "results": out })).into_response()
    };
    response.extensions_mut().insert(served);
    response
}

/// The text of the last user message (a string, or text parts).
fn last_user_text(v: &Value) -> Option<String> {
    let messages = v.get("messages")?.as_array()?;
    let m = messages.iter().rev().find(|m| m["role"] == "user")?;
    match &m["content"] {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter(|p| p["type"] == "text")
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        _ => None,
    }
}

async fn chat(State(state): State<Shared>, req: Request) -> Response {
    let (permit, v) = match prelude(&state, req).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(text) = last_user_text(&v) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "`messages` must hold a user message with text content",
        );
    };
    let stream = v["stream"] == json!(true);
    let forced = match forced_of(&v) {
        Ok(f) => f,
        Err(r) => return r,
    };
    // The tier is decided (and the upstream asked) before the first byte.
    let ids = Served::ids(&state, std::slice::from_ref(&text));
    let a = match answer_all(&state, permit, vec![text], forced).await {
        Ok(mut a) => a.remove(0),
        Err(r) => return r,
    };
    let served = Served::of(ids, std::slice::from_ref(&a));
    // Local answers carry the calibrated probabilities as the label
    // tokens' logprobs when asked (`distill teach` reads them as soft labels).
    let logprobs = (v["logprobs"] == json!(true) && a.tier != "upstream").then(|| {
        let k = v["top_logprobs"].as_u64().unwrap_or(0).min(20) as usize;
        let lp = |p: f64| p.max(1e-12).ln();
        json!({"content": [{
            "token": a.label.clone().unwrap_or_default(),
            "logprob": lp(a.confidence.unwrap_or(0.0)),
            "top_logprobs": a.top.iter().take(k).map(|(l, p)| json!({"token": l, "logprob": lp(*p)})).collect::<Vec<_>>(),
        }]})
    });
    let content = a
        .upstream_output
        .clone()
        .filter(|_| a.tier == "upstream")
        .or_else(|| a.label.clone())
        .unwrap_or_default();
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let id = format!(
        "chatcmpl-{}",
        &distill_core::hash::content_id(&format!("{created}{content}{}", a.tier))[..16]
    );
    let headers = tier_headers(&a);
    if !stream {
        let body = json!({
            "id": id, "object": "chat.completion", "created": created, "model": a.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "logprobs": logprobs, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            "distill": &a,
        });
        let mut r = (headers, axum::Json(body)).into_response();
        r.extensions_mut().insert(served);
        return r;
    }
    let chunk = |delta: Value, logprobs: Option<Value>, finish: Value| {
        json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": a.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
            "distill": &a,
        })
    };
    let mut sse = String::new();
    for event in [
        chunk(
            json!({"role": "assistant", "content": content}),
            logprobs,
            Value::Null,
        ),
        chunk(json!({}), None, json!("stop")),
    ] {
        sse.push_str("data: ");
        sse.push_str(&event.to_string());
        sse.push_str("\n\n");
    }
    sse.push_str("data: [DONE]\n\n");
    let mut headers = headers;
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    let mut r = (headers, sse).into_response();
    r.extensions_mut().insert(served);
    r
}

async fn models(State(state): State<Shared>) -> Response {
    let tiers = state.tiers();
    let mut data: Vec<Value> = tiers
        .tiers
        .iter()
        .map(|t| json!({"id": t.model_id(), "object": "model", "owned_by": "distill", "tier": "local"}))
        .collect();
    if let Some(up) = &state.upstream {
        data.push(json!({"id": up.model(), "object": "model", "owned_by": "upstream", "tier": "upstream"}));
    }
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

async fn health(State(state): State<Shared>) -> Response {
    if state.draining.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

async fn ready(State(state): State<Shared>) -> Response {
    let tiers = state.tiers();
    axum::Json(json!({
        "ready": true,
        "tiers": tiers.tiers.iter().map(|t| json!({"model": t.model_id(), "bundle_sha256": t.predictor.manifest.bundle_sha256})).collect::<Vec<_>>(),
        "upstream": state.upstream.as_ref().map(|u| u.model().to_string()),
    }))
    .into_response()
}

async fn metrics_text(State(state): State<Shared>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn reload(State(state): State<Shared>) -> Response {
    let Ok(_one) = state.reloading.try_lock() else {
        return error(
            StatusCode::CONFLICT,
            "reload_in_progress",
            "a reload is already running",
        );
    };
    let st = Arc::clone(&state);
    match tokio::task::spawn_blocking(move || st.reload()).await {
        Ok(Ok(n)) => axum::Json(json!({"reloaded": n})).into_response(),
        Ok(Err(e)) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "reload_failed",
            format!("{e}; the previous bundles keep serving"),
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            e.to_string(),
        ),
    }
}

/// Serve until SIGTERM or Ctrl-C: stop accepting, drain up to `drain-s`,
/// flush the escalation log. SIGHUP reloads the bundles. Prints the
/// listening address (`http://HOST:PORT`) on stdout once bound.
pub fn run(config: ServeConfig) -> Result<(), Error> {
    let io = |e: std::io::Error| Error::Io(e.to_string());
    let state = Arc::new(AppState::new(config)?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(io)?;
    rt.block_on(async move {
        let addr = format!("{}:{}", state.config.host, state.config.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|e| Error::Io(format!("binding {addr}: {e}")))?;
        let local = listener.local_addr().map_err(io)?;
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "http://{local}");
            let _ = out.flush();
        }
        eprintln!(
            "serving {} tier(s){} on http://{local}",
            state.tiers().tiers.len(),
            state
                .upstream
                .as_ref()
                .map(|u| format!(" + upstream {}", u.model()))
                .unwrap_or_default()
        );
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let signals = tokio::spawn(watch_signals(Arc::clone(&state), stop_tx));
        let app = router(Arc::clone(&state));
        let mut rx1 = stop_rx.clone();
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = rx1.wait_for(|v| *v).await;
        });
        let drain = std::time::Duration::from_secs(state.config.drain_s);
        let st = Arc::clone(&state);
        let drained = async move {
            // Drain: wait for requests in flight (every permit back), bounded.
            let all = st.config.max_concurrency as u32;
            let _ = tokio::time::timeout(drain, st.permits.acquire_many(all)).await;
        };
        tokio::select! {
            r = server => r.map_err(io)?,
            _ = async { let mut rx = stop_rx; let _ = rx.wait_for(|v| *v).await; drained.await } => {}
        }
        signals.abort();
        state.flush();
        eprintln!("stopped; escalation log flushed");
        Ok(())
    })
}

async fn watch_signals(state: Shared, stop: tokio::sync::watch::Sender<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = hup.recv() => {
                let st = Arc::clone(&state);
                match tokio::task::spawn_blocking(move || st.reload()).await {
                    Ok(Ok(n)) => eprintln!("SIGHUP: reloaded {n} tier(s)"),
                    Ok(Err(e)) => eprintln!("SIGHUP: reload failed ({e}); the previous bundles keep serving"),
                    Err(e) => eprintln!("SIGHUP: reload failed ({e})"),
                }
            }
        }
    }
    state.start_draining();
    // Wake both the server's graceful shutdown and the drain timer.
    let _ = stop.send(true);
}
