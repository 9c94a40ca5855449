//! Evaluation of policies on public benchmarks.
//!
//! - [`capability`]: the capability guards, GSM8K test exact match and IFEval strict and loose
//!   accuracy (prompt- and instruction-level), scored with ethos-grade's verifiers.
//! - [`ood`]: the out-of-distribution suite: benchmark adapters faithful to each benchmark's published scoring,
//!   suites, the probability judge and the resumable suite runner.
//! - [`runner`]: replies in batches from any [`ethos_llm::ChatModel`], with a progress file so a
//!   killed run resumes without redoing finished items, and the final run files written atomically.

pub mod capability;
pub mod ood;
pub mod runner;

/// Errors of benchmark loading and evaluation runs.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A benchmark file that cannot be read or parsed; the message names the file, line and field.
    #[error("{0}")]
    Data(String),
    /// A run that cannot continue (model failure, inconsistent progress).
    #[error("{0}")]
    Run(String),
    /// Reading or writing run files.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}
