//! The catalog of beneficial traits, domains, persona prompts and pressure types that scenarios are built from.
//!
//! The built-in catalog is four TOML files under `data/catalog/`, compiled into the binary. [`Catalog::builtin`]
//! parses and validates them once; a test proves they parse, so the built-in catalog never fails at run time.
//! Scenario generation crosses trait x domain x pressure type; the held-out traits (DESIGN.md, "Catalog") are kept
//! out of training and make up the held-out trait evaluation; personas are the system prompts of the persistence
//! evaluation.
//!
//! ```
//! use ethos_core::catalog::Catalog;
//!
//! let catalog = Catalog::builtin();
//! assert_eq!(catalog.heldout_traits().count(), 7);
//! let truthfulness = catalog.trait_by_id("truthfulness").expect("a built-in trait");
//! assert!(truthfulness.is_heldout());
//! assert_eq!(catalog.domains_with_tag("health").count(), 2);
//! ```

use std::collections::HashSet;
use std::fmt;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// How many traits a catalog has.
pub const N_TRAITS: usize = 15;
/// How many of the traits are held out for evaluation.
pub const N_HELDOUT_TRAITS: usize = 7;
/// How many domains a catalog has.
pub const N_DOMAINS: usize = 12;
/// Domain tags that must occur: the study's data ablations train on `health` alone and leave out `health` and
/// `science`.
pub const REQUIRED_DOMAIN_TAGS: [&str; 2] = ["health", "science"];
/// The fewest words a description of a trait, domain or persona may have: a real paragraph, not a label.
pub const MIN_DESCRIPTION_WORDS: usize = 40;

/// The fewest words of a one-line trait summary.
const MIN_SUMMARY_WORDS: usize = 6;
/// The fewest words of a trait's example prompt or a persona's system prompt.
const MIN_PROMPT_WORDS: usize = 20;
/// The fewest words of a pressure type's description.
const MIN_PRESSURE_DESCRIPTION_WORDS: usize = 15;

/// The built-in catalog files, compiled into the binary.
const BUILTIN_SOURCES: CatalogSources<'static> = CatalogSources {
    traits: include_str!("../data/catalog/traits.toml"),
    domains: include_str!("../data/catalog/domains.toml"),
    personas: include_str!("../data/catalog/personas.toml"),
    pressure_types: include_str!("../data/catalog/pressure_types.toml"),
};

/// The traits, domains, personas and pressure types, validated (see [`Catalog::validate`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Catalog {
    traits: Vec<TraitInfo>,
    domains: Vec<Domain>,
    personas: Vec<Persona>,
    pressure_types: Vec<PressureType>,
}

/// The TOML text of the four catalog files, in the format of `crates/ethos-core/data/catalog/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogSources<'a> {
    /// `traits.toml`: an array of `[[trait]]` tables.
    pub traits: &'a str,
    /// `domains.toml`: an array of `[[domain]]` tables.
    pub domains: &'a str,
    /// `personas.toml`: an array of `[[persona]]` tables.
    pub personas: &'a str,
    /// `pressure_types.toml`: an array of `[[pressure_type]]` tables.
    pub pressure_types: &'a str,
}

/// A beneficial trait that scenarios measure and train.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraitInfo {
    id: String,
    name: String,
    heldout: bool,
    summary: String,
    description: String,
    pressure_types: Vec<String>,
    example_prompt: String,
}

/// A domain in which scenarios are set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Domain {
    id: String,
    name: String,
    tags: Vec<String>,
    description: String,
}

/// A persona system prompt: a condition of the persistence evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persona {
    id: String,
    name: String,
    kind: PersonaKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    domain: Option<String>,
    description: String,
    system_prompt: String,
}

/// Whether a persona steers toward or away from beneficial behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PersonaKind {
    /// A test condition that tries to steer the model away from beneficial behaviour.
    Harmful,
    /// A condition that steers toward beneficial behaviour, to check the model stays steerable.
    Helpful,
}

/// A kind of situational pressure under which a scenario tests a trait.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PressureType {
    id: String,
    name: String,
    description: String,
}

/// The kind of catalog entry an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A [`TraitInfo`].
    Trait,
    /// A [`Domain`].
    Domain,
    /// A [`Persona`].
    Persona,
    /// A [`PressureType`].
    PressureType,
}

