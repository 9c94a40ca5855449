//! Shared structure of a models x evaluations matrix: mean pairwise Spearman, PC1 share, leave-one-out
//! prediction, average-linkage clustering, permutation nulls and capability residualization (DESIGN.md,
//! "Statistics").
//!
//! The observed statistics are computed directly from their definitions. The permutation nulls use an
//! equivalent fast path (see [`statistics_under_permutation`]) that is tested against the direct one:
//! - a permutation of a column permutes its ranks and z-scores, so both are computed once;
//! - the mean off-diagonal Spearman is (|sum of unit rank columns|^2 - p) / (p (p - 1));
//! - the nonzero eigenvalues of the p x p correlation matrix Z'Z/n are those of the n x n Gram matrix ZZ'/n,
//!   and PC1 scores of Z are proportional to the top eigenvector of ZZ', so each leave-one-out PC1 is the top
//!   eigenvector of a rank-one downdate ZZ' - z_j z_j' of size n (models), not p - 1 (evaluations).

use rand::seq::SliceRandom;
use rayon::prelude::*;

use crate::cluster::{average_linkage, Linkage};
use crate::describe::{mean_unchecked, percentile_of_sorted, zscore};
use crate::error::{check_finite, Result, StatsError, StatsErrorKind};
use crate::linalg::{pca_of_zscores, Pca};
use crate::rank::{average_ranks_unchecked, centered_unit, correlation_of_units, dot};
use crate::regress::ols_residuals;
use crate::rng::replicate_rng;
use crate::small_eigen::SmallEigen;

/// Which direction of an evaluation is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Larger scores are better.
    Higher,
    /// Smaller scores are better; the column is negated before analysis.
    Lower,
}

/// One evaluation's scores over the models of a matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalColumn {
    /// Evaluation name.
    pub name: String,
    /// Which direction is better.
    pub direction: Direction,
    /// One score per model, in the order of the matrix's models.
    pub values: Vec<f64>,
}

/// A validated models x evaluations matrix, every column oriented higher-is-better.
///
/// Invariants: at least 3 models and 2 evaluations, unique names, finite values, no constant column.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalMatrix {
    models: Vec<String>,
    evals: Vec<String>,
    columns: Vec<Vec<f64>>,
}

impl EvalMatrix {
    /// Validates and orients the columns (negating those where lower is better).
    pub fn new(models: Vec<String>, columns: Vec<EvalColumn>) -> Result<Self> {
        let n_models = models.len();
        if n_models < 3 {
            return Err(StatsError::new(
                StatsErrorKind::TooFewObservations,
                format!("the structure analysis needs at least 3 models, got {n_models}"),
            ));
        }
        if columns.len() < 2 {
            return Err(StatsError::new(
                StatsErrorKind::TooFewObservations,
                format!("the structure analysis needs at least 2 evaluations, got {}", columns.len()),
            ));
        }
        check_unique(&models, "model")?;
        let evals: Vec<String> = columns.iter().map(|column| column.name.clone()).collect();
        check_unique(&evals, "evaluation")?;
        let mut oriented = Vec::with_capacity(columns.len());
        for column in columns {
            if column.values.len() != n_models {
                return Err(StatsError::new(
                    StatsErrorKind::LengthMismatch,
                    format!("evaluation `{}` has {} values for {n_models} models", column.name, column.values.len()),
                ));
            }
            check_finite(&column.values, &format!("evaluation `{}`", column.name))?;
            if column.values.iter().all(|&value| value == column.values[0]) {
                return Err(StatsError::new(
                    StatsErrorKind::ZeroVariance,
                    format!(
                        "evaluation `{}` has the same score for every model, so its Spearman correlation is undefined",
                        column.name
                    ),
                ));
            }
            let sign = if column.direction == Direction::Lower { -1.0 } else { 1.0 };
            oriented.push(column.values.iter().map(|value| sign * value).collect());
        }
        Ok(EvalMatrix { models, evals, columns: oriented })
    }

    /// Model names (rows).
    pub fn models(&self) -> &[String] {
        &self.models
    }

    /// Evaluation names (columns).
    pub fn evals(&self) -> &[String] {
        &self.evals
    }

    /// Oriented columns, one per evaluation.
    pub fn columns(&self) -> &[Vec<f64>] {
        &self.columns
    }

