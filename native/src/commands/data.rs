//! `core-train data check FILE --format FORMAT`: validate a data file and list every
//! problem as `FILE:LINE: what is wrong`; `core-train data fetch NAME...`: fetch datasets
//! ([`polytask_native::data_fetch`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use polytask_core::data::formats::{self, DataErrors, JsonlExamples};
use polytask_native::data_fetch;
use polytask_native::files::read_text;

#[derive(clap::Subcommand)]
pub enum DataCommand {
    /// Validate a data file; every problem is listed as FILE:LINE: what is wrong.
    Check {
        /// The file (a directory for --format seq).
        file: PathBuf,
        #[arg(long, value_enum)]
        format: Format,
    },
    /// Fetch datasets (clinc150, snips, atis, conll2003, sst2, or all), each file checked
    /// against its pinned sha256.
    Fetch {
        /// Dataset names, or `all`.
        #[arg(required = true)]
        names: Vec<String>,
        /// Copy from this local mirror (same layout) instead of downloading from upstream
        /// (default: $POLYTASK_DATA_MIRROR when set).
        #[arg(long)]
        mirror: Option<PathBuf>,
        /// Target data directory (default: data/ in the cache, $POLYTASK_CACHE or
        /// ~/.cache/polytask).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

pub fn run(command: DataCommand) -> Result<()> {
    match command {
        DataCommand::Check { file, format } => check(&file, format),
        DataCommand::Fetch { names, mirror, dir } => {
            data_fetch::fetch_datasets(&names, mirror, dir)
        }
    }
}

/// The formats `data check` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// CoNLL-2003 (`token POS chunk NER`, blank lines between sentences).
    Conll,
    /// A directory with line-aligned `seq.in`, `seq.out` and `label` (SNIPS, ATIS).
    Seq,
    /// CLINC150 `data_full.json` (every split in it is checked).
    Clinc,
    /// SST-2 TSV (`label<TAB>text` after a header).
    Sst2,
    /// JSON lines: `{"text", "label"}` or `{"tokens", "tags"}`.
    Jsonl,
}

fn report(errors: DataErrors) -> anyhow::Error {
    anyhow::anyhow!("{errors}")
}

/// Checks `path`; prints a one-line summary on success, every problem on failure.
fn check(path: &Path, format: Format) -> Result<()> {
    let summary = match format {
        Format::Conll => {
            let (text, name) = read_text(path)?;
            let s = formats::parse_conll(&text, &name).map_err(report)?;
            format!(
                "{} sentences, {} tokens",
                s.len(),
                s.iter().map(|e| e.tokens.len()).sum::<usize>()
            )
        }
        Format::Seq => {
            let [a, b, c] = ["seq.in", "seq.out", "label"].map(|f| read_text(&path.join(f)));
            let (a, b, c) = (a?, b?, c?);
            let (tokens, _) = formats::parse_seq_label((&a.0, &a.1), (&b.0, &b.1), (&c.0, &c.1))
                .map_err(report)?;
            format!("{} utterances with intent and slot tags", tokens.len())
        }
        Format::Clinc => {
            let (text, name) = read_text(path)?;
            let value: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{name}:{}: invalid JSON", 1))?;
            let Some(splits) = value.as_object() else {
                bail!("{name}: expected an object of splits");
            };
            let mut counts = Vec::new();
            let mut problems = Vec::new();
            for split in splits.keys() {
                match formats::parse_clinc(&text, &name, split) {
                    Ok(v) => counts.push(format!("{split} {}", v.len())),
                    Err(e) => problems.extend(e.0),
                }
            }
            if !problems.is_empty() {
                return Err(report(DataErrors(problems)));
            }
            counts.join(", ")
        }
        Format::Sst2 => {
            let (text, name) = read_text(path)?;
            format!(
                "{} examples",
                formats::parse_sst2(&text, &name).map_err(report)?.len()
            )
        }
        Format::Jsonl => {
            let (text, name) = read_text(path)?;
            match formats::parse_jsonl(&text, &name).map_err(report)? {
                JsonlExamples::Sentences(s) => format!("{} labelled sentences", s.len()),
                JsonlExamples::Tokens(t) => format!("{} tagged sentences", t.len()),
            }
        }
    };
    println!("{}: ok ({summary})", path.display());
    Ok(())
}
