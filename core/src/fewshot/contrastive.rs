//! A few-shot-ready encoder: supervised contrastive pre-fine-tuning on many labelled
//! sentences of other datasets (the second stage of CPFT, Zhang et al. 2021), so that a
//! new dataset's classes start apart before its few examples are seen.
//!
//! ```text
//! batch: `classes` labels × `per_class` sentences (class-balanced, so every row has positives)
//!   embeddings + blocks 0..first (frozen, no dropout)
//!   ──► rows twice ──► blocks first.. (learning, dropout: two views) ──► mean pool ──► L2 norm
//!   ──► supervised contrastive loss, temperature τ ──► AdamW (warm-up, linear decay)
//! ```
//!
//! What learns is an [`AdaptMode`] as in adaptation: the top `layers` blocks (`Full`) or
//! bottleneck adapters in them (`Adapters`); the result is a plain encoder (with adapters if
//! any) that adaptation, evaluation and export take as they take any other.

use burn::module::Module;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::error::{Divergence, Error, Result, field};
use crate::fewshot::adapt::{
    AdaptMode, check_adapting, features, first_adapting_block, is_trainable, select_rows,
    to_autodiff,
};
use crate::model::bert::{BertInput, BertModel};
use crate::model::params::set_trainable;
use crate::train::loss::supervised_contrastive;
use crate::train::optim::{AdamW, AdamWConfig, linear_schedule};

/// How an encoder is pre-fine-tuned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContrastiveConfig {
    /// What learns: `full` (all weights of the top `layers` blocks) or `adapters`.
    pub mode: AdaptMode,
    /// How many of the top blocks learn (the embeddings stay as they are).
    pub layers: usize,
    /// Bottleneck width of new adapters (`adapters` mode).
    pub adapter_size: usize,
    /// Optimizer steps.
    pub steps: usize,
    /// Peak learning rate (AdamW), reached after `warmup` steps, then decayed linearly to 0.
    pub lr: f64,
    pub warmup: usize,
    pub weight_decay: f64,
    /// Temperature τ of the contrastive loss.
    pub temperature: f64,
    /// Labels per batch.
    pub classes: usize,
    /// Sentences per label and batch (each run twice: two dropout views).
    pub per_class: usize,
    /// Seeds dropout (the caller seeds the batches).
    pub seed: u64,
}

impl Default for ContrastiveConfig {
    fn default() -> Self {
        // Chosen on CLINC150's dev split, learning from SNIPS + ATIS (docs/RESULTS.md,
        // "Few-shot transfer"): all blocks at 2e-5 moved CLINC150's classes together.
        ContrastiveConfig {
            mode: AdaptMode::Adapters,
            layers: 2,
            adapter_size: 32,
            steps: 300,
            lr: 3e-4,
            warmup: 30,
            weight_decay: 0.01,
            temperature: 0.3,
            classes: 16,
            per_class: 4,
            seed: 1,
        }
    }
}

impl ContrastiveConfig {
    /// Checks every value against the encoder (`num_layers` blocks).
    pub fn validate(&self, num_layers: usize) -> Result<()> {
        if self.mode == AdaptMode::Head {
            return field::bad(
                "mode",
                "\"head\"",
                "a head is made per task from its prototypes; use \"full\" or \"adapters\"",
            );
        }
        check_adapting(self.mode, self.layers, self.adapter_size, num_layers)?;
        field::positive("lr", self.lr)?;
        field::non_negative("weight_decay", self.weight_decay)?;
        field::positive("temperature", self.temperature)?;
        field::at_least_one("steps", self.steps)?;
        if self.classes < 2 {
            return field::bad(
                "classes",
                self.classes,
                "a batch needs at least 2 labels to contrast",
            );
        }
        field::at_least_one("per_class", self.per_class)?;
        Ok(())
    }
}

/// Pre-fine-tunes an encoder, one class-balanced batch at a time.
pub struct ContrastiveTrainer {
    /// On the autodiff device, in training mode.
    bert: BertModel,
    optimizer: AdamW,
    config: ContrastiveConfig,
    first: usize,
    done: usize,
}

impl ContrastiveTrainer {
    /// `encoder` lives on a plain device; adapters are added for the `adapters` mode where
    /// the encoder has none.
    pub fn new(encoder: &BertModel, config: &ContrastiveConfig) -> Result<Self> {
        config.validate(encoder.num_layers())?;
        let device: Device = encoder.pooler.dense.weight.device();
        let mut bert = encoder.clone();
        if config.mode == AdaptMode::Adapters {
            bert = bert.add_adapters(config.adapter_size, config.layers, &device);
        }
        let first = first_adapting_block(config.mode, config.layers, bert.num_layers());
        let mode = config.mode;
        let bert = set_trainable(bert, |p| is_trainable(&format!("bert.{p}"), mode, first));
        let ad = device.autodiff();
        ad.seed(config.seed);
        let optimizer = AdamW::new(AdamWConfig {
            weight_decay: config.weight_decay,
            max_grad_norm: Some(1.0),
            ..Default::default()
        });
        Ok(ContrastiveTrainer {
            bert: bert.fork(&ad).train(),
            optimizer,
            config: config.clone(),
            first,
            done: 0,
        })
    }

    pub fn config(&self) -> &ContrastiveConfig {
        &self.config
    }

    pub fn steps_done(&self) -> usize {
        self.done
    }

