//! `ethos stats refusals`: refusal rates per benchmark and model, and the paired comparison B minus A restricted
//! to items neither model refused (the paired non-refusal analysis).
//!
//! A record counts as refused when its `refusal` label is at or above `--refused-at` (`partial`: partial and
//! full refusals; `full`: full refusals only). Records without a label are unlabeled: excluded from the rates
//! and from the non-refusal comparison, and counted (`unlabeled_a`, `unlabeled_b`).
//!
//! JSON output: `{"a", "b", "condition", "refused_at", "benchmarks": [{"benchmark", "n_labeled_a", "refused_a",
//! "rate_a", "unlabeled_a", "n_labeled_b", "refused_b", "rate_b", "unlabeled_b"}], "overall": {"n_labeled_a",
//! "refused_a", "rate_a", "mean_rate_a", ...b}, "non_refusal": <the output of `stats compare --paired` on the
//! items both models answered>}`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use ethos_core::records::Refusal;
use ethos_stats::bootstrap::BootstrapConfig;
use ethos_stats::compare::{CompareConfig, Design};
use serde::Serialize;

use super::compare::{compare_files, print_table, ComparisonJson};
use super::items::{Benchmarks, Item, ScoreFile};
use crate::printer::Printer;

/// Arguments of `ethos stats refusals`.
#[derive(Debug, clap::Args)]
pub struct RefusalsArgs {
    /// ItemScore JSONL of model A, with `refusal` labels (`none`, `partial`, `full`).
    #[arg(long, value_name = "A.jsonl")]
    a: PathBuf,
    /// ItemScore JSONL of model B, with `refusal` labels.
    #[arg(long, value_name = "B.jsonl")]
    b: PathBuf,
    /// Smallest label that counts as a refusal.
    #[arg(long, value_enum, default_value_t = RefusedAt::Partial)]
    refused_at: RefusedAt,
    /// Use only records with this `condition` (`none` = records without one).
    #[arg(long, value_name = "CONDITION")]
    condition: Option<String>,
    /// Number of bootstrap resamples for the non-refusal comparison.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = super::positive_count)]
    bootstrap: usize,
    /// Seed of the bootstrap.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// Significance threshold on Benjamini-Hochberg q-values.
    #[arg(long, value_name = "Q", default_value_t = 0.05, value_parser = super::probability)]
    alpha: f64,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
}

/// Which refusal labels count as refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum RefusedAt {
    /// Partial and full refusals.
    Partial,
    /// Full refusals only.
    Full,
}

#[derive(Debug, Default, Serialize)]
struct RateJson {
    benchmark: String,
    n_labeled_a: usize,
    refused_a: usize,
    rate_a: Option<f64>,
    unlabeled_a: usize,
    n_labeled_b: usize,
    refused_b: usize,
    rate_b: Option<f64>,
    unlabeled_b: usize,
}

#[derive(Debug, Serialize)]
struct OverallJson {
    n_labeled_a: usize,
    refused_a: usize,
    rate_a: Option<f64>,
    mean_rate_a: Option<f64>,
    n_labeled_b: usize,
    refused_b: usize,
    rate_b: Option<f64>,
    mean_rate_b: Option<f64>,
}

#[derive(Debug, Serialize)]
struct RefusalsJson {
    a: String,
    b: String,
    condition: Option<String>,
    refused_at: RefusedAt,
    benchmarks: Vec<RateJson>,
    overall: OverallJson,
    non_refusal: ComparisonJson,
}

/// Runs the analysis and prints it.
pub fn run(args: RefusalsArgs, printer: &Printer) -> anyhow::Result<()> {
    let file_a = ScoreFile::read(&args.a)?;
    let file_b = ScoreFile::read(&args.b)?;
    let items_a = file_a.condition(args.condition.as_deref())?;
    let items_b = file_b.condition(args.condition.as_deref())?;
    let refused = |item: &Item| match item.refusal {
        None => None,
        Some(Refusal::None) => Some(false),
        Some(Refusal::Partial) => Some(args.refused_at == RefusedAt::Partial),
        Some(Refusal::Full) => Some(true),
    };
    let mut names: Vec<&String> = items_a.keys().chain(items_b.keys()).collect();
    names.sort();
    names.dedup();
    let empty = BTreeMap::new();
    let rates: Vec<RateJson> = names
        .iter()
        .map(|name| {
            let (n_labeled_a, refused_a, unlabeled_a) = count(items_a.get(*name).unwrap_or(&empty), &refused);
            let (n_labeled_b, refused_b, unlabeled_b) = count(items_b.get(*name).unwrap_or(&empty), &refused);
            RateJson {
                benchmark: name.to_string(),
                n_labeled_a,
                refused_a,
                rate_a: rate(refused_a, n_labeled_a),
                unlabeled_a,
                n_labeled_b,
                refused_b,
                rate_b: rate(refused_b, n_labeled_b),
                unlabeled_b,
            }
        })
        .collect();
    let overall = overall(&rates);
    let (answered_a, answered_b) = answered_by_both(items_a, items_b, &refused);
    let bootstrap = BootstrapConfig::new(args.bootstrap, args.seed).context("invalid --bootstrap")?;
    let config = CompareConfig { design: Design::Paired, bootstrap, alpha: args.alpha };
    let non_refusal =
        compare_files(&answered_a, &answered_b, &config).context("comparison on items neither model refused")?;
    let output = RefusalsJson {
        a: args.a.display().to_string(),
        b: args.b.display().to_string(),
        condition: args.condition.clone(),
        refused_at: args.refused_at,
        benchmarks: rates,
        overall,
        non_refusal,
    };
    if args.json {
        return printer.json(&output);
    }
    print_rates(&output, printer);
    printer.data("");
    printer.data("B - A on items neither model refused (paired):");
    print_table(&output.non_refusal, args.alpha, printer);
    Ok(())
}

