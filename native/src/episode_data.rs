//! Labelled sentences for few-shot work: a file of them ([`read_labelled`]: what `adapt`
//! reads, JSON lines or `seq.in` + `label`, every example with its `FILE:LINE`), and whole
//! datasets with their classes split into meta-train / meta-val / meta-test sets that
//! never overlap (`meta-train`, `eval-fewshot`).
//!
//! CLINC150 (the default) is split by domain (whole domains per split, seeded); any other
//! dataset in the supported formats (`--train FILE --test FILE`, JSON lines or `seq.in` +
//! `label`) is split by class fractions. Out-of-scope examples are left out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use polytask_core::data::episodes::ClassSplit;
use polytask_core::data::formats;

use crate::corpus::DataArgs;
use crate::data_fetch;
use crate::files::read_text;

/// One labelled text and where it came from (`FILE:LINE`).
#[derive(Debug, Clone)]
pub struct Labelled {
    pub text: String,
    pub label: String,
    pub at: String,
}

/// Reads labelled sentences: a `.jsonl` file, or `seq.in` (or a directory holding it)
/// with a sibling `label` file. Empty texts are errors naming the line, and so are
/// duplicated texts unless `allow_duplicates` (whole datasets have a few).
pub fn read_labelled(path: &Path, allow_duplicates: bool) -> Result<Vec<Labelled>> {
    let read = |p: &Path| -> Result<String> { Ok(read_text(p)?.0) };
    let seq_in = if path.is_dir() {
        Some(path.join("seq.in"))
    } else if path.file_name().is_some_and(|n| n == "seq.in") {
        Some(path.to_path_buf())
    } else {
        None
    };
    let out: Vec<Labelled> = if let Some(seq_in) = seq_in {
        let label_path = seq_in.with_file_name("label");
        let (texts, labels) = (read(&seq_in)?, read(&label_path)?);
        let (t_lines, l_lines): (Vec<&str>, Vec<&str>) =
            (texts.lines().collect(), labels.lines().collect());
        if t_lines.len() != l_lines.len() {
            bail!(
                "{}: {} lines, but {} has {}",
                seq_in.display(),
                t_lines.len(),
                label_path.display(),
                l_lines.len()
            );
        }
        let mut out = Vec::new();
        for (i, (t, l)) in t_lines.iter().zip(&l_lines).enumerate() {
            if t.trim().is_empty() {
                bail!("{}:{}: empty text", seq_in.display(), i + 1);
            }
            if l.trim().is_empty() {
                bail!("{}:{}: empty label", label_path.display(), i + 1);
            }
            out.push(Labelled {
                text: t.trim().to_string(),
                label: l.trim().to_string(),
                at: format!("{}:{}", seq_in.display(), i + 1),
            });
        }
        out
    } else {
        let text = read(path)?;
        let file = path.display().to_string();
        let parsed = formats::parse_jsonl(&text, &file).map_err(|e| anyhow::anyhow!("{e}"))?;
        let formats::JsonlExamples::Sentences(examples) = parsed else {
            bail!(
                "{file}: holds token-tagged examples; a few-shot task needs {{\"text\", \"label\"}} lines"
            );
        };
        // parse_jsonl accepts only complete files, so examples match non-blank lines.
        let lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, _)| i + 1);
        examples
            .into_iter()
            .zip(lines)
            .map(|(e, line)| Labelled {
                text: e.text.trim().to_string(),
                label: e.label.trim().to_string(),
                at: format!("{file}:{line}"),
            })
            .collect()
    };
    if out.is_empty() {
        bail!("{}: no examples", path.display());
    }
    let mut seen: BTreeMap<String, &Labelled> = BTreeMap::new();
    for e in out.iter().filter(|_| !allow_duplicates) {
        let key = e.text.to_lowercase();
        if let Some(first) = seen.get(&key) {
            if first.label == e.label {
                bail!("{}: duplicate of {} ({:?})", e.at, first.at, e.text);
            }
            bail!(
                "{}: the same text as {} with another label ({:?} vs {:?})",
                e.at,
                first.at,
                e.label,
                first.label
            );
        }
        seen.insert(key, e);
    }
    Ok(out)
}

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
    /// Dev split examples (empty for a dataset given as `--train` and `--test` files).
    pub dev: Vec<Labelled>,
    /// Test split examples.
    pub test: Vec<Labelled>,
    /// Every example (train, dev and test splits pooled, in that order): what episodes
    /// draw from.
    pub all: Vec<Labelled>,
}

impl EpisodeData {
    /// Labels of `all`, for the episode sampler.
    pub fn all_labels(&self) -> Vec<&str> {
        self.all.iter().map(|e| e.label.as_str()).collect()
    }
}

/// CLINC150's files, read once: `data_full.json` and `domains.json`, each with its name.
struct ClincFiles {
    full: (String, String),
    domains: (String, String),
}

impl ClincFiles {
    fn read(data: &DataArgs) -> Result<Self> {
        let dir = dataset_dir("clinc150", data)?;
        Ok(ClincFiles {
            full: read_text(&dir.join("data_full.json"))?,
            domains: read_text(&dir.join("domains.json"))?,
        })
    }

