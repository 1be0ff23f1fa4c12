//! The multi-task model: one shared BERT encoder, one classification head per task.
//!
//! ```text
//! MultiTaskModel
//! ├── bert: BertModel                      (shared; HF names, saved under `bert.`)
//! ├── heads[t]: dropout → classifier       (Linear hidden → labels of task t)
//! │     sentence task: pooled [batch, hidden]      → [batch, labels]
//! │     token task:    states [batch, seq, hidden] → [batch, seq, labels]
//! └── log_vars: [tasks]                    (only with uncertainty weighting)
//! ```
//!
//! Sentence tasks pool the token states (masked mean by default, which is how
//! all-MiniLM-L6-v2 was trained; `cls` uses HF's pooler, dense + tanh on [CLS]).
//! The task list (names, kinds, label sets) travels with the model in `tasks.json`.

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig};
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, SafetensorsStore};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::data::features::TrainBatch;
use crate::error::{Error, Result};
use crate::eval::tagging::TagDecoding;
use crate::io::checkpoint::{FloatWidth, convert_floats_where};
use crate::model::bert::dense;
use crate::model::bert::{BertModel, EncoderOutput};
use crate::model::config::BertConfig;
use crate::model::pooling::{Pooling, pool};
use crate::model::task::{TaskKind, TaskSpec, validate_tasks};
use crate::train::loss::{LossWeighting, cross_entropy, joint_loss};

/// Dropout then a linear classifier; works on `[batch, hidden]` and `[batch, seq, hidden]`.
#[derive(Module, Debug)]
pub struct ClassificationHead {
    pub dropout: Dropout,
    pub classifier: Linear,
}

impl ClassificationHead {
    pub fn new(hidden: usize, num_labels: usize, dropout: f64, device: &Device) -> Self {
        ClassificationHead {
            dropout: DropoutConfig::new(dropout).init(),
            classifier: LinearConfig::new(hidden, num_labels)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: 0.02,
                })
                .init(device),
        }
    }

    /// `[..., hidden]` → `[..., labels]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        dense(&self.classifier, self.dropout.forward(x))
    }
}

/// Everything that defines the model apart from its weights (saved as `tasks.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultiTaskSpec {
    pub tasks: Vec<TaskSpec>,
    #[serde(default)]
    pub pooling: Pooling,
    #[serde(default = "default_dropout")]
    pub head_dropout: f64,
    #[serde(default = "default_weighting")]
    pub loss_weighting: LossWeighting,
    /// How token tasks turn probabilities into tags (default: valid IOB2 sequences).
    #[serde(default)]
    pub decoding: TagDecoding,
}

fn default_dropout() -> f64 {
    0.1
}

fn default_weighting() -> LossWeighting {
    LossWeighting::Static
}

/// One shared encoder with a head per task.
#[derive(Module, Debug)]
pub struct MultiTaskModel {
    pub bert: BertModel,
    pub heads: Vec<ClassificationHead>,
    /// Learned log-variances `s_t`, one per task, under uncertainty weighting.
    pub log_vars: Option<Param<Tensor<1>>>,
    #[module(skip)]
    pub spec: MultiTaskSpec,
}

/// Per-task loss values of one step (for logging), plus the joint loss to differentiate.
pub struct StepLoss {
    pub joint: Tensor<1>,
    /// `(task index, loss)` of each task in the batch.
    pub per_task: Vec<(usize, Tensor<1>)>,
    /// Named parts of the loss, for the log (distillation: each task's gold and soft
    /// terms, the hidden-state and attention matches); empty for plain training.
    pub parts: Vec<(String, Tensor<1>)>,
}

