//! `core-train train [RECIPE]`: multi-task training, the loop a newcomer reads in one
//! sitting.
//!
//! 1. read the recipe, fetch the model and datasets if missing, parse and check the data;
//! 2. build label sets from the training splits, tokenize everything once;
//! 3. each step: the sampler picks a corpus (MT-DNN style), its cursor gives a batch, one
//!    AdamW step on the joint loss of the corpus's tasks;
//! 4. evaluate on dev each epoch (or every `eval_every` steps), keep the best checkpoint by
//!    the recipe's metric, write metrics as JSON lines;
//! 5. at the end, score the best checkpoint on test and print a table.
//!
//! Output directory (`runs/NAME` by default):
//! `last/` (resumable: weights, optimizer, sampler and step), `best/` (weights only),
//! `metrics.jsonl`, `results.json`. `--resume` continues `last/` exactly; Ctrl-C saves
//! `last/` and exits; a non-finite loss stops the run and keeps the last good checkpoint.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use polytask_core::Tokenizer;
use polytask_core::data::features::Encoded;
use polytask_core::data::sampler::{BatchCursor, TaskSampler};
use polytask_core::model::multitask::{MultiTaskModel, MultiTaskSpec};
use polytask_core::model::task::{TaskKind, TaskSpec, label_set, validate_tasks};
use polytask_core::train::loss::LossWeighting;
use polytask_core::train::optim::{AdamW, AdamWConfig, linear_schedule};
use polytask_core::train::step::train_step;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::backend::{self, BackendChoice};
use crate::corpus::{self, Source};
use crate::evaluate;
use crate::recipe::{DatasetName, Recipe};
use crate::{data_fetch, model_dir};
use crate::{output, run_dir};

#[derive(clap::Args, Clone, Debug)]
pub struct TrainArgs {
    /// Recipe file (default: the built-in default recipe, recipes/default.toml).
    pub recipe: Option<PathBuf>,
    /// Output directory (default: runs/NAME).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in OUT/last exactly where it stopped.
    #[arg(long)]
    pub resume: bool,
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    #[command(flatten)]
    pub data: DataArgs,
    /// Stop after this many steps in all (saving OUT/last), e.g. to split a run in parts.
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Override the recipe's train.epochs (e.g. a 1-epoch run of a full recipe on a CPU);
    /// the checkpoint records the recipe as run.
    #[arg(long)]
    pub epochs: Option<f64>,
    /// Override the recipe's train.seed (e.g. to measure the spread over seeds); the
    /// checkpoint records the recipe as run.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write a training line to metrics.jsonl every this many steps.
    #[arg(long, default_value_t = 10)]
    pub log_every: u64,
}

#[derive(clap::Args, Clone, Debug)]
pub struct DataArgs {
    /// Where datasets live (default: the cache's data folder).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Copy datasets from this local mirror instead of downloading
    /// (default: $POLYTASK_DATA_MIRROR).
    #[arg(long)]
    pub mirror: Option<PathBuf>,
}

/// A corpus ready for training: its tasks and its tokenized splits.
pub struct EncodedSource {
    pub tasks: Vec<usize>,
    pub train: Vec<Encoded>,
    pub dev: Vec<Encoded>,
    pub test: Vec<Encoded>,
}

/// What survives a restart besides weights and optimizer.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainState {
    step: u64,
    total_steps: u64,
    sampler: TaskSampler,
    cursors: Vec<BatchCursor>,
    /// Best selection metric so far and its step.
    best: Option<(f64, u64)>,
    /// Seconds spent training before this process.
    elapsed_s: f64,
}

