//! "Teach a new task": labels and a few examples each, adapted in the page one step at a
//! time (the page stays responsive), with a progress bar, a live loss curve and the time
//! taken; held-out examples are scored; the task classifies new text, can be downloaded
//! and loaded again, and is kept by this browser for the next visit.

use std::rc::Rc;

use leptos::prelude::*;
use leptos::task::spawn_local;
use polytask_core::BertInput;
use polytask_core::eval::metrics::accuracy;
use polytask_core::fewshot::adapt::{AdaptConfig, AdaptMode, FewShotModel, Learner, check_loss};
use polytask_core::io::task_file::{TASK_FORMAT, TaskMeta, load_task, save_task_async};
use wasm_bindgen_futures::JsFuture;

use crate::device::read_f32;
use crate::examples::EXAMPLES;
use crate::model::{Loaded, Model};
use crate::page::{now_ms, yield_to_page};
use crate::storage::{download, remember_task, remembered_task};
use crate::text::{check_task, loss_curve, parse_examples, parse_steps, task_name};
use crate::try_it::{TryResult, predict_all};
use crate::watchdog::Watchdog;

/// The result of teaching (or loading) a task.
pub struct Taught {
    model: FewShotModel,
    meta: TaskMeta,
    /// How long the adaptation took (0 for a loaded task).
    seconds: f64,
}

impl Taught {
    fn loaded(model: FewShotModel, meta: TaskMeta) -> Self {
        Taught {
            model,
            meta,
            seconds: 0.0,
        }
    }
}

/// The task taught or loaded in the page, with the Teach box's message; shared with the
/// App shell, which moves the task onto each model it loads and drops its weights when
/// their device is lost.
#[derive(Clone, Copy)]
pub struct TaskSlot {
    taught: StoredValue<Option<Rc<Taught>>, LocalStorage>,
    /// The task's name: the Classify button shows its predictions only.
    name: RwSignal<String>,
    /// The Teach box's message (`#teach-msg`).
    msg: RwSignal<String>,
}

impl Default for TaskSlot {
    fn default() -> Self {
        TaskSlot {
            taught: StoredValue::new_local(None),
            name: RwSignal::new(String::new()),
            msg: RwSignal::new(String::new()),
        }
    }
}

impl TaskSlot {
    fn set(&self, t: Taught) {
        self.name.set(t.meta.name.clone());
        self.taught.set_value(Some(Rc::new(t)));
    }

    /// Adds the page's task to a freshly loaded model `l`: the task taught on the previous
    /// device, else the one this browser kept from the last visit (or from the page before
    /// a WebGPU failure). `Err`: the taught task could not move to the new model.
    pub async fn carry_to(&self, l: &mut Loaded) -> Result<(), String> {
        if let Some(t) = self.taught.get_value() {
            // Moves a taught task onto the new model (another backend).
            let bytes = save_task_async(&t.model, &t.meta)
                .await
                .map_err(|e| e.to_string())?;
            let task =
                load_task(&l.encoder.model, &bytes, &t.meta.name).map_err(|e| e.to_string())?;
            l.tasks.push(task);
        } else if let Some(bytes) = remembered_task() {
            match l.load_task(&bytes, "the task kept by this browser") {
                Ok((model, meta)) => {
                    self.msg.set(format!(
                        "restored task \"{}\" ({} labels) from the last visit",
                        meta.name,
                        meta.labels.len()
                    ));
                    l.tasks.push((model.clone(), meta.clone()));
                    self.set(Taught::loaded(model, meta));
                }
                Err(e) => self.msg.set(format!(
                    "The task kept from the last visit was not restored: {e}"
                )),
            }
        }
        Ok(())
    }

    /// The device that held the task's weights is gone: forget them (this browser keeps
    /// the task file, which the next model loads).
    pub fn drop_weights(&self) {
        self.taught.set_value(None);
    }
}

