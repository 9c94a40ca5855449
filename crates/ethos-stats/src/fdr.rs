//! Benjamini-Hochberg false discovery rate control.

use crate::error::{Result, StatsError, StatsErrorKind};

/// Benjamini-Hochberg q-values (adjusted p-values), as statsmodels `multipletests(p, method="fdr_bh")`:
/// sort ascending, q_(i) = min over j >= i of p_(j) m / j (the monotone step-up), capped at 1, returned in the
/// input order. Errors when a p-value is NaN or outside [0, 1]. An empty input gives an empty output.
pub fn bh_qvalues(p_values: &[f64]) -> Result<Vec<f64>> {
    if let Some(index) = p_values.iter().position(|p| !(0.0..=1.0).contains(p)) {
        return Err(StatsError::new(
            StatsErrorKind::InvalidParameter,
            format!("p-value {} at index {index} is not in [0, 1]", p_values[index]),
        ));
    }
    let n_tests = p_values.len();
    let mut order: Vec<usize> = (0..n_tests).collect();
    // A stable sort keeps ties in input order, like numpy's mergesort in statsmodels.
    order.sort_by(|&left, &right| p_values[left].total_cmp(&p_values[right]));
    let mut q_values = vec![0.0; n_tests];
    let mut running_min = f64::INFINITY;
    for rank_idx in (0..n_tests).rev() {
        let test_idx = order[rank_idx];
        let scaled = p_values[test_idx] / ((rank_idx + 1) as f64 / n_tests as f64);
        running_min = running_min.min(scaled);
        q_values[test_idx] = running_min.min(1.0);
    }
    Ok(q_values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_example() {
        // statsmodels: multipletests([0.01, 0.04, 0.03, 0.2], method="fdr_bh")[1] = [0.04, 0.05333.., 0.05333.., 0.2]
        let q = bh_qvalues(&[0.01, 0.04, 0.03, 0.2]).unwrap();
        let expect = [0.04, 0.16 / 3.0, 0.16 / 3.0, 0.2];
        for (got, want) in q.iter().zip(expect) {
            assert!((got - want).abs() < 1e-15, "{q:?}");
        }
        assert!(bh_qvalues(&[f64::NAN]).is_err());
        assert!(bh_qvalues(&[]).unwrap().is_empty());
    }
}
