//! `core-train [train RECIPE]`: multi-task training from a recipe; the loop itself is
//! [`polytask_native::trainer::Trainer`].

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Result, bail};
use polytask_native::backend::BackendChoice;
use polytask_native::corpus::DataArgs;
use polytask_native::recipe::{self, Recipe};
use polytask_native::run_dir;
use polytask_native::trainer::{TrainOptions, Trainer};

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

pub fn run(args: &TrainArgs) -> Result<()> {
    let started = Instant::now();
    let mut recipe = match &args.recipe {
        Some(path) => Recipe::load(path)?,
        None => Recipe::parse(
            recipe::DEFAULT_RECIPE,
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
    Trainer::new(recipe, options)?.run()
}

/// `core-train` without a command: the default recipe into `runs/default/`, resumed when
/// a checkpoint is there.
pub fn run_default() -> Result<()> {
    eprintln!(
        "core-train: running the default recipe (recipes/default.toml): multi-task SNIPS \
         intent + slots and CoNLL-2003 NER on subsets, about 10 minutes on 2 CPU cores.\n\
         Full recipes: core-train train recipes/multitask.toml (and conll2003.toml, snips.toml, \
         clinc150.toml for single-task baselines). core-train --help lists every command."
    );
    let args = TrainArgs {
        recipe: None,
        out: None,
        resume: run_dir::resolve(Path::new("runs/default/last")).is_some(),
        backend: BackendChoice::Auto,
        data: DataArgs {
            data_dir: None,
            mirror: None,
        },
        max_steps: None,
        epochs: None,
        seed: None,
        log_every: 10,
    };
    run(&args)
}
