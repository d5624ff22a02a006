//! Student models for distill, built on burn 0.22.
//!
//! * [`spec`]: the `[model]` config (bag, encoder, pretrained) and its validation.
//! * [`bert`]: pretrained BERT-family encoders read from Hugging Face files.
//! * [`featurize`]: text → ids (hashed n-grams, or a trained subword tokenizer).
//! * [`model`]: the burn modules ([`model::Student`]).
//! * [`artifact`]: the `model/` directory and a [`artifact::Predictor`].
//! * [`prune`]: a smaller bag that keeps the rows that matter.
//! * [`device`]: the only place a backend is named.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod artifact;
pub mod bert;
pub mod device;
mod error;
pub mod export;
pub mod featurize;
pub mod model;
pub mod prune;
pub mod spec;
pub mod tagger;

pub use error::{Error, Result};

/// The burn version distill is built against (recorded in runs).
pub const BURN_VERSION: &str = "0.22.1";
