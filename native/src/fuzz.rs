//! Fuzzing of every parser of untrusted input (data files, recipes, `config.json`,
//! safetensors headers, task files, bundle manifests): mutated inputs from a seed corpus,
//! each parsed under `catch_unwind`; a panic fails the test and prints the input. An
//! input whose outcome (success, or the shape of its error message) is new joins the
//! corpus, a crude but coverage-like guide without instrumentation.
//!
//! Seeds: the valid examples below plus `tests/fuzz/corpus/PARSER/*`. In CI each parser
//! runs for `POLYTASK_FUZZ_SECS` seconds (default 2); `scripts/fuzz.sh` runs them for
//! longer and, with `POLYTASK_FUZZ_SAVE=1`, keeps new outcomes in the
//! corpus folder. `POLYTASK_FUZZ_SEED` reproduces a run. The budget is CPU time of the
//! fuzzing thread, not wall time, so that a run sharing the machine (`nice`, or paused with
//! SIGSTOP during a benchmark) still gives each parser the seconds it was promised.

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::Instant;

use polytask_core::BertConfig;
use polytask_core::BertModel;
use polytask_core::burn::nn::LinearConfig;
use polytask_core::burn::tensor::Device;
use polytask_core::data::formats;
use polytask_core::fewshot::adapt::{AdaptConfig, FewShotModel, Learner};
use polytask_core::io::manifest::{BUNDLE_FORMAT, FileEntry, Manifest};
use polytask_core::io::task_file::{TASK_FORMAT, TaskMeta, load_task, read_task_meta, save_task};
use polytask_core::io::{checkpoint, safetensors};

use crate::recipe::Recipe;

/// xorshift64*: reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Fragments that parsers treat specially.
const TOKENS: &[&str] = &[
    "\u{feff}",
    "\0",
    "\r\n",
    "\n\n",
    "\t",
    " ",
    "\"",
    "\\",
    "{}",
    "[]",
    "[",
    "{",
    ",",
    ":",
    "NaN",
    "nan",
    "inf",
    "-1",
    "0",
    "1e999",
    "-0",
    "4611686018427387904",
    "18446744073709551615",
    "18446744073709551616",
    "B-",
    "I-X",
    "O",
    "-DOCSTART-",
    "é",
    "\u{202e}",
    "\u{1f600}",
    "null",
    "true",
    "\"F16\"",
    "\"F32\"",
    "\"I64\"",
    "\"shape\":[]",
    "\"data_offsets\":[0,0]",
    "__metadata__",
    "..",
    "/",
];

/// 1 to 4 mutations of `input`, sometimes spliced with `other`; positions favour the first
/// 4 KiB (headers and first lines).
fn mutate(input: &[u8], other: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = b.len();
        let pos = |rng: &mut Rng| {
            if len == 0 {
                0
            } else if rng.below(4) > 0 {
                rng.below(len.min(4096) + 1)
            } else {
                rng.below(len + 1)
            }
        };
        match rng.below(9) {
            0 if len > 0 => {
                let i = pos(rng).min(len - 1);
                b[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = pos(rng).min(len - 1);
                b[i] = rng.next() as u8;
            }
            2 | 3 => {
                let i = pos(rng);
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                b.splice(i..i, t.iter().copied());
            }
            4 if len > 0 => {
                let i = pos(rng).min(len - 1);
                let n = 1 + rng.below(16.min(len - i));
                b.drain(i..i + n);
            }
            5 if len > 0 => {
                let i = pos(rng).min(len - 1);
                let n = 1 + rng.below(64.min(len - i));
                let piece = b[i..i + n].to_vec();
                let j = pos(rng);
                b.splice(j..j, piece);
            }
            6 => {
                b.truncate(pos(rng));
            }
            7 if !other.is_empty() => {
                let i = pos(rng);
                let j = rng.below(other.len());
                let n = 1 + rng.below(64.min(other.len() - j));
                b.splice(i..i, other[j..j + n].iter().copied());
            }
            _ => {
                // A digit run replaced by an extreme number.
                if let Some(i) = (pos(rng)..len).find(|&i| b[i].is_ascii_digit()) {
                    let end = (i..len).find(|&k| !b[k].is_ascii_digit()).unwrap_or(len);
                    let t = [
                        "0",
                        "-1",
                        "4611686018427387904",
                        "18446744073709551615",
                        "1e999",
                    ][rng.below(5)];
                    b.splice(i..end, t.bytes());
                }
            }
        }
    }
    b
}

