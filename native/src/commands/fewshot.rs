//! `core-train eval-fewshot`: every few-shot method on the same seeded episodes.
//!
//! - (a) nearest class prototype with the pretrained encoder, no training;
//! - fine-tuning (prototype-initialised head; head only, adapters or top blocks) from each
//!   encoder given: the pretrained one (b), and any `--init NAME=DIR`, e.g. a multi-task
//!   run (c), a Reptile (d) or FOMAML (e) meta-train output.
//!
//! N-way K-shot episodes come from the meta-test classes (CLINC150: whole domains; see
//! `episode_data`); `--full-way K` also adapts to *all* classes of the dataset from K
//! training examples each and scores the whole test split. Accuracy is reported with a
//! 95% confidence interval over episodes (over runs for full-way) and the adaptation time
//! per task (the frozen forward pass over the support set plus the steps).
//!
//! The frozen bottom of the encoder is run once per example and cached, so an episode
//! only pays for the blocks that adapt.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor, TensorData};
use polytask_core::SentenceEncoder;
use polytask_core::data::episodes::EpisodeSampler;
use polytask_core::eval::metrics::accuracy;
use polytask_core::eval::metrics::mean_ci95;
use polytask_core::fewshot::adapt::{AdaptConfig, AdaptMode, Learner};
use polytask_core::model::bert::EncoderOutput;
use polytask_core::rng::Rng;
use serde_json::json;

use polytask_native::adaptation::{AdaptFlags, ModeArg, inputs};
use polytask_native::backend::{self, BackendChoice};
use polytask_native::episode_data::{self, EpisodeDataArgs, Labelled};
use polytask_native::model_dir;
use polytask_native::output;

/// `--full-way-split`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScoreSplit {
    Dev,
    Test,
}

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
    /// Seeds the episodes (the same for every method).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// More encoders to fine-tune from, as NAME=DIR (a training run's best/, a meta-train
    /// output). The pretrained encoder (--model) is always included.
    #[arg(long = "init", value_parser = parse_init)]
    pub inits: Vec<(String, PathBuf)>,
    /// Adaptation modes for fine-tuning (head, adapters, full); `--modes` with no value:
    /// prototypes only.
    #[arg(long, value_enum, value_delimiter = ',', num_args = 0.., default_value = "head,adapters")]
    pub modes: Vec<ModeArg>,
    /// Full-way K-shot settings on the whole test split (e.g. 5,10).
    #[arg(long, value_delimiter = ',')]
    pub full_way: Vec<usize>,
    /// Repetitions (support sets) of each full-way setting.
    #[arg(long, default_value_t = 3)]
    pub full_way_runs: usize,
    /// Steps of full-way adaptation (minibatches of --batch-size).
    #[arg(long, default_value_t = 200)]
    pub full_way_steps: usize,
    /// Contrastive steps of full-way adaptation (default: --contrastive-steps).
    #[arg(long)]
    pub full_way_contrastive_steps: Option<usize>,
    /// The split full-way adaptation is scored on: `test`, or `dev` (CLINC150's val split)
    /// to choose settings without looking at the test split.
    #[arg(long, value_enum, default_value_t = ScoreSplit::Test)]
    pub full_way_split: ScoreSplit,
    #[command(flatten)]
    pub adapt: AdaptFlags,
    /// The pretrained encoder (default: all-MiniLM-L6-v2, fetched if missing).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Also write each row as a JSON line to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    #[command(flatten)]
    pub data: EpisodeDataArgs,
}

fn parse_init(s: &str) -> std::result::Result<(String, PathBuf), String> {
    let (name, dir) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAME=DIR"))?;
    if name.is_empty() || dir.is_empty() {
        return Err(format!("{s:?}: expected NAME=DIR"));
    }
    Ok((name.to_string(), PathBuf::from(dir)))
}

/// The letter for a method, by the name of its starting encoder.
fn letter(name: &str) -> &'static str {
    match name {
        "pretrained" => "(b) ",
        "multitask" => "(c) ",
        "reptile" => "(d) ",
        "fomaml" => "(e) ",
        _ => "",
    }
}

/// A method's row label: its name, with its number of steps when it trains.
fn label(method: &str, config: &AdaptConfig) -> String {
    match (config.contrastive_steps, config.steps) {
        (0, 0) => method.to_string(),
        (0, steps) => format!("{method}, {steps} steps"),
        (c, steps) => format!(
            "{method}, {c} contrastive steps (τ {}) + {steps} steps",
            config.temperature
        ),
    }
}

