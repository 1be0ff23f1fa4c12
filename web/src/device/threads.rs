//! The CPU backend's threads. The threaded flavour of the wasm (`--features threads`,
//! built with atomics: `scripts/build-web.sh`) runs burn's CPU kernels on a rayon pool of
//! Web Workers that share the model worker's memory (wasm-bindgen-rayon); the worker
//! starts the pool once, before the device. The single-threaded flavour runs on the
//! worker's own thread.
//!
//! The page uses the threaded flavour only where the browser gives shared memory (a
//! cross-origin isolated page: the host's headers, or the site's service worker `sw.js`
//! that adds them); `index.html` chooses, and says why when it cannot.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Threads of the pool (1 until [`start_pool`] ran, and always 1 without threads).
static COUNT: AtomicUsize = AtomicUsize::new(1);

/// How many threads burn's CPU kernels run on.
pub fn count() -> usize {
    COUNT.load(Ordering::Relaxed)
}

/// Starts the rayon pool (threaded flavour; once per worker, before any tensor work).
#[cfg(feature = "threads")]
pub async fn start_pool() -> Result<usize, String> {
    use js_sys::Reflect;
    let cpus = Reflect::get(&js_sys::global(), &"navigator".into())
        .and_then(|n| Reflect::get(&n, &"hardwareConcurrency".into()))
        .ok()
        .and_then(|c| c.as_f64())
        .unwrap_or(0.0) as usize;
    let n = crate::text::pool_size(cpus);
    wasm_bindgen_futures::JsFuture::from(wasm_bindgen_rayon::init_thread_pool(n))
        .await
        .map_err(|e| format!("cannot start {n} threads for the CPU backend: {e:?}"))?;
    COUNT.store(n, Ordering::Relaxed);
    Ok(n)
}

/// The single-threaded flavour: nothing to start.
#[cfg(not(feature = "threads"))]
pub async fn start_pool() -> Result<usize, String> {
    Ok(1)
}

/// Whether this flavour of the wasm runs burn's CPU kernels on threads.
pub const fn threaded() -> bool {
    cfg!(feature = "threads")
}
