//! Gemma 3 text decoder over GGUF quantized weights, written for batched decoding on CPU.
//!
//! The weight names are llama.cpp's (`blk.N.attn_q.weight`, ...); the architecture follows
//! google/gemma-3-270m: scaled embeddings, grouped-query attention with per-head q/k RMSNorm,
//! pre- and post-norms around attention and the gated tanh-GELU feed-forward, a 512-token sliding
//! window in five of every six layers (rope base 10,000) and full attention in the others (rope
//! base 1,000,000), and an output head tied to the token embedding.
//!
//! One [`Gemma3::forward`] call runs any number of [`Segment`]s: each is a run of new tokens
//! appended to its own [`KvCache`]. All rows of all segments go through the weight matmuls
//! together, so a decode step of eight sequences reads every weight once; attention runs per
//! segment against that segment's cache. Prefill, batched decode and continuation scoring are all
//! the same call with different segments.
//!
//! A LoRA adapter ([`Gemma3::set_adapter`], format in [`super::lora`]) adds
//! `(alpha / r) (x A^T) B^T` after each adapted projection (`q/k/v/o_proj`, `gate/up/down_proj`),
//! with `x` the same input the quantized matmul got; the base weights stay quantized and
//! untouched, so adapters can be swapped between RL steps. Without an adapter the forward pass
//! is the base model's, bit for bit.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use half::f16;

use super::lora::{LoraAdapter, LoraDelta, LoraTarget};
use super::q8_matmul::Q8Matrix;
use crate::LlmError;

/// Architecture settings, named after the fields of the checkpoint's `config.json` and read from
/// the GGUF metadata (`gemma3.*`), with the published Gemma 3 values where the GGUF has no key.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Number of tokens in the vocabulary (rows of `token_embd`).
    pub vocab_size: usize,
    /// Width of the residual stream (`gemma3.embedding_length`).
    pub hidden_size: usize,
    /// Width of the feed-forward layer (`gemma3.feed_forward_length`).
    pub intermediate_size: usize,
    /// Number of decoder layers (`gemma3.block_count`).
    pub num_hidden_layers: usize,
    /// Number of query heads.
    pub num_attention_heads: usize,
    /// Number of key/value heads.
    pub num_key_value_heads: usize,
    /// Width of one attention head (`gemma3.attention.key_length`).
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f32,
    /// Rope base of the global (full-attention) layers (`gemma3.rope.freq_base`).
    pub rope_theta: f64,
    /// Rope base of the sliding-window layers. GGUF files do not store it; llama.cpp hard-codes
    /// 10,000 for Gemma 3, as does the Hugging Face config.
    pub rope_local_base_freq: f64,
    /// Keys further back than this many positions are masked in sliding-window layers.
    pub sliding_window: usize,
    /// Every `sliding_window_pattern`-th layer (1-based) uses full attention; the others slide.
    pub sliding_window_pattern: usize,
    /// Attention scores are multiplied by `query_pre_attn_scalar^-0.5`. GGUF files do not store
    /// it; llama.cpp uses `head_dim` for every Gemma 3 size but 27B, which is what the configs say.
    pub query_pre_attn_scalar: f64,
    /// Longest context the model was trained for (`gemma3.context_length`).
    pub max_position_embeddings: usize,
}

