//! Pretrained BERT-family encoders (`model.kind = "pretrained"`): the burn
//! module, reading a Hugging Face checkpoint directory into it, and the
//! checkpoint's tokenizer.
//!
//! The module is the post-norm BERT of the original paper, as `transformers`'
//! `BertModel` computes it: word + absolute position + token type embeddings,
//! LayerNorm (the checkpoint's epsilon), then per layer self-attention →
//! dense → residual → LayerNorm, and dense → exact (erf) GELU → dense →
//! residual → LayerNorm. Pooling (mean over real tokens, or [CLS]) and the
//! optional L2 normalisation follow sentence-transformers' modules. Field
//! names follow the checkpoint's tensor names, so the key map is short
//! (see [`load_checkpoint`]).

use crate::featurize::SubwordFeaturizer;
use crate::spec::{BertArch, Pooling, PretrainedSpec};
use crate::{Error, Result};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear,
    LinearConfig,
};
use burn::prelude::*;
use burn::tensor::activation::{gelu, softmax};
use rayon::prelude::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The checkpoint's files.
pub const CONFIG_JSON: &str = "config.json";
pub const SAFETENSORS: &str = "model.safetensors";
pub const HF_TOKENIZER: &str = "tokenizer.json";
pub const HF_VOCAB: &str = "vocab.txt";

#[derive(Module, Debug)]
pub struct BertEmbeddings {
    pub(crate) word_embeddings: Embedding,
    pub(crate) position_embeddings: Embedding,
    pub(crate) token_type_embeddings: Embedding,
    pub(crate) layer_norm: LayerNorm,
    dropout: Dropout,
}

#[derive(Module, Debug)]
pub struct BertSelfAttention {
    pub(crate) query: Linear,
    pub(crate) key: Linear,
    pub(crate) value: Linear,
    dropout: Dropout,
    #[module(skip)]
    pub(crate) heads: usize,
}

#[derive(Module, Debug)]
pub struct BertSelfOutput {
    pub(crate) dense: Linear,
    pub(crate) layer_norm: LayerNorm,
    dropout: Dropout,
}

#[derive(Module, Debug)]
pub struct BertAttention {
    pub(crate) self_attn: BertSelfAttention,
    pub(crate) output: BertSelfOutput,
}

#[derive(Module, Debug)]
pub struct BertIntermediate {
    pub(crate) dense: Linear,
}

#[derive(Module, Debug)]
pub struct BertLayer {
    pub(crate) attention: BertAttention,
    pub(crate) intermediate: BertIntermediate,
    pub(crate) output: BertSelfOutput,
}

#[derive(Module, Debug)]
pub struct BertEncoder {
    pub(crate) layer: Vec<BertLayer>,
}

/// A BERT encoder with a linear head on its pooled output.
#[derive(Module, Debug)]
pub struct BertModel {
    pub(crate) embeddings: BertEmbeddings,
    pub(crate) encoder: BertEncoder,
    dropout: Dropout,
    pub(crate) out: Linear,
    #[module(skip)]
    pub(crate) cls_pooling: bool,
    #[module(skip)]
    pub(crate) normalize: bool,
    #[module(skip)]
    pub(crate) eps: f64,
    #[module(skip)]
    pub(crate) head_scale: f32,
}

