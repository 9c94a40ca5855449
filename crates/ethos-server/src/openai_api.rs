//! The OpenAI chat-completions wire format and its handlers.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ethos_core::records::{FinishReason, Message, Role};
use ethos_llm::{ChatRequest, ChatResponse, LlmError, SamplingParams};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::oneshot;

use crate::AppState;

/// A `POST /v1/chat/completions` body (the subset ethos honours; unknown fields are ignored, as OpenAI does).
#[derive(Debug, Clone, Deserialize)]
pub struct ChatCompletionRequest {
    /// Model name; the server has one model and accepts any name.
    #[serde(default)]
    pub model: Option<String>,
    /// The conversation.
    pub messages: Vec<WireMessage>,
    /// Number of choices.
    #[serde(default)]
    pub n: Option<u32>,
    /// Sampling temperature (OpenAI's default is 1).
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Nucleus mass.
    #[serde(default)]
    pub top_p: Option<f32>,
    /// Token budget (legacy name).
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Token budget (current name).
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    /// One stop string or several.
    #[serde(default)]
    pub stop: Option<StopField>,
    /// Sampler seed.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Whether to return log-probabilities of the generated tokens.
    #[serde(default)]
    pub logprobs: Option<bool>,
    /// How many alternatives per token, with `logprobs`.
    #[serde(default)]
    pub top_logprobs: Option<u32>,
    /// Streaming is not supported.
    #[serde(default)]
    pub stream: Option<bool>,
}

/// A message on the wire: content is a string or a list of text parts.
#[derive(Debug, Clone, Deserialize)]
pub struct WireMessage {
    /// `system`, `developer`, `user` or `assistant`.
    pub role: String,
    /// Text or parts.
    pub content: WireContent,
}

/// Message content.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum WireContent {
    /// Plain text.
    Text(String),
    /// Content parts; only `text` parts are supported.
    Parts(Vec<ContentPart>),
}

/// One content part.
#[derive(Debug, Clone, Deserialize)]
pub struct ContentPart {
    /// Part type; only `text`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    #[serde(default)]
    pub text: Option<String>,
}

/// `stop` as a string or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StopField {
    /// One stop string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// A `chat.completion` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatCompletionResponse {
    /// Response id.
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// Model name.
    pub model: String,
    /// The choices.
    pub choices: Vec<serde_json::Value>,
    /// Token counts.
    pub usage: serde_json::Value,
}

#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
    param: Option<&'static str>,
}

impl ApiError {
    fn invalid(message: impl Into<String>, param: Option<&'static str>) -> Self {
        ApiError { status: StatusCode::BAD_REQUEST, message: message.into(), param }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = if self.status.is_client_error() { "invalid_request_error" } else { "server_error" };
        let body = json!({"error": {"message": self.message, "type": kind, "param": self.param, "code": null}});
        (self.status, Json(body)).into_response()
    }
}

pub(crate) async fn list_models(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "object": "list",
        "data": [{"id": state.config.model_name, "object": "model", "created": 0, "owned_by": "ethos"}]
    }))
}

pub(crate) async fn chat_completions(State(state): State<AppState>, body: Bytes) -> Response {
    match answer(&state, &body).await {
        Ok(response) => Json(response).into_response(),
        Err(err) => err.into_response(),
    }
}

async fn answer(state: &AppState, body: &[u8]) -> Result<ChatCompletionResponse, ApiError> {
    let wire: ChatCompletionRequest = serde_json::from_slice(body).map_err(|err| {
        ApiError::invalid(format!("request body is not a valid chat completion request: {err}"), None)
    })?;
    let request = to_chat_request(&wire, &state.config)?;
    let (reply, receive) = oneshot::channel();
    state.batcher.send((request.clone(), reply)).await.map_err(|_| ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: "server is shutting down".into(),
        param: None,
    })?;
    let result = receive.await.map_err(|_| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: "model task ended".into(),
        param: None,
    })?;
    let response = result.map_err(|err: LlmError| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: format!("model error: {err}"),
        param: None,
    })?;
    let model = wire.model.clone().unwrap_or_else(|| state.config.model_name.clone());
    Ok(to_wire_response(&response, &request, model))
}

