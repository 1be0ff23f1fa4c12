//! Training recipes: TOML files (`recipes/*.toml`) that say which model, which tasks on
//! which data, and how to train. Every field is documented in `recipes/README.md`; unknown
//! fields are errors (a typo never silently falls back to a default).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use polytask_core::Pooling;
use polytask_core::data::sampler::TaskSampling;
use polytask_core::train::distill::{DistillConfig, LayerMatch};
use polytask_core::train::loss::LossWeighting;
use serde::{Deserialize, Serialize};

/// The recipe `core-train` runs when called without arguments.
pub const DEFAULT_RECIPE: &str = include_str!("../../recipes/default.toml");

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Short name; the default output directory is `runs/NAME`.
    pub name: String,
    #[serde(default)]
    pub model: ModelSection,
    #[serde(default)]
    pub train: TrainSection,
    #[serde(rename = "task")]
    pub tasks: Vec<TaskSection>,
    /// Knowledge distillation (`core-train distill`): the teachers and the loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distill: Option<DistillSection>,
}

/// `[distill]`: who teaches the student and how (`recipes/README.md`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillSection {
    /// One teacher for every task: a saved model directory (a training run's `best/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher: Option<PathBuf>,
    /// A teacher per task name (overrides `teacher` for that task).
    #[serde(default)]
    pub teachers: std::collections::BTreeMap<String, PathBuf>,
    /// Softmax temperature of the soft targets.
    #[serde(default = "default_temperature")]
    pub temperature: f32,
    /// Weight of the soft-target loss; 1 − alpha goes to the gold labels.
    #[serde(default = "default_kd_alpha")]
    pub alpha: f32,
    /// The student is the (single) teacher with only these blocks (0-based), heads
    /// included; without it, the student is `[model]` with fresh heads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub student_layers: Option<Vec<usize>>,
    /// Hidden-state matches (MSE): `{ teacher = 6, student = 3, weight = 1.0 }`.
    #[serde(default)]
    pub hidden: Vec<LayerMatch>,
    /// Attention-map matches (KL), by block.
    #[serde(default)]
    pub attention: Vec<LayerMatch>,
    /// A directory where the teachers' logits on the training sentences are kept: computed
    /// once, then read by every run with the same teachers and data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<PathBuf>,
}

fn default_temperature() -> f32 {
    2.0
}

fn default_kd_alpha() -> f32 {
    0.5
}