/// Frozen states of examples, one `[len, hidden]` block each, computed once.
struct StateCache {
    hidden: usize,
    states: BTreeMap<usize, (usize, Vec<f32>)>,
    /// Seconds per example of the frozen forward pass.
    per_example_s: f64,
}

impl StateCache {
    fn build(
        learner: &Learner,
        encoder: &SentenceEncoder,
        examples: &[Labelled],
        wanted: &[usize],
        device: &Device,
    ) -> Result<Self> {
        let hidden = learner.encoder().hidden_size();
        let mut states = BTreeMap::new();
        let t0 = Instant::now();
        for chunk in wanted.chunks(64) {
            let texts: Vec<&str> = chunk.iter().map(|&i| examples[i].text.as_str()).collect();
            let out = learner.frozen(inputs(encoder, &texts, device)?);
            let [n, seq, h] = out.last_hidden_state.dims();
            let values: Vec<f32> = out
                .last_hidden_state
                .try_into_vec_as::<f32>()
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            let mask: Vec<f32> = out
                .mask
                .try_into_vec_as::<f32>()
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            for (r, &i) in chunk.iter().enumerate().take(n) {
                let len = mask[r * seq..(r + 1) * seq]
                    .iter()
                    .filter(|&&m| m > 0.5)
                    .count();
                let rows = values[r * seq * h..(r * seq + len) * h].to_vec();
                states.insert(i, (len, rows));
            }
        }
        let per_example_s = t0.elapsed().as_secs_f64() / wanted.len().max(1) as f64;
        Ok(StateCache {
            hidden,
            states,
            per_example_s,
        })
    }

    /// The padded batch of examples `idx`.
    fn batch(&self, idx: &[usize], device: &Device) -> EncoderOutput {
        let seq = idx.iter().map(|i| self.states[i].0).max().unwrap_or(1);
        let h = self.hidden;
        let mut values = vec![0f32; idx.len() * seq * h];
        let mut mask = vec![0f32; idx.len() * seq];
        for (r, i) in idx.iter().enumerate() {
            let (len, rows) = &self.states[i];
            values[r * seq * h..(r * seq + len) * h].copy_from_slice(rows);
            mask[r * seq..r * seq + len]
                .iter_mut()
                .for_each(|m| *m = 1.0);
        }
        EncoderOutput {
            last_hidden_state: Tensor::from_data(
                TensorData::new(values, [idx.len(), seq, h]),
                device,
            ),
            mask: Tensor::from_data(TensorData::new(mask, [idx.len(), seq]), device),
        }
    }
}

/// Adapts on cached support states and scores the query; returns (accuracy, seconds of
/// adaptation including the support's frozen forward pass).
fn run_task(
    learner: &Learner,
    cache: &StateCache,
    support: &[(usize, usize)],
    query: &[(usize, usize)],
    n_way: usize,
    device: &Device,
) -> Result<(f64, f64)> {
    let t = Instant::now();
    let s_idx: Vec<usize> = support.iter().map(|p| p.0).collect();
    let s_labels: Vec<usize> = support.iter().map(|p| p.1).collect();
    let states = cache.batch(&s_idx, device);
    let adapted = learner.adapt_frozen(&states, &s_labels, n_way, |_, _| {})?;
    let seconds = t.elapsed().as_secs_f64() + cache.per_example_s * support.len() as f64;
    let mut pred = Vec::with_capacity(query.len());
    for chunk in query.chunks(256) {
        let q_idx: Vec<usize> = chunk.iter().map(|p| p.0).collect();
        let classes = adapted
            .model
            .logits_from(learner.first(), cache.batch(&q_idx, device))
            .argmax(1)
            .reshape([chunk.len()])
            .try_into_vec_as::<i64>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        pred.extend(classes.into_iter().map(|p| p as usize));
    }
    let gold: Vec<usize> = query.iter().map(|q| q.1).collect();
    Ok((accuracy(&pred, &gold), seconds))
}

/// `(example index, class)` pairs of one support set.
type Support = Vec<(usize, usize)>;

struct Row {
    method: String,
    setting: String,
    n: usize,
    mean: f64,
    ci: f64,
    seconds: f64,
}

