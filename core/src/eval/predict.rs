//! What a text gets from a multi-task model, for people: each sentence task's label and
//! confidence, each token task's entities (type, character span, text, confidence).
//!
//! [`predict`] runs a model over many labelled examples in batches and reads the results
//! back (evaluation). [`Predictor`] answers for ad-hoc text with every task it holds (a
//! multi-task model's heads, adapted tasks): the CLI's `predict` and the page's "Try it"
//! both go through it, in three steps so that each reads the device its own way (the CLI
//! synchronously, the browser asynchronously for WebGPU) and decodes on the host the same
//! way.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor};

use crate::data::features::{Encoded, collate, word_predictions};
use crate::data::tokenizer::{Tokenizer, first_subword_positions, word_spans};
use crate::error::{Error, Result};
use crate::eval::metrics::extract_entities;
use crate::eval::tagging::TagConstraints;
use crate::fewshot::adapt::FewShotModel;
use crate::model::bert::{BertInput, EncoderOutput};
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
        /// Every label's probability, in label order (a JSON object label → probability).
        #[serde(serialize_with = "label_map")]
        probabilities: Vec<(String, f32)>,
    },
    Token {
        entities: Vec<Entity>,
        /// One tag per word.
        tags: Vec<String>,
    },
}

fn label_map<S: serde::Serializer>(
    probabilities: &[(String, f32)],
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_map(probabilities.iter().map(|(l, p)| (l, p)))
}

/// A sentence task's output from its class probabilities `row`: the best class, its
/// probability and every label's. A task with an out-of-scope threshold says out of scope
/// below it (the confidence stays the best class's probability).
pub fn sentence_output(spec: &TaskSpec, row: &[f32]) -> TaskOutput {
    let oos = spec.out_of_scope.as_deref().and_then(|l| spec.label_id(l));
    labelled_output(&spec.labels, row, oos.zip(spec.out_of_scope_threshold))
}

/// [`sentence_output`] for any label list; `out_of_scope`: the out-of-scope class and the
/// threshold below which a query is out of scope.
fn labelled_output(
    labels: &[String],
    row: &[f32],
    out_of_scope: Option<(usize, f32)>,
) -> TaskOutput {
    let (best, confidence) = argmax(row);
    let label = match out_of_scope {
        Some((oos, t)) if confidence < t => oos,
        _ => best,
    };
    TaskOutput::Sentence {
        label: labels[label].clone(),
        confidence,
        probabilities: labels.iter().cloned().zip(row.iter().copied()).collect(),
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

/// One task's answer for one text.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskAnswer {
    pub task: String,
    pub output: TaskOutput,
}

/// What [`Predictor::forward`] leaves on the device: one probability tensor per task, in
/// the predictor's task order (`[texts, labels]` for a sentence task, `[texts × seq_len,
/// labels]` for a token task).
pub struct DeviceProbabilities {
    pub tasks: Vec<Tensor<2>>,
    pub seq_len: usize,
}

/// Every task that answers for a text: the heads of a multi-task model, then tasks adapted
/// from an encoder (task files), in that order. To predict:
/// 1. [`forward`](Self::forward) on the device,
/// 2. read each of its tensors back (the caller: synchronously natively, asynchronously
///    for WebGPU in the browser),
/// 3. [`decode`](Self::decode) on the host.
///
/// [`predict`](Self::predict) does the three synchronously, in batches.
pub struct Predictor<'a> {
    multitask: Option<&'a MultiTaskModel>,
    adapted: Vec<AdaptedTask<'a>>,
}

/// A task adapted from an encoder, as the predictor holds it.
struct AdaptedTask<'a> {
    name: &'a str,
    labels: &'a [String],
    model: &'a FewShotModel,
    /// How many of its bottom blocks are the shared encoder's.
    shared: usize,
}