/// (labeled, refused, unlabeled) items of one benchmark.
fn count(items: &BTreeMap<String, Item>, refused: &impl Fn(&Item) -> Option<bool>) -> (usize, usize, usize) {
    let labels: Vec<Option<bool>> = items.values().map(refused).collect();
    let n_labeled = labels.iter().flatten().count();
    let n_refused = labels.iter().flatten().filter(|&&is_refused| is_refused).count();
    (n_labeled, n_refused, labels.len() - n_labeled)
}

fn rate(refused: usize, labeled: usize) -> Option<f64> {
    (labeled > 0).then(|| refused as f64 / labeled as f64)
}

fn overall(rates: &[RateJson]) -> OverallJson {
    let sum = |field: fn(&RateJson) -> usize| rates.iter().map(field).sum::<usize>();
    let mean_rate = |field: fn(&RateJson) -> Option<f64>| {
        let values: Vec<f64> = rates.iter().filter_map(field).collect();
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    };
    let (n_labeled_a, refused_a) = (sum(|r| r.n_labeled_a), sum(|r| r.refused_a));
    let (n_labeled_b, refused_b) = (sum(|r| r.n_labeled_b), sum(|r| r.refused_b));
    OverallJson {
        n_labeled_a,
        refused_a,
        rate_a: rate(refused_a, n_labeled_a),
        mean_rate_a: mean_rate(|r| r.rate_a),
        n_labeled_b,
        refused_b,
        rate_b: rate(refused_b, n_labeled_b),
        mean_rate_b: mean_rate(|r| r.rate_b),
    }
}

/// The items of each benchmark that both models answered (labeled and not refused).
fn answered_by_both(
    a: &Benchmarks,
    b: &Benchmarks,
    refused: &impl Fn(&Item) -> Option<bool>,
) -> (Benchmarks, Benchmarks) {
    let mut answered_a = Benchmarks::new();
    let mut answered_b = Benchmarks::new();
    for (name, items_a) in a {
        let Some(items_b) = b.get(name) else { continue };
        for (item, entry_a) in items_a {
            let Some(entry_b) = items_b.get(item) else {
                continue;
            };
            if refused(entry_a) == Some(false) && refused(entry_b) == Some(false) {
                answered_a.entry(name.clone()).or_default().insert(item.clone(), entry_a.clone());
                answered_b.entry(name.clone()).or_default().insert(item.clone(), entry_b.clone());
            }
        }
    }
    (answered_a, answered_b)
}

fn print_rates(output: &RefusalsJson, printer: &Printer) {
    let width = output.benchmarks.iter().map(|r| r.benchmark.len()).max().unwrap_or(9).max(9);
    let percent = |value: Option<f64>| value.map_or("-".to_string(), |v| format!("{:.1}%", 100.0 * v));
    printer.data(format!("{:<width$} {:>18} {:>18}", "benchmark", "refused A", "refused B"));
    for row in &output.benchmarks {
        printer.data(format!(
            "{:<width$} {:>18} {:>18}",
            row.benchmark,
            format!("{} ({}/{})", percent(row.rate_a), row.refused_a, row.n_labeled_a),
            format!("{} ({}/{})", percent(row.rate_b), row.refused_b, row.n_labeled_b),
        ));
    }
    let overall = &output.overall;
    printer.data(format!(
        "{:<width$} {:>18} {:>18}",
        "overall",
        format!("{} ({}/{})", percent(overall.rate_a), overall.refused_a, overall.n_labeled_a),
        format!("{} ({}/{})", percent(overall.rate_b), overall.refused_b, overall.n_labeled_b),
    ));
}
