//! `distill data import`: map fields of raw files onto [`Example`]s.
//!
//! A data config (`configs/data/<name>.toml`) names one or more sources, each a
//! file (or a `*` pattern) with its format and field mapping:
//!
//! ```toml
//! name = "banking77"
//! task = "classify"
//! root = "../../../shared/datasets/banking77"   # relative to this file
//!
//! [[sources]]
//! path = "train.csv"
//! split = "train"
//! text = "text"
//! label = "category"
//! ```
//!
//! Field specs are column names or dotted JSON paths (`meta.text`, `0`), or
//! templates over several fields (`"{scenario}_{intent}"`). The same mapping
//! can come from flags instead of a file.

use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::read::{self, Format, Item, ReadSpec, json_type, lookup};
use distill_core::config::ConfigSource;
use distill_core::hash::{content_id, sha256_file};
use distill_core::types::{Example, Reject, SourceFile, Span, Split, Task};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A data config file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DataConfig {
    /// Dataset name (defaults to the config file's stem).
    #[serde(default)]
    pub name: Option<String>,
    /// `classify`, `multilabel` or `extract`; inferred from the mapping if absent.
    #[serde(default)]
    pub task: Option<Task>,
    /// Directory that relative source paths resolve against (itself relative
    /// to the config file). Override with `--set root=/path`.
    #[serde(default)]
    pub root: Option<PathBuf>,
    /// A human note on the data (licence, provenance), copied to dataset.json.
    #[serde(default)]
    pub description: Option<String>,
    pub sources: Vec<SourceConfig>,
    /// Set by the loader: the directory paths resolve against.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// One source: a file (or pattern) and its field mapping.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SourceConfig {
    /// File path; a `*` in the file name matches several files.
    pub path: String,
    #[serde(default)]
    pub format: Option<Format>,
    /// Single-character delimiter for CSV/TSV.
    #[serde(default)]
    pub delimiter: Option<String>,
    #[serde(default)]
    pub quoting: Option<bool>,
    /// Column names of a CSV/TSV without a header row.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// JSON pointer to the records array (`/train`; `/*` for every key).
    #[serde(default)]
    pub records: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub label: Option<String>,
    /// Multi-label field: a JSON array, or a string split on `labels-separator`.
    #[serde(default)]
    pub labels: Option<String>,
    #[serde(default)]
    pub labels_separator: Option<String>,
    #[serde(default)]
    pub spans: Option<String>,
    #[serde(default)]
    pub spans_format: Option<SpansFormat>,
    /// Every row of this source goes to this split.
    #[serde(default)]
    pub split: Option<String>,
    /// Or the split comes from a field (values like train/validation/test).
    #[serde(default)]
    pub split_field: Option<String>,
    /// The source's own row id, kept as `source_id`.
    #[serde(default)]
    pub id: Option<String>,
}

/// How spans are written in a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SpansFormat {
    /// `[{"start": 0, "end": 4, "label": "x"}]`
    List,
    /// `{"label": {"span": [s, e], "text": ".."}}` (NLU++ slots)
    SlotMap,
    /// Inline annotation `wake me [time : at six]` (HWU64); gives the text too.
    Brackets,
    /// `[{"text": "play "}, {"text": "jazz", "entity": "genre"}]` (SNIPS); gives the text too.
    Segments,
}

impl DataConfig {
    /// Load a config file with its `extends` and `--set` overrides.
    pub fn load(path: &Path, sets: &[String]) -> Result<Self> {
        let mut source = ConfigSource::load(path)?;
        source.apply_overrides(sets)?;
        let mut config: DataConfig = source.deserialize()?;
        config.base_dir = source.base_dir();
        if config.name.is_none() {
            config.name = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        }
        Ok(config)
    }

    /// The directory relative source paths resolve against.
    pub fn source_dir(&self) -> PathBuf {
        match &self.root {
            Some(root) if root.is_absolute() => root.clone(),
            Some(root) => self.base_dir.join(root),
            None => self.base_dir.clone(),
        }
    }

    /// The task: configured, or inferred from the first source's mapping.
    pub fn task(&self) -> Task {
        self.task.unwrap_or_else(|| {
            let first = self.sources.first();
            match first {
                Some(s) if s.labels.is_some() => Task::Multilabel,
                Some(s) if s.label.is_none() && s.spans.is_some() => Task::Extract,
                _ => Task::Classify,
            }
        })
    }
}

