//! Batched sampling and continuation scoring on top of [`Gemma3`].
//!
//! Many prompts, each with `n` replies, are decoded together: every decode step runs one forward
//! pass over up to `max_batch` sequences, each with its own KV cache, so sequences of different
//! lengths need no padding. A prompt is prefilled once and its cache copied to each of its replies
//! (the RL case: eight replies per prompt). Reply `i` of a request draws from its own generator
//! seeded from `(seed, i)`, so its text does not depend on which other sequences shared the batch.
//!
//! Each [`Generation`] carries the sampled token ids (`token_ids`) for RL: the reply's tokens as
//! sampled, including a terminating EOS / `<end_of_turn>` (the policy chose to stop; `n_tokens`
//! does not count it) and every token up to the one that completed a stop string (`text` is cut
//! at the stop string, the ids are not).

use std::collections::VecDeque;

use ethos_core::records::FinishReason;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::gemma3::{Gemma3, KvCache, LogitRows, Segment};
use super::GemmaTokenizer;
use crate::{Generation, LlmError, SamplingParams, TokenLogprob};

/// Sequences decoded together at most; bounds memory (each sequence holds a 1 MB logit row and its
/// cache) while keeping the quantized matmuls' weight reads amortized.
pub const DEFAULT_MAX_BATCH: usize = 8;

/// Tokens less likely than this fraction of the best token are left out of the nucleus sort
/// unless the more likely ones do not reach `top_p` (then everything is sorted; see [`sample`]).
const NUCLEUS_FLOOR: f32 = 1e-6;

/// One prompt to answer `sampling.n` times.
#[derive(Debug, Clone)]
pub struct GenerationJob {
    /// Prompt token ids (with BOS).
    pub prompt_ids: Vec<u32>,
    /// Sampling settings; `stop` holds every stop string (the chat format's included).
    pub sampling: SamplingParams,
}

/// Token ids that end a reply (EOS, `<end_of_turn>`).
#[derive(Debug, Clone)]
pub struct StopTokens(Vec<u32>);

impl StopTokens {
    /// Exactly these ids end a reply.
    pub fn new(ids: Vec<u32>) -> Self {
        StopTokens(ids)
    }

    /// The ids that end a reply.
    pub fn ids(&self) -> &[u32] {
        &self.0
    }

    /// EOS from the tokenizer (GGUF metadata) plus `<end_of_turn>` when the vocabulary has it.
    pub fn from_tokenizer(tokenizer: &GemmaTokenizer) -> Self {
        let mut ids = vec![tokenizer.eos_id()];
        ids.extend(tokenizer.end_of_turn_id());
        StopTokens(ids)
    }

    fn contains(&self, token: u32) -> bool {
        self.0.contains(&token)
    }
}

