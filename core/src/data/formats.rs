//! Parsers for the dataset formats Polytask reads. Text in, examples out: the callers
//! read files (natively) or fetch them (in the browser). Every parser reports *all* the
//! problems it finds, each as `FILE:LINE: what is wrong`, so that `core-train data check`
//! can list them and training can refuse bad data with a precise message.
//!
//! | format | layout |
//! |---|---|
//! | CoNLL-2003 | `token POS chunk NER` per line, blank line between sentences, `-DOCSTART-` separators |
//! | seq.in / seq.out / label | line-aligned utterance, BIO tags and intent (SNIPS, ATIS) |
//! | CLINC150 | `{"train": [[text, intent], ...], ...}` |
//! | SST-2 | TSV with a header, `label<TAB>text` |
//! | JSON lines | `{"text": ..., "label": ...}` or `{"tokens": [...], "tags": [...]}` |

use std::fmt;

/// A labelled sentence (intent, sentiment, topic...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentenceExample {
    pub text: String,
    pub label: String,
}

/// A sentence as words with one tag each (IOB2/BIO).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenExample {
    pub tokens: Vec<String>,
    pub tags: Vec<String>,
}

/// One problem in a data file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataError {
    pub file: String,
    /// 1-based line; 0 when the problem concerns the whole file.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

/// All the problems of one parse (never empty when returned as an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataErrors(pub Vec<DataError>);

impl fmt::Display for DataErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 20;
        for (i, e) in self.0.iter().take(SHOWN).enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        if self.0.len() > SHOWN {
            write!(f, "\n… and {} more problems", self.0.len() - SHOWN)?;
        }
        Ok(())
    }
}

impl std::error::Error for DataErrors {}

/// Result of a parser.
pub type DataResult<T> = Result<T, DataErrors>;

struct Problems<'a> {
    file: &'a str,
    list: Vec<DataError>,
}

impl<'a> Problems<'a> {
    fn new(file: &'a str) -> Self {
        Problems {
            file,
            list: Vec::new(),
        }
    }
    fn add(&mut self, line: usize, message: impl Into<String>) {
        self.list.push(DataError {
            file: self.file.into(),
            line,
            message: message.into(),
        });
    }
    fn finish<T>(self, value: T) -> DataResult<T> {
        if self.list.is_empty() {
            Ok(value)
        } else {
            Err(DataErrors(self.list))
        }
    }
}

/// Decodes UTF-8, naming the line of the first invalid byte.
pub fn decode<'b>(bytes: &'b [u8], file: &str) -> DataResult<&'b str> {
    std::str::from_utf8(bytes).map(strip_bom).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        DataErrors(vec![DataError {
            file: file.into(),
            line,
            message: format!("invalid UTF-8 (byte {} of the file)", e.valid_up_to()),
        }])
    })
}

/// `text` without a leading UTF-8 byte-order mark (editors on Windows write one): every
/// parser accepts it, so it never ends up inside the first word.
fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Fails on the first control character of `text` (a NUL, an escape…), which no word
/// holds and which a tokenizer would silently drop or keep; tabs and line breaks are
/// separators, not control characters here.
fn check_chars(text: &str, what: &str) -> Result<(), String> {
    match text
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        Some(c) => Err(format!(
            "{what} {text:?} holds the control character U+{:04X}",
            c as u32
        )),
        None => Ok(()),
    }
}

/// Checks one IOB2/BIO tag: `O`, `B-TYPE` or `I-TYPE`.
fn check_tag(tag: &str) -> Result<(), String> {
    if tag == "O" {
        return Ok(());
    }
    match tag.split_once('-') {
        Some(("B" | "I", kind)) if !kind.is_empty() => Ok(()),
        _ => Err(format!("tag {tag:?} is not O, B-TYPE or I-TYPE")),
    }
}

