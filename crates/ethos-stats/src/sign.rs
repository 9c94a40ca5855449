//! Win counts and the two-sided sign test.

use statrs::function::factorial::ln_binomial;

use crate::error::{check_finite, Result};

/// How many differences are positive, negative and exactly zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WinCounts {
    /// Differences > 0.
    pub wins: usize,
    /// Differences < 0.
    pub losses: usize,
    /// Differences == 0.
    pub ties: usize,
}

/// Counts wins, losses and ties by the sign of each difference. Errors on a non-finite difference.
pub fn win_counts(differences: &[f64]) -> Result<WinCounts> {
    check_finite(differences, "differences")?;
    let mut counts = WinCounts::default();
    for &difference in differences {
        if difference > 0.0 {
            counts.wins += 1;
        } else if difference < 0.0 {
            counts.losses += 1;
        } else {
            counts.ties += 1;
        }
    }
    Ok(counts)
}

/// Two-sided exact sign test of `wins` against `losses` (ties dropped): the binomial test of
/// `wins` successes in `wins + losses` trials with p = 1/2 (scipy `binomtest(wins, n, 0.5).pvalue`), which for
/// p = 1/2 is min(1, 2 P(X <= min(wins, losses))). Returns 1 when there are no trials.
pub fn sign_test_p(wins: usize, losses: usize) -> f64 {
    let n_trials = wins + losses;
    if n_trials == 0 || wins == losses {
        return 1.0;
    }
    let smaller = wins.min(losses) as u64;
    let n = n_trials as u64;
    let ln_half_power = n as f64 * std::f64::consts::LN_2;
    let tail: f64 = (0..=smaller).map(|successes| (ln_binomial(n, successes) - ln_half_power).exp()).sum();
    (2.0 * tail).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_sign_test() {
        assert_eq!(win_counts(&[1.0, -2.0, 0.0, 3.0]).unwrap(), WinCounts { wins: 2, losses: 1, ties: 1 });
        // binomtest(9, 10, 0.5).pvalue = 22/1024
        assert!((sign_test_p(9, 1) - 22.0 / 1024.0).abs() < 1e-15);
        assert_eq!(sign_test_p(3, 3), 1.0);
    }
}
