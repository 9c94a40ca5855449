//! Adapters: benchmark files to [`OodItem`]s, in file order, with errors that name the file, the line and the field.
//!
//! Prompt formats follow each benchmark's published use (SOURCES.md), adapted to a chat policy: the text the
//! original put after `Human:` becomes the user turn, and answers are scored as the start of the assistant turn.

use std::collections::HashSet;
use std::path::Path;

use ethos_core::records::{Message, RubricCriterion};
use serde::Deserialize;
use serde_json::Value;

use super::registry::{AdapterKind, Registered};
use super::{ChoiceScoring, ChoiceTask, GenerateTask, Grading, LoadedBenchmark, OodItem, Task};
use crate::capability::{load_items, CapabilityBenchmark};
use crate::EvalError;

/// Settings that change what an adapter produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// Emergent misalignment: replies sampled per paraphrase (the paper samples 100).
    pub samples_per_paraphrase: usize,
    /// Seed of TruthfulQA's binary answer order.
    pub seed: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { samples_per_paraphrase: 1, seed: 0 }
    }
}

fn data_error(path: &Path, line: Option<usize>, message: impl std::fmt::Display) -> EvalError {
    match line {
        Some(line) => EvalError::Data(format!("{}:{line}: {message}", path.display())),
        None => EvalError::Data(format!("{}: {message}", path.display())),
    }
}

fn read_text(path: &Path) -> Result<String, EvalError> {
    std::fs::read_to_string(path).map_err(|source| EvalError::Io { path: path.display().to_string(), source })
}

/// Loads the benchmark `registered` from the shared data directory.
pub fn load_benchmark(
    registered: &Registered,
    data_dir: &Path,
    options: &LoadOptions,
) -> Result<LoadedBenchmark, EvalError> {
    let path = data_dir.join(&registered.info.file);
    let items = load_file(registered.adapter, &path, options)?;
    if items.is_empty() {
        return Err(data_error(&path, None, format!("no items for benchmark `{}`", registered.info.name)));
    }
    let mut seen = HashSet::new();
    if let Some(duplicate) = items.iter().find(|item| !seen.insert(item.id.as_str())) {
        return Err(data_error(&path, None, format!("duplicate item id `{}`", duplicate.id)));
    }
    Ok(LoadedBenchmark { info: registered.info.clone(), items })
}

/// Reads one file with the given adapter.
pub fn load_file(adapter: AdapterKind, path: &Path, options: &LoadOptions) -> Result<Vec<OodItem>, EvalError> {
    use AdapterKind as A;
    match adapter {
        A::AnthropicAiRisk | A::AnthropicPersona => anthropic(path),
        A::Sycophancy => sycophancy(path),
        A::TruthfulQaBinary => truthfulqa_binary(path, options.seed),
        A::TruthfulQaMc1 | A::TruthfulQaMc2 => truthfulqa_mc(path, adapter == A::TruthfulQaMc2),
        A::EmergentMisalignment => emergent_misalignment(path, options.samples_per_paraphrase),
        A::HealthBench => healthbench(path),
        A::StrongReject => strongreject(path),
        A::XsTestSafe | A::XsTestUnsafe => xstest(path, adapter == A::XsTestUnsafe),
        A::SimpleSafetyTests => simple_safety_tests(path),
        A::HarmBench => harmbench(path),
        A::SimpleQa => simpleqa(path),
        A::Gsm8k | A::IfEval => {
            let benchmark = if adapter == A::Gsm8k { CapabilityBenchmark::Gsm8k } else { CapabilityBenchmark::Ifeval };
            Ok(load_items(benchmark, path, 0, 0)?
                .into_iter()
                .map(|item| OodItem {
                    id: item.id,
                    stratum: String::new(),
                    task: Task::Generate(GenerateTask {
                        messages: vec![Message::user(item.prompt)],
                        grading: Grading::Capability { check: item.check },
                    }),
                })
                .collect())
        }
    }
}

/// Non-empty JSONL lines with their 1-based numbers, parsed as JSON values.
fn jsonl_values(path: &Path) -> Result<Vec<(usize, Value)>, EvalError> {
    let text = read_text(path)?;
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line).map_err(|err| data_error(path, Some(index + 1), err))?;
        out.push((index + 1, value));
    }
    Ok(out)
}

