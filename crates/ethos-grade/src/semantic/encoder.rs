//! The all-MiniLM-L6-v2 sentence encoder: candle's BERT plus sentence-transformers' pooling, in f32 on the CPU.
//!
//! sentence-transformers runs this model as three modules (`modules.json`): the transformer over at most 256 word
//! pieces (`sentence_bert_config.json`), mean pooling over the non-padding tokens (`1_Pooling/config.json`) and L2
//! normalisation. [`MiniLmEncoder::encode`] does the same. The `tokenizer.json` shipped with the model pads every
//! input to 128 tokens and truncates at 128; both settings are replaced here (truncation at 256 as
//! sentence-transformers does, padding per batch by us), so the shipped padding never reaches the model.

use std::path::Path;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{Tokenizer, TruncationParams};

use super::fetch::{model_error, CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE};
use crate::GradeError;

/// Longest input in word pieces, special tokens included (the model's `max_seq_length`); longer texts are cut.
pub const MAX_SEQUENCE_TOKENS: usize = 256;
/// How many texts go through the model in one forward pass by default.
pub const DEFAULT_MAX_BATCH: usize = 32;

/// Id of `[PAD]` in the model's vocabulary.
const PAD_TOKEN_ID: u32 = 0;

/// all-MiniLM-L6-v2: maps texts to unit-norm 384-dimensional embeddings whose dot product is their cosine
/// similarity.
pub struct MiniLmEncoder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    hidden_size: usize,
    max_batch: usize,
}

impl std::fmt::Debug for MiniLmEncoder {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("MiniLmEncoder")
            .field("hidden_size", &self.hidden_size)
            .field("max_batch", &self.max_batch)
            .finish_non_exhaustive()
    }
}

impl MiniLmEncoder {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `dir` (see
    /// [`ensure_minilm`](super::ensure_minilm)).
    pub fn load(dir: &Path) -> Result<Self, GradeError> {
        let device = Device::Cpu;
        let config_path = dir.join(CONFIG_FILE);
        let config_text =
            std::fs::read_to_string(&config_path).map_err(|err| model_error(&config_path, &err.to_string()))?;
        let config: Config = serde_json::from_str(&config_text)
            .map_err(|err| model_error(&config_path, &format!("not a BERT config: {err}")))?;

        let tokenizer_path = dir.join(TOKENIZER_FILE);
        let mut tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|err| model_error(&tokenizer_path, &err.to_string()))?;
        let truncation = TruncationParams { max_length: MAX_SEQUENCE_TOKENS, ..TruncationParams::default() };
        tokenizer
            .with_truncation(Some(truncation))
            .map_err(|err| model_error(&tokenizer_path, &format!("cannot set truncation: {err}")))?;
        tokenizer.with_padding(None);

        let weights_path = dir.join(WEIGHTS_FILE);
        // Reading the 90 MB file beats memory-mapping it here: no `unsafe`, and the tensors are copied once anyway.
        let tensors = candle_core::safetensors::load(&weights_path, &device)
            .map_err(|err| model_error(&weights_path, &format!("cannot read safetensors: {err}")))?;
        let var_builder = VarBuilder::from_tensors(tensors, DType::F32, &device);
        let model = BertModel::load(var_builder, &config)
            .map_err(|err| model_error(&weights_path, &format!("not an all-MiniLM-L6-v2 checkpoint: {err}")))?;
        Ok(Self { model, tokenizer, device, hidden_size: config.hidden_size, max_batch: DEFAULT_MAX_BATCH })
    }

