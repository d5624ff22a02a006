//! Classification metrics computed from probabilities on the host.

use crate::data::{Gold, Row};
use serde::Serialize;

/// Validation / test metrics of one evaluation.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Metrics {
    /// classify: accuracy; multilabel: exact-match (subset) accuracy.
    pub accuracy: f64,
    /// Unweighted mean of per-label F1 over labels present in gold or predictions.
    pub macro_f1: f64,
    /// multilabel only: F1 over all (row, label) decisions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub micro_f1: Option<f64>,
    /// Mean negative log-likelihood (classify) or mean BCE (multilabel).
    pub loss: f64,
    pub n: usize,
}

/// Metrics of `probs` (one row per example, over the label set) against gold.
pub fn evaluate(rows: &[Row], probs: &[Vec<f32>], classes: usize, threshold: f64) -> Metrics {
    let mut tp = vec![0u64; classes];
    let mut fp = vec![0u64; classes];
    let mut fn_ = vec![0u64; classes];
    let mut correct = 0usize;
    let mut loss = 0f64;
    let mut n = 0usize;
    let mut multilabel = false;
    for (row, p) in rows.iter().zip(probs) {
        match &row.gold {
            Gold::None => continue,
            Gold::Class(y) => {
                n += 1;
                let pred = argmax(p);
                if pred == *y {
                    correct += 1;
                    tp[*y] += 1;
                } else {
                    fp[pred] += 1;
                    fn_[*y] += 1;
                }
                loss -= f64::from(p[*y]).max(1e-12).ln();
            }
            Gold::Multi(y) => {
                multilabel = true;
                n += 1;
                let mut exact = true;
                let mut row_loss = 0.0;
                for (k, (&pk, &yk)) in p.iter().zip(y).enumerate() {
                    let pred = f64::from(pk) >= threshold;
                    let gold = yk > 0.5;
                    match (pred, gold) {
                        (true, true) => tp[k] += 1,
                        (true, false) => fp[k] += 1,
                        (false, true) => fn_[k] += 1,
                        (false, false) => {}
                    }
                    exact &= pred == gold;
                    let pk = f64::from(pk).clamp(1e-12, 1.0 - 1e-12);
                    row_loss -= if gold { pk.ln() } else { (1.0 - pk).ln() };
                }
                correct += usize::from(exact);
                loss += row_loss / classes as f64;
            }
        }
    }
    let f1 = |tp: u64, fp: u64, fn_: u64| {
        let d = 2 * tp + fp + fn_;
        if d == 0 {
            0.0
        } else {
            2.0 * tp as f64 / d as f64
        }
    };
    let present: Vec<usize> = (0..classes)
        .filter(|&k| tp[k] + fp[k] + fn_[k] > 0)
        .collect();
    let macro_f1 = if present.is_empty() {
        0.0
    } else {
        present
            .iter()
            .map(|&k| f1(tp[k], fp[k], fn_[k]))
            .sum::<f64>()
            / present.len() as f64
    };
    let micro_f1 = multilabel.then(|| f1(tp.iter().sum(), fp.iter().sum(), fn_.iter().sum()));
    let nf = n.max(1) as f64;
    Metrics {
        accuracy: correct as f64 / nf,
        macro_f1,
        micro_f1,
        loss: loss / nf,
        n,
    }
}

pub fn argmax(p: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in p.iter().enumerate() {
        if v > p[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(gold: Gold) -> Row {
        Row {
            id: String::new(),
            text: String::new(),
            gold,
            teacher: None,
        }
    }

    #[test]
    fn classify_metrics_match_hand_computation() {
        // gold 0,0,1,2 ; pred 0,1,1,1 -> acc 0.5
        // F1: class0 tp1 fn1 -> 2/3; class1 tp1 fp2 -> 0.5; class2 fn1 -> 0
        let rows = [0, 0, 1, 2].map(|y| row(Gold::Class(y)));
        let probs = [0, 1, 1, 1].map(|k| {
            let mut p = vec![0.1f32; 3];
            p[k] = 0.8;
            p
        });
        let m = evaluate(&rows, &probs, 3, 0.5);
        assert!((m.accuracy - 0.5).abs() < 1e-12);
        assert!((m.macro_f1 - (2.0 / 3.0 + 0.5) / 3.0).abs() < 1e-12);
        assert_eq!(m.n, 4);
    }

    #[test]
    fn multilabel_metrics() {
        let rows = [
            row(Gold::Multi(vec![1.0, 0.0])),
            row(Gold::Multi(vec![1.0, 1.0])),
        ];
        let probs = [vec![0.9f32, 0.2], vec![0.7, 0.4]];
        let m = evaluate(&rows, &probs, 2, 0.5);
        assert!((m.accuracy - 0.5).abs() < 1e-12);
        // label0: tp2 -> 1.0; label1: fn1 -> 0.0
        assert!((m.macro_f1 - 0.5).abs() < 1e-12);
        // micro: tp2 fn1 -> 4/5
        assert!((m.micro_f1.unwrap() - 0.8).abs() < 1e-12);
    }
}