impl DistillSection {
    /// The loss settings, for core.
    pub fn config(&self) -> DistillConfig {
        DistillConfig {
            temperature: self.temperature,
            alpha: self.alpha,
            hidden: self.hidden.clone(),
            attention: self.attention.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Hub id of the pretrained encoder (fetched into the cache when missing).
    #[serde(default = "default_model")]
    pub pretrained: String,
    /// A local model directory instead (config.json, tokenizer.json, model.safetensors).
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub pooling: Pooling,
    #[serde(default = "default_dropout")]
    pub head_dropout: f64,
    /// Longest input in word pieces.
    #[serde(default = "default_max_len")]
    pub max_len: usize,
    /// Add a learned embedding of each word's capitalisation to the encoder's input
    /// (`polytask_core::model::casing`): the uncased encoder then sees "Apple" and "apple" apart.
    #[serde(default)]
    pub casing: bool,
}

impl Default for ModelSection {
    fn default() -> Self {
        ModelSection {
            pretrained: default_model(),
            path: None,
            pooling: Pooling::Mean,
            head_dropout: default_dropout(),
            max_len: default_max_len(),
            casing: false,
        }
    }
}

fn default_model() -> String {
    crate::fetch::DEFAULT_MODEL.to_string()
}
fn default_dropout() -> f64 {
    0.1
}
fn default_max_len() -> usize {
    128
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    Proportional,
    Temperature,
    RoundRobin,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    /// Passes over the (sub-sampled) training data; one epoch = Σ_sources ⌈n / batch⌉ steps.
    #[serde(default = "default_epochs")]
    pub epochs: f64,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Peak learning rate.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Fraction of all steps spent warming up linearly.
    #[serde(default = "default_warmup")]
    pub warmup_ratio: f64,
    #[serde(default = "default_wd")]
    pub weight_decay: f64,
    /// Learning-rate multiplier of the task heads (they start from scratch).
    #[serde(default = "one_f64")]
    pub head_lr_scale: f64,
    /// Clip the global gradient norm (0: off).
    #[serde(default = "default_clip")]
    pub max_grad_norm: f64,
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default = "default_sampling")]
    pub sampling: Sampling,
    /// α of temperature sampling, p_t ∝ n_t^α.
    #[serde(default = "default_alpha")]
    pub temperature_alpha: f64,
    #[serde(default = "default_weighting")]
    pub loss_weighting: LossWeighting,
    /// Evaluate on dev every this many steps (0: once per epoch).
    #[serde(default)]
    pub eval_every: u64,
    /// Save the resumable checkpoint every this many steps (0: at each evaluation only).
    #[serde(default = "default_ckpt")]
    pub checkpoint_every: u64,
    /// Dev metric that picks the best checkpoint: `mean` (of every task's main metric) or
    /// `TASK.METRIC` (e.g. `ner.f1`, `intent.accuracy`).
    #[serde(default = "default_select")]
    pub select_metric: String,
    /// Batch size for evaluation.
    #[serde(default = "default_eval_batch")]
    pub eval_batch_size: usize,
}

impl Default for TrainSection {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

fn default_epochs() -> f64 {
    3.0
}
fn default_batch() -> usize {
    32
}
fn default_lr() -> f64 {
    5e-5
}
fn default_warmup() -> f64 {
    0.1
}
fn default_wd() -> f64 {
    0.01
}
fn default_clip() -> f64 {
    1.0
}
fn one_f64() -> f64 {
    1.0
}
fn default_seed() -> u64 {
    42
}
fn default_sampling() -> Sampling {
    Sampling::Proportional
}
fn default_alpha() -> f64 {
    0.5
}
fn default_weighting() -> LossWeighting {
    LossWeighting::Static
}
fn default_ckpt() -> u64 {
    200
}
fn default_select() -> String {
    "mean".into()
}
fn default_eval_batch() -> usize {
    64
}

/// Which dataset a task reads, and which of its columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetName {
    Clinc150,
    Snips,
    Atis,
    Conll2003,
    Sst2,
    /// The generic JSON-lines format; `train`, `dev` and `test` give the files.
    Jsonl,
}

impl DatasetName {
    pub fn as_str(&self) -> &'static str {
        match self {
            DatasetName::Clinc150 => "clinc150",
            DatasetName::Snips => "snips",
            DatasetName::Atis => "atis",
            DatasetName::Conll2003 => "conll2003",
            DatasetName::Sst2 => "sst2",
            DatasetName::Jsonl => "jsonl",
        }
    }
}

/// For SNIPS and ATIS: the intent (sentence task) or the slots (token task).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Column {
    Intent,
    Slots,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSection {
    /// Unique task name (used in metrics, checkpoints and `predict` output).
    pub name: String,
    pub dataset: DatasetName,
    /// SNIPS/ATIS only: `intent` or `slots`.
    #[serde(default)]
    pub column: Option<Column>,
    /// λ_t in the joint loss.
    #[serde(default = "one")]
    pub weight: f32,
    /// Use at most this many training examples (a seeded random subset; 0: all).
    #[serde(default)]
    pub max_train: usize,
    /// Evaluate on at most this many dev/test examples (a seeded random subset; 0: all).
    #[serde(default)]
    pub max_eval: usize,
    /// CLINC150: train and evaluate with the out-of-scope examples as class `oos`.
    #[serde(default = "yes")]
    pub include_oos: bool,
    /// JSON-lines files (dataset = "jsonl"); relative paths are from the recipe's folder.
    #[serde(default)]
    pub train: Option<PathBuf>,
    #[serde(default)]
    pub dev: Option<PathBuf>,
    #[serde(default)]
    pub test: Option<PathBuf>,
}

