//! The fast extraction tagger: hashed per-token features, one shared
//! embedding table, linear emissions over BIO tags, and a linear-chain CRF
//! whose decoding is constrained to valid BIO sequences (Viterbi), so every
//! output is a valid span set. An optional intent head on the mean of the
//! token vectors makes it a joint intent + slots model.
//!
//! Per token the features are: the lower-cased word, its neighbours within
//! `window`, the two bigrams through it, its shape (`Xxxx`, `dd`), prefixes
//! and suffixes up to 3 characters, and character n-grams of `<word>`, each
//! hashed (xxh3, one seed per template) into `buckets` rows. A token's vector
//! is the sum of its rows; rows no training feature touched stay zero and
//! are not stored. Host code throughout: the work is sparse gathers and a
//! K×K dynamic programme, microseconds per sentence.

// Dynamic programmes over tag indices read clearest with index loops.
#![allow(clippy::needless_range_loop)]

use crate::{Error, Result};
use distill_core::spans::TagSet;
use distill_core::types::Span;
use serde::{Deserialize, Serialize};
use std::path::Path;
use unicode_normalization::UnicodeNormalization;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Metadata file of a tagger (in `<run>/model/` and in bundles).
pub const TAGGER_FILE: &str = "tagger.json";
/// Weights file of a tagger.
pub const WEIGHTS_FILE: &str = "tagger.bin";
const MAGIC: &[u8; 8] = b"DTAGGER1";
const MAX_META_BYTES: u64 = 16 << 20;
const MAX_WEIGHTS_BYTES: u64 = 4 << 30;

/// `[model] kind = "tagger"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TaggerSpec {
    /// Hash buckets (rows of the feature table).
    #[serde(default = "d_buckets")]
    pub buckets: usize,
    /// Width of a token's vector.
    #[serde(default = "d_dim")]
    pub dim: usize,
    /// Neighbouring words on each side that are features of a token.
    #[serde(default = "d_window")]
    pub window: usize,
    /// Character n-gram lengths of `<word>` (none: off).
    #[serde(default = "d_char_ngrams")]
    pub char_ngrams: Option<[usize; 2]>,
    /// Tokens tagged per text; the rest are left untagged (reported).
    #[serde(default = "d_max_tokens")]
    pub max_tokens: usize,
    /// Training: each feature of each token is dropped with this probability.
    #[serde(default = "d_feature_dropout")]
    pub feature_dropout: f64,
    /// Joint models: weight of the intent loss next to the CRF loss.
    #[serde(default = "d_intent_weight")]
    pub intent_weight: f64,
}

fn d_buckets() -> usize {
    1 << 18
}
fn d_dim() -> usize {
    64
}
fn d_window() -> usize {
    2
}
fn d_char_ngrams() -> Option<[usize; 2]> {
    Some([3, 4])
}
fn d_max_tokens() -> usize {
    128
}
fn d_feature_dropout() -> f64 {
    0.1
}
fn d_intent_weight() -> f64 {
    1.0
}

impl Default for TaggerSpec {
    fn default() -> Self {
        TaggerSpec {
            buckets: d_buckets(),
            dim: d_dim(),
            window: d_window(),
            char_ngrams: d_char_ngrams(),
            max_tokens: d_max_tokens(),
            feature_dropout: d_feature_dropout(),
            intent_weight: d_intent_weight(),
        }
    }
}

impl TaggerSpec {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Spec(m));
        if !(2..=1 << 24).contains(&self.buckets) {
            return bad(format!(
                "tagger buckets {} must be in 2..=2^24",
                self.buckets
            ));
        }
        if !(1..=1024).contains(&self.dim) {
            return bad(format!("tagger dim {} must be in 1..=1024", self.dim));
        }
        if self.window > 8 {
            return bad(format!("tagger window {} must be at most 8", self.window));
        }
        if let Some([lo, hi]) = self.char_ngrams
            && !(1 <= lo && lo <= hi && hi <= 8)
        {
            return bad(format!(
                "tagger char-ngrams [{lo}, {hi}] must satisfy 1 <= lo <= hi <= 8"
            ));
        }
        if !(1..=4096).contains(&self.max_tokens) {
            return bad(format!(
                "tagger max-tokens {} must be in 1..=4096",
                self.max_tokens
            ));
        }
        if !(0.0..0.9).contains(&self.feature_dropout) {
            return bad(format!(
                "tagger feature-dropout {} must be in [0, 0.9)",
                self.feature_dropout
            ));
        }
        if !(self.intent_weight.is_finite() && self.intent_weight >= 0.0) {
            return bad("tagger intent-weight must be a finite number >= 0".into());
        }
        Ok(())
    }
}

/// A token: character offsets into the text it came from, and its text.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub start: usize,
    pub end: usize,
    pub text: String,
}

/// Words (runs of letters, digits, `'` and `_`) and single punctuation
/// characters, with character offsets; at most `max` tokens. Returns the
/// tokens and whether the text had more.
pub fn tokenize(text: &str, max: usize) -> (Vec<Token>, bool) {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut cur_start = 0;
    let mut n = 0;
    for (i, c) in text.chars().enumerate() {
        n = i + 1;
        let word = c.is_alphanumeric() || c == '\'' || c == '_';
        if word {
            if cur.is_empty() {
                cur_start = i;
            }
            cur.push(c);
            continue;
        }
        if !cur.is_empty() {
            if out.len() == max {
                return (out, true);
            }
            out.push(Token {
                start: cur_start,
                end: i,
                text: std::mem::take(&mut cur),
            });
        }
        if !c.is_whitespace() && !c.is_control() {
            if out.len() == max {
                return (out, true);
            }
            out.push(Token {
                start: i,
                end: i + 1,
                text: c.to_string(),
            });
        }
    }
    if !cur.is_empty() {
        if out.len() == max {
            return (out, true);
        }
        out.push(Token {
            start: cur_start,
            end: n,
            text: cur,
        });
    }
    (out, false)
}

/// Character ranges of tokens.
pub fn ranges(tokens: &[Token]) -> Vec<(usize, usize)> {
    tokens.iter().map(|t| (t.start, t.end)).collect()
}

