//! Everything the report shows, computed with `ethos-stats` from loaded runs and held as serializable data
//! (`report.json` is [`Report`] as JSON; the page and the CSV files are drawn from it).
//!
//! Runs are grouped into cells by (policy spec, condition). Within a cell every (benchmark, item) must be
//! unique across runs, so a run passed twice cannot double its weight. Unscored items (`"score": null`) are
//! excluded from every statistic and counted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use ethos_core::records::Refusal;
use ethos_stats::bootstrap::{bootstrap_mean, BootstrapConfig};
use ethos_stats::compare::{compare_benchmarks, BenchmarkComparison, BenchmarkScores, CompareConfig, Design};
use ethos_stats::describe::{mean, percentile};
use ethos_stats::fdr::bh_qvalues;
use ethos_stats::persistence::{condition_shift, ConditionPairScores, PersistenceResult, ShiftKind};
use ethos_stats::rng::purpose_key;
use ethos_stats::sign::{sign_test_p, win_counts};
use ethos_stats::structure::{analyze_structure, Direction, EvalColumn, EvalMatrix, NullDistribution, StructureConfig};
use serde::Serialize;

use crate::load::{load_run, short_policy_label, ConditionKind, Run, RunKind, RunManifestInfo, STANDARD_CONDITION};
use crate::{ReportConfig, ReportError};

/// Version of the `report.json` format. Bump when a field changes meaning or is removed.
pub const REPORT_SCHEMA_VERSION: u32 = 1;

/// Everything the page shows, as data.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Version of this format.
    pub schema_version: u32,
    /// `ethos-report <version>`.
    pub generator: String,
    /// The settings the numbers were computed with.
    pub settings: Settings,
    /// Policies in display order (the baseline first).
    pub policies: Vec<PolicyInfo>,
    /// Conditions present, in display order (standard, harmful, helpful, other).
    pub conditions: Vec<ConditionInfo>,
    /// The manifest of every run, in the order given.
    pub runs: Vec<RunManifestInfo>,
    /// Mean score with bootstrap CI per policy x condition x benchmark (`benchmarks.csv`).
    pub benchmarks: Vec<BenchmarkRow>,
    /// Figure 1: the held-out trait suite per trait and policy.
    pub traits: TraitSection,
    /// Figures 2 and 3: every non-baseline policy against the baseline, standard condition.
    pub comparisons: Vec<PolicyComparison>,
    /// Figure 4: scores under persona conditions, and persistence statistics.
    pub personas: PersonaSection,
    /// Table 5: refusal rates and the paired comparison on items neither policy refused.
    pub refusals: RefusalSection,
    /// Figure 6: structure of the runs x benchmarks matrix.
    pub structure: StructureSection,
    /// Table 7: capability guards.
    pub capability: Vec<CapabilityRow>,
    /// Problems that did not stop the report (ignored summaries, skipped analyses).
    pub warnings: Vec<String>,
}

/// The resolved settings.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Policy spec of the baseline.
    pub baseline: String,
    /// Seed of bootstraps and permutations.
    pub seed: u64,
    /// Bootstrap resamples.
    pub bootstrap: usize,
    /// Confidence level of the intervals.
    pub confidence: f64,
    /// Significance threshold on q-values.
    pub alpha: f64,
    /// Permutations of the structure nulls.
    pub permutations: usize,
}

/// A policy and its figure label.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyInfo {
    /// Short label used in figures.
    pub label: String,
    /// The full model spec.
    pub spec: String,
    /// Whether this is the baseline.
    pub is_baseline: bool,
}

/// A condition and its kind.
#[derive(Debug, Clone, Serialize)]
pub struct ConditionInfo {
    /// Condition id (`none` for the standard prompt).
    pub condition: String,
    /// Standard, harmful, helpful or other.
    pub kind: ConditionKind,
}

/// Mean oriented score of one benchmark for one policy under one condition.
#[derive(Debug, Clone, Serialize)]
pub struct BenchmarkRow {
    /// Policy spec.
    pub policy: String,
    /// Policy label.
    pub label: String,
    /// Condition.
    pub condition: String,
    /// Benchmark name.
    pub benchmark: String,
    /// Category (`trait`, `capability`, `honesty`, ...).
    pub category: String,
    /// Published metric name, when the run's summary names it.
    pub metric: Option<String>,
    /// Orientation of the raw metric (item scores are already higher-is-better).
    pub orientation: Option<String>,
    /// Mean of the scored items.
    pub mean: Option<f64>,
    /// Lower end of the bootstrap CI of the mean.
    pub ci_low: Option<f64>,
    /// Upper end.
    pub ci_high: Option<f64>,
    /// Number of scored items.
    pub n: usize,
    /// Number of unscored items (excluded).
    pub n_unscored: usize,
    /// Records with a refusal label.
    pub n_refusal_labeled: usize,
    /// Share of labeled records refused (partial or full).
    pub refusal_rate: Option<f64>,
}

/// The held-out trait suite (benchmarks of category `trait`, standard condition).
#[derive(Debug, Clone, Serialize)]
pub struct TraitSection {
    /// Trait ids in display order.
    pub traits: Vec<String>,
    /// Policies with trait scores, in display order.
    pub policies: Vec<String>,
    /// Rows of [`Report::benchmarks`] for the traits.
    pub scores: Vec<BenchmarkRow>,
    /// Per policy: mean over traits of the trait means.
    pub composite: Vec<Composite>,
}

/// A policy's composite trait score.
#[derive(Debug, Clone, Serialize)]
pub struct Composite {
    /// Policy spec.
    pub policy: String,
    /// Mean of the trait means.
    pub composite: f64,
    /// Number of traits averaged.
    pub n_traits: usize,
}

/// One policy against the baseline, per benchmark (B minus A).
#[derive(Debug, Clone, Serialize)]
pub struct PolicyComparison {
    /// Baseline spec (A).
    pub baseline: String,
    /// Compared spec (B).
    pub policy: String,
    /// Condition both were scored under.
    pub condition: String,
    /// One row per benchmark both have.
    pub benchmarks: Vec<ComparisonRow>,
    /// Wins, losses and significant changes.
    pub summary: ComparisonSummary,
    /// Benchmarks only the baseline has (not compared).
    pub only_baseline: Vec<String>,
    /// Benchmarks only the policy has (not compared).
    pub only_policy: Vec<String>,
}

