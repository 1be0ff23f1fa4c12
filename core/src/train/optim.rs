//! AdamW (Loshchilov & Hutter 2019) as BERT fine-tuning uses it: decoupled weight decay,
//! except on biases and LayerNorm parameters; bias-corrected moments; optional clipping of
//! the global gradient norm; a linear warm-up and decay schedule.
//!
//! It is written here rather than taken from burn-optim for two reasons: burn's AdamW
//! applies one weight decay to every parameter, and its state is keyed by parameter ids
//! that change whenever a model is rebuilt. Here the state is keyed by parameter *path*
//! (`bert.encoder.layer.0.attention.self_.query.weight`), so it saves to a safetensors
//! file and resumes into a freshly loaded model exactly. Parameters without a gradient
//! (frozen ones) are left untouched and get no state.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{DType, Device, Gradients, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::io::safetensors::{read_f32_tensors, read_header, read_metadata, write_f32};
use crate::model::params::map_parameters_with_grads;

/// AdamW hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Clip the global L2 norm of all gradients to this value (`None`: no clipping).
    pub max_grad_norm: Option<f64>,
    /// Learning-rate multiplier of the task heads (parameters under `heads.` or `head.`), which start
    /// from scratch while the encoder is pretrained.
    #[serde(default = "one")]
    pub head_lr_scale: f64,
}

fn one() -> f64 {
    1.0
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            max_grad_norm: Some(1.0),
            head_lr_scale: 1.0,
        }
    }
}

/// Whether weight decay applies to the parameter at `path`: not to biases, LayerNorm
/// parameters, or the loss-weighting log-variances.
pub fn decays(path: &str) -> bool {
    !(path.ends_with("bias")
        || path.ends_with("beta")
        || path.contains("LayerNorm")
        || path.starts_with("log_vars"))
}

/// The learning rate at `step` (0-based) of `total`: linear warm-up over `warmup` steps
/// from ~0 to `peak`, then linear decay to 0 at `total`.
pub fn linear_schedule(step: u64, warmup: u64, total: u64, peak: f64) -> f64 {
    let s = step as f64 + 1.0;
    if step < warmup {
        peak * s / warmup as f64
    } else if total <= warmup {
        peak
    } else {
        peak * ((total as f64 - step as f64) / (total - warmup) as f64).max(0.0)
    }
}

/// What one optimizer step saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Number of parameters (tensors) updated.
    pub updated: usize,
}

/// The optimizer: hyper-parameters, step count and per-parameter moments.
#[derive(Debug, Clone)]
pub struct AdamW {
    pub config: AdamWConfig,
    /// Number of steps taken.
    pub step: u64,
    /// Path → (first moment, second moment), flattened.
    moments: BTreeMap<String, (Tensor<1>, Tensor<1>)>,
    /// Read the gradient norm back to the host each step (for clipping and
    /// [`StepStats::grad_norm`]). Off, clipping stays on the device and `grad_norm` is
    /// NaN: for devices that cannot read back synchronously (WebGPU in the browser).
    pub read_back: bool,
}

struct NormVisitor<'a> {
    grads: &'a GradientsParams,
    sum: Option<Tensor<1>>,
}

impl ModuleVisitor for NormVisitor<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let sq = (g.clone() * g).sum();
            self.sum = Some(match self.sum.take() {
                None => sq,
                Some(s) => s + sq,
            });
        }
    }
}

/// What every parameter's update in one step shares.
struct StepScalars {
    lr: f64,
    /// Clipping factor read back to the host (1 when none).
    grad_scale: f64,
    /// Clipping factor kept on the device (when not read back).
    grad_scale_tensor: Option<Tensor<1>>,
    step: u64,
}

