//! Knowledge distillation: a student learns from a teacher's softened outputs beside the
//! gold labels (Hinton, Vinyals & Dean 2015), and where asked from the teacher's
//! intermediate states (TinyBERT's hidden-state MSE, MiniLM's attention KL).
//!
//! ```text
//! ℓ_t = (1 − α) CE(z_S, y) + α T² KL(softmax(z_T / T) ‖ softmax(z_S / T))        each task t
//! L   = joint(ℓ_t) + Σ_m w_m MSE(h_S[s_m], h_T[t_m]) + Σ_m w_m KL(A_T[t_m] ‖ A_S[s_m])
//! ```
//!
//! `joint` is the model's multi-task combination ([`crate::train::loss::joint_loss`]). The
//! soft term of a token task covers exactly the word pieces the hard loss covers (each
//! word's first piece; never padding or continuation pieces). T² keeps the soft term's
//! gradient on the scale of the hard one as T grows. Hidden states are numbered as in
//! Hugging Face's `output_hidden_states` (0: the embeddings, `i`: block `i`'s output),
//! attention maps by their block (1 to the number of blocks); both are averaged over the
//! real (unpadded) tokens.

use burn::tensor::Tensor;
use burn::tensor::activation::{log_softmax, softmax};
use serde::{Deserialize, Serialize};

use crate::data::features::TrainBatch;
use crate::error::{Error, Result};
use crate::model::multitask::{MultiTaskModel, StepLoss};
use crate::train::loss::cross_entropy;

/// One intermediate match: the teacher's state `teacher` against the student's `student`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerMatch {
    pub teacher: usize,
    pub student: usize,
    #[serde(default = "one")]
    pub weight: f32,
}

fn one() -> f32 {
    1.0
}

/// How the student learns from its teacher(s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistillConfig {
    /// Softmax temperature T of the soft targets (> 0).
    pub temperature: f32,
    /// Weight α of the soft-target loss; 1 − α goes to the gold labels (0 ≤ α ≤ 1).
    pub alpha: f32,
    /// Hidden-state matches (MSE).
    pub hidden: Vec<LayerMatch>,
    /// Attention-distribution matches (KL).
    pub attention: Vec<LayerMatch>,
}

impl DistillConfig {
    /// Checks the values that need no model: T > 0, 0 ≤ α ≤ 1, every match weight ≥ 0;
    /// errors name the field and the value.
    pub fn check_values(&self) -> Result<()> {
        let t = self.temperature;
        if !(t.is_finite() && t > 0.0) {
            return Err(Error::Input(format!("temperature must be > 0, got {t}")));
        }
        let a = self.alpha;
        if !(0.0..=1.0).contains(&a) {
            return Err(Error::Input(format!("alpha must be from 0 to 1, got {a}")));
        }
        for (field, matches) in [("hidden", &self.hidden), ("attention", &self.attention)] {
            for (i, m) in matches.iter().enumerate() {
                if !(m.weight.is_finite() && m.weight >= 0.0) {
                    return Err(Error::Input(format!(
                        "{field}[{i}].weight must be ≥ 0, got {}",
                        m.weight
                    )));
                }
            }
        }
        Ok(())
    }

