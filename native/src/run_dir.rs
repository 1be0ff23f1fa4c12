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
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use polytask_core::model::multitask::{MultiTaskModel, MultiTaskSpec};
use polytask_core::{BertConfig, Tokenizer};

use crate::output::sibling;

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

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("{}: cannot read", path.display()))
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
}
