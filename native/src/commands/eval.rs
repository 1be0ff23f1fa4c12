//! `core-train eval MODEL_DIR`: scores a saved model on the dev or test split of the data
//! its recipe names, with per-class (sentence tasks) and per-type (token tasks) reports.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use polytask_core::eval::tagging::TagDecoding;
use serde_json::Value;

use polytask_native::backend::{self, BackendChoice};
use polytask_native::corpus::{DataArgs, encode_sources, load_sources};
use polytask_native::evaluate::{self, score_split};
use polytask_native::recipe::Recipe;
use polytask_native::run_dir;

#[derive(clap::Args, Clone, Debug)]
pub struct EvalArgs {
    /// A saved model directory (OUT/best or OUT/last of a training run).
    pub model: PathBuf,
    /// Which split to score.
    #[arg(long, value_enum, default_value_t = Split::Test)]
    pub split: Split,
    /// Print the full report as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// List every class of sentence tasks (by default the 10 lowest F1).
    #[arg(long)]
    pub all_classes: bool,
    /// How token tasks' tags are decoded: `iob2` (the most probable valid IOB2 sequence,
    /// what training saved) or `argmax` (each word on its own, for comparison).
    #[arg(long)]
    pub decode: Option<TagDecoding>,
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    #[command(flatten)]
    pub data: DataArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Split {
    Dev,
    Test,
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let selected = backend::select(args.backend)?;
    let (mut saved, tokenizer, dir) = run_dir::load(&args.model, &selected.device)?;
    if let Some(decoding) = args.decode {
        saved.model.spec.decoding = decoding;
    }
    if saved.recipe_toml.is_empty() {
        bail!(
            "{}: no recipe.toml, so the evaluation data is unknown",
            dir.display()
        );
    }
    let recipe = Recipe::parse(
        &saved.recipe_toml,
        &dir.join("recipe.toml").display().to_string(),
        Path::new("."),
    )?;
    let sources = load_sources(&recipe, &args.data)?;
    let data = encode_sources(&sources, &saved.model.spec, &tokenizer)?;
    let test = args.split == Split::Test;
    // Out-of-scope thresholds come from dev: the checkpoint saved them; for one that did
    // not (`last`, or trained before they were saved), test scoring fits them on dev first.
    let unfitted = (saved.model.spec.tasks.iter())
        .any(|t| t.out_of_scope.is_some() && t.out_of_scope_threshold.is_none());
    if test && unfitted {
        eprintln!("fitting the out-of-scope threshold on dev first");
        let dev = score_split(
            &saved.model,
            &data,
            false,
            args.batch_size,
            tokenizer.pad_id(),
            &selected.device,
        )?;
        evaluate::set_oos_thresholds(&mut saved.model, &dev);
    }
    let scores = score_split(
        &saved.model,
        &data,
        test,
        args.batch_size,
        tokenizer.pad_id(),
        &selected.device,
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&scores)?);
        return Ok(());
    }
    let name = if test { "test" } else { "dev" };
    println!("{}\n", evaluate::table(&[(name, &scores)]));
    for (task, v) in &scores {
        let (list, key, label) = match v.get("kind").and_then(Value::as_str) {
            Some("token") => ("per_type", "kind", "entity type"),
            _ => ("per_class", "label", "class"),
        };
        let Some(rows) = v.get(list).and_then(Value::as_array) else {
            continue;
        };
        let mut rows: Vec<&Value> = rows.iter().collect();
        let shown = if list == "per_class" && !args.all_classes && rows.len() > 10 {
            rows.sort_by(|a, b| {
                let f = |x: &Value| x.get("f1").and_then(Value::as_f64).unwrap_or(0.0);
                f(a).total_cmp(&f(b))
            });
            println!(
                "{task}: the 10 {label}es with the lowest F1 of {} (--all-classes for all)",
                rows.len()
            );
            10
        } else {
            println!("{task}: per {label}");
            rows.len()
        };
        println!(
            "  {:<32} {:>9} {:>9} {:>9} {:>8}",
            label, "precision", "recall", "f1", "support"
        );
        for r in rows.iter().take(shown) {
            let g = |k: &str| r.get(k).and_then(Value::as_f64).unwrap_or(0.0);
            println!(
                "  {:<32} {:>9.4} {:>9.4} {:>9.4} {:>8}",
                r.get(key).and_then(Value::as_str).unwrap_or("?"),
                g("precision"),
                g("recall"),
                g("f1"),
                r.get("support").and_then(Value::as_u64).unwrap_or(0)
            );
        }
        println!();
    }
    Ok(())
}
