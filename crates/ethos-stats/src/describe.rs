//! Descriptive statistics matching numpy's definitions: mean, sample variance, median, percentiles ('linear').

use crate::error::{check_finite, Result, StatsError, StatsErrorKind};

/// Arithmetic mean. Errors on an empty slice or a non-finite value.
pub fn mean(values: &[f64]) -> Result<f64> {
    check_finite(values, "input")?;
    if values.is_empty() {
        return Err(StatsError::new(StatsErrorKind::TooFewObservations, "mean of no values"));
    }
    Ok(mean_unchecked(values))
}

/// Variance with `ddof` delta degrees of freedom (`ddof = 1`: the unbiased sample variance, numpy
/// `var(ddof=1)`), computed in two passes for accuracy. Errors unless there are more than `ddof` values.
pub fn variance(values: &[f64], ddof: usize) -> Result<f64> {
    check_finite(values, "input")?;
    if values.len() <= ddof {
        return Err(StatsError::new(
            StatsErrorKind::TooFewObservations,
            format!("variance with ddof={ddof} needs more than {ddof} values, got {}", values.len()),
        ));
    }
    Ok(variance_unchecked(values, ddof))
}

/// Median (the mean of the two middle values for an even count), as numpy `median`.
pub fn median(values: &[f64]) -> Result<f64> {
    percentile(values, 50.0)
}

/// The `q`-th percentile (`q` in 0..=100) with numpy's default 'linear' method (Hyndman-Fan type 7):
/// sort, take the virtual index `(n - 1) * q / 100` and interpolate between its neighbours.
pub fn percentile(values: &[f64], q: f64) -> Result<f64> {
    check_finite(values, "input")?;
    if values.is_empty() {
        return Err(StatsError::new(StatsErrorKind::TooFewObservations, "percentile of no values"));
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile_of_sorted(&sorted, q)
}

/// [`percentile`] of values already sorted ascending (not checked).
pub fn percentile_of_sorted(sorted: &[f64], q: f64) -> Result<f64> {
    if !(0.0..=100.0).contains(&q) {
        return Err(StatsError::new(StatsErrorKind::InvalidParameter, format!("percentile {q} is not in [0, 100]")));
    }
    if sorted.is_empty() {
        return Err(StatsError::new(StatsErrorKind::TooFewObservations, "percentile of no values"));
    }
    // numpy divides the percentile by 100 first, then multiplies by n - 1.
    let virtual_index = (q / 100.0) * (sorted.len() - 1) as f64;
    let previous = virtual_index.floor();
    let gamma = virtual_index - previous;
    let previous_idx = (previous as usize).min(sorted.len() - 1);
    let next_idx = (previous_idx + 1).min(sorted.len() - 1);
    Ok(lerp(sorted[previous_idx], sorted[next_idx], gamma))
}

/// numpy's `_lerp`: interpolates from the nearer end so that the result is exact at both ends and monotone.
fn lerp(a: f64, b: f64, t: f64) -> f64 {
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// z-scores with the population standard deviation (ddof = 0, as `scipy.stats.zscore`). Errors when the
/// values are constant.
pub fn zscore(values: &[f64]) -> Result<Vec<f64>> {
    check_finite(values, "input")?;
    if values.len() < 2 {
        return Err(StatsError::new(StatsErrorKind::TooFewObservations, "z-scores need at least 2 values"));
    }
    let center = mean_unchecked(values);
    let spread = variance_unchecked(values, 0).sqrt();
    if spread == 0.0 || !spread.is_finite() {
        return Err(StatsError::new(StatsErrorKind::ZeroVariance, "values are constant, so z-scores are undefined"));
    }
    Ok(values.iter().map(|value| (value - center) / spread).collect())
}

pub(crate) fn mean_unchecked(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

pub(crate) fn variance_unchecked(values: &[f64], ddof: usize) -> f64 {
    let center = mean_unchecked(values);
    let sum_squares: f64 = values.iter().map(|value| (value - center) * (value - center)).sum();
    sum_squares / (values.len() - ddof) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_numpy_linear() {
        // np.percentile([1, 2, 3, 4], [0, 25, 50, 2.5, 100]) = [1, 1.75, 2.5, 1.075, 4]
        let values = [4.0, 1.0, 3.0, 2.0];
        for (q, expect) in [(0.0, 1.0), (25.0, 1.75), (50.0, 2.5), (2.5, 1.075), (100.0, 4.0)] {
            let got = percentile(&values, q).unwrap();
            assert!((got - expect).abs() < 1e-12, "q={q}: {got} vs {expect}");
        }
    }

    #[test]
    fn variance_needs_enough_values() {
        assert_eq!(variance(&[1.0], 1).unwrap_err().kind(), StatsErrorKind::TooFewObservations);
        assert_eq!(variance(&[1.0, f64::NAN], 1).unwrap_err().kind(), StatsErrorKind::NonFinite);
        assert!((variance(&[1.0, 2.0, 4.0], 1).unwrap() - 7.0 / 3.0).abs() < 1e-15);
    }

    #[test]
    fn zscore_of_constant_is_an_error() {
        assert_eq!(zscore(&[2.0, 2.0, 2.0]).unwrap_err().kind(), StatsErrorKind::ZeroVariance);
    }
}
