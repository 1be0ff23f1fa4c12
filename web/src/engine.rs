//! The page's handle on the model's worker ([`crate::worker`]): starts it on a wasm module
//! the page compiled (`window.polytaskWasm.pick`, set by `index.html`: the page's own
//! flavour, or the single-threaded one for WebGPU), sends it calls
//! and awaits their replies, and hands everything else the worker says to the App shell.
//! A restart (another backend, a lost device) ends the worker and starts a fresh one, so
//! nothing of the old device survives; calls still waiting are then answered with an error.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::device::Choice;
use crate::envelope;
use crate::protocol::{
    AdaptRequest, Adapted, Call, Event, Reply, Request, Started, TaskInfo, TryResult,
};

// A `Worker`, bound here rather than through web-sys features (adding some rebuilds
// web-sys and everything above it: wgpu, leptos).
#[wasm_bindgen(inline_js = r#"
export function new_module_worker(url) { return new Worker(url, { type: 'module' }); }
"#)]
extern "C" {
    type Worker;

    #[wasm_bindgen(catch)]
    fn new_module_worker(url: &str) -> Result<Worker, JsValue>;

    #[wasm_bindgen(method, js_name = postMessage, catch)]
    fn post_message(this: &Worker, message: &JsValue) -> Result<(), JsValue>;

    #[wasm_bindgen(method, js_name = postMessage, catch)]
    fn post_message_transferring(
        this: &Worker,
        message: &JsValue,
        transfer: &js_sys::Array,
    ) -> Result<(), JsValue>;

    #[wasm_bindgen(method, setter)]
    fn set_onmessage(this: &Worker, f: &Function);

    #[wasm_bindgen(method, setter)]
    fn set_onerror(this: &Worker, f: &Function);

    #[wasm_bindgen(method)]
    fn terminate(this: &Worker);
}

type Answer = Result<(Reply, Option<Vec<u8>>), String>;

/// A handler of the worker's events (`onmessage`, `onerror`).
type Handler = Closure<dyn FnMut(JsValue)>;

struct Pending {
    answer: Rc<RefCell<Option<Answer>>>,
    resolve: Function,
}

struct Inner {
    worker: Worker,
    /// The worker said it is up; before that, messages wait here.
    up: Cell<bool>,
    waiting: RefCell<Vec<JsValue>>,
    next_id: Cell<u32>,
    pending: RefCell<HashMap<u32, Pending>>,
    /// Ended (restarted, or dead after a panic): calls fail at once.
    ended: Cell<bool>,
    on_event: Box<dyn Fn(Event)>,
    _handlers: RefCell<Vec<Handler>>,
}

/// The model's worker. A handle: clones share it.
#[derive(Clone)]
pub struct Engine(Rc<Inner>);

