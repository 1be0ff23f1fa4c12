//! `core-train data fetch` from a local mirror: files byte-identical to the mirror, a
//! completion marker, a fast second run, and clean failures (corrupted file, missing
//! file, unknown name) that install nothing.
//! The mirror is `$POLYTASK_DATA_MIRROR`, else `../shared/data` beside the checkout.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_core-train");
const MARKER: &str = ".polytask-complete";

mod common;
use common::mirror;

/// The mirror's SHA256SUMS as (relative path, sum).
fn mirror_sums() -> Vec<(String, String)> {
    fs::read_to_string(mirror().join("SHA256SUMS"))
        .unwrap()
        .lines()
        .map(|l| {
            let (sum, path) = l.split_once("  ").unwrap();
            (path.trim_start_matches("./").to_string(), sum.to_string())
        })
        .collect()
}

fn files_of(dataset: &str) -> Vec<(String, String)> {
    mirror_sums()
        .into_iter()
        .filter(|(p, _)| p.starts_with(&format!("{dataset}/")))
        .collect()
}

/// Runs `core-train data fetch ARGS... --dir DIR --mirror MIRROR`.
fn fetch(args: &[&str], dir: &Path, mirror: &Path) -> Output {
    Command::new(BIN)
        .args(["data", "fetch"])
        .args(args)
        .arg("--dir")
        .arg(dir)
        .arg("--mirror")
        .arg(mirror)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Every regular file under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out
}

/// A writable copy of the mirror's files of `dataset` in `to`, minus `skip`.
fn copy_mirror(dataset: &str, to: &Path, skip: Option<&str>) {
    for (rel, _) in files_of(dataset) {
        if Some(rel.as_str()) == skip {
            continue;
        }
        let dest = to.join(&rel);
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::write(&dest, fs::read(mirror().join(&rel)).unwrap()).unwrap();
    }
}

#[test]
fn fetches_from_the_mirror_then_says_already_present() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let out = fetch(&["snips", "conll2003"], &dir, &mirror());
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("snips: fetched 9 files from mirror"), "{err}");
    assert!(
        err.contains("conll2003: fetched 3 files from mirror"),
        "{err}"
    );
    for dataset in ["snips", "conll2003"] {
        let files = files_of(dataset);
        assert!(!files.is_empty());
        for (rel, sum) in &files {
            let got = fs::read(dir.join(rel)).unwrap();
            assert_eq!(got, fs::read(mirror().join(rel)).unwrap(), "{rel}");
            assert_eq!(&sha256(&got), sum, "{rel}");
        }
        // The marker lists every file with its sum, in sha256sum format.
        let marker = fs::read_to_string(dir.join(dataset).join(MARKER)).unwrap();
        for (rel, sum) in &files {
            assert!(marker.contains(&format!("{sum}  ./{rel}\n")), "{marker}");
        }
        assert_eq!(marker.lines().count(), files.len());
        // Nothing else is left behind (no .part files).
        assert_eq!(files_under(&dir.join(dataset)).len(), files.len() + 1);
    }
    assert!(!dir.join("atis").exists());

    let again = fetch(&["snips", "conll2003"], &dir, &mirror());
    assert!(again.status.success(), "{}", stderr(&again));
    let err = stderr(&again);
    assert!(err.contains("snips: already present"), "{err}");
    assert!(err.contains("conll2003: already present"), "{err}");

    // A file gone: the dataset is fetched again.
    fs::remove_file(dir.join("snips/test/label")).unwrap();
    let redo = fetch(&["snips"], &dir, &mirror());
    assert!(redo.status.success(), "{}", stderr(&redo));
    assert!(
        stderr(&redo).contains("snips: fetched"),
        "{}",
        stderr(&redo)
    );
    assert_eq!(
        fs::read(dir.join("snips/test/label")).unwrap(),
        fs::read(mirror().join("snips/test/label")).unwrap()
    );
}

#[test]
fn all_fetches_every_file_of_the_mirror() {
    let tmp = tempfile::tempdir().unwrap();
    let out = fetch(&["all"], tmp.path(), &mirror());
    assert!(out.status.success(), "{}", stderr(&out));
    let sums = mirror_sums();
    assert_eq!(sums.len(), 27);
    for (rel, sum) in &sums {
        let got = fs::read(tmp.path().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(&sha256(&got), sum, "{rel}");
    }
    for dataset in ["clinc150", "snips", "atis", "conll2003", "sst2"] {
        assert!(tmp.path().join(dataset).join(MARKER).is_file(), "{dataset}");
    }
    // Pinned files and mirror files are the same set (plus one marker per dataset).
    assert_eq!(files_under(tmp.path()).len(), sums.len() + 5);
}

#[test]
fn corrupted_mirror_file_is_rejected_and_nothing_is_installed() {
    let tmp = tempfile::tempdir().unwrap();
    let bad_mirror = tmp.path().join("mirror");
    copy_mirror("snips", &bad_mirror, None);
    let victim = "snips/valid/label";
    let path = bad_mirror.join(victim);
    let mut bytes = fs::read(&path).unwrap();
    bytes[0] ^= 0x20;
    fs::write(&path, &bytes).unwrap();
    let actual = sha256(&bytes);
    let (_, expected) = files_of("snips")
        .into_iter()
        .find(|(p, _)| p == victim)
        .unwrap();

    let dir = tmp.path().join("data");
    let out = fetch(&["snips"], &dir, &bad_mirror);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(victim), "{err}");
    assert!(err.contains(&expected), "{err}");
    assert!(err.contains(&actual), "{err}");
    // No marker, no .part file, and no final file either (all or nothing).
    let left = files_under(&dir.join("snips"));
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn unknown_dataset_lists_the_known_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let out = fetch(&["snips", "imdb"], tmp.path(), &mirror());
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("unknown dataset `imdb`"), "{err}");
    for name in ["clinc150", "snips", "atis", "conll2003", "sst2", "all"] {
        assert!(err.contains(name), "{err}");
    }
    // Names are checked before anything is fetched.
    assert!(files_under(tmp.path()).is_empty());
}

#[test]
fn missing_mirror_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let partial = tmp.path().join("mirror");
    let gone = "snips/test/label";
    copy_mirror("snips", &partial, Some(gone));
    let dir = tmp.path().join("data");
    let out = fetch(&["snips"], &dir, &partial);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&partial.join(gone).display().to_string()) && err.contains("missing"),
        "{err}"
    );
    assert!(files_under(&dir.join("snips")).is_empty());
}

#[test]
fn a_users_own_file_is_never_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mine = dir.join("snips/test/label");
    fs::create_dir_all(mine.parent().unwrap()).unwrap();
    fs::write(&mine, "my own labels\n").unwrap();
    let out = fetch(&["snips"], &dir, &mirror());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}: exists", mine.display())),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&mine).unwrap(), "my own labels\n");
    assert_eq!(
        files_under(&dir),
        vec![PathBuf::from("snips/test/label")],
        "nothing was added"
    );
}
