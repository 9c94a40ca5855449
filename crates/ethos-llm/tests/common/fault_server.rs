//! An OpenAI-compatible server on 127.0.0.1:0 that answers deterministically from the request and injects faults.
//!
//! Replies: choice `i` of a chat request is [`expected_reply`]`(last user message, i, seed)`. Whether attempt `k` of a
//! request (keyed by its last user message, or its prompt for `/completions`) faults is a hash of `(key, k)`, so a
//! run is reproducible whatever order requests arrive in. Only successful answers are recorded in `answered`.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

/// The kinds of injected failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 429 without `Retry-After`.
    RateLimited,
    /// 429 with the configured `Retry-After`.
    RateLimitedRetryAfter,
    /// 500.
    ServerError,
    /// Sleeps for `hang`, past the client's timeout, then answers 500.
    Hang,
    /// 200 with a body that is not JSON.
    MalformedJson,
}

/// The value of `Retry-After` on [`Fault::RateLimitedRetryAfter`].
#[derive(Debug, Clone)]
pub enum RetryAfter {
    /// Sent verbatim (delay seconds).
    Value(String),
    /// An HTTP date this far after the moment of answering.
    DateIn(Duration),
}

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Share of attempts that fault.
    pub fault_fraction: f64,
    /// Fault kinds, chosen per faulty attempt by hash.
    pub faults: Vec<Fault>,
    /// The first this many attempts of every request fault, whatever `fault_fraction` says.
    pub fail_first_attempts: u32,
    /// `Retry-After` of [`Fault::RateLimitedRetryAfter`].
    pub retry_after: RetryAfter,
    /// How long [`Fault::Hang`] stalls.
    pub hang: Duration,
    /// At most this many choices per answer (a server ignoring `n` returns 1).
    pub max_choices: Option<u32>,
    /// Whether `/v1/completions` (echo scoring) exists; without it the path is a 404.
    pub completions: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            fault_fraction: 0.0,
            faults: vec![Fault::ServerError],
            fail_first_attempts: 0,
            retry_after: RetryAfter::Value("0".into()),
            hang: Duration::from_secs(5),
            max_choices: None,
            completions: true,
        }
    }
}

/// One successful answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answered {
    /// `chat/completions` or `completions`.
    pub path: &'static str,
    /// Last user message (chat) or prompt (completions).
    pub key: String,
    /// Number of choices returned.
    pub n_choices: u32,
}

/// A running server; it stops with the test's runtime.
pub struct FaultServer {
    /// `http://127.0.0.1:PORT/v1`.
    pub base_url: String,
    state: Arc<ServerState>,
}

struct ServerState {
    config: ServerConfig,
    attempts: Mutex<HashMap<String, u32>>,
    answered: Mutex<Vec<Answered>>,
    authorizations: Mutex<Vec<Option<String>>>,
    bodies: Mutex<Vec<Value>>,
    n_requests: AtomicUsize,
    n_faults: AtomicUsize,
}

/// The reply the server gives as choice `choice_idx` of a chat request.
pub fn expected_reply(last_user_message: &str, choice_idx: u32, seed: u64) -> String {
    format!("echo: {last_user_message} #{choice_idx} seed={seed}")
}

/// The log-probability the server gives a prompt character (every character is one token).
pub fn char_logprob(character: char) -> f32 {
    -((character as u32 % 7) as f32 + 1.0) / 4.0
}

/// A base URL nobody listens on (the port was bound and released).
pub async fn dead_base_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a port");
    let port = listener.local_addr().expect("local address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}/v1")
}

impl FaultServer {
    /// Binds 127.0.0.1:0 and serves in the current runtime.
    pub async fn start(config: ServerConfig) -> FaultServer {
        let completions = config.completions;
        let state = Arc::new(ServerState {
            config,
            attempts: Mutex::new(HashMap::new()),
            answered: Mutex::new(Vec::new()),
            authorizations: Mutex::new(Vec::new()),
            bodies: Mutex::new(Vec::new()),
            n_requests: AtomicUsize::new(0),
            n_faults: AtomicUsize::new(0),
        });
        let mut app = Router::new().route("/v1/chat/completions", post(chat_completions));
        if completions {
            app = app.route("/v1/completions", post(echo_completions));
        }
        let app = app.with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let address = listener.local_addr().expect("local address");
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        FaultServer { base_url: format!("http://{address}/v1"), state }
    }

    /// Every successful answer, in order.
    pub fn answered(&self) -> Vec<Answered> {
        self.state.answered.lock().expect("lock").clone()
    }

    /// Requests received, faulty or not.
    pub fn n_requests(&self) -> usize {
        self.state.n_requests.load(Ordering::SeqCst)
    }

    /// Faults injected.
    pub fn n_faults(&self) -> usize {
        self.state.n_faults.load(Ordering::SeqCst)
    }

    /// The `Authorization` header of every request.
    pub fn authorizations(&self) -> Vec<Option<String>> {
        self.state.authorizations.lock().expect("lock").clone()
    }

    /// The JSON body of every request.
    pub fn bodies(&self) -> Vec<Value> {
        self.state.bodies.lock().expect("lock").clone()
    }
}

