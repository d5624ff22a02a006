//! Training the extraction tagger (`[model] kind = "tagger"`): gold spans
//! become BIO tags over the tagger's tokens, and the constrained CRF is
//! trained by exact forward-backward gradients with Adagrad (row-wise on the
//! hashed feature table, per weight elsewhere), one sentence at a time in a
//! seeded order. Single-threaded and seeded, so a run replays bit for bit.
//! Datasets with intents too (snips, hwu64) train a joint model.
//!
//! A tagger trains in seconds to a minute, so a run is one pass without
//! mid-run checkpoints: `--resume` refuses it, and a killed run is marked
//! by its `run.json` staying `running` (start a new one).

// Dynamic programmes over tag indices read clearest with index loops.
#![allow(clippy::needless_range_loop)]

use crate::config::ExperimentConfig;
use crate::data::resolve;
use crate::error::{Error, Result};
use crate::run::{self, Lineage, RunInfo, Seeds};
use crate::trainer::{TrainOutcome, TrainRequest, absolute, lock_run_dir};
use distill_core::hash::{SplitMix64, seeded_u64, unit_interval};
use distill_core::run_layout::Status;
use distill_core::spans::{SpanMetrics, TagSet, span_metrics};
use distill_core::types::{Span, Split, Task};
use distill_model::spec::ModelSpec;
use distill_model::tagger::{
    self, Constraints, Dtype, Lattice, TaggerMeta, TaggerSpec, Weights, dot,
};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

/// One example, featurized.
#[derive(Debug, Clone)]
pub struct TagRow {
    pub id: String,
    pub text: String,
    pub feats: Vec<Vec<u32>>,
    /// The tagged tokens' character ranges.
    pub ranges: Vec<(usize, usize)>,
    /// Gold tags (training rows).
    pub tags: Vec<usize>,
    pub intent: Option<usize>,
    /// Gold spans as given (evaluation compares these, character-exact).
    pub spans: Vec<Span>,
}

/// The rows of a tagger run, and what was left out.
pub struct TagData {
    pub slots: Vec<String>,
    pub intents: Vec<String>,
    pub train: Vec<TagRow>,
    pub val: Vec<TagRow>,
    pub test: Vec<TagRow>,
    pub rejects: Vec<serde_json::Value>,
    /// Gold spans whose boundaries fall inside a token.
    pub snapped: usize,
    pub val_source: String,
    pub dataset_name: String,
    pub dataset_path: std::path::PathBuf,
    pub dataset_sha256: String,
    pub task: Task,
    /// The teacher log trained on: path, sha256, records with spans, rows
    /// labelled by the teacher (no gold spans), values it left unplaced.
    pub teacher: Option<TeacherSpans>,
}

#[derive(Debug, Clone)]
pub struct TeacherSpans {
    pub path: std::path::PathBuf,
    pub sha256: String,
    pub records: usize,
    pub rows: usize,
    pub unaligned_values: usize,
    /// Records left out because a value of theirs could not be placed.
    pub partial_records: usize,
}

/// Spans per example id from a teach log (`distill teach`, task extract):
/// the values the teacher answered, placed in the text at teach time.
/// Failed records and records without spans are skipped; the last record of
/// an id wins.
fn read_teacher_spans(path: &Path) -> Result<(BTreeMap<String, Vec<Span>>, TeacherSpans)> {
    let file = distill_core::teacher_log::log_file(path);
    if !file.is_file() {
        return Err(Error::Input(format!(
            "teacher file {}: no such file (expected the directory of an extraction `distill teach`, or its logs.jsonl)",
            file.display()
        )));
    }
    let log = distill_core::teacher_log::read_log_lines(&file)?;
    let mut out = BTreeMap::new();
    let (mut unaligned, mut partial) = (0, 0);
    for rec in log.records {
        if rec.failed() {
            continue;
        }
        unaligned += rec.unaligned.len();
        // A record with a value it could not place would teach that value's
        // words as "no field": it is left out (counted).
        if !rec.unaligned.is_empty() {
            partial += 1;
            continue;
        }
        if let Some(spans) = rec.spans {
            out.insert(rec.id, spans);
        }
    }
    let info = TeacherSpans {
        path: file,
        sha256: log.sha256,
        records: out.len(),
        rows: 0,
        unaligned_values: unaligned,
        partial_records: partial,
    };
    Ok((out, info))
}

