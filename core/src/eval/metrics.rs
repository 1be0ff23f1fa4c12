//! Evaluation metrics computed the way NLP papers report them.
//!
//! - **Sentence classification** ([`classification_report`]): accuracy, per-class
//!   precision/recall/F1/support and macro F1, as scikit-learn's `classification_report`
//!   with its default label set (the classes that occur in the gold labels or in the
//!   predictions).
//! - **Entity-level tagging** ([`extract_entities`], [`entity_report`]): the semantics of
//!   `seqeval` in its default (non-strict) mode. Entities are read off IOB2 / IOBES tags
//!   with seqeval's `get_entities` rules; a predicted entity counts as correct only when
//!   its type, start and end all equal a gold entity's. Precision, recall and F1 are micro
//!   averages over all entities, with per-type scores beside them.
//! - **Out-of-scope detection** ([`oos_report`]): the CLINC150 metrics of Larson et al.
//!   (2019): in-scope accuracy and out-of-scope recall (plus out-of-scope precision).
//! - **Spread over runs** ([`mean_ci95`]): mean and the half-width of a normal 95%
//!   confidence interval, e.g. over few-shot episodes.
//!
//! Every ratio whose denominator is zero is 0, as scikit-learn and seqeval report it
//! (after their warning). All functions are pure; lengths that must agree are checked
//! with `assert!`, since a mismatch is a programming error, not bad input.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// `num / den`, or 0 when `den` is 0.
fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

/// Harmonic mean of precision and recall, or 0 when both are 0.
fn f1_score(precision: f64, recall: f64) -> f64 {
    if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    }
}

/// Precision, recall and F1 from counts of true positives, predictions and gold items.
fn prf(correct: usize, n_pred: usize, n_gold: usize) -> (f64, f64, f64) {
    let precision = ratio(correct, n_pred);
    let recall = ratio(correct, n_gold);
    (precision, recall, f1_score(precision, recall))
}

// ---------------------------------------------------------------------------------------
// Sentence classification
// ---------------------------------------------------------------------------------------

/// Scores of one class in a [`ClassificationReport`].
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ClassScore {
    /// The class name (its index as text when `labels` has no entry for it).
    pub label: String,
    /// Correct predictions of this class / predictions of this class.
    pub precision: f64,
    /// Correct predictions of this class / gold examples of this class.
    pub recall: f64,
    /// Harmonic mean of `precision` and `recall`.
    pub f1: f64,
    /// Number of gold examples of this class.
    pub support: usize,
}

/// Accuracy, macro F1 and per-class scores of a sentence classifier.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ClassificationReport {
    /// Fraction of examples whose prediction equals the gold label.
    pub accuracy: f64,
    /// Unweighted mean of the F1 of the classes in `per_class`.
    pub macro_f1: f64,
    /// One entry per class that occurs in the gold labels or in the predictions,
    /// ordered by class index.
    pub per_class: Vec<ClassScore>,
}

/// Accuracy, per-class precision/recall/F1 and macro F1.
///
/// `gold[i]` and `pred[i]` are class indices of example `i`; `labels[c]` names class `c`
/// (an index without a name is shown as its number). The classes scored, and averaged
/// in `macro_f1`, are those that occur in `gold` **or** `pred`, which is
/// scikit-learn's default (`labels=None`): a class never seen in either does not pull
/// the macro average down, while a class that is predicted but never gold (F1 0) does.
///
/// # Panics
/// If `gold` and `pred` differ in length.
pub fn classification_report(
    gold: &[usize],
    pred: &[usize],
    labels: &[String],
) -> ClassificationReport {
    assert_eq!(
        gold.len(),
        pred.len(),
        "classification_report: gold has {} labels but pred has {}",
        gold.len(),
        pred.len()
    );
    // class -> (correct, predicted, gold)
    let mut counts: BTreeMap<usize, (usize, usize, usize)> = BTreeMap::new();
    let mut n_correct = 0;
    for (&g, &p) in gold.iter().zip(pred) {
        counts.entry(g).or_default().2 += 1;
        counts.entry(p).or_default().1 += 1;
        if g == p {
            counts.entry(g).or_default().0 += 1;
            n_correct += 1;
        }
    }
    let per_class: Vec<ClassScore> = counts
        .into_iter()
        .map(|(class, (correct, n_pred, n_gold))| {
            let (precision, recall, f1) = prf(correct, n_pred, n_gold);
            ClassScore {
                label: labels
                    .get(class)
                    .cloned()
                    .unwrap_or_else(|| class.to_string()),
                precision,
                recall,
                f1,
                support: n_gold,
            }
        })
        .collect();
    let macro_f1 = if per_class.is_empty() {
        0.0
    } else {
        per_class.iter().map(|c| c.f1).sum::<f64>() / per_class.len() as f64
    };
    ClassificationReport {
        accuracy: ratio(n_correct, gold.len()),
        macro_f1,
        per_class,
    }
}