    /// The same encoder with at most `max_batch` texts per forward pass (at least 1). Batch size changes speed
    /// and memory, not results (beyond float rounding, about 1e-6).
    pub fn with_max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch.max(1);
        self
    }

    /// Dimension of the embeddings (384).
    pub fn dimension(&self) -> usize {
        self.hidden_size
    }

    /// Number of word pieces of `text` as the model sees it: special tokens included, truncation applied.
    pub fn n_tokens(&self, text: &str) -> Result<usize, GradeError> {
        let encoding = self.tokenizer.encode_fast(text, true).map_err(|err| tokenizer_error(&err))?;
        Ok(encoding.len())
    }

    /// Unit-norm embeddings of `texts`, in order. Texts are sorted by length and encoded in batches of up to
    /// `max_batch`, each padded only to its own longest text.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, GradeError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self.tokenizer.encode_batch_fast(texts.to_vec(), true).map_err(|err| tokenizer_error(&err))?;
        let token_ids: Vec<&[u32]> = encodings.iter().map(|encoding| encoding.get_ids()).collect();
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&text_idx| token_ids[text_idx].len());

        let mut embeddings = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(self.max_batch) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&text_idx| token_ids[text_idx]).collect();
            let batch_embeddings = self.encode_ids(&batch).map_err(|err| GradeError::Tensor(err.to_string()))?;
            for (&text_idx, embedding) in chunk.iter().zip(batch_embeddings) {
                embeddings[text_idx] = embedding;
            }
        }
        Ok(embeddings)
    }

    /// One forward pass over token-id sequences (each with its special tokens), padded to the longest.
    fn encode_ids(&self, batch: &[&[u32]]) -> candle_core::Result<Vec<Vec<f32>>> {
        let n_texts = batch.len();
        let max_len = batch.iter().map(|ids| ids.len()).max().unwrap_or(0).max(1);
        let mut input_ids = Vec::with_capacity(n_texts * max_len);
        let mut mask = Vec::with_capacity(n_texts * max_len);
        for ids in batch {
            input_ids.extend_from_slice(ids);
            input_ids.extend(std::iter::repeat_n(PAD_TOKEN_ID, max_len - ids.len()));
            mask.extend(std::iter::repeat_n(1f32, ids.len()));
            mask.extend(std::iter::repeat_n(0f32, max_len - ids.len()));
        }
        let input_ids = Tensor::from_vec(input_ids, (n_texts, max_len), &self.device)?;
        let token_type_ids = input_ids.zeros_like()?;
        // (B, L)
        let mask = Tensor::from_vec(mask, (n_texts, max_len), &self.device)?;
        // (B, L, H)
        let hidden = self.model.forward(&input_ids, &token_type_ids, Some(&mask))?;

        // Mean pooling over real tokens: sum(hidden * mask) / max(sum(mask), 1e-9), as sentence-transformers.
        let mask_3d = mask.unsqueeze(2)?; // (B, L, 1)
        let summed = hidden.broadcast_mul(&mask_3d)?.sum(1)?; // (B, H)
        let counts = mask.sum_keepdim(1)?.clamp(1e-9f32, f32::MAX)?; // (B, 1)
        let pooled = summed.broadcast_div(&counts)?;

        // L2 normalisation with torch's `F.normalize` floor on the norm.
        let norms = pooled.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12f32, f32::MAX)?; // (B, 1)
        pooled.broadcast_div(&norms)?.to_vec2::<f32>()
    }
}

/// Cosine similarity of two vectors of the same length, clamped to [-1, 1] against rounding; 0 when either is zero.
/// For [`MiniLmEncoder::encode`] outputs it equals their dot product up to rounding.
pub fn cosine(left: &[f32], right: &[f32]) -> f32 {
    let dot: f32 = left.iter().zip(right).map(|(a, b)| a * b).sum();
    let left_norm = left.iter().map(|a| a * a).sum::<f32>().sqrt();
    let right_norm = right.iter().map(|b| b * b).sum::<f32>().sqrt();
    if left_norm == 0.0 || right_norm == 0.0 {
        return 0.0;
    }
    (dot / (left_norm * right_norm)).clamp(-1.0, 1.0)
}

fn tokenizer_error(err: &tokenizers::Error) -> GradeError {
    GradeError::Tensor(format!("tokenizing: {err}"))
}
