//! `distill data import | curate | stats`.

use crate::{CmdResult, Failure};
use anyhow::Context;
use clap::{Args, Subcommand};
use distill_core::fsutil::write_jsonl_atomic;
use distill_core::lock::DirLock;
use distill_core::table::{Format as TableFormat, Table};
use distill_core::types::Task;
use distill_data::curate::{CurateConfig, curate};
use distill_data::dataset::Dataset;
use distill_data::import::{DataConfig, SourceConfig, import};
use distill_data::read::Format;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Import CSV, TSV, JSONL, JSON or Parquet into a dataset directory.
    ///
    /// The field mapping comes from a data config (--config) or from flags.
    /// Malformed rows go to <out>/rejects.jsonl with file, line and reason.
    Import(Box<ImportArgs>),
    /// Normalise, redact PII, deduplicate, split and leak-check a dataset.
    Curate(CurateArgs),
    /// Rows per split, label histogram, lengths, and what curation removed.
    Stats(StatsArgs),
}

#[derive(Args)]
pub struct ImportArgs {
    /// Files to import (with the mapping flags below), instead of or on top of --config.
    files: Vec<PathBuf>,
    /// A data config (configs/data/<name>.toml).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Override a config key: --set key=value (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Output dataset directory.
    #[arg(long, short)]
    out: PathBuf,
    /// Dataset name (default: the config's, or the output directory's name).
    #[arg(long)]
    name: Option<String>,
    /// classify | multilabel | extract (default: inferred from the mapping).
    #[arg(long, value_parser = parse_task)]
    task: Option<Task>,
    /// Field holding the text.
    #[arg(long)]
    text: Option<String>,
    /// Field holding the label (or a template like "{scenario}_{intent}").
    #[arg(long)]
    label: Option<String>,
    /// Field holding a list of labels (multi-label).
    #[arg(long)]
    labels: Option<String>,
    /// Field holding spans.
    #[arg(long)]
    spans: Option<String>,
    /// Split for every row of the files (train, val, test, unlabeled), or
    /// `field:<name>` to read it from a field.
    #[arg(long)]
    split: Option<String>,
    /// Field holding the source's own row id (kept as source_id).
    #[arg(long)]
    id: Option<String>,
    /// Input format when the extension does not say (csv, tsv, jsonl, json, parquet).
    #[arg(long)]
    format: Option<String>,
    /// CSV/TSV delimiter.
    #[arg(long)]
    delimiter: Option<String>,
    /// Exit 2 if any row was rejected.
    #[arg(long)]
    strict: bool,
}

#[derive(Args)]
pub struct CurateArgs {
    /// The dataset directory to curate.
    dataset: PathBuf,
    /// A curation config (configs/curate/<name>.toml).
    #[arg(long, short)]
    config: PathBuf,
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Output dataset directory.
    #[arg(long, short)]
    out: PathBuf,
    /// Override the config's seed.
    #[arg(long)]
    seed: Option<u64>,
}

#[derive(Args)]
pub struct StatsArgs {
    /// A dataset directory.
    dataset: PathBuf,
    /// table | md | csv | json
    #[arg(long, default_value = "table")]
    format: TableFormat,
}

fn parse_task(s: &str) -> Result<Task, String> {
    match s {
        "classify" => Ok(Task::Classify),
        "multilabel" => Ok(Task::Multilabel),
        "extract" => Ok(Task::Extract),
        other => Err(format!(
            "unknown task `{other}` (expected classify, multilabel or extract)"
        )),
    }
}

pub fn run(cmd: DataCommand) -> CmdResult {
    match cmd {
        DataCommand::Import(args) => run_import(*args),
        DataCommand::Curate(args) => run_curate(args),
        DataCommand::Stats(args) => run_stats(args),
    }
}

