//! Embedded Gemma-3-270M backend: the Q4_K_M GGUF run in-process with candle's quantized kernels,
//! optionally with a LoRA adapter on top.
//!
//! - [`fetch`] finds (or assembles) the GGUF file.
//! - [`gemma3`] is the forward pass; [`generate`] samples and scores on top of it in batches.
//! - [`lora`] is the adapter format (peft-named safetensors) and the low-rank update that
//!   [`gemma3::Gemma3::set_adapter`] adds to the forward pass.
//! - [`chat_format`] writes conversations as transcripts: few-shot for the base model, or the
//!   format an adapter names.
//! - [`EmbeddedModel`] puts these behind [`ChatModel`] (`embedded:gemma-3-270m[+adapter=PATH]`, and
//!   `embedded:ethos-warmstart`: the base model with the shipped warm-start adapter, [`WARMSTART_ADAPTER`]).
//!
//! A trainer that samples from its current policy in-process skips [`EmbeddedModel`] and its
//! async mutex: [`load_gemma`] gives the model and tokenizer, [`gemma3::Gemma3::set_adapter`]
//! swaps the adapter between steps, and [`generate::generate`] samples [`generate::GenerationJob`]s
//! (prompts rendered by [`chat_format::ChatFormat`], stop tokens from
//! [`generate::StopTokens::from_tokenizer`]); each [`crate::Generation`] carries its `token_ids`.

pub mod chat_format;
pub mod fetch;
pub mod gemma3;
pub mod generate;
pub mod lora;
pub mod q8_matmul;
mod tokenizer;

use std::borrow::Cow;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sha2::{Digest, Sha256};

pub use fetch::ensure_gemma_gguf;
pub use tokenizer::GemmaTokenizer;

use self::chat_format::ChatFormat;
use self::gemma3::Gemma3;
use self::generate::{GenerationJob, StopTokens, DEFAULT_MAX_BATCH};
use self::lora::LoraAdapter;
use crate::{ChatModel, ChatRequest, ChatResponse, ContinuationLogprobs, ContinuationRequest, LlmError, ModelSpec};

/// Loads the model and its tokenizer from a Gemma 3 GGUF file (e.g. [`ensure_gemma_gguf`]'s),
/// without an adapter. Building the tokenizer takes 1-2 s: load once and share.
pub fn load_gemma(path: &Path) -> Result<(Gemma3, GemmaTokenizer), LlmError> {
    let (model, content) = Gemma3::load(path)?;
    let tokenizer = GemmaTokenizer::from_gguf(&content)?;
    Ok((model, tokenizer))
}

/// The supervised warm-start adapter shipped in the repository (`adapters/warmstart.safetensors`; its
/// README gives the command and data that reproduce it). Compiled in, so `embedded:ethos-warmstart`
/// resolves from any working directory without a path.
pub static WARMSTART_ADAPTER: &[u8] =
    include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../adapters/warmstart.safetensors"));

/// The adapter an `embedded:` spec names, with what pins it.
#[derive(Debug)]
pub struct SpecAdapter {
    /// The parsed adapter, checked to be for the base model.
    pub adapter: LoraAdapter,
    /// sha256 (hex) of the exact bytes parsed.
    pub sha256: String,
    /// Where it came from: the file path, or `builtin:ethos-warmstart`.
    pub source: String,
}

/// The adapter of an `embedded:` spec: `+adapter=PATH`, the built-in warm start for
/// `embedded:ethos-warmstart`, or `None` for the bare base model.
pub fn spec_adapter(spec: &ModelSpec) -> Result<Option<SpecAdapter>, LlmError> {
    let (model_name, adapter_path) = match spec {
        ModelSpec::Embedded { model, adapter } => (model.as_str(), adapter),
        other => return Err(LlmError::Unsupported(format!("`{other}` is not an embedded model"))),
    };
    let (bytes, source) = match (model_name, adapter_path) {
        (crate::WARMSTART_MODEL, _) => {
            (Cow::Borrowed(WARMSTART_ADAPTER), format!("builtin:{}", crate::WARMSTART_MODEL))
        }
        (_, Some(path)) => {
            let bytes = std::fs::read(path)
                .map_err(|err| LlmError::ModelFile { path: path.display().to_string(), message: err.to_string() })?;
            (Cow::Owned(bytes), path.display().to_string())
        }
        (_, None) => return Ok(None),
    };
    // Hash the bytes that are parsed, so the identity pins exactly the weights used.
    let sha256: String = Sha256::digest(&bytes).iter().map(|byte| format!("{byte:02x}")).collect();
    let adapter = LoraAdapter::from_bytes(&bytes, &source)?;
    Ok(Some(SpecAdapter { adapter, sha256, source }))
}

/// Gemma-3-270M in-process. Requests are decoded together in batches of up to
/// [`DEFAULT_MAX_BATCH`] sequences on a blocking thread; one model serves one batch at a time.
#[derive(Debug)]
pub struct EmbeddedModel {
    spec: ModelSpec,
    identity: String,
    format: ChatFormat,
    engine: Arc<Mutex<Engine>>,
}

/// The state a batch needs, behind the model's mutex.
#[derive(Debug)]
struct Engine {
    model: Gemma3,
    tokenizer: GemmaTokenizer,
    stop_tokens: StopTokens,
}

