//! One module per subcommand of `core-train`. Each is thin: it turns its arguments into
//! calls of the library (`polytask_native`) and `polytask_core`, and never uses another
//! command; what two commands share lives in the library.

pub mod adapt;
pub mod bench;
pub mod contrastive;
pub mod data;
pub mod distill;
pub mod embed;
pub mod eval;
pub mod export;
pub mod fetch_model;
pub mod fewshot;
pub mod meta;
pub mod predict;
pub mod train;
