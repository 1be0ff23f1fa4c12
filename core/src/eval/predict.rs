//! What a text gets from a multi-task model, for people: each sentence task's label and
//! confidence, each token task's entities (type, character span, text, confidence).
//!
//! [`predict`] runs a model over many examples in batches and reads the results back (the
//! CLI's evaluation and prediction). The rest runs on the host, on probabilities already
//! read back, so that the CLI (synchronous reads) and the browser (asynchronous reads,
//! WebGPU) decode them the same way.

use serde::Serialize;

use burn::tensor::{Device, Int, Tensor};

use crate::data::features::{Encoded, collate, word_predictions};
use crate::data::tokenizer::{Tokenizer, first_subword_positions, word_spans};
use crate::error::{Error, Result};
use crate::eval::metrics::extract_entities;
use crate::eval::tagging::TagConstraints;
use crate::model::multitask::MultiTaskModel;
use crate::model::task::{TaskKind, TaskSpec};

/// Predictions of one task over a list of examples.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskPredictions {
    /// Per example: the class and its probability.
    Sentence(Vec<(usize, f32)>),
    /// Per example: the tag of each word and its probability.
    Token(Vec<Vec<(usize, f32)>>),
}

/// Argmax and its probability along the last axis: `[n, c]` → `([n], [n])` on the host.
fn argmax_with_prob(probs: Tensor<2>) -> Result<Vec<(usize, f32)>> {
    let [n, _] = probs.dims();
    let best: Tensor<2, Int> = probs.clone().argmax(1);
    let conf = probs.gather(1, best.clone()).reshape([n]);
    let best: Vec<i64> = best
        .reshape([n])
        .try_into_vec_as::<i64>()
        .map_err(Error::read_back("the predictions"))?;
    let conf: Vec<f32> = conf
        .try_into_vec_as::<f32>()
        .map_err(Error::read_back("the predictions"))?;
    Ok(best.into_iter().map(|b| b as usize).zip(conf).collect())
}

/// Runs the model over `items` for each of `tasks` (batches of similar length, so little
/// padding), returning predictions in the order of `items`. Token-task predictions are per
/// word, read at its first word piece and decoded as the model's spec says (by default the
/// most probable valid IOB2 sequence; [`word_predictions`]), with the "outside" tag
/// (index 0) for words truncated away.
pub fn predict(
    model: &MultiTaskModel,
    items: &[Encoded],
    tasks: &[usize],
    batch_size: usize,
    pad_id: u32,
    device: &Device,
) -> Result<Vec<TaskPredictions>> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| items[i].encoding.ids.len());
    let mut sentence: Vec<Vec<(usize, f32)>> = vec![vec![(0, 0.0); items.len()]; tasks.len()];
    let mut token: Vec<Vec<Vec<(usize, f32)>>> = vec![vec![Vec::new(); items.len()]; tasks.len()];
    let constraints: Vec<TagConstraints> = tasks
        .iter()
        .map(|&t| model.spec.decoding.constraints(&model.tasks()[t].labels))
        .collect();
    for chunk in order.chunks(batch_size.max(1)) {
        let batch_items: Vec<&Encoded> = chunk.iter().map(|&i| &items[i]).collect();
        let batch = collate(&batch_items, pad_id, device)?;
        let enc = model.bert.forward(batch.input.clone());
        for (k, &t) in tasks.iter().enumerate() {
            let probs = model.probabilities(t, &enc);
            match model.tasks()[t].kind {
                TaskKind::Sentence => {
                    let best = argmax_with_prob(probs)?;
                    for (row, &i) in chunk.iter().enumerate() {
                        sentence[k][i] = best[row];
                    }
                }
                TaskKind::Token => {
                    let probs: Vec<f32> = probs
                        .try_into_vec_as::<f32>()
                        .map_err(Error::read_back("the predictions"))?;
                    let row_len = batch.seq_len * constraints[k].num_labels();
                    for (row, &i) in chunk.iter().enumerate() {
                        let row_probs = &probs[row * row_len..(row + 1) * row_len];
                        token[k][i] =
                            word_predictions(row_probs, &items[i].first_pieces, &constraints[k]);
                    }
                }
            }
        }
    }
    Ok(tasks
        .iter()
        .enumerate()
        .map(|(k, &t)| match model.tasks()[t].kind {
            TaskKind::Sentence => TaskPredictions::Sentence(std::mem::take(&mut sentence[k])),
            TaskKind::Token => TaskPredictions::Token(std::mem::take(&mut token[k])),
        })
        .collect())
}

/// A text tokenized for prediction, with the character span of each of its words.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedText {
    pub encoded: Encoded,
    /// `(start, end)` character offsets of each word in the text.
    pub word_spans: Vec<(usize, usize)>,
}

