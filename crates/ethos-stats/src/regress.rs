//! Ordinary least squares residuals.

use nalgebra::{DMatrix, DVector};

use crate::error::{check_finite, Result, StatsError, StatsErrorKind};

/// Residuals of the OLS regression of `y` on an intercept and the `regressors` (each as long as `y`), solved by
/// SVD (nalgebra), as statsmodels `OLS(y, add_constant(X)).fit().resid`. Errors when lengths differ, values are
/// not finite, or the design matrix is rank-deficient (for example a constant regressor).
pub fn ols_residuals(y: &[f64], regressors: &[&[f64]]) -> Result<Vec<f64>> {
    check_finite(y, "response")?;
    let n_rows = y.len();
    for (regressor_idx, regressor) in regressors.iter().enumerate() {
        if regressor.len() != n_rows {
            return Err(StatsError::new(
                StatsErrorKind::LengthMismatch,
                format!("regressor {regressor_idx} has {} values but the response has {n_rows}", regressor.len()),
            ));
        }
        check_finite(regressor, &format!("regressor {regressor_idx}"))?;
    }
    let n_columns = regressors.len() + 1;
    if n_rows <= n_columns {
        return Err(StatsError::new(
            StatsErrorKind::TooFewObservations,
            format!("OLS with {n_columns} coefficients needs more than {n_columns} observations, got {n_rows}"),
        ));
    }
    let design =
        DMatrix::from_fn(n_rows, n_columns, |row, column| if column == 0 { 1.0 } else { regressors[column - 1][row] });
    let response = DVector::from_column_slice(y);
    let svd = design.clone().svd(true, true);
    let largest = svd.singular_values.max();
    let smallest = svd.singular_values.min();
    if smallest.is_nan() || smallest <= largest * 1e-12 {
        return Err(StatsError::new(
            StatsErrorKind::ZeroVariance,
            "the regressors are collinear with the intercept (a regressor is constant or duplicated)",
        ));
    }
    let coefficients = svd
        .solve(&response, 0.0)
        .map_err(|message| StatsError::new(StatsErrorKind::NoConvergence, format!("OLS solve failed: {message}")))?;
    let fitted = design * coefficients;
    Ok(y.iter().zip(fitted.iter()).map(|(observed, fit)| observed - fit).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_line_has_zero_residuals_and_constant_regressor_fails() {
        let x = [1.0, 2.0, 3.0, 4.0];
        let y = [3.0, 5.0, 7.0, 9.0];
        let residuals = ols_residuals(&y, &[&x]).unwrap();
        assert!(residuals.iter().all(|r| r.abs() < 1e-12), "{residuals:?}");
        assert!(ols_residuals(&y, &[&[1.0, 1.0, 1.0, 1.0]]).is_err());
    }
}
