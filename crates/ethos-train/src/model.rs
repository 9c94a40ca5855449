//! Gemma-3-270M for training: the GGUF weights dequantized to f32 and frozen, LoRA adapters as
//! trainable [`Var`]s, and a forward pass built only from differentiable ops.
//!
//! The architecture is the inference model's (`ethos_llm::embedded::gemma3`): scaled embeddings,
//! grouped-query attention with per-head q/k RMSNorm, pre- and post-norms, the gated tanh-GELU
//! feed-forward, sliding-window layers, and the output head tied to the embedding. The differences
//! are what training needs:
//!
//! - Whole sequences run at once without a KV cache (candle's cache writes in place, which has no
//!   backward pass), and rope and softmax are written with ops that have one (candle's fused
//!   `rope` and `softmax_last_dim` do not).
//! - Weights are f32 and activations are not re-quantized, so log-probabilities differ from the
//!   quantized inference path by float noise (`tests/trainable_forward.rs` bounds it).
//! - Frozen matmuls and the output head use the fused ops of [`crate::ops`], which skip the
//!   gradients nobody needs.
//!
//! GGUF norm weights already include Gemma's `+1` (llama.cpp's converter adds it), so norms
//! multiply by the stored weight directly, as the inference path does.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor, Var, D};
use ethos_llm::embedded::chat_format::ChatFormat;
use ethos_llm::embedded::gemma3::Config;
use ethos_llm::embedded::lora::{LoraAdapter, LoraConfig, LoraTarget};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::ops::{frozen_linear, token_logprobs_head, HeadStatistics};
use crate::TrainError;

/// The seven projections of a decoder layer, in the order [`LoraTarget::ALL`] lists them.
const N_TARGETS: usize = 7;

/// Gemma 3 with frozen f32 weights.
#[derive(Debug)]
pub struct TrainableGemma {
    config: Config,
    device: Device,
    /// `(vocab, hidden)`: the embedding lookup and the tied output head.
    embedding: Tensor,
    output_norm: Tensor,
    layers: Vec<TrainLayer>,
}

#[derive(Debug)]
struct TrainLayer {
    attn_norm: Tensor,
    q_norm: Tensor,
    k_norm: Tensor,
    post_attention_norm: Tensor,
    ffn_norm: Tensor,
    post_ffw_norm: Tensor,
    /// `(out, in)` per projection, indexed like [`LoraTarget::ALL`].
    projections: [Tensor; N_TARGETS],
    sliding: bool,
}

/// LoRA adapters on some projections of every layer: `W x + scale * B A x`, with `A` `(r, in)`
/// and `B` `(out, r)` trainable.
#[derive(Debug)]
pub struct Lora {
    config: LoraConfig,
    /// Per layer, per projection (indexed like [`LoraTarget::ALL`]): `(A, B)` when targeted.
    pairs: Vec<[Option<(Var, Var)>; N_TARGETS]>,
}

/// Per-token log-probabilities of a sequence's target tokens, with statistics.
#[derive(Debug)]
pub struct TokenScores {
    /// `(n_targets,)`, differentiable in the LoRA weights when they took part.
    pub logprobs: Tensor,
    /// Per target position, the entropy of the model's next-token distribution.
    pub stats: HeadStatistics,
}

/// One prompt and the replies sampled for it, packed into one sequence so that the prompt runs
/// through the model once instead of once per reply:
/// `prompt ++ reply_1[..n_1 - 1] ++ reply_2[..n_2 - 1] ++ ...` (a reply's last token is only ever a
/// target). Each reply token keeps its position in its own sequence (`prompt_len + j`) and attends
/// to the prompt and to its own earlier tokens only, so every reply is scored as `prompt ++ reply`
/// alone would be, up to float summation order (`tests/trainable_forward.rs` checks both). The
/// first token of every reply is predicted from the prompt's last row, which all replies share.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedGroup {
    inputs: Vec<u32>,
    positions: Vec<usize>,
    /// 0 for prompt rows, `i + 1` for reply `i`'s.
    segments: Vec<usize>,
    /// Per target token, the row whose hidden state predicts it.
    head_rows: Vec<u32>,
    targets: Vec<u32>,
    reply_lens: Vec<usize>,
}

