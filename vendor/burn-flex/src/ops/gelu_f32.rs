//! Polytask patch: vectorisable f32 GELU and its backward, exp, and softmax numerators.
//!
//! flex's own GELU calls `libm::erff` (and `expf` in the backward) once per element, which
//! LLVM cannot vectorise: in a BERT training step those calls were ~5% of the time and 10%
//! of an inference forward. Here `erf` is the rational approximation that Eigen (and so
//! TensorFlow/XLA) use for f32 (odd degree-13 over even degree-8 polynomial on x clamped to
//! [-4, 4]; max error a few 1e-7 against libm's erff), `exp` is a Cephes-style
//! range-reduced polynomial with 2^n built from the exponent bits. Both are branch-free,
//! so the element loops vectorise; on x86-64 they are compiled three times (AVX-512,
//! AVX2+FMA, baseline SSE2) and picked at run time, and large tensors are split over the
//! rayon pool.

#[cfg(feature = "rayon")]
use rayon::prelude::*;

/// Elements per rayon task: large enough to amortise scheduling, small enough to balance.
#[cfg(feature = "rayon")]
const CHUNK: usize = 16 * 1024;

const FRAC_1_SQRT_2: f32 = core::f32::consts::FRAC_1_SQRT_2;
/// 1 / sqrt(2π)
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// erf(x) for f32, branch-free (Eigen's `generic_fast_erf_float`).
#[inline(always)]
#[allow(clippy::excessive_precision)]
pub fn erf(x: f32) -> f32 {
    // erf(±4) rounds to ±1 in f32; clamping also maps NaN to a bound only through min/max,
    // so NaN is restored below.
    let c = x.clamp(-4.0, 4.0);
    let x2 = c * c;
    let mut p = x2 * -2.726_142_258_013_06e-10 + 2.770_681_424_959_02e-08;
    p = x2 * p + -2.101_024_020_825_08e-06;
    p = x2 * p + -5.692_506_394_623_46e-05;
    p = x2 * p + -7.349_906_303_268_55e-04;
    p = x2 * p + -2.954_599_808_540_25e-03;
    p = x2 * p + -1.609_603_332_624_15e-02;
    p *= c;
    let mut q = x2 * -1.456_607_184_649_96e-05 + -2.133_740_552_789_05e-04;
    q = x2 * q + -1.682_826_974_382_03e-03;
    q = x2 * q + -7.373_329_167_204_68e-03;
    q = x2 * q + -1.426_473_905_141_89e-02;
    let r = p / q;
    if x.is_nan() { x } else { r }
}

/// exp(x) for f32, branch-free: x = n·ln2 + r, |r| ≤ ln2/2, exp(r) by a degree-6
/// polynomial (Cephes `expf`), 2^n from the exponent bits. Inputs are clamped to
/// [-87.3, 88.0], so the result is never a subnormal or infinity (GELU only needs x ≤ 0).
#[inline(always)]
#[allow(clippy::excessive_precision)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = core::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_375;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 · 2^23: adding it rounds to the nearest integer, kept in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.0);
    let t = x * LOG2E + MAGIC;
    let n = t - MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_150_0e-4_f32;
    p = p * r + 1.398_199_950_7e-3;
    p = p * r + 8.333_451_907_3e-3;
    p = p * r + 4.166_579_589_4e-2;
    p = p * r + 1.666_666_545_9e-1;
    p = p * r + 5.000_000_120_1e-1;
    let e = p * r * r + r + 1.0;
    // The integer n sits in t's low mantissa bits: t's bits minus MAGIC's bits.
    let n_int = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    // Wrapping: no overflow check (dev builds keep them), which would stop vectorisation.
    let scale = f32::from_bits((n_int.wrapping_add(127) << 23) as u32);
    e * scale
}

/// exp(x) over the whole f32 range, branch-free: [`exp`] of `x ± 32·ln2` outside
/// [-87, 88], scaled back by 2^∓32, so results down to the subnormals (and 0 below them,
/// `exp(-inf)` included) and up to `inf` come out as libm's do, to a few 1e-7 relative.
/// NaN stays NaN.
#[inline(always)]
pub fn exp_full(x: f32) -> f32 {
    const SHIFT: f32 = 32.0 * core::f32::consts::LN_2;
    let small = x < -87.0;
    let large = x > 88.0;
    let reduced = if small {
        x + SHIFT
    } else if large {
        x - SHIFT
    } else {
        x
    };
    let scale = if small {
        2.328_306_4e-10 // 2^-32
    } else if large {
        4_294_967_296.0 // 2^32
    } else {
        1.0
    };
    let e = exp(reduced) * scale;
    if x.is_nan() { x } else { e }
}