fn string_field<'a>(value: &'a Value, field: &str, path: &Path, line: usize) -> Result<&'a str, EvalError> {
    value
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| data_error(path, Some(line), format!("field `{field}`: missing or not a string")))
}

/// A string answer or a list of string answers (some Anthropic files list several non-matching answers).
fn answers(value: &Value, field: &str, path: &Path, line: usize) -> Result<Vec<String>, EvalError> {
    let bad = || data_error(path, Some(line), format!("field `{field}`: expected a string or a list of strings"));
    match value.get(field) {
        Some(Value::String(s)) => Ok(vec![s.trim().to_string()]),
        Some(Value::Array(list)) if !list.is_empty() => {
            list.iter().map(|v| v.as_str().map(|s| s.trim().to_string()).ok_or_else(bad)).collect()
        }
        _ => Err(bad()),
    }
}

/// Anthropic advanced-ai-risk and persona files: the question as the user turn; raw score = probability of the
/// answer matching the behaviour among the listed answers.
fn anthropic(path: &Path) -> Result<Vec<OodItem>, EvalError> {
    let mut items = Vec::new();
    for (line, value) in jsonl_values(path)? {
        let question = string_field(&value, "question", path, line)?;
        let mut options = answers(&value, "answer_matching_behavior", path, line)?;
        options.truncate(1);
        options.extend(answers(&value, "answer_not_matching_behavior", path, line)?);
        if options.iter().skip(1).any(|o| *o == options[0]) {
            return Err(data_error(path, Some(line), "the matching answer is also listed as not matching"));
        }
        items.push(OodItem {
            id: format!("L{line}"),
            stratum: String::new(),
            task: Task::Choice(ChoiceTask {
                messages: vec![Message::user(question.trim())],
                options,
                scoring: ChoiceScoring::Probability { target: 0 },
            }),
        });
    }
    Ok(items)
}

const LLAMA_USER_PREFIX: &str = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n";
const LLAMA_ASSISTANT_SUFFIX: &str = "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";

/// The original question inside the subset's Llama-3 chat wrapping (SOURCES.md §2).
pub fn unwrap_llama_prompt(prompt: &str) -> Option<&str> {
    prompt.strip_prefix(LLAMA_USER_PREFIX)?.strip_suffix(LLAMA_ASSISTANT_SUFFIX)
}

/// The sycophancy subset: the biased prompt (with the user's biography); raw score = probability of the answer
/// matching the user's view.
fn sycophancy(path: &Path) -> Result<Vec<OodItem>, EvalError> {
    let mut items = Vec::new();
    for (line, value) in jsonl_values(path)? {
        let biased = string_field(&value, "biased_prompt", path, line)?;
        let question = unwrap_llama_prompt(biased).ok_or_else(|| {
            data_error(path, Some(line), "field `biased_prompt`: not wrapped in the Llama-3 user/assistant tokens")
        })?;
        let sycophantic = string_field(&value, "sycophantic_target", path, line)?.trim().to_string();
        let honest = string_field(&value, "honest_target", path, line)?.trim().to_string();
        if sycophantic == honest {
            return Err(data_error(path, Some(line), "sycophantic_target equals honest_target"));
        }
        let id = match value.get("sample_id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => format!("L{line}"),
        };
        let stratum = value.pointer("/metadata/category").and_then(Value::as_str).unwrap_or_default().to_string();
        items.push(OodItem {
            id,
            stratum,
            task: Task::Choice(ChoiceTask {
                messages: vec![Message::user(question.trim())],
                options: vec![sycophantic, honest],
                scoring: ChoiceScoring::Probability { target: 0 },
            }),
        });
    }
    Ok(items)
}

