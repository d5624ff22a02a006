use distill_train::sparse::SparseEmbedding;
use std::time::Instant;
fn main() {
    let (rows, dim) = (65536usize, 64usize);
    let table: Vec<f32> = (0..rows * dim).map(|i| ((i * 7919) % 101) as f32 / 1010.0).collect();
    let mut x: u64 = 1;
    let mut rnd = || { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x };
    let batches: Vec<Vec<Vec<u32>>> = (0..140).map(|_| (0..64).map(|_| (0..110).map(|_| (rnd() % rows as u64) as u32).collect()).collect()).collect();
    let grad: Vec<f32> = (0..64 * dim).map(|i| ((i % 13) as f32 - 6.0) / 1000.0).collect();
    let mut e = SparseEmbedding::with_optimizer(table, rows, dim, distill_train::config::SparseOptimizer::RowwiseAdagrad);
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let t = Instant::now();
            let mut tp = 0.0;
            for _ in 0..5 { for b in &batches {
                let seqs: Vec<&[u32]> = b.iter().map(|s| s.as_slice()).collect();
                let t0 = Instant::now();
                let p = e.pool(&seqs);
                tp += t0.elapsed().as_secs_f64();
                std::hint::black_box(p);
                e.update(&seqs, &grad, 0.001, 0.0);
            }}
            let n = 5.0 * 140.0;
            println!("threads {threads}: step {:.1} us, pool {:.1} us", t.elapsed().as_secs_f64() / n * 1e6, tp / n * 1e6);
        });
    }
}