/// Load a dataset with spans for a tagger: slots are the span labels seen in
/// the dataset (sorted), intents its labels when rows carry one. A row whose
/// spans cannot become tags (overlap, outside the text, no token) is
/// rejected with the reason, never trained on.
pub fn load(config: &ExperimentConfig, base: &Path, spec: &TaggerSpec) -> Result<TagData> {
    let path = resolve(base, &config.dataset);
    let path = std::fs::canonicalize(&path).unwrap_or(path);
    let curate = config.curate.as_ref().map(|c| resolve(base, c));
    let dataset = distill_data::open::open_dataset(&path, curate.as_deref())?;
    let (teacher_spans, mut teacher_info) = match &config.teacher {
        Some(t) => {
            let (m, i) = read_teacher_spans(&resolve(base, t))?;
            (m, Some(i))
        }
        None => (BTreeMap::new(), None),
    };
    let gold_slots = dataset
        .examples
        .iter()
        .any(|e| e.spans.as_ref().is_some_and(|s| !s.is_empty()));
    // Slots are the dataset's; a dataset without gold spans takes the teacher's fields.
    let mut slots: Vec<String> = if gold_slots {
        dataset
            .examples
            .iter()
            .flat_map(|e| e.spans.iter().flatten().map(|s| s.label.clone()))
            .collect()
    } else {
        teacher_spans
            .values()
            .flatten()
            .map(|s| s.label.clone())
            .collect()
    };
    slots.sort();
    slots.dedup();
    // The loader's limits (and 16-bit back pointers): refuse before training.
    if slots.len() > 4096 || dataset.manifest.labels.len() > 65536 {
        return Err(Error::Input(format!(
            "dataset {}: {} slots and {} labels; a tagger takes at most 4096 slots and 65536 intents",
            path.display(),
            slots.len(),
            dataset.manifest.labels.len()
        )));
    }
    if spec.buckets.saturating_mul(spec.dim) > 1 << 28 {
        return Err(Error::Input(format!(
            "tagger buckets × dim = {} × {} exceeds 2^28 weights (1 GiB of f32 while training)",
            spec.buckets, spec.dim
        )));
    }
    if slots.is_empty() {
        return Err(Error::Input(format!(
            "dataset {}: no spans; a tagger trains on a dataset with spans (`spans` in the data config)",
            path.display()
        )));
    }
    let has_intents = dataset.manifest.task == Task::Classify
        && dataset.manifest.labels.len() >= 2
        && dataset.examples.iter().any(|e| e.label.is_some());
    let intents = if has_intents {
        dataset.manifest.labels.clone()
    } else {
        Vec::new()
    };
    let intent_index: BTreeMap<&str, usize> = intents
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    let tagset = TagSet::new(slots.clone());
    let has_val = dataset.examples.iter().any(|e| e.split == Some(Split::Val));
    let carve_seed = Seeds::derive(config.seed).val_split;
    let (mut train, mut val, mut test) = (Vec::new(), Vec::new(), Vec::new());
    let mut rejects = Vec::new();
    let mut snapped = 0;
    let mut teacher_rows = 0;
    let annotates_all = dataset.manifest.task != Task::Extract && gold_slots;
    let no_spans: Vec<Span> = Vec::new();
    for ex in &dataset.examples {
        let split = ex.split.unwrap_or(Split::Train);
        // Gold spans where the row has them; the teacher's on training and
        // unlabelled rows without gold.
        // A joint dataset (intents with slots: SNIPS, NLU++) annotates
        // every row, so a row without spans has none; in an `extract`
        // dataset it is unlabelled.
        let gold = match &ex.spans {
            None if annotates_all && split != Split::Unlabeled => Some(&no_spans),
            g => g.as_ref(),
        };
        let from_teacher = gold.is_none() || !gold_slots;
        let spans = match (gold, teacher_spans.get(&ex.id)) {
            (Some(g), _) if !from_teacher => g,
            (_, Some(t)) if matches!(split, Split::Train | Split::Unlabeled) => t,
            _ => continue,
        };
        let split = if split == Split::Unlabeled {
            Split::Train
        } else {
            split
        };
        let (tokens, _) = tagger::tokenize(&ex.text, spec.max_tokens);
        let chars = ex.text.chars().count();
        // Spans past a truncated text's last token are not trainable; they
        // stay in the gold set for evaluation.
        let kept_end = tokens.last().map_or(0, |t| t.end);
        let trainable: Vec<Span> = spans
            .iter()
            .filter(|s| s.start < kept_end)
            .cloned()
            .collect();
        let ranges = tagger::ranges(&tokens);
        let tags = match tagset.encode(&ranges, &trainable, chars) {
            Ok((tags, report)) => {
                snapped += report.snapped;
                tags
            }
            Err(reason) => {
                rejects.push(json!({
                    "id": ex.id, "source": ex.source, "line": ex.line, "reason": reason,
                }));
                continue;
            }
        };
        if from_teacher {
            teacher_rows += 1;
        }
        let intent = if has_intents && from_teacher {
            ex.label
                .as_deref()
                .and_then(|l| intent_index.get(l))
                .copied()
        } else if has_intents {
            match ex.label.as_deref().and_then(|l| intent_index.get(l)) {
                Some(&i) => Some(i),
                None => {
                    rejects.push(json!({
                        "id": ex.id, "source": ex.source, "line": ex.line,
                        "reason": "no intent label in a joint (intent + slots) dataset",
                    }));
                    continue;
                }
            }
        } else {
            None
        };
        let row = TagRow {
            id: ex.id.clone(),
            text: ex.text.clone(),
            feats: tagger::features(spec, &tokens),
            ranges,
            tags,
            intent,
            spans: spans.clone(),
        };
        match split {
            Split::Train => {
                if !has_val
                    && unit_interval(seeded_u64(carve_seed, &ex.id)) < config.train.val_fraction
                {
                    val.push(row)
                } else {
                    train.push(row)
                }
            }
            Split::Val => val.push(row),
            Split::Test => test.push(row),
            Split::Unlabeled => {}
        }
    }
    if let Some(t) = teacher_info.as_mut() {
        t.rows = teacher_rows;
        if t.rows == 0 {
            return Err(Error::Input(format!(
                "teacher file {}: none of its {} records with spans labels a training row without gold spans",
                t.path.display(),
                t.records
            )));
        }
    }
    if train.is_empty() || val.is_empty() {
        return Err(Error::Input(format!(
            "dataset {}: {} train and {} validation rows with usable spans; a tagger needs both ({} rows rejected)",
            path.display(),
            train.len(),
            val.len(),
            rejects.len()
        )));
    }
    Ok(TagData {
        slots,
        intents,
        train,
        val,
        test,
        rejects,
        snapped,
        val_source: if has_val {
            "val split".into()
        } else {
            format!(
                "carved from train (val-fraction {}, seed {carve_seed})",
                config.train.val_fraction
            )
        },
        dataset_name: dataset.manifest.name.clone(),
        dataset_path: path,
        dataset_sha256: dataset.manifest.examples_sha256.clone(),
        task: dataset.manifest.task,
        teacher: teacher_info,
    })
}

