//! From what an LLM returned to labels and a distribution over the label set.
//!
//! **Parsing** (hard label): the answer is normalised (lower case, `_`/`-` as
//! spaces, whitespace collapsed, leading quotes and markup dropped); a label
//! matches when the answer equals it or starts with it followed by a
//! non-alphanumeric character (`spam.`); the longest such label wins. Failing
//! that, a label that occurs as a whole word is taken when exactly one does.
//!
//! **Soft labels** from `logprobs` + `top_logprobs` (first distinguishing
//! token): the teacher's answer is a path of tokens, each with its top-k
//! alternatives. Walking the path, every alternative at position j that is not
//! the chosen token spells a candidate (answer so far + alternative); the
//! probability of reaching it, `P(path to j) * p(alternative)`, goes to the
//! labels that candidate is consistent with (a prefix of the label, or the
//! label followed by a boundary), split equally when several are. The walk
//! follows the chosen token until the answer so far is consistent with a
//! single label (which receives the path's remaining mass), with none (the
//! rest of the mass is uncovered), or the answer ends (the exactly matching
//! label receives it). Events on different branches are disjoint, so the sum
//! of assigned mass is the probability the teacher gives the label set within
//! its top-k: `coverage`. `probs` is that mass renormalised over the labels.
//! Labels that share a first token (`card arrival`, `card linking`) are
//! separated by the token where they differ. With `answer = "index"` the same
//! walk runs over the label numbers `1..K` (multi-digit numbers included).

/// One generated token with its log-probability and top alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f64,
    pub top: Vec<(String, f64)>,
}