    /// [`check_values`](Self::check_values), and the layer map against a teacher and a
    /// student with these numbers of blocks, hidden sizes and attention heads; errors name
    /// the field and the value.
    pub fn check(&self, teacher: ModelShape, student: ModelShape) -> Result<()> {
        self.check_values()?;
        for (field, matches, first) in [
            ("hidden", &self.hidden, 0),
            ("attention", &self.attention, 1),
        ] {
            for (i, m) in matches.iter().enumerate() {
                for (side, layer, layers) in [
                    ("teacher", m.teacher, teacher.layers),
                    ("student", m.student, student.layers),
                ] {
                    if layer < first || layer > layers {
                        return Err(Error::Input(format!(
                            "{field}[{i}].{side} = {layer}, but the {side} has {} numbered {first} \
                             to {layers}",
                            if field == "hidden" {
                                "hidden states"
                            } else {
                                "attention maps"
                            },
                        )));
                    }
                }
            }
        }
        if !self.hidden.is_empty() && teacher.hidden != student.hidden {
            return Err(Error::Input(format!(
                "hidden: the teacher's states have width {} and the student's {}; matching \
                 states of different widths (a learned projection) is not supported",
                teacher.hidden, student.hidden
            )));
        }
        if !self.attention.is_empty() && teacher.heads != student.heads {
            return Err(Error::Input(format!(
                "attention: the teacher has {} attention heads and the student {}; attention \
                 maps can be matched only head for head",
                teacher.heads, student.heads
            )));
        }
        Ok(())
    }

    /// The teacher's intermediate states are needed.
    pub fn needs_states(&self) -> bool {
        !self.hidden.is_empty() || !self.attention.is_empty()
    }
}

/// What [`DistillConfig::check`] needs to know of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelShape {
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
}

impl ModelShape {
    pub fn of(model: &MultiTaskModel) -> Self {
        let bert = &model.bert;
        ModelShape {
            layers: bert.num_layers(),
            hidden: bert.hidden_size(),
            heads: bert
                .encoder
                .layer
                .first()
                .map_or(0, |l| l.attention.self_.num_heads),
        }
    }
}

/// What the teacher(s) said about one batch, computed without autodiff.
pub struct TeacherOutputs {
    /// Per task of the step (in the order of its `tasks`): the teacher's logits as rows
    /// (as [`MultiTaskModel::task_logits`]), or `None` for a task without a teacher (gold
    /// labels only).
    pub logits: Vec<Option<Tensor<2>>>,
    /// The teacher's hidden states (index 0: embeddings), when hidden matches are asked.
    pub hidden: Vec<Tensor<3>>,
    /// The teacher's attention maps (index 0: block 1), when attention matches are asked.
    pub attentions: Vec<Tensor<4>>,
}

/// `T² · KL(softmax(teacher / T) ‖ softmax(student / T))`, averaged over the rows where
/// `mask` is 1 (every row without a mask). `[n, classes]` logits, `[n]` mask → `[1]`.
pub fn soft_target_loss(
    student: Tensor<2>,
    teacher: Tensor<2>,
    temperature: f32,
    mask: Option<Tensor<1>>,
) -> Tensor<1> {
    let [n, _] = student.dims();
    let t = temperature as f64;
    let teacher = teacher / t;
    let p = softmax(teacher.clone(), 1);
    let per_row = (p * (log_softmax(teacher, 1) - log_softmax(student / t, 1)))
        .sum_dim(1)
        .reshape([n]);
    let mean = match mask {
        Some(m) => (per_row * m.clone()).sum() / m.sum().clamp_min(1.0),
        None => per_row.sum() / n.max(1) as f64,
    };
    mean * (t * t)
}

/// Mean squared difference of two `[batch, seq, hidden]` state tensors over the hidden
/// units and the real tokens (`mask`: `[batch, seq]`, 1 for real tokens) → `[1]`.
pub fn hidden_mse(student: Tensor<3>, teacher: Tensor<3>, mask: Tensor<2>) -> Tensor<1> {
    let [b, s, h] = student.dims();
    let per_token = (student - teacher)
        .powi_scalar(2)
        .sum_dim(2)
        .reshape([b, s])
        / h as f64;
    (per_token * mask.clone()).sum() / mask.sum().clamp_min(1.0)
}

