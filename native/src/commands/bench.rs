//! `core-train bench-train`: the speed of what `core-train train` does per step, and of the
//! encoder's inference pass, on synthetic batches of fixed shapes (default 32 × 64 and
//! 32 × 128 tokens), for each backend.
//!
//! Two rows per backend and shape:
//! - `forward`: the encoder alone, no autodiff, mean-pooled (what `embed`, `predict`,
//!   evaluation and the frozen part of adaptation run);
//! - `train step`: exactly [`polytask_core::train::step::train_step`], which the training loop
//!   calls: all-MiniLM-L6-v2 with a sentence head (150 classes, as CLINC150) and a token
//!   head (9 tags, as CoNLL-2003) on one batch that carries both targets, the joint loss
//!   `(ℓ_sent + ℓ_tok) / 2`, backward, gradient clipping at norm 1 and the AdamW update
//!   (weight decay 0.01, none on biases and LayerNorm), dropout on.
//!
//! `bench/torch_train.py` runs the same work in PyTorch (the same ids and targets), and
//! `bench/compare.sh` runs both, interleaved, and prints the ratios.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use burn::module::Module;
use burn::tensor::Device;
use polytask_core::Pooling;
use polytask_core::data::features::Encoded;
use polytask_core::data::tokenizer::{Batch, Encoding};
use polytask_core::eval::tagging::TagDecoding;
use polytask_core::model::multitask::{MultiTaskModel, MultiTaskSpec};
use polytask_core::model::pooling::mean_pool;
use polytask_core::model::task::{TaskKind, TaskSpec};
use polytask_core::train::loss::LossWeighting;
use polytask_core::train::optim::{AdamW, AdamWConfig};
use polytask_core::train::step::train_step;
use polytask_core::{BertInput, BertModel};

use polytask_native::backend::{self, BackendChoice};
use polytask_native::{model_dir, output};

/// Classes of the synthetic sentence task (CLINC150's intents) and tags of the token task
/// (CoNLL-2003's IOB2 set).
const SENTENCE_CLASSES: usize = 150;
const TOKEN_TAGS: usize = 9;

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
    /// Tokens per sentence, comma-separated: one set of rows per length.
    #[arg(long, value_delimiter = ',', default_values_t = [64, 128])]
    seq: Vec<usize>,
    /// Rows to run, comma-separated: forward, train.
    #[arg(long, value_delimiter = ',', default_values_t = [Mode::Forward, Mode::Train])]
    modes: Vec<Mode>,
    /// Timed steps per row (the median is reported, with the fastest and slowest).
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Untimed steps first (shader compilation, autotuning, caches).
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Also write the figures as JSON lines to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// The encoder's inference pass.
    Forward,
    /// One training step of `core-train train`.
    Train,
}

/// The value clap parses (and shows as the default).
impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Forward => "forward",
            Mode::Train => "train",
        })
    }
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Forward => "forward",
            Mode::Train => "train step",
        }
    }
}

/// A `--json` file this command wrote (JSON lines with `ms_per_step`).
fn is_bench_file(bytes: &[u8]) -> bool {
    output::is_json_lines_with(bytes, "ms_per_step")
}

struct Figure {
    backend: String,
    engine: &'static str,
    mode: Mode,
    seq: usize,
    times: Timings,
}

/// Per-step wall times of one row, in milliseconds.
struct Timings {
    median: f64,
    min: f64,
    max: f64,
}

/// Deterministic pseudo-random word pieces (a 64-bit LCG, the same in
/// `bench/torch_train.py`): `[CLS]` then `seq − 1` ordinary pieces per row, row after row.
pub fn synthetic_ids(batch: usize, seq: usize, vocab: usize) -> Vec<u32> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    // Ordinary word pieces: above the special tokens of a BERT vocabulary.
    let low = 1000.min(vocab / 2);
    (0..batch * seq)
        .map(|i| {
            if i % seq == 0 {
                return 101; // [CLS]
            }
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (low + (state >> 33) as usize % (vocab - low)) as u32
        })
        .collect()
}

