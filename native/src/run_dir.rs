//! A saved model on disk: a directory that holds everything needed to use it again.
//!
//! ```text
//! DIR/model.safetensors   all weights, HF names (the encoder loads as a BertFor* checkpoint)
//! DIR/tasks.json          task names, kinds, label sets, pooling (MultiTaskSpec)
//! DIR/config.json         the encoder's configuration
//! DIR/tokenizer.json      its tokenizer
//! DIR/recipe.toml         the recipe it was trained with
//! (resumable checkpoints also hold optimizer.safetensors and state.json)
//! ```
//!
//! It is written whole or not at all by [`crate::output::write_dir_atomic`]: a crash at
//! any point leaves either the old or the new checkpoint readable; [`resolve`] finds it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use polytask_core::model::multitask::{MultiTaskModel, MultiTaskSpec};
use polytask_core::{BertConfig, Tokenizer};
use serde_json::Value;

use crate::files::{self, read};
use crate::output::{self, sibling};

/// The readable checkpoint at `dir`: `dir` itself, or `dir.old` when a crash happened
/// between the two renames of [`crate::output::write_dir_atomic`].
pub fn resolve(dir: &Path) -> Option<PathBuf> {
    if dir.join("model.safetensors").is_file() {
        return Some(dir.to_path_buf());
    }
    let old = sibling(dir, ".old");
    old.join("model.safetensors").is_file().then_some(old)
}

/// A model with the files that describe it.
pub struct SavedModel {
    pub model: MultiTaskModel,
    pub recipe_toml: String,
}

/// The files of a model directory (plus `extra` ones) as (name, bytes).
pub fn model_files(
    model: &MultiTaskModel,
    config_json: &str,
    tokenizer_json: &[u8],
    recipe_toml: &str,
) -> Result<Vec<(&'static str, Vec<u8>)>> {
    Ok(vec![
        ("model.safetensors", model.to_safetensors()?),
        (
            "tasks.json",
            serde_json::to_vec_pretty(&model.spec).expect("serialisable"),
        ),
        ("config.json", config_json.as_bytes().to_vec()),
        ("tokenizer.json", tokenizer_json.to_vec()),
        ("recipe.toml", recipe_toml.as_bytes().to_vec()),
    ])
}

/// Loads a model directory (or its `.old` twin) onto `device`.
pub fn load(dir: &Path, device: &Device) -> Result<(SavedModel, Tokenizer, PathBuf)> {
    let Some(dir) = resolve(dir) else {
        bail!(
            "{}: not a saved model (no model.safetensors); train one with `core-train train`",
            dir.display()
        );
    };
    let name = |f: &str| dir.join(f).display().to_string();
    let config_json = String::from_utf8(read(&dir.join("config.json"))?)
        .with_context(|| format!("{}: not UTF-8", name("config.json")))?;
    let config = BertConfig::from_json(&config_json, &name("config.json"))?;
    let tokenizer_json = read(&dir.join("tokenizer.json"))?;
    let mut tokenizer = Tokenizer::from_json_bytes(&tokenizer_json, &name("tokenizer.json"))?;
    let spec: MultiTaskSpec = serde_json::from_slice(&read(&dir.join("tasks.json"))?)
        .with_context(|| format!("{}: not a task list", name("tasks.json")))?;
    let recipe_toml = fs::read_to_string(dir.join("recipe.toml")).unwrap_or_default();
    let mut model = MultiTaskModel::init(&config, spec, device)?;
    model.load_safetensors(
        read(&dir.join("model.safetensors"))?,
        &name("model.safetensors"),
    )?;
    if let Ok(recipe) = toml::from_str::<toml::Value>(&recipe_toml)
        && let Some(max_len) = recipe
            .get("model")
            .and_then(|m| m.get("max_len"))
            .and_then(|v| v.as_integer())
    {
        tokenizer.set_max_len((max_len as usize).min(config.max_position_embeddings))?;
    }
    Ok((SavedModel { model, recipe_toml }, tokenizer, dir))
}

/// Appends `value` as one JSON line to the log at `path`.
pub fn append_line(path: &Path, value: &Value) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?;
    writeln!(f, "{value}").with_context(|| format!("{}: cannot write", path.display()))
}

