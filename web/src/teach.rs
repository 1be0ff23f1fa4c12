//! "Teach a new task": labels and a few examples each, adapted by the model's worker one
//! step at a time (the page only renders), with a progress bar, a live loss curve, a
//! Cancel button and the time taken; held-out examples are scored; the task classifies new
//! text, can be downloaded and loaded again, and is kept in the task library
//! ([`crate::tasks`]).

use std::rc::Rc;

use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen_futures::JsFuture;

use crate::app::Model;
use crate::examples::EXAMPLES;
use crate::library::TaskRecord;
use crate::protocol::AdaptRequest;
use crate::storage::download_task;
use crate::tasks::Library;
use crate::text::{
    ADAPT_CHOICES, adapt_plan, check_task, loss_curve, parse_examples, parse_steps, task_name,
};
use crate::try_it::{TryResult, predict_all};
use crate::watchdog::Watchdog;

/// The task taught or loaded in the page, with the Teach box's message; shared with the
/// App shell, which loads the task onto each worker it starts (another backend, a lost
/// device), and with the task library.
#[derive(Clone, Copy)]
pub struct TaskSlot {
    /// The task's file (what Download saves, what a restart carries).
    file: StoredValue<Option<Rc<Vec<u8>>>, LocalStorage>,
    /// The task's name: the Classify button shows its predictions only.
    name: RwSignal<String>,
    /// The Teach box's message (`#teach-msg`).
    msg: RwSignal<String>,
}

impl Default for TaskSlot {
    fn default() -> Self {
        TaskSlot {
            file: StoredValue::new_local(None),
            name: RwSignal::new(String::new()),
            msg: RwSignal::new(String::new()),
        }
    }
}

impl TaskSlot {
    /// The page's task is now `name`, with its file.
    pub fn set(&self, name: &str, file: Vec<u8>) {
        self.name.set(name.to_string());
        self.file.set_value(Some(Rc::new(file)));
    }

    /// No task (it was deleted).
    pub fn clear(&self) {
        self.name.set(String::new());
        self.file.set_value(None);
    }

    /// The task's name (empty without one).
    pub fn name(&self) -> String {
        self.name.get_untracked()
    }

    /// The task's file, if there is a task.
    pub fn file(&self) -> Option<Rc<Vec<u8>>> {
        self.file.get_value()
    }

    /// Shows `text` in the Teach box.
    pub fn say(&self, text: String) {
        self.msg.set(text);
    }
}

/// The adaptation under way as the worker reports it: steps done of all, and the losses.
#[derive(Clone, Copy)]
pub struct AdaptLive {
    progress: RwSignal<(usize, usize)>,
    losses: RwSignal<Vec<f32>>,
}

impl Default for AdaptLive {
    fn default() -> Self {
        AdaptLive {
            progress: RwSignal::new((0, 0)),
            losses: RwSignal::new(Vec::new()),
        }
    }
}

impl AdaptLive {
    /// Step `done` (1-based) of `steps` ended with `loss`.
    pub fn step(&self, done: usize, steps: usize, loss: f32) {
        self.progress.set((done, steps));
        self.losses.update(|l| l.push(loss));
    }

    fn begin(&self, steps: usize) {
        self.progress.set((0, steps));
        self.losses.set(Vec::new());
    }
}

