//! Losses: cross-entropy that ignores padded positions, the supervised contrastive loss of
//! few-shot work, and the joint multi-task loss
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
use burn::tensor::{Int, Tensor, TensorData};

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

/// The supervised contrastive loss (Khosla et al. 2020, eq. 2, "L_out"): for each anchor
/// `i` with at least one positive (another row of its label),
///
/// ```text
/// ℓ_i = −1/|P(i)| Σ_{p∈P(i)} log( exp(z_i·z_p/τ) / Σ_{a≠i} exp(z_i·z_a/τ) )
/// ```
///
/// averaged over those anchors. `features`: `[n, d]`, L2-normalised rows (so `z_i·z_p` is a
/// cosine); `labels[i]` the class of row `i`; `temperature` τ > 0 → scalar `[1]`. Two
/// dropout views of one sentence under one label give every anchor a positive (with
/// a label per sentence this is SimCSE's unsupervised loss). With no anchor that has a
/// positive the loss is 0.
pub fn supervised_contrastive(
    features: Tensor<2>,
    labels: &[usize],
    temperature: f64,
) -> Tensor<1> {
    let [n, _] = features.dims();
    assert_eq!(labels.len(), n, "supervised_contrastive: one label per row");
    let device = features.device();
    // Positives (same label, not itself) and the self entries to leave out of the softmax.
    let mut positive = vec![0f32; n * n];
    let mut itself = vec![0f32; n * n];
    let mut anchors = vec![0f32; n];
    for i in 0..n {
        itself[i * n + i] = -1e4;
        let p: Vec<usize> = (0..n)
            .filter(|&j| j != i && labels[j] == labels[i])
            .collect();
        for &j in &p {
            positive[i * n + j] = 1.0 / p.len() as f32;
        }
        anchors[i] = f32::from(!p.is_empty());
    }
    let n_anchors = anchors.iter().sum::<f32>().max(1.0);
    let matrix = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [n, n]), &device);
    let sim = features.clone().matmul(features.transpose()) / temperature + matrix(itself);
    let log_prob = log_softmax(sim, 1);
    -(log_prob * matrix(positive)).sum() / n_anchors
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
    fn supervised_contrastive_matches_hand_computation() {
        let d = Device::flex();
        // Rows 0 and 1 share a label, row 2 is alone (an anchor without positives).
        let s = std::f32::consts::FRAC_1_SQRT_2;
        let f = Tensor::<2>::from_data(TensorData::new(vec![1.0, 0.0, s, s, 0.0, 1.0], [3, 2]), &d);
        let t = 0.5f32;
        // Anchor 0: sims to 1 and 2 are s and 0; anchor 1: sims to 0 and 2 are s and s.
        let l0 = -((s / t).exp() / ((s / t).exp() + 1.0)).ln();
        let l1 = -(0.5f32).ln();
        let want = (l0 + l1) / 2.0;
        let got = scalar(supervised_contrastive(f.clone(), &[4, 4, 7], t as f64));
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        // One label per row: no anchor has a positive.
        assert_eq!(scalar(supervised_contrastive(f, &[0, 1, 2], 0.1)), 0.0);
    }

    #[test]
    fn supervised_contrastive_pulls_a_class_together() {
        let d = Device::flex().autodiff();
        let x = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 0.2, 0.2, 1.0, -1.0, 0.1, 0.1, -1.0], [4, 2]),
            &d,
        )
        .require_grad();
        let labels = [0, 0, 1, 1];
        let norm = |x: Tensor<2>| crate::model::pooling::l2_normalize(x);
        let loss = supervised_contrastive(norm(x.clone()), &labels, 0.1);
        let before = loss.clone().into_scalar::<f32>();
        let grad = x.grad(&loss.backward()).unwrap();
        let moved = x.inner() - grad * 0.05;
        let after = scalar(supervised_contrastive(norm(moved), &labels, 0.1));
        assert!(after < before, "{before} → {after}");
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
