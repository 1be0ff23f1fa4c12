//! Building blocks of first-order meta-learning.
//!
//! - Each episode's head starts from the support set's class prototypes
//!   ([`crate::fewshot::prototypes::prototype_head`]) and is never meta-learned.
//! - [`reptile_update`]: Reptile's outer step (Nichol et al. 2018),
//!   `θ ← θ + ε (mean_i φ_i − θ)` over the adapted weights `φ_i` of a meta-batch.
//! - First-order MAML applies the query-set gradient taken at the adapted weights `φ` to
//!   `θ`: [`crate::train::optim::AdamW::step_params`] with gradients from the adapted model; the
//!   adapted model keeps θ's parameter ids, so they line up.

use std::collections::{BTreeMap, HashMap};

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{Divergence, Error, Result};
use crate::eval::metrics::accuracy;
use crate::fewshot::adapt::{
    AdaptConfig, Learner, first_adapting_block, frozen_states, is_trainable,
};
use crate::model::bert::{BertInput, BertModel, EncoderOutput};
use crate::model::params::{map_parameters, visit_parameters};
use crate::train::loss::cross_entropy;
use crate::train::optim::{AdamW, AdamWConfig};

/// Reptile's outer update: `θ + ε (mean_i φ_i − θ)` for every float parameter, matched by
/// path. `adapted` holds the task-adapted copies `φ_i` of `theta` (non-empty).
pub fn reptile_update<M: Module>(theta: M, adapted: &[M], epsilon: f64) -> M {
    reptile_update_where(theta, adapted, epsilon, |_| true)
}

/// [`reptile_update`] restricted to the parameters whose path satisfies `keep`; the others
/// are left exactly as they are.
pub fn reptile_update_where<M: Module>(
    theta: M,
    adapted: &[M],
    epsilon: f64,
    keep: impl Fn(&str) -> bool,
) -> M {
    assert!(
        !adapted.is_empty(),
        "reptile_update needs at least one adapted model"
    );
    let mut mean: BTreeMap<String, Tensor<1>> = BTreeMap::new();
    for phi in adapted {
        visit_parameters(phi, |path, _, v| {
            if keep(path) {
                let entry = mean.remove(path);
                mean.insert(path.to_string(), entry.map_or(v.clone(), |m| m + v));
            }
        });
    }
    let n = adapted.len() as f64;
    let mut target: BTreeMap<String, Tensor<1>> =
        mean.into_iter().map(|(p, v)| (p, v / n)).collect();
    map_parameters(theta, |slot| match target.remove(slot.path) {
        Some(target) => slot.value.clone() + (target - slot.value) * epsilon,
        None => slot.value,
    })
}

/// First-order meta-learning algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetaAlgorithm {
    /// Nichol et al. 2018: move θ towards the task-adapted weights.
    Reptile,
    /// First-order MAML: apply the query gradient at the adapted weights to θ.
    Fomaml,
}

/// Meta-training settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetaConfig {
    pub algorithm: MetaAlgorithm,
    /// The inner loop: what adapts, its steps and learning rates.
    pub inner: AdaptConfig,
    /// Meta step size at the first iteration: Reptile's ε, or FOMAML's outer Adam rate.
    pub meta_lr: f64,
    /// The meta step size at the last iteration (linear annealing in between).
    pub meta_lr_final: f64,
    /// Episodes per meta-update.
    pub meta_batch: usize,
    pub iterations: usize,
}

impl Default for MetaConfig {
    fn default() -> Self {
        MetaConfig {
            algorithm: MetaAlgorithm::Reptile,
            inner: AdaptConfig::default(),
            meta_lr: 0.5,
            meta_lr_final: 0.0,
            meta_batch: 4,
            iterations: 200,
        }
    }
}