/// Reads the recipe's corpora (fetching datasets if needed) and checks that each split
/// carries what its tasks read.
pub fn load_sources(recipe: &Recipe, data: &DataArgs) -> Result<Vec<Source>> {
    let data_dir = data
        .data_dir
        .clone()
        .unwrap_or_else(data_fetch::default_data_dir);
    let mirror = data.mirror.clone().or_else(data_fetch::mirror_from_env);
    let mut keys: Vec<String> = Vec::new();
    let mut sources: Vec<Source> = Vec::new();
    for (i, task) in recipe.tasks.iter().enumerate() {
        let key = corpus::corpus_key(task);
        if let Some(k) = keys.iter().position(|k| *k == key) {
            sources[k].tasks.push(i);
            continue;
        }
        let dir = if task.dataset == DatasetName::Jsonl {
            PathBuf::new()
        } else {
            data_fetch::ensure_dataset(task.dataset.as_str(), &data_dir, mirror.as_deref())?
        };
        let splits = corpus::load_splits(task, &dir)?;
        keys.push(key);
        sources.push(Source {
            tasks: vec![i],
            splits,
        });
    }
    let seed = recipe.train.seed;
    for (k, source) in sources.iter_mut().enumerate() {
        // Tasks sharing a corpus share its subset: the smallest limit any of them sets.
        let limit = |f: fn(&crate::recipe::TaskSection) -> usize| {
            source
                .tasks
                .iter()
                .map(|&t| f(&recipe.tasks[t]))
                .filter(|&n| n > 0)
                .min()
                .unwrap_or(0)
        };
        let (max_train, max_eval) = (limit(|t| t.max_train), limit(|t| t.max_eval));
        let s = std::mem::take(&mut source.splits);
        source.splits = corpus::Splits {
            train: corpus::subset(s.train, max_train, seed ^ (k as u64 + 1)),
            dev: corpus::subset(s.dev, max_eval, seed ^ (k as u64 + 101)),
            test: corpus::subset(s.test, max_eval, seed ^ (k as u64 + 201)),
        };
        for &t in &source.tasks {
            let task = &recipe.tasks[t];
            if source.splits.train.is_empty() {
                bail!("task {:?}: no training examples", task.name);
            }
            let want_label = corpus::reads_label(task, &source.splits.train);
            corpus::check_columns(task, want_label, &source.splits.train, "train")?;
            corpus::check_columns(task, want_label, &source.splits.dev, "dev")?;
            corpus::check_columns(task, want_label, &source.splits.test, "test")?;
        }
    }
    Ok(sources)
}

/// Task specs with label sets built from the training splits.
pub fn build_spec(recipe: &Recipe, sources: &[Source]) -> Result<MultiTaskSpec> {
    let mut tasks: Vec<Option<TaskSpec>> = vec![None; recipe.tasks.len()];
    for source in sources {
        for &t in &source.tasks {
            let section = &recipe.tasks[t];
            let (kind, labels) = if corpus::reads_label(section, &source.splits.train) {
                let labels = source
                    .splits
                    .train
                    .iter()
                    .filter_map(|e| e.label.as_deref());
                (TaskKind::Sentence, label_set(labels, TaskKind::Sentence))
            } else {
                let tags = source
                    .splits
                    .train
                    .iter()
                    .filter_map(|e| e.tags.as_ref())
                    .flatten()
                    .map(String::as_str);
                (TaskKind::Token, label_set(tags, TaskKind::Token))
            };
            let out_of_scope = (section.dataset == DatasetName::Clinc150 && section.include_oos)
                .then(|| "oos".to_string());
            tasks[t] = Some(TaskSpec {
                name: section.name.clone(),
                kind,
                labels,
                weight: section.weight,
                out_of_scope,
                out_of_scope_threshold: None,
            });
        }
    }
    let tasks: Vec<TaskSpec> = tasks
        .into_iter()
        .map(|t| t.expect("every task has a source"))
        .collect();
    validate_tasks(&tasks)?;
    Ok(MultiTaskSpec {
        tasks,
        pooling: recipe.model.pooling,
        head_dropout: recipe.model.head_dropout,
        loss_weighting: recipe.train.loss_weighting,
        decoding: Default::default(),
    })
}

/// Tokenizes every split of every corpus.
pub fn encode_sources(
    sources: &[Source],
    spec: &MultiTaskSpec,
    tokenizer: &Tokenizer,
) -> Result<Vec<EncodedSource>> {
    sources
        .iter()
        .map(|s| {
            let enc =
                |ex: &[corpus::Example]| evaluate::encode(tokenizer, ex, &s.tasks, &spec.tasks);
            Ok(EncodedSource {
                tasks: s.tasks.clone(),
                train: enc(&s.splits.train)?,
                dev: enc(&s.splits.dev)?,
                test: enc(&s.splits.test)?,
            })
        })
        .collect()
}