/// Rows of a CSV file as header-keyed records with their 1-based line numbers; a UTF-8 BOM is dropped.
fn csv_rows(path: &Path, required: &[&str]) -> Result<Vec<(usize, csv::StringRecord, Vec<usize>)>, EvalError> {
    let text = read_text(path)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|err| data_error(path, Some(1), err))?.clone();
    let mut columns = Vec::new();
    for name in required {
        let index = headers
            .iter()
            .position(|h| h.trim() == *name)
            .ok_or_else(|| data_error(path, Some(1), format!("missing column `{name}`")))?;
        columns.push(index);
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|err| {
            let line = err.position().map(|p| p.line() as usize);
            data_error(path, line, err)
        })?;
        let line = record.position().map(|p| p.line() as usize).unwrap_or(0);
        rows.push((line, record, columns.clone()));
    }
    Ok(rows)
}

fn column<'a>(
    path: &Path,
    line: usize,
    record: &'a csv::StringRecord,
    index: usize,
    name: &str,
) -> Result<&'a str, EvalError> {
    match record.get(index).map(str::trim) {
        Some(text) if !text.is_empty() => Ok(text),
        _ => Err(data_error(path, Some(line), format!("column `{name}` is empty"))),
    }
}

/// A deterministic coin per item, so the binary task's answer order is the same for every policy.
fn coin(seed: u64, key: &str) -> bool {
    // Mixed with the seed and finalized (splitmix64) so that the top bit is well spread.
    let mut z = super::fnv1a(key) ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) >> 63 == 1
}

/// TruthfulQA's binary task (the authors' recommended MC): best answer vs best incorrect answer as (A)/(B) in a
/// seeded order; raw score = 1 when the correct letter is the more likely.
fn truthfulqa_binary(path: &Path, seed: u64) -> Result<Vec<OodItem>, EvalError> {
    let names = ["Category", "Question", "Best Answer", "Best Incorrect Answer"];
    let mut items = Vec::new();
    for (line, record, cols) in csv_rows(path, &names)? {
        let category = column(path, line, &record, cols[0], names[0])?;
        let question = column(path, line, &record, cols[1], names[1])?;
        let best = column(path, line, &record, cols[2], names[2])?;
        let incorrect = column(path, line, &record, cols[3], names[3])?;
        let correct_first = coin(seed, question);
        let (a, b) = if correct_first { (best, incorrect) } else { (incorrect, best) };
        let prompt = format!("{question}\n\n(A) {a}\n(B) {b}\n\nAnswer with (A) or (B).");
        items.push(OodItem {
            id: format!("L{line}"),
            stratum: category.to_string(),
            task: Task::Choice(ChoiceTask {
                messages: vec![Message::user(prompt)],
                options: vec!["(A)".to_string(), "(B)".to_string()],
                scoring: ChoiceScoring::Argmax { correct: if correct_first { 0 } else { 1 } },
            }),
        });
    }
    Ok(items)
}

/// TruthfulQA MC1 (argmax over answers with exactly one true) or MC2 (normalized mass on the true answers),
/// from `mc_task.json`; each answer is scored by its total log-probability as the assistant's reply.
fn truthfulqa_mc(path: &Path, mc2: bool) -> Result<Vec<OodItem>, EvalError> {
    #[derive(Deserialize)]
    struct Record {
        question: String,
        mc1_targets: serde_json::Map<String, Value>,
        mc2_targets: serde_json::Map<String, Value>,
    }
    let text = read_text(path)?;
    let records: Vec<Record> = serde_json::from_str(&text).map_err(|err| {
        data_error(path, Some(err.line()), format!("{err} (expected a list of {{question, mc1_targets, mc2_targets}})"))
    })?;
    let mut items = Vec::new();
    for (index, record) in records.into_iter().enumerate() {
        let field = if mc2 { "mc2_targets" } else { "mc1_targets" };
        let targets = if mc2 { &record.mc2_targets } else { &record.mc1_targets };
        let mut options = Vec::new();
        let mut truth = Vec::new();
        for (answer, label) in targets {
            let label = label.as_u64().filter(|l| *l <= 1).ok_or_else(|| {
                data_error(path, None, format!("record {index}: field `{field}`: label of `{answer}` is not 0 or 1"))
            })?;
            options.push(answer.clone());
            truth.push(label == 1);
        }
        let n_true = truth.iter().filter(|t| **t).count();
        if options.len() < 2 || n_true == 0 || (!mc2 && n_true != 1) {
            return Err(data_error(
                path,
                None,
                format!(
                    "record {index}: field `{field}`: needs 2+ answers and {} true",
                    if mc2 { "1+" } else { "exactly 1" }
                ),
            ));
        }
        let scoring = if mc2 {
            ChoiceScoring::TrueMass { truth }
        } else {
            ChoiceScoring::Argmax { correct: truth.iter().position(|t| *t).unwrap_or(0) }
        };
        items.push(OodItem {
            id: format!("q{index}"),
            stratum: String::new(),
            task: Task::Choice(ChoiceTask { messages: vec![Message::user(record.question)], options, scoring }),
        });
    }
    Ok(items)
}

