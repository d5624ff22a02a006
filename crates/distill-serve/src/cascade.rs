//! The cascade: local tiers (bundles through `BundlePredictor`, the one
//! escalation rule) in order, then the upstream teacher. Everything here is
//! synchronous; the server runs it on blocking threads.

use crate::config::{ServeConfig, TierConfig};
use crate::upstream::Upstream;
use distill_core::hash::content_id;
use distill_core::text::Preprocess;
use distill_export::{BundlePredictor, Prediction};
use distill_model::device::DeviceKind;
use std::path::PathBuf;
use std::time::Instant;

/// One loaded local tier.
pub struct Tier {
    pub name: String,
    pub path: PathBuf,
    pub predictor: BundlePredictor,
}

impl Tier {
    fn load(config: &ServeConfig, index: usize, t: &TierConfig) -> Result<Tier, crate::Error> {
        let path = distill_core::run_layout::resolve_latest(&config.resolve(&t.bundle));
        let predictor = BundlePredictor::load(&path, DeviceKind::Cpu)
            .and_then(|p| p.with_always_escalate(t.escalate_label.as_deref()))
            .map_err(|e| crate::Error::Bundle(format!("tiers[{index}]: {e}")))?
            .with_threshold(t.threshold)
            .with_top_k(3);
        let m = &predictor.manifest;
        let name = format!("{}-{}", m.lineage.experiment, m.model_kind);
        Ok(Tier {
            name,
            path,
            predictor,
        })
    }

    /// The model id clients see: experiment, kind and the bundle's seal.
    pub fn model_id(&self) -> String {
        format!(
            "{}@{}",
            self.name,
            &self.predictor.manifest.bundle_sha256
                [..12.min(self.predictor.manifest.bundle_sha256.len())]
        )
    }
}

/// Every local tier, loaded and verified.
pub struct Tiers {
    pub tiers: Vec<Tier>,
}

impl Tiers {
    pub fn load(config: &ServeConfig) -> Result<Tiers, crate::Error> {
        let tiers = config
            .tiers
            .iter()
            .enumerate()
            .map(|(i, t)| Tier::load(config, i, t))
            .collect::<Result<Vec<_>, _>>()?;
        let labels = tiers[0].predictor.labels().to_vec();
        for t in &tiers[1..] {
            if t.predictor.labels() != labels.as_slice() {
                return Err(crate::Error::Bundle(format!(
                    "{}: its label set differs from the first tier's; every tier must answer over the same labels",
                    t.path.display()
                )));
            }
        }
        Ok(Tiers { tiers })
    }

    pub fn labels(&self) -> &[String] {
        self.tiers[0].predictor.labels()
    }

    /// The first tier's preprocessing: what leaves the device is redacted by it.
    pub fn preprocess(&self) -> &Preprocess {
        &self.tiers[0].predictor.manifest.preprocess
    }
}

/// Why a request left a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    LowConfidence,
    OutOfScope,
    /// The client asked for the upstream (`"escalate": true`).
    Forced,
}

impl serde::Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::LowConfidence => "low-confidence",
            Reason::OutOfScope => "out-of-scope",
            Reason::Forced => "forced",
        }
    }
}

/// Where the cascade would answer, and the local answers on the way.
#[derive(Clone)]
pub struct Route {
    /// Index of the answering tier; `None`: the upstream.
    pub tier: Option<usize>,
    /// The last local prediction (the answering tier's, or the last tier's).
    pub local: Prediction,
    pub local_tier: usize,
    pub reason: Option<Reason>,
    pub local_seconds: f64,
}

/// Walk the local tiers; stop at the first that does not escalate. With
/// `forced` (and an upstream), the upstream answers whatever the tiers say;
/// their answer stays at hand for `on-upstream-error = "local"`.
pub fn route(tiers: &Tiers, text: &str, has_upstream: bool, forced: bool) -> Route {
    let mut r = walk(tiers, text, has_upstream);
    if forced && has_upstream && r.tier.is_some() {
        r.tier = None;
        r.reason = Some(Reason::Forced);
    }
    r
}

fn walk(tiers: &Tiers, text: &str, has_upstream: bool) -> Route {
    let t0 = Instant::now();
    let mut last = None;
    let mut reason = None;
    for (i, tier) in tiers.tiers.iter().enumerate() {
        let p = tier
            .predictor
            .predict(&[text], 1)
            .pop()
            .unwrap_or_else(empty_prediction);
        let escalate = p.escalate == Some(true);
        if escalate {
            let oos = tier
                .predictor
                .rule()
                .always_escalate
                .zip(p.label.as_ref())
                .is_some_and(|(o, l)| tier.predictor.labels().get(o) == Some(l));
            reason = Some(if oos {
                Reason::OutOfScope
            } else {
                Reason::LowConfidence
            });
        }
        let last_tier = i + 1 == tiers.tiers.len();
        if !escalate || (last_tier && !has_upstream) {
            return Route {
                tier: Some(i),
                local: p,
                local_tier: i,
                reason: escalate.then_some(reason).flatten(),
                local_seconds: t0.elapsed().as_secs_f64(),
            };
        }
        last = Some((i, p));
    }
    let (i, p) = last.unwrap_or_else(|| (0, empty_prediction()));
    Route {
        tier: None,
        local: p,
        local_tier: i,
        reason,
        local_seconds: t0.elapsed().as_secs_f64(),
    }
}