impl<'a> Predictor<'a> {
    /// A predictor over the heads of `multitask` (if any) and no adapted task yet.
    pub fn new(multitask: Option<&'a MultiTaskModel>) -> Self {
        Predictor {
            multitask,
            adapted: Vec::new(),
        }
    }

    /// Adds an adapted task named `name` with class names `labels`. `shared`: how many of
    /// its bottom encoder blocks (with the embeddings, which never adapt) are those of the
    /// shared encoder, the one under the multi-task heads and every other task with
    /// `shared` > 0. A task file loaded with [`load_task`] on that encoder shares its
    /// `meta.first` blocks (it stores only what adapted); 0 shares nothing. The shared
    /// blocks run once per batch for all the tasks, so a head-only task costs no encoder
    /// pass of its own and an adapters task only its top blocks.
    ///
    /// [`load_task`]: crate::io::task_file::load_task
    pub fn with_adapted(
        mut self,
        name: &'a str,
        labels: &'a [String],
        model: &'a FewShotModel,
        shared: usize,
    ) -> Self {
        self.adapted.push(AdaptedTask {
            name,
            labels,
            model,
            shared: shared.min(model.bert.num_layers()),
        });
        self
    }

    /// The tasks' names in the order of the answers.
    pub fn task_names(&self) -> Vec<&str> {
        let heads = self
            .multitask
            .iter()
            .flat_map(|m| m.tasks().iter().map(|t| t.name.as_str()));
        heads.chain(self.adapted.iter().map(|a| a.name)).collect()
    }

    /// No task at all.
    pub fn is_empty(&self) -> bool {
        self.task_names().is_empty()
    }

    /// The device step: every task's probabilities for `texts` (one batch).
    pub fn forward(
        &self,
        texts: &[&PreparedText],
        pad_id: u32,
        device: &Device,
    ) -> Result<DeviceProbabilities> {
        let items: Vec<&Encoded> = texts.iter().map(|p| &p.encoded).collect();
        let batch = collate(&items, pad_id, device)?;
        let states = self.shared_states(batch.input.clone());
        let mut tasks = Vec::new();
        if let Some(model) = self.multitask {
            let enc = &states[&model.bert.num_layers()];
            tasks.extend((0..model.tasks().len()).map(|t| model.probabilities(t, enc)));
        }
        for task in &self.adapted {
            let logits = match task.shared {
                0 => task.model.logits(batch.input.clone()),
                first => task.model.logits_from(first, states[&first].clone()),
            };
            tasks.push(softmax(logits, 1));
        }
        Ok(DeviceProbabilities {
            tasks,
            seq_len: batch.seq_len,
        })
    }

    /// The shared encoder's states at each depth a task continues from: the multi-task
    /// model's (all its blocks) and each adapted task's `shared` blocks, each block run
    /// once. The shared encoder is the multi-task model's, or else that of the adapted task
    /// that shares the most blocks (its blocks below that are everyone's).
    fn shared_states(&self, input: BertInput) -> BTreeMap<usize, EncoderOutput> {
        let mut depths: BTreeSet<usize> = self.adapted.iter().map(|a| a.shared).collect();
        depths.remove(&0);
        let bert = match self.multitask {
            Some(m) => {
                depths.insert(m.bert.num_layers());
                &m.bert
            }
            None => match self.adapted.iter().max_by_key(|a| a.shared) {
                Some(a) if a.shared > 0 => &a.model.bert,
                _ => return BTreeMap::new(),
            },
        };
        let mut states = BTreeMap::new();
        let (mut at, mut x) = (0, bert.forward_until(input, 0));
        for depth in depths {
            x = bert.run_blocks(at..depth, x);
            at = depth;
            states.insert(depth, x.clone());
        }
        states
    }