/// Emergent-misalignment question files: every `free_form_judge_0_100` entry, one item per paraphrase and sample,
/// with the entry's own `aligned` / `coherent` judge prompts and system prompt.
fn emergent_misalignment(path: &Path, samples: usize) -> Result<Vec<OodItem>, EvalError> {
    #[derive(Deserialize)]
    struct JudgePrompts {
        aligned: Option<String>,
        coherent: Option<String>,
    }
    #[derive(Deserialize)]
    struct Entry {
        id: String,
        #[serde(rename = "type")]
        kind: String,
        paraphrases: Vec<String>,
        judge_prompts: Option<JudgePrompts>,
        system: Option<String>,
    }
    let text = read_text(path)?;
    let entries: Vec<Entry> = serde_norway::from_str(&text).map_err(|err| {
        let line = err.location().map(|l| l.line());
        data_error(path, line, err)
    })?;
    // Entries written without judge prompts (the template variants) use the file's first aligned/coherent pair,
    // which is what the YAML anchor `*judge_prompts` shares among the other entries.
    let default_prompts = entries
        .iter()
        .find_map(|e| e.judge_prompts.as_ref().and_then(|p| Some((p.aligned.clone()?, p.coherent.clone()?))));
    let mut items = Vec::new();
    for entry in entries.iter().filter(|e| e.kind == "free_form_judge_0_100") {
        let (aligned, coherent) =
            match entry.judge_prompts.as_ref().and_then(|p| Some((p.aligned.clone()?, p.coherent.clone()?))) {
                Some(pair) => pair,
                None => default_prompts.clone().ok_or_else(|| {
                    data_error(
                        path,
                        None,
                        format!("entry `{}`: no `judge_prompts` with `aligned` and `coherent`", entry.id),
                    )
                })?,
            };
        for template in [&aligned, &coherent] {
            if !template.contains("{question}") || !template.contains("{answer}") {
                return Err(data_error(
                    path,
                    None,
                    format!("entry `{}`: judge prompt lacks `{{question}}` or `{{answer}}`", entry.id),
                ));
            }
        }
        for (p, question) in entry.paraphrases.iter().enumerate() {
            for s in 0..samples.max(1) {
                let mut messages = Vec::new();
                if let Some(system) = &entry.system {
                    messages.push(Message::system(system.clone()));
                }
                messages.push(Message::user(question.clone()));
                items.push(OodItem {
                    id: format!("{}#p{p}#s{s}", entry.id),
                    stratum: entry.id.clone(),
                    task: Task::Generate(GenerateTask {
                        messages,
                        grading: Grading::Misalignment {
                            question: question.clone(),
                            aligned_prompt: aligned.clone(),
                            coherent_prompt: coherent.clone(),
                        },
                    }),
                });
            }
        }
    }
    Ok(items)
}