/// One parameter's AdamW update: its new flat value; its moments are updated in `moments`.
fn update_parameter(
    config: AdamWConfig,
    moments: &mut BTreeMap<String, (Tensor<1>, Tensor<1>)>,
    s: &StepScalars,
    path: &str,
    flat: Tensor<1>,
    g: Tensor<1>,
) -> Tensor<1> {
    let c = config;
    let n = flat.shape().num_elements();
    let device = flat.device();
    let (m, v) = moments
        .remove(path)
        .unwrap_or_else(|| (Tensor::zeros([n], &device), Tensor::zeros([n], &device)));
    let t = s.step as i32;
    let lr = if path.starts_with("heads.") || path.starts_with("head.") {
        s.lr * c.head_lr_scale
    } else {
        s.lr
    };
    let decay = if decays(path) {
        lr * c.weight_decay
    } else {
        0.0
    };
    let mut k = Coefficients {
        grad_scale: s.grad_scale,
        bias_correction1: 1.0 - c.beta1.powi(t),
        bias_correction2: 1.0 - c.beta2.powi(t),
        lr,
        decay,
        config: c,
    };
    // One pass in host memory on the CPU backend, for f32 state (what the models here
    // train in); the tensor form everywhere else.
    let on_host =
        device == Device::flex() && [&flat, &g, &m, &v].iter().all(|t| t.dtype() == DType::F32);
    let (new, m, v) = if on_host {
        if let Some(scale) = &s.grad_scale_tensor {
            k.grad_scale *= scale.clone().into_scalar::<f32>() as f64;
        }
        update_on_host(flat, g, m, v, &k)
    } else {
        let mut g = g;
        if k.grad_scale != 1.0 {
            g = g * k.grad_scale;
        }
        if let Some(scale) = &s.grad_scale_tensor {
            g = g * scale.clone();
        }
        update_on_device(flat, g, m, v, &k)
    };
    moments.insert(path.to_string(), (m, v));
    new
}

/// The scalars of one parameter's update.
struct Coefficients {
    /// Factor on the gradient (clipping), 1 when none.
    grad_scale: f64,
    /// `1 − β₁ᵗ` and `1 − β₂ᵗ`.
    bias_correction1: f64,
    bias_correction2: f64,
    lr: f64,
    /// `lr · weight_decay`, 0 where the parameter does not decay.
    decay: f64,
    config: AdamWConfig,
}

/// `(p, m, v)` after one step, as tensor operations (any device).
fn update_on_device(
    p: Tensor<1>,
    g: Tensor<1>,
    m: Tensor<1>,
    v: Tensor<1>,
    k: &Coefficients,
) -> (Tensor<1>, Tensor<1>, Tensor<1>) {
    let c = k.config;
    // The gradient comes scaled.
    let m = m * c.beta1 + g.clone() * (1.0 - c.beta1);
    let v = v * c.beta2 + g.clone() * g * (1.0 - c.beta2);
    let update =
        (m.clone() / k.bias_correction1) / ((v.clone() / k.bias_correction2).sqrt() + c.eps);
    let p = if k.decay != 0.0 {
        p * (1.0 - k.decay)
    } else {
        p
    };
    (p - update * k.lr, m, v)
}

/// The same update as [`update_on_device`], for tensors in host memory (burn's CPU
/// backend), in one pass over the four buffers, in place where they are not shared. The
/// tensor form runs ~15 passes over every parameter, each allocating its output: ~10% of a
/// MiniLM training step on two cores (docs/RESULTS.md, "CPU speed"). Each element goes
/// through the same f32 operations in the same order, so both give the same bits.
fn update_on_host(
    p: Tensor<1>,
    g: Tensor<1>,
    m: Tensor<1>,
    v: Tensor<1>,
    k: &Coefficients,
) -> (Tensor<1>, Tensor<1>, Tensor<1>) {
    let device = p.device();
    let (mut p, g, mut m, mut v) = (p.into_data(), g.into_data(), m.into_data(), v.into_data());
    let c = k.config;
    let f = |x: f64| x as f32;
    let (scale, b1, b1c, b2, b2c) = (
        f(k.grad_scale),
        f(c.beta1),
        f(1.0 - c.beta1),
        f(c.beta2),
        f(1.0 - c.beta2),
    );
    let (bc1, bc2, eps, lr, keep) = (
        f(k.bias_correction1),
        f(k.bias_correction2),
        f(c.eps),
        f(k.lr),
        f(1.0 - k.decay),
    );
    let decays = k.decay != 0.0;
    let all_f32 = "update_on_host takes f32 tensors (checked by the caller)";
    let g = g.as_slice::<f32>().expect(all_f32);
    let ps = p.as_mut_slice::<f32>().expect(all_f32);
    let ms = m.as_mut_slice::<f32>().expect(all_f32);
    let vs = v.as_mut_slice::<f32>().expect(all_f32);
    for (((p, m), v), &g) in ps.iter_mut().zip(ms.iter_mut()).zip(vs.iter_mut()).zip(g) {
        let g = if scale != 1.0 { g * scale } else { g };
        *m = *m * b1 + g * b1c;
        *v = *v * b2 + g * g * b2c;
        let update = (*m / bc1) / ((*v / bc2).sqrt() + eps);
        let kept = if decays { *p * keep } else { *p };
        *p = kept - update * lr;
    }
    let back = |data: TensorData| Tensor::from_data(data, &device);
    (back(p), back(m), back(v))
}

