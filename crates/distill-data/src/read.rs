//! Format readers. Each turns a file into records (a JSON object of the mapped
//! fields, plus where the record came from) or row-level rejects; only
//! file-level problems (missing file, unmapped field, unparseable JSON
//! document) are errors.

use crate::error::{DataError, Result};
use distill_core::types::Reject;
use polars::prelude::*;
use serde_json::{Map, Value};
use std::path::Path;

/// A supported input format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Csv,
    Tsv,
    Jsonl,
    Json,
    Parquet,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Tsv => "tsv",
            Format::Jsonl => "jsonl",
            Format::Json => "json",
            Format::Parquet => "parquet",
        }
    }

    pub fn parse(name: &str) -> Option<Format> {
        match name.to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv),
            "tsv" | "tab" => Some(Format::Tsv),
            "jsonl" | "ndjson" | "json-lines" => Some(Format::Jsonl),
            "json" => Some(Format::Json),
            "parquet" | "pq" => Some(Format::Parquet),
            _ => None,
        }
    }

    /// The format named by a file's extension.
    pub fn from_path(path: &Path) -> Result<Format> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default();
        Format::parse(ext).ok_or_else(|| DataError::UnknownFormat {
            path: path.to_path_buf(),
            format: if ext.is_empty() {
                "(no extension)".into()
            } else {
                ext.to_string()
            },
        })
    }
}

/// How to read one file.
#[derive(Debug, Clone)]
pub struct ReadSpec {
    pub format: Format,
    /// CSV/TSV delimiter (default `,` for CSV, tab for TSV).
    pub delimiter: Option<u8>,
    /// CSV quoting (default on for CSV, off for TSV, where quotes are text).
    pub quoting: Option<bool>,
    /// Column names for a CSV/TSV without a header row.
    pub columns: Option<Vec<String>>,
    /// JSON: pointer to the array of records (`/train`); a last segment `*`
    /// iterates every key of an object, exposing the key as field `$key`.
    pub records: Option<String>,
}

/// One record read from a file, before mapping.
#[derive(Debug, Clone)]
pub struct RawRecord {
    pub line: Option<u64>,
    pub record: Option<String>,
    pub value: Value,
}

/// What a reader produced.
pub enum Item {
    Record(RawRecord),
    Reject(Reject),
}

