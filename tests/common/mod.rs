//! Helpers shared by the integration tests.
#![allow(dead_code)] // Each test crate uses a different part.

use std::path::{Path, PathBuf};

use polytask_core::BertConfig;
use polytask_core::burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, SafetensorsStore};
use polytask_core::burn::tensor::Device;
use serde_json::{Value, json};

/// The local dataset mirror: `$POLYTASK_DATA_MIRROR`, else `../shared/data` beside the
/// checkout (as in CI).
pub fn mirror() -> PathBuf {
    let dir = std::env::var_os("POLYTASK_DATA_MIRROR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    assert!(
        dir.join("SHA256SUMS").is_file(),
        "no dataset mirror at {} (set POLYTASK_DATA_MIRROR)",
        dir.display()
    );
    dir
}

pub const WORDS: &[&str] = &[
    "the",
    "a",
    "movie",
    "film",
    "show",
    "is",
    "was",
    "great",
    "good",
    "fine",
    "bad",
    "awful",
    "boring",
    "paris",
    "london",
    "berlin",
    "alice",
    "bob",
    "carol",
    "went",
    "to",
    "met",
    "in",
    "visited",
    "and",
    "today",
    "yesterday",
    "very",
    "not",
];

pub fn tokenizer_json() -> String {
    let mut vocab = vec!["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
    vocab.extend(WORDS);
    let vocab: serde_json::Map<String, Value> = vocab
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), json!(i)))
        .collect();
    json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                       "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                               "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab}
    })
    .to_string()
}

/// A tiny random BERT saved as a Hugging Face model directory.
pub fn tiny_model(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let mut config = BertConfig::tiny(WORDS.len() + 5);
    config.hidden_size = 32;
    config.intermediate_size = 64;
    let model = config.init(&Device::flex());
    let mut store = SafetensorsStore::from_bytes(None)
        .with_to_adapter(BurnToPyTorchAdapter)
        .with_key_remapping(r"\.attention\.self_\.", ".attention.self.");
    model.save_into(&mut store).unwrap();
    std::fs::write(dir.join("model.safetensors"), store.get_bytes().unwrap()).unwrap();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string(&config).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("tokenizer.json"), tokenizer_json()).unwrap();
}

/// Sentiment (sentence task) and names/places (token task) from templates.
pub fn write_data(dir: &Path) {
    let sent = |file: &str, n: usize, offset: usize| {
        let pos = ["great", "good", "fine"];
        let neg = ["bad", "awful", "boring"];
        let things = ["movie", "film", "show"];
        let mut lines = Vec::new();
        for i in 0..n {
            let k = i + offset;
            let (word, label) = if k.is_multiple_of(2) {
                (pos[k / 2 % 3], "positive")
            } else {
                (neg[k / 2 % 3], "negative")
            };
            let text = format!(
                "the {} {} {word}",
                things[k / 6 % 3],
                ["is", "was"][k / 18 % 2]
            );
            lines.push(json!({"text": text, "label": label}).to_string());
        }
        std::fs::write(dir.join(file), lines.join("\n") + "\n").unwrap();
    };
    sent("sent_train.jsonl", 48, 0);
    sent("sent_dev.jsonl", 12, 5);
    let tok = |file: &str, n: usize, offset: usize| {
        let people = ["alice", "bob", "carol"];
        let places = ["paris", "london", "berlin"];
        let verbs = ["visited", "met"];
        let mut lines = Vec::new();
        for i in 0..n {
            let k = i + offset;
            let (p, q) = (people[k % 3], places[k / 3 % 3]);
            let (tokens, tags) = if k.is_multiple_of(2) {
                (
                    vec![p, verbs[k / 9 % 2], q, "today"],
                    vec!["B-PER", "O", "B-LOC", "O"],
                )
            } else {
                (
                    vec!["yesterday", p, "went", "to", q],
                    vec!["O", "B-PER", "O", "O", "B-LOC"],
                )
            };
            lines.push(json!({"tokens": tokens, "tags": tags}).to_string());
        }
        std::fs::write(dir.join(file), lines.join("\n") + "\n").unwrap();
    };
    tok("tok_train.jsonl", 48, 0);
    tok("tok_dev.jsonl", 12, 7);
}

/// A two-task recipe (`sentiment`, `ner`) over [`write_data`]'s files and the tiny model
/// in `model/`, with `extra_train` added to its `[train]` table.
pub fn recipe(dir: &Path, extra_train: &str) -> PathBuf {
    let text = format!(
        r#"name = "tiny"
[model]
path = "model"
max_len = 16
head_dropout = 0.1
[train]
epochs = 6
batch_size = 8
lr = 3e-3
warmup_ratio = 0.1
seed = 7
eval_every = 12
checkpoint_every = 4
eval_batch_size = 16
{extra_train}
[[task]]
name = "sentiment"
dataset = "jsonl"
train = "sent_train.jsonl"
dev = "sent_dev.jsonl"
test = "sent_dev.jsonl"
[[task]]
name = "ner"
dataset = "jsonl"
train = "tok_train.jsonl"
dev = "tok_dev.jsonl"
"#
    );
    let path = dir.join("recipe.toml");
    std::fs::write(&path, text).unwrap();
    path
}
