//! Run a suite on a trained run: predictions, metrics, calibration,
//! operating points, out-of-scope, cascade, latency, gates; then the report
//! files under `<run>/eval/<suite>/`.

use crate::calibrate::{self, CALIBRATION_FILE, Calibration};
use crate::error::{Error, Result};
use crate::plots;
use crate::select;
use crate::stats;
use crate::suite::{Case, Gate, Suite};
use distill_core::config::ConfigSource;
use distill_core::types::Task;
use distill_model::artifact::Predictor;
use distill_model::device::DeviceKind;
use distill_train::config::ExperimentConfig;
use distill_train::data::{Gold, Row, TrainData, resolve};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub struct EvalRequest {
    pub run: PathBuf,
    pub suite: Suite,
    /// Directory of the suite file (relative paths resolve from here).
    pub suite_base: PathBuf,
    pub device: DeviceKind,
}

pub use distill_core::escalation::{CaseReport, SuiteReport};
use distill_core::escalation::{Certificate, OperatingPoint, Rule};

fn is_bundle(run: &Path) -> bool {
    run.join(distill_export::bundle::BUNDLE_FILE).is_file()
}

fn model_dir(run: &Path) -> Result<PathBuf> {
    if is_bundle(run) {
        return Ok(run.to_path_buf());
    }
    let dir = run.join(distill_train::run::MODEL_DIR);
    if dir.join("model.json").is_file() {
        return Ok(dir);
    }
    Err(Error::Input(format!(
        "{}: no trained model (expected {}/model.json); is the run finished? (`distill train --resume {}`)",
        run.display(),
        dir.display(),
        run.display()
    )))
}

/// The run's (or bundle's) config file; an error when there is none.
fn config_path(run: &Path) -> Result<PathBuf> {
    let path = if is_bundle(run) {
        run.join(distill_export::bundle::CONFIG_FILE)
    } else {
        run.join(distill_train::run::CONFIG_FILE)
    };
    if !path.is_file() {
        return Err(Error::Input(format!(
            "{}: not a run directory (no {})",
            run.display(),
            distill_train::run::CONFIG_FILE
        )));
    }
    Ok(path)
}

fn run_config(run: &Path) -> Result<ExperimentConfig> {
    let path = config_path(run)?;
    if is_bundle(run) {
        // A bundle's config is data from elsewhere: it may not pull in other
        // files (`extends` could name anything on this machine).
        let bytes = distill_core::fsutil::read_bounded(&path, 1 << 20)?;
        let table: toml::Table = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|t| toml::from_str(t).ok())
            .ok_or_else(|| Error::Input(format!("{}: not valid TOML", path.display())))?;
        if table.contains_key("extends") {
            return Err(Error::Input(format!(
                "{}: a bundle's config may not use `extends`",
                path.display()
            )));
        }
    }
    Ok(ConfigSource::load(&path)?.deserialize()?)
}

/// Top-1 index and probability.
fn top1(p: &[f64]) -> (usize, f64) {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, &v) in p.iter().enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best
}

/// Mean `cost` per uncached successful call in a teacher log (0 for local
/// teachers and plain soft-label files), read with the one teacher-log reader.
fn teacher_cost_per_call(path: &Path) -> Result<f64> {
    let log =
        distill_core::teacher_log::read_log_lines(&distill_core::teacher_log::log_file(path))?;
    let (mut sum, mut n) = (0.0, 0u64);
    for r in log.records.iter().filter(|r| !r.cached && !r.failed()) {
        sum += r.cost;
        n += 1;
    }
    Ok(if n == 0 { 0.0 } else { sum / n as f64 })
}