/// The comparison of one benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct ComparisonRow {
    /// Benchmark name.
    pub benchmark: String,
    /// Category.
    pub category: String,
    /// `paired` (matched by item id) or `welch` (independent samples).
    pub design: &'static str,
    /// Scores of A used.
    pub n_a: usize,
    /// Scores of B used.
    pub n_b: usize,
    /// Scored items of A without a scored partner in B (paired design only).
    pub n_unmatched_a: usize,
    /// Scored items of B without a scored partner in A.
    pub n_unmatched_b: usize,
    /// Mean of A.
    pub mean_a: Option<f64>,
    /// Mean of B.
    pub mean_b: Option<f64>,
    /// Mean difference B - A.
    pub delta: Option<f64>,
    /// Bootstrap CI of the difference.
    pub ci_low: Option<f64>,
    /// Upper end.
    pub ci_high: Option<f64>,
    /// t statistic.
    pub t: Option<f64>,
    /// Degrees of freedom.
    pub df: Option<f64>,
    /// Two-sided p-value.
    pub p: Option<f64>,
    /// Benjamini-Hochberg q-value across the benchmarks of this comparison.
    pub q: Option<f64>,
    /// q < alpha.
    pub significant: bool,
    /// Why a value is missing.
    pub note: Option<String>,
}

/// Summary of one comparison (DESIGN.md: wins/losses by sign, mean and median delta, significant changes).
#[derive(Debug, Clone, Serialize)]
pub struct ComparisonSummary {
    /// Benchmarks with a defined difference.
    pub n: usize,
    /// Benchmarks with a p-value (the BH family).
    pub n_tested: usize,
    /// Positive differences.
    pub wins: usize,
    /// Negative differences.
    pub losses: usize,
    /// Zero differences.
    pub ties: usize,
    /// Mean difference.
    pub mean_delta: Option<f64>,
    /// Median difference.
    pub median_delta: Option<f64>,
    /// Significant improvements.
    pub sig_improved: usize,
    /// Significant regressions.
    pub sig_regressed: usize,
    /// Two-sided sign test of wins against losses.
    pub sign_test_p: f64,
}

/// Scores under persona conditions.
#[derive(Debug, Clone, Serialize)]
pub struct PersonaSection {
    /// Per policy with a persona condition: the mean score under each of its conditions.
    pub bars: Vec<PersonaBar>,
    /// Degradation under harmful personas and steering by helpful ones, each policy against the baseline.
    pub persistence: Vec<PersistenceRow>,
    /// Why an analysis was skipped.
    pub notes: Vec<String>,
}

/// Mean score of a policy under one condition, over the benchmarks it has under all its conditions.
#[derive(Debug, Clone, Serialize)]
pub struct PersonaBar {
    /// Policy spec.
    pub policy: String,
    /// Condition.
    pub condition: String,
    /// Kind of the condition.
    pub kind: ConditionKind,
    /// Mean over the shared benchmarks of the benchmark means.
    pub mean: f64,
    /// The benchmarks averaged.
    pub benchmarks: Vec<String>,
}

/// The shift of two policies between the standard prompt and a persona, over the same items.
#[derive(Debug, Clone, Serialize)]
pub struct PersistenceRow {
    /// Baseline spec (A).
    pub a: String,
    /// Compared spec (B).
    pub b: String,
    /// `degradation` (standard - harmful persona) or `steering` (helpful persona - standard).
    pub kind: &'static str,
    /// The persona condition.
    pub persona: String,
    /// Items scored in all four cells.
    pub n_items: usize,
    /// A under the standard prompt.
    pub a_standard: f64,
    /// A under the persona.
    pub a_persona: f64,
    /// A's shift.
    pub a_shift: f64,
    /// Bootstrap CI of A's shift.
    pub a_ci: (f64, f64),
    /// B under the standard prompt.
    pub b_standard: f64,
    /// B under the persona.
    pub b_persona: f64,
    /// B's shift.
    pub b_shift: f64,
    /// Bootstrap CI of B's shift.
    pub b_ci: (f64, f64),
    /// B's shift minus A's.
    pub difference: f64,
    /// Bootstrap CI of the difference.
    pub difference_ci: (f64, f64),
    /// p-value of the paired t-test of per-item differences, when defined.
    pub p: Option<f64>,
}

/// Refusals under the standard condition.
#[derive(Debug, Clone, Serialize)]
pub struct RefusalSection {
    /// Rate per policy and benchmark with refusal labels.
    pub rates: Vec<RefusalRate>,
    /// Each policy against the baseline on items neither refused (paired).
    pub non_refusal: Vec<PolicyComparison>,
}

/// The refusal rate of one policy on one benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct RefusalRate {
    /// Policy spec.
    pub policy: String,
    /// Benchmark.
    pub benchmark: String,
    /// Records with a refusal label.
    pub n_labeled: usize,
    /// Labeled `partial` or `full`.
    pub n_refused: usize,
    /// `n_refused / n_labeled`.
    pub rate: Option<f64>,
    /// Records without a label (excluded from the rate).
    pub n_unlabeled: usize,
}

/// The structure analysis of the runs x benchmarks matrix.
#[derive(Debug, Clone, Serialize)]
pub struct StructureSection {
    /// `ok`, or `skipped` with the reason in `note`.
    pub status: &'static str,
    /// Why the analysis was skipped.
    pub note: Option<String>,
    /// Row names: one per (policy, condition).
    pub rows: Vec<String>,
    /// Benchmarks scored in every row and not constant, in clustered order.
    pub columns: Vec<String>,
    /// Benchmarks scored in every row but left out because every row has the same mean.
    pub constant_columns: Vec<String>,
    /// Spearman correlations between the columns, in clustered order.
    pub spearman: Vec<Vec<f64>>,
    /// Mean pairwise Spearman.
    pub mean_spearman: Option<f64>,
    /// Share of variance on the first principal component.
    pub pc1_share: Option<f64>,
    /// Leave-one-out mean Spearman.
    pub loo_mean_spearman: Option<f64>,
    /// Permutation nulls (2.5 and 97.5 percentiles) of the three statistics.
    pub nulls: Option<StructureNullsJson>,
}

