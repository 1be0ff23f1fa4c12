//! `core-train distill RECIPE`: knowledge distillation. The recipe is a training recipe with
//! a `[distill]` section naming the teacher(s); the run is a training run in every other
//! way (run directory, checkpoints, `--resume`, Ctrl-C, metrics, results table), through
//! [`polytask_native::trainer::Trainer`], and its student is an ordinary checkpoint.

use anyhow::{Result, bail};
use polytask_native::trainer::{TrainArgs, Trainer};

pub fn run(args: &TrainArgs) -> Result<()> {
    if args.recipe.is_none() {
        bail!("give a recipe with a [distill] section, e.g. recipes/distill-3layer.toml");
    }
    let (recipe, options) = args.recipe_and_options()?;
    if recipe.distill.is_none() {
        bail!(
            "{}: no [distill] section; name the teacher(s) there (recipes/README.md), or run \
             the recipe with `core-train train`",
            options.recipe_file
        );
    }
    Trainer::new(recipe, options)?.run()
}