/// Adagrad state for one dense parameter vector.
struct Dense {
    sum: Vec<f32>,
}

impl Dense {
    fn new(n: usize) -> Self {
        Dense { sum: vec![0.0; n] }
    }
    fn step(&mut self, p: &mut [f32], g: &[f32], lr: f32) {
        for ((p, g), s) in p.iter_mut().zip(g).zip(self.sum.iter_mut()) {
            if *g != 0.0 {
                *s += g * g;
                *p -= lr * g / (s.sqrt() + 1e-8);
            }
        }
    }
}

/// The model being trained: a dense table, dense weights, their optimiser state.
struct Trainee {
    dim: usize,
    table: Vec<f32>,
    row_sum: Vec<f32>,
    weights: Weights,
    opt: Vec<Dense>,
    cons: Constraints,
    intent_weight: f32,
}

/// Gradients of one sentence (dense parts; the table's rows are applied directly).
struct Grads {
    parts: Vec<Vec<f32>>,
}

impl Trainee {
    fn new(spec: &TaggerSpec, tags: &TagSet, intents: usize, seed: u64) -> Self {
        let k = tags.len();
        let mut weights = Weights::zeros(spec.dim, k, intents);
        let mut rng = SplitMix64(seed);
        let scale = 1.0 / (spec.dim as f64).sqrt();
        for v in weights.w.iter_mut().chain(weights.u.iter_mut()) {
            *v = ((rng.next_f64() * 2.0 - 1.0) * scale) as f32;
        }
        let opt = weights
            .parts()
            .iter()
            .map(|p| Dense::new(p.len()))
            .collect();
        Trainee {
            dim: spec.dim,
            table: vec![0.0; spec.buckets * spec.dim],
            row_sum: vec![0.0; spec.buckets],
            weights,
            opt,
            cons: Constraints::new(tags),
            intent_weight: spec.intent_weight as f32,
        }
    }