/// Read a file. `fields` are the (role, field) pairs the mapping needs, used
/// to check the mapping against the file's columns before any work.
pub fn read_file(path: &Path, spec: &ReadSpec, fields: &[(String, String)]) -> Result<Vec<Item>> {
    if !path.exists() {
        return Err(DataError::MissingFile {
            path: path.to_path_buf(),
            hint: Some("paths in a data config are relative to the config file".into()),
        });
    }
    let items = match spec.format {
        Format::Csv | Format::Tsv => read_delimited(path, spec, fields)?,
        Format::Jsonl => read_jsonl(path)?,
        Format::Json => read_json(path, spec)?,
        Format::Parquet => read_parquet(path, fields)?,
    };
    if matches!(spec.format, Format::Jsonl | Format::Json) {
        check_json_fields(path, &items, fields)?;
    }
    Ok(items)
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

/// A raw row for a reject record: at most 1,000 characters.
pub(crate) fn truncate(raw: &str) -> String {
    if raw.chars().count() > 1000 {
        raw.chars().take(1000).collect::<String>() + "…"
    } else {
        raw.to_string()
    }
}

fn unmapped(path: &Path, role: &str, field: &str, available: Vec<String>) -> DataError {
    let suggestion = distill_core::config::nearest(field, &available);
    DataError::UnmappedField {
        path: path.to_path_buf(),
        field: field.to_string(),
        role: role.to_string(),
        available,
        suggestion,
    }
}

/// The top-level names a field spec refers to: `a.b` → `a`; `{x}_{y}` → x, y.
pub fn field_roots(field: &str) -> Vec<String> {
    if field.contains('{') {
        let mut out = Vec::new();
        let mut rest = field;
        while let Some(start) = rest.find('{') {
            let Some(len) = rest[start + 1..].find('}') else {
                break;
            };
            out.push(
                rest[start + 1..start + 1 + len]
                    .split('.')
                    .next()
                    .unwrap_or("")
                    .to_string(),
            );
            rest = &rest[start + 1 + len + 1..];
        }
        out
    } else {
        vec![field.split('.').next().unwrap_or(field).to_string()]
    }
}

fn read_delimited(path: &Path, spec: &ReadSpec, fields: &[(String, String)]) -> Result<Vec<Item>> {
    let file = display(path);
    let delimiter = spec.delimiter.unwrap_or(if spec.format == Format::Tsv {
        b'\t'
    } else {
        b','
    });
    let quoting = spec.quoting.unwrap_or(spec.format == Format::Csv);
    // In memory, so that a reject can quote its raw row and its line number
    // comes from the bytes themselves (see `RowLocator`).
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let locate = RowLocator::new(&bytes);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .quoting(quoting)
        .has_headers(spec.columns.is_none())
        .flexible(false)
        .from_reader(bytes.as_slice());
    let header: Vec<String> = match &spec.columns {
        Some(cols) => cols.clone(),
        None => reader
            .byte_headers()
            .map_err(|e| DataError::BadFile {
                path: path.to_path_buf(),
                message: format!("cannot read the header row: {e}"),
            })?
            .iter()
            .map(|h| {
                String::from_utf8_lossy(h)
                    .trim_start_matches('\u{feff}')
                    .trim()
                    .to_string()
            })
            .collect(),
    };
    // Resolve every mapped column once.
    let mut wanted: Vec<(String, usize)> = Vec::new();
    for (role, field) in fields {
        for root in field_roots(field) {
            if root == "$key" || wanted.iter().any(|(n, _)| *n == root) {
                continue;
            }
            match header.iter().position(|h| *h == root) {
                Some(idx) => wanted.push((root, idx)),
                None => return Err(unmapped(path, role, &root, header.clone())),
            }
        }
    }
    let mut items = Vec::new();
    let mut record = csv::ByteRecord::new();
    loop {
        let before = reader.position().byte();
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let start = record.position().map(|p| p.byte()).unwrap_or(before);
                let line = locate.line(start);
                let mut map = Map::new();
                let mut bad = None;
                for (name, idx) in &wanted {
                    let bytes = record.get(*idx).unwrap_or_default();
                    match std::str::from_utf8(bytes) {
                        Ok(s) => {
                            map.insert(name.clone(), Value::String(s.to_string()));
                        }
                        Err(e) => {
                            bad = Some(Reject {
                                file: file.clone(),
                                line: Some(line),
                                record: None,
                                field: Some(name.clone()),
                                reason: format!("invalid UTF-8 at byte {}", e.valid_up_to()),
                                raw: Some(truncate(&String::from_utf8_lossy(bytes))),
                            });
                            break;
                        }
                    }
                }
                items.push(match bad {
                    Some(r) => Item::Reject(r),
                    None => Item::Record(RawRecord {
                        line: Some(line),
                        record: None,
                        value: Value::Object(map),
                    }),
                });
            }
            Err(e) => {
                let start = e.position().map(|p| p.byte()).unwrap_or(before);
                let line = locate.line(start);
                let raw = locate.raw(start, reader.position().byte());
                let reason = match e.kind() {
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => format!("wrong column count: expected {expected_len}, found {len}"),
                    _ => e.to_string(),
                };
                items.push(Item::Reject(Reject {
                    file: file.clone(),
                    line: Some(line),
                    record: None,
                    field: None,
                    reason,
                    raw: Some(truncate(&String::from_utf8_lossy(raw))),
                }));
                // An I/O error does not advance the reader: stop here.
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    break;
                }
            }
        }
    }
    Ok(items)
}

