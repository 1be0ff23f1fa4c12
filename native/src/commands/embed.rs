//! `core-train embed`: mean-pooled (or CLS), L2-normalised sentence vectors as JSON lines,
//! or the cosine similarity of every pair.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};
use polytask_core::{Pooling, cosine};
use polytask_native::backend::{self, BackendChoice};
use polytask_native::input::input_texts;
use polytask_native::model_dir;

#[derive(clap::Args)]
pub struct EmbedArgs {
    /// Sentences; read one per line from stdin when none are given.
    sentences: Vec<String>,
    #[command(flatten)]
    model: ModelArgs,
    /// Pooling of token states.
    #[arg(long, value_enum, default_value_t = PoolingArg::Mean)]
    pooling: PoolingArg,
    /// Keep vectors unnormalised.
    #[arg(long)]
    no_normalize: bool,
    /// Print the cosine similarity of every pair instead of the vectors.
    #[arg(long)]
    cosine: bool,
    /// Sentences per forward pass.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
}

#[derive(clap::Args, Clone)]
pub struct ModelArgs {
    /// Model directory (default: all-MiniLM-L6-v2 in the cache, fetched if missing).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    /// Longest input in word pieces; longer text is truncated (with a notice).
    #[arg(long)]
    max_len: Option<usize>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum PoolingArg {
    Mean,
    Cls,
}

pub fn run(args: EmbedArgs) -> Result<()> {
    let EmbedArgs {
        sentences,
        model,
        pooling,
        no_normalize,
        cosine: pairs,
        batch_size,
    } = args;
    let sentences = input_texts(&sentences)?;
    if batch_size == 0 {
        bail!("--batch-size 0: must be at least 1");
    }
    let dir = model_dir::resolve(model.model.as_deref())?;
    let selected = backend::select(model.backend)?;
    let (mut encoder, _) = model_dir::load(&dir, &selected.device)?;
    eprintln!("backend: {}", selected.description);
    if let Some(max_len) = model.max_len {
        let positions = encoder.config.max_position_embeddings;
        if max_len > positions {
            bail!(
                "--max-len {max_len}: {} takes at most {positions} word pieces \
                     (max_position_embeddings in its config.json)",
                dir.display()
            );
        }
        encoder.tokenizer.set_max_len(max_len)?;
    }
    let pooling = match pooling {
        PoolingArg::Mean => Pooling::Mean,
        PoolingArg::Cls => Pooling::Cls,
    };
    for (i, s) in sentences.iter().enumerate() {
        if encoder.tokenizer.encode(s)?.truncated {
            eprintln!(
                "note: sentence {} is longer than {} word pieces and was truncated",
                i + 1,
                encoder.tokenizer.max_len()
            );
        }
    }
    let vectors = encoder.embed(
        &sentences,
        pooling,
        !no_normalize,
        batch_size,
        &selected.device,
    )?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if pairs {
        for i in 0..vectors.len() {
            for j in i + 1..vectors.len() {
                let line = serde_json::json!({
                    "a": sentences[i], "b": sentences[j],
                    "cosine": cosine(&vectors[i], &vectors[j]),
                });
                writeln!(out, "{line}")?;
            }
        }
    } else {
        for (text, v) in sentences.iter().zip(&vectors) {
            writeln!(out, "{}", serde_json::json!({"text": text, "embedding": v}))?;
        }
    }
    Ok(())
}
