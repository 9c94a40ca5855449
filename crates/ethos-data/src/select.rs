//! Choosing scenarios for a study arm: the split (train traits vs the held-out evaluation traits, plus an optional
//! scenario-level held-out share within the train traits), trait lists, and domain filters by id or tag
//! (`--domains health` for the health-only arm, `--exclude-tags health,science` for the no-health-no-science arm).

use std::collections::HashSet;

use ethos_core::catalog::Catalog;
use ethos_core::records::{Scenario, Split};
use sha2::{Digest, Sha256};

/// An unknown trait, domain or tag in a filter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} `{value}` is not in the catalog (known: {known})")]
pub struct FilterError {
    /// What kind of name (`trait`, `domain or tag`, `tag`).
    pub what: &'static str,
    /// The unknown name.
    pub value: String,
    /// The names that would have been accepted.
    pub known: String,
}

/// Domains selected by ids or tags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainFilter {
    domains: Option<HashSet<String>>,
    excluded: HashSet<String>,
}

impl DomainFilter {
    /// Keep only domains named in `include` (domain ids or tags; empty = all), then drop every domain carrying one
    /// of `exclude_tags`.
    pub fn new(include: &[String], exclude_tags: &[String], catalog: &Catalog) -> Result<Self, FilterError> {
        let all_tags: HashSet<&str> =
            catalog.domains().iter().flat_map(|d| d.tags().iter().map(String::as_str)).collect();
        let domains = if include.is_empty() {
            None
        } else {
            let mut set = HashSet::new();
            for name in include {
                let matched: Vec<String> = catalog
                    .domains()
                    .iter()
                    .filter(|d| d.id() == name || d.has_tag(name))
                    .map(|d| d.id().to_string())
                    .collect();
                if matched.is_empty() {
                    let mut known: Vec<&str> = catalog.domains().iter().map(|d| d.id()).collect();
                    known.extend(all_tags.iter().copied());
                    known.sort_unstable();
                    return Err(FilterError { what: "domain or tag", value: name.clone(), known: known.join(", ") });
                }
                set.extend(matched);
            }
            Some(set)
        };
        let mut excluded = HashSet::new();
        for tag in exclude_tags {
            if !all_tags.contains(tag.as_str()) {
                let mut known: Vec<&str> = all_tags.iter().copied().collect();
                known.sort_unstable();
                return Err(FilterError { what: "tag", value: tag.clone(), known: known.join(", ") });
            }
            excluded.extend(catalog.domains_with_tag(tag).map(|d| d.id().to_string()));
        }
        Ok(Self { domains, excluded })
    }

    /// Whether the domain passes.
    pub fn accepts(&self, domain: &str) -> bool {
        self.domains.as_ref().is_none_or(|d| d.contains(domain)) && !self.excluded.contains(domain)
    }
}

/// Which scenarios an arm or evaluation uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScenarioFilter {
    /// Keep only this split.
    pub split: Option<Split>,
    /// Keep only these traits (`None` = all).
    pub traits: Option<HashSet<String>>,
    /// Domain selection.
    pub domains: DomainFilter,
}

impl ScenarioFilter {
    /// Checks trait names against the catalog.
    pub fn with_traits(mut self, traits: &[String], catalog: &Catalog) -> Result<Self, FilterError> {
        if traits.is_empty() {
            return Ok(self);
        }
        for t in traits {
            if catalog.trait_by_id(t).is_none() {
                let known: Vec<&str> = catalog.traits().iter().map(|t| t.id()).collect();
                return Err(FilterError { what: "trait", value: t.clone(), known: known.join(", ") });
            }
        }
        self.traits = Some(traits.iter().cloned().collect());
        Ok(self)
    }

    /// Whether a scenario passes.
    pub fn accepts(&self, scenario: &Scenario) -> bool {
        self.split.is_none_or(|s| s == scenario.split)
            && self.traits.as_ref().is_none_or(|t| t.contains(&scenario.trait_id))
            && self.domains.accepts(&scenario.domain)
    }

