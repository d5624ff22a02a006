//! Strict TOML configs.
//!
//! Two layers, strict at the edge: a user file (plus the files it `extends`,
//! plus `--set key=value` overrides) is merged into one TOML table, then
//! deserialised into a serde struct with `deny_unknown_fields`. An unknown key
//! is reported with the file it came from and the nearest known key.
//!
//! Precedence, lowest first: files named in `extends` (in order, each with its
//! own `extends` resolved first), the file itself, then `--set` overrides.
//! Tables merge key by key; arrays and scalars are replaced whole.

use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// A merged config table and where it came from.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// The merged table (`extends` removed).
    pub table: Table,
    /// Every file that contributed, the root file last.
    pub files: Vec<PathBuf>,
    /// Raw tables of the files, same order as `files`, to find a key's origin.
    raw: Vec<Table>,
    /// The `--set` arguments applied.
    pub overrides: Vec<String>,
}

impl ConfigSource {
    /// Load a file and everything it extends.
    pub fn load(path: &Path) -> Result<Self> {
        let mut files = Vec::new();
        let mut raw = Vec::new();
        let table = load_rec(path, &mut Vec::new(), &mut files, &mut raw)?;
        Ok(Self {
            table,
            files,
            raw,
            overrides: Vec::new(),
        })
    }

    /// An empty source (configs built purely from flags and overrides).
    pub fn empty() -> Self {
        Self {
            table: Table::new(),
            files: Vec::new(),
            raw: Vec::new(),
            overrides: Vec::new(),
        }
    }

    /// The directory of the root file, against which relative paths resolve.
    pub fn base_dir(&self) -> PathBuf {
        self.files
            .last()
            .and_then(|p| p.parent())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// Apply `key.path=value` overrides. The value is parsed as a TOML value
    /// (`3`, `0.5`, `true`, `["a","b"]`, `"s"`), falling back to a bare string.
    pub fn apply_overrides(&mut self, sets: &[String]) -> Result<()> {
        for arg in sets {
            let (key, value) = parse_override(arg)?;
            set_path(&mut self.table, &key, value).map_err(|message| Error::BadOverride {
                arg: arg.clone(),
                message,
            })?;
            self.overrides.push(arg.clone());
        }
        Ok(())
    }

    /// Deserialize into a strict struct, naming the origin of a bad key.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T> {
        let value = Value::Table(self.table.clone());
        let result: std::result::Result<T, _> = serde_path_to_error::deserialize(value);
        result.map_err(|err| {
            let path = err.path().to_string();
            let message = err.inner().to_string();
            if let Some((key, expected)) = parse_unknown_field(&message) {
                let full = if path == "." || path.is_empty() {
                    key.clone()
                } else if path.ends_with(&key) {
                    path.clone()
                } else {
                    // Inside internally tagged enums the path stops at the element.
                    format!("{path}.{key}")
                };
                Error::UnknownKey {
                    origin: self.origin_of(&key),
                    key: full,
                    suggestion: nearest(&key, &expected),
                }
            } else {
                Error::InvalidValue {
                    origin: self.origin_of(path.rsplit('.').next().unwrap_or(&path)),
                    key: path,
                    message,
                }
            }
        })
    }

    /// Check that the names at `keys` are safe as path components
    /// ([`crate::names::validate_name`]), naming the file and key of a bad one.
    /// A key is dotted; a segment `x[]` visits every element of the array `x`
    /// (`cases[].name`). Absent keys and non-strings are left to
    /// [`ConfigSource::deserialize`].
    pub fn check_names(&self, keys: &[&str]) -> Result<()> {
        for key in keys {
            let mut found = Vec::new();
            collect_strings(
                &self.table,
                &key.split('.').collect::<Vec<_>>(),
                "",
                &mut found,
            );
            for (path, name) in found {
                crate::names::validate_name(&name).map_err(|message| Error::InvalidValue {
                    origin: self.origin_of(key),
                    key: path,
                    message,
                })?;
            }
        }
        Ok(())
    }

    /// The resolved config as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(&self.table).unwrap_or_else(|e| format!("# unprintable: {e}\n"))
    }

    /// Which file (or `--set`) a key was last written by.
    fn origin_of(&self, key: &str) -> String {
        let leaf = key.trim_start_matches('.');
        let leaf = leaf.rsplit('.').next().unwrap_or(leaf);
        let leaf = leaf.split('[').next().unwrap_or(leaf);
        if self.overrides.iter().any(|o| {
            o.split('=')
                .next()
                .is_some_and(|k| k.trim().ends_with(leaf))
        }) {
            return "--set".to_string();
        }
        for (file, table) in self.files.iter().zip(&self.raw).rev() {
            if table_contains_key(table, leaf) {
                return file.display().to_string();
            }
        }
        self.files
            .last()
            .map(|f| f.display().to_string())
            .unwrap_or_else(|| "config".to_string())
    }
}

