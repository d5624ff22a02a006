//! `distill sweep`: expand a grid (times seeds) over an experiment config,
//! train each point and run the config's suites, skip what is done, resume
//! what was interrupted.
//!
//! Every point gets a deterministic run id, `sw-<hash>`, from the resolved
//! config (file, `--set`s, the point's values, its seed): a rerun finds its
//! runs by name. A completed run is skipped, an interrupted one resumed from
//! its last checkpoint, a missing one started. Suites are skipped when their
//! report exists.

use crate::error::{Error, Result};
use crate::suite::Suite;
use distill_core::config::ConfigSource;
use distill_train::config::ExperimentConfig;
use distill_train::run::{RUN_FILE, RunInfo, Status};
use distill_train::trainer::{TrainRequest, train};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct SweepRequest {
    pub config: PathBuf,
    pub sets: Vec<String>,
    /// `(key, values)` per `--grid key=a,b,c`.
    pub grid: Vec<(String, Vec<String>)>,
    /// Seeds per point: config seed, +1, ... (None: the config's seed only).
    pub seeds: Option<usize>,
    pub jobs: usize,
    pub experiments: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PointState {
    Done,
    Resume,
    New,
}

#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub index: usize,
    pub overrides: Vec<String>,
    pub seed: u64,
    pub run_id: String,
    pub run_dir: PathBuf,
    pub state: PointState,
    /// Suites whose report is missing.
    pub suites_todo: Vec<PathBuf>,
}

/// Parse `key=a,b,c` (commas inside `[..]` do not split).
pub fn parse_grid(arg: &str) -> Result<(String, Vec<String>)> {
    let (key, values) = arg
        .split_once('=')
        .ok_or_else(|| Error::Input(format!("--grid {arg}: expected key=a,b,c")))?;
    let mut out = Vec::new();
    let (mut depth, mut cur) = (0i32, String::new());
    for c in values.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            _ => {}
        }
        if c == ',' && depth == 0 {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    let out: Vec<String> = out
        .into_iter()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    if key.trim().is_empty() || out.is_empty() {
        return Err(Error::Input(format!("--grid {arg}: expected key=a,b,c")));
    }
    Ok((key.trim().to_string(), out))
}

fn cartesian(grid: &[(String, Vec<String>)]) -> Vec<Vec<String>> {
    let mut points: Vec<Vec<String>> = vec![Vec::new()];
    for (key, values) in grid {
        let mut next = Vec::with_capacity(points.len() * values.len());
        for p in &points {
            for v in values {
                let mut q = p.clone();
                q.push(format!("{key}={v}"));
                next.push(q);
            }
        }
        points = next;
    }
    points
}

/// A point's resolved config source and experiment config.
fn resolve_point(
    req: &SweepRequest,
    overrides: &[String],
    seed: Option<u64>,
) -> Result<(ConfigSource, ExperimentConfig)> {
    let mut source = ConfigSource::load(&req.config)?;
    source.apply_overrides(&req.sets)?;
    source.apply_overrides(overrides)?;
    if let Some(s) = seed {
        source.apply_overrides(&[format!("seed={s}")])?;
    }
    let config: ExperimentConfig = source.deserialize()?;
    source.check_names(&["name"])?;
    config.validate().map_err(Error::Input)?;
    Ok((source, config))
}

fn suite_name(path: &Path) -> Result<String> {
    let source = ConfigSource::load(path)?;
    source.check_names(&["name", "cases[].name"])?;
    let suite: Suite = source.deserialize()?;
    Ok(suite.name)
}

/// The plan: every point with its run id and what is left to do.
pub fn plan(req: &SweepRequest) -> Result<Vec<Point>> {
    let (_, base) = resolve_point(req, &[], None)?;
    let seeds: Vec<Option<u64>> = match req.seeds {
        None => vec![None],
        Some(n) => (0..n.max(1) as u64).map(|i| Some(base.seed + i)).collect(),
    };
    let mut points = Vec::new();
    for overrides in cartesian(&req.grid) {
        for &seed in &seeds {
            let (source, config) = resolve_point(req, &overrides, seed)?;
            let hash = distill_core::hash::sha256_hex(source.to_toml().as_bytes());
            let run_id = format!("sw-{}", &hash[..10]);
            let run_dir = req.experiments.join(&config.name).join(&run_id);
            let state = match RunInfo::load(&run_dir) {
                Ok(info) if info.status == Status::Completed => PointState::Done,
                Ok(_) => PointState::Resume,
                Err(_) => PointState::New,
            };
            let base_dir = source.base_dir();
            let mut suites_todo = Vec::new();
            for s in &config.suites {
                let path = distill_train::data::resolve(&base_dir, s);
                let name = suite_name(&path)?;
                if !run_dir
                    .join("eval")
                    .join(&name)
                    .join("report.json")
                    .is_file()
                {
                    suites_todo.push(path);
                }
            }
            points.push(Point {
                index: points.len(),
                overrides: overrides.clone(),
                seed: config.seed,
                run_id,
                run_dir,
                state,
                suites_todo,
            });
        }
    }
    Ok(points)
}

