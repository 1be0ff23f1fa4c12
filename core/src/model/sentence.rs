//! A pretrained encoder with its tokenizer: text in, sentence vectors out.

use burn::tensor::{Device, Tensor};

use crate::data::tokenizer::Tokenizer;
use crate::error::{Error, Result};
use crate::io::checkpoint::{LoadReport, load_bert};
use crate::model::bert::{BertInput, BertModel};
use crate::model::config::BertConfig;
use crate::model::pooling::{Pooling, l2_normalize, pool};

/// The three files of a Hugging Face model directory, already read, with the names used
/// in error messages.
pub struct ModelFiles<'a> {
    pub config_json: &'a str,
    pub config_name: &'a str,
    pub weights: Vec<u8>,
    pub weights_name: &'a str,
    pub tokenizer_json: &'a [u8],
    pub tokenizer_name: &'a str,
}

/// Encoder + tokenizer + configuration.
#[derive(Debug, Clone)]
pub struct SentenceEncoder {
    pub config: BertConfig,
    pub model: BertModel,
    pub tokenizer: Tokenizer,
}

impl SentenceEncoder {
    /// Builds the encoder on `device` from a model directory's files.
    pub fn load(files: ModelFiles<'_>, device: &Device) -> Result<(Self, LoadReport)> {
        let config = BertConfig::from_json(files.config_json, files.config_name)?;
        let mut tokenizer = Tokenizer::from_json_bytes(files.tokenizer_json, files.tokenizer_name)?;
        if tokenizer.vocab_size() > config.vocab_size {
            return Err(Error::Tokenizer {
                file: files.tokenizer_name.into(),
                message: format!(
                    "{} tokens, but {} gives vocab_size = {}",
                    tokenizer.vocab_size(),
                    files.config_name,
                    config.vocab_size
                ),
            });
        }
        tokenizer.set_max_len(tokenizer.max_len().min(config.max_position_embeddings))?;
        let mut model = config.init(device);
        let report = load_bert(&mut model, files.weights, files.weights_name)?;
        Ok((
            SentenceEncoder {
                config,
                model,
                tokenizer,
            },
            report,
        ))
    }

    /// Sentence vectors of `texts` as a `[texts, hidden]` tensor on the model's device.
    pub fn embed_tensor<S: AsRef<str>>(
        &self,
        texts: &[S],
        pooling: Pooling,
        normalize: bool,
        device: &Device,
    ) -> Result<Tensor<2>> {
        let batch = self.tokenizer.batch(texts)?;
        let out = self.model.forward(BertInput::from_batch(&batch, device));
        let pooled = pool(pooling, out.last_hidden_state, out.mask, &self.model.pooler);
        Ok(if normalize {
            l2_normalize(pooled)
        } else {
            pooled
        })
    }

    /// Sentence vectors of `texts`, `batch_size` texts per forward pass (native: reads
    /// back synchronously; in the browser use [`Self::embed_tensor`] and read asynchronously).
    pub fn embed<S: AsRef<str>>(
        &self,
        texts: &[S],
        pooling: Pooling,
        normalize: bool,
        batch_size: usize,
        device: &Device,
    ) -> Result<Vec<Vec<f32>>> {
        let hidden = self.config.hidden_size;
        let mut vectors = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(batch_size.max(1)) {
            let flat = self
                .embed_tensor(chunk, pooling, normalize, device)?
                .try_into_vec_as::<f32>()
                .map_err(Error::read_back("the embeddings"))?;
            vectors.extend(flat.chunks(hidden).map(<[f32]>::to_vec));
        }
        Ok(vectors)
    }
}

/// Cosine similarity of two vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb).max(1e-12)
}
