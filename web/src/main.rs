//! Polytask in the browser: a Leptos CSR app on the same core as the native binary.
//!
//! The page brings up a burn device (WebGPU on a hardware adapter, else the CPU backend
//! compiled to wasm; the user can switch, and `?backend=webgpu|cpu` chooses at load), loads
//! a model bundle (`core-train export`, served beside the page under `bundle/`, or
//! `?bundle=PATH`) with a progress bar and checksums, and then:
//! - **Try it**: each bundled task's prediction for a sentence: the label and confidences of
//!   sentence tasks, the entities of token tasks highlighted in the text;
//! - **Teach a new task**: labels and a few examples each, adapted in the page one step at
//!   a time (the page stays responsive), with a progress bar, a live loss curve and the
//!   time taken; held-out examples are scored; the task can be downloaded and loaded again.

use std::cell::RefCell;
use std::rc::Rc;

use burn::tensor::{Device, Tensor};
use leptos::prelude::*;
use leptos::task::spawn_local;
use polytask_core::eval::predict::{Entity, PreparedText, TaskOutput, decode};
use polytask_core::fewshot::adapt::{
    AdaptConfig, AdaptMode, AdaptSession, FewShotModel, TASK_FORMAT, TaskMeta,
    first_adapting_block, frozen_states, load_task, prepare, save_task_async,
};
use polytask_core::model::multitask::{MultiTaskModel, MultiTaskSpec};
use polytask_core::{Batch, BertInput, ModelFiles, SentenceEncoder};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

mod adapter;
mod bundle;
mod console_log;
mod examples;
mod exports;

/// Which backend the page runs on.
#[derive(Clone, Debug, PartialEq)]
struct Backend {
    label: String,
    detail: String,
    /// A software WebGPU adapter (compiles kernels for minutes): the watchdog waits longer.
    software: bool,
}

impl Backend {
    fn cpu(detail: String) -> Self {
        Backend {
            label: "cpu".into(),
            detail: format!("CPU in wasm (burn flex){detail}"),
            software: false,
        }
    }

    fn is_webgpu(&self) -> bool {
        self.label == "webgpu"
    }

    /// How long the watchdog waits on one operation; `None` on the CPU.
    fn patience_s(&self) -> Option<u32> {
        self.is_webgpu().then_some(if self.software {
            WEBGPU_SOFTWARE_PATIENCE_S
        } else {
            WEBGPU_PATIENCE_S
        })
    }
}

/// The backend asked for: by the page (`Auto`), by the user's switch, or by `?backend=`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Choice {
    /// WebGPU on a hardware adapter that has what burn's kernels need, else the CPU.
    Auto,
    Cpu,
    /// WebGPU whenever the browser can give it, even a software adapter.
    WebGpu,
}

/// Brings up the device for `choice`. `Auto` takes WebGPU only on a hardware adapter that
/// offers `subgroups` and has not failed in this browser before; otherwise burn's CPU
/// backend in wasm, saying why.
async fn init_device(choice: Choice) -> (Device, Backend) {
    match webgpu_device(choice).await {
        Ok(webgpu) => webgpu,
        Err(why) => (Device::flex(), Backend::cpu(why)),
    }
}

/// The WebGPU device for `choice`, or why the page runs on the CPU instead (the text that
/// follows "cpu" in the backend line).
async fn webgpu_device(choice: Choice) -> Result<(Device, Backend), String> {
    if choice == Choice::Cpu {
        return Err(", chosen by the user".into());
    }
    if choice == Choice::Auto
        && let Some(why) = webgpu_failure()
    {
        return Err(format!(
            ": WebGPU failed in this browser ({why}); \"Try WebGPU\" tries it again"
        ));
    }
    let Some(facts) = adapter::adapter().await else {
        return Err("; this browser gives no WebGPU adapter".into());
    };
    if !facts.subgroups {
        return Err(format!(
            "; this browser's WebGPU adapter ({}) lacks the 'subgroups' feature that \
             burn's WebGPU kernels need",
            facts.name
        ));
    }
    if choice == Choice::Auto && facts.software {
        return Err(format!(
            ": the WebGPU adapter is a software one ({}), slower than the CPU backend; \
             \"Try WebGPU\" uses it anyway",
            facts.name
        ));
    }
    // burn's WebGPU kernels need the adapter's `subgroups` feature (see `adapter.rs`).
    adapter::install_webgpu_hooks();
    let device = Device::wgpu_options()
        .init_async()
        .await
        .map_err(|e| format!("; WebGPU unavailable: {e}"))?;
    let detail = if facts.software {
        format!("WebGPU (burn wgpu) on a software adapter ({})", facts.name)
    } else {
        format!("WebGPU (burn wgpu) on {}", facts.name)
    };
    Ok((
        device,
        Backend {
            label: "webgpu".into(),
            detail,
            software: facts.software,
        },
    ))
}