impl SourceConfig {
    fn text_from_spans(&self) -> bool {
        matches!(
            self.spans_format,
            Some(SpansFormat::Brackets | SpansFormat::Segments)
        )
    }

    /// (role, field) pairs this mapping reads.
    fn fields(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut push = |role: &str, f: &Option<String>| {
            if let Some(f) = f {
                out.push((role.to_string(), f.clone()));
            }
        };
        push("text", &self.text);
        push("label", &self.label);
        push("labels", &self.labels);
        push("spans", &self.spans);
        push("split-field", &self.split_field);
        push("id", &self.id);
        out
    }

    fn validate(&self, context: &str) -> Result<()> {
        let err = |message: String| DataError::Config {
            context: context.to_string(),
            message,
        };
        if self.text.is_none() && !self.text_from_spans() {
            return Err(err(format!(
                "source `{}` maps no `text` field\nhint: add `text = \"<column>\"` (or --text <column>)",
                self.path
            )));
        }
        if self.text_from_spans() && self.spans.is_none() {
            return Err(err(format!(
                "source `{}`: spans-format needs `spans`",
                self.path
            )));
        }
        if self.split.is_some() && self.split_field.is_some() {
            return Err(err(format!(
                "source `{}`: give `split` or `split-field`, not both",
                self.path
            )));
        }
        if let Some(s) = &self.split
            && Split::parse(s).is_none()
        {
            return Err(err(format!(
                "source `{}`: unknown split `{s}` (expected train, val, test or unlabeled)",
                self.path
            )));
        }
        if let Some(d) = &self.delimiter
            && d.len() != 1
        {
            return Err(err(format!(
                "source `{}`: delimiter must be one ASCII character, got `{d}`",
                self.path
            )));
        }
        Ok(())
    }
}

/// The result of an import: the dataset and every rejected row.
pub struct ImportOutcome {
    pub dataset: Dataset,
    pub rejects: Vec<Reject>,
}

/// Expand a path whose components may hold `*` into the sorted matching files.
fn expand(dir: &Path, pattern: &str) -> Result<Vec<PathBuf>> {
    let full = dir.join(pattern);
    if !pattern.contains('*') {
        return Ok(vec![full]);
    }
    let out: Vec<PathBuf> = distill_core::fsutil::glob(&full)
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    if out.is_empty() {
        return Err(DataError::MissingFile {
            path: full,
            hint: Some("the pattern matches no file".into()),
        });
    }
    Ok(out)
}

