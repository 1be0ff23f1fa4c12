//! Loading Hugging Face BERT checkpoints (`model.safetensors`) into [`BertModel`].
//!
//! Keys are Hugging Face parameter names. Both layouts load: bare (`embeddings.…`, as saved
//! by `BertModel`) and prefixed (`bert.embeddings.…`, as saved by `BertFor*` models, whose
//! task heads outside `bert.` are ignored and listed). Buffers that are not parameters
//! (`embeddings.position_ids`) are skipped. Any other missing, extra or mis-shaped tensor
//! is an error that names it. A checkpoint without `pooler.*` loads too (the pooler stays
//! freshly initialised; mean pooling never uses it), and the report says so.

use std::collections::BTreeMap;

use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::{
    ApplyError, BurnToPyTorchAdapter, FloatCastAdapter, ModuleAdapter, ModuleContext,
    ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore, bridge,
};
use burn::tensor::{DType, Shape, TensorData};

use crate::error::{Error, Result};
use crate::io::safetensors::{RawTensor, parse};
use crate::io::safetensors::{TensorInfo, read_header};
use crate::model::bert::BertModel;

/// What a load did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Number of parameters set from the checkpoint.
    pub applied: usize,
    /// Buffers in the file that are not parameters and were skipped.
    pub skipped_buffers: Vec<String>,
    /// Tensors of other architectures' heads (outside `bert.`) that were ignored.
    pub ignored_heads: Vec<String>,
    /// Whether the file had no pooler (left at its initialisation).
    pub pooler_missing: bool,
}

fn checkpoint_error(source: &str, message: impl Into<String>) -> Error {
    Error::Checkpoint {
        file: source.into(),
        message: message.into(),
    }
}

/// Hugging Face's name for one of our parameter paths (`self_` → `self`,
/// LayerNorm `gamma`/`beta` → `weight`/`bias`).
pub fn hf_name(path: &str) -> String {
    let name = path.replace(".self_.", ".self.");
    if name.contains("LayerNorm.") {
        name.replace("LayerNorm.gamma", "LayerNorm.weight")
            .replace("LayerNorm.beta", "LayerNorm.bias")
    } else {
        name
    }
}

/// A parameter's shape as PyTorch stores it: Linear weights are `[out, in]` there and
/// `[in, out]` in burn.
fn hf_shape(path: &str, shape: &[usize]) -> Vec<usize> {
    let mut shape = shape.to_vec();
    let linear = ["query", "key", "value", "dense", "down", "up"]
        .iter()
        .any(|m| path.ends_with(&format!(".{m}.weight")));
    if linear {
        shape.reverse();
    }
    shape
}

fn is_buffer(name: &str) -> bool {
    name.ends_with("position_ids") || name.ends_with("num_batches_tracked")
}

/// A float width a safetensors file can store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatWidth {
    F32,
    F16,
}

impl FloatWidth {
    fn tag(self) -> &'static str {
        match self {
            FloatWidth::F32 => "F32",
            FloatWidth::F16 => "F16",
        }
    }
}

/// Rewrites a safetensors file with every F32/F16 tensor stored as `to` (names, shapes,
/// metadata and other dtypes unchanged). F16 halves a download; loading converts back.
pub fn convert_floats(bytes: &[u8], to: FloatWidth, source: &str) -> Result<Vec<u8>> {
    convert_floats_where(bytes, to, source, |_| true)
}

