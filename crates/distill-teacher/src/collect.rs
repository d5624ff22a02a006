//! `distill teach`: select rows, resume from the log, run the teacher, write
//! records as they come, and summarise in `teacher.json`.

use crate::config::{OpenAiSpec, TeachConfig, TeacherSpec};
use crate::error::{Error, Result};
use crate::interpret::Interpreter;
use crate::openai::{Attempt, Cache, Client, Completion, backoff, request_body};
use crate::prompt::Prompt;
use crate::record::{
    Counts, DatasetRef, LOGS_FILE, LogWriter, MANIFEST_FILE, RecordError, RunStats,
    TEACHER_SCHEMA_VERSION, TeacherId, TeacherManifest, TeacherRecord, compact, read_log_lines,
};
use distill_core::hash::{SplitMix64, seeded_u64, sha256_hex};
use distill_core::lock::DirLock;
use distill_core::types::{Example, Split, Task};
use distill_data::dataset::Dataset;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::Instant;

pub struct TeachRequest {
    pub config: TeachConfig,
    /// Directory of the config file (relative paths in it resolve from here).
    pub base: PathBuf,
    pub out: PathBuf,
    /// Redo records that failed (call or parse errors).
    pub retry_failed: bool,
    /// Progress bar (terminal) or plain lines.
    pub interactive: bool,
}

pub struct TeachOutcome {
    pub out: PathBuf,
    pub manifest: TeacherManifest,
}

pub(crate) use distill_core::run_layout::resolve;

/// Span labels present in a dataset (the default extraction fields).
fn span_labels(rows: &[Example]) -> Vec<String> {
    let mut set = std::collections::BTreeSet::new();
    for r in rows {
        for s in r.spans.iter().flatten() {
            set.insert(s.label.clone());
        }
    }
    set.into_iter().collect()
}

/// The rows a config selects, in processing order.
fn select_rows<'a>(
    config: &TeachConfig,
    dataset: &'a Dataset,
    exclude: &rustc_hash::FxHashSet<String>,
) -> Result<Vec<&'a Example>> {
    let mut splits = Vec::new();
    for s in &config.splits {
        splits.push(Split::parse(s).ok_or_else(|| {
            Error::Input(format!(
                "splits: unknown split `{s}` (expected train, val, test or unlabeled)"
            ))
        })?);
    }
    let mut rows: Vec<&Example> = dataset
        .examples
        .iter()
        .filter(|e| splits.is_empty() || e.split.is_some_and(|s| splits.contains(&s)))
        .collect();
    // Excluded before `limit`: a limit of N still labels N rows.
    if !exclude.is_empty() {
        let before = rows.len();
        rows.retain(|e| !exclude.contains(&e.id));
        eprintln!(
            "exclude-ids: {} of {before} rows skipped ({} ids listed)",
            before - rows.len(),
            exclude.len()
        );
    }
    if let Some(limit) = config.limit {
        rows.sort_by_key(|e| (seeded_u64(config.seed, &e.id), e.id.clone()));
        rows.truncate(limit);
    }
    Ok(rows)
}

fn params_hash(params: &serde_json::Value) -> String {
    sha256_hex(serde_json::to_string(params).unwrap_or_default().as_bytes())[..16].to_string()
}

fn now() -> String {
    distill_core::time::utc_stamp(std::time::SystemTime::now())
}

/// Lock the out directory for this process and remove the temporary files a
/// killed writer of it left behind (only ours: `.distill-*.tmp`, from the
/// atomic rewrites of `logs.jsonl` and `teacher.json`).
fn lock_out_dir(out: &Path) -> Result<DirLock> {
    let lock = DirLock::acquire(out, "distill teach")?;
    let removed = lock.remove_stale_temps(out, &[])?;
    if !removed.is_empty() {
        eprintln!(
            "removed {} temporary file(s) left by an interrupted run in {}",
            removed.len(),
            out.display()
        );
    }
    Ok(lock)
}

