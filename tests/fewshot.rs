//! Few-shot commands end to end on a tiny model and data made here: `adapt` writes a task
//! file whose predictions `predict --task` reproduces exactly, bad support sets and bad
//! task files are refused with what and where, `meta-train` keeps its class split disjoint
//! and stores meta-learned adapters, and `eval-fewshot` scores every method on them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

mod common;

use common::tiny_model;

fn core_train() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_core-train"));
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    c
}

fn run(args: &[&str]) -> Output {
    core_train().args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write_jsonl(path: &Path, rows: &[(&str, &str)]) {
    let lines: Vec<String> = rows
        .iter()
        .map(|(t, l)| json!({"text": t, "label": l}).to_string())
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// Three labels whose sentences differ by their words.
const SUPPORT: &[(&str, &str)] = &[
    ("alice went to paris", "travel"),
    ("bob visited london today", "travel"),
    ("the movie was great", "review"),
    ("the show is very bad", "review"),
    ("alice met bob", "meeting"),
    ("carol met alice yesterday", "meeting"),
];

const HELD_OUT: &[(&str, &str)] = &[
    ("carol went to berlin", "travel"),
    ("bob visited paris yesterday", "travel"),
    ("the film was awful", "review"),
    ("a show is not good", "review"),
    ("bob met carol today", "meeting"),
    ("alice and bob met", "meeting"),
];

fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    tiny_model(&model);
    write_jsonl(&dir.path().join("support.jsonl"), SUPPORT);
    write_jsonl(&dir.path().join("heldout.jsonl"), HELD_OUT);
    (dir, model)
}

fn adapt(dir: &Path, model: &Path, mode: &str, extra: &[&str]) -> Output {
    let d = |f: &str| dir.join(f).display().to_string();
    let mut args = vec![
        "adapt".to_string(),
        "--support".into(),
        d("support.jsonl"),
        "--eval".into(),
        d("heldout.jsonl"),
        "--model".into(),
        model.display().to_string(),
        "--backend".into(),
        "cpu".into(),
        "--mode".into(),
        mode.into(),
        "--steps".into(),
        "5".into(),
        "--layers".into(),
        "1".into(),
        "--adapter-size".into(),
        "8".into(),
        "--out".into(),
        d(&format!("task-{mode}.safetensors")),
    ];
    if !extra.contains(&"--lr") {
        args.extend(["--lr".into(), "1e-2".into()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    core_train().args(&args).output().unwrap()
}

#[test]
fn adapted_tasks_reload_with_identical_predictions() {
    let (dir, model) = setup();
    let mut sizes = Vec::new();
    for mode in ["head", "adapters", "full"] {
        let o = adapt(dir.path(), &model, mode, &[]);
        assert!(o.status.success(), "{mode}: {}", stderr(&o));
        let report: Value = serde_json::from_slice(&o.stdout).unwrap();
        let adapt_accuracy = report["accuracy"].as_f64().unwrap();
        let task = dir.path().join(format!("task-{mode}.safetensors"));
        sizes.push(std::fs::metadata(&task).unwrap().len());
        // Predict the held-out texts from the saved file: the same accuracy as in memory.
        let mut args = vec![
            "predict".to_string(),
            "--task".into(),
            task.display().to_string(),
            "--model".into(),
            model.display().to_string(),
            "--backend".into(),
            "cpu".into(),
        ];
        args.extend(HELD_OUT.iter().map(|(t, _)| t.to_string()));
        let o = core_train().args(&args).output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let lines: Vec<Value> = String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), HELD_OUT.len());
        let mut correct = 0;
        for (line, (text, label)) in lines.iter().zip(HELD_OUT) {
            assert_eq!(line["text"], *text);
            let probs = line["probabilities"].as_object().unwrap();
            assert_eq!(probs.len(), 3);
            let sum: f64 = probs.values().map(|v| v.as_f64().unwrap()).sum();
            assert!((sum - 1.0).abs() < 1e-4, "{sum}");
            let best = probs
                .iter()
                .max_by(|a, b| a.1.as_f64().unwrap().total_cmp(&b.1.as_f64().unwrap()))
                .unwrap();
            assert_eq!(line["label"], *best.0);
            correct += usize::from(line["label"] == *label);
        }
        let predicted_accuracy = correct as f64 / HELD_OUT.len() as f64;
        assert_eq!(predicted_accuracy, adapt_accuracy, "{mode}");
    }
    // The head alone is smallest; adapters add little; the full top block adds the most.
    assert!(sizes[0] < sizes[1] && sizes[1] < sizes[2], "{sizes:?}");
}

#[test]
fn bad_support_sets_and_task_files_are_refused_with_what_and_where() {
    let (dir, model) = setup();
    let d = dir.path();
    let expect_error = |o: Output, want: &str| {
        assert!(!o.status.success());
        let e = stderr(&o);
        assert!(e.contains(want), "expected {want:?} in: {e}");
        e
    };
    // One label only.
    write_jsonl(&d.join("support.jsonl"), &SUPPORT[..2]);
    expect_error(
        adapt(d, &model, "head", &[]),
        "a task needs at least 2 labels, found 1 (travel)",
    );
    // A declared label with no example.
    write_jsonl(&d.join("support.jsonl"), SUPPORT);
    expect_error(
        adapt(
            d,
            &model,
            "head",
            &["--labels", "travel,review,meeting,weather"],
        ),
        "label \"weather\" has no example",
    );
    // Duplicate and empty texts, named by line.
    let mut dup = SUPPORT.to_vec();
    dup.push(("Alice went to Paris", "review"));
    write_jsonl(&d.join("support.jsonl"), &dup);
    expect_error(
        adapt(d, &model, "head", &[]),
        "support.jsonl:7: the same text as",
    );
    std::fs::write(
        d.join("support.jsonl"),
        "{\"text\": \"alice met bob\", \"label\": \"a\"}\n{\"text\": \" \", \"label\": \"b\"}\n",
    )
    .unwrap();
    expect_error(
        adapt(d, &model, "head", &[]),
        "support.jsonl:2: empty \"text\"",
    );
    // A held-out label that the task does not have.
    write_jsonl(&d.join("support.jsonl"), SUPPORT);
    let mut held = HELD_OUT.to_vec();
    held.push(("the weather is fine", "weather"));
    write_jsonl(&d.join("heldout.jsonl"), &held);
    expect_error(
        adapt(d, &model, "head", &[]),
        "heldout.jsonl:7: label \"weather\" is not one of the task's labels",
    );
    write_jsonl(&d.join("heldout.jsonl"), HELD_OUT);
    // A rate that is not a finite number is refused before any step; a finite one so
    // large that the loss diverges is reported, and nothing is written either way.
    let o = adapt(d, &model, "full", &["--lr", "inf", "--head-lr", "inf"]);
    expect_error(o, "lr = inf: must be a finite number");
    let o = adapt(d, &model, "full", &["--lr", "1e30", "--head-lr", "1e30"]);
    expect_error(o, "diverged at step");
    assert!(!d.join("task-full.safetensors").exists());
    // A task used with another base encoder.
    assert!(adapt(d, &model, "head", &[]).status.success());
    let other = d.join("other");
    tiny_model(&other);
    let task = d.join("task-head.safetensors").display().to_string();
    let o = run(&[
        "predict",
        "--task",
        &task,
        "--model",
        other.to_str().unwrap(),
        "--backend",
        "cpu",
        "hello",
    ]);
    expect_error(o, "adapted from the encoder with weights tensors-sha256:");
    // A truncated task file.
    let bytes = std::fs::read(d.join("task-head.safetensors")).unwrap();
    std::fs::write(d.join("cut.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let cut = d.join("cut.safetensors").display().to_string();
    let o = run(&[
        "predict",
        "--task",
        &cut,
        "--model",
        model.to_str().unwrap(),
        "--backend",
        "cpu",
        "hello",
    ]);
    expect_error(o, "cut.safetensors: ");
}

/// Ten classes, each with its own pair of words, for meta-learning on a generic dataset.
fn class_data(dir: &Path) -> (PathBuf, PathBuf) {
    let w = common::WORDS;
    let mut train = Vec::new();
    let mut test = Vec::new();
    for k in 0..10 {
        let (a, b) = (w[k * 2], w[k * 2 + 1]);
        let label = format!("class{k}");
        for (i, filler) in w[20..].iter().enumerate() {
            let text = format!("{a} {filler} {b}");
            let row = json!({"text": text, "label": label}).to_string();
            if i < 6 {
                train.push(row)
            } else {
                test.push(row)
            }
        }
    }
    let (tr, te) = (dir.join("train.jsonl"), dir.join("test.jsonl"));
    std::fs::write(&tr, train.join("\n") + "\n").unwrap();
    std::fs::write(&te, test.join("\n") + "\n").unwrap();
    (tr, te)
}

#[test]
fn meta_training_keeps_classes_apart_and_the_harness_scores_every_method() {
    let (dir, model) = setup();
    let d = dir.path();
    let (train, test) = class_data(d);
    let recipe = d.join("meta.toml");
    std::fs::write(
        &recipe,
        format!(
            r#"out = "{}"
init = "{}"
way = 2
shot = 1
query = 2
val_every = 2
val_episodes = 3
val_shot = 1
[meta]
algorithm = "reptile"
meta_lr = 0.5
meta_batch = 2
iterations = 4
[meta.inner]
mode = "adapters"
steps = 3
lr = 1e-2
head_lr = 1e-2
layers = 1
adapter_size = 8
"#,
            d.join("meta").display(),
            model.display()
        ),
    )
    .unwrap();
    let data_args = [
        "--train",
        train.to_str().unwrap(),
        "--test",
        test.to_str().unwrap(),
        "--backend",
        "cpu",
    ];
    let mut args = vec!["meta-train", recipe.to_str().unwrap()];
    args.extend(data_args);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let meta: Value =
        serde_json::from_slice(&std::fs::read(d.join("meta/meta.json")).unwrap()).unwrap();
    let set = |k: &str| -> std::collections::BTreeSet<String> {
        meta["split"][k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    let (tr, va, te) = (set("train"), set("val"), set("test"));
    assert_eq!(tr.len() + va.len() + te.len(), 10);
    assert!(tr.is_disjoint(&va) && tr.is_disjoint(&te) && va.is_disjoint(&te));
    assert_eq!(meta["history"].as_array().unwrap().len(), 3, "{meta}");
    // The saved encoder carries its meta-learned adapters in the top block only.
    let bytes = std::fs::read(d.join("meta/model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let adapters: Vec<&String> = header
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.contains(".adapter."))
        .collect();
    assert_eq!(adapters.len(), 8, "{adapters:?}");
    assert!(adapters.iter().all(|k| k.starts_with("encoder.layer.1.")));

    // Every method on the same episodes, plus full-way, as JSON lines.
    let rows_file = d.join("rows.jsonl");
    let meta_dir = format!("reptile={}", d.join("meta").display());
    let mut args = vec![
        "eval-fewshot",
        "--model",
        model.to_str().unwrap(),
        "--init",
        &meta_dir,
        "--way",
        "2",
        "--shot",
        "1,2",
        "--query",
        "2",
        "--episodes",
        "4",
        "--modes",
        "head,adapters,full",
        "--steps",
        "2",
        "--layers",
        "1",
        "--full-way",
        "1",
        "--full-way-runs",
        "2",
        "--full-way-steps",
        "2",
        "--json",
        rows_file.to_str().unwrap(),
    ];
    args.extend(data_args);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<Value> = std::fs::read_to_string(&rows_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // (a): 2 episode settings + full-way; each of 2 encoders × 3 modes: 3 rows.
    assert_eq!(rows.len(), 3 + 2 * 3 * 3, "{rows:?}");
    let methods: Vec<&str> = rows.iter().map(|r| r["method"].as_str().unwrap()).collect();
    assert!(
        methods
            .iter()
            .any(|m| m.starts_with("(a) nearest prototype"))
    );
    assert!(
        methods
            .iter()
            .any(|m| m.starts_with("(b) fine-tune from pretrained, adapters"))
    );
    assert!(
        methods
            .iter()
            .any(|m| m.starts_with("(d) fine-tune from reptile, top 1 blocks"))
    );
    for r in &rows {
        let acc = r["accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc), "{r}");
        assert!(r["seconds_per_task"].as_f64().unwrap() > 0.0, "{r}");
    }
    let full: Vec<&Value> = rows
        .iter()
        .filter(|r| r["setting"].as_str().unwrap().starts_with("10-way 1-shot"))
        .collect();
    assert_eq!(full.len(), 7);
    assert!(
        full[0]["setting"]
            .as_str()
            .unwrap()
            .contains("(30 examples)")
    );
}

fn predictions(o: &Output) -> Vec<Value> {
    assert!(o.status.success(), "{}", stderr(o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A bundle (f32 and f16) predicts what the task file predicts: the same labels, and
/// probabilities equal in f32 and within 1e-3 in f16; a changed file fails its checksum.
#[test]
fn bundles_predict_like_the_task_file_and_are_checked() {
    let (dir, model) = setup();
    let d = dir.path();
    assert!(adapt(d, &model, "adapters", &[]).status.success());
    let task = d.join("task-adapters.safetensors");
    let texts: Vec<&str> = HELD_OUT.iter().map(|(t, _)| *t).collect();
    let mut args = vec![
        "predict",
        "--task",
        task.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--backend",
        "cpu",
    ];
    args.extend(&texts);
    let direct = predictions(&run(&args));
    let mut sizes = Vec::new();
    for (dtype, tolerance) in [("f32", 0.0), ("f16", 1e-3)] {
        let out = d.join(format!("bundle-{dtype}"));
        let o = run(&[
            "export",
            "--model",
            model.to_str().unwrap(),
            "--task",
            task.to_str().unwrap(),
            "--dtype",
            dtype,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(manifest["format"], "polytask-bundle/1");
        assert_eq!(manifest["tasks"], json!(["task-adapters"]));
        sizes.push(
            std::fs::metadata(out.join("model.safetensors"))
                .unwrap()
                .len(),
        );
        let mut args = vec![
            "predict",
            "--bundle",
            out.to_str().unwrap(),
            "--backend",
            "cpu",
        ];
        args.extend(&texts);
        let via_bundle = predictions(&run(&args));
        for (a, b) in direct.iter().zip(&via_bundle) {
            let b = &b["tasks"]["task-adapters"];
            assert_eq!(a["label"], b["label"], "{dtype}");
            for (label, p) in a["probabilities"].as_object().unwrap() {
                let q = b["probabilities"][label].as_f64().unwrap();
                assert!(
                    (p.as_f64().unwrap() - q).abs() <= tolerance,
                    "{dtype}: {p} vs {q}"
                );
            }
        }
    }
    assert!(sizes[1] * 10 < sizes[0] * 6, "f16 weights {sizes:?}");
    // A changed byte fails the checksum, naming the file.
    let weights = d.join("bundle-f16/model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&weights, bytes).unwrap();
    let o = run(&[
        "predict",
        "--bundle",
        d.join("bundle-f16").to_str().unwrap(),
        "--backend",
        "cpu",
        "hi",
    ]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("model.safetensors: sha256") && e.contains("does not match"),
        "{e}"
    );
    // A task from another base is refused at export.
    let other = d.join("other");
    tiny_model(&other);
    let o = run(&[
        "export",
        "--model",
        other.to_str().unwrap(),
        "--task",
        task.to_str().unwrap(),
        "--out",
        d.join("bad-bundle").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("adapted from the encoder with weights"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn contrastive_pre_fine_tuning_writes_an_encoder_that_adapts_contrastively() {
    let (dir, model) = setup();
    let d = dir.path();
    let (train, _) = class_data(d);
    let recipe = d.join("contrastive.toml");
    let out = d.join("ready");
    let write_recipe = |datasets: &str| {
        std::fs::write(
            &recipe,
            format!(
                r#"out = "{}"
init = "{}"
datasets = [{datasets}]
val_dataset = ""
val_every = 1
[contrastive]
mode = "adapters"
layers = 1
adapter_size = 8
steps = 3
lr = 1e-2
warmup = 1
classes = 4
per_class = 2
"#,
                out.display(),
                model.display()
            ),
        )
        .unwrap()
    };
    write_recipe(&format!("{:?}", train.display().to_string()));
    let o = run(&[
        "contrastive-train",
        recipe.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let meta: Value =
        serde_json::from_slice(&std::fs::read(out.join("meta.json")).unwrap()).unwrap();
    // Steps 0 to 3, each kept (no validation), and the 10 labels named by their file.
    assert_eq!(meta["history"].as_array().unwrap().len(), 4, "{meta}");
    assert_eq!(meta["labels"].as_array().unwrap().len(), 10, "{meta}");
    assert!(
        meta["labels"][0]
            .as_str()
            .unwrap()
            .starts_with("train/class"),
        "{meta}"
    );
    // Its adapters are in the top block, and adapt (contrastive steps first) takes it.
    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let adapters = header
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("encoder.layer.1.") && k.contains(".adapter."))
        .count();
    assert_eq!(adapters, 8);
    let o = adapt(
        d,
        &out,
        "adapters",
        &["--contrastive-steps", "3", "--temperature", "0.2"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // eval-fewshot adapts contrastively from it, and names the steps in its rows.
    let (train_s, test_s) = (train.to_str().unwrap(), d.join("test.jsonl"));
    let ready = format!("ready={}", out.display());
    let mut args = vec![
        "eval-fewshot",
        "--model",
        model.to_str().unwrap(),
        "--init",
        &ready,
        "--episodes",
        "2",
        "--way",
        "2",
        "--shot",
        "2",
        "--query",
        "2",
        "--modes",
        "head,adapters",
        "--layers",
        "1",
        "--steps",
        "2",
        "--contrastive-steps",
        "2",
        "--full-way",
        "2",
        "--full-way-runs",
        "1",
        "--full-way-steps",
        "2",
        "--train",
        train_s,
        "--test",
        test_s.to_str().unwrap(),
        "--backend",
        "cpu",
    ];
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    let contrastive = table
        .lines()
        .filter(|l| l.contains("adapters (top 1) + head, 2 contrastive steps (τ 0.1) + 2 steps"))
        .count();
    // 2 encoders × (episodes + full-way); head rows never take contrastive steps.
    assert_eq!(contrastive, 4, "{table}");
    assert!(!table.contains("head only, 2 contrastive"), "{table}");
    // A dataset given as files has no dev split to score full-way on.
    args.extend(["--full-way-split", "dev"]);
    let o = run(&args);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("has no dev split"), "{}", stderr(&o));

    // A second run may not replace a directory the program did not write.
    let mine = d.join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), "keep").unwrap();
    let o = run(&[
        "contrastive-train",
        recipe.to_str().unwrap(),
        "--out",
        mine.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    assert!(!o.status.success());
    assert_eq!(
        std::fs::read_to_string(mine.join("notes.txt")).unwrap(),
        "keep"
    );
    // Bad recipes are refused with what is wrong.
    write_recipe("\"no-such-file.jsonl\"");
    let o = run(&[
        "contrastive-train",
        recipe.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no-such-file.jsonl"), "{}", stderr(&o));
    write_recipe("");
    let o = run(&[
        "contrastive-train",
        recipe.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    assert!(stderr(&o).contains("datasets = []"), "{}", stderr(&o));
}
