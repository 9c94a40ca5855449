//! The policy being trained: the trainable model, its LoRA adapter, the chat format its prompts
//! are written in, and where it started from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::Device;
use ethos_llm::embedded::chat_format::ChatFormat;
use ethos_llm::embedded::ensure_gemma_gguf;
use ethos_llm::embedded::fetch::file_sha256_cached;
use ethos_llm::embedded::lora::LoraConfig;
use ethos_llm::embedded::{spec_adapter, SpecAdapter};
use ethos_llm::ModelSpec;
use serde::Serialize;

use crate::model::{Lora, TrainableGemma};
use crate::TrainError;

/// Where training starts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PolicyStart {
    /// A fresh adapter (B = 0: exactly the base model) initialized with a seed.
    Fresh {
        /// LoRA settings.
        rank: usize,
        /// LoRA alpha.
        alpha: f64,
        /// Adapted projections.
        targets: Vec<String>,
        /// Seed of A's initialization.
        seed: u64,
    },
    /// An existing adapter, continued.
    Adapter {
        /// The file, or `builtin:ethos-warmstart`.
        source: String,
        /// Its sha256.
        sha256: String,
    },
}

/// The trainable policy.
pub struct Policy {
    model: TrainableGemma,
    lora: Lora,
    /// The KL reference: a frozen copy of the starting adapter, or `None` (adapter off) for a fresh
    /// start, whose adapter is exactly zero.
    reference: Option<Lora>,
    chat_format: ChatFormat,
    gguf_path: PathBuf,
    base_identity: String,
    start: PolicyStart,
}

impl Policy {
    /// Loads the base model named by an `embedded:` spec and either its adapter (training
    /// continues it) or a fresh adapter with `fresh` settings, prompts in `fresh_format`.
    pub fn load(
        spec: &ModelSpec,
        fresh: &LoraConfig,
        fresh_format: ChatFormat,
        seed: u64,
        device: &Device,
    ) -> Result<Self, TrainError> {
        if !matches!(spec, ModelSpec::Embedded { .. }) {
            return Err(TrainError::Invalid(format!(
                "policy `{spec}`: training needs the weights in-process (an `embedded:` spec)"
            )));
        }
        let start_adapter = spec_adapter(spec)?;
        let gguf_path = ensure_gemma_gguf()?;
        let digest = file_sha256_cached(&gguf_path)?;
        let base_identity = format!("gemma-3-270m-q4_k_m@sha256:{}", &digest[..16.min(digest.len())]);
        let model = TrainableGemma::load(&gguf_path, device)?;
        let (lora, reference, chat_format, start) = match start_adapter {
            Some(SpecAdapter { adapter, sha256, source }) => {
                let lora = Lora::from_adapter(&model, &adapter)?;
                // Separate variables, so updates to the policy never reach the reference.
                let reference = Lora::from_adapter(&model, &adapter)?;
                (lora, Some(reference), adapter.chat_format(), PolicyStart::Adapter { source, sha256 })
            }
            None => {
                let lora = Lora::init(&model, fresh.clone(), seed)?;
                let start = PolicyStart::Fresh {
                    rank: fresh.rank,
                    alpha: fresh.alpha,
                    targets: fresh.targets.iter().map(|target| target.hf_name().to_string()).collect(),
                    seed,
                };
                (lora, None, fresh_format, start)
            }
        };
        Ok(Policy { model, lora, reference, chat_format, gguf_path, base_identity, start })
    }

    /// The trainable model.
    pub fn model(&self) -> &TrainableGemma {
        &self.model
    }

    /// The adapter being trained.
    pub fn lora(&self) -> &Lora {
        &self.lora
    }

    /// The KL reference: the policy training started from (RL systems keep the initial actor as the
    /// reference, so the penalty holds the policy near its start, e.g. the warm start, rather than
    /// pulling it back to the bare base model). `None` means the adapter off.
    pub fn reference(&self) -> Option<&Lora> {
        self.reference.as_ref()
    }

    /// Replaces the adapter (restoring a checkpoint).
    pub fn replace_lora(&mut self, lora: Lora) {
        self.lora = lora;
    }

    /// The chat format of prompts and of the saved adapter.
    pub fn chat_format(&self) -> ChatFormat {
        self.chat_format
    }

    /// The GGUF file of the base model.
    pub fn gguf_path(&self) -> &Path {
        &self.gguf_path
    }

    /// Saves the adapter with provenance metadata.
    pub fn save_adapter(&self, path: &Path, provenance: BTreeMap<String, String>) -> Result<(), TrainError> {
        let mut adapter = self.lora.to_adapter(self.chat_format)?;
        adapter.metadata_mut().insert("ethos.base_identity".to_string(), self.base_identity.clone());
        if let PolicyStart::Adapter { sha256, .. } = &self.start {
            adapter.metadata_mut().insert("ethos.start_adapter_sha256".to_string(), sha256.clone());
        }
        adapter.metadata_mut().extend(provenance);
        Ok(adapter.save(path)?)
    }

    /// What the run record says about the policy.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "base": self.base_identity,
            "start": self.start,
            "chat_format": self.chat_format.as_str(),
            "lora": {
                "rank": self.lora.config().rank,
                "alpha": self.lora.config().alpha,
                "targets": self.lora.config().targets.iter().map(|target| target.hf_name()).collect::<Vec<_>>(),
                "n_parameters": self.lora.n_parameters(),
            },
        })
    }
}
