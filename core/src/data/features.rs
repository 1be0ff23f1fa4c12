//! From examples to tensors: examples are tokenized once ([`Encoded`]), then batches of
//! them are padded and moved to a device ([`collate`]).
//!
//! Token tasks put each word's tag on the word's *first* word piece; the other pieces, the
//! special tokens and the padding get [`IGNORE`] and take no part in the loss. At prediction
//! time the first piece's prediction is the word's ([`word_predictions`]), so tags
//! round-trip to words.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::data::tokenizer::{Batch, Encoding, Tokenizer, first_subword_positions};
use crate::error::Result;
use crate::eval::tagging::{TagConstraints, viterbi};
use crate::model::bert::BertInput;

/// Target value of positions that the loss ignores.
pub const IGNORE: i64 = -100;

/// One tokenized example with its targets (either or both, for corpora such as SNIPS that
/// carry an intent and slot tags).
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub encoding: Encoding,
    /// Class of the sentence task, if any.
    pub sentence_label: Option<usize>,
    /// Tag of each word for the token task, if any.
    pub word_tags: Option<Vec<usize>>,
    /// Position of each word's first word piece (`None`: truncated away).
    pub first_pieces: Vec<Option<usize>>,
}

impl Encoded {
    /// A sentence given as text.
    pub fn text(tokenizer: &Tokenizer, text: &str, label: Option<usize>) -> Result<Self> {
        let encoding = tokenizer.encode(text)?;
        Ok(Encoded {
            encoding,
            sentence_label: label,
            word_tags: None,
            first_pieces: Vec::new(),
        })
    }

    /// A sentence given as words, with optional word tags and sentence label.
    pub fn words<S: AsRef<str>>(
        tokenizer: &Tokenizer,
        words: &[S],
        tags: Option<Vec<usize>>,
        label: Option<usize>,
    ) -> Result<Self> {
        let words: Vec<&str> = words.iter().map(|w| w.as_ref()).collect();
        let encoding = tokenizer.encode_words(&words)?;
        let first_pieces = first_subword_positions(&encoding.word_ids, words.len());
        if let Some(tags) = &tags {
            debug_assert_eq!(tags.len(), words.len(), "one tag per word");
        }
        Ok(Encoded {
            encoding,
            sentence_label: label,
            word_tags: tags,
            first_pieces,
        })
    }

    /// Number of words (token examples).
    pub fn num_words(&self) -> usize {
        self.first_pieces.len()
    }
}

/// A padded batch on a device, with the targets of whichever tasks its examples carry.
#[derive(Debug, Clone)]
pub struct TrainBatch {
    pub input: BertInput,
    /// `[batch]` sentence classes, when every example has one.
    pub sentence_targets: Option<Tensor<1, Int>>,
    /// `[batch * seq]` tags on first word pieces, [`IGNORE`] elsewhere, when every example
    /// has word tags.
    pub token_targets: Option<Tensor<1, Int>>,
    /// Per row: the position of each word's first piece.
    pub first_pieces: Vec<Vec<Option<usize>>>,
    pub batch_size: usize,
    pub seq_len: usize,
}

/// Pads `items` into one batch on `device`.
pub fn collate(items: &[&Encoded], pad_id: u32, device: &Device) -> Result<TrainBatch> {
    let encodings: Vec<Encoding> = items.iter().map(|e| e.encoding.clone()).collect();
    let batch = Batch::pad(&encodings, pad_id)?;
    let (b, s) = (batch.batch_size(), batch.seq_len());
    let sentence_targets = items
        .iter()
        .map(|e| e.sentence_label.map(|l| l as i64))
        .collect::<Option<Vec<i64>>>()
        .map(|v| Tensor::<1, Int>::from_data(TensorData::new(v, [b]), device));
    let token_targets = if items.iter().all(|e| e.word_tags.is_some()) {
        let mut targets = vec![IGNORE; b * s];
        for (row, e) in items.iter().enumerate() {
            let tags = e.word_tags.as_ref().expect("checked above");
            for (pos, tag) in e.first_pieces.iter().zip(tags) {
                if let Some(pos) = pos {
                    targets[row * s + pos] = *tag as i64;
                }
            }
        }
        Some(Tensor::<1, Int>::from_data(
            TensorData::new(targets, [b * s]),
            device,
        ))
    } else {
        None
    };
    Ok(TrainBatch {
        input: BertInput::from_batch(&batch, device),
        sentence_targets,
        token_targets,
        first_pieces: items.iter().map(|e| e.first_pieces.clone()).collect(),
        batch_size: b,
        seq_len: s,
    })
}

