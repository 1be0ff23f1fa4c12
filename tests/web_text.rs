//! The page's pure text logic, `web/src/text.rs` (highlighting, example parsing, task
//! checks, …), and the messages between the page and its worker, `web/src/protocol.rs`,
//! with their unit tests, run by the plain `cargo test` that CI runs. The web
//! crate itself builds for the host only with another burn feature set than core and
//! native (a second build of the whole burn stack, ~23 min cold on 2 cores), so the modules
//! are compiled here instead; they depend on nothing but `polytask_core` and serde.

#[allow(dead_code)]
#[path = "../web/src/text.rs"]
mod text;

/// The messages between the page and the model's worker (plain serde data), with their
/// round-trip test.
#[allow(dead_code)]
#[path = "../web/src/protocol.rs"]
mod protocol;
