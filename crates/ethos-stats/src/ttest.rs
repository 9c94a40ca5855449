//! Two-sided t-tests of B minus A: Welch's unequal-variance test and the paired test, with exact Student-t
//! p-values from the regularized incomplete beta function (statrs).

use statrs::function::beta::beta_reg;

use crate::describe::{mean_unchecked, variance_unchecked};
use crate::error::{check_finite, Result, StatsError, StatsErrorKind};

/// The outcome of a two-sided t-test of B minus A.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TTest {
    /// The t statistic; positive when B is larger.
    pub statistic: f64,
    /// Degrees of freedom (Welch-Satterthwaite for Welch, pairs minus one for paired).
    pub df: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Mean of B minus mean of A (for paired data, the mean of the differences).
    pub mean_difference: f64,
}

/// Welch's t-test of `b` minus `a` (scipy `ttest_ind(b, a, equal_var=False)`): t = (mean_b - mean_a) /
/// sqrt(s_a^2/n_a + s_b^2/n_b) with sample variances (ddof = 1) and Welch-Satterthwaite df =
/// (v_a + v_b)^2 / (v_a^2/(n_a - 1) + v_b^2/(n_b - 1)), v = s^2/n.
///
/// Errors when a group has fewer than 2 values, a value is not finite, or both groups have zero variance
/// (t is then undefined or infinite).
pub fn welch_t_test(a: &[f64], b: &[f64]) -> Result<TTest> {
    check_finite(a, "group A")?;
    check_finite(b, "group B")?;
    for (name, values) in [("A", a), ("B", b)] {
        if values.len() < 2 {
            return Err(StatsError::new(
                StatsErrorKind::TooFewObservations,
                format!("Welch's t-test needs at least 2 values per group, group {name} has {}", values.len()),
            ));
        }
    }
    let (n_a, n_b) = (a.len() as f64, b.len() as f64);
    let var_mean_a = variance_unchecked(a, 1) / n_a;
    let var_mean_b = variance_unchecked(b, 1) / n_b;
    let var_sum = var_mean_a + var_mean_b;
    if var_sum == 0.0 {
        return Err(StatsError::new(
            StatsErrorKind::ZeroVariance,
            "both groups have zero variance, so the t statistic is undefined",
        ));
    }
    let mean_difference = mean_unchecked(b) - mean_unchecked(a);
    let statistic = mean_difference / var_sum.sqrt();
    let df = var_sum * var_sum / (var_mean_a * var_mean_a / (n_a - 1.0) + var_mean_b * var_mean_b / (n_b - 1.0));
    Ok(TTest { statistic, df, p_value: student_t_two_sided_p(statistic, df)?, mean_difference })
}

/// Paired t-test of `b` minus `a` (scipy `ttest_rel(b, a)`): a one-sample t-test of the differences
/// `b[i] - a[i]` against 0 with n - 1 degrees of freedom.
///
/// Errors when the lengths differ, there are fewer than 2 pairs, a value is not finite, or the differences
/// are all equal (zero variance).
pub fn paired_t_test(a: &[f64], b: &[f64]) -> Result<TTest> {
    if a.len() != b.len() {
        return Err(StatsError::new(
            StatsErrorKind::LengthMismatch,
            format!("paired t-test needs equal lengths, got {} and {}", a.len(), b.len()),
        ));
    }
    check_finite(a, "group A")?;
    check_finite(b, "group B")?;
    let differences: Vec<f64> = a.iter().zip(b).map(|(x, y)| y - x).collect();
    one_sample_t_test(&differences)
}

/// One-sample t-test of `values` against 0 (scipy `ttest_1samp(values, 0)`).
pub fn one_sample_t_test(values: &[f64]) -> Result<TTest> {
    check_finite(values, "input")?;
    if values.len() < 2 {
        return Err(StatsError::new(
            StatsErrorKind::TooFewObservations,
            format!("a t-test needs at least 2 pairs, got {}", values.len()),
        ));
    }
    let n = values.len() as f64;
    let variance = variance_unchecked(values, 1);
    if variance == 0.0 {
        return Err(StatsError::new(
            StatsErrorKind::ZeroVariance,
            "all differences are equal (zero variance), so the t statistic is undefined",
        ));
    }
    let mean_difference = mean_unchecked(values);
    let statistic = mean_difference / (variance / n).sqrt();
    let df = n - 1.0;
    Ok(TTest { statistic, df, p_value: student_t_two_sided_p(statistic, df)?, mean_difference })
}

/// Two-sided p-value P(|T| >= |t|) of Student's t with `df` degrees of freedom, computed as the regularized
/// incomplete beta function I_x(df/2, 1/2) at x = df / (df + t^2), which keeps full relative precision for
/// small p-values (no 1 - cdf cancellation).
pub fn student_t_two_sided_p(statistic: f64, df: f64) -> Result<f64> {
    if df.is_nan() || df <= 0.0 || df.is_infinite() {
        return Err(StatsError::new(StatsErrorKind::InvalidParameter, format!("degrees of freedom {df} must be > 0")));
    }
    if statistic.is_nan() {
        return Err(StatsError::new(StatsErrorKind::NonFinite, "t statistic is NaN"));
    }
    if statistic.is_infinite() {
        return Ok(0.0);
    }
    let x = df / (df + statistic * statistic);
    Ok(beta_reg(df / 2.0, 0.5, x).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p_value_of_zero_is_one() {
        assert_eq!(student_t_two_sided_p(0.0, 5.0).unwrap(), 1.0);
    }

    #[test]
    fn one_value_per_group_is_an_error() {
        assert_eq!(welch_t_test(&[1.0], &[1.0, 2.0]).unwrap_err().kind(), StatsErrorKind::TooFewObservations);
    }

    #[test]
    fn paired_length_mismatch_is_an_error() {
        assert_eq!(paired_t_test(&[1.0, 2.0], &[1.0]).unwrap_err().kind(), StatsErrorKind::LengthMismatch);
    }
}
