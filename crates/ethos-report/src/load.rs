//! Reading run directories: `manifest.json`, `item_scores.jsonl` and the optional `summary.json`.
//!
//! The manifest and item scores are required and strict: a malformed line is an error naming the file and the
//! line. `summary.json` only adds labels (category, orientation, metric), so it is read leniently: unknown
//! fields are ignored, missing ones default, and a summary of another shape (the trait and capability runs
//! write their own) is skipped with a warning instead of failing the report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ethos_core::io::{read_jsonl, ReadOptions};
use ethos_core::records::{ItemScore, Refusal};
use ethos_core::{RecordError, RecordErrorKind};
use serde::{Deserialize, Serialize};

use crate::ReportError;

/// The condition of the standard prompt (records without a `condition` field).
pub const STANDARD_CONDITION: &str = "none";

/// Which evaluation command produced a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// `eval traits`: the held-out trait suite, one benchmark per trait.
    Traits,
    /// `eval run`: the out-of-distribution benchmark suite.
    Suite,
    /// `eval capability`: GSM8K / IFEval capability guards.
    Capability,
    /// Any other command.
    Other,
}

impl RunKind {
    /// The kind of a manifest's `command`.
    pub fn from_command(command: &str) -> Self {
        match command {
            "eval traits" => RunKind::Traits,
            "eval run" => RunKind::Suite,
            "eval capability" => RunKind::Capability,
            _ => RunKind::Other,
        }
    }
}

/// What kind of system prompt a condition is, from its id (`harmful_*`, `helpful_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConditionKind {
    /// The standard prompt (`none`).
    Standard,
    /// A persona that steers away from beneficial behaviour.
    Harmful,
    /// A persona that steers towards it.
    Helpful,
    /// Any other condition.
    Other,
}

impl ConditionKind {
    /// The kind of a condition id.
    pub fn of(condition: &str) -> Self {
        if condition == STANDARD_CONDITION {
            ConditionKind::Standard
        } else if condition.starts_with("harmful_") {
            ConditionKind::Harmful
        } else if condition.starts_with("helpful_") {
            ConditionKind::Helpful
        } else {
            ConditionKind::Other
        }
    }
}

/// Labels of one benchmark from a run's `summary.json` (every field optional).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct SummaryBenchmark {
    /// Benchmark name, as in `item_scores.jsonl`.
    pub benchmark: String,
    /// Category (`deception`, `honesty`, ..., `capability`).
    pub category: Option<String>,
    /// `higher_better` or `lower_better` (of the raw metric; item scores are already oriented).
    pub orientation: Option<String>,
    /// `multiple_choice`, `free_form_judge`, `rubric`, `refusal`, ...
    pub format: Option<String>,
    /// Name of the benchmark's published metric.
    pub metric: Option<String>,
    /// The published metric before orientation.
    pub raw: Option<f64>,
    /// Refusal rate reported by the suite.
    pub refusal_rate: Option<f64>,
}

/// The parts of a manifest the report uses. Read leniently (only `command` is required) so that runs written by
/// other tools, or by older ethos versions, still load.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
struct ManifestFields {
    command: Option<String>,
    config: serde_json::Value,
    models: BTreeMap<String, ModelFields>,
    seeds: BTreeMap<String, serde_json::Value>,
    git_revision: Option<String>,
    git_dirty: Option<bool>,
    created_at: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
struct ModelFields {
    spec: Option<String>,
    identity: Option<String>,
}

/// The manifest of a run, as the report shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunManifestInfo {
    /// The run directory as given.
    pub path: String,
    /// The command that produced the run.
    pub command: String,
    /// Kind of the command.
    pub kind: RunKind,
    /// Policy spec.
    pub policy: String,
    /// Identity of the policy's weights, when recorded.
    pub policy_identity: Option<String>,
    /// Judge spec, when the run used one.
    pub judge: Option<String>,
    /// Condition of the run (`none` for the standard prompt).
    pub condition: String,
    /// Suite name of `eval run` runs.
    pub suite: Option<String>,
    /// Seeds by name, as recorded (numbers or strings).
    pub seeds: BTreeMap<String, serde_json::Value>,
    /// Source revision.
    pub git_revision: Option<String>,
    /// Whether the source tree had uncommitted changes.
    pub git_dirty: Option<bool>,
    /// When the run started.
    pub created_at: Option<String>,
    /// Number of item-score records.
    pub n_records: usize,
    /// Number of records with a null score.
    pub n_unscored: usize,
}

/// One item-score record of a run, with its resolved condition.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreRecord {
    /// 1-based line in `item_scores.jsonl`.
    pub line: u64,
    /// Benchmark name.
    pub benchmark: String,
    /// Item id.
    pub item: String,
    /// Oriented score, `None` when unscored.
    pub score: Option<f64>,
    /// Refusal label, when classified.
    pub refusal: Option<Refusal>,
    /// The record's condition, or the run's when the record has none.
    pub condition: String,
}

