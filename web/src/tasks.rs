//! "Your tasks": the task library ([`crate::library`]) as the page shows it: every task
//! taught or loaded in this browser, newest first, with its labels, how and when it was
//! adapted; each can be used (loaded onto the model), renamed, exported as a task file or
//! deleted. A task adapted from another base model stays in the library, marked, and is
//! not loaded. After each start the page's task comes back: the one taught before a
//! restart, else the newest task of the library for this model.

use leptos::prelude::*;
use leptos::task::spawn_local;
use polytask_core::io::task_file::rename_task;

use crate::app::Model;
use crate::engine::Engine;
use crate::library::{self, TaskRecord};
use crate::protocol::TaskInfo;
use crate::storage::download_task;
use crate::teach::TaskSlot;

/// The library as the page shows it (the records; files are read when needed), its
/// message line and the loaded model's base. A handle: copies share it.
#[derive(Clone, Copy)]
pub struct Library {
    records: RwSignal<Vec<TaskRecord>>,
    msg: RwSignal<String>,
    /// The loaded bundle's base model (empty until one is loaded).
    pub base: RwSignal<String>,
}

impl Default for Library {
    fn default() -> Self {
        Library {
            records: RwSignal::new(Vec::new()),
            msg: RwSignal::new(String::new()),
            base: RwSignal::new(String::new()),
        }
    }
}

impl Library {
    /// Reads the library again.
    pub async fn refresh(&self) {
        match library::list().await {
            Ok(all) => self.records.set(all),
            Err(e) => self.msg.set(e),
        }
    }

    /// Keeps a task, in place of the tasks of the same name for the same base model (in
    /// one write: if it fails, the library is as it was).
    pub async fn keep(&self, record: TaskRecord, file: &[u8]) -> Result<(), String> {
        let replaced: Vec<String> = self.records.with_untracked(|all| {
            all.iter()
                .filter(|r| r.name == record.name && r.base == record.base)
                .map(|r| r.id.clone())
                .collect()
        });
        let kept = library::put(&record, file, &replaced).await;
        self.refresh().await;
        kept
    }

    /// The newest task of the library for the base model `base`.
    fn newest_for(&self, base: &str) -> Option<TaskRecord> {
        self.records
            .with_untracked(|all| all.iter().find(|r| r.base == base).cloned())
    }
}

/// The task `record` of the library loaded onto the model: what the worker says of it,
/// and its file.
async fn load_from_library(
    engine: &Engine,
    record: &TaskRecord,
) -> Result<(TaskInfo, Vec<u8>), String> {
    let file = library::file(&record.id).await?;
    let task = engine.load_task(record.name.clone(), &file).await?;
    Ok((task, file))
}

/// After a start on `engine` (model base `base`): the page's task onto the new model (the
/// one taught before a restart), else the newest task of the library for this model; the
/// task that earlier pages kept in `localStorage` moves into the library first.
/// `Some`: the page's own task could not move (for the error line).
pub async fn after_start(
    engine: &Engine,
    base: String,
    task: TaskSlot,
    library: Library,
) -> Option<String> {
    library.base.set(base.clone());
    if let Err(e) = library::migrate_kept_task().await {
        task.say(format!(
            "The task kept by this browser stays where it was: {e}"
        ));
    }
    library.refresh().await;
    if let Some(file) = task.file() {
        let name = task.name();
        return engine
            .load_task(name.clone(), &file)
            .await
            .err()
            .map(|e| format!("the taught task could not move: {e}"));
    }
    let record = library.newest_for(&base)?;
    match load_from_library(engine, &record).await {
        Ok((t, file)) => {
            task.say(format!(
                "restored task \"{}\" ({} labels) from the last visit",
                t.name, t.labels
            ));
            task.set(&t.name, file);
        }
        Err(e) => task.say(format!(
            "The task kept from the last visit was not restored: {e}"
        )),
    }
    None
}

