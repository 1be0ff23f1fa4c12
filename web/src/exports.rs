//! Functions exported to JavaScript (`window.wasmBindings`, set by the loader in
//! www/index.html, and `window.polytaskLoseDevice`), used by the
//! browser tests to check that the core behaves in wasm exactly as it does natively.

use polytask_core::Tokenizer;
use wasm_bindgen::prelude::*;

/// Tokenizes each text of the JSON array `texts_json` with `tokenizer_json` and returns
/// a JSON array of `{ids, word_ids, offsets}`, as the native tokenizer does.
#[wasm_bindgen]
pub fn tokenize(tokenizer_json: &str, texts_json: &str, max_len: usize) -> Result<String, JsError> {
    let mut tokenizer = Tokenizer::from_json_bytes(tokenizer_json.as_bytes(), "tokenizer.json")?;
    tokenizer.set_max_len(max_len)?;
    let texts: Vec<String> = serde_json::from_str(texts_json)?;
    let out = texts
        .iter()
        .map(|t| {
            let e = tokenizer.encode(t)?;
            Ok(serde_json::json!({"ids": e.ids, "word_ids": e.word_ids, "offsets": e.offsets}))
        })
        .collect::<Result<Vec<_>, polytask_core::Error>>()?;
    Ok(serde_json::to_string(&out)?)
}

/// `window.polytaskLoseDevice()`: destroys the model worker's WebGPU devices, as when a GPU
/// goes away (the browser tests' way to lose one; the worker owns the devices, so a test
/// cannot reach them from the page).
pub fn expose_lose_device(model: crate::app::Model) {
    let f = Closure::<dyn Fn()>::new(move || {
        if let Ok(engine) = model.engine() {
            wasm_bindgen_futures::spawn_local(async move { engine.lose_device().await });
        }
    });
    if let Some(w) = web_sys::window() {
        let _ = js_sys::Reflect::set(&w, &"polytaskLoseDevice".into(), f.as_ref());
    }
    // The page lives as long as the function.
    f.forget();
}
