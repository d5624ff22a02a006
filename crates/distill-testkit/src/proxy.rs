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
    /// Wait this long, then forward (a slow but healthy upstream).
    Delay {
        secs: f64,
    },
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

impl Fault {
    /// The names the `distill-testkit proxy` command accepts.
    pub const NAMES: [&'static str; 7] = [
        "pass",
        "429",
        "500",
        "hang",
        "truncate",
        "invalid-json",
        "wrong-content-type",
    ];

    /// A fault by name (`429` waits `retry_after_s`, `hang` stays silent `hang_s`).
    pub fn parse(name: &str, retry_after_s: u32, hang_s: f64) -> Option<Fault> {
        Some(match name.trim() {
            "pass" => Fault::Pass,
            "429" | "rate-limit" => Fault::RateLimit { retry_after_s },
            "500" | "server-error" => Fault::ServerError,
            "hang" => Fault::Hang { secs: hang_s },
            "truncate" => Fault::Truncate,
            "invalid-json" => Fault::InvalidJson,
            "wrong-content-type" => Fault::WrongContentType,
            _ => return None,
        })
    }
}

/// A seeded schedule of `len` chat requests: each is a fault with
/// probability `fail_rate` (drawn evenly from `faults`), else a pass.
/// The same seed gives the same schedule.
pub fn random_schedule(fail_rate: f64, faults: &[Fault], seed: u64, len: usize) -> Vec<Fault> {
    let mut state = seed;
    let mut next = move || {
        // SplitMix64.
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (0..len)
        .map(|_| {
            let u = (next() >> 11) as f64 / (1u64 << 53) as f64;
            if faults.is_empty() || u >= fail_rate {
                Fault::Pass
            } else {
                faults[(next() % faults.len() as u64) as usize]
            }
        })
        .collect()
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
        Self::start_on(None, upstream, schedule)
    }

    /// [`FaultProxy::start`] on 127.0.0.1:`port` (a free port when `None`).
    pub fn start_on(
        port: Option<u16>,
        upstream: &str,
        schedule: Vec<Fault>,
    ) -> std::io::Result<Self> {
        let (listener, port) = match port {
            Some(p) => (std::net::TcpListener::bind(("127.0.0.1", p))?, p),
            None => bind_local()?,
        };
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
                    Fault::Pass | Fault::Delay { .. } => st.passed.fetch_add(1, Ordering::SeqCst),
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
    // The client's credentials go through (a real server may require them).
    let auth = req.header("authorization");
    let result = if req.method == "POST" {
        let mut r = agent.post(&url).header("Content-Type", "application/json");
        if let Some(a) = auth {
            r = r.header("Authorization", a);
        }
        r.send(&req.body[..])
    } else {
        let mut r = agent.get(&url);
        if let Some(a) = auth {
            r = r.header("Authorization", a);
        }
        r.call()
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
        Fault::Delay { secs } => {
            std::thread::sleep(Duration::from_secs_f64(secs));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_schedules_are_seeded_and_near_the_rate() {
        let faults = [Fault::ServerError, Fault::InvalidJson];
        let a = random_schedule(0.3, &faults, 7, 10_000);
        assert_eq!(a, random_schedule(0.3, &faults, 7, 10_000));
        assert_ne!(a, random_schedule(0.3, &faults, 8, 10_000));
        let failed = a.iter().filter(|f| **f != Fault::Pass).count();
        assert!((2_700..3_300).contains(&failed), "{failed}");
        assert!(a.contains(&Fault::ServerError) && a.contains(&Fault::InvalidJson));
        assert!(
            random_schedule(0.0, &faults, 7, 100)
                .iter()
                .all(|f| *f == Fault::Pass)
        );
        for name in Fault::NAMES {
            assert!(Fault::parse(name, 1, 1.0).is_some(), "{name}");
        }
    }
}
