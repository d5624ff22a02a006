//! `distill compare`: one row per run (or per group of runs that differ only
//! in seed), the config keys that differ, headline metrics with deltas
//! against a baseline and the best value per column marked. Reads only
//! `run.json`, `config.resolved.toml` and `eval/*/report.json`.

use crate::error::{Error, Result};
use distill_core::table::Table;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What compare knows about one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub dir: PathBuf,
    pub experiment: String,
    pub run_id: String,
    pub status: String,
    pub task: String,
    pub dataset: String,
    pub seed: Option<u64>,
    /// Flattened config (`train.lr` -> `0.005`), without `seed` and `description`.
    pub config: BTreeMap<String, String>,
    pub metrics: BTreeMap<String, f64>,
}

fn flatten(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        toml::Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// Headline metrics of a suite report, per case: `<suite>.<metric>` (one
/// case) or `<suite>.<case>.<metric>`.
const HEADLINE: [&str; 7] = [
    "accuracy",
    "macro_f1",
    "ece_calibrated",
    "coverage@0.95",
    "oos_auroc",
    "latency_p50_ms",
    "micro_f1",
];

impl RunRow {
    pub fn load(dir: &Path) -> Result<Self> {
        let info: serde_json::Value = distill_core::fsutil::read_json(
            &dir.join(distill_train::run::RUN_FILE),
        )
        .map_err(|e| Error::Input(format!("{}: not a run directory: {e}", dir.display())))?;
        let mut config = BTreeMap::new();
        let cpath = dir.join(distill_train::run::CONFIG_FILE);
        if let Ok(text) = std::fs::read_to_string(&cpath) {
            let v: toml::Value = toml::from_str(&text)
                .map_err(|e| Error::Input(format!("{}: {e}", cpath.display())))?;
            flatten("", &v, &mut config);
        }
        let seed = config.remove("seed").and_then(|s| s.parse().ok());
        config.remove("description");
        let mut metrics: BTreeMap<String, f64> = BTreeMap::new();
        if let Some(m) = info["metrics"].as_object() {
            for (k, v) in m {
                if let Some(x) = v.as_f64() {
                    metrics.insert(k.clone(), x);
                }
            }
        }
        for k in ["model_bytes", "params", "train_seconds"] {
            if let Some(x) = info[k].as_f64() {
                metrics.insert(k.into(), x);
            }
        }
        // Suite reports.
        if let Ok(entries) = std::fs::read_dir(dir.join("eval")) {
            let mut suites: Vec<PathBuf> =
                entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
            suites.sort();
            for s in suites {
                let path = s.join(distill_core::escalation::REPORT_FILE);
                if !path.is_file() {
                    continue;
                }
                let report = match distill_core::escalation::SuiteReport::load(&path) {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!(
                            "warning: skipping {e} (written by another distill version? rerun `distill eval`)"
                        );
                        continue;
                    }
                };
                for case in &report.cases {
                    let prefix = if report.cases.len() == 1 {
                        report.suite.clone()
                    } else {
                        format!("{}.{}", report.suite, case.name)
                    };
                    for h in HEADLINE {
                        if let Some(&x) = case.metrics.get(h) {
                            metrics.insert(format!("{prefix}.{h}"), x);
                        }
                    }
                    // The escalation trade-off per target: the share answered
                    // locally and the accuracy of what stays local.
                    for op in &case.operating_points {
                        let t = op.target_accuracy;
                        metrics.insert(format!("{prefix}.local_share@{t}"), op.coverage);
                        if let Some(a) = op.accuracy {
                            metrics.insert(format!("{prefix}.local_accuracy@{t}"), a);
                        }
                    }
                    // With a teacher log: the simulated cascade's accuracy;
                    // with an out-of-scope label: recall per target.
                    for (k, &x) in &case.metrics {
                        if ["cascade_accuracy@", "oos_recall@"]
                            .iter()
                            .any(|p| k.starts_with(p))
                        {
                            metrics.insert(format!("{prefix}.{k}"), x);
                        }
                    }
                }
            }
        }
        let s = |k: &str| info[k].as_str().unwrap_or("").to_string();
        Ok(RunRow {
            dir: dir.to_path_buf(),
            experiment: s("experiment"),
            run_id: s("run_id"),
            status: s("status"),
            task: s("task"),
            dataset: info["lineage"]["dataset_name"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            seed,
            config,
            metrics,
        })
    }
}

/// Expand arguments (run dirs, experiment dirs, `*` patterns) to run directories.
pub fn find_runs(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = BTreeSet::new();
    for a in args {
        let text = a.to_string_lossy();
        let matched = if text.contains('*') {
            distill_core::fsutil::glob(a)
        } else {
            vec![a.clone()]
        };
        if matched.is_empty() {
            return Err(Error::Input(format!("{text}: matches no run directory")));
        }
        let before = out.len();
        for m in matched {
            if m.join(distill_train::run::RUN_FILE).is_file() {
                out.insert(m);
            } else if let Ok(entries) = std::fs::read_dir(&m) {
                // An experiment directory: its runs.
                for e in entries.filter_map(|e| e.ok()) {
                    if e.path().join(distill_train::run::RUN_FILE).is_file() {
                        out.insert(e.path());
                    }
                }
            }
        }
        if out.len() == before {
            return Err(Error::Input(format!(
                "{text}: no run directory there (a run directory holds run.json)"
            )));
        }
    }
    Ok(out.into_iter().collect())
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub baseline: Option<PathBuf>,
    /// Show every config key, not only those that differ.
    pub all: bool,
    pub sort: Option<String>,
    pub filters: Vec<(String, String)>,
    /// Metric columns (default: a headline set).
    pub metrics: Vec<String>,
    /// Group runs that differ only in seed (mean ± std).
    pub group_seeds: bool,
}

/// One row of the table: a run, or a group of seeds.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub label: String,
    pub runs: Vec<PathBuf>,
    pub seeds: Vec<u64>,
    pub status: String,
    pub config: BTreeMap<String, String>,
    /// metric -> (mean, std, n)
    pub metrics: BTreeMap<String, (f64, f64, usize)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// (task, dataset) of this table.
    pub scope: String,
    pub changed: Vec<String>,
    pub metric_columns: Vec<String>,
    pub groups: Vec<Group>,
    pub baseline: Option<usize>,
}