/// [`convert_floats`] of the tensors whose names satisfy `keep`; the others are left out
/// (and not converted).
pub fn convert_floats_where(
    bytes: &[u8],
    to: FloatWidth,
    source: &str,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<u8>> {
    use burn::tensor::f16;
    let parsed = parse(bytes, source)?;
    let mut tensors = BTreeMap::new();
    for (name, info) in parsed.tensors.iter().filter(|(name, _)| keep(name)) {
        let src = parsed.bytes(info);
        let (dtype, bytes): (&str, Vec<u8>) = match (info.dtype.as_str(), to) {
            ("F32", FloatWidth::F16) => (
                to.tag(),
                src.chunks_exact(4)
                    .flat_map(|c| {
                        f16::from_f32(f32::from_le_bytes(c.try_into().expect("4"))).to_le_bytes()
                    })
                    .collect(),
            ),
            ("F16", FloatWidth::F32) => (
                to.tag(),
                src.chunks_exact(2)
                    .flat_map(|c| {
                        f16::from_le_bytes(c.try_into().expect("2"))
                            .to_f32()
                            .to_le_bytes()
                    })
                    .collect(),
            ),
            // Already `to`, or not a float: kept as it is.
            (other, _) => (other, src.to_vec()),
        };
        let t = RawTensor {
            dtype: dtype.into(),
            shape: info.shape.clone(),
            bytes,
        };
        tensors.insert(name.clone(), t);
    }
    crate::io::safetensors::write(&tensors, &parsed.metadata)
}

/// How a file's tensors become parameters: PyTorch layouts and names to burn's
/// ([`PyTorchToBurnAdapter`]), and F16 or BF16 widened to F32, each tensor as it is drawn
/// (no widened copy of the whole file is made). A linear layer's weight is transposed and
/// widened in one typed pass: the two adapters chained would copy it twice, the transpose
/// one byte at a time (a quarter of the load time of the browser's encoder).
#[derive(Debug, Clone, Default)]
pub(crate) struct FromFile;

impl ModuleAdapter for FromFile {
    fn adapt(&self, tensor: PackTensor, ctx: ModuleContext<'_>) -> PackTensor {
        let linear_weight = ctx.module_type() == Some("Struct:Linear")
            && tensor.name.rsplit('.').next() == Some("weight")
            && tensor.shape.len() == 2;
        let dtype = tensor.dtype;
        if linear_weight && matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
            let (rows, cols) = (tensor.shape[0], tensor.shape[1]);
            let name = tensor.name.clone();
            return bridge::map_data(
                tensor,
                name,
                DType::F32,
                Shape::new([cols, rows]),
                move |d| {
                    TensorData::new(
                        transposed_f32(d.as_bytes(), dtype, rows, cols),
                        [cols, rows],
                    )
                },
            );
        }
        FloatCastAdapter::to(DType::F32).adapt(PyTorchToBurnAdapter.adapt(tensor, ctx), ctx)
    }

    fn get_alternative_param_name(&self, param_name: &str, container_type: &str) -> Option<String> {
        PyTorchToBurnAdapter.get_alternative_param_name(param_name, container_type)
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(self.clone())
    }
}

/// The `[rows, cols]` matrix stored in `bytes` (little-endian F32, F16 or BF16), as F32
/// in `[cols, rows]` order.
fn transposed_f32(bytes: &[u8], dtype: DType, rows: usize, cols: usize) -> Vec<f32> {
    use burn::tensor::{bf16, f16};
    assert_eq!(
        bytes.len(),
        rows * cols * dtype.size(),
        "a {rows}×{cols} {dtype:?} matrix"
    );
    match dtype {
        DType::F32 => transposed(bytes, rows, cols, |b: [u8; 4]| f32::from_le_bytes(b)),
        DType::F16 => transposed(bytes, rows, cols, |b: [u8; 2]| {
            f16::from_le_bytes(b).to_f32()
        }),
        _ => transposed(bytes, rows, cols, |b: [u8; 2]| {
            bf16::from_le_bytes(b).to_f32()
        }),
    }
}

/// `[cols, rows]` F32 from the row-major `[rows, cols]` matrix in `bytes`, whose elements
/// are `W` bytes each, `value` read from each. Tile by tile, so that the writes, a column
/// apart, stay within a few cache lines; each tile row is read as one contiguous run.
fn transposed<const W: usize>(
    bytes: &[u8],
    rows: usize,
    cols: usize,
    value: impl Fn([u8; W]) -> f32,
) -> Vec<f32> {
    const TILE: usize = 32;
    let mut out = vec![0f32; rows * cols];
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            let c1 = (c0 + TILE).min(cols);
            for r in r0..(r0 + TILE).min(rows) {
                let run = &bytes[(r * cols + c0) * W..(r * cols + c1) * W];
                let column = out[c0 * rows + r..].iter_mut().step_by(rows);
                for (o, b) in column.zip(run.chunks_exact(W)) {
                    *o = value(b.try_into().expect("W bytes"));
                }
            }
        }
    }
    out
}

