//! The judge abstraction: something that decides, for one reply, which rubric criteria it meets.
//!
//! Judges see one reply and all its criteria at once so that backends can share work across the criteria
//! (the log-probability judge prefills the conversation once; the semantic judge embeds the reply once), but each
//! criterion still gets its own independent verdict, as one judge call per criterion would.

use async_trait::async_trait;
use ethos_core::records::{Message, RubricCriterion};

use crate::GradeError;

/// One reply to judge against its rubric.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeRequest {
    /// The conversation the reply answers (ends with the user's turn).
    pub conversation: Vec<Message>,
    /// The reply under judgement.
    pub reply: String,
    /// The criteria to decide.
    pub criteria: Vec<RubricCriterion>,
}

/// The verdict on one criterion.
#[derive(Debug, Clone, PartialEq)]
pub struct CriterionOutcome {
    /// Whether the reply meets the criterion; `None` when the judge's answer could not be parsed.
    pub met: Option<bool>,
    /// The judge's explanation (or a description of the evidence for non-generative judges).
    pub explanation: String,
    /// The judge's confidence that the criterion is met, in [0, 1], when the judge produces one.
    pub p_met: Option<f64>,
}

impl CriterionOutcome {
    /// An unscored outcome with the reason.
    pub fn unscored(reason: impl Into<String>) -> Self {
        Self { met: None, explanation: reason.into(), p_met: None }
    }
}

/// Decides which criteria a reply meets.
#[async_trait]
pub trait CriterionJudge: Send + Sync {
    /// A stable identity recorded in grades and run manifests (spec plus model identity).
    fn identity(&self) -> String;

    /// One outcome per criterion of `request`, in order. An error means the judge could not run at all (backend
    /// failure); an unparseable answer is an unscored outcome, not an error.
    async fn judge(&self, request: &JudgeRequest) -> Result<Vec<CriterionOutcome>, GradeError>;

    /// Judge several replies; backends that batch override this. Results are in request order.
    async fn judge_batch(&self, requests: &[JudgeRequest]) -> Vec<Result<Vec<CriterionOutcome>, GradeError>> {
        let mut out = Vec::with_capacity(requests.len());
        for request in requests {
            out.push(self.judge(request).await);
        }
        out
    }
}