/// Run an import: read every source, map rows, collect rejects.
pub fn import(config: &DataConfig) -> Result<ImportOutcome> {
    let context = config.name.clone().unwrap_or_else(|| "data config".into());
    if config.sources.is_empty() {
        return Err(DataError::Config {
            context,
            message: "no sources\nhint: add a [[sources]] table or pass files on the command line"
                .into(),
        });
    }
    let task = config.task();
    let dir = config.source_dir();
    let mut examples = Vec::new();
    let mut rejects = Vec::new();
    let mut sources = Vec::new();
    let mut digests: BTreeMap<PathBuf, String> = BTreeMap::new();
    // Validate every source and resolve every file before reading any.
    let mut plan = Vec::new();
    for source in &config.sources {
        source.validate(&context)?;
        for path in expand(&dir, &source.path)? {
            if !path.exists() {
                return Err(DataError::MissingFile {
                    path,
                    hint: Some(format!(
                        "paths resolve against {} (set `root` or use --set root=<dir>)",
                        dir.display()
                    )),
                });
            }
            let format = match source.format {
                Some(f) => f,
                None => Format::from_path(&path)?,
            };
            plan.push((source, path, format));
        }
    }
    for (source, path, format) in plan {
        let spec = ReadSpec {
            format,
            delimiter: source.delimiter.as_ref().map(|d| d.as_bytes()[0]),
            quoting: source.quoting,
            columns: source.columns.clone(),
            records: source.records.clone(),
        };
        let items = read::read_file(&path, &spec, &source.fields())?;
        let shown = path.display().to_string();
        let (mut rows, mut rejected) = (0u64, 0u64);
        for item in items {
            match item {
                Item::Reject(r) => {
                    rejected += 1;
                    rejects.push(r);
                }
                Item::Record(record) => match map_record(source, task, &record.value) {
                    Ok(mut ex) => {
                        ex.source = shown.clone();
                        ex.line = record.line.unwrap_or_else(|| {
                            record
                                .record
                                .as_deref()
                                .and_then(|r| r.rsplit(['/', ' ']).next())
                                .and_then(|n| n.parse::<u64>().ok())
                                .map(|n| n + u64::from(format == Format::Json))
                                .unwrap_or(0)
                        });
                        rows += 1;
                        examples.push(ex);
                    }
                    Err((field, reason)) => {
                        rejected += 1;
                        rejects.push(Reject {
                            file: shown.clone(),
                            line: record.line,
                            record: record.record.clone(),
                            field,
                            reason,
                            raw: Some(read::truncate(&record.value.to_string())),
                        });
                    }
                },
            }
        }
        let sha256 = match digests.get(&path) {
            Some(d) => d.clone(),
            None => {
                let d = sha256_file(&path)?;
                digests.insert(path.clone(), d.clone());
                d
            }
        };
        sources.push(SourceFile {
            path: shown,
            sha256,
            format: format.as_str().to_string(),
            rows,
            rejected,
        });
    }
    let name = config.name.clone().unwrap_or_else(|| "dataset".into());
    let mut dataset = Dataset::new(name, task, examples, sources);
    dataset.manifest.rejected = rejects.len() as u64;
    if let Some(d) = &config.description {
        dataset.manifest.description = Some(d.clone());
    }
    Ok(ImportOutcome { dataset, rejects })
}

type MapError = (Option<String>, String);

fn scalar_string(value: &Value, field: &str) -> std::result::Result<Option<String>, MapError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        other => Err((
            Some(field.to_string()),
            format!(
                "field `{field}` must be a string, found {}",
                json_type(other)
            ),
        )),
    }
}

/// Resolve a field spec (plain path or `{a}_{b}` template) to a string.
fn resolve(record: &Value, spec: &str) -> std::result::Result<Option<String>, MapError> {
    if !spec.contains('{') {
        return match lookup(record, spec) {
            None => Ok(None),
            Some(v) => scalar_string(v, spec),
        };
    }
    let mut out = String::new();
    let mut rest = spec;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start + 1..].find('}') else {
            return Err((None, format!("unclosed `{{` in field template `{spec}`")));
        };
        let field = &rest[start + 1..start + 1 + len];
        match lookup(record, field)
            .map(|v| scalar_string(v, field))
            .transpose()?
            .flatten()
        {
            Some(s) => out.push_str(&s),
            None => return Ok(None),
        }
        rest = &rest[start + 1 + len + 1..];
    }
    out.push_str(rest);
    Ok(Some(out))
}