/// CoNLL-2003: the first column is the word, the last the NER tag.
pub fn parse_conll(text: &str, file: &str) -> DataResult<Vec<TokenExample>> {
    let text = strip_bom(text);
    let mut problems = Problems::new(file);
    let mut out = Vec::new();
    let mut current = TokenExample {
        tokens: vec![],
        tags: vec![],
    };
    let mut columns = None;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim_end();
        if line.is_empty() || line.starts_with("-DOCSTART-") {
            if !current.tokens.is_empty() {
                out.push(std::mem::replace(
                    &mut current,
                    TokenExample {
                        tokens: vec![],
                        tags: vec![],
                    },
                ));
            }
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let expected = *columns.get_or_insert(fields.len());
        if fields.len() < 2 || fields.len() != expected {
            problems.add(
                n,
                format!(
                    "{} columns, expected {expected} (token ... tag)",
                    fields.len()
                ),
            );
            continue;
        }
        let tag = fields[fields.len() - 1];
        if let Err(m) = check_tag(tag).and_then(|_| check_chars(fields[0], "token")) {
            problems.add(n, m);
            continue;
        }
        current.tokens.push(fields[0].to_string());
        current.tags.push(tag.to_string());
    }
    if !current.tokens.is_empty() {
        out.push(current);
    }
    if out.is_empty() && problems.list.is_empty() {
        problems.add(0, "no sentences (empty file?)");
    }
    problems.finish(out)
}

/// SNIPS/ATIS: `seq.in`, `seq.out` and `label`, line-aligned. Returns the token task
/// and the sentence task of the same utterances.
pub fn parse_seq_label(
    seq_in: (&str, &str),
    seq_out: (&str, &str),
    label: (&str, &str),
) -> DataResult<(Vec<TokenExample>, Vec<SentenceExample>)> {
    let (in_text, in_file) = seq_in;
    let (out_text, out_file) = seq_out;
    let (label_text, label_file) = label;
    let (in_text, out_text, label_text) = (
        strip_bom(in_text),
        strip_bom(out_text),
        strip_bom(label_text),
    );
    let mut problems = Problems::new(out_file);
    let ins: Vec<&str> = in_text.lines().collect();
    let outs: Vec<&str> = out_text.lines().collect();
    let labels: Vec<&str> = label_text.lines().collect();
    if ins.len() != outs.len() || ins.len() != labels.len() {
        problems.add(
            0,
            format!(
                "line counts differ: {in_file} has {}, {out_file} {}, {label_file} {}",
                ins.len(),
                outs.len(),
                labels.len()
            ),
        );
        return problems.finish((vec![], vec![]));
    }
    if ins.is_empty() {
        problems.add(0, "no utterances (empty files?)");
    }
    let mut tokens = Vec::with_capacity(ins.len());
    let mut sentences = Vec::with_capacity(ins.len());
    for (i, ((words, tags), label)) in ins.iter().zip(&outs).zip(&labels).enumerate() {
        let n = i + 1;
        let words: Vec<String> = words.split_whitespace().map(str::to_string).collect();
        let tags: Vec<String> = tags.split_whitespace().map(str::to_string).collect();
        let label = label.trim();
        if words.is_empty() {
            problems.list.push(DataError {
                file: in_file.into(),
                line: n,
                message: "empty utterance".into(),
            });
            continue;
        }
        if let Some(m) = words.iter().find_map(|w| check_chars(w, "word").err()) {
            problems.list.push(DataError {
                file: in_file.into(),
                line: n,
                message: m,
            });
            continue;
        }
        if words.len() != tags.len() {
            problems.add(
                n,
                format!("{} tags for {} words in {in_file}", tags.len(), words.len()),
            );
            continue;
        }
        if let Some(m) = tags.iter().find_map(|t| check_tag(t).err()) {
            problems.add(n, m);
            continue;
        }
        if label.is_empty() {
            problems.list.push(DataError {
                file: label_file.into(),
                line: n,
                message: "empty label".into(),
            });
            continue;
        }
        sentences.push(SentenceExample {
            text: words.join(" "),
            label: label.to_string(),
        });
        tokens.push(TokenExample {
            tokens: words,
            tags,
        });
    }
    problems.finish((tokens, sentences))
}