/// The Teach box. `task`: the page's task and message (shared with the shell); `busy`:
/// while adapting (the shell disables the backend switch); `shown`: the Try-it box's
/// predictions, where Classify shows the new task's; `patience`: the watchdog's.
#[component]
pub fn Teach(
    model: Model,
    task: TaskSlot,
    busy: RwSignal<bool>,
    shown: RwSignal<TryResult>,
    patience: Signal<Option<u32>>,
) -> impl IntoView {
    let (name, set_name) = signal(String::from("my-task"));
    let (labels_text, set_labels_text) = signal(String::new());
    let (examples_text, set_examples_text) = signal(String::new());
    let (heldout_text, set_heldout_text) = signal(String::new());
    let (mode, set_mode) = signal(String::from("head"));
    let (steps, set_steps) = signal(String::from("20"));
    let (progress, set_progress) = signal((0usize, 0usize));
    let (losses, set_losses) = signal(Vec::<f32>::new());
    let (adapt_time, set_adapt_time) = signal(String::new());
    let (heldout_result, set_heldout_result) = signal(String::new());
    let (classify_text, set_classify_text) = signal(String::new());
    let msg = task.msg;

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
            let steps = parse_steps(&steps.get_untracked())?;
            Ok((labels, rows, heldout, steps))
        });
        let (labels, rows, heldout, steps) = match parsed {
            Ok(p) => p,
            Err(e) => {
                msg.set(e);
                return;
            }
        };
        let chosen = mode.get_untracked();
        let mode = AdaptMode::ALL
            .into_iter()
            .find(|m| m.name() == chosen)
            .unwrap_or(AdaptMode::Head);
        let name = task_name(&name.get_untracked());
        busy.set(true);
        msg.set(String::new());
        set_losses.set(Vec::new());
        set_heldout_result.set(String::new());
        set_adapt_time.set(String::new());
        let guard = Watchdog::arm(patience.get_untracked(), "the adaptation");
        spawn_local(async move {
            let result = teach(
                model,
                &name,
                labels,
                rows,
                heldout,
                mode,
                steps,
                set_progress,
                set_losses,
                msg.write_only(),
            )
            .await;
            drop(guard);
            match result {
                Ok((t, heldout_acc)) => {
                    set_adapt_time.set(format!("adapted in {:.2} s", t.seconds));
                    if let Some((acc, n)) = heldout_acc {
                        set_heldout_result
                            .set(format!("held-out accuracy: {acc:.3} ({n} examples)"));
                    }
                    // Named at once: Classify shows this task's predictions from now on.
                    task.name.set(t.meta.name.clone());
                    model.install_task(t.model.clone(), t.meta.clone());
                    // Kept for the next visit; a failure only costs that.
                    let kept = match save_task_async(&t.model, &t.meta).await {
                        Ok(bytes) => remember_task(&bytes),
                        Err(e) => Err(e.to_string()),
                    };
                    if let Err(e) = kept {
                        msg.set(format!(
                            "Adapted, but not kept for the next visit ({e}): download it to keep it."
                        ));
                    }
                    task.set(t);
                }
                Err(e) => msg.set(e),
            }
            busy.set(false);
        });
    };

    let on_classify = move |_| {
        let text = classify_text.get_untracked();
        let name = task.name.get_untracked();
        let guard = Watchdog::arm(patience.get_untracked(), "a prediction");
        spawn_local(async move {
            let result = predict_all(model, &text).await;
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
        let Some(t) = task.taught.get_value() else {
            msg.set("Nothing to save yet: adapt a task first.".into());
            return;
        };
        spawn_local(async move {
            match save_task_async(&t.model, &t.meta).await {
                Ok(bytes) => {
                    if let Err(e) = download(&format!("{}.task.safetensors", t.meta.name), &bytes) {
                        msg.set(e);
                    }
                }
                Err(e) => msg.set(format!("could not save: {e}")),
            }
        });
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
            let result = match model.cell().borrow().as_ref() {
                None => Err("the model is not loaded yet".to_string()),
                Some(l) => l.load_task(&bytes, &file_name),
            };
            match result {
                Ok((m, meta)) => {
                    msg.set(format!(
                        "loaded task \"{}\" ({} labels){}",
                        meta.name,
                        meta.labels.len(),
                        remember_task(&bytes)
                            .err()
                            .map(|e| format!("; not kept for the next visit: {e}"))
                            .unwrap_or_default()
                    ));
                    model.install_task(m.clone(), meta.clone());
                    task.set(Taught::loaded(m, meta));
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
                    <select id="mode" on:change=move |ev| set_mode.set(event_target_value(&ev))>
                        <option value="head" selected=true>"the head only"</option>
                        <option value="adapters">"adapters + head"</option>
                    </select>
                </label>
                <label>" steps " <input id="steps" type="number" min="0" max="1000" prop:value=move || steps.get()
                    on:input=move |ev| set_steps.set(event_target_value(&ev)) /></label>
                " "
                <button id="adapt" on:click=on_adapt disabled=move || busy.get()>"Adapt"</button>
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

/// Adapts a new task in the page on the loaded model, one step per turn of the event loop;
/// scores the held-out examples. Core's adaptation settings (`AdaptConfig::default()`)
/// but for what the user chose: the mode and the number of steps.
#[allow(clippy::too_many_arguments)]
async fn teach(
    model: Model,
    name: &str,
    labels: Vec<String>,
    rows: Vec<(String, usize)>,
    heldout: Vec<(String, usize)>,
    mode: AdaptMode,
    steps: usize,
    set_progress: WriteSignal<(usize, usize)>,
    set_losses: WriteSignal<Vec<f32>>,
    set_msg: WriteSignal<String>,
) -> Result<(Taught, Option<(f64, usize)>), String> {
    let (encoder, device, base) = {
        let cell = model.cell();
        let l = cell.borrow();
        let l = l.as_ref().ok_or("The model is not loaded yet.")?;
        (l.encoder.clone(), l.device.clone(), l.base.clone())
    };
    // Core's settings (`core-train adapt` uses the same), overriding only what the user
    // chose. Of the values this page used to set, only `lr` differed from core's (1e-3):
    // it changes adapters mode only (the head's rate is `head_lr` in both).
    let config = AdaptConfig {
        mode,
        steps,
        ..AdaptConfig::default()
    };
    let texts: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let ids: Vec<usize> = rows.iter().map(|r| r.1).collect();
    let batch = encoder.tokenizer.batch(&texts).map_err(|e| e.to_string())?;
    let cut: Vec<usize> = batch
        .truncated
        .iter()
        .enumerate()
        .filter(|(_, c)| **c)
        .map(|(i, _)| i + 1)
        .collect();
    if !cut.is_empty() {
        set_msg.set(format!(
            "Example(s) {cut:?} are longer than {} word pieces and were truncated.",
            encoder.tokenizer.max_len()
        ));
    }
    let t0 = now_ms();
    set_progress.set((0, steps));
    let learner = Learner::new(&encoder.model, &config).map_err(|e| e.to_string())?;
    let support = learner.frozen(BertInput::from_batch(&batch, &device));
    let mut session = learner
        .session(support, &ids, labels.len())
        .map_err(|e| e.to_string())?;
    let mut curve = Vec::with_capacity(steps);
    while !session.is_done() {
        let step = session.steps_done();
        let loss = read_f32(session.step()).await?[0];
        check_loss(step, loss).map_err(|e| format!("{e}. Try fewer steps or the head only."))?;
        curve.push(loss);
        set_losses.set(curve.clone());
        set_progress.set((step + 1, steps));
        yield_to_page().await;
    }
    let adapted = session.finish();
    // Wait for the device to finish before stopping the clock.
    let _ = read_f32(adapted.model.head.weight.val().sum()).await?;
    let seconds = (now_ms() - t0) / 1000.0;
    let meta = TaskMeta {
        format: TASK_FORMAT.into(),
        name: name.to_string(),
        labels,
        config,
        first: adapted.first,
        base,
        max_len: encoder.tokenizer.max_len(),
    };
    let mut heldout_acc = None;
    if !heldout.is_empty() {
        let texts: Vec<&str> = heldout.iter().map(|r| r.0.as_str()).collect();
        let batch = encoder.tokenizer.batch(&texts).map_err(|e| e.to_string())?;
        let pred: Vec<usize> = adapted
            .model
            .predict(BertInput::from_batch(&batch, &device))
            .into_data_async()
            .await
            .map_err(|e| format!("{e:?}"))?
            .try_into_vec_as::<i64>()
            .map_err(|e| format!("{e:?}"))?
            .into_iter()
            .map(|p| p as usize)
            .collect();
        let gold: Vec<usize> = heldout.iter().map(|r| r.1).collect();
        heldout_acc = Some((accuracy(&pred, &gold), heldout.len()));
    }
    Ok((
        Taught {
            model: adapted.model,
            meta,
            seconds,
        },
        heldout_acc,
    ))
}
