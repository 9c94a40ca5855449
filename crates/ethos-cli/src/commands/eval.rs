//! `ethos eval traits`: a policy replies to the scenarios of the held-out trait suite (or any selection), a judge
//! grades every reply against its rubric, and the run directory gets samples, grades, ItemScore records
//! (benchmark = trait) and a summary with per-trait scores and the composite.
//!
//! Run directory layout: `manifest.json`, `samples.jsonl`, `grades.jsonl`, `item_scores.jsonl`, `summary.json`.
//! While running, finished batches are appended to `progress.jsonl` (sample + grade per line, flushed), so a killed
//! run resumes without redoing finished scenarios; the final files are written atomically at the end.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use ethos_core::io::{read_jsonl, write_atomic, write_jsonl_atomic, ReadOptions};
use ethos_core::records::{FinishReason, Grade, ItemScore, Message, Role, Sample, Scenario, Split, SCHEMA_VERSION};
use ethos_eval::capability::{load_items, CapabilityBenchmark};
use ethos_eval::runner::{run_capability, CapabilityRunConfig};
use ethos_grade::refusal::heuristic_refusal;
use ethos_grade::{summarize, GradeItem, RubricGrader, SuiteSummary};
use ethos_llm::{ChatRequest, SamplingParams};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::commands::common::{self, ModelArgs};
use crate::commands::data::{parse_split, SelectArgs};
use crate::commands::judges::JudgeArgs;
use crate::printer::Printer;

/// Subcommands of `ethos eval`.
#[derive(Debug, clap::Subcommand)]
pub enum EvalCommand {
    /// The trait suite: replies and rubric grades, scores per trait and the composite.
    Traits(TraitsArgs),
    /// A capability guard: GSM8K test exact match or IFEval strict and loose accuracy (greedy decoding).
    Capability(CapabilityArgs),
    /// A suite of public benchmarks (`ood`, `quick`, `capability` or a TOML file): oriented item scores with refusal
    /// labels, per-benchmark raw metrics and CIs; resumable.
    Run(Box<crate::commands::ood::RunArgs>),
    /// The persistence protocol: two policies under the standard prompt and a harmful and a helpful condition,
    /// then `ethos stats persistence`.
    Persistence(Box<crate::commands::ood::PersistenceArgs>),
    /// The registered benchmarks (or a suite's): category, orientation, format, file.
    List(crate::commands::ood::ListArgs),
}

/// Arguments of `ethos eval capability`.
#[derive(Debug, clap::Args)]
pub struct CapabilityArgs {
    /// Benchmark: `gsm8k` (test split) or `ifeval`.
    #[arg(long)]
    benchmark: String,
    /// Model spec of the policy.
    #[arg(long, default_value = ethos_llm::DEFAULT_POLICY)]
    policy: String,
    /// At most this many items, a seeded draw kept in file order (0 = all); the same draw for every policy.
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// Seed of the item draw and of the bootstrap CIs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Token budget per reply (default: 256 for GSM8K, 512 for IFEval).
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Items per batched policy call.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Persona condition (catalog id) given as a system prompt; `none` for the standard prompt.
    #[arg(long, default_value = "none")]
    condition: String,
    /// Shared data directory holding gsm8k/test.jsonl and ifeval/input_data.jsonl.
    #[arg(long, env = "ETHOS_DATA_DIR", default_value = "../shared/data")]
    data_dir: PathBuf,
    /// The benchmark file (default: under --data-dir).
    #[arg(long)]
    file: Option<PathBuf>,
    /// Run directory.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
}

