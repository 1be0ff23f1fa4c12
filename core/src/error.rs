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
    /// Training or adaptation whose loss became NaN or infinite; nothing was kept.
    #[error("{what} diverged at step {step}: the loss is {loss}; nothing was saved")]
    Diverged {
        what: String,
        step: usize,
        loss: f32,
    },
}

/// Result with the core's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
