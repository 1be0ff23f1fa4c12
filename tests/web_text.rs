//! The page's pure text logic, `web/src/text.rs` (highlighting, example parsing, task
//! checks, …), with its unit tests, run by the plain `cargo test` that CI runs. The web
//! crate itself builds for the host only with another burn feature set than core and
//! native (a second build of the whole burn stack, ~23 min cold on 2 cores), so the module
//! is compiled here instead; it depends on nothing but `polytask_core`.

#[allow(dead_code)]
#[path = "../web/src/text.rs"]
mod text;
