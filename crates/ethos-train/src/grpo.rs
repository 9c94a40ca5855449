//! The GRPO objective (Shao et al. 2024, DeepSeekMath): group-normalized advantages, the clipped
//! policy-ratio surrogate of PPO, and a KL penalty to the reference policy with the k3 estimator.
//!
//! For a prompt with G sampled replies and rewards `r_1..r_G`, reply `i` gets the advantage
//! `A_i = (r_i - mean(r)) / (std(r) + eps)` for every one of its tokens. With the policy ratio
//! `rho_t = exp(logp_t - logp_old_t)` the per-token loss is
//!
//! `-min(rho_t A, clip(rho_t, 1 - epsilon, 1 + epsilon) A) + beta * k3_t`,
//!
//! with `k3_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1` (Schulman's unbiased, always
//! non-negative estimator of KL(pi || pi_ref) from samples of pi). A reply's loss is the mean over
//! its tokens, and the batch loss is the mean over replies (the paper's `1/G sum_i 1/|o_i| sum_t`).

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::model::TokenScores;
use crate::TrainError;

/// Settings of the objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpoObjective {
    /// PPO clip range epsilon.
    pub clip_epsilon: f64,
    /// KL penalty weight beta (0 disables the reference forward pass).
    pub kl_coef: f64,
    /// Divide advantages by the group's standard deviation (GRPO) or only center them (Dr. GRPO,
    /// Liu et al. 2025, which argues the division over-weights near-unanimous groups).
    pub scale_by_std: bool,
}

impl Default for GrpoObjective {
    fn default() -> Self {
        GrpoObjective { clip_epsilon: 0.2, kl_coef: 0.04, scale_by_std: true }
    }
}

/// Guards the division by a group's standard deviation.
pub const ADVANTAGE_EPS: f64 = 1e-4;

/// Advantages of one group's rewards: centered on the group mean and, when `scale_by_std`,
/// divided by the sample standard deviation (n - 1 denominator, as `torch.std`) plus
/// [`ADVANTAGE_EPS`]. A group whose rewards are all equal gets zero advantages: it carries no
/// signal about which reply is better.
pub fn group_advantages(rewards: &[f64], scale_by_std: bool) -> Vec<f64> {
    let n_rewards = rewards.len();
    if n_rewards == 0 {
        return Vec::new();
    }
    let mean = rewards.iter().sum::<f64>() / n_rewards as f64;
    let std = if n_rewards > 1 {
        (rewards.iter().map(|reward| (reward - mean).powi(2)).sum::<f64>() / (n_rewards - 1) as f64).sqrt()
    } else {
        0.0
    };
    rewards
        .iter()
        .map(|reward| {
            let centered = reward - mean;
            if scale_by_std {
                centered / (std + ADVANTAGE_EPS)
            } else {
                centered
            }
        })
        .collect()
}

/// The k3 estimate of KL(pi || pi_ref) at one sampled token: `exp(d) - d - 1` with
/// `d = ref_logp - logp`.
pub fn k3_kl(logp: f64, ref_logp: f64) -> f64 {
    let delta = ref_logp - logp;
    delta.exp() - delta - 1.0
}

/// What one reply's loss was made of, for logging.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReplyLossStats {
    /// Number of reply tokens.
    pub n_tokens: usize,
    /// Mean k3 KL to the reference over the reply's tokens (0 without a reference).
    pub kl: f64,
    /// Fraction of tokens whose ratio left `[1 - epsilon, 1 + epsilon]`.
    pub clip_fraction: f64,
    /// Mean policy ratio.
    pub mean_ratio: f64,
    /// The loss's value.
    pub loss: f64,
}