/// Run a teach config end to end.
pub fn teach(req: TeachRequest) -> Result<TeachOutcome> {
    let config = &req.config;
    let dpath = resolve(&req.base, &config.dataset);
    let dpath = std::fs::canonicalize(&dpath).unwrap_or(dpath);
    let curate = config.curate.as_ref().map(|c| resolve(&req.base, c));
    let dataset = distill_data::open::open_dataset(&dpath, curate.as_deref())?;
    let task = config.task.unwrap_or(dataset.manifest.task);
    let labels = dataset.manifest.labels.clone();
    let exclude: rustc_hash::FxHashSet<String> = match &config.exclude_ids {
        None => Default::default(),
        Some(x) => {
            // `experiments/<name>/latest` names the newest completed run, as in `teacher.run`.
            let path = distill_core::run_layout::resolve_latest(&resolve(&req.base, x));
            let file = if path.is_dir() {
                path.join(distill_core::run_layout::VAL_IDS_FILE)
            } else {
                path
            };
            let text = distill_core::fsutil::read_bounded(&file, 256 << 20).map_err(|e| {
                Error::Input(format!(
                    "exclude-ids: {e} (a file of ids, one per line, or a run directory with {})",
                    distill_core::run_layout::VAL_IDS_FILE
                ))
            })?;
            String::from_utf8_lossy(&text)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        }
    };
    let rows = select_rows(config, &dataset, &exclude)?;
    if rows.is_empty() {
        return Err(Error::Input(format!(
            "dataset {}: no rows in splits {:?}",
            dpath.display(),
            config.splits
        )));
    }
    let dataset_ref = DatasetRef {
        path: dpath.display().to_string(),
        name: dataset.manifest.name.clone(),
        task,
        labels: labels.clone(),
        examples_sha256: dataset.manifest.examples_sha256.clone(),
    };

    // Everything that can be wrong with the config is checked before any work.
    let plan = match &config.teacher {
        TeacherSpec::Openai(spec) => {
            spec.validate().map_err(Error::Input)?;
            Plan::openai(spec, config, task, &labels, &dataset.examples)?
        }
        TeacherSpec::Local(spec) => Plan::Local(Box::new(crate::local::LocalTeacher::load(
            &resolve(&req.base, &spec.run),
            spec,
            task,
            &labels,
            &dataset.manifest.preprocess,
        )?)),
        TeacherSpec::Import(spec) => Plan::Import(Box::new(crate::import::Importer::new(
            spec, &req.base, task, &labels,
        )?)),
    };
    let (teacher, params) = plan.identity();

    // One writer per directory: a second `distill teach` into the same out
    // directory would append to a log the first one rewrites (records lost).
    // Held until the manifest is written; released by the OS on any exit.
    let _lock = lock_out_dir(&req.out)?;
    let (mut writer, existing) = LogWriter::open(&req.out, &teacher.params_hash)?;
    // Rows with the same text share an id: one request and one record per id.
    let mut seen = rustc_hash::FxHashSet::default();
    let distinct: Vec<&Example> = rows
        .iter()
        .copied()
        .filter(|e| seen.insert(e.id.as_str()))
        .collect();
    let done: rustc_hash::FxHashSet<&str> = existing
        .iter()
        .filter(|r| !(req.retry_failed && r.failed()))
        .map(|r| r.id.as_str())
        .collect();
    let todo: Vec<&Example> = distinct
        .iter()
        .copied()
        .filter(|e| !done.contains(e.id.as_str()))
        .collect();
    let resumed_from = (distinct.len() - todo.len()) as u64;
    let mut manifest = TeacherManifest {
        schema_version: TEACHER_SCHEMA_VERSION,
        status: "running".into(),
        teacher: teacher.clone(),
        params,
        dataset: dataset_ref,
        rows: rows.len() as u64,
        distinct_texts: distinct.len() as u64,
        counts: Counts::of(&existing),
        last_run: None,
        created_by: concat!("distill ", env!("CARGO_PKG_VERSION")).into(),
        updated_at: now(),
    };
    distill_core::fsutil::write_json_atomic(&req.out.join(MANIFEST_FILE), &manifest)?;

    let started = Instant::now();
    let mut progress = Progress::new(req.interactive, distinct.len() as u64, resumed_from);
    if distinct.len() < rows.len() {
        progress.line(&format!(
            "teach: {} rows, {} distinct texts (one request each; rows with the same text share a record)",
            rows.len(),
            distinct.len()
        ));
    }
    if resumed_from > 0 {
        progress.line(&format!(
            "teach: resuming: {resumed_from} of {} {} already in {}",
            distinct.len(),
            if distinct.len() < rows.len() {
                "distinct texts"
            } else {
                "rows"
            },
            writer.path().display()
        ));
    }
    let mut stats = match &plan {
        Plan::Openai(p) => run_openai(p, &teacher, config.seed, &todo, &mut writer, &mut progress)?,
        Plan::Local(local) => local.run(&teacher, &todo, &mut writer, &mut progress)?,
        Plan::Import(importer) => {
            // Every row to do, duplicates included: each row's own key (its
            // source id) may be the one a log line names. One record per id.
            let rows_todo: Vec<&Example> = rows
                .iter()
                .copied()
                .filter(|e| !done.contains(e.id.as_str()))
                .collect();
            importer.run(&teacher, &rows_todo, &req.out, &mut writer, &mut progress)?
        }
    };
    progress.finish();
    writer.sync()?;
    drop(writer);

    // One record per id: compact when this run redid records.
    let logs = req.out.join(LOGS_FILE);
    let contents = read_log_lines(&logs)?;
    if contents.dirty {
        compact(&logs, &contents)?;
    }
    let records = contents.records;
    stats.wall_s = started.elapsed().as_secs_f64();
    stats.requests_per_s = stats.requests as f64 / stats.wall_s.max(1e-9);
    stats.resumed_from = resumed_from;
    let selected: rustc_hash::FxHashSet<&str> = rows.iter().map(|e| e.id.as_str()).collect();
    manifest.counts = Counts::of(records.iter().filter(|r| selected.contains(r.id.as_str())));
    manifest.status = if manifest.counts.records == distinct.len() as u64 {
        "completed".into()
    } else {
        "incomplete".into()
    };
    manifest.last_run = Some(stats);
    manifest.updated_at = now();
    distill_core::fsutil::write_json_atomic(&req.out.join(MANIFEST_FILE), &manifest)?;
    Ok(TeachOutcome {
        out: req.out,
        manifest,
    })
}

