//! `core-train` as a careless or hostile user drives it: directories and files in the way
//! of an output, corrupt or hostile model and task files, bad recipes, bad data, bad text
//! and bad command-line values. Every case asserts the exit code (1: a clear error, never
//! 101: a panic), that the message names the file, field or value, and that nothing the
//! user had was changed (a hash of every file before and after). A tiny model and tiny
//! data made here; no network.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

mod common;

use common::{recipe, tiny_model, write_data};

fn core_train() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_core-train"));
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    c
}

fn run_in(cwd: &Path, args: &[&str]) -> Output {
    core_train().current_dir(cwd).args(args).output().unwrap()
}

fn run_stdin(cwd: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut child = core_train()
        .current_dir(cwd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A process that refuses its arguments may exit before it reads stdin.
    let _ = child.stdin.take().unwrap().write_all(input);
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every path under `dir` (files, folders, links) with the sha256 of what it holds.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            let what = if meta.file_type().is_symlink() {
                format!("link to {}", std::fs::read_link(&p).unwrap().display())
            } else if meta.is_dir() {
                stack.push(p.clone());
                "folder".to_string()
            } else {
                hex(&Sha256::digest(std::fs::read(&p).unwrap()))
            };
            out.insert(rel, what);
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A place with a tiny model (`model/`), the data of [`write_data`] and `recipe.toml`.
struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        tiny_model(&dir.path().join("model"));
        write_data(dir.path());
        recipe(dir.path(), "");
        World { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn p(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }

    fn run(&self, args: &[&str]) -> Output {
        run_in(self.dir.path(), args)
    }

    /// Runs `args`, which must fail with exit code 1 (not a panic) and a message holding
    /// every one of `wants`, leaving every file as it was.
    fn refused(&self, args: &[&str], wants: &[&str]) -> String {
        self.refused_with(args, None, wants)
    }

    fn refused_with(&self, args: &[&str], stdin: Option<&[u8]>, wants: &[&str]) -> String {
        let before = snapshot(self.dir.path());
        let o = match stdin {
            Some(input) => run_stdin(self.dir.path(), args, input),
            None => self.run(args),
        };
        let msg = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {msg}");
        assert!(!msg.contains("panicked"), "{args:?}: {msg}");
        for want in wants {
            assert!(msg.contains(want), "{args:?}: no {want:?} in: {msg}");
        }
        let after = snapshot(self.dir.path());
        assert_eq!(before, after, "{args:?} changed files: {msg}");
        msg
    }

    fn ok(&self, args: &[&str]) -> Output {
        let o = self.run(args);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        o
    }

    /// A user's own folder: `notes.txt` and `sub/photo.jpg`.
    fn users_folder(&self, rel: &str) -> PathBuf {
        let dir = self.path(rel);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("notes.txt"), "my notes\n").unwrap();
        std::fs::write(dir.join("sub/photo.jpg"), [0xff, 0xd8, 0xff, 0xe0]).unwrap();
        dir
    }

    /// Trains the tiny recipe for 2 steps into `trained/`.
    fn trained(&self) -> PathBuf {
        let out = self.path("trained");
        self.ok(&[
            "train",
            &self.p("recipe.toml"),
            "--out",
            &self.p("trained"),
            "--backend",
            "cpu",
            "--max-steps",
            "2",
        ]);
        out.join("last")
    }

    /// Adapts a two-label task on the tiny model into `task.safetensors`.
    fn adapted(&self) -> PathBuf {
        let support = self.path("support.jsonl");
        let lines: Vec<String> = [
            ("the movie is great", "pos"),
            ("the film was good", "pos"),
            ("the show is awful", "neg"),
            ("the film was bad", "neg"),
        ]
        .iter()
        .map(|(t, l)| json!({"text": t, "label": l}).to_string())
        .collect();
        std::fs::write(&support, lines.join("\n") + "\n").unwrap();
        let out = self.path("task.safetensors");
        self.ok(&[
            "adapt",
            "--support",
            &self.p("support.jsonl"),
            "--model",
            &self.p("model"),
            "--out",
            &self.p("task.safetensors"),
            "--steps",
            "3",
            "--layers",
            "1",
            "--backend",
            "cpu",
        ]);
        out
    }
}

/// A safetensors file: 8-byte header length, JSON header, data.
fn split_safetensors(bytes: &[u8]) -> (serde_json::Map<String, Value>, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, Value> = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    (header, bytes[8 + n..].to_vec())
}

fn join_safetensors(header: &serde_json::Map<String, Value>, data: &[u8]) -> Vec<u8> {
    let h = serde_json::to_vec(header).unwrap();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(data);
    out
}

/// The task file's metadata with `edit` applied to its `task` JSON.
fn edit_task_meta(path: &Path, to: &Path, edit: impl Fn(&mut Value)) {
    let (mut header, data) = split_safetensors(&std::fs::read(path).unwrap());
    let meta = header["__metadata__"]["task"].as_str().unwrap().to_string();
    let mut meta: Value = serde_json::from_str(&meta).unwrap();
    edit(&mut meta);
    header["__metadata__"]["task"] = json!(meta.to_string());
    std::fs::write(to, join_safetensors(&header, &data)).unwrap();
}

/// A copy of the model directory `from` as `to`, with `model.safetensors` made by `edit`.
fn model_copy(from: &Path, to: &Path, edit: impl Fn(Vec<u8>) -> Vec<u8>) {
    std::fs::create_dir_all(to).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
    let bytes = std::fs::read(from.join("model.safetensors")).unwrap();
    std::fs::write(to.join("model.safetensors"), edit(bytes)).unwrap();
}

/// Sets every f32 of tensor `name` to `value`.
fn fill_tensor(bytes: Vec<u8>, name: &str, value: f32) -> Vec<u8> {
    let (header, mut data) = split_safetensors(&bytes);
    let offsets = &header[name]["data_offsets"];
    let (a, b) = (
        offsets[0].as_u64().unwrap() as usize,
        offsets[1].as_u64().unwrap() as usize,
    );
    for c in data[a..b].chunks_exact_mut(4) {
        c.copy_from_slice(&value.to_le_bytes());
    }
    join_safetensors(&header, &data)
}

#[test]
fn export_never_replaces_what_the_user_has() {
    let w = World::new();
    let model = w.p("model");
    // A folder of the user's own: refused, named, untouched, no DIR.tmp left behind.
    w.users_folder("mine");
    let msg = w.refused(
        &["export", "--model", &model, "--out", &w.p("mine")],
        &[&w.p("mine"), "notes.txt", "sub/"],
    );
    assert!(msg.contains("did not write"), "{msg}");
    assert!(!w.path("mine.tmp").exists() && !w.path("mine.old").exists());

    // A regular file in the way: refused, named, no FILE.old.
    std::fs::write(w.path("file"), "precious").unwrap();
    w.refused(
        &["export", "--model", &model, "--out", &w.p("file")],
        &[&w.p("file"), "is a file"],
    );
    assert!(!w.path("file.old").exists());

    // A link to the user's folder.
    std::os::unix::fs::symlink(w.path("mine"), w.path("link")).unwrap();
    w.refused(
        &["export", "--model", &model, "--out", &w.p("link")],
        &[&w.p("link"), "symbolic link"],
    );

    // A user's own DIR.tmp beside the output.
    w.users_folder("out.tmp");
    w.refused(
        &["export", "--model", &model, "--out", &w.p("out")],
        &[&w.p("out.tmp"), "notes.txt"],
    );
    std::fs::remove_dir_all(w.path("out.tmp")).unwrap();

    // Its own bundle is replaced; once the user puts a file in it, it is not.
    w.ok(&["export", "--model", &model, "--out", &w.p("out")]);
    w.ok(&["export", "--model", &model, "--out", &w.p("out")]);
    assert!(w.path("out/manifest.json").is_file());
    assert!(!w.path("out.tmp").exists() && !w.path("out.old").exists());
    std::fs::write(w.path("out/README.txt"), "my own words").unwrap();
    w.refused(
        &["export", "--model", &model, "--out", &w.p("out")],
        &[&w.p("out"), "README.txt"],
    );
    // An empty folder (made by the user for it) is fine.
    std::fs::create_dir(w.path("empty")).unwrap();
    w.ok(&["export", "--model", &model, "--out", &w.p("empty")]);
}

#[test]
fn meta_train_never_replaces_what_the_user_has() {
    let w = World::new();
    w.users_folder("mine");
    // Refused before any data or model is read (none is needed to get this message).
    w.refused(
        &["meta-train", "--out", &w.p("mine"), "--backend", "cpu"],
        &[&w.p("mine"), "notes.txt"],
    );
    std::fs::write(w.path("file"), "precious").unwrap();
    w.refused(
        &["meta-train", "--out", &w.p("file"), "--backend", "cpu"],
        &[&w.p("file"), "is a file"],
    );
}

#[test]
fn a_new_run_starts_only_in_an_empty_directory() {
    let w = World::new();
    let r = w.p("recipe.toml");
    // A run whose last/ lost its weights: neither a new run nor a resume replaces it.
    std::fs::create_dir_all(w.path("run/last")).unwrap();
    std::fs::write(
        w.path("run/metrics.jsonl"),
        "{\"step\": 1, \"loss\": 2.0}\n",
    )
    .unwrap();
    std::fs::write(w.path("run/last/state.json"), "{}").unwrap();
    let msg = w.refused(
        &["train", &r, "--out", &w.p("run"), "--backend", "cpu"],
        &[&w.p("run"), "metrics.jsonl", "last"],
    );
    assert!(msg.contains("cannot be resumed"), "{msg}");
    w.refused(
        &[
            "train",
            &r,
            "--out",
            &w.p("run"),
            "--backend",
            "cpu",
            "--resume",
        ],
        &[&w.p("run/last"), "no checkpoint"],
    );
    // The user's own files.
    w.users_folder("mine");
    w.refused(
        &["train", &r, "--out", &w.p("mine"), "--backend", "cpu"],
        &[&w.p("mine"), "notes.txt", "not empty"],
    );
    w.refused(
        &[
            "train",
            &r,
            "--out",
            &w.p("mine"),
            "--backend",
            "cpu",
            "--resume",
        ],
        &["notes.txt", "nothing is started over"],
    );
    std::fs::write(w.path("file"), "precious").unwrap();
    w.refused(
        &["train", &r, "--out", &w.p("file"), "--backend", "cpu"],
        &[&w.p("file"), "is a file"],
    );
    // A run that finished: a plain train on it is refused, pointing at --resume.
    let last = w.trained();
    assert!(last.join("model.safetensors").is_file());
    w.refused(
        &["train", &r, "--out", &w.p("trained"), "--backend", "cpu"],
        &[&w.p("trained"), "--resume"],
    );
}

#[test]
fn recipes_with_bad_values_name_the_file_and_field() {
    let w = World::new();
    let base = std::fs::read_to_string(w.path("recipe.toml")).unwrap();
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "[train]\n",
            "[train]\nweight_decay = -5.0\n",
            &["train.weight_decay", "-5"],
        ),
        (
            "[train]\n",
            "[train]\nmax_grad_norm = -1.0\n",
            &["train.max_grad_norm", "-1"],
        ),
        ("lr = 3e-3", "lr = nan", &["train.lr", "NaN"]),
        ("max_len = 16", "max_len = 2", &["model.max_len", "2"]),
        (
            "max_len = 16",
            "max_len = 100000",
            &["model.max_len = 100000", "max_position_embeddings"],
        ),
        (
            "dataset = \"jsonl\"\n",
            "dataset = \"jsonl\"\nweight = 0.0\n",
            &["weight = 0"],
        ),
        (
            "dataset = \"jsonl\"\n",
            "dataset = \"jsonl\"\nweight = -1.0\n",
            &["weight must be ≥ 0", "-1"],
        ),
        (
            "[train]\n",
            "[train]\nselect_metric = \"sentiment.bogus\"\n",
            &["select_metric", "sentiment.bogus", "sentiment.accuracy"],
        ),
        (
            "[train]\n",
            "[train]\nselect_metric = \"nobody.f1\"\n",
            &["select_metric", "\"nobody\""],
        ),
        (
            "[train]\n",
            "[train]\nlearning_rate = 1e-3\n",
            &["learning_rate"],
        ),
        (
            "batch_size = 8",
            "batch_size = 0",
            &["train.batch_size", "0"],
        ),
        ("epochs = 6", "epochs = -1", &["train.epochs"]),
        (
            "warmup_ratio = 0.1",
            "warmup_ratio = 1.5",
            &["train.warmup_ratio", "1.5"],
        ),
        (
            "head_dropout = 0.1",
            "head_dropout = 2.0",
            &["model.head_dropout", "2"],
        ),
        (
            "train = \"sent_train.jsonl\"",
            "train = \"missing.jsonl\"",
            &["missing.jsonl"],
        ),
        (
            "name = \"ner\"",
            "name = \"sentiment\"",
            &["\"sentiment\"", "used twice"],
        ),
    ];
    for (i, (from, to, wants)) in cases.iter().enumerate() {
        assert!(base.contains(from), "{from}");
        let file = format!("r{i}.toml");
        std::fs::write(w.path(&file), base.replace(from, to)).unwrap();
        let mut wants = wants.to_vec();
        let path = w.p(&file);
        if !to.contains("missing.jsonl") {
            // A missing data file is named by its own path instead.
            wants.push(&path);
        }
        w.refused(
            &[
                "train",
                &path,
                "--out",
                &w.p(&format!("out{i}")),
                "--backend",
                "cpu",
            ],
            &wants,
        );
        // Nothing is left behind for a recipe that never started.
        let out = w.path(&format!("out{i}"));
        assert!(
            !out.exists() || std::fs::read_dir(&out).unwrap().next().is_none(),
            "{to}: {} holds files",
            out.display()
        );
    }
    // A name that climbs out of runs/ without --out.
    std::fs::write(
        w.path("climb.toml"),
        base.replacen("name = \"tiny\"", "name = \"../../x\"", 1),
    )
    .unwrap();
    w.refused(
        &["train", &w.p("climb.toml"), "--backend", "cpu"],
        &["name = \"../../x\"", "--out"],
    );
    assert!(!w.dir.path().parent().unwrap().join("x").exists());
}

