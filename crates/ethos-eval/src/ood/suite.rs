//! Suites: TOML files that list benchmarks, per-benchmark sample sizes (stratified, seeded subsets) and judges.
//!
//! ```toml
//! name = "quick"
//! description = "A small subset for CI and demos"
//! judge = "embedded:gemma-3-270m"      # the probability judge (0-100, letters, StrongREJECT)
//! rubric_judge = "semantic:minilm"     # the criterion judge of rubric benchmarks (HealthBench)
//! seed = 0
//! max_tokens = 160                     # reply budget of free-form items
//! temperature = 0.7                    # policy sampling for free-form items (0 = greedy)
//! samples_per_paraphrase = 1           # emergent misalignment (the paper: 100)
//!
//! [[benchmark]]
//! name = "aar_human_*"                 # a registered name, or a prefix followed by `*`
//! n = 20                               # items per benchmark (0 = all)
//! ```
//!
//! The shipped suites are `ood` (every oriented benchmark), `quick` and `capability`; any other name is read as a
//! file path.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::registry::{registry, Registered};
use super::OodItem;
use crate::capability::seeded_subset;
use crate::EvalError;

/// One `[[benchmark]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteEntry {
    /// A registered benchmark name, or a prefix followed by `*`.
    pub name: String,
    /// Items per benchmark (0 = all).
    #[serde(default)]
    pub n: usize,
    /// Reply budget override for this entry.
    #[serde(default)]
    pub max_tokens: Option<u32>,
}

/// A suite file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    /// Suite name.
    pub name: String,
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// Default probability judge spec.
    #[serde(default = "default_judge")]
    pub judge: String,
    /// Default rubric judge spec.
    #[serde(default = "default_rubric_judge")]
    pub rubric_judge: String,
    /// Seed of the subsets and of the policy's sampling.
    #[serde(default)]
    pub seed: u64,
    /// Reply budget of free-form items.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// Policy sampling temperature for free-form items.
    #[serde(default = "default_temperature")]
    pub temperature: f32,
    /// Emergent misalignment: replies per paraphrase.
    #[serde(default = "one")]
    pub samples_per_paraphrase: usize,
    /// Emergent misalignment: the least judge probability on numbers for a reading to count (default: 0.25 for
    /// top-logprob judges, 0 for continuation-scored judges; see `run::default_min_number_mass`).
    #[serde(default)]
    pub judge_min_mass: Option<f64>,
    /// The benchmarks.
    #[serde(rename = "benchmark")]
    pub benchmarks: Vec<SuiteEntry>,
}

fn default_judge() -> String {
    "embedded:gemma-3-270m".to_string()
}
fn default_rubric_judge() -> String {
    "semantic:minilm".to_string()
}
fn default_max_tokens() -> u32 {
    160
}
fn default_temperature() -> f32 {
    0.7
}
fn one() -> usize {
    1
}

/// The shipped suites: name and TOML text.
pub const BUILTIN_SUITES: &[(&str, &str)] = &[
    ("ood", include_str!("../../suites/ood.toml")),
    ("quick", include_str!("../../suites/quick.toml")),
    ("capability", include_str!("../../suites/capability.toml")),
];

/// A benchmark of a suite with its sample size and reply budget.
#[derive(Debug, Clone, PartialEq)]
pub struct Selected {
    /// The registered benchmark.
    pub registered: Registered,
    /// Items to keep (0 = all).
    pub n: usize,
    /// Reply budget.
    pub max_tokens: u32,
}

