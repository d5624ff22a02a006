//! `distill compare` and `distill sweep`.

use crate::{CmdResult, Failure};
use anyhow::Context;
use clap::Args;
use distill_core::table::Format;
use distill_eval::compare::{Comparison, Options, RunRow, compare, find_runs};
use distill_eval::sweep::{PointState, SweepRequest, parse_grid, plan};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct CompareArgs {
    /// Run directories, experiment directories or quoted `*` patterns.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    #[command(flatten)]
    view: ViewArgs,
}

#[derive(Args)]
pub struct ViewArgs {
    /// Deltas against this run (or the group holding it).
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Show every config key, not only those that differ.
    #[arg(long)]
    all: bool,
    /// Sort by a metric column (best first).
    #[arg(long)]
    sort: Option<String>,
    /// Keep runs whose config key (or status, experiment, seed) has this value (repeatable).
    #[arg(long = "filter", value_name = "KEY=VALUE")]
    filters: Vec<String>,
    /// Metric columns, comma-separated (default: validation/test and each suite's headline metrics, model bytes, training time).
    #[arg(long, value_delimiter = ',')]
    metrics: Vec<String>,
    /// One row per run even when runs differ only in seed.
    #[arg(long)]
    no_group_seeds: bool,
    /// table | md | csv | json.
    #[arg(long, default_value = "table")]
    format: Format,
    /// Write a Pareto plot (SVG): a metric against model bytes and latency.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// The plotted metric (default: the first suite accuracy, else test_accuracy).
    #[arg(long)]
    plot_metric: Option<String>,
}

fn options(v: &ViewArgs) -> anyhow::Result<Options> {
    let mut filters = Vec::new();
    for f in &v.filters {
        let (k, val) = f
            .split_once('=')
            .with_context(|| format!("--filter {f}: expected key=value"))?;
        filters.push((
            k.trim().to_string(),
            val.trim().trim_matches('"').to_string(),
        ));
    }
    Ok(Options {
        baseline: v.baseline.clone(),
        all: v.all,
        sort: v.sort.clone(),
        filters,
        metrics: v.metrics.clone(),
        group_seeds: !v.no_group_seeds,
    })
}