fn one() -> f32 {
    1.0
}
fn yes() -> bool {
    true
}

/// A recipe's text with fields set from `FIELD=VALUE` overrides (`train.lr=1e-4`,
/// `distill.student_layers=[0, 3]`): the value is read as TOML, or as a string when it is
/// not TOML. Sections are made when missing; the result is checked as any recipe is.
pub fn with_overrides(text: &str, overrides: &[String]) -> Result<String> {
    if overrides.is_empty() {
        return Ok(text.to_string());
    }
    let mut doc: toml::Table = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
    for o in overrides {
        let Some((key, value)) = o.split_once('=') else {
            bail!("--set {o}: expected FIELD=VALUE, e.g. distill.alpha=0.9");
        };
        let value = match toml::from_str::<toml::Table>(&format!("v = {}", value.trim())) {
            Ok(mut t) => t.remove("v").expect("parsed"),
            Err(_) => toml::Value::String(value.trim().to_string()),
        };
        let path: Vec<&str> = key.trim().split('.').collect();
        if path.iter().any(|p| p.is_empty()) {
            bail!("--set {o}: {key:?} is not a field name");
        }
        let (last, sections) = path.split_last().expect("split gives one part at least");
        let mut table = &mut doc;
        for part in sections {
            table = table
                .entry(part.to_string())
                .or_insert_with(|| toml::Value::Table(Default::default()))
                .as_table_mut()
                .with_context(|| format!("--set {o}: {part} is not a section"))?;
        }
        table.insert(last.to_string(), value);
    }
    Ok(toml::to_string(&doc)?)
}

/// A recipe of type `T` (`meta-train`'s, `contrastive-train`'s) from the TOML file `path`,
/// or its defaults without one; an unreadable file or a bad field is named with the file.
pub fn read_recipe<T: serde::de::DeserializeOwned + Default>(path: Option<&Path>) -> Result<T> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

