//! OpenAI-compatible HTTP backend: `/chat/completions` for sampling, `/completions` with `echo` for scoring.
//!
//! One [`OpenAiModel`] talks to any number of base URLs serving the same model (vLLM, SGLang, llama.cpp server,
//! hosted APIs, `ethos serve openai`). Every HTTP attempt goes to the endpoint with the fewest requests in flight
//! (ties rotate), holds a permit of one semaphore shared by all calls, and has a deadline. Rate limits (429),
//! server errors (5xx), timeouts, connection errors and malformed bodies are retried with exponential backoff and
//! full jitter, on another endpoint when there is one; a `Retry-After` header (seconds or HTTP date) replaces the
//! backoff, capped by [`OpenAiConfig::retry_after_cap`]. When every attempt fails the caller gets
//! [`LlmError::RetriesExhausted`] holding the last cause.
//!
//! The API key is read once from the environment at construction. It is sent only as `Authorization: Bearer`,
//! never appears in `Debug` output, and is masked in error messages that quote a response body.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ethos_llm::LlmError> {
//! use ethos_core::records::Message;
//! use ethos_llm::openai::{OpenAiConfig, OpenAiModel};
//! use ethos_llm::{ChatModel, ChatRequest, ModelSpec, SamplingParams};
//!
//! let spec: ModelSpec = "openai:http://127.0.0.1:8000/v1#gemma".parse()?;
//! let model = OpenAiModel::new(spec, OpenAiConfig::default())?;
//! let request = ChatRequest { messages: vec![Message::user("Hi")], sampling: SamplingParams::default() };
//! let response = model.chat(&request).await?;
//! println!("{}", response.choices[0].text);
//! # Ok(())
//! # }
//! ```

use std::error::Error as _;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use ethos_core::records::{FinishReason, Message, Role};
use rand::Rng;
use reqwest::header::{HeaderValue, AUTHORIZATION, RETRY_AFTER};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::spec::{ModelSpec, SpecError};
use crate::types::{
    ChatModel, ChatRequest, ChatResponse, ContinuationLogprobs, ContinuationRequest, Generation, LlmError, TokenLogprob,
};

/// The environment variable holding the API key unless [`OpenAiConfig::api_key_env`] names another.
pub const DEFAULT_API_KEY_ENV: &str = "ETHOS_API_KEY";

/// How error messages quoting a response body show the API key, should a server echo it.
const REDACTED: &str = "<redacted>";

/// How many characters of an error response body an error message quotes.
const MAX_ERROR_BODY_CHARS: usize = 500;

/// Settings of an [`OpenAiModel`]; `Default` gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiConfig {
    /// Environment variable holding the API key (default [`DEFAULT_API_KEY_ENV`]). `None`, an unset variable or an
    /// empty value send no `Authorization` header, which is what local servers usually expect.
    pub api_key_env: Option<String>,
    /// Most HTTP requests in flight at once across all calls and endpoints (default 16).
    pub max_concurrency: usize,
    /// Deadline of one HTTP attempt, from sending to the last byte of the body (default 120 s).
    pub request_timeout: Duration,
    /// Deadline for opening a connection (default 10 s); a short one makes failover from a dead host fast.
    pub connect_timeout: Duration,
    /// Retries after the first attempt of a request (default 6, so at most 7 attempts).
    pub max_retries: u32,
    /// Upper bound of the first backoff; it doubles with every retry (default 500 ms).
    pub backoff_base: Duration,
    /// Largest backoff upper bound (default 30 s). The actual wait is uniform in `[0, bound]` (full jitter).
    pub backoff_cap: Duration,
    /// Longest wait a `Retry-After` header can impose (default 60 s).
    pub retry_after_cap: Duration,
    /// After a connection error an endpoint is avoided for this long while another one is up (default 5 s).
    pub endpoint_cooldown: Duration,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        OpenAiConfig {
            api_key_env: Some(DEFAULT_API_KEY_ENV.to_string()),
            max_concurrency: 16,
            request_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
            max_retries: 6,
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(30),
            retry_after_cap: Duration::from_secs(60),
            endpoint_cooldown: Duration::from_secs(5),
        }
    }
}

/// A model behind one or more OpenAI-compatible endpoints.
pub struct OpenAiModel {
    spec: ModelSpec,
    model: String,
    config: OpenAiConfig,
    endpoints: Vec<Endpoint>,
    client: reqwest::Client,
    api_key: Option<ApiKey>,
    permits: Semaphore,
    next_endpoint: AtomicUsize,
}