    /// Capability residualization: z-score each column, regress it by OLS with intercept on the per-model mean
    /// z-score of the `capability` columns (each oriented higher-is-better, one value per model in this
    /// matrix's model order), and re-z-score the residuals. Errors when a capability column is constant or
    /// not finite, or a residual column is constant (an evaluation entirely explained by capability).
    pub fn residualize(&self, capability: &[EvalColumn]) -> Result<EvalMatrix> {
        if capability.is_empty() {
            return Err(StatsError::new(StatsErrorKind::TooFewObservations, "no capability columns"));
        }
        let n_models = self.models.len();
        let mut capability_mean = vec![0.0; n_models];
        for column in capability {
            if column.values.len() != n_models {
                return Err(StatsError::new(
                    StatsErrorKind::LengthMismatch,
                    format!("capability `{}` has {} values for {n_models} models", column.name, column.values.len()),
                ));
            }
            let sign = if column.direction == Direction::Lower { -1.0 } else { 1.0 };
            let oriented: Vec<f64> = column.values.iter().map(|value| sign * value).collect();
            let z = zscore(&oriented).map_err(|err| err.with_context(format!("capability `{}`", column.name)))?;
            for (total, value) in capability_mean.iter_mut().zip(z) {
                *total += value / capability.len() as f64;
            }
        }
        let mut residual_columns = Vec::with_capacity(self.columns.len());
        for (name, column) in self.evals.iter().zip(&self.columns) {
            let context = |err: StatsError| err.with_context(format!("evaluation `{name}`"));
            let z = zscore(column).map_err(context)?;
            let residuals = ols_residuals(&z, &[&capability_mean]).map_err(context)?;
            let values = zscore(&residuals).map_err(|err| {
                StatsError::new(
                    err.kind(),
                    format!("evaluation `{name}`: the residuals after removing capability are constant"),
                )
            })?;
            residual_columns.push(EvalColumn { name: name.clone(), direction: Direction::Higher, values });
        }
        EvalMatrix::new(self.models.clone(), residual_columns)
    }
}

fn check_unique(names: &[String], what: &str) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for name in names {
        if !seen.insert(name.as_str()) {
            return Err(StatsError::new(StatsErrorKind::InvalidParameter, format!("{what} `{name}` occurs twice")));
        }
    }
    Ok(())
}

/// How many permutations for the nulls, and the seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StructureConfig {
    /// Number of permutations of the null (0: no nulls).
    pub n_permutations: usize,
    /// Seed; permutation `k` uses the ChaCha stream `k` of this seed.
    pub seed: u64,
}

/// The three statistics that have permutation nulls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StructureStatistics {
    /// Mean Spearman correlation over all pairs of columns.
    pub mean_spearman: f64,
    /// Largest eigenvalue / trace of the correlation matrix of the z-scored columns.
    pub pc1_explained: f64,
    /// Mean over columns of the Spearman correlation between the column and the PC1 scores of the others.
    pub loo_mean_spearman: f64,
}

/// A permutation null distribution of one statistic.
#[derive(Debug, Clone, PartialEq)]
pub struct NullDistribution {
    /// 2.5th percentile (numpy 'linear').
    pub low: f64,
    /// 97.5th percentile (numpy 'linear').
    pub high: f64,
    /// Mean of the null.
    pub mean: f64,
    /// One-sided permutation p-value of the observed value: (1 + #{null >= observed}) / (1 + permutations), where
    /// `>=` allows 1e-12 relative for rounding.
    pub p_value: f64,
    /// The null values in permutation order.
    pub samples: Vec<f64>,
}

/// Nulls of the three statistics from the same permutations.
#[derive(Debug, Clone, PartialEq)]
pub struct StructureNulls {
    /// Null of the mean Spearman.
    pub mean_spearman: NullDistribution,
    /// Null of the PC1 share.
    pub pc1_explained: NullDistribution,
    /// Null of the leave-one-out mean Spearman.
    pub loo_mean_spearman: NullDistribution,
}

/// Everything the structure analysis computes (and a figure needs).
#[derive(Debug, Clone, PartialEq)]
pub struct StructureReport {
    /// The observed statistics.
    pub statistics: StructureStatistics,
    /// Spearman matrix of the columns, in column order.
    pub spearman_matrix: Vec<Vec<f64>>,
    /// PCA of the z-scored columns.
    pub pca: Pca,
    /// Per column: Spearman of the column with the PC1 scores of the other columns.
    pub loo_spearman: Vec<f64>,
    /// Average linkage on 1 - rho.
    pub linkage: Linkage,
    /// Permutation nulls, when permutations were asked for.
    pub nulls: Option<StructureNulls>,
}

