//! How the page notices that WebGPU failed and tells the user: a watchdog on each operation
//! (a device that stops answering), the panic hooks (a kernel error aborts the wasm
//! instance; the model's worker reports its panics to the page), and the `#panic` box.
//! Either way the failure is remembered ([`storage::remember_webgpu_failure`]) so that the
//! next load runs on the CPU.
//! A lost device (`GPUDevice.lost`) is handled by the App shell, which restarts on the CPU.

use std::cell::Cell;
use std::rc::Rc;

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

use crate::{console_log, storage};

/// How long one operation may leave WebGPU without an answer before the page gives up on it:
/// a GPU compiles a kernel in well under a second and the first forward pass in seconds.
pub const WEBGPU_PATIENCE_S: u32 = 400;

/// The same on a software adapter (SwiftShader), which the user chose: it compiles every
/// kernel on the CPU, and the kernels of a first adaptation take many minutes.
pub const WEBGPU_SOFTWARE_PATIENCE_S: u32 = 1800;

thread_local! {
    /// Counts the devices the page has started; a watchdog only speaks for its own device.
    static GENERATION: Cell<u32> = const { Cell::new(0) };
}

/// A new device is starting: watchdogs armed for the previous ones fall silent.
pub fn new_device() {
    GENERATION.set(GENERATION.get() + 1);
}

/// Guards one operation on WebGPU: a device that stops answering (a lost device does not
/// always panic) is reported like a failed one after [`WEBGPU_PATIENCE_S`] (software
/// adapters: [`WEBGPU_SOFTWARE_PATIENCE_S`]), and the next
/// load runs on the CPU. Dropping the guard marks the operation finished.
pub struct Watchdog(Rc<Cell<bool>>);

impl Watchdog {
    /// `patience_s`: [`crate::device::Backend::patience_s`] (`None`: nothing to watch).
    pub fn arm(patience_s: Option<u32>, what: &'static str) -> Self {
        let done = Rc::new(Cell::new(patience_s.is_none()));
        if let Some(patience_s) = patience_s {
            let done = done.clone();
            let generation = GENERATION.get();
            let fire = Closure::once_into_js(move || {
                if !done.get() && generation == GENERATION.get() {
                    let why = format!("no answer for {patience_s} s during {what}");
                    storage::remember_webgpu_failure(&why);
                    show_problem(&webgpu_failed_message(&why));
                }
            });
            if let Some(w) = web_sys::window() {
                let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(
                    fire.unchecked_ref(),
                    (patience_s * 1000) as i32,
                );
            }
        }
        Watchdog(done)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

/// Shows a problem in the page's `#panic` box.
pub fn show_problem(message: &str) {
    if let Some(el) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.get_element_by_id("panic"))
    {
        el.set_text_content(Some(message));
    }
}

/// What the page says when WebGPU fails, whatever the way.
pub fn webgpu_failed_message(why: &str) -> String {
    format!(
        "WebGPU failed: {why}. The last task you taught or loaded is kept by this browser; \
         reload the page and it will run on the CPU."
    )
}

/// What a panic says, and the WebGPU failure to remember when it was WebGPU's (the first
/// line of wgpu's error): the text the page shows.
pub fn describe_panic(info: &std::panic::PanicHookInfo) -> (String, Option<String>) {
    let mut text = info.to_string();
    if !(text.contains("wgpu") || text.contains("WebGPU")) {
        return (text, None);
    }
    // The device was lost for a reason logged earlier (a shader that failed to compile,
    // say): that reason is what the user and a bug report need.
    if let Some(cause) = console_log::last_error() {
        let cause = cause.split("--- shader source").next().unwrap_or_default();
        let cause: String = cause.trim().chars().take(800).collect();
        text = format!("{text}\nEarlier: {cause}");
    }
    let first_line = text
        .lines()
        .find(|l| l.contains("wgpu error"))
        .unwrap_or("device error")
        .trim()
        .to_string();
    (text, Some(first_line))
}

/// Shows a panic (the page's own, or one the model's worker reported) in the page, not
/// only in the console. A failing WebGPU device is remembered so that the next load runs
/// on the CPU.
pub fn report_panic(text: &str, webgpu: Option<&str>) {
    match webgpu {
        Some(first_line) => {
            storage::remember_webgpu_failure(first_line);
            show_problem(&webgpu_failed_message(text));
        }
        None => show_problem(&format!(
            "Internal error (please report): {text}. Reload the page to start again."
        )),
    }
}

/// The page's panic hook: [`report_panic`].
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        let (text, webgpu) = describe_panic(info);
        report_panic(&text, webgpu.as_deref());
    }));
}