fn shape(word: &str) -> String {
    let mut out = String::new();
    let mut last = None;
    for c in word.chars() {
        let s = if c.is_uppercase() {
            'X'
        } else if c.is_lowercase() {
            'x'
        } else if c.is_numeric() {
            'd'
        } else {
            c
        };
        if last != Some(s) {
            out.push(s);
            last = Some(s);
        }
    }
    out
}

/// Feature templates (each is its own hash seed).
mod tpl {
    pub const BIAS: u64 = 1;
    pub const WORD: u64 = 2;
    pub const LEFT: u64 = 10; // + distance
    pub const RIGHT: u64 = 20; // + distance
    pub const BI_LEFT: u64 = 30;
    pub const BI_RIGHT: u64 = 31;
    pub const SHAPE: u64 = 32;
    pub const PREFIX: u64 = 40; // + length
    pub const SUFFIX: u64 = 50; // + length
    pub const CHAR: u64 = 60;
    pub const FIRST: u64 = 61;
    pub const LAST: u64 = 62;
}

/// The hashed features of each token.
pub fn features(spec: &TaggerSpec, tokens: &[Token]) -> Vec<Vec<u32>> {
    let words: Vec<String> = tokens
        .iter()
        .map(|t| t.text.nfkc().flat_map(char::to_lowercase).collect())
        .collect();
    let buckets = spec.buckets as u64;
    let h = |template: u64, bytes: &[u8]| {
        (xxh3_64_with_seed(bytes, 0xD15_7A66 ^ (template << 32)) % buckets) as u32
    };
    let word_at = |i: isize| -> &str {
        if i < 0 {
            "<s>"
        } else if i as usize >= words.len() {
            "</s>"
        } else {
            &words[i as usize]
        }
    };
    let mut out = Vec::with_capacity(tokens.len());
    let mut buf = String::new();
    for (i, w) in words.iter().enumerate() {
        let ii = i as isize;
        let mut f = Vec::with_capacity(24);
        f.push(h(tpl::BIAS, b""));
        f.push(h(tpl::WORD, w.as_bytes()));
        for d in 1..=spec.window {
            let d64 = d as u64;
            f.push(h(tpl::LEFT + d64, word_at(ii - d as isize).as_bytes()));
            f.push(h(tpl::RIGHT + d64, word_at(ii + d as isize).as_bytes()));
        }
        buf.clear();
        buf.push_str(word_at(ii - 1));
        buf.push(' ');
        buf.push_str(w);
        f.push(h(tpl::BI_LEFT, buf.as_bytes()));
        buf.clear();
        buf.push_str(w);
        buf.push(' ');
        buf.push_str(word_at(ii + 1));
        f.push(h(tpl::BI_RIGHT, buf.as_bytes()));
        f.push(h(tpl::SHAPE, shape(&tokens[i].text).as_bytes()));
        if i == 0 {
            f.push(h(tpl::FIRST, b""));
        }
        if i + 1 == words.len() {
            f.push(h(tpl::LAST, b""));
        }
        let chars: Vec<char> = w.chars().take(64).collect();
        for n in 1..=3.min(chars.len()) {
            buf.clear();
            buf.extend(&chars[..n]);
            f.push(h(tpl::PREFIX + n as u64, buf.as_bytes()));
            buf.clear();
            buf.extend(&chars[chars.len() - n..]);
            f.push(h(tpl::SUFFIX + n as u64, buf.as_bytes()));
        }
        if let Some([lo, hi]) = spec.char_ngrams {
            let mut padded = Vec::with_capacity(chars.len() + 2);
            padded.push('<');
            padded.extend(&chars);
            padded.push('>');
            for n in lo..=hi.min(padded.len().saturating_sub(1)) {
                for gram in padded.windows(n) {
                    buf.clear();
                    buf.extend(gram);
                    f.push(h(tpl::CHAR, buf.as_bytes()));
                }
            }
        }
        out.push(f);
    }
    out
}

/// The parameters of a tagger. `K` tags, `C` intents (0: no intent head).
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    pub dim: usize,
    pub tags: usize,
    pub intents: usize,
    /// Emissions `K × dim` and bias `K`.
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    /// Transition scores `K × K` (`[prev * K + next]`), start and end scores.
    pub trans: Vec<f32>,
    pub start: Vec<f32>,
    pub end: Vec<f32>,
    /// Intent head `C × dim` and bias `C`.
    pub u: Vec<f32>,
    pub c: Vec<f32>,
}

impl Weights {
    pub fn zeros(dim: usize, tags: usize, intents: usize) -> Self {
        Weights {
            dim,
            tags,
            intents,
            w: vec![0.0; tags * dim],
            b: vec![0.0; tags],
            trans: vec![0.0; tags * tags],
            start: vec![0.0; tags],
            end: vec![0.0; tags],
            u: vec![0.0; intents * dim],
            c: vec![0.0; intents],
        }
    }

    /// Every dense parameter, in file order, for the optimiser and I/O.
    pub fn parts_mut(&mut self) -> [&mut Vec<f32>; 7] {
        [
            &mut self.w,
            &mut self.b,
            &mut self.trans,
            &mut self.start,
            &mut self.end,
            &mut self.u,
            &mut self.c,
        ]
    }

    pub fn parts(&self) -> [&Vec<f32>; 7] {
        [
            &self.w,
            &self.b,
            &self.trans,
            &self.start,
            &self.end,
            &self.u,
            &self.c,
        ]
    }

    fn len(&self) -> usize {
        self.parts().iter().map(|p| p.len()).sum()
    }
}

/// Token vectors: the sum of each token's feature rows (`T × dim`).
pub fn hidden<'a>(
    feats: &[Vec<u32>],
    dim: usize,
    row: impl Fn(u32) -> Option<&'a [f32]>,
) -> Vec<f32> {
    let mut h = vec![0f32; feats.len() * dim];
    for (t, f) in feats.iter().enumerate() {
        let out = &mut h[t * dim..(t + 1) * dim];
        for r in f.iter().filter_map(|&id| row(id)) {
            for (o, v) in out.iter_mut().zip(r) {
                *o += v;
            }
        }
    }
    h
}

/// Emission scores `T × K` from token vectors.
pub fn emissions(w: &Weights, h: &[f32]) -> Vec<f32> {
    let (d, k) = (w.dim, w.tags);
    let t_len = h.len() / d.max(1);
    let mut em = vec![0f32; t_len * k];
    for t in 0..t_len {
        let ht = &h[t * d..(t + 1) * d];
        for j in 0..k {
            let wj = &w.w[j * d..(j + 1) * d];
            em[t * k + j] = w.b[j] + dot(wj, ht);
        }
    }
    em
}

