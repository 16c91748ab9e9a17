//! Content drift of text by a domain classifier with an exact-size test.
//!
//! Each document is a bag of hashed features (word n-grams, hashed by the
//! caller). The documents of both windows are split at random, by a seeded
//! hash of their position, into a training half and a test half. A
//! multinomial naive Bayes classifier learns "current vs reference" on the
//! training half; every test document gets its mean log-likelihood ratio per
//! feature (so length alone does not separate the windows); and the
//! Mann-Whitney test asks whether the current test documents score higher
//! than the reference ones. The effect size is that test's AUC (0.5: the
//! classifier cannot tell the windows apart).
//!
//! Why the p-value is valid without permutations: under "no drift" the
//! documents of both windows are exchangeable, the classifier never sees the
//! test half, so the test documents' scores are exchangeable between the two
//! windows, which is exactly the Mann-Whitney null. Only half the documents
//! inform the test; in exchange the p-value has no Monte-Carlo floor (a
//! permutation test with B permutations cannot go below 1/(B+1), too coarse
//! for Benjamini-Hochberg across dozens of features) and costs one pass.

use serde::Serialize;

use super::twosample::{MannWhitney, mann_whitney_greater};

/// Hash buckets of the classifier's feature space.
pub const BUCKETS: u32 = 1 << 16;
/// Laplace smoothing of the per-bucket counts.
const SMOOTHING: f64 = 1.0;

/// Documents as hashed feature ids, stored flat, each with a key (e.g. a
/// hash of its request id) that decides its half of the split, so the
/// split does not depend on the order documents arrive in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Docs {
    ids: Vec<u32>,
    ends: Vec<usize>,
    keys: Vec<u64>,
}

impl Docs {
    pub fn new() -> Docs {
        Docs::default()
    }

    /// Appends one document's feature ids (reduced modulo [`BUCKETS`]).
    pub fn push(&mut self, key: u64, ids: impl IntoIterator<Item = u32>) {
        self.ids.extend(ids.into_iter().map(|i| i % BUCKETS));
        self.ends.push(self.ids.len());
        self.keys.push(key);
    }

    pub fn key(&self, i: usize) -> u64 {
        self.keys[i]
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn get(&self, i: usize) -> &[u32] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.ids[start..self.ends[i]]
    }
}

/// The outcome of [`domain_classifier`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DomainResult {
    /// Held-out AUC of "current scores higher", in `0..=1`.
    pub auc: f64,
    /// One-sided p-value of the Mann-Whitney test on the held-out half.
    pub p_value: f64,
    /// Held-out documents per window.
    pub test_reference: usize,
    pub test_current: usize,
}

fn mix(mut x: u64) -> u64 {
    // splitmix64 finaliser: a fixed, well-spread hash of the position.
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn in_training(seed: u64, window: u64, key: u64) -> bool {
    mix(seed ^ mix(window) ^ key.wrapping_mul(0x2545_F491_4F6C_DD1D)) & 1 == 0
}

/// The held-out scores behind a [`DomainResult`] (for a chart).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HeldOutScores {
    pub reference: Vec<f64>,
    pub current: Vec<f64>,
}

/// Trains on half of each window and tests on the other half; see the
/// module docs. None when a held-out half is empty.
pub fn domain_classifier(reference: &Docs, current: &Docs, seed: u64) -> Option<DomainResult> {
    domain_classifier_scores(reference, current, seed).map(|(r, _)| r)
}

