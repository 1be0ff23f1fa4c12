//! The page's pure text logic: no browser, no device, no signals. It compiles on the host
//! with the rest of the crate, and its unit tests run there: `cargo test -p polytask-web`.

use polytask_core::eval::predict::Entity;
use polytask_core::fewshot::adapt::{AdaptConfig, AdaptMode, validate_support};

/// `text` split at the entities' character spans: `(piece, entity)` in order. An entity
/// that overlaps the one before it is skipped; spans past the end are cut to the text.
pub fn highlight<'a>(text: &str, entities: &'a [Entity]) -> Vec<(String, Option<&'a Entity>)> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut at = 0;
    for e in entities {
        let (start, end) = (e.start.min(chars.len()), e.end.min(chars.len()));
        if start < at {
            continue;
        }
        if start > at {
            out.push((chars[at..start].iter().collect(), None));
        }
        out.push((chars[start..end].iter().collect(), Some(e)));
        at = end;
    }
    if at < chars.len() {
        out.push((chars[at..].iter().collect(), None));
    }
    out
}

/// `(text, label index)` lines of the teach box.
pub type Rows = Vec<(String, usize)>;

/// Parses the teach box: one `label: text` (or `label<TAB>text`) per line, blank lines
/// skipped. `labels`, when given, must each have an example and cover every line.
/// `what` names the box in messages ("Examples", "Held-out").
pub fn parse_examples(text: &str, labels: &str, what: &str) -> Result<(Vec<String>, Rows), String> {
    let mut declared: Vec<String> = labels
        .split(',')
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    let fixed = !declared.is_empty();
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (label, example) = line
            .split_once('\t')
            .or_else(|| line.split_once(':'))
            .ok_or_else(|| format!("{what}, line {}: write it as \"label: text\"", i + 1))?;
        let (label, example) = (label.trim(), example.trim());
        if label.is_empty() {
            return Err(format!("{what}, line {}: the label is empty", i + 1));
        }
        if example.is_empty() {
            return Err(format!("{what}, line {}: the text is empty", i + 1));
        }
        let k = match declared.iter().position(|l| l == label) {
            Some(k) => k,
            None if fixed => {
                return Err(format!(
                    "{what}, line {}: label \"{label}\" is not one of the labels ({})",
                    i + 1,
                    declared.join(", ")
                ));
            }
            None => {
                declared.push(label.to_string());
                declared.len() - 1
            }
        };
        rows.push((example.to_string(), k));
    }
    Ok((declared, rows))
}

/// What a task needs before it is adapted: core's check of a support set
/// ([`validate_support`]: at least 2 labels, each with an example), as a sentence for the
/// page.
pub fn check_task(labels: &[String], rows: &[(String, usize)]) -> Result<(), String> {
    let support: Vec<usize> = rows.iter().map(|r| r.1).collect();
    validate_support(&support, labels.len(), Some(labels)).map_err(|e| sentence(&e.to_string()))
}

/// `message` as a sentence: its first letter capitalised, a full stop at the end.
fn sentence(message: &str) -> String {
    let mut chars = message.chars();
    let mut out: String = match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    };
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

/// The most steps the page adapts for.
pub const MAX_STEPS: usize = 1000;

/// The steps box: a whole number from 0 to [`MAX_STEPS`].
pub fn parse_steps(text: &str) -> Result<usize, String> {
    match text.trim().parse() {
        Ok(n) if n <= MAX_STEPS => Ok(n),
        _ => Err(format!("Steps: a whole number from 0 to {MAX_STEPS}.")),
    }
}

/// The choices of the page's "Adapt" menu: (value, what it says).
pub const ADAPT_CHOICES: [(&str, &str); 3] = [
    ("head", "the head only"),
    ("adapters", "adapters + head"),
    ("contrastive", "contrastive, then adapters + head"),
];

/// What the "Adapt" choice `choice` and the steps box `steps` ask for: the mode, the
/// contrastive steps and the cross-entropy steps. `contrastive` spends half of the steps
/// (rounded down) on the supervised contrastive loss over the examples, the rest on the
/// head and adapters as `adapters` does: the same number of steps, at about the same cost.
pub fn adapt_plan(choice: &str, steps: usize) -> Option<(AdaptMode, usize, usize)> {
    match choice {
        "head" => Some((AdaptMode::Head, 0, steps)),
        "adapters" => Some((AdaptMode::Adapters, 0, steps)),
        "contrastive" => Some((AdaptMode::Adapters, steps / 2, steps - steps / 2)),
        _ => None,
    }
}

