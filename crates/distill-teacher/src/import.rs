//! Production logs as teacher: OpenAI chat-completions request/response
//! pairs, one per line, matched to dataset rows by a key or by the user
//! message text. Lines that match no row are written to `unmatched.jsonl`
//! with the reason, and counted.
//!
//! A teacher that is a classifier or another system need not fake chat
//! logprobs: a line may instead be a plain soft label, `{"id" | "text",
//! "probs": {label: p}}`, or a hard one, `{"id" | "text", "label": ".."}`
//! (`"labels": [..]` for multi-label). `id` matches a row's id or source id,
//! `text` its text (whitespace collapsed). `classify` probabilities are
//! renormalised over the label set; `multilabel` ones are independent, each
//! in [0, 1]. A label outside the label set, a negative or non-finite
//! probability, or an all-zero distribution rejects the line (with the
//! reason in `unmatched.jsonl`).

use crate::collect::{Progress, resolve};
use crate::config::{ImportSpec, MatchBy};
use crate::error::{Error, Result};
use crate::interpret::Interpreter;
use crate::openai::Completion;
use crate::record::{LogWriter, RunStats, TeacherId, TeacherRecord};
use distill_core::types::{Example, Task};
use rustc_hash::FxHashMap;
use serde_json::Value;
use std::io::BufRead;
use std::path::{Path, PathBuf};

pub const UNMATCHED_FILE: &str = "unmatched.jsonl";

pub struct Importer {
    path: PathBuf,
    spec: ImportSpec,
    regex: Option<regex::Regex>,
    interp: Interpreter,
    pub model_name: String,
    pub params: serde_json::Value,
}

/// Whitespace-collapsed, trimmed text: the join key for `match = "text"`.
fn text_key(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The content of the last user message of a chat request.
fn last_user_message(request: &Value) -> Option<String> {
    let messages = request.get("messages")?.as_array()?;
    let m = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(|r| r.as_str()) == Some("user"))?;
    match m.get("content")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(|t| t.as_str()))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        _ => None,
    }
}

/// Look up a dotted path (`request.metadata.ticket_id`) in a JSON value.
fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| match v {
        Value::Array(a) => a.get(k.parse::<usize>().ok()?),
        _ => v.get(k),
    })
}

impl Importer {
    pub fn new(spec: &ImportSpec, base: &Path, task: Task, labels: &[String]) -> Result<Self> {
        let path = resolve(base, &spec.path);
        if !path.is_file() {
            return Err(Error::Input(format!(
                "teacher.path = {}: no such file",
                path.display()
            )));
        }
        if spec.match_by == MatchBy::Key && spec.key.is_none() {
            return Err(Error::Input(
                "teacher.match = \"key\" needs teacher.key (a dotted path such as `custom_id`)"
                    .into(),
            ));
        }
        let regex = match &spec.text_regex {
            Some(r) => Some(
                regex::Regex::new(r)
                    .map_err(|e| Error::Input(format!("teacher.text-regex: {e}")))?,
            ),
            None => None,
        };
        if task == Task::Extract {
            return Err(Error::Input(
                "import of extraction logs is not supported yet: import a classify or multilabel task".into(),
            ));
        }
        let sha = distill_core::hash::sha256_file(&path)?;
        let params = serde_json::json!({
            "path": path.display().to_string(),
            "sha256": sha,
            "match": spec.match_by,
            "key": spec.key,
            "text_regex": spec.text_regex,
            "answer": spec.answer,
            "labels": labels,
        });
        Ok(Importer {
            interp: Interpreter::new(task, labels, &[], spec.answer),
            model_name: spec.model.clone().unwrap_or_else(|| "imported".into()),
            path,
            spec: spec.clone(),
            regex,
            params,
        })
    }

