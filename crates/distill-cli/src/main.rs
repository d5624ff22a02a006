//! `distill`: the command-line workbench. Subcommands are pipeline stages.
//!
//! stdout carries data (tables, JSON, the output path); progress and logs go
//! to stderr. Exit codes: 0 success, 1 a gate failed (or a run that produced
//! nothing usable, e.g. every teacher call failed), 2 an error.

mod compare;
mod data;
mod demo;
mod eval;
mod export;
mod extract;
mod out;
mod serve;
mod teach;
mod train;
mod tune;

use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "distill",
    version,
    about = "Turn a big, slow model into a small, fast one for one narrow job.",
    propagate_version = true
)]
struct Cli {
    /// Worker threads for parallel steps (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole pipeline on built-in synthetic support tickets (about 2 minutes).
    Demo(demo::DemoArgs),
    /// Import, curate and describe datasets.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Collect teacher outputs (OpenAI-compatible server, production logs, or a local run) into a teacher log.
    Teach(teach::TeachArgs),
    /// Train a student (fine-tuning and/or distillation) into experiments/<name>/<run-id>/.
    Train(train::TrainArgs),
    /// Evaluate a trained run: metrics, calibration, escalation trade-off, gates (exit 1 when one fails).
    Eval(eval::EvalArgs),
    /// Compare runs: the config keys that differ, metrics with deltas, seeds grouped (mean ± std).
    Compare(compare::CompareArgs),
    /// Train (and evaluate) every point of a grid over an experiment config; resumable.
    Sweep(compare::SweepArgs),
    /// Search a bag's settings under a bundle-size budget (successive halving, seeded, resumable).
    Tune(tune::TuneArgs),
    /// Export a run as a self-contained bundle (ONNX or burn; f32, f16 or int8).
    Export(export::ExportArgs),
    /// Run a burn bundle on texts (arguments or stdin), JSONL out: label, confidence, top-k, escalate.
    Predict(export::PredictArgs),
    /// Serve the tiered cascade over HTTP: local bundles first, an OpenAI-compatible upstream last; escalations logged as teacher data.
    Serve(serve::ServeArgs),
    /// Inspect configs.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The teacher response cache: its size, and pruning it.
    #[command(subcommand)]
    Cache(teach::CacheCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the fully resolved config (extends and --set applied), after validating it.
    Show {
        /// A TOML config file.
        file: std::path::PathBuf,
        /// Override a key: --set key.path=value (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
}

/// A failure that decides the exit code.
pub enum Failure {
    /// A gate failed (exit 1).
    Gate(String),
    /// The command ran to the end but produced nothing usable, e.g. every
    /// teacher call failed (exit 1; the summary is already printed).
    Failed(String),
    /// An error (exit 2).
    Error(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Error(e.into())
    }
}

pub type CmdResult = Result<(), Failure>;

/// Whether stderr is a terminal (progress bars) or a pipe (plain log lines).
pub fn interactive() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("CI").is_none()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(n) = cli.threads
        && let Err(e) = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
    {
        eprintln!("error: --threads {n}: {e}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Data(cmd) => data::run(cmd),
        Command::Eval(args) => eval::run(args),
        Command::Compare(args) => compare::run_compare(args),
        Command::Export(args) => export::run_export(args),
        Command::Predict(args) => export::run_predict(args),
        Command::Serve(args) => serve::run(args),
        Command::Sweep(args) => compare::run_sweep(args),
        Command::Tune(args) => tune::run(args),
        Command::Teach(args) => teach::run(args),
        Command::Train(args) => train::run(args),
        Command::Config(ConfigCommand::Show { file, sets }) => config_show(&file, &sets),
        Command::Cache(cmd) => teach::run_cache(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Gate(message)) => {
            eprintln!("gate failed: {message}");
            ExitCode::from(1)
        }
        Err(Failure::Failed(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
        // The reader of stdout went away (`distill ... | head -1`): nothing
        // more to say, and no one to say it to.
        Err(Failure::Error(e)) if out::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(Failure::Error(e)) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}

fn config_show(file: &std::path::Path, sets: &[String]) -> CmdResult {
    let mut source = distill_core::config::ConfigSource::load(file)?;
    source.apply_overrides(sets)?;
    // Validate configs of a known kind so that `show` catches typos too.
    if source.table.contains_key("sources") {
        source.deserialize::<distill_data::import::DataConfig>()?;
    } else if source.table.contains_key("steps") {
        source.deserialize::<distill_data::curate::CurateConfig>()?;
    } else if source.table.contains_key("cases") {
        let suite: distill_eval::suite::Suite = source.deserialize()?;
        source.check_names(&["name", "cases[].name"])?;
        suite.validate()?;
    } else if source.table.contains_key("teacher") && !source.table.contains_key("model") {
        let config: distill_teacher::config::TeachConfig = source.deserialize()?;
        if let distill_teacher::config::TeacherSpec::Openai(spec) = &config.teacher {
            spec.validate().map_err(anyhow::Error::msg)?;
        }
    } else if source.table.contains_key("model") {
        let config: distill_train::config::ExperimentConfig = source.deserialize()?;
        source.check_names(&["name"])?;
        config.validate().map_err(anyhow::Error::msg)?;
    }
    let files: Vec<String> = source
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    out::println(format_args!("# resolved from: {}", files.join(" <- ")))?;
    if !source.overrides.is_empty() {
        out::println(format_args!("# overrides: {}", source.overrides.join(" ")))?;
    }
    out::print(source.to_toml())?;
    Ok(())
}
