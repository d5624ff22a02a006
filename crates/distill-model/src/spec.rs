//! Model specs: the `[model]` table of an experiment config, also stored in
//! `model/model.json` so that a trained model can be rebuilt exactly.

use serde::{Deserialize, Serialize};

/// Which student to build, and its size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ModelSpec {
    /// fastText-style hashed word + character n-gram bag, mean-pooled.
    Bag(BagSpec),
    /// Small transformer encoder over a subword tokenizer.
    Encoder(EncoderSpec),
    /// A pretrained BERT-family encoder (Hugging Face files) with a head.
    Pretrained(PretrainedSpec),
    /// Extraction: a BIO tagger on hashed per-token features with a
    /// constrained linear-chain CRF (`task = "extract"`, or joint intent + slots).
    Tagger(crate::tagger::TaggerSpec),
}

/// Upper bounds on every size a spec may declare. Generous for real students,
/// small enough that a corrupt or hostile `model.json` cannot make a loader
/// allocate without limit.
pub const MAX_VOCAB: usize = 1 << 24;
pub const MAX_PARAMS: usize = 1 << 31;
const MAX_DIM: usize = 8192;
const MAX_LAYERS: usize = 64;
const MAX_HEADS: usize = 128;
const MAX_LEN: usize = 8192;
const MAX_NGRAM: usize = 16;
const MAX_FEATURES: usize = 1 << 16;

impl ModelSpec {
    /// Size limits (see [`MAX_VOCAB`]); [`ModelSpec::validate`] checks consistency.
    pub fn validate_bounds(&self) -> crate::Result<()> {
        let over = |what: &str, v: usize, max: usize| {
            if v > max {
                Err(crate::Error::Spec(format!(
                    "{what} = {v} exceeds the limit {max}"
                )))
            } else {
                Ok(())
            }
        };
        match self {
            ModelSpec::Bag(b) => {
                over("bag dim", b.dim, MAX_DIM)?;
                over("bag buckets", b.buckets, MAX_VOCAB)?;
                over("bag word-ngrams", b.word_ngrams, MAX_NGRAM)?;
                if let Some([_, hi]) = b.char_ngrams {
                    over("bag char-ngrams max", hi, MAX_NGRAM)?;
                }
                over("bag hidden", b.hidden, MAX_DIM)?;
                over("bag max-features", b.max_features, MAX_FEATURES)?;
                if b.max_features == 0 {
                    return Err(crate::Error::Spec("bag: max-features must be >= 1".into()));
                }
            }
            ModelSpec::Encoder(e) => {
                over("encoder layers", e.layers, MAX_LAYERS)?;
                over("encoder d-model", e.d_model, MAX_DIM)?;
                over("encoder heads", e.heads, MAX_HEADS)?;
                over("encoder ff", e.ff, 4 * MAX_DIM)?;
                over("encoder max-len", e.max_len, MAX_LEN)?;
                over(
                    "encoder tokenizer vocab-size",
                    e.tokenizer.vocab_size,
                    MAX_VOCAB,
                )?;
            }
            ModelSpec::Pretrained(p) => {
                over("pretrained max-len", p.max_len, MAX_LEN)?;
                if let Some(a) = &p.arch {
                    over("pretrained layers", a.layers, MAX_LAYERS)?;
                    over("pretrained hidden", a.hidden, MAX_DIM)?;
                    over("pretrained heads", a.heads, MAX_HEADS)?;
                    over("pretrained intermediate", a.intermediate, 4 * MAX_DIM)?;
                    over("pretrained max-positions", a.max_positions, MAX_LEN)?;
                    over("pretrained type-vocab", a.type_vocab, 16)?;
                    over("pretrained vocab", a.vocab_size, MAX_VOCAB)?;
                }
            }
            ModelSpec::Tagger(t) => t.validate()?,
        }
        Ok(())
    }

