//! Experiment files: one TOML names the starting policy, the judge, the training settings every
//! arm shares, the prompt sources, and the arms, each of which is only a mixture over the sources.
//!
//! Arms cannot change the training settings, so every arm of an experiment has the same budget
//! (optimizer steps x prompts per step x group size x max tokens) by construction; the run record
//! repeats the budget and logs tokens sampled and wall time to prove it.
//!
//! ```toml
//! name = "study"
//! seed = 7
//! policy = "embedded:gemma-3-270m+adapter=adapters/warmstart.safetensors"
//! judge = "semantic:minilm"
//!
//! [training]
//! steps = 40
//! prompts_per_step = 2
//! group_size = 8
//! max_tokens = 96
//!
//! [sources.trait]
//! kind = "trait_scenarios"
//! reward = "rubric"
//! [sources.gsm8k]
//! kind = "gsm8k"
//! [sources.instructions]
//! kind = "instructions"
//!
//! [arms.baseline]
//! mixture = { gsm8k = 0.5, instructions = 0.5 }
//! [arms.trait]
//! mixture = { trait = 0.05, gsm8k = 0.475, instructions = 0.475 }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ethos_core::catalog::Catalog;
use ethos_core::records::{Message, Scenario, Split};
use ethos_data::select::DomainFilter;
use ethos_grade::verify::instruction_gen::generate_instruction_prompts;
use ethos_grade::RewardTask;
use ethos_llm::embedded::lora::LoraTarget;
use serde::{Deserialize, Serialize};

use crate::grpo::GrpoObjective;
use crate::optim::AdamWConfig;
use crate::TrainError;

/// An experiment file as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Experiment name (recorded in every arm's run).
    pub name: String,
    /// Seed of everything random: LoRA init, mixture draws, sampling.
    pub seed: u64,
    /// The starting policy: `embedded:gemma-3-270m` (fresh adapter) or with `+adapter=PATH`
    /// (training continues that adapter, e.g. the warm start). Relative paths are resolved
    /// against the experiment file's directory.
    pub policy: String,
    /// Judge of rubric rewards (a `--judge` spec: `semantic:minilm`, a model spec, ...).
    #[serde(default = "default_judge")]
    pub judge: String,
    /// Settings every arm shares.
    pub training: TrainingSettings,
    /// LoRA settings for a fresh adapter (ignored when the policy already has one).
    #[serde(default)]
    pub lora: LoraSettings,
    /// Prompt sources by name.
    pub sources: BTreeMap<String, SourceSpec>,
    /// Arms by name.
    pub arms: BTreeMap<String, ArmSpec>,
}

fn default_judge() -> String {
    "semantic:minilm".to_string()
}

/// Training settings shared by every arm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSettings {
    /// Number of GRPO steps (batches of prompts).
    pub steps: u64,
    /// Prompts per step.
    pub prompts_per_step: usize,
    /// Replies sampled per prompt (G).
    pub group_size: u32,
    /// Longest reply, in tokens.
    pub max_tokens: u32,
    /// Prompts longer than this many tokens are skipped when sources load (they would dominate
    /// the step time).
    #[serde(default = "default_max_prompt_tokens")]
    pub max_prompt_tokens: usize,
    /// Sampling temperature.
    #[serde(default = "one")]
    pub temperature: f32,
    /// Nucleus sampling threshold.
    #[serde(default = "one")]
    pub top_p: f32,
    /// Optimizer steps per batch of samples (PPO epochs).
    #[serde(default = "default_epochs")]
    pub epochs_per_batch: u32,
    /// Save a checkpoint every this many steps (and after the last).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// Clip the global gradient norm to this (0 disables).
    #[serde(default = "default_max_grad_norm")]
    pub max_grad_norm: f64,
    /// AdamW settings.
    #[serde(default)]
    pub optimizer: AdamWConfig,
    /// GRPO objective settings.
    #[serde(default)]
    pub objective: GrpoObjective,
    /// What the KL penalty measures the policy against.
    #[serde(default)]
    pub kl_reference: KlReference,
}

