//! LoRA adapters for the embedded Gemma 3: the file format, and the low-rank update the forward
//! pass adds after each adapted matmul.
//!
//! # Format (`ethos-lora-v1`)
//!
//! One safetensors file of f32 tensors named as peft names them, so the file also loads into
//! Hugging Face peft on top of `google/gemma-3-270m`:
//!
//! - `base_model.model.model.layers.{i}.self_attn.{q_proj,k_proj,v_proj,o_proj}.lora_A.weight`,
//!   shape `(r, in_features)`, and `...lora_B.weight`, shape `(out_features, r)`;
//! - `base_model.model.model.layers.{i}.mlp.{gate_proj,up_proj,down_proj}.lora_{A,B}.weight`.
//!
//! Every targeted module of every layer has both matrices. The header's `__metadata__` map holds
//! `format` = `ethos-lora-v1`, `base_model` = `gemma-3-270m`, `r`, `lora_alpha`, `target_modules`
//! (comma-separated peft names, e.g. `q_proj,v_proj`), `chat_format` (a
//! [`ChatFormat::as_str`] name; a file without the key uses `few_shot_transcript`), and any
//! provenance keys the writer adds (run id, step, ...), which [`LoraAdapter::metadata`] returns.
//!
//! An adapted projection computes `x W^T + (alpha / r) (x A^T) B^T`: peft's default scale (not
//! rsLoRA's `alpha / sqrt(r)`). With every `B` zero, as peft initializes it, the adapter changes
//! nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::chat_format::ChatFormat;
use super::gemma3::Config;
use crate::LlmError;

/// The `format` metadata value of this version of the format.
pub const ADAPTER_FORMAT: &str = "ethos-lora-v1";
/// The `base_model` metadata value: the only base model adapters are trained on.
pub const ADAPTER_BASE_MODEL: &str = "gemma-3-270m";

const KEY_FORMAT: &str = "format";
const KEY_BASE_MODEL: &str = "base_model";
const KEY_RANK: &str = "r";
const KEY_ALPHA: &str = "lora_alpha";
const KEY_TARGETS: &str = "target_modules";
const KEY_CHAT_FORMAT: &str = "chat_format";

/// Metadata keys the format itself writes; [`LoraAdapter::metadata_mut`] cannot set them.
pub const RESERVED_METADATA_KEYS: [&str; 6] =
    [KEY_FORMAT, KEY_BASE_MODEL, KEY_RANK, KEY_ALPHA, KEY_TARGETS, KEY_CHAT_FORMAT];

/// What a file's tensor names start with (peft's prefix for a causal LM's decoder layers).
const TENSOR_PREFIX: &str = "base_model.model.model.layers.";

/// A matmul of a decoder layer that an adapter can adapt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LoraTarget {
    /// Query projection (`q_proj`, GGUF `attn_q`): hidden -> heads * head_dim.
    QProj,
    /// Key projection (`k_proj`, GGUF `attn_k`): hidden -> kv_heads * head_dim.
    KProj,
    /// Value projection (`v_proj`, GGUF `attn_v`): hidden -> kv_heads * head_dim.
    VProj,
    /// Attention output (`o_proj`, GGUF `attn_output`): heads * head_dim -> hidden.
    OProj,
    /// Feed-forward gate (`gate_proj`, GGUF `ffn_gate`): hidden -> intermediate.
    GateProj,
    /// Feed-forward up projection (`up_proj`, GGUF `ffn_up`): hidden -> intermediate.
    UpProj,
    /// Feed-forward down projection (`down_proj`, GGUF `ffn_down`): intermediate -> hidden.
    DownProj,
}

/// A name that is not a [`LoraTarget`]'s peft name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown LoRA target `{0}` (known: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)")]
pub struct ParseLoraTargetError(pub String);

impl LoraTarget {
    /// Every target, in the order of a decoder layer's matmuls.
    pub const ALL: [LoraTarget; 7] = [
        LoraTarget::QProj,
        LoraTarget::KProj,
        LoraTarget::VProj,
        LoraTarget::OProj,
        LoraTarget::GateProj,
        LoraTarget::UpProj,
        LoraTarget::DownProj,
    ];

    /// The Hugging Face / peft module name (`q_proj`, ...), as in `target_modules`.
    pub fn hf_name(self) -> &'static str {
        match self {
            LoraTarget::QProj => "q_proj",
            LoraTarget::KProj => "k_proj",
            LoraTarget::VProj => "v_proj",
            LoraTarget::OProj => "o_proj",
            LoraTarget::GateProj => "gate_proj",
            LoraTarget::UpProj => "up_proj",
            LoraTarget::DownProj => "down_proj",
        }
    }

    /// The llama.cpp tensor name of the base weight (`blk.N.<name>.weight`).
    pub fn gguf_name(self) -> &'static str {
        match self {
            LoraTarget::QProj => "attn_q",
            LoraTarget::KProj => "attn_k",
            LoraTarget::VProj => "attn_v",
            LoraTarget::OProj => "attn_output",
            LoraTarget::GateProj => "ffn_gate",
            LoraTarget::UpProj => "ffn_up",
            LoraTarget::DownProj => "ffn_down",
        }
    }

    /// The peft module path of this target in layer `layer_idx`
    /// (`base_model.model.model.layers.3.self_attn.q_proj`); tensors append `.lora_A.weight` or
    /// `.lora_B.weight`.
    pub fn module_path(self, layer_idx: usize) -> String {
        format!("{TENSOR_PREFIX}{layer_idx}.{}.{}", self.block(), self.hf_name())
    }

    /// `(in_features, out_features)` of the adapted matmul in a model with this config.
    pub fn shape(self, config: &Config) -> (usize, usize) {
        let hidden = config.hidden_size;
        let q_width = config.num_attention_heads * config.head_dim;
        let kv_width = config.num_key_value_heads * config.head_dim;
        match self {
            LoraTarget::QProj => (hidden, q_width),
            LoraTarget::KProj | LoraTarget::VProj => (hidden, kv_width),
            LoraTarget::OProj => (q_width, hidden),
            LoraTarget::GateProj | LoraTarget::UpProj => (hidden, config.intermediate_size),
            LoraTarget::DownProj => (config.intermediate_size, hidden),
        }
    }

    /// Position in [`LoraTarget::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    fn block(self) -> &'static str {
        match self {
            LoraTarget::QProj | LoraTarget::KProj | LoraTarget::VProj | LoraTarget::OProj => "self_attn",
            LoraTarget::GateProj | LoraTarget::UpProj | LoraTarget::DownProj => "mlp",
        }
    }
}