impl PreparedText {
    pub fn new(tokenizer: &Tokenizer, text: &str) -> Result<Self> {
        let encoding = tokenizer.encode(text)?;
        let word_spans = word_spans(&encoding.word_ids, &encoding.offsets);
        let first_pieces = first_subword_positions(&encoding.word_ids, word_spans.len());
        Ok(PreparedText {
            encoded: Encoded {
                encoding,
                sentence_label: None,
                word_tags: None,
                first_pieces,
            },
            word_spans,
        })
    }

    /// The text was longer than the tokenizer's maximum and its end was cut off.
    pub fn truncated(&self) -> bool {
        self.encoding().truncated
    }

    fn encoding(&self) -> &crate::data::tokenizer::Encoding {
        &self.encoded.encoding
    }
}

/// One entity found by a token task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entity {
    /// The entity type (`PER`, `city`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// The entity's characters in the text.
    pub text: String,
    /// Character offsets, end exclusive.
    pub start: usize,
    pub end: usize,
    /// The lowest tag probability among the entity's words.
    pub confidence: f32,
}

/// One task's prediction for one text.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum TaskOutput {
    Sentence {
        label: String,
        confidence: f32,
    },
    Token {
        entities: Vec<Entity>,
        /// One tag per word.
        tags: Vec<String>,
    },
}

/// A sentence task's output from its best class and that class's probability. A task
/// with an out-of-scope threshold says out of scope below it (the confidence stays the best
/// class's probability).
pub fn sentence_output(spec: &TaskSpec, (label, confidence): (usize, f32)) -> TaskOutput {
    let oos = spec.out_of_scope.as_deref().and_then(|l| spec.label_id(l));
    let label = match (oos, spec.out_of_scope_threshold) {
        (Some(oos), Some(t)) if confidence < t => oos,
        _ => label,
    };
    TaskOutput::Sentence {
        label: spec.labels[label].clone(),
        confidence,
    }
}

/// A token task's output from each word's best tag and its probability (one per word of
/// `prepared`; words truncated away carry the outside tag).
pub fn token_output(
    spec: &TaskSpec,
    text: &str,
    prepared: &PreparedText,
    words: &[(usize, f32)],
) -> TaskOutput {
    let tags: Vec<&str> = words
        .iter()
        .map(|(c, _)| spec.labels[*c].as_str())
        .collect();
    let entities = extract_entities(&tags)
        .into_iter()
        .map(|e| {
            let (start, end) = (
                prepared.word_spans[e.start].0,
                prepared.word_spans[e.end - 1].1,
            );
            let confidence = words[e.start..e.end]
                .iter()
                .map(|x| x.1)
                .fold(1.0f32, f32::min);
            Entity {
                kind: e.kind,
                text: text.chars().skip(start).take(end - start).collect(),
                start,
                end,
                confidence,
            }
        })
        .collect();
    TaskOutput::Token {
        entities,
        tags: tags.into_iter().map(String::from).collect(),
    }
}

/// The best class of one row of probabilities and its probability: the first of equal
/// maxima; NaN never wins; `(0, -inf)` for an empty row.
pub fn argmax(row: &[f32]) -> (usize, f32) {
    row.iter()
        .copied()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, p)| {
            if p > best.1 { (i, p) } else { best }
        })
}

