//! The App shell: starts the model's worker (which brings up the device, checks it and
//! loads the bundle) and restarts it on another backend (the user's switch, a lost WebGPU
//! device); shows what the worker says; hosts the Try-it, Teach and task-library boxes,
//! which share it.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::device::{self, Backend, Choice, threads};
use crate::engine::Engine;
use crate::page::query_param;
use crate::protocol::{Event, Started};
use crate::storage;
use crate::tasks::{Library, TaskLibrary, after_start};
use crate::teach::{AdaptLive, TaskSlot, Teach};
use crate::text::bundle_base;
use crate::try_it::{TryIt, TryResult};
use crate::watchdog::{self, Watchdog};

/// The page's model: the worker that holds it, none before the first start. A handle:
/// copies share it.
#[derive(Clone, Copy)]
pub struct Model(StoredValue<Option<Engine>, LocalStorage>);

impl Default for Model {
    fn default() -> Self {
        Model(StoredValue::new_local(None))
    }
}

impl Model {
    /// The worker, to call.
    pub fn engine(&self) -> Result<Engine, String> {
        self.0
            .get_value()
            .ok_or_else(|| "The model is not loaded yet.".to_string())
    }

    /// Ends the current worker (if any) and keeps `engine` instead.
    fn replace(&self, engine: Option<Engine>) {
        if let Some(old) = self.0.get_value() {
            old.end();
        }
        self.0.set_value(engine);
    }
}

