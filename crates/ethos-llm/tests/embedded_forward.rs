//! The Gemma 3 forward pass against llama.cpp, from token ids to token ids (no tokenizer involved):
//! greedy continuations and first-token log-probabilities for the prompts of
//! `fixtures/greedy_llamacpp.json`, written by `scripts/llamacpp_greedy_reference.py`; and batched
//! decoding against one-sequence-at-a-time decoding.

use std::sync::OnceLock;

use ethos_llm::embedded::fetch::ensure_gemma_gguf;
use ethos_llm::embedded::gemma3::{Gemma3, KvCache, LogitRows, Segment};
use serde::Deserialize;

/// Below this gap between llama.cpp's two best log-probabilities a step is a near-tie: the
/// float-level differences between two correct implementations of this model move log-probabilities
/// by about 0.1 nat (see `gelu_tanh_f16` in `gemma3.rs`), so either choice is right there.
const NEAR_TIE_NATS: f64 = 0.15;

/// Largest total variation distance allowed between our and llama.cpp's first-token distribution,
/// measured over llama.cpp's ten most likely tokens.
const MAX_TOTAL_VARIATION: f64 = 0.06;

#[derive(Deserialize)]
struct Reference {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    prompt: String,
    prompt_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
    first_top_logprobs: Vec<TopLogprob>,
    step_top_logprobs: Vec<Vec<TopLogprob>>,
}

#[derive(Deserialize)]
struct TopLogprob {
    id: u32,
    logprob: f64,
}

fn model() -> &'static Gemma3 {
    static MODEL: OnceLock<Gemma3> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = ensure_gemma_gguf().expect("model file");
        Gemma3::load(&path).expect("load").0
    })
}

fn reference() -> Reference {
    serde_json::from_str(include_str!("fixtures/greedy_llamacpp.json")).expect("fixture parses")
}

fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (idx, value) in values.iter().enumerate() {
        if *value > values[best] {
            best = idx;
        }
    }
    best as u32
}

fn log_softmax(values: &[f32]) -> Vec<f64> {
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let log_total = values.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
    values.iter().map(|&v| v as f64 - max - log_total).collect()
}

/// Greedy decoding of several prompts together: one forward pass per step for all of them.
/// Returns the generated ids and the first-step logits of each prompt.
fn greedy_batched(model: &Gemma3, prompts: &[&[u32]], n_tokens: usize) -> Vec<(Vec<u32>, Vec<f32>)> {
    let mut caches: Vec<KvCache> = prompts.iter().map(|_| KvCache::new(model.config())).collect();
    let mut segments: Vec<Segment<'_>> = caches
        .iter_mut()
        .zip(prompts)
        .map(|(cache, prompt)| Segment { cache, tokens: prompt, logits: LogitRows::Last })
        .collect();
    let logits = model.forward(&mut segments).expect("prefill");
    let mut results: Vec<(Vec<u32>, Vec<f32>)> = (0..prompts.len())
        .map(|idx| {
            let row = logits.row(idx, 0).expect("row");
            (vec![argmax(row)], row.to_vec())
        })
        .collect();
    for _ in 1..n_tokens {
        let last: Vec<[u32; 1]> = results.iter().map(|(ids, _)| [*ids.last().expect("non-empty")]).collect();
        let mut segments: Vec<Segment<'_>> = caches
            .iter_mut()
            .zip(&last)
            .map(|(cache, token)| Segment { cache, tokens: token, logits: LogitRows::Last })
            .collect();
        let logits = model.forward(&mut segments).expect("decode");
        for (idx, (ids, _)) in results.iter_mut().enumerate() {
            ids.push(argmax(logits.row(idx, 0).expect("row")));
        }
    }
    results
}

#[test]
fn greedy_tokens_match_llama_cpp_until_a_near_tie() {
    let model = model();
    for case in reference().cases {
        let (generated, _) = greedy_batched(model, &[&case.prompt_ids], case.greedy_ids.len()).remove(0);
        for (step_idx, (ours, theirs)) in generated.iter().zip(&case.greedy_ids).enumerate() {
            if ours == theirs {
                continue;
            }
            let top = &case.step_top_logprobs[step_idx];
            let margin = top[0].logprob - top[1].logprob;
            assert!(
                margin < NEAR_TIE_NATS && top[1].id == *ours,
                "{:?}: step {step_idx} we chose {ours}, llama.cpp {theirs} with margin {margin:.3} over {}",
                case.prompt,
                top[1].id
            );
            eprintln!("{:?}: near-tie at step {step_idx} (margin {margin:.3}); stop comparing", case.prompt);
            break;
        }
    }
}

#[test]
fn first_token_distribution_matches_llama_cpp() {
    let model = model();
    for case in reference().cases {
        let (_, first_logits) = greedy_batched(model, &[&case.prompt_ids], 1).remove(0);
        let ours = log_softmax(&first_logits);
        let total_variation: f64 = case
            .first_top_logprobs
            .iter()
            .map(|top| (ours[top.id as usize].exp() - top.logprob.exp()).abs())
            .sum::<f64>()
            / 2.0;
        eprintln!("{:?}: total variation over llama.cpp's top 10: {total_variation:.4}", case.prompt);
        assert!(total_variation < MAX_TOTAL_VARIATION, "{:?}: {total_variation}", case.prompt);
    }
}

#[test]
fn batched_decoding_matches_one_sequence_at_a_time() {
    let model = model();
    let cases = reference().cases;
    // Short prompts of different lengths, so that the batch mixes positions.
    let prompts: Vec<&[u32]> = cases.iter().take(4).map(|case| case.prompt_ids.as_slice()).collect();
    let batched = greedy_batched(model, &prompts, 12);
    for (prompt, (batched_ids, _)) in prompts.iter().zip(&batched) {
        let (single_ids, _) = greedy_batched(model, &[prompt], 12).remove(0);
        assert_eq!(batched_ids, &single_ids);
    }
}
