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
    /// Neither read nor write the response cache (teacher.cache = false).
    #[arg(long, conflicts_with = "refresh_cache")]
    no_cache: bool,
    /// Ask the server for every row even when cached; the answers replace the cached ones.
    #[arg(long)]
    refresh_cache: bool,
}

pub fn run(args: TeachArgs) -> CmdResult {
    let mut source = ConfigSource::load(&args.config)?;
    source.apply_overrides(&args.sets)?;
    let mut config: TeachConfig = source.deserialize()?;
    if args.no_cache || args.refresh_cache {
        let distill_teacher::config::TeacherSpec::Openai(spec) = &mut config.teacher else {
            return Err(Failure::Error(anyhow::anyhow!(
                "--no-cache and --refresh-cache apply to `kind = \"openai\"` teachers (the only ones with a response cache)"
            )));
        };
        spec.cache &= !args.no_cache;
        spec.cache_refresh |= args.refresh_cache;
    }
    let out = args.out.or_else(|| config.out.clone()).unwrap_or_else(|| {
        let stem = args
            .config
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "teacher".into());
        PathBuf::from("teachers").join(stem)
    });
    let cache_dir = match &config.teacher {
        distill_teacher::config::TeacherSpec::Openai(spec) if spec.cache => Some(
            spec.cache_dir
                .clone()
                .unwrap_or_else(distill_teacher::openai::Cache::default_dir),
        ),
        _ => None,
    };
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
    if let Some(dir) = cache_dir {
        let (n, bytes) = distill_teacher::openai::cache_usage(&dir);
        eprintln!(
            "response cache {}: {n} entries, {} (`distill cache prune` trims it)",
            dir.display(),
            human(bytes)
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
    crate::out::println(outcome.out.display())?;
    Ok(())
}

#[derive(clap::Subcommand)]
pub enum CacheCommand {
    /// Where the teacher response cache is, its entries and bytes.
    Info {
        /// The cache directory (default: teacher.cache-dir's default,
        /// `$DISTILL_CACHE/teacher` or `~/.cache/distill/teacher`).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Delete cache entries: older than `--older-than-days`, then the oldest
    /// until the rest fits in `--max-size`. Only files named like cache
    /// entries are touched.
    Prune {
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Delete entries not written for this many days.
        #[arg(long)]
        older_than_days: Option<f64>,
        /// Keep at most this much: bytes, or with a unit (500KB, 200MB, 1GB).
        #[arg(long, value_parser = parse_size)]
        max_size: Option<u64>,
    },
}

/// `1234`, `500KB`, `200MB`, `1.5GB` (powers of 1000; `KiB`, `MiB`, `GiB` for 1024).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}`: expected a size like 500KB, 200MB or 1GB"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "`{s}`: unknown unit `{other}` (B, KB, MB, GB, KiB, MiB, GiB)"
            ));
        }
    };
    Ok((n * mult).round() as u64)
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000_000 => format!("{:.2} GB", b as f64 / 1e9),
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.1} KB", b as f64 / 1e3),
        b => format!("{b} B"),
    }
}

pub fn run_cache(cmd: CacheCommand) -> CmdResult {
    use distill_teacher::openai::{Cache, cache_usage, prune_cache};
    match cmd {
        CacheCommand::Info { dir } => {
            let dir = dir.unwrap_or_else(Cache::default_dir);
            let (n, bytes) = cache_usage(&dir);
            crate::out::println(format_args!(
                "{}: {n} entries, {}",
                dir.display(),
                human(bytes)
            ))?;
        }
        CacheCommand::Prune {
            dir,
            older_than_days,
            max_size,
        } => {
            if older_than_days.is_none() && max_size.is_none() {
                return Err(Failure::Error(anyhow::anyhow!(
                    "say what to prune: --older-than-days N and/or --max-size SIZE (--max-size 0 empties the cache)"
                )));
            }
            if let Some(d) = older_than_days
                && !(d.is_finite() && d >= 0.0)
            {
                return Err(Failure::Error(anyhow::anyhow!(
                    "--older-than-days {d} must be a number of days >= 0"
                )));
            }
            let dir = dir.unwrap_or_else(Cache::default_dir);
            let older = older_than_days
                .map(|d| std::time::Duration::try_from_secs_f64(d * 86_400.0))
                .transpose()
                .map_err(|_| anyhow::anyhow!("--older-than-days is too large"))?;
            let (n, freed) = prune_cache(&dir, older, max_size);
            let (left, bytes) = cache_usage(&dir);
            crate::out::println(format_args!(
                "{}: removed {n} entries ({}); {left} entries, {} left",
                dir.display(),
                human(freed),
                human(bytes)
            ))?;
        }
    }
    Ok(())
}
