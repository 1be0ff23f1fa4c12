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
    /// Training or adaptation whose loss became NaN or infinite; nothing was kept.
    #[error("{what} diverged at step {step}: the loss is {loss}; nothing was saved")]
    Diverged {
        what: String,
        step: usize,
        loss: f32,
    },
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
