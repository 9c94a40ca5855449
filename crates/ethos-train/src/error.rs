//! The error type of training.

use ethos_llm::LlmError;

/// Why training (or loading what it needs) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// The model file cannot be read or has unexpected tensors.
    #[error("model file {path}: {message}")]
    ModelFile {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// An experiment, data or checkpoint file is invalid; the message names the file and field.
    #[error("{0}")]
    Invalid(String),
    /// An argument is out of range (a programming or configuration error, not a file's).
    #[error("invalid input: {0}")]
    Input(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A tensor operation failed.
    #[error("tensor operation: {0}")]
    Candle(#[from] candle_core::Error),
    /// The inference backend (sampling, adapters, judge) failed.
    #[error(transparent)]
    Llm(#[from] LlmError),
}

impl TrainError {
    /// An I/O error on `path`.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        TrainError::Io { path: path.display().to_string(), source }
    }
}
