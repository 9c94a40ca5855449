//! An in-process `ChatModel` that answers deterministically, counts what it is asked, and fails on demand.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use ethos_core::records::FinishReason;
use ethos_llm::{
    ChatModel, ChatRequest, ChatResponse, ContinuationLogprobs, ContinuationRequest, Generation, LlmError, ModelSpec,
};

/// Counts requests answered (`n_requests`) and `chat_batch` calls; fails requests whose last message contains the
/// fail marker.
pub struct CountingModel {
    spec: ModelSpec,
    identity: String,
    n_requests: AtomicU64,
    n_batch_calls: AtomicU64,
    n_continuation_calls: AtomicU64,
    fail_marker: Mutex<Option<String>>,
}

/// The reply of choice `choice_idx` to `request`; depends on everything that is part of a cache key.
pub fn counting_reply(request: &ChatRequest, choice_idx: u32) -> String {
    let last = request.messages.last().map(|message| message.content.as_str()).unwrap_or_default();
    format!("reply to {last} #{choice_idx} seed={} t={}", request.sampling.seed, request.sampling.temperature)
}

impl CountingModel {
    /// A model with the given identity.
    pub fn new(identity: &str) -> CountingModel {
        CountingModel {
            spec: "openai:http://127.0.0.1:9/v1#counting".parse().expect("valid spec"),
            identity: identity.to_string(),
            n_requests: AtomicU64::new(0),
            n_batch_calls: AtomicU64::new(0),
            n_continuation_calls: AtomicU64::new(0),
            fail_marker: Mutex::new(None),
        }
    }

    /// Requests whose last message contains `marker` fail from now on (`None`: none fail).
    pub fn fail_on(&self, marker: Option<&str>) {
        *self.fail_marker.lock().expect("lock") = marker.map(|marker| marker.to_string());
    }

    /// Chat requests answered or failed (a batch of k counts k).
    pub fn n_requests(&self) -> u64 {
        self.n_requests.load(Ordering::SeqCst)
    }

    /// `chat_batch` calls.
    pub fn n_batch_calls(&self) -> u64 {
        self.n_batch_calls.load(Ordering::SeqCst)
    }

    /// `continuation_logprobs` calls.
    pub fn n_continuation_calls(&self) -> u64 {
        self.n_continuation_calls.load(Ordering::SeqCst)
    }

    fn answer(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        self.n_requests.fetch_add(1, Ordering::SeqCst);
        let last = request.messages.last().map(|message| message.content.as_str()).unwrap_or_default();
        let fail_marker = self.fail_marker.lock().expect("lock").clone();
        if fail_marker.is_some_and(|marker| last.contains(&marker)) {
            return Err(LlmError::Http { status: 500, url: "counting".into(), body: format!("failed on {last}") });
        }
        let choices = (0..request.sampling.n)
            .map(|choice_idx| Generation {
                text: counting_reply(request, choice_idx),
                n_tokens: 3,
                finish_reason: FinishReason::Stop,
                top_logprobs: None,
                token_ids: Vec::new(),
            })
            .collect();
        Ok(ChatResponse { choices, prompt_tokens: Some(7) })
    }
}

#[async_trait]
impl ChatModel for CountingModel {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn identity(&self) -> String {
        self.identity.clone()
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        // Yield so concurrent tasks interleave as they would with a real backend.
        tokio::task::yield_now().await;
        self.answer(request)
    }

    async fn chat_batch(&self, requests: &[ChatRequest]) -> Vec<Result<ChatResponse, LlmError>> {
        self.n_batch_calls.fetch_add(1, Ordering::SeqCst);
        requests.iter().map(|request| self.answer(request)).collect()
    }

    async fn continuation_logprobs(
        &self,
        request: &ContinuationRequest,
    ) -> Result<Vec<ContinuationLogprobs>, LlmError> {
        self.n_continuation_calls.fetch_add(1, Ordering::SeqCst);
        Ok(request
            .continuations
            .iter()
            .map(|continuation| {
                let token_logprobs = vec![-(continuation.len() as f32)];
                ContinuationLogprobs { logprob: -(continuation.len() as f64), token_logprobs }
            })
            .collect())
    }
}