fn empty_prediction() -> Prediction {
    Prediction {
        label: None,
        confidence: None,
        top: Vec::new(),
        labels: None,
        probs: None,
        escalate: Some(true),
        truncated: false,
    }
}

/// The answer a client gets (serialised as the `/v1/classify` body and the
/// chat completion's `distill` object).
#[derive(serde::Serialize)]
pub struct Answer {
    pub label: Option<String>,
    pub confidence: Option<f64>,
    pub top: Vec<(String, f64)>,
    pub tier: String,
    pub escalated: bool,
    pub reason: Option<Reason>,
    pub threshold: Option<f64>,
    pub model: String,
    pub bundle_sha256: Option<String>,
    /// The upstream failed and the local answer was served instead.
    pub degraded: bool,
    /// The upstream's raw answer (chat completions forward it).
    #[serde(skip)]
    pub upstream_output: Option<String>,
}

impl Answer {
    pub fn local(tiers: &Tiers, route: &Route, escalated: bool, degraded: bool) -> Answer {
        let tier = &tiers.tiers[route.local_tier];
        Answer {
            tier: format!("local-{}", route.local_tier),
            escalated,
            label: route.local.label.clone(),
            confidence: route.local.confidence,
            top: route.local.top.clone(),
            threshold: tier.predictor.rule().threshold,
            model: tier.model_id(),
            bundle_sha256: Some(tier.predictor.manifest.bundle_sha256.clone()),
            reason: route.reason,
            degraded,
            upstream_output: None,
        }
    }
}

/// Answer one text whose local route is known: locally (never blocks), or
/// from the upstream (blocks while it is asked).
/// What answering needs besides the text: the upstream and its slots, the
/// upstream-error policy, metrics and the escalation log.
pub struct Ctx<'a> {
    pub upstream: Option<&'a Upstream>,
    /// Escalations allowed to wait on the upstream at once.
    pub upstream_slots: Option<&'a tokio::sync::Semaphore>,
    pub max_upstream: usize,
    pub on_error_local: bool,
    pub metrics: &'a crate::metrics::Metrics,
    pub log: Option<&'a crate::log::EscalationLog>,
}

pub fn answer(tiers: &Tiers, text: &str, route: Route, ctx: &Ctx) -> Result<Answer, String> {
    let (upstream, on_error_local, metrics, log) =
        (ctx.upstream, ctx.on_error_local, ctx.metrics, ctx.log);
    metrics.local_seconds.observe(route.local_seconds);
    if let Some(r) = route.reason {
        metrics.escalation(r.as_str());
    }
    if route.tier.is_some() {
        let a = Answer::local(tiers, &route, route.reason.is_some(), false);
        metrics.answered(&a.tier, "ok");
        return Ok(a);
    }
    let Some(up) = upstream else {
        let a = Answer::local(tiers, &route, true, false);
        metrics.answered(&a.tier, "ok");
        return Ok(a);
    };
    // The upstream failed or is cooling down: the local answer flagged
    // `degraded`, or an error (502).
    let failed = |why: String| {
        if on_error_local {
            metrics.answered(&format!("local-{}", route.local_tier), "degraded");
            Ok(Answer::local(tiers, &route, true, true))
        } else {
            metrics.answered("upstream", "error");
            Err(why)
        }
    };
    let admit = up.admit();
    if admit == crate::upstream::Admit::Open {
        metrics.cooldown_skips.inc();
        return failed(
            "the upstream is cooling down (repeated failures, a Retry-After pause, or the server is draining)"
                .into(),
        );
    }
    // At most `max-upstream-concurrency` escalations wait on the upstream;
    // beyond that they are answered at once, so a hung upstream never
    // starves the local tiers of request slots.
    let Some(_slot) = ctx.upstream_slots.and_then(|s| s.try_acquire().ok()) else {
        metrics.upstream_saturated.inc();
        return failed(format!(
            "{} escalations are already waiting on the upstream (max-upstream-concurrency)",
            ctx.max_upstream
        ));
    };
    // What leaves the device is redacted by the model's own preprocessing.
    let clean = tiers.preprocess().apply(text).into_owned();
    let id = content_id(&clean);
    let t0 = Instant::now();
    let rec = up.ask(&id, &clean, admit, metrics);
    metrics.upstream_seconds.observe(t0.elapsed().as_secs_f64());
    if let Some(log) = log
        && let Err(e) = log.append(&rec, &clean)
    {
        eprintln!("error: escalation log: {e}");
    }
    match (
        &rec.error,
        rec.label
            .clone()
            .or_else(|| rec.top().map(|t| t.0.to_string())),
    ) {
        (None, Some(label)) => {
            metrics.answered("upstream", "ok");
            let confidence = rec.probs.as_ref().and_then(|p| p.get(&label).copied());
            let mut top: Vec<(String, f64)> = rec
                .probs
                .as_ref()
                .map(|p| p.iter().map(|(l, v)| (l.clone(), *v)).collect())
                .unwrap_or_default();
            top.sort_by(|a, b| b.1.total_cmp(&a.1));
            top.truncate(3);
            Ok(Answer {
                tier: "upstream".into(),
                escalated: true,
                label: Some(label),
                confidence,
                top,
                threshold: None,
                model: up.model().to_string(),
                bundle_sha256: None,
                reason: route.reason,
                degraded: false,
                upstream_output: rec.output.clone(),
            })
        }
        (err, _) => failed(
            err.as_ref()
                .map(|e| format!("{}: {}", e.kind, e.message))
                .unwrap_or_else(|| "the upstream's answer is not one of the labels".into()),
        ),
    }
}