/// The reference policy of the KL penalty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KlReference {
    /// The policy training started from (the starting adapter, frozen), as verl and OpenRLHF keep
    /// the initial actor: starting from the warm start, the penalty holds the policy near it.
    #[default]
    Start,
    /// The bare base model (adapter off): the penalty pulls towards the base model, undoing a
    /// warm start; the same as `start` for a fresh adapter.
    Base,
}

fn default_max_prompt_tokens() -> usize {
    384
}

fn one() -> f32 {
    1.0
}

fn default_epochs() -> u32 {
    1
}

fn default_checkpoint_every() -> u64 {
    10
}

fn default_max_grad_norm() -> f64 {
    1.0
}

/// LoRA settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraSettings {
    /// Rank r.
    pub rank: usize,
    /// Alpha (the update is scaled by alpha / r).
    pub alpha: f64,
    /// Adapted projections (Hugging Face names: q_proj, k_proj, v_proj, o_proj, gate_proj,
    /// up_proj, down_proj).
    pub targets: Vec<String>,
}

impl Default for LoraSettings {
    fn default() -> Self {
        LoraSettings {
            rank: 16,
            alpha: 32.0,
            targets: LoraTarget::ALL.iter().map(|target| target.hf_name().to_string()).collect(),
        }
    }
}

impl LoraSettings {
    /// The settings as the adapter format's config.
    pub fn to_config(&self) -> Result<ethos_llm::embedded::lora::LoraConfig, TrainError> {
        let mut targets = Vec::new();
        for name in &self.targets {
            let target: LoraTarget =
                name.parse().map_err(|_| TrainError::Invalid(format!("lora.targets: unknown projection `{name}`")))?;
            if !targets.contains(&target) {
                targets.push(target);
            }
        }
        if self.rank == 0 || targets.is_empty() || self.alpha.is_nan() || self.alpha <= 0.0 {
            return Err(TrainError::Invalid("lora: rank, alpha and targets must be positive and non-empty".into()));
        }
        Ok(ethos_llm::embedded::lora::LoraConfig { rank: self.rank, alpha: self.alpha, targets })
    }
}

/// Where prompts come from and how their replies are rewarded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceSpec {
    /// Beneficial-trait scenarios (the built-in bank, or a scenarios JSONL).
    TraitScenarios {
        /// A scenarios JSONL instead of the bank (relative to the experiment file).
        #[serde(default)]
        scenarios: Option<PathBuf>,
        /// Which split to train on (held-out scenarios are for evaluation).
        #[serde(default = "default_split")]
        split: Split,
        /// Keep only these domains (ids or tags; empty = all).
        #[serde(default)]
        domains: Vec<String>,
        /// Drop domains with these tags.
        #[serde(default)]
        exclude_domain_tags: Vec<String>,
        /// `rubric` (the scenario's own rubric) or `helpfulness` (the generic rubric).
        #[serde(default)]
        reward: TraitReward,
    },
    /// GSM8K problems, rewarded by exact numeric match.
    Gsm8k {
        /// The JSONL (`question`, `answer`), relative to the data directory.
        #[serde(default = "default_gsm8k_path")]
        path: PathBuf,
        /// Use only the first N problems.
        #[serde(default)]
        limit: Option<usize>,
    },
    /// Generated IFEval-style prompts with verifiable instructions.
    Instructions {
        /// Number of prompts to generate (with the experiment seed).
        #[serde(default = "default_n_instruction_prompts")]
        n_prompts: usize,
    },
}

fn default_split() -> Split {
    Split::Train
}

fn default_gsm8k_path() -> PathBuf {
    PathBuf::from("gsm8k/train.jsonl")
}

fn default_n_instruction_prompts() -> usize {
    2000
}