impl Config {
    /// Reads the settings from GGUF metadata.
    pub fn from_gguf(content: &gguf_file::Content) -> Result<Self, LlmError> {
        let get_u32 = |key: &str| -> Result<usize, LlmError> {
            let value = content.metadata.get(key).ok_or_else(|| metadata_error(key, "missing"))?;
            value.to_u32().map(|v| v as usize).map_err(|err| metadata_error(key, &err.to_string()))
        };
        let get_f32 = |key: &str| -> Result<f32, LlmError> {
            let value = content.metadata.get(key).ok_or_else(|| metadata_error(key, "missing"))?;
            value.to_f32().map_err(|err| metadata_error(key, &err.to_string()))
        };
        let architecture = content
            .metadata
            .get("general.architecture")
            .and_then(|value| value.to_string().ok())
            .map(String::as_str)
            .unwrap_or("");
        if architecture != "gemma3" {
            return Err(metadata_error("general.architecture", &format!("`{architecture}` is not gemma3")));
        }
        let head_dim = get_u32("gemma3.attention.key_length")?;
        let vocab_size = content
            .tensor_infos
            .get("token_embd.weight")
            .map(|info| info.shape.dims()[0])
            .ok_or_else(|| metadata_error("token_embd.weight", "missing tensor"))?;
        let config = Config {
            vocab_size,
            hidden_size: get_u32("gemma3.embedding_length")?,
            intermediate_size: get_u32("gemma3.feed_forward_length")?,
            num_hidden_layers: get_u32("gemma3.block_count")?,
            num_attention_heads: get_u32("gemma3.attention.head_count")?,
            num_key_value_heads: get_u32("gemma3.attention.head_count_kv")?,
            head_dim,
            rms_norm_eps: get_f32("gemma3.attention.layer_norm_rms_epsilon")?,
            rope_theta: get_f32("gemma3.rope.freq_base").unwrap_or(1_000_000.0) as f64,
            rope_local_base_freq: 10_000.0,
            sliding_window: get_u32("gemma3.attention.sliding_window").unwrap_or(512),
            sliding_window_pattern: get_u32("gemma3.attention.sliding_window_pattern").unwrap_or(6),
            query_pre_attn_scalar: head_dim as f64,
            max_position_embeddings: get_u32("gemma3.context_length")?,
        };
        let heads_ok = config.num_key_value_heads > 0
            && config.num_attention_heads.is_multiple_of(config.num_key_value_heads)
            && config.head_dim.is_multiple_of(2)
            && config.sliding_window_pattern > 0;
        if !heads_ok {
            return Err(metadata_error("gemma3.attention", "inconsistent head counts or sizes"));
        }
        Ok(config)
    }

    /// Whether layer `layer_idx` (0-based) attends within the sliding window only.
    pub fn is_sliding(&self, layer_idx: usize) -> bool {
        !(layer_idx + 1).is_multiple_of(self.sliding_window_pattern)
    }
}

/// The per-layer keys and values of one sequence, so that decoding continues where it stopped.
/// Cloning it forks the sequence (several replies share one prefilled prompt).
#[derive(Debug, Clone)]
pub struct KvCache {
    /// Per layer, keys then values, each `(len, num_key_value_heads * head_dim)` row-major.
    layers: Vec<(Vec<f32>, Vec<f32>)>,
    len: usize,
}

impl KvCache {
    /// An empty cache for a model with this config.
    pub fn new(config: &Config) -> Self {
        KvCache { layers: vec![(Vec::new(), Vec::new()); config.num_hidden_layers], len: 0 }
    }

    /// Number of positions stored (the position of the next token).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Which rows of a segment need logits. The output head multiplies by the 262k-row embedding, so
/// prefill asks only for the last row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitRows {
    /// No logits (a prompt prefix that is only cached).
    None,
    /// The last new token's logits: the next-token distribution.
    Last,
    /// Every new token's logits (scoring a continuation).
    All,
}

/// New tokens appended to one sequence in a forward pass.
#[derive(Debug)]
pub struct Segment<'a> {
    /// The sequence's cache; the new tokens' keys and values are appended to it.
    pub cache: &'a mut KvCache,
    /// Token ids to run, at positions `cache.len()..`.
    pub tokens: &'a [u32],
    /// Which rows to return logits for.
    pub logits: LogitRows,
}

/// Logits of the requested rows of every segment of a forward pass.
#[derive(Debug, Clone)]
pub struct Logits {
    /// `(n_rows, vocab_size)` row-major.
    values: Vec<f32>,
    vocab_size: usize,
    /// Per segment, the first row and the number of rows.
    segment_rows: Vec<(usize, usize)>,
}

impl Logits {
    /// The `row_idx`-th requested row of segment `segment_idx` (for [`LogitRows::Last`], row 0).
    pub fn row(&self, segment_idx: usize, row_idx: usize) -> Option<&[f32]> {
        let &(first, n_rows) = self.segment_rows.get(segment_idx)?;
        if row_idx >= n_rows {
            return None;
        }
        let start = (first + row_idx) * self.vocab_size;
        self.values.get(start..start + self.vocab_size)
    }