impl AdamW {
    pub fn new(config: AdamWConfig) -> Self {
        AdamW {
            config,
            step: 0,
            moments: BTreeMap::new(),
            read_back: true,
        }
    }

    /// Applies one update with learning rate `lr` from the gradients of a backward pass.
    pub fn step<M: Module>(&mut self, model: M, grads: Gradients, lr: f64) -> (M, StepStats) {
        let grads = GradientsParams::from_grads(grads, &model);
        self.step_params(model, grads, lr)
    }

    /// Like [`step`](Self::step), with gradients already keyed by parameter id (e.g. the
    /// query gradients of a task-adapted copy of `model`, for first-order MAML).
    pub fn step_params<M: Module>(
        &mut self,
        model: M,
        mut grads: GradientsParams,
        lr: f64,
    ) -> (M, StepStats) {
        let mut norm = NormVisitor {
            grads: &grads,
            sum: None,
        };
        model.visit(&mut norm);
        let (grad_norm, grad_scale, grad_scale_tensor) = if self.read_back {
            let grad_norm = norm
                .sum
                .map(|s| (s.into_scalar::<f32>() as f64).sqrt())
                .unwrap_or(0.0);
            let grad_scale = match self.config.max_grad_norm {
                Some(max) if grad_norm > max => max / (grad_norm + 1e-6),
                _ => 1.0,
            };
            (grad_norm, grad_scale, None)
        } else {
            let scale = match (self.config.max_grad_norm, norm.sum) {
                (Some(max), Some(sum)) => Some(((sum.sqrt() + 1e-6).recip() * max).clamp_max(1.0)),
                _ => None,
            };
            (f64::NAN, 1.0, scale)
        };
        self.step += 1;
        let scalars = StepScalars {
            lr,
            grad_scale,
            grad_scale_tensor,
            step: self.step,
        };
        let (config, moments) = (self.config, &mut self.moments);
        let mut updated = 0;
        let model = map_parameters_with_grads(model, &mut grads, |slot| {
            let grad = slot.grad.expect("parameters with a gradient only");
            updated += 1;
            update_parameter(config, moments, &scalars, slot.path, slot.value, grad)
        });
        (model, StepStats { grad_norm, updated })
    }

    /// Paths of the parameters that have optimizer state.
    pub fn state_paths(&self) -> Vec<&str> {
        self.moments.keys().map(String::as_str).collect()
    }

