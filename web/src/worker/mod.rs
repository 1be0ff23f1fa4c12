//! The model's worker: a dedicated Web Worker that owns the device and the model, so that
//! the page's thread only renders. It runs the same wasm module as the page (the page
//! compiles it once and sends it over); `main` sees that it is in a worker and calls
//! [`run`]. It brings up the device, loads and verifies the bundle ([`model`], [`fetch`]),
//! predicts ([`predict`]) and teaches new tasks ([`adapt`]) as the page asks
//! ([`crate::protocol`]), and tells the page what happens meanwhile: progress, the loss of
//! each step, a lost WebGPU device, a panic.

use std::cell::{Cell, RefCell};

use js_sys::{Function, Promise, Reflect};
use polytask_core::fewshot::adapt::FewShotModel;
use polytask_core::io::task_file::TaskMeta;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, spawn_local};

use crate::device::{self, Choice, adapter};
use crate::envelope;
use crate::page::now_ms;
use crate::protocol::{Call, Event, Reply, Request, Started, TaskInfo};
use crate::watchdog;

mod adapt;
pub mod fetch;
pub mod model;
mod predict;

use model::{Loaded, build_bundle, fetch_bundle};

thread_local! {
    /// The model, once a start has loaded it.
    static LOADED: RefCell<Option<Loaded>> = const { RefCell::new(None) };
    /// Set by `Cancel`: the adaptation under way stops after its current step.
    static CANCEL: Cell<bool> = const { Cell::new(false) };
    /// When the last call came in or was answered (ms), and how many are under way.
    static LAST_CALL: Cell<f64> = const { Cell::new(0.0) };
    static CALLS: Cell<u32> = const { Cell::new(0) };
}

/// When the worker last had a call (`now_ms`), or `None` while one is under way.
pub fn busy_since() -> Option<f64> {
    (CALLS.get() == 0).then(|| LAST_CALL.get())
}

// A promise resolved after `ms` milliseconds.
#[wasm_bindgen(inline_js = r#"
export function sleep(ms) { return new Promise((resolve) => setTimeout(resolve, ms)); }
"#)]
extern "C" {
    fn sleep(ms: i32) -> Promise;
}

/// Waits `ms` milliseconds, letting the event loop run.
pub async fn sleep_ms(ms: i32) {
    let _ = JsFuture::from(sleep(ms)).await;
}

// The worker's global scope, bound here rather than through web-sys features (adding
// some rebuilds web-sys and everything above it: wgpu, leptos).
#[wasm_bindgen]
extern "C" {
    /// A dedicated worker's global scope (`self`).
    pub type Scope;

    #[wasm_bindgen(method, js_name = postMessage, catch)]
    fn post_message(this: &Scope, message: &JsValue) -> Result<(), JsValue>;

    #[wasm_bindgen(method, setter)]
    fn set_onmessage(this: &Scope, f: &Function);

    #[wasm_bindgen(method)]
    pub fn fetch(this: &Scope, url: &str) -> Promise;

    #[wasm_bindgen(method, getter, catch)]
    pub fn caches(this: &Scope) -> Result<web_sys::CacheStorage, JsValue>;
}

/// The worker's global scope.
pub fn scope() -> Scope {
    js_sys::global().unchecked_into()
}

/// Whether this wasm instance runs in a worker (the page has a window).
pub fn in_worker() -> bool {
    web_sys::window().is_none()
}

