//! The embedded model behind `ChatModel`: determinism, batching, stop strings, the few-shot chat
//! format, and continuation scoring. Uses the real GGUF (`ensure_gemma_gguf`).

use std::collections::HashSet;
use std::sync::OnceLock;

use ethos_core::records::{FinishReason, Message};
use ethos_llm::embedded::EmbeddedModel;
use ethos_llm::{ChatModel, ChatRequest, ContinuationRequest, ModelSpec, SamplingParams};

fn model() -> &'static EmbeddedModel {
    static MODEL: OnceLock<EmbeddedModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        let spec: ModelSpec = "embedded:gemma-3-270m".parse().expect("spec");
        EmbeddedModel::load(&spec).expect("load")
    })
}

fn request(question: &str, sampling: SamplingParams) -> ChatRequest {
    ChatRequest { messages: vec![Message::user(question)], sampling }
}

fn greedy(max_tokens: u32) -> SamplingParams {
    SamplingParams { n: 1, temperature: 0.0, max_tokens, ..SamplingParams::default() }
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

#[test]
fn identity_names_the_file_hash() {
    let identity = model().identity();
    assert!(identity.starts_with("gemma-3-270m-q4_k_m@sha256:a5fd3b62230aa5ec"), "{identity}");
}

#[tokio::test]
async fn few_shot_format_gives_an_on_topic_reply() {
    let question = "How often should I water a tomato plant?";
    let response = model().chat(&request(question, greedy(48))).await.expect("chat");
    let reply = &response.choices[0];
    eprintln!("reply: {:?} ({:?})", reply.text, reply.finish_reason);
    assert!(!reply.text.is_empty());
    let content_words: HashSet<&str> = ["water", "watering", "tomato", "tomatoes", "plant", "plants", "soil"].into();
    assert!(words(&reply.text).iter().any(|w| content_words.contains(w.as_str())), "{:?}", reply.text);
    // Not degenerate: no word trigram occurs three times.
    let reply_words = words(&reply.text);
    let mut counts = std::collections::HashMap::new();
    for trigram in reply_words.windows(3) {
        *counts.entry(trigram.to_vec()).or_insert(0) += 1;
    }
    assert!(counts.values().all(|&count| count < 3), "{:?}", reply.text);
    assert!(!reply.text.contains("User:"), "{:?}", reply.text);
}

#[tokio::test]
async fn sampling_is_deterministic_and_independent_of_the_batch() {
    let sampling =
        SamplingParams { n: 3, temperature: 0.9, top_p: 0.95, max_tokens: 12, seed: 7, ..SamplingParams::default() };
    let alone = model().chat(&request("Name a fruit.", sampling.clone())).await.expect("chat");
    let again = model().chat(&request("Name a fruit.", sampling.clone())).await.expect("chat");
    assert_eq!(alone, again);
    let texts: HashSet<&str> = alone.choices.iter().map(|choice| choice.text.as_str()).collect();
    assert!(texts.len() > 1, "three samples at temperature 0.9 should differ: {texts:?}");

    let other = request("What is the tallest mountain?", SamplingParams { n: 2, seed: 1, ..sampling.clone() });
    let batched = model().chat_batch(&[other, request("Name a fruit.", sampling)]).await;
    let batched = batched.into_iter().nth(1).expect("two results").expect("chat");
    assert_eq!(batched, alone);
}

#[tokio::test]
async fn stop_strings_end_the_reply_before_the_match() {
    let question = "Describe a sunny day at the beach.";
    let free = model().chat(&request(question, greedy(24))).await.expect("chat");
    let text = &free.choices[0].text;
    let reply_words = words(text);
    assert!(reply_words.len() >= 4, "{text:?}");
    let stop = reply_words[3].clone();
    let cut = text.find(stop.as_str()).expect("word is in the text");
    let stopped = model()
        .chat(&request(question, SamplingParams { stop: vec![stop.clone()], ..greedy(24) }))
        .await
        .expect("chat");
    let choice = &stopped.choices[0];
    assert_eq!(choice.finish_reason, FinishReason::Stop);
    assert_eq!(choice.text, text[..cut].trim(), "stop {stop:?}");
    assert!(!choice.text.contains(stop.as_str()));
}

#[tokio::test]
async fn max_tokens_and_top_logprobs() {
    let sampling = SamplingParams { top_logprobs: Some(3), ..greedy(5) };
    let response = model().chat(&request("Count from one to twenty.", sampling)).await.expect("chat");
    let choice = &response.choices[0];
    assert_eq!(choice.n_tokens, 5);
    assert_eq!(choice.finish_reason, FinishReason::Length);
    let top = choice.top_logprobs.as_ref().expect("requested");
    assert_eq!(top.len(), 5);
    for alternatives in top {
        assert_eq!(alternatives.len(), 3);
        assert!(alternatives.windows(2).all(|pair| pair[0].logprob >= pair[1].logprob));
        assert!(alternatives[0].logprob <= 0.0);
    }
}

#[tokio::test]
async fn continuation_logprobs_prefer_the_sensible_answer() {
    let request = ContinuationRequest {
        messages: vec![Message::user("Is the sun hot or cold? Answer in one word.")],
        continuations: vec![" Hot".to_string(), " Cold".to_string(), " The sun is hot.".to_string(), String::new()],
    };
    let scores = model().continuation_logprobs(&request).await.expect("scores");
    assert_eq!(scores.len(), 4);
    for score in &scores[..3] {
        assert!(score.logprob < 0.0 && score.logprob.is_finite(), "{score:?}");
        let sum: f64 = score.token_logprobs.iter().map(|&lp| lp as f64).sum();
        assert!((sum - score.logprob).abs() < 1e-6);
    }
    assert!(scores[0].logprob > scores[1].logprob, "{scores:?}");
    assert!(scores[2].token_logprobs.len() >= 2, "{scores:?}");
    assert_eq!(scores[3].logprob, 0.0);

    // Scoring one continuation alone gives the same numbers as scoring it in a batch.
    let alone =
        ContinuationRequest { messages: request.messages.clone(), continuations: vec![" The sun is hot.".to_string()] };
    let alone = model().continuation_logprobs(&alone).await.expect("scores");
    assert_eq!(alone[0], scores[2]);
}
