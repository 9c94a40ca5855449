//! `ethos eval run`, `ethos eval persistence` and `ethos eval list`: the out-of-distribution suite of public
//! benchmarks (ethos-eval's `ood` module) on any policy, under any persona condition, and the persistence protocol.
//!
//! Run directory of `eval run`: `manifest.json`, `run_key.json`, `item_scores.jsonl` (oriented scores with refusal
//! labels), `outcomes.jsonl` (replies, probabilities, judge readings), `summary.json` (per benchmark: raw published
//! metric, oriented score with bootstrap CI, refusal rate). While running, `progress.jsonl` keeps finished items.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use ethos_core::io::{write_atomic, write_jsonl_atomic};
use ethos_core::records::ItemScore;
use ethos_eval::ood::judge::{ProbeJudge, ReadMode};
use ethos_eval::ood::load::{load_benchmark, LoadOptions};
use ethos_eval::ood::registry::registry;
use ethos_eval::ood::run::{
    default_min_number_mass, run_suite, BenchmarkProgress, ChoiceMode, Condition, Graders, JudgeTemplates,
    PlannedBenchmark, SuiteRunConfig, SuiteSummary,
};
use ethos_eval::ood::suite::{stratified_subset, Suite};
use ethos_eval::ood::{Format, Grading, Task};
use ethos_grade::logprob_judge::Calibration;
use ethos_grade::refusal::HeuristicRefusal;
use ethos_llm::ModelSpec;
use serde_json::json;

use crate::commands::common::{self, LoadedModel, ModelArgs};
use crate::commands::judges::JudgeArgs;
use crate::printer::Printer;

/// Arguments of `ethos eval run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Model spec of the policy.
    #[arg(long, default_value = ethos_llm::DEFAULT_POLICY)]
    pub policy: String,
    /// Prompt condition: `none`, a catalog persona id (system prompt), or `jailbreak:N` (row N of the in-the-wild
    /// jailbreak prompts wrapped around each user turn).
    #[arg(long, default_value = "none")]
    pub condition: String,
    /// Run directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Suite, judges and backend settings.
    #[command(flatten)]
    pub settings: RunSettings,
}

/// Arguments of `ethos eval persistence`.
#[derive(Debug, Clone, clap::Args)]
pub struct PersistenceArgs {
    /// Two policies, A (for example the baseline) and B (for example the trait model), comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub policies: Vec<String>,
    /// The harmful condition (persona id or `jailbreak:N`); degradation = standard - harmful.
    #[arg(long, default_value = "harmful_medical")]
    pub harmful: String,
    /// The helpful condition; steering = helpful - standard (`none` to skip).
    #[arg(long, default_value = "helpful_medical")]
    pub helpful: String,
    /// Bootstrap resamples of the persistence statistics.
    #[arg(long, default_value_t = 10_000)]
    pub bootstrap: usize,
    /// Output directory: one run directory per policy and condition, and `persistence.json`.
    #[arg(long)]
    pub out: PathBuf,
    /// Suite and backend settings of the runs (`--out` is set per run).
    #[command(flatten)]
    pub run: RunSettings,
}

/// The `eval run` settings shared with `eval persistence`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunSettings {
    /// Suite: `ood`, `quick`, `capability`, or a suite TOML file.
    #[arg(long, default_value = "quick")]
    pub suite: String,
    /// Probability judge (default: the suite's).
    #[arg(long)]
    pub judge: Option<String>,
    /// Rubric judge (default: the suite's).
    #[arg(long)]
    pub rubric_judge: Option<String>,
    /// Keep only these benchmarks of the suite.
    #[arg(long, value_delimiter = ',')]
    pub benchmarks: Vec<String>,
    /// Items per benchmark (0 = the suite's sizes).
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
    /// Seed (default: the suite's).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Multiple choice by `logprob` or `generate`.
    #[arg(long, default_value = "logprob", value_parser = parse_choice_mode)]
    pub choice_mode: ChoiceMode,
    /// Items per batched policy call.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Scoring and judge calls in flight.
    #[arg(long, default_value_t = 8)]
    pub judge_concurrency: usize,
    /// Shared data directory.
    #[arg(long, env = "ETHOS_DATA_DIR", default_value = "../shared/data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
}