/// Loads a checkpoint's bytes into `model`. `source` names the file in errors. F16
/// tensors are widened to F32 as they are loaded.
pub fn load_bert(model: &mut BertModel, bytes: Vec<u8>, source: &str) -> Result<LoadReport> {
    check_finite(&bytes, source)?;
    let header = read_header(&bytes, source)?;
    let prefixed = header.keys().any(|k| k.starts_with("bert."));
    let mut report = LoadReport::default();
    for name in header.keys() {
        let bare = if prefixed {
            name.strip_prefix("bert.")
        } else {
            Some(name.as_str())
        };
        match bare {
            Some(bare) if is_buffer(bare) => report.skipped_buffers.push(name.clone()),
            Some(_) => {}
            None => report.ignored_heads.push(name.clone()),
        }
    }

    add_stored_adapters(model, &header, prefixed, source)?;
    add_stored_casing(model, &header, if prefixed { "bert." } else { "" });

    let mut store = SafetensorsStore::from_bytes(Some(bytes))
        .with_from_adapter(FromFile)
        .with_key_remapping(r"\.attention\.self\.", ".attention.self_.")
        .validate(false)
        .allow_partial(true);
    if prefixed {
        store = store.with_key_remapping(r"^bert\.", "");
    }
    let result = model
        .load_from(&mut store)
        .map_err(|e| checkpoint_error(source, format!("cannot read tensors: {e}")))?;

    if let Some(error) = result.errors.first() {
        return Err(checkpoint_error(
            source,
            apply_error_message(error, "does config.json match this checkpoint?"),
        ));
    }
    let prefix = if prefixed { "bert." } else { "" };
    let mut missing = Vec::new();
    for (path, _) in &result.missing {
        if path.starts_with("pooler.") {
            report.pooler_missing = true;
        } else {
            missing.push(format!("{prefix}{}", hf_name(path)));
        }
    }
    if !missing.is_empty() {
        return Err(checkpoint_error(
            source,
            format!("missing {}", tensors(&missing)),
        ));
    }
    let extra: Vec<String> = result
        .unused
        .iter()
        .map(|k| {
            // Undo our remapping so the message shows the file's own key.
            let k = k.replace(".attention.self_.", ".attention.self.");
            if prefixed && !k.starts_with("bert.") && header.contains_key(&format!("bert.{k}")) {
                format!("bert.{k}")
            } else {
                k
            }
        })
        .filter(|k| !report.skipped_buffers.contains(k) && !report.ignored_heads.contains(k))
        .collect();
    if !extra.is_empty() {
        return Err(checkpoint_error(
            source,
            format!(
                "unexpected {} (not a parameter of this BERT encoder)",
                tensors(&extra)
            ),
        ));
    }
    report.applied = result.applied.len();
    Ok(report)
}

/// A one-line message for a tensor that did not fit, in the file's own names and
/// layouts, ending with `hint` (which file to look at).
pub(crate) fn apply_error_message(error: &ApplyError, hint: &str) -> String {
    match error {
        ApplyError::ShapeMismatch {
            path,
            expected,
            found,
        } => format!(
            "tensor '{}' has shape {:?}, the model expects {:?} ({hint})",
            hf_name(path),
            hf_shape(path, found.as_slice()),
            hf_shape(path, expected.as_slice())
        ),
        ApplyError::DTypeMismatch {
            path,
            expected,
            found,
        } => format!(
            "tensor '{}' has dtype {found:?}, expected {expected:?}",
            hf_name(path)
        ),
        ApplyError::AdapterError { path, message } | ApplyError::LoadError { path, message } => {
            format!("tensor '{}': {message}", hf_name(path))
        }
    }
}

/// Fails, naming the first tensor, unless every float value (F32, F16, BF16) in the
/// safetensors file `bytes` is finite: a NaN or infinite weight would make every output
/// NaN without an error.
pub fn check_finite(bytes: &[u8], source: &str) -> Result<()> {
    use burn::tensor::{bf16, f16};
    let parsed = parse(bytes, source)?;
    for (name, info) in &parsed.tensors {
        // Scanned in place: a model's weights are not copied to be checked. A half
        // float is not finite when its exponent bits are all ones.
        let data = parsed.bytes(info);
        let bad = match info.dtype.as_str() {
            // A block at a time without branching (the compiler vectorises it), the
            // element itself looked for only in a block that holds one.
            "F32" => data
                .chunks(4 * 1024)
                .enumerate()
                .find(|(_, block)| {
                    block.chunks_exact(4).fold(false, |bad, c| {
                        let bits = u32::from_le_bytes(c.try_into().expect("4 bytes"));
                        bad | (bits & 0x7f80_0000 == 0x7f80_0000)
                    })
                })
                .and_then(|(k, block)| {
                    block
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                        .enumerate()
                        .find(|(_, v)| !v.is_finite())
                        .map(|(i, v)| (k * 1024 + i, v))
                }),
            "F16" | "BF16" => {
                let (mask, value): (u16, fn(u16) -> f32) = if info.dtype == "F16" {
                    (0x7c00, |b| f16::from_bits(b).to_f32())
                } else {
                    (0x7f80, |b| bf16::from_bits(b).to_f32())
                };
                data.chunks_exact(2)
                    .map(|c| u16::from_le_bytes(c.try_into().expect("2 bytes")))
                    .enumerate()
                    .find(|(_, b)| b & mask == mask)
                    .map(|(i, b)| (i, value(b)))
            }
            _ => None,
        };
        if let Some((i, v)) = bad {
            return Err(checkpoint_error(
                source,
                format!(
                    "tensor '{name}' holds a non-finite value (element {i} is {v}); the weights are corrupt"
                ),
            ));
        }
    }
    Ok(())
}