#[inline(always)]
fn exp_full_body(xs: &mut [f32]) {
    for x in xs.iter_mut() {
        *x = exp_full(*x);
    }
}

#[inline(always)]
fn gelu_one(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * FRAC_1_SQRT_2))
}

#[inline(always)]
fn gelu_grad_one(x: f32, g: f32) -> f32 {
    let cdf = 0.5 * (1.0 + erf(x * FRAC_1_SQRT_2));
    let pdf = INV_SQRT_2PI * exp(-0.5 * x * x);
    g * (cdf + x * pdf)
}

#[inline(always)]
fn gelu_body(xs: &mut [f32]) {
    for x in xs.iter_mut() {
        *x = gelu_one(*x);
    }
}

#[inline(always)]
fn gelu_grad_body(x: &[f32], g: &mut [f32]) {
    for (g, &x) in g.iter_mut().zip(x) {
        *g = gelu_grad_one(x, *g);
    }
}

macro_rules! multiversion {
    ($name:ident, $body:ident, ($($arg:ident: $ty:ty),*)) => {
        multiversion!($name, $body, ($($arg: $ty),*) -> ());
    };
    ($name:ident, $body:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        fn $name($($arg: $ty),*) -> $ret {
            #[cfg(all(target_arch = "x86_64", feature = "std"))]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has AVX2 and FMA.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}
// Also used by the Bernoulli fill (bernoulli_f32.rs).
pub(crate) use multiversion;

/// Lanes of partial sums in [`exp_sum_body`]: a multiple of every vector width here.
const LANES: usize = 16;

#[inline(always)]
fn exp_shifted(x: f32, shift: f32) -> f32 {
    let x = x - shift;
    // exp clamps below -87.3; a softmax needs exp(-inf) (a masked score) to be 0.
    if x < -87.3 { 0.0 } else { exp(x) }
}

#[inline(always)]
fn exp_sum_body(row: &mut [f32], shift: f32) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (lane, x) in lanes.iter_mut().zip(chunk.iter_mut()) {
            *x = exp_shifted(*x, shift);
            *lane += *x;
        }
    }
    let mut sum = 0.0;
    for x in chunks.into_remainder() {
        *x = exp_shifted(*x, shift);
        sum += *x;
    }
    lanes.iter().sum::<f32>() + sum
}

multiversion!(gelu_serial, gelu_body, (xs: &mut [f32]));
multiversion!(exp_sum_serial, exp_sum_body, (row: &mut [f32], shift: f32) -> f32);

/// `row[i] = exp(row[i] − shift)`, returning the sum (a softmax row's numerators and
/// denominator; `shift` is the row's maximum). Vectorised like GELU; summed in 16 lanes.
pub fn exp_sum(row: &mut [f32], shift: f32) -> f32 {
    exp_sum_serial(row, shift)
}
multiversion!(gelu_grad_serial, gelu_grad_body, (x: &[f32], g: &mut [f32]));
multiversion!(exp_serial, exp_full_body, (xs: &mut [f32]));

/// `xs[i] = exp(xs[i])` ([`exp_full`]).
pub fn exp_in_place(xs: &mut [f32]) {
    #[cfg(feature = "rayon")]
    if xs.len() > 2 * CHUNK {
        xs.par_chunks_mut(CHUNK).for_each(exp_serial);
        return;
    }
    exp_serial(xs)
}

/// `xs[i] = gelu(xs[i])`.
pub fn gelu_in_place(xs: &mut [f32]) {
    #[cfg(feature = "rayon")]
    if xs.len() > 2 * CHUNK {
        xs.par_chunks_mut(CHUNK).for_each(gelu_serial);
        return;
    }
    gelu_serial(xs)
}

/// `g[i] = g[i] · gelu'(x[i])`.
pub fn gelu_backward_in_place(x: &[f32], g: &mut [f32]) {
    assert_eq!(
        x.len(),
        g.len(),
        "gelu_backward: x and grad differ in length"
    );
    #[cfg(feature = "rayon")]
    if g.len() > 2 * CHUNK {
        g.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(g, x)| gelu_grad_serial(x, g));
        return;
    }
    gelu_grad_serial(x, g)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> impl Iterator<Item = f32> {
        (-200_000..=200_000).map(|i| i as f32 * 5e-5)
    }

    #[test]
    fn erf_matches_libm() {
        let worst = grid()
            .chain([-30.0, -4.5, 4.5, 30.0, f32::MAX, f32::MIN])
            .map(|x| (erf(x) - libm::erff(x)).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 5e-7, "max |erf - libm::erff| = {worst}");
        assert!(erf(f32::NAN).is_nan());
        assert!((erf(f32::INFINITY) - 1.0).abs() < 1e-6);
        assert!((erf(f32::NEG_INFINITY) + 1.0).abs() < 1e-6);
        assert_eq!(erf(0.0), 0.0);
    }

    #[test]
    fn exp_matches_libm() {
        let worst = (-8_730..=8_800)
            .map(|i| i as f32 * 0.01)
            .map(|x| ((exp(x) - libm::expf(x)) / libm::expf(x)).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 4e-7, "max relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-1000.0), exp(-87.3));
    }

    #[test]
    fn exp_in_place_matches_libm_over_the_whole_range() {
        let mut xs: Vec<f32> = (-11_000..=9_000).map(|i| i as f32 * 0.01).collect();
        xs.extend([
            f32::NEG_INFINITY,
            f32::INFINITY,
            f32::MIN,
            f32::MAX,
            -87.0,
            88.0,
        ]);
        // Large enough to take the rayon path too.
        let n = xs.len();
        let mut got = xs.repeat(3);
        exp_in_place(&mut got);
        for (i, (&x, &got)) in xs.iter().cycle().zip(&got).enumerate().take(3 * n) {
            let want = libm::expf(x);
            if want >= f32::MIN_POSITIVE && want.is_finite() {
                assert!(
                    ((got - want) / want).abs() < 4e-7,
                    "exp({x}) = {got}, libm {want} (element {i})"
                );
            } else {
                // Subnormal, 0 or inf: within a subnormal step, or equal.
                assert!(
                    got == want || (got - want).abs() <= 2.0 * f32::from_bits(1),
                    "exp({x}) = {got}, libm {want}"
                );
            }
        }
        let mut nan = [f32::NAN];
        exp_in_place(&mut nan);
        assert!(nan[0].is_nan());
    }

    #[test]
    fn exp_sum_matches_libm_and_zeroes_masked_scores() {
        let mut row: Vec<f32> = (0..37).map(|i| i as f32 * 0.7 - 20.0).collect();
        row[5] = f32::NEG_INFINITY;
        let shift = 5.2;
        let want: Vec<f32> = row.iter().map(|&x| libm::expf(x - shift)).collect();
        let sum = exp_sum(&mut row, shift);
        assert_eq!(row[5], 0.0);
        for (got, want) in row.iter().zip(&want) {
            assert!((got - want).abs() <= 4e-7 * want, "{got} against {want}");
        }
        let want_sum: f32 = want.iter().sum();
        assert!(
            (sum - want_sum).abs() <= 1e-6 * want_sum,
            "{sum} against {want_sum}"
        );
    }

    #[test]
    fn gelu_and_backward_match_the_libm_formula() {
        let xs: Vec<f32> = grid().step_by(7).collect();
        let mut y = xs.clone();
        gelu_in_place(&mut y);
        let g: Vec<f32> = xs.iter().map(|x| 1.0 + 0.25 * x).collect();
        let mut dx = g.clone();
        gelu_backward_in_place(&xs, &mut dx);
        for ((&x, (&y, &dx)), &g) in xs.iter().zip(y.iter().zip(&dx)).zip(&g) {
            let y_ref = 0.5 * x * (1.0 + libm::erff(x / core::f32::consts::SQRT_2));
            let cdf = 0.5 * (1.0 + libm::erff(x / core::f32::consts::SQRT_2));
            let dx_ref = g * (cdf + x * INV_SQRT_2PI * libm::expf(-0.5 * x * x));
            assert!(
                (y - y_ref).abs() <= 1e-6 * (1.0 + x.abs()),
                "gelu({x}) = {y}, want {y_ref}"
            );
            assert!(
                (dx - dx_ref).abs() <= 1e-6 * (1.0 + g.abs()),
                "gelu'({x}) = {dx}, want {dx_ref}"
            );
        }
    }
}
