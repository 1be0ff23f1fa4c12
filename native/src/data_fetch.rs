//! `core-train data fetch NAME... [--mirror DIR] [--dir DIR]`: fetch the public datasets
//! (CLINC150, SNIPS, ATIS, CoNLL-2003, SST-2) into the data directory.
//!
//! Every file is pinned here: its place in the data directory, where it comes from
//! upstream (a GitHub repository at a fixed commit) and its sha256. The source is either
//! that upstream (`raw.githubusercontent.com`) or a local mirror directory with the same
//! layout as the data directory (`--mirror DIR` or `$POLYTASK_DATA_MIRROR`), for machines
//! without internet access.
//!
//! Nothing unverified is ever installed: each file is first written as `NAME.part` and
//! checked against its pinned sum; only when every file of a dataset verified are they
//! renamed into place, and a marker (`DATASET/.polytask-complete`, the sums in
//! `sha256sum -c` format, relative to the data directory) is written last. A dataset whose
//! marker and files are present is not fetched again.
//!
//! Commits: for clinc/oos-eval and kamalkraj/BERT-NER the full commit hash is known; for
//! the other two repositories only the abbreviated hash recorded with the mirror is known
//! (GitHub resolves an unambiguous abbreviation in raw URLs). The pinned sha256 sums are
//! what makes a fetch reproducible either way.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::{fetch, files};

/// Written last in a dataset directory: the sums of its files; its presence (with the
/// files) means the dataset is complete.
const MARKER: &str = ".polytask-complete";
/// The environment variable naming a mirror directory.
const MIRROR_ENV: &str = "POLYTASK_DATA_MIRROR";
/// Selects every dataset on the command line.
const ALL: &str = "all";

/// A GitHub repository at a fixed commit.
struct Upstream {
    owner: &'static str,
    repo: &'static str,
    /// Full or abbreviated commit hash (see the module comment).
    commit: &'static str,
}

/// One pinned file.
struct PinnedFile {
    /// Path relative to the data directory (and to a mirror), starting with the dataset name.
    path: &'static str,
    /// Path inside the upstream repository.
    upstream: &'static str,
    /// Lowercase hex sha256.
    sha256: &'static str,
}

struct Dataset {
    name: &'static str,
    upstream: Upstream,
    files: &'static [PinnedFile],
}

const fn pin(path: &'static str, upstream: &'static str, sha256: &'static str) -> PinnedFile {
    PinnedFile {
        path,
        upstream,
        sha256,
    }
}

