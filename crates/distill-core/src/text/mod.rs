//! Text preprocessing that belongs to a model: the text-changing curation
//! steps (NFKC and whitespace normalisation, PII placeholders). Curation
//! records the steps it applied in the dataset manifest, training copies them
//! into the model (`model.json`), and every predictor applies them to raw
//! input before featurizing, so that a model sees at serving time the same
//! kind of text it was trained on.

pub mod normalize;
pub mod pii;

use pii::PiiKind;
use serde::{Deserialize, Serialize};

/// One text transformation, as recorded in `dataset.json` and `model.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum TextStep {
    /// [`normalize::normalize`] with these switches.
    Normalize {
        nfkc: bool,
        whitespace: bool,
        lowercase: bool,
    },
    /// [`pii::redact`] of these kinds.
    RedactPii { kinds: Vec<PiiKind> },
}

impl TextStep {
    pub fn apply(&self, text: &str) -> String {
        match self {
            TextStep::Normalize {
                nfkc,
                whitespace,
                lowercase,
            } => normalize::normalize(text, *nfkc, *whitespace, *lowercase),
            TextStep::RedactPii { kinds } => pii::redact(text, kinds).0,
        }
    }
}

/// The ordered text steps a model was trained behind (empty: raw text).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Preprocess(pub Vec<TextStep>);

impl Preprocess {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Apply every step in order.
    pub fn apply<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        let mut current = std::borrow::Cow::Borrowed(text);
        for step in &self.0 {
            current = std::borrow::Cow::Owned(step.apply(&current));
        }
        current
    }

    /// Append a step (curating a curated dataset accumulates them).
    pub fn push(&mut self, step: TextStep) {
        self.0.push(step);
    }

    /// One line for summaries: `normalize(nfkc) -> redact-pii(email,phone)`.
    pub fn describe(&self) -> String {
        if self.0.is_empty() {
            return "none (raw text)".into();
        }
        self.0
            .iter()
            .map(|s| match s {
                TextStep::Normalize {
                    nfkc,
                    whitespace,
                    lowercase,
                } => {
                    let on: Vec<&str> = [
                        (*nfkc, "nfkc"),
                        (*whitespace, "whitespace"),
                        (*lowercase, "lowercase"),
                    ]
                    .iter()
                    .filter(|(b, _)| *b)
                    .map(|(_, n)| *n)
                    .collect();
                    format!("normalize({})", on.join(","))
                }
                TextStep::RedactPii { kinds } => format!(
                    "redact-pii({})",
                    kinds
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            })
            .collect::<Vec<_>>()
            .join(" -> ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_is_pinned_and_steps_apply_in_order() {
        let p = Preprocess(vec![
            TextStep::Normalize {
                nfkc: true,
                whitespace: true,
                lowercase: false,
            },
            TextStep::RedactPii {
                kinds: vec![PiiKind::Email, PiiKind::Phone],
            },
        ]);
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            r#"[{"type":"normalize","nfkc":true,"whitespace":true,"lowercase":false},{"type":"redact-pii","kinds":["email","phone"]}]"#
        );
        let back: Preprocess = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
        // NFKC turns the full-width address into ASCII, which redaction then catches.
        assert_eq!(p.apply("mail  ｊｏ@example.com\tnow"), "mail <EMAIL> now");
        assert_eq!(Preprocess::default().apply("  As Is "), "  As Is ");
        assert!(p.describe().contains("redact-pii(email,phone)"));
    }
}
