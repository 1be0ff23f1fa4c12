//! Few-shot adaptation: a new sentence-classification task from a handful of labelled
//! examples, on top of a (pretrained, multi-task or meta-learned) encoder.
//!
//! ```text
//! support texts ──► encoder blocks 0..first (frozen, run once) ──► cached states
//!                   encoder blocks first.. (adapting) ──► mean pool ──► L2 norm ──► head
//! head: initialised from the support set's class prototypes (W_k = 2s·c_k, b_k = −s‖c_k‖²)
//! ```
//!
//! What adapts ([`AdaptMode`]): the head only; bottleneck adapters in the top `layers`
//! blocks plus the head; or the whole top `layers` blocks plus the head. With
//! `contrastive_steps` (adapters and full modes) the adapting blocks first learn from the
//! support set alone with the supervised contrastive loss, as SetFit and CPFT do
//! (same-label examples pulled together, the others pushed apart; two dropout views of each
//! example where a class has only one), then the head is rebuilt from the prototypes of the new features and the
//! cross-entropy steps follow. Everything else is
//! frozen: it gets no gradient and no optimizer state, and is bit-identical afterwards.
//! Because the frozen bottom of the encoder never changes, its output is computed once
//! per task and only the adapting top runs in each step; head-only adaptation therefore
//! costs one forward pass plus a few tiny steps.
//!
//! The adapted parameters alone (head, adapters or top blocks) are saved as a *task file*
//! ([`crate::io::task_file`]): a small safetensors file with the label set and the
//! settings in its metadata, applied on top of the same base encoder.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::softmax;
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{Divergence, Error, Result, field};
use crate::eval::metrics::accuracy;
use crate::fewshot::prototypes::prototype_head;
use crate::model::bert::{BertInput, BertModel, EncoderOutput};
use crate::model::params::set_trainable;
use crate::model::pooling::{l2_normalize, mean_pool};
use crate::rng::Rng;
use crate::train::loss::{cross_entropy, supervised_contrastive};
use crate::train::optim::{AdamW, AdamWConfig};

/// Which parameters adapt to a new task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdaptMode {
    /// The prototype-initialised head only.
    Head,
    /// Bottleneck adapters in the top `layers` blocks, plus the head.
    Adapters,
    /// All weights of the top `layers` blocks (and their adapters, if any), plus the head.
    Full,
}

impl AdaptMode {
    pub const ALL: [AdaptMode; 3] = [AdaptMode::Head, AdaptMode::Adapters, AdaptMode::Full];

    pub fn name(self) -> &'static str {
        match self {
            AdaptMode::Head => "head",
            AdaptMode::Adapters => "adapters",
            AdaptMode::Full => "full",
        }
    }
}

/// How a task is adapted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdaptConfig {
    pub mode: AdaptMode,
    /// Optimizer steps on the support set (0: the prototype head as is).
    pub steps: usize,
    /// Learning rate of adapters / encoder weights (AdamW, constant).
    pub lr: f64,
    /// Learning rate of the head.
    pub head_lr: f64,
    /// Support examples per step; a larger support set is sampled without replacement.
    pub batch_size: usize,
    /// How many of the top encoder blocks adapt (adapters and full modes).
    pub layers: usize,
    /// Bottleneck width of new adapters.
    pub adapter_size: usize,
    /// Logit scale `s` of the prototype head (a cosine-softmax temperature).
    pub scale: f64,
    /// Supervised contrastive steps on the support set before the `steps` cross-entropy
    /// steps (adapters and full modes; 0: none). Each takes class-balanced examples (two
    /// dropout views of each where a class has only one); the head is rebuilt from
    /// prototypes after them.
    pub contrastive_steps: usize,
    /// Temperature τ of the contrastive loss.
    pub temperature: f64,
    /// Seeds the minibatch order and dropout.
    pub seed: u64,
}

impl Default for AdaptConfig {
    fn default() -> Self {
        AdaptConfig {
            // Measured on CLINC150 (docs/RESULTS.md#few-shot): 5 steps keep 5-way 5-shot
            // adaptation under 3 s on 2 CPU cores.
            mode: AdaptMode::Adapters,
            steps: 5,
            lr: 3e-3,
            head_lr: 1e-2,
            batch_size: 32,
            layers: 2,
            adapter_size: 32,
            scale: 10.0,
            contrastive_steps: 0,
            temperature: 0.1,
            seed: 0,
        }
    }
}

