//! Warnings and errors logged by the libraries (the `log` crate; more with `?log=info` in
//! the page's address) go to the browser console, and the last error is kept for the page:
//! on wasm, cubecl reports a WebGPU shader that fails to compile only through `log::error!`
//! before the device is lost, so without this the reason never reaches anyone.

use std::cell::RefCell;

use wasm_bindgen::{JsCast, JsValue};

struct ConsoleLog;

static LOGGER: ConsoleLog = ConsoleLog;

thread_local! {
    static LAST_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs the logger at `level` (the page passes warnings and errors, or what `?log=LEVEL`
/// in its address asks for: `info`, `debug`, `trace`); a second call does nothing.
pub fn init(level: log::LevelFilter) {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

/// The last error logged, if any.
pub fn last_error() -> Option<String> {
    LAST_ERROR.with(|e| e.borrow().clone())
}

/// `console.error` / `.warn` / `.log` through `Reflect` (no extra web-sys features).
fn console(method: &str, text: &str) {
    let global = js_sys::global();
    if let Ok(console) = js_sys::Reflect::get(&global, &"console".into())
        && let Ok(f) = js_sys::Reflect::get(&console, &method.into())
        && let Ok(f) = f.dyn_into::<js_sys::Function>()
    {
        let _ = f.call1(&console, &JsValue::from_str(text));
    }
}

impl log::Log for ConsoleLog {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let text = format!("[{}] {}", record.target(), record.args());
        if record.level() == log::Level::Error {
            console("error", &text);
            LAST_ERROR.with(|e| *e.borrow_mut() = Some(text));
        } else if record.level() == log::Level::Warn {
            console("warn", &text);
        } else {
            console("log", &text);
        }
    }

    fn flush(&self) {}
}