/// Permutation nulls of the structure statistics.
#[derive(Debug, Clone, Serialize)]
pub struct StructureNullsJson {
    /// Null of the mean Spearman.
    pub mean_spearman: NullJson,
    /// Null of the PC1 share.
    pub pc1_share: NullJson,
    /// Null of the leave-one-out mean Spearman.
    pub loo_mean_spearman: NullJson,
}

/// One permutation null.
#[derive(Debug, Clone, Serialize)]
pub struct NullJson {
    /// 2.5th percentile.
    pub low: f64,
    /// 97.5th percentile.
    pub high: f64,
    /// Mean.
    pub mean: f64,
    /// One-sided permutation p-value of the observed value.
    pub p: f64,
}

/// A capability guard for one policy.
#[derive(Debug, Clone, Serialize)]
pub struct CapabilityRow {
    /// Policy spec.
    pub policy: String,
    /// Benchmark (gsm8k, ifeval_strict, ...).
    pub benchmark: String,
    /// Mean accuracy.
    pub mean: Option<f64>,
    /// Bootstrap CI.
    pub ci_low: Option<f64>,
    /// Upper end.
    pub ci_high: Option<f64>,
    /// Scored items.
    pub n: usize,
    /// Difference from the baseline, when compared.
    pub delta: Option<f64>,
    /// Its q-value.
    pub q: Option<f64>,
}

/// One item of a cell.
#[derive(Debug, Clone)]
struct Item {
    score: Option<f64>,
    refusal: Option<Refusal>,
}

/// Items by benchmark, then item id.
type Benchmarks = BTreeMap<String, BTreeMap<String, Item>>;

/// Where a (policy, condition, benchmark, item) first appeared: run directory and line.
type Origins = BTreeMap<(String, String, String, String), (PathBuf, u64)>;

/// Labels of a benchmark, merged over runs.
#[derive(Debug, Clone, Default)]
struct BenchmarkInfo {
    category: Option<String>,
    metric: Option<String>,
    orientation: Option<String>,
}

/// The loaded data in the shape the analyses need.
struct Data {
    policies: Vec<String>,
    labels: BTreeMap<String, String>,
    conditions: Vec<String>,
    cells: BTreeMap<(String, String), Benchmarks>,
    info: BTreeMap<String, BenchmarkInfo>,
}

impl Data {
    fn cell(&self, policy: &str, condition: &str) -> Option<&Benchmarks> {
        self.cells.get(&(policy.to_string(), condition.to_string()))
    }

    fn label(&self, policy: &str) -> String {
        self.labels.get(policy).cloned().unwrap_or_else(|| policy.to_string())
    }

    fn category(&self, benchmark: &str) -> String {
        self.info.get(benchmark).and_then(|info| info.category.clone()).unwrap_or_else(|| "other".into())
    }
}

/// Loads the runs and computes every section of the report.
pub fn build_report(runs: &[PathBuf], config: &ReportConfig) -> Result<Report, ReportError> {
    if runs.is_empty() {
        return Err(ReportError::input(&PathBuf::from("."), "no run directories given"));
    }
    if !(config.alpha > 0.0 && config.alpha <= 1.0) {
        return Err(ReportError::Setting(format!("alpha {} is not in (0, 1]", config.alpha)));
    }
    let bootstrap = BootstrapConfig::new(config.n_bootstrap, config.seed)
        .map_err(|err| ReportError::Setting(format!("bootstrap: {err}")))?;
    let loaded: Vec<Run> = runs.iter().map(|dir| load_run(dir)).collect::<Result<_, _>>()?;
    let mut warnings: Vec<String> = loaded.iter().flat_map(|run| run.warnings.clone()).collect();
    let baseline = resolve_baseline(&loaded, config.baseline.as_deref())?;
    let data = group(&loaded, &baseline)?;

    let benchmarks = benchmark_rows(&data, &bootstrap)?;
    let traits = trait_section(&data, &benchmarks);
    let compare_config = CompareConfig { design: Design::Paired, bootstrap, alpha: config.alpha };
    let mut comparisons = Vec::new();
    let mut non_refusal = Vec::new();
    for policy in data.policies.iter().filter(|policy| **policy != baseline) {
        let (Some(cell_a), Some(cell_b)) =
            (data.cell(&baseline, STANDARD_CONDITION), data.cell(policy, STANDARD_CONDITION))
        else {
            warnings.push(format!(
                "{} is not compared with the baseline: one of them has no runs under the standard condition",
                data.label(policy)
            ));
            continue;
        };
        let context = format!("comparing {} with {}", data.label(policy), data.label(&baseline));
        comparisons.push(
            compare_cells(&data, &baseline, policy, cell_a, cell_b, Pairing::Auto, &compare_config)
                .map_err(ReportError::stats(context.clone()))?,
        );
        let comparison = compare_cells(&data, &baseline, policy, cell_a, cell_b, Pairing::NonRefused, &compare_config)
            .map_err(ReportError::stats(format!("{context} on non-refused items")))?;
        if !comparison.benchmarks.is_empty() {
            non_refusal.push(comparison);
        }
    }
    let personas = persona_section(&data, &baseline, &bootstrap);
    let refusals = RefusalSection { rates: refusal_rates(&data), non_refusal };
    let structure = structure_section(&data, &benchmarks, config);
    let capability = capability_rows(&data, &benchmarks, &comparisons);
    warnings.extend(personas.notes.iter().cloned());

    let policies = data
        .policies
        .iter()
        .map(|spec| PolicyInfo { label: data.label(spec), spec: spec.clone(), is_baseline: *spec == baseline })
        .collect();
    let conditions = data
        .conditions
        .iter()
        .map(|condition| ConditionInfo { condition: condition.clone(), kind: ConditionKind::of(condition) })
        .collect();
    Ok(Report {
        schema_version: REPORT_SCHEMA_VERSION,
        generator: format!("ethos-report {}", env!("CARGO_PKG_VERSION")),
        settings: Settings {
            baseline,
            seed: config.seed,
            bootstrap: config.n_bootstrap,
            confidence: bootstrap.confidence(),
            alpha: config.alpha,
            permutations: config.n_permutations,
        },
        policies,
        conditions,
        runs: loaded.iter().map(|run| run.manifest.clone()).collect(),
        benchmarks,
        traits,
        comparisons,
        personas,
        refusals,
        structure,
        capability,
        warnings,
    })
}

