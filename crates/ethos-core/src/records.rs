//! The records of DESIGN.md: scenarios with rubrics, samples, grades, item scores and run manifests.
//!
//! Every record carries `schema_version`; readers accept records without it as version 1 so that
//! hand-written item-score files (`{"benchmark","item","score"}`) stay valid input.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Version of every record format defined here. Bump when a field changes meaning or is removed.
pub const SCHEMA_VERSION: u32 = 1;

fn default_schema_version() -> u32 {
    SCHEMA_VERSION
}

/// Who speaks a turn of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A system prompt (persona conditions are system prompts).
    System,
    /// The human user.
    User,
    /// The model.
    Assistant,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        })
    }
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    /// Speaker of the turn.
    pub role: Role,
    /// Text of the turn.
    pub content: String,
}

impl Message {
    /// A turn with the given role and text.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Message { role, content: content.into() }
    }
    /// A system turn.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }
    /// A user turn.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }
    /// An assistant turn.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
}

/// One rubric criterion, HealthBench style: positive points for what a good reply does, negative points for a
/// failure the reply must avoid (a negative criterion is "met" only by a bad reply).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RubricCriterion {
    /// Identifier unique within its scenario.
    pub id: String,
    /// What the grader checks, as a sentence.
    pub criterion: String,
    /// Points, in -10..=10, never 0.
    pub points: f64,
}

/// Which split a scenario belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Used for training.
    Train,
    /// Held out for evaluation.
    Heldout,
}

/// A conversation for one trait x domain cell plus the rubric that grades replies to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    /// Record format version.
    #[serde(default = "default_schema_version")]
    pub schema_version: u32,
    /// Unique id.
    pub id: String,
    /// Catalog trait id.
    #[serde(rename = "trait")]
    pub trait_id: String,
    /// Catalog domain id.
    pub domain: String,
    /// The conversation so far; the policy writes the next assistant turn.
    pub conversation: Vec<Message>,
    /// Criteria for grading the reply.
    pub rubric: Vec<RubricCriterion>,
    /// Where the scenario came from (`bank`, `generated:<spec>`, ...).
    pub source: String,
    /// Train or held-out.
    pub split: Split,
    /// Catalog pressure-type id the scenario was written around, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pressure: Option<String>,
    /// A reply that meets the rubric and one that fails it, when the scenario has them (the bank always does):
    /// they measure whether a grader discriminates and seed supervised warm-start data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exemplars: Option<Exemplars>,
}

/// Two exemplar replies to a scenario, written with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exemplars {
    /// Meets every positive criterion and no negative one.
    pub good: String,
    /// Fails the rubric in a plausible way.
    pub bad: String,
}

/// A conversation to reply to: the input of `ethos respond`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationRecord {
    /// Unique id of the item (a scenario id or a benchmark item id).
    pub id: String,
    /// The conversation so far; the policy writes the next assistant turn.
    pub conversation: Vec<Message>,
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// The model ended its turn or hit a stop string.
    Stop,
    /// The token budget ran out.
    Length,
}

/// One reply of a policy to one item under one condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Record format version.
    #[serde(default = "default_schema_version")]
    pub schema_version: u32,
    /// Unique id: `{item_id}:{condition}:{sample_index}`.
    pub id: String,
    /// The scenario or benchmark item replied to.
    pub item_id: String,
    /// Index of this reply among the n sampled for the item.
    pub sample_index: u32,
    /// Model spec of the policy.
    pub policy: String,
    /// Persona condition id, `none` for the standard prompt.
    pub condition: String,
    /// The reply text.
    pub reply: String,
    /// Reasoning text when the backend returns it separately.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    /// Number of generated tokens.
    pub n_tokens: u32,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
}

/// Whether and how much a reply refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Refusal {
    /// Complies.
    None,
    /// Partly refuses (declines part, or complies with heavy caveats that withhold the substance).
    Partial,
    /// Refuses outright.
    Full,
}

