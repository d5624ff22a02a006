//! Near-duplicate detection: MinHash signatures over character shingles,
//! banded LSH for candidates, exact Jaccard to confirm.
//!
//! Rows are visited in a priority order; a row is a near duplicate if its
//! shingle-set Jaccard similarity with an earlier *kept* row is at least the
//! threshold, and it records that row. So the kept set is deterministic and
//! every dropped row names a kept row it really resembles (no chaining).

use rayon::prelude::*;
use rustc_hash::FxHashMap;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// MinHash parameters.
#[derive(Debug, Clone, Copy)]
pub struct MinHashParams {
    pub num_perm: usize,
    /// Shingle length in characters.
    pub shingle: usize,
    pub threshold: f64,
    pub seed: u64,
}

/// The recall [`bands_for`] guarantees at the threshold whenever `num_perm`
/// allows it: the probability that a pair whose Jaccard similarity is exactly
/// the threshold shares at least one band and so is compared at all.
pub const TARGET_RECALL: f64 = 0.99;

/// The LSH S-curve: the probability that a pair with Jaccard similarity `s`
/// becomes a candidate with `bands` bands of `rows` rows, `1 - (1 - s^r)^b`
/// (for an ideal min-wise hash family; it grows with `s`, so pairs above the
/// threshold are found at least as often as pairs at it).
pub fn candidate_probability(s: f64, bands: usize, rows: usize) -> f64 {
    let rows = i32::try_from(rows).unwrap_or(i32::MAX);
    let bands = i32::try_from(bands).unwrap_or(i32::MAX);
    1.0 - (1.0 - s.powi(rows)).powi(bands)
}

/// The lowest threshold at which `num_perm` permutations can reach
/// [`TARGET_RECALL`]: `1 - 0.01^(1/num_perm)` (one row per band is the best
/// split), 0.069 for 64 permutations, 0.035 for 128.
pub fn min_threshold_for_recall(num_perm: usize) -> f64 {
    1.0 - (1.0 - TARGET_RECALL).powf(1.0 / num_perm.max(1) as f64)
}

/// Pick (bands, rows per band) with `bands * rows <= num_perm`.
///
/// The first choice puts the S-curve midpoint `(1/b)^(1/r)` near 0.75 x
/// threshold: few false candidates (precision costs only time, since every
/// candidate is confirmed by exact Jaccard) and high recall. When that choice
/// misses [`TARGET_RECALL`] at the threshold (thresholds below about 0.8 with
/// 64 permutations), the split with the most rows per band that reaches it is
/// taken instead. So a pair at the threshold is compared with probability at
/// least 99% for every threshold >= [`min_threshold_for_recall`] (0.069 for
/// 64 permutations); below that no split can, and one row per band (the
/// highest recall) is used.
pub fn bands_for(threshold: f64, num_perm: usize) -> (usize, usize) {
    let num_perm = num_perm.max(1);
    let target = (threshold * 0.75).clamp(0.05, 0.95);
    let mut best = (num_perm, 1usize);
    let mut best_gap = f64::INFINITY;
    for rows in 1..=num_perm {
        let bands = num_perm / rows;
        let midpoint = (1.0 / bands as f64).powf(1.0 / rows as f64);
        let gap = (midpoint - target).abs();
        if gap < best_gap {
            best_gap = gap;
            best = (bands, rows);
        }
    }
    if candidate_probability(threshold, best.0, best.1) >= TARGET_RECALL {
        return best;
    }
    (1..=num_perm)
        .rev()
        .map(|rows| (num_perm / rows, rows))
        .find(|&(bands, rows)| candidate_probability(threshold, bands, rows) >= TARGET_RECALL)
        .unwrap_or((num_perm, 1))
}

/// Hashes of the character shingles of a text, sorted and de-duplicated.
/// The text is lower-cased and punctuation becomes space, so that
/// "Hi, there!" and "hi there" are the same for near-dedup.
pub fn shingles(text: &str, size: usize) -> Vec<u64> {
    let mut key = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        if c.is_alphanumeric() {
            if space && !key.is_empty() {
                key.push(' ');
            }
            space = false;
            key.extend(c.to_lowercase());
        } else {
            space = true;
        }
    }
    let chars: Vec<char> = key.chars().collect();
    let size = size.max(1);
    let mut out: Vec<u64> = if chars.len() <= size {
        vec![xxh3_64(key.as_bytes())]
    } else {
        let mut buf = String::new();
        chars
            .windows(size)
            .map(|w| {
                buf.clear();
                buf.extend(w);
                xxh3_64(buf.as_bytes())
            })
            .collect()
    };
    out.sort_unstable();
    out.dedup();
    out
}

