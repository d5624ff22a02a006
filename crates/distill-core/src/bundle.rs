//! `bundle.json`: the manifest of an edge bundle, and its verification.
//!
//! A bundle is read as untrusted input: the manifest is a bounded regular
//! file; its own content is hashed (`bundle_sha256`, the sha256 of the
//! manifest serialised with that field empty), so an edited manifest (an
//! entry removed to switch off a check) is refused; the file set must be
//! exactly the one its format needs; every name is a plain file name inside
//! the bundle; every file is a regular file whose size is compared with the
//! manifest before it is read and hashed.

use crate::escalation::{Calibration, Escalation};
use crate::text::Preprocess;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const BUNDLE_FILE: &str = "bundle.json";
/// 2: typed calibration/escalation pairs, preprocessing, `bundle_sha256`.
pub const BUNDLE_SCHEMA_VERSION: u32 = 2;
pub const ONNX_FILE: &str = "model.onnx";
pub const WEIGHTS_FILE: &str = "weights.bpk";
pub const META_FILE: &str = "model.json";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const CONFIG_FILE: &str = "config.toml";
/// A pruned bag's kept hashed ids (u32 little-endian, strictly increasing).
pub const REMAP_FILE: &str = "remap.bin";
pub const VERIFY_FILE: &str = "verify.jsonl";
pub const LABELS_FILE: &str = "labels.json";

/// Largest `bundle.json` read.
const MANIFEST_MAX_BYTES: u64 = 16 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Burn,
    Onnx,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Quantize {
    None,
    F16,
    Int8,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "burn" => Ok(Format::Burn),
            "onnx" => Ok(Format::Onnx),
            o => Err(format!("unknown format `{o}` (expected onnx or burn)")),
        }
    }
}

impl std::str::FromStr for Quantize {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "none" => Ok(Quantize::None),
            "f16" => Ok(Quantize::F16),
            "int8" => Ok(Quantize::Int8),
            o => Err(format!(
                "unknown quantisation `{o}` (expected none, f16 or int8)"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    pub sha256: String,
    pub bytes: u64,
}

/// Where a bundle came from, without a path of the machine that made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleLineage {
    pub experiment: String,
    pub run_id: String,
    pub dataset: String,
    pub dataset_sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher_sha256: Option<String>,
}

/// `bundle.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleManifest {
    pub schema_version: u32,
    pub format: Format,
    pub quantize: Quantize,
    pub task: crate::types::Task,
    pub model_kind: String,
    pub labels: Vec<String>,
    pub inputs: serde_json::Value,
    pub outputs: serde_json::Value,
    pub featurizer: serde_json::Value,
    /// Text steps applied to raw input before featurizing.
    #[serde(default)]
    pub preprocess: Preprocess,
    /// Temperature scaling fitted by `distill eval` (informational: the
    /// predictor uses the temperature paired with the shipped threshold).
    pub calibration: Option<Calibration>,
    /// The shipped operating point: threshold and its temperature.
    pub escalation: Option<Escalation>,
    pub metrics: BTreeMap<String, f64>,
    pub files: BTreeMap<String, FileEntry>,
    pub lineage: BundleLineage,
    pub created_by: String,
    pub created_at: String,
    /// sha256 of this file's bytes with this field's value empty (see
    /// [`BundleManifest::to_sealed_bytes`]).
    #[serde(default)]
    pub bundle_sha256: String,
}

/// Why a bundle was refused.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct BundleError {
    pub path: PathBuf,
    pub message: String,
}

