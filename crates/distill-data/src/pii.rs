//! PII redaction (it lives in distill-core, so that a bundle's predictor
//! redacts exactly as curation did).

pub use distill_core::text::pii::{PiiKind, redact};
