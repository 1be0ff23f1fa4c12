//! The browser page around the app: its address, its clock, its event loop.

use wasm_bindgen_futures::JsFuture;

/// `?NAME=VALUE` in the page's address (`bundle`, `backend`, `log`).
pub fn query_param(name: &str) -> Option<String> {
    let search = web_sys::window()?.location().search().ok()?;
    crate::text::query_value(&search, name)
}

/// Milliseconds since the epoch (the browser's clock).
pub fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// Lets the page render between steps (a macrotask, unlike an awaited resolved promise).
pub async fn yield_to_page() {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 0);
        }
    });
    let _ = JsFuture::from(promise).await;
}