impl Suite {
    /// Parses suite TOML; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Suite, EvalError> {
        let suite: Suite = toml::from_str(text).map_err(|err| {
            let line = err.span().map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
            match line {
                Some(line) => EvalError::Data(format!("{origin}:{line}: {}", err.message())),
                None => EvalError::Data(format!("{origin}: {}", err.message())),
            }
        })?;
        if suite.benchmarks.is_empty() {
            return Err(EvalError::Data(format!("{origin}: no [[benchmark]] entries")));
        }
        if suite.max_tokens == 0 {
            return Err(EvalError::Data(format!("{origin}: field `max_tokens` must be at least 1")));
        }
        if !(0.0..=2.0).contains(&suite.temperature) {
            return Err(EvalError::Data(format!("{origin}: field `temperature` must be in [0, 2]")));
        }
        suite.select().map_err(|err| EvalError::Data(format!("{origin}: {err}")))?;
        Ok(suite)
    }

    /// A shipped suite by name, or a suite file.
    pub fn load(name_or_path: &str) -> Result<Suite, EvalError> {
        if let Some((_, text)) = BUILTIN_SUITES.iter().find(|(name, _)| *name == name_or_path) {
            return Suite::parse(text, &format!("built-in suite `{name_or_path}`"));
        }
        let path = Path::new(name_or_path);
        if !path.exists() {
            let known: Vec<&str> = BUILTIN_SUITES.iter().map(|(name, _)| *name).collect();
            return Err(EvalError::Data(format!(
                "`{name_or_path}` is neither a shipped suite ({}) nor a file",
                known.join(", ")
            )));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|source| EvalError::Io { path: path.display().to_string(), source })?;
        Suite::parse(&text, &path.display().to_string())
    }

    /// The benchmarks the entries name, in registry order within each entry, without duplicates (a later entry
    /// overrides the sample size of an earlier one).
    pub fn select(&self) -> Result<Vec<Selected>, String> {
        let all = registry();
        let mut order: Vec<String> = Vec::new();
        let mut chosen: BTreeMap<String, Selected> = BTreeMap::new();
        for entry in &self.benchmarks {
            let matches: Vec<&Registered> = match entry.name.strip_suffix('*') {
                Some(prefix) => all.iter().filter(|r| r.info.name.starts_with(prefix)).collect(),
                None => all.iter().filter(|r| r.info.name == entry.name).collect(),
            };
            if matches.is_empty() {
                return Err(format!(
                    "benchmark `{}` matches no registered benchmark (see `ethos eval list`)",
                    entry.name
                ));
            }
            for registered in matches {
                let name = registered.info.name.clone();
                if !chosen.contains_key(&name) {
                    order.push(name.clone());
                }
                chosen.insert(
                    name,
                    Selected {
                        registered: registered.clone(),
                        n: entry.n,
                        max_tokens: entry.max_tokens.unwrap_or(self.max_tokens),
                    },
                );
            }
        }
        Ok(order.into_iter().filter_map(|name| chosen.remove(&name)).collect())
    }
}

