//! The supervised warm-start set: chat examples built only from project-owned training data, so
//! the base model learns to answer in the chat format before RL starts.
//!
//! - GSM8K *train* problems with their reference solutions (calculator annotations `<<...>>`
//!   removed, the `#### <answer>` line kept: the format the exact-match reward reads).
//! - The bank's exemplar good replies to *train-split* scenarios (held-out traits never appear).
//! - Verifiable-instruction examples: a train-split scenario's request plus generated
//!   constraints (never IFEval's prompts), answered by the exemplar reply transformed to comply
//!   (`make_compliant`, which re-checks every constraint).

use std::path::Path;

use ethos_core::records::{Message, Role, Split};
use ethos_grade::verify::instruction_gen::{generate_constructible_prompts, make_compliant};
use rand::seq::SliceRandom;

use crate::experiment::{gsm8k_prompt, read_gsm8k_solutions};
use crate::sft::ChatRecord;
use crate::TrainError;

/// How many examples of each kind.
#[derive(Debug, Clone, PartialEq)]
pub struct WarmstartConfig {
    /// GSM8K train problems (a seeded sample).
    pub n_gsm8k: usize,
    /// Instruction-following examples.
    pub n_instructions: usize,
    /// Seed of the samples and of the generated constraints.
    pub seed: u64,
}

/// Builds the warm-start set from the GSM8K train file and the scenario bank.
pub fn build_warmstart_set(gsm8k_train: &Path, config: &WarmstartConfig) -> Result<Vec<ChatRecord>, TrainError> {
    let mut records = Vec::new();

    let mut problems = read_gsm8k_solutions(gsm8k_train)?;
    let mut rng = ethos_stats::rng::replicate_rng(config.seed, ethos_stats::rng::purpose_key("warmstart-gsm8k"), 0);
    problems.shuffle(&mut rng);
    for (line, question, solution) in problems.into_iter().take(config.n_gsm8k) {
        records.push(ChatRecord {
            id: Some(format!("warmstart-gsm8k-train-{line}")),
            source: Some("gsm8k_train".to_string()),
            messages: vec![Message::user(gsm8k_prompt(&question)), Message::assistant(strip_annotations(&solution))],
        });
    }

    let bank = ethos_data::bank::bank_scenarios().map_err(|err| TrainError::Invalid(format!("bank: {err}")))?;
    let train: Vec<_> = bank.iter().filter(|scenario| scenario.split == Split::Train).collect();
    for scenario in &train {
        let Some(exemplars) = &scenario.exemplars else { continue };
        let mut messages = scenario.conversation.clone();
        messages.push(Message::assistant(exemplars.good.clone()));
        records.push(ChatRecord {
            id: Some(format!("warmstart-bank-{}", scenario.id)),
            source: Some("bank_train_exemplar".to_string()),
            messages,
        });
    }

    // Constraints from the generator, attached to single-turn train scenarios. Constraints that
    // refer to the generator's own task (repeat the request, yes/no answers) are skipped.
    let single_turn: Vec<_> = train
        .iter()
        .filter(|scenario| {
            scenario.exemplars.is_some()
                && scenario.conversation.iter().filter(|message| message.role != Role::System).count() == 1
        })
        .collect();
    if single_turn.is_empty() {
        return Ok(records);
    }
    let candidates = generate_constructible_prompts(config.n_instructions * 4, config.seed);
    let mut n_made = 0;
    for (candidate_idx, candidate) in candidates.iter().enumerate() {
        if n_made == config.n_instructions {
            break;
        }
        let refers_to_own_task = candidate.instructions.iter().any(|instruction| {
            matches!(instruction.id.as_str(), "combination:repeat_prompt" | "detectable_format:constrained_response")
        });
        let Some(constraints) = candidate.prompt.strip_prefix(&candidate.base_task) else { continue };
        if refers_to_own_task || constraints.trim().is_empty() {
            continue;
        }
        let scenario = single_turn[candidate_idx % single_turn.len()];
        let Some(exemplars) = &scenario.exemplars else { continue };
        let mut messages = scenario.conversation.clone();
        let Some(last) = messages.iter_mut().rev().find(|message| message.role == Role::User) else { continue };
        last.content = format!("{} {}", last.content.trim(), constraints.trim());
        let prompt = last.content.clone();
        let Some(reply) = make_compliant(&exemplars.good, &candidate.instructions, &prompt) else { continue };
        messages.push(Message::assistant(reply));
        records.push(ChatRecord {
            id: Some(format!("warmstart-instructions-{}-{}", candidate.id, scenario.id)),
            source: Some("instructions_on_bank_train".to_string()),
            messages,
        });
        n_made += 1;
    }
    Ok(records)
}

/// Removes GSM8K's calculator annotations: `48/2 = <<48/2=24>>24` becomes `48/2 = 24`.
pub fn strip_annotations(solution: &str) -> String {
    let mut out = String::with_capacity(solution.len());
    let mut rest = solution;
    while let Some(start) = rest.find("<<") {
        out.push_str(&rest[..start]);
        match rest[start..].find(">>") {
            Some(end) => rest = &rest[start + end + 2..],
            None => {
                rest = &rest[start..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_are_removed_and_unclosed_ones_kept() {
        assert_eq!(strip_annotations("48/2 = <<48/2=24>>24 clips.\n#### 72"), "48/2 = 24 clips.\n#### 72");
        assert_eq!(strip_annotations("a <<b"), "a <<b");
        assert_eq!(strip_annotations("none"), "none");
    }
}