    /// The state as a safetensors file: `m.PATH` and `v.PATH` per parameter, the step and
    /// the hyper-parameters in the metadata.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut entries = Vec::with_capacity(self.moments.len() * 2);
        for (path, (m, v)) in &self.moments {
            for (prefix, t) in [("m", m), ("v", v)] {
                let data = t
                    .clone()
                    .try_into_vec_as::<f32>()
                    .map_err(|e| Error::ReadBack {
                        what: format!("the optimizer state of {path}"),
                        message: format!("{e:?}"),
                    })?;
                entries.push((format!("{prefix}.{path}"), vec![data.len()], data));
            }
        }
        let mut metadata = BTreeMap::new();
        metadata.insert("step".to_string(), self.step.to_string());
        metadata.insert(
            "config".to_string(),
            serde_json::to_string(&self.config).expect("serialisable"),
        );
        write_f32(&entries, &metadata)
    }

    /// Reads a state written by [`to_bytes`](Self::to_bytes) onto `device`.
    pub fn from_bytes(bytes: &[u8], source: &str, device: &Device) -> Result<Self> {
        let fail = |m: String| Error::Checkpoint {
            file: source.into(),
            message: m,
        };
        read_header(bytes, source)?;
        let metadata = read_metadata(bytes, source)?;
        let step: u64 = metadata
            .get("step")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| fail("optimizer state without a step count".into()))?;
        let config: AdamWConfig = metadata
            .get("config")
            .and_then(|s| serde_json::from_str(s).ok())
            .ok_or_else(|| fail("optimizer state without its configuration".into()))?;
        let mut halves: BTreeMap<String, (Option<Tensor<1>>, Option<Tensor<1>>)> = BTreeMap::new();
        for (name, (_, values)) in read_f32_tensors(bytes, source)? {
            let n = values.len();
            let t = Tensor::<1>::from_data(TensorData::new(values, [n]), device);
            let (which, path) = name
                .split_once('.')
                .ok_or_else(|| fail(format!("unexpected tensor name {name:?}")))?;
            let slot = halves.entry(path.to_string()).or_default();
            match which {
                "m" => slot.0 = Some(t),
                "v" => slot.1 = Some(t),
                _ => return Err(fail(format!("unexpected tensor name {name:?}"))),
            }
        }
        let mut moments = BTreeMap::new();
        for (path, (m, v)) in halves {
            match (m, v) {
                (Some(m), Some(v)) => {
                    moments.insert(path, (m, v));
                }
                _ => {
                    return Err(fail(format!(
                        "{path}: only one of its two moments is stored"
                    )));
                }
            }
        }
        Ok(AdamW {
            config,
            step,
            moments,
            read_back: true,
        })
    }
}

#[cfg(test)]
mod tests {
    // `Toy` has a field named like BERT's `LayerNorm`, for the decay rule.
    #![allow(non_snake_case)]
    use super::*;
    use burn::nn::{Linear, LinearConfig};

    #[derive(Module, Debug)]
    struct Toy {
        dense: Linear,
        LayerNorm: Linear,
    }

    fn toy(device: &Device) -> Toy {
        Toy {
            dense: LinearConfig::new(3, 2).init(device),
            LayerNorm: LinearConfig::new(2, 1).init(device),
        }
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.try_into_vec_as::<f32>().unwrap()
    }

