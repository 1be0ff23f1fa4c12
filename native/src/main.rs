//! `core-train`: the Polytask command line. This file only parses the command line and
//! hands each subcommand to its module in `commands/`; the work is in the library
//! (`polytask_native`, native/src/lib.rs).

mod commands;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use polytask_native::progress::Interrupted;
use polytask_native::trainer::TrainArgs;

use commands::{
    adapt, bench, contrastive, data, distill, embed, eval, export, fetch_model, fewshot, meta,
    predict, train,
};

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
    FetchModel(fetch_model::FetchModelArgs),
    /// Sentence embeddings (mean-pooled, L2-normalised) as JSON lines.
    Embed(embed::EmbedArgs),
    /// Speed of a training step (encoder + sentence and token heads, backward, AdamW) and
    /// of the encoder's forward pass, on synthetic batches; `bench/compare.sh` sets it
    /// beside PyTorch.
    #[command(alias = "bench-encoder")]
    BenchTrain(bench::BenchArgs),
    /// Multi-task training from a recipe (recipes/*.toml); the default recipe without one.
    Train(TrainArgs),
    /// Knowledge distillation: a recipe whose [distill] section names the teacher(s) (many
    /// single-task runs into one multi-task student, or a deep model into a shallow one).
    Distill(TrainArgs),
    /// Score a saved model on the dev or test split of its recipe's data.
    Eval(eval::EvalArgs),
    /// Predict every task of a saved model (--model), or an adapted task (--task), for
    /// some text (JSON lines).
    Predict(predict::PredictArgs),
    /// Write a model bundle for the browser and `predict --bundle`: weights (f32 or f16),
    /// config, tokenizer, task heads, adapted tasks and a manifest with sha256 sums.
    Export(export::ExportArgs),
    /// Teach a new task from a few labelled examples; writes a small task file.
    Adapt(adapt::AdaptArgs),
    /// First-order meta-learning (Reptile / FOMAML) of adapters or top blocks over
    /// few-shot episodes (CLINC150 meta-train domains by default).
    MetaTrain(meta::MetaTrainArgs),
    /// A few-shot-ready encoder: supervised contrastive pre-fine-tuning on the labelled
    /// sentences of other intent datasets (SNIPS, ATIS, CLINC150), the best kept by a
    /// held-out dataset's few-shot dev accuracy.
    ContrastiveTrain(contrastive::ContrastiveArgs),
    /// Few-shot accuracy of every method on the same seeded episodes (meta-test classes),
    /// and full-way K-shot on a whole test split.
    EvalFewshot(Box<fewshot::FewShotArgs>),
    /// Datasets: check a file.
    #[command(subcommand)]
    Data(data::DataCommand),
}

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<Interrupted>().is_some() => ExitCode::from(130),
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
        return train::run_default();
    };
    match command {
        Command::FetchModel(args) => fetch_model::run(args),
        Command::Embed(args) => embed::run(args),
        Command::BenchTrain(args) => bench::run(&args),
        Command::Train(args) => train::run(&args),
        Command::Distill(args) => distill::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::Predict(args) => predict::run(&args),
        Command::EvalFewshot(args) => fewshot::run(&args),
        Command::Adapt(args) => adapt::run(&args),
        Command::Export(args) => export::run(&args),
        Command::MetaTrain(args) => meta::run(&args),
        Command::ContrastiveTrain(args) => contrastive::run(&args),
        Command::Data(command) => data::run(command),
    }
}