impl PackedGroup {
    /// Packs a non-empty prompt with non-empty replies.
    pub fn new(prompt: &[u32], replies: &[&[u32]]) -> Result<Self, TrainError> {
        if prompt.is_empty() || replies.is_empty() || replies.iter().any(|reply| reply.is_empty()) {
            return Err(TrainError::Input("a packed group needs a prompt and non-empty replies".to_string()));
        }
        let prompt_len = prompt.len();
        let n_rows = prompt_len + replies.iter().map(|reply| reply.len() - 1).sum::<usize>();
        let n_targets = replies.iter().map(|reply| reply.len()).sum();
        let mut group = PackedGroup {
            inputs: Vec::with_capacity(n_rows),
            positions: Vec::with_capacity(n_rows),
            segments: Vec::with_capacity(n_rows),
            head_rows: Vec::with_capacity(n_targets),
            targets: Vec::with_capacity(n_targets),
            reply_lens: Vec::with_capacity(replies.len()),
        };
        group.inputs.extend_from_slice(prompt);
        group.positions.extend(0..prompt_len);
        group.segments.resize(prompt_len, 0);
        for (reply_idx, reply) in replies.iter().enumerate() {
            let start = group.inputs.len();
            for (offset, &token) in reply.iter().enumerate() {
                let row = if offset == 0 { prompt_len - 1 } else { start + offset - 1 };
                group.head_rows.push(row as u32);
                group.targets.push(token);
            }
            for (offset, &token) in reply[..reply.len() - 1].iter().enumerate() {
                group.inputs.push(token);
                group.positions.push(prompt_len + offset);
                group.segments.push(reply_idx + 1);
            }
            group.reply_lens.push(reply.len());
        }
        Ok(group)
    }

    /// Rows the forward pass runs (prompt once, replies without their last token).
    pub fn n_rows(&self) -> usize {
        self.inputs.len()
    }

    /// Number of replies.
    pub fn n_replies(&self) -> usize {
        self.reply_lens.len()
    }
}

impl TrainableGemma {
    /// Loads a Gemma 3 GGUF file and dequantizes every weight to f32 on `device`.
    pub fn load(path: &Path, device: &Device) -> Result<Self, TrainError> {
        let file_error = |message: String| TrainError::ModelFile { path: path.display().to_string(), message };
        let file = File::open(path).map_err(|err| file_error(err.to_string()))?;
        let mut reader = BufReader::new(file);
        let content = gguf_file::Content::read(&mut reader).map_err(|err| file_error(err.to_string()))?;
        let config = Config::from_gguf(&content).map_err(|err| file_error(err.to_string()))?;
        let mut tensor = |name: &str| -> Result<Tensor, TrainError> {
            content
                .tensor(&mut reader, name, device)
                .and_then(|quantized| quantized.dequantize(device))
                .and_then(|tensor| tensor.to_dtype(DType::F32))
                .map_err(|err| file_error(format!("tensor {name}: {err}")))
        };
        let embedding = tensor("token_embd.weight")?;
        let output_norm = tensor("output_norm.weight")?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for layer_idx in 0..config.num_hidden_layers {
            let mut weight = |name: &str| tensor(&format!("blk.{layer_idx}.{name}.weight"));
            layers.push(TrainLayer {
                attn_norm: weight("attn_norm")?,
                q_norm: weight("attn_q_norm")?,
                k_norm: weight("attn_k_norm")?,
                post_attention_norm: weight("post_attention_norm")?,
                ffn_norm: weight("ffn_norm")?,
                post_ffw_norm: weight("post_ffw_norm")?,
                projections: [
                    weight("attn_q")?,
                    weight("attn_k")?,
                    weight("attn_v")?,
                    weight("attn_output")?,
                    weight("ffn_gate")?,
                    weight("ffn_up")?,
                    weight("ffn_down")?,
                ],
                sliding: config.is_sliding(layer_idx),
            });
        }
        let model = TrainableGemma { config, device: device.clone(), embedding, output_norm, layers };
        model.check_shapes().map_err(|err| file_error(err.to_string()))?;
        Ok(model)
    }

