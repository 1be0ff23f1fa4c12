//! How a message between the page and the model's worker travels: a `{json, bytes}`
//! object, the JSON of a [`crate::protocol`] message with a task file's bytes beside it
//! (never inside the JSON), and with a start, the bundle's files that the page read while
//! its wasm compiled (`files`: `{url: {bytes: ArrayBuffer, cached}}`, transferred, not
//! copied). The one packing and unpacking both sides use.

use js_sys::{Array, ArrayBuffer, Object, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};

/// `{json, bytes}` for `postMessage`.
pub fn pack(json: &str, bytes: Option<&[u8]>) -> Object {
    let message = Object::new();
    let _ = Reflect::set(&message, &"json".into(), &json.into());
    if let Some(bytes) = bytes {
        let _ = Reflect::set(&message, &"bytes".into(), &Uint8Array::from(bytes));
    }
    message
}

/// `message` with the page's `files` of the bundle beside its JSON.
pub fn with_files(message: Object, files: &JsValue) -> Object {
    let _ = Reflect::set(&message, &"files".into(), files);
    message
}

/// What `postMessage` transfers rather than copies: the buffers of `message`'s files.
pub fn transferables(message: &JsValue) -> Array {
    let list = Array::new();
    if let Some(files) = Reflect::get(message, &"files".into())
        .ok()
        .and_then(|f| f.dyn_into::<Object>().ok())
    {
        for file in Object::values(&files) {
            if let Ok(buffer) =
                Reflect::get(&file, &"bytes".into()).and_then(|b| b.dyn_into::<ArrayBuffer>())
            {
                list.push(&buffer);
            }
        }
    }
    list
}

/// The `files` of a `message` event (the page's, with a start), if any.
pub fn files(event: &JsValue) -> Option<JsValue> {
    Reflect::get(event, &"data".into())
        .and_then(|data| Reflect::get(&data, &"files".into()))
        .ok()
        .filter(JsValue::is_object)
}

/// One of those `files`, by URL: its bytes, and whether the page read them from the Cache
/// API. `None` where the page did not read it.
pub fn file(files: &JsValue, url: &str) -> Option<(Uint8Array, bool)> {
    let file = Reflect::get(files, &url.into())
        .ok()
        .filter(JsValue::is_object)?;
    let bytes = Reflect::get(&file, &"bytes".into())
        .ok()?
        .dyn_into::<ArrayBuffer>()
        .ok()?;
    let cached = Reflect::get(&file, &"cached".into())
        .ok()
        .and_then(|c| c.as_bool())
        .unwrap_or(false);
    Some((Uint8Array::new(&bytes), cached))
}

/// The JSON and the bytes of a `message` event's `{json, bytes}` (`None` where missing).
pub fn unpack(event: &JsValue) -> (Option<String>, Option<Vec<u8>>) {
    let data = Reflect::get(event, &"data".into()).unwrap_or_default();
    let json = Reflect::get(&data, &"json".into())
        .ok()
        .and_then(|j| j.as_string());
    let bytes = Reflect::get(&data, &"bytes".into())
        .ok()
        .and_then(|b| b.dyn_into::<Uint8Array>().ok())
        .map(|b| b.to_vec());
    (json, bytes)
}