/// The reward of trait scenarios.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraitReward {
    /// The scenario's own rubric.
    #[default]
    Rubric,
    /// The generic helpfulness rubric (the reward ablation).
    Helpfulness,
}

/// One arm: a mixture over the experiment's sources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArmSpec {
    /// Source name -> probability (summing to 1).
    pub mixture: BTreeMap<String, f64>,
    /// What the arm is for (recorded).
    #[serde(default)]
    pub description: Option<String>,
}

/// A prompt ready for sampling, with its reward.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptItem {
    /// Stable id (`gsm8k-train-17`, the scenario id, the generated prompt id).
    pub id: String,
    /// The conversation the policy replies to.
    pub messages: Vec<Message>,
    /// What the reply is rewarded against.
    pub task: RewardTask,
}

/// Reads an experiment file; errors name the file and the field.
pub fn read_experiment(path: &Path) -> Result<Experiment, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|err| TrainError::io(path, err))?;
    let experiment: Experiment =
        toml::from_str(&text).map_err(|err| TrainError::Invalid(format!("{}: {err}", path.display())))?;
    experiment.validate().map_err(|message| TrainError::Invalid(format!("{}: {message}", path.display())))?;
    Ok(experiment)
}

impl Experiment {
    /// Checks what serde cannot: positive sizes, known sources in mixtures, probabilities.
    pub fn validate(&self) -> Result<(), String> {
        let training = &self.training;
        if training.steps == 0 || training.prompts_per_step == 0 || training.group_size < 2 || training.max_tokens == 0
        {
            return Err("training: steps, prompts_per_step and max_tokens must be positive and group_size at least 2 \
                        (GRPO compares replies within a group)"
                .to_string());
        }
        if training.epochs_per_batch == 0 || training.checkpoint_every == 0 {
            return Err("training: epochs_per_batch and checkpoint_every must be positive".to_string());
        }
        let temperature_ok = training.temperature.is_finite() && training.temperature > 0.0;
        let top_p_ok = training.top_p > 0.0 && training.top_p <= 1.0;
        if !temperature_ok || !top_p_ok {
            return Err("training: temperature must be positive and top_p in (0, 1]".to_string());
        }
        if training.optimizer.lr.is_nan() || training.optimizer.lr <= 0.0 {
            return Err("training.optimizer.lr must be positive".to_string());
        }
        if self.arms.is_empty() {
            return Err("no [arms.NAME] section".to_string());
        }
        for (arm_name, arm) in &self.arms {
            let mut total = 0.0;
            for (source, probability) in &arm.mixture {
                if !self.sources.contains_key(source) {
                    let known: Vec<&str> = self.sources.keys().map(String::as_str).collect();
                    return Err(format!(
                        "arms.{arm_name}.mixture: unknown source `{source}` (sources: {})",
                        known.join(", ")
                    ));
                }
                if !(*probability >= 0.0 && probability.is_finite()) {
                    return Err(format!("arms.{arm_name}.mixture.{source}: probability {probability}"));
                }
                total += probability;
            }
            if (total - 1.0).abs() > 1e-6 {
                return Err(format!("arms.{arm_name}.mixture: probabilities sum to {total}, not 1"));
            }
        }
        self.lora.to_config().map_err(|err| err.to_string())?;
        Ok(())
    }

    /// The arm named `arm`, or an error listing the arms.
    pub fn arm(&self, arm: &str) -> Result<&ArmSpec, TrainError> {
        self.arms.get(arm).ok_or_else(|| {
            let known: Vec<&str> = self.arms.keys().map(String::as_str).collect();
            TrainError::Invalid(format!("no arm `{arm}` in experiment `{}` (arms: {})", self.name, known.join(", ")))
        })
    }
}