/// The name under which a casing table ([`crate::model::casing`]) is saved, without prefix.
pub const CASING_TENSOR: &str = "embeddings.casing_embeddings.weight";

/// Gives `model` a casing table when the checkpoint stores one (`{prefix}`
/// [`CASING_TENSOR`]), so that its tensor has somewhere to go; a wrong shape is then
/// reported by the loader like any other.
pub fn add_stored_casing(
    model: &mut BertModel,
    header: &BTreeMap<String, TensorInfo>,
    prefix: &str,
) {
    if header.contains_key(&format!("{prefix}{CASING_TENSOR}")) {
        let device = model.pooler.dense.weight.device();
        model.add_casing(&device);
    }
}

/// Gives `model` an adapter wherever the checkpoint stores one
/// (`encoder.layer.N.{attention.output,output}.adapter.down.weight`, PyTorch layout
/// `[bottleneck, hidden]`), so that their tensors have somewhere to go.
fn add_stored_adapters(
    model: &mut BertModel,
    header: &BTreeMap<String, TensorInfo>,
    prefixed: bool,
    source: &str,
) -> Result<()> {
    let device = model.pooler.dense.weight.device();
    let hidden = model.hidden_size();
    let n_layers = model.num_layers();
    for (name, info) in header {
        let bare = if prefixed {
            match name.strip_prefix("bert.") {
                Some(b) => b,
                None => continue,
            }
        } else {
            name.as_str()
        };
        let Some(rest) = bare.strip_prefix("encoder.layer.") else {
            continue;
        };
        let Some((index, place)) = rest.split_once('.') else {
            continue;
        };
        let Some(place) = place.strip_suffix(".adapter.down.weight") else {
            continue;
        };
        let layer: usize = index
            .parse()
            .ok()
            .filter(|&l| l < n_layers)
            .ok_or_else(|| {
                checkpoint_error(
                    source,
                    format!("tensor '{name}': no block {index} in a {n_layers}-block encoder"),
                )
            })?;
        let size = match info.shape[..] {
            [size, h] if h == hidden => size,
            _ => {
                return Err(checkpoint_error(
                    source,
                    format!(
                        "tensor '{name}' has shape {:?}, expected [bottleneck, {hidden}]",
                        info.shape
                    ),
                ));
            }
        };
        let block = &mut model.encoder.layer[layer];
        let slot = match place {
            "attention.output" => &mut block.attention.output.adapter,
            "output" => &mut block.output.adapter,
            _ => continue,
        };
        *slot = Some(crate::model::bert::Adapter::new(hidden, size, &device));
    }
    Ok(())
}

/// The encoder's weights as a safetensors file with Hugging Face names and PyTorch
/// layouts (bare keys, as `BertModel.save_pretrained` writes them; adapters included), so
/// it loads back with [`load_bert`] and in `transformers`.
pub fn bert_to_safetensors(model: &BertModel) -> Result<Vec<u8>> {
    let mut store = SafetensorsStore::from_bytes(None)
        .with_to_adapter(BurnToPyTorchAdapter)
        .with_key_remapping(r"\.attention\.self_\.", ".attention.self.");
    model
        .save_into(&mut store)
        .map_err(|e| Error::Serialise(format!("the encoder: {e}")))?;
    store
        .get_bytes()
        .map_err(|e| Error::Serialise(format!("the encoder: {e}")))
}

