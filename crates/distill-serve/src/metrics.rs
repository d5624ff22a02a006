//! Prometheus metrics (`GET /metrics`, OpenMetrics text): requests by tier
//! and outcome, escalations by reason, upstream attempts by status, and
//! histograms of local inference, upstream and total time with buckets from
//! 0.1 ms (the local tier answers in microseconds), plus the local share.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};

type Labels = Vec<(String, String)>;

pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    escalations: Family<Labels, Counter>,
    upstream_attempts: Family<Labels, Counter>,
    pub local_seconds: Histogram,
    pub upstream_seconds: Histogram,
    pub request_seconds: Histogram,
    local_share: Gauge<f64, AtomicU64>,
    /// Times the upstream went into cooldown.
    pub cooldowns: Counter,
    /// Escalations answered without asking the upstream (it was cooling down).
    pub cooldown_skips: Counter,
    /// Escalations answered without asking the upstream (every upstream slot busy).
    pub upstream_saturated: Counter,
    answered_total: AtomicU64,
    answered_local: AtomicU64,
}

fn buckets() -> impl Iterator<Item = f64> {
    // 0.1 ms, 0.2 ms, ... ~52 s.
    exponential_buckets(1e-4, 2.0, 20)
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("distill_serve");
        let requests = Family::<Labels, Counter>::default();
        let escalations = Family::<Labels, Counter>::default();
        let upstream_attempts = Family::<Labels, Counter>::default();
        let local_seconds = Histogram::new(buckets());
        let upstream_seconds = Histogram::new(buckets());
        let request_seconds = Histogram::new(buckets());
        let local_share = Gauge::<f64, AtomicU64>::default();
        registry.register("requests", "Answers by tier and outcome", requests.clone());
        registry.register("escalations", "Escalations by reason", escalations.clone());
        registry.register(
            "upstream_attempts",
            "Upstream attempts by status (retries included)",
            upstream_attempts.clone(),
        );
        registry.register(
            "local_inference_seconds",
            "Time in the local tiers",
            local_seconds.clone(),
        );
        registry.register(
            "upstream_seconds",
            "Time waiting for the upstream",
            upstream_seconds.clone(),
        );
        registry.register(
            "request_seconds",
            "Total time per answer",
            request_seconds.clone(),
        );
        registry.register(
            "local_share",
            "Share of answers given locally",
            local_share.clone(),
        );
        let cooldowns = Counter::default();
        let cooldown_skips = Counter::default();
        let upstream_saturated = Counter::default();
        registry.register(
            "upstream_saturated",
            "Escalations not sent upstream because max-upstream-concurrency were waiting on it",
            upstream_saturated.clone(),
        );
        registry.register(
            "upstream_cooldowns",
            "Times the upstream went into cooldown after repeated failures",
            cooldowns.clone(),
        );
        registry.register(
            "upstream_cooldown_skips",
            "Escalations not sent upstream because it was cooling down",
            cooldown_skips.clone(),
        );
        Metrics {
            registry,
            cooldowns,
            cooldown_skips,
            upstream_saturated,
            requests,
            escalations,
            upstream_attempts,
            local_seconds,
            upstream_seconds,
            request_seconds,
            local_share,
            answered_total: AtomicU64::new(0),
            answered_local: AtomicU64::new(0),
        }
    }

    pub fn answered(&self, tier: &str, outcome: &str) {
        self.requests
            .get_or_create(&vec![
                ("tier".into(), tier.into()),
                ("outcome".into(), outcome.into()),
            ])
            .inc();
        let total = self.answered_total.fetch_add(1, Ordering::Relaxed) + 1;
        let local = if tier.starts_with("local") {
            self.answered_local.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            self.answered_local.load(Ordering::Relaxed)
        };
        self.local_share.set(local as f64 / total as f64);
    }

    pub fn escalation(&self, reason: &str) {
        self.escalations
            .get_or_create(&vec![("reason".into(), reason.into())])
            .inc();
    }

    pub fn upstream_attempt(&self, status: &str) {
        self.upstream_attempts
            .get_or_create(&vec![("status".into(), status.into())])
            .inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
