//! `core-train meta-train [RECIPE]`: first-order meta-learning (Reptile or FOMAML) of an
//! encoder's adapters or top blocks over N-way K-shot episodes of the meta-train classes,
//! with the meta-val classes scored every `val_every` iterations and the best encoder kept.
//! Meta-training episodes come from the training split only; meta-val episodes from all
//! splits of the meta-val classes.
//!
//! The output is a model directory (`config.json`, `tokenizer.json`, `model.safetensors`
//! with any adapters, plus `meta.json`: the recipe, the class split and the validation
//! history) that every other command takes as `--model`, written atomically whenever the
//! validation accuracy improves.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Result, bail};
use burn::tensor::Device;
use polytask_core::data::episodes::{Episode, EpisodeSampler};
use polytask_core::fewshot::adapt::{AdaptMode, Learner};
use polytask_core::fewshot::meta::{MetaAlgorithm, MetaConfig, MetaEpisode, MetaLearner};
use polytask_core::io::checkpoint::bert_to_safetensors;
use polytask_core::{BertModel, SentenceEncoder};
use serde::{Deserialize, Serialize};
use serde_json::json;

use polytask_native::adaptation::inputs;
use polytask_native::backend::{self, BackendChoice};
use polytask_native::episode_data::{self, EpisodeDataArgs, Labelled};
use polytask_native::files::read;
use polytask_native::progress::{self, Interrupted};
use polytask_native::{model_dir, output};

/// A meta-training recipe (`recipes/meta-*.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetaRecipe {
    /// Output directory.
    pub out: String,
    /// Starting encoder: a model directory or a training run's best/ ("" = all-MiniLM-L6-v2).
    pub init: String,
    /// Seeds the episodes.
    pub seed: u64,
    pub way: usize,
    pub shot: usize,
    pub query: usize,
    /// Score the meta-val classes every this many meta-updates.
    pub val_every: usize,
    /// Meta-val episodes (fixed, seeded; `way`-way `val_shot`-shot).
    pub val_episodes: usize,
    pub val_shot: usize,
    pub meta: MetaConfig,
}

impl Default for MetaRecipe {
    fn default() -> Self {
        MetaRecipe {
            out: "runs/meta".into(),
            init: String::new(),
            seed: 1,
            way: 5,
            shot: 5,
            query: 5,
            val_every: 50,
            val_episodes: 50,
            val_shot: 1,
            meta: MetaConfig::default(),
        }
    }
}

/// `--algorithm`: the outer update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AlgorithmArg {
    Reptile,
    Fomaml,
}

/// `--mode`: what the inner loop adapts (the head is rebuilt from prototypes each episode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InnerModeArg {
    Adapters,
    Full,
}

#[derive(clap::Args, Clone, Debug)]
pub struct MetaTrainArgs {
    /// The recipe (TOML; every field optional, see recipes/README.md).
    pub recipe: Option<PathBuf>,
    /// Output directory (overrides the recipe).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Meta-updates (overrides the recipe).
    #[arg(long)]
    pub iterations: Option<usize>,
    /// reptile or fomaml (overrides the recipe).
    #[arg(long, value_enum)]
    pub algorithm: Option<AlgorithmArg>,
    /// head-free inner-loop mode: adapters or full (overrides the recipe).
    #[arg(long, value_enum)]
    pub mode: Option<InnerModeArg>,
    #[command(flatten)]
    pub data: EpisodeDataArgs,
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
}

/// One episode tokenized for the meta-learner.
fn episode_input(
    encoder: &SentenceEncoder,
    examples: &[Labelled],
    e: &Episode,
    device: &Device,
) -> Result<MetaEpisode> {
    let texts = |pairs: &[(usize, usize)]| -> Vec<&str> {
        pairs.iter().map(|p| examples[p.0].text.as_str()).collect()
    };
    Ok(MetaEpisode {
        support: inputs(encoder, &texts(&e.support), device)?,
        support_labels: e.support.iter().map(|p| p.1).collect(),
        query: inputs(encoder, &texts(&e.query), device)?,
        query_labels: e.query.iter().map(|p| p.1).collect(),
        n_way: e.classes.len(),
    })
}