/// The datasets and their files. Sums from the mirror's SHA256SUMS (byte-for-byte copies of
/// the upstream files).
const DATASETS: &[Dataset] = &[
    Dataset {
        name: "clinc150",
        upstream: Upstream {
            owner: "clinc",
            repo: "oos-eval",
            commit: "828f8093932c8fe6ca7936c3d2e52903b1c523de",
        },
        files: &[
            pin(
                "clinc150/LICENSE",
                "LICENSE",
                "e6bc9e9c474700b708f568bac9e5a8a9bcb2b1dad53442f5ba449fcb848b8e76",
            ),
            pin(
                "clinc150/domains.json",
                "data/domains.json",
                "b947b579d3b8e74b06f93b01083d8efaff2888b43a3e362533bd88a6e1211b3a",
            ),
            pin(
                "clinc150/data_full.json",
                "data/data_full.json",
                "36923c3705a59e08fe9c3883d8bc2dd966ef93e22cb78ac41171782a698d56e0",
            ),
        ],
    },
    Dataset {
        name: "snips",
        upstream: Upstream {
            owner: "jianguoz",
            repo: "Few-Shot-Intent-Detection",
            commit: "fa955331",
        },
        files: &[
            pin(
                "snips/train/seq.in",
                "Datasets/SNIPS/train/seq.in",
                "04ad1e3f2121d83c6478f9a4b17d2dbdc21d06d6127f73cb7af835ed733f9855",
            ),
            pin(
                "snips/train/seq.out",
                "Datasets/SNIPS/train/seq.out",
                "fd5f2121d8055827e5d6b3d3bac30f3d7e94e82a5d437751960cbdd9e1b4f6d3",
            ),
            pin(
                "snips/train/label",
                "Datasets/SNIPS/train/label",
                "bfd7df6cf9dd76c5da5d8b61bc85f90386197bdd3d7510c1d324c051537b962f",
            ),
            pin(
                "snips/valid/seq.in",
                "Datasets/SNIPS/valid/seq.in",
                "64e0f6d8ad8aab3a3828164d7d53731a0993d3ca1aed437ceaca6d3d568d410e",
            ),
            pin(
                "snips/valid/seq.out",
                "Datasets/SNIPS/valid/seq.out",
                "712e6d34feb8d52d208b820a5f8bae6e6ff990f08374507dfde22de389088319",
            ),
            pin(
                "snips/valid/label",
                "Datasets/SNIPS/valid/label",
                "9c1dd041216f647bcfca838aaf1a48eb5781e4404256d31ff07cd38a5436c52f",
            ),
            pin(
                "snips/test/seq.in",
                "Datasets/SNIPS/test/seq.in",
                "c1e341173fcea2951a8ca371956a6f81c76de87b9583c62eb87edd6158fa3a7c",
            ),
            pin(
                "snips/test/seq.out",
                "Datasets/SNIPS/test/seq.out",
                "58c07c9097d5e1f78889765c2a535a160f6455b90b3142055c8051847afcca47",
            ),
            pin(
                "snips/test/label",
                "Datasets/SNIPS/test/label",
                "37a26da3ad079bb41c42c85a3a8f827eb47efec4c5917ce5d08f4b2736e4f830",
            ),
        ],
    },
    Dataset {
        name: "atis",
        upstream: Upstream {
            owner: "jianguoz",
            repo: "Few-Shot-Intent-Detection",
            commit: "fa955331",
        },
        files: &[
            pin(
                "atis/train/seq.in",
                "Datasets/ATIS/train/seq.in",
                "3a670980841b21ab39088b2595efc17d487cdc45769c075a3e5f9458bba28c7f",
            ),
            pin(
                "atis/train/seq.out",
                "Datasets/ATIS/train/seq.out",
                "14c7131bd66562f797dbd7189bc7358f0cf354c6afb0785a9ab973c35b58f34c",
            ),
            pin(
                "atis/train/label",
                "Datasets/ATIS/train/label",
                "d0a771547665eecbdf9f96ea015ef07d1f6ee9f063e861020dafabb3c2a04377",
            ),
            pin(
                "atis/valid/seq.in",
                "Datasets/ATIS/valid/seq.in",
                "c7435b96e7948393608c34819628e863c5338f11ca68e8f896d2cc041d8e17f8",
            ),
            pin(
                "atis/valid/seq.out",
                "Datasets/ATIS/valid/seq.out",
                "83ccff3e36f83a993f8e5b5b82adf3256076f234abda4d784051381d7ac76922",
            ),
            pin(
                "atis/valid/label",
                "Datasets/ATIS/valid/label",
                "06957cfe6fdffac84f8280bc3a1f8ca85c85631b363817aa4543aac611f8addf",
            ),
            pin(
                "atis/test/seq.in",
                "Datasets/ATIS/test/seq.in",
                "4b2119fc59c37f9398c6605db435d4f467505009e6ee3e5af04fed09f39dc397",
            ),
            pin(
                "atis/test/seq.out",
                "Datasets/ATIS/test/seq.out",
                "a4690d6bceadc06876d1ff99bc401744aa981cb321e598ae12a3859d7be53254",
            ),
            pin(
                "atis/test/label",
                "Datasets/ATIS/test/label",
                "ce4bfe6590d9498e1078f30b4137d3e8b3e94277b444b26360c0bf2e9e282761",
            ),
        ],
    },
    Dataset {
        name: "conll2003",
        upstream: Upstream {
            owner: "kamalkraj",
            repo: "BERT-NER",
            commit: "e5be564156f194f1becb0d82aeaf6e762d9eb9ed",
        },
        files: &[
            pin(
                "conll2003/train.txt",
                "data/train.txt",
                "213953b5522fb7924802d883e50f027b2c6ffb5d4d0e63368ed82909f9b60423",
            ),
            pin(
                "conll2003/valid.txt",
                "data/valid.txt",
                "c02eb19809eafb83998326a0481942eb37d96f31826ae387cfe8773699969f5b",
            ),
            pin(
                "conll2003/test.txt",
                "data/test.txt",
                "dc4ac7f3d6d01a6bec59261814561da3b287b6b493b97d1f69c580b52ec1831b",
            ),
        ],
    },
    Dataset {
        name: "sst2",
        upstream: Upstream {
            owner: "awake020",
            repo: "pytorch_Bert_sst2",
            commit: "ce2ab171",
        },
        files: &[
            pin(
                "sst2/train.tsv",
                "SST-2/train.tsv",
                "e981ceb4fe6c9acd1c79851d0d091b9e78103f1f2a399ca83dda27915d41c56c",
            ),
            pin(
                "sst2/dev.tsv",
                "SST-2/dev.tsv",
                "84207e6be5873fb18db798cc6faec86871f5a426554650ff64a1c34e87665f6f",
            ),
            pin(
                "sst2/test.tsv",
                "SST-2/test.tsv",
                "fcd46f967b7b8efd8b5398481dadf873886298d092195167af907fd532e81e1c",
            ),
        ],
    },
];

