//! Small file helpers that every part of `core-train` shares: reading a file with an
//! error that names it, reading a data file as text, writing a file atomically, and the
//! sha256 of bytes.
//!
//! Which files may be replaced at all is decided in [`crate::output`]; this module only
//! does the writing.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use polytask_core::data::formats;
use sha2::{Digest, Sha256};

/// The bytes of `path`; the error names the file.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("{}: cannot read", path.display()))
}

/// A data file as text (UTF-8, a byte-order mark skipped) and its name for messages.
pub fn read_text(path: &Path) -> Result<(String, String)> {
    let name = path.display().to_string();
    let bytes = fs::read(path).with_context(|| format!("{name}: cannot read"))?;
    let text = formats::decode(&bytes, &name)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .to_string();
    Ok((text, name))
}

/// Writes `bytes` to `path` atomically: a fresh temporary file beside it (never one that
/// is already there), synced, then renamed over `path`. On any failure the temporary
/// file is removed and `path` is as it was. It does not check whose file `path` is:
/// [`crate::output::write_file_atomic`] does that first.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.core-train-{}.tmp", std::process::id()));
    // A file already at the temporary name is not ours: it is neither written nor removed.
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .with_context(|| format!("{}: cannot create", tmp.display()))?;
    let written = (|| -> Result<()> {
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .with_context(|| format!("{}: cannot write", tmp.display()))?;
        fs::rename(&tmp, path).with_context(|| format!("{}: cannot write", path.display()))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Whether `name` is a temporary file that [`write_atomic`] made for a file named `of`
/// (left behind when the process was killed).
pub fn is_temporary_of(name: &str, of: &str) -> bool {
    name.strip_prefix(&format!(".{of}.core-train-"))
        .and_then(|rest| rest.strip_suffix(".tmp"))
        .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// sha256 of `bytes`, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_replaces_the_whole_file_and_leaves_nothing_beside_it() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("metrics.jsonl");
        write_atomic(&path, b"one\ntwo\n").unwrap();
        write_atomic(&path, b"three\n").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"three\n");
        let names: Vec<_> = fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["metrics.jsonl"]);
    }

    #[test]
    fn a_failed_atomic_write_leaves_the_old_file_intact() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("state.json");
        write_atomic(&path, b"old").unwrap();
        // A rename that fails (onto a non-empty directory) removes the temporary file…
        let dir_target = root.path().join("busy");
        fs::create_dir_all(dir_target.join("inside")).unwrap();
        let e = write_atomic(&dir_target, b"new").unwrap_err();
        assert!(format!("{e:#}").contains("busy"), "{e:#}");
        assert!(dir_target.join("inside").is_dir());
        // …and a temporary file already in the way is never written over.
        let tmp = root
            .path()
            .join(format!(".state.json.core-train-{}.tmp", std::process::id()));
        fs::write(&tmp, b"someone's").unwrap();
        let e = write_atomic(&path, b"new").unwrap_err();
        assert!(format!("{e:#}").contains("cannot create"), "{e:#}");
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(fs::read(&tmp).unwrap(), b"someone's");
        let leftovers = fs::read_dir(root.path()).unwrap().count();
        assert_eq!(leftovers, 3, "state.json, busy/ and the file in the way");
    }

    #[test]
    fn temporary_files_are_recognised_by_name() {
        assert!(is_temporary_of(
            ".metrics.jsonl.core-train-123.tmp",
            "metrics.jsonl"
        ));
        assert!(!is_temporary_of(
            ".metrics.jsonl.core-train-.tmp",
            "metrics.jsonl"
        ));
        assert!(!is_temporary_of(
            ".metrics.jsonl.core-train-12x.tmp",
            "metrics.jsonl"
        ));
        assert!(!is_temporary_of(
            ".notes.txt.core-train-123.tmp",
            "metrics.jsonl"
        ));
        assert!(!is_temporary_of("metrics.jsonl.part", "metrics.jsonl"));
    }

    #[test]
    fn read_names_the_missing_file_and_text_skips_a_byte_order_mark() {
        let root = tempfile::tempdir().unwrap();
        let missing = root.path().join("nowhere.json");
        let e = read(&missing).unwrap_err();
        assert!(
            format!("{e:#}").contains("nowhere.json: cannot read"),
            "{e:#}"
        );
        let path = root.path().join("a.jsonl");
        fs::write(&path, b"\xEF\xBB\xBFhello\n").unwrap();
        let (text, name) = read_text(&path).unwrap();
        assert_eq!(text, "hello\n");
        assert!(name.ends_with("a.jsonl"));
        fs::write(&path, b"\xFF\xFE").unwrap();
        assert!(read_text(&path).is_err());
    }

    #[test]
    fn sha256_of_known_bytes() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