fn load_rec(
    path: &Path,
    stack: &mut Vec<PathBuf>,
    files: &mut Vec<PathBuf>,
    raw: &mut Vec<Table>,
) -> Result<Table> {
    let canonical = path.canonicalize().map_err(|e| Error::io(path, e))?;
    if stack.contains(&canonical) {
        let mut chain: Vec<String> = stack.iter().map(|p| p.display().to_string()).collect();
        chain.push(canonical.display().to_string());
        return Err(Error::ExtendsCycle {
            path: path.to_path_buf(),
            chain,
        });
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut table: Table = text
        .parse()
        .map_err(|e: toml::de::Error| Error::TomlSyntax {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let extends = match table.remove("extends") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                other => Err(Error::InvalidValue {
                    origin: path.display().to_string(),
                    key: "extends".into(),
                    message: format!("expected file paths, found {other}"),
                }),
            })
            .collect::<Result<_>>()?,
        Some(other) => {
            return Err(Error::InvalidValue {
                origin: path.display().to_string(),
                key: "extends".into(),
                message: format!("expected a path or a list of paths, found {other}"),
            });
        }
    };
    stack.push(canonical);
    let base = path.parent().unwrap_or(Path::new("."));
    let mut merged = Table::new();
    for parent in extends {
        let parent_table = load_rec(&base.join(&parent), stack, files, raw)?;
        merge(&mut merged, parent_table);
    }
    stack.pop();
    files.push(path.to_path_buf());
    raw.push(table.clone());
    merge(&mut merged, table);
    Ok(merged)
}

/// Deep-merge `over` into `base`: tables merge, everything else replaces.
pub fn merge(base: &mut Table, over: Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

fn parse_override(arg: &str) -> Result<(String, Value)> {
    let Some((key, raw)) = arg.split_once('=') else {
        return Err(Error::BadOverride {
            arg: arg.to_string(),
            message: "expected key=value (e.g. --set train.epochs=5)".into(),
        });
    };
    let key = key.trim();
    if key.is_empty() {
        return Err(Error::BadOverride {
            arg: arg.to_string(),
            message: "empty key".into(),
        });
    }
    let raw = raw.trim();
    let value = format!("v = {raw}")
        .parse::<Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_string()));
    Ok((key.to_string(), value))
}

fn set_path(table: &mut Table, dotted: &str, value: Value) -> std::result::Result<(), String> {
    let mut parts: Vec<&str> = dotted.split('.').collect();
    let last = parts.pop().ok_or("empty key")?;
    let mut current = table;
    let mut i = 0;
    while i < parts.len() {
        let part = parts[i];
        let entry = current
            .entry(part.to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        // `tiers.0.threshold`: a number after an array of tables picks an element.
        let entry = match entry {
            Value::Array(items) => {
                let Some(index) = parts.get(i + 1).and_then(|p| p.parse::<usize>().ok()) else {
                    return Err(format!(
                        "`{part}` is an array: name an element (`{part}.0.key`)"
                    ));
                };
                let len = items.len();
                i += 1;
                items
                    .get_mut(index)
                    .ok_or_else(|| format!("`{part}` has {len} elements, no element {index}"))?
            }
            other => other,
        };
        current = match entry {
            Value::Table(t) => t,
            other => return Err(format!("`{part}` is a {}, not a table", other.type_str())),
        };
        i += 1;
    }
    current.insert(last.to_string(), value);
    Ok(())
}

/// The strings at a dotted key path (see [`ConfigSource::check_names`]), with
/// their concrete paths (`cases[2].name`).
fn collect_strings(table: &Table, parts: &[&str], prefix: &str, out: &mut Vec<(String, String)>) {
    let Some((first, rest)) = parts.split_first() else {
        return;
    };
    let join = |name: &str| {
        if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}.{name}")
        }
    };
    if let Some(name) = first.strip_suffix("[]") {
        if let Some(Value::Array(items)) = table.get(name) {
            for (i, item) in items.iter().enumerate() {
                if let Value::Table(t) = item {
                    collect_strings(t, rest, &format!("{}[{i}]", join(name)), out);
                }
            }
        }
        return;
    }
    match (table.get(*first), rest.is_empty()) {
        (Some(Value::String(s)), true) => out.push((join(first), s.clone())),
        (Some(Value::Table(t)), false) => collect_strings(t, rest, &join(first), out),
        _ => {}
    }
}

