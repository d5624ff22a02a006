//! [`BundlePredictor`]: the one way to run a burn bundle. It owns everything
//! between a raw text and an answer: the bounded input, the model's text
//! preprocessing (normalisation, PII placeholders), featurizing, the forward
//! pass, calibration, the escalation threshold (paired with the temperature it
//! was certified under), and the top-k alternatives. `distill predict`,
//! `distill eval` on a bundle, the demo and `distill serve` all call it.

use crate::bundle::{Error, Format, Result, verify};
use distill_core::bundle::BundleManifest;
use distill_core::escalation::{Decision, Rule};
use distill_core::types::Task;
use distill_model::artifact::Predictor;
use distill_model::device::DeviceKind;
use distill_model::spec::ModelSpec;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// Inputs longer than this are cut (at a character boundary) before
/// preprocessing: no student looks further (a bag keeps at most
/// `max-features` ids, an encoder `max-len` tokens), and it bounds the work a
/// hostile input can cause.
pub const MAX_INPUT_BYTES: usize = 64 * 1024;

/// One answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Single-label tasks: the top label, its calibrated probability, the top-k.
    pub label: Option<String>,
    pub confidence: Option<f64>,
    pub top: Vec<(String, f64)>,
    /// Multi-label tasks: labels at or above 0.5, and every label's probability.
    pub labels: Option<Vec<String>>,
    pub probs: Option<Vec<(String, f64)>>,
    /// Below the threshold (or the always-escalate label); `None` without a threshold.
    pub escalate: Option<bool>,
    /// The input was longer than the model reads.
    pub truncated: bool,
}

impl Prediction {
    /// The JSON line `distill predict` writes.
    pub fn to_json(&self) -> Value {
        match (&self.labels, &self.probs) {
            (Some(on), Some(probs)) => {
                let probs: serde_json::Map<String, Value> =
                    probs.iter().map(|(l, p)| (l.clone(), json!(p))).collect();
                json!({"labels": on, "probs": probs})
            }
            _ => json!({
                "label": self.label, "confidence": self.confidence,
                "top": self.top.iter().map(|(l, p)| json!([l, p])).collect::<Vec<_>>(),
                "escalate": self.escalate,
            }),
        }
    }
}

pub struct BundlePredictor {
    pub manifest: BundleManifest,
    pub dir: PathBuf,
    predictor: Predictor,
    rule: Rule,
}

impl BundlePredictor {
    /// Verify the bundle (see [`verify`]) and load its model. ONNX bundles
    /// are refused with a hint: they run in onnxruntime.
    pub fn load(dir: &Path, device: DeviceKind) -> Result<Self> {
        let manifest = verify(dir)?;
        if manifest.format != Format::Burn {
            return Err(Error::Input(format!(
                "{}: an ONNX bundle runs in onnxruntime (or another ONNX runtime); `distill predict`, `distill eval` and `distill serve` run burn bundles: `distill export RUN --format burn`",
                dir.display()
            )));
        }
        // The file set was chosen by the manifest's model kind: model.json
        // must agree before anything else is read (an encoder spec behind a
        // "bag" manifest would read an unverified tokenizer).
        let meta_path = dir.join(distill_core::bundle::META_FILE);
        let meta: distill_model::artifact::ModelMeta =
            distill_core::fsutil::read_json_bounded(&meta_path, 16 << 20).map_err(|e| {
                Error::Bundle {
                    path: meta_path.clone(),
                    message: e.to_string(),
                }
            })?;
        if meta.spec.kind() != manifest.model_kind {
            return Err(Error::Bundle {
                path: meta_path,
                message: format!(
                    "model.json's spec is `{}`, bundle.json says `{}`",
                    meta.spec.kind(),
                    manifest.model_kind
                ),
            });
        }
        if let Some(e) = &manifest.escalation
            && !(e.temperature.is_finite() && e.temperature > 0.0 && e.threshold.is_finite())
        {
            return Err(Error::Bundle {
                path: dir.join(distill_core::bundle::BUNDLE_FILE),
                message: format!(
                    "escalation threshold {} with temperature {}: both must be finite, the temperature positive",
                    e.threshold, e.temperature
                ),
            });
        }
        let predictor = Predictor::load(dir, device)?;
        if predictor.meta.labels != manifest.labels
            || predictor.meta.preprocess != manifest.preprocess
        {
            return Err(Error::Bundle {
                path: dir.join(distill_core::bundle::META_FILE),
                message: "model.json disagrees with bundle.json (labels or preprocessing)".into(),
            });
        }
        // The shipped threshold with the temperature it was certified under
        // (checked above); without one, the fitted calibration.
        let temperature = manifest
            .escalation
            .as_ref()
            .map(|e| e.temperature)
            .or(manifest.calibration.as_ref().map(|c| c.temperature))
            .filter(|t| t.is_finite() && *t > 0.0)
            .unwrap_or(1.0);
        let rule = Rule {
            temperature,
            threshold: manifest.escalation.as_ref().map(|e| e.threshold),
            top_k: 3,
            always_escalate: None,
        };
        Ok(BundlePredictor {
            manifest,
            dir: dir.to_path_buf(),
            predictor,
            rule,
        })
    }

