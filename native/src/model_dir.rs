//! Reading a Hugging Face model directory from disk into the core's encoder.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::tensor::Device;
use polytask_core::io::safetensors::read_header;
use polytask_core::{LoadReport, ModelFiles, SentenceEncoder};
use sha2::{Digest, Sha256};

use crate::fetch;
use crate::files::read;

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

/// Loads `config.json`, `model.safetensors` and `tokenizer.json` from `dir` onto `device`.
pub fn load(dir: &Path, device: &Device) -> Result<(SentenceEncoder, LoadReport)> {
    load_inner(dir, device, false).map(|(e, report, _)| (e, report))
}

/// Like [`load`], also returning the identity of the weights ([`WeightsId`]), from the
/// same single read of the file.
pub fn load_with_id(dir: &Path, device: &Device) -> Result<(SentenceEncoder, WeightsId)> {
    load_inner(dir, device, true).map(|(e, _, id)| (e, id.expect("asked for")))
}

/// The identity a task file is bound to: its base encoder's weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightsId {
    /// `tensors-sha256:HEX` over every tensor's name, dtype, shape and bytes, in name
    /// order: two files with the same tensors have the same id whatever their metadata or
    /// layout (burn writes `__metadata__` keys in a varying order).
    pub tensors: String,
    /// `sha256:HEX` of the file's bytes: what task files written before 2026-12-02 hold.
    pub file: String,
}

impl WeightsId {
    /// The identity of the weights file `bytes` (`source` names it in errors).
    pub fn of(bytes: &[u8], source: &str) -> Result<Self> {
        let header = read_header(bytes, source)?;
        let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
        let data = &bytes[8 + n..];
        let mut h = Sha256::new();
        for (name, info) in &header {
            let (a, b) = info.data_offsets;
            h.update((name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
            h.update((info.dtype.len() as u64).to_le_bytes());
            h.update(info.dtype.as_bytes());
            h.update((info.shape.len() as u64).to_le_bytes());
            for d in &info.shape {
                h.update((*d as u64).to_le_bytes());
            }
            h.update(((b - a) as u64).to_le_bytes());
            h.update(&data[a..b]);
        }
        Ok(WeightsId {
            tensors: format!("tensors-sha256:{:x}", h.finalize()),
            file: format!("sha256:{:x}", Sha256::digest(bytes)),
        })
    }

    /// Whether a task file's `base` names these weights (either form).
    pub fn matches(&self, base: &str) -> bool {
        base == self.tensors || base == self.file
    }
}

impl std::fmt::Display for WeightsId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.tensors)
    }
}

fn load_inner(
    dir: &Path,
    device: &Device,
    identify: bool,
) -> Result<(SentenceEncoder, LoadReport, Option<WeightsId>)> {
    let [config, tokenizer, weights] = fetch::MODEL_FILES.map(|name| dir.join(name));
    let names = [&config, &tokenizer, &weights].map(|p| p.display().to_string());
    let config_text = String::from_utf8(read(&config)?)
        .with_context(|| format!("{}: not UTF-8 text", names[0]))?;
    let tokenizer_bytes = read(&tokenizer)?;
    let weights_bytes = read(&weights)?;
    let id = if identify {
        Some(WeightsId::of(&weights_bytes, &names[2])?)
    } else {
        None
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A safetensors file of the given tensors, with `metadata` as its `__metadata__`.
    fn file(tensors: &[(&str, &[f32])], metadata: &str) -> Vec<u8> {
        let mut header = format!("{{\"__metadata__\":{metadata}");
        let mut body = Vec::new();
        for (name, v) in tensors {
            let start = body.len();
            body.extend(v.iter().flat_map(|x| x.to_le_bytes()));
            header += &format!(
                ",\"{name}\":{{\"dtype\":\"F32\",\"shape\":[{}],\"data_offsets\":[{start},{}]}}",
                v.len(),
                body.len()
            );
        }
        header += "}";
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn the_identity_is_the_tensors_not_the_bytes_of_the_file() {
        let a = file(&[("x", &[1.0, 2.0]), ("y", &[3.0])], r#"{"a":"1","b":"2"}"#);
        // Same tensors, metadata keys in another order and tensors in another layout.
        let b = file(&[("y", &[3.0]), ("x", &[1.0, 2.0])], r#"{"b":"2","a":"1"}"#);
        assert_ne!(a, b);
        let (ia, ib) = (
            WeightsId::of(&a, "a").unwrap(),
            WeightsId::of(&b, "b").unwrap(),
        );
        assert_eq!(ia.tensors, ib.tensors);
        assert_ne!(ia.file, ib.file);
        assert!(ia.matches(&ib.tensors) && ia.matches(&ia.file) && !ia.matches(&ib.file));
        let c = file(&[("x", &[1.0, 2.5]), ("y", &[3.0])], r#"{"a":"1","b":"2"}"#);
        assert_ne!(
            WeightsId::of(&c, "c").unwrap().tensors,
            ia.tensors,
            "values count"
        );
        let d = file(
            &[("x2", &[1.0, 2.0]), ("y", &[3.0])],
            r#"{"a":"1","b":"2"}"#,
        );
        assert_ne!(
            WeightsId::of(&d, "d").unwrap().tensors,
            ia.tensors,
            "names count"
        );
    }
}
