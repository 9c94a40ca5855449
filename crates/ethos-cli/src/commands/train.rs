//! `ethos train` (GRPO on one arm of an experiment) and `ethos finetune` (supervised LoRA
//! fine-tuning on a chat JSONL).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use candle_core::Device;
use ethos_grade::{RewardRouter, RubricGrader};
use ethos_llm::embedded::chat_format::ChatFormat;
use ethos_llm::embedded::{ensure_gemma_gguf, load_gemma};
use ethos_llm::ModelSpec;
use ethos_train::experiment::{load_source, read_experiment, LoraSettings, SourceSpec};
use ethos_train::optim::AdamWConfig;
use ethos_train::policy::Policy;
use ethos_train::sft::{load_chat_examples, SftRun, SftSettings};
use ethos_train::trainer::{GrpoRun, RunContext};

use crate::commands::common::{runtime, ModelArgs};
use crate::commands::judges::JudgeArgs;
use crate::printer::Printer;

/// `ethos train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// The experiment file (TOML).
    pub experiment: PathBuf,
    /// The arm to train.
    #[arg(long)]
    pub arm: String,
    /// Run directory (manifest, metrics.jsonl, checkpoints, the final adapter).
    #[arg(long)]
    pub out: PathBuf,
    /// Continue the run in `--out` from its latest checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many steps in total (the run can be resumed later).
    #[arg(long)]
    pub stop_after: Option<u64>,
    /// Shared benchmark data (GSM8K train for the `gsm8k` source).
    #[arg(long, env = "ETHOS_DATA_DIR", default_value = "../shared/data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub model_args: ModelArgs,
}

/// `ethos finetune`.
#[derive(Debug, clap::Args)]
pub struct FinetuneArgs {
    /// Chat JSONL: one `{"messages": [...]}` per line, the last message the assistant reply to learn.
    #[arg(long)]
    pub data: PathBuf,
    /// Run directory (manifest, metrics.jsonl, checkpoints, the final adapter).
    #[arg(long)]
    pub out: PathBuf,
    /// Starting policy: `embedded:ethos-warmstart` (the shipped warm start, continued),
    /// `embedded:gemma-3-270m` (a fresh adapter on the base model) or `embedded:gemma-3-270m+adapter=PATH`
    /// (fine-tune on top of that adapter).
    #[arg(long, default_value = ethos_llm::DEFAULT_POLICY)]
    pub policy: String,
    /// Chat format of a fresh adapter: `transcript` (turns only) or `few_shot_transcript`.
    #[arg(long, default_value = "transcript")]
    pub chat_format: String,
    /// Passes over the data.
    #[arg(long, default_value_t = 1)]
    pub epochs: u32,
    /// Replies per optimizer step.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 2e-4)]
    pub lr: f64,
    /// Skip examples longer than this many tokens (prompt + reply).
    #[arg(long, default_value_t = 512)]
    pub max_seq_tokens: usize,
    /// LoRA rank of a fresh adapter.
    #[arg(long, default_value_t = 16)]
    pub rank: usize,
    /// LoRA alpha of a fresh adapter.
    #[arg(long, default_value_t = 32.0)]
    pub alpha: f64,
    /// Adapted projections of a fresh adapter (comma-separated).
    #[arg(long, default_value = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", value_delimiter = ',')]
    pub targets: Vec<String>,
    /// Seed of the data order and of a fresh adapter.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Checkpoint every this many optimizer steps.
    #[arg(long, default_value_t = 25)]
    pub checkpoint_every: u64,
    /// Continue the run in `--out` from its latest checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many optimizer steps in total (the run can be resumed later).
    #[arg(long)]
    pub stop_after: Option<u64>,
}

