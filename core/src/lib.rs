//! Polytask core: a BERT encoder with Hugging Face parameter names, its tokenizer,
//! checkpoint loading and pooling; task heads, losses, samplers, AdamW and metrics for
//! multi-task training. Runs on any burn device chosen at run time, natively
//! and in wasm; no filesystem, network or threads here.

pub mod bert;
pub mod bundle;
pub mod casing;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod episodes;
pub mod error;
pub mod features;
pub mod fewshot;
pub mod loss;
pub mod meta;
pub mod metrics;
pub mod multitask;
pub mod optim;
pub mod pooling;
pub mod predict;
pub mod rng;
pub mod sampler;
pub mod sentence;
pub mod tagging;
pub mod task;
pub mod tokenizer;
pub mod trainer;

pub use bert::{BertInput, BertModel, EncoderOutput};
pub use checkpoint::LoadReport;
pub use config::{Activation, BertConfig};
pub use error::{Error, Result};
pub use pooling::Pooling;
pub use sentence::{ModelFiles, SentenceEncoder, cosine};
pub use tokenizer::{Batch, Encoding, Tokenizer};

/// Re-export of burn so that dependents use the exact same version.
pub use burn;
