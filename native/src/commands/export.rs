//! `core-train export`: a model bundle for the browser and `predict --bundle` (the format
//! is in [`polytask_native::bundle`]).

use std::path::PathBuf;

use anyhow::Result;
use polytask_native::bundle::{self, Dtype};

#[derive(clap::Args, Clone, Debug)]
pub struct ExportArgs {
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// A model directory, a training run's best/ (its task heads are included) or a
    /// meta-train output (default: all-MiniLM-L6-v2).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Adapted task files (core-train adapt) to include; they must come from this model.
    #[arg(long = "task")]
    pub tasks: Vec<PathBuf>,
    /// How to store the encoder weights.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
}

pub fn run(args: &ExportArgs) -> Result<()> {
    bundle::export(&args.out, args.model.as_deref(), &args.tasks, args.dtype)
}