/// Answers every job; result `j` holds `jobs[j].sampling.n` generations in reply order.
pub fn generate(
    model: &Gemma3,
    tokenizer: &GemmaTokenizer,
    stop_tokens: &StopTokens,
    jobs: &[GenerationJob],
    max_batch: usize,
) -> Result<Vec<Vec<Generation>>, LlmError> {
    let max_batch = max_batch.max(1);
    let mut results: Vec<Vec<Option<Generation>>> =
        jobs.iter().map(|job| vec![None; job.sampling.n as usize]).collect();
    let mut pending: VecDeque<Reply> = VecDeque::new();
    let mut active: Vec<Reply> = Vec::new();
    let mut next_job_idx = 0;

    loop {
        // Fill free slots: waiting replies first, then prefill the next prompts.
        while active.len() < max_batch {
            if let Some(reply) = pending.pop_front() {
                active.push(reply);
                continue;
            }
            if next_job_idx >= jobs.len() {
                break;
            }
            let n_free = max_batch - active.len();
            let mut job_indices = Vec::new();
            let mut n_replies = 0;
            while next_job_idx < jobs.len() && (job_indices.is_empty() || n_replies < n_free) {
                n_replies += jobs[next_job_idx].sampling.n as usize;
                job_indices.push(next_job_idx);
                next_job_idx += 1;
            }
            for (job_idx, generation) in prefill_jobs(model, jobs, &job_indices, &mut pending)? {
                results[job_idx] = generation;
            }
        }
        if active.is_empty() {
            break;
        }

        // Sample one token per active reply; finished replies leave the batch.
        let mut continuing = Vec::with_capacity(active.len());
        for mut reply in active.drain(..) {
            let sampling = &jobs[reply.job_idx].sampling;
            match reply.advance(tokenizer, stop_tokens, sampling)? {
                Some(generation) => results[reply.job_idx][reply.reply_idx] = Some(generation),
                None => continuing.push(reply),
            }
        }
        if continuing.is_empty() {
            continue;
        }
        let last_tokens: Vec<[u32; 1]> =
            continuing.iter().map(|reply| [reply.generated.last().copied().unwrap_or_default()]).collect();
        let mut segments: Vec<Segment<'_>> = continuing
            .iter_mut()
            .zip(&last_tokens)
            .map(|(reply, token)| Segment { cache: &mut reply.cache, tokens: token, logits: LogitRows::Last })
            .collect();
        let logits = model.forward(&mut segments)?;
        for (segment_idx, reply) in continuing.iter_mut().enumerate() {
            let row = logits.row(segment_idx, 0).ok_or_else(|| missing_logits("decode"))?;
            reply.logits.clear();
            reply.logits.extend_from_slice(row);
        }
        active = continuing;
    }

    results
        .into_iter()
        .map(|generations| {
            generations.into_iter().map(|generation| generation.ok_or_else(|| missing_logits("reply"))).collect()
        })
        .collect()
}

/// A job index with its replies (`None` for a reply whose logits were never produced).
type FinishedJob = (usize, Vec<Option<Generation>>);

/// Prefills the prompts of `job_indices` in one forward pass and queues their replies. Jobs with
/// `n == 0` or `max_tokens == 0` finish here; they are returned with their (empty) generations.
fn prefill_jobs(
    model: &Gemma3,
    jobs: &[GenerationJob],
    job_indices: &[usize],
    pending: &mut VecDeque<Reply>,
) -> Result<Vec<FinishedJob>, LlmError> {
    let mut finished = Vec::new();
    let mut to_run = Vec::new();
    for &job_idx in job_indices {
        let job = &jobs[job_idx];
        if job.prompt_ids.is_empty() {
            return Err(LlmError::Inference("empty prompt".to_string()));
        }
        if job.sampling.n == 0 || job.sampling.max_tokens == 0 {
            let empty = Generation {
                text: String::new(),
                n_tokens: 0,
                finish_reason: FinishReason::Length,
                top_logprobs: job.sampling.top_logprobs.map(|_| Vec::new()),
                token_ids: Vec::new(),
            };
            finished.push((job_idx, vec![Some(empty); job.sampling.n as usize]));
            continue;
        }
        to_run.push(job_idx);
    }
    let mut caches: Vec<KvCache> = to_run.iter().map(|_| KvCache::new(model.config())).collect();
    let mut segments: Vec<Segment<'_>> = caches
        .iter_mut()
        .zip(&to_run)
        .map(|(cache, &job_idx)| Segment { cache, tokens: &jobs[job_idx].prompt_ids, logits: LogitRows::Last })
        .collect();
    let logits = model.forward(&mut segments)?;
    for (segment_idx, (cache, &job_idx)) in caches.into_iter().zip(&to_run).enumerate() {
        let row = logits.row(segment_idx, 0).ok_or_else(|| missing_logits("prefill"))?;
        let sampling = &jobs[job_idx].sampling;
        for reply_idx in 0..sampling.n as usize {
            pending.push_back(Reply {
                job_idx,
                reply_idx,
                cache: cache.clone(),
                logits: row.to_vec(),
                rng: reply_rng(sampling.seed, reply_idx),
                generated: Vec::new(),
                top_logprobs: Vec::new(),
            });
        }
    }
    Ok(finished)
}

/// One reply being decoded.
struct Reply {
    job_idx: usize,
    reply_idx: usize,
    cache: KvCache,
    /// Next-token logits after the last token in `cache`.
    logits: Vec<f32>,
    rng: ChaCha8Rng,
    generated: Vec<u32>,
    top_logprobs: Vec<Vec<TokenLogprob>>,
}

