//! Turning corpus examples into model inputs, and scoring a model on a split the way papers
//! do: accuracy and macro-F1 (per-class report) for sentence tasks, entity-level
//! precision/recall/F1 with seqeval semantics for token tasks, and in-scope accuracy plus
//! out-of-scope recall for tasks with an out-of-scope class (CLINC150).

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use burn::tensor::Device;
use polytask_core::Tokenizer;
use polytask_core::data::features::Encoded;
use polytask_core::eval::metrics::{
    apply_oos_threshold, classification_report, entity_report, fit_oos_threshold, oos_report,
};
use polytask_core::eval::predict::{TaskPredictions, predict};
use polytask_core::model::multitask::MultiTaskModel;
use polytask_core::model::task::{TaskKind, TaskSpec};
use serde_json::{Value, json};

use crate::corpus::{EncodedSource, Example};

/// Tokenizes `examples` with the targets of `tasks` (indices into `specs`). A label or tag
/// that the task's label set lacks is an error naming the example's file and line.
pub fn encode(
    tokenizer: &Tokenizer,
    examples: &[Example],
    tasks: &[usize],
    specs: &[TaskSpec],
) -> Result<Vec<Encoded>> {
    let sentence_task = tasks.iter().find(|&&t| specs[t].kind == TaskKind::Sentence);
    let token_task = tasks.iter().find(|&&t| specs[t].kind == TaskKind::Token);
    let lookup = |spec: &TaskSpec, label: &str, e: &Example| -> Result<usize> {
        match spec.label_id(label) {
            Some(i) => Ok(i),
            None => bail!(
                "{}: label {label:?} of task {:?} does not occur in its training data \
                 (known: {} labels)",
                e.origin,
                spec.name,
                spec.labels.len()
            ),
        }
    };
    examples
        .iter()
        .map(|e| {
            let label = match sentence_task {
                Some(&t) => {
                    let l = e
                        .label
                        .as_deref()
                        .expect("checked by corpus::check_columns");
                    Some(lookup(&specs[t], l, e)?)
                }
                None => None,
            };
            match (&e.words, token_task) {
                (Some(words), Some(&t)) => {
                    let tags = e.tags.as_ref().expect("checked by corpus::check_columns");
                    let ids = tags
                        .iter()
                        .map(|tag| lookup(&specs[t], tag, e))
                        .collect::<Result<Vec<_>>>()?;
                    Ok(Encoded::words(tokenizer, words, Some(ids), label)?)
                }
                (Some(words), None) => Ok(Encoded::words(tokenizer, words, None, label)?),
                (None, _) => Ok(Encoded::text(tokenizer, &e.text, label)?),
            }
        })
        .collect()
}

/// The metric that sums a task up: entity F1, in-scope accuracy, or accuracy.
pub fn main_metric(spec: &TaskSpec) -> &'static str {
    match (spec.kind, &spec.out_of_scope) {
        (TaskKind::Token, _) => "f1",
        (TaskKind::Sentence, Some(_)) => "in_scope_accuracy",
        (TaskKind::Sentence, None) => "accuracy",
    }
}

/// Scores `tasks` of one corpus on `items` (encoded with their gold targets).
///
/// A task with an out-of-scope class is also scored with a confidence threshold (a query
/// whose best class has probability below it counts as out of scope): `oos_threshold` and
/// the `*_at_threshold` metrics. The threshold is the task's own (fitted on dev, see
/// [`set_oos_thresholds`]), or, when it has none, fitted on `items` (the one that
/// maximises accuracy): score dev first, then test.
pub fn score(
    model: &MultiTaskModel,
    items: &[Encoded],
    tasks: &[usize],
    batch_size: usize,
    pad_id: u32,
    device: &Device,
) -> Result<BTreeMap<String, Value>> {
    let preds = predict(model, items, tasks, batch_size, pad_id, device)?;
    let mut out = BTreeMap::new();
    for (&t, p) in tasks.iter().zip(preds) {
        let spec = &model.tasks()[t];
        let value = match p {
            TaskPredictions::Sentence(p) => {
                let gold: Vec<usize> = items
                    .iter()
                    .map(|e| e.sentence_label.expect("gold label"))
                    .collect();
                let pred: Vec<usize> = p.iter().map(|x| x.0).collect();
                let report = classification_report(&gold, &pred, &spec.labels);
                let mut v = serde_json::to_value(&report).expect("serialisable");
                if let Some(oos) = spec.out_of_scope.as_deref().and_then(|l| spec.label_id(l)) {
                    let o = oos_report(&gold, &pred, oos);
                    v["in_scope_accuracy"] = json!(o.in_scope_accuracy);
                    v["oos_recall"] = json!(o.oos_recall);
                    v["oos_precision"] = json!(o.oos_precision);
                    let threshold = spec
                        .out_of_scope_threshold
                        .unwrap_or_else(|| fit_oos_threshold(&gold, &p, oos));
                    let flagged = apply_oos_threshold(&p, oos, threshold);
                    let o = oos_report(&gold, &flagged, oos);
                    let right = gold.iter().zip(&flagged).filter(|(g, p)| g == p).count();
                    v["oos_threshold"] = json!(threshold);
                    v["in_scope_accuracy_at_threshold"] = json!(o.in_scope_accuracy);
                    v["oos_recall_at_threshold"] = json!(o.oos_recall);
                    v["oos_precision_at_threshold"] = json!(o.oos_precision);
                    v["accuracy_at_threshold"] = json!(right as f64 / gold.len().max(1) as f64);
                }
                v
            }
            TaskPredictions::Token(p) => {
                let names = |ids: &[usize]| -> Vec<String> {
                    ids.iter().map(|&i| spec.labels[i].clone()).collect()
                };
                let gold: Vec<Vec<String>> = items
                    .iter()
                    .map(|e| names(e.word_tags.as_deref().expect("gold tags")))
                    .collect();
                let pred: Vec<Vec<String>> = p
                    .iter()
                    .map(|w| names(&w.iter().map(|x| x.0).collect::<Vec<_>>()))
                    .collect();
                serde_json::to_value(entity_report(&gold, &pred)).expect("serialisable")
            }
        };
        let mut value = value;
        value["kind"] = json!(spec.kind.to_string());
        value["main"] = json!(main_metric(spec));
        value["examples"] = json!(items.len());
        out.insert(spec.name.clone(), value);
    }
    Ok(out)
}

