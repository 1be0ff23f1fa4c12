//! Training: losses (per task and joint), the AdamW optimizer with its schedule, and the
//! multi-task training step, and knowledge distillation (`distill`).

pub mod distill;
pub mod loss;
pub mod optim;
pub mod step;
