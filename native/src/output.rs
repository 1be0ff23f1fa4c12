//! Everything `core-train` writes goes through here, under one rule: **it never deletes or
//! overwrites anything it did not write.**
//!
//! - A directory output (a checkpoint, a bundle, a meta-train result) carries a marker,
//!   [`MARKER`], listing the files written into it. An existing directory is replaced only
//!   when every entry in it is listed there (or, for directories written before markers
//!   existed, has one of the names core-train writes, [`LEGACY_NAMES`]); an empty directory
//!   is replaced too. Anything else (a user's `notes.txt`, a regular file, a symlink) is
//!   refused with a message naming the path, before any work is done.
//! - Directories are written whole or not at all: the files go to `DIR.tmp` (marker first,
//!   every file synced), then `DIR` is swapped for it with two renames
//!   (`DIR` → `DIR.old`, `DIR.tmp` → `DIR`). A crash at any point leaves either the old or
//!   the new directory readable ([`crate::run_dir::resolve`] finds it). A stale `DIR.tmp`
//!   or `DIR.old` is removed only under the same rule.
//! - A file output (an adapted task, a JSON report) is written to a fresh temporary file
//!   beside it, synced and renamed over; an existing file is replaced only when a check of
//!   its content says that core-train wrote it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::files;

/// The marker file in every directory core-train writes: JSON with the files it wrote.
pub const MARKER: &str = ".core-train.json";

/// The names that directories written before [`MARKER`] existed can hold; `tasks/` may
/// hold `*.safetensors` (bundles).
pub const LEGACY_NAMES: &[&str] = &[
    "model.safetensors",
    "tasks.json",
    "config.json",
    "tokenizer.json",
    "recipe.toml",
    "optimizer.safetensors",
    "state.json",
    "manifest.json",
    "meta.json",
];

pub fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    dir.with_file_name(name)
}

fn sync_dir(dir: &Path) {
    // Directory fsync makes the renames durable; not every filesystem allows it.
    if let Ok(f) = fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

/// Relative paths (with `/`) of every file and folder under `dir`, folders with a
/// trailing `/`, or the first entry that is neither a file nor a folder (a symlink…).
fn entries(dir: &Path) -> Result<std::result::Result<Vec<String>, String>> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, prefix)) = stack.pop() {
        let read =
            fs::read_dir(&path).with_context(|| format!("{}: cannot list", path.display()))?;
        for entry in read {
            let entry = entry.with_context(|| format!("{}: cannot list", path.display()))?;
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            let kind = entry
                .file_type()
                .with_context(|| format!("{}: cannot stat", entry.path().display()))?;
            if kind.is_dir() {
                out.push(format!("{name}/"));
                stack.push((entry.path(), format!("{name}/")));
            } else if kind.is_file() {
                out.push(name);
            } else {
                return Ok(Err(name));
            }
        }
    }
    out.sort();
    Ok(Ok(out))
}

/// The files that the marker in `dir` lists, if it has a readable one.
fn marked_files(dir: &Path) -> Option<Vec<String>> {
    let text = fs::read(dir.join(MARKER)).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&text).ok()?;
    if value.get("written_by")?.as_str()? != "core-train" {
        return None;
    }
    value
        .get("files")?
        .as_array()?
        .iter()
        .map(|f| f.as_str().map(str::to_string))
        .collect()
}