    /// The scenarios that pass, in order.
    pub fn apply<'a>(&self, scenarios: &'a [Scenario]) -> Vec<&'a Scenario> {
        scenarios.iter().filter(|s| self.accepts(s)).collect()
    }
}

/// Assigns splits: scenarios of held-out traits are always `heldout`; of the rest, a `heldout_fraction` share chosen
/// by a seeded hash of the id (so the choice is stable when scenarios are added or reordered) becomes `heldout` too,
/// for in-distribution evaluation of the trained traits.
pub fn assign_splits(scenarios: &mut [Scenario], heldout_fraction: f64, seed: u64, catalog: &Catalog) {
    for s in scenarios {
        let trait_heldout = catalog.trait_by_id(&s.trait_id).is_some_and(|t| t.is_heldout());
        s.split =
            if trait_heldout || unit_hash(seed, &s.id) < heldout_fraction { Split::Heldout } else { Split::Train };
    }
}

/// A uniform number in [0, 1) from (seed, id).
fn unit_hash(seed: u64, id: &str) -> f64 {
    let digest = Sha256::new().chain_update(seed.to_le_bytes()).chain_update(id.as_bytes()).finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn domain_filters_by_tag_and_id() {
        let catalog = Catalog::builtin();
        let health = DomainFilter::new(&strings(&["health"]), &[], catalog).expect("known tag");
        assert!(health.accepts("health_medicine") && health.accepts("mental_health"));
        assert!(!health.accepts("education"));
        let no_hs = DomainFilter::new(&[], &strings(&["health", "science"]), catalog).expect("known tags");
        let kept: Vec<&str> = catalog.domains().iter().map(|d| d.id()).filter(|d| no_hs.accepts(d)).collect();
        assert_eq!(kept.len(), 9, "12 domains minus 2 health minus 1 science: {kept:?}");
        let by_id = DomainFilter::new(&strings(&["law_justice"]), &[], catalog).expect("known id");
        assert!(by_id.accepts("law_justice") && !by_id.accepts("education"));
        let err = DomainFilter::new(&strings(&["astrology"]), &[], catalog).expect_err("unknown");
        assert!(err.to_string().contains("astrology") && err.to_string().contains("health"), "{err}");
        assert!(DomainFilter::new(&[], &strings(&["law_justice"]), catalog).is_err(), "exclude takes tags only");
    }

    #[test]
    fn scenario_split_is_stable_and_near_the_fraction() {
        let catalog = Catalog::builtin();
        let template = crate::bank::parse_bank_file("human_welfare", TEMPLATE, catalog).expect("valid")[0].clone();
        let mut scenarios: Vec<Scenario> =
            (0..2000).map(|i| Scenario { id: format!("human_welfare.education.{i}"), ..template.clone() }).collect();
        assign_splits(&mut scenarios, 0.25, 9, catalog);
        let heldout = scenarios.iter().filter(|s| s.split == Split::Heldout).count();
        // Binomial(2000, 0.25): sd = sqrt(2000 * 0.25 * 0.75) = 19.4; allow 5 sd.
        assert!((heldout as f64 - 500.0).abs() < 97.0, "{heldout}");
        let first: Vec<Split> = scenarios.iter().map(|s| s.split).collect();
        scenarios.reverse();
        assign_splits(&mut scenarios, 0.25, 9, catalog);
        scenarios.reverse();
        assert_eq!(first, scenarios.iter().map(|s| s.split).collect::<Vec<_>>(), "order does not matter");
        let mut truth = vec![Scenario { trait_id: "truthfulness".into(), ..template }];
        assign_splits(&mut truth, 0.0, 9, catalog);
        assert_eq!(truth[0].split, Split::Heldout, "held-out traits stay held out");
    }

    const TEMPLATE: &str = r#"
[[scenario]]
id = "human_welfare.education.1"
domain = "education"
pressure = "emotional_appeal"
good = "g"
bad = "b"
[[scenario.conversation]]
role = "user"
content = "u"
[[scenario.rubric]]
criterion = "one"
points = 5
[[scenario.rubric]]
criterion = "two"
points = 3
[[scenario.rubric]]
criterion = "three"
points = 2
[[scenario.rubric]]
criterion = "four"
points = -5
"#;
}
