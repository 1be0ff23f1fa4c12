//! GFLOP/s of matrixmultiply::sgemm, one thread, per matmul shape of a BERT training step
//! (hidden 384, FFN 1536, 12 heads of 32, 2048 tokens). `^T`: that operand is a transposed
//! view, as burn passes it. With `--features openblas` (Debian `libopenblas-dev`) each shape
//! also runs through OpenBLAS's `cblas_sgemm`: split in row halves over two threads with
//! OpenBLAS single-threaded, and as one call with OpenBLAS's own two threads.

use std::time::Instant;

#[cfg(feature = "openblas")]
mod blas {
    #[link(name = "openblas")]
    extern "C" {
        pub fn openblas_set_num_threads(n: i32);
        #[allow(clippy::too_many_arguments)]
        pub fn cblas_sgemm(
            order: i32,
            ta: i32,
            tb: i32,
            m: i32,
            n: i32,
            k: i32,
            alpha: f32,
            a: *const f32,
            lda: i32,
            b: *const f32,
            ldb: i32,
            beta: f32,
            c: *mut f32,
            ldc: i32,
        );
    }
    pub const ROW_MAJOR: i32 = 101;
    pub const NO_TRANS: i32 = 111;
    pub const TRANS: i32 = 112;
}

/// Seconds per call of `f`, after one warm-up call.
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    t.elapsed().as_secs_f64() / reps as f64
}

// (name, m, k, n, lhs transposed, rhs transposed)
fn main() {
    let shapes: &[(&str, usize, usize, usize, bool, bool)] = &[
        ("fwd qkvo  2048x384 . 384x384", 2048, 384, 384, false, false),
        (
            "fwd ffn1  2048x384 . 384x1536",
            2048,
            384,
            1536,
            false,
            false,
        ),
        (
            "fwd ffn2  2048x1536 . 1536x384",
            2048,
            1536,
            384,
            false,
            false,
        ),
        (
            "dX  qkvo  2048x384 . (384x384)^T",
            2048,
            384,
            384,
            false,
            true,
        ),
        (
            "dX  ffn1  2048x1536 . (1536x384)^T",
            2048,
            1536,
            384,
            false,
            true,
        ),
        (
            "dW  qkvo  (2048x384)^T . 2048x384",
            384,
            2048,
            384,
            true,
            false,
        ),
        (
            "dW  ffn1  (2048x384)^T . 2048x1536",
            384,
            2048,
            1536,
            true,
            false,
        ),
        ("attn QK^T 64x32 . (64x32)^T", 64, 32, 64, false, true),
        ("attn PV   64x64 . 64x32", 64, 64, 32, false, false),
        ("attn dS.K 64x64 . 64x32", 64, 64, 32, false, false),
        ("attn P^T.dO (64x64)^T . 64x32", 64, 64, 32, true, false),
        ("tok head 2048x384 . 384x9", 2048, 384, 9, false, false),
        ("tok dW (2048x384)^T . 2048x9", 384, 2048, 9, true, false),
    ];
    for &(name, m, k, n, at, bt) in shapes {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
        let mut c = vec![0f32; m * n];
        let (rsa, csa) = if at { (1, m as isize) } else { (k as isize, 1) };
        let (rsb, csb) = if bt { (1, k as isize) } else { (n as isize, 1) };
        let flops = 2.0 * (m * k * n) as f64;
        let reps = ((2e9 / flops) as usize).max(3);
        // One call, or the output's rows cut in two halves on two threads (what the
        // burn-flex patch does for a large product).
        let run = |c: &mut [f32], threads: usize| {
            let half = m.div_ceil(threads);
            std::thread::scope(|s| {
                for (i, c) in c.chunks_mut(half * n).enumerate() {
                    let rows = c.len() / n;
                    let a = &a;
                    let b = &b;
                    let mut go = move || unsafe {
                        let a = a.as_ptr().offset(i as isize * half as isize * rsa);
                        matrixmultiply::sgemm(
                            rows,
                            k,
                            n,
                            1.0,
                            a,
                            rsa,
                            csa,
                            b.as_ptr(),
                            rsb,
                            csb,
                            0.0,
                            c.as_mut_ptr(),
                            n as isize,
                            1,
                        );
                    };
                    if threads == 1 {
                        go();
                    } else {
                        s.spawn(go);
                    }
                }
            });
        };
        let mut rates = Vec::new();
        for threads in [1, 2] {
            let s = time(reps, || run(&mut c, threads));
            rates.push(flops / s / 1e9);
        }
        println!(
            "{name:40} {:7.1} GFLOP/s on 1 thread, {:7.1} on 2",
            rates[0], rates[1]
        );
        #[cfg(feature = "openblas")]
        {
            // Row-major: a transposed operand is the same buffer read with the other flag.
            let (ta, lda) = if at {
                (blas::TRANS, m)
            } else {
                (blas::NO_TRANS, k)
            };
            let (tb, ldb) = if bt {
                (blas::TRANS, k)
            } else {
                (blas::NO_TRANS, n)
            };
            let call = |c: &mut [f32], rows: usize, row0: usize| unsafe {
                let a0 = if at { row0 } else { row0 * k };
                blas::cblas_sgemm(
                    blas::ROW_MAJOR,
                    ta,
                    tb,
                    rows as i32,
                    n as i32,
                    k as i32,
                    1.0,
                    a.as_ptr().add(a0),
                    lda as i32,
                    b.as_ptr(),
                    ldb as i32,
                    0.0,
                    c.as_mut_ptr(),
                    n as i32,
                );
            };
            unsafe { blas::openblas_set_num_threads(1) };
            let one = time(reps, || call(&mut c, m, 0));
            let half = m.div_ceil(2);
            let split = time(reps, || {
                std::thread::scope(|s| {
                    for (i, c) in c.chunks_mut(half * n).enumerate() {
                        let rows = c.len() / n;
                        s.spawn(move || call(c, rows, i * half));
                    }
                })
            });
            unsafe { blas::openblas_set_num_threads(2) };
            let own = time(reps, || call(&mut c, m, 0));
            println!(
                "{:40} {:7.1} GFLOP/s on 1 thread, {:7.1} on 2 (split), {:7.1} on 2 (its own)",
                "  openblas",
                flops / one / 1e9,
                flops / split / 1e9,
                flops / own / 1e9
            );
        }
    }
}