/// Arguments of `ethos eval traits`.
#[derive(Debug, clap::Args)]
pub struct TraitsArgs {
    /// Model spec of the policy.
    #[arg(long, default_value = ethos_llm::DEFAULT_POLICY)]
    policy: String,
    #[command(flatten)]
    judge: JudgeArgs,
    /// Split to evaluate (`heldout`: the 7 held-out traits; `train`).
    #[arg(long, default_value = "heldout", value_parser = parse_split)]
    split: Split,
    /// Scenario JSONL files (default: the built-in bank).
    #[arg(long = "input", value_name = "FILE")]
    inputs: Vec<PathBuf>,
    /// Keep only these traits (comma-separated ids).
    #[arg(long, value_delimiter = ',')]
    traits: Vec<String>,
    /// Keep only these domains (ids or tags).
    #[arg(long, value_delimiter = ',')]
    domains: Vec<String>,
    /// Drop domains with these tags.
    #[arg(long, value_delimiter = ',')]
    exclude_tags: Vec<String>,
    /// At most this many scenarios per trait, spread over domains (0 = all).
    #[arg(long, default_value_t = 0)]
    per_trait: usize,
    /// Persona condition (catalog id) given as a system prompt; `none` for the standard prompt.
    #[arg(long, default_value = "none")]
    condition: String,
    /// Sampling temperature of the policy.
    #[arg(long, default_value_t = 0.7)]
    temperature: f32,
    /// Token budget per reply.
    #[arg(long, default_value_t = 200)]
    max_tokens: u32,
    /// Base seed (per-scenario seeds derive from it and the scenario id).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Scenarios per batch (one batched policy call, then one grading pass).
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Judge calls in flight.
    #[arg(long, default_value_t = 4)]
    judge_concurrency: usize,
    /// Run directory.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
}

/// One finished scenario in `progress.jsonl`.
#[derive(Debug, Serialize, Deserialize)]
struct Progress {
    sample: Sample,
    grade: Grade,
}

/// At most `per_trait` scenarios per trait, taking domains round-robin so every domain is represented.
pub fn spread_per_trait(scenarios: Vec<Scenario>, per_trait: usize) -> Vec<Scenario> {
    if per_trait == 0 {
        return scenarios;
    }
    let mut by_trait: BTreeMap<String, BTreeMap<String, Vec<Scenario>>> = BTreeMap::new();
    let order: Vec<String> = scenarios.iter().map(|s| s.trait_id.clone()).fold(Vec::new(), |mut acc, t| {
        if !acc.contains(&t) {
            acc.push(t);
        }
        acc
    });
    for s in scenarios {
        by_trait.entry(s.trait_id.clone()).or_default().entry(s.domain.clone()).or_default().push(s);
    }
    let mut out = Vec::new();
    for t in order {
        let Some(mut domains) = by_trait.remove(&t) else { continue };
        let mut taken = 0;
        let mut round = 0;
        while taken < per_trait {
            let mut any = false;
            for list in domains.values_mut() {
                if round < list.len() && taken < per_trait {
                    out.push(list[round].clone());
                    taken += 1;
                    any = true;
                }
            }
            if !any {
                break;
            }
            round += 1;
        }
    }
    out
}

/// Runs `ethos eval`.
pub fn run(command: EvalCommand, printer: &Printer) -> anyhow::Result<()> {
    match command {
        EvalCommand::Traits(args) => common::runtime()?.block_on(traits(args, printer)),
        EvalCommand::Capability(args) => common::runtime()?.block_on(capability(args, printer)),
        EvalCommand::Run(args) => {
            let summary = common::runtime()?.block_on(crate::commands::ood::run_suite_command(&args, printer))?;
            crate::commands::ood::print_summary(&summary, printer);
            Ok(())
        }
        EvalCommand::Persistence(args) => {
            common::runtime()?.block_on(crate::commands::ood::persistence(&args, printer))
        }
        EvalCommand::List(args) => crate::commands::ood::list(args, printer),
    }
}

