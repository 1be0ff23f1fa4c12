//! The task library: every task taught or loaded in the page, kept in this browser's
//! IndexedDB (database `polytask`, store `tasks`): its name, labels, the examples it was
//! taught from, how it was adapted, when, the base model it belongs to (store `tasks`);
//! and its task file (store `files`, read only when needed).
//! A write puts the new record and removes the records it replaces in one transaction, so
//! a failed write (a full disk, a closed tab) leaves the library as it was. The one task
//! that earlier pages kept in `localStorage` moves into the library (and leaves
//! `localStorage` only once the library holds it).

use polytask_core::io::task_file::{TaskMeta, read_task_meta};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use crate::storage;

// IndexedDB through a few lines of JavaScript (its request/transaction events are clumsy
// from Rust, and web-sys features would rebuild web-sys and everything above it).
#[wasm_bindgen(inline_js = r#"
const DB = 'polytask';
const TASKS = 'tasks';
const FILES = 'files';

function openDb() {
  return new Promise((resolve, reject) => {
    if (!globalThis.indexedDB) {
      reject(new Error('this browser gives the page no IndexedDB (a private window?)'));
      return;
    }
    const r = indexedDB.open(DB, 1);
    r.onupgradeneeded = () => {
      r.result.createObjectStore(TASKS, { keyPath: 'id' });
      r.result.createObjectStore(FILES);
    };
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
    r.onblocked = () => reject(new Error('an older tab of this page holds the task library open'));
  });
}

// Runs `f(tasks, files)` in one transaction; resolves with the last request's result once
// the transaction has committed, rejects if it aborts (nothing of it is then written).
async function run(mode, f) {
  const db = await openDb();
  try {
    return await new Promise((resolve, reject) => {
      const t = db.transaction([TASKS, FILES], mode);
      let request;
      try {
        request = f(t.objectStore(TASKS), t.objectStore(FILES));
      } catch (e) {
        try { t.abort(); } catch (_) { /* already finished */ }
        reject(e);
        return;
      }
      t.oncomplete = () => resolve(request && request.result);
      t.onabort = () => reject(t.error ?? new Error('the write was aborted'));
    });
  } finally {
    db.close();
  }
}

export async function library_list() {
  const all = await run('readonly', (tasks) => tasks.getAll());
  return JSON.stringify(all);
}

export async function library_file(id) {
  return await run('readonly', (_, files) => files.get(id));
}

export async function library_put(json, file, drop) {
  const record = JSON.parse(json);
  await run('readwrite', (tasks, files) => {
    for (const id of drop) {
      if (id !== record.id) {
        tasks.delete(id);
        files.delete(id);
      }
    }
    files.put(file, record.id);
    return tasks.put(record);
  });
}

export async function library_delete(id) {
  await run('readwrite', (tasks, files) => {
    files.delete(id);
    return tasks.delete(id);
  });
}
"#)]
extern "C" {
    #[wasm_bindgen(catch)]
    async fn library_list() -> Result<JsValue, JsValue>;

    #[wasm_bindgen(catch)]
    async fn library_file(id: &str) -> Result<JsValue, JsValue>;

    #[wasm_bindgen(catch)]
    async fn library_put(
        json: &str,
        file: js_sys::Uint8Array,
        drop: js_sys::Array,
    ) -> Result<JsValue, JsValue>;

    #[wasm_bindgen(catch)]
    async fn library_delete(id: &str) -> Result<JsValue, JsValue>;
}

/// One task of the library (its file is kept beside it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub id: String,
    pub name: String,
    pub labels: Vec<String>,
    /// The `label: text` lines it was taught from; empty for a loaded task file.
    pub examples: String,
    /// How it was adapted: `head`, `adapters`, `full`, `contrastive + adapters`; and the
    /// number of steps (all of them).
    pub mode: String,
    pub steps: usize,
    /// When it was kept, ISO 8601 (UTC).
    pub date: String,
    /// The base model it was adapted from (a bundle's `base`): it loads onto that one only.
    pub base: String,
}

