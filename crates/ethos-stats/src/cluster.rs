//! Average-linkage (UPGMA) agglomerative clustering, with scipy's linkage-matrix conventions.

use crate::error::{Result, StatsError, StatsErrorKind};

/// One merge of two clusters. Leaves are clusters `0..n`; the cluster made by merge `k` is `n + k`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Merge {
    /// The smaller id of the two merged clusters.
    pub left: usize,
    /// The larger id.
    pub right: usize,
    /// Average distance between the two clusters.
    pub height: f64,
    /// Number of leaves in the new cluster.
    pub size: usize,
}

/// A dendrogram: `n - 1` merges in order of height, and the leaves in dendrogram order.
#[derive(Debug, Clone, PartialEq)]
pub struct Linkage {
    merges: Vec<Merge>,
    leaf_order: Vec<usize>,
}

impl Linkage {
    /// The merges, as the rows of scipy's linkage matrix `Z`.
    pub fn merges(&self) -> &[Merge] {
        &self.merges
    }

    /// The leaves left to right (scipy `leaves_list(Z)`: depth first, `left` before `right`).
    pub fn leaf_order(&self) -> &[usize] {
        &self.leaf_order
    }
}

/// Average linkage on a symmetric distance matrix (scipy `linkage(squareform(d), method="average")`): repeatedly
/// merge the two closest clusters, the distance between clusters being the mean of the distances between their
/// leaves. Ties are broken by the lowest pair of positions. Errors when the matrix is not square, not
/// symmetric, or has a negative or non-finite entry.
pub fn average_linkage(distances: &[Vec<f64>]) -> Result<Linkage> {
    let n_leaves = distances.len();
    if n_leaves == 0 || distances.iter().any(|row| row.len() != n_leaves) {
        return Err(StatsError::new(StatsErrorKind::LengthMismatch, "linkage needs a square distance matrix"));
    }
    for (row_idx, row) in distances.iter().enumerate() {
        for (column_idx, &value) in row.iter().enumerate() {
            if !value.is_finite() || value < 0.0 {
                return Err(StatsError::new(
                    StatsErrorKind::InvalidParameter,
                    format!("distance ({row_idx}, {column_idx}) = {value} is not a finite non-negative number"),
                ));
            }
            if value != distances[column_idx][row_idx] {
                return Err(StatsError::new(StatsErrorKind::InvalidParameter, "distance matrix is not symmetric"));
            }
        }
    }
    let mut current = distances.to_vec();
    // Position p of `current` holds the cluster `cluster_ids[p]` of `sizes[p]` leaves while `active[p]`.
    let mut cluster_ids: Vec<usize> = (0..n_leaves).collect();
    let mut sizes = vec![1usize; n_leaves];
    let mut active = vec![true; n_leaves];
    let mut merges = Vec::with_capacity(n_leaves.saturating_sub(1));
    for merge_idx in 0..n_leaves.saturating_sub(1) {
        let mut best: Option<(usize, usize, f64)> = None;
        for left in (0..n_leaves).filter(|&p| active[p]) {
            for right in (left + 1..n_leaves).filter(|&p| active[p]) {
                if best.is_none_or(|(_, _, distance)| current[left][right] < distance) {
                    best = Some((left, right, current[left][right]));
                }
            }
        }
        let Some((left, right, height)) = best else {
            break;
        };
        let merged_size = sizes[left] + sizes[right];
        for other in (0..n_leaves).filter(|&p| active[p] && p != left && p != right) {
            let distance = (sizes[left] as f64 * current[left][other] + sizes[right] as f64 * current[right][other])
                / merged_size as f64;
            current[left][other] = distance;
            current[other][left] = distance;
        }
        merges.push(Merge {
            left: cluster_ids[left].min(cluster_ids[right]),
            right: cluster_ids[left].max(cluster_ids[right]),
            height,
            size: merged_size,
        });
        cluster_ids[left] = n_leaves + merge_idx;
        sizes[left] = merged_size;
        active[right] = false;
    }
    let leaf_order = leaves_in_order(&merges, n_leaves);
    Ok(Linkage { merges, leaf_order })
}

fn leaves_in_order(merges: &[Merge], n_leaves: usize) -> Vec<usize> {
    let Some(root) = merges.len().checked_sub(1) else {
        return (0..n_leaves).collect();
    };
    let mut order = Vec::with_capacity(n_leaves);
    let mut stack = vec![n_leaves + root];
    while let Some(cluster) = stack.pop() {
        if cluster < n_leaves {
            order.push(cluster);
        } else {
            let merge = merges[cluster - n_leaves];
            stack.push(merge.right);
            stack.push(merge.left);
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_points() {
        // Points 0, 1, 5 on a line: merge {0,1} at 1, then {0,1} with 2 at mean(5, 4) = 4.5.
        let d = vec![vec![0.0, 1.0, 5.0], vec![1.0, 0.0, 4.0], vec![5.0, 4.0, 0.0]];
        let linkage = average_linkage(&d).unwrap();
        assert_eq!(linkage.merges()[0], Merge { left: 0, right: 1, height: 1.0, size: 2 });
        assert_eq!(linkage.merges()[1], Merge { left: 2, right: 3, height: 4.5, size: 3 });
        assert_eq!(linkage.leaf_order(), &[2, 0, 1]);
    }
}
