//! `ethos stats compare`: per-benchmark comparison of two ItemScore files, B minus A.
//!
//! JSON output (`--json`): `{"a", "b", "paired", "condition", "bootstrap", "seed", "alpha", "confidence",
//! "benchmarks": [{"benchmark", "n_a", "n_b", "n_unscored_a", "n_unscored_b", "mean_a", "mean_b", "delta",
//! "ci_low", "ci_high", "t", "df", "p", "q", "significant", "note"?, "unmatched_a"?, "unmatched_b"?}],
//! "summary": {"n", "n_tested", "wins", "losses", "ties", "mean_delta", "median_delta", "sig_improved",
//! "sig_regressed", "sign_test_p"}, "unmatched_benchmarks": {"only_a", "only_b"}}`. Undefined values are null.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use ethos_stats::bootstrap::BootstrapConfig;
use ethos_stats::compare::{compare_benchmarks, BenchmarkScores, CompareConfig, Comparison, Design};
use serde::Serialize;

use super::items::{cell, scored_values, Benchmarks, Item, ScoreFile};
use crate::printer::Printer;

/// Arguments of `ethos stats compare`.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// ItemScore JSONL of model A (the reference; differences are B minus A).
    #[arg(long, value_name = "A.jsonl")]
    a: PathBuf,
    /// ItemScore JSONL of model B.
    #[arg(long, value_name = "B.jsonl")]
    b: PathBuf,
    /// Match items by id within each benchmark and use the paired t-test. Items without a scored partner are
    /// listed per benchmark (`unmatched_a`, `unmatched_b`), never silently dropped.
    #[arg(long)]
    paired: bool,
    /// Number of bootstrap resamples for the percentile CI of the mean difference.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = super::positive_count)]
    bootstrap: usize,
    /// Seed of the bootstrap (results do not depend on the thread count).
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// A benchmark is significant when its Benjamini-Hochberg q-value is below this.
    #[arg(long, value_name = "Q", default_value_t = 0.05, value_parser = super::probability)]
    alpha: f64,
    /// Use only records with this `condition` (`none` = records without one). Needed when a file holds
    /// several conditions.
    #[arg(long, value_name = "CONDITION")]
    condition: Option<String>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// One benchmark of the JSON output.
#[derive(Debug, Serialize)]
pub struct BenchmarkJson {
    benchmark: String,
    n_a: usize,
    n_b: usize,
    n_unscored_a: usize,
    n_unscored_b: usize,
    mean_a: Option<f64>,
    mean_b: Option<f64>,
    delta: Option<f64>,
    ci_low: Option<f64>,
    ci_high: Option<f64>,
    t: Option<f64>,
    df: Option<f64>,
    p: Option<f64>,
    q: Option<f64>,
    significant: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unmatched_a: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unmatched_b: Option<Vec<String>>,
}

/// The summary of the JSON output.
#[derive(Debug, Serialize)]
pub struct SummaryJson {
    n: usize,
    n_tested: usize,
    wins: usize,
    losses: usize,
    ties: usize,
    mean_delta: Option<f64>,
    median_delta: Option<f64>,
    sig_improved: usize,
    sig_regressed: usize,
    sign_test_p: f64,
}

/// Benchmarks present in only one of the files.
#[derive(Debug, Serialize)]
pub struct UnmatchedBenchmarks {
    only_a: Vec<String>,
    only_b: Vec<String>,
}

/// The comparison part of the JSON output (also used by `ethos stats refusals`).
#[derive(Debug, Serialize)]
pub struct ComparisonJson {
    benchmarks: Vec<BenchmarkJson>,
    summary: SummaryJson,
    unmatched_benchmarks: UnmatchedBenchmarks,
}

#[derive(Debug, Serialize)]
struct CompareOutput<'a> {
    a: String,
    b: String,
    paired: bool,
    condition: Option<&'a str>,
    bootstrap: usize,
    seed: u64,
    alpha: f64,
    confidence: f64,
    #[serde(flatten)]
    comparison: ComparisonJson,
}

/// Per-benchmark bookkeeping that the statistics do not see.
struct Bookkeeping {
    n_unscored_a: usize,
    n_unscored_b: usize,
    unmatched: Option<(Vec<String>, Vec<String>)>,
}

/// Runs the comparison and prints it.
pub fn run(args: CompareArgs, printer: &Printer) -> anyhow::Result<()> {
    let file_a = ScoreFile::read(&args.a)?;
    let file_b = ScoreFile::read(&args.b)?;
    let items_a = file_a.condition(args.condition.as_deref())?;
    let items_b = file_b.condition(args.condition.as_deref())?;
    let design = if args.paired { Design::Paired } else { Design::Independent };
    let bootstrap = BootstrapConfig::new(args.bootstrap, args.seed).context("invalid --bootstrap")?;
    let config = CompareConfig { design, bootstrap, alpha: args.alpha };
    let comparison = compare_files(items_a, items_b, &config)?;
    report_unmatched(&comparison, printer);
    if args.json {
        return printer.json(&CompareOutput {
            a: args.a.display().to_string(),
            b: args.b.display().to_string(),
            paired: args.paired,
            condition: args.condition.as_deref(),
            bootstrap: args.bootstrap,
            seed: args.seed,
            alpha: args.alpha,
            confidence: bootstrap.confidence(),
            comparison,
        });
    }
    print_table(&comparison, args.alpha, printer);
    Ok(())
}

