//! One error type for the core. Every variant names the file (or input) it is about, so
//! that the command line can print a single line that says what and where.

/// Errors raised by the core library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model configuration that cannot be parsed or is not supported.
    #[error("{file}: {message}")]
    Config { file: String, message: String },
    /// A checkpoint that cannot be read or does not fit the model.
    #[error("{file}: {message}")]
    Checkpoint { file: String, message: String },
    /// A tokenizer file that cannot be loaded, or text it cannot encode.
    #[error("{file}: {message}")]
    Tokenizer { file: String, message: String },
    /// Input that the model cannot take (empty batch, bad lengths...).
    #[error("{0}")]
    Input(String),
    /// A value that could not be written out (a tensor to safetensors, settings to JSON).
    #[error("cannot serialise: {0}")]
    Serialise(String),
    /// A tensor that could not be read back from its device (a lost WebGPU device, a
    /// dtype that does not convert).
    #[error("cannot read {what} back from the device: {message}")]
    ReadBack { what: String, message: String },
    /// Training, adaptation or meta-training whose loss became NaN or infinite.
    #[error("{0}")]
    Diverged(Divergence),
}

/// A loss that became NaN or infinite: what diverged, at which step, and the losses (the
/// joint one, and each task's where there are several). The step's update is not applied
/// and nothing is saved; callers add what was kept and what to try.
#[derive(Debug, Clone, PartialEq)]
pub struct Divergence {
    /// `training`, `adaptation`, `meta-training`.
    pub what: String,
    /// 1-based: the step whose loss was not finite.
    pub step: usize,
    pub loss: f32,
    /// `(task index, its loss)`, for multi-task training.
    pub per_task: Vec<(usize, f32)>,
}

impl Divergence {
    /// `Err` when `loss` is NaN or infinite: the check of every loop.
    pub fn check(what: &str, step: usize, loss: f32) -> std::result::Result<(), Divergence> {
        if loss.is_finite() {
            return Ok(());
        }
        Err(Divergence {
            what: what.into(),
            step,
            loss,
            per_task: Vec::new(),
        })
    }
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} diverged at step {}: the loss is not finite ({}); nothing was saved",
            self.what, self.step, self.loss
        )
    }
}

impl From<Divergence> for Error {
    fn from(d: Divergence) -> Self {
        Error::Diverged(d)
    }
}

impl Error {
    /// For `map_err` on a device read: `tensor.into_data().map_err(Error::read_back("logits"))`.
    pub fn read_back<E: std::fmt::Debug>(what: impl Into<String>) -> impl FnOnce(E) -> Error {
        let what = what.into();
        move |e| Error::ReadBack {
            what,
            message: format!("{e:?}"),
        }
    }
}

/// Result with the core's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
