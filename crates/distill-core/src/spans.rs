//! Spans as token tags (BIO) and span-level metrics.
//!
//! Offsets are character offsets (Unicode scalar values), end exclusive, as
//! in [`Span`]. A tag sequence is over tokens given as character ranges.
//! Tag 0 is `O`; slot `i` has `B-` tag `1 + 2i` and `I-` tag `2 + 2i`.

use crate::types::Span;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The BIO tag set over a list of slot labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagSet {
    pub slots: Vec<String>,
}

/// How gold spans were turned into tags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncodeReport {
    /// Spans whose boundaries fall inside a token: tagged on every token they
    /// overlap (the tagger can only predict whole tokens).
    pub snapped: usize,
}

impl TagSet {
    pub fn new(slots: Vec<String>) -> Self {
        TagSet { slots }
    }

    /// Number of tags: `O` plus `B-` and `I-` per slot.
    pub fn len(&self) -> usize {
        1 + 2 * self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// `O`, `B-slot` or `I-slot`.
    pub fn name(&self, tag: usize) -> String {
        match self.slot_of(tag) {
            None => "O".into(),
            Some(s) if tag % 2 == 1 => format!("B-{}", self.slots[s]),
            Some(s) => format!("I-{}", self.slots[s]),
        }
    }

    pub fn slot_of(&self, tag: usize) -> Option<usize> {
        (tag > 0).then(|| (tag - 1) / 2)
    }

    fn begin(slot: usize) -> usize {
        1 + 2 * slot
    }

    fn inside(slot: usize) -> usize {
        2 + 2 * slot
    }

    /// Whether `next` may follow `prev` (`None`: the sentence start). An `I-`
    /// tag continues a span of its own slot only.
    pub fn allowed(&self, prev: Option<usize>, next: usize) -> bool {
        if next == 0 || next % 2 == 1 {
            return true;
        }
        match prev {
            Some(p) if p > 0 => self.slot_of(p) == self.slot_of(next),
            _ => false,
        }
    }

    /// Tags for `tokens` (character ranges, in order) from gold `spans`.
    /// Errors name the span: a label outside the slot set, a span outside
    /// the text or empty, spans that overlap, a span covering no token.
    pub fn encode(
        &self,
        tokens: &[(usize, usize)],
        spans: &[Span],
        text_chars: usize,
    ) -> Result<(Vec<usize>, EncodeReport), String> {
        let index: BTreeMap<&str, usize> = self
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| (s.as_str(), i))
            .collect();
        let mut sorted: Vec<&Span> = spans.iter().collect();
        sorted.sort_by_key(|s| (s.start, s.end));
        for pair in sorted.windows(2) {
            if pair[1].start < pair[0].end {
                return Err(format!(
                    "spans `{}` [{}, {}) and `{}` [{}, {}) overlap",
                    pair[0].label,
                    pair[0].start,
                    pair[0].end,
                    pair[1].label,
                    pair[1].start,
                    pair[1].end
                ));
            }
        }
        let mut tags = vec![0usize; tokens.len()];
        let mut report = EncodeReport::default();
        for s in sorted {
            let Some(&slot) = index.get(s.label.as_str()) else {
                return Err(format!(
                    "span label `{}` is not one of the dataset's slots",
                    s.label
                ));
            };
            if s.start >= s.end || s.end > text_chars {
                return Err(format!(
                    "span `{}` [{}, {}) is empty or outside the text ({text_chars} characters)",
                    s.label, s.start, s.end
                ));
            }
            let covered: Vec<usize> = tokens
                .iter()
                .enumerate()
                .filter(|(_, (a, b))| *a < s.end && s.start < *b)
                .map(|(i, _)| i)
                .collect();
            let (Some(&first), Some(&last)) = (covered.first(), covered.last()) else {
                return Err(format!(
                    "span `{}` [{}, {}) covers no token",
                    s.label, s.start, s.end
                ));
            };
            if tokens[first].0 != s.start || tokens[last].1 != s.end {
                report.snapped += 1;
            }
            for &t in &covered {
                if tags[t] != 0 {
                    return Err(format!(
                        "span `{}` [{}, {}) shares a token with another span",
                        s.label, s.start, s.end
                    ));
                }
                tags[t] = if t == first {
                    Self::begin(slot)
                } else {
                    Self::inside(slot)
                };
            }
        }
        Ok((tags, report))
    }