// ---------------------------------------------------------------------------------------
// Entity-level evaluation (seqeval, default mode)
// ---------------------------------------------------------------------------------------

/// A labelled span of tokens.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entity {
    /// The entity type, e.g. `PER` for `B-PER`.
    pub kind: String,
    /// Index of the first token.
    pub start: usize,
    /// Index one past the last token.
    pub end: usize,
}

/// Splits a tag as seqeval does: the prefix is the first character; the type is the rest
/// after its first `-` (or the whole rest when there is no `-`), `_` when empty.
/// The empty tag, on which seqeval fails, is read as `O`.
fn split_tag(tag: &str) -> (char, &str) {
    let mut chars = tag.chars();
    let Some(prefix) = chars.next() else {
        return ('O', "_");
    };
    let rest = chars.as_str();
    let kind = rest.split_once('-').map_or(rest, |(_, after)| after);
    (prefix, if kind.is_empty() { "_" } else { kind })
}

/// seqeval's `end_of_chunk`: whether the entity open before this tag ends before it.
fn end_of_chunk(prev_tag: char, tag: char, prev_kind: &str, kind: &str) -> bool {
    matches!(prev_tag, 'E' | 'S')
        || (matches!(prev_tag, 'B' | 'I') && matches!(tag, 'B' | 'S' | 'O'))
        || (prev_tag != 'O' && prev_tag != '.' && prev_kind != kind)
}

/// seqeval's `start_of_chunk`: whether an entity starts at this tag.
fn start_of_chunk(prev_tag: char, tag: char, prev_kind: &str, kind: &str) -> bool {
    matches!(tag, 'B' | 'S')
        || (matches!(prev_tag, 'E' | 'S' | 'O') && matches!(tag, 'E' | 'I'))
        || (tag != 'O' && tag != '.' && prev_kind != kind)
}

/// The entities of one tag sequence, following seqeval's `get_entities` (prefix tags,
/// IOB1/IOB2/IOBES all read the same way).
///
/// An entity starts at `B-X` or `S-X`; at `I-X` or `E-X` after `O`, `E-` or `S-`
/// (so an `I-` without a `B-` opens an entity); and at any tag other than `O` whose type
/// differs from the previous tag's. It ends before `B-`, `S-` or `O` that follows
/// `B-`/`I-`, after every `E-` and `S-`, and before a change of type. Tags are split as
/// seqeval splits them: the first character is the prefix and the type is what follows
/// the first `-` after it, so a tag without a prefix such as `PER` is read as prefix
/// `P`, type `ER` (seqeval warns about such tags; they should not be used). A bare `B` or
/// `I` has type `_`. Entities are returned in order of their end.
pub fn extract_entities<S: AsRef<str>>(tags: &[S]) -> Vec<Entity> {
    let mut entities = Vec::new();
    let mut prev_tag = 'O';
    let mut prev_kind = "";
    let mut begin = 0;
    // A trailing `O` closes an entity still open at the end.
    let padded = tags.iter().map(|t| t.as_ref()).chain(std::iter::once("O"));
    for (i, raw) in padded.enumerate() {
        let (tag, kind) = split_tag(raw);
        if end_of_chunk(prev_tag, tag, prev_kind, kind) {
            entities.push(Entity {
                kind: prev_kind.to_string(),
                start: begin,
                end: i,
            });
        }
        if start_of_chunk(prev_tag, tag, prev_kind, kind) {
            begin = i;
        }
        prev_tag = tag;
        prev_kind = kind;
    }
    entities
}

