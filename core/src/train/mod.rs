//! Training: losses (per task and joint), the AdamW optimizer with its schedule, and the
//! multi-task training step.

pub mod loss;
pub mod optim;
pub mod step;