    /// Spans of a tag sequence. An `I-` tag that does not continue a span of
    /// its slot starts one (as conlleval and seqeval read it).
    pub fn decode(&self, tokens: &[(usize, usize)], tags: &[usize]) -> Vec<Span> {
        let mut out: Vec<Span> = Vec::new();
        let mut open: Option<(usize, usize, usize)> = None; // slot, start, end
        for (&(a, b), &tag) in tokens.iter().zip(tags) {
            let slot = self.slot_of(tag);
            let continues =
                tag > 0 && tag % 2 == 0 && open.is_some_and(|(s, _, _)| Some(s) == slot);
            if continues {
                if let Some(o) = open.as_mut() {
                    o.2 = b;
                }
                continue;
            }
            if let Some((s, start, end)) = open.take() {
                out.push(Span {
                    start,
                    end,
                    label: self.slots[s].clone(),
                });
            }
            if let Some(s) = slot {
                open = Some((s, a, b));
            }
        }
        if let Some((s, start, end)) = open {
            out.push(Span {
                start,
                end,
                label: self.slots[s].clone(),
            });
        }
        out
    }
}

/// Precision, recall and F1 of one slot (or of all, micro-averaged).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Prf {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Gold spans.
    pub support: u64,
    pub predicted: u64,
    pub correct: u64,
}

impl Prf {
    fn from_counts(correct: u64, predicted: u64, support: u64) -> Self {
        let precision = if predicted > 0 {
            correct as f64 / predicted as f64
        } else {
            0.0
        };
        let recall = if support > 0 {
            correct as f64 / support as f64
        } else {
            0.0
        };
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        Prf {
            precision,
            recall,
            f1,
            support,
            predicted,
            correct,
        }
    }
}

/// Span-level metrics: a predicted span is correct when its (label, start,
/// end) equals a gold span's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpanMetrics {
    pub micro: Prf,
    pub per_slot: BTreeMap<String, Prf>,
    /// Share of examples whose predicted span set equals the gold set exactly.
    pub exact_match: f64,
    pub examples: u64,
}

fn key(s: &Span) -> (usize, usize, &str) {
    (s.start, s.end, s.label.as_str())
}

/// Correct spans of one example: the multiset intersection of gold and
/// predicted (label, start, end).
pub fn correct_spans<'a>(gold: &'a [Span], pred: &'a [Span]) -> Vec<&'a Span> {
    let mut g: Vec<&Span> = gold.iter().collect();
    g.sort_by(|a, b| key(a).cmp(&key(b)));
    let mut p: Vec<&Span> = pred.iter().collect();
    p.sort_by(|a, b| key(a).cmp(&key(b)));
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < g.len() && j < p.len() {
        match key(g[i]).cmp(&key(p[j])) {
            std::cmp::Ordering::Equal => {
                out.push(p[j]);
                i += 1;
                j += 1;
            }
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
        }
    }
    out
}

/// Whether an example's predicted span set equals its gold set.
pub fn exact(gold: &[Span], pred: &[Span]) -> bool {
    gold.len() == pred.len() && correct_spans(gold, pred).len() == gold.len()
}

pub fn span_metrics(gold: &[Vec<Span>], pred: &[Vec<Span>]) -> SpanMetrics {
    let mut counts: BTreeMap<&str, [u64; 3]> = BTreeMap::new(); // correct, predicted, support
    let mut exact_n = 0u64;
    for (g, p) in gold.iter().zip(pred) {
        for s in g {
            counts.entry(&s.label).or_default()[2] += 1;
        }
        for s in p {
            counts.entry(&s.label).or_default()[1] += 1;
        }
        let ok = correct_spans(g, p);
        for s in &ok {
            counts.entry(&s.label).or_default()[0] += 1;
        }
        exact_n += u64::from(g.len() == p.len() && ok.len() == g.len());
    }
    let total = counts.values().fold([0u64; 3], |acc, c| {
        [acc[0] + c[0], acc[1] + c[1], acc[2] + c[2]]
    });
    let n = gold.len().min(pred.len()) as u64;
    SpanMetrics {
        micro: Prf::from_counts(total[0], total[1], total[2]),
        per_slot: counts
            .into_iter()
            .map(|(k, c)| (k.to_string(), Prf::from_counts(c[0], c[1], c[2])))
            .collect(),
        exact_match: if n > 0 {
            exact_n as f64 / n as f64
        } else {
            0.0
        },
        examples: n,
    }
}

/// How a teacher's field value was found in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Aligned {
    /// The value occurs verbatim.
    Exact,
    /// It occurs up to case and whitespace.
    Loose,
    /// A stretch of whole words within a small edit distance (at most a
    /// fifth of the value's length) of it.
    Fuzzy,
}

/// A field value that could not be placed in the text, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unaligned {
    pub field: String,
    pub value: String,
    pub reason: String,
}

const MAX_ALIGN_TEXT: usize = 4096;
const MAX_FUZZY_VALUE: usize = 64;