    /// Parameters of the student this spec builds (saturating), for limits.
    pub fn param_count(&self, vocab: usize, classes: usize) -> usize {
        let m = |a: usize, b: usize| a.saturating_mul(b);
        match self {
            ModelSpec::Bag(b) => {
                let head_in = if b.hidden > 0 { b.hidden } else { b.dim };
                m(vocab, b.dim)
                    .saturating_add(m(b.dim, b.hidden))
                    .saturating_add(m(head_in, classes))
            }
            ModelSpec::Encoder(e) => {
                let per_layer =
                    m(4, m(e.d_model, e.d_model)).saturating_add(m(2, m(e.d_model, e.ff)));
                m(vocab.saturating_add(e.max_len), e.d_model)
                    .saturating_add(m(e.layers, per_layer))
                    .saturating_add(m(e.d_model, classes))
            }
            ModelSpec::Pretrained(p) => {
                let Some(a) = &p.arch else {
                    return 0;
                };
                let d = a.hidden;
                let per_layer = m(4, m(d, d)).saturating_add(m(2, m(d, a.intermediate)));
                m(
                    vocab
                        .saturating_add(a.max_positions)
                        .saturating_add(a.type_vocab),
                    d,
                )
                .saturating_add(m(a.layers, per_layer))
                .saturating_add(m(d, classes))
            }
            ModelSpec::Tagger(t) => m(t.buckets, t.dim).saturating_add(m(t.dim, classes)),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            ModelSpec::Bag(_) => "bag",
            ModelSpec::Encoder(_) => "encoder",
            ModelSpec::Pretrained(_) => "pretrained",
            ModelSpec::Tagger(_) => "tagger",
        }
    }

    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::Error::Spec(m));
        match self {
            ModelSpec::Bag(b) => {
                if b.dim == 0 || b.buckets < 2 {
                    return bad("bag: dim must be > 0 and buckets >= 2".into());
                }
                if b.word_ngrams == 0 {
                    return bad("bag: word-ngrams must be >= 1".into());
                }
                if let Some([lo, hi]) = b.char_ngrams
                    && (lo == 0 || lo > hi)
                {
                    return bad(format!(
                        "bag: char-ngrams [{lo}, {hi}] must satisfy 1 <= min <= max"
                    ));
                }
                if !(0.0..1.0).contains(&b.dropout) {
                    return bad(format!("bag: dropout {} must be in [0, 1)", b.dropout));
                }
            }
            ModelSpec::Encoder(e) => {
                if e.d_model == 0 || e.heads == 0 || e.d_model % e.heads != 0 {
                    return bad(format!(
                        "encoder: d-model ({}) must be a positive multiple of heads ({})",
                        e.d_model, e.heads
                    ));
                }
                if e.layers == 0 || e.ff == 0 || e.max_len < 2 {
                    return bad("encoder: layers, ff must be > 0 and max-len >= 2".into());
                }
                if !(0.0..1.0).contains(&e.dropout) {
                    return bad(format!("encoder: dropout {} must be in [0, 1)", e.dropout));
                }
                if e.tokenizer.path.is_none() && e.tokenizer.vocab_size < 100 {
                    return bad("encoder: tokenizer vocab-size must be >= 100".into());
                }
            }
            ModelSpec::Pretrained(p) => {
                if p.max_len < 2 {
                    return bad("pretrained: max-len must be >= 2 ([CLS] and [SEP])".into());
                }
                if let Some(d) = p.dropout
                    && !(0.0..1.0).contains(&d)
                {
                    return bad(format!("pretrained: dropout {d} must be in [0, 1)"));
                }
                if let Some(h) = p.head_scale
                    && !(h > 0.0 && h <= 1e4)
                {
                    return bad(format!("pretrained: head-scale {h} must be in (0, 1e4]"));
                }
                if let Some(a) = &p.arch {
                    if a.hidden == 0 || a.heads == 0 || a.hidden % a.heads != 0 {
                        return bad(format!(
                            "pretrained: hidden ({}) must be a positive multiple of heads ({})",
                            a.hidden, a.heads
                        ));
                    }
                    if a.layers == 0 || a.intermediate == 0 || a.type_vocab == 0 {
                        return bad(
                            "pretrained: layers, intermediate and type-vocab must be > 0".into(),
                        );
                    }
                    if p.max_len > a.max_positions {
                        return bad(format!(
                            "pretrained: max-len {} exceeds the checkpoint's {} positions",
                            p.max_len, a.max_positions
                        ));
                    }
                    if !(a.layer_norm_eps > 0.0 && a.layer_norm_eps < 1.0) {
                        return bad(format!(
                            "pretrained: layer-norm-eps {} must be in (0, 1)",
                            a.layer_norm_eps
                        ));
                    }
                }
            }
            ModelSpec::Tagger(t) => t.validate()?,
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct BagSpec {
    /// Embedding dimension.
    #[serde(default = "d_bag_dim")]
    pub dim: usize,
    /// Hash buckets shared by words and n-grams (the embedding table's rows).
    #[serde(default = "d_buckets")]
    pub buckets: usize,
    /// Longest word n-gram (1 = unigrams only).
    #[serde(default = "d_word_ngrams")]
    pub word_ngrams: usize,
    /// Character n-gram lengths [min, max] over `<word>`; omit for none.
    #[serde(default = "d_char_ngrams")]
    pub char_ngrams: Option<[usize; 2]>,
    /// Hidden layer width (0 = linear head on the pooled embedding).
    #[serde(default)]
    pub hidden: usize,
    #[serde(default)]
    pub dropout: f64,
    /// Features kept per example (the rest are dropped).
    #[serde(default = "d_max_features")]
    pub max_features: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct EncoderSpec {
    #[serde(default = "d_layers")]
    pub layers: usize,
    #[serde(default = "d_d_model")]
    pub d_model: usize,
    #[serde(default = "d_heads")]
    pub heads: usize,
    #[serde(default = "d_ff")]
    pub ff: usize,
    /// Tokens per example, [CLS] included; longer texts are truncated.
    #[serde(default = "d_max_len")]
    pub max_len: usize,
    #[serde(default)]
    pub pooling: Pooling,
    #[serde(default = "d_enc_dropout")]
    pub dropout: f64,
    #[serde(default)]
    pub tokenizer: TokenizerSpec,
}

/// `model.kind = "pretrained"`: a BERT-family checkpoint in Hugging Face
/// layout (`config.json`, `model.safetensors`, `tokenizer.json` or
/// `vocab.txt`, sentence-transformers' `1_Pooling/config.json` and
/// `modules.json` when present). The directory is read when a run starts;
/// the run keeps what it needs (weights, tokenizer, this spec with `arch`
/// filled in), so bundles do not depend on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PretrainedSpec {
    /// The checkpoint directory (relative to the experiment config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<std::path::PathBuf>,
    /// Tokens per example, [CLS] and [SEP] included.
    #[serde(default = "d_pre_max_len")]
    pub max_len: usize,
    /// Default: the checkpoint's (`1_Pooling/config.json`), else mean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooling: Option<Pooling>,
    /// L2-normalise the pooled embedding. Default: whether the checkpoint's
    /// `modules.json` ends in sentence-transformers' `Normalize`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize: Option<bool>,
    /// Dropout while fine-tuning. Default: the checkpoint's `hidden_dropout_prob`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropout: Option<f64>,
    /// The head sees the pooled embedding times this. Default: sqrt(hidden)
    /// when the embedding is normalised (a unit vector would need head
    /// weights ~20x larger than AdamW's steps reach in a few epochs, as in
    /// cosine classifiers), else 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_scale: Option<f64>,
    /// The architecture, read from `config.json` when a run starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<BertArch>,
}

/// What `config.json` says about a BERT-family encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct BertArch {
    pub vocab_size: usize,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub max_positions: usize,
    pub type_vocab: usize,
    pub layer_norm_eps: f64,
}

