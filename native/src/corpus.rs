//! Reading a recipe's datasets from disk into train/dev/test examples. Tasks that read the
//! same corpus (SNIPS intent and slots) share one [`Source`], whose batches carry both
//! targets. Every example remembers where it came from (`FILE:LINE`), so that a label the
//! training split never had is reported with its place.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use polytask_core::Tokenizer;
use polytask_core::data::features::Encoded;
use polytask_core::data::formats::{
    self, DataErrors, JsonlExamples, SentenceExample, TokenExample,
};
use polytask_core::model::multitask::MultiTaskSpec;
use polytask_core::rng::Rng;

use crate::data_fetch;
use crate::files::read_text as read;
use crate::recipe::{Column, DatasetName, Recipe, TaskSection};

/// One example of a corpus: text (or words), an optional sentence label and optional tags.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The words, for corpora that come tokenized (token tasks need them).
    pub words: Option<Vec<String>>,
    pub text: String,
    pub label: Option<String>,
    pub tags: Option<Vec<String>>,
    /// `FILE:LINE` (or `FILE: split[i]` for JSON).
    pub origin: String,
}

/// The three splits of a corpus.
#[derive(Debug, Clone, Default)]
pub struct Splits {
    pub train: Vec<Example>,
    pub dev: Vec<Example>,
    pub test: Vec<Example>,
}

/// Tasks reading one corpus, trained on shared batches.
#[derive(Debug, Clone)]
pub struct Source {
    /// Indices into the recipe's task list.
    pub tasks: Vec<usize>,
    pub splits: Splits,
}

fn report(errors: DataErrors) -> anyhow::Error {
    anyhow::anyhow!("{errors}")
}

fn from_tokens(v: Vec<TokenExample>, file: &str, lines: Option<&[usize]>) -> Vec<Example> {
    v.into_iter()
        .enumerate()
        .map(|(i, e)| Example {
            text: e.tokens.join(" "),
            origin: match lines {
                Some(l) => format!("{file}:{}", l[i]),
                None => format!("{file}: example {}", i + 1),
            },
            words: Some(e.tokens),
            label: None,
            tags: Some(e.tags),
        })
        .collect()
}

fn from_sentences(v: Vec<SentenceExample>, origin: impl Fn(usize) -> String) -> Vec<Example> {
    v.into_iter()
        .enumerate()
        .map(|(i, e)| Example {
            words: None,
            text: e.text,
            label: Some(e.label),
            tags: None,
            origin: origin(i),
        })
        .collect()
}

/// Line numbers where CoNLL sentences start (1-based), for error messages.
fn conll_sentence_lines(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut in_sentence = false;
    for (i, line) in text.lines().enumerate() {
        let blank = line.trim().is_empty() || line.starts_with("-DOCSTART-");
        if !blank && !in_sentence {
            starts.push(i + 1);
        }
        in_sentence = !blank;
    }
    starts
}

fn conll(path: &Path) -> Result<Vec<Example>> {
    let (text, name) = read(path)?;
    let examples = formats::parse_conll(&text, &name).map_err(report)?;
    let lines = conll_sentence_lines(&text);
    let lines = (lines.len() == examples.len()).then_some(lines);
    Ok(from_tokens(examples, &name, lines.as_deref()))
}

fn seq_label(dir: &Path) -> Result<Vec<Example>> {
    let (i, in_name) = read(&dir.join("seq.in"))?;
    let (o, out_name) = read(&dir.join("seq.out"))?;
    let (l, label_name) = read(&dir.join("label"))?;
    let (tokens, sentences) =
        formats::parse_seq_label((&i, &in_name), (&o, &out_name), (&l, &label_name))
            .map_err(report)?;
    Ok(tokens
        .into_iter()
        .zip(sentences)
        .enumerate()
        .map(|(n, (t, s))| Example {
            text: t.tokens.join(" "),
            words: Some(t.tokens),
            label: Some(s.label),
            tags: Some(t.tags),
            origin: format!("{label_name}:{}", n + 1),
        })
        .collect())
}

fn clinc(path: &Path, split: &str, include_oos: bool) -> Result<Vec<Example>> {
    let (text, name) = read(path)?;
    let mut out = from_sentences(
        formats::parse_clinc(&text, &name, split).map_err(report)?,
        |i| format!("{name}: {split}[{i}]"),
    );
    if include_oos {
        let oos_split = format!("oos_{split}");
        out.extend(from_sentences(
            formats::parse_clinc(&text, &name, &oos_split).map_err(report)?,
            |i| format!("{name}: {oos_split}[{i}]"),
        ));
    }
    Ok(out)
}