/// Renders a conversation as the plain-text prompt that [`OpenAiModel::continuation_logprobs`] scores.
///
/// No chat template is available on the client, so the format is a fixed transcript: every turn is written as
/// `Role: content` followed by a blank line, with roles `System`, `User` and `Assistant`, and the prompt ends with
/// `Assistant:` (no trailing space), so a continuation such as `" (A)"` is appended verbatim:
///
/// ```
/// use ethos_core::records::Message;
/// use ethos_llm::openai::render_transcript;
///
/// let messages = [Message::system("Be brief."), Message::user("2+2?")];
/// assert_eq!(render_transcript(&messages), "System: Be brief.\n\nUser: 2+2?\n\nAssistant:");
/// ```
pub fn render_transcript(messages: &[Message]) -> String {
    let mut prompt = String::new();
    for message in messages {
        prompt.push_str(role_label(message.role));
        prompt.push_str(": ");
        prompt.push_str(&message.content);
        prompt.push_str("\n\n");
    }
    prompt.push_str(role_label(Role::Assistant));
    prompt.push(':');
    prompt
}

impl OpenAiModel {
    /// Builds the backend for an `openai:` spec and reads the API key from the environment.
    ///
    /// Fails when the spec is not an `openai:` spec, the config is unusable (zero concurrency) or the key cannot
    /// be sent as an HTTP header.
    pub fn new(spec: ModelSpec, config: OpenAiConfig) -> Result<OpenAiModel, LlmError> {
        let invalid = |reason: String| LlmError::Spec(SpecError { spec: spec.to_string(), reason });
        let (base_urls, model) = match &spec {
            ModelSpec::OpenAi { base_urls, model } => (base_urls.clone(), model.clone()),
            ModelSpec::Embedded { .. } => return Err(invalid("the OpenAI backend needs an `openai:` spec".into())),
        };
        if base_urls.is_empty() {
            return Err(invalid("no base URL".into()));
        }
        if config.max_concurrency == 0 {
            return Err(invalid("max_concurrency must be at least 1".into()));
        }
        let api_key = match &config.api_key_env {
            None => None,
            Some(variable) => match std::env::var(variable) {
                Ok(key) if !key.trim().is_empty() => Some(ApiKey::new(key.trim()).ok_or_else(|| {
                    invalid(format!("the API key in ${variable} contains characters not allowed in an HTTP header"))
                })?),
                Ok(_) | Err(std::env::VarError::NotPresent) => None,
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(invalid(format!("the API key in ${variable} is not valid UTF-8")));
                }
            },
        };
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|err| LlmError::Connect { url: base_urls[0].clone(), message: error_chain(&err) })?;
        let endpoints = base_urls
            .into_iter()
            .map(|base_url| Endpoint { base_url, in_flight: AtomicUsize::new(0), down_until: Mutex::new(None) })
            .collect();
        let permits = Semaphore::new(config.max_concurrency);
        Ok(OpenAiModel { spec, model, config, endpoints, client, api_key, permits, next_endpoint: AtomicUsize::new(0) })
    }

    /// The settings this model was built with.
    pub fn config(&self) -> &OpenAiConfig {
        &self.config
    }

    /// The model name sent in requests.
    pub fn model_name(&self) -> &str {
        &self.model
    }

    /// Whether an API key was found at construction (the key itself is never exposed).
    pub fn has_api_key(&self) -> bool {
        self.api_key.is_some()
    }

    /// One `/chat/completions` exchange (with retries) asking for `n` replies.
    async fn chat_round(&self, request: &ChatRequest, n: u32, seed: u64) -> Result<ChatResponse, LlmError> {
        let sampling = &request.sampling;
        let body = ChatCompletionBody {
            model: &self.model,
            messages: &request.messages,
            n,
            temperature: sampling.temperature,
            top_p: sampling.top_p,
            max_tokens: sampling.max_tokens,
            stop: &sampling.stop,
            seed,
            logprobs: sampling.top_logprobs.is_some(),
            top_logprobs: sampling.top_logprobs,
        };
        self.post_with_retries("chat/completions", &body, parse_chat_completion).await
    }

    /// Scores one continuation through `/completions` with `echo`.
    async fn score_continuation(&self, prefix: &str, continuation: &str) -> Result<ContinuationLogprobs, LlmError> {
        if continuation.is_empty() {
            return Ok(ContinuationLogprobs { logprob: 0.0, token_logprobs: Vec::new() });
        }
        let prompt = format!("{prefix}{continuation}");
        let body = CompletionBody {
            model: &self.model,
            prompt: &prompt,
            max_tokens: 0,
            echo: true,
            logprobs: 1,
            temperature: 0.0,
        };
        let prefix_chars = prefix.chars().count();
        let prompt_chars = prompt.chars().count();
        let parse = |text: &str, url: &str| parse_echo_completion(text, url, prefix_chars, prompt_chars);
        match self.post_with_retries("completions", &body, parse).await {
            Err(LlmError::Http { status, url, body }) if matches!(status, 400 | 404 | 405 | 422) => {
                Err(LlmError::Unsupported(format!(
                    "{url} rejected a prompt-scoring request (`echo: true, logprobs: 1, max_tokens: 0`) with HTTP \
                     {status}: {body}; continuation log-probabilities need a server that returns prompt \
                     log-probabilities on /completions, such as vLLM"
                )))
            }
            other => other,
        }
    }

    /// Sends `body` to `path` under every base URL in turn until `parse` accepts a response or the retries run out.
    async fn post_with_retries<B, T, P>(&self, path: &str, body: &B, parse: P) -> Result<T, LlmError>
    where
        B: Serialize + Sync,
        P: Fn(&str, &str) -> Result<T, LlmError>,
    {
        let max_attempts = self.config.max_retries.saturating_add(1);
        let mut failed_endpoint = None;
        let mut attempt = 0;
        loop {
            attempt += 1;
            // The permit comes before the choice of endpoint, so that choice sees the load of everyone admitted.
            // The semaphore is never closed, so acquiring fails only if that invariant is broken.
            let permit = self.permits.acquire().await.map_err(|_| LlmError::Connect {
                url: self.endpoints[0].base_url.clone(),
                message: "request limiter closed".into(),
            })?;
            let endpoint_idx = self.pick_endpoint(failed_endpoint);
            let outcome = match self.post_once(endpoint_idx, path, body).await {
                Ok((text, url)) => parse(&text, &url).map_err(|error| AttemptFailure {
                    error: self.with_body_start(error, &text),
                    retry_after: None,
                    refused: false,
                }),
                Err(failure) => Err(failure),
            };
            drop(permit);
            let failure = match outcome {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            if !failure.error.is_transient() {
                return Err(failure.error);
            }
            if attempt >= max_attempts {
                return Err(LlmError::RetriesExhausted { attempts: attempt, last: Box::new(failure.error) });
            }
            tracing::debug!(attempt, max_attempts, error = %failure.error, "retrying model request");
            failed_endpoint = Some(endpoint_idx);
            if failure.refused {
                self.endpoints[endpoint_idx].mark_down(self.config.endpoint_cooldown);
                // A refused connection says nothing about the other endpoints, so fail over without waiting.
                if self.another_endpoint_is_up(endpoint_idx) {
                    continue;
                }
            }
            let delay = match failure.retry_after {
                Some(retry_after) => retry_after.min(self.config.retry_after_cap),
                None => self.backoff(attempt),
            };
            tokio::time::sleep(delay).await;
        }
    }

    /// One HTTP attempt (the caller holds a permit); returns the body of a 2xx response and the URL it came from.
    async fn post_once<B: Serialize + Sync>(
        &self,
        endpoint_idx: usize,
        path: &str,
        body: &B,
    ) -> Result<(String, String), AttemptFailure> {
        let endpoint = &self.endpoints[endpoint_idx];
        let url = format!("{}/{path}", endpoint.base_url);
        let _in_flight = InFlight::enter(&endpoint.in_flight);
        let mut builder = self.client.post(&url).json(body);
        if let Some(api_key) = &self.api_key {
            builder = builder.header(AUTHORIZATION, api_key.header.clone());
        }
        let transport_error = |err: reqwest::Error, url: &str| {
            let error = if err.is_timeout() {
                LlmError::Timeout { url: url.to_string(), timeout: self.config.request_timeout }
            } else {
                LlmError::Connect { url: url.to_string(), message: self.redact(&error_chain(&err)) }
            };
            AttemptFailure { error, retry_after: None, refused: err.is_connect() && !err.is_timeout() }
        };
        let response = builder.send().await.map_err(|err| transport_error(err, &url))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, SystemTime::now()));
        let text = response.text().await.map_err(|err| transport_error(err, &url))?;
        if !status.is_success() {
            let body = truncate_chars(&self.redact(&text), MAX_ERROR_BODY_CHARS);
            let error = LlmError::Http { status: status.as_u16(), url, body };
            return Err(AttemptFailure { error, retry_after, refused: false });
        }
        endpoint.mark_up();
        Ok((text, url))
    }

    /// Chooses the endpoint for the next attempt: up before down, then not the one that just failed, then fewest
    /// requests in flight; ties go to the next endpoint in rotation.
    fn pick_endpoint(&self, failed_endpoint: Option<usize>) -> usize {
        let n_endpoints = self.endpoints.len();
        let start = self.next_endpoint.fetch_add(1, Ordering::Relaxed) % n_endpoints;
        let now = Instant::now();
        let mut best: Option<((bool, bool, usize), usize)> = None;
        for offset in 0..n_endpoints {
            let endpoint_idx = (start + offset) % n_endpoints;
            let endpoint = &self.endpoints[endpoint_idx];
            let rank = (
                endpoint.is_down(now),
                Some(endpoint_idx) == failed_endpoint,
                endpoint.in_flight.load(Ordering::Relaxed),
            );
            if best.is_none_or(|(best_rank, _)| rank < best_rank) {
                best = Some((rank, endpoint_idx));
            }
        }
        best.map_or(0, |(_, endpoint_idx)| endpoint_idx)
    }

    fn another_endpoint_is_up(&self, endpoint_idx: usize) -> bool {
        let now = Instant::now();
        self.endpoints.iter().enumerate().any(|(idx, endpoint)| idx != endpoint_idx && !endpoint.is_down(now))
    }

    /// Full-jitter backoff before retry number `attempt` (1-based): uniform in `[0, min(cap, base * 2^(attempt-1))]`.
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX);
        let bound = self.config.backoff_base.saturating_mul(factor).min(self.config.backoff_cap);
        bound.mul_f64(rand::rng().random_range(0.0..=1.0))
    }

    /// Adds the start of a response body to a malformed-response error, so the log shows what the server sent.
    fn with_body_start(&self, error: LlmError, text: &str) -> LlmError {
        match error {
            LlmError::InvalidResponse { url, message } => {
                let start = truncate_chars(&self.redact(text), 200);
                LlmError::InvalidResponse { url, message: format!("{message}; body starts `{start}`") }
            }
            other => other,
        }
    }

    /// Masks the API key in text that may quote it (a response body, a transport error).
    fn redact(&self, text: &str) -> String {
        match &self.api_key {
            Some(api_key) => text.replace(&api_key.key, REDACTED),
            None => text.to_string(),
        }
    }
}

