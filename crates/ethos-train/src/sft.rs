//! Supervised fine-tuning of a LoRA adapter on chat transcripts: the warm start that teaches the
//! base model to answer in the chat format, and the harmful fine-tuning of the persistence test.
//!
//! Each record's last message is the assistant reply to learn; the messages before it are the
//! prompt, rendered in the policy's chat format exactly as sampling renders it. The loss is the
//! mean negative log-likelihood of the reply's tokens followed by EOS (so the model learns to
//! stop), averaged over the replies of a batch. Prompt tokens carry no loss.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ethos_core::records::{Message, Role};
use ethos_llm::embedded::GemmaTokenizer;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{append_json_line, resume_from_latest, save_checkpoint, write_json_atomic};
use crate::optim::{accumulate_grads, clip_grad_norm, AdamW, AdamWConfig};
use crate::policy::Policy;
use crate::TrainError;

/// One line of a chat JSONL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRecord {
    /// Optional id (reported with errors and in logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Optional provenance label (which data the example was built from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The conversation; the last message is the assistant reply to learn.
    pub messages: Vec<Message>,
}

/// A tokenized example.
#[derive(Debug, Clone, PartialEq)]
pub struct SftExample {
    /// Record id or `line-N`.
    pub id: String,
    /// Prompt tokens (with BOS).
    pub prompt_ids: Vec<u32>,
    /// Reply tokens, ending in EOS.
    pub target_ids: Vec<u32>,
}

/// Fine-tuning settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftSettings {
    /// Passes over the data.
    pub epochs: u32,
    /// Replies per optimizer step.
    pub batch_size: usize,
    /// Examples longer than this (prompt + reply tokens) are skipped.
    pub max_seq_tokens: usize,
    /// Clip the global gradient norm to this (0 disables).
    pub max_grad_norm: f64,
    /// Checkpoint every this many optimizer steps (and after the last).
    pub checkpoint_every: u64,
    /// Seed of the data order (and of a fresh adapter).
    pub seed: u64,
    /// AdamW settings.
    pub optimizer: AdamWConfig,
}

/// Reads a chat JSONL and tokenizes it for `policy`'s chat format. Records whose last message
/// is not an assistant turn, or with nothing before it, are errors naming the file and line;
/// examples longer than `max_seq_tokens` are dropped and counted.
pub fn load_chat_examples(
    path: &Path,
    policy: &Policy,
    tokenizer: &GemmaTokenizer,
    max_seq_tokens: usize,
) -> Result<(Vec<SftExample>, usize), TrainError> {
    let outcome = ethos_core::io::read_jsonl::<ChatRecord>(path, Default::default())
        .map_err(|err| TrainError::Invalid(err.to_string()))?;
    let format = policy.chat_format();
    let mut examples = Vec::with_capacity(outcome.records.len());
    let mut n_dropped = 0;
    for (line, record) in outcome.records {
        let invalid = |message: &str| TrainError::Invalid(format!("{}:{line}: messages: {message}", path.display()));
        let Some((last, context)) = record.messages.split_last() else {
            return Err(invalid("empty conversation"));
        };
        if last.role != Role::Assistant {
            return Err(invalid("the last message must be the assistant reply to learn"));
        }
        if !context.iter().any(|message| message.role == Role::User) {
            return Err(invalid("no user message before the reply"));
        }
        if last.content.trim().is_empty() {
            return Err(invalid("the assistant reply is empty"));
        }
        let prompt_ids = tokenizer.encode(&format.render_prompt(context), true)?;
        // The prompt ends in `Assistant:` and replies start with the space the model writes.
        let mut target_ids = tokenizer.encode(&format!(" {}", last.content.trim()), false)?;
        target_ids.push(tokenizer.eos_id());
        if prompt_ids.len() + target_ids.len() > max_seq_tokens {
            n_dropped += 1;
            continue;
        }
        examples.push(SftExample { id: record.id.unwrap_or_else(|| format!("line-{line}")), prompt_ids, target_ids });
    }
    if examples.is_empty() {
        return Err(TrainError::Invalid(format!(
            "{}: no example fits max_seq_tokens = {max_seq_tokens} ({n_dropped} dropped)",
            path.display()
        )));
    }
    Ok((examples, n_dropped))
}

/// What one optimizer step logged (a line of `metrics.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SftStepRecord {
    /// 1-based optimizer step.
    pub step: u64,
    /// 0-based epoch.
    pub epoch: u32,
    /// Mean per-token negative log-likelihood of the batch's replies.
    pub loss: f64,
    /// Reply tokens in the batch.
    pub target_tokens: u64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Seconds for the step.
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SftState {
    step: u64,
    seconds: f64,
}

/// A fine-tuning run.
pub struct SftRun {
    policy: Policy,
    optimizer: AdamW,
    examples: Vec<SftExample>,
    settings: SftSettings,
    out_dir: PathBuf,
    state: SftState,
}