/// CLINC150 `data_full.json`: the examples of one split (`train`, `val`, `test`,
/// `oos_train`, ...).
pub fn parse_clinc(text: &str, file: &str, split: &str) -> DataResult<Vec<SentenceExample>> {
    let text = strip_bom(text);
    let mut problems = Problems::new(file);
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            problems.add(e.line(), format!("invalid JSON: {e}"));
            return problems.finish(vec![]);
        }
    };
    let Some(items) = value.get(split).and_then(|v| v.as_array()) else {
        problems.add(
            0,
            format!("no split {split:?} (an array of [text, intent] pairs)"),
        );
        return problems.finish(vec![]);
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item.as_array().map(|a| a.as_slice()) {
            Some([serde_json::Value::String(t), serde_json::Value::String(l)])
                if !t.trim().is_empty() && !l.trim().is_empty() =>
            {
                if let Err(m) = check_chars(t, "text") {
                    problems.add(0, format!("{split}[{i}]: {m}"));
                    continue;
                }
                out.push(SentenceExample {
                    text: t.clone(),
                    label: l.clone(),
                })
            }
            _ => problems.add(
                0,
                format!(
                    "{split}[{i}]: expected a [text, intent] pair of non-empty strings, got {item}"
                ),
            ),
        }
    }
    if out.is_empty() && problems.list.is_empty() {
        problems.add(0, format!("split {split:?} is empty"));
    }
    problems.finish(out)
}

/// CLINC150 `domains.json`: domain → its intents.
pub fn parse_clinc_domains(text: &str, file: &str) -> DataResult<Vec<(String, Vec<String>)>> {
    let text = strip_bom(text);
    let mut problems = Problems::new(file);
    match serde_json::from_str::<std::collections::BTreeMap<String, Vec<String>>>(text) {
        Ok(map) if !map.is_empty() => problems.finish(map.into_iter().collect()),
        Ok(_) => {
            problems.add(0, "no domains");
            problems.finish(vec![])
        }
        Err(e) => {
            problems.add(e.line(), format!("expected {{domain: [intent, ...]}}: {e}"));
            problems.finish(vec![])
        }
    }
}

/// SST-2 TSV: a header line, then `label<TAB>text` with label 0 (negative) or 1 (positive).
pub fn parse_sst2(text: &str, file: &str) -> DataResult<Vec<SentenceExample>> {
    let text = strip_bom(text);
    let mut problems = Problems::new(file);
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, header)) if header.starts_with("label\t") => {}
        Some((_, header)) => problems.add(
            1,
            format!("header {header:?} does not start with \"label<TAB>\""),
        ),
        None => problems.add(0, "empty file"),
    }
    for (i, line) in lines {
        let n = i + 1;
        if line.trim().is_empty() {
            problems.add(n, "empty line");
            continue;
        }
        let Some((label, sentence)) = line.split_once('\t') else {
            problems.add(n, "1 column, expected 2 (label<TAB>text)");
            continue;
        };
        if sentence.contains('\t') {
            problems.add(n, "3 or more columns, expected 2 (label<TAB>text)");
            continue;
        }
        let label = match label {
            "0" => "negative",
            "1" => "positive",
            other => {
                problems.add(n, format!("label {other:?} is not 0 or 1"));
                continue;
            }
        };
        if sentence.trim().is_empty() {
            problems.add(n, "empty text");
            continue;
        }
        if let Err(m) = check_chars(sentence, "text") {
            problems.add(n, m);
            continue;
        }
        out.push(SentenceExample {
            text: sentence.trim().to_string(),
            label: label.to_string(),
        });
    }
    if out.is_empty() && problems.list.is_empty() {
        problems.add(0, "no examples");
    }
    problems.finish(out)
}

/// What a generic JSON-lines file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonlExamples {
    Sentences(Vec<SentenceExample>),
    Tokens(Vec<TokenExample>),
}

