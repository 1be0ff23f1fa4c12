//! Losses: cross-entropy that ignores padded positions, and the joint multi-task loss
//!
//! ```text
//! static:       L = (1/N) Σ_t λ_t ℓ_t
//! uncertainty:  L = (1/N) Σ_t λ_t (exp(−s_t) ℓ_t + s_t / 2)      s_t = log σ_t², learned
//! ```
//!
//! over the `N` tasks present in a step. The second form is Kendall, Gal & Cipolla (2018),
//! eq. 10 for classification: each task's loss is scaled by a learned precision, and the
//! `s_t / 2` term keeps the precisions from growing without bound (at the optimum
//! `exp(−s_t) = 1 / (2 ℓ_t)`).

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

/// Mean cross-entropy over the rows whose target is ≥ 0 (negative targets, such as
/// [`crate::data::features::IGNORE`], are skipped). `logits`: `[n, classes]`, `targets`: `[n]`
/// → scalar `[1]`. With no valid row the loss is 0.
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let [n, _] = logits.dims();
    let valid = targets.clone().greater_equal_elem(0).float();
    let safe = targets.clamp_min(0).reshape([n, 1]);
    let picked = log_softmax(logits, 1).gather(1, safe).reshape([n]);
    let count = valid.clone().sum().clamp_min(1.0);
    -(picked * valid).sum() / count
}

/// How task losses are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossWeighting {
    /// Fixed weights λ_t from the configuration.
    Static,
    /// λ_t times a learned uncertainty weight per task (Kendall et al. 2018).
    Uncertainty,
}

/// The joint loss of one step. `terms` holds `(λ_t, ℓ_t, s_t)` for each task present,
/// `s_t` being the task's learned log-variance (`[1]`) under uncertainty weighting.
pub fn joint_loss(terms: Vec<(f32, Tensor<1>, Option<Tensor<1>>)>) -> Tensor<1> {
    assert!(!terms.is_empty(), "joint_loss of no task");
    let n = terms.len() as f32;
    let mut total: Option<Tensor<1>> = None;
    for (weight, loss, log_var) in terms {
        let term = match log_var {
            None => loss * weight,
            Some(s) => (loss * s.clone().neg().exp() + s / 2.0) * weight,
        };
        total = Some(match total {
            None => term,
            Some(t) => t + term,
        });
    }
    total.expect("non-empty") / n
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn scalar(t: Tensor<1>) -> f32 {
        t.into_scalar::<f32>()
    }

    #[test]
    fn cross_entropy_matches_hand_computation_and_ignores_negative_targets() {
        let d = Device::flex();
        // Row 0: logits [0, ln 3] → p(class 1) = 3/4; row 1 ignored; row 2: uniform → 1/2.
        let logits = Tensor::<2>::from_data(
            TensorData::new(vec![0.0f32, 3f32.ln(), 5.0, -5.0, 1.0, 1.0], [3, 2]),
            &d,
        );
        let targets = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, -100, 0], [3]), &d);
        let want = -((0.75f32).ln() + (0.5f32).ln()) / 2.0;
        let got = scalar(cross_entropy(logits, targets));
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }

    #[test]
    fn cross_entropy_of_only_ignored_rows_is_zero() {
        let d = Device::flex();
        let logits = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0], [1, 2]), &d);
        let targets = Tensor::<1, Int>::from_data(TensorData::new(vec![-100i64], [1]), &d);
        assert_eq!(scalar(cross_entropy(logits, targets)), 0.0);
    }

    #[test]
    fn static_joint_loss_is_the_weighted_mean() {
        let d = Device::flex();
        let t = |x: f32| Tensor::<1>::from_data(TensorData::new(vec![x], [1]), &d);
        // (1/2)(0.5·2 + 2·3) = 3.5
        let got = scalar(joint_loss(vec![(0.5, t(2.0), None), (2.0, t(3.0), None)]));
        assert!((got - 3.5).abs() < 1e-6, "{got}");
    }

    #[test]
    fn uncertainty_joint_loss_and_its_gradient() {
        let d = Device::flex().autodiff();
        let t = |x: f32| Tensor::<1>::from_data(TensorData::new(vec![x], [1]), &d);
        let s = t(1.0).require_grad();
        // (1/1)·1·(e^{-1}·2 + 1/2) = 1.23576
        let loss = joint_loss(vec![(1.0, t(2.0), Some(s.clone()))]);
        let value = loss.clone().into_scalar::<f32>();
        assert!(
            (value - (2.0 * (-1.0f32).exp() + 0.5)).abs() < 1e-6,
            "{value}"
        );
        // dL/ds = −e^{−s} ℓ + 1/2 = 0.5 − 2/e
        let grads = loss.backward();
        let g = s.grad(&grads).unwrap().into_scalar::<f32>();
        assert!((g - (0.5 - 2.0 * (-1.0f32).exp())).abs() < 1e-6, "{g}");
    }
}