/// The loss of one reply (mean over its tokens) as a differentiable scalar, given the current
/// log-probabilities `logp` `(T,)`, the behaviour policy's `old_logp` and, when the KL penalty is
/// on, the reference policy's `ref_logp` (both plain values: they take no gradient).
pub fn reply_loss(
    logp: &Tensor,
    old_logp: &[f32],
    ref_logp: Option<&[f32]>,
    advantage: f64,
    objective: &GrpoObjective,
) -> Result<(Tensor, ReplyLossStats), TrainError> {
    let n_tokens = logp.dims1()?;
    if n_tokens == 0 || old_logp.len() != n_tokens || ref_logp.is_some_and(|values| values.len() != n_tokens) {
        return Err(TrainError::Input(format!(
            "reply loss: {n_tokens} log-probabilities, {} old, {:?} reference",
            old_logp.len(),
            ref_logp.map(<[f32]>::len)
        )));
    }
    let device = logp.device();
    let old = Tensor::from_slice(old_logp, n_tokens, device)?;
    let ratio = (logp - &old)?.exp()?;
    let low = 1.0 - objective.clip_epsilon;
    let high = 1.0 + objective.clip_epsilon;
    // min(rho A, clip(rho) A) is A * min(rho, 1 + epsilon) for A >= 0 and A * max(rho, 1 - epsilon)
    // for A < 0: the clip only ever binds on the side the advantage pushes towards, and there the
    // gradient is zero.
    let bounded = if advantage >= 0.0 { ratio.minimum(high)? } else { ratio.maximum(low)? };
    let mut per_token = (bounded * -advantage)?;

    let ratios = ratio.to_vec1::<f32>()?;
    let n_clipped = ratios.iter().filter(|&&value| (value as f64) < low || (value as f64) > high).count();
    let mut stats = ReplyLossStats {
        n_tokens,
        kl: 0.0,
        clip_fraction: n_clipped as f64 / n_tokens as f64,
        mean_ratio: ratios.iter().map(|&value| value as f64).sum::<f64>() / n_tokens as f64,
        loss: 0.0,
    };

    if let Some(ref_logp) = ref_logp.filter(|_| objective.kl_coef != 0.0) {
        let reference = Tensor::from_slice(ref_logp, n_tokens, device)?;
        let delta = (reference - logp)?;
        let k3 = ((delta.exp()? - &delta)? - 1.0)?;
        stats.kl = k3.mean_all()?.to_scalar::<f32>()? as f64;
        per_token = (per_token + (k3 * objective.kl_coef)?)?;
    }
    let loss = per_token.mean_all()?;
    stats.loss = loss.to_scalar::<f32>()? as f64;
    Ok((loss, stats))
}