/// The generic format: one JSON object per line, either `{"text": ..., "label": ...}`
/// (sentence task) or `{"tokens": [...], "tags": [...]}` (token task), not mixed.
/// Blank lines are allowed.
pub fn parse_jsonl(text: &str, file: &str) -> DataResult<JsonlExamples> {
    let text = strip_bom(text);
    let mut problems = Problems::new(file);
    let mut sentences = Vec::new();
    let mut tokens = Vec::new();
    // The line of the first example of each kind, to name both when a file mixes them.
    let (mut first_sentence, mut first_token) = (None, None);
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                problems.add(n, format!("invalid JSON: {e}"));
                continue;
            }
        };
        let text = value.get("text").and_then(|v| v.as_str());
        let label = value.get("label").and_then(|v| v.as_str());
        let words = value.get("tokens").and_then(|v| v.as_array());
        let tags = value.get("tags").and_then(|v| v.as_array());
        match (text, label, words, tags) {
            (Some(t), Some(l), None, None) => {
                if t.trim().is_empty() {
                    problems.add(n, "empty \"text\"");
                } else if l.trim().is_empty() {
                    problems.add(n, "empty \"label\"");
                } else if let Err(m) = check_chars(t, "\"text\"") {
                    problems.add(n, m);
                } else {
                    first_sentence.get_or_insert(n);
                    sentences.push(SentenceExample {
                        text: t.to_string(),
                        label: l.to_string(),
                    });
                }
            }
            (None, None, Some(w), Some(t)) => {
                let w: Option<Vec<String>> = w.iter().map(|x| x.as_str().map(str::to_string)).collect();
                let t: Option<Vec<String>> = t.iter().map(|x| x.as_str().map(str::to_string)).collect();
                match (w, t) {
                    (Some(w), Some(t)) if w.is_empty() => {
                        let _ = t;
                        problems.add(n, "empty \"tokens\"")
                    }
                    (Some(w), Some(t)) if w.len() != t.len() => problems.add(
                        n,
                        format!("{} tags for {} tokens", t.len(), w.len()),
                    ),
                    (Some(w), Some(t)) => match t
                        .iter()
                        .find_map(|x| check_tag(x).err())
                        .or_else(|| w.iter().find_map(|x| check_chars(x, "token").err()))
                        .or_else(|| {
                            w.iter()
                                .any(|x| x.trim().is_empty())
                                .then(|| "an empty token in \"tokens\"".to_string())
                        }) {
                        Some(m) => problems.add(n, m),
                        None => {
                            first_token.get_or_insert(n);
                            tokens.push(TokenExample { tokens: w, tags: t })
                        }
                    },
                    _ => problems.add(n, "\"tokens\" and \"tags\" must be arrays of strings"),
                }
            }
            _ => problems.add(
                n,
                "expected {\"text\": string, \"label\": string} or {\"tokens\": [...], \"tags\": [...]}",
            ),
        }
    }
    match (sentences.is_empty(), tokens.is_empty()) {
        (false, false) => {
            let (s, t) = (first_sentence.unwrap_or(0), first_token.unwrap_or(0));
            problems.add(
                s.max(t),
                format!(
                    "mixes sentence examples (first at line {s}) and token examples (first at \
                     line {t}); use one kind per file"
                ),
            );
            problems.finish(JsonlExamples::Sentences(vec![]))
        }
        (true, true) => {
            if problems.list.is_empty() {
                problems.add(0, "no examples (empty file?)");
            }
            problems.finish(JsonlExamples::Sentences(vec![]))
        }
        (false, true) => problems.finish(JsonlExamples::Sentences(sentences)),
        (true, false) => problems.finish(JsonlExamples::Tokens(tokens)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(e: DataErrors) -> Vec<String> {
        e.0.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn conll_reads_sentences_and_skips_docstart() {
        let text = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\n";
        let s = parse_conll(text, "t.txt").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].tokens, vec!["EU", "rejects"]);
        assert_eq!(s[0].tags, vec!["B-ORG", "O"]);
        assert_eq!(s[1].tags, vec!["B-PER"]);
    }

    #[test]
    fn conll_lists_every_problem_with_its_line() {
        let text = "EU NNP B-NP B-ORG\nrejects VBZ O\nGerman JJ B-NP X-MISC\n";
        let m = messages(parse_conll(text, "t.txt").unwrap_err());
        assert_eq!(
            m,
            vec![
                "t.txt:2: 3 columns, expected 4 (token ... tag)",
                "t.txt:3: tag \"X-MISC\" is not O, B-TYPE or I-TYPE",
            ]
        );
        assert_eq!(
            messages(parse_conll("\n\n", "e.txt").unwrap_err()),
            vec!["e.txt: no sentences (empty file?)"]
        );
    }

    #[test]
    fn seq_label_aligns_three_files() {
        let (tok, sen) = parse_seq_label(
            ("play westbam \nadd a song", "seq.in"),
            ("O B-artist \nO O O", "seq.out"),
            ("PlayMusic\nAddToPlaylist", "label"),
        )
        .unwrap();
        assert_eq!(tok[0].tokens, vec!["play", "westbam"]);
        assert_eq!(
            sen[1],
            SentenceExample {
                text: "add a song".into(),
                label: "AddToPlaylist".into()
            }
        );
    }

    #[test]
    fn seq_label_reports_tag_count_and_line_count() {
        let err = parse_seq_label(("a b\nc", "in"), ("O\nO", "out"), ("X\nY", "lab")).unwrap_err();
        assert_eq!(messages(err), vec!["out:1: 1 tags for 2 words in in"]);
        let err = parse_seq_label(("a", "in"), ("O\nO", "out"), ("X", "lab")).unwrap_err();
        assert!(messages(err)[0].contains("line counts differ: in has 1, out 2, lab 1"));
    }

    #[test]
    fn clinc_reads_a_split_and_names_bad_items() {
        let text = r#"{"train": [["book a flight", "book_flight"], ["hi", 3]], "test": []}"#;
        let err = parse_clinc(text, "d.json", "train").unwrap_err();
        assert!(messages(err)[0].starts_with("d.json: train[1]: expected a [text, intent] pair"));
        let ok = parse_clinc(r#"{"val": [["x", "y"]]}"#, "d.json", "val").unwrap();
        assert_eq!(ok[0].label, "y");
        assert!(
            parse_clinc("{", "d.json", "val").unwrap_err().0[0]
                .message
                .contains("invalid JSON")
        );
        assert!(parse_clinc(r#"{"val": []}"#, "d.json", "train").is_err());
    }

    #[test]
    fn sst2_maps_labels_and_checks_columns() {
        let ok = parse_sst2("label\tsentence\n0\tbad film\n1\tgood film\n", "s.tsv").unwrap();
        assert_eq!(ok[1].label, "positive");
        let m = messages(
            parse_sst2("label\tsentence\n2\tx\nno tab here\n1\ta\tb\n", "s.tsv").unwrap_err(),
        );
        assert_eq!(
            m,
            vec![
                "s.tsv:2: label \"2\" is not 0 or 1",
                "s.tsv:3: 1 column, expected 2 (label<TAB>text)",
                "s.tsv:4: 3 or more columns, expected 2 (label<TAB>text)",
            ]
        );
        assert!(parse_sst2("", "s.tsv").is_err());
    }

    #[test]
    fn jsonl_reads_either_kind_and_refuses_mixtures() {
        let s = parse_jsonl("{\"text\": \"hi\", \"label\": \"greet\"}\n\n", "f.jsonl").unwrap();
        assert_eq!(
            s,
            JsonlExamples::Sentences(vec![SentenceExample {
                text: "hi".into(),
                label: "greet".into()
            }])
        );
        let t = parse_jsonl(
            "{\"tokens\": [\"Paris\"], \"tags\": [\"B-LOC\"]}",
            "f.jsonl",
        )
        .unwrap();
        assert!(matches!(t, JsonlExamples::Tokens(v) if v[0].tags == ["B-LOC"]));
        let mixed =
            "{\"text\": \"hi\", \"label\": \"g\"}\n{\"tokens\": [\"a\"], \"tags\": [\"O\"]}";
        assert!(messages(parse_jsonl(mixed, "f.jsonl").unwrap_err())[0].contains("mixes"));
        let bad = "{\"tokens\": [\"a\", \"b\"], \"tags\": [\"O\"]}\nnot json\n{\"text\": \"\", \"label\": \"x\"}";
        let m = messages(parse_jsonl(bad, "f.jsonl").unwrap_err());
        assert_eq!(m[0], "f.jsonl:1: 1 tags for 2 tokens");
        assert!(m[1].starts_with("f.jsonl:2: invalid JSON"));
        assert_eq!(m[2], "f.jsonl:3: empty \"text\"");
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let bytes = b"ok line\nsecond \xff line\n";
        let e = decode(bytes, "x.txt").unwrap_err();
        assert_eq!(e.0[0].line, 2);
        assert!(e.to_string().starts_with("x.txt:2: invalid UTF-8"));
    }
}