impl AdaptConfig {
    /// Checks every value against the encoder it adapts (`num_layers` blocks): a task
    /// file's settings are as untrusted as a command line's.
    pub fn validate(&self, num_layers: usize) -> Result<()> {
        field::non_negative("lr", self.lr)?;
        field::non_negative("head_lr", self.head_lr)?;
        field::positive("scale", self.scale)?;
        field::positive("temperature", self.temperature)?;
        if self.mode == AdaptMode::Head && self.contrastive_steps > 0 {
            return field::bad(
                "contrastive_steps",
                self.contrastive_steps,
                "needs weights below the head to adapt: mode adapters or full (the head mode \
                 has none)",
            );
        }
        field::at_least_one("batch_size", self.batch_size)?;
        check_adapting(self.mode, self.layers, self.adapter_size, num_layers)?;
        Ok(())
    }
}

/// An encoder with one classification head over L2-normalised mean-pooled states.
#[derive(Module, Debug)]
pub struct FewShotModel {
    pub bert: BertModel,
    /// `[hidden] → [classes]`.
    pub head: Linear,
}

impl FewShotModel {
    /// Logits from states that have been through the encoder's first `first` blocks.
    /// `[batch, seq, hidden]` states → `[batch, classes]`.
    pub fn logits_from(&self, first: usize, states: EncoderOutput) -> Tensor<2> {
        self.head.forward(features(&self.bert, first, states))
    }

    /// `[batch, classes]` logits of a tokenized batch.
    pub fn logits(&self, input: BertInput) -> Tensor<2> {
        self.logits_from(0, self.bert.forward_until(input, 0))
    }

    /// `[batch, classes]` class probabilities.
    pub fn probabilities(&self, input: BertInput) -> Tensor<2> {
        softmax(self.logits(input), 1)
    }

    /// `[batch]` predicted classes (the argmax of the logits).
    pub fn predict(&self, input: BertInput) -> Tensor<1, Int> {
        let n = input.input_ids.dims()[0];
        self.logits(input).argmax(1).reshape([n])
    }

    /// Accuracy on a labelled batch, and the predicted classes (read back synchronously).
    pub fn accuracy(&self, input: BertInput, labels: &[usize]) -> Result<(f64, Vec<usize>)> {
        let pred: Vec<usize> = self
            .predict(input)
            .try_into_vec_as::<i64>()
            .map_err(Error::read_back("the predictions"))?
            .into_iter()
            .map(|p| p as usize)
            .collect();
        Ok((accuracy(&pred, labels), pred))
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.head.weight.dims()[1]
    }
}

/// Sentence features: blocks `first..`, masked mean pooling, L2 normalisation.
pub fn features(bert: &BertModel, first: usize, states: EncoderOutput) -> Tensor<2> {
    let out = bert.forward_from(first, states);
    l2_normalize(mean_pool(out.last_hidden_state, out.mask))
}

