//! The networks: the BERT encoder with Hugging Face parameter names and its configuration,
//! word shapes (casing), pooling, parameters by path, task definitions and the multi-task model with its heads,
//! and the sentence encoder (text in, vectors out).

pub mod bert;
pub mod casing;
pub mod config;
pub mod multitask;
pub mod params;
pub mod pooling;
pub mod sentence;
pub mod task;