/// A small computation on the device, read back asynchronously: `[[1,2],[3,4]]²` sums to 54.
async fn check(device: &Device) -> Result<f32, String> {
    let a = Tensor::<2>::from_floats([[1.0, 2.0], [3.0, 4.0]], device);
    read_f32(a.clone().matmul(a).sum()).await.map(|v| v[0])
}

async fn read_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, String> {
    t.into_data_async()
        .await
        .map_err(|e| format!("{e:?}"))?
        .try_into_vec_as::<f32>()
        .map_err(|e| format!("{e:?}"))
}

/// Lets the page render between steps (a macrotask, unlike an awaited resolved promise).
async fn yield_to_page() {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 0);
        }
    });
    let _ = JsFuture::from(promise).await;
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// `?NAME=VALUE` in the page's address (`bundle`, `backend`, `log`).
fn query_param(name: &str) -> Option<String> {
    let search = web_sys::window()?.location().search().ok()?;
    search
        .trim_start_matches('?')
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=').map(str::to_string))
}

/// Where the page remembers that WebGPU failed in this browser: a lost device switches the
/// page to the CPU at once, but a kernel error aborts the wasm instance, so that fallback
/// happens on the next load.
const WEBGPU_FAILED: &str = "polytask-webgpu-failed";

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

fn webgpu_failure() -> Option<String> {
    storage_call("getItem", &[WEBGPU_FAILED]).and_then(|v| v.as_string())
}

/// How long one operation may leave WebGPU without an answer before the page gives up on it:
/// a GPU compiles a kernel in well under a second and the first forward pass in seconds.
const WEBGPU_PATIENCE_S: u32 = 400;

/// The same on a software adapter (SwiftShader), which the user chose: it compiles every
/// kernel on the CPU, and the kernels of a first adaptation take many minutes.
const WEBGPU_SOFTWARE_PATIENCE_S: u32 = 1800;

/// Shows a problem in the page's `#panic` box.
fn show_problem(message: &str) {
    if let Some(el) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.get_element_by_id("panic"))
    {
        el.set_text_content(Some(message));
    }
}

/// What the page says when WebGPU fails, whatever the way.
fn webgpu_failed_message(why: &str) -> String {
    format!(
        "WebGPU failed: {why}. The last task you taught or loaded is kept by this browser; \
         reload the page and it will run on the CPU."
    )
}