/// The block index of an encoder parameter path (`bert.encoder.layer.3.…` → 3).
fn block_of(path: &str) -> Option<usize> {
    path.strip_prefix("bert.encoder.layer.")?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// Whether the parameter at `path` (of a [`FewShotModel`]) adapts under `mode` when blocks
/// `first..` adapt.
pub fn is_trainable(path: &str, mode: AdaptMode, first: usize) -> bool {
    if path.starts_with("head.") {
        return true;
    }
    let in_top = block_of(path).is_some_and(|b| b >= first);
    match mode {
        AdaptMode::Head => false,
        AdaptMode::Adapters => in_top && path.contains(".adapter."),
        AdaptMode::Full => in_top,
    }
}

/// The first adapting block: `layers` counted from the top; all blocks frozen for `Head`.
pub(crate) fn first_adapting_block(mode: AdaptMode, layers: usize, num_layers: usize) -> usize {
    match mode {
        AdaptMode::Head => num_layers,
        _ => num_layers - layers.min(num_layers),
    }
}

/// Checks a support set's labels: at least 2 classes, every label index below `n_way`,
/// every class with an example. With `names` (`n_way` of them) the messages name the
/// labels; the callers add where the examples came from.
/// The blocks that adapt: the top `layers` of `num_layers` (unless only the head adapts),
/// with adapters of `adapter_size` in the adapters mode.
pub(crate) fn check_adapting(
    mode: AdaptMode,
    layers: usize,
    adapter_size: usize,
    num_layers: usize,
) -> Result<()> {
    if mode != AdaptMode::Head {
        field::blocks("layers", layers, num_layers)?;
    }
    if mode == AdaptMode::Adapters {
        field::at_least_one("adapter_size", adapter_size)?;
    }
    Ok(())
}

pub fn validate_support(labels: &[usize], n_way: usize, names: Option<&[String]>) -> Result<()> {
    if n_way < 2 {
        return Err(Error::Input(match names {
            Some(names) => format!(
                "a task needs at least 2 labels, found {n_way} ({})",
                names.join(", ")
            ),
            None => format!("a task needs at least 2 labels, got {n_way}"),
        }));
    }
    let mut counts = vec![0usize; n_way];
    for &l in labels {
        if l >= n_way {
            return Err(Error::Input(format!(
                "label index {l} of a {n_way}-way task"
            )));
        }
        counts[l] += 1;
    }
    if let Some(empty) = counts.iter().position(|&c| c == 0) {
        return Err(Error::Input(match names.and_then(|n| n.get(empty)) {
            Some(name) => format!("label {name:?} has no example; every label needs at least one"),
            None => {
                format!("label #{empty} has no support example; every label needs at least one")
            }
        }));
    }
    Ok(())
}

/// Rows `idx` of cached encoder states.
pub(crate) fn select_rows(states: &EncoderOutput, idx: &[usize]) -> EncoderOutput {
    let device = states.mask.device();
    let n = idx.len();
    let idx: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
    let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [n]), &device);
    EncoderOutput {
        last_hidden_state: states.last_hidden_state.clone().select(0, idx.clone()),
        mask: states.mask.clone().select(0, idx),
    }
}

fn targets(labels: &[usize], device: &burn::tensor::Device) -> Tensor<1, Int> {
    let v: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    Tensor::from_data(TensorData::new(v, [labels.len()]), device)
}

/// States on a plain device moved onto its autodiff counterpart (as constants).
pub(crate) fn to_autodiff(states: EncoderOutput) -> EncoderOutput {
    EncoderOutput {
        last_hidden_state: Tensor::from_inner(states.last_hidden_state),
        mask: Tensor::from_inner(states.mask),
    }
}

/// An encoder ready to adapt to new tasks under one configuration: learn2learn's
/// `clone()` then `adapt()`. [`Learner::new`] checks the settings, gives the encoder its
/// adapters and splits it into the frozen bottom and the adapting top; each task then
/// adapts a copy, leaving the learner as it was.
///
/// ```text
/// let learner = Learner::new(&encoder, &config)?;
/// let adapted = learner.adapt(support, &labels, n_way, |step, loss| ...)?;
/// let (accuracy, predicted) = adapted.model.accuracy(query, &query_labels)?;
/// ```
///
/// Callers that adapt many tasks over the same texts run the frozen blocks once
/// ([`Learner::frozen`]) and adapt from those states ([`Learner::adapt_frozen`]); callers
/// that must not block between steps (the browser) step an [`AdaptSession`]
/// ([`Learner::session`]).
#[derive(Debug, Clone)]
pub struct Learner {
    bert: BertModel,
    first: usize,
    config: AdaptConfig,
}

impl Learner {
    /// `encoder` lives on a plain device (its autodiff counterpart is used for the steps).
    pub fn new(encoder: &BertModel, config: &AdaptConfig) -> Result<Self> {
        config.validate(encoder.num_layers())?;
        let bert = prepare(encoder, config);
        let first = first_adapting_block(config.mode, config.layers, bert.num_layers());
        Ok(Learner {
            bert,
            first,
            config: config.clone(),
        })
    }

    pub fn config(&self) -> &AdaptConfig {
        &self.config
    }

    /// The first adapting block (the encoder's block count for head-only adaptation).
    pub fn first(&self) -> usize {
        self.first
    }

    /// The encoder tasks adapt from (with its adapters).
    pub fn encoder(&self) -> &BertModel {
        &self.bert
    }

    pub fn into_encoder(self) -> BertModel {
        self.bert
    }

    /// A tokenized batch through the frozen blocks: what the adapting top starts from.
    pub fn frozen(&self, input: BertInput) -> EncoderOutput {
        frozen_states(&self.bert, input, self.first)
    }

