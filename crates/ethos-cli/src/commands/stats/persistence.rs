//! `ethos stats persistence`: how much two models degrade under a harmful persona system prompt, and how much a
//! helpful persona steers them, with the difference B minus A and bootstrap CIs over items.
//!
//! Both files hold ItemScore records of one model under several conditions (the `condition` field; records
//! without it are the standard prompt, `none`). An item counts when it is scored under both conditions for
//! both models; other items are listed in `unmatched`, never silently dropped.
//!
//! JSON output: `{"a", "b", "standard", "harmful", "helpful", "bootstrap", "seed", "confidence", "degradation":
//! Shift, "steering": Shift | null}` where Shift is `{"condition", "n_items", "a": {"standard", "persona",
//! "shift", "ci_low", "ci_high"}, "b": {..}, "difference", "difference_ci_low", "difference_ci_high", "t",
//! "df", "p", "per_benchmark": [{"benchmark", "n_items", "shift_a", "shift_b", "difference"}], "unmatched":
//! [{"benchmark", "item", "missing": [..]}]}`. For the degradation, shift = standard - persona; for the
//! steering, shift = persona - standard. difference = shift of B - shift of A.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::Context;
use ethos_stats::bootstrap::BootstrapConfig;
use ethos_stats::describe::mean;
use ethos_stats::persistence::{condition_shift, ConditionPairScores, ModelShift, ShiftKind};
use ethos_stats::rng::purpose_key;
use serde::Serialize;

use super::items::{Benchmarks, ScoreFile, STANDARD_CONDITION};
use crate::printer::Printer;