/// Why a catalog failed to parse or validate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// A catalog file is not valid TOML or does not match the schema.
    #[error("{file}: {message}")]
    Parse {
        /// The file, e.g. `traits.toml`.
        file: &'static str,
        /// What the TOML parser reported, with the location.
        message: String,
    },
    /// The catalog has the wrong number of entries of some kind.
    #[error("expected {expected} {what}, found {found}")]
    WrongCount {
        /// What was counted, e.g. `held-out traits`.
        what: &'static str,
        /// How many there must be.
        expected: usize,
        /// How many there are.
        found: usize,
    },
    /// An id is not lower snake case (`[a-z][a-z0-9]*(_[a-z0-9]+)*`).
    #[error("{kind} id `{id}` is not lower snake case")]
    InvalidId {
        /// The kind of entry.
        kind: EntryKind,
        /// The offending id.
        id: String,
    },
    /// Two entries of one kind share an id.
    #[error("duplicate {kind} id `{id}`")]
    DuplicateId {
        /// The kind of entry.
        kind: EntryKind,
        /// The repeated id.
        id: String,
    },
    /// A text field is shorter than required.
    #[error("{kind} `{id}`: `{field}` has {found} words, at least {min} are required")]
    TooShort {
        /// The kind of entry.
        kind: EntryKind,
        /// The entry's id.
        id: String,
        /// The field, e.g. `description`.
        field: &'static str,
        /// Its number of words.
        found: usize,
        /// The minimum.
        min: usize,
    },
    /// A field that must be one paragraph contains a line break.
    #[error("{kind} `{id}`: `{field}` must be a single paragraph without line breaks")]
    LineBreak {
        /// The kind of entry.
        kind: EntryKind,
        /// The entry's id.
        id: String,
        /// The field, e.g. `description`.
        field: &'static str,
    },
    /// A list that must not be empty is empty.
    #[error("{kind} `{id}`: `{field}` is empty")]
    EmptyList {
        /// The kind of entry.
        kind: EntryKind,
        /// The entry's id.
        id: String,
        /// The field, e.g. `tags`.
        field: &'static str,
    },
    /// An entry names another entry that does not exist.
    #[error("{kind} `{id}` refers to unknown {target} `{reference}`")]
    UnknownReference {
        /// The kind of the referring entry.
        kind: EntryKind,
        /// The referring entry's id.
        id: String,
        /// The kind of entry referred to.
        target: EntryKind,
        /// The id that does not exist.
        reference: String,
    },
    /// No domain carries a required tag (see [`REQUIRED_DOMAIN_TAGS`]).
    #[error("no domain is tagged `{tag}`")]
    MissingTag {
        /// The missing tag.
        tag: &'static str,
    },
    /// There is no persona of some kind.
    #[error("there is no {kind} persona")]
    MissingPersonaKind {
        /// The missing kind.
        kind: PersonaKind,
    },
}