impl Engine {
    /// Starts a worker on the page's wasm module (the single-threaded flavour's when the
    /// model is to run on WebGPU: `webgpu`); `on_event` gets everything it says that is
    /// not a reply (status, progress, a lost device, a panic).
    pub async fn spawn(webgpu: bool, on_event: impl Fn(Event) + 'static) -> Result<Engine, String> {
        let wasm = crate::page::polytask_wasm()?;
        let pick = Reflect::get(&wasm, &"pick".into())
            .ok()
            .and_then(|f| f.dyn_into::<Function>().ok())
            .ok_or("window.polytaskWasm has no pick()")?;
        let picked = pick
            .call1(&wasm, &webgpu.into())
            .map_err(|e| js_text("cannot choose the model's wasm", &e))?;
        let picked = JsFuture::from(Promise::resolve(&picked))
            .await
            .map_err(|e| js_text("cannot compile the model's wasm", &e))?;
        let module = Reflect::get(&picked, &"module".into()).unwrap_or_default();
        let url = Reflect::get(&picked, &"worker".into())
            .ok()
            .and_then(|u| u.as_string())
            .ok_or("window.polytaskWasm names no worker script")?;
        // The page's query goes along (`?log=` sets the worker's log level too).
        let url = format!("{url}{}", crate::page::search());
        let worker =
            new_module_worker(&url).map_err(|e| js_text("cannot start the model's worker", &e))?;
        let inner = Rc::new(Inner {
            worker,
            up: Cell::new(false),
            waiting: RefCell::new(Vec::new()),
            next_id: Cell::new(0),
            pending: RefCell::new(HashMap::new()),
            ended: Cell::new(false),
            on_event: Box::new(on_event),
            _handlers: RefCell::new(Vec::new()),
        });
        let weak = Rc::downgrade(&inner);
        let on_message = Handler::new(move |ev: JsValue| {
            if let Some(inner) = weak.upgrade() {
                Engine(inner).receive(&ev);
            }
        });
        let weak: Weak<Inner> = Rc::downgrade(&inner);
        let on_error = Handler::new(move |ev: JsValue| {
            if let Some(inner) = weak.upgrade() {
                let message = Reflect::get(&ev, &"message".into())
                    .ok()
                    .and_then(|m| m.as_string())
                    .unwrap_or_else(|| "it failed to load or stopped".into());
                let why = format!("the model's worker stopped: {message}");
                let panic = Event::Panic {
                    text: why.clone(),
                    webgpu: None,
                };
                Engine(inner).die(&why, panic);
            }
        });
        inner
            .worker
            .set_onmessage(on_message.as_ref().unchecked_ref());
        inner.worker.set_onerror(on_error.as_ref().unchecked_ref());
        inner._handlers.borrow_mut().extend([on_message, on_error]);
        // The worker's first message: the compiled module, which it instantiates.
        inner
            .worker
            .post_message(&module)
            .map_err(|e| js_text("cannot send the module to the worker", &e))?;
        Ok(Engine(inner))
    }

    fn receive(&self, message: &JsValue) {
        let (json, bytes) = envelope::unpack(message);
        let event: Event = match serde_json::from_str(&json.unwrap_or_default()) {
            Ok(e) => e,
            Err(e) => {
                log::error!("the page cannot read the worker's message: {e}");
                return;
            }
        };
        match event {
            Event::Up => {
                self.0.up.set(true);
                for message in self.0.waiting.take() {
                    self.send(&message);
                }
            }
            Event::Reply { id, reply } => {
                let pending = self.0.pending.borrow_mut().remove(&id);
                if let Some(p) = pending {
                    *p.answer.borrow_mut() = Some(Ok((reply, bytes)));
                    let _ = p.resolve.call0(&JsValue::NULL);
                }
            }
            Event::Panic { .. } => {
                self.die("the model's worker stopped (see the error above)", event)
            }
            other => (self.0.on_event)(other),
        }
    }

    fn send(&self, message: &JsValue) {
        let transfer = envelope::transferables(message);
        if let Err(e) = self.0.worker.post_message_transferring(message, &transfer) {
            log::error!("{}", js_text("cannot send to the model's worker", &e));
        }
    }

    /// The worker is dead (it panicked, or a script error): `event` (its panic) goes to the
    /// page, calls still waiting fail with `why`, later ones at once. Said once.
    fn die(&self, why: &str, event: Event) {
        if self.0.ended.replace(true) {
            return;
        }
        self.fail_pending(why);
        (self.0.on_event)(event);
    }

    fn fail_pending(&self, why: &str) {
        let pending: Vec<Pending> = self
            .0
            .pending
            .borrow_mut()
            .drain()
            .map(|(_, p)| p)
            .collect();
        for p in pending {
            *p.answer.borrow_mut() = Some(Err(why.to_string()));
            let _ = p.resolve.call0(&JsValue::NULL);
        }
    }

    /// Ends the worker; calls still waiting fail, later ones too.
    pub fn end(&self) {
        self.0.ended.set(true);
        self.0.worker.terminate();
        self.fail_pending("the model was restarted");
    }

