//! A fault-injecting HTTP proxy between a teacher client and a real server.
//! Chat requests (`POST .../chat/completions`) get the fault scheduled for
//! their sequence number; everything else passes through.

use crate::http::{After, Request, bind_local, serve, wake, write_response};
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    Pass,
    /// 429 with `Retry-After: secs`.
    RateLimit {
        retry_after_s: u32,
    },
    /// 500 with a JSON error body.
    ServerError,
    /// Read the request, then say nothing for this long, then close.
    Hang {
        secs: f64,
    },
    /// Forward, then send the headers and half the body, then close.
    Truncate,
    /// 200, `application/json`, a body that is not JSON.
    InvalidJson,
    /// 200 with an HTML page (`text/html`).
    WrongContentType,
}

#[derive(Debug, Default)]
pub struct ProxyStats {
    /// Chat requests seen.
    pub chat_requests: AtomicU64,
    /// Chat requests answered with a fault.
    pub faults: AtomicU64,
    /// Chat requests passed to the upstream server.
    pub passed: AtomicU64,
}

pub struct FaultProxy {
    pub port: u16,
    pub stats: Arc<ProxyStats>,
    schedule: Arc<Mutex<Vec<Fault>>>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    /// Proxy to `upstream` (e.g. `http://127.0.0.1:8080`); chat request n gets `schedule[n % len]`.
    pub fn start(upstream: &str, schedule: Vec<Fault>) -> std::io::Result<Self> {
        let (listener, port) = bind_local()?;
        let stats = Arc::new(ProxyStats::default());
        let schedule = Arc::new(Mutex::new(schedule));
        let stop = Arc::new(AtomicBool::new(false));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .into();
        let upstream = upstream.trim_end_matches('/').to_string();
        let (st, sc) = (Arc::clone(&stats), Arc::clone(&schedule));
        serve(listener, Arc::clone(&stop), move |req, out| {
            let chat = req.method == "POST" && req.path.ends_with("/chat/completions");
            let fault = if chat {
                let n = st.chat_requests.fetch_add(1, Ordering::SeqCst);
                let s = sc.lock().unwrap_or_else(|p| p.into_inner());
                if s.is_empty() {
                    Fault::Pass
                } else {
                    s[n as usize % s.len()]
                }
            } else {
                Fault::Pass
            };
            if chat {
                match fault {
                    Fault::Pass => st.passed.fetch_add(1, Ordering::SeqCst),
                    _ => st.faults.fetch_add(1, Ordering::SeqCst),
                };
            }
            handle(&agent, &upstream, req, out, fault)
        });
        Ok(FaultProxy {
            port,
            stats,
            schedule,
            stop,
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    pub fn set_schedule(&self, schedule: Vec<Fault>) {
        *self.schedule.lock().unwrap_or_else(|p| p.into_inner()) = schedule;
    }

    pub fn chat_requests(&self) -> u64 {
        self.stats.chat_requests.load(Ordering::SeqCst)
    }

    pub fn faults(&self) -> u64 {
        self.stats.faults.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        wake(self.port);
    }
}

fn forward(agent: &ureq::Agent, upstream: &str, req: &Request) -> (u16, String, Vec<u8>) {
    let url = format!("{upstream}{}", req.path);
    let result = if req.method == "POST" {
        agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(&req.body[..])
    } else {
        agent.get(&url).call()
    };
    match result {
        Ok(mut r) => {
            let status = r.status().as_u16();
            let ct = r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/json")
                .to_string();
            let body = r
                .body_mut()
                .with_config()
                .limit(64 << 20)
                .read_to_vec()
                .unwrap_or_default();
            (status, ct, body)
        }
        Err(e) => (502, "text/plain".into(), e.to_string().into_bytes()),
    }
}

fn handle(
    agent: &ureq::Agent,
    upstream: &str,
    req: &Request,
    out: &mut TcpStream,
    fault: Fault,
) -> After {
    let sent = match fault {
        Fault::Pass => {
            let (status, ct, body) = forward(agent, upstream, req);
            write_response(out, status, &ct, &[], &body)
        }
        Fault::RateLimit { retry_after_s } => write_response(
            out,
            429,
            "application/json",
            &[("Retry-After", retry_after_s.to_string())],
            br#"{"error":{"message":"rate limited (injected)","type":"rate_limit"}}"#,
        ),
        Fault::ServerError => write_response(
            out,
            500,
            "application/json",
            &[],
            br#"{"error":{"message":"internal error (injected)"}}"#,
        ),
        Fault::Hang { secs } => {
            std::thread::sleep(Duration::from_secs_f64(secs));
            return After::Close;
        }
        Fault::Truncate => {
            let (status, ct, body) = forward(agent, upstream, req);
            let head = format!(
                "HTTP/1.1 {status} OK\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let _ = out
                .write_all(head.as_bytes())
                .and_then(|_| out.write_all(&body[..body.len() / 2]))
                .and_then(|_| out.flush());
            return After::Close;
        }
        Fault::InvalidJson => write_response(
            out,
            200,
            "application/json",
            &[],
            br#"{"choices": [{"message": {"content": "spa"#,
        ),
        Fault::WrongContentType => write_response(
            out,
            200,
            "text/html",
            &[],
            b"<html><body>502 Bad Gateway (injected)</body></html>",
        ),
    };
    if sent.is_err() {
        After::Close
    } else {
        After::KeepAlive
    }
}
