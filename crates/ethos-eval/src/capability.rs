//! Capability guards: GSM8K test exact match and IFEval instruction following.
//!
//! RL towards traits must not buy its gains with capability; these two benchmarks check that.
//!
//! - **GSM8K** (`gsm8k/test.jsonl`, 1,319 problems): the question in the same prompt as training
//!   ([`gsm8k_prompt`]), scored 1 when the reply's final number equals the gold `#### <number>`
//!   ([`exact_match`]).
//! - **IFEval** (`ifeval/input_data.jsonl`, 541 prompts): the prompt as given; per the paper,
//!   prompt-level strict accuracy is 1 when every instruction passes its strict check, loose when
//!   every instruction passes on at least one of the loose variants of the reply (first or last line
//!   removed, markdown asterisks removed), and instruction-level accuracy counts instructions.
//!
//! Subsets for quick runs are seeded draws without replacement, kept in file order, so the same
//! `(limit, seed)` picks the same items for every policy: paired comparisons across policies line up.

use std::path::{Path, PathBuf};

use ethos_core::records::{ItemScore, SCHEMA_VERSION};
use ethos_grade::verify::gsm8k::{exact_match, extract_answer, gold_answer, gsm8k_prompt};
use ethos_grade::verify::{check_loose, check_strict, parse_ifeval_line, Instruction, VerifyError};
use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::EvalError;

/// A capability benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapabilityBenchmark {
    /// GSM8K test split, exact numeric match.
    Gsm8k,
    /// IFEval, strict and loose.
    Ifeval,
}

impl CapabilityBenchmark {
    /// Every capability benchmark.
    pub const ALL: [CapabilityBenchmark; 2] = [CapabilityBenchmark::Gsm8k, CapabilityBenchmark::Ifeval];

    /// The name on the command line and in records.
    pub fn name(&self) -> &'static str {
        match self {
            CapabilityBenchmark::Gsm8k => "gsm8k",
            CapabilityBenchmark::Ifeval => "ifeval",
        }
    }

    /// The benchmark file under the shared data directory.
    pub fn default_file(&self, data_dir: &Path) -> PathBuf {
        match self {
            CapabilityBenchmark::Gsm8k => data_dir.join("gsm8k").join("test.jsonl"),
            CapabilityBenchmark::Ifeval => data_dir.join("ifeval").join("input_data.jsonl"),
        }
    }

    /// A reply budget that fits the benchmark: GSM8K solutions are short; IFEval asks for essays of
    /// several hundred words.
    pub fn default_max_tokens(&self) -> u32 {
        match self {
            CapabilityBenchmark::Gsm8k => 256,
            CapabilityBenchmark::Ifeval => 512,
        }
    }

    /// Parses a command-line name.
    pub fn parse(name: &str) -> Result<Self, EvalError> {
        Self::ALL.into_iter().find(|b| b.name() == name).ok_or_else(|| {
            let known: Vec<&str> = Self::ALL.iter().map(|b| b.name()).collect();
            EvalError::Data(format!("unknown capability benchmark `{name}` (known: {})", known.join(", ")))
        })
    }
}

/// What decides whether a reply passes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CapabilityCheck {
    /// The gold final number.
    Gsm8k {
        /// Canonical gold number.
        gold: String,
    },
    /// The prompt's verifiable instructions.
    Ifeval {
        /// Instructions with their kwargs.
        instructions: Vec<Instruction>,
    },
}

/// One benchmark item: the user message and its check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapabilityItem {
    /// Stable id (`gsm8k-test-L<line>`, `ifeval-<key>`).
    pub id: String,
    /// The user message.
    pub prompt: String,
    /// The check.
    pub check: CapabilityCheck,
}

/// The verdict on one reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapabilityOutcome {
    /// GSM8K: exact match; IFEval: every instruction passes strictly.
    pub strict: bool,
    /// IFEval: every instruction passes loosely.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loose: Option<bool>,
    /// GSM8K: the number read from the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extracted: Option<String>,
    /// IFEval: per instruction, strict.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instructions_strict: Vec<bool>,
    /// IFEval: per instruction, loose.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instructions_loose: Vec<bool>,
}