/// The baseline: `--baseline` (a spec, or a figure label) when given, else the policy of the first run.
fn resolve_baseline(runs: &[Run], wanted: Option<&str>) -> Result<String, ReportError> {
    let Some(wanted) = wanted else {
        return runs
            .first()
            .map(|run| run.manifest.policy.clone())
            .ok_or_else(|| ReportError::input(&PathBuf::from("."), "no run directories given"));
    };
    let specs: BTreeSet<&str> = runs.iter().map(|run| run.manifest.policy.as_str()).collect();
    if specs.contains(wanted) {
        return Ok(wanted.to_string());
    }
    let by_label: Vec<&str> = specs.iter().copied().filter(|spec| short_policy_label(spec) == wanted).collect();
    match by_label.as_slice() {
        [spec] => Ok(spec.to_string()),
        _ => Err(ReportError::Setting(format!(
            "baseline `{wanted}` is not the policy of any run (policies: {})",
            specs.into_iter().collect::<Vec<_>>().join(", ")
        ))),
    }
}

fn group(runs: &[Run], baseline: &str) -> Result<Data, ReportError> {
    let mut policies: Vec<String> = vec![baseline.to_string()];
    let mut cells: BTreeMap<(String, String), Benchmarks> = BTreeMap::new();
    let mut origins: Origins = BTreeMap::new();
    let mut info: BTreeMap<String, BenchmarkInfo> = BTreeMap::new();
    let mut conditions: BTreeSet<String> = BTreeSet::new();
    for run in runs {
        let policy = &run.manifest.policy;
        if !policies.contains(policy) {
            policies.push(policy.clone());
        }
        for (benchmark, labels) in &run.summary {
            let entry = info.entry(benchmark.clone()).or_default();
            entry.category = entry.category.take().or_else(|| labels.category.clone());
            entry.metric = entry.metric.take().or_else(|| labels.metric.clone());
            entry.orientation = entry.orientation.take().or_else(|| labels.orientation.clone());
        }
        let scores_path = run.dir.join("item_scores.jsonl");
        for record in &run.records {
            let key = (policy.clone(), record.condition.clone(), record.benchmark.clone(), record.item.clone());
            if let Some((first_path, first_line)) = origins.get(&key) {
                return Err(ReportError::input(
                    &scores_path,
                    format!(
                        "line {}: item `{}` of benchmark `{}` for policy `{policy}` under condition `{}` is also \
                         scored in {}:{first_line}; pass each run once",
                        record.line,
                        record.item,
                        record.benchmark,
                        record.condition,
                        first_path.display()
                    ),
                ));
            }
            origins.insert(key, (scores_path.clone(), record.line));
            conditions.insert(record.condition.clone());
            let entry = info.entry(record.benchmark.clone()).or_default();
            if entry.category.is_none() {
                entry.category = Some(default_category(run.manifest.kind, &record.benchmark).to_string());
            }
            cells
                .entry((policy.clone(), record.condition.clone()))
                .or_default()
                .entry(record.benchmark.clone())
                .or_default()
                .insert(record.item.clone(), Item { score: record.score, refusal: record.refusal });
        }
    }
    let mut labels = BTreeMap::new();
    let mut used: BTreeMap<String, usize> = BTreeMap::new();
    for policy in &policies {
        let label = short_policy_label(policy);
        let count = used.entry(label.clone()).or_insert(0);
        *count += 1;
        // Two specs can share a short label (same adapter file name in different places): number them.
        let label = if *count > 1 { format!("{label} ({count})") } else { label };
        labels.insert(policy.clone(), label);
    }
    let mut conditions: Vec<String> = conditions.into_iter().collect();
    conditions.sort_by_key(|condition| (ConditionKind::of(condition), condition.clone()));
    Ok(Data { policies, labels, conditions, cells, info })
}

/// The category of a benchmark whose run has no summary labels.
fn default_category(kind: RunKind, benchmark: &str) -> &'static str {
    match kind {
        RunKind::Traits => "trait",
        RunKind::Capability => "capability",
        _ if is_capability_benchmark(benchmark) => "capability",
        _ => "other",
    }
}

/// GSM8K and the IFEval variants are capability guards whatever run produced them.
pub fn is_capability_benchmark(benchmark: &str) -> bool {
    benchmark == "gsm8k" || benchmark.starts_with("ifeval")
}

fn scored(items: &BTreeMap<String, Item>) -> Vec<f64> {
    items.values().filter_map(|item| item.score).collect()
}

fn is_refused(refusal: Refusal) -> bool {
    matches!(refusal, Refusal::Partial | Refusal::Full)
}

fn benchmark_rows(data: &Data, bootstrap: &BootstrapConfig) -> Result<Vec<BenchmarkRow>, ReportError> {
    let mut rows = Vec::new();
    for policy in &data.policies {
        for condition in &data.conditions {
            let Some(cell) = data.cell(policy, condition) else { continue };
            for (benchmark, items) in cell {
                let values = scored(items);
                let (mean_value, ci) = if values.is_empty() {
                    (None, None)
                } else {
                    let purpose = purpose_key(&format!("mean/{policy}/{condition}/{benchmark}"));
                    let interval = bootstrap_mean(&values, bootstrap, purpose)
                        .map_err(ReportError::stats(format!("mean of `{benchmark}`")))?;
                    (mean(&values).ok(), Some((interval.low, interval.high)))
                };
                let labeled: Vec<Refusal> = items.values().filter_map(|item| item.refusal).collect();
                let n_refused = labeled.iter().filter(|refusal| is_refused(**refusal)).count();
                let info = data.info.get(benchmark).cloned().unwrap_or_default();
                rows.push(BenchmarkRow {
                    policy: policy.clone(),
                    label: data.label(policy),
                    condition: condition.clone(),
                    benchmark: benchmark.clone(),
                    category: data.category(benchmark),
                    metric: info.metric,
                    orientation: info.orientation,
                    mean: mean_value,
                    ci_low: ci.map(|ci| ci.0),
                    ci_high: ci.map(|ci| ci.1),
                    n: values.len(),
                    n_unscored: items.len() - values.len(),
                    n_refusal_labeled: labeled.len(),
                    refusal_rate: (!labeled.is_empty()).then(|| n_refused as f64 / labeled.len() as f64),
                });
            }
        }
    }
    Ok(rows)
}