    /// The host step: per text, every task's answer, from the probabilities of
    /// [`forward`](Self::forward) read back (`probs[k]`: task `k`'s tensor, row-major).
    /// Token tasks are decoded as the model's spec says (by default the most probable
    /// valid IOB2 sequence).
    pub fn decode(
        &self,
        texts: &[&str],
        prepared: &[&PreparedText],
        probs: &[Vec<f32>],
        seq_len: usize,
    ) -> Result<Vec<Vec<TaskAnswer>>> {
        let names = self.task_names();
        if probs.len() != names.len() || prepared.len() != texts.len() {
            return Err(Error::Input(format!(
                "{} probability arrays for {} tasks, {} prepared texts for {}",
                probs.len(),
                names.len(),
                prepared.len(),
                texts.len()
            )));
        }
        let mut out: Vec<Vec<TaskAnswer>> = vec![Vec::with_capacity(names.len()); texts.len()];
        let heads = self.multitask.map_or(0, |m| m.tasks().len());
        for (k, (name, probs)) in names.iter().zip(probs).enumerate() {
            let (labels, token) = match self.multitask {
                Some(m) if k < heads => (
                    m.tasks()[k].labels.as_slice(),
                    m.tasks()[k].kind == TaskKind::Token,
                ),
                _ => (self.adapted[k - heads].labels, false),
            };
            let row_len = labels.len() * if token { seq_len } else { 1 };
            if probs.len() != row_len * texts.len() {
                return Err(Error::Input(format!(
                    "task {name}: {} probabilities read back, expected {} texts × {row_len}",
                    probs.len(),
                    texts.len()
                )));
            }
            for (i, row) in probs.chunks(row_len.max(1)).enumerate() {
                let output = match self.multitask {
                    Some(m) if k < heads => {
                        let spec = &m.tasks()[k];
                        if token {
                            let constraints = m.spec.decoding.constraints(&spec.labels);
                            let words = word_predictions(
                                row,
                                &prepared[i].encoded.first_pieces,
                                &constraints,
                            );
                            token_output(spec, texts[i], prepared[i], &words)
                        } else {
                            sentence_output(spec, row)
                        }
                    }
                    _ => labelled_output(labels, row, None),
                };
                out[i].push(TaskAnswer {
                    task: name.to_string(),
                    output,
                });
            }
        }
        Ok(out)
    }

    /// The three steps synchronously: every task's answer for each text, in batches of
    /// `batch_size` texts of similar length (so little padding).
    pub fn predict(
        &self,
        texts: &[&str],
        prepared: &[PreparedText],
        pad_id: u32,
        batch_size: usize,
        device: &Device,
    ) -> Result<Vec<Vec<TaskAnswer>>> {
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| prepared[i].encoded.encoding.ids.len());
        let mut out: Vec<Vec<TaskAnswer>> = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(batch_size.max(1)) {
            let batch: Vec<&PreparedText> = chunk.iter().map(|&i| &prepared[i]).collect();
            let on_device = self.forward(&batch, pad_id, device)?;
            let probs = on_device
                .tasks
                .into_iter()
                .map(|t| {
                    t.try_into_vec_as::<f32>()
                        .map_err(Error::read_back("the predictions"))
                })
                .collect::<Result<Vec<_>>>()?;
            let chunk_texts: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            let answers = self.decode(&chunk_texts, &batch, &probs, on_device.seq_len)?;
            for (&i, a) in chunk.iter().zip(answers) {
                out[i] = a;
            }
        }
        Ok(out)
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
        // The best class and its probability: (2, 0.3), (2, 0.5) and (1, 0.9).
        let (p03, p05, p09) = ([0.25, 0.2, 0.3], [0.2, 0.3, 0.5], [0.05, 0.9, 0.05]);
        let label = |spec: &TaskSpec, row: &[f32]| match sentence_output(spec, row) {
            TaskOutput::Sentence {
                label,
                confidence,
                probabilities,
            } => {
                assert_eq!(probabilities.len(), 3);
                assert_eq!(probabilities[1], ("oos".to_string(), row[1]));
                (label, confidence)
            }
            TaskOutput::Token { .. } => panic!("a sentence task gives a label"),
        };
        assert_eq!(label(&spec, &p03), ("weather".into(), 0.3));
        spec.out_of_scope_threshold = Some(0.5);
        assert_eq!(label(&spec, &p03), ("oos".into(), 0.3));
        assert_eq!(label(&spec, &p05), ("weather".into(), 0.5));
        assert_eq!(label(&spec, &p09), ("oos".into(), 0.9));
        // Without an out-of-scope class the threshold means nothing.
        spec.out_of_scope = None;
        assert_eq!(label(&spec, &p03), ("weather".into(), 0.3));
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