#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// The BIO constraints as score masks.
#[derive(Debug, Clone)]
pub struct Constraints {
    k: usize,
    /// `[prev * K + next]`.
    pair: Vec<bool>,
    first: Vec<bool>,
}

impl Constraints {
    pub fn new(tags: &TagSet) -> Self {
        let k = tags.len();
        let mut pair = vec![false; k * k];
        for p in 0..k {
            for n in 0..k {
                pair[p * k + n] = tags.allowed(Some(p), n);
            }
        }
        let first = (0..k).map(|n| tags.allowed(None, n)).collect();
        Constraints { k, pair, first }
    }

    pub fn ok(&self, prev: usize, next: usize) -> bool {
        self.pair[prev * self.k + next]
    }

    pub fn first_ok(&self, tag: usize) -> bool {
        self.first[tag]
    }
}

const NEG: f64 = -1e30;

/// The best valid tag sequence (Viterbi).
pub fn viterbi(w: &Weights, em: &[f32], cons: &Constraints) -> Vec<usize> {
    let k = w.tags;
    let t_len = em.len() / k;
    if t_len == 0 {
        return Vec::new();
    }
    let mut score = vec![NEG; k];
    for j in 0..k {
        if cons.first_ok(j) {
            score[j] = (w.start[j] + em[j]) as f64;
        }
    }
    let mut back = vec![0u16; t_len * k];
    let mut next = vec![NEG; k];
    for t in 1..t_len {
        for j in 0..k {
            let mut best = NEG;
            let mut arg = 0;
            for i in 0..k {
                if cons.ok(i, j) && score[i] > NEG {
                    let s = score[i] + w.trans[i * k + j] as f64;
                    if s > best {
                        best = s;
                        arg = i;
                    }
                }
            }
            next[j] = if best > NEG {
                best + em[t * k + j] as f64
            } else {
                NEG
            };
            back[t * k + j] = arg as u16;
        }
        std::mem::swap(&mut score, &mut next);
    }
    let mut last = 0;
    let mut best = f64::NEG_INFINITY;
    for j in 0..k {
        let s = score[j] + w.end[j] as f64;
        if score[j] > NEG && s > best {
            best = s;
            last = j;
        }
    }
    backtrack(&back, k, last)
}

/// The path ending in tag `last`, from back pointers (`T × K`).
fn backtrack(back: &[u16], k: usize, last: usize) -> Vec<usize> {
    let t_len = back.len() / k.max(1);
    let mut path = vec![0usize; t_len];
    if t_len == 0 {
        return path;
    }
    path[t_len - 1] = last;
    for t in (1..t_len).rev() {
        path[t - 1] = back[t * k + path[t]] as usize;
    }
    path
}

/// The forward-backward lattice over valid tag sequences, in probability
/// space with per-step scaling (`T·K²` multiply-adds, `T·K` exponentials).
#[derive(Debug, Clone)]
pub struct Lattice {
    k: usize,
    /// Scaled forward and backward tables (`T × K`).
    a: Vec<f64>,
    b: Vec<f64>,
    /// Per-step normalisers of `a`.
    c: Vec<f64>,
    /// `exp(em - max_t)` (`T × K`).
    e: Vec<f64>,
    /// `exp(trans)`, zero where the transition is not allowed (`K × K`).
    m: Vec<f64>,
    zend: f64,
    /// log of the partition function.
    pub logz: f64,
}

impl Lattice {
    pub fn new(w: &Weights, em: &[f32], cons: &Constraints) -> Self {
        let k = w.tags;
        let t_len = em.len() / k.max(1);
        let m: Vec<f64> = (0..k * k)
            .map(|x| {
                if cons.ok(x / k, x % k) {
                    (w.trans[x] as f64).exp()
                } else {
                    0.0
                }
            })
            .collect();
        let mut e = vec![0f64; t_len * k];
        let mut logz = 0.0;
        for t in 0..t_len {
            let row = &em[t * k..(t + 1) * k];
            let mx = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            logz += mx;
            for j in 0..k {
                e[t * k + j] = (row[j] as f64 - mx).exp();
            }
        }
        let mut a = vec![0f64; t_len * k];
        let mut c = vec![1f64; t_len];
        let mut b = vec![0f64; t_len * k];
        if t_len == 0 {
            return Lattice {
                k,
                a,
                b,
                c,
                e,
                m,
                zend: 1.0,
                logz: 0.0,
            };
        }
        for j in 0..k {
            if cons.first_ok(j) {
                a[j] = (w.start[j] as f64).exp() * e[j];
            }
        }
        for t in 0..t_len {
            if t > 0 {
                for j in 0..k {
                    let mut s = 0.0;
                    for i in 0..k {
                        s += a[(t - 1) * k + i] * m[i * k + j];
                    }
                    a[t * k + j] = s * e[t * k + j];
                }
            }
            let sum: f64 = a[t * k..(t + 1) * k].iter().sum();
            let sum = if sum > 0.0 { sum } else { f64::MIN_POSITIVE };
            c[t] = sum;
            a[t * k..(t + 1) * k].iter_mut().for_each(|v| *v /= sum);
            logz += sum.ln();
        }
        let last = t_len - 1;
        for j in 0..k {
            b[last * k + j] = (w.end[j] as f64).exp();
        }
        for t in (0..last).rev() {
            for i in 0..k {
                let mut s = 0.0;
                for j in 0..k {
                    s += m[i * k + j] * e[(t + 1) * k + j] * b[(t + 1) * k + j];
                }
                b[t * k + i] = s / c[t + 1];
            }
        }
        let zend: f64 = (0..k).map(|j| a[last * k + j] * b[last * k + j]).sum();
        let zend = if zend > 0.0 { zend } else { f64::MIN_POSITIVE };
        logz += zend.ln();
        Lattice {
            k,
            a,
            b,
            c,
            e,
            m,
            zend,
            logz,
        }
    }

    /// Token marginals `P(tag_t = j | text)` (`T × K`).
    pub fn marginals(&self) -> Vec<f64> {
        self.a
            .iter()
            .zip(&self.b)
            .map(|(a, b)| a * b / self.zend)
            .collect()
    }