/// Jaccard similarity of two sorted, de-duplicated sets.
pub fn jaccard(a: &[u64], b: &[u64]) -> f64 {
    let (mut i, mut j, mut inter) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                inter += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let union = a.len() + b.len() - inter;
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

/// Band keys of every text (`bands` 64-bit keys per text) and its shingle
/// set, computed in parallel once, so the sequential pass only compares.
fn band_keys(texts: &[&str], params: &MinHashParams) -> (Vec<u64>, usize, Vec<Vec<u64>>) {
    let (bands, rows) = bands_for(params.threshold, params.num_perm);
    let perms = bands * rows;
    // Multiply-shift hash family: h_i(x) = (a_i * x + b_i) >> 32, a_i odd.
    let coefficients: Vec<(u64, u64)> = (0..perms as u64)
        .map(|i| {
            let a = xxh3_64_with_seed(&i.to_le_bytes(), params.seed) | 1;
            let b = xxh3_64_with_seed(&(i + (1 << 32)).to_le_bytes(), params.seed);
            (a, b)
        })
        .collect();
    let per_text: Vec<(Vec<u64>, Vec<u64>)> = texts
        .par_iter()
        .map(|text| {
            let sh = shingles(text, params.shingle);
            let mut signature = vec![u32::MAX; perms];
            for &x in &sh {
                for (slot, &(a, b)) in signature.iter_mut().zip(&coefficients) {
                    let h = (a.wrapping_mul(x).wrapping_add(b) >> 32) as u32;
                    if h < *slot {
                        *slot = h;
                    }
                }
            }
            let keys: Vec<u64> = (0..bands)
                .map(|band| {
                    let chunk = &signature[band * rows..(band + 1) * rows];
                    let mut bytes = Vec::with_capacity(rows * 4);
                    for v in chunk {
                        bytes.extend_from_slice(&v.to_le_bytes());
                    }
                    xxh3_64_with_seed(&bytes, band as u64)
                })
                .collect();
            (keys, sh)
        })
        .collect();
    let mut keys = Vec::with_capacity(texts.len() * bands);
    let mut sets = Vec::with_capacity(texts.len());
    for (k, sh) in per_text {
        keys.extend(k);
        sets.push(sh);
    }
    (keys, bands, sets)
}

/// For each text, `Some(j)` if it is a near duplicate of kept text `j`.
///
/// `order` is the visiting priority (earlier rows are kept first); `group`
/// restricts matches: with `Some(groups)`, a row only matches rows of a
/// *different* group (the leakage check across splits), with `None` any row.
pub fn near_duplicates(
    texts: &[&str],
    order: &[usize],
    group: Option<&[u8]>,
    params: &MinHashParams,
) -> Vec<Option<usize>> {
    let (keys, bands, sets) = band_keys(texts, params);
    let mut buckets: FxHashMap<u64, Vec<u32>> = FxHashMap::default();
    let mut result = vec![None; texts.len()];
    let mut candidates: Vec<u32> = Vec::new();
    for &row in order {
        candidates.clear();
        for band in 0..bands {
            if let Some(members) = buckets.get(&keys[row * bands + band]) {
                candidates.extend_from_slice(members);
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        if let Some(g) = group {
            candidates.retain(|&c| g[c as usize] != g[row]);
        }
        let mut found = None;
        if !candidates.is_empty() {
            let mine = &sets[row];
            for &c in candidates.iter() {
                if jaccard(mine, &sets[c as usize]) >= params.threshold {
                    found = Some(c as usize);
                    break;
                }
            }
        }
        match found {
            Some(c) => result[row] = Some(c),
            None => {
                for band in 0..bands {
                    buckets
                        .entry(keys[row * bands + band])
                        .or_default()
                        .push(row as u32);
                }
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(threshold: f64) -> MinHashParams {
        MinHashParams {
            num_perm: 64,
            shingle: 5,
            threshold,
            seed: 7,
        }
    }

    #[test]
    fn finds_near_duplicates_and_keeps_distinct() {
        let texts = [
            "my card has not arrived yet, what should I do?",
            "my card has not arrived yet, what should I do",
            "how do I change my PIN number at an ATM?",
            "My card has not arrived yet what should I do?!",
            "completely unrelated sentence about the weather",
        ];
        let order: Vec<usize> = (0..texts.len()).collect();
        let dups = near_duplicates(&texts, &order, None, &params(0.8));
        assert_eq!(dups, vec![None, Some(0), None, Some(0), None]);
    }

    #[test]
    fn groups_only_match_across() {
        let texts = [
            "the same text here",
            "the same text here",
            "the same text here",
        ];
        let dups = near_duplicates(&texts, &[0, 1, 2], Some(&[0, 0, 1]), &params(0.9));
        assert_eq!(dups, vec![None, None, Some(0)]);
    }

    #[test]
    fn bands_make_sense() {
        let (b, r) = bands_for(0.8, 128);
        let mid = (1.0 / b as f64).powf(1.0 / r as f64);
        assert!(mid < 0.75 && mid > 0.5, "b={b} r={r} mid={mid}");
        assert!(b * r <= 128);
        assert!(candidate_probability(0.8, b, r) > 0.99);
        // The defaults of the shipped configs keep their bands.
        assert_eq!(bands_for(0.9, 64), (10, 6));
        assert_eq!(bands_for(0.85, 64), (12, 5));
    }

    #[test]
    fn recall_at_the_threshold_is_at_least_99_percent_wherever_possible() {
        for num_perm in [8, 16, 32, 64, 100, 128, 256, 1024] {
            let floor = min_threshold_for_recall(num_perm);
            // Below the floor no split of num_perm reaches the target.
            assert!(candidate_probability(floor * 0.99, num_perm, 1) < TARGET_RECALL);
            for step in 1..=100 {
                let threshold = f64::from(step) / 100.0;
                let (b, r) = bands_for(threshold, num_perm);
                assert!(
                    b >= 1 && r >= 1 && b * r <= num_perm,
                    "{num_perm} {threshold}"
                );
                let recall = candidate_probability(threshold, b, r);
                if threshold >= floor {
                    assert!(
                        recall >= TARGET_RECALL,
                        "num-perm {num_perm}, threshold {threshold}: b={b} r={r} recall {recall}"
                    );
                } else {
                    assert_eq!((b, r), (num_perm, 1), "the highest recall below the floor");
                }
            }
        }
        assert!((min_threshold_for_recall(64) - 0.0694).abs() < 1e-3);
    }

    /// The S-curve is what the index really does: pairs at the threshold are
    /// found about as often as it says (seeded, so deterministic).
    #[test]
    fn measured_recall_at_a_low_threshold_matches_the_s_curve() {
        // Two word lists sharing about half of their shingles (Jaccard 0.51),
        // the threshold set to exactly their similarity.
        let mut found = 0;
        let trials = 300;
        for i in 0..trials {
            let a: String = (0..40).map(|k| format!("w{i}x{k} ")).collect();
            let mut b: String = (0..27).map(|k| format!("w{i}x{k} ")).collect();
            b.extend((0..13).map(|k| format!("v{i}y{k} ")));
            let (sa, sb) = (shingles(&a, 5), shingles(&b, 5));
            let j = jaccard(&sa, &sb);
            let p = MinHashParams {
                num_perm: 64,
                shingle: 5,
                threshold: j,
                seed: i,
            };
            if near_duplicates(&[&a, &b], &[0, 1], None, &p)[1].is_some() {
                found += 1;
            }
        }
        assert!(
            found as f64 >= 0.97 * trials as f64,
            "found {found} of {trials} pairs at the threshold"
        );
    }

    #[test]
    fn jaccard_values() {
        assert_eq!(jaccard(&[1, 2, 3], &[2, 3, 4]), 0.5);
        assert_eq!(jaccard(&[], &[]), 1.0);
    }
}
