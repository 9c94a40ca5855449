//! Percentile bootstrap confidence intervals, seeded per replicate so that results are reproducible and
//! independent of the number of threads.

use rand::Rng;
use rayon::prelude::*;

use crate::describe::{mean_unchecked, percentile_of_sorted};
use crate::error::{check_finite, Result, StatsError, StatsErrorKind};
use crate::rng::replicate_rng;

/// How to bootstrap: number of resamples, seed and confidence level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BootstrapConfig {
    n_resamples: usize,
    seed: u64,
    confidence: f64,
}

impl BootstrapConfig {
    /// `n_resamples` resamples (at least 1) with `seed`, at 95% confidence.
    pub fn new(n_resamples: usize, seed: u64) -> Result<Self> {
        if n_resamples == 0 {
            return Err(StatsError::new(StatsErrorKind::InvalidParameter, "the bootstrap needs at least 1 resample"));
        }
        Ok(BootstrapConfig { n_resamples, seed, confidence: 0.95 })
    }

    /// The same configuration at another confidence level, strictly between 0 and 1.
    pub fn with_confidence(self, confidence: f64) -> Result<Self> {
        if !(confidence > 0.0 && confidence < 1.0) {
            return Err(StatsError::new(
                StatsErrorKind::InvalidParameter,
                format!("confidence {confidence} is not strictly between 0 and 1"),
            ));
        }
        Ok(BootstrapConfig { confidence, ..self })
    }

    /// Number of resamples.
    pub fn n_resamples(&self) -> usize {
        self.n_resamples
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Confidence level, for example 0.95.
    pub fn confidence(&self) -> f64 {
        self.confidence
    }
}

/// A two-sided percentile confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConfidenceInterval {
    /// Lower bound: the 100 (1 - c) / 2 percentile of the bootstrap distribution (numpy 'linear').
    pub low: f64,
    /// Upper bound: the 100 (1 + c) / 2 percentile.
    pub high: f64,
}

/// Percentile bootstrap CI of `mean(b) - mean(a)` for independent samples: each replicate resamples `a` and
/// `b` separately with replacement. `purpose` separates the random streams of different analyses that share a
/// seed (for example one key per benchmark).
pub fn bootstrap_mean_difference(
    a: &[f64],
    b: &[f64],
    config: &BootstrapConfig,
    purpose: u64,
) -> Result<ConfidenceInterval> {
    check_finite(a, "group A")?;
    check_finite(b, "group B")?;
    if a.is_empty() || b.is_empty() {
        return Err(StatsError::new(StatsErrorKind::TooFewObservations, "the bootstrap needs values in both groups"));
    }
    let replicates = run_replicates(config, purpose, |rng| resampled_mean(b, rng) - resampled_mean(a, rng));
    interval(replicates, config)
}

/// Percentile bootstrap CI of the mean of paired differences: each replicate resamples the pairs.
pub fn bootstrap_mean(values: &[f64], config: &BootstrapConfig, purpose: u64) -> Result<ConfidenceInterval> {
    check_finite(values, "input")?;
    if values.is_empty() {
        return Err(StatsError::new(StatsErrorKind::TooFewObservations, "the bootstrap needs at least 1 value"));
    }
    let replicates = run_replicates(config, purpose, |rng| resampled_mean(values, rng));
    interval(replicates, config)
}

/// Percentile bootstrap CIs of several statistics of `n_items` units resampled jointly: each replicate draws
/// `n_items` indices with replacement and passes them to `statistics`, which returns one value per statistic
/// (always the same number). Used where several quantities must share resamples (persistence).
pub fn bootstrap_indices<F>(
    n_items: usize,
    config: &BootstrapConfig,
    purpose: u64,
    statistics: F,
) -> Result<Vec<ConfidenceInterval>>
where
    F: Fn(&[usize]) -> Vec<f64> + Sync,
{
    if n_items == 0 {
        return Err(StatsError::new(StatsErrorKind::TooFewObservations, "the bootstrap needs at least 1 item"));
    }
    let replicates: Vec<Vec<f64>> = (0..config.n_resamples)
        .into_par_iter()
        .with_min_len(64)
        .map(|replicate_idx| {
            let mut rng = replicate_rng(config.seed, purpose, replicate_idx as u64);
            let indices: Vec<usize> = (0..n_items).map(|_| rng.random_range(0..n_items)).collect();
            statistics(&indices)
        })
        .collect();
    let n_statistics = replicates.first().map_or(0, Vec::len);
    if replicates.iter().any(|values| values.len() != n_statistics) {
        return Err(StatsError::new(StatsErrorKind::LengthMismatch, "statistics returned different lengths"));
    }
    (0..n_statistics)
        .map(|statistic_idx| interval(replicates.iter().map(|values| values[statistic_idx]).collect(), config))
        .collect()
}

fn run_replicates<F>(config: &BootstrapConfig, purpose: u64, replicate: F) -> Vec<f64>
where
    F: Fn(&mut rand_chacha::ChaCha8Rng) -> f64 + Sync,
{
    (0..config.n_resamples)
        .into_par_iter()
        .with_min_len(64)
        .map(|replicate_idx| replicate(&mut replicate_rng(config.seed, purpose, replicate_idx as u64)))
        .collect()
}

fn resampled_mean(values: &[f64], rng: &mut impl Rng) -> f64 {
    let n_values = values.len();
    let total: f64 = (0..n_values).map(|_| values[rng.random_range(0..n_values)]).sum();
    total / n_values as f64
}

fn interval(mut replicates: Vec<f64>, config: &BootstrapConfig) -> Result<ConfidenceInterval> {
    check_finite(&replicates, "bootstrap distribution")?;
    replicates.sort_by(f64::total_cmp);
    let tail = 50.0 * (1.0 - config.confidence);
    Ok(ConfidenceInterval {
        low: percentile_of_sorted(&replicates, tail)?,
        high: percentile_of_sorted(&replicates, 100.0 - tail)?,
    })
}

/// The mean of the values at `indices` (a helper for [`bootstrap_indices`] statistics).
pub fn mean_at(values: &[f64], indices: &[usize]) -> f64 {
    let picked: Vec<f64> = indices.iter().map(|&index| values[index]).collect();
    mean_unchecked(&picked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_interval_any_thread_count() {
        let a: Vec<f64> = (0..40).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..30).map(|i| (i as f64 * 0.11).cos()).collect();
        let config = BootstrapConfig::new(2000, 42).unwrap();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| bootstrap_mean_difference(&a, &b, &config, 3).unwrap())
        };
        assert_eq!(run(1), run(4));
        let other_seed = bootstrap_mean_difference(&a, &b, &BootstrapConfig::new(2000, 43).unwrap(), 3).unwrap();
        assert_ne!(run(2), other_seed);
    }

    #[test]
    fn joint_resamples_do_not_depend_on_thread_count() {
        let values: Vec<f64> = (0..25).map(|i| (i as f64 * 0.71).sin()).collect();
        let config = BootstrapConfig::new(1500, 9).unwrap();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let joint = bootstrap_indices(values.len(), &config, 1, |indices| {
                    vec![mean_at(&values, indices), mean_at(&values, indices).powi(2)]
                })
                .unwrap();
                (joint, bootstrap_mean(&values, &config, 1).unwrap())
            })
        };
        assert_eq!(run(1), run(4));
    }

    #[test]
    fn zero_resamples_is_an_error() {
        assert_eq!(BootstrapConfig::new(0, 1).unwrap_err().kind(), StatsErrorKind::InvalidParameter);
    }
}