/// HealthBench: a JSONL file of records or a directory of one-record JSON files (the oss examples), graded with
/// their physician rubrics.
fn healthbench(path: &Path) -> Result<Vec<OodItem>, EvalError> {
    let mut records: Vec<(String, Option<usize>, Value)> = Vec::new();
    if path.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(path)
            .map_err(|source| EvalError::Io { path: path.display().to_string(), source })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        // Numeric order of `..._example_{n}.json`, so item order does not depend on the file system.
        files.sort_by_key(|p| {
            let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let n: u64 = stem.rsplit('_').next().and_then(|n| n.parse().ok()).unwrap_or(u64::MAX);
            (n, stem)
        });
        for file in files {
            let text = read_text(&file)?;
            let value: Value = serde_json::from_str(&text).map_err(|err| data_error(&file, Some(err.line()), err))?;
            records.push((file.display().to_string(), None, value));
        }
    } else {
        for (line, value) in jsonl_values(path)? {
            records.push((path.display().to_string(), Some(line), value));
        }
    }
    let mut items = Vec::new();
    for (file, line, value) in records {
        let file = Path::new(&file);
        let at = |message: String| data_error(file, line, message);
        let id =
            value.get("prompt_id").and_then(Value::as_str).ok_or_else(|| at("field `prompt_id`: missing".into()))?;
        let prompt =
            value.get("prompt").and_then(Value::as_array).ok_or_else(|| at("field `prompt`: not a list".into()))?;
        let mut messages = Vec::new();
        for (turn, message) in prompt.iter().enumerate() {
            let message: Message =
                serde_json::from_value(message.clone()).map_err(|err| at(format!("field `prompt[{turn}]`: {err}")))?;
            messages.push(message);
        }
        let rubrics =
            value.get("rubrics").and_then(Value::as_array).ok_or_else(|| at("field `rubrics`: not a list".into()))?;
        let mut criteria = Vec::new();
        for (index, rubric) in rubrics.iter().enumerate() {
            let criterion = rubric
                .get("criterion")
                .and_then(Value::as_str)
                .ok_or_else(|| at(format!("field `rubrics[{index}].criterion`: missing")))?;
            let points = rubric
                .get("points")
                .and_then(Value::as_f64)
                .filter(|p| p.is_finite())
                .ok_or_else(|| at(format!("field `rubrics[{index}].points`: missing or not a number")))?;
            criteria.push(RubricCriterion { id: format!("r{index}"), criterion: criterion.to_string(), points });
        }
        if !criteria.iter().any(|c| c.points > 0.0) {
            return Err(at("field `rubrics`: no item with positive points".into()));
        }
        let theme = value
            .get("example_tags")
            .and_then(Value::as_array)
            .and_then(|tags| tags.iter().filter_map(Value::as_str).find_map(|t| t.strip_prefix("theme:")))
            .unwrap_or_default();
        items.push(OodItem {
            id: id.to_string(),
            stratum: theme.to_string(),
            task: Task::Generate(GenerateTask { messages, grading: Grading::Rubric { criteria } }),
        });
    }
    Ok(items)
}

fn refusal_item(id: String, stratum: &str, prompt: &str, should_refuse: bool) -> OodItem {
    OodItem {
        id,
        stratum: stratum.to_string(),
        task: Task::Generate(GenerateTask {
            messages: vec![Message::user(prompt)],
            grading: Grading::Refusal { should_refuse },
        }),
    }
}

/// StrongREJECT: the forbidden prompt as the user turn, scored by the rubric judge.
fn strongreject(path: &Path) -> Result<Vec<OodItem>, EvalError> {
    let names = ["category", "forbidden_prompt"];
    let mut items = Vec::new();
    for (line, record, cols) in csv_rows(path, &names)? {
        let category = column(path, line, &record, cols[0], names[0])?;
        let prompt = column(path, line, &record, cols[1], names[1])?;
        items.push(OodItem {
            id: format!("L{line}"),
            stratum: category.to_string(),
            task: Task::Generate(GenerateTask {
                messages: vec![Message::user(prompt)],
                grading: Grading::StrongReject { forbidden_prompt: prompt.to_string() },
            }),
        });
    }
    Ok(items)
}

/// XSTest: the safe prompts (should be answered) or the unsafe contrast prompts (should be refused).
fn xstest(path: &Path, unsafe_prompts: bool) -> Result<Vec<OodItem>, EvalError> {
    let names = ["id", "prompt", "type", "label"];
    let mut items = Vec::new();
    for (line, record, cols) in csv_rows(path, &names)? {
        let id = column(path, line, &record, cols[0], names[0])?;
        let prompt = column(path, line, &record, cols[1], names[1])?;
        let kind = column(path, line, &record, cols[2], names[2])?;
        let label = column(path, line, &record, cols[3], names[3])?;
        let is_unsafe = match label {
            "safe" => false,
            "unsafe" => true,
            other => {
                return Err(data_error(path, Some(line), format!("column `label`: `{other}` is not safe or unsafe")))
            }
        };
        if is_unsafe == unsafe_prompts {
            items.push(refusal_item(format!("xstest-{id}"), kind, prompt, is_unsafe));
        }
    }
    Ok(items)
}

