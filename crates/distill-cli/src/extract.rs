//! Extraction (tagger) runs in `distill eval`, `distill export` and
//! `distill predict`.

use anyhow::{Context, bail};
use distill_core::bundle::{Format, Quantize};
use distill_eval::extract::{SUITE, tagger_dir};
use distill_model::tagger::{Dtype, Extraction, Tagger};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// Whether `dir` (a run or a bundle) holds a tagger.
pub fn is_tagger(dir: &Path) -> bool {
    tagger_dir(dir).is_some()
}

/// `distill eval` on a tagger run.
pub fn eval(run: &Path, target: f64, delta: f64, format: &str) -> anyhow::Result<()> {
    if !(0.0 < target && target < 1.0 && 0.0 < delta && delta < 1.0) {
        bail!("--target {target} and --delta {delta} must be in (0, 1)");
    }
    let (report, out) = distill_eval::extract::evaluate_run(run, target, delta)?;
    if format == "json" {
        crate::out::println(serde_json::to_string_pretty(&report)?)?;
    } else {
        crate::out::print(distill_eval::extract::markdown(&report))?;
        crate::out::println(out.display())?;
    }
    Ok(())
}

/// `distill export` of a tagger run: `tagger.json` + `tagger.bin` (f32 or
/// int8 rows), with the threshold `distill eval` certified, if any.
pub fn export(
    run: &Path,
    format: Format,
    quantize: Quantize,
    out: Option<PathBuf>,
) -> anyhow::Result<()> {
    if format != Format::Burn {
        bail!(
            "--format {format:?}: a tagger exports as a distill bundle only (--format burn); ONNX export of the tagger is not built yet"
        );
    }
    let dtype = match quantize {
        Quantize::None => Dtype::F32,
        Quantize::Int8 => Dtype::Int8,
        Quantize::F16 => bail!("--quantize f16: a tagger stores f32 or int8 rows"),
    };
    let model_dir = tagger_dir(run).with_context(|| format!("{}: no tagger", run.display()))?;
    let mut model = Tagger::load(&model_dir)?;
    let report = run.join("eval").join(SUITE).join("report.json");
    if report.is_file() {
        let v: Value = distill_core::fsutil::read_json_bounded(&report, 64 << 20)?;
        model.meta.threshold = v["threshold"]["threshold"].as_f64();
    }
    let name = match dtype {
        Dtype::F32 => "tagger-f32",
        Dtype::Int8 => "tagger-int8",
    };
    let out = out.unwrap_or_else(|| run.join("bundles").join(name));
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same(&out, &model_dir) || same(&out, run) {
        bail!(
            "--out {}: that is the run's own directory; a bundle goes elsewhere (default RUN/bundles/)",
            out.display()
        );
    }
    let _lock = distill_core::lock::DirLock::acquire(&out, "distill export")?;
    let bytes = model.save(&out, dtype)?;
    // The bundle must load as written (sizes, hash, values).
    let back = Tagger::load(&out)?;
    eprintln!(
        "exported tagger ({:?}): {} rows of dim {}, tagger.bin {bytes} bytes; escalation threshold {}",
        dtype,
        back.meta.rows,
        back.meta.spec.dim,
        back.meta
            .threshold
            .map(|t| format!("{t:.4}"))
            .unwrap_or_else(|| "none (run `distill eval` first to ship one)".into())
    );
    crate::out::println(out.display())?;
    Ok(())
}

/// A loaded tagger with its escalation rule.
pub struct TaggerPredictor {
    pub model: Tagger,
    pub threshold: Option<f64>,
}

impl TaggerPredictor {
    pub fn load(dir: &Path, threshold: Option<f64>) -> anyhow::Result<Self> {
        let d = tagger_dir(dir).with_context(|| format!("{}: no tagger", dir.display()))?;
        let model = Tagger::load(&d)?;
        let threshold = threshold.or(model.meta.threshold);
        Ok(TaggerPredictor { model, threshold })
    }

    /// One answer line: `fields: {slot: [{text, start, end, confidence}]}`,
    /// the intent for joint models, the example confidence and `escalate`.
    pub fn answer(&self, text: &str) -> (Value, Extraction) {
        let x = self.model.extract(text);
        let mut fields = serde_json::Map::new();
        for f in &x.fields {
            let list = fields
                .entry(f.label.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(a) = list {
                a.push(json!({"text": f.text, "start": f.start, "end": f.end, "confidence": f.confidence}));
            }
        }
        let mut line = json!({
            "fields": fields,
            "confidence": x.confidence,
            // A truncated text's tail was not read: never answered locally.
            "escalate": self.threshold.map(|t| x.confidence < t || x.truncated),
        });
        if let Some((intent, p)) = &x.intent {
            line["intent"] = json!(intent);
            line["intent_confidence"] = json!(p);
        }
        if x.truncated {
            line["truncated"] = json!(true);
        }
        (line, x)
    }

    /// Single-text latency over the first `n` texts (model loaded), in µs.
    pub fn timing(&self, texts: &[&str], n: usize) -> Value {
        let mut lat: Vec<f64> = Vec::new();
        for _ in 0..5 {
            for t in texts.iter().take(n.max(1)) {
                let s = std::time::Instant::now();
                std::hint::black_box(self.model.extract(t));
                lat.push(s.elapsed().as_secs_f64() * 1e6);
            }
        }
        lat.sort_by(f64::total_cmp);
        let s = std::time::Instant::now();
        for t in texts {
            std::hint::black_box(self.model.extract(t));
        }
        let all = s.elapsed().as_secs_f64();
        json!({
            "single_rows": lat.len(),
            "p50_us": distill_eval::eval::percentile(&lat, 0.5),
            "p99_us": distill_eval::eval::percentile(&lat, 0.99),
            "batch_rows": texts.len(),
            "rows_per_s": texts.len() as f64 / all.max(1e-9),
            "threads": 1,
        })
    }
}