    /// The architecture settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Log-probabilities of `tokens[first_target..]`, each given the tokens before it, under the
    /// base model plus `lora` (or the base model alone when `lora` is `None`).
    ///
    /// `first_target` is at least 1 (the first token has no context) and below `tokens.len()`.
    pub fn token_logprobs(
        &self,
        tokens: &[u32],
        first_target: usize,
        lora: Option<&Lora>,
    ) -> Result<TokenScores, TrainError> {
        if first_target == 0 || first_target >= tokens.len() {
            return Err(TrainError::Input(format!(
                "first target {first_target} must be in 1..{} (the sequence length)",
                tokens.len()
            )));
        }
        let group = PackedGroup::new(&tokens[..first_target], &[&tokens[first_target..]])?;
        let mut scores = self.group_logprobs(&group, lora)?;
        scores.pop().ok_or_else(|| TrainError::Input("no reply scored".to_string()))
    }

    /// Log-probabilities of every reply of a [`PackedGroup`] given the prompt, from one forward
    /// pass in which the prompt runs once; one [`TokenScores`] per reply, in order.
    pub fn group_logprobs(&self, group: &PackedGroup, lora: Option<&Lora>) -> Result<Vec<TokenScores>, TrainError> {
        let cfg = &self.config;
        if let Some(&bad) = group.inputs.iter().chain(&group.targets).find(|&&token| token as usize >= cfg.vocab_size) {
            return Err(TrainError::Input(format!("token id {bad} outside the vocabulary")));
        }
        let hidden = self.hidden_states(&group.inputs, &group.positions, &group.segments, lora)?;
        let head_rows = Tensor::from_slice(&group.head_rows, group.head_rows.len(), &self.device)?;
        let rows = hidden.index_select(&head_rows, 0)?;
        let normed = rms_norm(&rows, &self.output_norm, cfg.rms_norm_eps)?;
        let (logprobs, stats) = token_logprobs_head(&normed, &self.embedding, &group.targets)?;
        let mut scores = Vec::with_capacity(group.reply_lens.len());
        let mut offset = 0;
        for &len in &group.reply_lens {
            scores.push(TokenScores {
                logprobs: logprobs.narrow(0, offset, len)?,
                stats: HeadStatistics { entropy: stats.entropy[offset..offset + len].to_vec() },
            });
            offset += len;
        }
        Ok(scores)
    }

