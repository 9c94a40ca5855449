//! The generative judge: any chat model asked for a JSON verdict, one call per criterion (HealthBench's protocol).
//!
//! Calls for all criteria of a batch go out in one `chat_batch`, so an endpoint sees them concurrently (bounded by
//! the backend's semaphore) and the embedded model decodes them as one batch. An unparseable answer is retried with a
//! new seed up to `max_attempts`; after that the criterion is unscored.

use std::sync::Arc;

use async_trait::async_trait;
use ethos_core::records::{Message, Role};
use ethos_llm::{ChatModel, ChatRequest, SamplingParams};

use crate::judge::{CriterionJudge, CriterionOutcome, JudgeRequest};
use crate::prompt::{criterion_prompt, parse_verdict};
use crate::GradeError;

/// Settings of [`LlmJudge`].
#[derive(Debug, Clone, PartialEq)]
pub struct LlmJudgeConfig {
    /// Attempts per criterion before leaving it unscored.
    pub max_attempts: u32,
    /// Longest judge answer in tokens.
    pub max_tokens: u32,
    /// Sampling temperature of the first attempt (retries use at least 0.7 so they can differ).
    pub temperature: f32,
    /// Base seed of judge calls.
    pub seed: u64,
}

impl Default for LlmJudgeConfig {
    fn default() -> Self {
        Self { max_attempts: 3, max_tokens: 256, temperature: 0.0, seed: 0 }
    }
}

/// A judge that asks a chat model for `{"explanation", "criteria_met"}`.
pub struct LlmJudge {
    model: Arc<dyn ChatModel>,
    config: LlmJudgeConfig,
}

impl LlmJudge {
    /// Wraps a chat model.
    pub fn new(model: Arc<dyn ChatModel>, config: LlmJudgeConfig) -> Self {
        Self { model, config }
    }

    fn request(&self, prompt: &str, attempt: u32) -> ChatRequest {
        let temperature = if attempt == 0 { self.config.temperature } else { self.config.temperature.max(0.7) };
        ChatRequest {
            messages: vec![Message { role: Role::User, content: prompt.to_string() }],
            sampling: SamplingParams {
                n: 1,
                temperature,
                max_tokens: self.config.max_tokens,
                seed: self.config.seed.wrapping_add(u64::from(attempt)),
                ..SamplingParams::default()
            },
        }
    }
}

#[async_trait]
impl CriterionJudge for LlmJudge {
    fn identity(&self) -> String {
        format!("json-judge:{}", self.model.identity())
    }

    async fn judge(&self, request: &JudgeRequest) -> Result<Vec<CriterionOutcome>, GradeError> {
        self.judge_batch(std::slice::from_ref(request)).await.into_iter().next().unwrap_or_else(|| Ok(Vec::new()))
    }

    async fn judge_batch(&self, requests: &[JudgeRequest]) -> Vec<Result<Vec<CriterionOutcome>, GradeError>> {
        // Flatten (request, criterion) pairs; keep retrying the undecided ones.
        let prompts: Vec<(usize, usize, String)> = requests
            .iter()
            .enumerate()
            .flat_map(|(r, req)| {
                req.criteria
                    .iter()
                    .enumerate()
                    .map(move |(c, criterion)| (r, c, criterion_prompt(&req.conversation, &req.reply, criterion)))
            })
            .collect();
        let mut outcomes: Vec<Vec<Option<CriterionOutcome>>> =
            requests.iter().map(|r| vec![None; r.criteria.len()]).collect();
        let mut failures: Vec<Option<GradeError>> = requests.iter().map(|_| None).collect();
        let mut last_answer: Vec<Vec<String>> =
            requests.iter().map(|r| vec![String::new(); r.criteria.len()]).collect();
        let mut pending: Vec<usize> = (0..prompts.len()).collect();
        for attempt in 0..self.config.max_attempts.max(1) {
            if pending.is_empty() {
                break;
            }
            let batch: Vec<ChatRequest> = pending.iter().map(|&i| self.request(&prompts[i].2, attempt)).collect();
            let responses = self.model.chat_batch(&batch).await;
            let mut still = Vec::new();
            for (&i, response) in pending.iter().zip(responses) {
                let (r, c, _) = &prompts[i];
                match response {
                    Err(e) => {
                        failures[*r].get_or_insert(GradeError::Llm(e));
                    }
                    Ok(resp) => {
                        let text = resp.choices.first().map(|g| g.text.clone()).unwrap_or_default();
                        match parse_verdict(&text) {
                            Some(v) => {
                                outcomes[*r][*c] =
                                    Some(CriterionOutcome { met: Some(v.met), explanation: v.explanation, p_met: None })
                            }
                            None => {
                                last_answer[*r][*c] = text;
                                still.push(i);
                            }
                        }
                    }
                }
            }
            pending = still;
        }
        outcomes
            .into_iter()
            .zip(failures)
            .zip(last_answer)
            .map(|((row, failure), answers)| match failure {
                Some(e) => Err(e),
                None => Ok(row
                    .into_iter()
                    .zip(answers)
                    .map(|(o, answer)| {
                        o.unwrap_or_else(|| {
                            CriterionOutcome::unscored(format!(
                                "unparseable judge answer after {} attempts: {}",
                                self.config.max_attempts,
                                answer.chars().take(200).collect::<String>()
                            ))
                        })
                    })
                    .collect()),
            })
            .collect()
    }
}
