//! Ranks with ties averaged, Pearson and Spearman correlation.

use crate::describe::mean_unchecked;
use crate::error::{check_finite, Result, StatsError, StatsErrorKind};

/// 1-based ranks with tied values given the average of their ranks (scipy `rankdata(method="average")`).
/// Errors on a non-finite value.
pub fn average_ranks(values: &[f64]) -> Result<Vec<f64>> {
    check_finite(values, "input")?;
    Ok(average_ranks_unchecked(values))
}

pub(crate) fn average_ranks_unchecked(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&left, &right| values[left].total_cmp(&values[right]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Positions start..end (0-based) share the mean of the 1-based ranks start+1..=end.
        let shared_rank = (start + end + 1) as f64 / 2.0;
        for &value_idx in &order[start..end] {
            ranks[value_idx] = shared_rank;
        }
        start = end;
    }
    ranks
}

/// Pearson correlation. Errors when lengths differ, there are fewer than 2 values, a value is not finite, or
/// either input is constant.
pub fn pearson(x: &[f64], y: &[f64]) -> Result<f64> {
    if x.len() != y.len() {
        return Err(StatsError::new(
            StatsErrorKind::LengthMismatch,
            format!("correlation needs equal lengths, got {} and {}", x.len(), y.len()),
        ));
    }
    check_finite(x, "x")?;
    check_finite(y, "y")?;
    if x.len() < 2 {
        return Err(StatsError::new(StatsErrorKind::TooFewObservations, "correlation needs at least 2 values"));
    }
    let x_centered = centered_unit(x).ok_or_else(|| constant("x"))?;
    let y_centered = centered_unit(y).ok_or_else(|| constant("y"))?;
    Ok(dot(&x_centered, &y_centered).clamp(-1.0, 1.0))
}

/// Spearman rank correlation: Pearson correlation of average ranks (scipy `spearmanr`).
pub fn spearman(x: &[f64], y: &[f64]) -> Result<f64> {
    check_finite(x, "x")?;
    check_finite(y, "y")?;
    pearson(&average_ranks_unchecked(x), &average_ranks_unchecked(y))
}

/// The Spearman correlation matrix of `columns` (each a slice of equal length), with 1 on the diagonal.
/// Errors name the first constant column by index.
pub fn spearman_matrix(columns: &[Vec<f64>]) -> Result<Vec<Vec<f64>>> {
    let mut unit_ranks = Vec::with_capacity(columns.len());
    for (column_idx, column) in columns.iter().enumerate() {
        check_finite(column, &format!("column {column_idx}"))?;
        if column.len() != columns[0].len() {
            return Err(StatsError::new(StatsErrorKind::LengthMismatch, "columns have different lengths"));
        }
        let ranks = average_ranks_unchecked(column);
        unit_ranks.push(centered_unit(&ranks).ok_or_else(|| constant(&format!("column {column_idx}")))?);
    }
    Ok(correlation_of_units(&unit_ranks))
}

/// The matrix of dot products of centered unit vectors, clamped to [-1, 1], with an exact 1 on the diagonal.
pub(crate) fn correlation_of_units(units: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n_columns = units.len();
    let mut matrix = vec![vec![1.0; n_columns]; n_columns];
    for left in 0..n_columns {
        for right in left + 1..n_columns {
            let value = dot(&units[left], &units[right]).clamp(-1.0, 1.0);
            matrix[left][right] = value;
            matrix[right][left] = value;
        }
    }
    matrix
}

/// `values` minus their mean, divided by its Euclidean norm; `None` when the values are constant.
pub(crate) fn centered_unit(values: &[f64]) -> Option<Vec<f64>> {
    let center = mean_unchecked(values);
    let centered: Vec<f64> = values.iter().map(|value| value - center).collect();
    let norm = dot(&centered, &centered).sqrt();
    // Constant input gives an exactly zero (or rounding-level) norm; both mean the correlation is undefined.
    let scale = values.iter().fold(0.0f64, |acc, value| acc.max(value.abs())).max(f64::MIN_POSITIVE);
    if norm.is_nan() || norm <= scale * 1e-14 * (values.len() as f64).sqrt() {
        return None;
    }
    Some(centered.into_iter().map(|value| value / norm).collect())
}

pub(crate) fn dot(x: &[f64], y: &[f64]) -> f64 {
    x.iter().zip(y).map(|(a, b)| a * b).sum()
}

fn constant(name: &str) -> StatsError {
    StatsError::new(StatsErrorKind::ZeroVariance, format!("{name} is constant, so its correlation is undefined"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_get_average_ranks() {
        assert_eq!(average_ranks(&[10.0, 20.0, 10.0, 30.0]).unwrap(), vec![1.5, 3.0, 1.5, 4.0]);
    }

    #[test]
    fn spearman_of_monotone_is_one_and_constant_is_error() {
        assert!((spearman(&[1.0, 2.0, 3.0], &[1.0, 4.0, 9.0]).unwrap() - 1.0).abs() < 1e-15);
        assert_eq!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).unwrap_err().kind(), StatsErrorKind::ZeroVariance);
    }
}