/// One meta-training episode, tokenized, on the encoder's plain device.
#[derive(Debug, Clone)]
pub struct MetaEpisode {
    pub support: BertInput,
    pub support_labels: Vec<usize>,
    pub query: BertInput,
    pub query_labels: Vec<usize>,
    pub n_way: usize,
}

/// What one meta-update saw, averaged over its episodes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetaStepReport {
    /// Support loss before the first inner step.
    pub support_loss: f32,
    /// Query loss at the adapted weights.
    pub query_loss: f32,
    /// Query accuracy at the adapted weights.
    pub query_accuracy: f64,
}

/// Meta-trains the trainable part of an encoder (adapters or top blocks, per
/// `config.inner`); the per-episode head comes from the support prototypes and is never
/// meta-learned.
#[derive(Debug, Clone)]
pub struct MetaLearner {
    pub config: MetaConfig,
    /// FOMAML's outer optimizer (unused by Reptile).
    pub outer: AdamW,
    /// Meta-updates done.
    pub iteration: usize,
}

/// Sums gradients by parameter id.
struct SumGrads<'a> {
    grads: &'a GradientsParams,
    sums: &'a mut HashMap<ParamId, Tensor<1>>,
}

impl ModuleVisitor for SumGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let n = g.shape().num_elements();
            let g = g.reshape([n]);
            let sum = match self.sums.remove(&param.id) {
                Some(s) => s + g,
                None => g,
            };
            self.sums.insert(param.id, sum);
        }
    }
}

/// Registers `sums / n` under each parameter's id, in the parameter's shape.
struct MeanGrads {
    sums: HashMap<ParamId, Tensor<1>>,
    n: f64,
    out: GradientsParams,
}

impl ModuleVisitor for MeanGrads {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(s) = self.sums.remove(&param.id) {
            let dims: [usize; D] = param.val().dims();
            self.out.register::<D>(param.id, (s / self.n).reshape(dims));
        }
    }
}

impl MetaLearner {
    pub fn new(config: MetaConfig) -> Self {
        MetaLearner {
            outer: AdamW::new(AdamWConfig {
                weight_decay: 0.0,
                max_grad_norm: Some(1.0),
                ..Default::default()
            }),
            config,
            iteration: 0,
        }
    }

    /// The meta step size of the next update.
    pub fn meta_lr(&self) -> f64 {
        let c = &self.config;
        let t = self.iteration as f64 / c.iterations.max(1) as f64;
        c.meta_lr + (c.meta_lr_final - c.meta_lr) * t.min(1.0)
    }

