//! Prompt templates: `{text}`, `{labels}`, `{fields}`; few-shot examples drawn
//! deterministically from the training split and sent as chat turns.

use crate::config::{AnswerFormat, OpenAiSpec};
use distill_core::hash::seeded_u64;
use distill_core::types::{Example, Split, Task};
use serde_json::{Value, json};
use std::collections::BTreeMap;

const PLACEHOLDERS: [&str; 3] = ["text", "labels", "fields"];

/// Reject `{name}` placeholders this build does not fill (typos like `{txt}`).
pub fn check_placeholders(text: &str) -> Result<(), String> {
    let re = regex::Regex::new(r"\{([A-Za-z_][A-Za-z0-9_]*)\}").map_err(|e| e.to_string())?;
    for cap in re.captures_iter(text) {
        let name = &cap[1];
        if !PLACEHOLDERS.contains(&name) {
            let known: Vec<String> = PLACEHOLDERS.iter().map(|s| s.to_string()).collect();
            return Err(format!(
                "unknown placeholder `{{{name}}}`{}; known: {{text}}, {{labels}}, {{fields}}",
                distill_core::config::nearest(name, &known)
                    .map(|s| format!(" (did you mean `{{{s}}}`?)"))
                    .unwrap_or_default()
            ));
        }
    }
    Ok(())
}

fn default_system(task: Task, answer: AnswerFormat) -> &'static str {
    match (task, answer) {
        (Task::Extract, _) => {
            "Extract these fields from the user's text: {fields}. Reply with a JSON object that maps each field to a list of the exact substrings of the text (an empty list when the field is absent)."
        }
        (Task::Multilabel, _) => {
            "Tag the user's text with every label from the list below that applies. Reply with the labels separated by commas, and nothing else.\n\nLabels:\n{labels}"
        }
        (Task::Classify, AnswerFormat::Label) => {
            "Classify the user's text. Reply with exactly one label from the list below, and nothing else.\n\nLabels:\n{labels}"
        }
        (Task::Classify, AnswerFormat::Index) => {
            "Classify the user's text. Reply with the number of exactly one label from the list below, and nothing else.\n\n{labels}"
        }
    }
}

/// A rendered prompt recipe for one teach run.
#[derive(Debug, Clone)]
pub struct Prompt {
    pub task: Task,
    pub answer: AnswerFormat,
    pub labels: Vec<String>,
    pub fields: Vec<String>,
    pub system: String,
    pub template: String,
    /// (text, answer) pairs.
    pub shots: Vec<(String, String)>,
    pub shot_ids: Vec<String>,
}

impl Prompt {
    pub fn new(
        spec: &OpenAiSpec,
        task: Task,
        labels: &[String],
        fields: &[String],
        rows: &[Example],
        seed: u64,
    ) -> Self {
        let mut prompt = Prompt {
            task,
            answer: spec.answer,
            labels: labels.to_vec(),
            fields: fields.to_vec(),
            system: spec
                .system
                .clone()
                .unwrap_or_else(|| default_system(task, spec.answer).to_string()),
            template: spec.template.clone(),
            shots: Vec::new(),
            shot_ids: Vec::new(),
        };
        for ex in few_shot(rows, task, spec.few_shot, seed) {
            if let Some(answer) = prompt.answer_for(ex) {
                prompt.shots.push((ex.text.clone(), answer));
                prompt.shot_ids.push(ex.id.clone());
            }
        }
        prompt
    }