struct OpenAiPlan {
    spec: OpenAiSpec,
    client: Client,
    prompt: Prompt,
    interp: Interpreter,
    cache: Option<Cache>,
    params: serde_json::Value,
}

enum Plan {
    Openai(Box<OpenAiPlan>),
    Local(Box<crate::local::LocalTeacher>),
    Import(Box<crate::import::Importer>),
}

impl Plan {
    fn openai(
        spec: &OpenAiSpec,
        config: &TeachConfig,
        task: Task,
        labels: &[String],
        rows: &[Example],
    ) -> Result<Self> {
        let fields = if spec.fields.is_empty() {
            span_labels(rows)
        } else {
            spec.fields.clone()
        };
        if task == Task::Extract && fields.is_empty() {
            return Err(Error::Input(
                "extraction needs fields: set teacher.fields or use a dataset with spans".into(),
            ));
        }
        let client = Client::new(spec)?;
        let identity = if spec.preflight {
            client.preflight(&spec.model)?
        } else {
            None
        };
        let prompt = Prompt::new(spec, task, labels, &fields, rows, config.seed);
        let interp = Interpreter::new(task, labels, &fields, spec.answer);
        let cache = spec.cache.then(|| {
            Cache::new(spec.cache_dir.clone().unwrap_or_else(Cache::default_dir))
                .with_identity(identity.as_ref())
                .refreshing(spec.cache_refresh)
        });
        let params = openai_params(&client, spec, &prompt, task, &fields, labels, config.seed);
        Ok(Plan::Openai(Box::new(OpenAiPlan {
            spec: spec.clone(),
            client,
            prompt,
            interp,
            cache,
            params,
        })))
    }