    /// Number of requested rows of segment `segment_idx`.
    pub fn n_rows(&self, segment_idx: usize) -> usize {
        self.segment_rows.get(segment_idx).map_or(0, |&(_, n_rows)| n_rows)
    }
}

/// Gemma 3 with quantized weights.
#[derive(Debug)]
pub struct Gemma3 {
    config: Config,
    /// `(vocab_size, hidden_size)`, used both for the embedding lookup and as the output head.
    token_embd: Linear,
    layers: Vec<DecoderLayer>,
    output_norm: Vec<f32>,
}

#[derive(Debug)]
struct DecoderLayer {
    attn_norm: Vec<f32>,
    attn_q: Linear,
    attn_k: Linear,
    attn_v: Linear,
    attn_q_norm: Vec<f32>,
    attn_k_norm: Vec<f32>,
    attn_output: Linear,
    post_attention_norm: Vec<f32>,
    ffn_norm: Vec<f32>,
    ffn_gate: Linear,
    ffn_up: Linear,
    ffn_down: Linear,
    post_ffw_norm: Vec<f32>,
    sliding: bool,
    /// The adapter's update of each matmul, indexed by [`LoraTarget::index`]; all `None` without
    /// an adapter.
    lora: [Option<LoraDelta>; 7],
}

impl DecoderLayer {
    /// `xs (n_rows, in_dim) x W^T`, plus the adapter's update of `target` when there is one.
    fn project(
        &self,
        weight: &Linear,
        target: LoraTarget,
        xs: &[f32],
        n_rows: usize,
        in_dim: usize,
    ) -> Result<Vec<f32>, LlmError> {
        let mut output = matmul(weight, xs, n_rows, in_dim)?;
        if let Some(delta) = &self.lora[target.index()] {
            delta.add_to(xs, n_rows, &mut output)?;
        }
        Ok(output)
    }
}

impl Gemma3 {
    /// Loads a Gemma 3 GGUF file.
    pub fn load(path: &Path) -> Result<(Self, gguf_file::Content), LlmError> {
        let file_error = |message: String| LlmError::ModelFile { path: path.display().to_string(), message };
        let file = File::open(path).map_err(|err| file_error(err.to_string()))?;
        let mut reader = BufReader::new(file);
        let content = gguf_file::Content::read(&mut reader).map_err(|err| file_error(err.to_string()))?;
        let model = Self::new(&content, &mut reader).map_err(|err| match err {
            LlmError::Inference(message) => file_error(message),
            other => other,
        })?;
        Ok((model, content))
    }

    /// Builds the model from GGUF content whose tensors `reader` reads.
    pub fn new<R: std::io::Read + std::io::Seek>(
        content: &gguf_file::Content,
        reader: &mut R,
    ) -> Result<Self, LlmError> {
        let config = Config::from_gguf(content)?;
        let mut tensor = |name: &str| -> Result<QTensor, LlmError> {
            content
                .tensor(reader, name, &Device::Cpu)
                .map_err(|err| LlmError::Inference(format!("tensor {name}: {err}")))
        };
        let token_embd = linear(tensor("token_embd.weight")?)?;
        let output_norm = norm_weights(tensor("output_norm.weight")?, config.hidden_size)?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for layer_idx in 0..config.num_hidden_layers {
            let prefix = format!("blk.{layer_idx}");
            let mut weight = |name: &str| tensor(&format!("{prefix}.{name}.weight"));
            let hidden = config.hidden_size;
            let head_dim = config.head_dim;
            layers.push(DecoderLayer {
                attn_norm: norm_weights(weight("attn_norm")?, hidden)?,
                attn_q: linear(weight("attn_q")?)?,
                attn_k: linear(weight("attn_k")?)?,
                attn_v: linear(weight("attn_v")?)?,
                attn_q_norm: norm_weights(weight("attn_q_norm")?, head_dim)?,
                attn_k_norm: norm_weights(weight("attn_k_norm")?, head_dim)?,
                attn_output: linear(weight("attn_output")?)?,
                post_attention_norm: norm_weights(weight("post_attention_norm")?, hidden)?,
                ffn_norm: norm_weights(weight("ffn_norm")?, hidden)?,
                ffn_gate: linear(weight("ffn_gate")?)?,
                ffn_up: linear(weight("ffn_up")?)?,
                ffn_down: linear(weight("ffn_down")?)?,
                post_ffw_norm: norm_weights(weight("post_ffw_norm")?, hidden)?,
                sliding: config.is_sliding(layer_idx),
                lora: Default::default(),
            });
        }
        Ok(Gemma3 { config, token_embd, layers, output_norm })
    }