/// Single-example latencies in ms over the first `n` texts (featurize +
/// forward + activation, the model already loaded), sorted; `warmup`
/// untimed predictions first.
pub fn single_latencies_ms(
    predictor: &Predictor,
    texts: &[&str],
    n: usize,
    warmup: usize,
) -> Vec<f64> {
    for t in texts.iter().take(warmup) {
        let _ = predictor.predict_proba(std::slice::from_ref(t), 1);
    }
    let mut lat: Vec<f64> = texts
        .iter()
        .take(n)
        .map(|t| {
            let s = Instant::now();
            let _ = predictor.predict_proba(std::slice::from_ref(t), 1);
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    lat
}

/// The `q` quantile of sorted values (nearest rank); 0 when empty.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

pub fn evaluate(req: &EvalRequest) -> Result<SuiteReport> {
    let started = Instant::now();
    req.suite.validate()?;
    config_path(&req.run)?;
    let mdir = model_dir(&req.run)?;
    // Reports go into the run (or bundle): hold its lock while writing.
    let _lock = distill_core::lock::DirLock::acquire(&req.run, "distill eval")?;
    // A bundle loads through its one predictor (verified, its preprocessing
    // and featurizer) before anything else in it is read; a run through its
    // model directory.
    let (bundle_predictor, run_predictor);
    let predictor: &Predictor = if is_bundle(&req.run) {
        bundle_predictor = distill_export::BundlePredictor::load(&req.run, req.device)
            .map_err(|e| Error::Input(e.to_string()))?;
        bundle_predictor.model()
    } else {
        run_predictor = Predictor::load(&mdir, req.device)?;
        &run_predictor
    };
    let run_cfg = run_config(&req.run)?;
    let weights_bytes = std::fs::metadata(mdir.join("weights.bpk"))
        .map(|m| m.len())
        .unwrap_or(0);
    let out = req.run.join("eval").join(&req.suite.name);
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let mut cases = Vec::new();
    let mut predictions: Vec<Value> = Vec::new();
    for case in &req.suite.cases {
        let (report, preds) = evaluate_case(req, case, &run_cfg, predictor, weights_bytes, &out)?;
        predictions.extend(preds);
        cases.push(report);
    }
    let passed = cases.iter().all(|c| c.gates.iter().all(|g| g.passed));
    let report = SuiteReport {
        suite: req.suite.name.clone(),
        run: req.run.display().to_string(),
        experiment: run_cfg.name.clone(),
        model_kind: run_cfg.model.kind().to_string(),
        task: predictor.meta.task,
        threads: rayon::current_num_threads(),
        cases,
        passed,
        seconds: started.elapsed().as_secs_f64(),
        out: out.clone(),
    };
    distill_core::fsutil::write_jsonl_atomic(&out.join("predictions.jsonl"), &predictions)?;
    distill_core::fsutil::write_json_atomic(&out.join("report.json"), &report)?;
    let md = crate::report::markdown(&report, &req.suite);
    distill_core::fsutil::write_atomic(&out.join("report.md"), |w| w.write_all(md.as_bytes()))?;
    Ok(report)
}

fn evaluate_case(
    req: &EvalRequest,
    case: &Case,
    run_cfg: &ExperimentConfig,
    predictor: &Predictor,
    weights_bytes: u64,
    out: &Path,
) -> Result<(CaseReport, Vec<Value>)> {
    // Suite paths resolve from the suite file; the run's config holds absolute paths.
    let from_suite = |p: &PathBuf| {
        let r = resolve(&req.suite_base, p);
        std::path::absolute(&r).unwrap_or(r)
    };
    let mut cfg = run_cfg.clone();
    if let Some(d) = &case.dataset {
        cfg.dataset = from_suite(d);
        cfg.curate = case.curate.as_ref().map(from_suite);
    } else if let Some(c) = &case.curate {
        cfg.curate = Some(from_suite(c));
    }
    cfg.teacher = case.teacher.as_ref().map(from_suite);
    let data = TrainData::load(&cfg, &req.run)
        .map_err(|e| Error::Input(format!("case `{}`: {e}", case.name)))?;
    let labels = &predictor.meta.labels;
    if &data.info.labels != labels {
        let missing: Vec<&String> = data
            .info
            .labels
            .iter()
            .filter(|l| !labels.contains(l))
            .collect();
        let extra: Vec<&String> = labels
            .iter()
            .filter(|l| !data.info.labels.contains(l))
            .collect();
        return Err(Error::Input(format!(
            "case `{}`: the label set of {} differs from the run's ({} vs {} labels; not in the model: {:?}; not in the dataset: {:?})",
            case.name,
            data.info.path.display(),
            data.info.labels.len(),
            labels.len(),
            missing.iter().take(5).collect::<Vec<_>>(),
            extra.iter().take(5).collect::<Vec<_>>()
        )));
    }
    let rows: Vec<&Row> = match case.split.as_str() {
        "val" => data.val.iter(),
        "train" => data.train.iter(),
        _ => data.test.iter(),
    }
    .filter(|r| r.gold != Gold::None)
    .collect();
    if rows.is_empty() {
        return Err(Error::Input(format!(
            "case `{}`: split `{}` of {} has no labelled rows",
            case.name,
            case.split,
            data.info.path.display()
        )));
    }
    let task = predictor.meta.task;
    let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
    let t0 = Instant::now();
    let probs = predictor.predict_proba_from(&texts, &data.info.preprocess, 256);
    let batch_s = t0.elapsed().as_secs_f64();
    let mut metrics: BTreeMap<String, f64> = BTreeMap::new();
    metrics.insert("n".into(), rows.len() as f64);
    metrics.insert("params".into(), predictor.meta.params as f64);
    metrics.insert("model_bytes".into(), weights_bytes as f64);
    metrics.insert(
        "throughput_rows_per_s".into(),
        rows.len() as f64 / batch_s.max(1e-9),
    );
    let mut details = json!({});
    let mut plots_written = Vec::new();
    let mut operating_points = Vec::new();
    let mut preds_out = Vec::with_capacity(rows.len());
    let file_prefix = if req.suite.cases.len() > 1 {
        format!("{}-", case.name)
    } else {
        String::new()
    };

    if case.latency {
        let n = rows.len().min(200);
        let lat = single_latencies_ms(predictor, &texts, n, 0);
        metrics.insert("latency_p50_ms".into(), percentile(&lat, 0.5));
        metrics.insert("latency_p95_ms".into(), percentile(&lat, 0.95));
        metrics.insert("latency_p99_ms".into(), percentile(&lat, 0.99));
        details["latency"] = json!({"single_example_rows": n, "batch_size": 256, "threads": rayon::current_num_threads()});
    }

    match task {
        Task::Multilabel => {
            let gold: Vec<Vec<bool>> = rows
                .iter()
                .map(|r| match &r.gold {
                    Gold::Multi(v) => v.iter().map(|&x| x > 0.5).collect(),
                    _ => vec![false; labels.len()],
                })
                .collect();
            let pred: Vec<Vec<bool>> = probs
                .iter()
                .map(|p| p.iter().map(|&x| x >= 0.5).collect())
                .collect();
            let r = stats::multi_report(&gold, &pred, labels);
            metrics.insert("micro_f1".into(), r.micro_f1);
            metrics.insert("macro_f1".into(), r.macro_f1);
            metrics.insert("exact_match".into(), r.exact_match);
            metrics.insert("accuracy".into(), r.exact_match);
            for (row, (p, pr)) in rows.iter().zip(probs.iter().zip(&pred)) {
                let chosen: Vec<&String> = labels
                    .iter()
                    .zip(pr)
                    .filter(|(_, on)| **on)
                    .map(|(l, _)| l)
                    .collect();
                let gold: Vec<&String> = match &row.gold {
                    Gold::Multi(v) => labels
                        .iter()
                        .zip(v)
                        .filter(|(_, x)| **x > 0.5)
                        .map(|(l, _)| l)
                        .collect(),
                    _ => Vec::new(),
                };
                let probs: BTreeMap<&String, f32> = labels
                    .iter()
                    .zip(p.iter().copied())
                    .filter(|(_, x)| *x >= 0.05)
                    .collect();
                preds_out.push(json!({"case": case.name, "id": row.id, "gold": gold, "predicted": chosen, "probs": probs}));
            }
            details["per_label"] = json!(r.per_label);
        }
        _ => {
            // Calibration on the validation split of the same data.
            let val_rows: Vec<&Row> = data
                .val
                .iter()
                .filter(|r| matches!(r.gold, Gold::Class(_)))
                .collect();
            let val_texts: Vec<&str> = val_rows.iter().map(|r| r.text.as_str()).collect();
            let val_probs = predictor.predict_proba_from(&val_texts, &data.info.preprocess, 256);
            let val_gold: Vec<usize> = val_rows.iter().map(|r| gold_class(r)).collect();
            let calibration: Option<Calibration> = if case.calibrate && !val_rows.is_empty() {
                let c = calibrate::fit(&val_probs, &val_gold, &data.val_source);
                // Stored with runs (export reads it); a bundle carries its own.
                if !is_bundle(&req.run) {
                    distill_core::fsutil::write_json_atomic(&req.run.join(CALIBRATION_FILE), &c)?;
                }
                Some(c)
            } else {
                None
            };
            let t = calibration.as_ref().map(|c| c.temperature).unwrap_or(1.0);
            let gold: Vec<usize> = rows.iter().map(|r| gold_class(r)).collect();
            let raw: Vec<Vec<f64>> = probs
                .iter()
                .map(|p| p.iter().map(|&x| f64::from(x)).collect())
                .collect();
            let scaled: Vec<Vec<f64>> = probs.iter().map(|p| calibrate::apply(p, t)).collect();
            let pred: Vec<usize> = raw.iter().map(|p| top1(p).0).collect();
            let conf_raw: Vec<f64> = raw.iter().map(|p| top1(p).1).collect();
            let conf: Vec<f64> = scaled.iter().map(|p| top1(p).1).collect();
            let correct: Vec<bool> = gold.iter().zip(&pred).map(|(g, p)| g == p).collect();
            let r = stats::class_report(&gold, &pred, labels);
            metrics.insert("accuracy".into(), r.accuracy);
            metrics.insert("macro_f1".into(), r.macro_f1);
            metrics.insert("weighted_f1".into(), r.weighted_f1);
            let (ece_raw, bins_raw) = stats::ece(&conf_raw, &correct, 15);
            metrics.insert("ece".into(), ece_raw);
            let (ece_cal, bins_cal) = stats::ece(&conf, &correct, 15);
            if let Some(c) = &calibration {
                metrics.insert("ece_calibrated".into(), ece_cal);
                metrics.insert("temperature".into(), c.temperature);
            }
            let (curve, aurc) = stats::risk_coverage(&conf, &correct);
            metrics.insert("aurc".into(), aurc);

            // Operating points: thresholds certified on validation, applied to this split.
            let (val_conf, val_correct): (Vec<f64>, Vec<bool>) = val_probs
                .iter()
                .zip(&val_gold)
                .map(|(p, &g)| {
                    let (i, c) = top1(&calibrate::apply(p, t));
                    (c, i == g)
                })
                .unzip();
            let mut first_threshold: Option<f64> = None;
            let mut marks = Vec::new();
            // Ascending targets: every table and plot follows this order, and
            // the first certified one sets the predictions' threshold.
            let mut targets = case.targets.clone();
            targets.sort_by(f64::total_cmp);
            targets.dedup();
            for &target in &targets {
                let choice = select::choose(&val_conf, &val_correct, target, case.delta);
                let key = format!("{target}");
                match &choice {
                    Some(c) => {
                        let (cov, acc, handled) = select::apply(&conf, &correct, c.threshold);
                        metrics.insert(format!("coverage@{key}"), cov);
                        if let Some(a) = acc {
                            metrics.insert(format!("accuracy@{key}"), a);
                        }
                        if first_threshold.is_none() {
                            first_threshold = Some(c.threshold);
                        }
                        marks.push((
                            cov,
                            1.0 - acc.unwrap_or(1.0),
                            format!("{:.0}%", target * 100.0),
                        ));
                        operating_points.push(OperatingPoint {
                            target_accuracy: target,
                            delta: case.delta,
                            threshold: Some(c.threshold),
                            temperature: t,
                            val: Some(Certificate {
                                coverage: c.coverage,
                                accuracy: c.accuracy,
                                handled: c.handled,
                                error_upper: c.error_upper,
                            }),
                            coverage: cov,
                            accuracy: acc,
                            handled: Some(handled),
                            note: None,
                        });
                    }
                    None => {
                        metrics.insert(format!("coverage@{key}"), 0.0);
                        operating_points.push(OperatingPoint {
                            target_accuracy: target,
                            delta: case.delta,
                            threshold: None,
                            temperature: t,
                            val: None,
                            coverage: 0.0,
                            accuracy: None,
                            handled: None,
                            note: Some(
                                "not certifiable on the validation split: everything escalates"
                                    .into(),
                            ),
                        });
                    }
                }
            }
            details["threshold_method"] = json!(format!(
                "one-sided Clopper-Pearson bounds at level 1-delta/{g} (Bonferroni) over {g} candidate thresholds at 5% coverage steps; the certified candidate with the largest coverage; chosen on the validation split, applied to this split. Caveat: the same validation rows also chose the training run's best epoch and fitted the temperature, so the bound is optimistic by that selection; for a strict guarantee, evaluate with a validation split the run never saw",
                g = select::GRID
            ));

            // Out of scope.
            let oos = case
                .oos_label
                .as_ref()
                .map(|l| {
                    labels.iter().position(|x| x == l).ok_or_else(|| {
                        Error::Input(format!(
                            "case `{}`: oos-label `{l}` is not a label of the dataset",
                            case.name
                        ))
                    })
                })
                .transpose()?;
            if let Some(o) = oos {
                let in_scope: Vec<bool> = gold.iter().map(|&g| g != o).collect();
                if let Some(a) = stats::auroc(&conf, &in_scope) {
                    metrics.insert("oos_auroc".into(), a);
                }
                let (mut n_in, mut ok_in) = (0u64, 0u64);
                for i in 0..gold.len() {
                    if in_scope[i] {
                        n_in += 1;
                        ok_in += u64::from(correct[i]);
                    }
                }
                metrics.insert(
                    "in_scope_accuracy".into(),
                    ok_in as f64 / n_in.max(1) as f64,
                );
                let n_oos = gold.iter().filter(|&&g| g == o).count();
                if n_oos > 0 {
                    let caught = (0..gold.len())
                        .filter(|&i| {
                            gold[i] == o
                                && (pred[i] == o || first_threshold.is_some_and(|t| conf[i] < t))
                        })
                        .count();
                    metrics.insert("oos_recall".into(), caught as f64 / n_oos as f64);
                    // Per target: the out-of-scope rows predicted `oos` or
                    // escalated at that target's threshold.
                    for op in &operating_points {
                        let Some(th) = op.threshold else { continue };
                        let caught = (0..gold.len())
                            .filter(|&i| gold[i] == o && (pred[i] == o || conf[i] < th))
                            .count();
                        metrics.insert(
                            format!("oos_recall@{}", op.target_accuracy),
                            caught as f64 / n_oos as f64,
                        );
                    }
                    let predicted = (0..gold.len())
                        .filter(|&i| gold[i] == o && pred[i] == o)
                        .count();
                    metrics.insert(
                        "oos_recall_predicted".into(),
                        predicted as f64 / n_oos as f64,
                    );
                }
            }

            // Teacher agreement and the simulated cascade.
            let teacher_top: Vec<Option<usize>> = rows
                .iter()
                .map(|r| {
                    r.teacher.as_ref().map(|p| {
                        let v: Vec<f64> = p.iter().map(|&x| f64::from(x)).collect();
                        top1(&v).0
                    })
                })
                .collect();
            let with_teacher = teacher_top.iter().filter(|t| t.is_some()).count();
            if with_teacher > 0 {
                let agree = (0..rows.len())
                    .filter(|&i| teacher_top[i] == Some(pred[i]))
                    .count();
                metrics.insert(
                    "teacher_agreement".into(),
                    agree as f64 / with_teacher as f64,
                );
                let teacher_ok = (0..rows.len())
                    .filter(|&i| teacher_top[i] == Some(gold[i]))
                    .count();
                metrics.insert(
                    "teacher_accuracy".into(),
                    teacher_ok as f64 / with_teacher as f64,
                );
                let cost = cfg
                    .teacher
                    .as_deref()
                    .map(teacher_cost_per_call)
                    .transpose()?
                    .unwrap_or(0.0);
                let mut cascade = Vec::new();
                for op in &operating_points {
                    let Some(th) = op.threshold else {
                        continue;
                    };
                    let (mut n, mut ok, mut local) = (0u64, 0u64, 0u64);
                    for i in 0..rows.len() {
                        let Some(tt) = teacher_top[i] else { continue };
                        n += 1;
                        let answer = if conf[i] >= th {
                            local += 1;
                            pred[i]
                        } else {
                            tt
                        };
                        ok += u64::from(answer == gold[i]);
                    }
                    let local_share = local as f64 / n.max(1) as f64;
                    let target = op.target_accuracy;
                    metrics.insert(
                        format!("cascade_accuracy@{target}"),
                        ok as f64 / n.max(1) as f64,
                    );
                    metrics.insert(format!("local_share@{target}"), local_share);
                    cascade.push(json!({
                        "target_accuracy": target, "threshold": th, "rows": n,
                        "accuracy": ok as f64 / n.max(1) as f64, "local_share": local_share,
                        "teacher_calls": n - local, "teacher_calls_saved": local,
                        "cost_all_teacher": cost * n as f64, "cost_cascade": cost * (n - local) as f64,
                        "cost_saved": cost * local as f64,
                    }));
                }
                details["cascade"] = json!({"teacher_cost_per_call": cost, "rows_with_teacher": with_teacher, "points": cascade});
            }

            // Predictions.
            // The same rule every predictor applies (distill-core).
            let rule = Rule {
                temperature: t,
                threshold: first_threshold,
                top_k: 5,
                always_escalate: oos,
            };
            for (i, row) in rows.iter().enumerate() {
                let d = rule.decide(&probs[i]);
                let top: Vec<(String, f64)> =
                    d.top.iter().map(|&(j, p)| (labels[j].clone(), p)).collect();
                preds_out.push(json!({
                    "case": case.name, "id": row.id, "gold": labels[gold[i]], "predicted": labels[d.label],
                    "confidence": d.confidence, "top": top,
                    "escalate": d.escalate,
                }));
            }

            // Plots.
            let rel = plots::reliability(
                if calibration.is_some() {
                    &bins_cal
                } else {
                    &bins_raw
                },
                ece_raw,
                calibration.as_ref().map(|_| ece_cal),
            );
            let rc = plots::risk_coverage(&curve, aurc, &marks);
            let confusions = stats::top_confusions(&r.confusion, 12);
            let mut top_labels: Vec<usize> = Vec::new();
            for &(g, p, _) in &confusions {
                for l in [g, p] {
                    if !top_labels.contains(&l) && top_labels.len() < 12 {
                        top_labels.push(l);
                    }
                }
            }
            top_labels.sort_unstable();
            let cm = plots::confusion(&r.confusion, labels, &top_labels);
            for (name, svg) in [
                ("reliability.svg", rel),
                ("risk_coverage.svg", rc),
                ("confusion.svg", cm),
            ] {
                let file = format!("{file_prefix}{name}");
                distill_core::fsutil::write_atomic(&out.join(&file), |w| {
                    w.write_all(svg.as_bytes())
                })?;
                plots_written.push(file);
            }
            details["calibration"] = json!(calibration);
            details["reliability"] = json!(if calibration.is_some() {
                bins_cal
            } else {
                bins_raw
            });
            details["risk_coverage"] = json!(
                curve
                    .iter()
                    .step_by((curve.len() / 200).max(1))
                    .collect::<Vec<_>>()
            );
            details["top_confusions"] =
                json!(confusions
                .iter()
                .map(|&(g, p, c)| json!({"gold": labels[g], "predicted": labels[p], "count": c}))
                .collect::<Vec<_>>());
            details["per_label"] = json!(r.per_label);
        }
    }
    let mut gates = Vec::new();
    for g in &case.gates {
        gates.push(Gate::parse(g)?.check(g, &metrics)?);
    }
    Ok((
        CaseReport {
            name: case.name.clone(),
            dataset: data.info.path.display().to_string(),
            split: case.split.clone(),
            n: rows.len(),
            metrics,
            operating_points,
            gates,
            details,
            plots: plots_written,
        },
        preds_out,
    ))
}

fn gold_class(r: &Row) -> usize {
    match r.gold {
        Gold::Class(i) => i,
        _ => 0,
    }
}
