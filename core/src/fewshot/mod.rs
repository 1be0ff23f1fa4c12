//! Few-shot learning: class prototypes and the head made from them ([`prototypes`]), which
//! adaptation to a new task from a handful of examples ([`adapt`]) and first-order
//! meta-learning of an initialisation that adapts well ([`meta`]: Reptile, FOMAML) build on.

pub mod adapt;
pub mod meta;
pub mod prototypes;
