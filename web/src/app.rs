//! The App shell: brings up the device (and its check), loads the bundle, and restarts on
//! another backend (the user's switch, a lost WebGPU device); hosts the Try-it and Teach
//! boxes, which share the loaded model.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::device::{self, Backend, Choice, adapter};
use crate::model::{LoadProgress, Model, load_bundle};
use crate::page::query_param;
use crate::storage;
use crate::teach::{TaskSlot, Teach};
use crate::text::bundle_base;
use crate::try_it::{TryIt, TryResult};
use crate::watchdog::{self, Watchdog};

#[component]
pub fn App() -> impl IntoView {
    let (backend, set_backend) = signal(None::<Backend>);
    let (status, set_status) = signal(String::from("starting…"));
    let (load_done, set_load_done) = signal(0u64);
    let (load_total, set_load_total) = signal(0u64);
    let (load_note, set_load_note) = signal(String::new());
    let (error, set_error) = signal(String::new());
    let progress = LoadProgress {
        done: set_load_done,
        total: set_load_total,
        note: set_load_note,
    };

    // Shared with the boxes.
    let model = Model::default();
    let task = TaskSlot::default();
    let busy = RwSignal::new(false);
    let shown = RwSignal::new(TryResult::default());
    let patience = Signal::derive(move || backend.get().and_then(|b| b.patience_s()));

    let bundle_base = bundle_base(query_param("bundle"));

    // Start (or restart on another backend): device, check, bundle.
    let start = move |choice: Choice| {
        let bundle_base = bundle_base.clone();
        spawn_local(async move {
            set_status.set("starting…".into());
            set_error.set(String::new());
            watchdog::new_device();
            let (device, b) = device::init_device(choice).await;
            let guard = Watchdog::arm(b.patience_s(), "the device check");
            set_backend.set(Some(b));
            let checked = device::check(&device).await;
            drop(guard);
            match checked {
                Ok(v) if (v - 54.0).abs() < 1e-4 => {}
                Ok(v) => {
                    set_status.set(format!("device check failed: got {v}, expected 54"));
                    return;
                }
                Err(e) => {
                    set_status.set(format!("device check failed: {e}"));
                    return;
                }
            }
            set_status.set("loading the model…".into());
            match load_bundle(&bundle_base, &device, progress).await {
                Ok(mut l) => {
                    // The page's task comes along (or back from the last visit).
                    if let Err(e) = task.carry_to(&mut l).await {
                        set_error.set(format!("the taught task could not move: {e}"));
                    }
                    model.set(Some(l));
                    set_status.set("ready".into());
                }
                Err(e) => {
                    set_error.set(format!("The model bundle could not be loaded: {e}"));
                    set_status.set("bundle failed".into());
                }
            }
        });
    };
    start(Choice::from_query(query_param("backend").as_deref()));

    // A lost WebGPU device: say so and carry on on the CPU, with the task kept in this
    // browser (the taught task's weights were on the lost device).
    let restart = start.clone();
    adapter::on_device_lost(move |why| {
        if backend.get_untracked().is_none_or(|b| !b.is_webgpu()) {
            return;
        }
        storage::remember_webgpu_failure(&format!("the device was lost: {why}"));
        task.drop_weights();
        model.set(None);
        busy.set(false);
        restart(Choice::Auto);
    });

    let on_switch = move |_| {
        let to_cpu = backend.get_untracked().is_some_and(|b| b.is_webgpu());
        if !to_cpu {
            storage::forget_webgpu_failure();
        }
        model.set(None);
        start(if to_cpu { Choice::Cpu } else { Choice::WebGpu });
    };

    view! {
        <main>
            <h1>"Polytask"</h1>
            <p class="tagline">"Multi-task and few-shot NLP, in your browser."</p>
            <p>
                "Backend: "
                <strong id="backend" data-backend=move || backend.get().map(|b| b.label).unwrap_or_default()>
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
            <Teach model task busy shown patience />
            <pre id="panic" class="error"></pre>
        </main>
    }
}