thread_local! {
    /// Counts the devices the page has started; a watchdog only speaks for its own device.
    static GENERATION: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Guards one operation on WebGPU: a device that stops answering (a lost device does not
/// always panic) is reported like a failed one after [`WEBGPU_PATIENCE_S`] (software
/// adapters: [`WEBGPU_SOFTWARE_PATIENCE_S`]), and the next
/// load runs on the CPU. Dropping the guard marks the operation finished.
struct Watchdog(Rc<std::cell::Cell<bool>>);

impl Watchdog {
    /// `patience_s`: [`Backend::patience_s`] (`None`: nothing to watch).
    fn arm(patience_s: Option<u32>, what: &'static str) -> Self {
        let done = Rc::new(std::cell::Cell::new(patience_s.is_none()));
        if let Some(patience_s) = patience_s {
            let done = done.clone();
            let generation = GENERATION.get();
            let fire = Closure::once_into_js(move || {
                if !done.get() && generation == GENERATION.get() {
                    let why = format!("no answer for {patience_s} s during {what}");
                    storage_call("setItem", &[WEBGPU_FAILED, &why]);
                    show_problem(&webgpu_failed_message(&why));
                }
            });
            if let Some(w) = web_sys::window() {
                let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(
                    fire.unchecked_ref(),
                    (patience_s * 1000) as i32,
                );
            }
        }
        Watchdog(done)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

/// Where the page keeps the last taught or loaded task, so that a reload (after a WebGPU
/// failure, say) does not lose it.
const SAVED_TASK: &str = "polytask-task";

/// Keeps a task file in `localStorage` (base64; a task file is a few KB to a few hundred).
fn remember_task(bytes: &[u8]) -> Result<(), String> {
    let latin1: String = bytes.iter().map(|&b| char::from(b)).collect();
    let window = web_sys::window().ok_or("no window")?;
    let b64 = window.btoa(&latin1).map_err(|e| format!("{e:?}"))?;
    storage_call("setItem", &[SAVED_TASK, &b64])
        .map(|_| ())
        .ok_or_else(|| "this browser's storage refused it (full or disabled)".to_string())
}

/// The task kept by [`remember_task`], if any.
fn remembered_task() -> Option<Vec<u8>> {
    let b64 = storage_call("getItem", &[SAVED_TASK])?.as_string()?;
    let latin1 = web_sys::window()?.atob(&b64).ok()?;
    latin1.chars().map(|c| u8::try_from(c).ok()).collect()
}

/// A task file loaded onto the page's model, refused if it was adapted from another base.
fn load_for(l: &Loaded, bytes: &[u8], name: &str) -> Result<(FewShotModel, TaskMeta), String> {
    let (model, meta) = load_task(&l.encoder.model, bytes, name).map_err(|e| e.to_string())?;
    if meta.base != l.base {
        return Err(format!(
            "{name}: adapted from another model ({}), not this bundle's ({})",
            meta.base, l.base
        ));
    }
    Ok((model, meta))
}

/// What the page has loaded.
struct Loaded {
    device: Device,
    encoder: SentenceEncoder,
    base: String,
    /// The bundle's multi-task heads (sentence and token tasks) on the same encoder.
    multitask: Option<MultiTaskModel>,
    /// Bundled few-shot tasks, then the one taught in the page (if any).
    tasks: Vec<(FewShotModel, TaskMeta)>,
}

/// One task's prediction for the Try-it box.
#[derive(Clone, Debug, PartialEq)]
struct Prediction {
    task: String,
    /// The best label of a sentence task (empty for a token task).
    label: String,
    confidence: f32,
    /// Every label's probability (sentence tasks).
    probabilities: Vec<(String, f32)>,
    /// The entities of a token task, `None` for a sentence task.
    entities: Option<Vec<Entity>>,
}

/// What the Try-it box shows for one text.
#[derive(Clone, Debug, Default, PartialEq)]
struct TryResult {
    text: String,
    predictions: Vec<Prediction>,
    /// The text was cut to the tokenizer's maximum length.
    truncated_to: Option<usize>,
}

/// `text` split at the entities' character spans: `(piece, entity)` in order.
fn highlight<'a>(text: &str, entities: &'a [Entity]) -> Vec<(String, Option<&'a Entity>)> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut at = 0;
    for e in entities {
        let (start, end) = (e.start.min(chars.len()), e.end.min(chars.len()));
        if start < at {
            continue;
        }
        if start > at {
            out.push((chars[at..start].iter().collect(), None));
        }
        out.push((chars[start..end].iter().collect(), Some(e)));
        at = end;
    }
    if at < chars.len() {
        out.push((chars[at..].iter().collect(), None));
    }
    out
}

async fn predict_all(
    loaded: &Rc<RefCell<Option<Loaded>>>,
    text: &str,
) -> Result<TryResult, String> {
    let (encoder, device, tasks, multitask) = {
        let l = loaded.borrow();
        let l = l.as_ref().ok_or("the model is not loaded yet")?;
        (
            l.encoder.clone(),
            l.device.clone(),
            l.tasks.clone(),
            l.multitask.clone(),
        )
    };
    if text.trim().is_empty() {
        return Err("Type a sentence first.".into());
    }
    if tasks.is_empty() && multitask.is_none() {
        return Err("No task yet: the bundle has none; teach one below.".into());
    }
    let prepared = PreparedText::new(&encoder.tokenizer, text).map_err(|e| e.to_string())?;
    let batch = Batch::pad(
        std::slice::from_ref(&prepared.encoded.encoding),
        encoder.tokenizer.pad_id(),
    )
    .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    if let Some(model) = &multitask {
        let enc = model.bert.forward(BertInput::from_batch(&batch, &device));
        for (t, spec) in model.tasks().iter().enumerate() {
            let probs = read_f32(model.probabilities(t, &enc)).await?;
            out.push(match decode(model, t, text, &prepared, &probs) {
                TaskOutput::Sentence { label, confidence } => Prediction {
                    task: spec.name.clone(),
                    label,
                    confidence,
                    probabilities: spec.labels.iter().cloned().zip(probs).collect(),
                    entities: None,
                },
                TaskOutput::Token { entities, .. } => Prediction {
                    task: spec.name.clone(),
                    label: String::new(),
                    confidence: 0.0,
                    probabilities: Vec::new(),
                    entities: Some(entities),
                },
            });
        }
    }
    for (model, meta) in &tasks {
        let p = read_f32(model.probabilities(BertInput::from_batch(&batch, &device))).await?;
        let (best, _) = polytask_core::eval::predict::argmax(&p);
        out.push(Prediction {
            task: meta.name.clone(),
            label: meta.labels[best].clone(),
            confidence: p[best],
            probabilities: meta.labels.iter().cloned().zip(p.iter().copied()).collect(),
            entities: None,
        });
    }
    Ok(TryResult {
        text: text.to_string(),
        predictions: out,
        truncated_to: prepared.truncated().then(|| encoder.tokenizer.max_len()),
    })
}

/// `(text, label index)` lines of the teach box.
type Rows = Vec<(String, usize)>;

/// Parses the teach box: one `label: text` (or `label<TAB>text`) per line, blank lines
/// skipped. `labels`, when given, must each have an example and cover every line.
fn parse_examples(text: &str, labels: &str, what: &str) -> Result<(Vec<String>, Rows), String> {
    let mut declared: Vec<String> = labels
        .split(',')
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    let fixed = !declared.is_empty();
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (label, example) = line
            .split_once('\t')
            .or_else(|| line.split_once(':'))
            .ok_or_else(|| format!("{what}, line {}: write it as \"label: text\"", i + 1))?;
        let (label, example) = (label.trim(), example.trim());
        if label.is_empty() {
            return Err(format!("{what}, line {}: the label is empty", i + 1));
        }
        if example.is_empty() {
            return Err(format!("{what}, line {}: the text is empty", i + 1));
        }
        let k = match declared.iter().position(|l| l == label) {
            Some(k) => k,
            None if fixed => {
                return Err(format!(
                    "{what}, line {}: label \"{label}\" is not one of the labels ({})",
                    i + 1,
                    declared.join(", ")
                ));
            }
            None => {
                declared.push(label.to_string());
                declared.len() - 1
            }
        };
        rows.push((example.to_string(), k));
    }
    Ok((declared, rows))
}

/// The result of teaching.
struct Taught {
    model: FewShotModel,
    meta: TaskMeta,
    seconds: f64,
}

#[component]
fn App() -> impl IntoView {
    let loaded: Rc<RefCell<Option<Loaded>>> = Rc::new(RefCell::new(None));
    let loaded = StoredValue::new_local(loaded);
    let (backend, set_backend) = signal(None::<Backend>);
    let (status, set_status) = signal(String::from("starting…"));
    let (load_done, set_load_done) = signal(0u64);
    let (load_total, set_load_total) = signal(0u64);
    let (load_note, set_load_note) = signal(String::new());
    let (error, set_error) = signal(String::new());

    // Try it.
    let (try_text, set_try_text) = signal(String::new());
    // The predictions shown and the text they are for (tests wait on it).
    let (try_out, set_try_out) = signal(TryResult::default());
    let (try_msg, set_try_msg) = signal(String::new());

    // Teach.
    let (task_name, set_task_name) = signal(String::from("my-task"));
    let (labels_text, set_labels_text) = signal(String::new());
    let (examples_text, set_examples_text) = signal(String::new());
    let (heldout_text, set_heldout_text) = signal(String::new());
    let (mode, set_mode) = signal(String::from("head"));
    let (steps, set_steps) = signal(String::from("20"));
    let (teach_msg, set_teach_msg) = signal(String::new());
    let (progress, set_progress) = signal((0usize, 0usize));
    let (losses, set_losses) = signal(Vec::<f32>::new());
    let (adapt_time, set_adapt_time) = signal(String::new());
    let (heldout_result, set_heldout_result) = signal(String::new());
    let (busy, set_busy) = signal(false);
    let taught: StoredValue<Option<Rc<Taught>>, LocalStorage> = StoredValue::new_local(None);
    let (taught_name, set_taught_name) = signal(String::new());
    let (classify_text, set_classify_text) = signal(String::new());

    let bundle_base = query_param("bundle")
        .map(|s| s.trim_end_matches('/').to_string())
        .unwrap_or_else(|| "bundle".to_string());

    // Start (or restart on another backend): device, check, bundle.
    let start = move |choice: Choice| {
        let bundle_base = bundle_base.clone();
        spawn_local(async move {
            set_status.set("starting…".into());
            set_error.set(String::new());
            GENERATION.set(GENERATION.get() + 1);
            let (device, b) = init_device(choice).await;
            let guard = Watchdog::arm(b.patience_s(), "the device check");
            set_backend.set(Some(b));
            let checked = check(&device).await;
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
            match load_bundle(
                &bundle_base,
                &device,
                set_load_done,
                set_load_total,
                set_load_note,
            )
            .await
            {
                Ok(l) => {
                    let cell = loaded.get_value();
                    // A task taught on the previous backend comes along.
                    let taught_task = taught.get_value();
                    let mut l = l;
                    if let Some(t) = taught_task {
                        match reload_task(&l, &t).await {
                            Ok(task) => l.tasks.push(task),
                            Err(e) => set_error.set(format!("the taught task could not move: {e}")),
                        }
                    } else if let Some(bytes) = remembered_task() {
                        // The task of the last visit (or of the page before a WebGPU failure).
                        match load_for(&l, &bytes, "the task kept by this browser") {
                            Ok((model, meta)) => {
                                set_taught_name.set(meta.name.clone());
                                set_teach_msg.set(format!(
                                    "restored task \"{}\" ({} labels) from the last visit",
                                    meta.name,
                                    meta.labels.len()
                                ));
                                l.tasks.push((model.clone(), meta.clone()));
                                taught.set_value(Some(Rc::new(Taught {
                                    model,
                                    meta,
                                    seconds: 0.0,
                                })));
                            }
                            Err(e) => set_teach_msg.set(format!(
                                "The task kept from the last visit was not restored: {e}"
                            )),
                        }
                    }
                    *cell.borrow_mut() = Some(l);
                    set_status.set("ready".into());
                }
                Err(e) => {
                    set_error.set(format!("The model bundle could not be loaded: {e}"));
                    set_status.set("bundle failed".into());
                }
            }
        });
    };
    start(match query_param("backend").as_deref() {
        Some("webgpu") => Choice::WebGpu,
        Some("cpu") => Choice::Cpu,
        _ => Choice::Auto,
    });

    // A lost WebGPU device: say so and carry on on the CPU, with the task kept in this
    // browser (the taught task's weights were on the lost device).
    let restart = start.clone();
    adapter::on_device_lost(move |why| {
        if backend.get_untracked().is_none_or(|b| !b.is_webgpu()) {
            return;
        }
        storage_call(
            "setItem",
            &[WEBGPU_FAILED, &format!("the device was lost: {why}")],
        );
        taught.set_value(None);
        *loaded.get_value().borrow_mut() = None;
        set_busy.set(false);
        restart(Choice::Auto);
    });

    let on_switch = move |_| {
        let to_cpu = backend.get_untracked().is_some_and(|b| b.is_webgpu());
        if !to_cpu {
            storage_call("removeItem", &[WEBGPU_FAILED]);
        }
        *loaded.get_value().borrow_mut() = None;
        start(if to_cpu { Choice::Cpu } else { Choice::WebGpu });
    };

    let patience = move || backend.get_untracked().and_then(|b| b.patience_s());

    let on_try = move |_| {
        let text = try_text.get_untracked();
        let guard = Watchdog::arm(patience(), "a prediction");
        spawn_local(async move {
            let result = predict_all(&loaded.get_value(), &text).await;
            drop(guard);
            match result {
                Ok(p) => {
                    set_try_msg.set(String::new());
                    set_try_out.set(p);
                }
                Err(e) => set_try_msg.set(e),
            }
        });
    };

    let on_example = move |name: &'static str| {
        if let Some(t) = examples::EXAMPLES.iter().find(|t| t.name == name) {
            set_task_name.set(t.name.to_string());
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
        );
        let (labels, rows) = match parsed {
            Ok(p) => p,
            Err(e) => {
                set_teach_msg.set(e);
                return;
            }
        };
        if labels.len() < 2 {
            set_teach_msg.set(format!(
                "A task needs at least 2 labels; found {} ({}).",
                labels.len(),
                labels.join(", ")
            ));
            return;
        }
        if let Some(k) = (0..labels.len()).find(|&k| !rows.iter().any(|r| r.1 == k)) {
            set_teach_msg.set(format!(
                "Label \"{}\" has no example; give each label at least one.",
                labels[k]
            ));
            return;
        }
        let heldout =
            match parse_examples(&heldout_text.get_untracked(), &labels.join(","), "Held-out") {
                Ok((_, h)) => h,
                Err(e) => {
                    set_teach_msg.set(e);
                    return;
                }
            };
        let steps_n: usize = match steps.get_untracked().trim().parse() {
            Ok(n) if n <= 1000 => n,
            _ => {
                set_teach_msg.set("Steps: a whole number from 0 to 1000.".into());
                return;
            }
        };
        let mode_v = AdaptMode::parse(&mode.get_untracked()).unwrap_or(AdaptMode::Head);
        let name = task_name.get_untracked().trim().to_string();
        let name = if name.is_empty() {
            "my-task".to_string()
        } else {
            name
        };
        set_busy.set(true);
        set_teach_msg.set(String::new());
        set_losses.set(Vec::new());
        set_heldout_result.set(String::new());
        set_adapt_time.set(String::new());
        let guard = Watchdog::arm(patience(), "the adaptation");
        spawn_local(async move {
            let result = teach(
                &loaded.get_value(),
                &name,
                labels,
                rows,
                heldout,
                mode_v,
                steps_n,
                set_progress,
                set_losses,
                set_teach_msg,
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
                    set_taught_name.set(t.meta.name.clone());
                    install_task(&loaded.get_value(), t.model.clone(), t.meta.clone());
                    // Kept for the next visit; a failure only costs that.
                    let kept = match save_task_async(&t.model, &t.meta).await {
                        Ok(bytes) => remember_task(&bytes),
                        Err(e) => Err(e.to_string()),
                    };
                    if let Err(e) = kept {
                        set_teach_msg.set(format!(
                            "Adapted, but not kept for the next visit ({e}): download it to keep it."
                        ));
                    }
                    taught.set_value(Some(Rc::new(t)));
                }
                Err(e) => set_teach_msg.set(e),
            }
            set_busy.set(false);
        });
    };

    let on_classify = move |_| {
        let text = classify_text.get_untracked();
        let name = taught_name.get_untracked();
        let guard = Watchdog::arm(patience(), "a prediction");
        spawn_local(async move {
            let result = predict_all(&loaded.get_value(), &text).await;
            drop(guard);
            match result {
                Ok(mut r) => {
                    r.predictions.retain(|p| p.task == name);
                    if !r.predictions.is_empty() {
                        set_teach_msg.set(String::new());
                        set_try_out.set(r);
                    }
                }
                Err(e) => set_teach_msg.set(e),
            }
        });
    };

    let on_save = move |_| {
        let Some(t) = taught.get_value() else {
            set_teach_msg.set("Nothing to save yet: adapt a task first.".into());
            return;
        };
        spawn_local(async move {
            match save_task_async(&t.model, &t.meta).await {
                Ok(bytes) => {
                    if let Err(e) = download(&format!("{}.task.safetensors", t.meta.name), &bytes) {
                        set_teach_msg.set(e);
                    }
                }
                Err(e) => set_teach_msg.set(format!("could not save: {e}")),
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
                    set_teach_msg.set(format!("{file_name}: cannot read: {e:?}"));
                    return;
                }
            };
            let cell = loaded.get_value();
            let result = match cell.borrow().as_ref() {
                None => Err("the model is not loaded yet".to_string()),
                Some(l) => load_for(l, &bytes, &file_name),
            };
            match result {
                Ok((model, meta)) => {
                    set_taught_name.set(meta.name.clone());
                    set_teach_msg.set(format!(
                        "loaded task \"{}\" ({} labels){}",
                        meta.name,
                        meta.labels.len(),
                        remember_task(&bytes)
                            .err()
                            .map(|e| format!("; not kept for the next visit: {e}"))
                            .unwrap_or_default()
                    ));
                    install_task(&cell, model.clone(), meta.clone());
                    taught.set_value(Some(Rc::new(Taught {
                        model,
                        meta,
                        seconds: 0.0,
                    })));
                }
                Err(e) => set_teach_msg.set(e),
            }
        });
    };

    let curve = move || {
        let l = losses.get();
        if l.len() < 2 {
            return String::new();
        }
        let max = l.iter().copied().fold(f32::MIN, f32::max).max(1e-6);
        let n = (l.len() - 1) as f32;
        l.iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", i as f32 / n * 300.0, 80.0 - v / max * 75.0))
            .collect::<Vec<_>>()
            .join(" ")
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

            <section id="try">
                <h2>"Try it"</h2>
                <input id="try-text" type="text" placeholder="Type a sentence"
                    prop:value=move || try_text.get()
                    on:input=move |ev| set_try_text.set(event_target_value(&ev)) />
                <button id="try-btn" on:click=on_try>"Predict"</button>
                <p id="try-msg" class="error">{move || try_msg.get()}</p>
                <p id="try-note">{move || try_out.get().truncated_to.map(|n| format!(
                    "The text is longer than the model reads: only its first {n} word pieces were used."
                )).unwrap_or_default()}</p>
                <ul id="try-out" data-text=move || try_out.get().text>
                    {move || {
                        let r = try_out.get();
                        r.predictions.into_iter().map(|p| prediction_view(&r.text, p)).collect_view()
                    }}
                </ul>
            </section>

            <section id="teach">
                <h2>"Teach a new task"</h2>
                <p>
                    "Examples: "
                    {examples::EXAMPLES.iter().map(|t| {
                        let name = t.name;
                        view! { <button class="example" data-task=name on:click=move |_| on_example(name)>{t.title}</button> " " }
                    }).collect_view()}
                </p>
                <label>"Task name " <input id="task-name" type="text" prop:value=move || task_name.get()
                    on:input=move |ev| set_task_name.set(event_target_value(&ev)) /></label>
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
                    <polyline fill="none" stroke="currentColor" stroke-width="2" points=curve></polyline>
                </svg>
                <p id="teach-msg" class="error">{move || teach_msg.get()}</p>
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
            <pre id="panic" class="error"></pre>
        </main>
    }
}