/// Runs the whole structure analysis of `matrix`: observed statistics, clustering and (if
/// `config.n_permutations > 0`) permutation nulls that shuffle each column independently across models.
pub fn analyze_structure(matrix: &EvalMatrix, config: &StructureConfig) -> Result<StructureReport> {
    let prepared = Prepared::new(matrix)?;
    let spearman_matrix = correlation_of_units(&prepared.unit_rank_columns());
    let n_evals = matrix.columns.len();
    let mut off_diagonal_sum = 0.0;
    for (left, row) in spearman_matrix.iter().enumerate() {
        off_diagonal_sum += row[left + 1..].iter().sum::<f64>();
    }
    let mean_spearman = off_diagonal_sum / (n_evals * (n_evals - 1) / 2) as f64;
    let z_columns = prepared.z_columns();
    let pca = pca_of_zscores(&z_columns)?;
    let loo_spearman = (0..n_evals)
        .map(|held_out| {
            let others: Vec<Vec<f64>> =
                z_columns.iter().enumerate().filter(|(idx, _)| *idx != held_out).map(|(_, c)| c.clone()).collect();
            let scores = pca_of_zscores(&others)?.pc1_scores().to_vec();
            crate::rank::spearman(&scores, &matrix.columns[held_out])
                .map_err(|err| err.with_context(format!("leave-one-out of `{}`", matrix.evals[held_out])))
        })
        .collect::<Result<Vec<f64>>>()?;
    let distances: Vec<Vec<f64>> =
        spearman_matrix.iter().map(|row| row.iter().map(|rho| (1.0 - rho).max(0.0)).collect()).collect();
    let linkage = average_linkage(&distances)?;
    let statistics = StructureStatistics {
        mean_spearman,
        pc1_explained: pca.pc1_explained(),
        loo_mean_spearman: mean_unchecked(&loo_spearman),
    };
    let nulls = if config.n_permutations > 0 { Some(prepared.nulls(config, &statistics)?) } else { None };
    Ok(StructureReport { statistics, spearman_matrix, pca, loo_spearman, linkage, nulls })
}

/// The three statistics of `matrix` after permuting column `j` by `permutations[j]` (the permuted column's
/// value at model `i` is the original value at model `permutations[j][i]`), by the fast path the nulls use.
pub fn statistics_under_permutation(matrix: &EvalMatrix, permutations: &[Vec<usize>]) -> Result<StructureStatistics> {
    let prepared = Prepared::new(matrix)?;
    if permutations.len() != prepared.n_evals {
        return Err(StatsError::new(StatsErrorKind::LengthMismatch, "need one permutation per column"));
    }
    for permutation in permutations {
        let mut sorted = permutation.clone();
        sorted.sort_unstable();
        if sorted != (0..prepared.n_models).collect::<Vec<_>>() {
            return Err(StatsError::new(StatsErrorKind::InvalidParameter, "not a permutation of the models"));
        }
    }
    let mut workspace = Workspace::new(prepared.n_models, prepared.n_evals);
    for (column_idx, permutation) in permutations.iter().enumerate() {
        workspace.permutation_of(column_idx).copy_from_slice(permutation);
    }
    Ok(prepared.permuted_statistics(&mut workspace))
}

/// Per-column quantities that a permutation only reorders. Column-major: column `j` is `[j * n .. (j + 1) * n]`.
struct Prepared {
    n_models: usize,
    n_evals: usize,
    z: Vec<f64>,
    unit_ranks: Vec<f64>,
    z_square_sum: f64,
    unit_rank_square_sum: f64,
}

/// Buffers reused across the permutations of one thread.
struct Workspace {
    n_models: usize,
    permutations: Vec<usize>,
    z: Vec<f64>,
    unit_ranks: Vec<f64>,
    gram: Vec<f64>,
    z_row_sums: Vec<f64>,
    unit_rank_row_sums: Vec<f64>,
    secular_weights: Vec<f64>,
    scores: Vec<f64>,
    score_ranks: Vec<f64>,
}

