//! The GRPO training loop of one arm.
//!
//! Each step draws `prompts_per_step` prompts from the arm's mixture, samples `group_size`
//! replies to each with the quantized inference model carrying the current adapter (batched
//! decoding, the fast path), rewards them through the [`RewardRouter`], and updates the adapter on
//! the f32 trainable model: reference log-probabilities from the starting policy (the starting
//! adapter, frozen; the adapter off for a fresh start; or the bare base model with
//! `kl_reference = "base"`), the policy's with the current adapter, the
//! GRPO loss per reply, gradients accumulated over the batch, clipping, AdamW.
//!
//! Sampling from the quantized model and training the f32 one is the usual split of RL systems
//! (vLLM samples, FSDP trains): the two policies differ by rounding (`tests/trainable_forward.rs`
//! bounds it at ~0.08 nats per token), and the ratio is computed between f32 log-probabilities
//! only, so the mismatch never enters the clipped objective.
//!
//! Everything random is a function of the experiment seed and the step, and the only other state
//! (adapter, optimizer moments, mixture counters, log length) is checkpointed, so a run resumed
//! from a checkpoint continues exactly as the uninterrupted run would have.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ethos_grade::{RewardRouter, RewardTask};
use ethos_llm::embedded::gemma3::Gemma3;
use ethos_llm::embedded::generate::{generate, GenerationJob, StopTokens, DEFAULT_MAX_BATCH};
use ethos_llm::embedded::GemmaTokenizer;
use ethos_llm::SamplingParams;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{append_json_line, resume_from_latest, save_checkpoint, write_json_atomic};
use crate::experiment::{Experiment, KlReference, PromptItem, TrainingSettings};
use crate::grpo::{group_advantages, group_loss};
use crate::mixture::{MixtureSampler, MixtureSource, SamplerState};
use crate::model::{Lora, PackedGroup, TrainableGemma};
use crate::optim::{accumulate_grads, clip_grad_norm, AdamW};
use crate::policy::Policy;
use crate::TrainError;

/// Version of the run records written by [`GrpoRun`].
pub const RUN_SCHEMA_VERSION: u32 = 1;

/// One source of an arm, loaded and tokenized.
#[derive(Debug)]
pub struct ArmSource {
    /// Source name.
    pub name: String,
    /// Mixture probability in this arm.
    pub probability: f64,
    /// Prompts that fit `max_prompt_tokens`, with their token ids.
    pub items: Vec<(PromptItem, Vec<u32>)>,
    /// Prompts dropped for length.
    pub n_dropped: usize,
}

/// The budget every arm of an experiment shares; written to the manifest so arms can be checked
/// against each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// GRPO steps.
    pub steps: u64,
    /// Prompts per step.
    pub prompts_per_step: usize,
    /// Replies per prompt.
    pub group_size: u32,
    /// Longest reply in tokens.
    pub max_tokens: u32,
    /// Optimizer steps per GRPO step.
    pub epochs_per_batch: u32,
    /// Total optimizer steps.
    pub optimizer_steps: u64,
    /// Upper bound on sampled tokens: steps x prompts x group x max tokens.
    pub max_sampled_tokens: u64,
}

impl Budget {
    /// The budget of these settings.
    pub fn of(training: &TrainingSettings) -> Self {
        Budget {
            steps: training.steps,
            prompts_per_step: training.prompts_per_step,
            group_size: training.group_size,
            max_tokens: training.max_tokens,
            epochs_per_batch: training.epochs_per_batch,
            optimizer_steps: training.steps * training.epochs_per_batch as u64,
            max_sampled_tokens: training.steps
                * training.prompts_per_step as u64
                * training.group_size as u64
                * training.max_tokens as u64,
        }
    }
}

/// Per-source reward statistics of a step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceRewards {
    /// Replies sampled for this source's prompts.
    pub n_replies: usize,
    /// Replies without a reward (unparseable or failed grades).
    pub n_unscored: usize,
    /// Mean reward of the scored replies.
    pub reward_mean: Option<f64>,
    /// Population standard deviation of the scored rewards.
    pub reward_std: Option<f64>,
}

