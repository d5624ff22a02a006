//! Metrics on (gold, predicted, confidence) triples: classification report,
//! confusion matrix, calibration (ECE, reliability bins), selective
//! prediction (risk-coverage, AURC), AUROC, multi-label F1, and the
//! Clopper-Pearson bound used to pick escalation thresholds.
//!
//! Reference values in the tests come from scikit-learn 1.x / SciPy (the
//! snippets are in the test comments).

use serde::Serialize;

/// Per-label precision, recall, F1 and support.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LabelScore {
    pub label: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClassReport {
    pub n: u64,
    pub accuracy: f64,
    /// Mean F1 over labels present in gold or predictions (scikit-learn's `labels=None`).
    pub macro_f1: f64,
    /// F1 weighted by gold support.
    pub weighted_f1: f64,
    pub per_label: Vec<LabelScore>,
    /// `confusion[gold][pred]`.
    pub confusion: Vec<Vec<u64>>,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

fn f1(p: f64, r: f64) -> f64 {
    if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    }
}

/// Single-label classification report over `k` labels.
pub fn class_report(gold: &[usize], pred: &[usize], labels: &[String]) -> ClassReport {
    let k = labels.len();
    let mut confusion = vec![vec![0u64; k]; k];
    for (&g, &p) in gold.iter().zip(pred) {
        confusion[g][p] += 1;
    }
    let n = gold.len() as u64;
    let correct: u64 = (0..k).map(|i| confusion[i][i]).sum();
    let mut per_label = Vec::with_capacity(k);
    let (mut macro_sum, mut macro_n, mut weighted) = (0.0, 0usize, 0.0);
    for i in 0..k {
        let tp = confusion[i][i];
        let support: u64 = confusion[i].iter().sum();
        let predicted: u64 = (0..k).map(|g| confusion[g][i]).sum();
        let precision = ratio(tp, predicted);
        let recall = ratio(tp, support);
        let f = f1(precision, recall);
        if support > 0 || predicted > 0 {
            macro_sum += f;
            macro_n += 1;
        }
        weighted += f * support as f64;
        per_label.push(LabelScore {
            label: labels[i].clone(),
            precision,
            recall,
            f1: f,
            support,
        });
    }
    ClassReport {
        n,
        accuracy: ratio(correct, n),
        macro_f1: if macro_n == 0 {
            0.0
        } else {
            macro_sum / macro_n as f64
        },
        weighted_f1: if n == 0 { 0.0 } else { weighted / n as f64 },
        per_label,
        confusion,
    }
}

/// The `top` largest off-diagonal cells: (gold, predicted, count).
pub fn top_confusions(confusion: &[Vec<u64>], top: usize) -> Vec<(usize, usize, u64)> {
    let mut cells: Vec<(usize, usize, u64)> = Vec::new();
    for (g, row) in confusion.iter().enumerate() {
        for (p, &c) in row.iter().enumerate() {
            if g != p && c > 0 {
                cells.push((g, p, c));
            }
        }
    }
    cells.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
    cells.truncate(top);
    cells
}

/// One reliability bin.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Bin {
    pub lo: f64,
    pub hi: f64,
    pub count: u64,
    pub confidence: f64,
    pub accuracy: f64,
}

/// Expected calibration error over `bins` equal-width confidence bins
/// (right-closed, `(lo, hi]`, the first bin includes 0), and the bins.
pub fn ece(confidence: &[f64], correct: &[bool], bins: usize) -> (f64, Vec<Bin>) {
    let mut count = vec![0u64; bins];
    let mut conf = vec![0f64; bins];
    let mut acc = vec![0f64; bins];
    for (&c, &ok) in confidence.iter().zip(correct) {
        let b = ((c * bins as f64).ceil() as usize).clamp(1, bins) - 1;
        count[b] += 1;
        conf[b] += c;
        acc[b] += f64::from(u8::from(ok));
    }
    let n = confidence.len().max(1) as f64;
    let mut e = 0.0;
    let mut out = Vec::with_capacity(bins);
    for b in 0..bins {
        let (mc, ma) = if count[b] > 0 {
            (conf[b] / count[b] as f64, acc[b] / count[b] as f64)
        } else {
            (0.0, 0.0)
        };
        e += count[b] as f64 / n * (mc - ma).abs();
        out.push(Bin {
            lo: b as f64 / bins as f64,
            hi: (b + 1) as f64 / bins as f64,
            count: count[b],
            confidence: mc,
            accuracy: ma,
        });
    }
    (e, out)
}

