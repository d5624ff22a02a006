//! The real components the tests need, through the repository's install
//! scripts (idempotent; cached outside the clone, keyed by version).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root (this crate lives in `crates/distill-testkit`).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// Run `scripts/<script>` and return its stdout. Panics (the test fails)
/// with the script's stderr when it fails.
pub fn run_script(script: &str) -> String {
    let out = Command::new("bash")
        .arg(repo().join("scripts").join(script))
        .output()
        .unwrap_or_else(|e| panic!("running scripts/{script}: {e}"));
    assert!(
        out.status.success(),
        "scripts/{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The python of the onnxruntime + onnx + NumPy venv.
pub fn onnx_python() -> String {
    run_script("install-onnxruntime.sh").trim().to_string()
}

/// The MiniLM-L6 checkpoint directory (Hugging Face layout).
pub fn minilm_dir() -> PathBuf {
    let stdout = run_script("install-teachers.sh");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("MINILM_DIR="))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("install-teachers.sh printed no MINILM_DIR: {stdout}"))
}
