//! Polytask in the browser: a Leptos CSR app on the same core as the native binary.
//!
//! The page renders; a Web Worker owns the model (the same wasm module, sent over by the
//! page: `main` sees which of the two it runs in). Two flavours of this crate
//! (`web/Cargo.toml`): `threads` runs burn's CPU kernels on a pool of workers over shared
//! memory ([`device::threads`]), the single-threaded one has WebGPU; `index.html` picks. The worker brings up a burn device
//! (WebGPU on a hardware adapter, else the CPU backend compiled to wasm with SIMD; the
//! user can switch, and `?backend=webgpu|cpu` chooses at load), loads a model bundle
//! (`core-train export`, served beside the page under `bundle/`, or `?bundle=PATH`) with
//! a progress bar and checksums, and then:
//! - **Try it**: each bundled task's prediction for a sentence: the label and confidences of
//!   sentence tasks, the entities of token tasks highlighted in the text;
//! - **Teach a new task**: labels and a few examples each, adapted in the worker one step
//!   at a time (the page never waits on it), with a progress bar, a live loss curve, a
//!   Cancel button and the time taken; held-out examples are scored; the task can be
//!   downloaded and loaded again;
//! - **Your tasks**: every task taught or loaded, kept in IndexedDB: used, renamed,
//!   exported, deleted.
//!
//! Modules:
//! - [`app`]: the App shell (the worker, restarts), hosting the two boxes;
//! - [`try_it`], [`teach`] and [`tasks`]: the Try-it, Teach and Your-tasks boxes;
//! - [`library`]: the task library in IndexedDB;
//! - [`engine`], [`protocol`], [`envelope`] and [`worker`]: the page's handle on the worker,
//!   the messages between them and how they travel, and the worker itself (model, bundle,
//!   prediction, adaptation);
//! - [`device`]: which device, and the WebGPU workarounds ([`device::adapter`]);
//! - [`storage`]: what the page keeps in this browser, and downloads;
//! - [`watchdog`]: WebGPU failures noticed (a silent device, a panic) and reported;
//! - [`text`]: the pure text logic, unit-tested on the host (`cargo test -p polytask-web`);
//! - [`page`], [`console_log`], [`examples`], [`exports`]: the page's address and clock,
//!   the libraries' log, the example tasks, the functions the browser tests call.

use wasm_bindgen::prelude::*;

mod app;
mod console_log;
mod device;
mod engine;
mod envelope;
mod examples;
mod exports;
mod library;
mod page;
mod protocol;
mod storage;
mod tasks;
mod teach;
mod text;
mod try_it;
mod watchdog;
mod worker;

// The static constructors of the module (cubecl's `inventory` registrations), which
// wasm-ld synthesises. Unless they are exported, wasm-ld wraps every exported function
// (`NAME.command_export`) to run them first: each call from JavaScript into the module (a
// closure the browser calls back, a value handed over) ran them again, tens of ms at a
// time. `build.rs` exports them, so nothing runs them but this call, once.
#[cfg(target_arch = "wasm32")]
unsafe extern "C" {
    fn __wasm_call_ctors();
}

fn main() {
    let on_page = !worker::in_worker();
    if !on_page && !worker::is_model_worker() {
        // A thread of the CPU backend's pool (the threaded flavour): it shares the model
        // worker's memory, where the constructors ran; wasm-bindgen-rayon runs its loop.
        return;
    }
    // Before anything else, once per instance (the page's and the model worker's).
    #[cfg(target_arch = "wasm32")]
    unsafe {
        __wasm_call_ctors()
    };
    if !on_page {
        // The log level travels in the worker script's address (the page passes its query on).
        console_log::init(log_level(&worker::location_search()));
        worker::run();
        return;
    }
    console_log::init(log_level(&page::search()));
    watchdog::install_panic_hook();
    leptos::mount::mount_to_body(app::App);
}

/// `?log=LEVEL` in an address's query; warnings and errors by default.
fn log_level(search: &str) -> log::LevelFilter {
    text::query_value(search, "log")
        .and_then(|l| l.parse().ok())
        .unwrap_or(log::LevelFilter::Warn)
}

/// Keeps the exported functions linked into the binary.
#[wasm_bindgen]
pub fn polytask_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