/// Lower is better for these metrics.
pub fn lower_is_better(metric: &str) -> bool {
    [
        "ece", "loss", "latency", "bytes", "seconds", "aurc", "params",
    ]
    .iter()
    .any(|k| metric.contains(k))
}

fn default_metrics(rows: &[RunRow]) -> Vec<String> {
    let present: BTreeSet<&String> = rows.iter().flat_map(|r| r.metrics.keys()).collect();
    let mut out: Vec<String> = [
        "val_accuracy",
        "val_macro_f1",
        "test_accuracy",
        "test_macro_f1",
    ]
    .iter()
    .map(|s| s.to_string())
    .filter(|m| present.contains(m))
    .collect();
    for m in &present {
        if m.contains('.') {
            out.push((*m).clone());
        }
    }
    for m in ["model_bytes", "train_seconds"] {
        if present.contains(&m.to_string()) {
            out.push(m.into());
        }
    }
    out
}

fn mean_std(xs: &[f64]) -> (f64, f64, usize) {
    let n = xs.len();
    let mean = xs.iter().sum::<f64>() / n.max(1) as f64;
    let var = if n > 1 {
        xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64
    } else {
        0.0
    };
    (mean, var.sqrt(), n)
}

/// Build the comparisons: one per (task, dataset) scope.
pub fn compare(rows: Vec<RunRow>, opts: &Options) -> Result<Vec<Comparison>> {
    let rows: Vec<RunRow> = rows
        .into_iter()
        .filter(|r| {
            opts.filters.iter().all(|(k, v)| match k.as_str() {
                "status" => &r.status == v,
                "experiment" => &r.experiment == v,
                "seed" => r.seed.map(|s| s.to_string()).as_deref() == Some(v.as_str()),
                _ => r.config.get(k) == Some(v),
            })
        })
        .collect();
    if rows.is_empty() {
        return Err(Error::Input("no run is left after --filter".into()));
    }
    let mut scopes: BTreeMap<(String, String), Vec<RunRow>> = BTreeMap::new();
    for r in rows {
        scopes
            .entry((r.task.clone(), r.dataset.clone()))
            .or_default()
            .push(r);
    }
    let mut out = Vec::new();
    for ((task, dataset), rows) in scopes {
        // Group by config without seed.
        let mut groups: Vec<(BTreeMap<String, String>, Vec<&RunRow>)> = Vec::new();
        for r in &rows {
            let mut key = r.config.clone();
            if !opts.group_seeds {
                key.insert(
                    "seed".into(),
                    r.seed.map(|s| s.to_string()).unwrap_or_default(),
                );
            }
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push(r),
                None => groups.push((key, vec![r])),
            }
        }
        let all_keys: BTreeSet<&String> = groups.iter().flat_map(|(k, _)| k.keys()).collect();
        let changed: Vec<String> = all_keys
            .into_iter()
            .filter(|k| {
                opts.all || {
                    let values: BTreeSet<Option<&String>> =
                        groups.iter().map(|(c, _)| c.get(*k)).collect();
                    values.len() > 1
                }
            })
            .cloned()
            .collect();
        let metric_columns = if opts.metrics.is_empty() {
            default_metrics(&rows)
        } else {
            let known: Vec<String> = rows
                .iter()
                .flat_map(|r| r.metrics.keys().cloned())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            for m in opts.metrics.iter().filter(|m| !known.contains(m)) {
                let hint = match distill_core::config::nearest(m, &known) {
                    Some(n) => format!("did you mean `{n}`?"),
                    None => format!("metrics these runs have: {}", known.join(", ")),
                };
                eprintln!("warning: no run of {dataset} has the metric `{m}` (shown as -); {hint}");
            }
            opts.metrics.clone()
        };
        let mut built: Vec<Group> = groups
            .into_iter()
            .map(|(config, members)| {
                let mut metrics = BTreeMap::new();
                for m in &metric_columns {
                    let xs: Vec<f64> = members
                        .iter()
                        .filter_map(|r| r.metrics.get(m).copied())
                        .collect();
                    if !xs.is_empty() {
                        metrics.insert(m.clone(), mean_std(&xs));
                    }
                }
                let statuses: BTreeSet<&str> = members.iter().map(|r| r.status.as_str()).collect();
                let first = members[0];
                let label = if members.len() == 1 {
                    format!("{}/{}", first.experiment, first.run_id)
                } else {
                    format!("{} ({} seeds)", first.experiment, members.len())
                };
                Group {
                    label,
                    runs: members.iter().map(|r| r.dir.clone()).collect(),
                    seeds: members.iter().filter_map(|r| r.seed).collect(),
                    status: statuses.into_iter().collect::<Vec<_>>().join("+"),
                    config,
                    metrics,
                }
            })
            .collect();
        for g in &mut built {
            g.seeds.sort_unstable();
        }
        // Default order: by the differing keys' values (numbers as numbers).
        built.sort_by(|a, b| {
            for k in &changed {
                let o = cmp_values(a.config.get(k), b.config.get(k));
                if o != std::cmp::Ordering::Equal {
                    return o;
                }
            }
            a.label.cmp(&b.label)
        });
        if let Some(metric) = &opts.sort {
            let lower = lower_is_better(metric);
            built.sort_by(|a, b| {
                let x = a.metrics.get(metric).map(|m| m.0);
                let y = b.metrics.get(metric).map(|m| m.0);
                match (x, y) {
                    (Some(x), Some(y)) if lower => x.total_cmp(&y),
                    (Some(x), Some(y)) => y.total_cmp(&x),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    _ => std::cmp::Ordering::Equal,
                }
            });
        }
        let baseline = opts.baseline.as_ref().and_then(|b| {
            let b = std::fs::canonicalize(b).unwrap_or_else(|_| b.clone());
            built.iter().position(|g| {
                g.runs
                    .iter()
                    .any(|r| std::fs::canonicalize(r).unwrap_or_else(|_| r.clone()) == b)
            })
        });
        out.push(Comparison {
            scope: format!("{task} on {dataset}"),
            changed,
            metric_columns,
            groups: built,
            baseline,
        });
    }
    Ok(out)
}