fn table_contains_key(table: &Table, key: &str) -> bool {
    table.iter().any(|(k, v)| {
        k == key
            || match v {
                Value::Table(t) => table_contains_key(t, key),
                Value::Array(items) => items.iter().any(|i| match i {
                    Value::Table(t) => table_contains_key(t, key),
                    _ => false,
                }),
                _ => false,
            }
    })
}

/// Parse serde's "unknown field `x`, expected one of `a`, `b`" (or "expected `a`").
fn parse_unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (key, tail) = rest.split_once('`')?;
    let expected = tail
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect();
    Some((key.to_string(), expected))
}

/// The closest candidate to `key`, if it is close enough to be a typo.
pub fn nearest(key: &str, candidates: &[String]) -> Option<String> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(key, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    struct Train {
        epochs: u32,
        learning_rate: f64,
        #[serde(default)]
        inner: Inner,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    struct Inner {
        #[serde(default)]
        batch_size: u32,
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn extends_and_overrides_merge_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "base.toml",
            "epochs = 1\nlearning-rate = 0.1\n[inner]\nbatch-size = 8\n",
        );
        let child = write(
            dir.path(),
            "child.toml",
            "extends = [\"base.toml\"]\nepochs = 3\n",
        );
        let mut source = ConfigSource::load(&child).expect("load");
        source
            .apply_overrides(&["learning-rate=0.5".into(), "inner.batch-size=64".into()])
            .expect("set");
        let t: Train = source.deserialize().expect("deserialize");
        assert_eq!(t.epochs, 3);
        assert_eq!(t.learning_rate, 0.5);
        assert_eq!(t.inner.batch_size, 64);
        assert_eq!(source.files.len(), 2);
    }

    #[test]
    fn unknown_key_names_file_and_suggests() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write(
            dir.path(),
            "c.toml",
            "epochs = 1\nlearning-rate = 0.1\n[inner]\nbatch-sise = 8\n",
        );
        let err = ConfigSource::load(&p)
            .expect("load")
            .deserialize::<Train>()
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("c.toml"), "{text}");
        assert!(text.contains("batch-sise"), "{text}");
        assert!(text.contains("did you mean `batch-size`"), "{text}");
    }

    #[test]
    fn overrides_reach_into_arrays_of_tables() {
        let mut table: Table =
            toml::from_str("[[tiers]]\nbundle = \"a\"\n[[tiers]]\nbundle = \"b\"\n").unwrap();
        set_path(&mut table, "tiers.1.threshold", Value::Float(0.9)).unwrap();
        assert_eq!(table["tiers"][1]["threshold"].as_float(), Some(0.9));
        assert!(set_path(&mut table, "tiers.5.threshold", Value::Float(0.9)).is_err());
        assert!(set_path(&mut table, "tiers.threshold", Value::Float(0.9)).is_err());
    }

    #[test]
    fn extends_cycle_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "a.toml", "extends = \"b.toml\"\n");
        let b = write(dir.path(), "b.toml", "extends = \"a.toml\"\n");
        let err = ConfigSource::load(&b).unwrap_err();
        assert!(matches!(err, Error::ExtendsCycle { .. }), "{err}");
    }

    #[test]
    fn names_that_would_escape_a_directory_name_file_and_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write(
            dir.path(),
            "suite.toml",
            "name = \"ok\"\n[[cases]]\nname = \"fine\"\n[[cases]]\nname = \"../../x\"\n",
        );
        let source = ConfigSource::load(&p).expect("load");
        source
            .check_names(&["name"])
            .expect("the suite name is fine");
        let err = source
            .check_names(&["name", "cases[].name"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("suite.toml")
                && err.contains("`cases[1].name`")
                && err.contains("../../x"),
            "{err}"
        );
        let mut source = source;
        source.apply_overrides(&["name=..".into()]).expect("set");
        let err = source.check_names(&["name"]).unwrap_err().to_string();
        assert!(err.contains("--set") && err.contains("`name`"), "{err}");
    }

    #[test]
    fn override_values_are_typed() {
        let (_, v) = parse_override("a=3").expect("int");
        assert_eq!(v, Value::Integer(3));
        let (_, v) = parse_override("a=hello world").expect("bare string");
        assert_eq!(v, Value::String("hello world".into()));
        let (_, v) = parse_override("a=[\"x\", \"y\"]").expect("array");
        assert!(matches!(v, Value::Array(_)));
        assert!(parse_override("novalue").is_err());
    }
}