    /// `P(tag_{t-1} = i, tag_t = j | text)`, for `t >= 1`.
    pub fn pair(&self, t: usize, i: usize, j: usize) -> f64 {
        let k = self.k;
        self.a[(t - 1) * k + i] * self.m[i * k + j] * self.e[t * k + j] * self.b[t * k + j]
            / (self.c[t] * self.zend)
    }
}

/// The inference-time CRF: the BIO structure compiled into contiguous
/// tables, so decoding is a few vectorisable passes in f32. An `I-x` tag
/// follows only `B-x` or `I-x` (two candidates); `O` and `B-` tags follow
/// anything (`ob`: their indices). Gives the same path as [`viterbi`] and
/// the marginals of [`Lattice`] (checked by a test), several times faster.
#[derive(Debug, Clone)]
pub struct Crf {
    k: usize,
    ob: Vec<usize>,
    /// `trans[i][ob[jj]]` at `[jj * K + i]`, and its `exp`.
    tf: Vec<f32>,
    mf: Vec<f32>,
    trans: Vec<f32>,
    exp_trans: Vec<f32>,
    start: Vec<f32>,
    end: Vec<f32>,
    exp_start: Vec<f32>,
    exp_end: Vec<f32>,
}

const NEG32: f32 = -1e30;

impl Crf {
    pub fn new(w: &Weights, tags: &TagSet) -> Self {
        let k = w.tags;
        let ob: Vec<usize> = (0..k).filter(|&j| j == 0 || j % 2 == 1).collect();
        let mut tf = vec![0f32; ob.len() * k];
        for (jj, &j) in ob.iter().enumerate() {
            for i in 0..k {
                tf[jj * k + i] = w.trans[i * k + j];
            }
        }
        let mf = tf.iter().map(|v| v.exp()).collect();
        let start: Vec<f32> = (0..k)
            .map(|j| {
                if tags.allowed(None, j) {
                    w.start[j]
                } else {
                    NEG32
                }
            })
            .collect();
        Crf {
            k,
            ob,
            mf,
            tf,
            exp_trans: w.trans.iter().map(|v| v.exp()).collect(),
            trans: w.trans.clone(),
            exp_start: start
                .iter()
                .map(|v| if *v <= NEG32 { 0.0 } else { v.exp() })
                .collect(),
            start,
            exp_end: w.end.iter().map(|v| v.exp()).collect(),
            end: w.end.clone(),
        }
    }

    /// The best valid path and, per token, the marginal of its tag.
    pub fn decode(&self, em: &[f32]) -> (Vec<usize>, Vec<f64>) {
        let k = self.k;
        let t_len = em.len() / k.max(1);
        if t_len == 0 {
            return (Vec::new(), Vec::new());
        }
        // Viterbi.
        let mut score: Vec<f32> = (0..k).map(|j| self.start[j] + em[j]).collect();
        let mut next = vec![NEG32; k];
        let mut back = vec![0u16; t_len * k];
        for t in 1..t_len {
            let e = &em[t * k..(t + 1) * k];
            for (jj, &j) in self.ob.iter().enumerate() {
                let (best, arg) = max_plus(&score, &self.tf[jj * k..(jj + 1) * k]);
                next[j] = best + e[j];
                back[t * k + j] = arg as u16;
            }
            for j in (2..k).step_by(2) {
                let (bi, ii) = (j - 1, j);
                let from_b = score[bi] + self.trans[bi * k + j];
                let from_i = score[ii] + self.trans[ii * k + j];
                let (best, arg) = if from_i > from_b {
                    (from_i, ii)
                } else {
                    (from_b, bi)
                };
                next[j] = if best > NEG32 * 0.5 {
                    best + e[j]
                } else {
                    NEG32
                };
                back[t * k + j] = arg as u16;
            }
            std::mem::swap(&mut score, &mut next);
        }
        let mut last = 0;
        let mut best = f32::NEG_INFINITY;
        for j in 0..k {
            let s = score[j] + self.end[j];
            if score[j] > NEG32 * 0.5 && s > best {
                best = s;
                last = j;
            }
        }
        let path = backtrack(&back, k, last);
        // Forward-backward in probability space, scaled per step.
        let mut e = vec![0f32; t_len * k];
        for t in 0..t_len {
            let row = &em[t * k..(t + 1) * k];
            let mx = max_lanes(row);
            for (o, v) in e[t * k..(t + 1) * k].iter_mut().zip(row) {
                *o = (v - mx).exp();
            }
        }
        let mut a = vec![0f32; t_len * k];
        let mut c = vec![1f32; t_len];
        for j in 0..k {
            a[j] = self.exp_start[j] * e[j];
        }
        for t in 0..t_len {
            if t > 0 {
                let (prev, cur) = a.split_at_mut(t * k);
                let prev = &prev[(t - 1) * k..];
                let cur = &mut cur[..k];
                for (jj, &j) in self.ob.iter().enumerate() {
                    cur[j] = dot(prev, &self.mf[jj * k..(jj + 1) * k]) * e[t * k + j];
                }
                for j in (2..k).step_by(2) {
                    cur[j] = (prev[j - 1] * self.exp_trans[(j - 1) * k + j]
                        + prev[j] * self.exp_trans[j * k + j])
                        * e[t * k + j];
                }
            }
            let sum: f32 = a[t * k..(t + 1) * k].iter().sum();
            let sum = if sum > 0.0 { sum } else { f32::MIN_POSITIVE };
            c[t] = sum;
            a[t * k..(t + 1) * k].iter_mut().for_each(|v| *v /= sum);
        }
        let mut b = vec![0f32; t_len * k];
        b[(t_len - 1) * k..].copy_from_slice(&self.exp_end);
        let mut v = vec![0f32; k];
        for t in (0..t_len - 1).rev() {
            for j in 0..k {
                v[j] = e[(t + 1) * k + j] * b[(t + 1) * k + j] / c[t + 1];
            }
            let bt = &mut b[t * k..(t + 1) * k];
            for (jj, &j) in self.ob.iter().enumerate() {
                let vj = v[j];
                for (o, m) in bt.iter_mut().zip(&self.mf[jj * k..(jj + 1) * k]) {
                    *o += m * vj;
                }
            }
            for j in (2..k).step_by(2) {
                bt[j - 1] += self.exp_trans[(j - 1) * k + j] * v[j];
                bt[j] += self.exp_trans[j * k + j] * v[j];
            }
        }
        let last_row = (t_len - 1) * k;
        let zend: f32 = (0..k).map(|j| a[last_row + j] * b[last_row + j]).sum();
        let zend = if zend > 0.0 { zend } else { f32::MIN_POSITIVE };
        let conf = path
            .iter()
            .enumerate()
            .map(|(t, &j)| ((a[t * k + j] * b[t * k + j] / zend) as f64).min(1.0))
            .collect();
        (path, conf)
    }
}

