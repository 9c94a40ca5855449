//! `ethos demo`: the study in miniature on the embedded default, end to end.
//!
//! For each policy (the bare base model and the shipped warm start, plus the baseline- and trait-arm adapters of a
//! miniature training run when `--arms DIR` holds them): the held-out trait suite (a few scenarios per trait), the
//! `quick` out-of-distribution suite, and the persistence protocol on its persona-sensitive benchmarks (standard vs
//! harmful vs helpful medical persona) for the first two policies; then the HTML report of every run. Every step is
//! a resumable run directory under `--out`, so an interrupted demo continues where it stopped.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Parser;

use crate::commands::common::ModelArgs;
use crate::commands::ood::{self, RunSettings};
use crate::printer::Printer;

/// Arguments of `ethos demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Policies to evaluate (comma-separated specs); the first two are compared for persistence.
    #[arg(long, value_delimiter = ',', default_value = "embedded:gemma-3-270m,embedded:ethos-warmstart")]
    policies: Vec<String>,
    /// A directory of miniature training runs: `baseline/adapter.safetensors` and `trait/adapter.safetensors`
    /// there are added as policies when present.
    #[arg(long, default_value = "runs/miniature")]
    arms: PathBuf,
    /// Held-out trait scenarios per trait.
    #[arg(long, default_value_t = 2)]
    per_trait: usize,
    /// OOD suite.
    #[arg(long, default_value = "quick")]
    suite: String,
    /// Benchmarks of the persistence protocol (a subset of the suite that a medical persona can move).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "healthbench_hard,em_first_plot,simplesafetytests,xstest_unsafe,aar_human_corrigible_neutral_hhh"
    )]
    persistence_benchmarks: Vec<String>,
    /// Skip the persistence protocol.
    #[arg(long)]
    no_persistence: bool,
    /// Seed of every step.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Shared data directory.
    #[arg(long, env = "ETHOS_DATA_DIR", default_value = "../shared/data")]
    data_dir: PathBuf,
    /// Output directory (run directories and `report/`).
    #[arg(long, default_value = "runs/demo")]
    out: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
}

/// Parses subcommand arguments from an argv, so the demo drives the exact code paths of `ethos eval`.
#[derive(Debug, Parser)]
struct Argv<T: clap::Args> {
    #[command(flatten)]
    inner: T,
}

fn parse<T: clap::Args>(argv: Vec<String>) -> anyhow::Result<T> {
    let mut full = vec!["ethos".to_string()];
    full.extend(argv);
    Ok(Argv::<T>::try_parse_from(full).context("demo: building step arguments")?.inner)
}

fn path_arg(path: &Path) -> String {
    path.display().to_string()
}

/// Runs `ethos demo`.
pub fn run(args: DemoArgs, printer: &Printer) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut policies = args.policies.clone();
    for arm in ["baseline", "trait"] {
        let adapter = args.arms.join(arm).join("adapter.safetensors");
        if adapter.exists() {
            policies.push(format!("embedded:gemma-3-270m+adapter={}", adapter.display()));
        }
    }
    anyhow::ensure!(!policies.is_empty(), "no policies");
    let runtime = crate::commands::common::runtime()?;
    let mut run_dirs: Vec<PathBuf> = Vec::new();
    let mut timings: Vec<(String, f64)> = Vec::new();
    let settings = RunSettings {
        suite: args.suite.clone(),
        judge: None,
        rubric_judge: None,
        benchmarks: Vec::new(),
        limit: 0,
        seed: Some(args.seed),
        choice_mode: ethos_eval::ood::run::ChoiceMode::Logprob,
        batch_size: 8,
        judge_concurrency: 8,
        data_dir: args.data_dir.clone(),
        model: args.model.clone(),
    };
    for (index, policy) in policies.iter().enumerate() {
        let label = ood::policy_label(index, policy);
        let step = Instant::now();
        printer.status(format!("== [{}/{}] {policy}: held-out trait suite", index + 1, policies.len()));
        let traits_dir = args.out.join(&label).join("traits");
        let traits_args: crate::commands::eval::TraitsArgs = parse(vec![
            "--policy".into(),
            policy.clone(),
            "--per-trait".into(),
            args.per_trait.to_string(),
            "--seed".into(),
            args.seed.to_string(),
            "--max-tokens".into(),
            "128".into(),
            "--out".into(),
            path_arg(&traits_dir),
        ])?;
        runtime.block_on(crate::commands::eval::traits(traits_args, printer))?;
        run_dirs.push(traits_dir);
        printer.status(format!("== [{}/{}] {policy}: `{}` OOD suite", index + 1, policies.len(), args.suite));
        let suite_dir = args.out.join(&label).join(&args.suite);
        let summary =
            runtime.block_on(ood::run_suite_command(&settings.for_run(policy, "none", suite_dir.clone()), printer))?;
        ood::print_summary(&summary, printer);
        run_dirs.push(suite_dir);
        timings.push((policy.clone(), step.elapsed().as_secs_f64()));
    }
    if !args.no_persistence && policies.len() >= 2 {
        let step = Instant::now();
        printer.status(format!("== persistence: {} vs {} under medical personas", policies[0], policies[1]));
        let persistence_out = args.out.join("persistence");
        let persistence = ood::PersistenceArgs {
            policies: policies[..2].to_vec(),
            harmful: "harmful_medical".into(),
            helpful: "helpful_medical".into(),
            bootstrap: 10_000,
            out: persistence_out.clone(),
            run: RunSettings { benchmarks: args.persistence_benchmarks.clone(), ..settings.clone() },
        };
        runtime.block_on(ood::persistence(&persistence, printer))?;
        for (index, policy) in policies.iter().take(2).enumerate() {
            let label = ood::policy_label(index, policy);
            for condition in ["harmful_medical", "helpful_medical"] {
                run_dirs.push(persistence_out.join(&label).join(condition));
            }
        }
        timings.push(("persistence".into(), step.elapsed().as_secs_f64()));
    }
    let report_dir = args.out.join("report");
    let report = ethos_report::build_report(&run_dirs, &ethos_report::ReportConfig::default())?;
    let written = ethos_report::write_report(&report, &report_dir)?;
    for (step, seconds) in &timings {
        printer.status(format!("{seconds:>8.1} s  {step}"));
    }
    printer.status(format!(
        "demo finished in {:.1} s; report: {} ({} files)",
        started.elapsed().as_secs_f64(),
        report_dir.join("index.html").display(),
        written.len()
    ));
    Ok(())
}
