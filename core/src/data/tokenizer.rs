//! WordPiece tokenization through the `tokenizers` crate (the same code natively and in
//! wasm), with truncation to a chosen length, dynamic padding to the longest sequence of
//! each batch, and the word ids that align sub-words back to words for token tasks.

use tokenizers::{TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{Error, Result};
use crate::model::casing;

/// Default longest sequence, in word pieces including [CLS] and [SEP]
/// (all-MiniLM-L6-v2 was trained with 256).
pub const DEFAULT_MAX_LEN: usize = 256;

/// One encoded sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoding {
    /// Word-piece ids, with [CLS] first and [SEP] last.
    pub ids: Vec<u32>,
    /// Segment ids.
    pub type_ids: Vec<u32>,
    /// For each word piece, the index of the word it came from (`None` for special tokens).
    pub word_ids: Vec<Option<u32>>,
    /// For each word piece, its `(start, end)` character offsets in the text.
    pub offsets: Vec<(usize, usize)>,
    /// For each word piece, the shape of its word as written ([`crate::model::casing`]).
    pub shapes: Vec<u32>,
    /// Whether word pieces past the maximum length were dropped.
    pub truncated: bool,
}

/// A padded batch, row-major `[batch, seq]`, ready for [`crate::model::bert::BertInput`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub input_ids: Vec<u32>,
    pub token_type_ids: Vec<u32>,
    pub attention_mask: Vec<u32>,
    /// Word shapes ([`crate::model::casing`]); padding is [`casing::SPECIAL`].
    pub shapes: Vec<u32>,
    /// Per row: the word id of every position (`None` for special tokens and padding).
    pub word_ids: Vec<Vec<Option<u32>>>,
    /// Per row: whether it was truncated.
    pub truncated: Vec<bool>,
    batch_size: usize,
    seq_len: usize,
}

impl Batch {
    /// Pads `encodings` to the longest one with `pad_id`.
    pub fn pad(encodings: &[Encoding], pad_id: u32) -> Result<Self> {
        if encodings.is_empty() {
            return Err(Error::Input("cannot make a batch of zero sequences".into()));
        }
        let seq_len = encodings.iter().map(|e| e.ids.len()).max().unwrap_or(0);
        let n = encodings.len() * seq_len;
        let mut batch = Batch {
            input_ids: Vec::with_capacity(n),
            token_type_ids: Vec::with_capacity(n),
            attention_mask: Vec::with_capacity(n),
            shapes: Vec::with_capacity(n),
            word_ids: Vec::with_capacity(encodings.len()),
            truncated: encodings.iter().map(|e| e.truncated).collect(),
            batch_size: encodings.len(),
            seq_len,
        };
        for e in encodings {
            let pad = seq_len - e.ids.len();
            batch.input_ids.extend(&e.ids);
            batch.input_ids.extend(std::iter::repeat_n(pad_id, pad));
            batch.token_type_ids.extend(&e.type_ids);
            batch.token_type_ids.extend(std::iter::repeat_n(0, pad));
            batch
                .attention_mask
                .extend(std::iter::repeat_n(1, e.ids.len()));
            batch.attention_mask.extend(std::iter::repeat_n(0, pad));
            batch.shapes.extend(&e.shapes);
            batch
                .shapes
                .extend(std::iter::repeat_n(casing::SPECIAL, pad));
            let mut words = e.word_ids.clone();
            words.resize(seq_len, None);
            batch.word_ids.push(words);
        }
        Ok(batch)
    }

    /// Number of rows.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Padded length of every row.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// Ids of row `i` without padding.
    pub fn row_ids(&self, i: usize) -> &[u32] {
        let row = &self.input_ids[i * self.seq_len..(i + 1) * self.seq_len];
        let len = self.attention_mask[i * self.seq_len..(i + 1) * self.seq_len]
            .iter()
            .filter(|&&m| m == 1)
            .count();
        &row[..len]
    }
}

/// A Hugging Face tokenizer with this project's truncation and padding policy.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    max_len: usize,
    pad_id: u32,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("max_len", &self.max_len)
            .field("pad_id", &self.pad_id)
            .finish()
    }
}