    /// The architecture settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Applies a LoRA adapter (replacing any earlier one), or removes it with `None`. The adapter
    /// is validated against the model first ([`LoraAdapter::validate_for`]); on error the model
    /// keeps its previous adapter. Its weights are copied (about `4 * r * 13,184` bytes per layer
    /// for all seven targets), so the caller may keep training it.
    pub fn set_adapter(&mut self, adapter: Option<&LoraAdapter>) -> Result<(), LlmError> {
        let Some(adapter) = adapter else {
            for layer in &mut self.layers {
                layer.lora = Default::default();
            }
            return Ok(());
        };
        adapter.validate_for(&self.config)?;
        let scale = adapter.config().scale() as f32;
        let mut per_layer: Vec<[Option<LoraDelta>; 7]> = vec![Default::default(); self.layers.len()];
        for (layer_idx, target, pair) in adapter.pairs() {
            // validate_for rejected pairs of layers the model does not have.
            if let Some(deltas) = per_layer.get_mut(layer_idx) {
                deltas[target.index()] = Some(LoraDelta::new(pair, scale));
            }
        }
        for (layer, deltas) in self.layers.iter_mut().zip(per_layer) {
            layer.lora = deltas;
        }
        Ok(())
    }

    /// Whether an adapter is applied.
    pub fn has_adapter(&self) -> bool {
        self.layers.iter().any(|layer| layer.lora.iter().any(Option::is_some))
    }