/// The shape of an outcome: `ok`, or the first line of the error with each number as `#`
/// and each quoted part as `""` (or two backticks), cut at 60 characters.
fn outcome(result: Result<(), String>) -> String {
    let Err(e) = result else {
        return "ok".into();
    };
    let mut out = String::new();
    let mut quote = None;
    let mut chars = e.lines().next().unwrap_or("").chars();
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            if c == '\\' {
                chars.next();
            } else if c == q {
                quote = None;
                out.push(q);
            }
            continue;
        }
        match c {
            '"' | '`' => {
                quote = Some(c);
                out.push(c);
            }
            d if d.is_ascii_digit() => {
                if !out.ends_with('#') {
                    out.push('#');
                }
            }
            c => out.push(c),
        }
        if out.len() >= 60 {
            break;
        }
    }
    out
}

/// CPU seconds used so far by the calling thread.
fn thread_cpu_secs() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec; the clock id is a constant Linux knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

type Parser<'a> = Box<dyn Fn(&[u8]) -> Result<(), String> + 'a>;

fn corpus_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fuzz/corpus")
        .join(name)
}

/// Fuzzes `parse` for `POLYTASK_FUZZ_SECS` CPU seconds from `seeds` and the corpus folder.
fn fuzz(name: &str, seeds: Vec<Vec<u8>>, parse: Parser<'_>) {
    let secs: f64 = std::env::var("POLYTASK_FUZZ_SECS").map_or(2.0, |v| v.parse().unwrap());
    let seed: u64 = std::env::var("POLYTASK_FUZZ_SEED").map_or_else(
        |_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        },
        |v| v.parse().unwrap(),
    );
    let save = std::env::var_os("POLYTASK_FUZZ_SAVE").is_some();
    let dir = corpus_dir(name);
    let mut corpus = seeds;
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        corpus.extend(files.iter().filter_map(|p| std::fs::read(p).ok()));
    }
    assert!(!corpus.is_empty(), "{name}: no seeds");
    let run = |input: &[u8]| -> Result<String, String> {
        catch_unwind(AssertUnwindSafe(|| outcome(parse(input)))).map_err(|p| {
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        })
    };
    let mut seen = BTreeSet::new();
    for input in &corpus {
        match run(input) {
            Ok(o) => {
                seen.insert(o);
            }
            Err(panic) => panic!("{name}: a corpus input panics ({panic}): {input:?}"),
        }
    }
    let mut rng = Rng(seed | 1);
    let mut saved = 0;
    let start = Instant::now();
    let cpu_start = thread_cpu_secs();
    let mut runs = 0u64;
    // A line every 10 CPU minutes, so that a long run cut short still says how far it got.
    let mut next_report = 600.0;
    // The clock is a system call: read it once per 64 inputs.
    while !runs.is_multiple_of(64) || {
        let used = thread_cpu_secs() - cpu_start;
        if used >= next_report {
            eprintln!(
                "{name}: {runs} inputs in {used:.0} CPU s so far, {} outcomes, no panic",
                seen.len()
            );
            next_report += 600.0;
        }
        used < secs
    } {
        let a = rng.below(corpus.len());
        let b = rng.below(corpus.len());
        let input = mutate(&corpus[a], &corpus[b], &mut rng);
        runs += 1;
        match run(&input) {
            Ok(o) => {
                if !seen.contains(&o) && std::env::var_os("POLYTASK_FUZZ_SHOW").is_some() {
                    eprintln!("{name} outcome: {o}");
                }
                if seen.insert(o) && corpus.len() < 4096 {
                    // At most 100 new files per parser and run: a corpus, not a dump.
                    if save && saved < 100 {
                        saved += 1;
                        std::fs::create_dir_all(&dir).unwrap();
                        let sum = crate::files::sha256_hex(&input);
                        std::fs::write(dir.join(&sum[..16]), &input).unwrap();
                    }
                    corpus.push(input);
                }
            }
            Err(panic) => {
                let file = std::env::temp_dir().join(format!("polytask-fuzz-{name}-crash"));
                std::fs::write(&file, &input).unwrap();
                panic!(
                    "{name}: panic after {runs} inputs (POLYTASK_FUZZ_SEED={seed}): {panic}\n\
                     input (saved as {}): {:?}",
                    file.display(),
                    String::from_utf8_lossy(&input)
                );
            }
        }
    }
    eprintln!(
        "{name}: {runs} inputs in {:.1} CPU s ({:.1} s wall), {} outcomes, corpus {} \
         (POLYTASK_FUZZ_SEED={seed})",
        thread_cpu_secs() - cpu_start,
        start.elapsed().as_secs_f64(),
        seen.len(),
        corpus.len()
    );
}

