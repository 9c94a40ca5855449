//! ethos-llm: the `ChatModel` trait and its backends.
//!
//! - [`embedded`]: google/gemma-3-270m (Q4_K_M GGUF) run in-process with candle; the default, needs no network.
//! - [`openai`]: any OpenAI-compatible endpoint (vLLM, llama.cpp server, hosted APIs, `ethos serve openai`).
//! - [`cache`]: a SQLite request cache wrapping any backend, so reruns make zero model calls.
//!
//! Models are named by specs ([`ModelSpec`]): `embedded:gemma-3-270m`, `openai:BASE_URL#MODEL`.
//!
//! ```
//! use ethos_llm::ModelSpec;
//! let spec: ModelSpec = "openai:http://127.0.0.1:8000/v1#gemma".parse().unwrap();
//! assert_eq!(spec.to_string(), "openai:http://127.0.0.1:8000/v1#gemma");
//! ```
#![deny(missing_docs)]

pub mod cache;
pub mod embedded;
pub mod openai;
mod spec;
mod types;

pub use spec::{ModelSpec, SpecError, BASE_MODEL, DEFAULT_POLICY, WARMSTART_MODEL};
pub use types::*;