impl Catalog {
    /// The built-in catalog, parsed and validated on first use.
    ///
    /// # Panics
    ///
    /// Never in a released binary: the data is compiled in, and the test `builtin_catalog_parses_and_validates`
    /// proves it parses and validates.
    pub fn builtin() -> &'static Catalog {
        static BUILTIN: OnceLock<Catalog> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            Catalog::parse(BUILTIN_SOURCES)
                .expect("the built-in catalog is compiled in and a test proves it parses and validates")
        })
    }

    /// Parses the four catalog files and validates the result.
    pub fn parse(sources: CatalogSources<'_>) -> Result<Catalog, CatalogError> {
        let traits: TraitsFile = parse_file("traits.toml", sources.traits)?;
        let domains: DomainsFile = parse_file("domains.toml", sources.domains)?;
        let personas: PersonasFile = parse_file("personas.toml", sources.personas)?;
        let pressure_types: PressureTypesFile = parse_file("pressure_types.toml", sources.pressure_types)?;
        let catalog = Catalog {
            traits: traits.traits,
            domains: domains.domains,
            personas: personas.personas,
            pressure_types: pressure_types.pressure_types,
        };
        catalog.validate()?;
        Ok(catalog)
    }

    /// Checks the invariants: [`N_TRAITS`] traits of which [`N_HELDOUT_TRAITS`] are held out, [`N_DOMAINS`]
    /// domains, snake-case ids unique within their kind, descriptions of at least [`MIN_DESCRIPTION_WORDS`] words
    /// written as one paragraph, every referenced pressure type and domain present, every tag of
    /// [`REQUIRED_DOMAIN_TAGS`] present, and at least one harmful and one helpful persona.
    pub fn validate(&self) -> Result<(), CatalogError> {
        check_count("traits", N_TRAITS, self.traits.len())?;
        check_count("held-out traits", N_HELDOUT_TRAITS, self.heldout_traits().count())?;
        check_count("domains", N_DOMAINS, self.domains.len())?;

        check_ids(EntryKind::Trait, self.traits.iter().map(|entry| entry.id.as_str()))?;
        check_ids(EntryKind::Domain, self.domains.iter().map(|entry| entry.id.as_str()))?;
        check_ids(EntryKind::Persona, self.personas.iter().map(|entry| entry.id.as_str()))?;
        check_ids(EntryKind::PressureType, self.pressure_types.iter().map(|entry| entry.id.as_str()))?;

        for entry in &self.pressure_types {
            let text = TextCheck { kind: EntryKind::PressureType, id: &entry.id };
            text.words("name", &entry.name, 1)?;
            text.paragraph("description", &entry.description, MIN_PRESSURE_DESCRIPTION_WORDS)?;
        }
        for entry in &self.traits {
            let text = TextCheck { kind: EntryKind::Trait, id: &entry.id };
            text.words("name", &entry.name, 1)?;
            text.paragraph("summary", &entry.summary, MIN_SUMMARY_WORDS)?;
            text.paragraph("description", &entry.description, MIN_DESCRIPTION_WORDS)?;
            text.paragraph("example_prompt", &entry.example_prompt, MIN_PROMPT_WORDS)?;
            text.non_empty("pressure_types", &entry.pressure_types)?;
            for pressure_type in &entry.pressure_types {
                if self.pressure_type_by_id(pressure_type).is_none() {
                    return Err(CatalogError::UnknownReference {
                        kind: EntryKind::Trait,
                        id: entry.id.clone(),
                        target: EntryKind::PressureType,
                        reference: pressure_type.clone(),
                    });
                }
            }
        }
        for entry in &self.domains {
            let text = TextCheck { kind: EntryKind::Domain, id: &entry.id };
            text.words("name", &entry.name, 1)?;
            text.paragraph("description", &entry.description, MIN_DESCRIPTION_WORDS)?;
            text.non_empty("tags", &entry.tags)?;
        }
        for tag in REQUIRED_DOMAIN_TAGS {
            if self.domains_with_tag(tag).next().is_none() {
                return Err(CatalogError::MissingTag { tag });
            }
        }
        for entry in &self.personas {
            let text = TextCheck { kind: EntryKind::Persona, id: &entry.id };
            text.words("name", &entry.name, 1)?;
            text.paragraph("description", &entry.description, MIN_DESCRIPTION_WORDS)?;
            // System prompts may be lists of rules, so line breaks are allowed there.
            text.words("system_prompt", &entry.system_prompt, MIN_PROMPT_WORDS)?;
            if let Some(domain) = &entry.domain {
                if self.domain_by_id(domain).is_none() {
                    return Err(CatalogError::UnknownReference {
                        kind: EntryKind::Persona,
                        id: entry.id.clone(),
                        target: EntryKind::Domain,
                        reference: domain.clone(),
                    });
                }
            }
        }
        for kind in [PersonaKind::Harmful, PersonaKind::Helpful] {
            if self.personas_of_kind(kind).next().is_none() {
                return Err(CatalogError::MissingPersonaKind { kind });
            }
        }
        Ok(())
    }

    /// All traits, in catalog order.
    pub fn traits(&self) -> &[TraitInfo] {
        &self.traits
    }

    /// All domains, in catalog order.
    pub fn domains(&self) -> &[Domain] {
        &self.domains
    }

    /// All personas, in catalog order.
    pub fn personas(&self) -> &[Persona] {
        &self.personas
    }

    /// All pressure types, in catalog order.
    pub fn pressure_types(&self) -> &[PressureType] {
        &self.pressure_types
    }

    /// The trait with this id.
    pub fn trait_by_id(&self, id: &str) -> Option<&TraitInfo> {
        self.traits.iter().find(|entry| entry.id == id)
    }

    /// The domain with this id.
    pub fn domain_by_id(&self, id: &str) -> Option<&Domain> {
        self.domains.iter().find(|entry| entry.id == id)
    }

    /// The persona with this id.
    pub fn persona_by_id(&self, id: &str) -> Option<&Persona> {
        self.personas.iter().find(|entry| entry.id == id)
    }

    /// The pressure type with this id.
    pub fn pressure_type_by_id(&self, id: &str) -> Option<&PressureType> {
        self.pressure_types.iter().find(|entry| entry.id == id)
    }

    /// The traits held out for evaluation, in catalog order; their scenarios must never be trained on.
    pub fn heldout_traits(&self) -> impl Iterator<Item = &TraitInfo> + '_ {
        self.traits.iter().filter(|entry| entry.heldout)
    }

    /// The traits whose scenarios may be trained on, in catalog order.
    pub fn train_traits(&self) -> impl Iterator<Item = &TraitInfo> + '_ {
        self.traits.iter().filter(|entry| !entry.heldout)
    }

    /// The domains carrying `tag`, in catalog order.
    pub fn domains_with_tag<'a>(&'a self, tag: &'a str) -> impl Iterator<Item = &'a Domain> + 'a {
        self.domains.iter().filter(move |entry| entry.has_tag(tag))
    }

    /// The personas of one kind, in catalog order.
    pub fn personas_of_kind(&self, kind: PersonaKind) -> impl Iterator<Item = &Persona> + '_ {
        self.personas.iter().filter(move |entry| entry.kind == kind)
    }
}

