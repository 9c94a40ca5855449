//! Timing of one GRPO step with fixed shapes, for comparison with other implementations
//! (`scripts/grpo_peer_bench.py` runs the same step in PyTorch + transformers + peft).
//!
//! The step: sample G replies of exactly `reply_len` tokens to one random prompt of `prompt_len`
//! tokens (stop tokens disabled so every reply has the same length), reference log-probabilities
//! with the adapter off, then the policy forward and backward of the GRPO loss of the group
//! (random advantages), gradient clipping and an AdamW step. Scoring packs the group as training
//! does ([`crate::model::PackedGroup`]: the prompt runs once for all G replies).

use std::collections::BTreeMap;
use std::time::Instant;

use ethos_llm::embedded::gemma3::Gemma3;
use ethos_llm::embedded::generate::{generate, GenerationJob, StopTokens};
use ethos_llm::embedded::GemmaTokenizer;
use ethos_llm::SamplingParams;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::grpo::{group_loss, GrpoObjective};
use crate::model::PackedGroup;
use crate::optim::{accumulate_grads, clip_grad_norm, AdamW, AdamWConfig};
use crate::policy::Policy;
use crate::TrainError;

/// The shapes of the timed step.
#[derive(Debug, Clone, Serialize)]
pub struct StepShape {
    /// Replies per prompt (G).
    pub group: u32,
    /// Prompt tokens.
    pub prompt_len: usize,
    /// Tokens per reply.
    pub reply_len: u32,
}

/// Seconds per phase of one step, and throughput.
#[derive(Debug, Clone, Serialize)]
pub struct StepTiming {
    /// Sampling the G replies (prefill once, batched decode).
    pub sampling: f64,
    /// Reference log-probabilities (adapter off, no graph).
    pub reference: f64,
    /// Policy forward and backward over the group (packed: the prompt runs once).
    pub policy_forward_backward: f64,
    /// Clipping and the AdamW step.
    pub optimizer: f64,
    /// The whole step.
    pub total: f64,
    /// G x (prompt + reply) tokens per second of the whole step.
    pub tokens_per_second: f64,
}

/// Runs `warmup + repeats` steps and returns the timings of the last `repeats`.
pub fn time_grpo_steps(
    policy: &Policy,
    inference: &mut Gemma3,
    tokenizer: &GemmaTokenizer,
    shape: &StepShape,
    warmup: usize,
    repeats: usize,
) -> Result<Vec<StepTiming>, TrainError> {
    let vocab = inference.config().vocab_size as u32;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    // Ordinary text-token ids (above the special tokens), as a tokenized prompt would have.
    let prompt: Vec<u32> =
        std::iter::once(2).chain((1..shape.prompt_len).map(|_| rng.random_range(300..vocab.min(200_000)))).collect();
    let objective = GrpoObjective::default();
    let mut optimizer = AdamW::new(policy.lora().named_vars(), AdamWConfig::default())?;
    let named = policy.lora().named_vars();
    let mut timings = Vec::new();
    for repeat in 0..warmup + repeats {
        let started = Instant::now();
        inference.set_adapter(Some(&policy.lora().to_adapter(policy.chat_format())?))?;
        let job = GenerationJob {
            prompt_ids: prompt.clone(),
            sampling: SamplingParams {
                n: shape.group,
                temperature: 1.0,
                top_p: 1.0,
                max_tokens: shape.reply_len,
                stop: Vec::new(),
                seed: repeat as u64,
                top_logprobs: None,
            },
        };
        let generations = generate(inference, tokenizer, &StopTokens::new(Vec::new()), &[job], shape.group as usize)?;
        let sampling = started.elapsed().as_secs_f64();

        let replies: Vec<&[u32]> = generations[0].iter().map(|generation| generation.token_ids.as_slice()).collect();
        let group = PackedGroup::new(&prompt, &replies)?;
        let phase = Instant::now();
        let reference: Vec<Vec<f32>> = policy
            .model()
            .group_logprobs(&group, None)?
            .iter()
            .map(|scores| scores.logprobs.to_vec1::<f32>())
            .collect::<Result<_, _>>()?;
        let reference_seconds = phase.elapsed().as_secs_f64();

        let phase = Instant::now();
        let mut grads = BTreeMap::new();
        let scores = policy.model().group_logprobs(&group, Some(policy.lora()))?;
        let old: Vec<Vec<f32>> = scores.iter().map(|s| s.logprobs.to_vec1::<f32>()).collect::<Result<_, _>>()?;
        let advantages: Vec<f64> = scores.iter().map(|_| rng.random_range(-1.0..1.0)).collect();
        let (loss, _) = group_loss(&scores, &old, &reference, &advantages, &objective)?;
        accumulate_grads(&mut grads, &named, &(loss / replies.len() as f64)?.backward()?)?;
        let policy_seconds = phase.elapsed().as_secs_f64();
        let phase = Instant::now();
        clip_grad_norm(&mut grads, 1.0)?;
        optimizer.step(&grads)?;
        let optimizer_seconds = phase.elapsed().as_secs_f64();
        let total = started.elapsed().as_secs_f64();
        if repeat >= warmup {
            let tokens = shape.group as f64 * (shape.prompt_len as f64 + shape.reply_len as f64);
            timings.push(StepTiming {
                sampling,
                reference: reference_seconds,
                policy_forward_backward: policy_seconds,
                optimizer: optimizer_seconds,
                total,
                tokens_per_second: tokens / total,
            });
        }
    }
    Ok(timings)
}
