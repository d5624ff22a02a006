//! PII redaction: emails, phone numbers, payment card numbers (Luhn-checked)
//! and IBANs (mod-97-checked) become typed placeholders.

use crate::types::Span;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// A kind of personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PiiKind {
    Email,
    Iban,
    Card,
    Phone,
}

impl PiiKind {
    pub const ALL: [PiiKind; 4] = [PiiKind::Email, PiiKind::Iban, PiiKind::Card, PiiKind::Phone];

    pub fn placeholder(self) -> &'static str {
        match self {
            PiiKind::Email => "<EMAIL>",
            PiiKind::Iban => "<IBAN>",
            PiiKind::Card => "<CARD>",
            PiiKind::Phone => "<PHONE>",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Iban => "iban",
            PiiKind::Card => "card",
            PiiKind::Phone => "phone",
        }
    }

    fn regex(self) -> &'static Regex {
        static RES: OnceLock<[Regex; 4]> = OnceLock::new();
        let all = RES.get_or_init(|| {
            let build = |p: &str| Regex::new(p).expect("static PII regex compiles");
            [
                build(r"(?i)\b[a-z0-9][a-z0-9._%+-]*@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b"),
                build(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b"),
                build(r"\b\d(?:[ -]?\d){12,18}\b"),
                build(r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d(?:[ .-]?\d){6,13}\b"),
            ]
        });
        &all[self as usize]
    }

    fn accept(self, matched: &str) -> bool {
        match self {
            PiiKind::Email => true,
            PiiKind::Iban => iban_valid(matched),
            PiiKind::Card => luhn_valid(matched),
            PiiKind::Phone => {
                let digits = matched.chars().filter(char::is_ascii_digit).count();
                (7..=15).contains(&digits)
            }
        }
    }
}

/// Redact the given kinds, in the fixed order email, IBAN, card, phone (so a
/// card number is never half-eaten by the phone pattern). Returns the new
/// text and counts per kind.
pub fn redact(text: &str, kinds: &[PiiKind]) -> (String, BTreeMap<PiiKind, u64>) {
    match redact_spans(text, kinds, &[]) {
        Ok((t, c, _)) => (t, c),
        Err(_) => unreachable!("no span can overlap a redaction when there are none"),
    }
}

/// Redacted text, counts per kind, and the spans moved with it.
pub type Redacted = (String, BTreeMap<PiiKind, u64>, Vec<Span>);

/// [`redact`] that carries character spans along: spans after a redaction
/// shift by the placeholder's length difference. A span overlapping a
/// redacted stretch cannot keep its text; the reason is returned.
pub fn redact_spans(text: &str, kinds: &[PiiKind], spans: &[Span]) -> Result<Redacted, String> {
    let mut spans = spans.to_vec();
    let mut counts = BTreeMap::new();
    let mut current = text.to_string();
    for kind in PiiKind::ALL {
        if !kinds.contains(&kind) {
            continue;
        }
        let re = kind.regex();
        if !re.is_match(&current) {
            continue;
        }
        let mut out = String::with_capacity(current.len());
        let mut last = 0;
        // (start, end, length change) in characters of `current`.
        let mut edits: Vec<(usize, usize, isize)> = Vec::new();
        let mut chars_before = 0usize;
        let mut scanned = 0usize;
        for m in re.find_iter(&current) {
            if kind.accept(m.as_str()) {
                chars_before += current[scanned..m.start()].chars().count();
                scanned = m.start();
                let len = m.as_str().chars().count();
                let (a, b) = (chars_before, chars_before + len);
                if let Some(s) = spans.iter().find(|s| s.start < b && a < s.end) {
                    return Err(format!(
                        "span `{}` [{}, {}) overlaps a redacted {}",
                        s.label,
                        s.start,
                        s.end,
                        kind.placeholder()
                    ));
                }
                edits.push((
                    a,
                    b,
                    kind.placeholder().chars().count() as isize - len as isize,
                ));
                out.push_str(&current[last..m.start()]);
                out.push_str(kind.placeholder());
                last = m.end();
                *counts.entry(kind).or_insert(0) += 1;
            }
        }
        out.push_str(&current[last..]);
        current = out;
        for s in &mut spans {
            let shift: isize = edits.iter().filter(|e| e.1 <= s.start).map(|e| e.2).sum();
            s.start = (s.start as isize + shift) as usize;
            s.end = (s.end as isize + shift) as usize;
        }
    }
    Ok((current, counts, spans))
}

fn luhn_valid(number: &str) -> bool {
    let digits: Vec<u32> = number.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn iban_valid(iban: &str) -> bool {
    let compact: Vec<char> = iban.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let rearranged = compact[4..].iter().chain(&compact[..4]);
    let mut remainder: u64 = 0;
    for c in rearranged {
        let value = match c.to_digit(36) {
            Some(v) => v as u64,
            None => return false,
        };
        remainder = if value >= 10 {
            (remainder * 100 + value) % 97
        } else {
            (remainder * 10 + value) % 97
        };
    }
    remainder == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_shift_past_redactions_and_overlaps_are_refused() {
        let text = "mail bob@example.com or call +44 20 7946 0958 from Zürich";
        let chars: Vec<char> = text.chars().collect();
        let at = |w: &str| text[..text.find(w).unwrap()].chars().count();
        let city = Span {
            start: at("Zürich"),
            end: at("Zürich") + 6,
            label: "city".into(),
        };
        let verb = Span {
            start: 0,
            end: 4,
            label: "verb".into(),
        };
        let (out, counts, spans) =
            redact_spans(text, &PiiKind::ALL, &[verb.clone(), city.clone()]).unwrap();
        assert_eq!(out, "mail <EMAIL> or call <PHONE> from Zürich");
        assert_eq!(counts.len(), 2);
        let of = |s: &Span| {
            out.chars()
                .skip(s.start)
                .take(s.end - s.start)
                .collect::<String>()
        };
        assert_eq!(of(&spans[0]), "mail");
        assert_eq!(
            of(&spans[1]),
            chars[city.start..city.end].iter().collect::<String>()
        );
        let bad = Span {
            start: at("bob"),
            end: at("bob") + 3,
            label: "name".into(),
        };
        let e = redact_spans(text, &PiiKind::ALL, &[bad]).unwrap_err();
        assert!(e.contains("`name`") && e.contains("<EMAIL>"), "{e}");
    }

    #[test]
    fn redacts_each_kind() {
        let (text, counts) = redact(
            "mail jo.doe+x@example.co.uk or call +44 20 7946 0958, card 4111 1111 1111 1111, iban GB82 WEST 1234 5698 7654 32",
            &PiiKind::ALL,
        );
        assert_eq!(
            text,
            "mail <EMAIL> or call <PHONE>, card <CARD>, iban <IBAN>"
        );
        assert_eq!(counts.values().sum::<u64>(), 4);
    }

    #[test]
    fn leaves_non_pii_alone() {
        // Not Luhn-valid, too short for a phone, not an IBAN.
        let input = "order 1234 shipped in 2019, ref 4111 1111 1111 1112x";
        let (text, counts) = redact(input, &[PiiKind::Card, PiiKind::Iban]);
        assert_eq!(text, input);
        assert!(counts.is_empty());
        let (text, _) = redact("I have 3 cards", &PiiKind::ALL);
        assert_eq!(text, "I have 3 cards");
    }

    #[test]
    fn checksums() {
        assert!(luhn_valid("4111111111111111"));
        assert!(!luhn_valid("4111111111111112"));
        assert!(iban_valid("GB82WEST12345698765432"));
        assert!(!iban_valid("GB83WEST12345698765432"));
    }
}