/// Gives each out-of-scope task of `model` the threshold that [`score`] fitted on dev
/// (`dev_scores`), for scoring test and for `predict`.
pub fn set_oos_thresholds(model: &mut MultiTaskModel, dev_scores: &BTreeMap<String, Value>) {
    for task in model.spec.tasks.iter_mut() {
        if let Some(t) = metric(dev_scores, &task.name, "oos_threshold") {
            task.out_of_scope_threshold = Some(t as f32);
        }
    }
}

/// The value of `metric` for `task` in a set of scores (`None` when absent).
pub fn metric(scores: &BTreeMap<String, Value>, task: &str, metric: &str) -> Option<f64> {
    scores.get(task)?.get(metric)?.as_f64()
}

/// The selection metric: `mean` of every task's main metric, or `TASK.METRIC`.
pub fn select(scores: &BTreeMap<String, Value>, select: &str) -> Option<f64> {
    if select == "mean" {
        let mains: Vec<f64> = scores
            .iter()
            .filter_map(|(task, v)| metric(scores, task, v.get("main")?.as_str()?))
            .collect();
        (!mains.is_empty()).then(|| mains.iter().sum::<f64>() / mains.len() as f64)
    } else {
        let (task, m) = select.split_once('.')?;
        metric(scores, task, m)
    }
}

/// A plain-text table of the main numbers of each task.
pub fn table(columns: &[(&str, &BTreeMap<String, Value>)]) -> String {
    let mut rows: Vec<Vec<String>> = vec![];
    let mut header = vec!["task".to_string(), "metric".to_string()];
    header.extend(columns.iter().map(|(name, _)| name.to_string()));
    rows.push(header);
    let first = columns.first().map(|c| c.1).cloned().unwrap_or_default();
    for (task, v) in &first {
        let metrics: Vec<&str> = match v.get("kind").and_then(Value::as_str) {
            Some("token") => vec!["f1", "precision", "recall"],
            _ if v.get("in_scope_accuracy").is_some() => {
                vec![
                    "in_scope_accuracy",
                    "oos_recall",
                    "accuracy",
                    "macro_f1",
                    "oos_threshold",
                    "in_scope_accuracy_at_threshold",
                    "oos_recall_at_threshold",
                    "accuracy_at_threshold",
                ]
            }
            _ => vec!["accuracy", "macro_f1"],
        };
        for m in metrics {
            let mut row = vec![task.clone(), m.to_string()];
            for (_, scores) in columns {
                row.push(metric(scores, task, m).map_or("-".into(), |x| format!("{:.4}", x)));
            }
            rows.push(row);
        }
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            r.iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Scores `model` on the dev or test split of every corpus.
pub fn score_split(
    model: &MultiTaskModel,
    sources: &[EncodedSource],
    test: bool,
    batch_size: usize,
    pad_id: u32,
    device: &Device,
) -> Result<BTreeMap<String, Value>> {
    let mut all = BTreeMap::new();
    for s in sources {
        let items = if test { &s.test } else { &s.dev };
        if items.is_empty() {
            continue;
        }
        all.extend(score(model, items, &s.tasks, batch_size, pad_id, device)?);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_by_mean_or_name() {
        let mut s = BTreeMap::new();
        s.insert(
            "a".to_string(),
            json!({"main": "accuracy", "accuracy": 0.5, "macro_f1": 0.1}),
        );
        s.insert(
            "b".to_string(),
            json!({"main": "f1", "f1": 0.9, "kind": "token"}),
        );
        assert!((select(&s, "mean").unwrap() - 0.7).abs() < 1e-12);
        assert_eq!(select(&s, "a.macro_f1"), Some(0.1));
        assert_eq!(select(&s, "a.nope"), None);
        let t = table(&[("dev", &s)]);
        assert!(t.contains("b     f1") || t.contains("b  "), "{t}");
        assert!(t.contains("0.9000"), "{t}");
    }
}
