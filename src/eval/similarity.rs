//! Text similarity metrics for the `similarity` assertion.
//!
//! Both metrics work on the same tokens: maximal runs of Unicode alphanumeric
//! characters, lowercased (`"Paris, France!"` -> `["paris", "france"]`).
//! Punctuation and whitespace only separate tokens. There is no stemming and
//! no stop-word or article removal, so the metrics behave the same in every
//! language.
//!
//! - [`rouge_l_f1`]: ROUGE-L F1, from the longest common subsequence (LCS) of
//!   the two token sequences: `2 * lcs / (len(candidate) + len(reference))`,
//!   which equals the F1 of LCS precision and recall. Word order matters.
//! - [`token_f1`]: the SQuAD-style token F1: the overlap of the two bags of
//!   tokens (multiset intersection), `2 * overlap / (len(a) + len(b))`. Word
//!   order does not matter; the metric is symmetric.
//!
//! Both return a value in `0.0..=1.0`: 1.0 for identical token sequences
//! (including two texts without tokens) and 0.0 when exactly one side has no
//! tokens or the vocabularies are disjoint.

use std::collections::HashMap;

use crate::spec::eval::SimilarityMetric;

/// Lowercased alphanumeric word tokens of `text`.
pub fn tokenize(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The similarity of `candidate` to `reference` under `metric`, in `0..=1`.
pub fn score(metric: SimilarityMetric, candidate: &str, reference: &str) -> f64 {
    match metric {
        SimilarityMetric::RougeL => rouge_l_f1(candidate, reference),
        SimilarityMetric::TokenF1 => token_f1(candidate, reference),
    }
}

/// ROUGE-L F1 (beta = 1) of `candidate` against `reference`.
pub fn rouge_l_f1(candidate: &str, reference: &str) -> f64 {
    let c = tokenize(candidate);
    let r = tokenize(reference);
    f1_from_overlap(lcs_len(&c, &r), c.len(), r.len())
}

/// SQuAD-style bag-of-tokens F1 of `a` and `b` (symmetric).
pub fn token_f1(a: &str, b: &str) -> f64 {
    let a = tokenize(a);
    let b = tokenize(b);
    let mut counts: HashMap<&str, usize> = HashMap::with_capacity(a.len());
    for t in &a {
        *counts.entry(t.as_str()).or_insert(0) += 1;
    }
    let mut overlap = 0;
    for t in &b {
        if let Some(n) = counts.get_mut(t.as_str())
            && *n > 0
        {
            *n -= 1;
            overlap += 1;
        }
    }
    f1_from_overlap(overlap, a.len(), b.len())
}

/// `2 * overlap / (n + m)`: the harmonic mean of `overlap / n` and
/// `overlap / m`, written so that it is exactly symmetric in `n` and `m`.
fn f1_from_overlap(overlap: usize, n: usize, m: usize) -> f64 {
    if n == 0 && m == 0 {
        return 1.0;
    }
    if overlap == 0 {
        return 0.0;
    }
    (2 * overlap) as f64 / (n + m) as f64
}

/// Length of the longest common subsequence, O(n*m) time, O(min) memory.
fn lcs_len(a: &[String], b: &[String]) -> usize {
    let (long, short) = if a.len() >= b.len() { (a, b) } else { (b, a) };
    if short.is_empty() {
        return 0;
    }
    let mut prev = vec![0usize; short.len() + 1];
    let mut cur = vec![0usize; short.len() + 1];
    for x in long {
        for (j, y) in short.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                cur[j].max(prev[j + 1])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[short.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tokenizer_lowercases_and_drops_punctuation() {
        assert_eq!(
            tokenize("Paris, FRANCE! Ça va?"),
            vec!["paris", "france", "ça", "va"]
        );
        assert!(tokenize(" ,.! ").is_empty());
    }

    #[test]
    fn rouge_l_known_values() {
        // LCS of "the cat sat on the mat" / "the cat on the mat" = 5.
        let s = rouge_l_f1("the cat sat on the mat", "the cat on the mat");
        assert!((s - 2.0 * 5.0 / 11.0).abs() < 1e-12);
        // Order matters for ROUGE-L but not for token F1.
        assert!(rouge_l_f1("a b c d", "d c b a") < 0.5);
        assert_eq!(token_f1("a b c d", "d c b a"), 1.0);
    }

    #[test]
    fn token_f1_counts_multiset_overlap() {
        // overlap of {a,a,b} and {a,c} is 1 -> 2*1/5.
        assert!((token_f1("a a b", "a c") - 0.4).abs() < 1e-12);
    }

    #[test]
    fn empty_sides() {
        assert_eq!(rouge_l_f1("", ""), 1.0);
        assert_eq!(token_f1("...", ""), 1.0);
        assert_eq!(rouge_l_f1("word", ""), 0.0);
        assert_eq!(token_f1("", "word"), 0.0);
    }

    fn words() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec("[a-z]{1,6}", 1..12)
    }

    proptest! {
        #[test]
        fn scores_are_in_unit_interval(a in "\\PC{0,60}", b in "\\PC{0,60}") {
            for s in [rouge_l_f1(&a, &b), token_f1(&a, &b)] {
                prop_assert!((0.0..=1.0).contains(&s), "score {s}");
            }
        }

        #[test]
        fn identical_strings_score_one(a in "\\PC{0,80}") {
            prop_assert_eq!(rouge_l_f1(&a, &a), 1.0);
            prop_assert_eq!(token_f1(&a, &a), 1.0);
        }

        #[test]
        fn token_f1_is_symmetric(a in "\\PC{0,60}", b in "\\PC{0,60}") {
            prop_assert_eq!(token_f1(&a, &b), token_f1(&b, &a));
        }

        #[test]
        fn disjoint_vocabularies_score_zero(a in words(), b in words()) {
            // Letters vs digits: the vocabularies cannot meet.
            let b: Vec<String> = b
                .iter()
                .map(|w| w.bytes().map(|c| char::from(b'0' + c % 10)).collect())
                .collect();
            let (a, b) = (a.join(" "), b.join(" "));
            prop_assert_eq!(rouge_l_f1(&a, &b), 0.0);
            prop_assert_eq!(token_f1(&a, &b), 0.0);
        }

        #[test]
        fn rouge_l_with_appended_words_is_partial(a in words(), extra in words()) {
            let base = a.join(" ");
            let longer = format!("{base} {}", extra.join(" "));
            for s in [rouge_l_f1(&longer, &base), rouge_l_f1(&base, &longer)] {
                prop_assert!(s > 0.0 && s < 1.0, "score {s}");
            }
        }
    }
}