fn to_chat_request(wire: &ChatCompletionRequest, config: &crate::ServerConfig) -> Result<ChatRequest, ApiError> {
    if wire.stream == Some(true) {
        return Err(ApiError::invalid("streaming is not supported by ethos serve", Some("stream")));
    }
    if wire.messages.is_empty() {
        return Err(ApiError::invalid("messages must not be empty", Some("messages")));
    }
    let mut messages = Vec::with_capacity(wire.messages.len());
    for message in &wire.messages {
        let role = match message.role.as_str() {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => return Err(ApiError::invalid(format!("unsupported role `{other}`"), Some("messages"))),
        };
        let content = match &message.content {
            WireContent::Text(text) => text.clone(),
            WireContent::Parts(parts) => {
                let mut text = String::new();
                for part in parts {
                    match (part.kind.as_str(), &part.text) {
                        ("text", Some(part_text)) => text.push_str(part_text),
                        (kind, _) => {
                            return Err(ApiError::invalid(
                                format!("unsupported content part `{kind}` (only text)"),
                                Some("messages"),
                            ))
                        }
                    }
                }
                text
            }
        };
        messages.push(Message::new(role, content));
    }
    let n = wire.n.unwrap_or(1);
    if n == 0 || n > config.max_n {
        return Err(ApiError::invalid(format!("n must be in 1..={}", config.max_n), Some("n")));
    }
    let temperature = wire.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid("temperature must be in [0, 2]", Some("temperature")));
    }
    let top_p = wire.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::invalid("top_p must be in (0, 1]", Some("top_p")));
    }
    let max_tokens = wire.max_completion_tokens.or(wire.max_tokens).unwrap_or(512);
    if max_tokens == 0 || max_tokens > config.max_tokens_limit {
        return Err(ApiError::invalid(
            format!("max_tokens must be in 1..={}", config.max_tokens_limit),
            Some("max_tokens"),
        ));
    }
    let stop = match &wire.stop {
        None => Vec::new(),
        Some(StopField::One(text)) => vec![text.clone()],
        Some(StopField::Many(texts)) => texts.clone(),
    };
    let top_logprobs = match (wire.logprobs, wire.top_logprobs) {
        (Some(true), top) => Some(top.unwrap_or(0).min(20)),
        _ => None,
    };
    // Without a seed, sampling differs per request, as with OpenAI's API.
    let seed = wire.seed.unwrap_or_else(|| {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or_default()
    });
    Ok(ChatRequest {
        messages,
        sampling: SamplingParams { n, temperature, top_p, max_tokens, stop, seed, top_logprobs },
    })
}

fn to_wire_response(response: &ChatResponse, request: &ChatRequest, model: String) -> ChatCompletionResponse {
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    let mut completion_tokens = 0u64;
    let choices = response
        .choices
        .iter()
        .enumerate()
        .map(|(index, generation)| {
            completion_tokens += u64::from(generation.n_tokens);
            let logprobs = match (&generation.top_logprobs, request.sampling.top_logprobs) {
                (Some(per_token), Some(_)) => json!({"content": per_token.iter().map(|alternatives| {
                    let chosen = alternatives.first();
                    json!({
                        "token": chosen.map(|c| c.token.clone()).unwrap_or_default(),
                        "logprob": chosen.map(|c| c.logprob).unwrap_or(f32::NEG_INFINITY),
                        "top_logprobs": alternatives.iter().map(|a| json!({"token": a.token, "logprob": a.logprob})).collect::<Vec<_>>(),
                    })
                }).collect::<Vec<_>>()}),
                _ => serde_json::Value::Null,
            };
            json!({
                "index": index,
                "message": {"role": "assistant", "content": generation.text},
                "finish_reason": match generation.finish_reason { FinishReason::Stop => "stop", FinishReason::Length => "length" },
                "logprobs": logprobs,
            })
        })
        .collect();
    let prompt_tokens = u64::from(response.prompt_tokens.unwrap_or(0));
    ChatCompletionResponse {
        id: format!("chatcmpl-ethos-{created}-{}", request.sampling.seed),
        object: "chat.completion".to_string(),
        created,
        model,
        choices,
        usage: json!({
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: serde_json::Value) -> Result<ChatRequest, ApiError> {
        let wire: ChatCompletionRequest = serde_json::from_value(body).unwrap();
        to_chat_request(&wire, &crate::ServerConfig::default())
    }

    #[test]
    fn maps_sampling_fields() {
        let request = parse(json!({
            "model": "x", "messages": [{"role": "system", "content": "Be brief."},
                                       {"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
            "n": 3, "temperature": 0, "top_p": 0.5, "max_tokens": 7, "stop": "\n", "seed": 9,
            "logprobs": true, "top_logprobs": 5
        }))
        .unwrap();
        assert_eq!(request.messages, vec![Message::system("Be brief."), Message::user("Hi")]);
        let sampling = request.sampling;
        assert_eq!((sampling.n, sampling.temperature, sampling.top_p, sampling.max_tokens), (3, 0.0, 0.5, 7));
        assert_eq!((sampling.stop, sampling.seed, sampling.top_logprobs), (vec!["\n".to_string()], 9, Some(5)));
    }

    #[test]
    fn rejects_bad_requests_with_the_parameter_named() {
        let cases = [
            (json!({"messages": []}), "messages"),
            (json!({"messages": [{"role": "tool", "content": "x"}]}), "messages"),
            (json!({"messages": [{"role": "user", "content": "x"}], "n": 0}), "n"),
            (json!({"messages": [{"role": "user", "content": "x"}], "temperature": 3}), "temperature"),
            (json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}), "max_tokens"),
            (json!({"messages": [{"role": "user", "content": "x"}], "stream": true}), "stream"),
        ];
        for (body, param) in cases {
            let err = parse(body).unwrap_err();
            assert_eq!(err.param, Some(param), "{}", err.message);
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
        }
    }
}