    /// The final residual stream `(L, hidden)` before the output norm, for `inputs` at `positions`
    /// in segments (see [`PackedGroup`]; one segment 0 at positions `0..L` is a plain sequence).
    fn hidden_states(
        &self,
        inputs: &[u32],
        positions: &[usize],
        segments: &[usize],
        lora: Option<&Lora>,
    ) -> Result<Tensor, TrainError> {
        let cfg = &self.config;
        let n_positions = inputs.len();
        let ids = Tensor::from_slice(inputs, n_positions, &self.device)?;
        let embed_scale = (cfg.hidden_size as f64).sqrt();
        let mut xs = (self.embedding.index_select(&ids, 0)? * embed_scale)?; // (L, hidden)

        let rope_global = Rope::new(positions, cfg.head_dim, cfg.rope_theta, &self.device)?;
        let rope_local = Rope::new(positions, cfg.head_dim, cfg.rope_local_base_freq, &self.device)?;
        let global_mask = packed_mask(positions, segments, None, &self.device)?;
        let local_mask = packed_mask(positions, segments, Some(cfg.sliding_window), &self.device)?;
        let attention_scale = cfg.query_pre_attn_scalar.powf(-0.5);
        let n_heads = cfg.num_attention_heads;
        let n_kv_heads = cfg.num_key_value_heads;
        let group = n_heads / n_kv_heads;
        let head_dim = cfg.head_dim;

        for (layer_idx, layer) in self.layers.iter().enumerate() {
            let project = |target_idx: usize, input: &Tensor| -> Result<Tensor, TrainError> {
                let base = frozen_linear(input, &layer.projections[target_idx])?;
                match lora.and_then(|lora| lora.pair(layer_idx, target_idx)) {
                    Some((a, b)) => {
                        let scale = lora.map_or(1.0, |lora| lora.config.scale());
                        let delta = input.matmul(&a.as_tensor().t()?)?.matmul(&b.as_tensor().t()?)?;
                        Ok((base + (delta * scale)?)?)
                    }
                    None => Ok(base),
                }
            };

            // Attention block.
            let normed = rms_norm(&xs, &layer.attn_norm, cfg.rms_norm_eps)?;
            let queries = project(0, &normed)?.reshape((n_positions, n_heads, head_dim))?;
            let keys = project(1, &normed)?.reshape((n_positions, n_kv_heads, head_dim))?;
            let values = project(2, &normed)?.reshape((n_positions, n_kv_heads, head_dim))?;
            let queries = rms_norm(&queries, &layer.q_norm, cfg.rms_norm_eps)?;
            let keys = rms_norm(&keys, &layer.k_norm, cfg.rms_norm_eps)?;
            let rope = if layer.sliding { &rope_local } else { &rope_global };
            let queries = rope.apply(&queries)?;
            let keys = rope.apply(&keys)?;

            // Heads are ordered kv-major (head h reads kv head h / group), so the query heads of
            // one kv head are adjacent: (KV, group * L, D) against (KV, L, D).
            let queries =
                queries.transpose(0, 1)?.contiguous()?.reshape((n_kv_heads, group * n_positions, head_dim))?;
            let keys = keys.transpose(0, 1)?.contiguous()?; // (KV, L, D)
            let values = values.transpose(0, 1)?.contiguous()?; // (KV, L, D)
            let scores = (queries.matmul(&keys.t()?)? * attention_scale)?; // (KV, group * L, L)
            let scores = scores.reshape((n_kv_heads, group, n_positions, n_positions))?;
            let mask = if layer.sliding { &local_mask } else { &global_mask };
            let scores = scores.broadcast_add(mask)?;
            let weights = softmax_last_dim(&scores)?.reshape((n_kv_heads, group * n_positions, n_positions))?;
            let attended = weights.matmul(&values)?; // (KV, group * L, D)
            let attended = attended
                .reshape((n_heads, n_positions, head_dim))?
                .transpose(0, 1)?
                .contiguous()?
                .reshape((n_positions, n_heads * head_dim))?;
            let projected = project(3, &attended)?;
            xs = (xs + rms_norm(&projected, &layer.post_attention_norm, cfg.rms_norm_eps)?)?;

            // Feed-forward block.
            let normed = rms_norm(&xs, &layer.ffn_norm, cfg.rms_norm_eps)?;
            let gate = project(4, &normed)?;
            let up = project(5, &normed)?;
            let activated = (gate.gelu()? * up)?;
            let down = project(6, &activated)?;
            xs = (xs + rms_norm(&down, &layer.post_ffw_norm, cfg.rms_norm_eps)?)?;
        }
        Ok(xs)
    }

    fn check_shapes(&self) -> Result<(), TrainError> {
        let cfg = &self.config;
        let (vocab, hidden) = self.embedding.dims2()?;
        if vocab != cfg.vocab_size || hidden != cfg.hidden_size {
            return Err(TrainError::Input(format!("token_embd is ({vocab}, {hidden})")));
        }
        for (layer_idx, layer) in self.layers.iter().enumerate() {
            for (target_idx, target) in LoraTarget::ALL.iter().enumerate() {
                // Weights are stored (out, in).
                let (out_dim, in_dim) = layer.projections[target_idx].dims2()?;
                if (in_dim, out_dim) != target.shape(&self.config) {
                    return Err(TrainError::Input(format!(
                        "layer {layer_idx} {}: weight is ({out_dim}, {in_dim}), expected (out, in) = {:?} reversed",
                        target.hf_name(),
                        target.shape(&self.config)
                    )));
                }
            }
        }
        Ok(())
    }
}

