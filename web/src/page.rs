//! The browser page around the app: its address and its clock.

/// The page address's query (`?a=1&b=2`), empty when there is none.
pub fn search() -> String {
    web_sys::window()
        .and_then(|w| w.location().search().ok())
        .unwrap_or_default()
}

/// `?NAME=VALUE` in the page's address (`bundle`, `backend`, `log`).
pub fn query_param(name: &str) -> Option<String> {
    crate::text::query_value(&search(), name)
}

/// Milliseconds since the epoch (the browser's clock; the worker's too).
pub fn now_ms() -> f64 {
    js_sys::Date::now()
}