    /// The predictor (forward on the device, decode on the host), one text at a time and in
    /// batches, gives what the batched evaluation [`predict`] gives, for both kinds of task.
    #[test]
    fn predictor_agrees_with_batched_prediction() {
        let device = burn::tensor::Device::flex();
        device.seed(3);
        let (tok, model) = crate::model::multitask::tests::tiny_two_task(
            crate::train::loss::LossWeighting::Static,
            &device,
        );
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
        let batched = predict(&model, &items, &[0, 1], 2, tok.pad_id(), &device).unwrap();
        let predictor = Predictor::new(Some(&model));
        assert_eq!(predictor.task_names(), ["sentiment", "tags"]);
        let all = predictor
            .predict(&texts, &prepared, tok.pad_id(), 2, &device)
            .unwrap();
        for (i, (text, p)) in texts.iter().zip(&prepared).enumerate() {
            let on_device = predictor.forward(&[p], tok.pad_id(), &device).unwrap();
            let probs: Vec<Vec<f32>> = on_device
                .tasks
                .into_iter()
                .map(|t| t.try_into_vec_as::<f32>().unwrap())
                .collect();
            let one = predictor
                .decode(&[text], &[p], &probs, on_device.seq_len)
                .unwrap()
                .remove(0);
            assert_eq!(one.len(), 2);
            for (task, batched) in batched.iter().enumerate() {
                let spec = &model.tasks()[task];
                let expected = match batched {
                    TaskPredictions::Sentence(s) => spec.labels[s[i].0].clone(),
                    TaskPredictions::Token(t) => {
                        let TaskOutput::Token { tags, .. } = token_output(spec, text, p, &t[i])
                        else {
                            panic!("a token task gives tags")
                        };
                        tags.join(" ")
                    }
                };
                for answer in [&one[task], &all[i][task]] {
                    assert_eq!(answer.task, spec.name);
                    match (&answer.output, batched) {
                        (
                            TaskOutput::Sentence {
                                label, confidence, ..
                            },
                            TaskPredictions::Sentence(s),
                        ) => {
                            assert_eq!(*label, expected);
                            assert!((confidence - s[i].1).abs() < 1e-5, "{confidence} vs {s:?}");
                        }
                        (TaskOutput::Token { tags, .. }, TaskPredictions::Token(_)) => {
                            assert_eq!(tags.join(" "), expected, "{text}");
                            assert_eq!(tags.len(), p.word_spans.len());
                        }
                        _ => panic!("task {task}: kinds differ"),
                    }
                }
            }
        }
        // Probabilities of the wrong length are an error, not a panic.
        let p = &prepared[0];
        let e = predictor
            .decode(&[texts[0]], &[p], &[vec![0.5], vec![]], 5)
            .unwrap_err();
        assert!(e.to_string().contains("task sentiment"), "{e}");
    }

