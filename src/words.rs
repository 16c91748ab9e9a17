//! Characters and words of a text: one definition shared by the request
//! log writer (which stores the lengths of every output as columns) and
//! drift (which also hashes the words into n-grams). A leaf: imports
//! nothing of the crate.
//!
//! Words are maximal runs of letters and digits, lowercased; a character of
//! a script written without spaces (Han, Hiragana, Katakana, Thai, ...) is a
//! word by itself, so lengths and n-grams mean something in every language.

use std::hash::Hasher;

/// Length of a text, and its n-grams when asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TextStats {
    pub chars: u64,
    pub words: u64,
}

fn is_unspaced(c: char) -> bool {
    matches!(c as u32,
        0x0E00..=0x0EFF      // Thai, Lao
        | 0x1000..=0x109F    // Myanmar
        | 0x1780..=0x17FF    // Khmer
        | 0x3040..=0x30FF    // Hiragana, Katakana
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xF900..=0xFAFF    // CJK compatibility ideographs
        | 0x20000..=0x2FFFF) // CJK extensions B..
}

/// FNV-1a: a fixed, fast, well-enough-spread hash for bucketing words.
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn push_char_lower(h: &mut Fnv, c: char) {
    let mut buf = [0u8; 4];
    if c.is_ascii() {
        h.write(&[c.to_ascii_lowercase() as u8]);
    } else {
        for l in c.to_lowercase() {
            h.write(l.encode_utf8(&mut buf).as_bytes());
        }
    }
}

/// Counts `text`'s characters and words; when `ngrams` is given, appends
/// the hashed ids of every word (unigram) and pair of adjacent words
/// (bigram).
pub fn scan(text: &str, mut ngrams: Option<&mut Vec<u32>>) -> TextStats {
    let mut stats = TextStats::default();
    let mut current: Option<Fnv> = None;
    let mut previous: Option<u64> = None;
    let mut emit = |word: u64, previous: &mut Option<u64>, stats: &mut TextStats| {
        stats.words += 1;
        if let Some(out) = ngrams.as_deref_mut() {
            out.push(word as u32);
            if let Some(p) = *previous {
                let pair = p.rotate_left(17) ^ word.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                out.push((pair >> 32) as u32 ^ pair as u32);
            }
        }
        *previous = Some(word);
    };
    for c in text.chars() {
        stats.chars += 1;
        if c.is_alphanumeric() {
            if is_unspaced(c) {
                if let Some(h) = current.take() {
                    emit(h.finish(), &mut previous, &mut stats);
                }
                let mut h = Fnv::new();
                push_char_lower(&mut h, c);
                emit(h.finish(), &mut previous, &mut stats);
            } else {
                push_char_lower(current.get_or_insert_with(Fnv::new), c);
            }
        } else if let Some(h) = current.take() {
            emit(h.finish(), &mut previous, &mut stats);
        }
    }
    if let Some(h) = current.take() {
        emit(h.finish(), &mut previous, &mut stats);
    }
    stats
}