/// Loads a benchmark file, keeping `limit` items (0 = all) drawn with `seed`, in file order.
pub fn load_items(
    benchmark: CapabilityBenchmark,
    path: &Path,
    limit: usize,
    seed: u64,
) -> Result<Vec<CapabilityItem>, EvalError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| EvalError::Io { path: path.display().to_string(), source })?;
    let mut items = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let at = |what: String| EvalError::Data(format!("{}:{line_no}: {what}", path.display()));
        items.push(match benchmark {
            CapabilityBenchmark::Gsm8k => {
                #[derive(Deserialize)]
                struct Problem {
                    question: String,
                    answer: String,
                }
                let problem: Problem = serde_json::from_str(line).map_err(|err| at(err.to_string()))?;
                let gold = gold_answer(&problem.answer)
                    .ok_or_else(|| at("field `answer`: no `#### <number>` final answer".to_string()))?;
                CapabilityItem {
                    id: format!("gsm8k-test-L{line_no}"),
                    prompt: gsm8k_prompt(&problem.question),
                    check: CapabilityCheck::Gsm8k { gold },
                }
            }
            CapabilityBenchmark::Ifeval => {
                let (key, prompt, instructions) = parse_ifeval_line(line).map_err(|err| at(err.to_string()))?;
                CapabilityItem { id: format!("ifeval-{key}"), prompt, check: CapabilityCheck::Ifeval { instructions } }
            }
        });
    }
    if items.is_empty() {
        return Err(EvalError::Data(format!("{}: no items", path.display())));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(duplicate) = items.iter().find(|item| !seen.insert(item.id.as_str())) {
        return Err(EvalError::Data(format!("{}: duplicate item id `{}`", path.display(), duplicate.id)));
    }
    Ok(seeded_subset(items, limit, seed))
}

/// `limit` items drawn without replacement with `seed` (all when `limit` is 0 or too large), in their
/// original order.
pub fn seeded_subset<T>(items: Vec<T>, limit: usize, seed: u64) -> Vec<T> {
    if limit == 0 || limit >= items.len() {
        return items;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut keep = vec![false; items.len()];
    for index in sample(&mut rng, items.len(), limit) {
        keep[index] = true;
    }
    items.into_iter().zip(keep).filter_map(|(item, kept)| kept.then_some(item)).collect()
}

/// Scores a reply.
pub fn score_reply(item: &CapabilityItem, reply: &str) -> Result<CapabilityOutcome, EvalError> {
    Ok(match &item.check {
        CapabilityCheck::Gsm8k { gold } => CapabilityOutcome {
            strict: exact_match(reply, gold),
            loose: None,
            extracted: extract_answer(reply),
            instructions_strict: Vec::new(),
            instructions_loose: Vec::new(),
        },
        CapabilityCheck::Ifeval { instructions } => {
            let verdicts = |check: fn(&Instruction, &str, &str) -> Result<bool, VerifyError>| {
                instructions
                    .iter()
                    .map(|instruction| {
                        check(instruction, &item.prompt, reply)
                            .map_err(|err| EvalError::Data(format!("item {}: {}: {err}", item.id, instruction.id)))
                    })
                    .collect::<Result<Vec<bool>, EvalError>>()
            };
            let strict = verdicts(check_strict)?;
            let loose = verdicts(check_loose)?;
            CapabilityOutcome {
                strict: strict.iter().all(|&pass| pass),
                loose: Some(loose.iter().all(|&pass| pass)),
                extracted: None,
                instructions_strict: strict,
                instructions_loose: loose,
            }
        }
    })
}

/// The ItemScore records of one outcome: `gsm8k`, or `ifeval_strict` and `ifeval_loose` (prompt level).
pub fn item_scores(
    item: &CapabilityItem,
    outcome: &CapabilityOutcome,
    policy: &str,
    condition: Option<&str>,
) -> Vec<ItemScore> {
    let record = |benchmark: &str, pass: bool| ItemScore {
        schema_version: SCHEMA_VERSION,
        benchmark: benchmark.to_string(),
        item: item.id.clone(),
        score: Some(if pass { 1.0 } else { 0.0 }),
        refusal: None,
        condition: condition.map(str::to_string),
        model: Some(policy.to_string()),
    };
    match (&item.check, outcome.loose) {
        (CapabilityCheck::Gsm8k { .. }, _) => vec![record("gsm8k", outcome.strict)],
        (CapabilityCheck::Ifeval { .. }, loose) => {
            vec![record("ifeval_strict", outcome.strict), record("ifeval_loose", loose.unwrap_or(false))]
        }
    }
}

/// An accuracy with its 95% percentile-bootstrap interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    /// Fraction passing.
    pub value: f64,
    /// Lower bound of the 95% CI.
    pub ci_low: f64,
    /// Upper bound of the 95% CI.
    pub ci_high: f64,
    /// Number of units (items or instructions).
    pub n: usize,
}