    fn identity(&self) -> (TeacherId, serde_json::Value) {
        let (kind, model, params) = match self {
            Plan::Openai(p) => ("openai", p.spec.model.clone(), p.params.clone()),
            Plan::Local(l) => ("local", l.model_name.clone(), l.params.clone()),
            Plan::Import(i) => ("import", i.model_name.clone(), i.params.clone()),
        };
        (
            TeacherId {
                kind: kind.into(),
                model,
                params_hash: params_hash(&params),
            },
            params,
        )
    }
}

/// Every parameter that shapes an OpenAI-compatible teacher's answers, in
/// the clear but never with the key (it goes into `teacher.json` and the
/// params hash that identifies a teacher setup).
pub fn openai_params(
    client: &Client,
    spec: &OpenAiSpec,
    prompt: &Prompt,
    task: Task,
    fields: &[String],
    labels: &[String],
    seed: u64,
) -> serde_json::Value {
    let mut params = serde_json::json!({
        "base_url": spec.base_url,
        "model": spec.model,
        "system": prompt.system,
        "template": prompt.template,
        "answer": spec.answer,
        "few_shot": prompt.shot_ids,
        "temperature": spec.temperature,
        "max_tokens": spec.max_tokens,
        "logprobs": spec.logprobs,
        "top_logprobs": spec.top_logprobs,
        "json_schema": spec.json_schema && task == Task::Extract,
        "fields": fields,
        "labels": labels,
        "seed": seed,
    });
    client.redactor().value(&mut params);
    params
}

/// Shared counters for the progress line and the run stats.
#[derive(Default)]
pub struct Gauges {
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    pub busy_ns: AtomicU64,
    pub requests: AtomicU64,
}

