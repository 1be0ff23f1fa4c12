//! The model bundle's manifest (`manifest.json`), shared by `core-train export` /
//! `predict --bundle` and the web app: format version, weight dtype, the base encoder's
//! identity, and every file's size and sha256.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

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
    /// Parses and checks `manifest.json` (`source` names it in errors): its format, its
    /// dtype, and every file and task name, which must stay inside the bundle (a
    /// manifest comes from wherever the bundle was downloaded from).
    pub fn parse(bytes: &[u8], source: &str) -> Result<Self> {
        let fail = |message: String| Error::Config {
            file: source.into(),
            message,
        };
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| fail(format!("not a bundle manifest: {e}")))?;
        if m.format != BUNDLE_FORMAT {
            return Err(fail(format!(
                "format {:?}, this build reads {BUNDLE_FORMAT:?}",
                m.format
            )));
        }
        if m.dtype != "f32" && m.dtype != "f16" {
            return Err(fail(format!(
                "dtype {:?}: expected \"f32\" or \"f16\"",
                m.dtype
            )));
        }
        for f in &m.files {
            if !is_safe_path(&f.name) {
                return Err(fail(format!(
                    "file name {:?}: a bundle's files are plain relative paths inside it",
                    f.name
                )));
            }
            if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(fail(format!(
                    "file {:?}: sha256 {:?} is not 64 hex digits",
                    f.name, f.sha256
                )));
            }
        }
        for t in &m.tasks {
            let name = format!("tasks/{t}.safetensors");
            if t.contains('/') || !is_safe_path(&name) {
                return Err(fail(format!("task name {t:?}: not a plain file name")));
            }
            if !m.files.iter().any(|f| f.name == name) {
                return Err(fail(format!("task {t:?} has no file {name} in the list")));
            }
        }
        Ok(m)
    }

    /// Total size of the listed files.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
}

/// A `/`-separated relative path with no empty, `.` or `..` part and no `\\` or control
/// character.
fn is_safe_path(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('\\')
        && !name.chars().any(char::is_control)
        && name
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(files: &[&str], tasks: &[&str]) -> Vec<u8> {
        let files: Vec<FileEntry> = files
            .iter()
            .map(|n| FileEntry {
                name: n.to_string(),
                bytes: 1,
                sha256: "ab".repeat(32),
            })
            .collect();
        serde_json::to_vec(&Manifest {
            format: BUNDLE_FORMAT.into(),
            dtype: "f16".into(),
            base: "tensors-sha256:00".into(),
            multitask: false,
            tasks: tasks.iter().map(|t| t.to_string()).collect(),
            files,
        })
        .unwrap()
    }

    #[test]
    fn a_manifest_names_only_files_inside_the_bundle() {
        let ok = manifest(
            &["model.safetensors", "tasks/intent.safetensors"],
            &["intent"],
        );
        assert_eq!(Manifest::parse(&ok, "m.json").unwrap().tasks, ["intent"]);
        for (files, tasks, want) in [
            (&["../x"][..], &[][..], "\"../x\""),
            (&["/etc/passwd"], &[], "\"/etc/passwd\""),
            (&["a//b"], &[], "\"a//b\""),
            (&["a\\b"], &[], "\"a\\\\b\""),
            (
                &["tasks/../../x.safetensors"],
                &["../../x"],
                "\"tasks/../../x.safetensors\"",
            ),
            (
                &["model.safetensors"],
                &["intent"],
                "no file tasks/intent.safetensors",
            ),
            (&["tasks/a/b.safetensors"], &["a/b"], "task name \"a/b\""),
        ] {
            let e = Manifest::parse(&manifest(files, tasks), "m.json").unwrap_err();
            let msg = e.to_string();
            assert!(msg.starts_with("m.json: ") && msg.contains(want), "{msg}");
        }
        let mut bad_sum: Manifest = serde_json::from_slice(&ok).unwrap();
        bad_sum.files[0].sha256 = "xyz".into();
        let e = Manifest::parse(&serde_json::to_vec(&bad_sum).unwrap(), "m.json").unwrap_err();
        assert!(e.to_string().contains("\"xyz\""), "{e}");
        let e = Manifest::parse(b"\xef\xbb\xbf{", "m.json").unwrap_err();
        assert!(e.to_string().contains("not a bundle manifest"), "{e}");
    }
}