/// Task `task`'s output for one text, from the probabilities that
/// [`MultiTaskModel::probabilities`] gave for it alone (a batch of one): `[1, labels]` for a
/// sentence task, `[pieces, labels]` for a token task.
pub fn decode(
    model: &MultiTaskModel,
    task: usize,
    text: &str,
    prepared: &PreparedText,
    probs: &[f32],
) -> TaskOutput {
    let spec = &model.tasks()[task];
    match spec.kind {
        TaskKind::Sentence => sentence_output(spec, argmax(probs)),
        TaskKind::Token => {
            let constraints = model.spec.decoding.constraints(&spec.labels);
            let words = word_predictions(probs, &prepared.encoded.first_pieces, &constraints);
            token_output(spec, text, prepared, &words)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::tokenizer::tests::tiny_tokenizer_json;

    fn ner() -> TaskSpec {
        TaskSpec {
            name: "ner".into(),
            kind: TaskKind::Token,
            labels: vec!["O".into(), "B-X".into(), "I-X".into()],
            weight: 1.0,
            out_of_scope: None,
            out_of_scope_threshold: None,
        }
    }

    #[test]
    fn out_of_scope_threshold_turns_unsure_sentences_out_of_scope() {
        let mut spec = TaskSpec {
            name: "intent".into(),
            kind: TaskKind::Sentence,
            labels: vec!["alarm".into(), "oos".into(), "weather".into()],
            weight: 1.0,
            out_of_scope: Some("oos".into()),
            out_of_scope_threshold: None,
        };
        let label = |spec: &TaskSpec, best| match sentence_output(spec, best) {
            TaskOutput::Sentence { label, confidence } => (label, confidence),
            TaskOutput::Token { .. } => panic!("a sentence task gives a label"),
        };
        assert_eq!(label(&spec, (2, 0.3)), ("weather".into(), 0.3));
        spec.out_of_scope_threshold = Some(0.5);
        assert_eq!(label(&spec, (2, 0.3)), ("oos".into(), 0.3));
        assert_eq!(label(&spec, (2, 0.5)), ("weather".into(), 0.5));
        assert_eq!(label(&spec, (1, 0.9)), ("oos".into(), 0.9));
        // Without an out-of-scope class the threshold means nothing.
        spec.out_of_scope = None;
        assert_eq!(label(&spec, (2, 0.3)), ("weather".into(), 0.3));
    }

    #[test]
    fn entities_carry_character_spans_of_whole_words() {
        let tok = Tokenizer::from_json_bytes(tiny_tokenizer_json().as_bytes(), "t").unwrap();
        let text = "the movie is unbelievable";
        let p = PreparedText::new(&tok, text).unwrap();
        // "unbelievable" is three word pieces, one word.
        assert_eq!(p.word_spans, vec![(0, 3), (4, 9), (10, 12), (13, 25)]);
        let words = [(0, 0.9), (1, 0.8), (2, 0.6), (1, 0.7)];
        let TaskOutput::Token { entities, tags } = token_output(&ner(), text, &p, &words) else {
            panic!("a token task gives entities")
        };
        assert_eq!(tags, ["O", "B-X", "I-X", "B-X"]);
        let entity = |text: &str, start, end, confidence| Entity {
            kind: "X".into(),
            text: text.into(),
            start,
            end,
            confidence,
        };
        // An entity's confidence is its least sure word.
        assert_eq!(
            entities,
            vec![
                entity("movie is", 4, 12, 0.6),
                entity("unbelievable", 13, 25, 0.7)
            ]
        );
    }

    /// Decoding one text's probabilities on the host gives what the batched
    /// [`predict`](crate::eval::predict::predict) gives, for both kinds of task.
    #[test]
    fn decode_agrees_with_batched_prediction() {
        let device = burn::tensor::Device::flex();
        device.seed(3);
        let tok = Tokenizer::from_json_bytes(tiny_tokenizer_json().as_bytes(), "t").unwrap();
        let spec = crate::model::multitask::tests::two_task_spec(
            crate::train::loss::LossWeighting::Static,
        );
        let model = MultiTaskModel::init(
            &crate::model::config::BertConfig::tiny(tok.vocab_size()),
            spec,
            &device,
        )
        .unwrap();
        let texts = [
            "the movie is unbelievable",
            "a new film , so great !",
            "new",
        ];
        let prepared: Vec<PreparedText> = texts
            .iter()
            .map(|t| PreparedText::new(&tok, t).unwrap())
            .collect();
        let items: Vec<Encoded> = prepared.iter().map(|p| p.encoded.clone()).collect();
        let batched =
            crate::eval::predict::predict(&model, &items, &[0, 1], 2, tok.pad_id(), &device)
                .unwrap();
        for (i, (text, p)) in texts.iter().zip(&prepared).enumerate() {
            let batch =
                crate::data::features::collate(&[&p.encoded], tok.pad_id(), &device).unwrap();
            let enc = model.bert.forward(batch.input);
            for (task, batched) in batched.iter().enumerate() {
                let probs: Vec<f32> = model
                    .probabilities(task, &enc)
                    .try_into_vec_as::<f32>()
                    .unwrap();
                let out = decode(&model, task, text, p, &probs);
                let spec = &model.tasks()[task];
                let expected = match batched {
                    TaskPredictions::Sentence(s) => sentence_output(spec, s[i]),
                    TaskPredictions::Token(t) => token_output(spec, text, p, &t[i]),
                };
                match (&out, &expected) {
                    (
                        TaskOutput::Sentence { label, confidence },
                        TaskOutput::Sentence {
                            label: l2,
                            confidence: c2,
                        },
                    ) => {
                        assert_eq!(label, l2);
                        assert!((confidence - c2).abs() < 1e-5, "{confidence} vs {c2}");
                    }
                    (TaskOutput::Token { tags, .. }, TaskOutput::Token { tags: t2, .. }) => {
                        assert_eq!(tags, t2, "{text}");
                        assert_eq!(tags.len(), p.word_spans.len());
                    }
                    _ => panic!("task {task}: kinds differ"),
                }
            }
        }
    }

    #[test]
    fn argmax_keeps_the_first_of_equal_maxima_and_skips_nan() {
        assert_eq!(argmax(&[0.25, 0.5, 0.5, 0.0]), (1, 0.5));
        assert_eq!(argmax(&[f32::NAN, 0.1, 0.9]), (2, 0.9));
        assert_eq!(argmax(&[]), (0, f32::NEG_INFINITY));
    }
}
