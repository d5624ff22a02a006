//! The fast mode of a pretrained student: a frozen encoder's sentence
//! embeddings, computed once per (checkpoint, pooling, texts) and cached by
//! content under `$DISTILL_CACHE/embeddings` (default
//! `~/.cache/distill/embeddings`).
//!
//! A cache file is `DSTEMB1\0`, rows (u64 LE), dim (u64 LE), the f32 LE
//! embeddings, and the sha256 of everything before it. It is read only when
//! its size is exactly what the header says, the header matches the request
//! and the checksum holds; anything else is recomputed (and a failed write
//! only costs the next run the recomputation).

use crate::error::{Error, Result};
use burn::prelude::*;
use distill_model::bert::{BertModel, SAFETENSORS, checkpoint_dir};
use distill_model::model::Batch;
use distill_model::spec::PretrainedSpec;
use std::path::PathBuf;
use std::time::Instant;

const MAGIC: &[u8; 8] = b"DSTEMB1\0";

/// `$DISTILL_CACHE/embeddings` or `~/.cache/distill/embeddings`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DISTILL_CACHE") {
        return PathBuf::from(d).join("embeddings");
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| ".".into())
        .join(".cache/distill/embeddings")
}

/// The sha256 of the checkpoint's weights: part of every cache key (hash
/// it once per run, not once per split).
pub fn weights_digest(spec: &PretrainedSpec) -> Result<String> {
    Ok(distill_core::hash::sha256_file(
        &checkpoint_dir(spec)?.join(SAFETENSORS),
    )?)
}

/// The cache key: the checkpoint's weights, what shapes the embedding, and
/// every id sequence.
fn key(spec: &PretrainedSpec, weights_sha: &str, seqs: &[Vec<u32>]) -> String {
    let mut buf = Vec::with_capacity(256 + seqs.iter().map(|s| 4 * s.len() + 8).sum::<usize>());
    buf.extend_from_slice(b"distill-embeddings-v1\n");
    buf.extend_from_slice(weights_sha.as_bytes());
    let shape = serde_json::json!({
        "arch": spec.arch, "pooling": spec.pooling(), "normalize": spec.normalize,
    });
    buf.extend_from_slice(shape.to_string().as_bytes());
    for s in seqs {
        buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
        for id in s {
            buf.extend_from_slice(&id.to_le_bytes());
        }
    }
    distill_core::hash::sha256_hex(&buf)
}

/// Sentence embeddings `[seqs.len(), hidden]` (row-major) of a frozen
/// encoder in eval mode, from the cache when it has them. `weights_sha`:
/// [`weights_digest`].
pub fn sentence_embeddings(
    model: &BertModel,
    spec: &PretrainedSpec,
    weights_sha: &str,
    seqs: &[Vec<u32>],
    batch_size: usize,
    device: &Device,
) -> Result<Vec<f32>> {
    let dim = model.hidden();
    if seqs.is_empty() {
        return Ok(Vec::new());
    }
    let key = key(spec, weights_sha, seqs);
    let path = cache_dir().join(&key[..2]).join(format!("{key}.f32"));
    if let Some(hit) = read(&path, seqs.len(), dim) {
        eprintln!(
            "embeddings of {} texts from the cache ({})",
            seqs.len(),
            path.display()
        );
        return Ok(hit);
    }
    let start = Instant::now();
    let mut out = vec![0f32; seqs.len() * dim];
    in_length_order(seqs, batch_size, device, |b, chunk| {
        let flat = to_host(model.embed(b.ids, b.mask))?;
        for (row, &i) in flat.chunks(dim).zip(chunk) {
            out[i * dim..(i + 1) * dim].copy_from_slice(row);
        }
        Ok(())
    })?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "embedded {} texts with the frozen encoder in {secs:.1} s ({:.0}/s); cached in {}",
        seqs.len(),
        seqs.len() as f64 / secs.max(1e-9),
        path.display()
    );
    if let Err(e) = write(&path, &out, seqs.len(), dim) {
        eprintln!("warning: could not cache the embeddings: {e}");
    }
    Ok(out)
}

/// Hidden states after the embeddings and the lowest `upto` layers of a
/// frozen encoder, one `[len, hidden]` row-major block per sequence (kept in
/// memory for one run: they are too large to be worth a disk cache).
pub fn hidden_states(
    model: &BertModel,
    upto: usize,
    seqs: &[Vec<u32>],
    batch_size: usize,
    device: &Device,
) -> Result<Vec<Vec<f32>>> {
    let dim = model.hidden();
    let start = Instant::now();
    let mut out = vec![Vec::new(); seqs.len()];
    in_length_order(seqs, batch_size, device, |b, chunk| {
        let [_, s] = b.ids.dims();
        let flat = to_host(model.hidden_upto(upto, b.ids, b.mask))?;
        for (block, &i) in flat.chunks(s * dim).zip(chunk) {
            out[i] = block[..seqs[i].len() * dim].to_vec();
        }
        Ok(())
    })?;
    eprintln!(
        "ran the {upto} frozen layers over {} texts once in {:.1} s",
        seqs.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(out)
}

/// Call `f` on padded batches of `seqs` in length order (batches of similar
/// length pad little), with the sequences' indices.
fn in_length_order(
    seqs: &[Vec<u32>],
    batch_size: usize,
    device: &Device,
    mut f: impl FnMut(Batch, &[usize]) -> Result<()>,
) -> Result<()> {
    let mut order: Vec<usize> = (0..seqs.len()).collect();
    order.sort_by_key(|&i| (seqs[i].len(), i));
    for chunk in order.chunks(batch_size.max(1)) {
        let refs: Vec<&[u32]> = chunk.iter().map(|&i| seqs[i].as_slice()).collect();
        f(Batch::new(&refs, device), chunk)?;
    }
    Ok(())
}

fn to_host<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| Error::Input(format!("embedding: {e:?}")))
}

fn read(path: &std::path::Path, rows: usize, dim: usize) -> Option<Vec<f32>> {
    let want = 24 + (rows * dim * 4) as u64 + 32;
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.file_type().is_file() || meta.len() != want {
        return None;
    }
    let bytes = distill_core::fsutil::read_bounded(path, want).ok()?;
    let (body, sum) = bytes.split_at(bytes.len() - 32);
    if body[..8] != MAGIC[..]
        || u64::from_le_bytes(body[8..16].try_into().ok()?) != rows as u64
        || u64::from_le_bytes(body[16..24].try_into().ok()?) != dim as u64
        || distill_core::hash::sha256_raw(body) != sum
    {
        return None;
    }
    let v: Vec<f32> = body[24..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    v.iter().all(|x| x.is_finite()).then_some(v)
}

fn write(path: &std::path::Path, data: &[f32], rows: usize, dim: usize) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::Input(format!("{}: {e}", parent.display())))?;
    }
    let mut body = Vec::with_capacity(24 + data.len() * 4 + 32);
    body.extend_from_slice(MAGIC);
    body.extend_from_slice(&(rows as u64).to_le_bytes());
    body.extend_from_slice(&(dim as u64).to_le_bytes());
    for x in data {
        body.extend_from_slice(&x.to_le_bytes());
    }
    let sum = distill_core::hash::sha256_raw(&body);
    body.extend_from_slice(&sum);
    distill_core::fsutil::write_atomic(path, |w| w.write_all(&body))?;
    Ok(())
}