impl Lora {
    /// Fresh adapters as peft initializes them: `A` uniform in `±1/sqrt(in)` (Kaiming-uniform
    /// with `a = sqrt(5)`), `B` zero, so training starts exactly at the base model.
    pub fn init(model: &TrainableGemma, config: LoraConfig, seed: u64) -> Result<Self, TrainError> {
        if config.rank == 0 {
            return Err(TrainError::Input("LoRA rank must be at least 1".to_string()));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut pairs = Vec::with_capacity(model.layers.len());
        for _ in 0..model.layers.len() {
            let mut layer: [Option<(Var, Var)>; N_TARGETS] = Default::default();
            for (target_idx, target) in LoraTarget::ALL.iter().enumerate() {
                if !config.targets.contains(target) {
                    continue;
                }
                let (in_dim, out_dim) = target.shape(&model.config);
                let bound = 1.0 / (in_dim as f32).sqrt();
                let a: Vec<f32> = (0..config.rank * in_dim).map(|_| rng.random_range(-bound..bound)).collect();
                let a = Var::from_vec(a, (config.rank, in_dim), model.device())?;
                let b = Var::zeros((out_dim, config.rank), DType::F32, model.device())?;
                layer[target_idx] = Some((a, b));
            }
            pairs.push(layer);
        }
        Ok(Lora { config, pairs })
    }

    /// Adapters read from a saved adapter, checked against the model's shapes.
    pub fn from_adapter(model: &TrainableGemma, adapter: &LoraAdapter) -> Result<Self, TrainError> {
        let config = adapter.config().clone();
        let mut pairs = Vec::with_capacity(model.layers.len());
        for layer_idx in 0..model.layers.len() {
            let mut layer: [Option<(Var, Var)>; N_TARGETS] = Default::default();
            for (target_idx, target) in LoraTarget::ALL.iter().enumerate() {
                if !config.targets.contains(target) {
                    continue;
                }
                let (in_dim, out_dim) = target.shape(&model.config);
                let pair = adapter.get(layer_idx, *target).ok_or_else(|| {
                    TrainError::Input(format!("adapter has no {} for layer {layer_idx}", target.hf_name()))
                })?;
                if pair.in_dim() != in_dim || pair.out_dim() != out_dim {
                    return Err(TrainError::Input(format!(
                        "adapter {} of layer {layer_idx} is ({}, {}), the model needs ({out_dim}, {in_dim})",
                        target.hf_name(),
                        pair.out_dim(),
                        pair.in_dim()
                    )));
                }
                let a = Var::from_vec(pair.a().to_vec(), (config.rank, in_dim), model.device())?;
                let b = Var::from_vec(pair.b().to_vec(), (out_dim, config.rank), model.device())?;
                layer[target_idx] = Some((a, b));
            }
            pairs.push(layer);
        }
        Ok(Lora { config, pairs })
    }

    /// The adapter settings.
    pub fn config(&self) -> &LoraConfig {
        &self.config
    }

    /// Every trainable tensor with its peft name, in a fixed order (layer, projection, A before B).
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        let mut named = Vec::new();
        for (layer_idx, layer) in self.pairs.iter().enumerate() {
            for (target_idx, pair) in layer.iter().enumerate() {
                if let Some((a, b)) = pair {
                    let prefix = LoraTarget::ALL[target_idx].module_path(layer_idx);
                    named.push((format!("{prefix}.lora_A.weight"), a.clone()));
                    named.push((format!("{prefix}.lora_B.weight"), b.clone()));
                }
            }
        }
        named
    }

    /// Number of trainable parameters.
    pub fn n_parameters(&self) -> usize {
        self.named_vars().iter().map(|(_, var)| var.elem_count()).sum()
    }

    /// The current weights as an adapter that the inference path can load or apply.
    pub fn to_adapter(&self, chat_format: ChatFormat) -> Result<LoraAdapter, TrainError> {
        let mut adapter = LoraAdapter::new(self.config.clone(), chat_format);
        for (layer_idx, layer) in self.pairs.iter().enumerate() {
            for (target_idx, pair) in layer.iter().enumerate() {
                if let Some((a, b)) = pair {
                    let (rank, in_dim) = a.dims2()?;
                    let (out_dim, _) = b.dims2()?;
                    debug_assert_eq!(rank, self.config.rank);
                    let a_values = a.as_tensor().flatten_all()?.to_vec1::<f32>()?;
                    let b_values = b.as_tensor().flatten_all()?.to_vec1::<f32>()?;
                    adapter.insert(layer_idx, LoraTarget::ALL[target_idx], a_values, b_values, in_dim, out_dim)?;
                }
            }
        }
        Ok(adapter)
    }