fn cmp_values(a: Option<&String>, b: Option<&String>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(a), Some(b)) => match (a.parse::<f64>(), b.parse::<f64>()) {
            (Ok(x), Ok(y)) => x.total_cmp(&y),
            _ => a.cmp(b),
        },
        (a, b) => a.is_some().cmp(&b.is_some()),
    }
}

fn fmt_metric(metric: &str, v: f64) -> String {
    if metric.contains("bytes") || metric == "params" {
        format!("{:.0}", v)
    } else if metric.contains("seconds") || metric.contains("latency") {
        format!("{v:.3}")
    } else {
        format!("{v:.4}")
    }
}

impl Comparison {
    /// A group by its differing config values (`model.dim=64 train.epochs=10`,
    /// or with `short` keys `dim=64 epochs=10`), else its label.
    pub fn describe(&self, i: usize, short: bool) -> String {
        let g = &self.groups[i];
        let parts: Vec<String> = self
            .changed
            .iter()
            .filter_map(|k| {
                let name = if short {
                    k.rsplit('.').next().unwrap_or(k)
                } else {
                    k
                };
                g.config.get(k).map(|v| format!("{name}={v}"))
            })
            .collect();
        if parts.is_empty() {
            g.label.clone()
        } else {
            parts.join(" ")
        }
    }

