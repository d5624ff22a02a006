//! Helpers for distill's tests and benchmarks (not shipped in `distill`):
//!
//! - [`llama::LlamaServer`]: starts the real `llama-server` (installed by
//!   `scripts/install-teachers.sh`) on 127.0.0.1 and stops it on drop;
//! - [`proxy::FaultProxy`]: an HTTP proxy that injects faults on a schedule
//!   (429 + Retry-After, 500, hangs, truncated bodies, invalid JSON, wrong
//!   content type) and counts what it did;
//! - [`instant::InstantServer`]: an OpenAI-compatible endpoint that answers
//!   at once, to measure client overhead;
//! - [`install`]: the install scripts' components (onnxruntime's python,
//!   the MiniLM checkpoint).

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod http;
pub mod install;
pub mod instant;
pub mod llama;
pub mod proxy;
