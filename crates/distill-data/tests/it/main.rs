//! Property tests for the invariants of curation: split determinism,
//! disjointness and stability under additions; dedup idempotence.

use distill_core::hash::content_id;
use distill_core::types::{Example, Split, Task};
use distill_data::curate::{ConflictPolicy, CurateConfig, Step, curate};
use distill_data::dataset::Dataset;
use distill_data::minhash::shingles;
use proptest::prelude::*;
use std::collections::BTreeMap;

fn example(text: &str, label: &str) -> Example {
    Example {
        id: content_id(text),
        text: text.to_string(),
        label: Some(label.to_string()),
        labels: None,
        spans: None,
        split: None,
        source: "prop".into(),
        line: 0,
        source_id: None,
    }
}

fn dataset(rows: Vec<Example>) -> Dataset {
    Dataset::new("prop".into(), Task::Classify, rows, Vec::new())
}

fn split_only(seed: u64) -> CurateConfig {
    CurateConfig {
        seed,
        steps: vec![Step::Split {
            train: 0.7,
            val: 0.15,
            test: 0.15,
            keep_existing: false,
        }],
        base: Default::default(),
    }
}

fn dedup_steps() -> Vec<Step> {
    vec![
        Step::ExactDedup {
            conflicts: ConflictPolicy::KeepFirst,
        },
        Step::NearDedup {
            threshold: 0.8,
            num_perm: 64,
            shingle: 4,
        },
    ]
}

fn splits_of(d: &Dataset) -> BTreeMap<String, Split> {
    d.examples
        .iter()
        .map(|e| (e.id.clone(), e.split.expect("assigned")))
        .collect()
}

fn texts() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(("[a-e]{1,3}( [a-e]{1,4}){0,6}", "[xyz]"), 1..60)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn split_is_deterministic_and_stable_under_additions(
        base in texts(), extra in texts(), seed in 0u64..1000
    ) {
        let rows: Vec<Example> = base.iter().map(|(t, l)| example(t, l)).collect();
        let a = curate(dataset(rows.clone()), &split_only(seed), |_| {}).expect("curate").dataset;
        let b = curate(dataset(rows.clone()), &split_only(seed), |_| {}).expect("curate").dataset;
        prop_assert_eq!(&a.examples, &b.examples);
        // Every row lands in exactly one split.
        prop_assert_eq!(a.examples.len(), rows.len());
        // Adding rows never moves an existing row.
        let mut more = rows.clone();
        more.extend(extra.iter().map(|(t, l)| example(t, l)));
        let c = curate(dataset(more), &split_only(seed), |_| {}).expect("curate").dataset;
        let before = splits_of(&a);
        let after = splits_of(&c);
        for (id, split) in before {
            prop_assert_eq!(after.get(&id), Some(&split));
        }
    }

    #[test]
    fn dedup_is_idempotent(base in texts()) {
        let rows: Vec<Example> = base.iter().map(|(t, l)| example(t, l)).collect();
        let config = CurateConfig { seed: 1, steps: dedup_steps(), base: Default::default() };
        let once = curate(dataset(rows), &config, |_| {}).expect("curate");
        let twice = curate(once.dataset.clone(), &config, |_| {}).expect("curate");
        prop_assert_eq!(twice.removed.len(), 0);
        prop_assert_eq!(&twice.dataset.examples, &once.dataset.examples);
        // Every removed duplicate names a row that was kept.
        let kept: std::collections::HashSet<&str> =
            once.dataset.examples.iter().map(|e| e.id.as_str()).collect();
        for r in &once.removed {
            let of = r.dup_of.as_deref().expect("duplicates name their original");
            prop_assert!(kept.contains(of), "dup_of {} not kept", of);
        }
    }

    #[test]
    fn leakage_check_leaves_splits_disjoint(rows in split_rows(), seed in 0u64..50) {
        // Splits come with the rows (as official splits do), and copies of
        // rows land in other splits, so the input leaks; only the
        // leakage-check step can make the splits disjoint.
        let examples: Vec<Example> = rows
            .iter()
            .map(|(t, l, s)| {
                let mut e = example(t, l);
                e.split = Some(SPLITS[*s as usize]);
                e
            })
            .collect();
        let config = CurateConfig {
            seed,
            steps: vec![Step::LeakageCheck { threshold: 0.8, num_perm: 64, shingle: 4 }],
            base: Default::default(),
        };
        let out = curate(dataset(examples.clone()), &config, |_| {}).expect("curate");
        let kept = &out.dataset.examples;
        prop_assert_eq!(kept.len() + out.removed.len(), examples.len());
        prop_assert!(out.removed.iter().all(|r| r.reason.starts_with("leak")));
        // No text (up to case, spacing and punctuation) in two splits.
        let mut by_key: BTreeMap<String, Split> = BTreeMap::new();
        for e in kept {
            let key = distill_data::text::dedup_key(&e.text);
            let split = e.split.expect("split");
            if let Some(s) = by_key.get(&key) {
                prop_assert_eq!(*s, split, "text {} in two splits", e.text);
            }
            by_key.insert(key, split);
        }
        // No near duplicate in two splits either: rows whose shingle sets are
        // equal (Jaccard 1, above any threshold) collide in every LSH band,
        // so this holds deterministically, not just with high probability.
        let mut by_shingles: BTreeMap<Vec<u64>, Split> = BTreeMap::new();
        for e in kept {
            let set = shingles(&e.text, 4);
            let split = e.split.expect("split");
            if let Some(s) = by_shingles.get(&set) {
                prop_assert_eq!(*s, split, "near duplicate {} in two splits", e.text);
            }
            by_shingles.insert(set, split);
        }
    }
}

const SPLITS: [Split; 3] = [Split::Train, Split::Val, Split::Test];

/// Rows with a split each, plus copies of some of them (verbatim, upper-cased
/// or with punctuation) in a random split.
fn split_rows() -> impl Strategy<Value = Vec<(String, String, u8)>> {
    let base = prop::collection::vec(("[a-e]{1,3}( [a-e]{1,4}){0,6}", "[xyz]", 0u8..3), 1..60);
    let copies = prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, 0u8..3), 1..20);
    (base, copies).prop_map(|(mut rows, copies)| {
        let n = rows.len();
        for (index, split, variant) in copies {
            let (text, label, _) = rows[index.index(n)].clone();
            let text = match variant {
                0 => text,
                1 => text.to_uppercase(),
                _ => format!("{text}!"),
            };
            rows.push((text, label, split));
        }
        rows
    })
}
