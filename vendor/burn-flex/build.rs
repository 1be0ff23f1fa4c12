//! Polytask patch (PATCHES.md): with the `openblas` feature, f32 products go to OpenBLAS
//! when the machine has the library, and stay on matrixmultiply (with a build warning)
//! when it does not, so a build never fails for want of it. Sets `cfg(openblas)`.

use std::path::PathBuf;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(openblas)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=OPENBLAS_LIB_DIR");
    let wasm = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "wasm32");
    if std::env::var_os("CARGO_FEATURE_OPENBLAS").is_none() || wasm {
        return;
    }
    let custom = std::env::var_os("OPENBLAS_LIB_DIR").map(PathBuf::from);
    let mut dirs: Vec<PathBuf> = custom.iter().cloned().collect();
    dirs.extend(
        [
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu",
            "/usr/lib64",
            "/usr/lib",
            "/usr/local/lib",
            "/opt/homebrew/opt/openblas/lib",
            "/usr/local/opt/openblas/lib",
        ]
        .map(PathBuf::from),
    );
    let names = ["libopenblas.so", "libopenblas.dylib", "libopenblas.a"];
    let found = dirs
        .iter()
        .find(|d| names.iter().any(|n| d.join(n).exists()));
    // Installing the library changes its directory: look again then.
    for d in dirs.iter().filter(|d| d.is_dir()) {
        println!("cargo::rerun-if-changed={}", d.display());
    }
    match found {
        Some(dir) => {
            println!("cargo::rustc-link-search=native={}", dir.display());
            println!("cargo::rustc-link-lib=openblas");
            println!("cargo::rustc-cfg=openblas");
        }
        None => println!(
            "cargo::warning=libopenblas not found (Debian: apt-get install libopenblas-dev, or set \
             OPENBLAS_LIB_DIR): f32 matrix products run on matrixmultiply, ~1.2-1.5x slower"
        ),
    }
}
