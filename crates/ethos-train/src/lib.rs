//! Training for ethos: LoRA adapters on the embedded Gemma-3-270M, trained with GRPO on a mixture
//! of beneficial-trait scenarios and standard verifiable tasks, or with supervised fine-tuning.
//!
//! - [`model`]: the trainable model (frozen f32 weights, LoRA [`candle_core::Var`]s).
//! - [`ops`]: fused CPU kernels with hand-written backward passes (frozen matmul, output head).
//! - [`grpo`]: the objective; [`optim`]: AdamW and gradient clipping; [`mixture`]: which prompts a step sees.

pub mod bench;
pub mod checkpoint;
pub mod error;
pub mod experiment;
pub mod grpo;
pub mod mixture;
pub mod model;
pub mod ops;
pub mod optim;
pub mod policy;
pub mod sft;
pub mod trainer;
pub mod warmstart;

pub use error::TrainError;
pub use model::{Lora, PackedGroup, TokenScores, TrainableGemma};
