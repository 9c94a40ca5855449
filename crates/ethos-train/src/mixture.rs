//! Which prompts a training step sees: every prompt's source is drawn independently with the
//! mixture's probabilities (e.g. trait scenarios 0.05, standard tasks 0.95), and within a source
//! items come in a seeded random order, each used once per pass over the source.
//!
//! Randomness is a pure function of `(seed, batch index)` and `(seed, source, pass)`, so the only
//! state is how many items each source has given out; a checkpoint stores [`SamplerState`] and a
//! resumed run draws exactly the batches the uninterrupted run would have.

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// One source of prompts with its mixture probability.
#[derive(Debug, Clone, PartialEq)]
pub struct MixtureSource {
    /// Source name (`trait`, `gsm8k`, `instructions`, ...).
    pub name: String,
    /// Probability that a prompt comes from this source.
    pub probability: f64,
    /// Number of items the source holds.
    pub n_items: usize,
}

/// One drawn prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Draw {
    /// Index into the sampler's sources.
    pub source_idx: usize,
    /// Index of the item within its source.
    pub item_idx: usize,
}

/// Everything a resumed sampler needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplerState {
    /// Batches drawn so far.
    pub n_batches: u64,
    /// Per source (in order), items given out so far over all passes.
    pub draws_per_source: Vec<u64>,
}

/// Draws batches of prompts from a mixture of sources.
#[derive(Debug, Clone)]
pub struct MixtureSampler {
    sources: Vec<MixtureSource>,
    /// Running sums of the probabilities, the last one 1.
    cumulative: Vec<f64>,
    seed: u64,
    state: SamplerState,
    /// Per source, the order of the current pass: `(pass index, permutation)`.
    orders: Vec<Option<(u64, Vec<usize>)>>,
}

impl MixtureSampler {
    /// A sampler over `sources`, whose probabilities must be non-negative and sum to 1 (within
    /// 1e-9); a source with positive probability must hold items.
    pub fn new(sources: Vec<MixtureSource>, seed: u64) -> Result<Self, TrainError> {
        if sources.is_empty() {
            return Err(TrainError::Input("a mixture needs at least one source".to_string()));
        }
        let mut cumulative = Vec::with_capacity(sources.len());
        let mut total = 0.0;
        for source in &sources {
            if !(source.probability >= 0.0 && source.probability.is_finite()) {
                return Err(TrainError::Input(format!(
                    "source `{}` has probability {}",
                    source.name, source.probability
                )));
            }
            if source.probability > 0.0 && source.n_items == 0 {
                return Err(TrainError::Input(format!(
                    "source `{}` has probability {} but no items",
                    source.name, source.probability
                )));
            }
            total += source.probability;
            cumulative.push(total);
        }
        if (total - 1.0).abs() > 1e-9 {
            return Err(TrainError::Input(format!("mixture probabilities sum to {total}, not 1")));
        }
        let n_sources = sources.len();
        Ok(MixtureSampler {
            sources,
            cumulative,
            seed,
            state: SamplerState { n_batches: 0, draws_per_source: vec![0; n_sources] },
            orders: vec![None; n_sources],
        })
    }

    /// The sources, in order.
    pub fn sources(&self) -> &[MixtureSource] {
        &self.sources
    }

    /// The state to checkpoint.
    pub fn state(&self) -> &SamplerState {
        &self.state
    }

    /// Continues from a checkpointed state of a sampler with the same sources and seed.
    pub fn restore(&mut self, state: SamplerState) -> Result<(), TrainError> {
        if state.draws_per_source.len() != self.sources.len() {
            return Err(TrainError::Input(format!(
                "sampler state has {} sources, the mixture {}",
                state.draws_per_source.len(),
                self.sources.len()
            )));
        }
        self.state = state;
        Ok(())
    }

    /// The next batch of `n_prompts` draws.
    pub fn next_batch(&mut self, n_prompts: usize) -> Vec<Draw> {
        let mut rng =
            ethos_stats::rng::replicate_rng(self.seed, ethos_stats::rng::purpose_key("mixture"), self.state.n_batches);
        self.state.n_batches += 1;
        let mut draws = Vec::with_capacity(n_prompts);
        for _ in 0..n_prompts {
            let u: f64 = rng.random();
            // The last source with positive probability also takes u values lost to rounding.
            let source_idx = self
                .cumulative
                .iter()
                .position(|&bound| u < bound)
                .unwrap_or_else(|| self.sources.iter().rposition(|source| source.probability > 0.0).unwrap_or(0));
            let item_idx = self.next_item(source_idx);
            draws.push(Draw { source_idx, item_idx });
        }
        draws
    }

