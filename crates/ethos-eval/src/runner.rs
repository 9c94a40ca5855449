//! Runs a policy over capability items: batched replies, scoring, resumable progress, run files.
//!
//! Run directory (the caller writes `manifest.json`): while running, every finished batch is appended
//! to `progress.jsonl` (one `{sample, outcome}` per line, flushed), so a killed run resumes without
//! redoing finished items; at the end `samples.jsonl`, `outcomes.jsonl`, `item_scores.jsonl` and
//! `summary.json` are written atomically and the progress file is removed. A rerun in the same
//! directory (say with a larger `limit`) reuses the finished items of those files; a directory holding
//! another policy's replies is refused.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use ethos_core::io::{read_jsonl, write_atomic, write_jsonl_atomic, ReadOptions};
use ethos_core::records::{FinishReason, ItemScore, Message, Sample, SCHEMA_VERSION};
use ethos_llm::{ChatModel, ChatRequest, SamplingParams};
use serde::{Deserialize, Serialize};

use crate::capability::{
    item_scores, score_reply, summarize, CapabilityBenchmark, CapabilityItem, CapabilityOutcome, CapabilitySummary,
};
use crate::EvalError;

/// Settings of a capability run.
#[derive(Debug, Clone)]
pub struct CapabilityRunConfig {
    /// The policy's spec, as recorded in samples and item scores.
    pub policy: String,
    /// Persona condition id (`None`: the standard prompt).
    pub condition: Option<String>,
    /// The condition's system prompt.
    pub system_prompt: Option<String>,
    /// Reply budget in tokens.
    pub max_tokens: u32,
    /// Items per policy call.
    pub batch_size: usize,
    /// Seed of sampling (decoding is greedy; kept for backends that sample anyway) and of the CIs.
    pub seed: u64,
}

/// One finished item in `progress.jsonl`.
#[derive(Debug, Serialize, Deserialize)]
struct Progress {
    sample: Sample,
    outcome: CapabilityOutcome,
}

/// One line of `outcomes.jsonl`.
#[derive(Debug, Serialize, Deserialize)]
struct FinishedItem {
    item: String,
    outcome: CapabilityOutcome,
}

/// A finished run.
#[derive(Debug)]
pub struct CapabilityRun {
    /// Accuracies with CIs.
    pub summary: CapabilitySummary,
    /// Items taken from an earlier, interrupted run.
    pub n_resumed: usize,
    /// Replies cut off by the token budget.
    pub n_truncated: usize,
}