/// Scores of one entity type in an [`EntityReport`].
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TypeScore {
    /// The entity type.
    pub kind: String,
    /// Correct predicted entities of this type / predicted entities of this type.
    pub precision: f64,
    /// Correct predicted entities of this type / gold entities of this type.
    pub recall: f64,
    /// Harmonic mean of `precision` and `recall`.
    pub f1: f64,
    /// Number of gold entities of this type.
    pub support: usize,
}

/// Entity-level scores of a tagger, as seqeval's default `classification_report`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct EntityReport {
    /// Micro precision: `n_correct / n_pred`.
    pub precision: f64,
    /// Micro recall: `n_correct / n_gold`.
    pub recall: f64,
    /// Micro F1: harmonic mean of `precision` and `recall`.
    pub f1: f64,
    /// One entry per type found in gold or predicted entities, sorted by type name.
    pub per_type: Vec<TypeScore>,
    /// Number of gold entities.
    pub n_gold: usize,
    /// Number of predicted entities.
    pub n_pred: usize,
    /// Number of predicted entities that equal a gold entity in type, start and end.
    pub n_correct: usize,
}

/// Entity-level micro precision/recall/F1 and per-type scores over sentences of tags.
///
/// As seqeval does for a list of sentences, the sentences are joined with an `O` after
/// each and entities are read from the whole ([`extract_entities`]), so for well-formed
/// tags no entity spans two sentences and `I-X` at the start of a sentence opens a new
/// entity. A prediction is correct only on an exact match of type, start and end; a
/// right type with a wrong boundary counts as one false positive and one false negative.
///
/// # Panics
/// If `gold` and `pred` hold different numbers of sentences, or a sentence's gold and
/// predicted tag sequences differ in length.
pub fn entity_report(gold: &[Vec<String>], pred: &[Vec<String>]) -> EntityReport {
    assert_eq!(
        gold.len(),
        pred.len(),
        "entity_report: gold has {} sentences but pred has {}",
        gold.len(),
        pred.len()
    );
    for (i, (g, p)) in gold.iter().zip(pred).enumerate() {
        assert_eq!(
            g.len(),
            p.len(),
            "entity_report: sentence {i} has {} gold tags but {} predicted tags",
            g.len(),
            p.len()
        );
    }
    let by_type = |sentences: &[Vec<String>]| {
        let joined: Vec<&str> = sentences
            .iter()
            .flat_map(|s| s.iter().map(String::as_str).chain(std::iter::once("O")))
            .collect();
        let mut map: BTreeMap<String, BTreeSet<(usize, usize)>> = BTreeMap::new();
        for e in extract_entities(&joined) {
            map.entry(e.kind).or_default().insert((e.start, e.end));
        }
        map
    };
    let gold_by_type = by_type(gold);
    let pred_by_type = by_type(pred);
    let empty = BTreeSet::new();
    let kinds: BTreeSet<&String> = gold_by_type.keys().chain(pred_by_type.keys()).collect();

    let (mut n_gold, mut n_pred, mut n_correct) = (0, 0, 0);
    let per_type = kinds
        .into_iter()
        .map(|kind| {
            let g = gold_by_type.get(kind).unwrap_or(&empty);
            let p = pred_by_type.get(kind).unwrap_or(&empty);
            let correct = g.intersection(p).count();
            n_gold += g.len();
            n_pred += p.len();
            n_correct += correct;
            let (precision, recall, f1) = prf(correct, p.len(), g.len());
            TypeScore {
                kind: kind.clone(),
                precision,
                recall,
                f1,
                support: g.len(),
            }
        })
        .collect();
    let (precision, recall, f1) = prf(n_correct, n_pred, n_gold);
    EntityReport {
        precision,
        recall,
        f1,
        per_type,
        n_gold,
        n_pred,
        n_correct,
    }
}

// ---------------------------------------------------------------------------------------
// Out-of-scope detection (CLINC150)
// ---------------------------------------------------------------------------------------

