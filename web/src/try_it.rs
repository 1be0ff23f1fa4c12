//! "Try it": each loaded task's prediction for a sentence (made by the model's worker):
//! the label and confidences of sentence tasks, the entities of token tasks highlighted in
//! the text.

use std::collections::BTreeMap;

use leptos::prelude::*;
use leptos::task::spawn_local;
use polytask_core::eval::predict::Entity;

use crate::app::Model;
pub use crate::protocol::{Prediction, TryResult};
use crate::text::{highlight, runners_up};
use crate::watchdog::Watchdog;

/// Every loaded task's prediction for `text`, from the model's worker.
pub async fn predict_all(model: Model, text: String) -> Result<TryResult, String> {
    model.engine()?.predict(text).await
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
            let result = predict_all(model, text).await;
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