    /// Adapts to a task from its tokenized support set; `labels[i] < n_way` are its
    /// classes. `on_step(step, loss)` is called after each step with the loss before it.
    /// A NaN or infinite loss stops the adaptation with [`Error::Diverged`].
    pub fn adapt(
        &self,
        support: BertInput,
        labels: &[usize],
        n_way: usize,
        on_step: impl FnMut(usize, f32),
    ) -> Result<Adapted> {
        self.adapt_frozen(&self.frozen(support), labels, n_way, on_step)
    }

    /// [`Learner::adapt`] from support states already through the frozen blocks
    /// ([`Learner::frozen`]).
    pub fn adapt_frozen(
        &self,
        support: &EncoderOutput,
        labels: &[usize],
        n_way: usize,
        mut on_step: impl FnMut(usize, f32),
    ) -> Result<Adapted> {
        let mut session = self.session(support.clone(), labels, n_way)?;
        let mut losses = Vec::with_capacity(session.total_steps());
        while !session.is_done() {
            let step = session.steps_done();
            let value = session.step().into_scalar::<f32>();
            check_loss(step, value)?;
            on_step(step, value);
            losses.push(value);
        }
        Ok(Adapted {
            losses,
            ..session.finish()
        })
    }

    /// Adaptation one step at a time from support states through the frozen blocks: the
    /// prototype head is built here, each [`AdaptSession::step`] runs one update.
    pub fn session(
        &self,
        support: EncoderOutput,
        labels: &[usize],
        n_way: usize,
    ) -> Result<AdaptSession> {
        AdaptSession::new(
            self.bert.clone(),
            support,
            self.first,
            labels,
            n_way,
            &self.config,
        )
    }
}

/// The optimizer of an adaptation: AdamW without weight decay, clipped at norm 1, the
/// head at its own learning rate.
fn optimizer(config: &AdaptConfig) -> AdamW {
    let mut optimizer = AdamW::new(AdamWConfig {
        weight_decay: 0.0,
        max_grad_norm: Some(1.0),
        head_lr_scale: config.head_lr / config.lr,
        ..Default::default()
    });
    // Clipping on the device: no synchronous read-back (WebGPU in the browser).
    optimizer.read_back = false;
    optimizer
}

/// The divergence check of every adaptation loop: `Err` when the support loss read
/// before step `step` (0-based) is NaN or infinite. Nothing adapted is kept then.
pub fn check_loss(step: usize, loss: f32) -> Result<()> {
    Ok(Divergence::check("adaptation", step + 1, loss)?)
}

/// The result of adapting to one task.
#[derive(Debug)]
pub struct Adapted {
    /// The adapted model, on the base encoder's (plain) device.
    pub model: FewShotModel,
    /// The first adapting block (`num_layers` for head-only).
    pub first: usize,
    /// The support loss before each step.
    pub losses: Vec<f32>,
}

/// The frozen bottom of the encoder, run once over a batch: what the adapting top starts
/// from. `bert` must have its adapters already (see [`prepare`]).
pub(crate) fn frozen_states(bert: &BertModel, input: BertInput, first: usize) -> EncoderOutput {
    bert.valid().forward_until(input, first)
}

/// The encoder a task adapts: `bert` itself, with fresh adapters in the top `layers`
/// blocks for [`AdaptMode::Adapters`] where it has none yet (a meta-learned encoder brings
/// its own).
pub(crate) fn prepare(bert: &BertModel, config: &AdaptConfig) -> BertModel {
    let bert = bert.clone();
    if config.mode == AdaptMode::Adapters {
        let device = bert.pooler.dense.weight.device();
        bert.add_adapters(config.adapter_size, config.layers, &device)
    } else {
        bert
    }
}

/// Adaptation one step at a time, for callers that must not block between steps (the
/// browser reads each loss back asynchronously and yields to the page): [`step`] runs
/// forward, backward and the update and returns the loss *before* the update as a
/// tensor; a caller that finds it non-finite drops the session, keeping nothing.
///
/// [`step`]: AdaptSession::step
pub struct AdaptSession {
    model: FewShotModel,
    optimizer: AdamW,
    cached: EncoderOutput,
    first: usize,
    labels: Vec<usize>,
    n_way: usize,
    /// Whether the head still holds the prototypes of the features before the
    /// contrastive steps (rebuilt once they are over).
    stale_head: bool,
    config: AdaptConfig,
    rng: Rng,
    order: Vec<usize>,
    pos: usize,
    done: usize,
}

