//! File formats, as bytes in and bytes out (the callers read and write the files):
//! checkpoints (Hugging Face safetensors), the model bundle's manifest.

pub mod bundle;
pub mod checkpoint;
