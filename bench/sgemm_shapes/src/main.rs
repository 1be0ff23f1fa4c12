//! GFLOP/s of matrixmultiply::sgemm, one thread, per matmul shape of a BERT training step
//! (hidden 384, FFN 1536, 12 heads of 32, 2048 tokens). `^T`: that operand is a transposed
//! view, as burn passes it.

use std::time::Instant;

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
            run(&mut c, threads);
            let t = Instant::now();
            for _ in 0..reps {
                run(&mut c, threads);
            }
            let s = t.elapsed().as_secs_f64() / reps as f64;
            rates.push(flops / s / 1e9);
        }
        println!(
            "{name:40} {:7.1} GFLOP/s on 1 thread, {:7.1} on 2",
            rates[0], rates[1]
        );
    }
}