    /// Runs the new tokens of every segment, appends their keys and values to the segments'
    /// caches, and returns the requested logits.
    pub fn forward(&self, segments: &mut [Segment<'_>]) -> Result<Logits, LlmError> {
        let cfg = &self.config;
        let hidden = cfg.hidden_size;
        let q_width = cfg.num_attention_heads * cfg.head_dim;
        let kv_width = cfg.num_key_value_heads * cfg.head_dim;

        let mut token_ids = Vec::new();
        let mut positions = Vec::new();
        let mut segment_starts = Vec::with_capacity(segments.len());
        for segment in segments.iter() {
            segment_starts.push(token_ids.len());
            for (offset, &token) in segment.tokens.iter().enumerate() {
                if token as usize >= cfg.vocab_size {
                    return Err(LlmError::Inference(format!("token id {token} outside the vocabulary")));
                }
                token_ids.push(token);
                positions.push(segment.cache.len + offset);
            }
        }
        let n_rows = token_ids.len();
        if n_rows == 0 {
            return Ok(Logits { values: Vec::new(), vocab_size: cfg.vocab_size, segment_rows: Vec::new() });
        }

        // (N, hidden): Gemma scales the embedding by sqrt(hidden) before the first layer.
        let mut xs = self.token_embd.embed(token_ids)?;
        let embed_scale = (hidden as f32).sqrt();
        xs.iter_mut().for_each(|value| *value *= embed_scale);

        let rope_global = RopeTable::new(&positions, cfg.head_dim, cfg.rope_theta);
        let rope_local = RopeTable::new(&positions, cfg.head_dim, cfg.rope_local_base_freq);
        let attention_scale = cfg.query_pre_attn_scalar.powf(-0.5) as f32;

        for (layer_idx, layer) in self.layers.iter().enumerate() {
            // Attention block.
            let normed = rms_norm_rows(&xs, &layer.attn_norm, cfg.rms_norm_eps);
            // Queries (N, H * D), keys and values (N, KV * D).
            let mut queries = layer.project(&layer.attn_q, LoraTarget::QProj, &normed, n_rows, hidden)?;
            let mut keys = layer.project(&layer.attn_k, LoraTarget::KProj, &normed, n_rows, hidden)?;
            let values = layer.project(&layer.attn_v, LoraTarget::VProj, &normed, n_rows, hidden)?;
            rms_norm_in_place(&mut queries, &layer.attn_q_norm, cfg.rms_norm_eps);
            rms_norm_in_place(&mut keys, &layer.attn_k_norm, cfg.rms_norm_eps);
            let rope = if layer.sliding { &rope_local } else { &rope_global };
            rope.apply(&mut queries, q_width);
            rope.apply(&mut keys, kv_width);

            for (segment, &start) in segments.iter_mut().zip(&segment_starts) {
                let n_new = segment.tokens.len();
                let (cache_keys, cache_values) = &mut segment.cache.layers[layer_idx];
                // llama.cpp stores its KV cache in f16; rounding the same way keeps our logits
                // within float noise of the reference (tests/embedded_forward.rs).
                cache_keys.extend(keys[start * kv_width..(start + n_new) * kv_width].iter().map(|&v| round_f16(v)));
                cache_values.extend(values[start * kv_width..(start + n_new) * kv_width].iter().map(|&v| round_f16(v)));
            }

            let window = layer.sliding.then_some(cfg.sliding_window);
            let attended = self.attention(segments, &segment_starts, &queries, layer_idx, window, attention_scale);
            // (N, hidden)
            let projected = layer.project(&layer.attn_output, LoraTarget::OProj, &attended, n_rows, q_width)?;
            add_rms_normed(&mut xs, &projected, &layer.post_attention_norm, cfg.rms_norm_eps);

            // Feed-forward block.
            let normed = rms_norm_rows(&xs, &layer.ffn_norm, cfg.rms_norm_eps);
            // Gate and up (N, I), down (N, hidden).
            let mut gate = layer.project(&layer.ffn_gate, LoraTarget::GateProj, &normed, n_rows, hidden)?;
            let up = layer.project(&layer.ffn_up, LoraTarget::UpProj, &normed, n_rows, hidden)?;
            gate.iter_mut().zip(&up).for_each(|(gate, up)| *gate = gelu_tanh_f16(*gate) * up);
            let down = layer.project(&layer.ffn_down, LoraTarget::DownProj, &gate, n_rows, cfg.intermediate_size)?;
            add_rms_normed(&mut xs, &down, &layer.post_ffw_norm, cfg.rms_norm_eps);
        }

        for segment in segments.iter_mut() {
            segment.cache.len += segment.tokens.len();
        }

        // Only the requested rows go through the output head.
        let mut selected = Vec::new();
        let mut segment_rows = Vec::with_capacity(segments.len());
        let mut n_selected = 0;
        for (segment, &start) in segments.iter().zip(&segment_starts) {
            let n_new = segment.tokens.len();
            let rows = match segment.logits {
                LogitRows::None => 0..0,
                LogitRows::Last => (start + n_new).saturating_sub(1).max(start)..start + n_new,
                LogitRows::All => start..start + n_new,
            };
            segment_rows.push((n_selected, rows.len()));
            n_selected += rows.len();
            selected.extend_from_slice(&xs[rows.start * hidden..rows.end * hidden]);
        }
        if n_selected == 0 {
            return Ok(Logits { values: Vec::new(), vocab_size: cfg.vocab_size, segment_rows });
        }
        let normed = rms_norm_rows(&selected, &self.output_norm, cfg.rms_norm_eps);
        let values = matmul(&self.token_embd, &normed, n_selected, hidden)?; // (N_selected, vocab)
        Ok(Logits { values, vocab_size: cfg.vocab_size, segment_rows })
    }

    /// Causal attention of every new row over its own segment's cache (which already holds the new
    /// keys and values). Returns `(N, H * D)`.
    fn attention(
        &self,
        segments: &[Segment<'_>],
        segment_starts: &[usize],
        queries: &[f32],
        layer_idx: usize,
        window: Option<usize>,
        scale: f32,
    ) -> Vec<f32> {
        let cfg = &self.config;
        let n_heads = cfg.num_attention_heads;
        let head_dim = cfg.head_dim;
        let kv_width = cfg.num_key_value_heads * head_dim;
        let group = n_heads / cfg.num_key_value_heads;
        let n_rows = queries.len() / (n_heads * head_dim);

        // One work item per (row, head); items write disjoint `head_dim` slices of the output.
        let mut row_owner = Vec::with_capacity(n_rows);
        for (segment_idx, segment) in segments.iter().enumerate() {
            for offset in 0..segment.tokens.len() {
                row_owner.push((segment_idx, offset));
            }
        }
        let mut output = vec![0f32; n_rows * n_heads * head_dim];
        let output_ptr = SharedMutPtr(output.as_mut_ptr());
        let run_item = |item_idx: usize, scores: &mut Vec<f32>| {
            let row_idx = item_idx / n_heads;
            let head_idx = item_idx % n_heads;
            let (segment_idx, offset) = row_owner[row_idx];
            let segment = &segments[segment_idx];
            let (cache_keys, cache_values) = &segment.cache.layers[layer_idx];
            // The cache holds the new rows too, so this row's position is its index in the cache.
            let n_cached = cache_keys.len() / kv_width;
            let position = n_cached - segment.tokens.len() + offset;
            let first_key = match window {
                Some(window) => (position + 1).saturating_sub(window),
                None => 0,
            };
            let kv_offset = (head_idx / group) * head_dim;
            let query_start = (segment_starts[segment_idx] + offset) * n_heads * head_dim + head_idx * head_dim;
            let query = &queries[query_start..query_start + head_dim];

            scores.clear();
            let mut max_score = f32::NEG_INFINITY;
            for key_idx in first_key..=position {
                let key_start = key_idx * kv_width + kv_offset;
                let score = dot(query, &cache_keys[key_start..key_start + head_dim]) * scale;
                max_score = max_score.max(score);
                scores.push(score);
            }
            let mut total = 0f32;
            for score in scores.iter_mut() {
                *score = (*score - max_score).exp();
                total += *score;
            }
            let output_start = row_idx * n_heads * head_dim + head_idx * head_dim;
            // SAFETY: item `item_idx` is the only writer of `output[output_start..+head_dim]`, and
            // `output` outlives the pool call below, which joins all workers before returning.
            let out = unsafe { std::slice::from_raw_parts_mut(output_ptr.get().add(output_start), head_dim) };
            for (key_idx, weight) in (first_key..=position).zip(scores.iter()) {
                let value_start = key_idx * kv_width + kv_offset;
                let weight = weight / total;
                for (out, value) in out.iter_mut().zip(&cache_values[value_start..value_start + head_dim]) {
                    *out += weight * value;
                }
            }
        };
        let n_items = n_rows * n_heads;
        candle_core::utils::barrier_pool().execute_chunked(n_items, |range| {
            let mut scores = Vec::new();
            for item_idx in range {
                run_item(item_idx, &mut scores);
            }
        });
        output
    }
}

/// A raw pointer that worker threads may share because each writes a disjoint part.
#[derive(Clone, Copy)]
struct SharedMutPtr(*mut f32);
// SAFETY: see the single use in `Gemma3::attention`: writes through it never overlap.
unsafe impl Send for SharedMutPtr {}
// SAFETY: as above.
unsafe impl Sync for SharedMutPtr {}

impl SharedMutPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Cosines and sines of the new rows' positions, one table per rope base per forward pass,
/// sized to the rows at hand rather than to the context length.
struct RopeTable {
    /// `(N, head_dim / 2)` each.
    cos: Vec<f32>,
    sin: Vec<f32>,
    half: usize,
}

impl RopeTable {
    fn new(positions: &[usize], head_dim: usize, base: f64) -> Self {
        let half = head_dim / 2;
        let inv_freq: Vec<f64> = (0..half).map(|i| base.powf(-2.0 * i as f64 / head_dim as f64)).collect();
        let mut cos = Vec::with_capacity(positions.len() * half);
        let mut sin = Vec::with_capacity(positions.len() * half);
        for &position in positions {
            for &freq in &inv_freq {
                let angle = position as f64 * freq;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        RopeTable { cos, sin, half }
    }

    /// Rotates every head of every row, NeoX style (dimension `i` pairs with `i + head_dim / 2`),
    /// as Hugging Face's `rotate_half` and llama.cpp's `LLAMA_ROPE_TYPE_NEOX` do for Gemma.
    fn apply(&self, xs: &mut [f32], row_width: usize) {
        let head_dim = 2 * self.half;
        for (row_idx, row) in xs.chunks_exact_mut(row_width).enumerate() {
            let cos = &self.cos[row_idx * self.half..(row_idx + 1) * self.half];
            let sin = &self.sin[row_idx * self.half..(row_idx + 1) * self.half];
            for head in row.chunks_exact_mut(head_dim) {
                let (first, second) = head.split_at_mut(self.half);
                for idx in 0..self.half {
                    let (x0, x1) = (first[idx], second[idx]);
                    first[idx] = x0 * cos[idx] - x1 * sin[idx];
                    second[idx] = x0 * sin[idx] + x1 * cos[idx];
                }
            }
        }
    }
}

/// GELU the way ggml's CPU backend computes it (`ggml_vec_geglu_f32` with `GGML_GELU_FP16`): a
/// lookup in a table of f16 results indexed by the f16-rounded input, exact at |x| >= 10. The
/// 270M model turns these 1e-3 relative differences into ~0.1 nat shifts of next-token
/// log-probabilities, so matching llama.cpp's greedy output needs the same rounding.
fn gelu_tanh_f16(x: f32) -> f32 {
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
        x
    } else {
        round_f16(gelu_tanh(round_f16(x)))
    }
}

/// The tanh approximation of GELU (`gelu_pytorch_tanh`), Gemma's feed-forward activation.
fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)).tanh())
}

