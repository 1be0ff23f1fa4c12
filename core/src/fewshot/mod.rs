//! Few-shot learning: class prototypes and the head made from them ([`prototypes`]), which
//! adaptation to a new task from a handful of examples ([`adapt`]) and first-order
//! meta-learning of an initialisation that adapts well ([`meta`]: Reptile, FOMAML) build on;
//! [`contrastive`] makes an encoder few-shot-ready by supervised contrastive
//! pre-fine-tuning on labelled sentences of other datasets.

pub mod adapt;
pub mod contrastive;
pub mod meta;
pub mod prototypes;
