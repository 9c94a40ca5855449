//! ethos-server: an OpenAI-compatible HTTP server over any [`ChatModel`], so that any OpenAI client (and ethos's
//! own `openai:` backend) can use the embedded model.
//!
//! Concurrent requests are gathered into batches (up to `max_batch` requests arriving within `batch_window`)
//! and answered with one `chat_batch` call, because the embedded model decodes a batch of sequences for little
//! more than the cost of one.
//!
//! Endpoints: `GET /health`, `GET /v1/models`, `POST /v1/chat/completions`.
//!
//! ```no_run
//! # async fn example(model: std::sync::Arc<dyn ethos_llm::ChatModel>) -> std::io::Result<()> {
//! let config = ethos_server::ServerConfig::default(); // binds 127.0.0.1:8080
//! let listener = tokio::net::TcpListener::bind(config.address).await?;
//! ethos_server::serve(listener, model, config).await
//! # }
//! ```
#![deny(missing_docs)]

mod openai_api;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use ethos_llm::{ChatModel, ChatRequest, ChatResponse, LlmError};
use tokio::sync::{mpsc, oneshot};

pub use openai_api::{ChatCompletionRequest, ChatCompletionResponse};

/// Settings of the server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind; loopback unless the user asks otherwise.
    pub address: SocketAddr,
    /// Name reported by `/v1/models`; requests may name any model (the server has one).
    pub model_name: String,
    /// Most requests answered by one batched model call.
    pub max_batch: usize,
    /// How long the batcher waits for more requests after the first arrives.
    pub batch_window: Duration,
    /// Largest `max_tokens` a request may ask for.
    pub max_tokens_limit: u32,
    /// Largest `n` a request may ask for.
    pub max_n: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            address: SocketAddr::from(([127, 0, 0, 1], 8080)),
            model_name: "gemma-3-270m".to_string(),
            max_batch: 8,
            batch_window: Duration::from_millis(5),
            max_tokens_limit: 4096,
            max_n: 64,
        }
    }
}

type Reply = oneshot::Sender<Result<ChatResponse, LlmError>>;

/// Shared state of the handlers.
#[derive(Clone)]
struct AppState {
    config: Arc<ServerConfig>,
    batcher: mpsc::Sender<(ChatRequest, Reply)>,
}

/// The router, with a batcher task running on the current tokio runtime.
pub fn router(model: Arc<dyn ChatModel>, config: ServerConfig) -> Router {
    let (sender, receiver) = mpsc::channel(1024);
    tokio::spawn(run_batcher(model, receiver, config.max_batch.max(1), config.batch_window));
    let state = AppState { config: Arc::new(config), batcher: sender };
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/v1/models", get(openai_api::list_models))
        .route("/v1/chat/completions", post(openai_api::chat_completions))
        .with_state(state)
}

/// Serves until the listener fails or the task is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    model: Arc<dyn ChatModel>,
    config: ServerConfig,
) -> std::io::Result<()> {
    let app = router(model, config);
    axum::serve(listener, app).await
}

/// Gathers requests into batches: waits for one, then collects more until the batch is full or the window
/// closes, and answers them with one `chat_batch` call.
async fn run_batcher(
    model: Arc<dyn ChatModel>,
    mut receiver: mpsc::Receiver<(ChatRequest, Reply)>,
    max_batch: usize,
    window: Duration,
) {
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + window;
        while batch.len() < max_batch {
            match tokio::time::timeout_at(deadline, receiver.recv()).await {
                Ok(Some(item)) => batch.push(item),
                Ok(None) | Err(_) => break,
            }
        }
        let (requests, replies): (Vec<ChatRequest>, Vec<Reply>) = batch.into_iter().unzip();
        let results = model.chat_batch(&requests).await;
        for (reply, result) in replies.into_iter().zip(results) {
            // A client that hung up no longer wants its answer.
            let _ = reply.send(result);
        }
    }
}