/// A loaded run directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// The directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: RunManifestInfo,
    /// Labels from `summary.json`, by benchmark.
    pub summary: BTreeMap<String, SummaryBenchmark>,
    /// The item scores, in file order.
    pub records: Vec<ScoreRecord>,
    /// Problems that did not stop loading (an unreadable summary).
    pub warnings: Vec<String>,
}

/// Reads one run directory.
pub fn load_run(dir: &Path) -> Result<Run, ReportError> {
    if !dir.is_dir() {
        return Err(ReportError::input(dir, "not a run directory (expected manifest.json and item_scores.jsonl)"));
    }
    let manifest_path = dir.join("manifest.json");
    let manifest = read_manifest(&manifest_path)?;
    let mut warnings = Vec::new();
    let summary = read_summary(&dir.join("summary.json"), &mut warnings);
    let scores_path = dir.join("item_scores.jsonl");
    let outcome = read_jsonl::<ItemScore>(&scores_path, ReadOptions { skip_invalid: false, allow_empty: true })?;
    if outcome.records.is_empty() {
        warnings.push(format!("{}: no item scores", scores_path.display()));
    }
    let kind = RunKind::from_command(manifest.command.as_deref().unwrap_or_default());
    let policy = policy_spec(&manifest).ok_or_else(|| {
        RecordError::in_file(
            RecordErrorKind::MissingField,
            &manifest_path,
            "no policy: expected `config.policy` or `models.policy.spec`",
        )
    })?;
    let condition = config_string(&manifest.config, "condition").unwrap_or_else(|| STANDARD_CONDITION.to_string());
    let mut records = Vec::with_capacity(outcome.records.len());
    let mut first_lines: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    for (line, record) in outcome.records {
        if let Some(score) = record.score {
            if !score.is_finite() {
                return Err(RecordError::at_line(
                    RecordErrorKind::InvalidValue,
                    &scores_path,
                    line,
                    Some("score".into()),
                    format!("score {score} is not finite; use null for an unscored item"),
                )
                .into());
            }
        }
        let record_condition = record.condition.clone().unwrap_or_else(|| condition.clone());
        let key = (record_condition.clone(), record.benchmark.clone(), record.item.clone());
        if let Some(first_line) = first_lines.insert(key, line) {
            return Err(RecordError::at_line(
                RecordErrorKind::Duplicate,
                &scores_path,
                line,
                Some("item".into()),
                format!(
                    "item `{}` of benchmark `{}` (condition `{record_condition}`) already appeared on line {first_line}",
                    record.item, record.benchmark
                ),
            )
            .into());
        }
        records.push(ScoreRecord {
            line,
            benchmark: record.benchmark,
            item: record.item,
            score: record.score,
            refusal: record.refusal,
            condition: record_condition,
        });
    }
    let judge = manifest
        .models
        .get("judge")
        .and_then(|model| model.spec.clone())
        .or_else(|| config_string(&manifest.config, "judge"));
    let info = RunManifestInfo {
        path: dir.display().to_string(),
        command: manifest.command.clone().unwrap_or_default(),
        kind,
        policy,
        policy_identity: manifest.models.get("policy").and_then(|model| model.identity.clone()),
        judge,
        condition,
        suite: config_string(&manifest.config, "suite"),
        seeds: manifest.seeds.clone(),
        git_revision: manifest.git_revision.clone(),
        git_dirty: manifest.git_dirty,
        created_at: manifest.created_at.clone(),
        n_records: records.len(),
        n_unscored: records.iter().filter(|record| record.score.is_none()).count(),
    };
    Ok(Run { dir: dir.to_path_buf(), manifest: info, summary, records, warnings })
}

fn read_manifest(path: &Path) -> Result<ManifestFields, RecordError> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| RecordError::in_file(RecordErrorKind::Io, path, format!("cannot read the manifest: {err}")))?;
    let manifest: ManifestFields = serde_json::from_str(&text).map_err(|err| json_error(path, &err))?;
    if manifest.command.is_none() {
        return Err(RecordError::at_line(
            RecordErrorKind::MissingField,
            path,
            1,
            Some("command".into()),
            "missing field `command`",
        ));
    }
    Ok(manifest)
}

/// A serde_json error as a record error at its line (serde_json counts lines of the whole document).
fn json_error(path: &Path, err: &serde_json::Error) -> RecordError {
    let kind = match err.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => RecordErrorKind::Syntax,
        serde_json::error::Category::Io => RecordErrorKind::Io,
        serde_json::error::Category::Data => RecordErrorKind::InvalidValue,
    };
    let mut message = err.to_string();
    if let Some(index) = message.find(" at line ") {
        message.truncate(index);
    }
    RecordError::at_line(kind, path, err.line().max(1) as u64, None, message)
}