    /// One meta-update of `theta` (plain device; with its adapters already added for
    /// adapter meta-learning) from a meta-batch of episodes.
    pub fn step(
        &mut self,
        theta: BertModel,
        episodes: &[MetaEpisode],
    ) -> Result<(BertModel, MetaStepReport)> {
        if episodes.is_empty() {
            return Err(Error::Input(
                "a meta-batch needs at least one episode".into(),
            ));
        }
        let inner = &self.config.inner;
        let mode = inner.mode;
        let first = first_adapting_block(mode, inner.layers, theta.num_layers());
        let keep = |p: &str| is_trainable(&format!("bert.{p}"), mode, first);
        let mut adapted_berts = Vec::with_capacity(episodes.len());
        let mut sums: HashMap<ParamId, Tensor<1>> = HashMap::new();
        let (mut support_loss, mut query_loss, mut query_accuracy) = (0f32, 0f32, 0f64);
        for (i, e) in episodes.iter().enumerate() {
            let mut config = inner.clone();
            config.seed = inner
                .seed
                .wrapping_add((self.iteration * episodes.len() + i) as u64);
            let adapted = Learner::new(&theta, &config)?.adapt(
                e.support.clone(),
                &e.support_labels,
                e.n_way,
                |_, _| {},
            )?;
            support_loss += adapted.losses.first().copied().unwrap_or(f32::NAN);
            let cached = frozen_states(&adapted.model.bert, e.query.clone(), first);
            let ad = cached.mask.device().autodiff();
            let phi = adapted.model.fork(&ad).train();
            let logits = phi.logits_from(
                first,
                EncoderOutput {
                    last_hidden_state: Tensor::from_inner(cached.last_hidden_state),
                    mask: Tensor::from_inner(cached.mask),
                },
            );
            let n = e.query_labels.len();
            let y: Vec<i64> = e.query_labels.iter().map(|&l| l as i64).collect();
            let y = Tensor::<1, Int>::from_data(TensorData::new(y, [n]), &ad);
            let pred: Vec<usize> = logits
                .clone()
                .argmax(1)
                .reshape([n])
                .try_into_vec_as::<i64>()
                .map_err(Error::read_back("the query predictions"))?
                .into_iter()
                .map(|p| p as usize)
                .collect();
            query_accuracy += accuracy(&pred, &e.query_labels);
            let loss = cross_entropy(logits, y);
            let value = loss.clone().into_scalar::<f32>();
            Divergence::check("meta-training", self.iteration + 1, value)?;
            query_loss += value;
            match self.config.algorithm {
                MetaAlgorithm::Reptile => adapted_berts.push(phi.valid().bert),
                MetaAlgorithm::Fomaml => {
                    let grads = GradientsParams::from_grads(loss.backward(), &phi);
                    phi.bert.visit(&mut SumGrads {
                        grads: &grads,
                        sums: &mut sums,
                    });
                }
            }
        }
        let lr = self.meta_lr();
        let theta = match self.config.algorithm {
            MetaAlgorithm::Reptile => reptile_update_where(theta, &adapted_berts, lr, keep),
            MetaAlgorithm::Fomaml => {
                let mut mean = MeanGrads {
                    sums,
                    n: episodes.len() as f64,
                    out: GradientsParams::new(),
                };
                theta.visit(&mut mean);
                self.outer.step_params(theta, mean.out, lr).0
            }
        };
        self.iteration += 1;
        let n = episodes.len() as f32;
        Ok((
            theta,
            MetaStepReport {
                support_loss: support_loss / n,
                query_loss: query_loss / n,
                query_accuracy: query_accuracy / n as f64,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fewshot::adapt::AdaptMode;
    use crate::fewshot::adapt::tests::{adapt, setup};
    use crate::model::params::parameters;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::Device;
    use burn::tensor::Distribution;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.try_into_vec_as::<f32>().unwrap()
    }

    #[derive(Module, Debug)]
    struct Small {
        a: Linear,
        b: Linear,
    }

    fn small(d: &Device) -> Small {
        Small {
            a: LinearConfig::new(3, 4).init(d),
            b: LinearConfig::new(4, 2).init(d),
        }
    }

    #[test]
    fn reptile_update_is_theta_plus_epsilon_times_mean_difference() {
        let d = Device::flex();
        let theta = small(&d);
        let phi1 = small(&d);
        let phi2 = small(&d);
        let (t, p1, p2) = (
            values(theta.a.weight.val()),
            values(phi1.a.weight.val()),
            values(phi2.a.weight.val()),
        );
        let tb = values(theta.b.bias.as_ref().unwrap().val());
        let p1b = values(phi1.b.bias.as_ref().unwrap().val());
        let p2b = values(phi2.b.bias.as_ref().unwrap().val());
        let eps = 0.25f32;
        let new = reptile_update(theta, &[phi1, phi2], eps as f64);
        let got = values(new.a.weight.val());
        for i in 0..t.len() {
            let want = t[i] + eps * ((p1[i] + p2[i]) / 2.0 - t[i]);
            assert!((got[i] - want).abs() < 1e-6, "{i}: {} vs {want}", got[i]);
        }
        let gotb = values(new.b.bias.as_ref().unwrap().val());
        for i in 0..tb.len() {
            let want = tb[i] + eps * ((p1b[i] + p2b[i]) / 2.0 - tb[i]);
            assert!((gotb[i] - want).abs() < 1e-6);
        }
    }

    /// FOMAML: the outer step uses the query gradient taken at the adapted weights φ. Here
    /// the gradient is recomputed independently on a fresh copy of φ, and θ must move by
    /// AdamW's first step, lr·sign(g_query(φ)).
    #[test]
    fn fomaml_outer_gradient_is_the_query_gradient_at_the_adapted_weights() {
        let d = Device::flex().autodiff();
        let theta = small(&d).fork(&d);
        let x = Tensor::<2>::random([6, 3], Distribution::Normal(0.0, 1.0), &d);
        let loss =
            |m: &Small, x: Tensor<2>| m.b.forward(m.a.forward(x).tanh()).powf_scalar(2.0).mean();
        // Inner loop: two SGD-like AdamW steps on a support loss.
        let mut inner = AdamW::new(AdamWConfig {
            weight_decay: 0.0,
            max_grad_norm: None,
            ..Default::default()
        });
        let mut phi = theta.clone();
        for _ in 0..2 {
            let g = loss(&phi, x.clone() * 2.0).backward();
            phi = inner.step(phi, g, 0.05).0;
        }
        // Outer: query gradient at φ, applied to θ.
        let q = x.clone() - 1.0;
        let grads = GradientsParams::from_grads(loss(&phi, q.clone()).backward(), &phi);
        let mut outer = AdamW::new(AdamWConfig {
            weight_decay: 0.0,
            max_grad_norm: None,
            ..Default::default()
        });
        let before = values(theta.a.weight.val().inner());
        let (new_theta, stats) = outer.step_params(theta, grads, 0.01);
        assert_eq!(stats.updated, 4);
        // Independent gradient: a model that shares no parameter ids with φ.
        let w2 = |t: Tensor<2>| Param::from_tensor(Tensor::from_inner(t.inner()).require_grad());
        let w1 = |t: Tensor<1>| Param::from_tensor(Tensor::from_inner(t.inner()).require_grad());
        let fresh = Small {
            a: Linear {
                weight: w2(phi.a.weight.val()),
                bias: Some(w1(phi.a.bias.as_ref().unwrap().val())),
            },
            b: Linear {
                weight: w2(phi.b.weight.val()),
                bias: Some(w1(phi.b.bias.as_ref().unwrap().val())),
            },
        };
        let g = loss(&fresh, q).backward();
        let ga = values(fresh.a.weight.grad(&g).unwrap());
        let after = values(new_theta.a.weight.val().inner());
        for i in 0..before.len() {
            let want = before[i] - 0.01 * ga[i].signum();
            assert!(
                (after[i] - want).abs() < 1e-6,
                "{i}: {} vs {want}",
                after[i]
            );
        }
    }

    fn meta_config(algorithm: MetaAlgorithm) -> MetaConfig {
        MetaConfig {
            algorithm,
            inner: AdaptConfig {
                mode: AdaptMode::Adapters,
                steps: 3,
                lr: 5e-2,
                head_lr: 5e-2,
                layers: 1,
                adapter_size: 4,
                seed: 11,
                ..Default::default()
            },
            meta_lr: 0.5,
            meta_lr_final: 0.5,
            meta_batch: 1,
            iterations: 10,
        }
    }

    fn flat(m: &BertModel) -> BTreeMap<String, Vec<f32>> {
        parameters(m)
            .into_iter()
            .map(|(p, (_, v))| (p, values(v)))
            .collect()
    }

    fn episode() -> MetaEpisode {
        let (_, support, support_labels, query, query_labels) = setup();
        MetaEpisode {
            support,
            support_labels,
            query,
            query_labels,
            n_way: 3,
        }
    }

    /// A meta-step of Reptile with one episode moves exactly the adapter weights to
    /// θ + ε(φ − θ), φ being an independent adaptation with the same seed; every frozen
    /// weight is bit-identical.
    #[test]
    fn reptile_step_on_a_small_bert_moves_adapters_only_by_the_formula() {
        let (bert, ..) = setup();
        let c = meta_config(MetaAlgorithm::Reptile);
        let theta = crate::fewshot::adapt::prepare(&bert, &c.inner);
        let e = episode();
        let phi = adapt(
            &theta,
            e.support.clone(),
            &e.support_labels,
            3,
            &c.inner,
            |_, _| {},
        )
        .unwrap()
        .model
        .bert;
        let mut learner = MetaLearner::new(c);
        let (new, report) = learner.step(theta.clone(), &[e]).unwrap();
        assert!(report.query_loss.is_finite() && report.query_accuracy > 0.0);
        let (t, p, n) = (flat(&theta), flat(&phi), flat(&new));
        let mut moved = 0;
        for (path, tv) in &t {
            if path.contains(".adapter.") {
                for i in 0..tv.len() {
                    let want = tv[i] + 0.5 * (p[path][i] - tv[i]);
                    assert!((n[path][i] - want).abs() < 1e-6, "{path}[{i}]");
                }
                moved += usize::from(n[path] != *tv);
            } else {
                assert_eq!(n[path], *tv, "frozen {path} changed");
            }
        }
        assert!(moved >= 2, "{moved}");
    }

    /// FOMAML with one episode: θ moves by Adam's first step, lr·sign(g), where g is the
    /// query gradient taken at the adapted weights, recomputed here independently.
    #[test]
    fn fomaml_step_on_a_small_bert_applies_the_query_gradient_at_phi() {
        let (bert, ..) = setup();
        let c = meta_config(MetaAlgorithm::Fomaml);
        let theta = crate::fewshot::adapt::prepare(&bert, &c.inner);
        let e = episode();
        let adapted = adapt(
            &theta,
            e.support.clone(),
            &e.support_labels,
            3,
            &c.inner,
            |_, _| {},
        )
        .unwrap();
        // Independent query gradient at φ.
        let ad = Device::flex().autodiff();
        let phi = adapted.model.fork(&ad).train();
        let logits = phi.logits(BertInput {
            input_ids: Tensor::from_inner(e.query.input_ids.clone()),
            token_type_ids: Tensor::from_inner(e.query.token_type_ids.clone()),
            attention_mask: Tensor::from_inner(e.query.attention_mask.clone()),
            shapes: e.query.shapes.clone().map(Tensor::from_inner),
        });
        let y = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 1, 2], [3]), &ad);
        let g = cross_entropy(logits, y).backward();
        let up = &phi.bert.encoder.layer[1]
            .output
            .adapter
            .as_ref()
            .unwrap()
            .up
            .weight;
        let g_up = values(up.grad(&g).unwrap());
        let before = values(
            theta.encoder.layer[1]
                .output
                .adapter
                .as_ref()
                .unwrap()
                .up
                .weight
                .val(),
        );
        let mut learner = MetaLearner::new(c);
        let (new, _) = learner.step(theta.clone(), &[e]).unwrap();
        let after = values(
            new.encoder.layer[1]
                .output
                .adapter
                .as_ref()
                .unwrap()
                .up
                .weight
                .val(),
        );
        let mut checked = 0;
        for i in 0..before.len() {
            // Adam's ε (1e-8) shortens the step of tiny gradients slightly.
            if g_up[i].abs() > 1e-4 {
                let want = before[i] - 0.5 * g_up[i].signum();
                assert!(
                    (after[i] - want).abs() < 1e-3,
                    "{i}: {} vs {want}",
                    after[i]
                );
                checked += 1;
            }
        }
        assert!(checked > before.len() / 4, "{checked} of {}", before.len());
        let (t, n) = (flat(&theta), flat(&new));
        for (path, tv) in &t {
            if !path.contains(".adapter.") {
                assert_eq!(n[path], *tv, "frozen {path} changed");
            }
        }
    }
}
