//! `distill export` and `distill predict`.

use crate::CmdResult;
use anyhow::Context;
use clap::Args;
use distill_export::BundlePredictor;
use distill_export::bundle::{ExportRequest, Format, Quantize, export};
use distill_model::device::DeviceKind;
use serde_json::{Value, json};
use std::io::{BufRead, Write};
use std::path::PathBuf;

#[derive(Args)]
pub struct ExportArgs {
    /// A finished run directory.
    run: PathBuf,
    /// onnx (for onnxruntime and other runtimes) or burn (for `distill
    /// predict`). Default: onnx, or burn for a tagger (its only format).
    #[arg(long)]
    format: Option<Format>,
    /// Weight precision: none (f32), f16 or int8.
    #[arg(long, default_value = "none")]
    quantize: Quantize,
    /// Bundle directory (default: RUN/bundles/<format>-<precision>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Reference rows (test split: text, ids, logits, gold label) written to
    /// verify.jsonl to check another runtime against; off by default, since
    /// they are real data and a bundle may leave the workbench.
    #[arg(long, default_value_t = 0)]
    verify_rows: usize,
    /// Prune a bag to the N most useful embedding rows (of those its
    /// training features use); the featurizer drops the others.
    #[arg(long, value_name = "N", conflicts_with = "max_bytes")]
    prune_rows: Option<usize>,
    /// Prune a bag to the most rows that keep the bundle (every file but the
    /// optional verify.jsonl) at most this size: bytes, or with a unit (500KB, 1MB = 10^3, 10^6; KiB, MiB = 2^10, 2^20).
    #[arg(long, value_name = "SIZE", value_parser = parse_budget)]
    max_bytes: Option<u64>,
}

/// A size budget: [`crate::teach::parse_size`]'s units, at least one byte.
pub fn parse_budget(s: &str) -> Result<u64, String> {
    match crate::teach::parse_size(s)? {
        0 => Err(format!("{s:?}: a budget must be at least one byte")),
        n => Ok(n),
    }
}

pub fn run_export(args: ExportArgs) -> CmdResult {
    let run = distill_train::run::resolve_latest(&args.run);
    if crate::extract::is_tagger(&run) {
        if args.prune_rows.is_some() || args.max_bytes.is_some() || args.verify_rows > 0 {
            return Err(anyhow::anyhow!(
                "--prune-rows, --max-bytes and --verify-rows apply to bag and encoder bundles, not to a tagger"
            )
            .into());
        }
        return Ok(crate::extract::export(
            &run,
            args.format.unwrap_or(Format::Burn),
            args.quantize,
            args.out,
        )?);
    }
    let (out, m) = export(&ExportRequest {
        run: distill_train::run::resolve_latest(&args.run),
        format: args.format.unwrap_or(Format::Onnx),
        quantize: args.quantize,
        out: args.out,
        verify_rows: args.verify_rows,
        prune: match (args.prune_rows, args.max_bytes) {
            (Some(n), _) => Some(distill_export::bundle::Prune::Rows(n)),
            (_, Some(b)) => Some(distill_export::bundle::Prune::MaxBytes(b)),
            _ => None,
        },
    })?;
    let total: u64 = m.files.values().map(|f| f.bytes).sum();
    let model_file = m
        .files
        .iter()
        .find(|(n, _)| n.as_str() == "model.onnx" || n.as_str() == "weights.bpk")
        .map(|(n, f)| format!("{n} {} bytes", f.bytes))
        .unwrap_or_default();
    eprintln!(
        "exported {} ({:?}, {:?}): {model_file}, {} files, {total} bytes in all; escalation threshold {}",
        m.model_kind,
        m.format,
        m.quantize,
        m.files.len(),
        m.escalation
            .as_ref()
            .map(|e| format!("{:.4} (temperature {:.3})", e.threshold, e.temperature))
            .unwrap_or_else(|| "none (run `distill eval` first to ship one)".into())
    );
    if let Some(rows) = m.metrics.get("pruned_rows") {
        let pct = |k: &str| m.metrics.get(k).map(|v| format!("{:.2}%", v * 100.0));
        let pair = |split: &str| match (
            pct(&format!("unpruned_{split}_accuracy")),
            pct(&format!("{split}_accuracy")),
        ) {
            (Some(a), Some(b)) => format!("{split} accuracy {a} -> {b}"),
            _ => String::new(),
        };
        eprintln!(
            "pruned to {rows} embedding rows: {}; {}; bundle {total} bytes",
            pair("val"),
            pair("test")
        );
    }
    println!("{}", out.display());
    Ok(())
}

