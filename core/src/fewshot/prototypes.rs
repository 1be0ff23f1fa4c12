//! Class prototypes (Snell et al. 2017) and the linear head made from them, the module the
//! rest of few-shot learning builds on.
//!
//! The prototype head (ProtoMAML, Triantafillou et al. 2020) with logit scale `s` has
//! `W_k = 2s·c_k`, `b_k = −s‖c_k‖²`, so that `logit_k = s(‖x‖² − ‖x − c_k‖²)`: before any
//! step its argmax is the nearest prototype, whatever the order of the labels, and
//! gradient steps start from there. `s` is a cosine-softmax temperature on L2-normalised
//! features (adaptation uses 10; meta-learning's episode heads 1).

use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Int, Tensor, TensorData};

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

/// The prototype head with logit scale `s`: `W_k = 2s·c_k`, `b_k = −s‖c_k‖²`, so that
/// `logit_k = s(‖x‖² − ‖x − c_k‖²)` and its argmax is the nearest prototype.
pub fn prototype_head(features: Tensor<2>, labels: &[usize], n_way: usize, s: f64) -> Linear {
    let device = features.device();
    let c = prototypes(features, labels, n_way);
    let [_, hidden] = c.dims();
    let weight = c.clone().transpose() * (2.0 * s);
    let bias = c.powf_scalar(2.0).sum_dim(1).reshape([n_way]) * (-s);
    let mut head = LinearConfig::new(hidden, n_way).init(&device);
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.try_into_vec_as::<f32>().unwrap()
    }

    #[test]
    fn prototype_head_predicts_the_nearest_prototype_before_any_step() {
        let d = Device::flex();
        let support = Tensor::<2>::random([15, 8], Distribution::Normal(0.0, 1.0), &d);
        let labels: Vec<usize> = (0..15).map(|i| i % 5).collect();
        let head = prototype_head(support.clone(), &labels, 5, 1.0);
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
}