    fn pair(&self, layer_idx: usize, target_idx: usize) -> Option<(&Var, &Var)> {
        self.pairs.get(layer_idx)?.get(target_idx)?.as_ref().map(|(a, b)| (a, b))
    }
}

/// Cosines and sines per position, applied NeoX style (dimension `i` pairs with `i + D/2`), as
/// Hugging Face's `rotate_half` and the inference path do.
struct Rope {
    /// `(L, 1, D/2)` each, broadcast over heads.
    cos: Tensor,
    sin: Tensor,
    half: usize,
}

impl Rope {
    fn new(positions: &[usize], head_dim: usize, base: f64, device: &Device) -> Result<Self, TrainError> {
        let n_positions = positions.len();
        let half = head_dim / 2;
        let inv_freq: Vec<f64> = (0..half).map(|idx| base.powf(-2.0 * idx as f64 / head_dim as f64)).collect();
        let mut cos = Vec::with_capacity(n_positions * half);
        let mut sin = Vec::with_capacity(n_positions * half);
        for &position in positions {
            for &freq in &inv_freq {
                let angle = position as f64 * freq;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Ok(Rope {
            cos: Tensor::from_vec(cos, (n_positions, 1, half), device)?,
            sin: Tensor::from_vec(sin, (n_positions, 1, half), device)?,
            half,
        })
    }

    /// Rotates `(L, heads, D)`.
    fn apply(&self, xs: &Tensor) -> Result<Tensor, TrainError> {
        let first = xs.narrow(2, 0, self.half)?;
        let second = xs.narrow(2, self.half, self.half)?;
        let rotated_first = (first.broadcast_mul(&self.cos)? - second.broadcast_mul(&self.sin)?)?;
        let rotated_second = (first.broadcast_mul(&self.sin)? + second.broadcast_mul(&self.cos)?)?;
        Ok(Tensor::cat(&[rotated_first, rotated_second], 2)?)
    }
}

/// Additive `(L, L)` mask: 0 where row `q` may attend row `k`, `-inf` elsewhere. A row attends
/// earlier rows (`k <= q`) of the prompt (segment 0) or of its own segment, and on sliding layers
/// only keys fewer than `window` positions back. For one segment at positions `0..L` this is the
/// plain causal (sliding-window) mask.
fn packed_mask(
    positions: &[usize],
    segments: &[usize],
    window: Option<usize>,
    device: &Device,
) -> Result<Tensor, TrainError> {
    let n_positions = positions.len();
    let mut values = vec![f32::NEG_INFINITY; n_positions * n_positions];
    for query in 0..n_positions {
        for key in 0..=query {
            // Rows of another reply can sit at later positions, so the window is only measured
            // within one sequence (where the key's position is never after the query's).
            let same_sequence = segments[key] == 0 || segments[key] == segments[query];
            if same_sequence && window.is_none_or(|window| positions[query] - positions[key] < window) {
                values[query * n_positions + key] = 0.0;
            }
        }
    }
    Ok(Tensor::from_vec(values, (n_positions, n_positions), device)?)
}

/// Softmax over the last dimension from differentiable ops; the max is subtracted as a constant
/// (it cancels in the softmax, so it needs no gradient).
fn softmax_last_dim(xs: &Tensor) -> Result<Tensor, TrainError> {
    let max = xs.max_keepdim(D::Minus1)?.detach();
    let exp = xs.broadcast_sub(&max)?.exp()?;
    let sum = exp.sum_keepdim(D::Minus1)?;
    Ok(exp.broadcast_div(&sum)?)
}

/// RMSNorm over the last dimension, times `weight`.
fn rms_norm(xs: &Tensor, weight: &Tensor, eps: f32) -> Result<Tensor, TrainError> {
    let mean_square = xs.sqr()?.mean_keepdim(D::Minus1)?;
    let inv_rms = (mean_square + eps as f64)?.sqrt()?.recip()?;
    Ok(xs.broadcast_mul(&inv_rms)?.broadcast_mul(weight)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(positions: &[usize], segments: &[usize], window: Option<usize>) -> Vec<Vec<bool>> {
        let mask = packed_mask(positions, segments, window, &Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
        mask.iter().map(|row| row.iter().map(|v| v.is_finite()).collect()).collect()
    }

    #[test]
    fn causal_mask_respects_the_window() {
        assert_eq!(
            allowed(&[0, 1, 2, 3], &[0; 4], Some(2)),
            vec![
                vec![true, false, false, false],
                vec![true, true, false, false],
                vec![false, true, true, false],
                vec![false, false, true, true],
            ]
        );
    }

    #[test]
    fn packed_groups_lay_out_rows_targets_and_masks() {
        // Prompt [10, 11], replies [20, 21, 22] and [30].
        let group = PackedGroup::new(&[10, 11], &[&[20, 21, 22], &[30]]).unwrap();
        assert_eq!(group.inputs, vec![10, 11, 20, 21]);
        assert_eq!(group.positions, vec![0, 1, 2, 3]);
        assert_eq!(group.segments, vec![0, 0, 1, 1]);
        // 20 and 30 are predicted from the prompt's last row; 21 from 20's row, 22 from 21's.
        assert_eq!(group.targets, vec![20, 21, 22, 30]);
        assert_eq!(group.head_rows, vec![1, 2, 3, 1]);
        assert_eq!(group.reply_lens, vec![3, 1]);
        assert_eq!((group.n_rows(), group.n_replies()), (4, 2));

        // Two replies of two tokens after a one-token prompt: rows [p, a0, b0] at positions
        // [0, 1, 1]; b0 must not see a0, and with window 1 each row sees only itself.
        let group = PackedGroup::new(&[5], &[&[6, 7], &[8, 9]]).unwrap();
        assert_eq!(group.positions, vec![0, 1, 1]);
        let full = allowed(&group.positions, &group.segments, None);
        assert_eq!(full, vec![vec![true, false, false], vec![true, true, false], vec![true, false, true]]);
        let local = allowed(&group.positions, &group.segments, Some(1));
        assert_eq!(local, vec![vec![true, false, false], vec![false, true, false], vec![false, false, true]]);

        assert!(PackedGroup::new(&[], &[&[1]]).is_err());
        assert!(PackedGroup::new(&[1], &[]).is_err());
        assert!(PackedGroup::new(&[1], &[&[2], &[]]).is_err());
    }

    #[test]
    fn softmax_and_rms_norm_match_their_definitions() {
        let xs = Tensor::new(&[[1f32, 2.0, 3.0], [0.0, -1.0, 5.0]], &Device::Cpu).unwrap();
        let soft = softmax_last_dim(&xs).unwrap().to_vec2::<f32>().unwrap();
        let expected: f32 = 1f32.exp() / (1f32.exp() + 2f32.exp() + 3f32.exp());
        assert!((soft[0][0] - expected).abs() < 1e-6);
        let weight = Tensor::new(&[1f32, 2.0, 0.5], &Device::Cpu).unwrap();
        let normed = rms_norm(&xs, &weight, 0.0).unwrap().to_vec2::<f32>().unwrap();
        let rms = ((1.0 + 4.0 + 9.0) / 3.0f32).sqrt();
        assert!((normed[0][1] - 2.0 / rms * 2.0).abs() < 1e-6);
    }

    #[test]
    fn rope_rotates_pairs_half_a_head_apart() {
        let rope = Rope::new(&[0, 1], 4, 10_000.0, &Device::Cpu).unwrap();
        let xs = Tensor::new(&[[[1f32, 0.0, 0.0, 0.0]], [[1.0, 0.0, 0.0, 0.0]]], &Device::Cpu).unwrap();
        let rotated = rope.apply(&xs).unwrap().to_vec3::<f32>().unwrap();
        // Position 0 is unrotated; position 1 rotates dimension 0 with 2 by angle 1 radian.
        assert_eq!(rotated[0][0], vec![1.0, 0.0, 0.0, 0.0]);
        assert!((rotated[1][0][0] - 1f32.cos()).abs() < 1e-6);
        assert!((rotated[1][0][2] - 1f32.sin()).abs() < 1e-6);
    }
}