/// Whether this worker is the model's (`worker.js` marks its global scope before it
/// instantiates the module); the other workers are the threads of the CPU backend's pool
/// ([`device::threads`]), which share its memory.
pub fn is_model_worker() -> bool {
    Reflect::get(&js_sys::global(), &"polytaskModelWorker".into())
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

/// The query of the worker script's address: the page passes its own on (`?log=`).
pub fn location_search() -> String {
    Reflect::get(&js_sys::global(), &"location".into())
        .and_then(|l| Reflect::get(&l, &"search".into()))
        .ok()
        .and_then(|s| s.as_string())
        .unwrap_or_default()
}

/// The worker's main: answers the page's calls from now on, and says it is up.
pub fn run() {
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        let (text, webgpu) = watchdog::describe_panic(info);
        post(&Event::Panic { text, webgpu }, None);
    }));
    let on_message = Closure::<dyn FnMut(JsValue)>::new(|ev: JsValue| {
        let (json, bytes) = envelope::unpack(&ev);
        match json.map(|j| serde_json::from_str::<Call>(&j)) {
            Some(Ok(call)) => {
                // Cancel at once, not behind the step under way.
                if matches!(call.request, Request::Cancel) {
                    CANCEL.set(true);
                }
                spawn_local(answer(call, bytes, envelope::files(&ev)));
            }
            Some(Err(e)) => log::error!("the model's worker cannot read a message: {e}"),
            None => log::error!("the model's worker got a message without JSON"),
        }
    });
    scope().set_onmessage(on_message.as_ref().unchecked_ref());
    // The worker lives as long as its handler.
    on_message.forget();
    adapter::on_device_lost(|why| post(&Event::DeviceLost(why), None));
    // The CPU backend's threads load while the page's start is on its way.
    device::threads::begin_pool();
    post(&Event::Up, None);
}

/// Sends `event` to the page, with a task file's bytes beside it.
pub fn post(event: &Event, bytes: Option<&[u8]>) {
    let json = serde_json::to_string(event).unwrap_or_else(|e| {
        serde_json::to_string(&Event::Panic {
            text: format!("the model's worker cannot write a message: {e}"),
            webgpu: None,
        })
        .unwrap_or_default()
    });
    if let Err(e) = scope().post_message(&envelope::pack(&json, bytes)) {
        log::error!("the model's worker cannot reach the page: {e:?}");
    }
}

// A macrotask without a timer: a message to itself through a `MessageChannel`
// (`setTimeout(0)` is clamped to 4 ms once nested, as a loop of steps soon is).
#[wasm_bindgen(inline_js = r#"
let channel = null;
const waiting = [];
export function next_task() {
  if (!channel) {
    channel = new MessageChannel();
    channel.port1.onmessage = () => waiting.shift()?.();
  }
  return new Promise((resolve) => { waiting.push(resolve); channel.port2.postMessage(null); });
}
"#)]
extern "C" {
    fn next_task() -> Promise;
}

/// Lets the worker's event loop run between steps (a macrotask, unlike an awaited resolved
/// promise): the page's messages (Cancel, a prediction) get in.
pub async fn yield_now() {
    let _ = JsFuture::from(next_task()).await;
}

/// Clones what a call needs from the loaded model (the device work then runs without
/// holding it), or says that nothing is loaded yet.
fn with_loaded<T>(f: impl FnOnce(&Loaded) -> T) -> Result<T, String> {
    LOADED.with_borrow(|l| l.as_ref().map(f).ok_or_else(not_loaded))
}

/// Changes the loaded model, or says that nothing is loaded yet.
fn with_loaded_mut<T>(f: impl FnOnce(&mut Loaded) -> T) -> Result<T, String> {
    LOADED.with_borrow_mut(|l| l.as_mut().map(f).ok_or_else(not_loaded))
}

fn not_loaded() -> String {
    "The model is not loaded yet.".to_string()
}

