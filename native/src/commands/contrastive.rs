//! `core-train contrastive-train [RECIPE]`: a few-shot-ready encoder. Supervised
//! contrastive pre-fine-tuning (CPFT's second stage) on the labelled training sentences of
//! other intent datasets: class-balanced batches, same-intent sentences pulled together and
//! the others pushed apart on L2-normalised mean-pooled features (two dropout views each).
//!
//! Every `val_every` steps the encoder is scored as a user would meet it: all classes of
//! `val_dataset`, `val_shot` training sentences each, nearest class prototype on its dev
//! split; the best encoder is kept. For a leave-one-dataset-out test, `val_dataset` is the
//! held-out dataset: its dev split picks the step, its test split is never read here.
//!
//! The output is a model directory (`config.json`, `tokenizer.json`, `model.safetensors`,
//! `meta.json` with the recipe, the labels learned and the validation history) that `adapt`,
//! `eval-fewshot --init`, `export`, `train` (as `model`) and the page take, written
//! atomically whenever the validation improves.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Result, bail};
use burn::tensor::{Device, Tensor, TensorData};
use polytask_core::data::episodes::EpisodeSampler;
use polytask_core::eval::metrics::accuracy;
use polytask_core::fewshot::contrastive::{ContrastiveConfig, ContrastiveTrainer};
use polytask_core::fewshot::prototypes::{nearest_prototype, prototypes};
use polytask_core::io::checkpoint::bert_to_safetensors;
use polytask_core::rng::Rng;
use polytask_core::{Pooling, SentenceEncoder};
use serde::{Deserialize, Serialize};
use serde_json::json;

use polytask_native::adaptation::inputs;
use polytask_native::backend::{self, BackendChoice};
use polytask_native::corpus::DataArgs;
use polytask_native::episode_data::{INTENT_DATASETS, Labelled, intent_dataset, read_labelled};
use polytask_native::files::read;
use polytask_native::progress::{self, Interrupted};
use polytask_native::{model_dir, output};

/// A contrastive pre-fine-tuning recipe (`recipes/contrastive-*.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContrastiveRecipe {
    /// Output directory.
    pub out: String,
    /// Starting encoder: a model directory or a training run's best/ ("" = all-MiniLM-L6-v2).
    pub init: String,
    /// What it learns from: the training splits of known intent datasets (snips, atis,
    /// clinc150), or labelled files of one's own (a path: JSON lines, or `seq.in` + `label`).
    pub datasets: Vec<String>,
    /// Seeds the batches and the validation's support draw.
    pub seed: u64,
    /// Score every this many steps (and after the last).
    pub val_every: usize,
    /// Scored on: all classes of this intent dataset, `val_shot` of its training sentences
    /// each, nearest prototype on its dev split ("" = no validation; the last encoder is kept).
    pub val_dataset: String,
    pub val_shot: usize,
    pub contrastive: ContrastiveConfig,
}

