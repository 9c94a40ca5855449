//! The difficulty filter of `ethos generate`: a reference policy replies to a candidate scenario and the rubric
//! grader scores the reply; scenarios the reference policy already aces are too easy to teach anything.

use async_trait::async_trait;
use ethos_core::records::Scenario;
use ethos_data::generate::DifficultyScorer;
use ethos_grade::{GradeItem, RubricGrader};
use ethos_llm::{ChatRequest, SamplingParams};

use crate::commands::common::{item_seed, LoadedModel};

/// Scores scenarios by the reference policy's graded reply.
pub struct GraderDifficulty {
    /// The reference policy.
    pub policy: LoadedModel,
    /// The grader.
    pub grader: RubricGrader,
    /// Token budget of the reference reply.
    pub max_tokens: u32,
    /// Base seed of the reference replies.
    pub seed: u64,
}

#[async_trait]
impl DifficultyScorer for GraderDifficulty {
    async fn reference_score(&self, scenario: &Scenario) -> Result<Option<f64>, String> {
        let request = ChatRequest {
            messages: scenario.conversation.clone(),
            sampling: SamplingParams {
                n: 1,
                temperature: 0.7,
                max_tokens: self.max_tokens,
                seed: item_seed(self.seed, &scenario.id),
                ..SamplingParams::default()
            },
        };
        let response = self.policy.model.chat(&request).await.map_err(|e| format!("reference policy: {e}"))?;
        let reply = response.choices.into_iter().next().map(|g| g.text).unwrap_or_default();
        let item = GradeItem::for_scenario(format!("{}:reference", scenario.id), scenario, reply);
        let grade = self.grader.grade(std::slice::from_ref(&item)).await.into_iter().next();
        match grade {
            Some(Ok(grade)) => Ok(grade.score),
            Some(Err(e)) => Err(format!("grading the reference reply: {e}")),
            None => Ok(None),
        }
    }
}
