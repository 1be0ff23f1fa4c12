//! Few-shot episodes: N-way K-shot tasks drawn from a labelled sentence dataset, over
//! classes split into meta-train / meta-val / meta-test sets that never overlap.
//!
//! An episode picks `n_way` classes of one split, then `k_shot` support and `q_query` query
//! examples of each, all distinct. Episode class `j` is `classes[j]`; which dataset label
//! lands on which index is random, so a learner cannot rely on label order.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::rng::Rng;

/// Classes of the three meta-splits (disjoint by construction).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassSplit {
    pub train: Vec<String>,
    pub val: Vec<String>,
    pub test: Vec<String>,
}

impl ClassSplit {
    /// Splits whole groups of classes (CLINC150's domains): `n_train`, `n_val` and
    /// `n_test` groups, chosen with the seed; every class of a group goes to one split.
    pub fn by_groups(
        groups: &[(String, Vec<String>)],
        n_train: usize,
        n_val: usize,
        n_test: usize,
        seed: u64,
    ) -> Result<Self> {
        if n_train + n_val + n_test > groups.len() {
            return Err(Error::Input(format!(
                "a split of {n_train} + {n_val} + {n_test} groups needs that many, there are {}",
                groups.len()
            )));
        }
        let mut order: Vec<usize> = (0..groups.len()).collect();
        Rng::derive(seed, 0x5911).shuffle(&mut order);
        let take = |range: std::ops::Range<usize>| -> Vec<String> {
            let mut v: Vec<String> = order[range]
                .iter()
                .flat_map(|&g| groups[g].1.iter().cloned())
                .collect();
            v.sort();
            v
        };
        let split = ClassSplit {
            train: take(0..n_train),
            val: take(n_train..n_train + n_val),
            test: take(n_train + n_val..n_train + n_val + n_test),
        };
        split.check()?;
        Ok(split)
    }

    /// Splits individual classes in the given proportions (rounded; every split keeps at
    /// least one class when `fractions` are positive).
    pub fn by_fractions(classes: &[String], fractions: (f64, f64), seed: u64) -> Result<Self> {
        let mut order: Vec<String> = classes.to_vec();
        order.sort();
        order.dedup();
        Rng::derive(seed, 0x5912).shuffle(&mut order);
        let n = order.len();
        let n_train = ((fractions.0 * n as f64).round() as usize).clamp(1, n.saturating_sub(2));
        let n_val = ((fractions.1 * n as f64).round() as usize).clamp(1, n - n_train - 1);
        let mut split = ClassSplit {
            train: order[..n_train].to_vec(),
            val: order[n_train..n_train + n_val].to_vec(),
            test: order[n_train + n_val..].to_vec(),
        };
        split.train.sort();
        split.val.sort();
        split.test.sort();
        split.check()?;
        Ok(split)
    }

    fn check(&self) -> Result<()> {
        let a: BTreeSet<&String> = self.train.iter().collect();
        let b: BTreeSet<&String> = self.val.iter().collect();
        let c: BTreeSet<&String> = self.test.iter().collect();
        if !a.is_disjoint(&b) || !a.is_disjoint(&c) || !b.is_disjoint(&c) {
            return Err(Error::Input("meta-splits share a class".into()));
        }
        Ok(())
    }
}

/// One few-shot task: `(example index, episode class)` pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Episode {
    /// Dataset label of each episode class.
    pub classes: Vec<String>,
    pub support: Vec<(usize, usize)>,
    pub query: Vec<(usize, usize)>,
}

/// Draws episodes from the examples of a set of classes.
#[derive(Debug, Clone)]
pub struct EpisodeSampler {
    by_class: BTreeMap<String, Vec<usize>>,
    pub n_way: usize,
    pub k_shot: usize,
    pub q_query: usize,
    rng: Rng,
}

impl EpisodeSampler {
    /// `labels[i]` is the label of example `i`; only examples of `classes` are used. Every
    /// class needs at least `k_shot + q_query` examples.
    pub fn new(
        labels: &[&str],
        classes: &[String],
        n_way: usize,
        k_shot: usize,
        q_query: usize,
        seed: u64,
    ) -> Result<Self> {
        if n_way < 2 || k_shot == 0 {
            return Err(Error::Input(format!(
                "an episode needs at least 2 classes and 1 shot, got {n_way}-way {k_shot}-shot"
            )));
        }
        if classes.len() < n_way {
            return Err(Error::Input(format!(
                "{n_way}-way episodes need {n_way} classes, the split has {}",
                classes.len()
            )));
        }
        let wanted: BTreeSet<&str> = classes.iter().map(String::as_str).collect();
        let mut by_class: BTreeMap<String, Vec<usize>> =
            classes.iter().map(|c| (c.clone(), Vec::new())).collect();
        for (i, l) in labels.iter().enumerate() {
            if wanted.contains(l) {
                by_class.get_mut(*l).expect("wanted").push(i);
            }
        }
        let short: Vec<String> = by_class
            .iter()
            .filter(|(_, v)| v.len() < k_shot + q_query)
            .map(|(c, v)| format!("{c} ({})", v.len()))
            .collect();
        if !short.is_empty() {
            return Err(Error::Input(format!(
                "{} shots + {} queries need {} examples per class; too few in: {}",
                k_shot,
                q_query,
                k_shot + q_query,
                short.join(", ")
            )));
        }
        Ok(EpisodeSampler {
            by_class,
            n_way,
            k_shot,
            q_query,
            rng: Rng::derive(seed, 0xe915),
        })
    }

