//! The teach config (`configs/teacher/*.toml`): which rows, which teacher, how
//! to call it.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TeachConfig {
    /// A dataset directory or a data config (`configs/data/*.toml`). Relative to this file.
    pub dataset: PathBuf,
    /// Optional curation config applied in memory (e.g. to split an unsplit dataset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curate: Option<PathBuf>,
    /// Output directory (`logs.jsonl`, `teacher.json`); `--out` overrides. Relative to the working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out: Option<PathBuf>,
    /// Splits to label (default: all rows).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub splits: Vec<String>,
    /// Label at most this many rows (in a seeded order), e.g. for a quick look.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Skip these rows: a file of ids (one per line), or a run directory
    /// (its `val_ids.txt`: the validation rows it carved out of train).
    /// Relative to this file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_ids: Option<PathBuf>,
    /// Seeds few-shot selection, the row order under `limit`, retry jitter and
    /// the `seed` sent to the server.
    #[serde(default = "d_seed")]
    pub seed: u64,
    /// What to ask for, when not the dataset's task: e.g. `extract` slots
    /// from a classify dataset that carries spans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<distill_core::types::Task>,
    pub teacher: TeacherSpec,
}

fn d_seed() -> u64 {
    17
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum TeacherSpec {
    /// Any OpenAI-compatible `/v1/chat/completions` server.
    Openai(OpenAiSpec),
    /// Production logs in OpenAI chat-completions form.
    Import(ImportSpec),
    /// A trained distill run (or its `model/` directory): exact probabilities.
    Local(LocalSpec),
}

impl TeacherSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            TeacherSpec::Openai(_) => "openai",
            TeacherSpec::Import(_) => "import",
            TeacherSpec::Local(_) => "local",
        }
    }
}

/// How the model is asked to name a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnswerFormat {
    /// The label's name.
    #[default]
    Label,
    /// The label's number in a numbered list (short answers for long label sets).
    Index,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OpenAiSpec {
    /// e.g. `https://api.openai.com/v1` or `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    pub model: String,
    /// Name of the environment variable holding the API key (never logged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// System message; `{labels}` and `{fields}` are filled in. A default per task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// User message; must contain `{text}`; may use `{labels}`, `{fields}`.
    #[serde(default = "d_template")]
    pub template: String,
    #[serde(default)]
    pub answer: AnswerFormat,
    /// Few-shot examples drawn deterministically from the training split (as chat turns).
    #[serde(default)]
    pub few_shot: usize,
    #[serde(default)]
    pub temperature: f64,
    #[serde(default = "d_max_tokens")]
    pub max_tokens: u32,
    /// Request logprobs for soft labels.
    #[serde(default = "d_true")]
    pub logprobs: bool,
    /// Alternatives per token (the API allows at most 20).
    #[serde(default = "d_top_logprobs")]
    pub top_logprobs: u32,
    /// Constrain extraction output with a JSON schema (`response_format`).
    #[serde(default = "d_true")]
    pub json_schema: bool,
    /// Fields to extract (`extract`); default: the dataset's span labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// Requests in flight at most.
    #[serde(default = "d_concurrency")]
    pub concurrency: usize,
    /// Per-request timeout, seconds.
    #[serde(default = "d_timeout")]
    pub timeout_s: f64,
    /// Retries after the first attempt (connection errors, timeouts, 429, 5xx, invalid responses).
    #[serde(default = "d_retries")]
    pub max_retries: u32,
    #[serde(default = "d_backoff_initial")]
    pub backoff_initial_ms: u64,
    #[serde(default = "d_backoff_max")]
    pub backoff_max_ms: u64,
    /// Content-addressed response cache; default `$DISTILL_CACHE` or `~/.cache/distill/teacher`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<PathBuf>,
    #[serde(default = "d_true")]
    pub cache: bool,
    /// Ask the server even when the cache has the answer; answers replace
    /// the cached ones (`distill teach --refresh-cache`).
    #[serde(default)]
    pub cache_refresh: bool,
    #[serde(default)]
    pub price: Price,
    /// Check the server and model (`GET /models`) before starting.
    #[serde(default = "d_true")]
    pub preflight: bool,
}

/// USD per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Price {
    #[serde(default)]
    pub prompt_per_1m: f64,
    #[serde(default)]
    pub completion_per_1m: f64,
}

impl Price {
    pub fn cost(&self, usage: &crate::record::Usage) -> f64 {
        (usage.prompt_tokens as f64 * self.prompt_per_1m
            + usage.completion_tokens as f64 * self.completion_per_1m)
            / 1e6
    }
}