/// Arguments of `ethos stats persistence`.
#[derive(Debug, clap::Args)]
pub struct PersistenceArgs {
    /// ItemScore JSONL of model A (for example the baseline) under the standard and persona conditions.
    #[arg(long, value_name = "A.jsonl")]
    pub(crate) a: PathBuf,
    /// ItemScore JSONL of model B (for example the trait model).
    #[arg(long, value_name = "B.jsonl")]
    pub(crate) b: PathBuf,
    /// Condition of the harmful persona system prompt; degradation = score(standard) - score(harmful).
    #[arg(long, value_name = "CONDITION")]
    pub(crate) harmful: String,
    /// Condition of the helpful persona; steering = score(helpful) - score(standard). Omit to skip.
    #[arg(long, value_name = "CONDITION")]
    pub(crate) helpful: Option<String>,
    /// Condition of the standard prompt (`none` also matches records without a condition).
    #[arg(long, value_name = "CONDITION", default_value = STANDARD_CONDITION)]
    pub(crate) standard: String,
    /// Number of bootstrap resamples of items.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = super::positive_count)]
    pub(crate) bootstrap: usize,
    /// Seed of the bootstrap.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub(crate) seed: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Serialize)]
struct ModelJson {
    standard: f64,
    persona: f64,
    shift: f64,
    ci_low: f64,
    ci_high: f64,
}

#[derive(Debug, Serialize)]
struct BenchmarkShiftJson {
    benchmark: String,
    n_items: usize,
    shift_a: f64,
    shift_b: f64,
    difference: f64,
}

#[derive(Debug, Serialize)]
struct UnmatchedJson {
    benchmark: String,
    item: String,
    missing: Vec<&'static str>,
}

#[derive(Debug, Serialize)]
struct ShiftJson {
    condition: String,
    n_items: usize,
    a: ModelJson,
    b: ModelJson,
    difference: f64,
    difference_ci_low: f64,
    difference_ci_high: f64,
    t: Option<f64>,
    df: Option<f64>,
    p: Option<f64>,
    per_benchmark: Vec<BenchmarkShiftJson>,
    unmatched: Vec<UnmatchedJson>,
}

#[derive(Debug, Serialize)]
pub(crate) struct PersistenceJson {
    a: String,
    b: String,
    standard: String,
    harmful: String,
    helpful: Option<String>,
    bootstrap: usize,
    seed: u64,
    confidence: f64,
    degradation: ShiftJson,
    steering: Option<ShiftJson>,
}

/// Runs the analysis and prints it.
pub fn run(args: PersistenceArgs, printer: &Printer) -> anyhow::Result<()> {
    let output = analyze(&args, printer)?;
    if args.json {
        return printer.json(&output);
    }
    print(&output, printer);
    Ok(())
}

/// The persistence analysis of two ItemScore files (warnings about unmatched items go to the status stream).
pub(crate) fn analyze(args: &PersistenceArgs, printer: &Printer) -> anyhow::Result<PersistenceJson> {
    let file_a = ScoreFile::read(&args.a)?;
    let file_b = ScoreFile::read(&args.b)?;
    let config = BootstrapConfig::new(args.bootstrap, args.seed).context("invalid --bootstrap")?;
    let shift = |persona: &str, kind: ShiftKind| -> anyhow::Result<ShiftJson> {
        let cells = [
            file_a.condition(Some(&args.standard))?,
            file_a.condition(Some(persona))?,
            file_b.condition(Some(&args.standard))?,
            file_b.condition(Some(persona))?,
        ];
        shift_json(persona, &cells, kind, &config)
    };
    let degradation = shift(&args.harmful, ShiftKind::Degradation).context("degradation under the harmful persona")?;
    let steering = match &args.helpful {
        Some(helpful) => Some(shift(helpful, ShiftKind::Steering).context("steering by the helpful persona")?),
        None => None,
    };
    let output = PersistenceJson {
        a: args.a.display().to_string(),
        b: args.b.display().to_string(),
        standard: args.standard.clone(),
        harmful: args.harmful.clone(),
        helpful: args.helpful.clone(),
        bootstrap: args.bootstrap,
        seed: args.seed,
        confidence: config.confidence(),
        degradation,
        steering,
    };
    for shift in std::iter::once(&output.degradation).chain(&output.steering) {
        if !shift.unmatched.is_empty() {
            printer.status(format!(
                "warning: {} items are not scored under both conditions for both models (listed in the output)",
                shift.unmatched.len()
            ));
        }
    }
    Ok(output)
}

/// Prints the analysis as text.
pub(crate) fn print(output: &PersistenceJson, printer: &Printer) {
    printer.data(format!("A = {}, B = {}", output.a, output.b));
    print_shift("degradation (standard - harmful)", &output.degradation, printer);
    if let Some(steering) = &output.steering {
        print_shift("steering (helpful - standard)", steering, printer);
    }
}

const CELL_NAMES: [&str; 4] = ["a_standard", "a_persona", "b_standard", "b_persona"];

/// Aligns the items scored in all four cells (A/B x standard/persona) and computes the shifts.
fn shift_json(
    persona: &str,
    cells: &[&Benchmarks; 4],
    kind: ShiftKind,
    config: &BootstrapConfig,
) -> anyhow::Result<ShiftJson> {
    let mut keys: BTreeSet<(&str, &str)> = BTreeSet::new();
    for cell in cells {
        for (benchmark, items) in cell.iter() {
            keys.extend(items.keys().map(|item| (benchmark.as_str(), item.as_str())));
        }
    }
    let score = |cell: &Benchmarks, benchmark: &str, item: &str| cell.get(benchmark)?.get(item)?.score;
    let mut aligned: [Vec<f64>; 4] = Default::default();
    let mut item_benchmarks: Vec<&str> = Vec::new();
    let mut unmatched = Vec::new();
    for &(benchmark, item) in &keys {
        let scores: Vec<Option<f64>> = cells.iter().map(|cell| score(cell, benchmark, item)).collect();
        if scores.iter().all(Option::is_some) {
            for (column, value) in aligned.iter_mut().zip(scores.iter().flatten()) {
                column.push(*value);
            }
            item_benchmarks.push(benchmark);
        } else {
            let missing = CELL_NAMES.iter().zip(&scores).filter(|(_, s)| s.is_none()).map(|(name, _)| *name).collect();
            unmatched.push(UnmatchedJson { benchmark: benchmark.to_string(), item: item.to_string(), missing });
        }
    }
    let [a_reference, a_other, b_reference, b_other] = aligned;
    let scores = ConditionPairScores { a_reference, a_other, b_reference, b_other };
    let result = condition_shift(&scores, kind, config, purpose_key(persona))?;
    let per_benchmark = per_benchmark(&scores, &item_benchmarks, kind)?;
    let model = |shift: &ModelShift| ModelJson {
        standard: shift.reference,
        persona: shift.other,
        shift: shift.shift,
        ci_low: shift.ci.0,
        ci_high: shift.ci.1,
    };
    Ok(ShiftJson {
        condition: persona.to_string(),
        n_items: result.n_items,
        a: model(&result.a),
        b: model(&result.b),
        difference: result.difference,
        difference_ci_low: result.difference_ci.0,
        difference_ci_high: result.difference_ci.1,
        t: result.difference_test.map(|test| test.statistic),
        df: result.difference_test.map(|test| test.df),
        p: result.difference_test.map(|test| test.p_value),
        per_benchmark,
        unmatched,
    })
}

fn per_benchmark(
    scores: &ConditionPairScores,
    item_benchmarks: &[&str],
    kind: ShiftKind,
) -> anyhow::Result<Vec<BenchmarkShiftJson>> {
    let mut by_benchmark: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (item_idx, benchmark) in item_benchmarks.iter().enumerate() {
        by_benchmark.entry(benchmark).or_default().push(item_idx);
    }
    let sign = if kind == ShiftKind::Degradation { 1.0 } else { -1.0 };
    let shift_of = |reference: &[f64], other: &[f64], indices: &[usize]| -> anyhow::Result<f64> {
        let per_item: Vec<f64> = indices.iter().map(|&idx| sign * (reference[idx] - other[idx])).collect();
        Ok(mean(&per_item)?)
    };
    by_benchmark
        .into_iter()
        .map(|(benchmark, indices)| {
            let shift_a = shift_of(&scores.a_reference, &scores.a_other, &indices)?;
            let shift_b = shift_of(&scores.b_reference, &scores.b_other, &indices)?;
            Ok(BenchmarkShiftJson {
                benchmark: benchmark.to_string(),
                n_items: indices.len(),
                shift_a,
                shift_b,
                difference: shift_b - shift_a,
            })
        })
        .collect()
}

fn print_shift(title: &str, shift: &ShiftJson, printer: &Printer) {
    printer.data("");
    printer.data(format!("{title}, condition `{}`, {} items", shift.condition, shift.n_items));
    for (name, model) in [("A", &shift.a), ("B", &shift.b)] {
        printer.data(format!(
            "  {name}: standard {:.4}, persona {:.4}, shift {:.4} [{:.4}, {:.4}]",
            model.standard, model.persona, model.shift, model.ci_low, model.ci_high
        ));
    }
    let p = shift.p.map_or("-".to_string(), |p| format!("{p:.4}"));
    printer.data(format!(
        "  B - A: {:.4} [{:.4}, {:.4}], paired t-test p = {p}",
        shift.difference, shift.difference_ci_low, shift.difference_ci_high
    ));
    if !shift.unmatched.is_empty() {
        printer.data(format!(
            "  {} items not scored in all four cells (excluded, listed in --json)",
            shift.unmatched.len()
        ));
    }
}