impl AdaptSession {
    /// Builds the prototype head from the support states and prepares the steps.
    fn new(
        bert: BertModel,
        cached: EncoderOutput,
        first: usize,
        labels: &[usize],
        n_way: usize,
        config: &AdaptConfig,
    ) -> Result<Self> {
        config.validate(bert.num_layers())?;
        let [batch, _, _] = cached.last_hidden_state.dims();
        if labels.len() != batch {
            return Err(Error::Input(format!(
                "{} labels for {batch} support examples",
                labels.len()
            )));
        }
        validate_support(labels, n_way, None)?;
        let device = cached.mask.device();
        let feats = features(&bert.valid(), first, cached.clone());
        let head = prototype_head(feats, labels, n_way, config.scale);
        let mode = config.mode;
        let mut model = set_trainable(FewShotModel { bert, head }, |p| {
            is_trainable(p, mode, first)
        });
        if config.steps + config.contrastive_steps > 0 {
            let ad = device.autodiff();
            ad.seed(config.seed);
            model = model.fork(&ad).train();
        }
        Ok(AdaptSession {
            model,
            optimizer: optimizer(config),
            cached,
            first,
            labels: labels.to_vec(),
            n_way,
            stale_head: config.contrastive_steps > 0,
            config: config.clone(),
            rng: Rng::derive(config.seed, 0xada),
            order: (0..batch).collect(),
            pos: batch,
            done: 0,
        })
    }

    pub fn steps_done(&self) -> usize {
        self.done
    }

    /// All steps: the contrastive ones, then the cross-entropy ones.
    pub fn total_steps(&self) -> usize {
        self.config.contrastive_steps + self.config.steps
    }

    pub fn is_done(&self) -> bool {
        self.done >= self.total_steps()
    }

    /// One step; returns the support loss (`[1]`) of the batch it trained on: the
    /// contrastive loss during the first `contrastive_steps`, then the cross-entropy.
    pub fn step(&mut self) -> Tensor<1> {
        if self.done < self.config.contrastive_steps {
            return self.contrastive_step();
        }
        self.rebuild_head();
        let batch = self.labels.len();
        let rows: Vec<usize> = if batch <= self.config.batch_size {
            self.order.clone()
        } else {
            let mut rows = Vec::with_capacity(self.config.batch_size);
            while rows.len() < self.config.batch_size {
                if self.pos == batch {
                    self.rng.shuffle(&mut self.order);
                    self.pos = 0;
                }
                rows.push(self.order[self.pos]);
                self.pos += 1;
            }
            rows
        };
        let states = to_autodiff(select_rows(&self.cached, &rows));
        let y: Vec<usize> = rows.iter().map(|&r| self.labels[r]).collect();
        let device = states.mask.device();
        let logits = self.model.logits_from(self.first, states);
        let loss = cross_entropy(logits, targets(&y, &device));
        self.update(loss)
    }

    /// Backward, the optimizer step, and the loss on the plain device.
    fn update(&mut self, loss: Tensor<1>) -> Tensor<1> {
        let grads = loss.backward();
        let model = self.model.clone();
        self.model = self.optimizer.step(model, grads, self.config.lr).0;
        self.done += 1;
        Tensor::from_inner(loss.inner())
    }

    /// One supervised contrastive step: class-balanced support examples through the
    /// adapting blocks; the head is not used. Where a class has a single example in the
    /// batch (1-shot), every example runs twice (two dropout views, positives of each
    /// other); otherwise once, so that a contrastive step costs what a cross-entropy
    /// step does.
    fn contrastive_step(&mut self) -> Tensor<1> {
        let rows = self.balanced_rows();
        let mut per_class = vec![0usize; self.n_way];
        for &r in &rows {
            per_class[self.labels[r]] += 1;
        }
        let views: Vec<usize> = if per_class.contains(&1) {
            rows.iter().chain(&rows).copied().collect()
        } else {
            rows
        };
        let states = to_autodiff(select_rows(&self.cached, &views));
        let y: Vec<usize> = views.iter().map(|&r| self.labels[r]).collect();
        let feats = features(&self.model.bert, self.first, states);
        let loss = supervised_contrastive(feats, &y, self.config.temperature);
        self.update(loss)
    }

