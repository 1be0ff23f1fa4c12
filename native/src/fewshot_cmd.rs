//! `core-train eval-fewshot`: N-way K-shot accuracy on meta-test classes, with 95%
//! confidence intervals over seeded episodes.
//!
//! Implemented so far: method (a) of the meta-learning issue, the nearest class prototype
//! with the pretrained encoder and no training. CLINC150's classes are split by domain
//! (6 meta-train, 2 meta-val, 2 meta-test by default, seeded); episodes are drawn from the
//! meta-test intents (all their in-scope examples, train/val/test pooled).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::{Tensor, TensorData};
use polytask_core::Pooling;
use polytask_core::data;
use polytask_core::episodes::{ClassSplit, EpisodeSampler};
use polytask_core::meta::{nearest_prototype, prototypes};
use polytask_core::metrics::mean_ci95;

use crate::backend::{self, BackendChoice};
use crate::train_cmd::DataArgs;
use crate::{data_fetch, model_dir};

#[derive(clap::Args, Clone, Debug)]
pub struct FewShotArgs {
    /// Classes per episode.
    #[arg(long, default_value_t = 5)]
    pub way: usize,
    /// Support examples per class (comma-separated for several settings).
    #[arg(long, value_delimiter = ',', default_value = "1,5")]
    pub shot: Vec<usize>,
    /// Query examples per class.
    #[arg(long, default_value_t = 5)]
    pub query: usize,
    #[arg(long, default_value_t = 300)]
    pub episodes: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Domains for meta-train, meta-val and meta-test.
    #[arg(long, value_delimiter = ',', default_value = "6,2,2")]
    pub domains: Vec<usize>,
    /// Model directory (default: all-MiniLM-L6-v2, fetched if missing).
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    #[command(flatten)]
    pub data: DataArgs,
}

pub fn run(args: &FewShotArgs) -> Result<()> {
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
    let read = |name: &str| -> Result<(String, String)> {
        let path = dir.join(name);
        let bytes =
            std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
        let file = path.display().to_string();
        let text = data::decode(&bytes, &file)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .to_string();
        Ok((text, file))
    };
    let (full, full_name) = read("data_full.json")?;
    let (domains, domains_name) = read("domains.json")?;
    let groups =
        data::parse_clinc_domains(&domains, &domains_name).map_err(|e| anyhow::anyhow!("{e}"))?;
    let split = ClassSplit::by_groups(&groups, n_train, n_val, n_test, args.seed)?;
    let mut examples = Vec::new();
    for s in ["train", "val", "test"] {
        examples
            .extend(data::parse_clinc(&full, &full_name, s).map_err(|e| anyhow::anyhow!("{e}"))?);
    }
    // Only the meta-test classes are needed for method (a).
    let wanted: std::collections::BTreeSet<&String> = split.test.iter().collect();
    examples.retain(|e| wanted.contains(&e.label));
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    let labels: Vec<&str> = examples.iter().map(|e| e.label.as_str()).collect();

    let selected = backend::select(args.backend)?;
    let model_path = model_dir::resolve(args.model.as_deref())?;
    let (encoder, _) = model_dir::load(&model_path, &selected.device)?;
    eprintln!(
        "backend: {}; meta-test: {} intents of {} domains, {} examples",
        selected.description,
        split.test.len(),
        n_test,
        examples.len()
    );
    let t0 = Instant::now();
    let vectors = encoder.embed(&texts, Pooling::Mean, true, 64, &selected.device)?;
    let embed_s = t0.elapsed().as_secs_f64();
    let hidden = encoder.config.hidden_size;
    let flat: Vec<f32> = vectors.concat();
    let all = Tensor::<2>::from_data(
        TensorData::new(flat, [examples.len(), hidden]),
        &selected.device,
    );

    println!("| method | setting | episodes | accuracy (95% CI) | time per task |");
    println!("|---|---|---:|---|---:|");
    for &shot in &args.shot {
        let mut sampler =
            EpisodeSampler::new(&labels, &split.test, args.way, shot, args.query, args.seed)?;
        let mut accs = Vec::with_capacity(args.episodes);
        let t = Instant::now();
        for _ in 0..args.episodes {
            let e = sampler.sample();
            let take = |pairs: &[(usize, usize)]| {
                let idx: Vec<i64> = pairs.iter().map(|p| p.0 as i64).collect();
                let n = idx.len();
                let idx = Tensor::<1, burn::tensor::Int>::from_data(
                    TensorData::new(idx, [n]),
                    &selected.device,
                );
                all.clone().select(0, idx)
            };
            let support_labels: Vec<usize> = e.support.iter().map(|p| p.1).collect();
            let protos = prototypes(take(&e.support), &support_labels, args.way);
            let pred: Vec<i64> = nearest_prototype(take(&e.query), protos)
                .try_into_vec_as::<i64>()
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            let correct = pred
                .iter()
                .zip(&e.query)
                .filter(|(p, q)| **p as usize == q.1)
                .count();
            accs.push(correct as f64 / e.query.len() as f64);
        }
        // Adaptation time of one task: embedding its support set plus building the head.
        let per_task = embed_s / examples.len() as f64 * (args.way * shot) as f64
            + t.elapsed().as_secs_f64() / args.episodes as f64;
        let (mean, ci) = mean_ci95(&accs);
        println!(
            "| (a) nearest prototype, pretrained encoder | {}-way {shot}-shot | {} | {:.4} ± {:.4} | {:.3} s |",
            args.way, args.episodes, mean, ci, per_task
        );
    }
    eprintln!("(meta-test intents: {})", split.test.join(", "));
    Ok(())
}
