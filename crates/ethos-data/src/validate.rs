//! Scenario validation against the schema rules of DESIGN.md and the catalog.
//!
//! The rules: a unique non-empty id; trait, domain and pressure type from the catalog; a conversation of an
//! optional system turn followed by alternating user/assistant turns that ends with the user; 4-10 rubric criteria
//! with unique ids, non-empty text and finite, non-zero points in [-10, 10], at least one positive and one negative
//! (HealthBench style); non-empty exemplars when present; and no held-out trait in the train split (that would leak
//! evaluation data into training).

use std::collections::HashSet;
use std::fmt;

use ethos_core::catalog::Catalog;
use ethos_core::records::{Role, Scenario, Split};

/// Fewest rubric criteria per scenario.
pub const MIN_CRITERIA: usize = 4;
/// Most rubric criteria per scenario.
pub const MAX_CRITERIA: usize = 10;
/// Largest absolute points of one criterion.
pub const MAX_POINTS: f64 = 10.0;

/// One rule a scenario breaks, naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationIssue {
    /// JSON path of the field, e.g. `rubric[2].points`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ValidationIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.message)
    }
}

fn issue(field: impl Into<String>, message: impl Into<String>) -> ValidationIssue {
    ValidationIssue { field: field.into(), message: message.into() }
}

/// Every rule `scenario` breaks (empty when valid).
pub fn validate_scenario(scenario: &Scenario, catalog: &Catalog) -> Vec<ValidationIssue> {
    let mut issues = Vec::new();
    if scenario.id.trim().is_empty() {
        issues.push(issue("id", "must not be empty"));
    }
    match catalog.trait_by_id(&scenario.trait_id) {
        None => issues.push(issue("trait", format!("`{}` is not a catalog trait", scenario.trait_id))),
        Some(t) if t.is_heldout() && scenario.split == Split::Train => issues.push(issue(
            "split",
            format!("`{}` is a held-out evaluation trait, so its scenarios cannot be in the train split", t.id()),
        )),
        Some(_) => {}
    }
    if catalog.domain_by_id(&scenario.domain).is_none() {
        issues.push(issue("domain", format!("`{}` is not a catalog domain", scenario.domain)));
    }
    if let Some(pressure) = &scenario.pressure {
        if catalog.pressure_type_by_id(pressure).is_none() {
            issues.push(issue("pressure", format!("`{pressure}` is not a catalog pressure type")));
        }
    }
    validate_conversation(scenario, &mut issues);
    validate_rubric(scenario, &mut issues);
    if let Some(exemplars) = &scenario.exemplars {
        if exemplars.good.trim().is_empty() {
            issues.push(issue("exemplars.good", "must not be empty"));
        }
        if exemplars.bad.trim().is_empty() {
            issues.push(issue("exemplars.bad", "must not be empty"));
        }
    }
    issues
}

fn validate_conversation(scenario: &Scenario, issues: &mut Vec<ValidationIssue>) {
    let turns = &scenario.conversation;
    if turns.is_empty() {
        issues.push(issue("conversation", "must have at least one user turn"));
        return;
    }
    let mut expected = Role::User;
    for (i, message) in turns.iter().enumerate() {
        if message.content.trim().is_empty() {
            issues.push(issue(format!("conversation[{i}].content"), "must not be empty"));
        }
        if i == 0 && message.role == Role::System {
            continue;
        }
        if message.role != expected {
            issues.push(issue(
                format!("conversation[{i}].role"),
                format!("expected `{expected}` (turns alternate user/assistant after an optional first system turn)"),
            ));
            return;
        }
        expected = if expected == Role::User { Role::Assistant } else { Role::User };
    }
    if turns.last().map(|m| m.role) != Some(Role::User) {
        issues.push(issue(
            format!("conversation[{}].role", turns.len() - 1),
            "the conversation must end with a user turn",
        ));
    }
}