fn round_f16(value: f32) -> f32 {
    f16::from_f32(value).to_f32()
}

/// Dot product of two equally long slices (also the LoRA update's `x A^T`).
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent accumulators let the compiler vectorize the reduction.
    let mut sums = [0f32; 8];
    let chunks_a = a.chunks_exact(8);
    let chunks_b = b.chunks_exact(8);
    let tail: f32 = chunks_a.remainder().iter().zip(chunks_b.remainder()).map(|(x, y)| x * y).sum();
    for (chunk_a, chunk_b) in chunks_a.zip(chunks_b) {
        for lane in 0..8 {
            sums[lane] += chunk_a[lane] * chunk_b[lane];
        }
    }
    sums.iter().sum::<f32>() + tail
}

/// RMSNorm of every `weight.len()`-wide chunk. GGUF norm weights already include Gemma's `+1`
/// (llama.cpp's converter adds it), so the weight multiplies directly.
fn rms_norm_in_place(xs: &mut [f32], weight: &[f32], eps: f32) {
    for row in xs.chunks_exact_mut(weight.len()) {
        let mean_square = row.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / row.len() as f64;
        let inv_rms = (1.0 / (mean_square + eps as f64).sqrt()) as f32;
        for (value, weight) in row.iter_mut().zip(weight) {
            *value = *value * inv_rms * weight;
        }
    }
}

