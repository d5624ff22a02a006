//! `distill data stats`: rows per split, label histogram, length percentiles,
//! and what curation removed.

use crate::dataset::Dataset;
use distill_core::table::Table;
use std::collections::BTreeMap;

/// Percentile (nearest-rank) of sorted values.
fn percentile(sorted: &[usize], p: f64) -> usize {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The stats tables of a dataset: overview, splits, lengths, labels, curation.
pub fn stats_tables(dataset: &Dataset) -> Vec<Table> {
    let m = &dataset.manifest;
    let mut overview = Table::new(format!("dataset {}", m.name), &["key", "value"]);
    overview.push(vec!["task".into(), m.task.to_string()]);
    overview.push(vec!["rows".into(), m.rows.to_string()]);
    overview.push(vec!["labels".into(), m.labels.len().to_string()]);
    overview.push(vec!["rejected at import".into(), m.rejected.to_string()]);

    let splits: Vec<String> = m.counts.keys().cloned().collect();
    let mut split_table = Table::new("rows per split", &["split", "rows", "share"]);
    for (s, c) in &m.counts {
        split_table.push(vec![
            s.clone(),
            c.to_string(),
            format!("{:.1}%", 100.0 * *c as f64 / m.rows.max(1) as f64),
        ]);
    }

    let mut chars: Vec<usize> = dataset
        .examples
        .iter()
        .map(|e| e.text.chars().count())
        .collect();
    let mut words: Vec<usize> = dataset
        .examples
        .iter()
        .map(|e| e.text.split_whitespace().count())
        .collect();
    chars.sort_unstable();
    words.sort_unstable();
    let mut lengths = Table::new("text length", &["unit", "min", "p50", "p90", "p99", "max"]);
    for (unit, v) in [("characters", &chars), ("words", &words)] {
        lengths.push(vec![
            unit.into(),
            v.first().copied().unwrap_or(0).to_string(),
            percentile(v, 50.0).to_string(),
            percentile(v, 90.0).to_string(),
            percentile(v, 99.0).to_string(),
            v.last().copied().unwrap_or(0).to_string(),
        ]);
    }

    let mut histogram: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for e in &dataset.examples {
        let split = e
            .split
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|| "unassigned".into());
        let labels = e.label_list();
        let labels = if labels.is_empty() {
            vec!["(none)"]
        } else {
            labels
        };
        for l in labels {
            *histogram
                .entry(l.to_string())
                .or_default()
                .entry(split.clone())
                .or_insert(0) += 1;
        }
    }
    let mut headers: Vec<&str> = vec!["label", "total"];
    headers.extend(splits.iter().map(String::as_str));
    let mut labels = Table::new("label histogram", &headers);
    let mut rows: Vec<(String, u64, Vec<u64>)> = histogram
        .into_iter()
        .map(|(label, per)| {
            let total = per.values().sum();
            let cols = splits
                .iter()
                .map(|s| per.get(s).copied().unwrap_or(0))
                .collect();
            (label, total, cols)
        })
        .collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    for (label, total, cols) in rows {
        let mut row = vec![label, total.to_string()];
        row.extend(cols.iter().map(u64::to_string));
        labels.push(row);
    }

    let mut tables = vec![overview, split_table, lengths, labels];
    if let Some(c) = &m.curation {
        let mut removed = Table::new("curation", &["what", "count"]);
        if let Some(map) = c.get("removed").and_then(|v| v.as_object()) {
            for (k, v) in map {
                removed.push(vec![format!("removed by {k}"), v.to_string()]);
            }
        }
        if let Some(map) = c.get("redactions").and_then(|v| v.as_object()) {
            for (k, v) in map {
                removed.push(vec![format!("redacted {k}"), v.to_string()]);
            }
        }
        if let Some(n) = c.get("conflicts") {
            removed.push(vec!["texts with conflicting labels".into(), n.to_string()]);
        }
        tables.push(removed);
    }
    tables
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<usize> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[], 50.0), 0);
    }
}