    fn row(&self, id: u32) -> Option<&[f32]> {
        let d = self.dim;
        Some(&self.table[id as usize * d..(id as usize + 1) * d])
    }

    /// One sentence: loss, gradients, update. Returns the CRF negative log-likelihood.
    fn step(&mut self, feats: &[Vec<u32>], gold: &[usize], intent: Option<usize>, lr: f32) -> f64 {
        let (d, k, c) = (self.dim, self.weights.tags, self.weights.intents);
        let t_len = gold.len();
        if t_len == 0 {
            return 0.0;
        }
        let h = tagger::hidden(feats, d, |id| self.row(id));
        let em = tagger::emissions(&self.weights, &h);
        let lat = Lattice::new(&self.weights, &em, &self.cons);
        let marg = lat.marginals();
        let w = &self.weights;
        let mut score = (w.start[gold[0]] + w.end[gold[t_len - 1]]) as f64;
        for t in 0..t_len {
            score += em[t * k + gold[t]] as f64;
            if t > 0 {
                score += w.trans[gold[t - 1] * k + gold[t]] as f64;
            }
        }
        let loss = lat.logz - score;
        let mut g = Grads {
            parts: w.parts().iter().map(|p| vec![0f32; p.len()]).collect(),
        };
        let [gw, gb, gtrans, gstart, gend, gu, gc] = &mut g.parts[..] else {
            unreachable!("seven parts")
        };
        let mut gh = vec![0f32; t_len * d];
        for t in 0..t_len {
            let ht = &h[t * d..(t + 1) * d];
            for j in 0..k {
                let ge = marg[t * k + j] as f32 - f32::from(gold[t] == j);
                if ge == 0.0 {
                    continue;
                }
                gb[j] += ge;
                let wj = &w.w[j * d..(j + 1) * d];
                for x in 0..d {
                    gw[j * d + x] += ge * ht[x];
                    gh[t * d + x] += ge * wj[x];
                }
            }
            if t > 0 {
                for i in 0..k {
                    for j in 0..k {
                        if self.cons.ok(i, j) {
                            gtrans[i * k + j] += lat.pair(t, i, j) as f32;
                        }
                    }
                }
                gtrans[gold[t - 1] * k + gold[t]] -= 1.0;
            }
        }
        for j in 0..k {
            gstart[j] = marg[j] as f32 - f32::from(gold[0] == j);
            gend[j] = marg[(t_len - 1) * k + j] as f32 - f32::from(gold[t_len - 1] == j);
        }
        if let Some(y) = intent
            && c > 0
        {
            let mut mean = vec![0f32; d];
            for ht in h.chunks(d) {
                for (m, v) in mean.iter_mut().zip(ht) {
                    *m += v / t_len as f32;
                }
            }
            let logits: Vec<f32> = (0..c)
                .map(|ci| w.c[ci] + dot(&w.u[ci * d..(ci + 1) * d], &mean))
                .collect();
            let p = tagger::softmax(&logits);
            let mut gmean = vec![0f32; d];
            for ci in 0..c {
                let gl = (p[ci] - f32::from(ci == y)) * self.intent_weight;
                gc[ci] += gl;
                for x in 0..d {
                    gu[ci * d + x] += gl * mean[x];
                    gmean[x] += gl * w.u[ci * d + x];
                }
            }
            for ght in gh.chunks_mut(d) {
                for (g, m) in ght.iter_mut().zip(&gmean) {
                    *g += m / t_len as f32;
                }
            }
        }
        // The table: each row's gradient is the sum over the tokens using
        // it; row-wise Adagrad (one accumulator per row).
        let mut touched: Vec<(u32, usize)> = feats
            .iter()
            .enumerate()
            .flat_map(|(t, f)| f.iter().map(move |&id| (id, t)))
            .collect();
        touched.sort_unstable();
        let mut grad = vec![0f32; d];
        let mut i = 0;
        while i < touched.len() {
            let id = touched[i].0;
            grad.iter_mut().for_each(|v| *v = 0.0);
            while i < touched.len() && touched[i].0 == id {
                let t = touched[i].1;
                for (g, v) in grad.iter_mut().zip(&gh[t * d..(t + 1) * d]) {
                    *g += v;
                }
                i += 1;
            }
            let sq = grad.iter().map(|v| v * v).sum::<f32>() / d as f32;
            let s = &mut self.row_sum[id as usize];
            *s += sq;
            let step = lr / (s.sqrt() + 1e-8);
            let row = &mut self.table[id as usize * d..(id as usize + 1) * d];
            for (r, g) in row.iter_mut().zip(&grad) {
                *r -= step * g;
            }
        }
        for ((p, o), gp) in self
            .weights
            .parts_mut()
            .into_iter()
            .zip(self.opt.iter_mut())
            .zip(&g.parts)
        {
            o.step(p, gp, lr);
        }
        loss
    }