/// Drops the lines of steps after `step` (logged by a process that died after the
/// checkpoint), so that a resumed run's log has each step once.
pub fn truncate_metrics(path: &Path, step: u64) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .and_then(|v| v.get("step")?.as_u64())
                .is_some_and(|s| s <= step)
        })
        .collect();
    let mut body = kept.join("\n");
    if !body.is_empty() {
        body.push('\n');
    }
    files::write_atomic(path, body.as_bytes())
}

/// `--resume` found no checkpoint in `last`: succeeds (clearing `metrics.jsonl`) if `out`
/// holds only what a run stopped before its first checkpoint
/// wrote (metrics lines, a half-written `last.tmp`), so the run may start over; fails,
/// naming what is there, otherwise.
pub fn check_restartable(out: &Path, last: &Path) -> Result<()> {
    let metrics = out.join("metrics.jsonl");
    let entries = match std::fs::read_dir(out) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "--resume: {} does not exist; start a run without --resume",
                out.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("{}: cannot list", out.display())),
    };
    let mut foreign = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("{}: cannot list", out.display()))?
            .path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        // The log being rewritten when the run was killed: its temporary file from
        // `files::write_atomic`, or `metrics.jsonl.part` (what earlier builds wrote).
        let log = name == "metrics.jsonl"
            || name == "metrics.jsonl.part"
            || files::is_temporary_of(&name, "metrics.jsonl");
        let ours = match name.as_ref() {
            _ if log => std::fs::read(&path).is_ok_and(|b| {
                // A line cut short by a kill is the last one, without its newline.
                let whole = match b.iter().rposition(|&c| c == b'\n') {
                    Some(i) => &b[..=i],
                    None => &b[..0],
                };
                output::is_json_lines_with(whole, "step")
            }),
            "last.tmp" | "last.old" | "best.tmp" | "best.old" => {
                output::why_not_replaceable(&path)?.is_none()
            }
            _ => false,
        };
        if !ours {
            foreign.push(name.into_owned());
        }
    }
    if !foreign.is_empty() {
        foreign.sort();
        bail!(
            "--resume: {} holds no checkpoint, and {} holds what a run stopped before its \
             first checkpoint does not leave ({}), so nothing is started over; choose another \
             --out",
            last.display(),
            out.display(),
            foreign.join(", ")
        );
    }
    eprintln!(
        "note: {} holds no checkpoint yet (the run stopped before its first one); starting \
         it over from step 0",
        out.display()
    );
    if metrics.exists() {
        files::write_atomic(&metrics, b"")?;
    }
    for entry in
        std::fs::read_dir(out).with_context(|| format!("{}: cannot list", out.display()))?
    {
        let name = entry
            .with_context(|| format!("{}: cannot list", out.display()))?
            .file_name();
        let name = name.to_string_lossy();
        if name == "metrics.jsonl.part" || files::is_temporary_of(&name, "metrics.jsonl") {
            let part = out.join(name.as_ref());
            std::fs::remove_file(&part)
                .with_context(|| format!("{}: cannot remove", part.display()))?;
        }
    }
    Ok(())
}

