//! `ethos report`: evaluation run directories -> one self-contained HTML page (`index.html`, inline CSS and SVG,
//! opens offline), `report.json` with everything the page shows, and `benchmarks.csv` / `comparisons.csv`.
//!
//! The page shows the held-out trait suite per trait, a forest plot of per-benchmark differences from the
//! baseline (paired by item id when both policies scored the same items, Welch otherwise; Benjamini-Hochberg
//! q-values), wins and losses, scores under persona prompts with persistence statistics, refusal rates with the
//! paired comparison on non-refused items, the Spearman structure of the runs x benchmarks matrix with
//! permutation nulls, capability guards, and every run's manifest. The work is done by `ethos-report`.

use std::path::PathBuf;

use anyhow::Context;
use ethos_report::{build_report, write_report, ReportConfig};

use crate::printer::Printer;

/// Arguments of `ethos report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Run directories written by `ethos eval traits | run | capability` (each with `manifest.json` and
    /// `item_scores.jsonl`). Runs are grouped by (policy, condition).
    #[arg(value_name = "RUN_DIR", required = true, num_args = 1..)]
    runs: Vec<PathBuf>,
    /// Directory to write `index.html`, `report.json`, `benchmarks.csv` and `comparisons.csv` into.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Policy spec (or its short label) of the baseline; default: the policy of the first run.
    #[arg(long, value_name = "POLICY_SPEC")]
    baseline: Option<String>,
    /// Seed of the bootstrap CIs and permutation nulls.
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: u64,
    /// Number of bootstrap resamples for every confidence interval.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = super::stats::positive_count)]
    bootstrap: usize,
    /// Number of permutations of the structure analysis's nulls.
    #[arg(long, value_name = "N", default_value_t = 1_000)]
    permutations: usize,
    /// A difference is significant when its Benjamini-Hochberg q-value is below this.
    #[arg(long, value_name = "Q", default_value_t = 0.05, value_parser = super::stats::probability)]
    alpha: f64,
}

/// Builds the report and writes it; prints the written paths on stdout.
pub fn run(args: ReportArgs, printer: &Printer) -> anyhow::Result<()> {
    let config = ReportConfig {
        baseline: args.baseline,
        seed: args.seed,
        n_bootstrap: args.bootstrap,
        alpha: args.alpha,
        n_permutations: args.permutations,
    };
    printer.status(format!("reading {} runs", args.runs.len()));
    let report = build_report(&args.runs, &config).context("building the report")?;
    for warning in &report.warnings {
        printer.status(format!("warning: {warning}"));
    }
    let written =
        write_report(&report, &args.out).with_context(|| format!("writing the report to {}", args.out.display()))?;
    for path in written {
        printer.data(path.display().to_string());
    }
    Ok(())
}