/// CLINC150 out-of-scope metrics.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct OosReport {
    /// Accuracy over the examples whose gold label is not out-of-scope (predicting
    /// out-of-scope for them counts as wrong).
    pub in_scope_accuracy: f64,
    /// Fraction of gold out-of-scope examples predicted out-of-scope.
    pub oos_recall: f64,
    /// Fraction of out-of-scope predictions whose gold label is out-of-scope.
    pub oos_precision: f64,
    /// Number of examples whose gold label is in scope.
    pub n_in_scope: usize,
    /// Number of examples whose gold label is out-of-scope.
    pub n_oos: usize,
}

/// In-scope accuracy and out-of-scope recall/precision, as reported for CLINC150
/// (Larson et al., 2019). `oos_label` is the class index of "out of scope".
///
/// # Panics
/// If `gold` and `pred` differ in length.
pub fn oos_report(gold: &[usize], pred: &[usize], oos_label: usize) -> OosReport {
    assert_eq!(
        gold.len(),
        pred.len(),
        "oos_report: gold has {} labels but pred has {}",
        gold.len(),
        pred.len()
    );
    let (mut n_in_scope, mut in_scope_correct) = (0, 0);
    let (mut n_oos, mut n_pred_oos, mut oos_correct) = (0, 0, 0);
    for (&g, &p) in gold.iter().zip(pred) {
        if p == oos_label {
            n_pred_oos += 1;
        }
        if g == oos_label {
            n_oos += 1;
            if p == oos_label {
                oos_correct += 1;
            }
        } else {
            n_in_scope += 1;
            if p == g {
                in_scope_correct += 1;
            }
        }
    }
    OosReport {
        in_scope_accuracy: ratio(in_scope_correct, n_in_scope),
        oos_recall: ratio(oos_correct, n_oos),
        oos_precision: ratio(oos_correct, n_pred_oos),
        n_in_scope,
        n_oos,
    }
}

/// Predictions with a confidence threshold for out-of-scope detection: a query whose best
/// class has probability below `threshold` is predicted `oos_label` (Larson et al., 2019,
/// thresholded baselines). `threshold = 0` keeps the argmax.
pub fn apply_oos_threshold(pred: &[(usize, f32)], oos_label: usize, threshold: f32) -> Vec<usize> {
    pred.iter()
        .map(|&(label, p)| if p < threshold { oos_label } else { label })
        .collect()
}

/// The out-of-scope threshold that maximises accuracy over all of `gold` (in-scope queries
/// right, out-of-scope queries flagged), for [`apply_oos_threshold`]; fit it on dev, apply
/// it to test. Returns the threshold: midway between the last confidence flagged and the
/// next one; 0 when flagging never helps. Of equally good thresholds the lowest wins.
///
/// # Panics
/// If `gold` and `pred` differ in length.
pub fn fit_oos_threshold(gold: &[usize], pred: &[(usize, f32)], oos_label: usize) -> f32 {
    assert_eq!(gold.len(), pred.len(), "fit_oos_threshold: lengths differ");
    let mut order: Vec<usize> = (0..pred.len()).collect();
    order.sort_by(|&a, &b| pred[a].1.total_cmp(&pred[b].1));
    // Flagging query i changes the number right by `after - before`.
    let gain = |i: usize| -> i64 {
        let before = pred[i].0 == gold[i];
        let after = gold[i] == oos_label;
        after as i64 - before as i64
    };
    let (mut best, mut best_k, mut sum, mut k) = (0i64, 0usize, 0i64, 0usize);
    while k < order.len() {
        // Queries of equal confidence are flagged together.
        let c = pred[order[k]].1;
        while k < order.len() && pred[order[k]].1 == c {
            sum += gain(order[k]);
            k += 1;
        }
        if sum > best {
            (best, best_k) = (sum, k);
        }
    }
    match best_k {
        0 => 0.0,
        k if k == order.len() => f32::MAX,
        k => 0.5 * (pred[order[k - 1]].1 + pred[order[k]].1),
    }
}

// ---------------------------------------------------------------------------------------
// Spread over runs
// ---------------------------------------------------------------------------------------