impl fmt::Display for LoraTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hf_name())
    }
}

impl FromStr for LoraTarget {
    type Err = ParseLoraTargetError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        LoraTarget::ALL
            .into_iter()
            .find(|target| target.hf_name() == name)
            .ok_or_else(|| ParseLoraTargetError(name.to_string()))
    }
}

/// The shape of an adapter: rank, alpha and the adapted matmuls.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    /// Rank `r` of every pair (rows of `A`, columns of `B`).
    pub rank: usize,
    /// peft's `lora_alpha`; the update is scaled by `alpha / rank`.
    pub alpha: f64,
    /// The adapted matmuls of every layer.
    pub targets: Vec<LoraTarget>,
}

impl LoraConfig {
    /// The factor the low-rank update is multiplied by: `alpha / rank` (peft's default).
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }
}

/// The two matrices of one adapted matmul, f32 row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraPair {
    /// `(rank, in_dim)`.
    a: Vec<f32>,
    /// `(out_dim, rank)`.
    b: Vec<f32>,
    in_dim: usize,
    out_dim: usize,
}

impl LoraPair {
    /// `A`, `(rank, in_dim)` row-major (peft's `lora_A.weight`).
    pub fn a(&self) -> &[f32] {
        &self.a
    }

    /// `B`, `(out_dim, rank)` row-major (peft's `lora_B.weight`).
    pub fn b(&self) -> &[f32] {
        &self.b
    }

    /// Input width of the adapted matmul.
    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    /// Output width of the adapted matmul.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// Rank of the pair.
    pub fn rank(&self) -> usize {
        self.a.len() / self.in_dim.max(1)
    }
}

/// A LoRA adapter for Gemma-3-270M: its config, the chat format it was trained in, provenance
/// metadata, and one [`LoraPair`] per (layer, target). See the module docs for the file format.
#[derive(Debug, Clone)]
pub struct LoraAdapter {
    config: LoraConfig,
    chat_format: ChatFormat,
    /// Keys other than [`RESERVED_METADATA_KEYS`].
    metadata: BTreeMap<String, String>,
    pairs: BTreeMap<(usize, LoraTarget), LoraPair>,
    /// Where the adapter came from, for error messages (a path, or "in-memory LoRA adapter").
    source: String,
}

impl LoraAdapter {
    /// An adapter without pairs; add them with [`LoraAdapter::insert`]. Duplicate targets are
    /// dropped and the rest put in [`LoraTarget::ALL`] order, so `target_modules` is canonical.
    pub fn new(mut config: LoraConfig, chat_format: ChatFormat) -> Self {
        config.targets.sort();
        config.targets.dedup();
        LoraAdapter {
            config,
            chat_format,
            metadata: BTreeMap::new(),
            pairs: BTreeMap::new(),
            source: "in-memory LoRA adapter".to_string(),
        }
    }

    /// Sets the pair of `target` in layer `layer_idx` (replacing any earlier one). `a` is
    /// `(rank, in_dim)` and `b` `(out_dim, rank)`, row-major, all values finite.
    pub fn insert(
        &mut self,
        layer_idx: usize,
        target: LoraTarget,
        a: Vec<f32>,
        b: Vec<f32>,
        in_dim: usize,
        out_dim: usize,
    ) -> Result<(), LlmError> {
        let path = target.module_path(layer_idx);
        let rank = self.config.rank;
        if !self.config.targets.contains(&target) {
            return Err(self.error(format!("{path}: `{target}` is not among the config's targets")));
        }
        if rank == 0 || in_dim == 0 || out_dim == 0 {
            return Err(self.error(format!("{path}: rank {rank}, in_dim {in_dim}, out_dim {out_dim} must be > 0")));
        }
        if a.len() != rank * in_dim {
            return Err(self.error(format!("{path}.lora_A.weight: {} values, expected ({rank}, {in_dim})", a.len())));
        }
        if b.len() != out_dim * rank {
            return Err(self.error(format!("{path}.lora_B.weight: {} values, expected ({out_dim}, {rank})", b.len())));
        }
        if !a.iter().chain(&b).all(|value| value.is_finite()) {
            return Err(self.error(format!("{path}: non-finite value")));
        }
        self.pairs.insert((layer_idx, target), LoraPair { a, b, in_dim, out_dim });
        Ok(())
    }

    /// The pair of `target` in layer `layer_idx`.
    pub fn get(&self, layer_idx: usize, target: LoraTarget) -> Option<&LoraPair> {
        self.pairs.get(&(layer_idx, target))
    }

    /// Every pair, by layer then target.
    pub fn pairs(&self) -> impl Iterator<Item = (usize, LoraTarget, &LoraPair)> {
        self.pairs.iter().map(|(&(layer_idx, target), pair)| (layer_idx, target, pair))
    }

    /// Number of layers with pairs (one more than the highest layer index; 0 when empty).
    pub fn n_layers(&self) -> usize {
        self.pairs.keys().next_back().map_or(0, |&(layer_idx, _)| layer_idx + 1)
    }

    /// Rank, alpha and targets.
    pub fn config(&self) -> &LoraConfig {
        &self.config
    }

    /// The chat format the adapter was trained in (and is served in).
    pub fn chat_format(&self) -> ChatFormat {
        self.chat_format
    }

    /// Changes the chat format written to the file.
    pub fn set_chat_format(&mut self, chat_format: ChatFormat) {
        self.chat_format = chat_format;
    }

    /// Provenance metadata: every `__metadata__` key except [`RESERVED_METADATA_KEYS`].
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// Provenance metadata to write with the adapter. [`LoraAdapter::save`] rejects the
    /// reserved keys, which come from the config and chat format.
    pub fn metadata_mut(&mut self) -> &mut BTreeMap<String, String> {
        &mut self.metadata
    }

