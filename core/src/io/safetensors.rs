//! safetensors files as bytes, on the `safetensors` crate: every file Polytask reads or
//! writes (checkpoints, optimizer states, task files, bundles) goes through here.
//!
//! Reading validates the whole layout before any tensor is touched (header length, JSON,
//! dtypes, shapes against byte ranges, ranges covering the data exactly, no overflow), so
//! a truncated or corrupt download is refused with a message that names the file. Writing
//! lays tensors out as the crate does (aligned header, tensors by dtype then name).

use std::collections::{BTreeMap, HashMap};

use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors, TensorView};

use crate::error::{Error, Result};

/// One entry of a safetensors header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// `F32`, `F16`, `I64`, … as the file names it.
    pub dtype: String,
    pub shape: Vec<usize>,
    /// Byte range in the data section (after the header).
    pub data_offsets: (usize, usize),
}

/// A validated file: its tensors, its string metadata, and the data they point into.
#[derive(Debug)]
pub struct Parsed<'a> {
    pub tensors: BTreeMap<String, TensorInfo>,
    pub metadata: BTreeMap<String, String>,
    pub data: &'a [u8],
}

impl Parsed<'_> {
    /// The raw little-endian bytes of one tensor.
    pub fn bytes(&self, info: &TensorInfo) -> &[u8] {
        &self.data[info.data_offsets.0..info.data_offsets.1]
    }
}

fn error(source: &str, message: impl Into<String>) -> Error {
    Error::Checkpoint {
        file: source.into(),
        message: message.into(),
    }
}

/// The crate's error as a sentence about the file.
fn explain(e: SafeTensorError, bytes: &[u8]) -> String {
    let announced = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    match e {
        SafeTensorError::HeaderTooSmall => format!(
            "not a safetensors file: {} bytes, shorter than the 8-byte header length",
            bytes.len()
        ),
        SafeTensorError::HeaderTooLarge | SafeTensorError::InvalidHeaderLength => format!(
            "truncated or corrupt: header of {} bytes announced, file has {}",
            announced.unwrap_or(0),
            bytes.len()
        ),
        SafeTensorError::InvalidHeader(e) => format!("corrupt header: not UTF-8 ({e})"),
        SafeTensorError::InvalidHeaderDeserialization(e) => format!("corrupt header JSON: {e}"),
        SafeTensorError::InvalidOffset(name) => format!(
            "truncated or corrupt: tensor '{}' has byte ranges that do not follow the previous tensor's",
            name.split_whitespace().next().unwrap_or(&name)
        ),
        SafeTensorError::MetadataIncompleteBuffer => format!(
            "truncated or corrupt: the tensors' byte ranges do not cover the file's {} data bytes exactly",
            bytes
                .len()
                .saturating_sub(8 + announced.unwrap_or(0) as usize)
        ),
        SafeTensorError::TensorInvalidInfo => {
            "corrupt: a tensor's byte range does not fit its shape and dtype".into()
        }
        SafeTensorError::ValidationOverflow => {
            "corrupt: a tensor's shape is too large (its size overflows)".into()
        }
        other => format!("corrupt: {other}"),
    }
}

/// Parses and validates a safetensors file. `source` names it in errors.
pub fn parse<'a>(bytes: &'a [u8], source: &str) -> Result<Parsed<'a>> {
    let (n, metadata) =
        SafeTensors::read_metadata(bytes).map_err(|e| error(source, explain(e, bytes)))?;
    let tensors = metadata
        .tensors()
        .into_iter()
        .map(|(name, info)| {
            let info = TensorInfo {
                dtype: info.dtype.to_string(),
                shape: info.shape.clone(),
                data_offsets: info.data_offsets,
            };
            (name, info)
        })
        .collect();
    let strings = metadata
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    Ok(Parsed {
        tensors,
        metadata: strings,
        data: &bytes[8 + n..],
    })
}

/// The tensors of a safetensors file, checked as [`parse`] does; a file without any
/// tensor is refused too.
pub fn read_header(bytes: &[u8], source: &str) -> Result<BTreeMap<String, TensorInfo>> {
    let parsed = parse(bytes, source)?;
    if parsed.tensors.is_empty() {
        return Err(error(source, "holds no tensors"));
    }
    Ok(parsed.tensors)
}

/// The string metadata (`__metadata__`) of a safetensors file.
pub fn read_metadata(bytes: &[u8], source: &str) -> Result<BTreeMap<String, String>> {
    Ok(parse(bytes, source)?.metadata)
}