fn rms_norm_rows(xs: &[f32], weight: &[f32], eps: f32) -> Vec<f32> {
    let mut out = xs.to_vec();
    rms_norm_in_place(&mut out, weight, eps);
    out
}

/// `residual += rms_norm(update) * weight`: Gemma's post-norm on each block's output.
fn add_rms_normed(residual: &mut [f32], update: &[f32], weight: &[f32], eps: f32) {
    let normed = rms_norm_rows(update, weight, eps);
    residual.iter_mut().zip(&normed).for_each(|(residual, update)| *residual += update);
}

/// `(n_rows, in_dim) x weight^T`.
fn matmul(weight: &Linear, xs: &[f32], n_rows: usize, in_dim: usize) -> Result<Vec<f32>, LlmError> {
    match weight {
        Linear::Q8(matrix) => {
            if matrix.n_cols() != in_dim || xs.len() != n_rows * in_dim {
                return Err(LlmError::Inference(format!(
                    "matmul of ({n_rows}, {in_dim}) with a ({}, {}) weight",
                    matrix.n_rows(),
                    matrix.n_cols()
                )));
            }
            Ok(matrix.matmul(xs, n_rows))
        }
        // candle multiplies a single K-quant row with a different kernel (compact Q6_K dot
        // products) than several rows (repacked tiles). Both are right, but they sum in different
        // orders, and this model amplifies 1e-7 relative differences into 0.1-nat log-probability
        // shifts within a few tokens (activations are re-quantized to int8 before every matmul,
        // so rounding flips cascade). Padding a lone row to two keeps every row on the tiled
        // kernel, so a sequence decodes to the same tokens alone or in a batch.
        Linear::Candle { matmul, .. } if n_rows == 1 => {
            let mut padded = Vec::with_capacity(2 * in_dim);
            padded.extend_from_slice(xs);
            padded.extend_from_slice(xs);
            let input = Tensor::from_vec(padded, (2, in_dim), &Device::Cpu).map_err(candle_error)?;
            let mut output = to_vec(&matmul.forward(&input).map_err(candle_error)?)?;
            output.truncate(output.len() / 2);
            Ok(output)
        }
        Linear::Candle { matmul, .. } => {
            let input = Tensor::from_slice(xs, (n_rows, in_dim), &Device::Cpu).map_err(candle_error)?;
            let output = matmul.forward(&input).map_err(candle_error)?;
            to_vec(&output)
        }
    }
}

