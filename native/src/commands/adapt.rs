//! `core-train adapt`: a new task from a few labelled examples, saved as a small task file
//! (`core-train predict --task` uses it).
//!
//! Support sets come in the generic JSON-lines format (`{"text": ..., "label": ...}` per
//! line) or as a SNIPS/ATIS-style pair of files (`seq.in` with a sibling `label`). The task
//! file holds only the adapted parameters (see `polytask_core::fewshot::adapt`); the base encoder
//! is named by the sha256 of its weights, and predicting with another base is refused.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use polytask_core::fewshot::adapt::{Learner, validate_support};
use polytask_core::io::task_file::{TASK_FORMAT, TaskMeta, read_task_meta, save_task};
use polytask_native::adaptation::{AdaptFlags, ModeArg, inputs};
use polytask_native::backend::{self, BackendChoice};
use polytask_native::episode_data::{Labelled, read_labelled};
use polytask_native::{model_dir, output};
use serde_json::json;

#[derive(clap::Args, Clone, Debug)]
pub struct AdaptArgs {
    /// Labelled examples: JSON lines `{"text": ..., "label": ...}`, or `seq.in` (+ `label`).
    #[arg(long)]
    pub support: PathBuf,
    /// Where to write the task file (safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// The labels, in order (default: as they first appear); each needs an example.
    #[arg(long, value_delimiter = ',')]
    pub labels: Option<Vec<String>>,
    /// Held-out labelled examples to score after adapting (same formats).
    #[arg(long)]
    pub eval: Option<PathBuf>,
    /// Task name stored in the file (default: the output file's stem).
    #[arg(long)]
    pub name: Option<String>,
    /// Base encoder: a model directory, a training run's best/ or a meta-train output
    /// (default: all-MiniLM-L6-v2).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// What adapts: the head only, adapters + head, or the top blocks + head.
    #[arg(long, value_enum, default_value_t = ModeArg::Adapters)]
    pub mode: ModeArg,
    #[command(flatten)]
    pub adapt: AdaptFlags,
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
}

/// Class indices of `examples` under `labels`; an unknown label is named with its line.
fn label_ids(examples: &[Labelled], labels: &[String]) -> Result<Vec<usize>> {
    examples
        .iter()
        .map(|e| {
            labels.iter().position(|l| *l == e.label).ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: label {:?} is not one of the task's labels ({})",
                    e.at,
                    e.label,
                    labels.join(", ")
                )
            })
        })
        .collect()
}

/// Whether `bytes` are a task file (what `adapt --out` may replace).
fn is_task_file(bytes: &[u8]) -> bool {
    read_task_meta(bytes, "").is_ok()
}

pub fn run(args: &AdaptArgs) -> Result<()> {
    output::check_file_replaceable(&args.out, is_task_file)?;
    let support = read_labelled(&args.support, false)?;
    let labels: Vec<String> = match &args.labels {
        Some(l) => l.iter().map(|s| s.trim().to_string()).collect(),
        None => {
            let mut l: Vec<String> = Vec::new();
            for e in &support {
                if !l.contains(&e.label) {
                    l.push(e.label.clone());
                }
            }
            l
        }
    };
    let ids = if labels.len() < 2 {
        Vec::new()
    } else {
        label_ids(&support, &labels)?
    };
    validate_support(&ids, labels.len(), Some(&labels))
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.support.display()))?;
    let eval = args
        .eval
        .as_deref()
        .map(|p| read_labelled(p, true))
        .transpose()?;
    let eval_ids = eval.as_deref().map(|e| label_ids(e, &labels)).transpose()?;

    let config = args.adapt.config(args.mode.into());
    let selected = backend::select(args.backend)?;
    let dir = model_dir::resolve(args.model.as_deref())?;
    let (encoder, base) = model_dir::load_with_id(&dir, &selected.device)?;
    eprintln!(
        "backend: {}; {} labels, {} examples; adapting {} ({} steps)",
        selected.description,
        labels.len(),
        support.len(),
        config.mode.name(),
        config.steps
    );
    let texts: Vec<&str> = support.iter().map(|e| e.text.as_str()).collect();
    let input = inputs(&encoder, &texts, &selected.device)?;
    let t0 = Instant::now();
    let adapted = Learner::new(&encoder.model, &config)
        .and_then(|learner| {
            learner.adapt(input, &ids, labels.len(), |step, loss| {
                eprintln!("step {:>3}: support loss {loss:.4}", step + 1);
            })
        })
        .with_context(|| format!("adapting to {}", args.support.display()))?;
    let seconds = t0.elapsed().as_secs_f64();
    let name = args.name.clone().unwrap_or_else(|| {
        args.out
            .file_stem()
            .map_or("task".into(), |s| s.to_string_lossy().into_owned())
    });
    let meta = TaskMeta {
        format: TASK_FORMAT.into(),
        name,
        labels: labels.clone(),
        config,
        first: adapted.first,
        base: base.tensors,
        max_len: encoder.tokenizer.max_len(),
    };
    let bytes = save_task(&adapted.model, &meta)?;
    output::write_file_atomic(&args.out, &bytes, is_task_file)?;
    eprintln!(
        "adapted in {seconds:.2} s; wrote {} ({:.1} KiB)",
        args.out.display(),
        bytes.len() as f64 / 1024.0
    );
    if let (Some(eval), Some(ids)) = (eval, eval_ids) {
        let texts: Vec<&str> = eval.iter().map(|e| e.text.as_str()).collect();
        let input = inputs(&encoder, &texts, &selected.device)?;
        let (acc, _) = adapted.model.accuracy(input, &ids)?;
        println!(
            "{}",
            json!({"eval": args.eval.as_ref().map(|p| p.display().to_string()), "examples": eval.len(), "accuracy": acc})
        );
    }
    Ok(())
}
