//! The `model/` directory of a run: everything needed to run a student.
//!
//! * `model.json`: [`ModelMeta`] (kind, spec, task, labels, vocab size, params)
//! * `weights.bpk`: burn's burnpack record of the module
//! * `tokenizer.json`: the subword tokenizer (encoder students only)

use crate::device::{Device, DeviceKind};
use crate::featurize::{BagFeaturizer, Featurizer, SubwordFeaturizer};
use crate::model::{Batch, Student};
use crate::spec::ModelSpec;
use crate::{Error, Result};
use burn::module::Module;
use burn::store::ModuleRecord;
use distill_core::fsutil::{write_atomic, write_json_atomic};
use distill_core::text::Preprocess;
use distill_core::types::Task;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const MODEL_SCHEMA_VERSION: u32 = 1;
pub const META_FILE: &str = "model.json";
pub const WEIGHTS_FILE: &str = "weights.bpk";
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// What a model directory holds, besides weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelMeta {
    pub schema_version: u32,
    pub spec: ModelSpec,
    pub task: Task,
    /// Output order of the head: `labels[i]` is logit `i`.
    pub labels: Vec<String>,
    /// Rows of the token embedding table (buckets for bag).
    pub vocab_size: usize,
    pub params: usize,
    pub created_by: String,
    /// How `weights.bpk` stores the weights (bundles may hold f16 or int8).
    #[serde(default)]
    pub weights: WeightsDtype,
    /// Text steps applied to raw input before featurizing (the curation the
    /// training data went through): normalisation, PII placeholders.
    #[serde(default, skip_serializing_if = "Preprocess::is_empty")]
    pub preprocess: Preprocess,
    /// A pruned bag: only some hashed ids keep a row (see [`Pruned`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned: Option<Pruned>,
}

/// A pruned bag keeps `rows` of its `buckets` hashed ids. `remap.bin` lists
/// them (u32 little-endian, strictly increasing); the featurizer maps kept id
/// `kept[i]` to row `i + 1` and drops the others, so the table has
/// `rows + 1` rows (row 0: padding, zero).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pruned {
    pub rows: usize,
    /// sha256 of `remap.bin`.
    pub remap_sha256: String,
}

pub use distill_core::bundle::REMAP_FILE;

/// Read and check a pruned bag's remap table: exactly `rows` ids, strictly
/// increasing, each a valid hashed id (1..buckets), and the recorded sha256.
pub fn read_remap(dir: &Path, pruned: &Pruned, buckets: usize) -> Result<std::sync::Arc<[u32]>> {
    let path = dir.join(REMAP_FILE);
    let bad = |message: String| Error::Artifact {
        path: path.clone(),
        message,
    };
    let bytes = distill_core::fsutil::read_bounded(&path, (pruned.rows as u64) * 4)
        .map_err(|e| bad(e.to_string()))?;
    if bytes.len() != pruned.rows * 4 {
        return Err(bad(format!(
            "{} bytes, expected {} ({} ids)",
            bytes.len(),
            pruned.rows * 4,
            pruned.rows
        )));
    }
    let found = distill_core::hash::sha256_hex(&bytes);
    if found != pruned.remap_sha256 {
        return Err(bad(format!(
            "sha256 {found} does not match model.json's {}",
            pruned.remap_sha256
        )));
    }
    let ids: Vec<u32> = bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if ids.windows(2).any(|w| w[0] >= w[1]) || ids.iter().any(|&i| i == 0 || i as usize >= buckets)
    {
        return Err(bad(format!(
            "not a strictly increasing list of hashed ids in 1..{buckets}"
        )));
    }
    Ok(ids.into())
}

/// Write a pruned bag's remap table; the [`Pruned`] record for model.json.
pub fn write_remap(dir: &Path, kept: &[u32]) -> Result<Pruned> {
    let bytes: Vec<u8> = kept.iter().flat_map(|i| i.to_le_bytes()).collect();
    write_atomic(&dir.join(REMAP_FILE), |w| w.write_all(&bytes))?;
    Ok(Pruned {
        rows: kept.len(),
        remap_sha256: distill_core::hash::sha256_hex(&bytes),
    })
}

/// Largest label set a model may declare.
pub const MAX_LABELS: usize = 1 << 17;

