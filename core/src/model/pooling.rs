//! Sentence vectors from token states: masked mean, [CLS], the pooler, and L2
//! normalisation.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::model::bert::BertPooler;

/// How a sentence vector is made from the encoder's token states (embeddings, and the
/// sentence tasks of a multi-task model: `pooling` in a recipe and in `tasks.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The mean over real (non-padding) tokens, as sentence-transformers do.
    #[default]
    Mean,
    /// The state of the first token ([CLS]) as it is.
    Cls,
    /// Hugging Face's pooler: dense + tanh on the [CLS] state (`BertModel.pooler_output`).
    Pooler,
}

/// The first token's state. `[batch, seq, hidden]` → `[batch, hidden]`.
pub fn cls_pool(hidden: Tensor<3>) -> Tensor<2> {
    let [batch, _, h] = hidden.dims();
    hidden.narrow(1, 0, 1).reshape([batch, h])
}

/// Mean over the positions where `mask` is 1.
/// `hidden`: `[batch, seq, hidden]`, `mask`: `[batch, seq]` → `[batch, hidden]`.
pub fn mean_pool(hidden: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
    let [batch, seq, h] = hidden.dims();
    let mask3 = mask.clone().reshape([batch, seq, 1]);
    let summed = (hidden * mask3).sum_dim(1).reshape([batch, h]);
    let counts = mask.sum_dim(1).clamp_min(1e-9);
    summed / counts
}

/// Applies `pooling` (`pooler` is the encoder's, for [`Pooling::Pooler`]). Shapes as in
/// [`cls_pool`] and [`mean_pool`].
pub fn pool(
    pooling: Pooling,
    hidden: Tensor<3>,
    mask: Tensor<2>,
    pooler: &BertPooler,
) -> Tensor<2> {
    match pooling {
        Pooling::Mean => mean_pool(hidden, mask),
        Pooling::Cls => cls_pool(hidden),
        Pooling::Pooler => pooler.forward(hidden),
    }
}

/// Scales each row to unit Euclidean length (rows of zeros stay zero).
/// `[batch, hidden]` → `[batch, hidden]`.
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x
        .clone()
        .powf_scalar(2.0)
        .sum_dim(1)
        .sqrt()
        .clamp_min(1e-12);
    x / norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn mean_pool_ignores_padding() {
        let device = Device::flex();
        let hidden = Tensor::<3>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0, 100.0, 100.0], [1, 3, 2]),
            &device,
        );
        let mask = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 1.0, 0.0], [1, 3]), &device);
        let pooled = mean_pool(hidden.clone(), mask)
            .try_into_vec_as::<f32>()
            .unwrap();
        assert_eq!(pooled, vec![2.0, 3.0]);
        let cls = cls_pool(hidden).try_into_vec_as::<f32>().unwrap();
        assert_eq!(cls, vec![1.0, 2.0]);
    }

    #[test]
    fn l2_normalize_gives_unit_rows() {
        let device = Device::flex();
        let x = Tensor::<2>::from_data(
            TensorData::new(vec![3.0f32, 4.0, 0.0, 0.0], [2, 2]),
            &device,
        );
        let y = l2_normalize(x).try_into_vec_as::<f32>().unwrap();
        assert_eq!(y, vec![0.6, 0.8, 0.0, 0.0]);
    }
}