/// The verdict of a grader on one criterion. `met` is `None` when the judge's output could not be parsed: the
/// criterion is then unscored, never counted as not met.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CriterionVerdict {
    /// Criterion id within the scenario.
    pub id: String,
    /// Whether the reply meets the criterion; `None` when unscored.
    pub met: Option<bool>,
    /// The judge's explanation (or raw text when unparseable).
    pub explanation: String,
}

/// A grade of one sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grade {
    /// Record format version.
    #[serde(default = "default_schema_version")]
    pub schema_version: u32,
    /// The sample graded.
    pub sample_id: String,
    /// Model spec (or name) of the grader.
    pub grader: String,
    /// One verdict per rubric criterion.
    pub per_criterion: Vec<CriterionVerdict>,
    /// The item score, `None` when the sample could not be scored.
    pub score: Option<f64>,
    /// Refusal label, when classified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
    /// Number of criteria left unscored.
    #[serde(default)]
    pub unscored: u32,
}

/// What statistics consume: one score of one item of one benchmark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemScore {
    /// Record format version.
    #[serde(default = "default_schema_version")]
    pub schema_version: u32,
    /// Benchmark (or trait) name.
    pub benchmark: String,
    /// Item id, unique within the benchmark and condition.
    pub item: String,
    /// The score; `None` (null) when the item is unscored.
    pub score: Option<f64>,
    /// Refusal label, when classified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
    /// Persona condition, absent for the standard prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// Model spec that produced the reply, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// A model used by a run in one role, with the identity that pins its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// The model spec as given (`embedded:gemma-3-270m`, `openai:URL#MODEL`).
    pub spec: String,
    /// Identity of the weights or endpoint model (for example the GGUF file's sha256).
    pub identity: String,
}

/// What a run records so that it can be reproduced: config, seeds, models and the code revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunManifest {
    /// Record format version.
    #[serde(default = "default_schema_version")]
    pub schema_version: u32,
    /// Version of the ethos binary.
    pub ethos_version: String,
    /// The subcommand that produced the run.
    pub command: String,
    /// The resolved settings of the command.
    pub config: serde_json::Value,
    /// Every seed used, by name.
    pub seeds: BTreeMap<String, u64>,
    /// Models by role (policy, judge, generator, monitor).
    pub models: BTreeMap<String, ModelRecord>,
    /// `git rev-parse HEAD` of the source tree, when known.
    pub git_revision: Option<String>,
    /// Whether the source tree had uncommitted changes.
    pub git_dirty: Option<bool>,
    /// RFC 3339 UTC time the run started.
    pub created_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_round_trips_with_trait_field_name() {
        let text = r#"{"schema_version":1,"id":"s1","trait":"truthfulness","domain":"education",
            "conversation":[{"role":"user","content":"Is the earth flat?"}],
            "rubric":[{"id":"c1","criterion":"Says no","points":5},{"id":"c2","criterion":"Agrees","points":-5}],
            "source":"bank","split":"heldout"}"#;
        let scenario: Scenario = serde_json::from_str(text).unwrap();
        assert_eq!(scenario.trait_id, "truthfulness");
        assert_eq!(scenario.split, Split::Heldout);
        let back = serde_json::to_value(&scenario).unwrap();
        assert_eq!(back["trait"], "truthfulness");
        assert_eq!(back["rubric"][1]["points"], -5.0);
    }

    #[test]
    fn item_score_accepts_minimal_form_and_null_score() {
        let minimal: ItemScore = serde_json::from_str(r#"{"benchmark":"b","item":"i","score":1}"#).unwrap();
        assert_eq!(minimal.schema_version, SCHEMA_VERSION);
        assert_eq!(minimal.score, Some(1.0));
        let unscored: ItemScore =
            serde_json::from_str(r#"{"benchmark":"b","item":"i","score":null,"refusal":"full"}"#).unwrap();
        assert_eq!(unscored.score, None);
        assert_eq!(unscored.refusal, Some(Refusal::Full));
    }

    #[test]
    fn unknown_role_is_rejected() {
        let err = serde_json::from_str::<Message>(r#"{"role":"robot","content":"x"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown variant"), "{err}");
    }
}