/// The Teach box. `task`: the page's task and message (shared with the shell);
/// `library`: where taught and loaded tasks are kept; `live`:
/// the adaptation's progress (the shell passes on the worker's steps); `busy`: while
/// adapting (the shell disables the backend switch); `shown`: the Try-it box's
/// predictions, where Classify shows the new task's; `patience`: the watchdog's.
#[component]
pub fn Teach(
    model: Model,
    task: TaskSlot,
    library: Library,
    live: AdaptLive,
    busy: RwSignal<bool>,
    shown: RwSignal<TryResult>,
    patience: Signal<Option<u32>>,
) -> impl IntoView {
    let (name, set_name) = signal(String::from("my-task"));
    let (labels_text, set_labels_text) = signal(String::new());
    let (examples_text, set_examples_text) = signal(String::new());
    let (heldout_text, set_heldout_text) = signal(String::new());
    let (choice, set_choice) = signal(String::from("head"));
    let (steps, set_steps) = signal(String::from("20"));
    let (adapt_time, set_adapt_time) = signal(String::new());
    let (heldout_result, set_heldout_result) = signal(String::new());
    let (classify_text, set_classify_text) = signal(String::new());
    let msg = task.msg;
    let (progress, losses) = (live.progress, live.losses);

    let on_example = move |example: &'static str| {
        if let Some(t) = EXAMPLES.iter().find(|t| t.name == example) {
            set_name.set(t.name.to_string());
            set_labels_text.set(String::new());
            set_examples_text.set(t.examples.to_string());
            set_heldout_text.set(t.heldout.to_string());
        }
    };

    let on_adapt = move |_| {
        if busy.get_untracked() {
            return;
        }
        let parsed = parse_examples(
            &examples_text.get_untracked(),
            &labels_text.get_untracked(),
            "Examples",
        )
        .and_then(|(labels, rows)| {
            check_task(&labels, &rows)?;
            let (_, heldout) =
                parse_examples(&heldout_text.get_untracked(), &labels.join(","), "Held-out")?;
            let all_steps = parse_steps(&steps.get_untracked())?;
            let (mode, contrastive_steps, steps) =
                adapt_plan(&choice.get_untracked(), all_steps)
                    .ok_or_else(|| format!("Adapt: no choice {:?}.", choice.get_untracked()))?;
            Ok(AdaptRequest {
                name: task_name(&name.get_untracked()),
                labels,
                rows,
                heldout,
                mode,
                steps,
                contrastive_steps,
            })
        });
        let request = match parsed.and_then(|r| Ok((model.engine()?, r))) {
            Ok(p) => p,
            Err(e) => {
                msg.set(e);
                return;
            }
        };
        let (engine, request) = request;
        let examples = examples_text.get_untracked();
        busy.set(true);
        msg.set(String::new());
        live.begin(request.contrastive_steps + request.steps);
        set_heldout_result.set(String::new());
        set_adapt_time.set(String::new());
        let guard = Watchdog::arm(patience.get_untracked(), "the adaptation");
        spawn_local(async move {
            let result = engine.adapt(request).await;
            drop(guard);
            match result {
                Ok((adapted, file)) => {
                    set_adapt_time.set(format!("adapted in {:.2} s", adapted.seconds));
                    if let Some((acc, n)) = adapted.heldout {
                        set_heldout_result
                            .set(format!("held-out accuracy: {acc:.3} ({n} examples)"));
                    }
                    // Named at once: Classify shows this task's predictions from now on.
                    task.set(&adapted.task.name, file.clone());
                    // Kept in the library; a failure costs only that.
                    let kept = match TaskRecord::new(&file, &adapted.task.name, &examples) {
                        Ok(record) => library.keep(record, &file).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = kept {
                        msg.set(format!("Adapted, but {e}: download it to keep it."));
                    }
                }
                Err(e) => msg.set(e),
            }
            busy.set(false);
        });
    };

    let on_cancel = move |_| {
        if let Ok(engine) = model.engine() {
            spawn_local(async move { engine.cancel().await });
        }
    };

    let on_classify = move |_| {
        let text = classify_text.get_untracked();
        let name = task.name.get_untracked();
        let guard = Watchdog::arm(patience.get_untracked(), "a prediction");
        spawn_local(async move {
            let result = predict_all(model, text).await;
            drop(guard);
            match result {
                Ok(mut r) => {
                    r.predictions.retain(|p| p.task == name);
                    if !r.predictions.is_empty() {
                        msg.set(String::new());
                        shown.set(r);
                    }
                }
                Err(e) => msg.set(e),
            }
        });
    };

    let on_save = move |_| {
        let Some(file) = task.file.get_value() else {
            msg.set("Nothing to save yet: adapt a task first.".into());
            return;
        };
        let name = task.name.get_untracked();
        if let Err(e) = download_task(&name, &file) {
            msg.set(e);
        }
    };

    let on_load_task = move |ev: web_sys::Event| {
        let input: web_sys::HtmlInputElement = event_target(&ev);
        let Some(file) = input.files().and_then(|f| f.get(0)) else {
            return;
        };
        let file_name = file.name();
        spawn_local(async move {
            let bytes = match JsFuture::from(file.array_buffer()).await {
                Ok(buf) => js_sys::Uint8Array::new(&buf).to_vec(),
                Err(e) => {
                    msg.set(format!("{file_name}: cannot read: {e:?}"));
                    return;
                }
            };
            // Read here first: a task for another model is kept in the library, marked.
            let record = match TaskRecord::new(&bytes, &file_name, "") {
                Ok(r) => r,
                Err(e) => {
                    msg.set(e);
                    return;
                }
            };
            let base = library.base.get_untracked();
            if record.base != base {
                let kept = library.keep(record.clone(), &bytes).await;
                msg.set(format!(
                    "{file_name}: adapted from another model ({}), not this bundle's ({base}); {}",
                    record.base,
                    match kept {
                        Ok(()) => "kept in your tasks for that model".to_string(),
                        Err(e) => e,
                    }
                ));
                return;
            }
            let result = match model.engine() {
                Ok(engine) => engine.load_task(file_name, &bytes).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(t) => {
                    let kept = library.keep(record, &bytes).await;
                    msg.set(format!(
                        "loaded task \"{}\" ({} labels){}",
                        t.name,
                        t.labels,
                        kept.err().map(|e| format!("; {e}")).unwrap_or_default()
                    ));
                    task.set(&t.name, bytes);
                }
                Err(e) => msg.set(e),
            }
        });
    };

    view! {
        <section id="teach">
            <h2>"Teach a new task"</h2>
            <p>
                "Examples: "
                {EXAMPLES.iter().map(|t| {
                    let example = t.name;
                    view! { <button class="example" data-task=example on:click=move |_| on_example(example)>{t.title}</button> " " }
                }).collect_view()}
            </p>
            <label>"Task name " <input id="task-name" type="text" prop:value=move || name.get()
                on:input=move |ev| set_name.set(event_target_value(&ev)) /></label>
            <label>" Labels (optional, comma-separated) " <input id="labels" type="text" prop:value=move || labels_text.get()
                on:input=move |ev| set_labels_text.set(event_target_value(&ev)) /></label>
            <p>"A few examples per label, one per line, as " <code>"label: text"</code></p>
            <textarea id="examples" rows="10" prop:value=move || examples_text.get()
                on:input=move |ev| set_examples_text.set(event_target_value(&ev))></textarea>
            <p>"Held-out examples to score (optional, same format)"</p>
            <textarea id="heldout" rows="5" prop:value=move || heldout_text.get()
                on:input=move |ev| set_heldout_text.set(event_target_value(&ev))></textarea>
            <p>
                <label>"Adapt "
                    <select id="mode" on:change=move |ev| set_choice.set(event_target_value(&ev))>
                        {ADAPT_CHOICES.iter().map(|&(value, text)| view! {
                            <option value=value selected=move || choice.get() == value>{text}</option>
                        }).collect_view()}
                    </select>
                </label>
                <label>" steps " <input id="steps" type="number" min="0" max="1000" prop:value=move || steps.get()
                    on:input=move |ev| set_steps.set(event_target_value(&ev)) /></label>
                " "
                <button id="adapt" on:click=on_adapt disabled=move || busy.get()>"Adapt"</button>
                " "
                <button id="cancel" on:click=on_cancel disabled=move || !busy.get()>"Cancel"</button>
            </p>
            <p>
                <progress id="adapt-progress" max=move || progress.get().1.max(1) value=move || progress.get().0></progress>
                " " <span id="adapt-time">{move || adapt_time.get()}</span>
            </p>
            <svg id="loss-curve" width="300" height="80" viewBox="0 0 300 80">
                <polyline fill="none" stroke="currentColor" stroke-width="2" points=move || loss_curve(&losses.get())></polyline>
            </svg>
            <p id="teach-msg" class="error">{move || msg.get()}</p>
            <p id="heldout-result">{move || heldout_result.get()}</p>
            <p>
                <input id="classify-text" type="text" placeholder="Classify a sentence with the new task"
                    prop:value=move || classify_text.get()
                    on:input=move |ev| set_classify_text.set(event_target_value(&ev)) />
                <button id="classify" on:click=on_classify>"Classify"</button>
            </p>
            <p>
                <button id="save" on:click=on_save>"Download the task"</button>
                " Load a task: " <input id="load-task" type="file" accept=".safetensors" on:change=on_load_task />
            </p>
        </section>
    }
}
