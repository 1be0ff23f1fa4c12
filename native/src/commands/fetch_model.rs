//! `core-train fetch-model [ID] [--dir DIR]`: a Hugging Face model directory
//! ([`polytask_native::fetch`]).

use std::path::PathBuf;

use anyhow::Result;
use polytask_native::fetch;

#[derive(clap::Args)]
pub struct FetchModelArgs {
    /// Hub model id.
    #[arg(default_value = fetch::DEFAULT_MODEL)]
    id: String,
    /// Target directory (default: the cache, $POLYTASK_CACHE or ~/.cache/polytask).
    #[arg(long)]
    dir: Option<PathBuf>,
}

pub fn run(args: FetchModelArgs) -> Result<()> {
    let FetchModelArgs { id, dir } = args;
    let dir = dir.unwrap_or_else(|| fetch::default_model_dir(&id));
    fetch::fetch_model(&id, &dir)?;
    Ok(())
}
