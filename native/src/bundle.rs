//! Model bundles: everything a browser (or `predict --bundle`) needs in one directory.
//!
//! ```text
//! DIR/manifest.json        format version, dtype, every file's size and sha256
//! DIR/config.json          the encoder's configuration
//! DIR/tokenizer.json       its tokenizer
//! DIR/model.safetensors    encoder weights (+ multi-task heads, + meta-learned adapters);
//!                          F16 with --dtype f16, widened back to F32 on load
//! DIR/tasks.json           multi-task heads and label sets (when exported from a run)
//! DIR/tasks/NAME.safetensors  adapted few-shot tasks (core-train adapt), F32
//! ```
//!
//! `core-train export` writes it atomically; `predict --bundle` checks every file against
//! the manifest before using it.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use polytask_core::io::bundle::{BUNDLE_FORMAT, FileEntry, Manifest};
use polytask_core::io::checkpoint::{FloatWidth, convert_floats};
use polytask_core::io::task_file::{load_task, read_task_meta};
use polytask_core::model::multitask::{MultiTaskModel, MultiTaskSpec};
use polytask_core::{ModelFiles, SentenceEncoder, Tokenizer};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::adapt_cmd::{inputs, prediction_json};
use crate::backend::{self, BackendChoice};
use crate::{model_dir, output, run_dir};

#[derive(clap::Args, Clone, Debug)]
pub struct ExportArgs {
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// A model directory, a training run's best/ (its task heads are included) or a
    /// meta-train output (default: all-MiniLM-L6-v2).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Adapted task files (core-train adapt) to include; they must come from this model.
    #[arg(long = "task")]
    pub tasks: Vec<PathBuf>,
    /// How to store the encoder weights.
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16"])]
    pub dtype: String,
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))
}

pub fn export(args: &ExportArgs) -> Result<()> {
    output::check_dir_replaceable(&args.out)?;
    let dir = model_dir::resolve(args.model.as_deref())?;
    let dir = run_dir::resolve(&dir).unwrap_or(dir);
    let weights = read(&dir.join("model.safetensors"))?;
    let source = dir.join("model.safetensors").display().to_string();
    let id = model_dir::WeightsId::of(&weights, &source)?;
    // A bundle that every reader would refuse is not written.
    polytask_core::io::checkpoint::check_finite(&weights, &source)?;
    let base = id.tensors.clone();
    let width = if args.dtype == "f16" {
        FloatWidth::F16
    } else {
        FloatWidth::F32
    };
    let weights = convert_floats(&weights, width, &source)?;
    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("config.json".into(), read(&dir.join("config.json"))?),
        ("tokenizer.json".into(), read(&dir.join("tokenizer.json"))?),
        ("model.safetensors".into(), weights),
    ];
    let multitask = dir.join("tasks.json").is_file();
    if multitask {
        files.push(("tasks.json".into(), read(&dir.join("tasks.json"))?));
    }
    let mut task_names = Vec::new();
    for path in &args.tasks {
        let bytes = read(path)?;
        let meta = read_task_meta(&bytes, &path.display().to_string())?;
        if !id.matches(&meta.base) {
            bail!(
                "{}: adapted from the encoder with weights {}, not from {} ({base})",
                path.display(),
                meta.base,
                dir.display()
            );
        }
        let name = meta
            .name
            .chars()
            .map(|c| {
                if c.is_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect::<String>();
        if task_names.contains(&name) {
            bail!("{}: a second task named {name:?}", path.display());
        }
        files.push((format!("tasks/{name}.safetensors"), bytes));
        task_names.push(name);
    }
    let manifest = Manifest {
        format: BUNDLE_FORMAT.into(),
        dtype: args.dtype.clone(),
        base,
        multitask,
        tasks: task_names,
        files: files
            .iter()
            .map(|(name, bytes)| FileEntry {
                name: name.clone(),
                bytes: bytes.len() as u64,
                sha256: sha256_hex(bytes),
            })
            .collect(),
    };
    let manifest_json = serde_json::to_vec_pretty(&manifest)?;
    let mut all: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    all.push(("manifest.json", &manifest_json));
    output::write_dir_atomic(&args.out, &all)?;
    let total = manifest.total_bytes();
    eprintln!(
        "wrote {} ({} files, {:.1} MiB, weights {})",
        args.out.display(),
        manifest.files.len() + 1,
        total as f64 / (1024.0 * 1024.0),
        args.dtype
    );
    Ok(())
}

/// A bundle's files, each checked against the manifest.
pub struct Bundle {
    pub manifest: Manifest,
    pub dir: PathBuf,
}

impl Bundle {
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join("manifest.json");
        let manifest = Manifest::parse(&read(&path)?, &path.display().to_string())?;
        Ok(Bundle {
            manifest,
            dir: dir.to_path_buf(),
        })
    }

    /// The bytes of `name`, verified against the manifest's size and sha256.
    pub fn file(&self, name: &str) -> Result<Vec<u8>> {
        let entry = self
            .manifest
            .files
            .iter()
            .find(|f| f.name == name)
            .with_context(|| format!("{}: the manifest lists no {name}", self.dir.display()))?;
        let path = self.dir.join(name);
        let bytes = read(&path)?;
        if bytes.len() as u64 != entry.bytes {
            bail!(
                "{}: {} bytes, the manifest says {} (incomplete download?)",
                path.display(),
                bytes.len(),
                entry.bytes
            );
        }
        let sum = sha256_hex(&bytes);
        if sum != entry.sha256 {
            bail!(
                "{}: sha256 {sum} does not match the manifest's {}",
                path.display(),
                entry.sha256
            );
        }
        Ok(bytes)
    }
}

/// `predict --bundle`: every multi-task head and every adapted task, per text.
pub fn predict(dir: &Path, texts: &[String], choice: BackendChoice) -> Result<()> {
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
        for (i, v) in crate::predict_cmd::multitask_predictions(model, tok, texts, device)?
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
