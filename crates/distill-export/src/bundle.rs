//! The bundle: a directory that runs without the run directory.
//!
//! ```text
//! bundle.json      task, input/output spec, featurizer, calibration, escalation
//!                  threshold, headline metrics, sha256 of every file, lineage
//! labels.json      label names, in output order
//! model.json       the student spec (and how weights.bpk stores its weights)
//! weights.bpk      burn weights (format burn): f32, f16 or int8
//! model.onnx       the ONNX graph (format onnx): f32, f16 or int8 weights
//! tokenizer.json   encoder students: the subword tokenizer
//! config.toml      the run's resolved config (so `distill eval` can run a bundle)
//! verify.jsonl     reference rows: text, input ids, burn f32 logits (for other runtimes)
//! ```

use crate::onnx::{self, Precision};
use distill_core::fsutil::{read_json, write_atomic, write_json_atomic};
use distill_core::hash::sha256_file;
use distill_model::artifact::{
    META_FILE, ModelMeta, Predictor, TOKENIZER_FILE, WEIGHTS_FILE, WeightsDtype, save_weights_as,
};
use distill_model::device::DeviceKind;
use distill_model::spec::ModelSpec;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use distill_core::bundle::{
    BUNDLE_FILE, BUNDLE_SCHEMA_VERSION, BundleLineage, BundleManifest, CONFIG_FILE, FileEntry,
    Format, LABELS_FILE, ONNX_FILE, Quantize, VERIFY_FILE,
};
use distill_core::escalation::{
    CALIBRATION_FILE, Calibration, Escalation, REPORT_FILE, SuiteReport,
};
use distill_core::lock::DirLock;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Input(String),
    #[error("{}: {message}", path.display())]
    Bundle { path: PathBuf, message: String },
    #[error(transparent)]
    Core(#[from] distill_core::Error),
    #[error(transparent)]
    Model(#[from] distill_model::Error),
    #[error(transparent)]
    Train(#[from] distill_train::Error),
    #[error(transparent)]
    Verify(#[from] distill_core::bundle::BundleError),
}

pub type Result<T> = std::result::Result<T, Error>;

pub struct ExportRequest {
    pub run: PathBuf,
    pub format: Format,
    pub quantize: Quantize,
    pub out: Option<PathBuf>,
    /// Reference rows (test split, else validation) written to verify.jsonl.
    pub verify_rows: usize,
    /// Prune a bag before export (see [`distill_model::prune`]).
    pub prune: Option<Prune>,
}

/// How far to prune a bag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prune {
    /// Keep this many rows (fewer when the training features use fewer).
    Rows(usize),
    /// Keep as many rows as fit a bundle of at most this many bytes: every
    /// file the model needs (verify.jsonl, optional reference rows, aside).
    MaxBytes(u64),
}

/// A pruned export's effect, measured on the run's own splits.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PruneReport {
    pub rows: usize,
    /// Rows the training features use (the most a pruned bag can keep).
    pub used_rows: usize,
    pub buckets: usize,
    /// Validation and test metrics (`val_accuracy`, `test_macro_f1`, ...)
    /// before and after: after is the pruned model in the bundle's precision
    /// (burn format) or in f32 (ONNX: onnxruntime's parity test covers the rest).
    pub before: BTreeMap<String, f64>,
    pub after: BTreeMap<String, f64>,
}

fn featurizer_doc(spec: &ModelSpec) -> Value {
    match spec {
        ModelSpec::Bag(b) => json!({
            "kind": "hashed-ngrams",
            "buckets": b.buckets,
            "word_ngrams": b.word_ngrams,
            "char_ngrams": b.char_ngrams,
            "max_features": b.max_features,
            "hash": "xxh3_64 with seed; id = 1 + hash % (buckets - 1); id 0 is padding",
            "seeds": {"word": 0x5EED_0001u64, "word_ngram": "0x5EED0002 + n", "char_ngram": 0x5EED_0003u64},
            "algorithm": [
                "words: scan characters; alphanumerics, apostrophe and underscore extend the current word (lower-cased, Unicode); any other non-space character is a word of its own; whitespace separates",
                "for each word: hash(word, seed word)",
                "for n in 2..=word_ngrams, each window of n words joined by one space: hash(joined, 0x5EED0002 + n)",
                "if char_ngrams = [lo, hi]: for each word, chars = '<' + word + '>'; for n in lo..=min(hi, len(chars)), every window of n chars except the whole '<word>': hash(window, 0x5EED0003)",
                "no feature at all (empty text): hash(\"\", seed word)",
                "keep the first max_features ids, in this order"
            ]
        }),
        ModelSpec::Encoder(e) => json!({
            "kind": "tokenizer",
            "file": TOKENIZER_FILE,
            "max_len": e.max_len,
            "note": "HuggingFace tokenizers JSON; [CLS] (id 2) first, [PAD] = 0, truncated to max_len ids"
        }),
        ModelSpec::Pretrained(p) => json!({
            "kind": "tokenizer",
            "file": TOKENIZER_FILE,
            "max_len": p.max_len,
            "note": "the pretrained checkpoint's HuggingFace tokenizer; [CLS] text [SEP], [PAD] = 0, truncated to max_len ids ([SEP] kept); token type 0"
        }),
        ModelSpec::Tagger(t) => json!({
            "kind": "tagger-features",
            "buckets": t.buckets,
            "note": "see distill_model::tagger::features"
        }),
    }
}

/// The operating point to ship, with the temperature it was certified under:
/// target 0.95 if certified by an eval suite, else the highest certified
/// (suites in name order; the first wins ties).
fn escalation(run: &Path) -> Option<Escalation> {
    let entries = std::fs::read_dir(run.join("eval")).ok()?;
    let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    dirs.sort();
    let score = |t: f64| if (t - 0.95).abs() < 1e-9 { 2.0 } else { t };
    let mut best: Option<Escalation> = None;
    for d in dirs {
        let Ok(report) = SuiteReport::load(&d.join(REPORT_FILE)) else {
            continue;
        };
        if let Some(e) = report.shipped()
            && best
                .as_ref()
                .is_none_or(|b| score(e.target_accuracy) > score(b.target_accuracy))
        {
            best = Some(e);
        }
    }
    best
}

fn file_entry(path: &Path) -> Result<FileEntry> {
    Ok(FileEntry {
        sha256: sha256_file(path)?,
        bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
    })
}

/// Export a run to a bundle directory (written to a temporary sibling, then renamed).
pub fn export(req: &ExportRequest) -> Result<(PathBuf, BundleManifest)> {
    let run = &req.run;
    let model_dir = run.join(distill_train::run::MODEL_DIR);
    if !model_dir.join(META_FILE).is_file() {
        return Err(Error::Input(format!(
            "{}: no trained model (expected {}); is it a finished run directory?",
            run.display(),
            model_dir.join(META_FILE).display()
        )));
    }
    // Nothing of the run is read before its lock is held.
    let _lock = DirLock::acquire(run, "distill export")?;
    let info = distill_train::run::RunInfo::load(run)?;
    let predictor = Predictor::load(&model_dir, DeviceKind::Cpu)?;
    let qname = match req.quantize {
        Quantize::None => "fp32",
        Quantize::F16 => "f16",
        Quantize::Int8 => "int8",
    };
    let fname = match req.format {
        Format::Burn => "burn",
        Format::Onnx => "onnx",
    };
    let out = req
        .out
        .clone()
        .unwrap_or_else(|| run.join("bundles").join(format!("{fname}-{qname}")));
    let abs = std::path::absolute(&out).unwrap_or_else(|_| out.clone());
    let name = abs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some(parent) = abs.parent() {
        remove_stale_temps(parent, &name, &abs);
    }
    let mut target = OutDir::check(&out, run)?;
    // An existing bundle is locked too (`distill eval BUNDLE` writes into
    // it), then checked again under the lock.
    let _out_lock = match &target {
        OutDir::Bundle(p) => {
            let lock = DirLock::acquire(p, "distill export")?;
            target = OutDir::check(&out, run)?;
            Some(lock)
        }
        _ => None,
    };
    let out = target.path().to_path_buf();
    let parent = out
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&parent).map_err(|e| Error::Bundle {
        path: parent.clone(),
        message: e.to_string(),
    })?;
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| Error::Bundle {
        path: tmp.clone(),
        message: e.to_string(),
    })?;
    let built = build(req, run, &model_dir, &info, &predictor, &tmp);
    let manifest = match built {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    target.swap_in(&tmp, &name)?;
    Ok((out, manifest))
}