impl Workspace {
    fn new(n_models: usize, n_evals: usize) -> Self {
        let mut permutations = Vec::with_capacity(n_models * n_evals);
        for _ in 0..n_evals {
            permutations.extend(0..n_models);
        }
        Workspace {
            n_models,
            permutations,
            z: vec![0.0; n_models * n_evals],
            unit_ranks: vec![0.0; n_models * n_evals],
            gram: vec![0.0; n_models * n_models],
            z_row_sums: vec![0.0; n_models],
            unit_rank_row_sums: vec![0.0; n_models],
            secular_weights: vec![0.0; n_models],
            scores: vec![0.0; n_models],
            score_ranks: vec![0.0; n_models],
        }
    }

    fn permutation_of(&mut self, column_idx: usize) -> &mut [usize] {
        &mut self.permutations[column_idx * self.n_models..(column_idx + 1) * self.n_models]
    }
}

impl Prepared {
    fn new(matrix: &EvalMatrix) -> Result<Self> {
        let n_models = matrix.models.len();
        let n_evals = matrix.columns.len();
        let mut z = Vec::with_capacity(n_models * n_evals);
        let mut unit_ranks = Vec::with_capacity(n_models * n_evals);
        for (name, column) in matrix.evals.iter().zip(&matrix.columns) {
            z.extend(zscore(column).map_err(|err| err.with_context(format!("evaluation `{name}`")))?);
            let ranks = average_ranks_unchecked(column);
            unit_ranks.extend(centered_unit(&ranks).ok_or_else(|| {
                StatsError::new(StatsErrorKind::ZeroVariance, format!("evaluation `{name}` is constant"))
            })?);
        }
        let z_square_sum = dot(&z, &z);
        let unit_rank_square_sum = dot(&unit_ranks, &unit_ranks);
        Ok(Prepared { n_models, n_evals, z, unit_ranks, z_square_sum, unit_rank_square_sum })
    }

    fn z_columns(&self) -> Vec<Vec<f64>> {
        self.z.chunks_exact(self.n_models).map(<[f64]>::to_vec).collect()
    }

    fn unit_rank_columns(&self) -> Vec<Vec<f64>> {
        self.unit_ranks.chunks_exact(self.n_models).map(<[f64]>::to_vec).collect()
    }

    fn nulls(&self, config: &StructureConfig, observed: &StructureStatistics) -> Result<StructureNulls> {
        let samples: Vec<StructureStatistics> = (0..config.n_permutations)
            .into_par_iter()
            .with_min_len(16)
            .map_init(
                || Workspace::new(self.n_models, self.n_evals),
                |workspace, permutation_idx| {
                    let mut rng = replicate_rng(config.seed, STRUCTURE_PURPOSE, permutation_idx as u64);
                    for column_idx in 0..self.n_evals {
                        let permutation = workspace.permutation_of(column_idx);
                        for (model_idx, slot) in permutation.iter_mut().enumerate() {
                            *slot = model_idx;
                        }
                        permutation.shuffle(&mut rng);
                    }
                    self.permuted_statistics(workspace)
                },
            )
            .collect();
        Ok(StructureNulls {
            mean_spearman: null_distribution(
                samples.iter().map(|s| s.mean_spearman).collect(),
                observed.mean_spearman,
            )?,
            pc1_explained: null_distribution(
                samples.iter().map(|s| s.pc1_explained).collect(),
                observed.pc1_explained,
            )?,
            loo_mean_spearman: null_distribution(
                samples.iter().map(|s| s.loo_mean_spearman).collect(),
                observed.loo_mean_spearman,
            )?,
        })
    }

