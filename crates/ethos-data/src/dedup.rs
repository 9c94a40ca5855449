//! Near-duplicate detection: MinHash signatures over word shingles, banded locality-sensitive hashing to find
//! candidate pairs in near-linear time, and the exact Jaccard similarity of the shingle sets to confirm them.
//!
//! Hand-written (about a hundred lines) rather than a crate: the MinHash crates on crates.io are 0.0.x/0.1.x
//! single-author releases, and we need stable, seed-determined hashes so that dedup decisions reproduce across
//! machines and Rust versions (std's `DefaultHasher` makes no such promise). Broder (1997) for MinHash; the
//! banding is the standard LSH construction (Leskovec, Rajaraman and Ullman, *Mining of Massive Datasets*, ch. 3):
//! with `b` bands of `r` rows a pair of Jaccard `s` becomes a candidate with probability `1 - (1 - s^r)^b`.

use std::collections::{HashMap, HashSet};

/// Words per shingle.
pub const SHINGLE_WORDS: usize = 5;
/// The default similarity above which two texts are near-duplicates.
pub const DEFAULT_THRESHOLD: f64 = 0.5;

/// Computes MinHash signatures of texts.
#[derive(Debug, Clone)]
pub struct MinHasher {
    seeds: Vec<u64>,
    bands: usize,
}

impl Default for MinHasher {
    /// 126 permutations in 42 bands of 3 rows: a pair at Jaccard 0.5 becomes a candidate with probability
    /// 1 - (1 - 0.5^3)^42 = 0.996, at 0.3 with 0.68, at 0.1 with 0.04 and at 0.05 with 0.005, so unrelated pairs
    /// rarely need the exact check and the work stays near-linear in the number of texts.
    fn default() -> Self {
        Self::new(126, 42, 0x05ee_d0fe_7405)
    }
}

impl MinHasher {
    /// `num_perm` hash functions, split into `bands` bands (`num_perm` must be a multiple of `bands`).
    pub fn new(num_perm: usize, bands: usize, seed: u64) -> Self {
        let bands = bands.clamp(1, num_perm.max(1));
        let mut state = seed;
        let seeds = (0..num_perm - num_perm % bands).map(|_| splitmix64(&mut state)).collect();
        Self { seeds, bands }
    }

    /// The signature of a set of shingle hashes.
    pub fn signature(&self, shingles: &HashSet<u64>) -> Vec<u64> {
        self.seeds.iter().map(|&seed| shingles.iter().map(|&h| mix(h ^ seed)).min().unwrap_or(u64::MAX)).collect()
    }

    /// The fraction of equal signature positions: an unbiased estimate of the Jaccard similarity.
    pub fn estimate_jaccard(a: &[u64], b: &[u64]) -> f64 {
        if a.is_empty() {
            return 0.0;
        }
        a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64
    }

    fn band_keys(&self, signature: &[u64]) -> Vec<u64> {
        let rows = signature.len() / self.bands;
        signature
            .chunks(rows.max(1))
            .map(|band| band.iter().fold(0xcbf2_9ce4_8422_2325, |acc, &v| mix(acc ^ v)))
            .collect()
    }
}

/// Hashes of the lower-cased word shingles of `text` (a text shorter than a shingle is one shingle).
pub fn shingle_hashes(text: &str) -> HashSet<u64> {
    let words: Vec<String> = text
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let k = SHINGLE_WORDS.min(words.len().max(1));
    if words.is_empty() {
        return HashSet::new();
    }
    words.windows(k).map(|w| fnv1a(w.join(" ").as_bytes())).collect()
}

/// The exact Jaccard similarity of two sets.
pub fn jaccard(a: &HashSet<u64>, b: &HashSet<u64>) -> f64 {
    let union = a.union(b).count();
    if union == 0 {
        return 0.0;
    }
    a.intersection(b).count() as f64 / union as f64
}

/// Two texts at or above the threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct NearDuplicate {
    /// Index of the earlier text.
    pub first: usize,
    /// Index of the later text.
    pub second: usize,
    /// Exact Jaccard similarity of their shingle sets.
    pub jaccard: f64,
}