    /// Up to `batch_size` support rows with at least two of each class drawn where the
    /// class has them (every row when the support set fits in a batch): a random batch
    /// of a 150-way 5-shot support set would hold almost no pair of the same class.
    fn balanced_rows(&mut self) -> Vec<usize> {
        let batch = self.labels.len();
        if batch <= self.config.batch_size {
            return (0..batch).collect();
        }
        let per_class = (self.config.batch_size / self.n_way).max(2);
        let mut classes: Vec<usize> = (0..self.n_way).collect();
        self.rng.shuffle(&mut classes);
        let mut rows = Vec::with_capacity(self.config.batch_size);
        for class in classes {
            let mut members: Vec<usize> = (0..batch).filter(|&r| self.labels[r] == class).collect();
            self.rng.shuffle(&mut members);
            let take = per_class.min(self.config.batch_size - rows.len());
            rows.extend(members.into_iter().take(take));
            if rows.len() >= self.config.batch_size {
                break;
            }
        }
        rows
    }

    /// After the contrastive steps: the head from the prototypes of the adapted features,
    /// and a fresh optimizer for the cross-entropy steps.
    fn rebuild_head(&mut self) {
        if !self.stale_head {
            return;
        }
        self.stale_head = false;
        let plain = self.model.clone().valid();
        let feats = features(&plain.bert, self.first, self.cached.clone());
        let head = prototype_head(feats, &self.labels, self.n_way, self.config.scale);
        let (mode, first) = (self.config.mode, self.first);
        let model = set_trainable(
            FewShotModel {
                bert: plain.bert,
                head,
            },
            |p| is_trainable(p, mode, first),
        );
        self.model = model.fork(&self.model.head.weight.device()).train();
        self.optimizer = optimizer(&self.config);
    }

