//! The escalation contract: calibration (`calibration.json`), operating points
//! (in `eval/<suite>/report.json`), the operating point a bundle ships (in
//! `bundle.json`), and the one rule every predictor applies: calibrate,
//! rank, escalate below the threshold (or on the out-of-scope label).
//!
//! A threshold is only meaningful with the temperature it was certified
//! under, so every operating point carries its temperature and they travel
//! as a pair.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `<run>/calibration.json`.
pub const CALIBRATION_FILE: &str = "calibration.json";
/// `<run>/eval/<suite>/report.json`.
pub const REPORT_FILE: &str = "report.json";

/// Temperature scaling fitted by `distill eval`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub method: String,
    pub temperature: f64,
    pub fitted_on: String,
    pub n: usize,
    pub nll_before: f64,
    pub nll_after: f64,
}

/// What the threshold achieved on the rows it was certified on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Certificate {
    pub coverage: f64,
    pub accuracy: f64,
    pub handled: u64,
    /// One-sided upper bound on the error rate of handled rows.
    pub error_upper: f64,
}

/// One target of an eval case: the certified threshold (or none) and what it
/// does on the evaluated split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatingPoint {
    pub target_accuracy: f64,
    pub delta: f64,
    /// Escalate below this calibrated confidence; `None`: not certifiable.
    pub threshold: Option<f64>,
    /// The temperature the confidences were calibrated with (1 = none).
    pub temperature: f64,
    /// On the certification rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val: Option<Certificate>,
    /// On the evaluated split.
    pub coverage: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `bundle.json`'s `escalation`: the operating point a bundle ships.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Escalation {
    pub threshold: f64,
    /// Calibrate with this temperature before comparing with the threshold.
    pub temperature: f64,
    pub target_accuracy: f64,
    pub delta: f64,
    pub method: String,
    pub suite: String,
    pub val_coverage: Option<f64>,
    pub test_coverage: f64,
    pub test_accuracy_on_handled: Option<f64>,
}

/// A gate of an eval suite and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    pub gate: String,
    pub actual: Option<f64>,
    pub passed: bool,
}

/// One case of `report.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseReport {
    pub name: String,
    pub dataset: String,
    pub split: String,
    pub n: usize,
    /// Scalar metrics (what gates read).
    pub metrics: BTreeMap<String, f64>,
    pub operating_points: Vec<OperatingPoint>,
    pub gates: Vec<GateResult>,
    /// Everything else: per-label scores, confusions, bins, curve, cascade.
    pub details: serde_json::Value,
    pub plots: Vec<String>,
}

/// `eval/<suite>/report.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuiteReport {
    pub suite: String,
    pub run: String,
    pub experiment: String,
    pub model_kind: String,
    pub task: crate::types::Task,
    pub threads: usize,
    pub cases: Vec<CaseReport>,
    pub passed: bool,
    pub seconds: f64,
    pub out: PathBuf,
}

impl SuiteReport {
    pub fn load(path: &std::path::Path) -> crate::Result<Self> {
        crate::fsutil::read_json_bounded(path, 256 << 20)
    }

    /// The operating point to ship: target 0.95 when certified, else the
    /// highest certified target; `None` when nothing is certified.
    pub fn shipped(&self) -> Option<Escalation> {
        let case = self.cases.first()?;
        let method = case.details["threshold_method"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let score = |t: f64| if (t - 0.95).abs() < 1e-9 { 2.0 } else { t };
        case.operating_points
            .iter()
            .filter_map(|op| op.threshold.map(|t| (op, t)))
            .max_by(|a, b| score(a.0.target_accuracy).total_cmp(&score(b.0.target_accuracy)))
            .map(|(op, threshold)| Escalation {
                threshold,
                temperature: op.temperature,
                target_accuracy: op.target_accuracy,
                delta: op.delta,
                method: method.clone(),
                suite: self.suite.clone(),
                val_coverage: op.val.as_ref().map(|v| v.coverage),
                test_coverage: op.coverage,
                test_accuracy_on_handled: op.accuracy,
            })
    }
}

/// `softmax(log p / T)`: temperature scaling of probabilities (log p differs
/// from the logits by a per-row constant, which softmax ignores).
pub fn apply_temperature(probs: &[f32], t: f64) -> Vec<f64> {
    let mut z: Vec<f64> = probs
        .iter()
        .map(|&p| (f64::from(p).max(1e-12)).ln() / t)
        .collect();
    let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    z.iter_mut().for_each(|v| *v = (*v - m).exp());
    let s: f64 = z.iter().sum();
    z.iter_mut().for_each(|v| *v /= s);
    z
}

/// The rule's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Calibration temperature (1 = none).
    pub temperature: f64,
    /// Escalate below this calibrated confidence (`None`: never by confidence).
    pub threshold: Option<f64>,
    /// Alternatives kept in [`Decision::top`].
    pub top_k: usize,
    /// A label index that always escalates (the out-of-scope label).
    pub always_escalate: Option<usize>,
}

