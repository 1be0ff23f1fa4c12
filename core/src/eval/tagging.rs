//! Decoding a token task's tags: the most probable tag sequence that is valid IOB2.
//!
//! A softmax tagger scores every word on its own, so its per-word argmax can be a sequence
//! no annotator writes: `O I-PER`, or `B-ORG I-LOC`. Scored with seqeval, such a sequence
//! yields entities whose boundaries or types are wrong. [`TagConstraints::iob2`] forbids
//! exactly these transitions (an `I-X` must follow `B-X` or `I-X`, and cannot start a
//! sentence), and [`viterbi`] finds the sequence with the highest product of per-word
//! probabilities among the allowed ones. Labels without an IOB2 prefix (`O`, `PER`) are
//! unconstrained, so for a label set without `I-` tags the result is the per-word argmax.
//!
//! The work is O(words × labels²) on the host, on probabilities already read back; the
//! same code decodes for `core-train eval`, `predict` and the browser.

use serde::{Deserialize, Serialize};

/// How a token task's per-word probabilities become tags (saved with the model, in
/// `tasks.json`; `core-train eval --decode` overrides it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TagDecoding {
    /// The most probable valid IOB2 sequence ([`viterbi`] under [`TagConstraints::iob2`]).
    #[default]
    Iob2,
    /// Each word's most probable tag on its own.
    Argmax,
}

impl TagDecoding {
    /// The constraints this decoding puts on `labels`.
    pub fn constraints<S: AsRef<str>>(self, labels: &[S]) -> TagConstraints {
        match self {
            TagDecoding::Iob2 => TagConstraints::iob2(labels),
            TagDecoding::Argmax => TagConstraints::free(labels.len()),
        }
    }
}

impl std::str::FromStr for TagDecoding {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "iob2" => Ok(TagDecoding::Iob2),
            "argmax" => Ok(TagDecoding::Argmax),
            _ => Err(format!(
                "unknown tag decoding {s:?}; expected iob2 or argmax"
            )),
        }
    }
}

/// Which tag may follow which.
#[derive(Debug, Clone, PartialEq)]
pub struct TagConstraints {
    labels: usize,
    /// `[labels + 1, labels]`: row `p` says what may follow label `p`; the last row is the
    /// start of the sentence.
    allowed: Vec<bool>,
}

/// The `(prefix, type)` of an IOB2 tag, `None` for a tag without a `B-`/`I-` prefix.
fn iob2(label: &str) -> Option<(char, &str)> {
    let (prefix, kind) = label.split_once('-')?;
    match prefix {
        "B" => Some(('B', kind)),
        "I" => Some(('I', kind)),
        _ => None,
    }
}

impl TagConstraints {
    /// IOB2 over `labels`: `I-X` only after `B-X` or `I-X`; everything else is free.
    pub fn iob2<S: AsRef<str>>(labels: &[S]) -> Self {
        let n = labels.len();
        let parsed: Vec<Option<(char, &str)>> = labels.iter().map(|l| iob2(l.as_ref())).collect();
        let mut allowed = vec![true; (n + 1) * n];
        for (next, tag) in parsed.iter().enumerate() {
            let Some(('I', kind)) = tag else { continue };
            for prev in 0..=n {
                let continues = prev < n && matches!(parsed[prev], Some((_, k)) if k == *kind);
                allowed[prev * n + next] = continues;
            }
        }
        TagConstraints { labels: n, allowed }
    }

    /// No constraint: [`viterbi`] is then each word's argmax.
    pub fn free(labels: usize) -> Self {
        TagConstraints {
            labels,
            allowed: vec![true; (labels + 1) * labels],
        }
    }

    /// The size of the label set.
    pub fn num_labels(&self) -> usize {
        self.labels
    }

    /// Whether `next` may follow `prev` (`None`: the start of the sentence).
    pub fn allows(&self, prev: Option<usize>, next: usize) -> bool {
        self.allowed[prev.unwrap_or(self.labels) * self.labels + next]
    }
}

