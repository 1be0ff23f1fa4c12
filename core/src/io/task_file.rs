//! Task files: what few-shot adaptation saves. The adapted parameters alone (head, plus
//! adapters or top blocks) in a small safetensors file, with the label set and the
//! settings in its metadata (`task`, JSON, [`TaskMeta`]), applied on top of the same base
//! encoder. Everything read from one is checked against that encoder: a task file is as
//! untrusted as a command line.

use std::collections::{BTreeMap, BTreeSet};

use burn::nn::LinearConfig;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fewshot::adapt::{AdaptConfig, FewShotModel, is_trainable, prepare};
use crate::io::checkpoint::check_finite;
use crate::io::safetensors::{read_f32_tensors, read_header, read_metadata, write_f32};
use crate::model::bert::BertModel;
use crate::model::params::{parameters, set_parameters};

/// What a task file says about itself (its safetensors metadata).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskMeta {
    /// Format marker and version: `polytask-task/1`.
    pub format: String,
    pub name: String,
    pub labels: Vec<String>,
    pub config: AdaptConfig,
    /// The first adapting block.
    pub first: usize,
    /// Identifies the base encoder the task was adapted from (e.g. its sha256).
    pub base: String,
    /// The tokenizer's maximum length during adaptation.
    pub max_len: usize,
}

pub const TASK_FORMAT: &str = "polytask-task/1";

/// The adapted parameters alone (head, plus adapters or top blocks) as a safetensors file,
/// with `meta` in its metadata. Paths are the model's (`head.weight`,
/// `bert.encoder.layer.5.output.adapter.up.weight`), shapes burn's (`[in, out]`).
pub fn save_task(model: &FewShotModel, meta: &TaskMeta) -> Result<Vec<u8>> {
    let mut entries = Vec::new();
    for (path, shape, values) in task_tensors(model, meta)? {
        let values = values
            .try_into_vec_as::<f32>()
            .map_err(Error::read_back(path.clone()))?;
        entries.push((path, shape, values));
    }
    write_task(&entries, meta)
}

/// [`save_task`] reading the parameters back asynchronously (WebGPU in the browser).
pub async fn save_task_async(model: &FewShotModel, meta: &TaskMeta) -> Result<Vec<u8>> {
    let mut entries = Vec::new();
    for (path, shape, values) in task_tensors(model, meta)? {
        let values = values
            .into_data_async()
            .await
            .map_err(Error::read_back(path.clone()))?
            .try_into_vec_as::<f32>()
            .map_err(Error::read_back(path.clone()))?;
        entries.push((path, shape, values));
    }
    write_task(&entries, meta)
}

/// The adapted parameters of a task: `(path, shape, flat values)`.
fn task_tensors(
    model: &FewShotModel,
    meta: &TaskMeta,
) -> Result<Vec<(String, Vec<usize>, Tensor<1>)>> {
    if meta.labels.len() != model.num_classes() {
        return Err(Error::Input(format!(
            "{} labels for a head with {} classes",
            meta.labels.len(),
            model.num_classes()
        )));
    }
    Ok(parameters(model)
        .into_iter()
        .filter(|(path, _)| is_trainable(path, meta.config.mode, meta.first))
        .map(|(path, (shape, values))| (path, shape, values))
        .collect())
}

fn write_task(entries: &[(String, Vec<usize>, Vec<f32>)], meta: &TaskMeta) -> Result<Vec<u8>> {
    let mut metadata = BTreeMap::new();
    let json =
        serde_json::to_string(meta).map_err(|e| Error::Serialise(format!("task metadata: {e}")))?;
    metadata.insert("task".to_string(), json);
    write_f32(entries, &metadata)
}

/// Reads a task file's metadata only.
pub fn read_task_meta(bytes: &[u8], source: &str) -> Result<TaskMeta> {
    let fail = |m: String| Error::Checkpoint {
        file: source.into(),
        message: m,
    };
    read_header(bytes, source)?;
    let metadata = read_metadata(bytes, source)?;
    let text = metadata
        .get("task")
        .ok_or_else(|| fail("not a task file (no task metadata)".into()))?;
    let meta: TaskMeta =
        serde_json::from_str(text).map_err(|e| fail(format!("bad task metadata: {e}")))?;
    if meta.format != TASK_FORMAT {
        return Err(fail(format!(
            "task format {:?}, this build reads {TASK_FORMAT:?}",
            meta.format
        )));
    }
    Ok(meta)
}

/// The task file `bytes` under another name (its metadata's `name`); the tensors and the
/// rest of the metadata are unchanged. `source` names the file in errors.
pub fn rename_task(bytes: &[u8], name: &str, source: &str) -> Result<Vec<u8>> {
    let mut meta = read_task_meta(bytes, source)?;
    meta.name = name.to_string();
    let entries: Vec<_> = read_f32_tensors(bytes, source)?
        .into_iter()
        .map(|(path, (shape, values))| (path, shape, values))
        .collect();
    write_task(&entries, &meta)
}