/// Read `choices[0].logprobs.content` of a chat completion.
pub fn tokens_from_json(content: &serde_json::Value) -> Option<Vec<TokenLogprob>> {
    let items = content.as_array()?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let token = item.get("token")?.as_str()?.to_string();
        let logprob = item.get("logprob")?.as_f64()?;
        let top = item
            .get("top_logprobs")
            .and_then(|t| t.as_array())
            .map(|alts| {
                alts.iter()
                    .filter_map(|a| {
                        Some((
                            a.get("token")?.as_str()?.to_string(),
                            a.get("logprob")?.as_f64()?,
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(TokenLogprob {
            token,
            logprob,
            top,
        });
    }
    Some(out)
}

/// Normalise answer text or a label for matching.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        let c = if c == '_' || c == '-' { ' ' } else { c };
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if out.is_empty() && matches!(c, '"' | '\'' | '`' | '*' | '(' | '[' | '{' | '<' | '#') {
            space = false;
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        out.extend(c.to_lowercase());
    }
    if space && !out.is_empty() {
        out.push(' ');
    }
    out
}

/// Matches answers against a label set (or label numbers).
#[derive(Debug, Clone)]
pub struct LabelMatcher {
    norm: Vec<String>,
}

impl LabelMatcher {
    pub fn new<S: AsRef<str>>(labels: &[S]) -> Self {
        LabelMatcher {
            norm: labels
                .iter()
                .map(|l| normalize(l.as_ref()).trim_end().to_string())
                .collect(),
        }
    }

    /// `1..=n`, for `answer = "index"`.
    pub fn numbered(n: usize) -> Self {
        let names: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
        LabelMatcher::new(&names)
    }

    pub fn len(&self) -> usize {
        self.norm.len()
    }

    pub fn is_empty(&self) -> bool {
        self.norm.is_empty()
    }

    /// Labels an answer beginning with `text` can still become. `None` when
    /// the text says nothing yet (empty after normalisation).
    ///
    /// A label that the text only completes with more words after it
    /// (`order` for `order status`) is dropped when the text spells a longer
    /// label completely: it names that label, not the shorter one plus
    /// noise. It stays when only punctuation or spaces follow (`order.`,
    /// `order `), while the longer label is still unfinished (`order stat`
    /// fits both: the next token decides), or when no other label fits.
    pub fn consistent(&self, text: &str) -> Option<Vec<usize>> {
        let a = normalize(text);
        if a.is_empty() {
            return None;
        }
        let fits: Vec<usize> = (0..self.norm.len())
            .filter(|&i| {
                let l = &self.norm[i];
                l.starts_with(&a) || completes(&a, l)
            })
            .collect();
        // The longest label the text spells completely.
        let longest = fits
            .iter()
            .filter(|&&i| completes(&a, &self.norm[i]))
            .map(|&i| self.norm[i].len())
            .max()
            .unwrap_or(0);
        Some(
            fits.into_iter()
                .filter(|&i| {
                    let l = &self.norm[i];
                    let more_words =
                        a.len() > l.len() && a[l.len()..].chars().any(char::is_alphanumeric);
                    !(more_words && longest > l.len())
                })
                .collect(),
        )
    }

    /// The label the complete answer `text` names exactly (boundary allowed after it).
    pub fn exact(&self, text: &str) -> Option<usize> {
        let a = normalize(text);
        (0..self.norm.len())
            .filter(|&i| completes(&a, &self.norm[i]))
            .max_by_key(|&i| self.norm[i].len())
    }

    /// Parse a free-text answer to one label.
    pub fn parse(&self, output: &str) -> Option<usize> {
        if let Some(i) = self.exact(output) {
            return Some(i);
        }
        let a = normalize(output);
        let found: Vec<usize> = (0..self.norm.len())
            .filter(|&i| contains_word(&a, &self.norm[i]))
            .collect();
        (found.len() == 1).then(|| found[0])
    }

    /// Parse a list answer (`a, b` or one per line) to label indices; also
    /// returns the number of parts that named no label.
    pub fn parse_list(&self, output: &str) -> (Vec<usize>, usize) {
        let mut found = Vec::new();
        let mut unknown = 0;
        for part in output.split([',', '\n', ';']) {
            if normalize(part).trim().is_empty() {
                continue;
            }
            match self.exact(part.trim()) {
                Some(i) if !found.contains(&i) => found.push(i),
                Some(_) => {}
                None => unknown += 1,
            }
        }
        found.sort_unstable();
        (found, unknown)
    }

    /// Soft labels from the answer's token logprobs: `(probs, coverage)`, or
    /// `None` when no mass falls on the label set.
    pub fn score(&self, tokens: &[TokenLogprob]) -> Option<(Vec<f64>, f64)> {
        let mut mass = vec![0f64; self.norm.len()];
        let mut prefix = String::new();
        let mut path = 1f64;
        for (j, t) in tokens.iter().enumerate() {
            for (alt, lp) in &t.top {
                if *alt == t.token {
                    continue;
                }
                let candidate = format!("{prefix}{alt}");
                if let Some(ms) = self.consistent(&candidate)
                    && !ms.is_empty()
                {
                    let share = path * lp.exp() / ms.len() as f64;
                    for i in ms {
                        mass[i] += share;
                    }
                }
            }
            prefix.push_str(&t.token);
            path *= t.logprob.exp();
            let Some(ms) = self.consistent(&prefix) else {
                continue; // nothing said yet (leading whitespace)
            };
            if ms.is_empty() {
                break;
            }
            if ms.len() == 1 {
                mass[ms[0]] += path;
                break;
            }
            if j + 1 == tokens.len() {
                match self.exact(&prefix) {
                    Some(i) => mass[i] += path,
                    None => {
                        let share = path / ms.len() as f64;
                        ms.into_iter().for_each(|i| mass[i] += share);
                    }
                }
            }
        }
        let coverage: f64 = mass.iter().sum();
        if coverage.is_finite() && coverage > 0.0 {
            mass.iter_mut().for_each(|m| *m /= coverage);
            Some((mass, coverage.min(1.0)))
        } else {
            None
        }
    }
}

/// `a` is the label `l` complete, optionally followed by a non-alphanumeric boundary.
fn completes(a: &str, l: &str) -> bool {
    a.starts_with(l)
        && a[l.len()..]
            .chars()
            .next()
            .is_none_or(|c| !c.is_alphanumeric())
}

fn contains_word(haystack: &str, word: &str) -> bool {
    if word.is_empty() {
        return false;
    }
    haystack.match_indices(word).any(|(at, _)| {
        let before = haystack[..at].chars().next_back();
        let after = haystack[at + word.len()..].chars().next();
        before.is_none_or(|c| !c.is_alphanumeric()) && after.is_none_or(|c| !c.is_alphanumeric())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(token: &str, p: f64, top: &[(&str, f64)]) -> TokenLogprob {
        TokenLogprob {
            token: token.into(),
            logprob: p.ln(),
            top: top.iter().map(|(t, p)| (t.to_string(), p.ln())).collect(),
        }
    }

    #[test]
    fn parses_labels_with_markup_and_boundaries() {
        let m = LabelMatcher::new(&["card_arrival", "card_linking", "ham", "spam"]);
        assert_eq!(m.parse("spam"), Some(3));
        assert_eq!(m.parse(" \"Spam\".\n"), Some(3));
        assert_eq!(m.parse("card arrival"), Some(0));
        assert_eq!(m.parse("**card-linking**"), Some(1));
        assert_eq!(m.parse("spammy"), None);
        assert_eq!(m.parse("I think this is ham."), Some(2));
        assert_eq!(
            m.parse("not spam but ham"),
            None,
            "two labels named: ambiguous"
        );
        assert_eq!(m.parse_list("spam, ham, other"), (vec![2, 3], 1));
    }

    #[test]
    fn single_token_labels_take_top_k_mass() {
        let m = LabelMatcher::new(&["ham", "spam"]);
        let toks = [tok(
            "spam",
            0.6,
            &[("spam", 0.6), ("ham", 0.3), ("The", 0.05), (" Spam", 0.02)],
        )];
        let (p, cov) = m.score(&toks).unwrap();
        assert!((cov - 0.92).abs() < 1e-9, "{cov}");
        assert!((p[1] - 0.62 / 0.92).abs() < 1e-9);
        assert!((p[0] - 0.30 / 0.92).abs() < 1e-9);
    }

    #[test]
    fn shared_first_token_is_split_by_the_distinguishing_token() {
        let m = LabelMatcher::new(&["card_arrival", "card_linking", "cash"]);
        // "card" (0.8) then "_arr" (0.75) vs "_link" (0.25); "cash" 0.1 at the start.
        let toks = [
            tok("card", 0.8, &[("card", 0.8), ("cash", 0.1), ("x", 0.1)]),
            tok("_arr", 0.75, &[("_arr", 0.75), ("_link", 0.25)]),
            tok("ival", 1.0, &[("ival", 1.0)]),
        ];
        let (p, cov) = m.score(&toks).unwrap();
        assert!((cov - 0.9).abs() < 1e-9, "{cov}");
        assert!((p[0] - 0.6 / 0.9).abs() < 1e-9);
        assert!((p[1] - 0.2 / 0.9).abs() < 1e-9);
        assert!((p[2] - 0.1 / 0.9).abs() < 1e-9);
    }

    #[test]
    fn multi_digit_indices_and_leading_whitespace() {
        let m = LabelMatcher::numbered(12);
        // " " then "1" then end: the exact label 1 gets the path mass; "2" and "12"...
        let toks = [
            tok(" ", 1.0, &[(" ", 1.0)]),
            tok("1", 0.7, &[("1", 0.7), ("2", 0.2), ("x", 0.1)]),
            tok("2", 0.5, &[("2", 0.5), (".", 0.4)]),
        ];
        let (p, cov) = m.score(&toks).unwrap();
        // alternatives: "2" -> label 2 (0.2); after " 1": "." -> label 1 (0.7*0.4);
        // chosen "12" -> label 12 (0.35).
        assert!((cov - (0.2 + 0.28 + 0.35)).abs() < 1e-9, "{cov}");
        assert!((p[1] * cov - 0.2).abs() < 1e-9);
        assert!((p[0] * cov - 0.28).abs() < 1e-9);
        assert!((p[11] * cov - 0.35).abs() < 1e-9);
    }

    #[test]
    fn a_token_that_spells_a_longer_label_goes_to_it_alone() {
        // CLINC150 has 13 such pairs: order/order_status, time/timer/timezone.
        let m = LabelMatcher::new(&["order", "order_status", "timer", "time", "timezone"]);
        let toks = [tok(
            "order",
            0.5,
            &[
                ("order", 0.5),
                ("order_status", 0.3),
                ("timezone", 0.1),
                ("time", 0.05),
            ],
        )];
        let (p, cov) = m.score(&toks).unwrap();
        assert!((cov - 0.95).abs() < 1e-9, "{cov}");
        assert!((p[0] * cov - 0.5).abs() < 1e-9, "order: {p:?}");
        assert!((p[1] * cov - 0.3).abs() < 1e-9, "order_status alone: {p:?}");
        // `timezone` goes to timezone alone; `time` can still become timer
        // or timezone: an honest three-way split of its 0.05.
        assert!((p[4] * cov - (0.1 + 0.05 / 3.0)).abs() < 1e-9, "{p:?}");
        assert!((p[3] * cov - 0.05 / 3.0).abs() < 1e-9, "{p:?}");
        assert!((p[2] * cov - 0.05 / 3.0).abs() < 1e-9, "{p:?}");
        // The chosen path spelling the longer label, over two tokens.
        let toks = [
            tok("order", 0.9, &[("order", 0.9), ("time", 0.1)]),
            tok("_status", 0.8, &[("_status", 0.8), (".", 0.2)]),
        ];
        let (p, cov) = m.score(&toks).unwrap();
        assert!((p[1] * cov - 0.72).abs() < 1e-9, "{p:?}");
        assert!((p[0] * cov - 0.18).abs() < 1e-9, "`order.` is order: {p:?}");
        assert_eq!(m.consistent("order status").unwrap(), vec![1]);
        assert_eq!(m.consistent("order ").unwrap(), vec![0, 1]);
        assert_eq!(
            m.consistent("order stat").unwrap(),
            vec![0, 1],
            "not spelled yet"
        );
        assert_eq!(m.consistent("order status.").unwrap(), vec![1]);
        assert_eq!(
            m.consistent("order foo").unwrap(),
            vec![0],
            "no other label fits"
        );
    }

    #[test]
    fn answers_off_the_label_set_have_no_coverage() {
        let m = LabelMatcher::new(&["ham", "spam"]);
        assert!(m.score(&[tok("Hello", 0.9, &[("Hello", 0.9)])]).is_none());
    }
}