/// Mean query accuracy after adapting `bert` to each episode with the inner loop.
pub fn episode_accuracy(
    bert: &BertModel,
    episodes: &[MetaEpisode],
    config: &polytask_core::fewshot::adapt::AdaptConfig,
) -> Result<f64> {
    let learner = Learner::new(bert, config)?;
    let mut sum = 0.0;
    for e in episodes {
        let adapted = learner.adapt(e.support.clone(), &e.support_labels, e.n_way, |_, _| {})?;
        sum += adapted.model.accuracy(e.query.clone(), &e.query_labels)?.0;
    }
    Ok(sum / episodes.len().max(1) as f64)
}

fn load_recipe(args: &MetaTrainArgs) -> Result<MetaRecipe> {
    let mut recipe: MetaRecipe = polytask_native::recipe::read_recipe(args.recipe.as_deref())?;
    if let Some(out) = &args.out {
        recipe.out = out.display().to_string();
    }
    if let Some(n) = args.iterations {
        recipe.meta.iterations = n;
    }
    if let Some(a) = args.algorithm {
        recipe.meta.algorithm = match a {
            AlgorithmArg::Reptile => MetaAlgorithm::Reptile,
            AlgorithmArg::Fomaml => MetaAlgorithm::Fomaml,
        };
    }
    if let Some(m) = args.mode {
        recipe.meta.inner.mode = match m {
            InnerModeArg::Adapters => AdaptMode::Adapters,
            InnerModeArg::Full => AdaptMode::Full,
        };
    }
    if recipe.meta.inner.mode == AdaptMode::Head {
        bail!(
            "meta.inner.mode = \"head\": the head is rebuilt from prototypes in every episode, \
             so there is nothing to meta-learn; use \"adapters\" or \"full\""
        );
    }
    if recipe.meta.meta_batch == 0 || recipe.meta.iterations == 0 {
        bail!("meta.meta_batch and meta.iterations must be at least 1");
    }
    Ok(recipe)
}