/// Risk-coverage curve: rows sorted by confidence (descending, ties kept
/// together); point i = (coverage, selective risk) after admitting each
/// distinct confidence level. AURC = mean selective risk over the n prefixes
/// (the usual discrete definition, ties broken by rank).
pub fn risk_coverage(confidence: &[f64], correct: &[bool]) -> (Vec<(f64, f64)>, f64) {
    let n = confidence.len();
    if n == 0 {
        return (Vec::new(), 0.0);
    }
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| confidence[b].total_cmp(&confidence[a]));
    let mut errors = 0u64;
    let mut curve = Vec::new();
    let mut aurc = 0.0;
    for (i, &j) in idx.iter().enumerate() {
        errors += u64::from(!correct[j]);
        let risk = errors as f64 / (i + 1) as f64;
        aurc += risk;
        let last_of_level = i + 1 == n || confidence[idx[i + 1]] != confidence[j];
        if last_of_level {
            curve.push(((i + 1) as f64 / n as f64, risk));
        }
    }
    (curve, aurc / n as f64)
}

/// Area under the ROC curve of `score` for `positive` (Mann-Whitney, ties count half).
pub fn auroc(score: &[f64], positive: &[bool]) -> Option<f64> {
    let mut idx: Vec<usize> = (0..score.len()).collect();
    idx.sort_by(|&a, &b| score[a].total_cmp(&score[b]));
    let (mut rank_sum, mut n_pos) = (0f64, 0u64);
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && score[idx[j + 1]] == score[idx[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            if positive[k] {
                rank_sum += avg_rank;
                n_pos += 1;
            }
        }
        i = j + 1;
    }
    let n_neg = score.len() as u64 - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let u = rank_sum - (n_pos * (n_pos + 1)) as f64 / 2.0;
    Some(u / (n_pos * n_neg) as f64)
}

/// Multi-label scores over multi-hot gold/pred rows.
#[derive(Debug, Clone, Serialize)]
pub struct MultiReport {
    pub n: u64,
    pub micro_f1: f64,
    pub macro_f1: f64,
    pub exact_match: f64,
    pub per_label: Vec<LabelScore>,
}

pub fn multi_report(gold: &[Vec<bool>], pred: &[Vec<bool>], labels: &[String]) -> MultiReport {
    let k = labels.len();
    let (mut tp, mut fp, mut fn_) = (vec![0u64; k], vec![0u64; k], vec![0u64; k]);
    let mut exact = 0u64;
    for (g, p) in gold.iter().zip(pred) {
        exact += u64::from(g == p);
        for i in 0..k {
            match (g[i], p[i]) {
                (true, true) => tp[i] += 1,
                (false, true) => fp[i] += 1,
                (true, false) => fn_[i] += 1,
                _ => {}
            }
        }
    }
    let mut per_label = Vec::with_capacity(k);
    let (mut sum, mut m) = (0.0, 0usize);
    for i in 0..k {
        let precision = ratio(tp[i], tp[i] + fp[i]);
        let recall = ratio(tp[i], tp[i] + fn_[i]);
        let f = f1(precision, recall);
        if tp[i] + fp[i] + fn_[i] > 0 {
            sum += f;
            m += 1;
        }
        per_label.push(LabelScore {
            label: labels[i].clone(),
            precision,
            recall,
            f1: f,
            support: tp[i] + fn_[i],
        });
    }
    let (t, p, f): (u64, u64, u64) = (tp.iter().sum(), fp.iter().sum(), fn_.iter().sum());
    MultiReport {
        n: gold.len() as u64,
        micro_f1: f1(ratio(t, t + p), ratio(t, t + f)),
        macro_f1: if m == 0 { 0.0 } else { sum / m as f64 },
        exact_match: ratio(exact, gold.len() as u64),
        per_label,
    }
}

/// ln Gamma (Lanczos, g = 7, n = 9), accurate to ~1e-15 for x > 0.
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Continued fraction of the incomplete beta (Numerical Recipes `betacf`).
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let tiny = 1e-300;
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < tiny {
        d = tiny;
    }
    d = 1.0 / d;
    let mut h = d;
    // One modified-Lentz step: returns the factor d * c.
    let lentz = |aa: f64, c: &mut f64, d: &mut f64| {
        *d = 1.0 + aa * *d;
        if d.abs() < tiny {
            *d = tiny;
        }
        *c = 1.0 + aa / *c;
        if c.abs() < tiny {
            *c = tiny;
        }
        *d = 1.0 / *d;
        *d * *c
    };
    for m in 1..=300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        h *= lentz(m * (b - m) * x / ((qam + m2) * (a + m2)), &mut c, &mut d);
        let del = lentz(
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
            &mut c,
            &mut d,
        );
        h *= del;
        if (del - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// Regularised incomplete beta I_x(a, b).
pub fn beta_inc(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_cf(a, b, x) / a
    } else {
        1.0 - ln_front.exp() * beta_cf(b, a, 1.0 - x) / b
    }
}