/// One task's line in the Try-it box: a sentence task's label and confidence (with the
/// runners-up), or a token task's entities highlighted in the text.
fn prediction_view(text: &str, p: Prediction) -> impl IntoView + use<> {
    match p.entities {
        Some(entities) => {
            let json = serde_json::to_string(&entities).unwrap_or_default();
            let pieces: Vec<(String, Option<Entity>)> = highlight(text, &entities)
                .into_iter()
                .map(|(s, e)| (s, e.cloned()))
                .collect();
            view! {
                <li class="prediction entities" data-task=p.task.clone() data-entities=json>
                    <strong>{p.task.clone()}</strong> ": "
                    <span class="highlighted">
                        {pieces.into_iter().map(|(piece, e)| match e {
                            Some(e) => view! {
                                <mark class="entity" data-type=e.kind.clone()
                                    title=format!("{} ({:.1}%)", e.kind, e.confidence * 100.0)>
                                    {piece}<small>{e.kind.clone()}</small>
                                </mark>
                            }.into_any(),
                            None => view! { <span>{piece}</span> }.into_any(),
                        }).collect_view()}
                    </span>
                    {entities.is_empty().then_some(" (no entity)")}
                </li>
            }
            .into_any()
        }
        None => {
            let probs = serde_json::to_string(
                &p.probabilities
                    .iter()
                    .cloned()
                    .collect::<std::collections::BTreeMap<_, _>>(),
            )
            .unwrap_or_default();
            let mut ranked = p.probabilities.clone();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
            let others = ranked
                .iter()
                .skip(1)
                .take(2)
                .filter(|(_, v)| *v >= 0.01)
                .map(|(l, v)| format!("{l} {:.0}%", v * 100.0))
                .collect::<Vec<_>>();
            view! {
                <li class="prediction" data-task=p.task.clone() data-label=p.label.clone() data-probs=probs>
                    <strong>{p.task.clone()}</strong> ": " {p.label.clone()}
                    {format!(" ({:.1}%)", p.confidence * 100.0)}
                    <span class="others">{(!others.is_empty()).then(|| format!("; then {}", others.join(", ")))}</span>
                </li>
            }
            .into_any()
        }
    }
}

