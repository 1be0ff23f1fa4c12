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

/// Checks of a configuration's fields, each failing with `field = value: what it must be`
/// (an [`Error::Input`]), so that every setting is refused in the same words.
pub mod field {
    use super::{Error, Result};

    /// Refuses `field = value`, saying what it `must` be.
    pub fn bad<T>(field: &str, value: impl std::fmt::Display, must: &str) -> Result<T> {
        Err(Error::Input(format!("{field} = {value}: {must}")))
    }

    /// A finite number > 0.
    pub fn positive(field: &str, value: f64) -> Result<()> {
        if value.is_finite() && value > 0.0 {
            return Ok(());
        }
        bad(field, value, "must be a finite number > 0")
    }

    /// A finite number ≥ 0.
    pub fn non_negative(field: &str, value: f64) -> Result<()> {
        if value.is_finite() && value >= 0.0 {
            return Ok(());
        }
        bad(field, value, "must be a finite number ≥ 0")
    }

    /// A count of at least 1.
    pub fn at_least_one(field: &str, value: usize) -> Result<()> {
        if value >= 1 {
            return Ok(());
        }
        bad(field, value, "must be at least 1")
    }

    /// A number of the encoder's top blocks: 1 to `num_layers`.
    pub fn blocks(field: &str, value: usize, num_layers: usize) -> Result<()> {
        if (1..=num_layers).contains(&value) {
            return Ok(());
        }
        bad(
            field,
            value,
            &format!("must be between 1 and the encoder's {num_layers} blocks"),
        )
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn each_check_names_the_field_and_value() {
            let msg = |r: super::Result<()>| r.unwrap_err().to_string();
            assert_eq!(
                msg(super::positive("lr", 0.0)),
                "lr = 0: must be a finite number > 0"
            );
            assert!(super::positive("lr", 1e-5).is_ok());
            assert_eq!(
                msg(super::non_negative("weight_decay", f64::NAN)),
                "weight_decay = NaN: must be a finite number ≥ 0"
            );
            assert!(super::non_negative("weight_decay", 0.0).is_ok());
            assert_eq!(
                msg(super::at_least_one("steps", 0)),
                "steps = 0: must be at least 1"
            );
            assert_eq!(
                msg(super::blocks("layers", 7, 6)),
                "layers = 7: must be between 1 and the encoder's 6 blocks"
            );
            assert!(super::blocks("layers", 6, 6).is_ok());
        }
    }
}

/// Result with the core's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
