//! Judge specs: which backend decides rubric criteria, and how a spec string maps to one.
//!
//! - `semantic:minilm` : sentence-embedding similarity with all-MiniLM-L6-v2 (offline, fetched through pip).
//! - `embedded:...`    : the embedded model deciding from verdict-token log-probabilities (same as `logprob:`).
//! - `openai:...`      : a chat model answering JSON verdicts (same as `json:`).
//! - `logprob:SPEC` / `json:SPEC` : choose the protocol explicitly for any model spec.

use std::sync::Arc;

use anyhow::Context;
use ethos_grade::logprob_judge::Calibration;
use ethos_grade::semantic::SemanticJudge;
use ethos_grade::{CriterionJudge, LlmJudge, LlmJudgeConfig, LogprobJudge, LogprobJudgeConfig};
use ethos_llm::ModelSpec;

use crate::commands::common::{load_policy, LoadedModel, ModelArgs};
use crate::printer::Printer;

/// The default offline judge. Chosen by measurement (README, "Scenarios and grading"): on the bank's 540 exemplar
/// pairs the semantic judge scores the good reply above the bad one in 57.6% of scenarios (mean gap +0.162), the
/// embedded Gemma log-probability judge in 42% of a 45-scenario subset (mean gap +0.004, no better than chance).
pub const DEFAULT_JUDGE: &str = "semantic:minilm";

/// Judge settings shared by commands that grade.
#[derive(Debug, Clone, clap::Args)]
pub struct JudgeArgs {
    /// Judge spec: `semantic:minilm` (default), `embedded:gemma-3-270m` (log-probability verdicts),
    /// `openai:URL#MODEL` (JSON verdicts), or `logprob:SPEC` / `json:SPEC` to choose the protocol.
    #[arg(long, default_value = DEFAULT_JUDGE)]
    pub judge: String,
    /// Attempts per criterion for JSON judges before leaving it unscored.
    #[arg(long, default_value_t = 3)]
    pub judge_attempts: u32,
    /// Log-probability judges: log-odds threshold for "met".
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub judge_threshold: f64,
    /// Log-probability judges: how to remove the model's prior lean toward "yes" or "no".
    #[arg(long, default_value = "null-reply")]
    pub calibration: Calibration,
    /// Semantic judge: cosine threshold for "met" (default: the judge's own default).
    #[arg(long)]
    pub semantic_threshold: Option<f32>,
}

/// A loaded judge and, when it runs on a chat model, that model (for manifests and cache statistics).
pub struct LoadedJudge {
    /// The judge.
    pub judge: Arc<dyn CriterionJudge>,
    /// The spec as given.
    pub spec: String,
    /// The model behind it, if any.
    pub model: Option<LoadedModel>,
}

enum Protocol {
    Semantic,
    Logprob(String),
    Json(String),
}

fn protocol(spec: &str) -> anyhow::Result<Protocol> {
    if let Some(rest) = spec.strip_prefix("semantic:") {
        anyhow::ensure!(
            matches!(rest, "minilm" | "all-minilm-l6-v2"),
            "unknown semantic judge `{rest}` (known: minilm)"
        );
        return Ok(Protocol::Semantic);
    }
    if let Some(rest) = spec.strip_prefix("logprob:") {
        return Ok(Protocol::Logprob(rest.to_string()));
    }
    if let Some(rest) = spec.strip_prefix("json:") {
        return Ok(Protocol::Json(rest.to_string()));
    }
    let model: ModelSpec = spec.parse()?;
    Ok(match model {
        ModelSpec::Embedded { .. } => Protocol::Logprob(spec.to_string()),
        ModelSpec::OpenAi { .. } => Protocol::Json(spec.to_string()),
    })
}

impl JudgeArgs {
    /// Loads the judge; a model already loaded under the same spec (usually the policy) is shared, not loaded twice.
    pub async fn load(
        &self,
        model_args: &ModelArgs,
        printer: &Printer,
        loaded: Option<&LoadedModel>,
    ) -> anyhow::Result<LoadedJudge> {
        let load_model = |model_spec: String| async move {
            match loaded {
                Some(m) if m.spec == model_spec => Ok::<LoadedModel, anyhow::Error>(m.clone()),
                _ => load_policy(&model_spec, model_args, printer).await,
            }
        };
        let spec = self.judge.clone();
        match protocol(&spec)? {
            Protocol::Semantic => {
                printer.status("loading semantic judge (all-MiniLM-L6-v2)");
                let threshold = self.semantic_threshold;
                let judge = tokio::task::spawn_blocking(move || {
                    let dir = ethos_grade::semantic::ensure_minilm()?;
                    let mut config = ethos_grade::semantic::SemanticJudgeConfig::default();
                    if let Some(t) = threshold {
                        config.threshold = t;
                    }
                    SemanticJudge::load(&dir, config)
                })
                .await
                .context("judge loading task failed")??;
                Ok(LoadedJudge { judge: Arc::new(judge), spec, model: None })
            }
            Protocol::Logprob(model_spec) => {
                let model = load_model(model_spec).await?;
                let config = LogprobJudgeConfig { threshold: self.judge_threshold, calibration: self.calibration };
                let judge = Arc::new(LogprobJudge::new(model.model.clone(), config));
                Ok(LoadedJudge { judge, spec, model: Some(model) })
            }
            Protocol::Json(model_spec) => {
                let model = load_model(model_spec).await?;
                let config = LlmJudgeConfig { max_attempts: self.judge_attempts.max(1), ..LlmJudgeConfig::default() };
                let judge = Arc::new(LlmJudge::new(model.model.clone(), config));
                Ok(LoadedJudge { judge, spec, model: Some(model) })
            }
        }
    }
}
