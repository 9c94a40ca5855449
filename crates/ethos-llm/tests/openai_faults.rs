//! The OpenAI backend against a fault-injecting server on 127.0.0.1: retries, final errors, `Retry-After`,
//! load balancing, failover, `n` fill-up, parameter mapping and continuation scoring.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fast_config;
use common::fault_server::{char_logprob, dead_base_url, expected_reply, Fault, FaultServer, RetryAfter, ServerConfig};
use ethos_core::records::Message;
use ethos_llm::openai::{render_transcript, OpenAiConfig, OpenAiModel};
use ethos_llm::{ChatModel, ChatRequest, ContinuationRequest, LlmError, ModelSpec, SamplingParams};
use futures::StreamExt;

fn model_for(base_urls: &[&str], config: OpenAiConfig) -> OpenAiModel {
    let spec: ModelSpec = format!("openai:{}#test-model", base_urls.join(",")).parse().expect("valid spec");
    OpenAiModel::new(spec, config).expect("model")
}

fn request(text: &str, n: u32, seed: u64) -> ChatRequest {
    ChatRequest {
        messages: vec![Message::system("Be brief."), Message::user(text)],
        sampling: SamplingParams { n, seed, ..SamplingParams::default() },
    }
}

fn replies(response: &ethos_llm::ChatResponse) -> Vec<String> {
    response.choices.iter().map(|choice| choice.text.clone()).collect()
}

fn expected_replies(text: &str, n: u32, seed: u64) -> Vec<String> {
    (0..n).map(|choice_idx| expected_reply(text, choice_idx, seed)).collect()
}