fn refuse(path: &Path, message: impl Into<String>) -> BundleError {
    BundleError {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl BundleManifest {
    /// The bytes of `bundle.json`, sealed: `bundle_sha256` is the sha256 of
    /// these very bytes with the field's value empty. Hashing bytes (not a
    /// re-serialisation of parsed values) keeps the seal exact whatever
    /// floats the manifest holds.
    pub fn to_sealed_bytes(&mut self) -> Vec<u8> {
        self.bundle_sha256 = String::new();
        let blank = self.pretty_bytes();
        self.bundle_sha256 = crate::hash::sha256_hex(&blank);
        self.pretty_bytes()
    }

    fn pretty_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// Whether `bytes` (a `bundle.json` as read) carry a valid seal `claimed`.
    pub fn seal_matches(bytes: &[u8], claimed: &str) -> bool {
        if claimed.len() != 64 || !claimed.bytes().all(|b| b.is_ascii_hexdigit()) {
            return false;
        }
        let needle = format!("\"bundle_sha256\": \"{claimed}\"");
        let needle = needle.as_bytes();
        let hits: Vec<usize> = bytes
            .windows(needle.len())
            .enumerate()
            .filter(|(_, w)| *w == needle)
            .map(|(i, _)| i)
            .collect();
        let [at] = hits[..] else {
            return false;
        };
        let mut blank = Vec::with_capacity(bytes.len());
        blank.extend_from_slice(&bytes[..at]);
        blank.extend_from_slice(b"\"bundle_sha256\": \"\"");
        blank.extend_from_slice(&bytes[at + needle.len()..]);
        crate::hash::sha256_hex(&blank) == claimed
    }

    /// Files a bundle of this format and model kind must hold (besides
    /// `bundle.json`), and those it may hold.
    pub fn file_set(&self) -> (Vec<&'static str>, Vec<&'static str>) {
        let mut required = vec![LABELS_FILE, META_FILE, CONFIG_FILE];
        required.push(match self.format {
            Format::Burn => WEIGHTS_FILE,
            Format::Onnx => ONNX_FILE,
        });
        if self.model_kind != "bag" {
            required.push(TOKENIZER_FILE);
        }
        // A pruned bag's featurizer needs its remap table.
        if self.model_kind == "bag" && self.featurizer.get("remap").is_some() {
            required.push(REMAP_FILE);
        }
        (required, vec![VERIFY_FILE])
    }

    /// Read `DIR/bundle.json` and check everything the module doc lists.
    pub fn read_verified(dir: &Path) -> Result<Self, BundleError> {
        let path = dir.join(BUNDLE_FILE);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_file() => {}
            Ok(_) => return Err(refuse(&path, "not a regular file")),
            Err(_) => {
                return Err(refuse(
                    dir,
                    format!(
                        "not a bundle (no {BUNDLE_FILE}); create one with `distill export <run>`"
                    ),
                ));
            }
        }
        let bytes = crate::fsutil::read_bounded(&path, MANIFEST_MAX_BYTES)
            .map_err(|e| refuse(&path, e.to_string()))?;
        let raw: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| refuse(&path, format!("invalid JSON: {e}")))?;
        let version = raw["schema_version"].as_u64().unwrap_or(0);
        if version != u64::from(BUNDLE_SCHEMA_VERSION) {
            return Err(refuse(
                &path,
                format!(
                    "bundle schema version {version} is not supported by this distill (it reads version {BUNDLE_SCHEMA_VERSION}); re-export the run with this version"
                ),
            ));
        }
        let manifest: BundleManifest = serde_json::from_value(raw)
            .map_err(|e| refuse(&path, format!("invalid bundle.json: {e}")))?;
        if !Self::seal_matches(&bytes, &manifest.bundle_sha256) {
            return Err(refuse(
                &path,
                "bundle.json was modified after export (its content hash does not match bundle_sha256)",
            ));
        }
        let (required, optional) = manifest.file_set();
        for name in manifest.files.keys() {
            if !plain_name(name) {
                return Err(refuse(
                    &path,
                    format!("file name `{name}` is not a plain file name inside the bundle"),
                ));
            }
            if !required.contains(&name.as_str()) && !optional.contains(&name.as_str()) {
                return Err(refuse(
                    &path,
                    format!(
                        "unexpected file `{name}` for a {:?} bundle",
                        manifest.format
                    ),
                ));
            }
        }
        for name in &required {
            if !manifest.files.contains_key(*name) {
                return Err(refuse(
                    &path,
                    format!(
                        "{name} is missing from the file list (a {:?} bundle needs {})",
                        manifest.format,
                        required.join(", ")
                    ),
                ));
            }
        }
        for (name, entry) in &manifest.files {
            let p = dir.join(name);
            let meta = std::fs::symlink_metadata(&p)
                .map_err(|_| refuse(&p, "listed in bundle.json but missing"))?;
            if !meta.file_type().is_file() {
                return Err(refuse(
                    &p,
                    "not a regular file (symlinks, FIFOs and devices are refused)",
                ));
            }
            if meta.len() != entry.bytes {
                return Err(refuse(
                    &p,
                    format!(
                        "sha256 mismatch (tampered or truncated: {} bytes, bundle.json says {})",
                        meta.len(),
                        entry.bytes
                    ),
                ));
            }
            let actual = crate::hash::sha256_file(&p).map_err(|e| refuse(&p, e.to_string()))?;
            if actual != entry.sha256 {
                return Err(refuse(
                    &p,
                    format!(
                        "sha256 mismatch (tampered: {} bytes, same size as bundle.json says)",
                        meta.len()
                    ),
                ));
            }
        }
        Ok(manifest)
    }
}