/// Answers `call`; `bytes`: a task file beside it; `files`: with a start, the bundle's
/// files that the page read while its wasm compiled (see [`envelope`]).
async fn answer(call: Call, bytes: Option<Vec<u8>>, files: Option<JsValue>) {
    CALLS.set(CALLS.get() + 1);
    LAST_CALL.set(now_ms());
    let (reply, out) = match call.request {
        Request::Start {
            choice,
            bundle_base,
            webgpu_failure,
        } => {
            let started = start(choice, &bundle_base, webgpu_failure, files).await;
            (Reply::Started(started), None)
        }
        Request::Predict { text } => (Reply::Predicted(predict::predict_all(&text).await), None),
        Request::Adapt(request) => {
            CANCEL.set(false);
            match adapt::teach(request).await {
                Ok((adapted, file)) => (Reply::Adapted(Ok(adapted)), Some(file)),
                Err(e) => (Reply::Adapted(Err(e)), None),
            }
        }
        Request::Cancel => (Reply::Done, None),
        Request::LoadTask { file_name } => {
            let loaded = match bytes {
                Some(bytes) => load_task(&bytes, &file_name),
                None => Err(format!("{file_name}: no bytes came with it")),
            };
            (Reply::TaskLoaded(loaded), None)
        }
        Request::DropTask { name } => {
            // Nothing loaded: no task to drop.
            let _ = with_loaded_mut(|l| l.tasks.retain(|(_, m)| m.name != name));
            (Reply::Done, None)
        }
        Request::LoseDevice => {
            adapter::lose_devices();
            (Reply::Done, None)
        }
    };
    post(&Event::Reply { id: call.id, reply }, out.as_deref());
    CALLS.set(CALLS.get() - 1);
    LAST_CALL.set(now_ms());
}

/// Brings up the device (and checks it) and loads the bundle. The bundle's files are
/// fetched (or taken from the page's `files`) and verified while the device comes up (the
/// threaded flavour's pool takes a few hundred milliseconds to start), then the model is
/// built on the device.
async fn start(
    choice: Choice,
    bundle_base: &str,
    webgpu_failure: Option<String>,
    files: Option<JsValue>,
) -> Started {
    post(&Event::Status("starting…".into()), None);
    let progress = |done, total, note| post(&Event::Loading { done, total, note }, None);
    let device_up = async {
        let t0 = now_ms();
        // The threaded flavour's pool, before any tensor work.
        device::threads::start_pool().await?;
        let t_pool = now_ms();
        let (device, backend) = device::init_device(choice, webgpu_failure).await;
        post(&Event::Backend(backend), None);
        match device::check(&device).await {
            Ok(v) if (v - 54.0).abs() < 1e-4 => {}
            Ok(v) => return Err(format!("got {v}, expected 54")),
            Err(e) => return Err(e),
        }
        log::debug!(
            "device up in {:.0} ms (threads {:.0} ms)",
            now_ms() - t0,
            t_pool - t0
        );
        post(&Event::Status("loading the model…".into()), None);
        Ok(device)
    };
    let (device, fetched) = futures::join!(device_up, fetch_bundle(bundle_base, files, progress));
    let device = match device {
        Ok(device) => device,
        Err(e) => return Started::DeviceCheckFailed(e),
    };
    match fetched.and_then(|f| build_bundle(f, &device, progress)) {
        Ok(loaded) => {
            let base = loaded.base.clone();
            let cpu = loaded.device == burn::tensor::Device::flex();
            LOADED.set(Some(loaded));
            // Not on WebGPU: there the warm-up would compile every kernel of a step first
            // (minutes on a software adapter), holding up the visitor's calls.
            if cpu {
                spawn_local(adapt::warm_up_when_idle());
            }
            Started::Ready { base }
        }
        Err(e) => Started::BundleFailed(e),
    }
}

/// Loads a task file onto the model, in place of a task of the same name.
fn load_task(bytes: &[u8], file_name: &str) -> Result<TaskInfo, String> {
    let (model, meta) = with_loaded(|l| l.load_task(bytes, file_name))??;
    install(model, meta)
}

/// Whether the page asked to cancel since the adaptation began.
fn cancelled() -> bool {
    CANCEL.get()
}

/// Adds a task to the loaded model, in place of one of the same name.
fn install(model: FewShotModel, meta: TaskMeta) -> Result<TaskInfo, String> {
    let info = TaskInfo::from(&meta);
    with_loaded_mut(|l| l.install_task(model, meta))?;
    Ok(info)
}