fn run_import(args: ImportArgs) -> CmdResult {
    let started = Instant::now();
    let mut config = match &args.config {
        Some(path) => DataConfig::load(path, &args.sets)
            .with_context(|| format!("loading data config {}", path.display()))?,
        None => {
            if !args.sets.is_empty() {
                return Err(anyhow::anyhow!("--set needs --config").into());
            }
            DataConfig {
                name: None,
                task: None,
                root: None,
                description: None,
                sources: Vec::new(),
                base_dir: PathBuf::from("."),
            }
        }
    };
    if !args.files.is_empty() {
        let format = match &args.format {
            Some(f) => Some(Format::parse(f).ok_or_else(|| {
                anyhow::anyhow!(
                    "--format {f}: unknown format (expected csv, tsv, jsonl, json or parquet)"
                )
            })?),
            None => None,
        };
        let (split, split_field) = match args.split.as_deref() {
            Some(s) if s.starts_with("field:") => (None, Some(s["field:".len()..].to_string())),
            Some(s) => (Some(s.to_string()), None),
            None => (None, None),
        };
        let cwd = std::env::current_dir().context("reading the current directory")?;
        for file in &args.files {
            let path = if file.is_absolute() {
                file.clone()
            } else {
                cwd.join(file)
            };
            config.sources.push(SourceConfig {
                path: path.display().to_string(),
                format,
                delimiter: args.delimiter.clone(),
                text: args.text.clone(),
                label: args.label.clone(),
                labels: args.labels.clone(),
                spans: args.spans.clone(),
                split: split.clone(),
                split_field: split_field.clone(),
                id: args.id.clone(),
                ..Default::default()
            });
        }
    } else if args.config.is_none() {
        return Err(anyhow::anyhow!(
            "nothing to import\nhint: pass files with --text/--label, or --config configs/data/<name>.toml"
        )
        .into());
    }
    if let Some(name) = &args.name {
        config.name = Some(name.clone());
    } else if config.name.is_none() {
        config.name = args
            .out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
    }
    if let Some(task) = args.task {
        config.task = Some(task);
    }
    let output = OutputDir::lock(&args.out, "distill data import")?;
    let result = import_into(&args, &config, started);
    output.release(result.is_err());
    result
}

fn import_into(args: &ImportArgs, config: &DataConfig, started: Instant) -> CmdResult {
    let mut outcome = import(config)?;
    for source in &outcome.dataset.manifest.sources {
        eprintln!(
            "  read {} ({}): {} rows, {} rejected",
            source.path, source.format, source.rows, source.rejected
        );
    }
    outcome
        .dataset
        .save(&args.out, &outcome.rejects)
        .with_context(|| format!("writing {}", args.out.display()))?;
    let m = &outcome.dataset.manifest;
    let counts: Vec<String> = m.counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
    eprintln!(
        "imported {} rows ({}), {} labels, task {}, {} rejected in {:.2} s",
        m.rows,
        counts.join(", "),
        m.labels.len(),
        m.task,
        m.rejected,
        started.elapsed().as_secs_f64()
    );
    if m.rejected > 0 {
        eprintln!("  rejects: {}", args.out.join("rejects.jsonl").display());
        for r in outcome.rejects.iter().take(5) {
            let place = match (r.line, &r.record) {
                (Some(l), _) => format!("line {l}"),
                (None, Some(rec)) => rec.clone(),
                _ => String::new(),
            };
            eprintln!("    {}:{} {}", r.file, place, r.reason);
        }
        if outcome.rejects.len() > 5 {
            eprintln!("    … and {} more", outcome.rejects.len() - 5);
        }
    }
    crate::out::println(args.out.display())?;
    if args.strict && m.rejected > 0 {
        return Err(Failure::Error(anyhow::anyhow!(
            "--strict: {} row(s) rejected (see {})",
            m.rejected,
            args.out.join("rejects.jsonl").display()
        )));
    }
    Ok(())
}

fn run_curate(args: CurateArgs) -> CmdResult {
    let started = Instant::now();
    let mut config = CurateConfig::load(&args.config, &args.sets)
        .with_context(|| format!("loading curate config {}", args.config.display()))?;
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    let output = OutputDir::lock(&args.out, "distill data curate")?;
    let result = curate_into(&args, &config, started);
    output.release(result.is_err());
    result
}

