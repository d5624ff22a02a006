//! Snapshots (insta) of what users read: `--help`, a summary table and the
//! main error messages, with paths and times filtered out. Review a change
//! with `cargo insta review` (or rerun with `INSTA_UPDATE=always` and read the
//! diff in git).

use super::{distill, ok, repo};
use std::path::Path;

fn s(p: &Path) -> String {
    p.to_str().expect("utf8").to_string()
}

/// Run `args` and return what a user reads (stdout, then stderr).
fn screen(args: &[&str]) -> String {
    let o = distill(args);
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn settings(tmp: &Path) -> insta::Settings {
    let mut st = insta::Settings::clone_current();
    st.set_snapshot_path("snapshots");
    st.set_prepend_module_to_snapshot(false);
    let tmp = regex_escape(&s(tmp));
    let repo = regex_escape(&s(&repo()));
    st.add_filter(&tmp, "[TMP]");
    st.add_filter(&repo, "[REPO]");
    st.add_filter(r"\d+\.\d+ ?(s|ms|µs)\b", "[TIME]");
    st.add_filter(r"pid \d+", "pid [PID]");
    st
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '/' || c == '_' || c == '-' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

#[test]
fn help_screens() {
    let tmp = tempfile::tempdir().expect("tempdir");
    settings(tmp.path()).bind(|| {
        insta::assert_snapshot!("help", screen(&["--help"]));
        insta::assert_snapshot!("help_export", screen(&["export", "--help"]));
        insta::assert_snapshot!("help_predict", screen(&["predict", "--help"]));
    });
}

#[test]
fn main_error_messages() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let keep = tmp.path().join("precious");
    std::fs::create_dir_all(&keep).expect("mkdir");
    std::fs::write(keep.join("notes.txt"), "mine").expect("write");
    let bad_config = tmp.path().join("typo.toml");
    std::fs::write(
        &bad_config,
        format!(
            "name = \"x\"\ndataset = \"{}\"\n[model]\nkind = \"bag\"\n[train]\nepohcs = 3\n",
            s(&repo().join("configs/data/sms_spam.toml"))
        ),
    )
    .expect("write");
    settings(tmp.path()).bind(|| {
        insta::assert_snapshot!(
            "error_not_a_bundle",
            screen(&["predict", "--bundle", &s(&keep), "hello"])
        );
        insta::assert_snapshot!("error_not_a_run", screen(&["export", &s(&keep)]));
        insta::assert_snapshot!(
            "error_unknown_config_key",
            screen(&["train", &s(&bad_config), "--experiments", &s(tmp.path())])
        );
        insta::assert_snapshot!(
            "error_missing_dataset",
            screen(&["data", "stats", &s(&tmp.path().join("nope"))])
        );
    });
}

#[test]
fn dataset_summary_table() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("sms");
    ok(&[
        "data",
        "import",
        "--config",
        "configs/data/sms_spam.toml",
        "--out",
        &s(&out),
    ]);
    settings(tmp.path()).bind(|| {
        insta::assert_snapshot!("data_stats_sms_spam", screen(&["data", "stats", &s(&out)]));
    });
}
