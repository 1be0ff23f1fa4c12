//! Model bundles: everything a browser (or `predict --bundle`) needs in one directory.
//!
//! ```text
//! DIR/manifest.json        format version, dtype, every file's size and sha256
//! DIR/config.json          the encoder's configuration
//! DIR/tokenizer.json       its tokenizer
//! DIR/model.safetensors    encoder weights (+ multi-task heads, + meta-learned adapters);
//!                          F16 with --dtype f16, widened back to F32 on load
//! DIR/tasks.json           multi-task heads and label sets (when exported from a run)
//! DIR/tasks/NAME.safetensors  adapted few-shot tasks (core-train adapt), F32
//! ```
//!
//! `core-train export` writes it atomically; `predict --bundle` checks every file against
//! the manifest before using it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use polytask_core::io::checkpoint::{FloatWidth, convert_floats};
use polytask_core::io::manifest::{BUNDLE_FORMAT, FileEntry, Manifest};
use polytask_core::io::task_file::read_task_meta;

use crate::files::{read, sha256_hex};
use crate::{model_dir, output, run_dir};

/// How `export` stores the encoder weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Dtype {
    F32,
    F16,
}

impl Dtype {
    /// The name in the manifest (and on the command line).
    pub fn as_str(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F16 => "f16",
        }
    }
}

/// Writes the bundle of the model in `model` (default: all-MiniLM-L6-v2) with its weights
/// as `dtype`, and the adapted `tasks`, as the directory `out`, which it replaces only if
/// core-train wrote it.
pub fn export(out: &Path, model: Option<&Path>, tasks: &[PathBuf], dtype: Dtype) -> Result<()> {
    output::check_dir_replaceable(out)?;
    let dir = model_dir::resolve(model)?;
    let dir = run_dir::resolve(&dir).unwrap_or(dir);
    let weights = read(&dir.join("model.safetensors"))?;
    let source = dir.join("model.safetensors").display().to_string();
    let id = model_dir::WeightsId::of(&weights, &source)?;
    // A bundle that every reader would refuse is not written.
    polytask_core::io::checkpoint::check_finite(&weights, &source)?;
    let base = id.tensors.clone();
    let width = match dtype {
        Dtype::F16 => FloatWidth::F16,
        Dtype::F32 => FloatWidth::F32,
    };
    let weights = convert_floats(&weights, width, &source)?;
    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("config.json".into(), read(&dir.join("config.json"))?),
        ("tokenizer.json".into(), read(&dir.join("tokenizer.json"))?),
        ("model.safetensors".into(), weights),
    ];
    let multitask = dir.join("tasks.json").is_file();
    if multitask {
        files.push(("tasks.json".into(), read(&dir.join("tasks.json"))?));
    }
    let mut task_names = Vec::new();
    for path in tasks {
        let bytes = read(path)?;
        let meta = read_task_meta(&bytes, &path.display().to_string())?;
        if !id.matches(&meta.base) {
            bail!(
                "{}: adapted from the encoder with weights {}, not from {} ({base})",
                path.display(),
                meta.base,
                dir.display()
            );
        }
        let name = meta
            .name
            .chars()
            .map(|c| {
                if c.is_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect::<String>();
        if task_names.contains(&name) {
            bail!("{}: a second task named {name:?}", path.display());
        }
        files.push((format!("tasks/{name}.safetensors"), bytes));
        task_names.push(name);
    }
    let manifest = Manifest {
        format: BUNDLE_FORMAT.into(),
        dtype: dtype.as_str().into(),
        base,
        multitask,
        tasks: task_names,
        files: files
            .iter()
            .map(|(name, bytes)| FileEntry {
                name: name.clone(),
                bytes: bytes.len() as u64,
                sha256: sha256_hex(bytes),
            })
            .collect(),
    };
    let manifest_json = serde_json::to_vec_pretty(&manifest)?;
    let mut all: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    all.push(("manifest.json", &manifest_json));
    output::write_dir_atomic(out, &all)?;
    let total = manifest.total_bytes();
    eprintln!(
        "wrote {} ({} files, {:.1} MiB, weights {})",
        out.display(),
        manifest.files.len() + 1,
        total as f64 / (1024.0 * 1024.0),
        dtype.as_str()
    );
    Ok(())
}

/// A bundle's files, each checked against the manifest.
pub struct Bundle {
    pub manifest: Manifest,
    pub dir: PathBuf,
}

impl Bundle {
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join("manifest.json");
        let manifest = Manifest::parse(&read(&path)?, &path.display().to_string())?;
        Ok(Bundle {
            manifest,
            dir: dir.to_path_buf(),
        })
    }

    /// The bytes of `name`, verified against the manifest's size and sha256.
    pub fn file(&self, name: &str) -> Result<Vec<u8>> {
        let entry = self
            .manifest
            .files
            .iter()
            .find(|f| f.name == name)
            .with_context(|| format!("{}: the manifest lists no {name}", self.dir.display()))?;
        let path = self.dir.join(name);
        let bytes = read(&path)?;
        if bytes.len() as u64 != entry.bytes {
            bail!(
                "{}: {} bytes, the manifest says {} (incomplete download?)",
                path.display(),
                bytes.len(),
                entry.bytes
            );
        }
        let sum = sha256_hex(&bytes);
        if sum != entry.sha256 {
            bail!(
                "{}: sha256 {sum} does not match the manifest's {}",
                path.display(),
                entry.sha256
            );
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_differs_from_the_manifest_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path();
        let manifest = Manifest {
            format: BUNDLE_FORMAT.into(),
            dtype: Dtype::F16.as_str().into(),
            base: "x".into(),
            multitask: false,
            tasks: Vec::new(),
            files: vec![FileEntry {
                name: "config.json".into(),
                bytes: 2,
                sha256: sha256_hex(b"{}"),
            }],
        };
        std::fs::write(
            dir.join("manifest.json"),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
        std::fs::write(dir.join("config.json"), b"{}").unwrap();
        let bundle = Bundle::open(dir).unwrap();
        assert_eq!(bundle.file("config.json").unwrap(), b"{}");
        std::fs::write(dir.join("config.json"), b"[]").unwrap();
        let e = bundle.file("config.json").unwrap_err().to_string();
        assert!(e.contains("config.json: sha256"), "{e}");
        std::fs::write(dir.join("config.json"), b"{ }").unwrap();
        let e = bundle.file("config.json").unwrap_err().to_string();
        assert!(e.contains("3 bytes, the manifest says 2"), "{e}");
        let e = bundle.file("tokenizer.json").unwrap_err().to_string();
        assert!(e.contains("lists no tokenizer.json"), "{e}");
    }
}