impl PretrainedSpec {
    pub fn pooling(&self) -> Pooling {
        self.pooling.unwrap_or_default()
    }
    pub fn dropout(&self) -> f64 {
        self.dropout.unwrap_or(0.1)
    }
    pub fn head_scale(&self) -> f64 {
        self.head_scale
            .unwrap_or_else(|| match (&self.arch, self.normalize) {
                (Some(a), Some(true)) => (a.hidden as f64).sqrt(),
                _ => 1.0,
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pooling {
    /// Mean over non-padding positions.
    #[default]
    Mean,
    /// The [CLS] position.
    Cls,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TokenizerSpec {
    /// Algorithm when trained on the training split.
    #[serde(default)]
    pub kind: TokenizerKind,
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    /// Use an existing `tokenizer.json` instead of training one (relative to
    /// the experiment config). Training is not bit-reproducible: `tokenizers`
    /// breaks ties between equally frequent merges in hash order, so two
    /// fresh encoder runs can learn slightly different vocabularies. Point
    /// this at a run's `model/tokenizer.json` for runs that must be identical.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<std::path::PathBuf>,
    #[serde(default = "yes")]
    pub lowercase: bool,
}

impl Default for TokenizerSpec {
    fn default() -> Self {
        TokenizerSpec {
            kind: TokenizerKind::default(),
            vocab_size: d_vocab(),
            path: None,
            lowercase: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenizerKind {
    #[default]
    Wordpiece,
    Bpe,
}

fn d_bag_dim() -> usize {
    64
}
fn d_buckets() -> usize {
    1 << 16
}
fn d_word_ngrams() -> usize {
    2
}
fn d_char_ngrams() -> Option<[usize; 2]> {
    Some([3, 5])
}
fn d_max_features() -> usize {
    512
}
fn d_layers() -> usize {
    2
}
fn d_d_model() -> usize {
    128
}
fn d_heads() -> usize {
    4
}
fn d_ff() -> usize {
    512
}
fn d_max_len() -> usize {
    64
}
fn d_pre_max_len() -> usize {
    128
}
fn d_enc_dropout() -> f64 {
    0.1
}
fn d_vocab() -> usize {
    8000
}
fn yes() -> bool {
    true
}