/// KL(teacher ‖ student) of two `[batch, heads, seq, seq]` attention maps (each query's
/// distribution over the keys), averaged over the heads and the real queries (`mask`:
/// `[batch, seq]`) → `[1]`. Probabilities are floored at 1e-12 before the logarithm
/// (padded keys carry none).
pub fn attention_kl(student: Tensor<4>, teacher: Tensor<4>, mask: Tensor<2>) -> Tensor<1> {
    let [b, heads, s, _] = student.dims();
    let log = |p: Tensor<4>| p.clamp_min(1e-12).log();
    let per_query = (teacher.clone() * (log(teacher) - log(student)))
        .sum_dim(3)
        .reshape([b, heads, s]);
    let mask = mask.reshape([b, 1, s]).expand([b, heads, s]);
    (per_query * mask.clone()).sum() / mask.sum().clamp_min(1.0)
}

/// The distillation loss of one batch for `tasks`: per task the mix of the gold labels'
/// cross-entropy and the teacher's soft targets, combined as the model combines tasks,
/// plus the intermediate matches. `per_task` reports each task's mixed loss.
pub fn distill_loss(
    student: &MultiTaskModel,
    batch: &TrainBatch,
    tasks: &[usize],
    teacher: &TeacherOutputs,
    config: &DistillConfig,
) -> StepLoss {
    let traced = student
        .bert
        .forward_traced(batch.input.clone(), !config.attention.is_empty());
    let enc = &traced.output;
    let mut parts = Vec::new();
    let per_task = tasks
        .iter()
        .zip(&teacher.logits)
        .map(|(&t, soft)| {
            let logits = student.task_logits(t, enc);
            let targets = student.task_targets(t, batch);
            let mask = (student.tasks()[t].kind == crate::model::task::TaskKind::Token)
                .then(|| targets.clone().greater_equal_elem(0).float());
            let hard = cross_entropy(logits.clone(), targets);
            let name = &student.tasks()[t].name;
            parts.push((format!("{name}.gold"), hard.clone()));
            let loss = match soft {
                Some(z) => {
                    let soft = soft_target_loss(logits, z.clone(), config.temperature, mask);
                    parts.push((format!("{name}.soft"), soft.clone()));
                    hard * (1.0 - config.alpha as f64) + soft * config.alpha as f64
                }
                None => hard,
            };
            (t, loss)
        })
        .collect();
    let mut step = student.joint(per_task);
    for m in &config.hidden {
        let term = hidden_mse(
            traced.hidden[m.student].clone(),
            teacher.hidden[m.teacher].clone(),
            enc.mask.clone(),
        );
        parts.push((format!("hidden.{}-{}", m.teacher, m.student), term.clone()));
        step.joint = step.joint + term * m.weight as f64;
    }
    for m in &config.attention {
        let term = attention_kl(
            traced.attentions[m.student - 1].clone(),
            teacher.attentions[m.teacher - 1].clone(),
            enc.mask.clone(),
        );
        parts.push((
            format!("attention.{}-{}", m.teacher, m.student),
            term.clone(),
        ));
        step.joint = step.joint + term * m.weight as f64;
    }
    step.parts = parts;
    step
}

/// The teacher's outputs for a batch on `device` (no autodiff): logits of `tasks[k]` by
/// its task `teacher_tasks[k]` of `teacher` (`None`: that task has another teacher or
/// none), and its intermediate states when `config` matches them.
pub fn teacher_outputs(
    teacher: &MultiTaskModel,
    input: crate::model::bert::BertInput,
    teacher_tasks: &[Option<usize>],
    config: &DistillConfig,
) -> TeacherOutputs {
    let traced = if config.needs_states() {
        teacher
            .bert
            .forward_traced(input, !config.attention.is_empty())
    } else {
        crate::model::bert::TracedOutput {
            output: teacher.bert.forward(input),
            hidden: Vec::new(),
            attentions: Vec::new(),
        }
    };
    TeacherOutputs {
        logits: teacher_tasks
            .iter()
            .map(|t| t.map(|t| teacher.task_logits(t, &traced.output)))
            .collect(),
        hidden: traced.hidden,
        attentions: traced.attentions,
    }
}

