//! The training loop: AdamW, warm-up + decay, gradient clipping, per-epoch
//! validation with best-epoch selection and early stopping, checkpoints that
//! resume to the same result.
//!
//! Determinism: init, shuffling and dropout each have a seed derived from the
//! master seed. The shuffle of epoch `e` depends only on `(shuffle seed, e)`
//! and the dropout stream is re-seeded from `(dropout seed, step)` before every
//! step, so a run resumed from any checkpoint replays exactly the steps an
//! uninterrupted run would have taken.

use crate::config::{ClassWeights, ExperimentConfig};
use crate::data::{Gold, Row, TrainData};
use crate::error::{Error, Result};
use crate::loss::{bce_rows, cross_entropy_rows, kd_rows, smoothed_targets};
use crate::metrics::evaluate;
use crate::progress::Progress;
use crate::run::{self, Best, Lineage, RunInfo, Seeds, Status, TrainState};
use crate::schedule::lr_at;
use crate::sparse::SparseEmbedding;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::Bytes;
use distill_core::types::Task;
use distill_model::artifact::{self, ModelMeta, load_weights, predict_proba, weights_bytes};
use distill_model::device::{Device, DeviceKind};
use distill_model::featurize::{BagFeaturizer, Featurizer, SubwordFeaturizer};
use distill_model::model::{Batch, Student};
use distill_model::spec::ModelSpec;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What `distill train` asks for.
pub struct TrainRequest {
    pub config: ExperimentConfig,
    /// Directory that relative paths in the config are resolved against.
    pub base_dir: PathBuf,
    /// `experiments/` root for new runs.
    pub experiments_dir: PathBuf,
    /// Continue this run directory instead of starting one.
    pub resume: Option<PathBuf>,
    /// Name the new run directory (default: a timestamp and the seed).
    pub run_id: Option<String>,
    pub interactive: bool,
}

pub struct TrainOutcome {
    pub run_dir: PathBuf,
    pub info: RunInfo,
}

/// Train (or resume) a run. The run directory exists from the first
/// checkpoint on; a failure after that marks `run.json` failed.
pub fn train(req: TrainRequest) -> Result<TrainOutcome> {
    if matches!(req.config.model, ModelSpec::Tagger(_)) {
        return crate::tagger::train(req);
    }
    let mut config = req.config;
    config.validate().map_err(Error::Input)?;
    // A run being resumed is locked before anything is read, so a second
    // `--resume` of it fails at once instead of after loading the data.
    let mut lock = match &req.resume {
        Some(dir) if dir.is_dir() => Some(lock_run_dir(dir)?),
        Some(dir) => {
            return Err(Error::Input(format!(
                "{}: no such run directory",
                dir.display()
            )));
        }
        None => None,
    };
    let data = TrainData::load(&config, &req.base_dir)?;
    if let Some(t) = &data.teacher
        && t.joined == 0
    {
        return Err(Error::Input(format!(
            "teacher file {}: none of its {} records matches a training example id",
            t.path.display(),
            t.records
        )));
    }
    // Store absolute paths so that `--resume` works from any directory.
    config.dataset = absolute(&data.info.path);
    if let Some(c) = &config.curate {
        config.curate = Some(absolute(&crate::data::resolve(&req.base_dir, c)));
    }
    if let ModelSpec::Encoder(e) = &mut config.model
        && let Some(p) = &e.tokenizer.path
    {
        e.tokenizer.path = Some(absolute(&crate::data::resolve(&req.base_dir, p)));
    }
    if let ModelSpec::Pretrained(p) = &mut config.model {
        let dir = absolute(&crate::data::resolve(
            &req.base_dir,
            &distill_model::bert::checkpoint_dir(p)?,
        ));
        // A resumed run's config already holds the architecture it started with.
        if p.arch.is_none() {
            *p = distill_model::bert::resolve(p, &dir)?;
        }
        p.path = Some(dir);
    }
    if let Some(t) = &data.teacher {
        config.teacher = Some(absolute(&t.path));
    }
    config.suites = config
        .suites
        .iter()
        .map(|p| absolute(&crate::data::resolve(&req.base_dir, p)))
        .collect();
    let device = config.device.device()?;
    let seeds = Seeds::derive(config.seed);

    let (run_dir, mut info, featurizer, checkpoints) = match &req.resume {
        None => {
            let featurizer = build_featurizer(&config.model, &data.train)?;
            let (run_id, run_dir) = run::create_run_dir(
                &req.experiments_dir,
                &config.name,
                config.seed,
                req.run_id.as_deref(),
            )?;
            lock = Some(lock_run_dir(&run_dir)?);
            let toml = toml::to_string(&config)
                .map_err(|e| Error::Input(format!("serialising the resolved config: {e}")))?;
            distill_core::fsutil::write_atomic(&run_dir.join(run::CONFIG_FILE), |w| {
                w.write_all(toml.as_bytes())
            })?;
            save_tokenizer(&run_dir, &featurizer)?;
            if data.carved_val {
                let mut ids: Vec<&str> = data.val.iter().map(|r| r.id.as_str()).collect();
                ids.sort_unstable();
                let mut text = ids.join("\n");
                text.push('\n');
                distill_core::fsutil::write_atomic(
                    &run_dir.join(distill_core::run_layout::VAL_IDS_FILE),
                    |w| w.write_all(text.as_bytes()),
                )?;
            }
            let overlap = data.val_teacher_overlap();
            if data.carved_val && overlap > 0 {
                eprintln!(
                    "warning: the teacher log has soft labels for {overlap} of the {} validation rows carved out of train ({}): a teacher trained on the whole training split has seen them, which inflates validation metrics (best epoch, calibration, certified thresholds)\nhint: give the dataset a val split, or keep these rows out of the teacher's training (their ids: {}; `distill teach` skips them with exclude-ids)",
                    data.val.len(),
                    data.val_source,
                    run_dir
                        .join(distill_core::run_layout::VAL_IDS_FILE)
                        .display()
                );
            }
            let info = new_info(&config, &data, &run_id, &seeds, config.device);
            info.save(&run_dir)?;
            (run_dir, info, featurizer, Vec::new())
        }
        Some(dir) => {
            let info = RunInfo::load(dir)?;
            if info.status == Status::Completed {
                return Err(Error::Input(format!(
                    "{}: the run is already completed; nothing to resume",
                    dir.display()
                )));
            }
            if info.lineage.dataset_sha256 != data.info.sha256 {
                return Err(Error::Input(format!(
                    "{}: the dataset changed since the run started (sha256 {} -> {})",
                    dir.display(),
                    info.lineage.dataset_sha256,
                    data.info.sha256
                )));
            }
            let teacher_now = data.teacher.as_ref().map(|t| t.sha256.as_str());
            if info.lineage.teacher_sha256.as_deref() != teacher_now {
                let path = data
                    .teacher
                    .as_ref()
                    .map(|t| t.path.display().to_string())
                    .or_else(|| info.lineage.teacher.clone())
                    .unwrap_or_default();
                return Err(Error::Input(format!(
                    "{}: the teacher log {path} changed since the run started (sha256 {} -> {})\nhint: resuming would mix soft labels of two teacher logs; start a new run",
                    dir.display(),
                    info.lineage.teacher_sha256.as_deref().unwrap_or("none"),
                    teacher_now.unwrap_or("none"),
                )));
            }
            let featurizer = load_featurizer(&config.model, dir)?;
            // Newest first: a damaged newest checkpoint falls back to the one before.
            let mut checkpoints = run::list_checkpoints(dir)?;
            checkpoints.reverse();
            (dir.clone(), info, featurizer, checkpoints)
        }
    };
    let outcome = run_loop(
        &config,
        &data,
        &device,
        &seeds,
        &featurizer,
        &run_dir,
        &mut info,
        &checkpoints,
        req.interactive,
    );
    let result = match outcome {
        Ok(()) => Ok(TrainOutcome { run_dir, info }),
        Err(e) => {
            info.status = Status::Failed;
            info.error = Some(e.to_string());
            info.finished_at = Some(run::utc_stamp(std::time::SystemTime::now()));
            let _ = info.save(&run_dir);
            Err(e)
        }
    };
    drop(lock);
    result
}