fn max_lanes(v: &[f32]) -> f32 {
    let mut m = [f32::NEG_INFINITY; 8];
    let chunks = v.chunks_exact(8);
    let rest = chunks.remainder();
    for ch in chunks {
        for l in 0..8 {
            m[l] = if ch[l] > m[l] { ch[l] } else { m[l] };
        }
    }
    let mut best = f32::NEG_INFINITY;
    for x in m.iter().chain(rest) {
        if *x > best {
            best = *x;
        }
    }
    best
}

/// `max_i a[i] + b[i]` and the first `i` reaching it, in 8 lanes.
fn max_plus(a: &[f32], b: &[f32]) -> (f32, usize) {
    let mut bv = [f32::NEG_INFINITY; 8];
    let mut bi = [0u32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (c, (x, y)) in ca.zip(cb).enumerate() {
        for l in 0..8 {
            let v = x[l] + y[l];
            let gt = v > bv[l];
            bv[l] = if gt { v } else { bv[l] };
            bi[l] = if gt { (c * 8 + l) as u32 } else { bi[l] };
        }
    }
    let mut best = f32::NEG_INFINITY;
    let mut arg = usize::MAX;
    for l in 0..8 {
        let i = bi[l] as usize;
        if bv[l] > best || (bv[l] == best && i < arg) {
            best = bv[l];
            arg = i;
        }
    }
    let base = a.len() - ra.len();
    for (o, (x, y)) in ra.iter().zip(rb).enumerate() {
        let v = x + y;
        if v > best {
            best = v;
            arg = base + o;
        }
    }
    (best, if arg == usize::MAX { 0 } else { arg })
}

/// Softmax of the intent head over the mean token vector.
pub fn intent_probs(w: &Weights, h: &[f32]) -> Vec<f32> {
    let d = w.dim;
    let t_len = (h.len() / d.max(1)).max(1);
    let mut mean = vec![0f32; d];
    for ht in h.chunks(d) {
        for (m, v) in mean.iter_mut().zip(ht) {
            *m += v / t_len as f32;
        }
    }
    let logits: Vec<f32> = (0..w.intents)
        .map(|c| w.c[c] + dot(&w.u[c * d..(c + 1) * d], &mean))
        .collect();
    softmax(&logits)
}

pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = logits.iter().map(|x| (x - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

/// A predicted span with its text and confidence (the smallest marginal of
/// its tokens' tags).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Field {
    pub label: String,
    pub text: String,
    pub start: usize,
    pub end: usize,
    pub confidence: f64,
}

/// What the tagger says about one text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Extraction {
    pub fields: Vec<Field>,
    /// The smallest marginal of any token's predicted tag (`O` included):
    /// how sure the model is of the whole span set.
    pub confidence: f64,
    /// Joint models: the intent and its probability.
    pub intent: Option<(String, f64)>,
    /// The text had more tokens than `max-tokens`; the rest were not tagged.
    pub truncated: bool,
}

impl Extraction {
    pub fn spans(&self) -> Vec<Span> {
        self.fields
            .iter()
            .map(|f| Span {
                start: f.start,
                end: f.end,
                label: f.label.clone(),
            })
            .collect()
    }
}

/// Decode one text: Viterbi tags, spans, marginal confidences, intent.
pub fn extract(
    spec: &TaggerSpec,
    tags: &TagSet,
    intents: &[String],
    w: &Weights,
    crf: &Crf,
    text: &str,
    hidden_of: impl Fn(&[Vec<u32>]) -> Vec<f32>,
) -> Extraction {
    let (tokens, truncated) = tokenize(text, spec.max_tokens);
    let feats = features(spec, &tokens);
    let h = hidden_of(&feats);
    let em = emissions(w, &h);
    let (path, conf_t) = crf.decode(&em);
    let r = ranges(&tokens);
    let chars: Vec<char> = text.chars().collect();
    let fields = tags
        .decode(&r, &path)
        .into_iter()
        .map(|s| {
            let confidence = r
                .iter()
                .zip(&conf_t)
                .filter(|((a, b), _)| *a >= s.start && *b <= s.end)
                .map(|(_, c)| *c)
                .fold(1.0, f64::min);
            Field {
                text: chars[s.start..s.end].iter().collect(),
                label: s.label,
                start: s.start,
                end: s.end,
                confidence,
            }
        })
        .collect();
    let intent = (w.intents > 0).then(|| {
        let p = intent_probs(w, &h);
        let best = crate::tagger::argmax(&p);
        (intents[best].clone(), p[best] as f64)
    });
    let mut confidence = conf_t.iter().copied().fold(1.0, f64::min);
    if let Some((_, p)) = &intent {
        confidence = confidence.min(*p);
    }
    Extraction {
        fields,
        confidence,
        intent,
        truncated,
    }
}

pub fn argmax(p: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in p.iter().enumerate() {
        if *v > p[best] {
            best = i;
        }
    }
    best
}

/// How the table is stored in `tagger.bin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dtype {
    F32,
    /// One f32 scale per row, then the row as i8 (`round(v / scale)`).
    Int8,
}

/// `tagger.json`: what a loader needs besides the weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaggerMeta {
    pub format: String,
    pub version: u32,
    pub spec: TaggerSpec,
    pub slots: Vec<String>,
    #[serde(default)]
    pub intents: Vec<String>,
    pub weights_sha256: String,
    pub weights_bytes: u64,
    pub dtype: Dtype,
    /// Rows of the table stored (features seen in training).
    pub rows: usize,
    /// Escalate when the example confidence is below this (certified on val).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Metrics of the run, for the record.
    #[serde(default)]
    pub metrics: std::collections::BTreeMap<String, f64>,
}

pub const FORMAT: &str = "distill-tagger";