impl CatalogSources<'static> {
    /// The built-in catalog files.
    pub const BUILTIN: CatalogSources<'static> = BUILTIN_SOURCES;
}

impl TraitInfo {
    /// The id, e.g. `truthfulness`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The display name, e.g. `Truthfulness`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the trait is held out for evaluation (never trained on).
    pub fn is_heldout(&self) -> bool {
        self.heldout
    }

    /// A one-line summary.
    pub fn summary(&self) -> &str {
        &self.summary
    }

    /// A paragraph: what the trait means in conversation, good behaviour under pressure, and the failure modes a
    /// rubric should penalize.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Ids of the pressure types the trait is typically tested with.
    pub fn pressure_types(&self) -> &[String] {
        &self.pressure_types
    }

    /// A realistic user message that tests the trait.
    pub fn example_prompt(&self) -> &str {
        &self.example_prompt
    }
}

impl Domain {
    /// The id, e.g. `health_medicine`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The display name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tags, e.g. `["health"]`.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// Whether the domain carries `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|own| own == tag)
    }

    /// A paragraph: what conversations in the domain look like, their typical users and stakes.
    pub fn description(&self) -> &str {
        &self.description
    }
}

impl Persona {
    /// The id, e.g. `harmful_medical`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The display name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the persona is harmful or helpful.
    pub fn kind(&self) -> PersonaKind {
        self.kind
    }

    /// The id of the domain the persona targets; `None` for general personas.
    pub fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }

    /// A paragraph: what the condition tests and how.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The system prompt that sets up the condition.
    pub fn system_prompt(&self) -> &str {
        &self.system_prompt
    }
}

impl PersonaKind {
    /// `harmful` or `helpful`, as in the catalog files.
    pub fn as_str(self) -> &'static str {
        match self {
            PersonaKind::Harmful => "harmful",
            PersonaKind::Helpful => "helpful",
        }
    }
}

impl fmt::Display for PersonaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PressureType {
    /// The id, e.g. `user_insists_false_claim`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The display name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the pressure looks like in a conversation and what yielding to it means.
    pub fn description(&self) -> &str {
        &self.description
    }
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EntryKind::Trait => "trait",
            EntryKind::Domain => "domain",
            EntryKind::Persona => "persona",
            EntryKind::PressureType => "pressure type",
        })
    }
}

/// `traits.toml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TraitsFile {
    #[serde(rename = "trait")]
    traits: Vec<TraitInfo>,
}

/// `domains.toml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DomainsFile {
    #[serde(rename = "domain")]
    domains: Vec<Domain>,
}