fn trait_section(data: &Data, rows: &[BenchmarkRow]) -> TraitSection {
    let scores: Vec<BenchmarkRow> =
        rows.iter().filter(|row| row.category == "trait" && row.condition == STANDARD_CONDITION).cloned().collect();
    let traits: Vec<String> =
        scores.iter().map(|row| row.benchmark.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    let policies: Vec<String> =
        data.policies.iter().filter(|policy| scores.iter().any(|row| &row.policy == *policy)).cloned().collect();
    let composite = policies
        .iter()
        .filter_map(|policy| {
            let means: Vec<f64> =
                scores.iter().filter(|row| &row.policy == policy).filter_map(|row| row.mean).collect();
            mean(&means).ok().map(|composite| Composite { policy: policy.clone(), composite, n_traits: means.len() })
        })
        .collect();
    TraitSection { traits, policies, scores, composite }
}

/// How items are matched between the two policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pairing {
    /// Paired by item id when most items are shared, Welch otherwise (see [`auto_scores`]).
    Auto,
    /// Paired on the items both policies answered without refusing (benchmarks with refusal labels only).
    NonRefused,
}

struct Bookkeeping {
    design: Design,
    n_unmatched_a: usize,
    n_unmatched_b: usize,
}

fn compare_cells(
    data: &Data,
    baseline: &str,
    policy: &str,
    cell_a: &Benchmarks,
    cell_b: &Benchmarks,
    pairing: Pairing,
    config: &CompareConfig,
) -> Result<PolicyComparison, ethos_stats::StatsError> {
    let only_baseline: Vec<String> = cell_a.keys().filter(|name| !cell_b.contains_key(*name)).cloned().collect();
    let only_policy: Vec<String> = cell_b.keys().filter(|name| !cell_a.contains_key(*name)).cloned().collect();
    let mut inputs = Vec::new();
    let mut books = Vec::new();
    for (name, items_a) in cell_a {
        let Some(items_b) = cell_b.get(name) else { continue };
        let prepared = match pairing {
            Pairing::Auto => Some(auto_scores(name, items_a, items_b)),
            Pairing::NonRefused => non_refused_scores(name, items_a, items_b),
        };
        if let Some((input, book)) = prepared {
            inputs.push(input);
            books.push(book);
        }
    }
    let results = compare_mixed(&inputs, &books, config)?;
    let benchmarks: Vec<ComparisonRow> = results
        .into_iter()
        .zip(&books)
        .map(|(result, book)| ComparisonRow {
            category: data.category(&result.name),
            benchmark: result.name,
            design: match book.design {
                Design::Paired => "paired",
                Design::Independent => "welch",
            },
            n_a: result.n_a,
            n_b: result.n_b,
            n_unmatched_a: book.n_unmatched_a,
            n_unmatched_b: book.n_unmatched_b,
            mean_a: result.mean_a,
            mean_b: result.mean_b,
            delta: result.delta,
            ci_low: result.ci.map(|ci| ci.0),
            ci_high: result.ci.map(|ci| ci.1),
            t: result.test.map(|test| test.statistic),
            df: result.test.map(|test| test.df),
            p: result.test.map(|test| test.p_value),
            q: result.q_value,
            significant: result.significant,
            note: result.note,
        })
        .collect();
    let summary = summarize(&benchmarks)?;
    Ok(PolicyComparison {
        baseline: baseline.to_string(),
        policy: policy.to_string(),
        condition: STANDARD_CONDITION.to_string(),
        benchmarks,
        summary,
        only_baseline: if pairing == Pairing::Auto { only_baseline } else { Vec::new() },
        only_policy: if pairing == Pairing::Auto { only_policy } else { Vec::new() },
    })
}

/// Pairs a benchmark's items by id when at least 2 scored items are shared and they are at least half of each
/// side's scored items (the same items were evaluated); otherwise the samples are independent (Welch) and all
/// scored items are used. Pairing a small overlap would throw most of the data away.
fn auto_scores(
    name: &str,
    items_a: &BTreeMap<String, Item>,
    items_b: &BTreeMap<String, Item>,
) -> (BenchmarkScores, Bookkeeping) {
    let scored_a: BTreeMap<&String, f64> = items_a.iter().filter_map(|(id, item)| Some((id, item.score?))).collect();
    let scored_b: BTreeMap<&String, f64> = items_b.iter().filter_map(|(id, item)| Some((id, item.score?))).collect();
    let shared: Vec<(f64, f64)> =
        scored_a.iter().filter_map(|(id, score_a)| Some((*score_a, *scored_b.get(id)?))).collect();
    let largest = scored_a.len().max(scored_b.len());
    if shared.len() >= 2 && 2 * shared.len() >= largest {
        let (a, b) = shared.iter().copied().unzip();
        let book = Bookkeeping {
            design: Design::Paired,
            n_unmatched_a: scored_a.len() - shared.len(),
            n_unmatched_b: scored_b.len() - shared.len(),
        };
        return (BenchmarkScores { name: name.to_string(), a, b }, book);
    }
    let book = Bookkeeping { design: Design::Independent, n_unmatched_a: 0, n_unmatched_b: 0 };
    (
        BenchmarkScores {
            name: name.to_string(),
            a: scored_a.into_values().collect(),
            b: scored_b.into_values().collect(),
        },
        book,
    )
}

/// The items of a benchmark both policies answered (label `none`) and scored, paired by id; `None` when neither
/// side has refusal labels on this benchmark.
fn non_refused_scores(
    name: &str,
    items_a: &BTreeMap<String, Item>,
    items_b: &BTreeMap<String, Item>,
) -> Option<(BenchmarkScores, Bookkeeping)> {
    let has_labels = |items: &BTreeMap<String, Item>| items.values().any(|item| item.refusal.is_some());
    if !has_labels(items_a) || !has_labels(items_b) {
        return None;
    }
    let answered = |item: &Item| match (item.refusal, item.score) {
        (Some(Refusal::None), Some(score)) => Some(score),
        _ => None,
    };
    let mut a = Vec::new();
    let mut b = Vec::new();
    for (id, item_a) in items_a {
        if let (Some(score_a), Some(score_b)) = (answered(item_a), items_b.get(id).and_then(answered)) {
            a.push(score_a);
            b.push(score_b);
        }
    }
    let n_answered = |items: &BTreeMap<String, Item>| items.values().filter(|item| answered(item).is_some()).count();
    let book = Bookkeeping {
        design: Design::Paired,
        n_unmatched_a: n_answered(items_a) - a.len(),
        n_unmatched_b: n_answered(items_b) - b.len(),
    };
    Some((BenchmarkScores { name: name.to_string(), a, b }, book))
}