#[derive(Args)]
pub struct PredictArgs {
    /// A bundle directory (`distill export --format burn`).
    #[arg(long)]
    bundle: PathBuf,
    /// Texts to classify; none or `-` reads lines (plain text or JSON with "text" and optional "id") from stdin.
    texts: Vec<String>,
    /// Escalate below this calibrated confidence (default: the bundle's threshold).
    #[arg(long)]
    threshold: Option<f64>,
    /// Texts per forward pass (stdin is answered as soon as no more input is waiting).
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Alternatives listed per prediction.
    #[arg(long, default_value_t = 3)]
    top_k: usize,
    /// A label that always escalates (e.g. the out-of-scope label).
    #[arg(long, value_name = "LABEL")]
    escalate_label: Option<String>,
    /// Longest stdin line read, in bytes; longer lines are reported and skipped.
    #[arg(long, default_value_t = 1 << 20)]
    max_line_bytes: usize,
    /// cpu | ndarray | wgpu.
    #[arg(long, default_value = "cpu")]
    device: DeviceKind,
    /// Also time the predictor: single-example latency over the first N inputs
    /// (preprocess + featurize + forward + softmax, model already loaded) and
    /// batch throughput over all inputs; one JSON line on stderr.
    #[arg(long, value_name = "N")]
    timing: Option<usize>,
}

fn timing(predictor: &BundlePredictor, texts: &[&str], n: usize, batch_size: usize) -> Value {
    let lat = distill_eval::eval::single_latencies_ms(predictor.model(), texts, n, 20);
    let pct = |q: f64| distill_eval::eval::percentile(&lat, q) * 1e3;
    let s = std::time::Instant::now();
    let _ = predictor.probs(texts, batch_size);
    let batch_s = s.elapsed().as_secs_f64();
    json!({
        "single_rows": lat.len(), "p50_us": pct(0.5), "p99_us": pct(0.99),
        "batch_rows": texts.len(), "batch_size": batch_size, "rows_per_s": texts.len() as f64 / batch_s.max(1e-9),
        "threads": rayon::current_num_threads(),
    })
}

struct Input {
    id: Option<Value>,
    text: String,
}

