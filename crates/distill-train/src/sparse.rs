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
//!
//! The update runs over a fixed partition of the table's rows ([`PARTS`]
//! contiguous ranges), each part on its own rayon task: a row's gradient is
//! summed in the same order whatever the thread count, and parts never share
//! a row, so results are identical on 1 or 16 threads (tested). A row's Adam
//! moments sit side by side (`[m; dim][v; dim]`) so an update touches one
//! contiguous stretch of state per row.

use crate::config::SparseOptimizer;
use crate::error::{Error, Result};
use rayon::prelude::*;

/// Row ranges updated in parallel. Fixed (not the thread count) so results
/// never depend on the machine.
const PARTS: usize = 4;

pub struct SparseEmbedding {
    pub rows: usize,
    pub dim: usize,
    pub table: Vec<f32>,
    optimizer: SparseOptimizer,
    /// Adam, per row: `dim` first moments, then `dim` second moments.
    /// Row-wise Adagrad: one accumulated mean squared gradient per row.
    mv: Vec<f32>,
    step: u64,
    beta1: f32,
    beta2: f32,
    eps: f32,
    /// First row of each part, and `rows` at the end.
    bounds: Vec<usize>,
    scratch: Vec<Scratch>,
}

/// One part's accumulated gradient per touched row.
#[derive(Default)]
struct Scratch {
    touched: Vec<u32>,
    grad: Vec<f32>,
    /// Slot of each of the part's rows in `touched`, u32::MAX when untouched.
    mark: Vec<u32>,
}