/// What the rule decided for one row.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Index of the top label.
    pub label: usize,
    /// Its calibrated probability.
    pub confidence: f64,
    /// The `top_k` (label, calibrated probability) pairs, best first.
    pub top: Vec<(usize, f64)>,
    /// `None` when there is no threshold and no always-escalate label.
    pub escalate: Option<bool>,
}

impl Rule {
    /// Calibrate `probs` (a softmax row), rank, and decide.
    pub fn decide(&self, probs: &[f32]) -> Decision {
        let cal = apply_temperature(probs, self.temperature);
        // The top k, best first; ties go to the lower index, as argmax does.
        // (A k-slot insertion: k is small, the label set may not be.)
        let k = self.top_k.max(1).min(cal.len());
        let mut order: Vec<usize> = Vec::with_capacity(k + 1);
        for i in 0..cal.len() {
            let pos = order
                .iter()
                .position(|&j| cal[i].total_cmp(&cal[j]) == std::cmp::Ordering::Greater)
                .unwrap_or(order.len());
            if pos < k {
                order.insert(pos, i);
                order.truncate(k);
            }
        }
        let label = order.first().copied().unwrap_or(0);
        let confidence = cal.get(label).copied().unwrap_or(0.0);
        let by_label = self.always_escalate.map(|o| o == label);
        let by_confidence = self.threshold.map(|t| confidence < t);
        let escalate = match (by_label, by_confidence) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(false) || b.unwrap_or(false)),
        };
        Decision {
            label,
            confidence,
            top: order.iter().map(|&i| (i, cal[i])).collect(),
            escalate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_calibrates_ranks_and_escalates() {
        let rule = Rule {
            temperature: 2.0,
            threshold: Some(0.6),
            top_k: 2,
            always_escalate: Some(2),
        };
        let d = rule.decide(&[0.7, 0.2, 0.1]);
        assert_eq!(d.label, 0);
        // softmax(log p / 2) = sqrt(p) normalised.
        let s = 0.7f64.sqrt() + 0.2f64.sqrt() + 0.1f64.sqrt();
        assert!((d.confidence - 0.7f64.sqrt() / s).abs() < 1e-6);
        assert_eq!(d.top.len(), 2);
        assert_eq!(d.escalate, Some(true), "0.51 < 0.6");
        let sure = rule.decide(&[0.98, 0.01, 0.01]);
        assert_eq!(sure.escalate, Some(false));
        let oos = rule.decide(&[0.01, 0.01, 0.98]);
        assert_eq!(
            oos.escalate,
            Some(true),
            "the out-of-scope label always escalates"
        );
        let none = Rule {
            threshold: None,
            always_escalate: None,
            ..rule
        };
        assert_eq!(none.decide(&[0.5, 0.5, 0.0]).escalate, None);
    }

    /// The k-slot selection ranks exactly as a full sort does (best first,
    /// ties to the lower index), for every k, with ties and a NaN.
    #[test]
    fn top_k_selection_equals_a_full_sort() {
        let mut rng = crate::hash::SplitMix64(7);
        for case in 0..200 {
            let n = 1 + (rng.next_u64() % 80) as usize;
            let mut p: Vec<f32> = (0..n)
                .map(|_| ((rng.next_u64() % 1000) as f32 / 1000.0).max(1e-6))
                .collect();
            if case % 7 == 0 && n > 3 {
                p[1] = p[3]; // a tie
            }
            if case % 11 == 0 {
                p[0] = f32::NAN;
            }
            let s: f32 = p.iter().filter(|x| x.is_finite()).sum();
            p.iter_mut().for_each(|x| *x /= s);
            for k in [1, 3, n, n + 5] {
                let rule = Rule {
                    temperature: 1.3,
                    threshold: None,
                    top_k: k,
                    always_escalate: None,
                };
                let d = rule.decide(&p);
                let cal = apply_temperature(&p, 1.3);
                let mut order: Vec<usize> = (0..n).collect();
                order.sort_by(|&a, &b| cal[b].total_cmp(&cal[a]).then(a.cmp(&b)));
                let want: Vec<usize> = order.into_iter().take(k.max(1)).collect();
                let got: Vec<usize> = d.top.iter().map(|t| t.0).collect();
                assert_eq!(got, want, "case {case}, k {k}");
                assert_eq!(d.label, want[0]);
            }
        }
    }

    #[test]
    fn operating_point_wire_format_is_pinned() {
        let op = OperatingPoint {
            target_accuracy: 0.95,
            delta: 0.05,
            threshold: Some(0.5),
            temperature: 1.25,
            val: Some(Certificate {
                coverage: 0.75,
                accuracy: 0.97,
                handled: 300,
                error_upper: 0.04,
            }),
            coverage: 0.7,
            accuracy: Some(0.96),
            handled: Some(280),
            note: None,
        };
        let json = serde_json::to_string(&op).unwrap();
        assert_eq!(
            json,
            r#"{"target_accuracy":0.95,"delta":0.05,"threshold":0.5,"temperature":1.25,"val":{"coverage":0.75,"accuracy":0.97,"handled":300,"error_upper":0.04},"coverage":0.7,"accuracy":0.96,"handled":280}"#
        );
        assert_eq!(serde_json::from_str::<OperatingPoint>(&json).unwrap(), op);
    }
}