impl RunSettings {
    /// `eval run` arguments for one policy, condition and run directory.
    pub fn for_run(&self, policy: &str, condition: &str, out: PathBuf) -> RunArgs {
        RunArgs { policy: policy.to_string(), condition: condition.to_string(), out, settings: self.clone() }
    }
}

/// Arguments of `ethos eval list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// List the benchmarks of this suite instead of every registered benchmark.
    #[arg(long)]
    pub suite: Option<String>,
}

fn parse_choice_mode(text: &str) -> Result<ChoiceMode, String> {
    match text {
        "logprob" => Ok(ChoiceMode::Logprob),
        "generate" => Ok(ChoiceMode::Generate),
        other => Err(format!("`{other}` is not a choice mode (logprob, generate)")),
    }
}

/// `ethos eval list`: name, category, orientation, format, suite sample size and file of each benchmark.
pub fn list(args: ListArgs, printer: &Printer) -> anyhow::Result<()> {
    let entries: Vec<(String, Option<usize>, ethos_eval::ood::BenchmarkInfo)> = match &args.suite {
        Some(name) => {
            let suite = Suite::load(name)?;
            let selected = suite.select().map_err(|err| anyhow::anyhow!("{name}: {err}"))?;
            selected.into_iter().map(|s| (s.registered.info.name.clone(), Some(s.n), s.registered.info)).collect()
        }
        None => registry().into_iter().map(|r| (r.info.name.clone(), None, r.info)).collect(),
    };
    for (name, n, info) in entries {
        let size = n.map(|n| if n == 0 { "all".to_string() } else { n.to_string() }).unwrap_or_default();
        printer.data(format!(
            "{name:<62} {:<22} {:<13} {:<16} {size:>4}  {}",
            info.category,
            serde_name(&info.orientation),
            serde_name(&info.format),
            info.file
        ));
    }
    Ok(())
}