fn sst2(path: &Path) -> Result<Vec<Example>> {
    let (text, name) = read(path)?;
    // Line 1 is the header: example i is on line i + 2.
    Ok(from_sentences(
        formats::parse_sst2(&text, &name).map_err(report)?,
        |i| format!("{name}:{}", i + 2),
    ))
}

fn jsonl(path: &Path) -> Result<Vec<Example>> {
    let (text, name) = read(path)?;
    Ok(match formats::parse_jsonl(&text, &name).map_err(report)? {
        JsonlExamples::Sentences(v) => from_sentences(v, |i| format!("{name}:{}", i + 1)),
        JsonlExamples::Tokens(v) => from_tokens(v, &name, None),
    })
}

/// Reads the splits of `task`'s dataset from `dir` (the dataset's folder).
pub fn load_splits(task: &TaskSection, dir: &Path) -> Result<Splits> {
    Ok(match task.dataset {
        DatasetName::Conll2003 => Splits {
            train: conll(&dir.join("train.txt"))?,
            dev: conll(&dir.join("valid.txt"))?,
            test: conll(&dir.join("test.txt"))?,
        },
        DatasetName::Snips | DatasetName::Atis => Splits {
            train: seq_label(&dir.join("train"))?,
            dev: seq_label(&dir.join("valid"))?,
            test: seq_label(&dir.join("test"))?,
        },
        DatasetName::Clinc150 => {
            let f = dir.join("data_full.json");
            Splits {
                train: clinc(&f, "train", task.include_oos)?,
                dev: clinc(&f, "val", task.include_oos)?,
                test: clinc(&f, "test", task.include_oos)?,
            }
        }
        DatasetName::Sst2 => Splits {
            train: sst2(&dir.join("train.tsv"))?,
            dev: sst2(&dir.join("dev.tsv"))?,
            test: sst2(&dir.join("test.tsv"))?,
        },
        DatasetName::Jsonl => {
            let file = |p: &Option<PathBuf>| p.as_deref().map(jsonl).transpose();
            Splits {
                train: file(&task.train)?.unwrap_or_default(),
                dev: file(&task.dev)?.unwrap_or_default(),
                test: file(&task.test)?.unwrap_or_default(),
            }
        }
    })
}

/// The corpus key of a task: tasks with the same key share a [`Source`].
pub fn corpus_key(task: &TaskSection) -> String {
    match task.dataset {
        DatasetName::Jsonl => format!("jsonl:{:?}", task.train),
        d => d.as_str().to_string(),
    }
}

/// Whether `task` reads the sentence label (else the word tags) of its corpus; a JSON-lines
/// task is whatever its training file holds.
pub fn reads_label(task: &TaskSection, train: &[Example]) -> bool {
    match task.dataset {
        DatasetName::Conll2003 => false,
        DatasetName::Snips | DatasetName::Atis => task.column == Some(Column::Intent),
        DatasetName::Jsonl => train.first().is_none_or(|e| e.label.is_some()),
        _ => true,
    }
}

/// A seeded random subset of at most `max` examples (all when `max` is 0), in the original
/// order.
pub fn subset(examples: Vec<Example>, max: usize, seed: u64) -> Vec<Example> {
    if max == 0 || examples.len() <= max {
        return examples;
    }
    let mut idx: Vec<usize> = (0..examples.len()).collect();
    Rng::new(seed).shuffle(&mut idx);
    let mut keep: Vec<usize> = idx[..max].to_vec();
    keep.sort_unstable();
    let mut keep = keep.into_iter().peekable();
    examples
        .into_iter()
        .enumerate()
        .filter_map(|(i, e)| {
            (keep.peek() == Some(&i)).then(|| {
                keep.next();
                e
            })
        })
        .collect()
}

/// Checks that every example of a split carries what its tasks read (a JSON-lines file of
/// sentences given to a token task, say).
pub fn check_columns(
    task: &TaskSection,
    want_label: bool,
    examples: &[Example],
    split: &str,
) -> Result<()> {
    if let Some(e) = examples.iter().find(|e| {
        if want_label {
            e.label.is_none()
        } else {
            e.tags.is_none()
        }
    }) {
        bail!(
            "{}: task {:?} needs {} but the {split} data has none",
            e.origin,
            task.name,
            if want_label {
                "a sentence label"
            } else {
                "word tags"
            }
        );
    }
    Ok(())
}