    /// The next episode.
    pub fn sample(&mut self) -> Episode {
        let mut names: Vec<&String> = self.by_class.keys().collect();
        self.rng.shuffle(&mut names);
        let classes: Vec<String> = names[..self.n_way].iter().map(|c| (*c).clone()).collect();
        let mut support = Vec::with_capacity(self.n_way * self.k_shot);
        let mut query = Vec::with_capacity(self.n_way * self.q_query);
        for (j, c) in classes.iter().enumerate() {
            let mut pool = self.by_class[c].clone();
            self.rng.shuffle(&mut pool);
            support.extend(pool[..self.k_shot].iter().map(|&i| (i, j)));
            query.extend(
                pool[self.k_shot..self.k_shot + self.q_query]
                    .iter()
                    .map(|&i| (i, j)),
            );
        }
        Episode {
            classes,
            support,
            query,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups() -> Vec<(String, Vec<String>)> {
        (0..10)
            .map(|d| {
                (
                    format!("domain{d}"),
                    (0..15).map(|i| format!("d{d}_intent{i}")).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn group_split_is_disjoint_complete_and_seeded() {
        let s = ClassSplit::by_groups(&groups(), 6, 2, 2, 1).unwrap();
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), (90, 30, 30));
        let all: BTreeSet<&String> = s.train.iter().chain(&s.val).chain(&s.test).collect();
        assert_eq!(all.len(), 150);
        // Whole domains: a domain's intents all sit in one split.
        let domain = |c: &str| c.split('_').next().unwrap().to_string();
        let doms = |v: &[String]| v.iter().map(|c| domain(c)).collect::<BTreeSet<_>>();
        assert!(doms(&s.train).is_disjoint(&doms(&s.test)));
        assert_eq!(s, ClassSplit::by_groups(&groups(), 6, 2, 2, 1).unwrap());
        assert_ne!(s, ClassSplit::by_groups(&groups(), 6, 2, 2, 2).unwrap());
        assert!(ClassSplit::by_groups(&groups(), 6, 3, 2, 1).is_err());
    }

    #[test]
    fn episodes_never_leak_other_split_classes_and_support_query_are_disjoint() {
        let split = ClassSplit::by_groups(&groups(), 6, 2, 2, 3).unwrap();
        // 20 examples per class.
        let labels: Vec<String> = split
            .train
            .iter()
            .chain(&split.val)
            .chain(&split.test)
            .flat_map(|c| std::iter::repeat_n(c.clone(), 20))
            .collect();
        let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
        let mut sampler = EpisodeSampler::new(&refs, &split.train, 5, 1, 5, 9).unwrap();
        let train: BTreeSet<&String> = split.train.iter().collect();
        for _ in 0..300 {
            let e = sampler.sample();
            assert_eq!(e.classes.len(), 5);
            assert!(e.classes.iter().all(|c| train.contains(c)));
            assert_eq!((e.support.len(), e.query.len()), (5, 25));
            let s: BTreeSet<usize> = e.support.iter().map(|x| x.0).collect();
            let q: BTreeSet<usize> = e.query.iter().map(|x| x.0).collect();
            assert!(s.is_disjoint(&q));
            for &(i, j) in e.support.iter().chain(&e.query) {
                assert_eq!(labels[i], e.classes[j], "example {i} in class {j}");
                assert!(train.contains(&labels[i]), "meta-test example leaked");
            }
        }
    }

    #[test]
    fn too_few_examples_are_named() {
        let labels = ["a", "a", "b", "b", "b", "b"];
        let classes = vec!["a".to_string(), "b".to_string()];
        let e = EpisodeSampler::new(&labels, &classes, 2, 2, 1, 0).unwrap_err();
        assert!(e.to_string().contains("a (2)"), "{e}");
        assert!(EpisodeSampler::new(&labels, &classes, 1, 1, 1, 0).is_err());
        assert!(EpisodeSampler::new(&labels, &classes, 2, 1, 1, 0).is_ok());
    }

    #[test]
    fn fraction_split_keeps_every_split_non_empty() {
        let classes: Vec<String> = (0..7).map(|i| format!("c{i}")).collect();
        let s = ClassSplit::by_fractions(&classes, (0.6, 0.2), 4).unwrap();
        assert_eq!(s.train.len() + s.val.len() + s.test.len(), 7);
        assert!(!s.val.is_empty() && !s.test.is_empty());
    }
}
