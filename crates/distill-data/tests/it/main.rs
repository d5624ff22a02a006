//! Property tests for the invariants of curation: split determinism,
//! disjointness and stability under additions; dedup idempotence.

use distill_core::hash::content_id;
use distill_core::types::{Example, Split, Task};
use distill_data::curate::{ConflictPolicy, CurateConfig, Step, curate};
use distill_data::dataset::Dataset;
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
    fn leakage_check_leaves_splits_disjoint(base in texts(), seed in 0u64..50) {
        let rows: Vec<Example> = base.iter().map(|(t, l)| example(t, l)).collect();
        let config = CurateConfig {
            seed,
            steps: vec![
                Step::Split { train: 0.6, val: 0.2, test: 0.2, keep_existing: false },
                Step::LeakageCheck { threshold: 0.8, num_perm: 64, shingle: 4 },
            ],
            base: Default::default(),
        };
        let out = curate(dataset(rows), &config, |_| {}).expect("curate").dataset;
        let mut by_key: BTreeMap<String, Split> = BTreeMap::new();
        for e in &out.examples {
            let key = distill_data::text::dedup_key(&e.text);
            if let Some(s) = by_key.get(&key) {
                prop_assert_eq!(*s, e.split.expect("split"), "text {} in two splits", e.text);
            }
            by_key.insert(key, e.split.expect("split"));
        }
    }
}