/// Map one raw record to an example, or say which field is wrong and why.
pub fn map_record(
    source: &SourceConfig,
    task: Task,
    record: &Value,
) -> std::result::Result<Example, MapError> {
    let mut text = match &source.text {
        Some(field) => match lookup(record, field) {
            None | Some(Value::Null) => {
                return Err((
                    Some(field.clone()),
                    format!("missing text (field `{field}`)"),
                ));
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                return Err((
                    Some(field.clone()),
                    format!(
                        "field `{field}` must be a string, found {}",
                        json_type(other)
                    ),
                ));
            }
        },
        None => None,
    };
    let mut spans = None;
    if let Some(field) = &source.spans {
        let value = lookup(record, field).unwrap_or(&Value::Null);
        let format = source.spans_format.unwrap_or(SpansFormat::List);
        let parsed = parse_spans(value, format, field)?;
        if let Some((derived_text, s)) = parsed {
            if let Some(t) = derived_text
                && text.is_none()
            {
                text = Some(t);
            }
            spans = Some(s);
        }
    }
    let text = match text {
        Some(t) if !t.trim().is_empty() => t,
        _ => {
            let field = source.text.clone().or(source.spans.clone());
            return Err((field, "missing text (empty)".into()));
        }
    };
    if let Some(spans) = &spans {
        let n = text.chars().count();
        if let Some(bad) = spans.iter().find(|s| s.start >= s.end || s.end > n) {
            return Err((
                source.spans.clone(),
                format!(
                    "span [{}, {}) `{}` is outside the text ({} characters)",
                    bad.start, bad.end, bad.label, n
                ),
            ));
        }
    }
    let label = match &source.label {
        Some(spec) => resolve(record, spec)?
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_string()),
        None => None,
    };
    let labels = match &source.labels {
        Some(field) => match lookup(record, field) {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for item in items {
                    match scalar_string(item, field)? {
                        Some(s) if !s.trim().is_empty() => out.push(s.trim().to_string()),
                        _ => {}
                    }
                }
                out.sort();
                out.dedup();
                Some(out)
            }
            Some(Value::String(s)) => {
                let sep = source.labels_separator.as_deref().unwrap_or(",");
                let mut out: Vec<String> = s
                    .split(sep)
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .collect();
                out.sort();
                out.dedup();
                Some(out)
            }
            Some(other) => {
                return Err((
                    Some(field.clone()),
                    format!(
                        "field `{field}` must be a list of labels, found {}",
                        json_type(other)
                    ),
                ));
            }
        },
        None if task == Task::Multilabel => label.clone().map(|l| vec![l]),
        None => None,
    };
    let split = match (&source.split, &source.split_field) {
        (Some(s), _) => Split::parse(s),
        (None, Some(field)) => match resolve(record, field)? {
            None => None,
            Some(name) => match Split::parse(&name) {
                Some(s) => Some(s),
                None => {
                    return Err((
                        Some(field.clone()),
                        format!("unknown split `{name}` (expected train, val, test or unlabeled)"),
                    ));
                }
            },
        },
        (None, None) => None,
    };
    let source_id = match &source.id {
        Some(field) => resolve(record, field)?,
        None => None,
    };
    let (label, labels) = match task {
        Task::Multilabel => (None, labels),
        _ => (label, labels),
    };
    Ok(Example {
        id: content_id(&text),
        text,
        label,
        labels,
        spans,
        split,
        source: String::new(),
        line: 0,
        source_id,
    })
}

type SpansResult = std::result::Result<Option<(Option<String>, Vec<Span>)>, MapError>;

fn parse_spans(value: &Value, format: SpansFormat, field: &str) -> SpansResult {
    let bad = |message: String| Err((Some(field.to_string()), message));
    match (format, value) {
        (_, Value::Null) => Ok(None),
        (SpansFormat::List, Value::Array(items)) => {
            let mut spans = Vec::new();
            for item in items {
                let start = item.get("start").and_then(Value::as_u64);
                let end = item.get("end").and_then(Value::as_u64);
                let label = item.get("label").and_then(Value::as_str);
                match (start, end, label) {
                    (Some(s), Some(e), Some(l)) => spans.push(Span {
                        start: s as usize,
                        end: e as usize,
                        label: l.to_string(),
                    }),
                    _ => {
                        return bad(format!(
                            "span {item} needs integer `start`, `end` and string `label`"
                        ));
                    }
                }
            }
            Ok(Some((None, spans)))
        }
        (SpansFormat::SlotMap, Value::Object(map)) => {
            let mut spans = Vec::new();
            for (label, slot) in map {
                let Some(range) = slot.get("span").and_then(Value::as_array) else {
                    return bad(format!("slot `{label}` has no `span: [start, end]`"));
                };
                match (
                    range.first().and_then(Value::as_u64),
                    range.get(1).and_then(Value::as_u64),
                ) {
                    (Some(s), Some(e)) => spans.push(Span {
                        start: s as usize,
                        end: e as usize,
                        label: label.clone(),
                    }),
                    _ => return bad(format!("slot `{label}`: span must be two integers")),
                }
            }
            spans.sort_by_key(|s| (s.start, s.end));
            Ok(Some((None, spans)))
        }
        (SpansFormat::Brackets, Value::String(s)) => parse_brackets(s)
            .map(|(t, sp)| Some((Some(t), sp)))
            .map_err(|m| (Some(field.to_string()), m)),
        (SpansFormat::Segments, Value::Array(items)) => {
            let mut text = String::new();
            let mut spans = Vec::new();
            for item in items {
                let Some(t) = item.get("text").and_then(Value::as_str) else {
                    return bad(format!("segment {item} has no string `text`"));
                };
                let start = text.chars().count();
                text.push_str(t);
                if let Some(entity) = item.get("entity").and_then(Value::as_str) {
                    let end = text.chars().count();
                    // Trim whitespace inside the span, as annotators often include it.
                    let lead = t.chars().take_while(|c| c.is_whitespace()).count();
                    let trail = t.chars().rev().take_while(|c| c.is_whitespace()).count();
                    if end - trail > start + lead {
                        spans.push(Span {
                            start: start + lead,
                            end: end - trail,
                            label: entity.to_string(),
                        });
                    }
                }
            }
            Ok(Some((Some(text), spans)))
        }
        (format, other) => bad(format!(
            "field `{field}` is {} (not valid for spans-format {format:?})",
            json_type(other)
        )),
    }
}