/// Runs `ethos train`.
pub fn run_train(args: TrainArgs, printer: &Printer) -> anyhow::Result<()> {
    let experiment = read_experiment(&args.experiment)?;
    experiment.arm(&args.arm)?;
    let experiment_dir = args.experiment.parent().map(Path::to_path_buf).unwrap_or_default();
    let spec = resolve_policy_spec(&experiment.policy, &experiment_dir)?;
    let lora_config = experiment.lora.to_config()?;
    let runtime = runtime()?;

    printer.status(format!("loading sources of arm `{}`", args.arm));
    let arm = experiment.arm(&args.arm)?.clone();
    let mut sources = Vec::new();
    for (name, source) in &experiment.sources {
        // Only the arm's sources are loaded; the others keep probability 0 and no items.
        let items = if arm.mixture.get(name).copied().unwrap_or(0.0) > 0.0 {
            load_source(name, source, experiment.seed, &experiment_dir, &args.data_dir)
                .with_context(|| format!("loading source `{name}`"))?
        } else {
            Vec::new()
        };
        sources.push((name.clone(), items));
    }
    let needs_judge = arm.mixture.iter().any(|(name, probability)| {
        *probability > 0.0 && matches!(experiment.sources.get(name), Some(SourceSpec::TraitScenarios { .. }))
    });
    let (router, judge_identity) = if needs_judge {
        let judge_args = JudgeArgs {
            judge: experiment.judge.clone(),
            judge_attempts: 3,
            judge_threshold: 0.0,
            calibration: ethos_grade::logprob_judge::Calibration::NullReply,
            semantic_threshold: None,
        };
        printer.status(format!("loading the reward judge `{}`", experiment.judge));
        let loaded = runtime.block_on(judge_args.load(&args.model_args, printer, None))?;
        let identity = loaded.judge.identity();
        (RewardRouter::new(Some(RubricGrader::new(loaded.judge, 16, 2))), Some(identity))
    } else {
        (RewardRouter::new(None), None)
    };

    printer.status("loading the policy (dequantizing the GGUF to f32) and the sampler");
    let policy = Policy::load(&spec, &lora_config, ChatFormat::FewShotTranscript, experiment.seed, &Device::Cpu)?;
    let (inference, tokenizer) = load_gemma(&ensure_gemma_gguf()?)?;
    let context = RunContext {
        git_revision: env!("ETHOS_GIT_REVISION").to_string(),
        judge: judge_identity,
        data_dir: args.data_dir.display().to_string(),
    };
    let total_steps = experiment.training.steps;
    let mut run = GrpoRun::prepare(
        experiment,
        &args.arm,
        policy,
        inference,
        tokenizer,
        sources,
        router,
        &args.out,
        args.resume,
        context,
    )?;
    for source in run.sources() {
        printer.status(format!(
            "source {}: p = {}, {} prompts ({} dropped as too long)",
            source.name,
            source.probability,
            source.items.len(),
            source.n_dropped
        ));
    }
    if args.resume {
        printer.status(format!("resuming after step {}", run.steps_done()));
    }
    runtime.block_on(run.train(args.stop_after, |record| {
        let per_source: Vec<String> = record
            .sources
            .iter()
            .map(|(name, stats)| format!("{name} {}", stats.reward_mean.map_or("-".to_string(), |m| format!("{m:.3}"))))
            .collect();
        printer.status(format!(
            "step {}/{total_steps}: reward {} ({}), kl {:.4}, entropy {:.3}, {:.0} tokens/reply, {:.1} s",
            record.step,
            record.reward_mean.map_or("-".to_string(), |m| format!("{m:.3}")),
            per_source.join(", "),
            record.kl,
            record.entropy,
            record.reply_tokens_mean,
            record.seconds_sampling + record.seconds_reward + record.seconds_training
        ));
    }))?;
    printer.data(format!("{}", args.out.display()));
    Ok(())
}

/// Runs `ethos finetune`.
pub fn run_finetune(args: FinetuneArgs, printer: &Printer) -> anyhow::Result<()> {
    let spec: ModelSpec = args.policy.parse()?;
    let chat_format: ChatFormat = args.chat_format.parse().map_err(|err| anyhow::anyhow!("--chat-format: {err}"))?;
    let lora_config = LoraSettings { rank: args.rank, alpha: args.alpha, targets: args.targets.clone() }.to_config()?;
    printer.status("loading the policy (dequantizing the GGUF to f32)");
    let policy = Policy::load(&spec, &lora_config, chat_format, args.seed, &Device::Cpu)?;
    let (_, tokenizer) = load_gemma(policy.gguf_path())?;
    let (examples, n_dropped) = load_chat_examples(&args.data, &policy, &tokenizer, args.max_seq_tokens)?;
    printer.status(format!(
        "{} examples ({n_dropped} longer than {} tokens dropped)",
        examples.len(),
        args.max_seq_tokens
    ));
    let settings = SftSettings {
        epochs: args.epochs,
        batch_size: args.batch_size,
        max_seq_tokens: args.max_seq_tokens,
        max_grad_norm: 1.0,
        checkpoint_every: args.checkpoint_every,
        seed: args.seed,
        optimizer: AdamWConfig { lr: args.lr, ..AdamWConfig::default() },
    };
    let data_digest = ethos_llm::embedded::fetch::file_sha256(&args.data)?;
    let extra = serde_json::json!({
        "data": { "path": args.data.display().to_string(), "sha256": data_digest },
        "git_revision": env!("ETHOS_GIT_REVISION"),
    });
    let mut run = SftRun::prepare(policy, examples, settings, &args.out, args.resume, extra)?;
    let provenance = BTreeMap::from([
        ("ethos.data_sha256".to_string(), data_digest),
        ("ethos.seed".to_string(), args.seed.to_string()),
        ("ethos.git_revision".to_string(), env!("ETHOS_GIT_REVISION").to_string()),
    ]);
    run.train(args.stop_after, provenance, |record, total| {
        printer.status(format!(
            "step {}/{total} (epoch {}): loss {:.4}, {} tokens, grad norm {:.3}, {:.1} s",
            record.step, record.epoch, record.loss, record.target_tokens, record.grad_norm, record.seconds
        ));
    })?;
    printer.data(format!("{}", args.out.display()));
    Ok(())
}

/// Parses a policy spec from an experiment file, resolving a relative adapter path against the
/// file's directory.
fn resolve_policy_spec(text: &str, base_dir: &Path) -> anyhow::Result<ModelSpec> {
    let spec: ModelSpec = text.parse()?;
    Ok(match spec {
        ModelSpec::Embedded { model, adapter: Some(path) } if path.is_relative() => {
            ModelSpec::Embedded { model, adapter: Some(base_dir.join(path)) }
        }
        other => other,
    })
}