/// Why `dir` may not be replaced, or `None` when it may (it does not exist, is empty, or
/// holds only what core-train wrote there).
pub fn why_not_replaceable(dir: &Path) -> Result<Option<String>> {
    let meta = match fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot stat", dir.display())),
    };
    if meta.file_type().is_symlink() {
        return Ok(Some("is a symbolic link".into()));
    }
    if !meta.is_dir() {
        return Ok(Some("exists and is a file, not a directory".into()));
    }
    let found = match entries(dir)? {
        Ok(found) => found,
        Err(odd) => return Ok(Some(format!("holds {odd}, which is not a regular file"))),
    };
    let ours = |entry: &str| -> bool {
        if entry == MARKER {
            return true;
        }
        if let Some(listed) = marked_files(dir) {
            let folder = entry.strip_suffix('/');
            return listed.iter().any(|f| match folder {
                Some(folder) => f.starts_with(&format!("{folder}/")),
                None => f == entry,
            });
        }
        LEGACY_NAMES.contains(&entry)
            || entry == "tasks/"
            || entry
                .strip_prefix("tasks/")
                .is_some_and(|f| !f.contains('/') && f.ends_with(".safetensors"))
    };
    let foreign: Vec<&String> = found.iter().filter(|e| !ours(e)).collect();
    if foreign.is_empty() {
        return Ok(None);
    }
    let shown: Vec<&str> = foreign.iter().take(5).map(|s| s.as_str()).collect();
    let more = if foreign.len() > 5 {
        format!(" and {} more", foreign.len() - 5)
    } else {
        String::new()
    };
    Ok(Some(format!(
        "holds files that core-train did not write ({}{more})",
        shown.join(", ")
    )))
}

/// Fails, naming `dir` and why, unless [`write_dir_atomic`] may replace it. Commands call
/// it before their work, so that a refusal costs nothing.
pub fn check_dir_replaceable(dir: &Path) -> Result<()> {
    for path in [
        dir.to_path_buf(),
        sibling(dir, ".tmp"),
        sibling(dir, ".old"),
    ] {
        if let Some(why) = why_not_replaceable(&path)? {
            bail!(
                "{}: {why}; core-train replaces only directories it wrote, so it is left as \
                 it is: choose another output path, or move it away yourself",
                path.display()
            );
        }
    }
    Ok(())
}

fn remove_ours(dir: &Path) -> Result<()> {
    if dir.exists() {
        check_dir_replaceable(dir)?;
        fs::remove_dir_all(dir).with_context(|| format!("{}: cannot remove", dir.display()))?;
    }
    Ok(())
}

/// Writes `files` (relative paths, `/`-separated) as the directory `dir`, atomically
/// replacing a previous one that core-train wrote; refuses anything else (see the module).
pub fn write_dir_atomic(dir: &Path, files: &[(&str, &[u8])]) -> Result<()> {
    check_dir_replaceable(dir)?;
    let tmp = sibling(dir, ".tmp");
    let old = sibling(dir, ".old");
    remove_ours(&tmp)?;
    let written = (|| -> Result<()> {
        fs::create_dir_all(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
        let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
        let marker = serde_json::to_vec_pretty(&serde_json::json!({
            "written_by": "core-train",
            "version": env!("CARGO_PKG_VERSION"),
            "files": names,
        }))?;
        for (name, bytes) in
            std::iter::once((MARKER, marker.as_slice())).chain(files.iter().copied())
        {
            let path = tmp.join(name);
            if let Some(sub) = path.parent().filter(|p| *p != tmp) {
                fs::create_dir_all(sub)
                    .with_context(|| format!("{}: cannot create", sub.display()))?;
            }
            let mut f = fs::File::create(&path)
                .with_context(|| format!("{}: cannot create", path.display()))?;
            f.write_all(bytes)
                .and_then(|_| f.sync_all())
                .with_context(|| format!("{}: cannot write", path.display()))?;
        }
        sync_dir(&tmp);
        Ok(())
    })();
    if let Err(e) = written {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if dir.exists() {
        remove_ours(&old)?;
        fs::rename(dir, &old).with_context(|| format!("{}: cannot move aside", dir.display()))?;
    }
    fs::rename(&tmp, dir).with_context(|| format!("{}: cannot move into place", dir.display()))?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent);
    }
    remove_ours(&old)
}