impl Default for ContrastiveRecipe {
    fn default() -> Self {
        ContrastiveRecipe {
            out: "runs/contrastive".into(),
            init: String::new(),
            datasets: vec!["snips".into(), "atis".into()],
            seed: 1,
            val_every: 50,
            val_dataset: "clinc150".into(),
            val_shot: 5,
            contrastive: ContrastiveConfig::default(),
        }
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct ContrastiveArgs {
    /// The recipe (TOML; every field optional, see recipes/README.md).
    pub recipe: Option<PathBuf>,
    /// Output directory (overrides the recipe).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Optimizer steps (overrides the recipe).
    #[arg(long)]
    pub steps: Option<usize>,
    #[command(flatten)]
    pub data: DataArgs,
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
}

fn load_recipe(args: &ContrastiveArgs) -> Result<ContrastiveRecipe> {
    let mut recipe: ContrastiveRecipe =
        polytask_native::recipe::read_recipe(args.recipe.as_deref())?;
    if let Some(out) = &args.out {
        recipe.out = out.display().to_string();
    }
    if let Some(n) = args.steps {
        recipe.contrastive.steps = n;
    }
    if recipe.datasets.is_empty() {
        bail!(
            "datasets = []: name at least one of {}",
            INTENT_DATASETS.join(", ")
        );
    }
    let val = &recipe.val_dataset;
    if !val.is_empty() && !INTENT_DATASETS.contains(&val.as_str()) {
        bail!(
            "val_dataset = {val:?}: one of {}, or \"\" for none",
            INTENT_DATASETS.join(", ")
        );
    }
    if !recipe.val_dataset.is_empty() && recipe.val_shot == 0 {
        bail!("val_shot = 0: the validation needs at least 1 example per class");
    }
    Ok(recipe)
}

/// The labelled sentences of one `datasets` entry: a known intent dataset's training
/// split, or a file of one's own (its labels prefixed with the file's name, as the known
/// datasets' are with theirs).
fn training_sentences(entry: &str, data: &DataArgs) -> Result<Vec<Labelled>> {
    if INTENT_DATASETS.contains(&entry) {
        return intent_dataset(entry, "train", data);
    }
    let path = Path::new(entry);
    if !path.exists() {
        bail!(
            "datasets: {entry:?} is neither one of {} nor an existing file",
            INTENT_DATASETS.join(", ")
        );
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(read_labelled(path, true)?
        .into_iter()
        .map(|e| Labelled {
            label: format!("{stem}/{}", e.label),
            ..e
        })
        .collect())
}

/// The validation: a fixed support draw (`shot` training sentences per class) and the dev
/// split, scored by the nearest class prototype.
struct Validation {
    support: Vec<Labelled>,
    support_labels: Vec<usize>,
    query: Vec<Labelled>,
    query_labels: Vec<usize>,
    n_way: usize,
}

impl Validation {
    fn new(name: &str, shot: usize, seed: u64, data: &DataArgs) -> Result<Self> {
        let train = intent_dataset(name, "train", data)?;
        let dev = intent_dataset(name, "dev", data)?;
        let mut by_class: BTreeMap<&str, Vec<&Labelled>> = BTreeMap::new();
        for e in &train {
            by_class.entry(e.label.as_str()).or_default().push(e);
        }
        let index: BTreeMap<&str, usize> =
            by_class.keys().enumerate().map(|(i, &c)| (c, i)).collect();
        let mut rng = Rng::derive(seed, 0x7a1);
        let (mut support, mut support_labels) = (Vec::new(), Vec::new());
        for (c, members) in &by_class {
            let mut members = members.clone();
            rng.shuffle(&mut members);
            for e in members.into_iter().take(shot) {
                support.push(e.clone());
                support_labels.push(index[c]);
            }
        }
        let (mut query, mut query_labels) = (Vec::new(), Vec::new());
        for e in dev {
            // A dev label that the training split lacks cannot be predicted: left out, counted.
            if let Some(&l) = index.get(e.label.as_str()) {
                query_labels.push(l);
                query.push(e);
            }
        }
        Ok(Validation {
            support,
            support_labels,
            query,
            query_labels,
            n_way: by_class.len(),
        })
    }

    /// Nearest-prototype accuracy of `encoder` on the dev sentences.
    fn score(&self, encoder: &SentenceEncoder, device: &Device) -> Result<f64> {
        let embed = |rows: &[Labelled]| -> Result<Tensor<2>> {
            let texts: Vec<&str> = rows.iter().map(|e| e.text.as_str()).collect();
            let vectors = encoder.embed(&texts, Pooling::Mean, true, 128, device)?;
            let d = encoder.config.hidden_size;
            let flat: Vec<f32> = vectors.concat();
            Ok(Tensor::from_data(
                TensorData::new(flat, [rows.len(), d]),
                device,
            ))
        };
        let protos = prototypes(embed(&self.support)?, &self.support_labels, self.n_way);
        let predicted: Vec<usize> = nearest_prototype(embed(&self.query)?, protos)
            .try_into_vec_as::<i64>()
            .map_err(|e| anyhow::anyhow!("reading the predictions back: {e:?}"))?
            .into_iter()
            .map(|p| p as usize)
            .collect();
        Ok(accuracy(&predicted, &self.query_labels))
    }
}

pub fn run(args: &ContrastiveArgs) -> Result<()> {
    let recipe = load_recipe(args)?;
    // Refuse an output that is not ours before the training, not after.
    output::check_dir_replaceable(Path::new(&recipe.out))?;
    let selected = backend::select(args.backend)?;
    let device = selected.device.clone();
    let init = (!recipe.init.is_empty()).then(|| PathBuf::from(&recipe.init));
    let init_dir = model_dir::resolve(init.as_deref())?;
    let (mut encoder, _) = model_dir::load(&init_dir, &device)?;
    let config = &recipe.contrastive;

    // The training sentences of every dataset; labels too rare for a batch left out.
    let mut examples: Vec<Labelled> = Vec::new();
    for name in &recipe.datasets {
        examples.extend(training_sentences(name, &args.data)?);
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for e in &examples {
        *counts.entry(e.label.clone()).or_default() += 1;
    }
    let (classes, rare): (Vec<String>, Vec<String>) = counts
        .keys()
        .cloned()
        .partition(|c| counts[c] >= config.per_class);
    if !rare.is_empty() {
        eprintln!(
            "note: {} labels with fewer than per_class = {} sentences are left out: {}",
            rare.len(),
            config.per_class,
            rare.iter()
                .map(|c| format!("{c} ({})", counts[c]))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if classes.len() < 2 {
        bail!(
            "{} labels with at least per_class = {} sentences: a batch needs 2 to contrast",
            classes.len(),
            config.per_class
        );
    }
    let labels: Vec<&str> = examples.iter().map(|e| e.label.as_str()).collect();
    let way = config.classes.min(classes.len());
    let mut sampler =
        EpisodeSampler::new(&labels, &classes, way, config.per_class, 0, recipe.seed)?;
    let validation = if recipe.val_dataset.is_empty() {
        None
    } else {
        Some(Validation::new(
            &recipe.val_dataset,
            recipe.val_shot,
            recipe.seed,
            &args.data,
        )?)
    };
    let mut trainer = ContrastiveTrainer::new(&encoder.model, config)?;
    eprintln!(
        "backend: {}; {} labels of {} ({} training sentences); {} of the top {} blocks, {} steps \
         of {way} labels × {} sentences × 2 views, τ {}",
        selected.description,
        classes.len(),
        recipe.datasets.join(" + "),
        examples.len(),
        config.mode.name(),
        config.layers,
        config.steps,
        config.per_class,
        config.temperature
    );
    let out = PathBuf::from(&recipe.out);
    let mut log = Log {
        history: Vec::new(),
        best: None,
        t0: Instant::now(),
    };
    encoder.model = trainer.encoder();
    if log.validate(validation.as_ref(), &recipe, &encoder, &device, 0, None)? {
        save(&out, &init_dir, &encoder, &recipe, &classes, &log)?;
    }

    let stop = progress::stop_on_ctrl_c();
    let bar = progress::steps_bar(config.steps as u64, 0);
    let mut ema: Option<f32> = None;
    for step in 1..=config.steps {
        if stop.load(Ordering::SeqCst) {
            bar.abandon();
            eprintln!(
                "interrupted; the best encoder so far is in {}",
                out.display()
            );
            return Err(Interrupted.into());
        }
        let episode = sampler.sample();
        let texts: Vec<&str> = episode
            .support
            .iter()
            .map(|p| examples[p.0].text.as_str())
            .collect();
        let batch_labels: Vec<usize> = episode.support.iter().map(|p| p.1).collect();
        let loss = trainer.step(inputs(&encoder, &texts, &device)?, &batch_labels)?;
        ema = Some(ema.map_or(loss, |e| 0.9 * e + 0.1 * loss));
        bar.set_message(format!("loss {:.3}", ema.unwrap_or_default()));
        bar.inc(1);
        if step % recipe.val_every.max(1) == 0 || step == config.steps {
            encoder.model = trainer.encoder();
            let improved = bar.suspend(|| {
                log.validate(validation.as_ref(), &recipe, &encoder, &device, step, ema)
            })?;
            if improved {
                save(&out, &init_dir, &encoder, &recipe, &classes, &log)?;
            }
        }
    }
    bar.finish_and_clear();
    // Keep the history complete even when the last validation was not the best: the
    // weights on disk stay those of the best step.
    write_meta_only(&out, &recipe, &init_dir, &classes, &log)?;
    let seconds = log.t0.elapsed().as_secs_f64();
    match log.best {
        Some((acc, step)) => eprintln!(
            "done in {seconds:.0} s: best {} dev accuracy {acc:.4} at step {step}; encoder in {}",
            recipe.val_dataset,
            out.display()
        ),
        None => eprintln!("done in {seconds:.0} s; encoder in {}", out.display()),
    }
    Ok(())
}

/// The validation history and the best step so far.
struct Log {
    history: Vec<serde_json::Value>,
    best: Option<(f64, usize)>,
    t0: Instant,
}

impl Log {
    /// Scores `encoder` after `step` steps; true when it is the one to keep (the best so
    /// far, or every step without a validation).
    fn validate(
        &mut self,
        validation: Option<&Validation>,
        recipe: &ContrastiveRecipe,
        encoder: &SentenceEncoder,
        device: &Device,
        step: usize,
        loss: Option<f32>,
    ) -> Result<bool> {
        let seconds = self.t0.elapsed().as_secs_f64();
        let Some(v) = validation else {
            self.history
                .push(json!({"step": step, "train_loss": loss, "seconds": seconds}));
            return Ok(true);
        };
        let acc = v.score(encoder, device)?;
        self.history.push(json!({
            "step": step,
            "val_accuracy": acc,
            "train_loss": loss,
            "seconds": seconds,
        }));
        let improved = self.best.is_none_or(|(b, _)| acc > b);
        if improved {
            self.best = Some((acc, step));
        }
        eprintln!(
            "step {step}: {} {}-way {}-shot nearest-prototype dev accuracy {acc:.4}{} ({seconds:.0} s)",
            recipe.val_dataset,
            v.n_way,
            recipe.val_shot,
            if improved { " (best, saved)" } else { "" }
        );
        Ok(improved)
    }
}

fn meta_json(
    recipe: &ContrastiveRecipe,
    init_dir: &Path,
    classes: &[String],
    log: &Log,
) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec_pretty(&json!({
        "objective": "supervised contrastive pre-fine-tuning",
        "recipe": recipe,
        "init": init_dir.display().to_string(),
        "labels": classes,
        "best": log.best.map(|(acc, step)| json!({"val_accuracy": acc, "step": step})),
        "history": log.history,
    }))?)
}

fn save(
    out: &Path,
    init_dir: &Path,
    encoder: &SentenceEncoder,
    recipe: &ContrastiveRecipe,
    classes: &[String],
    log: &Log,
) -> Result<()> {
    let weights = bert_to_safetensors(&encoder.model)?;
    let meta = meta_json(recipe, init_dir, classes, log)?;
    let config = read(&init_dir.join("config.json"))?;
    let tokenizer = read(&init_dir.join("tokenizer.json"))?;
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

/// The final `meta.json` beside the best weights already written.
fn write_meta_only(
    out: &Path,
    recipe: &ContrastiveRecipe,
    init_dir: &Path,
    classes: &[String],
    log: &Log,
) -> Result<()> {
    let meta = meta_json(recipe, init_dir, classes, log)?;
    let files: Vec<(&str, Vec<u8>)> = ["config.json", "tokenizer.json", "model.safetensors"]
        .into_iter()
        .map(|name| Ok((name, read(&out.join(name))?)))
        .collect::<Result<_>>()?;
    let mut all: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_slice())).collect();
    all.push(("meta.json", &meta));
    output::write_dir_atomic(out, &all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contrastive_recipes_in_the_repo_parse_and_typos_are_refused() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../recipes");
        for name in ["contrastive-snips-atis.toml", "contrastive-intents.toml"] {
            let text = std::fs::read_to_string(dir.join(name)).unwrap();
            let r: ContrastiveRecipe =
                toml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!r.datasets.is_empty(), "{name}");
        }
        let e =
            toml::from_str::<ContrastiveRecipe>("[contrastive]\ntemprature = 0.1\n").unwrap_err();
        assert!(e.to_string().contains("temprature"), "{e}");
    }
}
