//! The training loop of `core-train train`, as a [`Trainer`] that a newcomer reads in one
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
//! [`Trainer::new`] does 1–2 and starts fresh or resumes `last/`; [`Trainer::run`] is 3–5,
//! top to bottom, made of [`Trainer::step`], [`Trainer::evaluate`] and [`Trainer::save`].
//!
//! Output directory (`runs/NAME` by default):
//! `last/` (resumable: weights, optimizer, sampler and step), `best/` (weights only),
//! `metrics.jsonl`, `results.json`. `--resume` continues `last/` exactly; Ctrl-C saves
//! `last/` and exits; a non-finite loss stops the run and keeps the last good checkpoint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::Device;
use indicatif::ProgressBar;
use polytask_core::BertModel;
use polytask_core::data::features::Encoded;
use polytask_core::data::features::collate;
use polytask_core::data::sampler::{BatchCursor, TaskSampler};
use polytask_core::model::multitask::{MultiTaskModel, MultiTaskSpec};
use polytask_core::model::task::{TaskKind, TaskSpec, label_set, validate_tasks};
use polytask_core::train::distill::{check_outputs, distill_loss};
use polytask_core::train::loss::LossWeighting;
use polytask_core::train::optim::{AdamW, AdamWConfig, linear_schedule};
use polytask_core::train::step::{StepReport, apply_loss, train_step};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::backend::{self, BackendChoice};
use crate::corpus::{self, DataArgs, EncodedSource, Source, encode_sources, load_sources};
use crate::distill::Teachers;
use crate::evaluate;
use crate::model_dir;
use crate::progress::{self, Interrupted};
use crate::recipe::{self, DatasetName, Recipe};
use crate::{output, run_dir};

/// What `train` was asked besides the recipe.
pub struct TrainOptions {
    /// The recipe's file, for messages (`recipes/default.toml` for the built-in one).
    pub recipe_file: String,
    /// Output directory (default: `runs/NAME`).
    pub out: Option<PathBuf>,
    /// Continue `OUT/last` exactly where it stopped.
    pub resume: bool,
    pub backend: BackendChoice,
    pub data: DataArgs,
    /// Stop after this many steps in all (saving `OUT/last`).
    pub max_steps: Option<u64>,
    /// Write a training line to `metrics.jsonl` every this many steps.
    pub log_every: u64,
    /// When the process started (`wall_seconds_this_process` in `results.json`).
    pub started: Instant,
}

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
    /// Set a recipe field, e.g. `--set distill.alpha=0.9` or `--set train.lr=1e-4` (a TOML
    /// value; repeatable); the checkpoint records the recipe as run.
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    pub set: Vec<String>,
    /// Write a training line to metrics.jsonl every this many steps.
    #[arg(long, default_value_t = 10)]
    pub log_every: u64,
}

