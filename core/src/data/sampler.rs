//! Which task the next training step draws its batch from (MT-DNN style: one task per
//! step), and which examples go into that batch. Both are seeded and their state is a
//! handful of integers, saved with a checkpoint so that a resumed run continues exactly.
//!
//! Task sampling strategies, for tasks of sizes `n_t`:
//! - `proportional`: `p_t ∝ n_t` (every example seen about equally often);
//! - `temperature`: `p_t ∝ n_t^α` with `0 < α ≤ 1` (α = 1 is proportional, α → 0 uniform;
//!   small tasks are up-sampled);
//! - `round_robin`: tasks in turn, `0, 1, …, T−1, 0, …`.

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// How tasks are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TaskSampling {
    Proportional,
    Temperature { alpha: f64 },
    RoundRobin,
}

impl TaskSampling {
    /// The probability of each task, for tasks of `sizes` examples.
    pub fn probabilities(&self, sizes: &[usize]) -> Vec<f64> {
        let weights: Vec<f64> = match *self {
            TaskSampling::Proportional => sizes.iter().map(|&n| n as f64).collect(),
            TaskSampling::Temperature { alpha } => {
                sizes.iter().map(|&n| (n as f64).powf(alpha)).collect()
            }
            TaskSampling::RoundRobin => sizes.iter().map(|_| 1.0).collect(),
        };
        let total: f64 = weights.iter().sum();
        weights.iter().map(|w| w / total).collect()
    }
}

/// Draws the task of each step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSampler {
    strategy: TaskSampling,
    probabilities: Vec<f64>,
    rng: Rng,
    steps: u64,
}

impl TaskSampler {
    /// `sizes` must be non-empty and positive (the caller validates its tasks).
    pub fn new(strategy: TaskSampling, sizes: &[usize], seed: u64) -> Self {
        assert!(
            !sizes.is_empty() && sizes.iter().all(|&n| n > 0),
            "TaskSampler needs tasks with examples, got sizes {sizes:?}"
        );
        if let TaskSampling::Temperature { alpha } = strategy {
            assert!(alpha > 0.0, "temperature alpha must be > 0, got {alpha}");
        }
        TaskSampler {
            strategy,
            probabilities: strategy.probabilities(sizes),
            rng: Rng::derive(seed, 0x7a5c),
            steps: 0,
        }
    }

    pub fn probabilities(&self) -> &[f64] {
        &self.probabilities
    }

    /// The task of the next step.
    pub fn next_task(&mut self) -> usize {
        let t = match self.strategy {
            TaskSampling::RoundRobin => (self.steps % self.probabilities.len() as u64) as usize,
            _ => self.rng.weighted(&self.probabilities),
        };
        self.steps += 1;
        t
    }
}

/// Batches of example indices for one corpus, reshuffled every epoch with the seed.
///
/// With lengths given ([`BatchCursor::bucketed`]) batches hold examples of similar length,
/// so that little compute goes to padding: each epoch, the shuffled examples are cut into
/// pools of 50 batches, each pool is sorted by length and cut into batches, and the order
/// of all batches is shuffled again (the "bucket iterator" of fairseq/AllenNLP). The batches
/// of epoch `e` depend only on the seed and `e`, so the state is `(epoch, position)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchCursor {
    n: usize,
    batch_size: usize,
    seed: u64,
    epoch: u64,
    /// Index of the next batch of this epoch.
    position: usize,
    /// Length of each example (empty: no bucketing).
    #[serde(default)]
    lengths: Vec<u32>,
    #[serde(skip)]
    batches: Vec<Vec<usize>>,
}

/// Batches per sorting pool.
const POOL_BATCHES: usize = 50;

impl BatchCursor {
    /// Plain shuffled batches.
    pub fn new(n: usize, batch_size: usize, seed: u64) -> Self {
        Self::bucketed(vec![0; n], batch_size, seed)
    }

    /// Shuffled batches of examples of similar `lengths`.
    pub fn bucketed(lengths: Vec<u32>, batch_size: usize, seed: u64) -> Self {
        let n = lengths.len();
        assert!(
            n > 0 && batch_size > 0,
            "BatchCursor needs examples and batch_size > 0"
        );
        let mut c = BatchCursor {
            n,
            batch_size,
            seed,
            epoch: 0,
            position: 0,
            lengths,
            batches: Vec::new(),
        };
        c.plan();
        c
    }

    /// The batches of the current epoch.
    fn plan(&mut self) {
        let mut rng = Rng::derive(self.seed, self.epoch);
        let mut order: Vec<usize> = (0..self.n).collect();
        rng.shuffle(&mut order);
        let bucketing = self.lengths.iter().any(|&l| l != self.lengths[0]);
        if !bucketing {
            self.batches = order
                .chunks(self.batch_size)
                .map(<[usize]>::to_vec)
                .collect();
            return;
        }
        let mut batches: Vec<Vec<usize>> = Vec::new();
        for pool in order.chunks(self.batch_size * POOL_BATCHES) {
            let mut pool = pool.to_vec();
            pool.sort_by_key(|&i| self.lengths[i]);
            batches.extend(pool.chunks(self.batch_size).map(<[usize]>::to_vec));
        }
        rng.shuffle(&mut batches);
        self.batches = batches;
    }

