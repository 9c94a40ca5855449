//! Requests, responses, errors and the `ChatModel` trait shared by all backends.

use std::time::Duration;

use async_trait::async_trait;
use ethos_core::records::{FinishReason, Message};
use serde::{Deserialize, Serialize};

use crate::spec::ModelSpec;

/// Sampling settings of one chat request. `seed` makes sampling deterministic on backends that honour it (the
/// embedded backend always does: reply `i` of a request uses a generator seeded from `(seed, i)`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// Number of replies to sample.
    pub n: u32,
    /// Softmax temperature; 0 means greedy.
    pub temperature: f32,
    /// Nucleus sampling mass in (0, 1].
    pub top_p: f32,
    /// Maximum number of generated tokens per reply.
    pub max_tokens: u32,
    /// Generation stops before any of these strings; the stop string is not part of the reply.
    pub stop: Vec<String>,
    /// Seed of the sampler.
    pub seed: u64,
    /// When set, return this many most likely alternatives with log-probabilities for every generated token.
    pub top_logprobs: Option<u32>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            n: 1,
            temperature: 0.7,
            top_p: 0.95,
            max_tokens: 256,
            stop: Vec::new(),
            seed: 0,
            top_logprobs: None,
        }
    }
}

/// One chat completion request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The conversation; the model writes the next assistant turn.
    pub messages: Vec<Message>,
    /// Sampling settings.
    pub sampling: SamplingParams,
}

/// A candidate token with its log-probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    /// Token text.
    pub token: String,
    /// Natural-log probability.
    pub logprob: f32,
}

/// One generated reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// Reply text (stop string removed).
    pub text: String,
    /// Number of generated tokens: the reply's tokens as the backend counts them. On the embedded backend, every
    /// sampled token except a terminating EOS / `<end_of_turn>` token, including the tokens of a stop string cut from
    /// `text`; at most `max_tokens`.
    pub n_tokens: u32,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// Per generated token, the top alternatives, when requested and offered by the backend (on the embedded
    /// backend one entry per token counted in `n_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<Vec<Vec<TokenLogprob>>>,
    /// The sampled token ids, when the backend exposes them (the embedded backend does; OpenAI-compatible endpoints
    /// leave this empty). Exactly what the policy sampled, for RL: the `n_tokens` counted tokens, followed by the
    /// EOS / `<end_of_turn>` token when one ended the reply (so `len() == n_tokens + 1` then). Tokens of a stop
    /// string stay in even though `text` is cut before it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub token_ids: Vec<u32>,
}

/// The replies to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// `sampling.n` replies, in order.
    pub choices: Vec<Generation>,
    /// Number of prompt tokens, when known.
    pub prompt_tokens: Option<u32>,
}

/// Asks for the log-probability of each continuation written as the start of the next assistant turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContinuationRequest {
    /// The conversation before the assistant turn.
    pub messages: Vec<Message>,
    /// Candidate texts of the assistant turn (for example `" (A)"` and `" (B)"`).
    pub continuations: Vec<String>,
}

/// The log-probability of one continuation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContinuationLogprobs {
    /// Sum of the token log-probabilities.
    pub logprob: f64,
    /// Per-token log-probabilities.
    pub token_logprobs: Vec<f32>,
}

/// What can go wrong when calling a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LlmError {
    /// The model spec is invalid.
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    /// The model file is missing or could not be loaded.
    #[error("model file {path}: {message}")]
    ModelFile {
        /// File path.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Tokenization failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The forward pass failed.
    #[error("inference: {0}")]
    Inference(String),
    /// The endpoint answered with an error status.
    #[error("HTTP {status} from {url}: {body}")]
    Http {
        /// Status code.
        status: u16,
        /// Request URL.
        url: String,
        /// Start of the response body.
        body: String,
    },
    /// The request did not complete in time.
    #[error("request to {url} timed out after {timeout:?}")]
    Timeout {
        /// Request URL.
        url: String,
        /// The per-request timeout.
        timeout: Duration,
    },
    /// The endpoint could not be reached.
    #[error("cannot reach {url}: {message}")]
    Connect {
        /// Request URL.
        url: String,
        /// Transport error.
        message: String,
    },
    /// The endpoint's response is not what the API specifies.
    #[error("invalid response from {url}: {message}")]
    InvalidResponse {
        /// Request URL.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// Every retry failed; holds the last error.
    #[error("giving up after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// Number of attempts made.
        attempts: u32,
        /// The last error.
        last: Box<LlmError>,
    },
    /// The request cache failed.
    #[error("request cache: {0}")]
    Cache(String),
    /// The backend cannot do what was asked (for example log-probabilities from a chat-only endpoint).
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl LlmError {
    /// Whether retrying the same request may succeed (rate limits, server errors, timeouts, malformed bodies).
    pub fn is_transient(&self) -> bool {
        match self {
            LlmError::Http { status, .. } => *status == 429 || *status >= 500,
            LlmError::Timeout { .. } | LlmError::Connect { .. } | LlmError::InvalidResponse { .. } => true,
            _ => false,
        }
    }
}

/// A chat model: samples replies to conversations and scores given continuations.
///
/// Implementations are shared across tasks (`Arc<dyn ChatModel>`); they bound their own concurrency.
#[async_trait]
pub trait ChatModel: Send + Sync {
    /// The spec this model was built from.
    fn spec(&self) -> &ModelSpec;

    /// A string that pins the weights or endpoint model (for example the GGUF file's sha256 plus adapter hash).
    /// Recorded in run manifests and part of request-cache keys.
    fn identity(&self) -> String;

    /// Samples `request.sampling.n` replies.
    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError>;

    /// Answers many requests; backends that batch (the embedded model) override this to decode requests
    /// together. Results are in request order, one per request.
    async fn chat_batch(&self, requests: &[ChatRequest]) -> Vec<Result<ChatResponse, LlmError>> {
        let mut results = Vec::with_capacity(requests.len());
        for request in requests {
            results.push(self.chat(request).await);
        }
        results
    }

    /// Log-probabilities of each continuation as the start of the next assistant turn.
    async fn continuation_logprobs(&self, request: &ContinuationRequest)
        -> Result<Vec<ContinuationLogprobs>, LlmError>;
}