/// Lower-cased characters with whitespace runs collapsed to one space (and
/// trimmed), each mapped to its character index in the original.
fn loose(text: &str) -> (Vec<char>, Vec<usize>) {
    let (mut out, mut map) = (Vec::new(), Vec::new());
    let mut pending: Option<usize> = None;
    for (i, c) in text.chars().enumerate() {
        if c.is_whitespace() {
            if !out.is_empty() && pending.is_none() {
                pending = Some(i);
            }
            continue;
        }
        if let Some(p) = pending.take() {
            out.push(' ');
            map.push(p);
        }
        for l in c.to_lowercase() {
            out.push(l);
            map.push(i);
        }
    }
    (out, map)
}

fn is_boundary(chars: &[char], at: usize) -> bool {
    at == 0 || at >= chars.len() || !chars[at - 1].is_alphanumeric() || !chars[at].is_alphanumeric()
}

fn levenshtein(a: &[char], b: &[char], cap: usize) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, x) in a.iter().enumerate() {
        cur[0] = i + 1;
        let mut row_min = cur[0];
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(x != y))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
            row_min = row_min.min(cur[j + 1]);
        }
        if row_min > cap {
            return cap + 1;
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Place one value in the text: exact (preferring whole-word occurrences),
/// then up to case and whitespace, then a bounded fuzzy match over
/// whole-word stretches. `taken` spans are skipped. Never invents an offset:
/// `None` when nothing qualifies.
pub fn align(text: &str, value: &str, taken: &[Span]) -> Option<(usize, usize, Aligned)> {
    let chars: Vec<char> = text.chars().collect();
    let value = value.trim();
    if value.is_empty() || chars.len() > MAX_ALIGN_TEXT {
        return None;
    }
    let free = |a: usize, b: usize| !taken.iter().any(|s| s.start < b && a < s.end);
    let v: Vec<char> = value.chars().collect();
    // Whole words only: "art" is not placed inside "party".
    if v.len() <= chars.len() {
        for a in 0..=chars.len() - v.len() {
            let b = a + v.len();
            if chars[a..b] == v[..]
                && free(a, b)
                && is_boundary(&chars, a)
                && is_boundary(&chars, b)
            {
                return Some((a, b, Aligned::Exact));
            }
        }
    }
    let (lt, map) = loose(text);
    let (lv, _) = loose(value);
    if lv.is_empty() {
        return None;
    }
    if lv.len() <= lt.len() {
        for a in 0..=lt.len() - lv.len() {
            let b = a + lv.len();
            if lt[a..b] == lv[..] && is_boundary(&lt, a) && is_boundary(&lt, b) {
                let (s, e) = (map[a], map[b - 1] + 1);
                if free(s, e) {
                    return Some((s, e, Aligned::Loose));
                }
            }
        }
    }
    if lv.len() < 4 || lv.len() > MAX_FUZZY_VALUE {
        return None;
    }
    let cap = (lv.len() / 5).max(1);
    let starts: Vec<usize> = (0..lt.len())
        .filter(|&i| lt[i] != ' ' && is_boundary(&lt, i))
        .collect();
    let ends: Vec<usize> = (1..=lt.len())
        .filter(|&i| lt[i - 1] != ' ' && is_boundary(&lt, i))
        .collect();
    let mut best: Option<(usize, usize, usize)> = None;
    for &a in &starts {
        for &b in ends.iter().filter(|&&b| b > a) {
            let len = b - a;
            if len + cap < lv.len() {
                continue;
            }
            if len > lv.len() + cap {
                break;
            }
            let d = levenshtein(&lt[a..b], &lv, cap);
            if d <= cap && best.is_none_or(|x| d < x.0) {
                let (s, e) = (map[a], map[b - 1] + 1);
                if free(s, e) {
                    best = Some((d, s, e));
                }
            }
        }
    }
    best.map(|(_, s, e)| (s, e, Aligned::Fuzzy))
}

/// Align every value of a teacher's fields to the text: the spans found
/// (sorted, never overlapping), how each was found, and the values left
/// unplaced with the reason.
pub fn align_fields(
    text: &str,
    fields: &BTreeMap<String, Vec<String>>,
) -> (Vec<Span>, Vec<Aligned>, Vec<Unaligned>) {
    let mut spans: Vec<Span> = Vec::new();
    let mut how = Vec::new();
    let mut missing = Vec::new();
    for (field, values) in fields {
        for value in values {
            if value.trim().is_empty() {
                continue;
            }
            match align(text, value, &spans) {
                Some((start, end, kind)) => {
                    spans.push(Span { start, end, label: field.clone() });
                    how.push(kind);
                }
                None => missing.push(Unaligned {
                    field: field.clone(),
                    value: value.clone(),
                    reason: "not found in the text (exact, case/whitespace-insensitive, or within a fifth of its length in edits)".into(),
                }),
            }
        }
    }
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by_key(|&i| (spans[i].start, spans[i].end));
    (
        order.iter().map(|&i| spans[i].clone()).collect(),
        order.iter().map(|&i| how[i]).collect(),
        missing,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(start: usize, end: usize, label: &str) -> Span {
        Span {
            start,
            end,
            label: label.into(),
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        let tags = TagSet::new(vec!["city".into(), "time".into()]);
        // "fly to new york at 5"
        let tokens = [(0, 3), (4, 6), (7, 10), (11, 15), (16, 18), (19, 20)];
        let spans = vec![span(7, 15, "city"), span(19, 20, "time")];
        let (t, r) = tags.encode(&tokens, &spans, 20).unwrap();
        assert_eq!(t, [0, 0, 1, 2, 0, 3]);
        assert_eq!(r.snapped, 0);
        assert_eq!(tags.decode(&tokens, &t), spans);
        assert_eq!(tags.name(2), "I-city");
        assert!(!tags.allowed(None, 2) && !tags.allowed(Some(3), 2) && tags.allowed(Some(1), 2));
        // An I- after O starts a span, as conlleval reads it.
        assert_eq!(
            tags.decode(&tokens, &[0, 2, 2, 0, 0, 0]),
            [span(4, 10, "city")]
        );
    }

    #[test]
    fn bad_spans_are_named() {
        let tags = TagSet::new(vec!["a".into()]);
        let tokens = [(0, 3), (4, 6)];
        let e = tags.encode(&tokens, &[span(0, 3, "b")], 6).unwrap_err();
        assert!(e.contains("`b`"), "{e}");
        let e = tags.encode(&tokens, &[span(0, 9, "a")], 6).unwrap_err();
        assert!(e.contains("outside"), "{e}");
        let e = tags
            .encode(&tokens, &[span(0, 4, "a"), span(2, 6, "a")], 6)
            .unwrap_err();
        assert!(e.contains("overlap"), "{e}");
        let (t, r) = tags.encode(&tokens, &[span(1, 2, "a")], 6).unwrap();
        assert_eq!((t, r.snapped), (vec![1, 0], 1));
    }

    #[test]
    fn teacher_values_align_exactly_loosely_fuzzily_or_not_at_all() {
        let text = "Play  Miles Davis on Spotify, then play the radio";
        let at = |s: usize, e: usize| text.chars().skip(s).take(e - s).collect::<String>();
        let (s, e, k) = align(text, "Spotify", &[]).unwrap();
        assert_eq!((at(s, e).as_str(), k), ("Spotify", Aligned::Exact));
        let (s, e, k) = align(text, "miles davis", &[]).unwrap();
        assert_eq!((at(s, e).as_str(), k), ("Miles Davis", Aligned::Loose));
        let (s, e, k) = align(text, "Miles Davies", &[]).unwrap();
        assert_eq!((at(s, e).as_str(), k), ("Miles Davis", Aligned::Fuzzy));
        assert_eq!(align(text, "John Coltrane", &[]), None, "never invented");
        assert_eq!(align(text, "otif", &[]), None, "never inside a word");
        assert_eq!(align(text, "  ", &[]), None);
        // A second value for the same words takes the next occurrence.
        let taken = [Span {
            start: 0,
            end: 4,
            label: "a".into(),
        }];
        let (s, _, _) = align(text, "play", &taken).unwrap();
        assert!(s > 4);
        let mut fields = BTreeMap::new();
        fields.insert(
            "artist".to_string(),
            vec!["miles davis".to_string(), "Nobody".to_string()],
        );
        fields.insert("service".to_string(), vec!["spotify".to_string()]);
        let (spans, how, missing) = align_fields(text, &fields);
        assert_eq!(spans.len(), 2);
        assert_eq!(how, [Aligned::Loose, Aligned::Loose]);
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].value, "Nobody");
    }

    #[test]
    fn metrics_count_exact_matches_only() {
        let gold = vec![
            vec![span(0, 3, "a"), span(4, 6, "b")],
            vec![span(0, 2, "a")],
        ];
        let pred = vec![
            vec![span(0, 3, "a"), span(4, 5, "b")],
            vec![span(0, 2, "a")],
        ];
        let m = span_metrics(&gold, &pred);
        assert_eq!(
            (m.micro.correct, m.micro.predicted, m.micro.support),
            (2, 3, 3)
        );
        assert!((m.micro.f1 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(m.per_slot["b"].correct, 0);
        assert!((m.exact_match - 0.5).abs() < 1e-12);
    }
}
