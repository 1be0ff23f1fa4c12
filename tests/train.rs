//! `core-train train`, `eval` and `predict` end to end on a tiny model and tiny data made
//! here (a 2-layer BERT with a 40-word vocabulary; JSON-lines data): training improves the
//! dev scores, a resumed run continues exactly, a killed or interrupted run leaves a
//! loadable checkpoint, and bad data is refused with file and line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;

use common::{recipe, tiny_model, write_data};

fn setup(extra_train: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    tiny_model(&dir.path().join("model"));
    write_data(dir.path());
    let r = recipe(dir.path(), extra_train);
    (dir, r)
}

fn core_train() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_core-train"));
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    c
}

fn run(args: &[&str]) -> Output {
    core_train().args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `core-train train RECIPE --out OUT` on the CPU, logging every step.
fn train_command(recipe: &Path, out: &Path) -> Command {
    let mut c = core_train();
    c.args([
        "train",
        recipe.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
    .args(["--backend", "cpu", "--log-every", "1"]);
    c
}

fn train(recipe: &Path, out: &Path, extra: &[&str]) -> Output {
    train_command(recipe, out).args(extra).output().unwrap()
}

/// `core-train eval MODEL --split dev --json` on the CPU: the scores of every task.
fn dev_scores(model: &Path) -> Value {
    let o = run(&[
        "eval",
        model.to_str().unwrap(),
        "--split",
        "dev",
        "--backend",
        "cpu",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// `core-train export --model MODEL --out BUNDLE` (f32).
fn export(model: &Path, bundle: &Path) {
    let o = run(&[
        "export",
        "--model",
        model.to_str().unwrap(),
        "--out",
        bundle.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
}

/// Every logged step of `out` has the loss of the same step of the reference run, and
/// every step is logged once.
fn assert_same_losses(out: &Path, reference: &[(u64, u32)], what: &str) {
    let losses = step_losses(out);
    assert_eq!(
        losses.len(),
        reference.len(),
        "{what}: one line per step, none repeated"
    );
    for (step, bits) in losses {
        let want = reference.iter().find(|(s, _)| *s == step).map(|x| x.1);
        assert_eq!(Some(bits), want, "step {step} after {what} and resume");
    }
}

/// Training-step lines of metrics.jsonl: step → (joint loss bits, per-task losses).
fn step_losses(out: &Path) -> Vec<(u64, u32)> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v.get("loss").is_some())
        .map(|v| {
            (
                v["step"].as_u64().unwrap(),
                (v["loss"].as_f64().unwrap() as f32).to_bits(),
            )
        })
        .collect()
}

#[test]
fn trains_evaluates_and_predicts() {
    let (dir, recipe) = setup("");
    let out = dir.path().join("run");
    let o = train(&recipe, &out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let results: Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    // 2 balanced classes and a task whose tags follow word identity: well above chance.
    let acc = results["dev"]["sentiment"]["accuracy"].as_f64().unwrap();
    let f1 = results["dev"]["ner"]["f1"].as_f64().unwrap();
    assert!(acc >= 0.9, "sentiment dev accuracy {acc}\n{}", text(&o));
    assert!(f1 >= 0.9, "ner dev entity F1 {f1}\n{}", text(&o));
    // The first logged loss is far above the last ones.
    let losses = step_losses(&out);
    let first = f32::from_bits(losses[0].1);
    let last = f32::from_bits(losses.last().unwrap().1);
    assert!(last < 0.3 * first, "loss {first} → {last}");
    assert!(text(&o).contains("sentiment"), "results table printed");
    // Every step line carries the throughput of the steps so far; tokens outnumber
    // examples (each example has [CLS], [SEP] and at least one word piece).
    for line in std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v.get("loss").is_some())
    {
        let ex = line["examples_per_s"].as_f64().unwrap();
        let tok = line["tokens_per_s"].as_f64().unwrap();
        assert!(ex.is_finite() && ex > 0.0 && tok >= 3.0 * ex, "{line}");
    }

    let best = out.join("best");
    let scores = dev_scores(&best);
    assert_eq!(
        scores["ner"]["f1"].as_f64(),
        results["dev"]["ner"]["f1"].as_f64(),
        "eval reproduces the training run's dev score"
    );

    let o = run(&[
        "predict",
        "--model",
        best.to_str().unwrap(),
        "--backend",
        "cpu",
        "Bob visited Berlin today",
        "the film was awful",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let lines: Vec<Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let entities = &lines[0]["tasks"]["ner"]["entities"];
    assert_eq!(entities[0]["type"], "PER", "{}", lines[0]);
    assert_eq!(entities[0]["text"], "Bob");
    assert_eq!(entities[1]["type"], "LOC");
    assert_eq!(entities[1]["text"], "Berlin");
    assert_eq!(entities[1]["start"], 12);
    assert_eq!(
        lines[1]["tasks"]["sentiment"]["label"], "negative",
        "{}",
        lines[1]
    );
    // The run exported as a bundle predicts the same (f32: identical output).
    let bundle = dir.path().join("bundle");
    export(&best, &bundle);
    let o = run(&[
        "predict",
        "--bundle",
        bundle.to_str().unwrap(),
        "--backend",
        "cpu",
        "Bob visited Berlin today",
        "the film was awful",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let via_bundle: Vec<Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(via_bundle, lines);
}

#[test]
fn resumed_run_continues_exactly() {
    let (dir, recipe) = setup("");
    let a = dir.path().join("a");
    let o = train(&recipe, &a, &["--max-steps", "10"]);
    assert!(o.status.success(), "{}", text(&o));
    let b = dir.path().join("b");
    let o = train(&recipe, &b, &["--max-steps", "5"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("--resume"), "{}", text(&o));
    let o = train(&recipe, &b, &["--max-steps", "10"]);
    assert!(!o.status.success(), "an existing run is not overwritten");
    assert!(text(&o).contains("--resume"), "{}", text(&o));
    let o = train(&recipe, &b, &["--max-steps", "10", "--resume"]);
    assert!(o.status.success(), "{}", text(&o));
    let (la, lb) = (step_losses(&a), step_losses(&b));
    assert_eq!(la.len(), 10);
    assert_eq!(
        la, lb,
        "every step's loss is bit-identical after resuming at step 5"
    );
    // --seed overrides the recipe's seed (7): other head weights and batches, other losses.
    let c = dir.path().join("c");
    let o = train(&recipe, &c, &["--max-steps", "3", "--seed", "8"]);
    assert!(o.status.success(), "{}", text(&o));
    let recorded = std::fs::read_to_string(c.join("last/recipe.toml")).unwrap();
    assert!(recorded.contains("seed = 8"), "{recorded}");
    let lc = step_losses(&c);
    assert_eq!(lc.len(), 3);
    assert_ne!(lc[..], la[..3], "another seed gives other losses");
}

#[test]
fn killed_and_interrupted_runs_leave_loadable_checkpoints() {
    let (dir, recipe) = setup("");
    let reference = dir.path().join("ref");
    assert!(train(&recipe, &reference, &[]).status.success());
    let reference = step_losses(&reference);

    // SIGKILL at some point after the first checkpoint: whatever step `last/` holds, it
    // loads, and resuming reproduces the uninterrupted losses.
    let out = dir.path().join("killed");
    let mut child = train_command(&recipe, &out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !out.join("last/state.json").exists() && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(150));
    child.kill().unwrap();
    child.wait().unwrap();
    let o = train(&recipe, &out, &["--resume"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_same_losses(&out, &reference, "kill");

    // SIGINT (Ctrl-C): saves and exits with 130, then resumes.
    let out = dir.path().join("interrupted");
    let child = train_command(&recipe, &out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let metrics = out.join("metrics.jsonl");
    let start = Instant::now();
    while std::fs::read_to_string(&metrics).map_or(0, |s| s.lines().count()) < 3
        && start.elapsed() < Duration::from_secs(120)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let o = child.wait_with_output().unwrap();
    if o.status.success() {
        // The run finished before the signal arrived: nothing to check.
        return;
    }
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    assert!(text(&o).contains("interrupted at step"), "{}", text(&o));
    let o = train(&recipe, &out, &["--resume"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_same_losses(&out, &reference, "Ctrl-C");
}

/// `kill -9` at random moments of a short run (20 by default; `POLYTASK_KILLS=N` and
/// `POLYTASK_KILL_SEED=S` for a longer or another search, see scripts/kill-test.sh): after
/// every kill `last/` is either absent or loads, and every run, resumed as often as it was
/// killed, logs the same loss at every step as one that never was. Moments are drawn over
/// the whole life of a process: start-up, the first step, checkpoint writes, evaluation.
#[test]
fn kill_9_at_random_moments_never_changes_the_losses() {
    let kills: usize = std::env::var("POLYTASK_KILLS").map_or(20, |v| v.parse().unwrap());
    let mut seed: u64 = std::env::var("POLYTASK_KILL_SEED").map_or(2026, |v| v.parse().unwrap());
    eprintln!("POLYTASK_KILLS={kills} POLYTASK_KILL_SEED={seed}");
    let (dir, recipe) = setup("");
    let reference = dir.path().join("ref");
    let start = Instant::now();
    assert!(train(&recipe, &reference, &[]).status.success());
    let life = start.elapsed();
    let reference = step_losses(&reference);
    let mut uniform = move || {
        // xorshift64*: reproducible moments from the printed seed.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    };
    let (mut killed, mut runs) = (0, 0);
    let mut out = dir.path().join("run0");
    while killed < kills {
        let mut c = train_command(&recipe, &out);
        if out.exists() {
            c.arg("--resume");
        }
        let mut child = c
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(life.mul_f64(0.4 * uniform()));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            child.wait().unwrap();
            killed += 1;
            if out.join("last").exists() {
                // Whatever the moment, the checkpoint is whole.
                dev_scores(&out.join("last"));
            }
            continue;
        }
        // The run finished before the kill: it must have succeeded, with the losses of
        // the run that was never killed.
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_same_losses(&out, &reference, &format!("kills in {}", out.display()));
        runs += 1;
        out = dir.path().join(format!("run{runs}"));
    }
    if out.exists() {
        let o = train(&recipe, &out, &["--resume"]);
        assert!(o.status.success(), "{}", text(&o));
        assert_same_losses(&out, &reference, &format!("kills in {}", out.display()));
        runs += 1;
    }
    eprintln!("{killed} kills over {runs} runs, every run with the reference losses");
}

#[test]
fn bad_data_is_refused_with_file_and_line() {
    let (dir, recipe) = setup("");
    // A dev label that training never saw.
    let dev = dir.path().join("sent_dev.jsonl");
    let mut text_dev = std::fs::read_to_string(&dev).unwrap();
    text_dev.push_str(&json!({"text": "the show is fine", "label": "neutral"}).to_string());
    text_dev.push('\n');
    std::fs::write(&dev, text_dev).unwrap();
    let o = train(&recipe, &dir.path().join("r1"), &[]);
    assert!(!o.status.success());
    let msg = text(&o);
    assert!(
        msg.contains(&format!("{}:13", dev.display())) && msg.contains("\"neutral\""),
        "{msg}"
    );

    // A tag count that differs from the token count.
    let (dir, recipe) = setup("");
    let train_file = dir.path().join("tok_train.jsonl");
    let mut t = std::fs::read_to_string(&train_file).unwrap();
    t.push_str(&json!({"tokens": ["alice", "met", "bob"], "tags": ["B-PER", "O"]}).to_string());
    t.push('\n');
    std::fs::write(&train_file, t).unwrap();
    let o = train(&recipe, &dir.path().join("r2"), &[]);
    assert!(!o.status.success());
    let msg = text(&o);
    assert!(
        msg.contains(&format!("{}:49", train_file.display())),
        "{msg}"
    );

    // A recipe typo.
    let (dir, recipe) = setup("learning_rate = 1e-3");
    let o = train(&recipe, &dir.path().join("r3"), &[]);
    assert!(!o.status.success());
    assert!(text(&o).contains("learning_rate"), "{}", text(&o));
}

#[test]
fn non_finite_loss_stops_and_keeps_the_last_checkpoint() {
    // A learning rate this large drives the tiny model's loss to infinity within a few steps.
    let (dir, recipe) = setup("max_grad_norm = 0.0");
    let text_recipe = std::fs::read_to_string(&recipe)
        .unwrap()
        .replace("lr = 3e-3", "lr = 1e30");
    std::fs::write(&recipe, text_recipe).unwrap();
    let out = dir.path().join("run");
    let o = train(&recipe, &out, &[]);
    assert!(!o.status.success(), "{}", text(&o));
    let msg = text(&o);
    assert!(msg.contains("not finite"), "{msg}");
    assert!(msg.contains("Lower train.lr"), "{msg}");
    // Whatever checkpoint exists is loadable (never a half-written one).
    if out.join("last").exists() {
        dev_scores(&out.join("last"));
    }
}

#[test]
fn out_of_scope_threshold_is_fitted_on_dev_and_applied_to_test() {
    // CLINC150 from the mirror, a few hundred queries, on the tiny model: this checks the
    // plumbing (fit on dev, apply the same threshold to test, in `train` and in `eval`),
    // not the quality of the threshold.
    let dir = tempfile::tempdir().unwrap();
    tiny_model(&dir.path().join("model"));
    let recipe = dir.path().join("recipe.toml");
    std::fs::write(
        &recipe,
        r#"name = "tiny-clinc"
[model]
path = "model"
max_len = 16
[train]
epochs = 1
batch_size = 16
lr = 3e-3
eval_batch_size = 64
[[task]]
name = "clinc"
dataset = "clinc150"
include_oos = true
max_train = 1500
max_eval = 400
"#,
    )
    .unwrap();
    let mirror = common::mirror();
    let data = dir.path().join("data");
    let out = dir.path().join("run");
    let o = train(
        &recipe,
        &out,
        &[
            "--mirror",
            mirror.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let results: Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    let (dev, test) = (&results["dev"]["clinc"], &results["test"]["clinc"]);
    let t = dev["oos_threshold"]
        .as_f64()
        .expect("a threshold fitted on dev");
    assert_eq!(
        test["oos_threshold"].as_f64(),
        Some(t),
        "test applies dev's"
    );
    // The fit starts from no threshold, so on dev it can only do as well or better.
    let (raw, at) = (
        dev["accuracy"].as_f64().unwrap(),
        dev["accuracy_at_threshold"].as_f64().unwrap(),
    );
    assert!(at >= raw, "dev accuracy {raw} → {at} at threshold {t}");
    for key in ["in_scope_accuracy_at_threshold", "oos_recall_at_threshold"] {
        assert!(test[key].as_f64().is_some(), "{key} in {test}");
    }
    assert!(text(&o).contains("oos_recall_at_threshold"), "{}", text(&o));
    // `eval --split test` applies the saved threshold and gives the same numbers.
    let best = out.join("best");
    let best_dir = best.to_str().unwrap();
    let o = run(&[
        "eval",
        best_dir,
        "--split",
        "test",
        "--backend",
        "cpu",
        "--json",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let scores: Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in [
        "oos_threshold",
        "in_scope_accuracy_at_threshold",
        "oos_recall_at_threshold",
        "accuracy_at_threshold",
    ] {
        assert_eq!(scores["clinc"][key], test[key], "{key}");
    }
    // The best checkpoint keeps the threshold, and `predict` says out of scope below it.
    let tasks: Value =
        serde_json::from_slice(&std::fs::read(out.join("best/tasks.json")).unwrap()).unwrap();
    let saved = tasks["tasks"][0]["out_of_scope_threshold"]
        .as_f64()
        .unwrap();
    assert_eq!(saved as f32, t as f32, "{tasks}");
    let texts = [
        "the movie was great",
        "alice met bob in paris",
        "what is the time",
        "a",
    ];
    let mut args = vec!["predict", "--model", best_dir, "--backend", "cpu"];
    args.extend(texts);
    let o = run(&args);
    assert!(o.status.success(), "{}", text(&o));
    for line in String::from_utf8(o.stdout).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let p = &v["tasks"]["clinc"];
        let confidence = p["confidence"].as_f64().unwrap() as f32;
        if confidence < t as f32 {
            assert_eq!(p["label"], "oos", "{v}");
        }
    }
    // A threshold above every probability: everything is out of scope.
    let mut tasks = tasks;
    tasks["tasks"][0]["out_of_scope_threshold"] = json!(1.5);
    std::fs::write(out.join("best/tasks.json"), tasks.to_string()).unwrap();
    let o = run(&args);
    assert!(o.status.success(), "{}", text(&o));
    let labels: Vec<Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["tasks"]["clinc"]["label"].clone())
        .collect();
    assert_eq!(labels, vec![json!("oos"); texts.len()]);
}

/// A token task whose tags follow capitalisation alone ("Bob" is a name, "bob" is not,
/// and every word occurs both ways): the uncased tiny model cannot tell the two apart,
/// the same model with `casing = true` learns it; `eval`, `predict` and an exported
/// bundle read the shapes too.
#[test]
fn casing_lets_an_uncased_model_learn_capitalisation() {
    let dir = tempfile::tempdir().unwrap();
    tiny_model(&dir.path().join("model"));
    let words = ["alice", "bob", "paris", "film", "today", "visited"];
    let write = |file: &str, n: usize, offset: usize| {
        let mut lines = Vec::new();
        for i in 0..n {
            let k = i + offset;
            let (mut tokens, mut tags) = (Vec::new(), Vec::new());
            for pos in 0..4 {
                let word = words[(k + 2 * pos) % words.len()];
                // Capitalised or not independently of the word and its position.
                if (k * 7 + pos * 3 + k / 5).is_multiple_of(2) {
                    tokens.push(format!("{}{}", word[..1].to_uppercase(), &word[1..]));
                    tags.push("B-NAME");
                } else {
                    tokens.push(word.to_string());
                    tags.push("O");
                }
            }
            lines.push(json!({"tokens": tokens, "tags": tags}).to_string());
        }
        std::fs::write(dir.path().join(file), lines.join("\n") + "\n").unwrap();
    };
    write("train.jsonl", 64, 0);
    write("dev.jsonl", 24, 100);
    let recipe = |casing: bool| {
        let path = dir.path().join(format!("casing-{casing}.toml"));
        let text = format!(
            r#"name = "casing"
[model]
path = "model"
max_len = 16
casing = {casing}
[train]
epochs = 12
batch_size = 8
lr = 3e-3
head_lr_scale = 3
warmup_ratio = 0.1
seed = 3
[[task]]
name = "names"
dataset = "jsonl"
train = "train.jsonl"
dev = "dev.jsonl"
test = "dev.jsonl"
"#
        );
        std::fs::write(&path, text).unwrap();
        path
    };
    let f1 = |out: &Path| -> f64 {
        let results: Value =
            serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
        results["dev"]["names"]["f1"].as_f64().unwrap()
    };
    let (plain, cased) = (dir.path().join("plain"), dir.path().join("cased"));
    let o = train(&recipe(false), &plain, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let o = train(&recipe(true), &cased, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let (f_plain, f_cased) = (f1(&plain), f1(&cased));
    eprintln!("dev entity F1: {f_plain:.4} without casing, {f_cased:.4} with");
    assert!(
        f_cased >= 0.95,
        "with casing: dev F1 {f_cased}\n{}",
        text(&o)
    );
    assert!(
        f_plain <= 0.8,
        "without casing the shapes cannot be seen: dev F1 {f_plain}"
    );
    let tensors = |dir: &Path| -> Value {
        let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        serde_json::from_slice(&bytes[8..8 + n]).unwrap()
    };
    let best = cased.join("best");
    assert_eq!(
        tensors(&best)["bert.embeddings.casing_embeddings.weight"]["shape"],
        json!([7, 32])
    );
    assert!(tensors(&plain.join("best"))["bert.embeddings.casing_embeddings.weight"].is_null());

    // `eval` loads the table back and scores what training scored.
    let best_dir = best.to_str().unwrap();
    assert_eq!(dev_scores(&best)["names"]["f1"].as_f64(), Some(f_cased));
    // `predict` reads the shapes of raw text, and so does an exported bundle.
    let sentence = ["Bob visited paris today", "bob visited Paris Today"];
    let names = |o: &Output| -> Vec<Vec<String>> {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                v["tasks"]["names"]["entities"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["text"].as_str().unwrap().to_string())
                    .collect()
            })
            .collect()
    };
    let mut args = vec!["predict", "--model", best_dir, "--backend", "cpu"];
    args.extend(sentence);
    let o = run(&args);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(names(&o), [vec!["Bob"], vec!["Paris", "Today"]]);
    let bundle = dir.path().join("bundle");
    export(&best, &bundle);
    let mut args = vec![
        "predict",
        "--bundle",
        bundle.to_str().unwrap(),
        "--backend",
        "cpu",
    ];
    args.extend(sentence);
    let o = run(&args);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(names(&o), [vec!["Bob"], vec!["Paris", "Today"]]);
}

/// `core-train distill RECIPE --out OUT` on the CPU, logging every step.
fn distill(recipe: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut c = core_train();
    c.args([
        "distill",
        recipe.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
    .args(["--backend", "cpu", "--log-every", "1"])
    .args(extra);
    c.output().unwrap()
}

/// `recipe` with a `[distill]` section appended, as `name`.
fn distill_recipe(recipe: &Path, name: &str, section: &str) -> PathBuf {
    let text = std::fs::read_to_string(recipe).unwrap();
    let path = recipe.with_file_name(name);
    std::fs::write(&path, format!("{text}\n[distill]\n{section}\n")).unwrap();
    path
}

/// `distill.cache`: the teachers' logits are computed once into the cache directory (one
/// file per teacher and corpus), read by the next run, and the student learns as from the
/// live teacher; a file there that is not the cache is refused by name and left as it is.
#[test]
fn caches_the_teachers_outputs_once() {
    let (dir, recipe) = setup("");
    let teacher = dir.path().join("teacher");
    let o = train(&recipe, &teacher, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let live = "teacher = \"teacher/best\"\nalpha = 0.7\ntemperature = 2.0";
    let losses = |out: &Path| -> Vec<f64> {
        std::fs::read_to_string(out.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter_map(|v| v.get("loss").and_then(Value::as_f64))
            .collect()
    };
    let r = distill_recipe(&recipe, "live.toml", live);
    let o = distill(&r, &dir.path().join("live"), &["--max-steps", "8"]);
    assert!(o.status.success(), "{}", text(&o));
    let want = losses(&dir.path().join("live"));
    assert_eq!(want.len(), 8);

    let r = distill_recipe(
        &recipe,
        "cached.toml",
        &format!("{live}\ncache = \"cache\""),
    );
    let cache = dir.path().join("cache");
    let o = distill(&r, &dir.path().join("first"), &["--max-steps", "8"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert_eq!(t.matches("teacher outputs: computed").count(), 2, "{t}");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "one file per corpus: {files:?}");
    let first = losses(&dir.path().join("first"));
    for (step, (a, b)) in first.iter().zip(&want).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * b.abs().max(1.0),
            "step {}: {a} from the cache, {b} from the live teacher",
            step + 1
        );
    }
    // The next run reads the files and computes nothing.
    let o = distill(&r, &dir.path().join("second"), &["--max-steps", "8"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert_eq!(t.matches("teacher outputs: read").count(), 2, "{t}");
    assert!(!t.contains("teacher outputs: computed"), "{t}");
    assert_eq!(losses(&dir.path().join("second")), first);

    // A file at the cache's name that is not the cache is refused by name, untouched.
    std::fs::write(&files[0], b"my own notes").unwrap();
    let out = dir.path().join("third");
    let o = distill(&r, &out, &["--max-steps", "2"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    let name = files[0].file_name().unwrap().to_str().unwrap();
    assert!(t.contains(name) && t.contains("move it away"), "{t}");
    assert_eq!(std::fs::read(&files[0]).unwrap(), b"my own notes");

    // Intermediate matches need the live teacher.
    let r = distill_recipe(
        &recipe,
        "states.toml",
        &format!("{live}\ncache = \"cache\"\nhidden = [{{ teacher = 2, student = 2 }}]"),
    );
    let o = distill(&r, &dir.path().join("states"), &[]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("distill.cache") && t.contains("distill.hidden"),
        "{t}"
    );
}

/// Deep → shallow: a 1-block student made of the teacher's block 1 (heads included),
/// with soft targets, hidden states and attention maps matched. It is an ordinary
/// checkpoint (`config.json` says 1 block; `eval`, `predict` and `export` take it), its
/// run resumes exactly, and bad teachers and settings are refused before step 1.
#[test]
fn distills_a_shallow_student_and_refuses_bad_teachers() {
    let (dir, recipe) = setup("");
    let teacher = dir.path().join("teacher");
    let o = train(&recipe, &teacher, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let good = r#"teacher = "teacher/best"
student_layers = [1]
temperature = 2.0
alpha = 0.7
hidden = [{ teacher = 2, student = 1 }]
attention = [{ teacher = 2, student = 1, weight = 0.5 }]"#;
    let r = distill_recipe(&recipe, "distill.toml", good);
    let student = dir.path().join("student");
    let o = distill(&r, &student, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("distilling from"), "{}", text(&o));
    let config: Value =
        serde_json::from_slice(&std::fs::read(student.join("best/config.json")).unwrap()).unwrap();
    assert_eq!(config["num_hidden_layers"], 1);
    // The loss falls, and the student is a model like any other.
    let losses: Vec<f64> = std::fs::read_to_string(student.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter_map(|v| v.get("loss").and_then(Value::as_f64))
        .collect();
    // Each part of the loss is logged.
    let first: Value = serde_json::from_str(
        std::fs::read_to_string(student.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let parts = first["parts"]
        .as_object()
        .expect("a distillation step logs its parts");
    for key in [
        "sentiment.gold",
        "sentiment.soft",
        "hidden.2-1",
        "attention.2-1",
    ] {
        assert!(parts.contains_key(key), "{key} in {first}");
    }
    let k = losses.len() / 4;
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    assert!(
        mean(&losses[losses.len() - k..]) < 0.8 * mean(&losses[..k]),
        "{losses:?}"
    );
    let scores = dev_scores(&student.join("best"));
    assert!(
        scores["sentiment"]["accuracy"].as_f64().unwrap() > 0.0,
        "{scores}"
    );
    let o = run(&[
        "predict",
        "--model",
        student.join("best").to_str().unwrap(),
        "--backend",
        "cpu",
        "the movie is great",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    export(&student.join("best"), &dir.path().join("bundle"));

    // Exact resume, as `train`.
    let part = dir.path().join("part");
    let o = distill(&r, &part, &["--max-steps", "5"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = distill(&r, &part, &["--max-steps", "10", "--resume"]);
    assert!(o.status.success(), "{}", text(&o));
    let whole: Vec<(u64, u32)> = step_losses(&student)
        .into_iter()
        .filter(|(s, _)| *s <= 10)
        .collect();
    assert_same_losses(&part, &whole, "distill --max-steps 5");

    // A teacher whose label set differs, whose tokenizer differs, bad layer maps and T.
    let copy = |name: &str| {
        let to = dir.path().join(name);
        std::fs::create_dir_all(&to).unwrap();
        for f in std::fs::read_dir(teacher.join("best")).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
        }
        to
    };
    let relabelled = copy("relabelled");
    let tasks = std::fs::read_to_string(relabelled.join("tasks.json")).unwrap();
    std::fs::write(
        relabelled.join("tasks.json"),
        tasks.replace("\"positive\"", "\"upbeat\""),
    )
    .unwrap();
    let retokenized = copy("retokenized");
    let tok = std::fs::read_to_string(retokenized.join("tokenizer.json")).unwrap();
    std::fs::write(
        retokenized.join("tokenizer.json"),
        tok.replace("\"the\":", "\"thee\":"),
    )
    .unwrap();
    let cases = [
        (
            "teacher = \"relabelled\"".to_string(),
            vec!["distill.teacher", "relabelled", "label #", "\"upbeat\""],
        ),
        (
            "[distill.teachers]\nner = \"retokenized\"".to_string(),
            vec!["distill.teachers.ner", "word piece #", "\"thee\""],
        ),
        (
            good.replace("hidden = [{ teacher = 2", "hidden = [{ teacher = 3"),
            vec!["distill.hidden[0].teacher = 3"],
        ),
        (
            good.replace("student_layers = [1]", "student_layers = [2]"),
            vec!["distill.student_layers", "block 2"],
        ),
        (
            good.replace("temperature = 2.0", "temperature = 0"),
            vec!["distill.temperature must be > 0, got 0"],
        ),
        (
            "teacher = \"teacher/best\"\n[distill.teachers]\nbogus = \"teacher/best\"".to_string(),
            vec!["distill.teachers.bogus"],
        ),
    ];
    for (i, (section, wants)) in cases.iter().enumerate() {
        let r = distill_recipe(&recipe, &format!("bad{i}.toml"), section);
        let out = dir.path().join(format!("bad{i}"));
        let o = distill(&r, &out, &[]);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{section}: {t}");
        for w in wants {
            assert!(t.contains(w), "{section}: wants {w:?} in {t}");
        }
        assert!(
            !out.exists(),
            "{section}: nothing written before the checks pass"
        );
    }
    // `train` refuses a distillation recipe, `distill` a plain one.
    let o = train(&r, &dir.path().join("t"), &[]);
    assert!(text(&o).contains("core-train distill"), "{}", text(&o));
    let o = distill(&recipe, &dir.path().join("d"), &[]);
    assert!(text(&o).contains("no [distill] section"), "{}", text(&o));
}