    /// The next item of a source: position `k` of pass `p` is element `k` of pass `p`'s seeded
    /// permutation.
    fn next_item(&mut self, source_idx: usize) -> usize {
        let n_items = self.sources[source_idx].n_items.max(1);
        let drawn = self.state.draws_per_source[source_idx];
        self.state.draws_per_source[source_idx] += 1;
        let pass = drawn / n_items as u64;
        let position = (drawn % n_items as u64) as usize;
        let stale = !matches!(&self.orders[source_idx], Some((cached_pass, _)) if *cached_pass == pass);
        if stale {
            let purpose = ethos_stats::rng::purpose_key(&format!("mixture-order:{}", self.sources[source_idx].name));
            let mut rng = ethos_stats::rng::replicate_rng(self.seed, purpose, pass);
            let mut order: Vec<usize> = (0..n_items).collect();
            order.shuffle(&mut rng);
            self.orders[source_idx] = Some((pass, order));
        }
        self.orders[source_idx].as_ref().map_or(position, |(_, order)| order[position])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(name: &str, probability: f64, n_items: usize) -> MixtureSource {
        MixtureSource { name: name.to_string(), probability, n_items }
    }

    /// Pearson's chi-square over 10,000 draws against the mixture probabilities. The critical
    /// values are the 0.999 quantiles of chi-square with k - 1 degrees of freedom (10.828 for 1,
    /// 13.816 for 2; scipy.stats.chi2.ppf(0.999, df)); the draws are seeded, so the test is
    /// deterministic, and a sampler that ignored the probabilities would exceed them by far.
    #[test]
    fn proportions_pass_a_chi_square_test() {
        for (probabilities, critical) in [(vec![0.05, 0.95], 10.828), (vec![0.2, 0.3, 0.5], 13.816)] {
            let sources: Vec<MixtureSource> =
                probabilities.iter().enumerate().map(|(idx, &p)| source(&format!("s{idx}"), p, 97)).collect();
            let mut sampler = MixtureSampler::new(sources, 11).unwrap();
            let mut counts = vec![0f64; probabilities.len()];
            for _ in 0..100 {
                for draw in sampler.next_batch(100) {
                    counts[draw.source_idx] += 1.0;
                }
            }
            let chi_square: f64 = counts
                .iter()
                .zip(&probabilities)
                .map(|(observed, p)| (observed - 10_000.0 * p).powi(2) / (10_000.0 * p))
                .sum();
            assert!(chi_square < critical, "chi-square {chi_square} for {probabilities:?}: {counts:?}");
        }
    }

    #[test]
    fn every_item_is_used_once_per_pass() {
        let mut sampler = MixtureSampler::new(vec![source("only", 1.0, 10)], 3).unwrap();
        let first: Vec<usize> = sampler.next_batch(10).iter().map(|draw| draw.item_idx).collect();
        let second: Vec<usize> = sampler.next_batch(10).iter().map(|draw| draw.item_idx).collect();
        let mut sorted = first.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_ne!(first, second, "each pass has its own order");
    }

    #[test]
    fn restoring_the_state_continues_the_same_sequence() {
        let sources = vec![source("trait", 0.3, 7), source("gsm8k", 0.7, 13)];
        let mut uninterrupted = MixtureSampler::new(sources.clone(), 5).unwrap();
        let mut batches = Vec::new();
        for _ in 0..6 {
            batches.push(uninterrupted.next_batch(4));
        }
        let mut first = MixtureSampler::new(sources.clone(), 5).unwrap();
        for _ in 0..3 {
            first.next_batch(4);
        }
        let saved = serde_json::to_string(first.state()).unwrap();
        let mut resumed = MixtureSampler::new(sources, 5).unwrap();
        resumed.restore(serde_json::from_str(&saved).unwrap()).unwrap();
        for batch in &batches[3..] {
            assert_eq!(&resumed.next_batch(4), batch);
        }
    }

    #[test]
    fn zero_probability_sources_are_never_drawn_and_bad_mixtures_fail() {
        let mut sampler = MixtureSampler::new(vec![source("trait", 0.0, 0), source("gsm8k", 1.0, 5)], 1).unwrap();
        assert!(sampler.next_batch(200).iter().all(|draw| draw.source_idx == 1));
        assert!(MixtureSampler::new(vec![source("a", 0.5, 3)], 1).is_err());
        assert!(MixtureSampler::new(vec![source("a", 1.0, 0)], 1).is_err());
        assert!(MixtureSampler::new(vec![source("a", -0.5, 3), source("b", 1.5, 3)], 1).is_err());
        assert!(MixtureSampler::new(Vec::new(), 1).is_err());
    }
}