/// How import lines are matched to dataset rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MatchBy {
    /// The last user message (or `text-regex`'s first group of it) equals the row's text.
    #[default]
    Text,
    /// A field of the line (`key`, dotted path) equals the row's source id or id.
    Key,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ImportSpec {
    /// JSONL of `{"request": {...}, "response": {...}}` (also OpenAI batch
    /// output lines, `{"custom_id", "response": {"body": {...}}}`). Relative to this file.
    pub path: PathBuf,
    #[serde(default, rename = "match")]
    pub match_by: MatchBy,
    /// Dotted path of the key field, e.g. `custom_id` or `request.metadata.ticket_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// A regex whose first group pulls the text out of the user message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_regex: Option<String>,
    #[serde(default)]
    pub answer: AnswerFormat,
    /// Model name when the lines do not carry one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default)]
    pub price: Price,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LocalSpec {
    /// A run directory (`experiments/<exp>/<run>`) or a `model/` directory. Relative to this file.
    pub run: PathBuf,
    #[serde(default)]
    pub device: distill_model::device::DeviceKind,
    #[serde(default = "d_batch")]
    pub batch_size: usize,
}

fn d_template() -> String {
    "{text}".into()
}
fn d_true() -> bool {
    true
}
fn d_max_tokens() -> u32 {
    16
}
fn d_top_logprobs() -> u32 {
    20
}
fn d_concurrency() -> usize {
    4
}
fn d_timeout() -> f64 {
    60.0
}
fn d_retries() -> u32 {
    5
}
fn d_backoff_initial() -> u64 {
    500
}
fn d_backoff_max() -> u64 {
    30_000
}
fn d_batch() -> usize {
    256
}

/// The longest per-request timeout accepted (seconds).
pub const MAX_TIMEOUT_S: f64 = 86_400.0;

impl OpenAiSpec {
    /// Config errors a user must fix before any work starts.
    pub fn validate(&self) -> Result<(), String> {
        if !self.template.contains("{text}") {
            return Err(format!(
                "teacher.template must contain `{{text}}` (where the row's text goes); got {:?}",
                self.template
            ));
        }
        for (key, text) in [
            ("template", Some(&self.template)),
            ("system", self.system.as_ref()),
        ] {
            if let Some(text) = text {
                crate::prompt::check_placeholders(text)
                    .map_err(|m| format!("teacher.{key}: {m}"))?;
            }
        }
        if self.top_logprobs > 20 {
            return Err(format!(
                "teacher.top-logprobs = {}: the API allows at most 20",
                self.top_logprobs
            ));
        }
        if self.concurrency == 0 {
            return Err("teacher.concurrency must be at least 1".into());
        }
        // `inf` and huge values would overflow the client's timer (a panic).
        if !(self.timeout_s.is_finite() && self.timeout_s > 0.0 && self.timeout_s <= MAX_TIMEOUT_S)
        {
            return Err(format!(
                "teacher.timeout-s = {}: expected a finite number of seconds > 0 and at most {MAX_TIMEOUT_S} (one day)",
                self.timeout_s
            ));
        }
        for (key, value) in [
            ("temperature", self.temperature),
            ("price.prompt-per-1m", self.price.prompt_per_1m),
            ("price.completion-per-1m", self.price.completion_per_1m),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(format!(
                    "teacher.{key} = {value}: expected a finite number >= 0"
                ));
            }
        }
        // Checked before anything else reads the URL: it is stored in
        // teacher.json and printed in errors, so it must not carry a key.
        if let Some(why) = crate::redact::url_credentials(&self.base_url) {
            return Err(format!(
                "teacher.base-url = {:?}: {why}; the URL is written to teacher.json and printed in errors\nhint: put the key in an environment variable and name it with teacher.api-key-env (it is sent as `Authorization: Bearer`, never stored)",
                crate::redact::display_url(&self.base_url)
            ));
        }
        if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://")) {
            return Err(format!(
                "teacher.base-url = {:?}: expected http://host[:port]/v1 or https://...",
                self.base_url
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(sets: &str) -> OpenAiSpec {
        toml::from_str(&format!(
            "base-url = \"http://127.0.0.1:8080/v1\"\nmodel = \"m\"\n{sets}"
        ))
        .unwrap()
    }

    #[test]
    fn infinite_or_huge_timeouts_are_config_errors() {
        assert!(spec("").validate().is_ok());
        for bad in ["inf", "-inf", "nan", "0.0", "-1.0", "1e300"] {
            let err = spec(&format!("timeout-s = {bad}")).validate().unwrap_err();
            assert!(err.contains("teacher.timeout-s"), "{bad}: {err}");
            assert!(err.contains("finite number of seconds"), "{bad}: {err}");
        }
        let err = spec("temperature = nan").validate().unwrap_err();
        assert!(err.contains("teacher.temperature"), "{err}");
    }

    #[test]
    fn credentials_in_the_base_url_are_refused_without_repeating_them() {
        for url in [
            "https://user:sk-SECRET-1@api.example.com/v1",
            "https://api.example.com/v1?api_key=sk-SECRET-1",
        ] {
            let mut s = spec("");
            s.base_url = url.into();
            let err = s.validate().unwrap_err();
            assert!(err.contains("api-key-env"), "{err}");
            assert!(!err.contains("sk-SECRET-1"), "{err}");
        }
    }
}