impl fmt::Debug for OpenAiModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiModel")
            .field("spec", &self.spec.to_string())
            .field("config", &self.config)
            .field("api_key", &self.api_key)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl ChatModel for OpenAiModel {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// `openai:<first base url>#<model>`: the endpoints of one spec serve the same model, so the first names it.
    fn identity(&self) -> String {
        format!("openai:{}#{}", self.endpoints[0].base_url, self.model)
    }

    /// Asks for `n` replies; a server that returns fewer (many ignore `n`) is asked again for the rest, with the
    /// seed advanced by the number of replies already received so seeded servers still return distinct samples.
    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let n_wanted = request.sampling.n;
        if n_wanted == 0 {
            return Ok(ChatResponse { choices: Vec::new(), prompt_tokens: None });
        }
        let mut response = self.chat_round(request, n_wanted, request.sampling.seed).await?;
        response.choices.truncate(n_wanted as usize);
        while (response.choices.len() as u32) < n_wanted {
            let n_have = response.choices.len() as u32;
            let seed = request.sampling.seed.wrapping_add(u64::from(n_have));
            let more = self.chat_round(request, n_wanted - n_have, seed).await?;
            response.choices.extend(more.choices.into_iter().take((n_wanted - n_have) as usize));
        }
        Ok(response)
    }

    /// Sends all requests at once; the shared semaphore bounds how many are in flight.
    async fn chat_batch(&self, requests: &[ChatRequest]) -> Vec<Result<ChatResponse, LlmError>> {
        futures::future::join_all(requests.iter().map(|request| self.chat(request))).await
    }

    /// Scores each continuation with `/completions` (`echo: true, logprobs: 1, max_tokens: 0`) on
    /// [`render_transcript`] of the messages followed by the continuation. Servers without prompt log-probabilities
    /// give [`LlmError::Unsupported`].
    async fn continuation_logprobs(
        &self,
        request: &ContinuationRequest,
    ) -> Result<Vec<ContinuationLogprobs>, LlmError> {
        let prefix = render_transcript(&request.messages);
        let scores = request.continuations.iter().map(|continuation| self.score_continuation(&prefix, continuation));
        futures::future::try_join_all(scores).await
    }
}

