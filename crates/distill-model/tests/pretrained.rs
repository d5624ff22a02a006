//! The pretrained encoder against an independent reference: sentence
//! embeddings of real banking77 texts from distill's burn module match a
//! NumPy forward pass of the same safetensors (`scripts/bert_numpy.py`)
//! within 1e-4. Needs MiniLM-L6 from `scripts/install-teachers.sh` (CI runs
//! it) and NumPy from `scripts/install-onnxruntime.sh`.

use distill_model::bert::{self, BertModel};
use distill_model::model::Batch;
use distill_model::spec::{Pooling, PretrainedSpec};
use distill_testkit::install::{minilm_dir, onnx_python as python, repo};
use std::process::Command;

fn banking77_texts(n: usize) -> Vec<String> {
    let path = repo().join("../shared/datasets/banking77/test.csv");
    let mut r = csv::Reader::from_path(path).expect("banking77");
    r.records()
        .take(n)
        .map(|rec| rec.expect("row")[0].to_string())
        .collect()
}

#[test]
fn minilm_embeddings_match_numpy_reference() {
    let dir = minilm_dir();
    let spec = PretrainedSpec {
        path: Some(dir.clone()),
        max_len: 128,
        pooling: None,
        normalize: None,
        dropout: None,
        arch: None,
        head_scale: None,
    };
    let spec = bert::resolve(&spec, &dir).expect("resolve");
    assert_eq!(spec.pooling, Some(Pooling::Mean));
    assert_eq!(spec.normalize, Some(true));
    assert_eq!(
        spec.arch.as_ref().map(|a| (a.layers, a.hidden)),
        Some((6, 384))
    );
    let device = burn::prelude::Device::flex();
    let model = bert::load_checkpoint(BertModel::new(&spec, 2, &device), &dir).expect("load");
    let tok = bert::load_tokenizer(&dir, spec.max_len).expect("tokenizer");
    // BERT uncased's well-known ids: [CLS] hello world [SEP].
    assert_eq!(tok.encode("Hello world"), vec![101, 7592, 2088, 102]);

    let rows: usize = std::env::var("PARITY_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let texts = banking77_texts(rows);
    let ids: Vec<Vec<u32>> = texts.iter().map(|t| tok.encode(t)).collect();
    // Padded batches of mixed lengths: masking must not change a sentence.
    let mut embeddings: Vec<Vec<f32>> = Vec::new();
    for chunk in ids.chunks(32) {
        let refs: Vec<&[u32]> = chunk.iter().map(Vec::as_slice).collect();
        let b = Batch::new(&refs, &device);
        let e = model.embed(b.ids, b.mask);
        let [n, d] = e.dims();
        let flat = e
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("f32");
        assert_eq!(flat.len(), n * d);
        embeddings.extend(flat.chunks(d).map(<[f32]>::to_vec));
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let req = tmp.path().join("req.json");
    std::fs::write(
        &req,
        serde_json::to_vec(&serde_json::json!({
            "ids": ids, "embeddings": embeddings, "pooling": "mean", "normalize": true
        }))
        .expect("json"),
    )
    .expect("write");
    let out = Command::new(python())
        .arg(repo().join("scripts/bert_numpy.py"))
        .arg(&dir)
        .arg(&req)
        .output()
        .expect("numpy reference");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let res: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let diff = res["max_abs_diff"].as_f64().expect("diff");
    eprintln!("parity over {rows} banking77 texts: max |Δ| = {diff:.2e}");
    assert_eq!(res["rows"].as_u64(), Some(rows as u64));
    assert!(diff < 1e-4, "max abs difference {diff} >= 1e-4");
}

#[test]
fn a_missing_tensor_is_named() {
    let dir = minilm_dir();
    let tmp = tempfile::tempdir().expect("tmp");
    // A checkpoint whose config claims 7 layers: layer 6 has no tensors.
    for f in ["model.safetensors", "tokenizer.json"] {
        std::os::unix::fs::symlink(dir.join(f), tmp.path().join(f)).expect("link");
    }
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).expect("cfg"))
            .expect("json");
    cfg["num_hidden_layers"] = 7.into();
    std::fs::write(tmp.path().join("config.json"), cfg.to_string()).expect("write");
    let spec = PretrainedSpec {
        path: None,
        max_len: 16,
        pooling: None,
        normalize: None,
        dropout: None,
        arch: None,
        head_scale: None,
    };
    let spec = bert::resolve(&spec, tmp.path()).expect("resolve");
    let device = burn::prelude::Device::flex();
    let err = bert::load_checkpoint(BertModel::new(&spec, 2, &device), tmp.path())
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("encoder.layer.6.attention.self_attn.query.weight"),
        "{err}"
    );

    cfg["model_type"] = "gpt2".into();
    std::fs::write(tmp.path().join("config.json"), cfg.to_string()).expect("write");
    let err = bert::resolve(&spec, tmp.path())
        .expect_err("refused")
        .to_string();
    assert!(err.contains("model_type `gpt2` is not supported"), "{err}");
}