fn curate_into(args: &CurateArgs, config: &CurateConfig, started: Instant) -> CmdResult {
    let dataset = Dataset::load(&args.dataset)?;
    let rejects = Dataset::load_rejects(&args.dataset)?;
    eprintln!(
        "curating {} ({} rows, seed {})",
        args.dataset.display(),
        dataset.manifest.rows,
        config.seed
    );
    let mut outcome = curate(dataset, config, |r| {
        eprintln!(
            "  {:<14} {:>9} -> {:>9} rows  (-{}) {:>7.2} s  {:>10.0} rows/s  {}",
            r.step,
            r.rows_in,
            r.rows_out,
            r.removed,
            r.seconds,
            r.rows_per_second,
            if r.details.as_object().is_some_and(|o| o.is_empty()) {
                String::new()
            } else if r.step == "teacher" {
                let mut d = r.details.clone();
                if let Some(o) = d.as_object_mut() {
                    o.remove("agreement");
                }
                d.to_string()
            } else {
                r.details.to_string()
            }
        );
        if r.step == "teacher" {
            eprint!("{}", agreement_table(&r.details));
        }
    })?;
    outcome.dataset.save(&args.out, &rejects)?;
    write_jsonl_atomic(&args.out.join("removed.jsonl"), &outcome.removed)?;
    write_jsonl_atomic(&args.out.join("conflicts.jsonl"), &outcome.conflicts)?;
    let m = &outcome.dataset.manifest;
    let counts: Vec<String> = m.counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
    eprintln!(
        "curated: {} rows kept ({}), {} removed (see removed.jsonl), {} conflicting texts, in {:.2} s",
        m.rows,
        counts.join(", "),
        outcome.removed.len(),
        outcome.conflicts.len(),
        started.elapsed().as_secs_f64()
    );
    crate::out::println(args.out.display())?;
    Ok(())
}

/// The output directory of `import` or `curate`, locked for this process
/// (a second writer fails at once, naming the holder), with the temporary
/// files of an interrupted earlier run removed.
struct OutputDir {
    lock: DirLock,
    /// This command created the directory.
    created: bool,
}

impl OutputDir {
    fn lock(dir: &Path, what: &str) -> anyhow::Result<Self> {
        let created = !dir.exists();
        let lock = DirLock::acquire(dir, what)?;
        let removed = lock.remove_stale_temps(dir, &[])?;
        if !removed.is_empty() {
            eprintln!(
                "removed {} temporary file(s) left by an interrupted run in {}",
                removed.len(),
                dir.display()
            );
        }
        Ok(Self { lock, created })
    }

    /// Unlock. After a failure, a directory this command created and left
    /// empty (but for the lock file) is removed again.
    fn release(self, failed: bool) {
        let dir = self.lock.dir().to_path_buf();
        let only_lock = || {
            std::fs::read_dir(&dir).is_ok_and(|entries| {
                entries
                    .flatten()
                    .all(|e| e.file_name() == distill_core::lock::LOCK_FILE)
            })
        };
        if failed && self.created && only_lock() {
            // Still locked: a process that opens the lock file now waits on
            // ours; one that comes after the unlink makes its own directory.
            let _ = std::fs::remove_file(dir.join(distill_core::lock::LOCK_FILE));
            let _ = std::fs::remove_dir(&dir);
        }
        drop(self.lock);
    }
}

/// Teacher-gold agreement per label, worst first.
fn agreement_table(details: &serde_json::Value) -> String {
    let Some(per) = details.get("agreement").and_then(|a| a.as_object()) else {
        return String::new();
    };
    let mut rows: Vec<(&String, u64, u64, f64)> = per
        .iter()
        .map(|(l, v)| {
            (
                l,
                v["n"].as_u64().unwrap_or(0),
                v["agree"].as_u64().unwrap_or(0),
                v["accuracy"].as_f64().unwrap_or(0.0),
            )
        })
        .collect();
    rows.sort_by(|a, b| a.3.total_cmp(&b.3).then(a.0.cmp(b.0)));
    let overall = details["teacher_accuracy"]
        .as_f64()
        .map(|a| format!("{:.1}%", 100.0 * a))
        .unwrap_or_else(|| "-".into());
    let mut t = distill_core::table::Table::new(
        format!("teacher-gold agreement per label (overall {overall})"),
        &["label", "gold rows", "teacher agrees", "accuracy"],
    );
    for (l, n, a, acc) in rows {
        t.push(vec![
            l.clone(),
            n.to_string(),
            a.to_string(),
            format!("{:.1}%", 100.0 * acc),
        ]);
    }
    t.render(distill_core::table::Format::Table)
}

fn run_stats(args: StatsArgs) -> CmdResult {
    let dataset = Dataset::load(&args.dataset)?;
    let tables = distill_data::stats::stats_tables(&dataset);
    match args.format {
        TableFormat::Json => {
            let mut map = serde_json::Map::new();
            for t in &tables {
                map.insert(t.title.clone().unwrap_or_default(), t.json());
            }
            crate::out::println(serde_json::to_string_pretty(&map)?)?;
        }
        format => {
            let rendered: Vec<String> = tables.iter().map(|t: &Table| t.render(format)).collect();
            crate::out::print(rendered.join("\n"))?;
        }
    }
    Ok(())
}