/// `personas.toml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PersonasFile {
    #[serde(rename = "persona")]
    personas: Vec<Persona>,
}

/// `pressure_types.toml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PressureTypesFile {
    #[serde(rename = "pressure_type")]
    pressure_types: Vec<PressureType>,
}

/// The text checks of one entry.
struct TextCheck<'a> {
    kind: EntryKind,
    id: &'a str,
}

impl TextCheck<'_> {
    /// `text` has at least `min` words.
    fn words(&self, field: &'static str, text: &str, min: usize) -> Result<(), CatalogError> {
        let found = text.split_whitespace().count();
        if found < min {
            return Err(CatalogError::TooShort { kind: self.kind, id: self.id.to_string(), field, found, min });
        }
        Ok(())
    }

    /// `text` has at least `min` words and no line break. A forgotten TOML line-ending backslash shows up here.
    fn paragraph(&self, field: &'static str, text: &str, min: usize) -> Result<(), CatalogError> {
        self.words(field, text, min)?;
        if text.contains(['\n', '\r']) {
            return Err(CatalogError::LineBreak { kind: self.kind, id: self.id.to_string(), field });
        }
        Ok(())
    }

    /// `list` is not empty.
    fn non_empty(&self, field: &'static str, list: &[String]) -> Result<(), CatalogError> {
        if list.is_empty() {
            return Err(CatalogError::EmptyList { kind: self.kind, id: self.id.to_string(), field });
        }
        Ok(())
    }
}

fn parse_file<T: serde::de::DeserializeOwned>(file: &'static str, text: &str) -> Result<T, CatalogError> {
    toml::from_str(text).map_err(|err| CatalogError::Parse { file, message: err.to_string().trim_end().to_string() })
}

fn check_count(what: &'static str, expected: usize, found: usize) -> Result<(), CatalogError> {
    if found != expected {
        return Err(CatalogError::WrongCount { what, expected, found });
    }
    Ok(())
}

fn check_ids<'a>(kind: EntryKind, ids: impl Iterator<Item = &'a str>) -> Result<(), CatalogError> {
    let mut seen = HashSet::new();
    for id in ids {
        if !is_snake_case(id) {
            return Err(CatalogError::InvalidId { kind, id: id.to_string() });
        }
        if !seen.insert(id) {
            return Err(CatalogError::DuplicateId { kind, id: id.to_string() });
        }
    }
    Ok(())
}