/// The share of predictions equal to the gold labels (0 for none).
pub fn accuracy(pred: &[usize], gold: &[usize]) -> f64 {
    debug_assert_eq!(pred.len(), gold.len());
    let correct = pred.iter().zip(gold).filter(|(p, g)| p == g).count();
    correct as f64 / gold.len().max(1) as f64
}

/// Mean and 95% confidence half-width `1.96 · s / √n`, where `s` is the sample standard
/// deviation (divisor `n − 1`). Returns `(mean, 0.0)` for a single value and `(0.0, 0.0)`
/// for none.
pub fn mean_ci95(values: &[f64]) -> (f64, f64) {
    let n = values.len();
    if n == 0 {
        return (0.0, 0.0);
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, 1.96 * var.sqrt() / (n as f64).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact-fraction comparisons.
    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    /// Comparisons against values rounded to four decimals.
    fn close4(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-4, "{a} != {b} (to 4 decimals)");
    }

    fn names(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    fn ent(kind: &str, start: usize, end: usize) -> Entity {
        Entity {
            kind: kind.to_string(),
            start,
            end,
        }
    }

    // --- classification ---

    #[test]
    fn classification_perfect() {
        let labels = names(&["a", "b", "c"]);
        let r = classification_report(&[0, 1, 2, 1], &[0, 1, 2, 1], &labels);
        close(r.accuracy, 1.0);
        close(r.macro_f1, 1.0);
        assert_eq!(r.per_class.len(), 3);
        for c in &r.per_class {
            close(c.precision, 1.0);
            close(c.recall, 1.0);
            close(c.f1, 1.0);
        }
        // supports: a 1, b 2, c 1
        let support: Vec<usize> = r.per_class.iter().map(|c| c.support).collect();
        assert_eq!(support, [1, 2, 1]);
    }

    #[test]
    fn classification_partly_wrong_with_unpredicted_class() {
        // pairs (gold, pred): (0,0) (0,0) (0,1) (1,1) (2,0) (2,0); "d" never occurs.
        let labels = names(&["a", "b", "c", "d"]);
        let r = classification_report(&[0, 0, 0, 1, 2, 2], &[0, 0, 1, 1, 0, 0], &labels);
        // correct: positions 0, 1, 3 -> 3/6
        close(r.accuracy, 0.5);
        // "d" occurs in neither gold nor pred, so it is not scored.
        let got: Vec<&str> = r.per_class.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(got, ["a", "b", "c"]);
        let [a, b, c] = &r.per_class[..] else {
            unreachable!()
        };
        // a: predicted 4 times (0,1,4,5), 2 correct -> P 2/4; gold 3 -> R 2/3;
        //    F1 = 2*(1/2)*(2/3)/(1/2+2/3) = (2/3)/(7/6) = 4/7
        close(a.precision, 0.5);
        close(a.recall, 2.0 / 3.0);
        close(a.f1, 4.0 / 7.0);
        assert_eq!(a.support, 3);
        // b: predicted 2 times (2,3), 1 correct -> P 1/2; gold 1 -> R 1; F1 = 1/(3/2) = 2/3
        close(b.precision, 0.5);
        close(b.recall, 1.0);
        close(b.f1, 2.0 / 3.0);
        assert_eq!(b.support, 1);
        // c: never predicted -> P 0 (0/0), R 0/2 = 0, F1 0
        close(c.precision, 0.0);
        close(c.recall, 0.0);
        close(c.f1, 0.0);
        assert_eq!(c.support, 2);
        // macro = (4/7 + 2/3 + 0)/3 = (26/21)/3 = 26/63 ≈ 0.4127, unlike accuracy 0.5
        close(r.macro_f1, 26.0 / 63.0);
        close4(r.macro_f1, 0.4127);
    }

    #[test]
    fn classification_class_only_predicted_counts_in_macro() {
        // gold [a, a], pred [a, b]:
        // a: P 1/1, R 1/2, F1 2/3; b: P 0/1, R 0/0 = 0, F1 0 -> macro (2/3 + 0)/2 = 1/3
        let labels = names(&["a", "b"]);
        let r = classification_report(&[0, 0], &[0, 1], &labels);
        close(r.accuracy, 0.5);
        assert_eq!(r.per_class.len(), 2);
        close(r.per_class[0].f1, 2.0 / 3.0);
        assert_eq!(r.per_class[1].support, 0);
        close(r.macro_f1, 1.0 / 3.0);
    }

    #[test]
    fn classification_unnamed_class_and_empty_input() {
        // class 5 has no name: shown as "5".
        let r = classification_report(&[5], &[5], &names(&["a"]));
        assert_eq!(r.per_class[0].label, "5");
        let r = classification_report(&[], &[], &[]);
        close(r.accuracy, 0.0);
        close(r.macro_f1, 0.0);
        assert!(r.per_class.is_empty());
    }

    #[test]
    #[should_panic(expected = "gold has 2 labels but pred has 1")]
    fn classification_length_mismatch_panics() {
        classification_report(&[0, 1], &[0], &[]);
    }

    // --- entity extraction (seqeval get_entities) ---

    #[test]
    fn entities_bio() {
        let e = extract_entities(&["B-PER", "I-PER", "O", "B-LOC"]);
        assert_eq!(e, [ent("PER", 0, 2), ent("LOC", 3, 4)]);
    }

    #[test]
    fn entities_i_without_b_starts_entity() {
        let e = extract_entities(&["I-PER", "I-PER", "O"]);
        assert_eq!(e, [ent("PER", 0, 2)]);
    }

    #[test]
    fn entities_type_change_splits() {
        let e = extract_entities(&["B-PER", "I-LOC"]);
        assert_eq!(e, [ent("PER", 0, 1), ent("LOC", 1, 2)]);
    }

    #[test]
    fn entities_b_after_i_of_same_type_splits() {
        let e = extract_entities(&["O", "I-MISC", "B-MISC"]);
        assert_eq!(e, [ent("MISC", 1, 2), ent("MISC", 2, 3)]);
    }

    #[test]
    fn entities_iobes() {
        // S- is a one-token entity; E- closes; I- after E- opens a new entity.
        let e = extract_entities(&["S-PER", "B-LOC", "E-LOC", "I-LOC", "O"]);
        assert_eq!(e, [ent("PER", 0, 1), ent("LOC", 1, 3), ent("LOC", 3, 4)]);
    }

    #[test]
    fn entities_string_tags_and_bare_prefix() {
        // A bare "B" has type "_"; works on &[String] too.
        let tags = names(&["B", "I", "O", "B-ORG"]);
        assert_eq!(extract_entities(&tags), [ent("_", 0, 2), ent("ORG", 3, 4)]);
        assert!(extract_entities::<&str>(&[]).is_empty());
        assert!(extract_entities(&["O", "O"]).is_empty());
    }

    // --- entity report ---

    fn sents(xs: &[&[&str]]) -> Vec<Vec<String>> {
        xs.iter().map(|s| names(s)).collect()
    }

    #[test]
    fn entity_report_perfect() {
        let g = sents(&[&["B-PER", "I-PER", "O"], &["B-LOC"]]);
        let r = entity_report(&g, &g);
        assert_eq!((r.n_gold, r.n_pred, r.n_correct), (2, 2, 2));
        close(r.precision, 1.0);
        close(r.recall, 1.0);
        close(r.f1, 1.0);
    }

    #[test]
    fn entity_report_wrong_boundary_is_wrong() {
        // gold PER[0,2), pred PER[0,1): right type, wrong end -> 0 correct.
        let g = sents(&[&["B-PER", "I-PER", "O"]]);
        let p = sents(&[&["B-PER", "O", "O"]]);
        let r = entity_report(&g, &p);
        assert_eq!((r.n_gold, r.n_pred, r.n_correct), (1, 1, 0));
        close(r.precision, 0.0);
        close(r.recall, 0.0);
        close(r.f1, 0.0);
        assert_eq!(r.per_type.len(), 1);
        assert_eq!(r.per_type[0].support, 1);
    }

    #[test]
    fn entity_report_micro_and_per_type() {
        // Sentence 1: gold PER[0,2) LOC[3,4); pred PER[0,2) (correct) ORG[3,4) (wrong).
        // Sentence 2: gold LOC[1,3);          pred PER[0,1) (wrong)   LOC[1,3) (correct).
        let g = sents(&[
            &["B-PER", "I-PER", "O", "B-LOC"],
            &["O", "B-LOC", "I-LOC", "O"],
        ]);
        let p = sents(&[
            &["B-PER", "I-PER", "O", "B-ORG"],
            &["B-PER", "B-LOC", "I-LOC", "O"],
        ]);
        let r = entity_report(&g, &p);
        // gold 3, pred 4, correct 2
        assert_eq!((r.n_gold, r.n_pred, r.n_correct), (3, 4, 2));
        // P = 2/4 = 0.5; R = 2/3 ≈ 0.6667; F1 = 2*0.5*(2/3)/(0.5+2/3) = (2/3)/(7/6) = 4/7 ≈ 0.5714
        close(r.precision, 0.5);
        close(r.recall, 2.0 / 3.0);
        close(r.f1, 4.0 / 7.0);
        close4(r.f1, 0.5714);

        let kinds: Vec<&str> = r.per_type.iter().map(|t| t.kind.as_str()).collect();
        assert_eq!(kinds, ["LOC", "ORG", "PER"]);
        let [loc, org, per] = &r.per_type[..] else {
            unreachable!()
        };
        // LOC: gold 2, pred 1, correct 1 -> P 1, R 1/2, F1 = 1/(3/2) = 2/3
        assert_eq!(loc.support, 2);
        close(loc.precision, 1.0);
        close(loc.recall, 0.5);
        close(loc.f1, 2.0 / 3.0);
        // ORG: gold 0, pred 1, correct 0 -> all 0
        assert_eq!(org.support, 0);
        close(org.precision, 0.0);
        close(org.recall, 0.0);
        close(org.f1, 0.0);
        // PER: gold 1, pred 2, correct 1 -> P 1/2, R 1, F1 2/3
        assert_eq!(per.support, 1);
        close(per.precision, 0.5);
        close(per.recall, 1.0);
        close(per.f1, 2.0 / 3.0);
    }

    #[test]
    fn entity_report_sentences_do_not_merge() {
        // "I-PER" opening sentence 2 starts a new entity: 2 gold entities, not one
        // spanning both sentences; pred matches them exactly.
        let g = sents(&[&["B-PER"], &["I-PER"]]);
        let p = sents(&[&["B-PER"], &["B-PER"]]);
        let r = entity_report(&g, &p);
        assert_eq!((r.n_gold, r.n_pred, r.n_correct), (2, 2, 2));
    }

    #[test]
    fn entity_report_empty() {
        let r = entity_report(&[], &[]);
        assert_eq!((r.n_gold, r.n_pred, r.n_correct), (0, 0, 0));
        close(r.f1, 0.0);
        assert!(r.per_type.is_empty());
    }

    #[test]
    #[should_panic(expected = "sentence 1 has 2 gold tags but 1 predicted tags")]
    fn entity_report_length_mismatch_panics() {
        let g = sents(&[&["O"], &["O", "O"]]);
        let p = sents(&[&["O"], &["O"]]);
        entity_report(&g, &p);
    }

    // --- out-of-scope ---

    #[test]
    fn oos_metrics() {
        // oos = 2; pairs (gold, pred): (0,0) (1,2) (2,2) (2,0) (2,2) (0,2)
        let r = oos_report(&[0, 1, 2, 2, 2, 0], &[0, 2, 2, 0, 2, 2], 2);
        // in scope: positions 0, 1, 5 -> 3, of which only 0 is right -> 1/3
        assert_eq!(r.n_in_scope, 3);
        close(r.in_scope_accuracy, 1.0 / 3.0);
        // gold oos: positions 2, 3, 4 -> 3, predicted oos at 2 and 4 -> recall 2/3
        assert_eq!(r.n_oos, 3);
        close(r.oos_recall, 2.0 / 3.0);
        // predicted oos: positions 1, 2, 4, 5 -> 4, of which 2 are gold oos -> 1/2
        close(r.oos_precision, 0.5);
    }

    #[test]
    fn oos_threshold_flags_the_low_confidence_queries_that_pay() {
        // oos = 2. Sorted by confidence: q2 (0.30, gold oos, predicted 0: flagging gains 1),
        // q1 (0.40, right: flagging loses 1), q4 (0.50, gold oos, predicted 1: gains 1),
        // q0 (0.90, right), q3 (0.95, right). Best: flag q2 alone (+1), or q2, q1, q4 (+1):
        // the lower threshold wins, midway between 0.30 and 0.40.
        let gold = [0, 1, 2, 0, 2];
        let pred = [(0, 0.9), (1, 0.4), (0, 0.3), (0, 0.95), (1, 0.5)];
        let t = fit_oos_threshold(&gold, &pred, 2);
        assert!((t - 0.35).abs() < 1e-6, "{t}");
        assert_eq!(apply_oos_threshold(&pred, 2, t), vec![0, 1, 2, 0, 1]);
        let r = oos_report(&gold, &apply_oos_threshold(&pred, 2, t), 2);
        close(r.in_scope_accuracy, 1.0);
        close(r.oos_recall, 0.5);
        close(r.oos_precision, 1.0);
        // One more out-of-scope query at 0.45 makes flagging up to 0.5 worth +2.
        let gold = [0, 1, 2, 0, 2, 2];
        let pred = [(0, 0.9), (1, 0.4), (0, 0.3), (0, 0.95), (1, 0.5), (0, 0.45)];
        let t = fit_oos_threshold(&gold, &pred, 2);
        assert!((t - 0.7).abs() < 1e-6, "{t}");
        let r = oos_report(&gold, &apply_oos_threshold(&pred, 2, t), 2);
        close(r.oos_recall, 1.0);
        close(r.in_scope_accuracy, 2.0 / 3.0);
    }

    #[test]
    fn oos_threshold_is_zero_when_flagging_never_helps() {
        // Every query right, ties included: flagging only loses.
        let gold = [0, 2, 1];
        let pred = [(0, 0.5), (2, 0.5), (1, 0.9)];
        let t = fit_oos_threshold(&gold, &pred, 2);
        assert_eq!(t, 0.0);
        assert_eq!(apply_oos_threshold(&pred, 2, t), vec![0, 2, 1]);
        let r = oos_report(&gold, &apply_oos_threshold(&pred, 2, t), 2);
        close(r.in_scope_accuracy, 1.0);
        close(r.oos_recall, 1.0);
        // Equal confidences move together: flagging both 0.5s gains 1 - 1 = 0, so no flag.
        let gold = [2, 0, 1];
        let pred = [(0, 0.5), (0, 0.5), (1, 0.9)];
        assert_eq!(fit_oos_threshold(&gold, &pred, 2), 0.0);
    }

    #[test]
    fn oos_no_oos_examples() {
        // no gold or predicted oos: recall and precision are 0 (0/0), accuracy 1/2
        let r = oos_report(&[0, 1], &[0, 0], 9);
        assert_eq!((r.n_in_scope, r.n_oos), (2, 0));
        close(r.in_scope_accuracy, 0.5);
        close(r.oos_recall, 0.0);
        close(r.oos_precision, 0.0);
    }

    // --- confidence interval ---

    #[test]
    fn ci95_four_values() {
        // mean 2.5; squared deviations 2.25+0.25+0.25+2.25 = 5; s = sqrt(5/3) ≈ 1.2910;
        // half-width = 1.96 * 1.2910 / sqrt(4) ≈ 1.2652
        let (mean, half) = mean_ci95(&[1.0, 2.0, 3.0, 4.0]);
        close(mean, 2.5);
        close(half, 1.96 * (5.0f64 / 3.0).sqrt() / 2.0);
        close4(half, 1.2652);
    }

    #[test]
    fn ci95_small_inputs() {
        assert_eq!(mean_ci95(&[0.7]), (0.7, 0.0));
        assert_eq!(mean_ci95(&[]), (0.0, 0.0));
    }

    #[test]
    fn report_serializes_to_json() {
        let r = oos_report(&[0, 1], &[0, 1], 1);
        let json = serde_json::to_string(&r).unwrap();
        let back: OosReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }
}
