//! Polytask core: multi-task learning, few-shot adaptation and meta-learning on a
//! pretrained BERT encoder. Runs on any burn device chosen at run time, natively and in
//! wasm; no filesystem, network or threads here.
//!
//! | folder | what lives there |
//! |---|---|
//! | [`model`] | the encoder (Hugging Face names), its config, casing, pooling, tasks, the multi-task model and its heads |
//! | [`data`] | dataset parsers, tokenizer, features and batches, training samplers, few-shot episodes |
//! | [`train`] | losses, AdamW and its schedule, the multi-task training step |
//! | [`eval`] | metrics, IOB2 tag decoding, prediction and its decoding for people |
//! | [`fewshot`] | adaptation from a few examples (prototypes, adapters, top blocks) and meta-learning |
//! | [`io`] | file formats as bytes: safetensors checkpoints, bundle manifests, task files |
//!
//! [`error`] is the one error type; [`rng`] the seeded generator whose state fits a checkpoint.

pub mod data;
pub mod error;
pub mod eval;
pub mod fewshot;
pub mod io;
pub mod model;
pub mod rng;
pub mod train;

pub use data::tokenizer::{Batch, Encoding, Tokenizer};
pub use error::{Divergence, Error, Result};
pub use io::checkpoint::LoadReport;
pub use model::bert::{BertInput, BertModel, EncoderOutput};
pub use model::config::{Activation, BertConfig};
pub use model::pooling::Pooling;
pub use model::sentence::{ModelFiles, SentenceEncoder, cosine};

/// Re-export of burn so that dependents use the exact same version.
pub use burn;