    fn decode(&self, row: &TagRow) -> Vec<usize> {
        let h = tagger::hidden(&row.feats, self.dim, |id| self.row(id));
        let em = tagger::emissions(&self.weights, &h);
        tagger::viterbi(&self.weights, &em, &self.cons)
    }
}

/// Span metrics of Viterbi decodes (validation during training).
fn quick_f1(model: &Trainee, tags: &TagSet, rows: &[TagRow]) -> f64 {
    let mut gold = Vec::with_capacity(rows.len());
    let mut pred = Vec::with_capacity(rows.len());
    for r in rows {
        pred.push(tags.decode(&r.ranges, &model.decode(r)));
        gold.push(r.spans.clone());
    }
    span_metrics(&gold, &pred).micro.f1
}

/// Metrics of a finished tagger on some rows: spans, exact match, intents.
pub fn evaluate(model: &tagger::Tagger, rows: &[TagRow]) -> (SpanMetrics, Option<f64>) {
    let mut gold = Vec::with_capacity(rows.len());
    let mut pred = Vec::with_capacity(rows.len());
    let (mut intent_ok, mut intent_rows) = (0usize, 0usize);
    for r in rows {
        let x = model.extract(&r.text);
        if let (Some((name, _)), Some(y)) = (&x.intent, r.intent) {
            intent_rows += 1;
            intent_ok += usize::from(model.meta.intents.get(y) == Some(name));
        }
        pred.push(x.spans());
        gold.push(r.spans.clone());
    }
    let joint = !model.meta.intents.is_empty();
    (
        span_metrics(&gold, &pred),
        joint.then(|| intent_ok as f64 / intent_rows.max(1) as f64),
    )
}

fn flatten(prefix: &str, m: &SpanMetrics, intent: Option<f64>, out: &mut BTreeMap<String, f64>) {
    out.insert(format!("{prefix}_span_f1"), m.micro.f1);
    out.insert(format!("{prefix}_span_precision"), m.micro.precision);
    out.insert(format!("{prefix}_span_recall"), m.micro.recall);
    out.insert(format!("{prefix}_exact_match"), m.exact_match);
    if let Some(a) = intent {
        out.insert(format!("{prefix}_intent_accuracy"), a);
    }
}

