//! The texts a command works on (`embed`, `predict`): its arguments, or else one per line
//! of stdin, under one rule for every command.

use std::io::BufRead;

use anyhow::{Context, Result, bail};

/// The texts a command works on: its arguments, or else one per line of stdin. The one
/// rule for every command: there must be at least one, and none may be empty or only
/// white space (the error names the argument or line).
pub fn input_texts(args: &[String]) -> Result<Vec<String>> {
    let (texts, place) = if args.is_empty() {
        let mut lines = Vec::new();
        for (n, line) in std::io::stdin().lock().lines().enumerate() {
            // Every line is a text, so output line i answers input line i.
            lines.push(line.with_context(|| format!("stdin line {}: not UTF-8 text", n + 1))?);
        }
        (lines, "stdin line")
    } else {
        (args.to_vec(), "argument")
    };
    if texts.is_empty() {
        bail!("no text: give it as arguments or one per line on stdin");
    }
    check_texts(&texts, place)?;
    Ok(texts)
}

/// Fails on the first text that is empty or only white space, naming it as `place N`.
pub fn check_texts(texts: &[String], place: &str) -> Result<()> {
    if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
        bail!(
            "{place} {}: the text is empty or only white space; every text needs at least one word",
            i + 1
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_text_is_named_by_its_place() {
        let texts = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        check_texts(&texts(&["hello", "world"]), "argument").unwrap();
        let e = check_texts(&texts(&["hello", " \t"]), "stdin line").unwrap_err();
        assert!(e.to_string().starts_with("stdin line 2: "), "{e}");
        assert_eq!(input_texts(&texts(&["a b"])).unwrap(), ["a b"]);
        let e = input_texts(&texts(&["", "x"])).unwrap_err();
        assert!(e.to_string().starts_with("argument 1: "), "{e}");
    }
}
