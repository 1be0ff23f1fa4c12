//! What a task is: a name, a kind (one label per sentence, or one tag per word), its label
//! set and its weight λ in the joint loss. Label sets are built from the training split and
//! saved with the model (`tasks.json`), so that a checkpoint is self-describing.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Sentence classification (intent, sentiment, topic) or token classification (entities,
/// slots; one tag per word, IOB2/BIO).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Sentence,
    Token,
}

impl std::fmt::Display for TaskKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TaskKind::Sentence => "sentence",
            TaskKind::Token => "token",
        })
    }
}

/// One task on the shared encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub name: String,
    pub kind: TaskKind,
    /// Label `i` is the class of logit `i`.
    pub labels: Vec<String>,
    /// λ_t in `L = (1/N) Σ λ_t ℓ_t`.
    #[serde(default = "one")]
    pub weight: f32,
    /// The label meaning "none of the above" (CLINC150's `oos`), if the task has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_of_scope: Option<String>,
    /// With `out_of_scope`: a text whose best class has probability below this is
    /// predicted out of scope (`core-train train` fits it on dev; none: the best class).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_of_scope_threshold: Option<f32>,
}

fn one() -> f32 {
    1.0
}

impl TaskSpec {
    pub fn num_labels(&self) -> usize {
        self.labels.len()
    }

    /// The index of `label`.
    pub fn label_id(&self, label: &str) -> Option<usize> {
        self.labels.iter().position(|l| l == label)
    }

    /// A map from label to index, for converting many examples.
    pub fn label_index(&self) -> BTreeMap<&str, usize> {
        self.labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.as_str(), i))
            .collect()
    }
}

/// Builds a label set from the labels seen in training data: sorted, with `O` first for tag
/// sets (so the tag set does not depend on example order).
pub fn label_set<'a>(labels: impl IntoIterator<Item = &'a str>, kind: TaskKind) -> Vec<String> {
    let set: BTreeSet<&str> = labels.into_iter().collect();
    let mut out: Vec<String> = Vec::with_capacity(set.len());
    if kind == TaskKind::Token && set.contains("O") {
        out.push("O".into());
    }
    out.extend(
        set.into_iter()
            .filter(|l| !(kind == TaskKind::Token && *l == "O"))
            .map(String::from),
    );
    out
}

/// Checks a set of tasks: unique non-empty names, at least two labels each, unique labels.
pub fn validate_tasks(tasks: &[TaskSpec]) -> Result<()> {
    let mut names = BTreeSet::new();
    for t in tasks {
        if t.name.trim().is_empty() {
            return Err(Error::Input("a task has an empty name".into()));
        }
        if !names.insert(t.name.as_str()) {
            return Err(Error::Input(format!(
                "task name {:?} is used twice",
                t.name
            )));
        }
        if t.labels.len() < 2 {
            return Err(Error::Input(format!(
                "task {:?} has {} label(s) {:?}; a classifier needs at least 2",
                t.name,
                t.labels.len(),
                t.labels
            )));
        }
        let unique: BTreeSet<&String> = t.labels.iter().collect();
        if unique.len() != t.labels.len() {
            return Err(Error::Input(format!(
                "task {:?} lists a label twice",
                t.name
            )));
        }
        if !(t.weight.is_finite() && t.weight >= 0.0) {
            return Err(Error::Input(format!(
                "task {:?}: weight must be a finite number ≥ 0, got {}",
                t.name, t.weight
            )));
        }
        if let Some(oos) = &t.out_of_scope
            && t.label_id(oos).is_none()
        {
            return Err(Error::Input(format!(
                "task {:?}: out-of-scope label {oos:?} is not among its labels",
                t.name
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_sets_put_o_first_and_sort_the_rest() {
        let tags = ["B-PER", "O", "I-PER", "B-LOC", "O"];
        assert_eq!(
            label_set(tags, TaskKind::Token),
            ["O", "B-LOC", "B-PER", "I-PER"]
        );
        assert_eq!(label_set(["b", "a", "b"], TaskKind::Sentence), ["a", "b"]);
    }

    #[test]
    fn validation_names_the_problem() {
        let t = |name: &str, labels: &[&str]| TaskSpec {
            name: name.into(),
            kind: TaskKind::Sentence,
            labels: labels.iter().map(|s| s.to_string()).collect(),
            weight: 1.0,
            out_of_scope: None,
            out_of_scope_threshold: None,
        };
        assert!(validate_tasks(&[t("a", &["x", "y"]), t("b", &["x", "y"])]).is_ok());
        let e = validate_tasks(&[t("a", &["x", "y"]), t("a", &["x", "y"])]).unwrap_err();
        assert!(e.to_string().contains("used twice"), "{e}");
        let e = validate_tasks(&[t("a", &["x"])]).unwrap_err();
        assert!(e.to_string().contains("at least 2"), "{e}");
        let mut bad = t("c", &["x", "y"]);
        bad.out_of_scope = Some("oos".into());
        let e = validate_tasks(&[bad]).unwrap_err();
        assert!(e.to_string().contains("\"oos\""), "{e}");
    }

    #[test]
    fn spec_round_trips_through_json() {
        let spec = TaskSpec {
            name: "ner".into(),
            kind: TaskKind::Token,
            labels: vec!["O".into(), "B-PER".into()],
            weight: 0.5,
            out_of_scope: None,
            out_of_scope_threshold: None,
        };
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<TaskSpec>(&json).unwrap(), spec);
    }
}
