//! The upstream tier: an OpenAI-compatible endpoint, asked exactly as
//! `distill teach` asks it (same prompt, request body, retries with backoff
//! and `Retry-After`, answer parsing and soft labels from logprobs), so its
//! answers map onto the label set and its records are teacher-log records.

use distill_core::hash::{SplitMix64, sha256_hex};
use distill_core::teacher_log::{TeacherId, TeacherRecord};
use distill_core::types::{Example, Task};
use distill_teacher::collect::{Gauges, label_one, openai_params};
use distill_teacher::config::OpenAiSpec;
use distill_teacher::interpret::Interpreter;
use distill_teacher::openai::{Client, request_body};
use distill_teacher::prompt::Prompt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub struct Upstream {
    spec: OpenAiSpec,
    client: Client,
    prompt: Prompt,
    interp: Interpreter,
    pub teacher: TeacherId,
    gauges: Gauges,
    stop: AtomicBool,
    jitter: Mutex<SplitMix64>,
    seed: u64,
    breaker: Breaker,
}

/// The cooldown after repeated failures: `after` failures in a row (each
/// already retried with backoff) open it for `cooldown`. When it has passed,
/// exactly one call goes through as a probe (everyone else still gets the
/// cooldown answer): its success closes the breaker, its failure reopens it.
struct Breaker {
    after: u32,
    cooldown: Duration,
    failures: AtomicU32,
    until: Mutex<Option<Instant>>,
    probing: AtomicBool,
}

/// Whether a call may go to the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Closed,
    /// The one call after a cooldown.
    Probe,
    Open,
}

impl Breaker {
    fn admit(&self) -> Admit {
        let until = self.until.lock().unwrap_or_else(|p| p.into_inner());
        match *until {
            None => Admit::Closed,
            Some(t) if Instant::now() < t => Admit::Open,
            Some(_) => {
                if self
                    .probing
                    .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
                {
                    Admit::Probe
                } else {
                    Admit::Open
                }
            }
        }
    }

    /// Count one call's outcome; true when this failure opened the breaker.
    fn record(&self, failed: bool, admit: Admit) -> bool {
        let mut until = self.until.lock().unwrap_or_else(|p| p.into_inner());
        if !failed {
            self.failures.store(0, Ordering::SeqCst);
            if admit == Admit::Probe || until.is_some() {
                *until = None;
                self.probing.store(false, Ordering::SeqCst);
            }
            return false;
        }
        let n = self.failures.fetch_add(1, Ordering::SeqCst) + 1;
        if admit == Admit::Probe {
            // The probe failed: another cooldown.
            *until = Some(Instant::now() + self.cooldown);
            self.probing.store(false, Ordering::SeqCst);
            return true;
        }
        if self.after > 0 && n >= self.after && until.is_none() {
            *until = Some(Instant::now() + self.cooldown);
            return true;
        }
        false
    }
}

impl Upstream {
    /// Build the client (its key from `api-key-env`) and check the endpoint
    /// when `preflight` is on.
    pub fn new(
        spec: &OpenAiSpec,
        labels: &[String],
        seed: u64,
        cooldown_after: u32,
        cooldown_s: f64,
    ) -> Result<Self, crate::Error> {
        let err = |e: distill_teacher::Error| crate::Error::Upstream(e.to_string());
        let client = Client::new(spec).map_err(err)?;
        if spec.preflight {
            client.preflight(&spec.model).map_err(err)?;
        }
        let prompt = Prompt::new(spec, Task::Classify, labels, &[], &[], seed);
        let interp = Interpreter::new(Task::Classify, labels, &[], spec.answer);
        let mut params = openai_params(&client, spec, &prompt, Task::Classify, &[], labels, seed);
        params["via"] = serde_json::json!("distill serve");
        let params_hash = sha256_hex(
            serde_json::to_string(&params)
                .unwrap_or_default()
                .as_bytes(),
        )[..16]
            .to_string();
        Ok(Upstream {
            spec: spec.clone(),
            client,
            prompt,
            interp,
            teacher: TeacherId {
                kind: "openai".into(),
                model: spec.model.clone(),
                params_hash,
            },
            gauges: Gauges::default(),
            stop: AtomicBool::new(false),
            jitter: Mutex::new(SplitMix64(seed ^ 0x5e4e)),
            seed,
            breaker: Breaker {
                after: cooldown_after,
                cooldown: Duration::from_secs_f64(cooldown_s),
                failures: AtomicU32::new(0),
                until: Mutex::new(None),
                probing: AtomicBool::new(false),
            },
        })
    }

    pub fn model(&self) -> &str {
        &self.spec.model
    }

    /// Whether an escalation may be sent now: not while the upstream cools
    /// down after repeated failures, nor while it asked everyone to wait
    /// (`Retry-After`), nor once the server is draining.
    pub fn admit(&self) -> Admit {
        if self.stop.load(Ordering::SeqCst) || self.client.paused() {
            return Admit::Open;
        }
        self.breaker.admit()
    }

    /// Draining: calls in progress stop retrying, no new ones start.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Ask about one (already redacted) text; the record carries the answer
    /// or the error, and the attempts made. A failure other than an answer
    /// outside the label set counts towards the cooldown.
    pub fn ask(
        &self,
        id: &str,
        text: &str,
        admit: Admit,
        metrics: &crate::metrics::Metrics,
    ) -> TeacherRecord {
        let body = request_body(&self.spec, self.prompt.messages(text), None, self.seed);
        let ex = Example {
            id: id.to_string(),
            text: text.to_string(),
            label: None,
            labels: None,
            spans: None,
            split: None,
            source: "serve".into(),
            line: 0,
            source_id: None,
        };
        let mut jitter = {
            let mut j = self.jitter.lock().unwrap_or_else(|p| p.into_inner());
            let seed = j.next_u64();
            SplitMix64(seed)
        };
        let rec = label_one(
            &self.spec,
            &self.client,
            &self.interp,
            None,
            &self.teacher,
            self.client.url(),
            &body,
            &ex,
            &self.gauges,
            &self.stop,
            &mut jitter,
        );
        for kind in &rec.retried {
            metrics.upstream_attempt(kind);
        }
        metrics.upstream_attempt(match &rec.error {
            None => "ok",
            Some(e) => e.kind.as_str(),
        });
        let failed = rec.error.as_ref().is_some_and(|e| e.kind != "parse");
        if self.breaker.record(failed, admit) {
            metrics.cooldowns.inc();
            eprintln!(
                "warning: upstream failed {} times in a row ({}); not asking it for {:.0} s",
                self.breaker.after,
                rec.error.as_ref().map(|e| e.kind.as_str()).unwrap_or(""),
                self.breaker.cooldown.as_secs_f64()
            );
        }
        rec
    }
}
