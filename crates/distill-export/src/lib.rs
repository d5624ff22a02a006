//! Edge bundles: `distill export` writes a self-contained directory that
//! distill's predictor (burn) or another runtime (ONNX) runs without the run
//! directory. See [`bundle`] for the layout and [`onnx`] for the graphs.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod bundle;
pub mod onnx;
pub mod predictor;

pub use predictor::{BundlePredictor, Prediction};
