//! Suites (`configs/suites/*.toml`): cases (dataset + split, teacher,
//! operating targets) and gates (`accuracy >= 0.88`).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Suite {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub cases: Vec<Case>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Case {
    pub name: String,
    /// Dataset directory or data config; default: the run's own dataset. Relative to the suite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<PathBuf>,
    /// Curation applied in memory (with `dataset`); default: the run's, when the dataset is the run's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curate: Option<PathBuf>,
    /// The split to evaluate (`test`, `val` or `train`).
    #[serde(default = "d_split")]
    pub split: String,
    /// A teacher log (from `distill teach`) covering the split: agreement and the cascade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher: Option<PathBuf>,
    /// Target accuracies on handled (local) traffic.
    #[serde(default = "d_targets")]
    pub targets: Vec<f64>,
    /// 1 - confidence of the threshold guarantee.
    #[serde(default = "d_delta")]
    pub delta: f64,
    /// The out-of-scope label, when the dataset has one (e.g. `oos`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oos_label: Option<String>,
    /// Fit temperature scaling on the validation split (stored with the run).
    #[serde(default = "d_true")]
    pub calibrate: bool,
    /// Measure latency on this machine.
    #[serde(default = "d_true")]
    pub latency: bool,
    /// `metric op value`, e.g. `accuracy >= 0.88`, `ece <= 0.05`, `coverage@0.95 >= 0.6`.
    #[serde(default)]
    pub gates: Vec<String>,
}

fn d_split() -> String {
    "test".into()
}
fn d_targets() -> Vec<f64> {
    vec![0.9, 0.95, 0.98, 0.99]
}
fn d_delta() -> f64 {
    0.05
}
fn d_true() -> bool {
    true
}

impl Suite {
    /// The suite used without `--suite`: the run's dataset, its test split.
    pub fn default_for_run() -> Self {
        Suite {
            name: "default".into(),
            description: "the run's own dataset, test split".into(),
            cases: vec![Case {
                name: "test".into(),
                dataset: None,
                curate: None,
                split: d_split(),
                teacher: None,
                targets: d_targets(),
                delta: d_delta(),
                oos_label: None,
                calibrate: true,
                latency: true,
                gates: Vec::new(),
            }],
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.cases.is_empty() {
            return Err(Error::Input(format!("suite `{}` has no cases", self.name)));
        }
        for c in &self.cases {
            if !["test", "val", "train"].contains(&c.split.as_str()) {
                return Err(Error::Input(format!(
                    "suite `{}`, case `{}`: split `{}` is not one of test, val, train",
                    self.name, c.name, c.split
                )));
            }
            if let Some(t) = c.targets.iter().find(|t| !(0.0 < **t && **t < 1.0)) {
                return Err(Error::Input(format!(
                    "suite `{}`, case `{}`: target {t} must be in (0, 1)",
                    self.name, c.name
                )));
            }
            if !(0.0 < c.delta && c.delta < 1.0) {
                return Err(Error::Input(format!(
                    "suite `{}`, case `{}`: delta {} must be in (0, 1)",
                    self.name, c.name, c.delta
                )));
            }
            for g in &c.gates {
                Gate::parse(g)?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Op {
    Ge,
    Le,
    Gt,
    Lt,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gate {
    pub metric: String,
    pub op: Op,
    pub value: f64,
}

pub use distill_core::escalation::GateResult;

impl Gate {
    pub fn parse(text: &str) -> Result<Self> {
        for (sym, op) in [(">=", Op::Ge), ("<=", Op::Le), (">", Op::Gt), ("<", Op::Lt)] {
            if let Some((m, v)) = text.split_once(sym) {
                let value: f64 = v.trim().parse().map_err(|_| {
                    Error::Input(format!("gate `{text}`: `{}` is not a number", v.trim()))
                })?;
                return Ok(Gate {
                    metric: m.trim().to_string(),
                    op,
                    value,
                });
            }
        }
        Err(Error::Input(format!(
            "gate `{text}`: expected `metric >= value` (or <=, >, <)"
        )))
    }

    /// Check against a case's metrics; an unknown metric is an error naming the known ones.
    pub fn check(&self, text: &str, metrics: &BTreeMap<String, f64>) -> Result<GateResult> {
        let Some(&actual) = metrics.get(&self.metric) else {
            let known: Vec<String> = metrics.keys().cloned().collect();
            return Err(Error::Input(format!(
                "gate `{text}`: unknown metric `{}`{}; this case has: {}",
                self.metric,
                distill_core::config::nearest(&self.metric, &known)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default(),
                known.join(", ")
            )));
        };
        let passed = match self.op {
            Op::Ge => actual >= self.value,
            Op::Le => actual <= self.value,
            Op::Gt => actual > self.value,
            Op::Lt => actual < self.value,
        };
        Ok(GateResult {
            gate: text.to_string(),
            actual: Some(actual),
            passed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_parse_and_check() {
        let g = Gate::parse("accuracy >= 0.88").unwrap();
        assert_eq!(g.op, Op::Ge);
        let mut m = BTreeMap::new();
        m.insert("accuracy".to_string(), 0.9);
        assert!(g.check("accuracy >= 0.88", &m).unwrap().passed);
        assert!(
            !Gate::parse("accuracy > 0.95")
                .unwrap()
                .check("", &m)
                .unwrap()
                .passed
        );
        let e = Gate::parse("acuracy >= 1")
            .unwrap()
            .check("acuracy >= 1", &m)
            .unwrap_err();
        assert!(e.to_string().contains("did you mean `accuracy`"), "{e}");
        assert!(Gate::parse("accuracy ~ 1").is_err());
        assert!(Gate::parse("accuracy >= high").is_err());
    }
}
