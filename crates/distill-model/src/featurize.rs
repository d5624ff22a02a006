//! Text → token ids for each student kind.
//!
//! * bag: fastText-style features. Lowercased words (punctuation split off as
//!   its own token), word n-grams up to `word-ngrams`, and character n-grams of
//!   `<word>`, all hashed (xxh3, one seed per feature kind) into `buckets - 1`
//!   rows; row 0 is padding. Unlike fastText, words are hashed too, so the
//!   model needs no vocabulary and never meets an out-of-vocabulary word.
//! * encoder: a subword tokenizer (`tokenizers` crate, WordPiece or BPE) with
//!   `[CLS]` prepended and truncation to `max-len`.

use crate::spec::{BagSpec, EncoderSpec, TokenizerKind};
use crate::{Error, Result};
use std::path::Path;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::models::wordpiece::{WordPiece, WordPieceTrainerBuilder};
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::{AddedToken, Tokenizer, TokenizerBuilder};
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Padding id for both featurizers.
pub const PAD: u32 = 0;
const SEED_WORD: u64 = 0x5EED_0001;
const SEED_WORD_NGRAM: u64 = 0x5EED_0002;
const SEED_CHAR_NGRAM: u64 = 0x5EED_0003;

/// Turns texts into id sequences (no padding).
#[derive(Clone)]
pub enum Featurizer {
    Bag(BagFeaturizer),
    Subword(Box<SubwordFeaturizer>),
}

impl Featurizer {
    /// Ids of one text, never empty (an empty text gives one padding-free id
    /// for bag, `[CLS]` for subword).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        match self {
            Featurizer::Bag(b) => b.encode(text),
            Featurizer::Subword(s) => s.encode(text),
        }
    }

    /// Ids of many texts, in parallel.
    pub fn encode_all(&self, texts: &[&str]) -> Vec<Vec<u32>> {
        use rayon::prelude::*;
        texts.par_iter().map(|t| self.encode(t)).collect()
    }
}

/// Hashed word and character n-gram features.
#[derive(Clone, Debug)]
pub struct BagFeaturizer {
    buckets: u64,
    word_ngrams: usize,
    char_ngrams: Option<[usize; 2]>,
    max_features: usize,
    /// A pruned bag's kept hashed ids, sorted: id `kept[i]` becomes row
    /// `i + 1`, and ids not kept are dropped (see [`BagFeaturizer::with_remap`]).
    remap: Option<std::sync::Arc<[u32]>>,
}

impl BagFeaturizer {
    pub fn new(spec: &BagSpec) -> Self {
        BagFeaturizer {
            buckets: spec.buckets as u64,
            word_ngrams: spec.word_ngrams,
            char_ngrams: spec.char_ngrams,
            max_features: spec.max_features.max(1),
            remap: None,
        }
    }

    /// A pruned bag's featurizer: after hashing (and `max_features`), each
    /// id found in `kept` (sorted, strictly increasing) becomes its position
    /// plus one; the rest are dropped. A text left with no id gets the
    /// padding id 0 alone, whose row is zero.
    pub fn with_remap(mut self, kept: std::sync::Arc<[u32]>) -> Self {
        self.remap = Some(kept);
        self
    }

    fn bucket(&self, bytes: &[u8], seed: u64) -> u32 {
        (1 + xxh3_64_with_seed(bytes, seed) % (self.buckets - 1)) as u32
    }