#[derive(clap::Args, Clone, Debug)]
pub struct DataArgs {
    /// Where datasets live (default: the cache's data folder).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Copy datasets from this local mirror instead of downloading
    /// (default: $POLYTASK_DATA_MIRROR).
    #[arg(long)]
    pub mirror: Option<PathBuf>,
}

/// A corpus ready for training: its tasks and its tokenized splits.
pub struct EncodedSource {
    pub tasks: Vec<usize>,
    pub train: Vec<Encoded>,
    pub dev: Vec<Encoded>,
    pub test: Vec<Encoded>,
}

/// Reads the recipe's corpora (fetching datasets if needed) and checks that each split
/// carries what its tasks read.
pub fn load_sources(recipe: &Recipe, data: &DataArgs) -> Result<Vec<Source>> {
    let data_dir = data
        .data_dir
        .clone()
        .unwrap_or_else(data_fetch::default_data_dir);
    let mirror = data.mirror.clone().or_else(data_fetch::mirror_from_env);
    let mut keys: Vec<String> = Vec::new();
    let mut sources: Vec<Source> = Vec::new();
    for (i, task) in recipe.tasks.iter().enumerate() {
        let key = corpus_key(task);
        if let Some(k) = keys.iter().position(|k| *k == key) {
            sources[k].tasks.push(i);
            continue;
        }
        let dir = if task.dataset == DatasetName::Jsonl {
            PathBuf::new()
        } else {
            data_fetch::ensure_dataset(task.dataset.as_str(), &data_dir, mirror.as_deref())?
        };
        let splits = load_splits(task, &dir)?;
        keys.push(key);
        sources.push(Source {
            tasks: vec![i],
            splits,
        });
    }
    let seed = recipe.train.seed;
    for (k, source) in sources.iter_mut().enumerate() {
        // Tasks sharing a corpus share its subset: the smallest limit any of them sets.
        let limit = |f: fn(&TaskSection) -> usize| {
            source
                .tasks
                .iter()
                .map(|&t| f(&recipe.tasks[t]))
                .filter(|&n| n > 0)
                .min()
                .unwrap_or(0)
        };
        let (max_train, max_eval) = (limit(|t| t.max_train), limit(|t| t.max_eval));
        let s = std::mem::take(&mut source.splits);
        source.splits = Splits {
            train: subset(s.train, max_train, seed ^ (k as u64 + 1)),
            dev: subset(s.dev, max_eval, seed ^ (k as u64 + 101)),
            test: subset(s.test, max_eval, seed ^ (k as u64 + 201)),
        };
        for &t in &source.tasks {
            let task = &recipe.tasks[t];
            if source.splits.train.is_empty() {
                bail!("task {:?}: no training examples", task.name);
            }
            let want_label = reads_label(task, &source.splits.train);
            check_columns(task, want_label, &source.splits.train, "train")?;
            check_columns(task, want_label, &source.splits.dev, "dev")?;
            check_columns(task, want_label, &source.splits.test, "test")?;
        }
    }
    Ok(sources)
}

/// Tokenizes every split of every corpus.
pub fn encode_sources(
    sources: &[Source],
    spec: &MultiTaskSpec,
    tokenizer: &Tokenizer,
) -> Result<Vec<EncodedSource>> {
    sources
        .iter()
        .map(|s| {
            let enc =
                |ex: &[Example]| crate::evaluate::encode(tokenizer, ex, &s.tasks, &spec.tasks);
            Ok(EncodedSource {
                tasks: s.tasks.clone(),
                train: enc(&s.splits.train)?,
                dev: enc(&s.splits.dev)?,
                test: enc(&s.splits.test)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(i: usize) -> Example {
        Example {
            words: None,
            text: i.to_string(),
            label: Some("a".into()),
            tags: None,
            origin: String::new(),
        }
    }

    #[test]
    fn subsets_are_seeded_ordered_and_bounded() {
        let all: Vec<Example> = (0..100).map(ex).collect();
        let a = subset(all.clone(), 10, 1);
        let b = subset(all.clone(), 10, 1);
        assert_eq!(a, b);
        assert_eq!(a.len(), 10);
        let nums: Vec<usize> = a.iter().map(|e| e.text.parse().unwrap()).collect();
        assert!(nums.windows(2).all(|w| w[0] < w[1]));
        assert_ne!(subset(all.clone(), 10, 2), a);
        assert_eq!(subset(all.clone(), 0, 1).len(), 100);
    }

    #[test]
    fn conll_sentence_lines_skip_docstart() {
        let text = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\n";
        assert_eq!(conll_sentence_lines(text), [3, 6]);
    }
}