/// Lock a run directory for this process and remove the temporary files a
/// killed writer of it left behind (only ours: `.distill-*.tmp` files and
/// `.tmp-step-*` checkpoint directories).
pub(crate) fn lock_run_dir(dir: &Path) -> Result<distill_core::lock::DirLock> {
    let lock = distill_core::lock::DirLock::acquire(dir, "distill train")?;
    let mut removed = lock.remove_stale_temps(dir, &[])?;
    removed.extend(lock.remove_stale_temps(&dir.join(run::MODEL_DIR), &[])?);
    removed.extend(
        lock.remove_stale_temps(&dir.join(run::CHECKPOINTS), &[run::CHECKPOINT_TEMP_PATTERN])?,
    );
    if !removed.is_empty() {
        eprintln!(
            "removed {} temporary file(s) left by an interrupted run in {}",
            removed.len(),
            dir.display()
        );
    }
    Ok(lock)
}

/// Restore the newest usable checkpoint of `checkpoints` (newest first): its
/// loop state (hashes checked), weights and optimizer state. An unusable one
/// is reported and the one before it tried (the steps it held are redone, as
/// after any resume); see [`restore_newest`] for which are removed.
fn restore_checkpoint(
    checkpoints: &[PathBuf],
    model: &Student,
    adamw: &AdamWConfig,
) -> Result<Option<(PathBuf, Student, ModuleOptimizer, TrainState)>> {
    let restore = |ckpt: &Path| -> Result<(Student, ModuleOptimizer, TrainState)> {
        let state = run::read_checkpoint(ckpt)?;
        let model = load_weights(model.clone(), &ckpt.join("model.bpk"))?;
        let path = ckpt.join("optim.bpk");
        let bytes = std::fs::read(&path).map_err(|e| Error::Checkpoint {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let optim: ModuleOptimizer = adamw.init();
        let optim = optim
            .from_bytes(Bytes::from_bytes_vec(bytes))
            .map_err(|e| Error::Checkpoint {
                path: path.clone(),
                message: format!("optimizer state: {e}"),
            })?;
        Ok((model, optim, state))
    };
    Ok(restore_newest(checkpoints, restore)?
        .map(|(ckpt, (model, optim, state))| (ckpt, model, optim, state)))
}

/// Restore the newest of `checkpoints` (newest first) that `restore` accepts,
/// warning about each one it refuses. Once one is restored, the newer ones
/// proven damaged (a file's sha256 is not the recorded one) are removed;
/// newer ones that failed otherwise (an I/O error, a format of another
/// version) are left in place. None restorable is an error.
fn restore_newest<T>(
    checkpoints: &[PathBuf],
    mut restore: impl FnMut(&Path) -> Result<T>,
) -> Result<Option<(PathBuf, T)>> {
    let mut damaged = Vec::new();
    for (i, ckpt) in checkpoints.iter().enumerate() {
        match restore(ckpt) {
            Ok(restored) => {
                for bad in &damaged {
                    let _ = std::fs::remove_dir_all(bad);
                }
                return Ok(Some((ckpt.clone(), restored)));
            }
            Err(e) => {
                let proven = matches!(e, Error::CheckpointDamaged { .. });
                eprintln!(
                    "warning: checkpoint {} is unusable: {e}; {}{}",
                    ckpt.display(),
                    if proven { "" } else { "left in place; " },
                    match checkpoints.get(i + 1) {
                        Some(previous) => format!("falling back to {}", previous.display()),
                        None => "no older checkpoint is left".to_string(),
                    }
                );
                if proven {
                    damaged.push(ckpt.clone());
                }
            }
        }
    }
    match checkpoints.first() {
        None => Ok(None),
        Some(newest) => Err(Error::Checkpoint {
            path: newest
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| newest.clone()),
            message: "no usable checkpoint (see the warnings above); start a new run".into(),
        }),
    }
}

pub(crate) fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

fn build_featurizer(spec: &ModelSpec, train: &[Row]) -> Result<Featurizer> {
    Ok(match spec {
        ModelSpec::Bag(b) => Featurizer::Bag(BagFeaturizer::new(b)),
        ModelSpec::Encoder(e) => match &e.tokenizer.path {
            Some(p) => Featurizer::Subword(Box::new(SubwordFeaturizer::load(p, e.max_len)?)),
            None => {
                let texts: Vec<&str> = train.iter().map(|r| r.text.as_str()).collect();
                Featurizer::Subword(Box::new(SubwordFeaturizer::train(e, &texts)?))
            }
        },
        ModelSpec::Tagger(_) => {
            return Err(Error::Input(
                "a tagger trains through distill_train::tagger".into(),
            ));
        }
        ModelSpec::Pretrained(p) => {
            Featurizer::Subword(Box::new(distill_model::bert::load_tokenizer(
                &distill_model::bert::checkpoint_dir(p)?,
                p.max_len,
            )?))
        }
    })
}

fn save_tokenizer(run_dir: &Path, featurizer: &Featurizer) -> Result<()> {
    if let Featurizer::Subword(s) = featurizer {
        let dir = run_dir.join(run::MODEL_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| Error::Checkpoint {
            path: dir.clone(),
            message: e.to_string(),
        })?;
        let json = s.to_json()?;
        distill_core::fsutil::write_atomic(&dir.join(artifact::TOKENIZER_FILE), |w| {
            w.write_all(json.as_bytes())
        })?;
    }
    Ok(())
}

fn load_featurizer(spec: &ModelSpec, run_dir: &Path) -> Result<Featurizer> {
    Ok(artifact::featurizer_for(
        spec,
        &run_dir.join(run::MODEL_DIR),
    )?)
}

fn vocab_of(spec: &ModelSpec, featurizer: &Featurizer) -> usize {
    match (spec, featurizer) {
        (ModelSpec::Bag(b), _) => b.buckets,
        (ModelSpec::Pretrained(p), _) => p.arch.as_ref().map_or(0, |a| a.vocab_size),
        (_, Featurizer::Subword(s)) => s.vocab_size(),
        (_, Featurizer::Bag(_)) => 0,
    }
}

fn new_info(
    config: &ExperimentConfig,
    data: &TrainData,
    run_id: &str,
    seeds: &Seeds,
    device: DeviceKind,
) -> RunInfo {
    let mut counts = BTreeMap::new();
    counts.insert("train".into(), data.train.len());
    counts.insert("val".into(), data.val.len());
    counts.insert("test".into(), data.test.len());
    counts.insert(
        "teacher".into(),
        data.train.iter().filter(|r| r.teacher.is_some()).count(),
    );
    if data.teacher.is_some() {
        counts.insert("val_with_teacher".into(), data.val_teacher_overlap());
    }
    RunInfo::started(
        &config.name,
        run_id,
        seeds,
        device.to_string(),
        data.info.task,
        config.model.kind(),
        Lineage {
            dataset: data.info.path.display().to_string(),
            dataset_name: data.info.name.clone(),
            dataset_sha256: data.info.sha256.clone(),
            val_source: data.val_source.clone(),
            teacher: data.teacher.as_ref().map(|t| t.path.display().to_string()),
            teacher_sha256: data.teacher.as_ref().map(|t| t.sha256.clone()),
        },
        counts,
    )
}

/// A rough upper bound of training memory, to refuse batch sizes that cannot fit.
fn estimate_bytes(spec: &ModelSpec, params: usize, batch: usize, seq: usize) -> u64 {
    // Weights, gradients and two AdamW moments.
    let state = params as u64 * 4 * 4;
    let per_row = match spec {
        ModelSpec::Bag(b) => (seq * b.dim * 4 + b.hidden * 2) as u64,
        ModelSpec::Encoder(e) => {
            let per_layer = seq * (e.d_model * 12 + e.ff * 3) + e.heads * seq * seq * 3;
            (per_layer * e.layers + seq * e.d_model * 4) as u64
        }
        ModelSpec::Pretrained(p) => p.arch.as_ref().map_or(0, |a| {
            let per_layer = seq * (a.hidden * 12 + a.intermediate * 3) + a.heads * seq * seq * 3;
            (per_layer * a.layers + seq * a.hidden * 4) as u64
        }),
        ModelSpec::Tagger(_) => 0,
    };
    state + per_row * batch as u64 * 4 * 2
}

fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[allow(clippy::too_many_arguments)]
fn run_loop(
    config: &ExperimentConfig,
    data: &TrainData,
    device: &Device,
    seeds: &Seeds,
    featurizer: &Featurizer,
    run_dir: &Path,
    info: &mut RunInfo,
    checkpoints: &[PathBuf],
    interactive: bool,
) -> Result<()> {
    let t = &config.train;
    let task = data.info.task;
    let classes = data.info.labels.len();
    let vocab = vocab_of(&config.model, featurizer);
    let phase_start = Instant::now();
    let train_seqs = encode_rows(featurizer, &data.train);
    let val_seqs = encode_rows(featurizer, &data.val);

    let ad = device.clone().autodiff();
    ad.seed(seeds.init);
    let mut model = match (
        Student::new(&config.model, vocab, classes, &ad),
        &config.model,
    ) {
        (Student::Pretrained(bert), ModelSpec::Pretrained(p)) => Student::Pretrained(
            distill_model::bert::load_checkpoint(bert, &distill_model::bert::checkpoint_dir(p)?)?,
        ),
        (m, _) => m,
    };
    let params = model.num_params();
    let max_seq = train_seqs.iter().map(Vec::len).max().unwrap_or(1);
    if matches!(config.device, DeviceKind::Cpu | DeviceKind::Ndarray)
        && let Some(avail) = mem_available()
    {
        let need = estimate_bytes(&config.model, params, t.batch_size, max_seq);
        if need > avail {
            return Err(Error::Input(format!(
                "train.batch-size {} needs about {:.1} GiB for this model and data (longest input {max_seq} ids), but only {:.1} GiB is available; lower train.batch-size",
                t.batch_size,
                need as f64 / (1u64 << 30) as f64,
                avail as f64 / (1u64 << 30) as f64
            )));
        }
    }
    let mut adamw = AdamWConfig::new().with_weight_decay(t.weight_decay as f32);
    if t.grad_clip > 0.0 {
        adamw = adamw.with_grad_clipping(Some(burn::grad_clipping::GradientClippingConfig::Norm(
            t.grad_clip as f32,
        )));
    }
    let mut optim: ModuleOptimizer = adamw.init();

    let mut state = TrainState::default();
    // The checkpoint training continues from (the newest usable one, on resume).
    let mut last_ckpt: Option<PathBuf> = None;
    if let Some((ckpt, restored, restored_optim, st)) =
        restore_checkpoint(checkpoints, &model, &adamw)?
    {
        model = restored;
        optim = restored_optim;
        run::truncate_metrics(run_dir, st.global_step)?;
        state = st;
        info.resumes += 1;
        info.status = Status::Running;
        info.error = None;
        info.finished_at = None;
        eprintln!(
            "resuming {} from step {} (epoch {}, batch {})",
            run_dir.display(),
            state.global_step,
            state.epoch + 1,
            state.batch_in_epoch
        );
        last_ckpt = Some(ckpt);
    } else {
        // A fresh run, or a resumed one that died before its first checkpoint.
        run::truncate_metrics(run_dir, 0)?;
    }
    model = match model {
        Student::Pretrained(bert) if t.freeze_layers > 0 => {
            Student::Pretrained(bert.freeze_lower(t.freeze_layers))
        }
        m => m,
    };
    // What the frozen bottom of a pretrained encoder computes, once: the
    // sentence embeddings when it is frozen whole (the fast mode, cached on
    // disk), else the hidden states after the frozen layers.
    let frozen = match (&model, &config.model) {
        (Student::Pretrained(bert), ModelSpec::Pretrained(p)) if t.freeze_layers > 0 => {
            let eval = bert.valid();
            let upto = t.freeze_layers.min(bert.layers());
            let dim = eval.hidden();
            let weights_sha = if upto == eval.layers() {
                crate::embcache::weights_digest(p)?
            } else {
                String::new()
            };
            let run = |seqs: &[Vec<u32>]| -> Result<Vec<Vec<f32>>> {
                if upto == eval.layers() {
                    let flat = crate::embcache::sentence_embeddings(
                        &eval,
                        p,
                        &weights_sha,
                        seqs,
                        t.eval_batch_size,
                        device,
                    )?;
                    Ok(flat.chunks(dim).map(<[f32]>::to_vec).collect())
                } else {
                    crate::embcache::hidden_states(&eval, upto, seqs, t.eval_batch_size, device)
                }
            };
            Some(Frozen {
                upto,
                pooled: upto == eval.layers(),
                dim,
                train: run(&train_seqs)?,
                val: run(&val_seqs)?,
            })
        }
        _ => None,
    };
    info.params = params;
    info.save(run_dir)?;
    let mut sparse = match (&model, t.sparse_embeddings) {
        (Student::Bag(bag), true) => {
            let [rows, dim] = bag.embedding_dims();
            let mut sp = SparseEmbedding::with_optimizer(
                bag.embedding_to_host(),
                rows,
                dim,
                t.sparse_optimizer,
            );
            if let Some(ckpt) = &last_ckpt {
                let path = ckpt.join(SPARSE_FILE);
                let bytes = std::fs::read(&path).map_err(|e| Error::Checkpoint {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                sp.load_state(&bytes, &path)?;
            }
            Some(sp)
        }
        _ => None,
    };

    // The table's lr follows the head's schedule, scaled to its own peak.
    let table_lr_scale = match t.sparse_lr {
        Some(s) if t.lr > 0.0 => s / t.lr,
        Some(_) => 0.0,
        None => 1.0,
    };
    let mut ckpt = Checkpointer::new(run_dir, last_ckpt);
    // Wall time of this session's phase adds to what earlier sessions spent.
    let loop_base = state.loop_seconds;
    // The best epoch's weights until the next checkpoint writes them.
    let mut best_model: Option<Student> = None;

    let n = data.train.len();
    let steps_per_epoch = n.div_ceil(t.batch_size) as u64;
    let mut total = steps_per_epoch * t.epochs as u64;
    if let Some(ms) = t.max_steps {
        total = if t.epochs == 0 {
            ms as u64
        } else {
            total.min(ms as u64)
        };
    }
    let epochs = total.div_ceil(steps_per_epoch) as usize;
    let class_weight = class_weights(&data.train, classes, t.class_weights);
    let distilling = data.teacher.is_some();
    let mut progress = Progress::new(interactive, total, state.global_step);
    let mut last_lr = 0.0;

    while !state.finished && state.epoch < epochs && state.global_step < total {
        let order = shuffled(n, seeds.shuffle, state.epoch);
        let batches: Vec<&[usize]> = order.chunks(t.batch_size).collect();
        let epoch_start = Instant::now();
        let mut epoch_examples = 0u64;
        for bi in state.batch_in_epoch..batches.len() {
            if state.global_step >= total {
                break;
            }
            let step_start = Instant::now();
            let idx = batches[bi];
            ad.seed(distill_core::hash::seeded_u64(
                seeds.dropout,
                &state.global_step.to_string(),
            ));
            let seqs: Vec<&[u32]> = idx.iter().map(|&i| train_seqs[i].as_slice()).collect();
            let (logits, pooled) = match (&sparse, &model, &frozen) {
                (Some(sp), Student::Bag(bag), _) => {
                    let host = sp.pool(&seqs);
                    let pooled =
                        Tensor::<2>::from_data(TensorData::new(host, [seqs.len(), sp.dim]), &ad)
                            .require_grad();
                    (bag.head(pooled.clone()), Some(pooled))
                }
                (_, Student::Pretrained(bert), Some(f)) => {
                    (f.logits(bert, &f.train, idx, &ad), None)
                }
                _ => (model.forward(&Batch::new(&seqs, &ad)), None),
            };
            let loss = batch_loss(
                logits,
                &data.train,
                idx,
                task,
                config,
                distilling,
                &class_weight,
                &ad,
            );
            let lv: f32 = loss.clone().into_scalar();
            if !lv.is_finite() {
                progress.finish();
                return Err(Error::Diverged {
                    step: state.global_step,
                    loss: lv,
                    checkpoint: ckpt.wait()?,
                });
            }
            let lr = lr_at(t.schedule, t.lr, t.warmup, state.global_step, total);
            last_lr = lr;
            let grads = loss.backward();
            if let (Some(sp), Some(pooled)) = (sparse.as_mut(), pooled) {
                let g: Vec<f32> = pooled
                    .grad(&grads)
                    .map(|g| g.into_data().try_to_vec::<f32>().unwrap_or_default())
                    .unwrap_or_default();
                if g.len() == seqs.len() * sp.dim {
                    sp.update(&seqs, &g, lr * table_lr_scale, t.grad_clip);
                }
            }
            let grads = GradientsParams::from_grads(grads, &model);
            model = optim.step(lr, model, grads);
            state.global_step += 1;
            state.batch_in_epoch = bi + 1;
            state.epoch_loss_sum += f64::from(lv);
            state.epoch_batches += 1;
            state.examples += idx.len() as u64;
            epoch_examples += idx.len() as u64;
            state.train_seconds += step_start.elapsed().as_secs_f64();
            let rate = epoch_examples as f64 / epoch_start.elapsed().as_secs_f64().max(1e-9);
            progress.step(
                state.global_step,
                state.epoch,
                epochs,
                state.epoch_loss_sum / state.epoch_batches as f64,
                lr,
                rate,
            );
            if let Some(every) = t.checkpoint_every
                && every > 0
                && state.global_step % every as u64 == 0
                && state.batch_in_epoch < batches.len()
            {
                model = sync_embedding(model, &sparse, &ad);
                ckpt.write(&state, &model, &optim, &sparse, best_model.take())?;
            }
        }
        // End of epoch: validate, select, maybe stop, checkpoint.
        model = sync_embedding(model, &sparse, &ad);
        let eval_model = model.valid();
        let probs = match (&sparse, &eval_model, &frozen) {
            (Some(sp), Student::Bag(bag), _) => artifact::predict_proba_pooled(
                bag,
                &sp.table,
                sp.dim,
                &val_seqs,
                task,
                t.eval_batch_size,
                device,
            ),
            (_, Student::Pretrained(bert), Some(f)) => {
                let all: Vec<usize> = (0..val_seqs.len()).collect();
                all.chunks(t.eval_batch_size.max(1))
                    .flat_map(|idx| artifact::probs_of(f.logits(bert, &f.val, idx, device), task))
                    .collect()
            }
            _ => predict_proba(&eval_model, &val_seqs, task, t.eval_batch_size, device),
        };
        let val = evaluate(&data.val, &probs, classes, t.threshold);
        let value = t.select.value(&val);
        let improved = state
            .best
            .as_ref()
            .is_none_or(|b| t.select.better(value, b.value));
        if improved {
            // Serialised when the next checkpoint is written (a clone of
            // the module shares its tensors: no copy).
            best_model = Some(eval_model.clone());
            state.best = Some(Best {
                epoch: state.epoch + 1,
                step: state.global_step,
                value,
                val,
            });
            state.bad_epochs = 0;
        } else {
            state.bad_epochs += 1;
        }
        let train_loss = state.epoch_loss_sum / state.epoch_batches.max(1) as f64;
        let rate = state.examples as f64 / state.train_seconds.max(1e-9);
        let mut val_metrics = BTreeMap::new();
        run::flatten("val", &val, &mut val_metrics);
        let mut line = serde_json::json!({
            "epoch": state.epoch + 1,
            "step": state.global_step,
            "train_loss": train_loss,
            "lr": last_lr,
            "examples_per_s": rate,
            "best": improved,
        });
        for (k, v) in val_metrics {
            line[k] = v.into();
        }
        run::append_metrics(run_dir, &line)?;
        progress.line(&format!(
            "epoch {}/{epochs}  step {}  train loss {train_loss:.4}  val acc {:.4}  macro-F1 {:.4}  val loss {:.4}{}",
            state.epoch + 1,
            state.global_step,
            val.accuracy,
            val.macro_f1,
            val.loss,
            if improved { "  *" } else { "" }
        ));
        state.epoch += 1;
        state.batch_in_epoch = 0;
        state.epoch_loss_sum = 0.0;
        state.epoch_batches = 0;
        if t.patience > 0 && state.bad_epochs >= t.patience && state.epoch < epochs {
            progress.line(&format!(
                "early stop: {} has not improved for {} epochs",
                t.select.key(),
                t.patience
            ));
            state.finished = true;
        }
        if state.epoch >= epochs || state.global_step >= total {
            state.finished = true;
        }
        state.loop_seconds = loop_base + phase_start.elapsed().as_secs_f64();
        if state.finished || ckpt.since_last() >= t.checkpoint_seconds {
            ckpt.write(&state, &model, &optim, &sparse, best_model.take())?;
        }
    }
    ckpt.wait()?;
    state.loop_seconds = loop_base + phase_start.elapsed().as_secs_f64();
    progress.finish();
    finish(
        config, data, device, featurizer, run_dir, info, &state, vocab, params,
    )
}

const SPARSE_FILE: &str = "sparse-adam.bin";

/// What the frozen bottom of a pretrained encoder computed for each text:
/// its sentence embedding (`pooled`: the whole encoder is frozen), or its
/// hidden states `[len, dim]` after the lowest `upto` layers. Frozen layers
/// run without dropout, so computing them once is exact.
struct Frozen {
    upto: usize,
    pooled: bool,
    dim: usize,
    train: Vec<Vec<f32>>,
    val: Vec<Vec<f32>>,
}

impl Frozen {
    /// Logits of texts `idx` of `rows`: the trainable top layers (padded
    /// batch), pooling and the head.
    fn logits(
        &self,
        bert: &distill_model::bert::BertModel,
        rows: &[Vec<f32>],
        idx: &[usize],
        device: &Device,
    ) -> Tensor<2> {
        let d = self.dim;
        if self.pooled {
            let mut out = Vec::with_capacity(idx.len() * d);
            for &i in idx {
                out.extend_from_slice(&rows[i]);
            }
            return bert.head(Tensor::<2>::from_data(
                TensorData::new(out, [idx.len(), d]),
                device,
            ));
        }
        let len = idx
            .iter()
            .map(|&i| rows[i].len() / d)
            .max()
            .unwrap_or(1)
            .max(1);
        let mut x = vec![0f32; idx.len() * len * d];
        let mut mask = vec![0f32; idx.len() * len];
        for (r, &i) in idx.iter().enumerate() {
            let n = rows[i].len() / d;
            x[r * len * d..r * len * d + n * d].copy_from_slice(&rows[i]);
            mask[r * len..r * len + n].iter_mut().for_each(|m| *m = 1.0);
        }
        let x = Tensor::<3>::from_data(TensorData::new(x, [idx.len(), len, d]), device);
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [idx.len(), len]), device);
        bert.head(bert.embed_from(self.upto, x, mask))
    }
}

/// Writes checkpoints (and `best.bpk`) on a background thread, one at a
/// time: hashing and writing ~50 MB per epoch was ~15% of a bag's training
/// profile, and the loop's state is serialised before the thread starts, so
/// what lands on disk is exactly the state at the checkpoint. Every write is
/// atomic as before; [`Checkpointer::wait`] reports the newest complete
/// checkpoint (or the error that stopped it).
struct Checkpointer {
    run_dir: PathBuf,
    /// When the newest checkpoint was started.
    started: Instant,
    pending: Option<std::thread::JoinHandle<Result<PathBuf>>>,
    last: Option<PathBuf>,
}

impl Checkpointer {
    fn new(run_dir: &Path, last: Option<PathBuf>) -> Self {
        Checkpointer {
            run_dir: run_dir.to_path_buf(),
            started: Instant::now(),
            pending: None,
            last,
        }
    }

    /// Seconds since the newest checkpoint was started (or the loop began).
    fn since_last(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Wait for the write in flight; the newest complete checkpoint.
    fn wait(&mut self) -> Result<Option<PathBuf>> {
        if let Some(h) = self.pending.take() {
            let done = h.join().map_err(|_| Error::Checkpoint {
                path: self.run_dir.join(run::CHECKPOINTS),
                message: "the checkpoint writer panicked".into(),
            })??;
            self.last = Some(done);
        }
        Ok(self.last.clone())
    }

    /// Serialise the state now, write it in the background (after the
    /// previous write has finished). `best` (the best epoch's module, when it
    /// changed since the last checkpoint) replaces `best.bpk` first.
    fn write(
        &mut self,
        state: &TrainState,
        model: &Student,
        optim: &ModuleOptimizer,
        sparse: &Option<SparseEmbedding>,
        best: Option<Student>,
    ) -> Result<()> {
        let best = best.map(|m| weights_bytes(&m)).transpose()?;
        let model_bytes = weights_bytes(model)?;
        let optim_bytes = optim.into_bytes().map_err(|e| Error::Checkpoint {
            path: self.run_dir.join(run::CHECKPOINTS),
            message: format!("serialising optimizer state: {e}"),
        })?;
        let sparse_bytes = sparse.as_ref().map(|s| s.state_bytes());
        self.wait()?;
        self.started = Instant::now();
        let (run_dir, state) = (self.run_dir.clone(), state.clone());
        self.pending = Some(std::thread::spawn(move || {
            if let Some(bytes) = best {
                let path = run_dir.join(run::CHECKPOINTS).join("best.bpk");
                distill_core::fsutil::write_atomic(&path, |w| {
                    std::io::Write::write_all(w, &bytes)
                })?;
            }
            let mut files: Vec<(&str, &[u8])> =
                vec![("model.bpk", &model_bytes), ("optim.bpk", &optim_bytes[..])];
            if let Some(b) = &sparse_bytes {
                files.push((SPARSE_FILE, b));
            }
            run::write_checkpoint(&run_dir, &state, &files)
        }));
        Ok(())
    }
}

impl Drop for Checkpointer {
    /// An early return still lets the write in flight finish (under the
    /// run's lock) rather than leave it racing the caller.
    fn drop(&mut self) {
        if let Some(h) = self.pending.take() {
            let _ = h.join();
        }
    }
}

/// Copy the host embedding table into the module (before eval and checkpoints).
fn sync_embedding(model: Student, sparse: &Option<SparseEmbedding>, device: &Device) -> Student {
    match (model, sparse) {
        (Student::Bag(bag), Some(sp)) => Student::Bag(bag.with_embedding(sp.table.clone(), device)),
        (model, _) => model,
    }
}

fn encode_rows(featurizer: &Featurizer, rows: &[Row]) -> Vec<Vec<u32>> {
    let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
    featurizer.encode_all(&texts)
}

/// Best weights → `model/`, test metrics, `run.json` completed.
#[allow(clippy::too_many_arguments)]
fn finish(
    config: &ExperimentConfig,
    data: &TrainData,
    device: &Device,
    featurizer: &Featurizer,
    run_dir: &Path,
    info: &mut RunInfo,
    state: &TrainState,
    vocab: usize,
    params: usize,
) -> Result<()> {
    let classes = data.info.labels.len();
    let fresh = Student::new(&config.model, vocab, classes, device);
    let best_path = run_dir.join(run::CHECKPOINTS).join("best.bpk");
    let model = load_weights(fresh, &best_path)?;
    let meta = ModelMeta {
        schema_version: artifact::MODEL_SCHEMA_VERSION,
        spec: config.model.clone(),
        task: data.info.task,
        labels: data.info.labels.clone(),
        vocab_size: vocab,
        params,
        created_by: format!("distill {}", env!("CARGO_PKG_VERSION")),
        weights: artifact::WeightsDtype::F32,
        preprocess: data.info.preprocess.clone(),
        pruned: None,
    };
    let model_bytes =
        artifact::save_model(&run_dir.join(run::MODEL_DIR), &meta, &model, featurizer)?;
    let mut metrics = BTreeMap::new();
    if let Some(best) = &state.best {
        run::flatten("val", &best.val, &mut metrics);
        info.best_epoch = Some(best.epoch);
    }
    if !data.test.is_empty() {
        let seqs = encode_rows(featurizer, &data.test);
        let probs = predict_proba(
            &model,
            &seqs,
            data.info.task,
            config.train.eval_batch_size,
            device,
        );
        let test = evaluate(&data.test, &probs, classes, config.train.threshold);
        run::flatten("test", &test, &mut metrics);
    }
    metrics.insert(
        "examples_per_s".into(),
        state.examples as f64 / state.train_seconds.max(1e-9),
    );
    info.metrics = metrics;
    info.params = params;
    info.model_bytes = model_bytes;
    info.steps = state.global_step;
    info.epochs = state.epoch;
    info.train_seconds = state.train_seconds;
    info.loop_seconds = state.loop_seconds;
    info.status = Status::Completed;
    info.finished_at = Some(run::utc_stamp(std::time::SystemTime::now()));
    info.save(run_dir)?;
    // Only once run.json says completed: a crash before leaves a resumable run.
    for old in run::list_checkpoints(run_dir)?
        .iter()
        .rev()
        .skip(config.train.keep_checkpoints)
    {
        let _ = std::fs::remove_dir_all(old);
    }
    Ok(())
}

/// Per-class loss weights (1.0 unless balanced).
fn class_weights(rows: &[Row], classes: usize, mode: ClassWeights) -> Vec<f32> {
    match mode {
        ClassWeights::None => vec![1.0; classes],
        ClassWeights::Balanced => {
            let mut counts = vec![0usize; classes];
            let mut n = 0usize;
            for r in rows {
                if let Gold::Class(k) = r.gold {
                    counts[k] += 1;
                    n += 1;
                }
            }
            counts
                .iter()
                .map(|&c| {
                    if c == 0 {
                        1.0
                    } else {
                        n as f32 / (classes * c) as f32
                    }
                })
                .collect()
        }
    }
}

/// Seeded Fisher-Yates permutation of `0..n` for `epoch`.
fn shuffled(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut s = distill_core::hash::seeded_u64(seed, &format!("epoch-{epoch}")) | 1;
    for i in (1..n).rev() {
        // xorshift64*
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        let r = s.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let j = (r % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// The mean loss of one batch; rows weighted by what supervises them.
#[allow(clippy::too_many_arguments)]
fn batch_loss(
    logits: Tensor<2>,
    rows: &[Row],
    idx: &[usize],
    task: Task,
    config: &ExperimentConfig,
    distilling: bool,
    class_weight: &[f32],
    device: &Device,
) -> Tensor<1> {
    let [b, c] = logits.dims();
    let alpha = config.distill.alpha as f32;
    let mut w_gold = vec![0f32; b];
    let mut w_kd = vec![0f32; b];
    let mut teacher = vec![1.0 / c as f32; b * c];
    let mut any_teacher = false;
    for (r, &i) in idx.iter().enumerate() {
        let row = &rows[i];
        let cw = match row.gold {
            Gold::Class(k) => class_weight[k],
            _ => 1.0,
        };
        let has_gold = row.gold != Gold::None;
        match (&row.teacher, distilling, has_gold) {
            (Some(_), true, true) => {
                w_gold[r] = (1.0 - alpha) * cw;
                w_kd[r] = alpha;
            }
            (Some(_), true, false) => w_kd[r] = 1.0,
            (_, _, true) => w_gold[r] = cw,
            _ => {}
        }
        if let (Some(p), true) = (&row.teacher, distilling) {
            teacher[r * c..(r + 1) * c].copy_from_slice(p);
            any_teacher = true;
        }
    }
    let gold_loss = match task {
        Task::Multilabel => {
            let mut y = vec![0f32; b * c];
            for (r, &i) in idx.iter().enumerate() {
                if let Gold::Multi(v) = &rows[i].gold {
                    y[r * c..(r + 1) * c].copy_from_slice(v);
                }
            }
            bce_rows(
                logits.clone(),
                Tensor::from_data(TensorData::new(y, [b, c]), device),
            )
        }
        _ => {
            let classes: Vec<Option<usize>> = idx
                .iter()
                .map(|&i| match rows[i].gold {
                    Gold::Class(k) => Some(k),
                    _ => None,
                })
                .collect();
            let y = smoothed_targets(&classes, c, config.train.label_smoothing);
            cross_entropy_rows(
                logits.clone(),
                Tensor::from_data(TensorData::new(y, [b, c]), device),
            )
        }
    };
    let w = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [b]), device);
    let mut total = gold_loss * w(w_gold);
    if any_teacher {
        let p = Tensor::from_data(TensorData::new(teacher, [b, c]), device);
        let kd = match task {
            // Multi-label teachers give independent per-label probabilities:
            // distil them with BCE against the soft targets.
            Task::Multilabel => bce_rows(logits, p),
            _ => kd_rows(logits, p, config.distill.temperature),
        };
        total = total + kd * w(w_kd);
    }
    total.sum() / b as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a checkpoint proven damaged (a sha256 mismatch) is removed after
    /// a fallback; one that failed otherwise (an I/O error, a format of
    /// another version) is left in place for the user to look at.
    #[test]
    fn only_checkpoints_proven_damaged_are_removed_after_a_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = |n: u32| {
            let p = dir.path().join(format!("step-{n:09}"));
            std::fs::create_dir_all(&p).unwrap();
            p
        };
        // Newest first.
        let (damaged, unreadable, foreign, good) = (ckpt(4), ckpt(3), ckpt(2), ckpt(1));
        let checkpoints = [
            damaged.clone(),
            unreadable.clone(),
            foreign.clone(),
            good.clone(),
        ];
        let restored = restore_newest(&checkpoints, |c: &Path| {
            if c == damaged {
                Err(Error::CheckpointDamaged {
                    path: c.join("model.bpk"),
                    found: "00".into(),
                    expected: "11".into(),
                })
            } else if c == unreadable {
                Err(Error::Checkpoint {
                    path: c.join("optim.bpk"),
                    message: "Permission denied (os error 13)".into(),
                })
            } else if c == foreign {
                Err(Error::Checkpoint {
                    path: c.join("optim.bpk"),
                    message: "optimizer state: unknown format version".into(),
                })
            } else {
                Ok(7)
            }
        })
        .unwrap();
        assert_eq!(restored, Some((good.clone(), 7)));
        assert!(!damaged.exists(), "proven damaged: removed");
        assert!(unreadable.exists(), "an I/O error proves nothing: kept");
        assert!(foreign.exists(), "another version's format: kept");
        assert!(good.exists());

        // None restorable: an error, and nothing removed but the proven.
        let err = restore_newest(std::slice::from_ref(&unreadable), |_| -> Result<()> {
            Err(Error::Checkpoint {
                path: unreadable.clone(),
                message: "busy".into(),
            })
        })
        .unwrap_err();
        assert!(err.to_string().contains("no usable checkpoint"), "{err}");
        assert!(unreadable.exists());
        assert_eq!(restore_newest(&[], |_| Ok(())).unwrap(), None);
    }
}