    fn grads(model: &Toy, device: &Device) -> Gradients {
        let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, -2.0, 0.5], [1, 3]), device);
        model
            .LayerNorm
            .forward(model.dense.forward(x))
            .sum()
            .backward()
    }

    /// The CPU backend's one-pass update and the tensor form (the other devices') agree
    /// to the bit, with and without clipping and decay, over a few steps.
    #[test]
    fn host_update_matches_tensor_update() {
        let device = Device::flex();
        let n = 1000;
        let wave = |phase: f32, amp: f32| {
            let v: Vec<f32> = (0..n)
                .map(|i| amp * (i as f32 * 0.731 + phase).sin())
                .collect();
            Tensor::<1>::from_data(TensorData::new(v, [n]), &device)
        };
        for (grad_scale, decay) in [(1.0, 0.0), (0.37, 1e-4)] {
            let (mut p1, mut m1, mut v1) = (wave(0.0, 1.0), wave(0.0, 0.0), wave(0.0, 0.0));
            let (mut p2, mut m2, mut v2) = (p1.clone(), m1.clone(), v1.clone());
            for t in 1..=3 {
                let k = Coefficients {
                    grad_scale,
                    bias_correction1: 1.0 - 0.9f64.powi(t),
                    bias_correction2: 1.0 - 0.999f64.powi(t),
                    lr: 1e-3,
                    decay,
                    config: AdamWConfig::default(),
                };
                let g = wave(t as f32, 3.0);
                (p1, m1, v1) = update_on_host(p1, g.clone(), m1, v1, &k);
                (p2, m2, v2) = update_on_device(p2, g * grad_scale, m2, v2, &k);
            }
            for (a, b) in [(&p1, &p2), (&m1, &m2), (&v1, &v2)] {
                assert_eq!(
                    values(a.clone()),
                    values(b.clone()),
                    "scale {grad_scale}, decay {decay}"
                );
            }
            assert_ne!(values(p1), values(wave(0.0, 1.0)));
        }
    }

    #[test]
    fn decay_exclusions() {
        assert!(decays("bert.encoder.layer.0.attention.self_.query.weight"));
        assert!(!decays("bert.encoder.layer.0.attention.self_.query.bias"));
        assert!(!decays("bert.embeddings.LayerNorm.gamma"));
        assert!(!decays("bert.embeddings.LayerNorm.beta"));
        assert!(!decays("log_vars"));
    }

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        assert!((linear_schedule(0, 10, 110, 1.0) - 0.1).abs() < 1e-12);
        assert!((linear_schedule(9, 10, 110, 1.0) - 1.0).abs() < 1e-12);
        assert!((linear_schedule(60, 10, 110, 1.0) - 0.5).abs() < 1e-12);
        assert_eq!(linear_schedule(110, 10, 110, 1.0), 0.0);
    }

    #[test]
    fn first_step_matches_adamw_by_hand() {
        // After one step, m̂ = g and v̂ = g², so each weight moves by lr·g/(|g|+eps), i.e.
        // by lr·sign(g), plus decoupled decay lr·wd·w on decayed parameters only.
        let d = Device::flex().autodiff();
        let model = toy(&d).fork(&d);
        let before_w = values(model.dense.weight.val().inner());
        let before_ln = values(model.LayerNorm.weight.val().inner());
        let g = grads(&model, &d);
        let gw = values(model.dense.weight.grad(&g).unwrap());
        let gln = values(model.LayerNorm.weight.grad(&g).unwrap());
        let config = AdamWConfig {
            weight_decay: 0.1,
            max_grad_norm: None,
            ..Default::default()
        };
        let mut opt = AdamW::new(config);
        let (model, stats) = opt.step(model, g, 0.01);
        assert_eq!(stats.updated, 4);
        let after_w = values(model.dense.weight.val().inner());
        for i in 0..before_w.len() {
            let want = before_w[i] * (1.0 - 0.01 * 0.1) - 0.01 * gw[i].signum();
            assert!(
                (after_w[i] - want).abs() < 1e-6,
                "dense {i}: {} vs {want}",
                after_w[i]
            );
        }
        // LayerNorm-named parameters: no decay.
        let after_ln = values(model.LayerNorm.weight.val().inner());
        for i in 0..before_ln.len() {
            let want = before_ln[i] - 0.01 * gln[i].signum();
            assert!((after_ln[i] - want).abs() < 1e-6);
        }
        assert!(model.dense.weight.val().is_require_grad());
    }

    #[derive(Module, Debug)]
    struct WithHead {
        dense: Linear,
        heads: Vec<Linear>,
    }

    #[test]
    fn heads_take_their_own_learning_rate() {
        let d = Device::flex().autodiff();
        let model = WithHead {
            dense: LinearConfig::new(3, 2).init(&d),
            heads: vec![LinearConfig::new(2, 1).with_bias(false).init(&d)],
        };
        let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, -2.0, 0.5], [1, 3]), &d);
        let g = model.heads[0]
            .forward(model.dense.forward(x))
            .sum()
            .backward();
        let gh = values(model.heads[0].weight.grad(&g).unwrap());
        let gd = values(model.dense.weight.grad(&g).unwrap());
        let (bh, bd) = (
            values(model.heads[0].weight.val().inner()),
            values(model.dense.weight.val().inner()),
        );
        let mut opt = AdamW::new(AdamWConfig {
            weight_decay: 0.0,
            max_grad_norm: None,
            head_lr_scale: 10.0,
            ..Default::default()
        });
        let (model, _) = opt.step(model, g, 0.01);
        // First Adam step moves each weight by lr·sign(g): 0.1 for the head, 0.01 elsewhere.
        let ah = values(model.heads[0].weight.val().inner());
        let ad = values(model.dense.weight.val().inner());
        for i in 0..ah.len() {
            assert!((ah[i] - (bh[i] - 0.1 * gh[i].signum())).abs() < 1e-6);
        }
        for i in 0..ad.len() {
            assert!((ad[i] - (bd[i] - 0.01 * gd[i].signum())).abs() < 1e-6);
        }
    }

    #[test]
    fn clipping_scales_the_global_norm() {
        let d = Device::flex().autodiff();
        let model = toy(&d).fork(&d);
        let g = grads(&model, &d);
        let mut opt = AdamW::new(AdamWConfig {
            max_grad_norm: Some(1e-3),
            ..Default::default()
        });
        let (_, stats) = opt.step(model, g, 0.01);
        assert!(
            stats.grad_norm > 1e-3,
            "the toy's gradient norm is not tiny"
        );
        // The first Adam step is invariant to gradient scale, so check the moments instead:
        // m = (1−β1)·g_clipped has global norm (1−β1)·1e-3.
        let mut sq = 0.0f64;
        for (m, _) in opt.moments.values() {
            sq += values(m.clone())
                .iter()
                .map(|x| (*x as f64).powi(2))
                .sum::<f64>();
        }
        assert!((sq.sqrt() - 0.1 * 1e-3).abs() < 1e-8, "{}", sq.sqrt());
    }

    /// Without read-back the clipping happens on the device, with the same result.
    #[test]
    fn clipping_on_the_device_equals_clipping_on_the_host() {
        let d = Device::flex().autodiff();
        let model = toy(&d).fork(&d);
        let config = AdamWConfig {
            max_grad_norm: Some(1e-3),
            ..Default::default()
        };
        let mut host = AdamW::new(config);
        let mut device = AdamW::new(config);
        device.read_back = false;
        let (a, _) = host.step(model.clone(), grads(&model, &d), 0.01);
        let (b, stats) = device.step(model.clone(), grads(&model, &d), 0.01);
        assert!(stats.grad_norm.is_nan());
        for (m1, m2) in host.moments.values().zip(device.moments.values()) {
            for (x, y) in values(m1.0.clone()).iter().zip(values(m2.0.clone())) {
                assert!((x - y).abs() <= 1e-6 * x.abs().max(1e-9), "{x} vs {y}");
            }
        }
        let (wa, wb) = (values(a.dense.weight.val()), values(b.dense.weight.val()));
        for (x, y) in wa.iter().zip(&wb) {
            assert!((x - y).abs() < 1e-6, "{x} vs {y}");
        }
    }

    #[test]
    fn state_round_trips_and_resumed_steps_are_identical() {
        let d = Device::flex().autodiff();
        let model = toy(&d).fork(&d);
        let mut opt = AdamW::new(AdamWConfig::default());
        let g = grads(&model, &d);
        let (model, _) = opt.step(model, g, 0.01);
        let bytes = opt.to_bytes().unwrap();
        let mut restored = AdamW::from_bytes(&bytes, "opt", &d).unwrap();
        assert_eq!(restored.step, 1);
        assert_eq!(restored.state_paths(), opt.state_paths());
        let twin = model.clone();
        let g1 = grads(&model, &d);
        let (a, _) = opt.step(model, g1, 0.01);
        let g2 = grads(&twin, &d);
        let (b, _) = restored.step(twin, g2, 0.01);
        assert_eq!(
            values(a.dense.weight.val().inner()),
            values(b.dense.weight.val().inner())
        );
    }

    #[test]
    fn frozen_parameters_get_no_update_and_no_state() {
        let d = Device::flex().autodiff();
        let mut model = toy(&d).fork(&d);
        model.dense = model.dense.no_grad();
        let before = values(model.dense.weight.val().inner());
        let g = grads(&model, &d);
        let mut opt = AdamW::new(AdamWConfig::default());
        let (model, stats) = opt.step(model, g, 0.1);
        assert_eq!(stats.updated, 2);
        assert_eq!(values(model.dense.weight.val().inner()), before);
        assert!(opt.state_paths().iter().all(|p| p.starts_with("LayerNorm")));
    }
}
