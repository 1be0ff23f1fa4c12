//! `core-train predict --model DIR [TEXT...]`: every task's prediction for ad-hoc text, as
//! JSON lines: the label and its confidence for sentence tasks, the entities (type,
//! character span, text, confidence) for token tasks.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};
use polytask_core::eval::predict::{PreparedText, sentence_output, token_output};
use polytask_core::eval::predict::{TaskPredictions, predict};
use serde_json::{Value, json};

use crate::backend::{self, BackendChoice};
use crate::run_dir;

#[derive(clap::Args, Clone, Debug)]
pub struct PredictArgs {
    /// Texts; read one per line from stdin when none are given.
    pub texts: Vec<String>,
    /// A saved model directory (OUT/best of a training run); with --task, the base
    /// encoder the task was adapted from (default: all-MiniLM-L6-v2).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// A task file written by `core-train adapt`.
    #[arg(long, conflicts_with = "bundle")]
    pub task: Option<PathBuf>,
    /// A bundle written by `core-train export` (checked against its manifest).
    #[arg(long, conflicts_with = "model")]
    pub bundle: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
}

pub fn run(args: &PredictArgs) -> Result<()> {
    let texts = crate::input_texts(&args.texts)?;
    if let Some(bundle) = &args.bundle {
        return crate::bundle::predict(bundle, &texts, args.backend);
    }
    if let Some(task) = &args.task {
        return crate::adapt_cmd::run_predict_task(
            task,
            args.model.as_deref(),
            &texts,
            args.backend,
        );
    }
    let Some(model_dir) = &args.model else {
        bail!("give --model DIR (a training run's best/) or --task FILE (from core-train adapt)");
    };
    let selected = backend::select(args.backend)?;
    let (saved, tokenizer, _) = run_dir::load(model_dir, &selected.device)?;
    let preds = multitask_predictions(&saved.model, &tokenizer, &texts, &selected.device)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (text, by_task) in texts.iter().zip(preds) {
        writeln!(out, "{}", json!({"text": text, "tasks": by_task}))?;
    }
    Ok(())
}

/// Every task's prediction for each text, as a JSON object keyed by task name.
pub fn multitask_predictions(
    model: &polytask_core::model::multitask::MultiTaskModel,
    tokenizer: &polytask_core::Tokenizer,
    texts: &[String],
    device: &burn::tensor::Device,
) -> Result<Vec<Value>> {
    let mut prepared = Vec::with_capacity(texts.len());
    for (i, t) in texts.iter().enumerate() {
        let p = PreparedText::new(tokenizer, t)?;
        if p.truncated() {
            eprintln!(
                "note: text {} is longer than {} word pieces and was truncated",
                i + 1,
                tokenizer.max_len()
            );
        }
        prepared.push(p);
    }
    let items: Vec<_> = prepared.iter().map(|p| p.encoded.clone()).collect();
    let tasks: Vec<usize> = (0..model.tasks().len()).collect();
    let preds = predict(model, &items, &tasks, 32, tokenizer.pad_id(), device)?;
    let mut out = Vec::with_capacity(texts.len());
    for (i, text) in texts.iter().enumerate() {
        let mut by_task = serde_json::Map::new();
        for (&t, p) in tasks.iter().zip(&preds) {
            let spec = &model.tasks()[t];
            let output = match p {
                TaskPredictions::Sentence(p) => sentence_output(spec, p[i]),
                TaskPredictions::Token(p) => token_output(spec, text, &prepared[i], &p[i]),
            };
            by_task.insert(spec.name.clone(), serde_json::to_value(output)?);
        }
        out.push(Value::Object(by_task));
    }
    Ok(out)
}