/// Checks that the teacher's logits fit the student's rows of each of `tasks` on `batch`
/// (as [`MultiTaskModel::task_logits`]: one per example for a sentence task, one per
/// word piece for a token task; same classes) before [`distill_loss`] combines them.
pub fn check_outputs(
    student: &MultiTaskModel,
    batch: &TrainBatch,
    tasks: &[usize],
    teacher: &TeacherOutputs,
) -> Result<()> {
    for (&t, z) in tasks.iter().zip(&teacher.logits) {
        if let Some(z) = z {
            let rows = match student.tasks()[t].kind {
                crate::model::task::TaskKind::Sentence => batch.batch_size,
                crate::model::task::TaskKind::Token => batch.batch_size * batch.seq_len,
            };
            let want = [rows, student.tasks()[t].num_labels()];
            if z.dims() != want {
                return Err(Error::Input(format!(
                    "task {}: the teacher gave logits {:?}, the student has {want:?}",
                    student.tasks()[t].name,
                    z.dims()
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn t2(v: &[f32], shape: [usize; 2], d: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(v.to_vec(), shape), d)
    }

    fn scalar(t: Tensor<1>) -> f32 {
        t.into_scalar::<f32>()
    }

    #[test]
    fn kl_is_zero_when_student_equals_teacher_and_positive_otherwise() {
        let d = Device::flex();
        let z = t2(&[1.0, -2.0, 0.5, 3.0, 0.0, -1.0], [2, 3], &d);
        for temperature in [0.5, 1.0, 4.0] {
            let same = scalar(soft_target_loss(z.clone(), z.clone(), temperature, None));
            assert!(same.abs() < 1e-6, "T {temperature}: {same}");
        }
        let other = t2(&[0.0, 0.0, 0.0, 3.0, 0.0, -1.0], [2, 3], &d);
        assert!(scalar(soft_target_loss(other, z, 1.0, None)) > 0.01);
    }

    /// At T = 1 the loss is the KL by hand; at T it is T² times the KL of the logits
    /// divided by T.
    #[test]
    fn soft_targets_are_scaled_by_t_squared() {
        let d = Device::flex();
        let (s, t) = ([0.2f32, 1.0, -0.5], [1.5f32, -0.5, 0.0]);
        let kl = |s: &[f32], t: &[f32]| {
            let sm = |z: &[f32]| {
                let e: Vec<f64> = z.iter().map(|&x| (x as f64).exp()).collect();
                let sum: f64 = e.iter().sum();
                e.into_iter().map(|x| x / sum).collect::<Vec<f64>>()
            };
            let (q, p) = (sm(s), sm(t));
            p.iter().zip(&q).map(|(p, q)| p * (p / q).ln()).sum::<f64>()
        };
        let got = scalar(soft_target_loss(
            t2(&s, [1, 3], &d),
            t2(&t, [1, 3], &d),
            1.0,
            None,
        ));
        assert!((got as f64 - kl(&s, &t)).abs() < 1e-5, "{got}");
        let temp = 3.0f32;
        let (s3, t3): (Vec<f32>, Vec<f32>) = (
            s.iter().map(|x| x / temp).collect(),
            t.iter().map(|x| x / temp).collect(),
        );
        let got = scalar(soft_target_loss(
            t2(&s, [1, 3], &d),
            t2(&t, [1, 3], &d),
            temp,
            None,
        ));
        let want = 9.0 * kl(&s3, &t3);
        assert!((got as f64 - want).abs() < 1e-5, "{got} vs {want}");
    }

    /// Masked rows (padding, continuation pieces) neither count nor dilute the mean.
    #[test]
    fn masked_rows_are_left_out() {
        let d = Device::flex();
        let teacher = t2(&[2.0, 0.0, 5.0, -5.0, 2.0, 0.0], [3, 2], &d);
        let student = t2(&[0.0, 2.0, -5.0, 5.0, 0.0, 0.0], [3, 2], &d);
        let mask = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 0.0, 0.0], [3]), &d);
        let masked = scalar(soft_target_loss(
            student.clone(),
            teacher.clone(),
            1.0,
            Some(mask),
        ));
        let first = scalar(soft_target_loss(
            student.narrow(0, 0, 1),
            teacher.narrow(0, 0, 1),
            1.0,
            None,
        ));
        assert!((masked - first).abs() < 1e-6, "{masked} vs {first}");
    }

    /// The gradient of the soft-target loss through a tiny linear model (logits = x W)
    /// matches central finite differences.
    #[test]
    fn gradient_matches_finite_differences() {
        let d = Device::flex().autodiff();
        let x = [0.5f32, -1.0, 2.0, 0.3, 0.8, -0.4];
        let w0 = [0.1f32, -0.2, 0.3, 0.05, 0.4, -0.1, 0.2, 0.0, -0.3];
        let teacher = [1.0f32, 0.0, -1.0, -0.5, 0.5, 2.0];
        let loss = |w: &[f32], d: &Device| -> (Tensor<1>, Tensor<2>) {
            let w = t2(w, [3, 3], d).require_grad();
            let logits = t2(&x, [2, 3], d).matmul(w.clone());
            let mask = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 1.0], [2]), d);
            (
                soft_target_loss(logits, t2(&teacher, [2, 3], d), 2.0, Some(mask)),
                w,
            )
        };
        let (l, w) = loss(&w0, &d);
        let grads = l.backward();
        let g: Vec<f32> = w.grad(&grads).unwrap().try_into_vec_as::<f32>().unwrap();
        let eps = 1e-2f32;
        for i in 0..w0.len() {
            let mut up = w0;
            up[i] += eps;
            let mut down = w0;
            down[i] -= eps;
            let numeric = (scalar(loss(&up, &d).0) - scalar(loss(&down, &d).0)) / (2.0 * eps);
            assert!(
                (numeric - g[i]).abs() < 2e-3 + 0.02 * g[i].abs(),
                "w[{i}]: analytic {} numeric {numeric}",
                g[i]
            );
        }
    }

    #[test]
    fn hidden_mse_and_attention_kl_skip_padding() {
        let d = Device::flex();
        let mask = t2(&[1.0, 0.0], [1, 2], &d);
        let a = Tensor::<3>::from_data(TensorData::new(vec![1.0f32, 1.0, 9.0, 9.0], [1, 2, 2]), &d);
        let b = Tensor::<3>::from_data(TensorData::new(vec![0.0f32, 2.0, 0.0, 0.0], [1, 2, 2]), &d);
        // Token 0: ((1)² + (1)²) / 2 = 1; token 1 is padding.
        assert!((scalar(hidden_mse(a.clone(), b, mask.clone())) - 1.0).abs() < 1e-6);
        assert!(scalar(hidden_mse(a.clone(), a, mask.clone())).abs() < 1e-9);
        let p = |v: [f32; 4]| Tensor::<4>::from_data(TensorData::new(v.to_vec(), [1, 1, 2, 2]), &d);
        let teacher = p([1.0, 0.0, 0.5, 0.5]);
        assert!(scalar(attention_kl(teacher.clone(), teacher.clone(), mask.clone())).abs() < 1e-6);
        // Query 0: KL([1, 0] ‖ [0.5, 0.5]) = ln 2; query 1 is padding.
        let got = scalar(attention_kl(p([0.5, 0.5, 0.9, 0.1]), teacher, mask));
        assert!((got - 2f32.ln()).abs() < 1e-5, "{got}");
    }

    /// A student that is its teacher learns nothing from it: with α = 1 and every
    /// intermediate matched to itself, the loss of a tiny two-task model is zero (the soft
    /// term of the token task over its labelled pieces only).
    #[test]
    fn a_student_equal_to_its_teacher_has_zero_loss() {
        use crate::data::features::{Encoded, collate};
        let d = Device::flex();
        d.seed(5);
        let (tok, model) = crate::model::multitask::tests::tiny_two_task(
            crate::train::loss::LossWeighting::Static,
            &d,
        );
        let items = [
            Encoded::words(
                &tok,
                &["the", "unbelievable", "movie"],
                Some(vec![0, 1, 2]),
                Some(1),
            )
            .unwrap(),
            Encoded::words(&tok, &["new"], Some(vec![1]), Some(0)).unwrap(),
        ];
        let refs: Vec<&Encoded> = items.iter().collect();
        let batch = collate(&refs, tok.pad_id(), &d).unwrap();
        let layers = model.bert.num_layers();
        let all = |n| {
            (1..=n)
                .map(|i| LayerMatch {
                    teacher: i,
                    student: i,
                    weight: 1.0,
                })
                .collect::<Vec<_>>()
        };
        let config = DistillConfig {
            temperature: 2.0,
            alpha: 1.0,
            hidden: all(layers),
            attention: all(layers),
        };
        let shape = ModelShape::of(&model);
        config.check(shape, shape).unwrap();
        let teacher = teacher_outputs(&model, batch.input.clone(), &[Some(0), Some(1)], &config);
        assert_eq!(teacher.hidden.len(), layers + 1);
        assert_eq!(teacher.attentions.len(), layers);
        check_outputs(&model, &batch, &[0, 1], &teacher).unwrap();
        // The logits of one task given for another are refused.
        let swapped = TeacherOutputs {
            logits: vec![teacher.logits[1].clone(), teacher.logits[0].clone()],
            hidden: vec![],
            attentions: vec![],
        };
        let e = check_outputs(&model, &batch, &[0, 1], &swapped).unwrap_err();
        assert!(e.to_string().contains("task sentiment"), "{e}");
        let step = distill_loss(&model, &batch, &[0, 1], &teacher, &config);
        assert!(scalar(step.joint).abs() < 1e-5);
        // With α = 0 it is the plain multi-task loss.
        let hard = DistillConfig {
            alpha: 0.0,
            ..config
        };
        let a = scalar(distill_loss(&model, &batch, &[0, 1], &teacher, &hard).joint);
        let b = scalar(model.step_loss(&batch, &[0, 1]).joint);
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        assert!(b > 0.1);
    }

    #[test]
    fn bad_settings_are_named() {
        let shape = ModelShape {
            layers: 6,
            hidden: 384,
            heads: 12,
        };
        let small = ModelShape { layers: 3, ..shape };
        let ok = DistillConfig {
            temperature: 2.0,
            alpha: 0.5,
            hidden: vec![LayerMatch {
                teacher: 6,
                student: 3,
                weight: 1.0,
            }],
            attention: vec![LayerMatch {
                teacher: 6,
                student: 3,
                weight: 1.0,
            }],
        };
        ok.check(shape, small).unwrap();
        let err = |c: DistillConfig, student: ModelShape| {
            c.check(shape, student).unwrap_err().to_string()
        };
        assert!(
            err(
                DistillConfig {
                    temperature: 0.0,
                    ..ok.clone()
                },
                small
            )
            .contains("temperature must be > 0, got 0")
        );
        assert!(
            err(
                DistillConfig {
                    alpha: 1.5,
                    ..ok.clone()
                },
                small
            )
            .contains("alpha")
        );
        let mut c = ok.clone();
        c.hidden[0].student = 4;
        assert!(err(c, small).contains("hidden[0].student = 4"), "");
        let mut c = ok.clone();
        c.attention[0].teacher = 0;
        assert!(err(c, small).contains("attention[0].teacher = 0"));
        let wide = ModelShape {
            hidden: 768,
            ..small
        };
        assert!(err(ok.clone(), wide).contains("width"));
    }
}