/// Loads the prompts of one source. `experiment_dir` resolves scenario files; `data_dir`
/// resolves GSM8K. Prompts are formatted later; `max_prompt_chars` drops very long ones early.
pub fn load_source(
    name: &str,
    spec: &SourceSpec,
    seed: u64,
    experiment_dir: &Path,
    data_dir: &Path,
) -> Result<Vec<PromptItem>, TrainError> {
    match spec {
        SourceSpec::TraitScenarios { scenarios, split, domains, exclude_domain_tags, reward } => {
            let catalog = Catalog::builtin();
            let filter = DomainFilter::new(domains, exclude_domain_tags, catalog)
                .map_err(|err| TrainError::Invalid(format!("sources.{name}: {err}")))?;
            let all: Vec<Scenario> = match scenarios {
                Some(path) => {
                    let path = experiment_dir.join(path);
                    ethos_core::io::read_jsonl::<Scenario>(&path, Default::default())
                        .map_err(|err| TrainError::Invalid(format!("sources.{name}: {err}")))?
                        .records
                        .into_iter()
                        .map(|(_, scenario)| scenario)
                        .collect()
                }
                None => ethos_data::bank::bank_scenarios()
                    .map_err(|err| TrainError::Invalid(format!("scenario bank: {err}")))?
                    .to_vec(),
            };
            let items: Vec<PromptItem> = all
                .into_iter()
                .filter(|scenario| scenario.split == *split && filter.accepts(&scenario.domain))
                .map(|scenario| PromptItem {
                    id: scenario.id.clone(),
                    messages: scenario.conversation.clone(),
                    task: match reward {
                        TraitReward::Rubric => RewardTask::Rubric(scenario),
                        TraitReward::Helpfulness => RewardTask::Helpfulness(scenario),
                    },
                })
                .collect();
            if items.is_empty() {
                return Err(TrainError::Invalid(format!(
                    "sources.{name}: no scenarios pass the split and domain filter"
                )));
            }
            Ok(items)
        }
        SourceSpec::Gsm8k { path, limit } => {
            let path = data_dir.join(path);
            let problems = read_gsm8k(&path)?;
            Ok(problems
                .into_iter()
                .take(limit.unwrap_or(usize::MAX))
                .map(|(line, question, gold)| PromptItem {
                    id: format!("gsm8k-{}-{line}", path.file_stem().and_then(|s| s.to_str()).unwrap_or("data")),
                    messages: vec![Message::user(gsm8k_prompt(&question))],
                    task: RewardTask::Gsm8k { gold },
                })
                .collect())
        }
        SourceSpec::Instructions { n_prompts } => {
            let purpose = ethos_stats::rng::purpose_key(&format!("instructions:{name}"));
            let prompts = generate_instruction_prompts(*n_prompts, seed ^ purpose);
            Ok(prompts
                .into_iter()
                .map(|prompt| PromptItem {
                    id: prompt.id.clone(),
                    messages: vec![Message::user(prompt.prompt.clone())],
                    task: RewardTask::Instructions { prompt: prompt.prompt, instructions: prompt.instructions },
                })
                .collect())
        }
    }
}

pub use ethos_grade::verify::gsm8k::{gsm8k_prompt, GSM8K_SUFFIX};

/// `(line, question, gold answer)` of every problem of a GSM8K JSONL.
pub fn read_gsm8k(path: &Path) -> Result<Vec<(u64, String, String)>, TrainError> {
    let problems = read_gsm8k_solutions(path)?;
    let mut with_gold = Vec::with_capacity(problems.len());
    for (line, question, solution) in problems {
        let gold = ethos_grade::verify::gsm8k::gold_answer(&solution).ok_or_else(|| {
            TrainError::Invalid(format!("{}:{line}: answer: no `#### <number>` final answer", path.display()))
        })?;
        with_gold.push((line, question, gold));
    }
    Ok(with_gold)
}