/// A loaded tagger, ready to extract.
#[derive(Debug, Clone)]
pub struct Tagger {
    pub meta: TaggerMeta,
    pub tags: TagSet,
    pub weights: Weights,
    crf: Crf,
    /// Bucket → stored row + 1 (0: not stored).
    lookup: Vec<u32>,
    table: Table,
}

/// The stored rows, kept in memory as they are stored on disk: an int8
/// bundle reads a quarter of the bytes per feature (one cache line per row
/// at dim 64), which is what prediction time is spent on.
#[derive(Debug, Clone)]
enum Table {
    F32(Vec<f32>),
    I8 { q: Vec<i8>, scale: Vec<f32> },
}

impl Table {
    fn row_f32(&self, pos: usize, d: usize) -> Vec<f32> {
        match self {
            Table::F32(t) => t[pos * d..(pos + 1) * d].to_vec(),
            Table::I8 { q, scale } => q[pos * d..(pos + 1) * d]
                .iter()
                .map(|v| *v as f32 * scale[pos])
                .collect(),
        }
    }

    fn rows(&self, d: usize) -> usize {
        match self {
            Table::F32(t) => t.len() / d.max(1),
            Table::I8 { scale, .. } => scale.len(),
        }
    }
}

impl Tagger {
    /// Build from a dense training table: rows with any non-zero value are kept.
    pub fn from_dense(meta: TaggerMeta, table: &[f32], weights: Weights) -> Self {
        let d = weights.dim;
        let mut ids = Vec::new();
        for (i, r) in table.chunks(d).enumerate() {
            if r.iter().any(|v| *v != 0.0) {
                ids.push(i as u32);
            }
        }
        let mut compact = Vec::with_capacity(ids.len() * d);
        for &i in &ids {
            compact.extend_from_slice(&table[i as usize * d..(i as usize + 1) * d]);
        }
        Self::from_parts(meta, &ids, Table::F32(compact), weights)
    }

    fn from_parts(mut meta: TaggerMeta, ids: &[u32], table: Table, weights: Weights) -> Self {
        let mut lookup = vec![0u32; meta.spec.buckets];
        for (pos, &id) in ids.iter().enumerate() {
            lookup[id as usize] = pos as u32 + 1;
        }
        meta.rows = ids.len();
        let tags = TagSet::new(meta.slots.clone());
        let crf = Crf::new(&weights, &tags);
        Tagger {
            meta,
            tags,
            weights,
            crf,
            lookup,
            table,
        }
    }

    pub fn extract(&self, text: &str) -> Extraction {
        extract(
            &self.meta.spec,
            &self.tags,
            &self.meta.intents,
            &self.weights,
            &self.crf,
            text,
            |feats| self.hidden(feats),
        )
    }

    /// Token vectors in two passes: every feature's stored row first (the
    /// lookups are independent loads the CPU overlaps), then the sums.
    fn hidden(&self, feats: &[Vec<u32>]) -> Vec<f32> {
        let d = self.weights.dim;
        let pos: Vec<u32> = feats
            .iter()
            .flatten()
            .map(|&id| self.lookup.get(id as usize).copied().unwrap_or(0))
            .collect();
        let mut h = vec![0f32; feats.len() * d];
        let mut at = 0;
        for (t, f) in feats.iter().enumerate() {
            let out = &mut h[t * d..(t + 1) * d];
            for &p in &pos[at..at + f.len()] {
                if p == 0 {
                    continue;
                }
                let p = p as usize - 1;
                match &self.table {
                    Table::F32(tb) => {
                        for (o, v) in out.iter_mut().zip(&tb[p * d..(p + 1) * d]) {
                            *o += v;
                        }
                    }
                    Table::I8 { q, scale } => {
                        let s = scale[p];
                        for (o, v) in out.iter_mut().zip(&q[p * d..(p + 1) * d]) {
                            *o += *v as f32 * s;
                        }
                    }
                }
            }
            at += f.len();
        }
        h
    }