    /// A record from a plain soft-label line (`probs`, `label` or `labels`).
    fn plain(
        &self,
        v: &Value,
        teacher: &TeacherId,
        id: &str,
    ) -> std::result::Result<TeacherRecord, String> {
        let labels = &self.interp.labels;
        let known = |l: &str| -> std::result::Result<(), String> {
            if labels.iter().any(|x| x == l) {
                Ok(())
            } else {
                Err(format!("label `{l}` is not in the dataset's label set"))
            }
        };
        let multilabel = self.interp.task == Task::Multilabel;
        let mut probs: std::collections::BTreeMap<String, f64> = Default::default();
        let source;
        if let Some(p) = v.get("probs") {
            let obj = p
                .as_object()
                .ok_or("field `probs` must be an object of label: probability")?;
            for (l, x) in obj {
                known(l)?;
                let x = x
                    .as_f64()
                    .filter(|x| x.is_finite() && *x >= 0.0 && (!multilabel || *x <= 1.0))
                    .ok_or_else(|| {
                        format!(
                            "field `probs.{l}`: {x} is not a probability{}",
                            if multilabel {
                                " in [0, 1]"
                            } else {
                                " (finite, >= 0)"
                            }
                        )
                    })?;
                probs.insert(l.clone(), x);
            }
            for l in labels {
                probs.entry(l.clone()).or_insert(0.0);
            }
            if !multilabel {
                let sum: f64 = probs.values().sum();
                if !sum.is_finite() {
                    return Err(
                        "field `probs`: the probabilities do not sum to a finite number".into(),
                    );
                }
                if sum <= 0.0 {
                    return Err("field `probs`: no mass on any label".into());
                }
                probs.values_mut().for_each(|x| *x /= sum);
            }
            source = "import";
        } else {
            let named: Vec<String> = match (v.get("label"), v.get("labels")) {
                (Some(Value::String(l)), _) => vec![l.clone()],
                (_, Some(Value::Array(ls))) => ls
                    .iter()
                    .map(|l| l.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or("field `labels` must be a list of strings")?,
                _ => return Err("field `label` must be a string".into()),
            };
            let mut named = named;
            named.sort();
            named.dedup();
            if named.is_empty() || (!multilabel && named.len() > 1) {
                return Err(if multilabel {
                    "field `labels`: an empty list names no label".to_string()
                } else {
                    format!(
                        "{} labels for a single-label task: give one `label`",
                        named.len()
                    )
                });
            }
            for l in labels {
                probs.insert(l.clone(), 0.0);
            }
            for l in &named {
                known(l)?;
                probs.insert(
                    l.clone(),
                    if multilabel {
                        1.0
                    } else {
                        1.0 / named.len() as f64
                    },
                );
            }
            source = "hard";
        }
        let mut rec = TeacherRecord::new(id.to_string(), teacher.clone());
        if multilabel {
            rec.labels = Some(
                probs
                    .iter()
                    .filter(|(_, p)| **p >= 0.5)
                    .map(|(l, _)| l.clone())
                    .collect(),
            );
        } else {
            rec.label = probs
                .iter()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(l, _)| l.clone());
        }
        rec.probs = Some(probs);
        rec.coverage = Some(1.0);
        rec.probs_source = Some(source.into());
        Ok(rec)
    }

