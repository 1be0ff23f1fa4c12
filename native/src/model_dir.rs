//! Reading a Hugging Face model directory from disk into the core's encoder.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::tensor::Device;
use polytask_core::{LoadReport, ModelFiles, SentenceEncoder};
use sha2::{Digest, Sha256};

use crate::fetch;

/// Resolves `--model`: a given directory as is, else the default model, fetched if missing.
pub fn resolve(model: Option<&Path>) -> Result<PathBuf> {
    match model {
        Some(dir) => Ok(dir.to_path_buf()),
        None => {
            let dir = fetch::default_model_dir(fetch::DEFAULT_MODEL);
            if !fetch::is_complete(&dir) {
                eprintln!("the default model is not here yet; fetching it");
                fetch::fetch_model(fetch::DEFAULT_MODEL, &dir)?;
            }
            Ok(dir)
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))
}

/// Loads `config.json`, `model.safetensors` and `tokenizer.json` from `dir` onto `device`.
pub fn load(dir: &Path, device: &Device) -> Result<(SentenceEncoder, LoadReport)> {
    load_inner(dir, device, false).map(|(e, report, _)| (e, report))
}

/// Like [`load`], also returning the identity of the weights ([`weights_id`]), from the
/// same single read of the file.
pub fn load_with_id(dir: &Path, device: &Device) -> Result<(SentenceEncoder, String)> {
    load_inner(dir, device, true).map(|(e, _, id)| (e, id.expect("asked for")))
}

/// `sha256:HEX` of a weights file: the identity a task file is bound to.
pub fn weights_id(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn load_inner(
    dir: &Path,
    device: &Device,
    identify: bool,
) -> Result<(SentenceEncoder, LoadReport, Option<String>)> {
    let [config, tokenizer, weights] = fetch::MODEL_FILES.map(|name| dir.join(name));
    let names = [&config, &tokenizer, &weights].map(|p| p.display().to_string());
    let config_text = String::from_utf8(read(&config)?)
        .with_context(|| format!("{}: not UTF-8 text", names[0]))?;
    let tokenizer_bytes = read(&tokenizer)?;
    let weights_bytes = read(&weights)?;
    let id = identify.then(|| weights_id(&weights_bytes));
    let files = ModelFiles {
        config_json: &config_text,
        config_name: &names[0],
        tokenizer_json: &tokenizer_bytes,
        tokenizer_name: &names[1],
        weights: weights_bytes,
        weights_name: &names[2],
    };
    let (encoder, report) = SentenceEncoder::load(files, device)?;
    Ok((encoder, report, id))
}