    /// Completed passes over the data.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.n.div_ceil(self.batch_size)
    }

    /// The next batch of indices.
    pub fn next_batch(&mut self) -> Vec<usize> {
        if self.batches.is_empty() {
            // Restored from a checkpoint: the plan is recomputed, not stored.
            self.plan();
        }
        if self.position >= self.batches.len() {
            self.epoch += 1;
            self.position = 0;
            self.plan();
        }
        let batch = self.batches[self.position].clone();
        self.position += 1;
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frequencies(strategy: TaskSampling, sizes: &[usize], draws: usize) -> Vec<f64> {
        let mut s = TaskSampler::new(strategy, sizes, 42);
        let mut counts = vec![0usize; sizes.len()];
        for _ in 0..draws {
            counts[s.next_task()] += 1;
        }
        counts.iter().map(|&c| c as f64 / draws as f64).collect()
    }

    #[test]
    fn proportional_frequencies_follow_sizes() {
        let f = frequencies(TaskSampling::Proportional, &[100, 300, 600], 60_000);
        for (got, want) in f.iter().zip([0.1, 0.3, 0.6]) {
            assert!((got - want).abs() < 0.01, "{f:?}");
        }
    }

    #[test]
    fn temperature_upsamples_small_tasks() {
        // α = 0.5: weights 10, 30 → p = 0.25, 0.75 (proportional would be 0.1, 0.9).
        let strategy = TaskSampling::Temperature { alpha: 0.5 };
        let p = strategy.probabilities(&[100, 900]);
        assert!(
            (p[0] - 0.25).abs() < 1e-12 && (p[1] - 0.75).abs() < 1e-12,
            "{p:?}"
        );
        let f = frequencies(strategy, &[100, 900], 40_000);
        assert!((f[0] - 0.25).abs() < 0.01, "{f:?}");
    }

    #[test]
    fn round_robin_cycles_exactly() {
        let mut s = TaskSampler::new(TaskSampling::RoundRobin, &[5, 1000, 7], 1);
        let seq: Vec<usize> = (0..7).map(|_| s.next_task()).collect();
        assert_eq!(seq, [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn sampler_state_restores_exactly() {
        let mut s = TaskSampler::new(TaskSampling::Proportional, &[3, 5], 9);
        for _ in 0..13 {
            s.next_task();
        }
        let saved = serde_json::to_string(&s).unwrap();
        let a: Vec<usize> = (0..50).map(|_| s.next_task()).collect();
        let mut r: TaskSampler = serde_json::from_str(&saved).unwrap();
        let b: Vec<usize> = (0..50).map(|_| r.next_task()).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn cursor_covers_each_epoch_once_and_reshuffles() {
        let mut c = BatchCursor::new(10, 4, 3);
        let mut first: Vec<usize> = Vec::new();
        let sizes: Vec<usize> = (0..3)
            .map(|_| {
                let b = c.next_batch();
                first.extend(&b);
                b.len()
            })
            .collect();
        assert_eq!(sizes, [4, 4, 2]);
        let mut sorted = first.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_eq!(c.epoch(), 0);
        let mut second: Vec<usize> = Vec::new();
        for _ in 0..3 {
            second.extend(c.next_batch());
        }
        assert_eq!(c.epoch(), 1);
        assert_ne!(first, second, "epochs are shuffled differently");
    }

    #[test]
    fn bucketed_batches_cover_the_data_and_group_similar_lengths() {
        let lengths: Vec<u32> = (0..1000).map(|i| (i * 7919 % 100) as u32 + 1).collect();
        let mut c = BatchCursor::bucketed(lengths.clone(), 10, 4);
        let mut seen = Vec::new();
        let mut spread = 0u32;
        for _ in 0..c.batches_per_epoch() {
            let b = c.next_batch();
            let (lo, hi) = (
                b.iter().map(|&i| lengths[i]).min().unwrap(),
                b.iter().map(|&i| lengths[i]).max().unwrap(),
            );
            spread += hi - lo;
            seen.extend(b);
        }
        assert_eq!(c.epoch(), 0);
        seen.sort();
        assert_eq!(
            seen,
            (0..1000).collect::<Vec<_>>(),
            "every example once per epoch"
        );
        // Random batches of 10 lengths in 1..=100 span ~80 on average; pools of 500
        // sorted by length span ~2.
        let mean = spread as f64 / 100.0;
        assert!(mean < 10.0, "mean length spread within a batch {mean}");
        // Batches come in a shuffled order, not sorted by length.
        let firsts: Vec<u32> = (0..20).map(|_| lengths[c.next_batch()[0]]).collect();
        assert!(firsts.windows(2).any(|w| w[0] > w[1]), "{firsts:?}");
    }

    #[test]
    fn bucketed_cursor_restores_exactly() {
        let lengths: Vec<u32> = (0..97).map(|i| (i * 31 % 17) as u32).collect();
        let mut c = BatchCursor::bucketed(lengths, 8, 2);
        for _ in 0..17 {
            c.next_batch();
        }
        let saved = serde_json::to_string(&c).unwrap();
        let a: Vec<Vec<usize>> = (0..30).map(|_| c.next_batch()).collect();
        let mut r: BatchCursor = serde_json::from_str(&saved).unwrap();
        let b: Vec<Vec<usize>> = (0..30).map(|_| r.next_batch()).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn cursor_state_restores_exactly() {
        let mut c = BatchCursor::new(17, 5, 8);
        for _ in 0..6 {
            c.next_batch();
        }
        let saved = serde_json::to_string(&c).unwrap();
        let a: Vec<Vec<usize>> = (0..9).map(|_| c.next_batch()).collect();
        let mut r: BatchCursor = serde_json::from_str(&saved).unwrap();
        let b: Vec<Vec<usize>> = (0..9).map(|_| r.next_batch()).collect();
        assert_eq!(a, b);
    }
}
