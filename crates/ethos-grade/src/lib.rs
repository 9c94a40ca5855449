//! Grading: rubric judges (LLM JSON verdicts, verdict-token log-probabilities, sentence-embedding similarity), the
//! HealthBench score formula, the rubric grader, the refusal classifier and the chain-of-thought monitor.

pub mod grader;
pub mod injection;
pub mod judge;
pub mod llm_judge;
pub mod logprob_judge;
pub mod monitor;
pub mod prompt;
pub mod refusal;
pub mod reward;
pub mod score;
pub mod semantic;
pub mod verify;

pub use grader::{summarize, GradeItem, RubricGrader, SuiteSummary, TraitSummary};
pub use judge::{CriterionJudge, CriterionOutcome, JudgeRequest};
pub use llm_judge::{LlmJudge, LlmJudgeConfig};
pub use logprob_judge::{LogprobJudge, LogprobJudgeConfig};
pub use reward::{RewardRouter, RewardTask};
pub use score::{clipped_mean, healthbench_score};

/// What can go wrong while grading.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GradeError {
    /// The judge's backend failed.
    #[error(transparent)]
    Llm(#[from] ethos_llm::LlmError),
    /// A model file for a local judge is missing or invalid.
    #[error("judge model {path}: {message}")]
    Model {
        /// The file or directory.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The judge spec is not understood.
    #[error("judge spec `{spec}`: {message}")]
    Spec {
        /// The spec as given.
        spec: String,
        /// What is wrong.
        message: String,
    },
    /// Tensor computation failed.
    #[error("tensor error: {0}")]
    Tensor(String),
}
