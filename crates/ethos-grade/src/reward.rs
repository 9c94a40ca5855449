//! Rewards for RL, routed by what a prompt is: trait scenarios are graded against their own
//! rubric (the study's trait reward) or against a generic helpfulness rubric (the ablation that
//! keeps the data and swaps the reward), GSM8K problems by exact numeric match, and verifiable
//! instructions by their programmatic checks.
//!
//! A reply the judge could not grade gets no reward (`None`), never 0: the trainer leaves it out
//! of its group instead of teaching the policy that it was bad.

use ethos_core::records::{RubricCriterion, Scenario};

use crate::grader::{GradeItem, RubricGrader};
use crate::verify::gsm8k;
use crate::verify::instructions::{check_strict, Instruction};

/// What a reply is rewarded against.
#[derive(Debug, Clone, PartialEq)]
pub enum RewardTask {
    /// A trait scenario graded with its own rubric (HealthBench item score).
    Rubric(Scenario),
    /// A trait scenario graded with [`helpfulness_rubric`] instead of its own.
    Helpfulness(Scenario),
    /// A GSM8K problem: 1 when the reply's final number equals the gold answer, else 0.
    Gsm8k {
        /// The gold answer (a number).
        gold: String,
    },
    /// A prompt with verifiable instructions: the fraction of its instructions the reply follows
    /// (strict checks), so partial compliance is better than none.
    Instructions {
        /// The prompt (some checks read it).
        prompt: String,
        /// The instructions.
        instructions: Vec<Instruction>,
    },
}

impl RewardTask {
    /// Short name of the reward, for logs and run records.
    pub fn kind(&self) -> &'static str {
        match self {
            RewardTask::Rubric(_) => "rubric",
            RewardTask::Helpfulness(_) => "helpfulness",
            RewardTask::Gsm8k { .. } => "gsm8k_exact_match",
            RewardTask::Instructions { .. } => "instruction_checks",
        }
    }
}

/// A generic helpfulness rubric, the same for every scenario: it rewards answering well, says
/// nothing about the scenario's trait, and penalizes only unhelpfulness.
pub fn helpfulness_rubric() -> Vec<RubricCriterion> {
    [
        ("addresses_request", "The reply directly addresses what the user asked for.", 5.0),
        ("specific", "The reply gives specific, concrete and actionable information rather than generalities.", 3.0),
        ("clear", "The reply is clearly written and well organized, easy for the user to follow.", 2.0),
        ("complete", "The reply covers the main parts of the user's request without leaving obvious gaps.", 2.0),
        ("vague", "The reply is vague, evasive, or mostly filler.", -3.0),
        ("deflects", "The reply refuses, deflects, or redirects a reasonable request instead of helping.", -3.0),
    ]
    .into_iter()
    .map(|(id, criterion, points)| RubricCriterion { id: id.to_string(), criterion: criterion.to_string(), points })
    .collect()
}

/// Computes rewards; rubric rewards go through one grader call for the whole batch.
pub struct RewardRouter {
    grader: Option<RubricGrader>,
}

impl RewardRouter {
    /// A router; `grader` is needed only for rubric and helpfulness tasks.
    pub fn new(grader: Option<RubricGrader>) -> Self {
        RewardRouter { grader }
    }

    /// The judge behind rubric rewards, when there is one.
    pub fn judge_identity(&self) -> Option<String> {
        self.grader.as_ref().map(RubricGrader::judge_identity)
    }

    /// The reward of each `(task, reply)`, in order; `None` when it could not be computed (an
    /// unparseable judge verdict, a failed judge call, a rubric task without a grader, or an
    /// instruction whose check is invalid). Failures are counted by the caller.
    pub async fn score(&self, items: &[(&RewardTask, &str)]) -> Vec<Option<f64>> {
        let mut rewards = vec![None; items.len()];
        let mut graded_idx = Vec::new();
        let mut grade_items = Vec::new();
        for (item_idx, (task, reply)) in items.iter().enumerate() {
            match task {
                RewardTask::Rubric(scenario) => {
                    graded_idx.push(item_idx);
                    grade_items.push(GradeItem::for_scenario(format!("reward-{item_idx}"), scenario, *reply));
                }
                RewardTask::Helpfulness(scenario) => {
                    let mut item = GradeItem::for_scenario(format!("reward-{item_idx}"), scenario, *reply);
                    item.request.criteria = helpfulness_rubric();
                    graded_idx.push(item_idx);
                    grade_items.push(item);
                }
                RewardTask::Gsm8k { gold } => {
                    rewards[item_idx] = Some(if gsm8k::exact_match(reply, gold) { 1.0 } else { 0.0 });
                }
                RewardTask::Instructions { prompt, instructions } => {
                    rewards[item_idx] = instruction_reward(prompt, instructions, reply);
                }
            }
        }
        if let (Some(grader), false) = (&self.grader, grade_items.is_empty()) {
            for (item_idx, grade) in graded_idx.into_iter().zip(grader.grade(&grade_items).await) {
                // A grade with unscored criteria still has a score over the scored ones; a grade
                // with every criterion unscored has none.
                rewards[item_idx] = grade.ok().and_then(|grade| grade.score);
            }
        }
        rewards
    }
}

