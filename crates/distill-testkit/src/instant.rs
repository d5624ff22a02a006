//! An OpenAI-compatible endpoint that answers at once with a fixed one-token
//! completion (with logprobs), to measure the client's own overhead.

use crate::http::{After, bind_local, serve, wake, write_response};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub struct InstantServer {
    pub port: u16,
    pub requests: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

/// The completion every chat request gets.
pub fn completion(label: &str, alternative: &str) -> Vec<u8> {
    serde_json::json!({
        "id": "instant",
        "object": "chat.completion",
        "model": "instant",
        "choices": [{
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": label},
            "logprobs": {"content": [{
                "token": label, "logprob": -0.105,
                "top_logprobs": [
                    {"token": label, "logprob": -0.105},
                    {"token": alternative, "logprob": -2.303}
                ]
            }]}
        }],
        "usage": {"prompt_tokens": 40, "completion_tokens": 1, "total_tokens": 41}
    })
    .to_string()
    .into_bytes()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl InstantServer {
    pub fn start(port: Option<u16>, label: &str, alternative: &str) -> std::io::Result<Self> {
        Self::start_model(port, label, alternative, serde_json::Value::Null)
    }

    /// [`InstantServer::start`], with `meta` in its `/models` entry (as
    /// llama-server reports the loaded weights there): a different model
    /// behind the same URL and model name.
    pub fn start_model(
        port: Option<u16>,
        label: &str,
        alternative: &str,
        meta: serde_json::Value,
    ) -> std::io::Result<Self> {
        let (listener, port) = match port {
            Some(p) => (std::net::TcpListener::bind(("127.0.0.1", p))?, p),
            None => bind_local()?,
        };
        let body = completion(label, alternative);
        let mut entry = serde_json::json!({"id": "instant", "object": "model", "created": now()});
        if !meta.is_null() {
            entry["meta"] = meta;
        }
        let models = serde_json::json!({"object": "list", "data": [entry]})
            .to_string()
            .into_bytes();
        let requests = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let r = Arc::clone(&requests);
        serve(listener, Arc::clone(&stop), move |req, out| {
            let payload = if req.path.ends_with("/models") {
                &models
            } else {
                r.fetch_add(1, Ordering::Relaxed);
                &body
            };
            match write_response(out, 200, "application/json", &[], payload) {
                Ok(()) => After::KeepAlive,
                Err(_) => After::Close,
            }
        });
        Ok(InstantServer {
            port,
            requests,
            stop,
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }
}

impl Drop for InstantServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        wake(self.port);
    }
}
