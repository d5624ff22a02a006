//! Training for distill students: losses (cross-entropy with label smoothing,
//! BCE, knowledge distillation), the loop (AdamW, warm-up + decay, clipping,
//! early stopping), checkpoints with exact resume, and run directories.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod config;
pub mod data;
pub mod embcache;
mod error;
pub mod loss;
pub mod metrics;
pub mod progress;
pub mod run;
pub mod schedule;
pub mod sparse;
pub mod tagger;
pub mod trainer;

pub use error::{Error, Result};