/// SimpleSafetyTests: every prompt should be refused or redirected.
fn simple_safety_tests(path: &Path) -> Result<Vec<OodItem>, EvalError> {
    let names = ["id", "harm_area", "prompts_final"];
    let mut items = Vec::new();
    for (line, record, cols) in csv_rows(path, &names)? {
        let id = column(path, line, &record, cols[0], names[0])?;
        let area = column(path, line, &record, cols[1], names[1])?;
        let prompt = column(path, line, &record, cols[2], names[2])?;
        items.push(refusal_item(id.to_string(), area, prompt, true));
    }
    Ok(items)
}

/// HarmBench: the `standard` behaviours (contextual and copyright rows are left out, as SOURCES.md advises).
fn harmbench(path: &Path) -> Result<Vec<OodItem>, EvalError> {
    let names = ["Behavior", "FunctionalCategory", "SemanticCategory", "BehaviorID"];
    let mut items = Vec::new();
    for (line, record, cols) in csv_rows(path, &names)? {
        if column(path, line, &record, cols[1], names[1])? != "standard" {
            continue;
        }
        let behavior = column(path, line, &record, cols[0], names[0])?;
        let semantic = column(path, line, &record, cols[2], names[2])?;
        let id = column(path, line, &record, cols[3], names[3])?;
        items.push(refusal_item(id.to_string(), semantic, behavior, true));
    }
    Ok(items)
}

/// The `'topic': '...'` entry of SimpleQA's Python-dict metadata string.
fn simpleqa_topic(metadata: &str) -> &str {
    metadata
        .split_once("'topic': '")
        .and_then(|(_, rest)| rest.split_once('\''))
        .map(|(topic, _)| topic)
        .unwrap_or_default()
}

/// SimpleQA: the problem as the user turn, graded against the gold answer.
fn simpleqa(path: &Path) -> Result<Vec<OodItem>, EvalError> {
    let names = ["metadata", "problem", "answer"];
    let mut items = Vec::new();
    for (line, record, cols) in csv_rows(path, &names)? {
        let metadata = record.get(cols[0]).unwrap_or_default();
        let problem = column(path, line, &record, cols[1], names[1])?;
        let answer = column(path, line, &record, cols[2], names[2])?;
        items.push(OodItem {
            id: format!("L{line}"),
            stratum: simpleqa_topic(metadata).to_string(),
            task: Task::Generate(GenerateTask {
                messages: vec![Message::user(problem)],
                grading: Grading::SimpleQa { question: problem.to_string(), target: answer.to_string() },
            }),
        });
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_wrapping_is_removed_exactly() {
        let wrapped = format!("{LLAMA_USER_PREFIX}Question?\n (A) x\n (B) y\n\nAnswer:{LLAMA_ASSISTANT_SUFFIX}");
        assert_eq!(unwrap_llama_prompt(&wrapped), Some("Question?\n (A) x\n (B) y\n\nAnswer:"));
        assert_eq!(unwrap_llama_prompt("plain"), None);
    }

    #[test]
    fn simpleqa_topic_is_read_from_the_python_dict() {
        let meta = "{'topic': 'Science and technology', 'answer_type': 'Person', 'urls': []}";
        assert_eq!(simpleqa_topic(meta), "Science and technology");
        assert_eq!(simpleqa_topic("{}"), "");
    }

    #[test]
    fn the_binary_order_coin_is_stable_and_balanced() {
        assert_eq!(coin(0, "What happens?"), coin(0, "What happens?"));
        let heads = (0..1000).filter(|i| coin(7, &format!("question {i}"))).count();
        assert!((400..600).contains(&heads), "{heads} of 1000");
    }
}
