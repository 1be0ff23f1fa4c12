//! From files' text to batches on a device: dataset parsers, the tokenizer, features
//! (tokenized examples and padded batches), training samplers and few-shot episodes.

pub mod episodes;
pub mod features;
pub mod formats;
pub mod sampler;
pub mod tokenizer;
