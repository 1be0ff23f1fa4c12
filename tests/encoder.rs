//! Integration tests of the pretrained encoder against an independent reference.
//!
//! The real all-MiniLM-L6-v2 is fetched by the project's own `core-train fetch-model`
//! (idempotent; `POLYTASK_MODEL_DIR` points at an existing copy instead). The reference is
//! `tests/reference/minilm_reference.py`: BERT in numpy (float64) over the same
//! safetensors, tokenized by Python's `tokenizers` from the same tokenizer.json.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use polytask_core::burn::tensor::{Device, DeviceKind};
use polytask_core::{ModelFiles, Pooling, SentenceEncoder};

const BIN: &str = env!("CARGO_BIN_EXE_core-train");

/// Mixed lengths, punctuation, numbers, accents, other scripts, emoji and made-up words.
const SENTENCES: [&str; 10] = [
    "The new movie is awesome",
    "The new movie is so great",
    "Hello, world!",
    "Zyxwvut qlorbnax frumious bandersnatch.",
    "I'd like to book a flight from Boston to San Francisco on the 3rd of March, please.",
    "Don't   panic:  it's only 42 € (or is it $43.50?)",
    "Ünïcödé àccents and a naïve café résumé",
    "a",
    "東京 is the capital of Japan 🇯🇵 and ölçü is Turkish",
    "In the beginning the Universe was created. This has made a lot of people very angry \
     and been widely regarded as a bad move; many were increasingly of the opinion that \
     they'd all made a big mistake in coming down from the trees in the first place, and \
     some said that even the trees had been a bad move, and that no one should ever have \
     left the oceans.",
];

fn model_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("POLYTASK_MODEL_DIR") {
            return PathBuf::from(dir);
        }
        let cache = std::env::var_os("POLYTASK_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/polytask")
            });
        let dir = cache.join("models/sentence-transformers__all-MiniLM-L6-v2");
        let status = Command::new(BIN)
            .args(["fetch-model", "--dir"])
            .arg(&dir)
            .status()
            .expect("run core-train fetch-model");
        assert!(status.success(), "core-train fetch-model failed");
        dir
    })
}

struct Reference {
    ids: Vec<Vec<u32>>,
    embeddings: Vec<Vec<f64>>,
}