/// `[a-z][a-z0-9]*(_[a-z0-9]+)*`.
fn is_snake_case(id: &str) -> bool {
    id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .split('_')
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The trait ids of DESIGN.md, "Catalog", in its order.
    const DESIGN_TRAIT_IDS: [&str; 15] = [
        "truthfulness",
        "epistemic_humility",
        "metacognitive_transparency",
        "corrigibility",
        "downside_aware_planning",
        "power_asymmetry_awareness",
        "anti_hierarchy_governance",
        "universalizable_fairness",
        "risk_sensitivity",
        "human_welfare",
        "autonomy_preservation",
        "non_deception",
        "specification_integrity",
        "power_seeking_restraint",
        "moral_consistency",
    ];

    /// The starred (held-out) trait ids of DESIGN.md, in its order.
    const DESIGN_HELDOUT_TRAIT_IDS: [&str; 7] = [
        "truthfulness",
        "metacognitive_transparency",
        "corrigibility",
        "downside_aware_planning",
        "power_asymmetry_awareness",
        "anti_hierarchy_governance",
        "universalizable_fairness",
    ];

    /// The domain ids of DESIGN.md with the tags it gives (first tag only where it names one).
    const DESIGN_DOMAINS: [(&str, Option<&str>); 12] = [
        ("health_medicine", Some("health")),
        ("mental_health", Some("health")),
        ("science_research", Some("science")),
        ("education", None),
        ("law_justice", None),
        ("engineering_operations", None),
        ("software_security", None),
        ("business_economics", None),
        ("personal_finance", None),
        ("journalism_media", None),
        ("public_policy_governance", None),
        ("workplace_everyday", None),
    ];

    /// Persona ids other crates look up (the persistence conditions).
    const REQUIRED_PERSONAS: [(&str, PersonaKind); 5] = [
        ("harmful_medical", PersonaKind::Harmful),
        ("helpful_medical", PersonaKind::Helpful),
        ("harmful_mental_health", PersonaKind::Harmful),
        ("helpful_general", PersonaKind::Helpful),
        ("harmful_general", PersonaKind::Harmful),
    ];

    fn builtin_clone() -> Catalog {
        Catalog::builtin().clone()
    }

    /// Applies `mutate` to a copy of the built-in catalog and expects `validate` to fail with `expect`.
    fn check_invalid(mutate: impl FnOnce(&mut Catalog), expect: CatalogError) {
        let mut catalog = builtin_clone();
        mutate(&mut catalog);
        assert_eq!(catalog.validate(), Err(expect));
    }

    /// Parses the built-in sources with one file replaced and expects a parse error mentioning `expect_in_message`.
    fn check_parse_error(sources: CatalogSources<'_>, expect_file: &str, expect_in_message: &str) {
        match Catalog::parse(sources) {
            Err(CatalogError::Parse { file, message }) => {
                assert_eq!(file, expect_file);
                assert!(message.contains(expect_in_message), "message {message:?} lacks {expect_in_message:?}");
            }
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn builtin_catalog_parses_and_validates() {
        let catalog = Catalog::parse(CatalogSources::BUILTIN).expect("built-in catalog");
        assert_eq!(catalog.validate(), Ok(()));
        assert_eq!(&catalog, Catalog::builtin());
    }

    #[test]
    fn trait_ids_match_design() {
        let ids: Vec<&str> = Catalog::builtin().traits().iter().map(TraitInfo::id).collect();
        assert_eq!(ids, DESIGN_TRAIT_IDS);
    }

    #[test]
    fn heldout_and_train_traits_match_design() {
        let catalog = Catalog::builtin();
        let heldout: Vec<&str> = catalog.heldout_traits().map(TraitInfo::id).collect();
        assert_eq!(heldout, DESIGN_HELDOUT_TRAIT_IDS);
        let train: Vec<&str> = catalog.train_traits().map(TraitInfo::id).collect();
        let expect_train: Vec<&str> =
            DESIGN_TRAIT_IDS.into_iter().filter(|id| !DESIGN_HELDOUT_TRAIT_IDS.contains(id)).collect();
        assert_eq!(train, expect_train);
    }

    #[test]
    fn domain_ids_and_tags_match_design() {
        let catalog = Catalog::builtin();
        let ids: Vec<&str> = catalog.domains().iter().map(Domain::id).collect();
        let expect_ids: Vec<&str> = DESIGN_DOMAINS.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, expect_ids);
        for (id, tag) in DESIGN_DOMAINS {
            let domain = catalog.domain_by_id(id).expect("domain");
            if let Some(tag) = tag {
                assert!(domain.has_tag(tag), "{id} lacks tag {tag}");
            }
        }
        let health: Vec<&str> = catalog.domains_with_tag("health").map(Domain::id).collect();
        assert_eq!(health, ["health_medicine", "mental_health"]);
        let science: Vec<&str> = catalog.domains_with_tag("science").map(Domain::id).collect();
        assert_eq!(science, ["science_research"]);
    }

    #[test]
    fn required_personas_exist_with_their_kind() {
        let catalog = Catalog::builtin();
        for (id, kind) in REQUIRED_PERSONAS {
            let persona = catalog.persona_by_id(id).unwrap_or_else(|| panic!("persona {id}"));
            assert_eq!(persona.kind(), kind, "{id}");
        }
        assert_eq!(catalog.persona_by_id("harmful_medical").and_then(Persona::domain), Some("health_medicine"));
        assert_eq!(catalog.persona_by_id("harmful_general").and_then(Persona::domain), None);
    }

    #[test]
    fn lookups_return_none_for_unknown_ids() {
        let catalog = Catalog::builtin();
        assert!(catalog.trait_by_id("honesty").is_none());
        assert!(catalog.domain_by_id("health").is_none());
        assert!(catalog.persona_by_id("").is_none());
        assert!(catalog.pressure_type_by_id("Sunk_Cost").is_none());
        assert_eq!(catalog.domains_with_tag("astrology").count(), 0);
    }

    #[test]
    fn lookups_find_known_ids() {
        let catalog = Catalog::builtin();
        assert_eq!(catalog.trait_by_id("corrigibility").map(TraitInfo::name), Some("Corrigibility"));
        assert_eq!(
            catalog.domain_by_id("software_security").map(Domain::tags),
            Some(&["software".to_string(), "security".to_string()][..])
        );
        assert_eq!(catalog.pressure_type_by_id("sunk_cost").map(PressureType::name), Some("Sunk cost"));
        assert_eq!(catalog.personas_of_kind(PersonaKind::Harmful).count(), 3);
    }

    /// Trait descriptions are a real paragraph of 4-7 sentences; example prompts are 2-4 sentences.
    #[test]
    fn trait_texts_have_the_promised_shape() {
        for entry in Catalog::builtin().traits() {
            let n_sentences = count_sentences(entry.description());
            assert!((4..=7).contains(&n_sentences), "{}: description has {n_sentences} sentences", entry.id());
            let n_sentences = count_sentences(entry.example_prompt());
            assert!((2..=4).contains(&n_sentences), "{}: example prompt has {n_sentences} sentences", entry.id());
            assert!(entry.summary().ends_with('.'), "{}", entry.id());
        }
    }

    /// Catches TOML line-continuation slips: doubled spaces, stray whitespace at either end.
    #[test]
    fn texts_have_clean_whitespace() {
        let catalog = Catalog::builtin();
        let mut texts: Vec<(&str, &str)> = Vec::new();
        for entry in catalog.traits() {
            texts.extend([
                (entry.id(), entry.summary()),
                (entry.id(), entry.description()),
                (entry.id(), entry.example_prompt()),
            ]);
        }
        texts.extend(catalog.domains().iter().map(|entry| (entry.id(), entry.description())));
        for entry in catalog.personas() {
            texts.extend([(entry.id(), entry.description()), (entry.id(), entry.system_prompt())]);
        }
        texts.extend(catalog.pressure_types().iter().map(|entry| (entry.id(), entry.description())));
        for (id, text) in texts {
            assert!(!text.contains("  "), "{id}: doubled space in {text:?}");
            assert_eq!(text, text.trim(), "{id}: stray whitespace");
        }
    }

    #[test]
    fn every_pressure_type_is_used_by_some_trait() {
        let catalog = Catalog::builtin();
        for pressure_type in catalog.pressure_types() {
            let used =
                catalog.traits().iter().any(|entry| entry.pressure_types().iter().any(|id| id == pressure_type.id()));
            assert!(used, "{} is used by no trait", pressure_type.id());
        }
    }

    #[test]
    fn json_has_the_four_sections() {
        let value = serde_json::to_value(Catalog::builtin()).expect("serializable");
        let object = value.as_object().expect("object");
        let keys: Vec<&str> = object.keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 4);
        for key in ["traits", "domains", "personas", "pressure_types"] {
            assert!(object.contains_key(key), "{key}");
        }
        assert_eq!(value["traits"][0]["id"], "truthfulness");
        assert_eq!(value["traits"][0]["heldout"], true);
        assert_eq!(value["personas"][0]["kind"], "harmful");
    }

    #[test]
    fn validate_rejects_wrong_trait_count() {
        check_invalid(
            |catalog| {
                catalog.traits.pop();
            },
            CatalogError::WrongCount { what: "traits", expected: 15, found: 14 },
        );
    }

    #[test]
    fn validate_rejects_wrong_heldout_count() {
        check_invalid(
            |catalog| catalog.traits[1].heldout = true,
            CatalogError::WrongCount { what: "held-out traits", expected: 7, found: 8 },
        );
    }

    #[test]
    fn validate_rejects_wrong_domain_count() {
        check_invalid(
            |catalog| {
                let extra = catalog.domains[0].clone();
                catalog.domains.push(extra);
            },
            CatalogError::WrongCount { what: "domains", expected: 12, found: 13 },
        );
    }

    #[test]
    fn validate_rejects_duplicate_ids() {
        check_invalid(
            |catalog| catalog.domains[1].id = "health_medicine".to_string(),
            CatalogError::DuplicateId { kind: EntryKind::Domain, id: "health_medicine".to_string() },
        );
    }

    #[test]
    fn validate_rejects_non_snake_case_ids() {
        for id in ["Truthfulness", "non-deception", "_x", "x_", "a__b", "9lives", ""] {
            check_invalid(
                |catalog| catalog.traits[0].id = id.to_string(),
                CatalogError::InvalidId { kind: EntryKind::Trait, id: id.to_string() },
            );
        }
    }

    #[test]
    fn validate_rejects_short_descriptions() {
        check_invalid(
            |catalog| catalog.domains[3].description = "Schools.".to_string(),
            CatalogError::TooShort {
                kind: EntryKind::Domain,
                id: "education".to_string(),
                field: "description",
                found: 1,
                min: MIN_DESCRIPTION_WORDS,
            },
        );
    }

    #[test]
    fn validate_rejects_line_breaks_in_paragraphs() {
        check_invalid(
            |catalog| catalog.traits[2].description.insert(10, '\n'),
            CatalogError::LineBreak {
                kind: EntryKind::Trait,
                id: "metacognitive_transparency".to_string(),
                field: "description",
            },
        );
    }

    #[test]
    fn validate_rejects_unknown_pressure_types() {
        check_invalid(
            |catalog| catalog.traits[0].pressure_types.push("bribery".to_string()),
            CatalogError::UnknownReference {
                kind: EntryKind::Trait,
                id: "truthfulness".to_string(),
                target: EntryKind::PressureType,
                reference: "bribery".to_string(),
            },
        );
    }

    #[test]
    fn validate_rejects_unknown_persona_domains() {
        check_invalid(
            |catalog| catalog.personas[0].domain = Some("medicine".to_string()),
            CatalogError::UnknownReference {
                kind: EntryKind::Persona,
                id: "harmful_medical".to_string(),
                target: EntryKind::Domain,
                reference: "medicine".to_string(),
            },
        );
    }

    #[test]
    fn validate_rejects_missing_required_tags() {
        check_invalid(
            |catalog| catalog.domains[2].tags = vec!["research".to_string()],
            CatalogError::MissingTag { tag: "science" },
        );
    }

    #[test]
    fn validate_rejects_empty_tag_lists() {
        check_invalid(
            |catalog| catalog.domains[4].tags.clear(),
            CatalogError::EmptyList { kind: EntryKind::Domain, id: "law_justice".to_string(), field: "tags" },
        );
    }

    #[test]
    fn validate_rejects_catalogs_without_helpful_personas() {
        check_invalid(
            |catalog| catalog.personas.retain(|persona| persona.kind == PersonaKind::Harmful),
            CatalogError::MissingPersonaKind { kind: PersonaKind::Helpful },
        );
    }

    #[test]
    fn parse_names_the_file_and_the_problem() {
        let unknown_field = "[[domain]]\nid = \"x\"\nname = \"X\"\ntags = []\ndescription = \"d\"\ncolour = \"red\"\n";
        check_parse_error(
            CatalogSources { domains: unknown_field, ..CatalogSources::BUILTIN },
            "domains.toml",
            "colour",
        );
        let bad_kind = CatalogSources::BUILTIN.personas.replacen("kind = \"harmful\"", "kind = \"evil\"", 1);
        check_parse_error(CatalogSources { personas: &bad_kind, ..CatalogSources::BUILTIN }, "personas.toml", "evil");
        check_parse_error(CatalogSources { traits: "[[trait]\n", ..CatalogSources::BUILTIN }, "traits.toml", "line 1");
    }

    #[test]
    fn errors_read_well() {
        let err = CatalogError::UnknownReference {
            kind: EntryKind::Trait,
            id: "truthfulness".to_string(),
            target: EntryKind::PressureType,
            reference: "bribery".to_string(),
        };
        assert_eq!(err.to_string(), "trait `truthfulness` refers to unknown pressure type `bribery`");
        let err = CatalogError::WrongCount { what: "held-out traits", expected: 7, found: 8 };
        assert_eq!(err.to_string(), "expected 7 held-out traits, found 8");
    }

    /// Sentence ends: `.`, `?` or `!` followed by a space or the end. Good enough for the catalog's prose, which
    /// avoids abbreviations such as "e.g." for this reason.
    fn count_sentences(text: &str) -> usize {
        let chars: Vec<char> = text.chars().collect();
        (0..chars.len())
            .filter(|&idx| matches!(chars[idx], '.' | '?' | '!') && chars.get(idx + 1).is_none_or(|c| *c == ' '))
            .count()
    }
}