fn run_openai(
    plan: &OpenAiPlan,
    teacher: &TeacherId,
    seed: u64,
    todo: &[&Example],
    writer: &mut LogWriter,
    progress: &mut Progress,
) -> Result<RunStats> {
    let OpenAiPlan {
        spec,
        client,
        prompt,
        interp,
        cache,
        ..
    } = plan;
    if todo.is_empty() {
        return Ok(RunStats {
            concurrency: plan.spec.concurrency,
            ..Default::default()
        });
    }
    let queue: Mutex<VecDeque<&Example>> = Mutex::new(todo.iter().copied().collect());
    let stop = AtomicBool::new(false);
    let gauges = Gauges::default();
    let url = format!("{}/chat/completions", spec.base_url.trim_end_matches('/'));
    let schema = (interp.task == Task::Extract && spec.json_schema).then(|| prompt.schema());
    let concurrency = spec.concurrency.min(todo.len()).max(1);
    let started = Instant::now();
    let mut stats = RunStats {
        concurrency: spec.concurrency,
        ..Default::default()
    };
    let result: Result<()> = std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel::<TeacherRecord>();
        for worker in 0..concurrency {
            let tx = tx.clone();
            let (queue, stop, gauges, url, schema) = (&queue, &stop, &gauges, &url, &schema);
            s.spawn(move || {
                let mut jitter = SplitMix64(seeded_u64(seed, &format!("jitter-{worker}")));
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let Some(ex) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front()
                    else {
                        return;
                    };
                    let body = request_body(spec, prompt.messages(&ex.text), schema.clone(), seed);
                    let rec = label_one(
                        spec,
                        client,
                        interp,
                        cache.as_ref(),
                        teacher,
                        url,
                        &body,
                        ex,
                        gauges,
                        stop,
                        &mut jitter,
                    );
                    if tx.send(rec).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        for rec in rx {
            progress.record(&rec, gauges.requests.load(Ordering::Relaxed));
            stats.done += 1;
            stats.cached += u64::from(rec.cached);
            stats.failed += u64::from(rec.failed());
            if let Err(e) = writer.append(&rec) {
                stop.store(true, Ordering::Relaxed);
                return Err(e.into());
            }
        }
        Ok(())
    });
    result?;
    let wall = started.elapsed().as_secs_f64().max(1e-9);
    stats.requests = gauges.requests.load(Ordering::Relaxed);
    stats.utilisation =
        gauges.busy_ns.load(Ordering::Relaxed) as f64 / 1e9 / (wall * spec.concurrency as f64);
    progress.line(&format!(
        "teach: in flight at most {} of {} (utilisation {:.2})",
        gauges.max_in_flight.load(Ordering::Relaxed),
        spec.concurrency,
        stats.utilisation
    ));
    Ok(stats)
}

/// Ask the teacher about one row: the cache, then the endpoint with retries
/// (backoff, `Retry-After`), the answer interpreted into a record exactly as
/// `distill teach` records it, then what the server said is redacted (after
/// interpretation, so redaction never changes a label). `distill serve`
/// calls it for escalations.
#[allow(clippy::too_many_arguments)]
pub fn label_one(
    spec: &OpenAiSpec,
    client: &Client,
    interp: &Interpreter,
    cache: Option<&Cache>,
    teacher: &TeacherId,
    url: &str,
    body: &serde_json::Value,
    ex: &Example,
    gauges: &Gauges,
    stop: &AtomicBool,
    jitter: &mut SplitMix64,
) -> TeacherRecord {
    let mut rec = call_and_interpret(
        spec, client, interp, cache, teacher, url, body, ex, gauges, stop, jitter,
    );
    // Field values become spans of the text the teacher saw (before any
    // redaction of the record); values that cannot be placed are kept, with
    // the reason, after redaction.
    let placed = rec
        .fields
        .as_ref()
        .map(|f| distill_core::spans::align_fields(&ex.text, f));
    client.redactor().record(&mut rec);
    if let Some((spans, _, missing)) = placed {
        rec.spans = Some(spans);
        rec.unaligned = missing
            .into_iter()
            .map(|mut u| {
                u.value = client.redactor().string(&u.value);
                u
            })
            .collect();
    }
    rec
}

#[allow(clippy::too_many_arguments)]
fn call_and_interpret(
    spec: &OpenAiSpec,
    client: &Client,
    interp: &Interpreter,
    cache: Option<&Cache>,
    teacher: &TeacherId,
    url: &str,
    body: &serde_json::Value,
    ex: &Example,
    gauges: &Gauges,
    stop: &AtomicBool,
    jitter: &mut SplitMix64,
) -> TeacherRecord {
    let mut rec = TeacherRecord::new(ex.id.clone(), teacher.clone());
    let key = cache.map(|c| c.key(url, body));
    if let (Some(cache), Some(key)) = (cache, &key)
        && let Some(v) = cache.get(key)
        && let Some(c) = Completion::from_json(&v)
    {
        interp.apply(&c, &mut rec);
        rec.cached = true;
        return rec;
    }
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let t0 = Instant::now();
    let mut attempt = 0u32;
    loop {
        client.wait_for_pause();
        attempt += 1;
        let n = gauges.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        gauges.max_in_flight.fetch_max(n, Ordering::Relaxed);
        gauges.requests.fetch_add(1, Ordering::Relaxed);
        let sent = Instant::now();
        let outcome = client.attempt(&bytes);
        gauges
            .busy_ns
            .fetch_add(sent.elapsed().as_nanos() as u64, Ordering::Relaxed);
        gauges.in_flight.fetch_sub(1, Ordering::Relaxed);
        match outcome {
            Attempt::Ok(v) => {
                rec.latency_ms = t0.elapsed().as_secs_f64() * 1e3;
                rec.attempts = attempt;
                match Completion::from_json(&v) {
                    Some(c) => {
                        interp.apply(&c, &mut rec);
                        rec.cost = spec.price.cost(&rec.usage);
                        if let (Some(cache), Some(key)) = (cache, &key) {
                            // Stored redacted (the key by the request's hash).
                            let (mut request, mut response) = (body.clone(), v);
                            client.redactor().value(&mut request);
                            client.redactor().response(&mut response);
                            if let Err(e) = cache.put(key, &request, &response) {
                                eprintln!("warning: cache write failed: {e}");
                            }
                        }
                    }
                    None => {
                        rec.error = Some(RecordError {
                            kind: "invalid-response".into(),
                            message: "no choices[0]".into(),
                        })
                    }
                }
                return rec;
            }
            Attempt::Fatal { kind, message } => {
                rec.latency_ms = t0.elapsed().as_secs_f64() * 1e3;
                rec.attempts = attempt;
                rec.error = Some(RecordError { kind, message });
                return rec;
            }
            Attempt::Retry {
                kind,
                message,
                retry_after,
            } => {
                if attempt > spec.max_retries || stop.load(Ordering::Relaxed) {
                    rec.latency_ms = t0.elapsed().as_secs_f64() * 1e3;
                    rec.attempts = attempt;
                    rec.error = Some(RecordError {
                        kind,
                        message: format!("{message} (after {attempt} attempts)"),
                    });
                    return rec;
                }
                rec.retried.push(kind);
                let wait = retry_after.unwrap_or_else(|| {
                    backoff(
                        attempt - 1,
                        spec.backoff_initial_ms,
                        spec.backoff_max_ms,
                        jitter.next_f64(),
                    )
                });
                std::thread::sleep(wait);
            }
        }
    }
}

/// Progress: a bar on a terminal, a line every 10 s otherwise.
pub struct Progress {
    bar: distill_core::progress::Bar,
    total: u64,
    done: u64,
    cached: u64,
    failed: u64,
    tokens: u64,
    cost: f64,
    started: Instant,
    start_done: u64,
}

impl Progress {
    pub fn new(interactive: bool, total: u64, done: u64) -> Self {
        Progress {
            bar: distill_core::progress::Bar::new(
                interactive,
                total,
                done,
                "{spinner} teach [{bar:30}] {pos}/{len}  {msg}  ETA {eta}",
            ),
            total,
            done,
            cached: 0,
            failed: 0,
            tokens: 0,
            cost: 0.0,
            started: Instant::now(),
            start_done: done,
        }
    }

    pub fn record(&mut self, rec: &TeacherRecord, requests: u64) {
        self.done += 1;
        self.cached += u64::from(rec.cached);
        self.failed += u64::from(rec.failed());
        if !rec.cached {
            self.tokens += rec.usage.prompt_tokens + rec.usage.completion_tokens;
            self.cost += rec.cost;
        }
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-9);
        let msg = format!(
            "cached {}  failed {}  {:.1} req/s  {} tok  ${:.4}",
            self.cached,
            self.failed,
            requests as f64 / elapsed,
            self.tokens,
            self.cost
        );
        let (done, total) = (self.done, self.total);
        let rate = (done - self.start_done) as f64 / elapsed;
        self.bar.update(done, None, msg, done == total, |msg| {
            let eta = (total - done) as f64 / rate.max(1e-9);
            format!("teach: {done}/{total}  {msg}  ETA {eta:.0}s")
        });
    }

    pub fn line(&self, text: &str) {
        self.bar.line(text);
    }

    pub fn finish(&self) {
        self.bar.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AnswerFormat;
    use serde_json::json;

    fn spec(base_url: &str) -> OpenAiSpec {
        toml::from_str(&format!(
            "base-url = \"{base_url}\"\nmodel = \"m\"\nlogprobs = false\nmax-retries = 0\ntimeout-s = 10.0"
        ))
        .unwrap()
    }

    fn answer(content: &str) -> (u16, String) {
        let body = json!({
            "model": "m",
            "choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2}
        });
        (200, body.to_string())
    }

    fn label(
        spec: &OpenAiSpec,
        client: &Client,
        labels: &[&str],
        cache: Option<&Cache>,
    ) -> TeacherRecord {
        let labels: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
        let interp = Interpreter::new(Task::Classify, &labels, &[], AnswerFormat::Label);
        let teacher = TeacherId {
            kind: "openai".into(),
            model: "m".into(),
            params_hash: "h".into(),
        };
        let ex = Example {
            id: "a".into(),
            text: "some text".into(),
            label: None,
            labels: None,
            spans: None,
            split: None,
            source: "s".into(),
            line: 1,
            source_id: None,
        };
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "some text"}]});
        label_one(
            spec,
            client,
            &interp,
            cache,
            &teacher,
            &spec.base_url,
            &body,
            &ex,
            &Gauges::default(),
            &AtomicBool::new(false),
            &mut SplitMix64(1),
        )
    }

    /// Labels are parsed from the answer as the server sent it: a phrase that
    /// looks like a `Bearer` token stays a label; the stored output is redacted.
    #[test]
    fn redaction_never_changes_a_parsed_label() {
        let url = crate::test_server::serve(vec![answer("bearer instruments")]);
        let s = spec(&url);
        let client = Client::new(&s).unwrap();
        let rec = label(&s, &client, &["bearer_instruments", "cash"], None);
        assert!(!rec.failed(), "{:?}", rec.error);
        assert_eq!(rec.label.as_deref(), Some("bearer_instruments"));
        assert_eq!(rec.output.as_deref(), Some("bearer [REDACTED]"));
    }

    /// A placeholder key (`x`) is not a secret: `exchange_rate` stays whole.
    #[test]
    fn a_placeholder_key_leaves_labels_and_outputs_alone() {
        let url = crate::test_server::serve(vec![answer("exchange_rate")]);
        let s = spec(&url);
        let client = Client::with_key(&s, Some("x".into())).unwrap();
        let rec = label(&s, &client, &["exchange_rate", "tax"], None);
        assert_eq!(rec.label.as_deref(), Some("exchange_rate"));
        assert_eq!(rec.output.as_deref(), Some("exchange_rate"));
    }

    /// The cache keeps no key, and a response read back from it is
    /// interpreted as it was when it came.
    #[test]
    fn cached_responses_hold_no_key_and_label_alike() {
        let key = "sk-live-0123456789";
        let (status, body) = answer("bearer instruments");
        let mut body: serde_json::Value = serde_json::from_str(&body).unwrap();
        body["system_fingerprint"] = json!(format!("echo: Bearer {key}"));
        // One response only: the second label must come from the cache.
        let url = crate::test_server::serve(vec![(status, body.to_string())]);
        let s = spec(&url);
        let client = Client::with_key(&s, Some(key.into())).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_path_buf());
        let fresh = label(&s, &client, &["bearer_instruments", "cash"], Some(&cache));
        assert_eq!(fresh.label.as_deref(), Some("bearer_instruments"));
        assert!(!fresh.cached);
        let again = label(&s, &client, &["bearer_instruments", "cash"], Some(&cache));
        assert!(again.cached, "{:?}", again.error);
        assert_eq!(again.label, fresh.label);
        assert_eq!(again.output, fresh.output);
        let mut stored = String::new();
        for sub in std::fs::read_dir(dir.path()).unwrap() {
            for f in std::fs::read_dir(sub.unwrap().path()).unwrap() {
                stored.push_str(&std::fs::read_to_string(f.unwrap().path()).unwrap());
            }
        }
        assert!(stored.contains("bearer instruments"), "{stored}");
        assert!(!stored.contains(key), "{stored}");
    }

    /// A killed run's temporary files in the out directory are removed once
    /// the lock is taken; nothing else is.
    #[test]
    fn stale_temp_files_of_a_killed_teach_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("t");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join(".distill-k1ll3d.tmp"), "half").unwrap();
        std::fs::write(out.join("logs.jsonl"), "").unwrap();
        let lock = lock_out_dir(&out).unwrap();
        assert!(!out.join(".distill-k1ll3d.tmp").exists());
        assert!(out.join("logs.jsonl").exists());
        drop(lock);
    }
}
