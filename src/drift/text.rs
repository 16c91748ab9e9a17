//! What drift reads from a text: its length in characters and words, its
//! language, whether it is a refusal, and its hashed word n-grams (the
//! content the domain classifier compares). Characters and words are
//! counted by [`crate::words`], the definition the log writer shares.

/// Characters of a text read for its language: enough for a reliable guess,
/// and language detection costs time proportional to length.
const LANGUAGE_PREFIX_CHARS: usize = 128;

/// Shorter texts are [`UNDETERMINED`] without asking the detector.
const MIN_LANGUAGE_BYTES: usize = 16;

/// Label of a text whose language cannot be told reliably (too short,
/// mixed, or a language the detector does not know).
pub const UNDETERMINED: &str = "und";

pub use crate::words::scan;

/// The ISO 639-3 code of `text`'s language (`eng`, `deu`, `cmn`, ...), or
/// [`UNDETERMINED`] when the detector is not confident.
pub fn language(text: &str) -> &'static str {
    // Below this the detector is not reliable anyway; skip its cost.
    if text.len() < MIN_LANGUAGE_BYTES {
        return UNDETERMINED;
    }
    let end = text
        .char_indices()
        .nth(LANGUAGE_PREFIX_CHARS)
        .map_or(text.len(), |(i, _)| i);
    match whatlang::detect(&text[..end]) {
        Some(info) if info.is_reliable() => info.lang().code(),
        _ => UNDETERMINED,
    }
}

/// Matches the refusal phrases anywhere in a text, case-insensitively, with
/// typographic apostrophes read as `'`.
#[derive(Debug, Clone)]
pub struct RefusalMatcher {
    regex: Option<regex::Regex>,
}

impl RefusalMatcher {
    /// Fails only when the phrases make a pattern too large to compile.
    pub fn new<S: AsRef<str>>(phrases: &[S]) -> Result<RefusalMatcher, String> {
        Ok(RefusalMatcher {
            regex: crate::spec::drift::refusal_regex(phrases)?,
        })
    }

    pub fn is_refusal(&self, text: &str) -> bool {
        self.regex.as_ref().is_some_and(|r| r.is_match(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::words::TextStats;
    use proptest::prelude::*;

    #[test]
    fn words_in_spaced_and_unspaced_scripts() {
        assert_eq!(
            scan("Hello, world! It's 2026.", None),
            TextStats {
                chars: 24,
                words: 5
            }
        );
        // Five Han characters, each a word.
        assert_eq!(scan("北京是首都", None).words, 5);
        assert_eq!(scan("", None), TextStats::default());
        assert_eq!(scan("日本 Tokyo", None).words, 3);
    }

    #[test]
    fn ngrams_ignore_case_and_punctuation_but_not_order() {
        let ids = |t: &str| {
            let mut v = Vec::new();
            scan(t, Some(&mut v));
            v
        };
        assert_eq!(ids("The capital, of France"), ids("the CAPITAL of france!"));
        assert_eq!(ids("a b").len(), 3);
        let (ab, ba) = (ids("a b"), ids("b a"));
        assert_ne!(ab[2], ba[2], "bigrams are ordered");
    }

    #[test]
    fn languages_of_common_texts() {
        assert_eq!(
            language("What is the capital of France? I would like to know more about Paris."),
            "eng"
        );
        assert_eq!(
            language("Quelle est la capitale de la France ? J'aimerais en savoir plus sur Paris."),
            "fra"
        );
        assert_eq!(
            language(
                "Was ist die Hauptstadt von Deutschland? Ich möchte mehr über Berlin erfahren."
            ),
            "deu"
        );
        assert_eq!(language("ok"), UNDETERMINED);
        assert_eq!(language(""), UNDETERMINED);
    }

    #[test]
    fn refusals_match_phrases_case_and_apostrophe_insensitively() {
        let m = RefusalMatcher::new(&["I'm sorry, but", "as an AI"]).unwrap();
        assert!(m.is_refusal("I\u{2019}m SORRY, but I can't do that."));
        assert!(m.is_refusal("Well. As an  AI model, no."));
        assert!(!m.is_refusal("Paris is the capital of France."));
        let none = RefusalMatcher::new::<&str>(&[]).unwrap();
        assert!(!none.is_refusal("I'm sorry, but no"));
        let regexy = RefusalMatcher::new(&["(no)"]).unwrap();
        assert!(regexy.is_refusal("say (NO) now"));
        assert!(!regexy.is_refusal("say no now"));
    }

    proptest! {
        #[test]
        fn scan_counts_are_consistent(s in "\\PC{0,200}") {
            let mut ids = Vec::new();
            let st = scan(&s, Some(&mut ids));
            prop_assert_eq!(st.chars, s.chars().count() as u64);
            prop_assert!(st.words <= st.chars);
            let expected = if st.words == 0 { 0 } else { 2 * st.words - 1 };
            prop_assert_eq!(ids.len() as u64, expected);
            let _ = language(&s);
        }
    }
}
