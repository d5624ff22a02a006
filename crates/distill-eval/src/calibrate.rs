//! Temperature scaling (Guo et al. 2017): one scalar T fitted on the
//! validation split by minimising the negative log-likelihood of
//! `softmax(log p / T)`. The model's probabilities stand in for its logits
//! (`log p` differs from the logits by a per-row constant, which softmax ignores).

pub use distill_core::escalation::{CALIBRATION_FILE, Calibration};

/// `softmax(log p / T)` (the one implementation lives in distill-core).
pub fn apply(probs: &[f32], t: f64) -> Vec<f64> {
    distill_core::escalation::apply_temperature(probs, t)
}

/// Mean NLL of the gold labels under temperature `t`.
pub fn nll(probs: &[Vec<f32>], gold: &[usize], t: f64) -> f64 {
    let total: f64 = probs
        .iter()
        .zip(gold)
        .map(|(p, &y)| -apply(p, t)[y].max(1e-300).ln())
        .sum();
    total / gold.len().max(1) as f64
}

/// Fit T in [0.05, 20] by golden-section search on log T.
pub fn fit(probs: &[Vec<f32>], gold: &[usize], fitted_on: &str) -> Calibration {
    let f = |log_t: f64| nll(probs, gold, log_t.exp());
    let (mut a, mut b) = (0.05f64.ln(), 20f64.ln());
    let r = (5f64.sqrt() - 1.0) / 2.0;
    let (mut c, mut d) = (b - r * (b - a), a + r * (b - a));
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..80 {
        if fc < fd {
            b = d;
            d = c;
            fd = fc;
            c = b - r * (b - a);
            fc = f(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + r * (b - a);
            fd = f(d);
        }
    }
    let t = ((a + b) / 2.0).exp();
    Calibration {
        method: "temperature scaling (NLL, golden-section on log T)".into(),
        temperature: t,
        fitted_on: fitted_on.into(),
        n: gold.len(),
        nll_before: nll(probs, gold, 1.0),
        nll_after: nll(probs, gold, t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_the_temperature_that_made_probs_overconfident() {
        // Rows drawn from a calibrated model, then sharpened by T = 1/2.5:
        // the fit must find T close to 2.5 and lower the NLL.
        let mut probs = Vec::new();
        let mut gold = Vec::new();
        let mut state = 7u64;
        let mut rand = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for _ in 0..4000 {
            let logits: Vec<f64> = (0..4).map(|_| 2.0 * rand()).collect();
            let calibrated = {
                let e: Vec<f64> = logits.iter().map(|l| l.exp()).collect();
                let s: f64 = e.iter().sum();
                e.into_iter().map(|v| v / s).collect::<Vec<_>>()
            };
            // sample gold from the calibrated distribution
            let u = rand();
            let mut acc = 0.0;
            let mut y = 3;
            for (i, p) in calibrated.iter().enumerate() {
                acc += p;
                if u < acc {
                    y = i;
                    break;
                }
            }
            let sharp: Vec<f32> = apply(
                &calibrated.iter().map(|&p| p as f32).collect::<Vec<_>>(),
                1.0 / 2.5,
            )
            .into_iter()
            .map(|p| p as f32)
            .collect();
            probs.push(sharp);
            gold.push(y);
        }
        let c = fit(&probs, &gold, "synthetic");
        assert!((c.temperature - 2.5).abs() < 0.3, "T = {}", c.temperature);
        assert!(c.nll_after < c.nll_before);
    }
}
