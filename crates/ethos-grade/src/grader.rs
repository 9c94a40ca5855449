//! The rubric grader: judges replies against scenario rubrics, applies the HealthBench formula and summarises per
//! trait (mean clipped to [0, 1]), the composite (mean of the trait scores, each trait weighted equally) and
//! per-criterion met rates.

use std::collections::BTreeMap;
use std::sync::Arc;

use ethos_core::records::{CriterionVerdict, Grade, RubricCriterion, Scenario, SCHEMA_VERSION};
use futures::StreamExt;
use serde::Serialize;

use crate::judge::{CriterionJudge, CriterionOutcome, JudgeRequest};
use crate::score::{clipped_mean, healthbench_score};
use crate::GradeError;

/// One reply to grade.
#[derive(Debug, Clone)]
pub struct GradeItem {
    /// The sample's id (recorded in the grade).
    pub sample_id: String,
    /// The judge request (conversation, reply, rubric).
    pub request: JudgeRequest,
}

impl GradeItem {
    /// A reply to a scenario.
    pub fn for_scenario(sample_id: impl Into<String>, scenario: &Scenario, reply: impl Into<String>) -> Self {
        Self {
            sample_id: sample_id.into(),
            request: JudgeRequest {
                conversation: scenario.conversation.clone(),
                reply: reply.into(),
                criteria: scenario.rubric.clone(),
            },
        }
    }
}

/// Grades replies with one judge, `batch_size` replies per judge call and up to `concurrency` calls in flight.
pub struct RubricGrader {
    judge: Arc<dyn CriterionJudge>,
    batch_size: usize,
    concurrency: usize,
}

impl RubricGrader {
    /// A grader over `judge`.
    pub fn new(judge: Arc<dyn CriterionJudge>, batch_size: usize, concurrency: usize) -> Self {
        Self { judge, batch_size: batch_size.max(1), concurrency: concurrency.max(1) }
    }

    /// The judge's identity.
    pub fn judge_identity(&self) -> String {
        self.judge.identity()
    }

    /// Grades the items; results are in item order. A backend failure fails only the items of its batch.
    pub async fn grade(&self, items: &[GradeItem]) -> Vec<Result<Grade, GradeError>> {
        let grader = self.judge.identity();
        // Owned batches: a stream over borrowed slices is not provably `Send` for every lifetime inside
        // `async_trait` futures (rust-lang/rust#102211), so callers there could not use the grader.
        let batches: Vec<Vec<JudgeRequest>> =
            items.chunks(self.batch_size).map(|batch| batch.iter().map(|i| i.request.clone()).collect()).collect();
        let judge = self.judge.clone();
        let judged: Vec<Vec<Result<Vec<CriterionOutcome>, GradeError>>> = futures::stream::iter(batches)
            .map(move |requests| {
                let judge = judge.clone();
                async move { judge.judge_batch(&requests).await }
            })
            .buffered(self.concurrency)
            .collect()
            .await;
        items
            .iter()
            .zip(judged.into_iter().flatten())
            .map(|(item, outcome)| {
                outcome.map(|o| grade_from_outcomes(&item.sample_id, &grader, &item.request.criteria, o))
            })
            .collect()
    }
}

/// Builds the grade record from per-criterion outcomes.
pub fn grade_from_outcomes(
    sample_id: &str,
    grader: &str,
    rubric: &[RubricCriterion],
    outcomes: Vec<CriterionOutcome>,
) -> Grade {
    let met: Vec<Option<bool>> = outcomes.iter().map(|o| o.met).collect();
    let score = healthbench_score(rubric, &met);
    let per_criterion: Vec<CriterionVerdict> = rubric
        .iter()
        .zip(outcomes)
        .map(|(c, o)| CriterionVerdict { id: c.id.clone(), met: o.met, explanation: o.explanation })
        .collect();
    let unscored = per_criterion.iter().filter(|v| v.met.is_none()).count() as u32;
    Grade {
        schema_version: SCHEMA_VERSION,
        sample_id: sample_id.to_string(),
        grader: grader.to_string(),
        per_criterion,
        score,
        refusal: None,
        unscored,
    }
}

/// Per-trait results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraitSummary {
    /// Mean item score clipped to [0, 1]; `None` when no item is scored.
    pub score: Option<f64>,
    /// Items with a score.
    pub n_scored: usize,
    /// Items left unscored.
    pub n_unscored_items: usize,
    /// Criteria left unscored (summed over items).
    pub n_unscored_criteria: usize,
    /// Share of positive criteria met.
    pub positive_met_rate: Option<f64>,
    /// Share of negative criteria met (failures shown).
    pub negative_met_rate: Option<f64>,
}

/// The summary of a graded trait suite.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SuiteSummary {
    /// By trait id.
    pub traits: BTreeMap<String, TraitSummary>,
    /// Mean of the trait scores (each trait weighted equally).
    pub composite: Option<f64>,
    /// Met rate per `scenario_id#criterion_id` (over the samples of that scenario).
    pub criterion_met_rates: BTreeMap<String, f64>,
}

/// Summarises grades of replies to scenarios: `(scenario, grade)` pairs.
pub fn summarize<'a>(graded: impl IntoIterator<Item = (&'a Scenario, &'a Grade)>) -> SuiteSummary {
    #[derive(Default)]
    struct Acc {
        scores: Vec<Option<f64>>,
        unscored_criteria: usize,
        pos: (usize, usize),
        neg: (usize, usize),
    }
    let mut by_trait: BTreeMap<String, Acc> = BTreeMap::new();
    let mut criteria: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (scenario, grade) in graded {
        let acc = by_trait.entry(scenario.trait_id.clone()).or_default();
        acc.scores.push(grade.score);
        acc.unscored_criteria += grade.unscored as usize;
        for (criterion, verdict) in scenario.rubric.iter().zip(&grade.per_criterion) {
            let Some(met) = verdict.met else { continue };
            let slot = if criterion.points > 0.0 { &mut acc.pos } else { &mut acc.neg };
            slot.0 += usize::from(met);
            slot.1 += 1;
            let c = criteria.entry(format!("{}#{}", scenario.id, criterion.id)).or_default();
            c.0 += usize::from(met);
            c.1 += 1;
        }
    }
    let rate = |(met, n): (usize, usize)| (n > 0).then(|| met as f64 / n as f64);
    let traits: BTreeMap<String, TraitSummary> = by_trait
        .into_iter()
        .map(|(id, acc)| {
            let n_scored = acc.scores.iter().flatten().count();
            let summary = TraitSummary {
                score: clipped_mean(acc.scores.iter().copied()),
                n_scored,
                n_unscored_items: acc.scores.len() - n_scored,
                n_unscored_criteria: acc.unscored_criteria,
                positive_met_rate: rate(acc.pos),
                negative_met_rate: rate(acc.neg),
            };
            (id, summary)
        })
        .collect();
    let trait_scores: Vec<f64> = traits.values().filter_map(|t| t.score).collect();
    let composite = (!trait_scores.is_empty()).then(|| trait_scores.iter().sum::<f64>() / trait_scores.len() as f64);
    let criterion_met_rates = criteria.into_iter().filter_map(|(k, v)| rate(v).map(|r| (k, r))).collect();
    SuiteSummary { traits, composite, criterion_met_rates }
}