/// Train a tagger run (the `distill train` entry for `kind = "tagger"`).
pub fn train(req: TrainRequest) -> Result<TrainOutcome> {
    let mut config = req.config;
    config.validate().map_err(Error::Input)?;
    let ModelSpec::Tagger(spec) = config.model.clone() else {
        return Err(Error::Input("not a tagger config".into()));
    };
    if let Some(dir) = &req.resume {
        return Err(Error::Input(format!(
            "{}: a tagger run trains in one pass (seconds to a minute) and has no checkpoints to resume; start a new run",
            dir.display()
        )));
    }
    let loop_start = Instant::now();
    let data = load(&config, &req.base_dir, &spec)?;
    config.dataset = absolute(&data.dataset_path);
    if let Some(c) = &config.curate {
        config.curate = Some(absolute(&resolve(&req.base_dir, c)));
    }
    let seeds = Seeds::derive(config.seed);
    let tags = TagSet::new(data.slots.clone());
    let (run_id, run_dir) = run::create_run_dir(
        &req.experiments_dir,
        &config.name,
        config.seed,
        req.run_id.as_deref(),
    )?;
    let _lock = lock_run_dir(&run_dir)?;
    let toml = toml::to_string(&config)
        .map_err(|e| Error::Input(format!("serialising the resolved config: {e}")))?;
    distill_core::fsutil::write_atomic(&run_dir.join(run::CONFIG_FILE), |w| {
        w.write_all(toml.as_bytes())
    })?;
    if !data.rejects.is_empty() {
        distill_core::fsutil::write_jsonl_atomic(&run_dir.join("rejects.jsonl"), &data.rejects)?;
        eprintln!(
            "warning: {} rows rejected (their spans cannot become tags); see {}",
            data.rejects.len(),
            run_dir.join("rejects.jsonl").display()
        );
    }
    let mut counts = BTreeMap::new();
    counts.insert("train".to_string(), data.train.len());
    counts.insert("val".to_string(), data.val.len());
    counts.insert("test".to_string(), data.test.len());
    counts.insert("rejected".to_string(), data.rejects.len());
    counts.insert("snapped_spans".to_string(), data.snapped);
    counts.insert("slots".to_string(), data.slots.len());
    counts.insert("intents".to_string(), data.intents.len());
    if let Some(t) = &data.teacher {
        counts.insert("teacher".to_string(), t.rows);
        counts.insert("teacher_unaligned_values".to_string(), t.unaligned_values);
        counts.insert("teacher_partial_records".to_string(), t.partial_records);
        config.teacher = Some(absolute(&t.path));
    }
    let mut info = RunInfo::started(
        &config.name,
        &run_id,
        &seeds,
        "cpu (host)".into(),
        Task::Extract,
        "tagger",
        Lineage {
            dataset: data.dataset_path.display().to_string(),
            dataset_name: data.dataset_name.clone(),
            dataset_sha256: data.dataset_sha256.clone(),
            val_source: data.val_source.clone(),
            teacher: data.teacher.as_ref().map(|t| t.path.display().to_string()),
            teacher_sha256: data.teacher.as_ref().map(|t| t.sha256.clone()),
        },
        counts,
    );
    info.save(&run_dir)?;
    let outcome = train_loop(
        &config,
        &spec,
        &data,
        &tags,
        &seeds,
        &run_dir,
        &mut info,
        req.interactive,
    );
    info.loop_seconds = loop_start.elapsed().as_secs_f64();
    match outcome {
        Ok(()) => {
            info.status = Status::Completed;
            info.finished_at = Some(run::utc_stamp(std::time::SystemTime::now()));
            info.save(&run_dir)?;
            Ok(TrainOutcome { run_dir, info })
        }
        Err(e) => {
            info.status = Status::Failed;
            info.error = Some(e.to_string());
            info.save(&run_dir)?;
            Err(e)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn train_loop(
    config: &ExperimentConfig,
    spec: &TaggerSpec,
    data: &TagData,
    tags: &TagSet,
    seeds: &Seeds,
    run_dir: &Path,
    info: &mut RunInfo,
    interactive: bool,
) -> Result<()> {
    let mut model = Trainee::new(spec, tags, data.intents.len(), seeds.init);
    let lr = config.train.lr as f32;
    let mut best: Option<(f64, usize, Vec<f32>, Weights)> = None;
    let mut since_best = 0;
    let mut order: Vec<usize> = (0..data.train.len()).collect();
    let mut train_seconds = 0.0;
    let dropout = spec.feature_dropout;
    let epochs = config.train.epochs;
    let mut progress =
        crate::progress::Progress::new(interactive, (epochs * data.train.len()) as u64, 0);
    let mut feats_buf: Vec<Vec<u32>> = Vec::new();
    for epoch in 0..config.train.epochs {
        let t0 = Instant::now();
        let mut rng = SplitMix64(seeds.shuffle ^ (epoch as u64).wrapping_mul(0x9E37_79B9));
        for i in (1..order.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        let mut drng = SplitMix64(seeds.dropout ^ epoch as u64);
        let steps_before = info.steps;
        let mut loss = 0.0;
        let max_steps = config.train.max_steps.map_or(u64::MAX, |m| m as u64);
        for &ri in &order {
            if info.steps >= max_steps {
                break;
            }
            let row = &data.train[ri];
            let feats: &[Vec<u32>] = if dropout > 0.0 {
                feats_buf.clear();
                for f in &row.feats {
                    feats_buf.push(
                        f.iter()
                            .copied()
                            .filter(|_| drng.next_f64() >= dropout)
                            .collect(),
                    );
                }
                &feats_buf
            } else {
                &row.feats
            };
            loss += model.step(feats, &row.tags, row.intent, lr);
            info.steps += 1;
            if info.steps.is_multiple_of(512) {
                let n = info.steps as f64;
                progress.step(
                    info.steps,
                    epoch,
                    epochs,
                    loss / n.max(1.0),
                    lr as f64,
                    n / (train_seconds + t0.elapsed().as_secs_f64()).max(1e-9),
                );
            }
            if !loss.is_finite() {
                return Err(Error::Input(format!(
                    "training diverged at epoch {} (loss {loss}); lower train.lr",
                    epoch + 1
                )));
            }
        }
        train_seconds += t0.elapsed().as_secs_f64();
        info.epochs = epoch + 1;
        let f1 = quick_f1(&model, tags, &data.val);
        let mean_loss = loss / (info.steps - steps_before).max(1) as f64;
        run::append_metrics(
            run_dir,
            &json!({"epoch": epoch + 1, "train_loss": mean_loss, "val_span_f1": f1, "seconds": t0.elapsed().as_secs_f64()}),
        )?;
        progress.line(&format!(
            "epoch {}/{epochs}: train loss {mean_loss:.4}, val span F1 {f1:.4}",
            epoch + 1
        ));
        let last = info.steps >= max_steps;
        if best.as_ref().is_none_or(|b| f1 > b.0) {
            best = Some((f1, epoch + 1, model.table.clone(), model.weights.clone()));
            since_best = 0;
        } else {
            since_best += 1;
            if config.train.patience > 0 && since_best >= config.train.patience {
                break;
            }
        }
        if last {
            break;
        }
    }
    progress.finish();
    info.train_seconds = train_seconds;
    let Some((_, best_epoch, table, weights)) = best else {
        return Err(Error::Input(
            "no epoch was trained (train.epochs = 0)".into(),
        ));
    };
    info.best_epoch = Some(best_epoch);
    let meta = TaggerMeta {
        format: tagger::FORMAT.into(),
        version: 1,
        spec: spec.clone(),
        slots: data.slots.clone(),
        intents: data.intents.clone(),
        weights_sha256: String::new(),
        weights_bytes: 0,
        dtype: Dtype::F32,
        rows: 0,
        threshold: None,
        metrics: BTreeMap::new(),
    };
    let mut finished = tagger::Tagger::from_dense(meta, &table, weights);
    drop(table);
    let mut metrics = BTreeMap::new();
    let t0 = Instant::now();
    let (vm, vi) = evaluate(&finished, &data.val);
    let per_s = data.val.len() as f64 / t0.elapsed().as_secs_f64().max(1e-9);
    flatten("val", &vm, vi, &mut metrics);
    if !data.test.is_empty() {
        let (tm, ti) = evaluate(&finished, &data.test);
        flatten("test", &tm, ti, &mut metrics);
    }
    metrics.insert("examples_per_s".into(), per_s);
    metrics.insert(
        "train_examples_per_s".into(),
        info.steps as f64 / train_seconds.max(1e-9),
    );
    finished.meta.metrics = metrics.clone();
    let model_dir = run_dir.join(run::MODEL_DIR);
    info.model_bytes = finished.save(&model_dir, Dtype::F32)?;
    info.params = finished.meta.rows * spec.dim
        + finished
            .weights
            .parts()
            .iter()
            .map(|p| p.len())
            .sum::<usize>();
    info.metrics = metrics;
    Ok(())
}