    /// The adapted model (on the plain device).
    pub fn finish(mut self) -> Adapted {
        self.rebuild_head();
        Adapted {
            model: self.model.valid(),
            first: self.first,
            losses: Vec::new(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::params::parameters;

    /// Adapts through a [`Learner`], as every caller does.
    pub(crate) fn adapt(
        bert: &BertModel,
        support: BertInput,
        labels: &[usize],
        n_way: usize,
        config: &AdaptConfig,
        on_step: impl FnMut(usize, f32),
    ) -> Result<Adapted> {
        Learner::new(bert, config)?.adapt(support, labels, n_way, on_step)
    }
    use crate::fewshot::prototypes::{nearest_prototype, prototypes};
    use crate::model::config::BertConfig;
    use burn::tensor::Device;

    /// A tiny encoder and a toy 3-class task whose classes differ by their tokens.
    pub(crate) fn setup() -> (BertModel, BertInput, Vec<usize>, BertInput, Vec<usize>) {
        let d = Device::flex();
        d.seed(7);
        // No dropout: tests run in parallel on one device, whose seed they would share.
        let bert = BertConfig {
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
            ..BertConfig::tiny(30)
        }
        .init(&d);
        let make = |rows: &[[i64; 4]]| BertInput {
            input_ids: Tensor::from_data(TensorData::new(rows.concat(), [rows.len(), 4]), &d),
            token_type_ids: Tensor::zeros([rows.len(), 4], &d),
            attention_mask: Tensor::ones([rows.len(), 4], &d),
            shapes: None,
        };
        let support = make(&[
            [2, 5, 6, 3],
            [2, 6, 5, 3],
            [2, 10, 11, 3],
            [2, 11, 10, 3],
            [2, 20, 21, 3],
            [2, 21, 20, 3],
        ]);
        let query = make(&[[2, 5, 5, 3], [2, 10, 10, 3], [2, 20, 20, 3]]);
        (bert, support, vec![0, 0, 1, 1, 2, 2], query, vec![0, 1, 2])
    }

    pub(crate) fn config(mode: AdaptMode, steps: usize) -> AdaptConfig {
        // Scale 1: the prototype head starts far from a perfect fit, leaving a loss to lower.
        AdaptConfig {
            mode,
            steps,
            lr: 1e-2,
            head_lr: 5e-2,
            layers: 1,
            adapter_size: 4,
            scale: 1.0,
            ..Default::default()
        }
    }

    #[test]
    fn prototype_head_equals_nearest_prototype_before_any_step() {
        let (bert, support, labels, query, _) = setup();
        let adapted = adapt(
            &bert,
            support.clone(),
            &labels,
            3,
            &config(AdaptMode::Head, 0),
            |_, _| {},
        )
        .unwrap();
        let f = |x: BertInput| features(&bert, 0, bert.forward_until(x, 0));
        let protos = prototypes(f(support), &labels, 3);
        let by_distance: Vec<i64> = nearest_prototype(f(query.clone()), protos)
            .try_into_vec_as::<i64>()
            .unwrap();
        let by_head: Vec<i64> = adapted
            .model
            .logits(query)
            .argmax(1)
            .reshape([3])
            .try_into_vec_as::<i64>()
            .unwrap();
        assert_eq!(by_head, by_distance);
    }

    #[test]
    fn each_mode_learns_and_frozen_parameters_stay_bit_identical() {
        let (bert, support, labels, _, _) = setup();
        for mode in AdaptMode::ALL {
            let c = config(mode, 15);
            let before = parameters(&prepare(&bert, &c));
            let adapted = adapt(&bert, support.clone(), &labels, 3, &c, |_, _| {}).unwrap();
            let (first, last) = (adapted.losses[0], *adapted.losses.last().unwrap());
            assert!(last < first * 0.8, "{mode:?}: loss {first} → {last}");
            let after = parameters(&adapted.model);
            let mut changed = 0;
            for (path, (_, old)) in &before {
                let new = after[&format!("bert.{path}")].1.clone();
                let (old, new) = (
                    old.clone().try_into_vec_as::<f32>().unwrap(),
                    new.try_into_vec_as::<f32>().unwrap(),
                );
                let trainable = is_trainable(&format!("bert.{path}"), mode, adapted.first);
                if trainable {
                    changed += usize::from(old != new);
                } else {
                    assert_eq!(old, new, "{mode:?}: frozen {path} changed");
                }
            }
            match mode {
                AdaptMode::Head => assert_eq!(changed, 0),
                // The top block's two adapters (4 tensors each) / all 16 tensors of the block.
                AdaptMode::Adapters => assert_eq!(changed, 8, "{mode:?}"),
                AdaptMode::Full => assert!(changed >= 12, "{mode:?}: {changed}"),
            }
        }
    }

    #[test]
    fn contrastive_steps_lower_their_loss_then_the_head_fits_the_new_features() {
        let (bert, support, labels, query, query_labels) = setup();
        for mode in [AdaptMode::Adapters, AdaptMode::Full] {
            let c = AdaptConfig {
                contrastive_steps: 12,
                temperature: 0.5,
                lr: 5e-2,
                ..config(mode, 3)
            };
            let adapted = adapt(&bert, support.clone(), &labels, 3, &c, |_, _| {}).unwrap();
            assert_eq!(adapted.losses.len(), 15, "{mode:?}");
            let contrastive = &adapted.losses[..12];
            assert!(
                contrastive[11] < contrastive[0] * 0.9,
                "{mode:?}: contrastive loss {contrastive:?}"
            );
            // The head was rebuilt from the adapted features' prototypes: before its own
            // steps it classifies as the nearest of those prototypes does.
            let zero = AdaptConfig {
                steps: 0,
                ..c.clone()
            };
            let only = adapt(&bert, support.clone(), &labels, 3, &zero, |_, _| {}).unwrap();
            let m = &only.model;
            let f = |x: BertInput| features(&m.bert, 0, m.bert.forward_until(x, 0));
            let protos = prototypes(f(support.clone()), &labels, 3);
            let by_distance: Vec<i64> = nearest_prototype(f(query.clone()), protos)
                .try_into_vec_as::<i64>()
                .unwrap();
            let by_head: Vec<i64> = m.predict(query.clone()).try_into_vec_as::<i64>().unwrap();
            assert_eq!(by_head, by_distance, "{mode:?}");
            let (acc, _) = adapted
                .model
                .accuracy(query.clone(), &query_labels)
                .unwrap();
            assert!(acc >= 2.0 / 3.0, "{mode:?}: query accuracy {acc}");
        }
        // Only weights below the head can learn contrastively.
        let c = AdaptConfig {
            contrastive_steps: 2,
            ..config(AdaptMode::Head, 1)
        };
        let e = adapt(&bert, support, &labels, 3, &c, |_, _| {}).unwrap_err();
        assert!(e.to_string().contains("contrastive_steps = 2"), "{e}");
    }

    #[test]
    fn contrastive_batches_hold_pairs_of_a_class() {
        let (bert, support, _, _, _) = setup();
        // 6 examples, 3 classes, batches of 4: two classes with both their examples.
        let c = AdaptConfig {
            batch_size: 4,
            contrastive_steps: 1,
            ..config(AdaptMode::Adapters, 0)
        };
        let learner = Learner::new(&bert, &c).unwrap();
        let labels = [0, 1, 2, 0, 1, 2];
        let mut session = learner
            .session(learner.frozen(support), &labels, 3)
            .unwrap();
        for _ in 0..5 {
            let rows = session.balanced_rows();
            assert_eq!(rows.len(), 4, "{rows:?}");
            let mut classes: Vec<usize> = rows.iter().map(|&r| labels[r]).collect();
            classes.sort();
            assert!(
                classes[0] == classes[1] && classes[2] == classes[3],
                "{rows:?}"
            );
        }
    }

    #[test]
    fn frozen_parameters_get_no_optimizer_state() {
        let (bert, support, labels, _, _) = setup();
        let c = config(AdaptMode::Adapters, 1);
        let bert = prepare(&bert, &c);
        let first = first_adapting_block(c.mode, c.layers, bert.num_layers());
        let cached = frozen_states(&bert, support, first);
        let feats = features(&bert, first, cached.clone());
        let head = prototype_head(feats, &labels, 3, 10.0);
        let model = set_trainable(FewShotModel { bert, head }, |p| {
            is_trainable(p, AdaptMode::Adapters, first)
        });
        let ad = Device::flex().autodiff();
        let model = model.fork(&ad).train();
        let loss = cross_entropy(
            model.logits_from(first, to_autodiff(cached)),
            targets(&labels, &ad),
        );
        let mut opt = AdamW::new(AdamWConfig::default());
        let (_, stats) = opt.step(model, loss.backward(), 1e-3);
        let paths = opt.state_paths();
        assert_eq!(stats.updated, paths.len());
        assert!(
            paths
                .iter()
                .all(|p| p.starts_with("head.") || p.contains(".adapter.")),
            "{paths:?}"
        );
        assert!(paths.iter().any(|p| p.contains(".adapter.up.")));
    }

    #[test]
    fn bad_support_sets_are_refused() {
        let (bert, support, _, _, _) = setup();
        let c = config(AdaptMode::Head, 1);
        let e = adapt(&bert, support.clone(), &[0; 6], 1, &c, |_, _| {}).unwrap_err();
        assert!(e.to_string().contains("at least 2 labels"), "{e}");
        let e = adapt(
            &bert,
            support.clone(),
            &[0, 0, 1, 1, 1, 1],
            3,
            &c,
            |_, _| {},
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("label #2 has no support example"),
            "{e}"
        );
        let e = adapt(&bert, support, &[0, 1], 2, &c, |_, _| {}).unwrap_err();
        assert!(
            e.to_string().contains("2 labels for 6 support examples"),
            "{e}"
        );
    }

    #[test]
    fn divergence_is_reported() {
        let (bert, support, labels, _, _) = setup();
        let mut c = config(AdaptMode::Full, 5);
        c.lr = 1e30;
        c.head_lr = 1e30;
        let e = adapt(&bert, support, &labels, 3, &c, |_, _| {}).unwrap_err();
        assert!(matches!(e, Error::Diverged(_)), "{e}");
        assert!(e.to_string().contains("nothing was saved"), "{e}");
    }

    #[test]
    fn bad_settings_are_refused_before_any_step() {
        let (bert, support, labels, _, _) = setup();
        let n = bert.num_layers();
        type Edit = fn(&mut AdaptConfig);
        let cases: Vec<(Edit, &str)> = vec![
            (|c| c.lr = f64::NAN, "lr = NaN"),
            (|c| c.head_lr = f64::INFINITY, "head_lr = inf"),
            (|c| c.scale = f64::NAN, "scale = NaN"),
            (|c| c.scale = 0.0, "scale = 0"),
            (|c| c.adapter_size = 0, "adapter_size = 0"),
            (|c| c.batch_size = 0, "batch_size = 0"),
            (|c| c.temperature = 0.0, "temperature = 0"),
            (|c| c.layers = 100, "layers = 100"),
            (|c| c.layers = 0, "layers = 0"),
        ];
        for (change, want) in cases {
            let mut c = config(AdaptMode::Adapters, 2);
            change(&mut c);
            let e = adapt(&bert, support.clone(), &labels, 3, &c, |_, _| {}).unwrap_err();
            assert!(matches!(e, Error::Input(_)), "{want}: {e}");
            assert!(e.to_string().contains(want), "{want}: {e}");
        }
        let mut c = config(AdaptMode::Adapters, 2);
        c.layers = n;
        assert!(adapt(&bert, support, &labels, 3, &c, |_, _| {}).is_ok());
    }
}