/// The training examples of the synthetic batch: every piece after `[CLS]` is a word of
/// its own with tag `id % 9`, and row `r` has class `r % 150`.
fn synthetic_examples(batch: usize, seq: usize, vocab: usize) -> Vec<Encoded> {
    let ids = synthetic_ids(batch, seq, vocab);
    ids.chunks(seq)
        .enumerate()
        .map(|(row, ids)| {
            let words = seq - 1;
            Encoded {
                encoding: Encoding {
                    ids: ids.to_vec(),
                    type_ids: vec![0; seq],
                    word_ids: std::iter::once(None)
                        .chain((0..words as u32).map(Some))
                        .collect(),
                    offsets: vec![(0, 0); seq],
                    shapes: vec![0; seq],
                    truncated: false,
                },
                sentence_label: Some(row % SENTENCE_CLASSES),
                word_tags: Some(
                    ids[1..]
                        .iter()
                        .map(|&id| id as usize % TOKEN_TAGS)
                        .collect(),
                ),
                first_pieces: (1..seq).map(Some).collect(),
            }
        })
        .collect()
}

fn bench_spec() -> MultiTaskSpec {
    let task = |name: &str, kind, n: usize| TaskSpec {
        name: name.into(),
        kind,
        labels: (0..n).map(|i| format!("{name}{i}")).collect(),
        weight: 1.0,
        out_of_scope: None,
        out_of_scope_threshold: None,
    };
    // A recipe's defaults: mean pooling, head dropout 0.1, static weights λ = 1.
    MultiTaskSpec {
        tasks: vec![
            task("intent", TaskKind::Sentence, SENTENCE_CLASSES),
            task("entities", TaskKind::Token, TOKEN_TAGS),
        ],
        pooling: Pooling::Mean,
        head_dropout: 0.1,
        loss_weighting: LossWeighting::Static,
        decoding: TagDecoding::default(),
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
    if args.seq.is_empty() || args.modes.is_empty() {
        bail!("--seq and --modes each need at least one value");
    }
    if let Some(path) = &args.json {
        // Refused before minutes of measuring, not after.
        output::check_file_replaceable(path, is_bench_file)?;
    }
    let cpu = cpu_model();
    eprintln!("cpu: {cpu}");
    let mut figures = Vec::new();
    for choice in choices {
        let selected = backend::select(choice)?;
        eprintln!("measuring on {}", selected.description);
        let (encoder, _) = model_dir::load(&dir, &selected.device)?;
        let vocab = encoder.config.vocab_size;
        let positions = encoder.config.max_position_embeddings;
        if let Some(seq) = args.seq.iter().find(|s| !(2..=positions).contains(*s)) {
            bail!(
                "--seq {seq}: {} takes 2 to {positions} tokens per sentence \
                 (max_position_embeddings in its config.json)",
                dir.display()
            );
        }
        let pad = encoder.tokenizer.pad_id();
        for &seq in &args.seq {
            for &mode in &args.modes {
                let times = match mode {
                    Mode::Forward => {
                        forward_row(args, &encoder.model, seq, vocab, pad, &selected.device)?
                    }
                    Mode::Train => {
                        train_row(args, &encoder.model, seq, vocab, pad, &selected.device)?
                    }
                };
                eprintln!(
                    "  {} {}×{seq}: {:.1} ms/step",
                    mode.label(),
                    args.batch,
                    times.median
                );
                figures.push(Figure {
                    backend: selected.description.clone(),
                    engine: selected.engine,
                    mode,
                    seq,
                    times,
                });
            }
        }
    }

    println!(
        "{} · {cpu} · batch {} · median of {} timed steps after {} warm-up",
        dir.display(),
        args.batch,
        args.steps,
        args.warmup
    );
    println!(
        "{:<40} {:<11} {:>7} {:>10} {:>17} {:>10}",
        "backend", "mode", "tokens", "ms/step", "(min–max)", "tokens/s"
    );
    for f in &figures {
        let tokens = (args.batch * f.seq) as f64;
        println!(
            "{:<40} {:<11} {:>7} {:>10.1} {:>17} {:>10.0}",
            f.backend,
            f.mode.label(),
            format!("{}×{}", args.batch, f.seq),
            f.times.median,
            format!("({:.1}–{:.1})", f.times.min, f.times.max),
            tokens / f.times.median * 1e3
        );
    }
    if let Some(path) = &args.json {
        let lines: Vec<String> = figures
            .iter()
            .map(|f| {
                let tokens = (args.batch * f.seq) as f64;
                serde_json::json!({"impl": "polytask", "backend": f.backend, "engine": f.engine,
                    "mode": f.mode.label(), "batch": args.batch, "seq": f.seq, "cpu": cpu,
                    "ms_per_step": f.times.median, "ms_min": f.times.min,
                    "ms_max": f.times.max, "steps": args.steps,
                    "tokens_per_s": tokens / f.times.median * 1e3,
                    "examples_per_s": args.batch as f64 / f.times.median * 1e3})
                .to_string()
            })
            .collect();
        output::write_file_atomic(path, (lines.join("\n") + "\n").as_bytes(), is_bench_file)?;
    }
    Ok(())
}

/// The encoder's inference pass over the synthetic batch, read back to the host.
fn forward_row(
    args: &BenchArgs,
    model: &BertModel,
    seq: usize,
    vocab: usize,
    pad: u32,
    device: &Device,
) -> Result<Timings> {
    let examples = synthetic_examples(args.batch, seq, vocab);
    let encodings: Vec<Encoding> = examples.into_iter().map(|e| e.encoding).collect();
    let input = BertInput::from_batch(&Batch::pad(&encodings, pad)?, device);
    Ok(time_steps(args, || {
        let out = model.forward(input.clone());
        mean_pool(out.last_hidden_state, out.mask)
            .sum()
            .into_scalar::<f32>();
    }))
}

/// [`train_step`] on the synthetic batch, from the pretrained encoder and fresh heads.
fn train_row(
    args: &BenchArgs,
    bert: &BertModel,
    seq: usize,
    vocab: usize,
    pad: u32,
    device: &Device,
) -> Result<Timings> {
    let train_device = device.clone().autodiff();
    device.seed(0);
    let mut model = Some(
        MultiTaskModel::new(bert.clone(), bench_spec(), device)?
            .fork(&train_device)
            .train(),
    );
    let mut optimizer = AdamW::new(AdamWConfig::default());
    let examples = synthetic_examples(args.batch, seq, vocab);
    let items: Vec<&Encoded> = examples.iter().collect();
    let mut failure = None;
    let times = time_steps(args, || {
        if failure.is_some() {
            return;
        }
        let m = model.take().expect("put back after each step");
        train_device.seed(optimizer.step);
        match train_step(m, &mut optimizer, &items, &[0, 1], 2e-5, pad, &train_device) {
            Ok((m, Ok(_))) => model = Some(m),
            Ok((m, Err(nf))) => {
                model = Some(m);
                failure = Some(anyhow::anyhow!("non-finite loss {:?}", nf.per_task));
            }
            Err(e) => failure = Some(e.into()),
        }
    });
    if let Some(e) = failure {
        return Err(e.context("bench-train: the training step failed"));
    }
    Ok(times)
}

/// Runs `warmup` untimed then `steps` timed calls; each call's time, summarised.
fn time_steps(args: &BenchArgs, mut f: impl FnMut()) -> Timings {
    for _ in 0..args.warmup {
        f();
    }
    let mut ms: Vec<f64> = (0..args.steps)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    let median = if n % 2 == 1 {
        ms[n / 2]
    } else {
        (ms[n / 2 - 1] + ms[n / 2]) / 2.0
    };
    Timings {
        median,
        min: ms[0],
        max: ms[n - 1],
    }
}

/// The CPU's model name (`model name` in /proc/cpuinfo), printed with every figure.
pub fn cpu_model() -> String {
    let name = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let threads = backend::cpu_threads();
    format!("{name}, {threads} threads")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_batch_is_the_documented_one() {
        let ids = synthetic_ids(2, 4, 30522);
        assert_eq!(ids[0], 101);
        assert_eq!(ids[4], 101);
        assert!(
            ids.iter()
                .enumerate()
                .all(|(i, &id)| i % 4 == 0 || id >= 1000)
        );
        // The LCG's first draw, as bench/torch_train.py computes it.
        let state = 0x9E37_79B9_7F4A_7C15u64
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        assert_eq!(ids[1] as u64, 1000 + (state >> 33) % (30522 - 1000));
        let ex = synthetic_examples(2, 4, 30522);
        assert_eq!(ex[1].sentence_label, Some(1));
        assert_eq!(ex[0].first_pieces, vec![Some(1), Some(2), Some(3)]);
        assert_eq!(
            ex[0].word_tags.as_deref(),
            Some(
                &[
                    ids[1] as usize % 9,
                    ids[2] as usize % 9,
                    ids[3] as usize % 9
                ][..]
            )
        );
    }
}
