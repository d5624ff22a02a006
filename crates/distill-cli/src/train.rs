//! `distill train`.

use crate::CmdResult;
use anyhow::{Context, bail};
use clap::Args;
use distill_core::config::ConfigSource;
use distill_model::device::DeviceKind;
use distill_train::config::ExperimentConfig;
use distill_train::trainer::{TrainRequest, train};
use std::path::PathBuf;

#[derive(Args)]
pub struct TrainArgs {
    /// An experiment config (configs/exp/<name>.toml). Optional with --resume.
    config: Option<PathBuf>,
    /// Override a config key: --set train.lr=3e-4 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Continue an interrupted run from its last checkpoint.
    #[arg(long, value_name = "RUN_DIR")]
    resume: Option<PathBuf>,
    /// cpu | ndarray | wgpu (overrides the config's `device`).
    #[arg(long)]
    device: Option<DeviceKind>,
    /// Root directory for runs: <experiments>/<name>/<run-id>/.
    #[arg(long, default_value = "experiments")]
    experiments: PathBuf,
}

pub fn run(args: TrainArgs) -> CmdResult {
    Ok(run_inner(args)?)
}

fn run_inner(args: TrainArgs) -> anyhow::Result<()> {
    let (source, base_dir) = match (&args.resume, &args.config) {
        (Some(dir), given) => {
            if !args.sets.is_empty() {
                bail!(
                    "--set cannot change a run being resumed (its config is {}/config.resolved.toml)",
                    dir.display()
                );
            }
            let path = dir.join(distill_train::run::CONFIG_FILE);
            if !path.exists() {
                bail!(
                    "{}: not a run directory (no config.resolved.toml)",
                    dir.display()
                );
            }
            let source = ConfigSource::load(&path)?;
            if let Some(given) = given {
                let theirs: ExperimentConfig = ConfigSource::load(given)?.deserialize()?;
                let ours: ExperimentConfig = source.deserialize()?;
                if theirs.name != ours.name {
                    bail!(
                        "{} is experiment `{}` but run {} belongs to `{}`",
                        given.display(),
                        theirs.name,
                        dir.display(),
                        ours.name
                    );
                }
            }
            let base = source.base_dir();
            (source, base)
        }
        (None, Some(path)) => {
            let mut source = ConfigSource::load(path)?;
            source.apply_overrides(&args.sets)?;
            let base = source.base_dir();
            (source, base)
        }
        (None, None) => bail!(
            "give an experiment config (distill train configs/exp/<name>.toml) or --resume <run-dir>"
        ),
    };
    let mut config: ExperimentConfig = source.deserialize()?;
    // The name is a directory under --experiments.
    source.check_names(&["name"])?;
    if let Some(d) = args.device {
        config.device = d;
    }
    let outcome = train(TrainRequest {
        config,
        base_dir,
        experiments_dir: args.experiments,
        resume: args.resume,
        run_id: None,
        interactive: crate::interactive(),
    })
    .context("training failed")?;
    let m = &outcome.info.metrics;
    let get = |k: &str| {
        m.get(k)
            .map(|v| format!("{v:.4}"))
            .unwrap_or_else(|| "-".into())
    };
    let quality = if outcome.info.model_kind == "tagger" {
        format!(
            "val span F1 {} exact {}, test span F1 {} exact {} intent acc {}",
            get("val_span_f1"),
            get("val_exact_match"),
            get("test_span_f1"),
            get("test_exact_match"),
            get("test_intent_accuracy"),
        )
    } else {
        format!(
            "val acc {} macro-F1 {}, test acc {} macro-F1 {}",
            get("val_accuracy"),
            get("val_macro_f1"),
            get("test_accuracy"),
            get("test_macro_f1"),
        )
    };
    eprintln!(
        "done: {} steps, best epoch {}, {quality}, {} params, {} bytes, {:.1} s training ({:.0} ex/s)",
        outcome.info.steps,
        outcome
            .info
            .best_epoch
            .map(|e| e.to_string())
            .unwrap_or_else(|| "-".into()),
        outcome.info.params,
        outcome.info.model_bytes,
        outcome.info.train_seconds,
        m.get("examples_per_s").copied().unwrap_or(0.0),
    );
    // The last line of stdout is the run directory.
    crate::out::println(outcome.run_dir.display())?;
    Ok(())
}
