//! The students: burn modules. No backend appears here: the device passed at
//! construction carries it.

use crate::spec::{BagSpec, EncoderSpec, ModelSpec, Pooling};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig,
    Linear, LinearConfig,
    transformer::{TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput},
};
use burn::prelude::*;
use burn::tensor::activation::relu;

/// A padded batch of id sequences. `mask` is 1.0 on real tokens, 0.0 on padding.
#[derive(Clone, Debug)]
pub struct Batch {
    pub ids: Tensor<2, Int>,
    pub mask: Tensor<2>,
}

impl Batch {
    /// Pad `seqs` (none empty) to the longest and move them to `device`.
    pub fn new(seqs: &[&[u32]], device: &Device) -> Self {
        let b = seqs.len();
        let len = seqs.iter().map(|s| s.len()).max().unwrap_or(1).max(1);
        let mut ids = vec![0i64; b * len];
        let mut mask = vec![0f32; b * len];
        for (row, seq) in seqs.iter().enumerate() {
            for (col, &id) in seq.iter().enumerate() {
                ids[row * len + col] = i64::from(id);
                mask[row * len + col] = 1.0;
            }
        }
        Batch {
            ids: Tensor::from_data(TensorData::new(ids, [b, len]), device),
            mask: Tensor::from_data(TensorData::new(mask, [b, len]), device),
        }
    }
}

/// A student: one of the model kinds.
#[derive(Module, Debug)]
pub enum Student {
    Bag(BagModel),
    Encoder(EncoderModel),
    Pretrained(crate::bert::BertModel),
}

impl Student {
    /// A freshly initialised student. Seed the device first for reproducible weights.
    pub fn new(spec: &ModelSpec, vocab: usize, classes: usize, device: &Device) -> Self {
        match spec {
            ModelSpec::Bag(s) => Student::Bag(BagModel::new(s, vocab, classes, device)),
            ModelSpec::Encoder(s) => Student::Encoder(EncoderModel::new(s, vocab, classes, device)),
            ModelSpec::Pretrained(s) => {
                Student::Pretrained(crate::bert::BertModel::new(s, classes, device))
            }
            // Training and loading dispatch taggers before a Student is built
            // (`ModelMeta::validate` refuses a tagger spec).
            ModelSpec::Tagger(_) => {
                unreachable!("a tagger is built by distill_model::tagger, never as a Student")
            }
        }
    }

    /// The bag student, if this is one.
    pub fn as_bag(&self) -> Option<&BagModel> {
        match self {
            Student::Bag(m) => Some(m),
            _ => None,
        }
    }

    /// Logits `[batch, classes]`.
    pub fn forward(&self, batch: &Batch) -> Tensor<2> {
        match self {
            Student::Bag(m) => m.forward(batch),
            Student::Encoder(m) => m.forward(batch),
            Student::Pretrained(m) => m.forward(batch.ids.clone(), batch.mask.clone()),
        }
    }
}

#[derive(Module, Debug)]
pub struct BagModel {
    pub(crate) emb: Embedding,
    pub(crate) hidden: Option<Linear>,
    pub(crate) out: Linear,
    dropout: Dropout,
}

impl BagModel {
    /// A bag of `rows` table rows: `spec.buckets`, or a pruned bag's kept
    /// rows plus padding.
    pub fn new(spec: &BagSpec, rows: usize, classes: usize, device: &Device) -> Self {
        // fastText's initialisation: small uniform input vectors.
        let bound = 1.0 / spec.dim as f64;
        let emb = EmbeddingConfig::new(rows, spec.dim)
            .with_initializer(Initializer::Uniform {
                min: -bound,
                max: bound,
            })
            .init(device);
        let (hidden, head_in) = if spec.hidden > 0 {
            (
                Some(LinearConfig::new(spec.dim, spec.hidden).init(device)),
                spec.hidden,
            )
        } else {
            (None, spec.dim)
        };
        BagModel {
            emb,
            hidden,
            out: LinearConfig::new(head_in, classes).init(device),
            dropout: DropoutConfig::new(spec.dropout).init(),
        }
    }

    pub fn forward(&self, batch: &Batch) -> Tensor<2> {
        let x = self.emb.forward(batch.ids.clone()); // [b, s, d]
        self.head(masked_mean(x, batch.mask.clone()))
    }

    /// Everything after pooling: `[b, dim]` → logits. Training with sparse
    /// embedding updates pools on the host and runs only this in burn.
    pub fn head(&self, pooled: Tensor<2>) -> Tensor<2> {
        let mut h = self.dropout.forward(pooled);
        if let Some(hidden) = &self.hidden {
            h = self.dropout.forward(relu(hidden.forward(h)));
        }
        self.out.forward(h)
    }
}

impl BagModel {
    /// `[rows, dim]` of the embedding table.
    pub fn embedding_dims(&self) -> [usize; 2] {
        self.emb.weight.val().dims()
    }

