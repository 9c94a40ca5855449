//! Drives the server over real HTTP on 127.0.0.1 with a scripted model that records how it was called.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ethos_core::records::FinishReason;
use ethos_llm::{
    ChatModel, ChatRequest, ChatResponse, ContinuationLogprobs, ContinuationRequest, Generation, LlmError, ModelSpec,
};
use serde_json::{json, Value};

/// Replies `"<last user message> #<choice index> seed=<seed>"` and records the size of every batch.
struct ScriptedModel {
    spec: ModelSpec,
    batch_sizes: Mutex<Vec<usize>>,
}

#[async_trait]
impl ChatModel for ScriptedModel {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }
    fn identity(&self) -> String {
        "scripted".into()
    }
    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let last = request.messages.last().map(|m| m.content.clone()).unwrap_or_default();
        if last == "fail" {
            return Err(LlmError::Inference("scripted failure".into()));
        }
        let choices = (0..request.sampling.n)
            .map(|index| Generation {
                text: format!("{last} #{index} seed={}", request.sampling.seed),
                n_tokens: 3,
                finish_reason: FinishReason::Stop,
                top_logprobs: None,
                token_ids: Vec::new(),
            })
            .collect();
        Ok(ChatResponse { choices, prompt_tokens: Some(5) })
    }
    async fn chat_batch(&self, requests: &[ChatRequest]) -> Vec<Result<ChatResponse, LlmError>> {
        self.batch_sizes.lock().unwrap().push(requests.len());
        // Simulate work so that concurrent requests pile up behind the batcher.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let mut results = Vec::new();
        for request in requests {
            results.push(self.chat(request).await);
        }
        results
    }
    async fn continuation_logprobs(&self, _: &ContinuationRequest) -> Result<Vec<ContinuationLogprobs>, LlmError> {
        Err(LlmError::Unsupported("scripted".into()))
    }
}

async fn start() -> (String, Arc<ScriptedModel>) {
    let model =
        Arc::new(ScriptedModel { spec: "embedded:gemma-3-270m".parse().unwrap(), batch_sizes: Mutex::new(Vec::new()) });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let config = ethos_server::ServerConfig { address, ..Default::default() };
    let served: Arc<dyn ChatModel> = model.clone();
    tokio::spawn(ethos_server::serve(listener, served, config));
    (format!("http://{address}"), model)
}

#[tokio::test]
async fn answers_in_openai_format() {
    let (base, _) = start().await;
    let client = reqwest::Client::new();
    let body: Value = client
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hello"}], "n": 2, "seed": 4}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "m");
    assert_eq!(body["choices"][0]["message"]["content"], "hello #0 seed=4");
    assert_eq!(body["choices"][1]["message"]["content"], "hello #1 seed=4");
    assert_eq!(body["choices"][1]["finish_reason"], "stop");
    assert_eq!(body["usage"]["completion_tokens"], 6);
    let models: Value = client.get(format!("{base}/v1/models")).send().await.unwrap().json().await.unwrap();
    assert_eq!(models["data"][0]["id"], "gemma-3-270m");
}

#[tokio::test]
async fn concurrent_requests_are_batched_and_each_gets_its_own_reply() {
    let (base, model) = start().await;
    let client = reqwest::Client::new();
    let calls = (0..16).map(|item_idx| {
        let client = client.clone();
        let url = format!("{base}/v1/chat/completions");
        async move {
            let body: Value = client
                .post(url)
                .json(&json!({"messages": [{"role": "user", "content": format!("item {item_idx}")}], "seed": 1}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (item_idx, body["choices"][0]["message"]["content"].as_str().unwrap().to_string())
        }
    });
    for (item_idx, reply) in futures::future::join_all(calls).await {
        assert_eq!(reply, format!("item {item_idx} #0 seed=1"));
    }
    let sizes = model.batch_sizes.lock().unwrap().clone();
    assert_eq!(sizes.iter().sum::<usize>(), 16);
    assert!(sizes.iter().all(|&size| size <= 8), "{sizes:?}");
    assert!(sizes.iter().any(|&size| size > 1), "no batching happened: {sizes:?}");
}

#[tokio::test]
async fn errors_are_openai_shaped() {
    let (base, _) = start().await;
    let client = reqwest::Client::new();
    let response = client.post(format!("{base}/v1/chat/completions")).body("{not json").send().await.unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let response = client
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"messages": [{"role": "user", "content": "fail"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("scripted failure"));
}
