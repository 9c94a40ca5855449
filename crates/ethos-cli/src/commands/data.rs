//! `ethos data`: export scenarios (the built-in bank or a file) with split and domain filters, validate scenario
//! files, and count scenarios per trait x domain with the near-duplicate rate.

use std::path::{Path, PathBuf};

use anyhow::Context;
use ethos_core::catalog::Catalog;
use ethos_core::io::{read_jsonl, write_jsonl_atomic, ReadOptions};
use ethos_core::records::{Scenario, Split};
use ethos_core::RecordError;
use ethos_data::dedup::{near_duplicate_pairs, near_duplicate_rate, DEFAULT_THRESHOLD};
use ethos_data::select::{assign_splits, DomainFilter, ScenarioFilter};
use ethos_data::{bank_scenarios, validate_scenario, CellCounts};
use serde_json::json;

use crate::printer::Printer;

/// Subcommands of `ethos data`.
#[derive(Debug, clap::Subcommand)]
pub enum DataCommand {
    /// Write scenarios as JSONL, filtered by split, trait and domain.
    Export(ExportArgs),
    /// Check scenario files against the schema and the catalog.
    Validate(ValidateArgs),
    /// Count scenarios per trait x domain and report near-duplicates.
    Stats(StatsArgs),
    /// Build the supervised warm-start chat set from training data only (GSM8K train, train-split exemplars,
    /// generated instructions).
    Warmstart(WarmstartArgs),
}

/// `ethos data warmstart`.
#[derive(Debug, Clone, clap::Args)]
pub struct WarmstartArgs {
    /// Output chat JSONL.
    #[arg(long)]
    pub out: PathBuf,
    /// GSM8K train problems to include (a seeded sample).
    #[arg(long, default_value_t = 250)]
    pub gsm8k: usize,
    /// Instruction-following examples to include.
    #[arg(long, default_value_t = 150)]
    pub instructions: usize,
    /// Seed of the samples.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Shared benchmark data (GSM8K train).
    #[arg(long, env = "ETHOS_DATA_DIR", default_value = "../shared/data")]
    pub data_dir: PathBuf,
}

/// Where scenarios come from and which to keep.
#[derive(Debug, Clone, clap::Args)]
pub struct SelectArgs {
    /// Scenario JSONL files (default: the built-in bank).
    #[arg(long = "input", value_name = "FILE")]
    pub inputs: Vec<PathBuf>,
    /// Keep only this split.
    #[arg(long, value_parser = parse_split)]
    pub split: Option<Split>,
    /// Keep only these traits (comma-separated ids).
    #[arg(long, value_delimiter = ',')]
    pub traits: Vec<String>,
    /// Keep only these domains (comma-separated domain ids or tags, e.g. `health`).
    #[arg(long, value_delimiter = ',')]
    pub domains: Vec<String>,
    /// Drop domains with any of these tags (e.g. `health,science`).
    #[arg(long, value_delimiter = ',')]
    pub exclude_tags: Vec<String>,
    /// Also hold out this share of the train traits' scenarios (by a seeded hash of the id) for in-distribution
    /// evaluation. Held-out traits are always held out.
    #[arg(long, default_value_t = 0.0)]
    pub heldout_fraction: f64,
    /// Seed of the scenario-level split.
    #[arg(long, default_value_t = 0)]
    pub split_seed: u64,
}

/// Parses `train` or `heldout`.
pub fn parse_split(text: &str) -> Result<Split, String> {
    match text {
        "train" => Ok(Split::Train),
        "heldout" | "held-out" => Ok(Split::Heldout),
        other => Err(format!("`{other}` is not a split (train, heldout)")),
    }
}

impl SelectArgs {
    /// Loads the scenarios (bank or files), assigns splits and applies the filters.
    pub fn load(&self) -> anyhow::Result<Vec<Scenario>> {
        let catalog = Catalog::builtin();
        if !(0.0..=1.0).contains(&self.heldout_fraction) {
            anyhow::bail!("--heldout-fraction must be in [0, 1], got {}", self.heldout_fraction);
        }
        let mut scenarios = if self.inputs.is_empty() {
            bank_scenarios().map_err(|e| anyhow::anyhow!("built-in bank: {e}"))?.to_vec()
        } else {
            let mut all = Vec::new();
            for path in &self.inputs {
                all.extend(read_scenarios(path)?);
            }
            all
        };
        if self.heldout_fraction > 0.0 {
            assign_splits(&mut scenarios, self.heldout_fraction, self.split_seed, catalog);
        }
        let filter = ScenarioFilter {
            split: self.split,
            traits: None,
            domains: DomainFilter::new(&self.domains, &self.exclude_tags, catalog)?,
        }
        .with_traits(&self.traits, catalog)?;
        Ok(scenarios.into_iter().filter(|s| filter.accepts(s)).collect())
    }
}

/// Reads a scenario JSONL file and validates every record, failing on the first invalid one with its line.
pub fn read_scenarios(path: &Path) -> anyhow::Result<Vec<Scenario>> {
    let outcome = read_jsonl::<Scenario>(path, ReadOptions::default())?;
    let catalog = Catalog::builtin();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(outcome.records.len());
    for (line, scenario) in outcome.records {
        if let Some(issue) = validate_scenario(&scenario, catalog).into_iter().next() {
            return Err(RecordError::at_line(
                ethos_core::io::RecordErrorKind::InvalidValue,
                path,
                line,
                Some(issue.field.clone()),
                issue.message,
            )
            .into());
        }
        if !seen.insert(scenario.id.clone()) {
            return Err(RecordError::at_line(
                ethos_core::io::RecordErrorKind::Duplicate,
                path,
                line,
                Some("id".to_string()),
                format!("duplicate scenario id `{}`", scenario.id),
            )
            .into());
        }
        out.push(scenario);
    }
    Ok(out)
}