pub fn run(args: &MetaTrainArgs) -> Result<()> {
    let recipe = load_recipe(args)?;
    // Refuse an output that is not ours before hours of meta-training, not after.
    output::check_dir_replaceable(Path::new(&recipe.out))?;
    let data = episode_data::load(&args.data)?;
    let selected = backend::select(args.backend)?;
    let init = (!recipe.init.is_empty()).then(|| PathBuf::from(&recipe.init));
    let init_dir = model_dir::resolve(init.as_deref())?;
    let (encoder, _) = model_dir::load(&init_dir, &selected.device)?;
    let device = selected.device.clone();
    let labels = data.all_labels();
    // Meta-training draws from the training split only, so that a meta-learned encoder
    // has seen no test sentence of any class (full-way evaluation uses all classes).
    let train_labels: Vec<&str> = data.train.iter().map(|e| e.label.as_str()).collect();
    let mut train_sampler = EpisodeSampler::new(
        &train_labels,
        &data.split.train,
        recipe.way,
        recipe.shot,
        recipe.query,
        recipe.seed,
    )?;
    let mut val_sampler = EpisodeSampler::new(
        &labels,
        &data.split.val,
        recipe.way,
        recipe.val_shot,
        recipe.query,
        recipe.seed ^ 0x5a1,
    )?;
    let val: Vec<MetaEpisode> = (0..recipe.val_episodes)
        .map(|_| episode_input(&encoder, &data.all, &val_sampler.sample(), &device))
        .collect::<Result<_>>()?;
    let mut val_config = recipe.meta.inner.clone();
    val_config.seed = recipe.seed;

    let out = PathBuf::from(&recipe.out);
    let mut theta = Learner::new(&encoder.model, &recipe.meta.inner)?.into_encoder();
    let mut learner = MetaLearner::new(recipe.meta.clone());
    eprintln!(
        "backend: {}; {}: {} meta-train / {} meta-val classes; {:?} of {} ({} top blocks), {} meta-updates of {} episodes",
        selected.description,
        data.name,
        data.split.train.len(),
        data.split.val.len(),
        recipe.meta.algorithm,
        recipe.meta.inner.mode.name(),
        recipe.meta.inner.layers,
        recipe.meta.iterations,
        recipe.meta.meta_batch
    );
    let t0 = Instant::now();
    let start_acc = episode_accuracy(&theta, &val, &val_config)?;
    eprintln!(
        "meta-val {}-way {}-shot accuracy at the start: {start_acc:.4} ({:.1} s)",
        recipe.way,
        recipe.val_shot,
        t0.elapsed().as_secs_f64()
    );
    let mut history = vec![json!({"iteration": 0, "val_accuracy": start_acc})];
    let mut best = (start_acc, 0usize);
    // The best encoder so far (tensors are shared, not copied).
    let mut best_theta = theta.clone();
    save(&out, &init_dir, &theta, &recipe, &data, &history, best)?;

    let stop = progress::stop_on_ctrl_c();
    let bar = progress::steps_bar(recipe.meta.iterations as u64, 0);
    let (mut ema_loss, mut ema_acc) = (None::<f32>, None::<f64>);
    for it in 1..=recipe.meta.iterations {
        if stop.load(Ordering::SeqCst) {
            bar.abandon();
            eprintln!(
                "interrupted; the best encoder so far (iteration {}) is in {}",
                best.1,
                out.display()
            );
            return Err(Interrupted.into());
        }
        let batch: Vec<MetaEpisode> = (0..recipe.meta.meta_batch)
            .map(|_| episode_input(&encoder, &data.train, &train_sampler.sample(), &device))
            .collect::<Result<_>>()?;
        let (next, report) = learner.step(theta, &batch)?;
        theta = next;
        ema_loss = Some(ema_loss.map_or(report.query_loss, |e| 0.9 * e + 0.1 * report.query_loss));
        ema_acc = Some(ema_acc.map_or(report.query_accuracy, |e| {
            0.9 * e + 0.1 * report.query_accuracy
        }));
        bar.set_message(format!(
            "query loss {:.3} acc {:.3} (meta lr {:.3})",
            ema_loss.unwrap_or_default(),
            ema_acc.unwrap_or_default(),
            learner.meta_lr()
        ));
        bar.inc(1);
        if it % recipe.val_every.max(1) == 0 || it == recipe.meta.iterations {
            let acc = episode_accuracy(&theta, &val, &val_config)?;
            history.push(json!({
                "iteration": it,
                "val_accuracy": acc,
                "train_query_loss": ema_loss,
                "train_query_accuracy": ema_acc,
                "seconds": t0.elapsed().as_secs_f64(),
            }));
            let improved = acc > best.0;
            if improved {
                best = (acc, it);
            }
            bar.suspend(|| {
                eprintln!(
                    "iteration {it}: meta-val accuracy {acc:.4}{}",
                    if improved { " (best, saved)" } else { "" }
                )
            });
            if improved {
                best_theta = theta.clone();
                save(&out, &init_dir, &theta, &recipe, &data, &history, best)?;
            }
        }
    }
    bar.finish_and_clear();
    // Keep the history complete even when the last evaluation was not the best.
    save(&out, &init_dir, &best_theta, &recipe, &data, &history, best)?;
    eprintln!(
        "done in {:.0} s: best meta-val accuracy {:.4} at iteration {} (start {start_acc:.4}); \
         encoder in {}",
        t0.elapsed().as_secs_f64(),
        best.0,
        best.1,
        out.display()
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn save(
    out: &Path,
    init_dir: &Path,
    theta: &BertModel,
    recipe: &MetaRecipe,
    data: &episode_data::EpisodeData,
    history: &[serde_json::Value],
    best: (f64, usize),
) -> Result<()> {
    let init_file = |name: &str| read(&init_dir.join(name));
    let weights = bert_to_safetensors(theta)?;
    let meta = serde_json::to_vec_pretty(&json!({
        "recipe": recipe,
        "init": init_dir.display().to_string(),
        "dataset": data.name,
        "split": {"train": data.split.train, "val": data.split.val, "test": data.split.test},
        "best": {"val_accuracy": best.0, "iteration": best.1},
        "history": history,
    }))?;
    let config = init_file("config.json")?;
    let tokenizer = init_file("tokenizer.json")?;
    output::write_dir_atomic(
        out,
        &[
            ("config.json", &config),
            ("tokenizer.json", &tokenizer),
            ("model.safetensors", &weights),
            ("meta.json", &meta),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meta_recipes_in_the_repo_parse_and_typos_are_refused() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../recipes");
        let mut algorithms = Vec::new();
        for name in ["meta-fomaml.toml", "meta-reptile.toml"] {
            let text = std::fs::read_to_string(dir.join(name)).unwrap();
            let r: MetaRecipe = toml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(r.meta.inner.mode, AdaptMode::Adapters, "{name}");
            algorithms.push(r.meta.algorithm);
        }
        assert_ne!(algorithms[0], algorithms[1]);
        let e = toml::from_str::<MetaRecipe>("[meta]\nmeta_lrr = 1.0\n").unwrap_err();
        assert!(e.to_string().contains("meta_lrr"), "{e}");
    }
}
