//! The error type of every fallible function in this crate.

use std::fmt;

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StatsErrorKind {
    /// Too few observations for the statistic (for example a variance of one value).
    TooFewObservations,
    /// A value is NaN or infinite.
    NonFinite,
    /// The statistic is undefined because the data has no spread (zero variance, a constant column).
    ZeroVariance,
    /// Inputs that must have the same length (or shape) do not.
    LengthMismatch,
    /// A parameter is out of its range (a probability outside [0, 1], zero resamples, ...).
    InvalidParameter,
    /// A numerical routine did not converge.
    NoConvergence,
}

/// An error of a statistic, with a message that names the offending input when known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct StatsError {
    kind: StatsErrorKind,
    message: String,
}

impl StatsError {
    /// An error of the given kind.
    pub fn new(kind: StatsErrorKind, message: impl Into<String>) -> Self {
        StatsError { kind, message: message.into() }
    }

    /// What went wrong.
    pub fn kind(&self) -> StatsErrorKind {
        self.kind
    }

    /// The human-readable description.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same error with `context: ` put in front of its message (for example a benchmark or column name).
    pub fn with_context(self, context: impl fmt::Display) -> Self {
        StatsError { kind: self.kind, message: format!("{context}: {}", self.message) }
    }
}

impl fmt::Display for StatsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, StatsError>;

/// Fails with [`StatsErrorKind::NonFinite`] when any value is NaN or infinite, naming what and where.
pub(crate) fn check_finite(values: &[f64], what: &str) -> Result<()> {
    match values.iter().position(|value| !value.is_finite()) {
        None => Ok(()),
        Some(index) => Err(StatsError::new(
            StatsErrorKind::NonFinite,
            format!("{what} has a non-finite value ({}) at index {index}", values[index]),
        )),
    }
}