fn text(bytes: &[u8], file: &str) -> Result<String, String> {
    formats::decode(bytes, file)
        .map(str::to_string)
        .map_err(|e| e.to_string())
}

fn tiny_bert() -> BertModel {
    BertConfig::tiny(40).init(&Device::flex())
}

#[test]
fn conll() {
    let seed = b"-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\n\nPeter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n".to_vec();
    fuzz(
        "conll",
        vec![seed],
        Box::new(|b| {
            formats::parse_conll(&text(b, "f")?, "f")
                .map(drop)
                .map_err(|e| e.to_string())
        }),
    );
}

#[test]
fn seq_label() {
    // The three files of SNIPS/ATIS in one input, split at the first two NULs.
    let seed = b"add sabrina salerno to the grime instrumentals playlist\nbook a table\n\0O B-artist I-artist O O B-playlist I-playlist O\nO O O\n\0AddToPlaylist\nBookRestaurant\n".to_vec();
    fuzz(
        "seq",
        vec![seed],
        Box::new(|b| {
            let t = text(b, "f")?;
            let mut parts = t.splitn(3, '\0');
            let (i, o, l) = (
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
            );
            formats::parse_seq_label((i, "seq.in"), (o, "seq.out"), (l, "label"))
                .map(drop)
                .map_err(|e| e.to_string())
        }),
    );
}

#[test]
fn clinc150() {
    let seed = br#"{"train": [["what is my balance", "balance"], ["book a flight to paris", "book_flight"]], "val": [["how much money do i have", "balance"]], "test": [["fly me to rome", "book_flight"]], "oos_train": [["what is love", "oos"]], "oos_val": [], "oos_test": []}"#.to_vec();
    let domains = br#"{"banking": ["balance", "transfer"], "travel": ["book_flight"]}"#.to_vec();
    fuzz(
        "clinc150",
        vec![seed, domains],
        Box::new(|b| {
            let t = text(b, "f")?;
            let a = formats::parse_clinc(&t, "f", "train").map(drop);
            let d = formats::parse_clinc_domains(&t, "f").map(drop);
            a.and(d).map_err(|e| e.to_string())
        }),
    );
}

#[test]
fn sst2() {
    let seed = b"label\tsentence\n1\ta gorgeous film\n0\tdull and flat\n".to_vec();
    fuzz(
        "sst2",
        vec![seed],
        Box::new(|b| {
            formats::parse_sst2(&text(b, "f")?, "f")
                .map(drop)
                .map_err(|e| e.to_string())
        }),
    );
}

#[test]
fn jsonl() {
    let sent = b"{\"text\": \"the movie is great\", \"label\": \"pos\"}\n{\"text\": \"awful\", \"label\": \"neg\"}\n".to_vec();
    let tok =
        b"{\"tokens\": [\"alice\", \"met\", \"bob\"], \"tags\": [\"B-PER\", \"O\", \"B-PER\"]}\n"
            .to_vec();
    fuzz(
        "jsonl",
        vec![sent, tok],
        Box::new(|b| {
            formats::parse_jsonl(&text(b, "f")?, "f")
                .map(drop)
                .map_err(|e| e.to_string())
        }),
    );
}