/// Tensors by name: (shape, flat values).
pub type F32Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Every tensor of a safetensors file of F32 tensors. Another dtype is an error naming
/// the tensor.
pub fn read_f32_tensors(bytes: &[u8], source: &str) -> Result<F32Tensors> {
    let parsed = parse(bytes, source)?;
    let mut out = BTreeMap::new();
    for (name, info) in &parsed.tensors {
        if info.dtype != "F32" {
            return Err(error(
                source,
                format!("tensor {name}: dtype {} (expected F32)", info.dtype),
            ));
        }
        let values = f32_values(parsed.bytes(info));
        out.insert(name.clone(), (info.shape.clone(), values));
    }
    if out.is_empty() {
        return Err(error(source, "holds no tensors"));
    }
    Ok(out)
}

/// Little-endian f32 bytes as values.
pub fn f32_values(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect()
}

/// One tensor to write: its dtype as the file names it (`F32`, `F16`, …), shape and raw
/// little-endian bytes.
#[derive(Debug, Clone)]
pub struct RawTensor {
    pub dtype: String,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

fn dtype(name: &str) -> Result<Dtype> {
    Ok(match name {
        "F64" => Dtype::F64,
        "F32" => Dtype::F32,
        "F16" => Dtype::F16,
        "BF16" => Dtype::BF16,
        "I64" => Dtype::I64,
        "I32" => Dtype::I32,
        "I16" => Dtype::I16,
        "I8" => Dtype::I8,
        "U64" => Dtype::U64,
        "U32" => Dtype::U32,
        "U16" => Dtype::U16,
        "U8" => Dtype::U8,
        "BOOL" => Dtype::BOOL,
        other => return Err(Error::Serialise(format!("dtype {other} cannot be written"))),
    })
}

/// A safetensors file of `tensors` with string `metadata`.
pub fn write(
    tensors: &BTreeMap<String, RawTensor>,
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let mut views = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let view = TensorView::new(dtype(&t.dtype)?, t.shape.clone(), &t.bytes)
            .map_err(|e| Error::Serialise(format!("tensor '{name}': {e}")))?;
        views.push((name.as_str(), view));
    }
    let metadata: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    safetensors::serialize(views, Some(metadata))
        .map_err(|e| Error::Serialise(format!("safetensors: {e}")))
}

/// A safetensors file of f32 tensors `(name, shape, values)`, with string metadata.
pub fn write_f32(
    entries: &[(String, Vec<usize>, Vec<f32>)],
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let tensors = entries
        .iter()
        .map(|(name, shape, values)| {
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            let t = RawTensor {
                dtype: "F32".into(),
                shape: shape.clone(),
                bytes,
            };
            (name.clone(), t)
        })
        .collect();
    write(&tensors, metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Vec<u8> {
        let meta = BTreeMap::from([("k".to_string(), "v".to_string())]);
        write_f32(
            &[
                ("b".into(), vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]),
                ("a".into(), vec![1], vec![-0.5]),
            ],
            &meta,
        )
        .unwrap()
    }

    #[test]
    fn round_trips_tensors_and_metadata() {
        let bytes = file();
        let p = parse(&bytes, "f").unwrap();
        assert_eq!(p.metadata["k"], "v");
        assert_eq!(p.tensors["b"].shape, vec![2, 2]);
        assert_eq!(p.tensors["b"].dtype, "F32");
        assert_eq!(
            f32_values(p.bytes(&p.tensors["b"])),
            vec![1.0, 2.0, 3.0, 4.0]
        );
        assert_eq!(f32_values(p.bytes(&p.tensors["a"])), vec![-0.5]);
        // The data starts 8-byte aligned.
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        assert_eq!(n % 8, 0);
    }

    #[test]
    fn every_kind_of_damage_is_named() {
        let bytes = file();
        let cases: [(&[u8], &str); 4] = [
            (&bytes[..4], "not a safetensors file"),
            (&bytes[..20], "truncated"),
            (&bytes[..bytes.len() - 4], "truncated"),
            (b"\x05\0\0\0\0\0\0\0{nope", "corrupt header JSON"),
        ];
        for (b, want) in cases {
            let err = parse(b, "f.safetensors").unwrap_err().to_string();
            assert!(
                err.starts_with("f.safetensors: ") && err.contains(want),
                "{err}"
            );
        }
        let huge =
            br#"{"x":{"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,16]}}"#;
        let mut b = (huge.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(huge);
        b.extend_from_slice(&[0; 16]);
        let err = parse(&b, "f").unwrap_err().to_string();
        assert!(err.contains("corrupt"), "{err}");
        let empty = write_f32(&[], &BTreeMap::new()).unwrap();
        let err = read_header(&empty, "f").unwrap_err().to_string();
        assert!(err.starts_with("f: "), "{err}");
    }
}
