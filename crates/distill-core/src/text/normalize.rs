//! Text normalisation.

use crate::types::Span;
use unicode_normalization::UnicodeNormalization;

/// Normalise text: optional NFKC, control characters dropped, whitespace runs
/// collapsed to one space and trimmed, optional lower-casing.
pub fn normalize(text: &str, nfkc: bool, whitespace: bool, lowercase: bool) -> String {
    let composed: String = if nfkc {
        text.nfkc().collect()
    } else {
        text.to_string()
    };
    let mut out = String::with_capacity(composed.len());
    let mut pending_space = false;
    for c in composed.chars() {
        if whitespace && c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if c.is_control() && !c.is_whitespace() {
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        if lowercase {
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// [`normalize`] that carries character spans along: each span is mapped
/// onto the normalised text (its first and last surviving characters), so
/// that its text equals [`normalize`] of its original text. NFKC is applied
/// per stretch between span boundaries; when that differs from NFKC of the
/// whole text (a composition across a boundary), or a span is left empty,
/// the row cannot keep correct offsets and the reason is returned.
pub fn normalize_spans(
    text: &str,
    spans: &[Span],
    nfkc: bool,
    whitespace: bool,
    lowercase: bool,
) -> Result<(String, Vec<Span>), String> {
    let chars: Vec<char> = text.chars().collect();
    if let Some(s) = spans
        .iter()
        .find(|s| s.start >= s.end || s.end > chars.len())
    {
        return Err(format!(
            "span `{}` [{}, {}) is empty or outside the text ({} characters)",
            s.label,
            s.start,
            s.end,
            chars.len()
        ));
    }
    let mut cuts: Vec<usize> = spans.iter().flat_map(|s| [s.start, s.end]).collect();
    cuts.push(0);
    cuts.push(chars.len());
    cuts.sort_unstable();
    cuts.dedup();
    // Composed text and where each original boundary lands in it.
    let mut composed: Vec<char> = Vec::with_capacity(chars.len());
    let mut at: Vec<(usize, usize)> = vec![(0, 0)];
    for w in cuts.windows(2) {
        let piece: String = chars[w[0]..w[1]].iter().collect();
        if nfkc {
            composed.extend(piece.nfkc());
        } else {
            composed.extend(piece.chars());
        }
        at.push((w[1], composed.len()));
    }
    if nfkc && composed.iter().copied().ne(text.nfkc()) {
        return Err("NFKC composes characters across a span boundary".into());
    }
    let pos = |orig: usize| at.iter().find(|(o, _)| *o == orig).map_or(0, |(_, c)| *c);
    // The whitespace/control/lower-case pass, recording where each
    // composed character's output starts and ends (None: dropped).
    let mut out = String::with_capacity(composed.len());
    let mut out_len = 0usize;
    let mut placed: Vec<Option<(usize, usize)>> = Vec::with_capacity(composed.len());
    let mut pending_space = false;
    for &c in &composed {
        if whitespace && c.is_whitespace() {
            pending_space = out_len > 0;
            placed.push(None);
            continue;
        }
        if c.is_control() && !c.is_whitespace() {
            placed.push(None);
            continue;
        }
        if pending_space {
            out.push(' ');
            out_len += 1;
            pending_space = false;
        }
        let start = out_len;
        if lowercase {
            for l in c.to_lowercase() {
                out.push(l);
                out_len += 1;
            }
        } else {
            out.push(c);
            out_len += 1;
        }
        placed.push(Some((start, out_len)));
    }
    let mut mapped = Vec::with_capacity(spans.len());
    for s in spans {
        let (a, b) = (pos(s.start), pos(s.end));
        let first = placed[a..b].iter().flatten().next();
        let last = placed[a..b].iter().flatten().last();
        match (first, last) {
            (Some(f), Some(l)) => mapped.push(Span {
                start: f.0,
                end: l.1,
                label: s.label.clone(),
            }),
            _ => {
                return Err(format!(
                    "span `{}` [{}, {}) is empty after normalisation",
                    s.label, s.start, s.end
                ));
            }
        }
    }
    Ok((out, mapped))
}

/// The key two texts must share to count as exact duplicates: lower-cased
/// with whitespace collapsed.
pub fn dedup_key(text: &str) -> String {
    normalize(text, false, true, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text_of(t: &str, s: &Span) -> String {
        t.chars().skip(s.start).take(s.end - s.start).collect()
    }

    proptest! {
        /// Every span's text after normalisation equals the normalisation of
        /// its original text; whatever fails is refused, never shifted.
        #[test]
        fn spans_follow_normalisation(
            pieces in proptest::collection::vec(("[ a-zA-Z\t\u{00a0}\u{fb01}Ａ\u{0007}]{0,6}", any::<bool>()), 1..8),
            nfkc in any::<bool>(), ws in any::<bool>(), lower in any::<bool>(),
        ) {
            let mut text = String::new();
            let mut spans = Vec::new();
            for (i, (p, is_span)) in pieces.iter().enumerate() {
                let start = text.chars().count();
                text.push_str(p);
                let end = text.chars().count();
                if *is_span && end > start {
                    spans.push(Span { start, end, label: format!("s{i}") });
                }
            }
            match normalize_spans(&text, &spans, nfkc, ws, lower) {
                Ok((out, mapped)) => {
                    prop_assert_eq!(&out, &normalize(&text, nfkc, ws, lower));
                    for (old, new) in spans.iter().zip(&mapped) {
                        let want = normalize(&text_of(&text, old), nfkc, ws, lower);
                        prop_assert_eq!(text_of(&out, new), want);
                    }
                }
                Err(reason) => prop_assert!(reason.contains("span") || reason.contains("NFKC")),
            }
        }
    }

    #[test]
    fn nfkc_and_whitespace() {
        assert_eq!(
            normalize("  ﬁne\u{00a0}\t day\u{0007}  ", true, true, false),
            "fine day"
        );
        assert_eq!(normalize("Ａｂｃ", true, true, true), "abc");
        assert_eq!(normalize("a  b", false, false, false), "a  b");
    }
}