impl Upstream {
    fn url(&self, path: &str) -> String {
        format!(
            "https://raw.githubusercontent.com/{}/{}/{}/{path}",
            self.owner, self.repo, self.commit
        )
    }

    fn describe(&self) -> String {
        format!("github.com/{}/{} @ {}", self.owner, self.repo, self.commit)
    }
}

/// Where datasets go by default: `data/` in the cache (`$POLYTASK_CACHE/data`, else
/// `~/.cache/polytask/data`).
pub fn default_data_dir() -> PathBuf {
    fetch::cache_dir().join("data")
}

/// The mirror named by `$POLYTASK_DATA_MIRROR`, if it is set and not empty.
pub fn mirror_from_env() -> Option<PathBuf> {
    std::env::var_os(MIRROR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn known_names() -> String {
    let mut names: Vec<&str> = DATASETS.iter().map(|d| d.name).collect();
    names.push(ALL);
    names.join(", ")
}

fn lookup(name: &str) -> Result<&'static Dataset> {
    DATASETS
        .iter()
        .find(|d| d.name == name)
        .with_context(|| format!("unknown dataset `{name}`; known: {}", known_names()))
}

/// The marker's text: one `SHA256  ./PATH` line per file, as `sha256sum` writes them, so
/// that `sha256sum -c DATASET/.polytask-complete` in the data directory checks the files.
fn marker_text(dataset: &Dataset) -> String {
    dataset
        .files
        .iter()
        .map(|f| format!("{}  ./{}\n", f.sha256, f.path))
        .collect()
}

/// Whether the marker (for the current pins) and every file of `dataset` are in `data_dir`.
fn is_complete(dataset: &Dataset, data_dir: &Path) -> bool {
    let marker = data_dir.join(dataset.name).join(MARKER);
    fs::read_to_string(marker).is_ok_and(|text| text == marker_text(dataset))
        && dataset
            .files
            .iter()
            .all(|f| data_dir.join(f.path).is_file())
}

/// Makes sure dataset `name` is complete in `data_dir`, fetching it (from `mirror` when
/// given, else from upstream) when it is not. Returns the dataset directory,
/// `data_dir/NAME`. Prints one line saying what happened.
pub fn ensure_dataset(name: &str, data_dir: &Path, mirror: Option<&Path>) -> Result<PathBuf> {
    let dataset = lookup(name)?;
    let dir = data_dir.join(dataset.name);
    if is_complete(dataset, data_dir) {
        eprintln!("{name}: already present in {}", dir.display());
        return Ok(dir);
    }
    let source = match mirror {
        Some(m) => {
            if !m.is_dir() {
                bail!("{name}: the mirror {} is not a directory", m.display());
            }
            format!("mirror {}", m.display())
        }
        None => dataset.upstream.describe(),
    };
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // The marker says core-train wrote this directory, so files of the dataset that fail
    // their sha256 are ours to replace; without one, such a file is the user's and is left
    // alone. A stale marker (files missing, older pins) becomes "in progress": the
    // directory is incomplete until the new one is written.
    let marker = dir.join(MARKER);
    let ours = marker.exists();
    if !ours {
        for file in dataset.files {
            let dest = data_dir.join(file.path);
            if fs::symlink_metadata(&dest).is_ok()
                && !(dest.is_file() && fetch::sha256_file(&dest)? == file.sha256)
            {
                bail!(
                    "{}: exists and is not the pinned {name} file, and {} was not written by \
                     core-train (it has no {MARKER}); it is left as it is: pass another --dir, \
                     or move it away yourself",
                    dest.display(),
                    dir.display()
                );
            }
        }
    }
    files::write_atomic(&marker, b"in progress\n")?;
    let agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_recv_response(Some(Duration::from_secs(30)))
        .build()
        .new_agent();
    // Stage every file as FILE.part and verify it; install nothing unless all verified.
    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
    let result = (|| -> Result<()> {
        for file in dataset.files {
            let dest = data_dir.join(file.path);
            if dest.is_file() && fetch::sha256_file(&dest)? == file.sha256 {
                continue; // left by an earlier, interrupted run, and intact
            }
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            let part = fetch::part_path(&dest);
            staged.push((part.clone(), dest));
            match mirror {
                Some(m) => copy_from_mirror(&m.join(file.path), &part)?,
                None => {
                    let url = dataset.upstream.url(file.upstream);
                    download(&agent, &url, &part, file.path).with_context(|| {
                        format!(
                            "{name}: cannot fetch {} from upstream; without internet access, \
                             pass --mirror DIR (or set {MIRROR_ENV}) to copy from a local \
                             mirror with the same layout",
                            file.path
                        )
                    })?;
                }
            }
            let actual = fetch::sha256_file(&part)?;
            if actual != file.sha256 {
                bail!(
                    "{}: sha256 mismatch (from {source}): expected {}, got {actual}; \
                     {name} was not installed",
                    file.path,
                    file.sha256
                );
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        for (part, _) in &staged {
            fs::remove_file(part).ok();
        }
        if !ours {
            // Written by this run a moment ago, and nothing was installed.
            fs::remove_file(&marker).ok();
        }
        return Err(e);
    }
    for (part, dest) in &staged {
        fs::rename(part, dest).with_context(|| format!("cannot rename to {}", dest.display()))?;
    }
    files::write_atomic(&marker, marker_text(dataset).as_bytes())?;
    eprintln!(
        "{name}: fetched {} files from {source} into {}",
        dataset.files.len(),
        dir.display()
    );
    Ok(dir)
}

/// Copies a mirror file to `part` (without its permissions: mirrors are often read-only).
fn copy_from_mirror(src: &Path, part: &Path) -> Result<()> {
    let mut input = match File::open(src) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            bail!("{}: missing from the mirror", src.display())
        }
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", src.display())),
    };
    let mut out =
        File::create(part).with_context(|| format!("cannot create {}", part.display()))?;
    io::copy(&mut input, &mut out).with_context(|| format!("cannot copy {}", src.display()))?;
    out.sync_all()?;
    Ok(())
}

/// Downloads `url` into `part`, with a progress bar labelled `label`.
fn download(agent: &ureq::Agent, url: &str, part: &Path, label: &str) -> Result<()> {
    let response = agent
        .get(url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    // After gzip decoding ureq reports no length, so the check applies only to plain bodies.
    let len = response.body().content_length();
    let mut body = response.into_body().into_reader();
    fetch::copy_with_progress(&mut body, part, len, label)
        .with_context(|| format!("downloading {url}"))
}

/// `core-train data fetch`: fetches each named dataset (`all` for every one) into
/// `dir` (default: [`default_data_dir`]), from `mirror` (default: [`mirror_from_env`]) or
/// upstream.
pub fn fetch_datasets(
    names: &[String],
    mirror: Option<PathBuf>,
    dir: Option<PathBuf>,
) -> Result<()> {
    if names.is_empty() {
        bail!("name at least one dataset; known: {}", known_names());
    }
    // Check every name before fetching anything; keep the order given, once each.
    let mut selected: Vec<&'static str> = Vec::new();
    for name in names {
        let add: Vec<&'static str> = if name == ALL {
            DATASETS.iter().map(|d| d.name).collect()
        } else {
            vec![lookup(name)?.name]
        };
        for n in add {
            if !selected.contains(&n) {
                selected.push(n);
            }
        }
    }
    let data_dir = dir.unwrap_or_else(default_data_dir);
    let mirror = mirror.or_else(mirror_from_env);
    for name in selected {
        ensure_dataset(name, &data_dir, mirror.as_deref())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    #[test]
    fn pins_are_unique_and_well_formed() {
        let mut paths = BTreeSet::new();
        let mut names = BTreeSet::new();
        for d in DATASETS {
            assert!(names.insert(d.name), "dataset {} twice", d.name);
            assert!(!d.files.is_empty());
            for f in d.files {
                assert!(paths.insert(f.path), "{} pinned twice", f.path);
                assert!(
                    f.path.starts_with(&format!("{}/", d.name)),
                    "{} is outside {}",
                    f.path,
                    d.name
                );
                assert!(
                    f.sha256.len() == 64
                        && f.sha256
                            .bytes()
                            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                    "{}: bad sha256 {}",
                    f.path,
                    f.sha256
                );
                assert!(!f.upstream.starts_with('/') && !f.upstream.contains(".."));
            }
            let c = d.upstream.commit;
            assert!(c.len() >= 7 && c.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        assert!(!names.contains(ALL));
    }

    #[test]
    fn urls_name_the_repository_and_commit() {
        let d = lookup("conll2003").unwrap();
        assert_eq!(
            d.upstream.url(d.files[0].upstream),
            "https://raw.githubusercontent.com/kamalkraj/BERT-NER/\
             e5be564156f194f1becb0d82aeaf6e762d9eb9ed/data/train.txt"
        );
        let err = lookup("imdb").err().unwrap().to_string();
        assert!(err.contains("imdb") && err.contains("snips, atis") && err.contains("all"));
    }

    /// Serves one HTTP response on a local port; returns the URL.
    fn serve_once(status: &'static str, body: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
                line.clear();
            }
            let mut stream = stream;
            write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .unwrap();
            stream.write_all(body).unwrap();
        });
        format!("http://{addr}/f")
    }

    #[test]
    fn download_writes_the_body_and_reports_http_errors_with_the_url() {
        let agent = ureq::Agent::new_with_defaults();
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("f.part");
        download(&agent, &serve_once("200 OK", b"abc"), &part, "f").unwrap();
        assert_eq!(fs::read(&part).unwrap(), b"abc");
        let url = serve_once("404 Not Found", b"no");
        let err = format!("{:#}", download(&agent, &url, &part, "f").unwrap_err());
        assert!(err.contains(&url) && err.contains("404"), "{err}");
    }
}