const ALL_FAULTS: [Fault; 5] =
    [Fault::RateLimited, Fault::RateLimitedRetryAfter, Fault::ServerError, Fault::Hang, Fault::MalformedJson];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_item_gets_its_own_reply_under_thirty_percent_faults() {
    let server = FaultServer::start(ServerConfig {
        fault_fraction: 0.3,
        faults: ALL_FAULTS.to_vec(),
        hang: Duration::from_secs(6),
        ..ServerConfig::default()
    })
    .await;
    // A generous deadline: an answer slower than it would be retried and answered twice, failing the check below.
    let config = OpenAiConfig { request_timeout: Duration::from_secs(2), ..fast_config() };
    let model = Arc::new(model_for(&[&server.base_url], config));
    let n_items = 200;
    let items: Vec<(String, u32, u64)> =
        (0..n_items).map(|item_idx| (format!("item {item_idx}"), 1 + item_idx % 3, item_idx as u64 * 7)).collect();
    let started = Instant::now();
    let results: Vec<(usize, Result<ethos_llm::ChatResponse, LlmError>)> =
        futures::stream::iter(items.iter().enumerate().map(|(item_idx, (text, n, seed))| {
            let model = model.clone();
            let request = request(text, *n, *seed);
            async move { (item_idx, model.chat(&request).await) }
        }))
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());

    assert_eq!(results.len(), n_items as usize);
    for (item_idx, result) in results {
        let (text, n, seed) = &items[item_idx];
        let response = result.unwrap_or_else(|err| panic!("item {item_idx} failed: {err}"));
        assert_eq!(replies(&response), expected_replies(text, *n, *seed), "item {item_idx}");
    }
    // Each item was answered successfully exactly once, with all its choices: nothing lost or duplicated.
    let mut answers_per_item: HashMap<String, Vec<u32>> = HashMap::new();
    for answered in server.answered() {
        answers_per_item.entry(answered.key).or_default().push(answered.n_choices);
    }
    assert_eq!(answers_per_item.len(), n_items as usize);
    for (text, n, _) in &items {
        assert_eq!(answers_per_item.get(text), Some(&vec![*n]), "{text}");
    }
    let fault_share = server.n_faults() as f64 / server.n_requests() as f64;
    assert!((0.15..0.45).contains(&fault_share), "fault share {fault_share}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn all_faults_end_in_a_final_error_naming_the_last_cause() {
    let check = |fault: Fault, expect_last: fn(&LlmError) -> bool, expect_text: &'static str| async move {
        let server = FaultServer::start(ServerConfig {
            fault_fraction: 1.0,
            faults: vec![fault],
            hang: Duration::from_secs(3),
            ..ServerConfig::default()
        })
        .await;
        let config = OpenAiConfig { max_retries: 3, request_timeout: Duration::from_millis(300), ..fast_config() };
        let model = model_for(&[&server.base_url], config);
        let started = Instant::now();
        let result = model.chat(&request("doomed", 1, 0)).await;
        let elapsed = started.elapsed();
        let err = result.expect_err("every attempt faults");
        let message = err.to_string();
        match &err {
            LlmError::RetriesExhausted { attempts, last } => {
                assert_eq!(*attempts, 4, "{fault:?}: {message}");
                assert!(expect_last(last), "{fault:?}: {message}");
            }
            other => panic!("{fault:?}: expected RetriesExhausted, got {other:?}"),
        }
        assert!(message.starts_with("giving up after 4 attempts: "), "{message}");
        assert!(message.contains(expect_text), "{fault:?}: {message}");
        assert!(err.to_string().contains(&server.base_url), "{message}");
        assert_eq!(server.n_requests(), 4, "{fault:?}");
        assert!(server.answered().is_empty());
        // Four attempts of at most 300 ms plus at most 3 backoffs of at most 50 ms.
        assert!(elapsed < Duration::from_secs(3), "{fault:?} took {elapsed:?}");
    };
    check(Fault::ServerError, |last| matches!(last, LlmError::Http { status: 500, .. }), "HTTP 500").await;
    check(Fault::RateLimited, |last| matches!(last, LlmError::Http { status: 429, .. }), "HTTP 429").await;
    check(Fault::MalformedJson, |last| matches!(last, LlmError::InvalidResponse { .. }), "body starts `{\"choices")
        .await;
    check(Fault::Hang, |last| matches!(last, LlmError::Timeout { .. }), "timed out after 300ms").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_ends_in_a_connect_error() {
    let config = OpenAiConfig { max_retries: 2, ..fast_config() };
    let model = model_for(&[&dead_base_url().await], config);
    let err = model.chat(&request("nobody home", 1, 0)).await.expect_err("nobody listens");
    match &err {
        LlmError::RetriesExhausted { attempts: 3, last } => {
            assert!(matches!(**last, LlmError::Connect { .. }))
        }
        other => panic!("expected RetriesExhausted after 3 attempts, got {other:?}"),
    }
    assert!(err.to_string().contains("cannot reach"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_are_not_retried() {
    let server = FaultServer::start(ServerConfig::default()).await;
    let model = model_for(&[&server.base_url], fast_config());
    let err = model.chat(&request("a bad-request", 1, 0)).await.expect_err("400");
    assert!(matches!(err, LlmError::Http { status: 400, .. }), "{err:?}");
    assert_eq!(server.n_requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_seconds_is_honoured() {
    let server = FaultServer::start(ServerConfig {
        fail_first_attempts: 1,
        faults: vec![Fault::RateLimitedRetryAfter],
        retry_after: RetryAfter::Value("1".into()),
        ..ServerConfig::default()
    })
    .await;
    let model = model_for(&[&server.base_url], fast_config());
    let started = Instant::now();
    let response = model.chat(&request("patient", 1, 0)).await.expect("second attempt succeeds");
    let elapsed = started.elapsed();
    assert_eq!(replies(&response), expected_replies("patient", 1, 0));
    // The backoff alone would be at most 5 ms.
    assert!(elapsed >= Duration::from_millis(1000), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    assert_eq!(server.n_requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_http_date_is_honoured() {
    let server = FaultServer::start(ServerConfig {
        fail_first_attempts: 1,
        faults: vec![Fault::RateLimitedRetryAfter],
        retry_after: RetryAfter::DateIn(Duration::from_secs(2)),
        ..ServerConfig::default()
    })
    .await;
    let model = model_for(&[&server.base_url], fast_config());
    let started = Instant::now();
    model.chat(&request("dated", 1, 0)).await.expect("second attempt succeeds");
    let elapsed = started.elapsed();
    // HTTP dates have whole seconds, so "now + 2 s" is between 1 and 2 s away when the client reads it.
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_capped() {
    let server = FaultServer::start(ServerConfig {
        fail_first_attempts: 1,
        faults: vec![Fault::RateLimitedRetryAfter],
        retry_after: RetryAfter::Value("3600".into()),
        ..ServerConfig::default()
    })
    .await;
    let config = OpenAiConfig { retry_after_cap: Duration::from_millis(300), ..fast_config() };
    let model = model_for(&[&server.base_url], config);
    let started = Instant::now();
    model.chat(&request("capped", 1, 0)).await.expect("second attempt succeeds");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_are_spread_over_endpoints() {
    let first = FaultServer::start(ServerConfig::default()).await;
    let second = FaultServer::start(ServerConfig::default()).await;
    let model = model_for(&[&first.base_url, &second.base_url], fast_config());
    let requests: Vec<ChatRequest> = (0..40).map(|item_idx| request(&format!("lb {item_idx}"), 1, 0)).collect();
    let results = model.chat_batch(&requests).await;
    for (item_idx, result) in results.iter().enumerate() {
        let response = result.as_ref().unwrap_or_else(|err| panic!("item {item_idx}: {err}"));
        assert_eq!(replies(response), expected_replies(&format!("lb {item_idx}"), 1, 0));
    }
    let (n_first, n_second) = (first.answered().len(), second.answered().len());
    assert_eq!(n_first + n_second, 40);
    assert!(n_first >= 10 && n_second >= 10, "first {n_first}, second {n_second}");
    assert_eq!(model.identity(), format!("openai:{}#test-model", first.base_url));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_endpoint_fails_over_to_a_live_one() {
    let live = FaultServer::start(ServerConfig::default()).await;
    let dead = dead_base_url().await;
    // Backoff this long would show: failover after a refused connection must not wait.
    let config = OpenAiConfig {
        backoff_base: Duration::from_secs(2),
        backoff_cap: Duration::from_secs(2),
        max_retries: 2,
        ..fast_config()
    };
    let model = model_for(&[&dead, &live.base_url], config);
    let requests: Vec<ChatRequest> = (0..30).map(|item_idx| request(&format!("fo {item_idx}"), 1, 0)).collect();
    let started = Instant::now();
    let results = model.chat_batch(&requests).await;
    for (item_idx, result) in results.iter().enumerate() {
        let response = result.as_ref().unwrap_or_else(|err| panic!("item {item_idx}: {err}"));
        assert_eq!(replies(response), expected_replies(&format!("fo {item_idx}"), 1, 0));
    }
    assert_eq!(live.answered().len(), 30);
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_endpoint_is_retried_on_the_other() {
    let broken = FaultServer::start(ServerConfig { fault_fraction: 1.0, ..ServerConfig::default() }).await;
    let healthy = FaultServer::start(ServerConfig::default()).await;
    let config = OpenAiConfig { max_retries: 1, ..fast_config() };
    let model = model_for(&[&broken.base_url, &healthy.base_url], config);
    let requests: Vec<ChatRequest> = (0..20).map(|item_idx| request(&format!("ha {item_idx}"), 1, 0)).collect();
    let results = model.chat_batch(&requests).await;
    assert!(results.iter().all(|result| result.is_ok()), "{results:?}");
    assert_eq!(healthy.answered().len(), 20);
    assert!(broken.n_requests() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_ignoring_n_is_asked_for_the_rest() {
    let server = FaultServer::start(ServerConfig { max_choices: Some(1), ..ServerConfig::default() }).await;
    let model = model_for(&[&server.base_url], fast_config());
    let response = model.chat(&request("single", 3, 40)).await.expect("reply");
    // Later rounds advance the seed by the number of replies already received.
    let expect: Vec<String> = (40..43).map(|seed| expected_reply("single", 0, seed)).collect();
    assert_eq!(replies(&response), expect);
    let n_asked: Vec<u64> = server.bodies().iter().map(|body| body["n"].as_u64().unwrap_or(0)).collect();
    assert_eq!(n_asked, vec![3, 2, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_params_map_to_request_fields() {
    let server = FaultServer::start(ServerConfig::default()).await;
    let model = model_for(&[&server.base_url], fast_config());
    let sampling = SamplingParams {
        n: 2,
        temperature: 0.5,
        top_p: 0.25,
        max_tokens: 17,
        stop: vec!["\n\n".into()],
        seed: 9,
        top_logprobs: Some(2),
    };
    let response = model.chat(&ChatRequest { messages: vec![Message::user("params")], sampling }).await.expect("reply");
    let bodies = server.bodies();
    assert_eq!(bodies.len(), 1);
    let expect = serde_json::json!({
        "model": "test-model",
        "messages": [{"role": "user", "content": "params"}],
        "n": 2, "temperature": 0.5, "top_p": 0.25, "max_tokens": 17, "stop": ["\n\n"], "seed": 9,
        "logprobs": true, "top_logprobs": 2,
    });
    assert_eq!(bodies[0], expect);
    assert_eq!(replies(&response), expected_replies("params", 2, 9));
    let first = &response.choices[0];
    // "echo: params #0 seed=9" is four words; the server sends one entry per word with two alternatives.
    assert_eq!(first.n_tokens, 4);
    let top = first.top_logprobs.as_ref().expect("top logprobs");
    assert_eq!(top.len(), 4);
    assert_eq!(
        top[0].iter().map(|alt| (alt.token.as_str(), alt.logprob)).collect::<Vec<_>>(),
        [("echo:0", -0.5), ("echo:1", -1.5)]
    );
    assert_eq!(response.prompt_tokens, Some(3));

    // Without logprobs and stop strings those fields are left out.
    model.chat(&request("plain", 1, 0)).await.expect("reply");
    let plain = &server.bodies()[1];
    for field in ["stop", "logprobs", "top_logprobs"] {
        assert!(plain.get(field).is_none(), "{field} in {plain}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_logprobs_come_from_echoed_prompts() {
    let server = FaultServer::start(ServerConfig {
        fault_fraction: 0.3,
        faults: vec![Fault::ServerError, Fault::MalformedJson],
        ..ServerConfig::default()
    })
    .await;
    let model = model_for(&[&server.base_url], fast_config());
    let messages = vec![Message::user("Pick one: (A) or (B)?")];
    let continuations = vec![" (A)".to_string(), " (B) because".to_string(), String::new()];
    let scored = model
        .continuation_logprobs(&ContinuationRequest {
            messages: messages.clone(),
            continuations: continuations.clone(),
        })
        .await
        .expect("scores");
    assert_eq!(scored.len(), 3);
    for (continuation, score) in continuations.iter().zip(&scored) {
        let expect: Vec<f32> = continuation.chars().map(char_logprob).collect();
        assert_eq!(score.token_logprobs, expect, "{continuation:?}");
        let sum: f64 = expect.iter().map(|&logprob| f64::from(logprob)).sum();
        assert!((score.logprob - sum).abs() < 1e-9, "{continuation:?}");
    }
    let prompts: Vec<String> = server.answered().into_iter().map(|answered| answered.key).collect();
    let prefix = render_transcript(&messages);
    assert!(prompts.contains(&format!("{prefix} (A)")), "{prompts:?}");
    // The empty continuation needs no request.
    assert_eq!(prompts.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_logprobs_without_completions_endpoint_are_unsupported() {
    let server = FaultServer::start(ServerConfig { completions: false, ..ServerConfig::default() }).await;
    let model = model_for(&[&server.base_url], fast_config());
    let request = ContinuationRequest { messages: vec![Message::user("Q")], continuations: vec![" A".into()] };
    let err = model.continuation_logprobs(&request).await.expect_err("no /completions");
    let message = err.to_string();
    assert!(matches!(err, LlmError::Unsupported(_)), "{err:?}");
    assert!(message.contains("HTTP 404") && message.contains("vLLM"), "{message}");
}

#[test]
fn non_openai_specs_are_rejected() {
    let spec: ModelSpec = "embedded:gemma-3-270m".parse().expect("valid spec");
    let err = OpenAiModel::new(spec, OpenAiConfig::default()).expect_err("wrong backend");
    assert!(err.to_string().contains("needs an `openai:` spec"), "{err}");
    let spec: ModelSpec = "openai:http://127.0.0.1:1/v1#m".parse().expect("valid spec");
    let err = OpenAiModel::new(spec, OpenAiConfig { max_concurrency: 0, ..OpenAiConfig::default() });
    assert!(err.is_err());
}