/// Fetches and verifies the bundle, then builds the encoder and its tasks on `device`.
async fn load_bundle(
    base: &str,
    device: &Device,
    set_done: WriteSignal<u64>,
    set_total: WriteSignal<u64>,
    set_note: WriteSignal<String>,
) -> Result<Loaded, String> {
    let t0 = now_ms();
    let manifest = bundle::manifest(base).await?;
    set_total.set(manifest.total_bytes());
    set_done.set(0);
    let mut files = std::collections::BTreeMap::new();
    let (mut done, mut cached) = (0u64, 0usize);
    for entry in &manifest.files {
        let (bytes, hit) = bundle::file(base, entry).await?;
        done += entry.bytes;
        cached += usize::from(hit);
        set_done.set(done);
        set_note.set(format!(
            "{:.1} / {:.1} MB",
            done as f64 / 1e6,
            manifest.total_bytes() as f64 / 1e6
        ));
        files.insert(entry.name.clone(), bytes);
    }
    let take = |name: &str| -> Result<&[u8], String> {
        files
            .get(name)
            .map(Vec::as_slice)
            .ok_or_else(|| format!("{base}/manifest.json lists no {name}"))
    };
    let config =
        std::str::from_utf8(take("config.json")?).map_err(|e| format!("config.json: {e}"))?;
    let weights = take("model.safetensors")?;
    let (encoder, _) = SentenceEncoder::load(
        ModelFiles {
            config_json: config,
            config_name: "config.json",
            weights: weights.to_vec(),
            weights_name: "model.safetensors",
            tokenizer_json: take("tokenizer.json")?,
            tokenizer_name: "tokenizer.json",
        },
        device,
    )
    .map_err(|e| e.to_string())?;
    let mut tasks = Vec::new();
    for t in &manifest.tasks {
        let name = format!("tasks/{t}.safetensors");
        tasks.push(load_task(&encoder.model, take(&name)?, &name).map_err(|e| e.to_string())?);
    }
    let multitask = if manifest.multitask {
        let spec: MultiTaskSpec = serde_json::from_slice(take("tasks.json")?)
            .map_err(|e| format!("tasks.json: not a task list: {e}"))?;
        Some(
            MultiTaskModel::with_heads(
                encoder.model.clone(),
                spec,
                weights,
                "model.safetensors",
                device,
            )
            .map_err(|e| e.to_string())?,
        )
    } else {
        None
    };
    set_note.set(format!(
        "{:.1} MB ({} weights), {} of {} files from the cache, {:.1} s",
        manifest.total_bytes() as f64 / 1e6,
        manifest.dtype,
        cached,
        manifest.files.len(),
        (now_ms() - t0) / 1000.0,
    ));
    Ok(Loaded {
        device: device.clone(),
        encoder,
        base: manifest.base,
        multitask,
        tasks,
    })
}