/// Accuracies of a finished run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapabilitySummary {
    /// Benchmark name.
    pub benchmark: String,
    /// GSM8K exact match, or IFEval prompt-level strict accuracy.
    pub accuracy: Accuracy,
    /// IFEval prompt-level loose accuracy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_loose: Option<Accuracy>,
    /// IFEval instruction-level strict accuracy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instruction_strict: Option<Accuracy>,
    /// IFEval instruction-level loose accuracy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instruction_loose: Option<Accuracy>,
}

/// Summarizes outcomes with bootstrap CIs (`seed` fixes the resamples). Instruction-level CIs
/// resample instructions, as the paper reports them; items are not independent there, so read them
/// as rough.
pub fn summarize(
    benchmark: CapabilityBenchmark,
    outcomes: &[CapabilityOutcome],
    seed: u64,
) -> Result<CapabilitySummary, EvalError> {
    let accuracy = |passes: Vec<bool>, purpose: &str| -> Result<Option<Accuracy>, EvalError> {
        if passes.is_empty() {
            return Ok(None);
        }
        let values: Vec<f64> = passes.iter().map(|&pass| if pass { 1.0 } else { 0.0 }).collect();
        let config =
            ethos_stats::bootstrap::BootstrapConfig::new(2000, seed).map_err(|err| EvalError::Run(err.to_string()))?;
        let interval = ethos_stats::bootstrap::bootstrap_mean(&values, &config, ethos_stats::rng::purpose_key(purpose))
            .map_err(|err| EvalError::Run(err.to_string()))?;
        Ok(Some(Accuracy {
            value: values.iter().sum::<f64>() / values.len() as f64,
            ci_low: interval.low,
            ci_high: interval.high,
            n: values.len(),
        }))
    };
    let strict = accuracy(outcomes.iter().map(|o| o.strict).collect(), "capability:accuracy")?
        .ok_or_else(|| EvalError::Run("no scored items to summarize".to_string()))?;
    let (prompt_loose, instruction_strict, instruction_loose) = match benchmark {
        CapabilityBenchmark::Gsm8k => (None, None, None),
        CapabilityBenchmark::Ifeval => (
            accuracy(outcomes.iter().map(|o| o.loose.unwrap_or(false)).collect(), "capability:prompt_loose")?,
            accuracy(
                outcomes.iter().flat_map(|o| o.instructions_strict.iter().copied()).collect(),
                "capability:instruction_strict",
            )?,
            accuracy(
                outcomes.iter().flat_map(|o| o.instructions_loose.iter().copied()).collect(),
                "capability:instruction_loose",
            )?,
        ),
    };
    Ok(CapabilitySummary {
        benchmark: benchmark.name().to_string(),
        accuracy: strict,
        prompt_loose,
        instruction_strict,
        instruction_loose,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(lines: &[&str]) -> tempfile::NamedTempFile {
        use std::io::Write;
        let mut file = tempfile::NamedTempFile::new().unwrap();
        for line in lines {
            writeln!(file, "{line}").unwrap();
        }
        file
    }

    #[test]
    fn gsm8k_items_carry_the_training_prompt_and_gold() {
        let file = write(&[
            "{\"question\": \"Tom has 3 apples and buys 4. How many?\", \"answer\": \"3+4=<<3+4=7>>7\\n#### 7\"}",
            "",
            "{\"question\": \"Half of 1,200?\", \"answer\": \"#### 600\"}",
        ]);
        let items = load_items(CapabilityBenchmark::Gsm8k, file.path(), 0, 0).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].id, "gsm8k-test-L1");
        assert_eq!(items[1].id, "gsm8k-test-L3");
        assert_eq!(items[0].prompt, gsm8k_prompt("Tom has 3 apples and buys 4. How many?"));
        assert_eq!(items[0].check, CapabilityCheck::Gsm8k { gold: "7".into() });
        let right = score_reply(&items[1], "1200 / 2 = 600\n#### 600").unwrap();
        assert!(right.strict);
        assert_eq!(right.extracted.as_deref(), Some("600"));
        assert!(!score_reply(&items[1], "#### 601").unwrap().strict);
        let scores = item_scores(&items[1], &right, "p", None);
        assert_eq!(scores.len(), 1);
        assert_eq!((scores[0].benchmark.as_str(), scores[0].score), ("gsm8k", Some(1.0)));
    }

    #[test]
    fn malformed_files_name_file_line_and_field() {
        let file =
            write(&["{\"question\": \"q\", \"answer\": \"#### 1\"}", r##"{"question": "q", "answer": "no number"}"##]);
        let err = load_items(CapabilityBenchmark::Gsm8k, file.path(), 0, 0).unwrap_err().to_string();
        assert!(err.contains(&format!("{}:2:", file.path().display())) && err.contains("answer"), "{err}");
        let file = write(&[r##"{"key": 1, "prompt": "p", "instruction_id_list": ["punctuation:no_comma"]}"##]);
        let err = load_items(CapabilityBenchmark::Ifeval, file.path(), 0, 0).unwrap_err().to_string();
        assert!(err.contains(":1:") && err.contains("kwargs"), "{err}");
        let file = write(&["{not json"]);
        let err = load_items(CapabilityBenchmark::Ifeval, file.path(), 0, 0).unwrap_err().to_string();
        assert!(err.contains(":1:"), "{err}");
        let err =
            load_items(CapabilityBenchmark::Gsm8k, Path::new("/nonexistent/test.jsonl"), 0, 0).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/test.jsonl"), "{err}");
        assert!(CapabilityBenchmark::parse("mmlu").unwrap_err().to_string().contains("gsm8k, ifeval"));
    }

    #[test]
    fn ifeval_strict_loose_and_instruction_level() {
        let file = write(&[
            r##"{"key": 7, "prompt": "Answer in lowercase without commas.", "instruction_id_list": ["change_case:english_lowercase", "punctuation:no_comma"], "kwargs": [{}, {}]}"##,
        ]);
        let items = load_items(CapabilityBenchmark::Ifeval, file.path(), 0, 0).unwrap();
        assert_eq!(items[0].id, "ifeval-7");
        let both = score_reply(&items[0], "all lowercase and no commas here").unwrap();
        assert!(both.strict && both.loose == Some(true));
        let one = score_reply(&items[0], "all lowercase, with a comma").unwrap();
        assert!(!one.strict);
        assert_eq!(one.instructions_strict, vec![true, false]);
        // A first line in capitals fails strictly but passes loosely (the loose variant drops it).
        let header = score_reply(&items[0], "HEADER\nthe body is lowercase and has no commas").unwrap();
        assert_eq!((header.strict, header.loose), (false, Some(true)));

        let summary = summarize(CapabilityBenchmark::Ifeval, &[both, one, header], 0).unwrap();
        assert!((summary.accuracy.value - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(summary.prompt_loose.as_ref().map(|a| a.value), Some(2.0 / 3.0));
        // Instructions: [T,T], [T,F], [F,T] strictly = 4 of 6.
        let instruction = summary.instruction_strict.unwrap();
        assert_eq!((instruction.n, instruction.value), (6, 4.0 / 6.0));
        assert!(instruction.ci_low <= instruction.value && instruction.value <= instruction.ci_high);
    }

    #[test]
    fn seeded_subsets_are_stable_distinct_and_in_order() {
        let items: Vec<usize> = (0..100).collect();
        let a = seeded_subset(items.clone(), 10, 3);
        assert_eq!(a, seeded_subset(items.clone(), 10, 3));
        assert_ne!(a, seeded_subset(items.clone(), 10, 4));
        assert_eq!(a.len(), 10);
        assert!(a.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(seeded_subset(items.clone(), 0, 3), items);
        assert_eq!(seeded_subset(items.clone(), 500, 3), items);
    }

    #[test]
    fn the_shared_files_load_whole() {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
        if !data.exists() {
            eprintln!("skipping: {} is absent", data.display());
            return;
        }
        let gsm8k = load_items(CapabilityBenchmark::Gsm8k, &CapabilityBenchmark::Gsm8k.default_file(&data), 0, 0);
        assert_eq!(gsm8k.unwrap().len(), 1319);
        let ifeval = load_items(CapabilityBenchmark::Ifeval, &CapabilityBenchmark::Ifeval.default_file(&data), 0, 0);
        let ifeval = ifeval.unwrap();
        assert_eq!(ifeval.len(), 541);
        let n_instructions: usize = ifeval
            .iter()
            .map(|item| match &item.check {
                CapabilityCheck::Ifeval { instructions } => instructions.len(),
                CapabilityCheck::Gsm8k { .. } => 0,
            })
            .sum();
        assert_eq!(n_instructions, 834);
    }
}