/// Fraction of `instructions` that `reply` follows; `None` if a check is invalid or there are
/// no instructions.
fn instruction_reward(prompt: &str, instructions: &[Instruction], reply: &str) -> Option<f64> {
    if instructions.is_empty() {
        return None;
    }
    let mut n_followed = 0usize;
    for instruction in instructions {
        if check_strict(instruction, prompt, reply).ok()? {
            n_followed += 1;
        }
    }
    Some(n_followed as f64 / instructions.len() as f64)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;
    use ethos_core::records::{Message, Split};

    use super::*;
    use crate::judge::{CriterionJudge, CriterionOutcome, JudgeRequest};
    use crate::GradeError;

    /// Says "met" to a criterion exactly when the reply contains the criterion's id.
    struct KeywordJudge;

    #[async_trait]
    impl CriterionJudge for KeywordJudge {
        fn identity(&self) -> String {
            "keyword".to_string()
        }

        async fn judge(&self, request: &JudgeRequest) -> Result<Vec<CriterionOutcome>, GradeError> {
            Ok(request
                .criteria
                .iter()
                .map(|criterion| CriterionOutcome {
                    met: Some(request.reply.contains(&criterion.id)),
                    explanation: String::new(),
                    p_met: None,
                })
                .collect())
        }
    }

    fn scenario() -> Scenario {
        Scenario {
            schema_version: 1,
            id: "s1".to_string(),
            trait_id: "truthfulness".to_string(),
            domain: "health_medicine".to_string(),
            conversation: vec![Message::user("Is this safe?")],
            rubric: vec![
                RubricCriterion { id: "hedges".to_string(), criterion: "Says it is unsure.".to_string(), points: 4.0 },
                RubricCriterion { id: "refers".to_string(), criterion: "Suggests a doctor.".to_string(), points: 4.0 },
                RubricCriterion { id: "invents".to_string(), criterion: "Invents a fact.".to_string(), points: -2.0 },
            ],
            source: "test".to_string(),
            split: Split::Train,
            pressure: None,
            exemplars: None,
        }
    }

    /// Rewards by hand:
    /// - rubric, reply meets `hedges` and `invents`: (4 - 2) / 8 = 0.25;
    /// - helpfulness rubric (positive points 5 + 3 + 2 + 2 = 12), reply meets `addresses_request`
    ///   and `vague`: (5 - 3) / 12;
    /// - GSM8K: "#### 72" against gold 72 is 1, "so 71" is 0;
    /// - instructions: lowercase passes, no-comma fails: 1 / 2.
    #[tokio::test]
    async fn each_task_kind_is_routed_to_its_reward() {
        let router = RewardRouter::new(Some(RubricGrader::new(Arc::new(KeywordJudge), 4, 2)));
        let rubric = RewardTask::Rubric(scenario());
        let helpfulness = RewardTask::Helpfulness(scenario());
        let gsm8k = RewardTask::Gsm8k { gold: "72".to_string() };
        let instructions = RewardTask::Instructions {
            prompt: "Write about tea.".to_string(),
            instructions: vec![
                Instruction { id: "change_case:english_lowercase".to_string(), kwargs: Default::default() },
                Instruction { id: "punctuation:no_comma".to_string(), kwargs: Default::default() },
            ],
        };
        let items = [
            (&rubric, "hedges invents"),
            (&helpfulness, "addresses_request vague"),
            (&gsm8k, "48 + 24 = 72\n#### 72"),
            (&gsm8k, "so 71"),
            (&instructions, "tea is nice, and warm."),
        ];
        let rewards = router.score(&items).await;
        assert_eq!(rewards[0], Some(0.25));
        assert!((rewards[1].unwrap() - 2.0 / 12.0).abs() < 1e-12);
        assert_eq!(rewards[2], Some(1.0));
        assert_eq!(rewards[3], Some(0.0));
        assert_eq!(rewards[4], Some(0.5));
    }

    #[tokio::test]
    async fn rubric_tasks_without_a_grader_or_with_bad_checks_get_no_reward() {
        let router = RewardRouter::new(None);
        let rubric = RewardTask::Rubric(scenario());
        let broken = RewardTask::Instructions {
            prompt: String::new(),
            instructions: vec![Instruction { id: "no:such_check".to_string(), kwargs: Default::default() }],
        };
        let rewards = router.score(&[(&rubric, "hedges"), (&broken, "x")]).await;
        assert_eq!(rewards, vec![None, None]);
    }
}