    /// Where the adapter was loaded from (its path), or `in-memory LoRA adapter`.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Reads an adapter file; errors name the file and the tensor or metadata key.
    pub fn load(path: &Path) -> Result<Self, LlmError> {
        let bytes = std::fs::read(path).map_err(|err| file_error(path, err.to_string()))?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    /// Parses the bytes of an adapter file; `source` names it in errors.
    pub fn from_bytes(bytes: &[u8], source: &str) -> Result<Self, LlmError> {
        let fail = |message: String| LlmError::ModelFile { path: source.to_string(), message };
        let not_safetensors = |err: safetensors::SafeTensorError| {
            fail(format!("not a safetensors file ({err}), expected a LoRA adapter"))
        };
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(not_safetensors)?;
        let tensors = SafeTensors::deserialize(bytes).map_err(not_safetensors)?;
        let mut metadata: BTreeMap<String, String> =
            header.metadata().clone().unwrap_or_default().into_iter().collect();
        let mut take = |key: &str| metadata.remove(key);

        match take(KEY_FORMAT) {
            Some(format) if format == ADAPTER_FORMAT => {}
            Some(format) => {
                return Err(fail(format!("metadata `{KEY_FORMAT}` is `{format}`, expected `{ADAPTER_FORMAT}`")))
            }
            None => {
                return Err(fail(format!("metadata `{KEY_FORMAT}` is missing: not an {ADAPTER_FORMAT} LoRA adapter")))
            }
        }
        let base_model = take(KEY_BASE_MODEL).ok_or_else(|| fail(format!("metadata `{KEY_BASE_MODEL}` is missing")))?;
        if base_model != ADAPTER_BASE_MODEL {
            return Err(fail(format!(
                "metadata `{KEY_BASE_MODEL}` is `{base_model}`, expected `{ADAPTER_BASE_MODEL}`"
            )));
        }
        let rank_text = take(KEY_RANK).ok_or_else(|| fail(format!("metadata `{KEY_RANK}` is missing")))?;
        let rank = rank_text
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|&rank| rank > 0)
            .ok_or_else(|| fail(format!("metadata `{KEY_RANK}` is `{rank_text}`, expected a positive integer")))?;
        let alpha_text = take(KEY_ALPHA).ok_or_else(|| fail(format!("metadata `{KEY_ALPHA}` is missing")))?;
        let alpha = alpha_text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|alpha| alpha.is_finite())
            .ok_or_else(|| fail(format!("metadata `{KEY_ALPHA}` is `{alpha_text}`, expected a number")))?;
        let targets_text = take(KEY_TARGETS).ok_or_else(|| fail(format!("metadata `{KEY_TARGETS}` is missing")))?;
        let mut targets = Vec::new();
        for name in targets_text.split(',').map(str::trim) {
            let target = name.parse::<LoraTarget>().map_err(|err| fail(format!("metadata `{KEY_TARGETS}`: {err}")))?;
            if targets.contains(&target) {
                return Err(fail(format!("metadata `{KEY_TARGETS}` names `{target}` twice")));
            }
            targets.push(target);
        }
        let chat_format = match take(KEY_CHAT_FORMAT) {
            None => ChatFormat::FewShotTranscript,
            Some(name) => {
                name.parse::<ChatFormat>().map_err(|err| fail(format!("metadata `{KEY_CHAT_FORMAT}`: {err}")))?
            }
        };

        let mut adapter = LoraAdapter::new(LoraConfig { rank, alpha, targets }, chat_format);
        adapter.metadata = metadata;
        adapter.source = source.to_string();

        // Collect the matrices by (layer, target), checking each tensor on its own first.
        let mut halves: BTreeMap<(usize, LoraTarget), (Option<Matrix>, Option<Matrix>)> = BTreeMap::new();
        for (name, view) in tensors.iter() {
            let (layer_idx, target, is_a) = parse_tensor_name(name).ok_or_else(|| {
                fail(format!("unexpected tensor `{name}` (not a peft LoRA matrix of a decoder layer)"))
            })?;
            if !adapter.config.targets.contains(&target) {
                return Err(fail(format!(
                    "tensor `{name}` adapts `{target}`, which metadata `{KEY_TARGETS}` (`{targets_text}`) does not list"
                )));
            }
            let matrix = read_matrix(name, &view).map_err(fail)?;
            let (rows, cols) = (matrix.rows, matrix.cols);
            let rank_dim = if is_a { rows } else { cols };
            if rank_dim != rank {
                return Err(fail(format!(
                    "tensor `{name}` has shape ({rows}, {cols}), i.e. rank {rank_dim}, \
                     but metadata `{KEY_RANK}` is {rank}"
                )));
            }
            let entry = halves.entry((layer_idx, target)).or_default();
            if is_a {
                entry.0 = Some(matrix);
            } else {
                entry.1 = Some(matrix);
            }
        }
        if halves.is_empty() {
            return Err(fail("holds no LoRA tensors".to_string()));
        }