/// Applies a task file to the base encoder `bert` it was adapted from: the result
/// predicts the task's labels. Missing, extra or mis-shaped tensors are named.
pub fn load_task(bert: &BertModel, bytes: &[u8], source: &str) -> Result<(FewShotModel, TaskMeta)> {
    let fail = |m: String| Error::Checkpoint {
        file: source.into(),
        message: m,
    };
    let meta = read_task_meta(bytes, source)?;
    check_finite(bytes, source)?;
    if meta.labels.len() < 2 {
        return Err(fail(format!(
            "a task needs at least 2 labels, the file has {}",
            meta.labels.len()
        )));
    }
    meta.config
        .validate(bert.num_layers())
        .map_err(|e| fail(format!("metadata: {e}")))?;
    if meta.first > bert.num_layers() {
        return Err(fail(format!(
            "metadata: first = {}, but the encoder has {} blocks",
            meta.first,
            bert.num_layers()
        )));
    }
    if !(3..=bert.max_positions()).contains(&meta.max_len) {
        return Err(fail(format!(
            "metadata: max_len = {}, the encoder takes 3 to {} word pieces",
            meta.max_len,
            bert.max_positions()
        )));
    }
    let device = bert.pooler.dense.weight.device();
    let bert = prepare(bert, &meta.config);
    let hidden = bert.hidden_size();
    let model = FewShotModel {
        bert,
        head: LinearConfig::new(hidden, meta.labels.len()).init(&device),
    };
    let values: BTreeMap<String, (Vec<usize>, Tensor<1>)> = read_f32_tensors(bytes, source)?
        .into_iter()
        .map(|(name, (shape, v))| {
            let n = v.len();
            let t = Tensor::<1>::from_data(TensorData::new(v, [n]), &device);
            (name, (shape, t))
        })
        .collect();
    let expected: BTreeSet<String> = parameters(&model)
        .into_keys()
        .filter(|p| is_trainable(p, meta.config.mode, meta.first))
        .collect();
    let stored: BTreeSet<String> = values.keys().cloned().collect();
    let missing: Vec<&String> = expected.difference(&stored).collect();
    if !missing.is_empty() {
        return Err(fail(format!("missing tensors {missing:?}")));
    }
    let extra: Vec<&String> = stored.difference(&expected).collect();
    if !extra.is_empty() {
        return Err(fail(format!(
            "tensors {extra:?} are not adapted parameters of this task (does the base model match?)"
        )));
    }
    let mut values = values;
    let (model, mismatched) = set_parameters(model, &mut values);
    if !mismatched.is_empty() {
        return Err(fail(format!(
            "{} (does the base model match?)",
            mismatched.join("; ")
        )));
    }
    Ok((model, meta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fewshot::adapt::AdaptMode;
    use crate::fewshot::adapt::tests::{adapt, config, setup};
    use crate::model::config::BertConfig;
    use burn::tensor::Device;

    #[test]
    fn task_files_round_trip_with_identical_predictions() {
        let (bert, support, labels, query, _) = setup();
        for mode in AdaptMode::ALL {
            let c = config(mode, 3);
            let adapted = adapt(&bert, support.clone(), &labels, 3, &c, |_, _| {}).unwrap();
            let meta = TaskMeta {
                format: TASK_FORMAT.into(),
                name: "toy".into(),
                labels: vec!["a".into(), "b".into(), "c".into()],
                config: c.clone(),
                first: adapted.first,
                base: "tiny".into(),
                max_len: 16,
            };
            let bytes = save_task(&adapted.model, &meta).unwrap();
            let names = read_header(&bytes, "t").unwrap();
            match mode {
                AdaptMode::Head => assert_eq!(names.len(), 2),
                AdaptMode::Adapters => assert_eq!(names.len(), 2 + 8),
                AdaptMode::Full => assert_eq!(names.len(), 2 + 16),
            }
            let (loaded, meta2) = load_task(&bert, &bytes, "t").unwrap();
            assert_eq!(meta2, meta);
            // Renamed: the new name, the same tensors and other metadata.
            let renamed = rename_task(&bytes, "toy 2", "t").unwrap();
            let meta3 = read_task_meta(&renamed, "t").unwrap();
            assert_eq!(meta3.name, "toy 2");
            assert_eq!(
                TaskMeta {
                    name: "toy".into(),
                    ..meta3
                },
                meta
            );
            assert_eq!(
                read_f32_tensors(&renamed, "t").unwrap(),
                read_f32_tensors(&bytes, "t").unwrap()
            );
            let p = |m: &FewShotModel| {
                m.probabilities(query.clone())
                    .try_into_vec_as::<f32>()
                    .unwrap()
            };
            assert_eq!(p(&adapted.model), p(&loaded), "{mode:?}");
            // The same file on another encoder shape: named, not a panic.
            let other = BertConfig {
                hidden_size: 8,
                num_attention_heads: 2,
                intermediate_size: 16,
                ..BertConfig::tiny(30)
            }
            .init(&Device::flex());
            let e = load_task(&other, &bytes, "t.safetensors")
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("t.safetensors: ") && e.contains("shape"),
                "{e}"
            );
        }
        let e = load_task(
            &bert,
            &write_f32(&[("x".into(), vec![1], vec![1.0])], &BTreeMap::new()).unwrap(),
            "x",
        )
        .unwrap_err();
        assert!(e.to_string().contains("not a task file"), "{e}");
    }
}
