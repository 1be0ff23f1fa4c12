//! `core-train predict`: predictions for ad-hoc text, as JSON lines, from one of
//! - `--model DIR` (a training run's `best/`): every task's prediction, the label and its
//!   confidence for sentence tasks, the entities (type, character span, text, confidence)
//!   for token tasks;
//! - `--task FILE` (from `core-train adapt`): the adapted task's label, its confidence and
//!   every label's probability;
//! - `--bundle DIR` (from `core-train export`): both, for every task the bundle holds.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use polytask_core::eval::predict::{PreparedText, sentence_output, token_output};
use polytask_core::eval::predict::{TaskPredictions, predict};
use polytask_core::fewshot::adapt::FewShotModel;
use polytask_core::io::task_file::{TaskMeta, load_task, read_task_meta};
use polytask_core::model::multitask::{MultiTaskModel, MultiTaskSpec};
use polytask_core::{ModelFiles, SentenceEncoder, Tokenizer};
use polytask_native::adaptation::inputs;
use polytask_native::backend::{self, BackendChoice};
use polytask_native::bundle::Bundle;
use polytask_native::files::read;
use polytask_native::input::input_texts;
use polytask_native::{model_dir, run_dir};
use serde_json::{Value, json};

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
    let texts = input_texts(&args.texts)?;
    if let Some(bundle) = &args.bundle {
        return predict_bundle(bundle, &texts, args.backend);
    }
    if let Some(task) = &args.task {
        return predict_task(task, args.model.as_deref(), &texts, args.backend);
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
fn multitask_predictions(
    model: &MultiTaskModel,
    tokenizer: &Tokenizer,
    texts: &[String],
    device: &Device,
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

/// Loads a task file onto its base encoder (`model`, default all-MiniLM-L6-v2); a task
/// adapted from another base is refused.
fn load_task_model(
    task: &Path,
    model: Option<&Path>,
    device: &Device,
) -> Result<(SentenceEncoder, FewShotModel, TaskMeta)> {
    let bytes = read(task)?;
    let source = task.display().to_string();
    let meta = read_task_meta(&bytes, &source)?;
    let dir = model_dir::resolve(model)?;
    let (mut encoder, base) = model_dir::load_with_id(&dir, device)?;
    if !base.matches(&meta.base) {
        bail!(
            "{source}: adapted from the encoder with weights {}, but {} has {base}; pass the \
             base it was adapted from with --model",
            meta.base,
            dir.display()
        );
    }
    // load_task checks the file's max_len against the encoder before it is used.
    let (fewshot, meta) = load_task(&encoder.model, &bytes, &source)?;
    encoder.tokenizer.set_max_len(meta.max_len)?;
    Ok((encoder, fewshot, meta))
}

/// A task's prediction from its class probabilities `p`: the label, its confidence and
/// every label's probability.
fn prediction_json(labels: &[String], p: &[f32]) -> serde_json::Value {
    let (best, _) = polytask_core::eval::predict::argmax(p);
    let all: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .zip(p)
        .map(|(l, v)| (l.clone(), json!(v)))
        .collect();
    json!({"label": labels[best], "confidence": p[best], "probabilities": all})
}

/// `predict --task`: one JSON line per text with the label, its confidence and the
/// probabilities of every label.
fn predict_task(
    task: &Path,
    model: Option<&Path>,
    texts: &[String],
    backend_choice: BackendChoice,
) -> Result<()> {
    let selected = backend::select(backend_choice)?;
    let (encoder, fewshot, meta) = load_task_model(task, model, &selected.device)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for chunk in texts.chunks(32) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let probs: Vec<f32> = fewshot
            .probabilities(inputs(&encoder, &refs, &selected.device)?)
            .try_into_vec_as::<f32>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        for (text, p) in chunk.iter().zip(probs.chunks(meta.labels.len())) {
            let mut line = prediction_json(&meta.labels, p);
            line["text"] = json!(text);
            line["task"] = json!(meta.name);
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

/// `predict --bundle`: every multi-task head and every adapted task, per text.
fn predict_bundle(dir: &Path, texts: &[String], choice: BackendChoice) -> Result<()> {
    let bundle = Bundle::open(dir)?;
    let selected = backend::select(choice)?;
    let device = &selected.device;
    let name = |f: &str| dir.join(f).display().to_string();
    let config_json = String::from_utf8(bundle.file("config.json")?)
        .with_context(|| format!("{}: not UTF-8", name("config.json")))?;
    let tokenizer_json = bundle.file("tokenizer.json")?;
    let weights = bundle.file("model.safetensors")?;
    let (encoder, _) = SentenceEncoder::load(
        ModelFiles {
            config_json: &config_json,
            config_name: &name("config.json"),
            weights: weights.clone(),
            weights_name: &name("model.safetensors"),
            tokenizer_json: &tokenizer_json,
            tokenizer_name: &name("tokenizer.json"),
        },
        device,
    )?;
    let multitask = if bundle.manifest.multitask {
        let spec: MultiTaskSpec = serde_json::from_slice(&bundle.file("tasks.json")?)
            .with_context(|| format!("{}: not a task list", name("tasks.json")))?;
        Some(MultiTaskModel::with_heads(
            encoder.model.clone(),
            spec,
            &weights,
            &name("model.safetensors"),
            device,
        )?)
    } else {
        None
    };
    let mut adapted = Vec::new();
    for t in &bundle.manifest.tasks {
        let file = format!("tasks/{t}.safetensors");
        let (model, meta) = load_task(&encoder.model, &bundle.file(&file)?, &name(&file))?;
        adapted.push((model, meta));
    }
    if multitask.is_none() && adapted.is_empty() {
        bail!("{}: the bundle holds no task to predict", dir.display());
    }
    let mut per_text: Vec<serde_json::Map<String, serde_json::Value>> =
        vec![serde_json::Map::new(); texts.len()];
    if let Some(model) = &multitask {
        let tok: &Tokenizer = &encoder.tokenizer;
        for (i, v) in multitask_predictions(model, tok, texts, device)?
            .into_iter()
            .enumerate()
        {
            if let serde_json::Value::Object(m) = v {
                per_text[i].extend(m);
            }
        }
    }
    for (model, meta) in &adapted {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let probs: Vec<f32> = model
            .probabilities(inputs(&encoder, &refs, device)?)
            .try_into_vec_as::<f32>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        for (i, p) in probs.chunks(meta.labels.len()).enumerate() {
            per_text[i].insert(meta.name.clone(), prediction_json(&meta.labels, p));
        }
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (text, tasks) in texts.iter().zip(per_text) {
        writeln!(out, "{}", json!({"text": text, "tasks": tasks}))?;
    }
    Ok(())
}