/// One stdin line, read with a bound: `Ok(None)` at the end of input,
/// `Err(len)` for a line longer than `max` (consumed and skipped).
fn read_line_bounded(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<Result<(), usize>>> {
    buf.clear();
    let mut too_long = 0usize;
    loop {
        let available = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            if buf.is_empty() && too_long == 0 {
                return Ok(None);
            }
            break;
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let n = chunk.len();
        if too_long > 0 || buf.len() + n > max + 1 {
            too_long += buf.len() + n;
            buf.clear();
        } else {
            buf.extend_from_slice(chunk);
        }
        reader.consume(n);
        if done {
            break;
        }
    }
    if too_long > 0 {
        return Ok(Some(Err(too_long)));
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Some(Ok(())))
}

/// Read stdin line by line (bounded, see [`read_line_bounded`]) and call
/// `each` after every line with its input (`None` for a rejected or empty
/// line) and whether more input is already waiting. Returns the number of
/// rejected lines.
fn stdin_inputs(
    max_line_bytes: usize,
    mut each: impl FnMut(Option<Input>, bool) -> anyhow::Result<()>,
) -> anyhow::Result<usize> {
    let mut reader = std::io::BufReader::with_capacity(1 << 16, std::io::stdin().lock());
    let mut buf = Vec::new();
    let (mut line_no, mut rejected) = (0usize, 0usize);
    while let Some(r) =
        read_line_bounded(&mut reader, &mut buf, max_line_bytes).context("reading stdin")?
    {
        line_no += 1;
        let input = match r {
            Err(len) => {
                eprintln!(
                    "stdin line {line_no}: {len} bytes, longer than --max-line-bytes {max_line_bytes}, skipped"
                );
                rejected += 1;
                None
            }
            Ok(()) if buf.is_empty() => None,
            Ok(()) => {
                let parsed = parse_line(line_no, &buf);
                rejected += usize::from(parsed.is_none());
                parsed
            }
        };
        each(input, !reader.buffer().is_empty())?;
    }
    Ok(rejected)
}

/// Parse one stdin line: plain text, or JSON with `text` and an optional `id`.
fn parse_line(n: usize, line: &[u8]) -> Option<Input> {
    let Ok(text) = std::str::from_utf8(line) else {
        eprintln!("stdin line {n}: invalid UTF-8, skipped");
        return None;
    };
    if !text.trim_start().starts_with('{') {
        return Some(Input {
            id: None,
            text: text.to_string(),
        });
    }
    match serde_json::from_str::<Value>(text) {
        Ok(v) => match v.get("text").and_then(|t| t.as_str()) {
            Some(t) => Some(Input {
                id: v.get("id").cloned(),
                text: t.to_string(),
            }),
            None => {
                eprintln!("stdin line {n}: JSON without a \"text\" string, skipped");
                None
            }
        },
        Err(e) => {
            eprintln!("stdin line {n}: invalid JSON ({e}), skipped");
            None
        }
    }
}

/// Every stdin input at once (for `--timing`), and the lines rejected.
fn all_stdin_inputs(max_line_bytes: usize) -> anyhow::Result<(Vec<Input>, usize)> {
    let mut all = Vec::new();
    let rejected = stdin_inputs(max_line_bytes, |input, _| {
        all.extend(input);
        Ok(())
    })?;
    Ok((all, rejected))
}

#[derive(Default)]
struct Tally {
    inputs: usize,
    escalated: usize,
    truncated: usize,
    rejected: usize,
}

/// Answer one batch and write its lines (flushed, so a reader sees them now).
fn answer(
    predictor: &BundlePredictor,
    batch: &[Input],
    batch_size: usize,
    out: &mut impl Write,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let texts: Vec<&str> = batch.iter().map(|i| i.text.as_str()).collect();
    for (input, p) in batch.iter().zip(predictor.predict(&texts, batch_size)) {
        tally.inputs += 1;
        tally.escalated += usize::from(p.escalate == Some(true));
        tally.truncated += usize::from(p.truncated);
        let mut line = p.to_json();
        if let Some(id) = &input.id {
            line["id"] = id.clone();
        }
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

pub fn run_predict(args: PredictArgs) -> CmdResult {
    let bundle = distill_train::run::resolve_latest(&args.bundle);
    if crate::extract::is_tagger(&bundle) {
        return Ok(predict_tagger(&args, &bundle)?);
    }
    let predictor = BundlePredictor::load(&bundle, args.device)?
        .with_threshold(args.threshold)
        .with_top_k(args.top_k)
        .with_always_escalate(args.escalate_label.as_deref())?;
    let batch_size = args.batch_size.max(1);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut tally = Tally::default();
    let from_stdin = args.texts.is_empty() || args.texts == ["-"];
    if !from_stdin {
        let inputs: Vec<Input> = args
            .texts
            .iter()
            .map(|t| Input {
                id: None,
                text: t.clone(),
            })
            .collect();
        if let Some(n) = args.timing {
            let texts: Vec<&str> = inputs.iter().map(|i| i.text.as_str()).collect();
            eprintln!("timing {}", timing(&predictor, &texts, n, batch_size));
        }
        for chunk in inputs.chunks(batch_size) {
            answer(&predictor, chunk, batch_size, &mut out, &mut tally)?;
        }
    } else if let Some(n) = args.timing {
        // Timing needs every input up front.
        let (all, rejected) = all_stdin_inputs(args.max_line_bytes)?;
        tally.rejected += rejected;
        let texts: Vec<&str> = all.iter().map(|i| i.text.as_str()).collect();
        eprintln!("timing {}", timing(&predictor, &texts, n, batch_size));
        for chunk in all.chunks(batch_size) {
            answer(&predictor, chunk, batch_size, &mut out, &mut tally)?;
        }
    } else {
        // Stream: answer a batch when it is full or when no more input is
        // already waiting, so an interactive caller gets each answer at once
        // and a bulk pipe gets batches; memory is bounded by one batch.
        let mut batch: Vec<Input> = Vec::with_capacity(batch_size);
        let mut answered = Tally::default();
        let rejected = stdin_inputs(args.max_line_bytes, |input, waiting| {
            batch.extend(input);
            if !batch.is_empty() && (batch.len() >= batch_size || !waiting) {
                answer(&predictor, &batch, batch_size, &mut out, &mut answered)?;
                batch.clear();
            }
            Ok(())
        })?;
        tally = Tally {
            rejected: tally.rejected + rejected,
            ..answered
        };
        if !batch.is_empty() {
            answer(&predictor, &batch, batch_size, &mut out, &mut tally)?;
        }
    }
    out.flush()?;
    eprintln!(
        "{}",
        tally.summary(
            "predicted",
            predictor.rule().threshold,
            "the model's max length"
        )
    );
    Ok(())
}

impl Tally {
    /// The closing stderr line of `distill predict`.
    fn summary(&self, verb: &str, threshold: Option<f64>, limit: &str) -> String {
        format!(
            "{verb} {} inputs ({} escalated{}){}{}",
            self.inputs,
            self.escalated,
            threshold
                .map(|t| format!(" below {t:.4}"))
                .unwrap_or_else(|| ", no threshold in the bundle".into()),
            if self.truncated > 0 {
                format!("; {} truncated to {limit}", self.truncated)
            } else {
                String::new()
            },
            if self.rejected > 0 {
                format!("; {} stdin lines rejected", self.rejected)
            } else {
                String::new()
            }
        )
    }
}

/// `distill predict` with a tagger: one answer line per input, written as
/// soon as it is computed.
fn predict_tagger(args: &PredictArgs, dir: &std::path::Path) -> anyhow::Result<()> {
    let predictor = crate::extract::TaggerPredictor::load(dir, args.threshold)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut tally = Tally::default();
    let write = |input: &Input, out: &mut dyn Write, tally: &mut Tally| -> anyhow::Result<()> {
        let (mut line, x) = predictor.answer(&input.text);
        if let Some(id) = &input.id {
            line["id"] = id.clone();
        }
        tally.inputs += 1;
        tally.escalated += usize::from(line["escalate"] == json!(true));
        tally.truncated += usize::from(x.truncated);
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")?;
        Ok(())
    };
    let from_stdin = args.texts.is_empty() || args.texts == ["-"];
    if !from_stdin {
        let texts: Vec<&str> = args.texts.iter().map(String::as_str).collect();
        if let Some(n) = args.timing {
            eprintln!("timing {}", predictor.timing(&texts, n));
        }
        for t in &args.texts {
            write(
                &Input {
                    id: None,
                    text: t.clone(),
                },
                &mut out,
                &mut tally,
            )?;
        }
    } else if let Some(n) = args.timing {
        let (all, rejected) = all_stdin_inputs(args.max_line_bytes)?;
        tally.rejected += rejected;
        let texts: Vec<&str> = all.iter().map(|i| i.text.as_str()).collect();
        eprintln!("timing {}", predictor.timing(&texts, n));
        for input in &all {
            write(input, &mut out, &mut tally)?;
        }
    } else {
        let mut answered = Tally::default();
        let rejected = stdin_inputs(args.max_line_bytes, |input, waiting| {
            if let Some(input) = input {
                write(&input, &mut out, &mut answered)?;
            }
            if !waiting {
                out.flush()?;
            }
            Ok(())
        })?;
        tally = Tally {
            rejected,
            ..answered
        };
    }
    out.flush()?;
    eprintln!(
        "{}",
        tally.summary(
            "extracted from",
            predictor.threshold,
            "the tagger's max-tokens"
        )
    );
    Ok(())
}
