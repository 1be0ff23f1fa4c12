//! The parsers on the real datasets: every file of the local mirror parses without a
//! problem and gives the sizes documented upstream (../shared/data/README.md).
//! The mirror is `$POLYTASK_DATA_MIRROR`, else `../shared/data` beside the checkout.

use polytask_core::data::formats::{self, JsonlExamples};

mod common;
use common::mirror;

fn read(rel: &str) -> (String, String) {
    let path = mirror().join(rel);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let name = path.display().to_string();
    let text = formats::decode(&bytes, &name).unwrap().to_string();
    (text, name)
}

#[test]
fn conll2003_sizes() {
    for (split, n) in [("train", 14041), ("valid", 3250), ("test", 3453)] {
        let (text, name) = read(&format!("conll2003/{split}.txt"));
        let s = formats::parse_conll(&text, &name).unwrap();
        assert_eq!(s.len(), n, "{split}");
        assert!(s.iter().all(|e| e.tokens.len() == e.tags.len()));
    }
}

#[test]
fn snips_and_atis_sizes() {
    for (corpus, sizes) in [("snips", [13084, 700, 700]), ("atis", [4478, 500, 893])] {
        for (split, n) in ["train", "valid", "test"].iter().zip(sizes) {
            let [a, b, c] =
                ["seq.in", "seq.out", "label"].map(|f| read(&format!("{corpus}/{split}/{f}")));
            let (tokens, sentences) =
                formats::parse_seq_label((&a.0, &a.1), (&b.0, &b.1), (&c.0, &c.1)).unwrap();
            assert_eq!((tokens.len(), sentences.len()), (n, n), "{corpus} {split}");
        }
    }
}

#[test]
fn clinc150_sizes_and_domains() {
    let (text, name) = read("clinc150/data_full.json");
    for (split, n) in [
        ("train", 15000),
        ("val", 3000),
        ("test", 4500),
        ("oos_test", 1000),
    ] {
        assert_eq!(
            formats::parse_clinc(&text, &name, split).unwrap().len(),
            n,
            "{split}"
        );
    }
    let (text, name) = read("clinc150/domains.json");
    let domains = formats::parse_clinc_domains(&text, &name).unwrap();
    assert_eq!(domains.len(), 10);
    assert!(domains.iter().all(|(_, intents)| intents.len() == 15));
}

#[test]
fn sst2_sizes() {
    for (split, n) in [("train", 67349), ("dev", 872), ("test", 1821)] {
        let (text, name) = read(&format!("sst2/{split}.tsv"));
        assert_eq!(
            formats::parse_sst2(&text, &name).unwrap().len(),
            n,
            "{split}"
        );
    }
}

#[test]
fn generic_jsonl_round_trip_of_a_real_sample() {
    let (text, name) = read("snips/test/seq.in");
    let (labels, _) = read("snips/test/label");
    let jsonl: String = text
        .lines()
        .zip(labels.lines())
        .take(50)
        .map(|(t, l)| serde_json::json!({"text": t.trim(), "label": l}).to_string() + "\n")
        .collect();
    match formats::parse_jsonl(&jsonl, &name).unwrap() {
        JsonlExamples::Sentences(s) => assert_eq!(s.len(), 50),
        other => panic!("expected sentences, got {other:?}"),
    }
}

/// Runs `core-train data check --format FORMAT PATH`.
fn data_check(format: &str, path: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_core-train"))
        .args(["data", "check", "--format", format])
        .arg(path)
        .output()
        .unwrap()
}

#[test]
fn data_check_lists_every_problem_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.txt");
    std::fs::write(
        &bad,
        b"EU NNP B-NP B-ORG\nrejects VBZ O\nGerman JJ B-NP X-MISC\n\xff\n",
    )
    .unwrap();
    let out = data_check("conll", &bad);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    // Invalid UTF-8 is found first, with its line.
    assert_eq!(
        err.trim(),
        format!(
            "error: {}:4: invalid UTF-8 (byte 54 of the file)",
            bad.display()
        )
    );

    std::fs::write(
        &bad,
        "EU NNP B-NP B-ORG\nrejects VBZ O\nGerman JJ B-NP X-MISC\n",
    )
    .unwrap();
    let out = data_check("conll", &bad);
    let err = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].ends_with("bad.txt:2: 3 columns, expected 4 (token ... tag)"),
        "{err}"
    );
    assert!(
        lines[1].ends_with("bad.txt:3: tag \"X-MISC\" is not O, B-TYPE or I-TYPE"),
        "{err}"
    );

    let good = mirror().join("snips/valid");
    let out = data_check("seq", &good);
    assert!(out.status.success());
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("ok (700 utterances")
    );
}