/// Compares the benchmarks present in both item tables (sorted by name).
pub fn compare_files(a: &Benchmarks, b: &Benchmarks, config: &CompareConfig) -> anyhow::Result<ComparisonJson> {
    let only_a: Vec<String> = a.keys().filter(|name| !b.contains_key(*name)).cloned().collect();
    let only_b: Vec<String> = b.keys().filter(|name| !a.contains_key(*name)).cloned().collect();
    let mut inputs = Vec::new();
    let mut bookkeeping = Vec::new();
    for (name, items_a) in a {
        let Some(items_b) = b.get(name) else { continue };
        let (input, books) = match config.design {
            Design::Independent => independent(name, items_a, items_b),
            Design::Paired => paired(name, items_a, items_b),
        };
        inputs.push(input);
        bookkeeping.push(books);
    }
    if inputs.is_empty() {
        anyhow::bail!(
            "the files have no benchmark in common (A: {}; B: {})",
            a.keys().cloned().collect::<Vec<_>>().join(", "),
            b.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let comparison = compare_benchmarks(&inputs, config)?;
    Ok(to_json(comparison, bookkeeping, UnmatchedBenchmarks { only_a, only_b }))
}

fn independent(
    name: &str,
    items_a: &BTreeMap<String, Item>,
    items_b: &BTreeMap<String, Item>,
) -> (BenchmarkScores, Bookkeeping) {
    let (a, n_unscored_a) = scored_values(items_a);
    let (b, n_unscored_b) = scored_values(items_b);
    (BenchmarkScores { name: name.to_string(), a, b }, Bookkeeping { n_unscored_a, n_unscored_b, unmatched: None })
}

/// Pairs scored items by id; scored items without a scored partner are listed as unmatched.
fn paired(
    name: &str,
    items_a: &BTreeMap<String, Item>,
    items_b: &BTreeMap<String, Item>,
) -> (BenchmarkScores, Bookkeeping) {
    let mut a = Vec::new();
    let mut b = Vec::new();
    let mut unmatched_a = Vec::new();
    for (item, entry_a) in items_a {
        let Some(score_a) = entry_a.score else {
            continue;
        };
        match items_b.get(item).and_then(|entry_b| entry_b.score) {
            Some(score_b) => {
                a.push(score_a);
                b.push(score_b);
            }
            None => unmatched_a.push(item.clone()),
        }
    }
    let unmatched_b: Vec<String> = items_b
        .iter()
        .filter(|(item, entry_b)| entry_b.score.is_some() && items_a.get(*item).and_then(|entry| entry.score).is_none())
        .map(|(item, _)| item.clone())
        .collect();
    let n_unscored_a = items_a.values().filter(|item| item.score.is_none()).count();
    let n_unscored_b = items_b.values().filter(|item| item.score.is_none()).count();
    (
        BenchmarkScores { name: name.to_string(), a, b },
        Bookkeeping { n_unscored_a, n_unscored_b, unmatched: Some((unmatched_a, unmatched_b)) },
    )
}

fn to_json(
    comparison: Comparison,
    bookkeeping: Vec<Bookkeeping>,
    unmatched_benchmarks: UnmatchedBenchmarks,
) -> ComparisonJson {
    let summary = &comparison.summary;
    let summary = SummaryJson {
        n: summary.n,
        n_tested: summary.n_tested,
        wins: summary.counts.wins,
        losses: summary.counts.losses,
        ties: summary.counts.ties,
        mean_delta: summary.mean_delta,
        median_delta: summary.median_delta,
        sig_improved: summary.sig_improved,
        sig_regressed: summary.sig_regressed,
        sign_test_p: summary.sign_test_p,
    };
    let benchmarks = comparison
        .benchmarks
        .into_iter()
        .zip(bookkeeping)
        .map(|(result, books)| {
            let (unmatched_a, unmatched_b) = match books.unmatched {
                Some((a, b)) => (Some(a), Some(b)),
                None => (None, None),
            };
            BenchmarkJson {
                benchmark: result.name,
                n_a: result.n_a,
                n_b: result.n_b,
                n_unscored_a: books.n_unscored_a,
                n_unscored_b: books.n_unscored_b,
                mean_a: result.mean_a,
                mean_b: result.mean_b,
                delta: result.delta,
                ci_low: result.ci.map(|ci| ci.0),
                ci_high: result.ci.map(|ci| ci.1),
                t: result.test.map(|test| test.statistic),
                df: result.test.map(|test| test.df),
                p: result.test.map(|test| test.p_value),
                q: result.q_value,
                significant: result.significant,
                note: result.note,
                unmatched_a,
                unmatched_b,
            }
        })
        .collect();
    ComparisonJson { benchmarks, summary, unmatched_benchmarks }
}

fn report_unmatched(comparison: &ComparisonJson, printer: &Printer) {
    let unmatched = &comparison.unmatched_benchmarks;
    if !unmatched.only_a.is_empty() {
        printer.status(format!("warning: benchmarks only in A (not compared): {}", unmatched.only_a.join(", ")));
    }
    if !unmatched.only_b.is_empty() {
        printer.status(format!("warning: benchmarks only in B (not compared): {}", unmatched.only_b.join(", ")));
    }
    for benchmark in &comparison.benchmarks {
        let n_unmatched_a = benchmark.unmatched_a.as_ref().map_or(0, Vec::len);
        let n_unmatched_b = benchmark.unmatched_b.as_ref().map_or(0, Vec::len);
        if n_unmatched_a + n_unmatched_b > 0 {
            printer.status(format!(
                "warning: {}: {n_unmatched_a} items of A and {n_unmatched_b} of B have no scored partner (listed in the output)",
                benchmark.benchmark
            ));
        }
    }
}

/// Prints the readable table: one row per benchmark, then the summary.
pub fn print_table(comparison: &ComparisonJson, alpha: f64, printer: &Printer) {
    let name_width = comparison.benchmarks.iter().map(|b| b.benchmark.len()).max().unwrap_or(9).max(9);
    printer.data(format!(
        "{:<name_width$} {:>5} {:>5} {:>8} {:>8} {:>8} {:>19} {:>7} {:>7} {:>9} {:>9} sig",
        "benchmark", "n_a", "n_b", "mean_a", "mean_b", "delta", "95% CI", "t", "df", "p", "q"
    ));
    for benchmark in &comparison.benchmarks {
        let interval = match (benchmark.ci_low, benchmark.ci_high) {
            (Some(low), Some(high)) => format!("[{low:.4}, {high:.4}]"),
            _ => "-".to_string(),
        };
        let marker = if benchmark.significant { "*" } else { "" };
        printer.data(format!(
            "{:<name_width$} {:>5} {:>5} {:>8} {:>8} {:>8} {:>19} {:>7} {:>7} {:>9} {:>9} {marker}",
            benchmark.benchmark,
            benchmark.n_a,
            benchmark.n_b,
            cell(benchmark.mean_a, 4),
            cell(benchmark.mean_b, 4),
            cell(benchmark.delta, 4),
            interval,
            cell(benchmark.t, 3),
            cell(benchmark.df, 1),
            p_cell(benchmark.p),
            p_cell(benchmark.q),
        ));
        if let Some(note) = &benchmark.note {
            printer.data(format!("{:<name_width$}   note: {note}", ""));
        }
        if benchmark.n_unscored_a + benchmark.n_unscored_b > 0 {
            printer.data(format!(
                "{:<name_width$}   unscored: {} in A, {} in B (excluded)",
                "", benchmark.n_unscored_a, benchmark.n_unscored_b
            ));
        }
        for (side, unmatched) in [("A", &benchmark.unmatched_a), ("B", &benchmark.unmatched_b)] {
            if let Some(items) = unmatched.as_ref().filter(|items| !items.is_empty()) {
                printer.data(format!("{:<name_width$}   unmatched in {side}: {}", "", items.join(", ")));
            }
        }
    }
    let summary = &comparison.summary;
    printer.data("");
    printer.data(format!(
        "{} benchmarks: {} wins, {} losses, {} ties (sign test p = {}); mean delta {}, median delta {}",
        summary.n,
        summary.wins,
        summary.losses,
        summary.ties,
        p_cell(Some(summary.sign_test_p)),
        cell(summary.mean_delta, 4),
        cell(summary.median_delta, 4)
    ));
    printer.data(format!(
        "significant at q < {alpha} (Benjamini-Hochberg over {} tested): {} improved, {} regressed",
        summary.n_tested, summary.sig_improved, summary.sig_regressed
    ));
    let unmatched = &comparison.unmatched_benchmarks;
    for (side, names) in [("A", &unmatched.only_a), ("B", &unmatched.only_b)] {
        if !names.is_empty() {
            printer.data(format!("only in {side} (not compared): {}", names.join(", ")));
        }
    }
}

fn p_cell(value: Option<f64>) -> String {
    match value {
        Some(value) if value < 1e-4 => format!("{value:.2e}"),
        Some(value) => format!("{value:.4}"),
        None => "-".to_string(),
    }
}