/// A single normal path component: no separators, not `.`/`..`, not hidden,
/// not absolute.
pub fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && Path::new(name).components().count() == 1
        && matches!(
            Path::new(name).components().next(),
            Some(std::path::Component::Normal(_))
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> BundleManifest {
        let mut files = BTreeMap::new();
        for name in [LABELS_FILE, META_FILE, CONFIG_FILE, WEIGHTS_FILE] {
            files.insert(
                name.to_string(),
                FileEntry {
                    sha256: "00".repeat(32),
                    bytes: 1,
                },
            );
        }
        BundleManifest {
            schema_version: BUNDLE_SCHEMA_VERSION,
            format: Format::Burn,
            quantize: Quantize::Int8,
            task: crate::types::Task::Classify,
            model_kind: "bag".into(),
            labels: vec!["a".into(), "b".into()],
            inputs: serde_json::json!([]),
            outputs: serde_json::json!([]),
            featurizer: serde_json::json!({"kind": "hashed-ngrams"}),
            preprocess: Preprocess::default(),
            calibration: None,
            escalation: Some(Escalation {
                threshold: 0.8,
                temperature: 1.5,
                target_accuracy: 0.95,
                delta: 0.05,
                method: "m".into(),
                suite: "s".into(),
                val_coverage: Some(0.7),
                test_coverage: 0.69,
                test_accuracy_on_handled: Some(0.96),
            }),
            metrics: BTreeMap::new(),
            files,
            lineage: BundleLineage {
                experiment: "e".into(),
                run_id: "r".into(),
                dataset: "d".into(),
                dataset_sha256: "h".into(),
                teacher_sha256: None,
            },
            created_by: "distill".into(),
            created_at: "t".into(),
            bundle_sha256: String::new(),
        }
    }

    #[test]
    fn manifest_round_trips_and_its_seal_catches_any_edit() {
        let mut m = manifest();
        // A float that serde_json parses one ulp off without `float_roundtrip`:
        // the seal hashes bytes, so it must not matter.
        m.metrics.insert("ratio".into(), 1.0 / 11.0);
        let bytes = m.to_sealed_bytes();
        let back: BundleManifest = serde_json::from_slice(&bytes).unwrap();
        assert!(BundleManifest::seal_matches(&bytes, &back.bundle_sha256));
        // The escalation pair is pinned on the wire.
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v["escalation"],
            serde_json::json!({"threshold": 0.8, "temperature": 1.5, "target_accuracy": 0.95,
                "delta": 0.05, "method": "m", "suite": "s", "val_coverage": 0.7,
                "test_coverage": 0.69, "test_accuracy_on_handled": 0.96})
        );
        // Any edit breaks the seal: a removed entry, a changed number, reformatting.
        let text = String::from_utf8(bytes.clone()).unwrap();
        for edited in [
            text.replace("\"weights.bpk\"", "\"weights.bpx\""),
            text.replace("0.8", "0.5"),
            serde_json::to_string(&v).unwrap(),
        ] {
            assert!(!BundleManifest::seal_matches(
                edited.as_bytes(),
                &back.bundle_sha256
            ));
        }
        assert!(!BundleManifest::seal_matches(&bytes, "not-a-hash"));
    }

    #[test]
    fn plain_names_only() {
        for ok in ["model.json", "weights.bpk", "a b.txt"] {
            assert!(plain_name(ok), "{ok}");
        }
        for bad in [
            "",
            "..",
            ".",
            "../x",
            "/etc/passwd",
            "a/b",
            ".hidden",
            "a\\b",
            "x\0",
        ] {
            assert!(!plain_name(bad), "{bad:?}");
        }
    }
}
