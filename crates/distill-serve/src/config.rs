//! The serve config (`distill serve CONFIG`): TOML, strict like every other
//! config (unknown keys rejected with a suggestion, `--set` overrides).
//!
//! ```toml
//! host = "127.0.0.1"
//! port = 8700
//!
//! [[tiers]]                      # in order: the first confident tier answers
//! bundle = "experiments/banking77-bag/latest/bundles/burn-int8"
//! # threshold = 0.8               # default: the bundle's certified one
//! # escalate-label = "oos"        # this label always escalates
//!
//! [upstream]                     # the big model: any OpenAI-compatible endpoint
//! base-url = "http://127.0.0.1:8080/v1"
//! model = "smollm2-135m"
//!
//! [log]                          # escalations become teacher data
//! dir = "teachers/escalations"
//! ```

use distill_core::config::ConfigSource;
use distill_teacher::config::OpenAiSpec;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeConfig {
    #[serde(default = "d_host")]
    pub host: String,
    #[serde(default = "d_port")]
    pub port: u16,
    /// Local tiers, cheapest first.
    pub tiers: Vec<TierConfig>,
    /// The last tier: an OpenAI-compatible endpoint (as `distill teach`'s `[teacher]`).
    #[serde(default)]
    pub upstream: Option<OpenAiSpec>,
    /// What to answer when the upstream fails: `local` serves the last
    /// tier's answer flagged `degraded`, `error` answers 502.
    #[serde(default)]
    pub on_upstream_error: OnUpstreamError,
    #[serde(default)]
    pub log: Option<LogConfig>,
    /// Requests in progress at most; beyond it, 429.
    #[serde(default = "d_max_concurrency")]
    pub max_concurrency: usize,
    /// Escalations waiting on the upstream at most; beyond it they are
    /// answered at once as `on-upstream-error` says (a hung upstream never
    /// takes every request slot from the local tiers).
    #[serde(default = "d_max_upstream")]
    pub max_upstream_concurrency: usize,
    /// Largest request body; beyond it, 413.
    #[serde(default = "d_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Texts per `/v1/classify` request at most.
    #[serde(default = "d_max_batch")]
    pub max_batch: usize,
    /// Seconds a draining server waits for requests in flight.
    #[serde(default = "d_drain_s")]
    pub drain_s: u64,
    /// Seconds a request may take in all (the upstream's retries included);
    /// beyond it, 504.
    #[serde(default = "d_deadline_s")]
    pub deadline_s: f64,
    /// After this many upstream failures in a row, stop asking it for
    /// `cooldown-s` seconds (escalations are then answered as
    /// `on-upstream-error` says, at once). 0 turns the cooldown off.
    #[serde(default = "d_cooldown_after")]
    pub cooldown_after: u32,
    #[serde(default = "d_cooldown_s")]
    pub cooldown_s: f64,
    /// The environment variable holding a bearer token that the inference
    /// (`/v1/*`) and admin (`/admin/*`) routes require. `/health`, `/ready`
    /// and `/metrics` stay open (probes and scrapers).
    #[serde(default)]
    pub auth_token_env: Option<String>,
    /// One JSON line per request on stderr (request id, route, status, tier,
    /// content ids of the texts, never the texts).
    #[serde(default = "yes")]
    pub request_log: bool,
    /// Directory of the config file (tier bundles and the log resolve from here).
    #[serde(skip)]
    pub base: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TierConfig {
    /// A burn bundle (`distill export RUN --format burn`); `latest` resolves.
    pub bundle: PathBuf,
    /// Escalate below this calibrated confidence (default: the bundle's certified threshold).
    #[serde(default)]
    pub threshold: Option<f64>,
    /// A label that always escalates (the out-of-scope label).
    #[serde(default)]
    pub escalate_label: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnUpstreamError {
    #[default]
    Local,
    Error,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LogConfig {
    /// A teacher-log directory (`logs.jsonl` in the `distill teach` format,
    /// plus `texts.jsonl` with the texts when `log-texts` is on).
    pub dir: PathBuf,
    /// Keep the (preprocessed, PII-redacted) texts of escalated requests in
    /// `texts.jsonl`, so they can be imported and trained on; off keeps only
    /// their content hashes (the record ids).
    #[serde(default = "yes")]
    pub log_texts: bool,
}

fn d_host() -> String {
    "127.0.0.1".into()
}
fn d_port() -> u16 {
    8700
}
fn d_max_concurrency() -> usize {
    256
}
fn d_max_upstream() -> usize {
    64
}
fn d_max_body_bytes() -> usize {
    1 << 20
}
fn d_max_batch() -> usize {
    256
}
fn d_drain_s() -> u64 {
    30
}
fn d_deadline_s() -> f64 {
    60.0
}
fn d_cooldown_after() -> u32 {
    5
}
fn d_cooldown_s() -> f64 {
    30.0
}
fn yes() -> bool {
    true
}

impl ServeConfig {
    pub fn load(path: &Path, sets: &[String]) -> Result<Self, crate::Error> {
        let mut source = ConfigSource::load(path)?;
        source.apply_overrides(sets)?;
        let mut config: ServeConfig = source.deserialize()?;
        config.base = source.base_dir();
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), crate::Error> {
        let bad = |m: String| Err(crate::Error::Config(m));
        if self.tiers.is_empty() {
            return bad("at least one [[tiers]] entry (a bundle) is needed".into());
        }
        for (i, t) in self.tiers.iter().enumerate() {
            if let Some(th) = t.threshold
                && !(th.is_finite() && (0.0..=1.0).contains(&th))
            {
                return bad(format!("tiers[{i}].threshold {th} must be in [0, 1]"));
            }
        }
        if let Some(u) = &self.upstream {
            u.validate().map_err(crate::Error::Config)?;
        }
        if self.max_concurrency == 0
            || self.max_body_bytes == 0
            || self.max_batch == 0
            || self.max_upstream_concurrency == 0
        {
            return bad(
                "max-concurrency, max-upstream-concurrency, max-body-bytes and max-batch must be > 0"
                    .into(),
            );
        }
        if self.max_concurrency > (u32::MAX >> 3) as usize {
            return bad(format!(
                "max-concurrency {} is too large",
                self.max_concurrency
            ));
        }
        for (key, v) in [
            ("deadline-s", self.deadline_s),
            ("cooldown-s", self.cooldown_s),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= 86_400.0) {
                return bad(format!("{key} {v} must be in (0, 86400]"));
            }
        }
        if let Some(var) = &self.auth_token_env {
            match std::env::var(var) {
                Ok(t) if t.len() >= 16 => {}
                Ok(_) => {
                    return bad(format!(
                        "auth-token-env: the token in ${var} is shorter than 16 characters"
                    ));
                }
                Err(_) => return bad(format!("auth-token-env: ${var} is not set")),
            }
        }
        Ok(())
    }

    /// A path from the config, relative to its file.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        distill_core::run_layout::resolve(&self.base, p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_loads_and_bad_values_are_refused() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/serve/sms_spam.toml");
        let c = ServeConfig::load(&path, &[]).unwrap();
        assert_eq!(c.tiers.len(), 1);
        assert_eq!(c.on_upstream_error, OnUpstreamError::Local);
        assert!(c.log.as_ref().unwrap().log_texts);
        let err = ServeConfig::load(&path, &["tiers.0.threshold=1.5".into()]).unwrap_err();
        assert!(err.to_string().contains("tiers[0].threshold"), "{err}");
        let err = ServeConfig::load(&path, &["tiers.0.treshold=0.5".into()]).unwrap_err();
        assert!(err.to_string().contains("did you mean"), "{err}");
    }
}
