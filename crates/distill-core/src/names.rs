//! Names from configs that become path components: experiment names
//! (`experiments/<name>/`), suite names (`<run>/eval/<suite>/`) and case names
//! (file prefixes in a suite's report directory).
//!
//! A name must stay one plain component inside the directory it is joined to:
//! `../../x` or `/tmp/x` as a suite name would otherwise write outside the run.
//!
//! ```
//! use distill_core::names::validate_name;
//! assert!(validate_name("banking77-bag").is_ok());
//! assert!(validate_name("../../x").is_err());
//! assert!(validate_name(".hidden").is_err());
//! ```

/// The longest name accepted, in characters (file systems allow 255 bytes per
/// component; names get prefixes and suffixes such as `-calibration.json`).
pub const MAX_NAME_CHARS: usize = 100;

/// Check that `name` is safe as one path component: non-empty, at most
/// [`MAX_NAME_CHARS`] characters, no `/`, `\`, NUL or other control
/// characters, and not starting with `.` (which rules out `.`, `..` and
/// hidden files). The error says what is wrong, for a message that names the
/// config file and key.
pub fn validate_name(name: &str) -> Result<(), String> {
    let problem = if name.is_empty() {
        Some("is empty".to_string())
    } else if name.chars().count() > MAX_NAME_CHARS {
        Some(format!("is longer than {MAX_NAME_CHARS} characters"))
    } else if name.starts_with('.') {
        Some("starts with `.`".to_string())
    } else {
        name.chars()
            .find(|c| matches!(c, '/' | '\\') || c.is_control())
            .map(|c| format!("contains {c:?}"))
    };
    match problem {
        None => Ok(()),
        Some(p) => Err(format!(
            "name `{}` {p}; names become directory and file names\nhint: use letters, digits, `-`, `_` and `.` (not first), at most {MAX_NAME_CHARS} characters",
            name.escape_debug()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass_and_path_like_names_fail() {
        for ok in ["banking77-bag", "test", "sms_spam", "v1.2", "a b", "été"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        let long = "x".repeat(MAX_NAME_CHARS + 1);
        for bad in [
            "", ".", "..", "../x", "../../x", "/tmp/x", "a/b", "a\\b", ".hidden", "a\0b", "a\nb",
            &long,
        ] {
            let err = validate_name(bad).expect_err(bad);
            assert!(err.contains("hint:"), "{err}");
        }
        assert!(validate_name(&"x".repeat(MAX_NAME_CHARS)).is_ok());
    }
}
