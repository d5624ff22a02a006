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

/// Pick (bands, rows per band) with bands * rows <= num_perm whose LSH
/// S-curve midpoint (1/b)^(1/r) sits near 0.75 x threshold: pairs at the
/// threshold then become candidates with high probability (recall), and the
/// exact Jaccard check removes the extra candidates (precision costs only time).
pub fn bands_for(threshold: f64, num_perm: usize) -> (usize, usize) {
    let target = (threshold * 0.75).clamp(0.05, 0.95);
    let mut best = (num_perm, 1usize);
    let mut best_gap = f64::INFINITY;
    for rows in 1..=num_perm {
        let bands = num_perm / rows;
        if bands == 0 {
            break;
        }
        let midpoint = (1.0 / bands as f64).powf(1.0 / rows as f64);
        let gap = (midpoint - target).abs();
        if gap < best_gap {
            best_gap = gap;
            best = (bands, rows);
        }
    }
    best
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
        // Probability that a pair at the threshold becomes a candidate.
        let p = 1.0 - (1.0 - 0.8f64.powi(r as i32)).powi(b as i32);
        assert!(p > 0.99, "recall at threshold {p}");
        let (b, r) = bands_for(0.8, 64);
        assert!(1.0 - (1.0 - 0.8f64.powi(r as i32)).powi(b as i32) > 0.99);
        assert!(b * r <= 128);
    }

    #[test]
    fn jaccard_values() {
        assert_eq!(jaccard(&[1, 2, 3], &[2, 3, 4]), 0.5);
        assert_eq!(jaccard(&[], &[]), 1.0);
    }
}
