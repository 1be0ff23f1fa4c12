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

/// Why the page runs the CPU backend on one thread (`window.polytaskWasm.singleThreadWhy`,
/// set by `index.html`): no cross-origin isolation, `?threads=0`, a build without the
/// threaded flavour; `None` when the threaded flavour runs.
pub fn single_thread_why() -> Option<String> {
    js_sys::Reflect::get(&polytask_wasm().ok()?, &"singleThreadWhy".into())
        .ok()?
        .as_string()
}

/// `window.polytaskWasm`, which `index.html` sets: the compiled modules, and why the page
/// runs one thread.
pub fn polytask_wasm() -> Result<wasm_bindgen::JsValue, String> {
    js_sys::Reflect::get(&js_sys::global(), &"polytaskWasm".into())
        .ok()
        .filter(|w| w.is_object())
        .ok_or_else(|| "the page has no window.polytaskWasm (index.html sets it)".to_string())
}

/// Takes `index.html`'s head start on the bundle (`polytaskWasm.prefetch`: its files, read
/// while the wasm compiled, as `{url: {bytes, cached}}`), once: they go to the model's
/// worker with its first start, which transfers their buffers, so a later start (a
/// restart on another device) loads the bundle itself. Failures here are the worker's to
/// find and report.
pub async fn bundle_prefetched() -> Option<wasm_bindgen::JsValue> {
    use wasm_bindgen::JsCast;
    let wasm = polytask_wasm().ok()?;
    let prefetch = js_sys::Reflect::get(&wasm, &"prefetch".into()).ok()?;
    let _ = js_sys::Reflect::set(&wasm, &"prefetch".into(), &wasm_bindgen::JsValue::NULL);
    let files = wasm_bindgen_futures::JsFuture::from(prefetch.dyn_into::<js_sys::Promise>().ok()?)
        .await
        .ok()?;
    files.is_object().then_some(files)
}

/// `path` resolved against the page's address. The model's workers resolve relative
/// addresses against their own script's, which is not beside the page for every flavour
/// (`threads/`): the page sends them absolute ones.
pub fn absolute(path: &str) -> String {
    web_sys::window()
        .and_then(|w| w.location().href().ok())
        .and_then(|base| web_sys::Url::new_with_base(path, &base).ok())
        .map(|u| u.href())
        .unwrap_or_else(|| path.to_string())
}
