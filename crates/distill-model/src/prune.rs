//! Pruning a bag: keep the embedding rows that matter, drop the rest.
//!
//! A bag hashes every feature into `buckets` rows, most of which a narrow
//! task never uses or barely moves. A pruned bag keeps `k` of them (ranked by
//! [`rank_rows`]), stores the kept hashed ids in `remap.bin`, and its
//! featurizer maps each kept id to a compact row and drops the rest
//! (fastText's `cutoff`, with our hashing). Quantising the small table then
//! gives bundles of a few hundred KB.

use crate::artifact::{ModelMeta, Predictor, Pruned};
use crate::featurize::Featurizer;
use crate::model::Student;
use crate::{Error, Result};

/// Hashed ids that the training features use, best first: by the L2 norm of
/// the row times `ln(1 + uses)`, where uses counts the training sequences
/// the id appears in (a large row no text uses is worth nothing; a common
/// feature whose row stayed small says little). Ties go to the smaller id,
/// so the ranking is deterministic.
pub fn rank_rows(table: &[f32], dim: usize, train_seqs: &[Vec<u32>]) -> Vec<u32> {
    let rows = table.len() / dim.max(1);
    let mut uses = vec![0u32; rows];
    let mut last = vec![u32::MAX; rows];
    for (n, seq) in train_seqs.iter().enumerate() {
        for &id in seq {
            let i = id as usize;
            if i > 0 && i < rows && last[i] != n as u32 {
                last[i] = n as u32;
                uses[i] += 1;
            }
        }
    }
    let mut scored: Vec<(f32, u32)> = (1..rows)
        .filter(|&i| uses[i] > 0)
        .map(|i| {
            let norm = table[i * dim..(i + 1) * dim]
                .iter()
                .map(|x| x * x)
                .sum::<f32>()
                .sqrt();
            (norm * (1.0 + uses[i] as f32).ln(), i as u32)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().map(|(_, i)| i).collect()
}

/// The bag of `predictor` keeping only the rows of `kept` (any order): the
/// pruned model, its meta (with the remap's record) and its featurizer, and
/// the sorted kept ids to write as `remap.bin`.
pub fn prune(predictor: &Predictor, kept: &[u32]) -> Result<(Predictor, Vec<u32>)> {
    let Student::Bag(bag) = &predictor.model else {
        return Err(Error::Spec("only a bag can be pruned".into()));
    };
    let Featurizer::Bag(featurizer) = &predictor.featurizer else {
        return Err(Error::Spec("only a bag can be pruned".into()));
    };
    if predictor.meta.pruned.is_some() {
        return Err(Error::Spec("the model is already pruned".into()));
    }
    // The predictor's host copy: a binary search over sizes prunes many times.
    let Some((table, dim)) = predictor.host_table() else {
        return Err(Error::Spec("the bag's table is not on the host".into()));
    };
    let rows = table.len() / dim;
    let mut ids: Vec<u32> = kept.to_vec();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() || ids.iter().any(|&i| i == 0 || i as usize >= rows) {
        return Err(Error::Spec(format!(
            "kept rows must be 1 or more hashed ids in 1..{rows}"
        )));
    }
    let mut small = vec![0f32; (ids.len() + 1) * dim];
    for (k, &id) in ids.iter().enumerate() {
        let src = id as usize * dim;
        small[(k + 1) * dim..(k + 2) * dim].copy_from_slice(&table[src..src + dim]);
    }
    let model = Student::Bag(
        bag.clone()
            .with_table(small, ids.len() + 1, &predictor.device),
    );
    let mut meta: ModelMeta = predictor.meta.clone();
    meta.vocab_size = ids.len() + 1;
    meta.params = meta.spec.param_count(meta.vocab_size, meta.labels.len());
    // The sha256 is filled in when remap.bin is written.
    meta.pruned = Some(Pruned {
        rows: ids.len(),
        remap_sha256: String::new(),
    });
    let featurizer = Featurizer::Bag(featurizer.clone().with_remap(ids.clone().into()));
    let pruned = Predictor::from_parts(meta, featurizer, model, predictor.device.clone());
    Ok((pruned, ids))
}