#[component]
pub fn App() -> impl IntoView {
    let (backend, set_backend) = signal(None::<Backend>);
    let (status, set_status) = signal(String::from("starting…"));
    let (load_done, set_load_done) = signal(0u64);
    let (load_total, set_load_total) = signal(0u64);
    let (load_note, set_load_note) = signal(String::new());
    let (error, set_error) = signal(String::new());

    // Shared with the boxes.
    let model = Model::default();
    let task = TaskSlot::default();
    let library = Library::default();
    let live = AdaptLive::default();
    let busy = RwSignal::new(false);
    let shown = RwSignal::new(TryResult::default());
    let patience = Signal::derive(move || backend.get().and_then(|b| b.patience_s()));
    // Watches the device check (a WebGPU device that never answers) until loading starts.
    let check_guard = StoredValue::new_local(None::<Watchdog>);
    // A lost device restarts the page: set below, once `start` exists.
    let on_lost = StoredValue::new_local(None::<std::rc::Rc<dyn Fn(String)>>);

    let on_event = move |event: Event| match event {
        Event::Status(s) => {
            if s != "starting…" {
                check_guard.set_value(None);
            }
            set_status.set(s);
        }
        Event::Backend(mut b) => {
            if b.label == "cpu"
                && b.threads == 1
                && let Some(why) = crate::page::single_thread_why()
            {
                b.detail = format!("{}; one thread: {why}", b.detail);
            }
            check_guard.set_value(Some(Watchdog::arm(b.patience_s(), "the device check")));
            set_backend.set(Some(b));
        }
        Event::Loading { done, total, note } => {
            set_load_done.set(done);
            set_load_total.set(total);
            set_load_note.set(note);
        }
        Event::Step { done, steps, loss } => live.step(done, steps, loss),
        Event::Notice(n) => task.say(n),
        Event::DeviceLost(why) => {
            if let Some(f) = on_lost.get_value() {
                f(why);
            }
        }
        Event::Panic { text, webgpu } => {
            busy.set(false);
            watchdog::report_panic(&text, webgpu.as_deref());
        }
        Event::Up | Event::Reply { .. } => {}
    };

    let bundle_base = crate::page::absolute(&bundle_base(query_param("bundle")));

    // Start (or restart on another backend): a fresh worker brings up the device, checks
    // it and loads the bundle; then the page's task (or the newest of the library).
    // Each start counts: a start that finds a later one begun meanwhile gives way to it.
    let starts = StoredValue::new_local(0u64);
    let start = move |choice: Choice| {
        let bundle_base = bundle_base.clone();
        set_status.set("starting…".into());
        set_error.set(String::new());
        watchdog::new_device();
        model.replace(None);
        starts.update_value(|n| *n += 1);
        let this_start = starts.get_value();
        spawn_local(async move {
            let webgpu_failure = storage::webgpu_failure();
            // The threaded flavour has no WebGPU: the model's worker then runs the
            // single-threaded one, if WebGPU is what the start will take.
            let webgpu = threads::threaded()
                && device::webgpu_adapter(choice, webgpu_failure.clone())
                    .await
                    .is_ok();
            let engine = Engine::spawn(webgpu, on_event).await;
            if starts.get_value() != this_start {
                if let Ok(e) = engine {
                    e.end();
                }
                return;
            }
            let engine = match engine {
                Ok(e) => e,
                Err(e) => {
                    set_status.set(format!("the model's worker could not start: {e}"));
                    return;
                }
            };
            model.replace(Some(engine.clone()));
            let started = engine.start(choice, bundle_base, webgpu_failure).await;
            check_guard.set_value(None);
            match started {
                Ok(Started::Ready { base }) => {
                    if let Some(e) = after_start(&engine, base, task, library).await {
                        set_error.set(e);
                    }
                    set_status.set("ready".into());
                }
                Ok(Started::DeviceCheckFailed(e)) => {
                    set_status.set(format!("device check failed: {e}"));
                }
                Ok(Started::BundleFailed(e)) => {
                    set_error.set(format!("The model bundle could not be loaded: {e}"));
                    set_status.set("bundle failed".into());
                }
                // The worker was ended (another start) or died (reported already).
                Err(e) => log::warn!("a start ended: {e}"),
            }
        });
    };
    start(Choice::from_query(query_param("backend").as_deref()));

    // A lost WebGPU device: say so and carry on on the CPU in a fresh worker, with the
    // page's task (its file is kept by the page).
    let restart = start.clone();
    on_lost.set_value(Some(std::rc::Rc::new(move |why: String| {
        if backend.get_untracked().is_none_or(|b| !b.is_webgpu()) {
            return;
        }
        storage::remember_webgpu_failure(&format!("the device was lost: {why}"));
        busy.set(false);
        restart(Choice::Auto);
    })));

    let on_switch = move |_| {
        let to_cpu = backend.get_untracked().is_some_and(|b| b.is_webgpu());
        if !to_cpu {
            storage::forget_webgpu_failure();
        }
        start(if to_cpu { Choice::Cpu } else { Choice::WebGpu });
    };

    // The browser tests lose the worker's WebGPU device at will (`window.polytaskLoseDevice()`).
    crate::exports::expose_lose_device(model);

    view! {
        <main>
            <h1>"Polytask"</h1>
            <p class="tagline">"Multi-task and few-shot NLP, in your browser."</p>
            <p>
                "Backend: "
                <strong
                    id="backend"
                    data-backend=move || backend.get().map(|b| b.label).unwrap_or_default()
                    data-threads=move || backend.get().map(|b| b.threads.to_string()).unwrap_or_default()
                >
                    {move || backend.get().map(|b| b.detail).unwrap_or_else(|| "detecting…".into())}
                </strong>
                " "
                <button id="switch" on:click=on_switch disabled=move || busy.get()>
                    {move || if backend.get().is_some_and(|b| b.is_webgpu()) { "Use the CPU" } else { "Try WebGPU" }}
                </button>
            </p>
            <p>"Status: " <span id="status">{move || status.get()}</span></p>
            <p>
                <progress id="load-progress" max=move || load_total.get().max(1) value=move || load_done.get()></progress>
                " "
                <span id="load-note">{move || load_note.get()}</span>
            </p>
            <p id="error" class="error">{move || error.get()}</p>

            <TryIt model shown patience />
            <Teach model task library live busy shown patience />
            <TaskLibrary model task library />
            <pre id="panic" class="error"></pre>
        </main>
    }
}