impl EmbeddedModel {
    /// Loads the model named by an `embedded:` spec, fetching the GGUF file if needed. With
    /// `+adapter=PATH` the adapter is loaded, checked against the model and applied, prompts use
    /// the adapter's chat format, and the identity gains `+adapter@sha256:<16 hex of the file>`.
    pub fn load(spec: &ModelSpec) -> Result<Self, LlmError> {
        // The adapter first: a wrong path fails before the 250 MB model is read.
        let adapter = spec_adapter(spec)?;
        let path = fetch::ensure_gemma_gguf()?;
        let digest = fetch::file_sha256_cached(&path)?;
        let mut identity = format!("gemma-3-270m-q4_k_m@sha256:{}", &digest[..16.min(digest.len())]);
        let (mut model, tokenizer) = load_gemma(&path)?;
        let mut format = ChatFormat::for_model(crate::BASE_MODEL);
        if let Some(found) = &adapter {
            model.set_adapter(Some(&found.adapter))?;
            format = found.adapter.chat_format();
            identity.push_str(&format!("+adapter@sha256:{}", &found.sha256[..16]));
        }
        let stop_tokens = StopTokens::from_tokenizer(&tokenizer);
        Ok(EmbeddedModel {
            spec: spec.clone(),
            identity,
            format,
            engine: Arc::new(Mutex::new(Engine { model, tokenizer, stop_tokens })),
        })
    }

    /// The chat format prompts are written in.
    pub fn chat_format(&self) -> ChatFormat {
        self.format
    }

    /// Runs `work` on a blocking thread with the engine locked.
    async fn with_engine<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Engine) -> T + Send + 'static,
    ) -> Result<T, LlmError> {
        let engine = Arc::clone(&self.engine);
        tokio::task::spawn_blocking(move || {
            let guard = engine.lock().map_err(|_| LlmError::Inference("an earlier batch panicked".to_string()))?;
            Ok(work(&guard))
        })
        .await
        .map_err(|err| LlmError::Inference(format!("inference thread failed: {err}")))?
    }
}

#[async_trait]
impl ChatModel for EmbeddedModel {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn identity(&self) -> String {
        self.identity.clone()
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let mut results = self.chat_batch(std::slice::from_ref(request)).await;
        results.pop().unwrap_or_else(|| Err(LlmError::Inference("no result".to_string())))
    }

    async fn chat_batch(&self, requests: &[ChatRequest]) -> Vec<Result<ChatResponse, LlmError>> {
        let format = self.format;
        let n_requests = requests.len();
        let requests = requests.to_vec();
        let outcome = self
            .with_engine(move |engine| {
                // Requests that cannot be tokenized fail alone; the rest are decoded together.
                let mut results: Vec<Option<Result<ChatResponse, LlmError>>> = Vec::with_capacity(requests.len());
                let mut jobs = Vec::new();
                let mut job_owner = Vec::new();
                for (request_idx, request) in requests.iter().enumerate() {
                    let prompt = format.render_prompt(&request.messages);
                    match engine.tokenizer.encode(&prompt, true) {
                        Ok(prompt_ids) => {
                            let mut sampling = request.sampling.clone();
                            sampling.stop.extend(format.stop_strings());
                            jobs.push(GenerationJob { prompt_ids, sampling });
                            job_owner.push(request_idx);
                            results.push(None);
                        }
                        Err(err) => results.push(Some(Err(err))),
                    }
                }
                match generate::generate(
                    &engine.model,
                    &engine.tokenizer,
                    &engine.stop_tokens,
                    &jobs,
                    DEFAULT_MAX_BATCH,
                ) {
                    Ok(generations) => {
                        for ((request_idx, job), mut choices) in job_owner.into_iter().zip(&jobs).zip(generations) {
                            for choice in &mut choices {
                                choice.text = format.clean_reply(&choice.text);
                            }
                            results[request_idx] =
                                Some(Ok(ChatResponse { choices, prompt_tokens: Some(job.prompt_ids.len() as u32) }));
                        }
                    }
                    Err(err) => {
                        let message = err.to_string();
                        for request_idx in job_owner {
                            results[request_idx] = Some(Err(LlmError::Inference(message.clone())));
                        }
                    }
                }
                results
                    .into_iter()
                    .map(|result| result.unwrap_or_else(|| Err(LlmError::Inference("request was not run".to_string()))))
                    .collect::<Vec<_>>()
            })
            .await;
        match outcome {
            Ok(results) => results,
            Err(err) => {
                let message = err.to_string();
                (0..n_requests).map(|_| Err(LlmError::Inference(message.clone()))).collect()
            }
        }
    }

    async fn continuation_logprobs(
        &self,
        request: &ContinuationRequest,
    ) -> Result<Vec<ContinuationLogprobs>, LlmError> {
        let prompt = self.format.render_prompt(&request.messages);
        let continuations = request.continuations.clone();
        self.with_engine(move |engine| {
            let prompt_ids = engine.tokenizer.encode(&prompt, true)?;
            let continuation_ids =
                continuations.iter().map(|text| engine.tokenizer.encode(text, false)).collect::<Result<Vec<_>, _>>()?;
            let scores = generate::continuation_logprobs(&engine.model, &prompt_ids, &continuation_ids)?;
            Ok(scores
                .into_iter()
                .map(|token_logprobs| ContinuationLogprobs {
                    // A fold from +0.0: an empty sum of f64 in std is -0.0.
                    logprob: token_logprobs.iter().fold(0.0, |total, &logprob| total + logprob as f64),
                    token_logprobs,
                })
                .collect())
        })
        .await?
    }
}
