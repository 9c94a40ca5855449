//! Per-benchmark comparison of two models (B minus A) with t-tests, bootstrap CIs, Benjamini-Hochberg q-values
//! and a win/loss summary (DESIGN.md, "Statistics").

use crate::bootstrap::{bootstrap_mean, bootstrap_mean_difference, BootstrapConfig};
use crate::describe::{mean_unchecked, percentile};
use crate::error::{check_finite, Result, StatsError, StatsErrorKind};
use crate::fdr::bh_qvalues;
use crate::rng::purpose_key;
use crate::sign::{sign_test_p, win_counts, WinCounts};
use crate::ttest::{paired_t_test, welch_t_test, TTest};

/// The scores of one benchmark for models A and B.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchmarkScores {
    /// Benchmark name (also keys the bootstrap stream, so results do not depend on benchmark order).
    pub name: String,
    /// Scores of A.
    pub a: Vec<f64>,
    /// Scores of B; for a paired comparison `b[i]` is the same item as `a[i]`.
    pub b: Vec<f64>,
}

/// Independent samples (Welch) or matched items (paired).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Design {
    /// Welch's t-test; bootstrap resamples A and B separately.
    Independent,
    /// Paired t-test; bootstrap resamples the pairs.
    Paired,
}

/// How to compare.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompareConfig {
    /// Welch or paired.
    pub design: Design,
    /// Bootstrap of the mean difference.
    pub bootstrap: BootstrapConfig,
    /// A benchmark is significant when its q-value is below `alpha`.
    pub alpha: f64,
}

/// The comparison of one benchmark. Fields are `None` when undefined, with the reason in `note`.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchmarkComparison {
    /// Benchmark name.
    pub name: String,
    /// Number of A scores used.
    pub n_a: usize,
    /// Number of B scores used.
    pub n_b: usize,
    /// Mean of A.
    pub mean_a: Option<f64>,
    /// Mean of B.
    pub mean_b: Option<f64>,
    /// Mean of B minus mean of A.
    pub delta: Option<f64>,
    /// Bootstrap CI of the difference.
    pub ci: Option<(f64, f64)>,
    /// t-test of B minus A.
    pub test: Option<TTest>,
    /// Benjamini-Hochberg q-value among the benchmarks with a p-value.
    pub q_value: Option<f64>,
    /// q < alpha.
    pub significant: bool,
    /// Why a value is missing.
    pub note: Option<String>,
}

/// The summary over benchmarks with a defined difference.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareSummary {
    /// Benchmarks with a defined difference.
    pub n: usize,
    /// Benchmarks with a p-value (the family of the BH correction).
    pub n_tested: usize,
    /// Wins, losses and ties by the sign of the difference.
    pub counts: WinCounts,
    /// Two-sided sign test of wins against losses.
    pub sign_test_p: f64,
    /// Mean difference over benchmarks.
    pub mean_delta: Option<f64>,
    /// Median difference over benchmarks.
    pub median_delta: Option<f64>,
    /// Significant with a positive difference.
    pub sig_improved: usize,
    /// Significant with a negative difference.
    pub sig_regressed: usize,
}

/// The comparison of all benchmarks.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// One entry per benchmark, in input order.
    pub benchmarks: Vec<BenchmarkComparison>,
    /// Summary.
    pub summary: CompareSummary,
}

/// Compares every benchmark, then applies BH across the benchmarks that have a p-value. A benchmark whose test
/// is undefined (fewer than 2 scores, zero variance) keeps its means and CI, gets no p/q, and says why in
/// `note`; it is left out of the BH family but counted in wins and losses.
pub fn compare_benchmarks(benchmarks: &[BenchmarkScores], config: &CompareConfig) -> Result<Comparison> {
    if !(config.alpha > 0.0 && config.alpha <= 1.0) {
        return Err(StatsError::new(
            StatsErrorKind::InvalidParameter,
            format!("alpha {} is not in (0, 1]", config.alpha),
        ));
    }
    let mut results = Vec::with_capacity(benchmarks.len());
    for benchmark in benchmarks {
        results.push(
            compare_one(benchmark, config)
                .map_err(|err| err.with_context(format!("benchmark `{}`", benchmark.name)))?,
        );
    }
    let tested: Vec<usize> = (0..results.len()).filter(|&idx| results[idx].test.is_some()).collect();
    let p_values: Vec<f64> = tested.iter().filter_map(|&idx| results[idx].test.map(|test| test.p_value)).collect();
    let q_values = bh_qvalues(&p_values)?;
    for (&idx, q_value) in tested.iter().zip(q_values) {
        results[idx].q_value = Some(q_value);
        results[idx].significant = q_value < config.alpha;
    }
    let deltas: Vec<f64> = results.iter().filter_map(|result| result.delta).collect();
    let counts = win_counts(&deltas)?;
    let significant_with = |positive: bool| {
        results
            .iter()
            .filter(|result| {
                result.significant && result.delta.is_some_and(|delta| (delta > 0.0) == positive && delta != 0.0)
            })
            .count()
    };
    let summary = CompareSummary {
        n: deltas.len(),
        n_tested: tested.len(),
        counts,
        sign_test_p: sign_test_p(counts.wins, counts.losses),
        mean_delta: if deltas.is_empty() { None } else { Some(mean_unchecked(&deltas)) },
        median_delta: if deltas.is_empty() { None } else { Some(percentile(&deltas, 50.0)?) },
        sig_improved: significant_with(true),
        sig_regressed: significant_with(false),
    };
    Ok(Comparison { benchmarks: results, summary })
}

fn compare_one(benchmark: &BenchmarkScores, config: &CompareConfig) -> Result<BenchmarkComparison> {
    check_finite(&benchmark.a, "scores of A")?;
    check_finite(&benchmark.b, "scores of B")?;
    let (a, b) = (&benchmark.a, &benchmark.b);
    let mut result = BenchmarkComparison {
        name: benchmark.name.clone(),
        n_a: a.len(),
        n_b: b.len(),
        mean_a: (!a.is_empty()).then(|| mean_unchecked(a)),
        mean_b: (!b.is_empty()).then(|| mean_unchecked(b)),
        delta: None,
        ci: None,
        test: None,
        q_value: None,
        significant: false,
        note: None,
    };
    if a.is_empty() || b.is_empty() {
        result.note = Some(format!("no scores to compare (A has {}, B has {})", a.len(), b.len()));
        return Ok(result);
    }
    let purpose = purpose_key(&benchmark.name);
    let (test, ci) = match config.design {
        Design::Independent => (welch_t_test(a, b), bootstrap_mean_difference(a, b, &config.bootstrap, purpose)?),
        Design::Paired => {
            if a.len() != b.len() {
                return Err(StatsError::new(
                    StatsErrorKind::LengthMismatch,
                    format!("paired scores have different lengths ({} and {})", a.len(), b.len()),
                ));
            }
            let differences: Vec<f64> = a.iter().zip(b).map(|(x, y)| y - x).collect();
            (paired_t_test(a, b), bootstrap_mean(&differences, &config.bootstrap, purpose)?)
        }
    };
    result.delta = Some(match config.design {
        Design::Independent => mean_unchecked(b) - mean_unchecked(a),
        Design::Paired => mean_unchecked(&a.iter().zip(b).map(|(x, y)| y - x).collect::<Vec<_>>()),
    });
    result.ci = Some((ci.low, ci.high));
    match test {
        Ok(test) => result.test = Some(test),
        Err(err) => result.note = Some(format!("no t-test: {}", err.message())),
    }
    Ok(result)
}
