//! `distill tune`: search a bag's hyperparameters under a bundle-size budget.
//!
//! Successive halving over seeded random configurations: every trial
//! trains for a short rung of epochs and is exported as a pruned int8 burn
//! bundle that fits `--budget-bytes` (`export --max-bytes`); the best third
//! by the validation metric of that *bundle* (pruned and quantised, as it
//! would ship) go on to a rung three times longer, until one is left. Test
//! is never used to choose. Training runs get deterministic ids from their
//! resolved config (as `distill sweep`), bundles are kept per run, and
//! every scored trial is a line of `tune.jsonl`: a rerun with the same
//! arguments skips what is done and resumes what was cut off.

use crate::CmdResult;
use anyhow::{Context, bail};
use clap::Args;
use distill_eval::sweep::{self, SweepRequest};
use distill_export::bundle::{ExportRequest, Format, Prune, Quantize, export};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct TuneArgs {
    /// A bag experiment config (the starting point; its seed drives the search).
    config: PathBuf,
    /// The largest bundle (every file but verify.jsonl): 500KB, 1MB, bytes.
    #[arg(long, value_parser = crate::export::parse_budget)]
    budget_bytes: u64,
    /// Configurations in the first rung: the config as written, then
    /// seeded samples.
    #[arg(long, default_value_t = 27)]
    trials: usize,
    /// Stop starting trials after this long (e.g. 10m, 90s, 1h); the best
    /// finished one wins.
    #[arg(long, value_parser = parse_duration)]
    time: Option<Duration>,
    /// val_accuracy or val_macro_f1 (of the pruned, quantised bundle).
    #[arg(long, default_value = "val_accuracy")]
    metric: String,
    /// Epochs of the last rung (earlier rungs: a third, a ninth, ...).
    #[arg(long, default_value_t = 18)]
    max_epochs: usize,
    /// Search seed (default: the config's seed).
    #[arg(long)]
    seed: Option<u64>,
    /// Where runs, bundles, tune.jsonl and pareto.svg go.
    #[arg(long, default_value = "experiments/tune")]
    out: PathBuf,
}

/// `90s`, `10m`, `1h`, or seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('s') => (&t[..t.len() - 1], 1.0),
        Some('m') => (&t[..t.len() - 1], 60.0),
        Some('h') => (&t[..t.len() - 1], 3600.0),
        _ => (t, 1.0),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (90s, 10m, 1h)"))?;
    if !(v > 0.0 && v * mult < 1e7) {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(v * mult))
}