/// Per-word tags with probabilities from one row's per-position label probabilities
/// (`probs`: `[positions, labels]` row-major): each word is read at its first piece, and
/// the sequence is the most probable one that `constraints` allow
/// ([`crate::eval::tagging::viterbi`]); a word truncated away gets the outside tag with
/// probability 0.
pub fn word_predictions(
    probs: &[f32],
    first_pieces: &[Option<usize>],
    constraints: &TagConstraints,
) -> Vec<(usize, f32)> {
    let labels = constraints.num_labels();
    let words: Vec<Option<&[f32]>> = first_pieces
        .iter()
        .map(|p| p.map(|p| &probs[p * labels..(p + 1) * labels]))
        .collect();
    viterbi(&words, constraints)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::tokenizer::tests::tiny_tokenizer_json;

    fn tokenizer() -> Tokenizer {
        Tokenizer::from_json_bytes(tiny_tokenizer_json().as_bytes(), "tiny").unwrap()
    }

    #[test]
    fn tags_land_on_first_pieces_and_round_trip_to_words() {
        let tok = tokenizer();
        // "unbelievable" is three pieces: un ##believ ##able.
        let words = ["the", "unbelievable", "movie"];
        let e = Encoded::words(&tok, &words, Some(vec![0, 2, 1]), None).unwrap();
        // [CLS] the un ##believ ##able movie [SEP]
        assert_eq!(e.first_pieces, [Some(1), Some(2), Some(5)]);
        let batch = collate(&[&e], tok.pad_id(), &Device::flex()).unwrap();
        let t: Vec<i64> = batch
            .token_targets
            .unwrap()
            .try_into_vec_as::<i64>()
            .unwrap();
        assert_eq!(t, [IGNORE, 0, 2, IGNORE, IGNORE, 1, IGNORE]);
        // Predictions per position; the non-first pieces predict something else, which
        // must not leak into the word tags.
        let preds = [9, 0, 2, 7, 7, 1, 9];
        assert_eq!(decode_words(&preds, &e.first_pieces), [0, 2, 1]);
    }

    #[test]
    fn padding_rows_are_ignored_and_sentence_targets_collected() {
        let tok = tokenizer();
        let a = Encoded::words(&tok, &["the", "movie"], Some(vec![1, 0]), Some(1)).unwrap();
        let b = Encoded::words(
            &tok,
            &["a", "film", "is", "great"],
            Some(vec![0, 0, 0, 1]),
            Some(0),
        )
        .unwrap();
        let batch = collate(&[&a, &b], tok.pad_id(), &Device::flex()).unwrap();
        assert_eq!((batch.batch_size, batch.seq_len), (2, 6));
        let t: Vec<i64> = batch
            .token_targets
            .unwrap()
            .try_into_vec_as::<i64>()
            .unwrap();
        assert_eq!(
            t,
            [
                IGNORE, 1, 0, IGNORE, IGNORE, IGNORE, IGNORE, 0, 0, 0, 1, IGNORE
            ]
        );
        let s: Vec<i64> = batch
            .sentence_targets
            .unwrap()
            .try_into_vec_as::<i64>()
            .unwrap();
        assert_eq!(s, [1, 0]);
    }

    /// The words' tags when each position is sure of one of 10 labels (`preds`), decoded
    /// without constraints.
    fn decode_words(preds: &[usize], first_pieces: &[Option<usize>]) -> Vec<usize> {
        let mut probs = vec![0.0f32; preds.len() * 10];
        for (pos, &p) in preds.iter().enumerate() {
            probs[pos * 10 + p] = 1.0;
        }
        word_predictions(&probs, first_pieces, &TagConstraints::free(10))
            .into_iter()
            .map(|(tag, _)| tag)
            .collect()
    }

    #[test]
    fn truncated_words_fall_back_to_outside() {
        assert_eq!(
            decode_words(&[5, 3, 4], &[Some(1), Some(2), None]),
            [3, 4, 0]
        );
    }

    /// Word predictions are decoded as IOB2 sequences: the first piece of each word, never
    /// the others, and an `I-` that cannot follow its predecessor is mended.
    #[test]
    fn word_predictions_decode_valid_iob2_from_first_pieces() {
        let labels = ["O", "B-X", "I-X"];
        // [CLS] w0 w1 ##w1 [SEP]: w1's second piece is sure of B-X, which must not count.
        #[rustfmt::skip]
        let probs = [
            0.0, 0.0, 1.0,
            0.6, 0.35, 0.05,
            0.3, 0.1, 0.6,
            0.0, 1.0, 0.0,
            0.0, 0.0, 1.0,
        ];
        let first = [Some(1), Some(2)];
        let free = word_predictions(&probs, &first, &TagConstraints::free(3));
        assert_eq!(free, vec![(0, 0.6), (2, 0.6)], "argmax gives O I-X");
        let iob2 = word_predictions(&probs, &first, &TagConstraints::iob2(&labels));
        // B-X I-X (0.35 · 0.6 = 0.21) beats O O (0.6 · 0.3 = 0.18).
        assert_eq!(iob2, vec![(1, 0.35), (2, 0.6)]);
    }
}