impl Tokenizer {
    /// Loads a `tokenizer.json`. `source` names the file in errors.
    pub fn from_json_bytes(bytes: &[u8], source: &str) -> Result<Self> {
        let err = |message: String| Error::Tokenizer {
            file: source.into(),
            message,
        };
        let mut inner = tokenizers::Tokenizer::from_bytes(bytes)
            .map_err(|e| err(format!("not a valid tokenizer.json: {e}")))?;
        // The file's own padding (MiniLM pads to a fixed 128) is replaced by dynamic padding.
        let pad_id = inner
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| inner.token_to_id("[PAD]"))
            .unwrap_or(0);
        inner.with_padding(None);
        let mut tokenizer = Tokenizer {
            inner,
            max_len: DEFAULT_MAX_LEN,
            pad_id,
        };
        tokenizer.set_max_len(DEFAULT_MAX_LEN)?;
        Ok(tokenizer)
    }

    /// Sets the longest sequence (word pieces including special tokens); longer input is
    /// truncated and flagged.
    pub fn set_max_len(&mut self, max_len: usize) -> Result<()> {
        if max_len < 3 {
            return Err(Error::Input(format!(
                "max length {max_len} is too short: at least 3 word pieces are needed"
            )));
        }
        self.inner
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| Error::Input(format!("cannot truncate to {max_len}: {e}")))?;
        self.max_len = max_len;
        Ok(())
    }

    /// The longest sequence this tokenizer produces.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The id used for padding.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Size of the vocabulary, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The word piece behind an id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Our encoding of `e`, with each piece's word shape from `shape_of_word` (called with
    /// each word id and that word's character span, [`word_spans`]).
    fn convert(
        &self,
        e: tokenizers::Encoding,
        shape_of_word: impl Fn(usize, (usize, usize)) -> u32,
    ) -> Encoding {
        let word_ids = e.get_word_ids().to_vec();
        let offsets = e.get_offsets().to_vec();
        let word_shapes: Vec<u32> = word_spans(&word_ids, &offsets)
            .into_iter()
            .enumerate()
            .map(|(w, span)| shape_of_word(w, span))
            .collect();
        Encoding {
            truncated: !e.get_overflowing().is_empty(),
            ids: e.get_ids().to_vec(),
            type_ids: e.get_type_ids().to_vec(),
            shapes: casing::piece_shapes(&word_ids, &word_shapes),
            word_ids,
            offsets,
        }
    }

    /// Encodes one text with [CLS]/[SEP]; offsets are in characters.
    pub fn encode(&self, text: &str) -> Result<Encoding> {
        let e = self
            .inner
            .encode_char_offsets(text, true)
            .map_err(|e| Error::Input(format!("cannot tokenize {text:?}: {e}")))?;
        let chars: Vec<char> = text.chars().collect();
        Ok(self.convert(e, |_, (start, end)| {
            let end = end.min(chars.len());
            let word: String = chars[start.min(end)..end].iter().collect();
            casing::word_shape(&word)
        }))
    }

    /// Encodes text that is already split into words (token classification); the word
    /// ids of the result index `words`.
    pub fn encode_words(&self, words: &[&str]) -> Result<Encoding> {
        let e = self
            .inner
            .encode_char_offsets(words, true)
            .map_err(|e| Error::Input(format!("cannot tokenize {words:?}: {e}")))?;
        Ok(self.convert(e, |w, _| {
            words
                .get(w)
                .map_or(casing::SPECIAL, |w| casing::word_shape(w))
        }))
    }

    /// Encodes and pads several texts to the longest among them.
    pub fn batch<S: AsRef<str>>(&self, texts: &[S]) -> Result<Batch> {
        let encodings = texts
            .iter()
            .map(|t| self.encode(t.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        Batch::pad(&encodings, self.pad_id)
    }
}

/// The `(start, end)` character span of each word (one past the highest word id), from
/// the offsets of its pieces; `(usize::MAX, 0)` for a word without pieces.
pub fn word_spans(word_ids: &[Option<u32>], offsets: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let n_words = word_ids
        .iter()
        .flatten()
        .map(|&w| w as usize + 1)
        .max()
        .unwrap_or(0);
    let mut spans = vec![(usize::MAX, 0usize); n_words];
    for (w, off) in word_ids.iter().zip(offsets) {
        if let Some(w) = w {
            let s = &mut spans[*w as usize];
            s.0 = s.0.min(off.0);
            s.1 = s.1.max(off.1);
        }
    }
    spans
}

/// For token classification: the index of the first word piece of each word, given the
/// word ids of an encoding. Words that were truncated away get `None`.
pub fn first_subword_positions(word_ids: &[Option<u32>], n_words: usize) -> Vec<Option<usize>> {
    let mut first = vec![None; n_words];
    for (pos, w) in word_ids.iter().enumerate() {
        if let Some(w) = *w {
            let w = w as usize;
            if w < n_words && first[w].is_none() {
                first[w] = Some(pos);
            }
        }
    }
    first
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small WordPiece tokenizer in Hugging Face's JSON format, built in the test.
    pub(crate) fn tiny_tokenizer_json() -> String {
        let vocab = [
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "movie", "is", "great", "un",
            "##believ", "##able", "a", "film", ",", "!", "new", "so",
        ];
        let vocab: serde_json::Map<String, serde_json::Value> = vocab
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), serde_json::json!(i)))
            .collect();
        serde_json::json!({
            "version": "1.0",
            "truncation": null,
            "padding": {"strategy": {"Fixed": 128}, "direction": "Right", "pad_to_multiple_of": null,
                        "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"},
            "added_tokens": [],
            "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                           "strip_accents": null, "lowercase": true},
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "post_processor": {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                           {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                         {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
                "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                                   "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
            "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
            "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                      "max_input_chars_per_word": 100, "vocab": vocab}
        })
        .to_string()
    }

    pub(crate) fn tiny() -> Tokenizer {
        Tokenizer::from_json_bytes(tiny_tokenizer_json().as_bytes(), "tiny.json").unwrap()
    }

    #[test]
    fn encodes_with_special_tokens_and_subwords() {
        let t = tiny();
        let e = t.encode("The movie is UNBELIEVABLE!").unwrap();
        // [CLS] the movie is un ##believ ##able ! [SEP]
        assert_eq!(e.ids, vec![2, 5, 6, 7, 9, 10, 11, 15, 3]);
        assert_eq!(
            e.word_ids,
            vec![
                None,
                Some(0),
                Some(1),
                Some(2),
                Some(3),
                Some(3),
                Some(3),
                Some(4),
                None
            ]
        );
        assert_eq!(e.offsets[4], (13, 15));
        assert!(!e.truncated);
        // Every piece carries its word's shape as written: The, UNBELIEVABLE.
        use crate::model::casing::{CAPITALISED, LOWER, OTHER, SPECIAL, UPPER};
        assert_eq!(
            e.shapes,
            vec![
                SPECIAL,
                CAPITALISED,
                LOWER,
                LOWER,
                UPPER,
                UPPER,
                UPPER,
                OTHER,
                SPECIAL
            ]
        );
    }

    #[test]
    fn word_shapes_of_pretokenized_words_and_padding() {
        use crate::model::casing::{CAPITALISED, LOWER, SPECIAL, UPPER};
        let t = tiny();
        let e = t.encode_words(&["Unbelievable", "FILM", "so"]).unwrap();
        // [CLS] un ##believ ##able film so [SEP]
        assert_eq!(
            e.shapes,
            vec![
                SPECIAL,
                CAPITALISED,
                CAPITALISED,
                CAPITALISED,
                UPPER,
                LOWER,
                SPECIAL
            ]
        );
        let short = t.encode_words(&["Film"]).unwrap();
        let b = Batch::pad(&[short, e], 0).unwrap();
        assert_eq!(
            &b.shapes[..7],
            &[
                SPECIAL,
                CAPITALISED,
                SPECIAL,
                SPECIAL,
                SPECIAL,
                SPECIAL,
                SPECIAL
            ]
        );
    }

    #[test]
    fn unknown_words_map_to_unk() {
        let e = tiny().encode("zebra").unwrap();
        assert_eq!(e.ids, vec![2, 1, 3]);
    }

    #[test]
    fn pads_dynamically_not_to_the_files_fixed_length() {
        let t = tiny();
        let b = t.batch(&["the movie", "a new film is so great"]).unwrap();
        assert_eq!(b.batch_size(), 2);
        assert_eq!(b.seq_len(), 8);
        assert_eq!(&b.attention_mask[..8], &[1, 1, 1, 1, 0, 0, 0, 0]);
        assert_eq!(&b.input_ids[4..8], &[0, 0, 0, 0]);
        assert_eq!(b.row_ids(0), &[2, 5, 6, 3]);
        assert_eq!(b.word_ids[0][4], None);
    }

    #[test]
    fn truncates_and_flags() {
        let mut t = tiny();
        t.set_max_len(5).unwrap();
        let e = t.encode("the movie is so great").unwrap();
        assert_eq!(e.ids, vec![2, 5, 6, 7, 3]);
        assert!(e.truncated);
        assert!(t.set_max_len(2).is_err());
    }

    #[test]
    fn pretokenized_words_align_to_first_subwords() {
        let t = tiny();
        let words = ["unbelievable", "film", "!"];
        let e = t.encode_words(&words).unwrap();
        let first = first_subword_positions(&e.word_ids, words.len());
        assert_eq!(first, vec![Some(1), Some(4), Some(5)]);
        // Round trip: each word's first piece maps back to that word.
        for (w, pos) in first.iter().enumerate() {
            assert_eq!(e.word_ids[pos.unwrap()], Some(w as u32));
        }
    }

    #[test]
    fn bad_json_names_the_file() {
        let err = Tokenizer::from_json_bytes(b"{not json", "m/tokenizer.json").unwrap_err();
        assert!(err.to_string().starts_with("m/tokenizer.json: "), "{err}");
    }

    #[test]
    fn empty_batch_is_an_error() {
        let empty: [&str; 0] = [];
        assert!(tiny().batch(&empty).is_err());
    }
}
