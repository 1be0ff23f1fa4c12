//! `core-train [train RECIPE]`: multi-task training from a recipe; the loop itself is
//! [`polytask_native::trainer::Trainer`].

use std::path::Path;

use anyhow::{Result, bail};
use polytask_native::backend::BackendChoice;
use polytask_native::corpus::DataArgs;
use polytask_native::run_dir;
use polytask_native::trainer::{TrainArgs, Trainer};

pub fn run(args: &TrainArgs) -> Result<()> {
    let (recipe, options) = args.recipe_and_options()?;
    if recipe.distill.is_some() {
        bail!(
            "{}: the recipe has a [distill] section; run it with `core-train distill`",
            options.recipe_file
        );
    }
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
        set: Vec::new(),
    };
    run(&args)
}
