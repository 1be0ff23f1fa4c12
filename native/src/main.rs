//! `core-train`: the Polytask command line.

mod adapt_cmd;
mod backend;
mod bench;
mod bundle;
mod corpus;
mod data_cmd;
mod data_fetch;
mod episode_data;
mod eval_cmd;
mod evaluate;
mod fetch;
mod fewshot_cmd;
#[cfg(test)]
mod fuzz;
mod meta_cmd;
mod model_dir;
mod output;
mod predict_cmd;
mod recipe;
mod run_dir;
mod train_cmd;

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use polytask_core::{Pooling, cosine};

use backend::BackendChoice;

#[derive(Parser)]
#[command(
    name = "core-train",
    version,
    about = "Polytask: multi-task and few-shot NLP on a shared BERT encoder"
)]
struct Cli {
    /// Without a command: train the default recipe (recipes/default.toml) end to end.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Download a Hugging Face model (config.json, tokenizer.json, model.safetensors).
    FetchModel {
        /// Hub model id.
        #[arg(default_value = fetch::DEFAULT_MODEL)]
        id: String,
        /// Target directory (default: the cache, $POLYTASK_CACHE or ~/.cache/polytask).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Sentence embeddings (mean-pooled, L2-normalised) as JSON lines.
    Embed {
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
    },
    /// Speed of a training step (encoder + sentence and token heads, backward, AdamW) and
    /// of the encoder's forward pass, on synthetic batches; `bench/compare.sh` sets it
    /// beside PyTorch.
    #[command(alias = "bench-encoder")]
    BenchTrain(bench::BenchArgs),
    /// Multi-task training from a recipe (recipes/*.toml); the default recipe without one.
    Train(train_cmd::TrainArgs),
    /// Score a saved model on the dev or test split of its recipe's data.
    Eval(eval_cmd::EvalArgs),
    /// Predict every task of a saved model (--model), or an adapted task (--task), for
    /// some text (JSON lines).
    Predict(predict_cmd::PredictArgs),
    /// Write a model bundle for the browser and `predict --bundle`: weights (f32 or f16),
    /// config, tokenizer, task heads, adapted tasks and a manifest with sha256 sums.
    Export(bundle::ExportArgs),
    /// Teach a new task from a few labelled examples; writes a small task file.
    Adapt(adapt_cmd::AdaptArgs),
    /// First-order meta-learning (Reptile / FOMAML) of adapters or top blocks over
    /// few-shot episodes (CLINC150 meta-train domains by default).
    MetaTrain(meta_cmd::MetaTrainArgs),
    /// Few-shot accuracy of every method on the same seeded episodes (meta-test classes),
    /// and full-way K-shot on a whole test split.
    EvalFewshot(fewshot_cmd::FewShotArgs),
    /// Datasets: check a file.
    #[command(subcommand)]
    Data(DataCommand),
}

#[derive(Subcommand)]
enum DataCommand {
    /// Validate a data file; every problem is listed as FILE:LINE: what is wrong.
    Check {
        /// The file (a directory for --format seq).
        file: PathBuf,
        #[arg(long, value_enum)]
        format: data_cmd::Format,
    },
    /// Fetch datasets (clinc150, snips, atis, conll2003, sst2, or all), each file checked
    /// against its pinned sha256.
    Fetch {
        /// Dataset names, or `all`.
        #[arg(required = true)]
        names: Vec<String>,
        /// Copy from this local mirror (same layout) instead of downloading from upstream
        /// (default: $POLYTASK_DATA_MIRROR when set).
        #[arg(long)]
        mirror: Option<PathBuf>,
        /// Target data directory (default: data/ in the cache, $POLYTASK_CACHE or
        /// ~/.cache/polytask).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
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

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<train_cmd::Interrupted>().is_some() => ExitCode::from(130),
        Err(e) => {
            // Multi-line errors (a list of data problems) print one problem per line.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A training step allocates and frees hundreds of tensor buffers of up to ~13 MB.
/// glibc's defaults serve those from fresh `mmap`s and hand freed memory back to the
/// kernel, so every step page-faults and zero-fills its buffers again (a sixth of a
/// training step's time in the profile in docs/RESULTS.md, "CPU speed"). Heap allocation
/// up to 32 MiB and a 1 GiB trim threshold keep freed buffers for reuse. 32 MiB is the
/// largest threshold glibc takes, and the word embeddings' gradient and AdamW moments
/// (30522 × 384 floats, 47 MB each) are above it: with `mmap` allowed at all, each of their
/// per-step buffers was a fresh mapping again (half of a step's page faults), so large
/// blocks come from the heap too (M_MMAP_MAX 0; glibc still maps when the heap can't grow).
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

fn run(cli: Cli) -> Result<()> {
    let Some(command) = cli.command else {
        eprintln!(
            "core-train: running the default recipe (recipes/default.toml): multi-task SNIPS \
             intent + slots and CoNLL-2003 NER on subsets, about 10 minutes on 2 CPU cores.\n\
             Full recipes: core-train train recipes/multitask.toml (and conll2003.toml, snips.toml, \
             clinc150.toml for single-task baselines). core-train --help lists every command."
        );
        let args = train_cmd::TrainArgs {
            recipe: None,
            out: None,
            resume: run_dir::resolve(std::path::Path::new("runs/default/last")).is_some(),
            backend: BackendChoice::Auto,
            data: train_cmd::DataArgs {
                data_dir: None,
                mirror: None,
            },
            max_steps: None,
            epochs: None,
            seed: None,
            log_every: 10,
        };
        return train_cmd::run(&args);
    };
    match command {
        Command::FetchModel { id, dir } => {
            let dir = dir.unwrap_or_else(|| fetch::default_model_dir(&id));
            fetch::fetch_model(&id, &dir)?;
            Ok(())
        }
        Command::Embed {
            sentences,
            model,
            pooling,
            no_normalize,
            cosine: pairs,
            batch_size,
        } => {
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
        Command::BenchTrain(args) => bench::run(&args),
        Command::Train(args) => train_cmd::run(&args),
        Command::Eval(args) => eval_cmd::run(&args),
        Command::Predict(args) => predict_cmd::run(&args),
        Command::EvalFewshot(args) => fewshot_cmd::run(&args),
        Command::Adapt(args) => adapt_cmd::run_adapt(&args),
        Command::Export(args) => bundle::export(&args),
        Command::MetaTrain(args) => meta_cmd::run(&args),
        Command::Data(DataCommand::Check { file, format }) => data_cmd::check(&file, format),
        Command::Data(DataCommand::Fetch { names, mirror, dir }) => {
            data_fetch::run(&names, mirror, dir)
        }
    }
}

/// The texts a command works on: its arguments, or else one per line of stdin. The one
/// rule for every command: there must be at least one, and none may be empty or only
/// white space (the error names the argument or line).
pub(crate) fn input_texts(args: &[String]) -> Result<Vec<String>> {
    let (texts, place) = if args.is_empty() {
        let mut lines = Vec::new();
        for (n, line) in std::io::stdin().lock().lines().enumerate() {
            // Every line is a text, so output line i answers input line i.
            lines.push(line.with_context(|| format!("stdin line {}: not UTF-8 text", n + 1))?);
        }
        (lines, "stdin line")
    } else {
        (args.to_vec(), "argument")
    };
    if texts.is_empty() {
        bail!("no text: give it as arguments or one per line on stdin");
    }
    check_texts(&texts, place)?;
    Ok(texts)
}

/// Fails on the first text that is empty or only white space, naming it as `place N`.
pub(crate) fn check_texts(texts: &[String], place: &str) -> Result<()> {
    if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
        bail!(
            "{place} {}: the text is empty or only white space; every text needs at least one word",
            i + 1
        );
    }
    Ok(())
}