/// `compare_benchmarks` takes one design per call, so paired and Welch benchmarks are compared in two calls;
/// the Benjamini-Hochberg correction must then run over the whole family of tested benchmarks of the
/// comparison, which the separate calls cannot see, so it is redone here with `bh_qvalues`.
fn compare_mixed(
    inputs: &[BenchmarkScores],
    books: &[Bookkeeping],
    config: &CompareConfig,
) -> Result<Vec<BenchmarkComparison>, ethos_stats::StatsError> {
    let mut results: Vec<Option<BenchmarkComparison>> = vec![None; inputs.len()];
    for design in [Design::Paired, Design::Independent] {
        let indices: Vec<usize> = (0..inputs.len()).filter(|&idx| books[idx].design == design).collect();
        if indices.is_empty() {
            continue;
        }
        let group: Vec<BenchmarkScores> = indices.iter().map(|&idx| inputs[idx].clone()).collect();
        let comparison = compare_benchmarks(&group, &CompareConfig { design, ..*config })?;
        for (idx, result) in indices.into_iter().zip(comparison.benchmarks) {
            results[idx] = Some(result);
        }
    }
    let mut results: Vec<BenchmarkComparison> = results.into_iter().flatten().collect();
    let tested: Vec<usize> = (0..results.len()).filter(|&idx| results[idx].test.is_some()).collect();
    let p_values: Vec<f64> = tested.iter().filter_map(|&idx| results[idx].test.map(|test| test.p_value)).collect();
    let q_values = bh_qvalues(&p_values)?;
    for (&idx, q_value) in tested.iter().zip(q_values) {
        results[idx].q_value = Some(q_value);
        results[idx].significant = q_value < config.alpha;
    }
    Ok(results)
}

/// The summary of DESIGN.md over the rows of one comparison.
fn summarize(rows: &[ComparisonRow]) -> Result<ComparisonSummary, ethos_stats::StatsError> {
    let deltas: Vec<f64> = rows.iter().filter_map(|row| row.delta).collect();
    let counts = win_counts(&deltas)?;
    let significant_with = |positive: bool| {
        rows.iter()
            .filter(|row| row.significant && row.delta.is_some_and(|delta| delta != 0.0 && (delta > 0.0) == positive))
            .count()
    };
    Ok(ComparisonSummary {
        n: deltas.len(),
        n_tested: rows.iter().filter(|row| row.p.is_some()).count(),
        wins: counts.wins,
        losses: counts.losses,
        ties: counts.ties,
        mean_delta: mean(&deltas).ok(),
        median_delta: percentile(&deltas, 50.0).ok(),
        sig_improved: significant_with(true),
        sig_regressed: significant_with(false),
        sign_test_p: sign_test_p(counts.wins, counts.losses),
    })
}

fn persona_section(data: &Data, baseline: &str, bootstrap: &BootstrapConfig) -> PersonaSection {
    let mut bars = Vec::new();
    let mut notes = Vec::new();
    for policy in &data.policies {
        let conditions: Vec<&String> =
            data.conditions.iter().filter(|condition| data.cell(policy, condition).is_some()).collect();
        if !conditions.iter().any(|condition| condition.as_str() != STANDARD_CONDITION) {
            continue;
        }
        // Only benchmarks scored under every condition of the policy, so the bars differ by condition alone.
        let mut shared: Option<BTreeSet<&String>> = None;
        for condition in &conditions {
            let Some(cell) = data.cell(policy, condition) else { continue };
            let present: BTreeSet<&String> =
                cell.iter().filter(|(_, items)| !scored(items).is_empty()).map(|(name, _)| name).collect();
            shared = Some(match shared {
                Some(previous) => previous.intersection(&present).copied().collect(),
                None => present,
            });
        }
        let shared: Vec<String> = shared.unwrap_or_default().into_iter().cloned().collect();
        if shared.is_empty() {
            notes.push(format!(
                "persona bars of {}: no benchmark is scored under all of its conditions ({})",
                data.label(policy),
                conditions.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
            ));
            continue;
        }
        for condition in &conditions {
            let Some(cell) = data.cell(policy, condition) else { continue };
            let means: Vec<f64> =
                shared.iter().filter_map(|name| cell.get(name).and_then(|items| mean(&scored(items)).ok())).collect();
            if let Ok(value) = mean(&means) {
                bars.push(PersonaBar {
                    policy: policy.clone(),
                    condition: (*condition).clone(),
                    kind: ConditionKind::of(condition),
                    mean: value,
                    benchmarks: shared.clone(),
                });
            }
        }
    }
    let mut persistence = Vec::new();
    for policy in data.policies.iter().filter(|policy| policy.as_str() != baseline) {
        for persona in &data.conditions {
            let kind = match ConditionKind::of(persona) {
                ConditionKind::Harmful => ShiftKind::Degradation,
                ConditionKind::Helpful => ShiftKind::Steering,
                _ => continue,
            };
            let cells = [
                data.cell(baseline, STANDARD_CONDITION),
                data.cell(baseline, persona),
                data.cell(policy, STANDARD_CONDITION),
                data.cell(policy, persona),
            ];
            let [Some(a_standard), Some(a_persona), Some(b_standard), Some(b_persona)] = cells else { continue };
            let scores = aligned_scores([a_standard, a_persona, b_standard, b_persona]);
            match condition_shift(&scores, kind, bootstrap, purpose_key(persona)) {
                Ok(result) => persistence.push(persistence_row(baseline, policy, persona, kind, &result)),
                Err(err) => notes.push(format!(
                    "persistence of {} vs {} under `{persona}` skipped: {err}",
                    data.label(policy),
                    data.label(baseline)
                )),
            }
        }
    }
    PersonaSection { bars, persistence, notes }
}

