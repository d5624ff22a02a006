//! Losses, row-wise (`[batch]`), so that the loop can weight rows: gold rows,
//! teacher-only rows, class weights.
//!
//! Distillation follows Hinton et al. (2015):
//! `alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(gold)`, where
//! `teacher_T = softmax(log p / T)` (the teacher gives probabilities, not
//! logits: `log p` recovers its logits up to a constant) and
//! `student_T = softmax(z / T)`. The `T^2` keeps the soft-target gradients on
//! the scale of the hard-target ones as `T` grows.

use burn::prelude::*;
use burn::tensor::activation::{log_softmax, relu, softmax};

/// Smallest teacher probability before the log (zeros are common in soft labels).
const P_MIN: f64 = 1e-12;

/// Cross-entropy of `logits` against target distributions `targets` (`[b, c]`,
/// rows summing to 1: one-hot, smoothed or soft).
pub fn cross_entropy_rows(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    let [b, _] = logits.dims();
    (targets * log_softmax(logits, 1))
        .sum_dim(1)
        .reshape([b])
        .neg()
}

/// `T^2 * KL(softmax(log p / T) || softmax(z / T))` per row.
pub fn kd_rows(logits: Tensor<2>, teacher_probs: Tensor<2>, temperature: f64) -> Tensor<1> {
    let [b, _] = logits.dims();
    let teacher_logits = teacher_probs.clamp_min(P_MIN).log() / temperature;
    let log_pt = log_softmax(teacher_logits.clone(), 1);
    let pt = softmax(teacher_logits, 1);
    let log_q = log_softmax(logits / temperature, 1);
    (pt * (log_pt - log_q)).sum_dim(1).reshape([b]) * (temperature * temperature)
}

/// Binary cross-entropy with logits, summed over classes, per row (a mean
/// would shrink each label's gradient by the label count). Stable form:
/// `max(z, 0) - z * y + log(1 + exp(-|z|))`.
pub fn bce_rows(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    let [b, _] = logits.dims();
    let softplus = logits.clone().abs().neg().exp().log1p();
    (relu(logits.clone()) - logits * targets + softplus)
        .sum_dim(1)
        .reshape([b])
}

/// One-hot targets with label smoothing `eps`: `(1 - eps) * onehot + eps / c`.
pub fn smoothed_targets(classes: &[Option<usize>], c: usize, eps: f64) -> Vec<f32> {
    let mut v = vec![0f32; classes.len() * c];
    for (row, class) in classes.iter().enumerate() {
        if let Some(k) = class {
            for j in 0..c {
                v[row * c + j] = (eps / c as f64) as f32;
            }
            v[row * c + k] += (1.0 - eps) as f32;
        }
    }
    v
}

#[cfg(test)]
mod tests {
    //! Reference values from this NumPy snippet (PyTorch gives the same:
    //! `T*T*F.kl_div(F.log_softmax(z/T,1), F.softmax(torch.log(p)/T,1), reduction="none").sum(1)`):
    //!
    //! ```python
    //! import numpy as np
    //! def log_softmax(x): x = x - x.max(1, keepdims=True); return x - np.log(np.exp(x).sum(1, keepdims=True))
    //! z = np.array([[1.0, 2.0, 0.5], [0.3, -1.2, 2.2]]); p = np.array([[.1, .7, .2], [.05, .05, .9]])
    //! gold = [1, 0]; T = 2.0; a = 0.5
    //! lpt = log_softmax(np.log(p) / T); lq = log_softmax(z / T)
    //! kd = T * T * (np.exp(lpt) * (lpt - lq)).sum(1)          # [0.0980532, 0.1039472]
    //! ce = -log_softmax(z)[[0, 1], gold]                        # [0.4643688, 2.0680045]
    //! loss = (a * kd + (1 - a) * ce).mean()                     # 0.6835934
    //! # the classic mistakes give other numbers:
    //! # no T^2: 0.6457183; KL(student || teacher): 0.6874315
    //! eps = 0.1; t = (1 - eps) * np.eye(3)[gold] + eps / 3
    //! ce_ls = -(t * log_softmax(z)).sum(1)                      # [0.5477021, 2.0546711]
    //! y = np.array([[0, 1, 1], [1, 0, 0]])
    //! bce = (np.maximum(z, 0) - z * y + np.log1p(np.exp(-abs(z)))).sum(1)  # [1.9142667, 3.1227211]
    //! ```
    use super::*;

    fn t2(v: [[f32; 3]; 2]) -> Tensor<2> {
        Tensor::from_data(TensorData::from(v), &Device::flex())
    }
    fn vals(t: Tensor<1>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }
    fn close(a: &[f32], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((f64::from(*x) - y).abs() < 2e-6, "{a:?} != {b:?}");
        }
    }
    const Z: [[f32; 3]; 2] = [[1.0, 2.0, 0.5], [0.3, -1.2, 2.2]];
    const P: [[f32; 3]; 2] = [[0.1, 0.7, 0.2], [0.05, 0.05, 0.9]];

    #[test]
    fn kd_matches_reference() {
        let kd = vals(kd_rows(t2(Z), t2(P), 2.0));
        close(&kd, &[0.0980532, 0.1039472]);
        let targets = smoothed_targets(&[Some(1), Some(0)], 3, 0.0);
        let ce = vals(cross_entropy_rows(
            t2(Z),
            Tensor::from_data(TensorData::new(targets, [2, 3]), &Device::flex()),
        ));
        close(&ce, &[0.4643688, 2.0680045]);
        let loss: f64 = kd
            .iter()
            .zip(&ce)
            .map(|(k, c)| 0.5 * f64::from(*k) + 0.5 * f64::from(*c))
            .sum::<f64>()
            / 2.0;
        assert!((loss - 0.6835934).abs() < 2e-6);
        // The reference separates the classic mistakes from the right answer
        // by far more than the tolerance, so any of them fails above.
        assert!((loss - 0.6457183).abs() > 1e-3); // T^2 forgotten
        assert!((loss - 0.6874315).abs() > 1e-3); // KL direction reversed
    }

    #[test]
    fn kd_is_zero_when_student_matches_teacher() {
        let p = [[0.1f32, 0.7, 0.2], [0.3, 0.3, 0.4]];
        let logits = p.map(|r| r.map(f32::ln));
        for t in [1.0, 2.0, 4.0] {
            let kd = vals(kd_rows(t2(logits), t2(p), t));
            assert!(kd.iter().all(|k| k.abs() < 1e-6), "{kd:?}");
        }
    }

    #[test]
    fn label_smoothing_and_bce_match_reference() {
        let targets = smoothed_targets(&[Some(1), Some(0)], 3, 0.1);
        let ce = vals(cross_entropy_rows(
            t2(Z),
            Tensor::from_data(TensorData::new(targets, [2, 3]), &Device::flex()),
        ));
        close(&ce, &[0.5477021, 2.0546711]);
        let bce = vals(bce_rows(t2(Z), t2([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])));
        close(&bce, &[1.9142667, 3.1227211]);
    }
}
