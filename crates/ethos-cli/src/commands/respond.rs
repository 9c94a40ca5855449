//! `ethos respond`: a policy replies to every conversation of a JSONL file, through the request cache, so a
//! rerun makes no model calls and a killed run resumes where it stopped.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use ethos_core::io::{read_jsonl, write_atomic, write_jsonl_atomic, ReadOptions};
use ethos_core::records::{ConversationRecord, Message, Role, Sample};
use ethos_core::{RecordError, RecordErrorKind};
use ethos_llm::{ChatRequest, SamplingParams};

use crate::commands::common::{self, ModelArgs};
use crate::printer::Printer;

/// Arguments of `ethos respond`.
#[derive(Debug, clap::Args)]
pub struct RespondArgs {
    /// Model spec of the policy (`embedded:gemma-3-270m`, `openai:BASE_URL#MODEL`).
    #[arg(long, default_value = ethos_llm::DEFAULT_POLICY)]
    policy: String,
    /// JSONL file of `{"id", "conversation": [{"role", "content"}]}` records.
    #[arg(long)]
    input: PathBuf,
    /// Output JSONL of Sample records (written atomically when all replies are in).
    #[arg(long)]
    out: PathBuf,
    /// Replies per conversation.
    #[arg(long, default_value_t = 1)]
    n: u32,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.7)]
    temperature: f32,
    /// Nucleus sampling mass.
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Token budget per reply.
    #[arg(long, default_value_t = 200)]
    max_tokens: u32,
    /// Base seed; each item's seed is derived from it and the item id, so results do not depend on order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Persona condition from the catalog (`ethos catalog`), prepended as a system prompt; `none` for none.
    #[arg(long, default_value = "none")]
    condition: String,
    /// Conversations per batched model call.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Skip malformed input lines (they are counted and reported) instead of failing.
    #[arg(long)]
    skip_invalid: bool,
    #[command(flatten)]
    model: ModelArgs,
}

/// Runs `ethos respond`.
pub fn run(args: RespondArgs, printer: &Printer) -> anyhow::Result<()> {
    let outcome = read_jsonl::<ConversationRecord>(
        &args.input,
        ReadOptions { skip_invalid: args.skip_invalid, allow_empty: false },
    )?;
    for skipped in &outcome.skipped {
        printer.status(format!("warning: skipped {skipped}"));
    }
    let mut seen = HashSet::new();
    for (line, record) in &outcome.records {
        if !seen.insert(record.id.as_str()) {
            let message = format!("duplicate id `{}`", record.id);
            let field = Some("id".to_string());
            return Err(RecordError::at_line(RecordErrorKind::Duplicate, &args.input, *line, field, message).into());
        }
        if record.conversation.last().map(|m| m.role) != Some(Role::User) {
            let message = "must end with a user turn for the policy to reply to";
            let field = Some("conversation".to_string());
            return Err(RecordError::at_line(RecordErrorKind::InvalidValue, &args.input, *line, field, message).into());
        }
    }
    let persona = common::persona_prompt(&args.condition)?;
    if args.batch_size == 0 {
        anyhow::bail!("--batch-size must be at least 1");
    }

    let runtime = common::runtime()?;
    let loaded = runtime.block_on(common::load_policy(&args.policy, &args.model, printer))?;
    let requests: Vec<ChatRequest> = outcome
        .records
        .iter()
        .map(|(_, record)| {
            let mut messages = Vec::with_capacity(record.conversation.len() + 1);
            if let Some(prompt) = &persona {
                messages.push(Message::system(prompt.clone()));
            }
            messages.extend(record.conversation.iter().cloned());
            ChatRequest {
                messages,
                sampling: SamplingParams {
                    n: args.n,
                    temperature: args.temperature,
                    top_p: args.top_p,
                    max_tokens: args.max_tokens,
                    stop: Vec::new(),
                    seed: common::item_seed(args.seed, &record.id),
                    top_logprobs: None,
                },
            }
        })
        .collect();

    let bar = printer.progress(requests.len() as u64, "respond");
    let mut samples = Vec::with_capacity(requests.len() * args.n as usize);
    // Finished samples are also appended to `<out>.partial` batch by batch, so progress is visible on disk while
    // the run goes; the request cache, not this file, is what makes a rerun after a kill free.
    let partial_path = partial_path(&args.out);
    let mut partial = std::fs::File::create(&partial_path)
        .map(std::io::BufWriter::new)
        .with_context(|| format!("creating {}", partial_path.display()))?;
    for (chunk_idx, chunk) in requests.chunks(args.batch_size).enumerate() {
        let chunk_start = samples.len();
        let results = runtime.block_on(loaded.model.chat_batch(chunk));
        for (offset, result) in results.into_iter().enumerate() {
            let item_idx = chunk_idx * args.batch_size + offset;
            let (line, record) = &outcome.records[item_idx];
            let response = result.with_context(|| format!("{}:{line}: item `{}`", args.input.display(), record.id))?;
            for (sample_index, generation) in response.choices.into_iter().enumerate() {
                samples.push(Sample {
                    schema_version: ethos_core::SCHEMA_VERSION,
                    id: format!("{}:{}:{sample_index}", record.id, args.condition),
                    item_id: record.id.clone(),
                    sample_index: sample_index as u32,
                    policy: args.policy.clone(),
                    condition: args.condition.clone(),
                    reply: generation.text,
                    reasoning: None,
                    n_tokens: generation.n_tokens,
                    finish_reason: generation.finish_reason,
                });
            }
            bar.inc(1);
        }
        for sample in &samples[chunk_start..] {
            serde_json::to_writer(&mut partial, sample)?;
            partial.write_all(b"\n")?;
        }
        partial.flush()?;
    }
    bar.finish_and_clear();
    drop(partial);

    write_jsonl_atomic(&args.out, &samples).with_context(|| format!("writing {}", args.out.display()))?;
    let manifest = common::manifest(
        "respond",
        serde_json::json!({
            "input": args.input, "out": args.out, "n": args.n, "temperature": args.temperature,
            "top_p": args.top_p, "max_tokens": args.max_tokens, "condition": args.condition,
            "batch_size": args.batch_size, "skipped_invalid": outcome.skipped.len(),
        }),
        [("seed", args.seed)],
        [("policy", &loaded)],
    );
    let manifest_path = common::sidecar_manifest_path(&args.out);
    write_atomic(&manifest_path, |writer| {
        serde_json::to_writer_pretty(&mut *writer, &manifest)?;
        writer.write_all(b"\n")
    })
    .with_context(|| format!("writing {}", manifest_path.display()))?;
    let _ = std::fs::remove_file(&partial_path);
    let stats = loaded.cache_stats();
    printer.status(format!(
        "wrote {} samples for {} conversations to {} (model calls: {}, cache hits: {}, skipped invalid lines: {})",
        samples.len(),
        outcome.records.len(),
        args.out.display(),
        stats.misses,
        stats.hits,
        outcome.skipped.len()
    ));
    Ok(())
}

/// `samples.jsonl` -> `samples.jsonl.partial`.
fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    out.with_file_name(name)
}
