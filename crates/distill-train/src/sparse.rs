//! Sparse training of the bag student's embedding table.
//!
//! A batch touches a few thousand of the table's rows, but burn's embedding
//! backward produces a dense gradient and AdamW then updates every row: on a
//! 65k x 64 table that is ~95% of a step's time. Here the table lives on the
//! host: pooling (the mean of a row's feature vectors) runs in Rust, burn
//! trains the head from the pooled `[batch, dim]` input, and the gradient it
//! returns for that input is scattered into the touched rows, which a lazy
//! Adam updates (PyTorch's `SparseAdam`: moments of untouched rows stay put;
//! bias correction uses the global step). fastText does the same with SGD.

use crate::error::{Error, Result};

pub struct SparseEmbedding {
    pub rows: usize,
    pub dim: usize,
    pub table: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    step: u64,
    beta1: f32,
    beta2: f32,
    eps: f32,
    // Scratch: accumulated gradient per touched row.
    touched: Vec<u32>,
    grad: Vec<f32>,
    mark: Vec<u32>,
}

impl SparseEmbedding {
    pub fn new(table: Vec<f32>, rows: usize, dim: usize) -> Self {
        SparseEmbedding {
            rows,
            dim,
            m: vec![0.0; table.len()],
            v: vec![0.0; table.len()],
            table,
            step: 0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            touched: Vec::new(),
            grad: Vec::new(),
            mark: vec![u32::MAX; rows],
        }
    }

    /// Mean of each sequence's rows: `[seqs.len(), dim]`, row-major.
    pub fn pool(&self, seqs: &[&[u32]]) -> Vec<f32> {
        distill_model::model::pool_mean(&self.table, self.dim, seqs)
    }

    /// Apply the gradient of the pooled input (`[seqs.len(), dim]`) to the
    /// rows it came from. `clip` > 0 clips the gradient's L2 norm (as burn
    /// does per parameter for the head).
    pub fn update(&mut self, seqs: &[&[u32]], pooled_grad: &[f32], lr: f64, clip: f64) {
        let d = self.dim;
        self.touched.clear();
        self.grad.clear();
        for (r, seq) in seqs.iter().enumerate() {
            let inv = 1.0 / seq.len().max(1) as f32;
            let g = &pooled_grad[r * d..(r + 1) * d];
            for &id in seq.iter() {
                let slot = match self.mark[id as usize] {
                    u32::MAX => {
                        let slot = self.touched.len() as u32;
                        self.mark[id as usize] = slot;
                        self.touched.push(id);
                        self.grad.extend(std::iter::repeat_n(0.0, d));
                        slot
                    }
                    s => s,
                } as usize;
                for (a, x) in self.grad[slot * d..(slot + 1) * d].iter_mut().zip(g) {
                    *a += x * inv;
                }
            }
        }
        if clip > 0.0 {
            let norm = self
                .grad
                .iter()
                .map(|x| f64::from(*x).powi(2))
                .sum::<f64>()
                .sqrt();
            if norm > clip {
                let scale = (clip / norm) as f32;
                self.grad.iter_mut().for_each(|x| *x *= scale);
            }
        }
        self.step += 1;
        let (b1, b2, eps) = (self.beta1, self.beta2, self.eps);
        let t = self.step as i32;
        let c1 = 1.0 - b1.powi(t);
        let c2 = 1.0 - b2.powi(t);
        let lr = lr as f32;
        // Row slices zipped together: no bounds checks in the inner loop,
        // which the compiler then vectorises (sqrt and division included).
        for (slot, &id) in self.touched.iter().enumerate() {
            let base = id as usize * d;
            let g = &self.grad[slot * d..(slot + 1) * d];
            let m = &mut self.m[base..base + d];
            let v = &mut self.v[base..base + d];
            let w = &mut self.table[base..base + d];
            for (((m, v), w), &gk) in m.iter_mut().zip(v.iter_mut()).zip(w.iter_mut()).zip(g) {
                *m = b1 * *m + (1.0 - b1) * gk;
                *v = b2 * *v + (1.0 - b2) * gk * gk;
                let mhat = *m / c1;
                let vhat = *v / c2;
                *w -= lr * mhat / (vhat.sqrt() + eps);
            }
            self.mark[id as usize] = u32::MAX;
        }
    }

    /// Optimizer state (step, moments) as bytes for checkpoints.
    pub fn state_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.m.len() * 8);
        out.extend_from_slice(&self.step.to_le_bytes());
        for x in self.m.iter().chain(&self.v) {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out
    }

    pub fn load_state(&mut self, bytes: &[u8], path: &std::path::Path) -> Result<()> {
        let n = self.m.len();
        if bytes.len() != 8 + n * 8 {
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                message: format!(
                    "sparse optimizer state has {} bytes, expected {}",
                    bytes.len(),
                    8 + n * 8
                ),
            });
        }
        let mut step = [0u8; 8];
        step.copy_from_slice(&bytes[..8]);
        self.step = u64::from_le_bytes(step);
        let floats = bytes[8..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        for (i, x) in floats.enumerate() {
            if i < n {
                self.m[i] = x;
            } else {
                self.v[i - n] = x;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_is_mean_and_update_touches_only_used_rows() {
        let table: Vec<f32> = (0..12).map(|x| x as f32).collect(); // 4 rows x 3
        let mut e = SparseEmbedding::new(table.clone(), 4, 3);
        let seqs: [&[u32]; 2] = [&[1, 3], &[2]];
        assert_eq!(e.pool(&seqs), vec![6.0, 7.0, 8.0, 6.0, 7.0, 8.0]);
        e.update(&seqs, &[1.0; 6], 0.1, 0.0);
        assert_eq!(&e.table[0..3], &table[0..3], "row 0 untouched");
        // Adam's first step moves every touched coordinate by ~lr against the sign.
        for (before, after) in table.iter().zip(&e.table).skip(3) {
            assert!((before - after - 0.1).abs() < 1e-4, "{before} -> {after}");
        }
        let bytes = e.state_bytes();
        let mut f = SparseEmbedding::new(e.table.clone(), 4, 3);
        f.load_state(&bytes, std::path::Path::new("x")).unwrap();
        e.update(&seqs, &[0.5; 6], 0.1, 0.0);
        f.update(&seqs, &[0.5; 6], 0.1, 0.0);
        assert_eq!(e.table, f.table);
    }
}
