//! A dataset directory: `examples.parquet` + `dataset.json` + `rejects.jsonl`.

use crate::error::{DataError, Result};
use distill_core::fsutil::{read_json, write_atomic, write_json_atomic, write_jsonl_atomic};
use distill_core::hash::sha256_hex;
use distill_core::types::{
    DATASET_SCHEMA_VERSION, DatasetManifest, Example, Reject, SourceFile, Span, Split, Task,
    label_set, split_counts,
};
use polars::prelude::*;
use std::io::Cursor;
use std::path::Path;

pub const EXAMPLES_FILE: &str = "examples.parquet";
pub const MANIFEST_FILE: &str = "dataset.json";
pub const REJECTS_FILE: &str = "rejects.jsonl";

/// A dataset in memory.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub manifest: DatasetManifest,
    pub examples: Vec<Example>,
}

impl Dataset {
    pub fn new(name: String, task: Task, examples: Vec<Example>, sources: Vec<SourceFile>) -> Self {
        let manifest = DatasetManifest {
            schema_version: DATASET_SCHEMA_VERSION,
            name,
            task,
            labels: Vec::new(),
            counts: Default::default(),
            rows: 0,
            rejected: 0,
            sources,
            examples_sha256: String::new(),
            created_by: format!("distill {}", env!("CARGO_PKG_VERSION")),
            description: None,
            curation: None,
            preprocess: Default::default(),
        };
        let mut dataset = Self { manifest, examples };
        dataset.refresh();
        dataset
    }

    /// Recompute labels, counts and row totals from the examples.
    pub fn refresh(&mut self) {
        self.manifest.labels = label_set(&self.examples);
        self.manifest.counts = split_counts(&self.examples);
        self.manifest.rows = self.examples.len() as u64;
    }

    /// Write the directory. Files are written atomically, the manifest last,
    /// so a directory with a `dataset.json` is always complete.
    pub fn save(&mut self, dir: &Path, rejects: &[Reject]) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        self.refresh();
        let bytes = examples_to_parquet(&self.examples).map_err(|e| DataError::Parquet {
            path: dir.join(EXAMPLES_FILE),
            message: e.to_string(),
        })?;
        self.manifest.examples_sha256 = sha256_hex(&bytes);
        write_atomic(&dir.join(EXAMPLES_FILE), |w| w.write_all(&bytes))?;
        write_jsonl_atomic(&dir.join(REJECTS_FILE), rejects)?;
        write_json_atomic(&dir.join(MANIFEST_FILE), &self.manifest)?;
        Ok(())
    }

    /// Read a dataset directory.
    pub fn load(dir: &Path) -> Result<Self> {
        let manifest_path = dir.join(MANIFEST_FILE);
        if !manifest_path.exists() {
            return Err(DataError::NotADataset {
                path: dir.to_path_buf(),
            });
        }
        let manifest: DatasetManifest = read_json(&manifest_path)?;
        if manifest.schema_version != DATASET_SCHEMA_VERSION {
            return Err(DataError::SchemaVersion {
                path: manifest_path,
                found: manifest.schema_version,
                expected: DATASET_SCHEMA_VERSION,
            });
        }
        let path = dir.join(EXAMPLES_FILE);
        let bytes = std::fs::read(&path).map_err(|e| DataError::io(&path, e))?;
        // The manifest is written last, so a kill between the two writes of a
        // re-import leaves new rows under the old manifest. Its hash is the
        // dataset's identity in lineage: check it against the bytes read (one
        // pass over bytes already in memory, cheap next to Parquet decoding).
        let found = sha256_hex(&bytes);
        if found != manifest.examples_sha256 {
            return Err(DataError::ExamplesMismatch {
                path,
                dir: dir.to_path_buf(),
                manifest: MANIFEST_FILE,
                expected: manifest.examples_sha256,
                found,
            });
        }
        let examples = examples_from_parquet(&bytes).map_err(|e| DataError::Parquet {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok(Self { manifest, examples })
    }

    /// Read the rejects file of a dataset directory (empty if absent).
    pub fn load_rejects(dir: &Path) -> Result<Vec<Reject>> {
        let path = dir.join(REJECTS_FILE);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(Vec::new());
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).map_err(|source| {
                    DataError::Core(distill_core::Error::Json {
                        path: path.clone(),
                        source,
                    })
                })
            })
            .collect()
    }
}

