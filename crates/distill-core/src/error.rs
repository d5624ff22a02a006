//! Typed errors: every variant carries the path, key or value a user needs to act.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: invalid TOML: {message}", path.display())]
    TomlSyntax { path: PathBuf, message: String },
    #[error("{origin}: unknown key `{key}`{}", suggestion_text(suggestion))]
    UnknownKey {
        origin: String,
        key: String,
        suggestion: Option<String>,
    },
    #[error("{origin}: invalid value for `{key}`: {message}")]
    InvalidValue {
        origin: String,
        key: String,
        message: String,
    },
    #[error("{}: `extends` cycle through {}", path.display(), chain.join(" -> "))]
    ExtendsCycle { path: PathBuf, chain: Vec<String> },
    #[error("--set {arg}: {message}")]
    BadOverride { arg: String, message: String },
    #[error("{}: is being written by {holder}; wait for it to finish or use another directory", path.display())]
    Locked { path: PathBuf, holder: String },
    #[error("{}:{line}: invalid teacher record: {message}", path.display())]
    TeacherRecord {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("{} holds records of another teacher setup (params hash {found} vs {expected} now: model, prompt or parameters changed); write to a new --out directory", path.display())]
    ForeignTeacherLog {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn suggestion_text(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean `{s}`?)"),
        None => String::new(),
    }
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
