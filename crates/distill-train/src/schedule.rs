//! Learning-rate schedule: linear warm-up, then cosine, linear or constant.

use crate::config::Schedule;

/// Learning rate at `step` (0-based) of `total` steps.
pub fn lr_at(schedule: Schedule, peak: f64, warmup_frac: f64, step: u64, total: u64) -> f64 {
    let total = total.max(1) as f64;
    let warmup = (warmup_frac * total).round();
    let s = step as f64;
    if s < warmup {
        return peak * (s + 1.0) / warmup;
    }
    let progress = ((s - warmup) / (total - warmup).max(1.0)).clamp(0.0, 1.0);
    match schedule {
        Schedule::Constant => peak,
        Schedule::Linear => peak * (1.0 - progress).max(0.0),
        Schedule::Cosine => peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_decay() {
        let lr = |s| lr_at(Schedule::Cosine, 1.0, 0.1, s, 100);
        assert!((lr(0) - 0.1).abs() < 1e-12);
        assert!((lr(9) - 1.0).abs() < 1e-12);
        assert!((lr(10) - 1.0).abs() < 1e-12);
        assert!(lr(55) < 0.6 && lr(55) > 0.4);
        assert!(lr(99) < 0.01);
        let lin = |s| lr_at(Schedule::Linear, 1.0, 0.0, s, 100);
        assert!((lin(50) - 0.5).abs() < 1e-12);
        assert_eq!(lr_at(Schedule::Constant, 0.3, 0.0, 70, 100), 0.3);
    }
}
