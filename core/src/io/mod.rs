//! File formats, as bytes in and bytes out (the callers read and write the files):
//! the safetensors format itself, checkpoints (Hugging Face BERT weights), the model
//! bundle's manifest, task files (what few-shot adaptation saves).

pub mod checkpoint;
pub mod manifest;
pub mod safetensors;
pub mod task_file;