#[test]
fn model_files_are_checked_at_load() {
    let w = World::new();
    let model = w.path("model");
    let embed = |dir: &str, wants: &[&str]| {
        w.refused(
            &["embed", "--backend", "cpu", "--model", &w.p(dir), "hello"],
            wants,
        );
    };
    // A header claiming a tensor of 2^62 × 8 floats.
    model_copy(&model, &w.path("huge"), |_| {
        let h = json!({"embeddings.word_embeddings.weight":
            {"dtype": "F32", "shape": [1u64 << 62, 8], "data_offsets": [0, 16]}});
        join_safetensors(h.as_object().unwrap(), &[0; 16])
    });
    embed("huge", &[&w.p("huge/model.safetensors")]);
    // Offsets past the end of the file.
    model_copy(&model, &w.path("past"), |_| {
        let h = json!({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 1600]}});
        join_safetensors(h.as_object().unwrap(), &[0; 16])
    });
    embed("past", &[&w.p("past/model.safetensors")]);
    // A header length larger than the file.
    model_copy(&model, &w.path("len"), |_| {
        let mut b = u64::MAX.to_le_bytes().to_vec();
        b.extend(b"{}");
        b
    });
    embed("len", &[&w.p("len/model.safetensors")]);
    // Non-finite weights are refused, naming the tensor.
    for (dir, value, shown) in [("nan", f32::NAN, "NaN"), ("inf", f32::INFINITY, "inf")] {
        model_copy(&model, &w.path(dir), |b| {
            fill_tensor(b, "embeddings.LayerNorm.weight", value)
        });
        embed(
            dir,
            &[
                &w.p(&format!("{dir}/model.safetensors")),
                "embeddings.LayerNorm.weight",
                shown,
            ],
        );
    }
    // A config.json that is not one, or has impossible sizes.
    for (dir, config, want) in [
        ("cfg1", "{\"hidden_size\": ", "config.json"),
        ("cfg2", "[1, 2]", "config.json"),
    ] {
        model_copy(&model, &w.path(dir), |b| b);
        std::fs::write(w.path(dir).join("config.json"), config).unwrap();
        embed(dir, &[want]);
    }
    // No model at all.
    embed("nowhere", &[&w.p("nowhere")]);
}