/// Write every bundle file into `tmp` (a fresh directory of ours).
fn build(
    req: &ExportRequest,
    run: &Path,
    model_dir: &Path,
    info: &distill_train::run::RunInfo,
    predictor: &Predictor,
    tmp: &Path,
) -> Result<BundleManifest> {
    let io = |p: &Path, e: std::io::Error| Error::Bundle {
        path: p.to_path_buf(),
        message: e.to_string(),
    };
    let config_src = run.join(distill_train::run::CONFIG_FILE);
    let load_data = || -> Result<distill_train::data::TrainData> {
        let source = distill_core::config::ConfigSource::load(&config_src)?;
        let config: distill_train::config::ExperimentConfig = source.deserialize()?;
        Ok(distill_train::data::TrainData::load(&config, run)?)
    };
    // A pruned bag replaces the run's model from here on.
    let pruned = match req.prune {
        Some(how) => Some(prune_for(req, how, predictor, &load_data()?, tmp)?),
        None => None,
    };
    let predictor = pruned.as_ref().map_or(predictor, |(p, _)| p);
    let meta = &predictor.meta;

    // Common files.
    write_json_atomic(&tmp.join(LABELS_FILE), &meta.labels)?;
    let config_text = portable_config(&config_src)?;
    write_atomic(&tmp.join(CONFIG_FILE), |w| {
        w.write_all(config_text.as_bytes())
    })?;
    if model_dir.join(TOKENIZER_FILE).is_file() {
        std::fs::copy(model_dir.join(TOKENIZER_FILE), tmp.join(TOKENIZER_FILE))
            .map_err(|e| io(&model_dir.join(TOKENIZER_FILE), e))?;
    }
    let dtype = weights_dtype(req.quantize);
    let mut bundle_meta: ModelMeta = (*meta).clone();
    bundle_meta.weights = dtype;
    // The tokenizer ships in the bundle: no path of this machine in model.json.
    match &mut bundle_meta.spec {
        ModelSpec::Encoder(e) => e.tokenizer.path = None,
        ModelSpec::Pretrained(p) => p.path = None,
        ModelSpec::Bag(_) | ModelSpec::Tagger(_) => {}
    }
    write_json_atomic(&tmp.join(META_FILE), &bundle_meta)?;

    let labels = meta.labels.len();
    match req.format {
        Format::Burn => {
            save_weights_as(&predictor.model, &tmp.join(WEIGHTS_FILE), dtype)?;
        }
        Format::Onnx => {
            let bytes = onnx_bytes(req, predictor, &info.run_id);
            write_atomic(&tmp.join(ONNX_FILE), |w| w.write_all(&bytes))?;
        }
    }

    // Reference rows: the run's test split (else val), burn f32 logits.
    let mut verify = Vec::new();
    if req.verify_rows > 0 {
        let data = load_data()?;
        let rows = if data.test.is_empty() {
            &data.val
        } else {
            &data.test
        };
        let rows: Vec<&distill_train::data::Row> = rows.iter().take(req.verify_rows).collect();
        let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
        let ids = predictor.encode_texts_from(&texts, &data.info.preprocess);
        let logits = predictor.logits(&ids, 64);
        for (((t, i), l), r) in texts.iter().zip(&ids).zip(logits).zip(&rows) {
            let gold = match &r.gold {
                distill_train::data::Gold::Class(c) => json!(meta.labels[*c]),
                _ => Value::Null,
            };
            verify.push(json!({"text": t, "ids": i, "logits": l, "gold": gold}));
        }
        distill_core::fsutil::write_jsonl_atomic(&tmp.join(VERIFY_FILE), &verify)?;
    }

    let calibration: Option<Calibration> = read_json(&run.join(CALIBRATION_FILE)).ok();
    let mut files = BTreeMap::new();
    let mut names: Vec<String> = std::fs::read_dir(tmp)
        .map_err(|e| io(tmp, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in names {
        files.insert(n.clone(), file_entry(&tmp.join(&n))?);
    }
    let mut metrics: BTreeMap<String, f64> = info.metrics.clone();
    metrics.insert("params".into(), meta.params as f64);
    if let Some((_, r)) = &pruned {
        // The run's split metrics describe the unpruned model: the bundle
        // states what the pruned one scored instead.
        metrics.retain(|k, _| !k.starts_with("val_") && !k.starts_with("test_"));
        metrics.insert("pruned_rows".into(), r.rows as f64);
        metrics.extend(r.after.clone());
        for (k, v) in &r.before {
            metrics.insert(format!("unpruned_{k}"), *v);
        }
    }
    let seq = json!(["batch", "sequence"]);
    let mut manifest = BundleManifest {
        schema_version: BUNDLE_SCHEMA_VERSION,
        format: req.format,
        quantize: req.quantize,
        task: meta.task,
        model_kind: meta.spec.kind().to_string(),
        labels: meta.labels.clone(),
        inputs: json!([{"name": "input_ids", "dtype": "int64", "shape": seq,
                        "note": "feature or token ids from the featurizer, after the preprocess steps; 0 is padding; batch and sequence axes are dynamic"}]),
        outputs: json!([
            {"name": "logits", "dtype": "float32", "shape": ["batch", labels]},
            {"name": "probs", "dtype": "float32", "shape": ["batch", labels],
             "note": if meta.task == distill_core::types::Task::Multilabel { "sigmoid(logits)" } else { "softmax(logits); calibrated = softmax(log(probs) / escalation.temperature)" }}
        ]),
        featurizer: {
            let mut doc = featurizer_doc(&meta.spec);
            if let Some(p) = &meta.pruned {
                doc["remap"] = json!({
                    "file": distill_model::artifact::REMAP_FILE,
                    "rows": p.rows,
                    "rule": "pruned bag: remap.bin holds the kept hashed ids (u32 little-endian, strictly increasing); after the steps above, an id found at position i becomes i + 1 and any other id is dropped; a text left with no id is [0] (row 0 is zero)"
                });
            }
            doc
        },
        preprocess: meta.preprocess.clone(),
        calibration,
        escalation: escalation(run),
        metrics,
        files,
        // No paths of this machine: names and hashes only.
        lineage: BundleLineage {
            experiment: info.experiment.clone(),
            run_id: info.run_id.clone(),
            dataset: info.lineage.dataset_name.clone(),
            dataset_sha256: info.lineage.dataset_sha256.clone(),
            teacher_sha256: info.lineage.teacher_sha256.clone(),
        },
        created_by: format!("distill {}", env!("CARGO_PKG_VERSION")),
        created_at: distill_core::time::utc_stamp(std::time::SystemTime::now()),
        bundle_sha256: String::new(),
    };
    let sealed = manifest.to_sealed_bytes();
    write_atomic(&tmp.join(BUNDLE_FILE), |w| w.write_all(&sealed))?;
    let _ = model_dir;
    Ok(manifest)
}

/// Prune the run's bag as `how` says, write `remap.bin` into `tmp`, and
/// measure what it costs on the run's splits.
fn prune_for(
    req: &ExportRequest,
    how: Prune,
    predictor: &Predictor,
    data: &distill_train::data::TrainData,
    tmp: &Path,
) -> Result<(Predictor, PruneReport)> {
    let ModelSpec::Bag(spec) = &predictor.meta.spec else {
        return Err(Error::Input(
            "--prune-rows / --max-bytes prune a bag; this run's model is not one".into(),
        ));
    };
    let Some((table, dim)) = predictor.host_table() else {
        return Err(Error::Input("the bag's table is not readable".into()));
    };
    let texts = |rows: &[distill_train::data::Row]| -> Vec<String> {
        rows.iter().map(|r| r.text.clone()).collect()
    };
    let train_texts = texts(&data.train);
    let train_refs: Vec<&str> = train_texts.iter().map(String::as_str).collect();
    let seqs = predictor.encode_texts_from(&train_refs, &data.info.preprocess);
    let ranked = distill_model::prune::rank_rows(table, dim, &seqs);
    if ranked.is_empty() {
        return Err(Error::Input(
            "the training split uses no row of the bag".into(),
        ));
    }
    let build = |k: usize| distill_model::prune::prune(predictor, &ranked[..k.min(ranked.len())]);
    let k = match how {
        Prune::Rows(k) => k.clamp(1, ranked.len()),
        Prune::MaxBytes(max) => {
            // Everything but the model files (labels, config, model.json,
            // bundle.json; verify rows) is measured on a one-row build and
            // budgeted with a margin; the model files are measured exactly.
            let fits = |k: usize| -> Result<bool> {
                let (p, _) = build(k)?;
                Ok(model_file_bytes(req, &p, tmp)? + 4 * k as u64 + fixed_bytes(req, data) <= max)
            };
            if !fits(1)? {
                return Err(Error::Input(format!(
                    "--max-bytes {max}: even a one-row bag does not fit (labels, config and manifest alone take about {} bytes)",
                    fixed_bytes(req, data)
                )));
            }
            let (mut lo, mut hi) = (1usize, ranked.len());
            if fits(hi)? {
                lo = hi;
            }
            while lo < hi {
                let mid = lo + (hi - lo).div_ceil(2);
                if fits(mid)? {
                    lo = mid;
                } else {
                    hi = mid - 1;
                }
            }
            lo
        }
    };
    let (mut pruned, kept) = build(k)?;
    let record = distill_model::artifact::write_remap(tmp, &kept)?;
    pruned.meta.pruned = Some(record);
    let scores = |p: &Predictor| -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (split, rows) in [("val", &data.val), ("test", &data.test)] {
            if rows.is_empty() {
                continue;
            }
            let t = texts(rows);
            let refs: Vec<&str> = t.iter().map(String::as_str).collect();
            let probs = p.predict_proba_from(&refs, &data.info.preprocess, 256);
            let m = distill_train::metrics::evaluate(rows, &probs, p.meta.labels.len(), 0.5);
            out.insert(format!("{split}_accuracy"), m.accuracy);
            out.insert(format!("{split}_macro_f1"), m.macro_f1);
        }
        out
    };
    // burn bundles are scored as shipped (quantised weights round-tripped).
    let shipped = match (req.format, req.quantize) {
        (Format::Burn, q) if q != Quantize::None => {
            let probe = tmp.join(".prune-probe.bpk");
            let dtype = weights_dtype(q);
            save_weights_as(&pruned.model, &probe, dtype)?;
            let fresh = distill_model::model::Student::new(
                &pruned.meta.spec,
                pruned.meta.vocab_size,
                pruned.meta.labels.len(),
                &pruned.device,
            );
            let model = distill_model::artifact::load_weights_as(fresh, &probe, dtype)?;
            let _ = std::fs::remove_file(&probe);
            Some(Predictor::from_parts(
                pruned.meta.clone(),
                pruned.featurizer.clone(),
                model,
                pruned.device.clone(),
            ))
        }
        _ => None,
    };
    let scored = shipped.as_ref().unwrap_or(&pruned);
    let report = PruneReport {
        rows: kept.len(),
        used_rows: ranked.len(),
        buckets: spec.buckets,
        before: scores(predictor),
        after: scores(scored),
    };
    Ok((pruned, report))
}

fn weights_dtype(q: Quantize) -> WeightsDtype {
    match q {
        Quantize::None => WeightsDtype::F32,
        Quantize::F16 => WeightsDtype::F16,
        Quantize::Int8 => WeightsDtype::Int8,
    }
}

/// Bytes of the model file (weights.bpk or model.onnx) `predictor` exports to.
fn model_file_bytes(req: &ExportRequest, predictor: &Predictor, tmp: &Path) -> Result<u64> {
    Ok(match req.format {
        Format::Burn => {
            let probe = tmp.join(".size-probe.bpk");
            let n = save_weights_as(&predictor.model, &probe, weights_dtype(req.quantize))?;
            let _ = std::fs::remove_file(&probe);
            n
        }
        Format::Onnx => onnx_bytes(req, predictor, "").len() as u64,
    })
}

/// What the bundle's other files take, with a margin: a few KB of labels,
/// config and manifest. (verify.jsonl, reference rows for checking other
/// runtimes, is not part of the model and not counted.)
fn fixed_bytes(_req: &ExportRequest, data: &distill_train::data::TrainData) -> u64 {
    let labels: u64 = data.info.labels.iter().map(|l| l.len() as u64 + 4).sum();
    16 * 1024 + 3 * labels
}

/// The ONNX graph of `predictor`'s model.
fn onnx_bytes(req: &ExportRequest, predictor: &Predictor, run_id: &str) -> Vec<u8> {
    let precision = match req.quantize {
        Quantize::None => Precision::F32,
        Quantize::F16 => Precision::F16,
        Quantize::Int8 => Precision::Int8,
    };
    onnx::build(
        &predictor.model.weights(),
        predictor.meta.task,
        predictor.meta.labels.len(),
        precision,
        &[
            ("distill.run", run_id.to_string()),
            (
                "distill.labels",
                serde_json::to_string(&predictor.meta.labels).unwrap_or_default(),
            ),
        ],
    )
}

/// The run's resolved config without paths of this machine: absolute paths
/// (dataset, curation, teacher, tokenizer) become their file names, so a
/// bundle that leaves the workbench does not carry its directory layout.
/// (`distill eval BUNDLE` then needs a suite whose cases name their dataset.)
fn portable_config(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Bundle {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| Error::Bundle {
        path: path.to_path_buf(),
        message: format!("invalid TOML: {e}"),
    })?;
    fn strip(v: &mut toml::Value) {
        match v {
            toml::Value::String(s) if Path::new(s.as_str()).is_absolute() => {
                *s = Path::new(s.as_str())
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
            }
            toml::Value::Table(t) => t.iter_mut().for_each(|(_, v)| strip(v)),
            toml::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    table.iter_mut().for_each(|(_, v)| strip(v));
    Ok(toml::to_string(&table).unwrap_or(text))
}

/// Where `distill export --out` may write: an absent directory, an empty
/// one, or an existing bundle holding nothing but its own files, never the
/// run or a directory that holds it. Anything else is refused untouched.
enum OutDir {
    Absent(PathBuf),
    Empty(PathBuf),
    Bundle(PathBuf),
}

impl OutDir {
    fn check(out: &Path, run: &Path) -> Result<OutDir> {
        let refuse = |message: String| Error::Bundle {
            path: out.to_path_buf(),
            message,
        };
        let meta = match std::fs::symlink_metadata(out) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let abs = std::path::absolute(out).unwrap_or_else(|_| out.to_path_buf());
                if abs.file_name().is_none() {
                    return Err(refuse("not a directory name to create".into()));
                }
                return Ok(OutDir::Absent(abs));
            }
            Err(e) => return Err(refuse(e.to_string())),
            Ok(m) => m,
        };
        if !meta.is_dir() {
            return Err(refuse(
                "exists and is not a directory (a symlink or a file); choose another --out".into(),
            ));
        }
        let out_abs = std::fs::canonicalize(out).map_err(|e| refuse(e.to_string()))?;
        let run_abs = std::fs::canonicalize(run).map_err(|e| refuse(e.to_string()))?;
        if run_abs.starts_with(&out_abs) {
            return Err(refuse(format!(
                "refusing to replace {} with a bundle: it is the run or holds it",
                out_abs.display()
            )));
        }
        if out_abs.file_name().is_none() {
            return Err(refuse("refusing to replace the file-system root".into()));
        }
        let entries: Vec<String> = std::fs::read_dir(&out_abs)
            .map_err(|e| refuse(e.to_string()))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if entries.is_empty() {
            return Ok(OutDir::Empty(out_abs));
        }
        if !entries.iter().any(|n| n == BUNDLE_FILE) {
            return Err(refuse(format!(
                "exists, is not empty and is not a bundle (no {BUNDLE_FILE}); refusing to replace it: choose an absent or empty directory"
            )));
        }
        // An existing bundle is replaced only if it holds nothing else.
        #[derive(serde::Deserialize)]
        struct Files {
            files: BTreeMap<String, serde_json::Value>,
        }
        let listed: Files =
            distill_core::fsutil::read_json_bounded(&out_abs.join(BUNDLE_FILE), 16 << 20).map_err(
                |e| {
                    refuse(format!(
                        "existing bundle unreadable ({e}); refusing to replace it"
                    ))
                },
            )?;
        let foreign: Vec<&String> = entries
            .iter()
            .filter(|n| {
                // `eval/`: reports `distill eval BUNDLE` wrote into it.
                n.as_str() != BUNDLE_FILE
                    && n.as_str() != distill_core::lock::LOCK_FILE
                    && n.as_str() != "eval"
                    && !listed.files.contains_key(n.as_str())
            })
            .collect();
        if !foreign.is_empty() {
            return Err(refuse(format!(
                "the existing bundle also holds files it did not create ({}); refusing to replace it",
                foreign
                    .iter()
                    .take(5)
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(OutDir::Bundle(out_abs))
    }

    fn path(&self) -> &Path {
        match self {
            OutDir::Absent(p) | OutDir::Empty(p) | OutDir::Bundle(p) => p,
        }
    }

    /// Put the finished `tmp` in place: the old bundle is renamed aside, the
    /// new one renamed in, then the old one removed (rolled back on failure).
    fn swap_in(&self, tmp: &Path, name: &str) -> Result<()> {
        let out = self.path();
        let io = |p: &Path, e: std::io::Error| Error::Bundle {
            path: p.to_path_buf(),
            message: e.to_string(),
        };
        match self {
            OutDir::Absent(_) => std::fs::rename(tmp, out).map_err(|e| io(out, e)),
            OutDir::Empty(_) => {
                std::fs::remove_dir(out).map_err(|e| io(out, e))?;
                std::fs::rename(tmp, out).map_err(|e| io(out, e))
            }
            OutDir::Bundle(_) => {
                let parent = out.parent().unwrap_or(Path::new("."));
                let old = parent.join(format!(".{name}.old-{}", std::process::id()));
                std::fs::rename(out, &old).map_err(|e| io(out, e))?;
                if let Err(e) = std::fs::rename(tmp, out) {
                    let _ = std::fs::rename(&old, out);
                    return Err(io(out, e));
                }
                std::fs::remove_dir_all(&old).map_err(|e| io(&old, e))
            }
        }
    }
}

/// Clean up after an export that was killed (only ours: that exact name
/// pattern, and only when PID is no longer running): `.NAME.tmp-PID` (a
/// half-built bundle) is removed; `.NAME.old-PID` (the previous bundle, set
/// aside just before the swap) is put back when `out` is absent, since it is
/// then the only copy, and removed otherwise.
fn remove_stale_temps(parent: &Path, name: &str, out: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    if !Path::new("/proc/self").exists() {
        return; // cannot tell a live process from a dead one here
    }
    for entry in entries.filter_map(|e| e.ok()) {
        let file = entry.file_name().to_string_lossy().into_owned();
        let parse = |kind: &str| {
            file.strip_prefix(&format!(".{name}{kind}"))
                .and_then(|p| p.parse::<u32>().ok())
        };
        let (pid, old) = match (parse(".tmp-"), parse(".old-")) {
            (Some(p), _) => (p, false),
            (_, Some(p)) => (p, true),
            _ => continue,
        };
        let alive = Path::new("/proc").join(pid.to_string()).exists();
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if alive || !is_dir {
            continue;
        }
        if old && std::fs::symlink_metadata(out).is_err() {
            let _ = std::fs::rename(entry.path(), out);
        } else {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Read a bundle and check it as untrusted input (see
/// [`distill_core::bundle`]): exact file set, plain names, regular files,
/// sizes before reading, every sha256, and the manifest's own hash.
pub fn verify(dir: &Path) -> Result<BundleManifest> {
    Ok(BundleManifest::read_verified(dir)?)
}