/// The most probable allowed tag sequence over `words`, each word's row of label
/// probabilities (`None`: a word without a prediction, which gets label 0, the outside
/// tag, with probability 0). Returns each word's tag and that tag's probability. Among
/// equally probable sequences the one with the lowest label indices wins, so without
/// constraints this is each row's first maximum.
pub fn viterbi(words: &[Option<&[f32]>], constraints: &TagConstraints) -> Vec<(usize, f32)> {
    let n = constraints.labels;
    if words.is_empty() || n == 0 {
        return vec![(0, 0.0); words.len()];
    }
    // Log-probabilities in f64; a zero (or NaN) probability is a very unlikely tag, not an
    // impossible one, so that some allowed path always exists.
    let emission = |w: usize, label: usize| -> f64 {
        match words[w] {
            Some(row) => {
                let p = row[label] as f64;
                if p > 0.0 { p.ln() } else { -1e30 }
            }
            None if label == 0 => 0.0,
            None => f64::NEG_INFINITY,
        }
    };
    let mut score: Vec<f64> = (0..n)
        .map(|l| {
            if constraints.allows(None, l) {
                emission(0, l)
            } else {
                f64::NEG_INFINITY
            }
        })
        .collect();
    let mut back = vec![0usize; words.len() * n];
    for w in 1..words.len() {
        let mut next = vec![f64::NEG_INFINITY; n];
        for (l, slot) in next.iter_mut().enumerate() {
            let (mut best, mut arg) = (f64::NEG_INFINITY, 0);
            for (p, &s) in score.iter().enumerate() {
                if s > best && constraints.allows(Some(p), l) {
                    (best, arg) = (s, p);
                }
            }
            *slot = best + emission(w, l);
            back[w * n + l] = arg;
        }
        score = next;
    }
    let mut tag = (0..n).fold(0, |b, l| if score[l] > score[b] { l } else { b });
    let mut tags = vec![0; words.len()];
    for w in (0..words.len()).rev() {
        tags[w] = tag;
        tag = back[w * n + tag];
    }
    tags.iter()
        .zip(words)
        .map(|(&t, row)| (t, row.map_or(0.0, |r| r[t])))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LABELS: [&str; 5] = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"];

    fn decode(rows: &[[f32; 5]]) -> Vec<usize> {
        let words: Vec<Option<&[f32]>> = rows.iter().map(|r| Some(&r[..])).collect();
        viterbi(&words, &TagConstraints::iob2(&LABELS))
            .into_iter()
            .map(|(t, _)| t)
            .collect()
    }

    #[test]
    fn iob2_forbids_only_i_tags_without_their_b_or_i() {
        let c = TagConstraints::iob2(&LABELS);
        assert!(!c.allows(None, 2), "I-PER cannot start a sentence");
        assert!(!c.allows(Some(0), 2), "O then I-PER");
        assert!(!c.allows(Some(3), 2), "B-LOC then I-PER");
        assert!(c.allows(Some(1), 2) && c.allows(Some(2), 2));
        for next in [0, 1, 3] {
            for prev in [None, Some(0), Some(2), Some(4)] {
                assert!(c.allows(prev, next), "{prev:?} then {next}");
            }
        }
        // Tags without a B-/I- prefix constrain nothing.
        let free = TagConstraints::iob2(&["O", "PER", "LOC"]);
        assert!((0..3).all(|n| free.allows(None, n) && (0..3).all(|p| free.allows(Some(p), n))));
    }

    #[test]
    fn valid_argmax_is_kept() {
        let rows = [
            [0.1, 0.8, 0.05, 0.03, 0.02],
            [0.1, 0.05, 0.8, 0.03, 0.02],
            [0.9, 0.02, 0.02, 0.03, 0.03],
            [0.1, 0.05, 0.05, 0.7, 0.1],
        ];
        assert_eq!(decode(&rows), [1, 2, 0, 3]);
    }

    #[test]
    fn an_i_without_its_b_is_repaired_by_the_likelier_fix() {
        // Argmax: O I-PER. Either the first word becomes B-PER (0.4 · 0.6) or the second
        // becomes O (0.55 · 0.3) or B-PER (0.55 · 0.05): B-PER I-PER wins.
        let rows = [[0.55, 0.4, 0.0, 0.05, 0.0], [0.3, 0.05, 0.6, 0.0, 0.05]];
        assert_eq!(decode(&rows), [1, 2]);
        // With a surer first word, the second word gives way: O O.
        let rows = [[0.9, 0.05, 0.0, 0.05, 0.0], [0.35, 0.05, 0.6, 0.0, 0.0]];
        assert_eq!(decode(&rows), [0, 0]);
    }

    #[test]
    fn a_type_change_inside_an_entity_is_repaired() {
        // Argmax: B-PER I-LOC, which seqeval reads as two one-word entities.
        let rows = [[0.0, 0.6, 0.0, 0.4, 0.0], [0.0, 0.0, 0.45, 0.0, 0.55]];
        // B-PER I-PER (0.6 · 0.45 = 0.27) beats B-LOC I-LOC (0.4 · 0.55 = 0.22).
        assert_eq!(decode(&rows), [1, 2]);
        // A sentence may not start with I-: the best first tag is then B-.
        assert_eq!(decode(&[[0.1, 0.2, 0.7, 0.0, 0.0]]), [1]);
    }

    #[test]
    fn every_decoded_sequence_is_valid_and_at_least_as_probable_as_any_valid_one() {
        // Exhaustive check on random rows: the decoded sequence is allowed, and no allowed
        // sequence has a higher product of probabilities.
        let c = TagConstraints::iob2(&LABELS);
        let mut rng = crate::rng::Rng::new(7);
        for _ in 0..200 {
            let len = 1 + rng.below(4);
            let rows: Vec<Vec<f32>> = (0..len)
                .map(|_| {
                    let raw: Vec<f32> = (0..5).map(|_| rng.next_f64() as f32 + 1e-3).collect();
                    let sum: f32 = raw.iter().sum();
                    raw.iter().map(|x| x / sum).collect()
                })
                .collect();
            let words: Vec<Option<&[f32]>> = rows.iter().map(|r| Some(&r[..])).collect();
            let decoded: Vec<usize> = viterbi(&words, &c).into_iter().map(|(t, _)| t).collect();
            let valid = |seq: &[usize]| {
                seq.iter()
                    .enumerate()
                    .all(|(i, &t)| c.allows(i.checked_sub(1).map(|p| seq[p]), t))
            };
            let prob = |seq: &[usize]| -> f64 {
                seq.iter().zip(&rows).map(|(&t, r)| r[t] as f64).product()
            };
            assert!(valid(&decoded), "{decoded:?}");
            let mut best = 0.0f64;
            for code in 0..5usize.pow(len as u32) {
                let seq: Vec<usize> = (0..len).map(|i| code / 5usize.pow(i as u32) % 5).collect();
                if valid(&seq) {
                    best = best.max(prob(&seq));
                }
            }
            assert!(prob(&decoded) >= best * (1.0 - 1e-9), "{decoded:?}");
        }
    }

    #[test]
    fn words_without_prediction_are_outside_and_ties_take_the_lowest_label() {
        let row = [0.2, 0.2, 0.2, 0.2, 0.2];
        let words = [Some(&row[..]), None];
        let out = viterbi(&words, &TagConstraints::iob2(&LABELS));
        assert_eq!(out, vec![(0, 0.2), (0, 0.0)]);
        assert!(viterbi(&[], &TagConstraints::iob2(&LABELS)).is_empty());
    }
}