/// Scores `model` on the dev or test split of every corpus.
pub fn score_split(
    model: &MultiTaskModel,
    sources: &[EncodedSource],
    test: bool,
    batch_size: usize,
    pad_id: u32,
    device: &Device,
) -> Result<BTreeMap<String, Value>> {
    let mut all = BTreeMap::new();
    for s in sources {
        let items = if test { &s.test } else { &s.dev };
        if items.is_empty() {
            continue;
        }
        all.extend(evaluate::score(
            model, items, &s.tasks, batch_size, pad_id, device,
        )?);
    }
    Ok(all)
}

/// Fails before step 1 unless `select` (`mean` or `TASK.METRIC`) names a value that dev
/// scoring produces: scores two dev examples of each corpus and looks it up, so the check
/// can never disagree with the real evaluations.
fn check_select_metric(
    model: &MultiTaskModel,
    sources: &[EncodedSource],
    select: &str,
    pad_id: u32,
    device: &Device,
) -> Result<()> {
    let probe: Vec<EncodedSource> = sources
        .iter()
        .map(|s| EncodedSource {
            tasks: s.tasks.clone(),
            train: Vec::new(),
            dev: s.dev.iter().take(2).cloned().collect(),
            test: Vec::new(),
        })
        .collect();
    let scores = score_split(model, &probe, false, 2, pad_id, device)?;
    if evaluate::select(&scores, select).is_some() {
        return Ok(());
    }
    let task = select.split_once('.').map_or(select, |(t, _)| t);
    let known: Vec<String> = match scores.get(task) {
        Some(Value::Object(m)) => m
            .iter()
            .filter(|(_, v)| v.is_number())
            .map(|(k, _)| format!("{task}.{k}"))
            .collect(),
        _ => Vec::new(),
    };
    bail!(
        "train.select_metric = {select:?}: dev scoring has no such value{}",
        if known.is_empty() {
            format!(" (task {task:?} has no dev examples)")
        } else {
            format!("; {task:?} has {}", known.join(", "))
        }
    )
}

fn append_line(path: &Path, value: &Value) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?;
    writeln!(f, "{value}").with_context(|| format!("{}: cannot write", path.display()))
}

/// Drops the lines of steps after `step` (logged by a process that died after the
/// checkpoint), so that a resumed run's log has each step once.
fn truncate_metrics(path: &Path, step: u64) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .and_then(|v| v.get("step")?.as_u64())
                .is_some_and(|s| s <= step)
        })
        .collect();
    let mut body = kept.join("\n");
    if !body.is_empty() {
        body.push('\n');
    }
    crate::fetch::write_atomic(path, body.as_bytes())
}

/// Interrupted by Ctrl-C: the exit code is 130 as for any SIGINT.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// `--resume` found no checkpoint in `last`: succeeds (clearing `metrics.jsonl`) if `out`
/// holds only what a run stopped before its first checkpoint
/// wrote (metrics lines, a half-written `last.tmp`), so the run may start over; fails,
/// naming what is there, otherwise.
fn check_restartable(out: &Path, last: &Path) -> Result<()> {
    let metrics = out.join("metrics.jsonl");
    let entries = match std::fs::read_dir(out) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "--resume: {} does not exist; start a run without --resume",
                out.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("{}: cannot list", out.display())),
    };
    let mut foreign = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("{}: cannot list", out.display()))?
            .path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let ours = match name.as_ref() {
            // metrics.jsonl.part: the log being rewritten when the run was killed.
            "metrics.jsonl" | "metrics.jsonl.part" => std::fs::read(&path).is_ok_and(|b| {
                // A line cut short by a kill is the last one, without its newline.
                let whole = match b.iter().rposition(|&c| c == b'\n') {
                    Some(i) => &b[..=i],
                    None => &b[..0],
                };
                output::is_json_lines_with(whole, "step")
            }),
            "last.tmp" | "last.old" | "best.tmp" | "best.old" => {
                output::why_not_replaceable(&path)?.is_none()
            }
            _ => false,
        };
        if !ours {
            foreign.push(name.into_owned());
        }
    }
    if !foreign.is_empty() {
        foreign.sort();
        bail!(
            "--resume: {} holds no checkpoint, and {} holds what a run stopped before its \
             first checkpoint does not leave ({}), so nothing is started over; choose another \
             --out",
            last.display(),
            out.display(),
            foreign.join(", ")
        );
    }
    eprintln!(
        "note: {} holds no checkpoint yet (the run stopped before its first one); starting \
         it over from step 0",
        out.display()
    );
    if metrics.exists() {
        crate::fetch::write_atomic(&metrics, b"")?;
    }
    let part = out.join("metrics.jsonl.part");
    if part.exists() {
        std::fs::remove_file(&part)
            .with_context(|| format!("{}: cannot remove", part.display()))?;
    }
    Ok(())
}