/// Arguments of `ethos data export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    select: SelectArgs,
    /// Output JSONL file.
    #[arg(long)]
    out: PathBuf,
}

/// Arguments of `ethos data validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Scenario JSONL files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// Arguments of `ethos data stats`.
#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    #[command(flatten)]
    select: SelectArgs,
    /// Jaccard similarity (5-word shingles of the conversation) at which two scenarios count as near-duplicates.
    /// Candidates come from MinHash LSH (42 bands of 3 rows): a pair at 0.5 is found with probability 0.996, at 0.3
    /// with 0.68, so thresholds under 0.5 undercount.
    #[arg(long, default_value_t = DEFAULT_THRESHOLD)]
    dup_threshold: f64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs `ethos data`.
pub fn run(command: DataCommand, printer: &Printer) -> anyhow::Result<()> {
    match command {
        DataCommand::Warmstart(args) => {
            let config = ethos_train::warmstart::WarmstartConfig {
                n_gsm8k: args.gsm8k,
                n_instructions: args.instructions,
                seed: args.seed,
            };
            let records =
                ethos_train::warmstart::build_warmstart_set(&args.data_dir.join("gsm8k/train.jsonl"), &config)?;
            write_jsonl_atomic(&args.out, &records).with_context(|| format!("writing {}", args.out.display()))?;
            let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
            for record in &records {
                *counts.entry(record.source.as_deref().unwrap_or("-")).or_default() += 1;
            }
            let counts: Vec<String> = counts.iter().map(|(source, n)| format!("{source} {n}")).collect();
            printer.status(format!(
                "wrote {} examples ({}) to {}",
                records.len(),
                counts.join(", "),
                args.out.display()
            ));
            Ok(())
        }
        DataCommand::Export(args) => {
            let scenarios = args.select.load()?;
            write_jsonl_atomic(&args.out, &scenarios).with_context(|| format!("writing {}", args.out.display()))?;
            printer.status(format!("wrote {} scenarios to {}", scenarios.len(), args.out.display()));
            Ok(())
        }
        DataCommand::Validate(args) => {
            let mut total = 0;
            for path in &args.files {
                let n = read_scenarios(path)?.len();
                total += n;
                printer.data(format!("{}: {n} scenarios valid", path.display()));
            }
            printer.status(format!("{total} scenarios valid"));
            Ok(())
        }
        DataCommand::Stats(args) => stats(args, printer),
    }
}

/// The text compared for near-duplicates: every turn of the conversation.
pub fn dedup_text(scenario: &Scenario) -> String {
    scenario.conversation.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n")
}

fn stats(args: StatsArgs, printer: &Printer) -> anyhow::Result<()> {
    let scenarios = args.select.load()?;
    let catalog = Catalog::builtin();
    let counts = CellCounts::new(&scenarios, catalog);
    let texts: Vec<String> = scenarios.iter().map(dedup_text).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let pairs = near_duplicate_pairs(&refs, args.dup_threshold);
    let rate = near_duplicate_rate(scenarios.len(), &pairs);
    let n_criteria: usize = scenarios.iter().map(|s| s.rubric.len()).sum();
    let multi_turn = scenarios
        .iter()
        .filter(|s| s.conversation.iter().filter(|m| m.role == ethos_core::records::Role::User).count() > 1)
        .count();
    let heldout = scenarios.iter().filter(|s| s.split == Split::Heldout).count();
    if args.json {
        return printer.json(&json!({
            "scenarios": scenarios.len(),
            "train": scenarios.len() - heldout,
            "heldout": heldout,
            "multi_turn": multi_turn,
            "criteria": n_criteria,
            "min_cell": counts.min_cell(),
            "cells": counts,
            "near_duplicate_threshold": args.dup_threshold,
            "near_duplicate_pairs": pairs.iter().map(|p| json!({
                "a": scenarios[p.first].id, "b": scenarios[p.second].id, "jaccard": p.jaccard
            })).collect::<Vec<_>>(),
            "near_duplicate_rate": rate,
        }));
    }
    printer.data(counts.render());
    printer.data(format!(
        "{} scenarios ({} train, {heldout} held out), {multi_turn} multi-turn, {n_criteria} rubric criteria; smallest cell {}",
        scenarios.len(),
        scenarios.len() - heldout,
        counts.min_cell()
    ));
    for (key, n) in &counts.unknown {
        printer.data(format!("not in the catalog: {key} ({n})"));
    }
    printer.data(format!(
        "near-duplicates (Jaccard >= {} over 5-word shingles): {} pairs, {:.2}% of scenarios involved",
        args.dup_threshold,
        pairs.len(),
        100.0 * rate
    ));
    for p in pairs.iter().take(20) {
        printer.data(format!("  {} ~ {} ({:.2})", scenarios[p.first].id, scenarios[p.second].id, p.jaccard));
    }
    Ok(())
}