#[test]
fn command_line_values_are_checked_up_front() {
    let w = World::new();
    let model = w.p("model");
    let bench = |flag: &str, value: &str, wants: &[&str]| {
        let mut args = vec!["bench-train", "--model", &model, "--backends", "cpu"];
        if flag != "--steps" {
            args.extend(["--steps", "1", "--warmup", "0"]);
        }
        args.extend([flag, value]);
        w.refused(&args, wants);
    };
    bench("--seq", "0", &["--seq", "0"]);
    bench(
        "--seq",
        "1000",
        &["--seq", "1000", "max_position_embeddings"],
    );
    bench("--batch", "0", &["--batch", "0"]);
    bench("--steps", "0", &["--steps", "0"]);
    // --json onto a file that is not one of its own.
    std::fs::write(w.path("notes.txt"), "precious").unwrap();
    bench("--json", &w.p("notes.txt"), &[&w.p("notes.txt")]);

    w.refused(
        &[
            "embed",
            "--backend",
            "cpu",
            "--model",
            &model,
            "--batch-size",
            "0",
            "hi",
        ],
        &["--batch-size"],
    );
    w.refused(
        &[
            "embed",
            "--backend",
            "cpu",
            "--model",
            &model,
            "--max-len",
            "100000",
            "hi",
        ],
        &["--max-len", "100000"],
    );
    w.refused(
        &["data", "check", &w.p("nowhere.txt"), "--format", "conll"],
        &[&w.p("nowhere.txt")],
    );
}

