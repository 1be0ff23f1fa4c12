//! What the page keeps in this browser's `localStorage`: that WebGPU failed here, and the
//! one task that pages before the task library kept (read once, to move it into the
//! library: [`crate::library`]); and the task offered as a download.

use wasm_bindgen::JsCast;
use wasm_bindgen::JsValue;

use crate::text::from_latin1;

/// Where the page remembers that WebGPU failed in this browser: a lost device switches the
/// page to the CPU at once, but a kernel error aborts the wasm instance, so that fallback
/// happens on the next load.
const WEBGPU_FAILED: &str = "polytask-webgpu-failed";

/// Where pages before the task library kept the last taught or loaded task.
const SAVED_TASK: &str = "polytask-task";

/// `localStorage` through `Reflect` (keeps web-sys features, and with them the build,
/// unchanged).
fn storage_call(method: &str, args: &[&str]) -> Option<JsValue> {
    let window: JsValue = web_sys::window()?.into();
    let storage = js_sys::Reflect::get(&window, &"localStorage".into()).ok()?;
    let f: js_sys::Function = js_sys::Reflect::get(&storage, &method.into())
        .ok()?
        .dyn_into()
        .ok()?;
    let args: js_sys::Array = args.iter().map(|a| JsValue::from_str(a)).collect();
    f.apply(&storage, &args).ok()
}

/// Why WebGPU failed in this browser, if it did (and the user has not tried it again since).
pub fn webgpu_failure() -> Option<String> {
    storage_call("getItem", &[WEBGPU_FAILED]).and_then(|v| v.as_string())
}

/// Remembers that WebGPU failed, and why: the next start (or load) takes the CPU.
pub fn remember_webgpu_failure(why: &str) {
    storage_call("setItem", &[WEBGPU_FAILED, why]);
}

/// Forgets a WebGPU failure (the user asks for WebGPU again).
pub fn forget_webgpu_failure() {
    storage_call("removeItem", &[WEBGPU_FAILED]);
}

/// The task file that an earlier page kept in `localStorage` (base64), if any.
pub fn remembered_task() -> Option<Vec<u8>> {
    let b64 = storage_call("getItem", &[SAVED_TASK])?.as_string()?;
    from_latin1(&web_sys::window()?.atob(&b64).ok()?)
}

/// Forgets that task (the library holds it now).
pub fn forget_task() {
    storage_call("removeItem", &[SAVED_TASK]);
}

/// Offers a task file as a download, named after its task (`NAME.task.safetensors`).
pub fn download_task(name: &str, file: &[u8]) -> Result<(), String> {
    download(&format!("{name}.task.safetensors"), file)
}

/// Offers `bytes` as a file download.
fn download(name: &str, bytes: &[u8]) -> Result<(), String> {
    let array = js_sys::Array::new();
    array.push(&js_sys::Uint8Array::from(bytes).buffer());
    let blob =
        web_sys::Blob::new_with_buffer_source_sequence(&array).map_err(|e| format!("{e:?}"))?;
    let url = web_sys::Url::create_object_url_with_blob(&blob).map_err(|e| format!("{e:?}"))?;
    let document = web_sys::window()
        .and_then(|w| w.document())
        .ok_or("no document")?;
    let a: web_sys::HtmlAnchorElement = document
        .create_element("a")
        .map_err(|e| format!("{e:?}"))?
        .unchecked_into();
    a.set_href(&url);
    a.set_download(name);
    a.click();
    let _ = web_sys::Url::revoke_object_url(&url);
    Ok(())
}