/// Line numbers and raw text of CSV rows, from byte offsets.
///
/// The csv reader's own line count is one too low for rows after a CRLF line
/// end: a record ends at the `\r`, and the next record's position is taken
/// before its `\n` is consumed. Counting `\n` bytes up to the row's first
/// byte gives the line an editor shows, for LF, CRLF and CR-free files alike.
struct RowLocator<'a> {
    bytes: &'a [u8],
    /// Offsets of every `\n`, ascending.
    newlines: Vec<usize>,
}

impl<'a> RowLocator<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        let newlines = bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i)
            .collect();
        Self { bytes, newlines }
    }

    /// The first byte of the row whose record position is `start` (skipping
    /// the line-end bytes a position may point at).
    fn row_start(&self, start: u64) -> usize {
        let mut i = usize::try_from(start)
            .unwrap_or(usize::MAX)
            .min(self.bytes.len());
        while i < self.bytes.len() && matches!(self.bytes[i], b'\r' | b'\n') {
            i += 1;
        }
        i
    }

    /// 1-based line of the row starting at record position `start`.
    fn line(&self, start: u64) -> u64 {
        let first = self.row_start(start);
        self.newlines.partition_point(|&n| n < first) as u64 + 1
    }

    /// The raw bytes of a row from record position `start` to reader position
    /// `end` (after the row), without its line end. Falls back to the rest of
    /// the line when the reader did not advance.
    fn raw(&self, start: u64, end: u64) -> &'a [u8] {
        let first = self.row_start(start);
        let mut last = usize::try_from(end)
            .unwrap_or(usize::MAX)
            .min(self.bytes.len());
        if last <= first {
            last = self.bytes[first..]
                .iter()
                .position(|b| *b == b'\n')
                .map_or(self.bytes.len(), |p| first + p);
        }
        let mut row = &self.bytes[first..last];
        while let Some((b'\r' | b'\n', rest)) = row.split_last() {
            row = rest;
        }
        row
    }
}

fn read_jsonl(path: &Path) -> Result<Vec<Item>> {
    let file = display(path);
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let mut items = Vec::new();
    for (index, raw_line) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = index as u64 + 1;
        let raw_line = raw_line.strip_suffix(b"\r").unwrap_or(raw_line);
        if raw_line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let reject = |reason: String| {
            Item::Reject(Reject {
                file: file.clone(),
                line: Some(line),
                record: None,
                field: None,
                reason,
                raw: Some(truncate(&String::from_utf8_lossy(raw_line))),
            })
        };
        let text = match std::str::from_utf8(raw_line) {
            Ok(t) => t,
            Err(e) => {
                items.push(reject(format!("invalid UTF-8 at byte {}", e.valid_up_to())));
                continue;
            }
        };
        match serde_json::from_str::<Value>(text) {
            Ok(value @ Value::Object(_)) => items.push(Item::Record(RawRecord {
                line: Some(line),
                record: None,
                value,
            })),
            Ok(other) => items.push(reject(format!(
                "expected a JSON object, found {}",
                json_type(&other)
            ))),
            Err(e) => items.push(reject(format!("invalid JSON: {e}"))),
        }
    }
    Ok(items)
}

