//! `core-train bench-encoder`: encoder throughput, forward and forward+backward, on
//! synthetic batches of a fixed shape (default 32 × 64 tokens), for each backend.
//! `bench/torch_encoder.py` runs the same work in PyTorch for a side-by-side comparison.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use polytask_core::BertInput;
use polytask_core::pooling::mean_pool;

use crate::backend::{self, BackendChoice};
use crate::model_dir;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Model directory (default: all-MiniLM-L6-v2 in the cache, fetched if missing).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Backends to measure, comma-separated (default: cpu, plus wgpu where a GPU exists).
    #[arg(long, value_delimiter = ',')]
    backends: Vec<BackendChoice>,
    /// Sentences per batch.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Tokens per sentence.
    #[arg(long, default_value_t = 64)]
    seq: usize,
    /// Timed steps per measurement.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Untimed steps first (shader compilation, autotuning, caches).
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Also write the figures as JSON lines to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// A `--json` file this command wrote (JSON lines with `ms_per_step`).
fn is_bench_file(bytes: &[u8]) -> bool {
    crate::output::is_json_lines_with(bytes, "ms_per_step")
}

struct Figure {
    backend: String,
    mode: &'static str,
    ms_per_step: f64,
    tokens_per_s: f64,
}

/// Deterministic pseudo-random ids (a 64-bit LCG), so every backend sees the same batch.
fn synthetic_input(batch: usize, seq: usize, vocab: usize, device: &Device) -> BertInput {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let ids: Vec<i64> = (0..batch * seq)
        .map(|i| {
            if i % seq == 0 {
                return 101; // [CLS]
            }
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Ordinary word pieces: above the special tokens of a BERT vocabulary.
            let low = 1000.min(vocab / 2);
            (low + (state >> 33) as usize % (vocab - low)) as i64
        })
        .collect();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [batch, seq]), device);
    BertInput {
        token_type_ids: ids.zeros_like(),
        attention_mask: ids.ones_like(),
        shapes: None,
        input_ids: ids,
    }
}

pub fn run(args: &BenchArgs) -> Result<()> {
    let dir = model_dir::resolve(args.model.as_deref())?;
    let choices = if args.backends.is_empty() {
        let mut c = vec![BackendChoice::Cpu];
        if backend::has_gpu() {
            c.push(BackendChoice::Wgpu);
        }
        c
    } else {
        args.backends.clone()
    };
    if args.batch == 0 || args.steps == 0 {
        bail!(
            "--batch {} --steps {}: both must be at least 1",
            args.batch,
            args.steps
        );
    }
    if let Some(path) = &args.json {
        // Refused before minutes of measuring, not after.
        crate::output::check_file_replaceable(path, is_bench_file)?;
    }
    let tokens = (args.batch * args.seq) as f64;
    let mut figures = Vec::new();
    for choice in choices {
        let selected = backend::select(choice)?;
        eprintln!("measuring on {}", selected.description);
        let (encoder, _) = model_dir::load(&dir, &selected.device)?;
        let vocab = encoder.config.vocab_size;
        let positions = encoder.config.max_position_embeddings;
        if !(1..=positions).contains(&args.seq) {
            bail!(
                "--seq {}: {} takes 1 to {positions} tokens per sentence \
                 (max_position_embeddings in its config.json)",
                args.seq,
                dir.display()
            );
        }

        // Forward only, no autodiff: inference.
        let device = selected.device.clone();
        let input = synthetic_input(args.batch, args.seq, vocab, &device);
        let step = |model: &polytask_core::BertModel, input: &BertInput| {
            let out = model.forward(input.clone());
            mean_pool(out.last_hidden_state, out.mask)
                .sum()
                .into_scalar::<f32>()
        };
        let ms = time_steps(args, || {
            step(&encoder.model, &input);
        });
        figures.push(Figure {
            backend: selected.description.clone(),
            mode: "forward",
            ms_per_step: ms,
            tokens_per_s: tokens / ms * 1e3,
        });

        // Forward + backward on an autodiff device (dropout on, as in training).
        let train_device = selected.device.clone().autodiff();
        let model = encoder.model.clone().fork(&train_device).train();
        let input = synthetic_input(args.batch, args.seq, vocab, &train_device);
        let ms = time_steps(args, || {
            let out = model.forward(input.clone());
            let loss = mean_pool(out.last_hidden_state, out.mask)
                .powf_scalar(2.0)
                .mean();
            let grads = loss.backward();
            drop(grads);
            train_device.sync().expect("device sync");
        });
        figures.push(Figure {
            backend: selected.description.clone(),
            mode: "forward+backward",
            ms_per_step: ms,
            tokens_per_s: tokens / ms * 1e3,
        });
    }

    println!(
        "encoder {} · batch {} × {} tokens · {} timed steps after {} warm-up",
        dir.display(),
        args.batch,
        args.seq,
        args.steps,
        args.warmup
    );
    println!(
        "{:<56} {:<17} {:>10} {:>12}",
        "backend", "mode", "ms/step", "tokens/s"
    );
    for f in &figures {
        println!(
            "{:<56} {:<17} {:>10.1} {:>12.0}",
            f.backend, f.mode, f.ms_per_step, f.tokens_per_s
        );
    }
    if let Some(path) = &args.json {
        let lines: Vec<String> = figures
            .iter()
            .map(|f| {
                serde_json::json!({"impl": "burn", "backend": f.backend, "mode": f.mode,
                    "batch": args.batch, "seq": args.seq, "ms_per_step": f.ms_per_step,
                    "tokens_per_s": f.tokens_per_s})
                .to_string()
            })
            .collect();
        crate::output::write_file_atomic(
            path,
            (lines.join("\n") + "\n").as_bytes(),
            is_bench_file,
        )?;
    }
    Ok(())
}

/// Runs `warmup` untimed then `steps` timed calls; returns the mean ms per step.
fn time_steps(args: &BenchArgs, mut f: impl FnMut()) -> f64 {
    for _ in 0..args.warmup {
        f();
    }
    let start = Instant::now();
    for _ in 0..args.steps.max(1) {
        f();
    }
    start.elapsed().as_secs_f64() * 1e3 / args.steps.max(1) as f64
}