/// Serialize examples to Parquet bytes (zstd). Columns: id, text, label,
/// labels (list of strings), spans (JSON text), split, source, line, source_id.
pub fn examples_to_parquet(examples: &[Example]) -> PolarsResult<Vec<u8>> {
    let n = examples.len();
    let id: Vec<&str> = examples.iter().map(|e| e.id.as_str()).collect();
    let text: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    let label: Vec<Option<&str>> = examples.iter().map(|e| e.label.as_deref()).collect();
    let labels: Vec<Option<Series>> = examples
        .iter()
        .map(|e| {
            e.labels.as_ref().map(|ls| {
                Series::new(
                    PlSmallStr::EMPTY,
                    ls.iter().map(String::as_str).collect::<Vec<_>>(),
                )
            })
        })
        .collect();
    let spans: Vec<Option<String>> = examples
        .iter()
        .map(|e| {
            e.spans
                .as_ref()
                .map(|s| serde_json::to_string(s).unwrap_or_default())
        })
        .collect();
    let split: Vec<Option<&str>> = examples
        .iter()
        .map(|e| e.split.map(Split::as_str))
        .collect();
    let source: Vec<&str> = examples.iter().map(|e| e.source.as_str()).collect();
    let line: Vec<u64> = examples.iter().map(|e| e.line).collect();
    let source_id: Vec<Option<&str>> = examples.iter().map(|e| e.source_id.as_deref()).collect();
    let mut labels_series = Series::new("labels".into(), labels);
    if n == 0 || labels_series.dtype() == &DataType::Null {
        labels_series = labels_series.cast(&DataType::List(Box::new(DataType::String)))?;
    }
    let columns = vec![
        Column::new("id".into(), id),
        Column::new("text".into(), text),
        Column::new("label".into(), label),
        labels_series.into_column(),
        Column::new("spans".into(), spans),
        Column::new("split".into(), split),
        Column::new("source".into(), source),
        Column::new("line".into(), line),
        Column::new("source_id".into(), source_id),
    ];
    let mut df = DataFrame::new(n, columns)?;
    let mut buffer = Cursor::new(Vec::new());
    ParquetWriter::new(&mut buffer)
        .with_compression(ParquetCompression::Zstd(None))
        .finish(&mut df)?;
    Ok(buffer.into_inner())
}

/// Parse examples back from Parquet bytes written by [`examples_to_parquet`].
pub fn examples_from_parquet(bytes: &[u8]) -> PolarsResult<Vec<Example>> {
    let df = ParquetReader::new(Cursor::new(bytes)).finish()?;
    let id = df.column("id")?.str()?;
    let text = df.column("text")?.str()?;
    let label = df.column("label")?.cast(&DataType::String)?;
    let label = label.str()?;
    let labels = df
        .column("labels")?
        .cast(&DataType::List(Box::new(DataType::String)))?;
    let labels = labels.list()?;
    let spans = df.column("spans")?.cast(&DataType::String)?;
    let spans = spans.str()?;
    let split = df.column("split")?.cast(&DataType::String)?;
    let split = split.str()?;
    let source = df.column("source")?.str()?;
    let line = df.column("line")?.u64()?;
    let source_id = df.column("source_id")?.cast(&DataType::String)?;
    let source_id = source_id.str()?;
    let mut out = Vec::with_capacity(df.height());
    for (i, labels) in labels.amortized_iter().enumerate() {
        let labels = match labels {
            None => None,
            Some(series) => {
                let values = series.as_ref().str()?;
                Some(
                    (0..values.len())
                        .filter_map(|j| values.get(j))
                        .map(str::to_string)
                        .collect::<Vec<_>>(),
                )
            }
        };
        let spans: Option<Vec<Span>> = match spans.get(i) {
            None => None,
            Some(s) => Some(serde_json::from_str(s).map_err(|e| {
                PolarsError::ComputeError(format!("row {i}: bad spans JSON: {e}").into())
            })?),
        };
        out.push(Example {
            id: id.get(i).unwrap_or_default().to_string(),
            text: text.get(i).unwrap_or_default().to_string(),
            label: label.get(i).map(str::to_string),
            labels,
            spans,
            split: split.get(i).and_then(Split::parse),
            source: source.get(i).unwrap_or_default().to_string(),
            line: line.get(i).unwrap_or_default(),
            source_id: source_id.get(i).map(str::to_string),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(text: &str, label: Option<&str>, labels: Option<Vec<&str>>) -> Example {
        Example {
            id: distill_core::hash::content_id(text),
            text: text.into(),
            label: label.map(Into::into),
            labels: labels.map(|v| v.into_iter().map(Into::into).collect()),
            spans: Some(vec![Span {
                start: 0,
                end: 1,
                label: "x".into(),
            }]),
            split: Some(Split::Val),
            source: "f.csv".into(),
            line: 7,
            source_id: None,
        }
    }

    #[test]
    fn load_checks_the_examples_hash_of_the_manifest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        let mut first = Dataset::new(
            "a".into(),
            Task::Classify,
            vec![ex("one", Some("l"), None)],
            Vec::new(),
        );
        first.save(&a, &[]).expect("save a");
        let loaded = Dataset::load(&a).expect("an intact dataset loads");
        assert_eq!(
            loaded.manifest.examples_sha256,
            first.manifest.examples_sha256
        );
        let mut second = Dataset::new(
            "b".into(),
            Task::Classify,
            vec![ex("one", Some("l"), None), ex("two", Some("m"), None)],
            Vec::new(),
        );
        second.save(&b, &[]).expect("save b");
        // A torn re-import: the new rows, the old manifest.
        std::fs::copy(b.join(EXAMPLES_FILE), a.join(EXAMPLES_FILE)).expect("copy");
        let err = Dataset::load(&a).expect_err("torn dataset").to_string();
        assert!(
            err.contains("examples.parquet")
                && err.contains("does not match dataset.json")
                && err.contains(&first.manifest.examples_sha256)
                && err.contains(&second.manifest.examples_sha256),
            "{err}"
        );
    }

    #[test]
    fn parquet_round_trip() {
        let rows = vec![
            ex("a", Some("l"), None),
            ex("b", None, Some(vec!["p", "q"])),
            ex("c", None, Some(vec![])),
        ];
        let bytes = examples_to_parquet(&rows).expect("write");
        let back = examples_from_parquet(&bytes).expect("read");
        assert_eq!(back, rows);
        let empty = examples_to_parquet(&[]).expect("write empty");
        assert!(
            examples_from_parquet(&empty)
                .expect("read empty")
                .is_empty()
        );
    }
}
