//! What the model's worker has loaded: the bundle's encoder, its multi-task heads and its
//! few-shot tasks on one device.

use std::collections::BTreeMap;
use std::rc::Rc;

use burn::tensor::Device;
use polytask_core::fewshot::adapt::FewShotModel;
use polytask_core::io::task_file::{TaskMeta, load_task};
use polytask_core::model::multitask::{MultiTaskModel, MultiTaskSpec};
use polytask_core::{ModelFiles, SentenceEncoder};

use wasm_bindgen::JsValue;

use super::fetch;
use crate::page::now_ms;

/// What the worker has loaded.
pub struct Loaded {
    pub device: Device,
    /// Shared with each prediction and adaptation while it runs (the tokenizer's
    /// vocabulary is no small copy).
    pub encoder: Rc<SentenceEncoder>,
    pub base: String,
    /// The bundle's multi-task heads (sentence and token tasks) on the same encoder.
    pub multitask: Option<MultiTaskModel>,
    /// Bundled few-shot tasks, then those taught or loaded in the page.
    pub tasks: Vec<(FewShotModel, TaskMeta)>,
}

impl Loaded {
    /// A task file loaded onto this model, refused if it was adapted from another base.
    pub fn load_task(&self, bytes: &[u8], name: &str) -> Result<(FewShotModel, TaskMeta), String> {
        let (model, meta) =
            load_task(&self.encoder.model, bytes, name).map_err(|e| e.to_string())?;
        if meta.base != self.base {
            return Err(format!(
                "{name}: adapted from another model ({}), not this bundle's ({})",
                meta.base, self.base
            ));
        }
        Ok((model, meta))
    }

    /// Adds a task, in place of one of the same name.
    pub fn install_task(&mut self, model: FewShotModel, meta: TaskMeta) {
        self.tasks.retain(|(_, m)| m.name != meta.name);
        self.tasks.push((model, meta));
    }
}

/// A bundle's files, fetched and verified, not yet built on a device.
pub struct Fetched {
    /// Where the bundle is.
    url: String,
    manifest: fetch::Manifest,
    files: BTreeMap<String, Vec<u8>>,
    /// Files that came from the Cache API, and files that the page handed over.
    cached: usize,
    from_page: usize,
    /// When the fetch began, and when it ended (ms).
    t0: f64,
    t_fetched: f64,
}

/// Fetches and verifies the bundle's files, taking those that the page already read from
/// `page_files` ([`crate::envelope`]). It needs no device, so it runs while the device comes
/// up ([`super::start`]). `progress(done, total, note)`: bytes loaded of the total, and
/// what to say.
pub async fn fetch_bundle(
    base: &str,
    page_files: Option<JsValue>,
    progress: impl Fn(u64, u64, String),
) -> Result<Fetched, String> {
    let t0 = now_ms();
    let manifest = fetch::manifest(base).await?;
    let total = manifest.total_bytes();
    progress(0, total, String::new());
    let mut files = BTreeMap::new();
    let (mut done, mut cached, mut from_page) = (0u64, 0usize, 0usize);
    for entry in &manifest.files {
        let handed = page_files
            .as_ref()
            .and_then(|files| crate::envelope::file(files, &format!("{base}/{}", entry.name)));
        let (bytes, source) = fetch::file(base, entry, handed).await?;
        done += entry.bytes;
        cached += usize::from(source.cached);
        from_page += usize::from(source.page);
        progress(
            done,
            total,
            format!("{:.1} / {:.1} MB", done as f64 / 1e6, total as f64 / 1e6),
        );
        files.insert(entry.name.clone(), bytes);
    }
    Ok(Fetched {
        url: base.to_string(),
        manifest,
        files,
        cached,
        from_page,
        t0,
        t_fetched: now_ms(),
    })
}

/// Builds the encoder, its multi-task heads and its tasks on `device` from the fetched
/// files (`progress` as for [`fetch_bundle`]).
pub fn build_bundle(
    fetched: Fetched,
    device: &Device,
    progress: impl Fn(u64, u64, String),
) -> Result<Loaded, String> {
    let Fetched {
        url: base,
        manifest,
        files,
        cached,
        from_page,
        t0,
        t_fetched,
    } = fetched;
    let total = manifest.total_bytes();
    let t_build = now_ms();
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
    let t_encoder = now_ms();
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
    // Where the time goes (`?log=debug`).
    let t_end = now_ms();
    log::debug!(
        "bundle loaded in {:.0} ms: fetched and verified {:.0} ms, waited for the device \
         {:.0} ms, encoder (weights, tokenizer) {:.0} ms, tasks and heads {:.0} ms",
        t_end - t0,
        t_fetched - t0,
        t_build - t_fetched,
        t_encoder - t_build,
        t_end - t_encoder
    );
    progress(
        total,
        total,
        format!(
            "{:.1} MB ({} weights), {} of {} files from the cache, {} read while the page \
             started, {:.1} s",
            total as f64 / 1e6,
            manifest.dtype,
            cached,
            manifest.files.len(),
            from_page,
            (now_ms() - t0) / 1000.0,
        ),
    );
    Ok(Loaded {
        device: device.clone(),
        encoder: Rc::new(encoder),
        base: manifest.base.clone(),
        multitask,
        tasks,
    })
}