/// What one step logged (a line of `metrics.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// 1-based step.
    pub step: u64,
    /// Prompt ids of the step, in draw order.
    pub prompts: Vec<String>,
    /// Rewards per source.
    pub sources: BTreeMap<String, SourceRewards>,
    /// Mean reward over all scored replies.
    pub reward_mean: Option<f64>,
    /// Groups whose replies all got the same reward (no learning signal).
    pub n_flat_groups: usize,
    /// Mean over replies of the per-token k3 KL to the reference.
    pub kl: f64,
    /// Fraction of reply tokens whose ratio was clipped (later epochs; 0 with one epoch).
    pub clip_fraction: f64,
    /// Mean per-token entropy of the policy on its own replies (nats).
    pub entropy: f64,
    /// Mean reply length in tokens.
    pub reply_tokens_mean: f64,
    /// Reply tokens sampled this step.
    pub tokens_sampled: u64,
    /// Prompt tokens prefilled this step (each prompt once per group).
    pub prompt_tokens: u64,
    /// Mean GRPO loss of the last epoch.
    pub loss: f64,
    /// Global gradient norm before clipping (last epoch).
    pub grad_norm: f64,
    /// Seconds spent sampling, rewarding, and on the forward/backward/optimizer work.
    pub seconds_sampling: f64,
    /// Seconds spent computing rewards.
    pub seconds_reward: f64,
    /// Seconds spent training.
    pub seconds_training: f64,
}

/// The state a checkpoint stores besides the adapter and optimizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrpoState {
    /// Steps completed.
    pub step: u64,
    /// The mixture's state.
    pub sampler: SamplerState,
    /// Cumulative reply tokens sampled.
    pub tokens_sampled: u64,
    /// Cumulative wall time of the steps, seconds.
    pub seconds: f64,
}

/// Facts about the invocation the manifest records (the CLI knows them, the library does not).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunContext {
    /// Git revision of the build.
    pub git_revision: String,
    /// The judge's identity (for rubric rewards).
    pub judge: Option<String>,
    /// Where shared benchmark data was read from.
    pub data_dir: String,
}

/// One arm's GRPO run, ready to train.
pub struct GrpoRun {
    experiment: Experiment,
    arm: String,
    out_dir: PathBuf,
    policy: Policy,
    inference: Gemma3,
    tokenizer: GemmaTokenizer,
    stop_tokens: StopTokens,
    optimizer: AdamW,
    sampler: MixtureSampler,
    sources: Vec<ArmSource>,
    router: RewardRouter,
    state: GrpoState,
    context: RunContext,
}

