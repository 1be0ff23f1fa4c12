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

#[cfg(feature = "threads")]
thread_local! {
    /// The pool's start under way: its size, and wasm-bindgen-rayon's promise.
    static STARTING: std::cell::RefCell<Option<(usize, js_sys::Promise)>> =
        const { std::cell::RefCell::new(None) };
}

/// Begins to start the rayon pool (threaded flavour; once per worker): its workers load
/// while the page's first call is still on its way ([`crate::worker::run`]).
#[cfg(feature = "threads")]
pub fn begin_pool() {
    STARTING.with_borrow_mut(|starting| {
        if starting.is_some() {
            return;
        }
        use js_sys::Reflect;
        let cpus = Reflect::get(&js_sys::global(), &"navigator".into())
            .and_then(|n| Reflect::get(&n, &"hardwareConcurrency".into()))
            .ok()
            .and_then(|c| c.as_f64())
            .unwrap_or(0.0) as usize;
        let n = crate::text::pool_size(cpus);
        *starting = Some((n, wasm_bindgen_rayon::init_thread_pool(n)));
    });
}

/// The rayon pool, started (threaded flavour; before any tensor work): its size.
#[cfg(feature = "threads")]
pub async fn start_pool() -> Result<usize, String> {
    begin_pool();
    let (n, promise) = STARTING
        .with_borrow(|s| s.clone())
        .ok_or("the CPU backend's threads were never started")?;
    wasm_bindgen_futures::JsFuture::from(promise)
        .await
        .map_err(|e| format!("cannot start {n} threads for the CPU backend: {e:?}"))?;
    COUNT.store(n, Ordering::Relaxed);
    Ok(n)
}

/// The single-threaded flavour: nothing to start.
#[cfg(not(feature = "threads"))]
pub fn begin_pool() {}

/// The single-threaded flavour: nothing to start.
#[cfg(not(feature = "threads"))]
pub async fn start_pool() -> Result<usize, String> {
    Ok(1)
}

/// Whether this flavour of the wasm runs burn's CPU kernels on threads.
pub const fn threaded() -> bool {
    cfg!(feature = "threads")
}