impl ModelMeta {
    /// Check every size before anything is allocated from it: a hostile or
    /// corrupt `model.json` is an error, never a panic or an abort.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |message: String| Error::Artifact {
            path: path.to_path_buf(),
            message,
        };
        if self.schema_version > MODEL_SCHEMA_VERSION {
            return Err(bad(format!(
                "schema_version {} is newer than this distill understands ({MODEL_SCHEMA_VERSION})",
                self.schema_version
            )));
        }
        self.spec
            .validate()
            .and_then(|_| self.spec.validate_bounds())
            .map_err(|e| bad(format!("invalid model spec: {e}")))?;
        if self.labels.len() < 2 || self.labels.len() > MAX_LABELS {
            return Err(bad(format!(
                "{} labels (a model has 2 to {MAX_LABELS})",
                self.labels.len()
            )));
        }
        let expected_vocab = match (&self.spec, &self.pruned) {
            (ModelSpec::Bag(b), None) => Some(b.buckets),
            (ModelSpec::Bag(b), Some(p)) => {
                if p.rows == 0 || p.rows >= b.buckets {
                    return Err(bad(format!(
                        "a pruned bag keeps 1 to {} rows, not {}",
                        b.buckets - 1,
                        p.rows
                    )));
                }
                Some(p.rows + 1)
            }
            (ModelSpec::Encoder(_), None) => None,
            (ModelSpec::Pretrained(p), None) => match &p.arch {
                Some(a) => Some(a.vocab_size),
                None => return Err(bad("a pretrained spec without `arch`".into())),
            },
            (ModelSpec::Tagger(_), None) => {
                return Err(bad(
                    "a tagger is stored as tagger.json + tagger.bin, not model.json".into(),
                ));
            }
            (_, Some(_)) => {
                return Err(bad("only a bag can be pruned".into()));
            }
        };
        if let Some(v) = expected_vocab
            && v != self.vocab_size
        {
            return Err(bad(format!(
                "vocab_size {} does not match the bag's rows ({v})",
                self.vocab_size
            )));
        }
        if self.vocab_size < 2 || self.vocab_size > crate::spec::MAX_VOCAB {
            return Err(bad(format!(
                "vocab_size {} is out of range (2..={})",
                self.vocab_size,
                crate::spec::MAX_VOCAB
            )));
        }
        let params = self.spec.param_count(self.vocab_size, self.labels.len());
        if params > crate::spec::MAX_PARAMS {
            return Err(bad(format!(
                "{params} parameters exceed the limit of {} (a corrupt or hostile model.json?)",
                crate::spec::MAX_PARAMS
            )));
        }
        Ok(())
    }
}

/// Storage of the weights in `weights.bpk`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WeightsDtype {
    /// burnpack f32.
    #[default]
    F32,
    /// burnpack through burn-store's `HalfPrecisionAdapter`: f16 on disk, f32 in memory.
    F16,
    /// burn's int8 weight quantisation (Q8S, symmetric, per tensor) on
    /// disk; dequantized to f32 at load (burn's quantized kernels on the CPU
    /// backend ran the bag 50x slower than f32), so compute is f32.
    Int8,
}

/// Write weights in `dtype`, atomically. Returns the bytes written.
pub fn save_weights_as(model: &Student, path: &Path, dtype: WeightsDtype) -> Result<u64> {
    let spec_err = |e: String| Error::Spec(e);
    match dtype {
        WeightsDtype::F32 => save_weights(model, path),
        WeightsDtype::Int8 => {
            use burn::module::Quantizer;
            use burn::tensor::quantization::{
                Calibration, QuantScheme, QuantStore, QuantValue, ScaleDtype,
            };
            let scheme = QuantScheme::default()
                .with_value(QuantValue::Q8S)
                .with_store(QuantStore::Native)
                .per_tensor(ScaleDtype::F32);
            let q = model
                .clone()
                .quantize_weights(&mut Quantizer::new(Calibration::MinMax, scheme));
            save_weights(&q, path)
        }
        WeightsDtype::F16 => {
            use burn::store::{BurnpackStore, HalfPrecisionAdapter, ModuleSnapshot};
            let tmp = path.with_extension("bpk.tmp");
            let mut store = BurnpackStore::from_file(&tmp)
                .with_to_adapter(HalfPrecisionAdapter::new())
                .overwrite(true);
            model
                .save_into(&mut store)
                .map_err(|e| spec_err(format!("writing f16 weights: {e}")))?;
            std::fs::rename(&tmp, path).map_err(|e| Error::Artifact {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
            Ok(std::fs::metadata(path).map(|m| m.len()).unwrap_or(0))
        }
    }
}

/// Load weights stored as `dtype` into a module of the right shape.
pub fn load_weights_as(model: Student, path: &Path, dtype: WeightsDtype) -> Result<Student> {
    match dtype {
        WeightsDtype::F32 => load_weights(model, path),
        WeightsDtype::Int8 => Ok(load_weights(model, path)?.map(&mut Dequantize)),
        WeightsDtype::F16 => {
            use burn::store::{BurnpackStore, HalfPrecisionAdapter, ModuleSnapshot};
            let mut model = model;
            let mut store =
                BurnpackStore::from_file(path).with_from_adapter(HalfPrecisionAdapter::new());
            let result = model.load_from(&mut store).map_err(|e| Error::Artifact {
                path: path.to_path_buf(),
                message: format!("not an f16 burnpack: {e}"),
            })?;
            if !result.missing.is_empty() {
                return Err(Error::Artifact {
                    path: path.to_path_buf(),
                    message: format!("weights missing for {:?}", result.missing),
                });
            }
            Ok(model)
        }
    }
}

/// Turns quantized float parameters back into f32 ones.
struct Dequantize;

impl burn::module::ModuleMapper for Dequantize {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<burn::tensor::Tensor<D>>,
    ) -> burn::module::Param<burn::tensor::Tensor<D>> {
        param.map(|t| {
            if matches!(t.dtype(), burn::tensor::DType::QFloat(_)) {
                t.dequantize()
            } else {
                t
            }
        })
    }
}

/// Serialise a module's weights to burnpack bytes.
pub fn weights_bytes(model: &Student) -> Result<Vec<u8>> {
    let bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| Error::Spec(format!("serialising weights: {e}")))?;
    Ok(bytes.to_vec())
}