impl GrpoRun {
    /// Prepares the arm: loads both models, the sources, and (with `resume`) the latest checkpoint
    /// in `out_dir`. Without `resume`, `out_dir` must not hold a run already.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare(
        experiment: Experiment,
        arm: &str,
        policy: Policy,
        inference: Gemma3,
        tokenizer: GemmaTokenizer,
        sources: Vec<(String, Vec<PromptItem>)>,
        router: RewardRouter,
        out_dir: &Path,
        resume: bool,
        context: RunContext,
    ) -> Result<Self, TrainError> {
        let arm_spec = experiment.arm(arm)?.clone();
        let training = experiment.training.clone();
        let chat_format = policy.chat_format();
        let mut arm_sources = Vec::new();
        for (name, items) in sources {
            let probability = arm_spec.mixture.get(&name).copied().unwrap_or(0.0);
            let mut kept = Vec::with_capacity(items.len());
            let mut n_dropped = 0;
            for item in items {
                let prompt = chat_format.render_prompt(&item.messages);
                let ids = tokenizer.encode(&prompt, true)?;
                if ids.len() <= training.max_prompt_tokens {
                    kept.push((item, ids));
                } else {
                    n_dropped += 1;
                }
            }
            if probability > 0.0 && kept.is_empty() {
                return Err(TrainError::Invalid(format!(
                    "source `{name}`: all {n_dropped} prompts are longer than max_prompt_tokens = {}",
                    training.max_prompt_tokens
                )));
            }
            arm_sources.push(ArmSource { name, probability, items: kept, n_dropped });
        }
        let mixture: Vec<MixtureSource> = arm_sources
            .iter()
            .map(|source| MixtureSource {
                name: source.name.clone(),
                probability: source.probability,
                n_items: source.items.len(),
            })
            .collect();
        let sampler = MixtureSampler::new(mixture, experiment.seed)?;
        let optimizer = AdamW::new(policy.lora().named_vars(), training.optimizer.clone())?;
        let stop_tokens = StopTokens::from_tokenizer(&tokenizer);
        let mut run = GrpoRun {
            arm: arm.to_string(),
            out_dir: out_dir.to_path_buf(),
            policy,
            inference,
            tokenizer,
            stop_tokens,
            optimizer,
            sampler,
            sources: arm_sources,
            router,
            state: GrpoState { step: 0, sampler: SamplerState::default(), tokens_sampled: 0, seconds: 0.0 },
            context,
            experiment,
        };
        run.open_run_dir(resume)?;
        Ok(run)
    }

    /// Steps completed so far (after a resume, the checkpoint's).
    pub fn steps_done(&self) -> u64 {
        self.state.step
    }

    /// The sources of the arm, with their kept and dropped counts.
    pub fn sources(&self) -> &[ArmSource] {
        &self.sources
    }

    /// Runs the remaining steps; `on_step` sees every step's record as it is logged. Stops after
    /// `stop_after` total steps when given (to test resumption), else at the experiment's end.
    pub async fn train(
        &mut self,
        stop_after: Option<u64>,
        mut on_step: impl FnMut(&StepRecord),
    ) -> Result<(), TrainError> {
        let last_step = stop_after.unwrap_or(self.experiment.training.steps).min(self.experiment.training.steps);
        while self.state.step < last_step {
            let started = Instant::now();
            let record = self.step().await?;
            self.state.step = record.step;
            self.state.tokens_sampled += record.tokens_sampled;
            self.state.seconds += started.elapsed().as_secs_f64();
            append_json_line(&self.out_dir.join("metrics.jsonl"), &record)?;
            on_step(&record);
            let every = self.experiment.training.checkpoint_every;
            if self.state.step.is_multiple_of(every) || self.state.step == self.experiment.training.steps {
                self.checkpoint()?;
            }
        }
        if self.state.step == self.experiment.training.steps {
            self.policy.save_adapter(&self.out_dir.join("adapter.safetensors"), self.provenance())?;
            write_json_atomic(&self.out_dir.join("summary.json"), &self.summary()?)?;
        }
        Ok(())
    }

    /// One GRPO step.
    async fn step(&mut self) -> Result<StepRecord, TrainError> {
        let step = self.state.step + 1;
        let training = self.experiment.training.clone();
        let draws = self.sampler.next_batch(training.prompts_per_step);
        // Owned copies: the optimizer below needs `self` mutably.
        let chosen: Vec<(usize, PromptItem, Vec<u32>)> = draws
            .iter()
            .map(|draw| {
                let (item, ids) = &self.sources[draw.source_idx].items[draw.item_idx];
                (draw.source_idx, item.clone(), ids.clone())
            })
            .collect();

        // Sampling with the current adapter on the quantized model.
        let started = Instant::now();
        let adapter = self.policy.lora().to_adapter(self.policy.chat_format())?;
        self.inference.set_adapter(Some(&adapter))?;
        let stop_strings = self.policy.chat_format().stop_strings();
        let jobs: Vec<GenerationJob> = chosen
            .iter()
            .enumerate()
            .map(|(prompt_idx, (_, _, ids))| GenerationJob {
                prompt_ids: ids.clone(),
                sampling: SamplingParams {
                    n: training.group_size,
                    temperature: training.temperature,
                    top_p: training.top_p,
                    max_tokens: training.max_tokens,
                    stop: stop_strings.clone(),
                    seed: sampling_seed(self.experiment.seed, step, prompt_idx),
                    top_logprobs: None,
                },
            })
            .collect();
        let generations = tokio::task::block_in_place(|| {
            generate(&self.inference, &self.tokenizer, &self.stop_tokens, &jobs, DEFAULT_MAX_BATCH)
        })?;
        let seconds_sampling = started.elapsed().as_secs_f64();

        // Rewards.
        let started = Instant::now();
        let format = self.policy.chat_format();
        let replies: Vec<Vec<String>> = generations
            .iter()
            .map(|group| group.iter().map(|generation| format.clean_reply(&generation.text)).collect())
            .collect();
        let mut reward_items: Vec<(&RewardTask, &str)> = Vec::new();
        for ((_, item, _), group) in chosen.iter().zip(&replies) {
            for reply in group {
                reward_items.push((&item.task, reply.as_str()));
            }
        }
        let flat_rewards = self.router.score(&reward_items).await;
        let seconds_reward = started.elapsed().as_secs_f64();

        // Advantages per group over the scored replies; unscored replies sit out.
        let group_size = training.group_size as usize;
        let mut sources: BTreeMap<String, (SourceRewards, Vec<f64>)> = BTreeMap::new();
        let mut advantages: Vec<Vec<Option<f64>>> = Vec::with_capacity(chosen.len());
        let mut n_flat_groups = 0;
        for (group_idx, (source_idx, _, _)) in chosen.iter().enumerate() {
            let rewards = &flat_rewards[group_idx * group_size..(group_idx + 1) * group_size];
            let scored: Vec<f64> = rewards.iter().flatten().copied().collect();
            let entry = sources.entry(self.sources[*source_idx].name.clone()).or_default();
            entry.0.n_replies += rewards.len();
            entry.0.n_unscored += rewards.len() - scored.len();
            entry.1.extend(&scored);
            if scored.windows(2).all(|pair| pair[0] == pair[1]) {
                n_flat_groups += 1;
            }
            let mut scored_advantages = group_advantages(&scored, training.objective.scale_by_std).into_iter();
            advantages.push(rewards.iter().map(|reward| reward.and_then(|_| scored_advantages.next())).collect());
        }

        // Training.
        let started = Instant::now();
        let mut groups = Vec::new();
        for (group_idx, (_, _, prompt_ids)) in chosen.iter().enumerate() {
            let mut replies: Vec<&[u32]> = Vec::new();
            let mut reply_advantages = Vec::new();
            for (reply_idx, generation) in generations[group_idx].iter().enumerate() {
                if let (Some(advantage), false) = (advantages[group_idx][reply_idx], generation.token_ids.is_empty()) {
                    replies.push(&generation.token_ids);
                    reply_advantages.push(advantage);
                }
            }
            if !replies.is_empty() {
                groups.push((PackedGroup::new(prompt_ids, &replies)?, reply_advantages));
            }
        }
        let outcome = tokio::task::block_in_place(|| self.optimize(&groups))?;
        let seconds_training = started.elapsed().as_secs_f64();

        let tokens_sampled: u64 =
            generations.iter().flatten().map(|generation| generation.token_ids.len() as u64).sum();
        let n_replies = generations.iter().map(Vec::len).sum::<usize>().max(1);
        let all_rewards: Vec<f64> = flat_rewards.iter().flatten().copied().collect();
        Ok(StepRecord {
            step,
            prompts: chosen.iter().map(|(_, item, _)| item.id.clone()).collect(),
            sources: sources
                .into_iter()
                .map(|(name, (mut stats, rewards))| {
                    stats.reward_mean = mean(&rewards);
                    stats.reward_std = population_std(&rewards);
                    (name, stats)
                })
                .collect(),
            reward_mean: mean(&all_rewards),
            n_flat_groups,
            kl: outcome.kl,
            clip_fraction: outcome.clip_fraction,
            entropy: outcome.entropy,
            reply_tokens_mean: tokens_sampled as f64 / n_replies as f64,
            tokens_sampled,
            prompt_tokens: chosen.iter().map(|(_, _, ids)| ids.len() as u64).sum(),
            loss: outcome.loss,
            grad_norm: outcome.grad_norm,
            seconds_sampling,
            seconds_reward,
            seconds_training,
        })
    }

    /// The epochs of one batch: per prompt, its replies packed with the prompt (one forward pass
    /// each) and their advantages.
    fn optimize(&mut self, groups: &[(PackedGroup, Vec<f64>)]) -> Result<OptimizeOutcome, TrainError> {
        let training = &self.experiment.training;
        let objective = &training.objective;
        let mut outcome = OptimizeOutcome::default();
        let n_sequences = groups.iter().map(|(group, _)| group.n_replies()).sum::<usize>() as f64;
        if groups.is_empty() {
            return Ok(outcome);
        }
        let model: &TrainableGemma = self.policy.model();
        let lora: &Lora = self.policy.lora();
        let reference = match training.kl_reference {
            KlReference::Start => self.policy.reference(),
            KlReference::Base => None,
        };
        let named = lora.named_vars();
        // Behaviour and reference log-probabilities, fixed for the batch, per group per reply.
        let mut old_logprobs: Vec<Option<Vec<Vec<f32>>>> = vec![None; groups.len()];
        let mut ref_logprobs: Vec<Vec<Vec<f32>>> = Vec::with_capacity(groups.len());
        for (group, _) in groups {
            let scores = model.group_logprobs(group, reference)?;
            ref_logprobs.push(scores.iter().map(|s| s.logprobs.to_vec1::<f32>()).collect::<Result<_, _>>()?);
        }
        for epoch in 0..training.epochs_per_batch {
            let mut grads: BTreeMap<String, candle_core::Tensor> = BTreeMap::new();
            let (mut loss_sum, mut kl_sum, mut clip_sum, mut entropy_sum) = (0.0, 0.0, 0.0, 0.0);
            for (group_idx, (group, advantages)) in groups.iter().enumerate() {
                let scores = model.group_logprobs(group, Some(lora))?;
                // The first epoch samples from the current policy: old = current.
                if old_logprobs[group_idx].is_none() {
                    old_logprobs[group_idx] =
                        Some(scores.iter().map(|s| s.logprobs.to_vec1::<f32>()).collect::<Result<_, _>>()?);
                }
                let old = old_logprobs[group_idx].as_deref().unwrap_or_default();
                let (loss, stats) = group_loss(&scores, old, &ref_logprobs[group_idx], advantages, objective)?;
                for (reply, reply_stats) in scores.iter().zip(&stats) {
                    loss_sum += reply_stats.loss;
                    kl_sum += reply_stats.kl;
                    clip_sum += reply_stats.clip_fraction;
                    entropy_sum += reply.stats.entropy.iter().map(|&value| value as f64).sum::<f64>()
                        / reply.stats.entropy.len().max(1) as f64;
                }
                // The batch loss is the mean over replies (the group loss sums its replies' means), so
                // the group's gradient is divided by their number; one backward pass per group goes
                // through the shared prompt once.
                accumulate_grads(&mut grads, &named, &(loss / n_sequences)?.backward()?)?;
            }
            let grad_norm = clip_grad_norm(&mut grads, training.max_grad_norm)?;
            self.optimizer.step(&grads)?;
            if epoch == 0 {
                outcome.kl = kl_sum / n_sequences;
                outcome.entropy = entropy_sum / n_sequences;
            }
            outcome.loss = loss_sum / n_sequences;
            outcome.clip_fraction = clip_sum / n_sequences;
            outcome.grad_norm = grad_norm;
        }
        Ok(outcome)
    }

    fn checkpoint(&mut self) -> Result<(), TrainError> {
        self.state.sampler = self.sampler.state().clone();
        save_checkpoint(
            &self.out_dir,
            self.state.step,
            self.policy.lora(),
            self.policy.chat_format(),
            &self.optimizer,
            &self.state,
        )
    }

    /// Creates the run directory and manifest, or restores the latest checkpoint.
    fn open_run_dir(&mut self, resume: bool) -> Result<(), TrainError> {
        std::fs::create_dir_all(&self.out_dir).map_err(|err| TrainError::io(&self.out_dir, err))?;
        let manifest_path = self.out_dir.join("manifest.json");
        let manifest = self.manifest();
        if resume {
            let (optimizer, state) = resume_from_latest::<GrpoState>(
                &self.out_dir,
                &manifest,
                &mut self.policy,
                &self.experiment.training.optimizer,
            )?;
            self.optimizer = optimizer;
            self.sampler.restore(state.sampler.clone())?;
            self.state = state;
            return Ok(());
        }
        if manifest_path.exists() {
            return Err(TrainError::Invalid(format!(
                "{} already holds a run (pass --resume to continue it, or choose another --out)",
                self.out_dir.display()
            )));
        }
        write_json_atomic(&manifest_path, &manifest)
    }

    /// The run record: what was trained, from what, with which budget and code.
    fn manifest(&self) -> serde_json::Value {
        let arm = self.experiment.arms.get(&self.arm);
        serde_json::json!({
            "schema_version": RUN_SCHEMA_VERSION,
            "kind": "grpo",
            "plan": {
                "experiment": self.experiment,
                "arm": self.arm,
                "mixture": arm.map(|arm| &arm.mixture),
                "policy": self.policy.describe(),
            },
            "budget": Budget::of(&self.experiment.training),
            "seed": self.experiment.seed,
            "sources": self.sources.iter().map(|source| serde_json::json!({
                "name": source.name,
                "probability": source.probability,
                "n_prompts": source.items.len(),
                "n_dropped_too_long": source.n_dropped,
            })).collect::<Vec<_>>(),
            "reward_judge": self.router.judge_identity(),
            "context": self.context,
            "threads": candle_core::utils::get_num_threads(),
        })
    }

    fn provenance(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("ethos.trained_by".to_string(), "grpo".to_string()),
            ("ethos.experiment".to_string(), self.experiment.name.clone()),
            ("ethos.arm".to_string(), self.arm.clone()),
            ("ethos.steps".to_string(), self.state.step.to_string()),
            ("ethos.seed".to_string(), self.experiment.seed.to_string()),
            ("ethos.git_revision".to_string(), self.context.git_revision.clone()),
        ])
    }

    fn summary(&self) -> Result<serde_json::Value, TrainError> {
        Ok(serde_json::json!({
            "arm": self.arm,
            "steps": self.state.step,
            "budget": Budget::of(&self.experiment.training),
            "tokens_sampled": self.state.tokens_sampled,
            "seconds": self.state.seconds,
            "adapter": "adapter.safetensors",
        }))
    }
}

#[derive(Debug, Default)]
struct OptimizeOutcome {
    loss: f64,
    kl: f64,
    clip_fraction: f64,
    entropy: f64,
    grad_norm: f64,
}

/// The sampling seed of prompt `prompt_idx` of step `step`.
fn sampling_seed(seed: u64, step: u64, prompt_idx: usize) -> u64 {
    use rand::Rng;
    let mut rng = ethos_stats::rng::replicate_rng(seed, ethos_stats::rng::purpose_key("grpo-sampling"), step);
    let mut value = 0;
    for _ in 0..=prompt_idx {
        value = rng.random::<u64>();
    }
    value
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

fn population_std(values: &[f64]) -> Option<f64> {
    let mean = mean(values)?;
    Some((values.iter().map(|value| (value - mean).powi(2)).sum::<f64>() / values.len() as f64).sqrt())
}