        // Every target of every layer up to the last one present: a gap is a missing tensor.
        let n_layers = halves.keys().next_back().map_or(0, |&(layer_idx, _)| layer_idx + 1);
        for layer_idx in 0..n_layers {
            for &target in &adapter.config.targets {
                let path = target.module_path(layer_idx);
                let (a, b) = match halves.remove(&(layer_idx, target)) {
                    Some((Some(a), Some(b))) => (a, b),
                    Some((None, _)) | None => return Err(fail(format!("missing tensor `{path}.lora_A.weight`"))),
                    Some((_, None)) => return Err(fail(format!("missing tensor `{path}.lora_B.weight`"))),
                };
                let (in_dim, out_dim) = (a.cols, b.rows);
                adapter.pairs.insert((layer_idx, target), LoraPair { a: a.values, b: b.values, in_dim, out_dim });
            }
        }
        Ok(adapter)
    }

    /// Checks that the adapter fits a model: every target of every layer present, shapes equal to
    /// the model's matmuls, no pair for a layer the model does not have.
    pub fn validate_for(&self, config: &Config) -> Result<(), LlmError> {
        self.check_config()?;
        let n_layers = config.num_hidden_layers;
        if let Some(&(layer_idx, target)) = self.pairs.keys().find(|&&(layer_idx, _)| layer_idx >= n_layers) {
            return Err(self.error(format!(
                "tensor `{}.lora_A.weight` adapts layer {layer_idx}, but the model has {n_layers} layers",
                target.module_path(layer_idx)
            )));
        }
        for layer_idx in 0..n_layers {
            for &target in &self.config.targets {
                let path = target.module_path(layer_idx);
                let pair = self.get(layer_idx, target).ok_or_else(|| {
                    self.error(format!("missing tensor `{path}.lora_A.weight` (the model has {n_layers} layers)"))
                })?;
                let (in_dim, out_dim) = target.shape(config);
                let rank = self.config.rank;
                if pair.in_dim != in_dim {
                    return Err(self.error(format!(
                        "tensor `{path}.lora_A.weight` has shape ({rank}, {}), the model needs ({rank}, {in_dim})",
                        pair.in_dim
                    )));
                }
                if pair.out_dim != out_dim {
                    return Err(self.error(format!(
                        "tensor `{path}.lora_B.weight` has shape ({}, {rank}), the model needs ({out_dim}, {rank})",
                        pair.out_dim
                    )));
                }
            }
        }
        Ok(())
    }

    /// The adapter as the bytes of a safetensors file.
    pub fn to_bytes(&self) -> Result<Vec<u8>, LlmError> {
        self.check_config()?;
        if self.pairs.is_empty() {
            return Err(self.error("has no LoRA pairs to save".to_string()));
        }
        if let Some(key) = self.metadata.keys().find(|key| RESERVED_METADATA_KEYS.contains(&key.as_str())) {
            return Err(self.error(format!("metadata key `{key}` is reserved (it comes from the config)")));
        }
        // A file must load back: the same completeness rule as `from_bytes`.
        for layer_idx in 0..self.n_layers() {
            for &target in &self.config.targets {
                if self.get(layer_idx, target).is_none() {
                    return Err(self.error(format!("missing pair `{}`", target.module_path(layer_idx))));
                }
            }
        }

        let mut buffers: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(2 * self.pairs.len());
        for (&(layer_idx, target), pair) in &self.pairs {
            let path = target.module_path(layer_idx);
            let rank = pair.rank();
            buffers.push((format!("{path}.lora_A.weight"), vec![rank, pair.in_dim], f32_bytes(&pair.a)));
            buffers.push((format!("{path}.lora_B.weight"), vec![pair.out_dim, rank], f32_bytes(&pair.b)));
        }
        let mut header: BTreeMap<String, String> =
            self.metadata.iter().map(|(key, value)| (key.clone(), value.clone())).collect();
        let targets: Vec<&str> = self.config.targets.iter().map(|target| target.hf_name()).collect();
        for (key, value) in [
            (KEY_FORMAT, ADAPTER_FORMAT.to_string()),
            (KEY_BASE_MODEL, ADAPTER_BASE_MODEL.to_string()),
            (KEY_RANK, self.config.rank.to_string()),
            // `Display` of f64 is the shortest text that parses back to the same value.
            (KEY_ALPHA, self.config.alpha.to_string()),
            (KEY_TARGETS, targets.join(",")),
            (KEY_CHAT_FORMAT, self.chat_format.as_str().to_string()),
        ] {
            header.insert(key.to_string(), value);
        }
        Ok(deterministic_safetensors(&mut buffers, &header))
    }

    /// Writes the adapter to `path` atomically: into a temporary file in the same directory, then
    /// renamed over `path`, so a reader (a sampler between RL steps, a killed run) never sees a
    /// partial file.
    pub fn save(&self, path: &Path) -> Result<(), LlmError> {
        let bytes = self.to_bytes()?;
        let file_name = path.file_name().ok_or_else(|| file_error(path, "not a file path".to_string()))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |duration| duration.subsec_nanos());
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(file_name);
        temp_name.push(format!(".tmp-{}-{nanos}", std::process::id()));
        let temp_path = path.with_file_name(temp_name);
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temp_path)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&temp_path, path)
        };
        write().map_err(|err| {
            // Best effort: the temporary file is useless once the write failed.
            let _ = std::fs::remove_file(&temp_path);
            file_error(path, err.to_string())
        })
    }

    fn check_config(&self) -> Result<(), LlmError> {
        let config = &self.config;
        if config.rank == 0 || config.targets.is_empty() || !config.alpha.is_finite() {
            return Err(self.error(format!(
                "invalid config: rank {} (must be > 0), alpha {} (must be finite), {} targets (must be > 0)",
                config.rank,
                config.alpha,
                config.targets.len()
            )));
        }
        Ok(())
    }

    fn error(&self, message: String) -> LlmError {
        LlmError::ModelFile { path: self.source.clone(), message }
    }
}

fn file_error(path: &Path, message: String) -> LlmError {
    LlmError::ModelFile { path: path.display().to_string(), message }
}

/// `(layer_idx, target, is_a)` of a peft LoRA tensor name.
fn parse_tensor_name(name: &str) -> Option<(usize, LoraTarget, bool)> {
    let rest = name.strip_prefix(TENSOR_PREFIX)?;
    let (layer, rest) = rest.split_once('.')?;
    // Reject `+3` and `03`, which `usize::from_str` would accept, so each tensor has one name.
    if layer.is_empty()
        || !layer.bytes().all(|byte| byte.is_ascii_digit())
        || (layer.len() > 1 && layer.starts_with('0'))
    {
        return None;
    }
    let layer_idx = layer.parse().ok()?;
    let (block, rest) = rest.split_once('.')?;
    let (module, matrix) = rest.split_once('.')?;
    let target = module.parse::<LoraTarget>().ok()?;
    if target.block() != block {
        return None;
    }
    match matrix {
        "lora_A.weight" => Some((layer_idx, target, true)),
        "lora_B.weight" => Some((layer_idx, target, false)),
        _ => None,
    }
}

/// A 2-D f32 tensor read from a file.
struct Matrix {
    rows: usize,
    cols: usize,
    values: Vec<f32>,
}

fn read_matrix(name: &str, view: &TensorView<'_>) -> Result<Matrix, String> {
    if view.dtype() != Dtype::F32 {
        return Err(format!("tensor `{name}` is {:?}, expected F32", view.dtype()));
    }
    let &[rows, cols] = view.shape() else {
        return Err(format!("tensor `{name}` has shape {:?}, expected 2 dimensions", view.shape()));
    };
    // safetensors checked that the data length matches the shape and dtype.
    let values: Vec<f32> =
        view.data().chunks_exact(4).map(|bytes| f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])).collect();
    if values.len() != rows * cols || rows == 0 || cols == 0 {
        return Err(format!("tensor `{name}` has shape ({rows}, {cols}) and {} values", values.len()));
    }
    if !values.iter().all(|value| value.is_finite()) {
        return Err(format!("tensor `{name}` holds a non-finite value"));
    }
    Ok(Matrix { rows, cols, values })
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|value| value.to_le_bytes()).collect()
}