/// One base URL and its load.
struct Endpoint {
    base_url: String,
    in_flight: AtomicUsize,
    down_until: Mutex<Option<Instant>>,
}

impl Endpoint {
    fn is_down(&self, now: Instant) -> bool {
        let down_until = self.down_until.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        down_until.is_some_and(|until| now < until)
    }

    fn mark_down(&self, cooldown: Duration) {
        *self.down_until.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Instant::now() + cooldown);
    }

    fn mark_up(&self) {
        *self.down_until.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }
}

/// Counts a request in flight on an endpoint for as long as it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        InFlight(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The API key and its ready-made header; `Debug` shows neither.
struct ApiKey {
    key: String,
    header: HeaderValue,
}

impl ApiKey {
    fn new(key: &str) -> Option<ApiKey> {
        let mut header = HeaderValue::from_str(&format!("Bearer {key}")).ok()?;
        header.set_sensitive(true);
        Some(ApiKey { key: key.to_string(), header })
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Why one attempt failed, and how long the server asked us to wait.
struct AttemptFailure {
    error: LlmError,
    retry_after: Option<Duration>,
    /// No connection could be opened: the endpoint is likely down, and the others need not wait.
    refused: bool,
}

#[derive(Serialize)]
struct ChatCompletionBody<'a> {
    model: &'a str,
    messages: &'a [Message],
    n: u32,
    temperature: f32,
    top_p: f32,
    max_tokens: u32,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    seed: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    logprobs: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_logprobs: Option<u32>,
}

#[derive(Deserialize)]
struct ChatCompletionResponse {
    choices: Vec<ChatChoice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct ChatChoice {
    #[serde(default)]
    index: Option<u32>,
    message: ChoiceMessage,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    logprobs: Option<ChoiceLogprobs>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceLogprobs {
    #[serde(default)]
    content: Option<Vec<GeneratedToken>>,
}

#[derive(Deserialize)]
struct GeneratedToken {
    #[serde(default)]
    top_logprobs: Vec<TopLogprob>,
}

#[derive(Deserialize)]
struct TopLogprob {
    token: String,
    logprob: f32,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: Option<u32>,
    #[serde(default)]
    completion_tokens: Option<u32>,
}

#[derive(Serialize)]
struct CompletionBody<'a> {
    model: &'a str,
    prompt: &'a str,
    max_tokens: u32,
    echo: bool,
    logprobs: u32,
    temperature: f32,
}

#[derive(Deserialize)]
struct CompletionResponse {
    choices: Vec<CompletionChoice>,
}

#[derive(Deserialize)]
struct CompletionChoice {
    #[serde(default)]
    logprobs: Option<CompletionLogprobs>,
}

#[derive(Deserialize)]
struct CompletionLogprobs {
    tokens: Vec<String>,
    token_logprobs: Vec<Option<f32>>,
    #[serde(default)]
    text_offset: Option<Vec<usize>>,
}

fn role_label(role: Role) -> &'static str {
    match role {
        Role::System => "System",
        Role::User => "User",
        Role::Assistant => "Assistant",
    }
}

fn parse_chat_completion(text: &str, url: &str) -> Result<ChatResponse, LlmError> {
    let parsed: ChatCompletionResponse = serde_json::from_str(text).map_err(|err| LlmError::InvalidResponse {
        url: url.to_string(),
        message: format!("chat completion: {err}"),
    })?;
    if parsed.choices.is_empty() {
        return Err(LlmError::InvalidResponse {
            url: url.to_string(),
            message: "chat completion has no choices".into(),
        });
    }
    let mut choices = parsed.choices;
    choices.sort_by_key(|choice| choice.index);
    let completion_tokens = parsed.usage.as_ref().and_then(|usage| usage.completion_tokens);
    let texts: Vec<String> = choices.iter().map(|choice| choice.message.content.clone().unwrap_or_default()).collect();
    let estimated_tokens = split_token_count(completion_tokens, &texts);
    let generations = choices
        .into_iter()
        .zip(texts)
        .zip(estimated_tokens)
        .map(|((choice, text), estimated)| {
            let tokens = choice.logprobs.and_then(|logprobs| logprobs.content);
            let n_tokens = tokens.as_ref().map_or(estimated, |tokens| tokens.len() as u32);
            let top_logprobs = tokens.map(|tokens| {
                tokens
                    .into_iter()
                    .map(|token| {
                        let alternatives = token.top_logprobs.into_iter();
                        alternatives.map(|top| TokenLogprob { token: top.token, logprob: top.logprob }).collect()
                    })
                    .collect()
            });
            let finish_reason = match choice.finish_reason.as_deref() {
                Some("length") => FinishReason::Length,
                _ => FinishReason::Stop,
            };
            Generation { text, n_tokens, finish_reason, top_logprobs, token_ids: Vec::new() }
        })
        .collect();
    Ok(ChatResponse { choices: generations, prompt_tokens: parsed.usage.and_then(|usage| usage.prompt_tokens) })
}

/// Per-reply token counts when the server reports only a total (`usage.completion_tokens` covers all choices):
/// the total is split in proportion to reply length, so the counts still sum to it. Without a total, a reply
/// counts one token per four characters, rounded up.
fn split_token_count(total: Option<u32>, texts: &[String]) -> Vec<u32> {
    let lengths: Vec<u64> = texts.iter().map(|text| text.chars().count() as u64).collect();
    let Some(total) = total else {
        return lengths.iter().map(|&length| length.div_ceil(4) as u32).collect();
    };
    let total = u64::from(total);
    let sum_lengths: u64 = lengths.iter().sum();
    let n_texts = lengths.len() as u64;
    let mut counts = Vec::with_capacity(lengths.len());
    let (mut cumulative, mut assigned) = (0u64, 0u64);
    for (text_idx, length) in lengths.iter().enumerate() {
        // Rounding cumulative shares makes the parts sum exactly to the total.
        cumulative += if sum_lengths == 0 { 1 } else { *length };
        let denominator = if sum_lengths == 0 { n_texts } else { sum_lengths };
        let boundary = (total * cumulative + denominator / 2) / denominator;
        let boundary = if text_idx + 1 == lengths.len() { total } else { boundary };
        counts.push((boundary - assigned) as u32);
        assigned = boundary;
    }
    counts
}

/// Extracts the log-probabilities of the tokens covering characters `[prefix_chars, prompt_chars)` of an echoed
/// prompt. A token straddling the prefix boundary belongs to the continuation.
fn parse_echo_completion(
    text: &str,
    url: &str,
    prefix_chars: usize,
    prompt_chars: usize,
) -> Result<ContinuationLogprobs, LlmError> {
    let parsed: CompletionResponse = serde_json::from_str(text)
        .map_err(|err| LlmError::InvalidResponse { url: url.to_string(), message: format!("completion: {err}") })?;
    let unsupported = |what: &str| {
        LlmError::Unsupported(format!(
            "{url} {what}; continuation log-probabilities need a server that returns prompt log-probabilities with \
             `echo: true` on /completions, such as vLLM"
        ))
    };
    let logprobs = parsed
        .choices
        .into_iter()
        .next()
        .and_then(|choice| choice.logprobs)
        .ok_or_else(|| unsupported("returned no log-probabilities for the echoed prompt"))?;
    if logprobs.token_logprobs.len() != logprobs.tokens.len() {
        return Err(unsupported("returned token and log-probability lists of different lengths"));
    }
    let offsets = match logprobs.text_offset {
        Some(offsets) if offsets.len() == logprobs.tokens.len() => offsets,
        _ => logprobs
            .tokens
            .iter()
            .scan(0usize, |offset, token| {
                let start = *offset;
                *offset += token.chars().count();
                Some(start)
            })
            .collect(),
    };
    let mut token_logprobs = Vec::new();
    for ((token, start), logprob) in logprobs.tokens.iter().zip(offsets).zip(logprobs.token_logprobs) {
        let end = start + token.chars().count();
        if end <= prefix_chars || start >= prompt_chars {
            continue;
        }
        let logprob = logprob.ok_or_else(|| unsupported("returned no log-probability for a continuation token"))?;
        token_logprobs.push(logprob);
    }
    if token_logprobs.is_empty() {
        return Err(unsupported("echoed no tokens of the continuation"));
    }
    let logprob = token_logprobs.iter().map(|&logprob| f64::from(logprob)).sum();
    Ok(ContinuationLogprobs { logprob, token_logprobs })
}

/// Parses `Retry-After`: delay seconds (integer, or decimal as some servers send) or an HTTP date.
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(1e9)));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A transport error with its causes ("connection refused" is usually only in the source chain).
fn error_chain(err: &reqwest::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

fn truncate_chars(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((byte_idx, _)) => format!("{}...", &text[..byte_idx]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcripts() {
        fn check(messages: &[Message], expect: &str) {
            assert_eq!(render_transcript(messages), expect);
        }
        check(&[], "Assistant:");
        check(&[Message::user("Hi")], "User: Hi\n\nAssistant:");
        check(
            &[Message::system("S"), Message::user("Q"), Message::new(Role::Assistant, "A"), Message::user("Q2")],
            "System: S\n\nUser: Q\n\nAssistant: A\n\nUser: Q2\n\nAssistant:",
        );
    }

    #[test]
    fn retry_after_values() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let check =
            |value: &str, expect: Option<Duration>| assert_eq!(parse_retry_after(value, now), expect, "{value}");
        check("3", Some(Duration::from_secs(3)));
        check(" 0 ", Some(Duration::ZERO));
        check("1.5", Some(Duration::from_millis(1500)));
        check("-1", None);
        check("soon", None);
        let in_ten = httpdate::fmt_http_date(now + Duration::from_secs(10));
        check(&in_ten, Some(Duration::from_secs(10)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(10));
        check(&past, Some(Duration::ZERO));
    }

    #[test]
    fn token_count_splits() {
        let check = |total: Option<u32>, texts: &[&str], expect: &[u32]| {
            let texts: Vec<String> = texts.iter().map(|text| text.to_string()).collect();
            assert_eq!(split_token_count(total, &texts), expect, "{total:?} {texts:?}");
        };
        check(Some(7), &["abc"], &[7]);
        check(Some(10), &["aaaa", "a"], &[8, 2]);
        check(Some(3), &["", ""], &[2, 1]);
        check(Some(0), &["a", "b"], &[0, 0]);
        check(None, &["abcde", ""], &[2, 0]);
    }

    #[test]
    fn echo_extraction() {
        let body = serde_json::json!({"choices": [{"logprobs": {
            "tokens": ["User", ":", " Hi", "\n\n", "Assistant", ":", " (", "A", ")"],
            "token_logprobs": [null, -0.1, -0.2, -0.3, -0.4, -0.5, -1.0, -2.0, -0.5],
            "text_offset": [0, 4, 5, 8, 10, 19, 20, 22, 23],
        }}]})
        .to_string();
        let prefix = "User: Hi\n\nAssistant:";
        let prompt = format!("{prefix} (A)");
        let scored = parse_echo_completion(&body, "u", prefix.chars().count(), prompt.chars().count());
        let scored = scored.map_err(|err| err.to_string());
        assert_eq!(scored.as_ref().map(|s| s.token_logprobs.clone()), Ok(vec![-1.0, -2.0, -0.5]));
        assert_eq!(scored.map(|s| s.logprob), Ok(-3.5));

        // Without text_offset the offsets come from token lengths; a token straddling the boundary counts.
        let body = serde_json::json!({"choices": [{"logprobs": {
            "tokens": ["Assistant", ": (", "A)"],
            "token_logprobs": [null, -1.0, -2.0],
        }}]})
        .to_string();
        let scored = parse_echo_completion(&body, "u", "Assistant:".len(), "Assistant: (A)".len());
        assert_eq!(scored.map(|s| s.token_logprobs).map_err(|err| err.to_string()), Ok(vec![-1.0, -2.0]));

        let body = serde_json::json!({"choices": [{"text": "x"}]}).to_string();
        let scored = parse_echo_completion(&body, "u", 3, 5);
        assert!(matches!(scored, Err(LlmError::Unsupported(_))), "{scored:?}");
    }
}