impl Reply {
    /// Samples the next token; returns the finished generation when the reply is complete.
    fn advance(
        &mut self,
        tokenizer: &GemmaTokenizer,
        stop_tokens: &StopTokens,
        sampling: &SamplingParams,
    ) -> Result<Option<Generation>, LlmError> {
        let token = sample(&self.logits, sampling.temperature, sampling.top_p, &mut self.rng);
        if stop_tokens.contains(token) {
            let text = tokenizer.decode(&self.generated)?;
            return Ok(Some(self.generation(text, sampling, FinishReason::Stop, Some(token))));
        }
        if let Some(n_top) = sampling.top_logprobs {
            self.top_logprobs.push(top_logprobs(&self.logits, n_top as usize, tokenizer));
        }
        self.generated.push(token);
        // Decode the whole reply: SentencePiece byte-fallback pieces only form characters together,
        // so per-token pieces can split a stop string or a character.
        if !sampling.stop.is_empty() {
            let text = tokenizer.decode(&self.generated)?;
            if let Some(cut) = find_stop(&text, &sampling.stop) {
                return Ok(Some(self.generation(text[..cut].to_string(), sampling, FinishReason::Stop, None)));
            }
        }
        if self.generated.len() >= sampling.max_tokens as usize {
            let text = tokenizer.decode(&self.generated)?;
            return Ok(Some(self.generation(text, sampling, FinishReason::Length, None)));
        }
        Ok(None)
    }

    /// The finished reply. `stop_token` is the EOS / `<end_of_turn>` that ended it, if one did:
    /// not part of the text or of `n_tokens`, but sampled, so it is the last of `token_ids`.
    fn generation(
        &mut self,
        text: String,
        sampling: &SamplingParams,
        finish_reason: FinishReason,
        stop_token: Option<u32>,
    ) -> Generation {
        let n_tokens = self.generated.len() as u32;
        let mut token_ids = std::mem::take(&mut self.generated);
        token_ids.extend(stop_token);
        Generation {
            text,
            n_tokens,
            finish_reason,
            top_logprobs: sampling.top_logprobs.map(|_| std::mem::take(&mut self.top_logprobs)),
            token_ids,
        }
    }
}

/// Byte offset of the earliest stop string in `text`.
pub fn find_stop(text: &str, stops: &[String]) -> Option<usize> {
    stops.iter().filter(|stop| !stop.is_empty()).filter_map(|stop| text.find(stop.as_str())).min()
}

/// The generator of reply `reply_idx` of a request with this seed: one ChaCha stream per reply.
pub fn reply_rng(seed: u64, reply_idx: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(reply_idx as u64);
    rng
}