/// What happened to one point.
#[derive(Debug, Clone, Serialize)]
pub struct PointOutcome {
    pub point: Point,
    pub error: Option<String>,
}

/// Run the plan with `jobs` points at a time. Failed points are reported, not fatal.
pub fn run(
    req: &SweepRequest,
    points: Vec<Point>,
    log: &(dyn Fn(&str) + Sync),
) -> Vec<PointOutcome> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<PointOutcome>> = Mutex::new(Vec::new());
    let total = points.len();
    std::thread::scope(|s| {
        for _ in 0..req.jobs.max(1).min(total.max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(point) = points.get(i) else { return };
                    let label = format!(
                        "[{}/{total}] {} seed {}",
                        i + 1,
                        point.overrides.join(" "),
                        point.seed
                    );
                    let error = run_point(req, point, &label, log)
                        .err()
                        .map(|e| e.to_string());
                    if let Some(e) = &error {
                        log(&format!("{label}: failed: {e}"));
                    }
                    results
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(PointOutcome {
                            point: point.clone(),
                            error,
                        });
                }
            });
        }
    });
    let mut out = results.into_inner().unwrap_or_else(|p| p.into_inner());
    out.sort_by_key(|o| o.point.index);
    out
}

fn run_point(
    req: &SweepRequest,
    point: &Point,
    label: &str,
    log: &(dyn Fn(&str) + Sync),
) -> Result<()> {
    let seed = Some(point.seed);
    let (source, config) = resolve_point(req, &point.overrides, seed)?;
    match point.state {
        PointState::Done => log(&format!(
            "{label}: trained already ({})",
            point.run_dir.display()
        )),
        PointState::Resume | PointState::New => {
            let resume = (point.state == PointState::Resume).then(|| point.run_dir.clone());
            // A directory without run.json was cut off before its first write: start over.
            if resume.is_none() && point.run_dir.exists() && !point.run_dir.join(RUN_FILE).exists()
            {
                std::fs::remove_dir_all(&point.run_dir)
                    .map_err(|e| Error::io(&point.run_dir, e))?;
            }
            log(&format!(
                "{label}: {} {}",
                if resume.is_some() {
                    "resuming"
                } else {
                    "training"
                },
                point.run_dir.display()
            ));
            let outcome = train(TrainRequest {
                config,
                base_dir: source.base_dir(),
                experiments_dir: req.experiments.clone(),
                resume,
                run_id: Some(point.run_id.clone()),
                interactive: false,
            })?;
            let m = &outcome.info.metrics;
            log(&format!(
                "{label}: done, val acc {:.4}, test acc {:.4}",
                m.get("val_accuracy").copied().unwrap_or(f64::NAN),
                m.get("test_accuracy").copied().unwrap_or(f64::NAN)
            ));
        }
    }
    for suite_path in &point.suites_todo {
        let source = ConfigSource::load(suite_path)?;
        let suite: Suite = source.deserialize()?;
        source.check_names(&["name", "cases[].name"])?;
        let report = crate::eval::evaluate(&crate::eval::EvalRequest {
            run: point.run_dir.clone(),
            suite,
            suite_base: source.base_dir(),
            device: distill_model::device::DeviceKind::Cpu,
        })?;
        log(&format!(
            "{label}: suite {}: gates {}",
            report.suite,
            if report.passed { "passed" } else { "FAILED" }
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_values_split_outside_brackets() {
        let (k, v) = parse_grid("model.char-ngrams=[3,5],[2,4]").unwrap();
        assert_eq!(k, "model.char-ngrams");
        assert_eq!(v, vec!["[3,5]", "[2,4]"]);
        assert_eq!(parse_grid("model.dim=32,64").unwrap().1, vec!["32", "64"]);
        assert!(parse_grid("model.dim").is_err());
        let points = cartesian(&[
            ("a".into(), vec!["1".into(), "2".into()]),
            ("b".into(), vec!["x".into(), "y".into(), "z".into()]),
        ]);
        assert_eq!(points.len(), 6);
        assert_eq!(points[0], vec!["a=1", "b=x"]);
    }
}