#[test]
fn adapt_settings_and_outputs_are_checked() {
    let w = World::new();
    let task = w.adapted();
    let adapt = |extra: &[&str], wants: &[&str]| {
        let mut args = vec![
            "adapt".to_string(),
            "--support".into(),
            w.p("support.jsonl"),
            "--model".into(),
            w.p("model"),
            "--out".into(),
            w.p("new.safetensors"),
            "--steps".into(),
            "2".into(),
            "--backend".into(),
            "cpu".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        w.refused(&args, wants);
        assert!(!w.path("new.safetensors").exists());
    };
    adapt(&["--adapter-size", "0"], &["adapter_size = 0"]);
    adapt(&["--layers", "100"], &["layers = 100", "2 blocks"]);
    adapt(&["--layers", "0"], &["layers = 0"]);
    adapt(&["--lr", "NaN"], &["lr = NaN"]);
    adapt(&["--head-lr=-1"], &["head_lr = -1"]);
    adapt(&["--scale", "NaN"], &["scale = NaN"]);
    adapt(&["--scale", "0"], &["scale = 0"]);
    adapt(&["--batch-size", "0"], &["batch_size = 0"]);
    adapt(&["--labels", "pos,neutral"], &["neutral"]);

    // --out onto a file of the user's own, or a folder: refused, untouched.
    std::fs::write(w.path("notes.txt"), "precious").unwrap();
    let mut args = vec![
        "adapt",
        "--support",
        "support.jsonl",
        "--model",
        "model",
        "--steps",
        "2",
        "--backend",
        "cpu",
        "--out",
    ];
    args.push("notes.txt");
    w.refused(&args, &["notes.txt", "not a file that core-train wrote"]);
    args.pop();
    args.push("model");
    w.refused(&args, &["model", "is a directory"]);
    // Its own earlier task file is replaced.
    args.pop();
    args.push("task.safetensors");
    w.ok(&args);
    assert!(task.is_file());
    let leftovers: Vec<String> = std::fs::read_dir(w.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Empty support file, support with one label, a label without examples.
    std::fs::write(w.path("empty.jsonl"), "").unwrap();
    w.refused(
        &[
            "adapt",
            "--support",
            "empty.jsonl",
            "--model",
            "model",
            "--out",
            "x.safetensors",
            "--backend",
            "cpu",
        ],
        &["empty.jsonl"],
    );
    std::fs::write(
        w.path("one.jsonl"),
        json!({"text": "the movie", "label": "pos"}).to_string() + "\n",
    )
    .unwrap();
    w.refused(
        &[
            "adapt",
            "--support",
            "one.jsonl",
            "--model",
            "model",
            "--out",
            "x.safetensors",
            "--backend",
            "cpu",
        ],
        &["one.jsonl"],
    );
}

#[test]
fn task_files_are_untrusted() {
    let w = World::new();
    let task = w.adapted();
    let predict = |task: &str, model: &str, wants: &[&str]| {
        w.refused(
            &[
                "predict",
                "--backend",
                "cpu",
                "--task",
                task,
                "--model",
                model,
                "the movie is great",
            ],
            wants,
        )
    };
    let ok = |task: &str, model: &str| {
        w.ok(&[
            "predict",
            "--backend",
            "cpu",
            "--task",
            task,
            "--model",
            model,
            "the movie is great",
        ])
    };
    ok(&w.p("task.safetensors"), &w.p("model"));
    let long_text = vec!["the"; 2000].join(" ");
    type Edit = fn(&mut Value);
    let hostile: &[(&str, Edit, &[&str])] = &[
        (
            "max_len.safetensors",
            |m| m["max_len"] = json!(100000),
            &["max_len = 100000"],
        ),
        (
            "maxlen2.safetensors",
            |m| m["max_len"] = json!(1),
            &["max_len = 1"],
        ),
        (
            "layers.safetensors",
            |m| m["config"]["layers"] = json!(100),
            &["layers = 100"],
        ),
        (
            "adapter.safetensors",
            |m| m["config"]["adapter_size"] = json!(0),
            &["adapter_size = 0"],
        ),
        (
            "first.safetensors",
            |m| m["first"] = json!(7),
            &["first = 7"],
        ),
        (
            "scale.safetensors",
            |m| m["config"]["scale"] = json!(-1.0),
            &["scale = -1"],
        ),
        (
            "labels.safetensors",
            |m| m["labels"] = json!(["a", "b", "c"]),
            &["head"],
        ),
        (
            "one.safetensors",
            |m| m["labels"] = json!(["a"]),
            &["2 labels"],
        ),
        (
            "format.safetensors",
            |m| m["format"] = json!("polytask-task/9"),
            &["polytask-task/9"],
        ),
    ];
    for (name, edit, wants) in hostile {
        edit_task_meta(&task, &w.path(name), edit);
        let mut wants = wants.to_vec();
        let path = w.p(name);
        wants.push(&path);
        w.refused(
            &[
                "predict",
                "--backend",
                "cpu",
                "--task",
                &path,
                "--model",
                &w.p("model"),
                &long_text,
            ],
            &wants,
        );
    }
    // Not a task file at all.
    predict(
        &w.p("model/model.safetensors"),
        &w.p("model"),
        &["not a task file"],
    );
    std::fs::write(w.path("garbage.safetensors"), b"\x05\0\0\0\0\0\0\0{}").unwrap();
    predict(
        &w.p("garbage.safetensors"),
        &w.p("model"),
        &[&w.p("garbage.safetensors")],
    );

    // The base is recognised by its tensors: the same weights with the file's metadata in
    // another order are accepted; one changed value is not.
    let reorder = |b: Vec<u8>| {
        let (mut header, data) = split_safetensors(&b);
        let mut meta = serde_json::Map::new();
        meta.insert("zz".into(), json!("last"));
        meta.insert("aa".into(), json!("first"));
        header.insert("__metadata__".into(), Value::Object(meta));
        join_safetensors(&header, &data)
    };
    model_copy(&w.path("model"), &w.path("same"), reorder);
    assert_ne!(
        std::fs::read(w.path("same/model.safetensors")).unwrap(),
        std::fs::read(w.path("model/model.safetensors")).unwrap()
    );
    ok(&w.p("task.safetensors"), &w.p("same"));
    model_copy(&w.path("model"), &w.path("other"), |b| {
        fill_tensor(b, "pooler.dense.bias", 0.5)
    });
    predict(&w.p("task.safetensors"), &w.p("other"), &["base"]);
    // Non-finite adapted weights.
    let bytes = std::fs::read(&task).unwrap();
    let (header, _) = split_safetensors(&bytes);
    let head = header
        .keys()
        .find(|k| k.starts_with("head."))
        .unwrap()
        .clone();
    std::fs::write(
        w.path("nan.safetensors"),
        fill_tensor(bytes, &head, f32::NAN),
    )
    .unwrap();
    predict(&w.p("nan.safetensors"), &w.p("model"), &[&head, "NaN"]);
}

#[test]
fn text_follows_one_rule_everywhere() {
    let w = World::new();
    let last = w.trained();
    w.adapted();
    let last = last.display().to_string();
    let commands: Vec<Vec<String>> = vec![
        vec!["embed".into(), "--model".into(), w.p("model")],
        vec!["predict".into(), "--model".into(), last.clone()],
        vec![
            "predict".into(),
            "--task".into(),
            w.p("task.safetensors"),
            "--model".into(),
            w.p("model"),
        ],
    ];
    for c in &commands {
        let mut args: Vec<&str> = c.iter().map(|s| s.as_str()).collect();
        args.extend(["--backend", "cpu"]);
        for bad in ["", "   ", "\t"] {
            let mut a = args.clone();
            a.extend(["fine text", bad]);
            w.refused(&a, &["argument 2", "empty"]);
        }
        w.refused_with(
            &args,
            Some(b"fine text\n\nmore text\n"),
            &["stdin line 2", "empty"],
        );
        w.refused_with(&args, Some(b""), &["no text"]);
        w.refused_with(&args, Some(b"ok\n\xff\xfe\n"), &["stdin line 2", "UTF-8"]);
        // The documented success: one line per text.
        let o = run_stdin(w.dir.path(), &args, b"the movie is great\nalice met bob\n");
        assert!(o.status.success(), "{c:?}: {}", text(&o));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).lines().count(),
            2,
            "{c:?}"
        );
    }

    // A tasks.json whose label list does not match the head: named, with what to check.
    let tasks_path = PathBuf::from(&last).join("tasks.json");
    let mut tasks: Value = serde_json::from_slice(&std::fs::read(&tasks_path).unwrap()).unwrap();
    tasks["tasks"][0]["labels"]
        .as_array_mut()
        .unwrap()
        .push(json!("neutral"));
    std::fs::write(&tasks_path, tasks.to_string()).unwrap();
    w.refused(
        &["predict", "--backend", "cpu", "--model", &last, "the movie"],
        &["tasks.json"],
    );
}