    /// Tasks adapted from the multi-task model's encoder (head only, adapters and a fine-
    /// tuned top block) answer the same through the shared encoder pass as each through
    /// its own, and a task that shares nothing still runs its own blocks.
    #[test]
    fn shared_encoder_blocks_give_each_task_its_own_answer() {
        use crate::fewshot::adapt::{AdaptConfig, AdaptMode, Learner};
        let device = burn::tensor::Device::flex();
        device.seed(5);
        let (tok, model) = crate::model::multitask::tests::tiny_two_task(
            crate::train::loss::LossWeighting::Static,
            &device,
        );
        let support: Vec<Encoded> = ["the movie", "new film", "so great", "unbelievable"]
            .iter()
            .map(|t| PreparedText::new(&tok, t).unwrap().encoded)
            .collect();
        let items: Vec<&Encoded> = support.iter().collect();
        let input = collate(&items, tok.pad_id(), &device).unwrap().input;
        let adapt = |mode, lr| {
            let config = AdaptConfig {
                mode,
                steps: 3,
                lr,
                layers: 1,
                adapter_size: 4,
                ..AdaptConfig::default()
            };
            let learner = Learner::new(&model.bert, &config).unwrap();
            let a = learner
                .adapt(input.clone(), &[0, 1, 0, 1], 2, |_, _| {})
                .unwrap();
            (a.model, a.first)
        };
        let tasks = [
            adapt(AdaptMode::Head, 0.1),
            adapt(AdaptMode::Adapters, 0.1),
            adapt(AdaptMode::Full, 0.5),
        ];
        assert_eq!(tasks.iter().map(|t| t.1).collect::<Vec<_>>(), [2, 1, 1]);
        let labels = ["a".to_string(), "b".to_string()];
        let names = ["head", "adapters", "full"];
        let prepared: Vec<PreparedText> = ["a new movie , so great !", "the"]
            .iter()
            .map(|t| PreparedText::new(&tok, t).unwrap())
            .collect();
        let texts: Vec<&PreparedText> = prepared.iter().collect();
        let input = collate(
            &texts.iter().map(|p| &p.encoded).collect::<Vec<_>>(),
            0,
            &device,
        )
        .unwrap()
        .input;
        let probs = |p: &Predictor| -> Vec<Vec<f32>> {
            let out = p.forward(&texts, tok.pad_id(), &device).unwrap();
            out.tasks
                .into_iter()
                .map(|t| t.try_into_vec_as::<f32>().unwrap())
                .collect()
        };
        let max_diff = |a: &[f32], b: &[f32]| {
            assert_eq!(a.len(), b.len());
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max)
        };
        let mut shared = Predictor::new(Some(&model));
        let mut apart = Predictor::new(Some(&model));
        for ((m, first), name) in tasks.iter().zip(names) {
            shared = shared.with_adapted(name, &labels, m, *first);
            apart = apart.with_adapted(name, &labels, m, 0);
        }
        let (a, b) = (probs(&shared), probs(&apart));
        assert_eq!(a.len(), 5);
        for (k, (a, b)) in a.iter().zip(&b).enumerate() {
            let diff = max_diff(a, b);
            assert!(diff < 1e-5, "task {k}: {diff}");
        }
        // The adapted top block and adapters matter: the base encoder's top block in their
        // place answers otherwise.
        for (k, (m, _)) in tasks.iter().enumerate().skip(1) {
            let base_top = m.logits_from(2, model.bert.forward(input.clone()));
            let diff = max_diff(
                &a[2 + k],
                &softmax(base_top, 1).try_into_vec_as::<f32>().unwrap(),
            );
            assert!(
                diff > 1e-4,
                "{}: the adapted block changed nothing ({diff})",
                names[k]
            );
        }
        // Without the multi-task model the task sharing the most blocks runs them.
        let alone = Predictor::new(None).with_adapted("full", &labels, &tasks[2].0, 1);
        let diff = max_diff(&probs(&alone)[0], &a[4]);
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn argmax_keeps_the_first_of_equal_maxima_and_skips_nan() {
        assert_eq!(argmax(&[0.25, 0.5, 0.5, 0.0]), (1, 0.5));
        assert_eq!(argmax(&[f32::NAN, 0.1, 0.9]), (2, 0.9));
        assert_eq!(argmax(&[]), (0, f32::NEG_INFINITY));
    }
}
