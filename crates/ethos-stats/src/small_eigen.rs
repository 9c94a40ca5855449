//! Eigen-solvers for the inner loop of the permutation nulls.
//!
//! Each permutation needs the top eigenvalue of an n x n Gram matrix G (n = models) and, for each column j, the
//! top eigenvector of the rank-one downdate G - z_j z_j'. The full eigen-decomposition G = Q diag(lambda) Q' is
//! computed once per permutation (nalgebra); each downdate is then solved by the secular equation of Golub
//! (1973) / Bunch-Nielsen-Sorensen (1978): the eigenvalues mu of diag(lambda) - w w' (w = Q'z) are the roots of
//! f(mu) = 1 - sum_k w_k^2 / (lambda_k - mu), the largest lies in [lambda_2, lambda_1] (interlacing), and its
//! eigenvector is Q (diag(lambda) - mu)^-1 w. As in LAPACK `dlaed4` the root is sought as an offset tau from
//! lambda_1, so that lambda_1 - mu keeps full relative precision. Degenerate cases (w_1 = 0, lambda_1 = lambda_2)
//! fall back to a full decomposition of the downdated matrix. This costs O(n^2) per column instead of O(n^3).

use nalgebra::DMatrix;

/// The eigen-decomposition of a symmetric matrix, eigenvalues descending, eigenvector `k` at
/// `vectors[k * n .. (k + 1) * n]`.
pub(crate) struct SmallEigen {
    n: usize,
    values: Vec<f64>,
    vectors: Vec<f64>,
}

impl SmallEigen {
    /// Decomposes the symmetric `n x n` row-major `matrix` (nalgebra's symmetric QR algorithm).
    pub(crate) fn new(matrix: &[f64], n: usize) -> Self {
        let eigen = DMatrix::from_row_slice(n, n, matrix).symmetric_eigen();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&left, &right| eigen.eigenvalues[right].total_cmp(&eigen.eigenvalues[left]));
        let values = order.iter().map(|&k| eigen.eigenvalues[k]).collect();
        let mut vectors = Vec::with_capacity(n * n);
        for &k in &order {
            vectors.extend(eigen.eigenvectors.column(k).iter());
        }
        SmallEigen { n, values, vectors }
    }

    /// Largest eigenvalue.
    pub(crate) fn top_value(&self) -> f64 {
        self.values[0]
    }

    /// Writes into `vector` an eigenvector (not normalized, sign arbitrary) of the largest eigenvalue of
    /// `matrix - z z'`, where `self` decomposes `matrix`. `w` is scratch of length n.
    pub(crate) fn top_vector_of_downdate(&self, z: &[f64], w: &mut [f64], vector: &mut [f64]) {
        let n = self.n;
        for (k, w_k) in w.iter_mut().enumerate() {
            *w_k = self.vectors[k * n..(k + 1) * n].iter().zip(z).map(|(q, z)| q * z).sum();
        }
        let scale = self.values[0].abs().max(f64::MIN_POSITIVE);
        let degenerate =
            n < 2 || w[0] == 0.0 || w[1] == 0.0 || self.values[0] - self.values[1] <= 8.0 * f64::EPSILON * scale;
        let Some(tau) = (!degenerate).then(|| self.secular_root(w)).flatten() else {
            self.full_downdate(z, vector);
            return;
        };
        vector.iter_mut().for_each(|value| *value = 0.0);
        let top = self.values[0];
        for ((value, w_k), eigenvector) in self.values.iter().zip(w.iter()).zip(self.vectors.chunks_exact(n)) {
            let coefficient = w_k / ((value - top) - tau);
            for (out, q) in vector.iter_mut().zip(eigenvector) {
                *out += coefficient * q;
            }
        }
    }

    /// The root tau in (delta_1, 0) of f(tau) = 1 - sum_k w_k^2 / (delta_k - tau), delta_k = lambda_k - lambda_1.
    /// f falls from +inf to -inf between its poles delta_1 and 0, so Newton's method is applied to the smooth
    /// h(tau) = tau (delta_1 - tau) f(tau), which has the same sign and root but no poles in the bracket, and is
    /// safeguarded by bisection. It converges in a handful of steps.
    fn secular_root(&self, w: &[f64]) -> Option<f64> {
        let top = self.values[0];
        let second = self.values[1] - top;
        let mut low = second;
        let mut high = 0.0f64;
        // First-order perturbation theory puts the top eigenvalue of the downdate near lambda_1 - w_1^2.
        let first_order = -w[0] * w[0];
        let mut tau = if first_order > low && first_order < high { first_order } else { 0.5 * low };
        for _ in 0..100 {
            let mut f = 1.0;
            let mut slope = 0.0;
            let mut magnitude = 1.0;
            for (value, w_k) in self.values.iter().zip(w) {
                let inverse_gap = 1.0 / ((value - top) - tau);
                let term = w_k * w_k * inverse_gap;
                f -= term;
                slope -= term * inverse_gap;
                magnitude += term.abs();
            }
            // Stop once f is as small as its own rounding error (LAPACK dlaed4's test).
            if f.abs() <= 8.0 * f64::EPSILON * magnitude {
                return Some(tau);
            }
            if f > 0.0 {
                low = tau;
            } else if f < 0.0 {
                high = tau;
            } else {
                return Some(tau);
            }
            let poles = tau * (second - tau);
            let h = poles * f;
            let h_slope = (second - 2.0 * tau) * f + poles * slope;
            let mut next = tau - h / h_slope;
            if !(next > low && next < high) {
                next = 0.5 * (low + high);
            }
            let tolerance = 2.0 * f64::EPSILON * tau.abs().max(next.abs());
            if (next - tau).abs() <= tolerance || high - low <= tolerance {
                return Some(next);
            }
            tau = next;
        }
        None
    }

    fn full_downdate(&self, z: &[f64], vector: &mut [f64]) {
        let n = self.n;
        // Rebuild matrix - z z' from the decomposition and decompose it directly.
        let mut downdated = vec![0.0; n * n];
        for row in 0..n {
            for column in 0..n {
                let mut entry = -z[row] * z[column];
                for k in 0..n {
                    entry += self.values[k] * self.vectors[k * n + row] * self.vectors[k * n + column];
                }
                downdated[row * n + column] = entry;
            }
        }
        let eigen = SmallEigen::new(&downdated, n);
        vector.copy_from_slice(&eigen.vectors[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downdate_matches_full_decomposition() {
        let n = 7;
        let columns: Vec<Vec<f64>> =
            (0..12).map(|j| (0..n).map(|i| ((i * 7 + j * 3) as f64 * 0.731).sin()).collect()).collect();
        let mut gram = vec![0.0; n * n];
        for column in &columns {
            for row in 0..n {
                for other in 0..n {
                    gram[row * n + other] += column[row] * column[other];
                }
            }
        }
        let eigen = SmallEigen::new(&gram, n);
        for column in &columns {
            let mut w = vec![0.0; n];
            let mut fast = vec![0.0; n];
            eigen.top_vector_of_downdate(column, &mut w, &mut fast);
            let mut direct = vec![0.0; n];
            eigen.full_downdate(column, &mut direct);
            let norm = fast.iter().map(|v| v * v).sum::<f64>().sqrt();
            let cosine: f64 = fast.iter().zip(&direct).map(|(a, b)| a * b).sum::<f64>() / norm;
            assert!((cosine.abs() - 1.0).abs() < 1e-12, "cosine {cosine}");
        }
    }
}