/// A new run starts only in a directory that does not exist or is empty: a run
/// directory's `metrics.jsonl`, `last/` and `best/` are written over as it goes, so
/// starting in one that holds anything would replace what is there.
pub fn check_fresh_run_dir(out: &Path) -> Result<()> {
    if resolve(&out.join("last")).is_some() {
        bail!(
            "{} already holds a run; continue it with --resume, or choose another --out",
            out.display()
        );
    }
    let entries = match std::fs::read_dir(out) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            bail!(
                "{}: exists and is a file, not a directory; choose another --out",
                out.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("{}: cannot list", out.display())),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    names.sort();
    let resumable = if names.iter().any(|n| n == "last") {
        " (its last/ holds no model.safetensors, so it cannot be resumed either)"
    } else {
        ""
    };
    bail!(
        "{}: exists and is not empty (holds {}){resumable}; a new run starts only in a new or \
         empty directory, and nothing in it is replaced: choose another --out, or move those \
         files away",
        out.display(),
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::write_dir_atomic;

    #[test]
    fn a_crash_between_renames_leaves_the_old_checkpoint_readable() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("last");
        write_dir_atomic(&dir, &[("model.safetensors", b"one")]).unwrap();
        // Simulate: DIR moved to DIR.old, crash before DIR.tmp → DIR.
        fs::rename(&dir, sibling(&dir, ".old")).unwrap();
        fs::create_dir_all(sibling(&dir, ".tmp")).unwrap();
        let found = resolve(&dir).unwrap();
        assert_eq!(fs::read(found.join("model.safetensors")).unwrap(), b"one");
        // The next write cleans up and succeeds.
        write_dir_atomic(&dir, &[("model.safetensors", b"two")]).unwrap();
        assert_eq!(resolve(&dir).unwrap(), dir);
        assert!(!sibling(&dir, ".tmp").exists() && !sibling(&dir, ".old").exists());
    }

    #[test]
    fn a_resumed_log_keeps_each_step_once() {
        let root = tempfile::tempdir().unwrap();
        let log = root.path().join("metrics.jsonl");
        for step in [1, 10, 20] {
            append_line(&log, &serde_json::json!({"step": step, "loss": 0.5})).unwrap();
        }
        append_line(&log, &serde_json::json!({"step": 20, "split": "dev"})).unwrap();
        truncate_metrics(&log, 10).unwrap();
        let text = fs::read_to_string(&log).unwrap();
        let steps: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["step"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(steps, [1, 10]);
        assert!(text.ends_with('\n'));
        truncate_metrics(&log, 0).unwrap();
        assert_eq!(fs::read(&log).unwrap(), b"");
    }

    #[test]
    fn a_new_run_starts_only_in_a_missing_or_empty_directory() {
        let root = tempfile::tempdir().unwrap();
        check_fresh_run_dir(&root.path().join("new")).unwrap();
        let out = root.path().join("run");
        fs::create_dir(&out).unwrap();
        check_fresh_run_dir(&out).unwrap();
        fs::write(out.join("notes.txt"), b"mine").unwrap();
        let e = check_fresh_run_dir(&out).unwrap_err().to_string();
        assert!(e.contains("notes.txt") && e.contains("not empty"), "{e}");
        write_dir_atomic(&out.join("last"), &[("model.safetensors", b"w")]).unwrap();
        let e = check_fresh_run_dir(&out).unwrap_err().to_string();
        assert!(e.contains("--resume"), "{e}");
        let file = root.path().join("file");
        fs::write(&file, b"x").unwrap();
        let e = check_fresh_run_dir(&file).unwrap_err().to_string();
        assert!(e.contains("is a file"), "{e}");
    }

    #[test]
    fn a_run_killed_before_its_first_checkpoint_starts_over_only_if_nothing_else_is_there() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("run");
        let last = out.join("last");
        fs::create_dir(&out).unwrap();
        // What such a run leaves: log lines (the last one cut short), the log's temporary
        // file from a rewrite, and a half-written checkpoint.
        fs::write(out.join("metrics.jsonl"), b"{\"step\":1}\n{\"step\":1").unwrap();
        let tmp = out.join(".metrics.jsonl.core-train-4242.tmp");
        fs::write(&tmp, b"{\"step\":1}\n").unwrap();
        fs::create_dir(out.join("last.tmp")).unwrap();
        fs::write(out.join("last.tmp/model.safetensors"), b"half").unwrap();
        // A file of the user's is named, and nothing is touched.
        fs::write(out.join("notes.txt"), b"mine").unwrap();
        let e = check_restartable(&out, &last).unwrap_err().to_string();
        assert!(e.contains("(notes.txt)"), "{e}");
        assert!(tmp.exists());
        fs::remove_file(out.join("notes.txt")).unwrap();
        check_restartable(&out, &last).unwrap();
        assert_eq!(fs::read(out.join("metrics.jsonl")).unwrap(), b"");
        assert!(!tmp.exists());
        // A log that is not a run's log is not ours.
        fs::write(out.join("metrics.jsonl"), b"my own notes\n").unwrap();
        let e = check_restartable(&out, &last).unwrap_err().to_string();
        assert!(e.contains("(metrics.jsonl)"), "{e}");
        let e = check_restartable(&root.path().join("nowhere"), &last)
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
    }
}