pub fn run(args: &FewShotArgs) -> Result<()> {
    let modes: Vec<AdaptMode> = args.modes.iter().map(|&m| m.into()).collect();
    if args.episodes == 0 && args.full_way.is_empty() {
        bail!("nothing to do: --episodes 0 and no --full-way");
    }
    let data = episode_data::load(&args.data)?;
    let selected = backend::select(args.backend)?;
    let device = selected.device.clone();
    let base_dir = model_dir::resolve(args.model.as_deref())?;
    let mut encoders = vec![("pretrained".to_string(), base_dir)];
    encoders.extend(args.inits.iter().cloned());
    eprintln!(
        "backend: {}; {}: {} meta-test classes ({}); {} examples",
        selected.description,
        data.name,
        data.split.test.len(),
        data.split.test.join(", "),
        data.all.len()
    );
    let labels = data.all_labels();
    let test_classes: std::collections::BTreeSet<&str> =
        data.split.test.iter().map(String::as_str).collect();
    let episode_examples: Vec<usize> = (0..data.all.len())
        .filter(|&i| test_classes.contains(labels[i]))
        .collect();
    // Full-way: examples by class from the train split, scored on the whole test split.
    let mut classes: Vec<String> = data.train.iter().map(|e| e.label.clone()).collect();
    classes.sort();
    classes.dedup();
    let mut json_out = match &args.json {
        Some(p) => {
            output::check_file_replaceable(p, |b| output::is_json_lines_with(b, "method"))?;
            Some(
                std::fs::File::create(p)
                    .with_context(|| format!("{}: cannot create", p.display()))?,
            )
        }
        None => None,
    };

    let mut rows: Vec<Row> = Vec::new();
    let mut emit = |row: Row, rows: &mut Vec<Row>| -> Result<()> {
        println!(
            "| {} | {} | {} | {:.4} ± {:.4} | {:.3} s |",
            row.method, row.setting, row.n, row.mean, row.ci, row.seconds
        );
        if let Some(f) = json_out.as_mut() {
            writeln!(
                f,
                "{}",
                json!({"method": row.method, "setting": row.setting, "n": row.n, "accuracy": row.mean, "ci95": row.ci, "seconds_per_task": row.seconds})
            )?;
        }
        rows.push(row);
        Ok(())
    };
    println!(
        "| method | setting | episodes / runs | accuracy (95% CI) | adaptation time per task |"
    );
    println!("|---|---|---:|---|---:|");

    // Full-way supports, drawn once (the same for every method), and the examples whose
    // frozen states they need: the drawn supports and the scored split.
    let (scored, offset, split_name) = match args.full_way_split {
        ScoreSplit::Test => (&data.test, data.all.len() - data.test.len(), "test"),
        ScoreSplit::Dev => (&data.dev, data.train.len(), "dev"),
    };
    if !args.full_way.is_empty() && scored.is_empty() {
        bail!(
            "--full-way-split {split_name}: {} has no {split_name} split",
            data.name
        );
    }
    let query: Vec<(usize, usize)> = scored
        .iter()
        .enumerate()
        .filter_map(|(i, e)| {
            classes
                .iter()
                .position(|c| *c == e.label)
                .map(|k| (offset + i, k))
        })
        .collect();
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes.len()];
    for (i, e) in data.train.iter().enumerate() {
        let k = classes
            .iter()
            .position(|c| *c == e.label)
            .expect("train label");
        by_class[k].push(i);
    }
    let mut full_supports: Vec<(usize, Vec<Support>)> = Vec::new();
    for &k_shot in &args.full_way {
        if let Some((k, v)) = by_class.iter().enumerate().find(|(_, v)| v.len() < k_shot) {
            bail!(
                "full-way {k_shot}-shot: class {:?} has only {} training examples",
                classes[k],
                v.len()
            );
        }
        let runs = (0..args.full_way_runs)
            .map(|run| {
                let mut rng = Rng::derive(args.seed, 0xf0 + run as u64);
                let mut support = Vec::new();
                for (k, pool) in by_class.iter().enumerate() {
                    let mut pool = pool.clone();
                    rng.shuffle(&mut pool);
                    support.extend(pool[..k_shot].iter().map(|&i| (i, k)));
                }
                support
            })
            .collect();
        full_supports.push((k_shot, runs));
    }
    let mut full_needed: Vec<usize> = full_supports
        .iter()
        .flat_map(|(_, runs)| runs.iter().flatten().map(|p| p.0))
        .chain(query.iter().map(|p| p.0))
        .collect();
    full_needed.sort_unstable();
    full_needed.dedup();

    for (e_idx, (name, dir)) in encoders.iter().enumerate() {
        let (encoder, _) = model_dir::load(dir, &device)?;
        // (a) runs once, with the pretrained encoder; then fine-tuning per mode. Labels
        // get the number of steps when the rows are printed.
        let mut methods: Vec<(String, AdaptConfig)> = Vec::new();
        if e_idx == 0 {
            let mut c = args.adapt.config(AdaptMode::Head);
            c.steps = 0;
            c.contrastive_steps = 0;
            methods.push((
                "(a) nearest prototype, pretrained, no training".to_string(),
                c,
            ));
        }
        for &mode in &modes {
            let mut c = args.adapt.config(mode);
            if mode == AdaptMode::Head {
                // Contrastive steps need weights below the head; the head row is as before.
                c.contrastive_steps = 0;
            }
            let what = match mode {
                AdaptMode::Head => "head only".to_string(),
                AdaptMode::Adapters => {
                    format!("adapters (top {}) + head", c.layers)
                }
                AdaptMode::Full => format!("top {} blocks + head", c.layers),
            };
            methods.push((format!("{}fine-tune from {name}, {what}", letter(name)), c));
        }
        let mut caches: BTreeMap<(usize, bool), StateCache> = BTreeMap::new();
        for (method, config) in &methods {
            let learner = Learner::new(&encoder.model, config)?;
            let first = learner.first();
            if args.episodes > 0 {
                if let std::collections::btree_map::Entry::Vacant(slot) =
                    caches.entry((first, false))
                {
                    slot.insert(StateCache::build(
                        &learner,
                        &encoder,
                        &data.all,
                        &episode_examples,
                        &device,
                    )?);
                }
                let cache = &caches[&(first, false)];
                for &shot in &args.shot {
                    let mut sampler = EpisodeSampler::new(
                        &labels,
                        &data.split.test,
                        args.way,
                        shot,
                        args.query,
                        args.seed,
                    )?;
                    let (mut accs, mut secs) = (Vec::new(), 0.0);
                    for _ in 0..args.episodes {
                        let e = sampler.sample();
                        let (acc, s) =
                            run_task(&learner, cache, &e.support, &e.query, args.way, &device)?;
                        accs.push(acc);
                        secs += s;
                    }
                    let (mean, ci) = mean_ci95(&accs);
                    emit(
                        Row {
                            method: label(method, config),
                            setting: format!("{}-way {shot}-shot", args.way),
                            n: args.episodes,
                            mean,
                            ci,
                            seconds: secs / args.episodes as f64,
                        },
                        &mut rows,
                    )?;
                }
            }
            if !args.full_way.is_empty() {
                if let std::collections::btree_map::Entry::Vacant(slot) =
                    caches.entry((first, true))
                {
                    slot.insert(StateCache::build(
                        &learner,
                        &encoder,
                        &data.all,
                        &full_needed,
                        &device,
                    )?);
                }
                let cache = &caches[&(first, true)];
                for (k_shot, runs) in &full_supports {
                    let k_shot = *k_shot;
                    let mut config = config.clone();
                    if config.steps > 0 {
                        config.steps = args.full_way_steps;
                    }
                    if let (Some(n), true) = (
                        args.full_way_contrastive_steps,
                        config.mode != AdaptMode::Head,
                    ) {
                        config.contrastive_steps = n;
                    }
                    // The learner's encoder as is (its adapters kept), with these steps.
                    let full_way = Learner::new(learner.encoder(), &config)?;
                    let (mut accs, mut secs) = (Vec::new(), 0.0);
                    for support in runs {
                        let (acc, s) =
                            run_task(&full_way, cache, support, &query, classes.len(), &device)?;
                        accs.push(acc);
                        secs += s;
                    }
                    let (mean, ci) = mean_ci95(&accs);
                    emit(
                        Row {
                            method: label(method, &config),
                            setting: format!(
                                "{}-way {k_shot}-shot, whole {split_name} split ({} examples)",
                                classes.len(),
                                query.len()
                            ),
                            n: args.full_way_runs,
                            mean,
                            ci,
                            seconds: secs / args.full_way_runs as f64,
                        },
                        &mut rows,
                    )?;
                }
            }
        }
    }
    eprintln!("{} rows", rows.len());
    Ok(())
}