    /// The weights file's bytes.
    pub fn weights_bytes(&self, dtype: Dtype) -> Vec<u8> {
        let d = self.weights.dim;
        let n = self.meta.rows;
        let mut out = Vec::with_capacity(16 + n * (4 + d * 4) + self.weights.len() * 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(dtype as u32).to_le_bytes());
        out.extend_from_slice(&(n as u32).to_le_bytes());
        for (pos, id) in self.lookup.iter().enumerate() {
            if *id > 0 {
                out.extend_from_slice(&(pos as u32).to_le_bytes());
            }
        }
        let rows = self.table.rows(d);
        match (dtype, &self.table) {
            (Dtype::Int8, Table::I8 { q, scale }) => {
                for v in scale {
                    out.extend_from_slice(&v.to_le_bytes());
                }
                out.extend(q.iter().map(|v| *v as u8));
            }
            (Dtype::F32, _) => {
                for pos in 0..rows {
                    for v in self.table.row_f32(pos, d) {
                        out.extend_from_slice(&v.to_le_bytes());
                    }
                }
            }
            (Dtype::Int8, Table::F32(t)) => {
                let scale_of = |r: &[f32]| r.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
                for r in t.chunks(d) {
                    out.extend_from_slice(&scale_of(r).to_le_bytes());
                }
                for r in t.chunks(d) {
                    let scale = scale_of(r);
                    for v in r {
                        let q = if scale > 0.0 {
                            (v / scale).round().clamp(-127.0, 127.0)
                        } else {
                            0.0
                        };
                        out.push(q as i8 as u8);
                    }
                }
            }
        }
        for p in self.weights.parts() {
            for v in p {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    /// Write `tagger.bin` and `tagger.json` into `dir` (atomically, weights first).
    pub fn save(&self, dir: &Path, dtype: Dtype) -> Result<u64> {
        let bytes = self.weights_bytes(dtype);
        let mut meta = self.meta.clone();
        meta.weights_sha256 = distill_core::hash::sha256_hex(&bytes);
        meta.weights_bytes = bytes.len() as u64;
        meta.dtype = dtype;
        distill_core::fsutil::write_atomic(&dir.join(WEIGHTS_FILE), |w| w.write_all(&bytes))?;
        distill_core::fsutil::write_json_atomic(&dir.join(TAGGER_FILE), &meta)?;
        Ok(bytes.len() as u64)
    }

    /// Whether `dir` holds a tagger.
    pub fn is_tagger_dir(dir: &Path) -> bool {
        dir.join(TAGGER_FILE).is_file()
    }

    /// Load and check a tagger directory: bounded reads, the weights' size
    /// and sha256 as recorded, ids strictly increasing and inside the
    /// table, every value finite.
    pub fn load(dir: &Path) -> Result<Self> {
        let meta_path = dir.join(TAGGER_FILE);
        let meta: TaggerMeta = distill_core::fsutil::read_json_bounded(&meta_path, MAX_META_BYTES)?;
        let bad = |m: String| Error::Artifact {
            path: meta_path.clone(),
            message: m,
        };
        if meta.format != FORMAT || meta.version != 1 {
            return Err(bad(format!(
                "format `{}` version {} is not {FORMAT} version 1",
                meta.format, meta.version
            )));
        }
        meta.spec.validate()?;
        if meta.slots.is_empty() || meta.slots.len() > 4096 || meta.intents.len() > 65536 {
            return Err(bad("slot or intent list is empty or too long".into()));
        }
        if meta.intents.len() == 1 {
            return Err(bad("a joint model needs at least 2 intents".into()));
        }
        let wpath = dir.join(WEIGHTS_FILE);
        if meta.weights_bytes > MAX_WEIGHTS_BYTES {
            return Err(bad(format!(
                "weights of {} bytes exceed the limit",
                meta.weights_bytes
            )));
        }
        let bytes = distill_core::fsutil::read_bounded(&wpath, meta.weights_bytes)?;
        let wbad = |m: String| Error::Artifact {
            path: wpath.clone(),
            message: m,
        };
        if bytes.len() as u64 != meta.weights_bytes {
            return Err(wbad(format!(
                "{} bytes, expected {}",
                bytes.len(),
                meta.weights_bytes
            )));
        }
        if distill_core::hash::sha256_hex(&bytes) != meta.weights_sha256 {
            return Err(wbad(
                "sha256 does not match tagger.json (a damaged or altered file)".into(),
            ));
        }
        let d = meta.spec.dim;
        let k = 1 + 2 * meta.slots.len();
        let c = meta.intents.len();
        let mut weights = Weights::zeros(d, k, c);
        let mut r = Reader {
            bytes: &bytes,
            at: 0,
        };
        if r.take(8).ok_or_else(|| wbad("too short".into()))? != MAGIC {
            return Err(wbad("not a tagger weights file (bad magic)".into()));
        }
        let dtype = r.u32().ok_or_else(|| wbad("too short".into()))?;
        let n = r.u32().ok_or_else(|| wbad("too short".into()))? as usize;
        let per_row = match (dtype, meta.dtype) {
            (0, Dtype::F32) => d * 4,
            (1, Dtype::Int8) => 4 + d,
            _ => {
                return Err(wbad(format!(
                    "dtype {dtype} does not match tagger.json's {:?}",
                    meta.dtype
                )));
            }
        };
        let expected = 16u64 + n as u64 * (4 + per_row as u64) + weights.len() as u64 * 4;
        if expected != bytes.len() as u64 || n > meta.spec.buckets {
            return Err(wbad(format!(
                "{} bytes, but {n} rows of dim {d}, {k} tags and {c} intents need {expected}",
                bytes.len()
            )));
        }
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            let id = r.u32().ok_or_else(|| wbad("too short".into()))?;
            if id as usize >= meta.spec.buckets || ids.last().is_some_and(|l| *l >= id) {
                return Err(wbad(format!(
                    "row id {id} is out of order or outside the {} buckets",
                    meta.spec.buckets
                )));
            }
            ids.push(id);
        }
        let table = if dtype == 0 {
            Table::F32((0..n * d).map(|_| r.f32().unwrap_or(f32::NAN)).collect())
        } else {
            let scale: Vec<f32> = (0..n).map(|_| r.f32().unwrap_or(f32::NAN)).collect();
            let q = r.take(n * d).ok_or_else(|| wbad("too short".into()))?;
            Table::I8 {
                q: q.iter().map(|v| *v as i8).collect(),
                scale,
            }
        };
        for p in weights.parts_mut() {
            for v in p.iter_mut() {
                *v = r.f32().unwrap_or(f32::NAN);
            }
        }
        let table_floats: &[f32] = match &table {
            Table::F32(t) => t,
            Table::I8 { scale, .. } => scale,
        };
        if table_floats
            .iter()
            .chain(weights.parts().into_iter().flatten())
            .any(|v| !v.is_finite())
        {
            return Err(wbad("a weight is not a finite number".into()));
        }
        Ok(Self::from_parts(meta, &ids, table, weights))
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn f32(&mut self) -> Option<f32> {
        self.take(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compiled decoder agrees with the general Viterbi and
    /// forward-backward on a tag set wider than its 8 lanes.
    #[test]
    fn fast_decode_matches_the_reference_on_many_tags() {
        let slots: Vec<String> = (0..9).map(|i| format!("s{i}")).collect();
        let tags = TagSet::new(slots);
        let cons = Constraints::new(&tags);
        let k = tags.len();
        let mut w = Weights::zeros(1, k, 0);
        let mut s = distill_core::hash::SplitMix64(11);
        for p in w.parts_mut() {
            p.iter_mut()
                .for_each(|v| *v = s.next_f64() as f32 * 4.0 - 2.0);
        }
        let crf = Crf::new(&w, &tags);
        for t_len in 1..14 {
            let em: Vec<f32> = (0..t_len * k)
                .map(|_| s.next_f64() as f32 * 6.0 - 3.0)
                .collect();
            let score = |p: &[usize]| {
                let mut sc = (w.start[p[0]] + em[p[0]] + w.end[p[t_len - 1]]) as f64;
                for t in 1..t_len {
                    sc += (w.trans[p[t - 1] * k + p[t]] + em[t * k + p[t]]) as f64;
                }
                sc
            };
            let reference = viterbi(&w, &em, &cons);
            let (fast, conf) = crf.decode(&em);
            assert!(fast.windows(2).all(|p| cons.ok(p[0], p[1])) && cons.first_ok(fast[0]));
            assert!((score(&fast) - score(&reference)).abs() < 1e-3);
            let m = Lattice::new(&w, &em, &cons).marginals();
            for (t, (&j, c)) in fast.iter().zip(&conf).enumerate() {
                assert!(
                    (m[t * k + j] - c).abs() < 1e-4,
                    "t {t}: {c} vs {}",
                    m[t * k + j]
                );
            }
        }
    }

    /// A tagger saved as f32 loads back to the same extractions, and its
    /// two-pass token vectors equal the reference sum of rows.
    #[test]
    fn saved_tagger_loads_back_the_same() {
        let spec = TaggerSpec {
            buckets: 512,
            dim: 12,
            ..TaggerSpec::default()
        };
        let slots = vec!["city".to_string(), "date".to_string()];
        let k = 1 + 2 * slots.len();
        let mut s = distill_core::hash::SplitMix64(3);
        let mut table = vec![0f32; spec.buckets * spec.dim];
        for (i, v) in table.iter_mut().enumerate() {
            if !(i / spec.dim).is_multiple_of(3) {
                *v = s.next_f64() as f32 - 0.5;
            }
        }
        let mut w = Weights::zeros(spec.dim, k, 2);
        for p in w.parts_mut() {
            p.iter_mut().for_each(|v| *v = s.next_f64() as f32 - 0.5);
        }
        let meta = TaggerMeta {
            format: FORMAT.into(),
            version: 1,
            spec: spec.clone(),
            slots,
            intents: vec!["a".into(), "b".into()],
            weights_sha256: String::new(),
            weights_bytes: 0,
            dtype: Dtype::F32,
            rows: 0,
            threshold: Some(0.5),
            metrics: Default::default(),
        };
        let tagger = Tagger::from_dense(meta, &table, w);
        let text = "fly from Paris to Rome on Monday, 3 May";
        let (tokens, _) = tokenize(text, spec.max_tokens);
        let feats = features(&spec, &tokens);
        let d = spec.dim;
        let reference = hidden(&feats, d, |id| {
            Some(&table[id as usize * d..(id as usize + 1) * d])
        });
        let two_pass = tagger.hidden(&feats);
        for (a, b) in reference.iter().zip(&two_pass) {
            assert!((a - b).abs() < 1e-5);
        }
        let dir = tempfile::tempdir().unwrap();
        tagger.save(dir.path(), Dtype::F32).unwrap();
        let back = Tagger::load(dir.path()).unwrap();
        assert_eq!(back.extract(text), tagger.extract(text));
        assert_eq!(back.meta.threshold, Some(0.5));
        // A weights file of the wrong size is refused by name.
        let bin = dir.path().join(WEIGHTS_FILE);
        let bytes = std::fs::read(&bin).unwrap();
        std::fs::write(&bin, &bytes[..bytes.len() - 4]).unwrap();
        let e = Tagger::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("tagger.bin"), "{e}");
    }

    #[test]
    fn tokens_carry_character_offsets() {
        let (t, cut) = tokenize("Book 2 rooms, in Zürich's café!", 64);
        let words: Vec<&str> = t.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(
            words,
            ["Book", "2", "rooms", ",", "in", "Zürich's", "café", "!"]
        );
        let chars: Vec<char> = "Book 2 rooms, in Zürich's café!".chars().collect();
        for tok in &t {
            assert_eq!(
                chars[tok.start..tok.end].iter().collect::<String>(),
                tok.text
            );
        }
        assert!(!cut);
        let (t, cut) = tokenize("a b c", 2);
        assert_eq!((t.len(), cut), (2, true));
    }

    /// Viterbi never outputs an invalid BIO sequence, even when the
    /// emissions favour one, and agrees with brute force over valid paths.
    #[test]
    fn viterbi_is_constrained_and_exact() {
        let tags = TagSet::new(vec!["a".into(), "b".into()]);
        let cons = Constraints::new(&tags);
        let k = tags.len();
        let mut w = Weights::zeros(1, k, 0);
        let mut s = distill_core::hash::SplitMix64(7);
        for p in w.parts_mut() {
            p.iter_mut()
                .for_each(|v| *v = s.next_f64() as f32 * 2.0 - 1.0);
        }
        for trial in 0..50 {
            let t_len = 1 + trial % 4;
            let mut em: Vec<f32> = (0..t_len * k)
                .map(|_| s.next_f64() as f32 * 4.0 - 2.0)
                .collect();
            em[2] += 10.0; // I-a first: invalid, must not be chosen
            let path = viterbi(&w, &em, &cons);
            assert!(cons.first_ok(path[0]));
            assert!(path.windows(2).all(|p| cons.ok(p[0], p[1])));
            // Brute force.
            let score = |p: &[usize]| {
                let mut sc = w.start[p[0]] + em[p[0]] + w.end[p[t_len - 1]];
                for t in 1..t_len {
                    sc += w.trans[p[t - 1] * k + p[t]] + em[t * k + p[t]];
                }
                sc as f64
            };
            let mut best = f64::NEG_INFINITY;
            let mut z = 0f64;
            for code in 0..k.pow(t_len as u32) {
                let p: Vec<usize> = (0..t_len).map(|t| code / k.pow(t as u32) % k).collect();
                if cons.first_ok(p[0]) && p.windows(2).all(|q| cons.ok(q[0], q[1])) {
                    best = best.max(score(&p));
                    z += score(&p).exp();
                }
            }
            assert!((score(&path) - best).abs() < 1e-4);
            let (fast_path, fast_conf) = Crf::new(&w, &tags).decode(&em);
            assert!(
                (score(&fast_path) - best).abs() < 1e-4,
                "fast Viterbi is optimal too"
            );
            let lat = Lattice::new(&w, &em, &cons);
            let m0 = lat.marginals();
            for (t, (&j, c)) in fast_path.iter().zip(&fast_conf).enumerate() {
                assert!(
                    (m0[t * k + j] - c).abs() < 1e-5,
                    "fast marginal {c} vs {}",
                    m0[t * k + j]
                );
            }
            assert!(
                (lat.logz - z.ln()).abs() < 1e-6,
                "{} vs {}",
                lat.logz,
                z.ln()
            );
            let m = lat.marginals();
            for t in 0..t_len {
                let sum: f64 = m[t * k..(t + 1) * k].iter().sum();
                assert!((sum - 1.0).abs() < 1e-6);
                if t > 0 {
                    // Pair marginals sum to the token marginal.
                    for j in 0..k {
                        let s: f64 = (0..k).map(|i| lat.pair(t, i, j)).sum();
                        assert!((s - m[t * k + j]).abs() < 1e-9);
                    }
                }
            }
        }
    }
}
