//! `distill teach`: collect teacher outputs into a teacher-log directory.

use crate::{CmdResult, Failure};
use clap::Args;
use distill_core::config::ConfigSource;
use distill_core::table::{Format, Table};
use distill_teacher::config::TeachConfig;
use distill_teacher::{TeachRequest, teach};
use std::path::PathBuf;

#[derive(Args)]
pub struct TeachArgs {
    /// A teach config (configs/teacher/<name>.toml).
    config: PathBuf,
    /// Override a config key: --set teacher.concurrency=8 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Output directory (default: the config's `out`, else teachers/<config name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Redo records that failed (call or parse errors); the log keeps one record per row.
    #[arg(long)]
    retry_failed: bool,
}

pub fn run(args: TeachArgs) -> CmdResult {
    let mut source = ConfigSource::load(&args.config)?;
    source.apply_overrides(&args.sets)?;
    let config: TeachConfig = source.deserialize()?;
    let out = args.out.or_else(|| config.out.clone()).unwrap_or_else(|| {
        let stem = args
            .config
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "teacher".into());
        PathBuf::from("teachers").join(stem)
    });
    let outcome = teach(TeachRequest {
        config,
        base: source.base_dir(),
        out,
        retry_failed: args.retry_failed,
        interactive: crate::interactive(),
    })?;
    let m = &outcome.manifest;
    let c = &m.counts;
    let mut t = Table::new(
        format!(
            "teacher {} ({}), {}: {} rows, {} distinct texts",
            m.teacher.model, m.teacher.kind, m.status, m.rows, m.distinct_texts
        ),
        &[
            "rows", "distinct", "records", "ok", "failed", "cached", "requests", "retries",
            "tokens", "cost", "coverage",
        ],
    );
    t.push(vec![
        m.rows.to_string(),
        m.distinct_texts.to_string(),
        c.records.to_string(),
        c.ok.to_string(),
        c.failed.to_string(),
        c.cached.to_string(),
        c.requests.to_string(),
        c.retries.to_string(),
        (c.prompt_tokens + c.completion_tokens).to_string(),
        format!("${:.4}", c.cost),
        c.mean_coverage
            .map(|x| format!("{x:.3}"))
            .unwrap_or_else(|| "-".into()),
    ]);
    eprint!("{}", t.render(Format::Table));
    if let Some(r) = &m.last_run {
        eprintln!(
            "this run: {} records ({} cached, {} failed) in {:.1} s, {:.1} requests/s, utilisation {:.2} of concurrency {}",
            r.done, r.cached, r.failed, r.wall_s, r.requests_per_s, r.utilisation, r.concurrency
        );
    }
    if !c.errors.is_empty() {
        let kinds: Vec<String> = c.errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
        eprintln!(
            "failed records by error: {} (kept in the log; rerun with --retry-failed)",
            kinds.join(", ")
        );
    }
    if c.records > 0 && c.ok == 0 {
        return Err(Failure::Failed(format!(
            "every one of the {} records in {} failed (nothing to learn from); fix the cause above, then rerun with --retry-failed",
            c.records,
            outcome.out.display()
        )));
    }
    println!("{}", outcome.out.display());
    Ok(())
}