fn read_json(path: &Path, spec: &ReadSpec) -> Result<Vec<Item>> {
    let mut bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if std::str::from_utf8(&bytes).is_err() {
        // One JSON document cannot be rejected row by row: repair what can be
        // repaired (CESU-8 surrogate pairs, as some exporters write emoji),
        // replace the rest with U+FFFD, and say so.
        let (fixed, pairs, replaced) = repair_utf8(&bytes);
        eprintln!(
            "warning: {}: invalid UTF-8: {pairs} CESU-8 surrogate pair(s) decoded, {replaced} invalid sequence(s) replaced with U+FFFD",
            path.display()
        );
        bytes = fixed.into_bytes();
    }
    let root: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        // Real exports carry lone UTF-16 surrogate escapes (`\ud83d` cut in
        // half); serde_json rejects them. Replace them with U+FFFD and retry.
        Err(e) if e.to_string().contains("unicode code point") => {
            let (fixed, replaced) = replace_lone_surrogates(&bytes);
            let v = serde_json::from_slice(&fixed).map_err(|e| DataError::BadFile {
                path: path.to_path_buf(),
                message: format!("invalid JSON document: {e}"),
            })?;
            eprintln!(
                "warning: {}: replaced {replaced} lone surrogate escape(s) with U+FFFD",
                path.display()
            );
            v
        }
        Err(e) => {
            return Err(DataError::BadFile {
                path: path.to_path_buf(),
                message: format!("invalid JSON document: {e}"),
            });
        }
    };
    let pointer = spec.records.clone().unwrap_or_default();
    let mut groups: Vec<(String, Option<String>, &Value)> = Vec::new();
    if let Some(parent) = pointer.strip_suffix("/*") {
        let node = root.pointer(parent).ok_or_else(|| DataError::BadFile {
            path: path.to_path_buf(),
            message: format!("records pointer `{parent}` matches nothing"),
        })?;
        let Value::Object(map) = node else {
            return Err(DataError::BadFile {
                path: path.to_path_buf(),
                message: format!("records pointer `{pointer}`: `{parent}` is not an object"),
            });
        };
        for (key, value) in map {
            groups.push((format!("{parent}/{key}"), Some(key.clone()), value));
        }
    } else {
        let node = root.pointer(&pointer).ok_or_else(|| DataError::BadFile {
            path: path.to_path_buf(),
            message: format!("records pointer `{pointer}` matches nothing"),
        })?;
        groups.push((pointer.clone(), None, node));
    }
    let mut items = Vec::new();
    for (prefix, key, node) in groups {
        let Value::Array(records) = node else {
            return Err(DataError::BadFile {
                path: path.to_path_buf(),
                message: format!(
                    "expected an array of records at `{}`, found {}\nhint: set `records` to the JSON pointer of the array",
                    if prefix.is_empty() { "/" } else { &prefix },
                    json_type(node)
                ),
            });
        };
        for (i, value) in records.iter().enumerate() {
            let mut value = value.clone();
            if let (Some(k), Value::Object(map)) = (&key, &mut value) {
                map.insert("$key".into(), Value::String(k.clone()));
            } else if let (Some(k), Value::Array(arr)) = (&key, &value) {
                let mut map = Map::new();
                for (j, v) in arr.iter().enumerate() {
                    map.insert(j.to_string(), v.clone());
                }
                map.insert("$key".into(), Value::String(k.clone()));
                value = Value::Object(map);
            }
            items.push(Item::Record(RawRecord {
                line: None,
                record: Some(format!("{prefix}/{i}")),
                value,
            }));
        }
    }
    Ok(items)
}

fn check_json_fields(path: &Path, items: &[Item], fields: &[(String, String)]) -> Result<()> {
    let records: Vec<&Value> = items
        .iter()
        .filter_map(|i| match i {
            Item::Record(r) => Some(&r.value),
            Item::Reject(_) => None,
        })
        .collect();
    if records.is_empty() {
        return Ok(());
    }
    for (role, field) in fields {
        for root in field_roots(field) {
            if root == "$key" {
                continue;
            }
            let present = records.iter().any(|v| lookup(v, &root).is_some());
            if !present {
                let available = match records[0] {
                    Value::Object(m) => m.keys().cloned().collect(),
                    Value::Array(a) => (0..a.len()).map(|i| i.to_string()).collect(),
                    _ => Vec::new(),
                };
                return Err(unmapped(path, role, &root, available));
            }
        }
    }
    Ok(())
}