/// One sampled configuration: `--set` overrides of the searched keys.
fn sample(seed: u64, trial: usize) -> Vec<String> {
    let u = |key: &str| {
        let x = distill_core::hash::seeded_u64(seed, &format!("tune/{trial}/{key}"));
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    let pick = |key: &str, options: &[&str]| -> String {
        let i = ((u(key) * options.len() as f64) as usize).min(options.len() - 1);
        format!("{key}={}", options[i])
    };
    let log_uniform = |key: &str, lo: f64, hi: f64| -> String {
        let v = (lo.ln() + u(key) * (hi.ln() - lo.ln())).exp();
        format!("{key}={v:.4e}")
    };
    vec![
        pick("model.dim", &["16", "24", "32", "48", "64"]),
        pick("model.buckets", &["16384", "32768", "65536", "131072"]),
        pick("model.word-ngrams", &["1", "2", "3"]),
        pick("model.char-ngrams", &["[3,5]", "[2,5]", "[3,6]", "[4,6]"]),
        log_uniform("train.lr", 3e-3, 3e-2),
        "train.sparse-optimizer=\"rowwise-adagrad\"".to_string(),
        log_uniform("train.sparse-lr", 0.1, 1.0),
    ]
}

struct Scored {
    trial: usize,
    rung: usize,
    overrides: Vec<String>,
    epochs: usize,
    run_dir: PathBuf,
    bundle: PathBuf,
    bytes: u64,
    value: f64,
    rows: f64,
}

pub fn run(args: TuneArgs) -> CmdResult {
    Ok(run_inner(args)?)
}

fn run_inner(args: TuneArgs) -> anyhow::Result<()> {
    if !matches!(args.metric.as_str(), "val_accuracy" | "val_macro_f1") {
        bail!("--metric {}: use val_accuracy or val_macro_f1", args.metric);
    }
    if args.trials == 0 || args.max_epochs == 0 {
        bail!("--trials and --max-epochs must be at least 1");
    }
    let base_source = distill_core::config::ConfigSource::load(&args.config)?;
    let base: distill_train::config::ExperimentConfig = base_source.deserialize()?;
    if !matches!(base.model, distill_model::spec::ModelSpec::Bag(_)) {
        bail!(
            "{}: distill tune searches a bag's settings; this config's model is not a bag",
            args.config.display()
        );
    }
    let seed = args.seed.unwrap_or(base.seed);
    std::fs::create_dir_all(&args.out).with_context(|| args.out.display().to_string())?;
    let _lock = distill_core::lock::DirLock::acquire(&args.out, "distill tune")?;
    let log_path = args.out.join("tune.jsonl");
    let done = read_log(&log_path)?;
    let started = Instant::now();
    let out_of_time = || args.time.is_some_and(|t| started.elapsed() >= t);

    // Rungs: n, n/3, n/9, ... trials at E/3^k epochs, ending at max_epochs.
    let mut rungs = 1usize;
    while args.trials.div_ceil(3usize.pow(rungs as u32)) > 1 && rungs < 6 {
        rungs += 1;
    }
    // Trial 0 is the config as written: the search can only improve on it.
    let mut alive: Vec<(usize, Vec<String>)> = (0..args.trials)
        .map(|t| (t, if t == 0 { Vec::new() } else { sample(seed, t) }))
        .collect();
    let mut all: Vec<Scored> = Vec::new();
    eprintln!(
        "tune: {} trials, {rungs} rungs of successive halving, budget {} bytes, metric {} (search seed {seed})",
        args.trials, args.budget_bytes, args.metric
    );
    for rung in 0..rungs {
        let epochs = (args.max_epochs / 3usize.pow((rungs - 1 - rung) as u32)).max(1);
        let mut scored: Vec<Scored> = Vec::new();
        for (trial, overrides) in &alive {
            if out_of_time() {
                eprintln!("tune: --time reached; stopping before trial {trial} of rung {rung}");
                break;
            }
            let s = run_trial(&args, *trial, rung, overrides, epochs, &done, &log_path)?;
            eprintln!(
                "rung {rung} ({epochs} ep) trial {trial}: {} {:.4}, {} bytes, {} rows  [{}]",
                args.metric,
                s.value,
                s.bytes,
                s.rows,
                overrides.join(" ")
            );
            scored.push(s);
        }
        scored.sort_by(better);
        let keep = scored.len().div_ceil(3).max(1);
        alive = scored
            .iter()
            .take(keep)
            .map(|s| (s.trial, s.overrides.clone()))
            .collect();
        all.extend(scored);
        if out_of_time() || alive.len() <= 1 && rung + 1 < rungs && epochs >= args.max_epochs {
            break;
        }
    }
    if all.is_empty() {
        bail!("no trial finished (is --time too short?)");
    }
    // The winner: the best of the deepest rung reached.
    let deepest = all.iter().map(|s| s.rung).max().unwrap_or(0);
    let best = all
        .iter()
        .filter(|s| s.rung == deepest)
        .min_by(|a, b| better(a, b))
        .context("no trial")?;
    let points: Vec<(String, f64, f64)> = all
        .iter()
        .map(|s| (format!("t{}r{}", s.trial, s.rung), s.bytes as f64, s.value))
        .collect();
    let svg = distill_eval::plots::pareto(&args.metric, &points, &[], "");
    distill_core::fsutil::write_atomic(&args.out.join("pareto.svg"), |w| {
        std::io::Write::write_all(w, svg.as_bytes())
    })?;
    let mut rows: Vec<&Scored> = all.iter().collect();
    rows.sort_by(|a, b| b.rung.cmp(&a.rung).then(b.value.total_cmp(&a.value)));
    crate::out::println(format!(
        "| trial | rung | epochs | {} | bundle bytes | rows kept | settings |",
        args.metric
    ))?;
    crate::out::println("|---|---|---|---|---|---|---|")?;
    for s in rows {
        crate::out::println(format!(
            "| {} | {} | {} | {:.4} | {} | {} | {} |",
            s.trial,
            s.rung,
            s.epochs,
            s.value,
            s.bytes,
            s.rows,
            if s.overrides.is_empty() {
                "(the config as written)".to_string()
            } else {
                s.overrides
                    .iter()
                    .filter(|o| !o.starts_with("train.sparse-optimizer"))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        ))?;
    }
    eprintln!(
        "best: trial {} ({} {:.4}, {} bytes) after {:.0} s; pareto plot {}",
        best.trial,
        args.metric,
        best.value,
        best.bytes,
        started.elapsed().as_secs_f64(),
        args.out.join("pareto.svg").display()
    );
    eprintln!("run {}", best.run_dir.display());
    // The last line of stdout is the winning bundle.
    crate::out::println(best.bundle.display())?;
    Ok(())
}

/// Best first: the higher metric, then the smaller bundle, then the earlier trial.
fn better(a: &Scored, b: &Scored) -> std::cmp::Ordering {
    b.value
        .total_cmp(&a.value)
        .then(a.bytes.cmp(&b.bytes))
        .then(a.trial.cmp(&b.trial))
}

fn read_log(path: &Path) -> anyhow::Result<Vec<Value>> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(Vec::new());
    };
    // A torn last line (a killed tune) is ignored; the trial reruns.
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

fn run_trial(
    args: &TuneArgs,
    trial: usize,
    rung: usize,
    overrides: &[String],
    epochs: usize,
    done: &[Value],
    log_path: &Path,
) -> anyhow::Result<Scored> {
    let mut sets = overrides.to_vec();
    sets.push(format!("train.epochs={epochs}"));
    // No suites: they score the test split, which tuning never looks at.
    sets.push("suites=[]".into());
    let req = SweepRequest {
        config: args.config.clone(),
        sets,
        grid: Vec::new(),
        seeds: None,
        jobs: 1,
        experiments: args.out.join("runs"),
    };
    let points = sweep::plan(&req)?;
    let point = points.first().context("no point")?.clone();
    let bundle = args
        .out
        .join("bundles")
        .join(format!("{}-{}", point.run_id, args.budget_bytes));
    if let Some(v) = done.iter().find(|v| {
        v["bundle"].as_str() == Some(&bundle.display().to_string())
            && bundle.join("bundle.json").is_file()
    }) {
        return Ok(Scored {
            trial,
            rung,
            overrides: overrides.to_vec(),
            epochs,
            run_dir: point.run_dir.clone(),
            bundle,
            bytes: v["bytes"].as_u64().unwrap_or(0),
            value: v["value"].as_f64().unwrap_or(f64::NAN),
            rows: v["rows"].as_f64().unwrap_or(0.0),
        });
    }
    let outcomes = sweep::run(&req, points, &|_| {});
    if let Some(e) = outcomes.first().and_then(|o| o.error.clone()) {
        bail!("trial {trial}: {e}");
    }
    let (dir, manifest) = export(&ExportRequest {
        run: point.run_dir.clone(),
        format: Format::Burn,
        quantize: Quantize::Int8,
        out: Some(bundle.clone()),
        verify_rows: 0,
        prune: Some(Prune::MaxBytes(args.budget_bytes)),
    })?;
    let bytes: u64 = manifest.files.values().map(|f| f.bytes).sum::<u64>()
        + std::fs::metadata(dir.join(distill_core::bundle::BUNDLE_FILE))
            .map(|m| m.len())
            .unwrap_or(0);
    let value = manifest
        .metrics
        .get(&args.metric)
        .copied()
        .with_context(|| format!("the bundle has no {}", args.metric))?;
    let rows = manifest.metrics.get("pruned_rows").copied().unwrap_or(0.0);
    let line = json!({
        "trial": trial, "rung": rung, "epochs": epochs, "overrides": overrides,
        "run": point.run_dir.display().to_string(), "bundle": bundle.display().to_string(),
        "bytes": bytes, "value": value, "metric": args.metric, "rows": rows,
    });
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .with_context(|| log_path.display().to_string())?;
    std::io::Write::write_all(&mut f, format!("{line}\n").as_bytes())?;
    Ok(Scored {
        trial,
        rung,
        overrides: overrides.to_vec(),
        epochs,
        run_dir: point.run_dir,
        bundle,
        bytes,
        value,
        rows,
    })
}
