//! Polytask in the browser: a Leptos CSR app on the same core as the native binary.
//!
//! The page brings up a burn device (WebGPU on a hardware adapter, else the CPU backend
//! compiled to wasm; the user can switch, and `?backend=webgpu|cpu` chooses at load), loads
//! a model bundle (`core-train export`, served beside the page under `bundle/`, or
//! `?bundle=PATH`) with a progress bar and checksums, and then:
//! - **Try it**: each bundled task's prediction for a sentence: the label and confidences of
//!   sentence tasks, the entities of token tasks highlighted in the text;
//! - **Teach a new task**: labels and a few examples each, adapted in the page one step at
//!   a time (the page stays responsive), with a progress bar, a live loss curve and the
//!   time taken; held-out examples are scored; the task can be downloaded and loaded again.
//!
//! Modules:
//! - [`app`]: the App shell (device, bundle, restarts), hosting the two boxes;
//! - [`try_it`] and [`teach`]: the Try-it and Teach boxes (prediction, adaptation);
//! - [`device`]: which device, and the WebGPU workarounds ([`device::adapter`]);
//! - [`model`] and [`bundle`]: the loaded model, and fetching and verifying the bundle;
//! - [`storage`]: what the page keeps in this browser, and downloads;
//! - [`watchdog`]: WebGPU failures noticed (a silent device, a panic) and reported;
//! - [`text`]: the pure text logic, unit-tested on the host (`cargo test -p polytask-web`);
//! - [`page`], [`console_log`], [`examples`], [`exports`]: the page's address and clock,
//!   the libraries' log, the example tasks, the functions the browser tests call.

use wasm_bindgen::prelude::*;

mod app;
mod console_log;
mod device;
mod examples;
mod exports;
mod fetch;
mod model;
mod page;
mod storage;
mod teach;
mod text;
mod try_it;
mod watchdog;

fn main() {
    console_log::init(
        page::query_param("log")
            .and_then(|l| l.parse().ok())
            .unwrap_or(log::LevelFilter::Warn),
    );
    watchdog::install_panic_hook();
    leptos::mount::mount_to_body(app::App);
}

/// Keeps the exported functions linked into the binary.
#[wasm_bindgen]
pub fn polytask_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
