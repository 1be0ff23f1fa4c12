//! Word shapes: the capitalisation that an uncased tokenizer throws away.
//!
//! all-MiniLM-L6-v2 lowercases its input, so "Apple" and "apple", "US" and "us" reach the
//! encoder as the same word pieces, yet capitalisation is the strongest single cue for
//! named entities. Each word piece therefore also carries the shape of the word it came
//! from ([`word_shape`]: lower, Capitalised, UPPER, mIxed, number, other), computed by the
//! tokenizer from the original text. A model that asks for it (`[model] casing = true` in
//! a recipe) adds a learned embedding of the shape to the word-piece embeddings
//! ([`crate::model::bert::BertEmbeddings`]); the table starts at zero, so training starts from
//! exactly the pretrained encoder. Models without the table ignore the shapes.

/// Number of shapes, the rows of a casing embedding table.
pub const NUM_SHAPES: usize = 7;

/// Special tokens ([CLS], [SEP]) and padding.
pub const SPECIAL: u32 = 0;
/// Letters, none upper case (`paris`), or letters of a script without case.
pub const LOWER: u32 = 1;
/// An upper-case first letter, no other (`Paris`, `I`).
pub const CAPITALISED: u32 = 2;
/// Two or more letters, all upper case (`EU`, `U.S.`, `NASA`).
pub const UPPER: u32 = 3;
/// Any other mix (`McDonald`, `iPhone`).
pub const MIXED: u32 = 4;
/// No letters, at least one digit (`1996`, `3-2`).
pub const NUMBER: u32 = 5;
/// No letters and no digits (punctuation, symbols).
pub const OTHER: u32 = 6;

/// The shape of one word, as it was written.
pub fn word_shape(word: &str) -> u32 {
    let mut cased = word
        .chars()
        .filter(|c| c.is_uppercase() || c.is_lowercase());
    match cased.next() {
        None if word.chars().any(char::is_alphabetic) => LOWER,
        None if word.chars().any(char::is_numeric) => NUMBER,
        None => OTHER,
        Some(first) => {
            let rest: Vec<char> = cased.collect();
            let upper_rest = rest.iter().filter(|c| c.is_uppercase()).count();
            match (first.is_uppercase(), upper_rest) {
                (false, 0) => LOWER,
                (true, 0) => CAPITALISED,
                (true, n) if n == rest.len() => UPPER,
                _ => MIXED,
            }
        }
    }
}

/// Each word piece's shape: the shape of its word (`word_ids[i]` indexes `shapes`), or
/// [`SPECIAL`] for a piece without a word.
pub fn piece_shapes(word_ids: &[Option<u32>], shapes: &[u32]) -> Vec<u32> {
    word_ids
        .iter()
        .map(|w| {
            w.and_then(|w| shapes.get(w as usize).copied())
                .unwrap_or(SPECIAL)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_of_words() {
        for (word, shape) in [
            ("paris", LOWER),
            ("Paris", CAPITALISED),
            ("I", CAPITALISED),
            ("O'Neill", MIXED),
            ("EU", UPPER),
            ("U.S.", UPPER),
            ("McDonald", MIXED),
            ("iPhone", MIXED),
            ("1996-08-22", NUMBER),
            ("3-2", NUMBER),
            (",", OTHER),
            ("--", OTHER),
            ("Élysée", CAPITALISED),
            ("ÉLYSÉE", UPPER),
            ("東京", LOWER),
            ("x86", LOWER),
            ("A4", CAPITALISED),
        ] {
            assert_eq!(word_shape(word), shape, "{word}");
        }
    }

    #[test]
    fn pieces_take_their_words_shape() {
        // [CLS] Unbelievable ( un ##believ ##able ) NASA [SEP] [PAD]
        let word_ids = [None, Some(0), Some(0), Some(0), Some(1), None, None];
        let shapes = [CAPITALISED, UPPER];
        assert_eq!(
            piece_shapes(&word_ids, &shapes),
            [
                SPECIAL,
                CAPITALISED,
                CAPITALISED,
                CAPITALISED,
                UPPER,
                SPECIAL,
                SPECIAL
            ]
        );
    }
}