/// Load, compare, print (and plot) runs.
fn show(dirs: &[PathBuf], view: &ViewArgs) -> anyhow::Result<Vec<Comparison>> {
    let mut rows = Vec::with_capacity(dirs.len());
    for d in dirs {
        rows.push(RunRow::load(d)?);
    }
    for r in rows.iter().filter(|r| r.status != "completed") {
        eprintln!(
            "note: {} is {} (shown with its status)",
            r.dir.display(),
            r.status
        );
    }
    let comparisons = compare(rows.clone(), &options(view)?)?;
    if comparisons.len() > 1 {
        eprintln!(
            "warning: the runs cover {} different task/dataset pairs; one table each",
            comparisons.len()
        );
    }
    if view.format == Format::Json {
        crate::out::println(serde_json::to_string_pretty(&comparisons)?)?;
    } else {
        for c in &comparisons {
            crate::out::println(c.table().render(view.format))?;
        }
    }
    if let Some(path) = &view.plot {
        plot(&comparisons, &rows, view.plot_metric.as_deref(), path)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(comparisons)
}

fn plot(
    comparisons: &[Comparison],
    rows: &[RunRow],
    metric: Option<&str>,
    path: &Path,
) -> anyhow::Result<()> {
    let c = comparisons.first().context("nothing to plot")?;
    let row = |dir: &PathBuf| rows.iter().find(|r| &r.dir == dir);
    let metric = match metric {
        Some(m) => m.to_string(),
        None => c
            .metric_columns
            .iter()
            .find(|m| m.ends_with(".accuracy"))
            .or_else(|| c.metric_columns.iter().find(|m| *m == "test_accuracy"))
            .cloned()
            .context("no accuracy column to plot; name one with --plot-metric")?,
    };
    let latency_name = c
        .metric_columns
        .iter()
        .find(|k| k.ends_with("latency_p50_ms"))
        .cloned()
        .or_else(|| {
            c.groups
                .first()
                .and_then(|g| row(&g.runs[0]))
                .and_then(|r| {
                    r.metrics
                        .keys()
                        .find(|k| k.ends_with("latency_p50_ms"))
                        .cloned()
                })
        });
    let mut by_bytes = Vec::new();
    let mut by_latency = Vec::new();
    for (i, g) in c.groups.iter().enumerate() {
        let label = c.describe(i, true);
        let Some(&(y, _, _)) = g.metrics.get(&metric) else {
            continue;
        };
        if let Some(&b) = row(&g.runs[0]).and_then(|r| r.metrics.get("model_bytes")) {
            by_bytes.push((label.clone(), b, y));
        }
        if let Some(name) = &latency_name {
            let lat: Vec<f64> = g
                .runs
                .iter()
                .filter_map(|r| row(r).and_then(|x| x.metrics.get(name).copied()))
                .collect();
            if !lat.is_empty() {
                by_latency.push((label, lat.iter().sum::<f64>() / lat.len() as f64, y));
            }
        }
    }
    let svg = distill_eval::plots::pareto(
        &metric,
        &by_bytes,
        &by_latency,
        latency_name.as_deref().unwrap_or("latency"),
    );
    distill_core::fsutil::write_atomic(path, |w| w.write_all(svg.as_bytes()))?;
    Ok(())
}

pub fn run_compare(args: CompareArgs) -> CmdResult {
    let dirs = find_runs(&args.runs)?;
    show(&dirs, &args.view)?;
    Ok(())
}

#[derive(Args)]
pub struct SweepArgs {
    /// An experiment config (configs/exp/<name>.toml); its `suites` run after each point.
    config: PathBuf,
    /// A grid axis: --grid model.dim=32,64 (repeatable; the points are the product).
    #[arg(long = "grid", value_name = "KEY=A,B,..")]
    grid: Vec<String>,
    /// Seeds per point: the config's seed, +1, +2, ...
    #[arg(long)]
    seeds: Option<usize>,
    /// Points trained at once.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Override a config key for every point (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Root directory for runs.
    #[arg(long, default_value = "experiments")]
    experiments: PathBuf,
    /// Print the plan (points, run ids, what is done) and stop.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    view: ViewArgs,
}

pub fn run_sweep(args: SweepArgs) -> CmdResult {
    let mut grid = Vec::new();
    for g in &args.grid {
        grid.push(parse_grid(g)?);
    }
    let req = SweepRequest {
        config: args.config.clone(),
        sets: args.sets.clone(),
        grid,
        seeds: args.seeds,
        jobs: args.jobs,
        experiments: args.experiments.clone(),
    };
    let points = plan(&req)?;
    let count = |s: PointState| points.iter().filter(|p| p.state == s).count();
    eprintln!(
        "sweep: {} points ({} done, {} to resume, {} new){}",
        points.len(),
        count(PointState::Done),
        count(PointState::Resume),
        count(PointState::New),
        if args.jobs > 1 {
            format!(", {} at a time", args.jobs)
        } else {
            String::new()
        }
    );
    if args.dry_run {
        let mut t = distill_core::table::Table::new(
            "sweep plan",
            &["#", "overrides", "seed", "run", "state", "suites to run"],
        );
        for p in &points {
            t.push(vec![
                (p.index + 1).to_string(),
                p.overrides.join(" "),
                p.seed.to_string(),
                p.run_dir.display().to_string(),
                format!("{:?}", p.state).to_lowercase(),
                p.suites_todo.len().to_string(),
            ]);
        }
        crate::out::print(t.render(args.view.format))?;
        return Ok(());
    }
    let outcomes = distill_eval::sweep::run(&req, points, &|line| eprintln!("{line}"));
    let dirs: Vec<PathBuf> = outcomes
        .iter()
        .map(|o| o.point.run_dir.clone())
        .filter(|d| d.join(distill_train::run::RUN_FILE).is_file())
        .collect();
    if !dirs.is_empty() {
        show(&dirs, &args.view)?;
    }
    let failed: Vec<String> = outcomes
        .iter()
        .filter_map(|o| {
            o.error
                .as_ref()
                .map(|e| format!("{}: {e}", o.point.run_dir.display()))
        })
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::Error(anyhow::anyhow!(
            "{} of {} points failed:\n  {}",
            failed.len(),
            outcomes.len(),
            failed.join("\n  ")
        )))
    }
}
