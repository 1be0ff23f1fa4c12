//! Labelled sentence datasets for few-shot work, with their classes split into
//! meta-train / meta-val / meta-test sets that never overlap.
//!
//! CLINC150 (the default) is split by domain (whole domains per split, seeded); any other
//! dataset in the supported formats (`--train FILE --test FILE`, JSON lines or `seq.in` +
//! `label`) is split by class fractions. Out-of-scope examples are left out.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use polytask_core::data::episodes::ClassSplit;
use polytask_core::data::formats;

use crate::adapt_cmd::{Labelled, read_labelled};
use crate::data_fetch;
use crate::train_cmd::DataArgs;

/// Where the few-shot data comes from.
#[derive(clap::Args, Clone, Debug)]
pub struct EpisodeDataArgs {
    /// Labelled training sentences of another dataset (JSON lines, or seq.in + label);
    /// default: CLINC150.
    #[arg(long, requires = "test")]
    pub train: Option<PathBuf>,
    /// Its test sentences.
    #[arg(long, requires = "train")]
    pub test: Option<PathBuf>,
    /// CLINC150: domains for meta-train, meta-val and meta-test.
    #[arg(long, value_delimiter = ',', default_value = "6,2,2")]
    pub domains: Vec<usize>,
    /// Other datasets: fractions of the classes for meta-train and meta-val (the rest is
    /// meta-test).
    #[arg(long, value_delimiter = ',', default_value = "0.6,0.2")]
    pub fractions: Vec<f64>,
    /// Seeds the class split.
    #[arg(long, default_value_t = 1)]
    pub split_seed: u64,
    #[command(flatten)]
    pub data: DataArgs,
}

/// A dataset with its class split.
pub struct EpisodeData {
    pub name: String,
    pub split: ClassSplit,
    /// Train split examples.
    pub train: Vec<Labelled>,
    /// Test split examples.
    pub test: Vec<Labelled>,
    /// Every example (train, val and test splits pooled): what episodes draw from.
    pub all: Vec<Labelled>,
}

impl EpisodeData {
    /// Labels of `all`, for the episode sampler.
    pub fn all_labels(&self) -> Vec<&str> {
        self.all.iter().map(|e| e.label.as_str()).collect()
    }
}

fn read_text(path: &Path) -> Result<(String, String)> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let file = path.display().to_string();
    let text = formats::decode(&bytes, &file)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .to_string();
    Ok((text, file))
}

fn clinc(args: &EpisodeDataArgs) -> Result<EpisodeData> {
    let [n_train, n_val, n_test] = args.domains[..] else {
        bail!(
            "--domains takes three numbers (meta-train, meta-val, meta-test), got {:?}",
            args.domains
        );
    };
    let data_dir = args
        .data
        .data_dir
        .clone()
        .unwrap_or_else(data_fetch::default_data_dir);
    let mirror = args
        .data
        .mirror
        .clone()
        .or_else(data_fetch::mirror_from_env);
    let dir = data_fetch::ensure_dataset("clinc150", &data_dir, mirror.as_deref())?;
    let (full, full_name) = read_text(&dir.join("data_full.json"))?;
    let (domains, domains_name) = read_text(&dir.join("domains.json"))?;
    let groups = formats::parse_clinc_domains(&domains, &domains_name)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let split = ClassSplit::by_groups(&groups, n_train, n_val, n_test, args.split_seed)?;
    let part = |s: &str| -> Result<Vec<Labelled>> {
        Ok(formats::parse_clinc(&full, &full_name, s)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .into_iter()
            .enumerate()
            .map(|(i, e)| Labelled {
                text: e.text,
                label: e.label,
                at: format!("{full_name} [{s} #{}]", i + 1),
            })
            .collect())
    };
    let (train, val, test) = (part("train")?, part("val")?, part("test")?);
    let all = train.iter().chain(&val).chain(&test).cloned().collect();
    Ok(EpisodeData {
        name: "CLINC150".into(),
        split,
        train,
        test,
        all,
    })
}

/// Loads the dataset the arguments name.
pub fn load(args: &EpisodeDataArgs) -> Result<EpisodeData> {
    let (Some(train_path), Some(test_path)) = (&args.train, &args.test) else {
        return clinc(args);
    };
    let [f_train, f_val] = args.fractions[..] else {
        bail!(
            "--fractions takes two numbers (meta-train, meta-val), got {:?}",
            args.fractions
        );
    };
    let train = read_labelled(train_path, true)?;
    let test = read_labelled(test_path, true)?;
    let mut classes: Vec<String> = train.iter().map(|e| e.label.clone()).collect();
    classes.sort();
    classes.dedup();
    if let Some(e) = test.iter().find(|e| !classes.contains(&e.label)) {
        bail!(
            "{}: label {:?} never occurs in {}",
            e.at,
            e.label,
            train_path.display()
        );
    }
    let split = ClassSplit::by_fractions(&classes, (f_train, f_val), args.split_seed)?;
    let all = train.iter().chain(&test).cloned().collect();
    Ok(EpisodeData {
        name: train_path.display().to_string(),
        split,
        train,
        test,
        all,
    })
}
