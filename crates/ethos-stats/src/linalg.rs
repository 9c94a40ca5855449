//! Symmetric eigen-decomposition (nalgebra) and principal components of z-scored columns.

use nalgebra::DMatrix;

use crate::describe::zscore;
use crate::error::{Result, StatsError, StatsErrorKind};
use crate::rank::dot;

/// Eigenvalues in descending order with their unit eigenvectors.
#[derive(Debug, Clone, PartialEq)]
pub struct SymmetricEigen {
    values: Vec<f64>,
    vectors: Vec<Vec<f64>>,
}

impl SymmetricEigen {
    /// Eigenvalues, largest first.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// Unit eigenvectors; `vectors()[k]` belongs to `values()[k]` (its sign is arbitrary).
    pub fn vectors(&self) -> &[Vec<f64>] {
        &self.vectors
    }
}

/// Eigen-decomposition of a symmetric matrix given as rows (only the lower triangle is read). Errors when the
/// matrix is not square, has a non-finite entry or the QR iteration does not converge.
pub fn symmetric_eigen(rows: &[Vec<f64>]) -> Result<SymmetricEigen> {
    let n_rows = rows.len();
    if n_rows == 0 || rows.iter().any(|row| row.len() != n_rows) {
        return Err(StatsError::new(StatsErrorKind::LengthMismatch, "eigen-decomposition needs a square matrix"));
    }
    if rows.iter().flatten().any(|value| !value.is_finite()) {
        return Err(StatsError::new(StatsErrorKind::NonFinite, "matrix has a non-finite entry"));
    }
    let matrix = DMatrix::from_fn(n_rows, n_rows, |row, column| rows[row][column]);
    let eigen = nalgebra::SymmetricEigen::try_new(matrix, f64::EPSILON, 10_000).ok_or_else(|| {
        StatsError::new(StatsErrorKind::NoConvergence, "symmetric eigen-decomposition did not converge")
    })?;
    let mut order: Vec<usize> = (0..n_rows).collect();
    order.sort_by(|&left, &right| eigen.eigenvalues[right].total_cmp(&eigen.eigenvalues[left]));
    Ok(SymmetricEigen {
        values: order.iter().map(|&k| eigen.eigenvalues[k]).collect(),
        vectors: order.iter().map(|&k| eigen.eigenvectors.column(k).iter().copied().collect()).collect(),
    })
}

/// Principal components of a set of columns (variables) observed on the same rows (models).
#[derive(Debug, Clone, PartialEq)]
pub struct Pca {
    eigenvalues: Vec<f64>,
    explained: Vec<f64>,
    pc1_loadings: Vec<f64>,
    pc1_scores: Vec<f64>,
}

impl Pca {
    /// Eigenvalues of the correlation matrix, largest first.
    pub fn eigenvalues(&self) -> &[f64] {
        &self.eigenvalues
    }

    /// Share of the trace of each eigenvalue (the first is the PC1 share).
    pub fn explained(&self) -> &[f64] {
        &self.explained
    }

    /// PC1 share of variance: largest eigenvalue / trace.
    pub fn pc1_explained(&self) -> f64 {
        self.explained[0]
    }

    /// Unit PC1 loadings per column, signed so that they sum to a non-negative number.
    pub fn pc1_loadings(&self) -> &[f64] {
        &self.pc1_loadings
    }

    /// PC1 score of each row: z-scored row times the loadings.
    pub fn pc1_scores(&self) -> &[f64] {
        &self.pc1_scores
    }
}

/// PCA of the correlation matrix: z-score each column (ddof = 0), form the correlation matrix Z'Z / n, and
/// take its eigen-decomposition. Errors name a constant column by index.
pub fn pca(columns: &[Vec<f64>]) -> Result<Pca> {
    let z_columns = columns
        .iter()
        .enumerate()
        .map(|(column_idx, column)| zscore(column).map_err(|err| err.with_context(format!("column {column_idx}"))))
        .collect::<Result<Vec<_>>>()?;
    pca_of_zscores(&z_columns)
}

/// [`pca`] of columns that are already z-scored (mean 0, population variance 1).
pub(crate) fn pca_of_zscores(z_columns: &[Vec<f64>]) -> Result<Pca> {
    let n_columns = z_columns.len();
    if n_columns == 0 {
        return Err(StatsError::new(StatsErrorKind::TooFewObservations, "PCA needs at least one column"));
    }
    let n_rows = z_columns[0].len() as f64;
    let correlation: Vec<Vec<f64>> = (0..n_columns)
        .map(|left| (0..n_columns).map(|right| dot(&z_columns[left], &z_columns[right]) / n_rows).collect())
        .collect();
    let trace: f64 = (0..n_columns).map(|column_idx| correlation[column_idx][column_idx]).sum();
    let eigen = symmetric_eigen(&correlation)?;
    let mut loadings = eigen.vectors()[0].clone();
    if loadings.iter().sum::<f64>() < 0.0 {
        loadings.iter_mut().for_each(|value| *value = -*value);
    }
    let pc1_scores = (0..z_columns[0].len())
        .map(|row_idx| z_columns.iter().zip(&loadings).map(|(column, loading)| column[row_idx] * loading).sum())
        .collect();
    Ok(Pca {
        explained: eigen.values().iter().map(|value| value / trace).collect(),
        eigenvalues: eigen.values,
        pc1_loadings: loadings,
        pc1_scores,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eigen_of_diagonal_is_sorted() {
        let eigen = symmetric_eigen(&[vec![1.0, 0.0], vec![0.0, 3.0]]).unwrap();
        assert_eq!(eigen.values(), &[3.0, 1.0]);
        assert!((eigen.vectors()[0][1].abs() - 1.0).abs() < 1e-15);
    }
}