/// Draws a token: greedy at temperature 0 (or below), else nucleus sampling at `temperature`.
pub fn sample(logits: &[f32], temperature: f32, top_p: f32, rng: &mut impl Rng) -> u32 {
    if temperature <= 0.0 || !temperature.is_finite() {
        return argmax(logits);
    }
    let max_logit = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let inverse_temperature = 1.0 / temperature;
    // Unnormalized probabilities, largest 1; one pass of f32 exp over the vocabulary.
    let weights: Vec<f32> = logits.iter().map(|&logit| ((logit - max_logit) * inverse_temperature).exp()).collect();
    let total: f64 = weights.iter().map(|&weight| weight as f64).sum();
    if !(total.is_finite() && total > 0.0) {
        return argmax(logits);
    }

    let top_p = if top_p > 0.0 && top_p < 1.0 { top_p as f64 } else { 1.0 };
    if top_p >= 1.0 {
        let mut target = rng.random::<f64>() * total;
        for (token, &weight) in weights.iter().enumerate() {
            target -= weight as f64;
            if target <= 0.0 {
                return token as u32;
            }
        }
        return argmax(logits);
    }

    // Nucleus: the most likely tokens whose mass first reaches `top_p`. Sorting the whole
    // vocabulary per token would cost more than a batch row's forward pass, so sort only the
    // tokens within a factor NUCLEUS_FLOOR of the best; when those already reach `top_p` the
    // nucleus lies among them (it takes tokens best first), otherwise sort everything.
    let threshold = NUCLEUS_FLOOR;
    let mut candidates: Vec<(u32, f32)> = weights
        .iter()
        .enumerate()
        .filter(|(_, &weight)| weight >= threshold)
        .map(|(token, &weight)| (token as u32, weight))
        .collect();
    let head_mass: f64 = candidates.iter().map(|c| c.1 as f64).sum();
    if head_mass < top_p * total {
        candidates = weights.iter().enumerate().map(|(token, &weight)| (token as u32, weight)).collect();
    }
    candidates.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut cumulative = 0.0;
    let mut nucleus_len = candidates.len();
    for (idx, candidate) in candidates.iter().enumerate() {
        cumulative += candidate.1 as f64;
        if cumulative >= top_p * total {
            nucleus_len = idx + 1;
            break;
        }
    }
    let nucleus = &candidates[..nucleus_len];
    let nucleus_mass: f64 = nucleus.iter().map(|c| c.1 as f64).sum();
    let mut target = rng.random::<f64>() * nucleus_mass;
    for candidate in nucleus {
        target -= candidate.1 as f64;
        if target <= 0.0 {
            return candidate.0;
        }
    }
    nucleus.last().map_or_else(|| argmax(logits), |candidate| candidate.0)
}

/// The `n_top` most likely tokens under the untempered distribution, with log-probabilities.
pub fn top_logprobs(logits: &[f32], n_top: usize, tokenizer: &GemmaTokenizer) -> Vec<TokenLogprob> {
    let log_total = log_sum_exp(logits);
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    let n_top = n_top.min(order.len());
    if n_top == 0 {
        return Vec::new();
    }
    let by_logit = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]).then(a.cmp(b));
    if n_top < order.len() {
        order.select_nth_unstable_by(n_top - 1, by_logit);
        order.truncate(n_top);
    }
    order.sort_unstable_by(by_logit);
    order
        .into_iter()
        .map(|token| TokenLogprob {
            token: tokenizer.token_text(token).unwrap_or_default(),
            logprob: (logits[token as usize] as f64 - log_total) as f32,
        })
        .collect()
}

/// `ln(sum(exp(logits)))`, computed stably in f64.
pub fn log_sum_exp(logits: &[f32]) -> f64 {
    let max_logit = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    max_logit + logits.iter().map(|&logit| (logit as f64 - max_logit).exp()).sum::<f64>().ln()
}

fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (token, &logit) in logits.iter().enumerate() {
        if logit > logits[best] {
            best = token;
        }
    }
    best as u32
}