#[test]
fn data_files_are_named_with_line_and_value() {
    let w = World::new();
    let check = |name: &str, format: &str, content: &[u8]| -> Output {
        std::fs::write(w.path(name), content).unwrap();
        w.run(&["data", "check", &w.p(name), "--format", format])
    };
    let refused = |name: &str, format: &str, content: &[u8], wants: &[&str]| {
        std::fs::write(w.path(name), content).unwrap();
        let mut wants = wants.to_vec();
        let path = w.p(name);
        wants.push(&path);
        w.refused(&["data", "check", &path, "--format", format], &wants);
    };
    // CoNLL: a NUL inside a token; a line with one column; a BOM is accepted, not kept.
    refused(
        "nul.conll",
        "conll",
        b"-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nre\0jects VBZ B-VP O\n",
        &[":4", "U+0000"],
    );
    refused(
        "cols.conll",
        "conll",
        b"EU NNP B-NP B-ORG\nrejects\n",
        &[":2"],
    );
    let o = check(
        "bom.conll",
        "conll",
        b"\xef\xbb\xbfEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n",
    );
    assert!(o.status.success(), "{}", text(&o));
    refused("latin1.conll", "conll", b"caf\xe9 NN B-NP O\n", &["UTF-8"]);
    // JSON lines: a BOM is accepted; kinds mixed name both lines; a tab in the label is fine
    // but a NUL in the text is not.
    let sent = json!({"text": "the movie", "label": "pos"}).to_string();
    let tok = json!({"tokens": ["alice"], "tags": ["B-PER"]}).to_string();
    let mut bom = b"\xef\xbb\xbf".to_vec();
    bom.extend(format!("{sent}\n{sent}\n").as_bytes());
    let o = check("bom.jsonl", "jsonl", &bom);
    assert!(o.status.success(), "{}", text(&o));
    refused(
        "mixed.jsonl",
        "jsonl",
        format!("{sent}\n{sent}\n{tok}\n").as_bytes(),
        &[":3", "first at line 1"],
    );
    refused(
        "nul.jsonl",
        "jsonl",
        (json!({"text": "the\u{0}movie", "label": "pos"}).to_string() + "\n").as_bytes(),
        &[":1", "U+0000"],
    );
    refused(
        "tags.jsonl",
        "jsonl",
        (json!({"tokens": ["a", "b"], "tags": ["O"]}).to_string() + "\n").as_bytes(),
        &[":1"],
    );
    refused(
        "emptytok.jsonl",
        "jsonl",
        (json!({"tokens": [], "tags": []}).to_string() + "\n").as_bytes(),
        &[":1"],
    );
    refused(
        "broken.jsonl",
        "jsonl",
        format!("{sent}\n{{\"text\": \n").as_bytes(),
        &[":2"],
    );
    // SST-2 and CLINC150.
    refused(
        "bad.tsv",
        "sst2",
        b"label\tsentence\n7\tfine movie\n",
        &[":2", "7"],
    );
    refused(
        "header.tsv",
        "sst2",
        b"sentence\tlabel\n1\tfine movie\n",
        &[":1", "header"],
    );
    refused(
        "clinc.json",
        "clinc",
        json!({"train": [["book a flight", ""]], "val": [], "test": []})
            .to_string()
            .as_bytes(),
        &["train[0]", "non-empty"],
    );
    refused("clinc2.json", "clinc", b"{\"train\": 5}", &["train"]);
}