/// [`domain_classifier`] with the held-out documents' scores.
pub fn domain_classifier_scores(
    reference: &Docs,
    current: &Docs,
    seed: u64,
) -> Option<(DomainResult, HeldOutScores)> {
    let buckets = BUCKETS as usize;
    let mut counts = [vec![0u32; buckets], vec![0u32; buckets]];
    let mut totals = [0u64; 2];
    for (w, docs) in [reference, current].into_iter().enumerate() {
        for i in 0..docs.len() {
            if in_training(seed, w as u64, docs.key(i)) {
                for &id in docs.get(i) {
                    counts[w][id as usize] += 1;
                    totals[w] += 1;
                }
            }
        }
    }
    let denom_ref = (totals[0] as f64 + SMOOTHING * buckets as f64).ln();
    let denom_cur = (totals[1] as f64 + SMOOTHING * buckets as f64).ln();
    let score = |doc: &[u32]| -> f64 {
        if doc.is_empty() {
            return 0.0;
        }
        let sum: f64 = doc
            .iter()
            .map(|&id| {
                let (r, c) = (counts[0][id as usize], counts[1][id as usize]);
                ((f64::from(c) + SMOOTHING).ln() - denom_cur)
                    - ((f64::from(r) + SMOOTHING).ln() - denom_ref)
            })
            .sum();
        sum / doc.len() as f64
    };
    let held_out = |w: u64, docs: &Docs| -> Vec<f64> {
        (0..docs.len())
            .filter(|&i| !in_training(seed, w, docs.key(i)))
            .map(|i| score(docs.get(i)))
            .collect()
    };
    let test_ref = held_out(0, reference);
    let test_cur = held_out(1, current);
    let MannWhitney { auc, p_value } = mann_whitney_greater(&test_ref, &test_cur)?;
    Some((
        DomainResult {
            auc,
            p_value,
            test_reference: test_ref.len(),
            test_current: test_cur.len(),
        },
        HeldOutScores {
            reference: test_ref,
            current: test_cur,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    /// Documents of 5..15 words drawn from `vocab` (ids), Zipf-ish.
    fn docs(rng: &mut StdRng, n: usize, vocab: &[u32]) -> Docs {
        let mut d = Docs::new();
        for _ in 0..n {
            let len = rng.random_range(5..15);
            let words: Vec<u32> = (0..len)
                .map(|_| {
                    let r: f64 = rng.random();
                    vocab[((r * r) * vocab.len() as f64) as usize]
                })
                .collect();
            d.push(rng.random(), words);
        }
        d
    }

    #[test]
    fn same_source_is_not_separable_and_a_topic_shift_is() {
        let mut rng = StdRng::seed_from_u64(7);
        let common: Vec<u32> = (0..300).collect();
        let topic: Vec<u32> = (1000..1300).collect();
        let a = docs(&mut rng, 800, &common);
        let b = docs(&mut rng, 800, &common);
        let same = domain_classifier(&a, &b, 1).unwrap();
        assert!((same.auc - 0.5).abs() < 0.06, "{same:?}");
        assert!(same.test_reference > 300 && same.test_current > 300);
        // 30% of the current documents are about another topic, same lengths.
        let mut shifted = Docs::new();
        let other = docs(&mut rng, 800, &topic);
        for i in 0..800 {
            shifted.push(
                b.key(i),
                if i % 10 < 3 { other.get(i) } else { b.get(i) }.to_vec(),
            );
        }
        let drift = domain_classifier(&a, &shifted, 1).unwrap();
        assert!(drift.auc > 0.6 && drift.p_value < 1e-6, "{drift:?}");
    }

    #[test]
    fn p_values_are_uniform_under_no_drift() {
        // 200 repetitions of a null comparison: the share of p < 0.1 should
        // be near 0.1 (binomial sd 0.021).
        let mut rng = StdRng::seed_from_u64(11);
        let vocab: Vec<u32> = (0..200).collect();
        let mut small = 0;
        for rep in 0..200 {
            let a = docs(&mut rng, 200, &vocab);
            let b = docs(&mut rng, 200, &vocab);
            if domain_classifier(&a, &b, rep).unwrap().p_value < 0.1 {
                small += 1;
            }
        }
        assert!((8..=34).contains(&small), "{small} of 200 below 0.1");
    }

    #[test]
    fn empty_inputs() {
        assert!(domain_classifier(&Docs::new(), &Docs::new(), 0).is_none());
        let mut one = Docs::new();
        for k in 0..4 {
            one.push(k, []);
        }
        if let Some(r) = domain_classifier(&one, &one, 0) {
            assert_eq!(r.auc, 0.5);
        }
    }
}