    /// Override the bundle's threshold (`None` keeps it).
    pub fn with_threshold(mut self, threshold: Option<f64>) -> Self {
        if threshold.is_some() {
            self.rule.threshold = threshold;
        }
        self
    }

    pub fn with_top_k(mut self, k: usize) -> Self {
        self.rule.top_k = k.max(1);
        self
    }

    /// A label that always escalates (the out-of-scope label); an unknown
    /// label is an error naming the known ones' count.
    pub fn with_always_escalate(mut self, label: Option<&str>) -> Result<Self> {
        self.rule.always_escalate = match label {
            None => None,
            Some(l) => Some(
                self.manifest
                    .labels
                    .iter()
                    .position(|x| x == l)
                    .ok_or_else(|| {
                        Error::Input(format!(
                            "label `{l}` is not one of the bundle's {} labels",
                            self.manifest.labels.len()
                        ))
                    })?,
            ),
        };
        Ok(self)
    }

    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    pub fn task(&self) -> Task {
        self.manifest.task
    }

    pub fn labels(&self) -> &[String] {
        &self.manifest.labels
    }

    /// The loaded model (for timing and evaluation).
    pub fn model(&self) -> &Predictor {
        &self.predictor
    }

    /// Most ids the featurizer keeps (inputs reaching it are truncated).
    fn id_limit(&self) -> usize {
        match &self.predictor.meta.spec {
            ModelSpec::Bag(b) => b.max_features,
            ModelSpec::Encoder(e) => e.max_len,
            ModelSpec::Pretrained(p) => p.max_len,
            ModelSpec::Tagger(t) => t.max_tokens,
        }
    }

    /// Bounded, preprocessed and featurized inputs, with whether each was truncated.
    pub fn encode(&self, texts: &[&str]) -> Vec<(Vec<u32>, bool)> {
        use rayon::prelude::*;
        let limit = self.id_limit();
        texts
            .par_iter()
            .map(|t| {
                let cut = distill_model::featurize::truncate_at_char(t, MAX_INPUT_BYTES);
                let ids = self.predictor.encode_text(cut);
                let truncated = cut.len() < t.len() || ids.len() >= limit;
                (ids, truncated)
            })
            .collect()
    }

    /// Probabilities per raw text (softmax, or sigmoid for multi-label), uncalibrated.
    pub fn probs(&self, texts: &[&str], batch_size: usize) -> Vec<Vec<f32>> {
        let seqs: Vec<Vec<u32>> = self.encode(texts).into_iter().map(|(ids, _)| ids).collect();
        self.predictor.predict_seqs(&seqs, batch_size)
    }

    /// The rule applied to one softmax row.
    pub fn decide(&self, probs: &[f32]) -> Decision {
        self.rule.decide(probs)
    }

    /// Answer raw texts, `batch_size` per forward pass.
    pub fn predict(&self, texts: &[&str], batch_size: usize) -> Vec<Prediction> {
        let (seqs, truncated): (Vec<Vec<u32>>, Vec<bool>) = self.encode(texts).into_iter().unzip();
        let probs = self.predictor.predict_seqs(&seqs, batch_size);
        let labels = &self.manifest.labels;
        probs
            .iter()
            .zip(&truncated)
            .map(|(p, truncated)| match self.manifest.task {
                Task::Multilabel => Prediction {
                    label: None,
                    confidence: None,
                    top: Vec::new(),
                    labels: Some(
                        labels
                            .iter()
                            .zip(p)
                            .filter(|(_, x)| **x >= 0.5)
                            .map(|(l, _)| l.clone())
                            .collect(),
                    ),
                    probs: Some(
                        labels
                            .iter()
                            .zip(p)
                            .map(|(l, &x)| (l.clone(), f64::from(x)))
                            .collect(),
                    ),
                    escalate: None,
                    truncated: *truncated,
                },
                _ => {
                    let d = self.rule.decide(p);
                    Prediction {
                        label: labels.get(d.label).cloned(),
                        confidence: Some(d.confidence),
                        top: d.top.iter().map(|&(i, c)| (labels[i].clone(), c)).collect(),
                        labels: None,
                        probs: None,
                        escalate: d.escalate,
                        truncated: *truncated,
                    }
                }
            })
            .collect()
    }
}