/// A new run starts only in a directory that does not exist or is empty: a run
/// directory's `metrics.jsonl`, `last/` and `best/` are written over as it goes, so
/// starting in one that holds anything would replace what is there.
fn check_fresh_run_dir(out: &Path) -> Result<()> {
    if run_dir::resolve(&out.join("last")).is_some() {
        bail!(
            "{} already holds a run; continue it with --resume, or choose another --out",
            out.display()
        );
    }
    let entries = match std::fs::read_dir(out) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            bail!(
                "{}: exists and is a file, not a directory; choose another --out",
                out.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("{}: cannot list", out.display())),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    names.sort();
    let resumable = if names.iter().any(|n| n == "last") {
        " (its last/ holds no model.safetensors, so it cannot be resumed either)"
    } else {
        ""
    };
    bail!(
        "{}: exists and is not empty (holds {}){resumable}; a new run starts only in a new or \
         empty directory, and nothing in it is replaced: choose another --out, or move those \
         files away",
        out.display(),
        names.join(", ")
    )
}

pub fn run(args: &TrainArgs) -> Result<()> {
    let started = Instant::now();
    let mut recipe = match &args.recipe {
        Some(path) => Recipe::load(path)?,
        None => Recipe::parse(
            crate::recipe::DEFAULT_RECIPE,
            "recipes/default.toml",
            Path::new("."),
        )?,
    };
    if let Some(epochs) = args.epochs {
        if !(epochs.is_finite() && epochs > 0.0) {
            bail!("--epochs must be > 0, got {epochs}");
        }
        recipe.train.epochs = epochs;
    }
    if let Some(seed) = args.seed {
        recipe.train.seed = seed;
    }
    // The checkpoint keeps the recipe with every default spelled out and every path
    // absolute, so `eval` finds the data from anywhere and `--resume` can compare.
    let recipe_text = toml::to_string(&recipe).context("cannot serialise the recipe")?;
    let recipe_file = args
        .recipe
        .as_ref()
        .map_or("recipes/default.toml".into(), |p| p.display().to_string());
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(&recipe.name));
    let last_dir = out.join("last");
    let best_dir = out.join("best");
    let metrics_path = out.join("metrics.jsonl");
    // `--resume` of a run stopped before its first checkpoint starts it over, if the
    // directory holds only what that run wrote.
    let resume = args.resume && run_dir::resolve(&last_dir).is_some();
    if args.resume && !resume {
        check_restartable(&out, &last_dir)?;
    }
    if !args.resume {
        check_fresh_run_dir(&out)?;
    }

    // Model files and data.
    let selected = backend::select(args.backend)?;
    let base_device = selected.device.clone();
    let model_path = model_dir::resolve(recipe.model.path.as_deref())?;
    let (encoder, _) = model_dir::load(&model_path, &base_device)?;
    let config_json = std::fs::read_to_string(model_path.join("config.json"))?;
    let tokenizer_json = std::fs::read(model_path.join("tokenizer.json"))?;
    let mut tokenizer = encoder.tokenizer.clone();
    let positions = encoder.config.max_position_embeddings;
    if recipe.model.max_len > positions {
        bail!(
            "{recipe_file}: model.max_len = {}, but {} takes at most {positions} word pieces \
             (max_position_embeddings in its config.json)",
            recipe.model.max_len,
            model_path.display()
        );
    }
    tokenizer
        .set_max_len(recipe.model.max_len)
        .with_context(|| format!("model.max_len = {}", recipe.model.max_len))?;
    let sources = load_sources(&recipe, &args.data)?;
    let spec = build_spec(&recipe, &sources)?;
    let data = encode_sources(&sources, &spec, &tokenizer)?;
    let pad = tokenizer.pad_id();

    let t = &recipe.train;
    let sizes: Vec<usize> = data.iter().map(|s| s.train.len()).collect();
    let steps_per_epoch: u64 = sizes.iter().map(|&n| n.div_ceil(t.batch_size) as u64).sum();
    let total_steps = ((t.epochs * steps_per_epoch as f64).ceil() as u64).max(1);
    let warmup = (t.warmup_ratio * total_steps as f64).round() as u64;
    let eval_every = if t.eval_every > 0 {
        t.eval_every
    } else {
        steps_per_epoch
    };
    let device = base_device.clone().autodiff();

    // Fresh start or resume.
    let (mut model, mut optimizer, mut state) = if resume {
        let Some(dir) = run_dir::resolve(&last_dir) else {
            bail!("--resume: {} holds no checkpoint", last_dir.display());
        };
        let saved_recipe = std::fs::read_to_string(dir.join("recipe.toml")).unwrap_or_default();
        if saved_recipe != recipe_text {
            bail!(
                "--resume: the recipe differs from the one in {}/recipe.toml; resume with that \
                 recipe, or start a new run with another --out",
                dir.display()
            );
        }
        let (saved, _, _) = run_dir::load(&dir, &base_device)?;
        if saved.model.spec != spec {
            bail!(
                "--resume: the tasks or label sets in {} differ from the data now",
                dir.display()
            );
        }
        let opt_path = dir.join("optimizer.safetensors");
        let opt_bytes = std::fs::read(&opt_path)
            .with_context(|| format!("{}: cannot read", opt_path.display()))?;
        let optimizer = AdamW::from_bytes(&opt_bytes, &opt_path.display().to_string(), &device)?;
        let state_path = dir.join("state.json");
        let state: TrainState = serde_json::from_slice(
            &std::fs::read(&state_path)
                .with_context(|| format!("{}: cannot read", state_path.display()))?,
        )
        .with_context(|| format!("{}: not a training state", state_path.display()))?;
        eprintln!(
            "resuming {} at step {}/{}",
            out.display(),
            state.step,
            state.total_steps
        );
        truncate_metrics(&metrics_path, state.step)?;
        (saved.model.fork(&device).train(), optimizer, state)
    } else {
        // Head initialisation is seeded too: two runs of a recipe are the same run.
        base_device.seed(t.seed);
        let mut bert = encoder.model;
        if recipe.model.casing {
            bert.add_casing(&base_device);
        }
        let model = MultiTaskModel::new(bert, spec.clone(), &base_device)?;
        let optimizer = AdamW::new(AdamWConfig {
            weight_decay: t.weight_decay,
            max_grad_norm: (t.max_grad_norm > 0.0).then_some(t.max_grad_norm),
            head_lr_scale: t.head_lr_scale,
            ..AdamWConfig::default()
        });
        let state = TrainState {
            step: 0,
            total_steps,
            sampler: TaskSampler::new(recipe.sampling(), &sizes, t.seed),
            // Batches of similar length: far less padding (CoNLL sentences run from 1 to
            // 100+ word pieces).
            cursors: data
                .iter()
                .enumerate()
                .map(|(k, src)| {
                    let lengths = src
                        .train
                        .iter()
                        .map(|e| e.encoding.ids.len() as u32)
                        .collect();
                    BatchCursor::bucketed(
                        lengths,
                        t.batch_size,
                        t.seed.wrapping_add(1000 + k as u64),
                    )
                })
                .collect(),
            best: None,
            elapsed_s: 0.0,
        };
        (model.fork(&device).train(), optimizer, state)
    };
    check_select_metric(&model.valid(), &data, &t.select_metric, pad, &base_device)
        .with_context(|| recipe_file.clone())?;
    // Every check passed: only now is anything written.
    std::fs::create_dir_all(&out).with_context(|| format!("{}: cannot create", out.display()))?;

    // Ctrl-C asks the loop to save and stop at the next step boundary.
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let _ = ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst));
    }

    let names: Vec<String> = spec.tasks.iter().map(|t| t.name.clone()).collect();
    eprintln!("backend: {}", selected.description);
    for (s, src) in data.iter().enumerate() {
        let tasks: Vec<String> = src
            .tasks
            .iter()
            .map(|&t| {
                format!(
                    "{} ({}, {} labels)",
                    names[t],
                    spec.tasks[t].kind,
                    spec.tasks[t].labels.len()
                )
            })
            .collect();
        eprintln!(
            "corpus {}: {} | train {} dev {} test {} | p = {:.3}",
            recipe.tasks[src.tasks[0]].dataset.as_str(),
            tasks.join(", "),
            src.train.len(),
            src.dev.len(),
            src.test.len(),
            state.sampler.probabilities()[s]
        );
    }
    eprintln!(
        "{} steps ({} per epoch, batch {}), warm-up {}, peak lr {:e}; output {}",
        total_steps,
        steps_per_epoch,
        t.batch_size,
        warmup,
        t.lr,
        out.display()
    );

    let files_for = |model: &MultiTaskModel| {
        run_dir::model_files(model, &config_json, &tokenizer_json, &recipe_text)
    };
    let save_last = |model: &MultiTaskModel, optimizer: &AdamW, state: &TrainState| -> Result<()> {
        let mut files = files_for(model)?;
        files.push(("optimizer.safetensors", optimizer.to_bytes()?));
        files.push((
            "state.json",
            serde_json::to_vec_pretty(state).expect("serialisable"),
        ));
        let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_slice())).collect();
        output::write_dir_atomic(&last_dir, &refs)
    };

    let bar = ProgressBar::new(total_steps).with_position(state.step);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
        )
        .expect("valid template"),
    );
    let mut ema: Vec<Option<f32>> = vec![None; names.len()];
    let session_start = Instant::now();
    // Throughput of the training steps alone (evaluation and checkpoints excluded).
    let mut seen_examples = 0usize;
    let mut seen_tokens = 0usize;
    let mut train_s = 0.0f64;
    let stop_at = args.max_steps.unwrap_or(u64::MAX).min(total_steps);

    while state.step < stop_at {
        if stop.load(Ordering::SeqCst) {
            bar.abandon();
            state.elapsed_s += session_start.elapsed().as_secs_f64();
            save_last(&model, &optimizer, &state)?;
            eprintln!(
                "interrupted at step {}; saved {} — continue with --resume",
                state.step,
                last_dir.display()
            );
            return Err(Interrupted.into());
        }
        let s = state.sampler.next_task();
        let idx = state.cursors[s].next_batch();
        let items: Vec<&Encoded> = idx.iter().map(|&i| &data[s].train[i]).collect();
        let lr = linear_schedule(state.step, warmup, total_steps, t.lr);
        // Dropout masks depend only on (seed, step): a resumed run draws the same ones.
        device.seed(t.seed.wrapping_mul(0x9E37_79B9).wrapping_add(state.step));
        let step_start = Instant::now();
        let (m, report) = train_step(
            model,
            &mut optimizer,
            &items,
            &data[s].tasks,
            lr,
            pad,
            &device,
        )?;
        model = m;
        let report = match report {
            Ok(r) => r,
            Err(nf) => {
                bar.abandon();
                let losses: Vec<String> = nf
                    .per_task
                    .iter()
                    .map(|(t, l)| format!("{} {l}", names[*t]))
                    .collect();
                let kept = match run_dir::resolve(&last_dir) {
                    Some(d) => format!("the last good checkpoint is {}", d.display()),
                    None => "no checkpoint was saved yet".to_string(),
                };
                bail!(
                    "step {}: the loss is not finite ({}) at lr {lr:e}; stopped without saving; \
                     {kept}. Lower train.lr or check the data.",
                    state.step + 1,
                    losses.join(", ")
                );
            }
        };
        train_s += step_start.elapsed().as_secs_f64();
        state.step += 1;
        seen_examples += items.len();
        seen_tokens += items.iter().map(|e| e.encoding.ids.len()).sum::<usize>();
        for (t, l) in &report.per_task {
            ema[*t] = Some(ema[*t].map_or(*l, |e| 0.9 * e + 0.1 * l));
        }
        let rate = seen_examples as f64 / train_s;
        let token_rate = seen_tokens as f64 / train_s;
        let msg: Vec<String> = names
            .iter()
            .zip(&ema)
            .filter_map(|(n, e)| e.map(|e| format!("{n} {e:.3}")))
            .collect();
        bar.set_message(format!(
            "{} | {rate:.1} ex/s, {token_rate:.0} tok/s",
            msg.join(" ")
        ));
        if bar.is_hidden() && state.step % 50 == 0 {
            // Logs (CI, nohup) get a plain line now and then instead of the bar.
            eprintln!(
                "step {}/{} | {} | {rate:.1} ex/s, {token_rate:.0} tok/s | {:.0} s",
                state.step,
                total_steps,
                msg.join(" "),
                session_start.elapsed().as_secs_f64()
            );
        }
        bar.set_position(state.step);
        if state.step % args.log_every.max(1) == 0 || state.step == 1 {
            let per_task: BTreeMap<&str, f32> = report
                .per_task
                .iter()
                .map(|(t, l)| (names[*t].as_str(), *l))
                .collect();
            append_line(
                &metrics_path,
                &json!({
                    "step": state.step, "epoch": state.step as f64 / steps_per_epoch as f64,
                    "lr": lr, "loss": report.loss, "task_loss": per_task,
                    "grad_norm": report.stats.grad_norm, "examples_per_s": rate,
                    "tokens_per_s": token_rate,
                }),
            )?;
        }
        let eval_now = state.step % eval_every == 0 || state.step == total_steps;
        if eval_now {
            let mut eval_model = model.valid();
            let scores = score_split(
                &eval_model,
                &data,
                false,
                t.eval_batch_size,
                pad,
                &base_device,
            )?;
            let selected_value = evaluate::select(&scores, &t.select_metric);
            append_line(
                &metrics_path,
                &json!({"step": state.step, "split": "dev", "select": selected_value, "scores": scores}),
            )?;
            let summary: Vec<String> = scores
                .iter()
                .filter_map(|(task, v)| {
                    let m = v.get("main")?.as_str()?;
                    Some(format!("{task} {m} {:.4}", v.get(m)?.as_f64()?))
                })
                .collect();
            // `suspend` prints above the bar, and also when the bar is hidden (not a terminal).
            bar.suspend(|| eprintln!("step {} dev: {}", state.step, summary.join(", ")));
            if let Some(value) = selected_value
                && state.best.is_none_or(|(b, _)| value > b)
            {
                state.best = Some((value, state.step));
                // The best checkpoint keeps the out-of-scope thresholds fitted on dev, for
                // `predict` (and `eval`).
                evaluate::set_oos_thresholds(&mut eval_model, &scores);
                let files = files_for(&eval_model)?;
                let refs: Vec<(&str, &[u8])> =
                    files.iter().map(|(n, b)| (*n, b.as_slice())).collect();
                output::write_dir_atomic(&best_dir, &refs)?;
            }
        }
        if eval_now || (t.checkpoint_every > 0 && state.step % t.checkpoint_every == 0) {
            let mut saved = state.clone();
            saved.elapsed_s += session_start.elapsed().as_secs_f64();
            save_last(&model, &optimizer, &saved)?;
        }
    }
    bar.finish();
    state.elapsed_s += session_start.elapsed().as_secs_f64();
    save_last(&model, &optimizer, &state)?;
    if state.step < total_steps {
        eprintln!(
            "stopped at step {} of {} (--max-steps); saved {} — continue with --resume",
            state.step,
            total_steps,
            last_dir.display()
        );
        return Ok(());
    }

    // Final scores of the best checkpoint.
    let best = if run_dir::resolve(&best_dir).is_some() {
        &best_dir
    } else {
        &last_dir
    };
    let (mut saved, _, _) = run_dir::load(best, &base_device)?;
    let dev = score_split(
        &saved.model,
        &data,
        false,
        t.eval_batch_size,
        pad,
        &base_device,
    )?;
    // Out-of-scope thresholds come from dev (`best` saved them, `last` did not).
    evaluate::set_oos_thresholds(&mut saved.model, &dev);
    let test = score_split(
        &saved.model,
        &data,
        true,
        t.eval_batch_size,
        pad,
        &base_device,
    )?;
    let results = json!({
        "recipe": recipe.name, "checkpoint": best, "best_step": state.best.map(|b| b.1),
        "backend": selected.description, "train_seconds": state.elapsed_s,
        "wall_seconds_this_process": started.elapsed().as_secs_f64(),
        "dev": dev, "test": test,
    });
    std::fs::write(
        out.join("results.json"),
        serde_json::to_vec_pretty(&results)?,
    )?;
    println!("{}", evaluate::table(&[("dev", &dev), ("test", &test)]));
    println!(
        "\nbest checkpoint: {} (step {}); training took {:.0} s; results in {}",
        best.display(),
        state.best.map_or(state.step, |b| b.1),
        state.elapsed_s,
        out.join("results.json").display()
    );
    if spec.loss_weighting == LossWeighting::Uncertainty {
        eprintln!(
            "(uncertainty weighting: learned log-variances are in the checkpoint as log_vars)"
        );
    }
    Ok(())
}