    /// The first `max_features` ids of the text's features. Work is bounded
    /// by `max_features`, not by the text's length: only the first
    /// `max_features` words can contribute (words come first), and every loop
    /// stops once enough ids exist, so the output equals the full feature
    /// list truncated, at a fraction of the cost on long inputs.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let limit = self.max_features;
        let words = words_limited(text, limit);
        let mut ids = Vec::with_capacity(words.len() * 8);
        for w in &words {
            ids.push(self.bucket(w.as_bytes(), SEED_WORD));
        }
        let mut joined = String::new();
        for n in 2..=self.word_ngrams {
            for window in words.windows(n) {
                if ids.len() >= limit {
                    break;
                }
                joined.clear();
                for (i, w) in window.iter().enumerate() {
                    if i > 0 {
                        joined.push(' ');
                    }
                    joined.push_str(w);
                }
                ids.push(self.bucket(joined.as_bytes(), SEED_WORD_NGRAM + n as u64));
            }
        }
        if let Some([lo, hi]) = self.char_ngrams {
            let mut chars: Vec<char> = Vec::new();
            let mut gram = String::new();
            for w in &words {
                if ids.len() >= limit {
                    break;
                }
                chars.clear();
                chars.push('<');
                // Only the first `limit + hi` characters can yield one of the
                // first `limit` grams of any length.
                let full_len = w.chars().count() + 2;
                chars.extend(w.chars().take(limit + hi));
                if chars.len() == full_len - 1 {
                    chars.push('>');
                }
                for n in lo..=hi.min(full_len) {
                    for window in chars.windows(n) {
                        if ids.len() >= limit {
                            break;
                        }
                        // The whole `<word>` is already the word feature.
                        if n == full_len {
                            continue;
                        }
                        gram.clear();
                        gram.extend(window);
                        ids.push(self.bucket(gram.as_bytes(), SEED_CHAR_NGRAM));
                    }
                }
            }
        }
        if ids.is_empty() {
            ids.push(self.bucket(b"", SEED_WORD));
        }
        ids.truncate(self.max_features);
        if let Some(kept) = &self.remap {
            ids.retain_mut(|id| match kept.binary_search(id) {
                Ok(pos) => {
                    *id = pos as u32 + 1;
                    true
                }
                Err(_) => false,
            });
            if ids.is_empty() {
                ids.push(PAD);
            }
        }
        ids
    }
}

/// Train `model` with `trainer` (BERT normalizer and pre-tokenizer) and
/// serialise the tokenizer to JSON.
fn train_json<M, T>(
    model: M,
    mut trainer: T,
    normalizer: BertNormalizer,
    texts: &[&str],
) -> Result<String>
where
    M: tokenizers::Model + Into<tokenizers::models::ModelWrapper> + serde::Serialize + Send + Sync,
    T: tokenizers::Trainer<Model = M> + Sync,
{
    let err = |e: tokenizers::Error| Error::Tokenizer(e.to_string());
    let mut tok = TokenizerBuilder::new()
        .with_model(model)
        .with_normalizer(Some(normalizer))
        .with_pre_tokenizer(Some(BertPreTokenizer))
        .with_post_processor(None::<tokenizers::processors::PostProcessorWrapper>)
        .with_decoder(None::<tokenizers::decoders::DecoderWrapper>)
        .build()
        .map_err(err)?;
    tok.train(&mut trainer, texts.iter()).map_err(err)?;
    canonical_ids(&tok.to_string(false).map_err(err)?)
}

/// The trainers number the initial alphabet in hash-set order, so the same
/// corpus gives the same vocabulary under different ids from run to run (and
/// a seeded model would then differ). Renumber: special tokens keep their
/// ids, every other token is numbered in string order. Merges (BPE) refer to
/// tokens by string, so they stay valid.
fn canonical_ids(json: &str) -> Result<String> {
    let bad = |m: &str| Error::Tokenizer(format!("unexpected tokenizer JSON: {m}"));
    let mut doc: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(&e.to_string()))?;
    let vocab = doc
        .pointer_mut("/model/vocab")
        .and_then(|v| v.as_object_mut())
        .ok_or_else(|| bad("no model.vocab"))?;
    let specials = SPECIAL_TOKENS.len() as u64;
    let mut rest: Vec<String> = vocab
        .iter()
        .filter(|(_, id)| id.as_u64().is_none_or(|i| i >= specials))
        .map(|(t, _)| t.clone())
        .collect();
    rest.sort();
    for (i, token) in rest.into_iter().enumerate() {
        vocab.insert(token, serde_json::Value::from(specials + i as u64));
    }
    serde_json::to_string(&doc).map_err(|e| bad(&e.to_string()))
}

/// Lowercased words; every punctuation character is a word of its own.
pub fn words(text: &str) -> Vec<String> {
    words_limited(text, usize::MAX)
}

