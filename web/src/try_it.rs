//! "Try it": each loaded task's prediction for a sentence: the label and confidences of
//! sentence tasks, the entities of token tasks highlighted in the text.

use std::collections::BTreeMap;

use leptos::prelude::*;
use leptos::task::spawn_local;
use polytask_core::eval::predict::{Entity, Predictor, PreparedText, TaskOutput};

use crate::device::read_f32;
use crate::model::Model;
use crate::text::{highlight, runners_up};
use crate::watchdog::Watchdog;

/// One task's prediction for the Try-it box.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    pub task: String,
    /// The best label of a sentence task (empty for a token task).
    pub label: String,
    pub confidence: f32,
    /// Every label's probability (sentence tasks).
    pub probabilities: Vec<(String, f32)>,
    /// The entities of a token task, `None` for a sentence task.
    pub entities: Option<Vec<Entity>>,
}

/// What the Try-it box shows for one text.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TryResult {
    pub text: String,
    pub predictions: Vec<Prediction>,
    /// The text was cut to the tokenizer's maximum length.
    pub truncated_to: Option<usize>,
}

/// Every loaded task's prediction for `text`.
pub async fn predict_all(model: Model, text: &str) -> Result<TryResult, String> {
    let (encoder, device, tasks, multitask) = {
        let cell = model.cell();
        let l = cell.borrow();
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
    let mut predictor = Predictor::new(multitask.as_ref());
    for (model, meta) in &tasks {
        predictor = predictor.with_adapted(&meta.name, &meta.labels, model);
    }
    let on_device = predictor
        .forward(&[&prepared], encoder.tokenizer.pad_id(), &device)
        .map_err(|e| e.to_string())?;
    let mut probs = Vec::with_capacity(on_device.tasks.len());
    for t in on_device.tasks {
        probs.push(read_f32(t).await?);
    }
    let answers = predictor
        .decode(&[text], &[&prepared], &probs, on_device.seq_len)
        .map_err(|e| e.to_string())?;
    let out = answers
        .into_iter()
        .flatten()
        .map(|a| match a.output {
            TaskOutput::Sentence {
                label,
                confidence,
                probabilities,
            } => Prediction {
                task: a.task,
                label,
                confidence,
                probabilities,
                entities: None,
            },
            TaskOutput::Token { entities, .. } => Prediction {
                task: a.task,
                label: String::new(),
                confidence: 0.0,
                probabilities: Vec::new(),
                entities: Some(entities),
            },
        })
        .collect();
    Ok(TryResult {
        text: text.to_string(),
        predictions: out,
        truncated_to: prepared.truncated().then(|| encoder.tokenizer.max_len()),
    })
}

/// The Try-it box. `shown`: the predictions shown and the text they are for (the browser
/// tests wait on it); the Teach box shows its new task's predictions there too.
/// `patience`: the watchdog's, on the current backend.
#[component]
pub fn TryIt(
    model: Model,
    shown: RwSignal<TryResult>,
    patience: Signal<Option<u32>>,
) -> impl IntoView {
    let (text, set_text) = signal(String::new());
    let (msg, set_msg) = signal(String::new());

    let on_try = move |_| {
        let text = text.get_untracked();
        let guard = Watchdog::arm(patience.get_untracked(), "a prediction");
        spawn_local(async move {
            let result = predict_all(model, &text).await;
            drop(guard);
            match result {
                Ok(p) => {
                    set_msg.set(String::new());
                    shown.set(p);
                }
                Err(e) => set_msg.set(e),
            }
        });
    };

    view! {
        <section id="try">
            <h2>"Try it"</h2>
            <input id="try-text" type="text" placeholder="Type a sentence"
                prop:value=move || text.get()
                on:input=move |ev| set_text.set(event_target_value(&ev)) />
            <button id="try-btn" on:click=on_try>"Predict"</button>
            <p id="try-msg" class="error">{move || msg.get()}</p>
            <p id="try-note">{move || shown.get().truncated_to.map(|n| format!(
                "The text is longer than the model reads: only its first {n} word pieces were used."
            )).unwrap_or_default()}</p>
            <ul id="try-out" data-text=move || shown.get().text>
                {move || {
                    let r = shown.get();
                    r.predictions.into_iter().map(|p| prediction_view(&r.text, p)).collect_view()
                }}
            </ul>
        </section>
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
            let probs =
                serde_json::to_string(&p.probabilities.iter().cloned().collect::<BTreeMap<_, _>>())
                    .unwrap_or_default();
            let others = runners_up(&p.probabilities);
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
