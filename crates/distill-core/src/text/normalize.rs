//! Text normalisation.

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

/// The key two texts must share to count as exact duplicates: lower-cased
/// with whitespace collapsed.
pub fn dedup_key(text: &str) -> String {
    normalize(text, false, true, true)
}

#[cfg(test)]
mod tests {
    use super::*;

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
