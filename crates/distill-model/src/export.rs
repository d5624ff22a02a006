//! The students' weights on the host, by role, for exporters (ONNX) and
//! other runtimes. Shapes follow burn: `Linear.weight` is `[in, out]`
//! (`y = x W + b`), embeddings are `[rows, dim]`.

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
    /// burn's default (the students never change it).
    pub epsilon: f32,
}

impl NormW {
    fn of(n: &LayerNorm) -> Self {
        NormW {
            gamma: param(&n.gamma),
            beta: n.beta.as_ref().map(param),
            epsilon: 1e-5,
        }
    }
}

#[derive(Debug, Clone)]
pub struct LayerW {
    /// Pre-norm before attention (burn's `norm_2` in a norm-first layer).
    pub norm_attn: NormW,
    pub query: LinearW,
    pub key: LinearW,
    pub value: LinearW,
    pub output: LinearW,
    /// Pre-norm before the feed-forward block (burn's `norm_1`).
    pub norm_ff: NormW,
    pub ff_inner: LinearW,
    pub ff_outer: LinearW,
    pub heads: usize,
    /// Added to masked attention scores before softmax.
    pub min_float: f32,
}

/// Every weight of a student, by role.
#[derive(Debug, Clone)]
pub enum NetWeights {
    Bag {
        embedding: HostTensor,
        hidden: Option<LinearW>,
        out: LinearW,
    },
    Encoder {
        tokens: HostTensor,
        positions: HostTensor,
        layers: Vec<LayerW>,
        norm: NormW,
        out: LinearW,
        cls_pooling: bool,
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
        layers,
        norm: NormW::of(&m.norm),
        out: LinearW::of(&m.out),
        cls_pooling: m.cls_pooling,
    }
}

impl Student {
    /// All weights on the host (dequantized to f32 when the model holds quantized ones).
    pub fn weights(&self) -> NetWeights {
        match self {
            Student::Bag(m) => bag(m),
            Student::Encoder(m) => encoder(m),
        }
    }
}
