//! Reading ItemScore JSONL into per-benchmark item tables, rejecting duplicates with their lines.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ethos_core::io::{read_jsonl, ReadOptions};
use ethos_core::records::{ItemScore, Refusal};
use ethos_core::{RecordError, RecordErrorKind};

/// The condition of records without a `condition` field: the standard prompt.
pub const STANDARD_CONDITION: &str = "none";

/// One item of one benchmark under one condition.
#[derive(Debug, Clone)]
pub struct Item {
    /// The score, `None` when unscored.
    pub score: Option<f64>,
    /// The refusal label, when classified.
    pub refusal: Option<Refusal>,
}

/// Items by benchmark, then by item id (both sorted).
pub type Benchmarks = BTreeMap<String, BTreeMap<String, Item>>;

/// The records of one ItemScore file, grouped by condition.
#[derive(Debug)]
pub struct ScoreFile {
    /// The file.
    pub path: PathBuf,
    /// Items by condition (`none` for records without a condition), then benchmark, then item.
    pub by_condition: BTreeMap<String, Benchmarks>,
}

impl ScoreFile {
    /// Reads a file; a duplicate (condition, benchmark, item) or a non-finite score is an error at its line.
    pub fn read(path: &Path) -> Result<Self, RecordError> {
        let outcome = read_jsonl::<ItemScore>(path, ReadOptions::default())?;
        let mut by_condition: BTreeMap<String, Benchmarks> = BTreeMap::new();
        let mut first_lines: BTreeMap<(String, String, String), u64> = BTreeMap::new();
        for (line, record) in outcome.records {
            if let Some(score) = record.score {
                if !score.is_finite() {
                    return Err(RecordError::at_line(
                        RecordErrorKind::InvalidValue,
                        path,
                        line,
                        Some("score".into()),
                        format!("score {score} is not finite; use null for an unscored item"),
                    ));
                }
            }
            let condition = condition_name(record.condition.as_deref());
            let key = (condition.clone(), record.benchmark.clone(), record.item.clone());
            if let Some(first_line) = first_lines.get(&key) {
                return Err(RecordError::at_line(
                    RecordErrorKind::Duplicate,
                    path,
                    line,
                    Some("item".into()),
                    format!(
                        "item `{}` of benchmark `{}` (condition `{condition}`) already appeared on line {first_line}",
                        record.item, record.benchmark
                    ),
                ));
            }
            first_lines.insert(key, line);
            by_condition
                .entry(condition)
                .or_default()
                .entry(record.benchmark)
                .or_default()
                .insert(record.item, Item { score: record.score, refusal: record.refusal });
        }
        Ok(ScoreFile { path: path.to_path_buf(), by_condition })
    }

    /// The items of one condition, or the only condition when `condition` is `None`. Errors when the file has
    /// no records of that condition, or several conditions and none was chosen.
    pub fn condition(&self, condition: Option<&str>) -> Result<&Benchmarks, RecordError> {
        let names: Vec<&str> = self.by_condition.keys().map(String::as_str).collect();
        match condition {
            Some(wanted) => self.by_condition.get(&condition_name(Some(wanted))).ok_or_else(|| {
                RecordError::in_file(
                    RecordErrorKind::MissingField,
                    &self.path,
                    format!("no records with condition `{wanted}` (conditions present: {})", names.join(", ")),
                )
            }),
            None if self.by_condition.len() == 1 => self
                .by_condition
                .values()
                .next()
                .ok_or_else(|| RecordError::in_file(RecordErrorKind::Empty, &self.path, "file has no records")),
            None => Err(RecordError::in_file(
                RecordErrorKind::InvalidValue,
                &self.path,
                format!("records have several conditions ({}); choose one with --condition", names.join(", ")),
            )),
        }
    }
}

/// `none` for a missing condition (the standard prompt), the condition otherwise.
pub fn condition_name(condition: Option<&str>) -> String {
    condition.unwrap_or(STANDARD_CONDITION).to_string()
}

/// Scored values of a benchmark's items, and the number unscored.
pub fn scored_values(items: &BTreeMap<String, Item>) -> (Vec<f64>, usize) {
    let values: Vec<f64> = items.values().filter_map(|item| item.score).collect();
    let n_unscored = items.len() - values.len();
    (values, n_unscored)
}

/// Formats an optional number for a text table.
pub fn cell(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(value) => format!("{value:.decimals$}"),
        None => "-".to_string(),
    }
}
