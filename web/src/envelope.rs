//! How a message between the page and the model's worker travels: a `{json, bytes}`
//! object, the JSON of a [`crate::protocol`] message with a task file's bytes beside it
//! (never inside the JSON). The one packing and unpacking both sides use.

use js_sys::{Object, Reflect, Uint8Array};
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