    /// One step on a tokenized batch (on the plain device) and its labels: every row runs
    /// twice through the learning blocks (two dropout views, positives of each other).
    /// Returns the loss before the update; a NaN or infinite loss is
    /// [`Error::Diverged`] and changes nothing.
    pub fn step(&mut self, input: BertInput, labels: &[usize]) -> Result<f32> {
        let n = input.input_ids.dims()[0];
        if labels.len() != n {
            return Err(Error::Input(format!(
                "{} labels for {n} sentences",
                labels.len()
            )));
        }
        let frozen = self.bert.valid().forward_until(input, self.first);
        let rows: Vec<usize> = (0..n).chain(0..n).collect();
        let states = to_autodiff(select_rows(&frozen, &rows));
        let y: Vec<usize> = rows.iter().map(|&r| labels[r]).collect();
        let feats = features(&self.bert, self.first, states);
        let loss = supervised_contrastive(feats, &y, self.config.temperature);
        let value = loss.clone().into_scalar::<f32>();
        Divergence::check("contrastive pre-fine-tuning", self.done + 1, value)?;
        let lr = linear_schedule(
            self.done as u64,
            self.config.warmup as u64,
            self.config.steps as u64,
            self.config.lr,
        );
        let grads = loss.backward();
        self.bert = self.optimizer.step(self.bert.clone(), grads, lr).0;
        self.done += 1;
        Ok(value)
    }

    /// The encoder as it is now (on the plain device, for inference or saving).
    pub fn encoder(&self) -> BertModel {
        self.bert.valid()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fewshot::adapt::tests::setup;
    use crate::model::params::parameters;
    use crate::model::pooling::{l2_normalize, mean_pool};

    /// Mean cosine between sentences of one class minus that between classes.
    fn margin(bert: &BertModel, input: BertInput, labels: &[usize]) -> f32 {
        let out = bert.forward(input);
        let f = l2_normalize(mean_pool(out.last_hidden_state, out.mask));
        let sim: Vec<f32> = f
            .clone()
            .matmul(f.transpose())
            .try_into_vec_as::<f32>()
            .unwrap();
        let n = labels.len();
        let (mut same, mut other) = ((0.0, 0), (0.0, 0));
        for i in 0..n {
            for j in (0..n).filter(|&j| j != i) {
                let slot = if labels[i] == labels[j] {
                    &mut same
                } else {
                    &mut other
                };
                slot.0 += sim[i * n + j];
                slot.1 += 1;
            }
        }
        same.0 / same.1 as f32 - other.0 / other.1 as f32
    }

    #[test]
    fn pre_fine_tuning_pulls_classes_apart_and_touches_only_what_learns() {
        let (bert, support, labels, _, _) = setup();
        for mode in [AdaptMode::Full, AdaptMode::Adapters] {
            let config = ContrastiveConfig {
                mode,
                layers: 1,
                adapter_size: 4,
                steps: 20,
                lr: 2e-2,
                warmup: 2,
                temperature: 0.5,
                ..Default::default()
            };
            let mut trainer = ContrastiveTrainer::new(&bert, &config).unwrap();
            let before_margin = margin(&trainer.encoder(), support.clone(), &labels);
            let before = parameters(&trainer.encoder());
            let losses: Vec<f32> = (0..20)
                .map(|_| trainer.step(support.clone(), &labels).unwrap())
                .collect();
            assert!(losses[19] < losses[0], "{mode:?}: {losses:?}");
            let after_margin = margin(&trainer.encoder(), support.clone(), &labels);
            assert!(
                after_margin > before_margin,
                "{mode:?}: margin {before_margin} → {after_margin}"
            );
            let after = parameters(&trainer.encoder());
            for (path, (_, old)) in &before {
                let changed = old.clone().try_into_vec_as::<f32>().unwrap()
                    != after[path].1.clone().try_into_vec_as::<f32>().unwrap();
                let learns = is_trainable(&format!("bert.{path}"), mode, 1);
                assert_eq!(changed, learns, "{mode:?}: {path}");
            }
        }
    }

    #[test]
    fn bad_settings_and_batches_are_refused() {
        let (bert, support, _, _, _) = setup();
        type Edit = fn(&mut ContrastiveConfig);
        let cases: Vec<(Edit, &str)> = vec![
            (|c| c.mode = AdaptMode::Head, "mode = \"head\""),
            (|c| c.layers = 0, "layers = 0"),
            (|c| c.layers = 9, "layers = 9"),
            (|c| c.temperature = -1.0, "temperature = -1"),
            (|c| c.lr = f64::NAN, "lr = NaN"),
            (|c| c.classes = 1, "classes = 1"),
            (|c| c.steps = 0, "steps = 0"),
        ];
        for (edit, want) in cases {
            let mut c = ContrastiveConfig {
                layers: 1,
                ..Default::default()
            };
            edit(&mut c);
            let e = ContrastiveTrainer::new(&bert, &c).err().unwrap();
            assert!(e.to_string().contains(want), "{want}: {e}");
        }
        let c = ContrastiveConfig {
            layers: 1,
            ..Default::default()
        };
        let mut t = ContrastiveTrainer::new(&bert, &c).unwrap();
        let e = t.step(support, &[0, 1]).unwrap_err();
        assert!(e.to_string().contains("2 labels for 6 sentences"), "{e}");
    }
}