/// All pairs of `texts` whose shingle Jaccard similarity is at least `threshold`, ordered by (first, second).
pub fn near_duplicate_pairs(texts: &[&str], threshold: f64) -> Vec<NearDuplicate> {
    let hasher = MinHasher::default();
    let shingles: Vec<HashSet<u64>> = texts.iter().map(|t| shingle_hashes(t)).collect();
    let mut buckets: HashMap<(usize, u64), Vec<usize>> = HashMap::new();
    for (i, s) in shingles.iter().enumerate() {
        if s.is_empty() {
            continue;
        }
        for (band, key) in hasher.band_keys(&hasher.signature(s)).into_iter().enumerate() {
            buckets.entry((band, key)).or_default().push(i);
        }
    }
    let mut candidates = HashSet::new();
    for members in buckets.values() {
        for (x, &a) in members.iter().enumerate() {
            for &b in &members[x + 1..] {
                candidates.insert((a.min(b), a.max(b)));
            }
        }
    }
    let mut pairs: Vec<NearDuplicate> = candidates
        .into_iter()
        .map(|(first, second)| NearDuplicate { first, second, jaccard: jaccard(&shingles[first], &shingles[second]) })
        .filter(|p| p.jaccard >= threshold)
        .collect();
    pairs.sort_by_key(|p| (p.first, p.second));
    pairs
}

/// The share of texts that have at least one near-duplicate among the others.
pub fn near_duplicate_rate(n_texts: usize, pairs: &[NearDuplicate]) -> f64 {
    if n_texts == 0 {
        return 0.0;
    }
    let involved: HashSet<usize> = pairs.iter().flat_map(|p| [p.first, p.second]).collect();
    involved.len() as f64 / n_texts as f64
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    mix(*state)
}

/// The splitmix64 finalizer: a bijective 64-bit mixer.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "My landlord in Leeds wants to keep the whole deposit because of a scuff on the hallway wall \
        that was there when I moved in, and he says the photos I took do not count because they have no date.";

    #[test]
    fn finds_an_edited_copy_and_ignores_unrelated_text() {
        let edited = BASE.replace("Leeds", "York").replace("hallway", "kitchen");
        let other = "Our team lead wants us to skip the code review for the hotfix tonight because the client demo \
            is at nine and the reviewer is on leave until Monday.";
        let texts = [BASE, other, edited.as_str()];
        let pairs = near_duplicate_pairs(&texts, DEFAULT_THRESHOLD);
        assert_eq!(pairs.len(), 1, "{pairs:?}");
        assert_eq!((pairs[0].first, pairs[0].second), (0, 2));
        // 40 words give 36 five-word shingles. "Leeds" (word 4) sits in 4 of them and "hallway" (word 18) in 5,
        // so 9 change on each side: 27 shared, 36 + 9 = 45 in the union.
        let expected = 27.0 / 45.0;
        assert!((pairs[0].jaccard - expected).abs() < 1e-12, "{} vs {expected}", pairs[0].jaccard);
        assert!((near_duplicate_rate(3, &pairs) - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn minhash_estimates_jaccard() {
        let a: HashSet<u64> = (0..1000).collect();
        let b: HashSet<u64> = (500..1500).collect();
        let hasher = MinHasher::new(512, 64, 7);
        let estimate = MinHasher::estimate_jaccard(&hasher.signature(&a), &hasher.signature(&b));
        // True Jaccard 500/1500 = 1/3; the estimate's sd is sqrt(J(1-J)/512) ~ 0.021.
        assert!((estimate - 1.0 / 3.0).abs() < 0.07, "{estimate}");
    }

    #[test]
    fn shingles_ignore_case_and_punctuation() {
        assert_eq!(shingle_hashes("One, two THREE four five."), shingle_hashes("one two three four five"));
        assert!(shingle_hashes("  ").is_empty());
        assert_eq!(shingle_hashes("just two").len(), 1);
    }
}
