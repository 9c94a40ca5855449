//! The HealthBench score formula (DESIGN.md, "Records"; Arora et al. 2025, simple-evals `healthbench_eval.py`).
//!
//! Item score = (sum of the points of the criteria met, negative criteria subtracting) / (sum of the positive points).
//! It can be negative or, never, above 1. A benchmark's (or trait's) score is the mean of item scores clipped to
//! [0, 1] (simple-evals `_compute_clipped_stats`).
//!
//! Unscored criteria (the judge's answer could not be parsed) are left out of both sums, so an item is scored on
//! the criteria that were decided; an item with no decided positive criterion is unscored (`None`), never 0.

use ethos_core::records::RubricCriterion;

/// The item score from the rubric and one `met` per criterion (same order), or `None` when nothing positive was
/// decided.
pub fn healthbench_score(rubric: &[RubricCriterion], met: &[Option<bool>]) -> Option<f64> {
    let mut achieved = 0.0;
    let mut possible = 0.0;
    for (criterion, verdict) in rubric.iter().zip(met) {
        let Some(is_met) = verdict else { continue };
        if criterion.points > 0.0 {
            possible += criterion.points;
        }
        if *is_met {
            achieved += criterion.points;
        }
    }
    (possible > 0.0).then_some(achieved / possible)
}

/// Mean of the scored items, clipped to [0, 1]; `None` when no item is scored.
pub fn clipped_mean(scores: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let (sum, n) = scores.into_iter().flatten().fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    (n > 0).then(|| (sum / n as f64).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rubric(points: &[f64]) -> Vec<RubricCriterion> {
        points
            .iter()
            .enumerate()
            .map(|(i, &p)| RubricCriterion { id: format!("c{i}"), criterion: format!("c{i}"), points: p })
            .collect()
    }

    #[test]
    fn met_points_over_positive_points() {
        // Points 8, 5, -6, 3: positive total 16. Met: 8 and -6 -> (8 - 6) / 16 = 0.125.
        let r = rubric(&[8.0, 5.0, -6.0, 3.0]);
        assert_eq!(healthbench_score(&r, &[Some(true), Some(false), Some(true), Some(false)]), Some(0.125));
        // All positives met, no negative: 1.0; only the negative met: -6 / 16.
        assert_eq!(healthbench_score(&r, &[Some(true), Some(true), Some(false), Some(true)]), Some(1.0));
        assert_eq!(healthbench_score(&r, &[Some(false), Some(false), Some(true), Some(false)]), Some(-0.375));
    }

    #[test]
    fn unscored_criteria_leave_both_sums() {
        let r = rubric(&[8.0, 5.0, -6.0, 3.0]);
        // c1 unscored: possible 11, met 8 + 3 -> 1.0.
        assert_eq!(healthbench_score(&r, &[Some(true), None, Some(false), Some(true)]), Some(1.0));
        assert_eq!(healthbench_score(&r, &[None, None, Some(true), None]), None, "no positive decided");
    }

    #[test]
    fn benchmark_mean_is_clipped() {
        assert_eq!(clipped_mean([Some(-0.5), Some(0.1), None]), Some(0.0));
        assert_eq!(clipped_mean([Some(0.5), Some(0.7)]), Some(0.6));
        assert_eq!(clipped_mean([None]), None);
    }
}