    /// The in-scope sentences of one split ("train", "val" or "test"), each with where it
    /// came from.
    fn split(&self, split: &str) -> Result<Vec<Labelled>> {
        let (full, full_name) = (&self.full.0, &self.full.1);
        Ok(formats::parse_clinc(full, full_name, split)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .into_iter()
            .enumerate()
            .map(|(i, e)| Labelled {
                text: e.text,
                label: e.label,
                at: format!("{full_name} [{split} #{}]", i + 1),
            })
            .collect())
    }
}

/// A known dataset's folder (fetched, or copied from the mirror, on first use).
fn dataset_dir(name: &str, data: &DataArgs) -> Result<PathBuf> {
    let data_dir = data
        .data_dir
        .clone()
        .unwrap_or_else(data_fetch::default_data_dir);
    let mirror = data.mirror.clone().or_else(data_fetch::mirror_from_env);
    data_fetch::ensure_dataset(name, &data_dir, mirror.as_deref())
}

/// The intent datasets [`intent_dataset`] knows.
pub const INTENT_DATASETS: [&str; 3] = ["snips", "atis", "clinc150"];

/// One split ("train", "dev" or "test") of a known intent dataset, its labels prefixed
/// with the dataset's name (`snips/PlayMusic`) so that datasets never share a class:
/// SNIPS and ATIS (`seq.in` + `label`; ATIS's multi-intent labels such as
/// `atis_flight#atis_airfare` are labels of their own) or CLINC150 (in-scope only).
pub fn intent_dataset(name: &str, split: &str, data: &DataArgs) -> Result<Vec<Labelled>> {
    let folder_split = match (name, split) {
        (_, "train" | "test") => split,
        ("clinc150", "dev") => "val",
        (_, "dev") => "valid",
        _ => bail!("split {split:?}: one of train, dev, test"),
    };
    let examples = match name {
        "snips" | "atis" => read_labelled(&dataset_dir(name, data)?.join(folder_split), true)?,
        "clinc150" => ClincFiles::read(data)?.split(folder_split)?,
        _ => bail!(
            "intent dataset {name:?}: one of {}",
            INTENT_DATASETS.join(", ")
        ),
    };
    Ok(examples
        .into_iter()
        .map(|e| Labelled {
            label: format!("{name}/{}", e.label),
            ..e
        })
        .collect())
}

fn clinc(args: &EpisodeDataArgs) -> Result<EpisodeData> {
    let [n_train, n_val, n_test] = args.domains[..] else {
        bail!(
            "--domains takes three numbers (meta-train, meta-val, meta-test), got {:?}",
            args.domains
        );
    };
    let files = ClincFiles::read(&args.data)?;
    let groups = formats::parse_clinc_domains(&files.domains.0, &files.domains.1)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let split = ClassSplit::by_groups(&groups, n_train, n_val, n_test, args.split_seed)?;
    let (train, dev, test) = (
        files.split("train")?,
        files.split("val")?,
        files.split("test")?,
    );
    let all = train.iter().chain(&dev).chain(&test).cloned().collect();
    Ok(EpisodeData {
        name: "CLINC150".into(),
        split,
        train,
        dev,
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
        dev: Vec::new(),
        test,
        all,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labelled_files_are_read_with_their_lines_and_duplicates_are_named() {
        let root = tempfile::tempdir().unwrap();
        let jsonl = root.path().join("support.jsonl");
        std::fs::write(
            &jsonl,
            "{\"text\": \" play jazz \", \"label\": \"music\"}\n\n{\"text\": \"rain?\", \"label\": \"weather\"}\n",
        )
        .unwrap();
        let read = read_labelled(&jsonl, false).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(
            (read[0].text.as_str(), read[0].label.as_str()),
            ("play jazz", "music")
        );
        assert!(read[1].at.ends_with("support.jsonl:3"), "{}", read[1].at);

        std::fs::write(
            &jsonl,
            "{\"text\": \"Play jazz\", \"label\": \"music\"}\n{\"text\": \"play jazz\", \"label\": \"radio\"}\n",
        )
        .unwrap();
        let e = read_labelled(&jsonl, false).unwrap_err().to_string();
        assert!(
            e.contains("support.jsonl:2")
                && e.contains("support.jsonl:1")
                && e.contains("another label"),
            "{e}"
        );
        assert_eq!(read_labelled(&jsonl, true).unwrap().len(), 2);

        let dir = root.path().join("snips");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("seq.in"), "play jazz\nwill it rain\n").unwrap();
        std::fs::write(dir.join("label"), "PlayMusic\n").unwrap();
        let e = read_labelled(&dir, false).unwrap_err().to_string();
        assert!(e.contains("seq.in: 2 lines") && e.contains("has 1"), "{e}");
        std::fs::write(dir.join("label"), "PlayMusic\n \n").unwrap();
        let e = read_labelled(&dir.join("seq.in"), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("label:2: empty label"), "{e}");
    }
}