async fn capability(args: CapabilityArgs, printer: &Printer) -> anyhow::Result<()> {
    let started = Instant::now();
    let benchmark = CapabilityBenchmark::parse(&args.benchmark)?;
    let file = args.file.clone().unwrap_or_else(|| benchmark.default_file(&args.data_dir));
    if !file.exists() {
        anyhow::bail!(
            "{} not found (pass --file, or --data-dir / ETHOS_DATA_DIR pointing at the shared data directory)",
            file.display()
        );
    }
    let items = load_items(benchmark, &file, args.limit, args.seed)?;
    let persona = common::persona_prompt(&args.condition)?;
    let max_tokens = args.max_tokens.unwrap_or_else(|| benchmark.default_max_tokens());
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let policy = common::load_policy(&args.policy, &args.model, printer).await?;
    let manifest = common::manifest(
        "eval capability",
        json!({
            "benchmark": benchmark.name(), "file": file, "policy": args.policy, "limit": args.limit,
            "n_items": items.len(), "max_tokens": max_tokens, "batch_size": args.batch_size,
            "condition": args.condition, "decoding": "greedy",
        }),
        [("seed", args.seed)],
        vec![("policy", &policy)],
    );
    write_atomic(&args.out.join("manifest.json"), |w| {
        serde_json::to_writer_pretty(&mut *w, &manifest)?;
        Ok(())
    })?;
    let config = CapabilityRunConfig {
        policy: args.policy.clone(),
        condition: (args.condition != "none").then(|| args.condition.clone()),
        system_prompt: persona,
        max_tokens,
        batch_size: args.batch_size,
        seed: args.seed,
    };
    let bar = printer.progress(items.len() as u64, &format!("eval {}", benchmark.name()));
    let run = run_capability(policy.model.as_ref(), benchmark, &items, &config, &args.out, |done| {
        bar.set_position(done as u64)
    })
    .await?;
    bar.finish_and_clear();
    let show = |name: &str, accuracy: &ethos_eval::capability::Accuracy| {
        printer.data(format!(
            "{name:<24} {:>6.3}  95% CI [{:.3}, {:.3}]  n={}",
            accuracy.value, accuracy.ci_low, accuracy.ci_high, accuracy.n
        ))
    };
    let summary = &run.summary;
    show(
        if benchmark == CapabilityBenchmark::Gsm8k { "gsm8k exact match" } else { "prompt strict" },
        &summary.accuracy,
    );
    for (name, accuracy) in [
        ("prompt loose", &summary.prompt_loose),
        ("instruction strict", &summary.instruction_strict),
        ("instruction loose", &summary.instruction_loose),
    ] {
        if let Some(accuracy) = accuracy {
            show(name, accuracy);
        }
    }
    printer.status(format!(
        "{} items in {:.1} s ({} resumed, {} replies hit the {max_tokens}-token budget); run files in {}",
        items.len(),
        started.elapsed().as_secs_f64(),
        run.n_resumed,
        run.n_truncated,
        args.out.display()
    ));
    Ok(())
}