/// Write burnpack weights atomically.
pub fn save_weights(model: &Student, path: &Path) -> Result<u64> {
    let bytes = weights_bytes(model)?;
    write_atomic(path, |w| w.write_all(&bytes))?;
    Ok(bytes.len() as u64)
}

/// Load burnpack weights into a module of the right shape.
pub fn load_weights(model: Student, path: &Path) -> Result<Student> {
    let artifact = |message: String| Error::Artifact {
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| artifact(e.to_string()))?;
    let record = ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .map_err(|e| artifact(format!("not a burnpack record: {e}")))?;
    model
        .try_load_record(record)
        .map_err(|e| artifact(format!("weights do not fit the model: {e}")))
}

/// Write a complete model directory (atomically per file). Returns the
/// weights file's bytes: what `model_bytes` means in run.json, eval
/// reports and bundles alike.
pub fn save_model(
    dir: &Path,
    meta: &ModelMeta,
    model: &Student,
    featurizer: &Featurizer,
) -> Result<u64> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Artifact {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    let weights = save_weights(model, &dir.join(WEIGHTS_FILE))?;
    if let Featurizer::Subword(s) = featurizer {
        let json = s.to_json()?;
        write_atomic(&dir.join(TOKENIZER_FILE), |w| w.write_all(json.as_bytes()))?;
    }
    write_json_atomic(&dir.join(META_FILE), meta)?;
    Ok(weights)
}

/// The featurizer a spec implies, given a trained tokenizer where one is needed.
pub fn featurizer_for(spec: &ModelSpec, dir: &Path) -> Result<Featurizer> {
    Ok(match spec {
        ModelSpec::Bag(b) => Featurizer::Bag(BagFeaturizer::new(b)),
        ModelSpec::Encoder(e) => Featurizer::Subword(Box::new(SubwordFeaturizer::load(
            &dir.join(TOKENIZER_FILE),
            e.max_len,
        )?)),
        ModelSpec::Pretrained(p) => Featurizer::Subword(Box::new(
            SubwordFeaturizer::load_pretrained(&dir.join(TOKENIZER_FILE), p.max_len)?,
        )),
        ModelSpec::Tagger(_) => {
            return Err(Error::Spec(
                "a tagger has its own features (distill_model::tagger)".into(),
            ));
        }
    })
}

/// A loaded model, ready to score texts.
pub struct Predictor {
    pub meta: ModelMeta,
    pub featurizer: Featurizer,
    pub model: Student,
    pub device: Device,
    /// The bag's embedding table on the host (`[rows, dim]`, row-major):
    /// inference pools a row's feature vectors in Rust (no `[b, s, dim]`
    /// gather materialised) and runs only the head in burn, as training does.
    host_table: Option<(Vec<f32>, usize)>,
}