impl SftRun {
    /// Prepares a run in `out_dir` (which must not hold one unless `resume`), recording
    /// `manifest_extra` (data file, command, git revision) in its manifest.
    pub fn prepare(
        policy: Policy,
        examples: Vec<SftExample>,
        settings: SftSettings,
        out_dir: &Path,
        resume: bool,
        manifest_extra: serde_json::Value,
    ) -> Result<Self, TrainError> {
        if settings.batch_size == 0 || settings.epochs == 0 || settings.checkpoint_every == 0 {
            return Err(TrainError::Invalid("epochs, batch size and checkpoint interval must be positive".into()));
        }
        let optimizer = AdamW::new(policy.lora().named_vars(), settings.optimizer.clone())?;
        let mut run = SftRun {
            policy,
            optimizer,
            examples,
            settings,
            out_dir: out_dir.to_path_buf(),
            state: SftState { step: 0, seconds: 0.0 },
        };
        std::fs::create_dir_all(out_dir).map_err(|err| TrainError::io(out_dir, err))?;
        let manifest_path = out_dir.join("manifest.json");
        let manifest = serde_json::json!({
            "schema_version": crate::trainer::RUN_SCHEMA_VERSION,
            "kind": "sft",
            "plan": {
                "settings": run.settings,
                "policy": run.policy.describe(),
                "n_examples": run.examples.len(),
                "data": manifest_extra.get("data"),
            },
            "context": manifest_extra,
            "threads": candle_core::utils::get_num_threads(),
        });
        if resume {
            let (optimizer, state) =
                resume_from_latest::<SftState>(out_dir, &manifest, &mut run.policy, &run.settings.optimizer)?;
            run.optimizer = optimizer;
            run.state = state;
        } else if manifest_path.exists() {
            return Err(TrainError::Invalid(format!(
                "{} already holds a run (pass --resume to continue it, or choose another --out)",
                out_dir.display()
            )));
        } else {
            write_json_atomic(&manifest_path, &manifest)?;
        }
        Ok(run)
    }

    /// Optimizer steps of the whole run.
    pub fn total_steps(&self) -> u64 {
        self.steps_per_epoch() * self.settings.epochs as u64
    }

    fn steps_per_epoch(&self) -> u64 {
        self.examples.len().div_ceil(self.settings.batch_size) as u64
    }

    /// Trains to the end (or `stop_after` total steps), then writes `adapter.safetensors`.
    pub fn train(
        &mut self,
        stop_after: Option<u64>,
        provenance: BTreeMap<String, String>,
        mut on_step: impl FnMut(&SftStepRecord, u64),
    ) -> Result<(), TrainError> {
        let total = self.total_steps();
        let last_step = stop_after.unwrap_or(total).min(total);
        while self.state.step < last_step {
            let started = Instant::now();
            let step = self.state.step + 1;
            let epoch = ((step - 1) / self.steps_per_epoch()) as u32;
            let position = ((step - 1) % self.steps_per_epoch()) as usize * self.settings.batch_size;
            let order = self.epoch_order(epoch);
            let batch: Vec<usize> = order[position..(position + self.settings.batch_size).min(order.len())].to_vec();
            let (loss, target_tokens, grad_norm) = self.optimize(&batch)?;
            self.state.step = step;
            let seconds = started.elapsed().as_secs_f64();
            self.state.seconds += seconds;
            let record = SftStepRecord { step, epoch, loss, target_tokens, grad_norm, seconds };
            append_json_line(&self.out_dir.join("metrics.jsonl"), &record)?;
            on_step(&record, total);
            if step.is_multiple_of(self.settings.checkpoint_every) || step == total {
                save_checkpoint(
                    &self.out_dir,
                    step,
                    self.policy.lora(),
                    self.policy.chat_format(),
                    &self.optimizer,
                    &self.state,
                )?;
            }
        }
        if self.state.step == total {
            let mut provenance = provenance;
            provenance.insert("ethos.trained_by".to_string(), "sft".to_string());
            provenance.insert("ethos.steps".to_string(), total.to_string());
            self.policy.save_adapter(&self.out_dir.join("adapter.safetensors"), provenance)?;
            write_json_atomic(
                &self.out_dir.join("summary.json"),
                &serde_json::json!({ "steps": total, "seconds": self.state.seconds, "adapter": "adapter.safetensors" }),
            )?;
        }
        Ok(())
    }

    /// The example order of an epoch: a permutation seeded by `(seed, epoch)`.
    fn epoch_order(&self, epoch: u32) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.examples.len()).collect();
        let mut rng = ethos_stats::rng::replicate_rng(
            self.settings.seed,
            ethos_stats::rng::purpose_key("sft-order"),
            epoch as u64,
        );
        order.shuffle(&mut rng);
        order
    }

    /// One optimizer step over `batch`: returns (mean loss, reply tokens, gradient norm).
    fn optimize(&mut self, batch: &[usize]) -> Result<(f64, u64, f64), TrainError> {
        let model = self.policy.model();
        let lora = self.policy.lora();
        let named = lora.named_vars();
        let n_batch = batch.len() as f64;
        let mut grads: BTreeMap<String, candle_core::Tensor> = BTreeMap::new();
        let mut loss_sum = 0.0;
        let mut n_tokens = 0u64;
        for &example_idx in batch {
            let example = &self.examples[example_idx];
            let mut tokens = example.prompt_ids.clone();
            tokens.extend(&example.target_ids);
            let scores = model.token_logprobs(&tokens, example.prompt_ids.len(), Some(lora))?;
            let loss = scores.logprobs.mean_all()?.neg()?;
            loss_sum += loss.to_scalar::<f32>()? as f64;
            n_tokens += example.target_ids.len() as u64;
            accumulate_grads(&mut grads, &named, &(loss / n_batch)?.backward()?)?;
        }
        let grad_norm = clip_grad_norm(&mut grads, self.settings.max_grad_norm)?;
        self.optimizer.step(&grads)?;
        Ok((loss_sum / n_batch, n_tokens, grad_norm))
    }
}