/// The summed loss of one packed group's replies ([`reply_loss`] of each), as one graph so that a
/// single backward pass goes through the shared prompt once, with each reply's statistics.
/// `old`, `reference` and `advantages` have one entry per reply of `scores`.
pub fn group_loss(
    scores: &[TokenScores],
    old: &[Vec<f32>],
    reference: &[Vec<f32>],
    advantages: &[f64],
    objective: &GrpoObjective,
) -> Result<(Tensor, Vec<ReplyLossStats>), TrainError> {
    if scores.is_empty()
        || old.len() != scores.len()
        || reference.len() != scores.len()
        || advantages.len() != scores.len()
    {
        return Err(TrainError::Input(format!(
            "group loss: {} replies, {} old, {} reference, {} advantages",
            scores.len(),
            old.len(),
            reference.len(),
            advantages.len()
        )));
    }
    let mut total: Option<Tensor> = None;
    let mut stats = Vec::with_capacity(scores.len());
    for (reply_idx, reply) in scores.iter().enumerate() {
        let (loss, reply_stats) = reply_loss(
            &reply.logprobs,
            &old[reply_idx],
            Some(&reference[reply_idx]),
            advantages[reply_idx],
            objective,
        )?;
        total = Some(match total {
            None => loss,
            Some(sum) => (sum + loss)?,
        });
        stats.push(reply_stats);
    }
    let total = total.ok_or_else(|| TrainError::Input("group loss: no replies".to_string()))?;
    Ok((total, stats))
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    /// Advantages by hand: rewards (1, 0, 0, 1) have mean 0.5 and sample std sqrt(1/3).
    #[test]
    fn advantages_are_centered_and_scaled_by_the_sample_std() {
        let advantages = group_advantages(&[1.0, 0.0, 0.0, 1.0], true);
        let expected = 0.5 / ((1.0f64 / 3.0).sqrt() + ADVANTAGE_EPS);
        assert!((advantages[0] - expected).abs() < 1e-12);
        assert!((advantages[1] + expected).abs() < 1e-12);
        assert_eq!(group_advantages(&[1.0, 0.0, 0.5], false), vec![0.5, -0.5, 0.0]);
        assert_eq!(group_advantages(&[0.3, 0.3, 0.3], true), vec![0.0, 0.0, 0.0]);
        assert_eq!(group_advantages(&[2.0], true), vec![0.0]);
        assert!(group_advantages(&[], true).is_empty());
    }

    /// k3 at d = ref - logp: exp(d) - d - 1; zero when the policies agree, positive otherwise.
    #[test]
    fn k3_matches_its_formula_and_is_non_negative() {
        assert_eq!(k3_kl(-1.0, -1.0), 0.0);
        let value = k3_kl(-1.0, -1.5);
        assert!((value - ((-0.5f64).exp() + 0.5 - 1.0)).abs() < 1e-15);
        for (logp, ref_logp) in [(-0.1, -3.0), (-3.0, -0.1), (-2.0, -2.0001)] {
            assert!(k3_kl(logp, ref_logp) >= 0.0);
        }
    }

    /// Hand-derived surrogate with epsilon 0.2:
    /// - token 0: ratio e^0.5 = 1.6487 > 1.2 with A = +1 -> clipped term 1.2 is the min, loss -1.2,
    ///   and the gradient is zero (the clip stops pushing further up);
    /// - token 1: ratio 1 -> loss -A = -1, gradient d(-rho A)/dlogp = -1;
    /// - token 2: ratio e^-0.5 = 0.6065 < 0.8 with A = +1 -> min is the unclipped 0.6065, loss
    ///   -0.6065, gradient -0.6065 (a ratio pushed too low is still pulled back).
    #[test]
    fn clipped_surrogate_loss_and_gradient_by_hand() {
        let logp = Var::new(&[0.0f32, -1.0, -2.0], &Device::Cpu).unwrap();
        let old = [-0.5f32, -1.0, -1.5];
        let objective = GrpoObjective { clip_epsilon: 0.2, kl_coef: 0.0, scale_by_std: true };
        let (loss, stats) = reply_loss(logp.as_tensor(), &old, None, 1.0, &objective).unwrap();
        let expected = (-1.2 - 1.0 - (-0.5f64).exp()) / 3.0;
        assert!((loss.to_scalar::<f32>().unwrap() as f64 - expected).abs() < 1e-6);
        assert!((stats.clip_fraction - 2.0 / 3.0).abs() < 1e-12);
        let grads = loss.backward().unwrap();
        let grad = grads.get(logp.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        let expected_grad = [0.0, -1.0 / 3.0, -(-0.5f64).exp() / 3.0];
        for (got, want) in grad.iter().zip(expected_grad) {
            assert!((*got as f64 - want).abs() < 1e-6, "{grad:?}");
        }
    }

    /// With a negative advantage the clip binds on the low side instead.
    #[test]
    fn negative_advantage_clips_low_ratios() {
        let logp = Var::new(&[-2.0f32], &Device::Cpu).unwrap();
        let objective = GrpoObjective { clip_epsilon: 0.2, kl_coef: 0.0, scale_by_std: true };
        let (loss, _) = reply_loss(logp.as_tensor(), &[-1.5], None, -2.0, &objective).unwrap();
        // ratio 0.6065: unclipped -1.2131, clipped 0.8 * -2 = -1.6; min is -1.6; loss +1.6.
        assert!((loss.to_scalar::<f32>().unwrap() - 1.6).abs() < 1e-6);
        let grad = loss.backward().unwrap().get(logp.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(grad, vec![0.0]);
    }

    /// The KL term adds beta * mean k3 and its gradient d k3 / d logp = 1 - exp(ref - logp).
    #[test]
    fn kl_penalty_value_and_gradient() {
        let logp = Var::new(&[-1.0f32, -2.0], &Device::Cpu).unwrap();
        let old = [-1.0f32, -2.0];
        let reference = [-1.5f32, -1.0];
        let objective = GrpoObjective { clip_epsilon: 0.2, kl_coef: 0.1, scale_by_std: true };
        let (loss, stats) = reply_loss(logp.as_tensor(), &old, Some(&reference), 0.0, &objective).unwrap();
        let kl = (k3_kl(-1.0, -1.5) + k3_kl(-2.0, -1.0)) / 2.0;
        assert!((stats.kl - kl).abs() < 1e-6);
        assert!((loss.to_scalar::<f32>().unwrap() as f64 - 0.1 * kl).abs() < 1e-6);
        let grad = loss.backward().unwrap().get(logp.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        let expected = [0.1 * (1.0 - (-0.5f64).exp()) / 2.0, 0.1 * (1.0 - 1f64.exp()) / 2.0];
        for (got, want) in grad.iter().zip(expected) {
            assert!((*got as f64 - want).abs() < 1e-6, "{grad:?}");
        }
    }

    #[test]
    fn mismatched_lengths_are_errors() {
        let logp = Tensor::new(&[-1.0f32, -2.0], &Device::Cpu).unwrap();
        let objective = GrpoObjective::default();
        assert!(reply_loss(&logp, &[-1.0], None, 1.0, &objective).is_err());
        assert!(reply_loss(&logp, &[-1.0, -1.0], Some(&[0.0]), 1.0, &objective).is_err());
    }
}