/// The "Your tasks" box.
#[component]
pub fn TaskLibrary(model: Model, task: TaskSlot, library: Library) -> impl IntoView {
    let msg = library.msg;

    let on_use = move |record: TaskRecord| {
        spawn_local(async move {
            let result = match model.engine() {
                Ok(engine) => load_from_library(&engine, &record).await,
                Err(e) => Err(e),
            };
            match result {
                Ok((t, file)) => {
                    msg.set(format!("using task \"{}\" ({} labels)", t.name, t.labels));
                    task.set(&t.name, file);
                }
                Err(e) => msg.set(e),
            }
        });
    };

    let on_rename = move |record: TaskRecord, to: String| {
        let to = to.trim().to_string();
        if to.is_empty() {
            msg.set("Type the new name first.".into());
            return;
        }
        let taken = library.records.with_untracked(|all| {
            all.iter()
                .any(|r| r.name == to && r.base == record.base && r.id != record.id)
        });
        if taken {
            msg.set(format!("A task named \"{to}\" exists already."));
            return;
        }
        spawn_local(async move {
            let renamed = match library::file(&record.id).await {
                Ok(file) => rename_task(&file, &to, &record.name).map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            let renamed = match renamed {
                Ok(f) => f,
                Err(e) => {
                    msg.set(e);
                    return;
                }
            };
            let old = record.name.clone();
            let new_record = TaskRecord {
                name: to.clone(),
                ..record
            };
            if let Err(e) = library.keep(new_record, &renamed).await {
                msg.set(e);
                return;
            }
            // The model predicts under the new name from now on, if it had the task.
            if let Ok(engine) = model.engine() {
                let loaded = task.name() == old;
                engine.drop_task(old.clone()).await;
                if loaded && engine.load_task(to.clone(), &renamed).await.is_ok() {
                    task.set(&to, renamed);
                }
            }
            msg.set(format!("renamed \"{old}\" to \"{to}\""));
        });
    };

    let on_export = move |record: TaskRecord| {
        spawn_local(async move {
            let saved = match library::file(&record.id).await {
                Ok(file) => download_task(&record.name, &file),
                Err(e) => Err(e),
            };
            if let Err(e) = saved {
                msg.set(e);
            }
        });
    };

    let on_delete = move |record: TaskRecord| {
        spawn_local(async move {
            if let Err(e) = library::delete(&record.id).await {
                msg.set(e);
                return;
            }
            library.refresh().await;
            let same_base = record.base == library.base.get_untracked();
            let still_kept = library.records.with_untracked(|all| {
                all.iter()
                    .any(|r| r.name == record.name && r.base == record.base)
            });
            if same_base
                && !still_kept
                && let Ok(engine) = model.engine()
            {
                engine.drop_task(record.name.clone()).await;
                if task.name() == record.name {
                    task.clear();
                }
            }
            msg.set(format!("deleted \"{}\"", record.name));
        });
    };

    view! {
        <section id="library">
            <h2>"Your tasks"</h2>
            <p class="note">"Every task you teach or load is kept in this browser."</p>
            <ul id="task-list">
                <For each=move || library.records.get() key=|r| (r.id.clone(), r.name.clone()) let:record>
                    {
                        let other = record.base != library.base.get_untracked();
                        let rename_to = RwSignal::new(String::new());
                        let (r1, r2, r3, r4) = (record.clone(), record.clone(), record.clone(), record.clone());
                        view! {
                            <li class="task" data-name=record.name.clone() data-other-model=other.to_string()>
                                <strong>{record.name.clone()}</strong>
                                {format!(" — {} labels ({}), {}, {} steps, {}",
                                    record.labels.len(), record.labels.join(", "), record.mode, record.steps, record.when())}
                                {other.then_some(" — adapted from another model: it cannot be used with this one")}
                                " "
                                <button class="use" disabled=other on:click=move |_| on_use(r1.clone())>"Use"</button>
                                " "
                                <input class="rename-to" type="text" placeholder="new name"
                                    prop:value=move || rename_to.get()
                                    on:input=move |ev| rename_to.set(event_target_value(&ev)) />
                                <button class="rename" on:click=move |_| on_rename(r2.clone(), rename_to.get_untracked())>"Rename"</button>
                                " "
                                <button class="export" on:click=move |_| on_export(r3.clone())>"Export"</button>
                                " "
                                <button class="delete" on:click=move |_| on_delete(r4.clone())>"Delete"</button>
                            </li>
                        }
                    }
                </For>
            </ul>
            <p id="library-msg" class="error">{move || msg.get()}</p>
        </section>
    }
}
