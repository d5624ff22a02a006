//! Shared vocabulary of distill: the types every stage reads and writes, strict
//! TOML configs (`extends`, `--set` overrides, unknown keys rejected with a
//! suggestion), content hashing, and atomic file writes.
//!
//! This crate is deliberately light (no polars, no burn) so that it builds in
//! seconds and every other crate can depend on it.
//!
//! ```
//! use distill_core::hash::content_id;
//! // Ids are content hashes: the same text gives the same id on every machine.
//! assert_eq!(content_id("hello"), content_id("hello"));
//! assert_ne!(content_id("hello"), content_id("hello!"));
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod bundle;
pub mod config;
pub mod error;
pub mod escalation;
pub mod fsutil;
pub mod hash;
pub mod lock;
pub mod names;
pub mod progress;
pub mod run_layout;
pub mod spans;
pub mod table;
pub mod teacher_log;
pub mod text;
pub mod time;
pub mod types;

pub use error::{Error, Result};