/// The serde name of a unit enum variant (`higher_better`, `multiple_choice`).
fn serde_name(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// The condition of a run: a catalog persona or an in-the-wild jailbreak row.
pub fn parse_condition(condition: &str, data_dir: &Path) -> anyhow::Result<Condition> {
    if condition == "none" {
        return Ok(Condition::Standard);
    }
    if let Some(row) = condition.strip_prefix("jailbreak:") {
        let row: usize = row.parse().with_context(|| format!("`{condition}`: expected jailbreak:<row number>"))?;
        let path = data_dir.join("jailbreak-llms-in-the-wild").join("jailbreak_prompts_2023_05_07.csv");
        let mut reader = csv::Reader::from_path(&path).with_context(|| format!("reading {}", path.display()))?;
        let headers = reader.headers().with_context(|| format!("{}: header", path.display()))?.clone();
        let column = headers
            .iter()
            .position(|h| h == "prompt")
            .ok_or_else(|| anyhow::anyhow!("{}: no `prompt` column", path.display()))?;
        let record = reader
            .records()
            .nth(row)
            .ok_or_else(|| anyhow::anyhow!("{}: no row {row}", path.display()))?
            .with_context(|| format!("{}: row {row}", path.display()))?;
        let template = record.get(column).unwrap_or_default().to_string();
        anyhow::ensure!(!template.trim().is_empty(), "{}: row {row} has an empty prompt", path.display());
        return Ok(Condition::Wrap { id: condition.to_string(), template });
    }
    let prompt = common::persona_prompt(condition)?.unwrap_or_default();
    Ok(Condition::System { id: condition.to_string(), prompt })
}

/// The benchmarks of a run: the suite's selection, filtered, loaded and subset.
fn plan(suite: &Suite, args: &RunArgs, seed: u64) -> anyhow::Result<Vec<PlannedBenchmark>> {
    let selected = suite.select().map_err(|err| anyhow::anyhow!("suite `{}`: {err}", suite.name))?;
    for name in &args.settings.benchmarks {
        anyhow::ensure!(
            selected.iter().any(|s| &s.registered.info.name == name),
            "benchmark `{name}` is not in suite `{}` (see `ethos eval list --suite {}`)",
            suite.name,
            suite.name
        );
    }
    let options = LoadOptions { samples_per_paraphrase: suite.samples_per_paraphrase, seed };
    let mut plan = Vec::new();
    for selected in selected {
        if !args.settings.benchmarks.is_empty() && !args.settings.benchmarks.contains(&selected.registered.info.name) {
            continue;
        }
        let loaded = load_benchmark(&selected.registered, &args.settings.data_dir, &options)?;
        let n = if args.settings.limit > 0 { args.settings.limit } else { selected.n };
        let items = stratified_subset(loaded.items, n, seed);
        plan.push(PlannedBenchmark { info: loaded.info, items, max_tokens: selected.max_tokens });
    }
    anyhow::ensure!(!plan.is_empty(), "no benchmarks to run");
    Ok(plan)
}

fn needs(plan: &[PlannedBenchmark], want: impl Fn(&Grading) -> bool) -> bool {
    plan.iter().any(|b| b.items.iter().any(|i| matches!(&i.task, Task::Generate(t) if want(&t.grading))))
}

/// Runs `ethos eval run`; returns the summary (also written to the run directory) for the caller to print.
pub async fn run_suite_command(args: &RunArgs, printer: &Printer) -> anyhow::Result<SuiteSummary> {
    let started = Instant::now();
    let suite = Suite::load(&args.settings.suite)?;
    let seed = args.settings.seed.unwrap_or(suite.seed);
    if !args.settings.data_dir.exists() {
        anyhow::bail!(
            "data directory {} not found (pass --data-dir or set ETHOS_DATA_DIR to the shared data directory)",
            args.settings.data_dir.display()
        );
    }
    let condition = parse_condition(&args.condition, &args.settings.data_dir)?;
    let plan = plan(&suite, args, seed)?;
    let n_items: usize = plan.iter().map(|b| b.items.len()).sum();
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;

    let policy = common::load_policy(&args.policy, &args.settings.model, printer).await?;
    let judge_spec = args.settings.judge.clone().unwrap_or_else(|| suite.judge.clone());
    let rubric_spec = args.settings.rubric_judge.clone().unwrap_or_else(|| suite.rubric_judge.clone());
    let need_probe = needs(&plan, |g| {
        matches!(g, Grading::Misalignment { .. } | Grading::StrongReject { .. } | Grading::SimpleQa { .. })
    });
    let need_rubric = needs(&plan, |g| matches!(g, Grading::Rubric { .. }));
    let judge_model: Option<LoadedModel> = match need_probe {
        false => None,
        true if judge_spec == policy.spec => Some(policy.clone()),
        true => Some(common::load_policy(&judge_spec, &args.settings.model, printer).await?),
    };
    let probe = match &judge_model {
        Some(model) => {
            let spec: ModelSpec = model.spec.parse()?;
            Some(ProbeJudge::new(model.model.clone(), ReadMode::for_spec(&spec)))
        }
        None => None,
    };
    let rubric = if need_rubric {
        let judge_args = JudgeArgs {
            judge: rubric_spec.clone(),
            judge_attempts: 3,
            judge_threshold: 0.0,
            calibration: Calibration::NullReply,
            semantic_threshold: None,
        };
        let shared = judge_model.as_ref().filter(|m| m.spec != policy.spec).unwrap_or(&policy);
        Some(judge_args.load(&args.settings.model, printer, Some(shared)).await?)
    } else {
        None
    };
    let templates = if need_probe { JudgeTemplates::load(&args.settings.data_dir)? } else { JudgeTemplates::default() };
    let min_number_mass = suite
        .judge_min_mass
        .unwrap_or_else(|| probe.as_ref().map(|j| default_min_number_mass(j.mode())).unwrap_or(0.25));
    let graders = Graders {
        judge: probe,
        rubric: rubric.as_ref().map(|r| r.judge.clone()),
        refusal: Arc::new(HeuristicRefusal),
        templates,
        min_number_mass,
    };

    let mut models: Vec<(&str, &LoadedModel)> = vec![("policy", &policy)];
    if let Some(model) = &judge_model {
        models.push(("judge", model));
    }
    if let Some(model) = rubric.as_ref().and_then(|r| r.model.as_ref()) {
        models.push(("rubric_judge", model));
    }
    let benchmarks: Vec<serde_json::Value> = plan
        .iter()
        .map(
            |b| json!({"name": b.info.name, "n_items": b.items.len(), "max_tokens": b.max_tokens, "file": b.info.file}),
        )
        .collect();
    let manifest = common::manifest(
        "eval run",
        json!({
            "suite": suite.name, "policy": args.policy, "condition": args.condition,
            "judge": need_probe.then_some(&judge_spec), "judge_read_mode": graders.judge.as_ref().map(|j| j.mode().as_str()),
            "rubric_judge": need_rubric.then_some(&rubric_spec), "refusal_classifier": "heuristic",
            "judge_min_number_mass": min_number_mass,
            "choice_mode": args.settings.choice_mode, "temperature": suite.temperature,
            "samples_per_paraphrase": suite.samples_per_paraphrase, "limit": args.settings.limit,
            "batch_size": args.settings.batch_size, "judge_concurrency": args.settings.judge_concurrency,
            "data_dir": args.settings.data_dir, "benchmarks": benchmarks,
        }),
        [("seed", seed)],
        models,
    );
    write_atomic(&args.out.join("manifest.json"), |w| {
        serde_json::to_writer_pretty(&mut *w, &manifest)?;
        Ok(())
    })?;

    let config = SuiteRunConfig {
        suite: suite.name.clone(),
        policy: args.policy.clone(),
        condition,
        choice_mode: args.settings.choice_mode,
        temperature: suite.temperature,
        seed,
        batch_size: args.settings.batch_size,
        concurrency: args.settings.judge_concurrency,
    };
    printer.status(format!(
        "suite `{}`: {} benchmarks, {n_items} items; policy {}; condition {}",
        suite.name,
        plan.len(),
        args.policy,
        args.condition
    ));
    let bar = printer.progress(n_items as u64, "eval run");
    let mut finished: BTreeMap<String, usize> = BTreeMap::new();
    let summary = run_suite(policy.model.clone(), &plan, &graders, &config, &args.out, |p: &BenchmarkProgress| {
        finished.insert(p.benchmark.clone(), p.done);
        bar.set_position(finished.values().sum::<usize>() as u64);
        bar.set_message(format!("{} {}/{}", p.benchmark, p.done, p.total));
    })
    .await?;
    bar.finish_and_clear();
    printer.status(format!(
        "{n_items} items in {:.1} s ({} resumed); run files in {}",
        started.elapsed().as_secs_f64(),
        summary.n_resumed,
        args.out.display()
    ));
    Ok(summary)
}

/// The per-benchmark table.
pub fn print_summary(summary: &SuiteSummary, printer: &Printer) {
    printer.data(format!(
        "{:<52} {:<22} {:>8} {:>8} {:>17} {:>4} {:>5} {:>8} {:>7}",
        "benchmark", "category", "raw", "score", "95% CI", "n", "unsc", "refusal", "time s"
    ));
    let fmt = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
    for b in &summary.benchmarks {
        let ci = match (b.ci_low, b.ci_high) {
            (Some(lo), Some(hi)) => format!("[{lo:.3}, {hi:.3}]"),
            _ => "-".into(),
        };
        let refusal = if b.format == Format::MultipleChoice { "-".into() } else { fmt(b.refusal_rate) };
        printer.data(format!(
            "{:<52} {:<22} {:>8} {:>8} {:>17} {:>4} {:>5} {:>8} {:>7.1}",
            b.benchmark,
            b.category,
            fmt(b.raw),
            fmt(b.score),
            ci,
            b.n,
            b.n_unscored,
            refusal,
            b.elapsed_s
        ));
    }
}

/// A directory-safe label for a policy spec (`embedded:gemma-3-270m+adapter=/x/a.safetensors` ->
/// `embedded_gemma-3-270m_adapter_x_a.safetensors`), prefixed with its position so two policies never collide.
pub fn policy_label(index: usize, spec: &str) -> String {
    let cleaned: String =
        spec.chars().map(|c| if c.is_ascii_alphanumeric() || "-.".contains(c) { c } else { '_' }).collect();
    let cleaned = cleaned.trim_matches('_');
    let tail: String = cleaned.chars().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect();
    format!("{}-{tail}", (b'a' + index as u8) as char)
}

/// Runs `ethos eval persistence`: each policy with the standard prompt and each condition, then the persistence
/// statistics (`ethos stats persistence`) on the item scores.
pub async fn persistence(args: &PersistenceArgs, printer: &Printer) -> anyhow::Result<()> {
    anyhow::ensure!(args.policies.len() == 2, "--policies takes exactly two specs, A and B");
    let mut conditions = vec!["none".to_string(), args.harmful.clone()];
    if args.helpful != "none" {
        conditions.push(args.helpful.clone());
    }
    let mut combined = Vec::new();
    for (index, policy) in args.policies.iter().enumerate() {
        let label = policy_label(index, policy);
        let mut scores: Vec<ItemScore> = Vec::new();
        for condition in &conditions {
            let out = args.out.join(&label).join(condition.replace(':', "-"));
            printer.status(format!("policy {policy}, condition {condition} -> {}", out.display()));
            let run = args.run.for_run(policy, condition, out.clone());
            run_suite_command(&run, printer).await?;
            let read = ethos_core::io::read_jsonl::<ItemScore>(
                out.join("item_scores.jsonl"),
                ethos_core::io::ReadOptions::default(),
            )?;
            scores.extend(read.records.into_iter().map(|(_, s)| s));
        }
        let path = args.out.join(&label).join("item_scores.jsonl");
        write_jsonl_atomic(&path, &scores).with_context(|| format!("writing {}", path.display()))?;
        combined.push(path);
    }
    let stats_args = crate::commands::stats::persistence::PersistenceArgs {
        a: combined[0].clone(),
        b: combined[1].clone(),
        harmful: args.harmful.clone(),
        helpful: (args.helpful != "none").then(|| args.helpful.clone()),
        standard: "none".to_string(),
        bootstrap: args.bootstrap,
        seed: args.run.seed.unwrap_or(0),
        json: false,
    };
    let output = crate::commands::stats::persistence::analyze(&stats_args, printer)?;
    let path = args.out.join("persistence.json");
    write_atomic(&path, |w| {
        serde_json::to_writer_pretty(&mut *w, &json!({"policies": args.policies, "analysis": output}))?;
        Ok(())
    })?;
    crate::commands::stats::persistence::print(&output, printer);
    printer.status(format!("persistence analysis in {}", path.display()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_labels_are_directory_safe_and_distinct() {
        let a = policy_label(0, "embedded:gemma-3-270m+adapter=/runs/x/adapter.safetensors");
        assert_eq!(a, "a-embedded_gemma-3-270m_adapter__runs_x_adapter.safetensors");
        assert_ne!(policy_label(0, "x"), policy_label(1, "x"));
        assert!(policy_label(1, &"y".repeat(300)).len() <= 62);
    }

    #[test]
    fn conditions_parse_personas_and_reject_unknown_ids() {
        let dir = Path::new("/nonexistent");
        assert_eq!(parse_condition("none", dir).ok(), Some(Condition::Standard));
        assert!(matches!(parse_condition("harmful_medical", dir), Ok(Condition::System { .. })));
        assert!(parse_condition("no_such_persona", dir).is_err());
        assert!(parse_condition("jailbreak:x", dir).is_err());
        assert!(parse_condition("jailbreak:1", dir).is_err(), "missing file is an error");
    }
}