/// Clopper-Pearson one-sided upper bound on an error rate: with `k` errors
/// in `n` trials, the rate is below the bound with confidence `1 - delta`
/// (the `1 - delta` quantile of Beta(k + 1, n - k); 1 when k = n).
pub fn clopper_pearson_upper(k: u64, n: u64, delta: f64) -> f64 {
    if n == 0 || k >= n {
        return 1.0;
    }
    let (a, b) = (k as f64 + 1.0, (n - k) as f64);
    let target = 1.0 - delta;
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if beta_inc(a, b, mid) < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() < tol, "{a} vs {b}");
    }

    // from sklearn.metrics import *
    // y = [0,0,1,1,2,2,2,0]; p = [0,1,1,1,2,0,2,2]
    // accuracy_score(y,p) = 0.625
    // f1_score(y,p,average='macro') = 0.6222222222222222
    // f1_score(y,p,average='weighted') = 0.6000000000000001
    // precision_recall_fscore_support(y,p): p=[0.5, 0.6667, 0.6667], r=[0.3333, 1, 0.6667]
    // confusion_matrix(y,p) = [[1,1,1],[0,2,0],[1,0,2]]
    #[test]
    fn class_report_matches_sklearn() {
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let r = class_report(
            &[0, 0, 1, 1, 2, 2, 2, 0],
            &[0, 1, 1, 1, 2, 0, 2, 2],
            &labels,
        );
        close(r.accuracy, 0.625, 1e-12);
        close(r.macro_f1, 0.622_222_222_222_222_2, 1e-12);
        close(r.weighted_f1, 0.6, 1e-12);
        close(r.per_label[0].f1, 0.4, 1e-12);
        close(r.per_label[0].precision, 0.5, 1e-12);
        close(r.per_label[0].recall, 1.0 / 3.0, 1e-12);
        close(r.per_label[1].precision, 2.0 / 3.0, 1e-12);
        assert_eq!(
            r.confusion,
            vec![vec![1, 1, 1], vec![0, 2, 0], vec![1, 0, 2]]
        );
        assert_eq!(top_confusions(&r.confusion, 2), vec![(0, 1, 1), (0, 2, 1)]);
    }

    // from sklearn.metrics import roc_auc_score
    // roc_auc_score([1,0,1,1,0,0,1], [0.9,0.8,0.8,0.6,0.3,0.6,0.2]) = 0.5833333333333333
    #[test]
    fn auroc_matches_sklearn_with_ties() {
        let a = auroc(
            &[0.9, 0.8, 0.8, 0.6, 0.3, 0.6, 0.2],
            &[true, false, true, true, false, false, true],
        )
        .unwrap();
        close(a, 0.583_333_333_333_333_3, 1e-12);
        assert!(auroc(&[0.1, 0.2], &[true, true]).is_none());
    }

    // ECE by hand: confidences [0.95,0.9,0.8,0.65,0.55], correct [1,1,0,1,0], 10 bins:
    // bins (0.9,1]: {0.95} conf .95 acc 1; (0.8,0.9]: {0.9} .9 vs 1; (0.7,0.8]: {0.8} .8 vs 0;
    // (0.6,0.7]: {.65} vs 1; (0.5,0.6]: {.55} vs 0 -> (0.05+0.1+0.8+0.35+0.55)/5 = 0.37
    #[test]
    fn ece_by_hand() {
        let (e, bins) = ece(
            &[0.95, 0.9, 0.8, 0.65, 0.55],
            &[true, true, false, true, false],
            10,
        );
        close(e, 0.37, 1e-12);
        assert_eq!(bins.iter().map(|b| b.count).sum::<u64>(), 5);
        assert_eq!(bins[8].count, 1, "0.9 falls in (0.8, 0.9]");
    }

    // Selective risk after each of 4 rows sorted by confidence [.9,.8,.7,.6],
    // correct [1,0,1,0]: risks 0, 1/2, 1/3, 1/2 -> AURC = (0+.5+.3333+.5)/4
    #[test]
    fn aurc_by_hand() {
        let (curve, aurc) = risk_coverage(&[0.7, 0.9, 0.6, 0.8], &[true, true, false, false]);
        close(aurc, (0.0 + 0.5 + 1.0 / 3.0 + 0.5) / 4.0, 1e-12);
        assert_eq!(curve.len(), 4);
        close(curve[3].0, 1.0, 1e-12);
    }

    // from sklearn.metrics import f1_score, accuracy_score
    // Y = [[1,0,1],[0,1,0],[1,1,0]]; P = [[1,0,0],[0,1,0],[1,0,1]]
    // f1_score(Y,P,average='micro') = 0.6666666666666666
    // f1_score(Y,P,average='macro') = 0.5555555555555555 ; accuracy_score(Y,P) = 0.3333333333333333
    #[test]
    fn multilabel_matches_sklearn() {
        let g = vec![
            vec![true, false, true],
            vec![false, true, false],
            vec![true, true, false],
        ];
        let p = vec![
            vec![true, false, false],
            vec![false, true, false],
            vec![true, false, true],
        ];
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let r = multi_report(&g, &p, &labels);
        close(r.micro_f1, 2.0 / 3.0, 1e-12);
        close(r.macro_f1, 5.0 / 9.0, 1e-12);
        close(r.exact_match, 1.0 / 3.0, 1e-12);
    }

    // from scipy.stats import beta
    // beta.ppf(0.95, 1, 100) = 0.029513049607039925  (k=0, n=100)
    // beta.ppf(0.95, 6, 95)  = 0.1022533776432745    (k=5, n=100)
    // beta.ppf(0.99, 3, 998) = 0.008379068264742159  (k=2, n=1000, delta=0.01)
    #[test]
    fn clopper_pearson_matches_scipy() {
        close(
            clopper_pearson_upper(0, 100, 0.05),
            1.0 - 0.05f64.powf(1.0 / 100.0),
            1e-9,
        );
        close(
            clopper_pearson_upper(0, 100, 0.05),
            0.029_513_049_607_039_925,
            1e-12,
        );
        close(
            clopper_pearson_upper(5, 100, 0.05),
            0.102_253_377_643_274_5,
            1e-12,
        );
        close(
            clopper_pearson_upper(2, 1000, 0.01),
            0.008_379_068_264_742_159,
            1e-12,
        );
        assert_eq!(clopper_pearson_upper(3, 3, 0.05), 1.0);
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn metrics_stay_in_bounds(rows in proptest::collection::vec((0usize..4, 0usize..4, 0.0f64..=1.0), 1..200)) {
            let labels: Vec<String> = (0..4).map(|i| i.to_string()).collect();
            let gold: Vec<usize> = rows.iter().map(|r| r.0).collect();
            let pred: Vec<usize> = rows.iter().map(|r| r.1).collect();
            let conf: Vec<f64> = rows.iter().map(|r| r.2).collect();
            let correct: Vec<bool> = gold.iter().zip(&pred).map(|(g, p)| g == p).collect();
            let r = class_report(&gold, &pred, &labels);
            prop_assert!((0.0..=1.0).contains(&r.accuracy));
            prop_assert!((0.0..=1.0).contains(&r.macro_f1));
            prop_assert!((0.0..=1.0).contains(&r.weighted_f1));
            prop_assert_eq!(r.confusion.iter().flatten().sum::<u64>(), rows.len() as u64);
            let (e, bins) = ece(&conf, &correct, 15);
            prop_assert!((0.0..=1.0).contains(&e));
            prop_assert_eq!(bins.iter().map(|b| b.count).sum::<u64>(), rows.len() as u64);
            let (curve, aurc) = risk_coverage(&conf, &correct);
            prop_assert!((0.0..=1.0).contains(&aurc));
            let err = 1.0 - r.accuracy;
            prop_assert!((curve.last().unwrap().1 - err).abs() < 1e-12, "full coverage risk is the error rate");
            if let Some(a) = auroc(&conf, &correct) {
                let neg: Vec<f64> = conf.iter().map(|c| -c).collect();
                let b = auroc(&neg, &correct).unwrap();
                prop_assert!((0.0..=1.0).contains(&a));
                prop_assert!((a + b - 1.0).abs() < 1e-9, "reversing the score mirrors the AUROC");
            }
        }

        #[test]
        fn clopper_pearson_bounds_the_observed_rate(n in 1u64..2000, k_frac in 0.0f64..1.0, delta in 0.001f64..0.5) {
            let k = ((n as f64) * k_frac) as u64;
            let u = clopper_pearson_upper(k, n, delta);
            prop_assert!(u >= k as f64 / n as f64 - 1e-12 && u <= 1.0);
            prop_assert!(clopper_pearson_upper(k, n, delta / 2.0) >= u - 1e-12, "more confidence, wider bound");
        }
    }
}