/// `(line, question, reference solution)` of every problem of a GSM8K JSONL.
pub fn read_gsm8k_solutions(path: &Path) -> Result<Vec<(u64, String, String)>, TrainError> {
    #[derive(Deserialize)]
    struct Problem {
        question: String,
        answer: String,
    }
    let outcome = ethos_core::io::read_jsonl::<Problem>(path, Default::default())
        .map_err(|err| TrainError::Invalid(err.to_string()))?;
    Ok(outcome.records.into_iter().map(|(line, problem)| (line, problem.question, problem.answer)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
name = "t"
seed = 1
policy = "embedded:gemma-3-270m"
[training]
steps = 3
prompts_per_step = 2
group_size = 4
max_tokens = 16
[sources.trait]
kind = "trait_scenarios"
[sources.health]
kind = "trait_scenarios"
domains = ["health"]
reward = "helpfulness"
[sources.instructions]
kind = "instructions"
n_prompts = 20
[arms.baseline]
mixture = { instructions = 1.0 }
[arms.trait]
mixture = { trait = 0.25, instructions = 0.75 }
"#;

    #[test]
    fn parses_and_validates_an_experiment() {
        let experiment: Experiment = toml::from_str(EXAMPLE).unwrap();
        experiment.validate().unwrap();
        assert_eq!(experiment.judge, "semantic:minilm");
        assert_eq!(experiment.training.epochs_per_batch, 1);
        assert_eq!(experiment.lora.rank, 16);
        assert!(experiment.arm("trait").is_ok());
        let message = experiment.arm("nope").unwrap_err().to_string();
        assert!(message.contains("baseline, trait"), "{message}");
    }

    #[test]
    fn invalid_experiments_name_the_field() {
        let check = |text: &str, expect: &str| {
            let experiment: Experiment = toml::from_str(text).unwrap();
            let message = experiment.validate().unwrap_err();
            assert!(message.contains(expect), "{message}");
        };
        check(&EXAMPLE.replace("trait = 0.25", "trait = 0.5"), "arms.trait.mixture: probabilities sum to 1.25");
        check(&EXAMPLE.replace("{ instructions = 1.0 }", "{ gsm = 1.0 }"), "unknown source `gsm`");
        check(&EXAMPLE.replace("group_size = 4", "group_size = 1"), "group_size");
        let unknown_field = EXAMPLE.replace("steps = 3", "steps = 3\nstepz = 4");
        assert!(toml::from_str::<Experiment>(&unknown_field).unwrap_err().to_string().contains("stepz"));
    }

    /// The experiment files shipped in `experiments/` parse, validate, and have the study's arms.
    #[test]
    fn shipped_experiments_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments");
        for name in ["miniature.toml", "study.toml"] {
            let experiment = read_experiment(&dir.join(name)).unwrap();
            assert_eq!(experiment.policy, "embedded:ethos-warmstart", "{name}: the study starts from the warm start");
            for arm in ["baseline", "trait", "health_only", "no_health_science", "helpfulness_reward"] {
                assert!(experiment.arm(arm).is_ok(), "{name}: {arm}");
            }
            assert!(!experiment.arms["baseline"].mixture.keys().any(|source| source.starts_with("trait")));
        }
    }

    #[test]
    fn sources_load_with_their_rewards_and_filters() {
        let experiment: Experiment = toml::from_str(EXAMPLE).unwrap();
        let here = Path::new(".");
        let all = load_source("trait", &experiment.sources["trait"], 1, here, here).unwrap();
        assert!(all.iter().all(|item| matches!(&item.task, RewardTask::Rubric(s) if s.split == Split::Train)));
        let health = load_source("health", &experiment.sources["health"], 1, here, here).unwrap();
        assert!(!health.is_empty() && health.len() < all.len());
        assert!(health.iter().all(|item| matches!(&item.task,
            RewardTask::Helpfulness(s) if s.domain == "health_medicine" || s.domain == "mental_health")));
        let instructions = load_source("instructions", &experiment.sources["instructions"], 1, here, here).unwrap();
        assert_eq!(instructions.len(), 20);
        assert_eq!(
            instructions,
            load_source("instructions", &experiment.sources["instructions"], 1, here, here).unwrap()
        );
    }
}