/// One pair laid out for the forward pass: `A` as stored, `B` transposed so that adding the
/// update to an output row is `rank` contiguous axpys, and the scale folded into `x A^T`.
#[derive(Debug, Clone)]
pub(crate) struct LoraDelta {
    /// `(rank, in_dim)`.
    a: Vec<f32>,
    /// `(rank, out_dim)`: `B^T`.
    b_t: Vec<f32>,
    rank: usize,
    in_dim: usize,
    out_dim: usize,
    scale: f32,
}

/// Below this many multiply-adds per call the update runs on the calling thread. A decode step
/// (a few rows) stays below it: there, waking candle's spinning pool costs more than the work,
/// and far more when another process holds a core. Prefill chunks go over it.
const PARALLEL_MIN_WORK: usize = 1 << 21;

impl LoraDelta {
    /// Prepares `pair` with the adapter's scale.
    pub(crate) fn new(pair: &LoraPair, scale: f32) -> Self {
        let rank = pair.rank();
        let mut b_t = vec![0f32; rank * pair.out_dim];
        for (out_idx, b_row) in pair.b.chunks_exact(rank).enumerate() {
            for (rank_idx, &value) in b_row.iter().enumerate() {
                b_t[rank_idx * pair.out_dim + out_idx] = value;
            }
        }
        LoraDelta { a: pair.a.clone(), b_t, rank, in_dim: pair.in_dim, out_dim: pair.out_dim, scale }
    }

    /// `out (n_rows, out_dim) += scale * (xs A^T) B^T` for `xs (n_rows, in_dim)`.
    ///
    /// Each row is computed alone, in a fixed order, by one thread: a row's result does not
    /// depend on the other rows of the batch or on the thread count, so sampling stays
    /// batch-invariant with an adapter as without. (Blocking rows together, a wider dot product
    /// and register-blocking over `k` were all slower than these two plain loops, which run at
    /// ~10 G multiply-adds/s on one core; faster would need AVX2 intrinsics.)
    pub(crate) fn add_to(&self, xs: &[f32], n_rows: usize, out: &mut [f32]) -> Result<(), LlmError> {
        if xs.len() != n_rows * self.in_dim || out.len() != n_rows * self.out_dim {
            return Err(LlmError::Inference(format!(
                "LoRA update of ({n_rows}, {}) -> ({n_rows}, {}) given {} inputs and {} outputs",
                self.in_dim,
                self.out_dim,
                xs.len(),
                out.len()
            )));
        }
        let work = n_rows * self.rank * (self.in_dim + self.out_dim);
        if n_rows < 2 || work < PARALLEL_MIN_WORK {
            let mut projected = vec![0f32; self.rank];
            for (x_row, out_row) in xs.chunks_exact(self.in_dim).zip(out.chunks_exact_mut(self.out_dim)) {
                self.add_row(x_row, out_row, &mut projected);
            }
            return Ok(());
        }
        // One uncontended lock per row keeps the disjoint row writes in safe code.
        let out_rows: Vec<Mutex<&mut [f32]>> = out.chunks_exact_mut(self.out_dim).map(Mutex::new).collect();
        candle_core::utils::barrier_pool().execute_chunked(n_rows, |rows| {
            let mut projected = vec![0f32; self.rank];
            for row_idx in rows {
                let x_row = &xs[row_idx * self.in_dim..(row_idx + 1) * self.in_dim];
                let mut out_row = out_rows[row_idx].lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                self.add_row(x_row, &mut out_row, &mut projected);
            }
        });
        Ok(())
    }

    fn add_row(&self, x_row: &[f32], out_row: &mut [f32], projected: &mut [f32]) {
        for (value, a_row) in projected.iter_mut().zip(self.a.chunks_exact(self.in_dim)) {
            *value = super::gemma3::dot(x_row, a_row) * self.scale;
        }
        // `rank` contiguous axpys over the output row (B transposed).
        for (&coefficient, b_row) in projected.iter().zip(self.b_t.chunks_exact(self.out_dim)) {
            for (out, &b) in out_row.iter_mut().zip(b_row) {
                *out += coefficient * b;
            }
        }
    }
}

