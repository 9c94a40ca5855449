//! `ethos bench`: throughput of ethos components.
//!
//! `ethos bench generate` measures the embedded Gemma-3-270M: prefill and decode tokens/s of raw
//! forward passes for each batch size, plus end-to-end sampling of `n` replies to one prompt (the
//! RL case: one prefill, the cache copied to every reply, replies decoded together).
//!
//! With `--json` the result is one JSON object on stdout:
//! `{"threads", "prompt_tokens", "decode_steps", "runs": [{"batch", "prefill_tokens_per_s",
//! "decode_tokens_per_s"}], "sampling": {"replies", "generated_tokens", "seconds", "tokens_per_s"}}`.

use std::time::Instant;

use anyhow::Context;
use ethos_llm::embedded::fetch::ensure_gemma_gguf;
use ethos_llm::embedded::gemma3::{Gemma3, KvCache, LogitRows, Segment};
use ethos_llm::embedded::generate::{self, GenerationJob, StopTokens};
use ethos_llm::embedded::GemmaTokenizer;
use ethos_llm::SamplingParams;
use serde::Serialize;

use crate::printer::Printer;

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Prefill and decode tokens/s of the embedded model.
    Generate(GenerateArgs),
    /// Seconds per phase and tokens/s of one GRPO step (sampling, reference, policy forward + backward, AdamW).
    Grpo(GrpoArgs),
    /// Items/s of `ethos eval run`'s judge pipeline against an instant local mock server, next to a bare async client.
    Judge(super::bench_judge::JudgeArgs),
}

#[derive(Debug, clap::Args)]
pub struct GrpoArgs {
    /// Compute threads (sets CANDLE_NUM_THREADS and RAYON_NUM_THREADS before the first kernel runs).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Replies per prompt (G).
    #[arg(long, default_value_t = 8)]
    group: u32,
    /// Prompt tokens.
    #[arg(long, default_value_t = 128)]
    prompt_len: usize,
    /// Tokens per reply (every reply has exactly this many).
    #[arg(long, default_value_t = 128)]
    reply_len: u32,
    /// LoRA rank (alpha = 2 x rank, all seven projections, as the peer script's defaults).
    #[arg(long, default_value_t = 16)]
    rank: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
}

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Compute threads (sets CANDLE_NUM_THREADS before the first kernel runs).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Batch sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    batch: Vec<usize>,
    /// Prompt length in tokens.
    #[arg(long, default_value_t = 128)]
    prompt_tokens: usize,
    /// Decode steps per batch.
    #[arg(long, default_value_t = 64)]
    decode_steps: usize,
    /// Replies sampled together in the end-to-end run (0 skips it).
    #[arg(long, default_value_t = 8)]
    replies: u32,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    threads: usize,
    prompt_tokens: usize,
    decode_steps: usize,
    runs: Vec<Run>,
    sampling: Option<SamplingRun>,
}

#[derive(Debug, Serialize)]
struct Run {
    batch: usize,
    prefill_tokens_per_s: f64,
    decode_tokens_per_s: f64,
}

#[derive(Debug, Serialize)]
struct SamplingRun {
    replies: u32,
    generated_tokens: u64,
    seconds: f64,
    tokens_per_s: f64,
}

const PROMPT_TEXT: &str = "The history of the city is long and varied. Merchants arrived by river, farmers brought \
    grain from the hills, and the market square grew into the heart of the town. ";

pub fn run(command: BenchCommand, printer: &Printer) -> anyhow::Result<()> {
    match command {
        BenchCommand::Generate(args) => generate_bench(args, printer),
        BenchCommand::Grpo(args) => grpo_bench(args, printer),
        BenchCommand::Judge(args) => super::bench_judge::run(args, printer),
    }
}

