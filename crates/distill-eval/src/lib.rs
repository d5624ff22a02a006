//! Evaluation suites for trained runs: how good is the student, how well
//! does it know what it does not know, and how much traffic can stay on the
//! device at what accuracy.
//!
//! [`stats`] holds the metrics (checked against scikit-learn / SciPy values),
//! [`calibrate`] temperature scaling, [`select`] the certified escalation
//! threshold, [`eval`] the suite runner, [`plots`] and [`report`] the output.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod calibrate;
pub mod compare;
pub mod error;
pub mod eval;
pub mod extract;
pub mod plots;
pub mod report;
pub mod select;
pub mod stats;
pub mod suite;
pub mod sweep;

pub use error::{Error, Result};
pub use eval::{EvalRequest, SuiteReport, evaluate};
