//! Building blocks of first-order meta-learning.
//!
//! - [`prototype_head`]: an episode head from the support set's class prototypes
//!   (ProtoMAML, Triantafillou et al. 2020): `W_k = 2·c_k`, `b_k = −‖c_k‖²`, so that
//!   `x·W_k + b_k = ‖x‖² − ‖x − c_k‖²` and the head's argmax is the nearest prototype
//!   before any step, whatever the order of the labels.
//! - [`reptile_update`]: Reptile's outer step (Nichol et al. 2018),
//!   `θ ← θ + ε (mean_i φ_i − θ)` over the adapted weights `φ_i` of a meta-batch.
//! - First-order MAML applies the query-set gradient taken at the adapted weights `φ` to
//!   `θ`: [`crate::optim::AdamW::step_params`] with gradients from the adapted model; the
//!   adapted model keeps θ's parameter ids, so they line up.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};

/// Class prototypes: the mean embedding of each class. `embeddings`: `[n, hidden]`,
/// `labels[i] < n_way` → `[n_way, hidden]`.
pub fn prototypes(embeddings: Tensor<2>, labels: &[usize], n_way: usize) -> Tensor<2> {
    let [n, _] = embeddings.dims();
    let device = embeddings.device();
    let mut onehot = vec![0f32; n_way * n];
    let mut counts = vec![0f32; n_way];
    for (i, &l) in labels.iter().enumerate() {
        onehot[l * n + i] = 1.0;
        counts[l] += 1.0;
    }
    let onehot = Tensor::<2>::from_data(TensorData::new(onehot, [n_way, n]), &device);
    let counts = Tensor::<1>::from_data(TensorData::new(counts, [n_way]), &device)
        .clamp_min(1.0)
        .reshape([n_way, 1]);
    onehot.matmul(embeddings) / counts
}

/// A linear head `[hidden] → [n_way]` initialised from the prototypes of the support set.
pub fn prototype_head(
    embeddings: Tensor<2>,
    labels: &[usize],
    n_way: usize,
    device: &Device,
) -> Linear {
    let c = prototypes(embeddings, labels, n_way);
    let [_, hidden] = c.dims();
    let weight = c.clone().transpose() * 2.0; // [hidden, n_way]
    let bias = c.clone().powf_scalar(2.0).sum_dim(1).reshape([n_way]).neg();
    let mut head = LinearConfig::new(hidden, n_way).init(device);
    head.weight = Param::from_tensor(weight);
    head.bias = Some(Param::from_tensor(bias));
    head
}

/// Nearest prototype by Euclidean distance: `[n, hidden]` → class per row.
pub fn nearest_prototype(embeddings: Tensor<2>, prototypes: Tensor<2>) -> Tensor<1, Int> {
    let [n, h] = embeddings.dims();
    let [k, _] = prototypes.dims();
    let diff = embeddings.reshape([n, 1, h]) - prototypes.reshape([1, k, h]);
    let dist = diff.powf_scalar(2.0).sum_dim(2).reshape([n, k]);
    dist.argmin(1).reshape([n])
}

/// Collects every float parameter by path, flattened.
#[derive(Default)]
struct Collect {
    path: Vec<String>,
    values: BTreeMap<String, Tensor<1>>,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let v = param.val().inner();
        let n = v.shape().num_elements();
        self.values.insert(self.path.join("."), v.reshape([n]));
    }
}

struct Interpolate {
    path: Vec<String>,
    target: BTreeMap<String, Tensor<1>>,
    epsilon: f64,
}

impl ModuleMapper for Interpolate {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(target) = self.target.remove(&self.path.join(".")) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let require_grad = tensor.is_require_grad();
        let theta = tensor.inner();
        let shape = theta.shape();
        let n = shape.num_elements();
        let flat = theta.reshape([n]);
        let new = (flat.clone() + (target - flat) * self.epsilon).reshape(shape);
        let mut new = Tensor::from_inner(new);
        if require_grad {
            new = new.require_grad();
        }
        Param::from_mapped_value(id, new, mapper)
    }
}

/// Reptile's outer update: `θ + ε (mean_i φ_i − θ)` for every float parameter, matched by
/// path. `adapted` holds the task-adapted copies `φ_i` of `theta` (non-empty).
pub fn reptile_update<M: Module>(theta: M, adapted: &[M], epsilon: f64) -> M {
    assert!(
        !adapted.is_empty(),
        "reptile_update needs at least one adapted model"
    );
    let mut mean: BTreeMap<String, Tensor<1>> = BTreeMap::new();
    for phi in adapted {
        let mut c = Collect::default();
        phi.visit(&mut c);
        for (path, v) in c.values {
            let entry = mean.remove(&path);
            mean.insert(path, entry.map_or(v.clone(), |m| m + v));
        }
    }
    let n = adapted.len() as f64;
    let target = mean.into_iter().map(|(p, v)| (p, v / n)).collect();
    theta.map(&mut Interpolate {
        path: Vec::new(),
        target,
        epsilon,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::{AdamW, AdamWConfig};
    use burn::optim::GradientsParams;
    use burn::tensor::Distribution;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.try_into_vec_as::<f32>().unwrap()
    }

    #[test]
    fn prototype_head_predicts_the_nearest_prototype_before_any_step() {
        let d = Device::flex();
        let support = Tensor::<2>::random([15, 8], Distribution::Normal(0.0, 1.0), &d);
        let labels: Vec<usize> = (0..15).map(|i| i % 5).collect();
        let head = prototype_head(support.clone(), &labels, 5, &d);
        let protos = prototypes(support, &labels, 5);
        let queries = Tensor::<2>::random([40, 8], Distribution::Normal(0.0, 1.0), &d);
        let by_head: Vec<i64> = values(
            head.forward(queries.clone())
                .argmax(1)
                .reshape([40])
                .float(),
        )
        .iter()
        .map(|&x| x as i64)
        .collect();
        let by_distance: Vec<i64> = values(nearest_prototype(queries, protos).float())
            .iter()
            .map(|&x| x as i64)
            .collect();
        assert_eq!(by_head, by_distance);
        // Not a degenerate case: the queries fall into several classes.
        let distinct: std::collections::BTreeSet<i64> = by_head.iter().copied().collect();
        assert!(distinct.len() >= 3, "{by_head:?}");
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
}
