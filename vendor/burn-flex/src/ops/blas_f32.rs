//! Polytask patch: f32 matrix products through OpenBLAS's `cblas_sgemm` (feature `openblas`
//! on a machine that has the library: `cfg(openblas)`, set and linked by build.rs; native
//! builds only; see PATCHES.md). On the 2-core machines measured, OpenBLAS's
//! run-time-selected kernels (SkylakeX with AVX-512, Haswell/Zen with AVX2) run a BERT
//! layer's products well above matrixmultiply's. Called single-threaded per block: flex's
//! rayon split (`matmul::sgemm`) decides the parallelism, so OpenBLAS's own threads are set
//! to one once and never nest inside rayon tasks.

use core::ffi::c_int;

// Linked by build.rs (`cargo::rustc-link-lib=openblas`).
unsafe extern "C" {
    fn openblas_set_num_threads(n: c_int);
    #[allow(clippy::too_many_arguments)]
    fn cblas_sgemm(
        order: c_int,
        trans_a: c_int,
        trans_b: c_int,
        m: c_int,
        n: c_int,
        k: c_int,
        alpha: f32,
        a: *const f32,
        lda: c_int,
        b: *const f32,
        ldb: c_int,
        beta: f32,
        c: *mut f32,
        ldc: c_int,
    );
}

const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;

static SINGLE_THREADED: std::sync::Once = std::sync::Once::new();

/// How cblas reads a `rows × cols` operand with element strides `rs`, `cs` (row-major
/// calls): `(NO_TRANS, ld)` when rows are contiguous, `(TRANS, ld)` when columns are;
/// `None` for a layout cblas cannot express (broadcast or negative strides, neither axis
/// contiguous), which the caller sends to matrixmultiply instead.
fn operand(rows: usize, cols: usize, rs: isize, cs: isize) -> Option<(c_int, c_int)> {
    let fits = |v: usize| c_int::try_from(v).ok();
    if cs == 1 && (rows == 1 || rs >= cols.max(1) as isize) {
        Some((
            NO_TRANS,
            fits(if rows == 1 { cols.max(1) } else { rs as usize })?,
        ))
    } else if rs == 1 && (cols == 1 || cs >= rows.max(1) as isize) {
        Some((
            TRANS,
            fits(if cols == 1 { rows.max(1) } else { cs as usize })?,
        ))
    } else {
        None
    }
}

/// `out = lhs · rhs` (`m × k` times `k × n`, strides in elements) on one thread. Returns
/// `false`, having written nothing, when a layout or size is outside what cblas takes.
/// Empty products never come here: `matmul::product_output` answers them with zeros.
///
/// # Safety
/// The pointers must address matrices of the given shapes and strides; `out` must not
/// overlap the inputs.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    out: *mut f32,
    out_rs: isize,
    out_cs: isize,
    lhs: *const f32,
    lhs_rs: isize,
    lhs_cs: isize,
    rhs: *const f32,
    rhs_rs: isize,
    rhs_cs: isize,
) -> bool {
    debug_assert!(m > 0 && n > 0 && k > 0, "empty product {m}x{k}x{n}");
    if out_cs != 1 || out_rs < n as isize {
        return false;
    }
    let (Some((ta, lda)), Some((tb, ldb)), Ok(m_), Ok(n_), Ok(k_), Ok(ldc)) = (
        operand(m, k, lhs_rs, lhs_cs),
        operand(k, n, rhs_rs, rhs_cs),
        c_int::try_from(m),
        c_int::try_from(n),
        c_int::try_from(k),
        c_int::try_from(out_rs),
    ) else {
        return false;
    };
    SINGLE_THREADED.call_once(|| unsafe { openblas_set_num_threads(1) });
    unsafe {
        cblas_sgemm(
            ROW_MAJOR, ta, tb, m_, n_, k_, 1.0, lhs, lda, rhs, ldb, 0.0, out, ldc,
        );
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain triple loop, the reference.
    #[allow(clippy::too_many_arguments)]
    fn naive(
        m: usize,
        n: usize,
        k: usize,
        a: &[f32],
        (ars, acs): (isize, isize),
        b: &[f32],
        (brs, bcs): (isize, isize),
    ) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                for p in 0..k {
                    let x = a[(i as isize * ars + p as isize * acs) as usize];
                    let y = b[(p as isize * brs + j as isize * bcs) as usize];
                    s += x as f64 * y as f64;
                }
                c[i * n + j] = s as f32;
            }
        }
        c
    }

    #[test]
    fn cblas_matches_the_triple_loop_for_every_transposition() {
        for &(m, n, k) in &[(1, 1, 1), (7, 5, 3), (1, 9, 4), (6, 1, 5), (33, 17, 40)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 5) % 13) as f32 - 6.0).collect();
            // Row-major and transposed views of the same buffers.
            for (a_strides, b_strides) in [
                ((k as isize, 1), (n as isize, 1)),
                ((1, m as isize), (n as isize, 1)),
                ((k as isize, 1), (1, k as isize)),
                ((1, m as isize), (1, k as isize)),
            ] {
                let want = naive(m, n, k, &a, a_strides, &b, b_strides);
                let mut got = vec![f32::NAN; m * n];
                let done = unsafe {
                    sgemm(
                        m,
                        n,
                        k,
                        got.as_mut_ptr(),
                        n as isize,
                        1,
                        a.as_ptr(),
                        a_strides.0,
                        a_strides.1,
                        b.as_ptr(),
                        b_strides.0,
                        b_strides.1,
                    )
                };
                assert!(done, "{m}x{k}x{n} {a_strides:?} {b_strides:?} not taken");
                assert_eq!(got, want, "{m}x{k}x{n} {a_strides:?} {b_strides:?}");
            }
        }
    }

    #[test]
    fn layouts_cblas_cannot_express_are_declined() {
        let a = [1.0f32; 16];
        let mut c = [0.0f32; 16];
        // A broadcast lhs (both strides zero) and a strided output.
        let broadcast = unsafe {
            sgemm(
                4,
                4,
                4,
                c.as_mut_ptr(),
                4,
                1,
                a.as_ptr(),
                0,
                0,
                a.as_ptr(),
                4,
                1,
            )
        };
        let strided_out = unsafe {
            sgemm(
                2,
                2,
                2,
                c.as_mut_ptr(),
                1,
                2,
                a.as_ptr(),
                2,
                1,
                a.as_ptr(),
                2,
                1,
            )
        };
        assert!(!broadcast && !strided_out);
        assert_eq!(c, [0.0; 16], "a declined call wrote its output");
    }
}