impl TrainArgs {
    /// The recipe with the command line's overrides, and the options of the run.
    pub fn recipe_and_options(&self) -> Result<(Recipe, TrainOptions)> {
        let args = self;
        let started = Instant::now();
        let mut recipe = match &args.recipe {
            Some(path) => Recipe::load_with(path, &args.set)?,
            None => Recipe::parse(
                &recipe::with_overrides(recipe::DEFAULT_RECIPE, &args.set)?,
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
        let recipe_file = args
            .recipe
            .as_ref()
            .map_or("recipes/default.toml".into(), |p| p.display().to_string());
        let options = TrainOptions {
            recipe_file,
            out: args.out.clone(),
            resume: args.resume,
            backend: args.backend,
            data: args.data.clone(),
            max_steps: args.max_steps,
            log_every: args.log_every,
            started,
        };
        Ok((recipe, options))
    }
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

/// How many steps, and when to warm up and evaluate.
struct Schedule {
    steps_per_epoch: u64,
    total_steps: u64,
    warmup: u64,
    eval_every: u64,
}

/// This process's share of the run: its clock, throughput and smoothed losses.
struct Session {
    start: Instant,
    /// Per task, an exponential moving average of its loss (for the progress bar).
    ema: Vec<Option<f32>>,
    // Throughput of the training steps alone (evaluation and checkpoints excluded).
    seen_examples: usize,
    seen_tokens: usize,
    train_s: f64,
}

impl Session {
    fn start(tasks: usize) -> Self {
        Session {
            start: Instant::now(),
            ema: vec![None; tasks],
            seen_examples: 0,
            seen_tokens: 0,
            train_s: 0.0,
        }
    }
}

/// What one step did: its learning rate, losses and the throughput so far.
pub struct Step {
    pub lr: f64,
    pub report: StepReport,
    pub examples_per_s: f64,
    pub tokens_per_s: f64,
}

/// A multi-task training run: the data, the model and optimizer, where it is, and where it
/// writes.
pub struct Trainer {
    recipe: Recipe,
    /// The recipe as saved with every checkpoint (and compared by `--resume`).
    recipe_text: String,
    out: PathBuf,
    last_dir: PathBuf,
    best_dir: PathBuf,
    metrics_path: PathBuf,
    backend: String,
    /// Where evaluation runs; `device` is the same one under autodiff, for training.
    base_device: Device,
    device: Device,
    config_json: String,
    tokenizer_json: Vec<u8>,
    spec: MultiTaskSpec,
    names: Vec<String>,
    data: Vec<EncodedSource>,
    pad: u32,
    schedule: Schedule,
    stop_at: u64,
    log_every: u64,
    started: Instant,
    /// `None` only inside [`Trainer::step`], which hands it to the train step.
    model: Option<MultiTaskModel>,
    /// `core-train distill`: the teachers, run on `base_device` each step.
    teachers: Option<Teachers>,
    optimizer: AdamW,
    state: TrainState,
    bar: ProgressBar,
    session: Session,
}

impl Trainer {
    /// Checks the output directory, loads the model and the data, and starts fresh or (with
    /// `resume`) from `OUT/last`. Fails before anything is written when a check fails.
    pub fn new(recipe: Recipe, options: TrainOptions) -> Result<Self> {
        // The checkpoint keeps the recipe with every default spelled out and every path
        // absolute, so `eval` finds the data from anywhere and `--resume` can compare.
        let recipe_text = toml::to_string(&recipe).context("cannot serialise the recipe")?;
        let recipe_file = options.recipe_file;
        let out = options
            .out
            .unwrap_or_else(|| PathBuf::from("runs").join(&recipe.name));
        let last_dir = out.join("last");
        let best_dir = out.join("best");
        let metrics_path = out.join("metrics.jsonl");
        // `--resume` of a run stopped before its first checkpoint starts it over, if the
        // directory holds only what that run wrote.
        let resume = options.resume && run_dir::resolve(&last_dir).is_some();
        if options.resume && !resume {
            run_dir::check_restartable(&out, &last_dir)?;
        }
        if !options.resume {
            run_dir::check_fresh_run_dir(&out)?;
        }

        // Model files and data.
        let selected = backend::select(options.backend)?;
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
        let sources = load_sources(&recipe, &options.data)?;
        let spec = build_spec(&recipe, &sources)?;
        let data = encode_sources(&sources, &spec, &tokenizer)?;
        let pad = tokenizer.pad_id();
        let mut teachers = match &recipe.distill {
            Some(d) => Some(Teachers::load(
                d,
                &recipe_file,
                &spec,
                &tokenizer,
                recipe.model.max_len,
                &base_device,
            )?),
            None => None,
        };
        // A student made of the teacher's blocks has the teacher's config, fewer blocks.
        let (student, config_json) = match teachers.as_ref().map(Teachers::student_encoder) {
            Some(made) => match made? {
                Some((bert, config)) => (bert, config),
                None => (encoder.model, config_json),
            },
            None => (encoder.model, config_json),
        };

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
        let (model, optimizer, state) = if resume {
            Self::resume(
                &last_dir,
                &metrics_path,
                &out,
                &recipe_text,
                &spec,
                &base_device,
                &device,
            )?
        } else {
            Self::start(
                &recipe,
                &spec,
                &data,
                total_steps,
                student,
                teachers.as_ref(),
                &base_device,
                &device,
            )?
        };
        if let Some(t) = &teachers {
            t.check(&model.valid(), &recipe_file)?;
        }
        check_select_metric(&model.valid(), &data, &t.select_metric, pad, &base_device)
            .with_context(|| recipe_file.clone())?;
        // Every check passed: only now is anything written.
        std::fs::create_dir_all(&out)
            .with_context(|| format!("{}: cannot create", out.display()))?;

        let names: Vec<String> = spec.tasks.iter().map(|t| t.name.clone()).collect();
        if let (Some(teachers), Some(dir)) = (
            teachers.as_mut(),
            recipe.distill.as_ref().and_then(|d| d.cache.as_ref()),
        ) {
            teachers
                .fill_cache(dir, &data, &names, t.eval_batch_size, pad, &base_device)
                .with_context(|| format!("{recipe_file}: distill.cache"))?;
        }
        let stop_at = options.max_steps.unwrap_or(u64::MAX).min(total_steps);
        Ok(Trainer {
            recipe_text,
            out,
            last_dir,
            best_dir,
            metrics_path,
            backend: selected.description,
            base_device,
            device,
            config_json,
            tokenizer_json,
            spec,
            session: Session::start(names.len()),
            names,
            data,
            pad,
            schedule: Schedule {
                steps_per_epoch,
                total_steps,
                warmup,
                eval_every,
            },
            stop_at,
            log_every: options.log_every,
            started: options.started,
            model: Some(model),
            teachers,
            optimizer,
            state,
            bar: ProgressBar::hidden(),
            recipe,
        })
    }

    /// A new run: the pretrained encoder with freshly initialised heads (seeded), a new
    /// optimizer, and sampler and cursors at their start.
    #[allow(clippy::too_many_arguments)] // what a fresh run is made of, each used once
    fn start(
        recipe: &Recipe,
        spec: &MultiTaskSpec,
        data: &[EncodedSource],
        total_steps: u64,
        mut bert: BertModel,
        teachers: Option<&Teachers>,
        base_device: &Device,
        device: &Device,
    ) -> Result<(MultiTaskModel, AdamW, TrainState)> {
        let t = &recipe.train;
        // Head initialisation is seeded too: two runs of a recipe are the same run.
        base_device.seed(t.seed);
        if recipe.model.casing {
            bert.add_casing(base_device);
        }
        let mut model = MultiTaskModel::new(bert, spec.clone(), base_device)?;
        if let Some(t) = teachers {
            t.copy_heads(&mut model);
        }
        let optimizer = AdamW::new(AdamWConfig {
            weight_decay: t.weight_decay,
            max_grad_norm: (t.max_grad_norm > 0.0).then_some(t.max_grad_norm),
            head_lr_scale: t.head_lr_scale,
            ..AdamWConfig::default()
        });
        let sizes: Vec<usize> = data.iter().map(|s| s.train.len()).collect();
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
        Ok((model.fork(device).train(), optimizer, state))
    }

    /// The run saved in `last_dir`, exactly where it stopped: weights, optimizer moments,
    /// sampler and cursors. The recipe and the tasks must be the ones it was trained with;
    /// log lines of steps after the checkpoint are dropped.
    fn resume(
        last_dir: &Path,
        metrics_path: &Path,
        out: &Path,
        recipe_text: &str,
        spec: &MultiTaskSpec,
        base_device: &Device,
        device: &Device,
    ) -> Result<(MultiTaskModel, AdamW, TrainState)> {
        let Some(dir) = run_dir::resolve(last_dir) else {
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
        let (saved, _, _) = run_dir::load(&dir, base_device)?;
        if saved.model.spec != *spec {
            bail!(
                "--resume: the tasks or label sets in {} differ from the data now",
                dir.display()
            );
        }
        let opt_path = dir.join("optimizer.safetensors");
        let opt_bytes = std::fs::read(&opt_path)
            .with_context(|| format!("{}: cannot read", opt_path.display()))?;
        let optimizer = AdamW::from_bytes(&opt_bytes, &opt_path.display().to_string(), device)?;
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
        run_dir::truncate_metrics(metrics_path, state.step)?;
        Ok((saved.model.fork(device).train(), optimizer, state))
    }

    /// The loop: a step, its log line, and now and then an evaluation on dev and a
    /// checkpoint, until the schedule ends (or `--max-steps`, or Ctrl-C); then the best
    /// checkpoint's scores.
    pub fn run(mut self) -> Result<()> {
        // Ctrl-C asks the loop to save and stop at the next step boundary.
        let stop = progress::stop_on_ctrl_c();
        self.announce();
        self.bar = progress::steps_bar(self.schedule.total_steps, self.state.step);
        self.session = Session::start(self.names.len());

        while self.state.step < self.stop_at {
            if stop.load(Ordering::SeqCst) {
                return self.interrupt();
            }
            let step = self.step()?;
            self.show(&step);
            self.log(&step)?;
            let eval_now = self.state.step.is_multiple_of(self.schedule.eval_every)
                || self.state.step == self.schedule.total_steps;
            if eval_now {
                self.evaluate()?;
            }
            let every = self.recipe.train.checkpoint_every;
            if eval_now || (every > 0 && self.state.step.is_multiple_of(every)) {
                self.save()?;
            }
        }
        self.bar.finish();
        self.state.elapsed_s += self.session.start.elapsed().as_secs_f64();
        self.write_last(&self.state)?;
        if self.state.step < self.schedule.total_steps {
            eprintln!(
                "stopped at step {} of {} (--max-steps); saved {} — continue with --resume",
                self.state.step,
                self.schedule.total_steps,
                self.last_dir.display()
            );
            return Ok(());
        }
        self.report()
    }

    /// One training step: the sampler picks a corpus, its cursor a batch, and one AdamW
    /// step on the joint loss of the corpus's tasks. A non-finite loss stops the run
    /// without saving.
    pub fn step(&mut self) -> Result<Step> {
        let t = &self.recipe.train;
        let s = self.state.sampler.next_task();
        let idx = self.state.cursors[s].next_batch();
        let items: Vec<&Encoded> = idx.iter().map(|&i| &self.data[s].train[i]).collect();
        let lr = linear_schedule(
            self.state.step,
            self.schedule.warmup,
            self.schedule.total_steps,
            t.lr,
        );
        // Dropout masks depend only on (seed, step): a resumed run draws the same ones.
        self.device.seed(
            t.seed
                .wrapping_mul(0x9E37_79B9)
                .wrapping_add(self.state.step),
        );
        let step_start = Instant::now();
        let model = self.model.take().expect("a model between steps");
        let tasks = &self.data[s].tasks;
        let (m, report) = match &self.teachers {
            None => train_step(
                model,
                &mut self.optimizer,
                &items,
                tasks,
                lr,
                self.pad,
                &self.device,
            )?,
            Some(teachers) => {
                let said = teachers.outputs(s, &idx, &items, tasks, self.pad, &self.base_device)?;
                let batch = collate(&items, self.pad, &self.device)?;
                check_outputs(&model, &batch, tasks, &said)?;
                let loss = distill_loss(&model, &batch, tasks, &said, &teachers.config);
                apply_loss(model, &mut self.optimizer, loss, lr)
            }
        };
        self.model = Some(m);
        let report = match report {
            Ok(r) => r,
            Err(nf) => {
                self.bar.abandon();
                let losses: Vec<String> = nf
                    .per_task
                    .iter()
                    .map(|(t, l)| format!("{} {l}", self.names[*t]))
                    .collect();
                let kept = match run_dir::resolve(&self.last_dir) {
                    Some(d) => format!("the last good checkpoint is {}", d.display()),
                    None => "no checkpoint was saved yet".to_string(),
                };
                bail!(
                    "{nf}; by task: {}; at lr {lr:e}; {kept}. Lower train.lr or check the data.",
                    losses.join(", ")
                );
            }
        };
        let session = &mut self.session;
        session.train_s += step_start.elapsed().as_secs_f64();
        self.state.step += 1;
        session.seen_examples += items.len();
        session.seen_tokens += items.iter().map(|e| e.encoding.ids.len()).sum::<usize>();
        for (t, l) in &report.per_task {
            session.ema[*t] = Some(session.ema[*t].map_or(*l, |e| 0.9 * e + 0.1 * l));
        }
        Ok(Step {
            lr,
            report,
            examples_per_s: session.seen_examples as f64 / session.train_s,
            tokens_per_s: session.seen_tokens as f64 / session.train_s,
        })
    }

    /// Scores dev, logs the scores, and saves `best/` when the recipe's metric improved.
    pub fn evaluate(&mut self) -> Result<()> {
        let t = &self.recipe.train;
        let mut eval_model = self.model.as_ref().expect("a model").valid();
        let scores = evaluate::score_split(
            &eval_model,
            &self.data,
            false,
            t.eval_batch_size,
            self.pad,
            &self.base_device,
        )?;
        let selected_value = evaluate::select(&scores, &t.select_metric);
        run_dir::append_line(
            &self.metrics_path,
            &json!({"step": self.state.step, "split": "dev", "select": selected_value, "scores": scores}),
        )?;
        let summary: Vec<String> = scores
            .iter()
            .filter_map(|(task, v)| {
                let m = v.get("main")?.as_str()?;
                Some(format!("{task} {m} {:.4}", v.get(m)?.as_f64()?))
            })
            .collect();
        // `suspend` prints above the bar, and also when the bar is hidden (not a terminal).
        let step = self.state.step;
        self.bar
            .suspend(|| eprintln!("step {step} dev: {}", summary.join(", ")));
        if let Some(value) = selected_value
            && self.state.best.is_none_or(|(b, _)| value > b)
        {
            self.state.best = Some((value, self.state.step));
            // The best checkpoint keeps the out-of-scope thresholds fitted on dev, for
            // `predict` (and `eval`).
            evaluate::set_oos_thresholds(&mut eval_model, &scores);
            let files = self.model_files(&eval_model)?;
            let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_slice())).collect();
            output::write_dir_atomic(&self.best_dir, &refs)?;
        }
        Ok(())
    }

    /// Saves `last/`: weights, optimizer moments, sampler, cursors and step, all that
    /// `--resume` needs to continue exactly.
    pub fn save(&self) -> Result<()> {
        let mut saved = self.state.clone();
        saved.elapsed_s += self.session.start.elapsed().as_secs_f64();
        self.write_last(&saved)
    }

    /// The progress bar's message (smoothed losses, throughput) and, where the bar is not
    /// shown (CI, nohup), a plain line every 50 steps.
    fn show(&self, step: &Step) {
        let (rate, token_rate) = (step.examples_per_s, step.tokens_per_s);
        let msg: Vec<String> = self
            .names
            .iter()
            .zip(&self.session.ema)
            .filter_map(|(n, e)| e.map(|e| format!("{n} {e:.3}")))
            .collect();
        self.bar.set_message(format!(
            "{} | {rate:.1} ex/s, {token_rate:.0} tok/s",
            msg.join(" ")
        ));
        if self.bar.is_hidden() && self.state.step.is_multiple_of(50) {
            // Logs (CI, nohup) get a plain line now and then instead of the bar.
            eprintln!(
                "step {}/{} | {} | {rate:.1} ex/s, {token_rate:.0} tok/s | {:.0} s",
                self.state.step,
                self.schedule.total_steps,
                msg.join(" "),
                self.session.start.elapsed().as_secs_f64()
            );
        }
        self.bar.set_position(self.state.step);
    }

    /// A training line in `metrics.jsonl` every `log_every` steps (and after the first).
    fn log(&self, step: &Step) -> Result<()> {
        let s = self.state.step;
        if s.is_multiple_of(self.log_every.max(1)) || s == 1 {
            let per_task: BTreeMap<&str, f32> = step
                .report
                .per_task
                .iter()
                .map(|(t, l)| (self.names[*t].as_str(), *l))
                .collect();
            run_dir::append_line(
                &self.metrics_path,
                &json!({
                    "step": s, "epoch": s as f64 / self.schedule.steps_per_epoch as f64,
                    "lr": step.lr, "loss": step.report.loss, "task_loss": per_task,
                    "grad_norm": step.report.stats.grad_norm, "examples_per_s": step.examples_per_s,
                    "tokens_per_s": step.tokens_per_s,
                })
                .as_object()
                .cloned()
                .map(|mut line| {
                    if !step.report.parts.is_empty() {
                        let parts: BTreeMap<&str, f32> = step
                            .report
                            .parts
                            .iter()
                            .map(|(n, l)| (n.as_str(), *l))
                            .collect();
                        line.insert("parts".into(), json!(parts));
                    }
                    Value::Object(line)
                })
                .expect("an object"),
            )?;
        }
        Ok(())
    }

    /// Ctrl-C: saves `last/` and stops with [`Interrupted`].
    fn interrupt(mut self) -> Result<()> {
        self.bar.abandon();
        self.state.elapsed_s += self.session.start.elapsed().as_secs_f64();
        self.write_last(&self.state)?;
        eprintln!(
            "interrupted at step {}; saved {} — continue with --resume",
            self.state.step,
            self.last_dir.display()
        );
        Err(Interrupted.into())
    }

    /// The files of a model directory for `model`: weights, tasks, config, tokenizer, recipe.
    fn model_files(&self, model: &MultiTaskModel) -> Result<Vec<(&'static str, Vec<u8>)>> {
        run_dir::model_files(
            model,
            &self.config_json,
            &self.tokenizer_json,
            &self.recipe_text,
        )
    }

    /// Writes `last/` with `state`.
    fn write_last(&self, state: &TrainState) -> Result<()> {
        let mut files = self.model_files(self.model.as_ref().expect("a model"))?;
        files.push(("optimizer.safetensors", self.optimizer.to_bytes()?));
        files.push((
            "state.json",
            serde_json::to_vec_pretty(state).expect("serialisable"),
        ));
        let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_slice())).collect();
        output::write_dir_atomic(&self.last_dir, &refs)
    }