/// Moves a taught task onto a freshly loaded model (another backend).
async fn reload_task(l: &Loaded, t: &Taught) -> Result<(FewShotModel, TaskMeta), String> {
    let bytes = save_task_async(&t.model, &t.meta)
        .await
        .map_err(|e| e.to_string())?;
    load_task(&l.encoder.model, &bytes, &t.meta.name).map_err(|e| e.to_string())
}

fn install_task(cell: &Rc<RefCell<Option<Loaded>>>, model: FewShotModel, meta: TaskMeta) {
    if let Some(l) = cell.borrow_mut().as_mut() {
        l.tasks.retain(|(_, m)| m.name != meta.name);
        l.tasks.push((model, meta));
    }
}

/// Adapts a new task in the page, one step per turn of the event loop.
#[allow(clippy::too_many_arguments)]
async fn teach(
    cell: &Rc<RefCell<Option<Loaded>>>,
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
        let l = cell.borrow();
        let l = l.as_ref().ok_or("The model is not loaded yet.")?;
        (l.encoder.clone(), l.device.clone(), l.base.clone())
    };
    let config = AdaptConfig {
        mode,
        steps,
        lr: 1e-3,
        head_lr: 1e-2,
        layers: 2,
        ..Default::default()
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
    let bert = prepare(&encoder.model, &config);
    let first = first_adapting_block(config.mode, config.layers, bert.num_layers());
    let cached = frozen_states(&bert, BertInput::from_batch(&batch, &device), first);
    let mut session = AdaptSession::new(bert, cached, first, &ids, labels.len(), &config)
        .map_err(|e| e.to_string())?;
    let mut curve = Vec::with_capacity(steps);
    while !session.is_done() {
        let step = session.steps_done();
        let loss = read_f32(session.step()).await?[0];
        if !loss.is_finite() {
            return Err(format!(
                "Adaptation diverged at step {} (loss {loss}); nothing was kept. Try fewer steps or the head only.",
                step + 1
            ));
        }
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
        let logits = adapted.model.logits(BertInput::from_batch(&batch, &device));
        let pred = logits
            .argmax(1)
            .into_data_async()
            .await
            .map_err(|e| format!("{e:?}"))?
            .try_into_vec_as::<i64>()
            .map_err(|e| format!("{e:?}"))?;
        let correct = pred
            .iter()
            .zip(&heldout)
            .filter(|(p, r)| **p as usize == r.1)
            .count();
        heldout_acc = Some((correct as f64 / heldout.len() as f64, heldout.len()));
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

fn main() {
    // Rust panics are shown in the page, not only in the console. A failing WebGPU device
    // is remembered so that the next load runs on the CPU.
    console_log::init(
        query_param("log")
            .and_then(|l| l.parse().ok())
            .unwrap_or(log::LevelFilter::Warn),
    );
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        let mut text = info.to_string();
        let gpu = text.contains("wgpu") || text.contains("WebGPU");
        if gpu {
            // The device was lost for a reason logged earlier (a shader that failed to
            // compile, say): that reason is what the user and a bug report need.
            if let Some(cause) = console_log::last_error() {
                let cause = cause.split("--- shader source").next().unwrap_or_default();
                let cause: String = cause.trim().chars().take(800).collect();
                text = format!("{text}\nEarlier: {cause}");
            }
            let first_line = text
                .lines()
                .find(|l| l.contains("wgpu error"))
                .unwrap_or("device error");
            storage_call("setItem", &[WEBGPU_FAILED, first_line.trim()]);
        }
        show_problem(&if gpu {
            webgpu_failed_message(&text)
        } else {
            format!("Internal error (please report): {text}. Reload the page to start again.")
        });
    }));
    leptos::mount::mount_to_body(App);
}

/// Keeps the exported functions linked into the binary.
#[wasm_bindgen]
pub fn polytask_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