pub(crate) async fn traits(args: TraitsArgs, printer: &Printer) -> anyhow::Result<()> {
    let started = Instant::now();
    let select = SelectArgs {
        inputs: args.inputs.clone(),
        split: Some(args.split),
        traits: args.traits.clone(),
        domains: args.domains.clone(),
        exclude_tags: args.exclude_tags.clone(),
        heldout_fraction: 0.0,
        split_seed: 0,
    };
    let scenarios = spread_per_trait(select.load()?, args.per_trait);
    anyhow::ensure!(!scenarios.is_empty(), "no scenarios match the selection");
    anyhow::ensure!(args.batch_size > 0, "--batch-size must be positive");
    let persona = common::persona_prompt(&args.condition)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;

    let progress_path = args.out.join("progress.jsonl");
    let mut done: HashMap<String, Progress> = HashMap::new();
    if progress_path.exists() {
        let outcome = read_jsonl::<Progress>(&progress_path, ReadOptions { skip_invalid: true, allow_empty: true })?;
        if !outcome.skipped.is_empty() {
            printer.status(format!("ignoring {} incomplete progress lines (a kill mid-write)", outcome.skipped.len()));
        }
        for (_, p) in outcome.records {
            done.insert(p.sample.item_id.clone(), p);
        }
        printer.status(format!("resuming: {} of {} scenarios already done", done.len(), scenarios.len()));
    }

    let policy = common::load_policy(&args.policy, &args.model, printer).await?;
    let judge = args.judge.load(&args.model, printer, Some(&policy)).await?;
    let grader = RubricGrader::new(judge.judge.clone(), args.batch_size, args.judge_concurrency);
    let mut models = vec![("policy", &policy)];
    if let Some(m) = &judge.model {
        models.push(("judge", m));
    }
    let manifest = common::manifest(
        "eval traits",
        json!({
            "policy": args.policy, "judge": judge.spec, "judge_identity": grader.judge_identity(),
            "split": args.split, "inputs": args.inputs, "traits": args.traits, "domains": args.domains,
            "exclude_tags": args.exclude_tags, "per_trait": args.per_trait, "condition": args.condition,
            "temperature": args.temperature, "max_tokens": args.max_tokens, "batch_size": args.batch_size,
            "n_scenarios": scenarios.len(),
        }),
        [("seed", args.seed)],
        models,
    );
    write_atomic(&args.out.join("manifest.json"), |w| {
        serde_json::to_writer_pretty(&mut *w, &manifest)?;
        Ok(())
    })?;

    let todo: Vec<&Scenario> = scenarios.iter().filter(|s| !done.contains_key(&s.id)).collect();
    let bar = printer.progress(scenarios.len() as u64, "eval traits");
    bar.inc(done.len() as u64);
    let mut progress_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&progress_path)
        .with_context(|| format!("opening {}", progress_path.display()))?;
    let mut failures = 0usize;
    for batch in todo.chunks(args.batch_size) {
        let requests: Vec<ChatRequest> = batch
            .iter()
            .map(|s| {
                let mut messages = Vec::with_capacity(s.conversation.len() + 1);
                if let Some(system) = &persona {
                    messages.push(Message { role: Role::System, content: system.clone() });
                }
                messages.extend(s.conversation.iter().filter(|m| persona.is_none() || m.role != Role::System).cloned());
                ChatRequest {
                    messages,
                    sampling: SamplingParams {
                        n: 1,
                        temperature: args.temperature,
                        max_tokens: args.max_tokens,
                        seed: common::item_seed(args.seed, &s.id),
                        ..SamplingParams::default()
                    },
                }
            })
            .collect();
        let responses = policy.model.chat_batch(&requests).await;
        let mut samples = Vec::new();
        for (scenario, response) in batch.iter().zip(responses) {
            let response = response.with_context(|| format!("policy failed on scenario {}", scenario.id))?;
            let generation = response.choices.into_iter().next().context("policy returned no choice")?;
            samples.push(Sample {
                schema_version: SCHEMA_VERSION,
                id: format!("{}:{}:0", scenario.id, args.condition),
                item_id: scenario.id.clone(),
                sample_index: 0,
                policy: args.policy.clone(),
                condition: args.condition.clone(),
                reply: generation.text,
                reasoning: None,
                n_tokens: generation.n_tokens,
                finish_reason: generation.finish_reason,
            });
        }
        let items: Vec<GradeItem> = batch
            .iter()
            .zip(&samples)
            .map(|(s, sample)| GradeItem::for_scenario(&sample.id, s, &sample.reply))
            .collect();
        let grades = grader.grade(&items).await;
        for (sample, grade) in samples.into_iter().zip(grades) {
            let mut grade = match grade {
                Ok(g) => g,
                Err(e) => {
                    // A judge backend failure: the scenario stays undone and is retried on the next run.
                    failures += 1;
                    printer.status(format!("warning: judge failed on {}: {e}", sample.item_id));
                    continue;
                }
            };
            grade.refusal = Some(heuristic_refusal(&sample.reply));
            let line = serde_json::to_string(&Progress { sample, grade })?;
            writeln!(progress_file, "{line}")?;
            progress_file.flush()?;
            if let Ok(p) = serde_json::from_str::<Progress>(&line) {
                done.insert(p.sample.item_id.clone(), p);
            }
        }
        progress_file.sync_data().ok();
        bar.inc(batch.len() as u64);
    }
    bar.finish_and_clear();

    finish(&args, &scenarios, &done, printer)?;
    let stats = policy.cache_stats();
    let calls = match &judge.model {
        Some(m) if m.spec == policy.spec => {
            format!("model calls {} (cache hits {}; policy and judge share the model)", stats.misses, stats.hits)
        }
        Some(m) => {
            let judge_stats = m.cache_stats();
            format!(
                "policy calls {} (cache hits {}), judge calls {} (cache hits {})",
                stats.misses, stats.hits, judge_stats.misses, judge_stats.hits
            )
        }
        None => format!("policy calls {} (cache hits {})", stats.misses, stats.hits),
    };
    printer.status(format!(
        "{} scenarios in {:.1} s; {calls}{}",
        scenarios.len(),
        started.elapsed().as_secs_f64(),
        if failures > 0 {
            format!("; {failures} scenarios failed grading: rerun to retry them")
        } else {
            String::new()
        }
    ));
    anyhow::ensure!(failures == 0, "{failures} scenarios could not be graded (judge failures); rerun to resume");
    Ok(())
}