impl BertModel {
    /// Random weights of the checkpoint's shape (load them with [`load_checkpoint`]).
    pub fn new(spec: &PretrainedSpec, classes: usize, device: &Device) -> Self {
        let a = spec.arch.clone().unwrap_or_else(tiny_arch);
        let p = spec.dropout();
        let norm = || {
            LayerNormConfig::new(a.hidden)
                .with_epsilon(a.layer_norm_eps)
                .init(device)
        };
        let drop = || DropoutConfig::new(p).init();
        let lin = |i: usize, o: usize| LinearConfig::new(i, o).init(device);
        let layer = (0..a.layers)
            .map(|_| BertLayer {
                attention: BertAttention {
                    self_attn: BertSelfAttention {
                        query: lin(a.hidden, a.hidden),
                        key: lin(a.hidden, a.hidden),
                        value: lin(a.hidden, a.hidden),
                        dropout: drop(),
                        heads: a.heads,
                    },
                    output: BertSelfOutput {
                        dense: lin(a.hidden, a.hidden),
                        layer_norm: norm(),
                        dropout: drop(),
                    },
                },
                intermediate: BertIntermediate {
                    dense: lin(a.hidden, a.intermediate),
                },
                output: BertSelfOutput {
                    dense: lin(a.intermediate, a.hidden),
                    layer_norm: norm(),
                    dropout: drop(),
                },
            })
            .collect();
        BertModel {
            embeddings: BertEmbeddings {
                word_embeddings: EmbeddingConfig::new(a.vocab_size, a.hidden).init(device),
                position_embeddings: EmbeddingConfig::new(a.max_positions, a.hidden).init(device),
                token_type_embeddings: EmbeddingConfig::new(a.type_vocab, a.hidden).init(device),
                layer_norm: norm(),
                dropout: drop(),
            },
            encoder: BertEncoder { layer },
            dropout: drop(),
            out: lin(a.hidden, classes),
            cls_pooling: spec.pooling() == Pooling::Cls,
            normalize: spec.normalize.unwrap_or(false),
            eps: a.layer_norm_eps,
            head_scale: spec.head_scale() as f32,
        }
    }

    /// Layers of the encoder.
    pub fn layers(&self) -> usize {
        self.encoder.layer.len()
    }

    /// Hidden size (the pooled embedding's width).
    pub fn hidden(&self) -> usize {
        self.out.weight.val().dims()[0]
    }