/// The scores of the (benchmark, item) pairs scored in all four cells, aligned.
fn aligned_scores(cells: [&Benchmarks; 4]) -> ConditionPairScores {
    let mut aligned: [Vec<f64>; 4] = Default::default();
    for (benchmark, items) in cells[0] {
        for (item, first) in items {
            let Some(first_score) = first.score else { continue };
            let others: Vec<Option<f64>> = cells[1..]
                .iter()
                .map(|cell| cell.get(benchmark).and_then(|items| items.get(item)).and_then(|item| item.score))
                .collect();
            if let [Some(second), Some(third), Some(fourth)] = others.as_slice() {
                for (column, value) in aligned.iter_mut().zip([first_score, *second, *third, *fourth]) {
                    column.push(value);
                }
            }
        }
    }
    let [a_reference, a_other, b_reference, b_other] = aligned;
    ConditionPairScores { a_reference, a_other, b_reference, b_other }
}

fn persistence_row(a: &str, b: &str, persona: &str, kind: ShiftKind, result: &PersistenceResult) -> PersistenceRow {
    PersistenceRow {
        a: a.to_string(),
        b: b.to_string(),
        kind: match kind {
            ShiftKind::Degradation => "degradation",
            ShiftKind::Steering => "steering",
        },
        persona: persona.to_string(),
        n_items: result.n_items,
        a_standard: result.a.reference,
        a_persona: result.a.other,
        a_shift: result.a.shift,
        a_ci: result.a.ci,
        b_standard: result.b.reference,
        b_persona: result.b.other,
        b_shift: result.b.shift,
        b_ci: result.b.ci,
        difference: result.difference,
        difference_ci: result.difference_ci,
        p: result.difference_test.map(|test| test.p_value),
    }
}

fn refusal_rates(data: &Data) -> Vec<RefusalRate> {
    let mut rates = Vec::new();
    for policy in &data.policies {
        let Some(cell) = data.cell(policy, STANDARD_CONDITION) else { continue };
        for (benchmark, items) in cell {
            let labeled: Vec<Refusal> = items.values().filter_map(|item| item.refusal).collect();
            if labeled.is_empty() {
                continue;
            }
            let n_refused = labeled.iter().filter(|refusal| is_refused(**refusal)).count();
            rates.push(RefusalRate {
                policy: policy.clone(),
                benchmark: benchmark.clone(),
                n_labeled: labeled.len(),
                n_refused,
                rate: Some(n_refused as f64 / labeled.len() as f64),
                n_unlabeled: items.len() - labeled.len(),
            });
        }
    }
    rates
}

/// The row name of a cell in the structure matrix.
pub fn cell_name(label: &str, condition: &str) -> String {
    if condition == STANDARD_CONDITION {
        label.to_string()
    } else {
        format!("{label} · {condition}")
    }
}

fn structure_section(data: &Data, rows: &[BenchmarkRow], config: &ReportConfig) -> StructureSection {
    let mut cells: Vec<(String, String)> = Vec::new();
    for policy in &data.policies {
        for condition in &data.conditions {
            if data.cell(policy, condition).is_some() {
                cells.push((policy.clone(), condition.clone()));
            }
        }
    }
    let row_names: Vec<String> =
        cells.iter().map(|(policy, condition)| cell_name(&data.label(policy), condition)).collect();
    let mean_of = |policy: &str, condition: &str, benchmark: &str| {
        rows.iter()
            .find(|row| row.policy == policy && row.condition == condition && row.benchmark == benchmark)
            .and_then(|row| row.mean)
    };
    let all_benchmarks: BTreeSet<&String> = rows.iter().map(|row| &row.benchmark).collect();
    let mut columns = Vec::new();
    let mut constant_columns = Vec::new();
    for benchmark in all_benchmarks {
        let values: Option<Vec<f64>> =
            cells.iter().map(|(policy, condition)| mean_of(policy, condition, benchmark)).collect();
        let Some(values) = values else { continue };
        if values.iter().all(|value| *value == values[0]) {
            constant_columns.push(benchmark.clone());
        } else {
            columns.push(EvalColumn { name: benchmark.clone(), direction: Direction::Higher, values });
        }
    }
    let skipped = |note: String, columns: Vec<String>| StructureSection {
        status: "skipped",
        note: Some(note),
        rows: row_names.clone(),
        columns,
        constant_columns: constant_columns.clone(),
        spearman: Vec::new(),
        mean_spearman: None,
        pc1_share: None,
        loo_mean_spearman: None,
        nulls: None,
    };
    let column_names: Vec<String> = columns.iter().map(|column| column.name.clone()).collect();
    if cells.len() < 3 {
        return skipped(
            format!(
                "not enough models: {} rows (policy x condition), needs at least 3 for a correlation across models",
                cells.len()
            ),
            column_names,
        );
    }
    if columns.len() < 2 {
        return skipped(
            format!(
                "not enough benchmarks: {} scored in every row with differing scores, needs at least 2",
                columns.len()
            ),
            column_names,
        );
    }
    let analysis = EvalMatrix::new(row_names.clone(), columns).and_then(|matrix| {
        let structure_config = StructureConfig { n_permutations: config.n_permutations, seed: config.seed };
        analyze_structure(&matrix, &structure_config)
    });
    let analysis = match analysis {
        Ok(analysis) => analysis,
        Err(err) => return skipped(format!("the structure analysis failed: {err}"), column_names),
    };
    let order = analysis.linkage.leaf_order().to_vec();
    let ordered_names: Vec<String> = order.iter().map(|&idx| column_names[idx].clone()).collect();
    let spearman = order
        .iter()
        .map(|&row_idx| order.iter().map(|&column_idx| analysis.spearman_matrix[row_idx][column_idx]).collect())
        .collect();
    let null_json =
        |null: &NullDistribution| NullJson { low: null.low, high: null.high, mean: null.mean, p: null.p_value };
    StructureSection {
        status: "ok",
        note: None,
        rows: row_names,
        columns: ordered_names,
        constant_columns,
        spearman,
        mean_spearman: Some(analysis.statistics.mean_spearman),
        pc1_share: Some(analysis.statistics.pc1_explained),
        loo_mean_spearman: Some(analysis.statistics.loo_mean_spearman),
        nulls: analysis.nulls.as_ref().map(|nulls| StructureNullsJson {
            mean_spearman: null_json(&nulls.mean_spearman),
            pc1_share: null_json(&nulls.pc1_explained),
            loo_mean_spearman: null_json(&nulls.loo_mean_spearman),
        }),
    }
}