/// A safetensors file with a reproducible byte layout: tensors and metadata in name order.
///
/// `safetensors::serialize` takes the metadata as a `HashMap` and writes it in hash order, so the
/// same adapter saved by two processes gave different bytes; a resumed training run must write
/// the same file as an uninterrupted one. The layout is the format's: an 8-byte little-endian
/// header length, the JSON header padded with spaces to a multiple of 8, then the tensor data.
fn deterministic_safetensors(
    buffers: &mut [(String, Vec<usize>, Vec<u8>)],
    metadata: &BTreeMap<String, String>,
) -> Vec<u8> {
    buffers.sort_by(|a, b| a.0.cmp(&b.0));
    // serde_json's Map is ordered by key (no `preserve_order` feature in this workspace).
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".to_string(), serde_json::json!(metadata));
    let mut offset = 0usize;
    for (name, shape, bytes) in buffers.iter() {
        header.insert(
            name.clone(),
            serde_json::json!({ "dtype": "F32", "shape": shape, "data_offsets": [offset, offset + bytes.len()] }),
        );
        offset += bytes.len();
    }
    let mut header_bytes = serde_json::Value::Object(header).to_string().into_bytes();
    while !header_bytes.len().is_multiple_of(8) {
        header_bytes.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + header_bytes.len() + offset);
    out.extend_from_slice(&(header_bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(&header_bytes);
    for (_, _, bytes) in buffers.iter() {
        out.extend_from_slice(bytes);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// A small model shape: 2 layers, hidden 8, 2 heads of 4 (1 kv head), intermediate 12.
    fn tiny_config() -> Config {
        Config {
            vocab_size: 16,
            hidden_size: 8,
            intermediate_size: 12,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            num_key_value_heads: 1,
            head_dim: 4,
            rms_norm_eps: 1e-6,
            rope_theta: 1e6,
            rope_local_base_freq: 1e4,
            sliding_window: 4,
            sliding_window_pattern: 2,
            query_pre_attn_scalar: 4.0,
            max_position_embeddings: 64,
        }
    }

    fn random_values(rng: &mut ChaCha8Rng, len: usize) -> Vec<f32> {
        (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    fn random_adapter(config: &Config, rank: usize, targets: &[LoraTarget], seed: u64) -> LoraAdapter {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let lora_config = LoraConfig { rank, alpha: 2.5 * rank as f64, targets: targets.to_vec() };
        let mut adapter = LoraAdapter::new(lora_config, ChatFormat::Transcript);
        for layer_idx in 0..config.num_hidden_layers {
            for &target in targets {
                let (in_dim, out_dim) = target.shape(config);
                let a = random_values(&mut rng, rank * in_dim);
                let b = random_values(&mut rng, out_dim * rank);
                adapter.insert(layer_idx, target, a, b, in_dim, out_dim).expect("insert");
            }
        }
        adapter
    }

    /// Rewrites a saved adapter through `edit` (tensors by name, metadata) and returns the
    /// load error, which must mention every fragment.
    fn load_error_after(
        edit: impl FnOnce(&mut BTreeMap<String, (Vec<usize>, Dtype, Vec<u8>)>, &mut HashMap<String, String>),
        fragments: &[&str],
    ) {
        let config = tiny_config();
        let bytes =
            random_adapter(&config, 2, &[LoraTarget::QProj, LoraTarget::DownProj], 1).to_bytes().expect("bytes");
        let parsed = SafeTensors::deserialize(&bytes).expect("parse");
        let mut metadata = SafeTensors::read_metadata(&bytes).expect("header").1.metadata().clone().expect("metadata");
        let mut tensors: BTreeMap<String, (Vec<usize>, Dtype, Vec<u8>)> = parsed
            .iter()
            .map(|(name, view)| (name.to_string(), (view.shape().to_vec(), view.dtype(), view.data().to_vec())))
            .collect();
        edit(&mut tensors, &mut metadata);
        let views: Vec<(String, TensorView<'_>)> = tensors
            .iter()
            .map(|(name, (shape, dtype, data))| {
                (name.clone(), TensorView::new(*dtype, shape.clone(), data).expect("view"))
            })
            .collect();
        let edited = safetensors::tensor::serialize(views, Some(metadata)).expect("serialize");
        let err = LoraAdapter::from_bytes(&edited, "runs/x/adapter.safetensors")
            .and_then(|adapter| adapter.validate_for(&config))
            .expect_err("edited file must not load");
        let message = err.to_string();
        assert!(message.contains("runs/x/adapter.safetensors"), "{message}");
        for fragment in fragments {
            assert!(message.contains(fragment), "`{fragment}` not in: {message}");
        }
    }

    const Q0_A: &str = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
    const DOWN1_B: &str = "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight";

    #[test]
    fn target_names() {
        let names: Vec<&str> = LoraTarget::ALL.iter().map(|target| target.hf_name()).collect();
        assert_eq!(names, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]);
        for (idx, target) in LoraTarget::ALL.into_iter().enumerate() {
            assert_eq!(target.index(), idx);
            assert_eq!(target.hf_name().parse::<LoraTarget>(), Ok(target));
        }
        assert_eq!(LoraTarget::OProj.gguf_name(), "attn_output");
        assert_eq!(LoraTarget::UpProj.module_path(3), "base_model.model.model.layers.3.mlp.up_proj");
        assert!("attn_q".parse::<LoraTarget>().is_err());
        let config = tiny_config();
        assert_eq!(LoraTarget::QProj.shape(&config), (8, 8));
        assert_eq!(LoraTarget::KProj.shape(&config), (8, 4));
        assert_eq!(LoraTarget::OProj.shape(&config), (8, 8));
        assert_eq!(LoraTarget::GateProj.shape(&config), (8, 12));
        assert_eq!(LoraTarget::DownProj.shape(&config), (12, 8));
        assert_eq!(parse_tensor_name(Q0_A), Some((0, LoraTarget::QProj, true)));
        assert_eq!(parse_tensor_name(DOWN1_B), Some((1, LoraTarget::DownProj, false)));
        for bad in [
            "base_model.model.model.layers.01.self_attn.q_proj.lora_A.weight",
            "base_model.model.model.layers.0.mlp.q_proj.lora_A.weight",
            "base_model.model.model.layers.0.self_attn.q_proj.lora_C.weight",
            "model.layers.0.self_attn.q_proj.lora_A.weight",
        ] {
            assert_eq!(parse_tensor_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn scale_is_alpha_over_rank() {
        let config = LoraConfig { rank: 16, alpha: 32.0, targets: vec![LoraTarget::QProj] };
        assert_eq!(config.scale(), 2.0);
    }

    /// The same adapter gives the same bytes whatever order its metadata was set in (a resumed
    /// training run must write the file an uninterrupted one writes), and the file loads back.
    #[test]
    fn saved_bytes_are_reproducible() {
        let config = tiny_config();
        let mut first = random_adapter(&config, 2, &LoraTarget::ALL, 5);
        let mut second = random_adapter(&config, 2, &LoraTarget::ALL, 5);
        let keys: Vec<String> = (0..20).map(|idx| format!("key-{idx}")).collect();
        for key in &keys {
            first.metadata_mut().insert(key.clone(), key.to_uppercase());
        }
        for key in keys.iter().rev() {
            second.metadata_mut().insert(key.clone(), key.to_uppercase());
        }
        let bytes = first.to_bytes().expect("bytes");
        assert_eq!(bytes, second.to_bytes().expect("bytes"));
        let loaded = LoraAdapter::from_bytes(&bytes, "memory").expect("load");
        assert_eq!(loaded.metadata(), first.metadata());
        assert_eq!(loaded.to_bytes().expect("bytes"), bytes);
    }

    #[test]
    fn save_load_round_trip_is_bit_exact() {
        let config = tiny_config();
        let mut adapter = random_adapter(&config, 3, &LoraTarget::ALL, 7);
        adapter.metadata_mut().insert("run_id".to_string(), "grpo-42".to_string());
        adapter.metadata_mut().insert("step".to_string(), "1200".to_string());
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("adapter.safetensors");
        adapter.save(&path).expect("save");
        // Only the final file is left: the temporary file was renamed.
        let names: Vec<_> =
            std::fs::read_dir(dir.path()).expect("dir").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names, [std::ffi::OsString::from("adapter.safetensors")]);

        let loaded = LoraAdapter::load(&path).expect("load");
        loaded.validate_for(&config).expect("fits");
        assert_eq!(loaded.config(), adapter.config());
        assert_eq!(loaded.chat_format(), ChatFormat::Transcript);
        assert_eq!(loaded.metadata(), adapter.metadata());
        assert_eq!(loaded.source(), path.display().to_string());
        assert_eq!(loaded.n_layers(), 2);
        let bits = |values: &[f32]| values.iter().map(|value| value.to_bits()).collect::<Vec<_>>();
        assert_eq!(loaded.pairs().count(), adapter.pairs().count());
        for (layer_idx, target, pair) in adapter.pairs() {
            let other = loaded.get(layer_idx, target).expect("pair");
            assert_eq!(bits(other.a()), bits(pair.a()));
            assert_eq!(bits(other.b()), bits(pair.b()));
            assert_eq!((other.in_dim(), other.out_dim(), other.rank()), (pair.in_dim(), pair.out_dim(), 3));
        }

        // The header is what peft and the module docs say.
        let bytes = std::fs::read(&path).expect("read");
        let parsed = SafeTensors::deserialize(&bytes).expect("parse");
        let metadata = SafeTensors::read_metadata(&bytes).expect("header").1.metadata().clone().expect("metadata");
        assert_eq!(metadata["format"], "ethos-lora-v1");
        assert_eq!(metadata["base_model"], "gemma-3-270m");
        assert_eq!(metadata["r"], "3");
        assert_eq!(metadata["lora_alpha"], "7.5");
        assert_eq!(metadata["target_modules"], "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj");
        assert_eq!(metadata["chat_format"], "transcript");
        assert_eq!(metadata["run_id"], "grpo-42");
        assert_eq!(parsed.tensor(Q0_A).expect("q_proj A").shape(), [3, 8]);
        assert_eq!(parsed.tensor(DOWN1_B).expect("down_proj B").shape(), [8, 3]);
        assert_eq!(parsed.len(), 2 * 7 * 2);

        // Saving over an existing file replaces it.
        let mut smaller = random_adapter(&config, 1, &[LoraTarget::VProj], 8);
        smaller.set_chat_format(ChatFormat::FewShotTranscript);
        smaller.save(&path).expect("save over");
        let reloaded = LoraAdapter::load(&path).expect("load");
        assert_eq!(reloaded.config().targets, [LoraTarget::VProj]);
        assert!(reloaded.metadata().is_empty());
    }

    #[test]
    fn missing_chat_format_means_few_shot() {
        load_error_after(
            |_, metadata| {
                metadata.remove("chat_format");
                metadata.insert("base_model".to_string(), "gemma-3-1b".to_string());
            },
            &["metadata `base_model` is `gemma-3-1b`, expected `gemma-3-270m`"],
        );
        let config = tiny_config();
        let bytes = random_adapter(&config, 2, &[LoraTarget::KProj], 3).to_bytes().expect("bytes");
        let parsed = SafeTensors::deserialize(&bytes).expect("parse");
        let mut metadata = SafeTensors::read_metadata(&bytes).expect("header").1.metadata().clone().expect("metadata");
        metadata.remove("chat_format");
        let views: Vec<(String, TensorView<'_>)> = parsed.iter().map(|(name, view)| (name.to_string(), view)).collect();
        let edited = safetensors::tensor::serialize(views, Some(metadata)).expect("serialize");
        let adapter = LoraAdapter::from_bytes(&edited, "a.safetensors").expect("loads");
        assert_eq!(adapter.chat_format(), ChatFormat::FewShotTranscript);
    }

    #[test]
    fn load_errors_name_the_file_and_the_tensor_or_key() {
        load_error_after(
            |tensors, _| {
                tensors.remove(DOWN1_B);
            },
            &["missing tensor", DOWN1_B],
        );
        load_error_after(
            |tensors, _| {
                tensors.get_mut(Q0_A).expect("q A").0 = vec![4, 4];
            },
            &[Q0_A, "rank 4", "metadata `r` is 2"],
        );
        load_error_after(
            |tensors, _| {
                let (shape, _, data) = tensors.get_mut(Q0_A).expect("q A");
                *shape = vec![2, 6];
                data.truncate(2 * 6 * 4);
            },
            &[Q0_A, "(2, 6)", "(2, 8)"],
        );
        load_error_after(
            |tensors, _| {
                let (shape, dtype, data) = tensors.get_mut(DOWN1_B).expect("down B");
                *dtype = Dtype::F16;
                data.truncate(shape.iter().product::<usize>() * 2);
            },
            &[DOWN1_B, "F16", "expected F32"],
        );
        load_error_after(
            |_, metadata| {
                metadata.insert("format".to_string(), "ethos-lora-v2".to_string());
            },
            &["metadata `format` is `ethos-lora-v2`"],
        );
        load_error_after(
            |_, metadata| {
                metadata.remove("format");
            },
            &["metadata `format` is missing"],
        );
        load_error_after(
            |_, metadata| {
                metadata.insert("r".to_string(), "two".to_string());
            },
            &["metadata `r` is `two`"],
        );
        load_error_after(
            |_, metadata| {
                metadata.insert("target_modules".to_string(), "q_proj".to_string());
            },
            &["mlp.down_proj.lora_", "adapts `down_proj`", "target_modules"],
        );
        load_error_after(
            |_, metadata| {
                metadata.insert("target_modules".to_string(), "q_proj,down_proj,lm_head".to_string());
            },
            &["metadata `target_modules`", "`lm_head`"],
        );
        load_error_after(
            |_, metadata| {
                metadata.insert("chat_format".to_string(), "chatml".to_string());
            },
            &["metadata `chat_format`", "`chatml`"],
        );
        load_error_after(
            |tensors, _| {
                let entry = tensors.get(Q0_A).expect("q A").clone();
                tensors.insert("base_model.model.lm_head.lora_A.weight".to_string(), entry);
            },
            &["unexpected tensor `base_model.model.lm_head.lora_A.weight`"],
        );
        load_error_after(
            |tensors, _| {
                let (_, _, data) = tensors.get_mut(Q0_A).expect("q A");
                data[..4].copy_from_slice(&f32::NAN.to_le_bytes());
            },
            &[Q0_A, "non-finite"],
        );
        // A third layer the model does not have.
        load_error_after(
            |tensors, _| {
                for (name, entry) in tensors.clone() {
                    tensors.insert(name.replace("layers.1.", "layers.2."), entry);
                }
            },
            &["layer 2", "the model has 2 layers"],
        );
    }

    #[test]
    fn non_safetensors_files_are_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notes.safetensors");
        std::fs::write(&path, b"{\"this\": \"is json\"}").expect("write");
        let err = LoraAdapter::load(&path).expect_err("not safetensors").to_string();
        assert!(err.contains(&path.display().to_string()) && err.contains("not a safetensors file"), "{err}");
        let missing = dir.path().join("missing.safetensors");
        let err = LoraAdapter::load(&missing).expect_err("missing").to_string();
        assert!(err.contains(&missing.display().to_string()), "{err}");
    }

    #[test]
    fn insert_and_save_check_their_input() {
        let config = tiny_config();
        let mut adapter = LoraAdapter::new(
            LoraConfig { rank: 2, alpha: 4.0, targets: vec![LoraTarget::QProj] },
            ChatFormat::Transcript,
        );
        let err = adapter.insert(0, LoraTarget::QProj, vec![0.0; 15], vec![0.0; 16], 8, 8).expect_err("short A");
        assert!(err.to_string().contains("layers.0.self_attn.q_proj.lora_A.weight"), "{err}");
        let err = adapter.insert(0, LoraTarget::QProj, vec![0.0; 16], vec![0.0; 17], 8, 8).expect_err("long B");
        assert!(err.to_string().contains("lora_B.weight"), "{err}");
        let err = adapter.insert(0, LoraTarget::KProj, vec![0.0; 16], vec![0.0; 8], 8, 4).expect_err("not a target");
        assert!(err.to_string().contains("`k_proj` is not among"), "{err}");
        let err = adapter.insert(0, LoraTarget::QProj, vec![f32::INFINITY; 16], vec![0.0; 16], 8, 8).expect_err("inf");
        assert!(err.to_string().contains("non-finite"), "{err}");
        assert!(adapter.to_bytes().is_err(), "an empty adapter is not saved");

        adapter.insert(1, LoraTarget::QProj, vec![0.0; 16], vec![0.0; 16], 8, 8).expect("layer 1");
        let err = adapter.to_bytes().expect_err("layer 0 missing");
        assert!(err.to_string().contains("layers.0.self_attn.q_proj"), "{err}");
        let err = adapter.validate_for(&config).expect_err("layer 0 missing");
        assert!(err.to_string().contains("missing tensor `base_model.model.model.layers.0.self_attn.q_proj"), "{err}");
        adapter.insert(0, LoraTarget::QProj, vec![0.0; 16], vec![0.0; 16], 8, 8).expect("layer 0");
        adapter.validate_for(&config).expect("complete");

        adapter.metadata_mut().insert("r".to_string(), "8".to_string());
        let err = adapter.to_bytes().expect_err("reserved key");
        assert!(err.to_string().contains("metadata key `r` is reserved"), "{err}");

        // A pair with the right rank but the wrong width for this model.
        let mut wrong = LoraAdapter::new(
            LoraConfig { rank: 2, alpha: 4.0, targets: vec![LoraTarget::KProj] },
            ChatFormat::Transcript,
        );
        for layer_idx in 0..2 {
            wrong.insert(layer_idx, LoraTarget::KProj, vec![0.0; 16], vec![0.0; 16], 8, 8).expect("insert");
        }
        let err = wrong.validate_for(&config).expect_err("k_proj is 8 -> 4").to_string();
        assert!(err.contains("layers.0.self_attn.k_proj.lora_B.weight") && err.contains("(4, 2)"), "{err}");
    }

    /// The update against a naive triple loop in f64, on row counts below and above the
    /// threshold where rows are spread over threads.
    #[test]
    fn delta_matches_a_naive_triple_loop() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        // Single rows, a remainder after blocks, and enough work to go through the thread pool.
        for &(n_rows, rank, in_dim, out_dim) in &[(1, 4, 24, 40), (3, 1, 17, 5), (37, 16, 96, 130), (41, 64, 300, 520)]
        {
            let a = random_values(&mut rng, rank * in_dim);
            let b = random_values(&mut rng, out_dim * rank);
            let xs = random_values(&mut rng, n_rows * in_dim);
            let base = random_values(&mut rng, n_rows * out_dim);
            let scale = 0.75f32;
            let pair = LoraPair { a: a.clone(), b: b.clone(), in_dim, out_dim };
            let mut out = base.clone();
            LoraDelta::new(&pair, scale).add_to(&xs, n_rows, &mut out).expect("add");
            for row in 0..n_rows {
                for col in 0..out_dim {
                    let mut expected = 0f64;
                    for k in 0..rank {
                        let mut projected = 0f64;
                        for i in 0..in_dim {
                            projected += xs[row * in_dim + i] as f64 * a[k * in_dim + i] as f64;
                        }
                        expected += projected * b[col * rank + k] as f64;
                    }
                    let expected = base[row * out_dim + col] as f64 + scale as f64 * expected;
                    let got = out[row * out_dim + col] as f64;
                    assert!((got - expected).abs() <= 1e-4 * (1.0 + expected.abs()), "{got} vs {expected}");
                }
            }
            // Each row alone gives the same bits as in the batch.
            for row in 0..n_rows {
                let mut alone = base[row * out_dim..(row + 1) * out_dim].to_vec();
                LoraDelta::new(&pair, scale)
                    .add_to(&xs[row * in_dim..(row + 1) * in_dim], 1, &mut alone)
                    .expect("add row");
                assert_eq!(alone, out[row * out_dim..(row + 1) * out_dim]);
            }
        }
        let pair = LoraPair { a: vec![0.0; 4], b: vec![0.0; 4], in_dim: 2, out_dim: 2 };
        assert!(LoraDelta::new(&pair, 1.0).add_to(&[0.0; 3], 1, &mut [0.0; 2]).is_err());
    }
}
