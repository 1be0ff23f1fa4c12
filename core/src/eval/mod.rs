//! Evaluation and inference on the host: metrics as papers report them, IOB2 decoding of
//! tags, batched prediction over a dataset, and what a text gets from a model (labels,
//! entities, confidences).

pub mod metrics;
pub mod predict;
pub mod tagging;
