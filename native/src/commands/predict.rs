//! `core-train predict`: predictions for ad-hoc text, as JSON lines, from one of
//! - `--model DIR` (a training run's `best/`): every task's prediction, the label, its
//!   confidence and every label's probability for sentence tasks, the entities (type, character span, text, confidence)
//!   for token tasks;
//! - `--task FILE` (from `core-train adapt`): the adapted task's label, its confidence and
//!   every label's probability;
//! - `--bundle DIR` (from `core-train export`): both, for every task the bundle holds.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use polytask_core::eval::predict::{Predictor, PreparedText, TaskAnswer};
use polytask_core::fewshot::adapt::FewShotModel;
use polytask_core::io::task_file::{TaskMeta, load_task, read_task_meta};
use polytask_core::model::multitask::{MultiTaskModel, MultiTaskSpec};
use polytask_core::{ModelFiles, SentenceEncoder, Tokenizer};
use polytask_native::backend::{self, BackendChoice};
use polytask_native::bundle::Bundle;
use polytask_native::files::read;
use polytask_native::input::input_texts;
use polytask_native::{model_dir, run_dir};
use serde_json::json;

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
    let predictor = Predictor::new(Some(&saved.model));
    write_answers(&predictor, &tokenizer, &texts, &selected.device)
}

/// Every text tokenized for prediction, with a note on stderr for each that was cut.
fn prepare(tokenizer: &Tokenizer, texts: &[String]) -> Result<Vec<PreparedText>> {
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
    Ok(prepared)
}

/// Every task's answer for each text, in batches of 32.
fn answers(
    predictor: &Predictor,
    tokenizer: &Tokenizer,
    texts: &[String],
    device: &Device,
) -> Result<Vec<Vec<TaskAnswer>>> {
    let prepared = prepare(tokenizer, texts)?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    Ok(predictor.predict(&refs, &prepared, tokenizer.pad_id(), 32, device)?)
}

/// One JSON line per text: `{"text", "tasks": {task: answer}}`.
fn write_answers(
    predictor: &Predictor,
    tokenizer: &Tokenizer,
    texts: &[String],
    device: &Device,
) -> Result<()> {
    let all = answers(predictor, tokenizer, texts, device)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (text, by_task) in texts.iter().zip(all) {
        let mut tasks = serde_json::Map::new();
        for a in by_task {
            tasks.insert(a.task, serde_json::to_value(a.output)?);
        }
        writeln!(out, "{}", json!({"text": text, "tasks": tasks}))?;
    }
    Ok(())
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

/// `predict --task`: one JSON line per text with the label, its confidence and the
/// probabilities of every label (the task's answer, with the text and the task's name).
fn predict_task(
    task: &Path,
    model: Option<&Path>,
    texts: &[String],
    backend_choice: BackendChoice,
) -> Result<()> {
    let selected = backend::select(backend_choice)?;
    let (encoder, fewshot, meta) = load_task_model(task, model, &selected.device)?;
    let predictor =
        Predictor::new(None).with_adapted(&meta.name, &meta.labels, &fewshot, meta.first);
    let all = answers(&predictor, &encoder.tokenizer, texts, &selected.device)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (text, mut by_task) in texts.iter().zip(all) {
        let mut line = serde_json::to_value(by_task.remove(0).output)?;
        line["text"] = json!(text);
        line["task"] = json!(meta.name);
        writeln!(out, "{line}")?;
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
    let mut predictor = Predictor::new(multitask.as_ref());
    for (model, meta) in &adapted {
        predictor = predictor.with_adapted(&meta.name, &meta.labels, model, meta.first);
    }
    if predictor.is_empty() {
        bail!("{}: the bundle holds no task to predict", dir.display());
    }
    write_answers(&predictor, &encoder.tokenizer, texts, device)
}
