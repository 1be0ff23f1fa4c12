//! Few-shot learning: adapting to a new task from a handful of examples, and first-order
//! meta-learning (Reptile, FOMAML) of an initialisation that adapts well.

pub mod adapt;
pub mod meta;
