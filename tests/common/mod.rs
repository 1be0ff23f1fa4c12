//! Helpers shared by the integration tests.

use std::path::PathBuf;

/// The local dataset mirror: `$POLYTASK_DATA_MIRROR`, else `../shared/data` beside the
/// checkout (as in CI).
pub fn mirror() -> PathBuf {
    let dir = std::env::var_os("POLYTASK_DATA_MIRROR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    assert!(
        dir.join("SHA256SUMS").is_file(),
        "no dataset mirror at {} (set POLYTASK_DATA_MIRROR)",
        dir.display()
    );
    dir
}