/// `tensor 'a'` or `tensors 'a', 'b' and 3 more`.
fn tensors(names: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut s = String::from(if names.len() > 1 {
        "tensors "
    } else {
        "tensor "
    });
    s += &names
        .iter()
        .take(SHOWN)
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::BertConfig;
    use burn::tensor::Device;

    /// Saves a model the way Hugging Face would: HF names, PyTorch layouts, with the
    /// `position_ids` buffer, optionally under a `bert.` prefix.
    fn hf_bytes(model: &BertModel, prefix: &str) -> Vec<u8> {
        let mut store = SafetensorsStore::from_bytes(None)
            .with_to_adapter(BurnToPyTorchAdapter)
            .with_key_remapping(r"\.attention\.self_\.", ".attention.self.");
        if !prefix.is_empty() {
            store = store.with_key_remapping("^", prefix);
        }
        model.save_into(&mut store).unwrap();
        let bytes = store.get_bytes().unwrap();
        add_tensor(
            &bytes,
            &format!("{prefix}embeddings.position_ids"),
            "I64",
            &[1, 4],
            8,
        )
    }

    /// Splits a safetensors file into (name → (dtype, shape, bytes)).
    fn split(bytes: &[u8]) -> BTreeMap<String, (String, Vec<usize>, Vec<u8>)> {
        let parsed = parse(bytes, "test").unwrap();
        let raw = |t: &TensorInfo| (t.dtype.clone(), t.shape.clone(), parsed.bytes(t).to_vec());
        parsed
            .tensors
            .iter()
            .map(|(k, t)| (k.clone(), raw(t)))
            .collect()
    }

    fn join(tensors: &BTreeMap<String, (String, Vec<usize>, Vec<u8>)>) -> Vec<u8> {
        let raw = |(dtype, shape, bytes): &(String, Vec<usize>, Vec<u8>)| RawTensor {
            dtype: dtype.clone(),
            shape: shape.clone(),
            bytes: bytes.clone(),
        };
        let tensors = tensors.iter().map(|(k, t)| (k.clone(), raw(t))).collect();
        crate::io::safetensors::write(&tensors, &BTreeMap::new()).unwrap()
    }

    /// Adds one tensor of zeros.
    fn add_tensor(bytes: &[u8], name: &str, dtype: &str, shape: &[usize], width: usize) -> Vec<u8> {
        let mut tensors = split(bytes);
        let zeros = vec![0u8; shape.iter().product::<usize>() * width];
        tensors.insert(name.into(), (dtype.into(), shape.to_vec(), zeros));
        join(&tensors)
    }

    fn remove_tensor(bytes: &[u8], name: &str) -> Vec<u8> {
        let mut tensors = split(bytes);
        assert!(tensors.remove(name).is_some(), "{name} not in file");
        join(&tensors)
    }

    fn outputs_equal(a: &BertModel, b: &BertModel) {
        use crate::model::bert::BertInput;
        use burn::tensor::{Int, Tensor, TensorData};
        let device = Device::flex();
        let ids =
            Tensor::<2, Int>::from_data(TensorData::new(vec![2i64, 5, 6, 3], [1, 4]), &device);
        let input = BertInput {
            input_ids: ids.clone(),
            token_type_ids: ids.zeros_like(),
            attention_mask: ids.ones_like(),
            shapes: None,
        };
        let x = a.forward(input.clone()).last_hidden_state.into_data();
        let y = b.forward(input).last_hidden_state.into_data();
        x.assert_eq(&y, true);
    }

    #[test]
    fn tiled_transpose_matches_the_plain_one() {
        use burn::tensor::{bf16, f16};
        // Shapes across and off the tile size, from every stored float width; the
        // expected matrix is the plain transpose of the values as that width stores them.
        for (rows, cols) in [(1, 1), (3, 70), (33, 32), (64, 65), (100, 7)] {
            let values: Vec<f32> = (0..rows * cols).map(|i| i as f32 * 0.5 - 3.0).collect();
            let plain = |stored: &[f32]| -> Vec<f32> {
                (0..cols * rows)
                    .map(|j| stored[(j % rows) * cols + j / rows])
                    .collect()
            };
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            assert_eq!(
                transposed_f32(&bytes, DType::F32, rows, cols),
                plain(&values)
            );
            let halves: Vec<f16> = values.iter().map(|v| f16::from_f32(*v)).collect();
            let bytes: Vec<u8> = halves.iter().flat_map(|v| v.to_le_bytes()).collect();
            let stored: Vec<f32> = halves.iter().map(|v| v.to_f32()).collect();
            assert_eq!(
                transposed_f32(&bytes, DType::F16, rows, cols),
                plain(&stored)
            );
            let brains: Vec<bf16> = values.iter().map(|v| bf16::from_f32(*v)).collect();
            let bytes: Vec<u8> = brains.iter().flat_map(|v| v.to_le_bytes()).collect();
            let stored: Vec<f32> = brains.iter().map(|v| v.to_f32()).collect();
            assert_eq!(
                transposed_f32(&bytes, DType::BF16, rows, cols),
                plain(&stored)
            );
        }
    }

    #[test]
    fn a_non_finite_f32_is_found_in_any_block() {
        // 3000 values: a few blocks of 1024 and a short last one.
        let tensor = |bad: Option<(usize, f32)>| {
            let mut values: Vec<f32> = (0..3000).map(|i| i as f32).collect();
            if let Some((i, v)) = bad {
                values[i] = v;
            }
            crate::io::safetensors::write_f32(
                &[("w".to_string(), vec![3000], values)],
                &Default::default(),
            )
            .unwrap()
        };
        assert!(check_finite(&tensor(None), "w.safetensors").is_ok());
        for (i, v, shown) in [
            (0, f32::NAN, "element 0 is NaN"),
            (1500, f32::INFINITY, "element 1500 is inf"),
            (2999, f32::NEG_INFINITY, "element 2999 is -inf"),
        ] {
            let err = check_finite(&tensor(Some((i, v))), "w.safetensors")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("w.safetensors") && err.contains("'w'") && err.contains(shown),
                "{err}"
            );
        }
    }

    #[test]
    fn round_trips_both_layouts() {
        let device = Device::flex();
        let config = BertConfig::tiny(20);
        let original = config.init(&device);
        for prefix in ["", "bert."] {
            let mut bytes = hf_bytes(&original, prefix);
            if !prefix.is_empty() {
                bytes = add_tensor(&bytes, "cls.predictions.bias", "F32", &[20], 4);
            }
            let mut loaded = config.init(&device);
            let report = load_bert(&mut loaded, bytes, "model.safetensors").unwrap();
            // 5 embedding tensors, 16 per layer, 2 in the pooler.
            assert_eq!(report.applied, 5 + 2 * 16 + 2, "layout {prefix:?}");
            assert_eq!(
                report.skipped_buffers,
                vec![format!("{prefix}embeddings.position_ids")]
            );
            assert!(!report.pooler_missing);
            if !prefix.is_empty() {
                assert_eq!(
                    report.ignored_heads,
                    vec!["cls.predictions.bias".to_string()]
                );
            }
            outputs_equal(&original, &loaded);
        }
    }

    #[test]
    fn hf_names_use_weight_and_bias_in_files() {
        let bytes = hf_bytes(&BertConfig::tiny(20).init(&Device::flex()), "");
        let header = read_header(&bytes, "m").unwrap();
        assert!(header.contains_key("encoder.layer.0.attention.self.query.weight"));
        assert!(header.contains_key("embeddings.LayerNorm.weight"));
        assert!(header.contains_key("encoder.layer.1.output.LayerNorm.bias"));
        // PyTorch layout: Linear weights are [out, in].
        assert_eq!(
            header["encoder.layer.0.intermediate.dense.weight"].shape,
            vec![32, 16]
        );
    }

    #[test]
    fn missing_tensor_is_named() {
        let device = Device::flex();
        let config = BertConfig::tiny(20);
        let bytes = remove_tensor(
            &hf_bytes(&config.init(&device), ""),
            "encoder.layer.1.attention.self.key.bias",
        );
        let err = load_bert(&mut config.init(&device), bytes, "m.safetensors").unwrap_err();
        assert_eq!(
            err.to_string(),
            "m.safetensors: missing tensor 'encoder.layer.1.attention.self.key.bias'"
        );
    }

    #[test]
    fn pooler_may_be_absent() {
        let device = Device::flex();
        let config = BertConfig::tiny(20);
        let mut bytes = hf_bytes(&config.init(&device), "");
        bytes = remove_tensor(&bytes, "pooler.dense.weight");
        bytes = remove_tensor(&bytes, "pooler.dense.bias");
        let report = load_bert(&mut config.init(&device), bytes, "m").unwrap();
        assert!(report.pooler_missing);
    }

    #[test]
    fn extra_tensor_is_named() {
        let device = Device::flex();
        let config = BertConfig::tiny(20);
        let bytes = add_tensor(
            &hf_bytes(&config.init(&device), ""),
            "encoder.layer.9.foo",
            "F32",
            &[3],
            4,
        );
        let err = load_bert(&mut config.init(&device), bytes, "m")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unexpected tensor 'encoder.layer.9.foo'"),
            "{err}"
        );
    }

    #[test]
    fn wrong_sizes_in_config_are_named() {
        let device = Device::flex();
        let bytes = hf_bytes(&BertConfig::tiny(20).init(&device), "");
        let mut other = BertConfig::tiny(20);
        other.intermediate_size = 40;
        let err = load_bert(&mut other.init(&device), bytes, "m.safetensors")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("m.safetensors: tensor 'encoder.layer."),
            "{err}"
        );
        assert!(err.contains("shape"), "{err}");
    }

    #[test]
    fn truncated_file_is_caught() {
        let device = Device::flex();
        let bytes = hf_bytes(&BertConfig::tiny(20).init(&device), "");
        for cut in [4, 20, bytes.len() - 10] {
            let err = load_bert(
                &mut BertConfig::tiny(20).init(&device),
                bytes[..cut].to_vec(),
                "m",
            )
            .unwrap_err()
            .to_string();
            assert!(
                err.starts_with("m: ")
                    && (err.contains("truncated") || err.contains("not a safetensors")),
                "{err}"
            );
        }
        let mut garbage = bytes.clone();
        garbage[8] = b'#'; // the header's opening brace
        let err = load_bert(&mut BertConfig::tiny(20).init(&device), garbage, "m").unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{err}");
    }

    #[test]
    fn adapters_are_saved_and_recreated_on_load() {
        use burn::module::Param;
        use burn::tensor::{Distribution, Tensor};
        let device = Device::flex();
        let config = BertConfig::tiny(20);
        let mut original = config.init(&device).add_adapters(4, 1, &device);
        assert_eq!(original.adapters(), vec![(1, 4)]);
        // A trained adapter: non-zero `up`, so that it changes the outputs.
        let up = &mut original.encoder.layer[1]
            .output
            .adapter
            .as_mut()
            .unwrap()
            .up;
        up.weight = Param::from_tensor(Tensor::random(
            [4, 16],
            Distribution::Normal(0.0, 0.5),
            &device,
        ));
        let bytes = bert_to_safetensors(&original).unwrap();
        let header = read_header(&bytes, "m").unwrap();
        assert_eq!(
            header["encoder.layer.1.output.adapter.down.weight"].shape,
            vec![4, 16],
            "PyTorch layout [out, in]"
        );
        let mut loaded = config.init(&device);
        let report = load_bert(&mut loaded, bytes, "m").unwrap();
        assert_eq!(loaded.adapters(), vec![(1, 4)]);
        assert_eq!(report.applied, 5 + 2 * 16 + 2 + 2 * 4);
        outputs_equal(&original, &loaded);
        // Without its adapters the model computes something else.
        let mut without = original.clone();
        without.encoder.layer[1].output.adapter = None;
        let input = crate::model::bert::BertInput {
            input_ids: Tensor::from_data([[2, 5, 7, 3]], &device),
            token_type_ids: Tensor::zeros([1, 4], &device),
            attention_mask: Tensor::ones([1, 4], &device),
            shapes: None,
        };
        let a: Vec<f32> = original
            .forward(input.clone())
            .last_hidden_state
            .try_into_vec_as::<f32>()
            .unwrap();
        let b: Vec<f32> = without
            .forward(input)
            .last_hidden_state
            .try_into_vec_as::<f32>()
            .unwrap();
        assert_ne!(a, b);
    }

    /// A casing table is saved under its own name, recreated by [`load_bert`] (bare and
    /// `bert.`-prefixed files) and by the multi-task loader, and changes what the encoder
    /// computes for differently written words.
    #[test]
    fn casing_tables_are_saved_and_recreated_on_load() {
        use crate::model::casing::{CAPITALISED, LOWER, SPECIAL};
        use burn::module::Param;
        use burn::tensor::{Distribution, Tensor};
        let device = Device::flex();
        let config = BertConfig::tiny(20);
        let plain = config.init(&device);
        let mut original = plain.clone();
        original.add_casing(&device);
        let input = |shapes: [i64; 4]| crate::model::bert::BertInput {
            input_ids: Tensor::from_data([[2, 5, 7, 3]], &device),
            token_type_ids: Tensor::zeros([1, 4], &device),
            attention_mask: Tensor::ones([1, 4], &device),
            shapes: Some(Tensor::from_data([shapes], &device)),
        };
        let out = |m: &BertModel, shapes| -> Vec<f32> {
            m.forward(input(shapes))
                .last_hidden_state
                .try_into_vec_as::<f32>()
                .unwrap()
        };
        let (s, l, c) = (SPECIAL as i64, LOWER as i64, CAPITALISED as i64);
        // A fresh table is all zeros: the pretrained outputs, whatever the shapes.
        assert_eq!(out(&original, [s, c, l, s]), out(&plain, [s, c, l, s]));
        // A trained one tells "Paris" from "paris".
        original
            .embeddings
            .casing_embeddings
            .as_mut()
            .unwrap()
            .weight = Param::from_tensor(Tensor::random(
            [7, 16],
            Distribution::Normal(0.0, 0.5),
            &device,
        ));
        assert_ne!(out(&original, [s, c, l, s]), out(&original, [s, l, l, s]));

        let bytes = bert_to_safetensors(&original).unwrap();
        assert_eq!(
            read_header(&bytes, "m").unwrap()[CASING_TENSOR].shape,
            vec![7, 16]
        );
        for prefix in ["", "bert."] {
            let file = hf_bytes(&original, prefix);
            let mut loaded = config.init(&device);
            load_bert(&mut loaded, file, "m").unwrap();
            assert!(loaded.has_casing(), "{prefix}");
            assert_eq!(out(&loaded, [s, c, l, s]), out(&original, [s, c, l, s]));
        }
        // The multi-task loader: a model built from the config gets the table from the file.
        let spec = crate::model::multitask::tests::two_task_spec(
            crate::train::loss::LossWeighting::Static,
        );
        let multi =
            crate::model::multitask::MultiTaskModel::new(original.clone(), spec.clone(), &device)
                .unwrap();
        let saved = multi.to_safetensors().unwrap();
        let mut back =
            crate::model::multitask::MultiTaskModel::init(&config, spec, &device).unwrap();
        assert!(!back.bert.has_casing());
        back.load_safetensors(saved, "m").unwrap();
        assert_eq!(out(&back.bert, [s, c, l, s]), out(&original, [s, c, l, s]));
    }

    #[test]
    fn forward_until_then_from_equals_forward() {
        let device = Device::flex();
        let model = BertConfig::tiny(20).init(&device);
        let input = crate::model::bert::BertInput {
            input_ids: burn::tensor::Tensor::from_data([[2, 5, 7, 3], [2, 9, 3, 0]], &device),
            token_type_ids: burn::tensor::Tensor::zeros([2, 4], &device),
            attention_mask: burn::tensor::Tensor::from_data([[1, 1, 1, 1], [1, 1, 1, 0]], &device),
            shapes: None,
        };
        let whole = model.forward(input.clone()).last_hidden_state.into_data();
        let split = model
            .forward_from(1, model.forward_until(input, 1))
            .last_hidden_state
            .into_data();
        whole.assert_eq(&split, true);
    }

    #[test]
    fn f16_files_are_half_the_size_and_load_back_within_f16_precision() {
        let device = Device::flex();
        let config = BertConfig::tiny(20);
        let original = config.init(&device);
        let bytes = hf_bytes(&original, "");
        let half = convert_floats(&bytes, FloatWidth::F16, "m").unwrap();
        let h = read_header(&half, "m").unwrap();
        assert_eq!(
            h["encoder.layer.0.attention.self.query.weight"].dtype,
            "F16"
        );
        assert_eq!(
            h["embeddings.position_ids"].dtype, "I64",
            "other dtypes kept"
        );
        assert!(
            half.len() < bytes.len() * 6 / 10,
            "{} vs {}",
            half.len(),
            bytes.len()
        );
        let mut loaded = config.init(&device);
        load_bert(&mut loaded, half.clone(), "m").unwrap();
        // Widened as loaded: the parameters are F32, whatever the file stores.
        let q = &loaded.encoder.layer[0].attention.self_.query.weight;
        assert_eq!(q.val().dtype(), DType::F32);
        assert_eq!(
            loaded.embeddings.word_embeddings.weight.val().dtype(),
            DType::F32
        );

        // A non-finite half float is refused by name, like an F32 one.
        let mut tensors = split(&half);
        let (_, _, data) = tensors
            .get_mut("encoder.layer.1.output.dense.bias")
            .unwrap();
        data[6..8].copy_from_slice(&burn::tensor::f16::INFINITY.to_le_bytes());
        let err = load_bert(&mut config.init(&device), join(&tensors), "m.safetensors")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("m.safetensors")
                && err.contains("'encoder.layer.1.output.dense.bias'")
                && err.contains("element 3 is inf"),
            "{err}"
        );

        let input = crate::model::bert::BertInput {
            input_ids: burn::tensor::Tensor::from_data([[2, 5, 7, 3]], &device),
            token_type_ids: burn::tensor::Tensor::zeros([1, 4], &device),
            attention_mask: burn::tensor::Tensor::ones([1, 4], &device),
            shapes: None,
        };
        let a: Vec<f32> = original
            .forward(input.clone())
            .last_hidden_state
            .try_into_vec_as::<f32>()
            .unwrap();
        let b: Vec<f32> = loaded
            .forward(input)
            .last_hidden_state
            .try_into_vec_as::<f32>()
            .unwrap();
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(worst > 0.0 && worst < 1e-2, "{worst}");
        // F32 → F16 → F32 is the identity on values that F16 holds exactly.
        let back = convert_floats(
            &convert_floats(&bytes, FloatWidth::F16, "m").unwrap(),
            FloatWidth::F32,
            "m",
        )
        .unwrap();
        assert_eq!(
            convert_floats(&back, FloatWidth::F16, "m").unwrap(),
            convert_floats(&bytes, FloatWidth::F16, "m").unwrap()
        );
    }
}