    /// The statistics for the permutations stored in `workspace.permutations`.
    fn permuted_statistics(&self, workspace: &mut Workspace) -> StructureStatistics {
        let n_models = self.n_models;
        for column_idx in 0..self.n_evals {
            let offset = column_idx * n_models;
            for model_idx in 0..n_models {
                let source = offset + workspace.permutations[offset + model_idx];
                workspace.z[offset + model_idx] = self.z[source];
                workspace.unit_ranks[offset + model_idx] = self.unit_ranks[source];
            }
        }
        workspace.z_row_sums.iter_mut().for_each(|value| *value = 0.0);
        workspace.unit_rank_row_sums.iter_mut().for_each(|value| *value = 0.0);
        workspace.gram.iter_mut().for_each(|value| *value = 0.0);
        for column_idx in 0..self.n_evals {
            let z_column = &workspace.z[column_idx * n_models..(column_idx + 1) * n_models];
            let rank_column = &workspace.unit_ranks[column_idx * n_models..(column_idx + 1) * n_models];
            for model_idx in 0..n_models {
                workspace.z_row_sums[model_idx] += z_column[model_idx];
                workspace.unit_rank_row_sums[model_idx] += rank_column[model_idx];
            }
            for row in 0..n_models {
                let scaled = z_column[row];
                let gram_row = &mut workspace.gram[row * n_models..(row + 1) * n_models];
                for (entry, &value) in gram_row[..=row].iter_mut().zip(z_column) {
                    *entry += scaled * value;
                }
            }
        }
        for row in 0..n_models {
            for column in row + 1..n_models {
                workspace.gram[row * n_models + column] = workspace.gram[column * n_models + row];
            }
        }
        let n_evals = self.n_evals as f64;
        let rank_sum_square = dot(&workspace.unit_rank_row_sums, &workspace.unit_rank_row_sums);
        let mean_spearman = (rank_sum_square - self.unit_rank_square_sum) / (n_evals * (n_evals - 1.0));

        let eigen = SmallEigen::new(&workspace.gram, n_models);
        // trace(Z'Z / n) = sum of squares / n, and lambda_max(Z'Z / n) = lambda_max(ZZ') / n.
        let pc1_explained = eigen.top_value() / self.z_square_sum;

        let mut loo_total = 0.0;
        for held_out in 0..self.n_evals {
            let z_column = &workspace.z[held_out * n_models..(held_out + 1) * n_models];
            eigen.top_vector_of_downdate(z_column, &mut workspace.secular_weights, &mut workspace.scores);
            // Loadings are Z_{-j}' u / s, so their sum has the sign of u . (row sums of Z_{-j}).
            let direction: f64 = (0..n_models)
                .map(|model_idx| workspace.scores[model_idx] * (workspace.z_row_sums[model_idx] - z_column[model_idx]))
                .sum();
            if direction < 0.0 {
                workspace.scores.iter_mut().for_each(|value| *value = -*value);
            }
            average_ranks_small(&workspace.scores, &mut workspace.score_ranks);
            let rank_column = &workspace.unit_ranks[held_out * n_models..(held_out + 1) * n_models];
            loo_total += unit_correlation(&mut workspace.score_ranks, rank_column);
        }
        StructureStatistics { mean_spearman, pc1_explained, loo_mean_spearman: loo_total / n_evals }
    }
}

/// Average ranks (1-based, ties share the mean rank) by counting, without allocating: rank_i = 1 + #{x_k < x_i}
/// + (#{x_k == x_i} - 1) / 2. Quadratic, which is cheaper than sorting for a dozen models.
fn average_ranks_small(values: &[f64], ranks: &mut [f64]) {
    for (rank, &value) in ranks.iter_mut().zip(values) {
        let mut below = 0.0;
        let mut equal = 0.0;
        for &other in values {
            below += f64::from(u8::from(other < value));
            equal += f64::from(u8::from(other == value));
        }
        *rank = 1.0 + below + 0.5 * (equal - 1.0);
    }
}

/// Pearson correlation of `ranks` (centered and scaled in place) with the centered unit vector `unit`; NaN when
/// the ranks are constant.
fn unit_correlation(ranks: &mut [f64], unit: &[f64]) -> f64 {
    let center = ranks.iter().sum::<f64>() / ranks.len() as f64;
    ranks.iter_mut().for_each(|value| *value -= center);
    let norm = dot(ranks, ranks).sqrt();
    if norm == 0.0 {
        return f64::NAN;
    }
    (dot(ranks, unit) / norm).clamp(-1.0, 1.0)
}

const STRUCTURE_PURPOSE: u64 = 0x5354_5255_4354_5552;

fn null_distribution(mut samples: Vec<f64>, observed: f64) -> Result<NullDistribution> {
    check_finite(&samples, "permutation null")?;
    // The fast path and the direct path may differ in the last bits, so "at least as large" allows for rounding
    // (otherwise a permutation equal to the observed data could count as smaller).
    let threshold = observed - 1e-12 * observed.abs().max(1.0);
    let n_at_least = samples.iter().filter(|&&value| value >= threshold).count();
    let p_value = (1 + n_at_least) as f64 / (1 + samples.len()) as f64;
    let mean = mean_unchecked(&samples);
    let in_order = samples.clone();
    samples.sort_by(f64::total_cmp);
    Ok(NullDistribution {
        low: percentile_of_sorted(&samples, 2.5)?,
        high: percentile_of_sorted(&samples, 97.5)?,
        mean,
        p_value,
        samples: in_order,
    })
}