impl TaskRecord {
    /// A new record for the task file `file` (whose metadata it reads; `source` names the
    /// file in errors), taught from `examples`.
    pub fn new(file: &[u8], source: &str, examples: &str) -> Result<Self, String> {
        let meta = read_task_meta(file, source).map_err(|e| e.to_string())?;
        Ok(Self::from_meta(&meta, examples))
    }

    fn from_meta(meta: &TaskMeta, examples: &str) -> Self {
        TaskRecord {
            id: new_id(),
            name: meta.name.clone(),
            labels: meta.labels.clone(),
            examples: examples.to_string(),
            mode: crate::text::mode_name(&meta.config),
            steps: meta.config.contrastive_steps + meta.config.steps,
            date: String::from(js_sys::Date::new_0().to_iso_string()),
            base: meta.base.clone(),
        }
    }

    /// The date as the page shows it: `2026-12-07 01:02`.
    pub fn when(&self) -> String {
        self.date
            .get(..16)
            .unwrap_or(&self.date)
            .replacen('T', " ", 1)
    }
}

fn new_id() -> String {
    format!(
        "{:x}-{:08x}",
        js_sys::Date::now() as u64,
        (js_sys::Math::random() * u32::MAX as f64) as u32
    )
}

/// What a failed IndexedDB call says; a full store is said plainly.
fn failure(what: &str, e: JsValue) -> String {
    let get = |k: &str| {
        js_sys::Reflect::get(&e, &k.into())
            .ok()
            .and_then(|v| v.as_string())
    };
    if get("name").as_deref() == Some("QuotaExceededError") {
        return format!("{what}: this browser's storage for the page is full");
    }
    let why = get("message")
        .or_else(|| e.as_string())
        .unwrap_or_else(|| format!("{e:?}"));
    format!("{what}: {why}")
}

/// Every task of the library, newest first (without the files: [`file`]).
pub async fn list() -> Result<Vec<TaskRecord>, String> {
    let json = library_list()
        .await
        .map_err(|e| failure("the task library cannot be read", e))?
        .as_string()
        .unwrap_or_default();
    let all: Vec<serde_json::Value> = serde_json::from_str(&json).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for value in all {
        match serde_json::from_value::<TaskRecord>(value.clone()) {
            Ok(record) => out.push(record),
            // Written by another version of the page: left alone, not shown.
            Err(e) => {
                log::warn!("the task library holds a record this page cannot read ({e}): {value}")
            }
        }
    }
    out.sort_by(|a, b| b.date.cmp(&a.date));
    Ok(out)
}

/// The task file of the task `id`.
pub async fn file(id: &str) -> Result<Vec<u8>, String> {
    let file = library_file(id)
        .await
        .map_err(|e| failure("the task file cannot be read", e))?;
    file.dyn_into::<js_sys::Uint8Array>()
        .map(|f| f.to_vec())
        .map_err(|_| format!("the task library holds no file for task {id}"))
}

/// Keeps `record` with its `file`, and removes the records `replaced` (ids) in the same
/// transaction: either all of it happens or none.
pub async fn put(record: &TaskRecord, file: &[u8], replaced: &[String]) -> Result<(), String> {
    let json = serde_json::to_string(record).map_err(|e| e.to_string())?;
    let drop: js_sys::Array = replaced.iter().map(|id| JsValue::from_str(id)).collect();
    library_put(&json, js_sys::Uint8Array::from(file), drop)
        .await
        .map(|_| ())
        .map_err(|e| failure("not kept in the task library", e))
}

/// Removes one task.
pub async fn delete(id: &str) -> Result<(), String> {
    library_delete(id)
        .await
        .map(|_| ())
        .map_err(|e| failure("not deleted", e))
}

/// Moves the task that earlier pages kept in `localStorage` into the library; the
/// `localStorage` copy goes only once the library holds it. `Err`: why it stays there.
pub async fn migrate_kept_task() -> Result<Option<TaskRecord>, String> {
    let Some(file) = storage::remembered_task() else {
        return Ok(None);
    };
    let record = TaskRecord::new(&file, "the task kept by this browser", "")?;
    put(&record, &file, &[]).await?;
    storage::forget_task();
    Ok(Some(record))
}