    /// Before the first step: the backend, each corpus with its tasks, sizes and sampling
    /// probability, and the schedule.
    fn announce(&self) {
        let (spec, names) = (&self.spec, &self.names);
        eprintln!("backend: {}", self.backend);
        if let Some(t) = &self.teachers {
            eprintln!("{}", t.describe(names));
        }
        for (s, src) in self.data.iter().enumerate() {
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
                self.recipe.tasks[src.tasks[0]].dataset.as_str(),
                tasks.join(", "),
                src.train.len(),
                src.dev.len(),
                src.test.len(),
                self.state.sampler.probabilities()[s]
            );
        }
        let t = &self.recipe.train;
        eprintln!(
            "{} steps ({} per epoch, batch {}), warm-up {}, peak lr {:e}; output {}",
            self.schedule.total_steps,
            self.schedule.steps_per_epoch,
            t.batch_size,
            self.schedule.warmup,
            t.lr,
            self.out.display()
        );
    }

    /// The end of a run: the best checkpoint's dev and test scores in `results.json`, and
    /// as a table on stdout.
    fn report(&self) -> Result<()> {
        let t = &self.recipe.train;
        let (out, state) = (&self.out, &self.state);
        let (best_dir, last_dir) = (&self.best_dir, &self.last_dir);
        let (pad, base_device) = (self.pad, &self.base_device);
        let data = &self.data;
        // Final scores of the best checkpoint.
        let best = if run_dir::resolve(best_dir).is_some() {
            best_dir
        } else {
            last_dir
        };
        let (mut saved, _, _) = run_dir::load(best, base_device)?;
        let dev = evaluate::score_split(
            &saved.model,
            data,
            false,
            t.eval_batch_size,
            pad,
            base_device,
        )?;
        // Out-of-scope thresholds come from dev (`best` saved them, `last` did not).
        evaluate::set_oos_thresholds(&mut saved.model, &dev);
        let test = evaluate::score_split(
            &saved.model,
            data,
            true,
            t.eval_batch_size,
            pad,
            base_device,
        )?;
        let results = json!({
            "recipe": self.recipe.name, "checkpoint": best, "best_step": state.best.map(|b| b.1),
            "backend": self.backend, "train_seconds": state.elapsed_s,
            "wall_seconds_this_process": self.started.elapsed().as_secs_f64(),
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
        if self.spec.loss_weighting == LossWeighting::Uncertainty {
            eprintln!(
                "(uncertainty weighting: learned log-variances are in the checkpoint as log_vars)"
            );
        }
        Ok(())
    }
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
    let scores = evaluate::score_split(model, &probe, false, 2, pad_id, device)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::{Example, Splits};

    fn example(label: Option<&str>, tags: Option<&[&str]>) -> Example {
        let tags: Option<Vec<String>> = tags.map(|t| t.iter().map(|s| s.to_string()).collect());
        Example {
            words: tags
                .as_ref()
                .map(|t| t.iter().map(|_| "w".to_string()).collect()),
            text: "w".into(),
            label: label.map(str::to_string),
            tags,
            origin: "f:1".into(),
        }
    }

    #[test]
    fn label_sets_come_from_the_training_split_alone() {
        let recipe = Recipe::parse(
            "name = \"t\"\n\
             [[task]]\nname = \"sent\"\ndataset = \"jsonl\"\ntrain = \"a\"\ndev = \"a\"\n\
             [[task]]\nname = \"tok\"\ndataset = \"jsonl\"\ntrain = \"b\"\ndev = \"b\"\n",
            "r.toml",
            Path::new("/data"),
        )
        .unwrap();
        let sentences = Source {
            tasks: vec![0],
            splits: Splits {
                train: vec![example(Some("pos"), None), example(Some("neg"), None)],
                // A dev label is not a label of the task (the corpus check refuses it).
                dev: vec![example(Some("neutral"), None)],
                test: Vec::new(),
            },
        };
        let tokens = Source {
            tasks: vec![1],
            splits: Splits {
                train: vec![example(None, Some(&["B-PER", "O"]))],
                dev: Vec::new(),
                test: Vec::new(),
            },
        };
        let spec = build_spec(&recipe, &[sentences, tokens]).unwrap();
        let (sent, tok) = (&spec.tasks[0], &spec.tasks[1]);
        assert_eq!(
            (sent.name.as_str(), sent.kind),
            ("sent", TaskKind::Sentence)
        );
        let mut labels = sent.labels.clone();
        labels.sort();
        assert_eq!(labels, ["neg", "pos"]);
        assert_eq!((tok.name.as_str(), tok.kind), ("tok", TaskKind::Token));
        assert!(tok.labels.iter().any(|l| l == "B-PER") && tok.labels.iter().any(|l| l == "O"));
        assert!(!tok.labels.iter().any(|l| l == "neg"));
        assert_eq!(sent.out_of_scope, None);
    }
}