#[test]
fn recipes() {
    let recipes = Path::new(env!("CARGO_MANIFEST_DIR")).join("../recipes");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&recipes)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    seeds.sort();
    fuzz(
        "recipes",
        seeds,
        Box::new(|b| {
            let t = String::from_utf8(b.to_vec()).map_err(|e| e.to_string())?;
            Recipe::parse(&t, "r.toml", Path::new("."))
                .map(drop)
                .map_err(|e| format!("{e:#}"))
        }),
    );
}

#[test]
fn config_json() {
    let seed = serde_json::to_vec(&BertConfig::tiny(40)).unwrap();
    let minilm = br#"{"architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 384, "initializer_range": 0.02, "intermediate_size": 1536, "layer_norm_eps": 1e-12, "max_position_embeddings": 512, "model_type": "bert", "num_attention_heads": 12, "num_hidden_layers": 6, "pad_token_id": 0, "position_embedding_type": "absolute", "type_vocab_size": 2, "vocab_size": 30522}"#.to_vec();
    fuzz(
        "config",
        vec![seed, minilm],
        Box::new(|b| {
            let t = String::from_utf8(b.to_vec()).map_err(|e| e.to_string())?;
            let c = BertConfig::from_json(&t, "config.json").map_err(|e| e.to_string())?;
            c.validate("config.json").map_err(|e| e.to_string())
        }),
    );
}

#[test]
fn safetensors() {
    let bert = tiny_bert();
    let seed = checkpoint::bert_to_safetensors(&bert).unwrap();
    let f16 = checkpoint::convert_floats(&seed, checkpoint::FloatWidth::F16, "s").unwrap();
    fuzz(
        "safetensors",
        vec![seed, f16],
        Box::new(|b| {
            safetensors::read_header(b, "m").map_err(|e| e.to_string())?;
            safetensors::read_f32_tensors(b, "m").map_err(|e| e.to_string())?;
            checkpoint::check_finite(b, "m").map_err(|e| e.to_string())?;
            let mut model = bert.clone();
            checkpoint::load_bert(&mut model, b.to_vec(), "m")
                .map(drop)
                .map_err(|e| e.to_string())
        }),
    );
}

#[test]
fn task_files() {
    let bert = tiny_bert();
    let device = Device::flex();
    let seeds = [
        AdaptConfig::default().mode,
        polytask_core::fewshot::adapt::AdaptMode::Full,
    ]
    .into_iter()
    .map(|mode| {
        let config = AdaptConfig {
            mode,
            layers: 1,
            adapter_size: 4,
            ..AdaptConfig::default()
        };
        let model = FewShotModel {
            bert: Learner::new(&bert, &config).unwrap().into_encoder(),
            head: LinearConfig::new(bert.hidden_size(), 2).init(&device),
        };
        let meta = TaskMeta {
            format: TASK_FORMAT.into(),
            name: "t".into(),
            labels: vec!["a".into(), "b".into()],
            config,
            first: bert.num_layers() - 1,
            base: "tensors-sha256:00".into(),
            max_len: 16,
        };
        save_task(&model, &meta).unwrap()
    })
    .collect();
    fuzz(
        "task",
        seeds,
        Box::new(|b| {
            read_task_meta(b, "t").map_err(|e| e.to_string())?;
            load_task(&bert, b, "t")
                .map(drop)
                .map_err(|e| e.to_string())
        }),
    );
}

#[test]
fn bundle_manifests() {
    let m = Manifest {
        format: BUNDLE_FORMAT.into(),
        dtype: "f16".into(),
        base: "tensors-sha256:00".into(),
        multitask: true,
        tasks: vec!["intent".into()],
        files: [
            "model.safetensors",
            "tasks.json",
            "tasks/intent.safetensors",
        ]
        .iter()
        .map(|n| FileEntry {
            name: n.to_string(),
            bytes: 1234,
            sha256: "ab".repeat(32),
        })
        .collect(),
    };
    fuzz(
        "manifest",
        vec![serde_json::to_vec_pretty(&m).unwrap()],
        Box::new(|b| {
            Manifest::parse(b, "manifest.json")
                .map(drop)
                .map_err(|e| e.to_string())
        }),
    );
}