/// How a task was adapted, as the library lists it.
pub fn mode_name(config: &AdaptConfig) -> String {
    if config.contrastive_steps > 0 {
        format!("contrastive + {}", config.mode.name())
    } else {
        config.mode.name().to_string()
    }
}

/// The task name box, trimmed; `my-task` when empty.
pub fn task_name(text: &str) -> String {
    match text.trim() {
        "" => "my-task".to_string(),
        name => name.to_string(),
    }
}

/// The loss curve's width and height in the page (the SVG's `viewBox`).
pub const CURVE_SIZE: (f32, f32) = (300.0, 80.0);

/// The loss curve as an SVG polyline's `points`: one point per step, scaled to the largest
/// loss; empty under 2 points.
pub fn loss_curve(losses: &[f32]) -> String {
    if losses.len() < 2 {
        return String::new();
    }
    let (width, height) = CURVE_SIZE;
    let max = losses.iter().copied().fold(f32::MIN, f32::max).max(1e-6);
    let n = (losses.len() - 1) as f32;
    losses
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "{:.1},{:.1}",
                i as f32 / n * width,
                height - v / max * (height - 5.0)
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The runners-up of a sentence task, as shown after its best label: the next two labels
/// by probability, those of at least 1%, as `label NN%`.
pub fn runners_up(probabilities: &[(String, f32)]) -> Vec<String> {
    let mut ranked = probabilities.to_vec();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked
        .iter()
        .skip(1)
        .take(2)
        .filter(|(_, v)| *v >= 0.01)
        .map(|(l, v)| format!("{l} {:.0}%", v * 100.0))
        .collect()
}

/// `NAME`'s value in a page address's query (`?a=1&b=2`, as `location.search` gives it).
pub fn query_value(search: &str, name: &str) -> Option<String> {
    search
        .trim_start_matches('?')
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=').map(str::to_string))
}

/// Where the bundle is, from `?bundle=PATH`: `bundle` (beside the page) by default.
pub fn bundle_base(param: Option<String>) -> String {
    param
        .map(|s| s.trim_end_matches('/').to_string())
        .unwrap_or_else(|| "bundle".to_string())
}

/// The most threads the CPU backend's pool takes (`device::threads`): the model's matrix
/// products are small (a few sentences at a time), and each thread is a Web Worker.
// Only the threaded flavour of the wasm starts a pool (`device::threads`).
#[allow(dead_code)]
pub const MAX_THREADS: usize = 8;

/// How many threads the CPU backend's pool starts for `hardware_concurrency` logical CPUs
/// (what the browser says; 0 when it says nothing, then 2): all of them, up to
/// [`MAX_THREADS`].
#[allow(dead_code)]
pub fn pool_size(hardware_concurrency: usize) -> usize {
    match hardware_concurrency {
        0 => 2,
        n => n.min(MAX_THREADS),
    }
}

/// Bytes as a string of the characters U+0000–U+00FF (what `btoa` takes; the page only
/// reads such strings now, `atob`'s, so this is for the tests).
#[cfg(test)]
pub fn to_latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// The inverse of [`to_latin1`]; `None` for a character above U+00FF.
pub fn from_latin1(text: &str) -> Option<Vec<u8>> {
    text.chars().map(|c| u8::try_from(c).ok()).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn pool_takes_every_cpu_up_to_the_cap() {
        assert_eq!(pool_size(0), 2);
        assert_eq!(pool_size(1), 1);
        assert_eq!(pool_size(4), 4);
        assert_eq!(pool_size(64), MAX_THREADS);
    }

    use super::*;

    fn entity(kind: &str, start: usize, end: usize) -> Entity {
        Entity {
            kind: kind.into(),
            text: String::new(),
            start,
            end,
            confidence: 0.9,
        }
    }

    /// The pieces as `(text, entity type)`.
    fn pieces(text: &str, entities: &[Entity]) -> Vec<(String, Option<String>)> {
        highlight(text, entities)
            .into_iter()
            .map(|(s, e)| (s, e.map(|e| e.kind.clone())))
            .collect()
    }

    fn plain(s: &str) -> (String, Option<String>) {
        (s.into(), None)
    }

    fn marked(s: &str, kind: &str) -> (String, Option<String>) {
        (s.into(), Some(kind.into()))
    }

    #[test]
    fn highlight_splits_at_the_entities() {
        let text = "play taylor swift on spotify";
        let got = pieces(text, &[entity("artist", 5, 17), entity("service", 21, 28)]);
        assert_eq!(
            got,
            [
                plain("play "),
                marked("taylor swift", "artist"),
                plain(" on "),
                marked("spotify", "service"),
            ]
        );
        let joined: String = got.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(joined, text);
    }

    #[test]
    fn highlight_without_entities_is_the_text() {
        assert_eq!(pieces("hello there", &[]), [plain("hello there")]);
        assert_eq!(pieces("", &[]), []);
    }

    #[test]
    fn highlight_counts_characters_not_bytes() {
        // "café" is 4 characters, 5 bytes: spans are character offsets.
        let got = pieces(
            "un café à Zürich",
            &[entity("drink", 3, 7), entity("city", 10, 16)],
        );
        assert_eq!(
            got,
            [
                plain("un "),
                marked("café", "drink"),
                plain(" à "),
                marked("Zürich", "city"),
            ]
        );
    }

    #[test]
    fn highlight_entities_at_the_edges() {
        assert_eq!(
            pieces(
                "boston to denver",
                &[entity("from", 0, 6), entity("to", 10, 16)]
            ),
            [
                marked("boston", "from"),
                plain(" to "),
                marked("denver", "to")
            ]
        );
    }

    #[test]
    fn highlight_skips_an_overlapping_entity_and_cuts_spans_to_the_text() {
        assert_eq!(
            pieces("new york city", &[entity("a", 0, 8), entity("b", 4, 13)]),
            [marked("new york", "a"), plain(" city")]
        );
        assert_eq!(
            pieces("paris", &[entity("city", 0, 99)]),
            [marked("paris", "city")]
        );
        assert_eq!(
            pieces("paris", &[entity("late", 50, 60)]),
            [plain("paris"), marked("", "late")]
        );
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parse_examples_takes_labels_in_order_of_first_use() {
        let (labels, rows) = parse_examples(
            "weather: will it rain\n\n  alarm :  wake me up \nweather\tis it sunny: or not",
            "",
            "Examples",
        )
        .unwrap();
        assert_eq!(labels, strings(&["weather", "alarm"]));
        assert_eq!(
            rows,
            [
                ("will it rain".to_string(), 0),
                ("wake me up".to_string(), 1),
                // A tab comes before a colon: the text keeps its colon.
                ("is it sunny: or not".to_string(), 0),
            ]
        );
    }

    #[test]
    fn parse_examples_with_declared_labels() {
        let (labels, rows) = parse_examples("b: two\na: one", " a, b ,, c ", "Examples").unwrap();
        assert_eq!(labels, strings(&["a", "b", "c"]));
        assert_eq!(rows, [("two".to_string(), 1), ("one".to_string(), 0)]);
        assert_eq!(
            parse_examples("a: one\nd: four", "a, b", "Held-out").unwrap_err(),
            "Held-out, line 2: label \"d\" is not one of the labels (a, b)"
        );
    }

    #[test]
    fn parse_examples_says_which_line_is_wrong() {
        let err = |text| parse_examples(text, "", "Examples").unwrap_err();
        assert_eq!(
            err("a: one\njust text"),
            "Examples, line 2: write it as \"label: text\""
        );
        assert_eq!(err(": no label"), "Examples, line 1: the label is empty");
        // The message the browser test waits for.
        assert_eq!(
            err("weather: will it rain\nalarm:   \n"),
            "Examples, line 2: the text is empty"
        );
    }

    #[test]
    fn parse_examples_of_nothing_is_empty() {
        assert_eq!(parse_examples("", "", "Held-out"), Ok((vec![], vec![])));
        assert_eq!(
            parse_examples(" \n\t\n", "", "Held-out"),
            Ok((vec![], vec![]))
        );
    }

    #[test]
    fn check_task_wants_two_labels_each_with_an_example() {
        let rows = |ks: &[usize]| -> Rows { ks.iter().map(|&k| ("x".to_string(), k)).collect() };
        assert_eq!(
            check_task(&strings(&["weather"]), &rows(&[0, 0])).unwrap_err(),
            "A task needs at least 2 labels, found 1 (weather)."
        );
        assert_eq!(
            check_task(&strings(&["weather", "alarm", "music"]), &rows(&[0, 1])).unwrap_err(),
            "Label \"music\" has no example; every label needs at least one."
        );
        assert_eq!(check_task(&strings(&["a", "b"]), &rows(&[1, 0])), Ok(()));
    }

    #[test]
    fn every_adapt_choice_has_a_plan_and_contrastive_splits_the_steps() {
        for (value, _) in ADAPT_CHOICES {
            let (_, c, ce) = adapt_plan(value, 21).unwrap();
            assert_eq!(c + ce, 21, "{value}");
        }
        assert_eq!(adapt_plan("head", 20), Some((AdaptMode::Head, 0, 20)));
        assert_eq!(
            adapt_plan("contrastive", 20),
            Some((AdaptMode::Adapters, 10, 10))
        );
        assert_eq!(
            adapt_plan("contrastive", 1),
            Some((AdaptMode::Adapters, 0, 1))
        );
        assert_eq!(adapt_plan("full", 20), None);
        let config = AdaptConfig {
            contrastive_steps: 10,
            ..AdaptConfig::default()
        };
        assert_eq!(mode_name(&config), "contrastive + adapters");
        assert_eq!(mode_name(&AdaptConfig::default()), "adapters");
    }

    #[test]
    fn steps_from_0_to_1000() {
        assert_eq!(parse_steps(" 20 "), Ok(20));
        assert_eq!(parse_steps("0"), Ok(0));
        assert_eq!(parse_steps("1000"), Ok(1000));
        for bad in ["1001", "-1", "", "2.5", "ten"] {
            assert_eq!(
                parse_steps(bad),
                Err("Steps: a whole number from 0 to 1000.".into()),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn task_name_defaults_to_my_task() {
        assert_eq!(task_name("  travel "), "travel");
        assert_eq!(task_name("   "), "my-task");
    }

    #[test]
    fn loss_curve_spans_the_box() {
        assert_eq!(loss_curve(&[]), "");
        assert_eq!(loss_curve(&[1.0]), "");
        // The largest loss at the top (5 from the edge), 0 at the bottom.
        assert_eq!(
            loss_curve(&[2.0, 1.0, 0.0]),
            "0.0,5.0 150.0,42.5 300.0,80.0"
        );
        // One point per step (the browser test counts them).
        assert_eq!(loss_curve(&[0.5; 10]).split(' ').count(), 10);
        // All-zero losses do not divide by zero.
        assert_eq!(loss_curve(&[0.0, 0.0]), "0.0,80.0 300.0,80.0");
    }

    #[test]
    fn runners_up_are_the_next_two_of_at_least_one_percent() {
        let p = |v: &[(&str, f32)]| -> Vec<(String, f32)> {
            v.iter().map(|(l, x)| (l.to_string(), *x)).collect()
        };
        assert_eq!(
            runners_up(&p(&[("a", 0.1), ("b", 0.6), ("c", 0.25), ("d", 0.05)])),
            strings(&["c 25%", "a 10%"])
        );
        assert_eq!(
            runners_up(&p(&[("a", 0.995), ("b", 0.005)])),
            Vec::<String>::new()
        );
        assert_eq!(runners_up(&p(&[("only", 1.0)])), Vec::<String>::new());
    }

    #[test]
    fn query_values() {
        let search = "?backend=webgpu&bundle=some/where/&log=";
        assert_eq!(query_value(search, "backend").as_deref(), Some("webgpu"));
        assert_eq!(
            query_value(search, "bundle").as_deref(),
            Some("some/where/")
        );
        assert_eq!(query_value(search, "log").as_deref(), Some(""));
        assert_eq!(query_value(search, "back"), None);
        assert_eq!(query_value("", "backend"), None);
        assert_eq!(bundle_base(query_value(search, "bundle")), "some/where");
        assert_eq!(bundle_base(None), "bundle");
    }

    #[test]
    fn latin1_round_trip() {
        let bytes: Vec<u8> = (0..=255).collect();
        let text = to_latin1(&bytes);
        assert_eq!(text.chars().count(), 256);
        assert_eq!(from_latin1(&text), Some(bytes));
        assert_eq!(from_latin1("€"), None);
    }
}