    fn labels_block(&self) -> String {
        match self.answer {
            AnswerFormat::Label => self.labels.join("\n"),
            AnswerFormat::Index => self
                .labels
                .iter()
                .enumerate()
                .map(|(i, l)| format!("{}. {l}", i + 1))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    fn fill(&self, text: &str, row_text: &str) -> String {
        // `{text}` last, so a row that contains `{labels}` stays literal.
        text.replace("{labels}", &self.labels_block())
            .replace("{fields}", &self.fields.join(", "))
            .replace("{text}", row_text)
    }

    /// The ideal answer for a gold row (few-shot turns).
    pub fn answer_for(&self, ex: &Example) -> Option<String> {
        match self.task {
            Task::Classify => {
                let l = ex.label.as_ref()?;
                match self.answer {
                    AnswerFormat::Label => Some(l.clone()),
                    AnswerFormat::Index => self
                        .labels
                        .iter()
                        .position(|x| x == l)
                        .map(|i| (i + 1).to_string()),
                }
            }
            Task::Multilabel => Some(ex.labels.as_ref()?.join(", ")),
            Task::Extract => {
                let chars: Vec<char> = ex.text.chars().collect();
                let mut out: BTreeMap<&str, Vec<String>> = self
                    .fields
                    .iter()
                    .map(|f| (f.as_str(), Vec::new()))
                    .collect();
                for s in ex.spans.as_ref()? {
                    if let Some(v) = out.get_mut(s.label.as_str()) {
                        v.push(
                            chars[s.start.min(chars.len())..s.end.min(chars.len())]
                                .iter()
                                .collect(),
                        );
                    }
                }
                Some(serde_json::to_string(&out).ok()?)
            }
        }
    }

    /// Chat messages for one row.
    pub fn messages(&self, text: &str) -> Vec<Value> {
        let mut m = Vec::with_capacity(2 + 2 * self.shots.len());
        if !self.system.is_empty() {
            m.push(json!({"role": "system", "content": self.fill(&self.system, "")}));
        }
        for (t, a) in &self.shots {
            m.push(json!({"role": "user", "content": self.fill(&self.template, t)}));
            m.push(json!({"role": "assistant", "content": a}));
        }
        m.push(json!({"role": "user", "content": self.fill(&self.template, text)}));
        m
    }

    /// JSON schema for extraction answers.
    pub fn schema(&self) -> Value {
        let props: serde_json::Map<String, Value> = self
            .fields
            .iter()
            .map(|f| {
                // Bounded, so a looping small model cannot run past max-tokens.
                let item = json!({"type": "string", "maxLength": 80});
                (
                    f.clone(),
                    json!({"type": "array", "items": item, "maxItems": 4}),
                )
            })
            .collect();
        json!({
            "type": "object",
            "properties": props,
            "required": self.fields,
            "additionalProperties": false
        })
    }
}

/// `k` labelled training rows in a seeded order, cycling through labels so
/// that the shots cover as many labels as possible.
pub fn few_shot(rows: &[Example], task: Task, k: usize, seed: u64) -> Vec<&Example> {
    if k == 0 {
        return Vec::new();
    }
    let mut pool: Vec<&Example> = rows
        .iter()
        .filter(|e| e.split == Some(Split::Train) && e.is_labeled(task))
        .collect();
    pool.sort_by_key(|e| (seeded_u64(seed, &e.id), e.id.clone()));
    let mut by_label: BTreeMap<String, std::collections::VecDeque<&Example>> = BTreeMap::new();
    let mut label_order: Vec<String> = Vec::new();
    for e in pool {
        let key = e.label_list().join(",");
        if !by_label.contains_key(&key) {
            label_order.push(key.clone());
        }
        by_label.entry(key).or_default().push_back(e);
    }
    let mut out = Vec::with_capacity(k);
    while out.len() < k {
        let before = out.len();
        for key in &label_order {
            if out.len() == k {
                break;
            }
            if let Some(e) = by_label.get_mut(key).and_then(|q| q.pop_front()) {
                out.push(e);
            }
        }
        if out.len() == before {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_checked_with_a_suggestion() {
        assert!(check_placeholders("Text: {text}\n{labels}").is_ok());
        assert!(check_placeholders("json like {\"a\": 1} is fine: {text}").is_ok());
        let e = check_placeholders("{txt}").unwrap_err();
        assert!(e.contains("did you mean `{text}`"), "{e}");
    }
}