/// Log-probabilities of each continuation after one prompt: the prompt is prefilled once, its cache
/// copied to every continuation, and all continuations run in one forward pass.
pub fn continuation_logprobs(
    model: &Gemma3,
    prompt_ids: &[u32],
    continuations: &[Vec<u32>],
) -> Result<Vec<Vec<f32>>, LlmError> {
    if prompt_ids.is_empty() {
        return Err(LlmError::Inference("empty prompt".to_string()));
    }
    let mut prompt_cache = KvCache::new(model.config());
    let mut segments = [Segment { cache: &mut prompt_cache, tokens: prompt_ids, logits: LogitRows::Last }];
    let prompt_logits = model.forward(&mut segments)?;
    let first_row = prompt_logits.row(0, 0).ok_or_else(|| missing_logits("prompt"))?;
    let first_log_total = log_sum_exp(first_row);

    let mut results: Vec<Vec<f32>> = continuations
        .iter()
        .map(|tokens| match tokens.first() {
            Some(&token) => {
                let logit = first_row.get(token as usize).copied().unwrap_or(f32::NEG_INFINITY);
                vec![(logit as f64 - first_log_total) as f32]
            }
            None => Vec::new(),
        })
        .collect();

    // Row `i` of continuation `c` (its token `i`) predicts its token `i + 1`, so the last token needs no forward
    // pass. Continuations that share leading tokens share rows: each one runs inside the longest forward sequence
    // that starts with its own, so the numbers 0..=100 (digit by digit) cost 10 rows instead of ~100.
    let plan = shared_prefix_plan(continuations);
    let mut caches: Vec<KvCache> = plan.sequences.iter().map(|_| prompt_cache.clone()).collect();
    let batches = caches.chunks_mut(DEFAULT_MAX_BATCH).zip(plan.sequences.chunks(DEFAULT_MAX_BATCH));
    for (batch_index, (chunk_caches, chunk_sequences)) in batches.enumerate() {
        let mut segments: Vec<Segment<'_>> = chunk_caches
            .iter_mut()
            .zip(chunk_sequences)
            .map(|(cache, tokens)| Segment { cache, tokens, logits: LogitRows::All })
            .collect();
        let logits = model.forward(&mut segments)?;
        for (continuation_idx, tokens) in continuations.iter().enumerate() {
            let Some(sequence_idx) = plan.covering[continuation_idx] else { continue };
            let Some(segment_idx) = sequence_idx.checked_sub(batch_index * DEFAULT_MAX_BATCH) else { continue };
            if segment_idx >= chunk_sequences.len() {
                continue;
            }
            for (row_idx, &next_token) in tokens[1..].iter().enumerate() {
                let row = logits.row(segment_idx, row_idx).ok_or_else(|| missing_logits("continuation"))?;
                let logit = row.get(next_token as usize).copied().unwrap_or(f32::NEG_INFINITY);
                results[continuation_idx].push((logit as f64 - log_sum_exp(row)) as f32);
            }
        }
    }
    Ok(results)
}

/// Which forward sequences score a set of continuations.
#[derive(Debug, PartialEq)]
struct SharedPrefixPlan {
    /// Token sequences to run after the prompt: the maximal `tokens[..len - 1]` of the continuations (none is a
    /// prefix of another).
    sequences: Vec<Vec<u32>>,
    /// Per continuation, the sequence whose rows score it (`None` for continuations of at most one token).
    covering: Vec<Option<usize>>,
}

fn shared_prefix_plan(continuations: &[Vec<u32>]) -> SharedPrefixPlan {
    let needed: Vec<&[u32]> = continuations.iter().filter(|t| t.len() > 1).map(|t| &t[..t.len() - 1]).collect();
    let mut sequences: Vec<Vec<u32>> = Vec::new();
    // Longest first, so a sequence is kept only when no kept one already starts with it.
    let mut by_length: Vec<&[u32]> = needed.clone();
    by_length.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
    by_length.dedup();
    for candidate in by_length {
        if !sequences.iter().any(|kept| kept.starts_with(candidate)) {
            sequences.push(candidate.to_vec());
        }
    }
    let covering = continuations
        .iter()
        .map(|t| (t.len() > 1).then(|| sequences.iter().position(|kept| kept.starts_with(&t[..t.len() - 1]))).flatten())
        .collect();
    SharedPrefixPlan { sequences, covering }
}

fn missing_logits(stage: &str) -> LlmError {
    LlmError::Inference(format!("forward pass returned no logits for the {stage}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuations_sharing_leading_tokens_share_one_forward_sequence() {
        // Digit tokens: "1" = [1], "10" = [1, 0], "100" = [1, 0, 0], "2" = [2], "25" = [2, 5], "7" = [7].
        let continuations = vec![vec![1], vec![1, 0], vec![1, 0, 0], vec![2], vec![2, 5], vec![7]];
        let plan = shared_prefix_plan(&continuations);
        assert_eq!(plan.sequences, vec![vec![1, 0], vec![2]]);
        assert_eq!(plan.covering, vec![None, Some(0), Some(0), None, Some(1), None]);
        // Distinct sequences stay apart; duplicates collapse.
        let plan = shared_prefix_plan(&[vec![3, 4, 5], vec![3, 9, 5], vec![3, 4, 5]]);
        assert_eq!(plan.sequences, vec![vec![3, 4], vec![3, 9]]);
        assert_eq!(plan.covering, vec![Some(0), Some(1), Some(0)]);
    }
}