/// Replies to every item not already in `out/progress.jsonl`, scores, and writes the run files.
/// `on_progress` gets the number of finished items after each batch.
pub async fn run_capability(
    model: &dyn ChatModel,
    benchmark: CapabilityBenchmark,
    items: &[CapabilityItem],
    config: &CapabilityRunConfig,
    out: &Path,
    mut on_progress: impl FnMut(usize),
) -> Result<CapabilityRun, EvalError> {
    if config.batch_size == 0 {
        return Err(EvalError::Run("the batch size must be positive".to_string()));
    }
    let io_error = |path: &Path| {
        let path = path.display().to_string();
        move |source| EvalError::Io { path: path.clone(), source }
    };
    std::fs::create_dir_all(out).map_err(io_error(out))?;
    let progress_path = out.join("progress.jsonl");
    let mut done: HashMap<String, Progress> = HashMap::new();
    // Items of an earlier finished run (its final files), then of an interrupted one (its progress file).
    let samples_path = out.join("samples.jsonl");
    let outcomes_path = out.join("outcomes.jsonl");
    if samples_path.exists() && outcomes_path.exists() {
        let read_error = |err: ethos_core::RecordError| EvalError::Run(err.to_string());
        let samples = read_jsonl::<Sample>(&samples_path, ReadOptions::default()).map_err(read_error)?;
        let outcomes = read_jsonl::<FinishedItem>(&outcomes_path, ReadOptions::default()).map_err(read_error)?;
        let mut by_item: HashMap<String, CapabilityOutcome> =
            outcomes.records.into_iter().map(|(_, finished)| (finished.item, finished.outcome)).collect();
        for (_, sample) in samples.records {
            if let Some(outcome) = by_item.remove(&sample.item_id) {
                done.insert(sample.item_id.clone(), Progress { sample, outcome });
            }
        }
    }
    if progress_path.exists() {
        // A kill mid-write leaves at most one torn last line: skip it, the item is redone.
        let outcome = read_jsonl::<Progress>(&progress_path, ReadOptions { skip_invalid: true, allow_empty: true })
            .map_err(|err| EvalError::Run(err.to_string()))?;
        for (_, progress) in outcome.records {
            done.insert(progress.sample.item_id.clone(), progress);
        }
    }
    let condition = config.condition.clone().unwrap_or_else(|| "none".to_string());
    if let Some(other) = done.values().find(|p| p.sample.policy != config.policy || p.sample.condition != condition) {
        return Err(EvalError::Run(format!(
            "{} holds replies of policy `{}` under condition `{}`, not `{}` under `{condition}`: use another --out",
            out.display(),
            other.sample.policy,
            other.sample.condition,
            config.policy
        )));
    }
    let n_resumed = items.iter().filter(|item| done.contains_key(&item.id)).count();
    on_progress(n_resumed);
    let mut progress_file =
        std::fs::OpenOptions::new().create(true).append(true).open(&progress_path).map_err(io_error(&progress_path))?;
    let todo: Vec<&CapabilityItem> = items.iter().filter(|item| !done.contains_key(&item.id)).collect();
    let mut finished = n_resumed;
    for batch in todo.chunks(config.batch_size) {
        let requests: Vec<ChatRequest> = batch
            .iter()
            .map(|item| {
                let mut messages = Vec::with_capacity(2);
                if let Some(system) = &config.system_prompt {
                    messages.push(Message::system(system.clone()));
                }
                messages.push(Message::user(item.prompt.clone()));
                ChatRequest {
                    messages,
                    sampling: SamplingParams {
                        n: 1,
                        temperature: 0.0,
                        top_p: 1.0,
                        max_tokens: config.max_tokens,
                        seed: config.seed,
                        ..SamplingParams::default()
                    },
                }
            })
            .collect();
        let responses = model.chat_batch(&requests).await;
        for (item, response) in batch.iter().zip(responses) {
            let response =
                response.map_err(|err| EvalError::Run(format!("policy failed on item {}: {err}", item.id)))?;
            let generation = response
                .choices
                .into_iter()
                .next()
                .ok_or_else(|| EvalError::Run(format!("policy returned no reply for item {}", item.id)))?;
            let outcome = score_reply(item, &generation.text)?;
            let sample = Sample {
                schema_version: SCHEMA_VERSION,
                id: format!("{}:{condition}:0", item.id),
                item_id: item.id.clone(),
                sample_index: 0,
                policy: config.policy.clone(),
                condition: condition.clone(),
                reply: generation.text,
                reasoning: None,
                n_tokens: generation.n_tokens,
                finish_reason: generation.finish_reason,
            };
            let progress = Progress { sample, outcome };
            let line = serde_json::to_string(&progress).map_err(|err| EvalError::Run(err.to_string()))?;
            writeln!(progress_file, "{line}").map_err(io_error(&progress_path))?;
            done.insert(item.id.clone(), progress);
        }
        progress_file.flush().map_err(io_error(&progress_path))?;
        progress_file.sync_data().map_err(io_error(&progress_path))?;
        finished += batch.len();
        on_progress(finished);
    }

    let ordered: Vec<(&CapabilityItem, &Progress)> =
        items.iter().filter_map(|item| done.get(&item.id).map(|progress| (item, progress))).collect();
    let outcomes: Vec<CapabilityOutcome> = ordered.iter().map(|(_, p)| p.outcome.clone()).collect();
    let summary = summarize(benchmark, &outcomes, config.seed)?;
    let scores: Vec<ItemScore> = ordered
        .iter()
        .flat_map(|(item, p)| item_scores(item, &p.outcome, &config.policy, config.condition.as_deref()))
        .collect();
    let samples_written = write_jsonl_atomic(&samples_path, ordered.iter().map(|(_, p)| &p.sample));
    samples_written.map_err(io_error(&samples_path))?;
    let outcomes = ordered.iter().map(|(item, p)| FinishedItem { item: item.id.clone(), outcome: p.outcome.clone() });
    write_jsonl_atomic(&outcomes_path, outcomes).map_err(io_error(&outcomes_path))?;
    let scores_path = out.join("item_scores.jsonl");
    write_jsonl_atomic(&scores_path, &scores).map_err(io_error(&scores_path))?;
    let n_truncated = ordered.iter().filter(|(_, p)| p.sample.finish_reason == FinishReason::Length).count();
    let summary_path = out.join("summary.json");
    write_atomic(&summary_path, |writer| {
        serde_json::to_writer_pretty(
            &mut *writer,
            &serde_json::json!({"summary": summary, "n_items": ordered.len(), "truncated_replies": n_truncated}),
        )?;
        Ok(())
    })
    .map_err(io_error(&summary_path))?;
    drop(progress_file);
    let _ = std::fs::remove_file(&progress_path);
    Ok(CapabilityRun { summary, n_resumed, n_truncated })
}
