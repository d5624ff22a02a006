//! Text normalisation (it lives in distill-core, so that a bundle's predictor
//! applies exactly the preprocessing curation applied).

pub use distill_core::text::normalize::{dedup_key, normalize};