/// The first `limit` words of [`words`], scanning no further than needed.
pub fn words_limited(text: &str, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        if out.len() >= limit {
            return out;
        }
        if c.is_alphanumeric() || c == '\'' || c == '_' {
            cur.extend(c.to_lowercase());
        } else {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            if !c.is_whitespace() {
                out.push(c.to_string());
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The longest prefix of `text` of at most `max_bytes` bytes that ends on a
/// character boundary.
pub fn truncate_at_char(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A subword tokenizer with `[CLS]` prepended (and `[SEP]` appended for a
/// pretrained BERT's tokenizer), truncated to `max_len` ids.
#[derive(Clone)]
pub struct SubwordFeaturizer {
    tokenizer: Tokenizer,
    cls: u32,
    sep: Option<u32>,
    max_len: usize,
}

pub const SPECIAL_TOKENS: [&str; 3] = ["[PAD]", "[UNK]", "[CLS]"];

impl SubwordFeaturizer {
    /// Train a tokenizer on `texts` (the training split).
    pub fn train(spec: &EncoderSpec, texts: &[&str]) -> Result<Self> {
        let specials: Vec<AddedToken> = SPECIAL_TOKENS
            .iter()
            .map(|t| AddedToken::from(*t, true))
            .collect();
        let normalizer = BertNormalizer::new(true, true, None, spec.tokenizer.lowercase);
        let err = |e: tokenizers::Error| Error::Tokenizer(e.to_string());
        let json = match spec.tokenizer.kind {
            TokenizerKind::Wordpiece => train_json(
                WordPiece::builder()
                    .unk_token("[UNK]".into())
                    .build()
                    .map_err(err)?,
                WordPieceTrainerBuilder::new()
                    .show_progress(false)
                    .vocab_size(spec.tokenizer.vocab_size)
                    .min_frequency(2)
                    .special_tokens(specials)
                    .build(),
                normalizer,
                texts,
            )?,
            TokenizerKind::Bpe => train_json(
                BPE::builder()
                    .unk_token("[UNK]".into())
                    .build()
                    .map_err(err)?,
                BpeTrainerBuilder::new()
                    .show_progress(false)
                    .vocab_size(spec.tokenizer.vocab_size)
                    .min_frequency(2)
                    .special_tokens(specials)
                    .build(),
                normalizer,
                texts,
            )?,
        };
        Self::from_json(json.as_bytes(), spec.max_len)
    }

    /// Load a `tokenizer.json` (it must contain `[CLS]` and `[PAD]`).
    pub fn load(path: &Path, max_len: usize) -> Result<Self> {
        // A regular file of bounded size: a symlink to /dev/zero or a FIFO
        // in a model directory is refused, not read without end.
        let bytes =
            distill_core::fsutil::read_bounded(path, 256 << 20).map_err(|e| Error::Artifact {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        Self::from_json(&bytes, max_len).map_err(|e| Error::Artifact {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    pub fn from_json(bytes: &[u8], max_len: usize) -> Result<Self> {
        let tokenizer =
            Tokenizer::from_bytes(bytes).map_err(|e| Error::Tokenizer(e.to_string()))?;
        let id = |t: &str| {
            tokenizer
                .token_to_id(t)
                .ok_or_else(|| Error::Tokenizer(format!("the tokenizer has no `{t}` token")))
        };
        if id("[PAD]")? != PAD {
            return Err(Error::Tokenizer("`[PAD]` must have id 0".into()));
        }
        let cls = id("[CLS]")?;
        Ok(SubwordFeaturizer {
            tokenizer,
            cls,
            sep: None,
            max_len,
        })
    }

    /// A pretrained BERT's `tokenizer.json`: `[CLS] text [SEP]`. Its own
    /// padding and truncation settings are dropped (distill pads batches
    /// itself and truncates to `max_len`).
    pub fn load_pretrained(path: &Path, max_len: usize) -> Result<Self> {
        let mut f = Self::load(path, max_len)?;
        f.tokenizer.with_padding(None);
        f.tokenizer
            .with_truncation(None)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        f.sep = Some(
            f.tokenizer
                .token_to_id("[SEP]")
                .ok_or_else(|| Error::Artifact {
                    path: path.to_path_buf(),
                    message: "the tokenizer has no `[SEP]` token".into(),
                })?,
        );
        Ok(f)
    }

    /// BERT's WordPiece tokenizer from a `vocab.txt` (one token per line).
    pub fn from_vocab_txt(path: &Path, lowercase: bool, max_len: usize) -> Result<Self> {
        let artifact = |message: String| Error::Artifact {
            path: path.to_path_buf(),
            message,
        };
        // Bounded: a vocab.txt is a few hundred KB.
        let size = std::fs::metadata(path)
            .map_err(|e| artifact(e.to_string()))?
            .len();
        if size > 64 << 20 {
            return Err(artifact(format!(
                "{size} bytes; a vocab.txt is at most 64 MiB"
            )));
        }
        let model = WordPiece::from_file(&path.to_string_lossy())
            .unk_token("[UNK]".into())
            .build()
            .map_err(|e| artifact(e.to_string()))?;
        let tokenizer = TokenizerBuilder::new()
            .with_model(model)
            .with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)))
            .with_pre_tokenizer(Some(BertPreTokenizer))
            .with_post_processor(None::<tokenizers::processors::PostProcessorWrapper>)
            .with_decoder(None::<tokenizers::decoders::DecoderWrapper>)
            .build()
            .map_err(|e| artifact(e.to_string()))?;
        let json = tokenizer
            .to_string(false)
            .map_err(|e| artifact(e.to_string()))?;
        let mut f =
            Self::from_json(json.as_bytes(), max_len).map_err(|e| artifact(e.to_string()))?;
        f.sep = Some(
            f.tokenizer
                .token_to_id("[SEP]")
                .ok_or_else(|| artifact("no `[SEP]` line".into()))?,
        );
        Ok(f)
    }

    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    pub fn to_json(&self) -> Result<String> {
        self.tokenizer
            .to_string(true)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::with_capacity(self.max_len);
        ids.push(self.cls);
        // Encoding cannot fail for a trained WordPiece/BPE with an unk token;
        // should it, the text is represented by [CLS] alone.
        // Bound the work on huge inputs: `max_len` tokens never need more
        // than 64 bytes each (a documented, practical bound).
        let text = truncate_at_char(text, self.max_len.saturating_mul(64));
        let room = self.max_len - 1 - usize::from(self.sep.is_some());
        if let Ok(enc) = self.tokenizer.encode(text, false) {
            ids.extend(enc.get_ids().iter().take(room));
        }
        ids.extend(self.sep);
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trained_tokenizer_has_canonical_ids_and_encodes() {
        let spec: crate::spec::EncoderSpec = toml::from_str("max-len = 8").unwrap();
        let texts = [
            "my card was declined",
            "card declined again",
            "top up failed",
            "my top up",
        ];
        let f = SubwordFeaturizer::train(&spec, &texts).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&f.to_json().unwrap()).unwrap();
        let mut vocab: Vec<(String, u64)> = doc["model"]["vocab"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(t, i)| (t.clone(), i.as_u64().unwrap()))
            .collect();
        vocab.sort_by_key(|(_, i)| *i);
        assert_eq!(vocab[0].0, "[PAD]");
        let rest: Vec<&String> = vocab[3..].iter().map(|(t, _)| t).collect();
        assert!(
            rest.windows(2).all(|w| w[0] < w[1]),
            "ids follow string order"
        );
        let ids = f.encode("my card was declined and declined and declined again");
        assert_eq!(ids.len(), 8, "[CLS] + truncation to max-len");
        assert_eq!(ids[0], f.cls);
    }

    #[test]
    fn bounded_bag_features_equal_the_full_list_truncated() {
        let spec = |max_features| BagSpec {
            dim: 8,
            buckets: 1 << 12,
            word_ngrams: 3,
            char_ngrams: Some([2, 5]),
            hidden: 0,
            dropout: 0.0,
            max_features,
        };
        let full = BagFeaturizer::new(&spec(1 << 16));
        let word = "x".repeat(5000);
        for text in [
            "short text, a few words".to_string(),
            "many words ".repeat(400),
            format!("one {word} giant word"),
            "ünïcödé wörds ".repeat(100),
        ] {
            for limit in [1, 7, 64, 512] {
                let mut expected = full.encode(&text);
                expected.truncate(limit);
                assert_eq!(
                    BagFeaturizer::new(&spec(limit)).encode(&text),
                    expected,
                    "{limit}"
                );
            }
        }
        assert_eq!(truncate_at_char("héllo", 2), "h");
    }

    #[test]
    fn words_split_punctuation_and_lowercase() {
        assert_eq!(words("Hi, I'm Bob!"), ["hi", ",", "i'm", "bob", "!"]);
        assert!(words("   ").is_empty());
    }

    #[test]
    fn bag_features_are_stable_and_in_range() {
        let spec = BagSpec {
            dim: 8,
            buckets: 1000,
            word_ngrams: 2,
            char_ngrams: Some([3, 4]),
            hidden: 0,
            dropout: 0.0,
            max_features: 512,
        };
        let f = BagFeaturizer::new(&spec);
        let a = f.encode("Card declined");
        assert_eq!(a, f.encode("card   DECLINED"));
        assert!(a.iter().all(|i| (1..1000).contains(i)));
        // 2 words + 1 bigram + char 3,4-grams of <card> (4+3) and <declined> (8+7).
        assert_eq!(a.len(), 2 + 1 + 7 + 15);
        assert_eq!(f.encode("").len(), 1);
    }
}