/// Reads the per-benchmark labels of an `eval run` summary. A missing file is normal; an unreadable or
/// differently shaped one is skipped with a warning, entry by entry where possible.
fn read_summary(path: &Path, warnings: &mut Vec<String>) -> BTreeMap<String, SummaryBenchmark> {
    let mut labels = BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return labels;
    };
    let value: serde_json::Value = match serde_json::from_str(&text) {
        Ok(value) => value,
        Err(err) => {
            warnings.push(format!("{}: ignored ({})", path.display(), json_error(path, &err)));
            return labels;
        }
    };
    let Some(benchmarks) = value.get("benchmarks") else {
        return labels;
    };
    let Some(entries) = benchmarks.as_array() else {
        warnings.push(format!("{}: `benchmarks` is not an array; labels ignored", path.display()));
        return labels;
    };
    for (entry_idx, entry) in entries.iter().enumerate() {
        match serde_json::from_value::<SummaryBenchmark>(entry.clone()) {
            Ok(benchmark) if !benchmark.benchmark.is_empty() => {
                labels.insert(benchmark.benchmark.clone(), benchmark);
            }
            Ok(_) => warnings.push(format!("{}: benchmarks[{entry_idx}] has no name; ignored", path.display())),
            Err(err) => warnings.push(format!("{}: benchmarks[{entry_idx}] ignored: {err}", path.display())),
        }
    }
    labels
}

fn config_string(config: &serde_json::Value, key: &str) -> Option<String> {
    config.get(key).and_then(serde_json::Value::as_str).map(str::to_string)
}

fn policy_spec(manifest: &ManifestFields) -> Option<String> {
    config_string(&manifest.config, "policy").or_else(|| manifest.models.get("policy").and_then(|m| m.spec.clone()))
}

/// A short, readable name for a policy spec, for figure labels (full specs are listed in the page):
/// `embedded:gemma-3-270m+adapter=runs/x/trait/adapter.safetensors` -> `gemma-3-270m+trait`,
/// `openai:http://host/v1#model` -> `model`.
pub fn short_policy_label(spec: &str) -> String {
    let body = spec.split_once(':').map_or(spec, |(_, rest)| rest);
    let body = body.rsplit_once('#').map_or(body, |(_, model)| model);
    let Some((base, adapter)) = body.split_once("+adapter=") else {
        return body.to_string();
    };
    let adapter_path = Path::new(adapter);
    let stem = adapter_path.file_stem().and_then(|stem| stem.to_str()).unwrap_or(adapter);
    // Trainers name every adapter `adapter.safetensors`; the run directory is the informative part.
    let name = if stem == "adapter" {
        adapter_path.parent().and_then(Path::file_name).and_then(|name| name.to_str()).unwrap_or(stem)
    } else {
        stem
    };
    format!("{base}+{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_label(spec: &str, expect: &str) {
        assert_eq!(short_policy_label(spec), expect, "label of {spec}");
    }

    #[test]
    fn policy_labels() {
        check_label("embedded:gemma-3-270m", "gemma-3-270m");
        check_label("embedded:ethos-warmstart", "ethos-warmstart");
        check_label(
            "embedded:gemma-3-270m+adapter=/work/runs/miniature/trait/adapter.safetensors",
            "gemma-3-270m+trait",
        );
        check_label("embedded:gemma-3-270m+adapter=harmful.safetensors", "gemma-3-270m+harmful");
        check_label("openai:http://localhost:8000/v1#qwen3-8b", "qwen3-8b");
        check_label("plain", "plain");
    }

    #[test]
    fn condition_kinds() {
        assert_eq!(ConditionKind::of("none"), ConditionKind::Standard);
        assert_eq!(ConditionKind::of("harmful_medical"), ConditionKind::Harmful);
        assert_eq!(ConditionKind::of("helpful_general"), ConditionKind::Helpful);
        assert_eq!(ConditionKind::of("pirate"), ConditionKind::Other);
    }

    #[test]
    fn run_kinds() {
        assert_eq!(RunKind::from_command("eval traits"), RunKind::Traits);
        assert_eq!(RunKind::from_command("eval run"), RunKind::Suite);
        assert_eq!(RunKind::from_command("eval capability"), RunKind::Capability);
        assert_eq!(RunKind::from_command("train"), RunKind::Other);
    }

    #[test]
    fn summary_is_lenient() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("summary.json");
        let mut warnings = Vec::new();
        // A trait-suite summary has no `benchmarks`: no labels, no warning.
        std::fs::write(&path, r#"{"n_items": 3, "summary": {"composite": 0.5}}"#).unwrap();
        assert!(read_summary(&path, &mut warnings).is_empty());
        assert!(warnings.is_empty());
        // Unknown fields are ignored; a bad entry is skipped with a warning, the good one kept.
        std::fs::write(
            &path,
            r#"{"suite":"s","benchmarks":[{"benchmark":"b1","category":"honesty","extra":1,"raw":null},
                {"benchmark":"b2","n":"many"}, {"benchmark": 3}]}"#,
        )
        .unwrap();
        let labels = read_summary(&path, &mut warnings);
        assert_eq!(labels.len(), 2);
        assert_eq!(labels["b1"].category.as_deref(), Some("honesty"));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        // Broken JSON: a warning naming the file, no failure.
        std::fs::write(&path, "{").unwrap();
        let mut warnings = Vec::new();
        assert!(read_summary(&path, &mut warnings).is_empty());
        assert!(warnings[0].contains("summary.json"), "{warnings:?}");
    }
}