fn finish(
    args: &TraitsArgs,
    scenarios: &[Scenario],
    done: &HashMap<String, Progress>,
    printer: &Printer,
) -> anyhow::Result<()> {
    let finished: Vec<(&Scenario, &Progress)> =
        scenarios.iter().filter_map(|s| done.get(&s.id).map(|p| (s, p))).collect();
    let samples: Vec<&Sample> = finished.iter().map(|(_, p)| &p.sample).collect();
    let grades: Vec<&Grade> = finished.iter().map(|(_, p)| &p.grade).collect();
    let condition = (args.condition != "none").then(|| args.condition.clone());
    let item_scores: Vec<ItemScore> = finished
        .iter()
        .map(|(s, p)| ItemScore {
            schema_version: SCHEMA_VERSION,
            benchmark: s.trait_id.clone(),
            item: s.id.clone(),
            score: p.grade.score,
            refusal: p.grade.refusal,
            condition: condition.clone(),
            model: Some(args.policy.clone()),
        })
        .collect();
    let summary = summarize(finished.iter().map(|(s, p)| (*s, &p.grade)));
    write_jsonl_atomic(args.out.join("samples.jsonl"), &samples)?;
    write_jsonl_atomic(args.out.join("grades.jsonl"), &grades)?;
    write_jsonl_atomic(args.out.join("item_scores.jsonl"), &item_scores)?;
    let truncated = samples.iter().filter(|s| s.finish_reason == FinishReason::Length).count();
    write_atomic(&args.out.join("summary.json"), |w| {
        serde_json::to_writer_pretty(
            &mut *w,
            &json!({"summary": summary, "n_items": finished.len(), "truncated_replies": truncated}),
        )?;
        Ok(())
    })?;
    if finished.len() == scenarios.len() {
        let _ = std::fs::remove_file(args.out.join("progress.jsonl"));
    }
    print_summary(&summary, printer);
    Ok(())
}

/// Prints the per-trait table and the composite.
pub fn print_summary(summary: &SuiteSummary, printer: &Printer) {
    let fmt = |x: Option<f64>| x.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
    printer.data(format!(
        "{:<28} {:>6} {:>6} {:>9} {:>8} {:>8}",
        "trait", "score", "items", "unscored", "pos_met", "neg_met"
    ));
    for (id, t) in &summary.traits {
        printer.data(format!(
            "{id:<28} {:>6} {:>6} {:>9} {:>8} {:>8}",
            fmt(t.score),
            t.n_scored,
            t.n_unscored_criteria,
            fmt(t.positive_met_rate),
            fmt(t.negative_met_rate)
        ));
    }
    printer.data(format!("{:<28} {:>6}", "composite", fmt(summary.composite)));
}