fn reference() -> &'static Reference {
    static REF: OnceLock<Reference> = OnceLock::new();
    REF.get_or_init(|| {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/reference/minilm_reference.py");
        let mut child = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
            .arg(&script)
            .arg("--model")
            .arg(model_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run python3 (pip install numpy safetensors tokenizers)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(SENTENCES.join("\n").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "reference script failed (pip install numpy safetensors tokenizers)"
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        Reference {
            ids: serde_json::from_value(v["ids"].clone()).unwrap(),
            embeddings: serde_json::from_value(v["embeddings"].clone()).unwrap(),
        }
    })
}

fn load(device: &Device) -> SentenceEncoder {
    let dir = model_dir();
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let tokenizer = std::fs::read(dir.join("tokenizer.json")).unwrap();
    let files = ModelFiles {
        config_json: &config,
        config_name: "config.json",
        weights: std::fs::read(dir.join("model.safetensors")).unwrap(),
        weights_name: "model.safetensors",
        tokenizer_json: &tokenizer,
        tokenizer_name: "tokenizer.json",
    };
    let (encoder, report) = SentenceEncoder::load(files, device).unwrap();
    assert_eq!(
        report.applied, 103,
        "5 embedding + 16 × 6 layer + 2 pooler tensors"
    );
    assert_eq!(
        report.skipped_buffers,
        vec!["embeddings.position_ids".to_string()]
    );
    encoder
}

fn max_abs_error(device: &Device, batch_size: usize) -> f64 {
    let encoder = load(device);
    let got = encoder
        .embed(&SENTENCES, Pooling::Mean, true, batch_size, device)
        .unwrap();
    let reference = reference();
    let mut worst = 0.0f64;
    for (g, r) in got.iter().zip(&reference.embeddings) {
        assert_eq!(g.len(), 384);
        for (a, b) in g.iter().zip(r) {
            worst = worst.max((*a as f64 - b).abs());
        }
    }
    worst
}

#[test]
fn tokenization_matches_reference() {
    let encoder = load(&Device::flex());
    for (s, expected) in SENTENCES.iter().zip(&reference().ids) {
        assert_eq!(
            &encoder.tokenizer.encode(s).unwrap().ids,
            expected,
            "sentence {s:?}"
        );
    }
}

#[test]
fn cpu_embeddings_match_reference() {
    // One padded batch of all ten sentences: padding must not change any vector.
    let err = max_abs_error(&Device::flex(), SENTENCES.len());
    eprintln!("cpu max abs error vs numpy reference: {err:.2e}");
    assert!(err <= 1e-4, "cpu max abs error {err}");
}

#[test]
fn wgpu_embeddings_match_reference() {
    // Mesa's llvmpipe in CI; a real GPU elsewhere.
    let err = max_abs_error(&Device::wgpu(DeviceKind::DefaultDevice), 4);
    eprintln!("wgpu max abs error vs numpy reference: {err:.2e}");
    assert!(err <= 1e-3, "wgpu max abs error {err}");
}

#[test]
fn embed_command_reproduces_published_similarity() {
    let out = Command::new(BIN)
        .args(["embed", "--cosine", "--backend", "cpu", "--model"])
        .arg(model_dir())
        .args(["The new movie is awesome", "The new movie is so great"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cosine = line["cosine"].as_f64().unwrap();
    assert!((cosine - 0.894).abs() <= 0.002, "cosine {cosine}");
}

#[test]
fn embed_command_reads_stdin_and_writes_unit_vectors() {
    let run = |input: &[u8]| {
        let mut child = Command::new(BIN)
            .args(["embed", "--backend", "cpu", "--model"])
            .arg(model_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run(b"first line\nsecond line\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // One output line per input line, in order.
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["text"], "second line");
    let v: Vec<f64> = serde_json::from_value(lines[0]["embedding"].clone()).unwrap();
    let norm: f64 = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");

    // A blank line has no embedding: refused, naming the line, as `predict` does.
    let out = run(b"first line\n  \nsecond line\n");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stdin line 2"), "{err}");
    assert!(out.stdout.is_empty());
}

/// A copy of the model directory with one file replaced (or removed, with `None`).
fn broken_model(name: &str, content: Option<Vec<u8>>) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for file in ["config.json", "tokenizer.json", "model.safetensors"] {
        if file != name {
            std::os::unix::fs::symlink(model_dir().join(file), tmp.path().join(file)).unwrap();
        }
    }
    if let Some(bytes) = content {
        std::fs::write(tmp.path().join(name), bytes).unwrap();
    }
    tmp
}

/// Runs `embed` on a broken model; returns its one-line error.
fn embed_error(dir: &Path) -> String {
    let out = Command::new(BIN)
        .args(["embed", "--backend", "cpu", "--model"])
        .arg(dir)
        .arg("hello")
        .output()
        .unwrap();
    assert!(!out.status.success(), "a broken model must fail");
    assert!(out.stdout.is_empty(), "no output on failure");
    let err = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one-line error expected, got:\n{err}");
    lines[0].to_string()
}

#[test]
fn truncated_weights_give_a_clear_error() {
    let full = std::fs::read(model_dir().join("model.safetensors")).unwrap();
    let dir = broken_model("model.safetensors", Some(full[..full.len() / 2].to_vec()));
    let err = embed_error(dir.path());
    assert!(
        err.starts_with("error: ") && err.contains("model.safetensors: truncated"),
        "{err}"
    );
}

#[test]
fn corrupt_weights_give_a_clear_error() {
    let dir = broken_model(
        "model.safetensors",
        Some(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all".to_vec()),
    );
    let err = embed_error(dir.path());
    assert!(err.contains("model.safetensors: corrupt header"), "{err}");
}

#[test]
fn config_with_wrong_sizes_gives_a_clear_error() {
    let config = std::fs::read_to_string(model_dir().join("config.json")).unwrap();
    let wrong = config.replace("\"intermediate_size\": 1536", "\"intermediate_size\": 1024");
    assert_ne!(config, wrong);
    let dir = broken_model("config.json", Some(wrong.into_bytes()));
    let err = embed_error(dir.path());
    assert!(
        err.contains("model.safetensors: tensor 'encoder.layer."),
        "{err}"
    );
    assert!(
        err.contains("intermediate.dense") || err.contains("output.dense"),
        "{err}"
    );
    // Shapes as the file stores them (PyTorch's [out, in]).
    assert!(
        err.contains("[1536, 384]") && err.contains("[1024, 384]"),
        "{err}"
    );
}

#[test]
fn missing_tokenizer_gives_a_clear_error() {
    let dir = broken_model("tokenizer.json", None);
    let err = embed_error(dir.path());
    assert!(err.contains("tokenizer.json: cannot read"), "{err}");
}