fn grpo_bench(args: GrpoArgs, printer: &Printer) -> anyhow::Result<()> {
    use ethos_llm::embedded::lora::{LoraConfig, LoraTarget};
    use ethos_train::bench::{time_grpo_steps, StepShape};

    anyhow::ensure!(
        args.threads > 0 && args.group > 0 && args.prompt_len > 1 && args.reply_len > 0,
        "sizes must be positive"
    );
    anyhow::ensure!(args.repeats > 0, "--repeats must be at least 1");
    std::env::set_var("CANDLE_NUM_THREADS", args.threads.to_string());
    std::env::set_var("RAYON_NUM_THREADS", args.threads.to_string());
    let lora = LoraConfig { rank: args.rank, alpha: 2.0 * args.rank as f64, targets: LoraTarget::ALL.to_vec() };
    let spec: ethos_llm::ModelSpec = "embedded:gemma-3-270m".parse()?;
    printer.status("loading the trainable model and the sampler");
    let policy = ethos_train::policy::Policy::load(
        &spec,
        &lora,
        ethos_llm::embedded::chat_format::ChatFormat::Transcript,
        0,
        &candle_core::Device::Cpu,
    )?;
    let (mut inference, tokenizer) = ethos_llm::embedded::load_gemma(policy.gguf_path())?;
    let shape = StepShape { group: args.group, prompt_len: args.prompt_len, reply_len: args.reply_len };
    let timings = time_grpo_steps(&policy, &mut inference, &tokenizer, &shape, args.warmup, args.repeats)?;
    let median = |pick: fn(&ethos_train::bench::StepTiming) -> f64| {
        let mut values: Vec<f64> = timings.iter().map(pick).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let report = serde_json::json!({
        "implementation": "ethos (candle, fused LoRA kernels)",
        "threads": args.threads,
        "shape": shape,
        "lora": { "rank": args.rank, "alpha": 2.0 * args.rank as f64, "targets": "all 7 projections" },
        "median_seconds": {
            "sampling": median(|t| t.sampling),
            "reference": median(|t| t.reference),
            "policy_forward_backward": median(|t| t.policy_forward_backward),
            "optimizer": median(|t| t.optimizer),
            "total": median(|t| t.total),
        },
        "median_tokens_per_second": median(|t| t.tokens_per_second),
        "steps": timings,
    });
    printer.data(serde_json::to_string(&report)?);
    Ok(())
}

fn generate_bench(args: GenerateArgs, printer: &Printer) -> anyhow::Result<()> {
    anyhow::ensure!(args.threads > 0, "--threads must be at least 1");
    anyhow::ensure!(args.prompt_tokens > 0, "--prompt-tokens must be at least 1");
    // candle sizes its worker pool from this variable when the first kernel runs, which is below.
    std::env::set_var("CANDLE_NUM_THREADS", args.threads.to_string());

    let path = ensure_gemma_gguf().context("finding the Gemma GGUF file")?;
    printer.status(format!("loading {}", path.display()));
    let (model, content) = Gemma3::load(&path).context("loading the model")?;
    let tokenizer = GemmaTokenizer::from_gguf(&content).context("loading the tokenizer")?;
    let mut prompt = vec![tokenizer.bos_id()];
    let chunk = tokenizer.encode(PROMPT_TEXT, false).context("tokenizing the prompt")?;
    anyhow::ensure!(!chunk.is_empty(), "the benchmark prompt tokenized to nothing");
    while prompt.len() < args.prompt_tokens {
        prompt.extend_from_slice(&chunk);
    }
    prompt.truncate(args.prompt_tokens);

    // One untimed pass packs candle's repacked weights and warms the caches.
    let mut warm_cache = KvCache::new(model.config());
    model.forward(&mut [Segment {
        cache: &mut warm_cache,
        tokens: &prompt[..8.min(prompt.len())],
        logits: LogitRows::Last,
    }])?;

    let mut runs = Vec::new();
    for &batch in &args.batch {
        anyhow::ensure!(batch > 0, "batch sizes must be at least 1");
        printer.status(format!(
            "batch {batch}: prefill {} tokens, decode {} steps",
            args.prompt_tokens, args.decode_steps
        ));
        runs.push(forward_run(&model, &prompt, batch, args.decode_steps)?);
    }

    let sampling = if args.replies > 0 {
        printer.status(format!("sampling {} replies of up to {} tokens", args.replies, args.decode_steps));
        let job = GenerationJob {
            prompt_ids: prompt.clone(),
            sampling: SamplingParams {
                n: args.replies,
                temperature: 1.0,
                top_p: 0.95,
                max_tokens: args.decode_steps as u32,
                stop: Vec::new(),
                seed: 0,
                top_logprobs: None,
            },
        };
        let stop_tokens = StopTokens::from_tokenizer(&tokenizer);
        let start = Instant::now();
        let generations = generate::generate(&model, &tokenizer, &stop_tokens, &[job], args.replies as usize)?;
        let seconds = start.elapsed().as_secs_f64();
        let generated_tokens: u64 = generations.iter().flatten().map(|generation| generation.n_tokens as u64).sum();
        Some(SamplingRun {
            replies: args.replies,
            generated_tokens,
            seconds,
            tokens_per_s: generated_tokens as f64 / seconds,
        })
    } else {
        None
    };

    let report = Report {
        threads: args.threads,
        prompt_tokens: args.prompt_tokens,
        decode_steps: args.decode_steps,
        runs,
        sampling,
    };
    if args.json {
        return printer.json(&report);
    }
    printer.data(format!(
        "threads {}  prompt {} tokens  decode {} steps",
        report.threads, report.prompt_tokens, report.decode_steps
    ));
    printer.data(format!("{:>6} {:>16} {:>16}", "batch", "prefill tok/s", "decode tok/s"));
    for run in &report.runs {
        printer.data(format!("{:>6} {:>16.1} {:>16.1}", run.batch, run.prefill_tokens_per_s, run.decode_tokens_per_s));
    }
    if let Some(sampling) = &report.sampling {
        printer.data(format!(
            "sampling {} replies (prefill + decode): {} tokens in {:.2} s = {:.1} tok/s",
            sampling.replies, sampling.generated_tokens, sampling.seconds, sampling.tokens_per_s
        ));
    }
    Ok(())
}

/// Prefills `batch` copies of the prompt in one forward pass, then decodes `decode_steps` greedy
/// steps for all of them together.
fn forward_run(model: &Gemma3, prompt: &[u32], batch: usize, decode_steps: usize) -> anyhow::Result<Run> {
    let mut caches: Vec<KvCache> = (0..batch).map(|_| KvCache::new(model.config())).collect();
    let start = Instant::now();
    let mut segments: Vec<Segment<'_>> =
        caches.iter_mut().map(|cache| Segment { cache, tokens: prompt, logits: LogitRows::Last }).collect();
    let logits = model.forward(&mut segments)?;
    let prefill_seconds = start.elapsed().as_secs_f64();
    let mut next: Vec<[u32; 1]> = (0..batch)
        .map(|idx| logits.row(idx, 0).map(|row| [generate::sample(row, 0.0, 1.0, &mut generate::reply_rng(0, 0))]))
        .collect::<Option<_>>()
        .context("prefill returned no logits")?;

    let start = Instant::now();
    for _ in 0..decode_steps {
        let mut segments: Vec<Segment<'_>> = caches
            .iter_mut()
            .zip(&next)
            .map(|(cache, token)| Segment { cache, tokens: token, logits: LogitRows::Last })
            .collect();
        let logits = model.forward(&mut segments)?;
        next = (0..batch)
            .map(|idx| logits.row(idx, 0).map(|row| [generate::sample(row, 0.0, 1.0, &mut generate::reply_rng(0, 0))]))
            .collect::<Option<_>>()
            .context("decode returned no logits")?;
    }
    let decode_seconds = start.elapsed().as_secs_f64();
    Ok(Run {
        batch,
        prefill_tokens_per_s: (batch * prompt.len()) as f64 / prefill_seconds,
        decode_tokens_per_s: (batch * decode_steps) as f64 / decode_seconds.max(f64::EPSILON),
    })
}
