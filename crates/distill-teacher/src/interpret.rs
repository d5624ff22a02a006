//! Turn a completion (from a server or a production log) into a record's
//! label / labels / fields, probs and coverage.

use crate::config::AnswerFormat;
use crate::openai::Completion;
use crate::record::{RecordError, TeacherRecord};
use crate::softlabel::LabelMatcher;
use distill_core::types::Task;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct Interpreter {
    pub task: Task,
    pub labels: Vec<String>,
    pub fields: Vec<String>,
    pub answer: AnswerFormat,
    matcher: LabelMatcher,
}

impl Interpreter {
    pub fn new(task: Task, labels: &[String], fields: &[String], answer: AnswerFormat) -> Self {
        let matcher = match (task, answer) {
            (Task::Classify, AnswerFormat::Index) => LabelMatcher::numbered(labels.len()),
            _ => LabelMatcher::new(labels),
        };
        Interpreter {
            task,
            labels: labels.to_vec(),
            fields: fields.to_vec(),
            answer,
            matcher,
        }
    }

    fn probs_map(&self, probs: &[f64]) -> BTreeMap<String, f64> {
        self.labels
            .iter()
            .cloned()
            .zip(probs.iter().copied())
            .collect()
    }

    fn parse_error(rec: &mut TeacherRecord, c: &Completion, mut message: String) {
        if c.finish_reason.as_deref() == Some("length") {
            message.push_str(" (the answer was cut at max-tokens: raise teacher.max-tokens)");
        }
        rec.error = Some(RecordError {
            kind: "parse".into(),
            message,
        });
    }

    /// Fill `rec` from `c`. A parse failure sets `error` (kind `parse`) but
    /// keeps the output and any soft labels.
    pub fn apply(&self, c: &Completion, rec: &mut TeacherRecord) {
        rec.output = Some(c.content.clone());
        rec.usage = c.usage;
        match self.task {
            Task::Classify => {
                let parsed = self.matcher.parse(&c.content);
                rec.label = parsed.and_then(|i| self.labels.get(i).cloned());
                let scored = c.tokens.as_ref().and_then(|t| self.matcher.score(t));
                match (scored, parsed) {
                    (Some((probs, coverage)), _) => {
                        rec.probs = Some(self.probs_map(&probs));
                        rec.coverage = Some(coverage);
                        rec.probs_source = Some("logprobs".into());
                    }
                    (None, Some(i)) => {
                        let mut p = vec![0.0; self.labels.len()];
                        p[i] = 1.0;
                        rec.probs = Some(self.probs_map(&p));
                        rec.coverage = Some(if c.tokens.is_some() { 0.0 } else { 1.0 });
                        rec.probs_source = Some("hard".into());
                    }
                    (None, None) => {
                        rec.coverage = c.tokens.as_ref().map(|_| 0.0);
                    }
                }
                if rec.label.is_none() {
                    Self::parse_error(
                        rec,
                        c,
                        format!(
                            "answer {:?} names no label of the label set",
                            short(&c.content)
                        ),
                    );
                }
            }
            Task::Multilabel => {
                let (found, unknown) = self.matcher.parse_list(&c.content);
                if found.is_empty() {
                    Self::parse_error(
                        rec,
                        c,
                        format!(
                            "answer {:?} names no label of the label set",
                            short(&c.content)
                        ),
                    );
                    return;
                }
                let mut p = vec![0.0; self.labels.len()];
                found.iter().for_each(|&i| p[i] = 1.0);
                rec.labels = Some(found.iter().map(|&i| self.labels[i].clone()).collect());
                rec.probs = Some(self.probs_map(&p));
                rec.coverage = Some(found.len() as f64 / (found.len() + unknown) as f64);
                rec.probs_source = Some("hard".into());
            }
            Task::Extract => match parse_fields(&c.content, &self.fields) {
                Ok(fields) => rec.fields = Some(fields),
                Err(m) => Self::parse_error(rec, c, m),
            },
        }
    }
}

fn short(s: &str) -> String {
    let t: String = s.chars().take(120).collect();
    if t.len() < s.len() {
        format!("{t}...")
    } else {
        t
    }
}

/// Parse a JSON object of field -> string or list of strings, keeping known fields.
pub fn parse_fields(
    content: &str,
    fields: &[String],
) -> Result<BTreeMap<String, Vec<String>>, String> {
    let trimmed = content
        .trim()
        .trim_start_matches("```json")
        .trim_matches('`')
        .trim();
    let v: serde_json::Value = serde_json::from_str(trimmed)
        .map_err(|e| format!("answer is not a JSON object ({e}): {:?}", short(content)))?;
    let obj = v
        .as_object()
        .ok_or_else(|| format!("answer is JSON but not an object: {:?}", short(content)))?;
    let mut out = BTreeMap::new();
    for f in fields {
        let values = match obj.get(f) {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|x| match x {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Null => None,
                    other => Some(other.to_string()),
                })
                .collect(),
            Some(other) => vec![other.to_string()],
        };
        out.insert(f.clone(), values);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::TeacherId;

    fn rec() -> TeacherRecord {
        TeacherRecord::new(
            "x".into(),
            TeacherId {
                kind: "openai".into(),
                model: "m".into(),
                params_hash: "h".into(),
            },
        )
    }

    #[test]
    fn index_answers_map_back_to_label_names() {
        let labels: Vec<String> = ["alpha", "beta", "gamma"].map(String::from).to_vec();
        let it = Interpreter::new(Task::Classify, &labels, &[], AnswerFormat::Index);
        let c = Completion {
            content: "2".into(),
            ..Default::default()
        };
        let mut r = rec();
        it.apply(&c, &mut r);
        assert_eq!(r.label.as_deref(), Some("beta"));
        assert_eq!(r.probs.unwrap()["beta"], 1.0);
        assert!(r.error.is_none());
    }

    #[test]
    fn unparseable_answers_are_kept_as_parse_errors() {
        let labels: Vec<String> = ["ham", "spam"].map(String::from).to_vec();
        let it = Interpreter::new(Task::Classify, &labels, &[], AnswerFormat::Label);
        let c = Completion {
            content: "I cannot help with that".into(),
            ..Default::default()
        };
        let mut r = rec();
        it.apply(&c, &mut r);
        assert_eq!(r.error.unwrap().kind, "parse");
        assert_eq!(r.output.as_deref(), Some("I cannot help with that"));
    }

    #[test]
    fn fields_parse_strings_and_lists() {
        let f: Vec<String> = ["artist", "playlist"].map(String::from).to_vec();
        let got =
            parse_fields(r#"{"artist": "Queen", "playlist": ["a", "b"], "x": 1}"#, &f).unwrap();
        assert_eq!(got["artist"], ["Queen"]);
        assert_eq!(got["playlist"], ["a", "b"]);
        assert!(parse_fields("not json", &f).is_err());
    }
}
