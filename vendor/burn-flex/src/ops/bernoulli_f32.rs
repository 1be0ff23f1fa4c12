//! Polytask patch: f32 Bernoulli tensors (dropout masks) from a counter-based generator.
//!
//! flex drew every element from the backend's ChaCha12 `StdRng` through rand's `Bernoulli`
//! (one u64 per element, one thread): a BERT training step at 32 × 128 draws ~50M mask
//! elements, and that was ~8% of its time. Here one u64 key per tensor comes from that
//! generator, so seeding the backend still fixes every mask, and element `i` is a pure
//! function of `(key, i)`: the SplitMix64 output function of the Weyl sequence
//! `key + (i + 1)·γ` (SplitMix64 itself; passes BigCrush), its high 32 bits compared with
//! `p · 2³²`. The loop vectorises and large tensors are split over the rayon pool; the
//! result does not depend on the number of threads.

use super::gelu_f32::multiversion;
#[cfg(feature = "rayon")]
use rayon::prelude::*;

/// Elements per rayon task.
#[cfg(feature = "rayon")]
const CHUNK: usize = 32 * 1024;

/// SplitMix64's increment (2⁶⁴ / φ, odd).
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

#[inline(always)]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `out[j] = 1` with probability `threshold / 2³²`, for element index `first + j`.
#[inline(always)]
fn fill_body(out: &mut [f32], key: u64, first: u64, threshold: u64) {
    let base = key.wrapping_add(first.wrapping_mul(GAMMA));
    let mut step = base;
    for x in out.iter_mut() {
        step = step.wrapping_add(GAMMA);
        let u = mix(step) >> 32;
        *x = if u < threshold { 1.0 } else { 0.0 };
    }
}

// AVX-512 / AVX2 / baseline copies of `fill_body`, picked at run time.
multiversion!(fill_serial, fill_body, (out: &mut [f32], key: u64, first: u64, threshold: u64));

/// `p · 2³²` (2³² for p = 1, so every draw is below it). Panics, as rand's `Bernoulli`
/// does, for p outside [0, 1].
fn threshold(p: f64) -> u64 {
    assert!(
        (0.0..=1.0).contains(&p),
        "Bernoulli probability must be in [0, 1], got {p}"
    );
    (p * 4_294_967_296.0) as u64
}

/// Fills `out` with independent Bernoulli(p) draws (1.0 or 0.0) determined by `key`.
pub fn bernoulli_fill(out: &mut [f32], p: f64, key: u64) {
    let threshold = threshold(p);
    #[cfg(feature = "rayon")]
    if out.len() > 2 * CHUNK {
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, out)| fill_serial(out, key, (c * CHUNK) as u64, threshold));
        return;
    }
    fill_serial(out, key, 0, threshold)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    fn draws(n: usize, p: f64, key: u64) -> Vec<f32> {
        let mut out = vec![f32::NAN; n];
        bernoulli_fill(&mut out, p, key);
        out
    }

    #[test]
    fn frequencies_match_p_and_neighbours_are_uncorrelated() {
        let n = 1 << 20;
        for p in [0.1, 0.5, 0.9] {
            let x = draws(n, p, 42);
            assert!(x.iter().all(|&v| v == 0.0 || v == 1.0));
            let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
            let sigma = (p * (1.0 - p) / n as f64).sqrt();
            assert!((mean - p).abs() < 5.0 * sigma, "p {p}: mean {mean}");
            // Lag-1 and lag-16 (a vector's width) autocorrelation.
            for lag in [1, 16] {
                let cov = x
                    .iter()
                    .zip(&x[lag..])
                    .map(|(&a, &b)| (a as f64 - p) * (b as f64 - p))
                    .sum::<f64>()
                    / (n - lag) as f64;
                let corr = cov / (p * (1.0 - p));
                assert!(corr.abs() < 0.01, "p {p}, lag {lag}: correlation {corr}");
            }
        }
    }

    #[test]
    fn edges_are_exact() {
        assert!(draws(1000, 0.0, 7).iter().all(|&v| v == 0.0));
        assert!(draws(1000, 1.0, 7).iter().all(|&v| v == 1.0));
    }

    #[test]
    fn a_key_fixes_the_draws_whatever_the_split() {
        let n = 5 * CHUNK_FOR_TEST + 123;
        let whole = draws(n, 0.3, 99);
        assert_eq!(whole, draws(n, 0.3, 99));
        // Element i depends on (key, i) only: one serial pass gives the same values.
        let mut serial = vec![0.0f32; n];
        fill_serial(&mut serial, 99, 0, threshold(0.3));
        assert_eq!(whole, serial);
        let mut tail = vec![0.0f32; n - 1000];
        fill_serial(&mut tail, 99, 1000, threshold(0.3));
        assert_eq!(&whole[1000..], &tail[..]);
        assert_ne!(whole, draws(n, 0.3, 100), "another key, other draws");
    }

    #[cfg(feature = "rayon")]
    const CHUNK_FOR_TEST: usize = CHUNK;
    #[cfg(not(feature = "rayon"))]
    const CHUNK_FOR_TEST: usize = 1024;

    #[test]
    #[should_panic(expected = "Bernoulli probability must be in [0, 1]")]
    fn rejects_probabilities_outside_the_unit_interval() {
        draws(10, 1.5, 0);
    }
}
