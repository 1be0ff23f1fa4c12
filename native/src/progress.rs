//! What long commands (`train`, `meta-train`) show while they run, and how they stop:
//! the progress bar, Ctrl-C as a request to save and stop at the next step, and the
//! [`Interrupted`] error that makes the process exit with 130.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `len` steps at `position`: `{bar} pos/len [elapsed<eta] message`.
pub fn steps_bar(len: u64, position: u64) -> ProgressBar {
    let bar = ProgressBar::new(len).with_position(position);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
        )
        .expect("valid template"),
    );
    bar
}

/// A flag that Ctrl-C sets (the loop saves and stops at the next step boundary).
/// The process has one handler: the first call installs it.
pub fn stop_on_ctrl_c() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let _ = ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst));
    }
    stop
}

/// Interrupted by Ctrl-C: the exit code is 130 as for any SIGINT.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}