impl Scratch {
    /// Sum `pooled_grad` into the rows of `lo..hi` the sequences use, in
    /// sequence order. Returns the squared L2 norm of what it summed.
    fn accumulate(
        &mut self,
        seqs: &[&[u32]],
        pooled_grad: &[f32],
        d: usize,
        lo: u32,
        hi: u32,
    ) -> f64 {
        self.touched.clear();
        self.grad.clear();
        for (r, seq) in seqs.iter().enumerate() {
            let inv = 1.0 / seq.len().max(1) as f32;
            let g = &pooled_grad[r * d..(r + 1) * d];
            for &id in seq.iter() {
                if id < lo || id >= hi {
                    continue;
                }
                let local = (id - lo) as usize;
                let slot = match self.mark[local] {
                    u32::MAX => {
                        let slot = self.touched.len() as u32;
                        self.mark[local] = slot;
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
        f64::from(sum_sq(&self.grad))
    }
}

/// Adam's constants for one step.
#[derive(Clone, Copy)]
struct AdamStep {
    lr: f32,
    b1: f32,
    b2: f32,
    c1: f32,
    c2: f32,
    eps: f32,
    /// Gradient scale (clipping), 1 when not clipped.
    scale: f32,
}

impl SparseEmbedding {
    pub fn new(table: Vec<f32>, rows: usize, dim: usize) -> Self {
        Self::with_optimizer(table, rows, dim, SparseOptimizer::Adam)
    }

    pub fn with_optimizer(
        table: Vec<f32>,
        rows: usize,
        dim: usize,
        optimizer: SparseOptimizer,
    ) -> Self {
        let bounds: Vec<usize> = (0..=PARTS).map(|p| rows * p / PARTS).collect();
        let scratch = bounds
            .windows(2)
            .map(|w| Scratch {
                mark: vec![u32::MAX; w[1] - w[0]],
                ..Scratch::default()
            })
            .collect();
        SparseEmbedding {
            rows,
            dim,
            mv: match optimizer {
                SparseOptimizer::Adam => vec![0.0; table.len() * 2],
                SparseOptimizer::RowwiseAdagrad => vec![0.0; rows],
            },
            optimizer,
            table,
            step: 0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            bounds,
            scratch,
        }
    }

    /// Mean of each sequence's rows: `[seqs.len(), dim]`, row-major. Chunks
    /// of the batch are pooled in parallel (each row's sum is sequential, so
    /// the result does not depend on the thread count).
    pub fn pool(&self, seqs: &[&[u32]]) -> Vec<f32> {
        let d = self.dim.max(1);
        let chunk = seqs.len().div_ceil(PARTS).max(1);
        let mut out = vec![0f32; seqs.len() * d];
        out.par_chunks_mut(chunk * d)
            .zip(seqs.par_chunks(chunk))
            .for_each(|(o, s)| distill_model::model::pool_mean_into(&self.table, d, s, o));
        out
    }

    /// Apply the gradient of the pooled input (`[seqs.len(), dim]`) to the
    /// rows it came from. `clip` > 0 clips the gradient's L2 norm (as burn
    /// does per parameter for the head).
    pub fn update(&mut self, seqs: &[&[u32]], pooled_grad: &[f32], lr: f64, clip: f64) {
        let d = self.dim;
        let bounds = &self.bounds;
        let sq: Vec<f64> = self
            .scratch
            .par_iter_mut()
            .enumerate()
            .map(|(p, s)| {
                s.accumulate(seqs, pooled_grad, d, bounds[p] as u32, bounds[p + 1] as u32)
            })
            .collect();
        let norm = sq.iter().sum::<f64>().sqrt();
        let scale = if clip > 0.0 && norm > clip {
            (clip / norm) as f32
        } else {
            1.0
        };
        self.step += 1;
        let t = self.step as i32;
        let k = AdamStep {
            lr: lr as f32,
            b1: self.beta1,
            b2: self.beta2,
            c1: 1.0 - self.beta1.powi(t),
            c2: 1.0 - self.beta2.powi(t),
            eps: self.eps,
            scale,
        };
        // Split the table and the moments at the part boundaries.
        let optimizer = self.optimizer;
        let per_row = self.state_per_row();
        let mut tables = Vec::with_capacity(PARTS);
        let mut mvs = Vec::with_capacity(PARTS);
        let (mut tail_t, mut tail_mv) = (self.table.as_mut_slice(), self.mv.as_mut_slice());
        for w in bounds.windows(2) {
            let n = w[1] - w[0];
            let (a, b) = tail_t.split_at_mut(n * d);
            let (c, e) = tail_mv.split_at_mut(n * per_row);
            tables.push(a);
            mvs.push(c);
            (tail_t, tail_mv) = (b, e);
        }
        self.scratch
            .par_iter_mut()
            .zip(tables)
            .zip(mvs)
            .enumerate()
            .for_each(|(p, ((s, table), mv))| match optimizer {
                SparseOptimizer::Adam => adam_rows(s, table, mv, bounds[p], d, k),
                SparseOptimizer::RowwiseAdagrad => adagrad_rows(s, table, mv, bounds[p], d, k),
            });
    }

    fn state_per_row(&self) -> usize {
        match self.optimizer {
            SparseOptimizer::Adam => 2 * self.dim,
            SparseOptimizer::RowwiseAdagrad => 1,
        }
    }

    /// Optimizer state as bytes for checkpoints: the step, then (Adam) every
    /// first moment, then every second moment, or (row-wise Adagrad) each
    /// row's accumulator; little-endian f32.
    pub fn state_bytes(&self) -> Vec<u8> {
        let d = self.dim.max(1);
        let mut out = Vec::with_capacity(8 + self.mv.len() * 4);
        out.extend_from_slice(&self.step.to_le_bytes());
        match self.optimizer {
            SparseOptimizer::Adam => {
                for half in 0..2 {
                    for row in self.mv.chunks_exact(2 * d) {
                        for x in &row[half * d..(half + 1) * d] {
                            out.extend_from_slice(&x.to_le_bytes());
                        }
                    }
                }
            }
            SparseOptimizer::RowwiseAdagrad => {
                for x in &self.mv {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
        }
        out
    }

    pub fn load_state(&mut self, bytes: &[u8], path: &std::path::Path) -> Result<()> {
        let n = self.mv.len();
        if bytes.len() != 8 + n * 4 {
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                message: format!(
                    "sparse optimizer state has {} bytes, expected {} ({:?})",
                    bytes.len(),
                    8 + n * 4,
                    self.optimizer
                ),
            });
        }
        let d = self.dim.max(1);
        let mut step = [0u8; 8];
        step.copy_from_slice(&bytes[..8]);
        self.step = u64::from_le_bytes(step);
        let floats = bytes[8..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        if self.optimizer == SparseOptimizer::RowwiseAdagrad {
            self.mv.iter_mut().zip(floats).for_each(|(m, x)| *m = x);
            return Ok(());
        }
        let half = n / 2;
        for (i, x) in floats.enumerate() {
            let (which, j) = (i / half, i % half);
            let (row, col) = (j / d, j % d);
            self.mv[row * 2 * d + which * d + col] = x;
        }
        Ok(())
    }
}

/// Lazy Adam over one part's touched rows (`table` and `mv` start at row `lo`).
fn adam_rows(s: &mut Scratch, table: &mut [f32], mv: &mut [f32], lo: usize, d: usize, k: AdamStep) {
    let AdamStep {
        lr,
        b1,
        b2,
        c1,
        c2,
        eps,
        scale,
    } = k;
    // Row slices zipped together: no bounds checks in the inner loop, which
    // the compiler then vectorises (sqrt and division included).
    for (slot, &id) in s.touched.iter().enumerate() {
        let local = id as usize - lo;
        let g = &s.grad[slot * d..(slot + 1) * d];
        let (m, v) = mv[local * 2 * d..(local + 1) * 2 * d].split_at_mut(d);
        let w = &mut table[local * d..(local + 1) * d];
        for (((m, v), w), &gk) in m.iter_mut().zip(v.iter_mut()).zip(w.iter_mut()).zip(g) {
            let gk = gk * scale;
            *m = b1 * *m + (1.0 - b1) * gk;
            *v = b2 * *v + (1.0 - b2) * gk * gk;
            let mhat = *m / c1;
            let vhat = *v / c2;
            *w -= lr * mhat / (vhat.sqrt() + eps);
        }
        s.mark[local] = u32::MAX;
    }
}

/// Sum of squares in eight fixed lanes (vectorises; the same order every run).
fn sum_sq(xs: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (l, x) in lanes.iter_mut().zip(c) {
            *l += x * x;
        }
    }
    lanes.iter().sum::<f32>() + rest.iter().map(|x| x * x).sum::<f32>()
}

/// Row-wise Adagrad over one part's touched rows: each row keeps the sum of
/// its gradients' mean square, and moves by `lr * g / sqrt(sum)`.
fn adagrad_rows(
    s: &mut Scratch,
    table: &mut [f32],
    acc: &mut [f32],
    lo: usize,
    d: usize,
    k: AdamStep,
) {
    let inv_d = 1.0 / d.max(1) as f32;
    for (slot, &id) in s.touched.iter().enumerate() {
        let local = id as usize - lo;
        let g = &s.grad[slot * d..(slot + 1) * d];
        let sq = sum_sq(g) * k.scale * k.scale * inv_d;
        acc[local] += sq;
        let step = k.lr * k.scale / (acc[local].sqrt() + 1e-10);
        let w = &mut table[local * d..(local + 1) * d];
        for (w, &gk) in w.iter_mut().zip(g) {
            *w -= step * gk;
        }
        s.mark[local] = u32::MAX;
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

    #[test]
    fn update_is_the_same_on_one_thread_and_many() {
        let (rows, dim) = (1000, 8);
        let table: Vec<f32> = (0..rows * dim)
            .map(|i| ((i * 7919) % 101) as f32 / 101.0)
            .collect();
        let seqs_owned: Vec<Vec<u32>> = (0..64u32)
            .map(|r| (0..30).map(|k| (r * 131 + k * 977) % rows as u32).collect())
            .collect();
        let seqs: Vec<&[u32]> = seqs_owned.iter().map(Vec::as_slice).collect();
        let grad: Vec<f32> = (0..64 * dim)
            .map(|i| ((i % 13) as f32 - 6.0) / 10.0)
            .collect();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut e = SparseEmbedding::new(table.clone(), rows, dim);
                for step in 0..5 {
                    e.update(&seqs, &grad, 0.01 * (step + 1) as f64, 0.5);
                }
                let pooled = e.pool(&seqs);
                let state = e.state_bytes();
                (pooled, e.table, state)
            })
        };
        let one = run(1);
        assert_eq!(one, run(3));
        assert_ne!(one.1, table, "the update moved the table");
    }

    #[test]
    fn rowwise_adagrad_moves_rows_and_resumes_exactly() {
        let table: Vec<f32> = (0..12).map(|x| x as f32).collect(); // 4 rows x 3
        let adagrad = SparseOptimizer::RowwiseAdagrad;
        let mut e = SparseEmbedding::with_optimizer(table.clone(), 4, 3, adagrad);
        let seqs: [&[u32]; 2] = [&[1, 3], &[2]];
        e.update(&seqs, &[1.0; 6], 0.1, 0.0);
        assert_eq!(&e.table[0..3], &table[0..3], "row 0 untouched");
        // First step: every touched coordinate moves by lr * g / |g| = lr.
        for (before, after) in table.iter().zip(&e.table).skip(3) {
            assert!((before - after - 0.1).abs() < 1e-5, "{before} -> {after}");
        }
        let bytes = e.state_bytes();
        assert_eq!(bytes.len(), 8 + 4 * 4, "one accumulator per row");
        let mut f = SparseEmbedding::with_optimizer(e.table.clone(), 4, 3, adagrad);
        f.load_state(&bytes, std::path::Path::new("x")).unwrap();
        e.update(&seqs, &[0.5; 6], 0.1, 1.0);
        f.update(&seqs, &[0.5; 6], 0.1, 1.0);
        assert_eq!(e.table, f.table);
        // Adam's state does not load into a row-wise Adagrad table.
        let adam = SparseEmbedding::new(table.clone(), 4, 3).state_bytes();
        let err = f.load_state(&adam, std::path::Path::new("x")).unwrap_err();
        assert!(err.to_string().contains("RowwiseAdagrad"), "{err}");
    }
}