    /// The table: changed keys, status, metrics (mean ± std when grouped,
    /// delta vs baseline, `*` on the best value per column).
    pub fn table(&self) -> Table {
        let mut headers: Vec<String> = vec!["run".into()];
        headers.extend(self.changed.iter().cloned());
        headers.push("seeds".into());
        headers.push("status".into());
        headers.extend(self.metric_columns.iter().cloned());
        let refs: Vec<&str> = headers.iter().map(String::as_str).collect();
        let mut t = Table::new(
            format!(
                "{}: {} row(s){}",
                self.scope,
                self.groups.len(),
                self.baseline
                    .map(|b| format!(", deltas against {}", self.describe(b, false)))
                    .unwrap_or_default()
            ),
            &refs,
        );
        let best: BTreeMap<&String, f64> = self
            .metric_columns
            .iter()
            .filter_map(|m| {
                let vals = self
                    .groups
                    .iter()
                    .filter_map(|g| g.metrics.get(m).map(|x| x.0));
                let b = if lower_is_better(m) {
                    vals.fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.min(x))))
                } else {
                    vals.fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.max(x))))
                };
                b.map(|b| (m, b))
            })
            .collect();
        for (i, g) in self.groups.iter().enumerate() {
            let mut row = vec![g.label.clone()];
            for k in &self.changed {
                row.push(g.config.get(k).cloned().unwrap_or_else(|| "-".into()));
            }
            row.push(if g.seeds.is_empty() {
                "-".into()
            } else {
                g.seeds
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            });
            row.push(g.status.clone());
            for m in &self.metric_columns {
                let cell = match g.metrics.get(m) {
                    None => "-".into(),
                    Some(&(mean, std, n)) => {
                        let mut c = fmt_metric(m, mean);
                        if n > 1 && std > 0.0 {
                            c = format!("{c} ± {}", fmt_metric(m, std));
                        }
                        if let Some(b) = self.baseline
                            && b != i
                            && let Some(&(base, _, _)) = self.groups[b].metrics.get(m)
                        {
                            let d = mean - base;
                            c = format!(
                                "{c} ({}{})",
                                if d >= 0.0 { "+" } else { "-" },
                                fmt_metric(m, d.abs())
                            );
                        }
                        if best.get(m) == Some(&mean) && self.groups.len() > 1 {
                            c.push_str(" *");
                        }
                        c
                    }
                };
                row.push(cell);
            }
            t.push(row);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, seed: u64, dim: &str, lr: &str, acc: f64, bytes: f64) -> RunRow {
        let mut config = BTreeMap::new();
        config.insert("name".into(), "exp".into());
        config.insert("model.dim".into(), dim.into());
        config.insert("train.lr".into(), lr.into());
        config.insert("train.epochs".into(), "10".into());
        let mut metrics = BTreeMap::new();
        metrics.insert("test_accuracy".into(), acc);
        metrics.insert("model_bytes".into(), bytes);
        RunRow {
            dir: PathBuf::from(format!("/x/{id}")),
            experiment: "exp".into(),
            run_id: id.into(),
            status: "completed".into(),
            task: "classify".into(),
            dataset: "d".into(),
            seed: Some(seed),
            config,
            metrics,
        }
    }

    #[test]
    fn only_changed_keys_seed_groups_deltas_and_best() {
        let rows = vec![
            row("a1", 1, "32", "0.005", 0.80, 100.0),
            row("a2", 2, "32", "0.005", 0.84, 100.0),
            row("b1", 1, "64", "0.005", 0.90, 200.0),
            row("b2", 2, "64", "0.005", 0.88, 200.0),
            row("c1", 1, "64", "0.01", 0.70, 200.0),
        ];
        let opts = Options {
            baseline: Some(PathBuf::from("/x/a1")),
            group_seeds: true,
            ..Default::default()
        };
        let c = compare(rows, &opts).unwrap();
        assert_eq!(c.len(), 1);
        let t = c[0].table().render(distill_core::table::Format::Md);
        let expected = "\
| run | model.dim | train.lr | seeds | status | test_accuracy | model_bytes |
|---|---|---|---|---|---|---|
| exp (2 seeds) | 32 | 0.005 | 1,2 | completed | 0.8200 ± 0.0283 | 100 * |
| exp (2 seeds) | 64 | 0.005 | 1,2 | completed | 0.8900 ± 0.0141 (+0.0700) * | 200 (+100) |
| exp/c1 | 64 | 0.01 | 1 | completed | 0.7000 (-0.1200) | 200 (+100) |
";
        assert!(t.contains(expected), "got:\n{t}");
    }

    #[test]
    fn all_keys_sort_and_filter() {
        let rows = vec![
            row("a", 1, "32", "0.005", 0.8, 1.0),
            row("b", 1, "64", "0.005", 0.9, 2.0),
        ];
        let opts = Options {
            all: true,
            sort: Some("test_accuracy".into()),
            ..Default::default()
        };
        let c = compare(rows.clone(), &opts).unwrap();
        assert!(c[0].changed.contains(&"train.epochs".to_string()));
        assert_eq!(c[0].groups[0].label, "exp/b", "sorted best first");
        let opts = Options {
            filters: vec![("model.dim".into(), "32".into())],
            ..Default::default()
        };
        let c = compare(rows, &opts).unwrap();
        assert_eq!(c[0].groups.len(), 1);
        assert!(c[0].changed.is_empty(), "one row: nothing differs");
    }
}
