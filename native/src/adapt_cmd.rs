//! `core-train adapt`: a new task from a few labelled examples, saved as a small task file;
//! `core-train predict --task`: that task's labels for new text.
//!
//! Support sets come in the generic JSON-lines format (`{"text": ..., "label": ...}` per
//! line) or as a SNIPS/ATIS-style pair of files (`seq.in` with a sibling `label`). The task
//! file holds only the adapted parameters (see `polytask_core::fewshot::adapt`); the base encoder
//! is named by the sha256 of its weights, and predicting with another base is refused.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use polytask_core::data::formats;
use polytask_core::fewshot::adapt::{
    AdaptConfig, AdaptMode, FewShotModel, Learner, validate_support,
};
use polytask_core::io::task_file::{TASK_FORMAT, TaskMeta, load_task, read_task_meta, save_task};
use polytask_core::{BertInput, SentenceEncoder};
use serde_json::json;

use crate::backend::{self, BackendChoice};
use crate::{model_dir, output};

/// One labelled text and where it came from (`FILE:LINE`).
#[derive(Debug, Clone)]
pub struct Labelled {
    pub text: String,
    pub label: String,
    pub at: String,
}

/// Reads labelled sentences: a `.jsonl` file, or `seq.in` (or a directory holding it)
/// with a sibling `label` file. Empty texts are errors naming the line, and so are
/// duplicated texts unless `allow_duplicates` (whole datasets have a few).
pub fn read_labelled(path: &Path, allow_duplicates: bool) -> Result<Vec<Labelled>> {
    let read = |p: &Path| -> Result<String> {
        let bytes = std::fs::read(p).with_context(|| format!("{}: cannot read", p.display()))?;
        Ok(formats::decode(&bytes, &p.display().to_string())
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .to_string())
    };
    let seq_in = if path.is_dir() {
        Some(path.join("seq.in"))
    } else if path.file_name().is_some_and(|n| n == "seq.in") {
        Some(path.to_path_buf())
    } else {
        None
    };
    let out: Vec<Labelled> = if let Some(seq_in) = seq_in {
        let label_path = seq_in.with_file_name("label");
        let (texts, labels) = (read(&seq_in)?, read(&label_path)?);
        let (t_lines, l_lines): (Vec<&str>, Vec<&str>) =
            (texts.lines().collect(), labels.lines().collect());
        if t_lines.len() != l_lines.len() {
            bail!(
                "{}: {} lines, but {} has {}",
                seq_in.display(),
                t_lines.len(),
                label_path.display(),
                l_lines.len()
            );
        }
        let mut out = Vec::new();
        for (i, (t, l)) in t_lines.iter().zip(&l_lines).enumerate() {
            if t.trim().is_empty() {
                bail!("{}:{}: empty text", seq_in.display(), i + 1);
            }
            if l.trim().is_empty() {
                bail!("{}:{}: empty label", label_path.display(), i + 1);
            }
            out.push(Labelled {
                text: t.trim().to_string(),
                label: l.trim().to_string(),
                at: format!("{}:{}", seq_in.display(), i + 1),
            });
        }
        out
    } else {
        let text = read(path)?;
        let file = path.display().to_string();
        let parsed = formats::parse_jsonl(&text, &file).map_err(|e| anyhow::anyhow!("{e}"))?;
        let formats::JsonlExamples::Sentences(examples) = parsed else {
            bail!(
                "{file}: holds token-tagged examples; a few-shot task needs {{\"text\", \"label\"}} lines"
            );
        };
        // parse_jsonl accepts only complete files, so examples match non-blank lines.
        let lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, _)| i + 1);
        examples
            .into_iter()
            .zip(lines)
            .map(|(e, line)| Labelled {
                text: e.text.trim().to_string(),
                label: e.label.trim().to_string(),
                at: format!("{file}:{line}"),
            })
            .collect()
    };
    if out.is_empty() {
        bail!("{}: no examples", path.display());
    }
    let mut seen: BTreeMap<String, &Labelled> = BTreeMap::new();
    for e in out.iter().filter(|_| !allow_duplicates) {
        let key = e.text.to_lowercase();
        if let Some(first) = seen.get(&key) {
            if first.label == e.label {
                bail!("{}: duplicate of {} ({:?})", e.at, first.at, e.text);
            }
            bail!(
                "{}: the same text as {} with another label ({:?} vs {:?})",
                e.at,
                first.at,
                e.label,
                first.label
            );
        }
        seen.insert(key, e);
    }
    Ok(out)
}

/// Adaptation settings on the command line.
#[derive(clap::Args, Clone, Debug)]
pub struct AdaptFlags {
    /// Optimizer steps on the support set.
    #[arg(long, default_value_t = AdaptConfig::default().steps)]
    pub steps: usize,
    /// Learning rate of adapters / encoder weights.
    #[arg(long, default_value_t = AdaptConfig::default().lr)]
    pub lr: f64,
    /// Learning rate of the head.
    #[arg(long, default_value_t = AdaptConfig::default().head_lr)]
    pub head_lr: f64,
    /// Top encoder blocks that adapt (adapters / full).
    #[arg(long, default_value_t = AdaptConfig::default().layers)]
    pub layers: usize,
    /// Bottleneck width of new adapters.
    #[arg(long, default_value_t = AdaptConfig::default().adapter_size)]
    pub adapter_size: usize,
    /// Support examples per step.
    #[arg(long, default_value_t = AdaptConfig::default().batch_size)]
    pub batch_size: usize,
    /// Logit scale of the prototype head.
    #[arg(long, default_value_t = AdaptConfig::default().scale)]
    pub scale: f64,
    /// Seeds minibatches and dropout.
    #[arg(long, default_value_t = 0)]
    pub adapt_seed: u64,
}

impl AdaptFlags {
    pub fn config(&self, mode: &str) -> Result<AdaptConfig> {
        Ok(AdaptConfig {
            mode: AdaptMode::parse(mode)?,
            steps: self.steps,
            lr: self.lr,
            head_lr: self.head_lr,
            batch_size: self.batch_size,
            layers: self.layers,
            adapter_size: self.adapter_size,
            scale: self.scale,
            seed: self.adapt_seed,
        })
    }
}

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
    #[arg(long, default_value = "adapters", value_parser = ["head", "adapters", "full"])]
    pub mode: String,
    #[command(flatten)]
    pub adapt: AdaptFlags,
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
}

/// Tokenizes texts onto `device`, noting truncation.
pub fn inputs(encoder: &SentenceEncoder, texts: &[&str], device: &Device) -> Result<BertInput> {
    let batch = encoder.tokenizer.batch(texts)?;
    for (t, cut) in texts.iter().zip(&batch.truncated) {
        if *cut {
            eprintln!(
                "note: longer than {} word pieces, truncated: {:?}",
                encoder.tokenizer.max_len(),
                t.chars().take(60).collect::<String>()
            );
        }
    }
    Ok(BertInput::from_batch(&batch, device))
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

pub fn run_adapt(args: &AdaptArgs) -> Result<()> {
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

    let config = args.adapt.config(&args.mode)?;
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

/// Loads a task file onto its base encoder (`model`, default all-MiniLM-L6-v2); a task
/// adapted from another base is refused.
pub fn load_task_model(
    task: &Path,
    model: Option<&Path>,
    device: &Device,
) -> Result<(SentenceEncoder, FewShotModel, TaskMeta)> {
    let bytes = std::fs::read(task).with_context(|| format!("{}: cannot read", task.display()))?;
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
pub fn prediction_json(labels: &[String], p: &[f32]) -> serde_json::Value {
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
pub fn run_predict_task(
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
