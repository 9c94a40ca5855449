//! ethos-report: turns evaluation run directories into one self-contained HTML page, `report.json` and CSV
//! tables (DESIGN.md, "Pipeline": stats -> report).
//!
//! - [`load`] reads run directories (`manifest.json`, `item_scores.jsonl`, optional `summary.json`) and groups
//!   their item scores by (policy, condition).
//! - [`analysis`] calls `ethos-stats` for every number the page shows (comparisons with Benjamini-Hochberg
//!   q-values, persistence under personas, refusals, the structure of the runs x benchmarks matrix) and holds
//!   the result in a serializable [`Report`].
//! - [`svg`] draws figures as hand-written SVG strings; [`html`] assembles the page; [`write`] writes the
//!   files atomically.
//!
//! The crate never calls a model and never reaches the network: the page has inline CSS, inline SVG and one
//! tiny inline script, so it opens offline.
//!
//! ```no_run
//! use std::path::{Path, PathBuf};
//!
//! use ethos_report::{build_report, write_report, ReportConfig};
//!
//! let runs = vec![PathBuf::from("runs/eval/baseline-traits"), PathBuf::from("runs/eval/trait-traits")];
//! let report = build_report(&runs, &ReportConfig::default())?;
//! let written = write_report(&report, Path::new("report"))?;
//! assert!(written.iter().any(|path| path.ends_with("index.html")));
//! # Ok::<(), ethos_report::ReportError>(())
//! ```
#![deny(missing_docs)]

pub mod analysis;
pub mod html;
pub mod load;
pub mod svg;
pub mod write;

use std::path::{Path, PathBuf};

use ethos_core::RecordError;
use ethos_stats::StatsError;

pub use analysis::{build_report, Report};
pub use write::write_report;

/// How to build a report: the reference policy, the randomness and the significance threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportConfig {
    /// Policy spec of the baseline that others are compared with; `None`: the policy of the first run.
    pub baseline: Option<String>,
    /// Seed of every bootstrap and permutation null.
    pub seed: u64,
    /// Number of bootstrap resamples for confidence intervals.
    pub n_bootstrap: usize,
    /// A comparison is significant when its Benjamini-Hochberg q-value is below this.
    pub alpha: f64,
    /// Number of permutations of the structure analysis's nulls.
    pub n_permutations: usize,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig { baseline: None, seed: 0, n_bootstrap: 10_000, alpha: 0.05, n_permutations: 1_000 }
    }
}

/// Why a report could not be built or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// A run file is malformed: the error names the file, the line and the field.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The runs or the settings do not make sense together (no runs, an unknown baseline, an item scored twice).
    #[error("{path}: {message}")]
    Input {
        /// The file or directory the problem is about.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A setting is out of range (zero bootstrap resamples, alpha outside (0, 1]).
    #[error("invalid setting: {0}")]
    Setting(String),
    /// A statistic failed on data that passed validation (a bug or a numerical corner case).
    #[error("{context}: {source}")]
    Stats {
        /// What was being computed.
        context: String,
        /// The error of ethos-stats.
        source: StatsError,
    },
    /// An output file could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl ReportError {
    /// Whether the error is the user's input (bad run files, settings or arguments) rather than a failure of
    /// the program or the machine; the CLI maps it to exit status 2.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, ReportError::Record(_) | ReportError::Input { .. } | ReportError::Setting(_))
    }

    pub(crate) fn input(path: &Path, message: impl Into<String>) -> Self {
        ReportError::Input { path: path.to_path_buf(), message: message.into() }
    }

    pub(crate) fn stats(context: impl Into<String>) -> impl FnOnce(StatsError) -> Self {
        let context = context.into();
        move |source| ReportError::Stats { context, source }
    }
}