async fn chat_completions(State(state): State<Arc<ServerState>>, headers: HeaderMap, body: Bytes) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => return (StatusCode::BAD_REQUEST, format!("bad JSON: {err}")).into_response(),
    };
    let key = request["messages"]
        .as_array()
        .and_then(|messages| messages.iter().rev().find(|message| message["role"] == "user"))
        .and_then(|message| message["content"].as_str())
        .unwrap_or_default()
        .to_string();
    if let Some(response) = state.intercept(&key, &headers, &request).await {
        return response;
    }
    let n_wanted = request["n"].as_u64().unwrap_or(1) as u32;
    let n_choices = state.config.max_choices.map_or(n_wanted, |max| n_wanted.min(max));
    let seed = request["seed"].as_u64().unwrap_or(0);
    let top_logprobs = request["top_logprobs"].as_u64();
    let choices: Vec<Value> = (0..n_choices)
        .map(|choice_idx| {
            let text = expected_reply(&key, choice_idx, seed);
            let logprobs = top_logprobs.map(|k| {
                let content: Vec<Value> = text
                    .split(' ')
                    .map(|word| {
                        let top: Vec<Value> = (0..k)
                            .map(|rank| json!({"token": format!("{word}{rank}"), "logprob": -(rank as f32) - 0.5}))
                            .collect();
                        json!({"token": word, "logprob": -0.5, "top_logprobs": top})
                    })
                    .collect();
                json!({"content": content})
            });
            json!({
                "index": choice_idx,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
                "logprobs": logprobs,
            })
        })
        .collect();
    let completion_tokens: usize =
        choices.iter().map(|choice| choice["message"]["content"].as_str().unwrap_or("").split(' ').count()).sum();
    state.record(Answered { path: "chat/completions", key, n_choices });
    let response = json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "choices": choices,
        "usage": {"prompt_tokens": 3, "completion_tokens": completion_tokens},
    });
    (StatusCode::OK, axum::Json(response)).into_response()
}

async fn echo_completions(State(state): State<Arc<ServerState>>, headers: HeaderMap, body: Bytes) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => return (StatusCode::BAD_REQUEST, format!("bad JSON: {err}")).into_response(),
    };
    let prompt = request["prompt"].as_str().unwrap_or_default().to_string();
    if let Some(response) = state.intercept(&prompt, &headers, &request).await {
        return response;
    }
    if request["echo"] != json!(true) || request["max_tokens"] != json!(0) {
        return (StatusCode::BAD_REQUEST, "this server only scores prompts").into_response();
    }
    let tokens: Vec<String> = prompt.chars().map(String::from).collect();
    let token_logprobs: Vec<Option<f32>> =
        prompt.chars().enumerate().map(|(char_idx, c)| (char_idx > 0).then(|| char_logprob(c))).collect();
    let text_offset: Vec<usize> = (0..tokens.len()).collect();
    state.record(Answered { path: "completions", key: prompt.clone(), n_choices: 1 });
    let response = json!({
        "choices": [{
            "index": 0,
            "text": prompt,
            "finish_reason": "length",
            "logprobs": {"tokens": tokens, "token_logprobs": token_logprobs, "text_offset": text_offset},
        }],
    });
    (StatusCode::OK, axum::Json(response)).into_response()
}

impl ServerState {
    /// Records the request and returns the fault response when this attempt faults.
    async fn intercept(&self, key: &str, headers: &HeaderMap, request: &Value) -> Option<Response> {
        self.n_requests.fetch_add(1, Ordering::SeqCst);
        let authorization =
            headers.get("authorization").and_then(|value| value.to_str().ok()).map(|value| value.to_string());
        self.authorizations.lock().expect("lock").push(authorization.clone());
        self.bodies.lock().expect("lock").push(request.clone());
        if key.contains("bad-request") {
            return Some((StatusCode::BAD_REQUEST, "this request is invalid").into_response());
        }
        if key.contains("unauthorized") {
            let body = format!("invalid key in `{}`", authorization.unwrap_or_default());
            return Some((StatusCode::UNAUTHORIZED, body).into_response());
        }
        let attempt_idx = {
            let mut attempts = self.attempts.lock().expect("lock");
            let count = attempts.entry(key.to_string()).or_insert(0);
            *count += 1;
            *count - 1
        };
        let faulty = attempt_idx < self.config.fail_first_attempts
            || unit_hash(key, attempt_idx, 0) < self.config.fault_fraction;
        if !faulty || self.config.faults.is_empty() {
            return None;
        }
        self.n_faults.fetch_add(1, Ordering::SeqCst);
        let fault_idx = (unit_hash(key, attempt_idx, 1) * self.config.faults.len() as f64) as usize;
        let fault = self.config.faults[fault_idx.min(self.config.faults.len() - 1)];
        // Error bodies quote the Authorization header, so tests can check the client masks the key.
        let quoted = format!("request had authorization `{}`", authorization.unwrap_or_default());
        Some(match fault {
            Fault::RateLimited => (StatusCode::TOO_MANY_REQUESTS, format!("slow down; {quoted}")).into_response(),
            Fault::RateLimitedRetryAfter => {
                let value = match &self.config.retry_after {
                    RetryAfter::Value(value) => value.clone(),
                    RetryAfter::DateIn(delay) => httpdate::fmt_http_date(SystemTime::now() + *delay),
                };
                (StatusCode::TOO_MANY_REQUESTS, [("retry-after", value)], format!("slow down; {quoted}"))
                    .into_response()
            }
            Fault::ServerError => (StatusCode::INTERNAL_SERVER_ERROR, format!("boom; {quoted}")).into_response(),
            Fault::Hang => {
                tokio::time::sleep(self.config.hang).await;
                (StatusCode::INTERNAL_SERVER_ERROR, "hung").into_response()
            }
            Fault::MalformedJson => {
                (StatusCode::OK, [("content-type", "application/json")], "{\"choices\": [{\"mess").into_response()
            }
        })
    }

    fn record(&self, answered: Answered) {
        self.answered.lock().expect("lock").push(answered);
    }
}

/// A deterministic number in [0, 1) from a request key, an attempt index and a stream id.
fn unit_hash(key: &str, attempt_idx: u32, stream: u8) -> f64 {
    let mut hasher = DefaultHasher::new();
    (key, attempt_idx, stream).hash(&mut hasher);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}