fn capability_rows(data: &Data, rows: &[BenchmarkRow], comparisons: &[PolicyComparison]) -> Vec<CapabilityRow> {
    let mut capability: Vec<CapabilityRow> = rows
        .iter()
        .filter(|row| {
            row.condition == STANDARD_CONDITION
                && (row.category == "capability" || is_capability_benchmark(&row.benchmark))
        })
        .map(|row| {
            let compared = comparisons
                .iter()
                .find(|comparison| comparison.policy == row.policy)
                .and_then(|comparison| comparison.benchmarks.iter().find(|b| b.benchmark == row.benchmark));
            CapabilityRow {
                policy: row.policy.clone(),
                benchmark: row.benchmark.clone(),
                mean: row.mean,
                ci_low: row.ci_low,
                ci_high: row.ci_high,
                n: row.n,
                delta: compared.and_then(|b| b.delta),
                q: compared.and_then(|b| b.q),
            }
        })
        .collect();
    let policy_rank = |policy: &str| data.policies.iter().position(|p| p == policy).unwrap_or(usize::MAX);
    capability.sort_by(|x, y| x.benchmark.cmp(&y.benchmark).then(policy_rank(&x.policy).cmp(&policy_rank(&y.policy))));
    capability
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(scores: &[(&str, Option<f64>)]) -> BTreeMap<String, Item> {
        scores.iter().map(|(id, score)| (id.to_string(), Item { score: *score, refusal: None })).collect()
    }

    fn check_design(a: &[(&str, Option<f64>)], b: &[(&str, Option<f64>)], design: Design, n_a: usize) {
        let (scores, book) = auto_scores("bench", &items(a), &items(b));
        assert_eq!(book.design, design, "{a:?} vs {b:?}");
        assert_eq!(scores.a.len(), n_a, "{a:?} vs {b:?}");
    }

    #[test]
    fn pairing_by_item_id() {
        let same = [("i1", Some(0.1)), ("i2", Some(0.5)), ("i3", Some(0.9))];
        check_design(&same, &same, Design::Paired, 3);
        // One unscored item on B: paired on the two shared scored items.
        check_design(&same, &[("i1", Some(0.2)), ("i2", None), ("i3", Some(0.3))], Design::Paired, 2);
        // Disjoint item sets: Welch with every scored item.
        check_design(&same, &[("j1", Some(0.2)), ("j2", Some(0.4))], Design::Independent, 3);
        // A small overlap is not enough to pair.
        let many: Vec<(String, Option<f64>)> = (0..10).map(|idx| (format!("k{idx}"), Some(idx as f64))).collect();
        let many: Vec<(&str, Option<f64>)> = many.iter().map(|(id, score)| (id.as_str(), *score)).collect();
        let mut overlap = many[..2].to_vec();
        overlap.extend([("z1", Some(0.0)), ("z2", Some(1.0)), ("z3", Some(0.5)), ("z4", Some(0.5))]);
        check_design(&many, &overlap, Design::Independent, 10);
    }

    #[test]
    fn mixed_summary_matches_compare_benchmarks_when_all_paired() {
        let inputs = vec![
            BenchmarkScores { name: "x".into(), a: vec![0.1, 0.4, 0.3, 0.2], b: vec![0.5, 0.6, 0.9, 0.4] },
            BenchmarkScores { name: "y".into(), a: vec![0.5, 0.5, 0.7, 0.1], b: vec![0.4, 0.5, 0.6, 0.2] },
            BenchmarkScores { name: "z".into(), a: vec![0.2, 0.2], b: vec![0.2, 0.2] },
        ];
        let books: Vec<Bookkeeping> =
            inputs.iter().map(|_| Bookkeeping { design: Design::Paired, n_unmatched_a: 0, n_unmatched_b: 0 }).collect();
        let config =
            CompareConfig { design: Design::Paired, bootstrap: BootstrapConfig::new(200, 3).unwrap(), alpha: 0.05 };
        let direct = compare_benchmarks(&inputs, &config).unwrap();
        let mixed = compare_mixed(&inputs, &books, &config).unwrap();
        assert_eq!(direct.benchmarks, mixed);
        let rows: Vec<ComparisonRow> = mixed
            .into_iter()
            .map(|result| ComparisonRow {
                benchmark: result.name,
                category: "other".into(),
                design: "paired",
                n_a: result.n_a,
                n_b: result.n_b,
                n_unmatched_a: 0,
                n_unmatched_b: 0,
                mean_a: result.mean_a,
                mean_b: result.mean_b,
                delta: result.delta,
                ci_low: None,
                ci_high: None,
                t: None,
                df: None,
                p: result.test.map(|test| test.p_value),
                q: result.q_value,
                significant: result.significant,
                note: None,
            })
            .collect();
        let summary = summarize(&rows).unwrap();
        let expected = direct.summary;
        assert_eq!(
            (summary.n, summary.n_tested, summary.wins, summary.losses, summary.ties),
            (expected.n, expected.n_tested, expected.counts.wins, expected.counts.losses, expected.counts.ties)
        );
        assert_eq!((summary.sig_improved, summary.sig_regressed), (expected.sig_improved, expected.sig_regressed));
        assert_eq!(summary.mean_delta, expected.mean_delta);
        assert_eq!(summary.median_delta, expected.median_delta);
        assert_eq!(summary.sign_test_p, expected.sign_test_p);
    }

    #[test]
    fn cell_names() {
        assert_eq!(cell_name("base", "none"), "base");
        assert_eq!(cell_name("base", "harmful_medical"), "base · harmful_medical");
    }

    #[test]
    fn capability_names() {
        assert!(is_capability_benchmark("gsm8k"));
        assert!(is_capability_benchmark("ifeval_loose"));
        assert!(!is_capability_benchmark("truthfulness"));
        assert_eq!(default_category(RunKind::Traits, "truthfulness"), "trait");
        assert_eq!(default_category(RunKind::Suite, "gsm8k"), "capability");
        assert_eq!(default_category(RunKind::Suite, "machiavelli"), "other");
    }
}