impl Predictor {
    pub fn load(dir: &Path, device: DeviceKind) -> Result<Self> {
        let meta_path = dir.join(META_FILE);
        let meta: ModelMeta = distill_core::fsutil::read_json_bounded(&meta_path, 16 << 20)?;
        meta.validate(&meta_path)?;
        let device = device.device()?;
        let mut featurizer = featurizer_for(&meta.spec, dir)?;
        if let (Some(p), ModelSpec::Bag(b), Featurizer::Bag(f)) =
            (&meta.pruned, &meta.spec, &featurizer)
        {
            featurizer = Featurizer::Bag(f.clone().with_remap(read_remap(dir, p, b.buckets)?));
        }
        if let Featurizer::Subword(sw) = &featurizer
            && sw.vocab_size() > meta.vocab_size
        {
            return Err(Error::Artifact {
                path: dir.join(TOKENIZER_FILE),
                message: format!(
                    "the tokenizer has {} tokens, more than the model's {} embedding rows",
                    sw.vocab_size(),
                    meta.vocab_size
                ),
            });
        }
        // A weights file far smaller than the spec needs is refused before
        // the module is allocated (a hostile spec cannot make us allocate
        // gigabytes to then fail reading a tiny file).
        let weights = dir.join(WEIGHTS_FILE);
        let on_disk =
            std::fs::metadata(&weights)
                .map(|m| m.len())
                .map_err(|e| Error::Artifact {
                    path: weights.clone(),
                    message: e.to_string(),
                })?;
        let per_param: u64 = match meta.weights {
            WeightsDtype::F32 => 4,
            WeightsDtype::F16 => 2,
            WeightsDtype::Int8 => 1,
        };
        let needed = (meta.spec.param_count(meta.vocab_size, meta.labels.len()) as u64)
            .saturating_mul(per_param)
            .saturating_mul(9)
            / 10;
        if on_disk < needed {
            return Err(Error::Artifact {
                path: weights,
                message: format!(
                    "{on_disk} bytes, but the spec in {META_FILE} needs at least {needed}: the weights do not belong to this model"
                ),
            });
        }
        let fresh = Student::new(&meta.spec, meta.vocab_size, meta.labels.len(), &device);
        let model = load_weights_as(fresh, &dir.join(WEIGHTS_FILE), meta.weights)?;
        Ok(Predictor::from_parts(meta, featurizer, model, device))
    }

    /// A predictor from a model in memory (a pruned bag before it is written).
    pub fn from_parts(
        meta: ModelMeta,
        featurizer: Featurizer,
        model: Student,
        device: Device,
    ) -> Self {
        let host_table = match &model {
            Student::Bag(bag) => {
                let [rows, dim] = bag.embedding_dims();
                let table = bag.embedding_to_host();
                (table.len() == rows * dim && dim > 0).then_some((table, dim))
            }
            _ => None,
        };
        Predictor {
            meta,
            featurizer,
            model,
            device,
            host_table,
        }
    }

    /// The bag's table on the host (`[rows, dim]` row-major) and `dim`.
    pub fn host_table(&self) -> Option<(&[f32], usize)> {
        self.host_table.as_ref().map(|(t, d)| (t.as_slice(), *d))
    }

    /// Whether inference pools the bag's rows on the host (see `host_table`).
    pub fn pools_on_host(&self) -> bool {
        self.host_table.is_some()
    }

    /// Raw logits per featurized sequence (no softmax), in batches.
    pub fn logits(&self, seqs: &[Vec<u32>], batch_size: usize) -> Vec<Vec<f32>> {
        batched(
            seqs,
            batch_size,
            |refs| self.model.forward(&Batch::new(refs, &self.device)),
            |l| l,
        )
    }

    /// Probabilities per featurized sequence (see [`Predictor::predict_proba`]).
    pub fn predict_seqs(&self, seqs: &[Vec<u32>], batch_size: usize) -> Vec<Vec<f32>> {
        let (Student::Bag(bag), Some((table, dim))) = (&self.model, &self.host_table) else {
            return predict_proba(&self.model, seqs, self.meta.task, batch_size, &self.device);
        };
        predict_proba_pooled(
            bag,
            table,
            *dim,
            seqs,
            self.meta.task,
            batch_size,
            &self.device,
        )
    }

    /// Featurize one raw text: the model's preprocessing, then its featurizer.
    pub fn encode_text(&self, text: &str) -> Vec<u32> {
        // Without steps, `apply` borrows the text: no copy.
        self.featurizer.encode(&self.meta.preprocess.apply(text))
    }

    /// Featurize raw texts: the model's preprocessing (normalise, redact PII),
    /// then its featurizer, in parallel.
    pub fn encode_texts(&self, texts: &[&str]) -> Vec<Vec<u32>> {
        use rayon::prelude::*;
        texts.par_iter().map(|t| self.encode_text(t)).collect()
    }

