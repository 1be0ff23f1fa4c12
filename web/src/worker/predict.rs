//! Every loaded task's prediction for a text: the label and confidences of sentence tasks,
//! the entities of token tasks.

use polytask_core::eval::predict::{Predictor, PreparedText, TaskOutput};

use super::with_loaded;
use crate::device::read_f32;
use crate::page::now_ms;
use crate::protocol::{Prediction, TryResult};

/// Every loaded task's prediction for `text`.
pub async fn predict_all(text: &str) -> Result<TryResult, String> {
    let (encoder, device, tasks, multitask) = with_loaded(|l| {
        (
            l.encoder.clone(),
            l.device.clone(),
            l.tasks.clone(),
            l.multitask.clone(),
        )
    })?;
    if text.trim().is_empty() {
        return Err("Type a sentence first.".into());
    }
    if tasks.is_empty() && multitask.is_none() {
        return Err("No task yet: the bundle has none; teach one below.".into());
    }
    let t0 = now_ms();
    let prepared = PreparedText::new(&encoder.tokenizer, text).map_err(|e| e.to_string())?;
    let mut predictor = Predictor::new(multitask.as_ref());
    for (model, meta) in &tasks {
        predictor = predictor.with_adapted(&meta.name, &meta.labels, model, meta.first);
    }
    let on_device = predictor
        .forward(&[&prepared], encoder.tokenizer.pad_id(), &device)
        .map_err(|e| e.to_string())?;
    let mut probs = Vec::with_capacity(on_device.tasks.len());
    for t in on_device.tasks {
        probs.push(read_f32(t).await?);
    }
    let t_read = now_ms();
    let answers = predictor
        .decode(&[text], &[&prepared], &probs, on_device.seq_len)
        .map_err(|e| e.to_string())?;
    // Where the time goes (`?log=debug`).
    log::debug!(
        "predicted {} task(s) in {:.0} ms: tokenized, ran and read back {:.0} ms, decoded {:.0} ms",
        predictor.task_names().len(),
        now_ms() - t0,
        t_read - t0,
        now_ms() - t_read
    );
    let predictions = answers
        .into_iter()
        .flatten()
        .map(|a| match a.output {
            TaskOutput::Sentence {
                label,
                confidence,
                probabilities,
            } => Prediction {
                task: a.task,
                label,
                confidence,
                probabilities,
                entities: None,
            },
            TaskOutput::Token { entities, .. } => Prediction {
                task: a.task,
                label: String::new(),
                confidence: 0.0,
                probabilities: Vec::new(),
                entities: Some(entities),
            },
        })
        .collect();
    Ok(TryResult {
        text: text.to_string(),
        predictions,
        truncated_to: prepared.truncated().then(|| encoder.tokenizer.max_len()),
    })
}
