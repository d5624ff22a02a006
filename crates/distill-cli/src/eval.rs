//! `distill eval`: run evaluation suites on a trained run.

use crate::{CmdResult, Failure};
use clap::Args;
use distill_core::config::ConfigSource;
use distill_eval::suite::Suite;
use distill_eval::{EvalRequest, evaluate};
use distill_model::device::DeviceKind;
use std::path::PathBuf;

#[derive(Args)]
pub struct EvalArgs {
    /// A run directory (experiments/<name>/<run-id>).
    run: PathBuf,
    /// A suite (configs/suites/<name>.toml); repeatable. Default: the run's dataset, test split.
    #[arg(long = "suite")]
    suites: Vec<PathBuf>,
    /// Override a suite key: --set cases.0.split=val (repeatable; applies to every suite).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// cpu | ndarray | wgpu.
    #[arg(long, default_value = "cpu")]
    device: DeviceKind,
    /// text (a summary) or json (the full reports).
    #[arg(long, default_value = "text")]
    format: String,
    /// Extraction runs: the example accuracy (every span and the intent
    /// right) the escalation threshold is certified for on handled traffic.
    #[arg(long, default_value_t = 0.95)]
    target: f64,
    /// Extraction runs: the risk that the certificate is wrong.
    #[arg(long, default_value_t = 0.05)]
    delta: f64,
}

pub fn run(args: EvalArgs) -> CmdResult {
    if !["text", "json"].contains(&args.format.as_str()) {
        return Err(anyhow::anyhow!("--format {}: expected text or json", args.format).into());
    }
    let run = distill_train::run::resolve_latest(&args.run);
    if crate::extract::is_tagger(&run) {
        if !args.suites.is_empty() {
            return Err(anyhow::anyhow!(
                "--suite: a tagger run is evaluated on its own val and test rows (suites for extraction are not built yet)"
            )
            .into());
        }
        return Ok(crate::extract::eval(
            &run,
            args.target,
            args.delta,
            &args.format,
        )?);
    }
    let mut suites: Vec<(Suite, PathBuf)> = Vec::new();
    for path in &args.suites {
        let mut source = ConfigSource::load(path)?;
        source.apply_overrides(&args.sets)?;
        let suite: Suite = source.deserialize()?;
        source.check_names(&["name", "cases[].name"])?;
        suites.push((suite, source.base_dir()));
    }
    if suites.is_empty() {
        suites.push((Suite::default_for_run(), PathBuf::from(".")));
    }
    let mut failed = Vec::new();
    let mut reports = Vec::new();
    for (suite, base) in suites {
        let report = evaluate(&EvalRequest {
            run: distill_train::run::resolve_latest(&args.run),
            suite,
            suite_base: base,
            device: args.device,
        })?;
        if args.format == "text" {
            crate::out::print(distill_eval::report::summary(&report))?;
            crate::out::println(report.out.display())?;
        }
        if !report.passed {
            failed.push(report.suite.clone());
        }
        reports.push(report);
    }
    if args.format == "json" {
        crate::out::println(serde_json::to_string_pretty(&reports)?)?;
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::Gate(format!(
            "suite(s) {}: see report.md",
            failed.join(", ")
        )))
    }
}
