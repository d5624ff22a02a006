//! Teacher-output collection: run a dataset through a teacher and record its
//! outputs as **teacher logs** (`logs.jsonl` + `teacher.json`) that curation
//! and training read.
//!
//! Teachers: any OpenAI-compatible chat-completions server (soft labels from
//! `logprobs`, see [`softlabel`]), production logs in chat-completions form
//! ([`import`]), and a trained distill run ([`local`]). Collection is
//! dependable: bounded concurrency, timeouts, retries with backoff and
//! `Retry-After`, a content-addressed cache, and an append-only log that a
//! killed run resumes without losing or duplicating records ([`record`]);
//! the API key never reaches a stored or printed string ([`redact`]).

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod collect;
pub mod config;
pub mod error;
pub mod import;
pub mod interpret;
pub mod local;
pub mod openai;
pub mod prompt;
pub mod record;
pub mod redact;
pub mod softlabel;
#[cfg(test)]
mod test_server;

pub use collect::{TeachOutcome, TeachRequest, teach};
pub use error::{Error, Result};