    /// The embedding table, row-major, on the host (dequantized when its
    /// weights are quantized).
    pub fn embedding_to_host(&self) -> Vec<f32> {
        let w = self.emb.weight.val();
        let w = if w.dtype().is_float() {
            w
        } else {
            w.dequantize()
        };
        w.into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap_or_default()
    }

    /// Replace the embedding table (same shape), keeping the parameter id.
    pub fn with_embedding(self, table: Vec<f32>, device: &Device) -> Self {
        let [rows, _] = self.embedding_dims();
        self.with_table(table, rows, device)
    }

    /// The same bag with a table of `rows` rows (a pruned bag's).
    pub fn with_table(mut self, table: Vec<f32>, rows: usize, device: &Device) -> Self {
        let dims = [rows, self.embedding_dims()[1]];
        let id = self.emb.weight.id;
        let tensor = Tensor::<2>::from_data(TensorData::new(table, dims), device);
        self.emb.weight = burn::module::Param::initialized(id, tensor);
        self
    }
}

/// The bag's pooling on the host: the mean of each sequence's rows of
/// `table` (`[rows, dim]`, row-major), `[seqs.len(), dim]` row-major. Sparse
/// training and inference both pool with it, so a served model pools exactly
/// as it was trained. An id outside the table (the featurizer never makes
/// one) adds nothing rather than panicking.
pub fn pool_mean(table: &[f32], dim: usize, seqs: &[&[u32]]) -> Vec<f32> {
    let mut out = vec![0f32; seqs.len() * dim];
    pool_mean_into(table, dim, seqs, &mut out);
    out
}

/// [`pool_mean`] into `out` (`[seqs.len(), dim]`, zeroed by the caller).
pub fn pool_mean_into(table: &[f32], dim: usize, seqs: &[&[u32]], out: &mut [f32]) {
    for (acc, seq) in out.chunks_exact_mut(dim.max(1)).zip(seqs) {
        for &id in seq.iter() {
            let start = id as usize * dim;
            if let Some(row) = table.get(start..start + dim) {
                acc.iter_mut().zip(row).for_each(|(a, x)| *a += x);
            }
        }
        let inv = 1.0 / seq.len().max(1) as f32;
        acc.iter_mut().for_each(|a| *a *= inv);
    }
}

/// Mean over the sequence axis of `x` `[b, s, d]`, counting only mask = 1 rows.
pub(crate) fn masked_mean(x: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
    let [b, _, d] = x.dims();
    let lens = mask.clone().sum_dim(1).clamp_min(1.0); // [b, 1]
    let summed = (x * mask.unsqueeze_dim::<3>(2)).sum_dim(1).reshape([b, d]);
    summed / lens
}

#[derive(Module, Debug)]
pub struct EncoderModel {
    pub(crate) tok: Embedding,
    pub(crate) pos: Embedding,
    pub(crate) enc: TransformerEncoder,
    pub(crate) norm: LayerNorm,
    dropout: Dropout,
    pub(crate) out: Linear,
    #[module(skip)]
    pub(crate) cls_pooling: bool,
}

impl EncoderModel {
    pub fn new(spec: &EncoderSpec, vocab: usize, classes: usize, device: &Device) -> Self {
        let init = Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        };
        EncoderModel {
            tok: EmbeddingConfig::new(vocab, spec.d_model)
                .with_initializer(init.clone())
                .init(device),
            pos: EmbeddingConfig::new(spec.max_len, spec.d_model)
                .with_initializer(init)
                .init(device),
            enc: TransformerEncoderConfig::new(spec.d_model, spec.ff, spec.heads, spec.layers)
                .with_dropout(spec.dropout)
                .with_norm_first(true)
                .init(device),
            norm: LayerNormConfig::new(spec.d_model).init(device),
            dropout: DropoutConfig::new(spec.dropout).init(),
            out: LinearConfig::new(spec.d_model, classes).init(device),
            cls_pooling: spec.pooling == Pooling::Cls,
        }
    }

    pub fn forward(&self, batch: &Batch) -> Tensor<2> {
        let [b, s] = batch.ids.dims();
        let device = batch.ids.device();
        let positions = Tensor::<1, Int>::arange(0..s as i64, &device)
            .reshape([1, s])
            .repeat_dim(0, b);
        let x = self.tok.forward(batch.ids.clone()) + self.pos.forward(positions);
        let x = self.dropout.forward(x);
        let pad = batch.mask.clone().equal_elem(0.0);
        let x = self
            .enc
            .forward(TransformerEncoderInput::new(x).mask_pad(pad));
        let x = self.norm.forward(x); // pre-norm stacks end un-normalised
        let pooled = if self.cls_pooling {
            let [_, _, d] = x.dims();
            x.slice([0..b, 0..1, 0..d]).reshape([b, d])
        } else {
            masked_mean(x, batch.mask.clone())
        };
        self.out.forward(self.dropout.forward(pooled))
    }
}