impl Recipe {
    /// Parses and checks a recipe; `file` names it in errors. Relative paths are resolved
    /// against `base`.
    pub fn parse(text: &str, file: &str, base: &Path) -> Result<Self> {
        let mut recipe: Recipe = toml::from_str(text).map_err(|e| {
            // toml's message carries the line, column and field.
            anyhow::anyhow!("{file}: {e}")
        })?;
        recipe.check(file)?;
        for t in &mut recipe.tasks {
            for p in [&mut t.train, &mut t.dev, &mut t.test]
                .into_iter()
                .flatten()
            {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        }
        if let Some(p) = &mut recipe.model.path
            && p.is_relative()
        {
            *p = base.join(&*p);
        }
        if let Some(d) = &mut recipe.distill {
            for p in d
                .teacher
                .iter_mut()
                .chain(d.teachers.values_mut())
                .chain(d.cache.iter_mut())
            {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        }
        Ok(recipe)
    }

    /// Reads a recipe file.
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_with(path, &[])
    }

    /// Reads a recipe file and sets the fields `overrides` name ([`with_overrides`]).
    pub fn load_with(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read the recipe", path.display()))?;
        let text =
            with_overrides(&text, overrides).with_context(|| format!("{}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
        Self::parse(&text, &path.display().to_string(), &base)
    }

    fn check(&self, file: &str) -> Result<()> {
        let t = &self.train;
        if self.tasks.is_empty() {
            bail!("{file}: no [[task]]; a recipe trains at least one task");
        }
        if let Some(d) = &self.distill {
            let names: Vec<&str> = self.tasks.iter().map(|t| t.name.as_str()).collect();
            for task in d.teachers.keys() {
                if !names.contains(&task.as_str()) {
                    bail!(
                        "{file}: distill.teachers.{task}: no task {task:?} (the tasks: {names:?})"
                    );
                }
            }
            if d.teacher.is_none() && d.teachers.is_empty() {
                bail!(
                    "{file}: [distill] names no teacher: give distill.teacher or distill.teachers"
                );
            }
            d.config()
                .check_values()
                .map_err(|e| anyhow::anyhow!("{file}: distill.{e}"))?;
            if let Some(dir) = &d.cache {
                crate::distill::cache::check_config(&d.config(), dir)
                    .map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
            }
        }
        let positive = [
            ("train.batch_size", t.batch_size as f64),
            ("train.eval_batch_size", t.eval_batch_size as f64),
            ("train.lr", t.lr),
            ("train.head_lr_scale", t.head_lr_scale),
            ("train.epochs", t.epochs),
            ("model.max_len", self.model.max_len as f64),
        ];
        for (field, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                bail!("{file}: {field} must be > 0, got {v}");
            }
        }
        if self.model.max_len < 3 {
            bail!(
                "{file}: model.max_len must be at least 3 ([CLS], one word piece, [SEP]), got {}",
                self.model.max_len
            );
        }
        let name_ok = !self.name.is_empty()
            && self.name != "."
            && self.name != ".."
            && self
                .name
                .chars()
                .all(|c| c.is_alphanumeric() || "-_.".contains(c));
        if !name_ok {
            bail!(
                "{file}: name = {:?}: a recipe's name is its output folder under runs/, so it \
                 may hold only letters, digits, '-', '_' and '.' (give --out for another place)",
                self.name
            );
        }
        for (field, v) in [
            ("train.weight_decay", t.weight_decay),
            ("train.max_grad_norm", t.max_grad_norm),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                bail!("{file}: {field} must be ≥ 0 (0: off), got {v}");
            }
        }
        if !(0.0..1.0).contains(&t.warmup_ratio) {
            bail!(
                "{file}: train.warmup_ratio must be in [0, 1), got {}",
                t.warmup_ratio
            );
        }
        if !(0.0..=1.0).contains(&self.model.head_dropout) {
            bail!(
                "{file}: model.head_dropout must be in [0, 1], got {}",
                self.model.head_dropout
            );
        }
        if t.sampling == Sampling::Temperature
            && (t.temperature_alpha.is_nan() || t.temperature_alpha <= 0.0)
        {
            bail!(
                "{file}: train.temperature_alpha must be > 0, got {}",
                t.temperature_alpha
            );
        }
        let mut names = std::collections::BTreeSet::new();
        for task in &self.tasks {
            let where_ = format!("{file}: task {:?}", task.name);
            if !names.insert(task.name.as_str()) {
                bail!("{where_}: the name is used twice");
            }
            let needs_column = matches!(task.dataset, DatasetName::Snips | DatasetName::Atis);
            match (needs_column, task.column) {
                (true, None) => bail!(
                    "{where_}: dataset {} needs column = \"intent\" or \"slots\"",
                    task.dataset.as_str()
                ),
                (false, Some(_)) => bail!("{where_}: column applies only to snips and atis"),
                _ => {}
            }
            let is_jsonl = task.dataset == DatasetName::Jsonl;
            if is_jsonl && (task.train.is_none() || task.dev.is_none()) {
                bail!(
                    "{where_}: dataset jsonl needs train = \"FILE\" and dev = \"FILE\" (test optional)"
                );
            }
            if !is_jsonl && (task.train.is_some() || task.dev.is_some() || task.test.is_some()) {
                bail!("{where_}: train/dev/test files apply only to dataset = \"jsonl\"");
            }
            if !(task.weight.is_finite() && task.weight >= 0.0) {
                bail!("{where_}: weight must be ≥ 0, got {}", task.weight);
            }
        }
        if self.tasks.iter().all(|task| task.weight == 0.0) {
            bail!(
                "{file}: every task has weight = 0, so the loss is 0 and nothing would train; \
                 give at least one task a weight > 0"
            );
        }
        if t.select_metric != "mean" {
            let Some((task, _)) = t.select_metric.split_once('.') else {
                bail!(
                    "{file}: train.select_metric must be \"mean\" or \"TASK.METRIC\", got {:?}",
                    t.select_metric
                );
            };
            if !names.contains(task) {
                bail!(
                    "{file}: train.select_metric names task {task:?}, which the recipe does not have"
                );
            }
        }
        Ok(())
    }

    /// The task sampling strategy.
    pub fn sampling(&self) -> TaskSampling {
        match self.train.sampling {
            Sampling::Proportional => TaskSampling::Proportional,
            Sampling::Temperature => TaskSampling::Temperature {
                alpha: self.train.temperature_alpha,
            },
            Sampling::RoundRobin => TaskSampling::RoundRobin,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recipes_in_the_repo_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../recipes");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let other = path.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with("meta-") || n.starts_with("contrastive-")
            });
            // meta-*.toml and contrastive-*.toml are recipes of meta-train and
            // contrastive-train (tested beside those commands).
            if path.extension().is_some_and(|e| e == "toml") && !other {
                Recipe::load(&path).unwrap_or_else(|e| panic!("{e:#}"));
                n += 1;
            }
        }
        assert!(n >= 3, "expected the recipes in {}", dir.display());
        Recipe::parse(DEFAULT_RECIPE, "default", Path::new(".")).unwrap();
    }

    #[test]
    fn overrides_set_fields_and_typos_are_still_refused() {
        let text = "name = \"x\"\n[train]\nlr = 1e-3\n[[task]]\nname = \"a\"\ndataset = \"snips\"\ncolumn = \"intent\"\n";
        let set = |o: &[&str]| {
            let o: Vec<String> = o.iter().map(|s| s.to_string()).collect();
            with_overrides(text, &o).and_then(|t| Recipe::parse(&t, "r.toml", Path::new(".")))
        };
        let r = set(&["train.lr=2e-4", "train.seed = 9", "model.pooling=cls"]).unwrap();
        assert_eq!((r.train.lr, r.train.seed), (2e-4, 9));
        assert_eq!(r.model.pooling, Pooling::Cls);
        let r = set(&[
            "distill.teacher=runs/t/best",
            "distill.student_layers=[0, 3]",
        ])
        .unwrap();
        let d = r.distill.unwrap();
        assert_eq!(d.student_layers, Some(vec![0, 3]));
        assert_eq!(d.teacher, Some(PathBuf::from("./runs/t/best")));
        let e = set(&["train.learning_rate=1"]).unwrap_err().to_string();
        assert!(e.contains("learning_rate"), "{e}");
        let e = set(&["train.lr"]).unwrap_err().to_string();
        assert!(e.contains("expected FIELD=VALUE"), "{e}");
        let e = set(&["name.x=1"]).unwrap_err().to_string();
        assert!(e.contains("name is not a section"), "{e}");
    }

    #[test]
    fn typos_and_bad_values_are_named() {
        let base = "name = \"x\"\n[[task]]\nname = \"a\"\ndataset = \"sst2\"\n";
        let e = Recipe::parse(&format!("{base}wieght = 2\n"), "r.toml", Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(e.contains("r.toml") && e.contains("wieght"), "{e}");
        let e = Recipe::parse(
            &format!("{base}[train]\nlr = -1\n"),
            "r.toml",
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("train.lr must be > 0, got -1"), "{e}");
        let e = Recipe::parse(
            "name = \"x\"\n[[task]]\nname = \"a\"\ndataset = \"snips\"\n",
            "r.toml",
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("needs column"), "{e}");
        let e = Recipe::parse(
            &format!("{base}[train]\nselect_metric = \"b.f1\"\n"),
            "r.toml",
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("\"b\""), "{e}");
    }
}