fn to_vec(tensor: &Tensor) -> Result<Vec<f32>, LlmError> {
    tensor.flatten_all().and_then(|flat| flat.to_vec1::<f32>()).map_err(candle_error)
}

fn candle_error(err: candle_core::Error) -> LlmError {
    LlmError::Inference(err.to_string())
}

fn metadata_error(key: &str, message: &str) -> LlmError {
    LlmError::Inference(format!("GGUF metadata {key}: {message}"))
}

fn norm_weights(tensor: QTensor, expected_len: usize) -> Result<Vec<f32>, LlmError> {
    let values = to_vec(&tensor.dequantize(&Device::Cpu).map_err(candle_error)?)?;
    if values.len() != expected_len {
        return Err(LlmError::Inference(format!("norm weight has {} values, expected {expected_len}", values.len())));
    }
    Ok(values)
}

/// A matmul weight. Q8_0 and Q5_0 tensors (widened to Q8_0 exactly) use our batched kernel:
/// candle 0.11.1 has only a scalar Q5_0 dot product and multiplies Q8_0 one dot product at a time.
/// The K-quants (Q4_K, Q6_K) use candle's repacked AVX2 kernels.
#[derive(Debug)]
enum Linear {
    Q8(Q8Matrix),
    Candle { matmul: QMatMul, tensor: std::sync::Arc<QTensor> },
}

impl Linear {
    /// Rows `ids` of the weight as f32, `(ids.len(), n_cols)`: the embedding lookup.
    fn embed(&self, ids: Vec<u32>) -> Result<Vec<f32>, LlmError> {
        match self {
            Linear::Q8(matrix) => {
                let mut out = Vec::with_capacity(ids.len() * matrix.n_cols());
                for id in ids {
                    matrix.dequantize_row(id as usize, &mut out);
                }
                Ok(out)
            }
            Linear::Candle { tensor, .. } => {
                let n_ids = ids.len();
                let ids = Tensor::from_vec(ids, n_ids, &Device::Cpu).map_err(candle_error)?;
                to_vec(&tensor.embedding(&ids).map_err(candle_error)?)
            }
        }
    }
}

fn linear(tensor: QTensor) -> Result<Linear, LlmError> {
    let (n_rows, n_cols) = tensor.shape().dims2().map_err(candle_error)?;
    let dtype = tensor.dtype();
    if matches!(dtype, GgmlDType::Q8_0 | GgmlDType::Q5_0) {
        let bytes = tensor.data().map_err(candle_error)?;
        let matrix = if dtype == GgmlDType::Q8_0 {
            Q8Matrix::from_q8_0_bytes(&bytes, n_rows, n_cols)
        } else {
            Q8Matrix::from_q5_0_bytes(&bytes, n_rows, n_cols)
        };
        return matrix.map(Linear::Q8).ok_or_else(|| {
            LlmError::Inference(format!("{dtype:?} tensor of shape ({n_rows}, {n_cols}) has the wrong size"))
        });
    }
    let tensor = std::sync::Arc::new(tensor);
    let matmul = QMatMul::from_arc(tensor.clone()).map_err(candle_error)?;
    Ok(Linear::Candle { matmul, tensor })
}