    /// Featurize texts that already went through `applied` (a dataset's
    /// recorded preprocessing): when that is the model's own preprocessing
    /// the texts are featurized as they are (preprocessing is not idempotent
    /// in every step order, so it is never applied twice); otherwise the
    /// model's preprocessing is applied.
    pub fn encode_texts_from(&self, texts: &[&str], applied: &Preprocess) -> Vec<Vec<u32>> {
        if *applied == self.meta.preprocess {
            self.featurizer.encode_all(texts)
        } else {
            self.encode_texts(texts)
        }
    }

    /// [`Predictor::predict_proba`] for texts that already went through `applied`.
    pub fn predict_proba_from(
        &self,
        texts: &[&str],
        applied: &Preprocess,
        batch_size: usize,
    ) -> Vec<Vec<f32>> {
        self.predict_seqs(&self.encode_texts_from(texts, applied), batch_size)
    }

    /// Probabilities per raw text over `meta.labels` (softmax, or sigmoid for
    /// multilabel), preprocessing included.
    pub fn predict_proba(&self, texts: &[&str], batch_size: usize) -> Vec<Vec<f32>> {
        self.predict_seqs(&self.encode_texts(texts), batch_size)
    }
}

/// Probabilities for pre-featurized sequences, in batches, without autodiff.
pub fn predict_proba(
    model: &Student,
    seqs: &[Vec<u32>],
    task: Task,
    batch_size: usize,
    device: &Device,
) -> Vec<Vec<f32>> {
    batched(
        seqs,
        batch_size,
        |refs| model.forward(&Batch::new(refs, device)),
        activation(task),
    )
}

/// Probabilities of a bag whose table is on the host: rows pooled in Rust
/// exactly as sparse training pools them, then the head in burn.
pub fn predict_proba_pooled(
    bag: &crate::model::BagModel,
    table: &[f32],
    dim: usize,
    seqs: &[Vec<u32>],
    task: Task,
    batch_size: usize,
    device: &Device,
) -> Vec<Vec<f32>> {
    let pooled_head = |refs: &[&[u32]]| {
        let pooled = crate::model::pool_mean(table, dim, refs);
        bag.head(burn::tensor::Tensor::<2>::from_data(
            burn::tensor::TensorData::new(pooled, [refs.len(), dim]),
            device,
        ))
    };
    batched(seqs, batch_size, pooled_head, activation(task))
}

/// Rows of probabilities from logits `[b, classes]` (see [`predict_proba`]).
pub fn probs_of(logits: burn::tensor::Tensor<2>, task: Task) -> Vec<Vec<f32>> {
    let [b, c] = logits.dims();
    let flat: Vec<f32> = activation(task)(logits)
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_else(|_| vec![f32::NAN; b * c]);
    flat.chunks(c.max(1)).map(<[f32]>::to_vec).collect()
}

/// Logits to probabilities: sigmoid per label (multilabel), else softmax.
fn activation(task: Task) -> impl Fn(burn::tensor::Tensor<2>) -> burn::tensor::Tensor<2> {
    move |logits| match task {
        Task::Multilabel => burn::tensor::activation::sigmoid(logits),
        _ => burn::tensor::activation::softmax(logits, 1),
    }
}

/// Run `forward` (sequences to `[b, classes]` logits) over `seqs` in
/// batches, map the logits with `head`, and return one row per sequence, in
/// order. Batches are formed in length order (ties by position), so a batch
/// pads its texts to a similar length: an encoder's cost grows with the
/// padded length, and a batch in input order pads to its longest text.
fn batched(
    seqs: &[Vec<u32>],
    batch_size: usize,
    forward: impl Fn(&[&[u32]]) -> burn::tensor::Tensor<2>,
    head: impl Fn(burn::tensor::Tensor<2>) -> burn::tensor::Tensor<2>,
) -> Vec<Vec<f32>> {
    let mut order: Vec<usize> = (0..seqs.len()).collect();
    order.sort_by_key(|&i| (seqs[i].len(), i));
    let mut out = vec![Vec::new(); seqs.len()];
    for chunk in order.chunks(batch_size.max(1)) {
        let refs: Vec<&[u32]> = chunk.iter().map(|&i| seqs[i].as_slice()).collect();
        let logits = forward(&refs);
        let [b, c] = logits.dims();
        let flat: Vec<f32> = head(logits)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap_or_else(|_| vec![f32::NAN; b * c]);
        for (row, &i) in flat.chunks(c.max(1)).zip(chunk) {
            out[i] = row.to_vec();
        }
    }
    out
}
