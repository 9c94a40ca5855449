//! Persistence of a model's behaviour under a persona system prompt, and steerability by a helpful persona.

use crate::bootstrap::{bootstrap_indices, mean_at, BootstrapConfig};
use crate::describe::mean_unchecked;
use crate::error::{check_finite, Result, StatsError, StatsErrorKind};
use crate::ttest::{one_sample_t_test, TTest};

/// Scores of the same items (index `i` is one item everywhere) for models A and B under two conditions.
#[derive(Debug, Clone, PartialEq)]
pub struct ConditionPairScores {
    /// A under the reference condition (the standard prompt).
    pub a_reference: Vec<f64>,
    /// A under the other condition (a persona prompt).
    pub a_other: Vec<f64>,
    /// B under the reference condition.
    pub b_reference: Vec<f64>,
    /// B under the other condition.
    pub b_other: Vec<f64>,
}

/// Shift of one model between two conditions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelShift {
    /// Mean score under the reference condition.
    pub reference: f64,
    /// Mean score under the other condition.
    pub other: f64,
    /// `reference - other` (degradation) or `other - reference` (steering), see [`ShiftKind`].
    pub shift: f64,
    /// Bootstrap CI of `shift` over items.
    pub ci: (f64, f64),
}

/// Which way round a shift is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShiftKind {
    /// `reference - other`: the drop caused by a harmful persona.
    Degradation,
    /// `other - reference`: the gain caused by a helpful persona.
    Steering,
}

/// Shifts of A and B and their difference (B minus A).
#[derive(Debug, Clone, PartialEq)]
pub struct PersistenceResult {
    /// Number of items.
    pub n_items: usize,
    /// A's shift.
    pub a: ModelShift,
    /// B's shift.
    pub b: ModelShift,
    /// B's shift minus A's shift.
    pub difference: f64,
    /// Bootstrap CI of the difference (same resamples of items as the per-model CIs).
    pub difference_ci: (f64, f64),
    /// Paired t-test of the per-item differences of shifts against 0, when defined.
    pub difference_test: Option<TTest>,
}

/// Degradation (or steering) of A and B over the same items, the difference B minus A, and percentile bootstrap
/// CIs that resample items (each resample is used for all three quantities).
pub fn condition_shift(
    scores: &ConditionPairScores,
    kind: ShiftKind,
    config: &BootstrapConfig,
    purpose: u64,
) -> Result<PersistenceResult> {
    let n_items = scores.a_reference.len();
    for (name, values) in [
        ("A reference", &scores.a_reference),
        ("A other", &scores.a_other),
        ("B reference", &scores.b_reference),
        ("B other", &scores.b_other),
    ] {
        if values.len() != n_items {
            return Err(StatsError::new(
                StatsErrorKind::LengthMismatch,
                format!("{name} has {} items, expected {n_items}", values.len()),
            ));
        }
        check_finite(values, name)?;
    }
    if n_items == 0 {
        return Err(StatsError::new(
            StatsErrorKind::TooFewObservations,
            "no items scored under both conditions by both models",
        ));
    }
    let sign = match kind {
        ShiftKind::Degradation => 1.0,
        ShiftKind::Steering => -1.0,
    };
    let per_item = |reference: &[f64], other: &[f64]| -> Vec<f64> {
        reference.iter().zip(other).map(|(r, o)| sign * (r - o)).collect()
    };
    let shift_a = per_item(&scores.a_reference, &scores.a_other);
    let shift_b = per_item(&scores.b_reference, &scores.b_other);
    let shift_difference: Vec<f64> = shift_a.iter().zip(&shift_b).map(|(a, b)| b - a).collect();
    let intervals = bootstrap_indices(n_items, config, purpose, |indices| {
        vec![mean_at(&shift_a, indices), mean_at(&shift_b, indices), mean_at(&shift_difference, indices)]
    })?;
    let model = |reference: &[f64], other: &[f64], shifts: &[f64], interval_idx: usize| ModelShift {
        reference: mean_unchecked(reference),
        other: mean_unchecked(other),
        shift: mean_unchecked(shifts),
        ci: (intervals[interval_idx].low, intervals[interval_idx].high),
    };
    Ok(PersistenceResult {
        n_items,
        a: model(&scores.a_reference, &scores.a_other, &shift_a, 0),
        b: model(&scores.b_reference, &scores.b_other, &shift_b, 1),
        difference: mean_unchecked(&shift_difference),
        difference_ci: (intervals[2].low, intervals[2].high),
        difference_test: one_sample_t_test(&shift_difference).ok(),
    })
}
