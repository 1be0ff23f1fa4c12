//! One multi-task training step: forward, joint loss, backward, AdamW update. The loop
//! around it (data, schedule, checkpoints, progress) lives with the caller.

use burn::tensor::Device;

use crate::data::features::{Encoded, collate};
use crate::error::{Divergence, Result};
use crate::model::multitask::{MultiTaskModel, StepLoss};
use crate::train::optim::{AdamW, StepStats};

/// What one step did.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// The joint loss.
    pub loss: f32,
    /// `(task index, its loss)` for the tasks in the batch.
    pub per_task: Vec<(usize, f32)>,
    /// The named parts of the loss ([`StepLoss::parts`]).
    pub parts: Vec<(String, f32)>,
    pub stats: StepStats,
}

/// Forward, backward and an AdamW update on one batch for `tasks`. The model must live on
/// an autodiff device and `items` carry the targets of each task. A non-finite loss leaves
/// the model and the optimizer untouched and is returned as an error.
pub fn train_step(
    model: MultiTaskModel,
    optimizer: &mut AdamW,
    items: &[&Encoded],
    tasks: &[usize],
    lr: f64,
    pad_id: u32,
    device: &Device,
) -> Result<(MultiTaskModel, std::result::Result<StepReport, Divergence>)> {
    let batch = collate(items, pad_id, device)?;
    let step = model.step_loss(&batch, tasks);
    Ok(apply_loss(model, optimizer, step, lr))
}

/// Backward through a step's joint loss and an AdamW update (the end of [`train_step`], and
/// of a distillation step). A non-finite loss leaves the model and the optimizer untouched
/// and is returned as a [`Divergence`].
pub fn apply_loss(
    model: MultiTaskModel,
    optimizer: &mut AdamW,
    step: StepLoss,
    lr: f64,
) -> (MultiTaskModel, std::result::Result<StepReport, Divergence>) {
    let per_task: Vec<(usize, f32)> = step
        .per_task
        .iter()
        .map(|(t, l)| (*t, l.clone().into_scalar::<f32>()))
        .collect();
    let loss = step.joint.clone().into_scalar::<f32>();
    let parts: Vec<(String, f32)> = step
        .parts
        .iter()
        .map(|(name, l)| (name.clone(), l.clone().into_scalar::<f32>()))
        .collect();
    if !loss.is_finite() || per_task.iter().any(|(_, l)| !l.is_finite()) {
        let divergence = Divergence {
            what: "training".into(),
            step: optimizer.step as usize + 1,
            loss,
            per_task,
        };
        return (model, Err(divergence));
    }
    let grads = step.joint.backward();
    let (model, stats) = optimizer.step(model, grads, lr);
    (
        model,
        Ok(StepReport {
            loss,
            per_task,
            parts,
            stats,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::tokenizer::Tokenizer;
    use crate::data::tokenizer::tests::tiny_tokenizer_json;
    use crate::eval::predict::{TaskPredictions, predict};
    use crate::model::config::BertConfig;
    use crate::model::multitask::tests::{tiny_two_task, two_task_spec};
    use crate::train::loss::LossWeighting;
    use crate::train::optim::AdamWConfig;
    use burn::module::Module;

    fn data(tok: &Tokenizer) -> Vec<Encoded> {
        let ex = |w: &[&str], tags: Vec<usize>, label: usize| {
            Encoded::words(tok, w, Some(tags), Some(label)).unwrap()
        };
        vec![
            ex(&["the", "movie", "is", "great"], vec![0, 1, 0, 0], 1),
            ex(&["a", "film", "is", "so", "new"], vec![0, 1, 0, 0, 0], 1),
            ex(&["the", "unbelievable", "film"], vec![0, 0, 1], 0),
            ex(&["new", "movie", "!"], vec![1, 2, 0], 0),
        ]
    }

    /// A tiny two-task model overfits one batch: both losses fall far below their start,
    /// and then it predicts the training labels.
    #[test]
    fn tiny_two_task_model_overfits_a_batch() {
        let device = Device::flex().autodiff();
        device.seed(1);
        for weighting in [LossWeighting::Static, LossWeighting::Uncertainty] {
            let (tok, model) = tiny_two_task(weighting, &device);
            let mut model = model.fork(&device).train();
            let items = data(&tok);
            let refs: Vec<&Encoded> = items.iter().collect();
            let mut opt = AdamW::new(AdamWConfig::default());
            let mut first = None;
            let mut last = None;
            for _ in 0..150 {
                let (m, report) =
                    train_step(model, &mut opt, &refs, &[0, 1], 3e-3, tok.pad_id(), &device)
                        .unwrap();
                model = m;
                let report = report.expect("finite loss");
                first.get_or_insert(report.per_task.clone());
                last = Some(report.per_task);
            }
            let (first, last) = (first.unwrap(), last.unwrap());
            for k in 0..2 {
                assert!(
                    last[k].1 < 0.2 * first[k].1,
                    "{weighting:?} task {k}: loss {} → {}",
                    first[k].1,
                    last[k].1
                );
            }
            let model = model.valid();
            let preds = predict(&model, &items, &[0, 1], 3, tok.pad_id(), &Device::flex()).unwrap();
            let TaskPredictions::Sentence(s) = &preds[0] else {
                panic!()
            };
            assert_eq!(s.iter().map(|p| p.0).collect::<Vec<_>>(), [1, 1, 0, 0]);
            let TaskPredictions::Token(t) = &preds[1] else {
                panic!()
            };
            let tags: Vec<Vec<usize>> = t.iter().map(|w| w.iter().map(|p| p.0).collect()).collect();
            let gold: Vec<Vec<usize>> =
                items.iter().map(|e| e.word_tags.clone().unwrap()).collect();
            assert_eq!(tags, gold);
        }
    }

    #[test]
    fn non_finite_loss_leaves_the_model_untouched() {
        let device = Device::flex().autodiff();
        let tok = Tokenizer::from_json_bytes(tiny_tokenizer_json().as_bytes(), "t").unwrap();
        let config = BertConfig::tiny(tok.vocab_size());
        let mut spec = two_task_spec(LossWeighting::Static);
        spec.tasks[0].weight = f32::INFINITY;
        // validate_tasks refuses infinite weights; build the model then poison the spec.
        let mut ok_spec = spec.clone();
        ok_spec.tasks[0].weight = 1.0;
        let mut model = MultiTaskModel::init(&config, ok_spec, &device)
            .unwrap()
            .fork(&device);
        model.spec = spec;
        let weights = |m: &MultiTaskModel| -> Vec<f32> {
            let mut v: Vec<f32> = m.heads[0]
                .classifier
                .weight
                .val()
                .try_into_vec_as::<f32>()
                .unwrap();
            let w: Vec<f32> = m.bert.encoder.layer[0]
                .attention
                .self_
                .query
                .weight
                .val()
                .try_into_vec_as::<f32>()
                .unwrap();
            v.extend(w);
            v
        };
        let before = weights(&model);
        let items = data(&tok);
        let refs: Vec<&Encoded> = items.iter().collect();
        let mut opt = AdamW::new(AdamWConfig::default());
        let (model, report) =
            train_step(model, &mut opt, &refs, &[0, 1], 1e-3, tok.pad_id(), &device).unwrap();
        assert!(report.is_err());
        assert_eq!(opt.step, 0);
        assert!(
            weights(&model) == before,
            "weights changed after a non-finite loss"
        );
    }
}
