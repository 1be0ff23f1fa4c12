//! `core-train predict --model DIR [TEXT...]`: every task's prediction for ad-hoc text, as
//! JSON lines: the label and its confidence for sentence tasks, the entities (type,
//! character span, text, confidence) for token tasks.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};
use polytask_core::features::Encoded;
use polytask_core::metrics::extract_entities;
use polytask_core::tokenizer::first_subword_positions;
use polytask_core::trainer::{TaskPredictions, predict};
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

/// One text encoded for prediction, with the character span of each word.
fn encode(
    tokenizer: &polytask_core::Tokenizer,
    text: &str,
) -> Result<(Encoded, Vec<(usize, usize)>)> {
    let encoding = tokenizer.encode(text)?;
    let n_words = encoding
        .word_ids
        .iter()
        .flatten()
        .map(|&w| w as usize + 1)
        .max()
        .unwrap_or(0);
    let first_pieces = first_subword_positions(&encoding.word_ids, n_words);
    let mut spans = vec![(usize::MAX, 0usize); n_words];
    for (w, off) in encoding.word_ids.iter().zip(&encoding.offsets) {
        if let Some(w) = w {
            let s = &mut spans[*w as usize];
            s.0 = s.0.min(off.0);
            s.1 = s.1.max(off.1);
        }
    }
    Ok((
        Encoded {
            encoding,
            sentence_label: None,
            word_tags: None,
            first_pieces,
        },
        spans,
    ))
}

pub fn run(args: &PredictArgs) -> Result<()> {
    let texts = if args.texts.is_empty() {
        crate::read_stdin_lines()?
    } else {
        args.texts.clone()
    };
    if texts.is_empty() {
        bail!("no text: give it as arguments or one per line on stdin");
    }
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
    model: &polytask_core::multitask::MultiTaskModel,
    tokenizer: &polytask_core::Tokenizer,
    texts: &[String],
    device: &burn::tensor::Device,
) -> Result<Vec<Value>> {
    let mut items = Vec::with_capacity(texts.len());
    let mut spans = Vec::with_capacity(texts.len());
    for (i, t) in texts.iter().enumerate() {
        let (e, s) = encode(tokenizer, t)?;
        if e.encoding.truncated {
            eprintln!(
                "note: text {} is longer than {} word pieces and was truncated",
                i + 1,
                tokenizer.max_len()
            );
        }
        items.push(e);
        spans.push(s);
    }
    let tasks: Vec<usize> = (0..model.tasks().len()).collect();
    let preds = predict(model, &items, &tasks, 32, tokenizer.pad_id(), device)?;
    let mut out = Vec::with_capacity(texts.len());
    for (i, text) in texts.iter().enumerate() {
        let mut by_task = serde_json::Map::new();
        for (&t, p) in tasks.iter().zip(&preds) {
            let spec = &model.tasks()[t];
            let value = match p {
                TaskPredictions::Sentence(p) => {
                    let (label, conf) = p[i];
                    json!({"label": spec.labels[label], "confidence": conf})
                }
                TaskPredictions::Token(p) => {
                    let tags: Vec<&str> =
                        p[i].iter().map(|(c, _)| spec.labels[*c].as_str()).collect();
                    let entities: Vec<Value> = extract_entities(&tags)
                        .into_iter()
                        .map(|e| {
                            let (start, end) = (spans[i][e.start].0, spans[i][e.end - 1].1);
                            let conf = p[i][e.start..e.end].iter().map(|x| x.1).fold(1.0f32, f32::min);
                            let snippet: String = text.chars().skip(start).take(end - start).collect();
                            json!({"type": e.kind, "text": snippet, "start": start, "end": end, "confidence": conf})
                        })
                        .collect();
                    json!({"entities": entities, "tags": tags})
                }
            };
            by_task.insert(spec.name.clone(), value);
        }
        out.push(Value::Object(by_task));
    }
    Ok(out)
}