impl MultiTaskModel {
    /// Heads freshly initialised on top of `bert`.
    pub fn new(bert: BertModel, spec: MultiTaskSpec, device: &Device) -> Result<Self> {
        validate_tasks(&spec.tasks)?;
        let hidden = bert.hidden_size();
        let heads = spec
            .tasks
            .iter()
            .map(|t| ClassificationHead::new(hidden, t.num_labels(), spec.head_dropout, device))
            .collect();
        let log_vars = (spec.loss_weighting == LossWeighting::Uncertainty)
            .then(|| Param::from_tensor(Tensor::zeros([spec.tasks.len()], device)));
        Ok(MultiTaskModel {
            bert,
            heads,
            log_vars,
            spec,
        })
    }

    /// A model with random weights, for a config (tests, or before loading a checkpoint).
    pub fn init(config: &BertConfig, spec: MultiTaskSpec, device: &Device) -> Result<Self> {
        Self::new(config.init(device), spec, device)
    }

    pub fn tasks(&self) -> &[TaskSpec] {
        &self.spec.tasks
    }

    /// The index of the task called `name`.
    pub fn task_index(&self, name: &str) -> Result<usize> {
        self.spec
            .tasks
            .iter()
            .position(|t| t.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = self.spec.tasks.iter().map(|t| t.name.as_str()).collect();
                Error::Input(format!("no task {name:?}; the model has {names:?}"))
            })
    }

    /// The sentence vector a sentence task classifies. `[batch, hidden]`.
    pub fn pooled(&self, enc: &EncoderOutput) -> Tensor<2> {
        pool(
            self.spec.pooling,
            enc.last_hidden_state.clone(),
            enc.mask.clone(),
            &self.bert.pooler,
        )
    }

    /// Logits of sentence task `task`: `[batch, labels]`.
    pub fn sentence_logits(&self, task: usize, enc: &EncoderOutput) -> Tensor<2> {
        debug_assert_eq!(self.spec.tasks[task].kind, TaskKind::Sentence);
        self.heads[task].forward(self.pooled(enc))
    }

    /// Logits of token task `task`: `[batch, seq, labels]`.
    pub fn token_logits(&self, task: usize, enc: &EncoderOutput) -> Tensor<3> {
        debug_assert_eq!(self.spec.tasks[task].kind, TaskKind::Token);
        self.heads[task].forward(enc.last_hidden_state.clone())
    }

    /// Class probabilities of every task that applies to the batch: sentence tasks
    /// `[batch, labels]` flattened, token tasks `[batch, seq, labels]` flattened.
    pub fn probabilities(&self, task: usize, enc: &EncoderOutput) -> Tensor<2> {
        match self.spec.tasks[task].kind {
            TaskKind::Sentence => softmax(self.sentence_logits(task, enc), 1),
            TaskKind::Token => {
                let logits = self.token_logits(task, enc);
                let [b, s, c] = logits.dims();
                softmax(logits.reshape([b * s, c]), 1)
            }
        }
    }

    /// Logits of task `task` as rows: `[batch, labels]` for a sentence task, `[batch × seq,
    /// labels]` for a token task (the rows [`task_targets`](Self::task_targets) labels).
    pub fn task_logits(&self, task: usize, enc: &EncoderOutput) -> Tensor<2> {
        match self.spec.tasks[task].kind {
            TaskKind::Sentence => self.sentence_logits(task, enc),
            TaskKind::Token => {
                let logits = self.token_logits(task, enc);
                let [b, s, c] = logits.dims();
                logits.reshape([b * s, c])
            }
        }
    }

    /// The batch's targets for task `task`, one per row of [`task_logits`](Self::task_logits):
    /// negative ([`crate::data::features::IGNORE`]) on padding and on word pieces after a
    /// word's first. The batch must carry the task's kind of targets.
    pub fn task_targets(&self, task: usize, batch: &TrainBatch) -> Tensor<1, Int> {
        match self.spec.tasks[task].kind {
            TaskKind::Sentence => batch
                .sentence_targets
                .clone()
                .expect("a sentence task's batch carries sentence targets"),
            TaskKind::Token => batch
                .token_targets
                .clone()
                .expect("a token task's batch carries token targets"),
        }
    }

    /// The loss of one batch for the tasks `tasks` (one task, or a sentence and a token task
    /// of the same corpus). The batch must carry the targets of each.
    pub fn step_loss(&self, batch: &TrainBatch, tasks: &[usize]) -> StepLoss {
        let enc = self.bert.forward(batch.input.clone());
        let per_task = tasks
            .iter()
            .map(|&t| {
                let loss = cross_entropy(self.task_logits(t, &enc), self.task_targets(t, batch));
                (t, loss)
            })
            .collect();
        self.joint(per_task)
    }

    /// The joint loss of per-task losses `(task, ℓ_t)`, weighted as the spec says
    /// ([`joint_loss`]).
    pub fn joint(&self, per_task: Vec<(usize, Tensor<1>)>) -> StepLoss {
        let terms = per_task
            .iter()
            .map(|(t, loss)| {
                let s = self.log_vars.as_ref().map(|lv| lv.val().narrow(0, *t, 1));
                (self.spec.tasks[*t].weight, loss.clone(), s)
            })
            .collect();
        StepLoss {
            joint: joint_loss(terms),
            per_task,
            parts: Vec::new(),
        }
    }
}

