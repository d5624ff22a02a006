//! The students' weights on the host, by role, for exporters (ONNX) and
//! other runtimes. Shapes follow burn: `Linear.weight` is `[in, out]`
//! (`y = x W + b`), embeddings are `[rows, dim]`.

use crate::bert::BertModel;
use crate::model::{BagModel, EncoderModel, Student};
use burn::module::Param;
use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;

/// A dense f32 tensor, row-major.
#[derive(Debug, Clone)]
pub struct HostTensor {
    pub dims: Vec<usize>,
    pub data: Vec<f32>,
}

fn host<const D: usize>(t: Tensor<D>) -> HostTensor {
    let dims = t.dims().to_vec();
    let data = t
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default();
    HostTensor { dims, data }
}

fn param<const D: usize>(p: &Param<Tensor<D>>) -> HostTensor {
    host(p.val())
}

#[derive(Debug, Clone)]
pub struct LinearW {
    pub weight: HostTensor,
    pub bias: Option<HostTensor>,
}

impl LinearW {
    fn of(l: &Linear) -> Self {
        LinearW {
            weight: param(&l.weight),
            bias: l.bias.as_ref().map(param),
        }
    }
}

#[derive(Debug, Clone)]
pub struct NormW {
    pub gamma: HostTensor,
    pub beta: Option<HostTensor>,
    pub epsilon: f32,
}

impl NormW {
    /// burn's default epsilon (the from-scratch students never change it).
    fn of(n: &LayerNorm) -> Self {
        Self::with_eps(n, 1e-5)
    }

    fn with_eps(n: &LayerNorm, epsilon: f32) -> Self {
        NormW {
            gamma: param(&n.gamma),
            beta: n.beta.as_ref().map(param),
            epsilon,
        }
    }
}

#[derive(Debug, Clone)]
pub struct LayerW {
    /// Pre-norm before attention (burn's `norm_2` in a norm-first layer);
    /// in a post-norm layer (BERT), the norm after the attention's residual.
    pub norm_attn: NormW,
    pub query: LinearW,
    pub key: LinearW,
    pub value: LinearW,
    pub output: LinearW,
    /// Pre-norm before the feed-forward block (burn's `norm_1`); post-norm:
    /// after the feed-forward residual.
    pub norm_ff: NormW,
    pub ff_inner: LinearW,
    pub ff_outer: LinearW,
    pub heads: usize,
    /// Added to masked attention scores before softmax.
    pub min_float: f32,
}

/// Every weight of a student, by role.
// Built once per export; the size of the enum itself does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum NetWeights {
    Bag {
        embedding: HostTensor,
        hidden: Option<LinearW>,
        out: LinearW,
    },
    /// A transformer encoder: distill's pre-norm student, or a pretrained
    /// post-norm BERT (`post_norm`, with token type 0's embedding added and
    /// a LayerNorm on the embeddings).
    Encoder {
        tokens: HostTensor,
        positions: HostTensor,
        /// BERT: the embedding of token type 0, added to every position.
        type0: Option<HostTensor>,
        /// BERT: the LayerNorm after the embeddings.
        emb_norm: Option<NormW>,
        layers: Vec<LayerW>,
        post_norm: bool,
        /// The pre-norm student's final LayerNorm.
        norm: Option<NormW>,
        out: LinearW,
        cls_pooling: bool,
        /// L2-normalise the pooled embedding.
        normalize: bool,
    },
}

fn bag(m: &BagModel) -> NetWeights {
    NetWeights::Bag {
        embedding: param(&m.emb.weight),
        hidden: m.hidden.as_ref().map(LinearW::of),
        out: LinearW::of(&m.out),
    }
}

fn encoder(m: &EncoderModel) -> NetWeights {
    let layers = m
        .enc
        .layers
        .iter()
        .map(|l| LayerW {
            norm_attn: NormW::of(&l.norm_2),
            query: LinearW::of(&l.mha.query),
            key: LinearW::of(&l.mha.key),
            value: LinearW::of(&l.mha.value),
            output: LinearW::of(&l.mha.output),
            norm_ff: NormW::of(&l.norm_1),
            ff_inner: LinearW::of(&l.pwff.linear_inner),
            ff_outer: LinearW::of(&l.pwff.linear_outer),
            heads: l.mha.n_heads,
            min_float: l.mha.min_float as f32,
        })
        .collect();
    NetWeights::Encoder {
        tokens: param(&m.tok.weight),
        positions: param(&m.pos.weight),
        type0: None,
        emb_norm: None,
        layers,
        post_norm: false,
        norm: Some(NormW::of(&m.norm)),
        out: LinearW::of(&m.out),
        cls_pooling: m.cls_pooling,
        normalize: false,
    }
}

fn bert(m: &BertModel) -> NetWeights {
    let eps = m.eps as f32;
    let e = &m.embeddings;
    let types = param(&e.token_type_embeddings.weight);
    let d = types.dims[1];
    let layers = m
        .encoder
        .layer
        .iter()
        .map(|l| {
            let a = &l.attention;
            LayerW {
                norm_attn: NormW::with_eps(&a.output.layer_norm, eps),
                query: LinearW::of(&a.self_attn.query),
                key: LinearW::of(&a.self_attn.key),
                value: LinearW::of(&a.self_attn.value),
                output: LinearW::of(&a.output.dense),
                norm_ff: NormW::with_eps(&l.output.layer_norm, eps),
                ff_inner: LinearW::of(&l.intermediate.dense),
                ff_outer: LinearW::of(&l.output.dense),
                heads: a.self_attn.heads,
                min_float: -1e9,
            }
        })
        .collect();
    NetWeights::Encoder {
        tokens: param(&e.word_embeddings.weight),
        positions: param(&e.position_embeddings.weight),
        type0: Some(HostTensor {
            dims: vec![d],
            data: types.data[..d].to_vec(),
        }),
        emb_norm: Some(NormW::with_eps(&e.layer_norm, eps)),
        layers,
        post_norm: true,
        norm: None,
        // The head's input scale, folded into its weights.
        out: {
            let mut out = LinearW::of(&m.out);
            out.weight.data.iter_mut().for_each(|w| *w *= m.head_scale);
            out
        },
        cls_pooling: m.cls_pooling,
        normalize: m.normalize,
    }
}

impl Student {
    /// All weights on the host (dequantized to f32 when the model holds quantized ones).
    pub fn weights(&self) -> NetWeights {
        match self {
            Student::Bag(m) => bag(m),
            Student::Encoder(m) => encoder(m),
            Student::Pretrained(m) => bert(m),
        }
    }
}
