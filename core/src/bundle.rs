//! The model bundle's manifest (`manifest.json`), shared by `core-train export` /
//! `predict --bundle` and the web app: format version, weight dtype, the base encoder's
//! identity, and every file's size and sha256.

use serde::{Deserialize, Serialize};

/// The format this build writes and reads.
pub const BUNDLE_FORMAT: &str = "polytask-bundle/1";

/// One file of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    /// `f32` or `f16`: how `model.safetensors` stores its floats.
    pub dtype: String,
    /// sha256 of the F32 encoder weights the bundle was exported from (what adapted
    /// tasks are bound to).
    pub base: String,
    /// Multi-task heads present (`tasks.json`).
    pub multitask: bool,
    /// Names of the adapted tasks under `tasks/`.
    pub tasks: Vec<String>,
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// Total size of the listed files.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
}