/// Parse `wake me up [time : at six] please` into text and spans.
fn parse_brackets(annotated: &str) -> std::result::Result<(String, Vec<Span>), String> {
    let mut text = String::new();
    let mut spans = Vec::new();
    let mut rest = annotated;
    while let Some(open) = rest.find('[') {
        text.push_str(&rest[..open]);
        let Some(close) = rest[open..].find(']') else {
            return Err(format!("unclosed `[` in annotation `{annotated}`"));
        };
        let inner = &rest[open + 1..open + close];
        let Some((label, value)) = inner.split_once(':') else {
            return Err(format!("annotation `[{inner}]` lacks `label : value`"));
        };
        let value = value.trim();
        let start = text.chars().count();
        text.push_str(value);
        spans.push(Span {
            start,
            end: start + value.chars().count(),
            label: label.trim().to_string(),
        });
        rest = &rest[open + close + 1..];
    }
    text.push_str(rest);
    Ok((text, spans))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn brackets_give_text_and_spans() {
        let (text, spans) =
            parse_brackets("wake me [time : at six] on [date : monday]").expect("parse");
        assert_eq!(text, "wake me at six on monday");
        assert_eq!(spans.len(), 2);
        let chars: Vec<char> = text.chars().collect();
        let s: String = chars[spans[0].start..spans[0].end].iter().collect();
        assert_eq!(s, "at six");
        assert_eq!(spans[1].label, "date");
    }

    #[test]
    fn segments_give_text_and_spans() {
        let v = json!([{"text": "play "}, {"text": "jazz ", "entity": "genre"}, {"text": "now"}]);
        let (text, spans) = parse_spans(&v, SpansFormat::Segments, "data")
            .expect("ok")
            .expect("some");
        assert_eq!(text.as_deref(), Some("play jazz now"));
        assert_eq!(
            spans,
            vec![Span {
                start: 5,
                end: 9,
                label: "genre".into()
            }]
        );
    }

    #[test]
    fn template_labels_and_wrong_types() {
        let source = SourceConfig {
            text: Some("t".into()),
            label: Some("{a}_{b}".into()),
            ..Default::default()
        };
        let ex = map_record(
            &source,
            Task::Classify,
            &json!({"t": "hi", "a": "alarm", "b": "set"}),
        )
        .expect("maps");
        assert_eq!(ex.label.as_deref(), Some("alarm_set"));
        let err = map_record(
            &source,
            Task::Classify,
            &json!({"t": 5, "a": "x", "b": "y"}),
        )
        .unwrap_err();
        assert!(err.1.contains("must be a string"), "{err:?}");
        let err = map_record(
            &source,
            Task::Classify,
            &json!({"t": "  ", "a": "x", "b": "y"}),
        )
        .unwrap_err();
        assert!(err.1.contains("missing text"), "{err:?}");
    }

    #[test]
    fn wildcard() {
        assert!(distill_core::fsutil::wildcard_match(
            "train_*_full.json",
            "train_GetWeather_full.json"
        ));
        assert!(!distill_core::fsutil::wildcard_match(
            "train_*_full.json",
            "validate_GetWeather.json"
        ));
        assert!(distill_core::fsutil::wildcard_match("*.csv", "a.csv"));
    }
}