fn read_parquet(path: &Path, fields: &[(String, String)]) -> Result<Vec<Item>> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let df = ParquetReader::new(file)
        .finish()
        .map_err(|e| DataError::Parquet {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut columns = Vec::new();
    for (role, field) in fields {
        for root in field_roots(field) {
            if columns.iter().any(|(n, _): &(String, &Column)| *n == root) {
                continue;
            }
            let column = df
                .column(&root)
                .map_err(|_| unmapped(path, role, &root, names.clone()))?;
            columns.push((root, column));
        }
    }
    let mut items = Vec::with_capacity(df.height());
    for row in 0..df.height() {
        let mut map = Map::new();
        for (name, column) in &columns {
            let cell = column.get(row).map_err(|e| DataError::Parquet {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
            map.insert(name.clone(), any_to_json(&cell));
        }
        items.push(Item::Record(RawRecord {
            line: None,
            record: Some(format!("row {}", row + 1)),
            value: Value::Object(map),
        }));
    }
    Ok(items)
}

fn any_to_json(value: &AnyValue) -> Value {
    match value {
        AnyValue::Null => Value::Null,
        AnyValue::Boolean(b) => Value::Bool(*b),
        AnyValue::String(s) => Value::String(s.to_string()),
        AnyValue::StringOwned(s) => Value::String(s.to_string()),
        AnyValue::Int8(v) => Value::from(*v),
        AnyValue::Int16(v) => Value::from(*v),
        AnyValue::Int32(v) => Value::from(*v),
        AnyValue::Int64(v) => Value::from(*v),
        AnyValue::UInt8(v) => Value::from(*v),
        AnyValue::UInt16(v) => Value::from(*v),
        AnyValue::UInt32(v) => Value::from(*v),
        AnyValue::UInt64(v) => Value::from(*v),
        AnyValue::Float32(v) => Value::from(*v as f64),
        AnyValue::Float64(v) => Value::from(*v),
        AnyValue::List(series) => Value::Array(
            (0..series.len())
                .map(|i| {
                    series
                        .get(i)
                        .map(|v| any_to_json(&v))
                        .unwrap_or(Value::Null)
                })
                .collect(),
        ),
        other => Value::String(other.to_string()),
    }
}

/// The JSON type name of a value, for messages.
pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Look up a dotted field path (`a.b.0`) in a record.
pub fn lookup<'a>(value: &'a Value, field: &str) -> Option<&'a Value> {
    if let Value::Object(map) = value
        && let Some(v) = map.get(field)
    {
        return Some(v);
    }
    let mut current = value;
    for part in field.split('.') {
        current = match current {
            Value::Object(map) => map.get(part)?,
            Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

/// Decode CESU-8 surrogate pairs (ED Ax xx ED Bx xx) to real code points and
/// replace any other invalid UTF-8 with U+FFFD.
fn repair_utf8(bytes: &[u8]) -> (String, usize, usize) {
    let mut out = String::with_capacity(bytes.len());
    let (mut pairs, mut replaced) = (0, 0);
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                break;
            }
            Err(e) => {
                let good = e.valid_up_to();
                out.push_str(std::str::from_utf8(&rest[..good]).unwrap_or_default());
                rest = &rest[good..];
                if rest.len() >= 6
                    && rest[0] == 0xED
                    && (0xA0..=0xAF).contains(&rest[1])
                    && rest[3] == 0xED
                    && (0xB0..=0xBF).contains(&rest[4])
                {
                    let high =
                        0xD000 | (u32::from(rest[1] & 0x3F) << 6) | u32::from(rest[2] & 0x3F);
                    let low = 0xD000 | (u32::from(rest[4] & 0x3F) << 6) | u32::from(rest[5] & 0x3F);
                    let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                    out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                    pairs += 1;
                    rest = &rest[6..];
                } else {
                    out.push('\u{fffd}');
                    replaced += 1;
                    rest = &rest[e.error_len().unwrap_or(rest.len()).max(1)..];
                }
            }
        }
    }
    (out, pairs, replaced)
}

/// Replace `\uD800`-`\uDFFF` escapes that do not form a valid pair with `\uFFFD`.
fn replace_lone_surrogates(bytes: &[u8]) -> (Vec<u8>, usize) {
    fn hex4(b: &[u8]) -> Option<u32> {
        let s = std::str::from_utf8(b.get(..4)?).ok()?;
        u32::from_str_radix(s, 16).ok()
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut replaced = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 1 < bytes.len() {
            if bytes[i + 1] == b'u'
                && let Some(code) = hex4(&bytes[i + 2..])
            {
                let is_high = (0xD800..0xDC00).contains(&code);
                let is_low = (0xDC00..0xE000).contains(&code);
                let next_low = bytes.get(i + 6) == Some(&b'\\')
                    && bytes.get(i + 7) == Some(&b'u')
                    && hex4(&bytes[(i + 8).min(bytes.len())..])
                        .is_some_and(|c| (0xDC00..0xE000).contains(&c));
                if is_high && next_low {
                    out.extend_from_slice(&bytes[i..i + 12]);
                    i += 12;
                    continue;
                }
                if is_high || is_low {
                    out.extend_from_slice(b"\\ufffd");
                    replaced += 1;
                    i += 6;
                    continue;
                }
            }
            out.extend_from_slice(&bytes[i..i + 2]);
            i += 2;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    (out, replaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delimited(text: &[u8]) -> Vec<Item> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("d.csv");
        std::fs::write(&path, text).expect("write");
        let spec = ReadSpec {
            format: Format::Csv,
            delimiter: None,
            quoting: None,
            columns: None,
            records: None,
        };
        read_file(&path, &spec, &[("text".into(), "text".into())]).expect("read")
    }

    /// (line, raw) of every reject, and the lines of records.
    fn lines(items: &[Item]) -> (Vec<(u64, Option<String>)>, Vec<u64>) {
        let mut rejects = Vec::new();
        let mut records = Vec::new();
        for item in items {
            match item {
                Item::Reject(r) => rejects.push((r.line.expect("line"), r.raw.clone())),
                Item::Record(r) => records.push(r.line.expect("line")),
            }
        }
        (rejects, records)
    }

    #[test]
    fn crlf_and_lf_files_report_the_same_lines_and_raw_rows() {
        let lf = b"text,label\nfine,a\ntoo,many,cols\n\"multi\nline\",b\nlast,c\n";
        let crlf = b"text,label\r\nfine,a\r\ntoo,many,cols\r\n\"multi\r\nline\",b\r\nlast,c\r\n";
        for text in [&lf[..], &crlf[..]] {
            let (rejects, records) = lines(&delimited(text));
            assert_eq!(
                rejects,
                vec![(3, Some("too,many,cols".to_string()))],
                "{}",
                String::from_utf8_lossy(text)
            );
            assert_eq!(records, vec![2, 4, 6], "{}", String::from_utf8_lossy(text));
        }
        // Blank lines count, whatever the line end.
        let (rejects, _) = lines(&delimited(b"text,label\r\n\r\nfine,a\r\nx,y,z\r\n"));
        assert_eq!(rejects, vec![(4, Some("x,y,z".to_string()))]);
        // A ragged last row without a line end keeps its text.
        let (rejects, _) = lines(&delimited(b"text,label\nfine,a\nragged"));
        assert_eq!(rejects, vec![(3, Some("ragged".to_string()))]);
    }

    #[test]
    fn cesu8_pairs_are_decoded() {
        let (s, pairs, replaced) = repair_utf8(b"pizza \xED\xA0\xBC\xED\xBD\x95 \xFF!");
        assert_eq!(s, "pizza \u{1f355} \u{fffd}!");
        assert_eq!((pairs, replaced), (1, 1));
    }

    #[test]
    fn lone_surrogates_are_replaced_pairs_kept() {
        let input = br#"["a\ud83d b", "\ud83d\ude00", "\\ud83d"]"#;
        let (fixed, n) = replace_lone_surrogates(input);
        assert_eq!(n, 1);
        let v: Value = serde_json::from_slice(&fixed).expect("parses");
        assert_eq!(v[0], "a\u{fffd} b");
        assert_eq!(v[1], "\u{1f600}");
        assert_eq!(v[2], "\\ud83d");
    }
}
