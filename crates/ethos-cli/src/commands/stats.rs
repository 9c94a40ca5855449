//! `ethos stats`: statistics over item scores and evaluation matrices (DESIGN.md, "Statistics").
//!
//! Subcommands read files with ethos-core's readers (errors name file, line and column), hand plain slices to
//! `ethos-stats`, and print a readable table or, with `--json`, one pretty-printed JSON object on stdout.
//!
//! Item-score input is ItemScore JSONL (`{"benchmark", "item", "score", "refusal"?, "condition"?}`). An item with
//! `"score": null` is unscored: it is excluded from every statistic and counted in the output (`n_unscored_*`),
//! never scored 0. NaN is not valid JSON, so a `NaN` score is a syntax error naming the line; use null.

mod compare;
mod items;
pub(crate) mod persistence;
mod refusals;
mod structure;

use crate::printer::Printer;

/// The `ethos stats` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum StatsCommand {
    /// Compare two runs per benchmark (B minus A): t-tests, bootstrap CIs, BH q-values, wins and losses.
    ///
    /// Welch's t-test (or the paired t-test with --paired) per benchmark, a percentile bootstrap CI of the mean
    /// difference, Benjamini-Hochberg q-values across the benchmarks with a defined test, and a summary of wins,
    /// losses, mean and median difference, and significant improvements and regressions at q < --alpha.
    /// Unscored items (`"score": null`) are excluded and counted; benchmarks present in only one file are listed,
    /// not compared. A benchmark whose test is undefined (fewer than 2 scores, zero variance) keeps its means and
    /// CI, has null t, p and q, and says why in `note`.
    Compare(compare::CompareArgs),
    /// Shared structure of a models x evaluations matrix: Spearman, PC1, leave-one-out, clustering, nulls.
    ///
    /// Orients every column higher-is-better, then reports the mean pairwise Spearman correlation (average ranks),
    /// the PC1 share of the correlation matrix of z-scored columns, the leave-one-out Spearman between each column
    /// and the PC1 scores of the others, average-linkage clustering on 1 - rho, and permutation nulls (each column
    /// shuffled independently; 2.5 and 97.5 percentiles, numpy 'linear'). With --capability the analysis is
    /// repeated on the residuals of each z-scored column regressed on the mean capability z-score. The matrix
    /// must be complete and no column constant; errors name the file, line and column.
    Structure(structure::StructureArgs),
    /// Persistence under a harmful persona and steerability by a helpful persona, for two models.
    ///
    /// Degradation = mean score under the standard prompt - mean score under the harmful persona, per model, over
    /// the items scored in all four cells (A and B under both conditions); the effect is B's degradation minus
    /// A's, with percentile bootstrap CIs over items and a paired t-test of the per-item differences. The same
    /// for the steering effect of --helpful (helpful - standard). Other items are listed as unmatched.
    Persistence(persistence::PersistenceArgs),
    /// Refusal rates per benchmark and the paired comparison on items neither model refused.
    ///
    /// Rates count `refusal` labels at or above --refused-at among labeled records (unlabeled ones are counted
    /// apart); the comparison is `stats compare --paired` restricted to items both models answered.
    Refusals(refusals::RefusalsArgs),
}

/// Parses a count of at least 1 (`--bootstrap`), so that a bad value is a usage error (exit 2).
pub(crate) fn positive_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(count) => Ok(count),
        Err(err) => Err(err.to_string()),
    }
}

/// Parses a significance threshold in (0, 1] (`--alpha`).
pub(crate) fn probability(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value > 0.0 && value <= 1.0 => Ok(value),
        Ok(value) => Err(format!("{value} is not in (0, 1]")),
        Err(err) => Err(err.to_string()),
    }
}

/// Runs one `ethos stats` subcommand.
pub fn run(command: StatsCommand, printer: &Printer) -> anyhow::Result<()> {
    match command {
        StatsCommand::Compare(args) => compare::run(args, printer),
        StatsCommand::Structure(args) => structure::run(args, printer),
        StatsCommand::Persistence(args) => persistence::run(args, printer),
        StatsCommand::Refusals(args) => refusals::run(args, printer),
    }
}
