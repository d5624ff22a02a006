//! `distill export` and `distill predict`.

use crate::CmdResult;
use anyhow::Context;
use clap::Args;
use distill_core::types::Task;
use distill_export::bundle::{ExportRequest, Format, Quantize, export, verify};
use distill_model::artifact::Predictor;
use distill_model::device::DeviceKind;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::PathBuf;

#[derive(Args)]
pub struct ExportArgs {
    /// A finished run directory.
    run: PathBuf,
    /// onnx (for onnxruntime and other runtimes) or burn (for `distill predict`).
    #[arg(long, default_value = "onnx")]
    format: Format,
    /// Weight precision: none (f32), f16 or int8.
    #[arg(long, default_value = "none")]
    quantize: Quantize,
    /// Bundle directory (default: RUN/bundles/<format>-<precision>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Reference rows (test split) written to verify.jsonl for other runtimes; 0 skips.
    #[arg(long, default_value_t = 200)]
    verify_rows: usize,
}

pub fn run_export(args: ExportArgs) -> CmdResult {
    let (out, m) = export(&ExportRequest {
        run: distill_train::run::resolve_latest(&args.run),
        format: args.format,
        quantize: args.quantize,
        out: args.out,
        verify_rows: args.verify_rows,
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
            .and_then(|e| e["threshold"].as_f64())
            .map(|t| format!("{t:.4}"))
            .unwrap_or_else(|| "none (run `distill eval` first to ship one)".into())
    );
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
    /// Texts per forward pass.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Alternatives listed per prediction.
    #[arg(long, default_value_t = 3)]
    top_k: usize,
    /// cpu | ndarray | wgpu.
    #[arg(long, default_value = "cpu")]
    device: DeviceKind,
    /// Also time the predictor: single-example latency over the first N inputs
    /// (featurize + forward + softmax, model already loaded) and batch
    /// throughput over all inputs; one JSON line on stderr.
    #[arg(long, value_name = "N")]
    timing: Option<usize>,
}

fn timing(predictor: &Predictor, inputs: &[Input], n: usize, batch_size: usize) -> Value {
    let texts: Vec<&str> = inputs.iter().map(|i| i.text.as_str()).collect();
    let lat = distill_eval::eval::single_latencies_ms(predictor, &texts, n, 20);
    let pct = |q: f64| distill_eval::eval::percentile(&lat, q) * 1e3;
    let s = std::time::Instant::now();
    let _ = predictor.predict_proba(&texts, batch_size);
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

fn read_stdin() -> anyhow::Result<(Vec<Input>, usize)> {
    let mut raw = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut raw)
        .context("reading stdin")?;
    let mut inputs = Vec::new();
    let mut rejected = 0;
    for (n, line) in raw.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let Ok(text) = std::str::from_utf8(line) else {
            eprintln!("stdin line {}: invalid UTF-8, skipped", n + 1);
            rejected += 1;
            continue;
        };
        if text.trim_start().starts_with('{') {
            match serde_json::from_str::<Value>(text) {
                Ok(v) => match v.get("text").and_then(|t| t.as_str()) {
                    Some(t) => inputs.push(Input {
                        id: v.get("id").cloned(),
                        text: t.to_string(),
                    }),
                    None => {
                        eprintln!(
                            "stdin line {}: JSON without a \"text\" string, skipped",
                            n + 1
                        );
                        rejected += 1;
                    }
                },
                Err(e) => {
                    eprintln!("stdin line {}: invalid JSON ({e}), skipped", n + 1);
                    rejected += 1;
                }
            }
        } else {
            inputs.push(Input {
                id: None,
                text: text.to_string(),
            });
        }
    }
    Ok((inputs, rejected))
}

pub fn run_predict(args: PredictArgs) -> CmdResult {
    let bundle = distill_train::run::resolve_latest(&args.bundle);
    let m = verify(&bundle)?;
    if m.format != Format::Burn {
        return Err(anyhow::anyhow!(
            "{}: an ONNX bundle runs in onnxruntime (or another ONNX runtime); `distill predict` runs burn bundles: `distill export RUN --format burn`",
            args.bundle.display()
        )
        .into());
    }
    let predictor = Predictor::load(&bundle, args.device)?;
    let (inputs, rejected) = if args.texts.is_empty() || args.texts == ["-"] {
        read_stdin()?
    } else {
        (
            args.texts
                .iter()
                .map(|t| Input {
                    id: None,
                    text: t.clone(),
                })
                .collect(),
            0,
        )
    };
    let temperature = m
        .calibration
        .as_ref()
        .and_then(|c| c["temperature"].as_f64())
        .unwrap_or(1.0);
    let threshold = args
        .threshold
        .or_else(|| m.escalation.as_ref().and_then(|e| e["threshold"].as_f64()));
    let limit = match &predictor.meta.spec {
        distill_model::spec::ModelSpec::Bag(b) => b.max_features,
        distill_model::spec::ModelSpec::Encoder(e) => e.max_len,
    };
    if let Some(n) = args.timing {
        eprintln!("timing {}", timing(&predictor, &inputs, n, args.batch_size));
    }
    let labels = &predictor.meta.labels;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut truncated = 0usize;
    let mut escalated = 0usize;
    for chunk in inputs.chunks(args.batch_size.max(1)) {
        let texts: Vec<&str> = chunk.iter().map(|i| i.text.as_str()).collect();
        let seqs = predictor.featurizer.encode_all(&texts);
        truncated += seqs.iter().filter(|ids| ids.len() >= limit).count();
        let probs = predictor.predict_seqs(&seqs, args.batch_size);
        for (input, p) in chunk.iter().zip(probs) {
            let mut line = match predictor.meta.task {
                Task::Multilabel => {
                    let on: Vec<&String> = labels
                        .iter()
                        .zip(&p)
                        .filter(|(_, x)| **x >= 0.5)
                        .map(|(l, _)| l)
                        .collect();
                    let probs: serde_json::Map<String, Value> = labels
                        .iter()
                        .zip(&p)
                        .map(|(l, x)| (l.clone(), json!(x)))
                        .collect();
                    json!({"labels": on, "probs": probs})
                }
                _ => {
                    let cal = distill_eval::calibrate::apply(&p, temperature);
                    let mut order: Vec<usize> = (0..cal.len()).collect();
                    order.sort_by(|&a, &b| cal[b].total_cmp(&cal[a]));
                    let conf = cal[order[0]];
                    let escalate = threshold.map(|t| conf < t);
                    escalated += usize::from(escalate == Some(true));
                    let top: Vec<Value> = order
                        .iter()
                        .take(args.top_k)
                        .map(|&i| json!([labels[i], cal[i]]))
                        .collect();
                    json!({"label": labels[order[0]], "confidence": conf, "top": top, "escalate": escalate})
                }
            };
            if let Some(id) = &input.id {
                line["id"] = id.clone();
            }
            serde_json::to_writer(&mut out, &line)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    eprintln!(
        "predicted {} inputs ({} escalated{}){}{}",
        inputs.len(),
        escalated,
        threshold
            .map(|t| format!(" below {t:.4}"))
            .unwrap_or_else(|| ", no threshold in the bundle".into()),
        if truncated > 0 {
            format!("; {truncated} truncated to the model's max length ({limit})")
        } else {
            String::new()
        },
        if rejected > 0 {
            format!("; {rejected} stdin lines rejected")
        } else {
            String::new()
        }
    );
    Ok(())
}