    /// The sentence embedding `[b, hidden]`: encoder, pooling, normalisation.
    pub fn embed(&self, ids: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<2> {
        self.embed_from(0, self.embed_tokens(ids), mask)
    }

    /// Token embeddings `[b, s, hidden]` (before any layer).
    pub fn embed_tokens(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [b, s] = ids.dims();
        let device = ids.device();
        let e = &self.embeddings;
        let positions = Tensor::<1, Int>::arange(0..s as i64, &device)
            .reshape([1, s])
            .repeat_dim(0, b);
        // Single sentences: every token has type 0.
        let [_, d] = e.token_type_embeddings.weight.val().dims();
        let type0 = e
            .token_type_embeddings
            .weight
            .val()
            .slice([0..1, 0..d])
            .reshape([1, 1, d]);
        let x = e.word_embeddings.forward(ids) + e.position_embeddings.forward(positions) + type0;
        e.dropout.forward(e.layer_norm.forward(x))
    }

    /// Run layers `from..` on hidden states `x` `[b, s, hidden]`, then pool.
    pub fn embed_from(&self, from: usize, x: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
        let x = self.layers_from(from, x, mask.clone());
        let pooled = if self.cls_pooling {
            let [b, _, d] = x.dims();
            x.slice([0..b, 0..1, 0..d]).reshape([b, d])
        } else {
            crate::model::masked_mean(x, mask)
        };
        if self.normalize {
            let norm = pooled
                .clone()
                .powf_scalar(2.0)
                .sum_dim(1)
                .sqrt()
                .clamp_min(1e-12);
            pooled / norm
        } else {
            pooled
        }
    }

    /// Hidden states after layers `from..`.
    pub fn layers_from(&self, from: usize, x: Tensor<3>, mask: Tensor<2>) -> Tensor<3> {
        self.layers_range(from..self.layers(), x, mask)
    }

    /// Hidden states `[b, s, hidden]` after the embeddings and layers `..upto`.
    pub fn hidden_upto(&self, upto: usize, ids: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<3> {
        self.layers_range(0..upto, self.embed_tokens(ids), mask)
    }

    fn layers_range(
        &self,
        range: std::ops::Range<usize>,
        mut x: Tensor<3>,
        mask: Tensor<2>,
    ) -> Tensor<3> {
        let [b, s] = mask.dims();
        // Additive attention bias: 0 on real keys, -1e9 on padding.
        let bias = ((mask - 1.0) * 1e9).reshape([b, 1, 1, s]);
        for layer in self.encoder.layer.iter().take(range.end).skip(range.start) {
            x = layer.forward(x, bias.clone());
        }
        x
    }

    /// The head on pooled embeddings `[b, hidden]` → logits. The pooled
    /// embedding is scaled by `head_scale` first (see [`PretrainedSpec`]).
    pub fn head(&self, pooled: Tensor<2>) -> Tensor<2> {
        self.out
            .forward(self.dropout.forward(pooled) * f64::from(self.head_scale))
    }

    /// Logits `[b, classes]`.
    pub fn forward(&self, ids: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<2> {
        self.head(self.embed(ids, mask))
    }

    /// Stop gradients (and dropout) in the embeddings and the lowest `n`
    /// layers: they stay as loaded while the rest trains.
    pub fn freeze_lower(mut self, n: usize) -> Self {
        self.embeddings = self.embeddings.freeze();
        let layers = std::mem::take(&mut self.encoder.layer);
        self.encoder.layer = layers
            .into_iter()
            .enumerate()
            .map(|(i, l)| if i < n { l.freeze() } else { l })
            .collect();
        self
    }
}

impl BertLayer {
    fn forward(&self, x: Tensor<3>, bias: Tensor<4>) -> Tensor<3> {
        let a = self.attention.self_attn.forward(x.clone(), bias);
        let o = &self.attention.output;
        let x = o
            .layer_norm
            .forward(o.dropout.forward(o.dense.forward(a)) + x);
        let h = gelu_exact(self.intermediate.dense.forward(x.clone()));
        let o = &self.output;
        o.layer_norm
            .forward(o.dropout.forward(o.dense.forward(h)) + x)
    }
}

/// Exact (erf) GELU. Under autodiff, burn's (its backward is exact). Without
/// a gradient (inference, and the frozen layers of a fine-tuning run) one
/// fused pass on the host with a rational erf (max |error| 4e-7 over all f32,
/// the approximation Eigen and XNNPACK use; GELU within 1.1e-6): burn-flex's
/// erf is a scalar libm call per element, 20% of MiniLM's inference profile.
fn gelu_exact(x: Tensor<3>) -> Tensor<3> {
    if x.is_require_grad() {
        return gelu(x);
    }
    let dims = x.dims();
    let device = x.device();
    let Ok(mut v) = x.clone().into_data().convert::<f32>().try_into_vec::<f32>() else {
        return gelu(x);
    };
    v.par_chunks_mut(1 << 14).for_each(|chunk| {
        for x in chunk {
            *x = 0.5 * *x * (1.0 + erf_rational(*x * std::f32::consts::FRAC_1_SQRT_2));
        }
    });
    Tensor::from_data(TensorData::new(v, dims), &device)
}

/// erf(x) as x P(x^2) / Q(x^2) on [-4, 4] (clamped; erf(4) = 1 - 1.5e-8).
#[inline]
fn erf_rational(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10f32;
    for c in [
        2.770_681_4e-8,
        -2.101_024e-6,
        -5.692_506_4e-5,
        -7.349_906_3e-4,
        -2.9546e-3,
        -1.609_603_3e-2,
    ] {
        p = p * x2 + c;
    }
    let mut q = -1.456_607_2e-5f32;
    for c in [-2.133_740_6e-4, -1.682_827e-3, -7.373_329e-3, -1.426_474e-2] {
        q = q * x2 + c;
    }
    x * p / q
}

impl BertSelfAttention {
    fn forward(&self, x: Tensor<3>, bias: Tensor<4>) -> Tensor<3> {
        let [b, s, d] = x.dims();
        let h = self.heads;
        let dh = d / h;
        let split = |t: Tensor<3>| t.reshape([b, s, h, dh]).swap_dims(1, 2); // [b, h, s, dh]
        let q = split(self.query.forward(x.clone()));
        let k = split(self.key.forward(x.clone()));
        let v = split(self.value.forward(x));
        let scores = q.matmul(k.swap_dims(2, 3)) * (1.0 / (dh as f64).sqrt()) + bias;
        let p = self.dropout.forward(softmax(scores, 3));
        p.matmul(v).swap_dims(1, 2).reshape([b, s, d])
    }
}

/// A placeholder shape for a spec without `arch` (never a real model:
/// training and loading always resolve the architecture first).
fn tiny_arch() -> BertArch {
    BertArch {
        vocab_size: 2,
        hidden: 8,
        layers: 1,
        heads: 1,
        intermediate: 8,
        max_positions: 2,
        type_vocab: 1,
        layer_norm_eps: 1e-12,
    }
}

fn artifact(path: &Path, message: impl Into<String>) -> Error {
    Error::Artifact {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let bytes = distill_core::fsutil::read_bounded(path, 4 << 20)
        .map_err(|e| artifact(path, e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| artifact(path, format!("not JSON: {e}")))
}

/// Fill `arch`, `pooling`, `normalize` and `dropout` of `spec` from the
/// checkpoint directory `dir` (what the config leaves unset).
pub fn resolve(spec: &PretrainedSpec, dir: &Path) -> Result<PretrainedSpec> {
    let mut spec = spec.clone();
    let path = dir.join(CONFIG_JSON);
    let cfg = read_json(&path)?;
    let get = |k: &str| cfg.get(k).and_then(Value::as_u64).map(|v| v as usize);
    let need = |k: &str| get(k).ok_or_else(|| artifact(&path, format!("no integer `{k}`")));
    let model_type = cfg.get("model_type").and_then(Value::as_str).unwrap_or("");
    if model_type != "bert" {
        return Err(artifact(
            &path,
            format!(
                "model_type `{model_type}` is not supported (distill loads BERT-family checkpoints: model_type \"bert\", e.g. MiniLM, BERT, bge-small)"
            ),
        ));
    }
    if let Some(act) = cfg.get("hidden_act").and_then(Value::as_str)
        && act != "gelu"
    {
        return Err(artifact(
            &path,
            format!("hidden_act `{act}` is not supported (only exact \"gelu\")"),
        ));
    }
    if let Some(p) = cfg.get("position_embedding_type").and_then(Value::as_str)
        && p != "absolute"
    {
        return Err(artifact(
            &path,
            format!("position_embedding_type `{p}` is not supported (only \"absolute\")"),
        ));
    }
    spec.arch = Some(BertArch {
        vocab_size: need("vocab_size")?,
        hidden: need("hidden_size")?,
        layers: need("num_hidden_layers")?,
        heads: need("num_attention_heads")?,
        intermediate: need("intermediate_size")?,
        max_positions: need("max_position_embeddings")?,
        type_vocab: get("type_vocab_size").unwrap_or(2),
        layer_norm_eps: cfg
            .get("layer_norm_eps")
            .and_then(Value::as_f64)
            .unwrap_or(1e-12),
    });
    if spec.dropout.is_none() {
        spec.dropout = Some(
            cfg.get("hidden_dropout_prob")
                .and_then(Value::as_f64)
                .unwrap_or(0.1),
        );
    }
    if spec.pooling.is_none() {
        let pooling = dir.join("1_Pooling").join(CONFIG_JSON);
        spec.pooling = Some(if pooling.is_file() {
            let p = read_json(&pooling)?;
            let on = |k: &str| p.get(k).and_then(Value::as_bool).unwrap_or(false);
            if on("pooling_mode_cls_token") {
                Pooling::Cls
            } else if on("pooling_mode_mean_tokens") {
                Pooling::Mean
            } else {
                return Err(artifact(&pooling, "only mean or CLS pooling is supported"));
            }
        } else {
            Pooling::Mean
        });
    }
    if spec.normalize.is_none() {
        let modules = dir.join("modules.json");
        spec.normalize = Some(
            modules.is_file() && {
                let m = read_json(&modules)?;
                m.as_array().is_some_and(|a| {
                    a.iter().any(|x| {
                        x.get("type")
                            .and_then(Value::as_str)
                            .is_some_and(|t| t.ends_with(".Normalize"))
                    })
                })
            },
        );
    }
    spec.validate_resolved()?;
    Ok(spec)
}

impl PretrainedSpec {
    fn validate_resolved(&self) -> Result<()> {
        let spec = crate::spec::ModelSpec::Pretrained(self.clone());
        spec.validate().and_then(|_| spec.validate_bounds())
    }
}

/// Load `dir/model.safetensors` into `model` (the head stays as initialised).
/// Every encoder tensor must be present with its shape; a missing one is
/// named in the error. Unused tensors (the checkpoint's pooler, an MLM
/// head) are ignored.
pub fn load_checkpoint(mut model: BertModel, dir: &Path) -> Result<BertModel> {
    use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
    let path = dir.join(SAFETENSORS);
    if !path.is_file() {
        return Err(artifact(
            &path,
            "missing (distill reads pretrained weights from model.safetensors; convert a pytorch_model.bin with `transformers` first)",
        ));
    }
    let mut store = SafetensorsStore::from_file(&path)
        .with_from_adapter(PyTorchToBurnAdapter)
        // `bert.` prefixes (BertForSequenceClassification and friends).
        .with_key_remapping(r"^bert\.", "")
        .with_key_remapping(r"LayerNorm\.", "layer_norm.")
        .with_key_remapping(r"\.self\.", ".self_attn.")
        .allow_partial(true);
    let result = model
        .load_from(&mut store)
        .map_err(|e| artifact(&path, format!("cannot read the weights: {e}")))?;
    if !result.errors.is_empty() {
        return Err(artifact(
            &path,
            format!(
                "tensors that do not fit the architecture in config.json: {:?}",
                result.errors
            ),
        ));
    }
    let missing: Vec<&str> = result
        .missing
        .iter()
        .map(|(p, _)| p.as_str())
        .filter(|p| !p.starts_with("out."))
        .collect();
    if !missing.is_empty() {
        return Err(artifact(
            &path,
            format!(
                "no tensor for {} (names after the key map; e.g. `encoder.layer.0.attention.self_attn.query.weight` is the checkpoint's `encoder.layer.0.attention.self.query.weight`)",
                missing.join(", ")
            ),
        ));
    }
    Ok(model)
}

/// The checkpoint's tokenizer: `tokenizer.json`, else a BERT WordPiece
/// built from `vocab.txt` (lower-cased unless `tokenizer_config.json`
/// says `do_lower_case: false`).
pub fn load_tokenizer(dir: &Path, max_len: usize) -> Result<SubwordFeaturizer> {
    let json = dir.join(HF_TOKENIZER);
    if json.is_file() {
        return SubwordFeaturizer::load_pretrained(&json, max_len);
    }
    let vocab = dir.join(HF_VOCAB);
    if !vocab.is_file() {
        return Err(artifact(
            dir,
            format!("no {HF_TOKENIZER} or {HF_VOCAB}: the checkpoint's tokenizer is needed"),
        ));
    }
    let lower = dir.join("tokenizer_config.json");
    let lowercase = !lower.is_file()
        || read_json(&lower)?
            .get("do_lower_case")
            .and_then(Value::as_bool)
            .unwrap_or(true);
    SubwordFeaturizer::from_vocab_txt(&vocab, lowercase, max_len)
}

/// The checkpoint directory of the config's `model.path`, with a leading
/// `~/` expanded to `$HOME` (example configs point at the install script's
/// cache).
pub fn checkpoint_dir(spec: &PretrainedSpec) -> Result<PathBuf> {
    let path = spec.path.clone().ok_or_else(|| {
        Error::Spec("pretrained: model.path (the checkpoint directory) is required".into())
    })?;
    Ok(match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path,
    })
}