impl MultiTaskModel {
    /// All weights as a safetensors file with Hugging Face names and PyTorch layouts
    /// (`bert.encoder.layer.0.attention.self.query.weight`, `heads.0.classifier.weight`), so
    /// the encoder part loads anywhere a `BertFor*` checkpoint does.
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let mut store = SafetensorsStore::from_bytes(None)
            .with_to_adapter(BurnToPyTorchAdapter)
            .with_key_remapping(r"\.attention\.self_\.", ".attention.self.");
        self.save_into(&mut store)
            .map_err(|e| Error::Serialise(format!("the model: {e}")))?;
        store
            .get_bytes()
            .map_err(|e| Error::Serialise(format!("the model: {e}")))
    }

    /// Loads weights saved by [`to_safetensors`](Self::to_safetensors) into a model built
    /// from the same [`MultiTaskSpec`] and config. Every parameter must be present with
    /// its shape; anything missing, extra or mis-shaped is named.
    pub fn load_safetensors(&mut self, bytes: Vec<u8>, source: &str) -> Result<()> {
        crate::io::checkpoint::check_finite(&bytes, source)?;
        let header = crate::io::safetensors::read_header(&bytes, source)?;
        crate::io::checkpoint::add_stored_casing(&mut self.bert, &header, "bert.");
        let store = SafetensorsStore::from_bytes(Some(bytes))
            .with_key_remapping(r"\.attention\.self\.", ".attention.self_.");
        let unused = self.load_store(store, source, "tensor(s) of this model", |_| true)?;
        if !unused.is_empty() {
            return Err(Error::Checkpoint {
                file: source.into(),
                message: format!(
                    "{} tensor(s) that this model does not have: {:?}",
                    unused.len(),
                    &unused[..unused.len().min(5)]
                ),
            });
        }
        Ok(())
    }

    /// The heads saved in `bytes` (a file from [`to_safetensors`](Self::to_safetensors),
    /// F32 or F16) on top of an encoder already loaded, whose weights are shared, not read
    /// again: the browser holds one copy of the encoder for its multi-task heads and its
    /// few-shot tasks. Only the head tensors of the file are read (and widened).
    pub fn with_heads(
        bert: BertModel,
        spec: MultiTaskSpec,
        bytes: &[u8],
        source: &str,
        device: &Device,
    ) -> Result<Self> {
        let is_head = |p: &str| p.starts_with("heads.") || p.starts_with("log_vars");
        let mut model = Self::new(bert, spec, device)?;
        let heads = convert_floats_where(bytes, FloatWidth::F32, source, is_head)?;
        crate::io::checkpoint::check_finite(&heads, source)?;
        let store = SafetensorsStore::from_bytes(Some(heads));
        model.load_store(store, source, "head tensor(s)", is_head)?;
        Ok(model)
    }

    /// Loads what `store` holds (PyTorch layouts) into the model. A tensor that does not
    /// fit, or a missing parameter for which `needed` holds (called `what` in the message),
    /// is an error naming `source`; returns the file's tensors that the model has no place
    /// for.
    fn load_store(
        &mut self,
        store: SafetensorsStore,
        source: &str,
        what: &str,
        needed: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>> {
        let fail = |message: String| Error::Checkpoint {
            file: source.into(),
            message,
        };
        let mut store = store
            .with_from_adapter(crate::io::checkpoint::FromFile)
            .validate(false)
            .allow_partial(true);
        let result = self
            .load_from(&mut store)
            .map_err(|e| fail(format!("cannot read tensors: {e}")))?;
        if let Some(e) = result.errors.first() {
            return Err(fail(crate::io::checkpoint::apply_error_message(
                e,
                "do the label lists in tasks.json match these weights?",
            )));
        }
        let missing: Vec<&str> = result
            .missing
            .iter()
            .map(|(p, _)| p.as_str())
            .filter(|p| needed(p))
            .collect();
        if !missing.is_empty() {
            return Err(fail(format!(
                "missing {} {what}: {:?} (was it saved with other tasks?)",
                missing.len(),
                &missing[..missing.len().min(5)]
            )));
        }
        Ok(result.unused)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::data::features::{Encoded, collate};
    use crate::data::tokenizer::Tokenizer;
    use crate::data::tokenizer::tests::tiny_tokenizer_json;

    pub(crate) fn two_task_spec(weighting: LossWeighting) -> MultiTaskSpec {
        MultiTaskSpec {
            tasks: vec![
                TaskSpec {
                    name: "sentiment".into(),
                    kind: TaskKind::Sentence,
                    labels: vec!["neg".into(), "pos".into()],
                    weight: 1.0,
                    out_of_scope: None,
                    out_of_scope_threshold: None,
                },
                TaskSpec {
                    name: "tags".into(),
                    kind: TaskKind::Token,
                    labels: vec!["O".into(), "B-X".into(), "I-X".into()],
                    weight: 1.0,
                    out_of_scope: None,
                    out_of_scope_threshold: None,
                },
            ],
            pooling: Pooling::Mean,
            head_dropout: 0.0,
            loss_weighting: weighting,
            decoding: TagDecoding::Iob2,
        }
    }

    /// The tiny tokenizer and a tiny model of [`two_task_spec`] (a sentence task and a
    /// token task) on `device`, for the tests of every module that runs a model.
    pub(crate) fn tiny_two_task(
        weighting: LossWeighting,
        device: &Device,
    ) -> (Tokenizer, MultiTaskModel) {
        let tok = Tokenizer::from_json_bytes(tiny_tokenizer_json().as_bytes(), "t").unwrap();
        let config = BertConfig::tiny(tok.vocab_size());
        let model = MultiTaskModel::init(&config, two_task_spec(weighting), device).unwrap();
        (tok, model)
    }

    #[test]
    fn shapes_of_both_heads() {
        let d = Device::flex();
        let (tok, model) = tiny_two_task(LossWeighting::Static, &d);
        let a = Encoded::words(&tok, &["the", "movie"], Some(vec![0, 1]), Some(1)).unwrap();
        let batch = collate(&[&a, &a], tok.pad_id(), &d).unwrap();
        let enc = model.bert.forward(batch.input.clone());
        assert_eq!(model.sentence_logits(0, &enc).dims(), [2, 2]);
        assert_eq!(model.token_logits(1, &enc).dims(), [2, 4, 3]);
        let p = model.probabilities(1, &enc);
        let sums: Vec<f32> = p.sum_dim(1).try_into_vec_as::<f32>().unwrap();
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5));
        assert_eq!(model.task_index("tags").unwrap(), 1);
        assert!(
            model
                .task_index("nope")
                .unwrap_err()
                .to_string()
                .contains("sentiment")
        );
    }

    #[test]
    fn weights_round_trip_and_mismatches_are_named() {
        let d = Device::flex();
        let tok = Tokenizer::from_json_bytes(tiny_tokenizer_json().as_bytes(), "t").unwrap();
        let config = BertConfig::tiny(tok.vocab_size());
        let spec = two_task_spec(LossWeighting::Uncertainty);
        let model = MultiTaskModel::init(&config, spec.clone(), &d).unwrap();
        let bytes = model.to_safetensors().unwrap();
        let names = crate::io::safetensors::read_header(&bytes, "m").unwrap();
        assert!(names.contains_key("bert.encoder.layer.0.attention.self.query.weight"));
        assert!(names.contains_key("heads.1.classifier.weight"));
        assert!(names.contains_key("log_vars"));
        let mut other = MultiTaskModel::init(&config, spec, &d).unwrap();
        other.load_safetensors(bytes.clone(), "m").unwrap();
        let a = Encoded::words(&tok, &["the", "movie"], Some(vec![0, 1]), Some(1)).unwrap();
        let batch = collate(&[&a], tok.pad_id(), &d).unwrap();
        let out = |m: &MultiTaskModel| -> Vec<f32> {
            let enc = m.bert.forward(batch.input.clone());
            m.probabilities(1, &enc).try_into_vec_as::<f32>().unwrap()
        };
        assert_eq!(out(&model), out(&other));
        // The same file into a model with a different tag set: named, not a panic.
        let mut spec3 = two_task_spec(LossWeighting::Uncertainty);
        spec3.tasks[1].labels.push("B-Y".into());
        let mut wrong = MultiTaskModel::init(&config, spec3, &d).unwrap();
        let e = wrong.load_safetensors(bytes, "m.safetensors").unwrap_err();
        assert!(e.to_string().starts_with("m.safetensors: "), "{e}");
    }

    /// Heads loaded onto an encoder already in memory predict what the whole file does,
    /// and the encoder is the one given, not the file's.
    #[test]
    fn heads_load_onto_a_shared_encoder() {
        let d = Device::flex();
        d.seed(5);
        let tok = Tokenizer::from_json_bytes(tiny_tokenizer_json().as_bytes(), "t").unwrap();
        let config = BertConfig::tiny(tok.vocab_size());
        let spec = two_task_spec(LossWeighting::Static);
        let model = MultiTaskModel::init(&config, spec.clone(), &d).unwrap();
        let bytes = model.to_safetensors().unwrap();
        let a = Encoded::words(&tok, &["the", "movie", "is"], None, None).unwrap();
        let batch = collate(&[&a], tok.pad_id(), &d).unwrap();
        let out = |m: &MultiTaskModel, t: usize| -> Vec<f32> {
            let enc = m.bert.forward(batch.input.clone());
            m.probabilities(t, &enc).try_into_vec_as::<f32>().unwrap()
        };
        let shared =
            MultiTaskModel::with_heads(model.bert.clone(), spec.clone(), &bytes, "m", &d).unwrap();
        for t in 0..2 {
            assert_eq!(out(&model, t), out(&shared, t));
        }
        // Another encoder keeps its own weights: the file's encoder tensors are not read.
        let other_bert = config.init(&d);
        let on_other =
            MultiTaskModel::with_heads(other_bert.clone(), spec.clone(), &bytes, "m", &d).unwrap();
        let emb = |b: &BertModel| -> Vec<f32> {
            b.embeddings
                .word_embeddings
                .weight
                .val()
                .try_into_vec_as::<f32>()
                .unwrap()
        };
        assert_eq!(emb(&on_other.bert), emb(&other_bert));
        assert_ne!(emb(&on_other.bert), emb(&model.bert));
        // Heads of another label set: named.
        let mut spec3 = spec;
        spec3.tasks[1].labels.push("B-Y".into());
        let e = MultiTaskModel::with_heads(model.bert.clone(), spec3, &bytes, "m.safetensors", &d)
            .unwrap_err();
        assert!(e.to_string().starts_with("m.safetensors: "), "{e}");
    }
}