fn validate_rubric(scenario: &Scenario, issues: &mut Vec<ValidationIssue>) {
    let rubric = &scenario.rubric;
    if !(MIN_CRITERIA..=MAX_CRITERIA).contains(&rubric.len()) {
        issues.push(issue("rubric", format!("has {} criteria; need {MIN_CRITERIA} to {MAX_CRITERIA}", rubric.len())));
    }
    let mut ids = HashSet::new();
    for (i, c) in rubric.iter().enumerate() {
        if c.id.trim().is_empty() {
            issues.push(issue(format!("rubric[{i}].id"), "must not be empty"));
        } else if !ids.insert(c.id.as_str()) {
            issues.push(issue(format!("rubric[{i}].id"), format!("duplicate criterion id `{}`", c.id)));
        }
        if c.criterion.trim().is_empty() {
            issues.push(issue(format!("rubric[{i}].criterion"), "must not be empty"));
        }
        if !c.points.is_finite() || c.points == 0.0 || c.points.abs() > MAX_POINTS {
            issues.push(issue(
                format!("rubric[{i}].points"),
                format!("{} is not a non-zero number in [-10, 10]", c.points),
            ));
        }
    }
    if !rubric.is_empty() {
        if !rubric.iter().any(|c| c.points > 0.0) {
            issues
                .push(issue("rubric", "needs at least one positive criterion (the score divides by positive points)"));
        }
        if !rubric.iter().any(|c| c.points < 0.0) {
            issues.push(issue("rubric", "needs at least one negative criterion (a failure the reply must avoid)"));
        }
    }
}

/// Validates many scenarios and also checks that ids are unique; returns `(index, issue)` pairs.
pub fn validate_scenarios(scenarios: &[Scenario], catalog: &Catalog) -> Vec<(usize, ValidationIssue)> {
    let mut out = Vec::new();
    let mut ids = HashSet::new();
    for (i, s) in scenarios.iter().enumerate() {
        if !ids.insert(s.id.as_str()) {
            out.push((i, issue("id", format!("duplicate scenario id `{}`", s.id))));
        }
        out.extend(validate_scenario(s, catalog).into_iter().map(|v| (i, v)));
    }
    out
}

#[cfg(test)]
mod tests {
    use ethos_core::records::{Message, RubricCriterion, SCHEMA_VERSION};

    use super::*;

    fn scenario() -> Scenario {
        let c = |id: &str, points: f64| RubricCriterion { id: id.into(), criterion: format!("criterion {id}"), points };
        Scenario {
            schema_version: SCHEMA_VERSION,
            id: "s1".into(),
            trait_id: "human_welfare".into(),
            domain: "education".into(),
            conversation: vec![
                Message { role: Role::System, content: "You are a tutor.".into() },
                Message { role: Role::User, content: "Help?".into() },
            ],
            rubric: vec![c("a", 5.0), c("b", 3.0), c("c", 2.0), c("d", -4.0)],
            source: "test".into(),
            split: Split::Train,
            pressure: Some("emotional_appeal".into()),
            exemplars: None,
        }
    }

    fn fields(s: &Scenario) -> Vec<String> {
        validate_scenario(s, Catalog::builtin()).into_iter().map(|i| i.field).collect()
    }

    #[test]
    fn a_valid_scenario_has_no_issues() {
        assert!(fields(&scenario()).is_empty());
    }

    #[test]
    fn each_rule_names_its_field() {
        let mut s = scenario();
        s.trait_id = "truthfulness".into();
        assert_eq!(fields(&s), ["split"], "held-out trait in train split");
        let mut s = scenario();
        s.domain = "astrology".into();
        s.pressure = Some("nagging".into());
        assert_eq!(fields(&s), ["domain", "pressure"]);
        let mut s = scenario();
        s.conversation.push(Message { role: Role::Assistant, content: "Sure".into() });
        assert_eq!(fields(&s), ["conversation[2].role"], "must end with the user");
        let mut s = scenario();
        s.conversation.insert(1, Message { role: Role::Assistant, content: "Hi".into() });
        assert_eq!(fields(&s), ["conversation[1].role"], "assistant before any user turn");
        let mut s = scenario();
        s.rubric[1].points = 0.0;
        s.rubric[2].points = f64::NAN;
        s.rubric[3].id = "a".into();
        assert_eq!(fields(&s), ["rubric[1].points", "rubric[2].points", "rubric[3].id"]);
        let mut s = scenario();
        s.rubric[3].points = 4.0;
        assert_eq!(fields(&s), ["rubric"], "no negative criterion");
        let mut s = scenario();
        s.rubric.truncate(3);
        assert!(fields(&s).contains(&"rubric".to_string()), "too few criteria");
    }

    #[test]
    fn duplicate_ids_across_scenarios_are_reported() {
        let issues = validate_scenarios(&[scenario(), scenario()], Catalog::builtin());
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].0, 1);
        assert!(issues[0].1.message.contains("duplicate"));
    }
}