/// A stratified, seeded subset of `n` items (all when `n` is 0 or too large), kept in file order.
///
/// Each stratum gets its proportional share, rounded by largest remainder (ties to the stratum seen first), and
/// its items are a seeded draw within the stratum, so the same `(n, seed)` picks the same items for every policy.
pub fn stratified_subset(items: Vec<OodItem>, n: usize, seed: u64) -> Vec<OodItem> {
    if n == 0 || n >= items.len() {
        return items;
    }
    let total = items.len();
    let mut strata: Vec<(String, Vec<usize>)> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match strata.iter_mut().find(|(name, _)| *name == item.stratum) {
            Some((_, members)) => members.push(index),
            None => strata.push((item.stratum.clone(), vec![index])),
        }
    }
    let quotas: Vec<f64> = strata.iter().map(|(_, m)| m.len() as f64 * n as f64 / total as f64).collect();
    let mut counts: Vec<usize> = quotas.iter().map(|q| q.floor() as usize).collect();
    let mut remaining = n - counts.iter().sum::<usize>();
    let mut by_remainder: Vec<usize> = (0..strata.len()).collect();
    by_remainder.sort_by(|&a, &b| {
        let (ra, rb) = (quotas[a] - quotas[a].floor(), quotas[b] - quotas[b].floor());
        rb.partial_cmp(&ra).unwrap_or(std::cmp::Ordering::Equal).then(a.cmp(&b))
    });
    for index in by_remainder {
        if remaining == 0 {
            break;
        }
        if counts[index] < strata[index].1.len() {
            counts[index] += 1;
            remaining -= 1;
        }
    }
    let mut keep = vec![false; total];
    for (stratum_index, ((name, members), count)) in strata.iter().zip(counts).enumerate() {
        if count == 0 {
            // `seeded_subset` reads 0 as "all".
            continue;
        }
        let stratum_seed = seed ^ super::fnv1a(name).wrapping_add(stratum_index as u64);
        for member in seeded_subset(members.clone(), count, stratum_seed) {
            keep[member] = true;
        }
    }
    items.into_iter().zip(keep).filter_map(|(item, kept)| kept.then_some(item)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ood::{GenerateTask, Grading, Task};
    use ethos_core::records::Message;

    fn item(id: usize, stratum: &str) -> OodItem {
        OodItem {
            id: format!("i{id}"),
            stratum: stratum.to_string(),
            task: Task::Generate(GenerateTask {
                messages: vec![Message::user("x")],
                grading: Grading::Refusal { should_refuse: true },
            }),
        }
    }

    #[test]
    fn shipped_suites_parse_and_select_registered_benchmarks() {
        for (name, _) in BUILTIN_SUITES {
            let suite = Suite::load(name).unwrap_or_else(|err| panic!("{name}: {err}"));
            let selected = suite.select().unwrap_or_else(|err| panic!("{name}: {err}"));
            assert!(!selected.is_empty(), "{name}");
        }
        let ood = Suite::load("ood").map(|s| s.select().map(|v| v.len()));
        assert!(matches!(ood, Ok(Ok(n)) if n >= 50), "{ood:?}");
    }

    #[test]
    fn bad_suites_name_the_problem() {
        let err = Suite::parse("name = \"x\"\n[[benchmark]]\nname = \"nope\"\n", "x.toml").err();
        assert!(err.is_some_and(|e| e.to_string().contains("`nope` matches no registered benchmark")));
        let err = Suite::parse("name = \"x\"\n[[benchmark]]\nname = \"gsm8k\"\nsize = 3\n", "x.toml").err();
        assert!(err.is_some_and(|e| e.to_string().starts_with("x.toml:4")), "unknown field reported at its line");
        assert!(Suite::load("no-such-suite").is_err());
    }

    #[test]
    fn stratified_subsets_are_proportional_seeded_and_in_file_order() {
        // 60 of stratum a, 30 of b, 10 of c; n = 10 -> 6, 3, 1.
        let mut items = Vec::new();
        for i in 0..100 {
            items.push(item(
                i,
                if i % 10 < 6 {
                    "a"
                } else if i % 10 < 9 {
                    "b"
                } else {
                    "c"
                },
            ));
        }
        let subset = stratified_subset(items.clone(), 10, 3);
        let count = |s: &str| subset.iter().filter(|i| i.stratum == s).count();
        assert_eq!((count("a"), count("b"), count("c")), (6, 3, 1));
        let ids: Vec<usize> = subset.iter().filter_map(|i| i.id[1..].parse().ok()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "file order kept");
        assert_eq!(subset, stratified_subset(items.clone(), 10, 3), "same seed, same items");
        assert_ne!(subset, stratified_subset(items.clone(), 10, 4), "another seed, other items");
        assert_eq!(stratified_subset(items.clone(), 0, 3).len(), 100);
        // More strata than items: every stratum's share rounds to 0 or 1, and exactly n are kept.
        let many: Vec<OodItem> = (0..50).map(|i| item(i, &format!("s{}", i % 25))).collect();
        assert_eq!(stratified_subset(many, 7, 1).len(), 7);
    }
}