/// Fails, naming `path`, unless it is absent or `ours` accepts its content (a file that
/// core-train wrote, which [`write_file_atomic`] may replace).
pub fn check_file_replaceable(path: &Path, ours: impl Fn(&[u8]) -> bool) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot stat", path.display())),
    };
    let why = if meta.is_dir() {
        "is a directory"
    } else if !meta.is_file() {
        "exists and is not a regular file"
    } else {
        let bytes = fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        if ours(&bytes) {
            return Ok(());
        }
        "exists and is not a file that core-train wrote"
    };
    bail!(
        "{}: {why}; core-train replaces only its own files, so it is left as it is: choose \
         another output path, or move it away yourself",
        path.display()
    )
}

/// Writes `bytes` to `path` atomically ([`files::write_atomic`]: a fresh temporary file
/// beside it, fsync, rename), replacing an existing file only if `ours` accepts its content.
pub fn write_file_atomic(path: &Path, bytes: &[u8], ours: impl Fn(&[u8]) -> bool) -> Result<()> {
    check_file_replaceable(path, ours)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    files::write_atomic(path, bytes)
}

/// Whether `bytes` are JSON lines, each an object with the key `key` (a report that
/// core-train wrote).
pub fn is_json_lines_with(bytes: &[u8], key: &str) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v.get(key).is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<(String, Vec<u8>)> = entries(dir)
            .unwrap()
            .unwrap()
            .into_iter()
            .map(|e| {
                let bytes = fs::read(dir.join(&e)).unwrap_or_default();
                (e, bytes)
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn atomic_write_replaces_whole_directories_it_wrote() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("last");
        write_dir_atomic(&dir, &[("model.safetensors", b"one"), ("a", b"1")]).unwrap();
        write_dir_atomic(&dir, &[("model.safetensors", b"two")]).unwrap();
        assert_eq!(fs::read(dir.join("model.safetensors")).unwrap(), b"two");
        assert!(
            !dir.join("a").exists(),
            "files of the old checkpoint are gone"
        );
        assert!(dir.join(MARKER).is_file());
        assert!(!sibling(&dir, ".tmp").exists() && !sibling(&dir, ".old").exists());
    }

    #[test]
    fn a_directory_with_a_users_files_is_never_replaced() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("out");
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("notes.txt"), b"mine").unwrap();
        fs::write(dir.join("sub/photo.jpg"), b"jpeg").unwrap();
        fs::write(dir.join("model.safetensors"), b"old").unwrap();
        let before = tree(&dir);
        let e = write_dir_atomic(&dir, &[("model.safetensors", b"new")]).unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains(&dir.display().to_string()), "{msg}");
        assert!(msg.contains("notes.txt") && msg.contains("sub/"), "{msg}");
        assert_eq!(tree(&dir), before, "nothing changed");
        assert!(!sibling(&dir, ".tmp").exists(), "no DIR.tmp left behind");

        // A file dropped into a directory core-train wrote is the user's too.
        let ours = root.path().join("bundle");
        write_dir_atomic(&ours, &[("model.safetensors", b"one")]).unwrap();
        fs::write(ours.join("README.md"), b"my notes").unwrap();
        let e = write_dir_atomic(&ours, &[("model.safetensors", b"two")]).unwrap_err();
        assert!(format!("{e:#}").contains("README.md"), "{e:#}");
        assert_eq!(fs::read(ours.join("model.safetensors")).unwrap(), b"one");
    }

    #[test]
    fn a_file_or_a_link_in_the_way_is_refused_and_kept() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("out");
        fs::write(&file, b"precious").unwrap();
        let e = write_dir_atomic(&file, &[("model.safetensors", b"x")]).unwrap_err();
        assert!(format!("{e:#}").contains("is a file"), "{e:#}");
        assert_eq!(fs::read(&file).unwrap(), b"precious");
        assert!(!sibling(&file, ".old").exists() && !sibling(&file, ".tmp").exists());

        let target = root.path().join("target");
        fs::create_dir(&target).unwrap();
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = write_dir_atomic(&link, &[("model.safetensors", b"x")]).unwrap_err();
        assert!(format!("{e:#}").contains("symbolic link"), "{e:#}");
    }

    #[test]
    fn legacy_and_empty_directories_are_replaced_a_users_tmp_is_not() {
        let root = tempfile::tempdir().unwrap();
        let legacy = root.path().join("legacy");
        fs::create_dir_all(legacy.join("tasks")).unwrap();
        for f in [
            "model.safetensors",
            "config.json",
            "manifest.json",
            "tasks/a.safetensors",
        ] {
            fs::write(legacy.join(f), b"x").unwrap();
        }
        write_dir_atomic(&legacy, &[("model.safetensors", b"new")]).unwrap();
        let empty = root.path().join("empty");
        fs::create_dir(&empty).unwrap();
        write_dir_atomic(&empty, &[("model.safetensors", b"new")]).unwrap();

        let dir = root.path().join("run");
        let tmp = sibling(&dir, ".tmp");
        fs::create_dir(&tmp).unwrap();
        fs::write(tmp.join("draft.txt"), b"mine").unwrap();
        let e = write_dir_atomic(&dir, &[("model.safetensors", b"x")]).unwrap_err();
        assert!(format!("{e:#}").contains("run.tmp"), "{e:#}");
        assert_eq!(fs::read(tmp.join("draft.txt")).unwrap(), b"mine");
        assert!(!dir.exists());
    }

    #[test]
    fn files_are_replaced_only_when_ours() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("report.jsonl");
        let is_ours = |b: &[u8]| is_json_lines_with(b, "method");
        write_file_atomic(&path, b"{\"method\":\"a\"}\n", is_ours).unwrap();
        write_file_atomic(&path, b"{\"method\":\"b\"}\n", is_ours).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"{\"method\":\"b\"}\n");
        fs::write(&path, b"my own notes\n").unwrap();
        let e = write_file_atomic(&path, b"{\"method\":\"c\"}\n", is_ours).unwrap_err();
        assert!(format!("{e:#}").contains("report.jsonl"), "{e:#}");
        assert_eq!(fs::read(&path).unwrap(), b"my own notes\n");
        let leftovers: Vec<_> = fs::read_dir(root.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn the_marker_says_which_files_of_a_bundle_are_ours() {
        let root = tempfile::tempdir().unwrap();
        let bundle = root.path().join("bundle");
        let files: &[(&str, &[u8])] = &[
            ("manifest.json", b"{}"),
            ("model.safetensors", b"w"),
            ("tasks/a.safetensors", b"t"),
        ];
        write_dir_atomic(&bundle, files).unwrap();
        assert_eq!(why_not_replaceable(&bundle).unwrap(), None);
        // A file in a folder the marker lists, but not listed itself, is not ours…
        fs::write(bundle.join("tasks/b.safetensors"), b"mine").unwrap();
        let why = why_not_replaceable(&bundle).unwrap().unwrap();
        assert!(why.contains("tasks/b.safetensors"), "{why}");
        let e = write_dir_atomic(&bundle, files).unwrap_err();
        assert!(format!("{e:#}").contains("bundle"), "{e:#}");
        assert_eq!(
            fs::read(bundle.join("tasks/b.safetensors")).unwrap(),
            b"mine"
        );
        fs::remove_file(bundle.join("tasks/b.safetensors")).unwrap();
        // …and a marker that another program wrote lists nothing: only the names
        // core-train writes count then.
        fs::write(
            bundle.join(MARKER),
            br#"{"written_by": "someone", "files": ["notes.txt"]}"#,
        )
        .unwrap();
        fs::write(bundle.join("notes.txt"), b"mine").unwrap();
        let why = why_not_replaceable(&bundle).unwrap().unwrap();
        assert!(why.contains("notes.txt"), "{why}");
    }
}