    /// Sends `request` (with `bytes` beside it) and waits for the reply.
    async fn call(&self, request: Request, bytes: Option<&[u8]>) -> Answer {
        self.call_with_files(request, bytes, None).await
    }

    /// [`Self::call`], with the bundle's `files` that the page read beside it.
    async fn call_with_files(
        &self,
        request: Request,
        bytes: Option<&[u8]>,
        files: Option<JsValue>,
    ) -> Answer {
        if self.0.ended.get() {
            return Err("the model's worker has stopped; reload the page".into());
        }
        let id = self.0.next_id.get();
        self.0.next_id.set(id + 1);
        let answer = Rc::new(RefCell::new(None));
        let mut resolve = None;
        let promise = Promise::new(&mut |r, _| resolve = Some(r));
        let resolve = resolve.ok_or("no promise")?;
        self.0.pending.borrow_mut().insert(
            id,
            Pending {
                answer: answer.clone(),
                resolve,
            },
        );
        let json = serde_json::to_string(&Call { id, request }).map_err(|e| e.to_string())?;
        let mut message = envelope::pack(&json, bytes);
        if let Some(files) = &files {
            message = envelope::with_files(message, files);
        }
        if self.0.up.get() {
            self.send(&message);
        } else {
            self.0.waiting.borrow_mut().push(message.into());
        }
        let _ = JsFuture::from(promise).await;
        let answer = answer.borrow_mut().take();
        answer.unwrap_or_else(|| Err("the model's worker gave no answer".into()))
    }

    /// Brings up the device and loads the bundle.
    pub async fn start(
        &self,
        choice: Choice,
        bundle_base: String,
        webgpu_failure: Option<String>,
    ) -> Result<Started, String> {
        let files = crate::page::bundle_prefetched().await;
        let request = Request::Start {
            choice,
            bundle_base,
            webgpu_failure,
        };
        match self.call_with_files(request, None, files).await? {
            (Reply::Started(s), _) => Ok(s),
            (other, _) => Err(unexpected(&other)),
        }
    }

    /// Every loaded task's prediction for `text`.
    pub async fn predict(&self, text: String) -> Result<TryResult, String> {
        match self.call(Request::Predict { text }, None).await? {
            (Reply::Predicted(r), _) => r,
            (other, _) => Err(unexpected(&other)),
        }
    }

    /// Teaches a new task: what the page shows, and the task file.
    pub async fn adapt(&self, request: AdaptRequest) -> Result<(Adapted, Vec<u8>), String> {
        match self.call(Request::Adapt(request), None).await? {
            (Reply::Adapted(r), bytes) => {
                let adapted = r?;
                Ok((adapted, bytes.ok_or("the worker sent no task file")?))
            }
            (other, _) => Err(unexpected(&other)),
        }
    }

    /// Stops the adaptation under way after its current step (its call then fails).
    pub async fn cancel(&self) {
        let _ = self.call(Request::Cancel, None).await;
    }

    /// Loads a task file onto the model.
    pub async fn load_task(&self, file_name: String, bytes: &[u8]) -> Result<TaskInfo, String> {
        match self
            .call(Request::LoadTask { file_name }, Some(bytes))
            .await?
        {
            (Reply::TaskLoaded(r), _) => r,
            (other, _) => Err(unexpected(&other)),
        }
    }

    /// Removes a task from the model.
    pub async fn drop_task(&self, name: String) {
        let _ = self.call(Request::DropTask { name }, None).await;
    }

    /// Destroys the worker's WebGPU devices (for the browser tests).
    pub async fn lose_device(&self) {
        let _ = self.call(Request::LoseDevice, None).await;
    }
}

fn unexpected(reply: &Reply) -> String {
    format!("the model's worker answered out of turn: {reply:?}")
}

fn js_text(what: &str, e: &JsValue) -> String {
    let text = e
        .as_string()
        .or_else(|| {
            Reflect::get(e, &"message".into())
                .ok()
                .and_then(|m| m.as_string())
        })
        .unwrap_or_else(|| format!("{e:?}"));
    format!("{what}: {text}")
}