    pub fn run(
        &self,
        teacher: &TeacherId,
        todo: &[&Example],
        out: &Path,
        writer: &mut LogWriter,
        progress: &mut Progress,
    ) -> Result<RunStats> {
        let mut by_key: FxHashMap<String, &Example> = FxHashMap::default();
        // Plain soft-label lines match by `id` or by `text`, whatever `match` says.
        let mut by_id: FxHashMap<&str, &Example> = FxHashMap::default();
        let mut by_text: FxHashMap<String, &Example> = FxHashMap::default();
        for ex in todo {
            by_id.insert(ex.id.as_str(), ex);
            if let Some(s) = &ex.source_id {
                by_id.entry(s.as_str()).or_insert(ex);
            }
            by_text.entry(text_key(&ex.text)).or_insert(ex);
        }
        for ex in todo {
            match self.spec.match_by {
                MatchBy::Text => {
                    by_key.insert(text_key(&ex.text), ex);
                }
                MatchBy::Key => {
                    if let Some(s) = &ex.source_id {
                        by_key.insert(s.clone(), ex);
                    }
                    by_key.insert(ex.id.clone(), ex);
                }
            }
        }
        let file = std::fs::File::open(&self.path).map_err(|e| Error::io(&self.path, e))?;
        // Last line wins for a row seen twice; records are written in row order.
        let mut found: FxHashMap<String, TeacherRecord> = FxHashMap::default();
        let mut unmatched: Vec<Value> = Vec::new();
        let mut lines = 0u64;
        let mut duplicates = 0u64;
        for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| Error::io(&self.path, e))?;
            if line.trim().is_empty() {
                continue;
            }
            lines += 1;
            let at = format!("{}:{}", self.path.display(), n + 1);
            let mut reject = |reason: String| {
                unmatched.push(serde_json::json!({"line": n + 1, "reason": reason}));
            };
            let v: Value = match serde_json::from_str(&line) {
                Ok(v) => v,
                Err(e) => {
                    reject(format!("{at}: invalid JSON: {e}"));
                    continue;
                }
            };
            if v.get("response").is_none()
                && ["probs", "label", "labels"]
                    .iter()
                    .any(|k| v.get(k).is_some())
            {
                let ex = match (v.get("id"), v.get("text")) {
                    (Some(Value::String(id)), _) => by_id.get(id.as_str()),
                    (Some(Value::Number(id)), _) => by_id.get(id.to_string().as_str()),
                    (_, Some(Value::String(t))) => by_text.get(&text_key(t)),
                    _ => {
                        reject(format!("{at}: a soft-label line needs `id` or `text`"));
                        continue;
                    }
                };
                let Some(ex) = ex else {
                    reject(format!(
                        "{at}: no dataset row matches this line's `id`/`text`"
                    ));
                    continue;
                };
                match self.plain(&v, teacher, &ex.id) {
                    Ok(rec) => {
                        if found.insert(ex.id.clone(), rec).is_some() {
                            duplicates += 1;
                        }
                    }
                    Err(why) => reject(format!("{at}: {why}")),
                }
                continue;
            }
            let key = match self.spec.match_by {
                MatchBy::Key => {
                    let k = self.spec.key.as_deref().unwrap_or("custom_id");
                    match lookup(&v, k) {
                        Some(Value::String(s)) => s.clone(),
                        Some(Value::Number(x)) => x.to_string(),
                        _ => {
                            reject(format!("{at}: field `{k}` is missing"));
                            continue;
                        }
                    }
                }
                MatchBy::Text => {
                    let Some(msg) = v.get("request").and_then(last_user_message) else {
                        reject(format!(
                            "{at}: field `request.messages` has no user message"
                        ));
                        continue;
                    };
                    match &self.regex {
                        Some(re) => match re.captures(&msg).and_then(|c| c.get(1)) {
                            Some(m) => text_key(m.as_str()),
                            None => {
                                reject(format!("{at}: text-regex does not match the user message"));
                                continue;
                            }
                        },
                        None => text_key(&msg),
                    }
                }
            };
            let Some(ex) = by_key.get(&key) else {
                reject(format!("{at}: no dataset row matches {key:?}"));
                continue;
            };
            let response = v.get("response").map(|r| r.get("body").unwrap_or(r));
            let Some(c) = response.and_then(Completion::from_json) else {
                reject(format!(
                    "{at}: field `response.choices[0].message` is missing"
                ));
                continue;
            };
            let mut rec = TeacherRecord::new(ex.id.clone(), teacher.clone());
            if let Some(m) = &c.model {
                rec.teacher.model = m.clone();
            }
            self.interp.apply(&c, &mut rec);
            rec.cost = self.spec.price.cost(&rec.usage);
            rec.latency_ms = v.get("latency_ms").and_then(|x| x.as_f64()).unwrap_or(0.0);
            if found.insert(ex.id.clone(), rec).is_some() {
                duplicates += 1;
            }
        }
        let mut stats = RunStats {
            concurrency: 1,
            ..Default::default()
        };
        // Rows with the same text share an id: the first writes the record.
        for ex in todo {
            if let Some(rec) = found.remove(&ex.id) {
                writer.append(&rec)?;
                progress.record(&rec, 0);
                stats.done += 1;
                stats.failed += u64::from(rec.failed());
            }
        }
        distill_core::fsutil::write_jsonl_atomic(&out.join(UNMATCHED_FILE), &unmatched)?;
        progress.line(&format!(
            "teach import: {lines} lines: {} rows matched, {} lines unmatched (see {}), {duplicates} lines repeated a row (the last one kept)",
            stats.done,
            unmatched.len(),
            out.join(UNMATCHED_FILE).display()
        ));
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_message_and_dotted_keys() {
        let v: Value = serde_json::json!({
            "custom_id": 7,
            "request": {"messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": [{"type": "text", "text": "hello  world"}]}
            ], "metadata": {"id": "a"}}
        });
        assert_eq!(last_user_message(&v["request"]).unwrap(), "hello  world");
        assert_eq!(lookup(&v, "request.metadata.id").unwrap(), "a");
        assert_eq!(lookup(&v, "request.messages.1.role").unwrap(), "user");
        assert_eq!(text_key(" hello \n world "), "hello world");
    }
}
